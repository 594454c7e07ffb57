/* SPDX-License-Identifier: MIT */
/*
 * Tests for core/tls.c and TLS in core/loop.c, on real loopback sockets with
 * real OpenSSL and certificates made here by `openssl req`: a STARTTLS-style
 * upgrade on both sides of one loop (server and loop_connect()ed client),
 * data echoed byte-exact both ways (1 byte, 1 MiB with the owner pausing),
 * commands pipelined after STARTTLS discarded (fresh input and kept input),
 * implicit TLS listeners, garbage and a stalled half ClientHello costing only
 * their connection, certificate verification as tls_info reports it, and the
 * heap an idle TLS connection holds.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/tls.h"
#include "loopback.h"
#include "tls_certs.h"

#if defined(__SANITIZE_ADDRESS__)
/* ASan's allocator statistics (sanitizer/allocator_interface.h, which
 * Debian's gcc does not ship). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#define TT_HOST TLS_CERTS_HOST
#define TT_WRONG_HOST "wrong.test.example"
#define TT_BIG (1u << 20)          /* the big echo: 1 MiB each way */
#define TT_PAUSE_EVERY 50000u      /* owner pauses (waits for a post) this often */
#define TT_WATCHDOG_S 60           /* a test loop never runs longer */
#define TT_RAW_TIMEOUT_S 20        /* raw client socket reads */
#define TT_HANDSHAKE_MS 600        /* tls_handshake_timeout in the stall test */
#define TT_IDLE_CONNS 1000         /* idle TLS session pairs measured */

/* ---- certificates, made once per test process (tls_certs.h) ----------- */

static struct tls_certs certs;

static void tt_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void tt_sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	cr_assert_lt(vsnprintf(cmd, sizeof(cmd), fmt, ap), (int)sizeof(cmd));
	va_end(ap);
	cr_assert_eq(system(cmd), 0, "failed: %s", cmd);
}

static struct tls_ctx *tt_ctx(enum tls_role role, const char *cert, const char *key,
			      const char *ca)
{
	struct tls_ctx_conf tc = { .cert_file = cert, .key_file = key, .ca_file = ca };
	char err[512];
	struct tls_ctx *ctx = tls_ctx_new(role, &tc, err, sizeof(err));

	cr_assert_not_null(ctx, "%s", err);
	return ctx;
}

/* ---- the test loop: a line server and a loop_connect()ed client ------- */

/* What the server saw, for assertions. */
struct tt_srv_rec {
	unsigned opens, closes, tls_ok, tls_fail;
	unsigned holds, high_pauses; /* owner pauses: posted resume, LOOP_OUT_HIGH */
	int last_tls_err;
	char lines[4096];   /* every command line it executed, "|"-joined */
	size_t nlines;
};

struct tt_cli;

struct tt {
	struct config cfg;
	struct loop *l;
	struct tls_ctx *srv_ctx, *cli_ctx;
	unsigned short port, port_tls;
	struct tt_srv_rec srv;
	struct tt_cli *cli;
	const char *cli_host;           /* SNI and name to verify */
	const char *pipeline;           /* the client's STARTTLS write */
	size_t big;                     /* bytes to echo after TLS */
	int pause;                      /* server owner pauses now and then */
	int implicit;                   /* client connects to port_tls */
	int done;                       /* the client finished its script */
	int raw_running;                /* a raw client thread is still at work */
	int cli_closed;
	unsigned idle_want;             /* idle test: sessions to hold open */
	unsigned idle_up;               /* ... that are up and waiting */
	unsigned idle_closed;           /* client process: sessions ended */
	int idle_child;                 /* this is the client process */
	long long idle_base, idle_bytes;
	long long idle_cpu_us, idle_ms;  /* server CPU and wall time to get there */
	int watchdog_fired;
	pthread_t watchdog;
	int watchdog_on;
	pthread_mutex_t wd_lock;
	pthread_cond_t wd_cond;
	int wd_stop;
};

static struct tt T;

struct tt_srv_conn {
	struct conn *c;
	uint64_t handle;
	struct buf line;
	size_t echo;       /* bytes still to echo (ECHO n) */
	size_t echoed;
	int held;          /* paused by the owner, a resume posted */
};

struct tt_cli {
	struct conn *c;
	struct buf line;
	enum { CLI_GREETING, CLI_STARTTLS, CLI_TLS, CLI_ECHO_REPLY, CLI_ECHO, CLI_QUIT } st;
	int tls_err;
	int tls_done;
	struct tls_info info;
	char verify_error[128];
	size_t got;         /* echoed bytes back */
	size_t bad_at;      /* first mismatch + 1; 0 = none */
	int closed;
};

static unsigned char tt_pattern(size_t i)
{
	return (unsigned char)((i * 131u + (i >> 9)) & 0xff);
}

static void tt_note_line(const char *p, size_t n)
{
	if (T.srv.nlines + n + 2 < sizeof(T.srv.lines)) {
		memcpy(T.srv.lines + T.srv.nlines, p, n);
		T.srv.nlines += n;
		T.srv.lines[T.srv.nlines++] = '|';
		T.srv.lines[T.srv.nlines] = '\0';
	}
}

/* Heap in use now: what the allocator handed out and has not had back. */
static long long tt_heap_bytes(void)
{
#if defined(__SANITIZE_ADDRESS__)
	return (long long)__sanitizer_get_current_allocated_bytes();
#else
	return (long long)mallinfo2().uordblks;
#endif
}

/* Idle test, server process: one more session has done its handshake and
 * one command in TLS and now waits; at the last, measure and stop. */
static long long tt_cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
	       ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

static long long tt_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void tt_idle_up(void)
{
	if (++T.idle_up < T.idle_want)
		return;
	T.idle_bytes = tt_heap_bytes() - T.idle_base;
	T.idle_cpu_us = tt_cpu_us() - T.idle_cpu_us;
	T.idle_ms = tt_now_ms() - T.idle_ms;
	loop_stop(T.l);
}

