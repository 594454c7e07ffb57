/* SPDX-License-Identifier: MIT */
/*
 * Tests for smtpd_adopt_reversed() (proto/smtpd.h): ATRN's reversed
 * session on the customer's side, with a real engine thread (loop, spool
 * shard, domain table: tests/unit/engine_fixture.h) and the test playing
 * the upstream on loopback. The engine connects out, reads the upstream's
 * "250" to its ATRN, detaches the connection and hands the parcel to the
 * smtpd, as an activator does; the upstream then gets our 220 and sends
 * mail. Plain and inside TLS; the end by QUIT, idle timeout, a vanished
 * upstream and shutdown; no free slot (-EMFILE).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"
#include "core/tls.h"
#include "engine_fixture.h"
#include "loopback.h"
#include "proto/auth.h"
#include "proto/smtpd.h"
#include "tls_certs.h"

#define RV_CUSTOMER "customer.test"         /* a row: our customer's domain */
#define RV_UPSTREAM "activator t: upstream.test[127.0.0.1]"
#define RV_IDLE_MS 300                      /* atrn_idle_timeout in the idle test */
#define RV_LONG_IDLE_MS 20000               /* ... in the others: never reached */
#define RV_IDLE_TIMEOUT_MS 60000            /* idle_timeout, which must not apply */
#define RV_LINE_MAX 512
#define RV_RCV_TIMEOUT_S 20                 /* the upstream's reads never block longer */
#define RV_ATRN_OK "250 OK now reversing the connection\r\n"
#define RV_GREETING "220 " ENGINE_FIXTURE_HOSTNAME " ESMTP etrnd"
#define RV_RECEIVED "Received: from upstream.test (127.0.0.1)\r\n"

/* What the engine does with the parcel once detached. */
enum rv_mode { RV_ADOPT, RV_HOLD };

struct rv {
	struct engine_fixture f;
	struct smtpd *d;
	struct tls_certs certs;
	struct tls_ctx *srv_ctx;     /* the smtpd's STARTTLS context (never offered here) */
	struct tls_ctx *cli_ctx;     /* the customer's TLS client context */
	int tls;                     /* the ATRN connection runs inside TLS */
	enum rv_mode mode;
	unsigned idle_ms;
	int lfd;                     /* the upstream's listening socket */
	unsigned short port;
	struct sockaddr_in to;
	char upstream[128];
	/* the engine's side */
	atomic_int detached, detach_null, adopt_rc, dones, done_on_engine;
	_Atomic(struct conn_parcel *) held;
	unsigned msgs;
	char why[64];
};

static struct rv R;

/* A password check for smtpd_set_auth(), so that AUTH would be offered to
 * any other client: never called here. */
static int rv_check(void *arg, struct loop *l, uint64_t handle, const char *client,
		    const char *user, const char *pass, size_t passlen, auth_done_fn done,
		    void *done_arg)
{
	(void)arg, (void)l, (void)handle, (void)client, (void)user, (void)pass;
	(void)passlen, (void)done, (void)done_arg;
	cr_assert_fail("AUTH checked in a reversed session");
	return -AUTH_TEMP;
}

static const struct auth_backend rv_auth = { .check = rv_check };

/* ---- the engine's side: the activator's connection -------------------- */

/* done() of smtpd_adopt_reversed(): on the engine thread, once. */
static void rv_done(void *arg, unsigned msgs, const char *why)
{
	struct rv *r = arg;

	r->msgs = msgs;
	snprintf(r->why, sizeof(r->why), "%s", why);
	atomic_store(&r->done_on_engine, pthread_equal(pthread_self(), r->f.thread));
	atomic_fetch_add(&r->dones, 1);
}

static void rv_adopt(struct rv *r, struct conn_parcel *p)
{
	atomic_store(&r->adopt_rc, smtpd_adopt_reversed(r->d, r->f.loop, p, r->upstream,
							 r->idle_ms, rv_done, r));
}

/* The connection has left its owner: adopt it now, or hold it for the
 * test (RV_HOLD). */
static void rv_detached(void *arg, struct conn_parcel *p)
{
	struct rv *r = arg;

	if (!p) {
		atomic_fetch_add(&r->detach_null, 1);
		return;
	}
	atomic_fetch_add(&r->detached, 1);
	if (r->mode == RV_HOLD)
		atomic_store(&r->held, p);
	else
		rv_adopt(r, p);
}

