/* SPDX-License-Identifier: MIT */
/*
 * Tests for core/loop.c's set-up failures, each a real condition: loop_new()
 * returns NULL with the error that names the step (an over-long busy reply,
 * a TLS listener without a server context, an address that is not ours, a
 * process out of file descriptors at the ring, the eventfd or the listening
 * socket), leaks nothing (ASan) and leaves the descriptors as it found them;
 * loop_probe_listen() refuses an address another socket holds. Criterion
 * runs each test in its own process, so RLIMIT_NOFILE stays the test's.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/config.h"
#include "core/loop.h"
#include "engine_fixture.h"
#include "loopback.h"

#define ERR_MAX 256

static struct config cfg;
static struct loop_conf lc;
static char err[ERR_MAX];

static void setup(void)
{
	config_defaults(&cfg);
	cfg.nlisten = 0;
	cfg.max_connections = 4;
	memset(&lc, 0, sizeof(lc));
	lc.cfg = &cfg;
	lc.ops = engine_fixture_no_ops();
	err[0] = '\0';
}

static void teardown(void)
{
	config_free(&cfg);
}

static void add_listen(const char *key, const char *addr)
{
	char why[ERR_MAX];
	cr_assert_eq(config_set(&cfg, key, addr, "test", why, sizeof(why)), 0, "%s", why);
}

/* Allow exactly n more descriptors: n free ones below the limit. */
static void allow_fds(unsigned n)
{
	struct rlimit rl;
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = (rlim_t)loopback_fd_limit(n);
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

static void expect_fail(const char *want)
{
	int before = loopback_lowest_free_fd();
	struct loop *l = loop_new(&lc, err, sizeof(err));

	cr_assert_null(l, "loop_new succeeded, wanted \"%s\"", want);
	cr_expect_str_eq(err, want);
	/* Everything it opened before the failing step is closed again: the
	 * lowest free descriptor is still free (asked without dup(), which
	 * the limit may refuse). */
	errno = 0;
	cr_expect_eq(fcntl(before, F_GETFD), -1, "descriptor %d left open", before);
	cr_expect_eq(errno, EBADF);
}

TestSuite(loop_setup, .init = setup, .fini = teardown);

Test(loop_setup, addr_busy_reply_too_long)
{
	static char reply[600];
	memset(reply, 'x', sizeof(reply) - 1);
	lc.addr_busy_reply = reply;
	expect_fail("addr_busy_reply longer than 511 bytes");
	/* One byte less fits. */
	reply[511] = '\0';
	struct loop *l = loop_new(&lc, err, sizeof(err));
	cr_assert_not_null(l, "%s", err);
	loop_free(l);
}

Test(loop_setup, tls_listener_without_server_context)
{
	char want[ERR_MAX];
	int port = loopback_free_port();
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	add_listen("listen_tls", addr);
	snprintf(want, sizeof(want), "listen_tls %s: no TLS server context (tls_cert_file)", addr);
	expect_fail(want);
}

/* 192.0.2.1 (TEST-NET-1, RFC 5737) is no address of this host. */
Test(loop_setup, bind_not_our_address)
{
	add_listen("listen", "192.0.2.1:2525");
	expect_fail("listen 192.0.2.1:2525: bind: Cannot assign requested address");
}

Test(loop_setup, out_of_fds_at_ring)
{
	allow_fds(0);
	expect_fail("io_uring_queue_init: Too many open files");
}

Test(loop_setup, out_of_fds_at_eventfd)
{
	allow_fds(1); /* the ring's */
	expect_fail("eventfd: Too many open files");
}

Test(loop_setup, out_of_fds_at_listener)
{
	char addr[64], want[ERR_MAX];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", loopback_free_port());
	add_listen("listen", addr);
	allow_fds(2); /* the ring's and the eventfd */
	snprintf(want, sizeof(want), "listen %s: socket: Too many open files", addr);
	expect_fail(want);
	/* With one more it is up. */
	allow_fds(3);
	struct loop *l = loop_new(&lc, err, sizeof(err));
	cr_assert_not_null(l, "%s", err);
	loop_free(l);
}

/* Another socket holds the address (no SO_REUSEPORT): the probe says so,
 * where the engine threads' SO_REUSEPORT sockets would not. */
Test(loop_setup, probe_refuses_a_held_address)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	char addr[64], want[ERR_MAX];
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 1), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sa.sin_port));
	add_listen("listen", addr);
	cr_expect_eq(loop_probe_listen(&cfg, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "listen %s: bind: Address already in use", addr);
	cr_expect_str_eq(err, want);
	close(fd);
	/* Free again: the probe passes. */
	cr_expect_eq(loop_probe_listen(&cfg, err, sizeof(err)), 0, "%s", err);
}
