/* SPDX-License-Identifier: MIT */
/*
 * resolver_list: the pure half of mail routing for core/resolver.c, which
 * alone calls it: an MX answer sorted into the hosts to try (RFC 5321 5.1,
 * RFC 7505 null MX) and the addresses of those hosts gathered into a
 * struct resolver_list (bounded, no duplicates). No DNS, no threads, no
 * allocation: everything lives in the caller's structs.
 */
#ifndef ETRND_CORE_RESOLVER_LIST_H
#define ETRND_CORE_RESOLVER_LIST_H

#include <ares.h>

#include "core/resolver.h"

/* MX hosts kept per domain, the lowest preferences. Five addresses
 * (RESOLVER_ADDRS_MAX) seldom need more than five hosts; the rest covers
 * hosts that do not resolve and are skipped. */
#define RESOLVER_LIST_MX_MAX 16

struct resolver_list_mx {
	unsigned n;
	unsigned short pref[RESOLVER_LIST_MX_MAX];
	char host[RESOLVER_LIST_MX_MAX][RESOLVER_NAME_MAX];
};

/*
 * The MX records of mx (c-ares' parsed reply; not kept) into out, by
 * preference, lowest first; equal preferences keep the answer's order, or
 * are shuffled when shuffle is 1 (RFC 5321 5.1: spread the load). A "."
 * (or empty) exchange is skipped. Returns 1 (out->n >= 1), 0 when the only
 * records are "." (a null MX, RFC 7505: the domain takes no mail), -1 when
 * there is no MX record at all.
 */
int resolver_list_sort_mx(const struct ares_mx_reply *mx, struct resolver_list_mx *out,
		int shuffle);

/* RFC 5321 5.1: when self (this host's name, any case, a trailing dot
 * ignored; NULL or "" = none) is among the sorted hosts of mx, drop every
 * host whose preference is that of self or higher (self included), so mail
 * only goes to better MX hosts. Returns the hosts left (mx->n); 0 means
 * self is the best MX: delivering would loop. */
unsigned resolver_list_drop_self(struct resolver_list_mx *mx, const char *self);

/* Fill a with sa (salen bytes), the port set, host, and relay text
 * "host[addr]:port" (host cut to fit). */
void resolver_list_addr_set(struct resolver_addr *a, const char *host,
		const struct sockaddr *sa, socklen_t salen, unsigned port);

/* Append sa as host's address unless l is full or holds that address and
 * port already. Returns 1 appended, 0 not. */
int resolver_list_add(struct resolver_list *l, const char *host, const struct sockaddr *sa,
		socklen_t salen, unsigned port);

/* Append host's addresses from c-ares nodes: IPv4 first, then IPv6, each
 * family in the order c-ares gave. Returns the number appended. */
unsigned resolver_list_add_nodes(struct resolver_list *l, const char *host,
		const struct ares_addrinfo_node *nodes, unsigned port);

#endif
