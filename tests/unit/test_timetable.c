/* SPDX-License-Identifier: MIT */
/* Tests for core/timetable.c: parsing (the canonical form back, each
 * refusal's reason), timetable_next() in UTC and across Europe/Berlin's
 * daylight-saving days (run when the zone is installed, else skipped with a
 * printed reason), the window boundaries, and timetable_active(). The
 * clock is never read: every time is given. Table-driven. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/timetable.h"

#define US 1000000ull
#define BERLIN "Europe/Berlin"
#define ZONEINFO "/usr/share/zoneinfo/"

static void tz(const char *name)
{
	cr_assert_eq(setenv("TZ", name, 1), 0);
	tzset();
}

/* 1 when zone name is installed; otherwise says why the case is skipped. */
static int have_zone(const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "%s%s", ZONEINFO, name);
	if (access(path, R_OK) == 0)
		return 1;
	printf("test_timetable: %s%s not readable: the %s cases are skipped\n", ZONEINFO, name,
	       name);
	return 0;
}

/* "YYYY-MM-DD HH:MM[:SS]" in the TZ's wall clock (mktime, DST guessed), or
 * with " +HHMM"/" -HHMM" at that UTC offset (for the hour that exists
 * twice). Seconds since the epoch. */
static time_t at(const char *s)
{
	struct tm tm = { 0 };
	int y, mo, d, h, mi, sec = 0, off = 0, n = 0;
	char sign = 0;

	if (sscanf(s, "%d-%d-%d %d:%d:%d%n", &y, &mo, &d, &h, &mi, &sec, &n) < 6) {
		sec = 0;
		cr_assert(sscanf(s, "%d-%d-%d %d:%d%n", &y, &mo, &d, &h, &mi, &n) >= 5, "%s", s);
	}
	if (sscanf(s + n, " %c%4d", &sign, &off) == 2) {
		tm = (struct tm){ .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
				  .tm_hour = h, .tm_min = mi, .tm_sec = sec };
		return timegm(&tm) - (sign == '-' ? -1 : 1) * (off / 100 * 3600 + off % 100 * 60);
	}
	tm = (struct tm){ .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
			  .tm_min = mi, .tm_sec = sec, .tm_isdst = -1 };
	return mktime(&tm);
}

/* t as "YYYY-MM-DD HH:MM:SS +HHMM" in the TZ, for messages. */
static const char *show(time_t t, char *buf, size_t len)
{
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S %z", &tm);
	return buf;
}

static void parse_ok(struct timetable *t, const char *s)
{
	char why[128];

	cr_assert_eq(timetable_parse(t, s, strlen(s), why, sizeof(why)), 0, "%s: %s", s, why);
}

/* Parsing: each text from a heap buffer of exactly its length (no NUL
 * after it, so ASan sees an over-read), the canonical form back, and that
 * form parsed again gives the same timetable. */
struct parse_case {
	const char *in;
	const char *want;       /* canonical form, or the reason's start */
	int want_rc;
};

