/* SPDX-License-Identifier: MIT */
/*
 * route: see route.h. Picking is a lookup in the live domain table and two
 * string copies; resolving splits the target as Postfix reads relayhost and
 * transport entries (brackets: that host's addresses; none: its MX) and
 * leaves every name to core/resolver. No state of its own.
 */
#include "proto/route.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/ascii.h"

/* RFC 5321 4.1.3: an IPv6 address literal is "[IPv6:addr]". */
#define ROUTE_IPV6_TAG "IPv6:"

static const char *const route_kind_names[] = {
	[ROUTE_TABLE] = "route",
	[ROUTE_DEST] = "dest",
	[ROUTE_RELAYHOST] = "relayhost",
	[ROUTE_MX] = "mx",
};

const char *route_kind_name(enum route_kind k)
{
	if ((unsigned)k >= sizeof(route_kind_names) / sizeof(route_kind_names[0]))
		return "?";
	return route_kind_names[k];
}

/* Copy len bytes of src into target; "" when they do not fit, so a cut
 * name never routes mail somewhere else (route_resolve refuses ""). */
static void route_copy(char *target, size_t tlen, const char *src, size_t len)
{
	if (!tlen)
		return;
	if (len >= tlen)
		len = 0;
	memcpy(target, src, len);
	target[len] = '\0';
}

enum route_kind route_pick(const struct domtab *t, const char *relayhost, const char *dom,
			   size_t len, char *target, size_t tlen)
{
	const char *r = t ? domtab_route(t, dom, len) : NULL;
	const struct domtab_row *row;

	if (r) {
		route_copy(target, tlen, r, strlen(r));
		return ROUTE_TABLE;
	}
	row = t ? domtab_find(t, dom, len) : NULL;
	if (row && row->dest && row->dest[0]) {
		route_copy(target, tlen, row->dest, strlen(row->dest));
		return ROUTE_DEST;
	}
	if (relayhost && relayhost[0]) {
		route_copy(target, tlen, relayhost, strlen(relayhost));
		return ROUTE_RELAYHOST;
	}
	route_copy(target, tlen, dom, len);
	return ROUTE_MX;
}

/*
 * A target that cannot be routed, settled at once. A mail domain that is no
 * domain is permanent (the mail can never go); a route or relayhost typo is
 * the operator's, fixed in Redis or the config: temporary, mail waits.
 */
static int route_malformed(enum route_kind kind, const char *target, struct resolver_list *now)
{
	now->err = -EINVAL;
	now->permanent = kind == ROUTE_MX;
	snprintf(now->why, sizeof(now->why), "malformed %s \"%.200s\"", route_kind_name(kind),
		 target);
	return 1;
}

/* A numeric destination: its one address into now. */
static int route_numeric(const struct resolver_result *res, struct resolver_list *now)
{
	struct resolver_addr *a = &now->a[0];

	memcpy(&a->addr, &res->addr, sizeof(a->addr));
	a->addrlen = res->addrlen;
	memcpy(a->host, res->host, sizeof(a->host));
	memcpy(a->relay, res->relay, sizeof(a->relay));
	now->n = 1;
	return 1;
}

int route_resolve(struct resolver *r, enum route_kind kind, const char *target,
		  resolver_list_cb cb, void *arg, struct resolver_list *now)
{
	char host[RESOLVER_NAME_MAX], lit[RESOLVER_NAME_MAX];
	struct resolver_result res;
	const char *dest = target;
	unsigned port;
	int bracketed, rc;

	memset(now, 0, sizeof(*now));
	/* A recipient's address literal, user@[IPv6:2001:db8::1]. */
	if (kind == ROUTE_MX && dest[0] == '[' &&
	    ascii_eq_n(dest + 1, ROUTE_IPV6_TAG, strlen(ROUTE_IPV6_TAG))) {
		if (snprintf(lit, sizeof(lit), "[%s", dest + 1 + strlen(ROUTE_IPV6_TAG)) >=
		    (int)sizeof(lit))
			return route_malformed(kind, target, now);
		dest = lit;
	}
	rc = resolver_numeric(dest, RESOLVER_SMTP_PORT, &res);
	if (rc == 1)
		return route_numeric(&res, now);
	if (rc < 0 || resolver_dest_split(dest, host, sizeof(host), RESOLVER_SMTP_PORT, &port,
					  &bracketed))
		return route_malformed(kind, target, now);
	/* A mail domain is a bare name: no port, and brackets only around an
	 * address literal (RFC 5321 4.1.3), which resolver_numeric took. */
	if (kind == ROUTE_MX && (bracketed || strchr(dest, ':')))
		return route_malformed(kind, target, now);
	if (!r)
		return -ESHUTDOWN;
	/* A row's dest is a host, as the drains resolve it; a route or
	 * relayhost without brackets is a mail domain (Postfix's rule). */
	rc = resolver_route(r, host, port, kind == ROUTE_MX || (kind != ROUTE_DEST && !bracketed),
			    cb, arg);
	return rc == -EINVAL ? route_malformed(kind, target, now) : rc;
}
