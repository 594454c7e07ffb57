/* SPDX-License-Identifier: MIT */
/*
 * resolver: see resolver.h. Submitters append to a FIFO under a mutex and
 * kick an eventfd; the resolver thread moves requests into flight (at most
 * inflight_max), drives c-ares with poll(2), enforces each deadline itself
 * and answers through the callback. A request answered before c-ares is done
 * with it (deadline, cancel) stays allocated as LATE until c-ares lets go.
 */
#include "core/netaddr.h"
#include "core/now.h"
#include "core/resolver.h"
#include "core/resolver_answer.h"
#include "core/resolver_list.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define RESOLVER_PORT_MAX 65535

enum resolver_state {
	RESOLVER_QUEUED,     /* in the FIFO, not yet started */
	RESOLVER_MX,         /* MX query in c-ares */
	RESOLVER_ADDR,       /* A/AAAA (ares_getaddrinfo) in c-ares */
	RESOLVER_QUERY,      /* a generic record query (resolver_query) */
	RESOLVER_LATE,       /* answered already; c-ares still holds it */
};

static const char *const resolver_state_name[] = {
	[RESOLVER_QUEUED] = "queued",
	[RESOLVER_MX] = "mx",
	[RESOLVER_ADDR] = "addr",
	[RESOLVER_QUERY] = "query",
	[RESOLVER_LATE] = "late",
};

/* What a route request (resolver_route) adds to a request. */
struct resolver_route {
	resolver_list_cb cb;
	struct resolver_list list;       /* the answer, built host by host */
	struct resolver_list_mx mx;      /* the hosts to look up, in order */
	unsigned next;                   /* mx.host[next] is looked up next */
	int failed;                      /* list.err/why hold a skipped host's failure */
};

struct resolver_req {
	struct resolver *r;
	struct resolver_req *next, *prev; /* FIFO (next only), then live list */
	enum resolver_state state;
	int mx;                          /* route mail for name (RFC 5321 5.1) */
	int in_ares;                     /* c-ares holds a pointer to us */
	unsigned port;
	uint64_t deadline_ms;            /* CLOCK_MONOTONIC */
	char name[RESOLVER_NAME_MAX];    /* the domain (mx) or the host */
	char host[RESOLVER_NAME_MAX];    /* whose address is looked up */
	resolver_cb cb;                  /* resolver_host/_mx; NULL for a route */
	struct resolver_route *rt;       /* resolver_route only */
	resolver_answer_cb qcb;          /* resolver_query only: */
	enum resolver_rrtype qtype;
	unsigned timeout_ms;             /* its own deadline, or 0 */
	struct resolver_answer *ans;     /* the parsed answer, when one came */
	void *cookie;
};

struct resolver {
	struct resolver_conf conf;
	char *servers;
	char *self;                      /* conf.self, copied */
	int evfd;                        /* wakes the thread: new work, stop */
	pthread_t thread;

	pthread_mutex_t mu;              /* guards the FIFO, stopping, stats */
	struct resolver_req *qhead, *qtail;
	int stopping;
	struct resolver_stats st;

	/* Resolver thread only. */
	ares_channel ch;
	struct resolver_req *lhead, *ltail; /* in flight, by deadline */
	unsigned nlive, nlate;
};

/* ares_library_init() counts its users without a lock (1.18). */
static pthread_mutex_t resolver_lib_mu = PTHREAD_MUTEX_INITIALIZER;

static void resolver_enter_state(struct resolver_req *q, enum resolver_state to)
{
	log_debug("resolver %s: %s -> %s", q->name, resolver_state_name[q->state],
		  resolver_state_name[to]);
	q->state = to;
}

static void resolver_kick(struct resolver *r)
{
	uint64_t one = 1;

	/* Only fails when the counter would overflow: a wake-up is pending. */
	(void)!write(r->evfd, &one, sizeof(one));
}

/* ---- destinations --------------------------------------------------------- */

