/* SPDX-License-Identifier: MIT */
/*
 * milter: the milter connections of one engine thread (see milter.h). A
 * milter session (struct milter_sess) belongs to one SMTP session and one
 * milter; its state enum says what it waits for, and milter_enter_state()
 * logs every change. The bytes are milter_codec's; this file decides what
 * to send when, and what the answers mean for the SMTP session.
 *
 * Lifetime: the SMTP session's run calls end() when it is over; a session
 * with a connection (or a connect in flight) then lives on until the loop
 * says the connection is gone (ops->close or ops->connected with an
 * error), and is freed there. A verdict is never given after end().
 */
#include "proto/milter.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "proto/milter_codec.h"
#include "proto/smtp_check.h"
#include "proto/smtp_server.h"
#include "proto/smtpd.h"

/* What we let a filter do (SMFIF_*): header edits and quarantine. Body
 * replacement, recipient and sender changes are not offered: the filter
 * must not ask for them (libmilter refuses to run without an action it
 * registered; so does the negotiation, MILTER_E_ACTIONS). */
#define MILTER_OFFER_ACTIONS (MILTER_F_ADDHDRS | MILTER_F_CHGHDRS | MILTER_F_QUARANTINE | \
			      MILTER_F_SETSYMLIST)
/* Events a filter may decline or not answer, and SMFIR_SKIP. */
#define MILTER_OFFER_PROTO (MILTER_P_NOSEND_MASK | MILTER_P_NR_MASK | MILTER_P_SKIP)
/* Between stages the filter waits for our next event; the SMTP session's
 * own clocks bound that wait, so the connection's is only a backstop. */
#define MILTER_IDLE_MS (24u * 3600u * 1000u)

_Static_assert(METRIC_MILTER_FAIL_7 - METRIC_MILTER_FAIL_0 + 1 == CONFIG_MILTERS_MAX,
	       "one failure counter per milter");

enum milter_state {
	MILTER_S_CONNECTING = 0, /* loop_connect() issued */
	MILTER_S_OPTNEG,         /* OPTNEG sent, waiting for the filter's */
	MILTER_S_READY,          /* negotiated, nothing asked */
	MILTER_S_REPLY,          /* an event sent, waiting for its answer */
	MILTER_S_EOM,            /* EOB sent: edits, then the verdict */
	MILTER_S_DONE,           /* out of this session: accepted it, or failed */
};

static const char *const milter_state_names[] = {
	"CONNECTING", "OPTNEG", "READY", "REPLY", "EOM", "DONE",
};

struct milter_filter {
	struct milters *m;
	unsigned index;             /* in cfg->milters: the metric's label */
	const char *name;           /* cfg->milters[index].text */
};

struct milters {
	const struct config *cfg;
	struct loop *l;
	unsigned n;
	struct milter_filter f[CONFIG_MILTERS_MAX];
};

struct milter_sess {
	struct milter_filter *f;
	struct conn *c;             /* NULL: not (or no longer) connected */
	enum milter_state state;
	int connecting;             /* loop_connect() is out */
	int ended;                  /* the SMTP session is over: free at close */
	int failed;                 /* milter_default_action for the rest */
	int accepted;               /* the filter accepted the session */
	int skip_msg;               /* the filter accepted this message */
	int in_msg;                 /* MAIL sent, EOB not answered */
	int hold;                   /* SMFIR_QUARANTINE for this message */
	struct milter_neg agreed;
	enum milter_cmd last;       /* the event whose answer is awaited */
	/* The stage in progress (job != NULL). */
	struct smtp_check_job *job;
	const struct smtp_session *s;
	enum smtp_check_stage stage;
	unsigned step;              /* where in the stage's events */
	const char *body;           /* EOM: the stored message */
	size_t body_len, off;
	int at_bol;                 /* EOM body: off is at a line start */
	struct milter_reader rd;
	uint8_t rbuf[MILTER_FRAME_SMALL];
};

static void milter_enter_state(struct milter_sess *ms, enum milter_state st)
{
	log_debug("milter %s: %s -> %s", ms->f->name, milter_state_names[ms->state],
		  milter_state_names[st]);
	ms->state = st;
}

