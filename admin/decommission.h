/* SPDX-License-Identifier: MIT */
/*
 * decommission: this node leaves its cluster (issue 16 item 5). Triggered
 * by the event "node-drain <id>" naming this node, or by PREFIX
 * "decommission:{ID}" (admin/schema.h) found at start: the node stops
 * accepting on every listener but cluster_listen (the control socket is
 * not a listener and stays), announces state draining, and hands all it
 * holds to the live peers (proto/drain_handoff.h: AUTH as itself, TLS per
 * cluster_tls, each message DONE here only on the peer's 250), round after
 * round with back-off while something is left. Once its spool holds
 * nothing live it deletes the key, logs, and stops the daemon the normal
 * way (SIGTERM to itself: exit 0, which systemd's Restart=on-failure does
 * not restart). A thread of its own, with its own Redis connection.
 */
#ifndef ETRND_ADMIN_DECOMMISSION_H
#define ETRND_ADMIN_DECOMMISSION_H

#include <stddef.h>

#include "core/config.h"

/* Back-off between rounds that moved nothing (a peer down, a 4xx, no
 * live peer): doubling from MIN to MAX; a round that moved mail is
 * followed at once. */
#define DECOMMISSION_BACKOFF_MIN_MS 500u
#define DECOMMISSION_BACKOFF_MAX_MS 30000u
/* The longest one round is waited for; its jobs go on past it, and the
 * next round skips what they hold. */
#define DECOMMISSION_ROUND_WAIT_MS 10000u
/* Redis commands (EXISTS and DEL of the key). */
#define DECOMMISSION_REDIS_TIMEOUT_MS 2000u

struct drain_hub;
struct engine_set;
struct clusterview_live;

/* What the decommission acts on; everything must outlive it (stop it
 * after engine_stop(), before engine_free()). */
struct decommission_env {
	const struct config *cfg;      /* node_id, redis, prefix, cluster_tls */
	struct engine_set *eng;        /* its listeners are closed */
	struct drain_hub *hub;         /* the hand-off rounds */
	const struct clusterview_live *view; /* the peers; NULL: none known */
	/* The cluster secret for AUTH as this node (admin/cluster_auth.h's
	 * cluster_auth_secret() through the wiring); NULL: none (the
	 * hand-off cannot start and says so). */
	int (*secret)(const void *arg, char *out, size_t outlen);
	const void *secret_arg;
	/* Announce state draining (admin/cluster.h's cluster_set_state()
	 * through the wiring); NULL: nothing to announce. */
	void (*set_draining)(void *arg);
	void *set_draining_arg;
};

struct decommission;

/* Start the thread (it checks the key at start, retrying while Redis does
 * not answer). NULL with err set when it cannot start. Without Redis
 * (redis none) the thread still starts: only the event could trigger it,
 * and none comes. */
struct decommission *decommission_start(const struct decommission_env *env, char *err,
		size_t errlen);

/* control_event_fn (admin/control.h): "node-drain <id>" with this node's
 * id starts the decommission (a second one changes nothing); any other
 * payload is ignored. Any thread; never blocks. */
void decommission_event(void *arg, const char *payload, size_t len);

/* 1 once the decommission has started (listeners closed). Any thread. */
int decommission_running(const struct decommission *dc);

/* Stop and join the thread (after engine_stop(): a round in progress then
 * ends at once; before engine_free(): a round uses the engines). The
 * struct stays, since the control thread may still deliver an event to
 * it. Idempotent; NULL is fine. */
void decommission_join(struct decommission *dc);

/* Join if not yet done, and free. Only once no event can come any more
 * (after control_stop()). NULL is fine. Returns NULL. */
struct decommission *decommission_stop(struct decommission *dc);

#endif
