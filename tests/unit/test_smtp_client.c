/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for proto/smtp_client.c: golden dialogues in C tables (server
 * bytes in -> exact client bytes out, per-recipient results, final event).
 * A small driver plays the engine: it submits the case's messages whenever
 * the session is idle, sends the body on SEND_BODY and QUITs at the end.
 * Every case is replayed with the server input whole, then one byte at a
 * time, then in other chunk sizes; all runs must give identical results.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "proto/smtp_client.h"

#define T_RESULT_MAX 16384

enum t_conf { T_NORMAL = 0, T_SMALL };

static const struct smtp_client_conf t_confs[] = {
	[T_NORMAL] = { .helo_name = "relay.test", .reply_line_max = 512, .max_reply_lines = 100 },
	[T_SMALL] = { .helo_name = "relay.test", .reply_line_max = 32, .max_reply_lines = 4 },
};

/* ---- messages ------------------------------------------------------------ */

#define T_BODY "Subject: t\r\n\r\nhi\r\n"

struct t_msg {
	const char *sender;
	const char *rcpt[8];
	uint64_t size;
	int eightbit;
	int smtputf8;
};

/* Submitted by letter: case field msgs = "AB" submits A, then B. */
static const struct t_msg t_msgs[] = {
	['A' - 'A'] = { "s@x.test", { "a@c.test" }, 100, 0, 0 },
	['B' - 'A'] = { "t@x.test", { "b@c.test" }, 200, 0, 0 },
	['C' - 'A'] = { "s@x.test", { "a@c.test", "b@c.test", "c@c.test" }, 100, 0, 0 },
	['E' - 'A'] = { "s@x.test", { "a@c.test" }, 100, 1, 0 },         /* 8-bit */
	['F' - 'A'] = { "s@x.test", { "r1@c.test", "r2@c.test", "r3@c.test", "r4@c.test",
		"r5@c.test", "r6@c.test" }, 100, 0, 0 },
	['L' - 'A'] = { "s@x.test", { "a@c.test" }, 5000, 0, 0 },       /* large */
	['N' - 'A'] = { "", { "a@c.test" }, 100, 0, 0 },                 /* null sender */
	['U' - 'A'] = { "s@x.test", { "a@c.test", "\xc3\xbc@c.test" }, 100, 0, 0 },
	['V' - 'A'] = { "s@x.test", { "\xc3\xbc@c.test" }, 100, 0, 0 },
	['W' - 'A'] = { "s@x.test", { "a@c.test" }, 100, 0, 1 },         /* SMTPUTF8 flag */
	['X' - 'A'] = { "s@x.test", { "a@c.test", "bad\r\n@c.test", "b@c.test" }, 100, 0, 0 },
	['Y' - 'A'] = { "s\r@x.test", { "a@c.test" }, 100, 0, 0 },     /* bad sender */
};

/* ---- driver -------------------------------------------------------------- */

struct t_case {
	const char *name;
	enum t_conf conf;
	const char *in;        /* everything the server says */
	size_t in_len;         /* 0: strlen(in); set it for inputs with NUL */
	const char *msgs;      /* messages to submit, in turn, when idle */
	int quit;              /* QUIT after the last message */
	int timeout;           /* after the input: record the timeout, expire it */
	int eof;               /* after the input (and timeout): EOF */
	const char *want_out;  /* every byte the client wrote, bodies included */
	const char *want_res;  /* see t_record() */
	enum smtp_client_event want_ev; /* NEED_INPUT (still open) or CLOSE */
};

/* The STARTTLS and AUTH side of a case (t_tls_cases, t_auth_cases; the
 * others run with none). */
struct t_tls {
	enum smtp_client_tls level;
	int reject;            /* on EV_STARTTLS: reject, as verify does with a
	                          bad certificate; else the handshake "works" */
	const char *user;      /* AUTH PLAIN credentials; NULL: none */
	const char *pass;
};

static const struct t_tls t_tls_none = { SMTP_CLIENT_TLS_NONE, 0, NULL, NULL };

struct t_result {
	char out[T_RESULT_MAX];
	char res[T_RESULT_MAX];
	size_t res_len;
	enum smtp_client_event ev;
};

__attribute__((format(printf, 2, 3)))
static void t_printf(struct t_result *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(r->res + r->res_len, sizeof(r->res) - r->res_len, fmt, ap);
	va_end(ap);
	cr_assert(n >= 0 && (size_t)n < sizeof(r->res) - r->res_len, "res too big");
	r->res_len += (size_t)n;
}

static const char *t_errname(int rc)
{
	switch (rc) {
	case 0: return "0";
	case -E2BIG: return "E2BIG";
	case -EMEDIUMTYPE: return "EMEDIUMTYPE";
	case -EILSEQ: return "EILSEQ";
	case -EBADMSG: return "EBADMSG";
	case -ENOMEM: return "ENOMEM";
	case -EBUSY: return "EBUSY";
	case -EINVAL: return "EINVAL";
	default: return "?";
	}
}

static void t_print_result(struct t_result *r, const struct smtp_client_result *x)
{
	static const char st[] = "?DTB";

	t_printf(r, "%c%s %d %s %.*s\n", st[x->status], x->local ? "*" : "", x->code,
			x->enh, (int)x->text_len, x->text);
}

/* "<letter> rc=<submit rc> code=<msg code>\n" then one line per recipient:
 * " <D|T|B>[*] code enh text" (D delivered, T deferred, B bounced, *
 * local). */
static void t_record(struct t_result *r, struct smtp_client *c, char letter,
		const struct t_msg *m, int rc)
{
	unsigned i;

	t_printf(r, "%c rc=%s code=%d\n", letter, t_errname(rc), smtp_client_msg_code(c));
	for (i = 0; i < 8 && m->rcpt[i]; i++) {
		const struct smtp_client_result *x = smtp_client_result(c, i);

		cr_assert(x != NULL, "result %u", i);
		cr_assert(x->status >= SMTP_CLIENT_DELIVERED && x->status <= SMTP_CLIENT_BOUNCED);
		cr_assert_eq((int)x->status, x->code / 100 == 2 ? SMTP_CLIENT_DELIVERED :
				x->code / 100 == 4 ? SMTP_CLIENT_DEFERRED : SMTP_CLIENT_BOUNCED);
		t_printf(r, " ");
		t_print_result(r, x);
	}
	cr_assert_null(smtp_client_result(c, i));
}

struct t_drv {
	const struct t_case *tc;
	const struct t_tls *tls;
	struct smtp_client *c;
	struct buf out;
	struct t_result *r;
	size_t next;           /* next message in tc->msgs */
	int cur;               /* letter of the message in flight, 0 if none */
	int behind;            /* letter of one submitted behind cur's dot */
};

/* t_behind_cases: the driver submits the next message as soon as
 * smtp_client_can_submit() says so after a body (RFC 2920 3.1), as the
 * drain does. */
static int t_pipeline_behind;

static void t_submit_msg(struct t_drv *d, char letter, int *rc)
{
	const struct t_msg *m = &t_msgs[letter - 'A'];
	size_t lens[8];
	struct smtp_client_msg sm;
	unsigned n;

	for (n = 0; n < 8 && m->rcpt[n]; n++)
		lens[n] = strlen(m->rcpt[n]);
	sm.sender = m->sender;
	sm.sender_len = strlen(m->sender);
	sm.nrcpt = n;
	sm.rcpt = m->rcpt;
	sm.rcpt_len = lens;
	sm.size = m->size;
	sm.eightbit = m->eightbit;
	sm.smtputf8 = m->smtputf8;
	*rc = smtp_client_submit(d->c, &sm, &d->out);
}

/* The session is idle: submit the next message(s), or QUIT. */
static void t_idle(struct t_drv *d)
{
	while (d->tc->msgs[d->next]) {
		char letter = d->tc->msgs[d->next++];
		int rc;

		t_submit_msg(d, letter, &rc);
		if (rc == 0) {
			d->cur = letter;
			return;
		}
		/* Decided without the server: results are there already. */
		t_record(d->r, d->c, letter, &t_msgs[letter - 'A'], rc);
	}
	if (d->tc->quit)
		cr_assert_eq(smtp_client_quit(d->c, &d->out), 0);
}

/* Act on one event like the engine would. */
static void t_event(struct t_drv *d, enum smtp_client_event ev)
{
	switch (ev) {
	case SMTP_CLIENT_EV_READY:
		t_printf(d->r, "ready caps=0x%x\n", smtp_client_caps(d->c, NULL));
		t_idle(d);
		break;
	case SMTP_CLIENT_EV_SEND_BODY:
		cr_assert_eq(smtp_client_timeout_ms(d->c), SMTP_CLIENT_TIMEOUT_BLOCK_MS);
		cr_assert_eq(buf_append(&d->out, T_BODY, strlen(T_BODY)), 0);
		cr_assert_eq(smtp_client_body_sent(d->c, &d->out), 0);
		if (t_pipeline_behind && d->tc->msgs[d->next] && smtp_client_can_submit(d->c)) {
			char letter = d->tc->msgs[d->next++];
			int rc;

			t_submit_msg(d, letter, &rc);
			if (rc == 0)
				d->behind = letter;
			else
				t_record(d->r, d->c, letter, &t_msgs[letter - 'A'], rc);
		}
		break;
	case SMTP_CLIENT_EV_MSG_DONE:
		cr_assert(d->cur != 0, "MSG_DONE without a message");
		t_record(d->r, d->c, (char)d->cur, &t_msgs[d->cur - 'A'], 0);
		d->cur = d->behind;
		d->behind = 0;
		if (!d->cur && !smtp_client_closed(d->c))
			t_idle(d);
		break;
	case SMTP_CLIENT_EV_STARTTLS:
		/* The engine runs the handshake here; what the server says
		 * next is the plaintext after it. */
		t_printf(d->r, "starttls\n");
		cr_assert_eq(smtp_client_timeout_ms(d->c), SMTP_CLIENT_TIMEOUT_TLS_MS);
		cr_assert_eq(smtp_client_tls_on(d->c), 0);
		if (d->tls->reject) {
			cr_assert_eq(smtp_client_tls_reject(d->c, &d->out, "4.7.5",
					"certificate verification failed for mx.c.test: "
					"hostname mismatch"), 0);
		} else {
			cr_assert_eq(smtp_client_tls_up(d->c, &d->out), 0);
			cr_assert_eq(smtp_client_tls_on(d->c), 1);
		}
		break;
	default:
		break;
	}
}

static void t_run(const struct t_case *tc, const struct t_tls *tls, size_t chunk,
		struct t_result *r)
{
	size_t n = tc->in_len ? tc->in_len : strlen(tc->in), i = 0;
	enum smtp_client_event ev = SMTP_CLIENT_EV_NEED_INPUT;
	const struct smtp_client_result *why;
	struct t_drv d;
	char *in;