static const struct conn_ops milter_conn_ops;

static void milter_sess_free(struct milter_sess *ms)
{
	free(ms);
}

/* Answer the stage's job (if one is out) with kind and the filter's text. */
static void milter_answer(struct milter_sess *ms, enum smtp_verdict_kind kind,
		const char *reply, size_t reply_len, const char *why)
{
	struct smtp_check_job *job = ms->job;
	struct smtp_verdict v = { kind, reply, reply_len, ms->f->name, why };

	if (!job)
		return;
	ms->job = NULL;
	ms->s = NULL;
	ms->body = NULL;
	smtp_check_answer(job, &v);
}

/* The answer milter_default_action gives. */
static enum smtp_verdict_kind milter_default_kind(const struct milter_sess *ms)
{
	switch (ms->f->m->cfg->milter_default_action) {
	case CONFIG_MILTER_ACCEPT:
		return SMTP_VERDICT_CONTINUE;
	case CONFIG_MILTER_REJECT:
		return SMTP_VERDICT_REJECT;
	default:
		return SMTP_VERDICT_TEMPFAIL;
	}
}

/* The filter is down, slow or out of step: say so once, count it, drop
 * the connection, and give milter_default_action, now and for the rest
 * of the session (as Postfix does). */
static void milter_fail(struct milter_sess *ms, const char *why)
{
	static const char *const actions[] = { "tempfail", "accept", "reject" };
	int act = ms->f->m->cfg->milter_default_action;

	if (!ms->failed)
		log_warn("milter %s: %s (stage %s): milter_default_action = %s", ms->f->name, why,
			 smtp_check_stage_name(ms->stage), actions[act]);
	if (!ms->failed)
		metrics_add((enum metric_id)(METRIC_MILTER_FAIL_0 + ms->f->index), 1);
	ms->failed = 1;
	if (ms->state != MILTER_S_DONE)
		milter_enter_state(ms, MILTER_S_DONE);
	if (ms->c)
		conn_close(ms->c); /* ops->close follows; nothing more is sent */
	milter_answer(ms, milter_default_kind(ms), NULL, 0, why);
}

/* Room for one command in the output: a pointer to write it at. */
static uint8_t *milter_room(struct milter_sess *ms, size_t need)
{
	struct buf *out = conn_out(ms->c);

	if (buf_reserve(out, need) != 0)
		return NULL;
	return (uint8_t *)out->data + out->len;
}

/* An encoder wrote n octets (or failed): keep them. 0, or -1 after
 * milter_fail(). */
static int milter_took(struct milter_sess *ms, ssize_t n, const char *what)
{
	char why[96];

	if (n < 0) {
		snprintf(why, sizeof(why), "cannot encode %s: %s", what,
			 milter_strerror((enum milter_err)-n));
		milter_fail(ms, why);
		return -1;
	}
	conn_out(ms->c)->len += (size_t)n;
	return 0;
}

/* Send the macros that go with cmd. */
static int milter_macros(struct milter_sess *ms, enum milter_cmd cmd,
		const struct milter_str *kv, size_t n)
{
	size_t need = MILTER_LEN_OCTETS + 2, i;
	uint8_t *p;

	for (i = 0; i < 2 * n; i++)
		need += kv[i].len + 1;
	p = milter_room(ms, need);
	if (!p) {
		milter_fail(ms, "out of memory");
		return -1;
	}
	return milter_took(ms, milter_encode_macro(p, need, cmd, kv, n), "macros");
}

#define MSTR(s) ((struct milter_str){ (s), strlen(s) })

/* Send one event (encoded in p[0..n) by the caller); wait for its answer
 * when the filter gives one. Returns 1 when waiting, 0 when not, -1 on
 * failure (milter_fail() done). */
