/* SPDX-License-Identifier: MIT */
/*
 * proto/milter_codec.c against a real filter: Sendmail's libmilter under
 * pymilter (tests/integration/milter_filter.py, the filter of
 * test_milter.py, /usr/bin/python3 with Debian's python3-milter) on a free
 * loopback port. The test plays the MTA with nothing but the codec: it
 * negotiates, sends every event the agreement asks for (a stored message's
 * header fields and un-stuffed body included), and reads what libmilter
 * answers, checking each reply with milter_reply_check(). Each filter
 * action (accept, continue, add, change, delete and insert headers,
 * quarantine, reject, tempfail, discard, a multi-line reply code, RCPT
 * verdicts, the filter dying mid-message) must come out decoded as
 * libmilter meant it, and the filter must have seen exactly the headers and
 * body sent. Skipped when python3-milter is missing.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loopback.h"
#include "proto/milter_codec.h"

#define T_PYTHON "/usr/bin/python3"
#define T_FILTER ETRND_SOURCE_DIR "/tests/integration/milter_filter.py"
#define T_RETRY_NS 20000000L /* between connect attempts while the filter
                                starts (a poll, not a wait for something) */

struct t_filter {
	pid_t pid;
	unsigned short port;
};

struct t_conn {
	int fd;
	struct milter_reader rd;
	uint8_t rbuf[MILTER_FRAME_SMALL];
	uint8_t in[4096];
	size_t inoff, inlen;
	struct milter_neg agreed;
	char log[2048]; /* the replies read, one per line */
	size_t loglen;
};

static void t_skip_without_pymilter(void)
{
	if (system(T_PYTHON " -c 'import Milter' 2>/dev/null") != 0)
		cr_skip_test("python3-milter (pymilter) is not installed");
}

static void t_filter_start(struct t_filter *f)
{
	char port[16];

	f->port = loopback_free_port();
	cr_assert(f->port != 0);
	snprintf(port, sizeof(port), "%u", f->port);
	f->pid = fork();
	cr_assert(f->pid >= 0);
	if (f->pid == 0) {
		if (freopen("/dev/null", "w", stdout) == NULL)
			_exit(127);
		execl(T_PYTHON, T_PYTHON, T_FILTER, port, (char *)NULL);
		_exit(127);
	}
}

static void t_filter_stop(struct t_filter *f)
{
	int st;

	if (f->pid > 0) {
		(void)kill(f->pid, SIGTERM);
		(void)waitpid(f->pid, &st, 0);
	}
}

