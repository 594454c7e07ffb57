/* SPDX-License-Identifier: MIT */
/*
 * smtp_client: the RFC 5321 client session as a pure state machine (see
 * smtp_client.h for the contract). One allocation per session for the struct
 * and its bounded reply-line buffer; the per-message buffers (commands,
 * recipient results, reply texts) are reused from message to message.
 */
#include "proto/smtp_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/log.h"
#include "proto/smtp_parse.h"
#include "proto/smtp_reply.h"

#define SMTPC_PEER_MAX 64   /* peer text in log lines */
#define SMTPC_CMD_MAX (SMTP_DOMAIN_MAX + 16) /* "EHLO name" line */
/* Give memory back after an unusually large recipient list. */
#define SMTPC_SHRINK_OVER (64u * 1024u)
#define SMTPC_KEEP (4u * 1024u)
/* The EHLO keywords this client knows (smtp_reply.h reads more). */
#define SMTPC_CAPS (SMTP_CLIENT_CAP_PIPELINING | SMTP_CLIENT_CAP_SIZE | \
	SMTP_CLIENT_CAP_8BITMIME | SMTP_CLIENT_CAP_ENHANCED | SMTP_CLIENT_CAP_SMTPUTF8 | \
	SMTP_CLIENT_CAP_STARTTLS)
/* "\0user\0pass" (RFC 4616 2, authzid empty), its base64 and the line. */
#define SMTPC_PLAIN_MAX (2 + 2 * SMTP_CLIENT_AUTH_PART_MAX)
#define SMTPC_AUTH_LINE_MAX (sizeof("AUTH PLAIN \r\n") + BASE64_ENCODED_LEN(SMTPC_PLAIN_MAX))

_Static_assert(SMTP_CLIENT_CAP_PIPELINING == SMTP_REPLY_CAP_PIPELINING &&
		SMTP_CLIENT_CAP_SIZE == SMTP_REPLY_CAP_SIZE &&
		SMTP_CLIENT_CAP_8BITMIME == SMTP_REPLY_CAP_8BITMIME &&
		SMTP_CLIENT_CAP_ENHANCED == SMTP_REPLY_CAP_ENHANCED &&
		SMTP_CLIENT_CAP_SMTPUTF8 == SMTP_REPLY_CAP_SMTPUTF8 &&
		SMTP_CLIENT_CAP_STARTTLS == SMTP_REPLY_CAP_STARTTLS,
		"smtp_client caps are smtp_reply's");
_Static_assert(SMTP_CLIENT_ENH_MAX == SMTP_REPLY_ENH_MAX &&
		SMTP_CLIENT_TEXT_MAX == SMTP_REPLY_TEXT_MAX,
		"smtp_client results hold smtp_reply texts");

enum smtp_client_state {
	SMTP_CLIENT_STATE_GREETING = 0, /* connected, waiting for 220 */
	SMTP_CLIENT_STATE_EHLO,         /* EHLO sent */
	SMTP_CLIENT_STATE_HELO,         /* EHLO refused, HELO sent */
	SMTP_CLIENT_STATE_STARTTLS,     /* STARTTLS sent (RFC 3207) */
	SMTP_CLIENT_STATE_HANDSHAKE,    /* 220 seen: the caller runs TLS */
	SMTP_CLIENT_STATE_AUTH,         /* AUTH PLAIN sent (RFC 4954) */
	SMTP_CLIENT_STATE_READY,        /* idle */
	SMTP_CLIENT_STATE_TX,           /* MAIL/RCPT/DATA replies outstanding */
	SMTP_CLIENT_STATE_BODY,         /* 354 seen, the caller sends the body */
	SMTP_CLIENT_STATE_DOT,          /* final dot sent */
	SMTP_CLIENT_STATE_DOT_TX,       /* the next message's MAIL, RCPT, DATA
	                                   sent behind that dot (RFC 2920 3.1):
	                                   the dot's reply comes first */
	SMTP_CLIENT_STATE_QUIT,         /* QUIT sent */
	SMTP_CLIENT_STATE_CLOSED,
};

static const char *const smtp_client_state_names[] = {
	"GREETING", "EHLO", "HELO", "STARTTLS", "HANDSHAKE", "AUTH", "READY", "TX", "BODY", "DOT", "DOT_TX", "QUIT",
	"CLOSED",
};

/* What the session waits for: picks the timeout and names the phase in
 * "lost connection while ..." texts. */
enum smtp_client_wait {
	SMTP_CLIENT_WAIT_NONE = 0,
	SMTP_CLIENT_WAIT_GREETING,
	SMTP_CLIENT_WAIT_EHLO,
	SMTP_CLIENT_WAIT_HELO,
	SMTP_CLIENT_WAIT_STARTTLS,
	SMTP_CLIENT_WAIT_TLS,
	SMTP_CLIENT_WAIT_AUTH,
	SMTP_CLIENT_WAIT_MAIL,
	SMTP_CLIENT_WAIT_RCPT,
	SMTP_CLIENT_WAIT_DATA,
	SMTP_CLIENT_WAIT_BODY,
	SMTP_CLIENT_WAIT_DOT,
	SMTP_CLIENT_WAIT_RSET,
	SMTP_CLIENT_WAIT_QUIT,
};

static const struct {
	unsigned ms;
	const char *phase;
} smtp_client_waits[] = {
	[SMTP_CLIENT_WAIT_NONE] = { 0, "idle" },
	[SMTP_CLIENT_WAIT_GREETING] = { SMTP_CLIENT_TIMEOUT_GREETING_MS,
		"receiving the initial server greeting" },
	[SMTP_CLIENT_WAIT_EHLO] = { SMTP_CLIENT_TIMEOUT_HELO_MS, "sending EHLO" },
	[SMTP_CLIENT_WAIT_HELO] = { SMTP_CLIENT_TIMEOUT_HELO_MS, "sending HELO" },
	[SMTP_CLIENT_WAIT_STARTTLS] = { SMTP_CLIENT_TIMEOUT_STARTTLS_MS, "sending STARTTLS" },
	[SMTP_CLIENT_WAIT_TLS] = { SMTP_CLIENT_TIMEOUT_TLS_MS,
		"performing the TLS handshake" },
	[SMTP_CLIENT_WAIT_AUTH] = { SMTP_CLIENT_TIMEOUT_AUTH_MS, "sending AUTH" },
	[SMTP_CLIENT_WAIT_MAIL] = { SMTP_CLIENT_TIMEOUT_MAIL_MS, "sending MAIL FROM" },
	[SMTP_CLIENT_WAIT_RCPT] = { SMTP_CLIENT_TIMEOUT_RCPT_MS, "sending RCPT TO" },
	[SMTP_CLIENT_WAIT_DATA] = { SMTP_CLIENT_TIMEOUT_DATA_MS, "sending DATA" },
	[SMTP_CLIENT_WAIT_BODY] = { SMTP_CLIENT_TIMEOUT_BLOCK_MS, "sending message body" },
	[SMTP_CLIENT_WAIT_DOT] = { SMTP_CLIENT_TIMEOUT_DOT_MS, "sending end of data" },
	[SMTP_CLIENT_WAIT_RSET] = { SMTP_CLIENT_TIMEOUT_RSET_MS, "sending RSET" },
	[SMTP_CLIENT_WAIT_QUIT] = { SMTP_CLIENT_TIMEOUT_QUIT_MS, "sending QUIT" },
};

/* Where a recipient stands within its message. */
enum smtp_client_rstate {
	SMTP_CLIENT_RCPT_PENDING = 0, /* RCPT not answered (or not sent) */
	SMTP_CLIENT_RCPT_ACCEPTED,    /* 2xx to RCPT, waits for the final reply */
	SMTP_CLIENT_RCPT_DONE,        /* result set */
};

