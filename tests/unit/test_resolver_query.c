/* SPDX-License-Identifier: MIT */
/* Tests for resolver_query() (core/resolver.h), the generic record query,
 * against a real DNS server on loopback UDP (tests/unit/dns_stub.c): A,
 * AAAA, MX, TXT (several strings joined, several records), PTR; NXDOMAIN,
 * NODATA, SERVFAIL, a per-query deadline shorter than the resolver's, bad
 * arguments; and resolver_answer_parse() on junk. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/now.h"
#include "core/resolver.h"
#include "tests/unit/dns_stub.h"

#define WAIT_MAX_MS 30000  /* generous: the machine is shared and loaded */
#define LONG_TXT_LEN 400   /* two strings (255 + 145), in one UDP answer */

static char long_txt[LONG_TXT_LEN + 1];

static const struct dns_stub_rr zone[] = {
	{ "a.test", DNS_STUB_A, "192.0.2.1", 0 },
	{ "a.test", DNS_STUB_A, "192.0.2.2", 0 },
	{ "v6.test", DNS_STUB_AAAA, "2001:db8::6", 0 },
	{ "mx.test", DNS_STUB_MX, "mx10.mx.test", 10 },
	{ "mx.test", DNS_STUB_MX, "mx20.mx.test", 20 },
	{ "txt.test", DNS_STUB_TXT, "v=spf1 -all", 0 },
	{ "txt.test", DNS_STUB_TXT, "another record", 0 },
	{ "long.test", DNS_STUB_TXT, long_txt, 0 },
	{ "empty.test", DNS_STUB_TXT, "", 0 },
	{ "1.2.0.192.in-addr.arpa", DNS_STUB_PTR, "host.a.test", 0 },
	{ "servfail.test", DNS_STUB_SERVFAIL, NULL, 0 },
	{ "silent.test", DNS_STUB_SILENT, NULL, 0 },
};

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int calls;
	int err, permanent;
	unsigned n;
	struct resolver_rr rr[8];
	char data[8][LONG_TXT_LEN + 1];
	char why[RESOLVER_WHY_MAX];
};

