/* SPDX-License-Identifier: MIT */
/*
 * spf_field: the pure half of spf.h, no libspf2, no DNS: result names, the
 * Received-SPF field written at end of data and read back at bounce time.
 * Fuzzed on its own (tests/fuzz/fuzz_spf_field.c).
 */
#include "proto/spf.h"

#include <stdio.h>
#include <string.h>

#include "core/ascii.h"

static const char *const spf_res_names[SPF_RES_COUNT] = {
	[SPF_RES_NONE] = "none",
	[SPF_RES_NEUTRAL] = "neutral",
	[SPF_RES_PASS] = "pass",
	[SPF_RES_FAIL] = "fail",
	[SPF_RES_SOFTFAIL] = "softfail",
	[SPF_RES_TEMPERROR] = "temperror",
	[SPF_RES_PERMERROR] = "permerror",
};

const char *spf_res_name(enum spf_res r)
{
	return (unsigned)r < SPF_RES_COUNT ? spf_res_names[r] : "?";
}

int spf_res_parse(const char *text, size_t len)
{
	for (int i = 0; i < SPF_RES_COUNT; i++) {
		size_t n = strlen(spf_res_names[i]);
		/* The name, then the end or a blank ("pass (..."). */
		if (len >= n && ascii_eq_n(text, spf_res_names[i], n) &&
		    (len == n || text[n] == ' ' || text[n] == '\t' || text[n] == '\r'))
			return i;
	}
	return -1;
}

/* Does the line at p (n octets, CRLF not included) name field f? */
static int spf_line_is(const char *p, size_t n, const char *f)
{
	size_t fl = strlen(f);

	return n > fl && p[fl] == ':' && ascii_eq_n(p, f, fl);
}

int spf_stored_result(const char *body, size_t len)
{
	const char *p = body, *end = body + (len < SPF_STORED_SCAN_MAX ? len : SPF_STORED_SCAN_MAX);

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t n;

		if (!eol)
			return -1;
		n = (size_t)(eol - p);
		if (n && p[n - 1] == '\r')
			n--;
		if (n == 0 || spf_line_is(p, n, "Received"))
			return -1; /* the end of the header, or our own trace field */
		if (spf_line_is(p, n, "Received-SPF")) {
			const char *v = p + sizeof("Received-SPF:") - 1;
			while (v < p + n && (*v == ' ' || *v == '\t'))
				v++;
			return spf_res_parse(v, (size_t)(p + n - v));
		}
		p = eol + 1;
	}
	return -1;
}

/* Printable ASCII of src into dst (NUL-terminated, cut to fit). */
void spf_printable(char *dst, size_t dstlen, const char *src)
{
	size_t o = 0;

	for (; src && *src && o + 1 < dstlen; src++)
		dst[o++] = (*src >= ' ' && *src < 0x7f) ? *src : '?';
	dst[o] = '\0';
}

/* ---- the header ------------------------------------------------------------ */

/* A key=value pair's value (RFC 7208 9.1: dot-atom or quoted-string): peer
 * text made printable, quoted, '"' and '\' escaped, cut to fit. */
static size_t spf_header_value(char *out, size_t room, const char *s, size_t max)
{
	size_t o = 0;

	if (room < 3)
		return 0;
	out[o++] = '"';
	for (size_t i = 0; s[i] && i < max && o + 3 < room; i++) {
		char c = (s[i] >= ' ' && s[i] < 0x7f) ? s[i] : '?';
		if ((c == '"' || c == '\\') && o + 4 >= room)
			break;
		if (c == '"' || c == '\\')
			out[o++] = '\\';
		out[o++] = c;
	}
	out[o++] = '"';
	out[o] = '\0';
	return o;
}

size_t spf_header(const struct spf_verdict *v, const struct spf_query *q, char *out,
		  size_t outlen)
{
	char from[SPF_IDENT_MAX + 8], helo[SPF_IDENT_MAX + 8], client[SPF_CLIENT_MAX];
	char recv[SPF_IDENT_MAX + 8];
	int n;

	spf_header_value(from, sizeof(from), q->sender, SPF_IDENT_MAX);
	spf_header_value(helo, sizeof(helo), q->helo, SPF_IDENT_MAX);
	spf_header_value(recv, sizeof(recv), q->receiver, SPF_IDENT_MAX);
	spf_printable(client, sizeof(client), q->client);
	/* Each folded line stays well under RFC 5322's 998 octets: the
	 * comment is at most SPF_COMMENT_MAX, each value SPF_IDENT_MAX. */
	n = snprintf(out, outlen,
		     "Received-SPF: %s (%s)\r\n\tclient-ip=%s;\r\n\tenvelope-from=%s;\r\n"
		     "\thelo=%s;\r\n\treceiver=%s; identity=%s\r\n",
		     spf_res_name(v->res), v->comment, client, from, helo, recv,
		     v->helo_identity ? "helo" : "mailfrom");
	if (n < 0 || (size_t)n >= outlen) {
		/* Cannot happen with outlen >= SPF_HEADER_MAX; never a cut field. */
		n = snprintf(out, outlen, "Received-SPF: %s\r\n", spf_res_name(v->res));
		if (n < 0 || (size_t)n >= outlen) {
			if (outlen)
				out[0] = '\0';
			return 0;
		}
	}
	return (size_t)n;
}

