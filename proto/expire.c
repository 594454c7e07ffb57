/* SPDX-License-Identifier: MIT */
/*
 * expire: see expire.h. A scan walks each domain queue from its oldest
 * message while messages are older than max_hold, and collects their ids
 * (a message in several domains once). Each is then read back from its
 * segment (through io_uring), its still-pending recipients are taken from the
 * index, and the DSN and the DONE records are queued together. A crash before
 * that commit leaves the message held and it is expired again at the next
 * scan; nothing is lost, at worst a DSN is sent twice.
 */
#include "proto/expire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/log.h"
#include "proto/bounce.h"
#include "proto/dsn.h"
#include "proto/smtp_server.h"
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

struct expire {
	struct expire_conf conf;
	struct spool_shard *sh;
	struct spool_index *idx;
	uint64_t next_scan_us;
	uint64_t jobs[EXPIRE_BATCH];
	unsigned njobs, next;
	int busy;
	int stopping;
	unsigned outstanding;     /* spool callbacks still due for this job */
	int err;
	/* the message being expired */
	uint64_t msgid;
	uint64_t dsn_id;
	int has_dsn;
	struct buf rec;
	struct buf dsn;
	uint32_t *pending;
	uint32_t pending_cap;
	uint32_t npending;
	uint64_t count;
};

static uint64_t now_us(const struct expire *x)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)((int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 +
			  x->conf.clock_offset_us);
}

