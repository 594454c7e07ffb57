/* SPDX-License-Identifier: MIT */
/*
 * drain_resolve: see drain_resolve.h. The glue between a drain request and
 * proto/route.c: which look-up (the dest's host, or the domain's MX), and
 * the addresses copied back into the request. No thread, no DNS code of
 * its own.
 */
#include "proto/drain_resolve.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "proto/route.h"

/* The answer's addresses, joined for one log line. */
#define DRAIN_RESOLVE_LIST_MAX (RESOLVER_ADDRS_MAX * (RESOLVER_RELAY_MAX + 2))

/* The answer into rq (res may be valid only during the call). */
static void drain_resolve_take(struct drain_req *rq, const struct resolver_list *res)
{
	if (res != &rq->addrs)
		memcpy(&rq->addrs, res, sizeof(rq->addrs));
	rq->err = res->err ? res->err : (res->n ? 0 : -ENODATA);
	rq->failed = rq->err != 0;
}

int drain_resolve_addr(const struct resolver_list *l, unsigned i, struct sockaddr_storage *dst,
		       socklen_t *dstlen, char *relay, size_t relaylen)
{
	if (i >= l->n || l->a[i].addrlen > sizeof(*dst))
		return -ENOENT;
	memcpy(dst, &l->a[i].addr, l->a[i].addrlen);
	*dstlen = l->a[i].addrlen;
	snprintf(relay, relaylen, "%s", l->a[i].relay);
	return 0;
}

int drain_resolve_numeric(struct drain_req *rq)
{
	if (!rq->relay[0])
		return 0; /* the MX: DNS */
	/* Without a resolver a name is -ESHUTDOWN: left for DNS. */
	if (route_resolve(NULL, ROUTE_DEST, rq->relay, NULL, NULL, &rq->addrs) != 1)
		return 0;
	if (rq->addrs.err)
		log_err("drain %.*s: %s; mail stays queued", (int)rq->len, rq->dom, rq->addrs.why);
	drain_resolve_take(rq, &rq->addrs);
	return 1;
}

/* One line naming what was looked up and every address the drain will try,
 * in order: the evidence of MX preference and fallback in the log. */
static void drain_resolve_log(const struct drain_req *rq, const struct resolver_list *res)
{
	char list[DRAIN_RESOLVE_LIST_MAX];
	size_t o = 0;

	list[0] = '\0';
	for (unsigned i = 0; i < res->n && o < sizeof(list); i++) {
		int w = snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "", res->a[i].relay);
		if (w < 0)
			break;
		o += (size_t)w;
	}
	log_info("drain %.*s: %s %s: %u address(es) to try: %s", (int)rq->len, rq->dom,
		 rq->relay[0] ? "dest" : "mx", rq->relay[0] ? rq->relay : rq->dom, res->n, list);
}

/* resolver_list_cb: on the resolver's thread. */
static void drain_resolve_answer(void *cookie, const struct resolver_list *res)
{
	struct drain_req *rq = cookie;

	if (res->err && res->err != -ECANCELED)
		log_warn("drain %.*s: cannot resolve: %s (%s); mail stays queued", (int)rq->len,
			 rq->dom, res->why, res->permanent ? "permanent" : "temporary");
	else if (!res->err)
		drain_resolve_log(rq, res);
	drain_resolve_take(rq, res);
	rq->done(rq);
}

int drain_resolve_start(struct resolver *r, struct drain_req *rq, drain_resolve_done done)
{
	enum route_kind kind = rq->relay[0] ? ROUTE_DEST : ROUTE_MX;
	int rc;

	rq->done = done;
	rc = route_resolve(r, kind, rq->relay[0] ? rq->relay : rq->dom, drain_resolve_answer, rq,
			   &rq->addrs);
	if (rc != 1)
		return rc;
	/* Settled without DNS (a numeric dest drain_resolve_numeric() would
	 * have taken, or a malformed one): not a look-up; done never runs
	 * inside the submit, so the caller hears it as one that cannot start. */
	if (rq->addrs.err)
		log_err("drain %.*s: %s; mail stays queued", (int)rq->len, rq->dom, rq->addrs.why);
	return rq->addrs.err ? rq->addrs.err : -EINVAL;
}
