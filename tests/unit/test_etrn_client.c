/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for proto/etrn_client.c: sessions in C tables (upstream bytes
 * in -> the exact commands out, events, each request's reply, the close
 * reason). A small driver plays the activator: it runs the "handshake" on
 * STARTTLS, stops at REVERSE and notes what was left unconsumed, and may
 * abort or send EOF after the script. Every case is replayed with the input
 * whole, then one byte at a time, then in other chunk sizes; all runs must
 * give identical results.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "proto/etrn_client.h"

#define T_RESULT_MAX 8192

/* ---- session configurations ------------------------------------------ */

static const char *const t_nodes3[] = { "example.com", "@example.net", "#q1" };
static const char *const t_nodes1[] = { "example.com" };
static const char *const t_nodes8[] = { "a.test", "b.test", "c.test", "d.test", "e.test",
	"f.test", "g.test", "h.test" };
static const char *const t_domains2[] = { "example.com", "example.net" };

enum t_conf {
	T_ETRN3 = 0,   /* three nodes, no TLS, no credentials */
	T_ETRN1,
	T_ETRN8,
	T_MAY,         /* tls may */
	T_MUST,        /* tls must */
	T_AUTH_CLEAR,  /* credentials, tls none, auth_cleartext */
	T_AUTH_MAY,    /* credentials, tls may, not in the clear */
	T_AUTH_NOTLS,  /* credentials, tls none, not in the clear */
	T_ATRN,        /* ATRN example.com,example.net */
	T_ATRN_ALL,    /* bare ATRN */
	T_SMALL,       /* 32-octet lines, 4 lines a reply */
};

#define T_BASE .helo_name = "cust.test", .reply_line_max = 512, .max_reply_lines = 100
#define T_CRED .user = "cust", .pass = "s3cret"

static const struct etrn_client_conf t_confs[] = {
	[T_ETRN3] = { T_BASE, .nreq = 3, .req = t_nodes3 },
	[T_ETRN1] = { T_BASE, .nreq = 1, .req = t_nodes1 },
	[T_ETRN8] = { T_BASE, .nreq = 8, .req = t_nodes8 },
	[T_MAY] = { T_BASE, .tls = SMTP_CLIENT_TLS_MAY, .nreq = 1, .req = t_nodes1 },
	[T_MUST] = { T_BASE, .tls = SMTP_CLIENT_TLS_MUST, .nreq = 1, .req = t_nodes1 },
	[T_AUTH_CLEAR] = { T_BASE, T_CRED, .auth_cleartext = 1, .nreq = 1, .req = t_nodes1 },
	[T_AUTH_MAY] = { T_BASE, T_CRED, .tls = SMTP_CLIENT_TLS_MAY, .nreq = 1,
		.req = t_nodes1 },
	[T_AUTH_NOTLS] = { T_BASE, T_CRED, .nreq = 1, .req = t_nodes1 },
	[T_ATRN] = { T_BASE, T_CRED, .method = ETRN_CLIENT_ATRN, .auth_cleartext = 1,
		.nreq = 2, .req = t_domains2 },
	[T_ATRN_ALL] = { T_BASE, T_CRED, .method = ETRN_CLIENT_ATRN, .auth_cleartext = 1 },
	[T_SMALL] = { .helo_name = "cust.test", .reply_line_max = 32, .max_reply_lines = 4,
		.nreq = 1, .req = t_nodes1 },
};

/* ---- driver ----------------------------------------------------------- */

enum t_end { T_END_NONE = 0, T_END_EOF, T_END_ABORT };

struct t_case {
	const char *name;
	enum t_conf conf;
	const char *in;        /* everything the upstream says */
	size_t in_len;         /* 0: strlen(in); set it for inputs with NUL */
	enum t_end end;        /* after the input: EOF, or the timer expires */
	int reject;            /* on EV_STARTTLS: the certificate did not verify */
	const char *want_out;  /* every byte the client wrote */
	const char *want_res;  /* see t_record() */
	enum etrn_client_event want_ev; /* the last event */
};

struct t_result {
	char out[T_RESULT_MAX];
	char res[T_RESULT_MAX];
	size_t res_len;
	enum etrn_client_event ev;
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

/* "<code> <enh>[*] text" (* local) */
static void t_print_reply(struct t_result *r, const struct etrn_client_reply *x)
{
	cr_assert(strlen(x->text) < ETRN_CLIENT_TEXT_MAX);
	for (const char *p = x->text; *p; p++)
		cr_assert(*p >= 0x20 && *p < 0x7f, "unprintable reply text");
	t_printf(r, "%d %s%s %s\n", x->code, x->enh, x->local ? "*" : "", x->text);
}

/* After the session: "r<i>: <reply>" per request, "why: <reply>" or
 * "why: none", then "ok=<ok> tls=<on> auth=<authed>". */
static void t_record(struct t_result *r, const struct etrn_client *c)
{
	const struct etrn_client_reply *why = etrn_client_close_reason(c);
	unsigned i, n = etrn_client_nresults(c);

	for (i = 0; i < n; i++) {
		t_printf(r, "r%u: ", i);
		t_print_reply(r, etrn_client_result(c, i));
	}
	cr_assert_null(etrn_client_result(c, n));
	if (why == NULL) {
		t_printf(r, "why: none\n");
	} else {
		t_printf(r, "why: ");
		t_print_reply(r, why);
	}
	t_printf(r, "ok=%d tls=%d auth=%d\n", etrn_client_ok(c), etrn_client_tls_on(c),
			etrn_client_authed(c));
}

/* Act on one event like an activator would; 1 when the session is over
 * for the driver (CLOSE or REVERSE). */
static int t_event(const struct t_case *tc, struct etrn_client *c, struct buf *out,
		struct t_result *r, enum etrn_client_event ev, const char *left, size_t nleft)
{
	char esc[256];

