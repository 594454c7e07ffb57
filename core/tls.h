/* SPDX-License-Identifier: MIT */
/*
 * tls: OpenSSL 3 for the engine's connections, on memory BIOs. The loop
 * (core/loop.c) does every socket read and write through io_uring; this
 * module only turns ciphertext into plaintext and back. A context holds the
 * certificate, key, trust store and policy (TLS 1.2 and 1.3 only) and is
 * shared read-only by every engine thread; a connection's TLS state is made
 * by conn_starttls() (core/loop.h) and freed with the connection.
 */
#ifndef ETRND_CORE_TLS_H
#define ETRND_CORE_TLS_H

#include <stddef.h>

#include "core/buf.h"

enum tls_role { TLS_SERVER, TLS_CLIENT };

/* The TLS 1.2 cipher list when tls_ciphers is not set: Mozilla's
 * "intermediate" profile without DHE, so forward secrecy by ECDHE and AEAD
 * ciphers only (AES-GCM, ChaCha20-Poly1305). TLS 1.3 suites are OpenSSL's
 * defaults (all AEAD). */
#define TLS_CIPHERS_DEFAULT \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct tls_ctx_conf {
	const char *cert_file;   /* server: PEM chain (leaf first); client: NULL */
	const char *key_file;    /* server: PEM private key; client: NULL */
	const char *ca_file;     /* client: trust store for verification;
	                            NULL or "" = the system store */
	const char *ciphers;     /* TLS 1.2 cipher list (OpenSSL syntax) */
};

struct tls_ctx;

/* Make a context for role. Returns NULL with err set ("tls_cert_file
 * /path: ...: reason") when a file cannot be read or the key does not
 * match the certificate. Create once at start, before the engine threads;
 * free after they have stopped. */
struct tls_ctx *tls_ctx_new(enum tls_role role, const struct tls_ctx_conf *conf,
		char *err, size_t errlen);
struct tls_ctx *tls_ctx_free(struct tls_ctx *ctx); /* NULL fine; returns NULL */

/* Reload (SIGHUP): connections made on ctx from now on use fresh's
 * certificate, key, trust store and ciphers; connections already made keep
 * the ones they started with until they end (each holds a reference).
 * fresh (same role) is consumed: freed, also on error. Any thread, while
 * engine threads make connections on ctx. Returns 0 or -EINVAL (NULL or a
 * different role; fresh is freed). */
int tls_ctx_swap(struct tls_ctx *ctx, struct tls_ctx *fresh);

/* What a finished handshake gave, for logs, the Received: header
 * (RFC 3848) and policy. Strings are static or live as long as the
 * connection. */
struct tls_info {
	const char *version;       /* "TLSv1.3" */
	const char *cipher;        /* "TLS_AES_256_GCM_SHA384" */
	int bits;                  /* secret bits of the cipher */
	/* Client side: 1 when the peer's chain verified against the trust
	 * store AND matched the host given to conn_starttls(); else 0 with
	 * verify_error saying why ("hostname mismatch", ...). Server: 0. */
	int verified;
	const char *verify_error;  /* "" when verified */
};

/*
 * One connection's TLS, on memory (no socket): usable with the loop
 * (conn_starttls() in core/loop.h does all of this) or without it (bench).
 * Ciphertext the peer sent goes in with tls_conn_input(), which drives the
 * handshake and hands out plaintext; plaintext to send goes in with
 * tls_conn_write(); the ciphertext to put on the wire (handshake flights,
 * records, alerts, close_notify) collects inside and is taken out with
 * tls_conn_take(). Nothing here blocks or touches a descriptor. A tls_conn
 * is used by one thread at a time.
 */
enum tls_conn_state {
	TLS_CONN_HANDSHAKE,   /* keys not agreed yet */
	TLS_CONN_UP,          /* plaintext flows both ways */
	TLS_CONN_CLOSED,      /* close_notify received from the peer */
	TLS_CONN_FAILED,      /* bad record, alert, failed handshake: drop it */
};

/* tls_conn_input() result: the peer sent close_notify (its EOF). */
#define TLS_CONN_EOF 1

struct tls_conn;

/* What tls_conn_input() found, handed back while it runs. up is called
 * once, when the handshake completes, before any plaintext; plain gets each
 * piece of decrypted data (p valid only during the call) and returns 0 to go
 * on, nonzero to stop decrypting (the rest of the input is dropped). */
struct tls_conn_sink {
	void (*up)(void *arg);
	int (*plain)(void *arg, const char *p, size_t n);
};

/* A connection on ctx, its role ctx's. host (client only; NULL = neither)
 * goes out as SNI (unless it is an IP literal) and is the name (or address)
 * the certificate must match for tls_info.verified. A client's ClientHello
 * is ready to take at once. Returns NULL (errno ENOMEM) when out of memory.
 * Free with tls_conn_free(). */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx, const char *host);
struct tls_conn *tls_conn_free(struct tls_conn *t); /* NULL fine; returns NULL */

/* Feed n bytes of ciphertext received from the peer; all of them are
 * consumed (OpenSSL keeps a partial record). Returns 0, TLS_CONN_EOF, or
 * -EPROTO once the connection has failed (tls_conn_error() says why; an
 * alert for the peer may be waiting in the output). */
int tls_conn_input(struct tls_conn *t, const char *p, size_t n,
		const struct tls_conn_sink *sink, void *arg);

/* Encrypt n bytes of plaintext into the output. Returns 0, -EAGAIN before
 * the handshake is done, -EPIPE once closed or failed, -ENOMEM. */
int tls_conn_write(struct tls_conn *t, const char *p, size_t n);

/* Queue close_notify (once, only while up). Returns 0. */
int tls_conn_shutdown(struct tls_conn *t);

/* Ciphertext waiting to be sent. */
size_t tls_conn_pending(const struct tls_conn *t);

/* Move the waiting ciphertext to the end of dst (an empty dst trades
 * memory with the internal buffer instead of copying). Returns 0 or
 * -ENOMEM (nothing moved). */
int tls_conn_take(struct tls_conn *t, struct buf *dst);

enum tls_conn_state tls_conn_state(const struct tls_conn *t);
const char *tls_conn_state_name(enum tls_conn_state s);

/* The handshake's result once it has completed (valid while t lives, also
 * after a later failure or close); NULL before. */
const struct tls_info *tls_conn_info(const struct tls_conn *t);

/* Why the connection failed: OpenSSL's reason ("wrong version number",
 * "unexpected eof while reading", ...) or "" when it has not; a static
 * string. */
const char *tls_conn_error(const struct tls_conn *t);

#endif
