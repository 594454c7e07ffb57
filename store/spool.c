/* SPDX-License-Identifier: MIT */
/*
 * spool: group-committed appends of MSG records to a shard's segment files
 * (see spool.h). A batch is a writev of every queued record, linked to an
 * fdatasync (and, for a new segment, an fsync of the shard directory so the
 * file's name is durable too). A short write breaks the link, so a batch is
 * only done after a round whose write covered all of its bytes AND whose
 * syncs succeeded; until then no callback runs, and so no 250 goes out for
 * bytes that are not on disk.
 *
 * Pipelined commit: up to SPOOL_BATCHES_MAX batches are in flight, so batch
 * N+1 is written while batch N's fdatasync runs. Each batch has its own
 * sync, linked after its own write: N's sync was issued before N+1's write
 * and covers none of it. Batches end in the order they started (a later
 * batch whose sync came back first waits), so callbacks and the index see
 * records in file order. A later batch only starts in the segment of the
 * ones in flight (a new segment waits until they end: its old descriptor
 * stays open, and a directory sync never has to cover two files) and only
 * with no compaction copy queued (copies_prepare() needs every earlier
 * record indexed). All or none per batch, as before; a failed batch fails
 * every later one too, once their CQEs are in, because the segment is cut
 * back to where the failed one began. Compaction copies (spool_append_copy)
 * wait in a queue of their own and go first in a batch, each followed by
 * DONEs (NOTEs, SCHEDs) built from the index when the batch starts (see
 * copies_prepare()); the message moves in the index when the batch is done.
 *
 * Zeros ahead: while commits are small, spool_prezero writes and syncs
 * zeros past the tail so that commits overwrite rather than append (see
 * spool_prezero.h). A batch that would write into zeros still in flight
 * waits a turn, and so does a new segment (the chunk holds the old one's
 * descriptor).
 *
 * Direct I/O (spool_direct.h): with a sync mode and spool_direct_io, a
 * segment is opened with O_DIRECT and each batch is written from its
 * staged, block-aligned image (the last partial block again, the records,
 * zeros); a batch starts beside another only once the other's write is in,
 * and a failed batch puts the tail back as it found it. Such a round is one
 * O_DSYNC write (RWF_DSYNC) instead of a write linked to an fdatasync,
 * except in a new segment, whose round keeps the fdatasync and the
 * directory's fsync linked after it. An O_DSYNC write completes once it is
 * durable, so a direct batch starts only after the one before it is
 * committed.
 */
#include "store/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/ascii.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/now.h"
#include "store/domstat.h"
#include "store/spool_compact.h"
#include "store/spool_direct.h"
#include "store/spool_index.h"
#include "store/spool_prezero.h"
#include "store/spool_read.h"
#include "store/spool_rec.h"
#include "store/spool_recover.h"

/* Records per batch are bounded by the iovecs one writev takes (IOV_MAX,
 * 1024 on Linux): two per record (head, body). */
#define SPOOL_IOV_MAX 1024
/* Group commits in flight at once (see the top of this file): two let the
 * next batch's write overlap the current one's fdatasync. A build may set
 * it (1: one commit at a time, as before; for A/B benchmarks). */
#ifndef SPOOL_BATCHES_MAX
#define SPOOL_BATCHES_MAX 2
#endif
#if SPOOL_BATCHES_MAX < 1
#error "SPOOL_BATCHES_MAX must be at least 1"
#endif
/* A queue holding only lazy records (a drain's DONEs, spool.h) is written
 * once this many are queued or the oldest has waited this long, or at once
 * when someone waits for them (spool_shard_hurry). Each turn checks the
 * age; an idle loop's tick bounds it from above. */
#define SPOOL_LAZY_MAX 64
#define SPOOL_LAZY_US 2000
/* Record reads in flight per shard: a few per drain connection, plus expiry
 * and compaction; the loop has LOOP_FILE_OPS_MAX slots for all file ops. */
#define SPOOL_READS_MAX 32
#define SPOOL_DOMAIN_MAX 256          /* RFC 1035 2.3.4: 255 + NUL */
#define SPOOL_SEG_NAME_LEN 16          /* hex digits of the first sequence */
#define SPOOL_ENTRY_POOL_KEEP 4096     /* entries kept for reuse */
#define SPOOL_HEAD_KEEP (64u * 1024)   /* envelope buffer kept per entry */
/* Sequence numbers start at (unix seconds << 16) at each start, so ids stay
 * unique across restarts even for a spool emptied and deleted in between,
 * unless a shard sustained more than 65536 messages/s before the restart;
 * the highest sequence found on disk is the other lower bound. */
#define SPOOL_SEQ_TIME_SHIFT 16

/*
 * An entry is on one singly linked chain at a time through next: the pool,
 * the MSG queue (q_first/q_last), the copy queue (c_first/c_last), the
 * batch in flight (b.first/b.last) or flush's stale list. They stay
 * hand-rolled rather than core/list.h on purpose: this is the group-commit
 * hot path, every use is push-tail / pop-head, batch_take moves a head
 * with one store and batch_unfill splices a whole run back in front in O(1)
 * (list.h has no splice and would add a prev store per move).
 */
struct spool_entry {
	struct spool_entry *next;
	struct buf head;          /* record header + envelope; copy: the DONEs */
	const char *body;         /* MSG: borrowed body; DONE: NULL; copy: the
	                             whole MSG record, written before head */
	size_t body_len;
	spool_done_fn done;
	void *arg;
	int lazy;                 /* may wait for company (spool_append_done_lazy) */
	int copy;                 /* a compaction copy (spool_append_copy) */
	uint32_t copy_seg;        /* where the index had the message */
	uint64_t copy_off;
	uint64_t copy_msgid;
	uint32_t copy_nrcpt;
};

struct spool_batch {
	struct spool_shard *sh;   /* CQE callbacks get the batch */
	struct spool_entry *first, *last;
	unsigned count;
	int fd;
	uint64_t off;             /* where the batch starts in the segment */
	uint64_t total;           /* bytes of the batch */
	uint64_t written;         /* bytes confirmed written */
	unsigned iovcnt;
	unsigned outstanding;     /* CQEs still due in this round */
	int syncs_ok;             /* every sync of this round returned 0 */
	int err;                  /* first error of the round */
	int need_dirsync;         /* the segment is new: sync its directory */
	uint64_t round_len;       /* bytes the current round's write asked for */
	uint64_t sync_start_us;   /* this round's write + sync submitted */
	int ended;                /* its last round is in: waits for its turn */
	int direct;               /* written from stage (spool_direct.h) */
	int dsync;                /* this round is one O_DSYNC write, no fdatasync */
	struct iovec iov[SPOOL_IOV_MAX]; /* read by the kernel at submission */
	/* Not cleared between batches (the memset stops at iov): */
	struct spool_stage stage; /* the aligned image of a direct batch */
};

/* A segment's read-only descriptor and the reads that use it. */
struct spool_rfd {
	int fd;
	uint32_t reads;           /* prepared or in flight */
	int doomed;               /* the segment is gone: close after them */
};

struct spool_read_op {
	struct spool_shard *sh;
	uint32_t seg;
	uint32_t len;
	spool_done_fn fn;
	void *arg;
	int used;
};

struct spool_shard {
	struct loop *loop;
	unsigned shard;
	enum config_sync sync;
	size_t segment_size;
	char dir[PATH_MAX];
	int dirfd;

	struct spool_index *idx;
	struct domstat *domstat;
	uint32_t seg_id;          /* index id of the segment being written */
	int have_seg;
	struct spool_rec_addr *addrs; /* scratch: recipients of a MSG to index */
	uint32_t addrs_cap;
	/* Unlinking dead segments, one at a time through io_uring. */
	int unlinking;
	uint32_t unlink_id;
	char unlink_name[SPOOL_SEG_NAME_LEN + 8];

	/* Record reads in flight (expiry, drains, compaction), and read-only
	 * descriptors of segments, opened once, indexed by segment id. */
	struct spool_read_op rd[SPOOL_READS_MAX];
	unsigned rd_inflight;
	struct spool_rfd *rfd;
	uint32_t nrfd;
	/* Removed segments' descriptors being closed (loop_file_close()). */
	unsigned closing;

