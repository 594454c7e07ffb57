/* SPDX-License-Identifier: MIT */
/*
 * drain: see drain.h. The path of one ETRN:
 *
 *   thread T: drain_etrn()  check node, rights and rate; reply at once;
 *             hub: mark the domain active (a second ETRN joins: 252);
 *             destination numeric? post the drain to every thread now,
 *             else resolve it (DNS, MX) on a resolver thread, then post.
 *   every thread: job_start()  snapshot its shard's queue for the domain,
 *             open up to drain_connections connections; each connection
 *             takes the next message of the snapshot (so no message goes
 *             out twice), reads its record from the spool, submits it to
 *             the SMTP client, streams the body, and on the reply appends
 *             a DONE per delivered (or, with a DSN, bounced) recipient.
 *             When its connections are gone the thread tells the hub; the
 *             last thread to finish ends the drain.
 *
 * Mail that arrives during a drain is not in the snapshot: the next ETRN
 * takes it. A recipient is done only once its DONE is durable, so a drain
 * cut short (client gone, restart) resumes with exactly the rest.
 */
#include "proto/drain.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <resolv.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "proto/bounce.h"
#include "proto/smtp_client.h"
#include "proto/smtp_server.h"
#include "store/domstat.h"
#include "store/spool_index.h"
#include "store/spool_rec.h"

#define DRAIN_DOMAIN_MAX 256           /* RFC 1035 2.3.4: 255 + NUL */
#define DRAIN_RELAY_MAX 320            /* "host[addr]:port" for log lines */
#define DRAIN_SMTP_PORT 25
#define DRAIN_CONNECT_TIMEOUT_MS 30000 /* Postfix smtp_connect_timeout */
#define DRAIN_REPLY_LINE_MAX 4096      /* servers send more than RFC's 512 */
#define DRAIN_REPLY_LINES_MAX 100
/* ETRN rate limit per client address: a window and its budget. */
#define DRAIN_RATE_WINDOW_MS 60000
#define DRAIN_RATE_SLOTS 256
#define DRAIN_ADDR_TEXT 300
#define DRAIN_QUIESCE_POLL_US 10000
#define DRAIN_DIAG_MAX 600             /* "550 5.1.1 " + a 512-octet reply */

struct drain_active {
	char dom[DRAIN_DOMAIN_MAX];
	size_t len;
	unsigned left;                 /* threads still draining it */
};

struct drain_hub {
	const struct config *cfg;
	const struct domtab_live *dt;
	struct domstat *ds;
	unsigned n;
	struct drain **drains;         /* by thread index; set by drain_new */
	pthread_mutex_t mu;            /* guards act: taken per ETRN and per
	                                  finished drain, never per message */
	_Atomic unsigned resolvers;    /* resolver threads still running */
	struct drain_active *act;
	size_t nact, capact;
	struct smtp_client_conf ccf;
};

/* What every thread is asked to drain. */
struct drain_req {
	struct drain_hub *hub;
	char dom[DRAIN_DOMAIN_MAX];
	size_t len;
	struct sockaddr_storage dst;
	socklen_t dstlen;
	char relay[DRAIN_RELAY_MAX];   /* host[addr]:port for logs */
	int failed;                    /* resolution failed: just finish */
	unsigned thread;               /* which thread this copy is for */
};

struct drain_job;

struct drain_conn {
	struct drain_job *job;
	struct conn *c;                /* NULL once gone */
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
	int reading;                   /* a spool read in flight */
	int committing;                /* DONE/bounce records in flight */
	int quitting;
	int waiting;                   /* on the drain's wait list for a read slot */
	struct drain_conn *wait_next;
	unsigned delivered;
};

struct drain_job {
	struct drain *d;
	struct drain_job *next;
	char dom[DRAIN_DOMAIN_MAX];
	size_t len;
	struct sockaddr_storage dst;
	socklen_t dstlen;
	char relay[DRAIN_RELAY_MAX];
	uint64_t *msgs;                /* snapshot of the queue, arrival order */
	size_t nmsgs, next_msg;
	unsigned conns;                /* connections not yet gone */
	unsigned pending_connects;
	uint64_t started_us;
	uint64_t sent, deferred, bounced;
};

struct drain_rate {
	uint64_t key;
	uint64_t window_start_ms;
	unsigned count;
};

struct drain {
	struct drain_hub *hub;
	unsigned index;
	struct loop *loop;
	struct spool_shard *sh;
	struct spool_index *idx;
	struct drain_job *jobs;
	unsigned conns;                /* open outbound connections */
	/* Connections waiting for one of the shard's read slots (many drains
	 * at once want more reads than the shard runs in parallel). */
	struct drain_conn *wait_first, *wait_last;
	struct drain_rate rate[DRAIN_RATE_SLOTS];
};

static const struct conn_ops drain_conn_ops;

static uint64_t wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- hub ----------------------------------------------------------------- */

struct drain_hub *drain_hub_new(const struct config *cfg,
				const struct domtab_live *dt, struct domstat *ds,
				unsigned nthreads)
{
	struct drain_hub *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->drains = calloc(nthreads, sizeof(*h->drains));
	if (!h->drains) {
		free(h);
		return NULL;
	}
	h->cfg = cfg;
	h->dt = dt;
	h->ds = ds;
	h->n = nthreads;
	pthread_mutex_init(&h->mu, NULL);
	h->ccf.helo_name = cfg->hostname;
	h->ccf.reply_line_max = DRAIN_REPLY_LINE_MAX;
	h->ccf.max_reply_lines = DRAIN_REPLY_LINES_MAX;
	return h;
}

void drain_hub_quiesce(struct drain_hub *h)
{
	/* A resolver ends with its DNS time-outs (resolv.conf: a few seconds
	 * per try); it posts to loops that may have stopped (dropped). */
	while (h && atomic_load(&h->resolvers))
		usleep(DRAIN_QUIESCE_POLL_US);
}

struct drain_hub *drain_hub_free(struct drain_hub *h)
{
	if (!h)
		return NULL;
	pthread_mutex_destroy(&h->mu);
	free(h->act);
	free(h->drains);
	free(h);
	return NULL;
}