int resolver_dest_split(const char *dest, char *host, size_t hostlen,
			unsigned default_port, unsigned *port, int *bracketed)
{
	const char *colon = NULL, *h = dest, *hend;
	char *end;

	*port = default_port;
	if (bracketed)
		*bracketed = *dest == '[';
	if (*dest == '[') {
		hend = strchr(dest, ']');
		if (!hend)
			return -EINVAL;
		h = dest + 1;
		if (hend[1] == ':')
			colon = hend + 1;
		else if (hend[1])
			return -EINVAL;
	} else {
		colon = strrchr(dest, ':');
		if (colon && strchr(dest, ':') != colon)
			colon = NULL; /* a bare IPv6 address */
		hend = colon ? colon : dest + strlen(dest);
	}
	if ((size_t)(hend - h) >= hostlen || hend == h)
		return -EINVAL;
	memcpy(host, h, (size_t)(hend - h));
	host[hend - h] = '\0';
	if (colon) {
		unsigned long p = strtoul(colon + 1, &end, 10);
		if (!colon[1] || *end || p == 0 || p > RESOLVER_PORT_MAX)
			return -EINVAL;
		*port = (unsigned)p;
	}
	return 0;
}

/* Fill res->addr from a sockaddr, set the port, write host[addr]:port. */
static void resolver_fill(struct resolver_result *res, const char *host,
			  const struct sockaddr *sa, socklen_t salen, unsigned port)
{
	struct resolver_addr a;

	resolver_list_addr_set(&a, host, sa, salen, port);
	memcpy(&res->addr, &a.addr, sizeof(res->addr));
	res->addrlen = a.addrlen;
	res->err = 0;
	res->permanent = 0;
	res->why[0] = '\0';
	memcpy(res->host, a.host, sizeof(res->host));
	memcpy(res->relay, a.relay, sizeof(res->relay));
}

/* 1 and *res filled when host is a numeric address, else 0. */
static int resolver_numeric_host(const char *host, unsigned port, struct resolver_result *res)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (netaddr_from_text(host, port, &ss, &len))
		return 0;
	resolver_fill(res, host, (struct sockaddr *)&ss, len, port);
	return 1;
}

int resolver_numeric(const char *dest, unsigned default_port, struct resolver_result *res)
{
	char host[RESOLVER_NAME_MAX];
	unsigned port;

	memset(res, 0, sizeof(*res));
	if (resolver_dest_split(dest, host, sizeof(host), default_port, &port, NULL)) {
		res->err = -EINVAL;
		res->permanent = 1;
		snprintf(res->why, sizeof(res->why), "malformed destination \"%.200s\"", dest);
		return -EINVAL;
	}
	return resolver_numeric_host(host, port, res);
}

/* ---- answering ------------------------------------------------------------ */

static void resolver_live_unlink(struct resolver *r, struct resolver_req *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		r->lhead = q->next;
	if (q->next)
		q->next->prev = q->prev;
	else
		r->ltail = q->prev;
	q->next = q->prev = NULL;
	r->nlive--;
}

static void resolver_req_free(struct resolver_req *q)
{
	free(q->rt);
	free(q->ans);
	free(q);
}

static void resolver_answer_query(struct resolver_req *q, const struct resolver_result *res);

/*
 * Run q's callback (the one time it runs) with res, or for a route request
 * with its list, and account for it. If c-ares still holds q, q becomes
 * LATE and is freed when c-ares lets go; otherwise it is freed here. q must
 * be live or never started.
 */
static void resolver_answer(struct resolver_req *q, const struct resolver_result *res)
{
	struct resolver *r = q->r;
	int err = q->rt ? q->rt->list.err : q->ans ? q->ans->err : res->err;

	if (q->state == RESOLVER_MX || q->state == RESOLVER_ADDR || q->state == RESOLVER_QUERY)
		resolver_live_unlink(r, q);
	/* Counted first, so whoever the callback wakes sees the counters. */
	pthread_mutex_lock(&r->mu);
	r->st.pending--;
	r->st.answered++;
	if (err == -ETIMEDOUT)
		r->st.timed_out++;
	pthread_mutex_unlock(&r->mu);
	if (q->rt) {
		q->rt->cb(q->cookie, &q->rt->list);
		free(q->rt); /* a LATE request needs only q */
		q->rt = NULL;
	} else if (q->qcb) {
		resolver_answer_query(q, res);
	} else {
		q->cb(q->cookie, res);
	}
	if (q->in_ares) {
		resolver_enter_state(q, RESOLVER_LATE);
		r->nlate++;
	} else {
		resolver_req_free(q);
	}
}

