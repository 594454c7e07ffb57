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

enum tls_role { TLS_SERVER, TLS_CLIENT };

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

#endif
