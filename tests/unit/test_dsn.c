/* SPDX-License-Identifier: MIT */
/*
 * Tests for proto/dsn.c: table-driven DSNs (expiry, delay warning, 5xx with
 * hostile diagnostics, awkward originals). Every output is checked for the
 * wire invariants (CRLF only, no "." line, lines <= 998), then un-stuffed and
 * split by a small MIME parser here, and its parts compared field by field.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/dsn.h"
#include "proto/qid.h"

#define NOW ((time_t)1700000000)     /* Tue, 14 Nov 2023 22:13:20 +0000 */
#define DAY ((time_t)86400)
#define SEED "ABCDEF012345.1700000000"
#define BND0 SEED "/mx.relay.test"   /* first-choice boundary */
#define D_NOW "Tue, 14 Nov 2023 22:13:20 +0000"
#define D_ARR5 "Thu, 9 Nov 2023 22:13:20 +0000"
#define D_LAST "Tue, 14 Nov 2023 22:03:20 +0000"
#define D_UNTIL "Sun, 19 Nov 2023 18:13:20 +0000"
#define MAX_PARTS 8

/* --- helpers: invariants, un-stuffing, a tiny MIME splitter --- */

static void check_wire(const char *p, size_t n, const char *name)
{
	size_t i, line = 0;

	cr_assert(n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n',
			"%s: does not end in CRLF", name);
	cr_assert(!(n >= 3 && memcmp(p, ".\r\n", 3) == 0), "%s: starts with .", name);
	cr_assert(memmem(p, n, "\r\n.\r\n", 5) == NULL, "%s: has CRLF.CRLF", name);
	for (i = 0; i < n; i++) {
		if (p[i] == '\n') {
			cr_assert(i > 0 && p[i - 1] == '\r', "%s: bare LF at %zu", name, i);
			cr_assert(i - line - 1 <= DSN_LINE_MAX, "%s: line of %zu at %zu",
					name, i - line - 1, line);
			line = i + 1;
		} else if (p[i] == '\r') {
			cr_assert(i + 1 < n && p[i + 1] == '\n', "%s: bare CR at %zu", name, i);
		}
	}
}

/* Undo RFC 5321 4.5.2 as a receiver does. Returns a malloc'd copy. */
static char *unstuff(const char *p, size_t n, size_t *outlen)
{
	char *o = malloc(n + 1);
	size_t i = 0, k = 0;
	int bol = 1;

	cr_assert(o != NULL);
	for (i = 0; i < n; i++) {
		if (bol && p[i] == '.') {
			bol = 0;
			continue;
		}
		bol = p[i] == '\n';
		o[k++] = p[i];
	}
	o[k] = '\0';
	*outlen = k;
	return o;
}

struct span {
	const char *p;
	size_t n;
};

struct part {
	struct span hdr;  /* header section incl. its last CRLF */
	struct span body;
};

struct mime {
	struct span hdr;
	char boundary[128];
	unsigned nparts;
	struct part part[MAX_PARTS];
};

/* Split at the first empty line. */
static void split_entity(struct span e, struct span *hdr, struct span *body)
{
	const char *s;

	if (e.n >= 2 && e.p[0] == '\r' && e.p[1] == '\n') {
		*hdr = (struct span){ e.p, 0 };
		*body = (struct span){ e.p + 2, e.n - 2 };
		return;
	}
	s = memmem(e.p, e.n, "\r\n\r\n", 4);
	if (s == NULL) {
		*hdr = e;
		*body = (struct span){ e.p + e.n, 0 };
		return;
	}
	*hdr = (struct span){ e.p, (size_t)(s - e.p) + 2 };
	*body = (struct span){ s + 4, e.n - (size_t)(s - e.p) - 4 };
}

/* Value of header field name in hdr, unfolded (CRLF before WSP removed);
 * malloc'd; NULL when absent. Asserts it occurs at most once. */
static char *hdr_get(struct span hdr, const char *name)
{
	size_t nl = strlen(name), i = 0;
	char *val = NULL;

	while (i < hdr.n) {
		const char *e = memmem(hdr.p + i, hdr.n - i, "\r\n", 2);
		size_t end = e ? (size_t)(e - hdr.p) : hdr.n, j;

		/* extend over continuation lines */
		while (end + 2 < hdr.n && (hdr.p[end + 2] == ' ' || hdr.p[end + 2] == '\t')) {
			e = memmem(hdr.p + end + 2, hdr.n - end - 2, "\r\n", 2);
			end = e ? (size_t)(e - hdr.p) : hdr.n;
		}
		if (end - i > nl && strncasecmp(hdr.p + i, name, nl) == 0 &&
				hdr.p[i + nl] == ':') {
			size_t k = 0;

			cr_assert(val == NULL, "field %s twice", name);
			val = malloc(end - i + 1);
			cr_assert(val != NULL);
			j = i + nl + 1;
			while (j < end && hdr.p[j] == ' ')
				j++;
			for (; j < end; j++) {
				if (hdr.p[j] == '\r' && j + 1 < end && hdr.p[j + 1] == '\n') {
					j++;
					continue;
				}
				val[k++] = hdr.p[j];
			}
			val[k] = '\0';
		}
		i = end + 2;
	}
	return val;
}

static void want_hdr(struct span hdr, const char *name, const char *want)
{
	char *v = hdr_get(hdr, name);

	if (want == NULL) {
		cr_assert(v == NULL, "%s present: %s", name, v);
		return;
	}
	cr_assert(v != NULL, "%s missing", name);
	cr_assert_str_eq(v, want, "%s", name);
	free(v);
}

static int is_delim(const char *line, size_t n, const char *b, int *close)
{
	size_t bl = strlen(b);

	if (n < 2 + bl || line[0] != '-' || line[1] != '-' || memcmp(line + 2, b, bl) != 0)
		return 0;
	if (n == 2 + bl) {
		*close = 0;
		return 1;
	}
	cr_assert(n == 4 + bl && line[2 + bl] == '-' && line[3 + bl] == '-',
			"line starts with the boundary but is not a delimiter");
	*close = 1;
	return 1;
}

