/* SPDX-License-Identifier: MIT */
/*
 * domtab: domain rows, a mutable builder and immutable tables (domtab.h).
 *
 * The builder is a dense array of individually allocated rows indexed by
 * name in a core/htab (put/del are O(1), so the control thread applies one
 * pub/sub event without touching the rest). A built table is four
 * allocations: its htab index (at most half full, so a miss ends within a
 * couple of probes), the row array, the name lengths and one arena holding
 * every string and CIDR list.
 */
#include "core/domtab.h"
#include "core/cidr.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/ascii.h"
#include "core/epoch.h"
#include "core/hash.h"
#include "core/htab.h"
#include "core/log.h"

/* FNV-1a over the lower-cased bytes of prefix then p: one name's hash
 * whether it comes whole or as "*." + parent. */
static uint32_t name_hash(const char *prefix, size_t pl, const char *p, size_t n)
{
	return hash_fnv32_lower(hash_fnv32_lower(HASH_FNV32_INIT, prefix, pl), p, n);
}

static size_t trim_dot(const char *p, size_t n)
{
	return n > 0 && p[n - 1] == '.' ? n - 1 : n;
}

/* stored (lower case) equals prefix + p[0..n) ignoring case of p. */
static int name_eq(const char *stored, const char *prefix, size_t pl,
		   const char *p, size_t n)
{
	if (memcmp(stored, prefix, pl))
		return 0;
	stored += pl;
	for (size_t i = 0; i < n; i++)
		if (stored[i] != (char)ascii_lower((unsigned char)p[i]))
			return 0;
	return 1;
}

/* A looked-up name: prefix ("" or "*.") then p[0..n), any case. */
struct name_key {
	const char *prefix;
	size_t pl;
	const char *p;
	size_t n;
};

/* ---- builder ------------------------------------------------------------ */

struct brow {
	struct domtab_row row;       /* pointers into this allocation */
	uint32_t hash;
	uint32_t len;                /* of row.name */
	size_t extra;                /* bytes of strings + cidrs after the struct */
};

/* Rows are kept dense in rows[] (a delete moves the last row into the hole)
 * and indexed by name in idx. */
struct domtab_builder {
	struct brow **rows;
	uint32_t count, cap;
	struct htab idx;
};

#define DOMTAB_BUILDER_MIN 64u

struct domtab_builder *domtab_builder_new(void)
{
	struct domtab_builder *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	htab_init(&b->idx);
	b->rows = calloc(DOMTAB_BUILDER_MIN, sizeof(*b->rows));
	if (!b->rows || htab_reserve(&b->idx, DOMTAB_BUILDER_MIN / 2)) {
		free(b->rows);
		free(b);
		return NULL;
	}
	b->cap = DOMTAB_BUILDER_MIN;
	return b;
}

struct domtab_builder *domtab_builder_free(struct domtab_builder *b)
{
	if (!b)
		return NULL;
	for (uint32_t i = 0; i < b->count; i++)
		free(b->rows[i]);
	free(b->rows);
	htab_fini(&b->idx);
	free(b);
	return NULL;
}

static int brow_eq(const void *ctx, uint32_t el, const void *key)
{
	const struct brow *r = ((const struct domtab_builder *)ctx)->rows[el];
	const struct name_key *k = key;

	return r->len == k->n && name_eq(r->row.name, "", 0, k->p, k->n);
}

/* The number of the row named p[0..n) (hash h), or HTAB_NONE. */
static uint32_t bfind(const struct domtab_builder *b, const char *p, size_t n,
		      uint32_t h)
{
	const struct name_key k = { "", 0, p, n };

	return htab_find(&b->idx, h, brow_eq, b, &k);
}

static int bgrow(struct domtab_builder *b)
{
	struct brow **nr;

	if (b->cap > UINT32_MAX / 2)
		return -ENOMEM;
	nr = realloc(b->rows, (size_t)b->cap * 2 * sizeof(*nr));
	if (!nr)
		return -ENOMEM;
	b->rows = nr;
	b->cap *= 2;
	return 0;
}

