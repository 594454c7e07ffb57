/* SPDX-License-Identifier: MIT */
/*
 * etrnctl_etrn: `etrnctl etrn` (see etrnctl_etrn.h). The ETRN session is
 * proto/etrn_client's state machine driven over one blocking-with-poll
 * socket; TLS, when the policy asks and the upstream offers it, is a
 * core/tls.h tls_conn between the two. --atrn is etrnctl_atrn.c's.
 */
#include "admin/etrnctl_etrn.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "admin/etrnctl_atrn.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/log.h"
#include "core/tls.h"
#include "core/units.h"
#include "proto/etrn_client.h"

enum { ETRNCTL_OK = 0, ETRNCTL_FAIL = 1, ETRNCTL_USAGE = 2 };

/* A reply line from the upstream (RFC 5321 4.5.3.1.5 says 512; servers
 * send more) and the lines of one reply (EHLO has about 15). */
#define ETRNCTL_ETRN_LINE_MAX 4096
#define ETRNCTL_ETRN_LINES_MAX 100
/* One receive; and what we buffer from the upstream at most. */
#define ETRNCTL_ETRN_RECV 16384
#define ETRNCTL_ETRN_IN_MAX (1u << 20)
#define ETRNCTL_ETRN_ERR_MAX 512
#define ETRNCTL_PORT_TEXT_MAX 8

/* One connection to the upstream: the socket, its TLS once started, what
 * is waiting to be fed to the client, and the time limit of each wait. */
struct ee_conn {
	int fd;
	int timeout_ms;
	const char *host;               /* SNI and the name verify checks */
	struct tls_ctx *ctx;            /* NULL with tls none */
	struct tls_conn *tls;           /* NULL until STARTTLS */
	struct buf plain;               /* received plaintext not fed yet */
	struct buf wire;                /* ciphertext to send */
	int eof;
	char err[ETRNCTL_ETRN_ERR_MAX];
};

static int ee_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int ee_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("etrnctl: etrn: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n" ETRNCTL_ETRN_USAGE, stderr);
	return ETRNCTL_USAGE;
}

/* "host", "host:port", "[host]:port", "[v6]" -> host and port (default
 * dflt). 0, or -1 when it is none of these. */
static int ee_target(const char *t, unsigned dflt, char *host, size_t hl, unsigned *port)
{
	const char *h = t, *colon, *end;
	char *e;
	unsigned long p = dflt;

	if (t[0] == '[') {
		h = t + 1;
		end = strchr(h, ']');
		if (!end || (end[1] && end[1] != ':'))
			return -1;
		colon = end[1] ? end + 1 : NULL;
	} else {
		colon = strchr(t, ':');
		if (colon && strchr(colon + 1, ':'))
			return -1;  /* a bare IPv6 address: brackets say where it ends */
		end = colon ? colon : t + strlen(t);
	}
	if (end == h || (size_t)(end - h) >= hl)
		return -1;
	if (colon) {
		errno = 0;
		p = strtoul(colon + 1, &e, 10);
		if (!colon[1] || *e || errno || p == 0 || p > 65535)
			return -1;
	}
	memcpy(host, h, (size_t)(end - h));
	host[end - h] = '\0';
	*port = (unsigned)p;
	return 0;
}

/* --tls as etrnd.conf spells an activator's tls (enum config_activator_tls). */
static int ee_tls_level(const char *s)
{
	if (!s)
		return CONFIG_ACTIVATOR_TLS_MAY;
	for (int t = CONFIG_ACTIVATOR_TLS_NONE; t <= CONFIG_ACTIVATOR_TLS_VERIFY; t++)
		if (!strcmp(s, config_activator_tls_name(t)))
			return t;
	return -1;
}

static int ee_timeout(const struct etrnctl_etrn *e)
{
	uint64_t ms = ETRNCTL_ETRN_TIMEOUT_DEFAULT_MS;

	if (e->timeout && (units_parse_duration(e->timeout, &ms, NULL, 0) || ms == 0 ||
	    ms > INT32_MAX))
		return -1;
	return (int)ms;
}

