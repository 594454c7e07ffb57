/* SPDX-License-Identifier: MIT */
/*
 * Tests for proto/activator.c and proto/activator_run.c on a real engine
 * loop (engine_fixture) against a scripted upstream on loopback: the
 * upstream's reply to ETRN kept and shown, a refused connect, the next run
 * after a failure at the next scheduled time (the test clock steps it),
 * a run due while one goes skipped, after-outbound at most once per gap,
 * one-shots listed and dropped. Two-daemon runs (ETRN and ATRN end to
 * end) are tests/integration/test_activator.py's.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/now.h"
#include "core/timetable.h"
#include "dns_stub.h"
#include "engine_fixture.h"
#include "log_capture.h"
#include "loopback.h"
#include "proto/activator.h"
#include "proto/smtpd.h"

#define T_LOG_MAX 4096
#define T_LINE_MAX 1024
#define T_IO_MS 5000                 /* the upstream waits this for a line */
#define T_POLL_MS 100                /* its accept loop's stop check */
#define T_WAIT_MS 15000              /* any wait for the activator */
#define T_STILL_MS 1500              /* "nothing more happens" watch */
#define T_NAP_NS 5000000L
#define T_STATUS_MAX 8192
#define T_CAPTURE_MAX 16384
#define T_HOUR_S 3600u
#define T_US 1000000u
#define T_CUST "cust.test"

/* ---- the scripted upstream ----------------------------------------------- */

struct t_up {
	int lfd;
	unsigned short port;
	pthread_t th;
	const char *greeting;        /* with CRLF */
	const char *etrn_reply;      /* with CRLF */
	int atrn;                    /* offer AUTH and ATRN; after ATRN's 250
	                                turn around and send one message */
	atomic_int stop;
	atomic_int hold;             /* 1: the greeting waits */
	atomic_uint conns;
	pthread_mutex_t mu;
	char log[T_LOG_MAX];         /* every line received, all connections */
	size_t loglen;
};

static void t_nap(void)
{
	const struct timespec ts = { 0, T_NAP_NS };

	nanosleep(&ts, NULL);
}

