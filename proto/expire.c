/* SPDX-License-Identifier: MIT */
/*
 * expire: see expire.h. A scan walks each domain queue from its oldest
 * message while messages are older than max_hold, and collects their ids
 * (a message in several domains once). Each is then read back from its
 * segment (through io_uring), its still-pending recipients are taken from the
 * index, and the DSN and the DONE records are queued together. A crash before
 * that commit leaves the message held and it is expired again at the next
 * scan; nothing is lost, at worst a DSN is sent twice.
 *
 * Delay warnings ride on the same scan: a message older than delay_warning,
 * not past its max_hold and without a NOTE(delay warned) in the index gets a
 * warning job, which queues the delayed DSN and then the NOTE. The index
 * learns the NOTE when the commit is durable (and recovery from the record),
 * so a later scan, or a restart, skips the message. With warnings on, a scan
 * walks every message older than delay_warning (warned ones included): no
 * I/O, O(such messages) once a minute.
 */
#include "proto/expire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/now.h"
#include "proto/bounce.h"
#include "proto/dsn.h"
#include "proto/qid.h"
#include "store/spool_index.h"
#include "store/spool_rec.h"

/* How often to look for expired mail; expiry is measured in days, so a
 * minute late is nothing, and a scan costs O(expired + domains). */
#define EXPIRE_SCAN_INTERVAL_US (60ull * 1000000)
/* Messages collected per scan; the next scan follows at once when full. */
#define EXPIRE_BATCH 256
/* RFC 3463: 4.4.7 "delivery time expired"; reported as failed (5.4.7 would
 * also do; Postfix reports 4.4.7 with Action: failed). */
#define EXPIRE_STATUS "4.4.7"
/* RFC 3463 3.5: X.4.7 "delivery time expired", class 4 (persistent
 * transient: the message stays queued) with Action: delayed, as Exchange
 * reports its delay DSNs; held mail waiting for ETRN has no delivery attempt
 * whose own code could be given instead. */
#define EXPIRE_DELAY_STATUS "4.4.7"

struct expire_job {
	uint64_t msgid;
	int warn;                 /* a delay warning, not expiry */
};

struct expire {
	struct expire_conf conf;
	struct spool_shard *sh;
	struct spool_index *idx;
	uint64_t next_scan_us;
	int scan_open;            /* a scan's jobs not all finished yet */
	struct expire_job jobs[EXPIRE_BATCH];
	unsigned njobs, next;
	int busy;
	int stopping;
	unsigned outstanding;     /* spool callbacks still due for this job */
	int err;
	/* the message being expired (or warned about: warn) */
	uint64_t msgid;
	int warn;
	uint64_t dsn_id;
	int has_dsn;
	struct buf rec;
	struct buf dsn;
	uint32_t *pending;
	uint32_t pending_cap;
	uint32_t npending;
	uint64_t count;
};

/* The scheduler's clock (core/now.h): the test clock's step included. */
static uint64_t now_us(const struct expire *x)
{
	return now_shifted_us(x->conf.clock_offset_us);
}

static void expire_tick(void *arg);
static void expire_stop(void *arg);
static int expire_busy_hook(void *arg);

struct expire *expire_new(const struct expire_conf *conf, struct spool_shard *sh)
{
	struct expire *x = calloc(1, sizeof(*x));
	struct loop *l = spool_shard_loop(sh);
	int rc;

	if (!x)
		return NULL;
	x->conf = *conf;
	x->sh = sh;
	x->idx = spool_shard_index(sh);
	buf_init(&x->rec, 0);
	buf_init(&x->dsn, 0);
	/* The DONEs and DSNs a step queues go out in the shard's commit of
	 * the same turn (LOOP_TURN_QUEUE runs before LOOP_TURN_COMMIT). */
	rc = loop_add_turn_hook(l, LOOP_TURN_QUEUE, "expiry", expire_tick, x);
	if (rc == 0)
		rc = loop_add_stop_hook(l, "expiry", expire_stop, x);
	if (rc == 0)
		rc = loop_add_busy_check(l, "expiry", expire_busy_hook, x);
	if (rc) {
		/* A hook already added would dangle: the caller fails, and
		 * its loop is freed without running. */
		expire_free(x);
		errno = -rc;
		return NULL;
	}
	return x;
}

struct expire *expire_free(struct expire *x)
{
	if (!x)
		return NULL;
	buf_free(&x->rec);
	buf_free(&x->dsn);
	free(x->pending);
	free(x);
	return NULL;
}

int expire_busy(const struct expire *x)
{
	return x->busy;
}

/* The loop's busy check (see expire_busy). */
static int expire_busy_hook(void *arg)
{
	return expire_busy(arg);
}

