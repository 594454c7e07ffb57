/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for core/dnsbl_list.c. Input: 4 bytes of an answer
 * address, then text that is parsed both as a dnsbl site list and as a
 * dnsbl_reply template. A refused list says why on one line and leaves the
 * list as it was; an accepted one has names that make query names for an
 * IPv4 and an IPv6 client, every item a weight in range and a query index
 * at or before it, and matching never reads past the patterns. A checked
 * template expands within DNSBL_REPLY_MAX.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/dnsbl_list.h"

#define FZ_HEAD 4

static struct dnsbl_list fz_list;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[512], name[DNSBL_QUERY_MAX], tmpl[DNSBL_REPLY_MAX * 2], out[DNSBL_REPLY_MAX];
	const char *text;
	size_t len;

	if (size < FZ_HEAD)
		return 0;
	text = (const char *)data + FZ_HEAD;
	len = size - FZ_HEAD;
	fz_list.n = 99;
	why[0] = '\0';
	if (dnsbl_list_parse(&fz_list, text, len, why, sizeof(why))) {
		if (fz_list.n != 99 || !why[0] || strchr(why, '\n'))
			abort();
	} else {
		if (fz_list.n > DNSBL_SITES_MAX)
			abort();
		for (unsigned i = 0; i < fz_list.n; i++) {
			const struct dnsbl_site *s = &fz_list.site[i];

			if (s->query > i || s->weight > DNSBL_WEIGHT_LIMIT ||
			    s->weight < -DNSBL_WEIGHT_LIMIT || s->npatterns > DNSBL_PATTERNS_MAX ||
			    strlen(s->name) >= DNSBL_SITE_NAME_MAX)
				abort();
			if (dnsbl_list_query("192.0.2.1", s->name, name, sizeof(name)) ||
			    dnsbl_list_query("2001:db8::1", s->name, name, sizeof(name)))
				abort();
			(void)dnsbl_list_match(s, data);
		}
	}
	if (len < sizeof(tmpl)) {
		memcpy(tmpl, text, len);
		tmpl[len] = '\0';
		if (dnsbl_list_reply_check(tmpl, why, sizeof(why)) == 0 &&
		    dnsbl_list_reply(tmpl, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
				     "x.example", out, sizeof(out)) >= DNSBL_REPLY_MAX)
			abort();
	}
	return 0;
}
