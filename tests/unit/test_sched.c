/* SPDX-License-Identifier: MIT */
/*
 * test_sched: the outbound scheduler (proto/sched.h). Its pure rules (the
 * back-off, the restart spread) from tables; then a real engine thread
 * (tests/unit/engine_fixture) with its scheduler, delivering through
 * relayhost "[127.0.0.1]:port" to a real loopback SMTP sink: delivered at
 * once, deferred on 451 with the next attempt at now + minimal_backoff and
 * delivered after a test clock step, a refused port marking the address dead,
 * a held domain left alone, a retry now, and a deferral that survives a
 * restart.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#include "dns_stub.h"
#include "engine_fixture.h"
#include "loopback.h"
#include "core/now.h"
#include "proto/sched.h"
#include "store/spool_index.h"

#define T_TIMEOUT_S 30               /* per test, Criterion's */
#define S (1000000ull)               /* a second in µs */
#define T_MIN_BACKOFF_MS (300u * 1000)
#define T_MAX_BACKOFF_MS (4000u * 1000)
#define T_LINE_MAX 1024
#define T_RCPT_LOG 4096
#define T_BODY_MAX 16384
#define T_CONNS_MAX 16
#define T_POLL_MS 50
#define T_SINK_IO_MS 10000
#define T_SLACK_US (5 * S)           /* scheduling slack around "now" */

/* ---- pure rules --------------------------------------------------------- */

struct t_backoff {
	uint64_t now, arrival, want;
};

/* A message that arrived at 0 and is tried whenever its next attempt comes:
 * the gaps double from minimal_backoff to maximal_backoff. */
static const struct t_backoff t_backoffs[] = {
	{ 0, 0, 300 * S },               /* first failure: the minimum */
	{ 300 * S, 0, 600 * S },         /* gap 300 (age 300) */
	{ 600 * S, 0, 1200 * S },        /* gap 600 */
	{ 1200 * S, 0, 2400 * S },       /* gap 1200 */
	{ 2400 * S, 0, 4800 * S },       /* gap 2400 */
	{ 4800 * S, 0, 8800 * S },       /* gap capped at 4000 */
	{ 8800 * S, 0, 12800 * S },      /* and stays there */
	{ 100 * S, 200 * S, 400 * S },   /* arrival after now (clock skew): minimum */
	{ 1000 * S, 900 * S, 1300 * S }, /* age 100: still the minimum */
};

Test(sched, backoff_doubles_to_cap)
{
	for (size_t i = 0; i < sizeof(t_backoffs) / sizeof(t_backoffs[0]); i++) {
		const struct t_backoff *c = &t_backoffs[i];
		uint64_t got = sched_next_attempt(c->now, c->arrival, 300 * S, 4000 * S);

		cr_expect_eq(got, c->want, "case %zu: %llu, want %llu", i,
			     (unsigned long long)got, (unsigned long long)c->want);
	}
}

struct t_slot {
	uint64_t start, spread, rank, n, want;
};

static const struct t_slot t_slots[] = {
	{ 1000, 60 * S, 0, 4, 1000 },
	{ 1000, 60 * S, 1, 4, 1000 + 15 * S },
	{ 1000, 60 * S, 2, 4, 1000 + 30 * S },
	{ 1000, 60 * S, 3, 4, 1000 + 45 * S },
	{ 1000, 60 * S, 9, 4, 1000 + 45 * S },   /* past the end: the last slot */
	{ 1000, 60 * S, 0, 0, 1000 },            /* nothing to spread */
	{ 1000, 0, 5, 10, 1000 },                /* no spread: all at once */
	{ 0, 7, 1, 3, 2 },                       /* integer steps: 0, 2, 4 */
	{ 0, 7, 2, 3, 4 },
	/* No overflow: a year of spread over a billion entries. */
	{ 0, 365ull * 86400 * S, 999999999, 1000000000, 365ull * 86400 * S - 31536 },
};

Test(sched, restart_slots_even_and_bounded)
{
	for (size_t i = 0; i < sizeof(t_slots) / sizeof(t_slots[0]); i++) {
		const struct t_slot *c = &t_slots[i];
		uint64_t got = sched_restart_slot(c->start, c->spread, c->rank, c->n);

		cr_expect_eq(got, c->want, "case %zu: %llu, want %llu", i,
			     (unsigned long long)got, (unsigned long long)c->want);
		cr_expect_leq(got, c->start + c->spread, "case %zu: past the spread", i);
	}
}

/* Evenly: n slots over the spread, each gap spread / n (within one µs). */
Test(sched, restart_slots_evenly_spaced)
{
	const uint64_t n = 1000, spread = 60 * S;
	uint64_t prev = sched_restart_slot(0, spread, 0, n);

	for (uint64_t r = 1; r < n; r++) {
		uint64_t at = sched_restart_slot(0, spread, r, n);

		cr_assert_geq(at - prev, spread / n - 1, "rank %llu", (unsigned long long)r);
		cr_assert_leq(at - prev, spread / n + 1, "rank %llu", (unsigned long long)r);
		prev = at;
	}
	cr_assert_lt(prev, spread);
}

/* ---- a loopback SMTP sink -------------------------------------------------- */

struct t_sink {
	int lfd;
	unsigned short port;
	pthread_t thread;
	atomic_int stop;
	pthread_mutex_t mu;
	unsigned fail_first;           /* the first N final dots get 451 */
	unsigned dots, delivered, conns;
	pthread_t conn_th[T_CONNS_MAX];
	char rcpts[T_RCPT_LOG];        /* delivered recipients, one a line */
	char senders[T_RCPT_LOG];      /* their MAIL FROM, one a message */
	char body[T_BODY_MAX];         /* the last delivered message's */
};

