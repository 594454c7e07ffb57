/* SPDX-License-Identifier: MIT */
/*
 * ctlsock: see ctlsock.h. Requests are served one at a time; each read and
 * write is bounded in size and time, so a stuck client costs at most
 * CTLSOCK_IO_TIMEOUT_MS and never grows memory.
 */
#include "core/ctlsock.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/epoch.h"
#include "core/log.h"

#define CTLSOCK_LINE_MAX 1024
#define CTLSOCK_IO_TIMEOUT_MS 2000
#define CTLSOCK_REPLY_MAX (1u << 20)

struct ctlsock {
	pthread_t thread;
	int fd;
	int stopfd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	ctlsock_fn fn;
	void *arg;
	struct epoch *ep;
};

static int wait_fd(int fd, short ev)
{
	struct pollfd p = { fd, ev, 0 };

	return poll(&p, 1, CTLSOCK_IO_TIMEOUT_MS) == 1 ? 0 : -1;
}

static void serve(struct ctlsock *c, int fd)
{
	char line[CTLSOCK_LINE_MAX];
	size_t n = 0, off = 0;
	struct buf out;
	char *nl = NULL;

	buf_init(&out, CTLSOCK_REPLY_MAX);
	while (n < sizeof(line) && !(nl = memchr(line, '\n', n))) {
		ssize_t r;

		if (wait_fd(fd, POLLIN))
			goto done;
		r = read(fd, line + n, sizeof(line) - n);
		if (r <= 0)
			goto done;
		n += (size_t)r;
	}
	if (!nl) {
		(void)buf_puts(&out, "error: request line too long\n");
	} else {
		size_t len = (size_t)(nl - line);
		if (len && line[len - 1] == '\r')
			len--;
		/* Reading shared tables (QSBR) only while online. */
		if (c->ep)
			epoch_online();
		c->fn(c->arg, line, len, &out);
		if (c->ep) {
			epoch_quiescent();
			epoch_offline();
		}
	}
	while (off < out.len) {
		ssize_t w;

		if (wait_fd(fd, POLLOUT))
			break;
		w = write(fd, out.data + off, out.len - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
done:
	buf_free(&out);
	close(fd);
}

static void *ctlsock_main(void *arg)
{
	struct ctlsock *c = arg;

	if (c->ep && epoch_register(c->ep)) {
		log_err("control socket: no epoch slot; requests refused");
		c->ep = NULL;
		c->fn = NULL;
	}
	if (c->ep)
		epoch_offline();

	for (;;) {
		struct pollfd p[2] = { { c->stopfd, POLLIN, 0 }, { c->fd, POLLIN, 0 } };
		int fd;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_err("control socket: poll: %s", strerror(errno));
			return NULL;
		}
		if (p[0].revents) {
			if (c->ep)
				epoch_unregister();
			return NULL;
		}
		fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0 && c->fn)
			serve(c, fd);
		else if (fd >= 0)
			close(fd);
	}
}

struct ctlsock *ctlsock_start(const char *path, ctlsock_fn fn, void *arg,
			      struct epoch *ep, char *err, size_t errlen)
{
	struct ctlsock *c = calloc(1, sizeof(*c));
	struct sockaddr_un sa;
	int rc;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->fd = c->stopfd = -1;
	if (strlen(path) >= sizeof(c->path)) {
		snprintf(err, errlen, "control_socket %s: path too long (at most %zu)", path,
			 sizeof(c->path) - 1);
		goto fail;
	}
	snprintf(c->path, sizeof(c->path), "%s", path);
	c->fn = fn;
	c->arg = arg;
	c->ep = ep;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	c->stopfd = eventfd(0, EFD_CLOEXEC);
	if (c->fd < 0 || c->stopfd < 0) {
		snprintf(err, errlen, "control socket: %s", strerror(errno));
		goto fail;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
	(void)unlink(c->path); /* left by a killed etrnd */
	if (bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) || chmod(c->path, 0600) ||
	    listen(c->fd, 16)) {
		snprintf(err, errlen, "control_socket %s: %s", c->path, strerror(errno));
		goto fail;
	}
	/* pthread_create returns the error; it does not set errno. */
	rc = pthread_create(&c->thread, NULL, ctlsock_main, c);
	if (rc) {
		snprintf(err, errlen, "control socket thread: %s", strerror(rc));
		(void)unlink(c->path);
		goto fail;
	}
	return c;
fail:
	if (c->fd >= 0)
		close(c->fd);
	if (c->stopfd >= 0)
		close(c->stopfd);
	free(c);
	return NULL;
}

struct ctlsock *ctlsock_stop(struct ctlsock *c)
{
	uint64_t one = 1;

	if (!c)
		return NULL;
	(void)!write(c->stopfd, &one, sizeof(one));
	pthread_join(c->thread, NULL);
	(void)unlink(c->path);
	close(c->fd);
	close(c->stopfd);
	free(c);
	return NULL;
}
