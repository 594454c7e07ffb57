/* SPDX-License-Identifier: MIT */
/*
 * buf: growable byte buffer with a hard cap (see buf.h). Growth doubles, so
 * appending a message body costs amortised O(1) per byte; the cap is checked
 * before any allocation so peer input can never grow a buffer past it.
 */
#include "core/buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF_MIN_ALLOC 256
#define BUF_PRINTF_STACK 1024
#define BUF_DEC_MAX 20 /* digits of UINT64_MAX */

void buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max ? max : SIZE_MAX;
}

int buf_reserve(struct buf *b, size_t extra)
{
	size_t need, ncap;
	char *p;

	if (extra > b->max - b->len)
		return -E2BIG;
	need = b->len + extra;
	if (need <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : BUF_MIN_ALLOC;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	/* Never allocate far beyond the cap: a 50 MiB limit must not turn into
	 * a 64 MiB allocation. */
	if (ncap > b->max && b->max >= need)
		ncap = b->max;
	p = realloc(b->data, ncap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = ncap;
	return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	int rc;

	if (n == 0)
		return 0;
	rc = buf_reserve(b, n);
	if (rc)
		return rc;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	char small[BUF_PRINTF_STACK];
	va_list ap2;
	char *big;
	int n, rc;

	/* Format aside first, so an error or the cap never leaves half a reply
	 * in the buffer. */
	va_copy(ap2, ap);
	n = vsnprintf(small, sizeof(small), fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n < sizeof(small))
		return buf_append(b, small, (size_t)n);
	big = malloc((size_t)n + 1);
	if (!big)
		return -ENOMEM;
	(void)vsnprintf(big, (size_t)n + 1, fmt, ap);
	rc = buf_append(b, big, (size_t)n);
	free(big);
	return rc;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

/* The digits of v, written backwards from end; returns where they begin. */
static char *buf_dec(char *end, uint64_t v)
{
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return end;
}

int buf_append_u64(struct buf *b, uint64_t v)
{
	char tmp[BUF_DEC_MAX], *p = buf_dec(tmp + sizeof(tmp), v);

	return buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

int buf_append_i64(struct buf *b, int64_t v)
{
	char tmp[BUF_DEC_MAX + 1], *p;

	/* The magnitude in unsigned arithmetic, so INT64_MIN needs no
	 * special case. */
	p = buf_dec(tmp + sizeof(tmp), v < 0 ? -(uint64_t)v : (uint64_t)v);
	if (v < 0)
		*--p = '-';
	return buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

void buf_shrink(struct buf *b, size_t keep)
{
	char *p;

	if (b->cap <= keep || b->len > keep)
		return;
	if (keep == 0) {
		free(b->data);
		b->data = NULL;
		b->cap = 0;
		return;
	}
	p = realloc(b->data, keep);
	if (p) {
		b->data = p;
		b->cap = keep;
	}
}

void buf_free(struct buf *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}
