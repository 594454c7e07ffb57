/* SPDX-License-Identifier: MIT */
/* Tests for core/budget.c and its use by proto/smtp_server.c (the node-wide
 * DATA memory budget, issue 10 item 5), and for smtpd_check_config() (the
 * start-up cross-check of message_size_limit, segment_size and
 * data_memory_limit, item 9). Sessions are replayed whole and byte by byte. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/budget.h"
#include "core/config.h"
#include "proto/smtp_server.h"
#include "proto/smtpd.h"

#define T_STEP (64u * 1024u) /* smtp_server's SMTP_BUDGET_STEP */
#define T_LIMIT (4u * T_STEP)
#define T_THREADS 4
#define T_ROUNDS 100000

Test(budget, take_and_give)
{
	struct budget *b = budget_new(100);

	cr_assert_not_null(b);
	cr_expect_eq(budget_take(b, 60), 0);
	cr_expect_eq(budget_take(b, 41), -ENOBUFS, "never over the limit");
	cr_expect_eq(budget_used(b), 60, "a refused take takes nothing");
	cr_expect_eq(budget_take(b, 40), 0, "exactly the limit is fine");
	cr_expect_eq(budget_take(b, 1), -ENOBUFS);
	budget_give(b, 100);
	cr_expect_eq(budget_used(b), 0);
	cr_expect_eq(budget_take(b, UINT64_MAX), -ENOBUFS, "no wrap-around");
	cr_expect_eq(budget_limit(b), 100);
	budget_free(b);
}

static struct budget *shared;

static void *taker(void *arg)
{
	(void)arg;
	for (int i = 0; i < T_ROUNDS; i++)
		if (budget_take(shared, 3) == 0) {
			cr_assert_leq(budget_used(shared), 10);
			budget_give(shared, 3);
		}
	return NULL;
}

Test(budget, threads_never_pass_the_limit)
{
	pthread_t t[T_THREADS];

	shared = budget_new(10);
	for (int i = 0; i < T_THREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, taker, NULL), 0);
	for (int i = 0; i < T_THREADS; i++)
		pthread_join(t[i], NULL);
	cr_expect_eq(budget_used(shared), 0);
	budget_free(shared);
}

/* ---- sessions with a budget ------------------------------------------- */

static unsigned t_ids;

static void t_new_id(void *arg, uint64_t *msgid, char *qid)
{
	(void)arg;
	*msgid = ++t_ids;
	snprintf(qid, SMTP_QID_MAX, "Q%u", t_ids);
}

static enum smtp_rcpt_verdict t_rcpt(void *arg, const char *d, size_t len, int relay)
{
	(void)arg;
	(void)d;
	(void)len;
	(void)relay;
	return SMTP_RCPT_OK;
}

static void t_conf(struct smtp_server_conf *c, struct budget *b)
{
	memset(c, 0, sizeof(*c));
	c->hostname = "mx.test";
	c->limits = (struct smtp_limits){ 512, 1000, 100, 16u << 20, 10, 0, 0 };
	c->rcpt_check = t_rcpt;
	c->new_id = t_new_id;
	c->data_budget = b;
}

/* Feed text in pieces of chunk bytes (0 = whole), committing each message
 * at once; returns the session's replies. */
static void t_feed(struct smtp_session *s, const char *p, size_t n, size_t chunk,
		   struct buf *out)
{
	size_t off = 0;
	enum smtp_event ev;

	while (off < n) {
		size_t k = chunk && n - off > chunk ? chunk : n - off;
		size_t used = smtp_server_feed(s, p + off, k, out, &ev);

		cr_assert_neq(ev, SMTP_EV_CLOSE, "%.*s", (int)out->len, out->data);
		if (ev == SMTP_EV_COMMIT)
			smtp_server_commit_done(s, 0, out);
		off += used;
	}
}

#define T_RETRY "MAIL FROM:<s@x.test>\r\nRCPT TO:<a@ok.test>\r\nDATA\r\n"
#define T_TX "EHLO c.test\r\n" T_RETRY

/* 1 if the replies in out contain want. */
static int t_has(struct buf *out, const char *want)
{
	cr_assert_eq(buf_append(out, "", 1), 0);
	out->len--;
	return strstr(out->data, want) != NULL;
}

/* A text of n bytes in 100-byte lines. */
static char *t_text(size_t n)
{
	char *p = malloc(n);

	cr_assert_not_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = i % 100 == 98 ? '\r' : i % 100 == 99 ? '\n' : 'x';
	return p;
}

/* One session holds most of the budget in an unfinished message; another
 * is refused with 452 4.3.1 at its end, stays in step (its next command is
 * answered) and holds nothing afterwards; once the first finishes, the
 * budget is all back. */
