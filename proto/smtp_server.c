/* SPDX-License-Identifier: MIT */
/*
 * smtp_server: the RFC 5321 server session as a pure state machine (see
 * smtp_server.h for the contract). One allocation per session: the struct
 * and its bounded command-line buffer. The transaction's envelope and body
 * live in capped buffers that are reused from message to message. STARTTLS
 * and AUTH are states of the same machine; the SASL exchange itself is
 * proto/smtp_auth.c's.
 */
#include "proto/smtp_server.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/ascii.h"
#include "core/budget.h"
#include "core/datefmt.h"
#include "core/linereader.h"
#include "core/log.h"
#include "core/metrics.h"
#include "proto/atrn.h"
#include "proto/etrn.h"
#include "proto/smtp_auth.h"
#include "proto/smtp_parse.h"

#define SMTP_HELO_MAX 64        /* HELO text kept for Received: (sanitized) */
#define SMTP_CLIENT_MAX 64      /* client address text; INET6_ADDRSTRLEN is 46 */
#define SMTP_REPLY_MAX 512      /* reply line incl. CRLF; RFC 5321 4.5.3.1.5 */
#define SMTP_RECEIVED_ROOM 1024 /* Received: header, not counting our hostname */
#define SMTP_DATE_MAX 64        /* "Tue, 24 Nov 2026 00:38:41 +0000 (UTC)" */
/* TLS version and cipher names kept for Received: ("TLSv1.3",
 * "TLS_AES_256_GCM_SHA384"; OpenSSL's longest are under 50). With the
 * Authenticated sender: comment (AUTH_USER_MAX) they add under 200 octets
 * to a header whose other parts take under 560, inside
 * SMTP_RECEIVED_ROOM. */
#define SMTP_TLS_TEXT_MAX 64
/* After an unusually large message, give memory back so one big body does
 * not stay pinned for the rest of the session. */
#define SMTP_BODY_SHRINK_OVER (1024u * 1024u)
#define SMTP_BODY_KEEP (64u * 1024u)
#define SMTP_ENV_SHRINK_OVER (64u * 1024u)
#define SMTP_ENV_KEEP (4u * 1024u)
/* DATA takes the node-wide memory budget in steps of this many bytes, so
 * the shared counter is touched once per step, not once per feed. */
#define SMTP_BUDGET_STEP (64u * 1024u)

enum smtp_state {
	SMTP_STATE_INIT = 0, /* connected, no HELO/EHLO yet */
	SMTP_STATE_READY,    /* greeted, no transaction */
	SMTP_STATE_MAIL,     /* MAIL accepted, no recipient yet */
	SMTP_STATE_RCPT,     /* at least one recipient */
	SMTP_STATE_DATA,     /* reading the message */
	SMTP_STATE_COMMIT,   /* message complete, waiting for commit_done */
	SMTP_STATE_CLOSED,   /* final reply written; nothing more is read */
	SMTP_STATE_TLS,      /* 220 to STARTTLS sent, waiting for tls_up */
	SMTP_STATE_AUTH,     /* 334 sent, reading the client's response line */
	SMTP_STATE_AUTH_CHECK, /* credentials handed over, waiting for auth_done */
	SMTP_STATE_ATRN,     /* ATRN handed over, waiting for atrn_done */
	SMTP_STATE_CHECK,    /* a policy check is out, waiting for check_done */
};

static const char *const smtp_state_names[] = {
	"INIT", "READY", "MAIL", "RCPT", "DATA", "COMMIT", "CLOSED", "TLS", "AUTH",
	"AUTH_CHECK", "ATRN", "CHECK",
};

/* Where the DATA reader stands inside the current line. */
enum smtp_data_state {
	SMTP_DATA_BOL = 0, /* at the start of a line */
	SMTP_DATA_DOT,     /* line began with "." */
	SMTP_DATA_DOT_CR,  /* line is ".\r" so far */
	SMTP_DATA_TEXT,    /* inside a line */
	SMTP_DATA_CR,      /* inside a line, just after CR */
};

/* Reasons to refuse a message after its final dot; several may be set, the
 * reply is chosen by priority (lowest bit first) so the outcome does not
 * depend on how the input was split into feeds. */
#define SMTP_DERR_BARE 0x01u  /* bare CR or LF (smuggling defence) */
#define SMTP_DERR_NUL 0x02u   /* NUL byte */
#define SMTP_DERR_LONG 0x04u  /* text line over line_max */
#define SMTP_DERR_SIZE 0x08u  /* over size_max */
#define SMTP_DERR_NOMEM 0x10u /* body buffer could not grow */

/* What policy checks decided about a message (tx->chk) or, at connect
 * and HELO, about every message of the session (s->chk). */
#define SMTP_CHK_DISCARD 0x1u
#define SMTP_CHK_HOLD 0x2u
#define SMTP_CHK_CONNECT_DONE 0x4u /* s->chk: the connect check has answered */

/* One recipient inside tx->env. Paths are at most SMTP_PATH_MAX octets, so
 * 16 bits hold their lengths. */
struct smtp_rcpt_ref {
	uint32_t off;
	uint16_t len;
	uint16_t dom;
};

struct smtp_tx {
	uint64_t msgid;
	char qid[SMTP_QID_MAX];
	unsigned flags;    /* SMTP_TX_* */
	unsigned chk;      /* SMTP_CHK_*: policy verdicts for this message */
	unsigned nrcpt;
	size_t sender_len; /* the sender is env.data[0 .. sender_len) */
	struct buf env;    /* sender, then recipients, back to back */
	struct buf rcpts;  /* struct smtp_rcpt_ref[nrcpt] */
	struct buf body;   /* Received: + message, dot-stuffed, CRLF */
	struct budget *budget; /* node-wide DATA memory (conf), NULL = none */
	size_t budget_held;    /* bytes of it this transaction holds */
	/* DATA reader */
	enum smtp_data_state dstate;
	unsigned derr;     /* SMTP_DERR_* */
	int prev_crlf;     /* last line ended with a real CRLF (or DATA began) */
	size_t line_len;   /* octets of the current line, without CRLF and stuffing dot */
	size_t size;       /* message size so far: unstuffed, CRLF line ends */
};

struct smtp_cmd;
struct smtp_cmd_ctx;

struct smtp_session {
	const struct smtp_server_conf *conf;
	enum smtp_state state;
	unsigned errors;     /* against limits.max_errors */
	int esmtp;           /* EHLO (1) or HELO (0) */
	int out_failed;      /* a reply could not be appended: close */
	int trusted;         /* listen_trusted: AUTH without TLS */
	int odmr;            /* odmr_listen: ATRN, no mail transactions */
	int submission;      /* submission_listen: MAIL needs AUTH first */
	int cluster;         /* cluster_listen: node AUTH, then MAIL and ATRN */
	int relay_net;       /* the client's address may relay (mynetworks) */
	int refused;         /* greeted 554 by a policy check (RFC 5321 3.1):
	                        only QUIT is served, anything else 503 */
	int reversed;        /* ATRN's reversed session, customer side: no
	                        STARTTLS, AUTH, ETRN or ATRN (RFC 2645 4) */
	const char *end_why; /* why it reached CLOSED (a literal), NULL before */
	const char *atrn;    /* SMTP_STATE_ATRN: the domain list (in the line) */
	size_t atrn_len;
	int tls;             /* the handshake is done; tls_* below are set */
	int tls_bits;
	struct linereader lr; /* command lines, into line[] */
	char client_addr[SMTP_CLIENT_MAX];
	char helo[SMTP_HELO_MAX + 1];
	char tls_version[SMTP_TLS_TEXT_MAX];
	char tls_cipher[SMTP_TLS_TEXT_MAX];
	char user[AUTH_USER_MAX + 1]; /* authenticated user, "" = none */
	struct smtp_auth auth;        /* the AUTH exchange in progress */
	struct smtp_tx tx;
	unsigned chk;        /* SMTP_CHK_* from connect/HELO checks */
	/* SMTP_STATE_CHECK: the stage awaited, the state to go back to on
	 * a refusal, and the command to proceed with on continue (ctx and
	 * the HELO text copied: the line is gone by then). */
	enum smtp_check_stage check_stage;
	enum smtp_state check_prev;
	const struct smtp_cmd *check_cmd;
	struct smtp_cmd_ctx *check_ctx; /* allocated with the first check */
	char check_text[SMTP_CHECK_HELO_MAX + 1];
	size_t line_cap;     /* octets of line[] */
	char line[];         /* max(command_max, SMTP_AUTH_LINE_MAX), lr's buffer */
};

/* A parsed command, handed from check to proceed. */
struct smtp_cmd_ctx {
	const char *arg; /* text after the verb, trimmed, not NUL-terminated */
	size_t arg_len;
	struct smtp_path path;
	unsigned tx_flags;
};

/* check: validate, write the error reply, return one of these. */
#define SMTP_CHECK_OK 0
#define SMTP_CHECK_FAIL (-1)   /* refused; counts against the error budget */
#define SMTP_CHECK_REFUSE (-2) /* refused, but not the client's fault */

#define SMTP_CMDF_JUNK 0x1u  /* always counts against the error budget */
#define SMTP_CMDF_CLOSE 0x2u /* HTTP/proxy smuggling: 221 and close */
#define SMTP_CMDF_NOT_ODMR 0x4u /* mail and queue commands: 502 on ODMR (RFC 2645) */
#define SMTP_CMDF_NOT_REVERSED 0x8u /* session commands: 502 in a reversed session */

struct smtp_cmd {
	const char *name;
	int (*check)(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out);
	void (*proceed)(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out);
	unsigned flags;
	enum smtp_check_stage stage; /* policy check before proceed, or NONE */
};

static void smtp_enter_state(struct smtp_session *s, enum smtp_state new_state)
{
	log_debug("smtp %s: %s -> %s", s->client_addr,
			smtp_state_names[s->state], smtp_state_names[new_state]);
	s->state = new_state;
}

/* The session ends: CLOSED, and why (the first reason stays). */
static void smtp_close(struct smtp_session *s, const char *why)
{
	if (s->state == SMTP_STATE_CLOSED)
		return;
	s->end_why = why;
	smtp_enter_state(s, SMTP_STATE_CLOSED);
}

/* A reply did not fit the caller's buffer (its output cap: a peer
 * pipelining without reading): the session closes rather than silently
 * skipping a reply. */
static void smtp_out_full(struct smtp_session *s)
{
	if (s && !s->out_failed)
		log_warn("smtp %s: reply buffer full, closing", s->client_addr);
	if (s)
		s->out_failed = 1;
}

/* One piece of text for smtp_cat(). */
struct smtp_piece {
	const char *p;
	size_t n;
};

#define SMTP_LIT(s) { (s), sizeof(s) - 1 }
#define SMTP_STR(s) { (s), strlen(s) }

/* Copy the pieces to b, which has room for them (buf_reserve). */
static void smtp_put(struct buf *b, const struct smtp_piece *pc, size_t npc)
{
	size_t i;

	for (i = 0; i < npc; i++) {
		if (pc[i].n == 0)
			continue; /* memcpy from NULL is undefined even for 0 */
		memcpy(b->data + b->len, pc[i].p, pc[i].n);
		b->len += pc[i].n;
	}
}

/* Append the pieces as one: room for all is made first, so an error (the
 * cap, memory) adds nothing. No printf on the ingest path. */
static int smtp_cat(struct buf *b, const struct smtp_piece *pc, size_t npc)
{
	size_t total = 0, i;
	int r;

	for (i = 0; i < npc; i++)
		total += pc[i].n;
	r = buf_reserve(b, total);
	if (r != 0)
		return r;
	smtp_put(b, pc, npc);
	return 0;
}

/* Append one reply line made of pieces, CRLF added; smtp_out_full() when
 * it cannot be. A reply longer than a reply line is our own bug. */
static void smtp_reply_put(struct smtp_session *s, struct buf *out,
		const struct smtp_piece *pc, size_t npc)
{
	const struct smtp_piece crlf = SMTP_LIT("\r\n");
	size_t len = 0, i;
	const char *t = pc[0].p;

	for (i = 0; i < npc; i++)
		len += pc[i].n;
	if (len > SMTP_REPLY_MAX - 2 || pc[0].n < 4)
		panic("reply too long or too short: %.40s", t);
	/* A final line ("250 ", not "250-") is one reply: counted by class. */
	if (t[3] == ' ')
		metrics_reply((t[0] - '0') * 100 + (t[1] - '0') * 10 + (t[2] - '0'));
	/* Room for the whole line first: never half a reply in out. */
	if (buf_reserve(out, len + crlf.n) != 0) {
		smtp_out_full(s);
		return;
	}
	smtp_put(out, pc, npc);
	smtp_put(out, &crlf, 1);
}

/* A fixed reply ("250 2.1.5 Ok"), copied as it is: the hot path's replies
 * need no formatting. */
#define smtp_reply_lit(s, out, lit) \
	smtp_reply_put((s), (out), (const struct smtp_piece[]){ SMTP_LIT(lit) }, 1)

/* Append one formatted reply line (CRLF added); smtp_out_full() when it
 * cannot be. */
