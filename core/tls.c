/* SPDX-License-Identifier: MIT */
/*
 * tls: OpenSSL 3 contexts and per-connection TLS on memory (see tls.h). The
 * SSL object reads from and writes to one BIO of our own: reads come from
 * the window of ciphertext tls_conn_input() was given (no copy), writes
 * append to the connection's output buffer. So no ciphertext is ever held
 * here between calls except OpenSSL's own partial record, and an idle
 * connection holds no record buffers (SSL_MODE_RELEASE_BUFFERS).
 */
#include "core/tls.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/log.h"
#include "core/netaddr.h"

/* One TLS record's plaintext at most (RFC 8446 5.1: 2^14): what one
 * SSL_read can give. */
#define TLS_PLAIN_CHUNK 16384
/* The session id context (RFC 5246 7.4.1.2 sessions resume only within
 * it); any fixed string of ours. */
#define TLS_SESSION_CTX "etrnd"

/* ssl is replaced by tls_ctx_swap() (SIGHUP) while engine threads make
 * connections on it: mu guards the pointer for the moment a connection
 * takes its own reference (SSL_CTX is reference-counted: each SSL holds
 * one, so a running session keeps the context it started with). */
struct tls_ctx {
	pthread_mutex_t mu;
	SSL_CTX *ssl;
	enum tls_role role;
};

struct tls_conn {
	SSL *ssl;                  /* owns the BIO */
	enum tls_role role;
	enum tls_conn_state state;
	const char *in;            /* ciphertext window of tls_conn_input() */
	size_t in_len;
	struct buf out;            /* ciphertext to send */
	int shut;                  /* close_notify queued */
	const char *why;           /* static: why it failed, "" */
	struct tls_info info;
};

/* ---- the BIO: a read window and an output buffer ------------------------ */

static BIO_METHOD *tls_bio_method;
static pthread_once_t tls_bio_once = PTHREAD_ONCE_INIT;

static int tls_bio_write(BIO *b, const char *p, int n)
{
	struct tls_conn *t = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	if (n <= 0)
		return 0;
	/* Memory never says "retry": a failed append fails the connection. */
	if (buf_append(&t->out, p, (size_t)n))
		return -1;
	return n;
}

static int tls_bio_read(BIO *b, char *p, int n)
{
	struct tls_conn *t = BIO_get_data(b);
	size_t k;

	BIO_clear_retry_flags(b);
	if (n <= 0)
		return 0;
	if (t->in_len == 0) {
		/* All given ciphertext consumed: OpenSSL says WANT_READ. */
		BIO_set_retry_read(b);
		return -1;
	}
	k = t->in_len < (size_t)n ? t->in_len : (size_t)n;
	memcpy(p, t->in, k);
	t->in += k;
	t->in_len -= k;
	return (int)k;
}

static long tls_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tls_conn *t = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_PENDING:
		return t ? (long)(t->in_len < LONG_MAX ? t->in_len : LONG_MAX) : 0;
	default:
		return 0; /* push, pop, kTLS queries, ...: not ours */
	}
}

static int tls_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void tls_bio_setup(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				     "etrnd window");

	if (!m)
		return;
	if (!BIO_meth_set_write(m, tls_bio_write) || !BIO_meth_set_read(m, tls_bio_read) ||
	    !BIO_meth_set_ctrl(m, tls_bio_ctrl) || !BIO_meth_set_create(m, tls_bio_create)) {
		BIO_meth_free(m);
		return;
	}
	tls_bio_method = m;
}

/* ---- contexts ----------------------------------------------------------- */

/* "what path: OpenSSL's reason" into err; clears OpenSSL's error queue.
 * The earliest error is the most precise ("no start line", not the "PEM
 * lib" stacked on it). */
static void tls_ctx_err(char *err, size_t errlen, const char *what, const char *path)
{
	unsigned long e = ERR_peek_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	snprintf(err, errlen, "%s %s: %s", what, path, r ? r : "unknown OpenSSL error");
	ERR_clear_error();
}