/* Mark dom active for every thread; 0 if it already was (join: 252). */
static int hub_begin(struct drain_hub *h, const char *dom, size_t len)
{
	int fresh = 0;

	pthread_mutex_lock(&h->mu);
	for (size_t i = 0; i < h->nact; i++)
		if (h->act[i].len == len && !strncasecmp(h->act[i].dom, dom, len))
			goto out;
	if (h->nact == h->capact) {
		size_t cap = h->capact ? h->capact * 2 : 16;
		struct drain_active *a = realloc(h->act, cap * sizeof(*a));
		if (!a)
			goto out; /* treated as a join: the reply says "started" */
		h->act = a;
		h->capact = cap;
	}
	memcpy(h->act[h->nact].dom, dom, len);
	h->act[h->nact].dom[len] = '\0';
	h->act[h->nact].len = len;
	h->act[h->nact].left = h->n;
	h->nact++;
	fresh = 1;
out:
	pthread_mutex_unlock(&h->mu);
	return fresh;
}

/* 1 while a drain of dom runs on any thread. */
static int hub_active(struct drain_hub *h, const char *dom, size_t len)
{
	int on = 0;

	pthread_mutex_lock(&h->mu);
	for (size_t i = 0; i < h->nact && !on; i++)
		on = h->act[i].len == len && !strncasecmp(h->act[i].dom, dom, len);
	pthread_mutex_unlock(&h->mu);
	return on;
}

/* One thread has finished its part of dom's drain. */
static void hub_end(struct drain_hub *h, const char *dom, size_t len)
{
	pthread_mutex_lock(&h->mu);
	for (size_t i = 0; i < h->nact; i++) {
		if (h->act[i].len != len || strncasecmp(h->act[i].dom, dom, len))
			continue;
		if (--h->act[i].left == 0)
			h->act[i] = h->act[--h->nact];
		break;
	}
	pthread_mutex_unlock(&h->mu);
}

/* ---- jobs on one thread --------------------------------------------------- */

static void job_maybe_end(struct drain_job *j)
{
	struct drain *d = j->d;
	struct drain_job **pp;

	if (j->conns || j->pending_connects)
		return;
	for (pp = &d->jobs; *pp; pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	}
	if (j->nmsgs)
		log_info("drain %.*s (shard %u): %" PRIu64 " sent, %" PRIu64 " deferred, %" PRIu64
			 " bounced, %zu not attempted, in %.3f s",
			 (int)j->len, j->dom, d->index, j->sent, j->deferred, j->bounced,
			 j->nmsgs - j->next_msg, (double)(wall_us() - j->started_us) / 1e6);
	hub_end(d->hub, j->dom, j->len);
	free(j->msgs);
	free(j);
}

/* This domain's pending recipients of msgid, into dc->rcpt. */
static int pending_in_domain(struct drain_conn *dc, uint64_t msgid)
{
	struct drain_job *j = dc->job;
	struct spool_index *idx = j->d->idx;
	struct spool_index_entry e;
	char dom[DRAIN_DOMAIN_MAX];
	size_t dl;
	int n;

	if (spool_index_msg_find(idx, msgid, &e))
		return 0;
	if (e.nrcpt > dc->caprcpt) {
		uint32_t *r = realloc(dc->rcpt, e.nrcpt * sizeof(*r));
		const char **a;
		size_t *l;

		if (r)
			dc->rcpt = r;
		a = r ? realloc(dc->raddr, e.nrcpt * sizeof(*a)) : NULL;
		if (a)
			dc->raddr = a;
		l = a ? realloc(dc->rlen, e.nrcpt * sizeof(*l)) : NULL;
		if (!l)
			return -ENOMEM;
		dc->rlen = l;
		dc->caprcpt = e.nrcpt;
	}
	n = spool_index_msg_pending(idx, msgid, dc->rcpt, e.nrcpt);
	dc->nrcpt = 0;
	for (int i = 0; i < n; i++) {
		if (spool_index_rcpt_domain(idx, msgid, dc->rcpt[i], dom, sizeof(dom), &dl))
			continue;
		if (dl == j->len && !strncasecmp(dom, j->dom, dl))
			dc->rcpt[dc->nrcpt++] = dc->rcpt[i];
	}
	return (int)dc->nrcpt;
}

static void conn_next(struct drain_conn *dc);
static void msg_done(struct drain_conn *dc);
static void wait_wake(struct drain *d);

static void dc_free(struct drain_conn *dc)
{
	smtp_client_free(dc->cl);
	free(dc->rcpt);
	free(dc->raddr);
	free(dc->rlen);
	buf_free(&dc->rec);
	buf_free(&dc->dsn);
	free(dc);
}

/* The connection state outlives the connection while the spool still owes
 * it a callback (a read into dc->rec, a DSN borrowing dc->dsn). */
static int dc_release_if_gone(struct drain_conn *dc)
{
	if (dc->c || dc->reading || dc->committing)
		return 0;
	dc_free(dc);
	return 1;
}

static void record_read(void *arg, int err)
{
	struct drain_conn *dc = arg;
	struct drain *d = dc->job->d;
	struct smtp_client_msg m;
	const char *payload;
	char qid[SMTP_QID_MAX];
	int rc;

	dc->reading = 0;
	wait_wake(d); /* this read's slot is free again */
	if (dc_release_if_gone(dc))
		return; /* the connection went while we read: still queued */
	if (!dc->c)
		return;
	/* Replies that came in while we read were held back (dc_data()):
	 * deliver them at the end of this turn. */
	conn_resume(dc->c);
	spool_msgid_format(dc->msgid, qid, sizeof(qid));
	if (err || spool_rec_decode(dc->rec.data, dc->rec.len, &dc->hdr, &payload) != SPOOL_REC_OK ||
	    dc->hdr.type != SPOOL_REC_MSG || dc->hdr.msgid != dc->msgid ||
	    spool_rec_decode_msg(payload, dc->hdr.length, &dc->msg) != SPOOL_REC_OK) {
		log_err("%s: cannot read the stored message (%s); left queued", qid,
			err ? strerror(-err) : "record does not check");
		dc->msgid = 0;
		conn_next(dc);
		return;
	}
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
		conn_close(dc->c);
		return;
	}
	if (rc != 0)
		msg_done(dc); /* decided locally (SIZE, 8BITMIME, ...): results set */
}

static void wait_push(struct drain *d, struct drain_conn *dc)
{
	dc->waiting = 1;
	dc->wait_next = NULL;
	if (d->wait_last)
		d->wait_last->wait_next = dc;
	else
		d->wait_first = dc;
	d->wait_last = dc;
}

