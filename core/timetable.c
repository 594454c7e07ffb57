/* SPDX-License-Identifier: MIT */
/*
 * timetable: an activator's schedule (timetable.h). Parsing is a table of
 * rule forms; timetable_next() maps each rule's wall-clock slots of the day
 * before, the day of and the day after a time to instants with mktime(), so
 * midnight-crossing windows and daylight-saving days come out right. Pure:
 * no clock, no I/O; the process's TZ is the only outside input.
 */
#include "core/timetable.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/ascii.h"
#include "core/log.h"
#include "core/units.h"
#include "core/why.h"

#define TT_DAY_S 86400u
#define TT_HOUR_S 3600u
#define TT_MIN_S 60u
#define TT_US_PER_S 1000000ull
#define TT_MS_PER_S 1000ull
/* Words in one rule ("08:00-18:00 every 5m" has three) and one word's
 * length (a duration, a window): longer is refused before it is copied. */
#define TT_WORDS_MAX 4
#define TT_WORD_MAX 32
/* How much of an unknown rule the reason quotes. */
#define TT_QUOTE_MAX 48

struct tt_word {
	const char *p;
	size_t n;
};

/* One rule form: its first word (NULL: a window, "HH:MM-HH:MM", known by
 * its first digit), how many words it has, its spelling for a reason, and
 * the parser that fills the rule from them. */
struct tt_form {
	const char *name;
	unsigned nwords;
	const char *usage;
	int (*parse)(struct timetable_rule *r, const struct tt_word *w, char *why,
		     size_t whylen);
};

/* A duration in its shortest exact spelling: 1d, 2h, 5m, 90s. */
static void tt_duration_text(unsigned s, char *out, size_t outlen)
{
	if (s % TT_DAY_S == 0)
		(void)snprintf(out, outlen, "%ud", s / TT_DAY_S);
	else if (s % TT_HOUR_S == 0)
		(void)snprintf(out, outlen, "%uh", s / TT_HOUR_S);
	else if (s % TT_MIN_S == 0)
		(void)snprintf(out, outlen, "%um", s / TT_MIN_S);
	else
		(void)snprintf(out, outlen, "%us", s);
}

/* w as a printable quote for a reason (control bytes as \xNN, cut). */
static const char *tt_quote(const struct tt_word *w, char *buf, size_t len)
{
	return log_printable(buf, len, w->p, w->n);
}

/* "every D"'s D: a units.h duration, whole seconds, 1m to 1d. */
static int tt_parse_every(unsigned *every_s, const struct tt_word *w, char *why, size_t wl)
{
	char d[TT_WORD_MAX + 1], q[TT_QUOTE_MAX], uw[UNITS_WHY_MAX], min[TT_WORD_MAX];
	uint64_t ms;

	if (w->n > TT_WORD_MAX || memchr(w->p, '\0', w->n))
		return why_set(why, wl, "every %s: not a duration", tt_quote(w, q, sizeof(q)));
	memcpy(d, w->p, w->n);
	d[w->n] = '\0';
	if (units_parse_duration(d, &ms, uw, sizeof(uw)))
		return why_set(why, wl, "every %s: %s", tt_quote(w, q, sizeof(q)), uw);
	if (ms % TT_MS_PER_S)
		return why_set(why, wl, "every %s: not a whole number of seconds", d);
	tt_duration_text(TIMETABLE_EVERY_MIN_S, min, sizeof(min));
	if (ms < TIMETABLE_EVERY_MIN_S * TT_MS_PER_S)
		return why_set(why, wl, "every %s: under the minimum of %s", d, min);
	if (ms > TIMETABLE_EVERY_MAX_S * TT_MS_PER_S)
		return why_set(why, wl, "every %s: over the maximum of 1d", d);
	*every_s = (unsigned)(ms / TT_MS_PER_S);
	return 0;
}

/* "HH:MM" (H may be one digit) into seconds after midnight; 24:00 only
 * when end. Returns 0 or -1. */