/* The certificate chain and key, checked to belong together. */
static int tls_ctx_server(SSL_CTX *s, const struct tls_ctx_conf *conf, char *err,
			  size_t errlen)
{
	if (!conf->cert_file || !conf->cert_file[0] || !conf->key_file || !conf->key_file[0]) {
		snprintf(err, errlen, "tls_cert_file and tls_key_file are both needed");
		return -1;
	}
	if (SSL_CTX_use_certificate_chain_file(s, conf->cert_file) != 1) {
		tls_ctx_err(err, errlen, "tls_cert_file", conf->cert_file);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(s, conf->key_file, SSL_FILETYPE_PEM) != 1) {
		tls_ctx_err(err, errlen, "tls_key_file", conf->key_file);
		return -1;
	}
	if (SSL_CTX_check_private_key(s) != 1) {
		tls_ctx_err(err, errlen, "tls_key_file", conf->key_file);
		return -1;
	}
	/* Resumption by stateless tickets only (RFC 5077, RFC 8446 4.6.1): no
	 * server-side cache shared (and locked) across engine threads and no
	 * memory growing with the number of clients. */
	(void)SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_set_session_id_context(s, (const unsigned char *)TLS_SESSION_CTX,
					   sizeof(TLS_SESSION_CTX) - 1) != 1) {
		tls_ctx_err(err, errlen, "session id", "context");
		return -1;
	}
	return 0;
}

/* The trust store; verification runs but never aborts the handshake (the
 * drain decides by tls_info.verified what an unverified peer may get). */
static int tls_ctx_client(SSL_CTX *s, const struct tls_ctx_conf *conf, char *err,
			  size_t errlen)
{
	if (conf->ca_file && conf->ca_file[0]) {
		if (SSL_CTX_load_verify_locations(s, conf->ca_file, NULL) != 1) {
			tls_ctx_err(err, errlen, "tls_ca_file", conf->ca_file);
			return -1;
		}
	} else if (SSL_CTX_set_default_verify_paths(s) != 1) {
		tls_ctx_err(err, errlen, "system trust store", X509_get_default_cert_file());
		return -1;
	}
	SSL_CTX_set_verify(s, SSL_VERIFY_NONE, NULL);
	return 0;
}

struct tls_ctx *tls_ctx_new(enum tls_role role, const struct tls_ctx_conf *conf,
			    char *err, size_t errlen)
{
	struct tls_ctx *ctx = calloc(1, sizeof(*ctx));
	const char *ciphers = conf->ciphers && conf->ciphers[0] ? conf->ciphers
								: TLS_CIPHERS_DEFAULT;

	(void)pthread_once(&tls_bio_once, tls_bio_setup);
	if (ctx)
		pthread_mutex_init(&ctx->mu, NULL); /* before any goto fail */
	if (!ctx || !tls_bio_method) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	ctx->role = role;
	ctx->ssl = SSL_CTX_new(role == TLS_SERVER ? TLS_server_method() : TLS_client_method());
	if (!ctx->ssl) {
		tls_ctx_err(err, errlen, "SSL_CTX_new", role == TLS_SERVER ? "server" : "client");
		goto fail;
	}
	/* TLS 1.2 and 1.3 only (RFC 8996 deprecates 1.0 and 1.1). */
	if (SSL_CTX_set_min_proto_version(ctx->ssl, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx->ssl, TLS1_3_VERSION) != 1) {
		tls_ctx_err(err, errlen, "protocol", "versions");
		goto fail;
	}
	/* Renegotiation is a CPU lever for a client and useless to SMTP. */
	SSL_CTX_set_options(ctx->ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	/* Record buffers only while a record is in transit: an idle session
	 * keeps none (the 64 KiB per idle session budget). */
	SSL_CTX_set_mode(ctx->ssl, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set_cipher_list(ctx->ssl, ciphers) != 1) {
		tls_ctx_err(err, errlen, "tls_ciphers", ciphers);
		goto fail;
	}
	if ((role == TLS_SERVER ? tls_ctx_server : tls_ctx_client)(ctx->ssl, conf, err, errlen))
		goto fail;
	return ctx;
fail:
	return tls_ctx_free(ctx);
}

struct tls_ctx *tls_ctx_free(struct tls_ctx *ctx)
{
	if (!ctx)
		return NULL;
	SSL_CTX_free(ctx->ssl);
	pthread_mutex_destroy(&ctx->mu);
	free(ctx);
	return NULL;
}

int tls_ctx_swap(struct tls_ctx *ctx, struct tls_ctx *fresh)
{
	SSL_CTX *old;

	if (!ctx || !fresh || ctx->role != fresh->role) {
		(void)tls_ctx_free(fresh);
		return -EINVAL;
	}
	pthread_mutex_lock(&ctx->mu);
	old = ctx->ssl;
	ctx->ssl = fresh->ssl;
	pthread_mutex_unlock(&ctx->mu);
	fresh->ssl = old;
	/* Drops the context's own reference; sessions on it keep theirs. */
	(void)tls_ctx_free(fresh);
	return 0;
}

/* ctx's current SSL_CTX with a reference of the caller's (SSL_CTX_free). */
static SSL_CTX *tls_ctx_get(struct tls_ctx *ctx)
{
	SSL_CTX *s;

	pthread_mutex_lock(&ctx->mu);
	s = ctx->ssl;
	SSL_CTX_up_ref(s);
	pthread_mutex_unlock(&ctx->mu);
	return s;
}

/* ---- connections -------------------------------------------------------- */

const char *tls_conn_state_name(enum tls_conn_state s)
{
	switch (s) {
	case TLS_CONN_HANDSHAKE: return "HANDSHAKE";
	case TLS_CONN_UP: return "UP";
	case TLS_CONN_CLOSED: return "CLOSED";
	case TLS_CONN_FAILED: return "FAILED";
	}
	return "?";
}

static void tls_conn_enter(struct tls_conn *t, enum tls_conn_state s)
{
	log_debug("tls %p (%s): %s -> %s", (void *)t, t->role == TLS_SERVER ? "server" : "client",
		  tls_conn_state_name(t->state), tls_conn_state_name(s));
	t->state = s;
}

/* OpenSSL's reason for the last failure (static), or fallback. */
static const char *tls_reason(const char *fallback)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	return r ? r : fallback;
}

