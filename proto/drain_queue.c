/* SPDX-License-Identifier: MIT */
/*
 * drain_queue: see drain_queue.h. The asker and the jobs meet at a
 * reference-counted rendezvous (core/rendezvous.h), as drain_status.c's do.
 * A job ends (dq_finish) exactly once, on its engine thread.
 */
#include "proto/drain_queue.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/datefmt.h"
#include "core/log.h"
#include "core/now.h"
#include "core/rendezvous.h"
#include "proto/bounce.h"
#include "proto/drain_resolve.h"
#include "proto/qid.h"
#include "store/spool.h"
#include "store/spool_index.h"
#include "store/spool_rec.h"

#define DQ_WHO_MAX 128     /* the asker as logged */
#define DQ_TIME_MAX 32     /* "2026-12-01T23:59:59Z" and its NUL */
/* queue list: envelope reads in flight per job (the shard allows
 * SPOOL_READS_MAX, 32, for everyone: leave drains and expiry some). */
#define DQ_LIST_READS 8

struct dq_req {
	struct rendezvous rv; /* rv.mu guards outs and rcs */
	unsigned n;
	struct buf *outs;   /* per job: its reply, moved in by dq_finish */
	int *rcs;           /* per job: its result */
};

/* queue list: one message as listed; its sender comes from reading the
 * record's header and envelope (rec_len - body_len bytes: never the body). */
struct dq_item {
	struct dq_job *j;
	uint64_t msgid, off;
	uint32_t seg, head_len;
	size_t line_off, line_len;      /* its line but the sender, in j->rec */
	char *head;                     /* read buffer, then freed */
	struct spool_rec_addr sender;   /* into head; p NULL: unknown */
};

struct dq_job {
	struct dq_req *rq;
	unsigned i;                     /* its slot in rq */
	struct drain_status_shard shard;
	enum drain_queue_op op;
	uint64_t msgid;
	char dom[DRAIN_DOMAIN_MAX];
	size_t dlen;
	char who[DQ_WHO_MAX];
	const char *hostname;
	struct buf out;                 /* the reply being built */
	struct buf rec;                 /* the record read */
	struct buf dsn;                 /* bounce: the DSN until durable */
	uint64_t dsn_id;
	uint32_t *pend;                 /* pending recipients' indexes */
	unsigned npend, outstanding;
	int rc;
	struct dq_item *items;          /* queue list */
	unsigned nitems, capitems, next, inflight, cut;
};

static void dq_put(struct dq_req *rq)
{
	if (!rendezvous_put(&rq->rv))
		return;
	for (unsigned i = 0; i < rq->n; i++)
		buf_free(&rq->outs[i]);
	free(rq->outs);
	free(rq->rcs);
	rendezvous_destroy(&rq->rv);
	free(rq);
}

static struct dq_req *dq_req_new(unsigned n)
{
	struct dq_req *rq = calloc(1, sizeof(*rq));

	if (!rq || !(rq->outs = calloc(n, sizeof(*rq->outs))) ||
	    !(rq->rcs = calloc(n, sizeof(*rq->rcs)))) {
		if (rq)
			free(rq->outs);
		free(rq);
		return NULL;
	}
	rendezvous_init(&rq->rv);
	rq->n = n;
	for (unsigned i = 0; i < n; i++)
		rq->rcs[i] = -ETIMEDOUT; /* until the job says otherwise */
	return rq;
}

/* On the engine thread: hand the reply to the asker and drop the job. */
static void dq_finish(struct dq_job *j)
{
	struct dq_req *rq = j->rq;

	pthread_mutex_lock(&rq->rv.mu);
	rq->outs[j->i] = j->out;
	rq->rcs[j->i] = j->rc;
	rendezvous_end_locked(&rq->rv);
	pthread_mutex_unlock(&rq->rv.mu);
	buf_free(&j->rec);
	buf_free(&j->dsn);
	free(j->pend);
	for (unsigned k = 0; k < j->nitems; k++)
		free(j->items[k].head);
	free(j->items);
	free(j);
	dq_put(rq);
}