	switch (ev) {
	case ETRN_CLIENT_EV_STARTTLS:
		t_printf(r, "starttls\n");
		cr_assert_eq(etrn_client_timeout_ms(c), ETRN_CLIENT_TIMEOUT_MS);
		cr_assert_eq(etrn_client_tls_on(c), 0);
		if (tc->reject) {
			cr_assert_eq(etrn_client_tls_reject(c, out,
					"certificate verification failed for mx.isp.test"), 0);
		} else {
			cr_assert_eq(etrn_client_tls_up(c, out), 0);
			cr_assert_eq(etrn_client_tls_on(c), 1);
		}
		cr_assert_eq(etrn_client_tls_up(c, out), -EBUSY);
		return 0;
	case ETRN_CLIENT_EV_REVERSE:
		t_printf(r, "reverse, left \"%s\"\n", log_printable(esc, sizeof(esc), left, nleft));
		cr_assert_eq(etrn_client_timeout_ms(c), 0);
		return 1;
	case ETRN_CLIENT_EV_CLOSE:
		return 1;
	default:
		return 0;
	}
}

static void t_run(const struct t_case *tc, size_t chunk, struct t_result *r)
{
	size_t n = tc->in_len ? tc->in_len : strlen(tc->in), i = 0;
	enum etrn_client_event ev = ETRN_CLIENT_EV_NEED_INPUT;
	struct etrn_client *c;
	struct buf out;
	int over = 0;
	char *in;

	memset(r, 0, sizeof(*r));
	log_set_level(LOGL_ERR);
	/* An exact-size heap copy, so ASan sees any read past the input. */
	in = malloc(n ? n : 1);
	cr_assert(in != NULL);
	memcpy(in, tc->in, n);
	buf_init(&out, 1u << 20);
	c = etrn_client_new(&t_confs[tc->conf]);
	cr_assert(c != NULL, "%s: new", tc->name);
	while (i < n && !over) {
		size_t k = chunk && chunk < n - i ? chunk : n - i, off = 0;

		while (off < k && !over) {
			size_t got = etrn_client_feed(c, in + i + off, k - off, &out, &ev);

			cr_assert(got <= k - off);
			off += got;
			if (ev == ETRN_CLIENT_EV_NEED_INPUT)
				cr_assert_eq(off, k, "NEED_INPUT must consume everything");
			else
				cr_assert(got > 0 || ev != ETRN_CLIENT_EV_STARTTLS);
			over = t_event(tc, c, &out, r, ev, in + i + off, n - i - off);
		}
		i += k;
	}
	if (!over && tc->end == T_END_ABORT) {
		t_printf(r, "timeout=%u\n", etrn_client_timeout_ms(c));
		ev = etrn_client_abort(c, "conversation timed out");
		cr_assert_eq(ev, ETRN_CLIENT_EV_CLOSE);
	} else if (!over && tc->end == T_END_EOF) {
		cr_assert_eq(etrn_client_feed(c, in, 0, &out, &ev), 0);
		over = t_event(tc, c, &out, r, ev, "", 0);
	}
	/* Once over, the session stays so. */
	if (ev == ETRN_CLIENT_EV_CLOSE || ev == ETRN_CLIENT_EV_REVERSE) {
		enum etrn_client_event again;

		cr_assert_eq(etrn_client_feed(c, "250 x\r\n", 7, &out, &again), 0);
		cr_assert_eq(again, ev);
		cr_assert_eq(etrn_client_timeout_ms(c), 0);
		cr_assert_eq(etrn_client_abort(c, "late"), ETRN_CLIENT_EV_CLOSE);
	}
	t_record(r, c);
	r->ev = ev;
	cr_assert(out.len < sizeof(r->out));
	if (out.len)
		memcpy(r->out, out.data, out.len);
	r->out[out.len] = '\0';
	buf_free(&out);
	cr_assert_null(etrn_client_free(c));
	free(in);
}

/* On a mismatch, show what came out, escaped, to make fixing the table easy. */
static void t_dump(const char *name, const char *what, const char *s)
{
	char esc[4 * T_RESULT_MAX];

	cr_log_error("%s: %s: %s", name, what, log_printable(esc, sizeof(esc), s, strlen(s)));
}

static void t_check(const struct t_case *tc)
{
	static const size_t chunks[] = { 0, 1, 2, 3, 5, 7, 13, 64 };
	static struct t_result first, r;
	size_t i;

	t_run(tc, 0, &first);
	if (strcmp(first.out, tc->want_out) != 0)
		t_dump(tc->name, "got out", first.out);
	if (strcmp(first.res, tc->want_res) != 0)
		t_dump(tc->name, "got res", first.res);
	cr_expect_str_eq(first.out, tc->want_out, "%s: out", tc->name);
	cr_expect_str_eq(first.res, tc->want_res, "%s: results", tc->name);
	cr_expect_eq(first.ev, tc->want_ev, "%s: event %d", tc->name, (int)first.ev);
	for (i = 1; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		t_run(tc, chunks[i], &r);
		cr_expect_str_eq(r.out, first.out, "%s: out, chunk %zu", tc->name, chunks[i]);
		cr_expect_str_eq(r.res, first.res, "%s: results, chunk %zu", tc->name, chunks[i]);
		cr_expect_eq(r.ev, first.ev, "%s: event, chunk %zu", tc->name, chunks[i]);
	}
}

/* ---- sessions ----------------------------------------------------------- */

/* upstream */
#define G "220 mx.isp.test ESMTP\r\n"
#define S_EHLO "250-mx.isp.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 ETRN\r\n"
#define S_EHLO_NOPIPE "250-mx.isp.test\r\n250 ETRN\r\n"
#define S_EHLO_TLS "250-mx.isp.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 ETRN\r\n"
#define S_EHLO_AUTH "250-mx.isp.test\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 ETRN\r\n"
#define S_EHLO_TLS_AUTH "250-mx.isp.test\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n" \
	"250 ETRN\r\n"
#define S_EHLO_LOGIN "250-mx.isp.test\r\n250-AUTH LOGIN CRAM-MD5\r\n250 ETRN\r\n"
#define S_EHLO_ATRN "250-mx.isp.test\r\n250-AUTH PLAIN\r\n250 ATRN\r\n"
#define S_GO_TLS "220 2.0.0 Ready to start TLS\r\n"
#define S_AUTH_OK "235 2.7.0 Authentication successful\r\n"
#define S_253 "253 2.0.0 OK, 12 pending messages for node example.com started\r\n"
#define S_BYE "221 2.0.0 Bye\r\n"

/* client */
#define C_EHLO "EHLO cust.test\r\n"
#define C_ETRN1 "ETRN example.com\r\n"
#define C_ETRN3 C_ETRN1 "ETRN @example.net\r\nETRN #q1\r\n"
#define C_PLAIN "AUTH PLAIN AGN1c3QAczNjcmV0\r\n"
#define C_QUIT "QUIT\r\n"

/* results */
#define R_253 "r0: 253 2.0.0 OK, 12 pending messages for node example.com started\n"
#define R_OK "why: none\nok=1 tls=0 auth=0\n"
#define R_UNSENT "r0: 0  \n"

static const struct t_case t_cases[] = {
	/* ---- ETRN ---- */
	{ "three nodes, pipelined", T_ETRN3,
		G S_EHLO "250 2.0.0 queuing for node example.com started\r\n"
		"251 2.0.0 OK no messages waiting for node example.net\r\n"
		S_253 S_BYE, 0, T_END_NONE, 0,
		C_EHLO C_ETRN3 C_QUIT,
		"r0: 250 2.0.0 queuing for node example.com started\n"
		"r1: 251 2.0.0 OK no messages waiting for node example.net\n"
		"r2: 253 2.0.0 OK, 12 pending messages for node example.com started\n" R_OK,
		ETRN_CLIENT_EV_CLOSE },
	{ "PIPELINING: every ETRN before any reply", T_ETRN3, G S_EHLO, 0, T_END_NONE, 0,
		C_EHLO C_ETRN3,
		"r0: 0  \nr1: 0  \nr2: 0  \nwhy: none\nok=0 tls=0 auth=0\n",
		ETRN_CLIENT_EV_NEED_INPUT },
	{ "no PIPELINING: one ETRN per reply", T_ETRN3,
		G S_EHLO_NOPIPE "252 OK pending messages for node example.com started\r\n", 0,
		T_END_NONE, 0, C_EHLO C_ETRN1 "ETRN @example.net\r\n",
		"r0: 252 2.0.0 OK pending messages for node example.com started\n"
		"r1: 0  \nr2: 0  \nwhy: none\nok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_NEED_INPUT },
	{ "no PIPELINING: whole session", T_ETRN3,
		G S_EHLO_NOPIPE "250 OK\r\n459 4.7.1 Node @example.net not allowed: not yours\r\n"
		"458 Unable to queue messages for node #q1\r\n" S_BYE, 0, T_END_NONE, 0,
		C_EHLO C_ETRN3 C_QUIT,
		"r0: 250 2.0.0 OK\nr1: 459 4.7.1 Node @example.net not allowed: not yours\n"
		"r2: 458 4.0.0 Unable to queue messages for node #q1\n"
		"why: none\nok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "every RFC 1985 reply code", T_ETRN8,
		G S_EHLO "250 2.0.0 started\r\n251 2.0.0 none\r\n252 2.0.0 pending\r\n"
		"253 2.0.0 3 pending\r\n458 4.3.0 unable\r\n459 4.7.1 not allowed\r\n"
		"500 5.5.2 syntax\r\n501 5.5.4 bad node\r\n" S_BYE, 0, T_END_NONE, 0,
		C_EHLO "ETRN a.test\r\nETRN b.test\r\nETRN c.test\r\nETRN d.test\r\n"
		"ETRN e.test\r\nETRN f.test\r\nETRN g.test\r\nETRN h.test\r\n" C_QUIT,
		"r0: 250 2.0.0 started\nr1: 251 2.0.0 none\nr2: 252 2.0.0 pending\n"
		"r3: 253 2.0.0 3 pending\nr4: 458 4.3.0 unable\nr5: 459 4.7.1 not allowed\n"
		"r6: 500 5.5.2 syntax\nr7: 501 5.5.4 bad node\n"
		"why: none\nok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "530 to ETRN: the reply, then QUIT", T_ETRN1,
		G S_EHLO "530 5.7.0 Authentication required\r\n" S_BYE, 0, T_END_NONE, 0,
		C_EHLO C_ETRN1 C_QUIT,
		"r0: 530 5.7.0 Authentication required\nwhy: none\nok=0 tls=0 auth=0\n",
		ETRN_CLIENT_EV_CLOSE },
	{ "EOF instead of 221 is a clean end", T_ETRN1, G S_EHLO S_253, 0, T_END_EOF, 0,
		C_EHLO C_ETRN1 C_QUIT, R_253 R_OK, ETRN_CLIENT_EV_CLOSE },
	{ "multiline reply, bare LF, NUL made printable", T_ETRN1,
		G "250-mx.isp.test\n250 PIPELINING\n253-2.0.0 OK, 12\0 pending\r\n"
		"253 2.0.0 messages\r started\r\n" S_BYE,
		sizeof(G "250-mx.isp.test\n250 PIPELINING\n253-2.0.0 OK, 12\0 pending\r\n"
			"253 2.0.0 messages\r started\r\n" S_BYE) - 1, T_END_NONE, 0,
		C_EHLO C_ETRN1 C_QUIT,
		"r0: 253 2.0.0 OK, 12? pending messages? started\n" R_OK, ETRN_CLIENT_EV_CLOSE },

	/* ---- the session refused ---- */
	{ "greeting 554: QUIT, the reply is the reason", T_ETRN1,
		"554 5.3.2 mx.isp.test no service\r\n" S_BYE, 0, T_END_NONE, 0, C_QUIT,
		R_UNSENT "why: 554 5.3.2 mx.isp.test no service\nok=0 tls=0 auth=0\n",
		ETRN_CLIENT_EV_CLOSE },
	{ "greeting 421: close without QUIT", T_ETRN1, "421 4.3.2 busy\r\n", 0, T_END_NONE, 0,
		"", R_UNSENT "why: 421 4.3.2 busy\nok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "EHLO 502: no HELO fallback, QUIT", T_ETRN1,
		G "502 5.5.2 Error: command not recognized\r\n" S_BYE, 0, T_END_NONE, 0,
		C_EHLO C_QUIT,
		R_UNSENT "why: 502 5.5.2 Error: command not recognized\nok=0 tls=0 auth=0\n",
		ETRN_CLIENT_EV_CLOSE },
	{ "EHLO 451: QUIT", T_ETRN1, G "451 4.3.0 try later\r\n" S_BYE, 0, T_END_NONE, 0,
		C_EHLO C_QUIT, R_UNSENT "why: 451 4.3.0 try later\nok=0 tls=0 auth=0\n",
		ETRN_CLIENT_EV_CLOSE },
	{ "421 to ETRN: close, unanswered", T_ETRN3,
		G S_EHLO "250 OK\r\n421 4.3.0 shutting down\r\n", 0, T_END_NONE, 0,
		C_EHLO C_ETRN3,
		"r0: 250 2.0.0 OK\nr1: 0  \nr2: 0  \nwhy: 421 4.3.0 shutting down\n"
		"ok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },

	/* ---- STARTTLS ---- */
	{ "may, offered: STARTTLS, EHLO again inside", T_MAY,
		G S_EHLO_TLS S_GO_TLS S_EHLO S_253 S_BYE, 0, T_END_NONE, 0,
		C_EHLO "STARTTLS\r\n" C_EHLO C_ETRN1 C_QUIT,
		"starttls\n" R_253 "why: none\nok=1 tls=1 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "may, not offered: in the clear", T_MAY, G S_EHLO S_253 S_BYE, 0, T_END_NONE, 0,
		C_EHLO C_ETRN1 C_QUIT, R_253 R_OK, ETRN_CLIENT_EV_CLOSE },
	{ "may, 454: in the clear", T_MAY,
		G S_EHLO_TLS "454 4.7.0 TLS not available due to local problem\r\n" S_253 S_BYE,
		0, T_END_NONE, 0, C_EHLO "STARTTLS\r\n" C_ETRN1 C_QUIT, R_253 R_OK,
		ETRN_CLIENT_EV_CLOSE },
	{ "must, not offered: QUIT, 4.7.4", T_MUST, G S_EHLO S_BYE, 0, T_END_NONE, 0,
		C_EHLO C_QUIT,
		R_UNSENT "why: 451 4.7.4* TLS is required, but was not offered by host\n"
		"ok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "must, 454: QUIT, 4.7.4", T_MUST,
		G S_EHLO_TLS "454 4.7.0 TLS not available\r\n" S_BYE, 0, T_END_NONE, 0,
		C_EHLO "STARTTLS\r\n" C_QUIT,
		R_UNSENT "why: 451 4.7.4* TLS is required, but host refused to start TLS: "
		"454 4.7.0 TLS not available\nok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "must, certificate rejected: QUIT, 4.7.5", T_MUST,
		G S_EHLO_TLS S_GO_TLS S_BYE, 0, T_END_NONE, 1, C_EHLO "STARTTLS\r\n" C_QUIT,
		"starttls\n" R_UNSENT "why: 451 4.7.5* certificate verification failed for "
		"mx.isp.test\nok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "must, offered: what follows the 220 is read inside TLS", T_MUST,
		G S_EHLO_TLS S_GO_TLS "250-mx.isp.test\r\n250 PIPELINING\r\n" S_253, 0,
		T_END_ABORT, 0, C_EHLO "STARTTLS\r\n" C_EHLO C_ETRN1 C_QUIT,
		"starttls\ntimeout=300000\n" R_253 "why: none\nok=1 tls=1 auth=0\n",
		ETRN_CLIENT_EV_CLOSE },

	/* ---- AUTH ---- */
	{ "AUTH PLAIN with an initial response, 235", T_AUTH_CLEAR,
		G S_EHLO_AUTH S_AUTH_OK S_253 S_BYE, 0, T_END_NONE, 0,
		C_EHLO C_PLAIN C_ETRN1 C_QUIT, R_253 "why: none\nok=1 tls=0 auth=1\n",
		ETRN_CLIENT_EV_CLOSE },
	{ "AUTH PLAIN inside TLS (may)", T_AUTH_MAY,
		G S_EHLO_TLS_AUTH S_GO_TLS S_EHLO_AUTH S_AUTH_OK S_253 S_BYE, 0, T_END_NONE, 0,
		C_EHLO "STARTTLS\r\n" C_EHLO C_PLAIN C_ETRN1 C_QUIT,
		"starttls\n" R_253 "why: none\nok=1 tls=1 auth=1\n", ETRN_CLIENT_EV_CLOSE },
	{ "AUTH PLAIN 535: QUIT, the reply is the reason", T_AUTH_CLEAR,
		G S_EHLO_AUTH "535 5.7.8 Error: authentication failed\r\n" S_BYE, 0,
		T_END_NONE, 0, C_EHLO C_PLAIN C_QUIT,
		R_UNSENT "why: 535 5.7.8 Error: authentication failed\nok=0 tls=0 auth=0\n",
		ETRN_CLIENT_EV_CLOSE },
	{ "AUTH 534: QUIT", T_AUTH_CLEAR,
		G S_EHLO_AUTH "534 5.7.9 Authentication mechanism is too weak\r\n" S_BYE, 0,
		T_END_NONE, 0, C_EHLO C_PLAIN C_QUIT,
		R_UNSENT "why: 534 5.7.9 Authentication mechanism is too weak\n"
		"ok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "334 to AUTH PLAIN with a response: protocol error", T_AUTH_CLEAR,
		G S_EHLO_AUTH "334 \r\n", 0, T_END_NONE, 0, C_EHLO C_PLAIN,
		R_UNSENT "why: 451 4.5.0* protocol error: unexpected challenge to AUTH while "
		"sending AUTH\nok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "AUTH LOGIN when PLAIN is not offered", T_AUTH_CLEAR,
		G S_EHLO_LOGIN "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n" S_AUTH_OK S_253 S_BYE, 0,
		T_END_NONE, 0,
		C_EHLO "AUTH LOGIN\r\nY3VzdA==\r\nczNjcmV0\r\n" C_ETRN1 C_QUIT,
		R_253 "why: none\nok=1 tls=0 auth=1\n", ETRN_CLIENT_EV_CLOSE },
	{ "AUTH LOGIN, password refused", T_AUTH_CLEAR,
		G S_EHLO_LOGIN "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"
		"535 5.7.8 bad password\r\n" S_BYE, 0, T_END_NONE, 0,
		C_EHLO "AUTH LOGIN\r\nY3VzdA==\r\nczNjcmV0\r\n" C_QUIT,
		R_UNSENT "why: 535 5.7.8 bad password\nok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "old AUTH= keyword", T_AUTH_CLEAR,
		G "250-mx.isp.test\r\n250-AUTH=PLAIN\r\n250 ETRN\r\n" S_AUTH_OK S_253 S_BYE, 0,
		T_END_NONE, 0, C_EHLO C_PLAIN C_ETRN1 C_QUIT,
		R_253 "why: none\nok=1 tls=0 auth=1\n", ETRN_CLIENT_EV_CLOSE },
	{ "no mechanism we speak: QUIT, local", T_AUTH_CLEAR,
		G "250-mx.isp.test\r\n250-AUTH CRAM-MD5 DIGEST-MD5\r\n250 ETRN\r\n" S_BYE, 0,
		T_END_NONE, 0, C_EHLO C_QUIT,
		R_UNSENT "why: 451 4.7.0* credentials not sent: no AUTH mechanism we speak "
		"(PLAIN, LOGIN) offered\nok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "credentials, no TLS, not allowed in the clear: QUIT", T_AUTH_NOTLS,
		G S_EHLO_AUTH S_BYE, 0, T_END_NONE, 0, C_EHLO C_QUIT,
		R_UNSENT "why: 451 4.7.0* credentials not sent: no TLS (tls = none allows it)\n"
		"ok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "credentials, may, STARTTLS not offered: not sent", T_AUTH_MAY,
		G S_EHLO_AUTH S_BYE, 0, T_END_NONE, 0, C_EHLO C_QUIT,
		R_UNSENT "why: 451 4.7.0* credentials not sent: no TLS (tls = none allows it)\n"
		"ok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "credentials, AUTH not offered: ETRN without", T_AUTH_NOTLS,
		G S_EHLO S_253 S_BYE, 0, T_END_NONE, 0, C_EHLO C_ETRN1 C_QUIT, R_253 R_OK,
		ETRN_CLIENT_EV_CLOSE },

	/* ---- ATRN ---- */
	{ "ATRN 250: reversed, the rest not consumed", T_ATRN,
		G S_EHLO_ATRN S_AUTH_OK "250 OK now reversing the connection\r\n"
		"EHLO mx.isp.test\r\n", 0, T_END_NONE, 0,
		C_EHLO C_PLAIN "ATRN example.com,example.net\r\n",
		"reverse, left \"EHLO mx.isp.test\\x0d\\x0a\"\n"
		"r0: 250 2.0.0 OK now reversing the connection\nwhy: none\nok=1 tls=0 auth=1\n",
		ETRN_CLIENT_EV_REVERSE },
	{ "bare ATRN, 250 at the end of the input", T_ATRN_ALL,
		G S_EHLO_ATRN S_AUTH_OK "250 OK now reversing the connection\r\n", 0,
		T_END_EOF, 0, C_EHLO C_PLAIN "ATRN\r\n",
		"reverse, left \"\"\n"
		"r0: 250 2.0.0 OK now reversing the connection\nwhy: none\nok=1 tls=0 auth=1\n",
		ETRN_CLIENT_EV_REVERSE },
	{ "ATRN 450: QUIT", T_ATRN,
		G S_EHLO_ATRN S_AUTH_OK "450 4.7.1 ATRN request refused\r\n" S_BYE, 0,
		T_END_NONE, 0, C_EHLO C_PLAIN "ATRN example.com,example.net\r\n" C_QUIT,
		"r0: 450 4.7.1 ATRN request refused\nwhy: none\nok=0 tls=0 auth=1\n",
		ETRN_CLIENT_EV_CLOSE },
	{ "ATRN 453: QUIT", T_ATRN_ALL,
		G S_EHLO_ATRN S_AUTH_OK "453 You have no mail\r\n" S_BYE, 0, T_END_NONE, 0,
		C_EHLO C_PLAIN "ATRN\r\n" C_QUIT,
		"r0: 453 4.0.0 You have no mail\nwhy: none\nok=0 tls=0 auth=1\n",
		ETRN_CLIENT_EV_CLOSE },
	{ "ATRN 502: QUIT", T_ATRN_ALL,
		G S_EHLO_ATRN S_AUTH_OK "502 5.5.1 Command not implemented\r\n" S_BYE, 0,
		T_END_NONE, 0, C_EHLO C_PLAIN "ATRN\r\n" C_QUIT,
		"r0: 502 5.5.1 Command not implemented\nwhy: none\nok=0 tls=0 auth=1\n",
		ETRN_CLIENT_EV_CLOSE },

	/* ---- lost, timed out, garbage ---- */
	{ "EOF while waiting for ETRN replies", T_ETRN3, G S_EHLO "250 OK\r\n", 0, T_END_EOF,
		0, C_EHLO C_ETRN3,
		"r0: 250 2.0.0 OK\nr1: 0  \nr2: 0  \nwhy: 451 4.4.2* lost connection with "
		"server while sending ETRN\nok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "EOF before the greeting", T_ETRN1, "", 0, T_END_EOF, 0, "",
		R_UNSENT "why: 451 4.4.2* lost connection with server while receiving the "
		"initial server greeting\nok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "timeout waiting for ETRN replies: the rest get 451", T_ETRN3,
		G S_EHLO "250 OK\r\n25", 0, T_END_ABORT, 0, C_EHLO C_ETRN3,
		"timeout=300000\nr0: 250 2.0.0 OK\nr1: 451 4.4.2* conversation timed out\n"
		"r2: 451 4.4.2* conversation timed out\nwhy: 451 4.4.2* conversation timed out\n"
		"ok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "timeout waiting for the greeting", T_ETRN1, "", 0, T_END_ABORT, 0, "",
		"timeout=300000\nr0: 451 4.4.2* conversation timed out\n"
		"why: 451 4.4.2* conversation timed out\nok=0 tls=0 auth=0\n",
		ETRN_CLIENT_EV_CLOSE },
	{ "timeout waiting for 221: the session was done", T_ETRN1, G S_EHLO S_253, 0,
		T_END_ABORT, 0, C_EHLO C_ETRN1 C_QUIT, "timeout=300000\n" R_253 R_OK,
		ETRN_CLIENT_EV_CLOSE },
	{ "overlong line", T_SMALL, "220 mx.isp.test ESMTP a rather long greeting\r\n", 0,
		T_END_NONE, 0, "",
		R_UNSENT "why: 451 4.5.0* protocol error: reply line too long while receiving "
		"the initial server greeting\nok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "too many reply lines", T_SMALL,
		G "250-a\r\n250-b\r\n250-c\r\n250-d\r\n250 e\r\n", 0, T_END_NONE, 0, C_EHLO,
		R_UNSENT "why: 451 4.5.0* protocol error: too many reply lines while sending "
		"EHLO\nok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "malformed reply", T_ETRN1, G S_EHLO "OK fine\r\n", 0, T_END_NONE, 0,
		C_EHLO C_ETRN1,
		"r0: 0  \nwhy: 451 4.5.0* protocol error: malformed reply while sending ETRN\n"
		"ok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
	{ "code changed in a multiline reply", T_ETRN1, G "250-mx.isp.test\r\n251 x\r\n", 0,
		T_END_NONE, 0, C_EHLO,
		R_UNSENT "why: 451 4.5.0* protocol error: reply code changed in multiline reply "
		"while sending EHLO\nok=0 tls=0 auth=0\n", ETRN_CLIENT_EV_CLOSE },
};

Test(etrn_client, sessions)
{
	size_t i;

	for (i = 0; i < sizeof(t_cases) / sizeof(t_cases[0]); i++)
		t_check(&t_cases[i]);
}

/* RFC 1985 5 and RFC 2645 4: each code's words and verdict. */
Test(etrn_client, meaning)
{
	static const struct {
		enum etrn_client_method m;
		int code;
		const char *want;
		int success;
	} cases[] = {
		{ ETRN_CLIENT_ETRN, 250, "queuing started", 1 },
		{ ETRN_CLIENT_ETRN, 251, "no messages waiting", 1 },
		{ ETRN_CLIENT_ETRN, 252, "pending messages started", 1 },
		{ ETRN_CLIENT_ETRN, 253, "pending messages started, with their count", 1 },
		{ ETRN_CLIENT_ETRN, 254, "success", 0 },
		{ ETRN_CLIENT_ETRN, 458, "unable to queue messages", 0 },
		{ ETRN_CLIENT_ETRN, 459, "node not allowed", 0 },
		{ ETRN_CLIENT_ETRN, 500, "syntax error", 0 },
		{ ETRN_CLIENT_ETRN, 501, "syntax error in parameters", 0 },
		{ ETRN_CLIENT_ETRN, 530, "authentication required", 0 },
		{ ETRN_CLIENT_ETRN, 421, "service not available", 0 },
		{ ETRN_CLIENT_ETRN, 450, "temporary failure", 0 },
		{ ETRN_CLIENT_ETRN, 550, "permanent failure", 0 },
		{ ETRN_CLIENT_ETRN, 0, "no reply", 0 },
		{ ETRN_CLIENT_ETRN, 354, "unexpected reply", 0 },
		{ ETRN_CLIENT_ATRN, 250, "reversing the connection", 1 },
		{ ETRN_CLIENT_ATRN, 251, "success", 0 },
		{ ETRN_CLIENT_ATRN, 253, "success", 0 },
		{ ETRN_CLIENT_ATRN, 450, "access denied to the domain", 0 },
		{ ETRN_CLIENT_ATRN, 451, "unable to process ATRN now", 0 },
		{ ETRN_CLIENT_ATRN, 453, "no mail waiting", 0 },
		{ ETRN_CLIENT_ATRN, 458, "temporary failure", 0 },
		{ ETRN_CLIENT_ATRN, 502, "ATRN not supported", 0 },
		{ ETRN_CLIENT_ATRN, 530, "authentication required", 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_expect_str_eq(etrn_client_meaning(cases[i].m, cases[i].code), cases[i].want,
				"%d %d", (int)cases[i].m, cases[i].code);
		cr_expect_eq(etrn_client_success(cases[i].m, cases[i].code), cases[i].success,
				"%d %d", (int)cases[i].m, cases[i].code);
	}
}

/* A conf that cannot make a session is refused at once. */
Test(etrn_client, unusable_conf)
{
	static const char *const bad_space[] = { "example .com" };
	static const char *const bad_crlf[] = { "example.com\r\nQUIT" };
	static const char *const bad_empty[] = { "" };
	static const char *const comma[] = { "a.test,b.test" };
	static const char *const many[ETRN_CLIENT_REQUESTS_MAX + 1] = { "a.test" };
	static char long_node[300], long_cred[300];
	static const char *const long_req[] = { long_node };
	static const char *atrn_many[ETRN_CLIENT_REQUESTS_MAX];
	struct etrn_client_conf cf;
	struct etrn_client *c;
	size_t i;

	memset(long_node, 'a', sizeof(long_node) - 1);
	memset(long_cred, 'u', sizeof(long_cred) - 1);
	/* 16 domains of 40 octets: one ATRN line over RFC 5321's 512. */
	for (i = 0; i < ETRN_CLIENT_REQUESTS_MAX; i++)
		atrn_many[i] = "abcdefghijabcdefghijabcdefghij.example";
#define T_BAD(...) do { \
		cf = t_confs[T_ETRN1]; \
		__VA_ARGS__; \
		cr_expect_null(etrn_client_new(&cf), "%s", #__VA_ARGS__); \
	} while (0)
	T_BAD(cf.nreq = 0);
	T_BAD(cf.nreq = ETRN_CLIENT_REQUESTS_MAX + 1; cf.req = many);
	T_BAD(cf.req = bad_space);
	T_BAD(cf.req = bad_crlf);
	T_BAD(cf.req = bad_empty);
	T_BAD(cf.req = long_req);
	T_BAD(cf.req = NULL);
	T_BAD(cf.helo_name = NULL);
	T_BAD(cf.helo_name = "cust test");
	T_BAD(cf.reply_line_max = SMTP_CLIENT_LINE_MIN - 1);
	T_BAD(cf.max_reply_lines = 0);
	T_BAD(cf.method = (enum etrn_client_method)7);
	T_BAD(cf.user = long_cred; cf.pass = "p");
	T_BAD(cf.user = "u"; cf.pass = long_cred);
	T_BAD(cf.method = ETRN_CLIENT_ATRN; cf.req = comma);
	T_BAD(cf.method = ETRN_CLIENT_ATRN; cf.nreq = ETRN_CLIENT_REQUESTS_MAX; cf.req = atrn_many);
#undef T_BAD
	/* The limits themselves are fine. */
	cf = t_confs[T_ETRN1];
	cf.req = comma; /* an ETRN node may hold a comma: it is the server's to judge */
	c = etrn_client_new(&cf);
	cr_expect_not_null(c);
	etrn_client_free(c);
	cf = t_confs[T_ATRN_ALL];
	cf.nreq = 12;
	cf.req = atrn_many;
	c = etrn_client_new(&cf);
	cr_expect_not_null(c);
	cr_expect_eq(etrn_client_nresults(c), 1);
	etrn_client_free(c);
	cr_expect_null(etrn_client_free(NULL));
}

/* Calls out of turn are refused and change nothing; a reply while the
 * caller runs the handshake is a protocol error. */
Test(etrn_client, misuse)
{
	static const char in[] = G S_EHLO_TLS S_GO_TLS "250 too early\r\n";
	enum etrn_client_event ev;
	struct etrn_client *c;
	struct buf out;
	size_t got;

	log_set_level(LOGL_ERR);
	buf_init(&out, 0);
	c = etrn_client_new(&t_confs[T_MUST]);
	cr_assert_not_null(c);
	cr_expect_eq(etrn_client_tls_up(c, &out), -EBUSY);
	cr_expect_eq(etrn_client_tls_reject(c, &out, "x"), -EBUSY);
	cr_expect_eq(out.len, 0);
	cr_expect_eq(etrn_client_timeout_ms(c), ETRN_CLIENT_TIMEOUT_MS);
	got = etrn_client_feed(c, in, sizeof(in) - 1, &out, &ev);
	cr_assert_eq(ev, ETRN_CLIENT_EV_STARTTLS);
	cr_expect_eq(got, sizeof(in) - 1 - strlen("250 too early\r\n"));
	got = etrn_client_feed(c, in + got, sizeof(in) - 1 - got, &out, &ev);
	cr_expect_eq(ev, ETRN_CLIENT_EV_CLOSE);
	cr_expect_str_eq(etrn_client_close_reason(c)->text,
			"protocol error: unexpected reply while performing the TLS handshake");
	cr_expect_eq(etrn_client_tls_up(c, &out), -EBUSY);
	etrn_client_free(c);
	buf_free(&out);
}

/* Output that cannot grow ends the session (local 4.3.0) and takes back
 * what the step appended: never half a group of commands. */
Test(etrn_client, output_full)
{
	static const char in[] = G S_EHLO;
	enum etrn_client_event ev;
	struct etrn_client *c;
	struct buf out;

	log_set_level(LOGL_ERR);
	/* Room for EHLO and one ETRN, not three. */
	buf_init(&out, strlen(C_EHLO C_ETRN1) + 4);
	c = etrn_client_new(&t_confs[T_ETRN3]);
	cr_assert_not_null(c);
	(void)etrn_client_feed(c, in, sizeof(in) - 1, &out, &ev);
	cr_expect_eq(ev, ETRN_CLIENT_EV_CLOSE);
	cr_expect_eq(out.len, strlen(C_EHLO));
	cr_expect_eq(memcmp(out.data, C_EHLO, out.len), 0);
	cr_expect_eq(etrn_client_close_reason(c)->code, 451);
	cr_expect_str_eq(etrn_client_close_reason(c)->enh, "4.3.0");
	cr_expect_eq(etrn_client_result(c, 0)->code, 0);
	etrn_client_free(c);
	buf_free(&out);
}
