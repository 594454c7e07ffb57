/* SPDX-License-Identifier: MIT */
/*
 * etrn_client: the customer's ETRN (RFC 1985) / ATRN (RFC 2645) session as a
 * pure state machine (see etrn_client.h for the contract). One allocation
 * per session: the struct, its results and its bounded reply-line buffer.
 * Replies are read by proto/smtp_reply.c; one table per state says what a
 * reply means there.
 */
#include "proto/etrn_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/log.h"
#include "proto/smtp_parse.h"
#include "proto/smtp_reply.h"

/* RFC 5321 4.5.3.1.4: a command line is at most 512 octets with its CRLF. */
#define ETRNC_CMD_MAX 512
/* A node: a domain, "@domain" or "#queue" (RFC 1985 3). */
#define ETRNC_NODE_MAX (SMTP_DOMAIN_MAX + 1)
/* RFC 4616 2: authcid and passwd are up to 255 octets each. */
#define ETRNC_CRED_MAX 255
/* "\0user\0pass" (RFC 4616 2, authzid empty) and its base64. */
#define ETRNC_PLAIN_MAX (2 + 2 * ETRNC_CRED_MAX)
#define ETRNC_B64_MAX (BASE64_ENCODED_LEN(ETRNC_PLAIN_MAX) + 1)
#define ETRNC_TAG_MAX 64     /* "ETRN example.com" in log lines */

enum etrn_client_state {
	ETRN_CLIENT_STATE_GREETING = 0, /* connected, waiting for 220 */
	ETRN_CLIENT_STATE_EHLO,         /* EHLO sent */
	ETRN_CLIENT_STATE_STARTTLS,     /* STARTTLS sent (RFC 3207) */
	ETRN_CLIENT_STATE_HANDSHAKE,    /* 220 to it: the caller runs TLS */
	ETRN_CLIENT_STATE_AUTH,         /* AUTH PLAIN <ir> or AUTH LOGIN sent */
	ETRN_CLIENT_STATE_AUTH_USER,    /* LOGIN: the user name sent */
	ETRN_CLIENT_STATE_AUTH_PASS,    /* LOGIN: the password sent */
	ETRN_CLIENT_STATE_ETRN,         /* ETRN replies outstanding */
	ETRN_CLIENT_STATE_ATRN,         /* ATRN sent */
	ETRN_CLIENT_STATE_QUIT,         /* QUIT sent */
	ETRN_CLIENT_STATE_REVERSED,     /* ATRN 250: the connection is the caller's */
	ETRN_CLIENT_STATE_CLOSED,
};

struct etrn_client {
	const struct etrn_client_conf *conf;
	enum etrn_client_state state;
	unsigned caps;                  /* SMTP_REPLY_CAP_* of the last EHLO */
	unsigned mechs;                 /* SMTP_REPLY_AUTH_* it offered */
	unsigned mech;                  /* the one in use */
	int tls_on, authed;
	unsigned nres;                  /* nreq for ETRN, 1 for ATRN */
	unsigned sent, acked;           /* ETRN commands sent, answered */
	struct etrn_client_reply res[ETRN_CLIENT_REQUESTS_MAX];
	struct etrn_client_reply why;
	int has_why;
	char tag[ETRNC_TAG_MAX];
	struct smtp_reply_reader rd;
	char line[];                    /* conf->reply_line_max: rd's buffer */
};

typedef enum etrn_client_event (*etrn_client_reply_fn)(struct etrn_client *c,
		struct buf *out);

static enum etrn_client_event etrn_client_on_greeting(struct etrn_client *c,
		struct buf *out);
static enum etrn_client_event etrn_client_on_ehlo(struct etrn_client *c, struct buf *out);
static enum etrn_client_event etrn_client_on_starttls(struct etrn_client *c,
		struct buf *out);
