/* SPDX-License-Identifier: MIT */
/*
 * drain_conn: see drain_conn.h. Every callback (the loop's and the
 * spool's) looks at dc->state alone to know what the connection is doing;
 * spool_pending says whether the spool still owes it a callback, which is
 * what keeps the struct (and so its job) alive after the socket is gone.
 */
#include "proto/drain_conn.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ascii.h"
#include "core/log.h"
#include "core/now.h"
#include "proto/bounce.h"
#include "proto/qid.h"
#include "store/spool_rec.h"

#define DRAIN_CONNECT_TIMEOUT_MS 30000 /* Postfix smtp_connect_timeout */
#define DRAIN_ADDR_TEXT 300
#define DRAIN_DIAG_MAX 600             /* "550 5.1.1 " + a 512-octet reply */
#define DRAIN_DIAG_DEFAULT_STATUS "5.0.0"

struct drain_conn {
	enum drain_conn_state state;
	int spool_pending;             /* a read or commit owes us its callback */
	struct drain_job *job;
	struct conn *c;                /* from GREETING until CLOSED */
	struct smtp_client *cl;
	uint64_t msgid;                /* message in progress, 0 = none */
	uint32_t *rcpt;                /* its recipients in this domain */
	uint32_t nrcpt, caprcpt;
	const char **raddr;            /* their addresses, for the client */
	size_t *rlen;
	struct buf rec;                /* the record read from the spool */
	struct buf dsn;                /* a bounce being written */
	struct spool_rec_hdr hdr;
	struct spool_rec_msg msg;
	struct list_node wait_node;    /* env->waiting, while WAIT_SLOT */
	unsigned delivered;
};

/* The recipients of one message to bounce, with their DSN fields. */
struct drain_bounces {
	uint32_t *rcpt;
	struct dsn_rcpt *why;
	char (*diag)[DRAIN_DIAG_MAX];
	char remote[DRAIN_RELAY_MAX];  /* Remote-MTA (RFC 3464 2.3.5) */
	unsigned n;
};

static const char *const drain_conn_state_names[DRAIN_CONN_NSTATES] = {
	[DRAIN_CONN_CONNECTING] = "CONNECTING",
	[DRAIN_CONN_GREETING] = "GREETING",
	[DRAIN_CONN_WAIT_SLOT] = "WAIT_SLOT",
	[DRAIN_CONN_READING] = "READING",
	[DRAIN_CONN_SENDING] = "SENDING",
	[DRAIN_CONN_COMMITTING] = "COMMITTING",
	[DRAIN_CONN_QUITTING] = "QUITTING",
	[DRAIN_CONN_CLOSING] = "CLOSING",
	[DRAIN_CONN_CLOSED] = "CLOSED",
};

static const struct conn_ops drain_conn_ops;

static void dc_next(struct drain_conn *dc);
static void msg_done(struct drain_conn *dc);

const char *drain_conn_state_name(enum drain_conn_state s)
{
	return (unsigned)s < DRAIN_CONN_NSTATES ? drain_conn_state_names[s] : "?";
}

/* The one place the state changes. Nothing leaves CLOSED: the struct is
 * only waiting for its last spool callback there. */
static void drain_conn_enter(struct drain_conn *dc, enum drain_conn_state new_state,
			     const char *why)
{
	struct drain_job *j = dc->job;

	if (dc->state == DRAIN_CONN_CLOSED)
		panic("drain %.*s: %s after CLOSED (%s)", (int)j->len, j->dom,
		      drain_conn_state_name(new_state), why);
	log_debug("drain %.*s (shard %u) to %s: %s -> %s (%s)", (int)j->len, j->dom,
		  j->env->index, j->relay, drain_conn_state_name(dc->state),
		  drain_conn_state_name(new_state), why);
	dc->state = new_state;
}

/* Replies wait while the spool works for us (the client must not move on
 * before the record is there or the bounce is durable). */
static int dc_spool_paused(const struct drain_conn *dc)
{
	return dc->state == DRAIN_CONN_READING || dc->state == DRAIN_CONN_COMMITTING;
}

/* The job is done here once no connection and no DONE record of its own
 * is left: only then is what it delivered durable (and counted). */
static void job_check_idle(struct drain_job *j)
{
	if (j->conns == 0 && j->dones_pending == 0)
		j->env->job_idle(j);
}

/* Spool callback: a delivered recipient's DONE is durable (or its write
 * failed, which the spool logs: the message may then be sent again). */