static void wait_remove(struct drain *d, struct drain_conn *dc)
{
	struct drain_conn **pp;

	if (!dc->waiting)
		return;
	for (pp = &d->wait_first; *pp; pp = &(*pp)->wait_next) {
		if (*pp != dc)
			continue;
		*pp = dc->wait_next;
		if (d->wait_last == dc) {
			d->wait_last = NULL;
			for (struct drain_conn *x = d->wait_first; x; x = x->wait_next)
				d->wait_last = x;
		}
		break;
	}
	dc->waiting = 0;
	dc->wait_next = NULL;
}

/* A read slot came free: let the longest waiter try again. */
static void wait_wake(struct drain *d)
{
	struct drain_conn *dc = d->wait_first;

	if (!dc)
		return;
	wait_remove(d, dc);
	conn_next(dc);
}

/* Take the next message of the snapshot that still has recipients here,
 * and read it; with none left, QUIT. */
static void conn_next(struct drain_conn *dc)
{
	struct drain_job *j = dc->job;
	char qid[SMTP_QID_MAX];
	int rc;

	while (j->next_msg < j->nmsgs) {
		uint64_t id = j->msgs[j->next_msg++];
		struct spool_index_entry e;

		if (pending_in_domain(dc, id) <= 0 || spool_index_msg_find(j->d->idx, id, &e))
			continue; /* delivered or expired since the snapshot */
		dc->msgid = id;
		buf_reset(&dc->rec);
		if (buf_reserve(&dc->rec, e.rec_len)) {
			spool_msgid_format(id, qid, sizeof(qid));
			log_err("%s: out of memory reading it; left queued", qid);
			continue;
		}
		dc->rec.len = e.rec_len;
		rc = spool_shard_read(j->d->sh, e.segment_id, e.off, e.rec_len, dc->rec.data,
				      record_read, dc);
		if (rc == -EBUSY) {
			/* Every read slot is busy: give the message back and wait
			 * for a read to finish (wait_wake()). */
			j->next_msg--;
			dc->msgid = 0;
			wait_push(j->d, dc);
			return;
		}
		if (rc) {
			spool_msgid_format(id, qid, sizeof(qid));
			log_err("%s: cannot read it (%s); left queued for the next ETRN", qid,
				strerror(-rc));
			continue;
		}
		dc->reading = 1;
		return;
	}
	dc->msgid = 0;
	if (!dc->quitting && smtp_client_quit(dc->cl, conn_out(dc->c)) == 0) {
		dc->quitting = 1;
		conn_flush(dc->c);
		conn_set_timeout(dc->c, smtp_client_timeout_ms(dc->cl));
	}
}

static void bounce_committed(void *arg, int err)
{
	struct drain_conn *dc = arg;
	char qid[SMTP_QID_MAX];

	dc->committing = 0;
	if (err) {
		spool_msgid_format(dc->hdr.msgid, qid, sizeof(qid));
		log_err("%s: recording the bounce failed: %s; recipients stay queued", qid,
			strerror(-err));
	}
	if (dc_release_if_gone(dc) || !dc->c)
		return;
	conn_resume(dc->c); /* input held back while the bounce was written */
	if (smtp_client_closed(dc->cl))
		conn_close(dc->c);
	else
		conn_next(dc);
}

/* The client finished a message: log each recipient, append a DONE per
 * delivered one, bounce the 5xx ones with a DSN, leave the 4xx queued. */
static void msg_done(struct drain_conn *dc)
{
	struct drain_job *j = dc->job;
	struct drain *d = j->d;
	struct dsn_rcpt *why;
	uint32_t *bounced;
	char (*diag)[DRAIN_DIAG_MAX];
	char remote[DRAIN_RELAY_MAX];
	unsigned nb = 0;
	char qid[SMTP_QID_MAX], to[DRAIN_ADDR_TEXT], text[DRAIN_ADDR_TEXT];
	uint64_t now = wall_us();
	int rc;

	spool_msgid_format(dc->msgid, qid, sizeof(qid));
	bounced = calloc(dc->nrcpt, sizeof(*bounced));
	why = calloc(dc->nrcpt, sizeof(*why));
	diag = calloc(dc->nrcpt, sizeof(*diag));
	/* Remote-MTA (RFC 3464 2.3.5) names the host: "host" of "host[addr]:port". */
	snprintf(remote, sizeof(remote), "%.*s", (int)strcspn(j->relay, "["), j->relay);
	for (uint32_t i = 0; i < dc->nrcpt; i++) {
		const struct smtp_client_result *r = smtp_client_result(dc->cl, i);
		const char *status = "deferred";

		log_printable(to, sizeof(to), dc->raddr[i], dc->rlen[i]);
		if (!r) {
			j->deferred++;
			log_info("%s: to=<%s>, relay=%s, delay=%.0f, status=deferred (no result)",
				 qid, to, j->relay, (double)(now - dc->hdr.time_us) / 1e6);
			continue;
		}
		if (r->status == SMTP_CLIENT_DELIVERED) {
			status = "sent";
			j->sent++;
			/* The DONE is encoded now; it goes out with the next group
			 * commit. A crash before that resends this message once. */
			rc = spool_append_done(d->sh, dc->msgid, dc->rcpt[i], SPOOL_DONE_DELIVERED,
					       NULL, NULL);
			if (rc)
				log_err("%s: to=<%s>: delivered, but recording it failed (%s): it may be sent again",
					qid, to, strerror(-rc));
			dc->delivered++;
		} else if (r->status == SMTP_CLIENT_BOUNCED && bounced && why && diag) {
			status = "bounced";
			j->bounced++;
			bounced[nb] = dc->rcpt[i];
			why[nb].action = DSN_ACTION_FAILED;
			why[nb].status = r->enh[0] ? r->enh : "5.0.0";
			if (!r->local) {
				/* Diagnostic-Code: smtp; the whole reply (RFC 3464 2.3.6). */
				int dn = snprintf(diag[nb], DRAIN_DIAG_MAX, "%d %s %.*s", r->code,
						  r->enh, (int)r->text_len, r->text);
				why[nb].remote_mta = remote;
				why[nb].diagnostic = diag[nb];
				why[nb].diag_len = dn < 0 ? 0 : dn >= DRAIN_DIAG_MAX ? DRAIN_DIAG_MAX - 1 : (size_t)dn;
			}
			why[nb].last_attempt = (time_t)(now / 1000000);
			nb++;
		} else {
			j->deferred++;
		}
		log_printable(text, sizeof(text), r->text, r->text_len);
		log_info("%s: to=<%s>, relay=%s, delay=%.0f, status=%s (%d %s %s)",
			 qid, to, j->relay, (double)(now - dc->hdr.time_us) / 1e6, status,
			 r->code, r->enh, text);
	}
	if (nb) {
		struct bounce_req br;
		uint64_t dsn_id;

		memset(&br, 0, sizeof(br));
		br.hostname = d->hub->cfg->hostname;
		br.hdr = &dc->hdr;
		br.msg = &dc->msg;
		br.rcpt = bounced;
		br.why = why;
		br.nrcpt = nb;
		br.status = SPOOL_DONE_BOUNCED;
		br.now_us = now;
		rc = bounce_queue(d->sh, &br, &dc->dsn, &dsn_id, bounce_committed, dc);
		if (rc == 0) {
			dc->committing = 1;
			if (dsn_id) {
				char dq[SMTP_QID_MAX];
				spool_msgid_format(dsn_id, dq, sizeof(dq));
				log_info("%s: sender non-delivery notification: %s", qid, dq);
			}
		} else {
			log_err("%s: cannot bounce (%s); recipients stay queued", qid, strerror(-rc));
		}
	}
	free(bounced);
	free(why);
	free(diag);
	if (dc->committing)
		return; /* bounce_committed() goes on (dc->dsn is borrowed) */
	dc->msgid = 0;
	if (smtp_client_closed(dc->cl))
		conn_close(dc->c);
	else
		conn_next(dc);
}