static int milter_event(struct milter_sess *ms, enum milter_cmd cmd, ssize_t n)
{
	if (milter_took(ms, n, milter_cmd_name((uint8_t)cmd)))
		return -1;
	if (!milter_cmd_wants_reply(cmd, ms->agreed.proto))
		return 0;
	ms->last = cmd;
	conn_set_timeout(ms->c, ms->stage == SMTP_CHECK_EOM ?
			 ms->f->m->cfg->milter_content_timeout_ms :
			 ms->f->m->cfg->milter_command_timeout_ms);
	milter_enter_state(ms, cmd == MILTER_CMD_BODYEOB ? MILTER_S_EOM : MILTER_S_REPLY);
	return 1;
}

/* The client's address family for SMFIC_CONNECT. */
static char milter_family(const char *addr)
{
	return strchr(addr, ':') ? MILTER_FAMILY_INET6 : MILTER_FAMILY_INET;
}

/* One header of the stored body at ms->off: name and value (without the
 * space after the colon and the final CRLF; a stuffing dot dropped).
 * Returns 1 and advances, or 0 at the end of the headers (ms->off is then
 * where the body starts). */
static int milter_next_header(struct milter_sess *ms, struct milter_str *name,
		struct milter_str *value)
{
	const char *b = ms->body;
	size_t n = ms->body_len, i = ms->off, end, colon;

	if (i >= n)
		return 0;
	if (n - i >= 2 && b[i] == '\r' && b[i + 1] == '\n') {
		ms->off = i + 2;
		return 0;
	}
	end = i;
	for (;;) {
		const char *lf = memchr(b + end, '\n', n - end);

		end = lf ? (size_t)(lf - b) + 1 : n;
		if (end >= n || (b[end] != ' ' && b[end] != '\t'))
			break;
	}
	if (b[i] == '.')
		i++;
	for (colon = i; colon < end && b[colon] != ':' && b[colon] != '\r'; colon++)
		;
	if (colon == end || b[colon] != ':' || colon == i)
		return 0; /* not a header: the body starts here (RFC 5322 2.1) */
	name->p = b + i;
	name->len = colon - i;
	value->p = b + colon + 1;
	value->len = end - colon - 1;
	if (value->len && value->p[0] == ' ') {
		value->p++;
		value->len--;
	}
	if (value->len >= 2 && value->p[value->len - 2] == '\r')
		value->len -= 2;
	else if (value->len >= 1 && value->p[value->len - 1] == '\n')
		value->len -= 1;
	ms->off = end;
	return 1;
}

/* The next body chunk, un-dot-stuffed: up to the next stuffed line or
 * MILTER_CHUNK_MAX octets. 0 when the body is all sent. */
static size_t milter_next_chunk(struct milter_sess *ms, const char **p)
{
	const char *b = ms->body;
	size_t n = ms->body_len, start = ms->off, lim, k;

	if (ms->at_bol && start < n && b[start] == '.')
		start++; /* the stuffing dot (stored bodies are stuffed) */
	if (start >= n) {
		ms->off = n;
		return 0;
	}
	lim = n - start > MILTER_CHUNK_MAX ? start + MILTER_CHUNK_MAX : n;
	for (k = start; k + 2 < lim; k++) {
		const char *hit = memchr(b + k, '\n', lim - k - 1);

		if (!hit)
			break;
		k = (size_t)(hit - b);
		if (b[k + 1] == '.') {
			lim = k + 1;
			break;
		}
	}
	*p = b + start;
	ms->off = lim;
	ms->at_bol = lim >= 1 && b[lim - 1] == '\n';
	return lim - start;
}

/* Go on with the stage: send its events until one is to be answered, or
 * the stage is done (continue). */