/* The SSL call failed with SSL_get_error() code e (not WANT_READ). */
static int tls_conn_fail(struct tls_conn *t, int e)
{
	t->why = e == SSL_ERROR_SSL ? tls_reason("protocol error")
				    : tls_reason("out of memory or internal error");
	ERR_clear_error();
	tls_conn_enter(t, TLS_CONN_FAILED);
	return -EPROTO;
}

/* Name the host for SNI and verification: a name goes out as SNI and must
 * match a DNS name of the certificate (RFC 6125); an IP literal is never
 * sent as SNI (RFC 6066 3) and must match an IP address entry. */
static int tls_conn_host(struct tls_conn *t, const char *host)
{
	struct sockaddr_storage ss;

	if (netaddr_from_text(host, 0, &ss, NULL) == 0)
		return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host) == 1 ? 0 : -1;
	if (SSL_set_tlsext_host_name(t->ssl, host) != 1 || SSL_set1_host(t->ssl, host) != 1)
		return -1;
	return 0;
}

struct tls_conn *tls_conn_new(struct tls_ctx *ctx, const char *host)
{
	struct tls_conn *t = calloc(1, sizeof(*t));
	SSL_CTX *s;
	BIO *bio;
	int r;

	if (!t)
		goto fail;
	buf_init(&t->out, 0);
	t->role = ctx->role;
	t->why = "";
	s = tls_ctx_get(ctx);
	t->ssl = SSL_new(s); /* takes its own reference */
	SSL_CTX_free(s);
	bio = t->ssl ? BIO_new(tls_bio_method) : NULL;
	if (!bio)
		goto fail;
	BIO_set_data(bio, t);
	SSL_set_bio(t->ssl, bio, bio); /* one reference, now the SSL's */
	if (ctx->role == TLS_SERVER) {
		SSL_set_accept_state(t->ssl);
		return t;
	}
	SSL_set_connect_state(t->ssl);
	if (host && host[0] && tls_conn_host(t, host))
		goto fail;
	/* Write the ClientHello now; it waits in the output. */
	ERR_clear_error();
	r = SSL_do_handshake(t->ssl);
	if (r != 1 && SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ)
		goto fail;
	return t;
fail:
	ERR_clear_error();
	(void)tls_conn_free(t);
	errno = ENOMEM;
	return NULL;
}

struct tls_conn *tls_conn_free(struct tls_conn *t)
{
	if (!t)
		return NULL;
	SSL_free(t->ssl);
	buf_free(&t->out);
	free(t);
	return NULL;
}

/* The handshake is done: record what it gave. */
static void tls_conn_agreed(struct tls_conn *t)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
	long vr;

	t->info.version = SSL_get_version(t->ssl);
	t->info.cipher = c ? SSL_CIPHER_get_name(c) : "NONE";
	t->info.bits = c ? SSL_CIPHER_get_bits(c, NULL) : 0;
	t->info.verified = 0;
	t->info.verify_error = "";
	if (t->role != TLS_CLIENT)
		return;
	if (!SSL_get0_peer_certificate(t->ssl)) {
		t->info.verify_error = "no peer certificate";
		return;
	}
	vr = SSL_get_verify_result(t->ssl);
	if (vr == X509_V_OK)
		t->info.verified = 1;
	else
		t->info.verify_error = X509_verify_cert_error_string(vr);
}