	memset(r, 0, sizeof(*r));
	memset(&d, 0, sizeof(d));
	log_set_level(LOGL_ERR);
	d.tc = tc;
	d.tls = tls;
	d.r = r;
	/* An exact-size heap copy, so ASan sees any read past the input. */
	in = malloc(n ? n : 1);
	cr_assert(in != NULL);
	memcpy(in, tc->in, n);
	buf_init(&d.out, 1u << 20);
	d.c = smtp_client_new(&t_confs[tc->conf], "192.0.2.7");
	cr_assert(d.c != NULL);
	cr_assert_eq(smtp_client_set_tls(d.c, tls->level), 0);
	if (tls->user)
		cr_assert_eq(smtp_client_set_auth(d.c, tls->user, tls->pass), 0);
	while (i < n && ev != SMTP_CLIENT_EV_CLOSE) {
		size_t k = chunk && chunk < n - i ? chunk : n - i, off = 0;

		while (off < k) {
			size_t got = smtp_client_feed(d.c, in + i + off, k - off, &d.out, &ev);

			cr_assert(got <= k - off);
			off += got;
			if (ev == SMTP_CLIENT_EV_CLOSE)
				break;
			if (ev == SMTP_CLIENT_EV_NEED_INPUT)
				cr_assert_eq(off, k, "NEED_INPUT must consume everything");
			t_event(&d, ev);
		}
		i += k;
	}
	if (tc->timeout && ev != SMTP_CLIENT_EV_CLOSE) {
		t_printf(r, "timeout=%u\n", smtp_client_timeout_ms(d.c));
		ev = smtp_client_timed_out(d.c);
		t_event(&d, ev);
	}
	if (tc->eof && ev != SMTP_CLIENT_EV_CLOSE) {
		cr_assert_eq(smtp_client_feed(d.c, in, 0, &d.out, &ev), 0);
		t_event(&d, ev);
	}
	/* After MSG_DONE on a dead session, the next feed gives the MSG_DONE
	 * of a message pipelined behind, then says CLOSE. */
	while (ev == SMTP_CLIENT_EV_MSG_DONE && smtp_client_closed(d.c)) {
		cr_assert_eq(smtp_client_feed(d.c, "x", 1, &d.out, &ev), 0);
		if (ev == SMTP_CLIENT_EV_MSG_DONE)
			t_event(&d, ev);
		else
			cr_assert_eq(ev, SMTP_CLIENT_EV_CLOSE);
	}
	cr_assert(d.behind == 0, "pipelined message lost");
	cr_assert(d.cur == 0 || !smtp_client_closed(d.c), "message lost");
	/* Any other event with the input used up: the engine waits for more. */
	if (ev != SMTP_CLIENT_EV_CLOSE)
		ev = SMTP_CLIENT_EV_NEED_INPUT;
	if (smtp_client_tls_refused(d.c))
		t_printf(r, "tls refused\n");
	if (smtp_client_authed(d.c))
		t_printf(r, "authed\n");
	if (smtp_client_auth_refused(d.c))
		t_printf(r, "auth refused\n");
	if (smtp_client_closed(d.c)) {
		why = smtp_client_close_reason(d.c);
		if (why == NULL) {
			t_printf(r, "closed\n");
		} else {
			t_printf(r, "closed: ");
			t_print_result(r, why);
		}
		cr_assert_eq(smtp_client_timeout_ms(d.c), 0);
	}
	r->ev = ev;
	cr_assert(d.out.len < sizeof(r->out));
	if (d.out.len)
		memcpy(r->out, d.out.data, d.out.len);
	r->out[d.out.len] = '\0';
	buf_free(&d.out);
	cr_assert_null(smtp_client_free(d.c));
	free(in);
}

/* On a mismatch, show what came out, escaped, to make fixing the table easy. */
static void t_dump(const char *name, const char *what, const char *s)
{
	char esc[4 * T_RESULT_MAX];

	cr_log_error("%s: %s: %s", name, what,
			log_printable(esc, sizeof(esc), s, strlen(s)));
}

static void t_check_tls(const struct t_case *tc, const struct t_tls *tls)
{
	static const size_t chunks[] = { 0, 1, 2, 3, 5, 7, 13, 64 };
	static struct t_result first, r;
	size_t i;

	t_run(tc, tls, 0, &first);
	if (strcmp(first.out, tc->want_out) != 0)
		t_dump(tc->name, "got out", first.out);
	if (strcmp(first.res, tc->want_res) != 0)
		t_dump(tc->name, "got res", first.res);
	cr_expect_str_eq(first.out, tc->want_out, "%s: out", tc->name);
	cr_expect_str_eq(first.res, tc->want_res, "%s: results", tc->name);
	cr_expect_eq(first.ev, tc->want_ev, "%s: event %d", tc->name, (int)first.ev);
	for (i = 1; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		t_run(tc, tls, chunks[i], &r);
		cr_expect_str_eq(r.out, first.out, "%s: out, chunk %zu", tc->name, chunks[i]);
		cr_expect_str_eq(r.res, first.res, "%s: results, chunk %zu", tc->name, chunks[i]);
		cr_expect_eq(r.ev, first.ev, "%s: event, chunk %zu", tc->name, chunks[i]);
	}
}

static void t_check(const struct t_case *tc)
{
	t_check_tls(tc, &t_tls_none);
}

/* ---- dialogues ------------------------------------------------------------ */

/* server */
#define G "220 mx.c.test ESMTP\r\n"
#define S_EHLO "250-mx.c.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n" \
	"250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n"
#define S_EHLO_NOPIPE "250-mx.c.test\r\n250-SIZE 1000\r\n250 8BITMIME\r\n"
#define S_EHLO_7BIT "250-mx.c.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"
#define S_MAIL "250 2.1.0 Ok\r\n"
#define S_RCPT "250 2.1.5 Ok\r\n"
#define S_GO "354 End data with <CR><LF>.<CR><LF>\r\n"
#define S_QUEUED "250 2.0.0 Ok: queued as ABC\r\n"
#define S_BYE "221 2.0.0 Bye\r\n"
#define S_NORCPT "554 5.5.1 Error: no valid recipients\r\n"
#define S_RSET "250 2.0.0 Ok\r\n"
#define S_FULL_A S_MAIL S_RCPT S_GO S_QUEUED

/* client */
#define C_EHLO "EHLO relay.test\r\n"
#define C_MAIL "MAIL FROM:<s@x.test> SIZE=100\r\n"
#define C_RCPT(x) "RCPT TO:<" x "@c.test>\r\n"
#define C_DOT ".\r\n"
#define C_BODY T_BODY C_DOT
#define C_QUIT "QUIT\r\n"
#define C_RSET "RSET\r\n"
#define C_FULL_A C_MAIL C_RCPT("a") "DATA\r\n" C_BODY

/* results */
#define R_READY "ready caps=0x1f\n"
#define R_SENT " D 250 2.0.0 Ok: queued as ABC\n"
#define R_A_SENT "A rc=0 code=250\n" R_SENT
#define R_CLEAN "closed\n"