/* One transaction as the sink sees it. */
struct t_tx {
	char from[T_LINE_MAX];
	char rcpts[T_RCPT_LOG];
	char body[T_BODY_MAX];
};

struct t_conn {
	struct t_sink *s;
	int fd;
};

static void t_send(int fd, const char *p)
{
	size_t n = strlen(p);

	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* Append text and a newline to buf (size bytes) when both fit. */
static void t_append(char *buf, size_t size, const char *text)
{
	size_t have = strlen(buf), n = strlen(text);

	if (have + n + 2 > size)
		return;
	memcpy(buf + have, text, n);
	buf[have + n] = '\n';
	buf[have + n + 1] = '\0';
}

/* One line (without CRLF) into line; 0 at EOF, time-out or stop. */
static int t_line(struct t_sink *s, int fd, char *line, size_t max)
{
	size_t n = 0;
	int waited = 0;

	while (n + 1 < max) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char c;

		if (atomic_load(&s->stop) || waited > T_SINK_IO_MS)
			return 0;
		if (poll(&p, 1, T_POLL_MS) == 0) {
			waited += T_POLL_MS;
			continue;
		}
		if (recv(fd, &c, 1, 0) != 1)
			return 0;
		if (c == '\n') {
			if (n && line[n - 1] == '\r')
				n--;
			line[n] = '\0';
			return 1;
		}
		line[n++] = c;
	}
	line[n] = '\0';
	return 1;
}

/* The end of DATA: 451 for the first fail_first, else 250 and the
 * transaction's recipients are logged as delivered. */
static void t_dot(struct t_sink *s, int fd, const struct t_tx *tx)
{
	int fail;

	pthread_mutex_lock(&s->mu);
	fail = ++s->dots <= s->fail_first;
	if (!fail) {
		s->delivered++;
		if (strlen(s->rcpts) + strlen(tx->rcpts) < sizeof(s->rcpts))
			strcat(s->rcpts, tx->rcpts);
		t_append(s->senders, sizeof(s->senders), tx->from);
		snprintf(s->body, sizeof(s->body), "%s", tx->body);
	}
	pthread_mutex_unlock(&s->mu);
	t_send(fd, fail ? "451 4.3.0 try again later\r\n" : "250 2.0.0 ok\r\n");
}

/* A command line outside DATA: the reply, and the transaction's record. */
static const char *t_command(const char *line, struct t_tx *tx, int *data, int *quit)
{
	if (!strncasecmp(line, "EHLO", 4) || !strncasecmp(line, "HELO", 4))
		return "250 sink.test\r\n";
	if (!strncasecmp(line, "MAIL FROM:", 10)) {
		memset(tx, 0, sizeof(*tx));
		snprintf(tx->from, sizeof(tx->from), "%s", line + 10);
		return "250 2.0.0 ok\r\n";
	}
	if (!strncasecmp(line, "RCPT TO:", 8)) {
		t_append(tx->rcpts, sizeof(tx->rcpts), line + 8);
		return "250 2.1.5 ok\r\n";
	}
	if (!strncasecmp(line, "DATA", 4)) {
		*data = 1;
		return "354 go ahead\r\n";
	}
	if (!strncasecmp(line, "RSET", 4)) {
		memset(tx, 0, sizeof(*tx));
		return "250 2.0.0 ok\r\n";
	}
	if (!strncasecmp(line, "QUIT", 4)) {
		*quit = 1;
		return "221 2.0.0 bye\r\n";
	}
	return "502 5.5.2 unknown\r\n";
}

static void *t_conn_main(void *arg)
{
	struct t_conn *c = arg;
	struct t_tx *tx = calloc(1, sizeof(*tx));
	char line[T_LINE_MAX];
	int data = 0, quit = 0;

	cr_assert_not_null(tx);
	t_send(c->fd, "220 sink.test ESMTP\r\n");
	while (!quit && t_line(c->s, c->fd, line, sizeof(line))) {
		if (!data) {
			t_send(c->fd, t_command(line, tx, &data, &quit));
		} else if (!strcmp(line, ".")) {
			data = 0;
			t_dot(c->s, c->fd, tx);
		} else {
			t_append(tx->body, sizeof(tx->body), line);
		}
	}
	free(tx);
	close(c->fd);
	free(c);
	return NULL;
}

static void *t_sink_main(void *arg)
{
	struct t_sink *s = arg;

	while (!atomic_load(&s->stop)) {
		struct pollfd p = { .fd = s->lfd, .events = POLLIN };
		struct t_conn *c;
		int fd;

		if (poll(&p, 1, T_POLL_MS) <= 0)
			continue;
		fd = accept(s->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		pthread_mutex_lock(&s->mu);
		if (s->conns == T_CONNS_MAX || !(c = malloc(sizeof(*c)))) {
			pthread_mutex_unlock(&s->mu);
			close(fd);
			continue;
		}
		c->s = s;
		c->fd = fd;
		if (pthread_create(&s->conn_th[s->conns], NULL, t_conn_main, c) == 0)
			s->conns++;
		else
			free(c), close(fd);
		pthread_mutex_unlock(&s->mu);
	}
	return NULL;
}

/* A listening socket on 127.0.0.1:port exactly. */
static int t_listen_on(unsigned short port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 16)) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* A sink on a free port (port 0) or on port. */
static void t_sink_start_on(struct t_sink *s, unsigned fail_first, unsigned short port)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	s->fail_first = fail_first;
	s->port = port;
	s->lfd = port ? t_listen_on(port) : loopback_listen(16, &s->port);
	cr_assert_geq(s->lfd, 0, "listen: %s", strerror(-s->lfd));
	cr_assert_eq(pthread_create(&s->thread, NULL, t_sink_main, s), 0);
}

