/* SPDX-License-Identifier: MIT */
/* Tests for core/addrlimit.c: the limit honoured exactly, refill over an
 * injected clock, addresses on one chain kept apart, exactly `limit` accepted
 * from threads hammering one address, eviction in a full table, the refused
 * limit 0. No test sleeps: time is the now_ms argument. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/addrlimit.h"

#define MIN ADDRLIMIT_PERIOD_MS

/* Take n times from client at now; how many were accepted. */
static unsigned take_n(struct addrlimit *l, const char *client, unsigned n, uint64_t now)
{
	unsigned ok = 0;

	for (unsigned i = 0; i < n; i++)
		ok += (unsigned)addrlimit_take(l, client, now);
	return ok;
}

Test(addrlimit, limit_exact)
{
	static const unsigned limits[] = { 1, 2, 3, 60, 1000, ADDRLIMIT_PER_PERIOD_MAX };

	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		struct addrlimit *l = addrlimit_new("test", limits[i], 16);

		cr_assert_not_null(l);
		cr_expect_eq(take_n(l, "192.0.2.1", limits[i], 5), limits[i], "limit %u", limits[i]);
		cr_expect_eq(take_n(l, "192.0.2.1", 3, 5), 0, "limit %u: over", limits[i]);
		cr_expect_eq(take_n(l, "192.0.2.2", limits[i] + 3, 5), limits[i], "limit %u: other", limits[i]);
		addrlimit_free(l);
	}
}

/* A script against one limiter: at now_ms, `takes` requests from client,
 * of which want_ok are accepted. */
struct step {
	const char *client;
	uint64_t now_ms;
	unsigned takes, want_ok;
};

struct script {
	const char *name;
	unsigned limit, max_addrs;
	struct step steps[12];
};

static const struct script refill_cases[] = {
	{ "one per second", 60, 16, {
		{ "192.0.2.1", 1000, 61, 60 },
		{ "192.0.2.1", 1999, 1, 0 },        /* 0.999 token back: not yet */
		{ "192.0.2.1", 2000, 2, 1 },        /* a whole second: one */
		{ "192.0.2.1", 32000, 31, 30 },     /* 30 s: 30 */
		{ "192.0.2.1", 32000 + 10 * MIN, 61, 60 }, /* capped at the limit */
		{ NULL, 0, 0, 0 } } },
	{ "clock read late by another thread", 60, 16, {
		{ "192.0.2.1", 5000, 60, 60 },
		{ "192.0.2.1", 4000, 1, 0 },        /* older reading: no time passed */
		{ "192.0.2.1", 5999, 1, 0 },        /* still measured from 5000 */
		{ "192.0.2.1", 6000, 2, 1 },
		{ NULL, 0, 0, 0 } } },
	{ "one per minute", 1, 16, {
		{ "2001:db8::1", 0, 2, 1 },
		{ "2001:db8::1", MIN - 1, 1, 0 },
		{ "2001:db8::1", MIN, 2, 1 },
		{ NULL, 0, 0, 0 } } },
	{ "fractions add up exactly", 100000, 16, {
		{ "192.0.2.1", 7, 100001, 100000 },
		{ "192.0.2.1", 8, 3, 1 },           /* 1 ms: 1 2/3 tokens */
		{ "192.0.2.1", 9, 3, 2 },           /* the 2/3 left, and 1 2/3 */
		{ "192.0.2.1", 10, 3, 2 },          /* 3 ms, 5 tokens in all */
		{ NULL, 0, 0, 0 } } },
	{ "same address, two spellings", 3, 16, {
		{ "127.0.0.1", 0, 2, 2 },
		{ "::ffff:127.0.0.1", 0, 2, 1 },
		{ "::1", 0, 4, 3 },
		{ "0:0:0:0:0:0:0:1", 0, 1, 0 },
		{ "unknown", 0, 2, 2 },             /* not an address: one shared bucket */
		{ "garbage", 0, 2, 1 },
		{ NULL, 0, 0, 0 } } },
};

static void run_script(const struct script *sc)
{
	struct addrlimit *l = addrlimit_new("test", sc->limit, sc->max_addrs);

	cr_assert_not_null(l, "%s", sc->name);
	for (const struct step *st = sc->steps; st->client; st++)
		cr_expect_eq(take_n(l, st->client, st->takes, st->now_ms), st->want_ok,
			     "%s: step %zu (%s at %" PRIu64 ")", sc->name, (size_t)(st - sc->steps),
			     st->client, st->now_ms);
	addrlimit_free(l);
}

Test(addrlimit, refill)
{
	for (size_t i = 0; i < sizeof(refill_cases) / sizeof(refill_cases[0]); i++)
		run_script(&refill_cases[i]);
}

