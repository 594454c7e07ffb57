/* SPDX-License-Identifier: MIT */
/* Tests for proto/spf.c: libspf2 over our DNS layer and the bounded
 * resolver, against a real DNS server on loopback (tests/unit/dns_stub.c):
 * pass, fail, softfail, neutral, none (no record, NXDOMAIN), temperror
 * (SERVFAIL, no answer in time), permerror (bad record, two records, too
 * many void lookups); include and mx; the HELO identity for <>; the
 * Received-SPF field; the pool answering on a real loop thread. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/loop.h"
#include "core/now.h"
#include "core/resolver.h"
#include "proto/spf.h"
#include "tests/unit/dns_stub.h"

#define WAIT_MAX_MS 60000  /* generous: the machine is shared and loaded */
#define SHORT_TIMEOUT_MS 500
#define POOL_TIMEOUT_MS 5000 /* the silent checks outlast filling the pool */

static const struct dns_stub_rr zone[] = {
	{ "pass.test", DNS_STUB_TXT, "v=spf1 ip4:127.0.0.1 -all", 0 },
	{ "pass.test", DNS_STUB_TXT, "unrelated text", 0 },
	{ "fail.test", DNS_STUB_TXT, "v=spf1 ip4:192.0.2.0/24 -all", 0 },
	{ "soft.test", DNS_STUB_TXT, "v=spf1 ~all", 0 },
	{ "neutral.test", DNS_STUB_TXT, "v=spf1 ?all", 0 },
	{ "norecord.test", DNS_STUB_A, "192.0.2.1", 0 },
	{ "servfail.test", DNS_STUB_SERVFAIL, NULL, 0 },
	{ "silent.test", DNS_STUB_SILENT, NULL, 0 },
	{ "bad.test", DNS_STUB_TXT, "v=spf1 nonsense:x -all", 0 },
	{ "two.test", DNS_STUB_TXT, "v=spf1 -all", 0 },
	{ "two.test", DNS_STUB_TXT, "v=spf1 +all", 0 },
	{ "inc.test", DNS_STUB_TXT, "v=spf1 include:pass.test -all", 0 },
	{ "mx.test", DNS_STUB_TXT, "v=spf1 mx -all", 0 },
	{ "mx.test", DNS_STUB_MX, "mail.mx.test", 10 },
	{ "mail.mx.test", DNS_STUB_A, "127.0.0.1", 0 },
	{ "void.test", DNS_STUB_TXT, "v=spf1 a:v1.test a:v2.test a:v3.test -all", 0 },
	{ "twovoid.test", DNS_STUB_TXT, "v=spf1 a:v1.test a:v2.test ip4:127.0.0.1 -all", 0 },
	{ "helo.test", DNS_STUB_TXT, "v=spf1 ip4:127.0.0.1 -all", 0 },
};

static struct dns_stub *stub;
static struct resolver *res;

static void setup(void)
{
	char servers[64], err[256];
	struct resolver_conf conf = { 0 };

	stub = dns_stub_start(zone, sizeof(zone) / sizeof(zone[0]));
	cr_assert_not_null(stub);
	snprintf(servers, sizeof(servers), "127.0.0.1:%u", dns_stub_port(stub));
	conf.servers = servers;
	res = resolver_new(&conf, err, sizeof(err));
	cr_assert_not_null(res, "%s", err);
}

static void teardown(void)
{
	resolver_free(res);
	dns_stub_stop(stub);
}

struct spf_case {
	const char *name;
	const char *client, *helo, *sender;
	unsigned timeout_ms;
	enum spf_res want;
};

static const struct spf_case cases[] = {
	{ "pass", "127.0.0.1", "h.test", "a@pass.test", 0, SPF_RES_PASS },
	{ "fail", "127.0.0.1", "h.test", "a@fail.test", 0, SPF_RES_FAIL },
	{ "fail matches v4 in range", "192.0.2.9", "h.test", "a@fail.test", 0, SPF_RES_PASS },
	{ "softfail", "127.0.0.1", "h.test", "a@soft.test", 0, SPF_RES_SOFTFAIL },
	{ "neutral", "127.0.0.1", "h.test", "a@neutral.test", 0, SPF_RES_NEUTRAL },
	{ "none: no record", "127.0.0.1", "h.test", "a@norecord.test", 0, SPF_RES_NONE },
	{ "none: NXDOMAIN", "127.0.0.1", "h.test", "a@nowhere.test", 0, SPF_RES_NONE },
	{ "temperror: SERVFAIL", "127.0.0.1", "h.test", "a@servfail.test", 0,
	  SPF_RES_TEMPERROR },
	{ "temperror: no answer in time", "127.0.0.1", "h.test", "a@silent.test",
	  SHORT_TIMEOUT_MS, SPF_RES_TEMPERROR },
	{ "permerror: unknown mechanism", "127.0.0.1", "h.test", "a@bad.test", 0,
	  SPF_RES_PERMERROR },
	{ "permerror: two records", "127.0.0.1", "h.test", "a@two.test", 0, SPF_RES_PERMERROR },
	{ "include", "127.0.0.1", "h.test", "a@inc.test", 0, SPF_RES_PASS },
	{ "include fails", "192.0.2.200", "h.test", "a@inc.test", 0, SPF_RES_FAIL },
	{ "mx", "127.0.0.1", "h.test", "a@mx.test", 0, SPF_RES_PASS },
	{ "permerror: three void lookups", "127.0.0.1", "h.test", "a@void.test", 0,
	  SPF_RES_PERMERROR },
	{ "two void lookups are allowed", "127.0.0.1", "h.test", "a@twovoid.test", 0,
	  SPF_RES_PASS },
	{ "IPv6 client", "2001:db8::1", "h.test", "a@fail.test", 0, SPF_RES_FAIL },
	{ "null sender: HELO identity", "127.0.0.1", "helo.test", "", 0, SPF_RES_PASS },
	{ "null sender: HELO fails", "192.0.2.1", "helo.test", "", 0, SPF_RES_FAIL },
};