struct smtp_client_rcpt {
	struct smtp_client_result r; /* r.text set when the message finishes */
	size_t text_off;             /* r's text in c->tx->texts */
	enum smtp_client_rstate state;
};

/* One submitted message: its recipients' results and what decides them.
 * Two per session: with PIPELINING the next message's commands go out
 * behind the final dot of the last (RFC 2920 3.1), so while that dot's
 * reply is awaited one message waits for its verdict (prev) and the next
 * runs its commands (tx). */
struct smtp_client_tx {
	int in_msg;                   /* submitted, its MSG_DONE not given yet */
	unsigned nrcpt;               /* recipients of the caller's message */
	int mail_ok;
	unsigned naccepted;
	int msg_code;
	int has_results;
	struct buf rcpts;             /* struct smtp_client_rcpt[nrcpt] */
	struct buf texts;             /* reply texts the results point into */
};

struct smtp_client {
	const struct smtp_client_conf *conf;
	enum smtp_client_state state;
	unsigned caps;                /* SMTP_CLIENT_CAP_* EHLO agreed */
	uint64_t size_max;
	struct smtp_client_tx txs[2];
	struct smtp_client_tx *tx;    /* the newest message (commands, body, dot) */
	struct smtp_client_tx *prev;  /* DOT_TX: the one whose dot reply is
	                                 awaited before tx's replies; else NULL */
	struct smtp_client_tx *res;   /* the one whose results the caller reads */
	/* tx's commands: MAIL, one RCPT per recipient sent, DATA (only one
	 * message is ever in its command phase) */
	unsigned ncmd, sent, acked;
	unsigned first;               /* index of MAIL: 1 when an owed RSET leads */
	int rset_owed;                /* an aborted transaction is still open */
	unsigned nonmail;             /* EHLO, HELO and RSET sent this session */
	struct buf cmds;              /* the formatted commands, back to back */
	struct buf cmd_end;           /* size_t: end offset of each in cmds */
	struct buf rcpt_map;          /* unsigned: caller index of each RCPT sent */
	struct smtp_reply_reader rd;  /* replies; rd.r the one just read */
	struct smtp_client_result close_reason;
	int has_close_reason;
	enum smtp_client_tls tls;     /* STARTTLS policy (smtp_client_set_tls) */
	int tls_on;                   /* smtp_client_tls_up() called */
	int tls_refused;              /* ended on the TLS policy */
	char *auth_line;              /* "AUTH PLAIN <b64>\r\n" or NULL
	                                 (smtp_client_set_auth); wiped on free */
	unsigned auth_mechs;          /* SMTP_REPLY_AUTH_* the EHLO offered */
	int authed;                   /* 2xx to AUTH */
	int auth_refused;             /* ended because AUTH could not be done */
	char close_text[SMTP_CLIENT_TEXT_MAX];
	char peer[SMTPC_PEER_MAX];
	char line[];                  /* conf->reply_line_max octets, rd's line buffer */
};

static void smtp_client_enter_state(struct smtp_client *c, enum smtp_client_state s)
{
	log_debug("smtp client %s: %s -> %s", c->peer,
			smtp_client_state_names[c->state], smtp_client_state_names[s]);
	c->state = s;
}

static enum smtp_client_wait smtp_client_waiting(const struct smtp_client *c)
{
	switch (c->state) {
	case SMTP_CLIENT_STATE_GREETING: return SMTP_CLIENT_WAIT_GREETING;
	case SMTP_CLIENT_STATE_EHLO: return SMTP_CLIENT_WAIT_EHLO;
	case SMTP_CLIENT_STATE_HELO: return SMTP_CLIENT_WAIT_HELO;
	case SMTP_CLIENT_STATE_STARTTLS: return SMTP_CLIENT_WAIT_STARTTLS;
	case SMTP_CLIENT_STATE_HANDSHAKE: return SMTP_CLIENT_WAIT_TLS;
	case SMTP_CLIENT_STATE_AUTH: return SMTP_CLIENT_WAIT_AUTH;
	case SMTP_CLIENT_STATE_TX:
		if (c->acked < c->first)
			return SMTP_CLIENT_WAIT_RSET;
		if (c->acked == c->first)
			return SMTP_CLIENT_WAIT_MAIL;
		return c->acked + 1 < c->ncmd ? SMTP_CLIENT_WAIT_RCPT : SMTP_CLIENT_WAIT_DATA;
	case SMTP_CLIENT_STATE_BODY: return SMTP_CLIENT_WAIT_BODY;
	case SMTP_CLIENT_STATE_DOT:
	case SMTP_CLIENT_STATE_DOT_TX: return SMTP_CLIENT_WAIT_DOT;
	case SMTP_CLIENT_STATE_QUIT: return SMTP_CLIENT_WAIT_QUIT;
	default: return SMTP_CLIENT_WAIT_NONE;
	}
}

static enum smtp_client_status smtp_client_status_of(int code)
{
	if (code / 100 == 2)
		return SMTP_CLIENT_DELIVERED;
	return code / 100 == 4 ? SMTP_CLIENT_DEFERRED : SMTP_CLIENT_BOUNCED;
}

/* Keep text (already printable) for results; returns its offset. When the
 * buffer cannot grow, the results lose their text, not their status. */
static size_t smtp_client_save_text(struct smtp_client_tx *tx, const char *t, size_t *len)
{
	size_t off = tx->texts.len;

	if (buf_append(&tx->texts, t, *len) != 0)
		*len = 0;
	return off;
}

static struct smtp_client_rcpt *smtp_client_rcpt_at(struct smtp_client_tx *tx, unsigned i)
{
	return (struct smtp_client_rcpt *)tx->rcpts.data + i;
}

/* Set the result of the undecided recipients to this reply: those accepted
 * by RCPT (accepted != 0) and/or those not (pending != 0). */
/* enh (NUL-terminated, from smtp_reply or our constants) into a result,
 * cut to fit: a plain copy, this runs once per recipient. */
static void smtp_client_set_enh(char out[SMTP_CLIENT_ENH_MAX], const char *enh)
{
	size_t n = strnlen(enh, SMTP_CLIENT_ENH_MAX - 1);

	memcpy(out, enh, n);
	out[n] = '\0';
}

/* Whether enh is the server's own enhanced code: the reply reader's,
 * which read one (not a class stand-in, not one of our constants). */
static int smtp_client_enh_sent(const struct smtp_client *c, const char *enh, int local)
{
	return !local && enh == c->rd.r.enh && c->rd.r.enh_sent;
}

static void smtp_client_decide(struct smtp_client *c, struct smtp_client_tx *tx,
		int accepted, int pending, int code, const char *enh, const char *text,
		size_t text_len, int local)
{
	size_t off = smtp_client_save_text(tx, text, &text_len);
	unsigned i;

	for (i = 0; i < tx->nrcpt; i++) {
		struct smtp_client_rcpt *r = smtp_client_rcpt_at(tx, i);

		if (r->state == SMTP_CLIENT_RCPT_DONE ||
				(r->state == SMTP_CLIENT_RCPT_ACCEPTED && !accepted) ||
				(r->state == SMTP_CLIENT_RCPT_PENDING && !pending))
			continue;
		r->state = SMTP_CLIENT_RCPT_DONE;
		r->r.status = smtp_client_status_of(code);
		r->r.code = code;
		smtp_client_set_enh(r->r.enh, enh);
		r->r.enh_sent = smtp_client_enh_sent(c, enh, local);
		r->text_off = off;
		r->r.text_len = text_len;
		r->r.local = local;
	}
}

