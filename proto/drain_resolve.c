/* SPDX-License-Identifier: MIT */
/*
 * drain_resolve: see drain_resolve.h. One detached thread per look-up
 * (getaddrinfo and res_nquery block), counted so shutdown can wait for the
 * last one before the engine loops it posts to are freed.
 */
#include "proto/drain_resolve.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <resolv.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

#define DRAIN_QUIESCE_POLL_US 10000
#define DRAIN_PORT_MAX 65535
#define DRAIN_PORT_TEXT 16

struct drain_resolver {
	_Atomic unsigned running;      /* look-up threads not yet finished */
};

/* What a look-up thread is handed. */
struct drain_resolve_job {
	struct drain_resolver *r;
	struct drain_req *rq;
	void (*done)(struct drain_req *rq);
};

struct drain_resolver *drain_resolver_new(void)
{
	struct drain_resolver *r = calloc(1, sizeof(*r));

	if (r)
		atomic_init(&r->running, 0);
	return r;
}

struct drain_resolver *drain_resolver_free(struct drain_resolver *r)
{
	free(r);
	return NULL;
}

void drain_resolver_quiesce(struct drain_resolver *r)
{
	/* A look-up ends with its DNS time-outs (resolv.conf: a few seconds
	 * per try); it posts to loops that may have stopped (dropped). */
	while (r && atomic_load(&r->running))
		usleep(DRAIN_QUIESCE_POLL_US);
}

/* "host[:port]", "[v6]:port", "1.2.3.4[:port]": split; 0 or -1. */
static int split_dest(const char *dest, char *host, size_t hostlen, unsigned *port)
{
	const char *colon = NULL, *h = dest, *hend;
	char *end;

	*port = DRAIN_SMTP_PORT;
	if (*dest == '[') {
		hend = strchr(dest, ']');
		if (!hend)
			return -1;
		h = dest + 1;
		if (hend[1] == ':')
			colon = hend + 1;
		else if (hend[1])
			return -1;
	} else {
		colon = strrchr(dest, ':');
		if (colon && strchr(dest, ':') != colon)
			colon = NULL; /* a bare IPv6 address */
		hend = colon ? colon : dest + strlen(dest);
	}
	if ((size_t)(hend - h) >= hostlen || hend == h)
		return -1;
	memcpy(host, h, (size_t)(hend - h));
	host[hend - h] = '\0';
	if (colon) {
		unsigned long p = strtoul(colon + 1, &end, 10);
		if (!colon[1] || *end || p == 0 || p > DRAIN_PORT_MAX)
			return -1;
		*port = (unsigned)p;
	}
	return 0;
}

int drain_resolve_numeric(struct drain_req *rq)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	char host[DRAIN_DOMAIN_MAX];
	unsigned port;
	socklen_t sl;

	if (!rq->relay[0] || split_dest(rq->relay, host, sizeof(host), &port))
		return 0;
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		sl = sizeof(*s4);
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		sl = sizeof(*s6);
	} else {
		return 0;
	}
	memcpy(&rq->dst, &ss, sizeof(ss));
	rq->dstlen = sl;
	snprintf(rq->relay, sizeof(rq->relay), "%.64s[%.64s]:%u", host, host, port);
	return 1;
}

/* The best (lowest preference) MX host of dom, or 0 when it has none
 * (RFC 5321 5.1: then the domain itself is the host). */
static int best_mx(const char *dom, char *out, size_t outlen)
{
	unsigned char ans[NS_PACKETSZ * 4];
	ns_msg msg;
	ns_rr rr;
	int n, best = -1;
	struct __res_state rs;

	memset(&rs, 0, sizeof(rs));
	if (res_ninit(&rs))
		return 0;
	n = res_nquery(&rs, dom, ns_c_in, ns_t_mx, ans, sizeof(ans));
	if (n > 0 && ns_initparse(ans, n, &msg) == 0) {
		for (int i = 0; i < ns_msg_count(msg, ns_s_an); i++) {
			char name[NS_MAXDNAME];
			int pref;

			if (ns_parserr(&msg, ns_s_an, i, &rr) || ns_rr_type(rr) != ns_t_mx ||
			    ns_rr_rdlen(rr) < 3)
				continue;
			pref = ns_get16(ns_rr_rdata(rr));
			if (dn_expand(ns_msg_base(msg), ns_msg_end(msg), ns_rr_rdata(rr) + 2,
				      name, sizeof(name)) < 0)
				continue;
			if (best < 0 || pref < best) {
				best = pref;
				snprintf(out, outlen, "%s", name);
			}
		}
	}
	res_nclose(&rs);
	return best >= 0;
}

/* Resolve rq->relay (or the MX) into dst and the relay text; failed set on
 * any error. Blocks. */
static void resolve_req(struct drain_req *rq)
{
	char host[NS_MAXDNAME], port[DRAIN_PORT_TEXT], addr[INET6_ADDRSTRLEN];
	struct addrinfo hints, *res = NULL;
	unsigned p = DRAIN_SMTP_PORT;
	const char *dest = rq->relay; /* the dest text, or "" for MX */
	int rc;

	if (*dest) {
		if (split_dest(dest, host, sizeof(host), &p)) {
			log_err("drain %.*s: bad dest \"%s\"", (int)rq->len, rq->dom, dest);
			rq->failed = 1;
			return;
		}
	} else if (!best_mx(rq->dom, host, sizeof(host))) {
		snprintf(host, sizeof(host), "%.*s", (int)rq->len, rq->dom);
	}
	snprintf(port, sizeof(port), "%u", p);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc || !res) {
		log_warn("drain %.*s: cannot resolve %s: %s; mail stays queued", (int)rq->len,
			 rq->dom, host, gai_strerror(rc));
		rq->failed = 1;
		return;
	}
	memcpy(&rq->dst, res->ai_addr, res->ai_addrlen);
	rq->dstlen = res->ai_addrlen;
	if (res->ai_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, addr, sizeof(addr));
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, addr, sizeof(addr));
	snprintf(rq->relay, sizeof(rq->relay), "%.200s[%s]:%u", host, addr, p);
	freeaddrinfo(res);
}

/* Look-up thread: DNS may block, so never on an engine thread. */
static void *resolve_main(void *arg)
{
	struct drain_resolve_job *rj = arg;
	struct drain_resolver *r = rj->r;

	resolve_req(rj->rq);
	rj->done(rj->rq);
	free(rj);
	/* Last: quiesce may return (and the loops be freed) after this. */
	atomic_fetch_sub(&r->running, 1);
	return NULL;
}

int drain_resolve_start(struct drain_resolver *r, struct drain_req *rq,
			void (*done)(struct drain_req *rq))
{
	struct drain_resolve_job *rj = malloc(sizeof(*rj));
	pthread_attr_t at;
	pthread_t th;
	int rc;

	if (!rj)
		return -ENOMEM;
	rj->r = r;
	rj->rq = rq;
	rj->done = done;
	rc = pthread_attr_init(&at);
	if (rc) {
		free(rj);
		return -rc;
	}
	(void)pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	atomic_fetch_add(&r->running, 1);
	/* pthread_create returns the error number; errno is not set. */
	rc = pthread_create(&th, &at, resolve_main, rj);
	pthread_attr_destroy(&at);
	if (rc) {
		atomic_fetch_sub(&r->running, 1);
		free(rj);
		return -rc;
	}
	return 0;
}