int etrnctl_etrn_check(const struct etrnctl_etrn *e)
{
	char host[CONFIG_HOSTNAME_MAX], why[UNITS_WHY_MAX] = "";
	unsigned port;
	uint64_t ms;

	if (ee_target(e->target, CONFIG_ETRN_PORT, host, sizeof(host), &port))
		return ee_usage("\"%s\": want HOST[:PORT] or [HOST]:PORT", e->target);
	if (!e->atrn && e->nnodes == 0)
		return ee_usage("want at least one DOMAIN, @DOMAIN or #QUEUE");
	if (e->nnodes > ETRN_CLIENT_REQUESTS_MAX)
		return ee_usage("more than %u requests", (unsigned)ETRN_CLIENT_REQUESTS_MAX);
	for (unsigned i = 0; i < e->nnodes; i++) {
		const char *n = e->nodes[i];
		if (!n[0] || n[strspn(n, "@#")] == '\0' || strpbrk(n, " \t\r\n,") ||
		    strlen(n) >= CONFIG_ACTIVATOR_REQUEST_MAX)
			return ee_usage("\"%s\": want DOMAIN, @DOMAIN or #QUEUE", n);
		if (e->atrn && (n[0] == '@' || n[0] == '#'))
			return ee_usage("--atrn \"%s\": ATRN asks for domains only (RFC 2645)",
					n);
	}
	if (ee_tls_level(e->tls) < 0)
		return ee_usage("--tls \"%s\": want none, may, must or verify", e->tls);
	if (e->timeout && (units_parse_duration(e->timeout, &ms, why, sizeof(why)) || ms == 0 ||
	    ms > INT32_MAX))
		return ee_usage("--timeout \"%s\": %s", e->timeout,
				why[0] ? why : "want more than 0 and at most 24d");
	if (e->atrn && (!e->user || !e->password))
		return ee_usage("--atrn needs --user USER and --password-stdin");
	if (!e->user != !e->password)
		return ee_usage("--user and --password-stdin go together");
	if (e->helo && (!e->helo[0] || strpbrk(e->helo, " \t\r\n")))
		return ee_usage("--helo \"%s\": want a host name", e->helo);
	if (e->ca_file && ee_tls_level(e->tls) != CONFIG_ACTIVATOR_TLS_VERIFY)
		return ee_usage("--ca-file goes with --tls verify");
	return ETRNCTL_OK;
}

/* ---- the socket -------------------------------------------------------- */

/* Wait for events on c->fd at most c->timeout_ms (or wait_ms when smaller
 * and not 0). 0, or -ETIMEDOUT, -errno. */
static int ee_wait(struct ee_conn *c, short events, int wait_ms)
{
	struct pollfd p = { .fd = c->fd, .events = events };
	int ms = wait_ms > 0 && wait_ms < c->timeout_ms ? wait_ms : c->timeout_ms, r;

	do
		r = poll(&p, 1, ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return r == 0 ? -ETIMEDOUT : 0;
}

/* Connect to one address within the timeout. 0 or -errno. */
static int ee_connect_one(struct ee_conn *c, const struct addrinfo *ai)
{
	int err = 0, r;
	socklen_t el = sizeof(err);

	c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
		       ai->ai_protocol);
	if (c->fd < 0)
		return -errno;
	if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return 0;
	if (errno != EINPROGRESS)
		err = errno;
	else if ((r = ee_wait(c, POLLOUT, 0)) < 0)
		err = -r;
	else if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el))
		err = errno;
	if (err) {
		close(c->fd);
		c->fd = -1;
	}
	return -err;
}

/* The upstream's addresses (A/AAAA, never MX), each tried in turn. */
static int ee_connect(struct ee_conn *c, unsigned port)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_ADDRCONFIG }, *res = NULL;
	char ps[ETRNCTL_PORT_TEXT_MAX];
	int r;

	snprintf(ps, sizeof(ps), "%u", port);
	r = getaddrinfo(c->host, ps, &hints, &res);
	if (r) {
		snprintf(c->err, sizeof(c->err), "%s: %s", c->host,
			 r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
		return -1;
	}
	r = -EHOSTUNREACH;
	for (const struct addrinfo *ai = res; ai && r; ai = ai->ai_next)
		r = ee_connect_one(c, ai);
	freeaddrinfo(res);
	if (r)
		snprintf(c->err, sizeof(c->err), "connect to %s port %u: %s", c->host, port,
			 r == -ETIMEDOUT ? "timed out" : strerror(-r));
	return r ? -1 : 0;
}