Test(spf, results, .init = setup, .fini = teardown)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct spf_case *c = &cases[i];
		struct spf_query q = { .client = c->client, .helo = c->helo, .sender = c->sender,
				       .receiver = "mx.example" };
		struct spf_verdict v;

		spf_eval(res, &q, c->timeout_ms, &v);
		cr_expect_eq(v.res, c->want, "%s: %s, want %s (%s)", c->name, spf_res_name(v.res),
			     spf_res_name(c->want), v.comment);
		cr_expect_eq(v.helo_identity, c->sender[0] == '\0', "%s", c->name);
	}
}

Test(spf, header)
{
	struct spf_query q = { .client = "192.0.2.1", .helo = "h\"x.test", .sender = "a\r\n@b.test",
			       .receiver = "mx.example" };
	struct spf_verdict v = { .res = SPF_RES_SOFTFAIL, .comment = "mx.example: transitioning" };
	char out[SPF_HEADER_MAX];
	size_t n = spf_header(&v, &q, out, sizeof(out));

	cr_assert_eq(n, strlen(out));
	cr_expect_str_eq(out, "Received-SPF: softfail (mx.example: transitioning)\r\n"
			      "\tclient-ip=192.0.2.1;\r\n\tenvelope-from=\"a??@b.test\";\r\n"
			      "\thelo=\"h\\\"x.test\";\r\n\treceiver=\"mx.example\"; identity=mailfrom\r\n");
	/* Every line ends in CRLF; no bare CR or LF from the peer's text. */
	for (size_t i = 0; i < n; i++)
		if (out[i] == '\r' || out[i] == '\n')
			cr_expect(out[i] == '\r' ? out[i + 1] == '\n' : out[i - 1] == '\r', "at %zu", i);
	cr_expect_eq(spf_res_parse("softfail (mx", 12), SPF_RES_SOFTFAIL);
	cr_expect_eq(spf_res_parse("FAIL", 4), SPF_RES_FAIL);
	cr_expect_eq(spf_res_parse("failed", 6), -1);
	cr_expect_eq(spf_res_parse("", 0), -1);
	/* Longest peer text still fits, cut, never truncating the field. */
	char longs[600];
	memset(longs, 'x', sizeof(longs) - 1);
	longs[sizeof(longs) - 1] = '\0';
	q.sender = q.helo = q.receiver = longs;
	memset(v.comment, 'c', sizeof(v.comment) - 1);
	v.comment[sizeof(v.comment) - 1] = '\0';
	n = spf_header(&v, &q, out, sizeof(out));
	cr_expect(n > 0 && n < sizeof(out));
	cr_expect(strstr(out, "identity=mailfrom\r\n"), "%s", out);
}

/* The pool: checks answered on the asking loop's thread, the bound. */
struct pool_fx {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct loop *l;
	pthread_t loop_thread, answered_on;
	int running, answers;
	enum spf_res last;
	struct config cfg;
};

static const struct conn_ops no_ops;

static void *pool_loop(void *arg)
{
	struct pool_fx *fx = arg;
	struct loop_conf lc = { 0 };
	char err[CONFIG_ERR_MAX];

	lc.cfg = &fx->cfg;
	lc.ops = &no_ops;
	pthread_mutex_lock(&fx->mu);
	fx->l = loop_new(&lc, err, sizeof(err));
	fx->running = fx->l ? 1 : -1;
	pthread_cond_broadcast(&fx->cv);
	pthread_mutex_unlock(&fx->mu);
	if (fx->l)
		(void)loop_run(fx->l);
	return NULL;
}

static void pool_done(void *arg, const struct spf_verdict *v)
{
	struct pool_fx *fx = arg;

	pthread_mutex_lock(&fx->mu);
	fx->answers++;
	fx->last = v->res;
	fx->answered_on = pthread_self();
	pthread_cond_broadcast(&fx->cv);
	pthread_mutex_unlock(&fx->mu);
}

