/* SPDX-License-Identifier: MIT */
/*
 * tls_ctx_swap() (core/tls.h), the reload's certificate change: on memory
 * pairs (no loop, no socket), a session begun before a swap keeps its
 * certificate and goes on; one begun after gets the new one; swaps racing
 * with threads making connections free nothing in use (ASan, and TSan in
 * make tsan). Each case makes its own certificates: the TSan build's
 * Criterion stand-in has no suite set-up.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/tls.h"
#include "tls_certs.h"

#define TS_PUMP_MAX 32          /* handshake flights: a few suffice */
#define TS_THREADS 2            /* threads making connections meanwhile */
#define TS_CONNS_PER_THREAD 300
#define TS_SWAPS 40
#define TS_PLAIN_MAX 256

static struct tls_certs certs;

static void ts_setup(void)
{
	char err[512];

	cr_assert_eq(tls_certs_make(&certs, err, sizeof(err)), 0, "%s", err);
}

static void ts_teardown(void)
{
	tls_certs_drop(&certs);
}

static struct tls_ctx *ts_ctx(enum tls_role role, const char *cert, const char *key)
{
	/* The client trusts the test CA only: a session on the CA-signed
	 * certificate verifies, one on the self-signed does not. */
	struct tls_ctx_conf tc = { .cert_file = cert, .key_file = key,
				   .ca_file = role == TLS_CLIENT ? certs.ca_cert : NULL };
	char err[512];
	struct tls_ctx *ctx = tls_ctx_new(role, &tc, err, sizeof(err));

	cr_assert_not_null(ctx, "%s", err);
	return ctx;
}

struct ts_plain {
	char p[TS_PLAIN_MAX];
	size_t n;
};

static int ts_plain(void *arg, const char *p, size_t n)
{
	struct ts_plain *pl = arg;

	cr_assert_leq(pl->n + n, sizeof(pl->p));
	memcpy(pl->p + pl->n, p, n);
	pl->n += n;
	return 0;
}

static const struct tls_conn_sink ts_sink = { NULL, ts_plain };

/* Move what from has to send into to. */
static void ts_move(struct tls_conn *from, struct tls_conn *to, struct ts_plain *pl)
{
	struct buf b;

	buf_init(&b, 0);
	cr_assert_eq(tls_conn_take(from, &b), 0);
	if (b.len)
		cr_assert_geq(tls_conn_input(to, b.data, b.len, &ts_sink, pl), 0,
			      "%s", tls_conn_error(to));
	buf_free(&b);
}

/* Exchange flights until both ends are up. */
static void ts_handshake(struct tls_conn *c, struct tls_conn *s)
{
	struct ts_plain pl = { .n = 0 };

	for (int i = 0; i < TS_PUMP_MAX; i++) {
		if (tls_conn_state(c) == TLS_CONN_UP && tls_conn_state(s) == TLS_CONN_UP)
			return;
		ts_move(c, s, &pl);
		ts_move(s, c, &pl);
	}
	cr_assert_fail("no handshake: client %s (%s), server %s (%s)",
		tls_conn_state_name(tls_conn_state(c)), tls_conn_error(c),
		tls_conn_state_name(tls_conn_state(s)), tls_conn_error(s));
}

/* One line each way on an established pair. */
static void ts_talk(struct tls_conn *c, struct tls_conn *s, const char *line)
{
	struct ts_plain got = { .n = 0 };

	cr_assert_eq(tls_conn_write(c, line, strlen(line)), 0);
	ts_move(c, s, &got);
	cr_assert_eq(got.n, strlen(line));
	cr_assert_eq(memcmp(got.p, line, got.n), 0);
	got.n = 0;
	cr_assert_eq(tls_conn_write(s, line, strlen(line)), 0);
	ts_move(s, c, &got);
	cr_assert_eq(got.n, strlen(line));
}

