/* SPDX-License-Identifier: MIT */
/* Tests for core/connlimit.c (and the drop and pin paths of core/addrtab.c
 * that the ETRN limiter does not use): scripts of takes and releases with
 * the verdicts wanted, IPv4 and IPv4-mapped IPv6 as one address, addresses
 * forgotten with their last connection, a full table failing open, and
 * threads taking and releasing one address never exceeding the limit. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "core/addrtab.h"
#include "core/connlimit.h"

enum op { TAKE, RELEASE };

struct step {
	enum op op;
	const char *client;
	enum connlimit_verdict want; /* TAKE only */
};

struct script {
	const char *name;
	unsigned limit, max_addrs;
	struct step steps[12];
	uint64_t want_addrs; /* after the steps */
};

static const struct script cases[] = {
	{ "limit exact, then freed by a release", 2, 64, {
		{ TAKE, "192.0.2.1", CONNLIMIT_COUNTED },
		{ TAKE, "192.0.2.1", CONNLIMIT_COUNTED },
		{ TAKE, "192.0.2.1", CONNLIMIT_OVER },
		{ TAKE, "192.0.2.2", CONNLIMIT_COUNTED },   /* per address */
		{ RELEASE, "192.0.2.1", 0 },
		{ TAKE, "192.0.2.1", CONNLIMIT_COUNTED },
		{ TAKE, "192.0.2.1", CONNLIMIT_OVER },
	}, 2 },
	{ "v4 and v4-mapped v6 are one address", 1, 64, {
		{ TAKE, "192.0.2.7", CONNLIMIT_COUNTED },
		{ TAKE, "::ffff:192.0.2.7", CONNLIMIT_OVER },
		{ TAKE, "2001:db8::7", CONNLIMIT_COUNTED },
		{ RELEASE, "::ffff:192.0.2.7", 0 },
		{ TAKE, "192.0.2.7", CONNLIMIT_COUNTED },
	}, 2 },
	{ "forgotten with the last connection", 3, 64, {
		{ TAKE, "198.51.100.1", CONNLIMIT_COUNTED },
		{ TAKE, "198.51.100.2", CONNLIMIT_COUNTED },
		{ RELEASE, "198.51.100.1", 0 },
		{ RELEASE, "198.51.100.2", 0 },
	}, 0 },
	{ "full of live addresses: fails open, uncounted", 5, 2, {
		{ TAKE, "192.0.2.1", CONNLIMIT_COUNTED },
		{ TAKE, "192.0.2.2", CONNLIMIT_COUNTED },
		{ TAKE, "192.0.2.3", CONNLIMIT_UNCOUNTED },
		{ TAKE, "192.0.2.1", CONNLIMIT_COUNTED },  /* known ones still counted */
		{ RELEASE, "192.0.2.2", 0 },
		{ TAKE, "192.0.2.3", CONNLIMIT_COUNTED },  /* the dropped slot reused */
	}, 2 },
	{ "unknown text is one shared address", 1, 64, {
		{ TAKE, "unknown", CONNLIMIT_COUNTED },
		{ TAKE, "not an address", CONNLIMIT_OVER },
	}, 1 },
};

Test(connlimit, scripts)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct script *sc = &cases[i];
		struct connlimit *cl = connlimit_new(sc->limit, sc->max_addrs);

		cr_assert_not_null(cl, "%s", sc->name);
		for (size_t j = 0; j < sizeof(sc->steps) / sizeof(sc->steps[0]) && sc->steps[j].client; j++) {
			const struct step *st = &sc->steps[j];

			if (st->op == TAKE)
				cr_expect_eq(connlimit_take(cl, st->client), st->want,
					     "%s: step %zu (%s)", sc->name, j, st->client);
			else
				connlimit_release(cl, st->client);
		}
		cr_expect_eq(connlimit_addrs(cl), sc->want_addrs, "%s: addresses", sc->name);
		connlimit_free(cl);
	}
}

Test(connlimit, refused_arguments)
{
	errno = 0;
	cr_expect_null(connlimit_new(0, 16));
	cr_expect_eq(errno, EINVAL);
	cr_expect_null(connlimit_new(1, 0));
	cr_expect_eq(errno, EINVAL);
	cr_expect_null(connlimit_new(1, ADDRTAB_ADDRS_MAX + 1));
	cr_expect_eq(errno, EINVAL);
	cr_expect_null(connlimit_free(NULL));
}

#define HAMMER_THREADS 4
#define HAMMER_ROUNDS 20000
#define HAMMER_LIMIT 3

struct hammer {
	struct connlimit *cl;
	atomic_int open;     /* counted connections open now */
	atomic_int worst;    /* most seen open at once */
};

static void *hammer_run(void *arg)
{
	struct hammer *hm = arg;

	for (int i = 0; i < HAMMER_ROUNDS; i++) {
		if (connlimit_take(hm->cl, "203.0.113.9") != CONNLIMIT_COUNTED)
			continue;
		int now = atomic_fetch_add(&hm->open, 1) + 1;
		int w = atomic_load(&hm->worst);

		while (now > w && !atomic_compare_exchange_weak(&hm->worst, &w, now))
			;
		atomic_fetch_sub(&hm->open, 1);
		connlimit_release(hm->cl, "203.0.113.9");
	}
	return NULL;
}

/* Engine threads take and release one address at once: never more than the
 * limit open, and nothing left counted at the end. */
Test(connlimit, threads_never_exceed)
{
	struct hammer hm = { .cl = connlimit_new(HAMMER_LIMIT, 1024) };
	pthread_t t[HAMMER_THREADS];

	cr_assert_not_null(hm.cl);
	for (int i = 0; i < HAMMER_THREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, hammer_run, &hm), 0);
	for (int i = 0; i < HAMMER_THREADS; i++)
		pthread_join(t[i], NULL);
	cr_expect_leq(atomic_load(&hm.worst), HAMMER_LIMIT);
	cr_expect_eq(connlimit_addrs(hm.cl), 0);
	connlimit_free(hm.cl);
}