static void on_answer(void *cookie, const struct resolver_answer *a)
{
	struct waiter *w = cookie;

	pthread_mutex_lock(&w->mu);
	w->calls++;
	w->err = a->err;
	w->permanent = a->permanent;
	snprintf(w->why, sizeof(w->why), "%s", a->why);
	w->n = a->n;
	for (unsigned i = 0; i < a->n && i < 8; i++) {
		w->rr[i] = a->rr[i];
		cr_assert(a->rr[i].len <= LONG_TXT_LEN);
		memcpy(w->data[i], a->rr[i].data, a->rr[i].len + 1);
		w->rr[i].data = w->data[i];
	}
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void ask(struct resolver *r, const char *name, enum resolver_rrtype t, unsigned ms,
		struct waiter *w)
{
	struct timespec dl = now_realtime_after(WAIT_MAX_MS);

	memset(w, 0, sizeof(*w));
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	cr_assert_eq(resolver_query(r, name, t, ms, on_answer, w), 0, "%s", name);
	pthread_mutex_lock(&w->mu);
	while (!w->calls && pthread_cond_timedwait(&w->cv, &w->mu, &dl) == 0)
		;
	pthread_mutex_unlock(&w->mu);
	cr_assert_eq(w->calls, 1, "%s: answered once", name);
}

static struct dns_stub *stub;

static struct resolver *start(unsigned timeout_ms)
{
	char servers[64], err[256];
	struct resolver_conf conf = { .timeout_ms = timeout_ms };
	struct resolver *r;

	memset(long_txt, 'x', LONG_TXT_LEN);
	long_txt[LONG_TXT_LEN - 1] = 'y';
	stub = dns_stub_start(zone, sizeof(zone) / sizeof(zone[0]));
	cr_assert_not_null(stub);
	snprintf(servers, sizeof(servers), "127.0.0.1:%u", dns_stub_port(stub));
	conf.servers = servers;
	r = resolver_new(&conf, err, sizeof(err));
	cr_assert_not_null(r, "%s", err);
	return r;
}

static void stop(struct resolver *r)
{
	resolver_free(r);
	dns_stub_stop(stub);
}

Test(resolver_query, records)
{
	struct resolver *r = start(0);
	struct waiter w;
	char text[INET6_ADDRSTRLEN];

	ask(r, "a.test", RESOLVER_T_A, 0, &w);
	cr_assert_eq(w.err, 0, "%s", w.why);
	cr_assert_eq(w.n, 2);
	cr_expect_eq(w.rr[0].len, 4);
	inet_ntop(AF_INET, w.rr[0].data, text, sizeof(text));
	cr_expect_str_eq(text, "192.0.2.1");
	inet_ntop(AF_INET, w.rr[1].data, text, sizeof(text));
	cr_expect_str_eq(text, "192.0.2.2");

	ask(r, "v6.test", RESOLVER_T_AAAA, 0, &w);
	cr_assert_eq(w.n, 1, "%s", w.why);
	cr_expect_eq(w.rr[0].len, 16);
	inet_ntop(AF_INET6, w.rr[0].data, text, sizeof(text));
	cr_expect_str_eq(text, "2001:db8::6");

	ask(r, "MX.test.", RESOLVER_T_MX, 0, &w);
	cr_assert_eq(w.n, 2, "%s", w.why);
	cr_expect_str_eq(w.rr[0].data, "mx10.mx.test");
	cr_expect_eq(w.rr[0].pref, 10);
	cr_expect_str_eq(w.rr[1].data, "mx20.mx.test");
	cr_expect_eq(w.rr[1].pref, 20);

	ask(r, "txt.test", RESOLVER_T_TXT, 0, &w);
	cr_assert_eq(w.n, 2, "%s", w.why);
	cr_expect_str_eq(w.rr[0].data, "v=spf1 -all");
	cr_expect_eq(w.rr[0].len, strlen("v=spf1 -all"));
	cr_expect_str_eq(w.rr[1].data, "another record");

	/* RFC 7208 3.3: the strings of one record are joined, nothing between. */
	ask(r, "long.test", RESOLVER_T_TXT, 0, &w);
	cr_assert_eq(w.n, 1, "%s", w.why);
	cr_expect_eq(w.rr[0].len, LONG_TXT_LEN);
	cr_expect_str_eq(w.rr[0].data, long_txt);

	ask(r, "1.2.0.192.in-addr.arpa", RESOLVER_T_PTR, 0, &w);
	cr_assert_eq(w.n, 1, "%s", w.why);
	cr_expect_str_eq(w.rr[0].data, "host.a.test");
	stop(r);
}

Test(resolver_query, failures)
{
	struct resolver *r = start(0);
	struct waiter w;

	ask(r, "nowhere.test", RESOLVER_T_TXT, 0, &w);
	cr_expect_eq(w.err, -ENOENT, "%s", w.why);
	cr_expect_eq(w.permanent, 1);
	cr_expect(strstr(w.why, "TXT lookup of nowhere.test: NXDOMAIN"), "%s", w.why);

	ask(r, "a.test", RESOLVER_T_TXT, 0, &w); /* NODATA */
	cr_expect_eq(w.err, -ENODATA, "%s", w.why);
	cr_expect_eq(w.permanent, 1);
	cr_expect_eq(w.n, 0);

	ask(r, "servfail.test", RESOLVER_T_TXT, 0, &w);
	cr_expect_eq(w.err, -EAGAIN, "%s", w.why);
	cr_expect_eq(w.permanent, 0);

	cr_expect_eq(resolver_query(r, "", RESOLVER_T_A, 0, on_answer, &w), -EINVAL);
	cr_expect_eq(resolver_query(r, "a.test", (enum resolver_rrtype)99, 0, on_answer, &w),
		     -EINVAL);
	stop(r);
}

/* A query's own deadline, shorter than the resolver's, is kept, and a query
 * with a longer one behind it is not held up. */
Test(resolver_query, own_deadline)
{
	struct resolver *r = start(60000);
	struct waiter w;
	struct resolver_stats st;

	ask(r, "silent.test", RESOLVER_T_TXT, 300, &w);
	cr_expect_eq(w.err, -ETIMEDOUT, "%s", w.why);
	cr_expect_eq(w.permanent, 0);
	cr_expect(strstr(w.why, "TXT lookup of silent.test"), "%s", w.why);
	resolver_get_stats(r, &st);
	cr_expect_eq(st.timed_out, 1);
	ask(r, "txt.test", RESOLVER_T_TXT, 0, &w);
	cr_expect_eq(w.err, 0, "%s", w.why);
	stop(r);
}

/* The parser on input that is no DNS answer: an error, never a crash. */
Test(resolver_query, parse_junk)
{
	static const unsigned char junk[] = { 0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0 };
	const enum resolver_rrtype types[] = { RESOLVER_T_A, RESOLVER_T_AAAA, RESOLVER_T_MX,
					       RESOLVER_T_TXT, RESOLVER_T_PTR };

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		struct resolver_answer *a = resolver_answer_parse(types[i], junk, sizeof(junk));
		cr_assert_not_null(a);
		cr_expect_neq(a->err, 0);
		cr_expect_eq(a->n, 0);
		free(a);
	}
}
