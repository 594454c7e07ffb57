/* SPDX-License-Identifier: MIT */
/*
 * resolver_answer: see resolver_answer.h. c-ares parses the DNS message
 * (its per-type parsers follow CNAMEs and check the class); we only count,
 * bound and copy the records into one allocation the callback can borrow.
 */
#include "core/resolver_answer.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a c-ares status means: the table every lookup shares. */
static const struct {
	int status;
	int err;
	int permanent;
} resolver_answer_map[] = {
	{ ARES_SUCCESS, 0, 0 },
	{ ARES_ENOTFOUND, -ENOENT, 1 },     /* NXDOMAIN */
	{ ARES_ENODATA, -ENODATA, 1 },      /* name exists, no such record */
	{ ARES_EBADNAME, -EINVAL, 1 },
	{ ARES_ENONAME, -EINVAL, 1 },
	{ ARES_ENOMEM, -ENOMEM, 0 },
	{ ARES_EDESTRUCTION, -ECANCELED, 0 },
	{ ARES_ECANCELLED, -ECANCELED, 0 },
	/* Anything else (SERVFAIL, REFUSED, no reply): try later. */
};

void resolver_answer_status(int status, int *err, int *permanent)
{
	*err = -EAGAIN;
	*permanent = 0;
	for (size_t i = 0; i < sizeof(resolver_answer_map) / sizeof(resolver_answer_map[0]); i++) {
		if (resolver_answer_map[i].status == status) {
			*err = resolver_answer_map[i].err;
			*permanent = resolver_answer_map[i].permanent;
			return;
		}
	}
}

const char *resolver_answer_status_text(int status)
{
	return status == ARES_ENOTFOUND ? "NXDOMAIN" : ares_strerror(status);
}

const char *resolver_answer_type_name(enum resolver_rrtype type)
{
	switch (type) {
	case RESOLVER_T_A: return "A";
	case RESOLVER_T_AAAA: return "AAAA";
	case RESOLVER_T_MX: return "MX";
	case RESOLVER_T_TXT: return "TXT";
	case RESOLVER_T_PTR: return "PTR";
	}
	return "?";
}

/* The records found, before they are copied into the answer. A TXT record
 * made of several character-strings is one entry with parts. */
struct resolver_answer_tmp {
	unsigned n;
	int over;                         /* more than RESOLVER_RR_MAX */
	size_t bytes;                     /* data bytes, NULs included */
	struct resolver_rr rr[RESOLVER_RR_MAX];
	const struct ares_txt_ext *txt[RESOLVER_RR_MAX]; /* TXT: first part */
};

static void resolver_answer_add(struct resolver_answer_tmp *t, enum resolver_rrtype type,
				unsigned pref, const void *data, size_t len)
{
	if (t->n == RESOLVER_RR_MAX) {
		t->over = 1;
		return;
	}
	t->rr[t->n] = (struct resolver_rr){ .type = type, .pref = pref, .len = len, .data = data };
	t->n++;
	t->bytes += len + 1;
}

/* TXT: each record's parts (record_start marks a new record) as one entry. */
static void resolver_answer_txt(struct resolver_answer_tmp *t, const struct ares_txt_ext *txt)
{
	for (const struct ares_txt_ext *p = txt; p; p = p->next) {
		if (p->record_start || t->n == 0) {
			resolver_answer_add(t, RESOLVER_T_TXT, 0, NULL, 0);
			if (t->over)
				return;
			t->txt[t->n - 1] = p;
		}
		t->rr[t->n - 1].len += p->length;
		t->bytes += p->length;
	}
}

/* The answer: one block holding the struct, the records and their data. */
static struct resolver_answer *resolver_answer_copy(const struct resolver_answer_tmp *t)
{
	size_t head = sizeof(struct resolver_answer) + t->n * sizeof(struct resolver_rr);
	struct resolver_answer *a = calloc(1, head + t->bytes);
	struct resolver_rr *rr;
	char *d;

	if (!a)
		return NULL;
	rr = (struct resolver_rr *)(a + 1);
	d = (char *)a + head;
	for (unsigned i = 0; i < t->n; i++) {
		rr[i] = t->rr[i];
		rr[i].data = d;
		if (t->rr[i].type == RESOLVER_T_TXT) {
			size_t o = 0;
			for (const struct ares_txt_ext *p = t->txt[i]; p && o < t->rr[i].len;
			     p = p->next) {
				memcpy(d + o, p->txt, p->length);
				o += p->length;
			}
		} else {
			memcpy(d, t->rr[i].data, t->rr[i].len);
		}
		d[t->rr[i].len] = '\0';
		d += t->rr[i].len + 1;
	}
	a->n = t->n;
	a->rr = rr;
	return a;
}