/* A query's callback: the parsed answer, or res's error. */
static void resolver_answer_query(struct resolver_req *q, const struct resolver_result *res)
{
	struct resolver_answer a;

	if (q->ans) {
		q->qcb(q->cookie, q->ans);
		free(q->ans);
		q->ans = NULL;
		return;
	}
	memset(&a, 0, sizeof(a));
	a.err = res->err;
	a.permanent = res->permanent;
	memcpy(a.why, res->why, sizeof(a.why));
	q->qcb(q->cookie, &a);
}

/* A route request answered with the addresses found so far. */
static void resolver_answer_list(struct resolver_req *q)
{
	struct resolver_list *l = &q->rt->list;

	l->err = 0;
	l->permanent = 0;
	l->why[0] = '\0';
	resolver_answer(q, NULL);
}

static void resolver_fail(struct resolver_req *q, int err, int permanent,
			  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Answer q with an error. A route request that ran out of time with some
 * addresses already found is answered with those instead: they are good. */
static void resolver_fail(struct resolver_req *q, int err, int permanent, const char *fmt, ...)
{
	struct resolver_result res;
	char *why = res.why;
	size_t whylen = sizeof(res.why);
	va_list ap;

	if (q->rt && q->rt->list.n && err == -ETIMEDOUT) {
		resolver_answer_list(q);
		return;
	}
	memset(&res, 0, sizeof(res));
	res.err = err;
	res.permanent = permanent;
	if (q->rt) {
		q->rt->list.n = 0;
		q->rt->list.err = err;
		q->rt->list.permanent = permanent;
		why = q->rt->list.why;
		whylen = sizeof(q->rt->list.why);
	}
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	resolver_answer(q, &res);
}

static void resolver_fail_status(struct resolver_req *q, int status, const char *what,
				 const char *name)
{
	int err, permanent;

	resolver_answer_status(status, &err, &permanent);
	resolver_fail(q, err, permanent, "%s lookup of %.255s: %s", what, name,
		      resolver_answer_status_text(status));
}

static void resolver_count_late(struct resolver *r)
{
	pthread_mutex_lock(&r->mu);
	r->st.late_dropped++;
	pthread_mutex_unlock(&r->mu);
}

/*
 * c-ares is done with q. 1 when its outcome must be dropped: q was LATE
 * (answered already; now freed), or the deadline passed before the thread
 * got round to expiring it (a loaded machine), so q is answered -ETIMEDOUT
 * now, never with an answer that came late.
 */
static int resolver_released(struct resolver_req *q, int status)
{
	struct resolver *r = q->r;

	q->in_ares = 0;
	if (q->state == RESOLVER_LATE) {
		r->nlate--;
		if (status != ARES_EDESTRUCTION)
			resolver_count_late(r);
		resolver_req_free(q);
		return 1;
	}
	if (status == ARES_EDESTRUCTION || now_mono_ms() < q->deadline_ms)
		return 0;
	resolver_count_late(r);
	resolver_fail(q, -ETIMEDOUT, 0, "lookup of %.255s: the answer came after the deadline",
		      q->name);
	return 1;
}

/* ---- lookups (resolver thread) --------------------------------------------- */

static void resolver_addr_done(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
	struct resolver_req *q = arg;
	struct resolver_result res;

	if (resolver_released(q, status)) {
		ares_freeaddrinfo(ai);
		return;
	}
	if (status == ARES_SUCCESS && ai && ai->nodes &&
	    ai->nodes->ai_addrlen <= sizeof(res.addr)) {
		/* c-ares sorted the nodes (RFC 6724), as getaddrinfo() would. */
		resolver_fill(&res, q->host, ai->nodes->ai_addr, ai->nodes->ai_addrlen, q->port);
		ares_freeaddrinfo(ai);
		resolver_answer(q, &res);
		return;
	}
	ares_freeaddrinfo(ai);
	if (status == ARES_SUCCESS)
		status = ARES_ENODATA;
	resolver_fail_status(q, status, "address", q->host);
}

static void resolver_route_addr_done(void *arg, int status, int timeouts,
				     struct ares_addrinfo *ai);

static void resolver_start_addr(struct resolver_req *q)
{
	struct ares_addrinfo_hints hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };

	resolver_enter_state(q, RESOLVER_ADDR);
	q->in_ares = 1;
	/* May call back before it returns: q is not touched afterwards. */
	ares_getaddrinfo(q->r->ch, q->host, NULL, &hints,
			 q->rt ? resolver_route_addr_done : resolver_addr_done, q);
}

