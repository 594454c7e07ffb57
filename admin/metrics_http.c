/* SPDX-License-Identifier: MIT */
/*
 * metrics_http: see metrics_http.h. One thread polls the listener and up to
 * METRICS_HTTP_CONNS_MAX connections, each non-blocking with one deadline
 * for the whole request (accept to last answer byte). A full table makes
 * room by closing its oldest connection, so clients that trickle bytes or
 * never read (slowloris) cost only their own slots and never keep a
 * scraper out. The node-wide gauges are metrics_http_node.c's.
 */
#include "admin/metrics_http.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/epoch.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/now.h"

#define METRICS_HTTP_BACKLOG 64
/* accept failing for want of descriptors: stop polling the listener this
 * long instead of spinning on it. */
#define METRICS_HTTP_ACCEPT_PAUSE_MS 100
/* The exposition format's content type (text format 0.0.4). */
#define METRICS_HTTP_CTYPE "text/plain; version=0.0.4; charset=utf-8"

/* One connection's life: its request head comes in, then the answer goes
 * out; FREE slots are unused. */
enum metrics_http_state {
	METRICS_HTTP_FREE = 0,
	METRICS_HTTP_READING,
	METRICS_HTTP_WRITING,
};

static const char *const metrics_http_state_names[] = { "FREE", "READING", "WRITING" };

struct metrics_http_conn {
	enum metrics_http_state state;
	int fd;
	unsigned id;          /* for log lines: the n-th connection taken */
	uint64_t since;       /* now_mono_ms() at accept: the oldest goes first */
	uint64_t deadline;    /* now_mono_ms() by which the answer must be out */
	size_t n;             /* bytes in in[] */
	size_t off;           /* answer bytes already written */
	struct buf out;
	char in[METRICS_HTTP_REQUEST_MAX];
};

struct metrics_http {
	const struct config *cfg;
	struct metrics_sources src;
	pthread_t thread;
	int fd, stopfd;
	unsigned taken;
	uint64_t accept_paused_until; /* now_mono_ms(); 0 = not paused */
	struct metrics_http_conn conn[METRICS_HTTP_CONNS_MAX];
};

/* ---- the request head (pure) --------------------------------------------- */

/* "METHOD SP /target SP HTTP/1.x": 0, or the status to answer, negated. */
static int metrics_http_request_line(const char *p, size_t len, struct metrics_http_req *rq)
{
	const char *sp1 = memchr(p, ' ', len), *sp2, *q;
	size_t vlen;

	if (!sp1 || sp1 == p)
		return -400;
	sp2 = memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - p));
	if (!sp2 || sp2 == sp1 + 1 || sp1[1] != '/')
		return -400;
	for (const char *c = p; c < sp1; c++)
		if (*c < 'A' || *c > 'Z')
			return -400;
	vlen = len - (size_t)(sp2 + 1 - p);
	if (vlen < 5 || memcmp(sp2 + 1, "HTTP/", 5))
		return -400;
	if (vlen != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) || (sp2[8] != '0' && sp2[8] != '1'))
		return -505;
	rq->method = p;
	rq->method_len = (size_t)(sp1 - p);
	rq->path = sp1 + 1;
	q = memchr(rq->path, '?', (size_t)(sp2 - rq->path));
	rq->path_len = (size_t)((q ? q : sp2) - rq->path);
	rq->head = rq->method_len == 4 && !memcmp(p, "HEAD", 4);
	return 0;
}

int metrics_http_parse(const char *p, size_t n, struct metrics_http_req *rq)
{
	/* Only the first METRICS_HTTP_REQUEST_MAX bytes count, so a head that
	 * ends past them is refused however the bytes arrived. */
	size_t lim = n < METRICS_HTTP_REQUEST_MAX ? n : METRICS_HTTP_REQUEST_MAX;
	size_t start = 0;
	unsigned line = 0;

	for (size_t i = 0; i < lim; i++) {
		size_t len;
		int rc;

		if (p[i] == '\0')
			return -400;
		if (p[i] == '\r' && i + 1 < lim && p[i + 1] != '\n')
			return -400; /* a bare CR: no smuggling games */
		if (p[i] != '\n') {
			if (line == 0 && i >= METRICS_HTTP_LINE_MAX)
				return -414;
			continue;
		}
		len = i - start;
		if (len && p[i - 1] == '\r')
			len--;
		if (line == 0 && (rc = metrics_http_request_line(p, len, rq)))
			return rc;
		if (line > 0 && len == 0)
			return (int)(i + 1);
		line++;
		start = i + 1;
	}
	return n >= METRICS_HTTP_REQUEST_MAX ? -431 : 0;
}

