/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for proto/smtp_check.c and the policy-check hook of
 * proto/smtp_server.c: a scripted checker chain drives real sessions
 * (input whole and byte by byte), with answers given at once or later;
 * the replies, the events and the stored bodies are compared exactly.
 * Also the header edits on stored bodies.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_check.h"
#include "proto/smtp_server.h"

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
	(void)relay;
	return len == 7 && !memcmp(d, "ok.test", 7) ? SMTP_RCPT_OK : SMTP_RCPT_DENY;
}

static time_t t_clock(void *arg)
{
	(void)arg;
	return (time_t)1795480721;
}

/* The scripted checker: its verdict comes from the argument it sees
 * ("rej@..." rejects, "tmp@..." tempfails, ...), from the stage (a table),
 * at once or later (t_later). */
struct t_ck {
	const char *name;
	int later;                      /* keep the job; the test answers */
	struct smtp_check_job *job;     /* kept job */
	enum smtp_verdict_kind at[SMTP_CHECK_STAGES];
	const char *reply[SMTP_CHECK_STAGES];
	const char *add_header;         /* "Name: value" added at EOM */
	unsigned calls[SMTP_CHECK_STAGES];
	int ended;
	char seen[SMTP_CHECK_STAGES][300];
};

static void t_start(void *arg, void **state, const struct smtp_session *s,
		    enum smtp_check_stage stage, struct smtp_check_job *job)
{
	struct t_ck *ck = arg;
	struct smtp_verdict v = { .kind = ck->at[stage], .who = ck->name };
	size_t n;
	const char *a = smtp_server_check_arg(s, &n);

	*state = ck;
	ck->calls[stage]++;
	snprintf(ck->seen[stage], sizeof(ck->seen[stage]), "%.*s", (int)n, a);
	if (n > 4 && !memcmp(a, "rej@", 4))
		v.kind = SMTP_VERDICT_REJECT;
	if (n > 4 && !memcmp(a, "tmp@", 4))
		v.kind = SMTP_VERDICT_TEMPFAIL;
	if (ck->reply[stage]) {
		v.reply = ck->reply[stage];
		v.reply_len = strlen(v.reply);
	}
	if (stage == SMTP_CHECK_EOM && ck->add_header) {
		const char *colon = strchr(ck->add_header, ':');

		cr_assert_eq(smtp_check_edit(job, SMTP_HDR_ADD, 0, ck->add_header,
					     (size_t)(colon - ck->add_header), colon + 2,
					     strlen(colon + 2)), 0);
	}
	if (ck->later) {
		ck->job = job;
		return;
	}
	smtp_check_answer(job, &v);
}

static void t_end(void *arg, void *state)
{
	struct t_ck *ck = arg;

	if (state)
		cr_assert_eq(state, ck);
	ck->ended++;
}

/* A session driven like smtpd drives it. */
struct t_run {
	struct smtp_server_conf conf;
	struct smtp_check_chain *ch;
	struct smtp_check_run *run;
	struct smtp_session *s;
	struct buf out;
	char body[4096];       /* the last committed body */
	int commits;
	int closed;
	int async_done;        /* the chain's done() was called */
};

static void t_done(void *arg, const struct smtp_verdict *v, const struct buf *edits);

static void t_setup(struct t_run *r, struct t_ck *cks, unsigned n)
{
	unsigned i;

	memset(r, 0, sizeof(*r));
	r->conf.hostname = "mx.test";
	r->conf.limits.command_max = 512;
	r->conf.limits.line_max = 1000;
	r->conf.limits.max_recipients = 10;
	r->conf.limits.size_max = 10000;
	r->conf.limits.max_errors = 20;
	r->conf.rcpt_check = t_rcpt;
	r->conf.new_id = t_new_id;
	r->conf.clock = t_clock;
	r->ch = smtp_check_chain_new();
	for (i = 0; i < n; i++) {
		struct smtp_checker c = { cks[i].name, 0, t_start, t_end, &cks[i] };
		unsigned st;

		for (st = SMTP_CHECK_CONNECT; st < SMTP_CHECK_STAGES; st++)
			c.stages |= SMTP_CHECK_BIT(st);
		cr_assert_eq(smtp_check_chain_add(r->ch, &c), 0);
	}
	r->conf.check_stages = smtp_check_chain_stages(r->ch);
	r->run = smtp_check_run_new(r->ch, t_done, r);
	r->s = smtp_server_new(&r->conf, "192.0.2.1");
	buf_init(&r->out, 0);
	t_ids = 0;
}

