/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for core/resolver_answer.c: the input as a DNS answer
 * for each record type resolver_query() asks. An answer is an error with no
 * records, or records whose data have the type's size (4, 16 octets) or are
 * NUL-terminated at their length (names, text).
 */
#include <stdint.h>
#include <stdlib.h>

#include "core/resolver.h"

static const enum resolver_rrtype fz_types[] = {
	RESOLVER_T_A, RESOLVER_T_AAAA, RESOLVER_T_MX, RESOLVER_T_TXT, RESOLVER_T_PTR,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65535) /* RFC 1035 4.2.2: a DNS message's length */
		return 0;
	for (size_t i = 0; i < sizeof(fz_types) / sizeof(fz_types[0]); i++) {
		struct resolver_answer *a = resolver_answer_parse(fz_types[i], data, (int)size);

		if (!a)
			continue;
		if ((a->err && a->n) || (!a->err && !a->n) || a->n > RESOLVER_RR_MAX)
			__builtin_trap();
		for (unsigned k = 0; k < a->n; k++) {
			const struct resolver_rr *r = &a->rr[k];
			if (r->type != fz_types[i])
				__builtin_trap();
			if ((r->type == RESOLVER_T_A && r->len != 4) ||
			    (r->type == RESOLVER_T_AAAA && r->len != 16) || r->data[r->len] != '\0')
				__builtin_trap();
		}
		free(a);
	}
	return 0;
}