/*
 * A route request's next step: look up the next MX host while addresses may
 * still be added, else answer. With no address at all, the answer is the
 * failure kept from the skipped hosts (a temporary one if any host failed
 * temporarily: only when every host is permanently gone does mail bounce).
 */
static void resolver_route_next(struct resolver_req *q)
{
	struct resolver_route *rt = q->rt;

	if (rt->next < rt->mx.n && rt->list.n < RESOLVER_ADDRS_MAX) {
		snprintf(q->host, sizeof(q->host), "%s", rt->mx.host[rt->next++]);
		resolver_start_addr(q);
		return;
	}
	if (rt->list.n) {
		resolver_answer_list(q);
		return;
	}
	if (!rt->failed) { /* unreachable: every host either adds or fails */
		rt->list.err = -ENODATA;
		rt->list.permanent = 1;
		snprintf(rt->list.why, sizeof(rt->list.why), "%.255s: no address", q->name);
	}
	resolver_answer(q, NULL);
}

/* One MX host's addresses, or why it is skipped. */
static void resolver_route_addr_done(void *arg, int status, int timeouts,
				     struct ares_addrinfo *ai)
{
	struct resolver_req *q = arg;
	struct resolver_route *rt;
	int err, permanent;

	if (resolver_released(q, status)) {
		ares_freeaddrinfo(ai);
		return;
	}
	rt = q->rt;
	if (status == ARES_SUCCESS && (!ai || !ai->nodes))
		status = ARES_ENODATA;
	if (status == ARES_SUCCESS)
		resolver_list_add_nodes(&rt->list, q->host, ai->nodes, q->port);
	ares_freeaddrinfo(ai);
	if (status == ARES_EDESTRUCTION) { /* the channel is going: no next host */
		resolver_fail_status(q, status, "address", q->host);
		return;
	}
	resolver_answer_status(status, &err, &permanent);
	/* Keep the first failure, unless a temporary one follows permanent. */
	if (status != ARES_SUCCESS && (!rt->failed || (rt->list.permanent && !permanent))) {
		rt->failed = 1;
		rt->list.err = err;
		rt->list.permanent = permanent;
		snprintf(rt->list.why, sizeof(rt->list.why), "address lookup of %.255s: %s",
			 q->host, resolver_answer_status_text(status));
	}
	if (status != ARES_SUCCESS)
		log_debug("resolver %s: MX host %s skipped: %s", q->name, q->host,
			  resolver_answer_status_text(status));
	resolver_route_next(q);
}

/* The hosts of a route request: rt->mx when sorted (the MX answer), else
 * (no MX, or mx 0) the name itself. Then the first host's addresses. */
static void resolver_route_hosts(struct resolver_req *q, int sorted)
{
	struct resolver_route *rt = q->rt;

	if (!sorted) {
		rt->mx.n = 1;
		snprintf(rt->mx.host[0], sizeof(rt->mx.host[0]), "%s", q->name);
	}
	rt->next = 0;
	resolver_route_next(q);
}

static void resolver_mx_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct resolver_req *q = arg;
	struct ares_mx_reply *mx = NULL;
	struct resolver_list_mx sorted;
	int found;

	if (resolver_released(q, status))
		return;
	if (status == ARES_SUCCESS)
		status = ares_parse_mx_reply(abuf, alen, &mx);
	if (status == ARES_ENODATA) {
		/* RFC 5321 5.1: no MX, the domain itself is the host. */
		snprintf(q->host, sizeof(q->host), "%s", q->name);
		if (q->rt)
			resolver_route_hosts(q, 0);
		else
			resolver_start_addr(q);
		return;
	}
	if (status != ARES_SUCCESS) {
		resolver_fail_status(q, status, "MX", q->name);
		return;
	}
	/* resolver_mx keeps the answer's order among equals, as it always did;
	 * a route spreads them. */
	found = resolver_list_sort_mx(mx, q->rt ? &q->rt->mx : &sorted, q->rt != NULL);
	ares_free_data(mx);
	if (found == 0) {
		resolver_fail(q, -ENXIO, 1, "%.255s has a null MX (RFC 7505): it accepts no mail",
			      q->name);
		return;
	}
	if (q->rt && found > 0 && !resolver_list_drop_self(&q->rt->mx, q->r->self)) {
		resolver_fail(q, -ELOOP, 0, "mail for %.255s loops back to myself: %s is its best MX",
			      q->name, q->r->self);
		return;
	}
	if (q->rt) {
		resolver_route_hosts(q, found > 0);
		return;
	}
	snprintf(q->host, sizeof(q->host), "%s", found > 0 ? sorted.host[0] : q->name);
	resolver_start_addr(q);
}

