/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for proto/milter_codec.c. Encoders: every command against
 * bytes written out by hand from the protocol (sendmail's mfdef.h and
 * libmilter, Postfix's milter8.c), and each refusal. Reader + decoders: a
 * table of filter byte streams -> the replies read or the error, each case
 * replayed whole, one byte at a time and in other chunk sizes. Then the
 * negotiation and the session rules.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/milter_codec.h"

#define T_OUT_MAX 8192
#define T_BUF 256 /* the reader's buffer in the table: frames up to 256 */

/* A string literal with its embedded NULs: pointer and length. */
#define B(s) (s), (sizeof(s) - 1)
#define S(s) ((struct milter_str){ (s), sizeof(s) - 1 })

static uint8_t t_out[MILTER_CMD_MAX + 16];

static void t_same(ssize_t got, const char *want, size_t want_len)
{
	char hex[3 * 64 + 1] = "";

	for (size_t i = 0; got > 0 && i < (size_t)got && i < 64; i++)
		snprintf(hex + 3 * i, 4, "%02x ", t_out[i]);
	cr_assert_eq(got, (ssize_t)want_len, "length %zd, want %zu: %s", got, want_len, hex);
	cr_assert(memcmp(t_out, want, want_len) == 0, "bytes differ: %s", hex);
}

/* ---- Encoders ---- */

Test(milter_encode, optneg)
{
	/* length 13, 'O', version 6, actions 0x1ff, protocol 0x1fffff */
	t_same(milter_encode_optneg(t_out, sizeof(t_out), 6, 0x1ff, 0x1fffff),
			B("\0\0\0\x0d" "O" "\0\0\0\x06" "\0\0\x01\xff" "\0\x1f\xff\xff"));
}

Test(milter_encode, macro)
{
	const struct milter_str kv[] = { S("j"), S("mx.test"), S("{daemon_name}"), S("etrnd") };

	t_same(milter_encode_macro(t_out, sizeof(t_out), MILTER_CMD_CONNECT, kv, 2),
			B("\0\0\0\x20" "D" "C" "j\0mx.test\0{daemon_name}\0etrnd\0"));
	/* No pairs: the stage alone. */
	t_same(milter_encode_macro(t_out, sizeof(t_out), MILTER_CMD_BODYEOB, NULL, 0),
			B("\0\0\0\x02" "DE"));
}

Test(milter_encode, connect)
{
	/* port 25 = 0x0019 in network order */
	t_same(milter_encode_connect(t_out, sizeof(t_out), S("client.test"),
			MILTER_FAMILY_INET, 25, S("192.0.2.1")),
			B("\0\0\0\x1a" "C" "client.test\0" "4" "\0\x19" "192.0.2.1\0"));
	t_same(milter_encode_connect(t_out, sizeof(t_out), S("[2001:db8::1]"),
			MILTER_FAMILY_INET6, 0xabcd, S("2001:db8::1")),
			B("\0\0\0\x1e" "C" "[2001:db8::1]\0" "6" "\xab\xcd" "2001:db8::1\0"));
	t_same(milter_encode_connect(t_out, sizeof(t_out), S("localhost"),
			MILTER_FAMILY_UNIX, 0, S("/run/s")),
			B("\0\0\0\x15" "C" "localhost\0" "L" "\0\0" "/run/s\0"));
	/* 'U': host name and family only. */
	t_same(milter_encode_connect(t_out, sizeof(t_out), S("unknown"),
			MILTER_FAMILY_UNKNOWN, 25, S("ignored")),
			B("\0\0\0\x0a" "C" "unknown\0" "U"));
	cr_assert_eq(milter_encode_connect(t_out, sizeof(t_out), S("h"), 'X', 1, S("a")),
			-MILTER_E_INVAL);
}

Test(milter_encode, helo_unknown)
{
	t_same(milter_encode_helo(t_out, sizeof(t_out), S("client.test")),
			B("\0\0\0\x0d" "H" "client.test\0"));
	t_same(milter_encode_unknown(t_out, sizeof(t_out), S("XFOO bar")),
			B("\0\0\0\x0a" "U" "XFOO bar\0"));
}

Test(milter_encode, mail_rcpt)
{
	const struct milter_str args[] = { S("SIZE=1234"), S("BODY=8BITMIME") };

	t_same(milter_encode_mail(t_out, sizeof(t_out), S("a@b.test"), args, 2),
			B("\0\0\0\x24" "M" "<a@b.test>\0SIZE=1234\0BODY=8BITMIME\0"));
	/* The null sender. */
	t_same(milter_encode_mail(t_out, sizeof(t_out), (struct milter_str){ NULL, 0 },
			NULL, 0), B("\0\0\0\x04" "M" "<>\0"));
	t_same(milter_encode_rcpt(t_out, sizeof(t_out), S("c@d.test"), NULL, 0),
			B("\0\0\0\x0c" "R" "<c@d.test>\0"));
	cr_assert_eq(milter_encode_rcpt(t_out, sizeof(t_out), S("c\0@d"), NULL, 0),
			-MILTER_E_INVAL);
}

Test(milter_encode, header_body)
{
	t_same(milter_encode_header(t_out, sizeof(t_out), S("Subject"), S("hi\r\n there")),
			B("\0\0\0\x14" "L" "Subject\0hi\r\n there\0"));
	t_same(milter_encode_body(t_out, sizeof(t_out), "a\0b\r\n", 5),
			B("\0\0\0\x06" "B" "a\0b\r\n"));
	/* A header with a NUL cannot be carried. */
	cr_assert_eq(milter_encode_header(t_out, sizeof(t_out), S("X"), S("a\0b")),
			-MILTER_E_INVAL);
}

Test(milter_encode, simple)
{
	const struct { enum milter_cmd cmd; const char *want; } c[] = {
		{ MILTER_CMD_DATA, "\0\0\0\x01T" }, { MILTER_CMD_EOH, "\0\0\0\x01N" },
		{ MILTER_CMD_BODYEOB, "\0\0\0\x01" "E" }, { MILTER_CMD_ABORT, "\0\0\0\x01" "A" },
		{ MILTER_CMD_QUIT, "\0\0\0\x01Q" }, { MILTER_CMD_QUIT_NC, "\0\0\0\x01K" },
	};

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		t_same(milter_encode_simple(t_out, sizeof(t_out), c[i].cmd), c[i].want, 5);
	cr_assert_eq(milter_encode_simple(t_out, sizeof(t_out), MILTER_CMD_HELO),
			-MILTER_E_INVAL);
}

Test(milter_encode, frame)
{
	static char big[MILTER_CHUNK_MAX + 1];

	/* A filter's replies, for tests and the benchmark filter. */
	t_same(milter_encode_frame(t_out, sizeof(t_out), MILTER_R_CONTINUE, NULL, 0),
			B("\0\0\0\x01" "c"));
	t_same(milter_encode_frame(t_out, sizeof(t_out), MILTER_R_ADDHEADER, "X\0v\0", 4),
			B("\0\0\0\x05" "h" "X\0v\0"));
	cr_assert_eq(milter_encode_frame(t_out, sizeof(t_out), 'b', big, sizeof(big)),
			-MILTER_E_INVAL);
	cr_assert_eq(milter_encode_frame(t_out, 5, 'b', "x", 1), -MILTER_E_NOSPACE);
}

Test(milter_encode, limits)
{
	static char big[MILTER_CHUNK_MAX + 1];
	size_t cap;

	memset(big, 'x', sizeof(big));
	/* The largest body chunk fits MILTER_CMD_MAX exactly; one more is
	 * refused whatever the buffer. */
	cr_assert_eq(milter_encode_body(t_out, sizeof(t_out), big, MILTER_CHUNK_MAX),
			(ssize_t)MILTER_CMD_MAX);
	cr_assert_eq(t_out[0], 0);
	cr_assert_eq(t_out[1], 1);
	cr_assert_eq(t_out[2], 0);
	cr_assert_eq(t_out[3], 0);
	cr_assert_eq(milter_encode_body(t_out, sizeof(t_out), big, MILTER_CHUNK_MAX + 1),
			-MILTER_E_INVAL);
	/* A header whose data passes MILTER_DATA_MAX: refused (libmilter
	 * would drop the connection), even with room in the buffer. */
	cr_assert_eq(milter_encode_header(t_out, sizeof(t_out), S("X"),
			((struct milter_str){ big, MILTER_DATA_MAX - 2 })), -MILTER_E_INVAL);
	cr_assert_eq(milter_encode_header(t_out, sizeof(t_out), S("X"),
			((struct milter_str){ big, MILTER_DATA_MAX - 3 })), (ssize_t)MILTER_CMD_MAX);
	/* Every buffer size short of the frame: NOSPACE, never a write past
	 * cap (ASan watches t_out's neighbours through the exact cap). */
	for (cap = 0; cap < 26; cap++) {
		uint8_t *o = malloc(cap ? cap : 1);

		cr_assert(o != NULL);
		cr_assert_eq(milter_encode_connect(o, cap, S("client.test"), MILTER_FAMILY_INET,
				25, S("192.0.2.1")), -MILTER_E_NOSPACE, "cap %zu", cap);
		free(o);
	}
	cr_assert_eq(milter_encode_simple(t_out, 4, MILTER_CMD_QUIT), -MILTER_E_NOSPACE);
	cr_assert_eq(milter_encode_simple(t_out, 5, MILTER_CMD_QUIT), 5);
}

/* ---- Reader and decoders ---- */

struct t_case {
	const char *name;
	const char *in;
	size_t in_len;
	const char *want; /* one line per reply, then "error: ..." or "again" */
};

static int t_render(const struct milter_reply *r, char *o, size_t cap)
{
	const struct milter_optneg *on = &r->u.optneg;
	int w, k;
	unsigned s;

	switch (r->kind) {
	case MILTER_R_REPLYCODE:
		return snprintf(o, cap, "y %d |%.*s|%.*s| %u |%.*s|\n", r->u.rc.code,
				(int)r->u.rc.enh.len, r->u.rc.enh.p, (int)r->u.rc.text.len,
				r->u.rc.text.p, r->u.rc.lines, (int)r->u.rc.raw.len, r->u.rc.raw.p);
	case MILTER_R_ADDHEADER:
	case MILTER_R_INSHEADER:
	case MILTER_R_CHGHEADER:
		return snprintf(o, cap, "%c %u |%.*s|%.*s|\n", r->kind, r->u.hdr.index,
				(int)r->u.hdr.name.len, r->u.hdr.name.p, (int)r->u.hdr.value.len,
				r->u.hdr.value.p);
	case MILTER_R_ADDRCPT:
	case MILTER_R_DELRCPT:
	case MILTER_R_ADDRCPT_PAR:
	case MILTER_R_CHGFROM:
		return snprintf(o, cap, "%c |%.*s|%.*s|\n", r->kind, (int)r->u.addr.addr.len,
				r->u.addr.addr.p, (int)r->u.addr.args.len, r->u.addr.args.p);
	case MILTER_R_QUARANTINE:
		return snprintf(o, cap, "q |%.*s|\n", (int)r->u.reason.len, r->u.reason.p);
	case MILTER_R_REPLBODY:
		return snprintf(o, cap, "b %zu\n", r->u.body.len);
	case MILTER_R_OPTNEG:
		w = snprintf(o, cap, "O %u %x %x", on->version, on->actions, on->proto);
		for (s = 0; s < MILTER_STAGES; s++) {
			if (on->symlist[s].len == 0)
				continue;
			k = snprintf(o + w, cap - (size_t)w, " %u=|%.*s|", s,
					(int)on->symlist[s].len, on->symlist[s].p);
			w += k;
		}
		return w + snprintf(o + w, cap - (size_t)w, "\n");
	default:
		return snprintf(o, cap, "%c\n", r->kind);
	}
}

static void t_run(const struct t_case *tc, size_t chunk, char *res, size_t cap)
{
	size_t n = tc->in_len, i = 0, len = 0;
	struct milter_reader rd;
	uint8_t buf[T_BUF];
	uint8_t *in = malloc(n ? n : 1);
	int over = 0;

	cr_assert(in != NULL);
	memcpy(in, tc->in, n);
	milter_reader_init(&rd, buf, sizeof(buf));
	res[0] = '\0';
	while (i < n && !over) {
		size_t k = chunk && chunk < n - i ? chunk : n - i, off = 0;

		while (off < k && !over) {
			enum milter_read_status st;
			enum milter_err err;
			struct milter_frame fr;
			struct milter_reply r;
			size_t got = milter_reader_feed(&rd, in + i + off, k - off, &st, &fr, &err);
			int w;

			cr_assert(got <= k - off);
			off += got;
			if (st == MILTER_READ_AGAIN) {
				cr_assert_eq(off, k, "%s: AGAIN with input left", tc->name);
				continue;
			}
			if (st == MILTER_READ_FRAME)
				err = milter_decode_reply(&fr, &r);
			else
				over = 1;
			if (err == MILTER_OK) {
				cr_assert(got > 0);
				w = t_render(&r, res + len, cap - len);
			} else {
				w = snprintf(res + len, cap - len, "error: %s\n", milter_strerror(err));
				over = 1;
			}
			cr_assert(w > 0 && (size_t)w < cap - len);
			len += (size_t)w;
		}
		i += k;
	}
	if (!over && milter_reader_pending(&rd) > 0)
		snprintf(res + len, cap - len, "again\n");
	free(in);
}

static const struct t_case t_cases[] = {
	{ "verdicts", B("\0\0\0\1c" "\0\0\0\1a" "\0\0\0\1r" "\0\0\0\1t" "\0\0\0\1d"
			"\0\0\0\1p" "\0\0\0\1s" "\0\0\0\1" "4" "\0\0\0\1f"),
		"c\na\nr\nt\nd\np\ns\n4\nf\n" },
	{ "verdict with data", B("\0\0\0\2cx"), "error: unexpected data after the reply\n" },
	{ "unknown reply", B("\0\0\0\1Z"), "error: unknown reply command\n" },
	{ "setsymlist alone", B("\0\0\0\2l\0"), "error: reply not expected after this command\n" },
	{ "empty frame", B("\0\0\0\0c"), "error: empty frame (length 0)\n" },
	{ "frame over the buffer", B("\0\0\1\1hX"), "error: frame too long\n" },
	{ "frame at the buffer", B("\0\0\1\0b"), "again\n" },
	{ "length cut", B("\0\0"), "again\n" },
	{ "frame cut", B("\0\0\0\5hX\0"), "again\n" },
	/* REPLYCODE */
	{ "replycode", B("\0\0\0\x19y" "554 5.7.1 Spam rejected\0"),
		"y 554 |5.7.1|Spam rejected| 1 |554 5.7.1 Spam rejected|\n" },
	{ "replycode tempfail no enh", B("\0\0\0\x0fy" "451 try later\0"),
		"y 451 ||try later| 1 |451 try later|\n" },
	{ "replycode code only", B("\0\0\0\5y" "550\0"), "y 550 ||| 1 |550|\n" },
	{ "replycode multiline", B("\0\0\0\x28y" "550-5.7.1 first\r\n550 5.7.1 second line\0"),
		"y 550 |5.7.1|first| 2 |550-5.7.1 first\r\n550 5.7.1 second line|\n" },
	{ "replycode trailing crlf", B("\0\0\0\x0dy" "550 5.0.0\r\n\0"),
		"y 550 |5.0.0|| 1 |550 5.0.0|\n" },
	{ "replycode 2xx", B("\0\0\0\x0ay" "250 fine\0"), "error: bad reply code or text\n" },
	{ "replycode class mismatch", B("\0\0\0\x0ey" "550 4.7.1 no\0"),
		"error: bad reply code or text\n" },
	{ "replycode code changes", B("\0\0\0\x0ey" "550-a\r\n551 b\0"),
		"error: bad reply code or text\n" },
	{ "replycode last with dash", B("\0\0\0\x07y" "550-a\0"), "error: bad reply code or text\n" },
	{ "replycode middle with space", B("\0\0\0\x0ey" "550 a\r\n550 b\0"),
		"error: bad reply code or text\n" },
	{ "replycode bare lf", B("\0\0\0\x0dy" "550-a\n550 b\0"), "error: bad reply code or text\n" },
	{ "replycode bare cr", B("\0\0\0\x09y" "550 a\rb\0"), "error: bad reply code or text\n" },
	{ "replycode control", B("\0\0\0\x07y" "550 \x01\0"), "error: bad reply code or text\n" },
	{ "replycode 8bit", B("\0\0\0\x07y" "550 \xe9\0"), "error: bad reply code or text\n" },
	{ "replycode letters", B("\0\0\0\x07y" "5x0 a\0"), "error: bad reply code or text\n" },
	{ "replycode no nul", B("\0\0\0\x06y" "550 a"), "error: string without its NUL\n" },
	{ "replycode after nul", B("\0\0\0\x08y" "550 a\0x"), "error: unexpected data after the reply\n" },
	{ "replycode empty", B("\0\0\0\1y"), "error: reply data too short\n" },
	/* headers */
	{ "addheader", B("\0\0\0\x11h" "X-Spam\0" "yes, 5.1\0"), "h 0 |X-Spam|yes, 5.1|\n" },
	{ "addheader folded lf", B("\0\0\0\x0ah" "X\0" "a\n\tb c\0"), "h 0 |X|a\n\tb c|\n" },
	{ "addheader folded crlf", B("\0\0\0\x09h" "X\0" "a\r\n b\0"), "h 0 |X|a\r\n b|\n" },
	{ "addheader empty value", B("\0\0\0\4h" "X\0\0"), "h 0 |X||\n" },
	{ "addheader injection lf", B("\0\0\0\x0fh" "X\0" "a\nBcc: evil\0"),
		"error: bad header value (CR/LF, control octet or line too long)\n" },
	{ "addheader injection crlf", B("\0\0\0\x0ah" "X\0" "a\r\nBcc\0"),
		"error: bad header value (CR/LF, control octet or line too long)\n" },
	{ "addheader bare cr", B("\0\0\0\x07h" "X\0" "a\rb\0"),
		"error: bad header value (CR/LF, control octet or line too long)\n" },
	{ "addheader lf at end", B("\0\0\0\x06h" "X\0" "a\n\0"),
		"error: bad header value (CR/LF, control octet or line too long)\n" },
	{ "addheader control", B("\0\0\0\x06h" "X\0" "\x1b" "a\0"),
		"error: bad header value (CR/LF, control octet or line too long)\n" },
	{ "addheader trailing", B("\0\0\0\x08h" "X:Y\0" "a\0" "\0"),
		"error: unexpected data after the reply\n" },
	{ "addheader name colon 2", B("\0\0\0\x07h" "X:Y\0" "a\0"), "error: bad header name\n" },
	{ "addheader name space", B("\0\0\0\x07h" "X Y\0" "a\0"), "error: bad header name\n" },
	{ "addheader name empty", B("\0\0\0\x04h" "\0" "a\0"), "error: bad header name\n" },
	{ "addheader no value", B("\0\0\0\x03h" "X\0"), "error: reply data too short\n" },
	{ "addheader value no nul", B("\0\0\0\x04h" "X\0a"), "error: string without its NUL\n" },
	{ "insheader", B("\0\0\0\x09i" "\0\0\0\x02" "X\0" "v\0"), "i 2 |X|v|\n" },
	{ "chgheader delete", B("\0\0\0\x09m" "\0\0\0\x01" "Xy\0" "\0"), "m 1 |Xy||\n" },
	{ "chgheader short index", B("\0\0\0\x03m" "\0\0"), "error: reply data too short\n" },
	/* envelope */
	{ "addrcpt", B("\0\0\0\x09+" "<x@y.z>\0"), "+ |<x@y.z>||\n" },
	{ "delrcpt", B("\0\0\0\x09-" "<x@y.z>\0"), "- |<x@y.z>||\n" },
	{ "addrcpt_par", B("\0\0\0\x10" "2" "<x@y.z>\0" "NOTIFY\0"), "2 |<x@y.z>|NOTIFY|\n" },
	{ "addrcpt_par no args", B("\0\0\0\x09" "2" "<x@y.z>\0"), "2 |<x@y.z>||\n" },
	{ "chgfrom", B("\0\0\0\x0c" "e" "<>\0" "SIZE=10\0"), "e |<>|SIZE=10|\n" },
	{ "addrcpt empty", B("\0\0\0\x02+\0"), "error: bad address or ESMTP args\n" },
	{ "addrcpt crlf", B("\0\0\0\x08+" "<a>\r\nX\0"), "error: bad address or ESMTP args\n" },
	{ "chgfrom bad args", B("\0\0\0\x06" "e" "<>\0" "\n\0"), "error: bad address or ESMTP args\n" },
	{ "addrcpt two strings", B("\0\0\0\x05+" "a\0b\0"), "error: unexpected data after the reply\n" },
	{ "chgfrom three strings", B("\0\0\0\x07" "e" "a\0b\0c\0"),
		"error: unexpected data after the reply\n" },
	/* quarantine, body */
	{ "quarantine", B("\0\0\0\x0bq" "spam 9.5\0" "\0"), "error: unexpected data after the reply\n" },
	{ "quarantine 2", B("\0\0\0\x0aq" "spam 9.5\0"), "q |spam 9.5|\n" },
	{ "quarantine empty", B("\0\0\0\x02q\0"), "error: bad quarantine reason or macro list\n" },
	{ "quarantine control", B("\0\0\0\x04q" "a\n\0"), "error: bad quarantine reason or macro list\n" },
	{ "replbody", B("\0\0\0\x05" "b" "a\0\r\n"), "b 4\n" },
	{ "replbody empty", B("\0\0\0\x01" "b"), "b 0\n" },
	/* OPTNEG */
	{ "optneg", B("\0\0\0\x0dO" "\0\0\0\x06" "\0\0\0\x11" "\0\0\x10\x00"), "O 6 11 1000\n" },
	{ "optneg symlists", B("\0\0\0\x2dO" "\0\0\0\x06" "\0\0\0\x00" "\0\0\0\x00"
			"\0\0\0\x00" "j {daemon_name}\0" "\0\0\0\x05" "i\0"
			"\0\0\0\x09" "x\0"),
		"O 6 0 0 0=|j {daemon_name}| 5=|i|\n" },
	{ "optneg short", B("\0\0\0\x0cO" "\0\0\0\x06" "\0\0\0\0" "\0\0\0"),
		"error: reply data too short\n" },
	{ "optneg symlist cut", B("\0\0\0\x0fO" "\0\0\0\x06" "\0\0\0\0" "\0\0\0\0" "\0\0"),
		"error: reply data too short\n" },
	{ "optneg symlist no nul", B("\0\0\0\x12O" "\0\0\0\x06" "\0\0\0\0" "\0\0\0\0"
			"\0\0\0\1" "j"), "error: string without its NUL\n" },
	{ "optneg symlist control", B("\0\0\0\x13O" "\0\0\0\x06" "\0\0\0\0" "\0\0\0\0"
			"\0\0\0\1" "\t\0"), "error: bad quarantine reason or macro list\n" },
	/* Several frames, then an error stops the stream. */
	{ "mods then verdict", B("\0\0\0\x09h" "X-A\0" "1 2\0" "\0\0\0\x01p"
			"\0\0\0\x06q" "held\0" "\0\0\0\x01" "a" "\0\0\0\0" "c"),
		"h 0 |X-A|1 2|\np\nq |held|\na\nerror: empty frame (length 0)\n" },
};

Test(milter_reader, table)
{
	static const size_t chunks[] = { 0, 1, 2, 3, 5, 7, 13 };
	char want[T_OUT_MAX], got[T_OUT_MAX];

	for (size_t c = 0; c < sizeof(t_cases) / sizeof(t_cases[0]); c++) {
		t_run(&t_cases[c], 0, want, sizeof(want));
		cr_assert_str_eq(want, t_cases[c].want, "%s (whole)", t_cases[c].name);
		for (size_t k = 1; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
			t_run(&t_cases[c], chunks[k], got, sizeof(got));
			cr_assert_str_eq(got, want, "%s (chunks of %zu)", t_cases[c].name,
					chunks[k]);
		}
	}
}

Test(milter_reader, refuses_on_length_alone)
{
	uint8_t buf[MILTER_FRAME_MIN];
	struct milter_reader rd;
	enum milter_read_status st;
	enum milter_err err;
	struct milter_frame fr;
	/* A 16 MiB frame announced: refused after its 4 length octets, with
	 * nothing buffered; the reader stays refused until reset. */
	static const uint8_t in[] = { 0x01, 0x00, 0x00, 0x00, 'b', 'x' };

	milter_reader_init(&rd, buf, sizeof(buf));
	cr_assert_eq(milter_reader_feed(&rd, in, sizeof(in), &st, &fr, &err), 4);
	cr_assert_eq(st, MILTER_READ_ERROR);
	cr_assert_eq(err, MILTER_E_FRAME_LONG);
	cr_assert_eq(milter_reader_feed(&rd, in + 4, 2, &st, &fr, &err), 0);
	cr_assert_eq(st, MILTER_READ_ERROR);
	cr_assert_eq(err, MILTER_E_FRAME_LONG);
	milter_reader_reset(&rd);
	cr_assert_eq(milter_reader_pending(&rd), 0);
	static const uint8_t ok[] = { 0, 0, 0, 1, 'c' };
	cr_assert_eq(milter_reader_feed(&rd, ok, sizeof(ok), &st, &fr, &err), 5);
	cr_assert_eq(st, MILTER_READ_FRAME);
	cr_assert_eq(fr.cmd, 'c');
	cr_assert_eq(fr.len, 0);
}

Test(milter_reader, zero_copy_and_pending)
{
	uint8_t buf[64];
	struct milter_reader rd;
	enum milter_read_status st;
	enum milter_err err;
	struct milter_frame fr;
	static const uint8_t in[] = { 0, 0, 0, 3, 'b', 'x', 'y', 0, 0 };

	milter_reader_init(&rd, buf, sizeof(buf));
	/* A whole frame in the input points into it; the next frame's first
	 * octets stay pending. */
	cr_assert_eq(milter_reader_feed(&rd, in, sizeof(in), &st, &fr, &err), 7);
	cr_assert_eq(st, MILTER_READ_FRAME);
	cr_assert_eq(fr.data, in + 5);
	cr_assert_eq(fr.len, 2);
	cr_assert_eq(milter_reader_feed(&rd, in + 7, 2, &st, &fr, &err), 2);
	cr_assert_eq(st, MILTER_READ_AGAIN);
	cr_assert_eq(milter_reader_pending(&rd), 2);
	/* Split: the frame comes out of the reader's own buffer. */
	milter_reader_reset(&rd);
	cr_assert_eq(milter_reader_feed(&rd, in, 6, &st, &fr, &err), 6);
	cr_assert_eq(st, MILTER_READ_AGAIN);
	cr_assert_eq(milter_reader_pending(&rd), 6);
	cr_assert_eq(milter_reader_feed(&rd, in + 6, 3, &st, &fr, &err), 1);
	cr_assert_eq(st, MILTER_READ_FRAME);
	cr_assert_eq(fr.data, buf + 1);
	cr_assert(memcmp(fr.data, "xy", 2) == 0);
}

/* ---- Negotiation and session rules ---- */

Test(milter_negotiate, cases)
{
	const struct milter_neg offer = { 6, MILTER_F_ADDHDRS | MILTER_F_CHGHDRS |
		MILTER_F_QUARANTINE, MILTER_P_NOUNKNOWN | MILTER_P_NODATA | MILTER_P_NR_HDR |
		MILTER_P_NR_CONN | MILTER_P_SKIP | MILTER_P_HDR_LEADSPC };
	struct milter_neg agreed;
	struct milter_optneg r;

	memset(&r, 0, sizeof(r));
	r.version = 6;
	r.actions = MILTER_F_ADDHDRS;
	r.proto = MILTER_P_NR_CONN | MILTER_P_NODATA;
	cr_assert_eq(milter_negotiate(&offer, &r, &agreed), MILTER_OK);
	cr_assert_eq(agreed.version, 6);
	cr_assert_eq(agreed.actions, MILTER_F_ADDHDRS);
	cr_assert_eq(agreed.proto, MILTER_P_NR_CONN | MILTER_P_NODATA);
	/* Versions 2..6 only, and not above ours. */
	r.version = 1;
	cr_assert_eq(milter_negotiate(&offer, &r, &agreed), MILTER_E_VERSION);
	r.version = 7;
	cr_assert_eq(milter_negotiate(&offer, &r, &agreed), MILTER_E_VERSION);
	const struct milter_neg offer4 = { 4, offer.actions, offer.proto };
	r.version = 6;
	cr_assert_eq(milter_negotiate(&offer4, &r, &agreed), MILTER_E_VERSION);
	/* A version 2 filter: only version 2's flags survive. */
	r.version = 2;
	r.proto = MILTER_P_NR_HDR | MILTER_P_NODATA;
	cr_assert_eq(milter_negotiate(&offer, &r, &agreed), MILTER_OK);
	cr_assert_eq(agreed.proto, MILTER_P_NR_HDR);
	/* Actions not offered: refused, as Postfix does. */
	r.version = 6;
	r.proto = 0;
	r.actions = MILTER_F_CHGBODY;
	cr_assert_eq(milter_negotiate(&offer, &r, &agreed), MILTER_E_ACTIONS);
	/* A no-reply flag not offered: we would wait for a reply forever. */
	r.actions = 0;
	r.proto = MILTER_P_NR_RCPT;
	cr_assert_eq(milter_negotiate(&offer, &r, &agreed), MILTER_E_PROTO);
	r.proto = MILTER_P_RCPT_REJ;
	cr_assert_eq(milter_negotiate(&offer, &r, &agreed), MILTER_E_PROTO);
	/* A NO* flag not offered is dropped: we send that event anyway. */
	r.proto = MILTER_P_NOHELO | MILTER_P_NODATA;
	cr_assert_eq(milter_negotiate(&offer, &r, &agreed), MILTER_OK);
	cr_assert_eq(agreed.proto, MILTER_P_NODATA);
}

Test(milter_rules, skipped_and_replies)
{
	uint32_t p = MILTER_P_NOHELO | MILTER_P_NR_RCPT | MILTER_P_NR_HDR;

	cr_assert(milter_cmd_skipped(MILTER_CMD_HELO, p));
	cr_assert(!milter_cmd_skipped(MILTER_CMD_MAIL, p));
	cr_assert(!milter_cmd_skipped(MILTER_CMD_BODYEOB, MILTER_P_V6_MASK));
	cr_assert(milter_cmd_skipped(MILTER_CMD_DATA, MILTER_P_NODATA));
	cr_assert(milter_cmd_wants_reply(MILTER_CMD_MAIL, p));
	cr_assert(!milter_cmd_wants_reply(MILTER_CMD_RCPT, p));
	cr_assert(!milter_cmd_wants_reply(MILTER_CMD_HEADER, p));
	cr_assert(milter_cmd_wants_reply(MILTER_CMD_BODYEOB, MILTER_P_V6_MASK));
	cr_assert(milter_cmd_wants_reply(MILTER_CMD_OPTNEG, MILTER_P_V6_MASK));
	cr_assert(!milter_cmd_wants_reply(MILTER_CMD_MACRO, 0));
	cr_assert(!milter_cmd_wants_reply(MILTER_CMD_ABORT, 0));
	cr_assert(!milter_cmd_wants_reply(MILTER_CMD_QUIT, 0));
	cr_assert(!milter_cmd_wants_reply(MILTER_CMD_QUIT_NC, 0));
	cr_assert(milter_reply_final(MILTER_R_REPLYCODE));
	cr_assert(milter_reply_final(MILTER_R_CONTINUE));
	cr_assert(!milter_reply_final(MILTER_R_PROGRESS));
	cr_assert(!milter_reply_final(MILTER_R_ADDHEADER));
	cr_assert(!milter_reply_final(MILTER_R_QUARANTINE));
}

Test(milter_rules, reply_check)
{
	const struct milter_neg ag = { 6, MILTER_F_ADDHDRS | MILTER_F_QUARANTINE,
		MILTER_P_SKIP };
	const struct milter_neg none = { 6, 0, 0 };

	cr_assert_eq(milter_reply_check(MILTER_CMD_OPTNEG, MILTER_R_OPTNEG, &ag), MILTER_OK);
	cr_assert_eq(milter_reply_check(MILTER_CMD_OPTNEG, MILTER_R_CONTINUE, &ag),
			MILTER_E_UNEXPECTED);
	cr_assert_eq(milter_reply_check(MILTER_CMD_MAIL, MILTER_R_OPTNEG, &ag),
			MILTER_E_UNEXPECTED);
	/* Verdicts after any answered event. */
	cr_assert_eq(milter_reply_check(MILTER_CMD_CONNECT, MILTER_R_ACCEPT, &ag), MILTER_OK);
	cr_assert_eq(milter_reply_check(MILTER_CMD_RCPT, MILTER_R_REPLYCODE, &ag), MILTER_OK);
	cr_assert_eq(milter_reply_check(MILTER_CMD_HEADER, MILTER_R_CONTINUE, &ag), MILTER_OK);
	cr_assert_eq(milter_reply_check(MILTER_CMD_BODYEOB, MILTER_R_DISCARD, &ag), MILTER_OK);
	/* Nothing after the commands that are never answered. */
	cr_assert_eq(milter_reply_check(MILTER_CMD_MACRO, MILTER_R_CONTINUE, &ag),
			MILTER_E_UNEXPECTED);
	cr_assert_eq(milter_reply_check(MILTER_CMD_ABORT, MILTER_R_CONTINUE, &ag),
			MILTER_E_UNEXPECTED);
	/* Modifications and progress at end of body only, with their flag. */
	cr_assert_eq(milter_reply_check(MILTER_CMD_BODYEOB, MILTER_R_ADDHEADER, &ag), MILTER_OK);
	cr_assert_eq(milter_reply_check(MILTER_CMD_BODYEOB, MILTER_R_INSHEADER, &ag), MILTER_OK);
	cr_assert_eq(milter_reply_check(MILTER_CMD_BODYEOB, MILTER_R_QUARANTINE, &ag), MILTER_OK);
	cr_assert_eq(milter_reply_check(MILTER_CMD_BODYEOB, MILTER_R_PROGRESS, &none), MILTER_OK);
	cr_assert_eq(milter_reply_check(MILTER_CMD_RCPT, MILTER_R_ADDHEADER, &ag),
			MILTER_E_UNEXPECTED);
	cr_assert_eq(milter_reply_check(MILTER_CMD_MAIL, MILTER_R_PROGRESS, &ag),
			MILTER_E_UNEXPECTED);
	const enum milter_reply_kind mods[] = { MILTER_R_ADDHEADER, MILTER_R_INSHEADER,
		MILTER_R_CHGHEADER, MILTER_R_ADDRCPT, MILTER_R_ADDRCPT_PAR, MILTER_R_DELRCPT,
		MILTER_R_CHGFROM, MILTER_R_REPLBODY, MILTER_R_QUARANTINE };
	for (size_t i = 0; i < sizeof(mods) / sizeof(mods[0]); i++)
		cr_assert_eq(milter_reply_check(MILTER_CMD_BODYEOB, mods[i], &none),
				MILTER_E_NOT_NEGOTIATED, "%c", mods[i]);
	/* SKIP after a body chunk, when agreed. */
	cr_assert_eq(milter_reply_check(MILTER_CMD_BODY, MILTER_R_SKIP, &ag), MILTER_OK);
	cr_assert_eq(milter_reply_check(MILTER_CMD_BODY, MILTER_R_SKIP, &none),
			MILTER_E_NOT_NEGOTIATED);
	cr_assert_eq(milter_reply_check(MILTER_CMD_RCPT, MILTER_R_SKIP, &ag),
			MILTER_E_UNEXPECTED);
	cr_assert_eq(milter_reply_check(MILTER_CMD_BODYEOB, MILTER_R_SETSYMLIST, &ag),
			MILTER_E_UNEXPECTED);
}

Test(milter_helpers, header_format)
{
	struct milter_hdr h = { 0, S("X-Spam"), S("yes\n\tscore=5") };
	char out[64];

	cr_assert_eq(milter_header_format(&h, 0, out, sizeof(out)), 23);
	cr_assert(memcmp(out, "X-Spam: yes\r\n\tscore=5\r\n", 23) == 0);
	h.value = S(" a\r\n b");
	cr_assert_eq(milter_header_format(&h, 1, out, sizeof(out)), 15);
	cr_assert(memcmp(out, "X-Spam: a\r\n b\r\n", 15) == 0);
	for (size_t cap = 0; cap < 15; cap++)
		cr_assert_eq(milter_header_format(&h, 1, out, cap), -MILTER_E_NOSPACE);
}

Test(milter_helpers, names)
{
	cr_assert_str_eq(milter_cmd_name('M'), "SMFIC_MAIL");
	cr_assert_str_eq(milter_reply_name('y'), "SMFIR_REPLYCODE");
	cr_assert_str_eq(milter_reply_name('Z'), "unknown");
	for (int e = MILTER_OK; e <= MILTER_E_NOSPACE; e++)
		cr_assert_str_neq(milter_strerror((enum milter_err)e), "unknown error");
}
