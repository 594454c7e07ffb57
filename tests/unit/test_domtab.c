/* SPDX-License-Identifier: MIT */
/* Tests for admin/domtab.c: case, trailing dot, misses, duplicates, and a
 * large table checked against the list it was built from. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/domtab.h"

struct lookup_case {
	const char *name;
	int want;
};

Test(domtab, lookups)
{
	static const char *const doms[] = { "demo.test", "Example.ORG", "trail.test.", "demo.test" };
	static const struct lookup_case cases[] = {
		{ "demo.test", 1 }, { "DEMO.TEST", 1 }, { "demo.test.", 1 },
		{ "example.org", 1 }, { "trail.test", 1 }, { "trail.test.", 1 },
		{ "sub.demo.test", 0 }, { "demo.tes", 0 }, { "emo.test", 0 },
		{ "", 0 }, { ".", 0 }, { "demo.test..", 0 },
	};
	struct domtab *t = domtab_new(doms, 4);

	cr_assert_not_null(t);
	cr_expect_eq(domtab_count(t), 3, "duplicates counted once");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(domtab_lookup(t, cases[i].name, strlen(cases[i].name)),
			     cases[i].want, "lookup %s", cases[i].name);
	/* Not NUL-terminated input: only len bytes count. */
	cr_expect_eq(domtab_lookup(t, "demo.testXYZ", 9), 1);
	domtab_free(t);
}

Test(domtab, many)
{
	enum { N = 20000 };
	char **names = malloc(N * sizeof(*names));
	char probe[64];
	struct domtab *t;

	for (int i = 0; i < N; i++) {
		names[i] = malloc(32);
		snprintf(names[i], 32, "cust%d.example", i);
	}
	t = domtab_new((const char *const *)names, N);
	cr_assert_not_null(t);
	cr_expect_eq(domtab_count(t), N);
	for (int i = 0; i < N; i++)
		cr_expect(domtab_lookup(t, names[i], strlen(names[i])), "%s", names[i]);
	for (int i = N; i < 2 * N; i++) {
		snprintf(probe, sizeof(probe), "cust%d.example", i);
		cr_expect(!domtab_lookup(t, probe, strlen(probe)), "%s", probe);
	}
	domtab_free(t);
	for (int i = 0; i < N; i++)
		free(names[i]);
	free(names);
}
