/* SPDX-License-Identifier: MIT */
/*
 * Tests for core/buf.c's printf: output longer than its stack buffer (the
 * heap path), and the promise that an error (the cap) leaves nothing
 * behind, table-driven: each case appends to a buffer that already holds a
 * prefix, with a cap, and wants the result and the contents. The same for
 * the decimal appenders (buf_append_u64/i64), byte for byte.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "core/buf.h"

#define T_PREFIX "250-"
#define T_LONG 3000             /* past buf.c's stack buffer */
#define T_CAP_SMALL 64

struct t_case {
	const char *name;
	size_t max;                 /* the buffer's cap */
	size_t fill;                /* bytes of 'x' formatted with %.*s */
	int want_rc;
};

static const struct t_case t_cases[] = {
	{ "short, no cap", 0, 10, 0 },
	{ "long, no cap (heap path)", 0, T_LONG, 0 },
	{ "long, fits the cap", sizeof(T_PREFIX) - 1 + T_LONG + 2, T_LONG, 0 },
	{ "long, over the cap by one", sizeof(T_PREFIX) - 1 + T_LONG + 1, T_LONG, -E2BIG },
	{ "short, over a small cap", T_CAP_SMALL, T_CAP_SMALL, -E2BIG },
};

Test(buf, printf_table)
{
	static char xs[T_LONG + 1];

	memset(xs, 'x', T_LONG);
	for (size_t i = 0; i < sizeof(t_cases) / sizeof(t_cases[0]); i++) {
		const struct t_case *c = &t_cases[i];
		struct buf b;
		int rc;

		buf_init(&b, c->max);
		cr_assert_eq(buf_puts(&b, T_PREFIX), 0, "%s", c->name);
		rc = buf_printf(&b, "%.*s\r\n", (int)c->fill, xs);
		cr_expect_eq(rc, c->want_rc, "%s: rc %d", c->name, rc);
		if (rc == 0) {
			cr_expect_eq(b.len, sizeof(T_PREFIX) - 1 + c->fill + 2, "%s", c->name);
			cr_expect_eq(memcmp(b.data, T_PREFIX, sizeof(T_PREFIX) - 1), 0, "%s", c->name);
			cr_expect_eq(memcmp(b.data + b.len - 2, "\r\n", 2), 0, "%s", c->name);
			for (size_t k = sizeof(T_PREFIX) - 1; k < b.len - 2; k++)
				cr_assert_eq(b.data[k], 'x', "%s: byte %zu", c->name, k);
		} else {
			/* Nothing half-written: only the prefix is there. */
			cr_expect_eq(b.len, sizeof(T_PREFIX) - 1, "%s", c->name);
			cr_expect_eq(memcmp(b.data, T_PREFIX, b.len), 0, "%s", c->name);
		}
		buf_free(&b);
		cr_expect_null(b.data, "%s", c->name);
		cr_expect_eq(b.len, 0, "%s", c->name);
	}
}

/* Decimal appenders: exact bytes after a prefix, edge values, and the cap
 * (one byte short: nothing added). */
struct t_dec {
	const char *name;
	int is_signed;
	uint64_t u;
	int64_t i;
	const char *want;
};

static const struct t_dec t_decs[] = {
	{ "u 0", 0, 0, 0, "0" },
	{ "u 9", 0, 9, 0, "9" },
	{ "u 10", 0, 10, 0, "10" },
	{ "u 256", 0, 256, 0, "256" },
	{ "u max", 0, UINT64_MAX, 0, "18446744073709551615" },
	{ "i 0", 1, 0, 0, "0" },
	{ "i -1", 1, 0, -1, "-1" },
	{ "i 128", 1, 0, 128, "128" },
	{ "i -10", 1, 0, -10, "-10" },
	{ "i max", 1, 0, INT64_MAX, "9223372036854775807" },
	{ "i min", 1, 0, INT64_MIN, "-9223372036854775808" },
};

static int t_dec_append(struct buf *b, const struct t_dec *c)
{
	return c->is_signed ? buf_append_i64(b, c->i) : buf_append_u64(b, c->u);
}

Test(buf, append_dec_table)
{
	for (size_t i = 0; i < sizeof(t_decs) / sizeof(t_decs[0]); i++) {
		const struct t_dec *c = &t_decs[i];
		size_t plen = sizeof(T_PREFIX) - 1, wlen = strlen(c->want);
		struct buf b;
		int rc;

		/* Room for exactly the number: it fits. */
		buf_init(&b, plen + wlen);
		cr_assert_eq(buf_puts(&b, T_PREFIX), 0, "%s", c->name);
		rc = t_dec_append(&b, c);
		cr_expect_eq(rc, 0, "%s: rc %d", c->name, rc);
		cr_expect_eq(b.len, plen + wlen, "%s: len %zu", c->name, b.len);
		cr_expect_eq(memcmp(b.data, T_PREFIX, plen), 0, "%s", c->name);
		cr_expect_eq(memcmp(b.data + plen, c->want, wlen), 0, "%s: got %.*s",
			     c->name, (int)(b.len - plen), b.data + plen);
		buf_free(&b);

		/* One byte short: -E2BIG and nothing of the number is added. */
		buf_init(&b, plen + wlen - 1);
		cr_assert_eq(buf_puts(&b, T_PREFIX), 0, "%s", c->name);
		rc = t_dec_append(&b, c);
		cr_expect_eq(rc, -E2BIG, "%s short: rc %d", c->name, rc);
		cr_expect_eq(b.len, plen, "%s short: len %zu", c->name, b.len);
		buf_free(&b);
	}
}
