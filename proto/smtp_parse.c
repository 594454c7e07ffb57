/* SPDX-License-Identifier: MIT */
/*
 * smtp_parse: command-line pieces for the SMTP server (RFC 5321 4.1.2,
 * RFC 6531 for 8-bit addresses). Strict where it matters for safety (only
 * printable, bounded addresses come out), lenient where real MTAs are
 * (Postfix-like: "FROM: <a@b>", missing brackets, "a..b" local parts).
 */
#include "proto/smtp_parse.h"

#include <string.h>

#include "core/ascii.h"

int smtp_parse_token_eq(const char *s, size_t n, const char *lit)
{
	return ascii_eq_lit(s, n, lit);
}

size_t smtp_parse_verb(const char *line, size_t n, const char **arg,
		size_t *arg_len)
{
	size_t v = 0, a;

	while (v < n && line[v] != ' ')
		v++;
	a = v;
	while (a < n && line[a] == ' ')
		a++;
	while (n > a && line[n - 1] == ' ')
		n--;
	*arg = line + a;
	*arg_len = n - a;
	return v;
}

/* RFC 5322 atext; 8-bit bytes are UTF-8 under RFC 6531 and accepted here
 * (the SMTPUTF8 parameter only tells us the sender means it). */
static int is_atext(unsigned char c)
{
	if (c >= 0x80)
		return 1;
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* sub-domain characters: Let-dig / "-" (RFC 5321 4.1.2); "_" tolerated
 * because real host names carry it; 8-bit for U-labels (RFC 6531 3.3). */
static int is_ldh(unsigned char c)
{
	return c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Domain = sub-domain *("." sub-domain), one trailing dot tolerated.
 * Returns the length parsed, 0 on syntax error. */
static size_t parse_domain(const char *s, size_t n)
{
	size_t i = 0, label = 0;

	while (i < n) {
		unsigned char c = (unsigned char)s[i];

		if (is_ldh(c)) {
			label++;
		} else if (c == '.') {
			if (label == 0)
				return 0; /* empty label: ".a" or "a..b" */
			label = 0;
		} else {
			break;
		}
		i++;
	}
	if (i == 0 || (label == 0 && i == 1))
		return 0; /* empty, or just "." */
	return i;
}

/* address-literal: "[" dtext... "]" (RFC 5321 4.1.3, dtext per RFC 5322).
 * Returns the length incl. brackets, 0 on syntax error. */
static size_t parse_literal(const char *s, size_t n)
{
	size_t i = 1;

	if (n < 2 || s[0] != '[')
		return 0;
	while (i < n && s[i] != ']') {
		unsigned char c = (unsigned char)s[i];

		if (c < 33 || c > 126 || c == '[' || c == '\\')
			return 0;
		i++;
	}
	if (i >= n || i == 1)
		return 0;
	return i + 1;
}

/* Local-part = Dot-string / Quoted-string (RFC 5321 4.1.2). Dots are not
 * checked for placement ("a..b", ".a"): Postfix accepts those too and they
 * do exist. Returns the length, 0 on syntax error. */
static size_t parse_local(const char *s, size_t n)
{
	size_t i = 0;

	if (n == 0)
		return 0;
	if (s[0] == '"') {
		for (i = 1; i < n; i++) {
			unsigned char c = (unsigned char)s[i];

			if (c == '"')
				return i + 1;
			if (c == '\\') {
				/* quoted-pairSMTP = "\" %d32-126 */
				if (i + 1 >= n || (unsigned char)s[i + 1] < 32 ||
						(unsigned char)s[i + 1] > 126)
					return 0;
				i++;
			} else if (c < 32 || c == 127) {
				return 0; /* qtextSMTP is %d32-33 / %d35-91 / %d93-126 */
			}
		}
		return 0; /* unterminated quote */
	}
	while (i < n && (is_atext((unsigned char)s[i]) || s[i] == '.'))
		i++;
	return i;
}

/* Does the local part s[0..n) route on by itself (SMTP_PATH_LOCAL_ROUTING)?
 * '@' can only be there inside quotes; a backslash-quoted one counts too,
 * since unquoting makes it an '@' all the same. */
static int local_routes(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] == '%' || s[i] == '!' || s[i] == '@')
			return 1;
	return 0;
}

/* A-d-l = At-domain *( "," At-domain ) ":" (RFC 5321 4.1.2); obsolete but
 * must be accepted and ignored (RFC 5321 4.1.1.3, appendix C). Returns the
 * length incl. the colon, 0 on syntax error. */
static size_t parse_route(const char *s, size_t n)
{
	size_t i = 0, d;

	for (;;) {
		if (i >= n || s[i] != '@')
			return 0;
		i++;
		d = parse_domain(s + i, n - i);
		if (d == 0)
			return 0;
		i += d;
		if (i < n && s[i] == ',') {
			i++;
			continue;
		}
		if (i < n && s[i] == ':')
			return i + 1;
		return 0;
	}
}

/* After the local part, at s[*i]: "@domain", "@[literal]" or no domain
 * (SMTP_PATH_NO_DOMAIN, *domlen 0). Sets *dom to where the domain starts
 * (past the '@'; *i when there is none) and moves *i past it. -1 on a
 * syntax error. */