static int tt_parse_hhmm(const char *p, size_t n, int end, unsigned *s)
{
	unsigned h = 0, m;
	size_t i = 0;

	if (n < 4 || n > 5 || p[n - 3] != ':')
		return -1;
	for (; i < n - 3; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		h = h * 10 + (unsigned)(p[i] - '0');
	}
	if (p[n - 2] < '0' || p[n - 2] > '5' || p[n - 1] < '0' || p[n - 1] > '9')
		return -1;
	m = (unsigned)(p[n - 2] - '0') * 10 + (unsigned)(p[n - 1] - '0');
	if (h > 24 || (h == 24 && (m || !end)))
		return -1;
	*s = h * TT_HOUR_S + m * TT_MIN_S;
	return 0;
}

static int tt_form_every(struct timetable_rule *r, const struct tt_word *w, char *why,
			 size_t wl)
{
	r->kind = TIMETABLE_EVERY;
	return tt_parse_every(&r->every_s, &w[1], why, wl);
}

static int tt_form_after_outbound(struct timetable_rule *r, const struct tt_word *w,
				  char *why, size_t wl)
{
	(void)w;
	(void)why;
	(void)wl;
	r->kind = TIMETABLE_AFTER_OUTBOUND;
	return 0;
}

static int tt_form_window(struct timetable_rule *r, const struct tt_word *w, char *why,
			  size_t wl)
{
	const char *dash = memchr(w[0].p, '-', w[0].n);
	char q[TT_QUOTE_MAX], q2[TT_QUOTE_MAX];
	size_t fl = dash ? (size_t)(dash - w[0].p) : 0;

	if (!dash || tt_parse_hhmm(w[0].p, fl, 0, &r->from_s) ||
	    tt_parse_hhmm(dash + 1, w[0].n - fl - 1, 1, &r->to_s))
		return why_set(why, wl, "bad window \"%s\" (want HH:MM-HH:MM from 00:00 to 23:59, 24:00 as an end)",
			      tt_quote(&w[0], q, sizeof(q)));
	if (r->from_s == r->to_s)
		return why_set(why, wl, "window %s is empty", tt_quote(&w[0], q, sizeof(q)));
	if (!ascii_eq_lit(w[1].p, w[1].n, "every"))
		return why_set(why, wl, "window %s: want \"every D\" after it, got \"%s\"",
			      tt_quote(&w[0], q, sizeof(q)), tt_quote(&w[1], q2, sizeof(q2)));
	r->kind = TIMETABLE_WINDOW;
	return tt_parse_every(&r->every_s, &w[2], why, wl);
}

static const struct tt_form tt_forms[] = {
	{ "every", 2, "every D", tt_form_every },
	{ "after-outbound", 1, "after-outbound alone", tt_form_after_outbound },
	{ NULL, 3, "HH:MM-HH:MM every D", tt_form_window },
};

/* Split one rule's text into words (blanks between them, any amount).
 * Returns the number of words, TT_WORDS_MAX + 1 when there are more. */
static unsigned tt_words(const char *p, size_t n, struct tt_word *w)
{
	unsigned nw = 0;
	size_t i = 0;

	while (i < n) {
		size_t start;

		while (i < n && (p[i] == ' ' || p[i] == '\t'))
			i++;
		if (i == n)
			break;
		start = i;
		while (i < n && p[i] != ' ' && p[i] != '\t')
			i++;
		if (nw == TT_WORDS_MAX)
			return TT_WORDS_MAX + 1;
		w[nw].p = p + start;
		w[nw++].n = i - start;
	}
	return nw;
}