/* The stop hook: start no new work; work in flight finishes. */
static void expire_stop(void *arg)
{
	struct expire *x = arg;

	x->stopping = 1;
}

uint64_t expire_count(const struct expire *x)
{
	return x->count;
}

static uint64_t hold_for(const struct expire *x, const char *d, size_t n)
{
	uint64_t h = x->conf.hold ? x->conf.hold(x->conf.hold_arg, d, n) : 0;

	return h ? h : x->conf.max_hold_us;
}

static uint64_t cutoff_for(const struct expire *x, uint64_t now, const char *d, size_t n)
{
	uint64_t h = hold_for(x, d, n);

	return now > h ? now - h : 0;
}

static int job_known(const struct expire *x, uint64_t id)
{
	for (unsigned i = 0; i < x->njobs; i++)
		if (x->jobs[i].msgid == id)
			return 1;
	return 0;
}

/* A message in several domains is met in each queue: one job (the first
 * kind found; the other follows at the next scan). */
static void job_add(struct expire *x, uint64_t id, int warn)
{
	if (job_known(x, id))
		return;
	x->jobs[x->njobs].msgid = id;
	x->jobs[x->njobs].warn = warn;
	x->njobs++;
}

/* Collect up to EXPIRE_BATCH messages older than the cutoff, or older than
 * delay_warning and not warned yet. Each queue is in arrival order, so the
 * walk stops at the first message younger than both. */
static void expire_scan(struct expire *x, uint64_t now)
{
	const struct spool_index_queue *q;
	size_t cursor = 0;
	uint64_t dw = x->conf.delay_warning_us;
	uint64_t warn_cutoff = dw && now > dw ? now - dw : 0;

	x->njobs = x->next = 0;
	while ((q = spool_index_queue_each(x->idx, &cursor)) && x->njobs < EXPIRE_BATCH) {
		struct spool_index_qstat st;
		struct spool_index_iter it;
		struct spool_index_entry e;

		uint64_t cutoff, bound;

		spool_index_queue_stat(q, &st);
		cutoff = cutoff_for(x, now, st.domain, st.domain_len);
		/* delay_warning >= this domain's max_hold: no warning here. */
		bound = warn_cutoff > cutoff ? warn_cutoff : cutoff;
		if (st.oldest_us >= bound)
			continue;
		spool_index_queue_iter(q, &it);
		while (x->njobs < EXPIRE_BATCH && spool_index_queue_next(&it, &e)) {
			if (e.time_us >= bound)
				break;
			if (e.time_us < cutoff)
				job_add(x, e.msgid, 0);
			else if (!e.delay_warned && !e.held) /* no warning either */
				job_add(x, e.msgid, 1);
		}
	}
	x->next_scan_us = x->njobs == EXPIRE_BATCH ? now : now + EXPIRE_SCAN_INTERVAL_US;
	x->scan_open = 1;
}

/* bounce_queue() reports here once everything it queued is durable. */
static void job_part_done(void *arg, int err)
{
	struct expire *x = arg;
	char qid[QID_MAX], dqid[QID_MAX];

	if (err && !x->err)
		x->err = err;
	if (--x->outstanding)
		return;
	err = x->err;

	qid_format(x->msgid, qid);
	if (err && x->warn) {
		log_err("%s: delay warning not recorded (%s); retried at the next scan",
			qid, strerror(-err));
	} else if (err) {
		log_err("%s: expiry not recorded (%s); the message stays held and is retried",
			qid, strerror(-err));
	} else if (x->warn) {
		if (x->has_dsn) {
			qid_format(x->dsn_id, dqid);
			log_info("%s: sender delay notification: %s", qid, dqid);
		}
	} else if (x->has_dsn) {
		qid_format(x->dsn_id, dqid);
		log_info("%s: sender non-delivery notification: %s", qid, dqid);
		x->count++;
	} else {
		x->count++;
	}
	x->busy = 0;
}

static int grow_pending(struct expire *x, uint32_t n)
{
	uint32_t *p;

	if (n <= x->pending_cap)
		return 0;
	p = realloc(x->pending, n * sizeof(*p));
	if (!p)
		return -ENOMEM;
	x->pending = p;
	x->pending_cap = n;
	return 0;
}

/* A warning job: n pending recipients in x->pending. Those still under
 * their domain's max_hold go in one delayed DSN, followed by the NOTE that
 * keeps the message from being warned about again. Returns 0 (the job goes
 * on: job_part_done() ends it), 1 (nothing to do) or -errno. */