	/* Compaction copies, queued apart: a commit writes them first. */
	struct spool_compact *compact;
	struct spool_entry *c_first, *c_last;
	uint32_t *done_rcpt;      /* scratch: a copy's done recipients */
	uint8_t *done_st;
	uint32_t done_cap;

	int seg_fd;
	uint64_t seg_off;
	int seg_new;              /* created and not yet dir-synced */
	int seg_broken;           /* a failed write could not be undone: rotate */
	struct spool_prezero pz;  /* zeros ahead of seg_off (spool_prezero.h) */
	int direct;               /* segments open with O_DIRECT: spool_direct_io
	                             and a sync mode, until refused */
	struct spool_direct dio;  /* O_DIRECT writes (spool_direct.h) */

	uint64_t seq;

	struct spool_entry *q_first, *q_last;
	unsigned q_count;
	/* Lazy records among the queued (spool_append_done_lazy): a queue of
	 * only these waits for SPOOL_LAZY_MAX of them, SPOOL_LAZY_US since the
	 * oldest, or a hurry (spool_shard_hurry). */
	unsigned q_lazy;
	uint64_t lazy_since_us;
	int hurry;
	struct spool_entry *pool;
	unsigned pool_count;

	/* Batches in flight: bt[b_head] is the oldest, ninflight of them in
	 * ring order. */
	struct spool_batch bt[SPOOL_BATCHES_MAX];
	unsigned b_head;
	unsigned ninflight;

	struct spool_stats stats;
};

/* ---- start-up: recovery ----------------------------------------------- */

/* Unlink the segments recovery found dead, in the order it gave (a segment
 * whose DONEs protect another goes after it). Stops at the first failure:
 * what is left is found dead again at the next start. */
static void unlink_dead_at_start(struct spool_shard *sh,
				 const struct spool_recover_result *res)
{
	char name[SPOOL_SEG_NAME_LEN + 8];

	for (size_t i = 0; i < res->ndead; i++) {
		snprintf(name, sizeof(name), "%016" PRIx64 ".seg", res->dead[i]);
		if (unlinkat(sh->dirfd, name, 0) && errno != ENOENT) {
			log_err("spool shard %u: cannot remove dead segment %s/%s: %s",
				sh->shard, sh->dir, name, strerror(errno));
			return;
		}
		log_info("spool shard %u: removed segment %s (all its messages done)",
			 sh->shard, name);
	}
	if (res->ndead && fsync(sh->dirfd))
		log_warn("spool shard %u: fsync %s: %s", sh->shard, sh->dir, strerror(errno));
}

/*
 * Recovery applied SCHEDs from segments it then found dead (nothing live,
 * no pin: a SCHED pins nothing), and they are unlinked now: write the whole
 * schedule again (a SCHED per queue entry with a next attempt), or the next
 * start would try at once what is deferred. Queued here, written by the
 * first commit; a crash before it only makes those attempts come sooner.
 * O(queue entries), once per such start.
 */
static void sched_rewrite(struct spool_shard *sh)
{
	const struct spool_index_queue *q;
	struct spool_index_qstat st;
	struct spool_index_iter it;
	struct spool_index_entry e;
	size_t cursor = 0;
	uint64_t n = 0;

	/* spool_append_sched() sets next_us to what it already is: the walk
	 * sees no change to the index. */
	while ((q = spool_index_queue_each(sh->idx, &cursor))) {
		spool_index_queue_stat(q, &st);
		spool_index_queue_iter(q, &it);
		while (spool_index_queue_next(&it, &e)) {
			if (e.next_us == 0)
				continue;
			if (spool_append_sched(sh, e.msgid, st.domain, st.domain_len,
					       e.next_us, NULL, NULL) == 0)
				n++;
		}
	}
	log_info("spool shard %u: schedule written again: %" PRIu64 " SCHED records",
		 sh->shard, n);
}

/* The shard's held messages and their record bytes as this engine
 * thread's gauges (core/metrics.h): after recovery and each commit. */
static void shard_metrics(struct spool_shard *sh)
{
	struct spool_index_totals t;

	spool_index_totals(sh->idx, &t);
	metrics_set(METRIC_HELD_MESSAGES, t.messages);
	metrics_set(METRIC_HELD_BYTES, t.live_bytes);
}

/* Count what recovery found into the node-wide per-domain counters. */
static void domstat_seed(struct spool_shard *sh)
{
	const struct spool_index_queue *q;
	size_t cursor = 0;

	if (!sh->domstat)
		return;
	while ((q = spool_index_queue_each(sh->idx, &cursor))) {
		struct spool_index_qstat st;

		spool_index_queue_stat(q, &st);
		domstat_add_domain(sh->domstat, st.domain, st.domain_len,
				   (int64_t)st.messages, (int64_t)st.bytes);
	}
}

/* Before an index change: the queue's counters of one domain. */
static void qcount(struct spool_shard *sh, const char *d, size_t n,
		   uint64_t *msgs, uint64_t *bytes)
{
	const struct spool_index_queue *q = spool_index_queue(sh->idx, d, n);
	struct spool_index_qstat st;

	*msgs = *bytes = 0;
	if (q) {
		spool_index_queue_stat(q, &st);
		*msgs = st.messages;
		*bytes = st.bytes;
	}
}

/* After it: move the difference into the node-wide counters. */
static void qdelta(struct spool_shard *sh, const char *d, size_t n,
		   uint64_t msgs0, uint64_t bytes0)
{
	uint64_t msgs1, bytes1;

	if (!sh->domstat)
		return;
	qcount(sh, d, n, &msgs1, &bytes1);
	if (msgs1 == msgs0 && bytes1 == bytes0)
		return;
	domstat_add_domain(sh->domstat, d, n, (int64_t)msgs1 - (int64_t)msgs0,
			   (int64_t)bytes1 - (int64_t)bytes0);
}

/* The shard's per-turn work: compaction (its own step and stop hook, see
 * spool_compact.h), then the group commit, registered on the loop. The
 * loop runs the commit after everything that queues records, whatever the
 * order of registration (loop.h, LOOP_TURN_COMMIT). Returns 0, or -1 with
 * err set. */
static int shard_start_work(struct spool_shard *sh, const struct spool_shard_conf *conf,
			    char *err, size_t errlen)
{
	struct spool_compact_conf cc = {
		.loop = sh->loop,
		.shard = conf->shard,
		.threshold = conf->compact_threshold,
		.min_age_us = conf->compact_min_age_us,
		.segment_size = conf->segment_size,
		.clock_offset_us = conf->clock_offset_us,
		.clock = conf->clock,
		.clock_arg = conf->clock_arg,
	};

	sh->compact = spool_compact_new(sh, &cc);
	if (!sh->compact) {
		snprintf(err, errlen, "shard %u: compaction: %s", conf->shard,
			 strerror(errno));
		return -1;
	}
	/* Stale copies (a compaction cut short) are copied again before any
	 * session can finish their messages. */
	spool_compact_resume(sh->compact);
	if (loop_add_turn_hook(sh->loop, LOOP_TURN_COMMIT, "spool commit",
			       spool_shard_flush, sh) ||
	    loop_add_busy_check(sh->loop, "spool", spool_shard_busy, sh)) {
		snprintf(err, errlen, "shard %u: loop hook registry full", conf->shard);
		return -1;
	}
	return 0;
}

