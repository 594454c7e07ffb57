/* SPDX-License-Identifier: MIT */
/* Tests for core/units.c, and that the three layers that read sizes and
 * durations (etrnd.conf through config_set, a Redis row through
 * schema_row_from_fields, etrnctl's options through ctlrow_make and back)
 * accept the same strings and get the same values. Table-driven. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "admin/ctlrow.h"
#include "admin/schema.h"
#include "core/config.h"
#include "core/units.h"

#define MS_S 1000ull
#define MS_DAY (86400ull * MS_S)

struct unit_case {
	const char *in;
	int want_rc;          /* 0, -EINVAL or -ERANGE */
	uint64_t want;
};

static const struct unit_case durations[] = {
	{ "300", 0, 300 * MS_S },            /* a plain number is seconds */
	{ "300s", 0, 300 * MS_S },
	{ "1500ms", 0, 1500 },
	{ "1000ms", 0, 1000 },
	{ "999ms", 0, 999 },
	{ "0", 0, 0 },
	{ "0ms", 0, 0 },
	{ "007s", 0, 7 * MS_S },
	{ "30m", 0, 30 * 60 * MS_S },
	{ "12h", 0, 12 * 3600 * MS_S },
	{ "5d", 0, 5 * MS_DAY },
	{ "49d", 0, 49 * MS_DAY },
	{ "50d", 0, 50 * MS_DAY },
	{ "1w", 0, 7 * MS_DAY },
	{ "7w", 0, 49 * MS_DAY },
	{ "8w", 0, 56 * MS_DAY },
	{ "3650d", 0, 3650 * MS_DAY },       /* UNITS_DURATION_MAX_MS */
	{ "3651d", -ERANGE, 0 },
	{ "522w", -ERANGE, 0 },
	{ "18446744073710s", -ERANGE, 0 },   /* * 1000 would wrap a us count */
	{ "18446744073709551615ms", -ERANGE, 0 },
	{ "99999999999999999999", -ERANGE, 0 },
	{ "99999999999999999999999999999999ms", -ERANGE, 0 },
	{ "", -EINVAL, 0 },
	{ "s", -EINVAL, 0 },
	{ "ms", -EINVAL, 0 },
	{ "5 days", -EINVAL, 0 },
	{ "5 d", -EINVAL, 0 },
	{ " 5d", -EINVAL, 0 },
	{ "5d ", -EINVAL, 0 },
	{ "5D", -EINVAL, 0 },                /* durations are lower case only */
	{ "5M", -EINVAL, 0 },                /* minutes or months? */
	{ "5MS", -EINVAL, 0 },
	{ "-1d", -EINVAL, 0 },
	{ "+5d", -EINVAL, 0 },
	{ "1.5h", -EINVAL, 0 },
	{ "0x10", -EINVAL, 0 },
	{ "5dd", -EINVAL, 0 },
	{ "5s5", -EINVAL, 0 },
	{ "5y", -EINVAL, 0 },
	{ "forever", -EINVAL, 0 },
	{ "5\tm", -EINVAL, 0 },
};