/* One recipient, from the current reply. */
static void smtp_client_decide_one(struct smtp_client *c, unsigned i)
{
	struct smtp_client_rcpt *r = smtp_client_rcpt_at(c->tx, i);
	size_t len = c->rd.r.text_len;

	r->text_off = smtp_client_save_text(c->tx, c->rd.r.text, &len);
	r->state = SMTP_CLIENT_RCPT_DONE;
	r->r.status = smtp_client_status_of(c->rd.r.code);
	r->r.code = c->rd.r.code;
	memcpy(r->r.enh, c->rd.r.enh, sizeof(r->r.enh));
	r->r.enh_sent = c->rd.r.enh_sent;
	r->r.text_len = len;
	r->r.local = 0;
}

/* A locally made result for one recipient (submit-time refusals). */
static void smtp_client_decide_local(struct smtp_client *c, unsigned i, int code,
		const char *enh, const char *text)
{
	struct smtp_client_rcpt *r = smtp_client_rcpt_at(c->tx, i);
	size_t len = strlen(text);

	r->text_off = smtp_client_save_text(c->tx, text, &len);
	r->state = SMTP_CLIENT_RCPT_DONE;
	r->r.status = smtp_client_status_of(code);
	r->r.code = code;
	snprintf(r->r.enh, sizeof(r->r.enh), "%s", enh);
	r->r.enh_sent = 0;
	r->r.text_len = len;
	r->r.local = 1;
}

/* Message tx is over: point result texts into tx->texts (it does not move
 * again until the next submit), make its results the ones the caller
 * reads, and go idle (or stay closed) when it was the newest one. */
static enum smtp_client_event smtp_client_finish_tx(struct smtp_client *c,
		struct smtp_client_tx *tx)
{
	unsigned i;

	for (i = 0; i < tx->nrcpt; i++) {
		struct smtp_client_rcpt *r = smtp_client_rcpt_at(tx, i);

		if (r->state != SMTP_CLIENT_RCPT_DONE)
			panic("recipient %u of %u undecided", i, tx->nrcpt);
		r->r.text = r->r.text_len ? tx->texts.data + r->text_off : "";
	}
	tx->in_msg = 0;
	tx->has_results = 1;
	c->res = tx;
	if (tx == c->tx && !c->prev && c->state != SMTP_CLIENT_STATE_CLOSED &&
			c->state != SMTP_CLIENT_STATE_READY)
		smtp_client_enter_state(c, SMTP_CLIENT_STATE_READY);
	return SMTP_CLIENT_EV_MSG_DONE;
}

static enum smtp_client_event smtp_client_finish(struct smtp_client *c)
{
	return smtp_client_finish_tx(c, c->tx);
}

static void smtp_client_set_close_reason(struct smtp_client *c, int code,
		const char *enh, const char *text, size_t len, int local)
{
	struct smtp_client_result *r = &c->close_reason;

	if (c->has_close_reason)
		return; /* the first reason is the one that matters */
	if (len > sizeof(c->close_text))
		len = sizeof(c->close_text);
	memcpy(c->close_text, text, len);
	r->status = smtp_client_status_of(code);
	r->code = code;
	snprintf(r->enh, sizeof(r->enh), "%s", enh);
	r->enh_sent = smtp_client_enh_sent(c, enh, local);
	r->text = c->close_text;
	r->text_len = len;
	r->local = local;
	c->has_close_reason = 1;
}

/* The session ends now, without QUIT: undecided recipients get this reply
 * (deferred: callers only pass 4xx). */
static enum smtp_client_event smtp_client_fail(struct smtp_client *c, int code,
		const char *enh, const char *text, size_t len, int local)
{
	char logtext[LOG_TEXT_MAX];

	log_info("smtp client %s: session failed in %s: %d %s %s", c->peer,
			smtp_client_state_names[c->state], code, enh,
			log_printable(logtext, sizeof(logtext), text, len));
	smtp_client_set_close_reason(c, code, enh, text, len, local);
	smtp_client_enter_state(c, SMTP_CLIENT_STATE_CLOSED);
	smtp_reply_reset(&c->rd);
	if (c->tx->in_msg)
		smtp_client_decide(c, c->tx, 1, 1, code, enh, text, len, local);
	if (c->prev) {
		/* Both messages lose: the one behind the dot first; tx's
		 * MSG_DONE follows from the next feed (smtp_client_closed_tx()). */
		struct smtp_client_tx *p = c->prev;

		smtp_client_decide(c, p, 1, 1, code, enh, text, len, local);
		c->prev = NULL;
		return smtp_client_finish_tx(c, p);
	}
	if (!c->tx->in_msg)
		return SMTP_CLIENT_EV_CLOSE;
	return smtp_client_finish(c);
}

/* CLOSED: the pipelined message the failure decided along with the one
 * before it is reported now; then the session is over. */
static enum smtp_client_event smtp_client_closed_tx(struct smtp_client *c)
{
	return c->tx->in_msg ? smtp_client_finish(c) : SMTP_CLIENT_EV_CLOSE;
}

/* Local failure "<what> while <phase>", 451 with enh. */
static enum smtp_client_event smtp_client_fail_local(struct smtp_client *c,
		const char *enh, const char *what)
{
	char text[SMTP_CLIENT_TEXT_MAX];
	int n;

	n = snprintf(text, sizeof(text), "%s while %s", what,
			smtp_client_waits[smtp_client_waiting(c)].phase);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(text))
		n = (int)sizeof(text) - 1;
	return smtp_client_fail(c, 451, enh, text, (size_t)n, 1);
}

/* RFC 3463 4.5.0: the server broke the protocol. */
static enum smtp_client_event smtp_client_protocol_error(struct smtp_client *c,
		const char *what)
{
	char buf[SMTP_CLIENT_TEXT_MAX];

	snprintf(buf, sizeof(buf), "protocol error: %s", what);
	return smtp_client_fail_local(c, "4.5.0", buf);
}

/* Append a command to out; a full buffer ends the session (RFC 3463
 * 4.3.0: our own resource problem, deferred). */
static int smtp_client_write(struct smtp_client *c, struct buf *out,
		const char *p, size_t n)
{
	if (buf_append(out, p, n) == 0)
		return 0;
	log_warn("smtp client %s: output buffer full", c->peer);
	return -1;
}

static enum smtp_client_event smtp_client_write_failed(struct smtp_client *c)
{
	return smtp_client_fail_local(c, "4.3.0", "cannot queue command");
}

static enum smtp_client_event smtp_client_send(struct smtp_client *c, struct buf *out,
		const char *cmd, enum smtp_client_state next)
{
	if (smtp_client_write(c, out, cmd, strlen(cmd)) != 0)
		return smtp_client_write_failed(c);
	smtp_client_enter_state(c, next);
	return SMTP_CLIENT_EV_NEED_INPUT;
}

/* Commands [from, to) of the transaction. */
static int smtp_client_send_cmds(struct smtp_client *c, struct buf *out,
		unsigned from, unsigned to)
{
	const size_t *end = (const size_t *)c->cmd_end.data;
	size_t a = from ? end[from - 1] : 0;

	if (smtp_client_write(c, out, c->cmds.data + a, end[to - 1] - a) != 0)
		return -1;
	c->sent = to;
	return 0;
}

/* ---- session: greeting, EHLO, HELO, QUIT ------------------------------ */

static enum smtp_client_event smtp_client_send_helo(struct smtp_client *c,
		struct buf *out, const char *verb, enum smtp_client_state next)
{
	char cmd[SMTPC_CMD_MAX];
	int n;