static const struct parse_case parse_cases[] = {
	{ "every 15m", "every 15m", 0 },
	{ "  every \t 15m  ", "every 15m", 0 },
	{ "EVERY 900", "every 15m", 0 },
	{ "every 1440m", "every 1d", 0 },
	{ "every 90s", "every 90s", 0 },
	{ "every 60000ms", "every 1m", 0 },
	{ "every 7m", "every 7m", 0 },
	{ "08:00-18:00 every 5m, every 1h, after-outbound",
	  "08:00-18:00 every 5m, every 1h, after-outbound", 0 },
	{ "8:00-18:00 Every 300s,after-outbound", "08:00-18:00 every 5m, after-outbound", 0 },
	{ "22:00-06:00 every 30m", "22:00-06:00 every 30m", 0 },
	{ "00:00-24:00 every 2h", "00:00-24:00 every 2h", 0 },
	{ "22:00-0:00 every 1h", "22:00-00:00 every 1h", 0 },
	{ "every 1h, every 1h, every 60m", "every 1h", 0 },
	{ "after-outbound, after-outbound", "after-outbound", 0 },
	{ "After-Outbound", "after-outbound", 0 },
	{ "every 1m, every 2m, every 3m, every 4m, every 5m, every 6m, every 7m, every 8m, every 8m",
	  "every 1m, every 2m, every 3m, every 4m, every 5m, every 6m, every 7m, every 8m", 0 },
	{ "", "empty schedule", -1 },
	{ " \t ", "empty schedule", -1 },
	{ "every 10s", "every 10s: under the minimum of 1m", -1 },
	{ "every 59s", "every 59s: under the minimum of 1m", -1 },
	{ "every 0", "every 0: under the minimum of 1m", -1 },
	{ "every 2d", "every 2d: over the maximum of 1d", -1 },
	{ "every 86401", "every 86401: over the maximum of 1d", -1 },
	{ "every 61500ms", "every 61500ms: not a whole number of seconds", -1 },
	{ "every 5x", "every 5x: not a duration (want", -1 },
	{ "every 5M", "every 5M: not a duration", -1 },
	{ "every 99999999999999999999d", "every 99999999999999999999d: too long", -1 },
	{ "every 1h\x01", "every 1h\\x01: not a duration", -1 },
	{ "every", "\"every\": want every D", -1 },
	{ "every 5m 6m", "\"every 5m 6m\": want every D", -1 },
	{ "after-outbound now", "\"after-outbound now\": want after-outbound alone", -1 },
	{ "hourly", "unknown rule \"hourly\" (want every D, HH:MM-HH:MM every D or after-outbound)", -1 },
	{ "every 1h; every 2h", "\"every 1h; every 2h\": want every D", -1 },
	{ "every 1h;", "every 1h;: not a duration", -1 },
	{ "18:00-18:00 every 5m", "window 18:00-18:00 is empty", -1 },
	{ "25:00-26:00 every 5m", "bad window \"25:00-26:00\" (want HH:MM-HH:MM from 00:00 to 23:59, 24:00 as an end)", -1 },
	{ "24:00-06:00 every 5m", "bad window \"24:00-06:00\"", -1 },
	{ "08:60-09:00 every 5m", "bad window \"08:60-09:00\"", -1 },
	{ "08:00-24:01 every 5m", "bad window \"08:00-24:01\"", -1 },
	{ "0800-0900 every 5m", "bad window \"0800-0900\"", -1 },
	{ "08:00 every 5m", "bad window \"08:00\"", -1 },
	{ "08:00-09:00", "\"08:00-09:00\": want HH:MM-HH:MM every D", -1 },
	{ "08:00-09:00 each 5m", "window 08:00-09:00: want \"every D\" after it, got \"each\"", -1 },
	{ "08:00-09:00 every 30s", "every 30s: under the minimum of 1m", -1 },
	{ "every 1h,", "empty rule (two commas, or one at an end)", -1 },
	{ ",every 1h", "empty rule", -1 },
	{ "every 1h,,every 2h", "empty rule", -1 },
	{ "every 1m, every 2m, every 3m, every 4m, every 5m, every 6m, every 7m, every 8m, every 9m",
	  "more than 8 rules", -1 },
	{ "every 1h\n", "every 1h\\x0a: not a duration", -1 },
	{ "every 1h, a b c d e", "unknown rule \"a b c d e\"", -1 },
};

Test(timetable, parse_and_format)
{
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct parse_case *c = &parse_cases[i];
		size_t n = strlen(c->in);
		char *in = malloc(n ? n : 1), why[256] = "", text[TIMETABLE_TEXT_MAX];
		struct timetable t, back;
		int rc;

		cr_assert_not_null(in);
		memcpy(in, c->in, n);
		rc = timetable_parse(&t, in, n, why, sizeof(why));
		cr_expect_eq(rc, c->want_rc, "case %zu [%s]: rc %d (%s)", i, c->in, rc, why);
		if (rc == 0 && c->want_rc == 0) {
			cr_expect_eq(timetable_format(&t, text, sizeof(text)), strlen(c->want),
				     "case %zu", i);
			cr_expect_str_eq(text, c->want, "case %zu [%s]", i, c->in);
			parse_ok(&back, text);
			cr_expect(memcmp(&back, &t, sizeof(t)) == 0, "case %zu: round trip", i);
		} else if (rc != 0) {
			cr_expect(strncmp(why, c->want, strlen(c->want)) == 0,
				  "case %zu [%s]: got [%s], want prefix [%s]", i, c->in, why, c->want);
		}
		free(in);
	}
}

/* NUL inside the given length is an unknown byte, never the end; a why of
 * NULL or size 0 is allowed; the format is cut to outlen with a NUL. */
