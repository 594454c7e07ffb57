/* SPDX-License-Identifier: MIT */
/*
 * domtab: open-addressing hash set of lower-cased domain names (see domtab.h).
 * The table is sized to at most half full, so a miss ends within a couple of
 * probes; names live in one arena so the table is two allocations.
 */
#include "admin/domtab.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DOMTAB_NAME_MAX 255 /* RFC 1035 2.3.4 */

struct domtab_slot {
	uint32_t hash;
	uint32_t len;
	size_t off;     /* into names; len == 0 marks an empty slot */
};

struct domtab {
	struct domtab_slot *slots;
	size_t mask;
	size_t count;
	char *names;
};

static inline unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* FNV-1a over the lower-cased name. */
static uint32_t domtab_hash(const char *p, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++) {
		h ^= lower((unsigned char)p[i]);
		h *= 16777619u;
	}
	return h;
}

static size_t trim_dot(const char *p, size_t n)
{
	return n > 0 && p[n - 1] == '.' ? n - 1 : n;
}

static int name_eq(const char *stored, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (stored[i] != (char)lower((unsigned char)p[i]))
			return 0;
	return 1;
}

static struct domtab_slot *find(const struct domtab *t, const char *p, size_t n,
				uint32_t h)
{
	for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
		struct domtab_slot *s = &t->slots[i];
		if (s->len == 0)
			return s;
		if (s->hash == h && s->len == n && name_eq(t->names + s->off, p, n))
			return s;
	}
}

struct domtab *domtab_new(const char *const *domains, size_t n)
{
	struct domtab *t;
	size_t cap = 8, total = 0, off = 0;

	while (cap < n * 2)
		cap *= 2;
	for (size_t i = 0; i < n; i++)
		total += strlen(domains[i]);
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->slots = calloc(cap, sizeof(*t->slots));
	t->names = malloc(total + 1);
	if (!t->slots || !t->names)
		return domtab_free(t);
	t->mask = cap - 1;
	for (size_t i = 0; i < n; i++) {
		size_t len = trim_dot(domains[i], strlen(domains[i]));
		uint32_t h;
		struct domtab_slot *s;

		if (len == 0 || len > DOMTAB_NAME_MAX)
			continue;
		h = domtab_hash(domains[i], len);
		s = find(t, domains[i], len, h);
		if (s->len)
			continue; /* listed twice */
		for (size_t k = 0; k < len; k++)
			t->names[off + k] = (char)lower((unsigned char)domains[i][k]);
		s->hash = h;
		s->len = (uint32_t)len;
		s->off = off;
		off += len;
		t->count++;
	}
	return t;
}

struct domtab *domtab_free(struct domtab *t)
{
	if (!t)
		return NULL;
	free(t->slots);
	free(t->names);
	free(t);
	return NULL;
}

int domtab_lookup(const struct domtab *t, const char *domain, size_t len)
{
	len = trim_dot(domain, len);
	if (len == 0 || len > DOMTAB_NAME_MAX)
		return 0;
	return find(t, domain, len, domtab_hash(domain, len))->len != 0;
}

size_t domtab_count(const struct domtab *t)
{
	return t->count;
}
