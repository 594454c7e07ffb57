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

#include "core/clusterview.h"

struct cluster;

/* drain_publish_fn for drain_hub_set_cluster(): arg is the struct cluster.
 * Queues the event (dropped with a warning when the queue is full). Any
 * thread; never blocks on Redis. */
void cluster_publish_drain(void *arg, const char *spec, size_t len);

/* The state this node announces (CLUSTERVIEW_DRAINING while it hands its
 * mail off, part C4); written at the next refresh, which it asks for at
 * once. Any thread. */
void cluster_set_state(struct cluster *c, enum clusterview_state st);

#endif