static enum etrn_client_event etrn_client_on_auth(struct etrn_client *c, struct buf *out);
static enum etrn_client_event etrn_client_on_etrn(struct etrn_client *c, struct buf *out);
static enum etrn_client_event etrn_client_on_atrn(struct etrn_client *c, struct buf *out);
static enum etrn_client_event etrn_client_on_unexpected(struct etrn_client *c,
		struct buf *out);

/* Per state: its name for logs, what is awaited ("lost connection while
 * ..."), and what a whole reply means there (QUIT: any reply ends it). */
static const struct {
	const char *name;
	const char *phase;
	etrn_client_reply_fn on_reply;
} etrn_client_states[] = {
	[ETRN_CLIENT_STATE_GREETING] = { "GREETING", "receiving the initial server greeting",
		etrn_client_on_greeting },
	[ETRN_CLIENT_STATE_EHLO] = { "EHLO", "sending EHLO", etrn_client_on_ehlo },
	[ETRN_CLIENT_STATE_STARTTLS] = { "STARTTLS", "sending STARTTLS",
		etrn_client_on_starttls },
	[ETRN_CLIENT_STATE_HANDSHAKE] = { "HANDSHAKE", "performing the TLS handshake",
		etrn_client_on_unexpected },
	[ETRN_CLIENT_STATE_AUTH] = { "AUTH", "sending AUTH", etrn_client_on_auth },
	[ETRN_CLIENT_STATE_AUTH_USER] = { "AUTH_USER", "sending the AUTH user name",
		etrn_client_on_auth },
	[ETRN_CLIENT_STATE_AUTH_PASS] = { "AUTH_PASS", "sending the AUTH password",
		etrn_client_on_auth },
	[ETRN_CLIENT_STATE_ETRN] = { "ETRN", "sending ETRN", etrn_client_on_etrn },
	[ETRN_CLIENT_STATE_ATRN] = { "ATRN", "sending ATRN", etrn_client_on_atrn },
	[ETRN_CLIENT_STATE_QUIT] = { "QUIT", "sending QUIT", NULL },
	[ETRN_CLIENT_STATE_REVERSED] = { "REVERSED", "reversed", NULL },
	[ETRN_CLIENT_STATE_CLOSED] = { "CLOSED", "closed", NULL },
};

static void etrn_client_enter_state(struct etrn_client *c, enum etrn_client_state s)
{
	log_debug("etrn client (%s): %s -> %s", c->tag, etrn_client_states[c->state].name,
			etrn_client_states[s].name);
	c->state = s;
}

/* A reply for the caller: text cut to fit, made NUL-terminated. */
static void etrn_client_keep(struct etrn_client_reply *r, int code, const char *enh,
		const char *text, size_t len, int local)
{
	if (len >= sizeof(r->text))
		len = sizeof(r->text) - 1;
	r->code = code;
	snprintf(r->enh, sizeof(r->enh), "%s", enh);
	memcpy(r->text, text, len);
	r->text[len] = '\0';
	r->local = local;
}

static void etrn_client_keep_reply(struct etrn_client_reply *r, const struct smtp_reply *rp)
{
	etrn_client_keep(r, rp->code, rp->enh, rp->text, rp->text_len, 0);
}

/* Why the session ends; the first reason is the one that matters. */
static void etrn_client_set_why(struct etrn_client *c, int code, const char *enh,
		const char *text, size_t len, int local)
{
	char logtext[LOG_TEXT_MAX];

	if (c->has_why)
		return;
	log_debug("etrn client (%s): session ends in %s: %d %s %s", c->tag,
			etrn_client_states[c->state].name, code, enh,
			log_printable(logtext, sizeof(logtext), text, len));
	etrn_client_keep(&c->why, code, enh, text, len, local);
	c->has_why = 1;
}

/* The session ends now, without QUIT (the server closes, or cannot be
 * read, or we cannot write): requests not answered keep code 0. */
static enum etrn_client_event etrn_client_fail(struct etrn_client *c, int code,
		const char *enh, const char *text, size_t len, int local)
{
	etrn_client_set_why(c, code, enh, text, len, local);
	smtp_reply_reset(&c->rd);
	etrn_client_enter_state(c, ETRN_CLIENT_STATE_CLOSED);
	return ETRN_CLIENT_EV_CLOSE;
}

