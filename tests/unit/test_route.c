/* SPDX-License-Identifier: MIT */
/* Tests for proto/route.c: which route a domain takes (route table, then
 * relayhost, then MX) and what each target resolves to, through the real
 * resolver against a real DNS server on loopback UDP (tests/unit/dns_stub):
 * brackets turn the MX look-up off, numeric targets settle at once,
 * malformed targets are refused (permanently only for a mail domain). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/ascii.h"
#include "core/domtab.h"
#include "core/resolver.h"
#include "proto/route.h"
#include "tests/unit/dns_stub.h"

#define WAIT_MAX_MS 30000  /* generous: the machine is shared and loaded */
#define CASE_ROUTES_MAX 2

static const struct dns_stub_rr zone[] = {
	{ "relay.test", DNS_STUB_A, "192.0.2.80", 0 },
	{ "relay.test", DNS_STUB_MX, "mxr.relay.test", 10 },
	{ "mxr.relay.test", DNS_STUB_A, "192.0.2.81", 0 },
	{ "dest.test", DNS_STUB_A, "192.0.2.91", 0 },
	{ "dest.test", DNS_STUB_MX, "mx.dest.test", 10 },
	{ "mx.dest.test", DNS_STUB_A, "192.0.2.90", 0 },
	{ "null.test", DNS_STUB_MX, ".", 0 },
};

struct route_case {
	const char *name;
	const char *routes[CASE_ROUTES_MAX][2];  /* { domain, dest }, NULL-ended */
	const char *relayhost;
	const char *dom;
	size_t dom_len;                          /* 0: strlen(dom) */
	enum route_kind want_kind;
	const char *want_target;
	int want_rc;                             /* 1 settled at once, 0 a look-up */
	int want_err;
	int want_permanent;
	const char *want_relay;                  /* the first address, when err 0 */
	int resolve_only;                        /* skip route_pick: a target no
	                                            table accepts (domtab checks) */
	const char *row_dest;                    /* a mode deliver row for dom
	                                            with this dest, or NULL */
};

