/* SPDX-License-Identifier: MIT */
/*
 * Tests for core/datefmt.c: RFC 5322 3.3 date-time and ISO 8601 in UTC for
 * known instants (the epoch, a leap day, the last second of 9999, a date
 * before 1970), -EINVAL for a time outside years 0..9999 (a header must
 * never carry a five-digit year), and -EOVERFLOW, never a cut date, for a
 * buffer one byte short. Table-driven.
 * (gmtime_r() failing on a year beyond int is -EINVAL too.)
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <time.h>

#include "core/datefmt.h"

#define DF_BUF 64

struct df_case {
	const char *name;
	time_t t;
	const char *want_5322;   /* NULL: -EINVAL */
	const char *want_8601;
};

static const struct df_case df_cases[] = {
	{ "epoch", 0, "Thu, 1 Jan 1970 00:00:00 +0000", "1970-01-01T00:00:00Z" },
	{ "leap_day", 951782400, "Tue, 29 Feb 2000 00:00:00 +0000", "2000-02-29T00:00:00Z" },
	{ "every_field", 1700000000, "Tue, 14 Nov 2023 22:13:20 +0000", "2023-11-14T22:13:20Z" },
	{ "december_saturday", 1703894399, "Fri, 29 Dec 2023 23:59:59 +0000", "2023-12-29T23:59:59Z" },
	{ "before_1970", -86400, "Wed, 31 Dec 1969 00:00:00 +0000", "1969-12-31T00:00:00Z" },
	{ "last_second_of_9999", 253402300799, "Fri, 31 Dec 9999 23:59:59 +0000", "9999-12-31T23:59:59Z" },
	{ "year_10000", 253402300800, NULL, NULL },
	{ "before_year_0", -62167219201, NULL, NULL },
	{ "beyond_gmtime", (time_t)1 << 62, NULL, NULL },  /* gmtime_r() fails */
};

Test(datefmt, known_instants_and_range)
{
	for (size_t i = 0; i < sizeof(df_cases) / sizeof(df_cases[0]); i++) {
		const struct df_case *k = &df_cases[i];
		char out[DF_BUF] = "";

		int r = datefmt_rfc5322(out, sizeof(out), k->t);
		if (k->want_5322) {
			cr_expect_eq(r, 0, "%s: %d", k->name, r);
			cr_expect_str_eq(out, k->want_5322, "%s", k->name);
		} else {
			cr_expect_eq(r, -EINVAL, "%s: %d (%s)", k->name, r, out);
		}
		out[0] = '\0';
		r = datefmt_iso8601(out, sizeof(out), k->t);
		if (k->want_8601) {
			cr_expect_eq(r, 0, "%s: %d", k->name, r);
			cr_expect_str_eq(out, k->want_8601, "%s", k->name);
		} else {
			cr_expect_eq(r, -EINVAL, "%s: %d (%s)", k->name, r, out);
		}
	}
}

/* Exactly the size needed fits; one byte less is -EOVERFLOW. */
Test(datefmt, buffer_one_short_overflows)
{
	const char *w5322 = df_cases[2].want_5322, *w8601 = df_cases[2].want_8601;
	char out[DF_BUF];

	cr_expect_eq(datefmt_rfc5322(out, strlen(w5322) + 1, df_cases[2].t), 0);
	cr_expect_str_eq(out, w5322);
	cr_expect_eq(datefmt_rfc5322(out, strlen(w5322), df_cases[2].t), -EOVERFLOW);
	cr_expect_eq(datefmt_iso8601(out, strlen(w8601) + 1, df_cases[2].t), 0);
	cr_expect_str_eq(out, w8601);
	cr_expect_eq(datefmt_iso8601(out, strlen(w8601), df_cases[2].t), -EOVERFLOW);
}