static void t_sink_start(struct t_sink *s, unsigned fail_first)
{
	t_sink_start_on(s, fail_first, 0);
}

static void t_sink_stop(struct t_sink *s)
{
	atomic_store(&s->stop, 1);
	pthread_join(s->thread, NULL);
	for (unsigned i = 0; i < s->conns; i++)
		pthread_join(s->conn_th[i], NULL);
	close(s->lfd);
	pthread_mutex_destroy(&s->mu);
}

static unsigned t_sink_count(struct t_sink *s, unsigned *dots)
{
	unsigned n;

	pthread_mutex_lock(&s->mu);
	n = s->delivered;
	if (dots)
		*dots = s->dots;
	pthread_mutex_unlock(&s->mu);
	return n;
}

/* ---- the engine ------------------------------------------------------------- */

#define T_SENDER "alice@sender.test"
#define T_BODY "Subject: out\r\n\r\nto a foreign domain\r\n"
#define T_FOREIGN "bob@foreign.test"
#define T_HELD "carol@held.test"

static const char *const t_rcpt_foreign[] = { T_FOREIGN };

/* held.test has a row in mode hold; foreign.test has none (scheduled). */
static struct domtab *t_table(void)
{
	struct domtab_builder *b = domtab_builder_new();
	struct domtab_row held = { .name = "held.test", .mode = DOMTAB_MODE_HOLD };
	struct domtab *t;

	cr_assert_not_null(b);
	cr_assert_eq(domtab_builder_put(b, &held), 0);
	t = domtab_build(b);
	domtab_builder_free(b);
	cr_assert_not_null(t);
	return t;
}

/* An engine with its scheduler, relayhost "[127.0.0.1]:port". */
static void t_engine(struct engine_fixture *f, unsigned short port)
{
	cr_assert_eq(engine_fixture_init(f, t_table()), 0);
	snprintf(f->cfg.relayhost, sizeof(f->cfg.relayhost), "[127.0.0.1]:%u", port);
	f->cfg.minimal_backoff_ms = T_MIN_BACKOFF_MS;
	f->cfg.maximal_backoff_ms = T_MAX_BACKOFF_MS;
	f->cfg.queue_restart_spread_ms = 0;
	f->with_sched = 1;
	cr_assert_eq(engine_fixture_start(f), 0, "%s", f->err);
}

static uint64_t t_now(void)
{
	return now_shifted_us(0); /* the scheduler's clock, clock_offset 0 */
}

static int t_finished(struct engine_fixture *f, void *arg)
{
	struct spool_index_entry e;

	return spool_index_msg_find(spool_shard_index(f->sh), *(uint64_t *)arg, &e) != 0;
}

/* A message's entry in its domain's queue, as the index has it. */
struct t_entry {
	const char *dom;
	uint64_t msgid;
	int found;
	uint64_t next_us;
	int busy;
};

static void t_entry_get(struct engine_fixture *f, struct t_entry *te)
{
	struct spool_index_entry e;

	te->found = spool_index_msg_entry(spool_shard_index(f->sh), te->msgid, te->dom,
					  strlen(te->dom), &e) == 0;
	te->next_us = te->found ? e.next_us : 0;
	te->busy = te->found ? e.busy : 0;
}

/* Deferred: pending, no job has it, a next attempt set, and the scheduler
 * idle (its deferral logged and its job ended). */
static int t_deferred(struct engine_fixture *f, void *arg)
{
	struct t_entry *te = arg;

	t_entry_get(f, te);
	return te->found && !te->busy && te->next_us != 0 && !sched_busy(f->sched);
}

struct t_status {
	struct sched_status_dest d[4];
	size_t n;
};

static void t_status_run(void *arg)
{
	struct engine_fixture *f = ((void **)arg)[0];
	struct t_status *st = ((void **)arg)[1];

	st->n = sched_status_copy(f->sched, st->d, 4);
}

static void t_status(struct engine_fixture *f, struct t_status *st)
{
	void *a[2] = { f, st };

	cr_assert_eq(engine_fixture_call(f, t_status_run, a, ENGINE_FIXTURE_WAIT_MS), 0);
}

/* A message to a foreign domain goes out at once through relayhost. */
Test(sched, foreign_delivered_through_relayhost, .timeout = T_TIMEOUT_S)
{
	struct engine_fixture f;
	struct t_sink s;
	uint64_t id;

	t_sink_start(&s, 0);
	t_engine(&f, s.port);
	id = engine_fixture_append(&f, T_SENDER, t_rcpt_foreign, 1, T_BODY);
	cr_assert_neq(id, 0);
	cr_assert_eq(engine_fixture_wait(&f, t_finished, &id, ENGINE_FIXTURE_WAIT_MS), 0,
		     "not delivered");
	cr_expect_eq(t_sink_count(&s, NULL), 1);
	cr_expect(strstr(s.rcpts, "<" T_FOREIGN ">") != NULL, "sink got: %s", s.rcpts);
	engine_fixture_fini(&f);
	t_sink_stop(&s);
}

