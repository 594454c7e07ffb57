/* SPDX-License-Identifier: MIT */
/*
 * spool_compact: see spool_compact.h. One segment at a time. Its live
 * messages come from the index's per-segment list (spool_index_segment_msg),
 * not from reading the segment: at most a quarter of a candidate is live, so
 * reading only the live records costs a quarter of the I/O, and the index
 * already knows every record's place and length (16 bytes per message for
 * the list links). Each message is read (io_uring, spool_shard_read), checked
 * (CRC, id, length) and queued as a copy (spool_append_copy): spool.c writes
 * it first in the next group commit, followed by DONEs for the recipients
 * already done (and NOTEs, and SCHEDs of deferred domains), and moves the
 * message in the index when that commit is durable. Nothing here changes
 * the index: a crash at any point leaves the old record in place, and
 * recovery keeps the first copy.
 *
 * Per turn: at most SPOOL_COMPACT_JOBS reads or copies in flight and
 * SPOOL_COMPACT_TURN_BYTES of reads started (one record at least), so
 * receiving shares each commit with at most a few MiB of copies.
 */
#include "store/spool_compact.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "store/spool_index.h"
#include "store/spool_rec.h"

#define SPOOL_COMPACT_JOBS 4                      /* reads/copies in flight */
#define SPOOL_COMPACT_TURN_BYTES (4u << 20)       /* reads started per turn */
#define SPOOL_COMPACT_BUF_KEEP (1u << 20)         /* kept per job buffer */
#define SPOOL_COMPACT_SCAN_US 1000000ull          /* candidate search */
#define SPOOL_COMPACT_RETRY_US (60ull * 1000000)  /* after a failure */
#define SPOOL_COMPACT_DONE_SIZE (SPOOL_REC_HDR_SIZE + SPOOL_DONE_PAYLOAD_SIZE)
#define SPOOL_COMPACT_NOTE_SIZE \
	(SPOOL_NOTE_KIND_MAX * (SPOOL_REC_HDR_SIZE + SPOOL_NOTE_PAYLOAD_SIZE))
/* The records after a copy: a DONE per done recipient and a SCHED per
 * domain with a pending recipient, so at most one per recipient, each at
 * most the larger of the two. */
#define SPOOL_COMPACT_TAIL_REC_MAX \
	(SPOOL_SCHED_REC_MAX > SPOOL_COMPACT_DONE_SIZE ? SPOOL_SCHED_REC_MAX : \
	 SPOOL_COMPACT_DONE_SIZE)
#define SPOOL_COMPACT_PERCENT 100u
#define SPOOL_COMPACT_NAME_LEN 24                 /* "%016" PRIx64 ".seg" */

struct cp_job {
	struct spool_compact *c;
	int used;
	int resume;              /* a start-up re-copy: freed when done */
	uint64_t msgid;
	uint32_t seg;
	uint64_t off;
	uint32_t len;
	char *buf;
	size_t cap;
};

struct spool_compact {
	struct spool_compact_conf conf;
	struct spool_shard *sh;
	struct spool_index *idx;
	int stopping;
	/* the segment being compacted */
	int active;
	int failed;
	uint32_t target;
	uint64_t target_seq;     /* its file name */
	uint64_t next_off;       /* where the next live message is looked for */
	uint64_t moved, moved_bytes;
	unsigned passes_idle;    /* walks of the segment that moved nothing */
	uint64_t next_scan_us;
	struct cp_job jobs[SPOOL_COMPACT_JOBS];
	unsigned inflight;       /* jobs in use, resume ones included */
	struct spool_compact_stats st;
};

static uint64_t cp_now(const struct spool_compact *c)
{
	struct timespec ts;

	if (c->conf.clock)
		return c->conf.clock(c->conf.clock_arg);
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)((int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 +
			  c->conf.clock_offset_us);
}

static void compact_step(void *arg);
static void compact_stop(void *arg);

struct spool_compact *spool_compact_new(struct spool_shard *sh,
		const struct spool_compact_conf *conf)
{
	struct spool_compact *c = calloc(1, sizeof(*c));
	int rc;

	if (!c)
		return NULL;
	c->conf = *conf;
	if (c->conf.threshold == 0)
		c->conf.threshold = SPOOL_COMPACT_THRESHOLD_DEFAULT;
	c->sh = sh;
	c->idx = spool_shard_index(sh);
	for (unsigned i = 0; i < SPOOL_COMPACT_JOBS; i++)
		c->jobs[i].c = c;
	/* Its copies must be queued before the shard's commit of the same
	 * turn (LOOP_TURN_QUEUE runs before LOOP_TURN_COMMIT). */
	rc = loop_add_turn_hook(conf->loop, LOOP_TURN_QUEUE, "spool compaction",
				compact_step, c);
	if (rc == 0)
		rc = loop_add_stop_hook(conf->loop, "spool compaction", compact_stop, c);
	if (rc) {
		/* A hook already added would dangle: the caller fails, and
		 * its loop is freed without running. */
		free(c);
		errno = -rc;
		return NULL;
	}
	return c;
}

