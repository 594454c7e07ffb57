/* SPDX-License-Identifier: MIT */
/*
 * csv: split one line of comma-separated values (RFC 4180 quoting) in place.
 * Pure: no I/O, no allocation. What the columns mean is the caller's
 * (admin/ctlrow.h for etrnctl's import).
 */
#ifndef ETRND_ADMIN_CSV_H
#define ETRND_ADMIN_CSV_H

#include <stddef.h>

/*
 * Split the NUL-terminated line (no line ending: RFC 4180 quoting, "a,b" and
 * "" for a quote inside quotes; a line break inside quotes is not supported)
 * in place into at most max fields, each trimmed of spaces and tabs around
 * it. fields[i] point into line, valid while line is. Returns the number of
 * fields (at least 1: an empty line is one empty field), or -1 with why set
 * to what is wrong.
 */
int csv_split(char *line, char **fields, int max, char *why, size_t whylen);

#endif
