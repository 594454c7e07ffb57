/* SPDX-License-Identifier: MIT */
/*
 * drain_resolve: where a drain delivers: a domain's dest ("host[:port]",
 * "[v6]:port", an address) or its best MX (RFC 5321 5.1), resolved off the
 * engine threads. Today one detached thread per look-up with the libc
 * resolver; the interface is narrow so a bounded asynchronous resolver
 * (core/resolver.h) can take its place without the drain noticing.
 */
#ifndef ETRND_PROTO_DRAIN_RESOLVE_H
#define ETRND_PROTO_DRAIN_RESOLVE_H

#include <stddef.h>
#include <sys/socket.h>

#define DRAIN_DOMAIN_MAX 256           /* RFC 1035 2.3.4: 255 + NUL */
#define DRAIN_RELAY_MAX 320            /* "host[addr]:port" for log lines */
#define DRAIN_SMTP_PORT 25

struct drain_hub;

/*
 * One drain to start: the domain, and where to deliver it. The resolver
 * fills dst/dstlen and relay, or sets failed. fan_out copies it once per
 * engine thread (thread says which).
 */
struct drain_req {
	struct drain_hub *hub;
	char dom[DRAIN_DOMAIN_MAX];    /* NUL-terminated, lower case */
	size_t len;
	struct sockaddr_storage dst;
	socklen_t dstlen;
	char relay[DRAIN_RELAY_MAX];   /* in: the dest text, "" for MX;
	                                  out: host[addr]:port for logs */
	int failed;                    /* resolution failed: just finish */
	unsigned thread;               /* which thread this copy is for */
};

/* Resolutions under way (one per hub). */
struct drain_resolver;

/* NULL when out of memory. */
struct drain_resolver *drain_resolver_new(void);
/* Free it; NULL is fine; call drain_resolver_quiesce() first. Returns NULL. */
struct drain_resolver *drain_resolver_free(struct drain_resolver *r);
/* Wait until no look-up is under way any more (each ends with its DNS
 * time-outs), so none can call its done callback afterwards. */
void drain_resolver_quiesce(struct drain_resolver *r);

/*
 * dest (rq->relay) is a numeric address with an optional port: fill dst,
 * dstlen and relay ("addr[addr]:port") and return 1; else 0, and rq is
 * unchanged. Pure; any thread.
 */
int drain_resolve_numeric(struct drain_req *rq);

/*
 * Resolve rq->relay (a dest, or "" for rq->dom's MX) in the background.
 * Returns 0: done(rq) is then called exactly once, from another thread,
 * with dst/dstlen/relay filled or failed set; rq belongs to the resolver
 * until then and to done afterwards. Returns -errno when the look-up could
 * not start: done is not called and rq stays the caller's.
 */
int drain_resolve_start(struct drain_resolver *r, struct drain_req *rq,
		void (*done)(struct drain_req *rq));

#endif