static size_t opt_len(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

static char *opt_copy(char **dst, const char *s)
{
	size_t n;
	char *out;

	if (!s)
		return NULL;
	n = strlen(s) + 1;
	memcpy(*dst, s, n);
	out = *dst;
	*dst += n;
	return out;
}

int domtab_builder_put(struct domtab_builder *b, const struct domtab_row *row)
{
	size_t n = row->name ? trim_dot(row->name, strlen(row->name)) : 0;
	size_t extra;
	uint32_t h, i;
	struct brow *r;
	char *p;

	if (n == 0 || n > DOMTAB_NAME_MAX || row->netrn_from > DOMTAB_CIDR_MAX)
		return -EINVAL;
	if (b->count == b->cap && bgrow(b))
		return -ENOMEM;
	if (htab_reserve(&b->idx, b->count + 1))
		return -ENOMEM;
	extra = row->netrn_from * sizeof(struct cidr) + n + 1 +
		opt_len(row->queue) + opt_len(row->dest) + opt_len(row->owner);
	r = malloc(sizeof(*r) + extra);
	if (!r)
		return -ENOMEM;
	r->row = *row;
	p = (char *)(r + 1);
	/* CIDRs first: struct brow is suitably aligned for them. */
	if (row->netrn_from) {
		memcpy(p, row->etrn_from, row->netrn_from * sizeof(struct cidr));
		r->row.etrn_from = (const struct cidr *)p;
		p += row->netrn_from * sizeof(struct cidr);
	} else {
		r->row.etrn_from = NULL;
	}
	ascii_lower_copy(p, row->name, n);
	p[n] = '\0';
	r->row.name = p;
	p += n + 1;
	r->row.queue = opt_copy(&p, row->queue);
	r->row.dest = opt_copy(&p, row->dest);
	r->row.owner = opt_copy(&p, row->owner);
	h = name_hash("", 0, row->name, n);
	r->hash = h;
	r->len = (uint32_t)n;
	r->extra = extra;
	i = bfind(b, row->name, n, h);
	if (i != HTAB_NONE) {
		free(b->rows[i]);
		b->rows[i] = r;
		return 0;
	}
	/* Cannot fail: room was reserved above. */
	if (htab_insert(&b->idx, h, b->count))
		panic("domtab builder: reserved slot vanished");
	b->rows[b->count++] = r;
	return 0;
}

int domtab_builder_del(struct domtab_builder *b, const char *name)
{
	size_t n = trim_dot(name, strlen(name));
	uint32_t h, i, last;

	if (n == 0 || n > DOMTAB_NAME_MAX)
		return 0;
	h = name_hash("", 0, name, n);
	i = bfind(b, name, n, h);
	if (i == HTAB_NONE)
		return 0;
	htab_remove(&b->idx, h, i);
	free(b->rows[i]);
	last = --b->count;
	if (i != last) {
		b->rows[i] = b->rows[last];
		htab_renumber(&b->idx, b->rows[i]->hash, last, i);
	}
	b->rows[last] = NULL;
	return 1;
}

const struct domtab_row *domtab_builder_get(const struct domtab_builder *b,
					    const char *name)
{
	size_t n = trim_dot(name, strlen(name));
	uint32_t i;

	if (n == 0 || n > DOMTAB_NAME_MAX)
		return NULL;
	i = bfind(b, name, n, name_hash("", 0, name, n));
	return i != HTAB_NONE ? &b->rows[i]->row : NULL;
}

size_t domtab_builder_count(const struct domtab_builder *b)
{
	return b->count;
}

/* ---- immutable table ------------------------------------------------------ */

struct domtab {
	struct htab idx;             /* name -> row number */
	size_t count;
	size_t nwild;                /* rows named "*.something" */
	struct domtab_row *rows;
	uint32_t *lens;              /* name length per row */
	char *arena;
};

struct domtab *domtab_free(struct domtab *t)
{
	if (!t)
		return NULL;
	htab_fini(&t->idx);
	free(t->rows);
	free(t->lens);
	free(t->arena);
	free(t);
	return NULL;
}

static void tput(struct domtab *t, const struct brow *br, char **arena)
{
	struct domtab_row *row = &t->rows[t->count];

	*row = br->row;
	/* One copy of the row's whole tail, then rebase its pointers. */
	memcpy(*arena, br + 1, br->extra);
#define REBASE(f) if (br->row.f) row->f = (const void *)(*arena + ((const char *)br->row.f - (const char *)(br + 1)))
	REBASE(etrn_from);
	REBASE(name);
	REBASE(queue);
	REBASE(dest);
	REBASE(owner);
#undef REBASE
	*arena += (br->extra + 7) & ~(size_t)7;
	t->lens[t->count] = br->len;
	if (br->len > 2 && row->name[0] == '*' && row->name[1] == '.')
		t->nwild++;
	/* Cannot fail: domtab_build() reserved room for every row. */
	if (htab_insert(&t->idx, br->hash, (uint32_t)t->count))
		panic("domtab: reserved slot vanished");
	t->count++;
}

struct domtab *domtab_build(const struct domtab_builder *b)
{
	struct domtab *t = calloc(1, sizeof(*t));
	size_t total = 0;
	char *arena;

	if (!t)
		return NULL;
	htab_init(&t->idx);
	for (uint32_t i = 0; i < b->count; i++)
		total += (b->rows[i]->extra + 7) & ~(size_t)7;
	t->rows = malloc((b->count ? b->count : 1) * sizeof(*t->rows));
	t->lens = malloc((b->count ? b->count : 1) * sizeof(*t->lens));
	/* aligned for the CIDR arrays at the start of each row's tail */
	t->arena = aligned_alloc(8, total ? total : 8);
	if (!t->rows || !t->lens || !t->arena || htab_reserve(&t->idx, b->count))
		return domtab_free(t);
	arena = t->arena;
	for (uint32_t i = 0; i < b->count; i++)
		tput(t, b->rows[i], &arena);
	return t;
}

struct domtab *domtab_new(const char *const *domains, size_t n)
{
	struct domtab_builder *b = domtab_builder_new();
	struct domtab *t = NULL;

	if (!b)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		struct domtab_row row = { .name = domains[i] };
		int rc = domtab_builder_put(b, &row);

		if (rc == -ENOMEM)
			goto out;
	}
	t = domtab_build(b);
out:
	domtab_builder_free(b);
	return t;
}

