/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for proto/smtp_reply.c: input bytes -> the replies read (code,
 * enhanced code, text, EHLO flags) or the error, in a table. Every case is
 * replayed whole, one byte at a time and in other chunk sizes; the same
 * replies and errors must come out, and each DONE must stop right after
 * its reply's last line.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "proto/smtp_reply.h"

#define T_OUT_MAX 4096
#define T_LINE_MAX 64
#define T_LINES_MAX 6

struct t_case {
	const char *name;
	const char *in;
	size_t in_len;        /* 0: strlen(in) */
	const char *want;     /* one line per reply: "code enh caps auth size |text|",
	                         then "error: <words>" or "again" (input ended
	                         inside a reply) or "" */
};

static void t_run(const struct t_case *tc, size_t chunk, char *res, size_t cap)
{
	size_t n = tc->in_len ? tc->in_len : strlen(tc->in), i = 0, len = 0;
	struct smtp_reply_reader rd;
	char line[T_LINE_MAX];
	char *in = malloc(n ? n : 1);
	int over = 0;

	cr_assert(in != NULL);
	memcpy(in, tc->in, n);
	smtp_reply_init(&rd, line, sizeof(line), T_LINES_MAX);
	res[0] = '\0';
	while (i < n && !over) {
		size_t k = chunk && chunk < n - i ? chunk : n - i, off = 0;

		while (off < k && !over) {
			enum smtp_reply_status st;
			const struct smtp_reply *r = &rd.r;
			size_t got = smtp_reply_feed(&rd, in + i + off, k - off, &st);
			int w = 0;

			cr_assert(got > 0 && got <= k - off);
			off += got;
			if (st == SMTP_REPLY_AGAIN) {
				cr_assert_eq(off, k);
				continue;
			}
			if (st == SMTP_REPLY_DONE) {
				cr_assert_eq(in[i + off - 1], '\n', "%s: DONE mid-line", tc->name);
				cr_assert_eq(smtp_reply_busy(&rd), 0);
				w = snprintf(res + len, cap - len, "%d %s %x %x %llu |%.*s|\n", r->code,
						r->enh, r->caps, r->auth, (unsigned long long)r->size_max,
						(int)r->text_len, r->text);
			} else {
				w = snprintf(res + len, cap - len, "error: %s\n", smtp_reply_error(st));
				over = 1;
			}
			cr_assert(w > 0 && (size_t)w < cap - len);
			len += (size_t)w;
		}
		i += k;
	}
	if (!over && smtp_reply_busy(&rd))
		snprintf(res + len, cap - len, "again\n");
	smtp_reply_reset(&rd);
	cr_assert_eq(smtp_reply_busy(&rd), 0);
	free(in);
}

static const struct t_case t_cases[] = {
	{ "one line", "220 mx.test ESMTP\r\n", 0, "220 2.0.0 0 0 0 |mx.test ESMTP|\n" },
	{ "code only, bare LF", "250\n", 0, "250 2.0.0 0 0 0 ||\n" },
	{ "enhanced code kept once, stripped from every line",
		"550-5.7.1 no\r\n550 5.7.1 relaying denied\r\n", 0,
		"550 5.7.1 0 0 0 |no relaying denied|\n" },
	{ "enhanced code of another class is text", "459 5.7.1 not allowed\r\n", 0,
		"459 4.0.0 0 0 0 |5.7.1 not allowed|\n" },
	{ "enhanced code needs its SP", "250 2.0.0x fine\r\n", 0,
		"250 2.0.0 0 0 0 |2.0.0x fine|\n" },
	{ "EHLO keywords, any case", "250-mx.test\r\n250-pipelining\r\n250-SIZE 1000\r\n"
		"250-8BITMIME\r\n250-StartTLS\r\n250 AUTH PLAIN LOGIN CRAM-MD5\r\n", 0,
		"250 2.0.0 67 3 1000 |mx.test pipelining SIZE 1000 8BITMIME StartTLS "
		"AUTH PLAIN LOGIN CRAM-MD5|\n" },
	{ "AUTH= and unknown mechanisms", "250-mx.test\r\n250-AUTH=LOGIN\r\n"
		"250-AUTH GSSAPI\r\n250 ENHANCEDSTATUSCODES\r\n", 0,
		"250 2.0.0 48 2 0 |mx.test AUTH=LOGIN AUTH GSSAPI ENHANCEDSTATUSCODES|\n" },
	{ "no keywords from the first line or a 5xx", "250 PIPELINING\r\n"
		"550-x\r\n550 PIPELINING\r\n", 0,
		"250 2.0.0 0 0 0 |PIPELINING|\n550 5.0.0 0 0 0 |x PIPELINING|\n" },
	{ "absurd SIZE is no limit", "250-mx\r\n250 SIZE 99999999999999999999999\r\n", 0,
		"250 2.0.0 2 0 0 |mx SIZE 99999999999999999999999|\n" },
	{ "two replies in one read", "250 a\r\n251 b\r\n", 0,
		"250 2.0.0 0 0 0 |a|\n251 2.0.0 0 0 0 |b|\n" },
	{ "NUL and bare CR made printable", "250 a\0b\rc\r\n", 11,
		"250 2.0.0 0 0 0 |a?b?c|\n" },
	{ "incomplete", "250-a\r\n250 b", 0, "again\n" },
	{ "malformed", "25O ok\r\n", 0, "error: malformed reply\n" },
	{ "first digit 1", "150 ok\r\n", 0, "error: malformed reply\n" },
	{ "no SP or -", "250x\r\n", 0, "error: malformed reply\n" },
	{ "empty line", "\r\n", 0, "error: malformed reply\n" },
	{ "code changed", "250-a\r\n251 b\r\n", 0,
		"error: reply code changed in multiline reply\n" },
	{ "too many lines", "250-1\r\n250-2\r\n250-3\r\n250-4\r\n250-5\r\n250-6\r\n250 7\r\n",
		0, "error: too many reply lines\n" },
	{ "six lines are fine", "250-1\r\n250-2\r\n250-3\r\n250-4\r\n250-5\r\n250 6\r\n", 0,
		"250 2.0.0 0 0 0 |1 2 3 4 5 6|\n" },
	{ "overlong line, before its LF arrives",
		"250 0123456789012345678901234567890123456789012345678901234567890123456789", 0,
		"error: reply line too long\n" },
};