/* Parse an un-stuffed DSN: top header, boundary, parts. */
static void mime_parse(const char *p, size_t n, struct mime *m)
{
	struct span body, all = { p, n };
	char *ct, *b, *q;
	size_t i, part_start = 0;
	int in_part = 0, closed = 0;

	memset(m, 0, sizeof(*m));
	split_entity(all, &m->hdr, &body);
	ct = hdr_get(m->hdr, "Content-Type");
	cr_assert(ct != NULL);
	b = strstr(ct, "boundary=\"");
	cr_assert(b != NULL, "no boundary in %s", ct);
	b += strlen("boundary=\"");
	q = strchr(b, '"');
	cr_assert(q != NULL && q - b > 0 && q - b <= 70);
	memcpy(m->boundary, b, (size_t)(q - b));
	m->boundary[q - b] = '\0';
	free(ct);

	for (i = 0; i < body.n;) {
		const char *e = memmem(body.p + i, body.n - i, "\r\n", 2);
		size_t end = (size_t)(e - body.p), len = end - i;
		int close;

		cr_assert(e != NULL);
		cr_assert(!closed, "text after the close delimiter");
		if (is_delim(body.p + i, len, m->boundary, &close)) {
			if (in_part) {
				struct span ent;

				cr_assert(i >= part_start + 2);
				ent = (struct span){ body.p + part_start, i - 2 - part_start };
				cr_assert(m->nparts < MAX_PARTS);
				split_entity(ent, &m->part[m->nparts].hdr,
						&m->part[m->nparts].body);
				m->nparts++;
			}
			in_part = !close;
			closed = close;
			part_start = end + 2;
		}
		i = end + 2;
	}
	cr_assert(closed, "no close delimiter");
}

/* Delivery-status content as groups of unfolded "Name: value" lines joined
 * by "\n", groups by "\n\n": easy to compare with a literal. */
static char *ds_flatten(struct span s)
{
	char *o = malloc(s.n + 1);
	size_t i, k = 0;

	cr_assert(o != NULL);
	for (i = 0; i < s.n; i++) {
		if (s.p[i] == '\r' && i + 1 < s.n && s.p[i + 1] == '\n') {
			if (i + 2 < s.n && (s.p[i + 2] == ' ' || s.p[i + 2] == '\t')) {
				i++; /* unfold */
				continue;
			}
			o[k++] = '\n';
			i++;
			continue;
		}
		o[k++] = s.p[i];
	}
	o[k] = '\0';
	return o;
}

/* --- the cases --- */

#define ORIG_STD_HDRS \
	"Received: from client.test (192.0.2.1)\r\n" \
	"\tby mx.relay.test (etrnd) with ESMTP id ABCDEF012345;\r\n" \
	"\tTue, 9 Nov 2023 22:13:20 +0000\r\n" \
	"From: Sender <s@sender.test>\r\n" \
	"To: u@cust.test\r\n" \
	"Subject: hello\r\n"
static const char orig_std[] = ORIG_STD_HDRS "\r\nBody line\r\n..leading dot\r\n..\r\nend\r\n";
static const char orig_std_unstuffed[] = ORIG_STD_HDRS "\r\nBody line\r\n.leading dot\r\n.\r\nend\r\n";

static const char orig_collide[] =
	"Received: x\r\n"
	"Subject: --" BND0 "\r\n"
	"\r\n"
	"--" BND0 "\r\n"
	"--" BND0 "--\r\n";

static const char orig_8bit[] =
	"Received: x\r\nSubject: caf\xc3\xa9\r\n\r\nd\xc3\xa9j\xc3\xa0 vu\r\n";

static const char orig_nosep[] = "Received: x\r\nSubject: no body\r\nX-Last: partial";
static const char orig_hdr_body[] = "\r\nonly a body\r\n";
static const char orig_junk[] =
	"Received: x\r\nX-CR: a\rb\r\nX-LF: a\nb\r\n\r\nbody\nbare LF\r\n.\rx\r\nnul\0here\r\r\n"
	"line\n.\n..\r\n";

/* bare CR and LF become line breaks; the lone stored "." stays "." */
static const char want_junk[] =
	"Received: x\r\nX-CR: a\r\nb\r\nX-LF: a\r\nb\r\n\r\nbody\r\nbare LF\r\n.\r\n"
	"x\r\nnul\0here\r\n\r\nline\r\n.\r\n..\r\n";

static char *orig_long_hdr;   /* X-Long 5000 octets, no space; Subject 3000 with spaces */
static size_t orig_long_hdr_len;
static char *orig_long_body;  /* a 5000-octet body line starting with ".." */
static size_t orig_long_body_len;
static char *long_subject;

static void make_long(void)
{
	size_t i, k = 0;
	char *p;

	if (orig_long_hdr)
		return;
	long_subject = malloc(3001);
	cr_assert(long_subject != NULL);
	for (i = 0; i < 3000; i++)
		long_subject[i] = (i % 7 == 6) ? ' ' : 'w';
	long_subject[3000] = '\0';
	p = orig_long_hdr = malloc(20000);
	cr_assert(p != NULL);
	k += (size_t)sprintf(p + k, "Received: x\r\nX-Long: ");
	memset(p + k, 'a', 5000);
	k += 5000;
	k += (size_t)sprintf(p + k, "\r\nSubject: %s\r\n\r\nbody\r\n", long_subject);
	orig_long_hdr_len = k;

	p = orig_long_body = malloc(20000);
	cr_assert(p != NULL);
	k = (size_t)sprintf(p, "Received: x\r\n\r\n..");
	memset(p + k, 'b', 5000);
	k += 5000;
	/* a '.' exactly where a cut starts a new line */
	p[k - 5000 + DSN_LINE_MAX - 2] = '.';
	k += (size_t)sprintf(p + k, "\r\nend\r\n");
	orig_long_body_len = k;
}