static int trow_eq(const void *ctx, uint32_t el, const void *key)
{
	const struct domtab *t = ctx;
	const struct name_key *k = key;

	return t->lens[el] == k->pl + k->n &&
		name_eq(t->rows[el].name, k->prefix, k->pl, k->p, k->n);
}

static const struct domtab_row *tfind(const struct domtab *t, const char *prefix,
				      size_t pl, const char *p, size_t n)
{
	const struct name_key k = { prefix, pl, p, n };
	uint32_t r = htab_find(&t->idx, name_hash(prefix, pl, p, n), trow_eq, t, &k);

	return r != HTAB_NONE ? &t->rows[r] : NULL;
}

const struct domtab_row *domtab_find(const struct domtab *t, const char *domain,
				     size_t len)
{
	const struct domtab_row *r;

	len = trim_dot(domain, len);
	if (len == 0 || len > DOMTAB_NAME_MAX)
		return NULL;
	r = tfind(t, "", 0, domain, len);
	if (r || !t->nwild)
		return r;
	/* Nearest enclosing wildcard: a.b.example.test tries *.b.example.test,
	 * then *.example.test, then *.test. */
	for (size_t i = 0; i < len; i++) {
		if (domain[i] != '.' || i + 1 >= len)
			continue;
		r = tfind(t, "*.", 2, domain + i + 1, len - i - 1);
		if (r)
			return r;
	}
	return NULL;
}

int domtab_lookup(const struct domtab *t, const char *domain, size_t len)
{
	return domtab_find(t, domain, len) != NULL;
}

const struct domtab_row *domtab_row_at(const struct domtab *t, size_t i)
{
	return i < t->count ? &t->rows[i] : NULL;
}

size_t domtab_count(const struct domtab *t)
{
	return t->count;
}

const char *domtab_tls_name(enum domtab_tls t)
{
	switch (t) {
	case DOMTAB_TLS_MUST: return "must";
	case DOMTAB_TLS_VERIFY: return "verify";
	default: return "may";
	}
}

int domtab_row_allows(const struct domtab_row *row, const struct sockaddr *addr)
{
	return cidr_list_match(row->etrn_from, row->netrn_from, addr);
}

/* ---- the published table ------------------------------------------------- */

struct domtab_live {
	_Atomic(struct domtab *) cur;
	atomic_int stale;
	struct epoch *ep;
};

struct domtab_live *domtab_live_new(struct domtab *initial, struct epoch *e)
{
	struct domtab_live *lv = calloc(1, sizeof(*lv));

	if (!initial)
		initial = domtab_new(NULL, 0);
	if (!lv || !initial) {
		free(lv);
		domtab_free(initial);
		return NULL;
	}
	atomic_init(&lv->cur, initial);
	atomic_init(&lv->stale, 0);
	lv->ep = e;
	return lv;
}

struct domtab_live *domtab_live_free(struct domtab_live *lv)
{
	if (!lv)
		return NULL;
	domtab_free(atomic_load(&lv->cur));
	free(lv);
	return NULL;
}

const struct domtab *domtab_live_get(const struct domtab_live *lv)
{
	/* seq_cst: pairs with epoch_online() (see core/epoch.c). */
	return atomic_load_explicit(&((struct domtab_live *)lv)->cur, memory_order_seq_cst);
}

void domtab_live_swap(struct domtab_live *lv, struct domtab *t)
{
	struct domtab *old = atomic_exchange_explicit(&lv->cur, t, memory_order_seq_cst);

	if (lv->ep)
		epoch_synchronize(lv->ep);
	domtab_free(old);
}

void domtab_live_set_stale(struct domtab_live *lv, int stale)
{
	atomic_store_explicit(&lv->stale, stale != 0, memory_order_relaxed);
}

int domtab_live_stale(const struct domtab_live *lv)
{
	return atomic_load_explicit(&((struct domtab_live *)lv)->stale, memory_order_relaxed);
}