	n = snprintf(cmd, sizeof(cmd), "%s %s\r\n", verb, c->conf->helo_name);
	if (n < 0 || (size_t)n >= sizeof(cmd))
		panic("helo_name too long");
	c->nonmail++;
	return smtp_client_send(c, out, cmd, next);
}

/* RFC 5321 3.1/3.2: a refused greeting or EHLO/HELO: say QUIT, then close. */
static enum smtp_client_event smtp_client_refused(struct smtp_client *c, struct buf *out)
{
	struct smtp_reply *rp = &c->rd.r;

	smtp_client_set_close_reason(c, rp->code, rp->enh, rp->text, rp->text_len, 0);
	return smtp_client_send(c, out, "QUIT\r\n", SMTP_CLIENT_STATE_QUIT);
}

static enum smtp_client_event smtp_client_on_greeting(struct smtp_client *c, struct buf *out)
{
	if (c->rd.r.code / 100 != 2)
		return smtp_client_refused(c, out); /* 554 and friends */
	return smtp_client_send_helo(c, out, "EHLO", SMTP_CLIENT_STATE_EHLO);
}

/* The TLS policy cannot be met: QUIT with the reason (451 enh text,
 * local); the caller holds the mail. */
static enum smtp_client_event smtp_client_tls_quit(struct smtp_client *c,
		struct buf *out, const char *enh, const char *text, size_t len)
{
	char logtext[LOG_TEXT_MAX];

	log_info("smtp client %s: %s", c->peer,
			log_printable(logtext, sizeof(logtext), text, len));
	smtp_client_set_close_reason(c, 451, enh, text, len, 1);
	c->tls_refused = 1;
	return smtp_client_send(c, out, "QUIT\r\n", SMTP_CLIENT_STATE_QUIT);
}

/* AUTH cannot be done: QUIT with the reason (451 4.7.0 text, local, or
 * the server's refusal when rp is set); the caller holds the mail. */
static enum smtp_client_event smtp_client_auth_quit(struct smtp_client *c,
		struct buf *out, const struct smtp_reply *rp, const char *text)
{
	char logtext[LOG_TEXT_MAX];

	if (rp) {
		log_info("smtp client %s: AUTH refused: %d %s %s", c->peer, rp->code, rp->enh,
				log_printable(logtext, sizeof(logtext), rp->text, rp->text_len));
		smtp_client_set_close_reason(c, rp->code, rp->enh, rp->text, rp->text_len, 0);
	} else {
		log_info("smtp client %s: %s", c->peer, text);
		smtp_client_set_close_reason(c, 451, "4.7.0", text, strlen(text), 1);
	}
	c->auth_refused = 1;
	return smtp_client_send(c, out, "QUIT\r\n", SMTP_CLIENT_STATE_QUIT);
}

/* Set-up done, TLS settled: AUTH PLAIN when the session has credentials
 * (RFC 4954 4: the initial response saves a round trip), else idle. The
 * line is never logged. */
static enum smtp_client_event smtp_client_ready(struct smtp_client *c, struct buf *out)
{
	if (c->auth_line && !c->authed) {
		if (!(c->auth_mechs & SMTP_REPLY_AUTH_PLAIN))
			return smtp_client_auth_quit(c, out, NULL,
					"AUTH PLAIN is required, but was not offered by host");
		c->nonmail++;
		return smtp_client_send(c, out, c->auth_line, SMTP_CLIENT_STATE_AUTH);
	}
	smtp_client_enter_state(c, SMTP_CLIENT_STATE_READY);
	return SMTP_CLIENT_EV_READY;
}

/* The reply to AUTH PLAIN: 2xx (235) is success; 334 is a protocol error
 * (the initial response was sent); anything else refuses. */
static enum smtp_client_event smtp_client_on_auth(struct smtp_client *c, struct buf *out)
{
	int cls = c->rd.r.code / 100;

	if (cls == 3)
		return smtp_client_protocol_error(c, "unexpected challenge to AUTH PLAIN");
	if (cls != 2)
		return smtp_client_auth_quit(c, out, &c->rd.r, NULL);
	c->authed = 1;
	smtp_client_enter_state(c, SMTP_CLIENT_STATE_READY);
	return SMTP_CLIENT_EV_READY;
}

/* The session is set up (EHLO or HELO answered 2xx): STARTTLS first when
 * the policy asks for it and TLS is not up yet (RFC 3207 4), else idle. */
static enum smtp_client_event smtp_client_setup_done(struct smtp_client *c,
		struct buf *out)
{
	static const char not_offered[] = "TLS is required, but was not offered by host";

	if (!c->tls_on && c->tls != SMTP_CLIENT_TLS_NONE) {
		if (c->caps & SMTP_CLIENT_CAP_STARTTLS) {
			c->nonmail++;
			return smtp_client_send(c, out, "STARTTLS\r\n",
					SMTP_CLIENT_STATE_STARTTLS);
		}
		if (c->tls == SMTP_CLIENT_TLS_MUST)
			return smtp_client_tls_quit(c, out, "4.7.4", not_offered,
					sizeof(not_offered) - 1);
	}
	return smtp_client_ready(c, out);
}

/* The reply to STARTTLS (RFC 3207 4): 220 hands over to the caller's
 * handshake; anything else (454 TLS not available, 501, 5xx) means no
 * TLS on this session: may goes on in the clear with what the EHLO
 * offered (the server is still in its pre-STARTTLS state), must quits. */
static enum smtp_client_event smtp_client_on_starttls(struct smtp_client *c,
		struct buf *out)
{
	struct smtp_reply *rp = &c->rd.r;
	char text[SMTP_CLIENT_TEXT_MAX];
	int n;

	if (rp->code / 100 == 2) {
		smtp_client_enter_state(c, SMTP_CLIENT_STATE_HANDSHAKE);
		smtp_reply_reset(&c->rd);
		return SMTP_CLIENT_EV_STARTTLS;
	}
	n = snprintf(text, sizeof(text), "host refused to start TLS: %d %s %.*s", rp->code,
			rp->enh, (int)rp->text_len, rp->text);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(text))
		n = (int)sizeof(text) - 1;
	if (c->tls == SMTP_CLIENT_TLS_MUST) {
		char must[SMTP_CLIENT_TEXT_MAX];
		int m = snprintf(must, sizeof(must), "TLS is required, but %.*s", n, text);

		if (m < 0)
			m = 0;
		if ((size_t)m >= sizeof(must))
			m = (int)sizeof(must) - 1;
		return smtp_client_tls_quit(c, out, "4.7.4", must, (size_t)m);
	}
	log_info("smtp client %s: %.*s; going on without TLS", c->peer, n, text);
	return smtp_client_ready(c, out);
}

static enum smtp_client_event smtp_client_on_ehlo(struct smtp_client *c, struct buf *out)
{
	int cls = c->rd.r.code / 100;

	if (cls == 2) {
		c->caps = c->rd.r.caps & SMTPC_CAPS;
		c->auth_mechs = c->rd.r.caps & SMTP_REPLY_CAP_AUTH ? c->rd.r.auth : 0;
		c->size_max = c->rd.r.size_max;
		return smtp_client_setup_done(c, out);
	}
	/* RFC 5321 3.2: a server that does not know EHLO says 5xx; try
	 * HELO. A 4xx is a temporary refusal of the session. */
	if (cls == 5)
		return smtp_client_send_helo(c, out, "HELO", SMTP_CLIENT_STATE_HELO);
	return smtp_client_refused(c, out);
}

