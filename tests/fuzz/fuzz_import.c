/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the text parsers of etrnctl's import and the config:
 * units_parse_size/duration on the input (an accepted value is within the
 * maximum and its plain spelling parses back to it), and the input as a CSV
 * file, line by line, through ctlrow_csv_line.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/ctlrow.h"
#include "core/units.h"

static void fuzz_units(const char *s)
{
	char back[32];
	uint64_t v, w;

	if (units_parse_size(s, &v, NULL, 0) == 0) {
		if (v > UNITS_SIZE_MAX)
			abort();
		snprintf(back, sizeof(back), "%llu", (unsigned long long)v);
		if (units_parse_size(back, &w, NULL, 0) || w != v)
			abort();
	}
	if (units_parse_duration(s, &v, NULL, 0) == 0) {
		if (v > UNITS_DURATION_MAX_MS)
			abort();
		snprintf(back, sizeof(back), "%llums", (unsigned long long)v);
		if (units_parse_duration(back, &w, NULL, 0) || w != v)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ctlrow row;
	struct ctlrow_csv c;
	char *copy = malloc(size + 1), err[1024];
	unsigned long lineno = 0;
	size_t off = 0;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	fuzz_units(copy);
	ctlrow_csv_init(&c);
	while (off < size) {
		char *nl = memchr(copy + off, '\n', size - off);
		size_t n = nl ? (size_t)(nl - (copy + off)) + 1 : size - off;
		char *line = malloc(n + 1);

		if (!line)
			break;
		memcpy(line, copy + off, n);
		line[n] = '\0';
		err[0] = '\0';
		switch (ctlrow_csv_line(&c, line, n, "f.csv", ++lineno, &row, err, sizeof(err))) {
		case CTLROW_CSV_SKIP:
			break;
		case CTLROW_CSV_ROW:
			/* A row has a name and always tls. */
			if (!row.name[0] || row.n < 1)
				abort();
			break;
		default:
			/* Every bad line is reported as FILE:LINE: what. */
			if (strncmp(err, "f.csv:", 6))
				abort();
			break;
		}
		free(line);
		off += n;
	}
	free(copy);
	return 0;
}
