/* SPDX-License-Identifier: MIT */
/*
 * timetable: when an activator (proto/activator.h) asks its upstream for
 * mail, pure. A timetable is a list of rules, written comma-separated in
 * etrnd.conf ("08:00-18:00 every 5m, every 1h, after-outbound"):
 *   every D                a run at local midnight + k*D, every day (like
 *                          cron's step minutes when D divides the day; when it does
 *                          not, the count starts again at each midnight)
 *   HH:MM-HH:MM every D    a run at FROM + k*D while before TO, every day;
 *                          FROM > TO crosses midnight (22:00-06:00)
 *   after-outbound         no time: a run right after etrnd delivered mail
 *                          through its relayhost (the runtime's event)
 * D is a core/units.h duration of at least TIMETABLE_EVERY_MIN_S and at most
 * a day. Times are local wall-clock times (localtime_r/mktime in the
 * process's TZ), so 08:00 stays 08:00 across a daylight-saving change; on
 * such a day a time that does not exist runs as the clock that did not
 * change reads it (02:30 on a spring-forward day at 03:30), and one that
 * exists twice runs once (at the first). No I/O, no clock: the caller
 * passes the time (the test clock, core/now.h, in the daemon).
 */
#ifndef ETRND_CORE_TIMETABLE_H
#define ETRND_CORE_TIMETABLE_H

#include <stddef.h>
#include <stdint.h>

/* Rules in one timetable. */
#define TIMETABLE_RULES_MAX 8
/* The shortest interval: a run a minute at most from the time rules, so a
 * schedule can never be a tight loop against an upstream. */
#define TIMETABLE_EVERY_MIN_S 60u
/* The longest: a day. */
#define TIMETABLE_EVERY_MAX_S 86400u
/* timetable_format()'s output fits this. */
#define TIMETABLE_TEXT_MAX 256

enum timetable_kind {
	TIMETABLE_EVERY = 0,       /* every D */
	TIMETABLE_WINDOW,          /* HH:MM-HH:MM every D */
	TIMETABLE_AFTER_OUTBOUND,  /* after-outbound */
};

struct timetable_rule {
	enum timetable_kind kind;
	unsigned every_s;          /* EVERY, WINDOW */
	unsigned from_s;           /* WINDOW: seconds after local midnight */
	unsigned to_s;             /* WINDOW: likewise; from_s == to_s refused */
};

struct timetable {
	unsigned n;
	struct timetable_rule rule[TIMETABLE_RULES_MAX];
};

/* Parse s (len bytes; spaces around items and between words as in the
 * forms above, any amount) into *t. Returns 0, or -1 with why set ("window
 * 18:00-18:00 is empty", "every 10s: under the minimum of 1m", "unknown
 * rule \"hourly\"", "more than 8 rules", ...). A rule given twice is kept
 * once; "after-outbound" at most once. */
int timetable_parse(struct timetable *t, const char *s, size_t len, char *why,
		size_t whylen);

/* Write t back in the canonical form ("08:00-18:00 every 5m, after-outbound")
 * into out (NUL-terminated, cut to outlen). Returns the length written. */
size_t timetable_format(const struct timetable *t, char *out, size_t outlen);

/* 1 when t has an after-outbound rule, 0 otherwise. */
int timetable_after_outbound(const struct timetable *t);

/* 1 when t has a time rule (every or window), 0 otherwise. */
int timetable_timed(const struct timetable *t);

/* The first time-rule run strictly after after_us (microseconds since the
 * epoch); 0 when t has no time rule. */
uint64_t timetable_next(const struct timetable *t, uint64_t after_us);

/* Whether now_us lies inside some time rule's active period (an every rule
 * always; a window rule between its FROM and TO): the daemon's first run at
 * start is at once then, else at timetable_next(). */
int timetable_active(const struct timetable *t, uint64_t now_us);

#endif
