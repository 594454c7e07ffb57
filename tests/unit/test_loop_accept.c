/* SPDX-License-Identifier: MIT */
/*
 * Tests for core/loop.c's accept path on a real loop thread and real
 * loopback clients: a connection the owner refuses in ops->open is closed
 * and its slot reused; one over max_connections gets the busy reply, then
 * the close; a process out of file descriptors pauses accepting (logged
 * once, naming the listener and the error) and, once descriptors are back,
 * serves the waiting client (logged: accepts resumed). RLIMIT_NOFILE is
 * the test process's own (Criterion runs each test in its own process).
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/loop.h"
#include "log_capture.h"
#include "loopback.h"

#define LA_GREETING "220 hi\r\n"
#define LA_BUSY "421 4.3.2 busy\r\n"
#define LA_LOG_MAX (1u << 16)
#define LA_POLL_US 10000

struct la {
	struct loop *l;
	struct config cfg;
	pthread_t th;
	unsigned short port;
	atomic_uint opens, closes;
	atomic_int refuse_next;   /* ops->open returns NULL once */
	atomic_int ready;         /* 1: the loop runs, -1: loop_new failed */
	int run_rc;
	int state;                /* a non-NULL state for ops->open */
	char addr[64];
};

static struct la T;

static void *la_open(void *arg, struct conn *c, const char *peer)
{
	struct la *t = arg;

	(void)peer;
	atomic_fetch_add(&t->opens, 1);
	if (atomic_exchange(&t->refuse_next, 0))
		return NULL;
	cr_assert_eq(buf_append(conn_out(c), LA_GREETING, strlen(LA_GREETING)), 0);
	conn_flush(c);
	return &t->state;
}

static size_t la_data(void *arg, struct conn *c, void *st, const char *p, size_t n)
{
	(void)arg; (void)st; (void)p;
	if (n == 0)
		conn_close(c);
	return n;
}

static void la_shutdown(void *arg, struct conn *c, void *st)
{
	(void)arg; (void)st;
	conn_close(c);
}

static void la_timeout(void *arg, struct conn *c, void *st)
{
	(void)arg; (void)st;
	conn_close(c);
}

static void la_close(void *arg, struct conn *c, void *st)
{
	(void)c; (void)st;
	atomic_fetch_add(&((struct la *)arg)->closes, 1);
}

static const struct conn_ops la_ops = { la_open, la_data, la_timeout, la_shutdown, la_close,
					NULL, NULL };

/* loop_new() and loop_run() on the same thread (SINGLE_ISSUER). */
static void *la_thread(void *arg)
{
	struct la *t = arg;
	char err[256];
	struct loop_conf lc = { 0 };

	lc.cfg = &t->cfg;
	lc.ops = &la_ops;
	lc.ops_arg = t;
	lc.busy_reply = LA_BUSY;
	t->l = loop_new(&lc, err, sizeof(err));
	if (!t->l) {
		fprintf(stderr, "loop_new: %s\n", err);
		atomic_store(&t->ready, -1);
		return NULL;
	}
	atomic_store(&t->ready, 1);
	t->run_rc = loop_run(t->l);
	return NULL;
}

/* A loop on its own thread, listening on a free loopback port, with
 * max_connections slots. */