__attribute__((format(printf, 3, 4)))
static void smtp_reply(struct smtp_session *s, struct buf *out, const char *fmt, ...)
{
	char line[SMTP_REPLY_MAX];
	struct smtp_piece pc;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		panic("reply too long: %.40s", fmt);
	pc.p = line;
	pc.n = (size_t)n;
	smtp_reply_put(s, out, &pc, 1);
}

/* ---- policy checks (proto/smtp_check.h) ------------------------------ */

/* Wait for the verdict on stage; cmd and c (NULL for connect and end of
 * data) are what to proceed with on continue. */
static void smtp_check_enter(struct smtp_session *s, enum smtp_check_stage stage,
		const struct smtp_cmd *cmd, const struct smtp_cmd_ctx *c)
{
	s->check_stage = stage;
	s->check_prev = s->state;
	s->check_cmd = cmd;
	s->check_text[0] = '\0';
	if (c) {
		*s->check_ctx = *c;
		if (stage == SMTP_CHECK_HELO) {
			size_t i, n = c->arg_len > SMTP_CHECK_HELO_MAX ? SMTP_CHECK_HELO_MAX : c->arg_len;

			for (i = 0; i < n; i++) {
				unsigned char ch = (unsigned char)c->arg[i];

				s->check_text[i] = ch > 0x20 && ch < 0x7f ? (char)ch : '?';
			}
			s->check_text[n] = '\0';
			s->check_ctx->arg = s->check_text;
			s->check_ctx->arg_len = n;
		} else {
			s->check_ctx->arg = NULL;
			s->check_ctx->arg_len = 0;
		}
	}
	smtp_enter_state(s, SMTP_STATE_CHECK);
}

/* A command passed its own checks: hand it to the policy checks. */
static void smtp_check_begin(struct smtp_session *s, const struct smtp_cmd *cmd,
		const struct smtp_cmd_ctx *c, struct buf *out)
{
	if (!s->check_ctx && !(s->check_ctx = malloc(sizeof(*s->check_ctx)))) {
		smtp_reply(s, out, "451 4.3.0 Error: out of memory, try again later");
		return;
	}
	smtp_check_enter(s, cmd->stage, cmd, c);
}

/* Is text (a checker's reply) usable for a verdict whose code class is
 * cls ('4' or '5')? Lines "ddd-..." and a last "ddd ...", one code,
 * printable ASCII, each a reply line (RFC 5321 4.5.3.1.5). */
static int smtp_check_reply_ok(const char *t, size_t n, char cls)
{
	size_t i = 0;

	if (n == 0 || t[0] != cls)
		return 0;
	while (i < n) {
		const char *crlf = memmem(t + i, n - i, "\r\n", 2);
		size_t end = crlf ? (size_t)(crlf - t) : n, k;

		if (end - i < 4 || end - i > SMTP_REPLY_MAX - 2 || memcmp(t + i, t, 3) != 0 ||
		    t[i + 3] != (crlf ? '-' : ' '))
			return 0;
		for (k = i; k < end; k++)
			if ((unsigned char)t[k] < 0x20 || (unsigned char)t[k] > 0x7e)
				return 0;
		if (k < i + 3 || t[i + 1] < '0' || t[i + 1] > '9' || t[i + 2] < '0' || t[i + 2] > '9')
			return 0;
		i = crlf ? end + 2 : n;
		if (crlf && i == n)
			return 0; /* a trailing CRLF: no last line */
	}
	return 1;
}

/* The refusal's reply: the checker's when it is good, else ours. */
static void smtp_check_refuse_reply(struct smtp_session *s, const struct smtp_verdict *v,
		struct buf *out)
{
	int temp = v->kind == SMTP_VERDICT_TEMPFAIL;
	size_t i = 0;

	if (v->reply && smtp_check_reply_ok(v->reply, v->reply_len, temp ? '4' : '5')) {
		while (i < v->reply_len) {
			const char *crlf = memmem(v->reply + i, v->reply_len - i, "\r\n", 2);
			size_t end = crlf ? (size_t)(crlf - v->reply) : v->reply_len;
			struct smtp_piece pc = { v->reply + i, end - i };

			smtp_reply_put(s, out, &pc, 1);
			i = crlf ? end + 2 : end;
		}
		return;
	}
	if (s->check_stage == SMTP_CHECK_CONNECT)
		smtp_reply(s, out, temp ? "421 4.7.1 %s Service unavailable - try again later" :
			   "554 5.7.1 %s Error: access denied", s->conf->hostname);
	else if (temp)
		smtp_reply_lit(s, out, "451 4.7.1 Service unavailable - try again later");
	else
		smtp_reply_lit(s, out, "550 5.7.1 Command rejected");
}

/* ---- transaction ------------------------------------------------------ */

/* Give the transaction's share of the DATA memory budget back. */
static void smtp_data_unbudget(struct smtp_tx *tx)
{
	if (tx->budget_held)
		budget_give(tx->budget, tx->budget_held);
	tx->budget_held = 0;
}

static void smtp_tx_drop(struct smtp_tx *tx)
{
	smtp_data_unbudget(tx);
	tx->msgid = 0;
	tx->qid[0] = '\0';
	tx->flags = 0;
	tx->chk = 0;
	tx->nrcpt = 0;
	tx->sender_len = 0;
	tx->derr = 0;
	tx->size = 0;
	buf_reset(&tx->env);
	buf_reset(&tx->rcpts);
	buf_reset(&tx->body);
	if (tx->body.cap > SMTP_BODY_SHRINK_OVER)
		buf_shrink(&tx->body, SMTP_BODY_KEEP);
	if (tx->env.cap > SMTP_ENV_SHRINK_OVER)
		buf_shrink(&tx->env, SMTP_ENV_KEEP);
	if (tx->rcpts.cap > SMTP_ENV_SHRINK_OVER)
		buf_shrink(&tx->rcpts, SMTP_ENV_KEEP);
}

static void smtp_count_error(struct smtp_session *s)
{
	s->errors++;
}

/* Postfix smtpd_hard_error_limit: after the reply that used up the budget,
 * 421 and close at once. */
static void smtp_check_budget(struct smtp_session *s, struct buf *out)
{
	unsigned max = s->conf->limits.max_errors;

	if (max == 0 || s->errors < max || s->state == SMTP_STATE_CLOSED)
		return;
	log_info("smtp %s: too many errors (%u), disconnecting", s->client_addr, s->errors);
	smtp_reply(s, out, "421 4.7.0 %s Error: too many errors", s->conf->hostname);
	smtp_close(s, "too many errors");
}

/* ---- commands --------------------------------------------------------- */

static int smtp_check_helo(struct smtp_session *s, struct smtp_cmd_ctx *c,
		struct buf *out, const char *verb)
{
	if (c->arg_len == 0) {
		smtp_reply(s, out, "501 5.5.4 Syntax: %s hostname", verb);
		return SMTP_CHECK_FAIL;
	}
	return SMTP_CHECK_OK;
}

static int smtp_check_ehlo(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	return smtp_check_helo(s, c, out, "EHLO");
}

static int smtp_check_helo_cmd(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	return smtp_check_helo(s, c, out, "HELO");
}

/* Keep the HELO text for Received: printable ASCII only (anything else
 * becomes '?', as Postfix's printable() does) and at most SMTP_HELO_MAX. */
static void smtp_set_helo(struct smtp_session *s, const char *p, size_t n, int esmtp)
{
	size_t i;

	if (n > SMTP_HELO_MAX)
		n = SMTP_HELO_MAX;
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];

		s->helo[i] = ch > 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	s->helo[n] = '\0';
	s->esmtp = esmtp;
	smtp_tx_drop(&s->tx); /* RFC 5321 4.1.4: EHLO/HELO resets the transaction */
	smtp_enter_state(s, SMTP_STATE_READY);
}

/* What EHLO offers. A reversed session (the upstream's side of our ATRN,
 * RFC 2645 4) offers none of STARTTLS, AUTH, ETRN and ATRN: the
 * connection is already as secure as it will get, the upstream has
 * nothing to authenticate for, and it may only hand us mail. */

/* STARTTLS: with a server context, until TLS is up. */
static int smtp_starttls_offered(const struct smtp_session *s)
{
	return s->conf->starttls && !s->tls && !s->reversed;
}

/* AUTH (RFC 4954 4: PLAIN and LOGIN send the password as it is, so only
 * inside TLS, or where the operator said the network is trusted). */
static int smtp_auth_offered(const struct smtp_session *s)
{
	return (s->conf->auth || s->cluster) && (s->tls || s->trusted) && !s->reversed;
}

static int smtp_etrn_offered(const struct smtp_session *s)
{
	return s->conf->etrn && !s->reversed;
}

/* ATRN is answered here (RFC 2645): on an ODMR listener, or everywhere
 * with smtp_atrn. */
static int smtp_atrn_offered(const struct smtp_session *s)
{
	return (s->odmr || s->cluster || s->conf->atrn) && !s->reversed;
}

/* RFC 2645 5.1.1: the ODMR EHLO names AUTH and ATRN. Nothing about mail
 * transactions (SIZE, 8BITMIME, SMTPUTF8), which this port does not take,
 * and no PIPELINING: ATRN turns the connection around, so nothing may
 * follow it in the same flight. */
static void smtp_ehlo_odmr(struct smtp_session *s, struct buf *out)
{
	smtp_reply(s, out, "250-%s", s->conf->hostname);
	smtp_reply(s, out, "250-ENHANCEDSTATUSCODES");
	if (smtp_starttls_offered(s))
		smtp_reply(s, out, "250-STARTTLS");
	if (smtp_auth_offered(s))
		smtp_reply(s, out, "250-AUTH " SMTP_AUTH_OFFER);
	smtp_reply(s, out, "250 ATRN");
}

static void smtp_proceed_ehlo(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	smtp_set_helo(s, c->arg, c->arg_len, 1);
	if (s->odmr) {
		smtp_ehlo_odmr(s, out);
		return;
	}
	/* Extensions: adding one is one line here. */
	smtp_reply(s, out, "250-%s", s->conf->hostname);
	smtp_reply(s, out, "250-PIPELINING");
	smtp_reply(s, out, "250-SIZE %zu", s->conf->limits.size_max);
	smtp_reply(s, out, "250-8BITMIME");
	smtp_reply(s, out, "250-ENHANCEDSTATUSCODES");
	if (smtp_starttls_offered(s))
		smtp_reply(s, out, "250-STARTTLS");
	if (smtp_auth_offered(s))
		smtp_reply(s, out, "250-AUTH " SMTP_AUTH_OFFER);
	if (smtp_etrn_offered(s))
		smtp_reply(s, out, "250-ETRN");
	if (smtp_atrn_offered(s))
		smtp_reply(s, out, "250-ATRN");
	smtp_reply(s, out, "250 SMTPUTF8");
}

static void smtp_proceed_helo(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	smtp_set_helo(s, c->arg, c->arg_len, 0);
	smtp_reply(s, out, "250 %s", s->conf->hostname);
}

/* Parse MAIL parameters (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8). */
static int smtp_mail_params(struct smtp_session *s, struct smtp_cmd_ctx *c,
		size_t off, struct buf *out)
{
	struct smtp_param p;
	int r;

	while ((r = smtp_parse_param(c->arg, c->arg_len, &off, &p)) == 1) {
		if (smtp_parse_token_eq(p.key, p.key_len, "SIZE") && p.val) {
			size_t i, size = 0;
			int big = 0;

			for (i = 0; i < p.val_len; i++) {
				unsigned d = (unsigned char)p.val[i] - '0';

				if (d > 9) {
					smtp_reply(s, out, "501 5.5.4 Bad SIZE parameter value");
					return SMTP_CHECK_FAIL;
				}
				if (size > (SIZE_MAX - d) / 10)
					big = 1;
				else
					size = size * 10 + d;
			}
			if (big || size > s->conf->limits.size_max) {
				smtp_reply(s, out, "552 5.3.4 Message size exceeds fixed limit");
				return SMTP_CHECK_FAIL;
			}
		} else if (smtp_parse_token_eq(p.key, p.key_len, "BODY") && p.val) {
			if (smtp_parse_token_eq(p.val, p.val_len, "8BITMIME")) {
				c->tx_flags |= SMTP_TX_8BITMIME;
			} else if (smtp_parse_token_eq(p.val, p.val_len, "7BIT")) {
				c->tx_flags &= ~SMTP_TX_8BITMIME;
			} else {
				smtp_reply(s, out, "501 5.5.4 Bad BODY parameter value");
				return SMTP_CHECK_FAIL;
			}
		} else if (smtp_parse_token_eq(p.key, p.key_len, "SMTPUTF8") && !p.val) {
			c->tx_flags |= SMTP_TX_SMTPUTF8;
		} else {
			smtp_reply(s, out, "555 5.5.4 Unsupported option");
			return SMTP_CHECK_FAIL;
		}
	}
	if (r < 0) {
		smtp_reply(s, out, "501 5.5.4 Syntax error in parameters");
		return SMTP_CHECK_FAIL;
	}
	return SMTP_CHECK_OK;
}