struct expire *expire_new(const struct expire_conf *conf, struct spool_shard *sh)
{
	struct expire *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->conf = *conf;
	x->sh = sh;
	x->idx = spool_shard_index(sh);
	buf_init(&x->rec, 0);
	buf_init(&x->dsn, 0);
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

void expire_stop(struct expire *x)
{
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
		if (x->jobs[i] == id)
			return 1;
	return 0;
}

/* Collect up to EXPIRE_BATCH messages older than the cutoff. Each queue is
 * in arrival order, so the walk stops at the first young message. */
static void expire_scan(struct expire *x, uint64_t now)
{
	const struct spool_index_queue *q;
	size_t cursor = 0;

	x->njobs = x->next = 0;
	while ((q = spool_index_queue_each(x->idx, &cursor)) && x->njobs < EXPIRE_BATCH) {
		struct spool_index_qstat st;
		struct spool_index_iter it;
		struct spool_index_entry e;

		uint64_t cutoff;

		spool_index_queue_stat(q, &st);
		cutoff = cutoff_for(x, now, st.domain, st.domain_len);
		if (st.oldest_us >= cutoff)
			continue;
		spool_index_queue_iter(q, &it);
		while (x->njobs < EXPIRE_BATCH && spool_index_queue_next(&it, &e)) {
			if (e.time_us >= cutoff)
				break;
			if (!job_known(x, e.msgid))
				x->jobs[x->njobs++] = e.msgid;
		}
	}
	x->next_scan_us = x->njobs == EXPIRE_BATCH ? now : now + EXPIRE_SCAN_INTERVAL_US;
}

/* bounce_queue() reports here once everything it queued is durable. */
static void job_part_done(void *arg, int err)
{
	struct expire *x = arg;
	char qid[SMTP_QID_MAX], dqid[SMTP_QID_MAX];

	if (err && !x->err)
		x->err = err;
	if (--x->outstanding)
		return;
	err = x->err;

	spool_msgid_format(x->msgid, qid, sizeof(qid));
	if (err) {
		log_err("%s: expiry not recorded (%s); the message stays held and is retried",
			qid, strerror(-err));
	} else if (x->has_dsn) {
		spool_msgid_format(x->dsn_id, dqid, sizeof(dqid));
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

/* The record is in x->rec: queue the DSN and the DONEs. */
static void job_read(void *arg, int err)
{
	struct expire *x = arg;
	struct spool_rec_hdr hdr;
	struct spool_rec_msg m;
	struct dsn_rcpt *dr = NULL;
	struct bounce_req br;
	const char *payload;
	char qid[SMTP_QID_MAX], addr[300];
	uint64_t now = now_us(x);
	int rc, n;

	spool_msgid_format(x->msgid, qid, sizeof(qid));
	if (err) {
		log_err("%s: cannot read the message to expire it: %s", qid, strerror(-err));
		goto skip;
	}
	if (spool_rec_decode(x->rec.data, x->rec.len, &hdr, &payload) != SPOOL_REC_OK ||
	    hdr.type != SPOOL_REC_MSG || hdr.msgid != x->msgid ||
	    spool_rec_decode_msg(payload, hdr.length, &m) != SPOOL_REC_OK) {
		log_err("%s: stored record does not check (CRC or layout); not expired", qid);
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
	/* Only recipients whose own domain's max_hold has passed expire; a
	 * message for several domains may expire in parts. */
	x->npending = 0;
	for (int i = 0; i < n; i++) {
		struct spool_rec_addr a = spool_rec_msg_rcpt(&m, x->pending[i]);
		const char *at = a.len ? memrchr(a.p, '@', a.len) : NULL;
		const char *d = at ? at + 1 : a.p;
		size_t dl = at ? a.len - (size_t)(at + 1 - a.p) : 0;

		if (hdr.time_us < cutoff_for(x, now, d, dl))
			x->pending[x->npending++] = x->pending[i];
	}
	if (x->npending == 0)
		goto skip;
	x->has_dsn = m.sender.len > 0; /* never a DSN to the null sender */
	for (uint32_t i = 0; i < x->npending; i++) {
		struct spool_rec_addr a = spool_rec_msg_rcpt(&m, x->pending[i]);
		log_info("%s: to=<%s>, relay=none, delay=%.0f, status=expired (held longer than its max_hold)",
			 qid, log_printable(addr, sizeof(addr), a.p, a.len),
			 (double)(now - hdr.time_us) / 1e6);
	}
	if (!x->has_dsn)
		log_info("%s: null sender: no delivery status notification", qid);
	dr = calloc(x->npending, sizeof(*dr));
	if (!dr) {
		rc = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < x->npending; i++) {
		dr[i].action = DSN_ACTION_FAILED;
		dr[i].status = EXPIRE_STATUS;
	}
	memset(&br, 0, sizeof(br));
	br.hostname = x->conf.hostname;
	br.hdr = &hdr;
	br.msg = &m;
	br.rcpt = x->pending;
	br.why = dr;
	br.nrcpt = x->npending;
	br.status = SPOOL_DONE_EXPIRED;
	br.now_us = now;
	rc = bounce_queue(x->sh, &br, &x->dsn, &x->dsn_id, job_part_done, x);
	free(dr);
	dr = NULL;
	if (rc)
		goto fail;
	x->outstanding = 1;
	return; /* job_part_done() ends the job */
fail:
	free(dr);
	log_err("%s: cannot expire: %s; retried at the next scan", qid, strerror(-rc));
skip:
	x->busy = 0;
}

static void job_start(struct expire *x, uint64_t msgid)
{
	struct spool_index_entry e;
	char qid[SMTP_QID_MAX];
	int rc;

	if (spool_index_msg_find(x->idx, msgid, &e))
		return; /* delivered or expired since the scan */
	x->msgid = msgid;
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
		spool_msgid_format(msgid, qid, sizeof(qid));
		log_err("%s: cannot read the message to expire it: %s", qid, strerror(-rc));
	} else {
		x->busy = 1;
	}
}

void expire_tick(struct expire *x)
{
	uint64_t now;

	if (x->busy || x->stopping)
		return;
	if (x->next < x->njobs) {
		job_start(x, x->jobs[x->next++]);
		return;
	}
	now = now_us(x);
	if (now < x->next_scan_us)
		return;
	expire_scan(x, now);
	if (x->next < x->njobs)
		job_start(x, x->jobs[x->next++]);
}
