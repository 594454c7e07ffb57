/* SPDX-License-Identifier: MIT */
/*
 * addrtab: see addrtab.h. Each shard is a chained hash table over a
 * preallocated array of entries: [0, used) have been handed out, and those
 * dropped since wait on a free list (reused before the array grows), so
 * only a shard whose every entry is live ever asks the owner for a victim.
 */
#include "core/addrtab.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/log.h"

/* Shards: enough that engine threads rarely meet on one lock, few enough
 * that each still holds ADDRTAB_SHARD_MIN addresses to choose a victim
 * among. */
#define ADDRTAB_SHARDS_MAX 16u
#define ADDRTAB_SHARD_MIN 64u
#define ADDRTAB_NIL UINT32_MAX
#define ADDRTAB_CACHE_LINE 64

/* The key: the address itself, IPv4 as IPv4-mapped IPv6. */
enum addrtab_kind { ADDRTAB_KEY_OTHER = 0, ADDRTAB_KEY_IP = 6 };

struct addrtab_key {
	unsigned char kind;
	unsigned char addr[16];
};

struct addrtab_entry {
	struct addrtab_key key;
	uint32_t hash;
	uint32_t next;                 /* next on the chain or free list, or NIL */
	struct addrtab_val val;
};

struct addrtab_shard {
	alignas(ADDRTAB_CACHE_LINE) pthread_mutex_t mu;
	uint32_t *head;                /* nbuckets chains */
	struct addrtab_entry *ent;     /* cap entries, [0, used) handed out */
	uint32_t used;
	uint32_t free;                 /* dropped entries, or NIL */
	uint32_t live;                 /* entries on chains */
	uint64_t evicted_free, evicted_ranked, full;
};

struct addrtab {
	addrtab_rank_fn rank;
	void *rank_arg;
	unsigned shard_bits;
	uint32_t cap;                  /* entries per shard */
	uint32_t bucket_mask;          /* buckets per shard - 1 */
	struct addrtab_shard *shard;
};

static void key_of(const char *client, struct addrtab_key *k)
{
	struct in_addr a4;

	memset(k, 0, sizeof(*k));
	if (inet_pton(AF_INET, client, &a4) == 1) {
		/* RFC 4291 2.5.5.2: ::ffff:a.b.c.d */
		k->kind = ADDRTAB_KEY_IP;
		k->addr[10] = k->addr[11] = 0xff;
		memcpy(k->addr + 12, &a4, 4);
	} else if (inet_pton(AF_INET6, client, k->addr) == 1) {
		k->kind = ADDRTAB_KEY_IP;
	}
}

static uint32_t key_hash(const struct addrtab_key *k)
{
	uint32_t h = hash_fnv32(HASH_FNV32_INIT, &k->kind, 1);

	return hash_fin32(hash_fnv32(h, k->addr, sizeof(k->addr)));
}

