/* SPDX-License-Identifier: MIT */
/*
 * spool_read: read the records of one segment file, offline or at start-up.
 * Reports each valid record to a callback, and says precisely where and why
 * it stopped: clean end, torn tail (a record cut short by a crash: only
 * possible at the end), or corruption (offset of the bad record; reading
 * resumes at the next offset where a valid record header with a good CRC
 * starts, so one bad record never hides the rest of the segment).
 * Uses plain read(2)/pread(2): it runs before the engine threads exist or in
 * tools, never on an engine thread.
 */
#ifndef ETRND_STORE_SPOOL_READ_H
#define ETRND_STORE_SPOOL_READ_H

#include <stddef.h>
#include <stdint.h>

#include "store/spool_rec.h"

/* Called for each valid record. off is its offset in the file. payload is
 * valid only during the call. Return 0 to go on, non-zero to stop (that value
 * is returned by spool_read_segment). */
typedef int (*spool_read_fn)(void *arg, uint64_t off,
		const struct spool_rec_hdr *hdr, const char *payload);

/* Called for each damaged region: [off, off+len) could not be read as
 * records; why is a SPOOL_REC_* code. */
typedef void (*spool_read_bad_fn)(void *arg, uint64_t off, uint64_t len,
		int why);

struct spool_read_result {
	uint64_t records;     /* valid records reported */
	uint64_t valid_end;   /* offset just past the last valid record */
	uint64_t file_size;
	uint64_t torn_bytes;  /* bytes after valid_end that form a cut-short
	                         record at the end of the file (0 if none) */
	int zero_tail;        /* those bytes are all zero: space written ahead
	                         (store/spool_prezero.h) or blocks a crash left
	                         unwritten, rather than part of a record */
	uint64_t bad_regions; /* damaged regions reported via bad_fn */
};

/*
 * Read the segment at path. Returns 0 when the whole file was examined,
 * -errno on an I/O error, or the non-zero value a callback returned.
 * bad may be NULL.
 */
int spool_read_segment(const char *path, spool_read_fn fn,
		spool_read_bad_fn bad, void *arg, struct spool_read_result *res);

#endif