static const struct unit_case sizes[] = {
	{ "0", 0, 0 },
	{ "1024", 0, 1024 },
	{ "1048576", 0, 1048576 },
	{ "64k", 0, 64ull << 10 },
	{ "64K", 0, 64ull << 10 },
	{ "64kB", 0, 64ull << 10 },
	{ "64KiB", 0, 64ull << 10 },
	{ "50M", 0, 50ull << 20 },
	{ "50m", 0, 50ull << 20 },
	{ "50MB", 0, 50ull << 20 },
	{ "50MiB", 0, 50ull << 20 },
	{ "1G", 0, 1ull << 30 },
	{ "1g", 0, 1ull << 30 },
	{ "2T", 0, 2ull << 40 },
	{ "1024T", 0, 1ull << 50 },          /* UNITS_SIZE_MAX */
	{ "1125899906842624", 0, 1ull << 50 },
	{ "1125899906842625", -ERANGE, 0 },
	{ "1025T", -ERANGE, 0 },
	{ "16777216G", -ERANGE, 0 },         /* 2^64: would wrap to 0 */
	{ "18446744073709551616", -ERANGE, 0 },
	{ "99999999999999999999", -ERANGE, 0 },
	{ "", -EINVAL, 0 },
	{ "k", -EINVAL, 0 },
	{ "64kb", -EINVAL, 0 },              /* bits or bytes? */
	{ "64KIB", -EINVAL, 0 },
	{ "64kk", -EINVAL, 0 },
	{ "64 k", -EINVAL, 0 },
	{ " 64k", -EINVAL, 0 },
	{ "64k ", -EINVAL, 0 },
	{ "64B", -EINVAL, 0 },
	{ "64P", -EINVAL, 0 },
	{ "-1", -EINVAL, 0 },
	{ "+1", -EINVAL, 0 },
	{ "1.5G", -EINVAL, 0 },
	{ "0x400", -EINVAL, 0 },
	{ "lots", -EINVAL, 0 },
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

typedef int (*units_fn)(const char *s, uint64_t *out, char *why, size_t wl);

/* Each case in an exactly sized heap copy, so ASan sees any read past the
 * NUL; and every prefix of it, which must not crash either. */
static void run_units(const struct unit_case *t, size_t n, units_fn fn, const char *what)
{
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(t[i].in);
		char *s = malloc(len + 1), why[UNITS_WHY_MAX];
		uint64_t v = 12345;
		int rc;

		cr_assert_not_null(s);
		memcpy(s, t[i].in, len + 1);
		why[0] = '\0';
		rc = fn(s, &v, why, sizeof(why));
		cr_expect_eq(rc, t[i].want_rc, "%s [%s]: rc %d want %d (%s)", what, t[i].in, rc,
			     t[i].want_rc, why);
		if (t[i].want_rc == 0)
			cr_expect_eq(v, t[i].want, "%s [%s]: %llu want %llu", what, t[i].in,
				     (unsigned long long)v, (unsigned long long)t[i].want);
		else
			cr_expect(v == 12345 && why[0], "%s [%s]: output touched or no reason", what,
				  t[i].in);
		for (size_t k = 0; k < len; k++) {
			s[k] = '\0';
			(void)fn(s, &v, NULL, 0);
			s[k] = t[i].in[k];
		}
		free(s);
	}
}

Test(units, durations)
{
	run_units(durations, N(durations), units_parse_duration, "duration");
}

Test(units, sizes)
{
	run_units(sizes, N(sizes), units_parse_size, "size");
}

Test(units, reasons)
{
	char why[UNITS_WHY_MAX];
	uint64_t v;

	cr_expect_eq(units_parse_duration("5 days", &v, why, sizeof(why)), -EINVAL);
	cr_expect(strstr(why, "not a duration") != NULL, "%s", why);
	cr_expect_eq(units_parse_duration("3651d", &v, why, sizeof(why)), -ERANGE);
	cr_expect_str_eq(why, "too long (at most 3650d)");
	cr_expect_eq(units_parse_size("lots", &v, why, sizeof(why)), -EINVAL);
	cr_expect(strstr(why, "not a size") != NULL, "%s", why);
	cr_expect_eq(units_parse_size("1025T", &v, why, sizeof(why)), -ERANGE);
	cr_expect_str_eq(why, "too large (at most 1024T)");
	/* A short buffer is truncated, not overrun. */
	cr_expect_eq(units_parse_size("lots", &v, why, 4), -EINVAL);
	cr_expect_str_eq(why, "not");
}

/* ---- the same string in all three layers ------------------------------- */

struct layers {
	int cfg_ok, row_ok, ctl_ok;
	uint64_t cfg, row, ctl;
	char cfg_err[CONFIG_ERR_MAX], row_err[SCHEMA_WHY_MAX * 2], ctl_err[512];
};

/* Field f of a Redis row holding v, as the daemon reads it: the value, or
 * UINT64_MAX when the row parser calls it bad. */
static uint64_t row_value(const char *f, const char *v, char *err, size_t el)
{
	struct domtab_row row;
	struct cidr cidrs[DOMTAB_CIDR_MAX];
	const char *fv[2] = { f, v };

	if (schema_row_from_fields(&row, cidrs, "x.test", fv, 2, err, el))
		return UINT64_MAX;
	return !strcmp(f, SCHEMA_F_MAX_HOLD) ? row.max_hold_ms : row.quota_bytes;
}

/* etrnctl: the option through ctlrow_make, then what it would write read
 * back as the daemon reads it. */