/* 451: deferred with the next attempt at now + minimal_backoff (written as
 * a SCHED record); a clock step past it delivers it, with no sleep. */
Test(sched, deferred_on_451_then_clock_step_delivers, .timeout = T_TIMEOUT_S)
{
	struct engine_fixture f;
	struct t_sink s;
	struct t_entry te = { .dom = "foreign.test" };
	struct t_status st;
	uint64_t before, after;
	unsigned dots;

	t_sink_start(&s, 1);
	t_engine(&f, s.port);
	before = t_now();
	te.msgid = engine_fixture_append(&f, T_SENDER, t_rcpt_foreign, 1, T_BODY);
	cr_assert_neq(te.msgid, 0);
	cr_assert_eq(engine_fixture_wait(&f, t_deferred, &te, ENGINE_FIXTURE_WAIT_MS), 0,
		     "not deferred");
	after = t_now();
	cr_expect_eq(t_sink_count(&s, &dots), 0);
	cr_expect_eq(dots, 1, "one attempt, got %u", dots);
	cr_expect_geq(te.next_us, before + 300 * S);
	cr_expect_leq(te.next_us, after + 300 * S);
	t_status(&f, &st);
	cr_assert_eq(st.n, 1);
	cr_expect_str_eq(st.d[0].dom, "foreign.test");
	cr_expect_eq(st.d[0].msgs, 1);
	cr_expect_eq(st.d[0].next_us, te.next_us);
	cr_expect_geq(st.d[0].deferrals, 1);
	cr_expect(strstr(st.d[0].relay, "127.0.0.1") != NULL, "relay %s", st.d[0].relay);
	/* Not due yet: nothing moves for a few turns. */
	cr_expect_neq(engine_fixture_wait(&f, t_finished, &te.msgid, 300), 0);
	now_step_add(301 * S);
	cr_assert_eq(engine_fixture_wait(&f, t_finished, &te.msgid, ENGINE_FIXTURE_WAIT_MS), 0,
		     "not delivered after the step");
	cr_expect_eq(t_sink_count(&s, &dots), 1);
	cr_expect_eq(dots, 2);
	engine_fixture_fini(&f);
	t_sink_stop(&s);
}

/* Nothing listens: the address is dead, the mail deferred without a
 * second connection, the status says why. */
Test(sched, refused_port_dead_and_deferred, .timeout = T_TIMEOUT_S)
{
	struct engine_fixture f;
	struct t_entry te = { .dom = "foreign.test" };
	struct t_status st;
	unsigned short port = loopback_free_port();
	uint64_t before, after;

	cr_assert_neq(port, 0);
	t_engine(&f, port);
	before = t_now();
	te.msgid = engine_fixture_append(&f, T_SENDER, t_rcpt_foreign, 1, T_BODY);
	cr_assert_eq(engine_fixture_wait(&f, t_deferred, &te, ENGINE_FIXTURE_WAIT_MS), 0,
		     "not deferred");
	after = t_now();
	cr_expect_geq(te.next_us, before + 300 * S);
	cr_expect_leq(te.next_us, after + 300 * S);
	t_status(&f, &st);
	cr_assert_eq(st.n, 1);
	cr_expect(strstr(st.d[0].why, "is dead") != NULL, "why: %s", st.d[0].why);
	engine_fixture_fini(&f);
}

static void t_retry_run(void *arg)
{
	struct engine_fixture *f = arg;

	sched_retry(f->sched, "foreign.test", strlen("foreign.test"));
}

/* Retry now (ETRN or flush of a deliver domain): the deferred message goes
 * at once, without a clock step. */
Test(sched, retry_now_after_451, .timeout = T_TIMEOUT_S)
{
	struct engine_fixture f;
	struct t_sink s;
	struct t_entry te = { .dom = "foreign.test" };

	t_sink_start(&s, 1);
	t_engine(&f, s.port);
	te.msgid = engine_fixture_append(&f, T_SENDER, t_rcpt_foreign, 1, T_BODY);
	cr_assert_eq(engine_fixture_wait(&f, t_deferred, &te, ENGINE_FIXTURE_WAIT_MS), 0);
	cr_assert_eq(engine_fixture_call(&f, t_retry_run, &f, ENGINE_FIXTURE_WAIT_MS), 0);
	cr_assert_eq(engine_fixture_wait(&f, t_finished, &te.msgid, ENGINE_FIXTURE_WAIT_MS), 0,
		     "retry now did not deliver");
	cr_expect_eq(t_sink_count(&s, NULL), 1);
	engine_fixture_fini(&f);
	t_sink_stop(&s);
}

/* The dead-destination cache: once the address refused, a second message
 * is deferred without a connection even though a server now listens
 * there; retry now forgets the dead address and both go out. */
