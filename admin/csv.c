/* SPDX-License-Identifier: MIT */
/*
 * csv: the RFC 4180 line splitter (csv.h). Unquoting writes over the field in
 * place: the output never runs ahead of the input, so no copy is needed.
 */
#include "admin/csv.h"

#include <stdio.h>
#include <string.h>

/* A quoted field starting at *pp (on the opening quote): unquote it in place
 * and leave *pp on what follows the closing quote. 0 or -1 with why. */
static int csv_quoted(char **pp, char **outp, char *why, size_t wl)
{
	char *p = *pp + 1, *out = *outp;

	for (;;) {
		if (*p == '\0')
			return snprintf(why, wl, "unterminated quoted field"), -1;
		if (*p == '"') {
			if (p[1] == '"') {
				*out++ = '"';
				p += 2;
				continue;
			}
			p++;
			break;
		}
		*out++ = *p++;
	}
	if (*p != ',' && *p != '\0')
		return snprintf(why, wl, "text after a closing quote"), -1;
	*pp = p;
	*outp = out;
	return 0;
}

static char *csv_trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	return s;
}

int csv_split(char *line, char **fields, int max, char *why, size_t wl)
{
	int n = 0;
	char *p = line;

	for (;;) {
		char *out = p, *start = p;
		int last;

		if (n == max)
			return snprintf(why, wl, "more than %d columns", max), -1;
		if (*p == '"') {
			if (csv_quoted(&p, &out, why, wl))
				return -1;
		} else {
			while (*p != ',' && *p != '\0') {
				if (*p == '"')
					return snprintf(why, wl, "quote inside an unquoted field"), -1;
				p++;
			}
			out = p;
		}
		fields[n++] = start;
		last = *p == '\0';
		*out = '\0';
		if (last)
			break;
		p++;
	}
	for (int i = 0; i < n; i++)
		fields[i] = csv_trim(fields[i]);
	return n;
}