/* ---- connection callbacks ------------------------------------------------- */

static void *dc_connected(void *arg, struct conn *c, void *cookie, int err)
{
	struct drain_job *j = cookie;
	struct drain *d = arg;
	struct drain_conn *dc;

	j->pending_connects--;
	if (err) {
		log_warn("drain %.*s: connect to %s: %s; mail stays queued", (int)j->len, j->dom,
			 j->relay, strerror(-err));
		job_maybe_end(j);
		return NULL;
	}
	dc = calloc(1, sizeof(*dc));
	if (dc)
		dc->cl = smtp_client_new(&d->hub->ccf, j->relay);
	if (!dc || !dc->cl) {
		free(dc);
		log_err("drain %.*s: out of memory", (int)j->len, j->dom);
		job_maybe_end(j);
		return NULL;
	}
	dc->job = j;
	dc->c = c;
	buf_init(&dc->rec, 0);
	buf_init(&dc->dsn, 0);
	j->conns++;
	d->conns++;
	conn_set_timeout(c, smtp_client_timeout_ms(dc->cl));
	return dc;
}

static size_t dc_data(void *arg, struct conn *c, void *st, const char *p, size_t n)
{
	struct drain_conn *dc = st;
	enum smtp_client_event ev;
	size_t off = 0;

	(void)arg;
	/* Wait for the spool before reading further replies. */
	if (dc->reading || dc->committing)
		return 0;
	for (;;) {
		off += smtp_client_feed(dc->cl, p + off, n - off, conn_out(c), &ev);
		conn_set_timeout(c, smtp_client_timeout_ms(dc->cl));
		switch (ev) {
		case SMTP_CLIENT_EV_NEED_INPUT:
			conn_flush(c);
			return n == 0 ? 0 : off;
		case SMTP_CLIENT_EV_READY:
			conn_next(dc);
			break;
		case SMTP_CLIENT_EV_SEND_BODY:
			/* The stored body is already on-the-wire form. */
			if (buf_append(conn_out(c), dc->msg.body, dc->msg.body_len) ||
			    smtp_client_body_sent(dc->cl, conn_out(c))) {
				/* Recipients are deferred (stay queued) and logged. */
				if (smtp_client_abort(dc->cl, "out of memory sending the body") ==
				    SMTP_CLIENT_EV_MSG_DONE)
					msg_done(dc);
				conn_close(c);
				return n;
			}
			conn_flush(c);
			conn_set_timeout(c, smtp_client_timeout_ms(dc->cl));
			break;
		case SMTP_CLIENT_EV_MSG_DONE:
			msg_done(dc);
			if (dc->reading || dc->committing) {
				conn_flush(c);
				return off; /* the rest waits (the loop keeps it) */
			}
			break;
		case SMTP_CLIENT_EV_CLOSE:
			conn_flush(c);
			conn_close(c);
			return n;
		}
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
	if (dc->reading || dc->committing)
		return; /* our side is slow, not the server */
	ev = smtp_client_timed_out(dc->cl);
	if (ev == SMTP_CLIENT_EV_MSG_DONE && dc->msgid)
		msg_done(dc);
	conn_close(c);
}

static void dc_shutdown(void *arg, struct conn *c, void *st)
{
	struct drain_conn *dc = st;

	(void)arg;
	/* Stopping: finish nothing new. A message in flight is left queued
	 * (its recipients have no DONE); the next ETRN sends it. */
	dc->job->next_msg = dc->job->nmsgs;
	if (!dc->msgid && !dc->reading && !dc->committing &&
	    smtp_client_quit(dc->cl, conn_out(c)) == 0) {
		dc->quitting = 1;
		conn_flush(c);
		return;
	}
	(void)smtp_client_abort(dc->cl, "etrnd is shutting down");
	conn_close(c);
}

static void dc_close(void *arg, struct conn *c, void *st)
{
	struct drain_conn *dc = st;
	struct drain_job *j = dc->job;
	struct drain *d = arg;

	(void)c;
	if (dc->msgid && !dc->reading && !dc->committing && !smtp_client_closed(dc->cl)) {
		/* Gone mid-message without a verdict: nothing is marked done,
		 * so it stays queued. */
		char qid[SMTP_QID_MAX];
		spool_msgid_format(dc->msgid, qid, sizeof(qid));
		log_info("%s: relay=%s, status=deferred (connection lost mid-transaction)",
			 qid, j->relay);
		j->deferred += dc->nrcpt;
	}
	wait_remove(d, dc);
	dc->c = NULL;
	d->conns--;
	j->conns--;
	job_maybe_end(j);
	(void)dc_release_if_gone(dc);
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

/* ---- a drain request arrives on a thread ---------------------------------- */

static void job_start(void *arg)
{
	struct drain_req *rq = arg;
	struct drain_hub *h = rq->hub;
	struct drain *d = __atomic_load_n(&h->drains[rq->thread], __ATOMIC_ACQUIRE);
	const struct spool_index_queue *q;
	struct spool_index_qstat st;
	struct spool_index_iter it;
	struct spool_index_entry e;
	struct drain_job *j;
	unsigned want;

	q = rq->failed ? NULL : spool_index_queue(d->idx, rq->dom, rq->len);
	if (!q) {
		hub_end(h, rq->dom, rq->len);
		free(rq);
		return;
	}
	spool_index_queue_stat(q, &st);
	j = calloc(1, sizeof(*j));
	if (j)
		j->msgs = malloc(st.messages * sizeof(*j->msgs));
	if (!j || !j->msgs) {
		log_err("drain %.*s: out of memory", (int)rq->len, rq->dom);
		free(j);
		hub_end(h, rq->dom, rq->len);
		free(rq);
		return;
	}
	/* Snapshot the queue: each message goes to exactly one connection. */
	spool_index_queue_iter(q, &it);
	while (j->nmsgs < st.messages && spool_index_queue_next(&it, &e))
		j->msgs[j->nmsgs++] = e.msgid;
	j->d = d;
	memcpy(j->dom, rq->dom, rq->len);
	j->len = rq->len;
	memcpy(&j->dst, &rq->dst, rq->dstlen);
	j->dstlen = rq->dstlen;
	snprintf(j->relay, sizeof(j->relay), "%s", rq->relay);
	j->started_us = wall_us();
	j->next = d->jobs;
	d->jobs = j;
	free(rq);
	want = h->cfg->drain_connections;
	if (want > j->nmsgs)
		want = (unsigned)j->nmsgs;
	for (unsigned i = 0; i < want; i++) {
		int rc = loop_connect(d->loop, (struct sockaddr *)&j->dst, j->dstlen,
				      DRAIN_CONNECT_TIMEOUT_MS, &drain_conn_ops, d, j);
		if (rc) {
			log_warn("drain %.*s: cannot open a connection to %s: %s", (int)j->len,
				 j->dom, j->relay, strerror(-rc));
			break;
		}
		j->pending_connects++;
	}
	log_info("drain %.*s (shard %u): %zu message(s) to %s over %u connection(s)",
		 (int)j->len, j->dom, d->index, j->nmsgs, j->relay, j->pending_connects);
	job_maybe_end(j);
}

/* Send the (resolved) request to every engine thread. */
static void fan_out(struct drain_req *proto_rq)
{
	struct drain_hub *h = proto_rq->hub;

	for (unsigned i = 0; i < h->n; i++) {
		struct drain *d = __atomic_load_n(&h->drains[i], __ATOMIC_ACQUIRE);
		struct drain_req *rq = d ? malloc(sizeof(*rq)) : NULL;

		if (rq) {
			*rq = *proto_rq;
			rq->thread = i;
		}
		/* A thread still starting up has no mail to drain yet. */
		if (!rq || loop_post(d->loop, job_start, rq)) {
			free(rq);
			log_err("drain %.*s: cannot reach engine thread %u", (int)proto_rq->len,
				proto_rq->dom, i);
			hub_end(h, proto_rq->dom, proto_rq->len);
		}
	}
}

/* "host[:port]", "[v6]:port", "1.2.3.4[:port]": split; 0 or -1. */
static int split_dest(const char *dest, char *host, size_t hostlen, unsigned *port)
{
	const char *colon = NULL, *h = dest, *hend;
	char *end;

	*port = DRAIN_SMTP_PORT;
	if (*dest == '[') {
		hend = strchr(dest, ']');
		if (!hend)
			return -1;
		h = dest + 1;
		if (hend[1] == ':')
			colon = hend + 1;
		else if (hend[1])
			return -1;
	} else {
		colon = strrchr(dest, ':');
		if (colon && strchr(dest, ':') != colon)
			colon = NULL; /* a bare IPv6 address */
		hend = colon ? colon : dest + strlen(dest);
	}
	if ((size_t)(hend - h) >= hostlen || hend == h)
		return -1;
	memcpy(host, h, (size_t)(hend - h));
	host[hend - h] = '\0';
	if (colon) {
		unsigned long p = strtoul(colon + 1, &end, 10);
		if (!colon[1] || *end || p == 0 || p > 65535)
			return -1;
		*port = (unsigned)p;
	}
	return 0;
}

static int numeric_addr(const char *host, unsigned port, struct drain_req *rq)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)&rq->dst;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&rq->dst;

	memset(&rq->dst, 0, sizeof(rq->dst));
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		rq->dstlen = sizeof(*s4);
		return 1;
	}
	if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		rq->dstlen = sizeof(*s6);
		return 1;
	}
	return 0;
}

