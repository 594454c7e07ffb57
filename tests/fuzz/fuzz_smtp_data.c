/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the DATA states of proto/smtp_server.c (the text,
 * dot-stuffing and end-of-data detection). The first input byte picks the
 * limits, bare-LF mode and a chunk size; the rest is a message body sent
 * after EHLO/MAIL/RCPT/DATA and followed by CRLF.CRLF and QUIT (so its
 * last line always ends). Run whole and
 * in chunks (same replies and bodies). Every stored body is safe to send on;
 * a clean body (CRLF lines within line_max, no NUL, no lone "." line) within
 * size_max is stored exactly as sent after the Received: header; one with a
 * bare CR or LF is never stored when bare LF is refused (SMTP smuggling).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "proto/smtp_server.h"
#include "fz_session.h"

#define FZ_OUT_MAX (1u << 20)
#define FZ_TRACE_MAX (1u << 22)
#define FZ_HEAD "EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<r@d.test>\r\nDATA\r\n"
#define FZ_TAIL "\r\n.\r\nQUIT\r\n"

struct fz_trace {
	struct buf out;  /* replies */
	struct buf body; /* the first committed body */
	unsigned commits;
	int ev;
};

static void fz_new_id(void *arg, uint64_t *msgid, char *qid)
{
	(void)arg;
	*msgid = 1;
	snprintf(qid, SMTP_QID_MAX, "%014X", 1u);
}

static enum smtp_rcpt_verdict fz_rcpt_ok(void *arg, const char *d, size_t len, int relay)
{
	(void)arg, (void)d, (void)len, (void)relay;
	return SMTP_RCPT_OK;
}

static time_t fz_clock(void *arg)
{
	(void)arg;
	return 1795480721;
}

static void fz_check_body(const char *b, size_t n)
{
	size_t i;

	if (n < 2 || b[n - 2] != '\r' || b[n - 1] != '\n' || memmem(b, n, "\r\n.\r\n", 5))
		__builtin_trap();
	for (i = 0; i < n; i++)
		if (b[i] == '\0' || (b[i] == '\n' && (i == 0 || b[i - 1] != '\r')) ||
				(b[i] == '\r' && (i + 1 >= n || b[i + 1] != '\n')))
			__builtin_trap();
}

static int fz_commit(void *arg, const struct smtp_tx *tx)
{
	struct fz_trace *t = arg;
	size_t len;
	const char *p = smtp_tx_body(tx, &len);

	fz_check_body(p, len);
	if (t->commits++ == 0)
		(void)buf_append(&t->body, p, len);
	return 0;
}

static void fz_run(const struct smtp_server_conf *conf, const char *in, size_t n,
		size_t chunk, struct fz_trace *t)
{
	struct smtp_session *s = smtp_server_new(conf, "192.0.2.1");

	buf_init(&t->out, FZ_OUT_MAX);
	buf_init(&t->body, FZ_TRACE_MAX);
	t->commits = 0;
	if (s == NULL)
		abort();
	t->ev = (int)fz_session_run(s, in, n, chunk, &t->out, fz_commit, t);
	smtp_server_free(s);
}

/* 0: not clean; else 1 + the unstuffed size (CRLF line ends). */
static size_t fz_clean(const char *b, size_t n, size_t line_max)
{
	size_t i = 0, size = 0;

	while (i < n) {
		const char *lf = memchr(b + i, '\n', n - i);
		size_t l;

		if (!lf || lf == b + i || lf[-1] != '\r')
			return 0;
		l = (size_t)(lf - (b + i)) - 1;
		if (memchr(b + i, '\0', l) || memchr(b + i, '\r', l) || l + 2 > line_max ||
				(l == 1 && b[i] == '.'))
			return 0;
		size += b[i] == '.' ? l + 1 : l + 2;
		i += l + 2;
	}
	return 1 + size;
}

static int fz_bare(const char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((b[i] == '\n' && (i == 0 || b[i - 1] != '\r')) ||
				(b[i] == '\r' && i + 1 < n && b[i + 1] != '\n'))
			return 1;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t chunks[] = { 1, 2, 3, 5, 16, 100, 511, 4096 };
	static struct buf hdr; /* the Received: header of an empty body */
	struct smtp_server_conf conf;
	struct fz_trace a, b;
	size_t bn = size ? size - 1 : 0, n, clean;
	const char *body = (const char *)data + 1;
	char *in;
	unsigned sel;

	if (size < 1 || bn > FZ_TRACE_MAX / 2)
		return 0;
	log_set_level(LOGL_ERR);
	sel = data[0];
	memset(&conf, 0, sizeof(conf));
	conf.hostname = "mx.test";
	conf.limits.command_max = 512;
	conf.limits.line_max = sel & 0x40 ? 1000 : 30;
	conf.limits.max_recipients = 3;
	conf.limits.size_max = sel & 0x20 ? 1u << 20 : 300;
	conf.limits.max_errors = 20;
	conf.limits.bare_lf_normalize = (sel & 0x80) != 0;
	conf.rcpt_check = fz_rcpt_ok;
	conf.new_id = fz_new_id;
	conf.clock = fz_clock;

	n = sizeof(FZ_HEAD) - 1 + bn + sizeof(FZ_TAIL) - 1;
	in = malloc(n);
	if (!in)
		abort();
	memcpy(in, FZ_HEAD, sizeof(FZ_HEAD) - 1);
	memcpy(in + sizeof(FZ_HEAD) - 1, body, bn);
	memcpy(in + n - (sizeof(FZ_TAIL) - 1), FZ_TAIL, sizeof(FZ_TAIL) - 1);
	if (hdr.data == NULL) {
		/* Empty body: what precedes every stored body (Received:). */
		static const char e[] = FZ_HEAD FZ_TAIL;
		struct fz_trace h;

		fz_run(&conf, e, sizeof(e) - 1, 0, &h);
		if (h.commits != 1)
			__builtin_trap();
		hdr = h.body;
		hdr.len -= 2; /* the empty line the tail's CRLF makes */
		buf_free(&h.out);
	}
	fz_run(&conf, in, n, 0, &a);
	fz_run(&conf, in, n, chunks[sel & 7], &b);
	if (a.ev != b.ev || a.commits != b.commits || a.out.len != b.out.len ||
			a.body.len != b.body.len ||
			(a.out.len && memcmp(a.out.data, b.out.data, a.out.len)) ||
			(a.body.len && memcmp(a.body.data, b.body.data, a.body.len)))
		__builtin_trap();
	/* The body as sent: what came, ended by the tail's CRLF. */
	body = in + sizeof(FZ_HEAD) - 1;
	bn += 2;
	clean = fz_clean(body, bn, conf.limits.line_max);
	if (clean && clean - 1 <= conf.limits.size_max &&
			(a.commits != 1 || a.body.len != hdr.len + bn ||
			 memcmp(a.body.data, hdr.data, hdr.len) ||
			 memcmp(a.body.data + hdr.len, body, bn)))
		__builtin_trap();
	if (clean && clean - 1 > conf.limits.size_max && a.commits != 0)
		__builtin_trap();
	if (!conf.limits.bare_lf_normalize && fz_bare(body, bn) && a.commits != 0 &&
			!memmem(in, n - (sizeof(FZ_TAIL) - 3), "\r\n.\r\n", 5))
		__builtin_trap();
	free(in);
	buf_free(&a.out);
	buf_free(&a.body);
	buf_free(&b.out);
	buf_free(&b.body);
	return 0;
}