/* Connect once the filter listens; fails the test if it died first. */
static int t_connect(struct t_filter *f)
{
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(f->port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timespec ts = { 0, T_RETRY_NS };
	int fd, st;

	for (;;) {
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		cr_assert(fd >= 0);
		if (connect(fd, (struct sockaddr *)&in, sizeof(in)) == 0)
			return fd;
		close(fd);
		cr_assert(errno == ECONNREFUSED, "connect: %s", strerror(errno));
		cr_assert_eq(waitpid(f->pid, &st, WNOHANG), 0, "the filter exited before listening");
		nanosleep(&ts, NULL);
	}
}

static void t_send(struct t_conn *c, const uint8_t *p, ssize_t n)
{
	cr_assert(n > 0, "encode: %s", milter_strerror((enum milter_err)-n));
	while (n > 0) {
		ssize_t w = send(c->fd, p, (size_t)n, MSG_NOSIGNAL);

		cr_assert(w > 0, "send: %s", strerror(errno));
		p += w;
		n -= w;
	}
}

/* The next reply; 0 at EOF (the filter went away). */
static int t_read(struct t_conn *c, struct milter_reply *r)
{
	for (;;) {
		enum milter_read_status st;
		enum milter_err err;
		struct milter_frame fr;

		if (c->inoff == c->inlen) {
			ssize_t n = recv(c->fd, c->in, sizeof(c->in), 0);

			cr_assert(n >= 0, "recv: %s", strerror(errno));
			if (n == 0)
				return 0;
			c->inoff = 0;
			c->inlen = (size_t)n;
		}
		c->inoff += milter_reader_feed(&c->rd, c->in + c->inoff, c->inlen - c->inoff,
				&st, &fr, &err);
		cr_assert_neq(st, MILTER_READ_ERROR, "%s", milter_strerror(err));
		if (st == MILTER_READ_FRAME) {
			err = milter_decode_reply(&fr, r);
			cr_assert_eq(err, MILTER_OK, "%s: %s", milter_reply_name(fr.cmd),
					milter_strerror(err));
			return 1;
		}
	}
}

static void t_log(struct t_conn *c, const struct milter_reply *r)
{
	char line[600];
	int n;

	switch (r->kind) {
	case MILTER_R_REPLYCODE:
		n = snprintf(line, sizeof(line), "y %d %.*s |%.*s|\n", r->u.rc.code,
				(int)r->u.rc.enh.len, r->u.rc.enh.p, (int)r->u.rc.raw.len, r->u.rc.raw.p);
		break;
	case MILTER_R_ADDHEADER:
	case MILTER_R_INSHEADER:
	case MILTER_R_CHGHEADER:
		n = snprintf(line, sizeof(line), "%c %u %.*s |%.*s|\n", r->kind, r->u.hdr.index,
				(int)r->u.hdr.name.len, r->u.hdr.name.p, (int)r->u.hdr.value.len,
				r->u.hdr.value.p);
		break;
	case MILTER_R_QUARANTINE:
		n = snprintf(line, sizeof(line), "q |%.*s|\n", (int)r->u.reason.len, r->u.reason.p);
		break;
	default:
		n = snprintf(line, sizeof(line), "%c\n", r->kind);
	}
	cr_assert(n > 0 && (size_t)n < sizeof(c->log) - c->loglen);
	memcpy(c->log + c->loglen, line, (size_t)n + 1);
	c->loglen += (size_t)n;
}

/* Send cmd (unless the agreement skips it) and read its replies up to the
 * final one: 1 to go on (continue), 0 for another verdict, -1 when the
 * filter closed instead. */
static int t_event(struct t_conn *c, enum milter_cmd cmd, const uint8_t *frame, ssize_t n)
{
	struct milter_reply r;

	if (milter_cmd_skipped(cmd, c->agreed.proto))
		return 1;
	t_send(c, frame, n);
	if (!milter_cmd_wants_reply(cmd, c->agreed.proto))
		return 1;
	do {
		if (!t_read(c, &r)) {
			c->loglen += (size_t)snprintf(c->log + c->loglen, sizeof(c->log) - c->loglen,
					"eof\n");
			return -1;
		}
		cr_assert_eq(milter_reply_check(cmd, r.kind, &c->agreed), MILTER_OK,
				"%s after %s", milter_reply_name(r.kind), milter_cmd_name(cmd));
		if (cmd != MILTER_CMD_BODYEOB && r.kind == MILTER_R_CONTINUE)
			continue;
		t_log(c, &r);
	} while (!milter_reply_final(r.kind));
	return r.kind == MILTER_R_CONTINUE || r.kind == MILTER_R_PROGRESS;
}

static void t_open(struct t_conn *c, struct t_filter *f)
{
	const struct milter_neg offer = { MILTER_VERSION, MILTER_F_ADDHDRS | MILTER_F_CHGHDRS |
		MILTER_F_QUARANTINE, MILTER_P_V6_MASK };
	uint8_t out[256];
	struct milter_reply r;

	memset(c, 0, sizeof(*c));
	c->fd = t_connect(f);
	milter_reader_init(&c->rd, c->rbuf, sizeof(c->rbuf));
	t_send(c, out, milter_encode_optneg(out, sizeof(out), offer.version, offer.actions,
			offer.proto));
	cr_assert_eq(t_read(c, &r), 1);
	cr_assert_eq(milter_reply_check(MILTER_CMD_OPTNEG, r.kind, &c->agreed), MILTER_OK);
	cr_assert_eq(milter_negotiate(&offer, &r.u.optneg, &c->agreed), MILTER_OK,
			"version %u actions %x proto %x", r.u.optneg.version, r.u.optneg.actions,
			r.u.optneg.proto);
	cr_assert_eq(c->agreed.version, 6);
	cr_assert_eq(c->agreed.actions, MILTER_F_ADDHDRS | MILTER_F_CHGHDRS | MILTER_F_QUARANTINE);
}

/* The stored message's header fields (milter_header_next()), EOH, and its
 * body un-stuffed (milter_encode_body_stored()); the rest of the pipeline
 * after the last field. Returns what t_event() did last. */
static int t_content(struct t_conn *c, const char *msg, size_t n)
{
	static uint8_t fr[512];
	struct milter_str name, value;
	size_t used;
	int go = 1, bol = 1;
	ssize_t k;

	while (go == 1 && milter_header_next(msg, n, 0, &name, &value, &used) == 1) {
		go = t_event(c, MILTER_CMD_HEADER, fr, milter_encode_header(fr, sizeof(fr),
				name, value));
		msg += used;
		n -= used;
	}
	msg += used;
	n -= used;
	if (go == 1)
		go = t_event(c, MILTER_CMD_EOH, fr, milter_encode_simple(fr, sizeof(fr),
				MILTER_CMD_EOH));
	/* Small frames: the body goes in several chunks. */
	while (go == 1 && (k = milter_encode_body_stored(fr, 16, msg, n, &bol, &used)) > 0) {
		go = t_event(c, MILTER_CMD_BODY, fr, k);
		msg += used;
		n -= used;
	}
	return go;
}

/* One message through the filter; returns the replies' log. */
static const char *t_message(struct t_filter *f, struct t_conn *c, const char *rcpt,
		const char *subject)
{
	static const struct milter_str mac[] = { { "j", 1 }, { "mx.test", 7 } };
	static const struct milter_str args[] = { { "SIZE=100", 8 } };
	static const struct milter_str host = { "client.test", 11 };
	static uint8_t fr[12][256];
	const struct { enum milter_cmd cmd; ssize_t n; } ev[] = {
		{ MILTER_CMD_MACRO, milter_encode_macro(fr[0], 256, MILTER_CMD_CONNECT, mac, 1) },
		{ MILTER_CMD_CONNECT, milter_encode_connect(fr[1], 256, host, MILTER_FAMILY_INET,
				40000, (struct milter_str){ "192.0.2.7", 9 }) },
		{ MILTER_CMD_HELO, milter_encode_helo(fr[2], 256, host) },
		{ MILTER_CMD_MAIL, milter_encode_mail(fr[3], 256,
				(struct milter_str){ "a@client.test", 13 }, args, 1) },
		{ MILTER_CMD_RCPT, milter_encode_rcpt(fr[4], 256,
				(struct milter_str){ rcpt, strlen(rcpt) }, NULL, 0) },
		{ MILTER_CMD_DATA, milter_encode_simple(fr[5], 256, MILTER_CMD_DATA) },
	};
	char msg[256];
	int go = 1, len;
	struct milter_reply r;

	/* As smtp_tx_body() gives it: CRLF, dot-stuffed, a folded field. */
	len = snprintf(msg, sizeof(msg), "Received: from client.test\r\n\tby mx.test\r\n"
			"Subject: %s\r\n\r\nhello\r\n..dot line\r\n"
			"and a longer line of the body\r\n", subject);
	cr_assert(len > 0 && (size_t)len < sizeof(msg));
	t_open(c, f);
	for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]) && go == 1; i++)
		go = t_event(c, ev[i].cmd, fr[i], ev[i].n);
	if (go == 1)
		go = t_content(c, msg, (size_t)len);
	if (go == 1)
		go = t_event(c, MILTER_CMD_BODYEOB, fr[10], milter_encode_simple(fr[10], 256,
				MILTER_CMD_BODYEOB));
	if (go >= 0) {
		/* QUIT is never answered: libmilter closes its end. */
		t_send(c, fr[11], milter_encode_simple(fr[11], 256, MILTER_CMD_QUIT));
		cr_assert_eq(t_read(c, &r), 0, "a reply to QUIT");
	}
	close(c->fd);
	return c->log;
}