static const struct route_case cases[] = {
	{ "a deliver row's dest before relayhost: its host's address, not its MX", { { NULL } },
	  "[192.0.2.200]:26", "dest.test", 0, ROUTE_DEST, "dest.test:2606", 0, 0, 0,
	  "dest.test[192.0.2.91]:2606", 0, "dest.test:2606" },
	{ "the route table before a row's dest", { { "dest.test", "[relay.test]:2601" } }, "",
	  "dest.test", 0, ROUTE_TABLE, "[relay.test]:2601", 0, 0, 0, "relay.test[192.0.2.80]:2601",
	  0, "dest.test:2606" },
	{ "a numeric dest settles at once", { { NULL } }, "", "dest.test", 0, ROUTE_DEST,
	  "192.0.2.61:2607", 1, 0, 0, "192.0.2.61[192.0.2.61]:2607", 0, "192.0.2.61:2607" },
	{ "the route table wins", { { "dest.test", "[relay.test]:2601" } }, "[192.0.2.200]:26",
	  "dest.test", 0, ROUTE_TABLE, "[relay.test]:2601", 0, 0, 0, "relay.test[192.0.2.80]:2601", 0, NULL },
	{ "route lookup ignores case", { { "dest.test", "[relay.test]:2601" } }, "",
	  "DEST.Test", 0, ROUTE_TABLE, "[relay.test]:2601", 0, 0, 0, "relay.test[192.0.2.80]:2601", 0, NULL },
	{ "relayhost without a route", { { "other.test", "[192.0.2.1]" } }, "[relay.test]:2602",
	  "dest.test", 0, ROUTE_RELAYHOST, "[relay.test]:2602", 0, 0, 0,
	  "relay.test[192.0.2.80]:2602", 0, NULL },
	{ "the MX without either", { { NULL } }, "", "dest.test", 0, ROUTE_MX, "dest.test", 0, 0, 0,
	  "mx.dest.test[192.0.2.90]:25", 0, NULL },
	{ "NULL relayhost is none", { { NULL } }, NULL, "dest.test", 0, ROUTE_MX, "dest.test", 0, 0,
	  0, "mx.dest.test[192.0.2.90]:25", 0, NULL },
	{ "dom is len bytes", { { NULL } }, "", "dest.test.not", 9, ROUTE_MX, "dest.test", 0, 0, 0,
	  "mx.dest.test[192.0.2.90]:25", 0, NULL },
	{ "relayhost without brackets: its MX", { { NULL } }, "relay.test:2603", "dest.test", 0,
	  ROUTE_RELAYHOST, "relay.test:2603", 0, 0, 0, "mxr.relay.test[192.0.2.81]:2603", 0, NULL },
	{ "route without brackets or port: MX, 25", { { "dest.test", "relay.test" } }, "",
	  "dest.test", 0, ROUTE_TABLE, "relay.test", 0, 0, 0, "mxr.relay.test[192.0.2.81]:25", 0, NULL },
	{ "bracketed route, default port", { { "dest.test", "[relay.test]" } }, "", "dest.test", 0,
	  ROUTE_TABLE, "[relay.test]", 0, 0, 0, "relay.test[192.0.2.80]:25", 0, NULL },
	{ "numeric route settles", { { "dest.test", "192.0.2.70:2604" } }, "", "dest.test", 0,
	  ROUTE_TABLE, "192.0.2.70:2604", 1, 0, 0, "192.0.2.70[192.0.2.70]:2604", 0, NULL },
	{ "numeric bracketed relayhost settles", { { NULL } }, "[192.0.2.71]", "dest.test", 0,
	  ROUTE_RELAYHOST, "[192.0.2.71]", 1, 0, 0, "192.0.2.71[192.0.2.71]:25", 0, NULL },
	{ "IPv6 relayhost settles", { { NULL } }, "[2001:db8::5]:2605", "dest.test", 0,
	  ROUTE_RELAYHOST, "[2001:db8::5]:2605", 1, 0, 0, "2001:db8::5[2001:db8::5]:2605", 0, NULL },
	{ "address literal domain", { { NULL } }, "", "[192.0.2.72]", 0, ROUTE_MX, "[192.0.2.72]",
	  1, 0, 0, "192.0.2.72[192.0.2.72]:25", 0, NULL },
	{ "IPv6 literal domain", { { NULL } }, "", "[IPv6:2001:db8::9]", 0, ROUTE_MX,
	  "[IPv6:2001:db8::9]", 1, 0, 0, "2001:db8::9[2001:db8::9]:25", 0, NULL },
	{ "null MX: permanent", { { NULL } }, "", "null.test", 0, ROUTE_MX, "null.test", 0, -ENXIO,
	  1, NULL, 0, NULL },
	{ "NXDOMAIN: permanent", { { NULL } }, "", "nowhere.test", 0, ROUTE_MX, "nowhere.test", 0,
	  -ENOENT, 1, NULL, 0, NULL },
	{ "malformed relayhost: temporary", { { NULL } }, "[relay.test", "dest.test", 0,
	  ROUTE_RELAYHOST, "[relay.test", 1, -EINVAL, 0, NULL, 0, NULL },
	{ "malformed route port: temporary", { { NULL } }, "", "dest.test", 0, ROUTE_TABLE,
	  "relay.test:99999", 1, -EINVAL, 0, NULL, 1, NULL },
	{ "route with junk after bracket", { { NULL } }, "", "dest.test", 0, ROUTE_TABLE,
	  "[relay.test]x", 1, -EINVAL, 0, NULL, 1, NULL },
	{ "domain with a port: permanent", { { NULL } }, "", "dest.test:25", 0, ROUTE_MX,
	  "dest.test:25", 1, -EINVAL, 1, NULL, 0, NULL },
	{ "bracketed name as domain: permanent", { { NULL } }, "", "[dest.test]", 0, ROUTE_MX,
	  "[dest.test]", 1, -EINVAL, 1, NULL, 0, NULL },
	{ "empty domain: permanent", { { NULL } }, "", "", 0, ROUTE_MX, "", 1, -EINVAL, 1, NULL, 0, NULL },
};

static struct dns_stub *stub;
static struct resolver *res;

static void start(void)
{
	char servers[64], err[256];
	struct resolver_conf conf = { 0 };

	stub = dns_stub_start(zone, sizeof(zone) / sizeof(zone[0]));
	cr_assert_not_null(stub, "DNS stub did not start");
	snprintf(servers, sizeof(servers), "127.0.0.1:%u", dns_stub_port(stub));
	conf.servers = servers;
	res = resolver_new(&conf, err, sizeof(err));
	cr_assert_not_null(res, "resolver_new: %s", err);
}

static void stop(void)
{
	res = resolver_free(res);
	dns_stub_stop(stub);
	stub = NULL;
}

/* The case's domain table: its routes, and its row when it has one. */
static struct domtab *case_table(const struct route_case *c)
{
	struct domtab_builder *b = domtab_builder_new();
	struct domtab *t;

	cr_assert_not_null(b);
	for (size_t i = 0; i < CASE_ROUTES_MAX && c->routes[i][0]; i++)
		cr_assert_eq(domtab_builder_route_put(b, c->routes[i][0], c->routes[i][1]), 0,
			     "%s: route put", c->name);
	if (c->row_dest) {
		struct domtab_row row = { .name = c->dom, .dest = c->row_dest,
					  .mode = DOMTAB_MODE_DELIVER };

		cr_assert_eq(domtab_builder_put(b, &row), 0, "%s: row put", c->name);
	}
	t = domtab_build(b);
	domtab_builder_free(b);
	cr_assert_not_null(t);
	return t;
}

