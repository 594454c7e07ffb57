/* SPDX-License-Identifier: MIT */
/*
 * sched: the outbound scheduler of one engine thread (DESIGN.md 6b).
 * Everything its shard holds that is not held for a customer goes out
 * through it: DSNs to their senders, mail for domains whose row says mode
 * deliver, and mail that mynetworks clients and authenticated users send to
 * other domains. A domain's queue is held when its row says mode hold (the
 * default), when relay_domains names it, or when it is the node's own
 * hostname (postmaster mail, kept for the operator); every other queue is
 * scheduled.
 *
 * Per (message, domain) the index keeps the next attempt (store/
 * spool_index.h); a new message is due at once. A delivery job (proto/
 * drain.h drain_outbound) takes a domain's due entries to one address of its
 * route (proto/route.h). After a job, an entry still pending is deferred:
 * its next attempt is now + its age, bounded by minimal_backoff and
 * maximal_backoff (Postfix's rule: the gaps double), written as a SCHED
 * record so a restart keeps it. An address whose connections all failed is
 * dead for minimal_backoff (the dead-destination cache): the job moves on to
 * the route's next address at once, and later jobs skip it; with every
 * address dead or failed, the mail is deferred without a connection. A
 * permanent routing failure of the domain's own MX (NXDOMAIN, null MX)
 * bounces; a route or relayhost that does not resolve is the operator's
 * to fix, and defers. Expiry after
 * max_hold (with its DSN) is proto/expire.c's, as for held mail; a DSN is
 * never sent for a DSN (the null sender gets none).
 *
 * At start, what fell due while the daemon was down (and mail never tried)
 * is spread evenly over queue_restart_spread rather than tried at once.
 * Clock: the wall clock plus clock_offset plus the test clock's step
 * (core/now.h). Runs from a turn hook on its loop; never blocks.
 */
#ifndef ETRND_PROTO_SCHED_H
#define ETRND_PROTO_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/domtab.h"
#include "core/loop.h"
#include "core/resolver.h"
#include "proto/drain.h"
#include "store/spool.h"

struct sched;

/*
 * Create thread index's scheduler on loop l, shard sh and drainer d (all of
 * the same thread), before loop_run; cfg, dt and r (the process's resolver)
 * must outlive it. Registers its turn hook, stop hook and busy check on l,
 * the index's add hook (spool_index_set_add_hook) and the drainer's retry
 * hook (drain_set_retry). NULL with errno set on failure.
 */
struct sched *sched_new(const struct config *cfg, const struct domtab_live *dt,
		struct resolver *r, struct drain *d, struct loop *l, struct spool_shard *sh);
/* Free once the loop will not run again. NULL is fine; returns NULL. */
struct sched *sched_free(struct sched *s);

/* After-outbound (proto/activator.h): fn(arg) runs on s's thread after a
 * job routed through the relayhost (ROUTE_RELAYHOST) sent at least one
 * message. fn NULL: none (the default). */
void sched_set_relayed_hook(struct sched *s, void (*fn)(void *arg), void *arg);

/* 1 while a job or a look-up of this scheduler is in flight. */
int sched_busy(const struct sched *s);

/* Retry dom's deferred mail now (ETRN or etrnctl flush of a mode deliver
 * domain). On s's thread. */
void sched_retry(struct sched *s, const char *dom, size_t len);

/*
 * The deferred queue of this thread, one entry per scheduled domain with
 * mail (etrnctl status): how many messages, the oldest's arrival, the
 * earliest next attempt (0: due now or in flight), and the last error.
 * Copies at most max into out; returns how many there are. On s's thread
 * (proto/drain_status.c posts there).
 */
#define SCHED_STATUS_WHY_MAX 256
struct sched_status_dest {
	char dom[RESOLVER_NAME_MAX];
	uint64_t msgs;
	uint64_t oldest_us;
	uint64_t next_us;
	uint64_t deferrals;            /* attempts that deferred, this run */
	char relay[RESOLVER_RELAY_MAX]; /* the last address tried, "" = none */
	char why[SCHED_STATUS_WHY_MAX]; /* the last error, "" = none */
};
size_t sched_status_copy(const struct sched *s, struct sched_status_dest *out, size_t max);

/* The back-off rule, pure (unit-tested): the next attempt after one at
 * now_us of a message that arrived at arrival_us. */
uint64_t sched_next_attempt(uint64_t now_us, uint64_t arrival_us, uint64_t min_us,
		uint64_t max_us);

/* The restart spread, pure: when an entry that fell due before start_us
 * (next_us 0 or <= start_us) is tried, given its rank among them and their
 * number n: start_us + spread_us * rank / n. */
uint64_t sched_restart_slot(uint64_t start_us, uint64_t spread_us, uint64_t rank, uint64_t n);

#endif