struct spool_shard *spool_shard_open(struct loop *loop,
				     const struct spool_shard_conf *conf,
				     char *err, size_t errlen)
{
	struct spool_recover_result res;
	struct spool_shard *sh;
	uint64_t disk_max = 0, time_base;
	int n;

	sh = calloc(1, sizeof(*sh));
	if (!sh) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	sh->loop = loop;
	sh->shard = conf->shard;
	sh->sync = conf->sync;
	sh->segment_size = conf->segment_size;
	sh->direct = conf->direct && conf->sync != CONFIG_SYNC_NONE;
	spool_prezero_init(&sh->pz, loop, conf->segment_size);
	sh->domstat = conf->domstat;
	sh->dirfd = -1;
	sh->seg_fd = -1;
	n = snprintf(sh->dir, sizeof(sh->dir), "%s/%u", conf->dir, conf->shard);
	if (n < 0 || (size_t)n >= sizeof(sh->dir)) {
		snprintf(err, errlen, "%s: spool path too long", conf->dir);
		goto fail;
	}
	if (mkdir(conf->dir, 0750) && errno != EEXIST) {
		snprintf(err, errlen, "spool_dir %s: %s", conf->dir, strerror(errno));
		goto fail;
	}
	if (mkdir(sh->dir, 0750) && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", sh->dir, strerror(errno));
		goto fail;
	}
	sh->dirfd = open(sh->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sh->dirfd < 0) {
		snprintf(err, errlen, "%s: %s", sh->dir, strerror(errno));
		goto fail;
	}
	sh->idx = spool_index_new();
	if (!sh->idx) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	memset(&res, 0, sizeof(res));
	if (spool_recover_shard(sh->dir, sh->idx, &res, err, errlen)) {
		spool_recover_result_free(&res);
		goto fail;
	}
	unlink_dead_at_start(sh, &res);
	if (res.sched_dead_segments > 0)
		sched_rewrite(sh);
	domstat_seed(sh);
	shard_metrics(sh);
	disk_max = res.max_seq;
	spool_recover_result_free(&res);
	time_base = (uint64_t)time(NULL) << SPOOL_SEQ_TIME_SHIFT;
	sh->seq = disk_max + 1 > time_base ? disk_max + 1 : time_base;
	if (shard_start_work(sh, conf, err, errlen))
		goto fail;
	return sh;
fail:
	spool_shard_close(sh);
	return NULL;
}

struct spool_shard *spool_shard_close(struct spool_shard *sh)
{
	struct spool_entry *e;

	if (!sh)
		return NULL;
	if (sh->ninflight || sh->q_first)
		panic("shard %u closed with records in flight", sh->shard);
	/* Copies not yet written are only copies: drop them. */
	while ((e = sh->c_first)) {
		sh->c_first = e->next;
		if (e->done)
			e->done(e->arg, -ECANCELED);
		buf_free(&e->head);
		free(e);
	}
	sh->c_last = NULL;
	spool_compact_free(sh->compact);
	while ((e = sh->pool)) {
		sh->pool = e->next;
		buf_free(&e->head);
		free(e);
	}
	if (sh->seg_fd >= 0)
		close(sh->seg_fd);
	for (unsigned i = 0; i < SPOOL_BATCHES_MAX; i++)
		spool_stage_trim(&sh->bt[i].stage, 1);
	if (sh->dirfd >= 0)
		close(sh->dirfd);
	for (uint32_t i = 0; i < sh->nrfd; i++)
		if (sh->rfd[i].fd >= 0)
			close(sh->rfd[i].fd);
	free(sh->rfd);
	spool_index_free(sh->idx);
	free(sh->addrs);
	free(sh->done_rcpt);
	free(sh->done_st);
	free(sh);
	return NULL;
}

uint64_t spool_shard_new_msgid(struct spool_shard *sh)
{
	return spool_msgid_make(sh->shard, sh->seq++);
}

void spool_shard_stats(const struct spool_shard *sh, struct spool_stats *st)
{
	*st = sh->stats;
	st->prezero_chunks = sh->pz.chunks;
}

int spool_shard_busy(void *arg)
{
	struct spool_shard *sh = arg;

	/* Compaction's reads and copies are the shard's reads and queued
	 * copies, so this covers them too. */
	return sh->ninflight || sh->q_first != NULL || sh->c_first != NULL ||
		sh->unlinking || sh->rd_inflight || sh->closing ||
		spool_prezero_busy(&sh->pz);
}

struct spool_compact *spool_shard_compact(struct spool_shard *sh)
{
	return sh->compact;
}

struct loop *spool_shard_loop(struct spool_shard *sh)
{
	return sh->loop;
}

/* ---- queueing ----------------------------------------------------------- */

static struct spool_entry *entry_get(struct spool_shard *sh)
{
	struct spool_entry *e = sh->pool;

	if (e) {
		sh->pool = e->next;
		sh->pool_count--;
		e->next = NULL;
		buf_reset(&e->head);
		return e;
	}
	e = calloc(1, sizeof(*e));
	if (e)
		buf_init(&e->head, 0);
	return e;
}

static void entry_put(struct spool_shard *sh, struct spool_entry *e)
{
	if (sh->pool_count >= SPOOL_ENTRY_POOL_KEEP) {
		buf_free(&e->head);
		free(e);
		return;
	}
	buf_shrink(&e->head, SPOOL_HEAD_KEEP);
	e->body = NULL;
	e->done = NULL;
	e->arg = NULL;
	e->lazy = 0;
	e->copy = 0;
	e->next = sh->pool;
	sh->pool = e;
	sh->pool_count++;
}

static void entry_queue(struct spool_shard *sh, struct spool_entry *e,
			spool_done_fn done, void *arg)
{
	e->done = done;
	e->arg = arg;
	e->next = NULL;
	if (sh->q_last)
		sh->q_last->next = e;
	else
		sh->q_first = e;
	sh->q_last = e;
	sh->q_count++;
	if (e->lazy && sh->q_lazy++ == 0)
		sh->lazy_since_us = now_mono_us();
}

int spool_append_msg(struct spool_shard *sh, const struct spool_msg *m,
		     spool_done_fn done, void *arg)
{
	struct spool_entry *e;
	size_t head, len;
	int rc;

	head = spool_rec_msg_head_size(m->sender_len, m->nrcpt, m->rcpt_len);
	len = head + m->body_len;
	if (len - SPOOL_REC_HDR_SIZE > SPOOL_REC_PAYLOAD_MAX || len > sh->segment_size)
		return -E2BIG;
	e = entry_get(sh);
	if (!e)
		return -ENOMEM;
	rc = buf_reserve(&e->head, head);
	if (rc) {
		entry_put(sh, e);
		return rc;
	}
	e->head.len = spool_rec_encode_msg_head(e->head.data, m->msgid, now_wall_us(),
						m->flags, m->sender, m->sender_len,
						m->nrcpt, m->rcpt, m->rcpt_len,
						m->body, m->body_len);
	if (e->head.len != head)
		panic("record head %zu bytes, expected %zu", e->head.len, head);
	e->body = m->body;
	e->body_len = m->body_len;
	entry_queue(sh, e, done, arg);
	return 0;
}

static int append_done(struct spool_shard *sh, uint64_t msgid, uint32_t rcpt_index,
		       enum spool_done_status status, int lazy, spool_done_fn done, void *arg)
{
	struct spool_entry *e = entry_get(sh);
	int rc;

	if (!e)
		return -ENOMEM;
	rc = buf_reserve(&e->head, SPOOL_REC_HDR_SIZE + SPOOL_DONE_PAYLOAD_SIZE);
	if (rc) {
		entry_put(sh, e);
		return rc;
	}
	e->head.len = spool_rec_encode_done(e->head.data, msgid, now_wall_us(), rcpt_index, status);
	e->body = NULL;
	e->body_len = 0;
	e->lazy = lazy;
	entry_queue(sh, e, done, arg);
	return 0;
}

int spool_append_done(struct spool_shard *sh, uint64_t msgid, uint32_t rcpt_index,
		      enum spool_done_status status, spool_done_fn done, void *arg)
{
	return append_done(sh, msgid, rcpt_index, status, 0, done, arg);
}

int spool_append_done_lazy(struct spool_shard *sh, uint64_t msgid, uint32_t rcpt_index,
			   enum spool_done_status status, spool_done_fn done, void *arg)
{
	return append_done(sh, msgid, rcpt_index, status, 1, done, arg);
}

void spool_shard_hurry(struct spool_shard *sh)
{
	sh->hurry = 1;
}

int spool_append_note(struct spool_shard *sh, uint64_t msgid,
		      enum spool_note_kind kind, spool_done_fn done, void *arg)
{
	struct spool_entry *e = entry_get(sh);
	int rc;

	if (!e)
		return -ENOMEM;
	rc = buf_reserve(&e->head, SPOOL_REC_HDR_SIZE + SPOOL_NOTE_PAYLOAD_SIZE);
	if (rc) {
		entry_put(sh, e);
		return rc;
	}
	e->head.len = spool_rec_encode_note(e->head.data, msgid, now_wall_us(), kind);
	e->body = NULL;
	e->body_len = 0;
	entry_queue(sh, e, done, arg);
	return 0;
}