static void t_two_sessions(size_t chunk)
{
	struct budget *b = budget_new(T_LIMIT);
	struct smtp_server_conf conf;
	struct smtp_session *big, *other;
	struct buf o1, o2;
	size_t n = 3 * T_STEP / 100 * 100; /* whole lines */
	char *text = t_text(2 * n);

	t_conf(&conf, b);
	big = smtp_server_new(&conf, "192.0.2.1");
	other = smtp_server_new(&conf, "192.0.2.2");
	buf_init(&o1, 0);
	buf_init(&o2, 0);
	t_feed(big, T_TX, strlen(T_TX), chunk, &o1);
	t_feed(big, text, n, chunk, &o1);
	cr_expect_geq(budget_used(b), n, "the first body is counted");
	t_feed(other, T_TX, strlen(T_TX), chunk, &o2);
	t_feed(other, text, 2 * n, chunk, &o2);
	cr_expect_leq(budget_used(b), T_LIMIT);
	t_feed(other, ".\r\nNOOP\r\n", 9, chunk, &o2);
	cr_expect(t_has(&o2, "\r\n452 4.3.1 Insufficient system storage\r\n"
			"250 2.0.0 Ok\r\n"), "%.*s", (int)o2.len, o2.data);
	cr_expect_leq(budget_used(b), 3 * T_STEP + T_STEP, "the refused one holds nothing");
	t_feed(big, ".\r\n", 3, chunk, &o1);
	cr_expect(t_has(&o1, "250 2.0.0 Ok: queued as Q"), "%.*s", (int)o1.len,
		  o1.data);
	cr_expect_eq(budget_used(b), 0, "all given back after the commit");
	/* The refused sender tries again now that there is room: taken. */
	buf_reset(&o2);
	t_feed(other, T_RETRY, strlen(T_RETRY), chunk, &o2);
	t_feed(other, text, n, chunk, &o2);
	t_feed(other, ".\r\n", 3, chunk, &o2);
	cr_expect(t_has(&o2, "250 2.0.0 Ok: queued as Q"), "%.*s", (int)o2.len,
		  o2.data);
	cr_expect_eq(budget_used(b), 0);
	smtp_server_free(big);
	smtp_server_free(other);
	buf_free(&o1);
	buf_free(&o2);
	free(text);
	budget_free(b);
}

Test(budget, session_refused_whole) { t_two_sessions(0); }
Test(budget, session_refused_byte_by_byte) { t_two_sessions(1); }
Test(budget, session_refused_in_1000s) { t_two_sessions(1000); }

/* A session freed in the middle of DATA (the client left) gives its share
 * back. */
Test(budget, freed_mid_data_gives_back)
{
	struct budget *b = budget_new(T_LIMIT);
	struct smtp_server_conf conf;
	struct smtp_session *s;
	struct buf out;
	char *text = t_text(T_STEP / 100 * 100);

	t_conf(&conf, b);
	s = smtp_server_new(&conf, "192.0.2.1");
	buf_init(&out, 0);
	t_feed(s, T_TX, strlen(T_TX), 0, &out);
	t_feed(s, text, T_STEP / 100 * 100, 0, &out);
	cr_expect_gt(budget_used(b), 0);
	smtp_server_free(s);
	cr_expect_eq(budget_used(b), 0);
	buf_free(&out);
	free(text);
	budget_free(b);
}

/* ---- start-up cross-check ---------------------------------------------- */

struct check_case {
	const char *name;
	size_t segment_size, message_size_limit, data_memory_limit;
	int msl_set;                 /* message_size_limit written in the file */
	int want_rc;
	const char *want_err;        /* substring */
	size_t want_msl_max;         /* after: message_size_limit at most this */
};

static const struct check_case check_cases[] = {
	{ "defaults fit: 50M messages, 128M segments", 128u << 20, 50u << 20, 256u << 20, 0, 0,
	  NULL, 50u << 20 },
	{ "the 50M default is lowered to fit 64M", 64u << 20, 50u << 20,
	  256u << 20, 0, 0, NULL, 48u << 20 },
	{ "50M set in the file with 64M segments: refused", 64u << 20, 50u << 20,
	  256u << 20, 1, -1, "etrnd.conf:7: message_size_limit 52428800: such a message is stored as up to", 0 },
	{ "40M set, 64M segments: fine", 64u << 20, 40u << 20, 256u << 20, 1, 0, NULL, 40u << 20 },
	{ "1M segments, default size: lowered", 1u << 20, 50u << 20, 256u << 20, 0, 0,
	  NULL, 1u << 20 },
	{ "budget smaller than one message", 1u << 30, 100u << 20, 64u << 20, 1, -1,
	  "etrnd.conf:9: data_memory_limit 67108864: one message of message_size_limit", 0 },
};

Test(smtpd, check_config_defaults)
{
	struct config c;
	char err[CONFIG_ERR_MAX * 2] = "";

	config_defaults(&c);
	cr_expect_eq(smtpd_check_config(&c, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.message_size_limit, 50u << 20, "the default is kept");
	config_free(&c);
}

Test(smtpd, check_config)
{
	for (size_t i = 0; i < sizeof(check_cases) / sizeof(check_cases[0]); i++) {
		const struct check_case *t = &check_cases[i];
		struct config c;
		char err[CONFIG_ERR_MAX * 2] = "";
		int rc;

		config_defaults(&c);
		c.segment_size = t->segment_size;
		c.message_size_limit = t->message_size_limit;
		c.data_memory_limit = t->data_memory_limit;
		snprintf(c.segment_size_at, sizeof(c.segment_size_at), "etrnd.conf:5");
		if (t->msl_set)
			snprintf(c.message_size_limit_at, sizeof(c.message_size_limit_at),
				 "etrnd.conf:7");
		snprintf(c.data_memory_limit_at, sizeof(c.data_memory_limit_at), "etrnd.conf:9");
		rc = smtpd_check_config(&c, err, sizeof(err));
		cr_expect_eq(rc, t->want_rc, "%s: %s", t->name, err);
		if (t->want_err)
			cr_expect(strstr(err, t->want_err) != NULL, "%s: %s", t->name, err);
		if (rc == 0) {
			cr_expect_leq(c.message_size_limit, t->want_msl_max, "%s", t->name);
			cr_expect_leq(smtpd_record_max(&c), c.segment_size, "%s", t->name);
			/* Lowered to the largest that fits: one more byte would not. */
			if (c.message_size_limit++ < t->message_size_limit)
				cr_expect_gt(smtpd_record_max(&c), c.segment_size, "%s", t->name);
		}
		config_free(&c);
	}
}
