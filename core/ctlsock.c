/* SPDX-License-Identifier: MIT */
/*
 * ctlsock: see ctlsock.h. One thread polls the listening socket and up to
 * CTLSOCK_CLIENTS_MAX clients at once, each non-blocking with its own
 * deadline for the whole request (connect to last reply byte), so a slow
 * or stuck client costs at most CTLSOCK_REQUEST_TIMEOUT_MS of its own slot
 * and never delays another's request, nor grows memory past its caps.
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
#include "core/now.h"

#define CTLSOCK_LINE_MAX 1024
#define CTLSOCK_REPLY_MAX (1u << 20)
#define CTLSOCK_CLIENTS_MAX 16 /* served at once; more wait in the backlog */
#define CTLSOCK_BACKLOG 16
#define CTLSOCK_MODE 0600      /* only the daemon's user and root */
/* accept failing for want of descriptors (EMFILE, ENFILE, ENOBUFS): the
 * listener stays readable, so stop polling it this long instead of spinning. */
#define CTLSOCK_ACCEPT_PAUSE_MS 100

/* One client's life: its request line comes in, then its reply goes out;
 * FREE slots are unused. */
enum ctlsock_state {
	CTLSOCK_FREE = 0,
	CTLSOCK_READING,
	CTLSOCK_WRITING,
};

static const char *const ctlsock_state_names[] = { "FREE", "READING", "WRITING" };

struct ctlsock_client {
	enum ctlsock_state state;
	int fd;
	unsigned id;         /* for log lines: the n-th client served */
	uint64_t deadline;   /* now_mono_ms() by which the reply must be out */
	size_t n;            /* bytes in line[] */
	size_t off;          /* reply bytes already written */
	struct buf out;
	char line[CTLSOCK_LINE_MAX];
};

struct ctlsock {
	pthread_t thread;
	int fd;
	int stopfd;
	unsigned served;
	uint64_t accept_paused_until; /* now_mono_ms(); 0 = not paused */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	ctlsock_fn fn;
	void *arg;
	struct epoch *ep;
	struct ctlsock_client cl[CTLSOCK_CLIENTS_MAX];
};

/* The one place a client changes state; FREE closes and releases it. */
static void ctlsock_enter_state(struct ctlsock_client *k, enum ctlsock_state st)
{
	log_debug("control client %u: %s -> %s", k->id, ctlsock_state_names[k->state],
		  ctlsock_state_names[st]);
	k->state = st;
	if (st == CTLSOCK_FREE) {
		close(k->fd);
		k->fd = -1;
		buf_free(&k->out);
	}
}

/* Write what the socket takes now; FREE once all of the reply is out or the
 * client is gone. */
static void ctlsock_write(struct ctlsock_client *k)
{
	while (k->off < k->out.len) {
		ssize_t w = send(k->fd, k->out.data + k->off, k->out.len - k->off, MSG_NOSIGNAL);

		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (w <= 0)
			break;
		k->off += (size_t)w;
	}
	ctlsock_enter_state(k, CTLSOCK_FREE);
}

/* The request line is complete (or too long): answer it. fn may wait for
 * the engine threads (status); that wait is theirs to bound, not a client's. */
static void ctlsock_answer(struct ctlsock *c, struct ctlsock_client *k, const char *nl)
{
	if (!nl) {
		(void)buf_puts(&k->out, "error: request line too long\n");
	} else {
		size_t len = (size_t)(nl - k->line);

		if (len && k->line[len - 1] == '\r')
			len--;
		/* Reading shared tables (QSBR) only while online. */
		if (c->ep)
			epoch_online();
		c->fn(c->arg, k->line, len, &k->out);
		if (c->ep) {
			epoch_quiescent();
			epoch_offline();
		}
	}
	ctlsock_enter_state(k, CTLSOCK_WRITING);
	ctlsock_write(k);
}

static void ctlsock_read(struct ctlsock *c, struct ctlsock_client *k)
{
	for (;;) {
		ssize_t r = read(k->fd, k->line + k->n, sizeof(k->line) - k->n);
		const char *nl;

		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (r <= 0) { /* gone before its request was complete */
			ctlsock_enter_state(k, CTLSOCK_FREE);
			return;
		}
		nl = memchr(k->line + k->n, '\n', (size_t)r);
		k->n += (size_t)r;
		if (nl || k->n == sizeof(k->line)) {
			ctlsock_answer(c, k, nl);
			return;
		}
	}
}

/* Take waiting connections into free slots (the listening socket is only
 * polled while there is one). */
static void ctlsock_accept(struct ctlsock *c, uint64_t now)
{
	for (unsigned i = 0; i < CTLSOCK_CLIENTS_MAX; i++) {
		struct ctlsock_client *k = &c->cl[i];
		int fd;

		if (k->state != CTLSOCK_FREE)
			continue;
		fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0 && errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
			log_warn("control socket: accept: %s; pausing %d ms", strerror(errno),
				 CTLSOCK_ACCEPT_PAUSE_MS);
			c->accept_paused_until = now + CTLSOCK_ACCEPT_PAUSE_MS;
		}
		if (fd < 0)
			return;
		if (!c->fn) {
			close(fd);
			continue;
		}
		k->fd = fd;
		k->id = ++c->served;
		k->n = k->off = 0;
		k->deadline = now + CTLSOCK_REQUEST_TIMEOUT_MS;
		buf_init(&k->out, CTLSOCK_REPLY_MAX);
		ctlsock_enter_state(k, CTLSOCK_READING);
	}
}