static const struct dsn_rcpt r_expired = {
	"u@cust.test", 11, DSN_ACTION_FAILED, "4.4.7", "mx.cust.test",
	"421 4.4.2 mx.cust.test Error: timeout exceeded", 46, NOW - 600,
};

static const struct dsn_rcpt r_three[] = {
	{ "a@cust.test", 11, DSN_ACTION_FAILED, "4.4.7", NULL, NULL, 0, 0 },
	{ "b+tag@cust.test", 15, DSN_ACTION_FAILED, "4.4.1", "mx2.cust.test",
	  "connect to mx2.cust.test[192.0.2.9]:25: Connection refused", 59, NOW - 600 },
	{ "j\xc3\xb6+x=y@cust.test", 17, DSN_ACTION_FAILED, "4.4.7", NULL, NULL, 0, 0 },
};

/* Final-Recipient in utf-8-addr-xtext (RFC 6533): 3- and 4-byte
 * sequences as code points; an overlong form, a surrogate, a code point
 * past U+10FFFF, a lead byte no sequence starts with, a broken and a
 * truncated sequence each as U+FFFD per byte not taken; a control
 * character dropped; SP and '\\' escaped. */
#define U8(s) s, sizeof(s) - 1, DSN_ACTION_FAILED, "5.1.1", NULL, NULL, 0, 0
static const struct dsn_rcpt r_utf8[] = {
	{ U8("\xe6\x97\xa5\xf0\x9f\x98\x80@u.test") },
	{ U8("a\xc0\xaf" "b@u.test") },
	{ U8("c\xe0\x80\xaf" "d@u.test") },
	{ U8("e\xed\xa0\x80" "f@u.test") },
	{ U8("g\xe6\x41 \\\x01@u.test\xe6\x97") },
	{ U8("h\xf5\xf4\x90\x80\x80@u.test") },
};
#undef U8
#define U8_FAILED "\nAction: failed\nStatus: 5.1.1\n"

static const struct dsn_rcpt r_delayed = {
	"u@cust.test", 11, DSN_ACTION_DELAYED, "4.4.1", "mx.cust.test",
	"451 4.3.0 try later", 19, NOW - 600,
};

static const char diag_evil[] =
	".\r\n550-5.1.1 first\r\n.leading dot\r\nX-Injected: yes\r\n\r\n--" BND0
	"--\r\n\x01\x7f\xff\0tail";

static const struct dsn_rcpt r_evil[] = {
	{ "v\r\nBcc: x@evil.test", 19, DSN_ACTION_FAILED, "5.1.1",
	  "mx\r\nX-Host: evil", diag_evil, sizeof(diag_evil) - 1, NOW - 600 },
	{ ".dot@cust.test", 14, DSN_ACTION_FAILED, "5.7.1", NULL,
	  ".550 leading dot\r\n.", 19, 0 },
};

struct dsn_case {
	const char *name;
	const struct dsn_rcpt *rcpt;
	unsigned nrcpt;
	const char *sender;
	const char *orig;  /* NULL: the long originals, by long_kind */
	size_t orig_len;
	int long_kind;     /* 1: long header, 2: long body */
	int return_full;
	size_t return_max;
	time_t arrival;
	time_t retry_until;
	const char *want_subject;
	const char *want_to;
	unsigned want_nparts;
	const char *want_p3_type;  /* NULL: no part 3 */
	const char *want_p3;       /* exact un-stuffed part 3; NULL: skip */
	size_t want_p3_len;
	const char *want_report;   /* flattened delivery-status; NULL: skip */
	const char *want_text;     /* substring of the explanation; NULL: skip */
	unsigned want_flags;
	int want_bnd0;             /* 1: first-choice boundary expected */
};

#define S_FAIL "Undelivered Mail Returned to Sender"
#define S_DELAY "Delayed Mail (still being retried)"
#define T_HDRS "text/rfc822-headers"
#define T_FULL "message/rfc822"
#define PERMSG "Reporting-MTA: dns; mx.relay.test\nX-Etrnd-Queue-ID: ABCDEF012345\n" \
	"Arrival-Date: " D_ARR5 "\n"

