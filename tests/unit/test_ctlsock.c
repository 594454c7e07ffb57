/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/ctlsock.c on a real unix socket: the socket file has
 * mode 0600 from the moment bind creates it (bind is wrapped, -Wl,--wrap,
 * to look at the file before ctlsock_start goes on); a client that sends a
 * byte at a time is closed at its whole-request deadline however it trickles;
 * and neither one slow client nor a table full of idle ones delays another
 * client's request beyond that deadline; out of descriptors, the listener
 * pauses instead of spinning.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/ctlsock.h"
#include "core/log.h"
#include "core/now.h"
#include "loopback.h"

/* Generous for a loaded 2-core machine: a request to an idle server takes
 * well under a millisecond. */
#define T_SLACK_MS 1500
#define T_TRICKLE_MS 200  /* the slow client's pace: a byte per this */
#define T_IDLE_CLIENTS 24 /* more than the server serves at once */
/* CPU the whole test process may burn in a second while accept fails: a
 * paused listener needs ~10 polls (well under 1 ms); a spinning one gets
 * far more than this even on a loaded 2-core machine. */
#define T_SPIN_CPU_MS 50

int __real_bind(int fd, const struct sockaddr *sa, socklen_t len);
static int t_bind_mode = -1; /* the socket file's mode right after bind */

int __wrap_bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	int rc = __real_bind(fd, sa, len);
	struct stat st;

	if (rc == 0 && sa->sa_family == AF_UNIX &&
	    stat(((const struct sockaddr_un *)sa)->sun_path, &st) == 0)
		t_bind_mode = (int)(st.st_mode & 0777);
	return rc;
}

static void t_echo(void *arg, const char *line, size_t len, struct buf *out)
{
	(void)arg;
	(void)buf_printf(out, "ok %.*s\n", (int)len, line);
}

static char t_path[108];

static struct ctlsock *t_start(void)
{
	char err[256];
	struct ctlsock *c;

	log_set_level(LOGL_ERR);
	snprintf(t_path, sizeof(t_path), "/tmp/etrnd-test-ctlsock-%d.sock", (int)getpid());
	c = ctlsock_start(t_path, t_echo, NULL, NULL, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	return c;
}

static int t_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0);
	memcpy(sa.sun_path, t_path, strlen(t_path) + 1);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
	return fd;
}

/* Send req, read the whole reply (until close) within limit_ms; returns
 * the time taken, or -1 on a timeout. */