static void t_check(const struct t_case *tc)
{
	static const size_t chunks[] = { 1, 2, 3, 5, 7, 13, 64 };
	char first[T_OUT_MAX], r[T_OUT_MAX];
	size_t i;

	t_run(tc, 0, first, sizeof(first));
	cr_expect_str_eq(first, tc->want, "%s", tc->name);
	for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		t_run(tc, chunks[i], r, sizeof(r));
		cr_expect_str_eq(r, first, "%s, chunk %zu", tc->name, chunks[i]);
	}
}

Test(smtp_reply, replies)
{
	size_t i;

	log_set_level(LOGL_ERR);
	for (i = 0; i < sizeof(t_cases) / sizeof(t_cases[0]); i++)
		t_check(&t_cases[i]);
}

/* Six lines of 90 octets of text join to 545 octets, over
 * SMTP_REPLY_TEXT_MAX: the text is cut there, the reply is still read
 * whole. */
Test(smtp_reply, text_cut)
{
	struct smtp_reply_reader rd;
	char line[128], in[1024];
	enum smtp_reply_status st;
	size_t len = 0, got;
	int k;

	smtp_reply_init(&rd, line, sizeof(line), T_LINES_MAX);
	for (k = 0; k < T_LINES_MAX; k++)
		len += (size_t)snprintf(in + len, sizeof(in) - len, "250%c%090d\r\n",
				k + 1 < T_LINES_MAX ? '-' : ' ', k);
	got = smtp_reply_feed(&rd, in, len, &st);
	cr_assert_eq(st, SMTP_REPLY_DONE);
	cr_assert_eq(got, len);
	cr_assert_eq(rd.r.text_len, SMTP_REPLY_TEXT_MAX);
	cr_assert_eq(rd.r.lines, T_LINES_MAX);
}

Test(smtp_reply, enh_len)
{
	cr_expect_eq(smtp_reply_enh_len("2.0.0", 5, 250), 5);
	cr_expect_eq(smtp_reply_enh_len("5.123.456 x", 11, 550), 9);
	cr_expect_eq(smtp_reply_enh_len("5.1234.5", 8, 550), 0);
	cr_expect_eq(smtp_reply_enh_len("4.1.", 4, 450), 0);
	cr_expect_eq(smtp_reply_enh_len("4.1.1", 5, 550), 0);
	cr_expect_eq(smtp_reply_enh_len("4..1", 4, 450), 0);
}

/* enh_sent tells the server's own enhanced code from the class stand-in,
 * so that a DSN's Diagnostic-Code repeats only what the server said. */
Test(smtp_reply, enh_sent)
{
	static const struct { const char *in; const char *enh; int sent; } t[] = {
		{ "550 5.1.1 no such user\r\n", "5.1.1", 1 },
		{ "550 no such user here\r\n", "5.0.0", 0 },
		{ "550 5.0.0 said so\r\n", "5.0.0", 1 },
		{ "459 5.7.1 another class is text\r\n", "4.0.0", 0 },
		{ "250-2.0.0 first\r\n250 second\r\n", "2.0.0", 1 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct smtp_reply_reader rd;
		char line[128];
		enum smtp_reply_status st;
		size_t len = strlen(t[i].in);

		smtp_reply_init(&rd, line, sizeof(line), T_LINES_MAX);
		cr_assert_eq(smtp_reply_feed(&rd, t[i].in, len, &st), len, "%s", t[i].in);
		cr_assert_eq(st, SMTP_REPLY_DONE, "%s", t[i].in);
		cr_expect_str_eq(rd.r.enh, t[i].enh, "%s", t[i].in);
		cr_expect_eq(rd.r.enh_sent, t[i].sent, "%s", t[i].in);
	}
}
