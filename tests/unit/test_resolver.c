/* SPDX-License-Identifier: MIT */
/* Tests for core/resolver.c against a real DNS server on loopback UDP
 * (tests/unit/dns_stub.c; c-ares is not mocked): numeric, A, AAAA, MX
 * preference, no-MX fallback, null MX, NXDOMAIN, SERVFAIL, deadlines, late
 * answers, the queue bound, cancel on free, and 200 lookups at once; then
 * resolver_route's address lists (every MX in order, equal preferences
 * shuffled, hosts skipped, the address limit) and core/resolver_list's MX
 * sort on its own. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "core/now.h"
#include "core/resolver.h"
#include "core/resolver_list.h"
#include "tests/unit/dns_stub.h"
#include "tests/unit/loopback.h"

#define WAIT_MAX_MS 30000  /* generous: the machine is shared and loaded */
#define SLOW_DELAY_MS 1500 /* slow.test answers this late */

static const struct dns_stub_rr zone[] = {
	{ "a.test", DNS_STUB_A, "192.0.2.1", 0 },
	{ "v6.test", DNS_STUB_AAAA, "2001:db8::6", 0 },
	{ "mx.test", DNS_STUB_MX, "mx30.mx.test", 30 },
	{ "mx.test", DNS_STUB_MX, "mx10.mx.test", 10 },
	{ "mx.test", DNS_STUB_MX, "mx20.mx.test", 20 },
	{ "mx.test", DNS_STUB_A, "192.0.2.99", 0 }, /* never used: it has MX */
	{ "mx10.mx.test", DNS_STUB_A, "192.0.2.10", 0 },
	{ "mx20.mx.test", DNS_STUB_A, "192.0.2.20", 0 },
	{ "mx30.mx.test", DNS_STUB_A, "192.0.2.30", 0 },
	{ "nomx.test", DNS_STUB_A, "192.0.2.2", 0 },
	{ "nullmx.test", DNS_STUB_MX, ".", 0 },
	{ "nullmx.test", DNS_STUB_A, "192.0.2.3", 0 },
	{ "ghostmx.test", DNS_STUB_MX, "ghost.test", 10 },
	{ "servfail.test", DNS_STUB_SERVFAIL, NULL, 0 },
	{ "silent.test", DNS_STUB_SILENT, NULL, 0 },
	{ "slow.test", DNS_STUB_SLOW, NULL, SLOW_DELAY_MS },
	{ "slow.test", DNS_STUB_A, "192.0.2.9", 0 },
	/* resolver_route: MX lists. */
	{ "pref.test", DNS_STUB_MX, "b.pref.test", 20 },
	{ "pref.test", DNS_STUB_MX, "a.pref.test", 10 },
	{ "a.pref.test", DNS_STUB_A, "192.0.2.41", 0 },
	{ "b.pref.test", DNS_STUB_A, "192.0.2.42", 0 },
	{ "eq.test", DNS_STUB_MX, "e1.eq.test", 10 },
	{ "eq.test", DNS_STUB_MX, "e2.eq.test", 10 },
	{ "e1.eq.test", DNS_STUB_A, "192.0.2.51", 0 },
	{ "e2.eq.test", DNS_STUB_A, "192.0.2.52", 0 },
	{ "skip.test", DNS_STUB_MX, "mx20.mx.test", 20 },
	{ "skip.test", DNS_STUB_MX, "ghost.test", 10 },
	{ "dup.test", DNS_STUB_MX, "d1.dup.test", 10 },
	{ "dup.test", DNS_STUB_MX, "d2.dup.test", 20 },
	{ "d1.dup.test", DNS_STUB_A, "192.0.2.60", 0 },
	{ "d2.dup.test", DNS_STUB_A, "192.0.2.60", 0 },
	{ "tempmx.test", DNS_STUB_MX, "servfail.test", 10 },
	{ "mixmx.test", DNS_STUB_MX, "ghost.test", 10 },
	{ "mixmx.test", DNS_STUB_MX, "servfail.test", 20 },
	{ "many.test", DNS_STUB_MX, "m3.many.test", 30 },
	{ "many.test", DNS_STUB_MX, "m1.many.test", 10 },
	{ "many.test", DNS_STUB_MX, "m2.many.test", 20 },
	{ "m1.many.test", DNS_STUB_AAAA, "2001:db8::11", 0 },
	{ "m1.many.test", DNS_STUB_A, "192.0.2.11", 0 },
	{ "m1.many.test", DNS_STUB_A, "192.0.2.12", 0 },
	{ "m2.many.test", DNS_STUB_A, "192.0.2.21", 0 },
	{ "m2.many.test", DNS_STUB_A, "192.0.2.22", 0 },
	{ "m3.many.test", DNS_STUB_A, "192.0.2.31", 0 },
	{ "partial.test", DNS_STUB_MX, "mx10.mx.test", 10 },
	{ "partial.test", DNS_STUB_MX, "silent.test", 20 },
	/* This host (conf.self) as another domain's MX. */
	{ "backup.test", DNS_STUB_MX, "third.backup.test", 30 },
	{ "backup.test", DNS_STUB_MX, "self.test", 20 },
	{ "backup.test", DNS_STUB_MX, "primary.backup.test", 10 },
	{ "primary.backup.test", DNS_STUB_A, "192.0.2.100", 0 },
	{ "self.test", DNS_STUB_A, "192.0.2.101", 0 },
	{ "third.backup.test", DNS_STUB_A, "192.0.2.102", 0 },
	{ "bestself.test", DNS_STUB_MX, "self.test", 10 },
	{ "bestself.test", DNS_STUB_MX, "primary.backup.test", 20 },
	{ "eqself.test", DNS_STUB_MX, "self.test", 10 },
	{ "eqself.test", DNS_STUB_MX, "primary.backup.test", 10 },
};

