/* SPDX-License-Identifier: MIT */
/*
 * drain_handoff: one round of a node's hand-off of everything it holds to
 * its live peers (issue 16, node decommission; admin/decommission.h runs
 * the rounds). Every engine thread gives each domain of its shard, held or
 * deferred whatever the row's mode, to the peers of the cluster view that
 * are up (not draining) and have a cluster address, over the drain
 * machinery (drain_outbound()) with AUTH PLAIN as this node and the
 * cluster_tls policy; a message is DONE here only on the peer's 250 (on
 * its disk), so a kill -9 mid-round resends at most the drain's crash
 * bound (drain_done_window per connection), never loses.
 */
#ifndef ETRND_PROTO_DRAIN_HANDOFF_H
#define ETRND_PROTO_DRAIN_HANDOFF_H

#include <stdint.h>

#include "core/domtab.h"
#include "proto/drain.h"

/* Domains one engine thread hands off per round; the next round takes the
 * rest (a round then starts at once: it made progress). */
#define DRAIN_HANDOFF_DOMAINS_MAX 2000
/* Live peers one thread considers (the view may list more). */
#define DRAIN_HANDOFF_PEERS_MAX 64

/* The round's settings; the strings must outlive the round's jobs (the
 * decommission object owns them until the engine threads have stopped). */
struct clusterview_live;
struct drain_handoff_conf {
	const struct clusterview_live *view; /* the other nodes (core/clusterview.h) */
	const char *node_id;           /* AUTH PLAIN authcid: this node */
	const char *secret;            /* the cluster secret (admin/cluster_auth.h) */
	enum domtab_tls tls;           /* cluster_tls: may, must or verify */
};

/* What a round did, summed over the threads that answered. */
struct drain_handoff_result {
	unsigned threads, answered;    /* engine threads, and those that answered */
	unsigned peers;                /* live peers (the fewest any thread saw) */
	uint64_t jobs;                 /* outbound jobs started (domain x peer) */
	uint64_t sent, deferred, bounced, untried; /* messages, as drains count */
	uint64_t left;                 /* messages still pending in the spool
	                                  after the round (answered threads) */
	char why[DRAIN_WHY_MAX];       /* a temporary failure of the round, "" = none */
};

/*
 * Run one round on every engine thread of h and wait for it to end: each
 * thread's jobs have ended and their DONEs are durable. A domain's
 * messages are split over the live peers in arrival order, the order of
 * the peers rotated by a hash of the domain, so that small domains spread
 * over the peers too and a large one goes out over all of them at once.
 * Blocks up to wait_ms: call it from a thread that may block. Returns 0,
 * -ETIMEDOUT (res has the threads that answered; the others' jobs go on
 * and their answers are dropped), or -ENOMEM.
 */
int drain_handoff_round(struct drain_hub *h, const struct drain_handoff_conf *cf,
		unsigned wait_ms, struct drain_handoff_result *res);

#endif