Test(tls_swap, old_session_keeps_its_certificate_new_one_gets_the_new)
{
	ts_setup();
	struct tls_ctx *srv = ts_ctx(TLS_SERVER, certs.self_cert, certs.self_key);
	struct tls_ctx *cli = ts_ctx(TLS_CLIENT, NULL, NULL);
	struct tls_conn *c1 = tls_conn_new(cli, TLS_CERTS_HOST), *s1 = tls_conn_new(srv, NULL);
	struct tls_conn *c2, *s2;

	ts_handshake(c1, s1);
	cr_assert_eq(tls_conn_info(c1)->verified, 0, "self-signed: not verified");

	cr_assert_eq(tls_ctx_swap(srv, ts_ctx(TLS_SERVER, certs.ca_srv_cert, certs.ca_srv_key)), 0);
	c2 = tls_conn_new(cli, TLS_CERTS_HOST);
	s2 = tls_conn_new(srv, NULL);
	ts_handshake(c2, s2);
	cr_assert_eq(tls_conn_info(c2)->verified, 1, "the new (CA-signed) certificate: %s",
		     tls_conn_info(c2)->verify_error);

	/* The old session runs on the context it began with, though the
	 * server context no longer holds it. */
	ts_talk(c1, s1, "MAIL FROM:<a@b.example>\r\n");
	ts_talk(c2, s2, "NOOP\r\n");
	tls_conn_free(s1);
	tls_conn_free(c1);
	tls_conn_free(s2);
	tls_conn_free(c2);
	tls_ctx_free(srv);
	tls_ctx_free(cli);
	ts_teardown();
}

Test(tls_swap, role_mismatch_refused_and_freed)
{
	ts_setup();
	struct tls_ctx *srv = ts_ctx(TLS_SERVER, certs.self_cert, certs.self_key);

	cr_assert_eq(tls_ctx_swap(srv, ts_ctx(TLS_CLIENT, NULL, NULL)), -EINVAL);
	cr_assert_eq(tls_ctx_swap(srv, NULL), -EINVAL);
	cr_assert_eq(tls_ctx_swap(NULL, ts_ctx(TLS_SERVER, certs.self_cert, certs.self_key)),
		     -EINVAL);
	tls_ctx_free(srv); /* ASan: the refused ones were freed, nothing leaks */
	ts_teardown();
}

struct ts_maker {
	struct tls_ctx *srv;
	unsigned made;
};

static void *ts_make(void *arg)
{
	struct ts_maker *m = arg;

	for (unsigned i = 0; i < TS_CONNS_PER_THREAD; i++) {
		struct tls_conn *t = tls_conn_new(m->srv, NULL);

		if (t)
			m->made++;
		tls_conn_free(t);
	}
	return NULL;
}

Test(tls_swap, swaps_race_with_new_connections)
{
	ts_setup();
	struct tls_ctx *srv = ts_ctx(TLS_SERVER, certs.self_cert, certs.self_key);
	struct tls_ctx *fresh[TS_SWAPS];
	struct ts_maker m[TS_THREADS];
	pthread_t th[TS_THREADS];

	/* Made before the threads start, so the swaps come fast. */
	for (int i = 0; i < TS_SWAPS; i++)
		fresh[i] = ts_ctx(TLS_SERVER, i % 2 ? certs.self_cert : certs.ca_srv_cert,
				  i % 2 ? certs.self_key : certs.ca_srv_key);
	for (int i = 0; i < TS_THREADS; i++) {
		m[i] = (struct ts_maker){ .srv = srv };
		cr_assert_eq(pthread_create(&th[i], NULL, ts_make, &m[i]), 0);
	}
	for (int i = 0; i < TS_SWAPS; i++)
		cr_assert_eq(tls_ctx_swap(srv, fresh[i]), 0);
	for (int i = 0; i < TS_THREADS; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(m[i].made, TS_CONNS_PER_THREAD);
	}
	tls_ctx_free(srv);
	ts_teardown();
}