static void milter_go(struct milter_sess *ms)
{
	const struct smtp_session *s = ms->s;
	const struct smtp_tx *tx;
	struct milter_str kv[8], name, value;
	const char *arg, *chunk;
	size_t alen, clen;
	uint8_t *p;
	int r;

	for (;;) {
		unsigned step = ms->step++;

		switch (ms->stage) {
		case SMTP_CHECK_CONNECT:
			if (step == 0) {
				const char *client = smtp_server_client(s);

				kv[0] = MSTR("j");
				kv[1] = MSTR(ms->f->m->cfg->hostname);
				kv[2] = MSTR("{daemon_name}");
				kv[3] = MSTR("etrnd");
				kv[4] = MSTR("{client_addr}");
				kv[5] = MSTR(client);
				kv[6] = MSTR("{client_name}");
				kv[7] = MSTR("unknown");
				if (milter_macros(ms, MILTER_CMD_CONNECT, kv, 4))
					return;
				if (milter_cmd_skipped(MILTER_CMD_CONNECT, ms->agreed.proto))
					continue;
				p = milter_room(ms, MILTER_CMD_MAX);
				r = p ? milter_event(ms, MILTER_CMD_CONNECT,
						     milter_encode_connect(p, MILTER_CMD_MAX, MSTR("unknown"),
									   milter_family(client), 0, MSTR(client))) : -1;
				if (!p)
					milter_fail(ms, "out of memory");
				if (r)
					return;
				continue;
			}
			break;
		case SMTP_CHECK_HELO:
			if (step == 0) {
				if (milter_cmd_skipped(MILTER_CMD_HELO, ms->agreed.proto))
					continue;
				arg = smtp_server_check_arg(s, &alen);
				p = milter_room(ms, MILTER_CMD_MAX);
				r = p ? milter_event(ms, MILTER_CMD_HELO,
						     milter_encode_helo(p, MILTER_CMD_MAX,
									(struct milter_str){ arg, alen })) : -1;
				if (!p)
					milter_fail(ms, "out of memory");
				if (r)
					return;
				continue;
			}
			break;
		case SMTP_CHECK_MAIL:
		case SMTP_CHECK_RCPT: {
			int mail = ms->stage == SMTP_CHECK_MAIL;
			enum milter_cmd cmd = mail ? MILTER_CMD_MAIL : MILTER_CMD_RCPT;

			if (step == 0) {
				arg = smtp_server_check_arg(s, &alen);
				kv[0] = MSTR(mail ? "{mail_addr}" : "{rcpt_addr}");
				kv[1] = (struct milter_str){ arg, alen };
				kv[2] = MSTR("{auth_authen}");
				kv[3] = MSTR(smtp_server_user(s) ? smtp_server_user(s) : "");
				if (milter_macros(ms, cmd, kv, mail ? 2 : 1))
					return;
				if (milter_cmd_skipped(cmd, ms->agreed.proto))
					continue;
				p = milter_room(ms, MILTER_CMD_MAX);
				if (!p) {
					milter_fail(ms, "out of memory");
					return;
				}
				r = milter_event(ms, cmd, mail ?
						 milter_encode_mail(p, MILTER_CMD_MAX, (struct milter_str){ arg, alen }, NULL, 0) :
						 milter_encode_rcpt(p, MILTER_CMD_MAX, (struct milter_str){ arg, alen }, NULL, 0));
				if (r)
					return;
				continue;
			}
			break;
		}
		case SMTP_CHECK_DATA:
			if (step == 0) {
				if (milter_cmd_skipped(MILTER_CMD_DATA, ms->agreed.proto))
					continue;
				p = milter_room(ms, 8);
				r = p ? milter_event(ms, MILTER_CMD_DATA,
						     milter_encode_simple(p, 8, MILTER_CMD_DATA)) : -1;
				if (!p)
					milter_fail(ms, "out of memory");
				if (r)
					return;
				continue;
			}
			break;
		case SMTP_CHECK_EOM:
			/* step 0: headers, one per turn round; 1: EOH; 2: body
			 * chunks; 3: EOB with the queue id. */
			if (step == 0) {
				if (!milter_next_header(ms, &name, &value)) {
					ms->at_bol = 1;
					continue;
				}
				ms->step = 0; /* the next header next time */
				if (milter_cmd_skipped(MILTER_CMD_HEADER, ms->agreed.proto))
					continue;
				p = milter_room(ms, MILTER_CMD_MAX);
				r = p ? milter_event(ms, MILTER_CMD_HEADER,
						     milter_encode_header(p, MILTER_CMD_MAX, name, value)) : -1;
				if (!p)
					milter_fail(ms, "out of memory");
				if (r)
					return;
				continue;
			}
			if (step == 1) {
				if (milter_cmd_skipped(MILTER_CMD_EOH, ms->agreed.proto))
					continue;
				p = milter_room(ms, 8);
				r = p ? milter_event(ms, MILTER_CMD_EOH,
						     milter_encode_simple(p, 8, MILTER_CMD_EOH)) : -1;
				if (!p)
					milter_fail(ms, "out of memory");
				if (r)
					return;
				continue;
			}
			if (step == 2) {
				if (milter_cmd_skipped(MILTER_CMD_BODY, ms->agreed.proto))
					continue;
				clen = milter_next_chunk(ms, &chunk);
				if (clen == 0)
					continue;
				ms->step = 2;
				p = milter_room(ms, MILTER_CMD_MAX);
				r = p ? milter_event(ms, MILTER_CMD_BODY,
						     milter_encode_body(p, MILTER_CMD_MAX, chunk, clen)) : -1;
				if (!p)
					milter_fail(ms, "out of memory");
				if (r)
					return;
				continue;
			}
			if (step == 3) {
				tx = smtp_server_tx(s);
				kv[0] = MSTR("i");
				kv[1] = MSTR(smtp_tx_qid(tx));
				if (milter_macros(ms, MILTER_CMD_BODYEOB, kv, 1))
					return;
				p = milter_room(ms, 8);
				r = p ? milter_event(ms, MILTER_CMD_BODYEOB,
						     milter_encode_simple(p, 8, MILTER_CMD_BODYEOB)) : -1;
				if (!p)
					milter_fail(ms, "out of memory");
				if (r)
					return;
				continue;
			}
			break;
		default:
			break;
		}
		/* Every event of the stage sent, none to be answered: go on. */
		conn_flush(ms->c);
		conn_set_timeout(ms->c, MILTER_IDLE_MS);
		milter_enter_state(ms, MILTER_S_READY);
		milter_answer(ms, SMTP_VERDICT_CONTINUE, NULL, 0, NULL);
		return;
	}
}