static void tt_resume(void *arg)
{
	struct tt_srv_conn *s = arg;
	struct conn *c = loop_conn(T.l, s->handle);

	if (c) {
		s->held = 0;
		conn_resume(c);
	}
}

static void *srv_open(void *arg, struct conn *c, const char *peer)
{
	struct tt_srv_conn *s = calloc(1, sizeof(*s));

	(void)arg;
	(void)peer;
	cr_assert_not_null(s);
	s->c = c;
	s->handle = conn_handle(c);
	buf_init(&s->line, 1024);
	T.srv.opens++;
	buf_puts(conn_out(c), "220 tt ready\r\n");
	return s;
}

/* Echo mode: everything back; pause for the peer to read at LOOP_OUT_HIGH
 * (the loop resumes), and for ourselves every TT_PAUSE_EVERY bytes (a
 * posted resume: the kept-input path). */
static size_t srv_echo(struct tt_srv_conn *s, struct conn *c, const char *p, size_t n)
{
	size_t take = n < s->echo ? n : s->echo;

	if (s->held)
		return 0;
	if (conn_out(c)->len >= LOOP_OUT_HIGH) {
		T.srv.high_pauses++;
		return 0;
	}
	if (T.pause) {
		size_t to_next = TT_PAUSE_EVERY - s->echoed % TT_PAUSE_EVERY;

		if (take > to_next)
			take = to_next;
	}
	cr_assert_eq(buf_append(conn_out(c), p, take), 0);
	s->echoed += take;
	s->echo -= take;
	conn_flush(c);
	if (T.pause && s->echoed % TT_PAUSE_EVERY == 0 && take < n) {
		s->held = 1;
		T.srv.holds++;
		cr_assert_eq(loop_post(T.l, tt_resume, s), 0);
	}
	return take;
}

/* One command line (without CRLF). Returns 1 when the rest of the input
 * must not be consumed now (STARTTLS, HOLD). */
static int srv_line(struct tt_srv_conn *s, struct conn *c, const char *p, size_t n)
{
	tt_note_line(p, n);
	if (n == 8 && !memcmp(p, "STARTTLS", 8)) {
		buf_puts(conn_out(c), "220 go ahead\r\n");
		cr_assert_eq(conn_starttls(c, T.srv_ctx, NULL), 0);
		cr_assert_eq(conn_starttls(c, T.srv_ctx, NULL), -EALREADY);
		return 1;
	}
	if (n == 4 && !memcmp(p, "HOLD", 4)) {
		buf_puts(conn_out(c), "250 held\r\n");
		s->held = 1;
		cr_assert_eq(loop_post(T.l, tt_resume, s), 0);
		return 1;
	}
	if (n > 5 && !memcmp(p, "ECHO ", 5)) {
		buf_puts(conn_out(c), "250 echo\r\n");
		s->echo = strtoul(p + 5, NULL, 10);
		return 0;
	}
	if (n == 4 && !memcmp(p, "QUIT", 4)) {
		buf_puts(conn_out(c), "221 bye\r\n");
		conn_close(c);
		return 1;
	}
	buf_puts(conn_out(c), conn_tls(c) ? "250 ok tls\r\n" : "250 ok\r\n");
	if (T.idle_want && conn_tls(c))
		tt_idle_up();
	return 0;
}

/* Take p[*i..n) up to and including the next LF into line. Returns the
 * whole line's length (LF included; line->data holds it until the next
 * call), or SIZE_MAX when the input ran out first (kept in line). */
static size_t tt_line(struct buf *line, const char *p, size_t n, size_t *i)
{
	const char *lf = memchr(p + *i, '\n', n - *i);
	size_t k = lf ? (size_t)(lf - (p + *i)) + 1 : n - *i;

	cr_assert_eq(buf_append(line, p + *i, k), 0);
	*i += k;
	if (!lf)
		return SIZE_MAX;
	k = line->len;
	line->len = 0;
	return k;
}

static size_t srv_data(void *arg, struct conn *c, void *st, const char *p, size_t n)
{
	struct tt_srv_conn *s = st;
	size_t i = 0;

	(void)arg;
	if (n == 0) {
		conn_close(c);
		return 0;
	}
	if (s->held)
		return 0;
	while (i < n) {
		/* As smtp_server does (reply_max): no more commands while the
		 * peer has not read LOOP_OUT_HIGH of replies. */
		if (conn_out(c)->len >= LOOP_OUT_HIGH) {
			T.srv.high_pauses++;
			break;
		}
		if (s->echo) {
			size_t k = srv_echo(s, c, p + i, n - i);

			i += k;
			if (k == 0 || s->echo)
				break;
			continue;
		}
		size_t k = tt_line(&s->line, p, n, &i);

		if (k == SIZE_MAX)
			break;
		k -= k >= 2 && s->line.data[k - 2] == '\r' ? 2 : 1; /* CRLF or LF */
		if (srv_line(s, c, s->line.data, k)) {
			conn_flush(c);
			return i;
		}
	}
	conn_flush(c);
	return i;
}

static void srv_timeout(void *arg, struct conn *c, void *st)
{
	(void)arg;
	(void)st;
	conn_close(c);
}

static void srv_close(void *arg, struct conn *c, void *st)
{
	struct tt_srv_conn *s = st;

	(void)arg;
	(void)c;
	buf_free(&s->line);
	free(s);
	T.srv.closes++;
}

static void srv_tls_done(void *arg, struct conn *c, void *st, int err)
{
	(void)arg;
	(void)st;
	if (err == 0) {
		T.srv.tls_ok++;
		cr_assert_not_null(conn_tls(c));
		cr_assert_eq(conn_tls(c)->verified, 0);
	} else {
		T.srv.tls_fail++;
		T.srv.last_tls_err = err;
	}
}