int spool_append_sched(struct spool_shard *sh, uint64_t msgid, const char *dom, size_t len,
		       uint64_t next_us, spool_done_fn done, void *arg)
{
	struct spool_entry *e;
	int rc;

	if (len > SPOOL_SCHED_DOMAIN_MAX)
		return -ENAMETOOLONG;
	e = entry_get(sh);
	if (!e)
		return -ENOMEM;
	rc = buf_reserve(&e->head, SPOOL_SCHED_REC_SIZE(len));
	if (rc == 0)
		rc = spool_index_set_next(sh->idx, msgid, dom, len, next_us);
	if (rc) {
		entry_put(sh, e);
		return rc;
	}
	/* The index has it now: the record is only for the next start, so
	 * nothing waits for it and the commit does not apply it again (a
	 * later spool_index_set_next() must not be undone by it). */
	e->head.len = spool_rec_encode_sched(e->head.data, msgid, now_wall_us(), dom, len,
					     next_us);
	e->body = NULL;
	e->body_len = 0;
	entry_queue(sh, e, done, arg);
	return 0;
}

int spool_append_copy(struct spool_shard *sh, uint64_t msgid, uint32_t seg_id,
		      uint64_t off, const char *rec, size_t len, spool_done_fn done,
		      void *arg)
{
	struct spool_entry *e;
	struct spool_rec_hdr hdr;
	struct spool_rec_msg m;
	const char *payload;

	/* Only a whole, undamaged MSG record of msgid is ever copied. */
	if (spool_rec_decode(rec, len, &hdr, &payload) != SPOOL_REC_OK ||
	    hdr.type != SPOOL_REC_MSG || hdr.msgid != msgid ||
	    SPOOL_REC_HDR_SIZE + (size_t)hdr.length != len ||
	    spool_rec_decode_msg(payload, hdr.length, &m) != SPOOL_REC_OK)
		return -EINVAL;
	e = entry_get(sh);
	if (!e)
		return -ENOMEM;
	e->body = rec;
	e->body_len = len;
	e->copy = 1;
	e->copy_seg = seg_id;
	e->copy_off = off;
	e->copy_msgid = msgid;
	e->copy_nrcpt = m.nrcpt;
	e->done = done;
	e->arg = arg;
	e->next = NULL;
	if (sh->c_last)
		sh->c_last->next = e;
	else
		sh->c_first = e;
	sh->c_last = e;
	return 0;
}

/* ---- segments ----------------------------------------------------------- */

static int segment_open(struct spool_shard *sh, uint64_t first_seq)
{
	char path[PATH_MAX];
	int n, fd;

	if (sh->seg_fd >= 0) {
		close(sh->seg_fd);
		sh->seg_fd = -1;
	}
	n = snprintf(path, sizeof(path), "%s/%016" PRIx64 ".seg", sh->dir, first_seq);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	/* A rare, start-of-segment open on the engine thread: one metadata
	 * operation per segment_size bytes written. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
		  (sh->direct ? O_DIRECT : 0), 0640);
	if (fd < 0 && errno == EINVAL && sh->direct) {
		/* A filesystem without O_DIRECT: buffered from now on. */
		log_warn("spool shard %u: %s: no direct I/O here (%s): writing through the page cache",
			   sh->shard, sh->dir, strerror(errno));
		sh->direct = 0;
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	}
	if (fd < 0)
		return -errno;
	if (sh->have_seg)
		(void)spool_index_segment_seal(sh->idx, sh->seg_id);
	sh->have_seg = 0;
	n = spool_index_segment_add(sh->idx, first_seq, &sh->seg_id);
	if (n) {
		close(fd);
		(void)unlink(path);
		return n;
	}
	sh->have_seg = 1;
	sh->seg_fd = fd;
	sh->seg_off = 0;
	spool_prezero_segment(&sh->pz, fd);
	spool_direct_segment(&sh->dio);
	sh->seg_new = 1;
	sh->seg_broken = 0;
	log_info("spool shard %u: new segment %s", sh->shard, path);
	return 0;
}

/* Where len bytes written at off end in the file: a direct write fills
 * its last block with zeros (spool_direct.h). */
static uint64_t seg_end(const struct spool_shard *sh, uint64_t off, uint64_t len)
{
	return sh->direct ? spool_direct_end(off, len) : off + len;
}

/* ---- group commit ------------------------------------------------------- */

static void batch_write_cqe(void *arg, int res);
static void batch_sync_cqe(void *arg, int res);

/* Point the iovecs at the bytes of the batch not yet written. */
static unsigned batch_iov(struct spool_batch *b)
{
	uint64_t skip = b->written;
	unsigned n = 0;

	for (struct spool_entry *e = b->first; e; e = e->next) {
		/* A copy is the MSG record (body) followed by its DONEs. */
		const char *part[2] = { e->copy ? e->body : e->head.data,
					e->copy ? e->head.data : e->body };
		size_t plen[2] = { e->copy ? e->body_len : e->head.len,
				   e->copy ? e->head.len : e->body_len };

		for (int i = 0; i < 2; i++) {
			if (plen[i] == 0)
				continue;
			if (skip >= plen[i]) {
				skip -= plen[i];
				continue;
			}
			b->iov[n].iov_base = (void *)(part[i] + skip);
			b->iov[n].iov_len = plen[i] - skip;
			skip = 0;
			n++;
		}
	}
	return n;
}

/* Queue the write of what the batch has not written yet: from its
 * iovecs, or (direct) from its staged image, staged on the first round. */
static int batch_write(struct spool_batch *b, unsigned flags)
{
	struct spool_shard *sh = b->sh;
	struct spool_stage *s = &b->stage;
	int rc;

	if (!b->direct) {
		b->round_len = b->total - b->written;
		return loop_file_writev(sh->loop, b->fd, b->iov, batch_iov(b),
					b->off + b->written, flags, batch_write_cqe, b);
	}
	if (s->len == 0) {
		rc = spool_direct_stage(&sh->dio, s, b->off, b->iov, batch_iov(b), b->total);
		if (rc)
			return rc;
	}
	b->round_len = s->len - s->done;
	b->iov[0].iov_base = s->p + s->done;
	b->iov[0].iov_len = b->round_len;
	return loop_file_writev(sh->loop, b->fd, b->iov, 1, s->start + s->done, flags,
				batch_write_cqe, b);
}

/*
 * Submit one round: the unwritten rest of the batch (if any), linked to an
 * fdatasync of the segment, linked to an fsync of the directory when the
 * segment is new. Returns 0 or -errno: -EBUSY, with nothing queued, when the
 * loop has too few file-op slots for the whole round; on a later error the
 * SQEs already queued still complete and are counted in outstanding, so the
 * round ends normally.
 */
static int batch_submit(struct spool_batch *b)
{
	struct spool_shard *sh = b->sh;
	int sync = sh->sync != CONFIG_SYNC_NONE;
	int rc;

	b->outstanding = 0;
	b->syncs_ok = 1;
	b->err = 0;
	/* All of the round's slots or none: a write that got one and a sync
	 * that did not would fail every message in the batch, where waiting a
	 * turn costs nothing (the caller puts the batch back). */
	if (loop_file_ops_free(sh->loop) < (unsigned)(b->written < b->total) +
	    (sync ? 1u + (b->need_dirsync != 0) : 0u))
		return -EBUSY;
	/* Direct, in a segment whose directory entry is already durable: one
	 * O_DSYNC write is the whole round. The kernel syncs the bytes (and
	 * the size, when they extend the file) before it completes, as the
	 * fdatasync linked after it would, without a second operation that
	 * io_uring always hands to a worker thread. On this machine: 20
	 * sessions of 4 KiB 12-13% faster at 27% less CPU per message, 100
	 * KiB 13-18% faster, 200 sessions unchanged (3, 2 and 3 alternating
	 * runs). */
	b->dsync = b->direct && sync && !b->need_dirsync && b->written < b->total;
	if (b->dsync) {
		b->sync_start_us = now_mono_us();
		rc = batch_write(b, LOOP_DSYNC);
		if (rc)
			return rc;
		b->outstanding++;
		return 0;
	}
	if (b->written < b->total) {
		rc = batch_write(b, sync ? LOOP_LINK : 0);
		if (rc)
			return rc;
		b->outstanding++;
	}
	if (!sync)
		return 0;
	b->sync_start_us = now_mono_us();
	rc = loop_file_fsync(sh->loop, b->fd, 1, b->need_dirsync ? LOOP_LINK : 0,
			     batch_sync_cqe, b);
	if (rc == 0) {
		b->outstanding++;
		if (b->need_dirsync) {
			rc = loop_file_fsync(sh->loop, sh->dirfd, 0, 0, batch_sync_cqe, b);
			if (rc == 0)
				b->outstanding++;
		}
	}
	if (rc) {
		/* A write went in linked to nothing: it still completes, and
		 * the round fails for want of its sync. */
		b->err = rc;
		if (b->outstanding == 0)
			return rc;
	}
	return 0;
}

