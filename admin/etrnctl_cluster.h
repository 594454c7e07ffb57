/* SPDX-License-Identifier: MIT */
/*
 * etrnctl_cluster: `etrnctl status --cluster [--json] [--top N]` (issue 16).
 * Reads PREFIX"nodes" and every node's hash straight from Redis (no daemon
 * is asked): each node's id, state (up, draining, or gone: in the zset but
 * its hash expired, with how long ago it was last seen), internal transfer
 * address and held totals; then the cluster's totals per domain, the top N
 * by messages, with each node's share.
 */
#ifndef ETRND_ADMIN_ETRNCTL_CLUSTER_H
#define ETRND_ADMIN_ETRNCTL_CLUSTER_H

#include <stdio.h>

#include "core/config.h"

/* Domains listed when --top is not given. */
#define ETRNCTL_CLUSTER_TOP_DEFAULT 20u

/* Print the cluster's status to out (text, or one JSON object when json).
 * top: domains listed (0: all). 0 done; 1 when Redis is unreachable or
 * answers with an error (said on stderr). */
int etrnctl_cluster_status(const struct config *cfg, int json, unsigned top, FILE *out);

#endif
