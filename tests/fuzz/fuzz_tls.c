/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for core/tls.c's per-connection layer (our window BIO and
 * state machine over OpenSSL): the input, cut into chunks of a size its
 * first byte chooses, is what a peer sent, to a server and to a client
 * connection. Whatever arrives, tls_conn_input() returns 0, TLS_CONN_EOF or
 * -EPROTO with a reason, a failed connection stays failed, and nothing
 * crashes or leaks.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "core/log.h"
#include "core/tls.h"

static struct tls_ctx *fz_srv, *fz_cli;

/* A throw-away P-256 key and self-signed certificate, as PEM files. */
static int fz_cert(const char *cert, const char *key)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name;
	FILE *fc = fopen(cert, "w"), *fk = fopen(key, "w");
	int ok = k && x && fc && fk;

	if (ok) {
		X509_set_version(x, 2);
		ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
		X509_gmtime_adj(X509_getm_notBefore(x), 0);
		X509_gmtime_adj(X509_getm_notAfter(x), 86400);
		X509_set_pubkey(x, k);
		name = X509_get_subject_name(x);
		X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
					   (const unsigned char *)"fuzz.example", -1, -1, 0);
		X509_set_issuer_name(x, name);
		ok = X509_sign(x, k, EVP_sha256()) > 0 && PEM_write_X509(fc, x) == 1 &&
		     PEM_write_PrivateKey(fk, k, NULL, NULL, 0, NULL, NULL) == 1;
	}
	if (fc)
		fclose(fc);
	if (fk)
		fclose(fk);
	X509_free(x);
	EVP_PKEY_free(k);
	return ok ? 0 : -1;
}

static void fz_init(void)
{
	char dir[] = "/tmp/fuzz-tls-XXXXXX", cert[64], key[64], err[512];
	struct tls_ctx_conf tc = { 0 };

	log_init("fuzz_tls", LOGL_ERR, 0);
	if (!mkdtemp(dir))
		abort();
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	if (fz_cert(cert, key))
		abort();
	tc.cert_file = cert;
	tc.key_file = key;
	fz_srv = tls_ctx_new(TLS_SERVER, &tc, err, sizeof(err));
	memset(&tc, 0, sizeof(tc));
	fz_cli = tls_ctx_new(TLS_CLIENT, &tc, err, sizeof(err));
	if (!fz_srv || !fz_cli)
		abort();
	unlink(cert);
	unlink(key);
	rmdir(dir);
}

static void fz_one(struct tls_ctx *ctx, const uint8_t *p, size_t n, size_t chunk)
{
	struct tls_conn *t = tls_conn_new(ctx, "fuzz.example");
	struct buf out;
	int failed = 0;

	if (!t)
		abort();
	buf_init(&out, 0);
	for (size_t off = 0; off < n; off += chunk) {
		size_t k = n - off < chunk ? n - off : chunk;
		int rc = tls_conn_input(t, (const char *)p + off, k, NULL, NULL);

		if (rc != 0 && rc != TLS_CONN_EOF && rc != -EPROTO)
			abort();
		if (failed && rc != -EPROTO)
			abort(); /* failed stays failed */
		if (rc == -EPROTO) {
			failed = 1;
			if (!tls_conn_error(t)[0] || tls_conn_state(t) != TLS_CONN_FAILED)
				abort();
		}
		if (tls_conn_take(t, &out))
			abort();
		out.len = 0;
	}
	if (tls_conn_write(t, "x", 1) == 0 && tls_conn_state(t) != TLS_CONN_UP)
		abort();
	(void)tls_conn_shutdown(t);
	buf_free(&out);
	tls_conn_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t chunk;

	if (!fz_srv)
		fz_init();
	if (size == 0)
		return 0;
	chunk = (size_t)data[0] % 97 + 1;
	fz_one(fz_srv, data + 1, size - 1, chunk);
	fz_one(fz_cli, data + 1, size - 1, chunk);
	return 0;
}
