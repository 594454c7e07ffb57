/* SPDX-License-Identifier: MIT */
/*
 * htab: the shared open-addressing index. A power-of-two array of slots,
 * each (32-bit hash tag, element number + 1), over elements the caller keeps
 * in its own array; linear probing, backward-shift deletion (no tombstones
 * pile up under churn), grown to stay at most half full. The caller hashes
 * (core/hash.h) and compares keys: htab_find() calls eq only on a tag match,
 * and is inline so a constant eq is inlined at the call site. Not
 * thread-safe: one writer, or any number of readers of a table that no
 * longer changes (admin/domtab's immutable snapshots).
 */
#ifndef ETRND_CORE_HTAB_H
#define ETRND_CORE_HTAB_H

#include <stddef.h>
#include <stdint.h>

#define HTAB_MIN_SLOTS 8u
#define HTAB_NONE UINT32_MAX /* "no element" from htab_find() */

struct htab_slot {
	uint32_t tag; /* the element's full hash; its low bits pick the home slot */
	uint32_t val; /* element number + 1; 0 marks an empty slot */
};

struct htab {
	struct htab_slot *slots; /* NULL until the first htab_reserve() */
	uint32_t mask;           /* slots - 1 */
	uint32_t count;          /* elements indexed */
};

/* 1 when element number el is the key the caller looks for. */
typedef int (*htab_eq_fn)(const void *ctx, uint32_t el, const void *key);

/* An empty table without slots (htab_find() on it finds nothing). */
static inline void htab_init(struct htab *h)
{
	h->slots = NULL;
	h->mask = 0;
	h->count = 0;
}

/* Free the slots; the table is empty again. */
void htab_fini(struct htab *h);

/* Make room for n elements in all (grow, rehashing from the tags; never
 * shrinks). Returns 0 or -ENOMEM (the table is unchanged). */
int htab_reserve(struct htab *h, uint32_t n);

/* Index element el (which must not be indexed yet) under hash, growing as
 * needed. Returns 0 or -ENOMEM (nothing indexed). */
int htab_insert(struct htab *h, uint32_t hash, uint32_t el);

/* Take element el, indexed under hash, out of the index. Panics when it is
 * not there (a broken caller invariant). */
void htab_remove(struct htab *h, uint32_t hash, uint32_t el);

/* Element el, indexed under hash, is now element number to (the caller
 * moved it in its array). Panics when el is not there. */
void htab_renumber(struct htab *h, uint32_t hash, uint32_t el, uint32_t to);

/* Bytes the slots take (memory accounting). */
static inline size_t htab_mem(const struct htab *h)
{
	return h->slots != NULL ? ((size_t)h->mask + 1) * sizeof(*h->slots) : 0;
}

/* The element whose key eq() confirms, among those indexed under hash, or
 * HTAB_NONE. A miss ends at the first empty slot (a short run: the table is
 * at most half full). */
static inline uint32_t htab_find(const struct htab *h, uint32_t hash,
		htab_eq_fn eq, const void *ctx, const void *key)
{
	if (h->slots == NULL)
		return HTAB_NONE;
	for (uint32_t i = hash & h->mask;; i = (i + 1) & h->mask) {
		const struct htab_slot *s = &h->slots[i];

		if (s->val == 0)
			return HTAB_NONE;
		if (s->tag == hash && eq(ctx, s->val - 1, key))
			return s->val - 1;
	}
}

#endif