/* Local failure "<what> while <phase>", 451 with enh. */
static enum etrn_client_event etrn_client_fail_local(struct etrn_client *c,
		const char *enh, const char *what)
{
	char text[ETRN_CLIENT_TEXT_MAX];
	int n;

	n = snprintf(text, sizeof(text), "%s while %s", what,
			etrn_client_states[c->state].phase);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(text))
		n = (int)sizeof(text) - 1;
	return etrn_client_fail(c, 451, enh, text, (size_t)n, 1);
}

/* RFC 3463 4.5.0: the server broke the protocol. */
static enum etrn_client_event etrn_client_protocol_error(struct etrn_client *c,
		const char *what)
{
	char text[ETRN_CLIENT_TEXT_MAX];

	snprintf(text, sizeof(text), "protocol error: %s", what);
	return etrn_client_fail_local(c, "4.5.0", text);
}

/* A step appended its command(s) to out from mark on; r is the buffer's
 * verdict. Output that cannot grow is our own resource problem (RFC 3463
 * 4.3.0): what the step appended is taken back, so out only ever holds
 * whole groups of commands. Else the session waits in next. */
static enum etrn_client_event etrn_client_sent(struct etrn_client *c, struct buf *out,
		size_t mark, int r, enum etrn_client_state next)
{
	if (r != 0) {
		out->len = mark;
		return etrn_client_fail_local(c, "4.3.0", "cannot queue command");
	}
	if (c->state != next)
		etrn_client_enter_state(c, next);
	return ETRN_CLIENT_EV_NEED_INPUT;
}

static enum etrn_client_event etrn_client_send(struct etrn_client *c, struct buf *out,
		const char *cmd, enum etrn_client_state next)
{
	size_t mark = out->len;

	return etrn_client_sent(c, out, mark, buf_puts(out, cmd), next);
}

static enum etrn_client_event etrn_client_quit(struct etrn_client *c, struct buf *out)
{
	return etrn_client_send(c, out, "QUIT\r\n", ETRN_CLIENT_STATE_QUIT);
}

/* The upstream refused the session (greeting, EHLO, AUTH): its reply is
 * the reason; say QUIT (RFC 5321 3.1, 4.1.1.10). */
static enum etrn_client_event etrn_client_refused(struct etrn_client *c, struct buf *out)
{
	const struct smtp_reply *rp = &c->rd.r;

	etrn_client_set_why(c, rp->code, rp->enh, rp->text, rp->text_len, 0);
	return etrn_client_quit(c, out);
}

/* Our policy (TLS, credentials) cannot be met: QUIT, local 451 enh text. */
static enum etrn_client_event etrn_client_policy_quit(struct etrn_client *c,
		struct buf *out, const char *enh, const char *text)
{
	log_info("etrn client (%s): %s", c->tag, text);
	etrn_client_set_why(c, 451, enh, text, strlen(text), 1);
	return etrn_client_quit(c, out);
}

static enum etrn_client_event etrn_client_send_ehlo(struct etrn_client *c,
		struct buf *out)
{
	size_t mark = out->len;

	return etrn_client_sent(c, out, mark, buf_printf(out, "EHLO %s\r\n",
			c->conf->helo_name), ETRN_CLIENT_STATE_EHLO);
}

/* ---- requests ------------------------------------------------------------ */

/* ETRN commands [c->sent, to). */
static enum etrn_client_event etrn_client_send_etrn(struct etrn_client *c,
		struct buf *out, unsigned to)
{
	size_t mark = out->len;
	int r = 0;

	for (; r == 0 && c->sent < to; c->sent++)
		r = buf_printf(out, "ETRN %s\r\n", c->conf->req[c->sent]);
	return etrn_client_sent(c, out, mark, r, ETRN_CLIENT_STATE_ETRN);
}