/* A generic query's answer: parsed here, on the resolver thread. */
static void resolver_query_done(void *arg, int status, int timeouts, unsigned char *abuf,
				int alen)
{
	struct resolver_req *q = arg;

	(void)timeouts;
	if (resolver_released(q, status))
		return;
	if (status != ARES_SUCCESS) {
		resolver_fail_status(q, status, resolver_answer_type_name(q->qtype), q->name);
		return;
	}
	q->ans = resolver_answer_parse(q->qtype, abuf, alen);
	if (!q->ans) {
		resolver_fail(q, -ENOMEM, 0, "%s lookup of %.255s: out of memory",
			      resolver_answer_type_name(q->qtype), q->name);
		return;
	}
	if (q->ans->err) {
		/* The log phrase names the name, as every other failure does. */
		char why[RESOLVER_WHY_MAX];

		snprintf(why, sizeof(why), "%.60s", q->ans->why);
		if (snprintf(q->ans->why, sizeof(q->ans->why), "%s lookup of %.200s: %.60s",
			     resolver_answer_type_name(q->qtype), q->name, why) < 0)
			q->ans->why[0] = '\0';
	}
	resolver_answer(q, NULL);
}

/* A route request for a numeric name: its one address, no DNS. 1 if so. */
static int resolver_route_numeric(struct resolver_req *q)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (netaddr_from_text(q->name, q->port, &ss, &len))
		return 0;
	resolver_list_add(&q->rt->list, q->name, (struct sockaddr *)&ss, len, q->port);
	resolver_answer_list(q);
	return 1;
}

/* Into the live list, which stays sorted by deadline (a query may have a
 * shorter one than requests started before it): from the tail back, so the
 * usual case (the same timeout for all) costs one step. */
static void resolver_live_insert(struct resolver *r, struct resolver_req *q)
{
	struct resolver_req *after = r->ltail;

	while (after && after->deadline_ms > q->deadline_ms)
		after = after->prev;
	q->prev = after;
	q->next = after ? after->next : r->lhead;
	if (q->next)
		q->next->prev = q;
	else
		r->ltail = q;
	if (after)
		after->next = q;
	else
		r->lhead = q;
	r->nlive++;
}

/* Begin one request taken from the FIFO: into flight, or answered now. */
static void resolver_start(struct resolver *r, struct resolver_req *q, uint64_t now)
{
	struct resolver_result res;

	if (q->deadline_ms <= now) {
		resolver_fail(q, -ETIMEDOUT, 0, "lookup of %.255s: no time left after waiting in the queue",
			      q->name);
		return;
	}
	if (q->rt && resolver_route_numeric(q))
		return;
	if (!q->rt && !q->mx && resolver_numeric_host(q->host, q->port, &res)) {
		resolver_answer(q, &res);
		return;
	}
	resolver_live_insert(r, q);
	if (q->qcb) {
		resolver_enter_state(q, RESOLVER_QUERY);
		q->in_ares = 1;
		ares_query(r->ch, q->name, C_IN, (int)q->qtype, resolver_query_done, q);
		return;
	}
	if (!q->mx) {
		if (q->rt)
			resolver_route_hosts(q, 0);
		else
			resolver_start_addr(q);
		return;
	}
	resolver_enter_state(q, RESOLVER_MX);
	q->in_ares = 1;
	ares_query(r->ch, q->name, C_IN, T_MX, resolver_mx_done, q);
}

/*
 * Move requests from the FIFO into flight while there is room (and any whose
 * deadline passed in the queue, to answer them). Returns 1 once stopping;
 * *qdeadline is the deadline of the first request left queued, or 0.
 */
