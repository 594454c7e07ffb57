/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for core/linereader.c. The first input byte picks the
 * line limit and a chunk size; the rest is fed whole and in chunks, and
 * both must give the same lines and refusals (OVERLONG itself may come or
 * not: the header says so). A line
 * is within the limit, holds no LF, and LINE flags tell the truth.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/linereader.h"

#define FZ_LINE_MAX_CAP 300  /* largest limit tried */
#define FZ_TRACE_MAX (1u << 22)

static void fz_feed(const char *in, size_t n, size_t max, size_t chunk, struct buf *trace)
{
	static char lbuf[FZ_LINE_MAX_CAP];
	struct linereader lr;
	size_t i = 0;
	int over = 0;

	linereader_init(&lr, lbuf, max);
	while (i < n) {
		size_t k = chunk && chunk < n - i ? chunk : n - i, off = 0;

		while (off < k) {
			struct linereader_line ln;
			size_t got = linereader_feed(&lr, in + i + off, k - off, &ln);

			if (got == 0 || got > k - off)
				__builtin_trap();
			off += got;
			if (ln.status == LINEREADER_AGAIN && off != k)
				__builtin_trap();
			if (ln.status == LINEREADER_LINE) {
				if (ln.len + 1 > max || memchr(ln.p, '\n', ln.len))
					__builtin_trap();
				if (!!(ln.flags & LINEREADER_F_NUL) != !!memchr(ln.p, '\0', ln.len))
					__builtin_trap();
				if (in[i + off - 1] != '\n')
					__builtin_trap();
				(void)buf_printf(trace, "L%zu,%u:", ln.len, ln.flags);
				(void)buf_append(trace, ln.p, ln.len);
			} else if (ln.status == LINEREADER_OVERLONG) {
				/* Once per line, and only when the LF has not come
				 * in the same feed: not part of the trace. */
				if (over++)
					__builtin_trap();
			} else if (ln.status == LINEREADER_OVERLONG_END) {
				(void)buf_puts(trace, "O;");
			}
			if (ln.status == LINEREADER_LINE || ln.status == LINEREADER_OVERLONG_END)
				over = 0;
		}
		i += k;
	}
	if (linereader_pending(&lr) > max)
		__builtin_trap();
	(void)buf_printf(trace, "P%zu", linereader_pending(&lr));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf whole, split;
	size_t max, chunk;

	if (size < 1)
		return 0;
	max = LINEREADER_MAX_MIN + data[0] % (FZ_LINE_MAX_CAP - LINEREADER_MAX_MIN + 1);
	chunk = 1 + (data[0] >> 4);
	buf_init(&whole, FZ_TRACE_MAX);
	buf_init(&split, FZ_TRACE_MAX);
	fz_feed((const char *)data + 1, size - 1, max, 0, &whole);
	fz_feed((const char *)data + 1, size - 1, max, chunk, &split);
	if (whole.len != split.len || (whole.len && memcmp(whole.data, split.data, whole.len)))
		__builtin_trap();
	buf_free(&whole);
	buf_free(&split);
	return 0;
}