static const struct dsn_case cases[] = {
	{ "expired_1rcpt", &r_expired, 1, "s@sender.test", orig_std, sizeof(orig_std) - 1,
	  0, 0, 0, NOW - 5 * DAY, 0, S_FAIL, "<s@sender.test>", 3, T_HDRS,
	  ORIG_STD_HDRS, 0,
	  PERMSG "\nFinal-Recipient: rfc822; u@cust.test\nAction: failed\nStatus: 4.4.7\n"
	  "Remote-MTA: dns; mx.cust.test\n"
	  "Diagnostic-Code: smtp; 421 4.4.2 mx.cust.test Error: timeout exceeded\n"
	  "Last-Attempt-Date: " D_LAST "\n",
	  "<u@cust.test>: message expired after 5 days in the queue; host mx.cust.test\r\n"
	  " said: 421 4.4.2 mx.cust.test Error: timeout exceeded (status 4.4.7)\r\n", 0, 1 },
	{ "expired_3rcpt", r_three, 3, "s@sender.test", orig_std, sizeof(orig_std) - 1,
	  0, 0, 0, NOW - 5 * DAY, 0, S_FAIL, "<s@sender.test>", 3, T_HDRS, NULL, 0,
	  PERMSG "\nFinal-Recipient: rfc822; a@cust.test\nAction: failed\nStatus: 4.4.7\n"
	  "\nFinal-Recipient: rfc822; b+tag@cust.test\nAction: failed\nStatus: 4.4.1\n"
	  "Remote-MTA: dns; mx2.cust.test\n"
	  "Diagnostic-Code: smtp; connect to mx2.cust.test[192.0.2.9]:25: Connection refused\n"
	  "Last-Attempt-Date: " D_LAST "\n"
	  "\nFinal-Recipient: utf-8; j\\x{F6}\\x{2B}x\\x{3D}y@cust.test\nAction: failed\n"
	  "Status: 4.4.7\n",
	  "It was held here for 5 days.\r\n", 0, 1 },
	{ "delayed", &r_delayed, 1, "s@sender.test", orig_std, sizeof(orig_std) - 1,
	  0, 0, 0, NOW - 4 * 3600, NOW + 5 * DAY - 4 * 3600, S_DELAY, "<s@sender.test>", 3,
	  T_HDRS, NULL, 0,
	  "Reporting-MTA: dns; mx.relay.test\nX-Etrnd-Queue-ID: ABCDEF012345\n"
	  "Arrival-Date: Tue, 14 Nov 2023 18:13:20 +0000\n"
	  "\nFinal-Recipient: rfc822; u@cust.test\nAction: delayed\nStatus: 4.4.1\n"
	  "Remote-MTA: dns; mx.cust.test\nDiagnostic-Code: smtp; 451 4.3.0 try later\n"
	  "Last-Attempt-Date: " D_LAST "\nWill-Retry-Until: " D_UNTIL "\n",
	  "Your message could not be delivered for 4 hours.\r\n"
	  "It will be retried until " D_UNTIL ".\r\n", 0, 1 },
	{ "bounce_5xx_injection", r_evil, 2, "s@x.test\r\nBcc: victim@evil.test",
	  orig_std, sizeof(orig_std) - 1, 0, 0, 0, NOW - 5 * DAY, 0, S_FAIL,
	  "<s@x.test Bcc: victim@evil.test>", 3, T_HDRS, NULL, 0,
	  PERMSG "\nFinal-Recipient: utf-8; vBcc:\\x{20}x@evil.test\nAction: failed\n"
	  "Status: 5.1.1\nRemote-MTA: dns; mx X-Host: evil\n"
	  "Diagnostic-Code: smtp; . 550-5.1.1 first .leading dot X-Injected: yes --"
	  BND0 "-- ?tail\n"
	  "Last-Attempt-Date: " D_LAST "\n"
	  "\nFinal-Recipient: rfc822; .dot@cust.test\nAction: failed\nStatus: 5.7.1\n"
	  "Diagnostic-Code: smtp; .550 leading dot .\n",
	  NULL, 0, 1 },
	{ "orig_dots_full", &r_expired, 1, "s@sender.test", orig_std, sizeof(orig_std) - 1,
	  0, 1, 0, NOW - 5 * DAY, 0, S_FAIL, "<s@sender.test>", 3, T_FULL,
	  orig_std_unstuffed, sizeof(orig_std_unstuffed) - 1, NULL,
	  "A copy of your message is attached below.", 0, 1 },
	{ "long_header_5000", &r_expired, 1, "s@sender.test", NULL, 0,
	  1, 0, 0, NOW - 5 * DAY, 0, S_FAIL, "<s@sender.test>", 3, T_HDRS, NULL, 0, NULL,
	  NULL, 0, 1 },
	{ "long_body_line_full", &r_expired, 1, "s@sender.test", NULL, 0,
	  2, 1, 0, NOW - 5 * DAY, 0, S_FAIL, "<s@sender.test>", 3, T_FULL, NULL, 0, NULL,
	  NULL, 0, 1 },
	{ "no_separator", &r_expired, 1, "s@sender.test", orig_nosep, sizeof(orig_nosep) - 1,
	  0, 0, 0, NOW - 5 * DAY, 0, S_FAIL, "<s@sender.test>", 3, T_HDRS,
	  "Received: x\r\nSubject: no body\r\nX-Last: partial\r\n", 0, NULL, NULL, 0, 1 },
	{ "body_only", &r_expired, 1, "s@sender.test", orig_hdr_body,
	  sizeof(orig_hdr_body) - 1, 0, 0, 0, NOW - 5 * DAY, 0, S_FAIL, "<s@sender.test>",
	  2, NULL, NULL, 0, NULL, NULL, 0, 1 },
	{ "empty_orig", &r_expired, 1, "s@sender.test", "", 0,
	  0, 1, 0, NOW - 5 * DAY, 0, S_FAIL, "<s@sender.test>", 2, NULL, NULL, 0, NULL,
	  NULL, 0, 1 },
	{ "full_over_cap", &r_expired, 1, "s@sender.test", orig_std, sizeof(orig_std) - 1,
	  0, 1, 60, NOW - 5 * DAY, 0, S_FAIL, "<s@sender.test>", 3, T_HDRS,
	  "Received: from client.test (192.0.2.1)\r\n", 0, NULL,
	  "The headers of your message are attached below.", 0, 1 },
	{ "headers_over_cap_cut_at_line", &r_expired, 1, "s@sender.test", orig_std,
	  sizeof(orig_std) - 1, 0, 0, 120, NOW - 5 * DAY, 0, S_FAIL, "<s@sender.test>", 3,
	  T_HDRS, "Received: from client.test (192.0.2.1)\r\n"
	  "\tby mx.relay.test (etrnd) with ESMTP id ABCDEF012345;\r\n", 0, NULL, NULL, 0, 1 },
	{ "boundary_collision", &r_expired, 1, "s@sender.test", orig_collide,
	  sizeof(orig_collide) - 1, 0, 1, 0, NOW - 5 * DAY, 0, S_FAIL, "<s@sender.test>", 3,
	  T_FULL, orig_collide, sizeof(orig_collide) - 1, NULL, NULL, 0, 0 },
	{ "orig_8bit_full", &r_expired, 1, "s\xc3\xa9@sender.test", orig_8bit,
	  sizeof(orig_8bit) - 1, 0, 1, 0, NOW - 5 * DAY, 0, S_FAIL, "<s??@sender.test>", 3,
	  T_FULL, orig_8bit, sizeof(orig_8bit) - 1, NULL, NULL, DSN_OUT_8BIT, 1 },
	{ "orig_junk_full", &r_expired, 1, "s@sender.test", orig_junk, sizeof(orig_junk) - 1,
	  0, 1, 0, NOW - 5 * DAY, 0, S_FAIL, "<s@sender.test>", 3, T_FULL,
	  want_junk, sizeof(want_junk) - 1, NULL, NULL, 0, 1 },
	{ "orig_junk_headers", &r_expired, 1, "s@sender.test", orig_junk,
	  sizeof(orig_junk) - 1, 0, 0, 0, NOW - 5 * DAY, 0, S_FAIL, "<s@sender.test>", 3,
	  T_HDRS, "Received: x\r\nX-CR: a b\r\nX-LF: a b\r\n", 0, NULL, NULL, 0, 1 },
	{ "utf8_recipients", r_utf8, 6, "s@sender.test", orig_std, sizeof(orig_std) - 1,
	  0, 0, 0, NOW - 5 * DAY, 0, S_FAIL, "<s@sender.test>", 3, T_HDRS, NULL, 0,
	  PERMSG "\nFinal-Recipient: utf-8; \\x{65E5}\\x{1F600}@u.test" U8_FAILED
	  "\nFinal-Recipient: utf-8; a\\x{FFFD}\\x{FFFD}b@u.test" U8_FAILED
	  "\nFinal-Recipient: utf-8; c\\x{FFFD}\\x{FFFD}\\x{FFFD}d@u.test" U8_FAILED
	  "\nFinal-Recipient: utf-8; e\\x{FFFD}\\x{FFFD}\\x{FFFD}f@u.test" U8_FAILED
	  "\nFinal-Recipient: utf-8; g\\x{FFFD}A\\x{20}\\x{5C}@u.test\\x{FFFD}\\x{FFFD}"
	  U8_FAILED
	  "\nFinal-Recipient: utf-8; h\\x{FFFD}\\x{FFFD}\\x{FFFD}\\x{FFFD}\\x{FFFD}@u.test"
	  U8_FAILED,
	  NULL, 0, 1 },
};

