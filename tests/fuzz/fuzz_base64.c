/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for core/base64.c: any input is decoded; an accepted
 * text is canonical (re-encoding the octets gives it back to the letter),
 * a refused one says -EINVAL or -ENOSPC; and the input as octets encodes
 * and decodes back to itself.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"

#define FZ_IN_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned char plain[FZ_IN_MAX]; /* the input, decoded back */
	static char text[BASE64_ENCODED_LEN(FZ_IN_MAX) + 1];
	int pl, tl;

	if (size > FZ_IN_MAX)
		size = FZ_IN_MAX;
	pl = base64_decode(plain, sizeof(plain), (const char *)data, size);
	if (pl >= 0) {
		if ((size_t)pl > BASE64_DECODED_MAX(size))
			__builtin_trap();
		tl = base64_encode(text, sizeof(text), plain, (size_t)pl);
		if (tl != (int)size || memcmp(text, data, size) != 0)
			__builtin_trap();
	} else if (pl != -EINVAL) {
		__builtin_trap();
	}
	tl = base64_encode(text, sizeof(text), data, size);
	if (tl != (int)BASE64_ENCODED_LEN(size))
		__builtin_trap();
	pl = base64_decode(plain, sizeof(plain), text, (size_t)tl);
	if (pl != (int)size || (size && memcmp(plain, data, size) != 0))
		__builtin_trap();
	return 0;
}