static int t_send(int fd, const char *p)
{
	size_t n = strlen(p);

	return send(fd, p, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

static const char *t_answer(struct t_up *u, const char *line, size_t n)
{
	if (n >= 5 && !strncasecmp(line, "EHLO ", 5) && u->atrn)
		return "250-upstream.test hello\r\n250-AUTH PLAIN LOGIN\r\n250 ATRN\r\n";
	if (n >= 5 && !strncasecmp(line, "EHLO ", 5))
		return "250-upstream.test hello\r\n250-ENHANCEDSTATUSCODES\r\n250 ETRN\r\n";
	if (n >= 5 && !strncasecmp(line, "AUTH ", 5))
		return "235 2.7.0 Authentication successful\r\n";
	if (n >= 4 && !strncasecmp(line, "ATRN", 4))
		return "250 OK now reversing the connection\r\n";
	if (n >= 5 && !strncasecmp(line, "ETRN ", 5))
		return u->etrn_reply;
	if (n == 6 && !strncasecmp(line, "QUIT\r\n", 6))
		return NULL;
	return "502 5.5.2 unknown command\r\n";
}

static void t_keep(struct t_up *u, const char *p, size_t n)
{
	pthread_mutex_lock(&u->mu);
	if (u->loglen + n < sizeof(u->log)) {
		memcpy(u->log + u->loglen, p, n);
		u->loglen += n;
		u->log[u->loglen] = '\0';
	}
	pthread_mutex_unlock(&u->mu);
}

/* Read one whole reply of ours (the last line "NNN "), kept in the log;
 * 0 when it starts with want. */
static int t_reply(struct t_up *u, int fd, const char *want)
{
	char in[T_LINE_MAX];
	size_t have = 0;

	for (;;) {
		char *nl = memchr(in, '\n', have);
		ssize_t r;

		if (nl) {
			size_t n = (size_t)(nl - in) + 1;
			int last = n > 4 && in[3] == ' ';
			int ok = !strncmp(in, want, strlen(want));

			t_keep(u, in, n);
			memmove(in, in + n, have - n);
			have -= n;
			if (last)
				return ok ? 0 : -1;
			continue;
		}
		if (have == sizeof(in) ||
		    poll(&(struct pollfd){ fd, POLLIN, 0 }, 1, T_IO_MS) != 1)
			return -1;
		r = read(fd, in + have, 1); /* byte by byte: nothing past the reply */
		if (r <= 0)
			return -1;
		have += (size_t)r;
	}
}

/* ATRN's 250 sent: the upstream is the client now (RFC 2645 4). */
static void t_turned(struct t_up *u, int fd)
{
	static const char *const steps[][2] = {
		{ "EHLO upstream.test\r\n", "250" },
		{ "MAIL FROM:<far@upstream.test>\r\n", "250" },
		{ "RCPT TO:<x@" T_CUST ">\r\n", "250" },
		{ "DATA\r\n", "354" },
		{ "Subject: held\r\n\r\nheld upstream\r\n.\r\n", "250" },
		{ "QUIT\r\n", "221" },
	};

	if (t_reply(u, fd, "220"))
		return;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		if (t_send(fd, steps[i][0]) || t_reply(u, fd, steps[i][1]))
			return;
}

static void t_serve(struct t_up *u, int fd)
{
	char in[T_LINE_MAX];
	size_t have = 0;
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	while (atomic_load(&u->hold) && !atomic_load(&u->stop))
		t_nap();
	if (t_send(fd, u->greeting) || u->greeting[0] != '2')
		return;
	for (;;) {
		char *nl;
		ssize_t r;

		while ((nl = memchr(in, '\n', have))) {
			size_t n = (size_t)(nl - in) + 1;
			const char *reply = t_answer(u, in, n);
			int turn = u->atrn && n >= 4 && !strncasecmp(in, "ATRN", 4);

			t_keep(u, in, n);
			memmove(in, in + n, have - n);
			have -= n;
			if (!reply) {
				(void)t_send(fd, "221 2.0.0 bye\r\n");
				return;
			}
			if (t_send(fd, reply))
				return;
			if (turn) {
				t_turned(u, fd);
				return;
			}
		}
		if (have == sizeof(in) ||
		    poll(&(struct pollfd){ fd, POLLIN, 0 }, 1, T_IO_MS) != 1)
			return;
		r = read(fd, in + have, sizeof(in) - have);
		if (r <= 0)
			return;
		have += (size_t)r;
	}
}

static void *t_up_main(void *arg)
{
	struct t_up *u = arg;

	while (!atomic_load(&u->stop)) {
		int fd;

		if (poll(&(struct pollfd){ u->lfd, POLLIN, 0 }, 1, T_POLL_MS) != 1)
			continue;
		fd = accept(u->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		atomic_fetch_add(&u->conns, 1);
		t_serve(u, fd);
		close(fd);
	}
	return NULL;
}

/* atrn: set before the thread starts, which reads it. */
static void t_up_start(struct t_up *u, const char *greeting, const char *etrn_reply, int atrn)
{
	memset(u, 0, sizeof(*u));
	u->greeting = greeting;
	u->etrn_reply = etrn_reply;
	u->atrn = atrn;
	pthread_mutex_init(&u->mu, NULL);
	u->lfd = loopback_listen(8, &u->port);
	cr_assert_geq(u->lfd, 0, "loopback_listen: %s", strerror(-u->lfd));
	cr_assert_eq(pthread_create(&u->th, NULL, t_up_main, u), 0);
}

static void t_up_stop(struct t_up *u)
{
	atomic_store(&u->hold, 0);
	atomic_store(&u->stop, 1);
	pthread_join(u->th, NULL);
	close(u->lfd);
	pthread_mutex_destroy(&u->mu);
}

/* ---- the node: an engine loop with the registry attached ----------------- */

struct t_node {
	struct engine_fixture f;
	struct activators *a;
	struct smtpd *d;             /* with_smtpd: serves ATRN's reversal */
	int with_smtpd;
};

/* On the engine thread before loop_run(), as admin/engine.c does. */
static int t_attach(struct engine_fixture *f, void *arg)
{
	struct t_node *n = arg;

	if (n->with_smtpd) {
		n->d = smtpd_new(&f->cfg, f->dt);
		if (!n->d || smtpd_set_spool(n->d, f->sh))
			return -1;
	}
	return activators_attach(n->a, f->loop, n->d, f->resolver, NULL);
}

/* The domain table: cust.test is ours (mail for it is taken). */
static struct domtab *t_table(void)
{
	struct domtab *t = engine_fixture_table_of(T_CUST);

	cr_assert_not_null(t);
	return t;
}

/* An ETRN activator of cust.test to 127.0.0.1:port on rule. */
static void t_conf(struct config_activator *c, const char *name, unsigned port,
		   const struct timetable_rule *rule)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "%s", name);
	snprintf(c->host, sizeof(c->host), "127.0.0.1");
	c->port = port;
	c->method = CONFIG_ACTIVATOR_ETRN;
	c->nrequest = 1;
	snprintf(c->request[0], sizeof(c->request[0]), T_CUST);
	c->tls = CONFIG_ACTIVATOR_TLS_NONE;
	c->schedule.n = rule ? 1 : 0;
	if (rule)
		c->schedule.rule[0] = *rule;
}

static const struct timetable_rule t_hourly = { .kind = TIMETABLE_EVERY, .every_s = T_HOUR_S };
static const struct timetable_rule t_after = { .kind = TIMETABLE_AFTER_OUTBOUND };

/* Start a node whose config holds the nconf activators of conf, its
 * resolver asking the DNS server on dns_port (0: resolv.conf's). */
static void t_node_start_n(struct t_node *n, const struct config_activator *conf,
			   unsigned nconf, unsigned dns_port)
{
	cr_assert_eq(engine_fixture_init(&n->f, t_table()), 0);
	if (dns_port)
		snprintf(n->f.cfg.dns_servers, sizeof(n->f.cfg.dns_servers), "127.0.0.1:%u",
			 dns_port);
	if (nconf) {
		n->f.cfg.activators = calloc(nconf, sizeof(*conf));
		cr_assert_not_null(n->f.cfg.activators);
		memcpy(n->f.cfg.activators, conf, nconf * sizeof(*conf));
		n->f.cfg.nactivators = nconf;
	}
	n->a = activators_new(&n->f.cfg);
	cr_assert_not_null(n->a);
	n->f.setup = t_attach;
	n->f.setup_arg = n;
	cr_assert_eq(engine_fixture_start(&n->f), 0, "%s", n->f.err);
}

/* A node with conf alone (NULL: none). */
static void t_node_start(struct t_node *n, const struct config_activator *conf)
{
	t_node_start_n(n, conf, conf ? 1 : 0, 0);
}

static void t_node_stop(struct t_node *n)
{
	engine_fixture_stop(&n->f);
	n->a = activators_free(n->a);
	n->d = smtpd_free(n->d);
	engine_fixture_fini(&n->f);
}

/* ---- reading the status -------------------------------------------------- */

struct t_status {
	char json[T_STATUS_MAX];
	int found;
	uint64_t runs, failures;
	char state[32];
	long long next;               /* -1: null */
	char reply[T_LINE_MAX];
};

/* The number after "key": in s, or -1 for null / missing. */
static long long t_num(const char *s, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(s, pat);
	if (!p || !strncmp(p + strlen(pat), "null", 4))
		return -1;
	return strtoll(p + strlen(pat), NULL, 10);
}

/* The string after "key": in s (no escapes in these tests). */
static void t_str(const char *s, const char *key, char *out, size_t n)
{
	char pat[64];
	const char *p, *e;

	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	out[0] = '\0';
	p = strstr(s, pat);
	if (!p)
		return;
	p += strlen(pat);
	e = strchr(p, '"');
	snprintf(out, n, "%.*s", e ? (int)(e - p) : 0, p);
}

static void t_status(struct t_node *n, const char *name, struct t_status *st)
{
	struct buf b;
	int rc;

	memset(st, 0, sizeof(*st));
	buf_init(&b, 0);
	rc = activators_status(n->a, name, &b, 1);
	st->found = rc == 0;
	snprintf(st->json, sizeof(st->json), "%.*s", (int)b.len, b.data);
	buf_free(&b);
	if (!st->found)
		return;
	st->runs = (uint64_t)t_num(st->json, "runs");
	st->failures = (uint64_t)t_num(st->json, "failures");
	st->next = t_num(st->json, "next");
	t_str(st->json, "state", st->state, sizeof(st->state));
	t_str(st->json, "reply", st->reply, sizeof(st->reply));
}

/* Wait until name has at least runs runs and is idle again. */
static void t_wait_idle(struct t_node *n, const char *name, uint64_t runs, struct t_status *st)
{
	uint64_t end = now_mono_ms() + T_WAIT_MS;

	for (;;) {
		t_status(n, name, st);
		if (st->found && st->runs >= runs && !strcmp(st->state, "idle"))
			return;
		cr_assert_lt(now_mono_ms(), end, "%s: no %" PRIu64 " run(s) ended: %s", name, runs,
			     st->json);
		t_nap();
	}
}

/* Wait until name's run has connected to u and waits for its greeting. */
static void t_wait_talking(struct t_node *n, struct t_up *u, const char *name)
{
	uint64_t end = now_mono_ms() + T_WAIT_MS;
	struct t_status st;

	do {
		t_status(n, name, &st);
		cr_assert_lt(now_mono_ms(), end, "never connected: %s", st.json);
		t_nap();
	} while (atomic_load(&u->conns) == 0 || strcmp(st.state, "talking"));
}

/* Watch for a while that name keeps its run count. */
static void t_still_runs(struct t_node *n, const char *name, uint64_t runs)
{
	uint64_t end = now_mono_ms() + T_STILL_MS;
	struct t_status st;

	while (now_mono_ms() < end) {
		t_status(n, name, &st);
		cr_assert_eq(st.runs, runs, "%s ran again: %s", name, st.json);
		t_nap();
	}
}

/* The next time the hourly rule gives after now (seconds). */
static long long t_next_hour(void)
{
	struct timetable t = { .n = 1, .rule = { t_hourly } };

	return (long long)(timetable_next(&t, now_shifted_us(0)) / T_US);
}

/* "slow": hourly, its upstream u holding its greeting; the node n up,
 * its log captured, the run connected and waiting. */
static void t_slow_start(struct t_node *n, struct t_up *u, struct log_capture *cap)
{
	struct config_activator conf;

	t_up_start(u, "220 upstream.test ESMTP\r\n", "253 2.0.0 OK\r\n", 0);
	atomic_store(&u->hold, 1);
	t_conf(&conf, "slow", u->port, &t_hourly);
	cr_assert_eq(log_capture_start(cap), 0);
	t_node_start(n, &conf);
	t_wait_talking(n, u, "slow");
}

/* ---- the upstream's reply to ETRN ----------------------------------------- */

struct t_reply_case {
	const char *etrn_reply;
	const char *want_reply;      /* what status shows */
	const char *want_meaning;    /* in the JSON and the log line */
	uint64_t want_failures;
};

static const struct t_reply_case t_reply_cases[] = {
	{ "253 2.0.0 OK, 12 pending messages for node cust.test started\r\n",
	  "253 2.0.0 OK, 12 pending messages for node cust.test started",
	  "pending messages started, with their count", 0 },
	{ "250 2.0.0 Queuing for node cust.test started\r\n",
	  "250 2.0.0 Queuing for node cust.test started", "queuing started", 0 },
	{ "458 4.0.0 Unable to queue messages for node cust.test\r\n",
	  "458 4.0.0 Unable to queue messages for node cust.test",
	  "unable to queue messages", 1 },
	{ "459 4.7.1 Node cust.test not allowed: not yours\r\n",
	  "459 4.7.1 Node cust.test not allowed: not yours", "node not allowed", 1 },
};

/* At start an every-rule activator runs at once: the upstream sees EHLO,
 * ETRN cust.test, QUIT; the reply, its meaning and the next hour are in
 * the status; each request has its log line. */
Test(activator, etrn_reply_kept_and_logged)
{
	for (size_t i = 0; i < sizeof(t_reply_cases) / sizeof(t_reply_cases[0]); i++) {
		const struct t_reply_case *tc = &t_reply_cases[i];
		struct config_activator conf;
		struct log_capture cap;
		struct t_status st;
		struct t_node n = { 0 };
		struct t_up u;
		char want[512];

		t_up_start(&u, "220 upstream.test ESMTP\r\n", tc->etrn_reply, 0);
		t_conf(&conf, "isp", u.port, &t_hourly);
		cr_assert_eq(log_capture_start(&cap), 0);
		t_node_start(&n, &conf);
		t_wait_idle(&n, "isp", 1, &st);
		t_node_stop(&n);
		cr_assert_eq(log_capture_stop(&cap, T_CAPTURE_MAX), 0);
		t_up_stop(&u);
		cr_expect_eq(st.runs, 1, "case %zu: %s", i, st.json);
		cr_expect_eq(st.failures, tc->want_failures, "case %zu: %s", i, st.json);
		cr_expect_str_eq(st.reply, tc->want_reply, "case %zu: %s", i, st.json);
		cr_expect(strstr(st.json, tc->want_meaning), "case %zu: %s", i, st.json);
		cr_expect(llabs(st.next - t_next_hour()) <= 1, "case %zu: next %lld: %s", i,
			  st.next, st.json);
		cr_expect_str_eq(u.log, "EHLO " ENGINE_FIXTURE_HOSTNAME "\r\nETRN " T_CUST
				 "\r\nQUIT\r\n", "case %zu", i);
		snprintf(want, sizeof(want), "activator isp: ETRN " T_CUST
			 " to 127.0.0.1[127.0.0.1]:%u: %s (%s)", u.port, tc->want_reply,
			 tc->want_meaning);
		cr_expect(strstr(cap.text, want), "case %zu: no \"%s\" in (%zu):\n%s", i, want, strlen(cap.text), cap.text);
		cr_expect(strstr(cap.text, "; next run 20"), "case %zu: no end line in:\n%s", i,
			  cap.text);
		log_capture_free(&cap);
	}
}

/* Nothing listens: the run fails with the connect's reason, logged with
 * the next run, which is the next scheduled time; the test clock stepped
 * short of it starts nothing, stepped past it starts the second run. */
Test(activator, refused_connect_retried_at_next_scheduled_time)
{
	unsigned short port = loopback_free_port();
	struct config_activator conf;
	struct log_capture cap;
	struct t_status st;
	struct t_node n = { 0 };
	long long next;

	cr_assert_neq(port, 0);
	t_conf(&conf, "dead", port, &t_hourly);
	cr_assert_eq(log_capture_start(&cap), 0);
	t_node_start(&n, &conf);
	t_wait_idle(&n, "dead", 1, &st);
	next = t_next_hour();
	cr_expect_eq(st.failures, 1, "%s", st.json);
	cr_expect(strstr(st.reply, "Connection refused"), "%s", st.json);
	cr_expect(strstr(st.json, "\"meaning\":\"run failed\""), "%s", st.json);
	cr_expect(llabs(st.next - next) <= 1, "next %lld, want %lld", st.next, next);
	t_still_runs(&n, "dead", 1);
	/* Short of the next time by a minute: nothing. */
	now_step_add(((uint64_t)(next - (long long)(now_shifted_us(0) / T_US)) - 60) * T_US);
	t_still_runs(&n, "dead", 1);
	now_step_add(61 * T_US);
	t_wait_idle(&n, "dead", 2, &st);
	cr_expect_eq(st.failures, 2, "%s", st.json);
	t_node_stop(&n);
	cr_assert_eq(log_capture_stop(&cap, T_CAPTURE_MAX), 0);
	cr_expect(strstr(cap.text, "activator dead: run failed: connect to 127.0.0.1[127.0.0.1]:"),
		  "%s", cap.text);
	cr_expect(strstr(cap.text, ": Connection refused; next run 20"), "%s", cap.text);
	log_capture_free(&cap);
}

/* The upstream holds its greeting: the run stays going; activators_run
 * says -EBUSY and the scheduled time passing is skipped (logged), not
 * queued; released, the one run ends and the next is an hour on. */
Test(activator, due_while_running_is_skipped)
{
	struct log_capture cap;
	struct t_status st;
	struct t_node n = { 0 };
	struct t_up u;

	t_slow_start(&n, &u, &cap);
	cr_expect_eq(activators_run(n.a, "slow"), -EBUSY);
	cr_expect_eq(activators_run(n.a, "nosuch"), -ENOENT);
	now_step_add((uint64_t)T_HOUR_S * T_US);
	t_still_runs(&n, "slow", 1);
	atomic_store(&u.hold, 0);
	t_wait_idle(&n, "slow", 1, &st);
	cr_expect_eq(st.failures, 0, "%s", st.json);
	cr_expect(llabs(st.next - t_next_hour()) <= 1, "%s", st.json);
	t_still_runs(&n, "slow", 1);
	cr_expect_eq(activators_run(n.a, "slow"), 0);
	t_wait_idle(&n, "slow", 2, &st);
	t_node_stop(&n);
	cr_assert_eq(log_capture_stop(&cap, T_CAPTURE_MAX), 0);
	t_up_stop(&u);
	cr_expect(strstr(cap.text, "activator slow: skipped (scheduled): the previous run is still going"),
		  "%s", cap.text);
	log_capture_free(&cap);
	cr_expect_eq(atomic_load(&u.conns), 2);
}

/* after-outbound alone: no time of its own (next null); a delivery runs
 * it, another within the gap does not until the gap has passed (then
 * once, for both). */
Test(activator, after_outbound_once_per_gap)
{
	struct config_activator conf;
	struct t_status st;
	struct t_node n = { 0 };
	struct t_up u;

	t_up_start(&u, "220 upstream.test ESMTP\r\n", "251 2.0.0 No messages waiting\r\n", 0);
	t_conf(&conf, "after", u.port, &t_after);
	t_node_start(&n, &conf);
	t_status(&n, "after", &st);
	cr_expect_eq(st.next, -1, "%s", st.json);
	t_still_runs(&n, "after", 0);
	activators_outbound_done(n.a);
	activators_outbound_done(n.a);
	t_wait_idle(&n, "after", 1, &st);
	cr_expect_eq(st.failures, 0, "%s", st.json);
	cr_expect_eq(st.next, -1, "%s", st.json);
	activators_outbound_done(n.a);
	t_still_runs(&n, "after", 1);
	now_step_add(((uint64_t)ACTIVATOR_AFTER_OUTBOUND_GAP_S + 1) * T_US);
	t_wait_idle(&n, "after", 2, &st);
	t_still_runs(&n, "after", 2);
	t_node_stop(&n);
	t_up_stop(&u);
	cr_expect_eq(atomic_load(&u.conns), 2);
	activators_outbound_done(NULL); /* a node without activators */
}

/* A one-shot is listed as "oneshot-N" beside the configured ones, runs
 * once, and is dropped ACTIVATOR_ONESHOT_KEEP_S after it ended; no more
 * than ACTIVATOR_ONESHOT_MAX are listed. */
Test(activator, oneshot_listed_then_dropped)
{
	struct config_activator spec;
	struct t_status st;
	struct t_node n = { 0 };
	struct t_up u;
	char name[CONFIG_ACTIVATOR_NAME_MAX], more[CONFIG_ACTIVATOR_NAME_MAX];
	struct buf b;

	t_up_start(&u, "220 upstream.test ESMTP\r\n", "250 2.0.0 Queuing started\r\n", 0);
	t_node_start(&n, NULL);
	t_conf(&spec, "ignored", u.port, NULL);
	cr_assert_eq(activators_oneshot(n.a, &spec, name, sizeof(name)), 0);
	cr_expect_str_eq(name, "oneshot-1");
	t_wait_idle(&n, name, 1, &st);
	cr_expect(strstr(st.json, "\"oneshot\":true"), "%s", st.json);
	cr_expect(strstr(st.json, "\"code\":250"), "%s", st.json);
	cr_expect_eq(st.next, -1, "%s", st.json);
	buf_init(&b, 0);
	cr_expect_eq(activators_status(n.a, NULL, &b, 0), 0);
	cr_expect(b.len && !strncmp(b.data, "oneshot-1 method=etrn host=127.0.0.1:", 37), "%.*s",
		  (int)b.len, b.data);
	cr_expect(strstr(b.data, " request=" T_CUST " schedule=\"one-shot\" state=idle runs=1 failures=0 last=20"),
		  "%.*s", (int)b.len, b.data);
	buf_free(&b);
	/* Up to the limit, counting the one kept. */
	for (unsigned i = 1; i < ACTIVATOR_ONESHOT_MAX; i++)
		cr_assert_eq(activators_oneshot(n.a, &spec, more, sizeof(more)), 0);
	cr_expect_eq(activators_oneshot(n.a, &spec, more, sizeof(more)), -ENOSPC);
	for (unsigned i = 2; i <= ACTIVATOR_ONESHOT_MAX; i++) {
		snprintf(more, sizeof(more), "oneshot-%u", i);
		t_wait_idle(&n, more, 1, &st);
	}
	now_step_add(((uint64_t)ACTIVATOR_ONESHOT_KEEP_S + 1) * T_US);
	for (uint64_t end = now_mono_ms() + T_WAIT_MS; t_status(&n, name, &st), st.found;
	     t_nap())
		cr_assert_lt(now_mono_ms(), end, "oneshot-1 still listed");
	cr_expect_eq(activators_oneshot(n.a, &spec, more, sizeof(more)), 0);
	cr_expect_str_eq(more, "oneshot-9");
	t_wait_idle(&n, more, 1, &st);
	t_node_stop(&n);
	t_up_stop(&u);
	cr_expect_eq(atomic_load(&u.conns), ACTIVATOR_ONESHOT_MAX + 1);
}

/* Before attach and after the loop has stopped: -ESHUTDOWN; unknown
 * names: -ENOENT; an empty registry lists nothing. */
Test(activator, requests_refused_when_not_running)
{
	struct config cfg;
	struct config_activator spec;
	struct activators *a;
	struct buf b;
	char name[CONFIG_ACTIVATOR_NAME_MAX];

	config_defaults(&cfg);
	a = activators_new(&cfg);
	cr_assert_not_null(a);
	t_conf(&spec, "x", 25, NULL);
	cr_expect_eq(activators_oneshot(a, &spec, name, sizeof(name)), -ESHUTDOWN);
	cr_expect_eq(activators_run(a, "x"), -ENOENT);
	buf_init(&b, 0);
	cr_expect_eq(activators_status(a, NULL, &b, 1), 0);
	cr_expect(b.len == 3 && !memcmp(b.data, "[]\n", 3), "%.*s", (int)b.len, b.data);
	cr_expect_eq(activators_status(a, "x", &b, 0), -ENOENT);
	buf_free(&b);
	activators_free(a);
	config_free(&cfg);
}

/* ATRN (RFC 2645): AUTH, ATRN, the 250 logged with its meaning; the
 * connection turns around and the smtpd serves the upstream's message
 * through the normal receive path; status says received=1 and the end
 * line names the session's end (QUIT). */
Test(activator, atrn_reversed_session_received)
{
	struct config_activator conf;
	struct log_capture cap;
	struct t_status st;
	struct t_node n = { .with_smtpd = 1 };
	struct t_up u;
	char want[256];

	t_up_start(&u, "220 upstream.test ESMTP\r\n", NULL, 1);
	t_conf(&conf, "odmr", u.port, &t_hourly);
	conf.method = CONFIG_ACTIVATOR_ATRN;
	snprintf(conf.user, sizeof(conf.user), "node1");
	snprintf(conf.password, sizeof(conf.password), "secret");
	cr_assert_eq(log_capture_start(&cap), 0);
	t_node_start(&n, &conf);
	t_wait_idle(&n, "odmr", 1, &st);
	cr_expect_eq(engine_fixture_wait_records(&n.f, 1, T_WAIT_MS), 0);
	t_node_stop(&n);
	cr_assert_eq(log_capture_stop(&cap, T_CAPTURE_MAX), 0);
	t_up_stop(&u);
	cr_expect_eq(st.failures, 0, "%s", st.json);
	cr_expect(strstr(st.json, "\"received\":1"), "%s", st.json);
	cr_expect(strstr(st.json, "\"code\":250"), "%s", st.json);
	cr_expect(strstr(u.log, "ATRN " T_CUST "\r\n220 "), "%s", u.log);
	cr_expect(strstr(u.log, "\r\n221 "), "%s", u.log);
	snprintf(want, sizeof(want), "activator odmr: ATRN " T_CUST
		 " to 127.0.0.1[127.0.0.1]:%u: 250 2.0.0 OK now reversing the connection (reversing the connection)",
		 u.port);
	cr_expect(strstr(cap.text, want), "no \"%s\" in:\n%s", want, cap.text);
	cr_expect(strstr(cap.text, "activator odmr: reversed session ended: 1 message(s) received (QUIT); next run 20"),
		  "%s", cap.text);
	log_capture_free(&cap);
}

/* The engine stops while a run waits for the upstream's greeting: the
 * stop hook aborts it (logged), the loop still ends well before the
 * greeting could come, and the run is freed (ASan would tell). */
Test(activator, stop_aborts_a_run)
{
	struct log_capture cap;
	struct t_status st;
	struct t_node n = { 0 };
	struct t_up u;
	uint64_t t0;

	t_slow_start(&n, &u, &cap);
	t0 = now_mono_ms();
	engine_fixture_stop(&n.f);
	cr_expect_lt(now_mono_ms() - t0, (uint64_t)T_STILL_MS, "the stop waited for the upstream");
	t_status(&n, "slow", &st);
	t_node_stop(&n);
	cr_assert_eq(log_capture_stop(&cap, T_CAPTURE_MAX), 0);
	t_up_stop(&u);
	cr_expect_str_eq(st.state, "idle", "%s", st.json);
	cr_expect_eq(st.failures, 1, "%s", st.json);
	cr_expect(strstr(cap.text, "activator slow: run aborted: etrnd is stopping"), "%s", cap.text);
	cr_expect(strstr(cap.text, "activator slow: run failed: etrnd is shutting down"), "%s",
		  cap.text);
	log_capture_free(&cap);
}

/* A name goes through the process's resolver (A/AAAA of the host, never
 * MX; tests/unit/dns_stub.h on loopback): up.test has 127.0.0.2 (nothing
 * listens there) and 127.0.0.1 (the upstream): whichever comes first, the
 * run reaches the upstream once, an address that refused is named in the
 * log; nx.test does not exist: the run fails with the look-up's reason. */
static const struct dns_stub_rr t_zone[] = {
	{ "up.test", DNS_STUB_A, "127.0.0.2", 0 },
	{ "up.test", DNS_STUB_A, "127.0.0.1", 0 },
	{ "up.test", DNS_STUB_MX, "elsewhere.test", 10 },
};

Test(activator, names_resolved_each_address_tried)
{
	struct config_activator conf[2];
	struct log_capture cap;
	struct t_status st;
	struct t_node n = { 0 };
	struct t_up u;
	struct dns_stub *dns = dns_stub_start(t_zone, sizeof(t_zone) / sizeof(t_zone[0]));
	char want[256];

	cr_assert_not_null(dns);
	t_up_start(&u, "220 upstream.test ESMTP\r\n", "253 2.0.0 OK\r\n", 0);
	t_conf(&conf[0], "named", u.port, &t_hourly);
	snprintf(conf[0].host, sizeof(conf[0].host), "up.test");
	t_conf(&conf[1], "nx", u.port, &t_hourly);
	snprintf(conf[1].host, sizeof(conf[1].host), "nx.test");
	cr_assert_eq(log_capture_start(&cap), 0);
	t_node_start_n(&n, conf, 2, dns_stub_port(dns));
	t_wait_idle(&n, "named", 1, &st);
	cr_expect_eq(st.failures, 0, "%s", st.json);
	cr_expect_str_eq(st.reply, "253 2.0.0 OK", "%s", st.json);
	t_wait_idle(&n, "nx", 1, &st);
	cr_expect_eq(st.failures, 1, "%s", st.json);
	cr_expect(strstr(st.reply, "nx.test"), "%s", st.json);
	t_node_stop(&n);
	cr_assert_eq(log_capture_stop(&cap, T_CAPTURE_MAX), 0);
	t_up_stop(&u);
	dns_stub_stop(dns);
	cr_expect_eq(atomic_load(&u.conns), 1);
	snprintf(want, sizeof(want), "activator named: ETRN " T_CUST
		 " to up.test[127.0.0.1]:%u: 253 2.0.0 OK", u.port);
	cr_expect(strstr(cap.text, want), "no \"%s\" in:\n%s", want, cap.text);
	snprintf(want, sizeof(want), "activator named: connect to up.test[127.0.0.2]:%u: "
		 "Connection refused; trying the next address", u.port);
	cr_expect(strstr(cap.text, want) || !strstr(cap.text, "trying the next address"),
		  "%s", cap.text);
	cr_expect(strstr(cap.text, "activator nx: run failed: "), "%s", cap.text);
	cr_expect_null(strstr(cap.text, "elsewhere.test"), "an MX was followed:\n%s", cap.text);
	log_capture_free(&cap);
}