static enum smtp_client_event smtp_client_on_helo(struct smtp_client *c, struct buf *out)
{
	if (c->rd.r.code / 100 != 2)
		return smtp_client_refused(c, out);
	c->caps = 0;
	c->auth_mechs = 0;
	c->size_max = 0;
	return smtp_client_setup_done(c, out);
}

/* ---- transaction ------------------------------------------------------ */

/*
 * The transaction ends without the dot while the server holds it (MAIL was
 * accepted): RFC 5321 3.3 says a new MAIL resets the server's buffers, but
 * 4.1.4 lets a server refuse a MAIL inside an open transaction with 503
 * (Postfix: "nested MAIL command", Exim: "sender already given"), so an
 * RSET is owed before the next MAIL. It is sent lazily: pipelined in front
 * of the next MAIL (RFC 2920 3.1 allows RSET anywhere in a group), and not
 * at all before QUIT, which ends the transaction anyway (RFC 5321 4.1.1.10).
 * That saves a round trip per aborted transaction and an RSET per session
 * against servers that count non-mail commands (Exim closes with "421 too
 * many nonmail commands" after smtp_accept_max_nonmail, 10 by default).
 */
static enum smtp_client_event smtp_client_rset(struct smtp_client *c, struct buf *out)
{
	(void)out;
	c->rset_owed = 1;
	return smtp_client_finish(c);
}

static enum smtp_client_event smtp_client_on_data(struct smtp_client *c, struct buf *out)
{
	int cls = c->rd.r.code / 100;

	if (cls == 3) {
		if (c->tx->mail_ok && c->tx->naccepted > 0) {
			smtp_client_enter_state(c, SMTP_CLIENT_STATE_BODY);
			return SMTP_CLIENT_EV_SEND_BODY;
		}
		/* RFC 2920 3.1: no recipient was accepted, yet the DATA was:
		 * send a lone dot (an empty message to nobody), never the body.
		 * The results already came from the RCPT replies. */
		return smtp_client_send(c, out, ".\r\n", SMTP_CLIENT_STATE_DOT);
	}
	if (cls == 2)
		return smtp_client_protocol_error(c, "2xx reply to DATA");
	if (!c->tx->mail_ok)
		return smtp_client_finish(c); /* no transaction is open */
	if (c->tx->naccepted > 0) {
		c->tx->msg_code = c->rd.r.code;
		smtp_client_decide(c, c->tx, 1, 0, c->rd.r.code, c->rd.r.enh, c->rd.r.text,
				c->rd.r.text_len, 0);
	}
	return smtp_client_rset(c, out);
}

/* The reply to the owed RSET that leads the transaction's commands. A
 * refused RSET ends the session: a server that will not reset is not to be
 * trusted with the message (it is deferred). */
static enum smtp_client_event smtp_client_on_rset(struct smtp_client *c, struct buf *out)
{
	struct smtp_reply *rp = &c->rd.r;

	c->acked++;
	if (rp->code / 100 != 2)
		return smtp_client_fail(c, rp->code / 100 == 4 ? rp->code : 451,
				rp->code / 100 == 4 ? rp->enh : "4.5.0", rp->text, rp->text_len, 0);
	if (c->acked < c->sent)
		return SMTP_CLIENT_EV_NEED_INPUT; /* pipelined MAIL, RCPT, DATA to come */
	if (smtp_client_send_cmds(c, out, c->sent, c->sent + 1) != 0)
		return smtp_client_write_failed(c);
	return SMTP_CLIENT_EV_NEED_INPUT;
}

static enum smtp_client_event smtp_client_on_tx(struct smtp_client *c, struct buf *out)
{
	const unsigned *map = (const unsigned *)c->rcpt_map.data;
	unsigned idx = c->acked;
	int cls = c->rd.r.code / 100;

	if (idx < c->first)
		return smtp_client_on_rset(c, out);
	if (idx + 1 == c->ncmd) {
		c->acked++;
		return smtp_client_on_data(c, out);
	}
	if (cls == 3)
		return smtp_client_protocol_error(c, idx == c->first ? "3xx reply to MAIL FROM" :
				"3xx reply to RCPT TO");
	c->acked++;
	if (idx == c->first) {
		if (cls == 2) {
			c->tx->mail_ok = 1;
		} else {
			/* A refused MAIL refuses every recipient; with
			 * pipelining the RCPT and DATA replies still come
			 * (503s) and are read but change nothing. */
			c->tx->msg_code = c->rd.r.code;
			smtp_client_decide(c, c->tx, 0, 1, c->rd.r.code, c->rd.r.enh,
					c->rd.r.text, c->rd.r.text_len, 0);
		}
	} else if (c->tx->mail_ok) {
		unsigned i = map[idx - 1 - c->first];

		if (cls == 2) {
			smtp_client_rcpt_at(c->tx, i)->state = SMTP_CLIENT_RCPT_ACCEPTED;
			c->tx->naccepted++;
		} else {
			smtp_client_decide_one(c, i);
		}
	}
	if (c->acked < c->sent)
		return SMTP_CLIENT_EV_NEED_INPUT; /* pipelined replies to come */
	/* Without pipelining: decide what to send next. */
	if (!c->tx->mail_ok)
		return smtp_client_finish(c);
	if (c->sent < c->ncmd) {
		/* All RCPTs answered and none accepted: no DATA at all. */
		if (c->sent + 1 == c->ncmd && c->tx->naccepted == 0)
			return smtp_client_rset(c, out);
		if (smtp_client_send_cmds(c, out, c->sent, c->sent + 1) != 0)
			return smtp_client_write_failed(c);
		return SMTP_CLIENT_EV_NEED_INPUT;
	}
	panic("transaction out of commands (%u/%u)", c->sent, c->ncmd);
}

static enum smtp_client_event smtp_client_on_dot(struct smtp_client *c, struct buf *out)
{
	int cls = c->rd.r.code / 100;

	(void)out;
	if (cls == 3)
		return smtp_client_protocol_error(c, "3xx reply to end of data");
	if (c->tx->mail_ok && c->tx->naccepted > 0) {
		c->tx->msg_code = c->rd.r.code;
		smtp_client_decide(c, c->tx, 1, 0, c->rd.r.code, c->rd.r.enh, c->rd.r.text,
				c->rd.r.text_len, 0);
	}
	return smtp_client_finish(c);
}

/* DOT_TX: the reply to the previous message's final dot, ahead of the
 * replies to the next one's commands (RFC 2920 3.1: in order). Only this
 * reply decides that message; the next one goes on in TX. */
static enum smtp_client_event smtp_client_on_dot_tx(struct smtp_client *c, struct buf *out)
{
	struct smtp_client_tx *p = c->prev;

	(void)out;
	if (c->rd.r.code / 100 == 3)
		return smtp_client_protocol_error(c, "3xx reply to end of data");
	if (p->mail_ok && p->naccepted > 0) {
		p->msg_code = c->rd.r.code;
		smtp_client_decide(c, p, 1, 0, c->rd.r.code, c->rd.r.enh, c->rd.r.text,
				c->rd.r.text_len, 0);
	}
	c->prev = NULL;
	smtp_client_enter_state(c, SMTP_CLIENT_STATE_TX);
	return smtp_client_finish_tx(c, p);
}

/* A whole reply has been read. */
/* A reply where none is awaited: between transactions or while the body
 * goes out. Only 421 (handled before) is allowed there. */
static enum smtp_client_event smtp_client_on_unexpected(struct smtp_client *c,
		struct buf *out)
{
	(void)out;
	return smtp_client_protocol_error(c, "unexpected reply");
}