Test(sched, dead_address_skipped_until_retry, .timeout = T_TIMEOUT_S)
{
	struct engine_fixture f;
	struct t_sink s;
	struct t_entry t1 = { .dom = "foreign.test" }, t2 = { .dom = "foreign.test" };
	struct t_status st;
	unsigned short port = loopback_free_port();

	cr_assert_neq(port, 0);
	t_engine(&f, port);
	t1.msgid = engine_fixture_append(&f, T_SENDER, t_rcpt_foreign, 1, T_BODY);
	cr_assert_eq(engine_fixture_wait(&f, t_deferred, &t1, ENGINE_FIXTURE_WAIT_MS), 0);
	t_sink_start_on(&s, 0, port);
	t2.msgid = engine_fixture_append(&f, T_SENDER, t_rcpt_foreign, 1, T_BODY);
	cr_assert_eq(engine_fixture_wait(&f, t_deferred, &t2, ENGINE_FIXTURE_WAIT_MS), 0);
	pthread_mutex_lock(&s.mu);
	cr_expect_eq(s.conns, 0, "connected to a dead address");
	pthread_mutex_unlock(&s.mu);
	t_status(&f, &st);
	cr_assert_eq(st.n, 1);
	cr_expect_eq(st.d[0].msgs, 2);
	cr_expect_eq(st.d[0].deferrals, 2);
	cr_expect(strstr(st.d[0].why, "is dead") != NULL, "why: %s", st.d[0].why);
	cr_assert_eq(engine_fixture_call(&f, t_retry_run, &f, ENGINE_FIXTURE_WAIT_MS), 0);
	cr_assert_eq(engine_fixture_wait(&f, t_finished, &t1.msgid, ENGINE_FIXTURE_WAIT_MS), 0);
	cr_assert_eq(engine_fixture_wait(&f, t_finished, &t2.msgid, ENGINE_FIXTURE_WAIT_MS), 0);
	cr_expect_eq(t_sink_count(&s, NULL), 2);
	engine_fixture_fini(&f);
	t_sink_stop(&s);
}

/* The foreign recipients' entry has left its queue, and no job runs. */
static int t_left(struct engine_fixture *f, void *arg)
{
	struct t_entry *te = arg;

	t_entry_get(f, te);
	return !te->found && !sched_busy(f->sched);
}

static void t_entry_run(void *arg)
{
	struct engine_fixture *f = ((void **)arg)[0];

	t_entry_get(f, ((void **)arg)[1]);
}

/* A held domain (row mode hold) is never the scheduler's: its recipient
 * stays, untouched, while the foreign one of the same message goes out. */
Test(sched, held_domain_left_alone, .timeout = T_TIMEOUT_S)
{
	static const char *const both[] = { T_HELD, T_FOREIGN };
	struct engine_fixture f;
	struct t_sink s;
	struct t_entry th = { .dom = "held.test" }, tf = { .dom = "foreign.test" };
	struct t_status st;
	void *a[2] = { &f, &th };

	t_sink_start(&s, 0);
	t_engine(&f, s.port);
	th.msgid = tf.msgid = engine_fixture_append(&f, T_SENDER, both, 2, T_BODY);
	cr_assert_neq(th.msgid, 0);
	cr_assert_eq(engine_fixture_wait(&f, t_left, &tf, ENGINE_FIXTURE_WAIT_MS), 0,
		     "the foreign recipient was not delivered");
	cr_assert_eq(engine_fixture_call(&f, t_entry_run, a, ENGINE_FIXTURE_WAIT_MS), 0);
	cr_expect(th.found, "the held recipient left its queue");
	cr_expect_eq(th.next_us, 0);
	cr_expect_eq(th.busy, 0);
	cr_expect_eq(t_sink_count(&s, NULL), 1);
	cr_expect(strstr(s.rcpts, T_FOREIGN) != NULL, "sink got: %s", s.rcpts);
	cr_expect(strstr(s.rcpts, T_HELD) == NULL, "held recipient sent: %s", s.rcpts);
	t_status(&f, &st);
	cr_expect_eq(st.n, 0, "held or delivered domains are not in the deferred queue");
	engine_fixture_fini(&f);
	t_sink_stop(&s);
}

/* A deferral survives a restart (its SCHED record): the next attempt is
 * the same after recovery, and a clock step past it still delivers. */
Test(sched, deferral_survives_restart, .timeout = T_TIMEOUT_S)
{
	struct engine_fixture f;
	struct t_sink s;
	struct t_entry te = { .dom = "foreign.test" };
	void *a[2] = { &f, &te };
	uint64_t next;

	t_sink_start(&s, 1);
	t_engine(&f, s.port);
	te.msgid = engine_fixture_append(&f, T_SENDER, t_rcpt_foreign, 1, T_BODY);
	cr_assert_eq(engine_fixture_wait(&f, t_deferred, &te, ENGINE_FIXTURE_WAIT_MS), 0);
	next = te.next_us;
	engine_fixture_stop(&f);
	cr_assert_eq(engine_fixture_start(&f), 0, "%s", f.err);
	cr_assert_eq(engine_fixture_call(&f, t_entry_run, a, ENGINE_FIXTURE_WAIT_MS), 0);
	cr_assert(te.found, "lost in the restart");
	cr_expect_eq(te.next_us, next, "next attempt %llu, want %llu",
		     (unsigned long long)te.next_us, (unsigned long long)next);
	cr_expect_neq(engine_fixture_wait(&f, t_finished, &te.msgid, 300), 0,
		      "tried before its time after the restart");
	now_step_add(301 * S);
	cr_assert_eq(engine_fixture_wait(&f, t_finished, &te.msgid, ENGINE_FIXTURE_WAIT_MS), 0);
	cr_expect_eq(t_sink_count(&s, NULL), 1);
	engine_fixture_fini(&f);
	t_sink_stop(&s);
}

#define T_SPREAD_MSGS 4
#define T_SPREAD_MS (60u * 1000)

struct t_spread {
	uint64_t ids[T_SPREAD_MSGS];
	uint64_t next[T_SPREAD_MSGS];
};

