/* SPDX-License-Identifier: MIT */
/*
 * drain_resolve: where a drain delivers, as every address to try in order:
 * a domain's dest ("host[:port]", "[v6]:port", an address: that host's
 * addresses) or, for dest = mx, every MX by preference (RFC 5321 5.1, null
 * MX RFC 7505) through proto/route.c, the scheduler's routing. A numeric
 * dest is settled at once; a name goes to the process's one bounded
 * resolver (core/resolver.h), which answers on its own thread. The resolver
 * belongs to the daemon's wiring, not to this file.
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
 * fills addrs (addrs.n >= 1), or sets failed (and err, as addrs.err).
 * fan_out copies it once per engine thread (thread says which).
 */
struct drain_req {
	struct drain_hub *hub;
	char dom[DRAIN_DOMAIN_MAX];    /* NUL-terminated, lower case */
	size_t len;
	char relay[DRAIN_RELAY_MAX];   /* in: the dest text, "" for MX */
	struct resolver_list addrs;    /* out: every address to try, in order */
	int failed;                    /* resolution failed: just finish */
	int err;                       /* why (resolver_list.err), or 0 */
	unsigned thread;               /* which thread this copy is for */
	enum domtab_tls tls;           /* the domain's STARTTLS policy */
	drain_resolve_done done;       /* set by drain_resolve_start */
	struct drain_begun *begun;     /* fan-out: shared by its jobs, or NULL */
};

/*
 * Settle rq at once when no DNS is needed: dest (rq->relay) a numeric
 * address with an optional port (addrs holds it), or malformed (failed and
 * err set, logged). Returns 1 then; 0 when DNS is needed (a name, or "" for
 * the MX), rq unchanged but for addrs. Pure; any thread.
 */
int drain_resolve_numeric(struct drain_req *rq);

/*
 * Resolve rq->relay (a dest name: that host's addresses) or, when it is
 * "", rq->dom's MX hosts (their addresses, by preference) on r, the
 * process's resolver (route_resolve(), as the scheduler routes).
 * Returns 0: done(rq) is then called exactly once, on the resolver's
 * thread, with addrs filled, or failed and err set (-ECANCELED when
 * resolver_free() came first; any other failure is logged); rq belongs to
 * the resolver until then and to done afterwards. Returns -errno when the
 * look-up could not start (-EAGAIN: too many pending, or -ESHUTDOWN,
 * -EINVAL, -ENOMEM): done is not called, rq stays the caller's.
 */
int drain_resolve_start(struct resolver *r, struct drain_req *rq, drain_resolve_done done);

/*
 * Address i of l into dst (size *dstlen on return) and relay
 * ("host[addr]:port", size relaylen). Returns 0, or -ENOENT when l has
 * no address i (nothing written). Pure.
 */
int drain_resolve_addr(const struct resolver_list *l, unsigned i, struct sockaddr_storage *dst,
		socklen_t *dstlen, char *relay, size_t relaylen);

#endif