/* What a complete reply means, by state (QUIT and CLOSED are handled in
 * smtp_client_on_reply()). */
typedef enum smtp_client_event (*smtp_client_reply_fn)(struct smtp_client *c,
		struct buf *out);

static const smtp_client_reply_fn smtp_client_reply_table[] = {
	[SMTP_CLIENT_STATE_GREETING] = smtp_client_on_greeting,
	[SMTP_CLIENT_STATE_EHLO] = smtp_client_on_ehlo,
	[SMTP_CLIENT_STATE_HELO] = smtp_client_on_helo,
	[SMTP_CLIENT_STATE_STARTTLS] = smtp_client_on_starttls,
	[SMTP_CLIENT_STATE_HANDSHAKE] = smtp_client_on_unexpected,
	[SMTP_CLIENT_STATE_AUTH] = smtp_client_on_auth,
	[SMTP_CLIENT_STATE_READY] = smtp_client_on_unexpected,
	[SMTP_CLIENT_STATE_TX] = smtp_client_on_tx,
	[SMTP_CLIENT_STATE_BODY] = smtp_client_on_unexpected,
	[SMTP_CLIENT_STATE_DOT] = smtp_client_on_dot,
	[SMTP_CLIENT_STATE_DOT_TX] = smtp_client_on_dot_tx,
};

static enum smtp_client_event smtp_client_on_reply(struct smtp_client *c, struct buf *out)
{
	struct smtp_reply *rp = &c->rd.r;

	if (log_enabled(LOGL_DEBUG)) {
		char logtext[LOG_TEXT_MAX];

		log_debug("smtp client %s: < %d %s %s", c->peer, rp->code, rp->enh,
				log_printable(logtext, sizeof(logtext), rp->text, rp->text_len));
	}
	if (c->state == SMTP_CLIENT_STATE_QUIT) {
		smtp_client_enter_state(c, SMTP_CLIENT_STATE_CLOSED);
		return SMTP_CLIENT_EV_CLOSE;
	}
	/* RFC 5321 3.8: 421 may answer anything, or come unasked; the server
	 * closes after it. */
	if (rp->code == 421)
		return smtp_client_fail(c, rp->code, rp->enh, rp->text, rp->text_len, 0);
	if ((size_t)c->state >= sizeof(smtp_client_reply_table) /
			sizeof(smtp_client_reply_table[0]))
		panic("reply in state %s", smtp_client_state_names[c->state]);
	return smtp_client_reply_table[c->state](c, out);
}

/* ---- public ----------------------------------------------------------- */

struct smtp_client *smtp_client_new(const struct smtp_client_conf *conf, const char *peer)
{
	struct smtp_client *c;
	size_t i;

	if (conf->helo_name == NULL || strlen(conf->helo_name) > SMTP_DOMAIN_MAX ||
			conf->reply_line_max < SMTP_CLIENT_LINE_MIN ||
			conf->max_reply_lines == 0)
		panic("bad smtp_client_conf");
	c = calloc(1, sizeof(*c) + conf->reply_line_max);
	if (c == NULL)
		return NULL;
	c->conf = conf;
	c->state = SMTP_CLIENT_STATE_GREETING;
	smtp_reply_init(&c->rd, c->line, conf->reply_line_max, conf->max_reply_lines);
	for (i = 0; peer && peer[i] && i < sizeof(c->peer) - 1; i++) {
		unsigned char ch = (unsigned char)peer[i];

		c->peer[i] = ch > 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	c->peer[i] = '\0';
	buf_init(&c->cmds, 0);
	buf_init(&c->cmd_end, 0);
	buf_init(&c->rcpt_map, 0);
	for (i = 0; i < 2; i++) {
		buf_init(&c->txs[i].rcpts, 0);
		buf_init(&c->txs[i].texts, 0);
	}
	c->tx = &c->txs[0];
	return c;
}

struct smtp_client *smtp_client_free(struct smtp_client *c)
{
	if (c == NULL)
		return NULL;
	buf_free(&c->cmds);
	buf_free(&c->cmd_end);
	buf_free(&c->rcpt_map);
	for (size_t i = 0; i < 2; i++) {
		buf_free(&c->txs[i].rcpts);
		buf_free(&c->txs[i].texts);
	}
	if (c->auth_line) {
		explicit_bzero(c->auth_line, strlen(c->auth_line));
		free(c->auth_line);
	}
	free(c);
	return NULL;
}

size_t smtp_client_feed(struct smtp_client *c, const char *p, size_t n,
		struct buf *out, enum smtp_client_event *ev)
{
	size_t i = 0;

	if (c->state == SMTP_CLIENT_STATE_CLOSED) {
		*ev = smtp_client_closed_tx(c);
		return 0;
	}
	if (n == 0) {
		if (c->state == SMTP_CLIENT_STATE_QUIT) {
			smtp_client_enter_state(c, SMTP_CLIENT_STATE_CLOSED);
			*ev = SMTP_CLIENT_EV_CLOSE;
			return 0;
		}
		*ev = smtp_client_fail_local(c, "4.4.2", "lost connection with server");
		return 0;
	}
	while (i < n) {
		enum smtp_reply_status st;

		i += smtp_reply_feed(&c->rd, p + i, n - i, &st);
		if (st == SMTP_REPLY_AGAIN)
			continue;
		*ev = st == SMTP_REPLY_DONE ? smtp_client_on_reply(c, out) :
			smtp_client_protocol_error(c, smtp_reply_error(st));
		if (*ev != SMTP_CLIENT_EV_NEED_INPUT)
			return i;
	}
	*ev = SMTP_CLIENT_EV_NEED_INPUT;
	return n;
}

/* CR, LF or NUL would end or break the command line; RFC 5321 4.5.3.1.3
 * bounds a path at 256 octets with its brackets. */
static int smtp_client_addr_bad(const char *a, size_t n)
{
	return n > SMTP_PATH_MAX - 2 || memchr(a, '\r', n) || memchr(a, '\n', n) ||
		memchr(a, '\0', n);
}

static int smtp_client_addr_8bit(const char *a, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)a[i] >= 0x80)
			return 1;
	return 0;
}

/* Every recipient gets the same local result; the message is over. */
static int smtp_client_refuse_all(struct smtp_client *c, int err, int code,
		const char *enh, const char *text)
{
	unsigned i;

	log_info("smtp client %s: message not sent: %d %s %s", c->peer, code, enh, text);
	for (i = 0; i < c->tx->nrcpt; i++)
		if (smtp_client_rcpt_at(c->tx, i)->state != SMTP_CLIENT_RCPT_DONE)
			smtp_client_decide_local(c, i, code, enh, text);
	(void)smtp_client_finish(c);
	return err;
}

/* Record the end of the command just formatted into c->cmds. */
static int smtp_client_cmd_done(struct smtp_client *c)
{
	size_t end = c->cmds.len;

	return buf_append(&c->cmd_end, &end, sizeof(end));
}

/* " SIZE=<decimal>" of n into out (SMTPC_SIZE_PARAM_MAX); its length. */
#define SMTPC_SIZE_PARAM_MAX 32
static size_t smtp_client_size_param(char *out, uint64_t n)
{
	char digits[24];
	size_t k = 0, len = sizeof(" SIZE=") - 1;

	do {
		digits[k++] = (char)('0' + n % 10u);
		n /= 10u;
	} while (n);
	memcpy(out, " SIZE=", len);
	while (k)
		out[len++] = digits[--k];
	return len;
}

/* "<head><addr>>" then the params and CRLF: one command line into c->cmds
 * (appended piece by piece: no printf on the per-message path). */
