/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for etrnctl's import: the input as a CSV file, line by
 * line, through ctlrow_csv_line. (Size and duration spellings on their own,
 * which this target also tried on its whole input before: fuzz_units.)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/ctlrow.h"

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
