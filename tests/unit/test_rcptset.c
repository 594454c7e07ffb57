/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/rcptset.c: entry and import-line parsing (table-driven,
 * each line also fed with every ending), lookups (local parts, full
 * addresses, "@domain", the catch-all, case, misses that share a prefix or
 * a hash tag), duplicates, the per-set cap, and a large set checked against
 * its own entries.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/rcptset.h"

struct line_case {
	const char *in;
	int want_rc;            /* 1 entry, 0 nothing, -EINVAL */
	const char *want;       /* the entry, or a piece of why */
};

static const struct line_case line_cases[] = {
	{ "alice", 1, "alice" },
	{ "  Alice@Example.COM  ", 1, "alice@example.com" },
	{ "bob@example.com.", 1, "bob@example.com" },
	{ "@example.com", 1, "@example.com" },
	{ "@", 1, "@" },
	{ "a#b", 1, "a#b" },                      /* '#' is atext */
	{ "carol # the boss", 1, "carol" },
	{ "# comment", 0, NULL },
	{ "", 0, NULL },
	{ "   \t ", 0, NULL },
	{ "two words", -EINVAL, "more than one word" },
	{ "<x@example.com>", -EINVAL, "one of" },
	{ "\"q\"@example.com", -EINVAL, "one of" },
	{ "user@", -EINVAL, "nothing after @" },
	{ "user@exa_mple.com", -EINVAL, "bad domain" },
	{ "user@a..b", -EINVAL, "bad domain" },
	{ "user@.", -EINVAL, "bad domain" },
	{ "us\ter", -EINVAL, "more than one word" },
	{ "u\x01", -EINVAL, "control" },
	{ "u\x7f", -EINVAL, "control" },
	{ "\xc3\xa9l\xc3\xa8ve", 1, "\xc3\xa9l\xc3\xa8ve" }, /* UTF-8: kept */
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", -EINVAL,
	  "local part longer" }, /* 65 */
};

static int feed_line(const char *in, size_t n, char *out, size_t *outn, const char **why)
{
	return rcptset_line(in, n, out, outn, why);
}

Test(rcptset, lines)
{
	static const char *const endings[] = { "", "\n", "\r\n", " \r\n" };

	for (size_t i = 0; i < sizeof(line_cases) / sizeof(line_cases[0]); i++) {
		const struct line_case *c = &line_cases[i];

		for (size_t e = 0; e < sizeof(endings) / sizeof(endings[0]); e++) {
			char in[512], out[RCPTSET_ENTRY_MAX + 1];
			const char *why = NULL;
			size_t outn = 0;
			int n = snprintf(in, sizeof(in), "%s%s", c->in, endings[e]);
			int rc = feed_line(in, (size_t)n, out, &outn, &why);

			cr_assert_eq(rc, c->want_rc, "\"%s\" + ending %zu: rc %d", c->in, e, rc);
			if (rc == 1) {
				cr_assert_str_eq(out, c->want, "\"%s\"", c->in);
				cr_assert_eq(outn, strlen(c->want));
			} else if (rc < 0) {
				cr_assert_not_null(why);
				cr_assert(strstr(why, c->want), "\"%s\": why \"%s\"", c->in, why);
			}
		}
	}
}

Test(rcptset, line_nul_and_overlong)
{
	char out[RCPTSET_ENTRY_MAX + 1], big[400];
	const char *why = NULL;
	size_t outn;

	cr_assert_eq(rcptset_line("al\0ce\n", 6, out, &outn, &why), -EINVAL);
	cr_assert(strstr(why, "NUL"));
	memset(big, 'a', 60);
	big[60] = '@';
	memset(big + 61, 'b', 250);
	cr_assert_eq(rcptset_line(big, 311, out, &outn, &why), -EINVAL);
	cr_assert(strstr(why, "254"), "%s", why);
}

static struct rcptset *make(const char *const *e, size_t n, size_t max)
{
	struct rcptset_builder *b = rcptset_builder_new(n, max);

	cr_assert_not_null(b);
	for (size_t i = 0; i < n; i++) {
		char out[RCPTSET_ENTRY_MAX + 1];
		const char *why;
		size_t on;

		cr_assert_eq(rcptset_entry_norm(e[i], strlen(e[i]), out, &on, &why), 0, "%s", e[i]);
		cr_assert_geq(rcptset_builder_add(b, out, on), 0);
	}
	return rcptset_build(b);
}