static struct dq_job *dq_job_new(struct dq_req *rq, unsigned i,
				 const struct drain_status_shard *shard, const char *who)
{
	struct dq_job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->rq = rq;
	j->i = i;
	j->shard = *shard;
	buf_init(&j->out, 0);
	buf_init(&j->rec, 0);
	buf_init(&j->dsn, 0);
	snprintf(j->who, sizeof(j->who), "%s", who ? who : "the operator");
	return j;
}

/* Post j to its loop holding a reference; 0, or -errno (j freed). */
static int dq_post(struct dq_job *j, loop_hook_fn fn)
{
	struct dq_req *rq = j->rq;

	rendezvous_hold(&rq->rv);
	if (j->shard.loop && loop_post(j->shard.loop, fn, j) == 0)
		return 0;
	rendezvous_unhold(&rq->rv);
	free(j);
	return -EAGAIN;
}

static const char *dq_time(uint64_t us, char out[DQ_TIME_MAX])
{
	if (datefmt_iso8601(out, DQ_TIME_MAX, (time_t)(us / 1000000u)))
		snprintf(out, DQ_TIME_MAX, "%" PRIu64, us / 1000000u);
	return out;
}

/* Untrusted bytes (addresses, headers) as the operator's terminal may see
 * them: control bytes but TAB and line ends become '?'. */
static void dq_put_safe(struct buf *out, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		char q = (c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f ? '?' : (char)c;

		(void)buf_append(out, &q, 1);
	}
}

/* ---- queue list ------------------------------------------------------------ */

