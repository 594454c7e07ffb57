/* SPDX-License-Identifier: MIT */
/*
 * dns_stub: a real DNS server on loopback UDP for tests, in a thread of the
 * test process: answers A, AAAA, MX, TXT and PTR from a fixed table, NXDOMAIN for
 * names it does not know, NODATA for a known name without the type asked,
 * SERVFAIL, never for a "silent" name, late for a "slow" one. And a
 * waiter for the answers of resolver_route() (core/resolver.h).
 */
#ifndef ETRND_TESTS_DNS_STUB_H
#define ETRND_TESTS_DNS_STUB_H

#include <pthread.h>
#include <stddef.h>

#include "core/resolver.h"

enum dns_stub_kind {
	DNS_STUB_A,          /* data: "192.0.2.1" */
	DNS_STUB_AAAA,       /* data: "2001:db8::1" */
	DNS_STUB_MX,         /* data: target ("." for a null MX), pref */
	DNS_STUB_SILENT,     /* never answer anything for this name */
	DNS_STUB_SLOW,       /* answer the name's other rows after pref ms */
	DNS_STUB_SERVFAIL,   /* answer every query for the name with SERVFAIL */
	DNS_STUB_TXT,        /* data: the text, in 255-octet strings */
	DNS_STUB_PTR,        /* data: the target name */
};

struct dns_stub_rr {
	const char *name;    /* lower case, no trailing dot */
	enum dns_stub_kind kind;
	const char *data;
	unsigned pref;       /* MX preference, or SLOW's delay in ms */
};

struct dns_stub;

/* Bind 127.0.0.1 on a free port and serve zone (which must outlive the
 * stub) from a thread. NULL on failure. */
struct dns_stub *dns_stub_start(const struct dns_stub_rr *zone, size_t n);
/* The bound UDP port. */
unsigned dns_stub_port(const struct dns_stub *s);
/* Queries received so far. */
unsigned dns_stub_queries(struct dns_stub *s);
/* Stop and join the thread, close the socket, free. NULL is fine. */
void dns_stub_stop(struct dns_stub *s);

/* One answer of the resolver: pass dns_stub_answer_cb (resolver_route) or
 * dns_stub_answer_one_cb (resolver_host, resolver_mx) as the callback and
 * the struct as its cookie; the callback (on the resolver thread) copies
 * the answer and counts the call. */
struct dns_stub_answer {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int calls;
	pthread_t thread;            /* the thread the callback ran on */
	struct resolver_list res;    /* dns_stub_answer_cb's */
	struct resolver_result one;  /* dns_stub_answer_one_cb's */
};

void dns_stub_answer_init(struct dns_stub_answer *w);
void dns_stub_answer_cb(void *cookie, const struct resolver_list *res);
void dns_stub_answer_one_cb(void *cookie, const struct resolver_result *res);
/* Wait until the callback ran or max_ms passed; returns the calls so far. */
int dns_stub_answer_wait(struct dns_stub_answer *w, unsigned max_ms);

#endif