static void done_durable(void *arg, int err)
{
	struct drain_job *j = arg;

	(void)err;
	j->dones_pending--;
	job_check_idle(j);
}

/* Free dc if the release rule (drain_conn.h) allows; 1 when freed. Touch
 * neither dc nor its job afterwards. */
static int dc_release(struct drain_conn *dc)
{
	struct drain_job *j = dc->job;
	struct drain_conn_env *env = j->env;

	if (dc->state != DRAIN_CONN_CLOSED || dc->spool_pending)
		return 0;
	smtp_client_free(dc->cl);
	free(dc->rcpt);
	free(dc->raddr);
	free(dc->rlen);
	buf_free(&dc->rec);
	buf_free(&dc->dsn);
	free(dc);
	env->conns--;
	j->conns--;
	job_check_idle(j);
	return 1;
}

/* ---- the wait list for a spool read slot ------------------------------- */

static void wait_push(struct drain_conn_env *env, struct drain_conn *dc)
{
	list_append(&env->waiting, &dc->wait_node);
}

/* Off the list; dc must be on it (state WAIT_SLOT). */
static void wait_remove(struct drain_conn_env *env, struct drain_conn *dc)
{
	list_unlink(&env->waiting, &dc->wait_node);
}

/* A read slot came free: let the longest waiter try again. */
static void wait_wake(struct drain_conn_env *env)
{
	struct list_node *n = list_pop(&env->waiting);

	if (n)
		dc_next(LIST_ENTRY(n, struct drain_conn, wait_node));
}

/* Close the socket (idempotent); the loop's close callback follows. */
static void dc_close_conn(struct drain_conn *dc, const char *why)
{
	if (dc->state == DRAIN_CONN_CONNECTING || dc->state == DRAIN_CONN_CLOSING ||
	    dc->state == DRAIN_CONN_CLOSED)
		return;
	if (dc->state == DRAIN_CONN_WAIT_SLOT)
		wait_remove(dc->job->env, dc);
	drain_conn_enter(dc, DRAIN_CONN_CLOSING, why);
	conn_close(dc->c);
}

/* ---- taking messages ---------------------------------------------------- */

/* Room for n recipients in dc's arrays; 0 or -ENOMEM. */
static int dc_rcpt_room(struct drain_conn *dc, uint32_t n)
{
	uint32_t *r;
	const char **a;
	size_t *l;

	if (n <= dc->caprcpt)
		return 0;
	r = realloc(dc->rcpt, n * sizeof(*r));
	if (r)
		dc->rcpt = r;
	a = r ? realloc(dc->raddr, n * sizeof(*a)) : NULL;
	if (a)
		dc->raddr = a;
	l = a ? realloc(dc->rlen, n * sizeof(*l)) : NULL;
	if (!l)
		return -ENOMEM;
	dc->rlen = l;
	dc->caprcpt = n;
	return 0;
}

/* This domain's pending recipients of msgid, into dc->rcpt. */
static int pending_in_domain(struct drain_conn *dc, uint64_t msgid)
{
	struct drain_job *j = dc->job;
	struct spool_index *idx = j->env->idx;
	struct spool_index_entry e;
	char dom[DRAIN_DOMAIN_MAX];
	size_t dl;
	int n;

	if (spool_index_msg_find(idx, msgid, &e))
		return 0;
	if (dc_rcpt_room(dc, e.nrcpt))
		return -ENOMEM;
	n = spool_index_msg_pending(idx, msgid, dc->rcpt, e.nrcpt);
	dc->nrcpt = 0;
	for (int i = 0; i < n; i++) {
		if (spool_index_rcpt_domain(idx, msgid, dc->rcpt[i], dom, sizeof(dom), &dl))
			continue;
		if (dl == j->len && ascii_eq_n(dom, j->dom, dl))
			dc->rcpt[dc->nrcpt++] = dc->rcpt[i];
	}
	return (int)dc->nrcpt;
}

static void record_read(void *arg, int err);

/* Start reading the next message of the snapshot that still has
 * recipients here; with none left, QUIT. The session is idle. */
