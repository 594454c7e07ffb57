/* SPDX-License-Identifier: MIT */
/*
 * Tests for proto/expire.c on a real engine thread and spool shard
 * (tests/unit/engine_fixture.h). Age comes from the clock offset test aid
 * (expire_conf.clock_offset_us): messages are stored now and expiry looks
 * at them days later. Outcomes are read from the shard after a restart
 * (recovery), so only what is durable counts: the DONE(expired) records, the
 * DSNs queued for the senders, the NOTE of a delay warning.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "engine_fixture.h"
#include "store/spool_index.h"
#include "store/spool_rec.h"

#define T_TIMEOUT_S 20
#define T_HOUR_US (3600ull * 1000000u)
#define T_DAY_US (24ull * T_HOUR_US)
#define T_MAX_HOLD_US (5 * T_DAY_US)        /* the default, like the daemon's */
#define T_YOUNG_HOLD_MS (30ull * 24 * 3600 * 1000) /* young.test's own */
#define T_DELAY_WARNING_US (4 * T_HOUR_US)
#define T_IDS_MAX 8
#define T_STATES_MAX 8

#define T_SENDER "alice@sender.test"
#define T_BODY "Subject: held\r\n\r\nwaiting for ETRN\r\n"

/* old.test keeps the default max_hold; young.test has 30 days of its own. */
static struct domtab *t_table(void)
{
	struct domtab_builder *b = domtab_builder_new();
	struct domtab_row old = { .name = "old.test", .dest = "127.0.0.1:9" };
	struct domtab_row young = { .name = "young.test", .dest = "127.0.0.1:9",
				    .max_hold_ms = T_YOUNG_HOLD_MS };
	struct domtab *t;

	cr_assert_not_null(b);
	cr_assert_eq(domtab_builder_put(b, &old), 0);
	cr_assert_eq(domtab_builder_put(b, &young), 0);
	t = domtab_build(b);
	domtab_builder_free(b);
	cr_assert_not_null(t);
	return t;
}

static void t_start(struct engine_fixture *f)
{
	cr_assert_eq(engine_fixture_init(f, t_table()), 0);
	cr_assert_eq(engine_fixture_start(f), 0, "%s", f->err);
}

/* Start expiry seeing the clock offset_us ahead, and wait until it has
 * expired want messages and gone quiet. */
static void t_expire(struct engine_fixture *f, uint64_t offset_us, uint64_t delay_warning_us,
		     uint64_t want)
{
	struct expire_conf xc = {
		.max_hold_us = T_MAX_HOLD_US,
		.delay_warning_us = delay_warning_us,
		.clock_offset_us = (int64_t)offset_us,
	};
	uint64_t n = 0;

	cr_assert_eq(engine_fixture_expire_start(f, &xc), 0);
	cr_assert_eq(engine_fixture_expire_settle(f, &n, ENGINE_FIXTURE_WAIT_MS), 0,
		     "expiry did not go quiet");
	cr_expect_eq(n, want, "%lu message(s) expired, want %lu", (unsigned long)n,
		     (unsigned long)want);
}

static void t_expect_states(struct spool_index *idx, uint64_t msgid, const char *want,
			    const char *what)
{
	char st[T_STATES_MAX + 1];

	engine_fixture_states(idx, msgid, st, sizeof(st));
	cr_expect_str_eq(st, want, "%s: recipients %s, want %s", what, st, want);
}

static void t_expect_dsn(struct engine_fixture *f, uint64_t id, const char *const *want)
{
	char why[4096];

	cr_expect_eq(engine_fixture_dsn_check(f, id, T_SENDER, want, why, sizeof(why)), 0,
		     "%s", why);
}

/* One message held for offset_days, then expiry with the default max_hold
 * (five days) and no delay warnings. */
struct t_case {
	const char *sender;
	const char *rcpt[T_STATES_MAX];
	unsigned nrcpt;
	uint64_t offset_days;
	uint64_t want_count;          /* expire_count() */
	const char *want_states;      /* engine_fixture_states() afterwards */
	uint64_t want_expired;        /* DONE(expired) records */
	uint64_t want_held;           /* messages held afterwards (a DSN is one) */
	const char *want_dsn[T_STATES_MAX]; /* NULL-terminated; none: no DSN */
	uint16_t flags;               /* SPOOL_MSG_* of the stored message */
};

