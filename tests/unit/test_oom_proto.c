/* SPDX-License-Identifier: MIT */
/*
 * Out-of-memory paths of proto/ (dsn_build, smtp_client set-up and submit,
 * smtp_server set-up and DATA, an etrn_client session) through failalloc:
 * each case fails its first, second, ... allocation until it runs without
 * one; every failing run must return the documented error, leave the output
 * as it was (or whole lines only), leak nothing, and the session must go on
 * afterwards.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "failalloc.h"
#include "proto/dsn.h"
#include "proto/etrn_client.h"
#include "proto/smtp_client.h"
#include "proto/smtp_server.h"

#define OOM_RUNS_MAX 200
#define OOM_PREFIX "PREFIX"

/* --- dsn_build ----------------------------------------------------------- */

/* A body long enough for out to grow several times on its way. */
#define OOM_ORIG_LINES 200
#define OOM_ORIG_LINE "Subject: a header line that goes on for a while\r\n"

struct oom_dsn {
	struct buf out;
	char *orig;
	size_t orig_len;
	int full;
};

static void *oom_dsn_setup(int full)
{
	struct oom_dsn *d = calloc(1, sizeof(*d));
	size_t ll = strlen(OOM_ORIG_LINE);

	cr_assert_not_null(d);
	d->full = full;
	d->orig = malloc(OOM_ORIG_LINES * ll + 16);
	cr_assert_not_null(d->orig);
	for (size_t i = 0; i < OOM_ORIG_LINES; i++)
		memcpy(d->orig + i * ll, OOM_ORIG_LINE, ll);
	d->orig_len = OOM_ORIG_LINES * ll;
	memcpy(d->orig + d->orig_len, "\r\nbody\r\n", 8); /* end of headers, a body */
	d->orig_len += 8;
	buf_init(&d->out, 0);
	cr_assert_eq(buf_puts(&d->out, OOM_PREFIX), 0);
	return d;
}

static void *oom_dsn_setup_headers(void)
{
	return oom_dsn_setup(0);
}

static void *oom_dsn_setup_full(void)
{
	return oom_dsn_setup(1);
}

static void oom_dsn_teardown(void *ctx)
{
	struct oom_dsn *d = ctx;

	buf_free(&d->out);
	free(d->orig);
	free(d);
}

static int oom_dsn_build(void *ctx)
{
	struct oom_dsn *d = ctx;
	static const char diag[] = "550 5.1.1 <u@d.test>: no such user";
	const struct dsn_rcpt rcpt[2] = {
		{ .addr = "u@d.test", .addr_len = 8, .action = DSN_ACTION_FAILED,
		  .status = "5.1.1", .remote_mta = "mx.d.test", .diagnostic = diag,
		  .diag_len = sizeof(diag) - 1, .last_attempt = 1700000000 },
		{ .addr = "v@d.test", .addr_len = 8, .action = DSN_ACTION_FAILED,
		  .status = "4.4.7" },
	};
	const struct dsn_input in = {
		.reporting_mta = "mx.relay.test", .postmaster = "MAILER-DAEMON@mx.relay.test",
		.qid = "ABCDEF012345", .sender = "s@src.test", .sender_len = 10,
		.arrival = 1700000000, .now = 1700090000, .rcpt = rcpt, .nrcpt = 2,
		.orig = d->orig, .orig_len = d->orig_len, .return_full = d->full,
		.message_id_seed = "ABCDEF012345.1700090000",
	};
	unsigned flags;

	return dsn_build(&in, &d->out, &flags);
}

/* "On error out is left as it was"; then the same build works. */
static void oom_dsn_check(void *ctx, int rc, int injected)
{
	struct oom_dsn *d = ctx;
	size_t pl = strlen(OOM_PREFIX);

	cr_assert_eq(rc, injected ? -ENOMEM : 0, "dsn_build: rc %d", rc);
	if (injected) {
		cr_assert_eq(d->out.len, pl, "out left as it was: len %zu", d->out.len);
		cr_assert_eq(oom_dsn_build(d), 0);
	}
	cr_assert_eq(memcmp(d->out.data, OOM_PREFIX, pl), 0);
	cr_assert_not_null(memmem(d->out.data, d->out.len, "Status: 5.1.1", 13));
	cr_assert_not_null(memmem(d->out.data, d->out.len, "no such user", 12));
}