static void dc_next(struct drain_conn *dc)
{
	struct drain_job *j = dc->job;
	struct drain_conn_env *env = j->env;
	char qid[QID_MAX];
	int rc;

	while (j->next_msg < j->nmsgs) {
		uint64_t id = j->msgs[j->next_msg++];
		struct spool_index_entry e;

		if (pending_in_domain(dc, id) <= 0 || spool_index_msg_find(env->idx, id, &e))
			continue; /* delivered or expired since the snapshot */
		dc->msgid = id;
		buf_reset(&dc->rec);
		if (buf_reserve(&dc->rec, e.rec_len)) {
			qid_format(id, qid);
			log_err("%s: out of memory reading it; left queued", qid);
			continue;
		}
		dc->rec.len = e.rec_len;
		rc = spool_shard_read(env->sh, e.segment_id, e.off, e.rec_len, dc->rec.data,
				      record_read, dc);
		if (rc == -EBUSY) {
			/* Every read slot is busy: give the message back and wait
			 * for a read to finish (wait_wake()). */
			j->next_msg--;
			dc->msgid = 0;
			wait_push(env, dc);
			drain_conn_enter(dc, DRAIN_CONN_WAIT_SLOT, "no read slot");
			return;
		}
		if (rc) {
			qid_format(id, qid);
			log_err("%s: cannot read it (%s); left queued for the next ETRN", qid,
				strerror(-rc));
			continue;
		}
		dc->spool_pending = 1;
		drain_conn_enter(dc, DRAIN_CONN_READING, "next message");
		return;
	}
	dc->msgid = 0;
	if (smtp_client_quit(dc->cl, conn_out(dc->c)) != 0) {
		dc_close_conn(dc, "cannot send QUIT");
		return;
	}
	drain_conn_enter(dc, DRAIN_CONN_QUITTING, "no more messages");
	conn_flush(dc->c);
	conn_set_timeout(dc->c, smtp_client_timeout_ms(dc->cl));
}

/* The record is in dc->rec and decoded: give it to the SMTP client. */
static void dc_submit(struct drain_conn *dc, const char *qid)
{
	struct smtp_client_msg m;
	int rc;

	for (uint32_t i = 0; i < dc->nrcpt; i++) {
		struct spool_rec_addr a = spool_rec_msg_rcpt(&dc->msg, dc->rcpt[i]);
		dc->raddr[i] = a.p;
		dc->rlen[i] = a.len;
	}
	memset(&m, 0, sizeof(m));
	m.sender = dc->msg.sender.p;
	m.sender_len = dc->msg.sender.len;
	m.nrcpt = dc->nrcpt;
	m.rcpt = dc->raddr;
	m.rcpt_len = dc->rlen;
	m.size = dc->msg.body_len;
	m.eightbit = (dc->hdr.flags & SPOOL_MSG_8BITMIME) != 0;
	m.smtputf8 = (dc->hdr.flags & SPOOL_MSG_SMTPUTF8) != 0;
	rc = smtp_client_submit(dc->cl, &m, conn_out(dc->c));
	conn_flush(dc->c);
	conn_set_timeout(dc->c, smtp_client_timeout_ms(dc->cl));
	if (rc == -EBUSY || rc == -EINVAL) {
		log_err("%s: SMTP client refused the message (%s); left queued", qid,
			strerror(-rc));
		dc->msgid = 0;
		dc_close_conn(dc, "client refused the message");
		return;
	}
	if (rc != 0) {
		msg_done(dc); /* decided locally (SIZE, 8BITMIME, ...): results set */
		return;
	}
	drain_conn_enter(dc, DRAIN_CONN_SENDING, "submitted");
}

/* Spool callback: the record of dc->msgid is read (or not). */
static void record_read(void *arg, int err)
{
	struct drain_conn *dc = arg;
	const char *payload;
	char qid[QID_MAX];

	dc->spool_pending = 0;
	wait_wake(dc->job->env); /* this read's slot is free again */
	if (dc->state != DRAIN_CONN_READING) {
		/* Closed while we read: the message stays queued. */
		(void)dc_release(dc);
		return;
	}
	/* Replies that came in while we read were held back (dc_data()):
	 * deliver them at the end of this turn. */
	conn_resume(dc->c);
	qid_format(dc->msgid, qid);
	if (err || spool_rec_decode(dc->rec.data, dc->rec.len, &dc->hdr, &payload) != SPOOL_REC_OK ||
	    dc->hdr.type != SPOOL_REC_MSG || dc->hdr.msgid != dc->msgid ||
	    spool_rec_decode_msg(payload, dc->hdr.length, &dc->msg) != SPOOL_REC_OK) {
		log_err("%s: cannot read the stored message (%s); left queued", qid,
			err ? strerror(-err) : "record does not check");
		dc->msgid = 0;
		dc_next(dc);
		return;
	}
	dc_submit(dc, qid);
}