/* One comma-separated item into *r. */
static int tt_parse_rule(struct timetable_rule *r, const char *p, size_t n, char *why,
			 size_t wl)
{
	struct tt_word w[TT_WORDS_MAX];
	unsigned nw = tt_words(p, n, w);
	struct tt_word all;
	char q[TT_QUOTE_MAX];

	memset(r, 0, sizeof(*r));
	if (nw == 0)
		return why_set(why, wl, "empty rule (two commas, or one at an end)");
	/* the rule as a reason quotes it: its words, without the blanks around */
	all.p = w[0].p;
	all.n = nw > TT_WORDS_MAX ? (size_t)(p + n - w[0].p) : (size_t)(w[nw - 1].p + w[nw - 1].n - w[0].p);
	while (all.n && (all.p[all.n - 1] == ' ' || all.p[all.n - 1] == '\t'))
		all.n--;
	for (size_t i = 0; i < sizeof(tt_forms) / sizeof(tt_forms[0]); i++) {
		const struct tt_form *f = &tt_forms[i];

		if (f->name ? !ascii_eq_lit(w[0].p, w[0].n, f->name)
			    : !(w[0].p[0] >= '0' && w[0].p[0] <= '9'))
			continue;
		if (nw != f->nwords)
			return why_set(why, wl, "\"%s\": want %s", tt_quote(&all, q, sizeof(q)),
				      f->usage);
		return f->parse(r, w, why, wl);
	}
	return why_set(why, wl, "unknown rule \"%s\" (want every D, HH:MM-HH:MM every D or after-outbound)",
		      tt_quote(&all, q, sizeof(q)));
}

static int tt_rule_eq(const struct timetable_rule *a, const struct timetable_rule *b)
{
	return a->kind == b->kind && a->every_s == b->every_s && a->from_s == b->from_s &&
	       a->to_s == b->to_s;
}

int timetable_parse(struct timetable *t, const char *s, size_t len, char *why, size_t wl)
{
	struct timetable out = { 0 };
	size_t i = 0, blank = 0;

	while (blank < len && (s[blank] == ' ' || s[blank] == '\t'))
		blank++;
	if (blank == len)
		return why_set(why, wl, "empty schedule (want every D, HH:MM-HH:MM every D or after-outbound)");
	for (;;) {
		const char *comma = memchr(s + i, ',', len - i);
		size_t n = comma ? (size_t)(comma - (s + i)) : len - i;
		struct timetable_rule r;
		unsigned k;

		if (tt_parse_rule(&r, s + i, n, why, wl))
			return -1;
		for (k = 0; k < out.n && !tt_rule_eq(&out.rule[k], &r); k++)
			;
		if (k == out.n) { /* a rule given twice is kept once */
			if (out.n == TIMETABLE_RULES_MAX)
				return why_set(why, wl, "more than %d rules", TIMETABLE_RULES_MAX);
			out.rule[out.n++] = r;
		}
		if (!comma)
			break;
		i += n + 1;
	}
	*t = out;
	return 0;
}

/* One rule's canonical text. */
static void tt_rule_text(const struct timetable_rule *r, char *out, size_t outlen)
{
	char d[TT_WORD_MAX];

	tt_duration_text(r->every_s, d, sizeof(d));
	switch (r->kind) {
	case TIMETABLE_EVERY:
		(void)snprintf(out, outlen, "every %s", d);
		return;
	case TIMETABLE_WINDOW:
		(void)snprintf(out, outlen, "%02u:%02u-%02u:%02u every %s",
			       r->from_s / TT_HOUR_S, r->from_s % TT_HOUR_S / TT_MIN_S,
			       r->to_s / TT_HOUR_S, r->to_s % TT_HOUR_S / TT_MIN_S, d);
		return;
	case TIMETABLE_AFTER_OUTBOUND:
		(void)snprintf(out, outlen, "after-outbound");
		return;
	}
	panic("rule kind %d", (int)r->kind);
}

size_t timetable_format(const struct timetable *t, char *out, size_t outlen)
{
	size_t o = 0;

	if (outlen == 0)
		return 0;
	out[0] = '\0';
	for (unsigned i = 0; i < t->n && o + 1 < outlen; i++) {
		char one[TIMETABLE_TEXT_MAX];
		int w;

		tt_rule_text(&t->rule[i], one, sizeof(one));
		w = snprintf(out + o, outlen - o, "%s%s", i ? ", " : "", one);
		if (w < 0)
			break;
		o += (size_t)w < outlen - o ? (size_t)w : outlen - o - 1;
	}
	return o;
}