static int job_warn(struct expire *x, const struct spool_rec_hdr *hdr,
		    const struct spool_rec_msg *m, int n, uint64_t now)
{
	struct dsn_rcpt *dr;
	struct bounce_req br;
	char qid[QID_MAX], addr[LOG_ADDR_MAX];
	uint64_t hold = 0;
	int same_hold = 1, rc;

	/* Warned while the read was in flight (cannot happen with one job at
	 * a time, but the index is the truth). */
	if (spool_index_msg_noted(x->idx, x->msgid, SPOOL_NOTE_DELAY_WARNED) != 0)
		return 1;
	x->npending = 0;
	for (int i = 0; i < n; i++) {
		struct spool_rec_addr a = spool_rec_msg_rcpt(m, x->pending[i]);
		size_t dl;
		const char *d = spool_rec_addr_domain(a, &dl);
		uint64_t h = hold_for(x, d, dl);

		/* Past its hold: expiry's, not ours. */
		if (hdr->time_us < (now > h ? now - h : 0))
			continue;
		if (x->npending > 0 && h != hold)
			same_hold = 0;
		hold = h;
		x->pending[x->npending++] = x->pending[i];
	}
	if (x->npending == 0)
		return 1;
	qid_format(x->msgid, qid);
	x->has_dsn = m->sender.len > 0; /* never a DSN to the null sender */
	for (uint32_t i = 0; i < x->npending; i++) {
		struct spool_rec_addr a = spool_rec_msg_rcpt(m, x->pending[i]);
		log_info("%s: to=<%s>, relay=none, delay=%.0f, status=deferred (delayed longer than delay_warning)",
			 qid, log_printable(addr, sizeof(addr), a.p, a.len),
			 (double)(now - hdr->time_us) / 1e6);
	}
	if (!x->has_dsn)
		log_info("%s: null sender: no delay notification", qid);
	dr = calloc(x->npending, sizeof(*dr));
	if (!dr)
		return -ENOMEM;
	for (uint32_t i = 0; i < x->npending; i++) {
		dr[i].action = DSN_ACTION_DELAYED;
		dr[i].status = EXPIRE_DELAY_STATUS;
	}
	br = bounce_req_make(x->conf.hostname, hdr, m, x->pending, dr, x->npending,
			     0, now);
	br.note = SPOOL_NOTE_DELAY_WARNED;
	/* RFC 3464 2.3.9 Will-Retry-Until is per recipient, dsn_build() takes
	 * one: given only when every listed recipient's hold agrees. */
	br.retry_until_us = same_hold ? hdr->time_us + hold : 0;
	rc = bounce_queue(x->sh, &br, &x->dsn, &x->dsn_id, job_part_done, x);
	free(dr);
	if (rc)
		return rc;
	x->has_dsn = x->dsn_id != 0; /* none either to an SPF-failed sender */
	x->outstanding = 1;
	return 0;
}

/* The record is in x->rec: queue the DSN and the DONEs (or, for a warning,
 * the delayed DSN and the NOTE). */
/* Expire the recipients of a read message whose own domain's max_hold has
 * passed (a message for several domains may expire in parts): log each,
 * queue their DONEs and the sender's DSN. Returns 0 (queued: job_part_done()
 * ends the job), 1 (nothing to do) or -errno. */
static int job_expire(struct expire *x, const struct spool_rec_hdr *hdr,
		      const struct spool_rec_msg *m, int n, uint64_t now)
{
	struct dsn_rcpt *dr;
	struct bounce_req br;
	char qid[QID_MAX], addr[LOG_ADDR_MAX];
	int rc, quarantined;

	x->npending = 0;
	for (int i = 0; i < n; i++) {
		struct spool_rec_addr a = spool_rec_msg_rcpt(m, x->pending[i]);
		size_t dl;
		const char *d = spool_rec_addr_domain(a, &dl);

		if (hdr->time_us < cutoff_for(x, now, d, dl))
			x->pending[x->npending++] = x->pending[i];
	}
	if (x->npending == 0)
		return 1;
	qid_format(x->msgid, qid);
	/* Quarantined and never released: expired like any message (nothing
	 * stays forever), but without a DSN: a content filter held it, so the
	 * sender is most likely forged or the mail unwanted (no backscatter). */
	quarantined = spool_index_msg_noted(x->idx, x->msgid, SPOOL_NOTE_RELEASED) == 0;
	x->has_dsn = m->sender.len > 0 && !quarantined; /* never to the null sender */
	for (uint32_t i = 0; i < x->npending; i++) {
		struct spool_rec_addr a = spool_rec_msg_rcpt(m, x->pending[i]);
		log_info("%s: to=<%s>, relay=none, delay=%.0f, status=expired (held longer than its max_hold)",
			 qid, log_printable(addr, sizeof(addr), a.p, a.len),
			 (double)(now - hdr->time_us) / 1e6);
	}
	if (quarantined)
		log_info("%s: quarantined: no delivery status notification", qid);
	else if (!x->has_dsn)
		log_info("%s: null sender: no delivery status notification", qid);
	dr = calloc(x->npending, sizeof(*dr));
	if (!dr)
		return -ENOMEM;
	for (uint32_t i = 0; i < x->npending; i++) {
		dr[i].action = DSN_ACTION_FAILED;
		dr[i].status = EXPIRE_STATUS;
	}
	br = bounce_req_make(x->conf.hostname, hdr, m, x->pending, dr, x->npending,
			     SPOOL_DONE_EXPIRED, now);
	br.no_dsn = quarantined;
	rc = bounce_queue(x->sh, &br, &x->dsn, &x->dsn_id, job_part_done, x);
	free(dr);
	if (rc)
		return rc;
	x->has_dsn = x->dsn_id != 0; /* none either to an SPF-failed sender */
	x->outstanding = 1;
	return 0;
}

