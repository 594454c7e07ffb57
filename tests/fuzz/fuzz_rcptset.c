/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for core/rcptset.c: the input as an import file, one
 * line at a time through rcptset_line() into a builder capped at 64
 * entries, then the set built. Every accepted entry must be found again
 * (a local part under some domain, a full address as itself, "@domain" for
 * any user of it, "@" for anything), a refusal always says why, and any
 * line looked up as an address must not crash.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/rcptset.h"

#define FZ_IN_MAX 8192
#define FZ_CAP 64

static int fz_has(const struct rcptset *s, const char *e, size_t n)
{
	char addr[RCPTSET_ENTRY_MAX + 32];
	const char *at = memchr(e, '@', n);

	if (!at) { /* a local part: any domain */
		memcpy(addr, e, n);
		memcpy(addr + n, "@fz.test", 8);
		return rcptset_has(s, addr, n + 8, n + 1);
	}
	if (at == e) { /* "@domain" or "@": some user there */
		addr[0] = 'u';
		memcpy(addr + 1, e, n);
		return rcptset_has(s, addr, n + 1, 2);
	}
	/* the last '@' splits a full address */
	for (const char *p = e + n; p > e; p--)
		if (p[-1] == '@')
			return rcptset_has(s, e, n, (size_t)(p - e));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char ents[FZ_CAP][RCPTSET_ENTRY_MAX + 1];
	size_t lens[FZ_CAP], nent = 0, off = 0;
	struct rcptset_builder *b;
	struct rcptset *s;

	if (size > FZ_IN_MAX)
		size = FZ_IN_MAX;
	b = rcptset_builder_new(0, FZ_CAP);
	if (!b)
		return 0;
	while (off < size) {
		const uint8_t *nl = memchr(data + off, '\n', size - off);
		size_t n = nl ? (size_t)(nl - (data + off)) + 1 : size - off;
		char out[RCPTSET_ENTRY_MAX + 1];
		const char *why = NULL;
		size_t on = 0;
		int rc = rcptset_line((const char *)data + off, n, out, &on, &why);

		if (rc < 0 && !why)
			__builtin_trap();
		if (rc == 1) {
			if (on != strlen(out) || on == 0 || on > RCPTSET_ENTRY_MAX)
				__builtin_trap();
			rc = rcptset_builder_add(b, out, on);
			if (rc == -ENOMEM)
				break;
			if (rc == 1 && nent < FZ_CAP) {
				memcpy(ents[nent], out, on + 1);
				lens[nent++] = on;
			}
		}
		off += n;
	}
	if (rcptset_builder_count(b) > FZ_CAP)
		__builtin_trap();
	s = rcptset_build(b);
	if (!s)
		return 0;
	for (size_t i = 0; i < nent; i++)
		if (!fz_has(s, ents[i], lens[i]))
			__builtin_trap();
	/* The raw input as an address: any answer, no crash. */
	{
		const char *p = (const char *)data;
		const char *at = size ? memchr(p, '@', size) : NULL;

		(void)rcptset_has(s, p, size, at ? (size_t)(at - p) + 1 : 0);
	}
	rcptset_free(s);
	return 0;
}