static struct dsn_input case_input(const struct dsn_case *c)
{
	struct dsn_input in = {
		.reporting_mta = "mx.relay.test",
		.postmaster = "MAILER-DAEMON@mx.relay.test",
		.qid = "ABCDEF012345",
		.sender = c->sender,
		.sender_len = strlen(c->sender),
		.arrival = c->arrival,
		.now = NOW,
		.retry_until = c->retry_until,
		.rcpt = c->rcpt,
		.nrcpt = c->nrcpt,
		.orig = c->orig,
		.orig_len = c->orig_len,
		.return_full = c->return_full,
		.return_max = c->return_max,
		.message_id_seed = SEED,
	};

	if (c->long_kind == 1) {
		in.orig = orig_long_hdr;
		in.orig_len = orig_long_hdr_len;
	} else if (c->long_kind == 2) {
		in.orig = orig_long_body;
		in.orig_len = orig_long_body_len;
	}
	return in;
}

/* Everything we generate (all but the returned original) is 7-bit. */
static void check_7bit(const struct mime *m)
{
	size_t i;
	unsigned k;

	for (i = 0; i < m->hdr.n; i++)
		cr_assert((unsigned char)m->hdr.p[i] < 0x80 && m->hdr.p[i] != 0);
	for (k = 0; k < m->nparts && k < 2; k++)
		for (i = 0; i < m->part[k].body.n; i++)
			cr_assert((unsigned char)m->part[k].body.p[i] < 0x80 &&
					m->part[k].body.p[i] != 0, "part %u octet %zu", k, i);
}

static void run_case(const struct dsn_case *c)
{
	struct dsn_input in;
	struct buf out;
	struct mime m;
	unsigned flags = 99;
	size_t ulen;
	char *u, *txt;
	int r;

	make_long();
	in = case_input(c);
	buf_init(&out, 0);
	buf_append(&out, "PREFIX", 6); /* dsn_build appends */
	r = dsn_build(&in, &out, &flags);
	cr_assert_eq(r, 0, "%s: rc %d", c->name, r);
	cr_assert(memcmp(out.data, "PREFIX", 6) == 0);
	cr_assert_eq(flags, c->want_flags, "%s: flags %u", c->name, flags);
	check_wire(out.data + 6, out.len - 6, c->name);

	u = unstuff(out.data + 6, out.len - 6, &ulen);
	mime_parse(u, ulen, &m);
	check_7bit(&m);
	cr_assert_eq(m.nparts, c->want_nparts, "%s: %u parts", c->name, m.nparts);
	if (c->want_bnd0)
		cr_assert_str_eq(m.boundary, BND0, "%s", c->name);
	else
		cr_assert_str_neq(m.boundary, BND0, "%s", c->name);

	/* top-level header, field by field */
	want_hdr(m.hdr, "Date", D_NOW);
	want_hdr(m.hdr, "From", "Mail Delivery System <MAILER-DAEMON@mx.relay.test>");
	want_hdr(m.hdr, "To", c->want_to);
	want_hdr(m.hdr, "Subject", c->want_subject);
	want_hdr(m.hdr, "Message-ID", "<" SEED "@mx.relay.test>");
	want_hdr(m.hdr, "Auto-Submitted", "auto-replied");
	want_hdr(m.hdr, "MIME-Version", "1.0");
	want_hdr(m.hdr, "Bcc", NULL);
	want_hdr(m.hdr, "X-Injected", NULL);
	want_hdr(m.hdr, "Content-Transfer-Encoding",
			c->want_flags & DSN_OUT_8BIT ? "8bit" : NULL);
	{
		char want_ct[256];

		snprintf(want_ct, sizeof(want_ct), "multipart/report; "
				"report-type=delivery-status; boundary=\"%s\"", m.boundary);
		want_hdr(m.hdr, "Content-Type", want_ct);
	}

	want_hdr(m.part[0].hdr, "Content-Type", "text/plain; charset=us-ascii");
	want_hdr(m.part[1].hdr, "Content-Type", "message/delivery-status");
	if (c->want_text) {
		txt = strndup(m.part[0].body.p, m.part[0].body.n);
		cr_assert(strstr(txt, c->want_text) != NULL, "%s: text:\n%s", c->name, txt);
		free(txt);
	}
	if (c->want_report) {
		txt = ds_flatten(m.part[1].body);
		cr_assert_str_eq(txt, c->want_report, "%s", c->name);
		free(txt);
	}
	if (c->want_p3_type) {
		want_hdr(m.part[2].hdr, "Content-Type", c->want_p3_type);
		want_hdr(m.part[2].hdr, "Content-Transfer-Encoding",
				c->want_flags & DSN_OUT_8BIT ? "8bit" : NULL);
	}
	if (c->want_p3) {
		size_t wl = c->want_p3_len ? c->want_p3_len : strlen(c->want_p3);

		cr_assert_eq(m.part[2].body.n, wl, "%s: part 3 is %zu, want %zu", c->name,
				m.part[2].body.n, wl);
		cr_assert(memcmp(m.part[2].body.p, c->want_p3, wl) == 0, "%s: part 3", c->name);
	}
	free(u);
	buf_free(&out);
}

