/* SPDX-License-Identifier: MIT */
/*
 * clusterview: see clusterview.h. The builder collects nodes and (node,
 * domain, counts) rows in arrays; build sorts the nodes by id and the rows
 * by (domain hash, name, node), keeps one of a node's repeated rows, orders each
 * domain's holders by share, and indexes the domains by hash: a reader
 * finds a domain with one binary search and compares names only on a hash
 * match. Nothing is changed after build, so readers need no lock.
 */
#include "core/clusterview.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/ascii.h"
#include "core/epoch.h"
#include "core/hash.h"

#define CLUSTERVIEW_MIN_CAP 16
#define CLUSTERVIEW_DOMAIN_MAX 255 /* RFC 1035 2.3.4 */

/* One node's count for one domain; name is an offset into the names arena
 * (which may move while building). */
struct cv_row {
	uint64_t hash;
	size_t name;
	size_t len;
	uint32_t node;
	uint64_t msgs, bytes;
};

/* A domain of the view: its rows are rows[first .. first + n), largest
 * share first. */
struct cv_dom {
	uint64_t hash;
	size_t first;
	uint32_t n;
	uint64_t msgs;
};

struct clusterview_builder {
	struct clusterview_node *nodes;
	size_t nnodes, capnodes;
	struct cv_row *rows;
	size_t nrows, caprows;
	char *names;
	size_t nnames, capnames;
};

struct clusterview {
	struct clusterview_node *nodes; /* by id */
	size_t nnodes;
	struct cv_row *rows;
	struct cv_dom *doms;            /* by hash */
	size_t ndoms;
	char *names;
};

