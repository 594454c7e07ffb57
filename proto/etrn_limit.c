/* SPDX-License-Identifier: MIT */
/*
 * etrn_limit: see etrn_limit.h. Each shard is a chained hash table over a
 * preallocated array of entries (no malloc after start); a bucket's credit
 * is counted in units of 1/ETRN_LIMIT_PERIOD_MS token, so refilling
 * per_period tokens per period is elapsed_ms * per_period units, exactly.
 */
#include "proto/etrn_limit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/log.h"

/* Shards: enough that engine threads rarely meet on one lock, few enough
 * that each still holds ETRN_LIMIT_SHARD_MIN addresses to choose a victim
 * among. */
#define ETRN_LIMIT_SHARDS_MAX 16u
#define ETRN_LIMIT_SHARD_MIN 64u
#define ETRN_LIMIT_NIL UINT32_MAX
#define ETRN_LIMIT_CACHE_LINE 64

/* The key: the address itself, IPv4 as IPv4-mapped IPv6. */
enum etrn_limit_kind { ETRN_LIMIT_KEY_OTHER = 0, ETRN_LIMIT_KEY_IP = 6 };

struct etrn_limit_key {
	unsigned char kind;
	unsigned char addr[16];
};

struct etrn_limit_entry {
	struct etrn_limit_key key;
	uint32_t hash;
	uint32_t next;                 /* next on the chain, or ETRN_LIMIT_NIL */
	uint64_t last_ms;              /* when credit was last brought up to date */
	uint64_t credit;               /* tokens * ETRN_LIMIT_PERIOD_MS */
};

struct etrn_limit_shard {
	alignas(ETRN_LIMIT_CACHE_LINE) pthread_mutex_t mu;
	uint32_t *head;                /* nbuckets chains */
	struct etrn_limit_entry *ent;  /* cap entries, [0, used) in use */
	uint32_t used;
	uint64_t evicted_full, evicted_partial;
};

struct etrn_limit {
	unsigned per_period;
	uint64_t full;                 /* a full bucket's credit */
	unsigned shard_bits;
	uint32_t cap;                  /* entries per shard */
	uint32_t bucket_mask;          /* buckets per shard - 1 */
	atomic_int warned;             /* a partial eviction was logged */
	struct etrn_limit_shard *shard;
};

static void key_of(const char *client, struct etrn_limit_key *k)
{
	struct in_addr a4;

	memset(k, 0, sizeof(*k));
	if (inet_pton(AF_INET, client, &a4) == 1) {
		/* RFC 4291 2.5.5.2: ::ffff:a.b.c.d */
		k->kind = ETRN_LIMIT_KEY_IP;
		k->addr[10] = k->addr[11] = 0xff;
		memcpy(k->addr + 12, &a4, 4);
	} else if (inet_pton(AF_INET6, client, k->addr) == 1) {
		k->kind = ETRN_LIMIT_KEY_IP;
	}
}

static uint32_t key_hash(const struct etrn_limit_key *k)
{
	uint32_t h = hash_fnv32(HASH_FNV32_INIT, &k->kind, 1);

	return hash_fin32(hash_fnv32(h, k->addr, sizeof(k->addr)));
}

