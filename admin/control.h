/* SPDX-License-Identifier: MIT */
/*
 * control: the control thread (DESIGN.md sections 3 and 7). It holds the
 * Redis connections (one for commands, one subscribed to PREFIX"events"),
 * loads every domain row and route (PREFIX"route:<d>") with SCAN at start,
 * applies "domain <d>" and "route <d>" events as they arrive (a route with a
 * bad value is logged and left out), reloads everything every redis_resync as a safety net, and
 * publishes each new table through a domtab_live. Engine threads never touch
 * Redis. When Redis goes away the last table stays in service, marked stale
 * (RCPT for an unknown domain then gets 451, not 550); the thread reconnects
 * with backoff and reloads when Redis is back. One log line per state change.
 * The static relay_domains are always in the table, with default settings,
 * unless Redis has a row of the same name. Rows with rcpt_check on point at
 * their recipient sets, which admin/rcptload.h reads ("rcpts <d>" events,
 * and at a resync the sets whose counter moved) and which stay in service
 * while Redis is away.
 */
#ifndef ETRND_ADMIN_CONTROL_H
#define ETRND_ADMIN_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "core/domtab.h"
#include "core/config.h"

struct control;

/*
 * Load the first table into lv (synchronously: call before the engine
 * threads start), then start the thread. Without Redis configured this only
 * publishes relay_domains and starts no thread. If Redis does not answer,
 * starting still succeeds when relay_domains lists domains (the table is then
 * stale until Redis answers); otherwise returns NULL with err set. cfg and lv
 * must outlive the control.
 */
struct control *control_start(const struct config *cfg, struct domtab_live *lv,
		char *err, size_t errlen);

/* Called on the control thread for each "drain <domain>" event on the events
 * channel (etrnctl flush on any node, or an ETRN taken by another node). */
typedef void (*control_drain_fn)(void *arg, const char *domain, size_t len);
void control_set_drain(struct control *c, control_drain_fn fn, void *arg);
/* Issue 16: "drain <spec>" from etrnctl flush, "drain <spec> from <node>"
 * from an ETRN taken by node <node> (the callback above gets everything
 * after "drain "); a node ignores its own.
 * Called on the control thread for every other event on the channel
 * (whole payload, not NUL-terminated): "node-drain <id>" (etrnctl node
 * drain), and whatever later issues add. "user <u>" comes here too. */
typedef void (*control_event_fn)(void *arg, const char *payload, size_t len);
void control_set_event(struct control *c, control_event_fn fn, void *arg);

/* For metrics and etrnctl top, any thread: 1 when Redis is connected
 * now, and (when not NULL) *last_resync_us, the wall time (now_wall_us)
 * of the last full load that succeeded, 0 when none yet. */
int control_redis_state(struct control *c, uint64_t *last_resync_us);

/* Reload (SIGHUP, admin/reload.h): follow new Redis settings (address,
 * key prefix, redis_resync). The thread drops its connections, connects
 * with these and loads everything again; the last table serves meanwhile.
 * Copies what it needs; any thread. Returns 0, -ENOTSUP when there is no
 * control thread (Redis was off at start: a restart is needed), -EINVAL
 * for redis none or an overlong prefix. */
int control_reconfigure(struct control *c, const struct config_redis *redis,
		const char *prefix, unsigned resync_ms);

/* Stop and join the thread, close Redis, free. NULL is fine. Returns NULL. */
struct control *control_stop(struct control *c);

#endif
