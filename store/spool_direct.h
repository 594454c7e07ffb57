/* SPDX-License-Identifier: MIT */
/*
 * spool_direct: a shard's group commits written with O_DIRECT
 * (spool_direct_io = yes, with sync = batch|always). A buffered write
 * copies every byte into the page cache and leaves the fdatasync to write
 * it back; a direct write hands the disk the bytes at once, from one
 * aligned buffer, and the sync (RWF_DSYNC on the write, spool.c) then
 * flushes the disk's cache (and writes the inode when the file grew).
 * On the benchmark machine (a VM whose freshly touched page-cache memory
 * is slow), 100 KiB ingest at 20 sessions, 3 alternating runs each:
 * 2,790-3,054 messages/s buffered against 3,880-5,362 direct, CPU per
 * message 299-419 µs against 155-191 µs.
 *
 * Direct I/O moves whole blocks (SPOOL_DIRECT_ALIGN) from aligned memory,
 * so a batch is staged: the bytes of the segment's last partial block that
 * earlier batches wrote (the tail), then the batch's records, then zeros
 * to the end of the block. The next batch writes that block again with
 * the same bytes in front of its own. The file format is unchanged: a
 * segment may end in zeros after its last record, which the reader takes
 * for the end (spool_read.h) and recovery cuts, as with zeros written
 * ahead (spool_prezero.h). A torn write of the shared block leaves each
 * sector old or new, and both hold the earlier batch's bytes.
 *
 * Two writes in flight may not share a block (the device may complete
 * them in either order): a batch starts beside another only once the
 * other's write is in (spool.c's flush_may_pipeline); the overlap with
 * the other's fdatasync stays.
 */
#ifndef ETRND_STORE_SPOOL_DIRECT_H
#define ETRND_STORE_SPOOL_DIRECT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Offset, length and memory alignment of every direct write: a page,
 * enough for any disk's logical block. */
#define SPOOL_DIRECT_ALIGN 4096u
/* A direct batch stops taking records past this many bytes (one record
 * may be bigger): the staging memory a shard keeps per batch slot. */
#define SPOOL_DIRECT_BATCH_MAX (4u << 20)

/* The last partial block of the segment being written. */
struct spool_direct {
	size_t tail_len;          /* its end % SPOOL_DIRECT_ALIGN */
	_Alignas(64) char tail[SPOOL_DIRECT_ALIGN];
};

/* One batch's staged image: written at start, len bytes, done of them
 * confirmed. The memory stays with the batch slot between batches. */
struct spool_stage {
	char *p;
	size_t cap;
	size_t len;
	size_t done;
	uint64_t start;
};

/* A new segment, written from its start. */
void spool_direct_segment(struct spool_direct *d);

/* Stage a batch of total bytes (the iovecs) that goes at off, the
 * segment's end; the tail then covers the batch's last partial block.
 * Returns 0 or -ENOMEM (nothing changed). */
int spool_direct_stage(struct spool_direct *d, struct spool_stage *s, uint64_t off,
		const struct iovec *iov, unsigned n, uint64_t total);

/* The batch staged in s failed and the segment is cut back to off, where
 * it began: the tail becomes what it was then. */
void spool_direct_cut(struct spool_direct *d, const struct spool_stage *s, uint64_t off);

/* A direct write of s came back with res > 0 bytes: count them (whole
 * blocks: the rest is written again). Returns 1 once all of s is in, 0
 * after progress, -EIO when not one whole block was written (writing the
 * same again would make none either). */
int spool_direct_wrote(struct spool_stage *s, int res);

/* Where a batch of total bytes at off ends on disk (the block's end). */
static inline uint64_t spool_direct_end(uint64_t off, uint64_t total)
{
	return (off + total + SPOOL_DIRECT_ALIGN - 1) / SPOOL_DIRECT_ALIGN * SPOOL_DIRECT_ALIGN;
}

/* Give back a slot's staging memory when it grew past
 * SPOOL_DIRECT_BATCH_MAX (one big record), or always when all is set. */
void spool_stage_trim(struct spool_stage *s, int all);

#endif