/* Grow *p (of *cap elements of size sz) to hold at least want. */
static int grow(void **p, size_t *cap, size_t want, size_t sz)
{
	size_t n = *cap ? *cap : CLUSTERVIEW_MIN_CAP;
	void *q;

	if (want <= *cap)
		return 0;
	while (n < want)
		n *= 2;
	q = realloc(*p, n * sz);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

struct clusterview_builder *clusterview_builder_new(void)
{
	return calloc(1, sizeof(struct clusterview_builder));
}

struct clusterview_builder *clusterview_builder_free(struct clusterview_builder *b)
{
	if (b) {
		free(b->nodes);
		free(b->rows);
		free(b->names);
		free(b);
	}
	return NULL;
}

int clusterview_builder_node(struct clusterview_builder *b, const struct clusterview_node *n)
{
	if (grow((void **)&b->nodes, &b->capnodes, b->nnodes + 1, sizeof(*b->nodes)))
		return -ENOMEM;
	b->nodes[b->nnodes] = *n;
	b->nodes[b->nnodes].id[sizeof(n->id) - 1] = '\0';
	b->nodes[b->nnodes].addr[sizeof(n->addr) - 1] = '\0';
	return (int)b->nnodes++;
}

/* The name as the view keeps it: one trailing dot off. */
static size_t dom_len(const char *dom, size_t len)
{
	return len > 0 && dom[len - 1] == '.' ? len - 1 : len;
}

int clusterview_builder_count(struct clusterview_builder *b, int node, const char *dom,
			      size_t len, uint64_t msgs, uint64_t bytes)
{
	struct cv_row *r;

	len = dom_len(dom, len);
	if (node < 0 || (size_t)node >= b->nnodes || len == 0 || len > CLUSTERVIEW_DOMAIN_MAX)
		return -EINVAL;
	if (grow((void **)&b->rows, &b->caprows, b->nrows + 1, sizeof(*b->rows)) ||
	    grow((void **)&b->names, &b->capnames, b->nnames + len, 1))
		return -ENOMEM;
	ascii_lower_copy(b->names + b->nnames, dom, len);
	r = &b->rows[b->nrows++];
	r->hash = hash_fnv64_lower(HASH_FNV64_INIT, dom, len);
	r->name = b->nnames;
	r->len = len;
	r->node = (uint32_t)node;
	r->msgs = msgs;
	r->bytes = bytes;
	b->nnames += len;
	return 0;
}

/* qsort has no context argument: the names arena of the sort in progress
 * (build runs on one thread, the cluster thread). */
static _Thread_local const char *sort_names;
static _Thread_local const struct clusterview_node *sort_nodes;

static int cmp_name(const struct cv_row *x, const struct cv_row *y)
{
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(sort_names + x->name, sort_names + y->name, n);

	return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int cmp_row_key(const void *a, const void *b)
{
	const struct cv_row *x = a, *y = b;
	int c;

	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	c = cmp_name(x, y);
	return c ? c : (x->node > y->node) - (x->node < y->node);
}

/* Largest share first; equal shares by node id (nodes are sorted by id,
 * so by index). */
static int cmp_row_share(const void *a, const void *b)
{
	const struct cv_row *x = a, *y = b;

	if (x->msgs != y->msgs)
		return x->msgs > y->msgs ? -1 : 1;
	return (x->node > y->node) - (x->node < y->node);
}

static int cmp_node(const void *a, const void *b)
{
	const uint32_t *x = a, *y = b;

	return strcmp(sort_nodes[*x].id, sort_nodes[*y].id);
}

/* Nodes in id order; rows renumbered to match. */
static int sort_nodes_by_id(struct clusterview_builder *b)
{
	uint32_t *order = malloc((b->nnodes ? b->nnodes : 1) * sizeof(*order));
	uint32_t *newidx = malloc((b->nnodes ? b->nnodes : 1) * sizeof(*newidx));
	struct clusterview_node *sorted = malloc((b->nnodes ? b->nnodes : 1) * sizeof(*sorted));

	if (!order || !newidx || !sorted) {
		free(order);
		free(newidx);
		free(sorted);
		return -ENOMEM;
	}
	for (size_t i = 0; i < b->nnodes; i++)
		order[i] = (uint32_t)i;
	sort_nodes = b->nodes;
	if (b->nnodes > 1)
		qsort(order, b->nnodes, sizeof(*order), cmp_node);
	for (size_t i = 0; i < b->nnodes; i++) {
		sorted[i] = b->nodes[order[i]];
		newidx[order[i]] = (uint32_t)i;
	}
	for (size_t i = 0; i < b->nrows; i++)
		b->rows[i].node = newidx[b->rows[i].node];
	free(b->nodes);
	b->nodes = sorted;
	free(order);
	free(newidx);
	return 0;
}

/* Rows sorted by key, a node's repeated rows for a domain summed; then one
 * cv_dom per domain, its rows ordered by share. */
static int index_domains(struct clusterview_builder *b, struct clusterview *v)
{
	size_t w = 0;

	sort_names = b->names;
	if (b->nrows > 1)
		qsort(b->rows, b->nrows, sizeof(*b->rows), cmp_row_key);
	for (size_t i = 0; i < b->nrows; i++) {
		if (w > 0 && cmp_row_key(&b->rows[w - 1], &b->rows[i]) == 0) {
			/* One node's count of one domain, given twice (a hash
			 * read with HSCAN may return a field twice): one of
			 * them, the larger. */
			if (b->rows[i].msgs > b->rows[w - 1].msgs)
				b->rows[w - 1] = b->rows[i];
			continue;
		}
		b->rows[w++] = b->rows[i];
	}
	b->nrows = w;
	v->doms = malloc((w ? w : 1) * sizeof(*v->doms));
	if (!v->doms)
		return -ENOMEM;
	for (size_t i = 0; i < w;) {
		struct cv_dom *d = &v->doms[v->ndoms++];
		size_t j = i;

		d->hash = b->rows[i].hash;
		d->first = i;
		d->msgs = 0;
		while (j < w && b->rows[j].hash == b->rows[i].hash &&
		       cmp_name(&b->rows[j], &b->rows[i]) == 0)
			d->msgs += b->rows[j++].msgs;
		d->n = (uint32_t)(j - i);
		qsort(b->rows + i, j - i, sizeof(*b->rows), cmp_row_share);
		i = j;
	}
	return 0;
}

struct clusterview *clusterview_build(struct clusterview_builder *b)
{
	struct clusterview *v = calloc(1, sizeof(*v));

	if (!v || sort_nodes_by_id(b) || index_domains(b, v))
		goto fail;
	v->nodes = b->nodes;
	v->nnodes = b->nnodes;
	v->rows = b->rows;
	v->names = b->names;
	b->nodes = NULL;
	b->rows = NULL;
	b->names = NULL;
	clusterview_builder_free(b);
	return v;
fail:
	if (v)
		free(v->doms);
	free(v);
	clusterview_builder_free(b);
	return NULL;
}

struct clusterview *clusterview_free(struct clusterview *v)
{
	if (v) {
		free(v->nodes);
		free(v->rows);
		free(v->doms);
		free(v->names);
		free(v);
	}
	return NULL;
}

/* The domain dom of v, or NULL. */
static const struct cv_dom *find_dom(const struct clusterview *v, const char *dom, size_t len)
{
	uint64_t h;
	size_t lo = 0, hi;

	if (!v)
		return NULL;
	len = dom_len(dom, len);
	h = hash_fnv64_lower(HASH_FNV64_INIT, dom, len);
	hi = v->ndoms;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v->doms[mid].hash < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < v->ndoms && v->doms[lo].hash == h; lo++) {
		const struct cv_row *r = &v->rows[v->doms[lo].first];

		if (r->len == len && ascii_eq_n(v->names + r->name, dom, len))
			return &v->doms[lo];
	}
	return NULL;
}

uint64_t clusterview_remote_msgs(const struct clusterview *v, const char *dom, size_t len)
{
	const struct cv_dom *d = find_dom(v, dom, len);

	return d ? d->msgs : 0;
}

size_t clusterview_holders(const struct clusterview *v, const char *dom, size_t len,
			   const struct clusterview_node **out, uint64_t *msgs, size_t max)
{
	const struct cv_dom *d = find_dom(v, dom, len);
	size_t k = 0;

	if (!d)
		return 0;
	for (uint32_t i = 0; i < d->n; i++) {
		const struct cv_row *r = &v->rows[d->first + i];

		if (r->msgs == 0)
			continue; /* a node that published a 0 holds nothing */
		if (k < max) {
			out[k] = &v->nodes[r->node];
			if (msgs)
				msgs[k] = r->msgs;
		}
		k++;
	}
	return k;
}

size_t clusterview_nodes(const struct clusterview *v, const struct clusterview_node **out,
			 size_t max)
{
	if (!v)
		return 0;
	for (size_t i = 0; i < v->nnodes && i < max; i++)
		out[i] = &v->nodes[i];
	return v->nnodes;
}

const struct clusterview_node *clusterview_node(const struct clusterview *v, const char *id)
{
	size_t lo = 0, hi = v ? v->nnodes : 0;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(v->nodes[mid].id, id);

		if (c == 0)
			return &v->nodes[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* ---- the published view ---------------------------------------------------- */

struct clusterview_live {
	_Atomic(struct clusterview *) cur;
	struct epoch *ep;
};

struct clusterview_live *clusterview_live_new(struct epoch *e)
{
	struct clusterview_live *lv = calloc(1, sizeof(*lv));

	if (!lv)
		return NULL;
	atomic_init(&lv->cur, NULL);
	lv->ep = e;
	return lv;
}

struct clusterview_live *clusterview_live_free(struct clusterview_live *lv)
{
	if (lv) {
		clusterview_free(atomic_load(&lv->cur));
		free(lv);
	}
	return NULL;
}

const struct clusterview *clusterview_live_get(const struct clusterview_live *lv)
{
	if (!lv)
		return NULL;
	/* seq_cst: pairs with epoch_online() (see core/epoch.c). */
	return atomic_load_explicit(&((struct clusterview_live *)lv)->cur, memory_order_seq_cst);
}

void clusterview_live_swap(struct clusterview_live *lv, struct clusterview *v)
{
	struct clusterview *old = atomic_exchange_explicit(&lv->cur, v, memory_order_seq_cst);

	if (old && lv->ep)
		epoch_synchronize(lv->ep);
	clusterview_free(old);
}
