/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for core/units.c on its own: the input (cut at its first
 * NUL) as a size and as a duration. An accepted value is within the maximum
 * and its plain spelling parses back to it; a refusal always says why.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/units.h"

#define FZ_IN_MAX 256

/* Each spelling units.c reads: the parser, its maximum, the plain form. */
static const struct fz_unit {
	int (*parse)(const char *s, uint64_t *v, char *why, size_t whylen);
	uint64_t max;
	const char *plain;
} fz_units[] = {
	{ units_parse_size, UNITS_SIZE_MAX, "%llu" },
	{ units_parse_duration, UNITS_DURATION_MAX_MS, "%llums" },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[FZ_IN_MAX + 1], back[32], why[128];
	uint64_t v, w;
	size_t i;

	if (size > FZ_IN_MAX)
		size = FZ_IN_MAX;
	memcpy(s, data, size);
	s[size] = '\0';
	for (i = 0; i < sizeof(fz_units) / sizeof(fz_units[0]); i++) {
		const struct fz_unit *u = &fz_units[i];

		why[0] = '\0';
		if (u->parse(s, &v, why, sizeof(why)) != 0) {
			if (why[0] == '\0')
				__builtin_trap();
			continue;
		}
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		snprintf(back, sizeof(back), u->plain, (unsigned long long)v);
#pragma GCC diagnostic pop
		if (v > u->max || u->parse(back, &w, NULL, 0) || w != v)
			__builtin_trap();
	}
	return 0;
}