static int smtp_check_mail(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	size_t off;
	int r;

	if (s->state == SMTP_STATE_INIT) {
		smtp_reply(s, out, "503 5.5.1 Error: send HELO/EHLO first");
		return SMTP_CHECK_FAIL;
	}
	if (s->state != SMTP_STATE_READY) {
		smtp_reply(s, out, "503 5.5.1 Error: nested MAIL command");
		return SMTP_CHECK_FAIL;
	}
	/* RFC 6409 4.1 and RFC 4954 6: the submission port takes mail from
	 * authenticated users only, whatever the client's address; the
	 * cluster listener from authenticated nodes only. */
	if ((s->submission || s->cluster) && !s->user[0]) {
		smtp_reply(s, out, "530 5.7.0 Authentication required");
		return SMTP_CHECK_FAIL;
	}
	r = smtp_parse_path_arg(c->arg, c->arg_len, "FROM:", &c->path, &off);
	switch (r) {
	case SMTP_PARSE_OK:
		break;
	case SMTP_PARSE_KEYWORD:
		smtp_reply(s, out, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return SMTP_CHECK_FAIL;
	case SMTP_PARSE_TOO_LONG: /* RFC 5321 4.5.3.1.10: "501 Path too long" */
		smtp_reply(s, out, "501 5.1.7 Error: path too long");
		return SMTP_CHECK_FAIL;
	default:
		smtp_reply(s, out, "501 5.1.7 Bad sender address syntax");
		return SMTP_CHECK_FAIL;
	}
	if (c->path.flags & SMTP_PATH_NO_DOMAIN) {
		smtp_reply(s, out, "501 5.1.7 Bad sender address syntax");
		return SMTP_CHECK_FAIL;
	}
	return smtp_mail_params(s, c, off, out);
}

static void smtp_proceed_mail(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	struct smtp_tx *tx = &s->tx;

	smtp_tx_drop(tx);
	if (buf_append(&tx->env, c->path.addr, c->path.len) != 0) {
		smtp_reply(s, out, "452 4.3.1 Insufficient system storage");
		return;
	}
	tx->sender_len = c->path.len;
	tx->flags = c->tx_flags;
	smtp_enter_state(s, SMTP_STATE_MAIL);
	smtp_reply_lit(s, out, "250 2.1.0 Ok");
}

/* RCPT's path and parameters: the syntax replies. */
static int smtp_rcpt_syntax(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	struct smtp_path *path = &c->path;
	size_t off;

	switch (smtp_parse_path_arg(c->arg, c->arg_len, "TO:", path, &off)) {
	case SMTP_PARSE_OK:
		break;
	case SMTP_PARSE_KEYWORD:
		smtp_reply(s, out, "501 5.5.4 Syntax: RCPT TO:<address>");
		return SMTP_CHECK_FAIL;
	case SMTP_PARSE_TOO_LONG: /* RFC 5321 4.5.3.1.10: "501 Path too long" */
		smtp_reply(s, out, "501 5.1.3 Error: path too long");
		return SMTP_CHECK_FAIL;
	default:
		smtp_reply(s, out, "501 5.1.3 Bad recipient address syntax");
		return SMTP_CHECK_FAIL;
	}
	if (off < c->arg_len) {
		struct smtp_param p;

		/* No RCPT parameters are advertised (no DSN). */
		if (smtp_parse_param(c->arg, c->arg_len, &off, &p) < 0) {
			smtp_reply(s, out, "501 5.5.4 Syntax error in parameters");
			return SMTP_CHECK_FAIL;
		}
		smtp_reply(s, out, "555 5.5.4 Unsupported option");
		return SMTP_CHECK_FAIL;
	}
	return SMTP_CHECK_OK;
}

/* RFC 5321 4.5.1: "postmaster" (any case) with no domain, or at our own
 * hostname, the one domain we provide mail service for ourselves. At a
 * customer domain it is that customer's mail: relayed like any other
 * address there (as Postfix does for relay_domains). Path normalized. */
static int smtp_rcpt_is_postmaster(const struct smtp_session *s, const struct smtp_path *path)
{
	static const char pm[] = "postmaster";
	size_t ll = path->domain_off, hl = strlen(s->conf->hostname);

	if (path->flags & SMTP_PATH_NO_DOMAIN)
		return ascii_eq_lit(path->addr, path->len, pm);
	if (path->flags & (SMTP_PATH_NULL | SMTP_PATH_LITERAL) || ll == 0)
		return 0;
	return ascii_eq_lit(path->addr, ll - 1, pm) && path->len - ll == hl &&
	       ascii_eq_n(path->addr + ll, s->conf->hostname, hl);
}

/* Put the configured postmaster address in place of the path. */
static void smtp_rcpt_to_postmaster(struct smtp_session *s, struct smtp_path *path)
{
	const char *pm = s->conf->postmaster, *at = strrchr(pm, '@');
	char logtext[LOG_TEXT_MAX];
	size_t n = strlen(pm);

	log_info("smtp %s: RCPT <%s> is the postmaster: stored for <%s>", s->client_addr,
		 log_printable(logtext, sizeof(logtext), path->addr, path->len), pm);
	memcpy(path->addr, pm, n + 1);
	path->len = n;
	path->domain_off = at ? (size_t)(at - pm) + 1 : n;
	path->flags = 0;
}

static int smtp_check_rcpt(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	const struct smtp_server_conf *conf = s->conf;
	struct smtp_path *path = &c->path;
	char logtext[LOG_TEXT_MAX];
	enum smtp_rcpt_verdict v;
	int r;

	if (s->state != SMTP_STATE_MAIL && s->state != SMTP_STATE_RCPT) {
		smtp_reply(s, out, "503 5.5.1 Error: need MAIL command");
		return SMTP_CHECK_FAIL;
	}
	r = smtp_rcpt_syntax(s, c, out);
	if (r != SMTP_CHECK_OK)
		return r;
	/* RFC 5321 4.5.3.1.10: 452 for too many recipients, and the client
	 * sends the rest later; not an error against the budget, or a large
	 * pipelined recipient list would get a well-behaved client cut off. */
	if (s->tx.nrcpt >= conf->limits.max_recipients) {
		metrics_add(METRIC_RCPT_REFUSED_OTHER, 1);
		smtp_reply(s, out, "452 4.5.3 Error: too many recipients");
		return SMTP_CHECK_REFUSE;
	}
	smtp_parse_normalize_domain(path);
	/* The postmaster MUST be accepted (RFC 5321 4.5.1), whatever the
	 * domain table says: no rcpt_check. */
	if (conf->postmaster && smtp_rcpt_is_postmaster(s, path)) {
		smtp_rcpt_to_postmaster(s, path);
		return SMTP_CHECK_OK;
	}
	/* Any other bare local part has no customer domain to relay to: we
	 * are a relay, not a mailbox host. */
	if (path->flags & (SMTP_PATH_NULL | SMTP_PATH_NO_DOMAIN)) {
		metrics_add(METRIC_RCPT_REFUSED_OTHER, 1);
		smtp_reply(s, out, "501 5.1.3 Bad recipient address syntax");
		return SMTP_CHECK_FAIL;
	}
	/* Postfix with allow_untrusted_routing = no: user%other@customer and
	 * kin would have the customer's server relay on; the same reply. */
	if ((path->flags & SMTP_PATH_LOCAL_ROUTING) && !conf->allow_untrusted_routing)
		v = SMTP_RCPT_ROUTED;
	else if (path->flags & SMTP_PATH_LITERAL)
		v = SMTP_RCPT_DENY; /* customer domains have names, not literals */
	else
		v = conf->rcpt_check(conf->rcpt_arg, path->addr + path->domain_off,
				path->len - path->domain_off, smtp_server_may_relay(s));
	if (v == SMTP_RCPT_OK && conf->rcpt_user)
		v = conf->rcpt_user(conf->rcpt_arg, path->addr, path->len, path->domain_off);
	if (v == SMTP_RCPT_OK)
		return SMTP_CHECK_OK;
	log_info("smtp %s: reject RCPT <%s>: %s", s->client_addr,
			log_printable(logtext, sizeof(logtext), path->addr, path->len),
			v == SMTP_RCPT_TEMPFAIL ? "domain table unavailable" :
			v == SMTP_RCPT_OVER_QUOTA ? "domain over quota" :
			v == SMTP_RCPT_ROUTED ? "sender-specified routing" :
			v == SMTP_RCPT_NO_USER ? "user unknown" :
			v == SMTP_RCPT_NO_USERS ? "recipient set not loaded" : "relay access denied");
	metrics_add(v == SMTP_RCPT_TEMPFAIL || v == SMTP_RCPT_NO_USERS ? METRIC_RCPT_REFUSED_UNKNOWN :
		    v == SMTP_RCPT_NO_USER ? METRIC_RCPT_REFUSED_USER :
		    v == SMTP_RCPT_OVER_QUOTA ? METRIC_RCPT_REFUSED_QUOTA :
		    v == SMTP_RCPT_ROUTED ? METRIC_RCPT_REFUSED_ROUTING : METRIC_RCPT_REFUSED_RELAY, 1);
	switch (v) {
	case SMTP_RCPT_TEMPFAIL:
	case SMTP_RCPT_NO_USERS: /* Postfix with relay_recipient_maps unavailable */
		smtp_reply(s, out, "451 4.3.0 <%s>: Temporary lookup failure", path->addr);
		break;
	case SMTP_RCPT_NO_USER: /* Postfix's unknown_relay_recipient_reject_code */
		smtp_reply(s, out, "550 5.1.1 <%s>: Recipient address rejected: User unknown",
			   path->addr);
		break;
	case SMTP_RCPT_OVER_QUOTA:
		smtp_reply(s, out, "452 4.2.2 <%s>: Domain over quota", path->addr);
		break;
	case SMTP_RCPT_ROUTED: /* Postfix's relay_domains_reject_code, 554 */
		smtp_reply(s, out, "554 5.7.1 <%s>: Relay access denied", path->addr);
		break;
	default:
		smtp_reply(s, out, "550 5.7.1 <%s>: Relay access denied", path->addr);
		break;
	}
	return SMTP_CHECK_FAIL;
}

static void smtp_proceed_rcpt(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	struct smtp_tx *tx = &s->tx;
	struct smtp_rcpt_ref ref;
	size_t env_len = tx->env.len;

	if (tx->env.len > UINT32_MAX - SMTP_PATH_MAX) {
		smtp_reply(s, out, "452 4.5.3 Error: too many recipients");
		return;
	}
	ref.off = (uint32_t)tx->env.len;
	ref.len = (uint16_t)c->path.len;
	ref.dom = (uint16_t)c->path.domain_off;
	if (buf_append(&tx->env, c->path.addr, c->path.len) != 0 ||
			buf_append(&tx->rcpts, &ref, sizeof(ref)) != 0) {
		tx->env.len = env_len;
		smtp_reply(s, out, "452 4.3.1 Insufficient system storage");
		return;
	}
	tx->nrcpt++;
	if (s->state != SMTP_STATE_RCPT)
		smtp_enter_state(s, SMTP_STATE_RCPT);
	smtp_reply_lit(s, out, "250 2.1.5 Ok");
}

static int smtp_check_data(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	if (c->arg_len != 0) {
		smtp_reply(s, out, "501 5.5.4 Syntax: DATA");
		return SMTP_CHECK_FAIL;
	}
	if (s->state != SMTP_STATE_MAIL && s->state != SMTP_STATE_RCPT) {
		smtp_reply(s, out, "503 5.5.1 Error: need RCPT command");
		return SMTP_CHECK_FAIL;
	}
	if (s->tx.nrcpt == 0) {
		smtp_reply(s, out, "554 5.5.1 Error: no valid recipients");
		return SMTP_CHECK_FAIL;
	}
	return SMTP_CHECK_OK;
}

/* RFC 5322 3.3 date-time, always UTC; names from tables, not the locale. */
static int smtp_format_date(char *dst, size_t n, time_t t)
{
	size_t len;
	int r = datefmt_rfc5322(dst, n, t);

	if (r)
		return r;
	len = strlen(dst);
	if (n - len < sizeof(" (UTC)"))
		return -EOVERFLOW;
	memcpy(dst + len, " (UTC)", sizeof(" (UTC)"));
	return 0;
}

/* The Received: date of second t. Every message of a second shares one
 * text, so it is formatted once per second per thread (it was an eighth of
 * the ingest path's instructions). Returns NULL when t cannot be written. */
static const char *smtp_received_date(time_t t, size_t *len)
{
	static _Thread_local struct {
		int valid;
		time_t t;
		size_t len;
		char text[SMTP_DATE_MAX];
	} cache;

	if (!cache.valid || cache.t != t) {
		cache.valid = 0;
		if (smtp_format_date(cache.text, sizeof(cache.text), t) != 0)
			return NULL;
		cache.len = strlen(cache.text);
		cache.t = t;
		cache.valid = 1;
	}
	*len = cache.len;
	return cache.text;
}

/* RFC 3848 with-protocol: S for TLS, A for an authenticated user. AUTH
 * needs EHLO, so a HELO session is plain SMTP (3848 has no "SMTPS"). */
static const char *smtp_with_protocol(const struct smtp_session *s)
{
	static const char *const esmtp[] = { "ESMTP", "ESMTPA", "ESMTPS", "ESMTPSA" };

	if (!s->esmtp)
		return "SMTP";
	return esmtp[(s->tls ? 2 : 0) + (s->user[0] ? 1 : 0)];
}

/* "\t(using TLSv1.3 with cipher X (256/256 bits))\r\n", as Postfix writes
 * it. Only TLS sessions come here, so printf would do; the numbers go
 * through buf's appender all the same, and a failure undoes the line. */
static int smtp_write_received_tls(struct smtp_session *s, struct buf *b)
{
	const struct smtp_piece head[] = {
		SMTP_LIT("\t(using "), SMTP_STR(s->tls_version),
		SMTP_LIT(" with cipher "), SMTP_STR(s->tls_cipher), SMTP_LIT(" ("),
	};
	size_t was = b->len;
	int r = smtp_cat(b, head, sizeof(head) / sizeof(head[0]));

	if (r == 0)
		r = buf_append_i64(b, s->tls_bits);
	if (r == 0)
		r = buf_append(b, "/", 1);
	if (r == 0)
		r = buf_append_i64(b, s->tls_bits);
	if (r == 0)
		r = buf_puts(b, " bits))\r\n");
	if (r != 0)
		b->len = was;
	return r;
}

/* Our trace header (RFC 5321 4.4), first in the stored body. TLS and the
 * authenticated user are comments on lines of their own, where and as
 * Postfix writes them; every part is printable ASCII without parentheses,
 * so the comments stay balanced and the header unfolds cleanly. Built from
 * pieces, without printf: it is written once per message. */
static int smtp_write_received(struct smtp_session *s)
{
	const struct smtp_server_conf *conf = s->conf;
	struct smtp_tx *tx = &s->tx;
	time_t now = conf->clock ? conf->clock(conf->clock_arg) : time(NULL);
	struct smtp_piece from[] = {
		SMTP_LIT("Received: from "), SMTP_STR(s->helo), SMTP_LIT(" ("),
		SMTP_STR(s->client_addr), SMTP_LIT(")\r\n"),
	};
	struct smtp_piece user[] = {
		SMTP_LIT("\t(Authenticated sender: "), SMTP_STR(s->user), SMTP_LIT(")\r\n"),
	};
	struct smtp_piece by[] = {
		SMTP_LIT("\tby "), SMTP_STR(conf->hostname), SMTP_LIT(" (etrnd) with "),
		SMTP_STR(smtp_with_protocol(s)), SMTP_LIT(" id "), SMTP_STR(tx->qid),
	};
	struct smtp_piece rcpt[] = { SMTP_LIT("\r\n\tfor <"), { NULL, 0 }, SMTP_LIT(">") };
	struct smtp_piece date[] = { SMTP_LIT(";\r\n\t"), { NULL, 0 }, SMTP_LIT("\r\n") };
	int r;

	date[1].p = smtp_received_date(now, &date[1].n);
	if (date[1].p == NULL)
		return -EINVAL;
	r = smtp_cat(&tx->body, from, sizeof(from) / sizeof(from[0]));
	if (r == 0 && s->tls)
		r = smtp_write_received_tls(s, &tx->body);
	if (r == 0 && s->user[0])
		r = smtp_cat(&tx->body, user, sizeof(user) / sizeof(user[0]));
	if (r == 0)
		r = smtp_cat(&tx->body, by, sizeof(by) / sizeof(by[0]));
	if (r == 0 && tx->nrcpt == 1) {
		struct smtp_rcpt_ref ref;

		memcpy(&ref, tx->rcpts.data, sizeof(ref));
		rcpt[1].p = tx->env.data + ref.off;
		rcpt[1].n = ref.len;
		r = smtp_cat(&tx->body, rcpt, sizeof(rcpt) / sizeof(rcpt[0]));
	}
	if (r == 0)
		r = smtp_cat(&tx->body, date, sizeof(date) / sizeof(date[0]));
	return r;
}

size_t smtp_server_body_max(const struct smtp_limits *lim, const char *hostname)
{
	size_t room = SMTP_RECEIVED_ROOM + strlen(hostname);
	size_t cap = lim->size_max;

	/* The stored body is dot-stuffed, size_max counts unstuffed octets: a
	 * stuffed line is at least "..\r\n" for the counted ".\r\n", so the
	 * stored size is at most 4/3 of the counted one. The reader stops
	 * storing as soon as the count passes size_max; the cap is only the
	 * backstop. */
	cap = cap > SIZE_MAX - cap / 3 ? SIZE_MAX : cap + cap / 3;
	return cap > SIZE_MAX - room ? SIZE_MAX : cap + room;
}

static void smtp_proceed_data(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	const struct smtp_server_conf *conf = s->conf;
	struct smtp_tx *tx = &s->tx;

	buf_reset(&tx->body);
	tx->body.max = smtp_server_body_max(&conf->limits, conf->hostname);
	conf->new_id(conf->new_id_arg, &tx->msgid, tx->qid);
	tx->qid[SMTP_QID_MAX - 1] = '\0';
	if (smtp_write_received(s) != 0) {
		smtp_reply(s, out, "452 4.3.1 Insufficient system storage");
		return;
	}
	tx->dstate = SMTP_DATA_BOL;
	tx->derr = 0;
	tx->prev_crlf = 1; /* DATA's own CRLF: "." as the first line ends it */
	tx->line_len = 0;
	tx->size = 0;
	smtp_enter_state(s, SMTP_STATE_DATA);
	smtp_reply_lit(s, out, "354 End data with <CR><LF>.<CR><LF>");
}

static int smtp_check_noargs(struct smtp_session *s, struct smtp_cmd_ctx *c,
		struct buf *out, const char *verb)
{
	if (c->arg_len != 0) {
		smtp_reply(s, out, "501 5.5.4 Syntax: %s", verb);
		return SMTP_CHECK_FAIL;
	}
	return SMTP_CHECK_OK;
}

static int smtp_check_rset(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	return smtp_check_noargs(s, c, out, "RSET");
}

static void smtp_proceed_rset(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	smtp_tx_drop(&s->tx);
	if (s->state != SMTP_STATE_INIT)
		smtp_enter_state(s, SMTP_STATE_READY);
	smtp_reply(s, out, "250 2.0.0 Ok");
}

static int smtp_check_any(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	return SMTP_CHECK_OK;
}

static void smtp_proceed_noop(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	smtp_reply(s, out, "250 2.0.0 Ok");
}

static void smtp_proceed_quit(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	smtp_reply(s, out, "221 2.0.0 Bye");
	smtp_close(s, "QUIT");
}

static int smtp_check_vrfy(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	if (c->arg_len == 0) {
		smtp_reply(s, out, "501 5.5.4 Syntax: VRFY address");
		return SMTP_CHECK_FAIL;
	}
	return SMTP_CHECK_OK;
}

static void smtp_proceed_vrfy(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	/* RFC 5321 3.5.3: 252 when we will not say whether a user exists. */
	smtp_reply(s, out, "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery");
}

static void smtp_proceed_help(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	if (s->reversed) {
		smtp_reply(s, out, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP");
		return;
	}
	if (s->odmr) {
		smtp_reply(s, out, "214 2.0.0 Commands: EHLO HELO RSET NOOP QUIT HELP%s%s ATRN",
			   s->conf->starttls ? " STARTTLS" : "", s->conf->auth ? " AUTH" : "");
		return;
	}
	smtp_reply(s, out, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP%s%s%s%s",
		   s->conf->etrn ? " ETRN" : "", s->conf->starttls ? " STARTTLS" : "",
		   s->conf->auth ? " AUTH" : "", s->conf->atrn ? " ATRN" : "");
}

/* EXPN, and commands that later issues implement (ETRN, ATRN, AUTH,
 * STARTTLS): replace the row's check/proceed to add one. */
static int smtp_check_unimpl(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	smtp_reply(s, out, "502 5.5.1 Command not implemented");
	return SMTP_CHECK_FAIL;
}

static int smtp_check_etrn(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	struct etrn_node node;
	enum etrn_outcome o;

	if (!s->conf->etrn)
		return smtp_check_unimpl(s, c, out);
	if (s->state == SMTP_STATE_INIT) {
		smtp_reply(s, out, "503 5.5.1 Error: send HELO/EHLO first");
		return SMTP_CHECK_FAIL;
	}
	/* RFC 1985 section 3: not inside a mail transaction. */
	if (s->state != SMTP_STATE_READY) {
		smtp_reply(s, out, "503 5.5.1 Error: MAIL transaction in progress");
		return SMTP_CHECK_FAIL;
	}
	/* RFC 1985 section 3 syntax (500 empty, 501 bad node) is etrn.c's;
	 * whether a domain form names a domain is the etrn callback's. */
	o = etrn_parse(c->arg, c->arg_len, ETRN_SRC_SMTP_RAW, &node);
	if (o != ETRN_SYNTAX_EMPTY && o != ETRN_SYNTAX_NODE)
		return SMTP_CHECK_OK;
	size_t from = out->len;
	if (etrn_reply(out, o, c->arg, c->arg_len, NULL, 0))
		smtp_out_full(s);
	metrics_replies(out, from, metrics_etrn_reply);
	return SMTP_CHECK_FAIL;
}

static void smtp_proceed_etrn(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	size_t from = out->len;

	s->conf->etrn(s->conf->etrn_arg, s->client_addr, smtp_server_user(s), c->arg,
		      c->arg_len, out);
	metrics_replies(out, from, metrics_etrn_reply);
}

/* ---- ATRN and TURN (RFC 2645) ----------------------------------------- */

/* The order of the refusals: not here at all (502), not authenticated
 * (530, RFC 2645 5.2.1, before any look at the argument), inside a
 * transaction (503), then the list (501: proto/atrn.c's parse and reply,
 * the one reading of it, which the drain repeats). */
static int smtp_check_atrn(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	struct atrn_doms doms;
	enum atrn_verdict v;

	if (!smtp_atrn_offered(s))
		return smtp_check_unimpl(s, c, out);
	if (!s->user[0]) {
		smtp_reply(s, out, "530 5.7.0 Authentication required");
		return SMTP_CHECK_FAIL;
	}
	if (s->state != SMTP_STATE_READY) {
		smtp_reply(s, out, "503 5.5.1 Error: MAIL transaction in progress");
		return SMTP_CHECK_FAIL;
	}
	v = atrn_parse(c->arg, c->arg_len, &doms);
	if (v == ATRN_OK)
		return SMTP_CHECK_OK;
	size_t from = out->len;
	if (atrn_reply(out, v) != 0)
		smtp_out_full(s);
	metrics_replies(out, from, metrics_atrn_reply);
	return SMTP_CHECK_FAIL;
}

static void smtp_proceed_atrn(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	char logtext[LOG_TEXT_MAX];

	(void)out;
	log_info("smtp %s: ATRN user=%s domains=%s", s->client_addr, s->user,
		 c->arg_len ? log_printable(logtext, sizeof(logtext), c->arg, c->arg_len) :
		 "(all owned)");
	s->atrn = c->arg;
	s->atrn_len = c->arg_len;
	smtp_enter_state(s, SMTP_STATE_ATRN);
}

/* RFC 2645 section 3 (and RFC 5321 4.1.1.x's note on TURN): TURN without
 * authentication would hand anyone a domain's mail, so it never is. */
static int smtp_check_turn(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	smtp_reply(s, out, "502 5.5.1 Error: TURN not implemented (unauthenticated TURN is unsafe, RFC 2645)");
	return SMTP_CHECK_FAIL;
}

/* ---- STARTTLS (RFC 3207) ---------------------------------------------- */

/* The replies are Postfix's smtpd's. */
static int smtp_check_starttls(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	if (!s->conf->starttls)
		return smtp_check_unimpl(s, c, out);
	if (c->arg_len != 0) {
		smtp_reply(s, out, "501 5.5.4 Syntax: STARTTLS");
		return SMTP_CHECK_FAIL;
	}
	if (s->tls) {
		smtp_reply(s, out, "554 5.5.1 Error: TLS already active");
		return SMTP_CHECK_FAIL;
	}
	if (s->state != SMTP_STATE_INIT && s->state != SMTP_STATE_READY) {
		smtp_reply(s, out, "503 5.5.1 Error: MAIL transaction in progress");
		return SMTP_CHECK_FAIL;
	}
	return SMTP_CHECK_OK;
}

/* RFC 3207 4.2: what the client said in the clear is forgotten once TLS
 * is up; smtp_server_feed() drops what it pipelined after this line. */
static void smtp_proceed_starttls(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	smtp_reply(s, out, "220 2.0.0 Ready to start TLS");
	smtp_enter_state(s, SMTP_STATE_TLS);
}

/* ---- AUTH (RFC 4954) -------------------------------------------------- */

static int smtp_check_auth(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	const char *sp;
	size_t mlen;

	if (!s->conf->auth && !s->cluster) {
		smtp_reply(s, out, "503 5.5.1 Error: authentication not enabled");
		return SMTP_CHECK_FAIL;
	}
	if (s->state == SMTP_STATE_INIT || !s->esmtp) {
		smtp_reply(s, out, "503 5.5.1 Error: send EHLO first");
		return SMTP_CHECK_FAIL;
	}
	if (s->user[0]) {
		smtp_reply(s, out, "503 5.5.1 Error: already authenticated");
		return SMTP_CHECK_FAIL;
	}
	if (s->state != SMTP_STATE_READY) {
		smtp_reply(s, out, "503 5.5.1 Error: MAIL transaction in progress");
		return SMTP_CHECK_FAIL;
	}
	sp = memchr(c->arg, ' ', c->arg_len);
	mlen = sp ? (size_t)(sp - c->arg) : c->arg_len;
	/* The argument is trimmed: after a space comes the response. */
	if (mlen == 0 || (sp && memchr(sp + 1, ' ', c->arg_len - mlen - 1))) {
		smtp_reply(s, out, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
		return SMTP_CHECK_FAIL;
	}
	if (smtp_auth_mech(c->arg, mlen) == SMTP_AUTH_NONE) {
		smtp_reply(s, out, "504 5.5.4 Unrecognized authentication type");
		return SMTP_CHECK_FAIL;
	}
	if (!smtp_auth_offered(s)) {
		smtp_reply(s, out, "538 5.7.11 Encryption required for requested authentication mechanism");
		return SMTP_CHECK_FAIL;
	}
	return SMTP_CHECK_OK;
}

/* One line for each AUTH that ends, never with the password. */
static void smtp_auth_log(struct smtp_session *s, const char *result)
{
	char user[LOG_TEXT_MAX];

	log_printable(user, sizeof(user), s->auth.user, strlen(s->auth.user));
	if (s->auth.user[0] == '\0')
		snprintf(user, sizeof(user), "(none)");
	if (!strcmp(result, "ok"))
		log_info("smtp %s: AUTH %s user=%s: ok", s->client_addr,
			 smtp_auth_mech_name(s->auth.mech), user);
	else
		log_warn("smtp %s: AUTH %s user=%s: %s", s->client_addr,
			 smtp_auth_mech_name(s->auth.mech), user, result);
}

/* An exchange ended without a check (refused, cancelled, undecodable):
 * reply, log, count it against the error budget, forget it. */
static void smtp_auth_refuse(struct smtp_session *s, struct buf *out, const char *reply,
		const char *why)
{
	smtp_auth_log(s, why);
	smtp_reply(s, out, "%s", reply);
	smtp_auth_wipe(&s->auth);
	smtp_count_error(s);
	smtp_enter_state(s, SMTP_STATE_READY);
}

/* Act on what a response led to. */
static void smtp_auth_status(struct smtp_session *s, enum smtp_auth_status st,
		const char *challenge, struct buf *out)
{
	switch (st) {
	case SMTP_AUTH_CONTINUE:
		smtp_reply(s, out, "334 %s", challenge);
		if (s->state != SMTP_STATE_AUTH)
			smtp_enter_state(s, SMTP_STATE_AUTH);
		return;
	case SMTP_AUTH_CHECK:
		smtp_enter_state(s, SMTP_STATE_AUTH_CHECK);
		return;
	case SMTP_AUTH_BAD:
		smtp_auth_refuse(s, out, "535 5.7.8 Authentication credentials invalid",
				 "refused without a check (malformed or impossible credentials)");
		return;
	case SMTP_AUTH_DECODE:
		smtp_auth_refuse(s, out, "501 5.5.2 Cannot decode response", "bad base64");
		return;
	case SMTP_AUTH_CANCEL:
		smtp_auth_refuse(s, out, "501 5.0.0 Authentication aborted", "aborted by the client");
		return;
	}
}

/* The AUTH line may be in the line reader's own buffer (it spanned
 * feeds): clear it there, it may hold a password in base64. */
static void smtp_auth_wipe_line(struct smtp_session *s, const char *p, size_t n)
{
	if (p >= s->line && p < s->line + s->line_cap)
		explicit_bzero(s->line + (p - s->line), n);
}

static void smtp_proceed_auth(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	const char *sp = memchr(c->arg, ' ', c->arg_len), *challenge = "";
	size_t mlen = sp ? (size_t)(sp - c->arg) : c->arg_len;
	enum smtp_auth_status st;

	st = smtp_auth_start(&s->auth, smtp_auth_mech(c->arg, mlen), sp ? sp + 1 : NULL,
			     sp ? c->arg_len - mlen - 1 : 0, &challenge);
	smtp_auth_status(s, st, challenge, out);
}

/* RFC 4954 4: a response longer than we take ends the exchange. */
static void smtp_auth_too_long(struct smtp_session *s, struct buf *out)
{
	smtp_auth_refuse(s, out, "500 5.5.6 Authentication Exchange line is too long",
			 "response line too long");
	smtp_check_budget(s, out);
}

/* A response line inside the exchange (SMTP_STATE_AUTH). */
static void smtp_auth_line(struct smtp_session *s, const struct linereader_line *ln,
		struct buf *out)
{
	const char *challenge = "";
	enum smtp_auth_status st = smtp_auth_step(&s->auth, ln->p, ln->len, &challenge);

	smtp_auth_wipe_line(s, ln->p, ln->len);
	smtp_auth_status(s, st, challenge, out);
	smtp_check_budget(s, out);
}

/* Not SMTP at all: an HTTP or proxy request (cross-protocol attack, or a
 * client in the wrong place). Postfix's answer, then close. */
static int smtp_check_close(struct smtp_session *s, struct smtp_cmd_ctx *c, struct buf *out)
{
	smtp_reply(s, out, "221 2.7.0 Error: I can break rules, too. Goodbye.");
	return SMTP_CHECK_FAIL;
}

static const struct smtp_cmd smtp_cmds[] = {
	{ "EHLO", smtp_check_ehlo, smtp_proceed_ehlo, 0, SMTP_CHECK_HELO },
	{ "HELO", smtp_check_helo_cmd, smtp_proceed_helo, 0, SMTP_CHECK_HELO },
	{ "MAIL", smtp_check_mail, smtp_proceed_mail, SMTP_CMDF_NOT_ODMR, SMTP_CHECK_MAIL },
	{ "RCPT", smtp_check_rcpt, smtp_proceed_rcpt, SMTP_CMDF_NOT_ODMR, SMTP_CHECK_RCPT },
	{ "DATA", smtp_check_data, smtp_proceed_data, SMTP_CMDF_NOT_ODMR, SMTP_CHECK_DATA },
	{ "RSET", smtp_check_rset, smtp_proceed_rset, 0, SMTP_CHECK_NONE },
	{ "NOOP", smtp_check_any, smtp_proceed_noop, 0, SMTP_CHECK_NONE },
	{ "QUIT", smtp_check_any, smtp_proceed_quit, 0, SMTP_CHECK_NONE },
	{ "VRFY", smtp_check_vrfy, smtp_proceed_vrfy, SMTP_CMDF_NOT_ODMR, SMTP_CHECK_NONE },
	{ "HELP", smtp_check_any, smtp_proceed_help, 0, SMTP_CHECK_NONE },
	{ "EXPN", smtp_check_unimpl, NULL, SMTP_CMDF_JUNK, SMTP_CHECK_NONE },
	{ "ETRN", smtp_check_etrn, smtp_proceed_etrn, SMTP_CMDF_NOT_ODMR | SMTP_CMDF_NOT_REVERSED, SMTP_CHECK_NONE },
	{ "ATRN", smtp_check_atrn, smtp_proceed_atrn, SMTP_CMDF_NOT_REVERSED, SMTP_CHECK_NONE },
	{ "TURN", smtp_check_turn, NULL, 0, SMTP_CHECK_NONE },
	{ "AUTH", smtp_check_auth, smtp_proceed_auth, SMTP_CMDF_NOT_REVERSED, SMTP_CHECK_NONE },
	{ "STARTTLS", smtp_check_starttls, smtp_proceed_starttls, SMTP_CMDF_NOT_REVERSED, SMTP_CHECK_NONE },
	{ "BDAT", smtp_check_unimpl, NULL, SMTP_CMDF_NOT_ODMR, SMTP_CHECK_NONE },
	{ "GET", smtp_check_close, NULL, SMTP_CMDF_CLOSE, SMTP_CHECK_NONE },
	{ "POST", smtp_check_close, NULL, SMTP_CMDF_CLOSE, SMTP_CHECK_NONE },
	{ "CONNECT", smtp_check_close, NULL, SMTP_CMDF_CLOSE, SMTP_CHECK_NONE },
	{ "USER", smtp_check_close, NULL, SMTP_CMDF_CLOSE, SMTP_CHECK_NONE },
};

/* RFC 5321 4.2.4: a command recognized but not implemented in this kind
 * of session gets 502. Where it is unavailable (for the reply), or NULL
 * when cmd is available. RFC 2645: an ODMR session has no mail
 * transaction and no queue of its own to run; a reversed one has its TLS
 * and its turn-around behind it, and no queue to run for the upstream. */
static const char *smtp_cmd_unavailable(const struct smtp_session *s, const struct smtp_cmd *cmd)
{
	if (s->odmr && (cmd->flags & SMTP_CMDF_NOT_ODMR))
		return "on the on-demand mail relay port";
	if (s->reversed && (cmd->flags & SMTP_CMDF_NOT_REVERSED))
		return "in a reversed ATRN session";
	return NULL;
}

static void smtp_line_too_long(struct smtp_session *s, struct buf *out)
{
	/* RFC 5321 4.5.3.1.4 and 4.5.3.1.10: "500 Line too long" */
	log_info("smtp %s: command line over %zu octets", s->client_addr,
			s->conf->limits.command_max);
	smtp_reply(s, out, "500 5.5.2 Error: line too long");
	smtp_count_error(s);
	smtp_check_budget(s, out);
}

/* One complete command line, CRLF (or bare LF, which Postfix also accepts
 * on command lines) already removed. A bare CR stays in the line: the
 * parser refuses what it breaks. */
static void smtp_command(struct smtp_session *s, const struct linereader_line *ln,
		struct buf *out)
{
	const char *line = ln->p;
	size_t n = ln->len;
	char logtext[LOG_TEXT_MAX];
	const struct smtp_cmd *cmd = NULL;
	const char *where;
	struct smtp_cmd_ctx c;
	size_t vlen, i;
	int r, is_auth;

	vlen = smtp_parse_verb(line, n, &c.arg, &c.arg_len);
	is_auth = smtp_parse_token_eq(line, vlen, "AUTH");
	/* The reader takes lines up to SMTP_AUTH_LINE_MAX for AUTH's sake;
	 * every other command keeps command_max. */
	if (!is_auth && n + (ln->flags & LINEREADER_F_BARE_LF ? 1 : 2) > s->conf->limits.command_max) {
		smtp_line_too_long(s, out);
		return;
	}
	/* AUTH's initial response may be a password: never in a log. */
	if (log_enabled(LOGL_DEBUG))
		log_debug("smtp %s: < %s", s->client_addr, is_auth ? "AUTH ..." :
				log_printable(logtext, sizeof(logtext), line, n));
	if (ln->flags & LINEREADER_F_NUL) {
		smtp_reply(s, out, "500 5.5.2 Error: NUL character in command");
		smtp_count_error(s);
		goto done;
	}
	for (i = 0; i < sizeof(smtp_cmds) / sizeof(smtp_cmds[0]); i++) {
		if (smtp_parse_token_eq(line, vlen, smtp_cmds[i].name)) {
			cmd = &smtp_cmds[i];
			break;
		}
	}
	if (cmd == NULL) {
		smtp_reply(s, out, "500 5.5.2 Error: command not recognized");
		smtp_count_error(s);
		goto done;
	}
	where = smtp_cmd_unavailable(s, cmd);
	if (where) {
		smtp_reply(s, out, "502 5.5.1 Error: %s not available %s", cmd->name, where);
		smtp_count_error(s);
		goto done;
	}
	/* RFC 5321 3.1: a server that greeted 554 "MUST NOT" close but wait
	 * for QUIT, answering "503 bad sequence of commands" meanwhile; the
	 * error budget still ends a client that keeps trying. */
	if (s->refused && !(cmd->flags & SMTP_CMDF_CLOSE) &&
	    !smtp_parse_token_eq(line, vlen, "QUIT")) {
		smtp_reply(s, out, "503 5.5.1 Error: access denied, only QUIT is served");
		smtp_count_error(s);
		goto done;
	}
	c.tx_flags = 0;
	r = cmd->check(s, &c, out);
	if (cmd->flags & SMTP_CMDF_CLOSE) {
		log_info("smtp %s: non-SMTP command %s, disconnecting",
				s->client_addr, cmd->name);
		smtp_close(s, "non-SMTP command");
		return;
	}
	if (r == SMTP_CHECK_OK && cmd->proceed) {
		/* One branch when no check is configured. */
		if (s->conf->check_stages & SMTP_CHECK_BIT(cmd->stage))
			smtp_check_begin(s, cmd, &c, out);
		else
			cmd->proceed(s, &c, out);
	}
	if (r == SMTP_CHECK_FAIL || (cmd->flags & SMTP_CMDF_JUNK))
		smtp_count_error(s);
done:
	if (is_auth)
		smtp_auth_wipe_line(s, line, n);
	smtp_check_budget(s, out);
}

/* Command mode: take input up to and including one LF (or all of it when
 * there is none). Returns the octets consumed. A line never needs more than
 * command_max octets of buffer: once it passes the limit the rest of it is
 * dropped as it arrives, and the 500 goes out when its LF does (so the
 * client reads it in step with its commands). */
static size_t smtp_line_feed(struct smtp_session *s, const char *p, size_t n, struct buf *out)
{
	struct linereader_line ln;
	size_t used = linereader_feed(&s->lr, p, n, &ln);

	if (s->state == SMTP_STATE_AUTH) {
		if (ln.status == LINEREADER_LINE)
			smtp_auth_line(s, &ln, out);
		else if (ln.status == LINEREADER_OVERLONG_END)
			smtp_auth_too_long(s, out);
	} else if (ln.status == LINEREADER_LINE) {
		smtp_command(s, &ln, out);
	} else if (ln.status == LINEREADER_OVERLONG_END) {
		smtp_line_too_long(s, out);
	}
	return used;
}

/* ---- DATA ------------------------------------------------------------- */

/* Before the body grows past what the transaction holds of the node-wide
 * budget, take more, in SMTP_BUDGET_STEP steps. When the node has none
 * left, the message is refused (452 4.3.1 at its end, the rest of DATA read
 * and dropped so the session stays in step) and its buffer freed now: a
 * session that cannot get memory costs only itself. */
static int smtp_data_budget(struct smtp_tx *tx, size_t n)
{
	size_t want = tx->body.len + n - tx->budget_held;

	want = want > SIZE_MAX - (SMTP_BUDGET_STEP - 1) ? SIZE_MAX :
		(want + SMTP_BUDGET_STEP - 1) / SMTP_BUDGET_STEP * SMTP_BUDGET_STEP;
	if (budget_take(tx->budget, want) == 0) {
		tx->budget_held += want;
		return 0;
	}
	log_info("%s: DATA memory budget exhausted (%llu of %llu bytes in use): "
		 "message refused, rest of DATA discarded", tx->qid,
		 (unsigned long long)budget_used(tx->budget),
		 (unsigned long long)budget_limit(tx->budget));
	smtp_data_unbudget(tx);
	buf_free(&tx->body);
	return -ENOBUFS;
}

/* Store octets of the body; once the message is refused nothing more is
 * kept, only counted. */
static void smtp_data_store(struct smtp_tx *tx, const char *p, size_t n)
{
	int r;

	if (tx->derr != 0 || n == 0)
		return;
	if (tx->budget && tx->body.len + n > tx->budget_held && smtp_data_budget(tx, n)) {
		tx->derr |= SMTP_DERR_NOMEM;
		return;
	}
	r = buf_append(&tx->body, p, n);
	if (r == -ENOMEM)
		tx->derr |= SMTP_DERR_NOMEM;
	else if (r != 0)
		tx->derr |= SMTP_DERR_SIZE;
}

/* Take back octets stored tentatively (".\r" of a line that turned out to
 * be the end of data, or a "." line that must be stuffed). */
static void smtp_data_retract(struct smtp_tx *tx, size_t n)
{
	if (tx->derr != 0)
		return;
	if (tx->body.len < n)
		panic("retract %zu of %zu", n, tx->body.len);
	tx->body.len -= n;
}

static void smtp_data_count(struct smtp_tx *tx, const struct smtp_limits *lim, size_t n)
{
	tx->size += n;
	if (tx->size > lim->size_max)
		tx->derr |= SMTP_DERR_SIZE;
}

/* A line ended by a bare CR or LF in normalize mode is stored as a CRLF
 * line; one that is just "." must then be stuffed, or it would read as the
 * end of data when the body is sent on. */
static void smtp_data_dot_line(struct smtp_tx *tx, const struct smtp_limits *lim)
{
	smtp_data_retract(tx, 2); /* ".\r" */
	smtp_data_store(tx, "..\r\n", 4);
	smtp_data_count(tx, lim, 3);
}

/* End of data: hand over for commit, or refuse with the reply of the most
 * important problem seen. */
static void smtp_data_end(struct smtp_session *s, struct buf *out)
{
	struct smtp_tx *tx = &s->tx;
	unsigned e = tx->derr;

	if (e == 0) {
		if (s->conf->check_stages & SMTP_CHECK_BIT(SMTP_CHECK_EOM))
			smtp_check_enter(s, SMTP_CHECK_EOM, NULL, NULL);
		else
			smtp_enter_state(s, SMTP_STATE_COMMIT);
		return;
	}
	log_info("smtp %s: %s: message refused (0x%x, %zu octets)", s->client_addr,
			tx->qid, e, tx->size);
	if (e & SMTP_DERR_BARE)
		smtp_reply(s, out, "554 5.6.0 Error: bare <LF> or <CR> received (RFC 5321 2.3.8)");
	else if (e & SMTP_DERR_NUL)
		smtp_reply(s, out, "554 5.6.0 Error: NUL byte in message");
	else if (e & SMTP_DERR_LONG)
		smtp_reply(s, out, "554 5.6.0 Error: line too long (RFC 5321 4.5.3.1.6)");
	else if (e & SMTP_DERR_SIZE)
		smtp_reply(s, out, "552 5.3.4 Error: message file too big");
	else
		smtp_reply(s, out, "452 4.3.1 Insufficient system storage");
	smtp_tx_drop(tx);
	smtp_enter_state(s, SMTP_STATE_READY);
}

/* One DATA feed in progress. */
struct smtp_data_in {
	const char *p;
	size_t n;
	size_t i;             /* next octet to look at */
	size_t run;           /* p[run .. i) is still to be stored */
};

/* Store the pending run up to the octet under the cursor. */
static void smtp_data_flush(struct smtp_tx *tx, struct smtp_data_in *in)
{
	smtp_data_store(tx, in->p + in->run, in->i - in->run);
	in->run = in->i;
}

/* A line ended (crlf: by a real CRLF); the next octet starts a new one. */
static void smtp_data_next_line(struct smtp_tx *tx, int crlf)
{
	tx->prev_crlf = crlf;
	tx->dstate = SMTP_DATA_BOL;
}

/* A bare LF at the cursor ends the line (RFC 5321 2.3.8): refused, or in
 * normalize mode stored as eol (CRLF, or ".CRLF" to stuff a lone dot) and
 * counted as that. */
static void smtp_data_bare_lf(struct smtp_tx *tx, const struct smtp_limits *lim,
		struct smtp_data_in *in, const char *eol, size_t len)
{
	if (!lim->bare_lf_normalize) {
		tx->derr |= SMTP_DERR_BARE;
	} else {
		smtp_data_flush(tx, in);
		smtp_data_store(tx, eol, len);
		smtp_data_count(tx, lim, len);
	}
	in->run = ++in->i;
	smtp_data_next_line(tx, 0);
}

static void smtp_data_bol(struct smtp_tx *tx, struct smtp_data_in *in)
{
	tx->line_len = 0;
	if (in->p[in->i] == '.') {
		/* The stuffing dot (or the final one) is stored tentatively and
		 * not counted (RFC 5321 4.5.2). */
		tx->dstate = SMTP_DATA_DOT;
		in->i++;
	} else {
		tx->dstate = SMTP_DATA_TEXT;
	}
}

static void smtp_data_dot(struct smtp_tx *tx, const struct smtp_limits *lim,
		struct smtp_data_in *in)
{
	unsigned char ch = (unsigned char)in->p[in->i];

	if (ch == '\r') {
		tx->dstate = SMTP_DATA_DOT_CR;
		in->i++;
	} else if (ch == '\n') {
		/* ".\n" is never the end of data; stored, it is stuffed */
		smtp_data_bare_lf(tx, lim, in, ".\r\n", 3);
	} else {
		tx->dstate = SMTP_DATA_TEXT; /* stuffed line: keep the dot */
	}
}

/* After ".\r". Returns 1 at the end of data (the LF consumed). */
static int smtp_data_dot_cr(struct smtp_tx *tx, const struct smtp_limits *lim,
		struct smtp_data_in *in)
{
	const int normalize = lim->bare_lf_normalize;

	if (in->p[in->i] == '\n' && tx->prev_crlf) {
		smtp_data_flush(tx, in);
		smtp_data_retract(tx, 2);
		in->i++;
		return 1;
	}
	if (in->p[in->i] == '\n') {
		/* "\n.\r\n": a "." line after a bare line end */
		smtp_data_flush(tx, in);
		if (normalize)
			smtp_data_dot_line(tx, lim);
		in->run = ++in->i;
		smtp_data_next_line(tx, 1);
	} else if (!normalize) {
		tx->derr |= SMTP_DERR_BARE;
		tx->dstate = SMTP_DATA_TEXT; /* the octet is looked at again */
	} else {
		smtp_data_flush(tx, in);
		smtp_data_dot_line(tx, lim);
		smtp_data_next_line(tx, 0);
	}
	return 0;
}

/* A line at a time (smtp_data_lines() takes the usual ones in bulk): how
 * many of the n octets at p are plain text, i.e. come before the first CR,
 * LF or NUL. One pass looks for all three, 16 octets at a time where SSE2
 * is there (every x86-64): two memchr calls per line and a NUL search
 * beside them were a third of the ingest path. */
static size_t smtp_data_scan(const char *p, size_t n)
{
	size_t i = 0;

#if defined(__SSE2__)
	const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
	const __m128i nul = _mm_setzero_si128();

	for (; n - i >= 16; i += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
		__m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, cr),
							_mm_cmpeq_epi8(v, lf)),
					   _mm_cmpeq_epi8(v, nul));
		unsigned mask = (unsigned)_mm_movemask_epi8(hit);

		if (mask != 0)
			return i + (size_t)__builtin_ctz(mask);
	}
#endif
	for (; i < n; i++)
		if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0')
			break;
	return i;
}

