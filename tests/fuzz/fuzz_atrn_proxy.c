/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for proto/atrn_proxy.c. The first input byte picks
 * whether the customer was greeted already and a chunk size; the rest is a
 * script of steps split at 0xff bytes, each step's first byte saying who
 * speaks ('C' customer, 'N' node, 'A' attach, 'F' finish, 'c'/'n' EOF,
 * 'l' the node given up). The script runs twice, whole and in chunks (the
 * glue's "offer the kept input again" included), and must write the same
 * bytes to both sides, give the same events and end in the same state.
 * Nothing reaches the node unless a node is attached, and the customer
 * gets nothing after the relay failed or finished.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "proto/atrn_proxy.h"

#define FZ_OUT_MAX (1u << 20)
#define FZ_SEP 0xff

struct fz_run {
	struct atrn_proxy *p;
	struct buf to_node, to_cust, node_in, cust_in, ev;
};

static void fz_event(struct fz_run *r, enum atrn_proxy_event ev)
{
	char e = (char)('0' + ev);

	(void)buf_append(&r->ev, &e, 1);
}

/* Offer one side's kept input; the bytes taken. */
static size_t fz_offer1(struct fz_run *r, int node)
{
	struct buf *in = node ? &r->node_in : &r->cust_in;
	enum atrn_proxy_event ev;
	size_t k;

	if (in->len == 0)
		return 0;
	k = node ? atrn_proxy_feed_node(r->p, in->data, in->len, &r->to_node, &r->to_cust, &ev)
		 : atrn_proxy_feed_cust(r->p, in->data, in->len, &r->to_node, &r->to_cust, &ev);
	if (k > in->len)
		__builtin_trap();
	fz_event(r, ev);
	buf_consume(in, k);
	return k;
}

/* As the glue: both sides' kept input until neither takes more. */
static void fz_offer(struct fz_run *r)
{
	while (fz_offer1(r, 0) + fz_offer1(r, 1) > 0)
		;
}

static void fz_step(struct fz_run *r, const uint8_t *s, size_t n, size_t chunk)
{
	enum atrn_proxy_event ev = ATRN_PROXY_EV_NONE;
	enum atrn_proxy_state before = atrn_proxy_state(r->p);
	size_t cust_before = r->to_cust.len;

	if (n == 0)
		return;
	switch (s[0]) {
	case 'A': (void)atrn_proxy_attach(r->p, &r->to_node); break;
	case 'F': (void)atrn_proxy_finish(r->p, &r->to_cust); break;
	case 'c': (void)atrn_proxy_feed_cust(r->p, "", 0, &r->to_node, &r->to_cust, &ev); break;
	case 'n': r->node_in.len = 0;
		  (void)atrn_proxy_feed_node(r->p, "", 0, &r->to_node, &r->to_cust, &ev); break;
	case 'l': ev = atrn_proxy_lost(r->p, 1, &r->to_cust, "fuzz"); break;
	default:
		for (size_t off = 1; off < n; off += chunk) {
			(void)buf_append(s[0] == 'N' ? &r->node_in : &r->cust_in, s + off,
					 n - off < chunk ? n - off : chunk);
			fz_offer(r);
		}
		break;
	}
	fz_event(r, ev);
	fz_offer(r); /* the glue offers kept input after every change */
	if ((before == ATRN_PROXY_S_DONE || before == ATRN_PROXY_S_FAILED) &&
	    r->to_cust.len != cust_before)
		__builtin_trap();
}

static void fz_run(const uint8_t *data, size_t size, int greeted, size_t chunk, struct fz_run *r)
{
	struct atrn_proxy_conf conf = { .name = "a.node.test", .greeted = greeted };
	size_t start = 0;

	buf_init(&r->to_node, FZ_OUT_MAX);
	buf_init(&r->to_cust, FZ_OUT_MAX);
	buf_init(&r->node_in, FZ_OUT_MAX);
	buf_init(&r->cust_in, FZ_OUT_MAX);
	buf_init(&r->ev, FZ_OUT_MAX);
	r->p = atrn_proxy_new(&conf);
	if (!r->p)
		abort();
	for (size_t i = 0; i <= size; i++) {
		if (i < size && data[i] != FZ_SEP)
			continue;
		fz_step(r, data + start, i - start, chunk);
		start = i + 1;
	}
	if (atrn_proxy_state(r->p) >= ATRN_PROXY_S_NSTATES)
		__builtin_trap();
}

static int fz_same(const struct buf *a, const struct buf *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static void fz_free(struct fz_run *r)
{
	atrn_proxy_free(r->p);
	buf_free(&r->to_node);
	buf_free(&r->to_cust);
	buf_free(&r->node_in);
	buf_free(&r->cust_in);
	buf_free(&r->ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t chunks[] = { 1, 2, 3, 5, 7, 16, 100, 4096 };
	struct fz_run whole, parts;

	if (size < 1)
		return 0;
	log_set_level(LOGL_ERR);
	fz_run(data + 1, size - 1, data[0] & 1, size, &whole);
	fz_run(data + 1, size - 1, data[0] & 1, chunks[(data[0] >> 1) & 7], &parts);
	/* Events differ only in how many NONEs the chunking produced. */
	if (!fz_same(&whole.to_node, &parts.to_node) || !fz_same(&whole.to_cust, &parts.to_cust) ||
	    atrn_proxy_state(whole.p) != atrn_proxy_state(parts.p) ||
	    atrn_proxy_relayed_total(whole.p) != atrn_proxy_relayed_total(parts.p))
		__builtin_trap();
	fz_free(&whole);
	fz_free(&parts);
	return 0;
}
