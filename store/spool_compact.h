/* SPDX-License-Identifier: MIT */
/*
 * spool_compact: gives back the space of old segments that are mostly dead
 * (DESIGN.md section 5). A sealed segment whose live bytes fall below a
 * threshold (and, optionally, whose newest message is old enough) has its
 * live messages copied, byte for byte, to the head segment through the
 * normal group commit; each message moves in the index once its copy is
 * durable, and the old segment is unlinked by the dead-segment logic once
 * nothing lives in it and its pins allow. A live message is never in
 * neither place. Runs in bounded steps from its own turn hook.
 */
#ifndef ETRND_STORE_SPOOL_COMPACT_H
#define ETRND_STORE_SPOOL_COMPACT_H

#include <stddef.h>
#include <stdint.h>

#include "store/spool.h"

/* Percent of live bytes below which a sealed segment is compacted. */
#define SPOOL_COMPACT_THRESHOLD_DEFAULT 25u

struct spool_compact_conf {
	struct loop *loop;         /* the shard's: compaction registers its
	                              per-turn step and stop hook there */
	unsigned shard;            /* for logs */
	unsigned threshold;        /* percent; 0: the default */
	uint64_t min_age_us;       /* newest message at least this old; 0: any */
	size_t segment_size;       /* a copy (with its DONEs) must fit one */
	int64_t clock_offset_us;   /* test aid: added to the wall clock */
	spool_clock_fn clock;      /* NULL: the wall clock */
	void *clock_arg;
};

struct spool_compact;

/* Create for the shard (after its recovery), and register on conf->loop a
 * LOOP_TURN_QUEUE turn hook (one bounded step: look for a candidate now and
 * then, start at most a few record reads and a few MiB of copies, which the
 * shard's commit, later in the same turn, writes) and a stop hook (start no
 * new work; reads and copies in flight finish, and the shard's busy check
 * covers them). NULL with errno ENOMEM, or ENOSPC when the loop's hook
 * registry is full. */
struct spool_compact *spool_compact_new(struct spool_shard *sh,
		const struct spool_compact_conf *conf);
/* Free. Nothing of it may be queued in the shard (spool_shard_close()
 * cancels its queued copies first). NULL is fine; returns NULL. */
struct spool_compact *spool_compact_free(struct spool_compact *c);

/* At start, before loop_run(): copy again, with blocking reads, every
 * message recovery found a stale copy of (spool_index_stale_next()), so
 * that the copies are written before anything can finish those messages.
 * A message that cannot be copied keeps its stale copy protected by the
 * index's fallback pin. Logs what it does. */
void spool_compact_resume(struct spool_compact *c);

struct spool_compact_stats {
	uint64_t segments;         /* segments compacted (all moved) */
	uint64_t messages;         /* messages moved */
	uint64_t bytes;            /* their record bytes */
	uint64_t failures;         /* segments given up (retried later) */
	unsigned inflight;         /* reads and copies under way */
	int active;                /* a segment is being compacted */
};
void spool_compact_stats(const struct spool_compact *c,
		struct spool_compact_stats *st);

#endif