/* "ATRN" or "ATRN d1,d2" (RFC 2645 4: domains separated by commas). */
static enum etrn_client_event etrn_client_send_atrn(struct etrn_client *c,
		struct buf *out)
{
	size_t mark = out->len;
	unsigned i;
	int r = buf_puts(out, "ATRN");

	for (i = 0; r == 0 && i < c->conf->nreq; i++)
		r = buf_printf(out, "%c%s", i ? ',' : ' ', c->conf->req[i]);
	if (r == 0)
		r = buf_puts(out, "\r\n");
	return etrn_client_sent(c, out, mark, r, ETRN_CLIENT_STATE_ATRN);
}

/* Set-up done (and AUTH, when it was due): the requests. ETRN commands go
 * out all at once when the upstream offers PIPELINING (RFC 2920 3.1: ETRN
 * is not among the commands that must end a group), else one per reply. */
static enum etrn_client_event etrn_client_requests(struct etrn_client *c,
		struct buf *out)
{
	if (c->conf->method == ETRN_CLIENT_ATRN)
		return etrn_client_send_atrn(c, out);
	return etrn_client_send_etrn(c, out,
			c->caps & SMTP_REPLY_CAP_PIPELINING ? c->conf->nreq : 1);
}

/* The reply to ETRN number c->acked (replies come in order: RFC 2920 3.1). */
static enum etrn_client_event etrn_client_on_etrn(struct etrn_client *c, struct buf *out)
{
	etrn_client_keep_reply(&c->res[c->acked++], &c->rd.r);
	if (c->acked == c->conf->nreq)
		return etrn_client_quit(c, out);
	if (c->acked < c->sent)
		return ETRN_CLIENT_EV_NEED_INPUT; /* pipelined replies to come */
	return etrn_client_send_etrn(c, out, c->sent + 1);
}

/* RFC 2645 4: 250 turns the connection around; the bytes after the 250
 * line are the caller's (smtp_reply_feed() stopped there). */
static enum etrn_client_event etrn_client_on_atrn(struct etrn_client *c, struct buf *out)
{
	etrn_client_keep_reply(&c->res[0], &c->rd.r);
	if (!etrn_client_success(ETRN_CLIENT_ATRN, c->rd.r.code))
		return etrn_client_quit(c, out);
	etrn_client_enter_state(c, ETRN_CLIENT_STATE_REVERSED);
	return ETRN_CLIENT_EV_REVERSE;
}

/* ---- AUTH (RFC 4954) ------------------------------------------------------ */

/* Base64 of p[0..n) into b64 (ETRNC_B64_MAX). */
static void etrn_client_b64(char *b64, const void *p, size_t n)
{
	if (base64_encode(b64, ETRNC_B64_MAX, p, n) < 0)
		panic("etrn_client_b64: %zu octets", n); /* new() bounds them */
}

/* A line of base64 credentials to out; the copies on our stack are wiped. */
static enum etrn_client_event etrn_client_send_secret(struct etrn_client *c,
		struct buf *out, const char *verb, const void *p, size_t n,
		enum etrn_client_state next)
{
	char b64[ETRNC_B64_MAX];
	size_t mark = out->len;
	int r;

	etrn_client_b64(b64, p, n);
	r = buf_printf(out, "%s%s\r\n", verb, b64);
	explicit_bzero(b64, sizeof(b64));
	return etrn_client_sent(c, out, mark, r, next);
}

/* RFC 4954 4 with RFC 4616: "AUTH PLAIN base64(\0user\0pass)". */
static enum etrn_client_event etrn_client_auth_plain(struct etrn_client *c,
		struct buf *out)
{
	char plain[ETRNC_PLAIN_MAX];
	const char *pass = c->conf->pass ? c->conf->pass : "";
	size_t ul = strlen(c->conf->user), pl = strlen(pass);
	enum etrn_client_event ev;

