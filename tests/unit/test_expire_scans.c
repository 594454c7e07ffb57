/* SPDX-License-Identifier: MIT */
/*
 * Tests for the expiry-scan counter (etrnd_expiry_scans_total,
 * METRIC_EXPIRY_SCANS, proto/expire.c) on a real engine thread and spool
 * shard (tests/unit/engine_fixture.h). The integration tests wait for it
 * before checking that nothing (more) expired, so it must count a scan only
 * once every expiry and delay warning the scan found is over: read on the
 * engine thread the moment it moves, the expiry count is already final.
 */
#include <criterion/criterion.h>
#include <stdio.h>

#include "core/metrics.h"
#include "engine_fixture.h"

#define T_TIMEOUT_S 20
#define T_HOUR_US (3600ull * 1000000u)
#define T_DAY_US (24ull * T_HOUR_US)
#define T_MAX_HOLD_US (5 * T_DAY_US)
#define T_DELAY_WARNING_US (4 * T_HOUR_US)
#define T_SENDER "alice@sender.test"
#define T_BODY "Subject: held\r\n\r\nwaiting for ETRN\r\n"

/* When the counter has moved past want_scans: what expiry had done then. */
struct t_seen {
	uint64_t want_scans;
	uint64_t count;      /* expire_count() */
	int busy;            /* expire_busy() */
};

/* On the engine thread, between turns: the counter and the expiry state
 * are read in the same place the turn hook changes them. */
static int t_scan_counted(struct engine_fixture *f, void *arg)
{
	struct t_seen *s = arg;

	if (metrics_value(METRIC_EXPIRY_SCANS) < s->want_scans)
		return 0;
	s->count = expire_count(f->expire);
	s->busy = expire_busy(f->expire);
	return 1;
}

struct t_case {
	const char *name;
	unsigned nmsgs;             /* messages to old.test, each one recipient */
	uint64_t offset_us;         /* how old they look to expiry */
	uint64_t delay_warning_us;
	uint64_t want_count;        /* expired when the scan is counted */
};

static const struct t_case t_cases[] = {
	{ "nothing old enough", 3, 4 * T_DAY_US, 0, 0 },
	{ "every message expires", 5, 6 * T_DAY_US, 0, 5 },
	{ "delay warnings only", 4, T_DAY_US, T_DELAY_WARNING_US, 0 },
	{ "warned, then expired", 2, 6 * T_DAY_US, T_DELAY_WARNING_US, 2 },
};

static void t_run(const struct t_case *c)
{
	static const char *const rcpt[] = { "u@old.test" };
	struct engine_fixture f;
	struct expire_conf xc = {
		.max_hold_us = T_MAX_HOLD_US,
		.delay_warning_us = c->delay_warning_us,
		.clock_offset_us = (int64_t)c->offset_us,
	};
	struct t_seen seen = { 0, 0, 0 };
	uint64_t settled = 0;

	cr_assert_eq(engine_fixture_init(&f, engine_fixture_table_of("old.test")),
		     0, "%s", c->name);
	cr_assert_eq(engine_fixture_start(&f), 0, "%s: %s", c->name, f.err);
	for (unsigned i = 0; i < c->nmsgs; i++)
		cr_assert(engine_fixture_append(&f, T_SENDER, rcpt, 1, T_BODY), "%s", c->name);
	seen.want_scans = metrics_value(METRIC_EXPIRY_SCANS) + 1;
	cr_assert_eq(engine_fixture_expire_start(&f, &xc), 0, "%s", c->name);
	cr_assert_eq(engine_fixture_wait(&f, t_scan_counted, &seen, ENGINE_FIXTURE_WAIT_MS), 0,
		     "%s: no expiry scan counted", c->name);
	cr_expect_eq(seen.count, c->want_count, "%s: %lu expired when the scan was counted, "
		     "want %lu", c->name, (unsigned long)seen.count, (unsigned long)c->want_count);
	cr_expect_eq(seen.busy, 0, "%s: a job still in flight when the scan was counted",
		     c->name);
	/* Nothing more afterwards: the count was final. */
	cr_assert_eq(engine_fixture_expire_settle(&f, &settled, ENGINE_FIXTURE_WAIT_MS), 0,
		     "%s: expiry did not go quiet", c->name);
	cr_expect_eq(settled, c->want_count, "%s: %lu expired in all, want %lu", c->name,
		     (unsigned long)settled, (unsigned long)c->want_count);
	engine_fixture_stop(&f);
	engine_fixture_fini(&f);
}

Test(expire_scans, counted_after_its_jobs, .timeout = T_TIMEOUT_S)
{
	for (size_t i = 0; i < sizeof(t_cases) / sizeof(t_cases[0]); i++)
		t_run(&t_cases[i]);
}
