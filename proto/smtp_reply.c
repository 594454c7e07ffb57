/* SPDX-License-Identifier: MIT */
/*
 * smtp_reply: the SMTP reply reader shared by the client sides (see
 * smtp_reply.h). One line at a time through core/linereader, each checked
 * against RFC 5321 4.2 and folded into the reply being read.
 */
#include "proto/smtp_reply.h"

#include <stdio.h>
#include <string.h>

#include "core/ascii.h"
#include "core/log.h"

/* The AUTH keyword's old form "AUTH=mech ..." (Postfix's
 * broken_sasl_auth_clients). */
#define SMTP_REPLY_AUTH_EQ "AUTH="
#define SMTP_REPLY_AUTH_EQ_LEN (sizeof(SMTP_REPLY_AUTH_EQ) - 1)

/* EHLO keywords that are a flag and nothing more. */
static const struct {
	const char *name;
	unsigned cap;
} smtp_reply_keywords[] = {
	{ "PIPELINING", SMTP_REPLY_CAP_PIPELINING },
	{ "8BITMIME", SMTP_REPLY_CAP_8BITMIME },
	{ "ENHANCEDSTATUSCODES", SMTP_REPLY_CAP_ENHANCED },
	{ "SMTPUTF8", SMTP_REPLY_CAP_SMTPUTF8 },
	{ "STARTTLS", SMTP_REPLY_CAP_STARTTLS },
};

static const struct {
	const char *name;
	unsigned mech;
} smtp_reply_mechs[] = {
	{ "PLAIN", SMTP_REPLY_AUTH_PLAIN },
	{ "LOGIN", SMTP_REPLY_AUTH_LOGIN },
};

void smtp_reply_init(struct smtp_reply_reader *rd, char *buf, size_t line_max,
		unsigned max_lines)
{
	if (max_lines == 0)
		panic("smtp_reply_init: max_lines 0");
	memset(rd, 0, sizeof(*rd));
	linereader_init(&rd->lr, buf, line_max);
	rd->max_lines = max_lines;
}

void smtp_reply_reset(struct smtp_reply_reader *rd)
{
	linereader_reset(&rd->lr);
	rd->r.code = 0;
	rd->r.lines = 0;
	rd->done = 0;
}

int smtp_reply_busy(const struct smtp_reply_reader *rd)
{
	return (rd->r.code != 0 && !rd->done) || linereader_pending(&rd->lr) != 0;
}

const char *smtp_reply_error(enum smtp_reply_status st)
{
	switch (st) {
	case SMTP_REPLY_ERR_SYNTAX: return "malformed reply";
	case SMTP_REPLY_ERR_CODE: return "reply code changed in multiline reply";
	case SMTP_REPLY_ERR_LINES: return "too many reply lines";
	case SMTP_REPLY_ERR_LONG: return "reply line too long";
	default: return "no error";
	}
}