static struct dns_stub *stub;

static struct resolver *start(struct resolver_conf *conf)
{
	char servers[64], err[256];
	struct resolver_conf def = { 0 };
	struct resolver *r;

	stub = dns_stub_start(zone, sizeof(zone) / sizeof(zone[0]));
	cr_assert_not_null(stub, "DNS stub did not start");
	snprintf(servers, sizeof(servers), "127.0.0.1:%u", dns_stub_port(stub));
	if (!conf)
		conf = &def;
	conf->servers = servers;
	r = resolver_new(conf, err, sizeof(err));
	cr_assert_not_null(r, "resolver_new: %s", err);
	return r;
}

static void stop(struct resolver *r)
{
	resolver_free(r);
	dns_stub_stop(stub);
	stub = NULL;
}

enum kind { HOST, MX };

struct lookup_case {
	const char *name;
	enum kind kind;
	const char *arg;
	unsigned port;
	int want_err;
	int want_permanent;
	const char *want_relay;
};

static const struct lookup_case lookups[] = {
	{ "numeric v4", HOST, "192.0.2.7:2525", 25, 0, 0, "192.0.2.7[192.0.2.7]:2525" },
	{ "numeric v6", HOST, "[2001:db8::7]:26", 25, 0, 0, "2001:db8::7[2001:db8::7]:26" },
	{ "numeric v6 bare", HOST, "2001:db8::8", 25, 0, 0, "2001:db8::8[2001:db8::8]:25" },
	{ "A", HOST, "a.test", 25, 0, 0, "a.test[192.0.2.1]:25" },
	{ "A with port", HOST, "a.test:2526", 25, 0, 0, "a.test[192.0.2.1]:2526" },
	{ "A bracketed", HOST, "[a.test]:2527", 25, 0, 0, "a.test[192.0.2.1]:2527" },
	{ "AAAA only", HOST, "v6.test", 25, 0, 0, "v6.test[2001:db8::6]:25" },
	{ "MX lowest preference", MX, "mx.test", 25, 0, 0, "mx10.mx.test[192.0.2.10]:25" },
	{ "MX case, trailing dot", MX, "MX.Test.", 2525, 0, 0, "mx10.mx.test[192.0.2.10]:2525" },
	{ "no MX: the domain's A", MX, "nomx.test", 25, 0, 0, "nomx.test[192.0.2.2]:25" },
	{ "null MX", MX, "nullmx.test", 25, -ENXIO, 1, NULL },
	{ "NXDOMAIN MX", MX, "nxdomain.test", 25, -ENOENT, 1, NULL },
	{ "NXDOMAIN host", HOST, "nxdomain.test", 25, -ENOENT, 1, NULL },
	{ "MX host missing", MX, "ghostmx.test", 25, -ENOENT, 1, NULL },
	{ "name without address", HOST, "ghostmx.test.", 25, -ENODATA, 1, NULL },
	{ "SERVFAIL MX", MX, "servfail.test", 25, -EAGAIN, 0, NULL },
	{ "SERVFAIL host", HOST, "servfail.test", 25, -EAGAIN, 0, NULL },
};

static int submit(struct resolver *r, const struct lookup_case *c, resolver_cb cb, void *cookie)
{
	return c->kind == MX ? resolver_mx(r, c->arg, c->port, cb, cookie)
			     : resolver_host(r, c->arg, c->port, cb, cookie);
}