static void t_teardown(struct t_run *r)
{
	smtp_check_run_free(r->run);
	smtp_server_free(r->s);
	smtp_check_chain_free(r->ch);
	buf_free(&r->out);
}

/* Act on an event as smtpd does; returns 1 when the session waits for an
 * answer the test gives later. */
static int t_event(struct t_run *r, enum smtp_event ev)
{
	for (;;) {
		if (ev == SMTP_EV_CHECK) {
			if (!smtp_check_run_start(r->run, r->s, smtp_server_check_stage(r->s)))
				return 1;
			ev = smtp_server_check_done(r->s, smtp_check_run_verdict(r->run),
						    smtp_check_run_edits(r->run), &r->out);
			continue;
		}
		if (ev == SMTP_EV_COMMIT) {
			size_t n;
			const char *b = smtp_tx_body(smtp_server_tx(r->s), &n);

			snprintf(r->body, sizeof(r->body), "%s%.*s",
				 smtp_tx_held(smtp_server_tx(r->s)) ? "[held]" : "", (int)n, b);
			r->commits++;
			smtp_server_commit_done(r->s, 0, &r->out);
			return 0;
		}
		if (ev == SMTP_EV_CLOSE)
			r->closed = 1;
		return 0;
	}
}

static void t_done(void *arg, const struct smtp_verdict *v, const struct buf *edits)
{
	struct t_run *r = arg;

	r->async_done++;
	(void)t_event(r, smtp_server_check_done(r->s, v, edits, &r->out));
}

/* Feed text in chunks of step octets (0: whole). */
static void t_feed(struct t_run *r, const char *in, size_t step)
{
	size_t off = 0, n = strlen(in);

	while (off < n && !r->closed) {
		size_t k = step && n - off > step ? step : n - off;
		enum smtp_event ev;
		size_t used = smtp_server_feed(r->s, in + off, k, &r->out, &ev);

		off += used;
		if (t_event(r, ev))
			return; /* the test answers; it feeds the rest itself */
	}
}

static void t_greet(struct t_run *r)
{
	smtp_server_greeting(r->s, &r->out);
	if (smtp_server_check_stage(r->s) != SMTP_CHECK_NONE)
		(void)t_event(r, SMTP_EV_CHECK);
}

static const char t_mail[] =
	"EHLO client.test\r\n"
	"MAIL FROM:<a@b.test>\r\n"
	"RCPT TO:<x@ok.test>\r\n"
	"RCPT TO:<rej@ok.test>\r\n"
	"RCPT TO:<tmp@ok.test>\r\n"
	"DATA\r\n"
	"Subject: hi\r\n"
	"\r\n"
	"body\r\n"
	".\r\n"
	"QUIT\r\n";

static const char *t_tail(const struct t_run *r)
{
	/* The replies after the EHLO block ("250 SMTPUTF8"). */
	const char *p = strstr(r->out.data, "250 SMTPUTF8\r\n");

	cr_assert(p, "no EHLO reply: %.*s", (int)r->out.len, r->out.data);
	return p + 14;
}

