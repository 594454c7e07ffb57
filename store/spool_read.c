/* SPDX-License-Identifier: MIT */
/*
 * spool_read: walk the records of one segment file through a sliding window
 * read in large chunks (no per-record syscall or allocation), report damage
 * and resynchronise past it, and tell a torn tail from corruption.
 */
#include "store/spool_read.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Read size: large enough that syscalls are noise next to the CRC. The
 * window grows past it only to hold one record longer than this. */
#define SPOOL_READ_CHUNK (4u << 20)
#define SPOOL_READ_MAGIC_LEN 4

/* The file bytes [base, base + len) are in buf. */
struct read_win {
	int fd;
	uint64_t size;
	char *buf;
	size_t cap;
	uint64_t base;
	size_t len;
};

/*
 * Make [off, off + need) available (less where the file ends first); *p
 * points at off and *avail says how many bytes follow it in the window,
 * possibly more than need. Returns 0 or -errno. A file that shrinks under
 * us (recovery truncating a live segment) just ends earlier.
 */
static int win_get(struct read_win *w, uint64_t off, size_t need,
		const char **p, size_t *avail)
{
	uint64_t left = off < w->size ? w->size - off : 0;
	size_t want = need < left ? need : (size_t)left;

	if (off < w->base || off + want > w->base + w->len) {
		size_t keep = 0;
		if (off >= w->base && off < w->base + w->len) {
			keep = (size_t)(w->base + w->len - off);
			memmove(w->buf, w->buf + (off - w->base), keep);
		}
		w->base = off;
		w->len = keep;
		if (want > w->cap || w->buf == NULL) {
			size_t cap = w->size < SPOOL_READ_CHUNK ?
				(size_t)w->size : SPOOL_READ_CHUNK;
			if (cap < want)
				cap = want;
			if (cap == 0)
				cap = 1;
			char *nb = realloc(w->buf, cap);
			if (nb == NULL)
				return -ENOMEM;
			w->buf = nb;
			w->cap = cap;
		}
		while (w->len < want) {
			uint64_t pos = w->base + w->len;
			size_t room = w->cap - w->len;
			if (room > w->size - pos)
				room = (size_t)(w->size - pos);
			ssize_t r = pread(w->fd, w->buf + w->len, room,
					(off_t)pos);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return -errno;
			if (r == 0) {
				w->size = pos;
				break;
			}
			w->len += (size_t)r;
		}
	}
	*p = w->buf + (off - w->base);
	*avail = (size_t)(w->base + w->len - off);
	return 0;
}

static uint32_t rd_get32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	return (uint32_t)u[0] | ((uint32_t)u[1] << 8) |
		((uint32_t)u[2] << 16) | ((uint32_t)u[3] << 24);
}

/* Decode the record at off into *code (a SPOOL_REC_* value), loading all
 * of it first. Returns 0 or -errno. */
static int rec_at(struct read_win *w, uint64_t off, int *code,
		struct spool_rec_hdr *hdr, const char **payload)
{
	const char *p = NULL;
	size_t avail = 0; /* win_get sets both; GCC -O3 warns it may not */
	int r = win_get(w, off, SPOOL_REC_HDR_SIZE, &p, &avail);
	if (r < 0)
		return r;
	if (avail >= SPOOL_REC_HDR_SIZE) {
		uint32_t length = rd_get32(p + 8);
		if (length <= SPOOL_REC_PAYLOAD_MAX) {
			r = win_get(w, off, SPOOL_REC_HDR_SIZE + (size_t)length,
					&p, &avail);
			if (r < 0)
				return r;
		}
	}
	*code = spool_rec_decode(p, avail, hdr, payload);
	return 0;
}

/* Find the first offset >= from where a valid record starts: *next, or
 * w->size when there is none. Returns 0 or -errno. Each candidate costs a
 * CRC over its claimed length, so a file crafted with many plausible
 * headers is slow (quadratic) to scan; segments are written only by us. */
static int find_next(struct read_win *w, uint64_t from, uint64_t *next)
{
	static const char magic[SPOOL_READ_MAGIC_LEN] = { 'E', 'T', 'R', 'N' };
	uint64_t s = from;

	while (s + SPOOL_REC_HDR_SIZE <= w->size) {
		const char *p;
		size_t avail;
		int r = win_get(w, s, SPOOL_REC_HDR_SIZE, &p, &avail);
		if (r < 0)
			return r;
		if (avail < SPOOL_REC_HDR_SIZE)
			break;
		const char *hit = memmem(p, avail, magic, sizeof magic);
		if (hit == NULL) {
			/* The magic may straddle the window's end. */
			s += avail - (SPOOL_READ_MAGIC_LEN - 1);
			continue;
		}
		uint64_t c = s + (uint64_t)(hit - p);
		size_t in_win = avail - (size_t)(hit - p);
		/* Cheap filters on the header before loading a whole record:
		 * version, and a length that fits in the file. */
		if (in_win >= SPOOL_REC_HDR_SIZE &&
		    ((unsigned char)hit[4] != SPOOL_REC_VERSION ||
		     c + SPOOL_REC_HDR_SIZE + rd_get32(hit + 8) > w->size)) {
			s = c + 1;
			continue;
		}
		int code;
		struct spool_rec_hdr hdr;
		const char *payload;
		r = rec_at(w, c, &code, &hdr, &payload);
		if (r < 0)
			return r;
		if (code == SPOOL_REC_OK) {
			*next = c;
			return 0;
		}
		s = c + 1;
	}
	*next = w->size;
	return 0;
}

