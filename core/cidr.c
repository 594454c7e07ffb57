/* SPDX-License-Identifier: MIT */
/*
 * cidr: see cidr.h. Moved here from admin/schema.c and core/domtab.c so that
 * the config (mynetworks) and the domain rows (etrn_from) share one copy.
 */
#include "core/cidr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ascii.h"
#include "core/why.h"

int cidr_parse(const char *s, size_t n, struct cidr *out, char *w, size_t wl)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash, *end;
	unsigned long bits;
	unsigned maxbits;

	if (n == 0 || n >= sizeof(buf))
		return why_set(w, wl, "\"%.*s\": not a network (want like 192.0.2.0/24 or 2001:db8::/32)",
			   (int)(n > 60 ? 60 : n), s);
	memcpy(buf, s, n);
	buf[n] = '\0';
	memset(out, 0, sizeof(*out));
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		maxbits = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		maxbits = 128;
	} else {
		return why_set(w, wl, "\"%.*s\": not a network (want like 192.0.2.0/24 or 2001:db8::/32)",
			   (int)n, s);
	}
	bits = maxbits;
	if (slash) {
		errno = 0;
		bits = isdigit((unsigned char)slash[1]) ? strtoul(slash + 1, &end, 10) : ~0ul;
		if (bits == ~0ul || *end || errno || bits > maxbits)
			return why_set(w, wl, "\"%.*s\": bad prefix length (want /0 to /%u)", (int)n, s,
				   maxbits);
	}
	out->prefix = (uint8_t)bits;
	for (unsigned i = bits; i < maxbits; i++) {
		if (out->addr[i / 8] & (0x80 >> (i % 8))) {
			char net[INET6_ADDRSTRLEN];
			struct cidr fix = *out;

			for (unsigned k = bits; k < maxbits; k++)
				fix.addr[k / 8] &= (uint8_t)~(0x80 >> (k % 8));
			inet_ntop(out->family, fix.addr, net, sizeof(net));
			return why_set(w, wl, "\"%.*s\": host bits set (did you mean %s/%lu?)", (int)n, s,
				   net, bits);
		}
	}
	return 0;
}

int cidr_list_parse(const char *s, struct cidr *out, unsigned max,
			   unsigned *n, char *w, size_t wl)
{
	unsigned k = 0;

	if (max > CIDR_LIST_MAX)
		max = CIDR_LIST_MAX;
	while (*s) {
		size_t len;

		while (*s == ',' || *s == ';' || *s == ' ' || *s == '\t')
			s++;
		if (!*s)
			break;
		len = strcspn(s, ",; \t");
		if (k == max)
			return why_set(w, wl, "more than %u networks", max);
		if (cidr_parse(s, len, &out[k], w, wl))
			return -1;
		k++;
		s += len;
	}
	*n = k;
	return 0;
}

int cidr_list_format(const struct cidr *c, unsigned n, char *out, size_t outlen)
{
	size_t o = 0;

	if (outlen == 0)
		return -1;
	out[0] = '\0';
	for (unsigned i = 0; i < n; i++) {
		char a[INET6_ADDRSTRLEN];
		int r;

		if (!inet_ntop(c[i].family, c[i].addr, a, sizeof(a)))
			return -1;
		r = snprintf(out + o, outlen - o, "%s%s/%u", i ? "," : "", a, c[i].prefix);
		if (r < 0 || (size_t)r >= outlen - o)
			return -1;
		o += (size_t)r;
	}
	return 0;
}

static int prefix_match(const uint8_t *a, const uint8_t *net, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;

	if (memcmp(a, net, full))
		return 0;
	if (rest) {
		uint8_t m = (uint8_t)(0xff << (8 - rest));

		if ((a[full] & m) != (net[full] & m))
			return 0;
	}
	return 1;
}

int cidr_list_match(const struct cidr *c, unsigned n, const struct sockaddr *addr)
{
	uint8_t a[16];
	int fam;

	if (addr->sa_family == AF_INET) {
		memcpy(a, &((const struct sockaddr_in *)addr)->sin_addr, 4);
		fam = AF_INET;
	} else if (addr->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)addr)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			memcpy(a, &a6->s6_addr[12], 4);
			fam = AF_INET;
		} else {
			memcpy(a, a6, 16);
			fam = AF_INET6;
		}
	} else {
		return 0;
	}
	for (unsigned i = 0; i < n; i++)
		if (c[i].family == fam && prefix_match(a, c[i].addr, c[i].prefix))
			return 1;
	return 0;
}

int cidr_peer_loopback(const char *peer)
{
	if (ascii_eq_n(peer, "::ffff:", sizeof("::ffff:") - 1))
		peer += sizeof("::ffff:") - 1;
	return strncmp(peer, "127.", 4) == 0 || strcmp(peer, "::1") == 0;
}
