/* SPDX-License-Identifier: MIT */
/*
 * Tests for core/buf.c's printf: output longer than its stack buffer (the
 * heap path), and the promise that an error (the cap) leaves nothing
 * behind, table-driven: each case appends to a buffer that already holds a
 * prefix, with a cap, and wants the result and the contents.
 */
#include <criterion/criterion.h>
#include <errno.h>
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