/* The records of type from abuf into t; a c-ares status. Whatever c-ares
 * allocated is handed back in *mx, *txt, *host for the caller to free once
 * t has been copied (t borrows it). */
static int resolver_answer_collect(enum resolver_rrtype type, const unsigned char *abuf,
				   int alen, struct resolver_answer_tmp *t,
				   struct ares_mx_reply **mx, struct ares_txt_ext **txt,
				   struct hostent **host, void *addrs)
{
	static const struct in_addr ptr_addr; /* c-ares copies it; unused */
	int naddr = RESOLVER_RR_MAX + 1, st;

	switch (type) {
	case RESOLVER_T_A: {
		struct ares_addrttl *a = addrs;
		st = ares_parse_a_reply(abuf, alen, NULL, a, &naddr);
		for (int i = 0; st == ARES_SUCCESS && i < naddr; i++)
			resolver_answer_add(t, type, 0, &a[i].ipaddr, sizeof(a[i].ipaddr));
		return st;
	}
	case RESOLVER_T_AAAA: {
		struct ares_addr6ttl *a = addrs;
		st = ares_parse_aaaa_reply(abuf, alen, NULL, a, &naddr);
		for (int i = 0; st == ARES_SUCCESS && i < naddr; i++)
			resolver_answer_add(t, type, 0, &a[i].ip6addr, sizeof(a[i].ip6addr));
		return st;
	}
	case RESOLVER_T_MX:
		st = ares_parse_mx_reply(abuf, alen, mx);
		for (const struct ares_mx_reply *m = *mx; st == ARES_SUCCESS && m; m = m->next)
			resolver_answer_add(t, type, m->priority, m->host, strlen(m->host));
		return st;
	case RESOLVER_T_TXT:
		st = ares_parse_txt_reply_ext(abuf, alen, txt);
		if (st == ARES_SUCCESS)
			resolver_answer_txt(t, *txt);
		return st;
	case RESOLVER_T_PTR:
		st = ares_parse_ptr_reply(abuf, alen, &ptr_addr, sizeof(ptr_addr), AF_INET, host);
		/* Every PTR target is among the aliases (the name too). */
		for (char **al = st == ARES_SUCCESS ? (*host)->h_aliases : NULL; al && *al; al++)
			resolver_answer_add(t, type, 0, *al, strlen(*al));
		return st;
	}
	return ARES_ENOTIMP;
}

struct resolver_answer *resolver_answer_parse(enum resolver_rrtype type,
					      const unsigned char *abuf, int alen)
{
	struct resolver_answer_tmp *t = calloc(1, sizeof(*t));
	/* The larger of the two address arrays c-ares fills, one spare slot
	 * to see that there were too many. */
	void *addrs = calloc(RESOLVER_RR_MAX + 1, sizeof(struct ares_addr6ttl));
	struct ares_mx_reply *mx = NULL;
	struct ares_txt_ext *txt = NULL;
	struct hostent *host = NULL;
	struct resolver_answer *a = NULL;
	int st, err, permanent;

	if (!t || !addrs)
		goto out;
	st = resolver_answer_collect(type, abuf, alen, t, &mx, &txt, &host, addrs);
	if (st == ARES_SUCCESS && t->n == 0)
		st = ARES_ENODATA;
	resolver_answer_status(st, &err, &permanent);
	if (st == ARES_ENOTIMP) {
		err = -EINVAL;
		permanent = 1;
	}
	if (!err && t->over) {
		err = -E2BIG;
		permanent = 0;
	}
	if (err)
		t->n = 0;
	a = resolver_answer_copy(t);
	if (!a)
		goto out;
	a->err = err;
	a->permanent = permanent;
	if (err == -E2BIG)
		snprintf(a->why, sizeof(a->why), "%s answer: more than %d records",
			 resolver_answer_type_name(type), RESOLVER_RR_MAX);
	else if (err)
		snprintf(a->why, sizeof(a->why), "%s answer: %s", resolver_answer_type_name(type),
			 resolver_answer_status_text(st));
out:
	if (mx)
		ares_free_data(mx);
	if (txt)
		ares_free_data(txt);
	if (host)
		ares_free_hostent(host);
	free(addrs);
	free(t);
	return a;
}