/* Which of the 64 octets at p may be CR, LF or NUL: bit i for p[i], set
 * for every octet below 0x0e (those three, and TAB and other controls,
 * which the caller tells apart). One unsigned compare per 16 octets. */
static uint64_t smtp_data_controls64(const char *p)
{
#if defined(__SSE2__)
	const __m128i lim = _mm_set1_epi8(0x0e);
	/* bit i: p[i] >= 0x0e, 16 octets at a time */
#define HIGH16(k) ((uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8( \
	_mm_loadu_si128((const __m128i *)(const void *)(p + (k))), lim), \
	_mm_loadu_si128((const __m128i *)(const void *)(p + (k))))) << (k))

	return ~(HIGH16(0) | HIGH16(16) | HIGH16(32) | HIGH16(48));
#undef HIGH16
#else
	uint64_t m = 0;

	for (unsigned k = 0; k < 64; k++)
		if ((unsigned char)p[k] < 0x0e)
			m |= (uint64_t)1 << k;
	return m;
#endif
}

/* The usual body in bulk: how many of the n octets at p are whole ordinary
 * lines, each plain text (no CR, LF or NUL) ended by CRLF, not followed by
 * a dot, and at most max octets with its CRLF; len is what the first line
 * holds already. The octet after each CRLF must be there to look at. Stops
 * (before the line) at anything else, and once fewer than 64 octets are
 * left: the state machine takes it from there, and decides exactly as it
 * would have for these lines, one at a time, with smtp_data_scan(). */