static int tls_conn_handshake(struct tls_conn *t, const struct tls_conn_sink *sink, void *arg)
{
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(t->ssl);
	if (r != 1) {
		e = SSL_get_error(t->ssl, r);
		return e == SSL_ERROR_WANT_READ ? 0 : tls_conn_fail(t, e);
	}
	tls_conn_agreed(t);
	tls_conn_enter(t, TLS_CONN_UP);
	if (sink && sink->up)
		sink->up(arg);
	return 0;
}

/* Decrypt until the window is empty (WANT_READ), the sink says stop, the
 * peer closes, or a bad record. */
static int tls_conn_read(struct tls_conn *t, const struct tls_conn_sink *sink, void *arg)
{
	char plain[TLS_PLAIN_CHUNK];
	size_t got;
	int e;

	for (;;) {
		ERR_clear_error();
		if (SSL_read_ex(t->ssl, plain, sizeof(plain), &got) == 1) {
			if (sink && sink->plain && sink->plain(arg, plain, got))
				return 0;
			continue;
		}
		e = SSL_get_error(t->ssl, 0);
		if (e == SSL_ERROR_WANT_READ)
			return 0;
		if (e == SSL_ERROR_ZERO_RETURN) {
			tls_conn_enter(t, TLS_CONN_CLOSED);
			return TLS_CONN_EOF;
		}
		return tls_conn_fail(t, e);
	}
}

int tls_conn_input(struct tls_conn *t, const char *p, size_t n,
		   const struct tls_conn_sink *sink, void *arg)
{
	int rc = 0;

	if (t->state == TLS_CONN_FAILED)
		return -EPROTO;
	if (t->state == TLS_CONN_CLOSED)
		return TLS_CONN_EOF;
	t->in = p;
	t->in_len = n;
	if (t->state == TLS_CONN_HANDSHAKE)
		rc = tls_conn_handshake(t, sink, arg);
	if (rc == 0 && t->state == TLS_CONN_UP)
		rc = tls_conn_read(t, sink, arg);
	/* Whatever is left (after a stop, close_notify or failure) is dropped:
	 * the window is the caller's memory. */
	t->in = NULL;
	t->in_len = 0;
	return rc;
}

int tls_conn_write(struct tls_conn *t, const char *p, size_t n)
{
	size_t w;

	if (t->state == TLS_CONN_HANDSHAKE)
		return -EAGAIN;
	if (t->state != TLS_CONN_UP || t->shut)
		return -EPIPE;
	while (n) {
		ERR_clear_error();
		/* Without SSL_MODE_ENABLE_PARTIAL_WRITE all of it goes, in
		 * records of at most 16 KiB. */
		if (SSL_write_ex(t->ssl, p, n, &w) != 1) {
			int e = SSL_get_error(t->ssl, 0);

			(void)tls_conn_fail(t, e);
			return e == SSL_ERROR_SSL ? -EPROTO : -ENOMEM;
		}
		p += w;
		n -= w;
	}
	return 0;
}

int tls_conn_shutdown(struct tls_conn *t)
{
	if (t->state != TLS_CONN_UP || t->shut)
		return 0;
	t->shut = 1;
	ERR_clear_error();
	/* Writes close_notify (returns 0: the peer's is not awaited; SMTP
	 * closes after QUIT anyway, RFC 8446 6.1 allows it). */
	(void)SSL_shutdown(t->ssl);
	ERR_clear_error();
	return 0;
}

size_t tls_conn_pending(const struct tls_conn *t)
{
	return t->out.len;
}

int tls_conn_take(struct tls_conn *t, struct buf *dst)
{
	if (t->out.len == 0)
		return 0;
	if (dst->len == 0) {
		struct buf tmp = *dst;

		*dst = t->out;
		t->out = tmp;
		t->out.len = 0;
		return 0;
	}
	if (buf_append(dst, t->out.data, t->out.len))
		return -ENOMEM;
	t->out.len = 0;
	return 0;
}

enum tls_conn_state tls_conn_state(const struct tls_conn *t)
{
	return t->state;
}

const struct tls_info *tls_conn_info(const struct tls_conn *t)
{
	return t->info.version ? &t->info : NULL;
}

const char *tls_conn_error(const struct tls_conn *t)
{
	return t->why;
}
