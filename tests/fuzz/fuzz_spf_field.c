/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for proto/spf_field.c: the input as a stored body for
 * spf_stored_result() (never past its end), and cut into the peer's fields
 * (client, HELO, sender, comment) of a Received-SPF field: the field is
 * CRLF lines only, each under RFC 5322's 998 octets, and read back on top
 * of a body it gives the result it was written with.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/spf.h"

#define FZ_PART_MAX 700      /* longer than any field keeps */
#define FZ_LINE_MAX 998      /* RFC 5322 2.1.1 */

static void fz_part(const uint8_t **d, size_t *n, char *out)
{
	size_t k = *n < FZ_PART_MAX ? *n : FZ_PART_MAX;
	const uint8_t *nul = memchr(*d, 0, k);

	if (nul)
		k = (size_t)(nul - *d);
	memcpy(out, *d, k);
	out[k] = '\0';
	*d += k + (k < *n ? 1 : 0);
	*n -= k + (k < *n ? 1 : 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char client[FZ_PART_MAX + 1], helo[FZ_PART_MAX + 1], sender[FZ_PART_MAX + 1];
	char comment[FZ_PART_MAX + 1], field[SPF_HEADER_MAX + 32];
	char *copy = malloc(size ? size : 1);
	const uint8_t *d = data;
	size_t n = size, len, line = 0;
	struct spf_verdict v;
	struct spf_query q;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	(void)spf_stored_result(copy, size);
	free(copy);

	memset(&v, 0, sizeof(v));
	v.res = size ? (enum spf_res)(data[0] % SPF_RES_COUNT) : SPF_RES_NONE;
	v.helo_identity = size > 1 && (data[1] & 1);
	fz_part(&d, &n, client);
	fz_part(&d, &n, helo);
	fz_part(&d, &n, sender);
	fz_part(&d, &n, comment);
	spf_printable(v.comment, sizeof(v.comment), comment);
	q = (struct spf_query){ .client = client, .helo = helo, .sender = sender,
				.receiver = "mx.example" };
	len = spf_header(&v, &q, field, SPF_HEADER_MAX);
	if (len == 0 || len >= SPF_HEADER_MAX || field[len] != '\0' ||
	    memcmp(field + len - 2, "\r\n", 2) != 0)
		__builtin_trap();
	for (size_t i = 0; i < len; i++) {
		if (field[i] == '\r' && field[i + 1] != '\n')
			__builtin_trap();
		if (field[i] == '\n' && (i == 0 || field[i - 1] != '\r'))
			__builtin_trap();
		line = field[i] == '\n' ? 0 : line + 1;
		if (line > FZ_LINE_MAX)
			__builtin_trap();
	}
	memcpy(field + len, "Received: x\r\n\r\n", 16);
	if (spf_stored_result(field, len + 16) != (int)v.res)
		__builtin_trap();
	return 0;
}