/* The best (lowest preference) MX host of dom, or 0 when it has none
 * (RFC 5321 5.1: then the domain itself is the host). */
static int best_mx(const char *dom, char *out, size_t outlen)
{
	unsigned char ans[NS_PACKETSZ * 4];
	ns_msg msg;
	ns_rr rr;
	int n, best = -1;
	struct __res_state rs;

	memset(&rs, 0, sizeof(rs));
	if (res_ninit(&rs))
		return 0;
	n = res_nquery(&rs, dom, ns_c_in, ns_t_mx, ans, sizeof(ans));
	if (n > 0 && ns_initparse(ans, n, &msg) == 0) {
		for (int i = 0; i < ns_msg_count(msg, ns_s_an); i++) {
			char name[NS_MAXDNAME];
			int pref;

			if (ns_parserr(&msg, ns_s_an, i, &rr) || ns_rr_type(rr) != ns_t_mx ||
			    ns_rr_rdlen(rr) < 3)
				continue;
			pref = ns_get16(ns_rr_rdata(rr));
			if (dn_expand(ns_msg_base(msg), ns_msg_end(msg), ns_rr_rdata(rr) + 2,
				      name, sizeof(name)) < 0)
				continue;
			if (best < 0 || pref < best) {
				best = pref;
				snprintf(out, outlen, "%s", name);
			}
		}
	}
	res_nclose(&rs);
	return best >= 0;
}