static int smtp_client_put_cmd(struct smtp_client *c, const char *head, size_t hlen,
		const char *addr, size_t alen, const char *params, size_t plen)
{
	if (buf_reserve(&c->cmds, hlen + alen + plen + 3) != 0)
		return -ENOMEM;
	(void)buf_append(&c->cmds, head, hlen);
	(void)buf_append(&c->cmds, addr, alen);
	(void)buf_append(&c->cmds, ">", 1);
	(void)buf_append(&c->cmds, params, plen);
	(void)buf_append(&c->cmds, "\r\n", 2);
	return smtp_client_cmd_done(c);
}

/* Format MAIL, RCPTs and DATA into c->cmds with the end of each. Addresses
 * were checked (length, no CR/LF/NUL), so every line is well-formed. */
static int smtp_client_format(struct smtp_client *c, const struct smtp_client_msg *m,
		int utf8)
{
	static const char body8[] = " BODY=8BITMIME", smtputf8[] = " SMTPUTF8";
	char params[SMTPC_SIZE_PARAM_MAX + sizeof(body8) + sizeof(smtputf8)];
	size_t plen = 0;
	unsigned i;

	if (c->caps & SMTP_CLIENT_CAP_SIZE)
		plen = smtp_client_size_param(params, m->size);
	if (m->eightbit) {
		memcpy(params + plen, body8, sizeof(body8) - 1);
		plen += sizeof(body8) - 1;
	}
	if (utf8) {
		memcpy(params + plen, smtputf8, sizeof(smtputf8) - 1);
		plen += sizeof(smtputf8) - 1;
	}
	if (c->rset_owed) {
		if (buf_append(&c->cmds, "RSET\r\n", 6) != 0 || smtp_client_cmd_done(c) != 0)
			return -ENOMEM;
		c->first = 1;
	}
	if (smtp_client_put_cmd(c, "MAIL FROM:<", 11, m->sender, m->sender_len, params,
				plen) != 0)
		return -ENOMEM;
	for (i = 0; i < c->tx->nrcpt; i++) {
		if (smtp_client_rcpt_at(c->tx, i)->state == SMTP_CLIENT_RCPT_DONE)
			continue;
		if (smtp_client_put_cmd(c, "RCPT TO:<", 9, m->rcpt[i], m->rcpt_len[i], "",
					0) != 0 ||
				buf_append(&c->rcpt_map, &i, sizeof(i)) != 0)
			return -ENOMEM;
	}
	if (buf_append(&c->cmds, "DATA\r\n", 6) != 0 || smtp_client_cmd_done(c) != 0)
		return -ENOMEM;
	c->ncmd = (unsigned)(c->cmd_end.len / sizeof(size_t));
	return 0;
}

static void smtp_client_reset_msg(struct smtp_client *c)
{
	struct buf *bufs[] = { &c->cmds, &c->cmd_end, &c->rcpt_map, &c->tx->rcpts, &c->tx->texts };
	size_t i;

	for (i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
		buf_reset(bufs[i]);
		if (bufs[i]->cap > SMTPC_SHRINK_OVER)
			buf_shrink(bufs[i], SMTPC_KEEP);
	}
	c->tx->nrcpt = 0;
	c->ncmd = c->sent = c->acked = c->first = 0;
	c->tx->mail_ok = 0;
	c->tx->naccepted = 0;
	c->tx->msg_code = 0;
	c->tx->has_results = 0;
}

/* submit into c->tx (a fresh slot); TX, or DOT_TX behind a dot. */
static int smtp_client_submit_tx(struct smtp_client *c, const struct smtp_client_msg *m,
		struct buf *out)
{
	unsigned i, left = 0, bad8 = 0;
	int utf8, r;

	smtp_client_reset_msg(c);
	c->res = c->tx; /* no results (has_results 0) unless decided here */
	if (buf_reserve(&c->tx->rcpts, (size_t)m->nrcpt * sizeof(struct smtp_client_rcpt)) != 0)
		return -ENOMEM; /* no results to hold them in */
	memset(c->tx->rcpts.data, 0, (size_t)m->nrcpt * sizeof(struct smtp_client_rcpt));
	c->tx->rcpts.len = (size_t)m->nrcpt * sizeof(struct smtp_client_rcpt);
	c->tx->nrcpt = m->nrcpt;
	c->tx->in_msg = 1;

	if (smtp_client_addr_bad(m->sender, m->sender_len))
		return smtp_client_refuse_all(c, -EBADMSG, 553, "5.1.7",
				"bad sender address syntax");
	/* RFC 1870 6.1: do not send what the server said it will not take. */
	if ((c->caps & SMTP_CLIENT_CAP_SIZE) && c->size_max > 0 && m->size > c->size_max)
		return smtp_client_refuse_all(c, -E2BIG, 552, "5.3.4",
				"message size exceeds fixed maximum message size of server");
	/* RFC 6152 3: no 8-bit body to a server without 8BITMIME (we do not
	 * convert to quoted-printable). */
	if (m->eightbit && !(c->caps & SMTP_CLIENT_CAP_8BITMIME))
		return smtp_client_refuse_all(c, -EMEDIUMTYPE, 554, "5.6.3",
				"8-bit message body, but server does not support 8BITMIME");
	utf8 = m->smtputf8 || smtp_client_addr_8bit(m->sender, m->sender_len);
	/* RFC 6531 3.4: no SMTPUTF8 message to a server without it. */
	if (utf8 && !(c->caps & SMTP_CLIENT_CAP_SMTPUTF8))
		return smtp_client_refuse_all(c, -EILSEQ, 553, "5.6.7",
				"SMTPUTF8 message, but server does not support SMTPUTF8");
	for (i = 0; i < m->nrcpt; i++) {
		if (smtp_client_addr_bad(m->rcpt[i], m->rcpt_len[i])) {
			smtp_client_decide_local(c, i, 553, "5.1.3",
					"bad recipient address syntax");
		} else if (smtp_client_addr_8bit(m->rcpt[i], m->rcpt_len[i])) {
			if (c->caps & SMTP_CLIENT_CAP_SMTPUTF8) {
				utf8 = 1;
				left++;
			} else {
				smtp_client_decide_local(c, i, 553, "5.6.7",
					"non-ASCII recipient address, but server does not support SMTPUTF8");
				bad8++;
			}
		} else {
			left++;
		}
	}
	if (left == 0) {
		(void)smtp_client_finish(c);
		return bad8 ? -EILSEQ : -EBADMSG;
	}
	r = smtp_client_format(c, m, utf8);
	/* RFC 2920 3.1: MAIL, every RCPT and DATA in one group; else one
	 * command per reply. */
	if (r == 0)
		r = smtp_client_send_cmds(c, out, 0, c->caps & SMTP_CLIENT_CAP_PIPELINING ?
				c->ncmd : 1);
	if (r != 0)
		return smtp_client_refuse_all(c, -ENOMEM, 451, "4.3.0",
				"insufficient memory to send the message");
	if (c->first) {
		c->rset_owed = 0;
		c->nonmail++;
	}
	smtp_client_enter_state(c, c->prev ? SMTP_CLIENT_STATE_DOT_TX : SMTP_CLIENT_STATE_TX);
	return 0;
}

int smtp_client_can_submit(const struct smtp_client *c)
{
	/* RFC 2920 3.1: after the final dot (the end of DATA's group) the
	 * next MAIL may follow at once; the body still waits for its 354.
	 * A dot always ends the transaction, so no RSET is owed there. */
	return c->state == SMTP_CLIENT_STATE_READY ||
		(c->state == SMTP_CLIENT_STATE_DOT && (c->caps & SMTP_CLIENT_CAP_PIPELINING) &&
		 !c->rset_owed && !c->prev);
}

