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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[FZ_IN_MAX + 1], back[32], why[128];
	uint64_t v, w;

	if (size > FZ_IN_MAX)
		size = FZ_IN_MAX;
	memcpy(s, data, size);
	s[size] = '\0';
	why[0] = '\0';
	if (units_parse_size(s, &v, why, sizeof(why)) == 0) {
		snprintf(back, sizeof(back), "%llu", (unsigned long long)v);
		if (v > UNITS_SIZE_MAX || units_parse_size(back, &w, NULL, 0) || w != v)
			__builtin_trap();
	} else if (why[0] == '\0') {
		__builtin_trap();
	}
	why[0] = '\0';
	if (units_parse_duration(s, &v, why, sizeof(why)) == 0) {
		snprintf(back, sizeof(back), "%llums", (unsigned long long)v);
		if (v > UNITS_DURATION_MAX_MS || units_parse_duration(back, &w, NULL, 0) || w != v)
			__builtin_trap();
	} else if (why[0] == '\0') {
		__builtin_trap();
	}
	return 0;
}