/* Two addresses on the same chain of a small table: found, not assumed. */
static void colliding_pair(struct addrlimit *l, char *a, char *b, size_t len)
{
	unsigned first[256];

	for (unsigned i = 0; i < 256; i++) {
		snprintf(a, len, "10.0.0.%u", i);
		first[i] = addrlimit_chain_of(l, a);
		for (unsigned j = 0; j < i; j++) {
			if (first[j] == first[i]) {
				snprintf(b, len, "10.0.0.%u", j);
				return;
			}
		}
	}
	cr_assert_fail("no two of 256 addresses share a chain");
}

Test(addrlimit, collision_keeps_addresses_apart)
{
	struct addrlimit *l = addrlimit_new("test", 5, 8); /* one shard, 8 chains */
	char a[32], b[32];
	struct addrlimit_stats st;

	cr_assert_not_null(l);
	colliding_pair(l, a, b, sizeof(a));
	cr_assert_eq(addrlimit_chain_of(l, a), addrlimit_chain_of(l, b));
	/* a spends its limit; b's arrival must neither reset a nor be charged
	 * for a; the order on the chain must not matter either. */
	cr_expect_eq(take_n(l, a, 6, 0), 5, "%s", a);
	cr_expect_eq(take_n(l, b, 1, 0), 1, "%s", b);
	cr_expect_eq(take_n(l, a, 3, 0), 0, "%s not reset by %s", a, b);
	cr_expect_eq(take_n(l, b, 9, 0), 4, "%s", b);
	for (int round = 0; round < 4; round++) {
		cr_expect_eq(take_n(l, a, 1, 0), 0, "%s", a);
		cr_expect_eq(take_n(l, b, 1, 0), 0, "%s", b);
	}
	addrlimit_stats(l, &st);
	cr_expect_eq(st.addrs, 2);
	cr_expect_eq(st.evicted_full + st.evicted_partial, 0);
	addrlimit_free(l);
}

/* A full table: a burst of one-off addresses must not lift a busy one. */
Test(addrlimit, full_table_keeps_the_busy_limited)
{
	struct addrlimit *l = addrlimit_new("test", 10, 32); /* one shard of 32 */
	char name[32];
	struct addrlimit_stats st;

	cr_assert_not_null(l);
	cr_expect_eq(take_n(l, "192.0.2.66", 11, 0), 10);
	for (unsigned i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "198.51.%u.%u", i / 256, i % 256);
		cr_expect_eq(take_n(l, name, 1, 1000 + i), 1, "a new address is never refused");
	}
	cr_expect_eq(take_n(l, "192.0.2.66", 1, 2000), 0, "the busy one is still limited");
	addrlimit_stats(l, &st);
	cr_expect_eq(st.capacity, 32);
	cr_expect_eq(st.addrs, 32);
	cr_expect_eq(st.evicted_full, 0);
	cr_expect_eq(st.evicted_partial, 1000 - 31, "each one-off evicted another one-off");
	addrlimit_free(l);
}

/* Refilled entries go first and count as harmless; with none, the most
 * credit goes (least gained); only a table of equally spent buckets lets
 * one come back fuller (the documented fail-open). */
Test(addrlimit, full_table_eviction_order)
{
	struct addrlimit *l = addrlimit_new("test", 4, 2); /* one shard of 2 */
	struct addrlimit_stats st;

	cr_assert_not_null(l);
	cr_expect_eq(take_n(l, "192.0.2.1", 4, 0), 4);   /* empty */
	cr_expect_eq(take_n(l, "192.0.2.2", 1, 0), 1);   /* 3 left */
	cr_expect_eq(take_n(l, "192.0.2.3", 1, 0), 1);   /* evicts .2 */
	cr_expect_eq(take_n(l, "192.0.2.1", 1, 0), 0, ".1 stayed");
	addrlimit_stats(l, &st);
	cr_expect_eq(st.evicted_partial, 1);
	/* A period later both are full again: either goes, harmlessly. */
	cr_expect_eq(take_n(l, "192.0.2.4", 1, MIN), 1);
	addrlimit_stats(l, &st);
	cr_expect_eq(st.evicted_full, 1);
	cr_expect_eq(st.evicted_partial, 1);
	/* Two emptied buckets and a newcomer: it is let in (never refused for
	 * a full table), at the price of one of them starting afresh. */
	cr_expect_eq(take_n(l, "192.0.2.5", 4, 2 * MIN), 4);
	cr_expect_eq(take_n(l, "192.0.2.6", 4, 2 * MIN), 4);
	cr_expect_eq(take_n(l, "192.0.2.7", 1, 2 * MIN), 1);
	addrlimit_stats(l, &st);
	cr_expect_eq(st.evicted_partial, 2);
	cr_expect_eq(st.addrs, 2);
	addrlimit_free(l);
}