/* Resolver thread: DNS may block, so never on an engine thread. */
static void *resolve_main(void *arg)
{
	struct drain_req *rq = arg;
	struct drain_hub *h = rq->hub;
	char host[NS_MAXDNAME], port[16], addr[INET6_ADDRSTRLEN];
	struct addrinfo hints, *res = NULL;
	unsigned p = DRAIN_SMTP_PORT;
	const char *dest = rq->relay; /* the dest text, or "" for MX */
	int rc;

	if (*dest) {
		if (split_dest(dest, host, sizeof(host), &p)) {
			log_err("drain %.*s: bad dest \"%s\"", (int)rq->len, rq->dom, dest);
			rq->failed = 1;
			goto out;
		}
	} else if (!best_mx(rq->dom, host, sizeof(host))) {
		snprintf(host, sizeof(host), "%.*s", (int)rq->len, rq->dom);
	}
	snprintf(port, sizeof(port), "%u", p);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc || !res) {
		log_warn("drain %.*s: cannot resolve %s: %s; mail stays queued", (int)rq->len,
			 rq->dom, host, gai_strerror(rc));
		rq->failed = 1;
		goto out;
	}
	memcpy(&rq->dst, res->ai_addr, res->ai_addrlen);
	rq->dstlen = res->ai_addrlen;
	if (res->ai_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, addr, sizeof(addr));
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, addr, sizeof(addr));
	snprintf(rq->relay, sizeof(rq->relay), "%.200s[%s]:%u", host, addr, p);
	freeaddrinfo(res);
out:
	fan_out(rq);
	free(rq);
	atomic_fetch_sub(&h->resolvers, 1);
	return NULL;
}

/* ---- ETRN ----------------------------------------------------------------- */

/* Token bucket per client address: etrn_rate_limit per minute. */
static int rate_ok(struct drain *d, const char *client)
{
	uint64_t h = 14695981039346656037ull, now = mono_ms();
	struct drain_rate *r;

	for (const char *p = client; *p; p++) {
		h ^= (unsigned char)*p;
		h *= 1099511628211ull;
	}
	r = &d->rate[h % DRAIN_RATE_SLOTS];
	if (r->key != h || now - r->window_start_ms >= DRAIN_RATE_WINDOW_MS) {
		r->key = h;
		r->window_start_ms = now;
		r->count = 0;
	}
	return ++r->count <= d->hub->cfg->etrn_rate_limit;
}

static int client_sockaddr(const char *client, struct sockaddr_storage *ss)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, client, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, client, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		return 0;
	}
	return -1;
}

/* Lower-case node into dom (no trailing dot); -1 when it does not fit. */
static int node_domain(const char *node, size_t len, char *dom, size_t *dlen)
{
	if (len == 0 || len >= DRAIN_DOMAIN_MAX)
		return -1;
	for (size_t i = 0; i < len; i++)
		dom[i] = (char)(node[i] >= 'A' && node[i] <= 'Z' ? node[i] + 32 : node[i]);
	if (len > 1 && dom[len - 1] == '.')
		len--;
	dom[len] = '\0';
	*dlen = len;
	return 0;
}

/*
 * Start draining dom (checked and authorised by the caller): 252 when a drain
 * already runs (it is joined, never duplicated), 251 when nothing is held,
 * else 253 with the count in *n, after fanning the drain out to every engine
 * thread (resolving the destination first when it is a name); 458 when out
 * of memory. Any thread; never blocks.
 */
static int hub_start(struct drain_hub *h, const struct domtab_row *row,
		     const char *dom, size_t len, const char *who, uint64_t *n)
{
	struct drain_req *rq;
	char host[DRAIN_DOMAIN_MAX];
	unsigned port;

	*n = domstat_msgs(h->ds, dom, len);
	if (*n == 0 && !hub_active(h, dom, len)) {
		/* Nothing held, nothing running: nothing to start. Mail racing in
		 * now waits for the next ETRN. */
		log_info("ETRN %s from %s: no messages waiting", dom, who);
		return 251;
	}
	if (!hub_begin(h, dom, len)) {
		log_info("ETRN %s from %s: joins the drain already running", dom, who);
		return 252;
	}
	rq = calloc(1, sizeof(*rq));
	if (!rq) {
		for (unsigned i = 0; i < h->n; i++)
			hub_end(h, dom, len);
		return 458;
	}
	rq->hub = h;
	memcpy(rq->dom, dom, len);
	rq->dom[len] = '\0';
	rq->len = len;
	log_info("ETRN %s from %s: %" PRIu64 " message(s) waiting; drain started", rq->dom, who, *n);
	if (row->dest && split_dest(row->dest, host, sizeof(host), &port) == 0 &&
	    numeric_addr(host, port, rq)) {
		snprintf(rq->relay, sizeof(rq->relay), "%.64s[%.64s]:%u", host, host, port);
		fan_out(rq);
		free(rq);
		return 253;
	}
	/* A host name or MX: resolve on a thread of its own. */
	snprintf(rq->relay, sizeof(rq->relay), "%s", row->dest ? row->dest : "");
	{
		pthread_t th;
		pthread_attr_t at;

		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		atomic_fetch_add(&h->resolvers, 1);
		if (pthread_create(&th, &at, resolve_main, rq)) {
			atomic_fetch_sub(&h->resolvers, 1);
			log_err("drain %s: cannot start the resolver", rq->dom);
			rq->failed = 1;
			fan_out(rq);
			free(rq);
		}
		pthread_attr_destroy(&at);
	}
	return 253;
}

/* The RFC 1985 section 5 reply for a node and the outcome. */
static void etrn_reply(struct buf *out, int code, uint64_t n, const char *node, size_t len)
{
	switch (code) {
	case 251:
		(void)buf_printf(out, "251 2.0.0 OK, no messages waiting for node %.*s\r\n", (int)len, node);
		break;
	case 252:
		(void)buf_printf(out, "252 2.0.0 OK, pending messages for node %.*s started\r\n", (int)len, node);
		break;
	case 253:
		(void)buf_printf(out, "253 2.0.0 OK, %" PRIu64 " pending messages for node %.*s started\r\n",
				 n, (int)len, node);
		break;
	default:
		(void)buf_printf(out, "458 4.3.0 Unable to queue messages for node %.*s\r\n", (int)len, node);
		break;
	}
}

/* Does row belong to "#queue" or "@domain" (the domain itself or below)? */
static int row_matches(const struct domtab_row *row, const char *node, size_t len)
{
	size_t rl;

	if (row->name[0] == '*')
		return 0; /* a wildcard row names no domain to drain by itself */
	if (node[0] == '#')
		return row->queue && strlen(row->queue) == len - 1 &&
		       !strncasecmp(row->queue, node + 1, len - 1);
	rl = strlen(row->name);
	if (rl == len - 1)
		return !strncasecmp(row->name, node + 1, len - 1);
	return rl > len && row->name[rl - len] == '.' &&
	       !strncasecmp(row->name + rl - len + 1, node + 1, len - 1);
}