static int resolver_take(struct resolver *r, uint64_t now, uint64_t *qdeadline)
{
	struct resolver_req *first = NULL, *last = NULL, *q;
	int stopping;

	pthread_mutex_lock(&r->mu);
	while ((q = r->qhead) &&
	       (r->nlive + r->nlate < r->conf.inflight_max || q->deadline_ms <= now)) {
		r->qhead = q->next;
		if (!r->qhead)
			r->qtail = NULL;
		q->next = NULL;
		if (last)
			last->next = q;
		else
			first = q;
		last = q;
		r->nlive++; /* counted now so the loop sees the room shrink */
	}
	*qdeadline = r->qhead ? r->qhead->deadline_ms : 0;
	stopping = r->stopping;
	pthread_mutex_unlock(&r->mu);
	while ((q = first)) {
		first = q->next;
		r->nlive--;
		resolver_start(r, q, now);
	}
	return stopping;
}

/* Answer, by their deadline, the lookups c-ares has not finished. */
static void resolver_expire(struct resolver *r, uint64_t now)
{
	while (r->lhead && r->lhead->deadline_ms <= now) {
		struct resolver_req *q = r->lhead;
		resolver_fail(q, -ETIMEDOUT, 0, "%s lookup of %.255s: no answer in time",
			      q->state == RESOLVER_MX ? "MX" :
			      q->state == RESOLVER_QUERY ? resolver_answer_type_name(q->qtype) :
			      "address",
			      q->state == RESOLVER_ADDR ? q->host : q->name);
	}
}

/* Sleep in poll(2) until a c-ares socket, the eventfd or the next timeout.
 * ares_getsock() names at most ARES_GETSOCK_MAXNUM (16) sockets: c-ares
 * keeps one UDP socket per server (plus TCP after a truncated answer), so
 * that covers eight servers; resolv.conf allows three. */
static void resolver_wait(struct resolver *r, uint64_t now, uint64_t qdeadline)
{
	struct pollfd pfd[ARES_GETSOCK_MAXNUM + 1];
	ares_socket_t socks[ARES_GETSOCK_MAXNUM];
	struct timeval tvbuf, *tv;
	uint64_t wake = qdeadline;
	unsigned bits;
	int n = 1, ms = -1;

	pfd[0] = (struct pollfd){ .fd = r->evfd, .events = POLLIN };
	/* The bit tests of ARES_GETSOCK_READABLE/WRITABLE, unsigned: theirs
	 * shift 1 into the sign bit of an int. */
	bits = (unsigned)ares_getsock(r->ch, socks, ARES_GETSOCK_MAXNUM);
	for (unsigned i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
		short ev = (short)((bits & 1u << i ? POLLIN : 0) |
				   (bits & 1u << (i + ARES_GETSOCK_MAXNUM) ? POLLOUT : 0));
		if (ev)
			pfd[n++] = (struct pollfd){ .fd = socks[i], .events = ev };
	}
	if (r->lhead && (!wake || r->lhead->deadline_ms < wake))
		wake = r->lhead->deadline_ms;
	if (wake)
		ms = wake <= now ? 0 : wake - now > INT_MAX ? INT_MAX : (int)(wake - now);
	tv = ares_timeout(r->ch, NULL, &tvbuf);
	if (tv) {
		int ams = (int)(tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000);
		if (ms < 0 || ams < ms)
			ms = ams;
	}
	if (poll(pfd, (nfds_t)n, ms) < 0)
		return; /* EINTR: the loop comes round again */
	if (pfd[0].revents & POLLIN) {
		uint64_t v;
		(void)!read(r->evfd, &v, sizeof(v));
	}
	for (int i = 1; i < n; i++) {
		if (!pfd[i].revents)
			continue;
		ares_process_fd(r->ch,
				pfd[i].revents & (POLLIN | POLLERR | POLLHUP) ? pfd[i].fd : ARES_SOCKET_BAD,
				pfd[i].revents & (POLLOUT | POLLERR) ? pfd[i].fd : ARES_SOCKET_BAD);
	}
	ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* c-ares timeouts */
}

/* Stopping: answer -ECANCELED to everything queued or in flight, then let
 * ares_destroy() hand back (and free) what it still holds. */
static void resolver_cancel_all(struct resolver *r)
{
	struct resolver_req *q;

	pthread_mutex_lock(&r->mu);
	q = r->qhead;
	r->qhead = r->qtail = NULL;
	pthread_mutex_unlock(&r->mu);
	while (q) {
		struct resolver_req *next = q->next;
		resolver_fail(q, -ECANCELED, 0, "lookup of %.255s: resolver stopped", q->name);
		q = next;
	}
	while ((q = r->lhead))
		resolver_fail(q, -ECANCELED, 0, "lookup of %.255s: resolver stopped", q->name);
	ares_destroy(r->ch);
	r->ch = NULL;
	if (r->nlate)
		panic("%u late lookups outlived ares_destroy", r->nlate);
}

