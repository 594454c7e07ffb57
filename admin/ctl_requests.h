/* SPDX-License-Identifier: MIT */
/*
 * ctl_requests: what the operator's requests do, wherever they arrive: a
 * control socket line (core/ctlsock.h: "flush DOMAIN", "force DOMAIN [DEST]",
 * "status [json]", "queue [DOMAIN]", "show|show-full|delete|bounce|release QID",
 * "clock step SECONDS" (the test clock, core/now.h: only with config
 * test_clock = yes), "activators [json] [NAME]", "activators run NAME",
 * "activate KEY=VALUE..." (a one-shot activator run, admin/ctl_activate.h;
 * answered "ok oneshot-N"), "metrics" (core/metrics.h's Prometheus text,
 * then etrnd_redis_up and etrnd_redis_last_resync_age_seconds:
 * etrnctl top's counters), each optionally ending "\tby WHO" for the log;
 * a pass= value is never logged) or a Redis
 * "drain <domain>" event (admin/control.h: another node's ETRN, or etrnctl
 * flush). Both go to the drain hub (proto/drain.h), passed as arg, which must
 * outlive the socket and the control thread.
 */
#ifndef ETRND_ADMIN_CTL_REQUESTS_H
#define ETRND_ADMIN_CTL_REQUESTS_H

#include <stddef.h>

#include "core/buf.h"

/* What the requests act on (ctlsock_start()'s arg; outlives the socket). */
struct drain_hub;
struct activators;
struct control;
struct ctl_env {
	struct drain_hub *hub;
	struct activators *act;     /* proto/activator.h: "activators ...",
	                               "activate ..." (etrnctl etrn --atrn) */
	struct control *ctl;        /* admin/control.h: Redis state ("metrics");
	                               NULL: unknown */
};

/* A ctlsock_fn: answer one request line into out; env is a struct
 * ctl_env. On the socket's thread. */
void ctl_requests_socket(void *env, const char *line, size_t len, struct buf *out);

/* A control_drain_fn: drain what this node holds for domain, and log the
 * answer. On the control thread. */
void ctl_requests_redis_drain(void *hub, const char *domain, size_t len);

#endif