/* Tell each entry of a list its fate and recycle it. */
static void entries_done(struct spool_shard *sh, struct spool_entry *e,
			 unsigned count, int err)
{
	struct spool_entry *next;

	for (unsigned i = 0; i < count && e; i++) {
		next = e->next;
		if (e->done)
			e->done(e->arg, err);
		entry_put(sh, e);
		e = next;
	}
}

/* Room for a MSG's recipients in the shard's scratch list. */
static int addrs_reserve(struct spool_shard *sh, uint32_t n)
{
	struct spool_rec_addr *a;

	if (n <= sh->addrs_cap)
		return 0;
	a = realloc(sh->addrs, n * sizeof(*a));
	if (!a)
		return -ENOMEM;
	sh->addrs = a;
	sh->addrs_cap = n;
	return 0;
}

/* Each distinct domain of a newly indexed MSG gains it once in the
 * node-wide counters. */
static void domstat_add_msg(struct spool_shard *sh, uint32_t nrcpt, size_t body_len)
{
	for (uint32_t i = 0; i < nrcpt; i++) {
		size_t dl, dl2;
		const char *d = spool_rec_addr_domain(sh->addrs[i], &dl);
		int seen = 0;

		for (uint32_t k = 0; k < i && !seen; k++) {
			const char *d2 = spool_rec_addr_domain(sh->addrs[k], &dl2);
			seen = dl2 == dl && ascii_eq_n(d, d2, dl);
		}
		if (!seen)
			domstat_add_domain(sh->domstat, d, dl, 1, (int64_t)body_len);
	}
}

/* A compaction copy is durable. Nothing changed the message since the commit
 * began (copies go first in it, the index only changes as commits end), so
 * the DONEs after the copy are all its done recipients: it moves. Its domain
 * queues and counters stay as they are. */
static int index_copy(struct spool_shard *sh, const struct spool_entry *e,
		      uint64_t off)
{
	int rc = spool_index_msg_move(sh->idx, e->copy_msgid, e->copy_seg,
				      e->copy_off, sh->seg_id, off);

	if (rc == -ENOENT)
		spool_index_segment_account(sh->idx, sh->seg_id, e->body_len);
	spool_index_segment_account(sh->idx, sh->seg_id, e->head.len);
	return rc;
}

static int index_msg(struct spool_shard *sh, const struct spool_entry *e,
		     const struct spool_rec_hdr *hdr, uint64_t off)
{
	const char *payload = e->head.data + SPOOL_REC_HDR_SIZE;
	struct spool_rec_msg m;
	struct spool_index_msg im;
	size_t cursor = 0;
	int rc;

	if (spool_rec_decode_msg_head(payload, e->head.len - SPOOL_REC_HDR_SIZE, &m))
		panic("shard %u: our own MSG head does not decode", sh->shard);
	rc = addrs_reserve(sh, m.nrcpt);
	if (rc)
		return rc;
	for (uint32_t i = 0; i < m.nrcpt; i++)
		sh->addrs[i] = spool_rec_msg_rcpt_next(&m, &cursor);
	memset(&im, 0, sizeof(im));
	im.msgid = hdr->msgid;
	im.segment_id = sh->seg_id;
	im.rec_len = (uint32_t)(e->head.len + e->body_len);
	im.off = off;
	im.time_us = hdr->time_us;
	im.body_len = e->body_len;
	im.nrcpt = m.nrcpt;
	im.rcpts = sh->addrs;
	im.held = (hdr->flags & SPOOL_MSG_HELD) != 0;
	rc = spool_index_add_msg(sh->idx, &im);
	if (rc == 0 && sh->domstat)
		domstat_add_msg(sh, m.nrcpt, e->body_len);
	return rc;
}

static int index_note(struct spool_shard *sh, const struct spool_rec_hdr *hdr,
		      const char *payload)
{
	enum spool_note_kind kind;
	int rc;

	if (spool_rec_decode_note(payload, SPOOL_NOTE_PAYLOAD_SIZE, &kind))
		panic("shard %u: our own NOTE does not decode", sh->shard);
	rc = spool_index_note(sh->idx, hdr->msgid, kind, sh->seg_id);
	/* Harmless: noted before, or finished meanwhile. */
	return rc == -EALREADY || rc == -ENOENT ? 0 : rc;
}

/* A SCHED is advisory: spool_append_sched() set the index already, and the
 * record is neither a live byte nor a pin, so a segment holding only SCHEDs
 * (and finished messages) dies as usual. It only counts in the total. */
static int index_sched(struct spool_shard *sh, const struct spool_entry *e)
{
	spool_index_segment_account(sh->idx, sh->seg_id, e->head.len);
	return 0;
}

static int index_done(struct spool_shard *sh, const struct spool_rec_hdr *hdr,
		      const char *payload)
{
	uint32_t rcpt;
	enum spool_done_status st;
	char dom[SPOOL_DOMAIN_MAX];
	size_t dl = 0;
	int counted = 0, finished, rc;
	uint64_t m0 = 0, b0 = 0;

	if (spool_rec_decode_done(payload, SPOOL_DONE_PAYLOAD_SIZE, &rcpt, &st))
		panic("shard %u: our own DONE does not decode", sh->shard);
	/* The recipient's domain queue may lose the message: keep the
	 * node-wide counters in step. */
	if (sh->domstat && !spool_index_rcpt_domain(sh->idx, hdr->msgid, rcpt, dom,
						    sizeof(dom), &dl)) {
		counted = 1;
		qcount(sh, dom, dl, &m0, &b0);
	}
	rc = spool_index_done(sh->idx, hdr->msgid, rcpt, st, sh->seg_id, &finished);
	if (counted)
		qdelta(sh, dom, dl, m0, b0);
	/* Harmless: the recipient was already done. */
	return rc == -EALREADY || rc == -ENOENT ? 0 : rc;
}

/* A record is durable: bring the index up to date. A failure here leaves
 * the record on disk and out of the index until the next start (recovery
 * indexes it then); it is logged, never silent. */
static void index_record(struct spool_shard *sh, const struct spool_entry *e,
			 uint64_t off)
{
	struct spool_rec_hdr hdr;
	const char *payload = e->head.data + SPOOL_REC_HDR_SIZE;
	int rc;

	if (e->copy) {
		rc = index_copy(sh, e, off);
	} else {
		/* Encoded by us: the header decodes (its CRC, which covers a
		 * body held elsewhere, is not checked). */
		if (spool_rec_decode_hdr(e->head.data, e->head.len, &hdr) != SPOOL_REC_OK)
			panic("shard %u: our own record header does not decode", sh->shard);
		if (hdr.type == SPOOL_REC_MSG)
			rc = index_msg(sh, e, &hdr, off);
		else if (hdr.type == SPOOL_REC_NOTE)
			rc = index_note(sh, &hdr, payload);
		else if (hdr.type == SPOOL_REC_SCHED)
			rc = index_sched(sh, e);
		else
			rc = index_done(sh, &hdr, payload);
	}
	if (rc)
		log_err("spool shard %u: indexing record at offset %" PRIu64 ": %s",
			sh->shard, off, strerror(-rc));
}

static void reap_dead(struct spool_shard *sh);
static void segment_rfd_close(struct spool_shard *sh, uint32_t seg_id);

/* A removed segment's descriptor is closed once no read uses it: a read
 * SQE names the descriptor by number, and one prepared this turn is only
 * submitted at its end, so closing under it could let the number be reused
 * by another file before the kernel resolves it. (A drain may also still be
 * reading a moved message's old place.) */
static void segment_rfd_close_unused(struct spool_shard *sh, uint32_t seg_id)
{
	if (seg_id < sh->nrfd && sh->rfd[seg_id].reads > 0) {
		sh->rfd[seg_id].doomed = 1;
		return;
	}
	segment_rfd_close(sh, seg_id);
}