static const struct t_case t_cases[] = {
	{ /* both recipients expire; one DSN to the sender lists both, 4.4.7 */
		.sender = T_SENDER, .rcpt = { "a@old.test", "b@old.test" }, .nrcpt = 2,
		.offset_days = 6, .want_count = 1, .want_states = "",
		.want_expired = 2, .want_held = 1,
		.want_dsn = {
			"Subject: Undelivered Mail Returned to Sender\r\n",
			"Final-Recipient: rfc822; a@old.test\r\n",
			"Final-Recipient: rfc822; b@old.test\r\n",
			"Action: failed\r\n",
			"Status: 4.4.7\r\n",
		},
	},
	{ /* younger than max_hold: nothing at all */
		.sender = T_SENDER, .rcpt = { "a@old.test" }, .nrcpt = 1,
		.offset_days = 4, .want_count = 0, .want_states = "P",
		.want_expired = 0, .want_held = 1,
	},
	{ /* the null sender (a DSN itself): DONEs, no DSN for a DSN (RFC 3461
	   * 6.2) */
		.sender = "", .rcpt = { "a@old.test", "b@old.test" }, .nrcpt = 2,
		.offset_days = 6, .want_count = 1, .want_states = "",
		.want_expired = 2, .want_held = 0,
	},
	{ /* quarantined (held by a content filter) and never released: it
	   * expires too, but without a DSN (no backscatter) */
		.sender = T_SENDER, .rcpt = { "a@old.test", "b@old.test" }, .nrcpt = 2,
		.offset_days = 6, .want_count = 1, .want_states = "",
		.want_expired = 2, .want_held = 0, .flags = SPOOL_MSG_HELD,
	},
};

static void t_run(const struct t_case *c)
{
	struct engine_fixture f;
	struct spool_index *idx;
	struct spool_index_totals tot;
	uint64_t m, ids[T_IDS_MAX];
	size_t n;

	t_start(&f);
	cr_assert((m = engine_fixture_append_flags(&f, c->sender, c->rcpt, c->nrcpt, T_BODY,
						   c->flags)));
	t_expire(&f, c->offset_days * T_DAY_US, 0, c->want_count);
	engine_fixture_stop(&f);
	cr_assert_not_null((idx = engine_fixture_reopen(&f)), "%s", f.err);
	t_expect_states(idx, m, c->want_states, "the message");
	spool_index_totals(idx, &tot);
	cr_expect_eq(tot.expired, c->want_expired, "%lu DONE(expired)", (unsigned long)tot.expired);
	cr_expect_eq(tot.messages, c->want_held, "%lu message(s) held", (unsigned long)tot.messages);
	n = engine_fixture_queue_ids(&f, "sender.test", ids, T_IDS_MAX);
	cr_expect_eq(n, c->want_dsn[0] ? 1 : 0, "%zu message(s) for sender.test", n);
	if (n == 1 && c->want_dsn[0])
		t_expect_dsn(&f, ids[0], c->want_dsn);
	engine_fixture_fini(&f);
}

Test(expire, old_message_expires_with_dsn, .timeout = T_TIMEOUT_S) { t_run(&t_cases[0]); }
Test(expire, younger_message_stays, .timeout = T_TIMEOUT_S) { t_run(&t_cases[1]); }
Test(expire, null_sender_expires_without_dsn, .timeout = T_TIMEOUT_S) { t_run(&t_cases[2]); }
Test(expire, quarantined_expires_without_dsn, .timeout = T_TIMEOUT_S) { t_run(&t_cases[3]); }

/* Ten days held: old.test (default five days) expires, young.test (its own
 * thirty days) stays, and a message for both expires in part, its DSN
 * naming only the old.test recipient. */
Test(expire, per_domain_max_hold, .timeout = T_TIMEOUT_S)
{
	static const char *const r_old[] = { "a@old.test" };
	static const char *const r_young[] = { "y@young.test" };
	static const char *const r_both[] = { "y2@young.test", "a2@old.test" };
	static const char *const want_old[] = { "Final-Recipient: rfc822; a@old.test\r\n", NULL };
	static const char *const want_both[] = { "Final-Recipient: rfc822; a2@old.test\r\n", NULL };
	struct engine_fixture f;
	struct spool_index *idx;
	struct engine_fixture_msg dsn;
	uint64_t m_old, m_young, m_both, ids[T_IDS_MAX];

	t_start(&f);
	cr_assert((m_old = engine_fixture_append(&f, T_SENDER, r_old, 1, T_BODY)));
	cr_assert((m_young = engine_fixture_append(&f, T_SENDER, r_young, 1, T_BODY)));
	cr_assert((m_both = engine_fixture_append(&f, T_SENDER, r_both, 2, T_BODY)));
	t_expire(&f, 10 * T_DAY_US, 0, 2);
	engine_fixture_stop(&f);
	cr_assert_not_null((idx = engine_fixture_reopen(&f)), "%s", f.err);
	t_expect_states(idx, m_old, "", "old.test's message");
	t_expect_states(idx, m_young, "P", "young.test's message");
	t_expect_states(idx, m_both, "PE", "the message for both");
	cr_assert_eq(engine_fixture_queue_ids(&f, "sender.test", ids, T_IDS_MAX), 2);
	t_expect_dsn(&f, ids[0], want_old);
	t_expect_dsn(&f, ids[1], want_both);
	cr_assert_eq(engine_fixture_read(&f, ids[1], &dsn), 0);
	cr_expect_null(strstr(dsn.body, "y2@young.test"), "the DSN names a recipient still held");
	engine_fixture_msg_free(&dsn);
	engine_fixture_fini(&f);
}