	plain[0] = '\0';
	memcpy(plain + 1, c->conf->user, ul);
	plain[1 + ul] = '\0';
	memcpy(plain + 2 + ul, pass, pl);
	c->mech = SMTP_REPLY_AUTH_PLAIN;
	ev = etrn_client_send_secret(c, out, "AUTH PLAIN ", plain, 2 + ul + pl,
			ETRN_CLIENT_STATE_AUTH);
	explicit_bzero(plain, sizeof(plain));
	return ev;
}

/* After EHLO (and TLS): AUTH when we have credentials and the upstream
 * offers it, PLAIN first, LOGIN else; never in the clear unless allowed. */
static enum etrn_client_event etrn_client_auth_start(struct etrn_client *c,
		struct buf *out)
{
	const char *user = c->conf->user;

	if (user == NULL || user[0] == '\0' || !(c->caps & SMTP_REPLY_CAP_AUTH))
		return etrn_client_requests(c, out);
	if (!c->tls_on && !c->conf->auth_cleartext)
		return etrn_client_policy_quit(c, out, "4.7.0",
				"credentials not sent: no TLS (tls = none allows it)");
	if (c->mechs & SMTP_REPLY_AUTH_PLAIN)
		return etrn_client_auth_plain(c, out);
	if (c->mechs & SMTP_REPLY_AUTH_LOGIN) {
		c->mech = SMTP_REPLY_AUTH_LOGIN;
		return etrn_client_send(c, out, "AUTH LOGIN\r\n", ETRN_CLIENT_STATE_AUTH);
	}
	return etrn_client_policy_quit(c, out, "4.7.0",
			"credentials not sent: no AUTH mechanism we speak (PLAIN, LOGIN) offered");
}

/* Replies in AUTH, AUTH_USER and AUTH_PASS: 334 asks LOGIN for the next
 * step; 2xx (235) is success; anything else (535, 534, 454, 5xx) ends the
 * session with the upstream's words. */
static enum etrn_client_event etrn_client_on_auth(struct etrn_client *c, struct buf *out)
{
	const struct etrn_client_conf *cf = c->conf;
	int code = c->rd.r.code;

	if (code == 334 && c->mech == SMTP_REPLY_AUTH_LOGIN) {
		if (c->state == ETRN_CLIENT_STATE_AUTH)
			return etrn_client_send_secret(c, out, "", cf->user, strlen(cf->user),
					ETRN_CLIENT_STATE_AUTH_USER);
		if (c->state == ETRN_CLIENT_STATE_AUTH_USER)
			return etrn_client_send_secret(c, out, "", cf->pass ? cf->pass : "",
					cf->pass ? strlen(cf->pass) : 0,
					ETRN_CLIENT_STATE_AUTH_PASS);
	}
	if (code / 100 == 3)
		return etrn_client_protocol_error(c, "unexpected challenge to AUTH");
	if (code / 100 != 2)
		return etrn_client_refused(c, out);
	c->authed = 1;
	return etrn_client_requests(c, out);
}

/* ---- session set-up --------------------------------------------------------- */

static enum etrn_client_event etrn_client_on_greeting(struct etrn_client *c,
		struct buf *out)
{
	if (c->rd.r.code / 100 != 2)
		return etrn_client_refused(c, out); /* 554 and friends */
	return etrn_client_send_ehlo(c, out);
}

/* EHLO answered 2xx: STARTTLS first when the policy asks for it and TLS is
 * not up yet (RFC 3207 4), then AUTH, then the requests. */
static enum etrn_client_event etrn_client_on_ehlo(struct etrn_client *c, struct buf *out)
{
	if (c->rd.r.code / 100 != 2)
		return etrn_client_refused(c, out); /* no HELO: ETRN is ESMTP */
	c->caps = c->rd.r.caps;
	c->mechs = c->rd.r.auth;
	if (!c->tls_on && c->conf->tls != SMTP_CLIENT_TLS_NONE) {
		if (c->caps & SMTP_REPLY_CAP_STARTTLS)
			return etrn_client_send(c, out, "STARTTLS\r\n",
					ETRN_CLIENT_STATE_STARTTLS);
		if (c->conf->tls == SMTP_CLIENT_TLS_MUST)
			return etrn_client_policy_quit(c, out, "4.7.4",
					"TLS is required, but was not offered by host");
	}
	return etrn_client_auth_start(c, out);
}