static void t_spread_run(void *arg)
{
	struct engine_fixture *f = ((void **)arg)[0];
	struct t_spread *sp = ((void **)arg)[1];

	for (int i = 0; i < T_SPREAD_MSGS; i++) {
		struct t_entry te = { .dom = "foreign.test", .msgid = sp->ids[i] };

		t_entry_get(f, &te);
		sp->next[i] = te.found ? te.next_us : UINT64_MAX;
	}
}

/* Mail never tried before a restart is spread over queue_restart_spread:
 * the first at start (delivered), the others spread / n apart. */
Test(sched, restart_spreads_what_fell_due, .timeout = T_TIMEOUT_S)
{
	struct engine_fixture f;
	struct t_sink s;
	struct t_spread sp;
	void *a[2] = { &f, &sp };

	t_sink_start(&s, 0);
	cr_assert_eq(engine_fixture_init(&f, t_table()), 0);
	snprintf(f.cfg.relayhost, sizeof(f.cfg.relayhost), "[127.0.0.1]:%u", s.port);
	f.cfg.queue_restart_spread_ms = T_SPREAD_MS;
	cr_assert_eq(engine_fixture_start(&f), 0, "%s", f.err); /* no scheduler yet */
	for (int i = 0; i < T_SPREAD_MSGS; i++)
		cr_assert_neq(sp.ids[i] = engine_fixture_append(&f, T_SENDER, t_rcpt_foreign, 1,
								 T_BODY), 0);
	engine_fixture_stop(&f);
	f.with_sched = 1;
	cr_assert_eq(engine_fixture_start(&f), 0, "%s", f.err);
	cr_assert_eq(engine_fixture_call(&f, t_spread_run, a, ENGINE_FIXTURE_WAIT_MS), 0);
	cr_assert_eq(engine_fixture_wait(&f, t_finished, &sp.ids[0], ENGINE_FIXTURE_WAIT_MS), 0,
		     "the first slot is at start");
	cr_assert_eq(engine_fixture_call(&f, t_spread_run, a, ENGINE_FIXTURE_WAIT_MS), 0);
	for (int i = 2; i < T_SPREAD_MSGS; i++)
		cr_expect_eq(sp.next[i] - sp.next[i - 1], T_SPREAD_MS * 1000ull / T_SPREAD_MSGS,
			     "slot %d", i);
	cr_expect_eq(t_sink_count(&s, NULL), 1, "a storm: more than the first went at once");
	now_step_add(T_SPREAD_MS * 1000ull);
	for (int i = 1; i < T_SPREAD_MSGS; i++)
		cr_assert_eq(engine_fixture_wait(&f, t_finished, &sp.ids[i],
						 ENGINE_FIXTURE_WAIT_MS), 0, "message %d", i);
	cr_expect_eq(t_sink_count(&s, NULL), T_SPREAD_MSGS);
	engine_fixture_fini(&f);
	t_sink_stop(&s);
}

/* queue_restart_spread = 0: the restart walk is skipped (it would only set
 * each entry's time to now, at the cost of index memory), and what fell
 * due still goes at once, with no clock step. */
Test(sched, restart_without_spread_sends_at_once, .timeout = T_TIMEOUT_S)
{
	struct engine_fixture f;
	struct t_sink s;
	uint64_t ids[T_SPREAD_MSGS];

	t_sink_start(&s, 0);
	cr_assert_eq(engine_fixture_init(&f, t_table()), 0);
	snprintf(f.cfg.relayhost, sizeof(f.cfg.relayhost), "[127.0.0.1]:%u", s.port);
	f.cfg.queue_restart_spread_ms = 0;
	cr_assert_eq(engine_fixture_start(&f), 0, "%s", f.err); /* no scheduler yet */
	for (int i = 0; i < T_SPREAD_MSGS; i++)
		cr_assert_neq(ids[i] = engine_fixture_append(&f, T_SENDER, t_rcpt_foreign, 1,
							     T_BODY), 0);
	engine_fixture_stop(&f);
	f.with_sched = 1;
	cr_assert_eq(engine_fixture_start(&f), 0, "%s", f.err);
	for (int i = 0; i < T_SPREAD_MSGS; i++)
		cr_assert_eq(engine_fixture_wait(&f, t_finished, &ids[i],
						 ENGINE_FIXTURE_WAIT_MS), 0, "message %d", i);
	cr_expect_eq(t_sink_count(&s, NULL), T_SPREAD_MSGS);
	engine_fixture_fini(&f);
	t_sink_stop(&s);
}

/* ---- routing by MX: permanent failures bounce, temporary ones defer ------ */

#define T_DNS_TIMEOUT_MS 2000

static const struct dns_stub_rr t_zone[] = {
	{ "nullmx.test", DNS_STUB_MX, ".", 0 },
	{ "fail.test", DNS_STUB_SERVFAIL, NULL, 0 },
	/* two.test's route: an MX whose first host refuses (nothing listens
	 * on 127.0.0.2), the second is the sink. */
	{ "mx-two.test", DNS_STUB_MX, "bad.test", 10 },
	{ "mx-two.test", DNS_STUB_MX, "good.test", 20 },
	{ "bad.test", DNS_STUB_A, "127.0.0.2", 0 },
	{ "good.test", DNS_STUB_A, "127.0.0.1", 0 },
};

struct t_route_case {
	const char *name;
	const char *sender;            /* "" = the null sender */
	const char *rcpt;
	const char *dom;
	int want_bounce;               /* else deferred */
	const char *want_status;       /* in the DSN; NULL: no DSN */
};