static const struct t_case t_cases[] = {
	/* ---- session set-up ---- */
	{ "greeting and EHLO capabilities", T_NORMAL, G S_EHLO S_BYE, 0, "", 1, 0, 0,
		C_EHLO C_QUIT, R_READY R_CLEAN, SMTP_CLIENT_EV_CLOSE },
	{ "multiline greeting, lower-case keywords", T_NORMAL,
		"220-mx.c.test ESMTP\r\n220 welcome\r\n250-mx.c.test hello\r\n"
		"250-pipelining\r\n250-Size\r\n250-8bitmime\r\n250-AUTH PLAIN\r\n"
		"250-enhancedstatuscodes\r\n250-X-UNKNOWN\r\n250 smtputf8\r\n",
		0, "", 0, 0, 0, C_EHLO, R_READY, SMTP_CLIENT_EV_NEED_INPUT },
	{ "EHLO with a bare LF and code-only line", T_NORMAL,
		G "250-mx.c.test\n250 PIPELINING\n", 0, "", 0, 0, 0, C_EHLO,
		"ready caps=0x1\n", SMTP_CLIENT_EV_NEED_INPUT },
	{ "code-only final line", T_NORMAL, G "250-mx.c.test\r\n250\r\n", 0, "", 0, 0, 0,
		C_EHLO, "ready caps=0x0\n", SMTP_CLIENT_EV_NEED_INPUT },
	{ "HELO fallback after EHLO 502, no extensions", T_NORMAL,
		G "502 5.5.2 Error: command not recognized\r\n250 mx.c.test\r\n"
		S_FULL_A S_BYE, 0, "A", 1, 0, 0,
		C_EHLO "HELO relay.test\r\nMAIL FROM:<s@x.test>\r\n" C_RCPT("a") "DATA\r\n"
		C_BODY C_QUIT,
		"ready caps=0x0\n" R_A_SENT R_CLEAN, SMTP_CLIENT_EV_CLOSE },
	{ "HELO refused: QUIT", T_NORMAL,
		G "500 5.5.1 no EHLO\r\n550 5.7.1 go away\r\n" S_BYE, 0, "A", 1, 0, 0,
		C_EHLO "HELO relay.test\r\n" C_QUIT, "closed: B 550 5.7.1 go away\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "greeting 554: QUIT, close", T_NORMAL,
		"554 5.3.2 mx.c.test no service\r\n" S_BYE, 0, "A", 1, 0, 0,
		C_QUIT, "closed: B 554 5.3.2 mx.c.test no service\n", SMTP_CLIENT_EV_CLOSE },
	{ "greeting 554, EOF instead of 221", T_NORMAL,
		"554 no service\r\n", 0, "A", 1, 0, 1,
		C_QUIT, "closed: B 554 5.0.0 no service\n", SMTP_CLIENT_EV_CLOSE },
	{ "greeting 421: close without QUIT", T_NORMAL,
		"421 4.3.2 mx.c.test busy\r\n", 0, "A", 1, 0, 0,
		"", "closed: T 421 4.3.2 mx.c.test busy\n", SMTP_CLIENT_EV_CLOSE },
	{ "EHLO 451: QUIT", T_NORMAL, G "451 4.3.0 try later\r\n" S_BYE, 0, "A", 1, 0, 0,
		C_EHLO C_QUIT, "closed: T 451 4.3.0 try later\n", SMTP_CLIENT_EV_CLOSE },
	{ "EHLO 421: close", T_NORMAL, G "421 4.7.0 bye\r\n", 0, "A", 1, 0, 0,
		C_EHLO, "closed: T 421 4.7.0 bye\n", SMTP_CLIENT_EV_CLOSE },
	{ "EOF before the greeting", T_NORMAL, "", 0, "A", 1, 0, 1, "",
		"closed: T* 451 4.4.2 lost connection with server while receiving the "
		"initial server greeting\n", SMTP_CLIENT_EV_CLOSE },
	{ "EOF when idle", T_NORMAL, G S_EHLO, 0, "", 0, 0, 1, C_EHLO,
		R_READY "closed: T* 451 4.4.2 lost connection with server while idle\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "unsolicited 421 when idle", T_NORMAL,
		G S_EHLO "421 4.4.2 mx.c.test Error: timeout exceeded\r\n", 0, "", 0, 0, 0,
		C_EHLO, R_READY "closed: T 421 4.4.2 mx.c.test Error: timeout exceeded\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "unsolicited 250 when idle", T_NORMAL, G S_EHLO "250 hello?\r\n", 0, "", 0, 0, 0,
		C_EHLO, R_READY "closed: T* 451 4.5.0 protocol error: unexpected reply "
		"while idle\n", SMTP_CLIENT_EV_CLOSE },

	/* ---- reply syntax ---- */
	{ "garbage greeting", T_NORMAL, "hello there\r\n", 0, "A", 1, 0, 0, "",
		"closed: T* 451 4.5.0 protocol error: malformed reply while receiving the "
		"initial server greeting\n", SMTP_CLIENT_EV_CLOSE },
	{ "four digits", T_NORMAL, "2200 mx\r\n", 0, "", 0, 0, 0, "",
		"closed: T* 451 4.5.0 protocol error: malformed reply while receiving the "
		"initial server greeting\n", SMTP_CLIENT_EV_CLOSE },
	{ "two digits", T_NORMAL, "22\r\n", 0, "", 0, 0, 0, "",
		"closed: T* 451 4.5.0 protocol error: malformed reply while receiving the "
		"initial server greeting\n", SMTP_CLIENT_EV_CLOSE },
	{ "1yz code", T_NORMAL, "120 wait\r\n", 0, "", 0, 0, 0, "",
		"closed: T* 451 4.5.0 protocol error: malformed reply while receiving the "
		"initial server greeting\n", SMTP_CLIENT_EV_CLOSE },
	{ "NUL in the code", T_NORMAL, "2\0000 x\r\n", 7, "", 0, 0, 0, "",
		"closed: T* 451 4.5.0 protocol error: malformed reply while receiving the "
		"initial server greeting\n", SMTP_CLIENT_EV_CLOSE },
	{ "NUL, bare CR and 8-bit in text", T_NORMAL,
		"554 a\0b\rc\xff" "d\r\n" S_BYE, 13 + sizeof(S_BYE) - 1, "", 0, 0, 0, C_QUIT,
		"closed: B 554 5.0.0 a?b?c?d\n", SMTP_CLIENT_EV_CLOSE },
	{ "multiline EHLO with changing codes", T_NORMAL,
		G "250-mx.c.test\r\n251-PIPELINING\r\n250 SIZE\r\n", 0, "A", 1, 0, 0, C_EHLO,
		"closed: T* 451 4.5.0 protocol error: reply code changed in multiline reply "
		"while sending EHLO\n", SMTP_CLIENT_EV_CLOSE },
	{ "too many reply lines", T_SMALL,
		G "250-a\r\n250-b\r\n250-c\r\n250-d\r\n250 e\r\n", 0, "", 0, 0, 0, C_EHLO,
		"closed: T* 451 4.5.0 protocol error: too many reply lines while sending "
		"EHLO\n", SMTP_CLIENT_EV_CLOSE },
	{ "reply line at the limit", T_SMALL,
		"220 xxxxxxxxxxxxxxxxxxxxxxxxxx\r\n", 0, "", 0, 0, 0, C_EHLO, "",
		SMTP_CLIENT_EV_NEED_INPUT },
	{ "reply line one over the limit", T_SMALL,
		"220 xxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n", 0, "", 0, 0, 0, "",
		"closed: T* 451 4.5.0 protocol error: reply line too long while receiving "
		"the initial server greeting\n", SMTP_CLIENT_EV_CLOSE },
	{ "endless reply line without LF", T_SMALL,
		"220 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 0, "", 0, 0, 0,
		"", "closed: T* 451 4.5.0 protocol error: reply line too long while receiving "
		"the initial server greeting\n", SMTP_CLIENT_EV_CLOSE },
	{ "enhanced codes: stripped from every line, class must match", T_NORMAL,
		G S_EHLO S_MAIL "550-5.1.1 <a@c.test>: user\r\n550 5.1.1 unknown\r\n"
		"354 go\r\n" "250 4.0.0 queued\r\n" S_BYE, 0, "A", 1, 0, 0,
		C_EHLO C_MAIL C_RCPT("a") "DATA\r\n" C_DOT C_QUIT,
		R_READY "A rc=0 code=0\n B 550 5.1.1 <a@c.test>: user unknown\n" R_CLEAN,
		SMTP_CLIENT_EV_CLOSE },
	{ "enhanced code of another class is text", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT S_GO "250 4.0.0 queued\r\n" S_BYE, 0, "A", 1, 0, 0,
		C_EHLO C_FULL_A C_QUIT,
		R_READY "A rc=0 code=250\n D 250 2.0.0 4.0.0 queued\n" R_CLEAN,
		SMTP_CLIENT_EV_CLOSE },

	/* ---- pipelined transactions ---- */
	{ "one message pipelined", T_NORMAL, G S_EHLO S_FULL_A S_BYE, 0, "A", 1, 0, 0,
		C_EHLO C_FULL_A C_QUIT, R_READY R_A_SENT R_CLEAN, SMTP_CLIENT_EV_CLOSE },
	{ "all replies in one read, no QUIT yet", T_NORMAL, G S_EHLO S_FULL_A, 0, "A", 0, 0, 0,
		C_EHLO C_FULL_A, R_READY R_A_SENT, SMTP_CLIENT_EV_NEED_INPUT },
	{ "two messages on one session", T_NORMAL,
		G S_EHLO S_FULL_A S_MAIL S_RCPT S_GO "250 2.0.0 Ok: queued as DEF\r\n" S_BYE,
		0, "AB", 1, 0, 0,
		C_EHLO C_FULL_A "MAIL FROM:<t@x.test> SIZE=200\r\n" C_RCPT("b") "DATA\r\n"
		C_BODY C_QUIT,
		R_READY R_A_SENT "B rc=0 code=250\n D 250 2.0.0 Ok: queued as DEF\n" R_CLEAN,
		SMTP_CLIENT_EV_CLOSE },
	{ "null sender", T_NORMAL, G S_EHLO S_FULL_A, 0, "N", 0, 0, 0,
		C_EHLO "MAIL FROM:<> SIZE=100\r\n" C_RCPT("a") "DATA\r\n" C_BODY,
		R_READY "N rc=0 code=250\n" R_SENT, SMTP_CLIENT_EV_NEED_INPUT },
	{ "452 on every third RCPT", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT S_RCPT "452 4.5.3 Error: too many recipients\r\n"
		S_RCPT S_RCPT "452 4.5.3 Error: too many recipients\r\n" S_GO S_QUEUED,
		0, "F", 0, 0, 0,
		C_EHLO C_MAIL C_RCPT("r1") C_RCPT("r2") C_RCPT("r3") C_RCPT("r4") C_RCPT("r5")
		C_RCPT("r6") "DATA\r\n" C_BODY,
		R_READY "F rc=0 code=250\n" R_SENT R_SENT
		" T 452 4.5.3 Error: too many recipients\n" R_SENT R_SENT
		" T 452 4.5.3 Error: too many recipients\n", SMTP_CLIENT_EV_NEED_INPUT },
	{ "550 on one RCPT", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT "550 5.1.1 <b@c.test>: Recipient address rejected\r\n"
		S_RCPT S_GO S_QUEUED, 0, "C", 0, 0, 0,
		C_EHLO C_MAIL C_RCPT("a") C_RCPT("b") C_RCPT("c") "DATA\r\n" C_BODY,
		R_READY "C rc=0 code=250\n" R_SENT
		" B 550 5.1.1 <b@c.test>: Recipient address rejected\n" R_SENT,
		SMTP_CLIENT_EV_NEED_INPUT },
	{ "all RCPTs rejected: no body, RSET", T_NORMAL,
		G S_EHLO S_MAIL "550 5.1.1 no a\r\n" "450 4.2.0 no b\r\n" "550 5.1.1 no c\r\n"
		S_NORCPT S_RSET S_FULL_A, 0, "CA", 0, 0, 0,
		C_EHLO C_MAIL C_RCPT("a") C_RCPT("b") C_RCPT("c") "DATA\r\n" C_RSET C_FULL_A,
		R_READY "C rc=0 code=0\n B 550 5.1.1 no a\n T 450 4.2.0 no b\n"
		" B 550 5.1.1 no c\n" R_A_SENT, SMTP_CLIENT_EV_NEED_INPUT },
	{ "all RCPTs rejected, DATA 354 anyway: lone dot", T_NORMAL,
		G S_EHLO S_MAIL "550 5.1.1 no a\r\n" S_GO "250 2.0.0 nothing\r\n" S_FULL_A,
		0, "AA", 0, 0, 0,
		C_EHLO C_MAIL C_RCPT("a") "DATA\r\n" C_DOT C_FULL_A,
		R_READY "A rc=0 code=0\n B 550 5.1.1 no a\n" R_A_SENT, SMTP_CLIENT_EV_NEED_INPUT },
	{ "owed RSET refused: results stand, the next message deferred, close", T_NORMAL,
		G S_EHLO S_MAIL "550 5.1.1 no a\r\n" S_NORCPT "500 5.5.1 what\r\n", 0, "AA", 1, 0, 0,
		C_EHLO C_MAIL C_RCPT("a") "DATA\r\n" C_RSET C_MAIL C_RCPT("a") "DATA\r\n",
		R_READY "A rc=0 code=0\n B 550 5.1.1 no a\n" "A rc=0 code=0\n T 451 4.5.0 what\n"
		"closed: T 451 4.5.0 what\n", SMTP_CLIENT_EV_CLOSE },
	{ "MAIL 451: all deferred, no RSET", T_NORMAL,
		G S_EHLO "451 4.3.0 Temporary failure\r\n" "503 5.5.1 need MAIL\r\n"
		"503 5.5.1 need MAIL\r\n" "503 5.5.1 need MAIL\r\n" "503 5.5.1 need RCPT\r\n"
		S_FULL_A, 0, "CA", 0, 0, 0,
		C_EHLO C_MAIL C_RCPT("a") C_RCPT("b") C_RCPT("c") "DATA\r\n" C_FULL_A,
		R_READY "C rc=0 code=451\n T 451 4.3.0 Temporary failure\n"
		" T 451 4.3.0 Temporary failure\n T 451 4.3.0 Temporary failure\n" R_A_SENT,
		SMTP_CLIENT_EV_NEED_INPUT },
	{ "MAIL 550: all bounced; stray 250 to RCPT ignored", T_NORMAL,
		G S_EHLO "550 5.7.1 Sender rejected\r\n" S_RCPT "503 5.5.1 need RCPT\r\n" S_BYE,
		0, "A", 1, 0, 0, C_EHLO C_MAIL C_RCPT("a") "DATA\r\n" C_QUIT,
		R_READY "A rc=0 code=550\n B 550 5.7.1 Sender rejected\n" R_CLEAN,
		SMTP_CLIENT_EV_CLOSE },
	{ "MAIL 550 and DATA 354: lone dot", T_NORMAL,
		G S_EHLO "550 5.7.1 Sender rejected\r\n" S_RCPT S_GO "554 5.5.1 no\r\n" S_BYE,
		0, "A", 1, 0, 0, C_EHLO C_MAIL C_RCPT("a") "DATA\r\n" C_DOT C_QUIT,
		R_READY "A rc=0 code=550\n B 550 5.7.1 Sender rejected\n" R_CLEAN,
		SMTP_CLIENT_EV_CLOSE },
	{ "DATA 554: accepted recipients bounced, no RSET before QUIT", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT "550 5.1.1 no b\r\n" S_RCPT
		"554 5.7.1 Blocked\r\n" S_BYE, 0, "C", 1, 0, 0,
		C_EHLO C_MAIL C_RCPT("a") C_RCPT("b") C_RCPT("c") "DATA\r\n" C_QUIT,
		R_READY "C rc=0 code=554\n B 554 5.7.1 Blocked\n B 550 5.1.1 no b\n"
		" B 554 5.7.1 Blocked\n" R_CLEAN, SMTP_CLIENT_EV_CLOSE },
	{ "DATA 451: deferred, RSET owed, not sent while idle", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT "451 4.3.0 later\r\n", 0, "A", 0, 0, 0,
		C_EHLO C_MAIL C_RCPT("a") "DATA\r\n",
		R_READY "A rc=0 code=451\n T 451 4.3.0 later\n", SMTP_CLIENT_EV_NEED_INPUT },
	{ "DATA 250: protocol error", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT "250 2.0.0 what\r\n", 0, "A", 0, 0, 0,
		C_EHLO C_MAIL C_RCPT("a") "DATA\r\n",
		R_READY "A rc=0 code=0\n T* 451 4.5.0 protocol error: 2xx reply to DATA while "
		"sending DATA\n" "closed: T* 451 4.5.0 protocol error: 2xx reply to DATA while "
		"sending DATA\n", SMTP_CLIENT_EV_CLOSE },
	{ "MAIL 354: protocol error", T_NORMAL, G S_EHLO S_GO, 0, "A", 0, 0, 0,
		C_EHLO C_MAIL C_RCPT("a") "DATA\r\n",
		R_READY "A rc=0 code=0\n T* 451 4.5.0 protocol error: 3xx reply to MAIL FROM "
		"while sending MAIL FROM\n" "closed: T* 451 4.5.0 protocol error: 3xx reply to "
		"MAIL FROM while sending MAIL FROM\n", SMTP_CLIENT_EV_CLOSE },
	{ "final dot 451: deferred", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT S_GO "451 4.3.0 Error: queue file write error\r\n" S_BYE,
		0, "A", 1, 0, 0, C_EHLO C_FULL_A C_QUIT,
		R_READY "A rc=0 code=451\n T 451 4.3.0 Error: queue file write error\n" R_CLEAN,
		SMTP_CLIENT_EV_CLOSE },
	{ "final dot 550: bounced", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT S_RCPT S_RCPT S_GO "550 5.7.1 spam\r\n", 0, "C", 0, 0, 0,
		C_EHLO C_MAIL C_RCPT("a") C_RCPT("b") C_RCPT("c") "DATA\r\n" C_BODY,
		R_READY "C rc=0 code=550\n B 550 5.7.1 spam\n B 550 5.7.1 spam\n"
		" B 550 5.7.1 spam\n", SMTP_CLIENT_EV_NEED_INPUT },
	{ "final dot 3xx: protocol error", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT S_GO S_GO, 0, "A", 0, 0, 0, C_EHLO C_FULL_A,
		R_READY "A rc=0 code=0\n T* 451 4.5.0 protocol error: 3xx reply to end of data "
		"while sending end of data\n" "closed: T* 451 4.5.0 protocol error: 3xx reply to "
		"end of data while sending end of data\n", SMTP_CLIENT_EV_CLOSE },
	{ "421 mid-transaction", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT "550 5.1.1 no b\r\n"
		"421 4.3.2 mx.c.test Service shutting down\r\n" S_RCPT, 0, "C", 1, 0, 0,
		C_EHLO C_MAIL C_RCPT("a") C_RCPT("b") C_RCPT("c") "DATA\r\n",
		R_READY "C rc=0 code=0\n T 421 4.3.2 mx.c.test Service shutting down\n"
		" B 550 5.1.1 no b\n T 421 4.3.2 mx.c.test Service shutting down\n"
		"closed: T 421 4.3.2 mx.c.test Service shutting down\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "421 while the body is sent", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT S_GO "421 4.4.2 timeout\r\n", 0, "A", 0, 0, 0,
		C_EHLO C_FULL_A,
		R_READY "A rc=0 code=0\n T 421 4.4.2 timeout\n" "closed: T 421 4.4.2 timeout\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "EOF mid-reply", T_NORMAL, G S_EHLO S_MAIL "250 2.1", 0, "C", 0, 0, 1,
		C_EHLO C_MAIL C_RCPT("a") C_RCPT("b") C_RCPT("c") "DATA\r\n",
		R_READY "C rc=0 code=0\n"
		" T* 451 4.4.2 lost connection with server while sending RCPT TO\n"
		" T* 451 4.4.2 lost connection with server while sending RCPT TO\n"
		" T* 451 4.4.2 lost connection with server while sending RCPT TO\n"
		"closed: T* 451 4.4.2 lost connection with server while sending RCPT TO\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "EOF after the dot: deferred (may duplicate, RFC 1047)", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT S_GO, 0, "A", 0, 0, 1, C_EHLO C_FULL_A,
		R_READY "A rc=0 code=0\n"
		" T* 451 4.4.2 lost connection with server while sending end of data\n"
		"closed: T* 451 4.4.2 lost connection with server while sending end of data\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "multiline final reply with changing codes", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT S_GO "250-2.0.0 Ok\r\n550 5.0.0 no\r\n", 0, "A", 0, 0, 0,
		C_EHLO C_FULL_A,
		R_READY "A rc=0 code=0\n T* 451 4.5.0 protocol error: reply code changed in "
		"multiline reply while sending end of data\n" "closed: T* 451 4.5.0 protocol "
		"error: reply code changed in multiline reply while sending end of data\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "overlong line in a RCPT reply", T_SMALL,
		G "250 mx\r\n" S_MAIL "550 5.1.1 <a@c.test>: no such user here\r\n", 0, "A", 0, 0, 0,
		C_EHLO "MAIL FROM:<s@x.test>\r\n" C_RCPT("a"),
		"ready caps=0x0\n" "A rc=0 code=0\n T* 451 4.5.0 protocol error: reply line too "
		"long while sending RCPT TO\n" "closed: T* 451 4.5.0 protocol error: reply line "
		"too long while sending RCPT TO\n", SMTP_CLIENT_EV_CLOSE },
	{ "multiline multi-reply pipelined read", T_NORMAL,
		G S_EHLO "250-2.1.0 sender\r\n250 2.1.0 ok\r\n" "250-2.1.5 a\r\n250 2.1.5 ok\r\n"
		"354-go\r\n354 on\r\n" "250-2.0.0 Ok:\r\n250 2.0.0 queued as ABC\r\n",
		0, "A", 0, 0, 0, C_EHLO C_FULL_A, R_READY R_A_SENT, SMTP_CLIENT_EV_NEED_INPUT },

	/* ---- without PIPELINING: one command per reply ---- */
	{ "no PIPELINING: exact sequence", T_NORMAL,
		G S_EHLO_NOPIPE S_MAIL S_RCPT "550 5.1.1 no b\r\n" S_RCPT S_GO S_QUEUED S_BYE,
		0, "C", 1, 0, 0,
		C_EHLO C_MAIL C_RCPT("a") C_RCPT("b") C_RCPT("c") "DATA\r\n" C_BODY C_QUIT,
		"ready caps=0x6\n" "C rc=0 code=250\n" R_SENT " B 550 5.1.1 no b\n" R_SENT
		R_CLEAN, SMTP_CLIENT_EV_CLOSE },
	{ "no PIPELINING: all rejected, no DATA, no RSET before QUIT", T_NORMAL,
		G S_EHLO_NOPIPE S_MAIL "550 5.1.1 no a\r\n" "550 5.1.1 no b\r\n"
		"450 4.1.1 no c\r\n" S_BYE, 0, "C", 1, 0, 0,
		C_EHLO C_MAIL C_RCPT("a") C_RCPT("b") C_RCPT("c") C_QUIT,
		"ready caps=0x6\n" "C rc=0 code=0\n B 550 5.1.1 no a\n B 550 5.1.1 no b\n"
		" T 450 4.1.1 no c\n" R_CLEAN, SMTP_CLIENT_EV_CLOSE },
	{ "no PIPELINING: all rejected, RSET alone before the next MAIL", T_NORMAL,
		G S_EHLO_NOPIPE S_MAIL "550 5.1.1 no a\r\n" "550 5.1.1 no b\r\n"
		"450 4.1.1 no c\r\n" S_RSET S_FULL_A S_BYE, 0, "CA", 1, 0, 0,
		C_EHLO C_MAIL C_RCPT("a") C_RCPT("b") C_RCPT("c") C_RSET C_FULL_A C_QUIT,
		"ready caps=0x6\n" "C rc=0 code=0\n B 550 5.1.1 no a\n B 550 5.1.1 no b\n"
		" T 450 4.1.1 no c\n" R_A_SENT R_CLEAN, SMTP_CLIENT_EV_CLOSE },
	{ "no PIPELINING: MAIL 452, no RCPT sent", T_NORMAL,
		G S_EHLO_NOPIPE "452 4.3.1 full\r\n" S_MAIL S_RCPT S_GO S_QUEUED,
		0, "CA", 0, 0, 0, C_EHLO C_MAIL C_FULL_A,
		"ready caps=0x6\n" "C rc=0 code=452\n T 452 4.3.1 full\n T 452 4.3.1 full\n"
		" T 452 4.3.1 full\n" R_A_SENT, SMTP_CLIENT_EV_NEED_INPUT },

	/* ---- decided before talking to the server ---- */
	{ "SIZE over the limit: 552, next message goes", T_NORMAL,
		G S_EHLO S_FULL_A, 0, "LA", 0, 0, 0, C_EHLO C_FULL_A,
		R_READY "L rc=E2BIG code=0\n B* 552 5.3.4 message size exceeds fixed maximum "
		"message size of server\n" R_A_SENT, SMTP_CLIENT_EV_NEED_INPUT },
	{ "SIZE 0 is no limit", T_NORMAL,
		G "250-mx\r\n250 SIZE 0\r\n" S_MAIL, 0, "L", 0, 0, 0,
		C_EHLO "MAIL FROM:<s@x.test> SIZE=5000\r\n" C_RCPT("a"), "ready caps=0x2\n",
		SMTP_CLIENT_EV_NEED_INPUT },
	{ "8-bit to a server without 8BITMIME", T_NORMAL,
		G S_EHLO_7BIT, 0, "E", 0, 0, 0, C_EHLO,
		"ready caps=0x3\n" "E rc=EMEDIUMTYPE code=0\n B* 554 5.6.3 8-bit message body, "
		"but server does not support 8BITMIME\n", SMTP_CLIENT_EV_NEED_INPUT },
	{ "8-bit with 8BITMIME", T_NORMAL, G S_EHLO S_FULL_A, 0, "E", 0, 0, 0,
		C_EHLO "MAIL FROM:<s@x.test> SIZE=100 BODY=8BITMIME\r\n" C_RCPT("a") "DATA\r\n"
		C_BODY, R_READY "E rc=0 code=250\n" R_SENT, SMTP_CLIENT_EV_NEED_INPUT },
	{ "8-bit recipient without SMTPUTF8: that one bounces", T_NORMAL,
		G S_EHLO_7BIT S_FULL_A, 0, "U", 0, 0, 0, C_EHLO C_FULL_A,
		"ready caps=0x3\n" "U rc=0 code=250\n" R_SENT " B* 553 5.6.7 non-ASCII recipient "
		"address, but server does not support SMTPUTF8\n", SMTP_CLIENT_EV_NEED_INPUT },
	{ "only 8-bit recipients without SMTPUTF8", T_NORMAL, G S_EHLO_7BIT, 0, "V", 0, 0, 0,
		C_EHLO, "ready caps=0x3\n" "V rc=EILSEQ code=0\n B* 553 5.6.7 non-ASCII "
		"recipient address, but server does not support SMTPUTF8\n",
		SMTP_CLIENT_EV_NEED_INPUT },
	{ "8-bit recipient with SMTPUTF8", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT S_RCPT S_GO S_QUEUED, 0, "U", 0, 0, 0,
		C_EHLO "MAIL FROM:<s@x.test> SIZE=100 SMTPUTF8\r\n" C_RCPT("a")
		C_RCPT("\xc3\xbc") "DATA\r\n" C_BODY,
		R_READY "U rc=0 code=250\n" R_SENT R_SENT, SMTP_CLIENT_EV_NEED_INPUT },
	{ "SMTPUTF8 message without SMTPUTF8", T_NORMAL, G S_EHLO_7BIT, 0, "W", 0, 0, 0,
		C_EHLO, "ready caps=0x3\n" "W rc=EILSEQ code=0\n B* 553 5.6.7 SMTPUTF8 message, "
		"but server does not support SMTPUTF8\n", SMTP_CLIENT_EV_NEED_INPUT },
	{ "bad recipient skipped, bad sender refused", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT S_RCPT S_GO S_QUEUED, 0, "XY", 0, 0, 0,
		C_EHLO C_MAIL C_RCPT("a") C_RCPT("b") "DATA\r\n" C_BODY,
		R_READY "X rc=0 code=250\n" R_SENT " B* 553 5.1.3 bad recipient address syntax\n"
		R_SENT "Y rc=EBADMSG code=0\n B* 553 5.1.7 bad sender address syntax\n",
		SMTP_CLIENT_EV_NEED_INPUT },

	/* ---- timeouts (RFC 5321 4.5.3.2) ---- */
	{ "timeout: greeting", T_NORMAL, "", 0, "A", 0, 1, 0, "",
		"timeout=300000\nclosed: T* 451 4.4.2 conversation timed out while receiving "
		"the initial server greeting\n", SMTP_CLIENT_EV_CLOSE },
	{ "timeout: EHLO", T_NORMAL, G, 0, "A", 0, 1, 0, C_EHLO,
		"timeout=300000\nclosed: T* 451 4.4.2 conversation timed out while sending "
		"EHLO\n", SMTP_CLIENT_EV_CLOSE },
	{ "timeout: idle", T_NORMAL, G S_EHLO, 0, "", 0, 1, 0, C_EHLO,
		R_READY "timeout=0\nclosed: T* 451 4.4.2 conversation timed out while idle\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "timeout: MAIL", T_NORMAL, G S_EHLO, 0, "A", 0, 1, 0, C_EHLO C_MAIL C_RCPT("a")
		"DATA\r\n", R_READY "timeout=300000\nA rc=0 code=0\n T* 451 4.4.2 conversation "
		"timed out while sending MAIL FROM\n" "closed: T* 451 4.4.2 conversation timed "
		"out while sending MAIL FROM\n", SMTP_CLIENT_EV_CLOSE },
	{ "timeout: RCPT", T_NORMAL, G S_EHLO S_MAIL S_RCPT, 0, "C", 0, 1, 0,
		C_EHLO C_MAIL C_RCPT("a") C_RCPT("b") C_RCPT("c") "DATA\r\n",
		R_READY "timeout=300000\nC rc=0 code=0\n"
		" T* 451 4.4.2 conversation timed out while sending RCPT TO\n"
		" T* 451 4.4.2 conversation timed out while sending RCPT TO\n"
		" T* 451 4.4.2 conversation timed out while sending RCPT TO\n"
		"closed: T* 451 4.4.2 conversation timed out while sending RCPT TO\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "timeout: DATA", T_NORMAL, G S_EHLO S_MAIL "550 5.1.1 no\r\n", 0, "A", 0, 1, 0,
		C_EHLO C_MAIL C_RCPT("a") "DATA\r\n",
		R_READY "timeout=120000\nA rc=0 code=0\n B 550 5.1.1 no\n"
		"closed: T* 451 4.4.2 conversation timed out while sending DATA\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "timeout: end of data", T_NORMAL, G S_EHLO S_MAIL S_RCPT S_GO, 0, "A", 0, 1, 0,
		C_EHLO C_FULL_A, R_READY "timeout=600000\nA rc=0 code=0\n"
		" T* 451 4.4.2 conversation timed out while sending end of data\n"
		"closed: T* 451 4.4.2 conversation timed out while sending end of data\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "timeout: RSET", T_NORMAL, G S_EHLO S_MAIL S_RCPT S_NORCPT, 0, "AA", 0, 1, 0,
		C_EHLO C_MAIL C_RCPT("a") "DATA\r\n" C_RSET C_MAIL C_RCPT("a") "DATA\r\n",
		R_READY "A rc=0 code=554\n B 554 5.5.1 Error: no valid recipients\n"
		"timeout=20000\nA rc=0 code=0\n"
		" T* 451 4.4.2 conversation timed out while sending RSET\n"
		"closed: T* 451 4.4.2 conversation timed out while sending RSET\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "timeout: QUIT", T_NORMAL, G S_EHLO, 0, "", 1, 1, 0, C_EHLO C_QUIT,
		R_READY "timeout=300000\nclosed: T* 451 4.4.2 conversation timed out while "
		"sending QUIT\n", SMTP_CLIENT_EV_CLOSE },
};