static int key_eq(const struct etrn_limit_key *a, const struct etrn_limit_key *b)
{
	return a->kind == b->kind && memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

/* Top bits choose the shard, low bits the chain: independent after
 * hash_fin32. */
static unsigned shard_of(const struct etrn_limit *l, uint32_t h)
{
	return l->shard_bits ? h >> (32 - l->shard_bits) : 0;
}

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

struct etrn_limit *etrn_limit_new(unsigned per_period, unsigned max_addrs)
{
	struct etrn_limit *l;
	unsigned nshards = 1;

	if (per_period == 0 || per_period > ETRN_LIMIT_PER_PERIOD_MAX || max_addrs == 0 ||
	    max_addrs > ETRN_LIMIT_ADDRS_MAX) {
		errno = EINVAL;
		return NULL;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		goto nomem;
	while (nshards < ETRN_LIMIT_SHARDS_MAX && max_addrs / (nshards * 2) >= ETRN_LIMIT_SHARD_MIN) {
		nshards *= 2;
		l->shard_bits++;
	}
	l->per_period = per_period;
	l->full = (uint64_t)per_period * ETRN_LIMIT_PERIOD_MS;
	l->cap = (max_addrs + nshards - 1) / nshards;
	l->bucket_mask = pow2_at_least(l->cap) - 1;
	l->shard = aligned_alloc(ETRN_LIMIT_CACHE_LINE, nshards * sizeof(*l->shard));
	if (!l->shard)
		goto nomem;
	memset(l->shard, 0, nshards * sizeof(*l->shard));
	for (unsigned i = 0; i < nshards; i++)
		pthread_mutex_init(&l->shard[i].mu, NULL);
	for (unsigned i = 0; i < nshards; i++) {
		struct etrn_limit_shard *s = &l->shard[i];

		s->head = malloc(((size_t)l->bucket_mask + 1) * sizeof(*s->head));
		s->ent = calloc(l->cap, sizeof(*s->ent));
		if (!s->head || !s->ent)
			goto nomem;
		memset(s->head, 0xff, ((size_t)l->bucket_mask + 1) * sizeof(*s->head));
	}
	return l;
nomem:
	etrn_limit_free(l);
	errno = ENOMEM;
	return NULL;
}

struct etrn_limit *etrn_limit_free(struct etrn_limit *l)
{
	if (!l)
		return NULL;
	for (unsigned i = 0; l->shard && i < 1u << l->shard_bits; i++) {
		pthread_mutex_destroy(&l->shard[i].mu);
		free(l->shard[i].head);
		free(l->shard[i].ent);
	}
	free(l->shard);
	free(l);
	return NULL;
}

/* Credit of e at now. A reading older than the bucket's (another thread
 * read the clock later but locked first) counts as no time passed. */
static uint64_t credit_at(const struct etrn_limit *l, const struct etrn_limit_entry *e,
			  uint64_t now_ms)
{
	uint64_t elapsed = now_ms > e->last_ms ? now_ms - e->last_ms : 0;

	if (elapsed >= ETRN_LIMIT_PERIOD_MS)
		return l->full;
	/* elapsed < PERIOD and per_period <= PER_PERIOD_MAX: no overflow. */
	return e->credit + elapsed * l->per_period >= l->full ? l->full
							       : e->credit + elapsed * l->per_period;
}

/* The entry to give up in a full shard: the first fully refilled one (as
 * good as absent), else the one with the most credit, the older on a tie. */
static uint32_t victim(const struct etrn_limit *l, const struct etrn_limit_shard *s,
		       uint64_t now_ms)
{
	uint32_t best = 0;
	uint64_t best_credit = 0;

	for (uint32_t i = 0; i < s->used; i++) {
		uint64_t c = credit_at(l, &s->ent[i], now_ms);

		if (c == l->full)
			return i;
		if (i == 0 || c > best_credit ||
		    (c == best_credit && s->ent[i].last_ms < s->ent[best].last_ms)) {
			best = i;
			best_credit = c;
		}
	}
	return best;
}

static void unlink_entry(const struct etrn_limit *l, struct etrn_limit_shard *s, uint32_t i)
{
	uint32_t *p = &s->head[s->ent[i].hash & l->bucket_mask];

	while (*p != i) {
		if (*p == ETRN_LIMIT_NIL)
			panic("entry %u not on its chain", i);
		p = &s->ent[*p].next;
	}
	*p = s->ent[i].next;
}

/* A slot for a new address in s (its lock held): a free one, or an evicted
 * one. */
static uint32_t slot_for_new(struct etrn_limit *l, struct etrn_limit_shard *s, uint64_t now_ms)
{
	uint32_t i;

	if (s->used < l->cap)
		return s->used++;
	i = victim(l, s, now_ms);
	if (credit_at(l, &s->ent[i], now_ms) == l->full) {
		s->evicted_full++;
	} else {
		s->evicted_partial++;
		if (!atomic_exchange(&l->warned, 1))
			log_warn("etrn_rate_limit: the table of %u client addresses is full of busy ones; "
				 "evicting the least busy (a many-address client may exceed the limit)",
				 (unsigned)(l->cap << l->shard_bits));
	}
	unlink_entry(l, s, i);
	return i;
}

int etrn_limit_take(struct etrn_limit *l, const char *client, uint64_t now_ms)
{
	struct etrn_limit_key k;
	struct etrn_limit_shard *s;
	struct etrn_limit_entry *e = NULL;
	uint32_t h, i;
	int ok;

	key_of(client, &k);
	h = key_hash(&k);
	s = &l->shard[shard_of(l, h)];
	pthread_mutex_lock(&s->mu);
	for (i = s->head[h & l->bucket_mask]; i != ETRN_LIMIT_NIL; i = s->ent[i].next) {
		if (s->ent[i].hash == h && key_eq(&s->ent[i].key, &k)) {
			e = &s->ent[i];
			e->credit = credit_at(l, e, now_ms);
			break;
		}
	}
	if (!e) {
		i = slot_for_new(l, s, now_ms);
		e = &s->ent[i];
		e->key = k;
		e->hash = h;
		e->credit = l->full;
		e->last_ms = now_ms;
		e->next = s->head[h & l->bucket_mask];
		s->head[h & l->bucket_mask] = i;
	}
	if (now_ms > e->last_ms)
		e->last_ms = now_ms;
	ok = e->credit >= ETRN_LIMIT_PERIOD_MS;
	if (ok)
		e->credit -= ETRN_LIMIT_PERIOD_MS;
	pthread_mutex_unlock(&s->mu);
	return ok;
}

void etrn_limit_stats(struct etrn_limit *l, struct etrn_limit_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->capacity = (uint64_t)l->cap << l->shard_bits;
	for (unsigned i = 0; i < 1u << l->shard_bits; i++) {
		struct etrn_limit_shard *s = &l->shard[i];

		pthread_mutex_lock(&s->mu);
		st->addrs += s->used;
		st->evicted_full += s->evicted_full;
		st->evicted_partial += s->evicted_partial;
		pthread_mutex_unlock(&s->mu);
	}
}

unsigned etrn_limit_chain_of(const struct etrn_limit *l, const char *client)
{
	struct etrn_limit_key k;
	uint32_t h;

	key_of(client, &k);
	h = key_hash(&k);
	return shard_of(l, h) * (l->bucket_mask + 1) + (h & l->bucket_mask);
}
