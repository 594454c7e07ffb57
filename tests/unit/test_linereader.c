/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/linereader.c: table-driven inputs, each replayed whole,
 * one byte at a time and in other chunk sizes, every chunk from its own
 * exact-size heap copy (ASan catches a read past it). What comes out must not
 * depend on the split, but for where an overlong line is first noticed.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/linereader.h"

#define LR_OUT_MAX 512

struct lr_case {
	const char *name;
	const char *in;
	size_t in_len;       /* 0: strlen */
	size_t max;
	const char *want;    /* L[flags]:text| per line, E| per refused line */
	size_t want_pending; /* linereader_pending() at the end */
	unsigned want_early; /* OVERLONG events when fed one byte at a time */
};

static const struct lr_case lr_cases[] = {
	{ "crlf", "abc\r\n", 0, 8, "L:abc|", 0, 0 },
	{ "bare_lf", "abc\n", 0, 8, "Lf:abc|", 0, 0 },
	{ "bare_cr", "a\rb\r\n", 0, 8, "Lc:a\\rb|", 0, 0 },
	{ "cr_cr_lf", "a\r\r\n", 0, 8, "Lc:a\\r|", 0, 0 },
	{ "nul", "a\0b\r\n", 5, 8, "Ln:a\\0b|", 0, 0 },
	{ "nul_bare_cr_bare_lf", "\0\r\n\r\0\n", 6, 8, "Ln:\\0|Lncf:\\r\\0|", 0, 0 },
	{ "empty_crlf", "\r\n", 0, 8, "L:|", 0, 0 },
	{ "empty_lf", "\n\n", 0, 8, "Lf:|Lf:|", 0, 0 },
	{ "two_lines", "a\r\nb\n", 0, 8, "L:a|Lf:b|", 0, 0 },
	{ "exactly_max", "abcdef\r\n", 0, 8, "L:abcdef|", 0, 0 },
	{ "max_plus_one", "abcdefg\r\n", 0, 8, "E|", 0, 1 },
	{ "max_bare_lf", "abcdefg\n", 0, 8, "Lf:abcdefg|", 0, 0 },
	{ "overlong_then_ok", "abcdefghijkl\r\nok\r\n", 0, 8, "E|L:ok|", 0, 1 },
	{ "two_overlong", "0123456789\n0123456789\nx\n", 0, 8, "E|E|Lf:x|", 0, 2 },
	{ "overlong_no_lf", "abcdefghij", 0, 8, "", 1, 1 },
	{ "full_without_lf", "abcdefgh", 0, 8, "", 1, 1 },
	{ "one_short_of_full", "abcdefg", 0, 8, "", 7, 0 },
	{ "incomplete", "abc", 0, 8, "", 3, 0 },
	{ "incomplete_cr", "abc\r", 0, 8, "", 4, 0 },
	{ "line_then_incomplete", "a\r\nbc", 0, 8, "L:a|", 2, 0 },
	{ "min_limit", "x\n\r\nxy\n", 0, LINEREADER_MAX_MIN, "Lf:x|L:|E|", 0, 1 },
	{ "smtp_command", "EHLO client.test\r\nMAIL FROM:<a@b.test>\r\n", 0, 512,
		"L:EHLO client.test|L:MAIL FROM:<a@b.test>|", 0, 0 },
};

/* Append what one feed produced to out. */
static void lr_render(const struct linereader_line *ln, char *out, unsigned *early)
{
	size_t o = strlen(out);

	switch (ln->status) {
	case LINEREADER_LINE:
		o += (size_t)snprintf(out + o, LR_OUT_MAX - o, "L%s%s%s:",
				ln->flags & LINEREADER_F_NUL ? "n" : "",
				linereader_bare_cr(ln) ? "c" : "",
				ln->flags & LINEREADER_F_BARE_LF ? "f" : "");
		for (size_t i = 0; i < ln->len && o + 3 < LR_OUT_MAX; i++) {
			if (ln->p[i] == '\r')
				o += (size_t)snprintf(out + o, LR_OUT_MAX - o, "\\r");
			else if (ln->p[i] == '\0')
				o += (size_t)snprintf(out + o, LR_OUT_MAX - o, "\\0");
			else
				out[o++] = ln->p[i];
		}
		snprintf(out + o, LR_OUT_MAX - o, "|");
		break;
	case LINEREADER_OVERLONG_END:
		snprintf(out + o, LR_OUT_MAX - o, "E|");
		break;
	case LINEREADER_OVERLONG:
		(*early)++;
		break;
	case LINEREADER_AGAIN:
		cr_assert_null(ln->p);
		break;
	}
}