static void *resolver_main(void *arg)
{
	struct resolver *r = arg;
	uint64_t qdeadline;

	for (;;) {
		uint64_t now = now_mono_ms();
		if (resolver_take(r, now, &qdeadline))
			break;
		resolver_expire(r, now);
		resolver_wait(r, now, qdeadline);
	}
	resolver_cancel_all(r);
	return NULL;
}

/* ---- life cycle and submission ------------------------------------------- */

static int resolver_channel(struct resolver *r, char *err, size_t errlen)
{
	struct ares_options o;
	int rc;

	memset(&o, 0, sizeof(o));
	o.timeout = (int)r->conf.try_ms;
	o.tries = (int)r->conf.tries;
	o.ndomains = 0; /* names are absolute: no resolv.conf search list,
	                   as mail routing wants (Postfix does the same) */
	rc = ares_init_options(&r->ch, &o, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_DOMAINS);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
		r->ch = NULL;
		return -1;
	}
	if (r->servers && r->servers[0]) {
		rc = ares_set_servers_ports_csv(r->ch, r->servers);
		if (rc != ARES_SUCCESS) {
			snprintf(err, errlen, "c-ares: servers \"%s\": %s", r->servers,
				 ares_strerror(rc));
			return -1;
		}
	}
	return 0;
}

static void resolver_conf_defaults(struct resolver_conf *c)
{
	if (!c->pending_max)
		c->pending_max = RESOLVER_PENDING_MAX;
	if (!c->inflight_max)
		c->inflight_max = RESOLVER_INFLIGHT_MAX;
	if (!c->timeout_ms)
		c->timeout_ms = RESOLVER_TIMEOUT_MS;
	if (!c->try_ms)
		c->try_ms = RESOLVER_TRY_MS;
	if (!c->tries)
		c->tries = RESOLVER_TRIES;
}

struct resolver *resolver_new(const struct resolver_conf *conf, char *err, size_t errlen)
{
	struct resolver *r = calloc(1, sizeof(*r));
	int rc, lib = 0;

	if (!r) {
		snprintf(err, errlen, "resolver: out of memory");
		return NULL;
	}
	r->evfd = -1;
	if (conf)
		r->conf = *conf;
	resolver_conf_defaults(&r->conf);
	r->servers = conf && conf->servers ? strdup(conf->servers) : NULL;
	r->conf.servers = r->servers;
	r->self = conf && conf->self ? strdup(conf->self) : NULL;
	r->conf.self = r->self;
	if ((conf && conf->servers && !r->servers) || (conf && conf->self && !r->self)) {
		snprintf(err, errlen, "resolver: out of memory");
		goto fail;
	}
	pthread_mutex_lock(&resolver_lib_mu);
	rc = ares_library_init(ARES_LIB_INIT_ALL);
	pthread_mutex_unlock(&resolver_lib_mu);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
		goto fail;
	}
	lib = 1;
	if (resolver_channel(r, err, errlen))
		goto fail;
	r->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->evfd < 0) {
		snprintf(err, errlen, "resolver: eventfd: %s", strerror(errno));
		goto fail;
	}
	pthread_mutex_init(&r->mu, NULL);
	rc = pthread_create(&r->thread, NULL, resolver_main, r);
	if (rc) {
		snprintf(err, errlen, "resolver: pthread_create: %s", strerror(rc));
		pthread_mutex_destroy(&r->mu);
		goto fail;
	}
	return r;
fail:
	if (r->ch)
		ares_destroy(r->ch);
	if (lib) {
		pthread_mutex_lock(&resolver_lib_mu);
		ares_library_cleanup();
		pthread_mutex_unlock(&resolver_lib_mu);
	}
	if (r->evfd >= 0)
		close(r->evfd);
	free(r->servers);
	free(r->self);
	free(r);
	return NULL;
}

