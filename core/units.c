/* SPDX-License-Identifier: MIT */
/*
 * units: size and duration parsing (units.h). Digits are read by hand rather
 * than with strtoull(), which would take leading spaces, a sign and "0x", and
 * the product is checked against the maximum before it is formed.
 */
#include "core/units.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/ascii.h"

struct units_suffix {
	const char *name;
	uint64_t mul;
};

#define UNITS_KIB (1ull << 10)
#define UNITS_MS_PER_S 1000ull
#define UNITS_MS_PER_DAY (86400ull * UNITS_MS_PER_S)

/* Matched exactly (durations are lower case only). */
static const struct units_suffix units_durations[] = {
	{ "", UNITS_MS_PER_S },         /* a plain number is seconds */
	{ "ms", 1 },
	{ "s", UNITS_MS_PER_S },
	{ "m", 60 * UNITS_MS_PER_S },
	{ "h", 3600 * UNITS_MS_PER_S },
	{ "d", UNITS_MS_PER_DAY },
	{ "w", 7 * UNITS_MS_PER_DAY },
};

/* The multiplier letter, matched ignoring case. */
static const struct units_suffix units_sizes[] = {
	{ "k", UNITS_KIB },
	{ "m", UNITS_KIB * UNITS_KIB },
	{ "g", UNITS_KIB * UNITS_KIB * UNITS_KIB },
	{ "t", UNITS_KIB * UNITS_KIB * UNITS_KIB * UNITS_KIB },
};

/* The reason into why (when given); returns rc. */
static int units_why(char *why, size_t len, int rc, const char *reason)
{
	if (why && len)
		(void)snprintf(why, len, "%s", reason);
	return rc;
}

/* Leading digits of s into *n, saturating at UINT64_MAX (which is above
 * either maximum, so a saturated value is refused as too large). Returns
 * the number of digits. */
static size_t units_digits(const char *s, uint64_t *n)
{
	size_t i = 0;
	uint64_t v = 0;

	for (; s[i] >= '0' && s[i] <= '9'; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
	}
	*n = v;
	return i;
}

/* n * mul into *out unless it passes max. 0 or -ERANGE. */
static int units_scale(uint64_t n, uint64_t mul, uint64_t max, uint64_t *out)
{
	if (n > max / mul)
		return -ERANGE;
	*out = n * mul;
	return 0;
}

int units_parse_size(const char *s, uint64_t *bytes, char *why, size_t wl)
{
	static const char want[] = "not a size (want bytes, or a number with k, M, G or T, like 64k, 500M, 2G)";
	uint64_t n, mul = 1;
	size_t i = units_digits(s, &n);
	const char *end = s + i;

	if (i == 0)
		return units_why(why, wl, -EINVAL, want);
	if (*end) {
		size_t k, nk = sizeof(units_sizes) / sizeof(units_sizes[0]);

		for (k = 0; k < nk; k++)
			if (ascii_lower((unsigned char)*end) == (unsigned char)units_sizes[k].name[0])
				break;
		if (k == nk)
			return units_why(why, wl, -EINVAL, want);
		mul = units_sizes[k].mul;
		end++;
		if (strcmp(end, "") && strcmp(end, "B") && strcmp(end, "iB"))
			return units_why(why, wl, -EINVAL, want);
	}
	if (units_scale(n, mul, UNITS_SIZE_MAX, bytes))
		return units_why(why, wl, -ERANGE, "too large (at most " UNITS_SIZE_MAX_TEXT ")");
	return 0;
}

int units_parse_duration(const char *s, uint64_t *ms, char *why, size_t wl)
{
	static const char want[] = "not a duration (want like 5d, 12h, 30m or 3600s; also ms and w)";
	uint64_t n;
	size_t i = units_digits(s, &n);
	size_t nk = sizeof(units_durations) / sizeof(units_durations[0]);

	if (i == 0)
		return units_why(why, wl, -EINVAL, want);
	for (size_t k = 0; k < nk; k++) {
		if (strcmp(s + i, units_durations[k].name))
			continue;
		if (units_scale(n, units_durations[k].mul, UNITS_DURATION_MAX_MS, ms))
			return units_why(why, wl, -ERANGE,
					 "too long (at most " UNITS_DURATION_MAX_TEXT ")");
		return 0;
	}
	return units_why(why, wl, -EINVAL, want);
}