/* Start the stage's events on a negotiated connection. */
static void milter_stage(struct milter_sess *ms)
{
	ms->step = 0;
	if (ms->stage == SMTP_CHECK_MAIL) {
		/* A transaction the filter saw begin and not end. */
		if (ms->in_msg) {
			uint8_t *p = milter_room(ms, 8);

			if (!p) {
				milter_fail(ms, "out of memory");
				return;
			}
			if (milter_took(ms, milter_encode_simple(p, 8, MILTER_CMD_ABORT), "abort"))
				return;
		}
		ms->in_msg = 1;
		ms->skip_msg = 0;
		ms->hold = 0;
	}
	if (ms->stage == SMTP_CHECK_EOM) {
		ms->body = smtp_tx_body(smtp_server_tx(ms->s), &ms->body_len);
		ms->off = 0;
	}
	milter_go(ms);
	if (ms->c && ms->state != MILTER_S_DONE)
		conn_flush(ms->c);
}

/* A stage the filter will not hear of: the session was accepted or failed,
 * or this message was accepted. */
static int milter_skip(struct milter_sess *ms, enum smtp_check_stage stage)
{
	if (ms->failed) {
		milter_answer(ms, milter_default_kind(ms), NULL, 0, "milter unavailable");
		return 1;
	}
	if (ms->accepted || (ms->skip_msg && stage > SMTP_CHECK_MAIL)) {
		milter_answer(ms, SMTP_VERDICT_CONTINUE, NULL, 0, NULL);
		return 1;
	}
	return 0;
}

/* smtp_checker.start: a stage of the SMTP session. */
static void milter_start(void *arg, void **state, const struct smtp_session *s,
		enum smtp_check_stage stage, struct smtp_check_job *job)
{
	struct milter_filter *f = arg;
	struct milter_sess *ms = *state;
	const struct config_listen *dst = &f->m->cfg->milters[f->index];
	int rc;