static const struct conn_ops srv_ops = {
	.open = srv_open, .data = srv_data, .timeout = srv_timeout,
	.shutdown = srv_timeout, .close = srv_close, .tls_done = srv_tls_done,
};

/* ---- the client ------------------------------------------------------- */

static void cli_send_big(struct tt_cli *k)
{
	struct buf *out = conn_out(k->c);

	for (size_t i = 0; i < T.big; i++)
		cr_assert_eq(buf_append(out, &(char){ (char)tt_pattern(i) }, 1), 0);
	conn_flush(k->c);
}

/* One reply line of the client's script. */
static size_t cli_line(struct tt_cli *k, const char *p, size_t n)
{
	switch (k->st) {
	case CLI_GREETING:
		cr_assert(n >= 3 && !memcmp(p, "220", 3), "greeting %.*s", (int)n, p);
		if (T.implicit) {
			cr_assert_not_null(conn_tls(k->c));
			buf_puts(conn_out(k->c), "PING\r\n");
			k->st = CLI_TLS;
			break;
		}
		buf_puts(conn_out(k->c), T.pipeline);
		k->st = CLI_STARTTLS;
		break;
	case CLI_STARTTLS:
		if (n >= 3 && !memcmp(p, "250", 3))
			break; /* HOLD's reply, before STARTTLS's */
		cr_assert(n >= 3 && !memcmp(p, "220", 3), "starttls reply %.*s", (int)n, p);
		cr_assert_eq(conn_starttls(k->c, T.cli_ctx, T.cli_host), 0);
		k->st = CLI_TLS;
		return 1; /* the rest (none: the server waits) is void */
	case CLI_TLS:
		cr_assert(n >= 11 && !memcmp(p, "250 ok tls", 10), "after tls %.*s", (int)n, p);
		if (T.idle_want)
			return 0; /* and wait */
		if (T.big) {
			buf_printf(conn_out(k->c), "ECHO %zu\r\n", T.big);
			k->st = CLI_ECHO_REPLY;
		} else {
			buf_puts(conn_out(k->c), "QUIT\r\n");
			k->st = CLI_QUIT;
		}
		break;
	case CLI_ECHO_REPLY:
		cr_assert(n >= 8 && !memcmp(p, "250 echo", 8), "echo reply %.*s", (int)n, p);
		k->st = CLI_ECHO;
		cli_send_big(k);
		return 0;
	case CLI_ECHO:
		cr_assert_fail("a line while echoing: %.*s", (int)n, p);
		break;
	case CLI_QUIT:
		T.done = 1;
		break;
	}
	conn_flush(k->c);
	return 0;
}

static size_t cli_echo(struct tt_cli *k, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++, k->got++)
		if (!k->bad_at && (unsigned char)p[i] != tt_pattern(k->got))
			k->bad_at = k->got + 1;
	if (k->got == T.big) {
		buf_puts(conn_out(k->c), "QUIT\r\n");
		k->st = CLI_QUIT;
		conn_flush(k->c);
	}
	return n;
}

static size_t cli_data(void *arg, struct conn *c, void *st, const char *p, size_t n)
{
	struct tt_cli *k = st;
	size_t i = 0;

	(void)arg;
	if (n == 0) {
		conn_close(c);
		return 0;
	}
	while (i < n) {
		size_t len;

		if (k->st == CLI_ECHO && k->got < T.big && k->line.len == 0) {
			size_t want = T.big - k->got;

			i += cli_echo(k, p + i, n - i < want ? n - i : want);
			continue;
		}
		len = tt_line(&k->line, p, n, &i);
		if (len == SIZE_MAX)
			break;
		if (cli_line(k, k->line.data, len) == 1)
			return i;
	}
	return i;
}

static void *cli_connected(void *arg, struct conn *c, void *cookie, int err)
{
	struct tt_cli *k = cookie;

	(void)arg;
	cr_assert_eq(err, 0, "connect: %s", strerror(-err));
	k->c = c;
	if (T.implicit)
		cr_assert_eq(conn_starttls(c, T.cli_ctx, T.cli_host), 0);
	return k;
}

static void cli_tls_done(void *arg, struct conn *c, void *st, int err)
{
	struct tt_cli *k = st;
	const struct tls_info *ti = conn_tls(c);

	(void)arg;
	k->tls_done++;
	k->tls_err = err;
	if (err)
		return;
	cr_assert_not_null(ti);
	k->info = *ti;
	snprintf(k->verify_error, sizeof(k->verify_error), "%s", ti->verify_error);
	if (!T.implicit) {
		/* The first command in TLS; its reply says "250 ok tls". */
		buf_puts(conn_out(c), "PING\r\n");
		conn_flush(c);
	}
}

static void cli_close(void *arg, struct conn *c, void *st)
{
	struct tt_cli *k = st;

	(void)arg;
	(void)c;
	k->closed = 1;
	k->c = NULL;
	T.cli_closed = 1;
	if (T.idle_child && ++T.idle_closed == T.idle_want)
		loop_stop(T.l);
	if (!T.raw_running && !T.idle_want)
		loop_stop(T.l);
}

static const struct conn_ops cli_ops = {
	.data = cli_data, .timeout = srv_timeout, .shutdown = srv_timeout,
	.close = cli_close, .connected = cli_connected, .tls_done = cli_tls_done,
};

/* ---- fixture ---------------------------------------------------------- */

static unsigned short tt_free_port(void)
{
	unsigned short port = loopback_free_port();

	cr_assert_neq(port, 0, "no free loopback port");
	return port;
}

static void *tt_watchdog(void *arg)
{
	struct timespec until;

	(void)arg;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += TT_WATCHDOG_S;
	pthread_mutex_lock(&T.wd_lock);
	while (!T.wd_stop)
		if (pthread_cond_timedwait(&T.wd_cond, &T.wd_lock, &until) == ETIMEDOUT)
			break;
	if (!T.wd_stop) {
		T.watchdog_fired = 1;
		loop_stop(T.l);
	}
	pthread_mutex_unlock(&T.wd_lock);
	return NULL;
}

