/* SPDX-License-Identifier: MIT */
/* datefmt: see datefmt.h. */
#include "core/datefmt.h"

#include <errno.h>
#include <stdio.h>

int datefmt_rfc5322(char *dst, size_t n, time_t t)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;
	int r;

	if (gmtime_r(&t, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 ||
	    tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_year < -1900 ||
	    tm.tm_year > 9999 - 1900)
		return -EINVAL;
	r = snprintf(dst, n, "%s, %d %s %d %02d:%02d:%02d +0000", days[tm.tm_wday],
		     tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
		     tm.tm_min, tm.tm_sec);
	if (r < 0 || (size_t)r >= n)
		return -EOVERFLOW;
	return 0;
}

int datefmt_iso8601(char *dst, size_t n, time_t t)
{
	struct tm tm;
	int r;

	if (gmtime_r(&t, &tm) == NULL || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
		return -EINVAL;
	r = snprintf(dst, n, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
		     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (r < 0 || (size_t)r >= n)
		return -EOVERFLOW;
	return 0;
}
