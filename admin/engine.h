/* SPDX-License-Identifier: MIT */
/*
 * engine: the engine threads of the daemon, one per configured thread, each
 * with its own io_uring loop, listening sockets, SMTP service, spool shard
 * and ETRN drainer. Part of the daemon's wiring (admin/etrnd.c): it knows
 * every layer so that the layers need not know each other.
 */
#ifndef ETRND_ADMIN_ENGINE_H
#define ETRND_ADMIN_ENGINE_H

#include "core/domtab.h"
#include "core/config.h"

struct domstat;
struct drain_hub;
struct epoch;
struct budget;

/* What every engine thread shares; each must outlive the engine set. */
struct engine_env {
	const struct config *cfg;
	const struct domtab_live *dt;   /* published by the control thread */
	struct domstat *ds;             /* held mail per domain, all shards */
	struct drain_hub *hub;          /* ETRN drains across engine threads */
	struct epoch *ep;               /* QSBR domain of the engine threads */
	struct connlimit *cl;           /* client_connection_limit; NULL = none */
	struct budget *data_budget;     /* DATA buffers of all sessions (core/budget.h) */
};

struct engine_set;

/*
 * Start cfg->threads engine threads and wait until each has its loop ready
 * (taking connections) or has failed. On any failure every error is logged,
 * the threads that did start are stopped and joined, and NULL is returned.
 */
struct engine_set *engine_start(const struct engine_env *env);

/* Stop every loop (stop accepting, let transactions in flight finish within
 * shutdown_timeout) and join the threads. Returns 0, or -1 when a loop
 * ended with an error. The resolver may still answer a drain's look-up:
 * call drain_hub_quiesce() and resolver_free() before engine_free(). */
int engine_stop(struct engine_set *s);

/* Free the loops and drainers, once nothing can post to them. NULL is fine.
 * Returns NULL. */
struct engine_set *engine_free(struct engine_set *s);

#endif