static long t_request(const char *req, char *reply, size_t len, int limit_ms)
{
	uint64_t t0 = now_mono_ms();
	int fd = t_connect();
	size_t n = 0;

	cr_assert_eq(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		long left = limit_ms - (long)(now_mono_ms() - t0);
		ssize_t r;

		if (left <= 0 || poll(&p, 1, (int)left) != 1) {
			close(fd);
			return -1;
		}
		r = read(fd, reply + n, len - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	reply[n] = '\0';
	close(fd);
	return (long)(now_mono_ms() - t0);
}

Test(ctlsock, mode_0600_from_bind_on)
{
	mode_t old = umask(0); /* the old chmod-after-bind left 0777 here */
	struct ctlsock *c = t_start();
	struct stat st;

	umask(old);
	cr_expect_eq(t_bind_mode, 0600, "mode right after bind: %o", t_bind_mode);
	cr_assert_eq(stat(t_path, &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0600);
	ctlsock_stop(c);
	cr_expect_neq(access(t_path, F_OK), 0, "socket file left behind");
}

/* A client trickling a byte every T_TRICKLE_MS without a newline: other
 * requests are answered meanwhile, and it is closed at its deadline. */
Test(ctlsock, trickling_client_neither_blocks_nor_lasts)
{
	struct ctlsock *c = t_start();
	int slow = t_connect(), closed = 0;
	uint64_t t0 = now_mono_ms(), limit = CTLSOCK_REQUEST_TIMEOUT_MS + T_SLACK_MS * 2;
	char reply[256];
	long took;

	while (!closed && now_mono_ms() - t0 < limit) {
		struct pollfd p = { slow, POLLIN, 0 };

		if (send(slow, "x", 1, MSG_NOSIGNAL) != 1)
			closed = 1;
		else if (poll(&p, 1, T_TRICKLE_MS) == 1 && read(slow, reply, sizeof(reply)) <= 0)
			closed = 1;
		if (!closed && now_mono_ms() - t0 < CTLSOCK_REQUEST_TIMEOUT_MS / 2) {
			took = t_request("status\n", reply, sizeof(reply), T_SLACK_MS);
			cr_expect(took >= 0, "status waited for the trickling client");
			cr_expect_str_eq(reply, took >= 0 ? "ok status\n" : "");
		}
	}
	cr_expect(closed, "a client trickling a byte every %d ms still open after %llu ms",
		  T_TRICKLE_MS, (unsigned long long)(now_mono_ms() - t0));
	cr_expect_geq(now_mono_ms() - t0, CTLSOCK_REQUEST_TIMEOUT_MS - T_TRICKLE_MS,
		      "closed before its deadline");
	close(slow);
	ctlsock_stop(c);
}

/* More idle clients than the server serves at once: a request waits at
 * most for their deadline, then is answered. */
Test(ctlsock, idle_clients_delay_others_at_most_their_deadline)
{
	struct ctlsock *c = t_start();
	int idle[T_IDLE_CLIENTS];
	char reply[256];
	long took;

	for (int i = 0; i < T_IDLE_CLIENTS; i++)
		idle[i] = t_connect();
	took = t_request("flush a.test\r\n", reply, sizeof(reply),
			 CTLSOCK_REQUEST_TIMEOUT_MS + T_SLACK_MS * 2);
	cr_expect(took >= 0, "no reply while %d idle clients held the socket", T_IDLE_CLIENTS);
	cr_expect_str_eq(reply, took >= 0 ? "ok flush a.test\n" : "");
	for (int i = 0; i < T_IDLE_CLIENTS; i++)
		close(idle[i]);
	/* A line without a newline that fills the buffer gets its error. */
	{
		char big[1100];

		memset(big, 'a', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		took = t_request(big, reply, sizeof(reply), CTLSOCK_REQUEST_TIMEOUT_MS + T_SLACK_MS);
		cr_expect(took >= 0);
		cr_expect_str_eq(reply, took >= 0 ? "error: request line too long\n" : "");
	}
	ctlsock_stop(c);
}

/* Out of descriptors, accept fails and the listener stays readable: the
 * server must pause, not spin (the CPU it burns in a second stays small),
 * and serve again once descriptors are back. */
Test(ctlsock, out_of_descriptors_does_not_spin)
{
	struct ctlsock *c = t_start();
	struct rlimit old, low;
	struct rusage r0, r1;
	char reply[256];
	long cpu_ms;
	int fd, probe;

	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	probe = dup(0); /* the lowest free descriptor: all below are in use */
	cr_assert(probe >= 0);
	close(probe);
	low = old;
	low.rlim_cur = (rlim_t)probe + 1; /* room for the client's socket only */
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	fd = t_connect();
	getrusage(RUSAGE_SELF, &r0);
	usleep(1000 * 1000);
	getrusage(RUSAGE_SELF, &r1);
	cpu_ms = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec -
		  r0.ru_stime.tv_sec) * 1000 +
		 (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec -
		  r0.ru_stime.tv_usec) / 1000;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	close(fd);
	cr_expect_lt(cpu_ms, T_SPIN_CPU_MS, "%ld ms of CPU in 1 s with accept failing", cpu_ms);
	cr_expect_geq(t_request("status\n", reply, sizeof(reply),
				CTLSOCK_REQUEST_TIMEOUT_MS + T_SLACK_MS), 0);
	ctlsock_stop(c);
}

/* ctlsock_start()'s refusals, each naming the socket and the reason, with
 * nothing left open or bound: a path too long for sun_path, a directory
 * that does not exist, a process out of descriptors. */
Test(ctlsock, start_failures_name_the_reason)
{
	char err[512], want[512], path[200];
	struct rlimit old, low;

	memset(path, 'p', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	int before = loopback_lowest_free_fd();
	cr_expect_null(ctlsock_start(path, t_echo, NULL, NULL, err, sizeof(err)));
	snprintf(want, sizeof(want), "control_socket %s: path too long (at most 107)", path);
	cr_expect_str_eq(err, want);

	cr_expect_null(ctlsock_start("/nonexistent-etrnd-test/ctl.sock", t_echo, NULL, NULL, err,
				     sizeof(err)));
	cr_expect_str_eq(err, "control_socket /nonexistent-etrnd-test/ctl.sock: No such file or directory");
	cr_expect_eq(loopback_lowest_free_fd(), before, "a descriptor left open");

	snprintf(t_path, sizeof(t_path), "/tmp/etrnd-test-ctlsock-%d.sock", (int)getpid());
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t)loopback_fd_limit(1); /* the socket, not the eventfd */
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	struct ctlsock *c = ctlsock_start(t_path, t_echo, NULL, NULL, err, sizeof(err));
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	cr_expect_null(c);
	cr_expect_str_eq(err, "control socket: Too many open files");
	cr_expect_eq(loopback_lowest_free_fd(), before, "a descriptor left open");
	cr_expect_eq(access(t_path, F_OK), -1, "the socket file was bound");
}
