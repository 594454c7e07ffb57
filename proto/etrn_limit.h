/* SPDX-License-Identifier: MIT */
/*
 * etrn_limit: the node-wide ETRN rate limit per client address. A TOKEN
 * BUCKET per address (capacity etrn_rate_limit, refilled at etrn_rate_limit
 * per 60 s, in exact integer arithmetic), one limiter for the whole node,
 * shared by every engine thread: sharded by address, each shard behind a
 * short mutex (ETRN is not a per-message path): the node's one address table,
 * core/addrtab. Keyed by the binary address with a full key compare, so no
 * address can reset or share another's bucket.
 */
#ifndef ETRND_PROTO_ETRN_LIMIT_H
#define ETRND_PROTO_ETRN_LIMIT_H

#include <stdint.h>

#include "core/addrtab.h"

/* The period etrn_rate_limit is counted over (config.h: "per minute"). */
#define ETRN_LIMIT_PERIOD_MS 60000u
/* Addresses remembered at once by the node's limiter (about 48 bytes each). */
#define ETRN_LIMIT_ADDRS_DEFAULT 8192u
/* Most addresses a limiter may be asked to hold (chain indices are 32-bit). */
#define ETRN_LIMIT_ADDRS_MAX ADDRTAB_ADDRS_MAX
/* Most requests per period: config.c's range for etrn_rate_limit. */
#define ETRN_LIMIT_PER_PERIOD_MAX 100000u

struct etrn_limit;

/*
 * A limiter allowing per_period requests per ETRN_LIMIT_PERIOD_MS from each
 * address, remembering up to max_addrs addresses (rounded up to whole
 * shards). per_period must be 1..ETRN_LIMIT_PER_PERIOD_MAX: 0 is refused
 * (EINVAL) as config.c refuses etrn_rate_limit = 0; there is no "unlimited".
 * NULL with errno EINVAL or ENOMEM. Create once at start (drain_hub_new);
 * the caller owns it and frees it after every thread that takes from it.
 */
struct etrn_limit *etrn_limit_new(unsigned per_period, unsigned max_addrs);
/* Free; accepts NULL, returns NULL. */
struct etrn_limit *etrn_limit_free(struct etrn_limit *l);

/*
 * Take one request of client (its printable address, as loop.c's
 * inet_ntop gives it) at now_ms, a monotonic clock in milliseconds (a
 * caller's reading may be a little older than another thread's: time never
 * runs backwards for a bucket). 1 when accepted, 0 when over the limit.
 * IPv4 and IPv4-mapped IPv6 ("::ffff:a.b.c.d") are the same address. Text
 * that is no address ("unknown") shares one bucket. Thread-safe.
 *
 * When the table is full, the entry evicted is one whose bucket has
 * refilled completely (the same as absent: nobody gains); failing that, the
 * one holding the most tokens, which gains the least (limit minus its
 * tokens) when it comes back. So an attacker with many addresses can only
 * lift the limit of addresses that, in that shard, have used no less than
 * every other one (its own, once it drains them all), never of a busy
 * address among idler ones; and a new address is never refused because the
 * table is full: under attack the limiter fails open, never locking out a
 * legitimate client. The first such partial eviction is logged once.
 */
int etrn_limit_take(struct etrn_limit *l, const char *client, uint64_t now_ms);

struct etrn_limit_stats {
	uint64_t addrs;           /* addresses held now */
	uint64_t capacity;        /* addresses it can hold */
	uint64_t evicted_full;    /* evictions of a refilled bucket (harmless) */
	uint64_t evicted_partial; /* evictions that lifted a limit a little */
};

/* Counters, summed over the shards (each shard's read under its lock). */
void etrn_limit_stats(struct etrn_limit *l, struct etrn_limit_stats *st);

/* The chain (shard and bucket, as one number) client's bucket lives on: two
 * addresses with the same number collide. For tests that need a collision. */
unsigned etrn_limit_chain_of(const struct etrn_limit *l, const char *client);

#endif