static int has(const struct rcptset *s, const char *addr)
{
	const char *at = strrchr(addr, '@');

	return rcptset_has(s, addr, strlen(addr), at ? (size_t)(at - addr) + 1 : 0);
}

Test(rcptset, lookups)
{
	static const char *const e[] = { "alice", "Bob@Ex.test", "@sub.ex.test", "a.b+c" };
	struct rcptset *s = make(e, 4, 0);
	struct { const char *addr; int want; } cases[] = {
		{ "alice@ex.test", 1 },
		{ "ALICE@ex.test", 1 },      /* case-insensitive local part */
		{ "alice@other.ex.test", 1 },/* a local part: any domain the row covers */
		{ "alic@ex.test", 0 },
		{ "alicee@ex.test", 0 },
		{ "bob@ex.test", 1 },
		{ "bob@EX.TEST", 1 },
		{ "bob@sub2.ex.test", 0 },   /* a full address is that address only */
		{ "anyone@sub.ex.test", 1 }, /* "@domain" */
		{ "anyone@xsub.ex.test", 0 },
		{ "a.b+c@ex.test", 1 },
		{ "a.b@ex.test", 0 },        /* no recipient_delimiter stripping */
		{ "", 0 },
		{ "@ex.test", 0 },
	};

	cr_assert_eq(rcptset_count(s), 4);
	cr_assert_gt(rcptset_mem(s), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(has(s, cases[i].addr), cases[i].want, "%s", cases[i].addr);
	/* No domain at all (domain_off 0): only a catch-all could take it. */
	cr_assert_eq(rcptset_has(s, "alice", 5, 0), 0);
	rcptset_free(s);
}

Test(rcptset, catchall_and_empty)
{
	static const char *const e[] = { "@" };
	struct rcptset *s = make(e, 1, 0), *empty = make(NULL, 0, 0);

	cr_assert_eq(has(s, "whoever@ex.test"), 1);
	cr_assert_eq(rcptset_count(s), 1);
	cr_assert_eq(has(empty, "whoever@ex.test"), 0);
	cr_assert_eq(rcptset_count(empty), 0);
	rcptset_free(s);
	rcptset_free(empty);
	cr_assert_null(rcptset_free(NULL));
}

Test(rcptset, duplicates_and_cap)
{
	struct rcptset_builder *b = rcptset_builder_new(0, 3);
	struct rcptset *s;

	cr_assert_eq(rcptset_builder_add(b, "a", 1), 1);
	cr_assert_eq(rcptset_builder_add(b, "a", 1), 0);
	cr_assert_eq(rcptset_builder_add(b, "b", 1), 1);
	cr_assert_eq(rcptset_builder_add(b, "@", 1), 1);
	cr_assert_eq(rcptset_builder_add(b, "@", 1), 0);   /* a duplicate is no entry more */
	cr_assert_eq(rcptset_builder_add(b, "c", 1), -E2BIG);
	cr_assert_eq(rcptset_builder_add(b, "a", 1), 0);   /* known: still fine */
	cr_assert_eq(rcptset_builder_count(b), 3);
	cr_assert_eq(rcptset_builder_add(b, "", 0), -EINVAL);
	s = rcptset_build(b);
	cr_assert_eq(rcptset_count(s), 3);
	rcptset_free(s);
	rcptset_builder_free(rcptset_builder_new(10, 0));
}

/* 200,000 entries (the arena and the index grow many times): every one is
 * found, in another case too, and near misses are not. */
Test(rcptset, large)
{
	enum { N = 200000 };
	struct rcptset_builder *b = rcptset_builder_new(0, 0);
	struct rcptset *s;
	char e[64], addr[96];

	for (unsigned i = 0; i < N; i++) {
		int n = snprintf(e, sizeof(e), "user%u", i);

		cr_assert_eq(rcptset_builder_add(b, e, (size_t)n), 1);
	}
	s = rcptset_build(b);
	cr_assert_eq(rcptset_count(s), N);
	for (unsigned i = 0; i < N; i++) {
		snprintf(addr, sizeof(addr), "%s%u@big.test", i & 1 ? "USER" : "user", i);
		cr_assert(has(s, addr), "%s", addr);
		snprintf(addr, sizeof(addr), "user%ux@big.test", i);
		cr_assert(!has(s, addr), "%s", addr);
	}
	rcptset_free(s);
}