static void ctl_layer(struct layers *l, const char *field, const char *in)
{
	struct ctlrow_opts o = { 0 };
	struct ctlrow *r = malloc(sizeof(*r));
	char err[SCHEMA_WHY_MAX * 2];

	cr_assert_not_null(r);
	if (!strcmp(field, SCHEMA_F_MAX_HOLD))
		o.max_hold = in;
	else
		o.quota = in;
	l->ctl_ok = ctlrow_make(r, "x.test", &o, l->ctl_err, sizeof(l->ctl_err)) == 0;
	for (int i = 0; l->ctl_ok && i < r->n; i++)
		if (!strcmp(r->f[i], field))
			l->ctl = row_value(field, r->v[i], err, sizeof(err));
	free(r);
}

static void run_layers(struct layers *l, const char *cfg_key, const char *field, const char *in)
{
	struct config c;

	memset(l, 0, sizeof(*l));
	config_defaults(&c);
	l->cfg_ok = config_set(&c, cfg_key, in, "t", l->cfg_err, sizeof(l->cfg_err)) == 0;
	l->cfg = !strcmp(cfg_key, "max_hold") ? c.max_hold_ms : c.message_size_limit;
	config_free(&c);
	l->row = row_value(field, in, l->row_err, sizeof(l->row_err));
	l->row_ok = l->row != UINT64_MAX;
	ctl_layer(l, field, in);
}

/* max_hold has one range everywhere (CONFIG_MAX_HOLD_*), so every string
 * must get the same answer from all three, and it must be units.h's answer
 * cut to that range. ("" is left out: to etrnctl it means "not given".) */
Test(units, max_hold_same_in_config_redis_and_etrnctl)
{
	for (size_t i = 0; i < N(durations); i++) {
		const struct unit_case *t = &durations[i];
		int want = t->want_rc == 0 && t->want >= CONFIG_MAX_HOLD_MIN_MS &&
			   t->want <= CONFIG_MAX_HOLD_MAX_MS;
		struct layers l;

		if (!t->in[0])
			continue;
		run_layers(&l, "max_hold", SCHEMA_F_MAX_HOLD, t->in);
		cr_expect_eq(l.cfg_ok, want, "config [%s]: %s", t->in, l.cfg_err);
		cr_expect_eq(l.row_ok, want, "redis row [%s]: %s", t->in, l.row_err);
		cr_expect_eq(l.ctl_ok, want, "etrnctl [%s]: %s", t->in, l.ctl_err);
		if (want) {
			cr_expect_eq(l.cfg, t->want, "config [%s]", t->in);
			cr_expect_eq(l.row, t->want, "redis row [%s]", t->in);
			cr_expect_eq(l.ctl, t->want, "etrnctl [%s]", t->in);
		} else if (t->want_rc == -EINVAL) {
			cr_expect(strstr(l.row_err, "not a duration") && strstr(l.ctl_err, "not a duration"),
				  "[%s]: %s / %s", t->in, l.row_err, l.ctl_err);
		}
	}
}

/* Sizes: the same grammar and values everywhere; the config key
 * (message_size_limit) also has its own range. */
Test(units, sizes_same_in_config_redis_and_etrnctl)
{
	for (size_t i = 0; i < N(sizes); i++) {
		const struct unit_case *t = &sizes[i];
		int ok = t->want_rc == 0;
		int cfg_want = ok && t->want >= 1024 && t->want <= (1ull << 30);
		struct layers l;

		if (!t->in[0])
			continue;
		run_layers(&l, "message_size_limit", SCHEMA_F_QUOTA, t->in);
		cr_expect_eq(l.cfg_ok, cfg_want, "config [%s]: %s", t->in, l.cfg_err);
		cr_expect_eq(l.row_ok, ok, "redis row [%s]: %s", t->in, l.row_err);
		cr_expect_eq(l.ctl_ok, ok, "etrnctl [%s]: %s", t->in, l.ctl_err);
		if (cfg_want)
			cr_expect_eq(l.cfg, t->want, "config [%s]", t->in);
		if (ok) {
			cr_expect_eq(l.row, t->want, "redis row [%s]", t->in);
			cr_expect_eq(l.ctl, t->want, "etrnctl [%s]", t->in);
		}
	}
}