struct spool_compact *spool_compact_free(struct spool_compact *c)
{
	if (!c)
		return NULL;
	if (c->inflight)
		panic("spool shard %u: compaction freed with %u jobs in flight",
		      c->conf.shard, c->inflight);
	for (unsigned i = 0; i < SPOOL_COMPACT_JOBS; i++)
		free(c->jobs[i].buf);
	free(c);
	return NULL;
}

/* The stop hook: start no new work (shutdown). */
static void compact_stop(void *arg)
{
	struct spool_compact *c = arg;

	c->stopping = 1;
}

void spool_compact_stats(const struct spool_compact *c,
		struct spool_compact_stats *st)
{
	*st = c->st;
	st->inflight = c->inflight;
	st->active = c->active;
}

static void job_release(struct cp_job *j)
{
	struct spool_compact *c = j->c;

	c->inflight--;
	if (j->resume) {
		free(j->buf);
		free(j);
		return;
	}
	j->used = 0;
	if (j->cap > SPOOL_COMPACT_BUF_KEEP) {
		free(j->buf);
		j->buf = NULL;
		j->cap = 0;
	}
}

static void cp_fail(struct spool_compact *c, const char *what, int err)
{
	char name[SPOOL_COMPACT_NAME_LEN];

	if (!c->active || c->failed)
		return;
	c->failed = 1;
	snprintf(name, sizeof(name), "%016" PRIx64 ".seg", c->target_seq);
	log_err("spool shard %u: compacting segment %s: %s: %s (retried later)",
		c->conf.shard, name, what, strerror(-err));
}

static void copy_done(void *arg, int err)
{
	struct cp_job *j = arg;
	struct spool_compact *c = j->c;

	if (err == 0) {
		c->st.messages++;
		c->st.bytes += j->len;
		if (!j->resume) {
			c->moved++;
			c->moved_bytes += j->len;
		}
	} else if (err != -ESTALE && err != -ECANCELED) {
		/* -ESTALE: finished (or moved) before its commit: nothing to
		 * copy any more. */
		if (j->resume) {
			char qid[SPOOL_COMPACT_NAME_LEN];
			spool_msgid_format(j->msgid, qid, sizeof(qid));
			log_err("spool shard %u: %s: copying again after an "
				"interrupted compaction: %s", c->conf.shard, qid,
				strerror(-err));
		} else {
			cp_fail(c, "writing a copy", err);
		}
	}
	job_release(j);
}

static void read_done(void *arg, int err)
{
	struct cp_job *j = arg;
	struct spool_compact *c = j->c;
	int rc;

	if (err) {
		cp_fail(c, "reading a record", err);
		job_release(j);
		return;
	}
	if (c->stopping) {
		job_release(j);
		return;
	}
	rc = spool_append_copy(c->sh, j->msgid, j->seg, j->off, j->buf, j->len,
			       copy_done, j);
	if (rc) {
		cp_fail(c, rc == -EINVAL ? "record damaged on disk" : "queueing a copy", rc);
		job_release(j);
	}
}

static int job_buf(struct cp_job *j, size_t len)
{
	char *p;

	if (j->cap >= len)
		return 0;
	p = realloc(j->buf, len);
	if (!p)
		return -ENOMEM;
	j->buf = p;
	j->cap = len;
	return 0;
}

void spool_compact_resume(struct spool_compact *c)
{
	struct spool_index_entry e;
	size_t cursor = 0;
	unsigned n = 0, bad = 0;

	while (spool_index_stale_next(c->idx, &cursor, &e)) {
		struct cp_job *j = calloc(1, sizeof(*j));
		int rc = -ENOMEM;

		if (j && (j->buf = malloc(e.rec_len))) {
			j->c = c;
			j->resume = 1;
			j->used = 1;
			j->msgid = e.msgid;
			j->seg = e.segment_id;
			j->off = e.off;
			j->len = e.rec_len;
			rc = spool_shard_read_sync(c->sh, e.segment_id, e.off,
						   e.rec_len, j->buf);
			if (rc == 0)
				rc = spool_append_copy(c->sh, e.msgid, e.segment_id,
						       e.off, j->buf, e.rec_len,
						       copy_done, j);
		}
		if (rc) {
			char qid[SPOOL_COMPACT_NAME_LEN];
			spool_msgid_format(e.msgid, qid, sizeof(qid));
			log_err("spool shard %u: %s: cannot copy again after an "
				"interrupted compaction: %s", c->conf.shard, qid,
				strerror(-rc));
			if (j)
				free(j->buf);
			free(j);
			bad++;
			continue;
		}
		c->inflight++;
		n++;
	}
	if (n || bad)
		log_info("spool shard %u: interrupted compaction: copying %u "
			 "messages again (%u failed)", c->conf.shard, n, bad);
}