/* The activator's connection, reduced to its end: the upstream's first
 * line is the 250 to our ATRN; the connection then leaves (conn_detach)
 * with what followed it kept. */
static void *rv_connected(void *arg, struct conn *c, void *cookie, int err)
{
	struct rv *r = arg;

	(void)cookie;
	if (err)
		return NULL;
	if (r->tls)
		cr_assert_eq(conn_starttls(c, r->cli_ctx, TLS_CERTS_HOST), 0);
	return r;
}

static size_t rv_data(void *arg, struct conn *c, void *st, const char *p, size_t n)
{
	const char *lf;

	(void)arg, (void)st;
	if (n == 0) {
		conn_close(c);
		return 0;
	}
	lf = memchr(p, '\n', n);
	if (!lf)
		return 0; /* the rest of the line is on its way */
	cr_assert_eq((size_t)(lf - p + 1), strlen(RV_ATRN_OK));
	cr_assert_eq(memcmp(p, RV_ATRN_OK, strlen(RV_ATRN_OK)), 0);
	cr_assert_eq(conn_detach(c, rv_detached, &R), 0);
	return (size_t)(lf - p + 1);
}

static void rv_quiet(void *arg, struct conn *c, void *st)
{
	(void)arg, (void)st;
	conn_close(c);
}

static void rv_gone(void *arg, struct conn *c, void *st)
{
	(void)arg, (void)c, (void)st;
}

static const struct conn_ops rv_ops = {
	.data = rv_data, .timeout = rv_quiet, .shutdown = rv_quiet, .close = rv_gone,
	.connected = rv_connected,
};

static void rv_connect(void *arg)
{
	struct rv *r = arg;

	cr_assert_eq(loop_connect(r->f.loop, (struct sockaddr *)&r->to, sizeof(r->to),
				  ENGINE_FIXTURE_WAIT_MS, &rv_ops, r, NULL), 0);
}

/* The smtpd of the engine thread, as admin/engine.c makes it, offering
 * STARTTLS, AUTH, ETRN and ATRN to everyone else. */
static void rv_make_smtpd(void *arg)
{
	struct rv *r = arg;

	r->d = smtpd_new(&r->f.cfg, r->f.dt);
	cr_assert_not_null(r->d);
	cr_assert_eq(smtpd_set_spool(r->d, r->f.sh), 0);
	smtpd_set_tls(r->d, r->srv_ctx);
	smtpd_set_auth(r->d, &rv_auth);
}

static struct domtab *rv_table(void)
{
	struct domtab_builder *b = domtab_builder_new();
	struct domtab_row cust = { .name = RV_CUSTOMER };
	struct domtab *t;

	cr_assert_not_null(b);
	cr_assert_eq(domtab_builder_put(b, &cust), 0);
	t = domtab_build(b);
	domtab_builder_free(b);
	cr_assert_not_null(t);
	return t;
}

/* Engine, smtpd and the upstream's listener. The client's address is in
 * mynetworks, and smtp_atrn is on: neither may show in a reversed
 * session. */