/* --- smtp_client ----------------------------------------------------------- */

static const struct smtp_client_conf oom_client_conf = {
	.helo_name = "relay.test", .reply_line_max = 512, .max_reply_lines = 100,
};

#define OOM_GREETING "220 mx.test ESMTP\r\n"
#define OOM_EHLO_REPLY "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250 8BITMIME\r\n"
#define OOM_RCPTS 5

struct oom_client {
	struct smtp_client *c;
	struct buf out;
};

static enum smtp_client_event oom_client_feed(struct oom_client *k, const char *s)
{
	enum smtp_client_event ev = SMTP_CLIENT_EV_NEED_INPUT;
	size_t n = strlen(s);

	cr_assert_eq(smtp_client_feed(k->c, s, n, &k->out, &ev), n);
	return ev;
}

static int oom_client_new(void *ctx)
{
	struct oom_client k;

	(void)ctx;
	k.c = smtp_client_new(&oom_client_conf, "192.0.2.1");
	if (!k.c)
		return -ENOMEM;
	smtp_client_free(k.c);
	return 0;
}

static void *oom_client_setup(void)
{
	struct oom_client *k = calloc(1, sizeof(*k));

	cr_assert_not_null(k);
	buf_init(&k->out, 0);
	k->c = smtp_client_new(&oom_client_conf, "192.0.2.1");
	cr_assert_not_null(k->c);
	cr_assert_eq(oom_client_feed(k, OOM_GREETING), SMTP_CLIENT_EV_NEED_INPUT);
	cr_assert_eq(oom_client_feed(k, OOM_EHLO_REPLY), SMTP_CLIENT_EV_READY);
	buf_free(&k->out); /* the EHLO went out; out starts empty, unallocated */
	return k;
}

static void oom_client_teardown(void *ctx)
{
	struct oom_client *k = ctx;

	smtp_client_free(k->c);
	buf_free(&k->out);
	free(k);
}

static int oom_client_submit(void *ctx)
{
	struct oom_client *k = ctx;
	static const char *const rcpt[OOM_RCPTS] = {
		"a@d.test", "b@d.test", "c@d.test", "d@d.test", "e@d.test",
	};
	static const size_t rcpt_len[OOM_RCPTS] = { 8, 8, 8, 8, 8 };
	const struct smtp_client_msg m = {
		.sender = "s@src.test", .sender_len = 10, .nrcpt = OOM_RCPTS,
		.rcpt = rcpt, .rcpt_len = rcpt_len, .size = 100,
	};

	return smtp_client_submit(k->c, &m, &k->out);
}

/* -ENOMEM: nothing was sent, every recipient deferred 451 (or no result
 * array at all), the session idle: the next submit pipelines MAIL, every
 * RCPT and DATA. */
static void oom_client_submit_check(void *ctx, int rc, int injected)
{
	struct oom_client *k = ctx;

	cr_assert_eq(rc, injected ? -ENOMEM : 0, "submit: rc %d", rc);
	if (injected) {
		cr_assert_eq(k->out.len, 0, "nothing sent: %zu bytes", k->out.len);
		for (unsigned i = 0; i < OOM_RCPTS; i++) {
			const struct smtp_client_result *r = smtp_client_result(k->c, i);

			if (r) {
				cr_assert_eq(r->status, SMTP_CLIENT_DEFERRED, "rcpt %u", i);
				cr_assert_eq(r->code, 451, "rcpt %u: %d", i, r->code);
			}
		}
		cr_assert_eq(oom_client_submit(k), 0);
	}
	cr_assert_not_null(memmem(k->out.data, k->out.len, "MAIL FROM:<s@src.test> SIZE=100",
				  strlen("MAIL FROM:<s@src.test> SIZE=100")));
	cr_assert_not_null(memmem(k->out.data, k->out.len, "RCPT TO:<e@d.test>\r\nDATA\r\n",
				  strlen("RCPT TO:<e@d.test>\r\nDATA\r\n")));
}

/* Delivered results whose reply text was lost (smtp_client.c keeps the
 * status when its text buffer cannot grow), in the last session. */
static unsigned oom_client_textless;