static size_t smtp_data_lines(const char *p, size_t n, size_t len, size_t max)
{
	size_t done = 0, start = 0, i = 0;

	while (n - i >= 64) {
		uint64_t m = smtp_data_controls64(p + i);

		while (m != 0) {
			unsigned b = (unsigned)__builtin_ctzll(m);
			size_t j = i + b;

			if (p[j] != '\r' && p[j] != '\n' && p[j] != '\0') {
				m &= m - 1; /* TAB and the like: text */
				continue;
			}
			if (p[j] != '\r' || n - j < 3 || p[j + 1] != '\n' || p[j + 2] == '.' ||
			    len + (j - start) + 2 > max)
				return done;
			len = 0;
			start = done = j + 2;
			m = b + 2 >= 64 ? 0 : m & (~(uint64_t)0 << (b + 2));
		}
		i = done > i + 64 ? done : i + 64;
		/* a line already too long: the state machine flags it */
		if (len + (i - start) + 2 > max)
			return done;
	}
	return done;
}

/* Inside a line: count the text, then deal with the CR, LF or NUL that
 * stopped it. The usual line end (CRLF, then a line that does not begin
 * with a dot) is taken here, line after line, without going round the
 * state machine: the same steps as SMTP_DATA_CR then SMTP_DATA_BOL. */