Test(timetable, nul_null_why_and_short_output)
{
	static const char nul[] = "every 1h\0, every 2h";
	struct timetable t;
	char out[8], why[64];

	cr_expect_eq(timetable_parse(&t, nul, sizeof(nul) - 1, why, sizeof(why)), -1);
	cr_expect_str_eq(why, "every 1h\\x00: not a duration");
	cr_expect_eq(timetable_parse(&t, "bad", 3, NULL, 0), -1);
	cr_expect_eq(timetable_parse(&t, "every 2h", 5, why, sizeof(why)), -1, "cut to \"every\"");
	parse_ok(&t, "08:00-18:00 every 5m");
	cr_expect_eq(timetable_format(&t, out, sizeof(out)), sizeof(out) - 1);
	cr_expect_str_eq(out, "08:00-1");
	cr_expect_eq(timetable_format(&t, out, 0), 0);
}

Test(timetable, kinds)
{
	struct timetable t;

	parse_ok(&t, "after-outbound");
	cr_expect(timetable_after_outbound(&t));
	cr_expect(!timetable_timed(&t));
	cr_expect_eq(timetable_next(&t, 1700000000 * US), 0, "no time rule: no next");
	cr_expect(!timetable_active(&t, 1700000000 * US));
	parse_ok(&t, "every 1h");
	cr_expect(!timetable_after_outbound(&t));
	cr_expect(timetable_timed(&t));
	parse_ok(&t, "22:00-06:00 every 1h, after-outbound");
	cr_expect(timetable_after_outbound(&t));
	cr_expect(timetable_timed(&t));
}

/* next(): a schedule, a time, the next run (both "YYYY-MM-DD HH:MM[:SS]"
 * in the case's zone; a run is at a whole second, after_us may not be). */
struct next_case {
	const char *sched;
	const char *after;
	unsigned after_frac_us;
	const char *want;
};

static void run_next_cases(const struct next_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct next_case *c = &cases[i];
		struct timetable t;
		uint64_t after = (uint64_t)at(c->after) * US + c->after_frac_us;
		uint64_t got, want = (uint64_t)at(c->want) * US;
		char b1[64], b2[64];

		parse_ok(&t, c->sched);
		got = timetable_next(&t, after);
		cr_expect_eq(got, want, "case %zu [%s] after %s: got %s, want %s", i, c->sched,
			     c->after, show((time_t)(got / US), b1, sizeof(b1)),
			     show((time_t)(want / US), b2, sizeof(b2)));
	}
}