/* A whole delivery, greeting to 221, with every allocation (the session,
 * its command buffer, out) failing in turn: 0 when every recipient was
 * delivered; -ENOMEM when the session ended or deferred on our own
 * resource problem (451 4.3.0, local), with whole command lines in out. */
static int oom_client_session(void *ctx)
{
	static const char *const replies[] = {
		OOM_GREETING, OOM_EHLO_REPLY,
		"250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n"
		"250 2.1.5 ok\r\n250 2.1.5 ok\r\n354 go\r\n",
		"250 2.0.0 queued\r\n", "221 2.0.0 bye\r\n",
	};
	struct oom_client k = { 0 };
	enum smtp_client_event ev = SMTP_CLIENT_EV_NEED_INPUT;
	const struct smtp_client_result *r;
	int rc = 0;

	(void)ctx;
	buf_init(&k.out, 0);
	k.c = smtp_client_new(&oom_client_conf, "192.0.2.1");
	if (!k.c)
		return -ENOMEM;
	for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]) && rc == 0; i++) {
		size_t n = strlen(replies[i]), off = 0;

		while (off < n && ev != SMTP_CLIENT_EV_CLOSE) {
			off += smtp_client_feed(k.c, replies[i] + off, n - off, &k.out, &ev);
			if (ev == SMTP_CLIENT_EV_READY && i == 1)
				rc = oom_client_submit(&k);
			else if (ev == SMTP_CLIENT_EV_SEND_BODY &&
				 smtp_client_body_sent(k.c, &k.out) != 0)
				ev = smtp_client_abort(k.c, "cannot queue the dot");
			else if (ev == SMTP_CLIENT_EV_MSG_DONE && smtp_client_quit(k.c, &k.out))
				ev = smtp_client_abort(k.c, "cannot queue QUIT");
		}
	}
	cr_assert(k.out.len == 0 || memcmp(k.out.data + k.out.len - 2, "\r\n", 2) == 0,
		  "half a command in out");
	r = smtp_client_result(k.c, 0);
	if (rc == 0 && r && r->status == SMTP_CLIENT_DELIVERED) {
		oom_client_textless = 0;
		for (unsigned i = 0; i < OOM_RCPTS; i++) {
			r = smtp_client_result(k.c, i);
			cr_assert_eq(r->status, SMTP_CLIENT_DELIVERED);
			oom_client_textless += r->text_len == 0;
		}
	} else if (rc == 0) {
		/* Ended before the message: the session's own 451 4.3.0. */
		r = smtp_client_close_reason(k.c);
		cr_assert_not_null(r);
		cr_assert_eq(r->code, 451, "%d", r->code);
		cr_assert(r->local);
		rc = -ENOMEM;
	}
	smtp_client_free(k.c);
	buf_free(&k.out);
	return rc;
}

/* As failalloc_check_enomem(), but for the one failure the session takes
 * in its stride: a reply text it could not keep (then every result is
 * there, delivered, without text). */
static void oom_client_session_check(void *ctx, int rc, int injected)
{
	(void)ctx;
	if (injected && rc == 0)
		cr_assert_eq(oom_client_textless, OOM_RCPTS, "an injected failure vanished");
	else
		failalloc_check_enomem(ctx, rc, injected);
}

/* --- smtp_server --------------------------------------------------------- */

#define OOM_OUT_RESERVE 65536 /* replies never grow out: only the body allocates */
#define OOM_BODY_LINES 100
#define OOM_TX "MAIL FROM:<s@src.test>\r\nRCPT TO:<u@ok.test>\r\nDATA\r\n"

static unsigned oom_ids;

static void oom_new_id(void *arg, uint64_t *msgid, char *qid)
{
	(void)arg;
	*msgid = ++oom_ids;
	snprintf(qid, SMTP_QID_MAX, "%014X", oom_ids);
}

static enum smtp_rcpt_verdict oom_rcpt_check(void *arg, const char *d, size_t len, int relay)
{
	(void)arg;
	(void)relay;
	return len == 7 && memcmp(d, "ok.test", 7) == 0 ? SMTP_RCPT_OK : SMTP_RCPT_DENY;
}