/* Note a message of queue q (its line, less the sender, into j->rec). */
static int list_item(struct dq_job *j, const struct spool_index_entry *e,
		     const struct spool_index_qstat *st)
{
	char qid[QID_MAX], when[DQ_TIME_MAX];
	struct dq_item *it;

	if (j->nitems == j->capitems) {
		unsigned cap = j->capitems ? j->capitems * 2 : 64;
		struct dq_item *v = realloc(j->items, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		j->items = v;
		j->capitems = cap;
	}
	it = &j->items[j->nitems++];
	memset(it, 0, sizeof(*it));
	it->j = j;
	it->msgid = e->msgid;
	it->seg = e->segment_id;
	it->off = e->off;
	it->head_len = e->rec_len - (uint32_t)e->body_len;
	it->line_off = j->rec.len;
	/* A held (quarantined) message: '!' after its id, as mailq marks
	 * Postfix's hold queue. */
	(void)buf_printf(&j->rec, "%s%s\t%s\t%" PRIu64 "\t%" PRIu32 "\t%.*s",
			 qid_format(e->msgid, qid), e->held ? "!" : "", dq_time(e->time_us, when), e->body_len,
			 e->npending, (int)st->domain_len, st->domain);
	it->line_len = j->rec.len - it->line_off;
	return 0;
}

static void list_queue(struct dq_job *j, const struct spool_index_queue *q)
{
	struct spool_index_qstat st;
	struct spool_index_iter it;
	struct spool_index_entry e;

	spool_index_queue_stat(q, &st);
	spool_index_queue_iter(q, &it);
	while (spool_index_queue_next(&it, &e)) {
		if (j->nitems >= DRAIN_QUEUE_LIST_MAX || list_item(j, &e, &st)) {
			j->cut = 1;
			return;
		}
	}
}

/* Every envelope read: the lines, and the job ends. */
static void list_end(struct dq_job *j)
{
	for (unsigned k = 0; k < j->nitems; k++) {
		struct dq_item *it = &j->items[k];

		(void)buf_append(&j->out, j->rec.data + it->line_off, it->line_len);
		(void)buf_puts(&j->out, "\t<");
		if (it->sender.p)
			dq_put_safe(&j->out, it->sender.p, it->sender.len);
		(void)buf_puts(&j->out, it->sender.p ? ">\n" : "?>\n");
	}
	if (j->cut)
		(void)buf_printf(&j->out, "warning: shard %u: only the first %d listed\n", j->i,
				 DRAIN_QUEUE_LIST_MAX);
	j->rc = (int)j->nitems;
	dq_finish(j);
}

static void list_pump(struct dq_job *j);

static void list_head_read(void *arg, int err)
{
	struct dq_item *it = arg;
	struct dq_job *j = it->j;
	struct spool_rec_hdr hdr;
	struct spool_rec_msg m;

	/* The header's CRC covers the body, which was not read: the checks
	 * here are the layout's. A record moved by compaction meanwhile reads
	 * as garbage and is shown with an unknown sender. */
	if (!err && spool_rec_decode_hdr(it->head, it->head_len, &hdr) == SPOOL_REC_OK &&
	    hdr.type == SPOOL_REC_MSG && hdr.msgid == it->msgid &&
	    spool_rec_decode_msg_head(it->head + SPOOL_REC_HDR_SIZE,
				      it->head_len - SPOOL_REC_HDR_SIZE, &m) == SPOOL_REC_OK)
		it->sender = m.sender;
	j->inflight--;
	list_pump(j);
}

/* Keep up to DQ_LIST_READS envelope reads in flight; end when all are in.
 * A read that cannot start leaves that sender unknown. */
static void list_pump(struct dq_job *j)
{
	while (j->next < j->nitems && j->inflight < DQ_LIST_READS) {
		struct dq_item *it = &j->items[j->next++];

		if (it->head_len < SPOOL_REC_HDR_SIZE || !(it->head = malloc(it->head_len)))
			continue;
		if (spool_shard_read(j->shard.sh, it->seg, it->off, it->head_len, it->head,
				     list_head_read, it) == 0)
			j->inflight++;
	}
	if (j->inflight == 0)
		list_end(j);
}

/* On the engine thread: this shard's messages, then their senders. */
static void list_run(void *arg)
{
	struct dq_job *j = arg;
	const struct spool_index_queue *q;
	size_t cursor = 0;

	if (j->dlen) {
		if ((q = spool_index_queue(j->shard.idx, j->dom, j->dlen)))
			list_queue(j, q);
	} else {
		while (!j->cut && (q = spool_index_queue_each(j->shard.idx, &cursor)))
			list_queue(j, q);
	}
	list_pump(j);
}

void drain_queue_list(const struct drain_queue_ctx *c, const char *domain, size_t len,
		      struct buf *out)
{
	struct dq_req *rq = dq_req_new(c->n);
	long total = 0;
	int timed_out;

	if (!rq) {
		(void)buf_puts(out, "error: out of memory\n");
		return;
	}
	if (len >= DRAIN_DOMAIN_MAX)
		len = DRAIN_DOMAIN_MAX - 1; /* no queue has a longer name */
	for (unsigned i = 0; i < c->n; i++) {
		struct dq_job *j = dq_job_new(rq, i, &c->shards[i], NULL);

		if (!j)
			continue;
		memcpy(j->dom, domain ? domain : "", domain ? len : 0);
		j->dlen = domain ? len : 0;
		(void)dq_post(j, list_run);
	}
	timed_out = rendezvous_wait(&rq->rv, DRAIN_QUEUE_WAIT_MS);
	for (unsigned i = 0; i < rq->n; i++) {
		if (rq->rcs[i] < 0) {
			(void)buf_printf(out, "warning: shard %u did not answer\n", i);
			continue;
		}
		(void)buf_append(out, rq->outs[i].data, rq->outs[i].len);
		total += rq->rcs[i];
	}
	pthread_mutex_unlock(&rq->rv.mu);
	dq_put(rq);
	(void)buf_printf(out, "total %ld%s\n", total, timed_out ? " (incomplete)" : "");
}

/* ---- one message ----------------------------------------------------------- */

static const char *dq_state_name(int st)
{
	switch (st) {
	case SPOOL_DONE_DELIVERED: return "delivered";
	case SPOOL_DONE_BOUNCED: return "bounced";
	case SPOOL_DONE_EXPIRED: return "expired or deleted";
	default: return "pending";
	}
}

/* The recipients' states, by index (0 = pending), or NULL. Caller frees. */
static uint8_t *dq_states(struct dq_job *j, uint32_t nrcpt)
{
	uint8_t *st = calloc(nrcpt, 1), *dst = calloc(nrcpt, 1);
	uint32_t *idx = calloc(nrcpt, sizeof(*idx));
	int n = st && dst && idx ? spool_index_msg_done(j->shard.idx, j->msgid, idx, dst, nrcpt) : -1;

	for (int k = 0; k < n; k++)
		if (idx[k] < nrcpt)
			st[idx[k]] = dst[k];
	free(dst);
	free(idx);
	if (n < 0) {
		free(st);
		return NULL;
	}
	return st;
}

/* The header (up to the first empty line) or, full, the message. */
static void show_body(struct dq_job *j, const struct spool_rec_msg *m)
{
	size_t n = m->body_len;
	const char *eoh = NULL;

	if (j->op == DRAIN_QUEUE_SHOW) {
		for (size_t i = 0; i + 1 < n && !eoh; i++)
			if (m->body[i] == '\n' && (m->body[i + 1] == '\n' ||
			    (i + 2 < n && m->body[i + 1] == '\r' && m->body[i + 2] == '\n')))
				eoh = m->body + i + 1;
		n = eoh ? (size_t)(eoh - m->body) : n;
	}
	if (n > DRAIN_QUEUE_SHOW_MAX)
		n = DRAIN_QUEUE_SHOW_MAX;
	dq_put_safe(&j->out, m->body, n);
	if (n < m->body_len && j->op == DRAIN_QUEUE_SHOW_FULL)
		(void)buf_printf(&j->out, "\n[cut at %u bytes of %zu]\n", DRAIN_QUEUE_SHOW_MAX,
				 m->body_len);
}

static void msg_show(struct dq_job *j, const struct spool_rec_hdr *hdr,
		     const struct spool_rec_msg *m)
{
	uint8_t *st = dq_states(j, m->nrcpt);
	char qid[QID_MAX], when[DQ_TIME_MAX];
	size_t cur = 0;

	(void)buf_printf(&j->out, "qid: %s\narrival: %s\nsize: %zu\nsender: <",
			 qid_format(j->msgid, qid), dq_time(hdr->time_us, when), m->body_len);
	dq_put_safe(&j->out, m->sender.p, m->sender.len);
	(void)buf_puts(&j->out, ">\n");
	for (uint32_t i = 0; i < m->nrcpt; i++) {
		struct spool_rec_addr a = spool_rec_msg_rcpt_next(m, &cur);

		(void)buf_puts(&j->out, "recipient: <");
		dq_put_safe(&j->out, a.p, a.len);
		(void)buf_printf(&j->out, "> %s\n", dq_state_name(st ? st[i] : 0));
	}
	(void)buf_puts(&j->out, "\n");
	show_body(j, m);
	free(st);
	j->rc = 0;
}

static void bounce_done(void *arg, int err)
{
	struct dq_job *j = arg;
	char qid[QID_MAX], dq[QID_MAX];

	qid_format(j->msgid, qid);
	if (err) {
		log_err("%s: bounce asked by %s failed: %s", qid, j->who, strerror(-err));
		(void)buf_printf(&j->out, "error: %s: bounce failed: %s\n", qid, strerror(-err));
		j->rc = err;
	} else {
		log_info("%s: returned to its sender by %s: %u recipient(s), DSN %s", qid,
			 j->who, j->npend, j->dsn_id ? qid_format(j->dsn_id, dq) : "none (null or SPF-failed sender)");
		(void)buf_printf(&j->out, "ok: %s returned to its sender: %u recipient(s), DSN %s\n",
				 qid, j->npend, j->dsn_id ? qid_format(j->dsn_id, dq) : "none (null or SPF-failed sender)");
		j->rc = 0;
	}
	dq_finish(j);
}

/* 0: bounce_done() ends the job; else -errno (the job goes on to end). */
static int msg_bounce(struct dq_job *j, const struct spool_rec_hdr *hdr,
		      const struct spool_rec_msg *m)
{
	struct dsn_rcpt *why;
	struct bounce_req br;
	int n, rc;

	j->pend = calloc(m->nrcpt, sizeof(*j->pend));
	why = calloc(m->nrcpt, sizeof(*why));
	/* The index, not the record, says what is still pending. */
	n = j->pend && why ? spool_index_msg_pending(j->shard.idx, j->msgid, j->pend, m->nrcpt)
			   : -ENOMEM;
	if (n <= 0) {
		free(why);
		return n < 0 ? n : -ENOENT;
	}
	for (int k = 0; k < n; k++) {
		why[k].action = DSN_ACTION_FAILED;
		why[k].status = DRAIN_QUEUE_BOUNCE_STATUS;
	}
	br = bounce_req_make(j->hostname, hdr, m, j->pend, why, (unsigned)n,
			     SPOOL_DONE_BOUNCED, now_wall_us());
	j->npend = (unsigned)n;
	rc = bounce_queue(j->shard.sh, &br, &j->dsn, &j->dsn_id, bounce_done, j);
	free(why);
	return rc;
}

static void msg_read(void *arg, int err)
{
	struct dq_job *j = arg;
	struct spool_rec_hdr hdr;
	struct spool_rec_msg m;
	const char *payload;
	char qid[QID_MAX];
	int rc = err;

	qid_format(j->msgid, qid);
	if (!rc && (spool_rec_decode(j->rec.data, j->rec.len, &hdr, &payload) != SPOOL_REC_OK ||
		    hdr.type != SPOOL_REC_MSG || hdr.msgid != j->msgid ||
		    spool_rec_decode_msg(payload, hdr.length, &m) != SPOOL_REC_OK))
		rc = -EBADMSG;
	if (!rc && j->op != DRAIN_QUEUE_BOUNCE) {
		msg_show(j, &hdr, &m);
		dq_finish(j);
		return;
	}
	if (!rc && (rc = msg_bounce(j, &hdr, &m)) == 0)
		return; /* bounce_done() ends it */
	(void)buf_printf(&j->out, "error: %s: %s\n", qid,
			 rc == -EBADMSG ? "stored record does not check (CRC or layout)"
			 : rc == -ENOENT ? "no recipient pending any more" : strerror(-rc));
	j->rc = rc;
	dq_finish(j);
}

static void delete_done(void *arg, int err)
{
	struct dq_job *j = arg;
	char qid[QID_MAX];

	if (err)
		j->rc = err;
	if (--j->outstanding)
		return;
	qid_format(j->msgid, qid);
	if (j->rc) {
		log_err("%s: delete asked by %s failed: %s", qid, j->who, strerror(-j->rc));
		(void)buf_printf(&j->out, "error: %s: delete failed: %s\n", qid, strerror(-j->rc));
	} else {
		log_info("%s: deleted by %s: %u recipient(s) marked done", qid, j->who, j->npend);
		(void)buf_printf(&j->out, "ok: %s deleted: %u recipient(s) marked done\n", qid,
				 j->npend);
	}
	dq_finish(j);
}

/* A DONE per pending recipient (postsuper -d); 0: delete_done() ends the
 * job, else -errno. */
static int msg_delete(struct dq_job *j, uint32_t nrcpt)
{
	int n;

	j->pend = calloc(nrcpt, sizeof(*j->pend));
	n = j->pend ? spool_index_msg_pending(j->shard.idx, j->msgid, j->pend, nrcpt) : -ENOMEM;
	if (n <= 0)
		return n < 0 ? n : -ENOENT;
	j->npend = (unsigned)n;
	j->outstanding = 1; /* ours, dropped below: no early end */
	for (int k = 0; k < n; k++) {
		int rc = spool_append_done(j->shard.sh, j->msgid, j->pend[k], SPOOL_DONE_EXPIRED,
					   delete_done, j);
		if (rc)
			j->rc = rc;
		else
			j->outstanding++;
	}
	delete_done(j, 0);
	return 0;
}

static void release_done(void *arg, int err)
{
	struct dq_job *j = arg;
	char qid[QID_MAX];

	qid_format(j->msgid, qid);
	if (err) {
		log_err("%s: release asked by %s failed: %s", qid, j->who, strerror(-err));
		(void)buf_printf(&j->out, "error: %s: release failed: %s\n", qid, strerror(-err));
		j->rc = err;
	} else {
		log_info("%s: released from quarantine by %s", qid, j->who);
		(void)buf_printf(&j->out, "ok: %s released\n", qid);
		j->rc = 0;
	}
	dq_finish(j);
}

/* On the engine thread that owns the message. */
static void msg_run(void *arg)
{
	struct dq_job *j = arg;
	struct spool_index_entry e;
	char qid[QID_MAX];
	int rc;

	qid_format(j->msgid, qid);
	if (spool_index_msg_find(j->shard.idx, j->msgid, &e)) {
		rc = -ENOENT;
	} else if (j->op == DRAIN_QUEUE_DELETE) {
		if ((rc = msg_delete(j, e.nrcpt)) == 0)
			return;
	} else if (j->op == DRAIN_QUEUE_RELEASE) {
		/* postsuper -H: a NOTE(RELEASED), durable before the answer;
		 * the next drain of its domains takes it. */
		rc = e.held ? spool_append_note(j->shard.sh, j->msgid, SPOOL_NOTE_RELEASED,
						release_done, j) : -EALREADY;
		if (rc == 0)
			return;
	} else if ((rc = buf_reserve(&j->rec, e.rec_len)) == 0) {
		j->rec.len = e.rec_len;
		rc = spool_shard_read(j->shard.sh, e.segment_id, e.off, e.rec_len, j->rec.data,
				      msg_read, j);
		if (rc == 0)
			return; /* msg_read() goes on */
	}
	(void)buf_printf(&j->out, "error: %s: %s\n", qid,
			 rc == -ENOENT ? "no such message held" : rc == -EALREADY
			 ? "not quarantined" : rc == -EBUSY
			 ? "the shard's reads are all in use; try again" : strerror(-rc));
	j->rc = rc;
	dq_finish(j);
}

int drain_queue_msg(const struct drain_queue_ctx *c, enum drain_queue_op op,
		    const char *qid, size_t len, const char *who, struct buf *out)
{
	struct dq_req *rq;
	struct dq_job *j;
	uint64_t msgid;
	unsigned shard;
	int rc;

	if (qid_parse(qid, len, &msgid)) {
		(void)buf_printf(out, "error: \"%.*s\": not a queue id (%d hex digits)\n",
				 (int)(len > QID_MAX ? QID_MAX : len), qid, QID_DIGITS);
		return -EINVAL;
	}
	shard = spool_msgid_shard(msgid);
	if (shard >= c->n) {
		(void)buf_printf(out, "error: %.*s: no such message held\n", (int)len, qid);
		return -ENOENT;
	}
	if (!(rq = dq_req_new(1)) || !(j = dq_job_new(rq, 0, &c->shards[shard], who))) {
		if (rq)
			dq_put(rq);
		(void)buf_puts(out, "error: out of memory\n");
		return -ENOMEM;
	}
	j->op = op;
	j->msgid = msgid;
	j->hostname = c->hostname;
	if (dq_post(j, msg_run))
		(void)buf_printf(out, "error: shard %u is not running\n", shard);
	if (rendezvous_wait(&rq->rv, DRAIN_QUEUE_WAIT_MS))
		(void)buf_puts(out, "error: the engine thread did not answer in time\n");
	rc = rq->rcs[0];
	(void)buf_append(out, rq->outs[0].data, rq->outs[0].len);
	pthread_mutex_unlock(&rq->rv.mu);
	dq_put(rq);
	return rc;
}