Test(smtp_check, rcpt_reject_and_tempfail_per_recipient_whole_and_bytewise)
{
	for (size_t step = 0; step <= 1; step++) {
		struct t_ck ck = { .name = "ck" };
		struct t_run r;

		ck.reply[SMTP_CHECK_RCPT] = "550 5.7.1 not this one";
		t_setup(&r, &ck, 1);
		t_greet(&r);
		t_feed(&r, t_mail, step);
		buf_append(&r.out, "", 1);
		cr_assert_str_eq(t_tail(&r),
			"250 2.1.0 Ok\r\n"
			"250 2.1.5 Ok\r\n"
			"550 5.7.1 not this one\r\n"
			/* the checker's 5xx text cannot go with a tempfail */
			"451 4.7.1 Service unavailable - try again later\r\n"
			"354 End data with <CR><LF>.<CR><LF>\r\n"
			"250 2.0.0 Ok: queued as Q1\r\n"
			"221 2.0.0 Bye\r\n", "step %zu", step);
		cr_assert_eq(r.commits, 1);
		cr_assert_eq(ck.calls[SMTP_CHECK_CONNECT], 1);
		cr_assert_eq(ck.calls[SMTP_CHECK_RCPT], 3);
		cr_assert_str_eq(ck.seen[SMTP_CHECK_HELO], "client.test");
		cr_assert_str_eq(ck.seen[SMTP_CHECK_MAIL], "a@b.test");
		t_teardown(&r);
		cr_assert_eq(ck.ended, 1);
	}
}

Test(smtp_check, later_answers_hold_input_until_given)
{
	struct t_ck ck = { .name = "slow", .later = 1 };
	struct t_run r;
	enum smtp_event ev;
	const struct smtp_verdict cont = { .kind = SMTP_VERDICT_CONTINUE, .who = "slow" };

	t_setup(&r, &ck, 1);
	smtp_server_greeting(r.s, &r.out);
	cr_assert_eq(r.out.len, 0, "greeting before the connect verdict");
	cr_assert_eq(t_event(&r, SMTP_EV_CHECK), 1);
	/* Pipelined input is refused while the check is out. */
	cr_assert_eq(smtp_server_feed(r.s, "EHLO x\r\n", 8, &r.out, &ev), 0);
	cr_assert_eq(ev, SMTP_EV_CHECK);
	smtp_check_answer(ck.job, &cont);
	cr_assert_eq(r.async_done, 1);
	buf_append(&r.out, "", 1);
	cr_assert_str_eq(r.out.data, "220 mx.test ESMTP etrnd\r\n");
	t_teardown(&r);
}

Test(smtp_check, first_refusal_wins_and_later_checkers_are_not_asked)
{
	struct t_ck cks[2] = { { .name = "one" }, { .name = "two" } };
	struct t_run r;

	cks[0].at[SMTP_CHECK_MAIL] = SMTP_VERDICT_REJECT;
	cks[1].at[SMTP_CHECK_MAIL] = SMTP_VERDICT_TEMPFAIL;
	t_setup(&r, cks, 2);
	t_greet(&r);
	t_feed(&r, "EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@ok.test>\r\n", 0);
	buf_append(&r.out, "", 1);
	cr_assert_str_eq(t_tail(&r), "550 5.7.1 Command rejected\r\n"
			 "503 5.5.1 Error: need MAIL command\r\n");
	cr_assert_eq(cks[0].calls[SMTP_CHECK_MAIL], 1);
	cr_assert_eq(cks[1].calls[SMTP_CHECK_MAIL], 0);
	cr_assert_eq(cks[1].calls[SMTP_CHECK_HELO], 1);
	t_teardown(&r);
}

/* RFC 5321 3.1: after a 554 greeting the server waits for QUIT and
 * answers 503 to anything else; a 421 greeting closes. */
Test(smtp_check, connect_reject_greets_554_and_serves_only_quit)
{
	struct t_ck ck = { .name = "ck" };
	struct t_run r;

	ck.at[SMTP_CHECK_CONNECT] = SMTP_VERDICT_REJECT;
	ck.reply[SMTP_CHECK_CONNECT] = "554-5.7.1 listed\r\n554 5.7.1 go away";
	t_setup(&r, &ck, 1);
	t_greet(&r);
	cr_assert_eq(r.closed, 0, "a 554 greeting must wait for QUIT");
	t_feed(&r, "EHLO c\r\nMAIL FROM:<a@b.test>\r\nQUIT\r\n", 0);
	buf_append(&r.out, "", 1);
	cr_assert_str_eq(r.out.data, "554-5.7.1 listed\r\n554 5.7.1 go away\r\n"
			 "503 5.5.1 Error: access denied, only QUIT is served\r\n"
			 "503 5.5.1 Error: access denied, only QUIT is served\r\n"
			 "221 2.0.0 Bye\r\n");
	cr_assert_eq(r.closed, 1);
	cr_assert_eq(ck.calls[SMTP_CHECK_HELO], 0, "no check after the refusal");
	t_teardown(&r);
}