static const struct smtp_server_conf oom_server_conf = {
	.hostname = "mx.test",
	.limits = { .command_max = 512, .line_max = 1000, .max_recipients = 10,
		    .size_max = 1u << 20, .max_errors = 10 },
	.rcpt_check = oom_rcpt_check,
	.new_id = oom_new_id,
};

static int oom_server_new(void *ctx)
{
	struct smtp_session *s;
	struct buf out;
	int rc;

	(void)ctx;
	s = smtp_server_new(&oom_server_conf, "192.0.2.7");
	if (!s)
		return -ENOMEM;
	buf_init(&out, 0);
	smtp_server_greeting(s, &out);
	/* out could not grow: the greeting is not half-written. */
	rc = out.len == 0 ? -ENOMEM : memcmp(out.data, "220 mx.test ", 12);
	buf_free(&out);
	smtp_server_free(s);
	return rc;
}

struct oom_server {
	struct smtp_session *s;
	struct buf out;
};

/* Feed all of p (whole); the event it ended with. */
static enum smtp_event oom_server_feed(struct oom_server *v, const char *p, size_t n)
{
	enum smtp_event ev = SMTP_EV_NEED_INPUT;

	cr_assert_eq(smtp_server_feed(v->s, p, n, &v->out, &ev), n);
	return ev;
}

/* A session in DATA, 354 sent. */
static void *oom_server_setup(void)
{
	struct oom_server *v = calloc(1, sizeof(*v));

	cr_assert_not_null(v);
	v->s = smtp_server_new(&oom_server_conf, "192.0.2.7");
	cr_assert_not_null(v->s);
	buf_init(&v->out, 0);
	cr_assert_eq(buf_reserve(&v->out, OOM_OUT_RESERVE), 0);
	smtp_server_greeting(v->s, &v->out);
	cr_assert_eq(oom_server_feed(v, "EHLO c.test\r\n" OOM_TX, strlen("EHLO c.test\r\n" OOM_TX)),
		     SMTP_EV_NEED_INPUT);
	cr_assert_not_null(memmem(v->out.data, v->out.len, "354 ", 4));
	v->out.len = 0;
	return v;
}

static void oom_server_teardown(void *ctx)
{
	struct oom_server *v = ctx;

	smtp_server_free(v->s);
	buf_free(&v->out);
	free(v);
}

/* The body, several times the first body allocation, then the dot:
 * 0 for a message to commit, -ENOMEM for "452 4.3.1". */
static int oom_server_body(void *ctx)
{
	struct oom_server *v = ctx;
	static const char line[] = "a line of the body, long enough to fill memory soon\r\n";
	enum smtp_event ev;

	oom_server_feed(v, "Subject: x\r\n\r\n", strlen("Subject: x\r\n\r\n"));
	for (int i = 0; i < OOM_BODY_LINES; i++)
		cr_assert_eq(oom_server_feed(v, line, sizeof(line) - 1), SMTP_EV_NEED_INPUT);
	ev = oom_server_feed(v, ".\r\n", 3);
	if (ev == SMTP_EV_COMMIT)
		return 0;
	cr_assert_eq(ev, SMTP_EV_NEED_INPUT);
	cr_assert(v->out.len >= 9 && memcmp(v->out.data, "452 4.3.1", 9) == 0,
		  "%.*s", (int)v->out.len, v->out.data);
	return -ENOMEM;
}

/* Refused with 452 4.3.1 and back to READY: the next transaction is
 * committed whole. */
static void oom_server_body_check(void *ctx, int rc, int injected)
{
	struct oom_server *v = ctx;
	size_t len;

	cr_assert_eq(rc, injected ? -ENOMEM : 0, "body: rc %d", rc);
	if (injected) {
		cr_assert(smtp_server_idle(v->s));
		v->out.len = 0;
		cr_assert_eq(oom_server_feed(v, OOM_TX, strlen(OOM_TX)), SMTP_EV_NEED_INPUT);
		cr_assert_not_null(memmem(v->out.data, v->out.len, "354 ", 4));
		cr_assert_eq(oom_server_body(v), 0);
	}
	smtp_tx_body(smtp_server_tx(v->s), &len);
	cr_assert_gt(len, OOM_BODY_LINES * 50);
	v->out.len = 0;
	smtp_server_commit_done(v->s, 0, &v->out);
	cr_assert_eq(memcmp(v->out.data, "250 2.0.0", 9), 0);
}