/* Send all of p within the timeout (each wait bounded). 0 or -errno. */
static int ee_send_raw(struct ee_conn *c, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		int r;

		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		if ((r = ee_wait(c, POLLOUT, 0)) < 0)
			return r;
	}
	return 0;
}

/* out (plaintext) to the wire: through TLS once it is up. out is emptied. */
static int ee_flush(struct ee_conn *c, struct buf *out)
{
	int r = 0;

	if (c->tls && out->len && tls_conn_write(c->tls, out->data, out->len) < 0)
		r = -EPIPE;
	if (!c->tls && out->len)
		r = ee_send_raw(c, out->data, out->len);
	buf_reset(out);
	if (!r && c->tls && tls_conn_take(c->tls, &c->wire))
		r = -ENOMEM;
	if (!r && c->wire.len)
		r = ee_send_raw(c, c->wire.data, c->wire.len);
	buf_reset(&c->wire);
	return r;
}

static int ee_plain(void *arg, const char *p, size_t n)
{
	struct ee_conn *c = arg;

	return buf_append(&c->plain, p, n) ? -1 : 0;
}

/* One receive into c->plain (decrypted when TLS is on), waiting at most
 * wait_ms (0: the timeout). 0 (something or EOF: c->eof), or -ETIMEDOUT,
 * -EPROTO (TLS failed: c->err), -errno. */