Test(dsn, table)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i]);
}

/* The exact top of the simplest DSN, byte for byte. */
Test(dsn, exact_header_section)
{
	struct dsn_input in = case_input(&cases[0]);
	struct buf out;
	static const char want[] =
		"Date: " D_NOW "\r\n"
		"From: Mail Delivery System <MAILER-DAEMON@mx.relay.test>\r\n"
		"To: <s@sender.test>\r\n"
		"Subject: Undelivered Mail Returned to Sender\r\n"
		"Message-ID: <" SEED "@mx.relay.test>\r\n"
		"Auto-Submitted: auto-replied\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/report; report-type=delivery-status;\r\n"
		" boundary=\"" BND0 "\"\r\n"
		"\r\n"
		"This is a MIME-encapsulated message.\r\n"
		"\r\n"
		"--" BND0 "\r\n"
		"Content-Description: Notification\r\n"
		"Content-Type: text/plain; charset=us-ascii\r\n"
		"\r\n"
		"This is the mail system at host mx.relay.test.\r\n";
	static const char want_tail[] =
		"\r\n--" BND0 "\r\n"
		"Content-Description: Undelivered Message Headers\r\n"
		"Content-Type: text/rfc822-headers\r\n"
		"\r\n"
		"Received: from client.test (192.0.2.1)\r\n"
		"\tby mx.relay.test (etrnd) with ESMTP id ABCDEF012345;\r\n"
		"\tTue, 9 Nov 2023 22:13:20 +0000\r\n"
		"From: Sender <s@sender.test>\r\n"
		"To: u@cust.test\r\n"
		"Subject: hello\r\n"
		"\r\n"
		"--" BND0 "--\r\n";

	buf_init(&out, 0);
	cr_assert_eq(dsn_build(&in, &out, NULL), 0);
	cr_assert(out.len > sizeof(want) + sizeof(want_tail));
	cr_assert(memcmp(out.data, want, sizeof(want) - 1) == 0, "got:\n%.*s",
			(int)out.len, out.data);
	cr_assert(memcmp(out.data + out.len - (sizeof(want_tail) - 1), want_tail,
			sizeof(want_tail) - 1) == 0, "got:\n%.*s", (int)out.len, out.data);
	buf_free(&out);
}

/* The 5000-octet header comes back folded, the spaced one restored exactly. */
Test(dsn, long_header_folding)
{
	struct dsn_input in;
	struct buf out;
	struct mime m;
	size_t ulen, n = 0, i;
	char *u, *v;

	make_long();
	in = case_input(&cases[5]);
	buf_init(&out, 0);
	cr_assert_eq(dsn_build(&in, &out, NULL), 0);
	u = unstuff(out.data, out.len, &ulen);
	mime_parse(u, ulen, &m);
	v = hdr_get(m.part[2].body, "Subject");
	cr_assert(v != NULL);
	cr_assert_str_eq(v, long_subject);
	free(v);
	/* X-Long: the hard cuts add one space each, nothing else changes */
	v = hdr_get(m.part[2].body, "X-Long");
	cr_assert(v != NULL);
	for (i = 0; v[i]; i++)
		if (v[i] == 'a')
			n++;
		else
			cr_assert_eq(v[i], ' ');
	cr_assert_eq(n, 5000);
	cr_assert(strlen(v) - n >= 5 && strlen(v) - n <= 6);
	free(v);
	free(u);
	buf_free(&out);
}

/* The 5000-octet body line is cut into lines that join back to it; the
 * '.' that starts the second piece is stuffed (check_wire and unstuff). */
static char *strip_crlf(const char *p, size_t n, size_t *outlen)
{
	char *o = malloc(n + 1);
	size_t i, k = 0;

	cr_assert(o != NULL);
	for (i = 0; i < n; i++) {
		if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n') {
			i++;
			continue;
		}
		o[k++] = p[i];
	}
	*outlen = k;
	return o;
}

Test(dsn, long_body_line_cut)
{
	struct dsn_input in;
	struct buf out;
	struct mime m;
	size_t ulen, wlen, glen, olen, i, lines = 0;
	char *u, *want, *got, *o;

	make_long();
	in = case_input(&cases[6]);
	buf_init(&out, 0);
	cr_assert_eq(dsn_build(&in, &out, NULL), 0);
	u = unstuff(out.data, out.len, &ulen);
	mime_parse(u, ulen, &m);
	o = unstuff(orig_long_body, orig_long_body_len, &olen);
	want = strip_crlf(o, olen, &wlen);
	got = strip_crlf(m.part[2].body.p, m.part[2].body.n, &glen);
	cr_assert_eq(glen, wlen);
	cr_assert(memcmp(got, want, wlen) == 0);
	for (i = 0; i + 1 < m.part[2].body.n; i++)
		lines += m.part[2].body.p[i] == '\r';
	cr_assert_eq(lines, 2 + 6 + 1, "%zu lines", lines); /* 5001 = 997 + 4*998 + 12 */
	free(o);
	free(got);
	free(want);
	free(u);
	buf_free(&out);
}

