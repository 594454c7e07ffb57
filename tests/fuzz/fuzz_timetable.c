/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for core/timetable.c. Input: 8 bytes of a time (folded
 * into 1970..2300), 1 byte choosing the zone (UTC or Europe/Berlin, with
 * its daylight-saving days), the rest a schedule. A refusal says why on one
 * line; an accepted schedule formats, parses back to the same timetable,
 * and its next() is strictly later, at most two days on, and the same for
 * every time before it (nothing skipped).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/timetable.h"

#define FZ_US 1000000ull
#define FZ_SPAN_S (330ull * 365 * 86400)   /* 1970 + 330 years */
#define FZ_NEXT_MAX_S (2ull * 86400 + 3600) /* a day's slots + a DST hour */
#define FZ_HEAD 9

static const char *const fz_zones[] = { "UTC", "Europe/Berlin" };
static int fz_zone = -1;

static void fz_tz(unsigned z)
{
	if ((int)z == fz_zone)
		return;
	if (setenv("TZ", fz_zones[z], 1))
		abort();
	tzset();
	fz_zone = (int)z;
}

static void fz_check_next(const struct timetable *t, uint64_t after)
{
	uint64_t n = timetable_next(t, after), again;

	if (!timetable_timed(t)) {
		if (n != 0)
			__builtin_trap();
		return;
	}
	if (n <= after || n - after > FZ_NEXT_MAX_S * FZ_US || n % FZ_US)
		__builtin_trap();
	/* from just before it, and from half-way: the same run */
	again = timetable_next(t, n - 1);
	if (again != n || timetable_next(t, after + (n - after) / 2) != n)
		__builtin_trap();
	if (timetable_next(t, n) <= n)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct timetable t, back;
	char why[256], text[TIMETABLE_TEXT_MAX];
	uint64_t after = 0;
	size_t n;

	if (size < FZ_HEAD)
		return 0;
	memcpy(&after, data, sizeof(after));
	after %= FZ_SPAN_S * FZ_US;
	fz_tz(data[8] % (sizeof(fz_zones) / sizeof(fz_zones[0])));
	why[0] = '\0';
	if (timetable_parse(&t, (const char *)data + FZ_HEAD, size - FZ_HEAD, why, sizeof(why))) {
		if (!why[0] || strchr(why, '\n'))
			__builtin_trap();
		return 0;
	}
	if (t.n == 0 || t.n > TIMETABLE_RULES_MAX)
		__builtin_trap();
	n = timetable_format(&t, text, sizeof(text));
	if (n != strlen(text) || n + 1 >= sizeof(text))
		__builtin_trap(); /* cut: the canonical form must fit */
	if (timetable_parse(&back, text, n, why, sizeof(why)) || memcmp(&back, &t, sizeof(t)))
		__builtin_trap();
	(void)timetable_active(&t, after);
	fz_check_next(&t, after);
	return 0;
}
