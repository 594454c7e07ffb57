/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/htab.c: table-driven churn (insert, remove with the
 * last element moved into the hole as domtab's builder does, re-insert)
 * under hash functions from good to pathological, checked against a plain
 * array after every step: every key present is found at its element number,
 * keys removed are not, and the table never fills past half.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "core/hash.h"
#include "core/htab.h"

#define HT_KEYS 600   /* key space per case */
#define HT_STEPS 4000

enum ht_hash {
	HT_HASH_FNV,       /* well spread */
	HT_HASH_SAME_HOME, /* distinct tags, all in one home slot: one long run */
	HT_HASH_SAME_TAG,  /* every key the same tag: eq() decides alone */
	HT_HASH_FEW,       /* 8 tags: runs wrap around the table end */
};

struct ht_case {
	const char *name;
	enum ht_hash hash;
	unsigned keys;      /* keys drawn from [0, keys) */
	unsigned insert_pct; /* share of steps that insert (else remove) */
	uint32_t seed;
};

static const struct ht_case ht_cases[] = {
	{ "fnv_grow", HT_HASH_FNV, HT_KEYS, 90, 1 },
	{ "fnv_churn", HT_HASH_FNV, HT_KEYS, 50, 2 },
	{ "same_home_churn", HT_HASH_SAME_HOME, 64, 55, 3 },
	{ "same_tag_churn", HT_HASH_SAME_TAG, 64, 55, 4 },
	{ "few_tags_wrap", HT_HASH_FEW, 200, 60, 5 },
	{ "drain_to_empty", HT_HASH_FNV, 100, 20, 6 },
};

struct ht_state {
	struct htab h;
	enum ht_hash hash;
	uint32_t els[HT_KEYS];  /* element number -> key */
	uint32_t nels;
	int64_t where[HT_KEYS]; /* key -> element number, -1 absent */
};

static uint32_t ht_hash_of(enum ht_hash how, uint32_t key)
{
	switch (how) {
	case HT_HASH_SAME_HOME:
		return key << 16; /* low bits 0 in every table up to 64k slots */
	case HT_HASH_SAME_TAG:
		return 0x12345677u;
	case HT_HASH_FEW:
		return 0xFFFFFFFFu - (key & 7u); /* homes at the very end */
	default:
		return hash_fin32(hash_fnv32(HASH_FNV32_INIT, &key, sizeof(key)));
	}
}

static int ht_eq(const void *ctx, uint32_t el, const void *key)
{
	const struct ht_state *st = ctx;

	cr_assert_lt(el, st->nels, "eq() on element %u of %u", el, st->nels);
	return st->els[el] == *(const uint32_t *)key;
}

static uint32_t ht_find(const struct ht_state *st, uint32_t key)
{
	return htab_find(&st->h, ht_hash_of(st->hash, key), ht_eq, st, &key);
}

static void ht_check(const struct ht_state *st, const struct ht_case *c, unsigned step)
{
	cr_assert_eq(st->h.count, st->nels, "%s step %u: count", c->name, step);
	if (st->h.slots != NULL)
		cr_assert_leq((uint64_t)st->h.count * 2, (uint64_t)st->h.mask + 1,
				"%s step %u: over half full", c->name, step);
	for (uint32_t k = 0; k < c->keys; k++) {
		uint32_t want = st->where[k] < 0 ? HTAB_NONE : (uint32_t)st->where[k];

		cr_assert_eq(ht_find(st, k), want, "%s step %u: key %u", c->name, step, k);
	}
}

static void ht_step(struct ht_state *st, uint32_t key, int insert)
{
	uint32_t h = ht_hash_of(st->hash, key);

	if (insert && st->where[key] < 0) {
		cr_assert_eq(htab_insert(&st->h, h, st->nels), 0);
		st->els[st->nels] = key;
		st->where[key] = st->nels++;
	} else if (!insert && st->where[key] >= 0) {
		uint32_t el = (uint32_t)st->where[key], last = st->nels - 1;

		htab_remove(&st->h, h, el);
		st->where[key] = -1;
		if (el != last) {
			uint32_t moved = st->els[last];

			htab_renumber(&st->h, ht_hash_of(st->hash, moved), last, el);
			st->els[el] = moved;
			st->where[moved] = el;
		}
		st->nels--;
	}
}

Test(htab, churn_table)
{
	static struct ht_state st;

	for (size_t i = 0; i < sizeof(ht_cases) / sizeof(ht_cases[0]); i++) {
		const struct ht_case *c = &ht_cases[i];
		uint32_t rnd = c->seed;

		memset(&st, 0, sizeof(st));
		htab_init(&st.h);
		st.hash = c->hash;
		for (uint32_t k = 0; k < HT_KEYS; k++)
			st.where[k] = -1;
		ht_check(&st, c, 0);
		for (unsigned step = 1; step <= HT_STEPS; step++) {
			rnd = rnd * 1103515245u + 12345u;
			ht_step(&st, (rnd >> 8) % c->keys, (rnd >> 24) % 100 < c->insert_pct);
			if (step % 97 == 0 || c->keys <= 64)
				ht_check(&st, c, step);
		}
		/* Empty it completely: every run must shift back cleanly. */
		for (uint32_t k = 0; k < c->keys; k++)
			ht_step(&st, k, 0);
		ht_check(&st, c, HT_STEPS + 1);
		htab_fini(&st.h);
	}
}

Test(htab, empty_reserve_and_mem)
{
	struct htab h;
	uint32_t key = 7;
	struct ht_state st = { .hash = HT_HASH_FNV };

	htab_init(&h);
	cr_expect_eq(htab_mem(&h), 0);
	cr_expect_eq(htab_find(&h, 1, ht_eq, &st, &key), HTAB_NONE);
	cr_assert_eq(htab_reserve(&h, 100), 0);
	cr_expect_eq(h.mask + 1, 256, "100 elements at most half full: 256 slots");
	cr_expect_eq(htab_mem(&h), 256 * sizeof(struct htab_slot));
	cr_assert_eq(htab_reserve(&h, 3), 0);
	cr_expect_eq(h.mask + 1, 256, "reserve never shrinks");
	cr_expect_eq(htab_find(&h, 1, ht_eq, &st, &key), HTAB_NONE);
	htab_fini(&h);
	cr_expect_null(h.slots);
	cr_expect_eq(h.count, 0);
}
