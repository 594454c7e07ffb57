/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for proto/smtp_server.c: golden transcripts in C tables (input
 * bytes -> exact reply text, final event, committed transactions). Every
 * case is replayed with the input whole, then one byte at a time, then in
 * other chunk sizes; all runs must give identical results.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/budget.h"
#include "core/log.h"
#include "proto/atrn.h"
#include "proto/smtp_server.h"

#define T_DATE "Tue, 24 Nov 2026 00:38:41 +0000 (UTC)"
#define T_CLOCK ((time_t)1795480721)
#define T_RESULT_MAX 16384

/* T_PM: T_BIG with a postmaster address; T_ROUTE: T_PM with
 * allow_untrusted_routing; T_TLS: T_BIG with STARTTLS, AUTH and ETRN;
 * T_TLS_SMALL: T_SMALL with STARTTLS and AUTH; T_TRUSTED: T_TLS, the
 * session on a listen_trusted listener; T_NOAUTH: T_BIG with
 * STARTTLS and no AUTH; T_ODMR: T_TLS, the session on an odmr_listen
 * listener; T_ODMR_TRUSTED: on an odmr_listen_trusted one; T_ATRN: T_TLS
 * with smtp_atrn = yes; T_RELAY: T_TLS, the client in mynetworks
 * (smtp_server_set_relay()); T_SUB: T_TLS on a submission_listen
 * listener; T_SUB_TRUSTED: T_SUB, the listener trusted and the client in
 * mynetworks too; T_REV: T_ATRN (so STARTTLS, AUTH, ETRN and ATRN would
 * all be offered), the session ATRN's reversed one on the customer's
 * side (smtp_server_set_reversed()). */
enum t_conf { T_SMALL = 0, T_NORMALIZE, T_BIG, T_ETRN, T_PM, T_ROUTE, T_TLS, T_TLS_SMALL,
	      T_TRUSTED, T_NOAUTH, T_ODMR, T_ODMR_TRUSTED, T_ATRN, T_RELAY, T_SUB,
	      T_SUB_TRUSTED, T_REV, T_NCONF };

/* In a case's input: the TLS handshake is done here. What comes before it
 * after STARTTLS was sent in the clear and is dropped, as the loop drops
 * it (core/loop.h conn_starttls()); what follows came through TLS. At the
 * very start: an implicit-TLS listener. */