Test(smtp_client, dialogues)
{
	size_t i;

	for (i = 0; i < sizeof(t_cases) / sizeof(t_cases[0]); i++)
		t_check(&t_cases[i]);
}

/* ---- the next message behind the final dot (RFC 2920 3.1) ------------------- */

#define C_FULL_B "MAIL FROM:<t@x.test> SIZE=200\r\n" C_RCPT("b") "DATA\r\n"
#define R_B_SENT "B rc=0 code=250\n" R_SENT
#define S_FULL_B S_MAIL S_RCPT S_GO S_QUEUED
#define R_LOST_DOT " T* 451 4.4.2 lost connection with server while sending end of data\n"

static const struct t_case t_behind_cases[] = {
	{ "B's commands go out behind A's dot; replies matched in order", T_NORMAL,
		G S_EHLO S_FULL_A S_FULL_B S_BYE, 0, "AB", 1, 0, 0,
		C_EHLO C_FULL_A C_FULL_B C_BODY C_QUIT,
		R_READY R_A_SENT R_B_SENT R_CLEAN, SMTP_CLIENT_EV_CLOSE },
	{ "no PIPELINING: B waits for A's verdict", T_NORMAL,
		G S_EHLO_NOPIPE S_FULL_A S_FULL_B S_BYE, 0, "AB", 1, 0, 0,
		C_EHLO C_MAIL C_RCPT("a") "DATA\r\n" C_BODY C_FULL_B C_BODY C_QUIT,
		"ready caps=0x6\n" R_A_SENT R_B_SENT R_CLEAN, SMTP_CLIENT_EV_CLOSE },
	{ "B's MAIL refused after A's 250: A sent, B deferred, no RSET", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT S_GO S_QUEUED "452 4.3.1 Insufficient system storage\r\n"
		"503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n" S_BYE, 0, "AB", 1, 0, 0,
		C_EHLO C_FULL_A C_FULL_B C_QUIT,
		R_READY R_A_SENT "B rc=0 code=452\n T 452 4.3.1 Insufficient system storage\n"
		R_CLEAN, SMTP_CLIENT_EV_CLOSE },
	{ "A's dot refused: A bounced, B still goes", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT S_GO "554 5.6.0 content rejected\r\n" S_FULL_B S_BYE, 0,
		"AB", 1, 0, 0, C_EHLO C_FULL_A C_FULL_B C_BODY C_QUIT,
		R_READY "A rc=0 code=554\n B 554 5.6.0 content rejected\n" R_B_SENT R_CLEAN,
		SMTP_CLIENT_EV_CLOSE },
	{ "lost after A's dot: both deferred, neither delivered", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT S_GO, 0, "AB", 1, 0, 1, C_EHLO C_FULL_A C_FULL_B,
		R_READY "A rc=0 code=0\n" R_LOST_DOT "B rc=0 code=0\n" R_LOST_DOT
		"closed: T* 451 4.4.2 lost connection with server while sending end of data\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "lost after A's 250, B's 354 unanswered: A sent, B deferred", T_NORMAL,
		G S_EHLO S_FULL_A S_MAIL S_RCPT S_GO, 0, "AB", 1, 0, 1,
		C_EHLO C_FULL_A C_FULL_B C_BODY,
		R_READY R_A_SENT "B rc=0 code=0\n" R_LOST_DOT
		"closed: T* 451 4.4.2 lost connection with server while sending end of data\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "421 to A's dot: both deferred by it", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT S_GO "421 4.3.2 shutting down\r\n", 0, "AB", 1, 0, 0,
		C_EHLO C_FULL_A C_FULL_B,
		R_READY "A rc=0 code=0\n T 421 4.3.2 shutting down\nB rc=0 code=0\n"
		" T 421 4.3.2 shutting down\nclosed: T 421 4.3.2 shutting down\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "timeout on A's dot: both deferred", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT S_GO, 0, "AB", 1, 1, 0, C_EHLO C_FULL_A C_FULL_B,
		R_READY "timeout=600000\nA rc=0 code=0\n T* 451 4.4.2 conversation timed out "
		"while sending end of data\nB rc=0 code=0\n T* 451 4.4.2 conversation timed "
		"out while sending end of data\nclosed: T* 451 4.4.2 conversation timed out "
		"while sending end of data\n", SMTP_CLIENT_EV_CLOSE },
	{ "3xx to A's dot is a protocol error: both deferred", T_NORMAL,
		G S_EHLO S_MAIL S_RCPT S_GO "354 again\r\n", 0, "AB", 1, 0, 0,
		C_EHLO C_FULL_A C_FULL_B,
		R_READY "A rc=0 code=0\n T* 451 4.5.0 protocol error: 3xx reply to end of data "
		"while sending end of data\nB rc=0 code=0\n T* 451 4.5.0 protocol error: 3xx "
		"reply to end of data while sending end of data\nclosed: T* 451 4.5.0 protocol "
		"error: 3xx reply to end of data while sending end of data\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "B too big for SIZE: decided at submit, A's reply still next", T_NORMAL,
		G S_EHLO S_FULL_A S_BYE, 0, "AL", 1, 0, 0, C_EHLO C_FULL_A C_QUIT,
		R_READY "L rc=E2BIG code=0\n B* 552 5.3.4 message size exceeds fixed maximum "
		"message size of server\n" R_A_SENT R_CLEAN, SMTP_CLIENT_EV_CLOSE },
};