static void check_result(const struct lookup_case *c, const struct resolver_result *res)
{
	cr_expect_eq(res->err, c->want_err, "%s: err %d, want %d (%s)", c->name, res->err,
		     c->want_err, res->why);
	cr_expect_eq(res->permanent, c->want_permanent, "%s: permanent %d (%s)", c->name,
		     res->permanent, res->why);
	if (c->want_relay)
		cr_expect_str_eq(res->relay, c->want_relay, "%s", c->name);
	else
		cr_expect(res->why[0], "%s: a failure says why", c->name);
}

Test(resolver, lookups)
{
	struct resolver *r = start(NULL);

	for (size_t i = 0; i < sizeof(lookups) / sizeof(lookups[0]); i++) {
		const struct lookup_case *c = &lookups[i];
		struct dns_stub_answer w;

		dns_stub_answer_init(&w);
		cr_assert_eq(submit(r, c, dns_stub_answer_one_cb, &w), 0, "%s: submit", c->name);
		cr_assert_eq(dns_stub_answer_wait(&w, WAIT_MAX_MS), 1, "%s: one callback", c->name);
		cr_expect(!pthread_equal(w.thread, pthread_self()),
			  "%s: the callback runs on the resolver thread", c->name);
		check_result(c, &w.one);
	}
	stop(r);
}

Test(resolver, numeric_needs_no_dns)
{
	struct resolver *r = start(NULL);
	struct resolver_result res;
	struct dns_stub_answer w;

	dns_stub_answer_init(&w);
	cr_assert_eq(resolver_host(r, "127.0.0.1:2525", 25, dns_stub_answer_one_cb, &w), 0);
	cr_assert_eq(dns_stub_answer_wait(&w, WAIT_MAX_MS), 1);
	cr_expect_eq(w.one.err, 0);
	cr_expect_eq(w.one.addrlen, sizeof(struct sockaddr_in));
	cr_expect_eq(((struct sockaddr_in *)&w.one.addr)->sin_port, htons(2525));
	cr_expect_eq(dns_stub_queries(stub), 0, "no DNS query for a numeric address");
	cr_expect_eq(resolver_numeric("10.1.2.3", 25, &res), 1);
	cr_expect_str_eq(res.relay, "10.1.2.3[10.1.2.3]:25");
	stop(r);
}

/* resolver_numeric() and resolver_host()'s synchronous syntax check. */
Test(resolver, dest_syntax)
{
	static const struct {
		const char *dest;
		int want;
	} cases[] = {
		{ "192.0.2.1", 1 }, { "192.0.2.1:26", 1 }, { "[::1]:26", 1 }, { "::1", 1 },
		{ "mail.example", 0 }, { "mail.example:2525", 0 }, { "[mail.example]", 0 },
		{ "", -EINVAL }, { ":25", -EINVAL }, { "[::1", -EINVAL }, { "[::1]x", -EINVAL },
		{ "host:0", -EINVAL }, { "host:65536", -EINVAL }, { "host:", -EINVAL },
		{ "host:25x", -EINVAL },
	};
	struct resolver *r = start(NULL);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct resolver_result res;
		int rc = resolver_numeric(cases[i].dest, 25, &res);

		cr_expect_eq(rc, cases[i].want, "\"%s\": %d, want %d", cases[i].dest, rc, cases[i].want);
		if (cases[i].want < 0) {
			cr_expect_eq(res.permanent, 1);
			cr_expect_eq(resolver_host(r, cases[i].dest, 25, dns_stub_answer_one_cb, NULL), -EINVAL,
				     "\"%s\" refused at submission", cases[i].dest);
		}
	}
	cr_expect_eq(resolver_mx(r, "", 25, dns_stub_answer_one_cb, NULL), -EINVAL);
	cr_expect_eq(resolver_mx(r, "a.test", 0, dns_stub_answer_one_cb, NULL), -EINVAL);
	stop(r);
}

Test(resolver, silent_server_times_out)
{
	/* c-ares would wait longer than the deadline: the deadline decides. */
	struct resolver_conf conf = { .timeout_ms = 800, .try_ms = 5000 };
	struct resolver *r = start(&conf);
	struct resolver_stats st;
	struct dns_stub_answer w;
	uint64_t t0 = now_mono_ms(), dt;

	dns_stub_answer_init(&w);
	cr_assert_eq(resolver_mx(r, "silent.test", 25, dns_stub_answer_one_cb, &w), 0);
	cr_assert_eq(dns_stub_answer_wait(&w, WAIT_MAX_MS), 1, "answered within %d ms", WAIT_MAX_MS);
	dt = now_mono_ms() - t0;
	cr_expect_eq(w.one.err, -ETIMEDOUT, "%d (%s)", w.one.err, w.one.why);
	cr_expect_eq(w.one.permanent, 0);
	cr_expect_geq(dt, conf.timeout_ms - 1, "not before the deadline: %llu ms",
		      (unsigned long long)dt);
	resolver_get_stats(r, &st);
	cr_expect_eq(st.timed_out, 1);
	stop(r);
}