/* ---- answers ---------------------------------------------------------------- */

static const char *metrics_http_reason(int status)
{
	static const struct { int status; const char *reason; } reasons[] = {
		{ 200, "OK" }, { 400, "Bad Request" }, { 404, "Not Found" },
		{ 405, "Method Not Allowed" }, { 414, "URI Too Long" },
		{ 431, "Request Header Fields Too Large" }, { 500, "Internal Server Error" },
		{ 505, "HTTP Version Not Supported" },
	};

	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].status == status)
			return reasons[i].reason;
	return "Error";
}

/* The page a path serves: fills body, returns the status. */
typedef int (*metrics_http_page_fn)(struct metrics_http *m, struct buf *body,
				    const char **ctype);

static int metrics_http_page_metrics(struct metrics_http *m, struct buf *body,
				     const char **ctype)
{
	*ctype = METRICS_HTTP_CTYPE;
	if (metrics_format(body) || metrics_http_node_gauges(m->cfg, &m->src, body) ||
	    metrics_dnsbl_format(body, &m->cfg->dnsbl)) {
		log_warn("metrics: the answer would pass %u bytes or memory ran out: 500",
			 METRICS_HTTP_BODY_MAX);
		return 500;
	}
	return 200;
}

static int metrics_http_page_index(struct metrics_http *m, struct buf *body,
				   const char **ctype)
{
	*ctype = "text/html; charset=utf-8";
	(void)buf_puts(body, "<html><head><title>etrnd</title></head><body>"
		       "<h1>etrnd</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n");
	return 200;
}

/* The paths served; GET and HEAD only. */
static const struct metrics_http_page {
	const char *path;
	metrics_http_page_fn proceed;
} metrics_http_pages[] = {
	{ "/metrics", metrics_http_page_metrics },
	{ "/", metrics_http_page_index },
};

/* The whole answer for a parsed head (rc > 0) or a parse error (rc < 0)
 * into out. */
static void metrics_http_answer(struct metrics_http *m, int rc,
				const struct metrics_http_req *rq, struct buf *out)
{
	struct buf body;
	const char *ctype = "text/plain; charset=utf-8", *extra = "";
	int status = rc < 0 ? -rc : 404, head = rc > 0 && rq->head;

	buf_init(&body, METRICS_HTTP_BODY_MAX);
	if (rc > 0 && !head && !(rq->method_len == 3 && !memcmp(rq->method, "GET", 3))) {
		status = 405;
		extra = "Allow: GET, HEAD\r\n";
	}
	for (size_t i = 0; rc > 0 && status == 404 &&
	     i < sizeof(metrics_http_pages) / sizeof(metrics_http_pages[0]); i++) {
		const struct metrics_http_page *pg = &metrics_http_pages[i];

		if (strlen(pg->path) == rq->path_len && !memcmp(pg->path, rq->path, rq->path_len))
			status = pg->proceed(m, &body, &ctype);
	}
	if (status != 200) {
		buf_reset(&body);
		(void)buf_printf(&body, "%d %s\n", status, metrics_http_reason(status));
	}
	if (buf_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		       "Connection: close\r\n%s\r\n", status, metrics_http_reason(status), ctype,
		       body.len, extra) == 0 && !head && body.len)
		(void)buf_append(out, body.data, body.len);
	buf_free(&body);
}

/* ---- connections ------------------------------------------------------------ */

/* The one place a connection changes state; FREE closes and releases it. */
static void metrics_http_enter_state(struct metrics_http_conn *k, enum metrics_http_state st)
{
	log_debug("metrics client %u: %s -> %s", k->id, metrics_http_state_names[k->state],
		  metrics_http_state_names[st]);
	k->state = st;
	if (st == METRICS_HTTP_FREE) {
		close(k->fd);
		k->fd = -1;
		buf_free(&k->out);
	}
}

/* Write what the socket takes now; FREE once the answer is out or the
 * client is gone. */
static void metrics_http_write(struct metrics_http_conn *k)
{
	while (k->off < k->out.len) {
		ssize_t w = send(k->fd, k->out.data + k->off, k->out.len - k->off, MSG_NOSIGNAL);

		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (w <= 0)
			break;
		k->off += (size_t)w;
	}
	/* Our FIN first; bytes the client sent past its head are not read. */
	(void)shutdown(k->fd, SHUT_WR);
	metrics_http_enter_state(k, METRICS_HTTP_FREE);
}

