/* SPDX-License-Identifier: MIT */
/*
 * schema: validators and row decoding for the Redis schema (schema.h). Every
 * validator says what it wanted, so etrnctl's message and the daemon's log
 * line tell an operator how to fix the value.
 */
#include "admin/schema.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ascii.h"
#include "core/config.h"
#include "core/log.h"
#include "core/units.h"
#include "core/why.h"

int schema_domain_norm(const char *in, int wildcard, char *out, char *w, size_t wl)
{
	size_t n = strlen(in), skip = 0;
	char show[80];

	log_printable(show, sizeof(show), in, n); /* Redis, a CSV file: untrusted */
	if (n > 0 && in[n - 1] == '.')
		n--;
	if (n >= 2 && in[0] == '*' && in[1] == '.') {
		if (!wildcard)
			return why_set(w, wl, "\"%s\": a wildcard is not allowed here", show);
		skip = 2;
	}
	if (n == 0)
		return why_set(w, wl, "empty domain name");
	if (n > DOMTAB_NAME_MAX)
		return why_set(w, wl, "\"%s\": longer than %d characters", show, DOMTAB_NAME_MAX);
	if (in[0] == '[')
		return why_set(w, wl, "\"%s\": an address literal is not a domain", show);
	switch (config_host_labels(in + skip, n - skip)) {
	case 0:
		return why_set(w, wl, "\"%s\": not a domain name (want letters, digits and hyphens in dot-separated labels, like example.com%s)",
			   show, wildcard ? " or *.example.com" : "");
	case 1:
		return why_set(w, wl, "\"%s\": want at least two labels, like example.com", show);
	default:
		break;
	}
	ascii_lower_copy(out, in, n);
	out[n] = '\0';
	return 0;
}

int schema_dest_check(const char *s, char *w, size_t wl)
{
	static const char want[] = "want mx, host, host:port or [IPv6]:port";
	const char *port = NULL;
	size_t n = strlen(s), hl;
	char host[INET6_ADDRSTRLEN + 1];
	struct in6_addr a6;

	if (!strcmp(s, "mx"))
		return 0;
	if (n == 0 || n >= SCHEMA_DEST_MAX)
		return why_set(w, wl, "empty or overlong destination (%s)", want);
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || (size_t)(rb - s - 1) >= sizeof(host))
			return why_set(w, wl, "\"%s\": %s", s, want);
		hl = (size_t)(rb - s - 1);
		memcpy(host, s + 1, hl);
		host[hl] = '\0';
		if (inet_pton(AF_INET6, host, &a6) != 1)
			return why_set(w, wl, "\"%s\": bad IPv6 address (%s)", s, want);
		if (rb[1] == ':')
			port = rb + 2;
		else if (rb[1])
			return why_set(w, wl, "\"%s\": %s", s, want);
	} else {
		const char *colon = strchr(s, ':');

		hl = colon ? (size_t)(colon - s) : n;
		if (colon && strchr(colon + 1, ':'))
			return why_set(w, wl, "\"%s\": put an IPv6 address in brackets, like [2001:db8::1]:25", s);
		if (config_host_labels(s, hl) == 0)
			return why_set(w, wl, "\"%s\": bad host name (%s)", s, want);
		if (colon)
			port = colon + 1;
	}
	if (port) {
		char *end;
		unsigned long p;

		errno = 0;
		p = isdigit((unsigned char)*port) ? strtoul(port, &end, 10) : 0;
		if (!isdigit((unsigned char)*port) || *end || errno || p == 0 || p > 65535)
			return why_set(w, wl, "\"%s\": bad port (want 1 to 65535)", s);
	}
	return 0;
}

int schema_duration_parse(const char *s, uint64_t *ms, char *w, size_t wl)
{
	char one[UNITS_WHY_MAX];
	uint64_t v;

	if (units_parse_duration(s, &v, one, sizeof(one)))
		return why_set(w, wl, "\"%s\": %s", s, one);
	if (v < CONFIG_MAX_HOLD_MIN_MS || v > CONFIG_MAX_HOLD_MAX_MS)
		return why_set(w, wl, "\"%s\": want a duration from %llus to %llud, as max_hold in etrnd.conf",
			   s, CONFIG_MAX_HOLD_MIN_MS / 1000, CONFIG_MAX_HOLD_MAX_MS / 86400000);
	*ms = v;
	return 0;
}

int schema_size_parse(const char *s, uint64_t *bytes, char *w, size_t wl)
{
	char one[UNITS_WHY_MAX];

	if (units_parse_size(s, bytes, one, sizeof(one)))
		return why_set(w, wl, "\"%s\": %s", s, one);
	return 0;
}

int schema_tls_parse(const char *s, enum domtab_tls *tls, char *w, size_t wl)
{
	if (!strcmp(s, "may"))
		*tls = DOMTAB_TLS_MAY;
	else if (!strcmp(s, "must"))
		*tls = DOMTAB_TLS_MUST;
	else if (!strcmp(s, "verify"))
		*tls = DOMTAB_TLS_VERIFY;
	else
		return why_set(w, wl, "\"%s\": want may, must or verify", s);
	return 0;
}