Test(smtp_client, pipelined_behind_the_dot)
{
	t_pipeline_behind = 1;
	for (size_t i = 0; i < sizeof(t_behind_cases) / sizeof(t_behind_cases[0]); i++)
		t_check(&t_behind_cases[i]);
	t_pipeline_behind = 0;
}

/* ---- STARTTLS (RFC 3207) ---------------------------------------------------- */

#define S_EHLO_TLS "250-mx.c.test\r\n250-SIZE 1000\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
#define S_TLS_GO "220 2.0.0 Ready to start TLS\r\n"
/* After TLS: other capabilities (PIPELINING, no SIZE, STARTTLS again). */
#define S_EHLO_AFTER "250-mx.c.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 ENHANCEDSTATUSCODES\r\n"
#define S_TLS_454 "454 4.7.0 TLS not available due to local problem\r\n"
#define C_STARTTLS "STARTTLS\r\n"
#define C_MAIL_NOSIZE "MAIL FROM:<s@x.test>\r\n"

static const struct t_case t_tls_cases[] = {
	{ "may: STARTTLS offered; only the second EHLO's capabilities count", T_NORMAL,
		G S_EHLO_TLS S_TLS_GO S_EHLO_AFTER S_FULL_A S_BYE, 0, "A", 1, 0, 0,
		C_EHLO C_STARTTLS C_EHLO C_MAIL_NOSIZE C_RCPT("a") "DATA\r\n" C_BODY C_QUIT,
		"starttls\nready caps=0x29\n" R_A_SENT R_CLEAN, SMTP_CLIENT_EV_CLOSE },
	{ "must: STARTTLS offered, TLS up, mail goes", T_NORMAL,
		G S_EHLO_TLS S_TLS_GO S_EHLO_AFTER S_FULL_A S_BYE, 0, "A", 1, 0, 0,
		C_EHLO C_STARTTLS C_EHLO C_MAIL_NOSIZE C_RCPT("a") "DATA\r\n" C_BODY C_QUIT,
		"starttls\nready caps=0x29\n" R_A_SENT R_CLEAN, SMTP_CLIENT_EV_CLOSE },
	{ "none: STARTTLS offered but not asked for", T_NORMAL,
		G S_EHLO_TLS S_MAIL S_RCPT S_GO S_QUEUED S_BYE, 0, "A", 1, 0, 0,
		C_EHLO C_MAIL C_RCPT("a") "DATA\r\n" C_BODY C_QUIT,
		"ready caps=0x26\n" R_A_SENT R_CLEAN, SMTP_CLIENT_EV_CLOSE },
	{ "may: not offered, goes on in the clear", T_NORMAL,
		G S_EHLO S_FULL_A S_BYE, 0, "A", 1, 0, 0,
		C_EHLO C_FULL_A C_QUIT, R_READY R_A_SENT R_CLEAN, SMTP_CLIENT_EV_CLOSE },
	{ "must: not offered, QUIT, held", T_NORMAL,
		G S_EHLO S_BYE, 0, "A", 1, 0, 0, C_EHLO C_QUIT,
		"tls refused\nclosed: T* 451 4.7.4 TLS is required, but was not offered by host\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "must: HELO-only server cannot offer it", T_NORMAL,
		G "502 5.5.2 Error: command not recognized\r\n250 mx.c.test\r\n" S_BYE, 0, "A",
		1, 0, 0, C_EHLO "HELO relay.test\r\n" C_QUIT,
		"tls refused\nclosed: T* 451 4.7.4 TLS is required, but was not offered by host\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "may: 454 to STARTTLS, clear with the first EHLO's capabilities", T_NORMAL,
		G S_EHLO_TLS S_TLS_454 S_MAIL S_RCPT S_GO S_QUEUED S_BYE, 0, "A", 1, 0, 0,
		C_EHLO C_STARTTLS C_MAIL C_RCPT("a") "DATA\r\n" C_BODY C_QUIT,
		"ready caps=0x26\n" R_A_SENT R_CLEAN, SMTP_CLIENT_EV_CLOSE },
	{ "must: 454 to STARTTLS, QUIT, held with the server's words", T_NORMAL,
		G S_EHLO_TLS S_TLS_454 S_BYE, 0, "A", 1, 0, 0, C_EHLO C_STARTTLS C_QUIT,
		"tls refused\nclosed: T* 451 4.7.4 TLS is required, but host refused to start "
		"TLS: 454 4.7.0 TLS not available due to local problem\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "verify: certificate rejected after the handshake, QUIT", T_NORMAL,
		G S_EHLO_TLS S_TLS_GO S_BYE, 0, "A", 1, 0, 0, C_EHLO C_STARTTLS C_QUIT,
		"starttls\ntls refused\nclosed: T* 451 4.7.5 certificate verification failed "
		"for mx.c.test: hostname mismatch\n", SMTP_CLIENT_EV_CLOSE },
	{ "may: 421 to STARTTLS ends the session", T_NORMAL,
		G S_EHLO_TLS "421 4.3.2 shutting down\r\n", 0, "A", 1, 0, 0,
		C_EHLO C_STARTTLS, "closed: T 421 4.3.2 shutting down\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "may: garbage to STARTTLS is a protocol error", T_NORMAL,
		G S_EHLO_TLS "\x16\x03\x01\x02\r\n", 0, "A", 1, 0, 0,
		C_EHLO C_STARTTLS, "closed: T* 451 4.5.0 protocol error: malformed reply while "
		"sending STARTTLS\n", SMTP_CLIENT_EV_CLOSE },
	{ "must: second EHLO refused, HELO inside TLS is enough", T_NORMAL,
		G S_EHLO_TLS S_TLS_GO "502 5.5.2 no\r\n250 mx.c.test\r\n" S_BYE, 0, "", 1,
		0, 0, C_EHLO C_STARTTLS C_EHLO "HELO relay.test\r\n" C_QUIT,
		"starttls\nready caps=0x0\n" R_CLEAN, SMTP_CLIENT_EV_CLOSE },
};