/* Fill p[] for poll(): the stop eventfd, each busy client, then the
 * listener while a slot is free and accept is not paused. Sets *timeout to
 * the nearest deadline (or the pause's end). */
static nfds_t ctlsock_pollset(struct ctlsock *c, struct pollfd *p, int *slot, uint64_t now,
			      int *timeout)
{
	nfds_t n = 1;
	int free_slot = 0;

	p[0] = (struct pollfd){ c->stopfd, POLLIN, 0 };
	*timeout = -1;
	for (unsigned i = 0; i < CTLSOCK_CLIENTS_MAX; i++) {
		struct ctlsock_client *k = &c->cl[i];
		int left;

		if (k->state == CTLSOCK_FREE) {
			free_slot = 1;
			continue;
		}
		left = k->deadline > now ? (int)(k->deadline - now) : 0;
		if (*timeout < 0 || left < *timeout)
			*timeout = left;
		slot[n] = (int)i;
		p[n++] = (struct pollfd){ k->fd, k->state == CTLSOCK_READING ? POLLIN : POLLOUT, 0 };
	}
	if (free_slot && now < c->accept_paused_until) {
		int left = (int)(c->accept_paused_until - now);

		if (*timeout < 0 || left < *timeout)
			*timeout = left;
	} else if (free_slot) {
		slot[n] = -1;
		p[n++] = (struct pollfd){ c->fd, POLLIN, 0 };
	}
	return n;
}

/* A client past its deadline is dropped, however much it has sent: the
 * deadline is for the whole request, not per byte. */
static void ctlsock_expire(struct ctlsock *c, uint64_t now)
{
	for (unsigned i = 0; i < CTLSOCK_CLIENTS_MAX; i++) {
		struct ctlsock_client *k = &c->cl[i];

		if (k->state == CTLSOCK_FREE || now < k->deadline)
			continue;
		log_info("control client %u: no whole request and reply within %d ms: closed",
			 k->id, CTLSOCK_REQUEST_TIMEOUT_MS);
		ctlsock_enter_state(k, CTLSOCK_FREE);
	}
}

static void ctlsock_release_all(struct ctlsock *c)
{
	for (unsigned i = 0; i < CTLSOCK_CLIENTS_MAX; i++)
		if (c->cl[i].state != CTLSOCK_FREE)
			ctlsock_enter_state(&c->cl[i], CTLSOCK_FREE);
}

static void *ctlsock_main(void *arg)
{
	struct ctlsock *c = arg;
	struct pollfd p[CTLSOCK_CLIENTS_MAX + 2];
	int slot[CTLSOCK_CLIENTS_MAX + 2], timeout;

	if (c->ep && epoch_register(c->ep)) {
		log_err("control socket: no epoch slot; requests refused");
		c->ep = NULL;
		c->fn = NULL;
	}
	if (c->ep)
		epoch_offline();
	for (;;) {
		nfds_t n = ctlsock_pollset(c, p, slot, now_mono_ms(), &timeout);

		if (poll(p, n, timeout) < 0 && errno != EINTR) {
			log_err("control socket: poll: %s", strerror(errno));
			break;
		}
		if (p[0].revents)
			break;
		for (nfds_t i = 1; i < n; i++) {
			struct ctlsock_client *k = slot[i] < 0 ? NULL : &c->cl[slot[i]];

			if (!p[i].revents)
				continue;
			if (!k)
				ctlsock_accept(c, now_mono_ms());
			else if (k->state == CTLSOCK_READING)
				ctlsock_read(c, k);
			else if (k->state == CTLSOCK_WRITING)
				ctlsock_write(k);
		}
		ctlsock_expire(c, now_mono_ms());
	}
	ctlsock_release_all(c);
	if (c->ep)
		epoch_unregister();
	return NULL;
}

/* Bind with the final mode: Linux gives the socket file the mode of the
 * socket's inode (less the umask), so fchmod before bind leaves no moment
 * in which another user could connect; the umask is process-wide and other
 * threads may be creating files, so it is not touched. The check after
 * bind catches a kernel that does it otherwise. */
static int ctlsock_bind(struct ctlsock *c)
{
	struct sockaddr_un sa;
	struct stat st;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
	(void)unlink(c->path); /* left by a killed etrnd */
	if (fchmod(c->fd, CTLSOCK_MODE) || bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)))
		return -errno;
	if (stat(c->path, &st) || (st.st_mode & 0777) != CTLSOCK_MODE) {
		(void)unlink(c->path);
		return -EPERM;
	}
	return listen(c->fd, CTLSOCK_BACKLOG) ? -errno : 0;
}

struct ctlsock *ctlsock_start(const char *path, ctlsock_fn fn, void *arg,
			      struct epoch *ep, char *err, size_t errlen)
{
	struct ctlsock *c = calloc(1, sizeof(*c));
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
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	c->stopfd = eventfd(0, EFD_CLOEXEC);
	if (c->fd < 0 || c->stopfd < 0) {
		snprintf(err, errlen, "control socket: %s", strerror(errno));
		goto fail;
	}
	rc = ctlsock_bind(c);
	if (rc) {
		snprintf(err, errlen, "control_socket %s: %s", c->path,
			 rc == -EPERM ? "created without mode 0600" : strerror(-rc));
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
