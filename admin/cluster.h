/* SPDX-License-Identifier: MIT */
/*
 * cluster: this node's part in a cluster of etrnd nodes sharing one Redis
 * (issue 16). A thread of its own, with its own Redis connection (through
 * admin/redis_conn.h, so Sentinel too), that
 *   - writes PREFIX"node:{ID}" (admin/schema.h) every
 *     cluster_publish_interval and soon after the held counts change, with
 *     the TTL cluster_node_ttl, and the node's score in PREFIX"nodes";
 *   - reads the other nodes' hashes and publishes them as the
 *     core/clusterview.h view the engine threads read;
 *   - publishes "drain <spec> from <node_id>" for ETRNs taken here
 *     (cluster_publish_drain, the drain_publish_fn of proto/drain.h),
 *     from a bounded queue: engine threads never wait on Redis.
 * Without Redis it does nothing and the view stays empty.
 * (Declarations the issue 16 team shares; part C2 owns the rest.)
 */
#ifndef ETRND_ADMIN_CLUSTER_H
#define ETRND_ADMIN_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "core/clusterview.h"

struct cluster;

/* The node hash's fields (admin/schema.h: PREFIX"node:{ID}"). gen changes
 * whenever a "d:" field or state or addr did ("<started ms>.<n>"): a
 * reader fetches the whole hash only when it moved. */
#define CLUSTER_KEY_NODE "node:"
#define CLUSTER_KEY_NODES "nodes"
#define CLUSTER_F_ADDR "addr"
#define CLUSTER_F_STATE "state"
#define CLUSTER_F_STARTED "started"
#define CLUSTER_F_SEEN "seen"
#define CLUSTER_F_MSGS "msgs"
#define CLUSTER_F_BYTES "bytes"
#define CLUSTER_F_GEN "gen"
#define CLUSTER_F_READ "read"      /* unix ms: its last read of the others */
#define CLUSTER_F_DOMAIN "d:"      /* + domain = "<msgs> <bytes>" */
#define CLUSTER_STATE_UP "up"
#define CLUSTER_STATE_DRAINING "draining"

/* This node's held counts per domain, as the cluster thread reads them
 * (store/domstat.h's walk and changed flag, given by admin/etrnd.c: this
 * library does not link store/). walk calls fn for every domain with idx
 * its place in a fixed order (0, 1, ...: the same domain, the same idx). */
typedef void (*cluster_count_fn)(void *arg, size_t idx, const char *name,
		uint64_t msgs, uint64_t bytes);
struct cluster_counts {
	void (*walk)(void *src, cluster_count_fn fn, void *arg);
	int (*changed)(void *src);      /* 1 once after any change */
	void *src;
};

/* Start the thread when cfg has Redis (else NULL with err "": no cluster,
 * nothing to stop). view (published into) and counts must outlive it. On
 * failure NULL with err set. cfg is read, never kept past start except
 * node_id, prefix, address and the intervals (copied). */
struct cluster *cluster_start(const struct config *cfg, struct clusterview_live *view,
		const struct cluster_counts *counts, char *err, size_t errlen);
/* Publish what is queued (bounded by the Redis timeout), stop, free. The
 * node's hash is left to expire: its mail is still on its disk. NULL ok;
 * returns NULL. */
struct cluster *cluster_stop(struct cluster *c);

/* drain_publish_fn for drain_hub_set_cluster(): arg is the struct cluster.
 * Queues the event (dropped with a warning when the queue is full, or
 * when spec is longer than an event may be). Any thread; takes a mutex
 * for a copy; never blocks on Redis. */
void cluster_publish_drain(void *arg, const char *spec, size_t len);

/* The state this node announces (CLUSTERVIEW_DRAINING while it hands its
 * mail off, part C4); written at the next refresh, which it asks for at
 * once. Any thread. */
void cluster_set_state(struct cluster *c, enum clusterview_state st);

#endif
