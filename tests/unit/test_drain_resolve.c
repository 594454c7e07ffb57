/* SPDX-License-Identifier: MIT */
/* Tests for proto/drain_resolve.c: a numeric dest settles at once (or is
 * refused, malformed); a name or the MX goes to the real resolver against
 * a real DNS server on loopback UDP (tests/unit/dns_stub) and comes back
 * as every address to try, in order (MX by preference, then the next);
 * drain_resolve_addr() points a job at one of them. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/resolver.h"
#include "proto/drain_resolve.h"
#include "tests/unit/dns_stub.h"

#define WAIT_MAX_MS 30000  /* generous: the machine is shared and loaded */
#define WANT_ADDRS_MAX 3

static const struct dns_stub_rr zone[] = {
	{ "two.test", DNS_STUB_MX, "backup.two.test", 20 },
	{ "two.test", DNS_STUB_MX, "best.two.test", 10 },
	{ "best.two.test", DNS_STUB_A, "192.0.2.10", 0 },
	{ "backup.two.test", DNS_STUB_A, "192.0.2.20", 0 },
	{ "host.test", DNS_STUB_A, "192.0.2.30", 0 },
	{ "host.test", DNS_STUB_AAAA, "2001:db8::30", 0 },
	{ "host.test", DNS_STUB_MX, "not.this.test", 10 },
	{ "null.test", DNS_STUB_MX, ".", 0 },
	{ "self.test", DNS_STUB_MX, "mx.self.invalid", 10 },
	{ "self.test", DNS_STUB_MX, "other.self.test", 20 },
	{ "other.self.test", DNS_STUB_A, "192.0.2.40", 0 },
};

/* ---- numeric: no DNS ------------------------------------------------- */

struct numeric_case {
	const char *name;
	const char *dest;           /* the row's dest ("" = mx) */
	int want_rc;                /* 1 settled, 0 DNS needed */
	int want_failed;
	const char *want_relay;     /* address 0, when settled and not failed */
};

static const struct numeric_case numeric_cases[] = {
	{ "v4 with port", "192.0.2.1:2525", 1, 0, "192.0.2.1[192.0.2.1]:2525" },
	{ "v4, port 25 by default", "192.0.2.1", 1, 0, "192.0.2.1[192.0.2.1]:25" },
	{ "v6 in brackets", "[2001:db8::1]:2526", 1, 0, "2001:db8::1[2001:db8::1]:2526" },
	{ "a name needs DNS", "host.test:2527", 0, 0, NULL },
	{ "mx needs DNS", "", 0, 0, NULL },
	{ "port out of range", "192.0.2.1:70000", 1, 1, NULL },
	{ "empty port", "192.0.2.1:", 1, 1, NULL },
};

Test(drain_resolve, numeric_settles_or_waits)
{
	for (size_t i = 0; i < sizeof(numeric_cases) / sizeof(numeric_cases[0]); i++) {
		const struct numeric_case *c = &numeric_cases[i];
		struct drain_req rq;

		memset(&rq, 0, sizeof(rq));
		snprintf(rq.dom, sizeof(rq.dom), "cust.test");
		rq.len = strlen(rq.dom);
		snprintf(rq.relay, sizeof(rq.relay), "%s", c->dest);
		cr_expect_eq(drain_resolve_numeric(&rq), c->want_rc, "%s", c->name);
		cr_expect_eq(rq.failed, c->want_failed, "%s: failed %d", c->name, rq.failed);
		if (!c->want_relay)
			continue;
		cr_expect_eq(rq.addrs.n, 1, "%s: %u addresses", c->name, rq.addrs.n);
		cr_expect_str_eq(rq.addrs.a[0].relay, c->want_relay, "%s", c->name);
	}
}

Test(drain_resolve, addr_points_at_one_address)
{
	struct resolver_list l;
	struct sockaddr_storage dst;
	socklen_t dstlen = 0;
	char relay[DRAIN_RELAY_MAX] = "untouched";
	struct drain_req rq;

	memset(&rq, 0, sizeof(rq));
	snprintf(rq.relay, sizeof(rq.relay), "192.0.2.9:2600");
	cr_assert_eq(drain_resolve_numeric(&rq), 1);
	l = rq.addrs;
	cr_assert_eq(drain_resolve_addr(&l, 0, &dst, &dstlen, relay, sizeof(relay)), 0);
	cr_expect_eq(dstlen, l.a[0].addrlen);
	cr_expect_eq(memcmp(&dst, &l.a[0].addr, dstlen), 0);
	cr_expect_str_eq(relay, "192.0.2.9[192.0.2.9]:2600");
	/* Past the end: -ENOENT, nothing written. */
	snprintf(relay, sizeof(relay), "untouched");
	dstlen = 0;
	cr_expect_eq(drain_resolve_addr(&l, 1, &dst, &dstlen, relay, sizeof(relay)), -ENOENT);
	cr_expect_eq(dstlen, 0);
	cr_expect_str_eq(relay, "untouched");
}