/* Many random originals full of dots, CR, LF, long lines and boundary
 * look-alikes: the wire invariants and the three-part structure hold. */
Test(dsn, random_originals)
{
	static const char *atoms[] = { ".", "..", "\r\n", "\r", "\n", "\r\n.\r\n", "--",
		BND0, "x", " ", "Subject: s", "\r\n\r\n", "\xff", "\0" };
	uint64_t s = 0x1234567;
	char *o = malloc(8000);

	cr_assert(o != NULL);
	for (int iter = 0; iter < 400; iter++) {
		struct dsn_case c = cases[0];
		struct dsn_input in;
		struct buf out;
		struct mime m;
		size_t n = 0, ulen;
		unsigned flags;
		char *u;

		while (n < (size_t)(iter * 17 % 7000)) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			const char *a = atoms[(s >> 33) % (sizeof(atoms) / sizeof(atoms[0]))];
			size_t al = a[0] ? strlen(a) : 1;

			if ((s >> 20) % 5 == 0) {
				size_t run = (s >> 40) % 1500;

				if (n + run > 7000)
					break;
				memset(o + n, (s >> 8) % 2 ? 'y' : ' ', run);
				n += run;
				continue;
			}
			memcpy(o + n, a, al);
			n += al;
		}
		c.orig = o;
		c.orig_len = n;
		c.return_full = iter % 2;
		c.return_max = iter % 3 == 0 ? 3000 : 0;
		in = case_input(&c);
		buf_init(&out, 0);
		cr_assert_eq(dsn_build(&in, &out, &flags), 0);
		check_wire(out.data, out.len, "random");
		u = unstuff(out.data, out.len, &ulen);
		mime_parse(u, ulen, &m);
		check_7bit(&m);
		cr_assert(m.nparts == 2 || m.nparts == 3, "iter %d: %u parts", iter, m.nparts);
		free(u);
		buf_free(&out);
	}
	free(o);
}

struct bad_case {
	const char *name;
	void (*spoil)(struct dsn_input *in, struct dsn_rcpt *r);
};

/* dsn_build() of case 0 changed by b: its result, *len what it wrote. */
static int spoiled_build(const struct bad_case *b, size_t *len)
{
	struct dsn_rcpt r = r_expired;
	struct dsn_input in = case_input(&cases[0]);
	struct buf out;
	int rc;

	in.rcpt = &r;
	b->spoil(&in, &r);
	buf_init(&out, 0);
	rc = dsn_build(&in, &out, NULL);
	*len = out.len;
	buf_free(&out);
	return rc;
}

static void b_sender_empty(struct dsn_input *in, struct dsn_rcpt *r) { in->sender_len = 0; }
static void b_sender_null(struct dsn_input *in, struct dsn_rcpt *r) { in->sender = NULL; }
static void b_sender_long(struct dsn_input *in, struct dsn_rcpt *r) { in->sender_len = DSN_ADDR_MAX + 1; }
static void b_nrcpt0(struct dsn_input *in, struct dsn_rcpt *r) { in->nrcpt = 0; }
static void b_rcpt_null(struct dsn_input *in, struct dsn_rcpt *r) { in->rcpt = NULL; }
static void b_addr_empty(struct dsn_input *in, struct dsn_rcpt *r) { r->addr_len = 0; }
static void b_status_short(struct dsn_input *in, struct dsn_rcpt *r) { r->status = "4.4"; }
static void b_status_class(struct dsn_input *in, struct dsn_rcpt *r) { r->status = "6.0.0"; }
static void b_status_tail(struct dsn_input *in, struct dsn_rcpt *r) { r->status = "5.1.1 x"; }
static void b_status_long(struct dsn_input *in, struct dsn_rcpt *r) { r->status = "5.1234.1"; }
static void b_status_null(struct dsn_input *in, struct dsn_rcpt *r) { r->status = NULL; }
static void b_action(struct dsn_input *in, struct dsn_rcpt *r) { r->action = (enum dsn_action)7; }
static void b_qid(struct dsn_input *in, struct dsn_rcpt *r) { in->qid = "AB\r\nC"; }
static void b_mta(struct dsn_input *in, struct dsn_rcpt *r) { in->reporting_mta = "mx relay"; }
static void b_pm(struct dsn_input *in, struct dsn_rcpt *r) { in->postmaster = "a<b>"; }
static void b_orig(struct dsn_input *in, struct dsn_rcpt *r) { in->orig = NULL; }
static void b_seed(struct dsn_input *in, struct dsn_rcpt *r) { in->message_id_seed = "..//"; }
static void b_seed_null(struct dsn_input *in, struct dsn_rcpt *r) { in->message_id_seed = NULL; }

static char long_host[DSN_HOST_MAX + 2], long_addr[DSN_ADDR_MAX + 2], long_qid[QID_MAX + 1];

static void b_long_fill(void)
{
	memset(long_host, 'h', sizeof(long_host) - 1);
	memset(long_addr, 'a', sizeof(long_addr) - 1);
	memset(long_qid, 'A', sizeof(long_qid) - 1);
}