static int parse_at_domain(const char *s, size_t n, size_t *i, size_t *dom,
			   size_t *domlen, struct smtp_path *path)
{
	size_t j = *i;

	*dom = j;
	*domlen = 0;
	if (j >= n || s[j] != '@') {
		path->flags |= SMTP_PATH_NO_DOMAIN;
		return 0;
	}
	*dom = ++j;
	if (j < n && s[j] == '[') {
		*domlen = parse_literal(s + j, n - j);
		path->flags |= SMTP_PATH_LITERAL;
	} else {
		*domlen = parse_domain(s + j, n - j);
	}
	if (*domlen == 0)
		return -1;
	*i = j + *domlen;
	return 0;
}

/* path->addr = s[lp..dom) (the local part and its '@'), then the domain
 * s[dom..dom+domlen); lengths already checked against SMTP_PATH_MAX. */
static void path_store(struct smtp_path *path, const char *s, size_t lp, size_t dom,
		       size_t domlen)
{
	memcpy(path->addr, s + lp, dom - lp);
	path->len = dom - lp;
	path->domain_off = path->len;
	if (domlen > 0) {
		memcpy(path->addr + path->len, s + dom, domlen);
		path->len += domlen;
	}
	path->addr[path->len] = '\0';
}

int smtp_parse_path_arg(const char *s, size_t n, const char *kw,
		struct smtp_path *path, size_t *params_off)
{
	size_t kwlen = strlen(kw), i, start, lp, lplen, dom, domlen = 0, plen;
	int bracket;

	path->addr[0] = '\0';
	path->len = path->domain_off = 0;
	path->flags = 0;
	if (n < kwlen || !smtp_parse_token_eq(s, kwlen, kw))
		return SMTP_PARSE_KEYWORD;
	i = kwlen;
	while (i < n && s[i] == ' ')
		i++; /* "MAIL FROM: <a@b>": not RFC, but common; Postfix allows it */
	start = i;
	bracket = i < n && s[i] == '<';
	if (bracket)
		i++;
	else
		path->flags |= SMTP_PATH_BARE;

	if (bracket && i < n && s[i] == '>') {
		path->flags |= SMTP_PATH_NULL;
		i++;
		goto params;
	}
	if (i < n && s[i] == '@') {
		size_t r = parse_route(s + i, n - i);

		if (r == 0)
			return SMTP_PARSE_SYNTAX;
		path->flags |= SMTP_PATH_ROUTE;
		i += r;
	}
	lp = i;
	lplen = parse_local(s + i, n - i);
	if (lplen == 0)
		return SMTP_PARSE_SYNTAX;
	if (local_routes(s + i, lplen))
		path->flags |= SMTP_PATH_LOCAL_ROUTING;
	i += lplen;
	if (parse_at_domain(s, n, &i, &dom, &domlen, path))
		return SMTP_PARSE_SYNTAX;
	if (bracket) {
		if (i >= n || s[i] != '>')
			return SMTP_PARSE_SYNTAX;
		i++;
	} else if (i < n && s[i] != ' ') {
		return SMTP_PARSE_SYNTAX;
	}
	/* RFC 5321 4.5.3.1.1-3: local part 64, domain 255, whole path 256
	 * octets including the brackets (counted even when they are missing). */
	plen = i - start + (bracket ? 0 : 2);
	if (lplen > SMTP_LOCAL_MAX || domlen > SMTP_DOMAIN_MAX || plen > SMTP_PATH_MAX)
		return SMTP_PARSE_TOO_LONG;
	path_store(path, s, lp, dom, domlen);
params:
	if (i < n && s[i] != ' ')
		return SMTP_PARSE_SYNTAX;
	while (i < n && s[i] == ' ')
		i++;
	*params_off = i;
	return SMTP_PARSE_OK;
}

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
 * esmtp-value   = 1*(%d33-60 / %d62-126), or UTF-8 (RFC 6531 3.3) */
int smtp_parse_param(const char *s, size_t n, size_t *off, struct smtp_param *p)
{
	size_t i = *off;

	while (i < n && s[i] == ' ')
		i++;
	if (i >= n) {
		*off = i;
		return 0;
	}
	p->key = s + i;
	while (i < n && s[i] != ' ' && s[i] != '=') {
		unsigned char c = (unsigned char)s[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9');

		if (!alnum && (c != '-' || i == (size_t)(p->key - s)))
			return SMTP_PARSE_SYNTAX;
		i++;
	}
	p->key_len = (size_t)(s + i - p->key);
	if (p->key_len == 0)
		return SMTP_PARSE_SYNTAX;
	p->val = NULL;
	p->val_len = 0;
	if (i < n && s[i] == '=') {
		i++;
		p->val = s + i;
		while (i < n && s[i] != ' ') {
			unsigned char c = (unsigned char)s[i];

			if (c < 33 || c == '=' || c == 127)
				return SMTP_PARSE_SYNTAX;
			i++;
		}
		p->val_len = (size_t)(s + i - p->val);
		if (p->val_len == 0)
			return SMTP_PARSE_SYNTAX;
	}
	*off = i;
	return 1;
}

void smtp_parse_normalize_domain(struct smtp_path *path)
{
	if (path->flags & (SMTP_PATH_NULL | SMTP_PATH_LITERAL | SMTP_PATH_NO_DOMAIN) ||
	    path->domain_off >= path->len)
		return;
	ascii_lower_copy(path->addr + path->domain_off, path->addr + path->domain_off,
			path->len - path->domain_off);
	if (path->len > path->domain_off + 1 && path->addr[path->len - 1] == '.') {
		path->len--;
		path->addr[path->len] = '\0';
	}
}