#define T_TLS_MARK "<<TLS>>"
static const struct tls_info t_tls_info = { "TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, 0, "" };

static time_t t_clock(void *arg)
{
	(void)arg;
	return T_CLOCK;
}

static unsigned t_ids;

static void t_new_id(void *arg, uint64_t *msgid, char *qid)
{
	(void)arg;
	*msgid = ++t_ids;
	snprintf(qid, SMTP_QID_MAX, "%014X", t_ids);
}

static char t_last_domain[300];

/* ok.test is a customer's (anyone may send there), far.test is not: only a
 * session with the relay right may. */
static enum smtp_rcpt_verdict t_rcpt_check(void *arg, const char *d, size_t len, int relay)
{
	(void)arg;
	cr_assert(relay == 0 || relay == 1, "relay %d", relay);
	snprintf(t_last_domain, sizeof(t_last_domain), "%.*s", (int)len, d);
	if (len == 7 && memcmp(d, "ok.test", 7) == 0)
		return SMTP_RCPT_OK;
	if (len == 8 && memcmp(d, "far.test", 8) == 0)
		return relay ? SMTP_RCPT_OK : SMTP_RCPT_DENY;
	if (len == 9 && memcmp(d, "temp.test", 9) == 0)
		return SMTP_RCPT_TEMPFAIL;
	if (len == 10 && memcmp(d, "quota.test", 10) == 0)
		return SMTP_RCPT_OVER_QUOTA;
	return SMTP_RCPT_DENY;
}

/* The ETRN callback: echo the node it got, so a case sees which nodes
 * passed the server's syntax check and exactly as given. */
static void t_etrn(void *arg, const char *client, const char *user, const char *node,
		   size_t len, struct buf *out)
{
	(void)arg;
	buf_printf(out, "250 %s%s%s %.*s\r\n", client, user ? " user=" : "", user ? user : "",
		   (int)len, node);
}

static struct smtp_server_conf t_confs[T_NCONF];

static const struct smtp_server_conf *t_conf(enum t_conf which)
{
	static const struct smtp_limits small = {
		.command_max = 64, .line_max = 50, .max_recipients = 3,
		.size_max = 200, .max_errors = 8, .bare_lf_normalize = 0,
	};
	struct smtp_server_conf *c = &t_confs[which];

	log_set_level(LOGL_ERR);
	c->hostname = "mx.test";
	c->limits = small;
	if (which == T_NORMALIZE)
		c->limits.bare_lf_normalize = 1;
	if (which == T_ODMR || which == T_ODMR_TRUSTED || which == T_ATRN || which == T_RELAY ||
	    which == T_SUB || which == T_SUB_TRUSTED || which == T_REV) {
		*c = *t_conf(T_TLS);
		c->atrn = which == T_ATRN || which == T_REV;
		return c;
	}
	if (which == T_BIG || which == T_ETRN || which == T_PM || which == T_ROUTE ||
	    which == T_TLS || which == T_TRUSTED || which == T_NOAUTH) {
		c->limits.command_max = 512;
		c->limits.line_max = 1000;
		c->limits.max_recipients = 1000;
		c->limits.size_max = 50u << 20;
		c->limits.max_errors = 10;
	}
	if (which == T_ETRN || which == T_TLS || which == T_TRUSTED)
		c->etrn = t_etrn;
	c->starttls = which == T_TLS || which == T_TLS_SMALL || which == T_NOAUTH ||
		      which == T_TRUSTED;
	c->auth = which == T_TLS || which == T_TLS_SMALL || which == T_TRUSTED;
	if (which == T_PM || which == T_ROUTE)
		c->postmaster = "hostmaster@ops.test";
	c->allow_untrusted_routing = which == T_ROUTE;
	c->rcpt_check = t_rcpt_check;
	c->new_id = t_new_id;
	c->clock = t_clock;
	return c;
}

struct t_case {
	const char *name;
	enum t_conf conf;
	const char *in;
	size_t in_len;        /* 0: strlen(in); set it for inputs with NUL */
	int eof;              /* feed n == 0 after the input */
	int commit_err;       /* what commit_done reports for every commit */
	const char *want_out; /* all replies, greeting first */
	enum smtp_event want_ev;
	const char *want_tx;  /* every committed transaction, see t_record() */
};

struct t_result {
	char out[T_RESULT_MAX];
	char tx[T_RESULT_MAX];
	size_t tx_len;
	enum smtp_event ev;
	const char *why;      /* smtp_server_end_reason(), "" for NULL */
};

/* The output is exactly want: an empty output is no match. */
static void t_out_is(const struct buf *out, const char *want)
{
	size_t n = strlen(want);

	cr_assert(out->len == n && memcmp(out->data, want, n) == 0,
		  "output %zu bytes \"%.*s\", want \"%s\"", out->len, (int)out->len,
		  out->data ? out->data : "", want);
}

static void t_append(struct t_result *r, const char *p, size_t n)
{
	cr_assert(r->tx_len + n < sizeof(r->tx), "tx record too big");
	memcpy(r->tx + r->tx_len, p, n);
	r->tx_len += n;
	r->tx[r->tx_len] = '\0';
}

/* "FROM <s> F<flags>\nTO <r> @<domain_off>\n...BODY\n<body>END\n" */
static void t_record(struct t_result *r, const struct smtp_tx *tx)
{
	char line[512];
	size_t len, i;
	const char *p;

	p = smtp_tx_sender(tx, &len);
	snprintf(line, sizeof(line), "FROM <%.*s> F%u\n", (int)len, p, smtp_tx_flags(tx));
	t_append(r, line, strlen(line));
	for (i = 0; i < smtp_tx_nrcpt(tx); i++) {
		p = smtp_tx_rcpt(tx, (unsigned)i, &len);
		snprintf(line, sizeof(line), "TO <%.*s> @%zu\n", (int)len, p,
				smtp_tx_rcpt_domain_off(tx, (unsigned)i));
		t_append(r, line, strlen(line));
	}
	snprintf(line, sizeof(line), "ID %s %llu\nBODY\n", smtp_tx_qid(tx),
			(unsigned long long)smtp_tx_msgid(tx));
	t_append(r, line, strlen(line));
	p = smtp_tx_body(tx, &len);
	t_append(r, p, len);
	t_append(r, "END\n", 4);
}

/* The check's answer by password: "good" (and "good...") passes, "temp" and "limit" get
 * AUTH_TEMP and AUTH_LIMITED, anything else is wrong. */
static enum auth_result t_auth_result(const char *pass, size_t len)
{
	if (len >= 4 && memcmp(pass, "good", 4) == 0)
		return AUTH_OK;
	if (len == 4 && memcmp(pass, "temp", 4) == 0)
		return AUTH_TEMP;
	if (len == 5 && memcmp(pass, "limit", 5) == 0)
		return AUTH_LIMITED;
	return AUTH_BAD;
}

/* SMTP_EV_AUTH: record "AUTH <user> <pass>", check that the session takes
 * no input meanwhile and that the wipe clears the password, answer. */
static enum smtp_event t_auth(struct smtp_session *s, struct t_result *r, const char *rest,
		size_t n, struct buf *out)
{
	char line[512];
	size_t plen;
	const char *pass = smtp_server_auth_pass(s, &plen);
	enum auth_result res = t_auth_result(pass, plen);
	enum smtp_event ev2;

	snprintf(line, sizeof(line), "AUTH %s %.*s\n", smtp_server_auth_user(s), (int)plen, pass);
	t_append(r, line, strlen(line));
	cr_assert_eq(smtp_server_feed(s, rest, n, out, &ev2), 0);
	cr_assert_eq(ev2, SMTP_EV_AUTH);
	smtp_server_auth_wipe(s);
	pass = smtp_server_auth_pass(s, &plen);
	cr_assert_eq(plen, 0);
	cr_assert_eq(pass[0], '\0');
	return smtp_server_auth_done(s, res, out);
}

/* SMTP_EV_ATRN: record "ATRN <user> <domains>" and each domain as the
 * iterator gives it, check that the session takes no input meanwhile, and
 * answer as a drain would: "none.test" has no mail (453), "other.test" is
 * not the user's (450), anything else turns the connection around (250,
 * and SMTP_EV_ATRN is returned: the session is over). */
static enum smtp_event t_atrn(struct smtp_session *s, struct t_result *r, const char *rest,
		size_t n, struct buf *out)
{
	char line[1024];
	size_t len, off = 0, dlen;
	const char *list = smtp_server_atrn_domains(s, &len), *d;
	enum smtp_event ev2;

	snprintf(line, sizeof(line), "ATRN %s %.*s\n", smtp_server_user(s), (int)len, list);
	t_append(r, line, strlen(line));
	while ((d = atrn_next(list, len, &off, &dlen)) != NULL) {
		snprintf(line, sizeof(line), " [%.*s]\n", (int)dlen, d);
		t_append(r, line, strlen(line));
	}
	cr_assert(smtp_server_idle(s));
	cr_assert_eq(smtp_server_feed(s, rest, n, out, &ev2), 0);
	cr_assert_eq(ev2, SMTP_EV_ATRN);
	if (len == 9 && !memcmp(list, "none.test", 9)) {
		buf_puts(out, "453 You have no mail\r\n");
	} else if (len == 10 && !memcmp(list, "other.test", 10)) {
		buf_puts(out, "450 ATRN request refused\r\n");
	} else {
		buf_puts(out, "250 OK now reversing the connection\r\n");
		smtp_server_atrn_done(s, 1);
		cr_assert_eq(smtp_server_feed(s, rest, n, out, &ev2), 0);
		cr_assert_eq(ev2, SMTP_EV_CLOSE);
		return SMTP_EV_ATRN;
	}
	smtp_server_atrn_done(s, 0);
	return SMTP_EV_NEED_INPUT;
}

/* Feed in[0..n) chunk bytes at a time (0: all at once); the STARTTLS
 * event ends it (the rest was sent in the clear and is dropped), and so
 * does a turn-around after ATRN (the rest, recorded as "REST", is the
 * customer's, never consumed by the session). */
static enum smtp_event t_feed(struct smtp_session *s, const struct t_case *tc, const char *in,
		size_t n, size_t chunk, struct t_result *r, struct buf *out)
{
	enum smtp_event ev = SMTP_EV_NEED_INPUT;
	size_t i = 0;

	while (i < n && ev != SMTP_EV_CLOSE && ev != SMTP_EV_STARTTLS) {
		size_t k = chunk && chunk < n - i ? chunk : n - i, off = 0;
		/* Each chunk in a heap block of its own size: ASan sees a look
		 * past the octets fed so far (the rest has not come yet). */
		char *part = malloc(k);

		cr_assert(part != NULL);
		memcpy(part, in + i, k);
		while (off < k) {
			size_t c = smtp_server_feed(s, part + off, k - off, out, &ev);

			cr_assert(c <= k - off);
			off += c;
			if (ev == SMTP_EV_COMMIT) {
				size_t again;
				enum smtp_event ev2;

				cr_assert(!smtp_server_idle(s));
				t_record(r, smtp_server_tx(s));
				/* Feeding before commit_done is refused. */
				again = smtp_server_feed(s, part + off, k - off, out, &ev2);
				cr_assert_eq(again, 0);
				cr_assert_eq(ev2, SMTP_EV_COMMIT);
				smtp_server_commit_done(s, tc->commit_err, out);
				ev = SMTP_EV_NEED_INPUT;
				continue;
			}
			if (ev == SMTP_EV_AUTH) {
				ev = t_auth(s, r, part + off, k - off, out);
				if (ev == SMTP_EV_CLOSE)
					break;
				continue;
			}
			if (ev == SMTP_EV_ATRN) {
				ev = t_atrn(s, r, in + i + off, n - i - off, out);
				if (ev == SMTP_EV_ATRN) {
					t_append(r, "REST ", 5);
					t_append(r, in + i + off, n - i - off);
					free(part);
					return ev;
				}
				continue;
			}
			if (ev == SMTP_EV_CLOSE)
				break;
			if (ev == SMTP_EV_STARTTLS) {
				cr_assert_eq(off, k, "STARTTLS must consume everything");
				break;
			}
			cr_assert_eq(ev, SMTP_EV_NEED_INPUT);
			cr_assert_eq(off, k, "NEED_INPUT must consume everything");
		}
		free(part);
		i += k;
	}
	return ev;
}

/* Replay a case feeding chunk bytes at a time (0: all at once). */
static void t_run(const struct t_case *tc, size_t chunk, struct t_result *r)
{
	const struct smtp_server_conf *conf = t_conf(tc->conf);
	size_t n = tc->in_len ? tc->in_len : strlen(tc->in), i = 0;
	struct smtp_session *s;
	enum smtp_event ev = SMTP_EV_NEED_INPUT;
	const char *mark;
	struct buf out;
	char *in;

	memset(r, 0, sizeof(*r));
	t_ids = 0;
	/* An exact-size heap copy, so ASan sees any read past the input. */
	in = malloc(n ? n : 1);
	cr_assert(in != NULL);
	memcpy(in, tc->in, n);
	buf_init(&out, 1u << 20);
	s = smtp_server_new(conf, "192.0.2.1");
	cr_assert(s != NULL);
	if (tc->conf == T_TRUSTED || tc->conf == T_ODMR_TRUSTED || tc->conf == T_SUB_TRUSTED)
		smtp_server_set_trusted(s);
	if (tc->conf == T_ODMR || tc->conf == T_ODMR_TRUSTED)
		smtp_server_set_odmr(s);
	if (tc->conf == T_SUB || tc->conf == T_SUB_TRUSTED)
		smtp_server_set_submission(s);
	if (tc->conf == T_RELAY || tc->conf == T_SUB_TRUSTED)
		smtp_server_set_relay(s);
	if (tc->conf == T_REV)
		smtp_server_set_reversed(s);
	smtp_server_greeting(s, &out);
	/* Each T_TLS_MARK: the clear part before it, then the handshake. */
	while ((mark = memmem(in + i, n - i, T_TLS_MARK, strlen(T_TLS_MARK))) != NULL) {
		size_t part = (size_t)(mark - (in + i));

		ev = t_feed(s, tc, in + i, part, chunk, r, &out);
		if (ev == SMTP_EV_CLOSE || ev == SMTP_EV_ATRN)
			break;
		if (i > 0 || part > 0) {
			enum smtp_event ev2;

			cr_assert_eq(ev, SMTP_EV_STARTTLS, "%s: no STARTTLS before the mark", tc->name);
			/* No input until the handshake is done. */
			cr_assert_eq(smtp_server_feed(s, "NOOP\r\n", 6, &out, &ev2), 0);
			cr_assert_eq(ev2, SMTP_EV_STARTTLS);
		}
		smtp_server_tls_up(s, &t_tls_info);
		i += part + strlen(T_TLS_MARK);
		ev = SMTP_EV_NEED_INPUT;
	}
	if (ev != SMTP_EV_CLOSE && ev != SMTP_EV_ATRN)
		ev = t_feed(s, tc, in + i, n - i, chunk, r, &out);
	if (tc->eof && ev != SMTP_EV_CLOSE && ev != SMTP_EV_ATRN) {
		cr_assert_eq(smtp_server_feed(s, in, 0, &out, &ev), 0);
		cr_assert_eq(ev, SMTP_EV_CLOSE);
	}
	r->ev = ev;
	r->why = smtp_server_end_reason(s) ? smtp_server_end_reason(s) : "";
	cr_assert_eq(r->why[0] != '\0', ev == SMTP_EV_CLOSE || ev == SMTP_EV_ATRN,
		     "%s: an end reason once closed, only then", tc->name);
	cr_assert(out.len < sizeof(r->out));
	if (out.len)
		memcpy(r->out, out.data, out.len);
	r->out[out.len] = '\0';
	buf_free(&out);
	cr_assert_null(smtp_server_free(s));
	free(in);
}

/* On a mismatch, show what came out, escaped, to make fixing the table easy. */
static void t_dump(const char *name, const char *what, const char *s)
{
	char esc[4 * T_RESULT_MAX];

	cr_log_error("%s: %s: %s", name, what,
			log_printable(esc, sizeof(esc), s, strlen(s)));
}

/* Returns the end reason (smtp_server_end_reason(), "" while open), the
 * same in every run. */
static const char *t_check(const struct t_case *tc)
{
	static const size_t chunks[] = { 0, 1, 2, 3, 5, 7, 13, 64 };
	static struct t_result first, r;
	size_t i;

	t_run(tc, 0, &first);
	if (strcmp(first.out, tc->want_out) != 0)
		t_dump(tc->name, "got replies", first.out);
	if (strcmp(first.tx, tc->want_tx ? tc->want_tx : "") != 0)
		t_dump(tc->name, "got transactions", first.tx);
	cr_expect_str_eq(first.out, tc->want_out, "%s: replies", tc->name);
	cr_expect_eq(first.ev, tc->want_ev, "%s: event %d", tc->name, (int)first.ev);
	cr_expect_str_eq(first.tx, tc->want_tx ? tc->want_tx : "", "%s: transactions",
			tc->name);
	for (i = 1; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		t_run(tc, chunks[i], &r);
		cr_expect_str_eq(r.out, first.out, "%s: replies, chunk %zu", tc->name, chunks[i]);
		cr_expect_eq(r.ev, first.ev, "%s: event, chunk %zu", tc->name, chunks[i]);
		cr_expect_str_eq(r.tx, first.tx, "%s: transactions, chunk %zu", tc->name,
				chunks[i]);
		cr_expect_str_eq(r.why, first.why, "%s: end reason, chunk %zu", tc->name,
				 chunks[i]);
	}
	return first.why;
}

#define G "220 mx.test ESMTP etrnd\r\n"
#define EHLO "EHLO client.test\r\n"
#define EHLO_OUT "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 200\r\n250-8BITMIME\r\n" \
	"250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n"
#define EHLO_BIG_OUT "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n" \
	"250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n"
#define OK "250 2.0.0 Ok\r\n"
#define MAIL_OK "250 2.1.0 Ok\r\n"
#define RCPT_OK "250 2.1.5 Ok\r\n"
#define GO "354 End data with <CR><LF>.<CR><LF>\r\n"
#define QUEUED(n) "250 2.0.0 Ok: queued as 0000000000000" #n "\r\n"
#define BYE "221 2.0.0 Bye\r\n"
#define TX1 "MAIL FROM:<s@x.test>\r\nRCPT TO:<a@ok.test>\r\nDATA\r\n"
#define TX1_OUT MAIL_OK RCPT_OK GO
#define RCVD(n, proto) "Received: from client.test (192.0.2.1)\r\n\tby mx.test (etrnd) " \
	"with " proto " id 0000000000000" #n "\r\n\tfor <a@ok.test>;\r\n\t" T_DATE "\r\n"
#define RCVD_N(n) "Received: from client.test (192.0.2.1)\r\n\tby mx.test (etrnd) " \
	"with ESMTP id 0000000000000" #n ";\r\n\t" T_DATE "\r\n"
#define TX1_REC(n, body) "FROM <s@x.test> F0\nTO <a@ok.test> @2\nID 0000000000000" #n \
	" " #n "\nBODY\n" RCVD(n, "ESMTP") body "END\n"
#define BARE_ERR "554 5.6.0 Error: bare <LF> or <CR> received (RFC 5321 2.3.8)\r\n"
#define X10 "xxxxxxxxxx"
#define X38 X10 X10 X10 "xxxxxxxx"

static const struct t_case t_cases[] = {
	{ "greeting", T_SMALL, "", 0, 0, 0, G, SMTP_EV_NEED_INPUT, NULL },
	{ "ehlo", T_SMALL, EHLO, 0, 0, 0, G EHLO_OUT, SMTP_EV_NEED_INPUT, NULL },
	{ "ehlo big size", T_BIG, EHLO, 0, 0, 0, G EHLO_BIG_OUT, SMTP_EV_NEED_INPUT, NULL },
	{ "helo", T_SMALL, "HELO client.test\r\n", 0, 0, 0, G "250 mx.test\r\n",
		SMTP_EV_NEED_INPUT, NULL },
	{ "helo/ehlo without argument", T_SMALL, "EHLO\r\nHELO   \r\n", 0, 0, 0,
		G "501 5.5.4 Syntax: EHLO hostname\r\n501 5.5.4 Syntax: HELO hostname\r\n",
		SMTP_EV_NEED_INPUT, NULL },
	{ "case-insensitive, LF-only", T_SMALL, "eHlO client.test\nnoop\nNoOp x\r\n", 0, 0, 0,
		G EHLO_OUT OK OK, SMTP_EV_NEED_INPUT, NULL },
	{ "incomplete line", T_SMALL, EHLO "NOOP", 0, 0, 0, G EHLO_OUT, SMTP_EV_NEED_INPUT,
		NULL },
	{ "happy path, dot-stuffing kept", T_SMALL,
		EHLO TX1 "Subject: hi\r\n\r\n..dot\r\n...\r\nline\r\n.\r\nQUIT\r\n", 0, 0, 0,
		G EHLO_OUT TX1_OUT QUEUED(1) BYE, SMTP_EV_CLOSE,
		TX1_REC(1, "Subject: hi\r\n\r\n..dot\r\n...\r\nline\r\n") },
	{ "dot as first line: empty body", T_SMALL, EHLO TX1 ".\r\n", 0, 0, 0,
		G EHLO_OUT TX1_OUT QUEUED(1), SMTP_EV_NEED_INPUT, TX1_REC(1, "") },
	{ "null sender, params, flags", T_SMALL,
		EHLO "MAIL FROM:<> SIZE=200 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<b@ok.test>\r\n"
		"RCPT TO:<c@OK.TEST.>\r\nDATA\r\nhi\r\n.\r\n", 0, 0, 0,
		G EHLO_OUT MAIL_OK RCPT_OK RCPT_OK GO QUEUED(1), SMTP_EV_NEED_INPUT,
		"FROM <> F3\nTO <b@ok.test> @2\nTO <c@ok.test> @2\nID 00000000000001 1\nBODY\n"
		RCVD_N(1) "hi\r\nEND\n" },
	{ "helo gives protocol SMTP", T_SMALL, "HELO client.test\r\n" TX1 "a\r\n.\r\n", 0, 0, 0,
		G "250 mx.test\r\n" TX1_OUT QUEUED(1), SMTP_EV_NEED_INPUT,
		"FROM <s@x.test> F0\nTO <a@ok.test> @2\nID 00000000000001 1\nBODY\n"
		RCVD(1, "SMTP") "a\r\nEND\n" },
	{ "helo text sanitized for Received", T_BIG,
		"EHLO a\x01(b)\xc3\xa9" X10 X10 X10 X10 X10 X10 X10 "\r\n"
		"MAIL FROM:<s@x.test>\r\nRCPT TO:<a@ok.test>\r\nDATA\r\n.\r\n", 0, 0, 0,
		G EHLO_BIG_OUT TX1_OUT QUEUED(1), SMTP_EV_NEED_INPUT,
		"FROM <s@x.test> F0\nTO <a@ok.test> @2\nID 00000000000001 1\nBODY\n"
		"Received: from a?(b)??" X10 X10 X10 X10 X10 "xxxxxxx (192.0.2.1)\r\n"
		"\tby mx.test (etrnd) with ESMTP id 00000000000001\r\n\tfor <a@ok.test>;\r\n\t"
		T_DATE "\r\nEND\n" },
	{ "mail errors", T_SMALL,
		"MAIL FROM:<s@x.test>\r\n" EHLO "MAIL FROM:<s@x.test> SIZE=201\r\n"
		"MAIL FROM:<s@x.test> BODY=FOO\r\nMAIL FROM:<s@x.test> XFOO=1\r\n"
		"MAIL FROM:<s@x\r\nMAIL TO:<s@x.test>\r\n"
		"MAIL FROM:<s@x.test>\r\nMAIL FROM:<s@x.test>\r\n", 0, 0, 0,
		G "503 5.5.1 Error: send HELO/EHLO first\r\n" EHLO_OUT
		"552 5.3.4 Message size exceeds fixed limit\r\n"
		"501 5.5.4 Bad BODY parameter value\r\n555 5.5.4 Unsupported option\r\n"
		"501 5.1.7 Bad sender address syntax\r\n501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
		MAIL_OK "503 5.5.1 Error: nested MAIL command\r\n", SMTP_EV_NEED_INPUT, NULL },
	{ "rcpt verdicts", T_SMALL,
		"RCPT TO:<a@ok.test>\r\n" EHLO "MAIL FROM:<s@x.test>\r\n"
		"RCPT TO:<a@evil.test>\r\nRCPT TO:<a@temp.test>\r\nRCPT TO:<a@Quota.Test>\r\n"
		"RCPT TO:<a@[192.0.2.9]>\r\nRCPT TO:<postmaster>\r\nRCPT TO:<a@ok.test> X=1\r\n"
		"RCPT TO:<@r1.test,@r2.test:b@OK.Test.>\r\nDATA\r\nx\r\n.\r\n", 0, 0, 0,
		G "503 5.5.1 Error: need MAIL command\r\n" EHLO_OUT MAIL_OK
		"550 5.7.1 <a@evil.test>: Relay access denied\r\n"
		"451 4.3.0 <a@temp.test>: Temporary lookup failure\r\n"
		"452 4.2.2 <a@quota.test>: Domain over quota\r\n"
		"550 5.7.1 <a@[192.0.2.9]>: Relay access denied\r\n"
		"501 5.1.3 Bad recipient address syntax\r\n555 5.5.4 Unsupported option\r\n"
		RCPT_OK GO QUEUED(1), SMTP_EV_NEED_INPUT,
		"FROM <s@x.test> F0\nTO <b@ok.test> @2\nID 00000000000001 1\nBODY\n"
		"Received: from client.test (192.0.2.1)\r\n\tby mx.test (etrnd) with ESMTP id "
		"00000000000001\r\n\tfor <b@ok.test>;\r\n\t" T_DATE "\r\nx\r\nEND\n" },
	/* RFC 5321 4.5.1: <postmaster> in any case, and postmaster at our own
	 * hostname, go to the configured address without rcpt_check (which
	 * would deny ops.test); postmaster at a customer domain is that
	 * customer's, at any other domain it is relaying. */
	{ "postmaster accepted and routed", T_PM,
		EHLO "MAIL FROM:<s@x.test>\r\nRCPT TO:<postmaster>\r\nRCPT TO:<PostMaster>\r\n"
		"RCPT TO:<postmaster@MX.test.>\r\nRCPT TO:<postmaster@ok.test>\r\n"
		"RCPT TO:<postmaster@evil.test>\r\nRCPT TO:<postmaster@[192.0.2.1]>\r\n"
		"RCPT TO:<postmistress>\r\nRCPT TO:postmaster\r\nDATA\r\n.\r\n", 0, 0, 0,
		G EHLO_BIG_OUT MAIL_OK RCPT_OK RCPT_OK RCPT_OK RCPT_OK
		"550 5.7.1 <postmaster@evil.test>: Relay access denied\r\n"
		"550 5.7.1 <postmaster@[192.0.2.1]>: Relay access denied\r\n"
		"501 5.1.3 Bad recipient address syntax\r\n" RCPT_OK GO QUEUED(1),
		SMTP_EV_NEED_INPUT,
		"FROM <s@x.test> F0\nTO <hostmaster@ops.test> @11\nTO <hostmaster@ops.test> @11\n"
		"TO <hostmaster@ops.test> @11\nTO <postmaster@ok.test> @11\n"
		"TO <hostmaster@ops.test> @11\nID 00000000000001 1\nBODY\n" RCVD_N(1) "END\n" },
	/* Postfix's allow_untrusted_routing = no: the same 554 reply; a
	 * source route (RFC 5321 4.1.1.3) is still accepted and stripped. */
	{ "untrusted routing refused", T_PM,
		EHLO "MAIL FROM:<s@x.test>\r\nRCPT TO:<a%evil.test@ok.test>\r\n"
		"RCPT TO:<evil.test!a@ok.test>\r\nRCPT TO:<\"a@evil.test\"@ok.test>\r\n"
		"RCPT TO:<@r.test:a%b@ok.test>\r\nRCPT TO:<a%b@evil.test>\r\n"
		"RCPT TO:<@r.test:b@ok.test>\r\nDATA\r\n.\r\n", 0, 0, 0,
		G EHLO_BIG_OUT MAIL_OK "554 5.7.1 <a%evil.test@ok.test>: Relay access denied\r\n"
		"554 5.7.1 <evil.test!a@ok.test>: Relay access denied\r\n"
		"554 5.7.1 <\"a@evil.test\"@ok.test>: Relay access denied\r\n"
		"554 5.7.1 <a%b@ok.test>: Relay access denied\r\n"
		"554 5.7.1 <a%b@evil.test>: Relay access denied\r\n" RCPT_OK GO QUEUED(1),
		SMTP_EV_NEED_INPUT,
		"FROM <s@x.test> F0\nTO <b@ok.test> @2\nID 00000000000001 1\nBODY\n"
		"Received: from client.test (192.0.2.1)\r\n\tby mx.test (etrnd) with ESMTP id "
		"00000000000001\r\n\tfor <b@ok.test>;\r\n\t" T_DATE "\r\nEND\n" },
	{ "untrusted routing allowed", T_ROUTE,
		EHLO "MAIL FROM:<s@x.test>\r\nRCPT TO:<a%b@ok.test>\r\nRCPT TO:<b!a@ok.test>\r\n"
		"RCPT TO:<\"a@b\"@ok.test>\r\nRCPT TO:<a%b@evil.test>\r\nDATA\r\n.\r\n", 0, 0, 0,
		G EHLO_BIG_OUT MAIL_OK RCPT_OK RCPT_OK RCPT_OK
		"550 5.7.1 <a%b@evil.test>: Relay access denied\r\n" GO QUEUED(1),
		SMTP_EV_NEED_INPUT,
		"FROM <s@x.test> F0\nTO <a%b@ok.test> @4\nTO <b!a@ok.test> @4\n"
		"TO <\"a@b\"@ok.test> @6\nID 00000000000001 1\nBODY\n" RCVD_N(1) "END\n" },
	{ "too many recipients", T_SMALL,
		EHLO "MAIL FROM:<s@x.test>\r\nRCPT TO:<a@ok.test>\r\nRCPT TO:<b@ok.test>\r\n"
		"RCPT TO:<c@ok.test>\r\nRCPT TO:<d@ok.test>\r\nDATA\r\n.\r\n", 0, 0, 0,
		G EHLO_OUT MAIL_OK RCPT_OK RCPT_OK RCPT_OK
		"452 4.5.3 Error: too many recipients\r\n" GO QUEUED(1), SMTP_EV_NEED_INPUT,
		"FROM <s@x.test> F0\nTO <a@ok.test> @2\nTO <b@ok.test> @2\nTO <c@ok.test> @2\n"
		"ID 00000000000001 1\nBODY\n" RCVD_N(1) "END\n" },
	{ "path too long", T_BIG,
		EHLO "MAIL FROM:<s@x.test>\r\n"
		"RCPT TO:<" X10 X10 X10 X10 X10 X10 "xxxxx@ok.test>\r\n"
		"RCPT TO:<" X10 X10 X10 X10 X10 X10 "xxxx@ok.test>\r\n", 0, 0, 0,
		G EHLO_BIG_OUT MAIL_OK "501 5.1.3 Error: path too long\r\n" RCPT_OK,
		SMTP_EV_NEED_INPUT, NULL },
	{ "command line limit", T_SMALL,
		"NOOP " X38 X10 "xxxxxxxxx\r\n"     /* 64 octets: ok */
		"NOOP " X38 X10 X10 "\r\n"          /* 65: too long */
		"NOOP " X38 X38 X38 X38 X38 "\n"    /* far too long */
		"NOOP\r\n", 0, 0, 0,
		G OK "500 5.5.2 Error: line too long\r\n500 5.5.2 Error: line too long\r\n" OK,
		SMTP_EV_NEED_INPUT, NULL },
	{ "NUL in command", T_SMALL, "NO\0OP\r\nNOOP\r\n", 13, 0, 0,
		G "500 5.5.2 Error: NUL character in command\r\n" OK, SMTP_EV_NEED_INPUT, NULL },
	{ "unknown, unimplemented, vrfy, help", T_SMALL,
		"FOO\r\nEXPN x\r\nETRN ok.test\r\nSTARTTLS\r\nVRFY a\r\nVRFY\r\nHELP\r\n", 0, 0, 0,
		G "500 5.5.2 Error: command not recognized\r\n"
		"502 5.5.1 Command not implemented\r\n502 5.5.1 Command not implemented\r\n"
		"502 5.5.1 Command not implemented\r\n"
		"252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery\r\n"
		"501 5.5.4 Syntax: VRFY address\r\n"
		"214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP\r\n",
		SMTP_EV_NEED_INPUT, NULL },
	{ "etrn syntax: 500 and 501 replies, the 256-octet node limit", T_ETRN,
		"ETRN a.test\r\nHELO client.test\r\nETRN\r\nETRN bad domain!\r\nETRN @\r\n"
		"ETRN #\r\nETRN a_b.Test-1.\r\nETRN @a.test\r\nETRN #q1\r\n"
		"ETRN @" X38 X38 X38 X38 X38 X38 X10 X10 "xxxxxxx\r\n"   /* 256 octets: ok */
		"ETRN @" X38 X38 X38 X38 X38 X38 X10 X10 "xxxxxxxx\r\n", /* 257 */
		0, 0, 0,
		G "503 5.5.1 Error: send HELO/EHLO first\r\n250 mx.test\r\n"
		"500 5.5.2 Syntax: ETRN domain\r\n"
		"501 5.5.4 Syntax error in parameters: ETRN domain, @domain or #queue\r\n"
		"501 5.5.4 Syntax error in parameters: ETRN domain, @domain or #queue\r\n"
		"501 5.5.4 Syntax error in parameters: ETRN domain, @domain or #queue\r\n"
		"250 192.0.2.1 a_b.Test-1.\r\n250 192.0.2.1 @a.test\r\n250 192.0.2.1 #q1\r\n"
		"250 192.0.2.1 @" X38 X38 X38 X38 X38 X38 X10 X10 "xxxxxxx\r\n"
		"501 5.5.4 Syntax error in parameters: ETRN domain, @domain or #queue\r\n",
		SMTP_EV_NEED_INPUT, NULL },
	{ "data sequencing", T_SMALL,
		EHLO "DATA\r\nMAIL FROM:<s@x.test>\r\nDATA\r\nRCPT TO:<a@ok.test>\r\nDATA x\r\n"
		"RSET\r\nDATA\r\n", 0, 0, 0,
		G EHLO_OUT "503 5.5.1 Error: need RCPT command\r\n" MAIL_OK
		"554 5.5.1 Error: no valid recipients\r\n" RCPT_OK "501 5.5.4 Syntax: DATA\r\n"
		OK "503 5.5.1 Error: need RCPT command\r\n", SMTP_EV_NEED_INPUT, NULL },
	{ "ehlo resets the transaction", T_SMALL,
		EHLO "MAIL FROM:<s@x.test>\r\nRCPT TO:<a@ok.test>\r\n" EHLO "DATA\r\n", 0, 0, 0,
		G EHLO_OUT MAIL_OK RCPT_OK EHLO_OUT "503 5.5.1 Error: need RCPT command\r\n",
		SMTP_EV_NEED_INPUT, NULL },
	{ "data line limit", T_SMALL,
		EHLO TX1 X38 X10 "\r\n." X38 X10 "\r\n.\r\n" /* 50 octets, and stuffed: ok */
		TX1 X38 X10 "x\r\n.\r\nNOOP\r\n", 0, 0, 0,
		G EHLO_OUT TX1_OUT QUEUED(1) TX1_OUT
		"554 5.6.0 Error: line too long (RFC 5321 4.5.3.1.6)\r\n" OK, SMTP_EV_NEED_INPUT,
		TX1_REC(1, X38 X10 "\r\n." X38 X10 "\r\n") },
	{ "message size limit", T_SMALL,
		EHLO TX1 X38 "\r\n" X38 "\r\n" X38 "\r\n" X38 "\r\n.." X10 X10 X10 "xxxxxxx\r\n.\r\n" /* 200 */
		TX1 X38 "\r\n" X38 "\r\n" X38 "\r\n" X38 "\r\n" X38 "\r\n\r\n.\r\n" /* 202 */
		"NOOP\r\n", 0, 0, 0,
		G EHLO_OUT TX1_OUT QUEUED(1) TX1_OUT "552 5.3.4 Error: message file too big\r\n" OK,
		SMTP_EV_NEED_INPUT,
		TX1_REC(1, X38 "\r\n" X38 "\r\n" X38 "\r\n" X38 "\r\n.." X10 X10 X10
			"xxxxxxx\r\n") },
	{ "bare LF rejected, LF.LF does not end data", T_SMALL,
		EHLO TX1 "a\nb\r\n.\nQUIT\r\n.\r\nNOOP\r\n", 0, 0, 0,
		G EHLO_OUT TX1_OUT BARE_ERR OK, SMTP_EV_NEED_INPUT, NULL },
	{ "bare LF before dot line", T_SMALL, EHLO TX1 "a\n.\r\nb\r\n.\r\n", 0, 0, 0,
		G EHLO_OUT TX1_OUT BARE_ERR, SMTP_EV_NEED_INPUT, NULL },
	{ "bare CR rejected", T_SMALL, EHLO TX1 "a\rb\r\n.\r\r\n.\r\n", 0, 0, 0,
		G EHLO_OUT TX1_OUT BARE_ERR, SMTP_EV_NEED_INPUT, NULL },
	{ "NUL in data", T_SMALL, EHLO TX1 "a\0b\r\n.\r\n", sizeof(EHLO TX1) + 7, 0, 0,
		G EHLO_OUT TX1_OUT "554 5.6.0 Error: NUL byte in message\r\n", SMTP_EV_NEED_INPUT,
		NULL },
	{ "bare LF normalized", T_NORMALIZE,
		EHLO TX1 "a\nb\r\n.\nc\n.\r\nd\r.\re\r\n.x\ny\r\n.\r\n", 0, 0, 0,
		G EHLO_OUT TX1_OUT QUEUED(1), SMTP_EV_NEED_INPUT,
		TX1_REC(1, "a\r\nb\r\n..\r\nc\r\n..\r\nd\r\n..\r\ne\r\n.x\r\ny\r\n") },
	{ "pipelined batch in one feed", T_SMALL,
		EHLO "MAIL FROM:<s@x.test>\r\nRCPT TO:<a@ok.test>\r\nRCPT TO:<x@evil.test>\r\n"
		"DATA\r\nhello\r\n.\r\nQUIT\r\n", 0, 0, 0,
		G EHLO_OUT MAIL_OK RCPT_OK "550 5.7.1 <x@evil.test>: Relay access denied\r\n" GO
		QUEUED(1) BYE, SMTP_EV_CLOSE, TX1_REC(1, "hello\r\n") },
	{ "two messages in one feed", T_SMALL,
		EHLO TX1 "one\r\n.\r\n" TX1 "two\r\n.\r\nNOOP\r\n", 0, 0, 0,
		G EHLO_OUT TX1_OUT QUEUED(1) TX1_OUT QUEUED(2) OK, SMTP_EV_NEED_INPUT,
		TX1_REC(1, "one\r\n") TX1_REC(2, "two\r\n") },
	{ "commit fails: ENOSPC", T_SMALL, EHLO TX1 "one\r\n.\r\nDATA\r\n", 0, 0, -ENOSPC,
		G EHLO_OUT TX1_OUT "451 4.3.0 Error: queue file write error\r\n"
		"503 5.5.1 Error: need RCPT command\r\n", SMTP_EV_NEED_INPUT,
		TX1_REC(1, "one\r\n") },
	{ "commit fails: EDQUOT", T_SMALL, EHLO TX1 "one\r\n.\r\n", 0, 0, -EDQUOT,
		G EHLO_OUT TX1_OUT "452 4.2.2 Error: over quota\r\n", SMTP_EV_NEED_INPUT,
		TX1_REC(1, "one\r\n") },
	/* The stored record did not fit a segment (issue 10 item 9): the same
	 * message would fail again, so a permanent 552, never 451 for days. */
	{ "commit fails: E2BIG", T_SMALL, EHLO TX1 "one\r\n.\r\n", 0, 0, -E2BIG,
		G EHLO_OUT TX1_OUT "552 5.3.4 Error: message too big for the queue\r\n",
		SMTP_EV_NEED_INPUT, TX1_REC(1, "one\r\n") },
	{ "rset drops the transaction", T_SMALL,
		EHLO "MAIL FROM:<s@x.test>\r\nRCPT TO:<a@ok.test>\r\nRSET\r\nRSET x\r\n"
		"RCPT TO:<a@ok.test>\r\n", 0, 0, 0,
		G EHLO_OUT MAIL_OK RCPT_OK OK "501 5.5.4 Syntax: RSET\r\n"
		"503 5.5.1 Error: need MAIL command\r\n", SMTP_EV_NEED_INPUT, NULL },
	{ "quit ignores the rest", T_SMALL, "QUIT\r\nNOOP\r\n", 0, 0, 0, G BYE,
		SMTP_EV_CLOSE, NULL },
	{ "http request closes", T_SMALL, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, 0, 0,
		G "221 2.7.0 Error: I can break rules, too. Goodbye.\r\n", SMTP_EV_CLOSE, NULL },
	{ "error budget", T_SMALL, "A\r\nB\r\nC\r\nD\r\nE\r\nF\r\nG\r\nH\r\nNOOP\r\n", 0, 0, 0,
		G "500 5.5.2 Error: command not recognized\r\n"
		"500 5.5.2 Error: command not recognized\r\n"
		"500 5.5.2 Error: command not recognized\r\n"
		"500 5.5.2 Error: command not recognized\r\n"
		"500 5.5.2 Error: command not recognized\r\n"
		"500 5.5.2 Error: command not recognized\r\n"
		"500 5.5.2 Error: command not recognized\r\n"
		"500 5.5.2 Error: command not recognized\r\n"
		"421 4.7.0 mx.test Error: too many errors\r\n", SMTP_EV_CLOSE, NULL },
	{ "eof", T_SMALL, "NOOP\r\nNOO", 0, 1, 0, G OK, SMTP_EV_CLOSE, NULL },
	{ "eof in data", T_SMALL, EHLO TX1 "abc\r\n", 0, 1, 0, G EHLO_OUT TX1_OUT,
		SMTP_EV_CLOSE, NULL },
	{ "crlf.crlf only", T_SMALL, EHLO TX1 "a\r\n.\r", 0, 0, 0, G EHLO_OUT TX1_OUT,
		SMTP_EV_NEED_INPUT, NULL },
};

Test(smtp_server, transcripts)
{
	size_t i;

	for (i = 0; i < sizeof(t_cases) / sizeof(t_cases[0]); i++)
		t_check(&t_cases[i]);
}

#define READY_TLS "220 2.0.0 Ready to start TLS\r\n"
#define R_AUTH_OK "235 2.7.0 Authentication successful\r\n"
#define R_AUTH_BAD "535 5.7.8 Authentication credentials invalid\r\n"
#define AUTH_SYNTAX "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n"
#define NEED_EHLO "503 5.5.1 Error: send EHLO first\r\n"
#define ENC_REQ "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
#define EHLO_TLS_HEAD "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n" \
	"250-ENHANCEDSTATUSCODES\r\n"
/* T_TLS: before TLS, after it; T_TRUSTED before TLS: both offered. */
#define EHLO_TLS_OUT EHLO_TLS_HEAD "250-STARTTLS\r\n250-ETRN\r\n250 SMTPUTF8\r\n"
#define EHLO_TLS_UP_OUT EHLO_TLS_HEAD "250-AUTH PLAIN LOGIN\r\n250-ETRN\r\n250 SMTPUTF8\r\n"
#define EHLO_TRUSTED_OUT EHLO_TLS_HEAD "250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-ETRN\r\n" \
	"250 SMTPUTF8\r\n"
#define EHLO_SMALL_TLS_UP_OUT "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 200\r\n250-8BITMIME\r\n" \
	"250-ENHANCEDSTATUSCODES\r\n250-AUTH PLAIN LOGIN\r\n250 SMTPUTF8\r\n"
/* "\0alice\0good" and friends (RFC 4616 messages, base64) */
#define B_ALICE_GOOD "AGFsaWNlAGdvb2Q="
#define B_ALICE_BAD "AGFsaWNlAGJhZA=="
#define UP "STARTTLS\r\n" T_TLS_MARK EHLO   /* TLS up, then EHLO again */
#define UP_OUT EHLO_TLS_OUT READY_TLS EHLO_TLS_UP_OUT
#define TLS_COMMENT "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
#define AUTH_COMMENT "\t(Authenticated sender: alice)\r\n"
#define RCVD_X(n, proto, extra) "Received: from client.test (192.0.2.1)\r\n" extra \
	"\tby mx.test (etrnd) with " proto " id 0000000000000" #n "\r\n\tfor <a@ok.test>;\r\n\t" \
	T_DATE "\r\n"
#define TX1_REC_X(n, proto, extra, body) "FROM <s@x.test> F0\nTO <a@ok.test> @2\nID " \
	"0000000000000" #n " " #n "\nBODY\n" RCVD_X(n, proto, extra) body "END\n"
#define X100 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10
#define A100 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define A1100 A100 A100 A100 A100 A100 A100 A100 A100 A100 A100 A100
/* 64-octet authzid and user, a 256-octet password: the longest PLAIN we
 * take, an AUTH line of 529 octets (over command_max 512). */
#define B_LONGEST "dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1" \
	"dXV1dXV1dXV1dQB1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1" \
	"dXV1dXV1dXV1dXV1dXV1dXV1dXV1AGdvb2RwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBw" \
	"cHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBw" \
	"cHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBw" \
	"cHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBw" \
	"cHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBw" \
	"cHBwcHBwcHA="
#define B_PASS257 "AGFsaWNlAHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBw" \
	"cHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBw" \
	"cHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBw" \
	"cHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBw" \
	"cHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBw"
#define B_USER65 "AHV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1" \
	"dXV1dXV1dXV1dXV1AGdvb2Q="

static const struct t_case t_tls_cases[] = {
	/* RFC 3207: 503 inside a transaction, 501 with a parameter; then
	 * the 220, and what was pipelined after it never runs; the session
	 * starts over (MAIL wants EHLO again), STARTTLS is gone from EHLO,
	 * AUTH offered, a second STARTTLS is Postfix's 554, and Received:
	 * says ESMTPS with the cipher. */
	{ "starttls: reset, pipelined commands dropped, ESMTPS", T_TLS,
		EHLO "MAIL FROM:<s@x.test>\r\nSTARTTLS\r\nRSET\r\nSTARTTLS x\r\n"
		"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<a@ok.test>\r\nAUTH PLAIN "
		B_ALICE_GOOD "\r\n" T_TLS_MARK "MAIL FROM:<s@x.test>\r\n" EHLO "STARTTLS\r\n"
		TX1 "hi\r\n.\r\nQUIT\r\n", 0, 0, 0,
		G EHLO_TLS_OUT MAIL_OK "503 5.5.1 Error: MAIL transaction in progress\r\n" OK
		"501 5.5.4 Syntax: STARTTLS\r\n" READY_TLS "503 5.5.1 Error: send HELO/EHLO first\r\n"
		EHLO_TLS_UP_OUT "554 5.5.1 Error: TLS already active\r\n" TX1_OUT QUEUED(1) BYE,
		SMTP_EV_CLOSE, TX1_REC_X(1, "ESMTPS", TLS_COMMENT, "hi\r\n") },
	{ "starttls before EHLO; a half line before the handshake is dropped", T_TLS,
		"STARTTLS\r\nNOO" T_TLS_MARK "P\r\n" EHLO, 0, 0, 0,
		G READY_TLS "500 5.5.2 Error: command not recognized\r\n" EHLO_TLS_UP_OUT,
		SMTP_EV_NEED_INPUT, NULL },
	{ "implicit TLS: no STARTTLS, AUTH offered", T_TLS,
		T_TLS_MARK EHLO "STARTTLS\r\nAUTH PLAIN " B_ALICE_GOOD "\r\n", 0, 0, 0,
		G EHLO_TLS_UP_OUT "554 5.5.1 Error: TLS already active\r\n" R_AUTH_OK,
		SMTP_EV_NEED_INPUT, "AUTH alice good\n" },
	{ "no server context: STARTTLS not offered, 502", T_BIG, EHLO "STARTTLS\r\n", 0, 0, 0,
		G EHLO_BIG_OUT "502 5.5.1 Command not implemented\r\n", SMTP_EV_NEED_INPUT, NULL },
	{ "no auth backend: not offered inside TLS, 503", T_NOAUTH,
		EHLO "STARTTLS\r\n" T_TLS_MARK EHLO "AUTH PLAIN " B_ALICE_GOOD "\r\n", 0, 0, 0,
		G EHLO_TLS_HEAD "250-STARTTLS\r\n250 SMTPUTF8\r\n" READY_TLS
		EHLO_TLS_HEAD "250 SMTPUTF8\r\n" "503 5.5.1 Error: authentication not enabled\r\n",
		SMTP_EV_NEED_INPUT, NULL },
	{ "help names STARTTLS and AUTH", T_TLS, "HELP\r\n", 0, 0, 0,
		G "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP ETRN "
		"STARTTLS AUTH\r\n", SMTP_EV_NEED_INPUT, NULL },
	/* RFC 4954: PLAIN with an initial response; pipelined commands
	 * after it wait for the check and then run as the user: ETRN gets
	 * the user, Received: says ESMTPSA with both comments. */
	{ "auth plain: initial response, ESMTPSA, ETRN as the user", T_TLS,
		EHLO UP "AUTH PLAIN " B_ALICE_GOOD "\r\nAUTH PLAIN " B_ALICE_GOOD "\r\n"
		"ETRN a.test\r\n" TX1 "hi\r\n.\r\n", 0, 0, 0,
		G UP_OUT R_AUTH_OK "503 5.5.1 Error: already authenticated\r\n"
		"250 192.0.2.1 user=alice a.test\r\n" TX1_OUT QUEUED(1), SMTP_EV_NEED_INPUT,
		"AUTH alice good\n" TX1_REC_X(1, "ESMTPSA", TLS_COMMENT AUTH_COMMENT, "hi\r\n") },
	{ "auth in the clear: 538 (after the mechanism), 504, 501", T_TLS,
		EHLO "AUTH PLAIN " B_ALICE_GOOD "\r\nAUTH login\r\nAUTH CRAM-MD5\r\nAUTH\r\n"
		"AUTH PLAIN a b\r\n", 0, 0, 0,
		G EHLO_TLS_OUT ENC_REQ ENC_REQ "504 5.5.4 Unrecognized authentication type\r\n"
		AUTH_SYNTAX AUTH_SYNTAX, SMTP_EV_NEED_INPUT, NULL },
	/* listen_trusted: AUTH without TLS, ESMTPA. STARTTLS then forgets
	 * the user (RFC 3207 4.2): ETRN without it, Received: ESMTPS. */
	{ "trusted listener: auth login in the clear; STARTTLS forgets the user", T_TRUSTED,
		EHLO "AUTH LOGIN\r\nYWxpY2U=\r\nZ29vZA==\r\nETRN a.test\r\n" TX1 "a\r\n.\r\n"
		"STARTTLS\r\n" T_TLS_MARK EHLO "ETRN a.test\r\n" TX1 "b\r\n.\r\n", 0, 0, 0,
		G EHLO_TRUSTED_OUT "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n" R_AUTH_OK
		"250 192.0.2.1 user=alice a.test\r\n" TX1_OUT QUEUED(1) READY_TLS EHLO_TLS_UP_OUT
		"250 192.0.2.1 a.test\r\n" TX1_OUT QUEUED(2), SMTP_EV_NEED_INPUT,
		"AUTH alice good\n" TX1_REC_X(1, "ESMTPA", AUTH_COMMENT, "a\r\n")
		TX1_REC_X(2, "ESMTPS", TLS_COMMENT, "b\r\n") },
	{ "auth replies: challenges, 535, cancel, bad base64, temp, limited", T_TLS,
		EHLO UP "AUTH PLAIN\r\n" B_ALICE_BAD "\r\nAUTH PLAIN\r\n*\r\n"
		"AUTH LOGIN\r\nnot base64!\r\nAUTH PLAIN Zm9v=\r\n"
		"AUTH PLAIN AGFsaWNlAHRlbXA=\r\nAUTH PLAIN AGFsaWNlAGxpbWl0\r\n"
		"auth login YWxpY2U=\r\nZ29vZA==\r\n", 0, 0, 0,
		G UP_OUT "334 \r\n" R_AUTH_BAD "334 \r\n501 5.0.0 Authentication aborted\r\n"
		"334 VXNlcm5hbWU6\r\n501 5.5.2 Cannot decode response\r\n"
		"501 5.5.2 Cannot decode response\r\n454 4.7.0 Temporary authentication failure\r\n"
		"454 4.7.0 Temporary authentication failure: too many failed attempts, try later\r\n"
		"334 UGFzc3dvcmQ6\r\n" R_AUTH_OK, SMTP_EV_NEED_INPUT,
		"AUTH alice bad\nAUTH alice temp\nAUTH alice limit\nAUTH alice good\n" },
	/* RFC 4616: authzid empty or the user; a name or password no user
	 * can have is refused without a check (nothing recorded). */
	{ "auth plain: authzid rules, malformed messages", T_TLS,
		EHLO UP "AUTH PLAIN =\r\nAUTH PLAIN Ym9iAGFsaWNlAGdvb2Q=\r\n"
		"AUTH PLAIN AGFsIGljZQBnb29k\r\nAUTH PLAIN AGFsaWNl\r\nAUTH PLAIN AGFsaWNlAA==\r\n"
		"AUTH LOGIN =\r\nZ29vZA==\r\nAUTH PLAIN YWxpY2UAYWxpY2UAZ29vZA==\r\n", 0, 0, 0,
		G UP_OUT R_AUTH_BAD R_AUTH_BAD R_AUTH_BAD R_AUTH_BAD R_AUTH_BAD "334 UGFzc3dvcmQ6\r\n" R_AUTH_BAD
		R_AUTH_OK, SMTP_EV_NEED_INPUT, "AUTH alice good\n" },
	{ "auth sequencing: EHLO first, not in a transaction", T_TLS,
		"STARTTLS\r\n" T_TLS_MARK "AUTH PLAIN " B_ALICE_GOOD "\r\nHELO client.test\r\n"
		"AUTH PLAIN " B_ALICE_GOOD "\r\n" EHLO "MAIL FROM:<s@x.test>\r\nAUTH PLAIN "
		B_ALICE_GOOD "\r\nRSET\r\nAUTH PLAIN " B_ALICE_GOOD "\r\n", 0, 0, 0,
		G READY_TLS NEED_EHLO "250 mx.test\r\n" NEED_EHLO EHLO_TLS_UP_OUT MAIL_OK
		"503 5.5.1 Error: MAIL transaction in progress\r\n" OK R_AUTH_OK,
		SMTP_EV_NEED_INPUT, "AUTH alice good\n" },
	/* RFC 4954 4: AUTH lines may pass command_max (here 529 octets);
	 * past SMTP_AUTH_LINE_MAX a response is 500 5.5.6, a command line
	 * too long; over-long names and passwords never reach the check. */
	{ "auth line lengths", T_TLS,
		EHLO UP "AUTH PLAIN\r\n" A1100 "\r\nAUTH PLAIN " A1100 "\r\n"
		"AUTH PLAIN " B_PASS257 "\r\nAUTH PLAIN " B_USER65 "\r\n"
		"AUTH PLAIN " B_LONGEST "\r\n", 0, 0, 0,
		G UP_OUT "334 \r\n500 5.5.6 Authentication Exchange line is too long\r\n"
		"500 5.5.2 Error: line too long\r\n" R_AUTH_BAD R_AUTH_BAD R_AUTH_OK, SMTP_EV_NEED_INPUT,
		"AUTH uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu"
		" goodpppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp"
		"pppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp"
		"pppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp\n" },
	{ "command_max still holds for other commands", T_TLS_SMALL,
		"STARTTLS\r\n" T_TLS_MARK EHLO "AUTH PLAIN " B_ALICE_GOOD "\r\n"
		"NOOP " X38 X38 "\r\n", 0, 0, 0,
		G READY_TLS EHLO_SMALL_TLS_UP_OUT R_AUTH_OK "500 5.5.2 Error: line too long\r\n",
		SMTP_EV_NEED_INPUT, "AUTH alice good\n" },
	/* Failures count against smtp_max_errors (8 here): the 8th 535 is
	 * followed by 421 and the end of the session. */
	{ "auth failures use up the error budget", T_TLS_SMALL,
		"STARTTLS\r\n" T_TLS_MARK EHLO "AUTH PLAIN " B_ALICE_BAD "\r\nAUTH PLAIN " B_ALICE_BAD
		"\r\nAUTH PLAIN " B_ALICE_BAD "\r\nAUTH PLAIN " B_ALICE_BAD "\r\nAUTH PLAIN "
		B_ALICE_BAD "\r\nAUTH PLAIN " B_ALICE_BAD "\r\nAUTH PLAIN " B_ALICE_BAD "\r\n"
		"AUTH PLAIN " B_ALICE_BAD "\r\nNOOP\r\n", 0, 0, 0,
		G READY_TLS EHLO_SMALL_TLS_UP_OUT R_AUTH_BAD R_AUTH_BAD R_AUTH_BAD R_AUTH_BAD R_AUTH_BAD R_AUTH_BAD
		R_AUTH_BAD R_AUTH_BAD "421 4.7.0 mx.test Error: too many errors\r\n", SMTP_EV_CLOSE,
		"AUTH alice bad\nAUTH alice bad\nAUTH alice bad\nAUTH alice bad\nAUTH alice bad\n"
		"AUTH alice bad\nAUTH alice bad\nAUTH alice bad\n" },
	{ "eof inside an auth exchange", T_TLS, EHLO UP "AUTH LOGIN\r\nYWxp", 0, 1, 0,
		G UP_OUT "334 VXNlcm5hbWU6\r\n", SMTP_EV_CLOSE, NULL },
};

Test(smtp_server, tls_and_auth_transcripts)
{
	for (size_t i = 0; i < sizeof(t_tls_cases) / sizeof(t_tls_cases[0]); i++)
		t_check(&t_tls_cases[i]);
}

#define G_ODMR "220 mx.test ESMTP etrnd on-demand mail relay server ready\r\n"
/* RFC 2645 5.1.1: the ODMR EHLO before TLS, inside it, on a trusted port. */
#define ODMR_EHLO_OUT "250-mx.test\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250 ATRN\r\n"
#define ODMR_EHLO_UP_OUT "250-mx.test\r\n250-ENHANCEDSTATUSCODES\r\n250-AUTH PLAIN LOGIN\r\n" \
	"250 ATRN\r\n"
#define ODMR_EHLO_TRUSTED_OUT "250-mx.test\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n" \
	"250-AUTH PLAIN LOGIN\r\n250 ATRN\r\n"
#define ODMR_UP_OUT ODMR_EHLO_OUT READY_TLS ODMR_EHLO_UP_OUT
#define AUTH_GOOD "AUTH PLAIN " B_ALICE_GOOD "\r\n"
#define R_530 "530 5.7.0 Authentication required\r\n"
#define R_REVERSE "250 OK now reversing the connection\r\n"
#define R_ATRN_SYNTAX "501 5.5.4 Syntax: ATRN [domain *(,domain)]\r\n"
#define R_TURN "502 5.5.1 Error: TURN not implemented (unauthenticated TURN is unsafe, RFC 2645)\r\n"
#define R_NOT_ODMR(cmd) "502 5.5.1 Error: " cmd " not available on the on-demand mail relay port\r\n"
#define R_UNIMPL "502 5.5.1 Command not implemented\r\n"
#define D10(x) x "0.t," x "1.t," x "2.t," x "3.t," x "4.t," x "5.t," x "6.t," x "7.t," x "8.t," \
	x "9.t"
#define D32 D10("a") "," D10("b") "," D10("c") ",e0.t,E1.T."
#define D10_REC(x) " [" x "0.t]\n [" x "1.t]\n [" x "2.t]\n [" x "3.t]\n [" x "4.t]\n [" x \
	"5.t]\n [" x "6.t]\n [" x "7.t]\n [" x "8.t]\n [" x "9.t]\n"

static const struct t_case t_atrn_cases[] = {
	{ "odmr: greeting, EHLO keywords in the clear and inside TLS", T_ODMR,
		EHLO "STARTTLS\r\n" T_TLS_MARK EHLO, 0, 0, 0,
		G_ODMR ODMR_UP_OUT, SMTP_EV_NEED_INPUT, NULL },
	/* RFC 2645: ATRN wants AUTH first (530, counted); an ODMR session
	 * has no transaction, no queue to run, no VRFY: 502; TURN never. */
	{ "odmr: ATRN before AUTH 530; mail commands and TURN 502", T_ODMR,
		EHLO "ATRN\r\nSTARTTLS\r\n" T_TLS_MARK EHLO "ATRN a.test\r\nMAIL FROM:<s@x.test>\r\n"
		"RCPT TO:<a@ok.test>\r\nDATA\r\nETRN a.test\r\nVRFY x\r\nBDAT 1\r\nTURN\r\n"
		"NOOP\r\nHELP\r\n", 0, 0, 0,
		G_ODMR ODMR_EHLO_OUT R_530 READY_TLS ODMR_EHLO_UP_OUT R_530 R_NOT_ODMR("MAIL")
		R_NOT_ODMR("RCPT") R_NOT_ODMR("DATA") R_NOT_ODMR("ETRN") R_NOT_ODMR("VRFY")
		R_NOT_ODMR("BDAT") R_TURN OK
		"214 2.0.0 Commands: EHLO HELO RSET NOOP QUIT HELP STARTTLS AUTH ATRN\r\n",
		SMTP_EV_NEED_INPUT, NULL },
	/* Each of those counts against smtp_max_errors (10 here). */
	{ "odmr: refused commands use up the error budget", T_ODMR,
		"MAIL FROM:<s@x.test>\r\nMAIL FROM:<s@x.test>\r\nMAIL FROM:<s@x.test>\r\n"
		"RCPT TO:<a@ok.test>\r\nRCPT TO:<a@ok.test>\r\nRCPT TO:<a@ok.test>\r\n"
		"DATA\r\nDATA\r\nATRN\r\nTURN\r\nNOOP\r\n", 0, 0, 0,
		G_ODMR R_NOT_ODMR("MAIL") R_NOT_ODMR("MAIL") R_NOT_ODMR("MAIL") R_NOT_ODMR("RCPT")
		R_NOT_ODMR("RCPT") R_NOT_ODMR("RCPT") R_NOT_ODMR("DATA") R_NOT_ODMR("DATA") R_530
		R_TURN "421 4.7.0 mx.test Error: too many errors\r\n", SMTP_EV_CLOSE, NULL },
	{ "odmr: help, TURN", T_ODMR, "HELP\r\nTURN\r\nTURN x\r\n", 0, 0, 0,
		G_ODMR "214 2.0.0 Commands: EHLO HELO RSET NOOP QUIT HELP STARTTLS AUTH ATRN\r\n"
		R_TURN R_TURN, SMTP_EV_NEED_INPUT, NULL },
	/* After AUTH, ATRN with a list is the event; the customer's 220
	 * that follows it is never consumed by the session. */
	{ "odmr: AUTH, ATRN d1,d2: the event, the rest untouched", T_ODMR,
		EHLO UP AUTH_GOOD "ATRN a.test,B.Test\r\n220 customer.test ready\r\nQUIT\r\n", 0, 0, 0,
		G_ODMR ODMR_UP_OUT R_AUTH_OK R_REVERSE, SMTP_EV_ATRN,
		"AUTH alice good\nATRN alice a.test,B.Test\n [a.test]\n [B.Test]\n"
		"REST 220 customer.test ready\r\nQUIT\r\n" },
	/* Refusals (the drain's 453 and 450) leave the session going and
	 * count no error; bad lists are 501; a bare ATRN is every domain. */
	{ "odmr: 453, 450, 501 syntax, then a bare ATRN", T_ODMR,
		EHLO UP AUTH_GOOD "ATRN none.test\r\nATRN other.test\r\nATRN a.test,\r\n"
		"ATRN ,a.test\r\nATRN a.test, b.test\r\nATRN a,,b\r\nATRN [192.0.2.1]\r\n"
		"ATRN @a.test\r\nATRN #queue\r\nATRN a/b\r\nATRN\r\n", 0, 0, 0,
		G_ODMR ODMR_UP_OUT R_AUTH_OK "453 You have no mail\r\n450 ATRN request refused\r\n"
		R_ATRN_SYNTAX R_ATRN_SYNTAX R_ATRN_SYNTAX R_ATRN_SYNTAX R_ATRN_SYNTAX R_ATRN_SYNTAX
		R_ATRN_SYNTAX R_ATRN_SYNTAX R_REVERSE, SMTP_EV_ATRN,
		"AUTH alice good\nATRN alice none.test\n [none.test]\nATRN alice other.test\n"
		" [other.test]\nATRN alice \nREST " },
	/* proto/atrn.c's bound, ATRN_DOMAINS_MAX, and its 501. */
	{ "odmr: 32 domains taken (as given), 33 refused", T_ODMR,
		EHLO UP AUTH_GOOD "ATRN " D32 ",f.t\r\nATRN " D32 "\r\n", 0, 0, 0,
		G_ODMR ODMR_UP_OUT R_AUTH_OK "501 5.5.4 Too many domains in one ATRN\r\n"
		R_REVERSE, SMTP_EV_ATRN,
		"AUTH alice good\nATRN alice " D32 "\n" D10_REC("a") D10_REC("b") D10_REC("c") " [e0.t]\n [E1.T.]\n"
		"REST " },
	{ "odmr_listen_trusted: AUTH in the clear, then ATRN", T_ODMR_TRUSTED,
		EHLO AUTH_GOOD "ATRN a.test\r\n", 0, 0, 0,
		G_ODMR ODMR_EHLO_TRUSTED_OUT R_AUTH_OK R_REVERSE, SMTP_EV_ATRN,
		"AUTH alice good\nATRN alice a.test\n [a.test]\nREST " },
	/* The SMTP port: ATRN is 502 unless smtp_atrn, TURN always. */
	{ "smtp listener: ATRN and TURN 502 even when authenticated", T_TLS,
		EHLO UP AUTH_GOOD "ATRN a.test\r\nATRN\r\nTURN\r\n", 0, 0, 0,
		G UP_OUT R_AUTH_OK R_UNIMPL R_UNIMPL R_TURN, SMTP_EV_NEED_INPUT,
		"AUTH alice good\n" },
	{ "smtp_atrn: offered and answered as on ODMR; not in a transaction", T_ATRN,
		EHLO "ATRN a.test\r\nSTARTTLS\r\n" T_TLS_MARK EHLO AUTH_GOOD "MAIL FROM:<s@x.test>\r\n"
		"ATRN a.test\r\nRSET\r\nHELP\r\nATRN a.test\r\n", 0, 0, 0,
		G EHLO_TLS_HEAD "250-STARTTLS\r\n250-ETRN\r\n250-ATRN\r\n250 SMTPUTF8\r\n" R_530
		READY_TLS EHLO_TLS_HEAD "250-AUTH PLAIN LOGIN\r\n250-ETRN\r\n250-ATRN\r\n250 SMTPUTF8\r\n"
		R_AUTH_OK MAIL_OK "503 5.5.1 Error: MAIL transaction in progress\r\n" OK
		"214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP ETRN STARTTLS "
		"AUTH ATRN\r\n" R_REVERSE, SMTP_EV_ATRN,
		"AUTH alice good\nATRN alice a.test\n [a.test]\nREST " },
	{ "odmr: pipelined AUTH and ATRN, the rest kept", T_ODMR_TRUSTED,
		EHLO AUTH_GOOD "ATRN\r\n220 c", 0, 0, 0,
		G_ODMR ODMR_EHLO_TRUSTED_OUT R_AUTH_OK R_REVERSE, SMTP_EV_ATRN,
		"AUTH alice good\nATRN alice \nREST 220 c" },
};

Test(smtp_server, atrn_transcripts)
{
	for (size_t i = 0; i < sizeof(t_atrn_cases) / sizeof(t_atrn_cases[0]); i++)
		t_check(&t_atrn_cases[i]);
}

#define R_DENIED(a) "550 5.7.1 <" a ">: Relay access denied\r\n"
#define R_TOO_MANY "421 4.7.0 mx.test Error: too many errors\r\n"
#define FAR_TX(body) "MAIL FROM:<s@x.test>\r\nRCPT TO:<b@far.test>\r\nDATA\r\n" body ".\r\n"
#define FAR_TX_OUT(n) MAIL_OK RCPT_OK GO QUEUED(n)
#define FAR_REC(n, proto, extra, body) "FROM <s@x.test> F0\nTO <b@far.test> @2\nID " \
	"0000000000000" #n " " #n "\nBODY\nReceived: from client.test (192.0.2.1)\r\n" extra \
	"\tby mx.test (etrnd) with " proto " id 0000000000000" #n "\r\n\tfor <b@far.test>;\r\n\t" \
	T_DATE "\r\n" body "END\n"
#define M10(x) x x x x x x x x x x

/* Who may relay (far.test has no customer row): rcpt_check is told relay
 * = 1 for a client in mynetworks (for the whole session) and for an
 * authenticated one (until STARTTLS forgets the user); a submission
 * listener wants AUTH before MAIL (RFC 6409, RFC 4954 6: 530 5.7.0). */
static const struct t_case t_relay_cases[] = {
	{ "relay: a stranger gets 550 for a foreign domain, a customer domain is fine", T_TLS,
		EHLO "MAIL FROM:<s@x.test>\r\nRCPT TO:<b@far.test>\r\nRCPT TO:<a@ok.test>\r\n"
		"QUIT\r\n", 0, 0, 0,
		G EHLO_TLS_OUT MAIL_OK R_DENIED("b@far.test") RCPT_OK BYE, SMTP_EV_CLOSE, NULL },
	{ "relay: mynetworks may relay, in the clear and after STARTTLS", T_RELAY,
		EHLO FAR_TX("m\r\n") "STARTTLS\r\n" T_TLS_MARK EHLO FAR_TX("n\r\n"), 0, 0, 0,
		G EHLO_TLS_OUT FAR_TX_OUT(1) READY_TLS EHLO_TLS_UP_OUT FAR_TX_OUT(2),
		SMTP_EV_NEED_INPUT,
		FAR_REC(1, "ESMTP", "", "m\r\n") FAR_REC(2, "ESMTPS", TLS_COMMENT, "n\r\n") },
	{ "relay: refused before AUTH, taken after it", T_TLS,
		EHLO UP "MAIL FROM:<s@x.test>\r\nRCPT TO:<b@far.test>\r\nRSET\r\n" AUTH_GOOD
		FAR_TX("a\r\n"), 0, 0, 0,
		G UP_OUT MAIL_OK R_DENIED("b@far.test") OK R_AUTH_OK FAR_TX_OUT(1), SMTP_EV_NEED_INPUT,
		"AUTH alice good\n" FAR_REC(1, "ESMTPSA", TLS_COMMENT AUTH_COMMENT, "a\r\n") },
	{ "relay: trusted AUTH in the clear; STARTTLS forgets the user and the right", T_TRUSTED,
		EHLO AUTH_GOOD FAR_TX("a\r\n") "STARTTLS\r\n" T_TLS_MARK EHLO
		"MAIL FROM:<s@x.test>\r\nRCPT TO:<b@far.test>\r\n", 0, 0, 0,
		G EHLO_TRUSTED_OUT R_AUTH_OK FAR_TX_OUT(1) READY_TLS EHLO_TLS_UP_OUT MAIL_OK
		R_DENIED("b@far.test"), SMTP_EV_NEED_INPUT,
		"AUTH alice good\n" FAR_REC(1, "ESMTPA", AUTH_COMMENT, "a\r\n") },
	{ "submission: 530 before AUTH, in the clear and in TLS; AUTH then MAIL and relay", T_SUB,
		EHLO "MAIL FROM:<s@x.test>\r\nAUTH PLAIN " B_ALICE_GOOD "\r\nSTARTTLS\r\n"
		T_TLS_MARK EHLO "MAIL FROM:<s@x.test>\r\nRCPT TO:<a@ok.test>\r\nAUTH PLAIN "
		B_ALICE_BAD "\r\nMAIL FROM:<s@x.test>\r\n" AUTH_GOOD FAR_TX("s\r\n") "QUIT\r\n",
		0, 0, 0,
		G EHLO_TLS_OUT R_530 ENC_REQ READY_TLS EHLO_TLS_UP_OUT R_530
		"503 5.5.1 Error: need MAIL command\r\n" R_AUTH_BAD R_530 R_AUTH_OK FAR_TX_OUT(1) BYE,
		SMTP_EV_CLOSE,
		"AUTH alice bad\nAUTH alice good\n"
		FAR_REC(1, "ESMTPSA", TLS_COMMENT AUTH_COMMENT, "s\r\n") },
	{ "submission: EHLO first (503), other commands as on the SMTP port", T_SUB,
		"MAIL FROM:<s@x.test>\r\n" EHLO "NOOP\r\nRSET\r\nVRFY x\r\nETRN a.test\r\nHELP\r\n",
		0, 0, 0,
		G "503 5.5.1 Error: send HELO/EHLO first\r\n" EHLO_TLS_OUT OK OK
		"252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery\r\n"
		"250 192.0.2.1 a.test\r\n"
		"214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP ETRN STARTTLS "
		"AUTH\r\n", SMTP_EV_NEED_INPUT, NULL },
	{ "submission: each 530 counts against the error budget", T_SUB,
		EHLO M10("MAIL FROM:<s@x.test>\r\n") "NOOP\r\n", 0, 0, 0,
		G EHLO_TLS_OUT M10(R_530) R_TOO_MANY, SMTP_EV_CLOSE, NULL },
	{ "submission: mynetworks is no excuse for skipping AUTH", T_SUB_TRUSTED,
		EHLO "MAIL FROM:<s@x.test>\r\n" AUTH_GOOD FAR_TX("t\r\n"), 0, 0, 0,
		G EHLO_TRUSTED_OUT R_530 R_AUTH_OK FAR_TX_OUT(1), SMTP_EV_NEED_INPUT,
		"AUTH alice good\n" FAR_REC(1, "ESMTPA", AUTH_COMMENT, "t\r\n") },
};

Test(smtp_server, relay_and_submission_transcripts)
{
	for (size_t i = 0; i < sizeof(t_relay_cases) / sizeof(t_relay_cases[0]); i++)
		t_check(&t_relay_cases[i]);
}

#define REV_EHLO_OUT EHLO_TLS_HEAD "250 SMTPUTF8\r\n"
#define R_NOT_REV(cmd) "502 5.5.1 Error: " cmd " not available in a reversed ATRN session\r\n"
#define REV_HELP "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP\r\n"

/* ATRN's reversed session on the customer's side (RFC 2645 4): the
 * upstream only hands us mail. Nothing else is offered, though the conf
 * (T_REV) would offer STARTTLS, AUTH, ETRN and ATRN to anyone else; mail
 * is taken as from a stranger: customer domains only. */
/* A case and why the session has ended by then ("" while open). */
struct t_rev_case {
	struct t_case tc;
	const char *want_why;
};

static const struct t_rev_case t_rev_cases[] = {
	{ { "reversed: EHLO offers no STARTTLS, AUTH, ETRN or ATRN; each is 502", T_REV,
		EHLO "STARTTLS\r\nAUTH PLAIN " B_ALICE_GOOD "\r\nETRN ok.test\r\nATRN ok.test\r\n"
		"TURN\r\nHELP\r\nNOOP\r\n", 0, 0, 0,
		G REV_EHLO_OUT R_NOT_REV("STARTTLS") R_NOT_REV("AUTH") R_NOT_REV("ETRN")
		R_NOT_REV("ATRN") R_TURN REV_HELP OK, SMTP_EV_NEED_INPUT, NULL }, "" },
	{ { "reversed: a customer domain taken, a foreign one 550, QUIT", T_REV,
		EHLO "MAIL FROM:<s@x.test>\r\nRCPT TO:<b@far.test>\r\nRCPT TO:<a@ok.test>\r\n"
		"DATA\r\nhi\r\n.\r\nQUIT\r\n", 0, 0, 0,
		G REV_EHLO_OUT MAIL_OK R_DENIED("b@far.test") RCPT_OK GO QUEUED(1) BYE,
		SMTP_EV_CLOSE, TX1_REC(1, "hi\r\n") }, "QUIT" },
	/* TLS came with the connection: up before the greeting. */
	{ { "reversed inside TLS: ESMTPS with the cipher, still no AUTH", T_REV,
		T_TLS_MARK EHLO "STARTTLS\r\nAUTH PLAIN " B_ALICE_GOOD "\r\n" TX1 "hi\r\n.\r\n",
		0, 0, 0,
		G REV_EHLO_OUT R_NOT_REV("STARTTLS") R_NOT_REV("AUTH") TX1_OUT QUEUED(1),
		SMTP_EV_NEED_INPUT, TX1_REC_X(1, "ESMTPS", TLS_COMMENT, "hi\r\n") }, "" },
	{ { "reversed: the 502s use up the error budget", T_REV,
		EHLO M10("ETRN ok.test\r\n") "NOOP\r\n", 0, 0, 0,
		G REV_EHLO_OUT M10(R_NOT_REV("ETRN")) R_TOO_MANY, SMTP_EV_CLOSE, NULL },
		"too many errors" },
	{ { "reversed: a failed commit is no 250; the upstream leaves without QUIT", T_REV,
		EHLO TX1 "hi\r\n.\r\n", 0, 1, -EIO,
		G REV_EHLO_OUT TX1_OUT "451 4.3.0 Error: queue file write error\r\n", SMTP_EV_CLOSE,
		TX1_REC(1, "hi\r\n") }, "lost connection" },
};

Test(smtp_server, reversed_transcripts)
{
	for (size_t i = 0; i < sizeof(t_rev_cases) / sizeof(t_rev_cases[0]); i++) {
		const struct t_rev_case *c = &t_rev_cases[i];

		cr_expect_str_eq(t_check(&c->tc), c->want_why, "%s: end reason", c->tc.name);
	}
}

/* A reversed session never has the relay right: set_relay before it is
 * a broken invariant in the glue. */
Test(smtp_server, reversed_with_relay_panics, .signal = SIGABRT)
{
	struct smtp_session *s = smtp_server_new(t_conf(T_REV), "192.0.2.1");

	smtp_server_set_relay(s);
	smtp_server_set_reversed(s);
}

/* The relay right as the glue and the fuzzer see it. */
Test(smtp_server, may_relay)
{
	static const char auth[] = "EHLO c\r\nAUTH PLAIN " B_ALICE_GOOD "\r\n";
	const struct smtp_server_conf *conf = t_conf(T_TRUSTED);
	struct smtp_session *s = smtp_server_new(conf, "192.0.2.1");
	enum smtp_event ev;
	struct buf out;

	buf_init(&out, 4096);
	smtp_server_set_trusted(s);
	cr_assert_eq(smtp_server_may_relay(s), 0);
	(void)smtp_server_feed(s, auth, sizeof(auth) - 1, &out, &ev);
	cr_assert_eq(ev, SMTP_EV_AUTH);
	cr_assert_eq(smtp_server_may_relay(s), 0, "not before the check says ok");
	cr_assert_eq(smtp_server_auth_done(s, AUTH_BAD, &out), SMTP_EV_NEED_INPUT);
	cr_assert_eq(smtp_server_may_relay(s), 0);
	(void)smtp_server_feed(s, auth + 8, sizeof(auth) - 9, &out, &ev);
	cr_assert_eq(ev, SMTP_EV_AUTH);
	cr_assert_eq(smtp_server_auth_done(s, AUTH_OK, &out), SMTP_EV_NEED_INPUT);
	cr_assert_eq(smtp_server_may_relay(s), 1);
	smtp_server_free(s);

	s = smtp_server_new(conf, "192.0.2.1");
	smtp_server_set_relay(s);
	cr_assert_eq(smtp_server_may_relay(s), 1);
	smtp_server_tls_up(s, &t_tls_info);
	cr_assert_eq(smtp_server_may_relay(s), 1);
	smtp_server_free(s);
	buf_free(&out);
}

/* CVE-2011-0411: one feed holding STARTTLS and commands after it is
 * consumed whole (nothing left for the glue to feed after the handshake),
 * and only the 220 comes out. */
Test(smtp_server, starttls_swallows_pipelined_input)
{
	static const char in[] = "EHLO c\r\nSTARTTLS\r\nMAIL FROM:<s@x.test>\r\nQUIT\r\n";
	const struct smtp_server_conf *conf = t_conf(T_TLS);
	struct smtp_session *s = smtp_server_new(conf, "192.0.2.1");
	enum smtp_event ev;
	struct buf out;

	buf_init(&out, 4096);
	cr_assert_eq(smtp_server_feed(s, in, sizeof(in) - 1, &out, &ev), sizeof(in) - 1);
	cr_assert_eq(ev, SMTP_EV_STARTTLS);
	cr_assert(out.len > strlen(READY_TLS));
	cr_assert(memcmp(out.data + out.len - strlen(READY_TLS), READY_TLS, strlen(READY_TLS)) == 0);
	cr_assert(smtp_server_idle(s));
	out.len = 0;
	smtp_server_tls_up(s, NULL); /* no details known: still TLS */
	cr_assert_eq(smtp_server_feed(s, "MAIL FROM:<s@x.test>\r\n", 22, &out, &ev), 22);
	cr_assert_eq(ev, SMTP_EV_NEED_INPUT);
	t_out_is(&out, "503 5.5.1 Error: send HELO/EHLO first\r\n");
	buf_free(&out);
	smtp_server_free(s);
}

/* A check that ends after the session timed out writes nothing, and a
 * session freed with a check in flight leaves nothing behind (ASan). */
Test(smtp_server, auth_done_after_close)
{
	static const char in[] = "EHLO c\r\nAUTH PLAIN " B_ALICE_GOOD "\r\nNOOP\r\n";
	const struct smtp_server_conf *conf = t_conf(T_TRUSTED);
	struct smtp_session *s = smtp_server_new(conf, "192.0.2.1");
	enum smtp_event ev;
	size_t used, len;
	struct buf out;

	buf_init(&out, 4096);
	smtp_server_set_trusted(s);
	used = smtp_server_feed(s, in, sizeof(in) - 1, &out, &ev);
	cr_assert_eq(ev, SMTP_EV_AUTH);
	cr_assert_eq(used, sizeof(in) - 1 - strlen("NOOP\r\n"));
	cr_assert_str_eq(smtp_server_auth_user(s), "alice");
	cr_assert(memcmp(smtp_server_auth_pass(s, &len), "good", 4) == 0 && len == 4);
	cr_assert_null(smtp_server_user(s));
	smtp_server_timeout(s, &out);
	out.len = 0;
	cr_assert_eq(smtp_server_auth_done(s, AUTH_OK, &out), SMTP_EV_CLOSE);
	cr_assert_eq(out.len, 0);
	cr_assert_null(smtp_server_user(s));
	cr_assert_eq(smtp_server_feed(s, "NOOP\r\n", 6, &out, &ev), 0);
	cr_assert_eq(ev, SMTP_EV_CLOSE);
	smtp_server_free(s);

	s = smtp_server_new(conf, "192.0.2.1");
	smtp_server_set_trusted(s);
	(void)smtp_server_feed(s, in, sizeof(in) - 1, &out, &ev);
	cr_assert_eq(ev, SMTP_EV_AUTH);
	smtp_server_free(s);
	buf_free(&out);
}

/* The longest Received: header (64-octet HELO and user, TLS names at their
 * cap, a 64-octet local part, a long cipher name with the characters a
 * comment cannot hold) stays within the room smtp_server_body_max() counts
 * (1024 octets besides our hostname), and its comments stay balanced. */
Test(smtp_server, received_worst_case_fits)
{
	static const struct tls_info wide = {
		"TLSv1.3(" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
		"TLS_\\AES)" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
		-2147483647 - 1, 0, "" };
	const struct smtp_server_conf *conf = t_conf(T_TRUSTED);
	struct smtp_session *s = smtp_server_new(conf, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255");
	char in[2048];
	const char *body, *end;
	enum smtp_event ev;
	size_t len, hdr, used;
	struct buf out;
	int depth = 0;

	snprintf(in, sizeof(in), "EHLO %.64s\r\nAUTH PLAIN AHV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXUAZ29vZA==\r\n",
		 X10 X10 X10 X10 X10 X10 X10 X10);
	buf_init(&out, 1 << 16);
	smtp_server_tls_up(s, &wide);
	used = smtp_server_feed(s, in, strlen(in), &out, &ev);
	cr_assert_eq(ev, SMTP_EV_AUTH);
	cr_assert_eq(used, strlen(in));
	cr_assert_eq(smtp_server_auth_done(s, AUTH_OK, &out), SMTP_EV_NEED_INPUT);
	snprintf(in, sizeof(in), "MAIL FROM:<s@x.test>\r\nRCPT TO:<%.64s@ok.test>\r\nDATA\r\n.\r\n",
		 X100 X100 X10 X10 X10 X10);
	used = smtp_server_feed(s, in, strlen(in), &out, &ev);
	cr_assert_eq(ev, SMTP_EV_COMMIT, "%.*s", (int)out.len, out.data);
	body = smtp_tx_body(smtp_server_tx(s), &len);
	end = strstr(body, "(UTC)\r\n");
	cr_assert_not_null(end);
	hdr = (size_t)(end - body) + strlen("(UTC)\r\n");
	cr_assert_leq(hdr, 1024 + strlen(conf->hostname), "Received: is %zu octets", hdr);
	cr_assert_not_null(strstr(body, "with ESMTPSA"));
	for (size_t i = 0; i < hdr - strlen("(UTC)\r\n"); i++) {
		cr_assert(body[i] != '\\', "backslash at %zu", i);
		depth += body[i] == '(' ? 1 : body[i] == ')' ? -1 : 0;
		cr_assert(depth >= 0 && depth <= 2, "parentheses at %zu", i);
	}
	cr_assert_eq(depth, 0);
	smtp_server_commit_done(s, 0, &out);
	buf_free(&out);
	smtp_server_free(s);
}

Test(smtp_server, idle_timeout_shutdown_busy)
{
	const struct smtp_server_conf *conf = t_conf(T_SMALL);
	static const char in[] = EHLO "MAIL FROM:<s@x.test>\r\n";
	struct smtp_session *s = smtp_server_new(conf, "192.0.2.1");
	enum smtp_event ev;
	struct buf out;

	buf_init(&out, 4096);
	cr_assert(smtp_server_idle(s));
	cr_assert_eq(smtp_server_feed(s, in, sizeof(in) - 1, &out, &ev), sizeof(in) - 1);
	cr_assert(!smtp_server_idle(s));
	cr_assert_null(smtp_server_end_reason(s));
	out.len = 0;
	smtp_server_timeout(s, &out);
	cr_assert_str_eq(smtp_server_end_reason(s), "idle timeout");
	t_out_is(&out, "421 4.4.2 mx.test Error: timeout exceeded\r\n");
	cr_assert_eq(smtp_server_feed(s, "NOOP\r\n", 6, &out, &ev), 0);
	cr_assert_eq(ev, SMTP_EV_CLOSE);
	smtp_server_free(s);

	s = smtp_server_new(conf, "192.0.2.1");
	out.len = 0;
	smtp_server_shutdown(s, &out);
	t_out_is(&out, "421 4.3.2 mx.test Service shutting down\r\n");
	cr_assert_str_eq(smtp_server_end_reason(s), "shutdown");
	smtp_server_timeout(s, &out);
	cr_assert_str_eq(smtp_server_end_reason(s), "shutdown", "the first reason stays");
	smtp_server_free(s);

	out.len = 0;
	smtp_server_reply_busy(&out, "mx.test");
	t_out_is(&out, "421 4.7.0 mx.test Error: too many connections\r\n");
	buf_free(&out);
	cr_assert_null(smtp_server_free(NULL));
}

/* A peer that pipelines without reading fills the reply buffer: the
 * session closes instead of dropping replies silently. */
Test(smtp_server, reply_buffer_full_closes)
{
	const struct smtp_server_conf *conf = t_conf(T_SMALL);
	struct smtp_session *s = smtp_server_new(conf, "192.0.2.1");
	enum smtp_event ev = SMTP_EV_NEED_INPUT;
	struct buf out;
	int i;

	buf_init(&out, 64);
	for (i = 0; i < 20 && ev != SMTP_EV_CLOSE; i++)
		smtp_server_feed(s, "NOOP\r\n", 6, &out, &ev);
	cr_assert_eq(ev, SMTP_EV_CLOSE);
	cr_assert_leq(out.len, 64);
	buf_free(&out);
	smtp_server_free(s);
}

/* A pipelined flood stops at reply_max (SMTP_EV_OUT_FULL) and goes on from
 * where it stopped once the replies are taken, whole and byte by byte:
 * every command gets its reply, the buffer never holds much more than
 * reply_max (one reply over at most). */
Test(smtp_server, reply_max_pauses_pipelining)
{
	enum { T_FLOOD = 2000, T_REPLY_MAX = 256, T_REPLY_LEN = 16 };
	static const char cmd[] = "NOOP\r\n";
	struct smtp_server_conf conf = *t_conf(T_BIG);
	size_t n = T_FLOOD * (sizeof(cmd) - 1), chunks[] = { 0, 1, 7 };
	char *in = malloc(n);

	cr_assert(in != NULL);
	for (size_t i = 0; i < T_FLOOD; i++)
		memcpy(in + i * (sizeof(cmd) - 1), cmd, sizeof(cmd) - 1);
	conf.limits.reply_max = T_REPLY_MAX;
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		struct smtp_session *s = smtp_server_new(&conf, "192.0.2.1");
		enum smtp_event ev = SMTP_EV_NEED_INPUT;
		size_t i = 0, replies = 0, pauses = 0;
		struct buf out;

		buf_init(&out, 0);
		cr_assert(s != NULL);
		while (i < n) {
			size_t k = chunks[c] && chunks[c] < n - i ? chunks[c] : n - i;
			size_t used = smtp_server_feed(s, in + i, k, &out, &ev);

			cr_assert_leq(out.len, T_REPLY_MAX + T_REPLY_LEN);
			if (ev == SMTP_EV_OUT_FULL) {
				cr_assert_leq(used, k);
				pauses++;
			} else {
				cr_assert_eq(ev, SMTP_EV_NEED_INPUT);
				cr_assert_eq(used, k);
			}
			i += used;
			if (ev == SMTP_EV_OUT_FULL || i == n) {
				/* The peer read it all. */
				for (size_t j = 0; j + 4 <= out.len; j++)
					replies += !memcmp(out.data + j, "250 ", 4);
				out.len = 0;
			}
		}
		cr_expect_eq(replies, T_FLOOD, "chunk %zu: %zu replies", chunks[c], replies);
		cr_expect_gt(pauses, 0);
		buf_free(&out);
		smtp_server_free(s);
	}
	free(in);
}

/* Bytes this process has allocated now: ASan's allocator count under
 * ASan (glibc's malloc does not see those), else glibc's arena and mmap
 * chunks in use. */
#ifdef __SANITIZE_ADDRESS__
/* compiler-rt's sanitizer/allocator_interface.h (not installed with gcc). */
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t t_heap_used(void)
{
	return __sanitizer_get_current_allocated_bytes();
}
#else
static size_t t_heap_used(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}
#endif

/* What a session may still hold after a big message: the body buffer cut
 * back to SMTP_BODY_KEEP (64 KiB, proto/smtp_server.c) plus its reply
 * buffer and the allocator's rounding; far below a big body. */
#define T_BIG_KEEP_MAX (256u * 1024u)
#define T_BIG_BODY 3000000u
#define T_BIG_ROUNDS 3
/* The node's DATA budget: room for one body with its steps, not for two
 * held at once (a body never given back shows at the second message). */
#define T_BIG_BUDGET ((uint64_t)T_BIG_BODY * 3 / 2)

/* A big body takes that much memory, from the node's DATA budget too, and
 * gives both back when the message is done, message after message: the
 * session keeps no more than T_BIG_KEEP_MAX (the buffer is reused, cut
 * back), the budget nothing. */
Test(smtp_server, big_message_memory)
{
	struct smtp_server_conf conf = *t_conf(T_BIG);
	static const char head[] = EHLO TX1;
	size_t n = sizeof(head) - 1 + T_BIG_BODY + 3, got, base, held;
	struct budget *bud = budget_new(T_BIG_BUDGET);
	struct smtp_session *s;
	enum smtp_event ev;
	const char *body;
	struct buf out;
	char *in = malloc(n);

	cr_assert(in != NULL && bud != NULL);
	memcpy(in, head, sizeof(head) - 1);
	for (size_t i = 0; i < T_BIG_BODY; i += 100) {
		memset(in + sizeof(head) - 1 + i, 'y', 98);
		memcpy(in + sizeof(head) - 1 + i + 98, "\r\n", 2);
	}
	memcpy(in + n - 3, ".\r\n", 3);
	conf.data_budget = bud;
	s = smtp_server_new(&conf, "192.0.2.1");
	cr_assert(s != NULL);
	buf_init(&out, 1 << 16);
	base = t_heap_used();
	for (int round = 0; round < T_BIG_ROUNDS; round++) {
		size_t from = round == 0 ? 0 : sizeof(EHLO) - 1;

		out.len = 0;
		cr_assert_eq(smtp_server_feed(s, in + from, n - from, &out, &ev), n - from);
		cr_assert_eq(ev, SMTP_EV_COMMIT);
		body = smtp_tx_body(smtp_server_tx(s), &got);
		cr_assert_gt(got, T_BIG_BODY);
		cr_assert(memcmp(body + got - T_BIG_BODY, in + sizeof(head) - 1, T_BIG_BODY) == 0);
		held = t_heap_used();
		cr_expect_geq(held, base + T_BIG_BODY, "round %d: %zu bytes over the base while "
			      "holding a %u-byte body", round, held - base, T_BIG_BODY);
		cr_expect_geq(budget_used(bud), T_BIG_BODY, "round %d: budget %llu", round,
			      (unsigned long long)budget_used(bud));
		smtp_server_commit_done(s, 0, &out);
		cr_assert(smtp_server_idle(s));
		held = t_heap_used();
		cr_expect_leq(held, base + T_BIG_KEEP_MAX, "round %d: %zu bytes kept after the "
			      "message", round, held > base ? held - base : 0);
		cr_expect_eq(budget_used(bud), 0, "round %d: %llu bytes of the budget kept",
			     round, (unsigned long long)budget_used(bud));
	}
	free(in);
	buf_free(&out);
	smtp_server_free(s);
	budget_free(bud);
}

/* One body, with c put at pos (c < 0: as it is), fed whole, octet by
 * octet and in feeds of 64 to 68 octets: the same replies, transactions
 * and end. */
static void t_bulk_same(enum t_conf conf, const char *body, size_t n, size_t pos, int c)
{
	static const char head[] = EHLO TX1, tail[] = "\r\n.\r\nQUIT\r\n";
	static struct t_result whole, octets, cut;
	static char in[4096];
	struct t_case tc = { .name = "bulk", .conf = conf, .in = in };

	cr_assert(sizeof(head) - 1 + n + sizeof(tail) - 1 <= sizeof(in));
	memcpy(in, head, sizeof(head) - 1);
	memcpy(in + sizeof(head) - 1, body, n);
	if (c >= 0)
		in[sizeof(head) - 1 + pos] = (char)c;
	memcpy(in + sizeof(head) - 1 + n, tail, sizeof(tail) - 1);
	tc.in_len = sizeof(head) - 1 + n + sizeof(tail) - 1;
	t_run(&tc, 0, &whole);
	t_run(&tc, 1, &octets);
	/* feeds that end just after a CRLF, with the next octet unseen */
	t_run(&tc, 64 + (pos + n) % 5, &cut);
	cr_assert_str_eq(whole.out, octets.out, "conf %d, octet %d at %zu: replies",
			 (int)conf, c, pos);
	cr_assert_str_eq(whole.tx, octets.tx, "conf %d, octet %d at %zu: transactions",
			 (int)conf, c, pos);
	cr_assert_eq(whole.ev, octets.ev);
	cr_assert_str_eq(whole.why, octets.why);
	cr_assert_str_eq(cut.out, octets.out, "conf %d, octet %d at %zu: replies, cut",
			 (int)conf, c, pos);
	cr_assert_str_eq(cut.tx, octets.tx, "conf %d, octet %d at %zu: transactions, cut",
			 (int)conf, c, pos);
	cr_assert_eq(cut.ev, octets.ev);
	cr_assert_str_eq(cut.why, octets.why);
}

/* n octets of lines of len text octets and CRLF each. */
static size_t t_bulk_body(char *b, size_t n, size_t len)
{
	size_t i = 0;

	while (i + len + 2 <= n) {
		for (size_t k = 0; k < len; k++)
			b[i + k] = (char)('a' + (i + k) % 26);
		memcpy(b + i + len, "\r\n", 2);
		i += len + 2;
	}
	return i;
}

/* The DATA state machine takes the usual lines in bulk, 64 octets at a
 * time, when a feed holds that many (smtp_data_lines()); fed one octet at
 * a time, it never does. Every octet that changes what a line is (CR, LF,
 * NUL, a dot) and a TAB (a control the bulk scan must let through as
 * text), put at every place of several 64-octet windows, and lines on both
 * sides of line_max, must come out the same fed whole, octet by octet, and
 * in feeds of 64 to 68 octets, each in a heap block of its own (ASan). */
Test(smtp_server, data_bulk_same_as_octet_by_octet)
{
	static const int octets[] = { -1, '\r', '\n', '\0', '.', '\t' };
	static const size_t lens[] = { 0, 1, 5, 47, 48, 49, 63, 64 };
	char body[1200];

	/* T_SMALL, T_NORMALIZE: line_max 50, size_max 200 (over it: 552) */
	for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
		size_t n = t_bulk_body(body, 196, lens[l]);

		for (size_t pos = 0; pos < n; pos++)
			for (size_t o = 0; o < sizeof(octets) / sizeof(octets[0]); o++) {
				t_bulk_same(T_SMALL, body, n, pos, octets[o]);
				t_bulk_same(T_NORMALIZE, body, n, pos, octets[o]);
			}
	}
	/* A stuffed line (".b") right after a feed's last CRLF, for every
	 * place of that CRLF: the next feed's dot decides what it was. */
	for (size_t t = 0; t < 140; t++) {
		size_t n;

		memset(body, 'a', t);
		memcpy(body + t, "\r\n.b\r\n", 6);
		n = t + 6 + t_bulk_body(body + t + 6, 140, 9);
		t_bulk_same(T_BIG, body, n, 0, -1);
	}
	/* T_BIG: line_max 1000, lines of 996 to 999 octets with their CRLF
	 * and over; octets changed around the line ends only. */
	for (size_t len = 994; len <= 999; len++) {
		size_t n = t_bulk_body(body, sizeof(body), len);

		for (size_t pos = len - 70; pos < n && pos < len + 70; pos++)
			for (size_t o = 0; o < sizeof(octets) / sizeof(octets[0]); o++)
				t_bulk_same(T_BIG, body, n, pos, octets[o]);
	}
}
