/* SPDX-License-Identifier: MIT */
/*
 * addrlimit: a node-wide rate limit per client address (etrn_rate_limit:
 * ETRN requests; auth_failure_limit: failed AUTH). A TOKEN BUCKET per address
 * (capacity per_period, refilled at per_period per 60 s, in exact integer
 * arithmetic), one limiter per use for the whole node, shared by every thread:
 * sharded by address, each shard behind a short mutex (neither use is a
 * per-message path): the node's one address table, core/addrtab. Keyed by the
 * binary address with a full key compare, so no address can reset or share
 * another's bucket.
 */
#ifndef ETRND_CORE_ADDRLIMIT_H
#define ETRND_CORE_ADDRLIMIT_H

#include <stdint.h>

#include "core/addrtab.h"

/* The period a limit is counted over (config.h: "per minute"). */
#define ADDRLIMIT_PERIOD_MS 60000u
/* Addresses remembered at once by the node's limiter (about 48 bytes each). */
#define ADDRLIMIT_ADDRS_DEFAULT 8192u
/* Most addresses a limiter may be asked to hold (chain indices are 32-bit). */
#define ADDRLIMIT_ADDRS_MAX ADDRTAB_ADDRS_MAX
/* Most requests per period: config.c's range for etrn_rate_limit and
 * auth_failure_limit. */
#define ADDRLIMIT_PER_PERIOD_MAX 100000u

struct addrlimit;

/*
 * A limiter allowing per_period requests per ADDRLIMIT_PERIOD_MS from each
 * address, remembering up to max_addrs addresses (rounded up to whole
 * shards). per_period must be 1..ADDRLIMIT_PER_PERIOD_MAX: 0 is refused
 * (EINVAL) as config.c refuses etrn_rate_limit = 0; there is no "unlimited".
 * name (a static string: the config key, "etrn_rate_limit") names it in
 * logs. NULL with errno EINVAL or ENOMEM. Create once at start
 * (drain_hub_new, authpool_new); the caller owns it and frees it after every
 * thread that takes from it.
 */
struct addrlimit *addrlimit_new(const char *name, unsigned per_period, unsigned max_addrs);
/* Free; accepts NULL, returns NULL. */
struct addrlimit *addrlimit_free(struct addrlimit *l);

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
int addrlimit_take(struct addrlimit *l, const char *client, uint64_t now_ms);

/*
 * Give back one request taken by addrlimit_take() (what it stood for did not
 * count: the AUTH check that reserved it succeeded, or never ran). The bucket
 * never holds more than full; an address no longer held is left absent (as
 * good as full). Thread-safe.
 */
void addrlimit_give(struct addrlimit *l, const char *client, uint64_t now_ms);

struct addrlimit_stats {
	uint64_t addrs;           /* addresses held now */
	uint64_t capacity;        /* addresses it can hold */
	uint64_t evicted_full;    /* evictions of a refilled bucket (harmless) */
	uint64_t evicted_partial; /* evictions that lifted a limit a little */
};

/* Counters, summed over the shards (each shard's read under its lock). */
void addrlimit_stats(struct addrlimit *l, struct addrlimit_stats *st);

/* The chain (shard and bucket, as one number) client's bucket lives on: two
 * addresses with the same number collide. For tests that need a collision. */
unsigned addrlimit_chain_of(const struct addrlimit *l, const char *client);

#endif
