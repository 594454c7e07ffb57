/* SPDX-License-Identifier: MIT */
/*
 * resolver_list: see resolver_list.h. MX records are sorted by insertion
 * into a bounded array (the best RESOLVER_LIST_MX_MAX survive); addresses
 * are appended in place, compared whole to drop duplicates (two MX names
 * for one machine must not count twice against the address limit).
 */
#include "core/resolver_list.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "core/ascii.h"

struct resolver_list_rec {
	unsigned short pref;
	const char *host;
};

/* Insert (pref, host) into the sorted recs (n of max used) after the
 * records of equal preference; when full, the worst record falls off. */
static void resolver_list_insert(struct resolver_list_rec *recs, unsigned *n, unsigned max,
				 unsigned short pref, const char *host)
{
	unsigned i = *n;

	if (i == max) {
		if (recs[max - 1].pref <= pref)
			return;
		i--; /* overwrite the worst */
	} else {
		(*n)++;
	}
	for (; i > 0 && recs[i - 1].pref > pref; i--)
		recs[i] = recs[i - 1];
	recs[i] = (struct resolver_list_rec){ pref, host };
}

/* Shuffle each run of equal preference (Fisher-Yates). Without random bytes
 * (getrandom failed) the answer's order stays: still a correct route. */
static void resolver_list_shuffle(struct resolver_list_rec *recs, unsigned n)
{
	uint32_t rnd[RESOLVER_LIST_MX_MAX];

	if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
		return;
	for (unsigned start = 0, end; start < n; start = end) {
		for (end = start + 1; end < n && recs[end].pref == recs[start].pref; end++)
			;
		for (unsigned i = end - 1; i > start; i--) {
			unsigned j = start + rnd[i] % (i - start + 1);
			struct resolver_list_rec t = recs[i];
			recs[i] = recs[j];
			recs[j] = t;
		}
	}
}

int resolver_list_sort_mx(const struct ares_mx_reply *mx, struct resolver_list_mx *out,
			  int shuffle)
{
	struct resolver_list_rec recs[RESOLVER_LIST_MX_MAX];
	unsigned n = 0;
	int any = 0;

	out->n = 0;
	for (; mx; mx = mx->next) {
		any = 1;
		/* RFC 7505 3: a "." among real MX records is an error of the
		 * zone; the real ones still route. */
		if (!mx->host || mx->host[0] == '\0' || !strcmp(mx->host, "."))
			continue;
		resolver_list_insert(recs, &n, RESOLVER_LIST_MX_MAX, mx->priority, mx->host);
	}
	if (!n)
		return any ? 0 : -1;
	if (shuffle)
		resolver_list_shuffle(recs, n);
	for (unsigned i = 0; i < n; i++) {
		out->pref[i] = recs[i].pref;
		snprintf(out->host[i], sizeof(out->host[i]), "%s", recs[i].host);
	}
	out->n = n;
	return 1;
}

/* A name's length without one trailing dot. */
static size_t resolver_list_name_len(const char *name)
{
	size_t len = strlen(name);

	return len > 1 && name[len - 1] == '.' ? len - 1 : len;
}

unsigned resolver_list_drop_self(struct resolver_list_mx *mx, const char *self)
{
	size_t slen = self ? resolver_list_name_len(self) : 0;

	if (!slen)
		return mx->n;
	for (unsigned i = 0; i < mx->n; i++) {
		if (resolver_list_name_len(mx->host[i]) != slen ||
		    !ascii_eq_n(mx->host[i], self, slen))
			continue;
		/* Sorted: the first host of self's preference ends the list
		 * (hosts of equal preference may stand before self). */
		for (unsigned j = 0; j <= i; j++) {
			if (mx->pref[j] >= mx->pref[i]) {
				mx->n = j;
				break;
			}
		}
		break;
	}
	return mx->n;
}

void resolver_list_addr_set(struct resolver_addr *a, const char *host,
			    const struct sockaddr *sa, socklen_t salen, unsigned port)
{
	char text[INET6_ADDRSTRLEN] = "?";

	memset(&a->addr, 0, sizeof(a->addr));
	memcpy(&a->addr, sa, salen);
	a->addrlen = salen;
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&a->addr;
		s4->sin_port = htons((uint16_t)port);
		inet_ntop(AF_INET, &s4->sin_addr, text, sizeof(text));
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->addr;
		s6->sin6_port = htons((uint16_t)port);
		inet_ntop(AF_INET6, &s6->sin6_addr, text, sizeof(text));
	}
	snprintf(a->host, sizeof(a->host), "%s", host);
	snprintf(a->relay, sizeof(a->relay), "%.200s[%s]:%u", host, text, port);
}

int resolver_list_add(struct resolver_list *l, const char *host, const struct sockaddr *sa,
		      socklen_t salen, unsigned port)
{
	struct resolver_addr *a;

	if (l->n >= RESOLVER_ADDRS_MAX || salen > sizeof(a->addr) ||
	    (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
		return 0;
	a = &l->a[l->n];
	resolver_list_addr_set(a, host, sa, salen, port);
	for (unsigned i = 0; i < l->n; i++)
		if (l->a[i].addrlen == a->addrlen && !memcmp(&l->a[i].addr, &a->addr, a->addrlen))
			return 0;
	l->n++;
	return 1;
}

unsigned resolver_list_add_nodes(struct resolver_list *l, const char *host,
				 const struct ares_addrinfo_node *nodes, unsigned port)
{
	static const int family[] = { AF_INET, AF_INET6 };
	unsigned added = 0;

	for (size_t f = 0; f < sizeof(family) / sizeof(family[0]); f++)
		for (const struct ares_addrinfo_node *n = nodes; n; n = n->ai_next)
			if (n->ai_family == family[f] && n->ai_addr)
				added += (unsigned)resolver_list_add(l, host, n->ai_addr,
								     n->ai_addrlen, port);
	return added;
}
