/* SPDX-License-Identifier: MIT */
/*
 * ascii: case folding for protocol text (domains, SMTP verbs, config keys).
 * ASCII only and locale-independent on purpose: RFC 5321 2.4 makes domains
 * and verbs case-insensitive in ASCII, and UTF-8 bytes of an
 * internationalised name pass through unchanged (tolower() would fold them
 * by the process locale). The one copy for every layer.
 */
#ifndef ETRND_CORE_ASCII_H
#define ETRND_CORE_ASCII_H

#include <stddef.h>

static inline unsigned char ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* Lower-case n bytes of src into dst (which may be src). */
static inline void ascii_lower_copy(char *dst, const char *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = (char)ascii_lower((unsigned char)src[i]);
}

/* 1 when a[0..n) and b[0..n) are equal ignoring ASCII case. */
static inline int ascii_eq_n(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
			return 0;
	return 1;
}

/* 1 when a[0..an) equals the NUL-terminated lit ignoring ASCII case. */
static inline int ascii_eq_lit(const char *a, size_t an, const char *lit)
{
	size_t i;

	for (i = 0; i < an; i++)
		if (lit[i] == '\0' ||
		    ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)lit[i]))
			return 0;
	return lit[i] == '\0';
}

#endif
