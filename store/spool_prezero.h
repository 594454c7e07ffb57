/* SPDX-License-Identifier: MIT */
/*
 * spool_prezero: zeros written and synced ahead of a segment's tail, so
 * that small group commits overwrite blocks the file already has instead
 * of appending.
 *
 * An fdatasync after an append must also write the inode (the new size and
 * blocks); after an overwrite of blocks already written and synced it
 * writes the data and flushes the disk, nothing more. So while a shard's
 * commits are small (few sessions, small messages: the case bound by commit
 * latency), the shard keeps a chunk of zeros ahead of its tail and its
 * commits land in it. While commits are large the disk's bandwidth bounds
 * them, and writing every byte twice would halve it: no zeros then.
 *
 * A chunk is a write of zeros linked to an fdatasync, through the shard's
 * loop. While it is in flight no batch may write into it
 * (spool_prezero_blocks()) and the segment may not change
 * (spool_prezero_busy()). A segment may end in zeros after its last
 * record (at most a chunk and its margin): the reader takes an all-zero
 * tail for the end (spool_read.h), and recovery cuts it.
 */
#ifndef ETRND_STORE_SPOOL_PREZERO_H
#define ETRND_STORE_SPOOL_PREZERO_H

#include <stdint.h>
#include <sys/uio.h>

#include "core/loop.h"

/* Largest chunk, and the iovecs that write it from one zero buffer. */
#define SPOOL_PREZERO_CHUNK (2u << 20)
#define SPOOL_PREZERO_BUF (64u << 10)
#define SPOOL_PREZERO_IOV (SPOOL_PREZERO_CHUNK / SPOOL_PREZERO_BUF)

struct spool_prezero {
	struct loop *loop;
	int fd;                  /* the segment written now; -1: none */
	uint64_t limit;          /* its size limit (segment_size) */
	uint64_t chunk;          /* bytes per chunk for that limit */
	uint64_t zeroed;         /* below this the segment is written and synced,
	                            zeros or records (or being written by a batch) */
	uint64_t z_off, z_len;   /* the chunk in flight; z_len 0: none */
	uint64_t z_written;
	unsigned outstanding;    /* its CQEs still due */
	int z_failed;            /* its write or sync failed */
	int stale;               /* the segment changed or was cut meanwhile */
	uint64_t avg;            /* recent commit size in bytes (1/8 EWMA) */
	uint64_t pause_until_us; /* after a failure (a full disk): none before */
	uint64_t chunks;         /* chunks written and synced (a statistic) */
	struct iovec iov[SPOOL_PREZERO_IOV];
};

/* Start with no segment; limit is segment_size. */
void spool_prezero_init(struct spool_prezero *pz, struct loop *loop, uint64_t limit);

/* A new segment is being written through fd: nothing of it is zeroed.
 * Only while spool_prezero_busy() is 0. */
void spool_prezero_segment(struct spool_prezero *pz, int fd);

/* A commit of bytes was submitted; the segment's records (those in flight
 * included) now end at tail. May start a chunk. */
void spool_prezero_commit(struct spool_prezero *pz, uint64_t tail, uint64_t bytes);

/* 1 when a batch writing up to end would write into the chunk in flight:
 * it must wait for it. */
int spool_prezero_blocks(const struct spool_prezero *pz, uint64_t end);

/* The segment was cut back to off (a failed batch). */
void spool_prezero_cut(struct spool_prezero *pz, uint64_t off);

/* 1 while a chunk is in flight. */
int spool_prezero_busy(const struct spool_prezero *pz);

#endif
