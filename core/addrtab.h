/* SPDX-License-Identifier: MIT */
/*
 * addrtab: the one node-wide table keyed by client address, shared by every
 * engine thread: sharded by address, each shard behind a short mutex, a
 * chained hash over a preallocated array of entries (no malloc after start),
 * a full key compare (no address can reach or reset another's entry), and
 * bounded: when full, the owner's rank function picks the entry to evict.
 * Each entry holds two 64-bit words whose meaning is the owner's (the ETRN
 * limiter's token bucket, the per-address connection count).
 */
#ifndef ETRND_CORE_ADDRTAB_H
#define ETRND_CORE_ADDRTAB_H

#include <stdint.h>

/* Most addresses a table may be asked to hold (chain indices are 32-bit). */
#define ADDRTAB_ADDRS_MAX (1u << 24)

/* What the owner keeps per address; zeroed when an entry is made. */
struct addrtab_val {
	uint64_t a, b;
};

/*
 * How good a victim v is at now, when a full shard needs room:
 * ADDRTAB_RANK_FREE is as good as absent (taken at once, counted as a
 * harmless eviction); ADDRTAB_RANK_PINNED is never evicted; otherwise the
 * highest rank goes (the first on a tie). Called under the shard's lock.
 */
#define ADDRTAB_RANK_FREE UINT64_MAX
#define ADDRTAB_RANK_PINNED 0u
typedef uint64_t (*addrtab_rank_fn)(void *arg, const struct addrtab_val *v, uint64_t now);

enum addrtab_how {
	ADDRTAB_FOUND,       /* the address was there */
	ADDRTAB_NEW,         /* made, in a free slot or a FREE-ranked one */
	ADDRTAB_NEW_EVICTED, /* made in the slot of a ranked (live) entry */
};

/* The owner's work on one entry, under the shard's lock: read and change
 * *v; set *drop to remove the entry afterwards. Its result is returned by
 * addrtab_update(). */
typedef int (*addrtab_fn)(void *arg, struct addrtab_val *v, enum addrtab_how how, int *drop);

struct addrtab;

/*
 * A table of up to max_addrs addresses (rounded up to whole shards; 1 ..
 * ADDRTAB_ADDRS_MAX), evicting by rank(rank_arg, ...). NULL with errno
 * EINVAL or ENOMEM. The caller owns it and frees it after every thread that
 * uses it has stopped.
 */
struct addrtab *addrtab_new(unsigned max_addrs, addrtab_rank_fn rank, void *rank_arg);
/* Free; accepts NULL, returns NULL. */
struct addrtab *addrtab_free(struct addrtab *t);

/* addrtab_update() flag: make the entry when the address is absent. */
#define ADDRTAB_CREATE 0x1u

/*
 * Run fn on client's entry (client: a printable address as inet_ntop gives
 * it; IPv4 and IPv4-mapped IPv6 "::ffff:a.b.c.d" are the same address; text
 * that is no address, "unknown", is one shared entry). now is passed to the
 * rank function. Returns fn's result; -ENOENT when the address is absent
 * and flags lack ADDRTAB_CREATE; -ENOSPC when its shard is full and every
 * entry in it is pinned (fn is not called). Thread-safe.
 */
int addrtab_update(struct addrtab *t, const char *client, uint64_t now, unsigned flags,
		   addrtab_fn fn, void *arg);

struct addrtab_stats {
	uint64_t addrs;          /* addresses held now */
	uint64_t capacity;       /* addresses it can hold */
	uint64_t evicted_free;   /* evictions of FREE-ranked entries (harmless) */
	uint64_t evicted_ranked; /* evictions of live entries */
	uint64_t full;           /* updates refused: a shard full of pinned ones */
};

/* Counters, summed over the shards (each shard's read under its lock). */
void addrtab_stats(struct addrtab *t, struct addrtab_stats *st);
/* Addresses it can hold (fixed at addrtab_new()). */
uint64_t addrtab_capacity(const struct addrtab *t);

/* The chain (shard and bucket, as one number) client's entry lives on: two
 * addresses with the same number collide. For tests that need a collision. */
unsigned addrtab_chain_of(const struct addrtab *t, const char *client);

#endif
