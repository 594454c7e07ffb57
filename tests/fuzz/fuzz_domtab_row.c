/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the Redis row path: the input's lines are a domain
 * name then the hash's field/value pairs (HGETALL etrnd:domain:NAME). The
 * name goes through schema_domain_norm, the pairs through
 * schema_row_from_fields; the row's networks are written back and read
 * again (same list), then the row is put in a domtab, built, and found by
 * its name with every setting intact. The first value is also tried as the
 * name's route (etrnd:route:NAME): taken exactly when schema_route_check
 * takes it, and found again in the built table.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin/schema.h"
#include "core/domtab.h"

#define FZ_FIELDS_MAX 64          /* field/value strings taken */
#define FZ_WHY_MAX 1024
#define FZ_CIDR_TEXT_MAX (DOMTAB_CIDR_MAX * 48)

static void fz_cidr_roundtrip(const struct domtab_row *row)
{
	static struct cidr back[DOMTAB_CIDR_MAX];
	char text[FZ_CIDR_TEXT_MAX], why[FZ_WHY_MAX];
	unsigned n = 0;

	if (row->netrn_from > DOMTAB_CIDR_MAX)
		__builtin_trap();
	if (cidr_list_format(row->etrn_from, row->netrn_from, text, sizeof(text)))
		__builtin_trap();
	if (row->netrn_from == 0)
		return;
	if (cidr_list_parse(text, back, DOMTAB_CIDR_MAX, &n, why, sizeof(why)) ||
			n != row->netrn_from ||
			memcmp(back, row->etrn_from, n * sizeof(back[0])))
		__builtin_trap();
}

static void fz_table(const struct domtab_row *row, const char *route)
{
	struct domtab_builder *b = domtab_builder_new();
	struct domtab *t;
	const struct domtab_row *r;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0xc0000201) };

	if (!b)
		abort();
	if (route) {
		char why[FZ_WHY_MAX];
		int ok = schema_route_check(route, why, sizeof(why)) == 0;

		if (domtab_builder_route_put(b, row->name, route) != (ok ? 0 : -EINVAL))
			__builtin_trap();
		if (!ok)
			route = NULL;
	}
	if (domtab_builder_put(b, row) != 0) {
		domtab_builder_free(b);
		return;
	}
	t = domtab_build(b);
	if (!t)
		abort();
	r = domtab_find(t, row->name, strlen(row->name));
	if (!r || strcmp(r->name, row->name) || r->netrn_from != row->netrn_from ||
			r->quota_bytes != row->quota_bytes || r->max_hold_ms != row->max_hold_ms ||
			r->tls != row->tls || r->mode != row->mode ||
			!r->queue != !row->queue || !r->dest != !row->dest ||
			(r->queue && strcmp(r->queue, row->queue)) ||
			(r->dest && strcmp(r->dest, row->dest)))
		__builtin_trap();
	if (domtab_row_allows(r, (const struct sockaddr *)&sin) !=
			domtab_row_allows(row, (const struct sockaddr *)&sin))
		__builtin_trap();
	if (route ? !domtab_route(t, row->name, strlen(row->name)) ||
			strcmp(domtab_route(t, row->name, strlen(row->name)), route) :
			domtab_route(t, row->name, strlen(row->name)) != NULL)
		__builtin_trap();
	domtab_free(t);
	domtab_builder_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct cidr cidrs[DOMTAB_CIDR_MAX];
	char *copy = malloc(size + 1), *fv[FZ_FIELDS_MAX], *p, *nl;
	char name[DOMTAB_NAME_MAX + 1], why[FZ_WHY_MAX];
	struct domtab_row row;
	size_t nfv = 0;
	int bad;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	p = copy;
	nl = strchr(p, '\n');
	if (nl)
		*nl = '\0';
	if (schema_domain_norm(p, 1, name, why, sizeof(why)) != 0)
		strcpy(name, "x.test");
	for (p = nl ? nl + 1 : NULL; p && nfv < FZ_FIELDS_MAX; p = nl ? nl + 1 : NULL) {
		nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		fv[nfv++] = p;
	}
	bad = schema_row_from_fields(&row, cidrs, name, (const char *const *)fv, nfv,
			why, sizeof(why));
	if (bad < 0 || (bad > 0 && why[0] == '\0') || row.name != name)
		__builtin_trap();
	fz_cidr_roundtrip(&row);
	fz_table(&row, nfv > 1 ? fv[1] : NULL);
	free(copy);
	return 0;
}