Test(timetable, next_utc)
{
	static const struct next_case cases[] = {
		/* every 15m: the quarter hours, strictly after */
		{ "every 15m", "2026-06-10 10:07", 0, "2026-06-10 10:15" },
		{ "every 15m", "2026-06-10 10:15", 0, "2026-06-10 10:30" },
		{ "every 15m", "2026-06-10 10:14:59", 999999, "2026-06-10 10:15" },
		{ "every 15m", "2026-06-10 10:15", 1, "2026-06-10 10:30" },
		{ "every 15m", "2026-06-10 23:50", 0, "2026-06-11 00:00" },
		{ "every 15m", "2026-12-31 23:59:59", 0, "2027-01-01 00:00" },
		/* every 7m does not divide the day: 23:55 is the last, then
		 * the count starts again at midnight */
		{ "every 7m", "2026-06-10 23:50", 0, "2026-06-10 23:55" },
		{ "every 7m", "2026-06-10 23:55", 0, "2026-06-11 00:00" },
		{ "every 7m", "2026-06-11 00:00", 0, "2026-06-11 00:07" },
		{ "every 7m", "2026-06-11 01:00", 0, "2026-06-11 01:03" },
		{ "every 1d", "2026-06-10 00:00", 0, "2026-06-11 00:00" },
		{ "every 1d", "2026-06-09 23:59:59", 0, "2026-06-10 00:00" },
		/* a window inside a day: FROM is a run, TO is not */
		{ "08:00-18:00 every 5m", "2026-06-10 07:00", 0, "2026-06-10 08:00" },
		{ "08:00-18:00 every 5m", "2026-06-10 07:59:59", 999999, "2026-06-10 08:00" },
		{ "08:00-18:00 every 5m", "2026-06-10 08:00", 0, "2026-06-10 08:05" },
		{ "08:00-18:00 every 5m", "2026-06-10 17:54", 0, "2026-06-10 17:55" },
		{ "08:00-18:00 every 5m", "2026-06-10 17:55", 0, "2026-06-11 08:00" },
		{ "08:00-18:00 every 5m", "2026-06-10 18:00", 0, "2026-06-11 08:00" },
		{ "08:00-18:00 every 5m", "2026-06-10 23:59", 0, "2026-06-11 08:00" },
		{ "08:00-09:00 every 25m", "2026-06-10 08:30", 0, "2026-06-10 08:50" },
		{ "08:00-09:00 every 25m", "2026-06-10 08:50", 0, "2026-06-11 08:00" },
		{ "08:00-09:00 every 1h", "2026-06-10 08:00", 0, "2026-06-11 08:00" },
		{ "00:00-24:00 every 1h", "2026-06-10 23:30", 0, "2026-06-11 00:00" },
		{ "22:00-00:00 every 1h", "2026-06-10 22:00", 0, "2026-06-10 23:00" },
		{ "22:00-00:00 every 1h", "2026-06-10 23:00", 0, "2026-06-11 22:00" },
		/* across midnight: 22:00, 01:00, 04:00, the count from FROM */
		{ "22:00-06:00 every 3h", "2026-06-10 21:00", 0, "2026-06-10 22:00" },
		{ "22:00-06:00 every 3h", "2026-06-10 22:00", 0, "2026-06-11 01:00" },
		{ "22:00-06:00 every 3h", "2026-06-11 00:30", 0, "2026-06-11 01:00" },
		{ "22:00-06:00 every 3h", "2026-06-11 01:00", 0, "2026-06-11 04:00" },
		{ "22:00-06:00 every 3h", "2026-06-11 04:00", 0, "2026-06-11 22:00" },
		{ "22:00-06:00 every 3h", "2026-06-11 05:59", 0, "2026-06-11 22:00" },
		{ "22:00-06:00 every 7h", "2026-06-10 22:00", 0, "2026-06-11 05:00" },
		{ "23:00-01:00 every 1d", "2026-06-10 23:30", 0, "2026-06-11 23:00" },
		/* several rules: the earliest */
		{ "08:00-18:00 every 5m, every 1h", "2026-06-10 18:10", 0, "2026-06-10 19:00" },
		{ "08:00-18:00 every 5m, every 1h", "2026-06-10 09:01", 0, "2026-06-10 09:05" },
		{ "after-outbound, 22:00-06:00 every 2h", "2026-06-10 12:00", 0, "2026-06-10 22:00" },
	};

	tz("UTC");
	run_next_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Outside daylight-saving days Berlin is UTC+1 or +2 all day: wall-clock
 * slots as in UTC. On 2026-03-29 02:00 CET becomes 03:00 CEST; on
 * 2026-10-25 03:00 CEST becomes 02:00 CET. 08:00 stays 08:00 across both. */
Test(timetable, next_berlin)
{
	static const struct next_case cases[] = {
		{ "every 15m", "2026-06-10 10:07", 0, "2026-06-10 10:15" },
		{ "22:00-06:00 every 3h", "2026-06-10 22:00", 0, "2026-06-11 01:00" },
		/* spring: 02:00 does not exist, mktime makes it 03:00 CEST */
		{ "every 15m", "2026-03-29 01:45 +0100", 0, "2026-03-29 03:00 +0200" },
		{ "every 15m", "2026-03-29 03:00 +0200", 0, "2026-03-29 03:15 +0200" },
		{ "every 1h", "2026-03-29 01:30 +0100", 0, "2026-03-29 03:00 +0200" },
		{ "08:00-18:00 every 1h", "2026-03-29 07:30", 0, "2026-03-29 08:00 +0200" },
		{ "08:00-18:00 every 1h", "2026-03-28 17:30", 0, "2026-03-29 08:00 +0200" },
		{ "every 1h", "2026-03-29 12:00", 0, "2026-03-29 13:00 +0200" },
		{ "22:00-06:00 every 2h", "2026-03-28 23:00", 0, "2026-03-29 00:00 +0100" },
		{ "22:00-06:00 every 2h", "2026-03-29 00:00", 0, "2026-03-29 03:00 +0200" },
		{ "22:00-06:00 every 2h", "2026-03-29 03:00 +0200", 0, "2026-03-29 04:00 +0200" },
		/* autumn: 08:00 CET the day of and 08:00 CEST the day before */
		{ "08:00-18:00 every 1h", "2026-10-25 07:30", 0, "2026-10-25 08:00 +0100" },
		{ "08:00-18:00 every 1h", "2026-10-24 17:30", 0, "2026-10-25 08:00 +0100" },
		{ "every 1h", "2026-10-25 12:00", 0, "2026-10-25 13:00 +0100" },
		{ "every 1h", "2026-10-25 03:00 +0100", 0, "2026-10-25 04:00 +0100" },
	};

	if (!have_zone(BERLIN))
		return;
	tz(BERLIN);
	run_next_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Walk next() from..to: the wall-clock labels ("HH:MM") of the runs, in
 * order; every step strictly later than the one before. */
static void walk(const char *sched, const char *from, const char *to, const char *want)
{
	struct timetable t;
	uint64_t now = (uint64_t)at(from) * US, end = (uint64_t)at(to) * US;
	char got[512] = "";
	size_t o = 0;

	parse_ok(&t, sched);
	for (int guard = 0; guard < 100; guard++) {
		uint64_t n = timetable_next(&t, now);
		time_t s = (time_t)(n / US);
		struct tm tm;

		cr_assert(n > now, "%s: next %llu not after %llu", sched, (unsigned long long)n,
			  (unsigned long long)now);
		if (n > end)
			break;
		localtime_r(&s, &tm);
		o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%02d:%02d", o ? " " : "",
				      tm.tm_hour, tm.tm_min);
		now = n;
	}
	cr_expect_str_eq(got, want, "%s from %s to %s: got [%s], want [%s]", sched, from, to, got,
			 want);
}

/* On the daylight-saving days each wall-clock time that exists runs once:
 * in spring 02:xx (which does not exist) runs as mktime makes it (03:xx,
 * the same instants as 03:xx's own runs: once); in autumn 02:xx (which
 * exists twice) runs once. */
Test(timetable, walk_berlin_dst_days)
{
	if (!have_zone(BERLIN))
		return;
	tz(BERLIN);
	walk("every 15m", "2026-03-29 01:30 +0100", "2026-03-29 04:00 +0200",
	     "01:45 03:00 03:15 03:30 03:45 04:00");
	walk("every 15m", "2026-10-25 01:30 +0200", "2026-10-25 03:00 +0100",
	     "01:45 02:00 02:15 02:30 02:45 03:00");
	walk("02:00-03:00 every 30m", "2026-10-25 00:00 +0200", "2026-10-25 23:00 +0100",
	     "02:00 02:30");
	walk("22:00-06:00 every 2h", "2026-03-28 21:00 +0100", "2026-03-29 21:00 +0200",
	     "22:00 00:00 03:00 04:00");
	walk("22:00-06:00 every 2h", "2026-10-24 21:00 +0200", "2026-10-25 21:00 +0100",
	     "22:00 00:00 02:00 04:00");
	walk("every 6h", "2026-10-24 23:00 +0200", "2026-10-26 00:00 +0100",
	     "00:00 06:00 12:00 18:00 00:00");
}

/* A slot of a rule as the header defines it, from the wall clock alone. */
static int is_slot(const struct timetable_rule *r, unsigned sod)
{
	if (r->kind == TIMETABLE_EVERY)
		return sod % r->every_s == 0;
	if (r->kind != TIMETABLE_WINDOW)
		return 0;
	if (r->from_s < r->to_s)
		return sod >= r->from_s && sod < r->to_s && (sod - r->from_s) % r->every_s == 0;
	/* across midnight: FROM..24:00 today, or 00:00..TO counting on
	 * from yesterday's FROM */
	if (sod >= r->from_s)
		return (sod - r->from_s) % r->every_s == 0;
	return sod < r->to_s && (sod + 86400 - r->from_s) % r->every_s == 0;
}

/* Against a minute-by-minute oracle over two days with no clock change:
 * next(t) is the first minute after t that is a slot of some rule. The
 * oracle marks each minute of three days, then each minute's next slot is
 * found walking back from the end. */
#define ORACLE_MIN (3 * 1440)
static void oracle(const char *sched, const char *from)
{
	static int next[ORACLE_MIN];
	struct timetable t;
	time_t start = at(from);
	int upcoming = -1;

	parse_ok(&t, sched);
	for (int i = ORACLE_MIN - 1; i >= 0; i--) {
		time_t s = start + (time_t)i * 60;
		struct tm tm;
		unsigned sod;
		int hit = 0;

		next[i] = upcoming;
		localtime_r(&s, &tm);
		sod = (unsigned)(tm.tm_hour * 3600 + tm.tm_min * 60);
		for (unsigned r = 0; r < t.n; r++)
			hit |= is_slot(&t.rule[r], sod);
		if (hit)
			upcoming = i;
	}
	for (int i = 0; i < ORACLE_MIN - 1440; i++) {
		time_t m = start + (time_t)i * 60, s = start + (time_t)next[i] * 60;
		uint64_t got = timetable_next(&t, (uint64_t)m * US);

		cr_assert(next[i] > 0, "%s: no slot within a day of minute %d", sched, i);
		if (got != (uint64_t)s * US) {
			char b1[64], b2[64], b3[64];

			cr_assert_fail("%s after %s: got %s, want %s", sched, show(m, b1, sizeof(b1)),
				       show((time_t)(got / US), b2, sizeof(b2)), show(s, b3, sizeof(b3)));
		}
	}
}

Test(timetable, next_against_oracle)
{
	static const char *const scheds[] = {
		"every 1m", "every 7m", "every 13m", "every 1h", "every 90m", "every 1d",
		"08:00-18:00 every 5m", "08:00-09:00 every 25m", "22:00-06:00 every 3h",
		"22:00-06:00 every 7h", "23:59-00:01 every 1m", "00:00-24:00 every 11m",
		"08:00-18:00 every 45m, 20:00-02:00 every 17m, every 4h, after-outbound",
	};

	tz("UTC");
	for (size_t i = 0; i < sizeof(scheds) / sizeof(scheds[0]); i++)
		oracle(scheds[i], "2026-06-09 22:00");
	/* Berlin in summer: the same wall-clock slots at another offset (the
	 * last three, which cover every kind, to keep the test short) */
	if (!have_zone(BERLIN))
		return;
	tz(BERLIN);
	for (size_t i = sizeof(scheds) / sizeof(scheds[0]) - 3; i < sizeof(scheds) / sizeof(scheds[0]); i++)
		oracle(scheds[i], "2026-06-09 22:00");
}

struct active_case {
	const char *sched;
	const char *now;
	int want;
};

Test(timetable, active)
{
	static const struct active_case cases[] = {
		{ "every 1h", "2026-06-10 03:17", 1 },
		{ "08:00-18:00 every 5m", "2026-06-10 07:59:59", 0 },
		{ "08:00-18:00 every 5m", "2026-06-10 08:00", 1 },
		{ "08:00-18:00 every 5m", "2026-06-10 17:59:59", 1 },
		{ "08:00-18:00 every 5m", "2026-06-10 18:00", 0 },
		{ "22:00-06:00 every 1h", "2026-06-10 21:59:59", 0 },
		{ "22:00-06:00 every 1h", "2026-06-10 22:00", 1 },
		{ "22:00-06:00 every 1h", "2026-06-10 23:30", 1 },
		{ "22:00-06:00 every 1h", "2026-06-11 05:59:59", 1 },
		{ "22:00-06:00 every 1h", "2026-06-11 06:00", 0 },
		{ "00:00-24:00 every 1h", "2026-06-11 23:59:59", 1 },
		{ "after-outbound", "2026-06-11 12:00", 0 },
		{ "after-outbound, 08:00-09:00 every 1h", "2026-06-11 08:30", 1 },
		{ "after-outbound, 08:00-09:00 every 1h", "2026-06-11 09:30", 0 },
	};

	tz("UTC");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct timetable t;

		parse_ok(&t, cases[i].sched);
		cr_expect_eq(timetable_active(&t, (uint64_t)at(cases[i].now) * US), cases[i].want,
			     "case %zu: %s at %s", i, cases[i].sched, cases[i].now);
	}
	if (!have_zone(BERLIN))
		return;
	tz(BERLIN);
	{
		struct timetable t;

		/* local wall clock: 08:00 CEST is 06:00 UTC */
		parse_ok(&t, "08:00-18:00 every 5m");
		cr_expect(timetable_active(&t, (uint64_t)at("2026-06-10 08:00 +0200") * US));
		cr_expect(!timetable_active(&t, (uint64_t)at("2026-06-10 07:59 +0200") * US));
	}
}
