/* SPDX-License-Identifier: MIT */
/*
 * buf: a growable byte buffer with a hard cap, used for SMTP replies, command
 * lines and message bodies. The struct is public because hot paths append to
 * it directly; every growth goes through buf_reserve(), which never exceeds
 * the cap and never leaves the buffer in a half-grown state.
 */
#ifndef ETRND_CORE_BUF_H
#define ETRND_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	char *data;   /* NULL until the first append */
	size_t len;   /* bytes in use */
	size_t cap;   /* bytes allocated */
	size_t max;   /* hard cap on len; 0 means SIZE_MAX */
};

/* Zero the buffer and set its cap (0 = unlimited). Allocates nothing. */
void buf_init(struct buf *b, size_t max);

/* Make room for extra more bytes. Returns 0, -ENOMEM, or -E2BIG when
 * len + extra would pass the cap. */
int buf_reserve(struct buf *b, size_t extra);

/* Append n bytes. Returns 0, -ENOMEM or -E2BIG; on error nothing is added. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);

/* Append printf output. Returns 0, -ENOMEM, -E2BIG; on error nothing is
 * added (a truncated reply is never left in the buffer). */
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

/* Append v in decimal (a leading '-' when negative), without printf: the
 * ingest path writes its numbers this way. Returns 0, -ENOMEM, -E2BIG; on
 * error nothing is added. */
int buf_append_u64(struct buf *b, uint64_t v);
int buf_append_i64(struct buf *b, int64_t v);

/* Drop the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);

/* Forget the contents, keep the memory. */
static inline void buf_reset(struct buf *b) { b->len = 0; }

/* Release memory above keep bytes (used after an unusually large message so
 * one big body does not pin memory for the rest of a session). */
void buf_shrink(struct buf *b, size_t keep);

/* Free the memory; the buffer is left empty and reusable. NULL is fine. */
void buf_free(struct buf *b);

#endif