static void job_read(void *arg, int err)
{
	struct expire *x = arg;
	struct spool_rec_hdr hdr;
	struct spool_rec_msg m;
	const char *payload;
	char qid[QID_MAX];
	uint64_t now = now_us(x);
	int rc, n;

	qid_format(x->msgid, qid);
	if (err) {
		log_err("%s: cannot read the message to %s: %s", qid,
			x->warn ? "warn its sender" : "expire it", strerror(-err));
		goto skip;
	}
	if (spool_rec_decode(x->rec.data, x->rec.len, &hdr, &payload) != SPOOL_REC_OK ||
	    hdr.type != SPOOL_REC_MSG || hdr.msgid != x->msgid ||
	    spool_rec_decode_msg(payload, hdr.length, &m) != SPOOL_REC_OK) {
		log_err("%s: stored record does not check (CRC or layout); not %s", qid,
			x->warn ? "warned about" : "expired");
		goto skip;
	}
	if (grow_pending(x, m.nrcpt)) {
		rc = -ENOMEM;
		goto fail;
	}
	/* The index is the truth about what is still pending: recipients may
	 * have been delivered while the read was in flight. */
	n = spool_index_msg_pending(x->idx, x->msgid, x->pending, m.nrcpt);
	if (n <= 0)
		goto skip;
	rc = x->warn ? job_warn(x, &hdr, &m, n, now) : job_expire(x, &hdr, &m, n, now);
	if (rc == 0)
		return; /* job_part_done() ends the job */
	if (rc > 0)
		goto skip;
fail:
	if (x->warn)
		log_err("%s: cannot send a delay warning: %s; retried at the next scan",
			qid, strerror(-rc));
	else
		log_err("%s: cannot expire: %s; retried at the next scan", qid,
			strerror(-rc));
skip:
	x->busy = 0;
}

static void job_start(struct expire *x, const struct expire_job *j)
{
	uint64_t msgid = j->msgid;
	struct spool_index_entry e;
	char qid[QID_MAX];
	int rc;

	if (spool_index_msg_find(x->idx, msgid, &e))
		return; /* delivered or expired since the scan */
	x->msgid = msgid;
	x->warn = j->warn;
	x->has_dsn = 0;
	x->outstanding = 0;
	x->err = 0;
	buf_reset(&x->rec);
	rc = buf_reserve(&x->rec, e.rec_len);
	if (rc == 0) {
		x->rec.len = e.rec_len;
		rc = spool_shard_read(x->sh, e.segment_id, e.off, e.rec_len, x->rec.data,
				      job_read, x);
	}
	if (rc == -EBUSY)
		x->next--; /* the shard's one read is in use: try again next turn */
	else if (rc) {
		qid_format(msgid, qid);
		log_err("%s: cannot read the message to %s: %s", qid,
			j->warn ? "warn its sender" : "expire it", strerror(-rc));
	} else {
		x->busy = 1;
	}
}

/* The turn hook: a bounded step of work if any is due (expire.h). */
static void expire_tick(void *arg)
{
	struct expire *x = arg;
	uint64_t now;

	if (x->busy || x->stopping)
		return;
	if (x->next < x->njobs) {
		job_start(x, &x->jobs[x->next++]);
		return;
	}
	if (x->scan_open) {
		/* The scan and every job it found are over: what it was to
		 * expire or warn about is logged and durable. A test waits
		 * for this count before it checks that nothing else was. */
		x->scan_open = 0;
		metrics_add(METRIC_EXPIRY_SCANS, 1);
	}
	now = now_us(x);
	if (now < x->next_scan_us)
		return;
	expire_scan(x, now);
	if (x->next < x->njobs)
		job_start(x, &x->jobs[x->next++]);
}