/* RFC 3207 4: 220 hands over to the caller's handshake; anything else
 * means no TLS: may goes on in the clear with what EHLO offered, must
 * quits. */
static enum etrn_client_event etrn_client_on_starttls(struct etrn_client *c,
		struct buf *out)
{
	const struct smtp_reply *rp = &c->rd.r;
	char text[ETRN_CLIENT_TEXT_MAX];

	if (rp->code / 100 == 2) {
		etrn_client_enter_state(c, ETRN_CLIENT_STATE_HANDSHAKE);
		return ETRN_CLIENT_EV_STARTTLS;
	}
	if (c->conf->tls == SMTP_CLIENT_TLS_MUST) {
		snprintf(text, sizeof(text),
				"TLS is required, but host refused to start TLS: %d %s %.*s",
				rp->code, rp->enh, (int)rp->text_len, rp->text);
		return etrn_client_policy_quit(c, out, "4.7.4", text);
	}
	log_info("etrn client (%s): host refused to start TLS: %d; going on without TLS",
			c->tag, rp->code);
	return etrn_client_auth_start(c, out);
}

/* A reply where none is awaited (during the TLS handshake). */
static enum etrn_client_event etrn_client_on_unexpected(struct etrn_client *c,
		struct buf *out)
{
	(void)out;
	return etrn_client_protocol_error(c, "unexpected reply");
}

static enum etrn_client_event etrn_client_on_reply(struct etrn_client *c, struct buf *out)
{
	const struct smtp_reply *rp = &c->rd.r;

	if (log_enabled(LOGL_DEBUG)) {
		char logtext[LOG_TEXT_MAX];

		log_debug("etrn client (%s): < %d %s %s", c->tag, rp->code, rp->enh,
				log_printable(logtext, sizeof(logtext), rp->text, rp->text_len));
	}
	if (c->state == ETRN_CLIENT_STATE_QUIT) {
		etrn_client_enter_state(c, ETRN_CLIENT_STATE_CLOSED);
		return ETRN_CLIENT_EV_CLOSE;
	}
	/* RFC 5321 3.8: 421 may answer anything, or come unasked; the server
	 * closes after it. */
	if (rp->code == 421)
		return etrn_client_fail(c, rp->code, rp->enh, rp->text, rp->text_len, 0);
	if (etrn_client_states[c->state].on_reply == NULL)
		panic("etrn_client: reply in state %s", etrn_client_states[c->state].name);
	return etrn_client_states[c->state].on_reply(c, out);
}

/* ---- public --------------------------------------------------------------- */

/* A node or an EHLO name: 1..max printable octets without a space (it goes
 * on a command line as it is); ATRN's domains also without a comma. */
static int etrn_client_word_ok(const char *s, size_t max, int comma_ok)
{
	size_t i;

	if (s == NULL || s[0] == '\0')
		return 0;
	for (i = 0; s[i]; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (i >= max || ch <= 0x20 || ch >= 0x7f || (ch == ',' && !comma_ok))
			return 0;
	}
	return 1;
}

static int etrn_client_conf_ok(const struct etrn_client_conf *cf)
{
	size_t atrn_len = sizeof("ATRN\r\n") - 1;
	unsigned i;

	if (cf == NULL || !etrn_client_word_ok(cf->helo_name, SMTP_DOMAIN_MAX, 1) ||
			cf->reply_line_max < SMTP_CLIENT_LINE_MIN || cf->max_reply_lines == 0 ||
			cf->nreq > ETRN_CLIENT_REQUESTS_MAX ||
			(cf->method == ETRN_CLIENT_ETRN && cf->nreq == 0) ||
			(cf->method != ETRN_CLIENT_ETRN && cf->method != ETRN_CLIENT_ATRN) ||
			(cf->nreq > 0 && cf->req == NULL))
		return 0;
	if (cf->user && (strlen(cf->user) > ETRNC_CRED_MAX ||
			(cf->pass && strlen(cf->pass) > ETRNC_CRED_MAX)))
		return 0;
	for (i = 0; i < cf->nreq; i++) {
		if (!etrn_client_word_ok(cf->req[i], ETRNC_NODE_MAX,
				cf->method == ETRN_CLIENT_ETRN))
			return 0;
		atrn_len += 1 + strlen(cf->req[i]);
	}
	return cf->method == ETRN_CLIENT_ETRN || atrn_len <= ETRNC_CMD_MAX;
}