static void unlink_done(void *arg, int res)
{
	struct spool_shard *sh = arg;

	sh->unlinking = 0;
	if (res < 0 && res != -ENOENT) {
		/* Keep it out of the index's dead list but never forget it:
		 * forgetting would release the pins it holds, and segments it
		 * protects could go while it stays. The next start retries. */
		log_err("spool shard %u: cannot remove dead segment %s/%s: %s",
			sh->shard, sh->dir, sh->unlink_name, strerror(-res));
		return;
	}
	log_info("spool shard %u: removed segment %s (all its messages done)",
		 sh->shard, sh->unlink_name);
	segment_rfd_close_unused(sh, sh->unlink_id);
	(void)spool_index_segment_remove(sh->idx, sh->unlink_id);
	reap_dead(sh);
}

/* Unlink segments the index says are dead, one at a time, in its order. */
static void reap_dead(struct spool_shard *sh)
{
	struct spool_index_seg_stat st;
	uint32_t id;

	if (sh->unlinking || spool_index_take_dead(sh->idx, &id, 1) == 0)
		return;
	if (spool_index_segment_stat(sh->idx, id, &st))
		panic("shard %u: dead segment %u has no stat", sh->shard, id);
	snprintf(sh->unlink_name, sizeof(sh->unlink_name), "%016" PRIx64 ".seg",
		 st.first_seq);
	sh->unlink_id = id;
	if (loop_file_unlinkat(sh->loop, sh->dirfd, sh->unlink_name, unlink_done, sh))
		return; /* no file-op slot now: the next batch retries */
	sh->unlinking = 1;
}

/* The oldest batch in flight. */
static struct spool_batch *batch_oldest(struct spool_shard *sh)
{
	return &sh->bt[sh->b_head];
}

/* The disk refused a direct write (EINVAL: an alignment it does not take):
 * this segment and the next are written through the page cache. */
static void direct_off(struct spool_shard *sh, int fd)
{
	int fl = fcntl(fd, F_GETFL);

	log_err("spool shard %u: the disk refused a direct write: writing through the page cache from now on",
		sh->shard);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_DIRECT) < 0)
		sh->seg_broken = 1; /* the next batch gets a new segment */
	sh->direct = 0;
}

/* End the oldest batch in flight with err (0: durable). A failed batch's
 * bytes are cut off (batches_settle() has made sure nothing later is still
 * being written) so later records follow the last good one; if that fails
 * too, this segment is left for good. */
static void batch_finish(struct spool_shard *sh, int err)
{
	struct spool_batch *b = batch_oldest(sh);
	struct spool_entry *first = b->first;
	unsigned count = b->count;

	if (err) {
		sh->stats.errors += count;
		log_err("spool shard %u: writing %u message(s) at offset %" PRIu64 ": %s",
			sh->shard, count, b->off, strerror(-err));
		/* A later batch failed with it lies past the cut already. */
		if (b->off < sh->seg_off) {
			if (ftruncate(b->fd, (off_t)b->off)) {
				log_err("spool shard %u: truncating after failed write: %s",
					sh->shard, strerror(errno));
				sh->seg_broken = 1;
			}
			sh->seg_off = b->off;
			spool_prezero_cut(&sh->pz, b->off);
			if (b->direct && b->stage.len)
				spool_direct_cut(&sh->dio, &b->stage, b->off);
		}
		if (b->direct && err == -EINVAL)
			direct_off(sh, b->fd);
		if (b->need_dirsync)
			sh->seg_new = 1; /* its name may not be durable yet */
	} else {
		uint64_t off = b->off;

		sh->stats.messages += count;
		sh->stats.bytes += b->total;
		sh->stats.commits++;
		sh->stats.direct_commits += b->direct != 0;
		sh->stats.dsync_commits += b->dsync != 0;
		for (struct spool_entry *e = first; e; e = e->next) {
			index_record(sh, e, off);
			off += e->head.len + e->body_len;
		}
		shard_metrics(sh);
	}
	b->stage.len = 0;
	spool_stage_trim(&b->stage, 0);
	memset(b, 0, offsetof(struct spool_batch, iov));
	sh->b_head = (sh->b_head + 1) % SPOOL_BATCHES_MAX;
	sh->ninflight--;
	/* Callbacks last: they may queue the next message right away. */
	entries_done(sh, first, count, err);
	if (!err)
		reap_dead(sh);
}

/*
 * End the batches whose last round is in, oldest first; a later one that
 * ended first waits for those before it. A failed batch waits until every
 * later batch has ended too (their writes land after its offset, which is
 * about to be cut off), then fails them all with its error.
 */
static void batches_settle(struct spool_shard *sh)
{
	while (sh->ninflight && batch_oldest(sh)->ended) {
		int err = batch_oldest(sh)->err;

		if (err) {
			for (unsigned k = 1; k < sh->ninflight; k++)
				if (!sh->bt[(sh->b_head + k) % SPOOL_BATCHES_MAX].ended)
					return;
			while (sh->ninflight)
				batch_finish(sh, err);
			return;
		}
		batch_finish(sh, 0);
	}
}

/* All CQEs of a round are in: go round again, or wait for its turn to end. */
static void batch_round_end(struct spool_batch *b)
{
	struct spool_shard *sh = b->sh;
	int rc;

	if (!b->err && (b->written < b->total ||
			(!b->syncs_ok && sh->sync != CONFIG_SYNC_NONE))) {
		/* A short write broke the link: its sync did not cover the
		 * rest. Write the rest (if any) and sync again before anyone
		 * is told "stored". */
		rc = batch_submit(b);
		if (rc == 0)
			return;
		b->err = rc;
	}
	b->ended = 1;
	batches_settle(sh);
}

static void batch_write_cqe(void *arg, int res)
{
	struct spool_batch *b = arg;

	if (res < 0)
		b->err = b->err ? b->err : res;
	else if (res == 0)
		b->err = b->err ? b->err : -EIO; /* no progress: the device refuses */
	else if (!b->direct)
		b->written += (uint64_t)res;
	else if ((res = spool_direct_wrote(&b->stage, res)) < 0)
		b->err = b->err ? b->err : res; /* not one whole block: no progress */
	else if (res)
		b->written = b->total;
	/* An O_DSYNC round that wrote the rest is the group commit: observed
	 * as the fdatasync would be (a short one goes round again). */
	if (b->dsync && !b->err && b->written == b->total)
		metrics_fsync_observe(now_mono_us() - b->sync_start_us);
	if (--b->outstanding == 0)
		batch_round_end(b);
}

static void batch_sync_cqe(void *arg, int res)
{
	struct spool_batch *b = arg;

	if (res != 0) {
		b->syncs_ok = 0;
		/* -ECANCELED: the write before it was short; not an error. */
		if (res != -ECANCELED && !b->err)
			b->err = res;
	} else {
		/* The group commit's latency: linked write + sync submitted to
		 * this sync's completion (a new segment's directory sync is
		 * observed too). */
		metrics_fsync_observe(now_mono_us() - b->sync_start_us);
	}
	if (--b->outstanding == 0)
		batch_round_end(b);
}

/* The SCHED records a copy carries: one per queue entry of the message with
 * a next attempt, or after the old segment is gone a restart would try at
 * once what the scheduler deferred. Written at dst (when not NULL, which
 * then has room, and e->head.len grows); returns their bytes. A domain too
 * long for the record (never one that came in by SMTP) is left out: it
 * only comes sooner. */
static size_t copy_scheds(struct spool_shard *sh, struct spool_entry *e, char *dst,
			  uint64_t t)
{
	struct spool_index_sched s;
	uint32_t cur = 0;
	size_t n = 0, w;

	while (spool_index_msg_sched_next(sh->idx, e->copy_msgid, &cur, &s) == 1) {
		if (s.domain_len > SPOOL_SCHED_DOMAIN_MAX)
			continue;
		if (dst == NULL) {
			n += SPOOL_SCHED_REC_SIZE(s.domain_len);
			continue;
		}
		w = spool_rec_encode_sched(dst + n, e->copy_msgid, t, s.domain,
					   s.domain_len, s.next_us);
		n += w;
		e->head.len += w;
	}
	return n;
}