static const struct t_tls t_tls_opts[] = {
	{ SMTP_CLIENT_TLS_MAY, 0, NULL, NULL },
	{ SMTP_CLIENT_TLS_MUST, 0, NULL, NULL },
	{ SMTP_CLIENT_TLS_NONE, 0, NULL, NULL },
	{ SMTP_CLIENT_TLS_MAY, 0, NULL, NULL },
	{ SMTP_CLIENT_TLS_MUST, 0, NULL, NULL },
	{ SMTP_CLIENT_TLS_MUST, 0, NULL, NULL },
	{ SMTP_CLIENT_TLS_MAY, 0, NULL, NULL },
	{ SMTP_CLIENT_TLS_MUST, 0, NULL, NULL },
	{ SMTP_CLIENT_TLS_MUST, 1, NULL, NULL },
	{ SMTP_CLIENT_TLS_MAY, 0, NULL, NULL },
	{ SMTP_CLIENT_TLS_MAY, 0, NULL, NULL },
	{ SMTP_CLIENT_TLS_MUST, 0, NULL, NULL },
};

Test(smtp_client, starttls)
{
	size_t i;

	cr_assert_eq(sizeof(t_tls_cases) / sizeof(t_tls_cases[0]),
			sizeof(t_tls_opts) / sizeof(t_tls_opts[0]));
	for (i = 0; i < sizeof(t_tls_cases) / sizeof(t_tls_cases[0]); i++)
		t_check_tls(&t_tls_cases[i], &t_tls_opts[i]);
}

/* ---- AUTH PLAIN (RFC 4954, RFC 4616): the hand-off of a node ------------ */

#define S_EHLO_AUTH "250-mx.c.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n" \
	"250-ENHANCEDSTATUSCODES\r\n250-AUTH PLAIN LOGIN\r\n250 SMTPUTF8\r\n"
#define S_EHLO_AUTH_OLD "250-mx.c.test\r\n250-PIPELINING\r\n250-AUTH=LOGIN PLAIN\r\n" \
	"250 SIZE 1000\r\n"
#define S_EHLO_LOGIN "250-mx.c.test\r\n250-PIPELINING\r\n250 AUTH LOGIN CRAM-MD5\r\n"
#define S_EHLO_TLS_ONLY "250-mx.c.test\r\n250-STARTTLS\r\n250 SIZE 1000\r\n"
#define S_EHLO_TLS_AUTH "250-mx.c.test\r\n250-PIPELINING\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"
#define S_AUTH_OK "235 2.7.0 Authentication successful\r\n"
#define S_AUTH_BAD "535 5.7.8 Error: authentication failed\r\n"
/* "\0node3\0s3cret" */
#define C_AUTH "AUTH PLAIN AG5vZGUzAHMzY3JldA==\r\n"

static const struct t_case t_auth_cases[] = {
	{ "AUTH PLAIN offered: AUTH first, then mail", T_NORMAL,
		G S_EHLO_AUTH S_AUTH_OK S_FULL_A S_BYE, 0, "A", 1, 0, 0,
		C_EHLO C_AUTH C_FULL_A C_QUIT, R_READY R_A_SENT "authed\n" R_CLEAN,
		SMTP_CLIENT_EV_CLOSE },
	{ "the old AUTH= form offers it too", T_NORMAL,
		G S_EHLO_AUTH_OLD S_AUTH_OK S_FULL_A S_BYE, 0, "A", 1, 0, 0,
		C_EHLO C_AUTH C_FULL_A C_QUIT, "ready caps=0x3\n" R_A_SENT "authed\n" R_CLEAN,
		SMTP_CLIENT_EV_CLOSE },
	{ "AUTH not offered: QUIT, nothing sent, a clear why", T_NORMAL,
		G S_EHLO S_BYE, 0, "A", 1, 0, 0, C_EHLO C_QUIT,
		"auth refused\nclosed: T* 451 4.7.0 AUTH PLAIN is required, but was not "
		"offered by host\n", SMTP_CLIENT_EV_CLOSE },
	{ "AUTH without PLAIN (LOGIN only): refused the same", T_NORMAL,
		G S_EHLO_LOGIN S_BYE, 0, "A", 1, 0, 0, C_EHLO C_QUIT,
		"auth refused\nclosed: T* 451 4.7.0 AUTH PLAIN is required, but was not "
		"offered by host\n", SMTP_CLIENT_EV_CLOSE },
	{ "HELO-only server cannot offer AUTH", T_NORMAL,
		G "502 5.5.2 Error: command not recognized\r\n250 mx.c.test\r\n" S_BYE, 0, "A",
		1, 0, 0, C_EHLO "HELO relay.test\r\n" C_QUIT,
		"auth refused\nclosed: T* 451 4.7.0 AUTH PLAIN is required, but was not "
		"offered by host\n", SMTP_CLIENT_EV_CLOSE },
	{ "535: QUIT with the server's words, no mail", T_NORMAL,
		G S_EHLO_AUTH S_AUTH_BAD S_BYE, 0, "A", 1, 0, 0, C_EHLO C_AUTH C_QUIT,
		"auth refused\nclosed: B 535 5.7.8 Error: authentication failed\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "454 (temporary) refuses too", T_NORMAL,
		G S_EHLO_AUTH "454 4.7.0 Temporary authentication failure\r\n" S_BYE, 0, "A", 1,
		0, 0, C_EHLO C_AUTH C_QUIT,
		"auth refused\nclosed: T 454 4.7.0 Temporary authentication failure\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "334 after the initial response is a protocol error", T_NORMAL,
		G S_EHLO_AUTH "334 \r\n", 0, "A", 1, 0, 0, C_EHLO C_AUTH,
		"closed: T* 451 4.5.0 protocol error: unexpected challenge to AUTH PLAIN while "
		"sending AUTH\n", SMTP_CLIENT_EV_CLOSE },
	{ "421 to AUTH ends the session", T_NORMAL,
		G S_EHLO_AUTH "421 4.3.2 shutting down\r\n", 0, "A", 1, 0, 0, C_EHLO C_AUTH,
		"closed: T 421 4.3.2 shutting down\n", SMTP_CLIENT_EV_CLOSE },
	{ "no reply to AUTH: the AUTH timeout", T_NORMAL,
		G S_EHLO_AUTH, 0, "A", 1, 1, 0, C_EHLO C_AUTH,
		"timeout=300000\nclosed: T* 451 4.4.2 conversation timed out while sending "
		"AUTH\n", SMTP_CLIENT_EV_CLOSE },
	{ "EOF while AUTH is answered", T_NORMAL,
		G S_EHLO_AUTH, 0, "A", 1, 0, 1, C_EHLO C_AUTH,
		"closed: T* 451 4.4.2 lost connection with server while sending AUTH\n",
		SMTP_CLIENT_EV_CLOSE },
	{ "may: STARTTLS first, AUTH inside TLS from the second EHLO", T_NORMAL,
		G S_EHLO_TLS_ONLY S_TLS_GO S_EHLO_TLS_AUTH S_AUTH_OK S_FULL_A S_BYE, 0, "A", 1, 0,
		0, C_EHLO C_STARTTLS C_EHLO C_AUTH C_MAIL_NOSIZE C_RCPT("a") "DATA\r\n" C_BODY
		C_QUIT, "starttls\nready caps=0x5\n" R_A_SENT "authed\n" R_CLEAN,
		SMTP_CLIENT_EV_CLOSE },
	{ "must: AUTH offered before TLS only counts after it: refused", T_NORMAL,
		G "250-mx.c.test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n" S_TLS_GO
		S_EHLO_AFTER S_BYE, 0, "A", 1, 0, 0, C_EHLO C_STARTTLS C_EHLO C_QUIT,
		"starttls\nauth refused\nclosed: T* 451 4.7.0 AUTH PLAIN is required, but was "
		"not offered by host\n", SMTP_CLIENT_EV_CLOSE },
	{ "may: 454 to STARTTLS, AUTH in the clear with the first EHLO's offer", T_NORMAL,
		G "250-mx.c.test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n" S_TLS_454 S_AUTH_OK
		S_MAIL S_RCPT S_GO S_QUEUED S_BYE, 0, "A", 1, 0, 0,
		C_EHLO C_STARTTLS C_AUTH C_MAIL_NOSIZE C_RCPT("a") "DATA\r\n" C_BODY C_QUIT,
		"ready caps=0x20\n" R_A_SENT "authed\n" R_CLEAN, SMTP_CLIENT_EV_CLOSE },
	{ "must: TLS not offered: the TLS refusal wins, AUTH never sent", T_NORMAL,
		G S_EHLO_AUTH S_BYE, 0, "A", 1, 0, 0, C_EHLO C_QUIT,
		"tls refused\nclosed: T* 451 4.7.4 TLS is required, but was not offered by host\n",
		SMTP_CLIENT_EV_CLOSE },
};