/* A loop with a plain and an implicit-TLS listener on free ports. */
static void tt_loop(unsigned handshake_ms)
{
	char err[512], v[64];
	struct loop_conf lc = { 0 };

	config_defaults(&T.cfg);
	T.cfg.max_connections = 2048;
	T.cfg.client_connection_limit = 0;
	T.cfg.shutdown_timeout_ms = 2000;
	T.cfg.tls_handshake_timeout_ms = handshake_ms;
	T.port = tt_free_port();
	T.port_tls = tt_free_port();
	snprintf(v, sizeof(v), "127.0.0.1:%u", T.port);
	cr_assert_eq(config_set(&T.cfg, "listen", v, "test", err, sizeof(err)), 0, "%s", err);
	snprintf(v, sizeof(v), "127.0.0.1:%u", T.port_tls);
	cr_assert_eq(config_set(&T.cfg, "listen_tls", v, "test", err, sizeof(err)), 0, "%s", err);
	lc.cfg = &T.cfg;
	lc.ops = &srv_ops;
	lc.tls_server = T.srv_ctx;
	T.l = loop_new(&lc, err, sizeof(err));
	cr_assert_not_null(T.l, "%s", err);
	pthread_mutex_init(&T.wd_lock, NULL);
	pthread_cond_init(&T.wd_cond, NULL);
	cr_assert_eq(pthread_create(&T.watchdog, NULL, tt_watchdog, NULL), 0);
	T.watchdog_on = 1;
}

static void tt_run(void)
{
	cr_assert_eq(loop_run(T.l), 0);
	pthread_mutex_lock(&T.wd_lock);
	T.wd_stop = 1;
	pthread_cond_signal(&T.wd_cond);
	pthread_mutex_unlock(&T.wd_lock);
	pthread_join(T.watchdog, NULL);
	T.watchdog_on = 0;
	cr_assert_eq(T.watchdog_fired, 0, "the test loop ran longer than %d s", TT_WATCHDOG_S);
}

static void tt_setup(void)
{
	memset(&T, 0, sizeof(T));
	log_init("test_tls", getenv("TT_DEBUG") ? LOGL_DEBUG : LOGL_INFO, 0);
	{
		char err[512];

		cr_assert_eq(tls_certs_make(&certs, err, sizeof(err)), 0, "%s", err);
	}
	T.srv_ctx = tt_ctx(TLS_SERVER, certs.ca_srv_cert, certs.ca_srv_key, NULL);
	T.cli_ctx = tt_ctx(TLS_CLIENT, NULL, NULL, certs.ca_cert);
	T.cli_host = TT_HOST;
	T.pipeline = "STARTTLS\r\n";
}

static void tt_teardown(void)
{
	T.l = loop_free(T.l);
	config_free(&T.cfg);
	T.srv_ctx = tls_ctx_free(T.srv_ctx);
	T.cli_ctx = tls_ctx_free(T.cli_ctx);
	tls_certs_drop(&certs);
}

TestSuite(tls, .init = tt_setup, .fini = tt_teardown, .timeout = 100);

/* Connect the script client to the plain (or the implicit-TLS) port and run
 * until it has closed. */
static void tt_client_start(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct tt_cli *k = calloc(1, sizeof(*k));

	cr_assert_not_null(k);
	buf_init(&k->line, 4096);
	sa.sin_port = htons(T.implicit ? T.port_tls : T.port);
	cr_assert_eq(loop_connect(T.l, (struct sockaddr *)&sa, sizeof(sa), 5000, &cli_ops, NULL, k), 0);
	T.cli = k;
}

static struct tt_cli *tt_client_run(void)
{
	struct tt_cli *k;

	tt_client_start();
	k = T.cli;
	tt_run();
	cr_assert(k->closed);
	buf_free(&k->line);
	return k;
}

/* ---- STARTTLS both sides, echo ---------------------------------------- */

struct echo_case {
	const char *name;
	size_t big;
	int pause;
};

static const struct echo_case echo_cases[] = {
	{ "no data", 0, 0 },
	{ "1 byte", 1, 0 },
	{ "1 MiB", TT_BIG, 0 },
	{ "1 MiB, owner pausing", TT_BIG, 1 },
};

Test(tls, starttls_echo_both_ways)
{
	for (size_t i = 0; i < sizeof(echo_cases) / sizeof(echo_cases[0]); i++) {
		const struct echo_case *ec = &echo_cases[i];
		struct tt_cli *k;

		T.big = ec->big;
		T.pause = ec->pause;
		T.done = 0;
		memset(&T.srv, 0, sizeof(T.srv));
		tt_loop(CONFIG_TLS_HANDSHAKE_TIMEOUT_DEFAULT_MS);
		k = tt_client_run();
		cr_expect(T.done, "%s: script not finished (state %d)", ec->name, k->st);
		cr_expect_eq(k->tls_done, 1, "%s", ec->name);
		cr_expect_eq(k->tls_err, 0, "%s", ec->name);
		cr_expect_eq(k->got, ec->big, "%s: echoed %zu of %zu", ec->name, k->got, ec->big);
		cr_expect_eq(k->bad_at, 0, "%s: first wrong byte at %zu", ec->name, k->bad_at - 1);
		cr_expect_str_eq(k->info.version, "TLSv1.3", "%s", ec->name);
		cr_expect_eq(k->info.verified, 1, "%s: %s", ec->name, k->verify_error);
		cr_expect_eq(T.srv.tls_ok, 1, "%s", ec->name);
		cr_expect_eq(T.srv.opens, T.srv.closes, "%s", ec->name);
		if (ec->pause)
			cr_expect_gt(T.srv.holds, 0, "%s", ec->name);
		if (ec->big == TT_BIG && !ec->pause)
			cr_expect_gt(T.srv.high_pauses, 0, "%s: never over LOOP_OUT_HIGH", ec->name);
		free(k);
		T.l = loop_free(T.l);
		config_free(&T.cfg);
	}
}