/* The MSG flags of a copy's record (e->body holds the whole record). */
static uint16_t copy_flags(const struct spool_entry *e)
{
	struct spool_rec_hdr h;

	if (spool_rec_decode_hdr(e->body, e->body_len, &h) != SPOOL_REC_OK)
		panic("shard copy of %llx: not a record",
		      (unsigned long long)e->copy_msgid);
	return h.flags;
}

/*
 * Give each queued copy the DONE records that follow it: one per recipient
 * the index has done now, then a NOTE per fact noted on the message, then
 * a SCHED per queue entry with a next attempt (copy_scheds). No commit is
 * in flight, so every record before this commit is durable and indexed;
 * the copies go first in the commit, so no DONE of theirs can lie between
 * the index's view and the copy. A copy
 * whose message has left its old place (finished, or moved) is dropped onto
 * *stale. Runs at each flush: a copy left over from a full commit is
 * brought up to date again.
 */
static int copies_prepare(struct spool_shard *sh, struct spool_entry **stale)
{
	struct spool_entry **pp = &sh->c_first, *e;
	struct spool_index_entry ie;
	uint64_t t = now_wall_us();
	int n, rc;

	sh->c_last = NULL;
	while ((e = *pp)) {
		if (spool_index_msg_find(sh->idx, e->copy_msgid, &ie) ||
		    ie.segment_id != e->copy_seg || ie.off != e->copy_off) {
			*pp = e->next;
			e->next = *stale;
			*stale = e;
			continue;
		}
		if (e->copy_nrcpt > sh->done_cap) {
			uint32_t *r = realloc(sh->done_rcpt, e->copy_nrcpt * sizeof(*r));
			uint8_t *st;

			if (r)
				sh->done_rcpt = r;
			st = r ? realloc(sh->done_st, e->copy_nrcpt) : NULL;
			if (!st)
				return -ENOMEM;
			sh->done_st = st;
			sh->done_cap = e->copy_nrcpt;
		}
		n = spool_index_msg_done(sh->idx, e->copy_msgid, sh->done_rcpt,
					 sh->done_st, e->copy_nrcpt);
		buf_reset(&e->head);
		rc = buf_reserve(&e->head, (size_t)(n > 0 ? n : 0) *
				 (SPOOL_REC_HDR_SIZE + SPOOL_DONE_PAYLOAD_SIZE) +
				 2 * (SPOOL_REC_HDR_SIZE + SPOOL_NOTE_PAYLOAD_SIZE) +
				 copy_scheds(sh, e, NULL, t));
		if (rc)
			return rc;
		for (int i = 0; i < n; i++)
			e->head.len += spool_rec_encode_done(e->head.data + e->head.len,
					e->copy_msgid, t, sh->done_rcpt[i],
					(enum spool_done_status)sh->done_st[i]);
		/* The copy carries what NOTEs said about the message, or once
		 * the old segment is gone a restart would forget it (and
		 * warn the sender a second time). */
		if (ie.delay_warned)
			e->head.len += spool_rec_encode_note(e->head.data + e->head.len,
					e->copy_msgid, t, SPOOL_NOTE_DELAY_WARNED);
		/* The copy is byte-identical, held mark included: a released
		 * message needs its release again after it. */
		if (!ie.held && (copy_flags(e) & SPOOL_MSG_HELD))
			e->head.len += spool_rec_encode_note(e->head.data + e->head.len,
					e->copy_msgid, t, SPOOL_NOTE_RELEASED);
		(void)copy_scheds(sh, e, e->head.data + e->head.len, t);
		sh->c_last = e;
		pp = &e->next;
	}
	return 0;
}

/* Move the head of one of the two queues onto the batch. */
static void batch_take(struct spool_batch *b, struct spool_entry **first,
		       struct spool_entry **last, unsigned *count)
{
	struct spool_entry *e = *first;

	*first = e->next;
	if (!*first)
		*last = NULL;
	if (count)
		(*count)--;
	if (e->lazy)
		b->sh->q_lazy--;
	if (!b->first)
		b->first = e;
	else
		b->last->next = e;
	b->last = e;
	e->next = NULL;
	b->count++;
	b->total += e->head.len + e->body_len;
}

/* Bring the queued copies up to date for this commit (copies_prepare);
 * without memory for their DONEs, none is written this turn: they all go
 * onto *stale and their compaction tries again later. */
static void flush_copies(struct spool_shard *sh, struct spool_entry **stale)
{
	struct spool_entry *e;

	if (!copies_prepare(sh, stale))
		return;
	log_err("spool shard %u: out of memory preparing compaction copies", sh->shard);
	while ((e = sh->c_first)) {
		sh->c_first = e->next;
		e->next = *stale;
		*stale = e;
	}
	sh->c_last = NULL;
}

/* Fail everything queued (records and copies) with err; the next message
 * tries again. */
static void queues_fail(struct spool_shard *sh, int err)
{
	struct spool_entry *q = sh->q_first, *e;
	unsigned count = sh->q_count;

	sh->q_first = sh->q_last = NULL;
	sh->q_count = 0;
	sh->q_lazy = 0;
	sh->stats.errors += count;
	entries_done(sh, q, count, err);
	while ((e = sh->c_first)) {
		sh->c_first = e->next;
		e->next = NULL;
		entries_done(sh, e, 1, err);
	}
	sh->c_last = NULL;
}

/* A segment to write first_len bytes (or more) into: the current one, or a
 * new one when there is none, the current one broke, or it is full. A
 * segment is named by a fresh sequence number: unique, and in time order
 * (the records inside may carry older ids, and DONE records always do).
 * Returns 0, -EAGAIN while zeros are being written into the current one
 * (its descriptor must stay open: wait a turn), or -errno. */
static int flush_segment(struct spool_shard *sh, uint64_t first_len)
{
	if (sh->seg_fd >= 0 && !sh->seg_broken &&
	    !(sh->seg_off > 0 && seg_end(sh, sh->seg_off, first_len) > sh->segment_size))
		return 0;
	if (spool_prezero_busy(&sh->pz))
		return -EAGAIN;
	return segment_open(sh, sh->seq++);
}

/* Take into the batch the copies (see copies_prepare), then records in
 * arrival order, while they fit the segment, the iovec budget and the sync
 * mode (sync = always: one record per commit). */
static void batch_fill(struct spool_shard *sh, struct spool_batch *b)
{
	struct spool_entry *e;
	unsigned iovs = 0, max = sh->sync == CONFIG_SYNC_ALWAYS ? 1 : UINT32_MAX;

	for (int copies = 1; copies >= 0; copies--) {
		struct spool_entry **qf = copies ? &sh->c_first : &sh->q_first;
		struct spool_entry **ql = copies ? &sh->c_last : &sh->q_last;

		while ((e = *qf) && b->count < max) {
			uint64_t len = e->head.len + e->body_len;
			if (b->count && (iovs + 2 > SPOOL_IOV_MAX ||
					 seg_end(sh, b->off, b->total + len) > sh->segment_size ||
					 (b->direct && b->total + len > SPOOL_DIRECT_BATCH_MAX)))
				break;
			batch_take(b, qf, ql, copies ? NULL : &sh->q_count);
			iovs += 2; /* head and body */
		}
		if (*qf && b->count)
			break; /* full: what is left waits behind it */
	}
}

/* Put a batch that could not be submitted back in front of the queues,
 * copies in front of the rest as they were taken, so no record is lost. */
static void batch_unfill(struct spool_shard *sh, struct spool_batch *b)
{
	struct spool_entry *cf = NULL, *cl = NULL, *qf = NULL, *ql = NULL, *e, *next;
	unsigned qn = 0;

	if (b->direct && b->stage.len) {
		/* Staged but not written: the tail is as the batch found it. */
		spool_direct_cut(&sh->dio, &b->stage, b->off);
		b->stage.len = 0;
	}
	for (e = b->first; e; e = next) {
		next = e->next;
		e->next = NULL;
		if (e->copy) {
			*(cl ? &cl->next : &cf) = e;
			cl = e;
		} else {
			*(ql ? &ql->next : &qf) = e;
			ql = e;
			qn++;
			sh->q_lazy += e->lazy != 0;
		}
	}
	if (cl) {
		cl->next = sh->c_first;
		sh->c_first = cf;
		if (!sh->c_last)
			sh->c_last = cl;
	}
	if (ql) {
		ql->next = sh->q_first;
		sh->q_first = qf;
		if (!sh->q_last)
			sh->q_last = ql;
		sh->q_count += qn;
	}
	memset(b, 0, offsetof(struct spool_batch, iov));
}