static int ee_recv(struct ee_conn *c, int wait_ms)
{
	static const struct tls_conn_sink sink = { NULL, ee_plain };
	char in[ETRNCTL_ETRN_RECV];
	ssize_t n;
	int r;

	if ((r = ee_wait(c, POLLIN, wait_ms)) < 0)
		return r;
	do
		n = recv(c->fd, in, sizeof(in), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	if (c->plain.len + (size_t)n > ETRNCTL_ETRN_IN_MAX)
		return -EMSGSIZE;
	c->eof = n == 0;
	if (!c->tls)
		return n && buf_append(&c->plain, in, (size_t)n) ? -ENOMEM : 0;
	r = n ? tls_conn_input(c->tls, in, (size_t)n, &sink, c) : 0;
	if (r == TLS_CONN_EOF)
		c->eof = 1;
	if (r < 0)
		snprintf(c->err, sizeof(c->err), "TLS: %s", tls_conn_error(c->tls));
	return r < 0 ? -EPROTO : 0;
}

/* The TLS handshake after the upstream's 220 to STARTTLS. 0, or -1 with
 * c->err saying why. */
static int ee_handshake(struct ee_conn *c)
{
	struct buf none;
	int r = 0;

	buf_init(&none, 0);
	buf_reset(&c->plain);   /* nothing after the 220 counts (RFC 3207 5) */
	c->tls = tls_conn_new(c->ctx, c->host);
	if (!c->tls) {
		snprintf(c->err, sizeof(c->err), "TLS: out of memory");
		return -1;
	}
	while (r == 0 && tls_conn_state(c->tls) == TLS_CONN_HANDSHAKE && !c->eof) {
		if ((r = ee_flush(c, &none)) == 0)
			r = ee_recv(c, 0);
	}
	if (r == 0 && tls_conn_state(c->tls) == TLS_CONN_UP)
		return ee_flush(c, &none) ? -1 : 0;
	if (!c->err[0])
		snprintf(c->err, sizeof(c->err), "TLS handshake: %s",
			 r == -ETIMEDOUT ? "timed out" : c->eof ? "connection closed" :
			 r < 0 ? strerror(-r) : tls_conn_error(c->tls));
	return -1;
}

/* ---- the session ------------------------------------------------------- */

/* The upstream said 220 to STARTTLS: the handshake, then the certificate
 * judged by the policy (verify: chain and name). What the client says next
 * (EHLO, or QUIT when refused) goes to out. */
static enum etrn_client_event ee_starttls(struct ee_conn *c, struct etrn_client *ec,
					  int verify, struct buf *out)
{
	const struct tls_info *ti;
	char why[ETRNCTL_ETRN_ERR_MAX];

	if (ee_handshake(c))
		return etrn_client_abort(ec, c->err);
	ti = tls_conn_info(c->tls);
	if (verify && !ti->verified) {
		snprintf(why, sizeof(why), "the certificate of %s did not verify: %s", c->host,
			 ti->verify_error);
		if (etrn_client_tls_reject(ec, out, why))
			return etrn_client_abort(ec, why);
		return ETRN_CLIENT_EV_NEED_INPUT;
	}
	if (etrn_client_tls_up(ec, out))
		return etrn_client_abort(ec, "out of memory");
	return ETRN_CLIENT_EV_NEED_INPUT;
}

/* Wait for the upstream (the client's own timer or ours, the smaller);
 * what stops the session is the client's reply to it. */
static enum etrn_client_event ee_input(struct ee_conn *c, struct etrn_client *ec)
{
	char why[ETRNCTL_ETRN_ERR_MAX];
	int r;

	if (c->eof)  /* fed as EOF already: the client must have closed */
		return etrn_client_abort(ec, "connection closed by the upstream");
	r = ee_recv(c, (int)etrn_client_timeout_ms(ec));
	if (r == 0)
		return ETRN_CLIENT_EV_NEED_INPUT;
	snprintf(why, sizeof(why), "%s", r == -ETIMEDOUT ? "timed out waiting for the upstream" :
		 r == -EPROTO ? c->err : strerror(-r));
	return etrn_client_abort(ec, why);
}

/* Drive the client from the greeting to its close. */
static void ee_session(struct ee_conn *c, struct etrn_client *ec, int verify)
{
	enum etrn_client_event ev = ETRN_CLIENT_EV_NEED_INPUT;
	struct buf out;

	buf_init(&out, 0);
	while (ev != ETRN_CLIENT_EV_CLOSE) {
		ev = ETRN_CLIENT_EV_NEED_INPUT;
		if (c->plain.len || c->eof)
			buf_consume(&c->plain, etrn_client_feed(ec, c->plain.data, c->plain.len,
								&out, &ev));
		if (ee_flush(c, &out)) {
			ev = etrn_client_abort(ec, "lost connection: write failed");
			break;
		}
		if (ev == ETRN_CLIENT_EV_STARTTLS)
			ev = ee_starttls(c, ec, verify, &out);
		else if (ev == ETRN_CLIENT_EV_REVERSE)  /* not ours: ETRN only here */
			ev = etrn_client_abort(ec, "the upstream reversed the connection");
		else if (ev == ETRN_CLIENT_EV_NEED_INPUT && !c->plain.len)
			ev = ee_input(c, ec);
	}
	(void)ee_flush(c, &out);
	if (c->tls && tls_conn_state(c->tls) == TLS_CONN_UP) {
		(void)tls_conn_shutdown(c->tls);
		(void)ee_flush(c, &out);
	}
	buf_free(&out);
}

/* Each request's reply with its meaning on stdout; why the session ended
 * early on stderr. */
static void ee_report(const struct etrnctl_etrn *e, const struct etrn_client *ec,
		      const char *host, unsigned port)
{
	const struct etrn_client_reply *cr = etrn_client_close_reason(ec);

	for (unsigned i = 0; i < etrn_client_nresults(ec); i++) {
		const struct etrn_client_reply *r = etrn_client_result(ec, i);

		if (r->code == 0) {
			printf("%s: not answered\n", e->nodes[i]);
			continue;
		}
		printf("%s: %d%s%s %s (%s%s)\n", e->nodes[i], r->code, r->enh[0] ? " " : "",
		       r->enh, r->text, etrn_client_meaning(ETRN_CLIENT_ETRN, r->code),
		       r->local ? "; said by etrnctl, not the upstream" : "");
	}
	if (cr)
		fprintf(stderr, "etrnctl: etrn: %s port %u: %d%s%s %s\n", host, port, cr->code,
			cr->enh[0] ? " " : "", cr->enh, cr->text);
}

/* This host's name for EHLO when --helo is not given. */
static void ee_helo(char *name, size_t len)
{
	if (gethostname(name, len) || !name[0] || memchr(name, '\0', len) == NULL)
		snprintf(name, len, "localhost");
}

/* ETRN over our own connection. Returns the exit status. */
static int ee_etrn(const struct etrnctl_etrn *e, const char *host, unsigned port, int tls,
		   int timeout_ms)
{
	char helo[CONFIG_HOSTNAME_MAX], err[ETRNCTL_ETRN_ERR_MAX];
	struct tls_ctx_conf tc = { .ca_file = e->ca_file };
	struct ee_conn c = { .fd = -1, .timeout_ms = timeout_ms, .host = host };
	struct etrn_client_conf conf = {
		.helo_name = e->helo ? e->helo : helo, .method = ETRN_CLIENT_ETRN,
		.tls = tls == CONFIG_ACTIVATOR_TLS_NONE ? SMTP_CLIENT_TLS_NONE :
		       tls == CONFIG_ACTIVATOR_TLS_MAY ? SMTP_CLIENT_TLS_MAY : SMTP_CLIENT_TLS_MUST,
		.user = e->user, .pass = e->password,
		/* tls none with credentials: the operator's explicit choice */
		.auth_cleartext = tls == CONFIG_ACTIVATOR_TLS_NONE,
		.nreq = e->nnodes, .req = (const char *const *)e->nodes,
		.reply_line_max = ETRNCTL_ETRN_LINE_MAX, .max_reply_lines = ETRNCTL_ETRN_LINES_MAX,
	};
	struct etrn_client *ec = NULL;
	int rc = ETRNCTL_FAIL;

	ee_helo(helo, sizeof(helo));
	buf_init(&c.plain, ETRNCTL_ETRN_IN_MAX);
	buf_init(&c.wire, 0);
	if (tls != CONFIG_ACTIVATOR_TLS_NONE && !(c.ctx = tls_ctx_new(TLS_CLIENT, &tc, err,
								    sizeof(err)))) {
		fprintf(stderr, "etrnctl: etrn: TLS: %s\n", err);
		goto done;
	}
	if (ee_connect(&c, port)) {
		fprintf(stderr, "etrnctl: etrn: %s\n", c.err);
		goto done;
	}
	if (!(ec = etrn_client_new(&conf))) {
		fprintf(stderr, "etrnctl: etrn: out of memory\n");
		goto done;
	}
	ee_session(&c, ec, tls == CONFIG_ACTIVATOR_TLS_VERIFY);
	ee_report(e, ec, host, port);
	rc = etrn_client_ok(ec) ? ETRNCTL_OK : ETRNCTL_FAIL;
done:
	etrn_client_free(ec);
	if (c.fd >= 0)
		close(c.fd);
	tls_conn_free(c.tls);
	tls_ctx_free(c.ctx);
	buf_free(&c.plain);
	buf_free(&c.wire);
	return rc;
}

int etrnctl_etrn_run(const struct etrnctl_etrn *e)
{
	char host[CONFIG_HOSTNAME_MAX];
	unsigned port;
	int rc = etrnctl_etrn_check(e), tls = ee_tls_level(e->tls), timeout_ms = ee_timeout(e);

	if (rc)
		return rc;
	(void)ee_target(e->target, e->atrn ? CONFIG_ODMR_PORT : CONFIG_ETRN_PORT, host,
			sizeof(host), &port);
	if (e->atrn)
		return etrnctl_atrn_run(e, host, port, tls, timeout_ms);
	/* The client's own info lines would repeat what is printed here. */
	log_init("etrnctl", LOGL_WARN, 0);
	rc = ee_etrn(e, host, port, tls, timeout_ms);
	return fflush(stdout) ? ETRNCTL_FAIL : rc;
}