static void b_mta_null(struct dsn_input *in, struct dsn_rcpt *r) { in->reporting_mta = NULL; }
static void b_mta_long(struct dsn_input *in, struct dsn_rcpt *r) { in->reporting_mta = long_host; }
static void b_mta_under(struct dsn_input *in, struct dsn_rcpt *r) { in->reporting_mta = "mx_1.test"; }
static void b_mta_high(struct dsn_input *in, struct dsn_rcpt *r) { in->reporting_mta = "m\xc3\xa9.test"; }
static void b_pm_null(struct dsn_input *in, struct dsn_rcpt *r) { in->postmaster = NULL; }
static void b_pm_empty(struct dsn_input *in, struct dsn_rcpt *r) { in->postmaster = ""; }
static void b_pm_long(struct dsn_input *in, struct dsn_rcpt *r) { in->postmaster = long_addr; }
static void b_pm_space(struct dsn_input *in, struct dsn_rcpt *r) { in->postmaster = "a b@x.test"; }
static void b_pm_del(struct dsn_input *in, struct dsn_rcpt *r) { in->postmaster = "a\x7f@x.test"; }
static void b_pm_gt(struct dsn_input *in, struct dsn_rcpt *r) { in->postmaster = "a>@x.test"; }
static void b_qid_null(struct dsn_input *in, struct dsn_rcpt *r) { in->qid = NULL; }
static void b_qid_empty(struct dsn_input *in, struct dsn_rcpt *r) { in->qid = ""; }
static void b_qid_long(struct dsn_input *in, struct dsn_rcpt *r) { in->qid = long_qid; }
static void b_qid_dash(struct dsn_input *in, struct dsn_rcpt *r) { in->qid = "ABC-DEF"; }
static void b_addr_null(struct dsn_input *in, struct dsn_rcpt *r) { r->addr = NULL; }
static void b_addr_long(struct dsn_input *in, struct dsn_rcpt *r) { r->addr_len = DSN_ADDR_MAX + 1; }
static void b_status_x(struct dsn_input *in, struct dsn_rcpt *r) { r->status = "5x1.1"; }
static void b_status_dot(struct dsn_input *in, struct dsn_rcpt *r) { r->status = "5.1.1."; }
static void b_status_empty_part(struct dsn_input *in, struct dsn_rcpt *r) { r->status = "5..1"; }

static const struct bad_case bad_cases[] = {
	{ "sender_empty", b_sender_empty }, { "sender_null", b_sender_null },
	{ "sender_long", b_sender_long }, { "nrcpt0", b_nrcpt0 },
	{ "rcpt_null", b_rcpt_null }, { "addr_empty", b_addr_empty },
	{ "status_short", b_status_short }, { "status_class", b_status_class },
	{ "status_tail", b_status_tail }, { "status_long", b_status_long },
	{ "status_null", b_status_null }, { "action", b_action }, { "qid", b_qid },
	{ "mta", b_mta }, { "postmaster", b_pm }, { "orig_null", b_orig },
	{ "seed_empty", b_seed }, { "seed_null", b_seed_null },
	{ "mta_null", b_mta_null }, { "mta_long", b_mta_long }, { "mta_underscore", b_mta_under },
	{ "mta_8bit", b_mta_high }, { "postmaster_null", b_pm_null },
	{ "postmaster_empty", b_pm_empty }, { "postmaster_long", b_pm_long },
	{ "postmaster_space", b_pm_space }, { "postmaster_del", b_pm_del },
	{ "postmaster_gt", b_pm_gt }, { "qid_null", b_qid_null }, { "qid_empty", b_qid_empty },
	{ "qid_long", b_qid_long }, { "qid_dash", b_qid_dash }, { "addr_null", b_addr_null },
	{ "addr_long", b_addr_long }, { "status_x", b_status_x }, { "status_dot", b_status_dot },
	{ "status_empty_part", b_status_empty_part },
};

/* The edges of what is accepted: a bracketed address literal and upper
 * case as the reporting MTA, a lower-case queue id, a 2.x.x status. */
static void g_literal(struct dsn_input *in, struct dsn_rcpt *r) { in->reporting_mta = "[IPv6:2001:db8::1]"; }
static void g_upper(struct dsn_input *in, struct dsn_rcpt *r) { in->reporting_mta = "MX-1.RELAY.TEST"; }
static void g_qid_lower(struct dsn_input *in, struct dsn_rcpt *r) { in->qid = "abcdef012345"; }
static void g_status_2(struct dsn_input *in, struct dsn_rcpt *r) { r->status = "2.0.0"; }

static const struct bad_case good_edges[] = {
	{ "mta_literal", g_literal }, { "mta_upper", g_upper }, { "qid_lower", g_qid_lower },
	{ "status_2", g_status_2 },
};

Test(dsn, input_edges_accepted)
{
	for (size_t i = 0; i < sizeof(good_edges) / sizeof(good_edges[0]); i++) {
		size_t len;
		int rc = spoiled_build(&good_edges[i], &len);

		cr_assert_eq(rc, 0, "%s: rc %d", good_edges[i].name, rc);
		cr_assert_gt(len, 0, "%s", good_edges[i].name);
	}
}

Test(dsn, bad_input)
{
	b_long_fill();
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		size_t len;
		int rc = spoiled_build(&bad_cases[i], &len);

		cr_assert_eq(rc, -EINVAL, "%s: rc %d", bad_cases[i].name, rc);
		cr_assert_eq(len, 0, "%s", bad_cases[i].name);
	}
	cr_assert_eq(dsn_build(NULL, NULL, NULL), -EINVAL);
}

/* out's cap: every cap below the full size fails with -E2BIG and leaves
 * out exactly as it was. */
Test(dsn, cap_leaves_out_unchanged)
{
	struct dsn_input in = case_input(&cases[1]);
	struct buf out;
	size_t full, cap;

	buf_init(&out, 0);
	cr_assert_eq(dsn_build(&in, &out, NULL), 0);
	full = out.len;
	buf_free(&out);
	for (cap = 4; cap < full + 4; cap += 97) {
		int rc;

		buf_init(&out, cap);
		cr_assert_eq(buf_append(&out, "abcd", 4), 0);
		rc = dsn_build(&in, &out, NULL);
		if (cap >= full + 4) {
			cr_assert_eq(rc, 0);
		} else {
			cr_assert_eq(rc, -E2BIG, "cap %zu: rc %d", cap, rc);
			cr_assert_eq(out.len, 4);
			cr_assert(memcmp(out.data, "abcd", 4) == 0);
		}
		buf_free(&out);
	}
	buf_init(&out, full + 4);
	cr_assert_eq(buf_append(&out, "abcd", 4), 0);
	cr_assert_eq(dsn_build(&in, &out, NULL), 0);
	cr_assert_eq(out.len, full + 4);
	buf_free(&out);
}