/* Offset just past the last non-zero byte in [from, w->size), or from. */
static int last_nonzero_end(struct read_win *w, uint64_t from, uint64_t *end)
{
	uint64_t s = from;
	*end = from;
	while (s < w->size) {
		const char *p;
		size_t avail;
		int r = win_get(w, s, SPOOL_READ_CHUNK, &p, &avail);
		if (r < 0)
			return r;
		if (avail == 0)
			break;
		for (size_t i = avail; i > 0; i--) {
			if (p[i - 1] != 0) {
				*end = s + i;
				break;
			}
		}
		s += avail;
	}
	return 0;
}

/*
 * The tail [off, size) holds no valid record: torn tail or damage? Zero-
 * length files never get here (a clean end). Torn, i.e. what a crash
 * during an append leaves:
 *  - all zero bytes (preallocated or never-written space);
 *  - a cut-short record: the bytes up to the last non-zero one are a prefix
 *    of a plausible record (magic, version, then type and length) that the
 *    file ends before, or whose last byte and all after it are zero (blocks
 *    that never reached the disk).
 * Anything else is a damaged region reaching the end of the file; so is
 * damage followed by a valid record, always (spool_read_segment()). A
 * resync point is an offset where a whole record decodes with a good CRC;
 * a valid record embedded in a damaged one's body (a spooled spool file)
 * can be taken for one, the price of never losing what follows damage.
 * *why gets the reason to report when the tail is not torn.
 */
static int tail_is_torn(struct read_win *w, uint64_t off, int *torn, int *zero,
			int *why)
{
	uint64_t nz;
	int r = last_nonzero_end(w, off, &nz);
	if (r < 0)
		return r;
	const char *p;
	size_t avail;
	r = win_get(w, off, SPOOL_REC_HDR_SIZE, &p, &avail);
	if (r < 0)
		return r;
	struct spool_rec_hdr hdr;
	const char *payload;
	size_t hlen = avail < SPOOL_REC_HDR_SIZE ? avail : SPOOL_REC_HDR_SIZE;
	*why = spool_rec_decode(p, avail, &hdr, &payload);
	if (*why == SPOOL_REC_AGAIN || *why == SPOOL_REC_OK)
		*why = SPOOL_REC_BAD_LENGTH;
	*torn = 0;
	*zero = nz == off;
	if (nz == off) {
		*torn = 1;
	} else if (nz - off < SPOOL_REC_HDR_SIZE) {
		/* Only part of a header made it: its written bytes must be
		 * the start of a header. */
		*torn = spool_rec_decode(p, (size_t)(nz - off), &hdr,
				&payload) == SPOOL_REC_AGAIN;
	} else if (spool_rec_decode(p, hlen, &hdr, &payload) ==
			SPOOL_REC_AGAIN) {
		uint64_t rec_end = off + SPOOL_REC_HDR_SIZE + rd_get32(p + 8);
		*torn = w->size < rec_end || nz < rec_end;
	}
	return 0;
}

int spool_read_segment(const char *path, spool_read_fn fn,
		spool_read_bad_fn bad, void *arg, struct spool_read_result *res)
{
	struct read_win w = { .fd = -1 };
	struct stat st;
	uint64_t off = 0;
	int ret = 0;

	memset(res, 0, sizeof *res);
	w.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (w.fd < 0)
		return -errno;
	if (fstat(w.fd, &st) < 0) {
		ret = -errno;
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		goto fail;
	}
	w.size = (uint64_t)st.st_size;
	(void)posix_fadvise(w.fd, 0, 0, POSIX_FADV_SEQUENTIAL);

	while (off < w.size) {
		int code;
		struct spool_rec_hdr hdr;
		const char *payload;
		ret = rec_at(&w, off, &code, &hdr, &payload);
		if (ret < 0)
			goto fail;
		if (code == SPOOL_REC_OK) {
			res->records++;
			off += SPOOL_REC_HDR_SIZE + (uint64_t)hdr.length;
			res->valid_end = off;
			ret = fn(arg, off - SPOOL_REC_HDR_SIZE - hdr.length,
					&hdr, payload);
			if (ret != 0)
				goto fail;
			continue;
		}

		uint64_t next;
		ret = find_next(&w, off + 1, &next);
		if (ret < 0)
			goto fail;
		if (next < w.size) {
			/* AGAIN here means the length ran past records that
			 * follow: it was the corrupt field. */
			int why = code == SPOOL_REC_AGAIN ?
				SPOOL_REC_BAD_LENGTH : code;
			res->bad_regions++;
			if (bad != NULL)
				bad(arg, off, next - off, why);
			off = next;
			continue;
		}
		int torn, zero, why;
		ret = tail_is_torn(&w, off, &torn, &zero, &why);
		if (ret < 0)
			goto fail;
		if (torn) {
			res->torn_bytes = w.size - off;
			res->zero_tail = zero;
		} else {
			res->bad_regions++;
			if (bad != NULL)
				bad(arg, off, w.size - off, why);
		}
		break;
	}
	ret = 0;
fail:
	res->file_size = w.size;
	free(w.buf);
	close(w.fd);
	return ret;
}