/* --- etrn_client: a whole session whose output cannot grow ------------- */

#define OOM_ETRN_REQS 3

/* The upstream's side, one reply per step, whatever we sent. */
static const char *const oom_etrn_replies[] = {
	"220 up.test ESMTP\r\n",
	"250-up.test\r\n250 AUTH PLAIN\r\n",
	"235 2.7.0 ok\r\n",
	"250 2.0.0 queuing for a.test started\r\n",
	"251 2.0.0 nothing queued for #q1\r\n",
	"250 2.0.0 queuing for b.test started\r\n",
	"221 2.0.0 bye\r\n",
};

/* The session from greeting to QUIT: 0 when every request was answered
 * with success; -ENOMEM when it ended on "451 4.3.0 cannot queue command"
 * (then out holds whole command lines only). */
static int oom_etrn_session(void *ctx)
{
	static const char *const req[OOM_ETRN_REQS] = { "a.test", "#q1", "@b.test" };
	static const struct etrn_client_conf conf = {
		.helo_name = "relay.test", .method = ETRN_CLIENT_ETRN, .user = "u",
		.pass = "p", .auth_cleartext = 1, .nreq = OOM_ETRN_REQS, .req = req,
		.reply_line_max = 512, .max_reply_lines = 100,
	};
	const size_t nrep = sizeof(oom_etrn_replies) / sizeof(oom_etrn_replies[0]);
	enum etrn_client_event ev = ETRN_CLIENT_EV_NEED_INPUT;
	const struct etrn_client_reply *why;
	struct etrn_client *c;
	struct buf out;
	int rc;

	(void)ctx;
	c = etrn_client_new(&conf);
	if (!c)
		return -ENOMEM;
	buf_init(&out, 0);
	for (size_t i = 0; i < nrep && ev == ETRN_CLIENT_EV_NEED_INPUT; i++) {
		size_t n = strlen(oom_etrn_replies[i]);

		cr_assert_eq(etrn_client_feed(c, oom_etrn_replies[i], n, &out, &ev), n);
	}
	cr_assert_eq(ev, ETRN_CLIENT_EV_CLOSE);
	cr_assert(out.len == 0 || memcmp(out.data + out.len - 2, "\r\n", 2) == 0,
		  "half a command in out");
	why = etrn_client_close_reason(c);
	if (etrn_client_ok(c)) {
		cr_assert_null(why);
		rc = 0;
	} else {
		cr_assert_not_null(why);
		cr_assert_eq(why->code, 451, "%d %s", why->code, why->text);
		cr_assert_str_eq(why->enh, "4.3.0");
		cr_assert(why->local);
		cr_assert_not_null(strstr(why->text, "cannot queue command"), "%s", why->text);
		rc = -ENOMEM;
	}
	buf_free(&out);
	etrn_client_free(c);
	return rc;
}

static const struct failalloc_case oom_proto_cases[] = {
	{ "dsn_build headers", oom_dsn_setup_headers, oom_dsn_build, oom_dsn_check,
	  oom_dsn_teardown },
	{ "dsn_build full", oom_dsn_setup_full, oom_dsn_build, oom_dsn_check, oom_dsn_teardown },
	{ "smtp_client_new", NULL, oom_client_new, failalloc_check_enomem, NULL },
	{ "smtp_client_submit", oom_client_setup, oom_client_submit, oom_client_submit_check,
	  oom_client_teardown },
	{ "etrn_client session", NULL, oom_etrn_session, failalloc_check_enomem, NULL },
	{ "smtp_client session", NULL, oom_client_session, oom_client_session_check, NULL },
	{ "smtp_server_new", NULL, oom_server_new, failalloc_check_enomem, NULL },
	{ "smtp_server body", oom_server_setup, oom_server_body, oom_server_body_check,
	  oom_server_teardown },
};

Test(oom_proto, every_allocation_fails_once)
{
	log_set_level(LOGL_ERR);
	failalloc_run_all(oom_proto_cases, sizeof(oom_proto_cases) / sizeof(oom_proto_cases[0]),
			  OOM_RUNS_MAX);
}