	if (!ms) {
		ms = calloc(1, sizeof(*ms));
		if (!ms) {
			struct smtp_verdict v = { SMTP_VERDICT_TEMPFAIL, NULL, 0, f->name, "out of memory" };

			smtp_check_answer(job, &v);
			return;
		}
		ms->f = f;
		milter_reader_init(&ms->rd, ms->rbuf, sizeof(ms->rbuf));
		*state = ms;
	}
	ms->job = job;
	ms->s = s;
	ms->stage = stage;
	if (stage == SMTP_CHECK_MAIL && (ms->skip_msg || ms->hold))
		ms->skip_msg = 0; /* a new message: the filter is asked again */
	if (milter_skip(ms, stage))
		return;
	if (ms->c && ms->state == MILTER_S_READY) {
		milter_stage(ms);
		return;
	}
	if (ms->connecting || ms->c)
		panic("milter %s: stage %s in state %s", f->name, smtp_check_stage_name(stage),
		      milter_state_names[ms->state]);
	/* The first stage: connect (the stage goes on once negotiated). */
	rc = loop_connect(f->m->l, (const struct sockaddr *)&dst->addr, dst->addrlen,
			  f->m->cfg->milter_connect_timeout_ms, &milter_conn_ops, f->m, ms);
	if (rc) {
		char why[96];

		snprintf(why, sizeof(why), "cannot connect: %s", strerror(-rc));
		milter_fail(ms, why);
		return;
	}
	ms->connecting = 1;
	milter_enter_state(ms, MILTER_S_CONNECTING);
}

/* smtp_checker.end: the SMTP session is over. */
static void milter_end(void *arg, void *state)
{
	struct milter_sess *ms = state;
	uint8_t *p;

	(void)arg;
	if (!ms)
		return;
	ms->ended = 1;
	ms->job = NULL; /* never answered now */
	ms->s = NULL;
	ms->body = NULL;
	if (ms->connecting)
		return; /* freed by milter_connected() */
	if (!ms->c) {
		milter_sess_free(ms);
		return;
	}
	/* SMFIC_QUIT: no answer; then close. */
	if (ms->state == MILTER_S_READY && (p = milter_room(ms, 8)) != NULL)
		(void)milter_took(ms, milter_encode_simple(p, 8, MILTER_CMD_QUIT), "quit");
	if (ms->state != MILTER_S_DONE)
		milter_enter_state(ms, MILTER_S_DONE);
	conn_close(ms->c);
}

/* ---- the connection --------------------------------------------------- */

static void *milter_connected(void *arg, struct conn *c, void *cookie, int err)
{
	struct milter_sess *ms = cookie;
	char why[96];
	uint8_t *p;

	(void)arg;
	ms->connecting = 0;
	if (ms->ended) {
		milter_sess_free(ms);
		return NULL; /* closes c */
	}
	if (err) {
		snprintf(why, sizeof(why), "cannot connect: %s", strerror(-err));
		milter_fail(ms, why);
		return NULL;
	}
	ms->c = c;
	conn_set_timeout(c, ms->f->m->cfg->milter_command_timeout_ms);
	p = milter_room(ms, MILTER_CMD_MAX);
	if (!p || milter_took(ms, milter_encode_optneg(p, MILTER_CMD_MAX, MILTER_VERSION,
						      MILTER_OFFER_ACTIONS, MILTER_OFFER_PROTO),
			      "optneg")) {
		if (!p)
			milter_fail(ms, "out of memory");
		return ms; /* closing: ops->close follows */
	}
	ms->last = MILTER_CMD_OPTNEG;
	milter_enter_state(ms, MILTER_S_OPTNEG);
	conn_flush(c);
	return ms;
}