/* hex of "Received:from client.test\n\tby mx.test\nSubject:echo\n" and of
 * "hello\r\n.dot line\r\nand a longer line of the body\r\n" (t_message()'s
 * message as the filter must see it). */
#define T_HEX_HEADERS "52656365697665643a66726f6d20636c69656e742e746573740a096279206d" \
	"782e746573740a5375626a6563743a6563686f0a"
#define T_HEX_BODY "68656c6c6f0d0a2e646f74206c696e650d0a616e642061206c6f6e676572206c" \
	"696e65206f662074686520626f64790d0a"

TestSuite(milter_libmilter, .timeout = 120);

Test(milter_libmilter, actions)
{
	/* The filter acts on the Subject (milter_filter.py's table). */
	static const struct { const char *subject, *want; } cases[] = {
		{ "plain", "a\n" },
		{ "keepgoing", "c\n" },
		{ "addheader", "h 0 X-Test-Milter |added|\na\n" },
		{ "chgheader", "m 1 Subject |changed by milter|\na\n" },
		{ "edits", "m 1 X-Milter-Delete ||\ni 0 X-Milter-First |yes|\na\n" },
		{ "hold", "q |held by test milter|\na\n" },
		{ "reject", "y 554 5.7.1 |554 5.7.1 content rejected by test milter|\n" },
		{ "tempfail", "t\n" },
		{ "discard", "d\n" },
		{ "multiline", "y 550 5.7.1 |550-5.7.1 rejected by test milter\r\n"
			"550 5.7.1 second line|\n" },
		/* What libmilter got: the fields as Postfix sends them (one
		 * space eaten, folding by LF), the body un-stuffed. */
		{ "echo", "h 0 X-Milter-Seen-Headers |" T_HEX_HEADERS "|\n"
			"h 0 X-Milter-Seen-Body |" T_HEX_BODY "|\na\n" },
		/* Last: the filter process is gone afterwards. */
		{ "die", "eof\n" },
	};
	struct t_filter f;
	struct t_conn c;

	t_skip_without_pymilter();
	t_filter_start(&f);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_str_eq(t_message(&f, &c, "b@dest.test", cases[i].subject), cases[i].want,
				"subject %s", cases[i].subject);
	t_filter_stop(&f);
}

Test(milter_libmilter, rcpt_verdicts_and_header_format)
{
	struct t_filter f;
	struct t_conn c;
	struct milter_hdr h = { 0, { "X-Milter-Filter", 15 },
		{ "checked\n\tby milter_filter", 25 } };
	char out[128];

	t_skip_without_pymilter();
	t_filter_start(&f);
	cr_assert_str_eq(t_message(&f, &c, "reject@dest.test", "plain"),
			"y 550 5.7.1 |550 5.7.1 recipient refused by test milter|\n");
	cr_assert_str_eq(t_message(&f, &c, "tempfail@dest.test", "plain"), "t\n");
	cr_assert_str_eq(t_message(&f, &c, "b@dest.test", "plain"), "a\n");
	t_filter_stop(&f);
	/* A folded header from a filter, as it is stored. */
	cr_assert_eq(milter_header_format(&h, 0, out, sizeof(out)), 45);
	cr_assert(memcmp(out, "X-Milter-Filter: checked\r\n\tby milter_filter\r\n", 45) == 0);
}
