/* SPDX-License-Identifier: MIT */
/*
 * loopback: free ports on 127.0.0.1 (see loopback.h): bind to port 0 and
 * ask the kernel which one it chose.
 */
#include "loopback.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* A socket bound to a free loopback port, the port in *port; -errno. */
static int loopback_bind(unsigned short *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
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

unsigned short loopback_free_port(void)
{
	unsigned short port = 0;
	int fd = loopback_bind(&port);

	if (fd < 0)
		return 0;
	close(fd);
	return port;
}

int loopback_listen(int backlog, unsigned short *port)
{
	int fd = loopback_bind(port), err;

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
