/* SPDX-License-Identifier: MIT */
/*
 * drain_resolve: where a drain delivers: a domain's dest ("host[:port]",
 * "[v6]:port", an address) or its best MX (RFC 5321 5.1). A numeric dest is
 * settled at once; a name goes to the process's one bounded resolver
 * (core/resolver.h), which answers on its own thread. The resolver belongs
 * to the daemon's wiring, not to this file.
 */
#ifndef ETRND_PROTO_DRAIN_RESOLVE_H
#define ETRND_PROTO_DRAIN_RESOLVE_H

#include <stddef.h>
#include <sys/socket.h>

#include "core/domtab.h"
#include "core/resolver.h"

#define DRAIN_DOMAIN_MAX RESOLVER_NAME_MAX
#define DRAIN_RELAY_MAX RESOLVER_RELAY_MAX
#define DRAIN_SMTP_PORT RESOLVER_SMTP_PORT

struct drain_hub;
struct drain_req;

/* Called once per started look-up, on the resolver's thread. */
typedef void (*drain_resolve_done)(struct drain_req *rq);

/*
 * One drain to start: the domain, and where to deliver it. The resolver
 * fills dst/dstlen and relay, or sets failed (and err). fan_out copies it
 * once per engine thread (thread says which).
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
	int err;                       /* why (resolver_result.err), or 0 */
	unsigned thread;               /* which thread this copy is for */
	enum domtab_tls tls;           /* the domain's STARTTLS policy */
	drain_resolve_done done;       /* set by drain_resolve_start */
};

/*
 * Settle rq at once when no DNS is needed: dest (rq->relay) a numeric
 * address with an optional port (dst, dstlen and relay "addr[addr]:port"
 * filled), or malformed (failed and err set, logged). Returns 1 then; 0 when
 * DNS is needed (a name, or "" for the MX), rq unchanged. Pure; any thread.
 */
int drain_resolve_numeric(struct drain_req *rq);

/*
 * Resolve rq->relay (a dest name, or "" for rq->dom's MX) on r, the
 * process's resolver. Returns 0: done(rq) is then called exactly once, on
 * the resolver's thread, with dst/dstlen/relay filled, or failed and err set
 * (-ECANCELED when resolver_free() came first; any other failure is logged);
 * rq belongs to the resolver until then and to done afterwards. Returns
 * -errno when the look-up could not start (-EAGAIN: too many pending, or
 * -ESHUTDOWN, -EINVAL, -ENOMEM): done is not called, rq stays the caller's.
 */
int drain_resolve_start(struct resolver *r, struct drain_req *rq, drain_resolve_done done);

#endif