static void metrics_http_read(struct metrics_http *m, struct metrics_http_conn *k)
{
	for (;;) {
		struct metrics_http_req rq = { 0 };
		ssize_t r = read(k->fd, k->in + k->n, sizeof(k->in) - k->n);
		int rc;

		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (r <= 0) { /* gone before its head was complete */
			metrics_http_enter_state(k, METRICS_HTTP_FREE);
			return;
		}
		k->n += (size_t)r;
		rc = metrics_http_parse(k->in, k->n, &rq);
		if (rc == 0)
			continue;
		if (rc < 0)
			log_info("metrics client %u: bad request: %d", k->id, -rc);
		metrics_http_answer(m, rc, &rq, &k->out);
		metrics_http_enter_state(k, METRICS_HTTP_WRITING);
		metrics_http_write(k);
		return;
	}
}

/* The slot for a new connection: a free one, or else the oldest one's,
 * closed (whatever it was doing, it has had the longest). */
static struct metrics_http_conn *metrics_http_slot(struct metrics_http *m)
{
	struct metrics_http_conn *old = &m->conn[0];

	for (unsigned i = 0; i < METRICS_HTTP_CONNS_MAX; i++) {
		if (m->conn[i].state == METRICS_HTTP_FREE)
			return &m->conn[i];
		if (m->conn[i].since < old->since)
			old = &m->conn[i];
	}
	log_debug("metrics client %u: closed for a newer connection (%d at once)", old->id,
		  METRICS_HTTP_CONNS_MAX);
	metrics_http_enter_state(old, METRICS_HTTP_FREE);
	return old;
}

static void metrics_http_accept(struct metrics_http *m, uint64_t now)
{
	for (;;) {
		struct metrics_http_conn *k;
		int fd = accept4(m->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
				log_warn("metrics: accept: %s; pausing %d ms", strerror(errno),
					 METRICS_HTTP_ACCEPT_PAUSE_MS);
				m->accept_paused_until = now + METRICS_HTTP_ACCEPT_PAUSE_MS;
			}
			return;
		}
		k = metrics_http_slot(m);
		k->fd = fd;
		k->id = ++m->taken;
		k->n = k->off = 0;
		k->since = now;
		k->deadline = now + METRICS_HTTP_DEADLINE_MS;
		buf_init(&k->out, 0); /* bounded by the answer built */
		metrics_http_enter_state(k, METRICS_HTTP_READING);
	}
}

/* p[]: the stop eventfd, each busy connection, then the listener unless
 * accept is paused. *timeout: the nearest deadline (or the pause's end). */
static nfds_t metrics_http_pollset(struct metrics_http *m, struct pollfd *p, int *slot,
				   uint64_t now, int *timeout)
{
	nfds_t n = 1;

	p[0] = (struct pollfd){ m->stopfd, POLLIN, 0 };
	*timeout = -1;
	for (unsigned i = 0; i < METRICS_HTTP_CONNS_MAX; i++) {
		struct metrics_http_conn *k = &m->conn[i];
		int left;

		if (k->state == METRICS_HTTP_FREE)
			continue;
		left = k->deadline > now ? (int)(k->deadline - now) : 0;
		if (*timeout < 0 || left < *timeout)
			*timeout = left;
		slot[n] = (int)i;
		p[n++] = (struct pollfd){ k->fd,
			k->state == METRICS_HTTP_READING ? POLLIN : POLLOUT, 0 };
	}
	if (now < m->accept_paused_until) {
		int left = (int)(m->accept_paused_until - now);

		if (*timeout < 0 || left < *timeout)
			*timeout = left;
	} else {
		slot[n] = -1;
		p[n++] = (struct pollfd){ m->fd, POLLIN, 0 };
	}
	return n;
}

/* Past its deadline a connection is closed, however much it sent: the
 * deadline is for the whole request, not per byte. */
static void metrics_http_expire(struct metrics_http *m, uint64_t now)
{
	for (unsigned i = 0; i < METRICS_HTTP_CONNS_MAX; i++) {
		struct metrics_http_conn *k = &m->conn[i];

		if (k->state == METRICS_HTTP_FREE || now < k->deadline)
			continue;
		log_info("metrics client %u: no whole request and answer within %d ms: closed",
			 k->id, METRICS_HTTP_DEADLINE_MS);
		metrics_http_enter_state(k, METRICS_HTTP_FREE);
	}
}