/*
 * ETRN #queue or @domain (RFC 1985 section 3): every provisioned domain in
 * the queue, or the domain and its subdomains, that the client may release.
 * One reply for all: 253 with the total when any drain started, 252 when
 * all were running, 251 when nothing is held, 459 when none is allowed.
 */
static void etrn_many(struct drain *d, const char *client, const struct sockaddr *sa,
		      const char *node, size_t len, struct buf *out)
{
	const struct domtab *t = domtab_live_get(d->hub->dt);
	unsigned matched = 0, allowed = 0, started = 0, joined = 0;
	uint64_t total = 0;
	char who[DRAIN_ADDR_TEXT];
	const struct domtab_row *row;

	snprintf(who, sizeof(who), "[%s] (%.*s)", client, (int)(len > 200 ? 200 : len), node);
	for (size_t i = 0; (row = domtab_row_at(t, i)); i++) {
		uint64_t n;
		int code;

		if (!row_matches(row, node, len))
			continue;
		matched++;
		if (sa && !domtab_row_allows(row, sa))
			continue;
		allowed++;
		code = hub_start(d->hub, row, row->name, strlen(row->name), who, &n);
		if (code == 253) {
			started++;
			total += n;
		} else if (code == 252) {
			joined++;
		}
	}
	if (!allowed) {
		log_info("ETRN %.*s from [%s]: %s", (int)len, node, client,
			 matched ? "not in the etrn_from networks of any of its domains" : "no such queue or domain here");
		(void)buf_printf(out, "459 5.7.1 Node %.*s not allowed: %s\r\n", (int)len, node,
				 matched ? "client may not release it" : "no such queue or domain here");
		return;
	}
	etrn_reply(out, started ? 253 : joined ? 252 : 251, total, node, len);
}

void drain_etrn(struct drain *d, const char *client, const char *node, size_t len,
		struct buf *out)
{
	struct drain_hub *h = d->hub;
	const struct domtab_row *row;
	struct sockaddr_storage ss;
	char dom[DRAIN_DOMAIN_MAX], who[DRAIN_ADDR_TEXT];
	uint64_t n;
	int code;

	if (!rate_ok(d, client)) {
		log_warn("ETRN %.*s from [%s]: over etrn_rate_limit", (int)(len > 255 ? 255 : len),
			 node, client);
		(void)buf_printf(out, "458 4.7.0 Unable to queue messages for node %.*s: too many ETRN requests, try later\r\n",
				 (int)(len > 255 ? 255 : len), node);
		return;
	}
	if (client_sockaddr(client, &ss)) {
		(void)buf_printf(out, "459 5.7.1 Node %.*s not allowed: unknown client address\r\n",
				 (int)(len > 255 ? 255 : len), node);
		return;
	}
	/* RFC 1985: "@domain" asks for subdomains too, "#queue" for a queue. */
	if (node[0] == '#' || node[0] == '@') {
		etrn_many(d, client, (struct sockaddr *)&ss, node, len, out);
		return;
	}
	if (node_domain(node, len, dom, &len)) {
		(void)buf_printf(out, "501 5.5.4 Syntax error in parameters\r\n");
		return;
	}
	row = domtab_find(domtab_live_get(h->dt), dom, len);
	if (!row) {
		log_info("ETRN %s from [%s]: not a customer domain here", dom, client);
		(void)buf_printf(out, "459 5.7.1 Node %s not allowed: not a customer domain here\r\n", dom);
		return;
	}
	/* Who may release a domain's mail (DESIGN.md 6): its etrn_from
	 * networks (an authenticated owner comes with AUTH). */
	if (!domtab_row_allows(row, (struct sockaddr *)&ss)) {
		log_info("ETRN %s from [%s]: not in its etrn_from networks", dom, client);
		(void)buf_printf(out, "459 5.7.1 Node %s not allowed: client %s may not release it\r\n",
				 dom, client);
		return;
	}
	snprintf(who, sizeof(who), "[%s]", client);
	code = hub_start(h, row, dom, len, who, &n);
	etrn_reply(out, code, n, dom, len);
}

void drain_hub_flush(struct drain_hub *h, const char *node, size_t len, struct buf *out)
{
	const struct domtab_row *row;
	char dom[DRAIN_DOMAIN_MAX];

	uint64_t n;
	int code;

	if (len > 1 && (node[0] == '#' || node[0] == '@')) {
		struct drain d0 = { .hub = h };
		etrn_many(&d0, "operator", NULL, node, len, out);
		return;
	}
	if (node_domain(node, len, dom, &len)) {
		(void)buf_printf(out, "501 5.5.4 Syntax error in parameters: a domain\r\n");
		return;
	}
	row = domtab_find(domtab_live_get(h->dt), dom, len);
	if (!row) {
		(void)buf_printf(out, "459 5.7.1 Node %s not allowed: not a customer domain here\r\n", dom);
		return;
	}
	code = hub_start(h, row, dom, len, "the operator", &n);
	etrn_reply(out, code, n, dom, len);
}

/* ---- per thread ------------------------------------------------------------ */

struct drain *drain_new(struct drain_hub *h, unsigned index, struct loop *l,
			struct spool_shard *sh)
{
	struct drain *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->hub = h;
	d->index = index;
	d->loop = l;
	d->sh = sh;
	d->idx = spool_shard_index(sh);
	__atomic_store_n(&h->drains[index], d, __ATOMIC_RELEASE);
	return d;
}

struct drain *drain_free(struct drain *d)
{
	struct drain_job *j, *next;

	if (!d)
		return NULL;
	for (j = d->jobs; j; j = next) {
		next = j->next;
		free(j->msgs);
		free(j);
	}
	free(d);
	return NULL;
}

int drain_busy(const struct drain *d)
{
	return d->conns > 0 || d->jobs != NULL;
}

/* ---- status (etrnctl status) ---------------------------------------------- */

#define DRAIN_STATUS_DOMAINS_MAX 10000 /* per shard, listed */
#define DRAIN_STATUS_WAIT_MS 3000

struct status_dom {
	char dom[DRAIN_DOMAIN_MAX];
	uint64_t msgs, rcpts, bytes, oldest_us;
};

struct status_req {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned refs;                 /* the asker + each thread not done */
	unsigned left;                 /* threads not done */
	struct spool_index_totals *tot; /* per thread */
	struct status_dom **doms;      /* per thread */
	size_t *ndoms;
	unsigned n;
};