/* Feed c->in in chunks of chunk octets (0: whole). */
static void lr_run(const struct lr_case *c, size_t chunk, unsigned *early)
{
	size_t n = c->in_len ? c->in_len : strlen(c->in);
	char *buf = malloc(c->max);
	char out[LR_OUT_MAX] = "";
	struct linereader lr;
	size_t off = 0;

	cr_assert_not_null(buf);
	linereader_init(&lr, buf, c->max);
	*early = 0;
	while (off < n) {
		size_t k = chunk && n - off > chunk ? chunk : n - off;
		char *piece = malloc(k);

		cr_assert_not_null(piece);
		memcpy(piece, c->in + off, k);
		/* Feed the piece until it is used up, as a session does. */
		for (size_t used = 0; used < k;) {
			struct linereader_line ln;
			size_t u = linereader_feed(&lr, piece + used, k - used, &ln);

			cr_assert_gt(u, 0, "%s: no progress", c->name);
			cr_assert_lt(lr.len, c->max, "%s: buffered past the limit", c->name);
			lr_render(&ln, out, early);
			used += u;
		}
		free(piece);
		off += k;
	}
	cr_expect_str_eq(out, c->want, "%s (chunk %zu): got \"%s\"", c->name, chunk, out);
	cr_expect_eq(linereader_pending(&lr), c->want_pending, "%s (chunk %zu): pending %zu",
			c->name, chunk, linereader_pending(&lr));
	free(buf);
}

Test(linereader, table_whole_bytewise_chunks)
{
	static const size_t chunks[] = { 0, 1, 2, 3, 7 };

	for (size_t i = 0; i < sizeof(lr_cases) / sizeof(lr_cases[0]); i++) {
		for (size_t j = 0; j < sizeof(chunks) / sizeof(chunks[0]); j++) {
			unsigned early;

			lr_run(&lr_cases[i], chunks[j], &early);
			if (chunks[j] == 1)
				cr_expect_eq(early, lr_cases[i].want_early,
						"%s: %u early refusals byte by byte",
						lr_cases[i].name, early);
		}
	}
}

/* A line that arrives whole is handed out in place; one split across feeds
 * comes from the owner's buffer. */
Test(linereader, zero_copy_and_gather)
{
	char buf[16];
	const char in[] = "abc\r\n";
	struct linereader lr;
	struct linereader_line ln;

	linereader_init(&lr, buf, sizeof(buf));
	cr_assert_eq(linereader_feed(&lr, in, 5, &ln), 5);
	cr_assert_eq(ln.status, LINEREADER_LINE);
	cr_expect_eq(ln.p, in);
	cr_assert_eq(linereader_feed(&lr, in, 2, &ln), 2);
	cr_assert_eq(ln.status, LINEREADER_AGAIN);
	cr_assert_eq(linereader_feed(&lr, in + 2, 3, &ln), 3);
	cr_assert_eq(ln.status, LINEREADER_LINE);
	cr_expect_eq(ln.p, buf);
	cr_expect_eq(ln.len, 3);
}

/* Input after the LF stays with the caller; reset forgets a partial line
 * and a refused one. */
Test(linereader, stops_after_one_line_and_reset)
{
	char buf[8];
	struct linereader lr;
	struct linereader_line ln;

	linereader_init(&lr, buf, sizeof(buf));
	cr_expect_eq(linereader_feed(&lr, "a\nbcd", 5, &ln), 2);
	cr_expect_eq(ln.status, LINEREADER_LINE);
	cr_expect_eq(linereader_feed(&lr, "bcd", 3, &ln), 3);
	cr_expect_eq(linereader_pending(&lr), 3);
	linereader_reset(&lr);
	cr_expect_eq(linereader_pending(&lr), 0);
	cr_expect_eq(linereader_feed(&lr, "0123456789", 10, &ln), 10);
	cr_expect_eq(ln.status, LINEREADER_OVERLONG);
	linereader_reset(&lr);
	cr_expect_eq(linereader_feed(&lr, "x\n", 2, &ln), 2);
	cr_expect_eq(ln.status, LINEREADER_LINE);
	cr_expect_eq(ln.len, 1);
}