Test(resolver, late_answer_dropped)
{
	struct resolver_conf conf = { .timeout_ms = 300, .try_ms = 10000 };
	struct resolver *r = start(&conf);
	struct resolver_stats st;
	struct dns_stub_answer w;
	uint64_t t0 = now_mono_ms();

	dns_stub_answer_init(&w);
	cr_assert_eq(resolver_host(r, "slow.test", 25, dns_stub_answer_one_cb, &w), 0);
	cr_assert_eq(dns_stub_answer_wait(&w, WAIT_MAX_MS), 1);
	cr_expect_eq(w.one.err, -ETIMEDOUT, "%d (%s)", w.one.err, w.one.why);
	/* The stub answers after SLOW_DELAY_MS; the answer must be dropped. */
	do {
		resolver_get_stats(r, &st);
		if (st.late_dropped)
			break;
		nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000 * 1000 }, NULL);
	} while (now_mono_ms() - t0 < WAIT_MAX_MS);
	cr_expect_eq(st.late_dropped, 1, "the late answer was seen and dropped");
	cr_expect_eq(dns_stub_answer_wait(&w, WAIT_MAX_MS), 1, "and the callback did not run again");
	cr_expect_eq(st.answered, 1);
	stop(r);
}

/* Counts callbacks per request; used by the bound and cancel tests. */
enum { MANY = 200 };
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int calls[MANY];
	int errs[MANY];
	int total;
	int resubmit_rc;
	struct resolver *r;
} tally = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static void tally_cb(void *cookie, const struct resolver_result *res)
{
	size_t i = (size_t)(uintptr_t)cookie;

	pthread_mutex_lock(&tally.mu);
	tally.calls[i]++;
	tally.errs[i] = res->err;
	tally.total++;
	pthread_cond_broadcast(&tally.cv);
	pthread_mutex_unlock(&tally.mu);
	/* Submitting from a callback is allowed; during free it is refused. */
	if (tally.r && i == 0)
		tally.resubmit_rc = resolver_host(tally.r, "a.test", 25, tally_cb, cookie);
}

static void tally_reset(struct resolver *r)
{
	pthread_mutex_lock(&tally.mu);
	memset(tally.calls, 0, sizeof(tally.calls));
	memset(tally.errs, 0, sizeof(tally.errs));
	tally.total = 0;
	tally.resubmit_rc = 1;
	tally.r = r;
	pthread_mutex_unlock(&tally.mu);
}

Test(resolver, queue_bound)
{
	struct resolver_conf conf = { .pending_max = 4, .inflight_max = 2, .timeout_ms = 60000 };
	struct resolver *r = start(&conf);
	struct resolver_stats st;

	tally_reset(NULL);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(resolver_host(r, "silent.test", 25, tally_cb, (void *)(uintptr_t)i), 0);
	cr_expect_eq(resolver_host(r, "silent.test", 25, tally_cb, (void *)(uintptr_t)4), -EAGAIN);
	cr_expect_eq(resolver_mx(r, "a.test", 25, tally_cb, (void *)(uintptr_t)4), -EAGAIN);
	resolver_get_stats(r, &st);
	cr_expect_eq(st.rejected, 2);
	cr_expect_eq(st.pending, 4);
	stop(r);
	for (int i = 0; i < 4; i++) {
		cr_expect_eq(tally.calls[i], 1, "request %d: one callback", i);
		cr_expect_eq(tally.errs[i], -ECANCELED);
	}
	cr_expect_eq(tally.calls[4], 0, "a refused request gets no callback");
}

Test(resolver, free_cancels_pending)
{
	/* 100 lookups nobody answers: 8 with c-ares, the rest queued. */
	struct resolver_conf conf = { .inflight_max = 8, .timeout_ms = 60000 };
	struct resolver *r = start(&conf);
	enum { N = 100 };

	tally_reset(r);
	for (int i = 0; i < N; i++) {
		void *cookie = (void *)(uintptr_t)i;
		cr_assert_eq(i % 2 ? resolver_mx(r, "silent.test", 25, tally_cb, cookie)
				   : resolver_host(r, "silent.test", 25, tally_cb, cookie), 0);
	}
	/* Free only once c-ares holds some (their queries reached the server),
	 * so both the queued and the in-flight paths are cancelled. */
	for (uint64_t t0 = now_mono_ms(); dns_stub_queries(stub) < 8 && now_mono_ms() - t0 < WAIT_MAX_MS;)
		nanosleep(&(struct timespec){ .tv_nsec = 5 * 1000 * 1000 }, NULL);
	cr_expect_geq(dns_stub_queries(stub), 8, "lookups reached the server");
	cr_expect_eq(tally.total, 0, "nothing answered before free");
	stop(r);
	cr_expect_eq(tally.total, N);
	for (int i = 0; i < N; i++) {
		cr_expect_eq(tally.calls[i], 1, "request %d: %d callbacks", i, tally.calls[i]);
		cr_expect_eq(tally.errs[i], -ECANCELED, "request %d: %d", i, tally.errs[i]);
	}
	cr_expect_eq(tally.resubmit_rc, -ESHUTDOWN, "a submission during free is refused");
}

