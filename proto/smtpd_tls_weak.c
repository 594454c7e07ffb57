/* SPDX-License-Identifier: MIT */
/*
 * TEMPORARY, until w-tls (core/loop.c's TLS) is merged into this branch:
 * weak stand-ins for the three core/loop.h TLS calls smtpd.c uses, so the
 * branch links. Any strong definition (the real ones) wins. Delete this
 * file when merging w-tls.
 */
#include <errno.h>

#include "core/loop.h"

__attribute__((weak)) int conn_starttls(struct conn *c, struct tls_ctx *ctx, const char *host)
{
	(void)c;
	(void)ctx;
	(void)host;
	return -ENOTSUP;
}

__attribute__((weak)) const struct tls_info *conn_tls(const struct conn *c)
{
	(void)c;
	return NULL;
}

__attribute__((weak)) unsigned conn_listen_flags(const struct conn *c)
{
	(void)c;
	return 0;
}