/* ---- a message's verdict -------------------------------------------------- */

/* Recipient i's result: log it, count it, append its DONE when delivered,
 * add it to b when bounced. */
static void dc_verdict(struct drain_conn *dc, uint32_t i, struct drain_bounces *b,
		       uint64_t now, const char *qid)
{
	struct drain_job *j = dc->job;
	const struct smtp_client_result *r = smtp_client_result(dc->cl, i);
	const char *status = "deferred";
	char to[DRAIN_ADDR_TEXT], text[DRAIN_ADDR_TEXT];
	double delay = (double)(now - dc->hdr.time_us) / 1e6;
	int rc;

	log_printable(to, sizeof(to), dc->raddr[i], dc->rlen[i]);
	if (!r) {
		j->deferred++;
		log_info("%s: to=<%s>, relay=%s, delay=%.0f, status=deferred (no result)",
			 qid, to, j->relay, delay);
		return;
	}
	if (r->status == SMTP_CLIENT_DELIVERED) {
		status = "sent";
		j->sent++;
		/* The DONE is encoded now; it goes out with the next group
		 * commit. A crash before that resends this message once. The
		 * job waits for it, so its end means its mail is recorded. */
		rc = spool_append_done(j->env->sh, dc->msgid, dc->rcpt[i], SPOOL_DONE_DELIVERED,
				       done_durable, j);
		if (rc)
			log_err("%s: to=<%s>: delivered, but recording it failed (%s): it may be sent again",
				qid, to, strerror(-rc));
		else
			j->dones_pending++;
		dc->delivered++;
	} else if (r->status == SMTP_CLIENT_BOUNCED && b->rcpt && b->why && b->diag) {
		struct dsn_rcpt *w = &b->why[b->n];

		status = "bounced";
		j->bounced++;
		b->rcpt[b->n] = dc->rcpt[i];
		w->action = DSN_ACTION_FAILED;
		w->status = r->enh[0] ? r->enh : DRAIN_DIAG_DEFAULT_STATUS;
		if (!r->local) {
			/* Diagnostic-Code: smtp; the whole reply (RFC 3464 2.3.6). */
			int dn = snprintf(b->diag[b->n], DRAIN_DIAG_MAX, "%d %s %.*s", r->code,
					  r->enh, (int)r->text_len, r->text);
			w->remote_mta = b->remote;
			w->diagnostic = b->diag[b->n];
			w->diag_len = dn < 0 ? 0 : dn >= DRAIN_DIAG_MAX ? DRAIN_DIAG_MAX - 1 : (size_t)dn;
		}
		w->last_attempt = (time_t)(now / 1000000);
		b->n++;
	} else {
		j->deferred++;
	}
	log_printable(text, sizeof(text), r->text, r->text_len);
	log_info("%s: to=<%s>, relay=%s, delay=%.0f, status=%s (%d %s %s)",
		 qid, to, j->relay, delay, status, r->code, r->enh, text);
}

static void bounce_committed(void *arg, int err);

/* Queue the DSN and the bounced recipients' DONEs: COMMITTING on success. */
static void dc_bounce(struct drain_conn *dc, const struct drain_bounces *b, uint64_t now,
		      const char *qid)
{
	struct drain_conn_env *env = dc->job->env;
	struct bounce_req br;
	uint64_t dsn_id;
	int rc;

	memset(&br, 0, sizeof(br));
	br.hostname = env->hostname;
	br.hdr = &dc->hdr;
	br.msg = &dc->msg;
	br.rcpt = b->rcpt;
	br.why = b->why;
	br.nrcpt = b->n;
	br.status = SPOOL_DONE_BOUNCED;
	br.now_us = now;
	rc = bounce_queue(env->sh, &br, &dc->dsn, &dsn_id, bounce_committed, dc);
	if (rc) {
		log_err("%s: cannot bounce (%s); recipients stay queued", qid, strerror(-rc));
		return;
	}
	dc->spool_pending = 1;
	drain_conn_enter(dc, DRAIN_CONN_COMMITTING, "bouncing");
	if (dsn_id) {
		char dq[QID_MAX];
		qid_format(dsn_id, dq);
		log_info("%s: sender non-delivery notification: %s", qid, dq);
	}
}

/* The message is finished here: the next one, or close when the session
 * ended. */
static void dc_after_msg(struct drain_conn *dc)
{
	dc->msgid = 0;
	if (smtp_client_closed(dc->cl))
		dc_close_conn(dc, "session ended");
	else
		dc_next(dc);
}

