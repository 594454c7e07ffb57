/* SPDX-License-Identifier: MIT */
/*
 * tls_certs: test certificates by `openssl req` (see tls_certs.h). P-256 keys,
 * valid two days, subjectAltName set: what verification needs.
 */
#include "tls_certs.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TLS_CERTS_CMD_MAX 2048

static int tls_certs_sh(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int tls_certs_sh(char *err, size_t errlen, const char *fmt, ...)
{
	char cmd[TLS_CERTS_CMD_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(cmd)) {
		snprintf(err, errlen, "command longer than %d bytes", TLS_CERTS_CMD_MAX);
		return -1;
	}
	if (system(cmd) != 0) {
		snprintf(err, errlen, "failed: %s", cmd);
		return -1;
	}
	return 0;
}

static void tls_certs_path(char *out, size_t outlen, const char *dir, const char *name)
{
	(void)snprintf(out, outlen, "%s/%s", dir, name);
}

int tls_certs_make(struct tls_certs *c, char *err, size_t errlen)
{
	const char *d;

	memset(c, 0, sizeof(*c));
	snprintf(c->dir, sizeof(c->dir), "/tmp/etrnd-test-tls-XXXXXX");
	if (!mkdtemp(c->dir)) {
		snprintf(err, errlen, "mkdtemp %s failed", c->dir);
		c->dir[0] = '\0';
		return -1;
	}
	d = c->dir;
	tls_certs_path(c->self_cert, sizeof(c->self_cert), d, "self.pem");
	tls_certs_path(c->self_key, sizeof(c->self_key), d, "self.key");
	tls_certs_path(c->ca_cert, sizeof(c->ca_cert), d, "ca.pem");
	tls_certs_path(c->ca_srv_cert, sizeof(c->ca_srv_cert), d, "srv.pem");
	tls_certs_path(c->ca_srv_key, sizeof(c->ca_srv_key), d, "srv.key");
	if (tls_certs_sh(err, errlen, "cd %s && openssl req -x509 -newkey ec -pkeyopt "
			 "ec_paramgen_curve:P-256 -nodes -keyout self.key -out self.pem -days 2 "
			 "-subj /CN=" TLS_CERTS_HOST " -addext subjectAltName=DNS:"
			 TLS_CERTS_HOST " 2>/dev/null", d) ||
	    tls_certs_sh(err, errlen, "cd %s && openssl req -x509 -newkey ec -pkeyopt "
			 "ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 "
			 "-subj '/CN=etrnd test CA' -addext basicConstraints=critical,CA:true "
			 "2>/dev/null", d) ||
	    tls_certs_sh(err, errlen, "cd %s && openssl req -new -newkey ec -pkeyopt "
			 "ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr -subj /CN="
			 TLS_CERTS_HOST " 2>/dev/null && printf 'subjectAltName=DNS:"
			 TLS_CERTS_HOST "\\n' > srv.ext && openssl x509 -req -in srv.csr -CA "
			 "ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile "
			 "srv.ext 2>/dev/null", d)) {
		tls_certs_drop(c);
		return -1;
	}
	return 0;
}

void tls_certs_drop(struct tls_certs *c)
{
	char err[64];

	if (!c->dir[0])
		return;
	(void)tls_certs_sh(err, sizeof(err), "rm -rf %s", c->dir);
	c->dir[0] = '\0';
}
