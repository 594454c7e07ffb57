/* SPDX-License-Identifier: MIT */
/*
 * expire: retention of held mail on one engine thread. Mail held longer than
 * max_hold (like Postfix's maximal_queue_lifetime) is expired: each pending
 * recipient gets a DONE(expired) record and the envelope sender gets one
 * RFC 3464 delivery status notification, queued in the spool in the same
 * group commit as the DONEs. With delay_warning set, mail held longer than
 * that (and still under max_hold) gets one warning instead: an RFC 3464 DSN
 * with Action: delayed listing the pending recipients, followed in the same
 * commit by a NOTE record, so it is never sent twice, also not after a
 * restart. The null sender gets neither. Runs in small steps from its own
 * turn hook, one message at a time, so receiving never stalls behind it.
 */
#ifndef ETRND_PROTO_EXPIRE_H
#define ETRND_PROTO_EXPIRE_H

#include <stddef.h>
#include <stdint.h>

#include "store/spool.h"

/* A domain's own max_hold in microseconds (Redis row), or 0 for the default.
 * Called on the engine thread; must not block. */
typedef uint64_t (*expire_hold_fn)(void *arg, const char *domain, size_t len);

struct expire_conf {
	const char *hostname;      /* Reporting-MTA and MAILER-DAEMON@host */
	uint64_t max_hold_us;      /* the default */
	uint64_t delay_warning_us; /* global; 0: no delay warnings */
	expire_hold_fn hold;       /* per-domain override; may be NULL */
	void *hold_arg;
	int64_t clock_offset_us;   /* test aid: added to the wall clock */
};

struct expire;

/*
 * Create for one shard, and register on the shard's loop (spool_shard_loop):
 * a LOOP_TURN_QUEUE turn hook that does a bounded step of work if any is
 * due (a scan for expired messages and messages due a delay warning, every
 * EXPIRE_SCAN_INTERVAL, or starting the next of them; what it queues joins
 * the shard's commit of the same turn), a stop hook (start no new work) and
 * a busy check (a message is being expired or warned about: its read or
 * commit is in flight). conf->hostname must outlive it. NULL with errno
 * ENOMEM, or ENOSPC when the loop's hook registry is full.
 */
struct expire *expire_new(const struct expire_conf *conf, struct spool_shard *sh);
/* Free, once the loop will not run again (its hooks point here). NULL is
 * fine; returns NULL. */
struct expire *expire_free(struct expire *x);

/* 1 while a message is being expired or warned about (its read or commit
 * is in flight); the loop's busy check asks this too. */
int expire_busy(const struct expire *x);

/* Messages expired so far. */
uint64_t expire_count(const struct expire *x);

#endif
