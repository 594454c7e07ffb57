/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for proto/smtp_client.c. The first input byte picks the
 * limits, a chunk size and how the session ends; the rest is what the server
 * says. A small engine submits messages whenever the session is idle, sends
 * a body on SEND_BODY, and checks every result. The session is run twice,
 * whole and in chunks, and must write the same commands and give the same
 * results. A recipient is never "delivered" unless its body was sent.
 * The same bits that pick the first message pick the STARTTLS policy (none,
 * may, must, and must with the certificate rejected); on EV_STARTTLS the
 * "handshake" succeeds at once and the rest of the input is the server's
 * plaintext after it. Under must no message is ever submitted in the clear.
 * With bit 1 of the first byte the engine submits the next message behind
 * each final dot when smtp_client_can_submit() lets it (RFC 2920 3.1, as
 * the drain does); its results must then come after the older one's.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "proto/smtp_client.h"

#define FZ_OUT_MAX (1u << 20)
#define FZ_TRACE_MAX (1u << 20)
#define FZ_MSGS 4
#define FZ_SUBMITS 6
#define FZ_BODY "Subject: fuzz\r\n\r\nbody\r\n"

static const char *const fz_rcpt0[] = { "a@c.test", "b@c.test", "c@c.test" };
static const size_t fz_len0[] = { 8, 8, 8 };
static const char *const fz_rcpt1[] = { "a@c.test" };
static const size_t fz_len1[] = { 8 };
static const char *const fz_rcpt2[] = { "\xc3\xbc@c.test", "a@c.test" };
static const size_t fz_len2[] = { 9, 8 };

static const struct smtp_client_msg fz_msgs[FZ_MSGS] = {
	{ "s@x.test", 8, 3, fz_rcpt0, fz_len0, 100, 0, 0 },
	{ "", 0, 1, fz_rcpt1, fz_len1, 100, 1, 0 },
	{ "s@x.test", 8, 2, fz_rcpt2, fz_len2, 100, 0, 0 },
	{ "s@x.test", 8, 1, fz_rcpt1, fz_len1, 5000, 0, 1 },
};

struct fz_trace {
	struct buf out;   /* commands (and bodies) written */
	struct buf res;   /* results */
	int ev;
};

struct fz_drv {
	struct smtp_client *c;
	struct fz_trace *t;
	unsigned first, submits;
	int cur;          /* index of the message in flight, -1 for none */
	int behind;       /* index of one submitted behind cur's dot, -1 */
	int pipe;         /* submit behind the dot */
	int body_sent;    /* SEND_BODY seen for it */
	int quit;
	enum smtp_client_tls tls;
	int reject;       /* reject the certificate on EV_STARTTLS */
};

static void fz_results(struct fz_drv *d, const struct smtp_client_msg *m, int rc)
{
	unsigned i;

	(void)buf_printf(&d->t->res, "rc=%d code=%d\n", rc, smtp_client_msg_code(d->c));
	for (i = 0; i < m->nrcpt; i++) {
		const struct smtp_client_result *r = smtp_client_result(d->c, i);
		size_t k;

		if (r == NULL || r->code < 200 || r->code > 599 || r->code / 100 == 3)
			__builtin_trap();
		if ((int)r->status != (r->code / 100 == 2 ? SMTP_CLIENT_DELIVERED :
				r->code / 100 == 4 ? SMTP_CLIENT_DEFERRED : SMTP_CLIENT_BOUNCED))
			__builtin_trap();
		if (r->status == SMTP_CLIENT_DELIVERED && (!d->body_sent || r->local))
			__builtin_trap();
		if (r->enh[0] != (char)('0' + r->code / 100) || r->enh[1] != '.')
			__builtin_trap();
		if (r->text_len > SMTP_CLIENT_TEXT_MAX)
			__builtin_trap();
		for (k = 0; k < r->text_len; k++)
			if (r->text[k] < 0x20 || r->text[k] > 0x7e)
				__builtin_trap();
		(void)buf_printf(&d->t->res, "%d %d %s %d %.*s\n", (int)r->status, r->code,
				r->enh, r->local, (int)r->text_len, r->text);
	}
	if (smtp_client_result(d->c, m->nrcpt) != NULL)
		__builtin_trap();
}

static void fz_idle(struct fz_drv *d)
{
	/* RFC 3207 / tls must: idle in the clear means mail in the clear. */
	if (d->tls == SMTP_CLIENT_TLS_MUST && !smtp_client_tls_on(d->c))
		__builtin_trap();
	while (d->submits < FZ_SUBMITS) {
		unsigned k = (d->first + d->submits++) % FZ_MSGS;
		int rc = smtp_client_submit(d->c, &fz_msgs[k], &d->t->out);

		if (rc == 0) {
			d->cur = (int)k;
			d->body_sent = 0;
			return;
		}
		if (rc == -EBUSY || rc == -EINVAL)
			__builtin_trap();
		fz_results(d, &fz_msgs[k], rc);
	}
	if (d->quit && smtp_client_quit(d->c, &d->t->out) != 0)
		__builtin_trap();
}