int timetable_after_outbound(const struct timetable *t)
{
	for (unsigned i = 0; i < t->n; i++)
		if (t->rule[i].kind == TIMETABLE_AFTER_OUTBOUND)
			return 1;
	return 0;
}

int timetable_timed(const struct timetable *t)
{
	for (unsigned i = 0; i < t->n; i++)
		if (t->rule[i].kind != TIMETABLE_AFTER_OUTBOUND)
			return 1;
	return 0;
}

/*
 * One local day as timetable_next() uses it: its date, the instant of its
 * 00:00, and whether the UTC offset is the same for the two days from there
 * (then a slot sod seconds after midnight is simply midnight + sod;
 * otherwise each slot is resolved by tt_wall()). A zone that changes its
 * offset twice within two days and back is taken as uniform.
 */
struct tt_day {
	int year, mon, mday;   /* normalised, as struct tm counts them */
	time_t midnight;
	int uniform;
};

/* The instant of wall-clock time sod seconds after 00:00 of year-mon-mday
 * (sod may pass 24:00: the next day's wall clock). mktime() alone does not
 * do: with tm_isdst = -1 glibc resolves a time that exists twice by its
 * last call's guess, so the same slot could come out as either instant.
 * Both readings are tried: a time that exists once is that; one that
 * exists twice is the earlier (it runs once); one in a gap is what the
 * other offset makes of it, the later (02:30 on a spring day is 03:30). */
static time_t tt_wall(int year, int mon, int mday, unsigned sod)
{
	time_t t[2] = { (time_t)-1, (time_t)-1 }, pick = (time_t)-1;
	struct tm want = { .tm_year = year, .tm_mon = mon, .tm_mday = mday + (int)(sod / TT_DAY_S) };
	unsigned s = sod % TT_DAY_S;
	int valid[2] = { 0, 0 };

	want.tm_hour = (int)(s / TT_HOUR_S);
	want.tm_min = (int)(s % TT_HOUR_S / TT_MIN_S);
	want.tm_sec = (int)(s % TT_MIN_S);
	for (int dst = 0; dst < 2; dst++) {
		struct tm tm = want, back;

		tm.tm_isdst = dst;
		t[dst] = mktime(&tm);
		if (t[dst] == (time_t)-1 || !localtime_r(&t[dst], &back))
			continue;
		/* mktime normalised tm's date (mday past the month's end) */
		valid[dst] = back.tm_hour == want.tm_hour && back.tm_min == want.tm_min &&
			     back.tm_sec == want.tm_sec && back.tm_mday == tm.tm_mday;
	}
	for (int dst = 0; dst < 2; dst++)
		if (valid[dst] && (pick == (time_t)-1 || t[dst] < pick))
			pick = t[dst];
	if (pick != (time_t)-1)
		return pick;
	return t[0] > t[1] ? t[0] : t[1];
}

static int tt_day_at(struct tt_day *d, const struct tm *base, int shift)
{
	/* The date normalised by UTC arithmetic (no zone: cheap). */
	struct tm tm = { .tm_year = base->tm_year, .tm_mon = base->tm_mon,
			 .tm_mday = base->tm_mday + shift };
	struct tm mid, later;
	time_t span = timegm(&tm);

	if (span == (time_t)-1 || !gmtime_r(&span, &tm))
		return -1;
	d->year = tm.tm_year;
	d->mon = tm.tm_mon;
	d->mday = tm.tm_mday;
	d->midnight = tt_wall(d->year, d->mon, d->mday, 0);
	span = d->midnight + (time_t)(2 * TT_DAY_S);
	if (d->midnight == (time_t)-1 || !localtime_r(&d->midnight, &mid) ||
	    !localtime_r(&span, &later))
		return -1;
	/* 00:00 that does not exist (a zone that springs forward at midnight)
	 * comes back as 01:00: not uniform either. */
	d->uniform = mid.tm_hour == 0 && mid.tm_min == 0 && mid.tm_sec == 0 &&
		     later.tm_gmtoff == mid.tm_gmtoff && later.tm_hour == 0 && later.tm_min == 0 &&
		     later.tm_sec == 0;
	return 0;
}