static const struct t_tls t_auth_opts[] = {
	{ SMTP_CLIENT_TLS_NONE, 0, "node3", "s3cret" },
	{ SMTP_CLIENT_TLS_NONE, 0, "node3", "s3cret" },
	{ SMTP_CLIENT_TLS_NONE, 0, "node3", "s3cret" },
	{ SMTP_CLIENT_TLS_NONE, 0, "node3", "s3cret" },
	{ SMTP_CLIENT_TLS_NONE, 0, "node3", "s3cret" },
	{ SMTP_CLIENT_TLS_NONE, 0, "node3", "s3cret" },
	{ SMTP_CLIENT_TLS_NONE, 0, "node3", "s3cret" },
	{ SMTP_CLIENT_TLS_NONE, 0, "node3", "s3cret" },
	{ SMTP_CLIENT_TLS_NONE, 0, "node3", "s3cret" },
	{ SMTP_CLIENT_TLS_NONE, 0, "node3", "s3cret" },
	{ SMTP_CLIENT_TLS_NONE, 0, "node3", "s3cret" },
	{ SMTP_CLIENT_TLS_MAY, 0, "node3", "s3cret" },
	{ SMTP_CLIENT_TLS_MUST, 0, "node3", "s3cret" },
	{ SMTP_CLIENT_TLS_MAY, 0, "node3", "s3cret" },
	{ SMTP_CLIENT_TLS_MUST, 0, "node3", "s3cret" },
};

Test(smtp_client, auth_plain)
{
	size_t i;

	cr_assert_eq(sizeof(t_auth_cases) / sizeof(t_auth_cases[0]),
			sizeof(t_auth_opts) / sizeof(t_auth_opts[0]));
	for (i = 0; i < sizeof(t_auth_cases) / sizeof(t_auth_cases[0]); i++)
		t_check_tls(&t_auth_cases[i], &t_auth_opts[i]);
}

/* ---- API edges ------------------------------------------------------------ */

static enum smtp_client_event t_feed_all(struct smtp_client *c, const char *s, struct buf *out)
{
	enum smtp_client_event ev;
	size_t n = strlen(s);

	cr_assert_eq(smtp_client_feed(c, s, n, out, &ev), n);
	return ev;
}

static void t_out_is(struct buf *out, const char *want)
{
	cr_assert_eq(out->len, strlen(want), "out %zu, want %zu", out->len, strlen(want));
	cr_assert(memcmp(out->data, want, out->len) == 0);
	buf_reset(out);
}

static struct smtp_client_msg t_msg_of(const struct t_msg *m, size_t *lens)
{
	struct smtp_client_msg sm;
	unsigned n;

	for (n = 0; n < 8 && m->rcpt[n]; n++)
		lens[n] = strlen(m->rcpt[n]);
	sm.sender = m->sender;
	sm.sender_len = strlen(m->sender);
	sm.nrcpt = n;
	sm.rcpt = m->rcpt;
	sm.rcpt_len = lens;
	sm.size = m->size;
	sm.eightbit = m->eightbit;
	sm.smtputf8 = m->smtputf8;
	return sm;
}

/* Timeouts follow the oldest unanswered command through a pipelined
 * transaction, and the body phase (RFC 5321 4.5.3.2). */
Test(smtp_client, timeouts_walk)
{
	struct smtp_client *c = smtp_client_new(&t_confs[T_NORMAL], NULL);
	size_t lens[8];
	struct smtp_client_msg m = t_msg_of(&t_msgs['C' - 'A'], lens);
	struct buf out;
	uint64_t size_max = 7;

	log_set_level(LOGL_ERR);
	buf_init(&out, 0);
	cr_assert_eq(smtp_client_timeout_ms(c), SMTP_CLIENT_TIMEOUT_GREETING_MS);
	cr_assert_eq(t_feed_all(c, G, &out), SMTP_CLIENT_EV_NEED_INPUT);
	cr_assert_eq(smtp_client_timeout_ms(c), SMTP_CLIENT_TIMEOUT_HELO_MS);
	cr_assert_eq(t_feed_all(c, S_EHLO, &out), SMTP_CLIENT_EV_READY);
	cr_assert_eq(smtp_client_caps(c, &size_max), 0x1f);
	cr_assert_eq(size_max, 1000);
	cr_assert_eq(smtp_client_timeout_ms(c), 0);
	cr_assert_eq(smtp_client_submit(c, &m, &out), 0);
	cr_assert_eq(smtp_client_timeout_ms(c), SMTP_CLIENT_TIMEOUT_MAIL_MS);
	cr_assert_eq(t_feed_all(c, S_MAIL, &out), SMTP_CLIENT_EV_NEED_INPUT);
	cr_assert_eq(smtp_client_timeout_ms(c), SMTP_CLIENT_TIMEOUT_RCPT_MS);
	cr_assert_eq(t_feed_all(c, S_RCPT S_RCPT S_RCPT, &out), SMTP_CLIENT_EV_NEED_INPUT);
	cr_assert_eq(smtp_client_timeout_ms(c), SMTP_CLIENT_TIMEOUT_DATA_MS);
	cr_assert_eq(t_feed_all(c, S_GO, &out), SMTP_CLIENT_EV_SEND_BODY);
	cr_assert_eq(smtp_client_timeout_ms(c), SMTP_CLIENT_TIMEOUT_BLOCK_MS);
	/* Timeout while sending the body: every accepted recipient deferred. */
	cr_assert_eq(smtp_client_timed_out(c), SMTP_CLIENT_EV_MSG_DONE);
	cr_assert(smtp_client_closed(c));
	cr_assert_eq(smtp_client_result(c, 2)->status, SMTP_CLIENT_DEFERRED);
	cr_assert_eq(smtp_client_result(c, 2)->code, 451);
	cr_assert_str_eq(smtp_client_result(c, 2)->enh, "4.4.2");
	cr_assert(smtp_client_result(c, 2)->local);
	cr_assert_eq(smtp_client_timeout_ms(c), 0);
	cr_assert_eq(smtp_client_timed_out(c), SMTP_CLIENT_EV_CLOSE);
	cr_assert_eq(smtp_client_body_sent(c, &out), -EBUSY);
	buf_free(&out);
	smtp_client_free(c);
}

Test(smtp_client, misuse_is_refused)
{
	struct smtp_client *c = smtp_client_new(&t_confs[T_NORMAL], "peer\x01");
	size_t lens[8];
	struct smtp_client_msg m = t_msg_of(&t_msgs['A' - 'A'], lens);
	enum smtp_client_event ev;
	struct buf out;

	log_set_level(LOGL_ERR);
	buf_init(&out, 0);
	cr_assert_eq(smtp_client_submit(c, &m, &out), -EBUSY);
	cr_assert_eq(smtp_client_quit(c, &out), -EBUSY);
	cr_assert_eq(smtp_client_body_sent(c, &out), -EBUSY);
	cr_assert_null(smtp_client_result(c, 0));
	cr_assert_eq(smtp_client_msg_code(c), 0);
	cr_assert_null(smtp_client_close_reason(c));
	cr_assert_eq(t_feed_all(c, G S_EHLO, &out), SMTP_CLIENT_EV_READY);
	m.nrcpt = 0;
	cr_assert_eq(smtp_client_submit(c, &m, &out), -EINVAL);
	m.nrcpt = 1;
	cr_assert_eq(smtp_client_submit(c, &m, &out), 0);
	cr_assert_eq(smtp_client_submit(c, &m, &out), -EBUSY);
	cr_assert_eq(smtp_client_quit(c, &out), -EBUSY);
	cr_assert_null(smtp_client_result(c, 0)); /* not finished yet */
	/* Shutdown mid-transaction. */
	cr_assert_eq(smtp_client_abort(c, "shutting down"), SMTP_CLIENT_EV_MSG_DONE);
	cr_assert_eq(smtp_client_result(c, 0)->status, SMTP_CLIENT_DEFERRED);
	cr_assert_eq(smtp_client_result(c, 0)->text_len, strlen("shutting down"));
	cr_assert(memcmp(smtp_client_result(c, 0)->text, "shutting down", 13) == 0);
	cr_assert_eq(smtp_client_close_reason(c)->code, 451);
	cr_assert_eq(smtp_client_feed(c, "250 x\r\n", 7, &out, &ev), 0);
	cr_assert_eq(ev, SMTP_CLIENT_EV_CLOSE);
	cr_assert_eq(smtp_client_feed(c, "", 0, &out, &ev), 0);
	cr_assert_eq(ev, SMTP_CLIENT_EV_CLOSE);
	cr_assert_eq(smtp_client_abort(c, "again"), SMTP_CLIENT_EV_CLOSE);
	cr_assert_eq(smtp_client_submit(c, &m, &out), -EBUSY);
	buf_free(&out);
	cr_assert_null(smtp_client_free(c));
	cr_assert_null(smtp_client_free(NULL));
}

/* A full output buffer: submit decides the message (deferred) and the
 * session stays usable; inside feed it ends the session. */