/* ---- pipelining after STARTTLS (RFC 3207 5, CVE-2011-0411) ------------- */

struct pipe_case {
	const char *name;
	const char *write;       /* the client's one write */
	const char *want_lines;  /* what the server executed */
};

static const struct pipe_case pipe_cases[] = {
	/* Fresh input: STARTTLS and the injected command in one segment. */
	{ "direct", "STARTTLS\r\nEVIL\r\n", "STARTTLS|PING|QUIT|" },
	/* Kept input: HOLD pauses the owner; STARTTLS and EVIL wait in the
	 * loop's pending input and are offered again on resume. */
	{ "pending", "HOLD\r\nSTARTTLS\r\nEVIL\r\nMORE EVIL\r\n", "HOLD|STARTTLS|PING|QUIT|" },
};

Test(tls, pipelined_after_starttls_is_discarded)
{
	for (size_t i = 0; i < sizeof(pipe_cases) / sizeof(pipe_cases[0]); i++) {
		const struct pipe_case *pc = &pipe_cases[i];
		struct tt_cli *k;

		memset(&T.srv, 0, sizeof(T.srv));
		T.pipeline = pc->write;
		T.done = 0;
		tt_loop(CONFIG_TLS_HANDSHAKE_TIMEOUT_DEFAULT_MS);
		k = tt_client_run();
		cr_expect(T.done, "%s: not finished (state %d)", pc->name, k->st);
		cr_expect_str_eq(T.srv.lines, pc->want_lines, "%s", pc->name);
		cr_expect(strstr(T.srv.lines, "EVIL") == NULL, "%s: executed %s", pc->name,
			  T.srv.lines);
		free(k);
		T.l = loop_free(T.l);
		config_free(&T.cfg);
	}
}

/* ---- implicit TLS (listen_tls) and what verification reports ---------- */

struct verify_case {
	const char *name;
	int implicit;          /* connect to the listen_tls port */
	int self_signed;       /* server: self-signed, not the test CA's */
	const char *host;      /* client: SNI and name checked */
	int want_verified;
	const char *want_error;
};

static const struct verify_case verify_cases[] = {
	{ "CA-signed, right name", 0, 0, TT_HOST, 1, "" },
	{ "CA-signed, right name, implicit TLS", 1, 0, TT_HOST, 1, "" },
	{ "CA-signed, wrong name", 0, 0, TT_WRONG_HOST, 0, "hostname mismatch" },
	{ "CA-signed, IP literal", 1, 0, "127.0.0.1", 0, "IP address mismatch" },
	{ "self-signed, right name", 0, 1, TT_HOST, 0, "self-signed certificate" },
	{ "no name to check", 1, 0, NULL, 1, "" },
};

Test(tls, implicit_tls_and_verification)
{
	for (size_t i = 0; i < sizeof(verify_cases) / sizeof(verify_cases[0]); i++) {
		const struct verify_case *vc = &verify_cases[i];
		struct tt_cli *k;

		memset(&T.srv, 0, sizeof(T.srv));
		T.done = 0;
		T.implicit = vc->implicit;
		T.cli_host = vc->host;
		tls_ctx_free(T.srv_ctx);
		T.srv_ctx = vc->self_signed ? tt_ctx(TLS_SERVER, certs.self_cert, certs.self_key, NULL)
					    : tt_ctx(TLS_SERVER, certs.ca_srv_cert, certs.ca_srv_key, NULL);
		tt_loop(CONFIG_TLS_HANDSHAKE_TIMEOUT_DEFAULT_MS);
		k = tt_client_run();
		cr_expect(T.done, "%s: not finished (state %d)", vc->name, k->st);
		cr_expect_eq(k->tls_done, 1, "%s", vc->name);
		cr_expect_eq(k->info.verified, vc->want_verified, "%s: %s", vc->name, k->verify_error);
		cr_expect_str_eq(k->verify_error, vc->want_error, "%s", vc->name);
		cr_expect_eq(T.srv.tls_ok, 1, "%s", vc->name);
		/* Implicit TLS: the greeting went out only after the handshake
		 * (the client checks it arrives with conn_tls() set). */
		free(k);
		T.l = loop_free(T.l);
		config_free(&T.cfg);
	}
}

/* ---- hostile peers: each costs only its own connection ---------------- */

enum raw_kind { RAW_GARBAGE, RAW_HALF_HELLO_STALL, RAW_HALF_HELLO_CLOSE, RAW_NEVER_READS,
		RAW_CLOSE_NOTIFY };

struct raw_case {
	const char *name;
	int implicit;          /* listen_tls port, else STARTTLS first */
	enum raw_kind kind;
	int want_err;          /* the server's tls_done; 0: the handshake succeeds */
};

static const struct raw_case raw_cases[] = {
	{ "garbage after STARTTLS", 0, RAW_GARBAGE, -EPROTO },
	{ "garbage on listen_tls", 1, RAW_GARBAGE, -EPROTO },
	{ "half a ClientHello, left open", 1, RAW_HALF_HELLO_STALL, -ETIMEDOUT },
	{ "half a ClientHello after STARTTLS, left open", 0, RAW_HALF_HELLO_STALL, -ETIMEDOUT },
	{ "half a ClientHello, then close", 1, RAW_HALF_HELLO_CLOSE, -ECONNRESET },
	/* TLS up, then commands and never a read of the replies. */
	{ "TLS client that never reads", 0, RAW_NEVER_READS, 0 },
	/* Not hostile: QUIT in TLS; 221 comes, then close_notify, then EOF. */
	{ "QUIT: 221, then close_notify", 1, RAW_CLOSE_NOTIFY, 0 },
};