/* The oldest sealed segment that is mostly dead and old enough. */
static int pick(struct spool_compact *c, uint64_t now)
{
	struct spool_index_seg_stat st;
	uint32_t cursor = 0, id;

	while (spool_index_segment_next(c->idx, &cursor, &id)) {
		if (spool_index_segment_stat(c->idx, id, &st) || !st.sealed ||
		    st.dead || st.live_msgs == 0)
			continue;
		if (st.live_bytes * SPOOL_COMPACT_PERCENT >=
		    (uint64_t)c->conf.threshold * st.total_bytes)
			continue;
		if (c->conf.min_age_us && (now < st.newest_us ||
					   now - st.newest_us < c->conf.min_age_us))
			continue;
		c->active = 1;
		c->failed = 0;
		c->target = id;
		c->target_seq = st.first_seq;
		c->next_off = 0;
		c->moved = c->moved_bytes = 0;
		c->passes_idle = 0;
		log_debug("spool shard %u: compacting segment %016" PRIx64 ".seg: "
			  "%" PRIu64 " live messages, %" PRIu64 " of %" PRIu64
			  " bytes live", c->conf.shard, st.first_seq, st.live_msgs,
			  st.live_bytes, st.total_bytes);
		return 1;
	}
	return 0;
}

/* No job of the segment in flight: done, given up, or walk it again. */
static void target_check(struct spool_compact *c, uint64_t now)
{
	struct spool_index_entry e;
	char name[SPOOL_COMPACT_NAME_LEN];

	for (unsigned i = 0; i < SPOOL_COMPACT_JOBS; i++)
		if (c->jobs[i].used)
			return;
	snprintf(name, sizeof(name), "%016" PRIx64 ".seg", c->target_seq);
	if (!c->failed) {
		if (spool_index_segment_msg(c->idx, c->target, c->next_off, &e) == 0)
			return; /* more to walk next turn */
		if (spool_index_segment_msg(c->idx, c->target, 0, &e) == 0) {
			/* Left behind the walk (a move that did not take):
			 * walk again once, then give up. */
			if (++c->passes_idle > 1) {
				c->failed = 1;
				log_err("spool shard %u: compacting segment %s: "
					"messages do not move (retried later)",
					c->conf.shard, name);
			} else {
				c->next_off = 0;
				return;
			}
		}
	}
	c->active = 0;
	if (c->failed) {
		c->st.failures++;
		c->next_scan_us = now + SPOOL_COMPACT_RETRY_US;
		return;
	}
	c->st.segments++;
	c->next_scan_us = now; /* the next candidate, if any, at once */
	log_info("spool shard %u: compacted segment %s: %" PRIu64 " live messages "
		 "(%" PRIu64 " bytes) moved", c->conf.shard, name, c->moved,
		 c->moved_bytes);
}

/* The turn hook: one bounded step (spool_compact_new()). */
static void compact_step(void *arg)
{
	struct spool_compact *c = arg;
	struct spool_index_entry e;
	uint64_t now, bytes = 0;

	if (c->stopping)
		return;
	now = cp_now(c);
	if (!c->active) {
		if (now < c->next_scan_us)
			return;
		c->next_scan_us = now + SPOOL_COMPACT_SCAN_US;
		if (!pick(c, now))
			return;
	}
	while (!c->failed && bytes < SPOOL_COMPACT_TURN_BYTES) {
		struct cp_job *j = NULL;
		int rc;

		for (unsigned i = 0; i < SPOOL_COMPACT_JOBS && !j; i++)
			if (!c->jobs[i].used)
				j = &c->jobs[i];
		if (!j || spool_index_segment_msg(c->idx, c->target, c->next_off, &e))
			break;
		/* The copy, its DONEs, NOTEs and SCHEDs go in one segment. */
		if ((uint64_t)e.rec_len + (uint64_t)e.nrcpt * SPOOL_COMPACT_TAIL_REC_MAX +
		    SPOOL_COMPACT_NOTE_SIZE > c->conf.segment_size) {
			cp_fail(c, "a message with its DONEs exceeds segment_size", -EFBIG);
			break;
		}
		rc = job_buf(j, e.rec_len);
		if (rc == 0)
			rc = spool_shard_read(c->sh, c->target, e.off, e.rec_len,
					      j->buf, read_done, j);
		if (rc == -EBUSY)
			break; /* every read slot taken: next turn */
		if (rc) {
			cp_fail(c, "reading a record", rc);
			break;
		}
		j->used = 1;
		j->msgid = e.msgid;
		j->seg = c->target;
		j->off = e.off;
		j->len = e.rec_len;
		c->inflight++;
		c->next_off = e.off + e.rec_len;
		bytes += e.rec_len;
	}
	target_check(c, now);
}