Test(spf, pool, .init = setup, .fini = teardown)
{
	static struct pool_fx fx;
	struct spf_query q = { .client = "127.0.0.1", .helo = "h.test", .sender = "a@fail.test",
			       .receiver = "mx.example" };
	struct timespec dl = now_realtime_after(WAIT_MAX_MS);
	char err[256];
	struct spf *s;

	memset(&fx, 0, sizeof(fx));
	pthread_mutex_init(&fx.mu, NULL);
	pthread_cond_init(&fx.cv, NULL);
	config_defaults(&fx.cfg);
	fx.cfg.nlisten = 0;
	fx.cfg.max_connections = 4;
	cr_assert_eq(pthread_create(&fx.loop_thread, NULL, pool_loop, &fx), 0);
	pthread_mutex_lock(&fx.mu);
	while (!fx.running)
		pthread_cond_wait(&fx.cv, &fx.mu);
	pthread_mutex_unlock(&fx.mu);
	cr_assert_eq(fx.running, 1);
	s = spf_start(res, 2, POOL_TIMEOUT_MS, err, sizeof(err));
	cr_assert_not_null(s, "%s", err);
	cr_assert_eq(spf_check(s, fx.l, &q, pool_done, &fx), 0);
	q.sender = "a@pass.test";
	cr_assert_eq(spf_check(s, fx.l, &q, pool_done, &fx), 0);
	pthread_mutex_lock(&fx.mu);
	while (fx.answers < 2 && pthread_cond_timedwait(&fx.cv, &fx.mu, &dl) == 0)
		;
	pthread_mutex_unlock(&fx.mu);
	cr_expect_eq(fx.answers, 2);
	cr_expect(pthread_equal(fx.answered_on, fx.loop_thread), "answered on the loop's thread");

	/* Both slots given back (done() runs before the slot is free). */
	uint64_t until = now_mono_ms() + WAIT_MAX_MS;
	while (spf_busy(s) && now_mono_ms() < until)
		sched_yield();
	cr_assert_eq(spf_busy(s), 0);
	/* The bound: SPF_QUEUE_MAX checks out (silent.test holds each until its
	 * deadline), the next is refused at once. */
	q.sender = "a@silent.test";
	int taken = 0;
	while (taken < SPF_QUEUE_MAX + 1 && spf_check(s, fx.l, &q, pool_done, &fx) == 0)
		taken++;
	cr_expect_eq(taken, SPF_QUEUE_MAX, "accepted %d", taken);
	cr_expect_eq(spf_check(s, fx.l, &q, pool_done, &fx), -EAGAIN);
	cr_expect_eq(spf_busy(s), SPF_QUEUE_MAX);

	/* etrnd's order: loops, the pool (a busy worker finishes its check,
	 * within POOL_TIMEOUT_MS), then the resolver (teardown). */
	loop_stop(fx.l);
	pthread_join(fx.loop_thread, NULL);
	s = spf_free(s);
	loop_free(fx.l);
	config_free(&fx.cfg);
}

/* What a bounce reads: our field above our Received:, never the sender's. */
Test(spf, stored_result)
{
	static const struct {
		const char *body;
		int want;
	} stored[] = {
		{ "Received-SPF: fail (x) client-ip=1.2.3.4;\r\n\tenvelope-from=\"a@b\"\r\n"
		  "Received: from x by y\r\nSubject: s\r\n\r\nbody\r\n", SPF_RES_FAIL },
		{ "X-Milter: yes\r\nReceived-SPF: softfail (x)\r\nReceived: from x\r\n\r\n",
		  SPF_RES_SOFTFAIL },
		{ "received-spf:pass\r\nReceived: from x\r\n\r\n", SPF_RES_PASS },
		/* The sender's own field, below our Received:, does not count. */
		{ "Received: from x by y\r\nReceived-SPF: fail (forged)\r\n\r\n", -1 },
		{ "Received: from x by y\r\nSubject: s\r\n\r\nReceived-SPF: fail\r\n", -1 },
		{ "Received-SPF: failed\r\nReceived: from x\r\n\r\n", -1 },
		{ "Received-SPF: fail", -1 },            /* no line end: not a field */
		{ "", -1 },
		{ "\r\nReceived-SPF: fail\r\n", -1 },   /* after the header */
	};

	for (size_t i = 0; i < sizeof(stored) / sizeof(stored[0]); i++) {
		size_t len = strlen(stored[i].body);
		cr_expect_eq(spf_stored_result(stored[i].body, len), stored[i].want, "case %zu", i);
		/* A body cut anywhere never reads past its end (ASan). */
		for (size_t cut = 0; cut < len; cut++) {
			char *copy = malloc(cut ? cut : 1);
			memcpy(copy, stored[i].body, cut);
			(void)spf_stored_result(copy, cut);
			free(copy);
		}
	}
}
