/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for proto/atrn.c: the input as an ATRN argument. A list
 * accepted has at most ATRN_DOMAINS_MAX domains, each lower case,
 * NUL-terminated at its length, within ETRN_DOMAIN_MAX, named once, made of
 * RFC 1985's characters only; every verdict's reply is one line ending in
 * CRLF.
 */
#include <stdint.h>
#include <string.h>

#include "core/buf.h"
#include "proto/atrn.h"

static void fz_check_doms(const struct atrn_doms *d)
{
	if (d->n > ATRN_DOMAINS_MAX)
		__builtin_trap();
	for (unsigned i = 0; i < d->n; i++) {
		if (d->len[i] == 0 || d->len[i] >= ETRN_DOMAIN_MAX ||
		    strlen(d->dom[i]) != d->len[i])
			__builtin_trap();
		for (size_t k = 0; k < d->len[i]; k++) {
			char c = d->dom[i][k];

			if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
			      c == '-' || c == '_'))
				__builtin_trap();
		}
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(d->dom[i], d->dom[j]))
				__builtin_trap();
	}
}

static void fz_check_reply(enum atrn_verdict v)
{
	struct buf out;

	buf_init(&out, 0);
	if (atrn_reply(&out, v) != 0 || out.len < 5 || out.data[out.len - 2] != '\r' ||
	    out.data[out.len - 1] != '\n' || memchr(out.data, '\n', out.len - 1))
		__builtin_trap();
	buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct atrn_doms d;
	enum atrn_verdict v = atrn_parse((const char *)data, size, &d);

	if (v != ATRN_OK && v != ATRN_SYNTAX && v != ATRN_TOO_MANY)
		__builtin_trap();
	if (v == ATRN_OK)
		fz_check_doms(&d);
	fz_check_reply(v);
	return 0;
}