/* ---- through the resolver ----------------------------------------------- */

struct dns_case {
	const char *name;
	const char *dest;                       /* "" = the domain's MX */
	const char *dom;
	int want_err;                           /* 0: addresses */
	const char *want_relay[WANT_ADDRS_MAX]; /* in order, NULL-ended */
};

static const struct dns_case dns_cases[] = {
	{ "MX hosts by preference, not the answer's order", "", "two.test", 0,
	  { "best.two.test[192.0.2.10]:25", "backup.two.test[192.0.2.20]:25", NULL } },
	{ "a dest host: its A then its AAAA, never its MX", "host.test:2601", "cust.test", 0,
	  { "host.test[192.0.2.30]:2601", "host.test[2001:db8::30]:2601", NULL } },
	{ "NXDOMAIN", "", "nowhere.test", -ENOENT, { NULL } },
	{ "null MX", "", "null.test", -ENXIO, { NULL } },
	{ "our own name as the best MX would loop", "", "self.test", -ELOOP, { NULL } },
};

struct t_req {
	struct drain_req rq;
	struct dns_stub_answer w;
};

/* drain_resolve_done: on the resolver's thread; the waiter gets a copy. */
static void t_done(struct drain_req *rq)
{
	struct t_req *t = (struct t_req *)(void *)((char *)rq - offsetof(struct t_req, rq));

	dns_stub_answer_cb(&t->w, &rq->addrs);
}

static void run_dns_case(struct resolver *r, const struct dns_case *c)
{
	struct t_req t;
	size_t n = 0;

	memset(&t, 0, sizeof(t));
	dns_stub_answer_init(&t.w);
	snprintf(t.rq.dom, sizeof(t.rq.dom), "%s", c->dom);
	t.rq.len = strlen(t.rq.dom);
	snprintf(t.rq.relay, sizeof(t.rq.relay), "%s", c->dest);
	cr_assert_eq(drain_resolve_numeric(&t.rq), 0, "%s: settled without DNS", c->name);
	cr_assert_eq(drain_resolve_start(r, &t.rq, t_done), 0, "%s", c->name);
	cr_assert_eq(dns_stub_answer_wait(&t.w, WAIT_MAX_MS), 1, "%s: no answer", c->name);
	cr_expect_eq(t.rq.err, c->want_err, "%s: err %d (%s)", c->name, t.rq.err, t.w.res.why);
	cr_expect_eq(t.rq.failed, c->want_err != 0, "%s", c->name);
	while (n < WANT_ADDRS_MAX && c->want_relay[n])
		n++;
	cr_expect_eq(t.rq.addrs.n, n, "%s: %u addresses", c->name, t.rq.addrs.n);
	for (size_t i = 0; i < n && i < t.rq.addrs.n; i++)
		cr_expect_str_eq(t.rq.addrs.a[i].relay, c->want_relay[i], "%s: address %zu",
				 c->name, i);
}

Test(drain_resolve, names_and_mx_through_the_resolver)
{
	struct dns_stub *dns = dns_stub_start(zone, sizeof(zone) / sizeof(zone[0]));
	struct resolver_conf conf;
	char servers[64], err[256];
	struct resolver *r;

	cr_assert_not_null(dns);
	snprintf(servers, sizeof(servers), "127.0.0.1:%u", dns_stub_port(dns));
	memset(&conf, 0, sizeof(conf));
	conf.servers = servers;
	conf.self = "mx.self.invalid";
	r = resolver_new(&conf, err, sizeof(err));
	cr_assert_not_null(r, "%s", err);
	for (size_t i = 0; i < sizeof(dns_cases) / sizeof(dns_cases[0]); i++)
		run_dns_case(r, &dns_cases[i]);
	resolver_free(r);
	dns_stub_stop(dns);
}