static void fz_event(struct fz_drv *d, enum smtp_client_event ev)
{
	switch (ev) {
	case SMTP_CLIENT_EV_READY:
		if (d->cur >= 0)
			__builtin_trap();
		fz_idle(d);
		break;
	case SMTP_CLIENT_EV_SEND_BODY:
		if (d->cur < 0)
			__builtin_trap();
		(void)buf_append(&d->t->out, FZ_BODY, sizeof(FZ_BODY) - 1);
		if (smtp_client_body_sent(d->c, &d->t->out) != 0)
			__builtin_trap();
		d->body_sent = 1;
		if (d->pipe && d->submits < FZ_SUBMITS && smtp_client_can_submit(d->c)) {
			unsigned k = (d->first + d->submits++) % FZ_MSGS;
			int rc = smtp_client_submit(d->c, &fz_msgs[k], &d->t->out);

			if (rc == -EBUSY || rc == -EINVAL || d->behind >= 0)
				__builtin_trap();
			if (rc == 0)
				d->behind = (int)k;
			else
				fz_results(d, &fz_msgs[k], rc);
		}
		break;
	case SMTP_CLIENT_EV_MSG_DONE:
		if (d->cur < 0)
			__builtin_trap();
		fz_results(d, &fz_msgs[d->cur], 0);
		/* The one behind the dot is next; its body was never sent. */
		d->cur = d->behind;
		d->behind = -1;
		d->body_sent = 0;
		if (d->cur < 0 && !smtp_client_closed(d->c))
			fz_idle(d);
		break;
	case SMTP_CLIENT_EV_CLOSE:
		if (!smtp_client_closed(d->c) || d->cur >= 0)
			__builtin_trap();
		break;
	case SMTP_CLIENT_EV_STARTTLS:
		if (d->tls == SMTP_CLIENT_TLS_NONE || d->cur >= 0 || smtp_client_tls_on(d->c) ||
				smtp_client_timeout_ms(d->c) != SMTP_CLIENT_TIMEOUT_TLS_MS)
			__builtin_trap();
		if ((d->reject ? smtp_client_tls_reject(d->c, &d->t->out, "4.7.5", "bad cert") :
				smtp_client_tls_up(d->c, &d->t->out)) != 0)
			__builtin_trap();
		if (d->reject && !smtp_client_tls_refused(d->c))
			__builtin_trap();
		break;
	default:
		break;
	}
}

static void fz_run(const struct smtp_client_conf *conf, const char *in, size_t n,
		size_t chunk, unsigned sel, struct fz_trace *t)
{
	struct fz_drv d = { .t = t, .first = (sel >> 4) & 3, .cur = -1, .behind = -1,
		.quit = sel & 8, .pipe = sel & 2 };
	enum smtp_client_event ev = SMTP_CLIENT_EV_NEED_INPUT;
	size_t i = 0;

	buf_init(&t->out, FZ_OUT_MAX);
	buf_init(&t->res, FZ_TRACE_MAX);
	d.c = smtp_client_new(conf, "192.0.2.9");
	if (d.c == NULL)
		abort();
	d.tls = (enum smtp_client_tls)(d.first == 3 ? SMTP_CLIENT_TLS_MUST : d.first);
	d.reject = d.first == 3;
	if (smtp_client_set_tls(d.c, d.tls) != 0)
		__builtin_trap();
	/* Half the inputs (both replays alike) run with AUTH PLAIN. */
	if ((sel & 1) && smtp_client_set_auth(d.c, "node3", "fuzz-secret") != 0)
		__builtin_trap();
	while (i < n && ev != SMTP_CLIENT_EV_CLOSE) {
		size_t k = chunk && chunk < n - i ? chunk : n - i, off = 0;

		while (off < k) {
			size_t got = smtp_client_feed(d.c, in + i + off, k - off, &t->out, &ev);

			if (got > k - off)
				__builtin_trap();
			off += got;
			if (ev == SMTP_CLIENT_EV_NEED_INPUT && off != k)
				__builtin_trap();
			fz_event(&d, ev);
			if (ev == SMTP_CLIENT_EV_CLOSE)
				break;
		}
		i += k;
	}
	/* End: a timeout or EOF, then whatever is left must close. */
	if (ev != SMTP_CLIENT_EV_CLOSE) {
		if (sel & 0x40) {
			ev = smtp_client_timed_out(d.c);
		} else if (smtp_client_feed(d.c, in, 0, &t->out, &ev) != 0) {
			__builtin_trap();
		}
		fz_event(&d, ev);
		/* A message behind the dot gets its own MSG_DONE next. */
		if (ev != SMTP_CLIENT_EV_CLOSE && d.cur >= 0) {
			if (smtp_client_feed(d.c, in, 0, &t->out, &ev) != 0 ||
					ev != SMTP_CLIENT_EV_MSG_DONE)
				__builtin_trap();
			fz_event(&d, ev);
		}
		if (ev != SMTP_CLIENT_EV_CLOSE) {
			if (smtp_client_feed(d.c, in, 0, &t->out, &ev) != 0 ||
					ev != SMTP_CLIENT_EV_CLOSE)
				__builtin_trap();
		}
	}
	if (!smtp_client_closed(d.c) || smtp_client_timeout_ms(d.c) != 0)
		__builtin_trap();
	t->ev = (int)ev;
	smtp_client_free(d.c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t chunks[] = { 1, 2, 3, 5, 7, 16, 100, 4096 };
	struct smtp_client_conf conf;
	struct fz_trace a, b;
	unsigned sel;

	if (size < 1)
		return 0;
	log_set_level(LOGL_ERR);
	sel = data[0];
	conf.helo_name = "relay.test";
	conf.reply_line_max = sel & 0x80 ? 512 : 40;
	conf.max_reply_lines = sel & 0x80 ? 100 : 5;

	fz_run(&conf, (const char *)data + 1, size - 1, 0, sel, &a);
	fz_run(&conf, (const char *)data + 1, size - 1, chunks[sel & 7], sel, &b);
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