struct resolver *resolver_free(struct resolver *r)
{
	if (!r)
		return NULL;
	pthread_mutex_lock(&r->mu);
	r->stopping = 1;
	pthread_mutex_unlock(&r->mu);
	resolver_kick(r);
	pthread_join(r->thread, NULL);
	pthread_mutex_destroy(&r->mu);
	close(r->evfd);
	pthread_mutex_lock(&resolver_lib_mu);
	ares_library_cleanup();
	pthread_mutex_unlock(&resolver_lib_mu);
	free(r->servers);
	free(r->self);
	free(r);
	return NULL;
}

/* Queue a filled request; on failure q is freed and cb never runs. */
static int resolver_submit(struct resolver *r, struct resolver_req *q)
{
	int rc = 0;

	q->r = r;
	q->state = RESOLVER_QUEUED;
	q->deadline_ms = now_mono_ms() +
		(q->timeout_ms && q->timeout_ms < r->conf.timeout_ms ? q->timeout_ms
								     : r->conf.timeout_ms);
	pthread_mutex_lock(&r->mu);
	if (r->stopping) {
		rc = -ESHUTDOWN;
	} else if (r->st.pending >= r->conf.pending_max) {
		r->st.rejected++;
		rc = -EAGAIN;
	} else {
		if (r->qtail)
			r->qtail->next = q;
		else
			r->qhead = q;
		r->qtail = q;
		r->st.pending++;
		r->st.accepted++;
	}
	pthread_mutex_unlock(&r->mu);
	if (rc) {
		resolver_req_free(q);
		return rc;
	}
	resolver_kick(r);
	return 0;
}

int resolver_host(struct resolver *r, const char *dest, unsigned default_port,
		  resolver_cb cb, void *cookie)
{
	struct resolver_req *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	if (resolver_dest_split(dest, q->host, sizeof(q->host), default_port, &q->port, NULL)) {
		free(q);
		return -EINVAL;
	}
	memcpy(q->name, q->host, sizeof(q->name));
	q->cb = cb;
	q->cookie = cookie;
	return resolver_submit(r, q);
}

/* A new request for name (one trailing dot dropped) and port; NULL with
 * *rc -EINVAL or -ENOMEM. */
static struct resolver_req *resolver_req_name(const char *name, unsigned port, int *rc)
{
	size_t len = strlen(name);
	struct resolver_req *q;

	if (len > 1 && name[len - 1] == '.')
		len--;
	*rc = -EINVAL;
	if (len == 0 || len >= RESOLVER_NAME_MAX || port == 0 || port > RESOLVER_PORT_MAX)
		return NULL;
	*rc = -ENOMEM;
	q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	memcpy(q->name, name, len);
	q->name[len] = '\0';
	memcpy(q->host, q->name, len + 1);
	q->port = port;
	return q;
}

int resolver_mx(struct resolver *r, const char *domain, unsigned port,
		resolver_cb cb, void *cookie)
{
	int rc;
	struct resolver_req *q = resolver_req_name(domain, port, &rc);

	if (!q)
		return rc;
	q->mx = 1;
	q->cb = cb;
	q->cookie = cookie;
	return resolver_submit(r, q);
}

int resolver_route(struct resolver *r, const char *name, unsigned port, int mx,
		   resolver_list_cb cb, void *cookie)
{
	int rc;
	struct resolver_req *q = resolver_req_name(name, port, &rc);

	if (!q)
		return rc;
	q->rt = calloc(1, sizeof(*q->rt));
	if (!q->rt) {
		free(q);
		return -ENOMEM;
	}
	q->mx = mx;
	q->rt->cb = cb;
	q->cookie = cookie;
	return resolver_submit(r, q);
}

void resolver_get_stats(struct resolver *r, struct resolver_stats *st)
{
	pthread_mutex_lock(&r->mu);
	*st = r->st;
	pthread_mutex_unlock(&r->mu);
}

int resolver_query(struct resolver *r, const char *name, enum resolver_rrtype type,
		   unsigned timeout_ms, resolver_answer_cb cb, void *cookie)
{
	int rc;
	struct resolver_req *q;

	if (!strcmp(resolver_answer_type_name(type), "?"))
		return -EINVAL;
	q = resolver_req_name(name, RESOLVER_SMTP_PORT, &rc);
	if (!q)
		return rc;
	q->qtype = type;
	q->qcb = cb;
	q->timeout_ms = timeout_ms;
	q->cookie = cookie;
	return resolver_submit(r, q);
}