Test(resolver, many_at_once)
{
	static const size_t pick[] = { 3, 7, 9, 12, 0 }; /* A, MX, no MX, NXDOMAIN, numeric */
	struct resolver *r = start(NULL);
	struct timespec dl;

	tally_reset(NULL);
	for (size_t i = 0; i < MANY; i++)
		cr_assert_eq(submit(r, &lookups[pick[i % 5]], tally_cb, (void *)(uintptr_t)i), 0);
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += WAIT_MAX_MS / 1000;
	pthread_mutex_lock(&tally.mu);
	while (tally.total < MANY && pthread_cond_timedwait(&tally.cv, &tally.mu, &dl) == 0)
		;
	pthread_mutex_unlock(&tally.mu);
	cr_assert_eq(tally.total, MANY, "all %d answered, got %d", MANY, tally.total);
	for (size_t i = 0; i < MANY; i++) {
		cr_expect_eq(tally.calls[i], 1);
		cr_expect_eq(tally.errs[i], lookups[pick[i % 5]].want_err, "request %zu (%s): %d", i,
			     lookups[pick[i % 5]].name, tally.errs[i]);
	}
	stop(r);
}

/* ---- resolver_route ------------------------------------------------------- */

/* Submit, wait for the one callback, copy the list into *out. */
static void route_lookup(struct resolver *r, const char *name, unsigned port, int mx,
			 struct resolver_list *out)
{
	struct dns_stub_answer w;

	dns_stub_answer_init(&w);
	cr_assert_eq(resolver_route(r, name, port, mx, dns_stub_answer_cb, &w), 0, "%s: submit",
		     name);
	cr_assert_eq(dns_stub_answer_wait(&w, WAIT_MAX_MS), 1, "%s: one callback", name);
	cr_expect(!pthread_equal(w.thread, pthread_self()), "%s: on the resolver thread", name);
	*out = w.res;
}

static unsigned addr_port(const struct resolver_addr *a)
{
	return ntohs(a->addr.ss_family == AF_INET ? ((const struct sockaddr_in *)&a->addr)->sin_port
						  : ((const struct sockaddr_in6 *)&a->addr)->sin6_port);
}

struct route_case {
	const char *name;
	const char *arg;
	unsigned port;
	int mx;
	int want_err;
	int want_permanent;
	const char *want[RESOLVER_ADDRS_MAX + 1]; /* relays in order, NULL-ended */
};

static const struct route_case routes[] = {
	{ "MX by preference", "pref.test", 25, 1, 0, 0,
	  { "a.pref.test[192.0.2.41]:25", "b.pref.test[192.0.2.42]:25" } },
	{ "every MX, port in each", "mx.test", 2525, 1, 0, 0,
	  { "mx10.mx.test[192.0.2.10]:2525", "mx20.mx.test[192.0.2.20]:2525",
	    "mx30.mx.test[192.0.2.30]:2525" } },
	{ "case, trailing dot", "Pref.Test.", 25, 1, 0, 0,
	  { "a.pref.test[192.0.2.41]:25", "b.pref.test[192.0.2.42]:25" } },
	{ "MX host without address skipped", "skip.test", 25, 1, 0, 0,
	  { "mx20.mx.test[192.0.2.20]:25" } },
	{ "one address once", "dup.test", 25, 1, 0, 0, { "d1.dup.test[192.0.2.60]:25" } },
	{ "no MX: the name's A", "nomx.test", 25, 1, 0, 0, { "nomx.test[192.0.2.2]:25" } },
	{ "null MX", "nullmx.test", 25, 1, -ENXIO, 1, { NULL } },
	{ "NXDOMAIN", "nxdomain.test", 25, 1, -ENOENT, 1, { NULL } },
	{ "the only MX host is gone", "ghostmx.test", 25, 1, -ENOENT, 1, { NULL } },
	{ "the only MX host SERVFAILs", "tempmx.test", 25, 1, -EAGAIN, 0, { NULL } },
	{ "temporary beats permanent", "mixmx.test", 25, 1, -EAGAIN, 0, { NULL } },
	{ "SERVFAIL on MX", "servfail.test", 25, 1, -EAGAIN, 0, { NULL } },
	{ "mx 0: own A, MX ignored", "mx.test", 2526, 0, 0, 0, { "mx.test[192.0.2.99]:2526" } },
	{ "mx 0: AAAA", "v6.test", 25, 0, 0, 0, { "v6.test[2001:db8::6]:25" } },
	{ "mx 0: NXDOMAIN", "nxdomain.test", 25, 0, -ENOENT, 1, { NULL } },
	{ "mx 0: no address", "ghostmx.test", 25, 0, -ENODATA, 1, { NULL } },
	{ "numeric, mx 1", "192.0.2.7", 2525, 1, 0, 0, { "192.0.2.7[192.0.2.7]:2525" } },
	{ "numeric v6, mx 0", "2001:db8::7", 25, 0, 0, 0, { "2001:db8::7[2001:db8::7]:25" } },
};