Test(smtp_check, connect_tempfail_greets_421_and_closes)
{
	struct t_ck ck = { .name = "ck" };
	struct t_run r;

	ck.at[SMTP_CHECK_CONNECT] = SMTP_VERDICT_TEMPFAIL;
	t_setup(&r, &ck, 1);
	t_greet(&r);
	buf_append(&r.out, "", 1);
	cr_assert_str_eq(r.out.data, "421 4.7.1 mx.test Service unavailable - try again later\r\n");
	cr_assert_eq(r.closed, 1);
	cr_assert_str_eq(smtp_server_end_reason(r.s), "refused by a policy check");
	t_teardown(&r);
}

Test(smtp_check, bad_reply_texts_get_the_default)
{
	static const char *const bad[] = {
		"250 2.0.0 fine",          /* not a refusal */
		"550 5.7.1 a\r\n551 5.7.1 b", /* two codes */
		"550-5.7.1 a",             /* no last line */
		"550 5.7.1 a\r\n",         /* trailing CRLF */
		"55x no",
		"550 nul\001",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct t_ck ck = { .name = "ck" };
		struct t_run r;

		ck.at[SMTP_CHECK_MAIL] = SMTP_VERDICT_REJECT;
		ck.reply[SMTP_CHECK_MAIL] = bad[i];
		t_setup(&r, &ck, 1);
		t_greet(&r);
		t_feed(&r, "EHLO c\r\nMAIL FROM:<a@b.test>\r\n", 0);
		buf_append(&r.out, "", 1);
		cr_assert_str_eq(t_tail(&r), "550 5.7.1 Command rejected\r\n", "case %zu", i);
		t_teardown(&r);
	}
}

Test(smtp_check, eom_header_edits_discard_and_hold)
{
	/* add header: stored after our Received: block's headers */
	struct t_ck ck = { .name = "ck", .add_header = "X-Spam: no" };
	struct t_run r;

	t_setup(&r, &ck, 1);
	t_greet(&r);
	t_feed(&r, "EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@ok.test>\r\nDATA\r\n"
		   "Subject: hi\r\n\r\nbody\r\n.\r\n", 1);
	cr_assert_eq(r.commits, 1);
	cr_assert(strstr(r.body, "Subject: hi\r\nX-Spam: no\r\n\r\nbody\r\n"), "%s", r.body);
	t_teardown(&r);

	/* discard: 250, nothing committed */
	struct t_ck dk = { .name = "dk" };
	dk.at[SMTP_CHECK_RCPT] = SMTP_VERDICT_DISCARD;
	t_setup(&r, &dk, 1);
	t_greet(&r);
	t_feed(&r, "EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@ok.test>\r\nDATA\r\nhi\r\n.\r\n", 0);
	buf_append(&r.out, "", 1);
	cr_assert_eq(r.commits, 0);
	cr_assert(strstr(r.out.data, "250 2.0.0 Ok: queued as Q1\r\n"), "%s", r.out.data);
	t_teardown(&r);

	/* hold at HELO: every message of the session is stored held */
	struct t_ck hk = { .name = "hk" };
	hk.at[SMTP_CHECK_HELO] = SMTP_VERDICT_HOLD;
	t_setup(&r, &hk, 1);
	t_greet(&r);
	t_feed(&r, "EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@ok.test>\r\nDATA\r\nhi\r\n.\r\n"
		   "MAIL FROM:<a@b.test>\r\nRCPT TO:<x@ok.test>\r\nDATA\r\nhi\r\n.\r\n", 0);
	cr_assert_eq(r.commits, 2);
	cr_assert(!strncmp(r.body, "[held]Received:", 15), "%s", r.body);
	t_teardown(&r);
}