static const struct t_route_case t_route_cases[] = {
	{ "nxdomain", T_SENDER, "bob@nx.test", "nx.test", 1, "Status: 5.1.2" },
	{ "null_mx", T_SENDER, "bob@nullmx.test", "nullmx.test", 1, "Status: 5.1.10" },
	{ "servfail", T_SENDER, "bob@fail.test", "fail.test", 0, NULL },
	/* A bounce of a DSN: dropped, never bounced again. */
	{ "null_sender_nxdomain", "", "bob@nx.test", "nx.test", 1, NULL },
};

/* No relayhost: each domain's MX, from the stub; sender.test (where DSNs
 * go) has a route to the sink. */
static void t_route_engine(struct engine_fixture *f, struct dns_stub **dns, unsigned short port)
{
	struct domtab_builder *b = domtab_builder_new();
	char dest[64];
	struct domtab *t;

	*dns = dns_stub_start(t_zone, sizeof(t_zone) / sizeof(t_zone[0]));
	cr_assert_not_null(*dns);
	cr_assert_not_null(b);
	snprintf(dest, sizeof(dest), "[127.0.0.1]:%u", port);
	cr_assert_eq(domtab_builder_route_put(b, "sender.test", dest), 0);
	snprintf(dest, sizeof(dest), "mx-two.test:%u", port);
	cr_assert_eq(domtab_builder_route_put(b, "two.test", dest), 0);
	t = domtab_build(b);
	domtab_builder_free(b);
	cr_assert_not_null(t);
	cr_assert_eq(engine_fixture_init(f, t), 0);
	snprintf(f->cfg.dns_servers, sizeof(f->cfg.dns_servers), "127.0.0.1:%u",
		 dns_stub_port(*dns));
	f->cfg.dns_timeout_ms = T_DNS_TIMEOUT_MS;
	f->cfg.queue_restart_spread_ms = 0;
	f->with_sched = 1;
	cr_assert_eq(engine_fixture_start(f), 0, "%s", f->err);
}

/* Bounced: the message has left every queue, and (with a DSN wanted) the
 * sink has it. */
struct t_gone {
	uint64_t msgid;
	struct t_sink *s;
	unsigned want_dsn;
};

static int t_gone(struct engine_fixture *f, void *arg)
{
	struct t_gone *g = arg;

	return t_finished(f, &g->msgid) && !sched_busy(f->sched) &&
	       t_sink_count(g->s, NULL) >= g->want_dsn;
}

static void t_route_run(const struct t_route_case *c)
{
	const char *rcpt[] = { c->rcpt };
	struct engine_fixture f;
	struct dns_stub *dns;
	struct t_sink s;
	struct t_entry te = { .dom = c->dom };
	struct t_gone g = { .s = &s, .want_dsn = c->want_status != NULL };
	struct spool_index_totals tot;
	struct spool_index *idx;

	t_sink_start(&s, 0);
	t_route_engine(&f, &dns, s.port);
	te.msgid = g.msgid = engine_fixture_append(&f, c->sender, rcpt, 1, T_BODY);
	cr_assert_neq(te.msgid, 0);
	if (!c->want_bounce) {
		cr_assert_eq(engine_fixture_wait(&f, t_deferred, &te, ENGINE_FIXTURE_WAIT_MS), 0,
			     "%s: not deferred", c->name);
		cr_expect_eq(t_sink_count(&s, NULL), 0, "%s", c->name);
		goto out;
	}
	cr_assert_eq(engine_fixture_wait(&f, t_gone, &g, ENGINE_FIXTURE_WAIT_MS), 0,
		     "%s: not bounced", c->name);
	cr_expect_eq(t_sink_count(&s, NULL), g.want_dsn, "%s: DSNs", c->name);
	if (c->want_status) {
		cr_expect(strstr(s.senders, "<>") != NULL, "%s: from %s", c->name, s.senders);
		cr_expect(strstr(s.rcpts, "<" T_SENDER ">") != NULL, "%s: to %s", c->name, s.rcpts);
		cr_expect(strstr(s.body, "report-type=delivery-status") != NULL, "%s", c->name);
		cr_expect(strstr(s.body, "Action: failed") != NULL, "%s", c->name);
		cr_expect(strstr(s.body, c->want_status) != NULL, "%s: %s", c->name, s.body);
	}
	engine_fixture_stop(&f);
	idx = engine_fixture_reopen(&f);
	cr_assert_not_null(idx, "%s", f.err);
	spool_index_totals(idx, &tot);
	cr_expect_eq(tot.messages, 0, "%s: left queued", c->name);
	cr_expect_eq(tot.bounced, 1, "%s: bounced %llu", c->name, (unsigned long long)tot.bounced);
	cr_expect_eq(tot.delivered, g.want_dsn, "%s: DSN delivered", c->name);
out:
	engine_fixture_fini(&f);
	dns_stub_stop(dns);
	t_sink_stop(&s);
}

Test(sched, nxdomain_bounced_dsn_delivered, .timeout = T_TIMEOUT_S) { t_route_run(&t_route_cases[0]); }
Test(sched, null_mx_bounced_5_1_10, .timeout = T_TIMEOUT_S) { t_route_run(&t_route_cases[1]); }
Test(sched, servfail_deferred, .timeout = T_TIMEOUT_S) { t_route_run(&t_route_cases[2]); }
Test(sched, dsn_bounced_is_dropped, .timeout = T_TIMEOUT_S) { t_route_run(&t_route_cases[3]); }

/* The first MX host refuses: it is marked dead and the same job goes on to
 * the next MX host at once (no deferral, no clock step). */