Test(smtp_client, output_buffer_full)
{
	struct smtp_client *c = smtp_client_new(&t_confs[T_NORMAL], "peer");
	size_t lens[8];
	struct smtp_client_msg m = t_msg_of(&t_msgs['C' - 'A'], lens);
	const struct smtp_client_result *r;
	struct buf out;

	log_set_level(LOGL_ERR);
	buf_init(&out, 40);
	cr_assert_eq(t_feed_all(c, G "250-mx\r\n250 SIZE 1000\r\n", &out), SMTP_CLIENT_EV_READY);
	buf_reset(&out);
	out.max = 10;
	cr_assert_eq(smtp_client_submit(c, &m, &out), -ENOMEM);
	cr_assert_eq(out.len, 0);
	r = smtp_client_result(c, 1);
	cr_assert_eq(r->status, SMTP_CLIENT_DEFERRED);
	cr_assert_str_eq(r->enh, "4.3.0");
	cr_assert(r->local);
	/* Without pipelining the next RCPT is written from feed. */
	out.max = 40;
	cr_assert_eq(smtp_client_submit(c, &m, &out), 0);
	t_out_is(&out, C_MAIL);
	out.max = 10;
	cr_assert_eq(t_feed_all(c, S_MAIL, &out), SMTP_CLIENT_EV_MSG_DONE);
	r = smtp_client_result(c, 0);
	cr_assert_eq(r->status, SMTP_CLIENT_DEFERRED);
	cr_assert_eq(r->text_len, strlen("cannot queue command while sending RCPT TO"));
	cr_assert(smtp_client_closed(c));
	buf_free(&out);
	smtp_client_free(c);
}

/* MAIL FROM's parameters are appended, not printed: SIZE of 0, of one
 * digit and of the largest uint64, each with and without BODY=8BITMIME and
 * SMTPUTF8, in that order; a 354 without an enhanced code gives 3.0.0. */
Test(smtp_client, mail_params)
{
	static const struct {
		uint64_t size;
		int eightbit, utf8;
		const char *want;
	} cases[] = {
		{ 0, 0, 0, "MAIL FROM:<s@x.test> SIZE=0\r\n" },
		{ 7, 1, 0, "MAIL FROM:<s@x.test> SIZE=7 BODY=8BITMIME\r\n" },
		{ 18446744073709551615ull, 1, 1,
			"MAIL FROM:<s@x.test> SIZE=18446744073709551615 BODY=8BITMIME SMTPUTF8\r\n" },
		{ 1000000, 0, 1, "MAIL FROM:<s@x.test> SIZE=1000000 SMTPUTF8\r\n" },
	};
	static const char *rcpt[] = { "a@c.test" };
	static const size_t lens[] = { 8 };
	struct buf out, want;

	log_set_level(LOGL_ERR);
	buf_init(&out, 0);
	buf_init(&want, 0);
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct smtp_client *c = smtp_client_new(&t_confs[T_NORMAL], "peer");
		struct smtp_client_msg m = { "s@x.test", 8, 1, rcpt, lens, cases[k].size,
			cases[k].eightbit, cases[k].utf8 };

		cr_assert_eq(t_feed_all(c, G "250-x\r\n250-PIPELINING\r\n250-SIZE\r\n"
				"250-8BITMIME\r\n250 SMTPUTF8\r\n", &out), SMTP_CLIENT_EV_READY);
		buf_reset(&out);
		cr_assert_eq(smtp_client_submit(c, &m, &out), 0);
		buf_reset(&want);
		cr_assert_eq(buf_puts(&want, cases[k].want), 0);
		cr_assert_eq(buf_puts(&want, "RCPT TO:<a@c.test>\r\nDATA\r\n"), 0);
		cr_assert_eq(out.len, want.len, "case %zu: %.*s", k, (int)out.len, out.data);
		cr_assert(memcmp(out.data, want.data, want.len) == 0, "case %zu: %.*s", k,
				(int)out.len, out.data);
		/* 250, 250, then a 354 with no enhanced code: the body is due. */
		cr_assert_eq(t_feed_all(c, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n",
				&out), SMTP_CLIENT_EV_SEND_BODY);
		cr_assert_eq(smtp_client_body_sent(c, &out), 0);
		/* A final reply without one: the result's enh is its class's. */
		cr_assert_eq(t_feed_all(c, "451 try later\r\n", &out), SMTP_CLIENT_EV_MSG_DONE);
		cr_assert_str_eq(smtp_client_result(c, 0)->enh, "4.0.0");
		cr_assert_eq(smtp_client_result(c, 0)->status, SMTP_CLIENT_DEFERRED);
		smtp_client_free(c);
	}
	buf_free(&out);
	buf_free(&want);
}

/* Many recipients pipelined in one write; buffers are reused after. */
Test(smtp_client, many_recipients)
{
	enum { N = 2000 };
	struct smtp_client *c = smtp_client_new(&t_confs[T_NORMAL], "peer");
	static char names[N][16];
	static const char *rcpt[N];
	static size_t lens[N];
	struct smtp_client_msg m = { "s@x.test", 8, N, rcpt, lens, 10, 0, 0 };
	struct buf out, in;
	unsigned i, round;

	log_set_level(LOGL_ERR);
	buf_init(&out, 0);
	buf_init(&in, 0);
	for (i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "u%u@c.test", i);
		rcpt[i] = names[i];
		lens[i] = strlen(names[i]);
	}
	cr_assert_eq(t_feed_all(c, G S_EHLO, &out), SMTP_CLIENT_EV_READY);
	for (round = 0; round < 3; round++) {
		buf_reset(&out);
		buf_reset(&in);
		cr_assert_eq(smtp_client_submit(c, &m, &out), 0);
		/* One write: MAIL, every RCPT, DATA (RFC 2920 3.1). */
		cr_assert_eq(buf_puts(&in, "MAIL FROM:<s@x.test> SIZE=10\r\n"), 0);
		for (i = 0; i < N; i++)
			cr_assert_eq(buf_printf(&in, "RCPT TO:<%s>\r\n", names[i]), 0);
		cr_assert_eq(buf_puts(&in, "DATA\r\n"), 0);
		cr_assert_eq(out.len, in.len);
		cr_assert(memcmp(out.data, in.data, in.len) == 0);
		buf_reset(&in);
		cr_assert_eq(buf_puts(&in, S_MAIL), 0);
		for (i = 0; i < N; i++)
			cr_assert_eq(buf_puts(&in, i % 2 ? S_RCPT : "550 5.1.1 no\r\n"), 0);
		cr_assert_eq(buf_puts(&in, S_GO), 0);
		cr_assert_eq(buf_append(&in, "", 1), 0);
		cr_assert_eq(t_feed_all(c, in.data, &out), SMTP_CLIENT_EV_SEND_BODY);
		cr_assert_eq(smtp_client_body_sent(c, &out), 0);
		cr_assert_eq(t_feed_all(c, S_QUEUED, &out), SMTP_CLIENT_EV_MSG_DONE);
		for (i = 0; i < N; i++)
			cr_assert_eq(smtp_client_result(c, i)->status,
					i % 2 ? SMTP_CLIENT_DELIVERED : SMTP_CLIENT_BOUNCED);
		cr_assert_eq(smtp_client_msg_code(c), 250);
	}
	buf_free(&out);
	buf_free(&in);
	smtp_client_free(c);
}

/* The handshake phase itself: its timeout, EOF during it, and the calls
 * that only fit there. */
Test(smtp_client, starttls_handshake_phase)
{
	struct smtp_client *c = smtp_client_new(&t_confs[T_NORMAL], NULL);
	const struct smtp_client_result *why;
	enum smtp_client_event ev;
	struct buf out;

	log_set_level(LOGL_ERR);
	buf_init(&out, 0);
	cr_assert_eq(smtp_client_set_tls(c, SMTP_CLIENT_TLS_MAY), 0);
	cr_assert_eq(smtp_client_tls_up(c, &out), -EBUSY);
	cr_assert_eq(smtp_client_tls_reject(c, &out, "4.7.5", "x"), -EBUSY);
	cr_assert_eq(t_feed_all(c, G, &out), SMTP_CLIENT_EV_NEED_INPUT);
	cr_assert_eq(smtp_client_set_tls(c, SMTP_CLIENT_TLS_MUST), -EBUSY);
	cr_assert_eq(t_feed_all(c, S_EHLO_TLS, &out), SMTP_CLIENT_EV_NEED_INPUT);
	cr_assert(smtp_client_starttls_sent(c));
	cr_assert_eq(smtp_client_timeout_ms(c), SMTP_CLIENT_TIMEOUT_STARTTLS_MS);
	t_out_is(&out, C_EHLO C_STARTTLS);
	/* What follows the 220 in the same read is not consumed: the caller
	 * drops it (RFC 3207 5, CVE-2011-0411). */
	cr_assert_eq(smtp_client_feed(c, S_TLS_GO "250 injected\r\n",
			strlen(S_TLS_GO "250 injected\r\n"), &out, &ev), strlen(S_TLS_GO));
	cr_assert_eq(ev, SMTP_CLIENT_EV_STARTTLS);
	cr_assert(!smtp_client_starttls_sent(c));
	cr_assert_eq(smtp_client_timeout_ms(c), SMTP_CLIENT_TIMEOUT_TLS_MS);
	cr_assert_eq(smtp_client_quit(c, &out), -EBUSY);
	cr_assert_eq(out.len, 0);
	cr_assert_eq(smtp_client_feed(c, "", 0, &out, &ev), 0);
	cr_assert_eq(ev, SMTP_CLIENT_EV_CLOSE);
	why = smtp_client_close_reason(c);
	cr_assert_not_null(why);
	cr_assert_eq(why->text_len, strlen("lost connection with server while performing the TLS handshake"));
	cr_assert(!memcmp(why->text, "lost connection with server while performing the TLS handshake",
			why->text_len));
	cr_assert_eq(smtp_client_tls_refused(c), 0);
	cr_assert_eq(smtp_client_tls_up(c, &out), -EBUSY);
	buf_free(&out);
	smtp_client_free(c);
}

/* set_auth's edges: only before the session starts, bounded parts, once. */
Test(smtp_client, auth_set_edges)
{
	char big[SMTP_CLIENT_AUTH_PART_MAX + 2];
	struct smtp_client *c = smtp_client_new(&t_confs[T_NORMAL], NULL);
	struct buf out;

	log_set_level(LOGL_ERR);
	buf_init(&out, 0);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(smtp_client_set_auth(c, "", "p"), -EINVAL);
	cr_assert_eq(smtp_client_set_auth(c, NULL, "p"), -EINVAL);
	cr_assert_eq(smtp_client_set_auth(c, big, "p"), -EINVAL);
	cr_assert_eq(smtp_client_set_auth(c, "u", big), -EINVAL);
	big[SMTP_CLIENT_AUTH_PART_MAX] = '\0'; /* exactly the maximum: fine */
	cr_assert_eq(smtp_client_set_auth(c, big, big), 0);
	cr_assert_eq(smtp_client_set_auth(c, "u", "p"), -EBUSY);
	cr_assert_eq(smtp_client_authed(c), 0);
	cr_assert_eq(t_feed_all(c, G, &out), SMTP_CLIENT_EV_NEED_INPUT);
	cr_assert_eq(t_feed_all(c, S_EHLO_AUTH, &out), SMTP_CLIENT_EV_NEED_INPUT);
	cr_assert_eq(smtp_client_timeout_ms(c), SMTP_CLIENT_TIMEOUT_AUTH_MS);
	cr_assert_eq(t_feed_all(c, S_AUTH_OK, &out), SMTP_CLIENT_EV_READY);
	cr_assert_eq(smtp_client_authed(c), 1);
	buf_free(&out);
	smtp_client_free(c);
	c = smtp_client_new(&t_confs[T_NORMAL], NULL);
	buf_init(&out, 0);
	cr_assert_eq(t_feed_all(c, G, &out), SMTP_CLIENT_EV_NEED_INPUT);
	cr_assert_eq(smtp_client_set_auth(c, "u", "p"), -EBUSY); /* too late */
	buf_free(&out);
	smtp_client_free(c);
}
