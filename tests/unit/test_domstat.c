/* SPDX-License-Identifier: MIT */
/* Tests for store/domstat.c: lookups by case and trailing dot, counts under
 * concurrent inserts and updates from several threads, a full table. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "store/domstat.h"

Test(domstat, basics)
{
	struct domstat *t = domstat_new(16);
	struct domstat_cell *c = domstat_cell(t, "Demo.Test.", 10);

	cr_assert_not_null(c);
	domstat_add(c, 2, 5000);
	cr_expect_eq(domstat_msgs(t, "demo.test", 9), 2);
	cr_expect_eq(domstat_bytes(t, "DEMO.TEST", 9), 5000);
	cr_expect_eq(domstat_cell(t, "demo.test", 9), c, "same cell for the same domain");
	cr_expect_eq(domstat_bytes(t, "other.test", 10), 0);
	domstat_add(c, -2, -5000);
	cr_expect_eq(domstat_msgs(t, "demo.test", 9), 0);
	/* Counters never read negative, even if a caller over-subtracts. */
	domstat_add(c, -1, -1);
	cr_expect_eq(domstat_bytes(t, "demo.test", 9), 0);
	domstat_free(t);
}

Test(domstat, full_table)
{
	struct domstat *t = domstat_new(1); /* the minimum: 64 slots */
	char name[32];
	int made = 0;

	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "d%d.test", i);
		if (domstat_cell(t, name, strlen(name)))
			made++;
	}
	cr_expect_eq(made, 64, "every slot used, then NULL: got %d", made);
	domstat_free(t);
}

enum { THREADS = 4, DOMAINS = 500, ROUNDS = 200 };
static struct domstat *shared;

static void *worker(void *arg)
{
	char name[32];

	(void)arg;
	for (int r = 0; r < ROUNDS; r++) {
		for (int d = 0; d < DOMAINS; d++) {
			struct domstat_cell *c;
			snprintf(name, sizeof(name), "cust%d.example", d);
			c = domstat_cell(shared, name, strlen(name));
			if (c)
				domstat_add(c, 1, d);
		}
	}
	return NULL;
}

Test(domstat, concurrent)
{
	pthread_t th[THREADS];
	char name[32];

	shared = domstat_new(DOMAINS);
	for (int i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, worker, NULL);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	for (int d = 0; d < DOMAINS; d++) {
		snprintf(name, sizeof(name), "cust%d.example", d);
		cr_expect_eq(domstat_msgs(shared, name, strlen(name)), THREADS * ROUNDS, "%s", name);
		cr_expect_eq(domstat_bytes(shared, name, strlen(name)),
			     (uint64_t)THREADS * ROUNDS * d, "%s", name);
	}
	domstat_free(shared);
}

/* Mail for names under a wildcard is also counted under "*.parent", for
 * every enclosing parent, so a wildcard row's quota is one total (issue 10
 * item 5): before, each subdomain had its own count and none reached it. */
Test(domstat, wildcard_totals)
{
	struct domstat *t = domstat_new(64);
	static const char *const names[] = { "a.example.test", "B.Example.Test.",
					     "c.d.example.test", "other.test" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		domstat_add_domain(t, names[i], strlen(names[i]), 1, 1000);
	cr_expect_eq(domstat_bytes(t, "*.example.test", 14), 3000, "three names under it");
	cr_expect_eq(domstat_msgs(t, "*.example.test", 14), 3);
	cr_expect_eq(domstat_bytes(t, "*.d.example.test", 16), 1000);
	cr_expect_eq(domstat_bytes(t, "*.test", 6), 4000);
	cr_expect_eq(domstat_bytes(t, "b.example.test", 14), 1000, "own count unchanged");
	cr_expect_eq(domstat_bytes(t, "*.a.example.test", 16), 0, "no wildcard under a name");
	domstat_add_domain(t, "a.example.test", 14, -1, -1000);
	cr_expect_eq(domstat_bytes(t, "*.example.test", 14), 2000);
	cr_expect_eq(domstat_bytes(t, "a.example.test", 14), 0);
	domstat_free(t);
}

/* A full table still counts the wildcard total of a name it cannot hold,
 * so many subdomains cannot slip past the quota by filling the table. */
Test(domstat, wildcard_counts_when_full)
{
	struct domstat *t = domstat_new(1); /* 64 slots */
	char name[32];

	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "s%d.example.test", i);
		domstat_add_domain(t, name, strlen(name), 1, 10);
	}
	cr_expect_eq(domstat_bytes(t, "*.example.test", 14), 2000);
	domstat_free(t);
}

struct walk_seen {
	const char *name[8];
	uint64_t msgs[8], bytes[8];
	size_t idx[8];
	int n;
};

static void walk_one(void *arg, size_t slot, const char *name, uint64_t msgs, uint64_t bytes)
{
	struct walk_seen *w = arg;

	cr_assert_lt(w->n, 8);
	w->name[w->n] = name;
	w->msgs[w->n] = msgs;
	w->bytes[w->n] = bytes;
	w->idx[w->n++] = slot;
}

static int walk_find(const struct walk_seen *w, const char *name)
{
	for (int i = 0; i < w->n; i++)
		if (!strcmp(w->name[i], name))
			return i;
	return -1;
}

/* Issue 16: the walk names each domain's own cell once, lower-cased and
 * without its trailing dot, never a wildcard's; a drained domain is still
 * walked, with 0; the changed flag is set by an add and cleared by its
 * reader. */
Test(domstat, walk_and_changed)
{
	struct domstat *t = domstat_new(16);
	struct walk_seen w = { .n = 0 };
	int a, b;

	cr_expect_eq(domstat_changed(t), 0, "nothing added yet");
	domstat_add_domain(t, "A.Example.Test.", 15, 2, 200);
	domstat_add_domain(t, "a.example.test", 14, 1, 100);
	domstat_add_domain(t, "b.test", 6, 1, 10);
	cr_expect_eq(domstat_changed(t), 1);
	cr_expect_eq(domstat_changed(t), 0, "cleared by the read");
	domstat_walk(t, walk_one, &w);
	cr_expect_eq(w.n, 2, "two domains, their wildcards not walked");
	a = walk_find(&w, "a.example.test");
	b = walk_find(&w, "b.test");
	cr_assert(a >= 0 && b >= 0);
	cr_expect_eq(w.msgs[a], 3);
	cr_expect_eq(w.bytes[a], 300);
	cr_expect_eq(w.idx[a], 0, "the first domain counted is idx 0");
	cr_expect_eq(w.idx[b], 1);
	domstat_add_domain(t, "b.test", 6, -1, -10);
	cr_expect_eq(domstat_changed(t), 1, "a removal is a change");
	w.n = 0;
	domstat_walk(t, walk_one, &w);
	b = walk_find(&w, "b.test");
	cr_assert(b >= 0, "a drained domain is still walked");
	cr_expect_eq(w.msgs[b], 0);
	domstat_free(t);
}
