/* SPDX-License-Identifier: MIT */
/*
 * datefmt: dates as mail headers write them (RFC 5322 3.3 date-time), in
 * UTC, with English names from tables, never from the locale; and as log
 * and status lines write them (ISO 8601, UTC).
 */
#ifndef ETRND_CORE_DATEFMT_H
#define ETRND_CORE_DATEFMT_H

#include <stddef.h>
#include <time.h>

/* Longest result: "Wed, 31 Dec 9999 23:59:59 +0000" and its NUL. */
#define DATEFMT_RFC5322_MAX 32

/* Write t as "Tue, 24 Nov 2026 00:38:41 +0000". Returns 0, -EINVAL when t
 * is outside years 0..9999, or -EOVERFLOW when n is too small. */
int datefmt_rfc5322(char *dst, size_t n, time_t t);

/* Longest result: "9999-12-31T23:59:59Z" and its NUL. */
#define DATEFMT_ISO8601_MAX 21

/* Write t as "2026-12-02T10:15:00Z" (ISO 8601, UTC), for log and status
 * lines. Returns 0, -EINVAL when t is outside years 0..9999, or
 * -EOVERFLOW when n is too small. */
int datefmt_iso8601(char *dst, size_t n, time_t t);

#endif
