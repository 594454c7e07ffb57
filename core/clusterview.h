/* SPDX-License-Identifier: MIT */
/*
 * clusterview: what this node knows of the other nodes of its cluster
 * (issue 16): their ids, internal transfer addresses, states, and how much
 * mail each holds per domain, as their Redis hashes said at the last read
 * (admin/cluster.h builds it every cluster_publish_interval). An immutable
 * snapshot published like the domain table (core/domtab.h's domtab_live):
 * one atomic pointer store, the old view freed after every engine thread
 * has passed a quiescent point (core/epoch.h). Engine threads read it
 * without locks for the cluster-wide ETRN count (proto/drain.c) and to
 * find the nodes an ATRN must collect from. This node itself is never in
 * the view: its own counts are the local ones.
 */
#ifndef ETRND_CORE_CLUSTERVIEW_H
#define ETRND_CORE_CLUSTERVIEW_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

/* One other node as its Redis hash last said. A node whose hash expired
 * (cluster_node_ttl without a refresh) is not in the view at all. */
#define CLUSTERVIEW_ADDR_MAX 128
enum clusterview_state { CLUSTERVIEW_UP, CLUSTERVIEW_DRAINING };
struct clusterview_node {
	char id[CONFIG_NODE_ID_MAX];
	char addr[CLUSTERVIEW_ADDR_MAX]; /* its cluster_listen "host:port", "" = none */
	enum clusterview_state state;
	uint64_t seen_ms;              /* wall time of its last refresh */
	uint64_t msgs, bytes;          /* its held totals, all domains */
};

struct clusterview;

/* Builder (admin/cluster.c): nodes first, then counts per node index. */
struct clusterview_builder;
struct clusterview_builder *clusterview_builder_new(void);
/* The index of the added node, or -ENOMEM. n is copied. Ids are not
 * checked for repeats: the caller adds each node once. */
int clusterview_builder_node(struct clusterview_builder *b, const struct clusterview_node *n);
/* Mail held on node (an index from clusterview_builder_node) for dom (any
 * case, trailing dot ignored). Two rows of one node for one domain are one
 * count given twice (HSCAN may return a field twice): the larger is kept.
 * 0, -EINVAL (bad node index, empty or over-long name) or -ENOMEM. */
int clusterview_builder_count(struct clusterview_builder *b, int node, const char *dom,
		size_t len, uint64_t msgs, uint64_t bytes);
/* The finished view (the builder is consumed), or NULL on ENOMEM. */
struct clusterview *clusterview_build(struct clusterview_builder *b);
struct clusterview_builder *clusterview_builder_free(struct clusterview_builder *b);
struct clusterview *clusterview_free(struct clusterview *v);

/* Readers, pure; v may be NULL (no cluster: every answer 0 / empty). */
/* Messages held for dom on every other node that is up or draining. */
uint64_t clusterview_remote_msgs(const struct clusterview *v, const char *dom, size_t len);
/* The other nodes holding mail for dom (a count of 0 is no holder),
 * largest share first (equal shares in id order), into out and msgs (at
 * most max; msgs may be NULL); returns how many there are. The pointers
 * live as long as v. */
size_t clusterview_holders(const struct clusterview *v, const char *dom, size_t len,
		const struct clusterview_node **out, uint64_t *msgs, size_t max);
/* Every node of the view, in id order, into out (at most max); returns
 * how many there are. */
size_t clusterview_nodes(const struct clusterview *v, const struct clusterview_node **out,
		size_t max);
/* The node named id, or NULL. */
const struct clusterview_node *clusterview_node(const struct clusterview *v, const char *id);

/* The published current view. */
struct epoch;
struct clusterview_live;
/* A holder for readers registered with e, empty at first. NULL on ENOMEM. */
struct clusterview_live *clusterview_live_new(struct epoch *e);
struct clusterview_live *clusterview_live_free(struct clusterview_live *lv);
/* Reader: the current view (NULL before the first, or when lv is NULL:
 * no cluster). Valid until the
 * calling engine thread's next quiescent point; a thread that is not an
 * epoch reader must not call it. */
const struct clusterview *clusterview_live_get(const struct clusterview_live *lv);
/* Writer (one thread): publish v (taken over), wait for the readers, free
 * the old view. */
void clusterview_live_swap(struct clusterview_live *lv, struct clusterview *v);

#endif