/* A stored body and edits applied to it. */
static void t_edit_case(const char *body, const char *want,
		void (*edits)(struct smtp_check_job *job))
{
	struct smtp_check_chain *ch = smtp_check_chain_new();
	struct smtp_check_run *run;
	struct buf b;
	/* the job is the run's: get at it through a checker */
	struct t_ck ck = { .name = "e", .later = 1 };
	struct smtp_checker c = { "e", SMTP_CHECK_BIT(SMTP_CHECK_EOM), t_start, NULL, &ck };
	struct smtp_server_conf conf = { 0 };
	struct smtp_session *s;

	conf.hostname = "h";
	conf.limits.command_max = 512;
	conf.rcpt_check = t_rcpt;
	conf.new_id = t_new_id;
	s = smtp_server_new(&conf, "x");
	cr_assert_eq(smtp_check_chain_add(ch, &c), 0);
	run = smtp_check_run_new(ch, t_done, NULL);
	cr_assert_eq(smtp_check_run_start(run, s, SMTP_CHECK_EOM), 0);
	edits(ck.job);
	buf_init(&b, 0);
	buf_puts(&b, body);
	cr_assert_eq(smtp_check_apply_edits(&b, smtp_check_run_edits(run)), 0);
	buf_append(&b, "", 1);
	cr_assert_str_eq(b.data, want);
	buf_free(&b);
	smtp_check_run_free(run);
	smtp_check_chain_free(ch);
	smtp_server_free(s);
}

static void t_ed_insert_change_delete(struct smtp_check_job *j)
{
	cr_assert_eq(smtp_check_edit(j, SMTP_HDR_INSERT, 0, "X-First", 7, "1", 1), 0);
	cr_assert_eq(smtp_check_edit(j, SMTP_HDR_CHANGE, 2, "to", 2, "c@d", 3), 0);
	cr_assert_eq(smtp_check_edit(j, SMTP_HDR_CHANGE, 1, "Subject", 7, "", 0), 0);
	cr_assert_eq(smtp_check_edit(j, SMTP_HDR_ADD, 0, ".Dot", 4, "v\nw", 3), 0);
}

static void t_ed_none_there(struct smtp_check_job *j)
{
	cr_assert_eq(smtp_check_edit(j, SMTP_HDR_CHANGE, 1, "X-No", 4, "", 0), 0);
	cr_assert_eq(smtp_check_edit(j, SMTP_HDR_CHANGE, 1, "X-New", 5, "n", 1), 0);
}

static void t_ed_too_much(struct smtp_check_job *j)
{
	static char big[SMTP_CHECK_EDITS_MAX];

	memset(big, 'a', sizeof(big));
	cr_assert_eq(smtp_check_edit(j, SMTP_HDR_ADD, 0, "X", 1, big, sizeof(big)), -ENOBUFS);
}

Test(smtp_check, header_edits_on_stored_bodies)
{
	t_edit_case("Received: a\r\n\tb\r\nTo: a@b\r\nSubject: s\r\n continued\r\nTo: x@y\r\n\r\n"
		    "To: not a header\r\n",
		    "X-First: 1\r\nReceived: a\r\n\tb\r\nTo: a@b\r\nto: c@d\r\n..Dot: v\r\nw\r\n\r\n"
		    "To: not a header\r\n", t_ed_insert_change_delete);
	t_edit_case("A: 1\r\n\r\nb\r\n", "A: 1\r\nX-New: n\r\n\r\nb\r\n", t_ed_none_there);
	/* no empty line: the whole body is headers */
	t_edit_case("A: 1\r\n", "A: 1\r\nX-New: n\r\n", t_ed_none_there);
	t_edit_case("A: 1\r\n\r\n", "A: 1\r\n\r\n", t_ed_too_much);
}