static void smtp_data_text(struct smtp_tx *tx, const struct smtp_limits *lim,
		struct smtp_data_in *in)
{
	for (;;) {
		size_t k = smtp_data_lines(in->p + in->i, in->n - in->i, tx->line_len,
					   lim->line_max);
		unsigned char ch;

		if (k > 0) {
			/* whole lines, each as the CRLF case below takes one */
			smtp_data_count(tx, lim, k);
			in->i += k;
			tx->prev_crlf = 1;
			tx->line_len = 0;
		}
		k = smtp_data_scan(in->p + in->i, in->n - in->i);
		if (k > 0) {
			tx->line_len += k;
			/* RFC 5321 4.5.3.1.6: 1000 octets incl. CRLF */
			if (tx->line_len > lim->line_max || lim->line_max - tx->line_len < 2)
				tx->derr |= SMTP_DERR_LONG;
			smtp_data_count(tx, lim, k);
			in->i += k;
		}
		if (in->i == in->n)
			return;
		ch = (unsigned char)in->p[in->i];
		if (ch == '\r') {
			if (in->n - in->i > 2 && in->p[in->i + 1] == '\n' &&
			    in->p[in->i + 2] != '.') {
				smtp_data_count(tx, lim, 2);
				in->i += 2;
				tx->prev_crlf = 1;
				tx->line_len = 0;
				continue;
			}
			tx->dstate = SMTP_DATA_CR;
			in->i++;
		} else if (ch == '\n') {
			smtp_data_bare_lf(tx, lim, in, "\r\n", 2);
		} else {
			tx->derr |= SMTP_DERR_NUL;
			in->i++;
		}
		return;
	}
}

