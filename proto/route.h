/* SPDX-License-Identifier: MIT */
/*
 * route: where the outbound scheduler sends a domain's mail (DESIGN.md 6b).
 * First the domain table's route (Redis etrnd:route:<domain>, core/domtab.h),
 * then the domain row's dest (a mode deliver customer's own server, as its
 * drains use it: that host's addresses, never its MX), then the config's
 * relayhost, then the domain's own MX. A route or
 * relayhost in brackets ("[host]:port") is one host's addresses; without
 * brackets ("host[:port]") it is looked up as a mail domain (its MX, Postfix's
 * rule). The MX of a domain: RFC 5321 5.1 (every MX by preference, then the
 * domain's own A/AAAA when it has none), a null MX (RFC 7505) a permanent
 * failure the scheduler bounces. Numeric targets settle at once; names go to
 * the process's one bounded resolver (core/resolver.h).
 */
#ifndef ETRND_PROTO_ROUTE_H
#define ETRND_PROTO_ROUTE_H

#include <stddef.h>

#include "core/domtab.h"
#include "core/resolver.h"

enum route_kind {
	ROUTE_TABLE = 0,    /* etrnd:route:<domain> */
	ROUTE_DEST,         /* the domain row's dest ("host[:port]") */
	ROUTE_RELAYHOST,    /* the config's relayhost */
	ROUTE_MX,           /* the domain's own MX */
};

/* Where dom's mail goes: the route's kind, and into target (size tlen) the
 * text to resolve (the route or relayhost as written, or the domain for
 * MX). Pure; any thread that may read t. */
enum route_kind route_pick(const struct domtab *t, const char *relayhost, const char *dom,
		size_t len, char *target, size_t tlen);

/* The kind's name for logs and status ("route", "relayhost", "mx"). */
const char *route_kind_name(enum route_kind k);

/*
 * Resolve target (as route_pick() gave it for kind) into the addresses to
 * try, in order. A numeric target (or one that cannot parse): *now is
 * filled and 1 returned, cb never runs. Else the look-up starts on r and 0
 * is returned: cb(arg, res) then runs once on the resolver's thread (copy
 * what you keep); -errno when it could not start (-EAGAIN: too many
 * look-ups pending; cb does not run).
 */
int route_resolve(struct resolver *r, enum route_kind kind, const char *target,
		resolver_list_cb cb, void *arg, struct resolver_list *now);

#endif