/* The never-reading client's flood stops when the server stops taking
 * input (its sends block TT_FLOOD_BLOCK_S); this much means it never did. */
#define TT_FLOOD_MAX (256u << 20)
#define TT_FLOOD_BLOCK_S 2
/* send_timeout and close_timeout in the hostile tests. */
#define TT_HOSTILE_TIMEOUT_MS 1000

struct raw_run {
	const struct raw_case *rc;
	int eof;               /* the server closed on us */
	long long ms;          /* from the hostile write to that close */
	size_t flooded;        /* never-reads: bytes it got in before blocking */
	char fail[256];        /* what went wrong in the thread, "" */
};

static int raw_line(int fd, char *line, size_t len)
{
	size_t n = 0;

	while (n + 1 < len) {
		ssize_t r = recv(fd, line + n, 1, 0);

		if (r <= 0)
			return -1;
		if (line[n++] == '\n')
			break;
	}
	line[n] = '\0';
	return 0;
}

static void raw_finished(void *arg)
{
	(void)arg;
	T.raw_running = 0;
	if (T.cli_closed)
		loop_stop(T.l);
}

/* The hostile bytes: an HTTP request, or the first half of a real
 * ClientHello (made with tls_conn, without a loop). */
static size_t raw_payload(const struct raw_case *rc, char *out, size_t len)
{
	static const char garbage[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	struct tls_conn *t;
	struct buf b;
	size_t n;

	if (rc->kind == RAW_NEVER_READS || rc->kind == RAW_CLOSE_NOTIFY) {
		out[0] = '-';
		return 1; /* unused: these speak TLS */
	}
	if (rc->kind == RAW_GARBAGE) {
		memcpy(out, garbage, sizeof(garbage) - 1);
		return sizeof(garbage) - 1;
	}
	t = tls_conn_new(T.cli_ctx, TT_HOST);
	buf_init(&b, 0);
	if (!t || tls_conn_take(t, &b) || b.len < 64) {
		tls_conn_free(t);
		buf_free(&b);
		return 0;
	}
	n = b.len / 2 < len ? b.len / 2 : len;
	memcpy(out, b.data, n);
	tls_conn_free(t);
	buf_free(&b);
	return n;
}

/* A TLS handshake on a blocking socket with tls_conn (as bench does). */
static int raw_tls_handshake(int fd, struct tls_conn *t)
{
	struct buf out;
	char in[4096];
	int rc = -1;

	buf_init(&out, 0);
	for (;;) {
		ssize_t r;

		if (tls_conn_take(t, &out) ||
		    (out.len && send(fd, out.data, out.len, MSG_NOSIGNAL) != (ssize_t)out.len))
			break;
		out.len = 0;
		if (tls_conn_state(t) == TLS_CONN_UP) {
			rc = 0;
			break;
		}
		r = recv(fd, in, sizeof(in), 0);
		if (r <= 0 || tls_conn_input(t, in, (size_t)r, NULL, NULL) < 0)
			break;
	}
	buf_free(&out);
	return rc;
}

/* TLS up, then PING after PING, never reading a reply, until the server
 * stops taking them; then wait (still not reading) while its send_timeout
 * and close_timeout run. Returns 0 or -1 with rr->fail set. */
static int raw_flood(struct raw_run *rr, int fd)
{
	struct timeval tv = { .tv_sec = TT_FLOOD_BLOCK_S };
	struct tls_conn *t = tls_conn_new(T.cli_ctx, TT_HOST);
	char cmds[6 * 1024];
	struct buf b;
	int rc = -1;

	buf_init(&b, 0);
	for (size_t i = 0; i + 6 <= sizeof(cmds); i += 6)
		memcpy(cmds + i, "PING\r\n", 6);
	if (!t || raw_tls_handshake(fd, t)) {
		snprintf(rr->fail, sizeof(rr->fail), "TLS handshake failed");
		goto out;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (rr->flooded < TT_FLOOD_MAX) {
		ssize_t w;

		b.len = 0;
		if (tls_conn_write(t, cmds, sizeof(cmds)) || tls_conn_take(t, &b))
			break;
		w = send(fd, b.data, b.len, MSG_NOSIGNAL);
		if (w < (ssize_t)b.len)
			break; /* blocked: the server stopped reading */
		rr->flooded += (size_t)w;
	}
	if (rr->flooded >= TT_FLOOD_MAX) {
		snprintf(rr->fail, sizeof(rr->fail), "the server took %u MiB without a pause",
			 TT_FLOOD_MAX >> 20);
		goto out;
	}
	rc = 0;
out:
	buf_free(&b);
	tls_conn_free(t);
	return rc;
}

static int raw_plain(void *arg, const char *p, size_t n)
{
	struct buf *b = arg;

	return buf_append(b, p, n) != 0;
}

/* Implicit TLS, the greeting, QUIT; the server's last bytes must be its
 * 221 and then close_notify (TLS_CONN_EOF), before the TCP close. */
static int raw_quit(struct raw_run *rr, int fd)
{
	static const struct tls_conn_sink sink = { NULL, raw_plain };
	struct tls_conn *t = tls_conn_new(T.cli_ctx, TT_HOST);
	struct buf b, plain;
	char in[4096];
	int rc = 0;

	buf_init(&b, 0);
	buf_init(&plain, 0);
	if (!t || raw_tls_handshake(fd, t) || tls_conn_write(t, "QUIT\r\n", 6) ||
	    tls_conn_take(t, &b) || send(fd, b.data, b.len, MSG_NOSIGNAL) != (ssize_t)b.len) {
		snprintf(rr->fail, sizeof(rr->fail), "TLS handshake or QUIT failed");
		goto out;
	}
	while (rc == 0) {
		ssize_t r = recv(fd, in, sizeof(in), 0);

		if (r <= 0) {
			snprintf(rr->fail, sizeof(rr->fail), "TCP closed (%zd) before close_notify", r);
			goto out;
		}
		rc = tls_conn_input(t, in, (size_t)r, &sink, &plain);
	}
	if (rc != TLS_CONN_EOF || plain.len < 9 || memcmp(plain.data + plain.len - 9, "221 bye\r\n", 9))
		snprintf(rr->fail, sizeof(rr->fail), "want 221 then close_notify: rc %d, %zu bytes",
			 rc, plain.len);
out:
	buf_free(&b);
	buf_free(&plain);
	tls_conn_free(t);
	return rr->fail[0] ? -1 : 0;
}

/* The good session: started by the raw thread once its hostile peer is at
 * work, so the two overlap. */
static void raw_start_good(void *arg)
{
	(void)arg;
	tt_client_start();
}

static void *raw_thread(void *arg)
{
	struct raw_run *rr = arg;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { .tv_sec = TT_RAW_TIMEOUT_S };
	char line[256], junk[4096];
	size_t n = raw_payload(rr->rc, junk, sizeof(junk));
	long long t0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_port = htons(rr->rc->implicit ? T.port_tls : T.port);
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (n == 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		snprintf(rr->fail, sizeof(rr->fail), "connect or payload: %s", strerror(errno));
		goto out;
	}
	if (!rr->rc->implicit &&
	    (raw_line(fd, line, sizeof(line)) || send(fd, "STARTTLS\r\n", 10, 0) != 10 ||
	     raw_line(fd, line, sizeof(line)) || strncmp(line, "220 go", 6))) {
		snprintf(rr->fail, sizeof(rr->fail), "no STARTTLS: %.200s", line);
		goto out;
	}
	t0 = tt_now_ms();
	if (rr->rc->kind == RAW_NEVER_READS ? raw_flood(rr, fd) :
	    rr->rc->kind == RAW_CLOSE_NOTIFY ? raw_quit(rr, fd) :
	    send(fd, junk, n, 0) != (ssize_t)n) {
		if (!rr->fail[0])
			snprintf(rr->fail, sizeof(rr->fail), "send: %s", strerror(errno));
		goto out;
	}
	(void)loop_post(T.l, raw_start_good, NULL);
	if (rr->rc->kind == RAW_NEVER_READS)
		sleep(TT_FLOOD_BLOCK_S + 2 * TT_HOSTILE_TIMEOUT_MS / 1000 + 1);
	if (rr->rc->kind == RAW_HALF_HELLO_CLOSE) {
		rr->eof = 1; /* we close; the server must notice */
		goto out;
	}
	/* Read (an alert, maybe) until the server closes. */
	for (;;) {
		ssize_t r = recv(fd, junk, sizeof(junk), 0);

		if (r == 0 || (r < 0 && errno == ECONNRESET)) {
			rr->eof = 1;
			break;
		}
		if (r < 0) {
			snprintf(rr->fail, sizeof(rr->fail), "no close within %d s", TT_RAW_TIMEOUT_S);
			break;
		}
	}
	rr->ms = tt_now_ms() - t0;
out:
	close(fd);
	if (rr->fail[0])
		(void)loop_post(T.l, raw_start_good, NULL); /* so the loop ends */
	(void)loop_post(T.l, raw_finished, NULL);
	return NULL;
}

#define TT_HOSTILE_HANDSHAKE_MS 1500

Test(tls, hostile_peer_costs_only_its_connection)
{
	for (size_t i = 0; i < sizeof(raw_cases) / sizeof(raw_cases[0]); i++) {
		const struct raw_case *rc = &raw_cases[i];
		struct raw_run rr = { .rc = rc };
		struct tt_cli *k;
		pthread_t th;

		memset(&T.srv, 0, sizeof(T.srv));
		T.done = 0;
		T.cli_closed = 0;
		T.raw_running = 1;
		T.big = TT_BIG / 4;  /* the good session echoes meanwhile */
		tt_loop(TT_HOSTILE_HANDSHAKE_MS);
		T.cfg.send_timeout_ms = T.cfg.close_timeout_ms = TT_HOSTILE_TIMEOUT_MS;
		cr_assert_eq(pthread_create(&th, NULL, raw_thread, &rr), 0);
		tt_run();
		pthread_join(th, NULL);
		k = T.cli;
		cr_assert_not_null(k);
		cr_expect(k->closed, "%s", rc->name);
		cr_expect_str_empty(rr.fail, "%s: %s", rc->name, rr.fail);
		cr_expect(rr.eof, "%s: the server did not close", rc->name);
		cr_expect_eq(T.srv.tls_fail, rc->want_err ? 1 : 0, "%s", rc->name);
		cr_expect_eq(T.srv.last_tls_err, rc->want_err, "%s: tls_done(%d)", rc->name,
			     T.srv.last_tls_err);
		cr_expect_eq(T.srv.opens, T.srv.closes, "%s", rc->name);
		if (rc->kind == RAW_HALF_HELLO_STALL)
			cr_expect_geq(rr.ms, TT_HOSTILE_HANDSHAKE_MS - 100, "%s: cut after %lld ms",
				      rc->name, rr.ms);
		/* The good session meanwhile: all of its echo, verified. */
		cr_expect(T.done, "%s: the good session did not finish", rc->name);
		cr_expect_eq(k->got, T.big, "%s", rc->name);
		cr_expect_eq(k->bad_at, 0, "%s", rc->name);
		cr_expect_eq(T.srv.tls_ok, rc->want_err ? 1 : 2, "%s", rc->name);
		if (rc->kind == RAW_NEVER_READS)
			fprintf(stderr, "%s: took %zu bytes before it stopped reading; cut after "
				"%lld ms\n", rc->name, rr.flooded, rr.ms);
		buf_free(&k->line);
		free(k);
		T.cli = NULL;
		T.l = loop_free(T.l);
		config_free(&T.cfg);
	}
}

/* ---- memory of idle TLS sessions --------------------------------------- */

/* The client process of the idle test: TT_IDLE_CONNS sessions to port on
 * a loop of its own; ends (_exit: no Criterion fini here) once the server
 * has closed them all. */
static void tt_idle_clients(unsigned short port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct tt_cli *k = calloc(TT_IDLE_CONNS, sizeof(*k));
	struct loop_conf lc = { 0 };
	char err[256];

	config_defaults(&T.cfg);
	T.cfg.nlisten = 0;
	T.cfg.max_connections = TT_IDLE_CONNS + 16;
	lc.cfg = &T.cfg;
	lc.ops = &srv_ops;
	T.l = loop_new(&lc, err, sizeof(err));
	if (!k || !T.l)
		_exit(2);
	T.idle_child = 1;
	sa.sin_port = htons(port);
	for (unsigned i = 0; i < TT_IDLE_CONNS; i++) {
		buf_init(&k[i].line, 4096);
		if (loop_connect(T.l, (struct sockaddr *)&sa, sizeof(sa), 20000, &cli_ops, NULL, &k[i]))
			_exit(3);
	}
	(void)loop_run(T.l);
	_exit(T.idle_closed == TT_IDLE_CONNS ? 0 : 4);
}

/* TT_IDLE_CONNS sessions, each after STARTTLS, its handshake and one
 * command, all waiting: the heap the server side holds for them (loop
 * slot buffers, TLS state, the test owner's small per-session state), the
 * clients being another process. The budget: 64 KiB per idle TLS
 * session. Printed for the record. */
Test(tls, idle_sessions_memory)
{
	int fds[2], status = -1;
	unsigned short port;
	long long per;
	pid_t pid;

	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(fds[1]);
		if (read(fds[0], &port, sizeof(port)) != (ssize_t)sizeof(port))
			_exit(1);
		tt_idle_clients(port);
	}
	close(fds[0]);
	T.idle_want = TT_IDLE_CONNS;
	tt_loop(CONFIG_TLS_HANDSHAKE_TIMEOUT_DEFAULT_MS);
	T.idle_base = tt_heap_bytes();
	T.idle_cpu_us = tt_cpu_us();
	T.idle_ms = tt_now_ms();
	cr_assert_eq(write(fds[1], &T.port, sizeof(T.port)), (ssize_t)sizeof(T.port));
	close(fds[1]);
	tt_run();
	for (int i = 0; i < TT_WATCHDOG_S * 10 && waitpid(pid, &status, WNOHANG) == 0; i++)
		usleep(100 * 1000);
	if (status == -1) {
		kill(pid, SIGKILL);
		(void)waitpid(pid, &status, 0);
	}
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "client process: status %d", status);
	cr_assert_eq(T.idle_up, TT_IDLE_CONNS);
	per = T.idle_bytes / TT_IDLE_CONNS;
	fprintf(stderr, "idle TLS sessions: %u hold %lld bytes of heap on the server side: "
		"%lld each; the server process spent %.0f us of CPU per session (STARTTLS, "
		"handshake, one command; %.0f sessions/s per core), %lld ms in all\n",
		TT_IDLE_CONNS, T.idle_bytes, per, (double)T.idle_cpu_us / TT_IDLE_CONNS,
		T.idle_cpu_us ? TT_IDLE_CONNS * 1e6 / (double)T.idle_cpu_us : 0.0, T.idle_ms);
	cr_expect_leq(per, 64 * 1024, "%lld bytes per idle TLS session", per);
}