/* A verdict from the filter for the event awaited. */
static void milter_verdict(struct milter_sess *ms, const struct milter_reply *r)
{
	int msg = ms->stage >= SMTP_CHECK_MAIL;

	milter_enter_state(ms, MILTER_S_READY);
	conn_set_timeout(ms->c, MILTER_IDLE_MS);
	if (ms->last == MILTER_CMD_BODYEOB)
		ms->in_msg = 0;
	switch (r->kind) {
	case MILTER_R_CONTINUE:
		if (ms->last == MILTER_CMD_BODYEOB) {
			milter_answer(ms, ms->hold ? SMTP_VERDICT_HOLD : SMTP_VERDICT_CONTINUE, NULL, 0,
				      ms->hold ? "quarantined" : NULL);
			return;
		}
		milter_go(ms); /* the stage's next event */
		if (ms->c && ms->state != MILTER_S_DONE)
			conn_flush(ms->c);
		return;
	case MILTER_R_ACCEPT:
		if (msg)
			ms->skip_msg = 1;
		else
			ms->accepted = 1;
		milter_answer(ms, ms->hold ? SMTP_VERDICT_HOLD : SMTP_VERDICT_ACCEPT, NULL, 0,
			      ms->hold ? "quarantined" : NULL);
		return;
	case MILTER_R_SKIP:
		ms->step = 3; /* no more body: EOB */
		milter_go(ms);
		if (ms->c && ms->state != MILTER_S_DONE)
			conn_flush(ms->c);
		return;
	case MILTER_R_REJECT:
		milter_answer(ms, SMTP_VERDICT_REJECT, NULL, 0, "rejected");
		return;
	case MILTER_R_TEMPFAIL:
		milter_answer(ms, SMTP_VERDICT_TEMPFAIL, NULL, 0, "tempfail");
		return;
	case MILTER_R_DISCARD:
		milter_answer(ms, SMTP_VERDICT_DISCARD, NULL, 0, "discard");
		return;
	case MILTER_R_REPLYCODE:
		milter_answer(ms, r->u.rc.code >= 500 ? SMTP_VERDICT_REJECT : SMTP_VERDICT_TEMPFAIL,
			      r->u.rc.raw.p, r->u.rc.raw.len, "reply code");
		return;
	case MILTER_R_SHUTDOWN:
	case MILTER_R_CONNFAIL:
		milter_answer(ms, SMTP_VERDICT_TEMPFAIL, NULL, 0, "filter shutting down");
		milter_fail(ms, "the filter ended the session");
		return;
	default:
		milter_fail(ms, "unexpected reply");
		return;
	}
}

/* One frame from the filter. */
static void milter_frame(struct milter_sess *ms, const struct milter_frame *fr)
{
	struct milter_reply r;
	struct milter_optneg on;
	enum milter_err e;
	char why[128];
	int rc = 0;

	e = milter_decode_reply(fr, &r);
	if (e == MILTER_OK && ms->state != MILTER_S_OPTNEG && ms->state != MILTER_S_REPLY &&
	    ms->state != MILTER_S_EOM)
		e = MILTER_E_UNEXPECTED;
	if (e == MILTER_OK)
		e = milter_reply_check(ms->last, r.kind, &ms->agreed);
	if (e == MILTER_OK && ms->state == MILTER_S_OPTNEG) {
		struct milter_neg offer = { MILTER_VERSION, MILTER_OFFER_ACTIONS, MILTER_OFFER_PROTO };

		on = r.u.optneg;
		e = milter_negotiate(&offer, &on, &ms->agreed);
		if (e == MILTER_OK) {
			log_debug("milter %s: negotiated version %u actions 0x%x protocol 0x%x",
				  ms->f->name, ms->agreed.version, ms->agreed.actions, ms->agreed.proto);
			milter_enter_state(ms, MILTER_S_READY);
			milter_stage(ms);
			return;
		}
	}
	if (e != MILTER_OK) {
		snprintf(why, sizeof(why), "protocol error: %s (%s after %s)", milter_strerror(e),
			 milter_reply_name(fr->cmd), milter_cmd_name((uint8_t)ms->last));
		milter_fail(ms, why);
		return;
	}
	switch (r.kind) {
	case MILTER_R_PROGRESS:
		conn_set_timeout(ms->c, ms->f->m->cfg->milter_content_timeout_ms);
		return;
	case MILTER_R_ADDHEADER:
	case MILTER_R_INSHEADER:
	case MILTER_R_CHGHEADER:
		if (ms->job)
			rc = smtp_check_edit(ms->job, r.kind == MILTER_R_ADDHEADER ? SMTP_HDR_ADD :
					     r.kind == MILTER_R_INSHEADER ? SMTP_HDR_INSERT : SMTP_HDR_CHANGE,
					     r.u.hdr.index, r.u.hdr.name.p, r.u.hdr.name.len,
					     r.u.hdr.value.p, r.u.hdr.value.len);
		if (rc) {
			snprintf(why, sizeof(why), "header edits over %u octets", SMTP_CHECK_EDITS_MAX);
			milter_fail(ms, why);
		}
		return;
	case MILTER_R_QUARANTINE:
		ms->hold = 1;
		return;
	default:
		milter_verdict(ms, &r);
		return;
	}
}

