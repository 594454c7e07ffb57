/* SPDX-License-Identifier: MIT */
/*
 * spool: the write path of one spool shard (one per engine thread). Messages
 * are appended as whole MSG records to append-only segment files through the
 * thread's io_uring; messages that finish in the same loop turn share one
 * write and one fdatasync (group commit), and each message's done callback
 * runs only after its bytes are durable (sync = batch|always); the next
 * batch is written while the previous one's fdatasync runs (spool.c). A
 * message id
 * names shard and sequence, unique across restarts.
 */
#ifndef ETRND_STORE_SPOOL_H
#define ETRND_STORE_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/loop.h"
#include "store/spool_rec.h"

struct spool_shard;

/* A clock in microseconds since the epoch (tests drive compaction's age
 * rule with their own). */
typedef uint64_t (*spool_clock_fn)(void *arg);

struct spool_shard_conf {
	const char *dir;             /* spool_dir; the shard lives in dir/<shard> */
	unsigned shard;
	enum config_sync sync;
	size_t segment_size;
	int direct;                  /* spool_direct_io: O_DIRECT writes when
	                                sync is not none (spool_direct.h) */
	struct domstat *domstat;     /* node-wide held mail per domain (shared) */
	/* Compaction (store/spool_compact.h); zero values mean: threshold
	 * SPOOL_COMPACT_THRESHOLD_DEFAULT, no minimum age, the wall clock. */
	unsigned compact_threshold;  /* percent of live bytes (1..100) */
	uint64_t compact_min_age_us;
	int64_t clock_offset_us;     /* test aid: added to the wall clock */
	spool_clock_fn clock;        /* NULL: the wall clock (+ offset) */
	void *clock_arg;
};

/*
 * Open (creating if needed) the shard directory and find the highest message
 * sequence already in it, so new ids never repeat one on disk. Runs on the
 * engine thread before loop_run(); may block (start-up). Returns NULL with err
 * set on failure. The first segment file is created on the first append.
 */
struct spool_shard *spool_shard_open(struct loop *loop,
		const struct spool_shard_conf *conf, char *err, size_t errlen);

/* Close files and free. Only when spool_shard_busy() is 0. NULL is fine. */
struct spool_shard *spool_shard_close(struct spool_shard *sh);

/* A new message id (shard + next sequence). */
uint64_t spool_shard_new_msgid(struct spool_shard *sh);

struct spool_msg {
	uint64_t msgid;
	uint16_t flags;               /* SPOOL_MSG_* */
	const char *sender;
	size_t sender_len;
	uint32_t nrcpt;
	const char *const *rcpt;
	const size_t *rcpt_len;
	const char *body;             /* borrowed until done() runs */
	size_t body_len;
};

/* err is 0 when the record is on disk (as durable as sync says), else
 * -errno (-ENOSPC, -EIO, ...) and nothing of this message counts as stored. */
typedef void (*spool_done_fn)(void *arg, int err);

/*
 * Queue a MSG record. The envelope is copied; the body is borrowed and must
 * stay valid and unchanged until done() runs. done() runs on the loop thread
 * from a completion, never from inside this call. Returns 0, or -E2BIG when
 * the record is larger than the segment size, -ENOMEM.
 */
int spool_append_msg(struct spool_shard *sh, const struct spool_msg *m,
		spool_done_fn done, void *arg);

/*
 * Queue a DONE record: recipient rcpt_index of message msgid was delivered,
 * bounced or expired. Group-committed with everything else; done (may be
 * NULL) runs once it is durable. Returns 0 or -ENOMEM.
 */
int spool_append_done(struct spool_shard *sh, uint64_t msgid, uint32_t rcpt_index,
		enum spool_done_status status, spool_done_fn done, void *arg);

/*
 * The same DONE, lazy: nobody waits for it yet (a drain's delivered
 * recipient, whose connection goes on to the next message). A queue of
 * only lazy records is not written every turn but once SPOOL_LAZY_MAX (64)
 * are queued, the oldest has waited SPOOL_LAZY_US (2 ms; checked each
 * turn), anything else is queued (they go with it), or spool_shard_hurry()
 * says someone now waits for them. Durability and the done callback are
 * as for spool_append_done(); only the number of group commits changes.
 */
int spool_append_done_lazy(struct spool_shard *sh, uint64_t msgid, uint32_t rcpt_index,
		enum spool_done_status status, spool_done_fn done, void *arg);

/* Someone waits for the lazy records queued now: write them in this turn's
 * group commit (or the next one that may start). */
void spool_shard_hurry(struct spool_shard *sh);

/*
 * Queue a NOTE record of kind for message msgid (e.g. its delay warning was
 * sent), group-committed after everything queued before it; once durable the
 * index has it (spool_index_msg_noted()). done may be NULL. Returns 0 or
 * -ENOMEM.
 */
int spool_append_note(struct spool_shard *sh, uint64_t msgid,
		enum spool_note_kind kind, spool_done_fn done, void *arg);

