/* SPDX-License-Identifier: MIT */
/*
 * atrn: see atrn.h. Each element of the list is a domain in ETRN's syntax
 * (proto/etrn.c: RFC 1985's characters, a domain form, one trailing dot
 * dropped), split by atrn_next().
 */
#include "proto/atrn.h"

#include <string.h>

#include "core/ascii.h"

static const struct {
	enum atrn_verdict v;
	const char *line;
} atrn_reply_lines[] = {
	{ ATRN_OK, "250 OK now reversing the connection\r\n" },
	{ ATRN_SYNTAX, "501 5.5.4 Syntax: ATRN [domain *(,domain)]\r\n" },
	{ ATRN_TOO_MANY, "501 5.5.4 Too many domains in one ATRN\r\n" },
	{ ATRN_DENIED, "450 4.7.1 ATRN request refused: not your domain\r\n" },
	{ ATRN_NONE_OWNED, "450 4.7.1 ATRN request refused: no domains for you here\r\n" },
	{ ATRN_BUSY, "451 4.3.0 Unable to process ATRN request now: a drain of it is running\r\n" },
	{ ATRN_FULL, "451 4.3.2 Unable to process ATRN request now: too many ATRN sessions\r\n" },
	{ ATRN_STOPPING, "451 4.3.2 Unable to process ATRN request now: shutting down\r\n" },
	{ ATRN_NO_MEMORY, "451 4.3.0 Unable to process ATRN request now\r\n" },
	{ ATRN_NO_MAIL, "453 You have no mail\r\n" },
};

int atrn_reply(struct buf *out, enum atrn_verdict v)
{
	for (size_t i = 0; i < sizeof(atrn_reply_lines) / sizeof(atrn_reply_lines[0]); i++)
		if (atrn_reply_lines[i].v == v)
			return buf_puts(out, atrn_reply_lines[i].line);
	return buf_puts(out, "451 4.3.0 Unable to process ATRN request now\r\n");
}

/* ---- the argument --------------------------------------------------------- */

/* dom already in out? */
static int doms_have(const struct atrn_doms *out, const char *dom, size_t len)
{
	for (unsigned i = 0; i < out->n; i++)
		if (out->len[i] == len && !memcmp(out->dom[i], dom, len))
			return 1;
	return 0;
}

/* atrn.h. */
enum atrn_verdict atrn_doms_add(struct atrn_doms *out, const char *dom, size_t len)
{
	char low[ETRN_DOMAIN_MAX];

	if (len >= ETRN_DOMAIN_MAX)
		return ATRN_SYNTAX;
	ascii_lower_copy(low, dom, len);
	if (doms_have(out, low, len))
		return ATRN_OK;
	if (out->n == ATRN_DOMAINS_MAX)
		return ATRN_TOO_MANY;
	memcpy(out->dom[out->n], low, len);
	out->dom[out->n][len] = '\0';
	out->len[out->n++] = len;
	return ATRN_OK;
}

const char *atrn_next(const char *list, size_t len, size_t *off, size_t *dlen)
{
	const char *p, *comma;

	if (*off >= len)
		return NULL;
	p = list + *off;
	comma = memchr(p, ',', len - *off);
	*dlen = comma ? (size_t)(comma - p) : len - *off;
	*off += *dlen + 1;
	return p;
}

enum atrn_verdict atrn_parse(const char *p, size_t len, struct atrn_doms *out)
{
	size_t off = 0, dlen;
	const char *d;

	out->n = 0;
	while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
		len--; /* trailing blanks of the command line */
	while (off < len && (p[off] == ' ' || p[off] == '\t'))
		off++;
	if (off == len)
		return ATRN_OK; /* no list: every domain the user owns */
	if (p[len - 1] == ',')
		return ATRN_SYNTAX; /* an empty last element */
	while ((d = atrn_next(p, len, &off, &dlen)) != NULL) {
		struct etrn_node en;
		enum atrn_verdict v;

		/* Each element is a domain in ETRN's syntax (RFC 1985's
		 * characters, a domain form): never "@x" or "#q". */
		if (etrn_parse(d, dlen, ETRN_SRC_SMTP_RAW, &en) != ETRN_OK ||
		    en.kind != ETRN_KIND_DOMAIN)
			return ATRN_SYNTAX;
		v = atrn_doms_add(out, en.name, en.name_len);
		if (v != ATRN_OK)
			return v;
	}
	return ATRN_OK;
}
