/* SPDX-License-Identifier: MIT */
/*
 * spool_recover: rebuild one shard's queue index from its segment files at
 * start-up (DESIGN.md section 5): every record's CRC checked, a torn tail
 * truncated, every damaged region logged with segment and offset and skipped
 * (never the rest of its segment), the index = MSG minus DONE, plus what
 * NOTE records say and the schedule SCHED records give (the last one of a
 * message and domain in scan order wins). Blocking I/O on the calling
 * thread: run it before the shard's loop starts.
 */
#ifndef ETRND_STORE_SPOOL_RECOVER_H
#define ETRND_STORE_SPOOL_RECOVER_H

#include <stddef.h>
#include <stdint.h>

#include "store/spool_index.h"

struct spool_recover_result {
	uint64_t max_seq;         /* highest sequence in a record's msgid or a
	                             segment's name; 0 when there is none */
	uint64_t segments;        /* segment files read */
	uint64_t bytes;           /* their size before any truncation */
	uint64_t msg_records;
	uint64_t done_records;
	uint64_t note_records;
	uint64_t sched_records;
	uint64_t sched_ignored;   /* SCHED for a message not indexed, or a domain
	                             with no pending recipient of it: normal (a
	                             compacted message's old SCHEDs, a finished
	                             one's) */
	uint64_t sched_dead_segments; /* of dead (listed below) that held
	                             SCHEDs recovery applied: unlinking them
	                             loses that schedule at the next start
	                             unless it is written again (spool.c does) */
	uint64_t live_messages;   /* indexed when done */
	uint64_t live_recipients;
	uint64_t bad_regions;     /* damaged regions skipped, plus records with
	                             a good CRC that could not be used */
	uint64_t bad_bytes;
	uint64_t torn_segments;   /* segments whose torn tail was truncated */
	uint64_t torn_bytes;
	uint64_t zero_bytes;      /* zeros after the last record, truncated
	                             too: space written ahead of the tail
	                             (spool_prezero.h), not torn records */
	uint64_t duplicates;      /* MSG records of an id already indexed: the
	                             first copy (oldest segment) is kept */
	uint64_t unknown_dones;   /* DONE for a message not indexed: its
	                             segment was unlinked (normal) or its MSG
	                             was lost to damage (logged at debug) */
	uint64_t repeated_dones;  /* DONE for a recipient already done */
	/* Segments (their first_seq: "%016" PRIx64 ".seg") whose messages are
	 * all done and whose DONE records protect nothing any more, in an order
	 * safe to unlink them: a segment comes after every segment holding MSG
	 * records its DONEs apply to. They are no longer in the index. Unlink
	 * them in this order and stop at the first failure (the rest is found
	 * dead again at the next start). Owned by the result: free with
	 * spool_recover_result_free(). */
	uint64_t *dead;
	size_t ndead;
};

/*
 * Read every segment of shard_dir ("%016x.seg" files, in name order, which
 * is write order), into idx (new and empty: one index per shard). Each
 * segment is registered in idx (spool_index_segment_add) and sealed once
 * read: spool.c never appends to a segment from before a restart. A torn tail (a record cut short by a crash;
 * spool_read.h tells it from damage) is truncated away and its file synced,
 * in any segment: the newest is where a crash leaves one, an older one gets
 * one when a failed write made the writer move to a new segment, and no
 * segment is appended to after a restart anyway. A missing shard_dir is an
 * empty shard.
 *
 * Returns 0 with *res filled (and idx holding every live message), or
 * -errno with err set: an unreadable directory or segment (EIO: a disk
 * problem; the operator must look before mail is redelivered or lost),
 * a failed truncation, or -ENOMEM. Damaged records are not errors. On
 * failure idx holds a partial index: free it.
 */
int spool_recover_shard(const char *shard_dir, struct spool_index *idx,
		struct spool_recover_result *res, char *err, size_t errlen);

/* Free what a result owns; the result may be reused. NULL is fine. */
void spool_recover_result_free(struct spool_recover_result *res);

#endif