static void check_route(const struct route_case *c, const struct resolver_list *l)
{
	unsigned want_n = 0;

	while (want_n < RESOLVER_ADDRS_MAX && c->want[want_n])
		want_n++;
	cr_expect_eq(l->err, c->want_err, "%s: err %d, want %d (%s)", c->name, l->err,
		     c->want_err, l->why);
	cr_expect_eq(l->permanent, c->want_permanent, "%s: permanent %d (%s)", c->name,
		     l->permanent, l->why);
	cr_expect_eq(l->n, want_n, "%s: %u addresses, want %u", c->name, l->n, want_n);
	if (c->want_err)
		cr_expect(l->why[0], "%s: a failure says why", c->name);
	for (unsigned i = 0; i < l->n && i < want_n; i++) {
		cr_expect_str_eq(l->a[i].relay, c->want[i], "%s: address %u", c->name, i);
		cr_expect_eq(addr_port(&l->a[i]), c->port, "%s: port of address %u", c->name, i);
	}
}

Test(resolver, route_lists)
{
	struct resolver *r = start(NULL);

	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		struct resolver_list l;

		route_lookup(r, routes[i].arg, routes[i].port, routes[i].mx, &l);
		check_route(&routes[i], &l);
	}
	stop(r);
}

Test(resolver, route_numeric_needs_no_dns)
{
	struct resolver *r = start(NULL);
	struct resolver_list l;

	route_lookup(r, "127.0.0.1", 2525, 1, &l);
	cr_expect_eq(l.err, 0);
	cr_expect_eq(l.n, 1);
	cr_expect_eq(dns_stub_queries(stub), 0, "no DNS query for a numeric name");
	stop(r);
}

/* RFC 5321 5.1: equal preferences in random order. Both orders must show
 * in ROUTE_RUNS lookups (each order missing: chance 2^-(ROUTE_RUNS-1)). */
Test(resolver, route_equal_preference_shuffled)
{
	enum { ROUTE_RUNS = 40 };
	struct resolver *r = start(NULL);
	unsigned first_e1 = 0, first_e2 = 0;

	for (int i = 0; i < ROUTE_RUNS; i++) {
		struct resolver_list l;

		route_lookup(r, "eq.test", 25, 1, &l);
		cr_assert_eq(l.n, 2, "run %d: both hosts (%s)", i, l.why);
		if (!strcmp(l.a[0].host, "e1.eq.test") && !strcmp(l.a[1].host, "e2.eq.test"))
			first_e1++;
		else if (!strcmp(l.a[0].host, "e2.eq.test") && !strcmp(l.a[1].host, "e1.eq.test"))
			first_e2++;
	}
	cr_expect_eq(first_e1 + first_e2, ROUTE_RUNS, "every run lists e1 and e2");
	cr_expect_gt(first_e1, 0, "e1 first sometimes");
	cr_expect_gt(first_e2, 0, "e2 first sometimes");
	stop(r);
}

/* Is relay one of the n texts in set? */
static int relay_in(const char *relay, const char *const *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(relay, set[i]))
			return 1;
	return 0;
}

/* RESOLVER_ADDRS_MAX addresses at most; a host's IPv4 addresses before its
 * IPv6 ones (c-ares' order within a family is its own, so sets). */