Test(sched, next_mx_after_refusal, .timeout = T_TIMEOUT_S)
{
	static const char *const rcpt[] = { "bob@two.test" };
	struct engine_fixture f;
	struct dns_stub *dns;
	struct t_sink s;
	struct t_status st;
	uint64_t id;

	t_sink_start(&s, 0);
	t_route_engine(&f, &dns, s.port);
	id = engine_fixture_append(&f, T_SENDER, rcpt, 1, T_BODY);
	cr_assert_neq(id, 0);
	cr_assert_eq(engine_fixture_wait(&f, t_finished, &id, ENGINE_FIXTURE_WAIT_MS), 0,
		     "not delivered to the second MX");
	cr_expect_eq(t_sink_count(&s, NULL), 1);
	t_status(&f, &st);
	cr_expect_eq(st.n, 0);
	engine_fixture_fini(&f);
	dns_stub_stop(dns);
	t_sink_stop(&s);
}

/* While the domain table is stale (Redis away), a domain without a row may
 * be a customer not heard of yet: its mail stays held. Fresh again, the
 * scheduler walks the queues and delivers it. */
Test(sched, stale_table_holds_domains_without_row, .timeout = T_TIMEOUT_S)
{
	struct engine_fixture f;
	struct t_sink s;
	struct t_entry te = { .dom = "foreign.test" };
	void *a[2] = { &f, &te };

	t_sink_start(&s, 0);
	cr_assert_eq(engine_fixture_init(&f, t_table()), 0);
	snprintf(f.cfg.relayhost, sizeof(f.cfg.relayhost), "[127.0.0.1]:%u", s.port);
	f.cfg.queue_restart_spread_ms = 0;
	f.with_sched = 1;
	domtab_live_set_stale(f.dt, 1);
	cr_assert_eq(engine_fixture_start(&f), 0, "%s", f.err);
	te.msgid = engine_fixture_append(&f, T_SENDER, t_rcpt_foreign, 1, T_BODY);
	cr_assert_neq(te.msgid, 0);
	cr_expect_neq(engine_fixture_wait(&f, t_finished, &te.msgid, 500), 0,
		      "sent while the table was stale");
	cr_assert_eq(engine_fixture_call(&f, t_entry_run, a, ENGINE_FIXTURE_WAIT_MS), 0);
	cr_expect(te.found && !te.busy && te.next_us == 0, "touched while stale");
	cr_expect_eq(t_sink_count(&s, NULL), 0);
	domtab_live_set_stale(f.dt, 0);
	cr_assert_eq(engine_fixture_wait(&f, t_finished, &te.msgid, ENGINE_FIXTURE_WAIT_MS), 0,
		     "not delivered once the table is fresh");
	cr_expect_eq(t_sink_count(&s, NULL), 1);
	engine_fixture_fini(&f);
	t_sink_stop(&s);
}

/* Shutdown with a look-up pending: the loop ends at shutdown_timeout with
 * the job still the resolver's; the resolver's cancel answer is refused its
 * post (the hub quiesced) and frees the job there (ASan: no leak, no use
 * after free); the message is untouched and goes after the restart. */
static const struct dns_stub_rr t_silent_zone[] = {
	{ "silent.test", DNS_STUB_SILENT, NULL, 0 },
};

#define T_SHUTDOWN_MS 200
#define T_SLOW_DNS_MS 10000

static int t_routing(struct engine_fixture *f, void *arg)
{
	(void)arg;
	return sched_busy(f->sched);
}

Test(sched, shutdown_during_lookup_frees_the_job, .timeout = T_TIMEOUT_S)
{
	static const char *const rcpt[] = { "bob@silent.test" };
	struct engine_fixture f;
	struct dns_stub *dns = dns_stub_start(t_silent_zone, 1);
	struct t_entry te = { .dom = "silent.test" };
	void *a[2] = { &f, &te };

	cr_assert_not_null(dns);
	cr_assert_eq(engine_fixture_init(&f, t_table()), 0);
	snprintf(f.cfg.dns_servers, sizeof(f.cfg.dns_servers), "127.0.0.1:%u",
		 dns_stub_port(dns));
	f.cfg.dns_timeout_ms = T_SLOW_DNS_MS;
	f.cfg.shutdown_timeout_ms = T_SHUTDOWN_MS;
	f.cfg.queue_restart_spread_ms = 0;
	f.with_sched = 1;
	cr_assert_eq(engine_fixture_start(&f), 0, "%s", f.err);
	te.msgid = engine_fixture_append(&f, T_SENDER, rcpt, 1, T_BODY);
	cr_assert_neq(te.msgid, 0);
	cr_assert_eq(engine_fixture_wait(&f, t_routing, NULL, ENGINE_FIXTURE_WAIT_MS), 0);
	engine_fixture_stop(&f); /* within shutdown_timeout, not the look-up's */
	f.cfg.dns_timeout_ms = 0;
	cr_assert_eq(engine_fixture_start(&f), 0, "%s", f.err);
	cr_assert_eq(engine_fixture_call(&f, t_entry_run, a, ENGINE_FIXTURE_WAIT_MS), 0);
	cr_expect(te.found, "lost in the shutdown");
	engine_fixture_fini(&f);
	dns_stub_stop(dns);
#ifdef __SANITIZE_ADDRESS__
	/* The job the resolver had must have been freed, not dropped. */
	cr_expect_eq(__lsan_do_recoverable_leak_check(), 0, "leaked (see the report above)");
#endif
}
