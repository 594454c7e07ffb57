/* SPDX-License-Identifier: MIT */
/*
 * drain_resolve: see drain_resolve.h. The glue between a drain request and
 * core/resolver: which look-up (MX or the dest), and the answer copied back
 * into the request. No thread, no DNS code of its own.
 */
#include "proto/drain_resolve.h"

#include <errno.h>
#include <string.h>

#include "core/log.h"

/* The answer into rq (res is valid only during the call). */
static void drain_resolve_take(struct drain_req *rq, const struct resolver_result *res)
{
	rq->err = res->err;
	rq->failed = res->err != 0;
	if (res->err) {
		rq->relay[0] = '\0';
		return;
	}
	memcpy(&rq->dst, &res->addr, res->addrlen);
	rq->dstlen = res->addrlen;
	memcpy(rq->relay, res->relay, sizeof(rq->relay));
}

int drain_resolve_numeric(struct drain_req *rq)
{
	struct resolver_result res;
	int rc;

	if (!rq->relay[0])
		return 0; /* the MX: DNS */
	rc = resolver_numeric(rq->relay, DRAIN_SMTP_PORT, &res);
	if (rc == 0)
		return 0;
	if (rc < 0)
		log_err("drain %.*s: %s; mail stays queued", (int)rq->len, rq->dom, res.why);
	drain_resolve_take(rq, &res);
	return 1;
}

/* resolver_cb: on the resolver's thread. */
static void drain_resolve_answer(void *cookie, const struct resolver_result *res)
{
	struct drain_req *rq = cookie;

	if (res->err && res->err != -ECANCELED)
		log_warn("drain %.*s: cannot resolve: %s (%s); mail stays queued", (int)rq->len,
			 rq->dom, res->why, res->permanent ? "permanent" : "temporary");
	drain_resolve_take(rq, res);
	rq->done(rq);
}

int drain_resolve_start(struct resolver *r, struct drain_req *rq, drain_resolve_done done)
{
	rq->done = done;
	if (!rq->relay[0])
		return resolver_mx(r, rq->dom, DRAIN_SMTP_PORT, drain_resolve_answer, rq);
	return resolver_host(r, rq->relay, DRAIN_SMTP_PORT, drain_resolve_answer, rq);
}
