/* SPDX-License-Identifier: MIT */
/*
 * htab: see htab.h. Grow rehashes from the stored tags, so it never calls
 * back into the caller; removal shifts later members of the probe run back
 * into the hole, which keeps every run unbroken without tombstones.
 */
#include "core/htab.h"

#include <errno.h>
#include <stdlib.h>

#include "core/log.h"

/* Grow before the table is more than half full: a miss then ends within a
 * couple of probes (the domtab lookup per RCPT mostly misses the wildcard
 * probes). */
#define HTAB_LOAD_NUM 1u
#define HTAB_LOAD_DEN 2u

void htab_fini(struct htab *h)
{
	free(h->slots);
	htab_init(h);
}

static void htab_place(struct htab_slot *slots, uint32_t mask, uint32_t tag,
		uint32_t val)
{
	uint32_t i = tag & mask;

	while (slots[i].val != 0)
		i = (i + 1) & mask;
	slots[i].tag = tag;
	slots[i].val = val;
}

int htab_reserve(struct htab *h, uint32_t n)
{
	uint64_t cap = h->slots != NULL ? (uint64_t)h->mask + 1 : HTAB_MIN_SLOTS;
	struct htab_slot *ns;

	while ((uint64_t)n * HTAB_LOAD_DEN > cap * HTAB_LOAD_NUM)
		cap *= 2;
	if (h->slots != NULL && cap == (uint64_t)h->mask + 1)
		return 0;
	if (cap > (uint64_t)UINT32_MAX + 1) /* the mask must fit 32 bits */
		return -ENOMEM;
	ns = calloc((size_t)cap, sizeof(*ns));
	if (ns == NULL)
		return -ENOMEM;
	if (h->slots != NULL) {
		for (uint32_t i = 0; i <= h->mask; i++)
			if (h->slots[i].val != 0)
				htab_place(ns, (uint32_t)(cap - 1), h->slots[i].tag,
						h->slots[i].val);
		free(h->slots);
	}
	h->slots = ns;
	h->mask = (uint32_t)(cap - 1);
	return 0;
}

int htab_insert(struct htab *h, uint32_t hash, uint32_t el)
{
	int ret;

	if (el == UINT32_MAX || h->count == UINT32_MAX - 1)
		return -ENOMEM;
	ret = htab_reserve(h, h->count + 1);
	if (ret < 0)
		return ret;
	htab_place(h->slots, h->mask, hash, el + 1);
	h->count++;
	return 0;
}

static uint32_t htab_slot_of(const struct htab *h, uint32_t hash, uint32_t el)
{
	if (h->slots != NULL)
		for (uint32_t i = hash & h->mask;; i = (i + 1) & h->mask) {
			if (h->slots[i].val == el + 1)
				return i;
			if (h->slots[i].val == 0)
				break;
		}
	panic("htab: element %u (hash %08x) not indexed", el, hash);
}

void htab_remove(struct htab *h, uint32_t hash, uint32_t el)
{
	uint32_t i = htab_slot_of(h, hash, el);

	for (uint32_t j = (i + 1) & h->mask; h->slots[j].val != 0; j = (j + 1) & h->mask) {
		uint32_t home = h->slots[j].tag & h->mask;

		/* Move j into the hole at i unless its home lies in (i, j]. */
		if (((j - home) & h->mask) >= ((j - i) & h->mask)) {
			h->slots[i] = h->slots[j];
			i = j;
		}
	}
	h->slots[i].val = 0;
	h->slots[i].tag = 0;
	h->count--;
}

void htab_renumber(struct htab *h, uint32_t hash, uint32_t el, uint32_t to)
{
	h->slots[htab_slot_of(h, hash, el)].val = to + 1;
}
