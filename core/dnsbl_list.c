/* SPDX-License-Identifier: MIT */
/*
 * dnsbl_list: the DNSBL site list, query names, answer filters and the
 * reject text (dnsbl_list.h). Pure: parsing is by hand over the bytes
 * given, with every length checked before a copy; filters are bitmaps, one
 * per octet, so a match is four bit tests.
 */
#include "core/dnsbl_list.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ascii.h"
#include "core/config.h"
#include "core/why.h"

#define DL_LOOPBACK_NET 127      /* RFC 5782 2.1: answers are in 127.0.0.0/8 */
#define DL_ERROR_NET 255         /* 127.255.255.0/24: lists' error answers */
#define DL_QUOTE_MAX 60          /* how much of a bad item a reason quotes */
/* The longest expansion of $client ("ffff:...:ffff") and of $site. */
#define DL_CLIENT_TEXT_MAX 46    /* INET6_ADDRSTRLEN */

static void dl_bit_set(struct dnsbl_octets *o, unsigned v)
{
	o->bit[v / 8] |= (uint8_t)(1u << (v % 8));
}

static int dl_bit(const struct dnsbl_octets *o, unsigned v)
{
	return (o->bit[v / 8] >> (v % 8)) & 1;
}

/* A decimal octet value at *p (before end): 0..255, at most 3 digits.
 * Advances *p. Returns the value or -1. */
static int dl_number(const char **p, const char *end)
{
	unsigned v = 0, nd = 0;

	while (*p < end && isdigit((unsigned char)**p) && nd < 4) {
		v = v * 10 + (unsigned)(**p - '0');
		(*p)++;
		nd++;
	}
	return nd == 0 || nd > 3 || v > 255 ? -1 : (int)v;
}

/* One octet of a pattern: "N" or "[N;A..B;...]". Advances *p. 0 or -1. */
static int dl_octet(const char **p, const char *end, struct dnsbl_octets *o)
{
	int a, b;

	if (*p >= end)
		return -1;
	if (**p != '[') {
		if ((a = dl_number(p, end)) < 0)
			return -1;
		dl_bit_set(o, (unsigned)a);
		return 0;
	}
	(*p)++;
	for (;;) {
		if ((a = dl_number(p, end)) < 0)
			return -1;
		b = a;
		if (end - *p >= 2 && (*p)[0] == '.' && (*p)[1] == '.') {
			*p += 2;
			if ((b = dl_number(p, end)) < 0 || b < a)
				return -1;
		}
		for (int v = a; v <= b; v++)
			dl_bit_set(o, (unsigned)v);
		if (*p >= end)
			return -1;
		if (**p == ']') {
			(*p)++;
			return 0;
		}
		if (**p != ';')
			return -1;
		(*p)++;
	}
}

/* The filter after '=' ([p, end)): patterns separated by ';' outside
 * brackets. 0 or -1. */
static int dl_filter(struct dnsbl_site *s, const char *p, const char *end)
{
	for (;;) {
		struct dnsbl_pattern *pat;

		if (s->npatterns == DNSBL_PATTERNS_MAX)
			return -1;
		pat = &s->pat[s->npatterns++];
		for (unsigned i = 0; i < 4; i++) {
			if (dl_octet(&p, end, &pat->o[i]))
				return -1;
			if (i < 3 && (p >= end || *p++ != '.'))
				return -1;
		}
		if (p == end)
			return 0;
		if (*p++ != ';')
			return -1;
	}
}

/* "*weight": an optional '-' and at most four digits. 0 or -1. */
static int dl_weight(const char *p, const char *end, int *w)
{
	int neg = 0;
	long v = 0;

	if (p < end && *p == '-') {
		neg = 1;
		p++;
	}
	if (p == end || end - p > 4)
		return -1;
	for (; p < end; p++) {
		if (!isdigit((unsigned char)*p))
			return -1;
		v = v * 10 + (*p - '0');
	}
	if (v > DNSBL_WEIGHT_LIMIT)
		return -1;
	*w = neg ? (int)-v : (int)v;
	return 0;
}