static size_t milter_data(void *arg, struct conn *c, void *st, const char *p, size_t n)
{
	struct milter_sess *ms = st;
	size_t off = 0;

	(void)arg;
	(void)c;
	if (ms->state == MILTER_S_DONE)
		return n; /* closing: nothing more is read */
	if (n == 0) {
		milter_fail(ms, milter_reader_pending(&ms->rd) ? "lost connection mid-reply" :
			    "lost connection");
		return 0;
	}
	while (off < n && ms->state != MILTER_S_DONE) {
		enum milter_read_status rs;
		struct milter_frame fr;
		enum milter_err e;

		off += milter_reader_feed(&ms->rd, (const uint8_t *)p + off, n - off, &rs, &fr, &e);
		if (rs == MILTER_READ_ERROR) {
			char why[96];

			snprintf(why, sizeof(why), "protocol error: %s", milter_strerror(e));
			milter_fail(ms, why);
			break;
		}
		if (rs == MILTER_READ_FRAME)
			milter_frame(ms, &fr);
	}
	return n;
}

static void milter_timeout(void *arg, struct conn *c, void *st)
{
	struct milter_sess *ms = st;

	(void)arg;
	(void)c;
	milter_fail(ms, ms->state == MILTER_S_EOM || ms->stage == SMTP_CHECK_EOM ?
		    "timeout (milter_content_timeout)" : "timeout (milter_command_timeout)");
}

static void milter_shutdown(void *arg, struct conn *c, void *st)
{
	(void)arg;
	(void)c;
	(void)st;
	/* The SMTP session ends (end()) or fails us; it waits for its check,
	 * which the timeouts bound. */
}

static void milter_close(void *arg, struct conn *c, void *st)
{
	struct milter_sess *ms = st;

	(void)arg;
	(void)c;
	ms->c = NULL;
	if (ms->ended) {
		milter_sess_free(ms);
		return;
	}
	if (ms->job)
		milter_fail(ms, "lost connection");
	ms->failed = 1;
	if (ms->state != MILTER_S_DONE)
		milter_enter_state(ms, MILTER_S_DONE);
}

static const struct conn_ops milter_conn_ops = {
	.data = milter_data,
	.timeout = milter_timeout,
	.shutdown = milter_shutdown,
	.close = milter_close,
	.connected = milter_connected,
};

/* ---- the thread's milters --------------------------------------------- */

struct milters *milters_new(const struct config *cfg, struct loop *l)
{
	struct milters *m = calloc(1, sizeof(*m));
	unsigned i;

	if (!m)
		return NULL;
	m->cfg = cfg;
	m->l = l;
	m->n = cfg->nmilters;
	for (i = 0; i < m->n; i++) {
		m->f[i].m = m;
		m->f[i].index = i;
		m->f[i].name = cfg->milters[i].text;
	}
	return m;
}

int milters_attach(struct milters *m, struct smtpd *d)
{
	unsigned i, st;
	int rc;

	for (i = 0; i < m->n; i++) {
		struct smtp_checker ck = { m->f[i].name, 0, milter_start, milter_end, &m->f[i] };

		for (st = SMTP_CHECK_CONNECT; st < SMTP_CHECK_STAGES; st++)
			ck.stages |= SMTP_CHECK_BIT(st);
		rc = smtpd_add_checker(d, &ck);
		if (rc)
			return rc;
	}
	return 0;
}

struct milters *milters_free(struct milters *m)
{
	free(m);
	return NULL;
}