static int key_eq(const struct addrtab_key *a, const struct addrtab_key *b)
{
	return a->kind == b->kind && memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

/* Top bits choose the shard, low bits the chain: independent after
 * hash_fin32. */
static unsigned shard_of(const struct addrtab *t, uint32_t h)
{
	return t->shard_bits ? h >> (32 - t->shard_bits) : 0;
}

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

struct addrtab *addrtab_new(unsigned max_addrs, addrtab_rank_fn rank, void *rank_arg)
{
	struct addrtab *t;
	unsigned nshards = 1;

	if (!rank || max_addrs == 0 || max_addrs > ADDRTAB_ADDRS_MAX) {
		errno = EINVAL;
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		goto nomem;
	while (nshards < ADDRTAB_SHARDS_MAX && max_addrs / (nshards * 2) >= ADDRTAB_SHARD_MIN) {
		nshards *= 2;
		t->shard_bits++;
	}
	t->rank = rank;
	t->rank_arg = rank_arg;
	t->cap = (max_addrs + nshards - 1) / nshards;
	t->bucket_mask = pow2_at_least(t->cap) - 1;
	t->shard = aligned_alloc(ADDRTAB_CACHE_LINE, nshards * sizeof(*t->shard));
	if (!t->shard)
		goto nomem;
	memset(t->shard, 0, nshards * sizeof(*t->shard));
	for (unsigned i = 0; i < nshards; i++) {
		pthread_mutex_init(&t->shard[i].mu, NULL);
		t->shard[i].free = ADDRTAB_NIL;
	}
	for (unsigned i = 0; i < nshards; i++) {
		struct addrtab_shard *s = &t->shard[i];

		s->head = malloc(((size_t)t->bucket_mask + 1) * sizeof(*s->head));
		s->ent = calloc(t->cap, sizeof(*s->ent));
		if (!s->head || !s->ent)
			goto nomem;
		memset(s->head, 0xff, ((size_t)t->bucket_mask + 1) * sizeof(*s->head));
	}
	return t;
nomem:
	addrtab_free(t);
	errno = ENOMEM;
	return NULL;
}

struct addrtab *addrtab_free(struct addrtab *t)
{
	if (!t)
		return NULL;
	for (unsigned i = 0; t->shard && i < 1u << t->shard_bits; i++) {
		pthread_mutex_destroy(&t->shard[i].mu);
		free(t->shard[i].head);
		free(t->shard[i].ent);
	}
	free(t->shard);
	free(t);
	return NULL;
}

/* The live entry to give up in a full shard: the first FREE-ranked one,
 * else the highest ranked; ADDRTAB_NIL when every one is pinned. */
static uint32_t victim(const struct addrtab *t, const struct addrtab_shard *s, uint64_t now,
		       uint64_t *rank)
{
	uint32_t best = ADDRTAB_NIL;

	*rank = ADDRTAB_RANK_PINNED;
	for (uint32_t i = 0; i < s->used; i++) {
		uint64_t r = t->rank(t->rank_arg, &s->ent[i].val, now);

		if (r == ADDRTAB_RANK_FREE) {
			*rank = r;
			return i;
		}
		if (r > *rank) {
			best = i;
			*rank = r;
		}
	}
	return best;
}

static void unlink_entry(const struct addrtab *t, struct addrtab_shard *s, uint32_t i)
{
	uint32_t *p = &s->head[s->ent[i].hash & t->bucket_mask];

	while (*p != i) {
		if (*p == ADDRTAB_NIL)
			panic("entry %u not on its chain", i);
		p = &s->ent[*p].next;
	}
	*p = s->ent[i].next;
	s->live--;
}

/* A slot for a new address in s (its lock held): a dropped one, a never
 * used one, or an evicted one (*how says which); ADDRTAB_NIL when full of
 * pinned entries. */
static uint32_t slot_for_new(struct addrtab *t, struct addrtab_shard *s, uint64_t now,
			     enum addrtab_how *how)
{
	uint64_t rank;
	uint32_t i;

	*how = ADDRTAB_NEW;
	if (s->free != ADDRTAB_NIL) {
		i = s->free;
		s->free = s->ent[i].next;
		return i;
	}
	if (s->used < t->cap)
		return s->used++;
	i = victim(t, s, now, &rank);
	if (i == ADDRTAB_NIL) {
		s->full++;
		return i;
	}
	if (rank == ADDRTAB_RANK_FREE) {
		s->evicted_free++;
	} else {
		s->evicted_ranked++;
		*how = ADDRTAB_NEW_EVICTED;
	}
	unlink_entry(t, s, i);
	return i;
}

static uint32_t find(const struct addrtab *t, const struct addrtab_shard *s,
		     const struct addrtab_key *k, uint32_t h)
{
	uint32_t i;

	for (i = s->head[h & t->bucket_mask]; i != ADDRTAB_NIL; i = s->ent[i].next)
		if (s->ent[i].hash == h && key_eq(&s->ent[i].key, k))
			break;
	return i;
}

int addrtab_update(struct addrtab *t, const char *client, uint64_t now, unsigned flags,
		   addrtab_fn fn, void *arg)
{
	struct addrtab_key k;
	struct addrtab_shard *s;
	enum addrtab_how how = ADDRTAB_FOUND;
	uint32_t h, i;
	int rc, drop = 0;

	key_of(client, &k);
	h = key_hash(&k);
	s = &t->shard[shard_of(t, h)];
	pthread_mutex_lock(&s->mu);
	i = find(t, s, &k, h);
	if (i == ADDRTAB_NIL) {
		rc = flags & ADDRTAB_CREATE ? -ENOSPC : -ENOENT;
		if (!(flags & ADDRTAB_CREATE))
			goto out;
		i = slot_for_new(t, s, now, &how);
		if (i == ADDRTAB_NIL)
			goto out;
		memset(&s->ent[i], 0, sizeof(s->ent[i]));
		s->ent[i].key = k;
		s->ent[i].hash = h;
		s->ent[i].next = s->head[h & t->bucket_mask];
		s->head[h & t->bucket_mask] = i;
		s->live++;
	}
	rc = fn(arg, &s->ent[i].val, how, &drop);
	if (drop) {
		unlink_entry(t, s, i);
		s->ent[i].next = s->free;
		s->free = i;
	}
out:
	pthread_mutex_unlock(&s->mu);
	return rc;
}

void addrtab_stats(struct addrtab *t, struct addrtab_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->capacity = addrtab_capacity(t);
	for (unsigned i = 0; i < 1u << t->shard_bits; i++) {
		struct addrtab_shard *s = &t->shard[i];

		pthread_mutex_lock(&s->mu);
		st->addrs += s->live;
		st->evicted_free += s->evicted_free;
		st->evicted_ranked += s->evicted_ranked;
		st->full += s->full;
		pthread_mutex_unlock(&s->mu);
	}
}

uint64_t addrtab_capacity(const struct addrtab *t)
{
	return (uint64_t)t->cap << t->shard_bits;
}

unsigned addrtab_chain_of(const struct addrtab *t, const char *client)
{
	struct addrtab_key k;
	uint32_t h;

	key_of(client, &k);
	h = key_hash(&k);
	return shard_of(t, h) * (t->bucket_mask + 1) + (h & t->bucket_mask);
}
