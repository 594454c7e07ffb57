/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for proto/etrn_client.c (and the smtp_reply reader under
 * it). The first input byte picks the session (ETRN with three nodes or
 * ATRN, the TLS policy, credentials, whether a certificate is rejected),
 * the limits, a chunk size and how the session ends; the rest is what the
 * upstream says. The session is run twice, whole and in chunks, and must
 * write the same commands and give the same results. Credentials never go
 * out before TLS is up unless the conf allows it; a REVERSE leaves exactly
 * the bytes after the 250 line unconsumed; every text is printable.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "proto/etrn_client.h"

#define FZ_OUT_MAX (1u << 20)
#define FZ_TRACE_MAX (1u << 20)
/* "AUTH PLAIN " + base64 of "\0cust\0s3cret", and LOGIN's user name. */
#define FZ_SECRET "AGN1c3QAczNjcmV0"
#define FZ_SECRET_USER "Y3VzdA=="

static const char *const fz_nodes[] = { "example.com", "@example.net", "#q1" };

struct fz_trace {
	struct buf out;   /* commands written */
	struct buf res;   /* events and results */
	int ev;
};

static void fz_reply(struct fz_trace *t, const char *what,
		const struct etrn_client_reply *r)
{
	size_t k, len = strlen(r->text);

	if (r->code != 0 && (r->code < 200 || r->code > 599))
		__builtin_trap();
	if (r->code != 0 && (r->enh[0] != (char)('0' + r->code / 100) || r->enh[1] != '.'))
		__builtin_trap();
	if (len >= ETRN_CLIENT_TEXT_MAX)
		__builtin_trap();
	for (k = 0; k < len; k++)
		if (r->text[k] < 0x20 || r->text[k] > 0x7e)
			__builtin_trap();
	(void)buf_printf(&t->res, "%s %d %s %d %s\n", what, r->code, r->enh, r->local, r->text);
}

static void fz_results(struct etrn_client *c, struct fz_trace *t)
{
	unsigned i, n = etrn_client_nresults(c);
	const struct etrn_client_reply *why = etrn_client_close_reason(c);

	for (i = 0; i < n; i++) {
		const struct etrn_client_reply *r = etrn_client_result(c, i);

		if (r == NULL)
			__builtin_trap();
		fz_reply(t, "r", r);
	}
	if (etrn_client_result(c, n) != NULL)
		__builtin_trap();
	if (why != NULL)
		fz_reply(t, "why", why);
	(void)buf_printf(&t->res, "ok=%d tls=%d auth=%d\n", etrn_client_ok(c),
			etrn_client_tls_on(c), etrn_client_authed(c));
}

/* Credentials went out: only inside TLS unless the conf allows it. */
static void fz_check_secret(const struct etrn_client_conf *cf, const struct buf *out,
		size_t clear_end)
{
	size_t n = clear_end < out->len ? clear_end : out->len;

	if (cf->auth_cleartext || n == 0)
		return;
	if (memmem(out->data, n, FZ_SECRET, strlen(FZ_SECRET)) != NULL ||
			memmem(out->data, n, FZ_SECRET_USER, strlen(FZ_SECRET_USER)) != NULL)
		__builtin_trap();
}

