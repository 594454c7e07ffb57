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

#include "core/buf.h"
#include "core/config.h"

/* A request's whole time from accept to the last byte of the answer. */
#define METRICS_HTTP_DEADLINE_MS 5000
/* Connections served at once; more wait in the listen backlog. */
#define METRICS_HTTP_CONNS_MAX 16
/* The request head read at most (a scrape's is a few hundred bytes). */
#define METRICS_HTTP_REQUEST_MAX 8192

/* The request line at most (the target with its query). */
#define METRICS_HTTP_LINE_MAX 1024
/* The answer's body at most (a scrape with 1000 top domains is ~200 kB). */
#define METRICS_HTTP_BODY_MAX (16u << 20)
/* How long a scrape waits for the engine threads' oldest held message. */
#define METRICS_HTTP_OLDEST_WAIT_MS 1000

struct domstat;
struct control;
struct drain_hub;
struct domtab_live;
struct epoch;

/* What the node-wide gauges read. Any pointer may be NULL: its series are
 * then left out. */
struct metrics_sources {
	struct domstat *ds;        /* held per domain, all shards */
	struct control *ctl;       /* Redis state; NULL without Redis */
	struct drain_hub *hub;     /* oldest held (asks each engine thread) */
	/* The domain table: its rows name the top domains (domstat keeps
	 * hashes, not names). The endpoint's thread reads it as a reader of
	 * ep (one slot of it), online only while it walks the table. */
	const struct domtab_live *dt;
	struct epoch *ep;
};

/* A parsed request head (metrics_http_parse): method and target point
 * into the parsed bytes, the target without its "?query". */
struct metrics_http_req {
	const char *method;
	size_t method_len;
	const char *path;
	size_t path_len;
	int head;                  /* HEAD: the answer without its body */
};

/*
 * Parse the request head in p[0..n) (HTTP/1.0 or 1.1: a request line, then
 * header lines up to an empty line; LF or CRLF line ends). Returns the
 * head's length (> 0) when complete, 0 when more bytes are needed, or the
 * HTTP status to answer, negated: -400 (NUL, a bare CR, a malformed
 * request line), -414 (request line over METRICS_HTTP_LINE_MAX), -431 (no
 * end within METRICS_HTTP_REQUEST_MAX), -505 (not HTTP/1.x). Pure; any
 * split of the same bytes gives the same answer once they are all there.
 */
int metrics_http_parse(const char *p, size_t n, struct metrics_http_req *rq);

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
 * for tests. Blocks up to METRICS_HTTP_OLDEST_WAIT_MS (src->hub): never
 * on an engine thread. The caller is a reader of src->ep (or no table
 * swap can race it). 0 or -ENOMEM (-E2BIG past out's cap). */
int metrics_http_node_gauges(const struct config *cfg, const struct metrics_sources *src,
		struct buf *out);

/* The Redis series (etrnd_redis_up, etrnd_redis_last_resync_age_seconds)
 * alone, for the control socket's "metrics" (etrnctl top): the same
 * names and values as a scrape. Nothing without Redis. */
#include <stdint.h>
void metrics_http_redis_gauges(const struct config *cfg, struct control *ctl, struct buf *out,
		uint64_t now_us);

#endif