/* One item [p, p + n) into *s. 0 or -1 with why. */
static int dl_item(struct dnsbl_site *s, const char *p, size_t n, char *why, size_t wl)
{
	const char *end = p + n, *eq, *star, *name_end;
	size_t nl;

	memset(s, 0, sizeof(*s));
	if (n >= sizeof(s->spec))
		return why_set(why, wl, "dnsbl item \"%.*s...\" is longer than %d characters",
			      DL_QUOTE_MAX, p, DNSBL_ITEM_MAX - 1);
	memcpy(s->spec, p, n);
	s->weight = 1;
	star = memchr(p, '*', n);
	eq = memchr(p, '=', n);
	if (eq && star && star < eq)
		return why_set(why, wl, "dnsbl item \"%s\": the =filter comes before the *weight",
			      s->spec);
	name_end = eq ? eq : star ? star : end;
	nl = (size_t)(name_end - p);
	if (nl && p[nl - 1] == '.')
		nl--;
	if (nl == 0 || nl >= sizeof(s->name) || config_host_labels(p, nl) == 0)
		return why_set(why, wl, "dnsbl item \"%s\": \"%.*s\" is not a DNS name of at most %d characters",
			      s->spec, (int)nl, p, DNSBL_SITE_NAME_MAX - 1);
	ascii_lower_copy(s->name, p, nl);
	if (eq && dl_filter(s, eq + 1, star ? star : end))
		return why_set(why, wl, "dnsbl item \"%s\": bad filter \"%.*s\" (want up to %d patterns like 127.0.0.2 or 127.0.[0..255].[2;4..11], ';' between them)",
			      s->spec, (int)((star ? star : end) - eq - 1), eq + 1,
			      DNSBL_PATTERNS_MAX);
	if (star && dl_weight(star + 1, end, &s->weight))
		return why_set(why, wl, "dnsbl item \"%s\": bad weight \"%.*s\" (want an integer from -%d to %d)",
			      s->spec, (int)(end - star - 1), star + 1, DNSBL_WEIGHT_LIMIT,
			      DNSBL_WEIGHT_LIMIT);
	return 0;
}

static int dl_sep(char c)
{
	return c == ',' || c == ' ' || c == '\t';
}

int dnsbl_list_parse(struct dnsbl_list *l, const char *s, size_t len, char *why, size_t whylen)
{
	struct dnsbl_list *tmp;
	size_t i = 0;

	if (len == 4 && !memcmp(s, "none", 4))
		len = 0;
	tmp = calloc(1, sizeof(*tmp));
	if (!tmp)
		return why_set(why, whylen, "out of memory");
	while (i < len) {
		size_t start;

		while (i < len && dl_sep(s[i]))
			i++;
		if (i == len)
			break;
		start = i;
		while (i < len && !dl_sep(s[i]))
			i++;
		if (tmp->n == DNSBL_SITES_MAX) {
			free(tmp);
			return why_set(why, whylen, "more than %d dnsbl items", DNSBL_SITES_MAX);
		}
		if (dl_item(&tmp->site[tmp->n], s + start, i - start, why, whylen)) {
			free(tmp);
			return -1;
		}
		tmp->site[tmp->n].query = tmp->n;
		for (unsigned k = 0; k < tmp->n; k++)
			if (!strcmp(tmp->site[k].name, tmp->site[tmp->n].name)) {
				tmp->site[tmp->n].query = tmp->site[k].query;
				break;
			}
		tmp->n++;
	}
	memcpy(l, tmp, sizeof(*l));
	free(tmp);
	return 0;
}

int dnsbl_list_query(const char *client, const char *site, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char a[16];
	size_t o = 0;
	int n;

	if (inet_pton(AF_INET, client, a) == 1) {
		n = snprintf(out, outlen, "%u.%u.%u.%u.%s", a[3], a[2], a[1], a[0], site);
		return n < 0 || (size_t)n >= outlen ? -1 : 0;
	}
	if (inet_pton(AF_INET6, client, a) != 1)
		return -1;
	/* A v4-mapped address (::ffff:a.b.c.d) is an IPv4 client. */
	if (!memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12)) {
		n = snprintf(out, outlen, "%u.%u.%u.%u.%s", a[15], a[14], a[13], a[12], site);
		return n < 0 || (size_t)n >= outlen ? -1 : 0;
	}
	if (outlen < 64 + strlen(site) + 1)
		return -1;
	for (int i = 15; i >= 0; i--) {
		out[o++] = hex[a[i] & 0xf];
		out[o++] = '.';
		out[o++] = hex[a[i] >> 4];
		out[o++] = '.';
	}
	memcpy(out + o, site, strlen(site) + 1);
	return 0;
}

