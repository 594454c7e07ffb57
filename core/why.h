/* SPDX-License-Identifier: MIT */
/*
 * why: the one way a parser writes why it refused its input. Every parser
 * of ours (config, cidr, timetable, dnsbl lists, Redis rows) reports into a
 * caller's (why, len) buffer, which may be NULL, and returns -1; the reason
 * often quotes the input, so it is made one printable line (control bytes
 * become '?'): it goes into `file:line: ...` messages and log lines.
 */
#ifndef ETRND_CORE_WHY_H
#define ETRND_CORE_WHY_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

static inline int why_set(char *why, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Format the reason into why (when given). Returns -1, so a parser can
 * `return why_set(why, len, "bad ...", ...);`. */
static inline int why_set(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!why || !len)
		return -1;
	va_start(ap, fmt);
	(void)vsnprintf(why, len, fmt, ap);
	va_end(ap);
	for (char *p = why; *p; p++)
		if ((unsigned char)*p < ' ' || *p == 0x7f)
			*p = '?';
	return -1;
}

#endif
