/* SPDX-License-Identifier: MIT */
/*
 * drain_status: queue depths for `etrnctl status`. Each engine thread's
 * spool index is read only on its own thread, so the asker posts a job to
 * every loop and waits (bounded) at a rendezvous for their answers, then
 * merges them into one report: a line per shard, a line per domain (text),
 * or one JSON object (etrnctl status --json). A domain whose last drain
 * could not meet its TLS policy says why ("held: TLS is required, ...").
 * The outbound scheduler's deferred queue follows the domains.
 */
#ifndef ETRND_PROTO_DRAIN_STATUS_H
#define ETRND_PROTO_DRAIN_STATUS_H

#include "core/buf.h"
#include "core/loop.h"
#include "proto/drain_resolve.h"
#include "store/spool_index.h"

#define DRAIN_STATUS_DOMAINS_MAX 10000 /* per shard, listed */
#define DRAIN_STATUS_WAIT_MS 3000
/* A hold reason: "TLS is required, but was not offered by host
 * (mx.example.test[192.0.2.1]:25)" and the like. */
#define DRAIN_HELD_MAX 384

/* One domain held for a TLS reason on one thread (drain_held_copy()). */
struct drain_status_held {
	char dom[DRAIN_DOMAIN_MAX];
	char why[DRAIN_HELD_MAX];
};

/* One engine thread as the report sees it: its loop (NULL while the thread
 * is not up: reported as "no answer") and its shard's index. */
struct spool_shard;
struct drain;
struct drain_status_shard {
	struct loop *loop;
	struct spool_index *idx;
	struct spool_shard *sh;  /* its spool (the queue requests write to it) */
	struct drain *drain;     /* its drainer (hold reasons); NULL: none */
};

/*
 * Ask each of the n shards (copied: the array need not outlive the call)
 * and append the report to out. Blocks up to DRAIN_STATUS_WAIT_MS: call it
 * from a thread that may block, never an engine thread. A shard that has
 * not answered by then is reported as such; its late answer is dropped.
 */
void drain_status_collect(const struct drain_status_shard *shards, unsigned n,
		struct buf *out);

/* The same report as one JSON object, then a newline:
 *   {"shards":[{"shard":0,"answered":true,"messages":N,"recipients":N,
 *     "domains":N,"segments":N,"bytes":N,"live_bytes":N,"delivered":N,
 *     "bounced":N,"expired":N},...],
 *    "domains":[{"domain":"x.test","messages":N,"recipients":N,"bytes":N,
 *     "oldest_s":N[,"held":"why"]},...],
 *    "deferred":[{"domain":"x.test","messages":N,"oldest":S,
 *     "next_attempt":S,"deferrals":N,"relay":"host[addr]:port",
 *     "last_error":"451 4.3.0 ..."},...], "atrn":[...], "complete":true}
 * "deferred" is the outbound scheduler's queue (proto/sched.h), per domain
 * over all threads: oldest is the oldest message's age and next_attempt
 * the wait until the soonest next attempt (0: due now or in flight), in
 * seconds of the scheduler's clock; relay and last_error "" when none.
 * The text report has a line per such domain: "deferred x.test: messages
 * N, oldest S s, next attempt in S s|now, deferrals N, relay R, last
 * error: E".
 * A shard that did not answer is {"shard":i,"answered":false}; complete is
 * false when any timed out. Blocks like drain_status_collect(). */
void drain_status_collect_json(const struct drain_status_shard *shards, unsigned n,
		struct buf *out);

/* s (n bytes) as a JSON string, quoted and escaped, appended to out. */
void drain_status_json_str(struct buf *out, const char *s, size_t n);

/* Either report (json 0: text) with the ATRN sessions in progress of atrn
 * (drain_atrn_status(): "atrn user=... domains=... shard=i/n
 * delivered=d/t" lines after the domains, or the "atrn" array). */
struct drain_atrn_reg;
void drain_status_collect_atrn(const struct drain_status_shard *shards, unsigned n,
		struct drain_atrn_reg *atrn, int json, struct buf *out);

#endif