/* Inside a line, just after CR. */
static void smtp_data_cr(struct smtp_tx *tx, const struct smtp_limits *lim,
		struct smtp_data_in *in)
{
	if (in->p[in->i] == '\n') {
		smtp_data_count(tx, lim, 2);
		in->i++;
		smtp_data_next_line(tx, 1);
	} else if (!lim->bare_lf_normalize) {
		tx->derr |= SMTP_DERR_BARE;
		tx->dstate = SMTP_DATA_TEXT; /* the octet is looked at again */
	} else {
		/* bare CR: the CR is stored already, add the LF */
		smtp_data_flush(tx, in);
		smtp_data_store(tx, "\n", 1);
		smtp_data_count(tx, lim, 2);
		smtp_data_next_line(tx, 0);
	}
}

/*
 * DATA mode. Input is stored as it came (dot-stuffed, CRLF) in runs: one
 * append per feed unless something must be rewritten. Only the exact
 * sequence CRLF "." CRLF ends the data (RFC 5321 4.1.1.4); "\n.\n" and
 * friends do not, whatever bare_lf_normalize says (SMTP smuggling). Every
 * decision depends only on the state carried in tx, so splitting the input
 * anywhere gives the same result. Returns the octets consumed; stops after
 * the end of data.
 */
static size_t smtp_data_feed(struct smtp_session *s, const char *p, size_t n, struct buf *out)
{
	const struct smtp_limits *lim = &s->conf->limits;
	struct smtp_tx *tx = &s->tx;
	struct smtp_data_in in = { p, n, 0, 0 };

	while (in.i < n) {
		switch (tx->dstate) {
		case SMTP_DATA_BOL:
			smtp_data_bol(tx, &in);
			break;
		case SMTP_DATA_DOT:
			smtp_data_dot(tx, lim, &in);
			break;
		case SMTP_DATA_DOT_CR:
			if (smtp_data_dot_cr(tx, lim, &in)) {
				smtp_data_end(s, out);
				return in.i;
			}
			break;
		case SMTP_DATA_TEXT:
			smtp_data_text(tx, lim, &in);
			break;
		case SMTP_DATA_CR:
			smtp_data_cr(tx, lim, &in);
			break;
		}
	}
	smtp_data_store(tx, p + in.run, n - in.run);
	return n;
}

/* ---- public ----------------------------------------------------------- */