Test(addrlimit, limit_zero_and_bad_sizes_refused)
{
	struct { unsigned limit, addrs; } bad[] = {
		{ 0, 16 }, { ADDRLIMIT_PER_PERIOD_MAX + 1, 16 }, { 60, 0 }, { 60, ADDRLIMIT_ADDRS_MAX + 1 },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		cr_expect_null(addrlimit_new("test", bad[i].limit, bad[i].addrs), "case %zu", i);
		cr_expect_eq(errno, EINVAL, "case %zu", i);
	}
	cr_expect_null(addrlimit_free(NULL));
}

/* OTHERS per thread leave the table room: a full one may evict a spent
 * bucket among equally spent ones (full_table_eviction_order). */
enum { THREADS = 8, TAKES = 2000, OTHERS = 16, HAMMER_ADDRS = 1024 };

struct hammer {
	struct addrlimit *l;
	unsigned index;
	uint64_t clock_step;           /* 0: all at one instant */
	atomic_uint *accepted;
	atomic_uint *go;
};

static void *hammer_run(void *arg)
{
	struct hammer *hm = arg;
	char other[32];

	while (!atomic_load(hm->go))
		;
	for (unsigned i = 0; i < TAKES; i++) {
		if (addrlimit_take(hm->l, "203.0.113.9", i * hm->clock_step))
			atomic_fetch_add(hm->accepted, 1);
		/* Traffic on the other shards, and the table full, meanwhile. */
		snprintf(other, sizeof(other), "2001:db8::%x:%x", hm->index, i % OTHERS);
		(void)addrlimit_take(hm->l, other, i * hm->clock_step);
	}
	return NULL;
}

static unsigned hammer(struct addrlimit *l, uint64_t clock_step)
{
	pthread_t th[THREADS];
	struct hammer hm[THREADS];
	atomic_uint accepted = 0, go = 0;

	for (unsigned i = 0; i < THREADS; i++) {
		hm[i] = (struct hammer){ l, i, clock_step, &accepted, &go };
		cr_assert_eq(pthread_create(&th[i], NULL, hammer_run, &hm[i]), 0);
	}
	atomic_store(&go, 1);
	for (unsigned i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	return atomic_load(&accepted);
}

Test(addrlimit, threads_one_address_exact)
{
	static const unsigned limits[] = { 1, 60, 1000 };

	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		struct addrlimit *l = addrlimit_new("test", limits[i], HAMMER_ADDRS);

		cr_assert_not_null(l);
		cr_expect_eq(hammer(l, 0), limits[i], "limit %u", limits[i]);
		addrlimit_free(l);
	}
}

/* Threads whose clocks read at different moments: never more than the
 * limit plus what the latest reading refilled. */
Test(addrlimit, threads_with_clock_bounded)
{
	struct addrlimit *l = addrlimit_new("test", 60, HAMMER_ADDRS);
	uint64_t last = (uint64_t)(TAKES - 1) * 3;
	unsigned got;

	cr_assert_not_null(l);
	got = hammer(l, 3);
	cr_expect_geq(got, 60);
	cr_expect_leq(got, 60 + last * 60 / MIN, "got %u", got);
	addrlimit_free(l);
}

/* give: what AUTH does with a reservation that did not count. A script of
 * take (+1) and give (-1) at one clock reading, then how many takes the
 * bucket still allows. */
struct give_case {
	const char *name;
	unsigned limit;
	const char *ops;       /* 't' take, 'g' give, on 192.0.2.7 */
	unsigned want_left;
};

static const struct give_case give_cases[] = {
	{ "give back what was taken", 3, "tttggg", 3 },
	{ "never above full", 3, "gggg", 3 },
	{ "take after give", 2, "ttgt", 0 },
	{ "failures kept, one refunded", 5, "tttttg", 1 },
	{ "give to an absent address makes nothing", 1, "g", 1 },
};

Test(addrlimit, give_returns_one_capped_at_full)
{
	for (size_t i = 0; i < sizeof(give_cases) / sizeof(give_cases[0]); i++) {
		const struct give_case *gc = &give_cases[i];
		struct addrlimit *l = addrlimit_new("test", gc->limit, 16);
		struct addrlimit_stats st;

		cr_assert_not_null(l);
		for (const char *op = gc->ops; *op; op++) {
			if (*op == 't')
				(void)addrlimit_take(l, "192.0.2.7", 100);
			else
				addrlimit_give(l, "192.0.2.7", 100);
		}
		if (!strchr(gc->ops, 't')) {
			addrlimit_stats(l, &st);
			cr_expect_eq(st.addrs, 0, "%s: no entry made", gc->name);
		}
		cr_expect_eq(take_n(l, "192.0.2.7", gc->limit + 2, 100), gc->want_left, "%s",
			     gc->name);
		cr_expect_eq(take_n(l, "192.0.2.8", gc->limit + 2, 100), gc->limit,
			     "%s: another address", gc->name);
		addrlimit_free(l);
	}
}
