/* SPDX-License-Identifier: MIT */
/*
 * etrnctl_node: `etrnctl node drain NODE [--wait] [--timeout D]` and
 * `etrnctl node forget NODE` (issue 16, node decommission). drain sets
 * PREFIX"decommission:{NODE}" and publishes "node-drain NODE" on the
 * events channel (admin/schema.h); the node hands its mail to the others
 * and exits (admin/decommission.h). --wait polls Redis until the node has
 * deleted the key (its hand-off is done and it exits), bounded by
 * --timeout. forget removes NODE from PREFIX"nodes" once its hash is gone.
 */
#ifndef ETRND_ADMIN_ETRNCTL_NODE_H
#define ETRND_ADMIN_ETRNCTL_NODE_H

#include <hiredis/hiredis.h>

/* --wait's bound when --timeout is not given. */
#define ETRNCTL_NODE_WAIT_MS (10u * 60u * 1000u)
/* How often --wait asks Redis. */
#define ETRNCTL_NODE_POLL_MS 200u

struct etrnctl_node {
	redisContext *rc;              /* the caller's, open */
	const char *prefix;            /* key prefix ("etrnd:") */
	const char *node;              /* NODE as given (checked here) */
	int wait;                      /* drain --wait */
	const char *timeout;           /* --timeout DURATION, or NULL */
};

/* The commands; each returns etrnctl's exit status: 0 done, 1 refused or
 * failed (the reason on stderr), 2 bad input. */
int etrnctl_node_drain(const struct etrnctl_node *n);
int etrnctl_node_forget(const struct etrnctl_node *n);

#endif