static void la_start(unsigned max_connections)
{
	char why[256];

	memset(&T, 0, sizeof(T));
	config_defaults(&T.cfg);
	T.cfg.nlisten = 0;
	T.cfg.max_connections = max_connections;
	T.port = loopback_free_port();
	snprintf(T.addr, sizeof(T.addr), "127.0.0.1:%u", T.port);
	cr_assert_eq(config_set(&T.cfg, "listen", T.addr, "test", why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(pthread_create(&T.th, NULL, la_thread, &T), 0);
	while (atomic_load(&T.ready) == 0)
		usleep(LA_POLL_US);
	cr_assert_eq(atomic_load(&T.ready), 1, "loop_new failed");
}

static void la_stop(void)
{
	loop_stop(T.l);
	cr_assert_eq(pthread_join(T.th, NULL), 0);
	cr_expect_eq(T.run_rc, 0);
	loop_free(T.l);
	config_free(&T.cfg);
}

static int la_connect(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(T.port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
	return fd;
}

/* Everything the server sends until it closes. */
static void la_read_all(int fd, char *out, size_t max)
{
	size_t n = 0;
	ssize_t r;

	while (n + 1 < max && (r = recv(fd, out + n, max - 1 - n, 0)) > 0)
		n += (size_t)r;
	out[n] = '\0';
}

static void la_expect_line(int fd, const char *want)
{
	char got[64];
	size_t n = 0, len = strlen(want);

	while (n < len) {
		ssize_t r = recv(fd, got + n, len - n, 0);
		cr_assert_gt(r, 0, "connection closed after %zu bytes of %s", n, want);
		n += (size_t)r;
	}
	got[n] = '\0';
	cr_expect_str_eq(got, want);
}

Test(loop_accept, refused_in_open_is_closed_and_slot_reused, .timeout = 60)
{
	char got[64];

	la_start(1);
	atomic_store(&T.refuse_next, 1);
	int a = la_connect();
	la_read_all(a, got, sizeof(got));
	cr_expect_str_eq(got, "", "a refused connection is closed, nothing said");
	close(a);
	/* The one slot is free again: the next client is served. */
	int b = la_connect();
	la_expect_line(b, LA_GREETING);
	close(b);
	la_stop();
	cr_expect_eq(atomic_load(&T.opens), 2);
	cr_expect_eq(atomic_load(&T.closes), 1, "ops->close only for the one it kept");
}

Test(loop_accept, over_max_connections_gets_busy_reply, .timeout = 60)
{
	char got[64];

	la_start(1);
	int a = la_connect();
	la_expect_line(a, LA_GREETING);
	int b = la_connect();
	la_read_all(b, got, sizeof(got));
	cr_expect_str_eq(got, LA_BUSY);
	close(b);
	close(a);
	la_stop();
	cr_expect_eq(atomic_load(&T.opens), 1, "the refused one never reached ops->open");
}

Test(loop_accept, out_of_descriptors_pauses_then_serves, .timeout = 60)
{
	struct log_capture cap;
	struct rlimit old, low;
	char want[256];

	cr_assert_eq(log_capture_start(&cap), 0);
	int a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(a, 0);
	/* Room for the loop's ring, eventfd and listening socket, and no
	 * more. The limit counts when an accept is armed (io_uring reads it
	 * at submission), so it is set before the loop starts. */
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t)loopback_fd_limit(3);
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	la_start(4);
	/* connect() needs no new descriptor; the accept does. */
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(T.port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(a, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
	snprintf(want, sizeof(want), "engine 0: accept on %s: Too many open files: pausing accepts, "
		 "retrying after 10 ms doubling up to 1000 ms", T.addr);
	for (;;) {
		char buf[LA_LOG_MAX];
		fflush(cap.f);
		size_t n = (size_t)pread(fileno(cap.f), buf, sizeof(buf) - 1, 0);
		buf[n < sizeof(buf) ? n : 0] = '\0';
		if (strstr(buf, want))
			break;
		cr_assert_eq(atomic_load(&T.opens), 0, "accepted with no descriptor left");
		usleep(LA_POLL_US);
	}
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	la_expect_line(a, LA_GREETING);
	close(a);
	la_stop();
	cr_assert_eq(log_capture_stop(&cap, LA_LOG_MAX), 0);
	cr_expect_not_null(strstr(cap.text, want), "%s", cap.text);
	cr_expect_not_null(strstr(cap.text, "engine 0: accepts resumed: "), "%s", cap.text);
	cr_expect_not_null(strstr(cap.text, "(last: Too many open files)"), "%s", cap.text);
	cr_expect_eq(atomic_load(&T.opens), 1);
	log_capture_free(&cap);
}