/* The client finished a message: log each recipient, append a DONE per
 * delivered one, bounce the 5xx ones with a DSN, leave the 4xx queued. */
static void msg_done(struct drain_conn *dc)
{
	struct drain_job *j = dc->job;
	struct drain_bounces b;
	char qid[QID_MAX];
	uint64_t now = now_wall_us();

	qid_format(dc->msgid, qid);
	memset(&b, 0, sizeof(b));
	b.rcpt = calloc(dc->nrcpt, sizeof(*b.rcpt));
	b.why = calloc(dc->nrcpt, sizeof(*b.why));
	b.diag = calloc(dc->nrcpt, sizeof(*b.diag));
	/* Remote-MTA names the host: "host" of "host[addr]:port". */
	snprintf(b.remote, sizeof(b.remote), "%.*s", (int)strcspn(j->relay, "["), j->relay);
	for (uint32_t i = 0; i < dc->nrcpt; i++)
		dc_verdict(dc, i, &b, now, qid);
	if (b.n)
		dc_bounce(dc, &b, now, qid);
	free(b.rcpt);
	free(b.why);
	free(b.diag);
	if (dc->state == DRAIN_CONN_COMMITTING)
		return; /* bounce_committed() goes on (dc->dsn is borrowed) */
	dc_after_msg(dc);
}

/* Spool callback: the bounce (DSN and DONEs) is durable, or failed. */
static void bounce_committed(void *arg, int err)
{
	struct drain_conn *dc = arg;
	char qid[QID_MAX];

	dc->spool_pending = 0;
	if (err) {
		qid_format(dc->hdr.msgid, qid);
		log_err("%s: recording the bounce failed: %s; recipients stay queued", qid,
			strerror(-err));
	}
	if (dc->state != DRAIN_CONN_COMMITTING) {
		(void)dc_release(dc); /* closed meanwhile */
		return;
	}
	conn_resume(dc->c); /* input held back while the bounce was written */
	dc_after_msg(dc);
}

/* ---- the loop's callbacks ---------------------------------------------- */

static void *dc_connected(void *arg, struct conn *c, void *cookie, int err)
{
	struct drain_conn *dc = cookie;
	struct drain_job *j = dc->job;

	(void)arg;
	if (err) {
		log_warn("drain %.*s: connect to %s: %s; mail stays queued", (int)j->len, j->dom,
			 j->relay, strerror(-err));
		drain_conn_enter(dc, DRAIN_CONN_CLOSED, "connect failed");
		(void)dc_release(dc);
		return NULL;
	}
	dc->c = c;
	drain_conn_enter(dc, DRAIN_CONN_GREETING, "connected");
	conn_set_timeout(c, smtp_client_timeout_ms(dc->cl));
	return dc;
}

/* SEND_BODY: the stored body is already in on-the-wire form. 0, or -ENOMEM
 * when it could not be queued (then the connection is closing). */
static int dc_send_body(struct drain_conn *dc, struct conn *c)
{
	if (buf_append(conn_out(c), dc->msg.body, dc->msg.body_len) ||
	    smtp_client_body_sent(dc->cl, conn_out(c))) {
		/* Recipients are deferred (stay queued) and logged. */
		if (smtp_client_abort(dc->cl, "out of memory sending the body") ==
		    SMTP_CLIENT_EV_MSG_DONE)
			msg_done(dc);
		dc_close_conn(dc, "out of memory sending the body");
		return -ENOMEM;
	}
	conn_flush(c);
	conn_set_timeout(c, smtp_client_timeout_ms(dc->cl));
	return 0;
}