struct status_job {
	struct status_req *rq;
	struct drain *d;
	unsigned i;
};

static void status_put(struct status_req *rq)
{
	unsigned refs;

	pthread_mutex_lock(&rq->mu);
	refs = --rq->refs;
	pthread_mutex_unlock(&rq->mu);
	if (refs)
		return;
	for (unsigned i = 0; i < rq->n; i++)
		free(rq->doms[i]);
	free(rq->doms);
	free(rq->ndoms);
	free(rq->tot);
	pthread_mutex_destroy(&rq->mu);
	pthread_cond_destroy(&rq->cv);
	free(rq);
}

/* On an engine thread: this shard's totals and queues. */
static void status_job_run(void *arg)
{
	struct status_job *sj = arg;
	struct status_req *rq = sj->rq;
	struct spool_index *idx = sj->d->idx;
	const struct spool_index_queue *q;
	struct spool_index_totals t;
	struct status_dom *v;
	size_t cursor = 0, n = 0;

	spool_index_totals(idx, &t);
	v = calloc(t.domains < DRAIN_STATUS_DOMAINS_MAX ? t.domains + 1 : DRAIN_STATUS_DOMAINS_MAX,
		   sizeof(*v));
	while (v && n < DRAIN_STATUS_DOMAINS_MAX && n < t.domains &&
	       (q = spool_index_queue_each(idx, &cursor))) {
		struct spool_index_qstat st;

		spool_index_queue_stat(q, &st);
		snprintf(v[n].dom, sizeof(v[n].dom), "%.*s", (int)st.domain_len, st.domain);
		v[n].msgs = st.messages;
		v[n].rcpts = st.recipients;
		v[n].bytes = st.bytes;
		v[n].oldest_us = st.oldest_us;
		n++;
	}
	pthread_mutex_lock(&rq->mu);
	rq->tot[sj->i] = t;
	rq->doms[sj->i] = v;
	rq->ndoms[sj->i] = n;
	rq->left--;
	pthread_cond_broadcast(&rq->cv);
	pthread_mutex_unlock(&rq->mu);
	free(sj);
	status_put(rq);
}

static int status_cmp(const void *a, const void *b)
{
	const struct status_dom *x = a, *y = b;
	int c = strcmp(x->dom, y->dom);

	return c;
}

void drain_hub_status(struct drain_hub *h, struct buf *out)
{
	struct status_req *rq = calloc(1, sizeof(*rq));
	struct status_dom *all = NULL;
	struct timespec dl;
	size_t nall = 0, k = 0;
	uint64_t now = wall_us();
	int timed_out = 0;

	if (!rq || !(rq->tot = calloc(h->n, sizeof(*rq->tot))) ||
	    !(rq->doms = calloc(h->n, sizeof(*rq->doms))) ||
	    !(rq->ndoms = calloc(h->n, sizeof(*rq->ndoms)))) {
		if (rq) {
			free(rq->tot);
			free(rq->doms);
			free(rq);
		}
		(void)buf_puts(out, "error: out of memory\n");
		return;
	}
	pthread_mutex_init(&rq->mu, NULL);
	pthread_cond_init(&rq->cv, NULL);
	rq->n = h->n;
	rq->refs = 1;
	for (unsigned i = 0; i < h->n; i++) {
		struct drain *d = __atomic_load_n(&h->drains[i], __ATOMIC_ACQUIRE);
		struct status_job *sj = d ? malloc(sizeof(*sj)) : NULL;

		if (!sj)
			continue;
		sj->rq = rq;
		sj->d = d;
		sj->i = i;
		pthread_mutex_lock(&rq->mu);
		rq->refs++;
		rq->left++;
		pthread_mutex_unlock(&rq->mu);
		if (loop_post(d->loop, status_job_run, sj)) {
			free(sj);
			pthread_mutex_lock(&rq->mu);
			rq->refs--;
			rq->left--;
			pthread_mutex_unlock(&rq->mu);
		}
	}
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += DRAIN_STATUS_WAIT_MS / 1000;
	pthread_mutex_lock(&rq->mu);
	while (rq->left && !timed_out)
		timed_out = pthread_cond_timedwait(&rq->cv, &rq->mu, &dl) != 0;
	for (unsigned i = 0; i < h->n; i++) {
		struct spool_index_totals *t = &rq->tot[i];
		if (!rq->doms[i] && !t->segments) {
			(void)buf_printf(out, "shard %u: no answer\n", i);
			continue;
		}
		(void)buf_printf(out, "shard %u: messages %" PRIu64 ", recipients %" PRIu64
				 ", domains %" PRIu64 ", segments %" PRIu64 ", bytes %" PRIu64
				 " (live %" PRIu64 "), delivered %" PRIu64 ", bounced %" PRIu64
				 ", expired %" PRIu64 "\n", i, t->messages, t->recipients, t->domains,
				 t->segments, t->total_bytes, t->live_bytes, t->delivered, t->bounced,
				 t->expired);
		nall += rq->ndoms[i];
	}
	all = nall ? calloc(nall, sizeof(*all)) : NULL;
	for (unsigned i = 0; all && i < h->n; i++)
		for (size_t j = 0; j < rq->ndoms[i]; j++)
			all[k++] = rq->doms[i][j];
	pthread_mutex_unlock(&rq->mu);
	status_put(rq);
	/* Merge each domain's shards: one line per domain, node-wide. */
	if (all) {
		qsort(all, k, sizeof(*all), status_cmp);
		for (size_t i = 0; i < k;) {
			struct status_dom s = all[i];
			size_t j = i + 1;
			for (; j < k && !strcmp(all[j].dom, s.dom); j++) {
				s.msgs += all[j].msgs;
				s.rcpts += all[j].rcpts;
				s.bytes += all[j].bytes;
				if (all[j].oldest_us < s.oldest_us)
					s.oldest_us = all[j].oldest_us;
			}
			(void)buf_printf(out, "domain %s: messages %" PRIu64 ", recipients %" PRIu64
					 ", bytes %" PRIu64 ", oldest %" PRIu64 " s\n", s.dom, s.msgs,
					 s.rcpts, s.bytes,
					 now > s.oldest_us ? (now - s.oldest_us) / 1000000 : 0);
			i = j;
		}
		free(all);
	}
	if (timed_out)
		(void)buf_puts(out, "warning: some engine threads did not answer in time\n");
}
