/* SPDX-License-Identifier: MIT */
/*
 * etrnctl_cluster: see etrnctl_cluster.h. One ZRANGE WITHSCORES, then one
 * pipelined HGETALL per member; the per-domain rows of the nodes whose
 * hash is there are sorted by name, summed per domain, and the domains
 * sorted by messages. Everything is freed before returning.
 */
#include "admin/etrnctl_cluster.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "admin/cluster.h"
#include "admin/redis_conn.h"
#include "core/buf.h"
#include "core/now.h"
#include "proto/drain_status.h"

#define ETRNCTL_CLUSTER_TIMEOUT_MS 5000
#define ETRNCTL_CLUSTER_OUT_MAX (64u << 20)  /* the report's text */
#define ETRNCTL_CLUSTER_MS_PER_S 1000.0

struct ec_node {
	const char *id;
	const char *state;             /* "up", "draining" or "gone" */
	const char *addr;
	uint64_t seen_ms, msgs, bytes;
	redisReply *all;               /* HGETALL (empty when gone) */
};

struct ec_row {                        /* one node's share of one domain */
	const char *dom;
	size_t len;
	size_t node;
	uint64_t msgs, bytes;
};

struct ec_dom {
	size_t first, n;               /* rows[first .. first + n) */
	uint64_t msgs, bytes;
};

struct ec {
	struct ec_node *nodes;
	size_t nnodes;
	struct ec_row *rows;
	size_t nrows;
	struct ec_dom *doms;
	size_t ndoms;
	uint64_t now_ms;
};

static const char *hash_field(const redisReply *all, const char *name)
{
	for (size_t k = 0; all && k + 1 < all->elements; k += 2)
		if (all->element[k]->type == REDIS_REPLY_STRING &&
		    !strcmp(all->element[k]->str, name) &&
		    all->element[k + 1]->type == REDIS_REPLY_STRING)
			return all->element[k + 1]->str;
	return NULL;
}

static uint64_t hash_u64(const redisReply *all, const char *name)
{
	const char *v = hash_field(all, name);

	return v ? strtoull(v, NULL, 10) : 0;
}

/* A node from its zset entry and HGETALL; its "d:" rows into e->rows. */
static int add_node(struct ec *e, size_t i, const char *id, double score, redisReply *all)
{
	struct ec_node *n = &e->nodes[i];
	const size_t fl = sizeof(CLUSTER_F_DOMAIN) - 1;
	const char *st;

	n->id = id;
	n->all = all;
	if (!all || all->type != REDIS_REPLY_ARRAY || all->elements == 0) {
		n->state = "gone";
		n->addr = "";
		n->seen_ms = (uint64_t)score;
		return 0;
	}
	st = hash_field(all, CLUSTER_F_STATE);
	n->state = st && !strcmp(st, CLUSTER_STATE_DRAINING) ? CLUSTER_STATE_DRAINING : CLUSTER_STATE_UP;
	n->addr = hash_field(all, CLUSTER_F_ADDR) ? hash_field(all, CLUSTER_F_ADDR) : "";
	n->seen_ms = hash_u64(all, CLUSTER_F_SEEN);
	n->msgs = hash_u64(all, CLUSTER_F_MSGS);
	n->bytes = hash_u64(all, CLUSTER_F_BYTES);
	for (size_t k = 0; k + 1 < all->elements; k += 2) {
		const redisReply *f = all->element[k], *v = all->element[k + 1];
		unsigned long long m, b;
		struct ec_row *r;

		if (f->type != REDIS_REPLY_STRING || f->len <= fl || memcmp(f->str, CLUSTER_F_DOMAIN, fl) ||
		    v->type != REDIS_REPLY_STRING || sscanf(v->str, "%llu %llu", &m, &b) != 2)
			continue;
		r = realloc(e->rows, (e->nrows + 1) * sizeof(*r));
		if (!r)
			return -ENOMEM;
		e->rows = r;
		e->rows[e->nrows++] = (struct ec_row){ f->str + fl, f->len - fl, i, m, b };
	}
	return 0;
}

static int cmp_row(const void *a, const void *b)
{
	const struct ec_row *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->dom, y->dom, n);

	if (c)
		return c;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->msgs > y->msgs ? -1 : x->msgs < y->msgs;
}