static size_t dc_data(void *arg, struct conn *c, void *st, const char *p, size_t n)
{
	struct drain_conn *dc = st;
	enum smtp_client_event ev;
	size_t off = 0;

	(void)arg;
	/* Wait for the spool before reading further replies. */
	if (dc_spool_paused(dc))
		return 0;
	for (;;) {
		off += smtp_client_feed(dc->cl, p + off, n - off, conn_out(c), &ev);
		conn_set_timeout(c, smtp_client_timeout_ms(dc->cl));
		switch (ev) {
		case SMTP_CLIENT_EV_NEED_INPUT:
			conn_flush(c);
			return n == 0 ? 0 : off;
		case SMTP_CLIENT_EV_READY:
			dc_next(dc);
			break;
		case SMTP_CLIENT_EV_SEND_BODY:
			if (dc_send_body(dc, c))
				return n;
			break;
		case SMTP_CLIENT_EV_MSG_DONE:
			msg_done(dc);
			if (dc_spool_paused(dc)) {
				conn_flush(c);
				return off; /* the rest waits (the loop keeps it) */
			}
			break;
		case SMTP_CLIENT_EV_CLOSE:
			conn_flush(c);
			dc_close_conn(dc, "session over");
			return n;
		}
		if (dc->state == DRAIN_CONN_CLOSING)
			return n; /* nothing more is read from a closing socket */
		if (off >= n && ev != SMTP_CLIENT_EV_MSG_DONE && ev != SMTP_CLIENT_EV_READY)
			break;
		if (off >= n && n > 0)
			break;
	}
	conn_flush(c);
	return off;
}

static void dc_timeout(void *arg, struct conn *c, void *st)
{
	struct drain_conn *dc = st;
	enum smtp_client_event ev;

	(void)arg;
	(void)c;
	if (dc_spool_paused(dc))
		return; /* our side is slow, not the server */
	ev = smtp_client_timed_out(dc->cl);
	if (ev == SMTP_CLIENT_EV_MSG_DONE && dc->msgid)
		msg_done(dc);
	dc_close_conn(dc, "timed out");
}

static void dc_shutdown(void *arg, struct conn *c, void *st)
{
	struct drain_conn *dc = st;

	(void)arg;
	/* Stopping: finish nothing new. A message in flight is left queued
	 * (its recipients have no DONE); the next ETRN sends it. */
	dc->job->next_msg = dc->job->nmsgs;
	if (dc->state == DRAIN_CONN_CONNECTING)
		return; /* the connect completes with -ESHUTDOWN */
	if (dc->state == DRAIN_CONN_WAIT_SLOT) {
		wait_remove(dc->job->env, dc);
		if (smtp_client_quit(dc->cl, conn_out(c)) == 0) {
			drain_conn_enter(dc, DRAIN_CONN_QUITTING, "shutdown");
			conn_flush(c);
			return;
		}
	}
	(void)smtp_client_abort(dc->cl, "etrnd is shutting down");
	dc_close_conn(dc, "shutdown");
}

static void dc_close(void *arg, struct conn *c, void *st)
{
	struct drain_conn *dc = st;
	struct drain_job *j = dc->job;

	(void)arg;
	(void)c;
	if (dc->msgid && !dc->spool_pending && !smtp_client_closed(dc->cl)) {
		/* Gone mid-message without a verdict: nothing is marked done,
		 * so it stays queued. */
		char qid[QID_MAX];
		qid_format(dc->msgid, qid);
		log_info("%s: relay=%s, status=deferred (connection lost mid-transaction)",
			 qid, j->relay);
		j->deferred += dc->nrcpt;
	}
	if (dc->state == DRAIN_CONN_WAIT_SLOT)
		wait_remove(j->env, dc);
	dc->c = NULL;
	drain_conn_enter(dc, DRAIN_CONN_CLOSED, "socket gone");
	(void)dc_release(dc);
}

static void *dc_open_unused(void *arg, struct conn *c, const char *peer)
{
	(void)arg;
	(void)c;
	(void)peer;
	panic("drain connections are never accepted");
}

static const struct conn_ops drain_conn_ops = {
	.open = dc_open_unused,
	.data = dc_data,
	.timeout = dc_timeout,
	.shutdown = dc_shutdown,
	.close = dc_close,
	.connected = dc_connected,
};

int drain_conn_open(struct drain_job *j)
{
	struct drain_conn_env *env = j->env;
	struct drain_conn *dc = calloc(1, sizeof(*dc));
	int rc;

	if (dc)
		dc->cl = smtp_client_new(env->ccf, j->relay);
	if (!dc || !dc->cl) {
		free(dc);
		return -ENOMEM;
	}
	dc->job = j;
	dc->state = DRAIN_CONN_CONNECTING;
	buf_init(&dc->rec, 0);
	buf_init(&dc->dsn, 0);
	/* The connection's state is its cookie until connected() returns it. */
	rc = loop_connect(env->loop, (struct sockaddr *)&j->dst, j->dstlen,
			  DRAIN_CONNECT_TIMEOUT_MS, &drain_conn_ops, env, dc);
	if (rc) {
		smtp_client_free(dc->cl);
		free(dc);
		return rc;
	}
	j->conns++;
	env->conns++;
	return 0;
}