int smtp_client_submit(struct smtp_client *c, const struct smtp_client_msg *m,
		struct buf *out)
{
	int behind = c->state == SMTP_CLIENT_STATE_DOT, r;

	if (!smtp_client_can_submit(c))
		return -EBUSY;
	if (m->nrcpt == 0)
		return -EINVAL;
	if (behind) {
		c->prev = c->tx;
		c->tx = &c->txs[c->tx == &c->txs[0]];
	}
	r = smtp_client_submit_tx(c, m, out);
	if (behind && r != 0) {
		/* Decided here, nothing sent: the dot's reply is still next. */
		c->tx = c->prev;
		c->prev = NULL;
	}
	return r;
}

int smtp_client_body_sent(struct smtp_client *c, struct buf *out)
{
	int r;

	if (c->state != SMTP_CLIENT_STATE_BODY)
		return -EBUSY;
	r = buf_append(out, ".\r\n", 3);
	if (r != 0)
		return r;
	smtp_client_enter_state(c, SMTP_CLIENT_STATE_DOT);
	return 0;
}

const struct smtp_client_result *smtp_client_result(const struct smtp_client *c,
		unsigned i)
{
	if (!c->res || !c->res->has_results || i >= c->res->nrcpt)
		return NULL;
	return &((const struct smtp_client_rcpt *)c->res->rcpts.data)[i].r;
}

int smtp_client_msg_code(const struct smtp_client *c)
{
	return c->res && c->res->has_results ? c->res->msg_code : 0;
}

int smtp_client_quit(struct smtp_client *c, struct buf *out)
{
	int r;

	if (c->state != SMTP_CLIENT_STATE_READY)
		return -EBUSY;
	r = buf_append(out, "QUIT\r\n", 6);
	if (r != 0)
		return r;
	smtp_client_enter_state(c, SMTP_CLIENT_STATE_QUIT);
	return 0;
}

unsigned smtp_client_timeout_ms(const struct smtp_client *c)
{
	return smtp_client_waits[smtp_client_waiting(c)].ms;
}

enum smtp_client_event smtp_client_abort(struct smtp_client *c, const char *why)
{
	if (c->state == SMTP_CLIENT_STATE_CLOSED)
		return smtp_client_closed_tx(c);
	return smtp_client_fail(c, 451, "4.4.2", why, strlen(why), 1);
}

enum smtp_client_event smtp_client_timed_out(struct smtp_client *c)
{
	if (c->state == SMTP_CLIENT_STATE_CLOSED)
		return smtp_client_closed_tx(c);
	return smtp_client_fail_local(c, "4.4.2", "conversation timed out");
}

int smtp_client_worn(const struct smtp_client *c)
{
	return c->rset_owed && c->nonmail >= SMTP_CLIENT_NONMAIL_MAX;
}

int smtp_client_closed(const struct smtp_client *c)
{
	return c->state == SMTP_CLIENT_STATE_CLOSED;
}

const struct smtp_client_result *smtp_client_close_reason(const struct smtp_client *c)
{
	return c->has_close_reason ? &c->close_reason : NULL;
}

int smtp_client_set_tls(struct smtp_client *c, enum smtp_client_tls level)
{
	if (c->state != SMTP_CLIENT_STATE_GREETING || smtp_reply_busy(&c->rd))
		return -EBUSY;
	c->tls = level;
	return 0;
}

int smtp_client_starttls_sent(const struct smtp_client *c)
{
	return c->state == SMTP_CLIENT_STATE_STARTTLS;
}

int smtp_client_tls_up(struct smtp_client *c, struct buf *out)
{
	if (c->state != SMTP_CLIENT_STATE_HANDSHAKE)
		return -EBUSY;
	/* RFC 3207 4.2: discard what the server said before; EHLO again. */
	c->tls_on = 1;
	c->caps = c->auth_mechs = 0;
	c->size_max = 0;
	smtp_reply_reset(&c->rd);
	if (smtp_client_send_helo(c, out, "EHLO", SMTP_CLIENT_STATE_EHLO) ==
			SMTP_CLIENT_EV_CLOSE)
		return -ENOMEM;
	return 0;
}

int smtp_client_tls_reject(struct smtp_client *c, struct buf *out, const char *enh,
		const char *why)
{
	if (c->state != SMTP_CLIENT_STATE_HANDSHAKE)
		return -EBUSY;
	if (smtp_client_tls_quit(c, out, enh, why, strlen(why)) == SMTP_CLIENT_EV_CLOSE)
		return -ENOMEM;
	return 0;
}

int smtp_client_tls_refused(const struct smtp_client *c)
{
	return c->tls_refused;
}

int smtp_client_tls_on(const struct smtp_client *c)
{
	return c->tls_on;
}

unsigned smtp_client_caps(const struct smtp_client *c, uint64_t *size_max)
{
	if (size_max)
		*size_max = c->size_max;
	return c->caps;
}

int smtp_client_save(const struct smtp_client *c, struct smtp_client_session *s)
{
	if (c->state != SMTP_CLIENT_STATE_READY || c->tx->in_msg)
		return -EINVAL;
	s->caps = c->caps;
	s->size_max = c->size_max;
	s->nonmail = c->nonmail;
	s->rset_owed = c->rset_owed;
	s->tls_on = c->tls_on;
	return 0;
}

int smtp_client_resume(struct smtp_client *c, const struct smtp_client_session *s)
{
	if (c->state != SMTP_CLIENT_STATE_GREETING || smtp_reply_busy(&c->rd) || c->nonmail)
		return -EINVAL;
	c->caps = s->caps;
	c->size_max = s->size_max;
	c->nonmail = s->nonmail;
	c->rset_owed = s->rset_owed;
	c->tls_on = s->tls_on;
	smtp_client_enter_state(c, SMTP_CLIENT_STATE_READY);
	return 0;
}

int smtp_client_set_auth(struct smtp_client *c, const char *user, const char *pass)
{
	char plain[SMTPC_PLAIN_MAX], b64[BASE64_ENCODED_LEN(SMTPC_PLAIN_MAX) + 1];
	size_t ul = user ? strlen(user) : 0, pl = pass ? strlen(pass) : 0;
	int n, rc = 0;

	if (c->state != SMTP_CLIENT_STATE_GREETING || smtp_reply_busy(&c->rd) || c->auth_line)
		return -EBUSY;
	if (ul == 0 || ul > SMTP_CLIENT_AUTH_PART_MAX || pl > SMTP_CLIENT_AUTH_PART_MAX)
		return -EINVAL;
	plain[0] = '\0';
	memcpy(plain + 1, user, ul);
	plain[1 + ul] = '\0';
	memcpy(plain + 2 + ul, pass, pl);
	n = base64_encode(b64, sizeof(b64), plain, 2 + ul + pl);
	c->auth_line = n < 0 ? NULL : malloc(SMTPC_AUTH_LINE_MAX);
	if (n < 0 || !c->auth_line ||
			snprintf(c->auth_line, SMTPC_AUTH_LINE_MAX, "AUTH PLAIN %s\r\n", b64) < 0) {
		free(c->auth_line);
		c->auth_line = NULL;
		rc = n < 0 ? -EINVAL : -ENOMEM;
	}
	explicit_bzero(plain, sizeof(plain));
	explicit_bzero(b64, sizeof(b64));
	return rc;
}

int smtp_client_authed(const struct smtp_client *c)
{
	return c->authed;
}

int smtp_client_auth_refused(const struct smtp_client *c)
{
	return c->auth_refused;
}
