/* SPDX-License-Identifier: MIT */
/*
 * tls_certs: the throw-away certificates the TLS unit tests use, made by
 * `openssl req` in a fresh directory under /tmp: a self-signed one, and a
 * test CA with a server certificate it signed, both for TLS_CERTS_HOST.
 * Shared by test_tls.c and test_loop_adopt.c; no Criterion in here.
 */
#ifndef ETRND_TESTS_TLS_CERTS_H
#define ETRND_TESTS_TLS_CERTS_H

#include <stddef.h>

#define TLS_CERTS_HOST "mx.test.example"

struct tls_certs {
	char dir[64];
	char self_cert[128], self_key[128];     /* self-signed, CN = TLS_CERTS_HOST */
	char ca_cert[128];                      /* a test CA ... */
	char ca_srv_cert[128], ca_srv_key[128]; /* ... and a cert it signed for the host */
};

/* Make the directory and the certificates. Returns 0, or -1 with err set
 * (the command that failed); the directory is then removed. */
int tls_certs_make(struct tls_certs *c, char *err, size_t errlen);
/* Remove the directory (nothing when tls_certs_make() never ran). */
void tls_certs_drop(struct tls_certs *c);

#endif
