/* SPDX-License-Identifier: MIT */
/*
 * units: the one parser of sizes and durations for every layer (etrnd.conf,
 * Redis rows, etrnctl options and CSV), so a value means the same wherever it
 * is written. Pure: no I/O, no locale, no allocation. A value above the
 * documented maximum is refused, never wrapped.
 *
 * Grammar (no whitespace anywhere: callers trim where their syntax does):
 *   size     = DIGITS [ MULT [ "B" | "iB" ] ]
 *              MULT = k | K | m | M | g | G | t | T, powers of 1024
 *              ("64k" = 65536); a plain number is bytes. MULT is either
 *              case; "B" / "iB" are exact ("kb" is refused: bits or bytes?).
 *   duration = DIGITS [ "ms" | "s" | "m" | "h" | "d" | "w" ]
 *              lower case only ("5M" is refused: minutes or months?); a
 *              plain number is seconds; "w" is 7 days.
 *   DIGITS   = one or more of 0-9 (no sign, no decimal point, no 0x).
 * A range narrower than the maximum (a config key's) is the caller's check.
 */
#ifndef ETRND_CORE_UNITS_H
#define ETRND_CORE_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* 1 PiB: far above any quota or limit, and exact in a double (JSON). */
#define UNITS_SIZE_MAX (1ull << 50)
#define UNITS_SIZE_MAX_TEXT "1024T"
/* 10 years: in nanoseconds still fits an int64_t (292 years), so a caller
 * may scale a parsed duration to us or ns without overflow. */
#define UNITS_DURATION_MAX_MS (3650ull * 86400 * 1000)
#define UNITS_DURATION_MAX_TEXT "3650d"
/* Enough for every reason these functions write. */
#define UNITS_WHY_MAX 96

/*
 * Parse a size into *bytes. Returns 0; -EINVAL when s does not follow the
 * grammar; -ERANGE when it is above UNITS_SIZE_MAX. On error *bytes is
 * untouched and why (when not NULL) holds the reason without the value, like
 * "not a size (want ...)".
 */
int units_parse_size(const char *s, uint64_t *bytes, char *why, size_t whylen);

/* Parse a duration into *ms. Returns and reports as units_parse_size, with
 * UNITS_DURATION_MAX_MS as the maximum. */
int units_parse_duration(const char *s, uint64_t *ms, char *why, size_t whylen);

#endif
