/* SPDX-License-Identifier: MIT */
/*
 * engine: the engine threads of the daemon, one per configured thread, each
 * with its own io_uring loop, listening sockets, SMTP service, spool shard,
 * ETRN drainer and outbound scheduler. Part of the daemon's wiring
 * (admin/etrnd.c): it knows every layer so that the layers need not know
 * each other.
 */
#ifndef ETRND_ADMIN_ENGINE_H
#define ETRND_ADMIN_ENGINE_H

#include "core/domtab.h"
#include "core/config.h"

struct domstat;
struct drain_hub;
struct resolver;
struct epoch;
struct budget;
struct tls_ctx;
struct loop;
struct auth_backend;

/* What every engine thread shares; each must outlive the engine set. */
struct engine_env {
	const struct config *cfg;
	const struct domtab_live *dt;   /* published by the control thread */
	struct domstat *ds;             /* held mail per domain, all shards */
	struct drain_hub *hub;          /* ETRN drains across engine threads */
	struct resolver *resolver;      /* the process's (outbound routing,
	                                   proto/sched.h); freed after the hub
	                                   quiesced, before engine_free() */
	struct epoch *ep;               /* QSBR domain of the engine threads */
	struct connlimit *cl;           /* client_connection_limit; NULL = none */
	struct budget *data_budget;     /* DATA buffers of all sessions (core/budget.h) */
	/* TLS contexts (core/tls.h), shared read-only by every thread:
	 * tls_server is NULL when tls_cert_file is not set (no STARTTLS, no
	 * listen_tls); tls_client always exists (drains try STARTTLS
	 * opportunistically). Made by engine_tls_new() before engine_start(),
	 * freed by engine_tls_free() after engine_free(). The loop gets
	 * tls_server (listen_tls); the SMTP server and the drains take theirs
	 * from here. */
	struct tls_ctx *tls_server;
	struct tls_ctx *tls_client;
	/* The node's activators (proto/activator.h): engine thread 0 runs
	 * them (activators_attach) and every thread's scheduler tells them of
	 * relayhost deliveries (sched_set_relayed_hook). NULL: none. */
	struct activators *act;
	/* Node AUTH on cluster_listen (admin/cluster_auth.h; issue 16);
	 * NULL: no cluster_secret_file. */
	const struct auth_backend *cluster_auth;
};

/* Make env's TLS contexts from cfg's tls_* keys. Returns 0, or -1 with err
 * set ("FILE:LINE: tls_cert_file PATH: OpenSSL's reason"); nothing is left
 * to free then. */
int engine_tls_new(const struct config *cfg, struct engine_env *env, char *err,
		size_t errlen);
void engine_tls_free(struct engine_env *env);

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

/* The number of engine threads, and thread i's loop (i < engine_count()),
 * for loop_post() from another thread (admin/sdnotify.c's liveness pings).
 * Valid from engine_start() until engine_free(); loop_post() refuses once
 * engine_stop() has ended the loop. */
unsigned engine_count(const struct engine_set *s);
struct loop *engine_loop(const struct engine_set *s, unsigned i);

/* Stop accepting on every listener whose CONFIG_LISTEN_* flags have none
 * of keep_flags, on every engine thread (loop_close_listeners() posted to
 * each loop): new clients are refused, connections open go on, the
 * engines keep running (a decommission keeps CONFIG_LISTEN_CLUSTER).
 * Returns at once; 0, or -errno when a loop could not be asked (it is
 * stopping: it closes them all anyway). Any thread. */
int engine_close_listeners(struct engine_set *s, unsigned keep_flags);

/* Free the loops and drainers, once nothing can post to them (each
 * thread's scheduler was freed when its loop finished; a look-up of it
 * answered later is freed on the resolver's thread: the hub refuses its
 * post). NULL is fine.
 * Returns NULL. */
struct engine_set *engine_free(struct engine_set *s);

#endif