static void fz_run(const struct etrn_client_conf *cf, const char *in, size_t n,
		size_t chunk, unsigned sel, struct fz_trace *t)
{
	enum etrn_client_event ev = ETRN_CLIENT_EV_NEED_INPUT;
	size_t i = 0, clear_end = (size_t)-1;
	struct etrn_client *c;
	int over = 0;

	buf_init(&t->out, FZ_OUT_MAX);
	buf_init(&t->res, FZ_TRACE_MAX);
	c = etrn_client_new(cf);
	if (c == NULL)
		abort();
	while (i < n && !over) {
		size_t k = chunk && chunk < n - i ? chunk : n - i, off = 0;

		while (off < k && !over) {
			size_t got = etrn_client_feed(c, in + i + off, k - off, &t->out, &ev);

			if (got > k - off)
				__builtin_trap();
			off += got;
			if (ev == ETRN_CLIENT_EV_NEED_INPUT && off != k)
				__builtin_trap();
			if (ev == ETRN_CLIENT_EV_STARTTLS) {
				if (cf->tls == SMTP_CLIENT_TLS_NONE || etrn_client_tls_on(c))
					__builtin_trap();
				clear_end = t->out.len;
				if ((sel & 0x40 ? etrn_client_tls_reject(c, &t->out, "bad cert") :
						etrn_client_tls_up(c, &t->out)) != 0)
					__builtin_trap();
				(void)buf_printf(&t->res, "starttls\n");
			} else if (ev == ETRN_CLIENT_EV_REVERSE) {
				/* The 250 line ends exactly where feeding stopped. */
				if (cf->method != ETRN_CLIENT_ATRN || off == 0 ||
						in[i + off - 1] != '\n' ||
						etrn_client_result(c, 0)->code != 250)
					__builtin_trap();
				(void)buf_printf(&t->res, "reverse at %zu\n", i + off);
				over = 1;
			} else if (ev == ETRN_CLIENT_EV_CLOSE) {
				over = 1;
			}
		}
		i += k;
	}
	if (!over) {
		if (sel & 0x20)
			ev = etrn_client_abort(c, "timed out");
		else if (etrn_client_feed(c, in, 0, &t->out, &ev) != 0)
			__builtin_trap();
		if (ev != ETRN_CLIENT_EV_CLOSE)
			__builtin_trap();
	}
	if (etrn_client_timeout_ms(c) != 0)
		__builtin_trap();
	fz_check_secret(cf, &t->out, clear_end);
	if (cf->tls == SMTP_CLIENT_TLS_MUST && etrn_client_ok(c) && !etrn_client_tls_on(c))
		__builtin_trap();
	fz_results(c, t);
	t->ev = (int)ev;
	etrn_client_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t chunks[] = { 1, 2, 3, 5, 7, 16, 100, 4096 };
	struct etrn_client_conf cf;
	struct fz_trace a, b;
	unsigned sel, sel2;

	if (size < 2)
		return 0;
	log_set_level(LOGL_ERR);
	/* sel: chunk (bits 0-2), small limits (0x08), credentials (0x10),
	 * end by timeout rather than EOF (0x20), certificate rejected (0x40),
	 * ATRN (0x80); sel2: TLS policy (% 3), bare ATRN (0x04). */
	sel = data[0];
	sel2 = data[1];
	memset(&cf, 0, sizeof(cf));
	cf.helo_name = "cust.test";
	cf.method = sel & 0x80 ? ETRN_CLIENT_ATRN : ETRN_CLIENT_ETRN;
	cf.tls = (enum smtp_client_tls)(sel2 % 3);
	if (sel & 0x10) {
		cf.user = "cust";
		cf.pass = "s3cret";
		cf.auth_cleartext = cf.tls == SMTP_CLIENT_TLS_NONE;
	}
	/* ATRN "example.com,@example.net": the upstream's to judge. */
	cf.nreq = cf.method == ETRN_CLIENT_ETRN ? 3 : (sel2 & 4 ? 0 : 2);
	cf.req = fz_nodes;
	cf.reply_line_max = sel & 0x08 ? 40 : 512;
	cf.max_reply_lines = sel & 0x08 ? 5 : 100;

	fz_run(&cf, (const char *)data + 2, size - 2, 0, sel, &a);
	fz_run(&cf, (const char *)data + 2, size - 2, chunks[sel & 7], sel, &b);
	if (a.ev != b.ev || a.out.len != b.out.len || a.res.len != b.res.len ||
			(a.out.len && memcmp(a.out.data, b.out.data, a.out.len) != 0) ||
			(a.res.len && memcmp(a.res.data, b.res.data, a.res.len) != 0))
		__builtin_trap();
	if (a.out.len > 0 && (a.out.len < 2 || a.out.data[a.out.len - 1] != '\n'))
		__builtin_trap();
	buf_free(&a.out);
	buf_free(&a.res);
	buf_free(&b.out);
	buf_free(&b.res);
	return 0;
}