static void rv_start(int tls, enum rv_mode mode, unsigned idle_ms, unsigned max_conns)
{
	char err[512];

	memset(&R, 0, sizeof(R));
	R.tls = tls;
	R.mode = mode;
	R.idle_ms = idle_ms;
	log_init("test_smtpd_reversed", getenv("RV_DEBUG") ? LOGL_DEBUG : LOGL_INFO, 0);
	cr_assert_eq(tls_certs_make(&R.certs, err, sizeof(err)), 0, "%s", err);
	{
		struct tls_ctx_conf sc = { .cert_file = R.certs.ca_srv_cert,
					   .key_file = R.certs.ca_srv_key };
		struct tls_ctx_conf cc = { .ca_file = R.certs.ca_cert };

		R.srv_ctx = tls_ctx_new(TLS_SERVER, &sc, err, sizeof(err));
		cr_assert_not_null(R.srv_ctx, "%s", err);
		R.cli_ctx = tls_ctx_new(TLS_CLIENT, &cc, err, sizeof(err));
		cr_assert_not_null(R.cli_ctx, "%s", err);
	}
	cr_assert_eq(engine_fixture_init(&R.f, rv_table()), 0);
	R.f.cfg.max_connections = max_conns;
	R.f.cfg.idle_timeout_ms = RV_IDLE_TIMEOUT_MS;
	R.f.cfg.smtp_atrn = 1;
	cr_assert_eq(config_set(&R.f.cfg, "mynetworks", "127.0.0.0/8", "test", err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(engine_fixture_start(&R.f), 0, "%s", R.f.err);
	cr_assert_eq(engine_fixture_call(&R.f, rv_make_smtpd, &R, ENGINE_FIXTURE_WAIT_MS), 0);
	R.lfd = loopback_listen(4, &R.port);
	cr_assert_geq(R.lfd, 0, "%s", strerror(-R.lfd));
	R.to = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(R.port),
				     .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	snprintf(R.upstream, sizeof(R.upstream), RV_UPSTREAM ":%u", R.port);
}

/* Stop the engine (done() has run by then), free the smtpd after it. */
static void rv_stop(void)
{
	engine_fixture_stop(&R.f);
	R.d = smtpd_free(R.d);
}

static void rv_fini(void)
{
	rv_stop();
	engine_fixture_fini(&R.f);
	if (R.lfd >= 0)
		close(R.lfd);
	R.srv_ctx = tls_ctx_free(R.srv_ctx);
	R.cli_ctx = tls_ctx_free(R.cli_ctx);
	tls_certs_drop(&R.certs);
}

static long long rv_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait (bounded) until *v reaches want. */
static void rv_wait(atomic_int *v, int want, const char *what)
{
	long long until = rv_now_ms() + ENGINE_FIXTURE_WAIT_MS;

	while (atomic_load(v) < want && rv_now_ms() < until)
		usleep(1000);
	cr_assert_geq(atomic_load(v), want, "%s: %d after %d ms", what, atomic_load(v),
		      ENGINE_FIXTURE_WAIT_MS);
}

/* Stop the engine once done() has run (a "shutdown" is what the stop
 * itself makes, so it runs inside it), then check what done() said:
 * once, on the engine thread, msgs messages, why. */
static void rv_expect_end(unsigned msgs, const char *why)
{
	if (strcmp(why, "shutdown") != 0)
		rv_wait(&R.dones, 1, "done()");
	rv_stop();
	cr_expect_eq(atomic_load(&R.dones), 1, "done() once");
	cr_expect(atomic_load(&R.done_on_engine), "done() on the engine thread");
	cr_expect_eq(R.msgs, msgs);
	cr_expect_str_eq(R.why, why);
}

/* ---- the upstream: blocking, plain or TLS (server side) ----------------- */

struct rv_up {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	char in[4096];
	size_t len, off;
};

static void rv_up_write(struct rv_up *u, const char *s)
{
	size_t n = strlen(s);

	if (u->ssl)
		cr_assert_eq(SSL_write(u->ssl, s, (int)n), (int)n);
	else
		cr_assert_eq(send(u->fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* The next line without its CRLF; -1 at EOF or on a reset (a timeout
 * fails the test). */
static int rv_up_line(struct rv_up *u, char *line, size_t max)
{
	size_t n = 0;

	for (;;) {
		ssize_t r;

		while (u->off < u->len) {
			char ch = u->in[u->off++];

			if (ch == '\n') {
				n -= n && line[n - 1] == '\r';
				line[n] = '\0';
				return (int)n;
			}
			cr_assert_lt(n + 1, max, "line too long");
			line[n++] = ch;
		}
		u->off = u->len = 0;
		r = u->ssl ? SSL_read(u->ssl, u->in, sizeof(u->in))
			   : recv(u->fd, u->in, sizeof(u->in), 0);
		if (r < 0 && !u->ssl)
			cr_assert_neq(errno, EAGAIN, "no reply within %d s", RV_RCV_TIMEOUT_S);
		if (r <= 0)
			return -1;
		u->len = (size_t)r;
	}
}

static void rv_up_expect(struct rv_up *u, const char *want)
{
	char line[RV_LINE_MAX];

	cr_assert_geq(rv_up_line(u, line, sizeof(line)), 0, "EOF, wanted \"%s\"", want);
	cr_assert_str_eq(line, want);
}

static void rv_up_expect_eof(struct rv_up *u)
{
	char line[RV_LINE_MAX];
	int n = rv_up_line(u, line, sizeof(line));

	cr_assert_lt(n, 0, "wanted EOF, got \"%s\"", n >= 0 ? line : "");
}

/* The engine connects; we take the connection (TLS as the customer
 * wants it) and say 250 to its ATRN, with first (RV_ATRN_OK and maybe
 * more in the same write). Then the connection is ours to drive as the
 * client. */
static void rv_up_accept(struct rv_up *u, const char *first)
{
	struct timeval tv = { .tv_sec = RV_RCV_TIMEOUT_S };

	memset(u, 0, sizeof(*u));
	cr_assert_eq(setsockopt(R.lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	cr_assert_eq(engine_fixture_call(&R.f, rv_connect, &R, ENGINE_FIXTURE_WAIT_MS), 0);
	u->fd = accept(R.lfd, NULL, NULL);
	cr_assert_geq(u->fd, 0, "the engine did not connect");
	cr_assert_eq(setsockopt(u->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	cr_assert_eq(setsockopt(u->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
	if (R.tls) {
		u->ctx = SSL_CTX_new(TLS_server_method());
		cr_assert_not_null(u->ctx);
		cr_assert_eq(SSL_CTX_use_certificate_chain_file(u->ctx, R.certs.ca_srv_cert), 1);
		cr_assert_eq(SSL_CTX_use_PrivateKey_file(u->ctx, R.certs.ca_srv_key,
							 SSL_FILETYPE_PEM), 1);
		u->ssl = SSL_new(u->ctx);
		cr_assert_not_null(u->ssl);
		SSL_set_fd(u->ssl, u->fd);
		cr_assert_eq(SSL_accept(u->ssl), 1, "TLS handshake with the customer failed");
	}
	rv_up_write(u, first);
}

static void rv_up_close(struct rv_up *u)
{
	if (u->ssl)
		SSL_free(u->ssl);
	if (u->ctx)
		SSL_CTX_free(u->ctx);
	if (u->fd >= 0)
		close(u->fd);
	memset(u, 0, sizeof(*u));
	u->fd = -1;
}

/* Our 220 and the EHLO reply: none of STARTTLS, AUTH, ETRN, ATRN. */
static void rv_up_greet(struct rv_up *u)
{
	char line[RV_LINE_MAX];
	int n;

	rv_up_expect(u, RV_GREETING);
	rv_up_write(u, "EHLO upstream.test\r\n");
	rv_up_expect(u, "250-" ENGINE_FIXTURE_HOSTNAME);
	do {
		n = rv_up_line(u, line, sizeof(line));
		cr_assert_geq(n, 4, "EHLO reply cut short");
		cr_assert_eq(strncmp(line, "250", 3), 0, "%s", line);
		cr_assert_null(strstr(line, "STARTTLS"), "%s", line);
		cr_assert_null(strstr(line, "AUTH"), "%s", line);
		cr_assert_null(strstr(line, "ETRN"), "%s", line);
	} while (line[3] == '-');
}

/* A plain reversed session under way: greeted, EHLO answered. */
static void rv_begin(struct rv_up *u)
{
	rv_start(0, RV_ADOPT, RV_LONG_IDLE_MS, 16);
	rv_up_accept(u, RV_ATRN_OK);
	rv_up_greet(u);
}

static int rv_held_msgs(void)
{
	uint64_t ids[4];

	return (int)engine_fixture_queue_ids(&R.f, RV_CUSTOMER, ids, 4);
}

/* ---- tests -------------------------------------------------------------- */

static void rv_spool_count(void *arg)
{
	struct spool_stats st;

	spool_shard_stats(R.f.sh, &st);
	*(uint64_t *)arg = st.messages;
}

/* The upstream's session: the session commands 502, a foreign domain
 * 550 though its address is in mynetworks, a customer's message taken
 * (250 only once the record is durable), QUIT. done() says 1 message
 * and QUIT, once, on the engine thread; the message is in the spool with
 * our Received: header (ESMTPS and the cipher inside TLS). */
static void rv_session(int tls)
{
	struct engine_fixture_msg m;
	struct rv_up u;
	uint64_t durable = 0, ids[4];
	char line[RV_LINE_MAX];

	rv_start(tls, RV_ADOPT, RV_LONG_IDLE_MS, 16);
	rv_up_accept(&u, RV_ATRN_OK);
	rv_up_greet(&u);
	cr_assert_eq(atomic_load(&R.adopt_rc), 0);
	rv_up_write(&u, "STARTTLS\r\nAUTH PLAIN AGFsaWNlAGdvb2Q=\r\nETRN " RV_CUSTOMER "\r\n"
		    "ATRN " RV_CUSTOMER "\r\n");
	rv_up_expect(&u, "502 5.5.1 Error: STARTTLS not available in a reversed ATRN session");
	rv_up_expect(&u, "502 5.5.1 Error: AUTH not available in a reversed ATRN session");
	rv_up_expect(&u, "502 5.5.1 Error: ETRN not available in a reversed ATRN session");
	rv_up_expect(&u, "502 5.5.1 Error: ATRN not available in a reversed ATRN session");
	rv_up_write(&u, "MAIL FROM:<sender@far.test>\r\nRCPT TO:<b@foreign.test>\r\n"
		    "RCPT TO:<a@" RV_CUSTOMER ">\r\nDATA\r\n");
	rv_up_expect(&u, "250 2.1.0 Ok");
	rv_up_expect(&u, "550 5.7.1 <b@foreign.test>: Relay access denied");
	rv_up_expect(&u, "250 2.1.5 Ok");
	rv_up_expect(&u, "354 End data with <CR><LF>.<CR><LF>");
	rv_up_write(&u, "Subject: held for us\r\n\r\nhello\r\n.\r\n");
	cr_assert_geq(rv_up_line(&u, line, sizeof(line)), 0);
	cr_assert_eq(strncmp(line, "250 2.0.0 Ok: queued as ", 24), 0, "%s", line);
	cr_assert_eq(engine_fixture_call(&R.f, rv_spool_count, &durable, ENGINE_FIXTURE_WAIT_MS), 0);
	cr_assert_eq(durable, 1, "a 250 before the record was durable");
	rv_up_write(&u, "QUIT\r\n");
	rv_up_expect(&u, "221 2.0.0 Bye");
	rv_up_expect_eof(&u);
	rv_up_close(&u);
	rv_expect_end(1, "QUIT");
	cr_expect_eq(atomic_load(&R.detach_null), 0);
	cr_assert_not_null(engine_fixture_reopen(&R.f), "%s", R.f.err);
	cr_assert_eq(engine_fixture_queue_ids(&R.f, RV_CUSTOMER, ids, 4), 1);
	cr_assert_eq(engine_fixture_read(&R.f, ids[0], &m), 0);
	cr_expect_str_eq(m.sender, "sender@far.test");
	cr_expect_eq(m.nrcpt, 1);
	cr_expect_str_eq(m.rcpt[0], "a@" RV_CUSTOMER);
	cr_expect_eq(strncmp(m.body, RV_RECEIVED, strlen(RV_RECEIVED)), 0, "%.60s", m.body);
	cr_expect_not_null(strstr(m.body, tls ? "\tby " ENGINE_FIXTURE_HOSTNAME " (etrnd) with ESMTPS id "
				  : "\tby " ENGINE_FIXTURE_HOSTNAME " (etrnd) with ESMTP id "),
			   "%s", m.body);
	cr_expect_eq(strstr(m.body, "\t(using TLS") != NULL, tls, "%s", m.body);
	cr_expect_not_null(strstr(m.body, "Subject: held for us\r\n\r\nhello\r\n"));
	engine_fixture_msg_free(&m);
	rv_fini();
}

Test(smtpd_reversed, session_plain, .timeout = 120)
{
	rv_session(0);
}

Test(smtpd_reversed, session_tls, .timeout = 120)
{
	rv_session(1);
}

/* An upstream that does not wait for our 220 (RFC 2645 says it should):
 * its EHLO, in the same write as the 250 to our ATRN, is kept with the
 * connection and answered after the greeting. */
Test(smtpd_reversed, pipelined_ehlo_kept, .timeout = 120)
{
	struct rv_up u;
	char line[RV_LINE_MAX];

	rv_start(0, RV_ADOPT, RV_LONG_IDLE_MS, 16);
	rv_up_accept(&u, RV_ATRN_OK "EHLO upstream.test\r\nNOOP\r\n");
	rv_up_expect(&u, RV_GREETING);
	rv_up_expect(&u, "250-" ENGINE_FIXTURE_HOSTNAME);
	rv_up_expect(&u, "250-PIPELINING");
	while (rv_up_line(&u, line, sizeof(line)) >= 0 && strncmp(line, "250 ", 4) != 0)
		;
	cr_assert_str_eq(line, "250 SMTPUTF8");
	rv_up_expect(&u, "250 2.0.0 Ok");
	rv_up_write(&u, "QUIT\r\n");
	rv_up_expect(&u, "221 2.0.0 Bye");
	rv_up_close(&u);
	rv_expect_end(0, "QUIT");
	rv_fini();
}

/* An upstream that says nothing after our 220: 421 after idle_ms (not
 * idle_timeout), then the close; done() says 0 messages and why. */
Test(smtpd_reversed, idle_timeout, .timeout = 120)
{
	struct rv_up u;
	long long t0, took;

	rv_start(0, RV_ADOPT, RV_IDLE_MS, 16);
	rv_up_accept(&u, RV_ATRN_OK);
	rv_up_expect(&u, RV_GREETING);
	t0 = rv_now_ms();
	rv_up_expect(&u, "421 4.4.2 " ENGINE_FIXTURE_HOSTNAME " Error: timeout exceeded");
	took = rv_now_ms() - t0;
	rv_up_expect_eof(&u);
	rv_up_close(&u);
	cr_expect_geq(took, RV_IDLE_MS / 2, "cut after %lld ms", took);
	cr_expect_lt(took, RV_IDLE_TIMEOUT_MS, "idle_timeout applied, not idle_ms");
	fprintf(stderr, "test_smtpd_reversed: idle upstream cut %lld ms after our 220 "
		"(idle_ms %d)\n", took, RV_IDLE_MS);
	rv_expect_end(0, "idle timeout");
	rv_fini();
}

/* The upstream vanishes mid-transaction: nothing stored, done() says
 * "lost connection". */
Test(smtpd_reversed, upstream_vanishes, .timeout = 120)
{
	struct rv_up u;

	rv_begin(&u);
	rv_up_write(&u, "MAIL FROM:<s@far.test>\r\nRCPT TO:<a@" RV_CUSTOMER ">\r\nDATA\r\npart");
	rv_up_expect(&u, "250 2.1.0 Ok");
	rv_up_expect(&u, "250 2.1.5 Ok");
	rv_up_expect(&u, "354 End data with <CR><LF>.<CR><LF>");
	rv_up_close(&u);
	rv_expect_end(0, "lost connection");
	cr_assert_not_null(engine_fixture_reopen(&R.f), "%s", R.f.err);
	cr_expect_eq(rv_held_msgs(), 0);
	rv_fini();
}

/* The node stops while the upstream is between messages: 421, close,
 * done() says "shutdown". */
Test(smtpd_reversed, shutdown, .timeout = 120)
{
	struct rv_up u;

	rv_begin(&u);
	rv_expect_end(0, "shutdown");
	rv_up_expect(&u, "421 4.3.2 " ENGINE_FIXTURE_HOSTNAME " Service shutting down");
	rv_up_expect_eof(&u);
	rv_up_close(&u);
	rv_fini();
}

static void rv_fill_and_adopt(void *arg)
{
	struct rv *r = arg;

	/* The one slot (max_connections 1) goes to another connection. */
	cr_assert_eq(loop_connect(r->f.loop, (struct sockaddr *)&r->to, sizeof(r->to),
				  ENGINE_FIXTURE_WAIT_MS, &rv_ops, r, NULL), 0);
	rv_adopt(r, atomic_exchange(&r->held, NULL));
}

/* No free slot when the parcel comes: -EMFILE, the parcel freed (the
 * upstream sees the connection close), done() never called. */
Test(smtpd_reversed, no_slot, .timeout = 120)
{
	struct rv_up u, other;
	long long until;

	rv_start(0, RV_HOLD, RV_LONG_IDLE_MS, 1);
	rv_up_accept(&u, RV_ATRN_OK);
	until = rv_now_ms() + ENGINE_FIXTURE_WAIT_MS;
	while (!atomic_load(&R.held) && rv_now_ms() < until)
		usleep(1000);
	cr_assert_not_null(atomic_load(&R.held), "no parcel");
	cr_assert_eq(engine_fixture_call(&R.f, rv_fill_and_adopt, &R, ENGINE_FIXTURE_WAIT_MS), 0);
	cr_expect_eq(atomic_load(&R.adopt_rc), -EMFILE);
	rv_up_expect_eof(&u);
	rv_up_close(&u);
	/* The connection that took the slot: let it go. */
	other.fd = accept(R.lfd, NULL, NULL);
	cr_assert_geq(other.fd, 0);
	close(other.fd);
	rv_stop();
	cr_expect_eq(atomic_load(&R.dones), 0, "done() after a refused adoption");
	rv_fini();
}