Test(resolver, route_address_limit)
{
	static const char *const m1v4[] = { "m1.many.test[192.0.2.11]:25",
					    "m1.many.test[192.0.2.12]:25" };
	static const char *const m2[] = { "m2.many.test[192.0.2.21]:25",
					  "m2.many.test[192.0.2.22]:25" };
	struct resolver *r = start(NULL);
	struct resolver_list l;

	route_lookup(r, "many.test", 25, 1, &l);
	cr_assert_eq(l.err, 0, "%s", l.why);
	cr_assert_eq(l.n, RESOLVER_ADDRS_MAX);
	cr_expect(relay_in(l.a[0].relay, m1v4, 2), "%s", l.a[0].relay);
	cr_expect(relay_in(l.a[1].relay, m1v4, 2), "%s", l.a[1].relay);
	cr_expect(strcmp(l.a[0].relay, l.a[1].relay), "two addresses, not one twice");
	cr_expect_str_eq(l.a[2].relay, "m1.many.test[2001:db8::11]:25");
	cr_expect(relay_in(l.a[3].relay, m2, 2), "%s", l.a[3].relay);
	cr_expect(relay_in(l.a[4].relay, m2, 2), "%s", l.a[4].relay);
	cr_expect(strcmp(l.a[3].relay, l.a[4].relay), "two addresses, not one twice");
	stop(r);
}

/* The deadline passes while a later MX host is silent: the addresses found
 * so far are the answer, not a timeout. */
Test(resolver, route_deadline_keeps_found)
{
	struct resolver_conf conf = { .timeout_ms = 800, .try_ms = 5000 };
	struct resolver *r = start(&conf);
	struct resolver_list l;

	route_lookup(r, "partial.test", 25, 1, &l);
	cr_expect_eq(l.err, 0, "%d (%s)", l.err, l.why);
	cr_expect_eq(l.n, 1);
	cr_expect_str_eq(l.a[0].relay, "mx10.mx.test[192.0.2.10]:25");
	route_lookup(r, "silent.test", 25, 1, &l);
	cr_expect_eq(l.err, -ETIMEDOUT, "nothing found: a timeout (%s)", l.why);
	cr_expect_eq(l.permanent, 0);
	stop(r);
}

Test(resolver, route_refused_and_cancelled)
{
	struct resolver_conf conf = { .timeout_ms = 60000 };
	struct resolver *r = start(&conf);
	struct dns_stub_answer w;

	cr_expect_eq(resolver_route(r, "", 25, 1, dns_stub_answer_cb, NULL), -EINVAL);
	cr_expect_eq(resolver_route(r, "a.test", 0, 1, dns_stub_answer_cb, NULL), -EINVAL);
	cr_expect_eq(resolver_route(r, "a.test", 65536, 0, dns_stub_answer_cb, NULL), -EINVAL);
	dns_stub_answer_init(&w);
	cr_assert_eq(resolver_route(r, "silent.test", 25, 1, dns_stub_answer_cb, &w), 0);
	stop(r);
	cr_expect_eq(w.calls, 1, "answered once when the resolver stops");
	cr_expect_eq(w.res.err, -ECANCELED, "%d (%s)", w.res.err, w.res.why);
}

/* RFC 5321 5.1: this host's own MX record and every one not better than it
 * are dropped; when this host is the best MX, -ELOOP (temporary). The drain's
 * resolver_mx is unchanged (a customer's MX is looked up as always). */
Test(resolver, route_self_dropped)
{
	static const struct route_case self_cases[] = {
		{ "better MX hosts only", "backup.test", 25, 1, 0, 0,
		  { "primary.backup.test[192.0.2.100]:25" } },
		{ "best MX: a loop", "bestself.test", 25, 1, -ELOOP, 0, { NULL } },
		{ "equal preference is not better", "eqself.test", 25, 1, -ELOOP, 0, { NULL } },
		{ "mx 0 names a host: no MX to drop", "self.test", 25, 0, 0, 0,
		  { "self.test[192.0.2.101]:25" } },
	};
	struct resolver_conf conf = { .self = "Self.Test." };
	struct resolver *r = start(&conf);
	struct resolver_list l;
	struct dns_stub_answer w;

	for (size_t i = 0; i < sizeof(self_cases) / sizeof(self_cases[0]); i++) {
		route_lookup(r, self_cases[i].arg, self_cases[i].port, self_cases[i].mx, &l);
		check_route(&self_cases[i], &l);
	}
	dns_stub_answer_init(&w);
	cr_assert_eq(resolver_mx(r, "bestself.test", 25, dns_stub_answer_one_cb, &w), 0);
	cr_assert_eq(dns_stub_answer_wait(&w, WAIT_MAX_MS), 1);
	cr_expect_str_eq(w.one.relay, "self.test[192.0.2.101]:25", "%s", w.one.why);
	stop(r);
	/* Without self, every MX. */
	r = start(NULL);
	route_lookup(r, "backup.test", 25, 1, &l);
	cr_expect_eq(l.n, 3, "%u (%s)", l.n, l.why);
	stop(r);
}