static int cmp_dom(const void *a, const void *b)
{
	const struct ec_dom *x = a, *y = b;

	if (x->msgs != y->msgs)
		return x->msgs > y->msgs ? -1 : 1;
	return (x->first > y->first) - (x->first < y->first);
}

/* Rows by name, then one ec_dom per name, biggest first. */
static int sum_domains(struct ec *e)
{
	if (e->nrows > 1)
		qsort(e->rows, e->nrows, sizeof(*e->rows), cmp_row);
	e->doms = calloc(e->nrows ? e->nrows : 1, sizeof(*e->doms));
	if (!e->doms)
		return -ENOMEM;
	for (size_t i = 0; i < e->nrows;) {
		struct ec_dom *d = &e->doms[e->ndoms++];
		size_t j = i;

		d->first = i;
		while (j < e->nrows && e->rows[j].len == e->rows[i].len &&
		       !memcmp(e->rows[j].dom, e->rows[i].dom, e->rows[i].len)) {
			d->msgs += e->rows[j].msgs;
			d->bytes += e->rows[j].bytes;
			j++;
		}
		d->n = j - i;
		i = j;
	}
	if (e->ndoms > 1)
		qsort(e->doms, e->ndoms, sizeof(*e->doms), cmp_dom);
	return 0;
}

static void print_json(const struct ec *e, unsigned top, struct buf *b)
{
	(void)buf_printf(b, "{\"now_ms\":%" PRIu64 ",\"nodes\":[", e->now_ms);
	for (size_t i = 0; i < e->nnodes; i++) {
		const struct ec_node *n = &e->nodes[i];

		(void)buf_puts(b, i ? ",{\"id\":" : "{\"id\":");
		drain_status_json_str(b, n->id, strlen(n->id));
		(void)buf_printf(b, ",\"state\":\"%s\",\"addr\":", n->state);
		drain_status_json_str(b, n->addr, strlen(n->addr));
		(void)buf_printf(b, ",\"seen_ms\":%" PRIu64 ",\"seen_ago_ms\":%" PRIu64
				 ",\"msgs\":%" PRIu64 ",\"bytes\":%" PRIu64 "}", n->seen_ms,
				 e->now_ms > n->seen_ms ? e->now_ms - n->seen_ms : 0, n->msgs, n->bytes);
	}
	(void)buf_printf(b, "],\"domains_total\":%zu,\"domains\":[", e->ndoms);
	for (size_t i = 0; i < e->ndoms && (top == 0 || i < top); i++) {
		const struct ec_dom *d = &e->doms[i];

		(void)buf_puts(b, i ? ",{\"domain\":" : "{\"domain\":");
		drain_status_json_str(b, e->rows[d->first].dom, e->rows[d->first].len);
		(void)buf_printf(b, ",\"msgs\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"nodes\":{",
				 d->msgs, d->bytes);
		for (size_t k = 0; k < d->n; k++) {
			const struct ec_row *r = &e->rows[d->first + k];

			if (k)
				(void)buf_puts(b, ",");
			drain_status_json_str(b, e->nodes[r->node].id, strlen(e->nodes[r->node].id));
			(void)buf_printf(b, ":%" PRIu64, r->msgs);
		}
		(void)buf_puts(b, "}}");
	}
	(void)buf_puts(b, "]}\n");
}

static void print_text(const struct ec *e, unsigned top, struct buf *b)
{
	(void)buf_printf(b, "%-20s %-9s %-10s %-22s %10s %14s\n", "node", "state", "seen",
			 "addr", "messages", "bytes");
	for (size_t i = 0; i < e->nnodes; i++) {
		const struct ec_node *n = &e->nodes[i];
		uint64_t ago = e->now_ms > n->seen_ms ? e->now_ms - n->seen_ms : 0;
		char seen[32];

		snprintf(seen, sizeof(seen), "%.1fs ago", (double)ago / ETRNCTL_CLUSTER_MS_PER_S);
		(void)buf_printf(b, "%-20s %-9s %-10s %-22s %10" PRIu64 " %14" PRIu64 "\n", n->id,
				 n->state, seen, n->addr[0] ? n->addr : "-", n->msgs, n->bytes);
	}
	(void)buf_printf(b, "\n%zu domain(s) with mail held%s\n", e->ndoms,
			 top && e->ndoms > top ? " (the largest below)" : "");
	for (size_t i = 0; i < e->ndoms && (top == 0 || i < top); i++) {
		const struct ec_dom *d = &e->doms[i];

		(void)buf_printf(b, "%-40.*s %10" PRIu64 " %14" PRIu64 " ",
				 (int)e->rows[d->first].len, e->rows[d->first].dom, d->msgs, d->bytes);
		for (size_t k = 0; k < d->n; k++) {
			const struct ec_row *r = &e->rows[d->first + k];

			(void)buf_printf(b, " %s=%" PRIu64, e->nodes[r->node].id, r->msgs);
		}
		(void)buf_puts(b, "\n");
	}
}