struct etrn_client *etrn_client_new(const struct etrn_client_conf *conf)
{
	struct etrn_client *c;

	if (!etrn_client_conf_ok(conf))
		return NULL;
	c = calloc(1, sizeof(*c) + conf->reply_line_max);
	if (c == NULL)
		return NULL;
	c->conf = conf;
	c->state = ETRN_CLIENT_STATE_GREETING;
	c->nres = conf->method == ETRN_CLIENT_ETRN ? conf->nreq : 1;
	snprintf(c->tag, sizeof(c->tag), "%s %s",
			conf->method == ETRN_CLIENT_ETRN ? "ETRN" : "ATRN",
			conf->nreq ? conf->req[0] : "*");
	smtp_reply_init(&c->rd, c->line, conf->reply_line_max, conf->max_reply_lines);
	return c;
}

struct etrn_client *etrn_client_free(struct etrn_client *c)
{
	free(c);
	return NULL;
}

size_t etrn_client_feed(struct etrn_client *c, const char *p, size_t n,
		struct buf *out, enum etrn_client_event *ev)
{
	size_t i = 0;

	if (c->state == ETRN_CLIENT_STATE_CLOSED || c->state == ETRN_CLIENT_STATE_REVERSED) {
		*ev = c->state == ETRN_CLIENT_STATE_CLOSED ? ETRN_CLIENT_EV_CLOSE :
			ETRN_CLIENT_EV_REVERSE;
		return 0;
	}
	if (n == 0) {
		if (c->state == ETRN_CLIENT_STATE_QUIT) {
			etrn_client_enter_state(c, ETRN_CLIENT_STATE_CLOSED);
			*ev = ETRN_CLIENT_EV_CLOSE;
			return 0;
		}
		*ev = etrn_client_fail_local(c, "4.4.2", "lost connection with server");
		return 0;
	}
	while (i < n) {
		enum smtp_reply_status st;

		i += smtp_reply_feed(&c->rd, p + i, n - i, &st);
		if (st == SMTP_REPLY_AGAIN)
			continue;
		*ev = st == SMTP_REPLY_DONE ? etrn_client_on_reply(c, out) :
			etrn_client_protocol_error(c, smtp_reply_error(st));
		if (*ev != ETRN_CLIENT_EV_NEED_INPUT)
			return i;
	}
	*ev = ETRN_CLIENT_EV_NEED_INPUT;
	return n;
}

int etrn_client_tls_up(struct etrn_client *c, struct buf *out)
{
	if (c->state != ETRN_CLIENT_STATE_HANDSHAKE)
		return -EBUSY;
	/* RFC 3207 4.2: forget what the server said before; EHLO again. */
	c->tls_on = 1;
	c->caps = c->mechs = 0;
	smtp_reply_reset(&c->rd);
	return etrn_client_send_ehlo(c, out) == ETRN_CLIENT_EV_CLOSE ? -ENOMEM : 0;
}

int etrn_client_tls_reject(struct etrn_client *c, struct buf *out, const char *why)
{
	if (c->state != ETRN_CLIENT_STATE_HANDSHAKE)
		return -EBUSY;
	return etrn_client_policy_quit(c, out, "4.7.5", why) == ETRN_CLIENT_EV_CLOSE ?
		-ENOMEM : 0;
}