/* ---- contexts: what a bad file or setting says ------------------------- */

Test(tls, ctx_errors_name_the_file_and_reason)
{
	char garbage[160], err[512], want[512];
	struct {
		const char *name;
		enum tls_role role;
		const char *cert, *key, *ca, *ciphers;
		const char *want_what, *want_path, *want_reason; /* "WHAT PATH: REASON" */
	} cases[] = {
		{ "key of another certificate", TLS_SERVER, certs.self_cert, certs.ca_srv_key, NULL, NULL,
		  "tls_key_file", certs.ca_srv_key, "key values mismatch" },
		{ "certificate not PEM", TLS_SERVER, garbage, certs.self_key, NULL, NULL,
		  "tls_cert_file", garbage, "no start line" },
		{ "key not PEM", TLS_SERVER, certs.self_cert, garbage, NULL, NULL,
		  "tls_key_file", garbage, "" },
		{ "trust store not PEM", TLS_CLIENT, NULL, NULL, garbage, NULL,
		  "tls_ca_file", garbage, "no certificate or crl found" },
		{ "no such cipher", TLS_CLIENT, NULL, NULL, NULL, "NO-SUCH-CIPHER",
		  "tls_ciphers", "NO-SUCH-CIPHER", "no cipher match" },
		{ "no key", TLS_SERVER, certs.self_cert, NULL, NULL, NULL,
		  "tls_cert_file and tls_key_file are both needed", NULL, NULL },
	};

	snprintf(garbage, sizeof(garbage), "%s/garbage.pem", certs.dir);
	tt_sh("echo 'not a certificate' > %s", garbage);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tls_ctx_conf tc = { .cert_file = cases[i].cert, .key_file = cases[i].key,
					   .ca_file = cases[i].ca, .ciphers = cases[i].ciphers };

		if (cases[i].want_path)
			snprintf(want, sizeof(want), "%s %s: %s", cases[i].want_what,
				 cases[i].want_path, cases[i].want_reason);
		else
			snprintf(want, sizeof(want), "%s", cases[i].want_what);
		cr_expect_null(tls_ctx_new(cases[i].role, &tc, err, sizeof(err)), "%s", cases[i].name);
		cr_expect(strncmp(err, want, strlen(want)) == 0, "%s: got [%s], want [%s...]",
			  cases[i].name, err, want);
	}
}