static void check_list(const struct route_case *c, const struct resolver_list *l)
{
	cr_expect_eq(l->err, c->want_err, "%s: err %d, want %d (%s)", c->name, l->err,
		     c->want_err, l->why);
	cr_expect_eq(l->permanent, c->want_permanent, "%s: permanent %d", c->name, l->permanent);
	if (c->want_err) {
		cr_expect_eq(l->n, 0, "%s: no address on failure", c->name);
		cr_expect(l->why[0], "%s: a failure says why", c->name);
		return;
	}
	cr_expect_geq(l->n, 1, "%s: an address", c->name);
	if (l->n)
		cr_expect_str_eq(l->a[0].relay, c->want_relay, "%s", c->name);
}

static void run_case(const struct route_case *c)
{
	struct domtab *t = case_table(c);
	size_t len = c->dom_len ? c->dom_len : strlen(c->dom);
	char target[RESOLVER_NAME_MAX + 8];
	struct resolver_list now;
	struct dns_stub_answer w;
	enum route_kind k;
	int rc;

	if (c->resolve_only) {
		k = c->want_kind;
		snprintf(target, sizeof(target), "%s", c->want_target);
	} else {
		k = route_pick(t, c->relayhost, c->dom, len, target, sizeof(target));
		cr_expect_eq(k, c->want_kind, "%s: kind %s, want %s", c->name, route_kind_name(k),
			     route_kind_name(c->want_kind));
		cr_expect_str_eq(target, c->want_target, "%s: target", c->name);
	}
	dns_stub_answer_init(&w);
	rc = route_resolve(res, k, target, dns_stub_answer_cb, &w, &now);
	cr_expect_eq(rc, c->want_rc, "%s: route_resolve %d, want %d", c->name, rc, c->want_rc);
	if (rc == 1) {
		check_list(c, &now);
		cr_expect_eq(w.calls, 0, "%s: settled at once, no callback", c->name);
	} else if (rc == 0) {
		cr_assert_eq(dns_stub_answer_wait(&w, WAIT_MAX_MS), 1, "%s: one callback", c->name);
		check_list(c, &w.res);
	}
	domtab_free(t);
}

Test(route, cases)
{
	start();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i]);
	stop();
}

/* Numeric and malformed targets never reach DNS (the stub counts). */
Test(route, settled_needs_no_dns)
{
	start();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (cases[i].want_rc == 1)
			run_case(&cases[i]);
	cr_expect_eq(dns_stub_queries(stub), 0, "no DNS query");
	stop();
}

/* A target that does not fit is "" (refused), never a cut name that might
 * route somewhere else. */
Test(route, pick_truncation)
{
	static const struct route_case c = { .name = "short buffer",
					     .relayhost = "[relay.test]:2601" };
	struct domtab *t = case_table(&c);
	char target[8];
	struct resolver_list now;

	memset(target, 'x', sizeof(target));
	cr_expect_eq(route_pick(t, c.relayhost, "dest.test", 9, target, sizeof(target)),
		     ROUTE_RELAYHOST);
	cr_expect_str_eq(target, "");
	cr_expect_eq(route_pick(t, "", "dest.test", 9, target, sizeof(target)), ROUTE_MX);
	cr_expect_str_eq(target, "");
	cr_expect_eq(route_pick(t, "", "a.test", 6, target, sizeof(target)), ROUTE_MX);
	cr_expect_str_eq(target, "a.test");
	cr_expect_eq(route_resolve(NULL, ROUTE_RELAYHOST, "", dns_stub_answer_cb, NULL, &now), 1);
	cr_expect_eq(now.err, -EINVAL);
	domtab_free(t);
}

/* No table (NULL) and no resolver: a name cannot start a look-up. */
Test(route, without_table_or_resolver)
{
	char target[RESOLVER_NAME_MAX];
	struct resolver_list now;

	cr_expect_eq(route_pick(NULL, "", "dest.test", 9, target, sizeof(target)), ROUTE_MX);
	cr_expect_str_eq(target, "dest.test");
	cr_expect_eq(route_resolve(NULL, ROUTE_MX, target, dns_stub_answer_cb, NULL, &now),
		     -ESHUTDOWN);
	cr_expect_eq(route_resolve(NULL, ROUTE_MX, "[192.0.2.1]", dns_stub_answer_cb, NULL, &now),
		     1);
	cr_expect_eq(now.err, 0);
	cr_expect_eq(now.n, 1);
}

Test(route, kind_names)
{
	cr_expect_str_eq(route_kind_name(ROUTE_TABLE), "route");
	cr_expect_str_eq(route_kind_name(ROUTE_RELAYHOST), "relayhost");
	cr_expect_str_eq(route_kind_name(ROUTE_MX), "mx");
	cr_expect_str_eq(route_kind_name((enum route_kind)7), "?");
}