static void *metrics_http_main(void *arg)
{
	struct metrics_http *m = arg;
	struct pollfd p[METRICS_HTTP_CONNS_MAX + 2];
	int slot[METRICS_HTTP_CONNS_MAX + 2], timeout;

	/* A reader of the domain table (the top domains' names), online only
	 * while it walks it (metrics_http_node.c). */
	if (m->src.ep && epoch_register(m->src.ep)) {
		log_err("metrics: no epoch slot; the top domains are left out");
		m->src.ep = NULL;
		m->src.dt = NULL;
	}
	if (m->src.ep)
		epoch_offline();
	for (;;) {
		nfds_t n = metrics_http_pollset(m, p, slot, now_mono_ms(), &timeout);

		if (poll(p, n, timeout) < 0 && errno != EINTR) {
			log_err("metrics: poll: %s", strerror(errno));
			break;
		}
		if (p[0].revents)
			break;
		for (nfds_t i = 1; i < n; i++) {
			struct metrics_http_conn *k = slot[i] < 0 ? NULL : &m->conn[slot[i]];

			if (!p[i].revents)
				continue;
			if (!k)
				metrics_http_accept(m, now_mono_ms());
			else if (k->state == METRICS_HTTP_READING)
				metrics_http_read(m, k);
			else if (k->state == METRICS_HTTP_WRITING)
				metrics_http_write(k);
		}
		metrics_http_expire(m, now_mono_ms());
	}
	for (unsigned i = 0; i < METRICS_HTTP_CONNS_MAX; i++)
		if (m->conn[i].state != METRICS_HTTP_FREE)
			metrics_http_enter_state(&m->conn[i], METRICS_HTTP_FREE);
	if (m->src.ep)
		epoch_unregister();
	return NULL;
}

static int metrics_http_bind(struct metrics_http *m, char *err, size_t errlen)
{
	const struct config_listen *l = &m->cfg->metrics;
	int one = 1;

	m->fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (m->fd < 0) {
		snprintf(err, errlen, "metrics_listen %s: socket: %s", l->text, strerror(errno));
		return -1;
	}
	(void)setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(m->fd, (const struct sockaddr *)&l->addr, l->addrlen) ||
	    listen(m->fd, METRICS_HTTP_BACKLOG)) {
		snprintf(err, errlen, "metrics_listen %s: bind: %s", l->text, strerror(errno));
		return -1;
	}
	return 0;
}

struct metrics_http *metrics_http_start(const struct config *cfg,
					const struct metrics_sources *src, char *err, size_t errlen)
{
	struct metrics_http *m = calloc(1, sizeof(*m));
	int rc;

	if (!m) {
		snprintf(err, errlen, "metrics: out of memory");
		return NULL;
	}
	m->cfg = cfg;
	m->src = *src;
	m->stopfd = -1;
	for (unsigned i = 0; i < METRICS_HTTP_CONNS_MAX; i++)
		m->conn[i].fd = -1;
	if (metrics_http_bind(m, err, errlen))
		goto fail;
	m->stopfd = eventfd(0, EFD_CLOEXEC);
	if (m->stopfd < 0) {
		snprintf(err, errlen, "metrics: eventfd: %s", strerror(errno));
		goto fail;
	}
	/* pthread_create returns the error; it does not set errno. */
	rc = pthread_create(&m->thread, NULL, metrics_http_main, m);
	if (rc) {
		snprintf(err, errlen, "metrics: pthread_create: %s", strerror(rc));
		goto fail;
	}
	log_info("metrics on http://%s/metrics", cfg->metrics.text);
	return m;
fail:
	if (m->fd >= 0)
		close(m->fd);
	if (m->stopfd >= 0)
		close(m->stopfd);
	free(m);
	return NULL;
}

struct metrics_http *metrics_http_stop(struct metrics_http *m)
{
	uint64_t one = 1;

	if (!m)
		return NULL;
	if (write(m->stopfd, &one, sizeof(one)) != sizeof(one))
		log_warn("metrics: cannot wake the endpoint's thread: %s", strerror(errno));
	pthread_join(m->thread, NULL);
	close(m->fd);
	close(m->stopfd);
	free(m);
	return NULL;
}