unsigned etrn_client_timeout_ms(const struct etrn_client *c)
{
	return c->state == ETRN_CLIENT_STATE_CLOSED || c->state == ETRN_CLIENT_STATE_REVERSED ?
		0 : ETRN_CLIENT_TIMEOUT_MS;
}

enum etrn_client_event etrn_client_abort(struct etrn_client *c, const char *why)
{
	size_t len = strlen(why);
	unsigned i;

	if (c->state == ETRN_CLIENT_STATE_CLOSED || c->state == ETRN_CLIENT_STATE_REVERSED)
		return ETRN_CLIENT_EV_CLOSE;
	/* Only the 221 was due: what the session was for is decided already. */
	if (c->state == ETRN_CLIENT_STATE_QUIT) {
		etrn_client_enter_state(c, ETRN_CLIENT_STATE_CLOSED);
		return ETRN_CLIENT_EV_CLOSE;
	}
	for (i = 0; i < c->nres; i++)
		if (c->res[i].code == 0)
			etrn_client_keep(&c->res[i], 451, "4.4.2", why, len, 1);
	return etrn_client_fail(c, 451, "4.4.2", why, len, 1);
}

const struct etrn_client_reply *etrn_client_result(const struct etrn_client *c,
		unsigned i)
{
	return i < c->nres ? &c->res[i] : NULL;
}

unsigned etrn_client_nresults(const struct etrn_client *c)
{
	return c->nres;
}

const struct etrn_client_reply *etrn_client_close_reason(const struct etrn_client *c)
{
	return c->has_why ? &c->why : NULL;
}

int etrn_client_ok(const struct etrn_client *c)
{
	unsigned i;

	for (i = 0; i < c->nres; i++)
		if (!etrn_client_success(c->conf->method, c->res[i].code))
			return 0;
	return c->nres > 0;
}

int etrn_client_tls_on(const struct etrn_client *c)
{
	return c->tls_on;
}

int etrn_client_authed(const struct etrn_client *c)
{
	return c->authed;
}

/* RFC 1985 5 and RFC 2645 4, then RFC 5321 4.2.1's classes. */
const char *etrn_client_meaning(enum etrn_client_method m, int code)
{
	static const struct {
		enum etrn_client_method m;
		int code;
		const char *meaning;
	} known[] = {
		{ ETRN_CLIENT_ETRN, 250, "queuing started" },
		{ ETRN_CLIENT_ETRN, 251, "no messages waiting" },
		{ ETRN_CLIENT_ETRN, 252, "pending messages started" },
		{ ETRN_CLIENT_ETRN, 253, "pending messages started, with their count" },
		{ ETRN_CLIENT_ETRN, 458, "unable to queue messages" },
		{ ETRN_CLIENT_ETRN, 459, "node not allowed" },
		{ ETRN_CLIENT_ETRN, 500, "syntax error" },
		{ ETRN_CLIENT_ETRN, 501, "syntax error in parameters" },
		{ ETRN_CLIENT_ETRN, 530, "authentication required" },
		{ ETRN_CLIENT_ATRN, 250, "reversing the connection" },
		{ ETRN_CLIENT_ATRN, 450, "access denied to the domain" },
		{ ETRN_CLIENT_ATRN, 451, "unable to process ATRN now" },
		{ ETRN_CLIENT_ATRN, 453, "no mail waiting" },
		{ ETRN_CLIENT_ATRN, 502, "ATRN not supported" },
		{ ETRN_CLIENT_ATRN, 530, "authentication required" },
	};
	size_t i;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (known[i].m == m && known[i].code == code)
			return known[i].meaning;
	if (code == 421)
		return "service not available";
	switch (code / 100) {
	case 2: return "success";
	case 4: return "temporary failure";
	case 5: return "permanent failure";
	default: return code == 0 ? "no reply" : "unexpected reply";
	}
}

int etrn_client_success(enum etrn_client_method m, int code)
{
	if (m == ETRN_CLIENT_ATRN)
		return code == 250;
	return code >= 250 && code <= 253;
}