/*
 * Queue a SCHED record (spool_rec.h): the outbound scheduler tries message
 * msgid's pending recipients in domain dom (len bytes, lower case) next at
 * next_us (wall clock, microseconds). The index's next_us for that queue
 * entry is set at once (spool_index_set_next()); the record only makes it
 * survive a restart. done may be NULL. Returns 0, -ENOENT (msgid has no
 * entry in dom's queue), -ENAMETOOLONG (dom longer than
 * SPOOL_SCHED_DOMAIN_MAX: the SMTP layer never takes one), -ENOMEM (then
 * nothing changed). Advisory: the record pins no segment and is no live
 * byte, so a segment holding only SCHEDs of finished messages is unlinked
 * as usual; a compaction copy carries one per entry with next_us != 0.
 */
int spool_append_sched(struct spool_shard *sh, uint64_t msgid, const char *dom, size_t len,
		uint64_t next_us, spool_done_fn done, void *arg);

/*
 * Compaction: queue a byte-identical copy of a stored MSG record (len bytes
 * at rec, borrowed until done() runs) that the index has at (seg_id, off).
 * Copies are written first in the next group commit, each followed by a
 * DONE record for every recipient the index has done at that moment (a
 * NOTE for each fact noted on it, a SCHED for each queue entry with a next
 * attempt); when
 * durable the message moves to the copy (spool_index_msg_move()). done(arg,
 * 0) then; -ESTALE when the message was no longer at (seg_id, off) when the
 * commit started (finished or moved: nothing written); other -errno: not
 * stored. Returns 0 or -ENOMEM.
 */
int spool_append_copy(struct spool_shard *sh, uint64_t msgid, uint32_t seg_id,
		uint64_t off, const char *rec, size_t len, spool_done_fn done,
		void *arg);

/*
 * Per-turn work. spool_shard_open() registers these on the loop itself:
 * spool_shard_flush as its LOOP_TURN_COMMIT turn hook (so it runs after the
 * turn's record-queueing work, expiry and compaction, whose records then
 * share the commit) and spool_shard_busy as a busy check; its compaction
 * registers its own step and stop hook (spool_compact.h).
 *
 * spool_shard_flush: start a group commit of everything queued (a queue of
 * only lazy records may wait, see spool_append_done_lazy). With one
 * commit in flight a second starts beside it (its write overlaps the
 * first's fdatasync; it ends after the first) unless it would need a new
 * segment or compaction copies are queued; with two in flight the queue
 * waits and grows. Calling it again in the same turn is harmless.
 */
void spool_shard_flush(void *sh);

/* 1 while records are queued or being written, or reads are in flight
 * (compaction's included). */
int spool_shard_busy(void *sh);

/* The loop the shard writes through (for modules that register their own
 * per-turn work beside the shard's, e.g. expiry). */
struct loop *spool_shard_loop(struct spool_shard *sh);

/* The shard's per-domain queue index (store/spool_index.h): every message
 * with undelivered recipients, kept in step with the records made durable.
 * For the engine thread that owns the shard only. */
struct spool_index;
struct spool_index *spool_shard_index(struct spool_shard *sh);

/*
 * Read a stored record: len bytes at off of segment seg_id (as the index
 * gives them) into buf, which must stay valid until fn(arg, err) runs: err 0
 * when all len bytes were read, else -errno. Up to SPOOL_READS_MAX (32)
 * reads in flight per shard: -EBUSY beyond that (try again next turn);
 * -ENOENT for an unknown segment.
 */
int spool_shard_read(struct spool_shard *sh, uint32_t seg_id, uint64_t off,
		uint32_t len, char *buf, spool_done_fn fn, void *arg);

/* The same, blocking (pread): for start-up only, before loop_run(). Returns
 * 0, -EIO when fewer than len bytes are there, or -errno. */
int spool_shard_read_sync(struct spool_shard *sh, uint32_t seg_id, uint64_t off,
		uint32_t len, char *buf);

/* The shard's compaction (store/spool_compact.h), for its statistics. */
struct spool_compact;
struct spool_compact *spool_shard_compact(struct spool_shard *sh);

/* The node-wide per-domain counters this shard keeps up to date. */
struct domstat *spool_shard_domstat(struct spool_shard *sh);

/* Counters for logs and metrics. */
struct spool_stats {
	uint64_t messages;     /* records (MSG, DONE, NOTE, SCHED) made durable */
	uint64_t bytes;        /* bytes made durable */
	uint64_t commits;      /* group commits (write + sync rounds) */
	uint64_t errors;       /* messages failed */
	uint64_t overlapped;   /* commits started while another was in flight */
	uint64_t prezero_chunks; /* zero chunks written ahead (spool_prezero.h) */
	uint64_t direct_commits; /* commits written with O_DIRECT (spool_direct.h) */
	uint64_t dsync_commits;  /* of those, made by O_DSYNC writes, no fdatasync */
};
void spool_shard_stats(const struct spool_shard *sh, struct spool_stats *st);

#endif