/* The instant of the slot sod seconds after d's 00:00 wall clock. */
static time_t tt_slot(const struct tt_day *d, unsigned sod)
{
	if (d->uniform)
		return d->midnight + (time_t)sod;
	return tt_wall(d->year, d->mon, d->mday, sod);
}

/* The first slot of rule r on day d that is after a (seconds), or 0. The
 * slots are start + k*every while before end. */
static time_t tt_rule_next_on(const struct timetable_rule *r, const struct tt_day *d,
			      time_t a)
{
	unsigned start = 0, end = TT_DAY_S, sod;
	time_t best = 0;

	if (r->kind == TIMETABLE_WINDOW) {
		start = r->from_s;
		end = r->to_s > r->from_s ? r->to_s : r->to_s + TT_DAY_S;
	}
	if (d->uniform) {
		/* slots are midnight + sod, increasing: the first past a */
		long long past = (long long)(a - d->midnight) - (long long)start;
		unsigned long long k = past < 0 ? 0 : (unsigned long long)past / r->every_s + 1;

		if ((unsigned long long)start + k * r->every_s >= end)
			return 0;
		return d->midnight + (time_t)(start + k * r->every_s);
	}
	/* A daylight-saving day: mktime moves slots in the gap and picks one
	 * of two in the overlap, so the order of instants may differ from the
	 * slots'; look at each (at most a day of 1-minute slots). */
	for (sod = start; sod < end; sod += r->every_s) {
		time_t t = tt_slot(d, sod);

		if (t != (time_t)-1 && t > a && (best == 0 || t < best))
			best = t;
	}
	return best;
}

uint64_t timetable_next(const struct timetable *t, uint64_t after_us)
{
	time_t a = (time_t)(after_us / TT_US_PER_S), best = 0;
	struct tt_day days[3];
	struct tm base;

	if (!timetable_timed(t) || !localtime_r(&a, &base))
		return 0;
	/* The day before (a window that crosses midnight, started yesterday),
	 * the day (the rest of today's slots) and the day after (its first
	 * slot, always there: a day's 00:00 or a window's FROM). */
	for (int i = 0; i < 3; i++)
		if (tt_day_at(&days[i], &base, i - 1))
			return 0;
	for (unsigned r = 0; r < t->n; r++) {
		if (t->rule[r].kind == TIMETABLE_AFTER_OUTBOUND)
			continue;
		for (int i = 0; i < 3; i++) {
			time_t n = tt_rule_next_on(&t->rule[r], &days[i], a);

			if (n > a && (best == 0 || n < best))
				best = n;
		}
	}
	return best > 0 ? (uint64_t)best * TT_US_PER_S : 0;
}

int timetable_active(const struct timetable *t, uint64_t now_us)
{
	time_t now = (time_t)(now_us / TT_US_PER_S);
	struct tm tm;
	unsigned sod;

	if (!localtime_r(&now, &tm))
		return 0;
	sod = (unsigned)tm.tm_hour * TT_HOUR_S + (unsigned)tm.tm_min * TT_MIN_S +
	      (unsigned)tm.tm_sec;
	for (unsigned i = 0; i < t->n; i++) {
		const struct timetable_rule *r = &t->rule[i];

		if (r->kind == TIMETABLE_EVERY)
			return 1;
		if (r->kind != TIMETABLE_WINDOW)
			continue;
		if (r->from_s < r->to_s ? sod >= r->from_s && sod < r->to_s
					: sod >= r->from_s || sod < r->to_s)
			return 1;
	}
	return 0;
}