size_t smtp_reply_enh_len(const char *t, size_t n, int code)
{
	size_t i, part, digits;

	if (n < 5 || t[0] != (char)('0' + code / 100) || t[1] != '.')
		return 0;
	i = 2;
	for (part = 0; part < 2; part++) {
		for (digits = 0; i < n && t[i] >= '0' && t[i] <= '9'; i++)
			digits++;
		if (digits == 0 || digits > 3)
			return 0;
		if (part == 0) {
			if (i >= n || t[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < n && t[i] != ' ')
		return 0;
	return i;
}

/* Append reply-line text, made printable, joining lines with a space. */
static void smtp_reply_add_text(struct smtp_reply *r, const char *t, size_t n)
{
	size_t i;

	if (r->text_len > 0 && n > 0 && r->text_len < sizeof(r->text))
		r->text[r->text_len++] = ' ';
	for (i = 0; i < n && r->text_len < sizeof(r->text); i++) {
		unsigned char ch = (unsigned char)t[i];

		r->text[r->text_len++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
}

/* RFC 1870 4: "SIZE" alone or "SIZE 0" is no fixed limit; an unreadable
 * or absurd number is treated the same. */
static uint64_t smtp_reply_size(const char *t, size_t n)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < n && t[i] == ' '; i++)
		;
	for (; i < n; i++) {
		unsigned d = (unsigned char)t[i] - '0';

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	return v;
}

/* The mechanisms after AUTH: space-separated SASL names (RFC 4954 3). */
static unsigned smtp_reply_auth_mechs(const char *t, size_t n)
{
	unsigned mechs = 0;
	size_t i = 0, k, j;

	while (i < n) {
		while (i < n && t[i] == ' ')
			i++;
		for (k = i; k < n && t[k] != ' '; k++)
			;
		for (j = 0; j < sizeof(smtp_reply_mechs) / sizeof(smtp_reply_mechs[0]); j++)
			if (ascii_eq_lit(t + i, k - i, smtp_reply_mechs[j].name))
				mechs |= smtp_reply_mechs[j].mech;
		i = k;
	}
	return mechs;
}

/* One EHLO keyword line (RFC 5321 4.1.1.1 ehlo-line). */
static void smtp_reply_keyword(struct smtp_reply *r, const char *t, size_t n)
{
	size_t k = 0, j;

	while (k < n && t[k] != ' ')
		k++;
	for (j = 0; j < sizeof(smtp_reply_keywords) / sizeof(smtp_reply_keywords[0]); j++) {
		if (ascii_eq_lit(t, k, smtp_reply_keywords[j].name)) {
			r->caps |= smtp_reply_keywords[j].cap;
			return;
		}
	}
	if (ascii_eq_lit(t, k, "SIZE")) {
		r->caps |= SMTP_REPLY_CAP_SIZE;
		r->size_max = smtp_reply_size(t + k, n - k);
	} else if (ascii_eq_lit(t, k, "AUTH")) {
		r->caps |= SMTP_REPLY_CAP_AUTH;
		r->auth |= smtp_reply_auth_mechs(t + k, n - k);
	} else if (k > SMTP_REPLY_AUTH_EQ_LEN &&
			ascii_eq_n(t, SMTP_REPLY_AUTH_EQ, SMTP_REPLY_AUTH_EQ_LEN)) {
		r->caps |= SMTP_REPLY_CAP_AUTH;
		r->auth |= smtp_reply_auth_mechs(t + SMTP_REPLY_AUTH_EQ_LEN,
				n - SMTP_REPLY_AUTH_EQ_LEN);
	}
}

/* One complete reply line, line end removed: AGAIN (more lines to come),
 * DONE or an error. */
static enum smtp_reply_status smtp_reply_line(struct smtp_reply_reader *rd,
		const char *line, size_t n)
{
	struct smtp_reply *r = &rd->r;
	const char *t;
	size_t tn, e;
	int code;

	/* RFC 5321 4.2: Reply-code [ SP / "-" textstring ]; first digit 2-5. */
	if (n < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
			line[2] < '0' || line[2] > '9' ||
			(n > 3 && line[3] != ' ' && line[3] != '-'))
		return SMTP_REPLY_ERR_SYNTAX;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (r->code == 0) {
		memset(r, 0, sizeof(*r));
		r->code = code;
	} else if (code != r->code) {
		return SMTP_REPLY_ERR_CODE;
	}
	if (++r->lines > rd->max_lines)
		return SMTP_REPLY_ERR_LINES;
	t = n > 4 ? line + 4 : line + n;
	tn = n > 4 ? n - 4 : 0;
	if (r->lines > 1 && code / 100 == 2)
		smtp_reply_keyword(r, t, tn);
	/* RFC 2034 3: every line may repeat the enhanced code; keep the
	 * first, strip them all from the text. */
	e = smtp_reply_enh_len(t, tn, code);
	if (e > 0) {
		if (r->lines == 1) {
			/* Once per reply on a drain's path: a copy, not printf. */
			size_t k = e < sizeof(r->enh) - 1 ? e : sizeof(r->enh) - 1;

			memcpy(r->enh, t, k);
			r->enh[k] = '\0';
			r->enh_sent = 1;
		}
		while (e < tn && t[e] == ' ')
			e++;
		t += e;
		tn -= e;
	}
	smtp_reply_add_text(r, t, tn);
	if (n > 3 && line[3] == '-')
		return SMTP_REPLY_AGAIN;
	if (r->enh[0] == '\0') /* "<class>.0.0" (354 has none): no printf */
		memcpy(r->enh, (char[]){ (char)('0' + code / 100), '.', '0', '.', '0', '\0' }, 6);
	return SMTP_REPLY_DONE;
}

size_t smtp_reply_feed(struct smtp_reply_reader *rd, const char *p, size_t n,
		enum smtp_reply_status *st)
{
	size_t i = 0;

	if (rd->done) {
		rd->done = 0;
		rd->r.code = 0;
	}
	*st = SMTP_REPLY_AGAIN;
	while (i < n) {
		struct linereader_line ln;

		i += linereader_feed(&rd->lr, p + i, n - i, &ln);
		switch (ln.status) {
		case LINEREADER_LINE:
			*st = smtp_reply_line(rd, ln.p, ln.len);
			break;
		case LINEREADER_OVERLONG:
		case LINEREADER_OVERLONG_END:
			*st = SMTP_REPLY_ERR_LONG;
			break;
		default:
			break;
		}
		if (*st != SMTP_REPLY_AGAIN)
			break;
	}
	rd->done = *st == SMTP_REPLY_DONE;
	return i;
}
