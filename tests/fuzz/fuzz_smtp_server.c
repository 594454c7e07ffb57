/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for proto/smtp_server.c. The first input byte picks the
 * limits, bare-LF mode and a chunk size; the rest is peer input. The session
 * is run twice, whole and in chunks, and must give the same replies and
 * transactions; every committed body must be safe to send on as is (CRLF
 * only, no NUL, no CRLF.CRLF inside). With bit 0x20 set STARTTLS and AUTH
 * are offered: the first FZ_TLS_MARK in the input is where the handshake
 * ends (what a STARTTLS left of the clear part is dropped), and AUTH checks
 * are answered by the password's first octet (fz_session.h). With 0x20 the
 * next byte picks the listener: bit 0 ODMR, bit 1 smtp_atrn, bit 2
 * trusted, bit 3 submission, bit 4 a client in mynetworks (relay right),
 * bit 5 ATRN's reversed session (without bits 0 and 4, which it excludes);
 * ATRN is then refused or taken by its list (fz_session.h). rcpt_check
 * must be told relay exactly when the session has the right (mynetworks
 * or an authenticated user), a submission session never commits a
 * message without an authenticated user, and a reversed one never has a
 * user (AUTH is 502 there).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "proto/smtp_server.h"
#include "fz_session.h"

#define FZ_OUT_MAX (1u << 20)
#define FZ_TLS_MARK "\n<TLS>\n"
static const struct tls_info fz_tls = { "TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, 0, "" };
#define FZ_TRACE_MAX (1u << 20)

static unsigned fz_ids;

static void fz_new_id(void *arg, uint64_t *msgid, char *qid)
{
	(void)arg;
	*msgid = ++fz_ids;
	snprintf(qid, SMTP_QID_MAX, "%014X", fz_ids);
}

#define FZ_L_ODMR 0x1u
#define FZ_L_TRUSTED 0x4u
#define FZ_L_SUBMISSION 0x8u
#define FZ_L_RELAY 0x10u
#define FZ_L_REVERSED 0x20u

/* The session being run and its listener bits, for the callbacks. */
static struct {
	const struct smtp_session *s;
	unsigned listener;
} fz_now;

static enum smtp_rcpt_verdict fz_rcpt_check(void *arg, const char *d, size_t len, int relay)
{
	int want = (fz_now.listener & FZ_L_RELAY) || smtp_server_user(fz_now.s) != NULL;

	(void)arg;
	if (len == 0)
		__builtin_trap(); /* the parser never hands out an empty domain */
	if (relay != want)
		__builtin_trap();
	switch ((unsigned char)d[0] % 4) {
	case 0: return relay ? SMTP_RCPT_OK : SMTP_RCPT_DENY;
	case 1: return SMTP_RCPT_TEMPFAIL;
	case 2: return SMTP_RCPT_OVER_QUOTA;
	default: return SMTP_RCPT_OK;
	}
}

static time_t fz_clock(void *arg)
{
	(void)arg;
	return 1795480721;
}

struct fz_trace {
	struct buf out;   /* replies */
	struct buf txs;   /* committed transactions */
	int ev;
};

static void fz_check_body(const char *b, size_t n)
{
	size_t i;

	if (n < 2 || b[n - 2] != '\r' || b[n - 1] != '\n')
		__builtin_trap();
	for (i = 0; i < n; i++) {
		if (b[i] == '\0')
			__builtin_trap();
		if (b[i] == '\n' && (i == 0 || b[i - 1] != '\r'))
			__builtin_trap();
		if (b[i] == '\r' && (i + 1 >= n || b[i + 1] != '\n'))
			__builtin_trap();
	}
	if (memmem(b, n, "\r\n.\r\n", 5) != NULL)
		__builtin_trap();
}

static void fz_record(struct fz_trace *t, const struct smtp_tx *tx)
{
	size_t len, i;
	const char *p;

	p = smtp_tx_sender(tx, &len);
	(void)buf_append(&t->txs, p, len);
	for (i = 0; i < smtp_tx_nrcpt(tx); i++) {
		p = smtp_tx_rcpt(tx, (unsigned)i, &len);
		if (smtp_tx_rcpt_domain_off(tx, (unsigned)i) >= len)
			__builtin_trap();
		(void)buf_append(&t->txs, "|", 1);
		(void)buf_append(&t->txs, p, len);
	}
	p = smtp_tx_body(tx, &len);
	fz_check_body(p, len);
	(void)buf_append(&t->txs, p, len);
	(void)buf_printf(&t->txs, "#%u#%s\n", smtp_tx_flags(tx), smtp_tx_qid(tx));
}

struct fz_commit {
	struct fz_trace *t;
	int err;
};

static int fz_commit(void *arg, const struct smtp_tx *tx)
{
	struct fz_commit *c = arg;

	if ((fz_now.listener & FZ_L_SUBMISSION) && smtp_server_user(fz_now.s) == NULL)
		__builtin_trap(); /* RFC 6409: no mail before AUTH */
	if ((fz_now.listener & FZ_L_REVERSED) && smtp_server_user(fz_now.s) != NULL)
		__builtin_trap(); /* the upstream never authenticates to us */
	fz_record(c->t, tx);
	return c->err;
}

static void fz_run(const struct smtp_server_conf *conf, unsigned listener, const char *in,
		size_t n, size_t chunk, int commit_err, struct fz_trace *t)
{
	struct smtp_session *s = smtp_server_new(conf, "192.0.2.1");
	struct fz_commit c = { t, commit_err };
	const char *mark = conf->starttls ? memmem(in, n, FZ_TLS_MARK, strlen(FZ_TLS_MARK)) : NULL;
	enum smtp_event ev;

	buf_init(&t->out, FZ_OUT_MAX);
	buf_init(&t->txs, FZ_TRACE_MAX);
	fz_ids = 0;
	if (s == NULL)
		abort();
	if (listener & FZ_L_ODMR)
		smtp_server_set_odmr(s);
	if (listener & FZ_L_TRUSTED)
		smtp_server_set_trusted(s);
	if (listener & FZ_L_SUBMISSION)
		smtp_server_set_submission(s);
	if (listener & FZ_L_RELAY)
		smtp_server_set_relay(s);
	if (listener & FZ_L_REVERSED)
		smtp_server_set_reversed(s);
	fz_now.s = s;
	fz_now.listener = listener;
	if (!mark) {
		t->ev = (int)fz_session_run(s, in, n, chunk, &t->out, fz_commit, &c);
		smtp_server_free(s);
		return;
	}
	smtp_server_greeting(s, &t->out);
	ev = fz_session_feed(s, in, (size_t)(mark - in), chunk, &t->out, fz_commit, &c);
	if (ev != SMTP_EV_CLOSE && ev != SMTP_EV_ATRN) {
		size_t off = (size_t)(mark - in) + strlen(FZ_TLS_MARK);

		smtp_server_tls_up(s, &fz_tls);
		ev = fz_session_feed(s, in + off, n - off, chunk, &t->out, fz_commit, &c);
		if (ev != SMTP_EV_CLOSE && ev != SMTP_EV_ATRN)
			smtp_server_feed(s, in, 0, &t->out, &ev);
	}
	t->ev = (int)ev;
	smtp_server_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t chunks[] = { 1, 2, 3, 7, 16, 100, 511, 4096 };
	static const int errs[] = { 0, 0, -28 /* ENOSPC */, -122 /* EDQUOT */ };
	struct smtp_server_conf conf;
	struct fz_trace a, b;
	unsigned sel, listener = 0;
	size_t skip = 1;

	if (size < 1)
		return 0;
	log_set_level(LOGL_ERR);
	sel = data[0];
	memset(&conf, 0, sizeof(conf));
	conf.hostname = "mx.test";
	conf.limits.command_max = sel & 0x40 ? 512 : 40;
	conf.limits.line_max = sel & 0x40 ? 1000 : 30;
	conf.limits.max_recipients = 3;
	conf.limits.size_max = 300;
	conf.limits.max_errors = 20;
	conf.limits.bare_lf_normalize = (sel & 0x80) != 0;
	conf.rcpt_check = fz_rcpt_check;
	conf.new_id = fz_new_id;
	conf.clock = fz_clock;
	conf.starttls = conf.auth = (sel & 0x20) != 0;
	if ((sel & 0x20) && size > 1) {
		listener = data[1];
		if (listener & (FZ_L_ODMR | FZ_L_RELAY))
			listener &= ~FZ_L_REVERSED;
		conf.atrn = (listener & 0x2u) != 0;
		skip = 2;
	}

	fz_run(&conf, listener, (const char *)data + skip, size - skip, 0, errs[(sel >> 3) & 3], &a);
	fz_run(&conf, listener, (const char *)data + skip, size - skip, chunks[sel & 7],
	       errs[(sel >> 3) & 3], &b);
	if (a.ev != b.ev || a.out.len != b.out.len || a.txs.len != b.txs.len ||
			(a.out.len && memcmp(a.out.data, b.out.data, a.out.len) != 0) ||
			(a.txs.len && memcmp(a.txs.data, b.txs.data, a.txs.len) != 0))
		__builtin_trap();
	if (a.out.len < 2 || a.out.data[a.out.len - 1] != '\n')
		__builtin_trap();
	buf_free(&a.out);
	buf_free(&a.txs);
	buf_free(&b.out);
	buf_free(&b.txs);
	return 0;
}
