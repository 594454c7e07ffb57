/* SPDX-License-Identifier: MIT */
/*
 * metrics_http: the Prometheus endpoint (metrics_listen). A thread of its
 * own serves "GET /metrics" over HTTP/1.0-style one-request connections
 * (bounded: request size, a deadline per connection, connections at once),
 * answering core/metrics.h's rows plus the node-wide gauges it reads
 * itself at each scrape: held messages and bytes of the top
 * metrics_top_domains domains (store/domstat.h), the oldest held message's
 * age, the Redis connection state and the age of the last resync
 * (admin/control.h), the spool's free disk bytes (statvfs). It never
 * blocks an engine thread: it only reads atomics and the structures'
 * own locked snapshots.
 */
#ifndef ETRND_ADMIN_METRICS_HTTP_H
#define ETRND_ADMIN_METRICS_HTTP_H

#include <stddef.h>

#include "core/config.h"

/* A request's whole time from accept to the last byte of the answer. */
#define METRICS_HTTP_DEADLINE_MS 5000
/* Connections served at once; more wait in the listen backlog. */
#define METRICS_HTTP_CONNS_MAX 16
/* The request head read at most (a scrape's is a few hundred bytes). */
#define METRICS_HTTP_REQUEST_MAX 8192

struct domstat;
struct control;
struct drain_hub;

struct metrics_sources {
	struct domstat *ds;        /* held per domain, all shards */
	struct control *ctl;       /* Redis state; NULL without Redis */
	struct drain_hub *hub;     /* oldest held (drain status), may be NULL */
};

struct metrics_http;

/* Bind cfg->metrics (before privileges are dropped) and start the thread.
 * NULL with err set ("metrics_listen 127.0.0.1:9325: bind: ..."). cfg and
 * src's objects must outlive it. */
struct metrics_http *metrics_http_start(const struct config *cfg,
		const struct metrics_sources *src, char *err, size_t errlen);
/* Stop and join. NULL fine; returns NULL. */
struct metrics_http *metrics_http_stop(struct metrics_http *m);

/* Append the node-wide gauges (the part metrics_format() does not write)
 * for src to out: what the thread serves after metrics_format(). Exposed
 * for tests. 0 or -ENOMEM. */
int metrics_http_node_gauges(const struct config *cfg, const struct metrics_sources *src,
		struct buf *out);

#endif
