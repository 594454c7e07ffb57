/* SPDX-License-Identifier: MIT */
/*
 * loopback: free ports on 127.0.0.1 (see loopback.h): for a listener
 * bound now, the kernel's choice; for a port checked now and bound later,
 * one at random below the kernel's ephemeral range.
 */
#include "loopback.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

/* loopback_free_port() draws from this port up to the ephemeral range. */
#define LOOPBACK_PORT_LOW 10000u
#define LOOPBACK_PORT_TRIES 200u
/* The integration harness's lock file per port handed out
 * (etrnd_harness.py's PORT_LOCK_DIR). */
#define LOOPBACK_PORT_LOCK_DIR "/tmp/etrnd-test-ports"

/* A socket bound to loopback port *port (0: the kernel's choice, put in
 * *port); -errno. */
static int loopback_bind(unsigned short *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(*port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), err;

	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl))
		goto fail;
	*port = ntohs(sa.sin_port);
	return fd;
fail:
	err = errno;
	close(fd);
	return -err;
}

/* The kernel's ephemeral range (what bind() to port 0 and an unbound
 * connect() draw from); Linux's default when it cannot be read. */
static void loopback_ephemeral(unsigned *lo, unsigned *hi)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
	unsigned a, b;

	*lo = 32768;
	*hi = 60999;
	if (!f)
		return;
	if (fscanf(f, "%u %u", &a, &b) == 2 && a <= b && b <= 65535) {
		*lo = a;
		*hi = b;
	}
	fclose(f);
}

/* Whether another process holds port's lock file: the integration
 * harness reserves each port it hands out there until its test ends (it
 * may bind it seconds later, or rely on nobody listening). Checked, not
 * held: our caller binds within moments, and a held descriptor would
 * upset the tests that count them. No lock dir, or none we may open:
 * nobody reserves there. */
static bool loopback_port_reserved(unsigned short port)
{
	char path[64];
	bool held;
	int fd;

	snprintf(path, sizeof(path), LOOPBACK_PORT_LOCK_DIR "/%u", (unsigned)port);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	held = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
	close(fd); /* drops our lock, if we took it */
	return held;
}

/* Below the ephemeral range, at random (the integration harness's
 * free_port() does the same): a port the kernel chose would come from the
 * range every other process's bind(0) and connect() draw from, so between
 * the check and the caller's bind another test could be given it. */
unsigned short loopback_free_port(void)
{
	unsigned lo, hi, low, high;
	unsigned short port = 0;

	loopback_ephemeral(&lo, &hi);
	if (lo > LOOPBACK_PORT_LOW + 1) {
		low = LOOPBACK_PORT_LOW;
		high = lo - 1;
	} else { /* no room below it: above */
		low = hi + 1;
		high = 65535;
	}
	for (unsigned i = 0; i < LOOPBACK_PORT_TRIES && low < high; i++) {
		unsigned r;
		int fd;

		if (getrandom(&r, sizeof(r), 0) != sizeof(r))
			break;
		port = (unsigned short)(low + r % (high - low + 1));
		if (loopback_port_reserved(port))
			continue;
		fd = loopback_bind(&port);
		if (fd >= 0) {
			close(fd);
			return port;
		}
	}
	return 0;
}

int loopback_listen(int backlog, unsigned short *port)
{
	int fd, err;

	*port = 0;
	fd = loopback_bind(port);
	if (fd < 0)
		return fd;
	if (listen(fd, backlog)) {
		err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

int loopback_lowest_free_fd(void)
{
	int fd = 0;

	while (fcntl(fd, F_GETFD) != -1)
		fd++;
	return fd;
}

int loopback_fd_limit(unsigned n)
{
	unsigned seen = 0;

	/* The (n+1)-th free descriptor: n free ones lie below it. */
	for (int fd = 0;; fd++)
		if (fcntl(fd, F_GETFD) == -1 && seen++ == n)
			return fd;
}