/*
 * One day held, delay_warning four hours: the sender gets one delayed DSN
 * and the message a NOTE, its recipients stay pending; the null sender's
 * message gets the NOTE and no DSN. After a restart the NOTE keeps both from
 * being warned again. Six days on, all three held messages (the two and the
 * warning, itself from <>) expire, and only alice gets a failure DSN.
 */
Test(expire, delay_warning_once_then_expiry, .timeout = T_TIMEOUT_S)
{
	static const char *const rcpt[] = { "a@old.test" };
	static const char *const want_delayed[] = {
		"Subject: Delayed Mail (still being retried)\r\n",
		"Final-Recipient: rfc822; a@old.test\r\n",
		"Action: delayed\r\n",
		"Status: 4.4.7\r\n",
		NULL,
	};
	static const char *const want_failed[] = {
		"Final-Recipient: rfc822; a@old.test\r\n", "Action: failed\r\n", NULL,
	};
	struct engine_fixture f;
	struct spool_index *idx;
	struct spool_index_entry e;
	struct spool_index_totals tot;
	uint64_t m, m_null, ids[T_IDS_MAX], warning;

	t_start(&f);
	cr_assert((m = engine_fixture_append(&f, T_SENDER, rcpt, 1, T_BODY)));
	cr_assert((m_null = engine_fixture_append(&f, "", rcpt, 1, T_BODY)));
	t_expire(&f, T_DAY_US, T_DELAY_WARNING_US, 0);
	engine_fixture_stop(&f);

	cr_assert_not_null((idx = engine_fixture_reopen(&f)), "%s", f.err);
	t_expect_states(idx, m, "P", "the warned message");
	cr_assert_eq(spool_index_msg_find(idx, m, &e), 0);
	cr_expect(e.delay_warned, "no NOTE(delay warned) on the message");
	cr_assert_eq(spool_index_msg_find(idx, m_null, &e), 0);
	cr_expect(e.delay_warned, "no NOTE(delay warned) on the null sender's message");
	cr_assert_eq(engine_fixture_queue_ids(&f, "sender.test", ids, T_IDS_MAX), 1);
	t_expect_dsn(&f, ids[0], want_delayed);
	warning = ids[0];

	/* A restart: a new scan, the same age; the NOTEs hold. */
	cr_assert_eq(engine_fixture_start(&f), 0, "%s", f.err);
	t_expire(&f, T_DAY_US, T_DELAY_WARNING_US, 0);
	engine_fixture_stop(&f);
	cr_assert_not_null((idx = engine_fixture_reopen(&f)), "%s", f.err);
	cr_expect_eq(engine_fixture_queue_ids(&f, "sender.test", ids, T_IDS_MAX), 1,
		     "warned twice");

	cr_assert_eq(engine_fixture_start(&f), 0, "%s", f.err);
	t_expire(&f, 6 * T_DAY_US, T_DELAY_WARNING_US, 3);
	engine_fixture_stop(&f);
	cr_assert_not_null((idx = engine_fixture_reopen(&f)), "%s", f.err);
	t_expect_states(idx, m, "", "the warned message, later");
	t_expect_states(idx, m_null, "", "the null sender's message, later");
	t_expect_states(idx, warning, "", "the delay warning itself");
	spool_index_totals(idx, &tot);
	cr_expect_eq(tot.messages, 1, "%lu held, want only the failure DSN",
		     (unsigned long)tot.messages);
	cr_assert_eq(engine_fixture_queue_ids(&f, "sender.test", ids, T_IDS_MAX), 1);
	cr_expect_neq(ids[0], warning);
	t_expect_dsn(&f, ids[0], want_failed);
	engine_fixture_fini(&f);
}