struct smtp_session *smtp_server_new(const struct smtp_server_conf *conf,
		const char *client_addr)
{
	const struct smtp_limits *lim = &conf->limits;
	struct smtp_session *s;
	size_t i;

	size_t cap = lim->command_max > SMTP_AUTH_LINE_MAX ? lim->command_max : SMTP_AUTH_LINE_MAX;

	if (lim->command_max < 2 || conf->hostname == NULL || conf->rcpt_check == NULL ||
			conf->new_id == NULL)
		panic("bad smtp_server_conf");
	s = calloc(1, sizeof(*s) + cap);
	if (s == NULL)
		return NULL;
	s->conf = conf;
	s->state = SMTP_STATE_INIT;
	s->line_cap = cap;
	linereader_init(&s->lr, s->line, cap);
	for (i = 0; client_addr && client_addr[i] && i < sizeof(s->client_addr) - 1; i++) {
		unsigned char ch = (unsigned char)client_addr[i];

		s->client_addr[i] = ch > 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	s->client_addr[i] = '\0';
	/* Envelope caps: every path is at most SMTP_PATH_MAX octets. */
	buf_init(&s->tx.env, ((size_t)lim->max_recipients + 1) * (SMTP_PATH_MAX + 1));
	buf_init(&s->tx.rcpts, ((size_t)lim->max_recipients + 1) * sizeof(struct smtp_rcpt_ref));
	buf_init(&s->tx.body, 0); /* cap set for each message in smtp_proceed_data */
	s->tx.budget = conf->data_budget;
	return s;
}

struct smtp_session *smtp_server_free(struct smtp_session *s)
{
	if (s == NULL)
		return NULL;
	smtp_data_unbudget(&s->tx);
	buf_free(&s->tx.env);
	buf_free(&s->tx.rcpts);
	buf_free(&s->tx.body);
	smtp_auth_wipe(&s->auth);
	explicit_bzero(s->line, s->line_cap);
	free(s->check_ctx);
	free(s);
	return NULL;
}

void smtp_server_set_trusted(struct smtp_session *s)
{
	s->trusted = 1;
}

void smtp_server_set_odmr(struct smtp_session *s)
{
	s->odmr = 1;
}

void smtp_server_set_relay(struct smtp_session *s)
{
	s->relay_net = 1;
}

void smtp_server_set_submission(struct smtp_session *s)
{
	s->submission = 1;
}

void smtp_server_set_cluster(struct smtp_session *s)
{
	s->cluster = 1;
}

void smtp_server_set_reversed(struct smtp_session *s)
{
	if (s->odmr || s->relay_net || s->state != SMTP_STATE_INIT)
		panic("odmr %d, relay %d, state %s", s->odmr,
		      s->relay_net, smtp_state_names[s->state]);
	s->reversed = 1;
	log_info("smtp %s: reversed session (ATRN, RFC 2645 4): STARTTLS, AUTH, ETRN and ATRN "
		 "not offered; relay only to our own domains", s->client_addr);
}

const char *smtp_server_end_reason(const struct smtp_session *s)
{
	return s->state == SMTP_STATE_CLOSED ? s->end_why : NULL;
}

/* An authenticated user may relay: that is what submission is for. The
 * user is forgotten on STARTTLS (RFC 3207 4.2), and the right with it. */
int smtp_server_may_relay(const struct smtp_session *s)
{
	return s->relay_net || s->user[0] != '\0';
}

const char *smtp_server_atrn_domains(const struct smtp_session *s, size_t *len)
{
	*len = s->atrn_len;
	return s->atrn_len ? s->atrn : "";
}

void smtp_server_atrn_done(struct smtp_session *s, int reversed)
{
	if (s->state == SMTP_STATE_CLOSED)
		return; /* timed out or shut down meanwhile */
	if (s->state != SMTP_STATE_ATRN)
		panic("atrn_done in state %s", smtp_state_names[s->state]);
	s->atrn = NULL;
	s->atrn_len = 0;
	/* Turned around: the line is the ATRN session's now, and nothing
	 * more is said as a server. */
	if (reversed)
		smtp_close(s, "ATRN");
	else
		smtp_enter_state(s, SMTP_STATE_READY);
}

/* Keep a TLS parameter for Received: printable, without the parentheses
 * and backslash that would unbalance its comment. */
static void smtp_tls_text(char *dst, size_t len, const char *src)
{
	size_t i;

	for (i = 0; src && src[i] && i < len - 1; i++) {
		unsigned char ch = (unsigned char)src[i];

		dst[i] = ch > 0x20 && ch < 0x7f && !strchr("()\\", ch) ? (char)ch : '?';
	}
	dst[i] = '\0';
}

void smtp_server_tls_up(struct smtp_session *s, const struct tls_info *info)
{
	s->tls = 1;
	smtp_tls_text(s->tls_version, sizeof(s->tls_version), info ? info->version : NULL);
	smtp_tls_text(s->tls_cipher, sizeof(s->tls_cipher), info ? info->cipher : NULL);
	s->tls_bits = info ? info->bits : 0;
	log_debug("smtp %s: TLS up: %s %s", s->client_addr, s->tls_version, s->tls_cipher);
	if (s->state != SMTP_STATE_TLS)
		return; /* implicit TLS: nothing was said in the clear */
	/* RFC 3207 4.2: discard any knowledge obtained from the client. */
	s->helo[0] = '\0';
	s->esmtp = 0;
	s->user[0] = '\0';
	smtp_auth_wipe(&s->auth);
	smtp_tx_drop(&s->tx);
	linereader_reset(&s->lr);
	smtp_enter_state(s, SMTP_STATE_INIT);
}

const char *smtp_server_auth_user(const struct smtp_session *s)
{
	return s->auth.user;
}

const char *smtp_server_auth_pass(const struct smtp_session *s, size_t *len)
{
	*len = s->auth.pass_len;
	return s->auth.pass;
}

void smtp_server_auth_wipe(struct smtp_session *s)
{
	explicit_bzero(s->auth.pass, sizeof(s->auth.pass));
	s->auth.pass_len = 0;
}

enum smtp_event smtp_server_auth_done(struct smtp_session *s, enum auth_result r,
				      struct buf *out)
{
	if (s->state == SMTP_STATE_CLOSED) {
		smtp_auth_wipe(&s->auth); /* timed out or shut down meanwhile */
		return SMTP_EV_CLOSE;
	}
	if (s->state != SMTP_STATE_AUTH_CHECK)
		panic("auth_done in state %s", smtp_state_names[s->state]);
	switch (r) {
	case AUTH_OK:
		smtp_auth_log(s, "ok");
		memcpy(s->user, s->auth.user, sizeof(s->user));
		smtp_reply(s, out, "235 2.7.0 Authentication successful");
		break;
	case AUTH_TEMP:
		smtp_auth_log(s, "temporary failure");
		smtp_reply(s, out, "454 4.7.0 Temporary authentication failure");
		break;
	case AUTH_LIMITED:
		/* Counted like a failure: a client hammering on keeps using up
		 * its error budget too. */
		smtp_auth_log(s, "refused: too many failures from this address");
		smtp_reply(s, out, "454 4.7.0 Temporary authentication failure: too many failed attempts, try later");
		smtp_count_error(s);
		break;
	default:
		smtp_auth_log(s, "credentials invalid");
		smtp_reply(s, out, "535 5.7.8 Authentication credentials invalid");
		smtp_count_error(s);
		break;
	}
	smtp_auth_wipe(&s->auth);
	smtp_enter_state(s, SMTP_STATE_READY);
	smtp_check_budget(s, out);
	if (s->out_failed)
		smtp_close(s, "reply buffer full");
	return s->state == SMTP_STATE_CLOSED ? SMTP_EV_CLOSE : SMTP_EV_NEED_INPUT;
}

const char *smtp_server_user(const struct smtp_session *s)
{
	return s->user[0] ? s->user : NULL;
}

void smtp_server_greeting(struct smtp_session *s, struct buf *out)
{
	/* The connect check decides first (smtp_server_check_done() writes
	 * the greeting or the refusal). */
	if (!(s->chk & SMTP_CHK_CONNECT_DONE) && !s->odmr &&
	    (s->conf->check_stages & SMTP_CHECK_BIT(SMTP_CHECK_CONNECT))) {
		smtp_check_enter(s, SMTP_CHECK_CONNECT, NULL, NULL);
		return;
	}
	if (s->odmr)
		smtp_reply(s, out, "220 %s ESMTP etrnd on-demand mail relay server ready",
			   s->conf->hostname);
	else
		smtp_reply(s, out, "220 %s ESMTP etrnd", s->conf->hostname);
}

/* States that take no input until the glue reports back: 1 with *ev set
 * to what is awaited. */
static int smtp_server_waiting(const struct smtp_session *s, enum smtp_event *ev)
{
	switch (s->state) {
	case SMTP_STATE_COMMIT:
		*ev = SMTP_EV_COMMIT;
		return 1;
	case SMTP_STATE_TLS:
		*ev = SMTP_EV_STARTTLS;
		return 1;
	case SMTP_STATE_AUTH_CHECK:
		*ev = SMTP_EV_AUTH;
		return 1;
	case SMTP_STATE_ATRN:
		*ev = SMTP_EV_ATRN;
		return 1;
	case SMTP_STATE_CHECK:
		*ev = SMTP_EV_CHECK;
		return 1;
	default:
		return 0;
	}
}

size_t smtp_server_feed(struct smtp_session *s, const char *p, size_t n,
		struct buf *out, enum smtp_event *ev)
{
	size_t i = 0;

	if (s->out_failed)
		smtp_close(s, "reply buffer full");
	if (s->state == SMTP_STATE_CLOSED) {
		*ev = SMTP_EV_CLOSE;
		return 0;
	}
	/* The caller must not feed before commit_done (auth_done, tls_up);
	 * if it does, nothing is consumed and it is told again. */
	if (smtp_server_waiting(s, ev))
		return 0;
	if (n == 0) {
		log_debug("smtp %s: EOF", s->client_addr);
		smtp_close(s, "lost connection");
		*ev = SMTP_EV_CLOSE;
		return 0;
	}
	while (i < n) {
		/* Replies the peer has not read yet: take no more commands. */
		if (s->conf->limits.reply_max && out->len >= s->conf->limits.reply_max) {
			*ev = SMTP_EV_OUT_FULL;
			return i;
		}
		if (s->state == SMTP_STATE_DATA)
			i += smtp_data_feed(s, p + i, n - i, out);
		else
			i += smtp_line_feed(s, p + i, n - i, out);
		if (s->out_failed)
			smtp_close(s, "reply buffer full");
		if (s->state == SMTP_STATE_TLS) {
			/* RFC 3207 5, CVE-2011-0411: what was pipelined after
			 * STARTTLS came in the clear; it is never executed. */
			linereader_reset(&s->lr);
			*ev = SMTP_EV_STARTTLS;
			return n;
		}
		if (smtp_server_waiting(s, ev))
			return i;
		if (s->state == SMTP_STATE_CLOSED) {
			*ev = SMTP_EV_CLOSE;
			return i;
		}
	}
	*ev = SMTP_EV_NEED_INPUT;
	return n;
}

const struct smtp_tx *smtp_server_tx(const struct smtp_session *s)
{
	return &s->tx;
}

void smtp_server_commit_done(struct smtp_session *s, int err, struct buf *out)
{
	struct smtp_tx *tx = &s->tx;

	if (s->state == SMTP_STATE_CLOSED) {
		smtp_tx_drop(tx); /* closed (timeout, shutdown) while committing */
		return;
	}
	if (s->state != SMTP_STATE_COMMIT)
		panic("commit_done in state %s", smtp_state_names[s->state]);
	if (err == 0) {
		const struct smtp_piece ok[] = {
			SMTP_LIT("250 2.0.0 Ok: queued as "), SMTP_STR(tx->qid),
		};
		char logtext[LOG_TEXT_MAX];

		log_debug("%s: from=<%s>, nrcpt=%u, size=%zu, client=%s", tx->qid,
				log_printable(logtext, sizeof(logtext), tx->env.data, tx->sender_len),
				tx->nrcpt, tx->size, s->client_addr);
		/* On disk now: the size as the client sent it (unstuffed,
		 * CRLF line ends, without our Received: header). */
		metrics_add(METRIC_MSGS_RECEIVED, 1);
		metrics_add(METRIC_BYTES_RECEIVED, tx->size);
		smtp_reply_put(s, out, ok, sizeof(ok) / sizeof(ok[0]));
	} else if (err == -EDQUOT) {
		log_debug("%s: commit refused: over quota", tx->qid);
		smtp_reply(s, out, "452 4.2.2 Error: over quota");
	} else if (err == -E2BIG) {
		/* The stored record does not fit a spool segment: a retry would
		 * fail the same way, so a permanent reply, not 451 for days. */
		log_info("%s: commit refused: too big for a spool segment", tx->qid);
		smtp_reply(s, out, "552 5.3.4 Error: message too big for the queue");
	} else {
		log_debug("%s: commit failed: %s", tx->qid, strerror(-err));
		smtp_reply(s, out, "451 4.3.0 Error: queue file write error");
	}
	smtp_tx_drop(tx);
	smtp_enter_state(s, SMTP_STATE_READY);
}

int smtp_server_idle(const struct smtp_session *s)
{
	enum smtp_state st = s->state == SMTP_STATE_CHECK ? s->check_prev : s->state;

	return st != SMTP_STATE_MAIL && st != SMTP_STATE_RCPT &&
		st != SMTP_STATE_DATA && st != SMTP_STATE_COMMIT;
}

void smtp_server_timeout(struct smtp_session *s, struct buf *out)
{
	smtp_reply(s, out, "421 4.4.2 %s Error: timeout exceeded", s->conf->hostname);
	smtp_close(s, "idle timeout");
}

void smtp_server_shutdown(struct smtp_session *s, struct buf *out)
{
	smtp_reply(s, out, "421 4.3.2 %s Service shutting down", s->conf->hostname);
	smtp_close(s, "shutdown");
}

void smtp_server_reply_busy(struct buf *out, const char *hostname)
{
	smtp_reply(NULL, out, "421 4.7.0 %s Error: too many connections", hostname);
}

uint64_t smtp_tx_msgid(const struct smtp_tx *tx)
{
	return tx->msgid;
}

const char *smtp_tx_qid(const struct smtp_tx *tx)
{
	return tx->qid;
}

const char *smtp_tx_sender(const struct smtp_tx *tx, size_t *len)
{
	*len = tx->sender_len;
	return tx->sender_len ? tx->env.data : "";
}

unsigned smtp_tx_nrcpt(const struct smtp_tx *tx)
{
	return tx->nrcpt;
}

static struct smtp_rcpt_ref smtp_tx_ref(const struct smtp_tx *tx, unsigned i)
{
	struct smtp_rcpt_ref ref;

	if (i >= tx->nrcpt)
		panic("recipient %u of %u", i, tx->nrcpt);
	memcpy(&ref, tx->rcpts.data + (size_t)i * sizeof(ref), sizeof(ref));
	return ref;
}

const char *smtp_tx_rcpt(const struct smtp_tx *tx, unsigned i, size_t *len)
{
	struct smtp_rcpt_ref ref = smtp_tx_ref(tx, i);

	*len = ref.len;
	return tx->env.data + ref.off;
}

size_t smtp_tx_rcpt_domain_off(const struct smtp_tx *tx, unsigned i)
{
	return smtp_tx_ref(tx, i).dom;
}

const char *smtp_tx_body(const struct smtp_tx *tx, size_t *len)
{
	*len = tx->body.len;
	return tx->body.len ? tx->body.data : "";
}

unsigned smtp_tx_flags(const struct smtp_tx *tx)
{
	return tx->flags;
}

int smtp_tx_held(const struct smtp_tx *tx)
{
	return (tx->chk & SMTP_CHK_HOLD) != 0;
}

/* ---- policy checks: the verdict -------------------------------------- */

enum smtp_check_stage smtp_server_check_stage(const struct smtp_session *s)
{
	return s->state == SMTP_STATE_CHECK ? s->check_stage : SMTP_CHECK_NONE;
}

const char *smtp_server_check_arg(const struct smtp_session *s, size_t *len)
{
	*len = 0;
	if (s->state != SMTP_STATE_CHECK || !s->check_ctx)
		return "";
	switch (s->check_stage) {
	case SMTP_CHECK_HELO:
		*len = strlen(s->check_text);
		return s->check_text;
	case SMTP_CHECK_MAIL:
	case SMTP_CHECK_RCPT:
		*len = s->check_ctx->path.len;
		return s->check_ctx->path.addr;
	default:
		return "";
	}
}

const char *smtp_server_client(const struct smtp_session *s)
{
	return s->client_addr;
}

const char *smtp_server_helo(const struct smtp_session *s)
{
	return s->helo;
}

/* One line for a verdict that changes something. */
static void smtp_check_log(struct smtp_session *s, const struct smtp_verdict *v)
{
	static const char *const kinds[] = {
		"continue", "accept", "reject", "tempfail", "discard", "hold",
	};
	char arg[LOG_TEXT_MAX];
	size_t n;
	const char *a = smtp_server_check_arg(s, &n);

	log_printable(arg, sizeof(arg), a, n);
	log_info("smtp %s: %s%s%s check%s%s%s by %s: %s%s%s", s->client_addr,
		 s->tx.qid[0] ? s->tx.qid : "", s->tx.qid[0] ? ": " : "",
		 smtp_check_stage_name(s->check_stage), n ? " <" : "", n ? arg : "", n ? ">" : "",
		 v->who && v->who[0] ? v->who : "?",
		 v->kind <= SMTP_VERDICT_HOLD ? kinds[v->kind] : "?",
		 v->why ? ": " : "", v->why ? v->why : "");
}

/* The end-of-data verdict: store (edits applied), discard or refuse. */
static enum smtp_event smtp_check_eom(struct smtp_session *s, const struct smtp_verdict *v,
		const struct buf *edits, struct buf *out)
{
	struct smtp_tx *tx = &s->tx;
	int r;

	if (v->kind == SMTP_VERDICT_REJECT || v->kind == SMTP_VERDICT_TEMPFAIL) {
		smtp_check_refuse_reply(s, v, out);
		smtp_tx_drop(tx);
		smtp_enter_state(s, SMTP_STATE_READY);
		return SMTP_EV_NEED_INPUT;
	}
	if ((tx->chk | s->chk) & SMTP_CHK_DISCARD) {
		const struct smtp_piece ok[] = {
			SMTP_LIT("250 2.0.0 Ok: queued as "), SMTP_STR(tx->qid),
		};

		/* As Postfix: the client hears nothing of it. */
		log_info("%s: discarded, not stored (policy check)", tx->qid);
		metrics_add(METRIC_MSGS_DISCARDED, 1);
		smtp_reply_put(s, out, ok, sizeof(ok) / sizeof(ok[0]));
		smtp_tx_drop(tx);
		smtp_enter_state(s, SMTP_STATE_READY);
		return SMTP_EV_NEED_INPUT;
	}
	tx->chk |= s->chk & SMTP_CHK_HOLD;
	if (edits && edits->len) {
		size_t was = tx->body.max;

		/* An edit's value may double (bare LF to CRLF), plus its
		 * name, ": " and CRLF: bounded by SMTP_CHECK_EDITS_MAX. */
		if (tx->body.max)
			tx->body.max += 2 * (size_t)SMTP_CHECK_EDITS_MAX;
		r = smtp_check_apply_edits(&tx->body, edits);
		tx->body.max = was > tx->body.len ? was : tx->body.len;
		if (r != 0) {
			log_warn("%s: header edits not applied (%s): message refused", tx->qid,
				 strerror(-r));
			smtp_reply_lit(s, out, "451 4.3.0 Error: could not apply the header edits");
			smtp_tx_drop(tx);
			smtp_enter_state(s, SMTP_STATE_READY);
			return SMTP_EV_NEED_INPUT;
		}
	}
	smtp_enter_state(s, SMTP_STATE_COMMIT);
	return SMTP_EV_COMMIT;
}

enum smtp_event smtp_server_check_done(struct smtp_session *s, const struct smtp_verdict *v,
		const struct buf *edits, struct buf *out)
{
	enum smtp_check_stage stage = s->check_stage;
	enum smtp_event ev = SMTP_EV_NEED_INPUT;
	unsigned *chk;

	if (s->state == SMTP_STATE_CLOSED)
		return SMTP_EV_CLOSE; /* timed out or shut down meanwhile */
	if (s->state != SMTP_STATE_CHECK)
		panic("check_done in state %s", smtp_state_names[s->state]);
	if (v->kind != SMTP_VERDICT_CONTINUE && v->kind != SMTP_VERDICT_ACCEPT)
		smtp_check_log(s, v);
	/* In a transaction the verdict is the message's; before, the
	 * session's. */
	chk = stage <= SMTP_CHECK_HELO ? &s->chk : &s->tx.chk;
	if (v->kind == SMTP_VERDICT_DISCARD)
		*chk |= SMTP_CHK_DISCARD;
	else if (v->kind == SMTP_VERDICT_HOLD)
		*chk |= SMTP_CHK_HOLD;
	s->state = s->check_prev; /* logged by what follows */
	if (stage == SMTP_CHECK_EOM) {
		ev = smtp_check_eom(s, v, edits, out);
	} else if (v->kind == SMTP_VERDICT_REJECT || v->kind == SMTP_VERDICT_TEMPFAIL) {
		smtp_check_refuse_reply(s, v, out);
		if (stage == SMTP_CHECK_CONNECT && v->kind == SMTP_VERDICT_TEMPFAIL) {
			smtp_close(s, "refused by a policy check"); /* 421: closing */
		} else if (stage == SMTP_CHECK_CONNECT) {
			s->refused = 1; /* 554: wait for QUIT, RFC 5321 3.1 */
			s->chk |= SMTP_CHK_CONNECT_DONE;
		} else {
			smtp_count_error(s);
			smtp_check_budget(s, out);
		}
	} else if (stage == SMTP_CHECK_CONNECT) {
		s->chk |= SMTP_CHK_CONNECT_DONE;
		smtp_server_greeting(s, out);
	} else {
		s->check_cmd->proceed(s, s->check_ctx, out);
	}
	log_debug("smtp %s: CHECK -> %s", s->client_addr, smtp_state_names[s->state]);
	s->check_stage = SMTP_CHECK_NONE;
	if (s->out_failed)
		smtp_close(s, "reply buffer full");
	if (s->state == SMTP_STATE_CLOSED)
		return SMTP_EV_CLOSE;
	return ev;
}