int dnsbl_list_match(const struct dnsbl_site *site, const uint8_t answer[4])
{
	if (site->npatterns == 0)
		return answer[0] == DL_LOOPBACK_NET &&
		       !(answer[1] == DL_ERROR_NET && answer[2] == DL_ERROR_NET);
	for (unsigned i = 0; i < site->npatterns; i++) {
		const struct dnsbl_pattern *p = &site->pat[i];

		if (dl_bit(&p->o[0], answer[0]) && dl_bit(&p->o[1], answer[1]) &&
		    dl_bit(&p->o[2], answer[2]) && dl_bit(&p->o[3], answer[3]))
			return 1;
	}
	return 0;
}

/* The variable at p (a '$'): its length, and *val the text; 0 when none. */
static size_t dl_var(const char *p, const char *client, const char *site, const char **val)
{
	if (!strncmp(p, "$client", 7)) {
		*val = client;
		return 7;
	}
	if (!strncmp(p, "$site", 5)) {
		*val = site;
		return 5;
	}
	return 0;
}

int dnsbl_list_reply_check(const char *tmpl, char *why, size_t whylen)
{
	char longest_site[DNSBL_SITE_NAME_MAX], longest_client[DL_CLIENT_TEXT_MAX];
	char out[DNSBL_REPLY_MAX * 4];
	size_t n = strlen(tmpl);

	if (n < 10 || !(!strncmp(tmpl, "554 5.7.", 8) || !strncmp(tmpl, "421 4.7.", 8)))
		return why_set(why, whylen, "\"%.*s\" (want \"554 5.7.N text\" or \"421 4.7.N text\", RFC 5321 3.1)",
			      DL_QUOTE_MAX, tmpl);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)tmpl[i];
		const char *v;

		if (ch < ' ' || ch > '~')
			return why_set(why, whylen, "\"%.*s\": printable ASCII only", DL_QUOTE_MAX, tmpl);
		if (ch == '$' && dl_var(tmpl + i, "", "", &v) == 0)
			return why_set(why, whylen, "\"%.*s\": unknown variable at \"%.*s\" (want $client or $site)",
				      DL_QUOTE_MAX, tmpl, 12, tmpl + i);
	}
	/* The code, a space, the enhanced code's digits and a space. */
	{
		size_t i = 8;

		while (i < n && isdigit((unsigned char)tmpl[i]) && i < 11)
			i++;
		if (i == 8 || i >= n || tmpl[i] != ' ')
			return why_set(why, whylen, "\"%.*s\" (want \"554 5.7.N text\" or \"421 4.7.N text\", RFC 5321 3.1)",
				      DL_QUOTE_MAX, tmpl);
	}
	memset(longest_site, 'x', sizeof(longest_site) - 1);
	longest_site[sizeof(longest_site) - 1] = '\0';
	memset(longest_client, 'f', sizeof(longest_client) - 1);
	longest_client[sizeof(longest_client) - 1] = '\0';
	if (dnsbl_list_reply(tmpl, longest_client, longest_site, out, sizeof(out)) >=
	    DNSBL_REPLY_MAX)
		return why_set(why, whylen, "\"%.*s...\" is too long: at most %d characters with $client and $site expanded",
			      DL_QUOTE_MAX, tmpl, DNSBL_REPLY_MAX - 1);
	return 0;
}

size_t dnsbl_list_reply(const char *tmpl, const char *client, const char *site, char *out,
			size_t outlen)
{
	size_t o = 0;

	if (outlen == 0)
		return 0;
	for (const char *p = tmpl; *p && o + 1 < outlen;) {
		const char *val;
		size_t k = *p == '$' ? dl_var(p, client, site, &val) : 0;

		if (k == 0) {
			out[o++] = *p++;
			continue;
		}
		for (; *val && o + 1 < outlen; val++)
			out[o++] = *val;
		p += k;
	}
	out[o] = '\0';
	return o;
}