/* While batches are in flight, another may start only in their segment
 * and with no copy queued (see the top of this file). */
static int flush_may_pipeline(const struct spool_shard *sh)
{
	const struct spool_entry *e = sh->q_first;

	if (sh->ninflight == 0)
		return 1;
	/* Direct: the last batch's write may hold the block this one starts
	 * in; two writes of a block in flight may land in either order. */
	for (unsigned k = 0; sh->direct && k < sh->ninflight; k++) {
		const struct spool_batch *o = &sh->bt[(sh->b_head + k) % SPOOL_BATCHES_MAX];
		if (o->written < o->total)
			return 0;
	}
	return sh->ninflight < SPOOL_BATCHES_MAX && !sh->c_first && e &&
		!sh->seg_broken && sh->seg_fd >= 0 &&
		seg_end(sh, sh->seg_off, e->head.len + e->body_len) <= sh->segment_size;
}

/* 1 when what is queued should be written now: anything but lazy records,
 * or lazy ones that are many, old or waited for. */
static int flush_due(struct spool_shard *sh)
{
	if (sh->c_first || sh->q_count > sh->q_lazy || sh->hurry || sh->q_lazy >= SPOOL_LAZY_MAX)
		return 1;
	return sh->q_lazy && now_mono_us() - sh->lazy_since_us >= SPOOL_LAZY_US;
}

void spool_shard_flush(void *arg)
{
	struct spool_shard *sh = arg;
	struct spool_batch *b;
	struct spool_entry *e, *stale = NULL, *first;
	int rc;

	if (!sh->q_first && !sh->c_first) {
		/* A hurry for records already in flight: nothing to hurry (a
		 * hurry left set would send the next lazy one alone). */
		sh->hurry = 0;
		return;
	}
	if (!flush_due(sh) || !flush_may_pipeline(sh))
		return;
	if (sh->ninflight == 0)
		flush_copies(sh, &stale);
	first = sh->c_first ? sh->c_first : sh->q_first;
	if (!first)
		goto out;
	rc = flush_segment(sh, first->head.len + first->body_len);
	if (rc == -EAGAIN)
		goto out;
	if (rc) {
		log_err("spool shard %u: cannot start a segment: %s", sh->shard,
			strerror(-rc));
		queues_fail(sh, rc);
		goto out;
	}
	b = &sh->bt[(sh->b_head + sh->ninflight) % SPOOL_BATCHES_MAX];
	memset(b, 0, offsetof(struct spool_batch, iov));
	b->sh = sh;
	b->fd = sh->seg_fd;
	b->off = sh->seg_off;
	b->need_dirsync = sh->seg_new && sh->sync != CONFIG_SYNC_NONE;
	b->direct = sh->direct;
	batch_fill(sh, b);
	/* Too few file-op slots (reads hold them), or zeros being written
	 * where the batch would go (a direct one: to its block's end): never
	 * lose records or fail them, they wait for the next turn. */
	if (spool_prezero_blocks(&sh->pz, seg_end(sh, b->off, b->total)) ||
	    batch_submit(b)) {
		batch_unfill(sh, b);
		goto out;
	}
	if (sh->ninflight++)
		sh->stats.overlapped++;
	/* The next batch goes after this one; only this one syncs the new
	 * segment's name (a later one ends after it, batches_settle()). */
	sh->seg_off = b->off + b->total;
	if (sh->sync != CONFIG_SYNC_NONE)
		spool_prezero_commit(&sh->pz, sh->seg_off, b->total);
	if (b->need_dirsync)
		sh->seg_new = 0;
	if (!sh->q_first)
		sh->hurry = 0;
out:
	/* Copies of messages that left their place: nothing to write. */
	while ((e = stale)) {
		stale = e->next;
		if (e->done)
			e->done(e->arg, -ESTALE);
		entry_put(sh, e);
	}
}

struct spool_index *spool_shard_index(struct spool_shard *sh)
{
	return sh->idx;
}

static void read_done(void *arg, int res)
{
	struct spool_read_op *op = arg;
	struct spool_shard *sh = op->sh;
	spool_done_fn fn = op->fn;
	void *fn_arg = op->arg;

	if (res >= 0 && (uint32_t)res != op->len)
		res = -EIO; /* the record is shorter on disk than the index says */
	op->used = 0;
	sh->rd_inflight--;
	if (--sh->rfd[op->seg].reads == 0 && sh->rfd[op->seg].doomed)
		segment_rfd_close(sh, op->seg);
	fn(fn_arg, res < 0 ? res : 0);
}

/* The read-only descriptor of a segment, opened on first use. */
static int segment_rfd(struct spool_shard *sh, uint32_t seg_id)
{
	struct spool_index_seg_stat st;
	char name[SPOOL_SEG_NAME_LEN + 8];
	struct spool_rfd *r;

	if (seg_id >= sh->nrfd) {
		uint32_t n = sh->nrfd ? sh->nrfd : 64;
		struct spool_rfd *p;

		while (n <= seg_id)
			n *= 2;
		p = realloc(sh->rfd, n * sizeof(*p));
		if (!p)
			return -ENOMEM;
		for (uint32_t i = sh->nrfd; i < n; i++) {
			p[i].fd = -1;
			p[i].reads = 0;
			p[i].doomed = 0;
		}
		sh->rfd = p;
		sh->nrfd = n;
	}
	r = &sh->rfd[seg_id];
	if (r->fd >= 0)
		return r->doomed ? -ENOENT : r->fd;
	if (spool_index_segment_stat(sh->idx, seg_id, &st))
		return -ENOENT;
	snprintf(name, sizeof(name), "%016" PRIx64 ".seg", st.first_seq);
	/* Once per segment: a metadata operation like creating one. */
	r->fd = openat(sh->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0) {
		int rc = -errno;
		r->fd = -1;
		return rc;
	}
	return r->fd;
}

static void rfd_close_done(void *arg, int res)
{
	struct spool_shard *sh = arg;

	sh->closing--;
	if (res < 0)
		log_warn("spool shard %u: closing a removed segment: %s", sh->shard,
			 strerror(-res));
}

/* Close a removed segment's descriptor. Ours is the last reference to the
 * unlinked file, so the close frees its page cache and blocks (70 ms for a
 * full 128 MiB segment here): an io_uring worker does it, and only with no
 * file-op slot free does this thread. */
static void segment_rfd_close(struct spool_shard *sh, uint32_t seg_id)
{
	if (seg_id < sh->nrfd && sh->rfd[seg_id].fd >= 0) {
		if (loop_file_close(sh->loop, sh->rfd[seg_id].fd, rfd_close_done, sh) == 0)
			sh->closing++;
		else
			close(sh->rfd[seg_id].fd);
		sh->rfd[seg_id].fd = -1;
	}
	if (seg_id < sh->nrfd)
		sh->rfd[seg_id].doomed = 0;
}

int spool_shard_read(struct spool_shard *sh, uint32_t seg_id, uint64_t off,
		     uint32_t len, char *buf, spool_done_fn fn, void *arg)
{
	struct spool_read_op *op = NULL;
	int fd, rc;

	for (unsigned i = 0; i < SPOOL_READS_MAX && !op; i++)
		if (!sh->rd[i].used)
			op = &sh->rd[i];
	if (!op)
		return -EBUSY;
	fd = segment_rfd(sh, seg_id);
	if (fd < 0)
		return fd;
	op->sh = sh;
	op->seg = seg_id;
	op->len = len;
	op->fn = fn;
	op->arg = arg;
	rc = loop_file_read(sh->loop, fd, buf, len, off, read_done, op);
	if (rc)
		return rc;
	op->used = 1;
	sh->rd_inflight++;
	sh->rfd[seg_id].reads++;
	return 0;
}

int spool_shard_read_sync(struct spool_shard *sh, uint32_t seg_id, uint64_t off,
			  uint32_t len, char *buf)
{
	int fd = segment_rfd(sh, seg_id);
	size_t got = 0;

	if (fd < 0)
		return fd;
	while (got < len) {
		ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		got += (size_t)n;
	}
	return 0;
}

struct domstat *spool_shard_domstat(struct spool_shard *sh)
{
	return sh->domstat;
}