/* ZRANGE nodes WITHSCORES and every member's HGETALL into e. z is kept
 * by the caller (the ids point into it). 0, or -1 with why set. */
static int read_nodes(redisContext *rc, const char *prefix, redisReply *z, struct ec *e,
		      char *why, size_t wl)
{
	char key[CONFIG_REDIS_PREFIX_MAX + 16 + CONFIG_NODE_ID_MAX];

	e->nnodes = z->elements / 2;
	e->nodes = calloc(e->nnodes ? e->nnodes : 1, sizeof(*e->nodes));
	if (!e->nodes)
		return snprintf(why, wl, "out of memory"), -1;
	for (size_t i = 0; i < e->nnodes; i++) {
		snprintf(key, sizeof(key), "%s" CLUSTER_KEY_NODE "{%s}", prefix,
			 z->element[2 * i]->type == REDIS_REPLY_STRING ? z->element[2 * i]->str : "");
		redisAppendCommand(rc, "HGETALL %s", key);
	}
	for (size_t i = 0; i < e->nnodes; i++) {
		redisReply *r = NULL;
		const redisReply *id = z->element[2 * i], *sc = z->element[2 * i + 1];

		if (redisGetReply(rc, (void **)&r) != REDIS_OK)
			return redis_conn_err(rc, NULL, "HGETALL", why, wl);
		if (r->type == REDIS_REPLY_ERROR) {
			redis_conn_err(NULL, r, "HGETALL", why, wl);
			freeReplyObject(r);
			return -1;
		}
		if (add_node(e, i, id->type == REDIS_REPLY_STRING ? id->str : "?",
			     sc->type == REDIS_REPLY_STRING ? strtod(sc->str, NULL) : 0, r)) {
			snprintf(why, wl, "out of memory");
			return -1;
		}
	}
	return 0;
}

int etrnctl_cluster_status(const struct config *cfg, int json, unsigned top, FILE *out)
{
	char why[512] = "", key[CONFIG_REDIS_PREFIX_MAX + 16];
	redisContext *rc = redis_conn_open(&cfg->redis, ETRNCTL_CLUSTER_TIMEOUT_MS, why, sizeof(why));
	redisReply *z = NULL;
	struct ec e = { .now_ms = now_wall_us() / 1000 };
	struct buf b;
	int ret = 1;

	buf_init(&b, ETRNCTL_CLUSTER_OUT_MAX);
	if (!rc) {
		fprintf(stderr, "etrnctl: status --cluster: %s\n", why);
		return 1;
	}
	snprintf(key, sizeof(key), "%s" CLUSTER_KEY_NODES, cfg->redis_prefix);
	z = redisCommand(rc, "ZRANGE %s 0 -1 WITHSCORES", key);
	if (!z || z->type != REDIS_REPLY_ARRAY) {
		redis_conn_err(rc, z, "ZRANGE nodes", why, sizeof(why));
		goto fail;
	}
	if (read_nodes(rc, cfg->redis_prefix, z, &e, why, sizeof(why)) || sum_domains(&e)) {
		if (!why[0])
			snprintf(why, sizeof(why), "out of memory");
		goto fail;
	}
	if (json)
		print_json(&e, top, &b);
	else
		print_text(&e, top, &b);
	ret = fwrite(b.data ? b.data : "", 1, b.len, out) == b.len ? 0 : 1;
	goto out;
fail:
	fprintf(stderr, "etrnctl: status --cluster: redis %s: %s\n", cfg->redis.display, why);
out:
	for (size_t i = 0; i < e.nnodes; i++)
		if (e.nodes[i].all)
			freeReplyObject(e.nodes[i].all);
	free(e.nodes);
	free(e.rows);
	free(e.doms);
	if (z)
		freeReplyObject(z);
	redisFree(rc);
	buf_free(&b);
	return ret;
}