int schema_mode_parse(const char *s, enum domtab_mode *mode, char *w, size_t wl)
{
	if (!strcmp(s, "hold"))
		*mode = DOMTAB_MODE_HOLD;
	else if (!strcmp(s, "deliver"))
		*mode = DOMTAB_MODE_DELIVER;
	else
		return why_set(w, wl, "\"%.64s\": want hold or deliver", s);
	return 0;
}

int schema_onoff_parse(const char *s, int *on, char *w, size_t wl)
{
	if (!strcmp(s, "on"))
		*on = 1;
	else if (!strcmp(s, "off"))
		*on = 0;
	else
		return why_set(w, wl, "\"%.64s\": want on or off", s);
	return 0;
}

int schema_route_check(const char *s, char *w, size_t wl)
{
	if (domtab_route_dest_check(s))
		return why_set(w, wl, "\"%.64s%s\": want [host]:port (that host, no MX look-up), host:port or host (host's MX), port 1 to 65535",
			   s, strlen(s) > 64 ? "..." : "");
	return 0;
}

static int name_check(const char *what, const char *s, const char *extra, char *w, size_t wl)
{
	size_t n = strlen(s);

	if (n == 0 || n > SCHEMA_NAME_MAX)
		return why_set(w, wl, "%s name must be 1 to %d characters", what, SCHEMA_NAME_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (!isalnum(ch) && ch != '.' && ch != '_' && ch != '-' && !(ch && strchr(extra, ch)))
			return why_set(w, wl, "%s name \"%.64s\": only letters, digits and . _ -%s allowed",
				   what, s, extra[0] ? " @ +" : "");
	}
	return 0;
}

int schema_queue_check(const char *s, char *w, size_t wl)
{
	return name_check("queue", s, "", w, wl);
}

int schema_user_check(const char *s, char *w, size_t wl)
{
	return name_check("user", s, "@+", w, wl);
}

int schema_row_from_fields(struct domtab_row *row, struct cidr *cidrs,
			   const char *name, const char *const *fv, size_t nfv,
			   char *w, size_t wl)
{
	char one[SCHEMA_WHY_MAX];
	int bad = 0;
	size_t o = 0;

	memset(row, 0, sizeof(*row));
	row->name = name;
	if (w && wl)
		w[0] = '\0';
	for (size_t i = 0; i + 1 < nfv; i += 2) {
		const char *f = fv[i], *v = fv[i + 1];
		int rc = 0;

		one[0] = '\0';
		if (!strcmp(f, SCHEMA_F_QUEUE)) {
			if (!(rc = schema_queue_check(v, one, sizeof(one))))
				row->queue = v;
		} else if (!strcmp(f, SCHEMA_F_DEST)) {
			if (!(rc = schema_dest_check(v, one, sizeof(one))))
				row->dest = strcmp(v, "mx") ? v : NULL;
		} else if (!strcmp(f, SCHEMA_F_ETRN_FROM)) {
			rc = cidr_list_parse(v, cidrs, DOMTAB_CIDR_MAX, &row->netrn_from,
						    one, sizeof(one));
			row->etrn_from = rc ? NULL : cidrs;
			if (rc)
				row->netrn_from = 0;
		} else if (!strcmp(f, SCHEMA_F_OWNER)) {
			if (!(rc = schema_user_check(v, one, sizeof(one))))
				row->owner = v;
		} else if (!strcmp(f, SCHEMA_F_MAX_HOLD)) {
			rc = schema_duration_parse(v, &row->max_hold_ms, one, sizeof(one));
		} else if (!strcmp(f, SCHEMA_F_QUOTA)) {
			rc = schema_size_parse(v, &row->quota_bytes, one, sizeof(one));
		} else if (!strcmp(f, SCHEMA_F_TLS)) {
			rc = schema_tls_parse(v, &row->tls, one, sizeof(one));
		} else if (!strcmp(f, SCHEMA_F_MODE)) {
			rc = schema_mode_parse(v, &row->mode, one, sizeof(one));
		} else if (!strcmp(f, SCHEMA_F_RCPT_CHECK)) {
			rc = schema_onoff_parse(v, &row->rcpt_check, one, sizeof(one));
		}
		if (rc) {
			int r;

			bad++;
			if (w && o < wl) {
				r = snprintf(w + o, wl - o, "%s%s: %s", o ? "; " : "", f, one);
				o = r < 0 ? wl : o + (size_t)r;
			}
		}
	}
	return bad;
}

char *schema_key(char *buf, size_t len, const char *prefix, const char *kind,
		 const char *name)
{
	int r = snprintf(buf, len, "%s%s{%s}", prefix, kind, name);

	return r < 0 || (size_t)r >= len ? NULL : buf;
}

char *schema_key_untagged(char *buf, size_t len, const char *prefix, const char *kind,
			  const char *name)
{
	int r = snprintf(buf, len, "%s%s%s", prefix, kind, name);

	return r < 0 || (size_t)r >= len ? NULL : buf;
}

int schema_key_name(const char *rest, size_t len, const char **name, size_t *nlen)
{
	int tagged = len >= 2 && rest[0] == '{' && rest[len - 1] == '}';
	const char *p = tagged ? rest + 1 : rest;
	size_t n = tagged ? len - 2 : len;

	/* Cluster hashes the text between the first '{' and the next '}':
	 * one pair around the whole name, nothing else, or not ours. */
	if (n == 0 || memchr(p, '{', n) || memchr(p, '}', n))
		return -1;
	*name = p;
	*nlen = n;
	return tagged;
}