/* ---- resolver_list_sort_mx on its own ------------------------------------ */

struct sort_case {
	const char *name;
	const char *hosts[RESOLVER_LIST_MX_MAX + 5]; /* NULL-ended */
	unsigned short prefs[RESOLVER_LIST_MX_MAX + 5];
	int want_rc;
	const char *want[RESOLVER_LIST_MX_MAX + 1];   /* NULL-ended */
};

static const struct sort_case sorts[] = {
	{ "none", { NULL }, { 0 }, -1, { NULL } },
	{ "by preference, equals in answer order", { "b", "a", "c" }, { 20, 10, 10 }, 1,
	  { "a", "c", "b" } },
	{ "null MX", { "." }, { 0 }, 0, { NULL } },
	{ "empty exchange is null too", { "" }, { 0 }, 0, { NULL } },
	{ "a dot among real ones skipped", { ".", "x" }, { 0, 10 }, 1, { "x" } },
	{ "the best sixteen of twenty",
	  { "h20", "h19", "h18", "h17", "h16", "h15", "h14", "h13", "h12", "h11", "h10", "h9",
	    "h8", "h7", "h6", "h5", "h4", "h3", "h2", "h1" },
	  { 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1 }, 1,
	  { "h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8", "h9", "h10", "h11", "h12", "h13",
	    "h14", "h15", "h16" } },
};

Test(resolver_list, sort_mx)
{
	for (size_t i = 0; i < sizeof(sorts) / sizeof(sorts[0]); i++) {
		const struct sort_case *c = &sorts[i];
		struct ares_mx_reply recs[RESOLVER_LIST_MX_MAX + 5];
		struct resolver_list_mx out;
		size_t n = 0, want_n = 0;
		int rc;

		memset(recs, 0, sizeof(recs));
		for (; c->hosts[n]; n++) {
			recs[n].host = (char *)c->hosts[n];
			recs[n].priority = c->prefs[n];
			if (n)
				recs[n - 1].next = &recs[n];
		}
		while (c->want[want_n])
			want_n++;
		rc = resolver_list_sort_mx(n ? recs : NULL, &out, 0);
		cr_expect_eq(rc, c->want_rc, "%s: rc %d", c->name, rc);
		cr_expect_eq(out.n, want_n, "%s: %u hosts, want %zu", c->name, out.n, want_n);
		for (size_t j = 0; j < out.n && j < want_n; j++)
			cr_expect_str_eq(out.host[j], c->want[j], "%s: host %zu", c->name, j);
	}
}

Test(resolver_list, drop_self)
{
	static const struct {
		const char *self;
		unsigned want_n;
	} cases[] = {
		{ NULL, 4 }, { "", 4 }, { "other", 4 }, { "d", 3 }, { "D.", 3 }, { "c", 1 },
		{ "b", 1 }, { "a", 0 },
	};
	/* a 10, b 20, c 20, d 30: b and c are equal, so either drops both. */
	static const char *const hosts[] = { "a", "b", "c", "d" };
	static const unsigned short prefs[] = { 10, 20, 20, 30 };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct resolver_list_mx mx = { .n = 4 };

		for (unsigned j = 0; j < 4; j++) {
			mx.pref[j] = prefs[j];
			snprintf(mx.host[j], sizeof(mx.host[j]), "%s", hosts[j]);
		}
		cr_expect_eq(resolver_list_drop_self(&mx, cases[i].self), cases[i].want_n,
			     "self \"%s\": %u left, want %u", cases[i].self ? cases[i].self : "(null)",
			     mx.n, cases[i].want_n);
		cr_expect_eq(mx.n, cases[i].want_n);
	}
}

/* resolver_new()'s refusals name the reason and leave nothing open: a
 * server list c-ares cannot read, a process out of descriptors. */
Test(resolver, new_refuses_with_reason)
{
	struct resolver_conf conf = { .servers = "not an address" };
	struct rlimit old, low;
	char err[256] = "";
	int before = loopback_lowest_free_fd();

	cr_expect_null(resolver_new(&conf, err, sizeof(err)));
	static const char want[] = "c-ares: servers \"not an address\": ";
	cr_expect(strncmp(err, want, strlen(want)) == 0 && err[strlen(want)], "%s", err);
	cr_expect_eq(loopback_lowest_free_fd(), before, "a descriptor left open");

	conf.servers = "127.0.0.1:53";
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t)loopback_fd_limit(0);
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	struct resolver *r = resolver_new(&conf, err, sizeof(err));
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	cr_expect_null(r);
	cr_expect_str_eq(err, "resolver: eventfd: Too many open files");
	cr_expect_eq(loopback_lowest_free_fd(), before, "a descriptor left open");
	resolver_free(r);
}
