/* SPDX-License-Identifier: MIT */
/*
 * domtab: domain rows, a mutable builder and immutable tables (domtab.h).
 *
 * The builder holds two sets, rows and routes, each a dense array of
 * individually allocated entries indexed by name in a core/htab (put/del are
 * O(1), so the control thread applies one pub/sub event without touching the
 * rest). A built table has, for rows and again for routes, an htab index (at
 * most half full, so a miss ends within a couple of probes), the entry
 * array, the name lengths and one arena holding every string (and CIDR list).
 */
#include "core/domtab.h"
#include "core/cidr.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/ascii.h"
#include "core/config.h"
#include "core/epoch.h"
#include "core/hash.h"
#include "core/htab.h"
#include "core/log.h"
#include "core/netaddr.h"
#include "core/resolver.h"

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

/* The head of every builder entry (a row or a route): its name's hash and
 * length, and the name itself (lower case, no trailing dot). */
struct bent {
	uint32_t hash;
	uint32_t len;
	const char *name;
};

/* A row: its tail (CIDRs, then strings) follows the struct; row's pointers
 * point into it. */
struct brow {
	struct bent e;
	size_t extra;                /* bytes of strings + cidrs after the struct */
	struct domtab_row row;
};

/* A route: name then dest, NUL-terminated, after the struct. */
struct broute {
	struct bent e;
	const char *dest;
	size_t extra;
};

/* Entries kept dense in el[] (a delete moves the last entry into the hole)
 * and indexed by name in idx. The builder has one set of rows and one of
 * routes. Entries are individually allocated and owned by the set. */
struct bset {
	struct bent **el;
	uint32_t count, cap;
	struct htab idx;
};

struct domtab_builder {
	struct bset rows;            /* struct brow */
	struct bset routes;          /* struct broute */
};

#define DOMTAB_BUILDER_MIN 64u

static int bset_init(struct bset *s)
{
	htab_init(&s->idx);
	s->count = 0;
	s->el = calloc(DOMTAB_BUILDER_MIN, sizeof(*s->el));
	if (!s->el || htab_reserve(&s->idx, DOMTAB_BUILDER_MIN / 2))
		return -ENOMEM;
	s->cap = DOMTAB_BUILDER_MIN;
	return 0;
}

static void bset_fini(struct bset *s)
{
	for (uint32_t i = 0; i < s->count; i++)
		free(s->el[i]);
	free(s->el);
	htab_fini(&s->idx);
}

static int bset_eq(const void *ctx, uint32_t el, const void *key)
{
	const struct bent *e = ((const struct bset *)ctx)->el[el];
	const struct name_key *k = key;

	return e->len == k->n && name_eq(e->name, "", 0, k->p, k->n);
}

/* The number of the entry named p[0..n) (hash h), or HTAB_NONE. */
static uint32_t bset_find(const struct bset *s, const char *p, size_t n, uint32_t h)
{
	const struct name_key k = { "", 0, p, n };

	return htab_find(&s->idx, h, bset_eq, s, &k);
}

/* Room for one more entry, so that bset_insert() cannot fail. */
static int bset_reserve(struct bset *s)
{
	if (s->count == s->cap) {
		struct bent **ne;

		if (s->cap > UINT32_MAX / 2)
			return -ENOMEM;
		ne = realloc(s->el, (size_t)s->cap * 2 * sizeof(*ne));
		if (!ne)
			return -ENOMEM;
		s->el = ne;
		s->cap *= 2;
	}
	return htab_reserve(&s->idx, s->count + 1) ? -ENOMEM : 0;
}

/* Take e over: it replaces the entry of the same name, or is added. Room
 * must have been reserved. */
static void bset_insert(struct bset *s, struct bent *e)
{
	uint32_t i = bset_find(s, e->name, e->len, e->hash);

	if (i != HTAB_NONE) {
		free(s->el[i]);
		s->el[i] = e;
		return;
	}
	if (htab_insert(&s->idx, e->hash, s->count))
		panic("domtab builder: reserved slot vanished");
	s->el[s->count++] = e;
}

/* The entry named name (any case, optional trailing dot), or NULL. */
static struct bent *bset_get(const struct bset *s, const char *name)
{
	size_t n = trim_dot(name, strlen(name));
	uint32_t i;

	if (n == 0 || n > DOMTAB_NAME_MAX)
		return NULL;
	i = bset_find(s, name, n, name_hash("", 0, name, n));
	return i != HTAB_NONE ? s->el[i] : NULL;
}

static int bset_del(struct bset *s, const char *name)
{
	size_t n = trim_dot(name, strlen(name));
	uint32_t h, i, last;

	if (n == 0 || n > DOMTAB_NAME_MAX)
		return 0;
	h = name_hash("", 0, name, n);
	i = bset_find(s, name, n, h);
	if (i == HTAB_NONE)
		return 0;
	htab_remove(&s->idx, h, i);
	free(s->el[i]);
	last = --s->count;
	if (i != last) {
		s->el[i] = s->el[last];
		htab_renumber(&s->idx, s->el[i]->hash, last, i);
	}
	s->el[last] = NULL;
	return 1;
}

struct domtab_builder *domtab_builder_new(void)
{
	struct domtab_builder *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	if (bset_init(&b->rows) || bset_init(&b->routes))
		return domtab_builder_free(b);
	return b;
}

struct domtab_builder *domtab_builder_free(struct domtab_builder *b)
{
	if (!b)
		return NULL;
	bset_fini(&b->rows);
	bset_fini(&b->routes);
	free(b);
	return NULL;
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

/* The lower-case copy of name's n bytes at *dst, NUL-terminated; sets e. */
static void bent_name(struct bent *e, char **dst, const char *name, size_t n)
{
	ascii_lower_copy(*dst, name, n);
	(*dst)[n] = '\0';
	e->name = *dst;
	e->len = (uint32_t)n;
	e->hash = name_hash("", 0, name, n);
	*dst += n + 1;
}

int domtab_builder_put(struct domtab_builder *b, const struct domtab_row *row)
{
	size_t n = row->name ? trim_dot(row->name, strlen(row->name)) : 0;
	size_t extra;
	struct brow *r;
	char *p;

	if (n == 0 || n > DOMTAB_NAME_MAX || row->netrn_from > DOMTAB_CIDR_MAX ||
	    (row->mode != DOMTAB_MODE_HOLD && row->mode != DOMTAB_MODE_DELIVER))
		return -EINVAL;
	if (bset_reserve(&b->rows))
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
	bent_name(&r->e, &p, row->name, n);
	r->row.name = r->e.name;
	r->row.queue = opt_copy(&p, row->queue);
	r->row.dest = opt_copy(&p, row->dest);
	r->row.owner = opt_copy(&p, row->owner);
	r->extra = extra;
	bset_insert(&b->rows, &r->e);
	return 0;
}

int domtab_builder_set_rcpts(struct domtab_builder *b, const char *name,
			     const struct rcptset *s)
{
	struct bent *e = bset_get(&b->rows, name);

	if (!e)
		return 0;
	((struct brow *)e)->row.rcpts = s;
	return 1;
}

int domtab_builder_del(struct domtab_builder *b, const char *name)
{
	return bset_del(&b->rows, name);
}

const struct domtab_row *domtab_builder_get(const struct domtab_builder *b,
					    const char *name)
{
	struct bent *e = bset_get(&b->rows, name);

	return e ? &((struct brow *)e)->row : NULL;
}

size_t domtab_builder_count(const struct domtab_builder *b)
{
	return b->rows.count;
}

const struct domtab_row *domtab_builder_row_at(const struct domtab_builder *b, size_t i)
{
	return i < b->rows.count ? &((const struct brow *)b->rows.el[i])->row : NULL;
}

int domtab_route_dest_check(const char *dest)
{
	char host[DOMTAB_ROUTE_MAX];
	struct sockaddr_storage ss;
	unsigned port;

	if (!dest || strlen(dest) >= DOMTAB_ROUTE_MAX ||
	    strspn(dest, DOMTAB_ROUTE_CHARS) != strlen(dest) ||
	    resolver_dest_split(dest, host, sizeof(host), RESOLVER_SMTP_PORT, &port, NULL))
		return -EINVAL;
	/* A numeric address, or a host name (one label is fine: "localhost"). */
	if (netaddr_from_text(host, port, &ss, NULL) && config_host_labels(host, strlen(host)) == 0)
		return -EINVAL;
	return 0;
}

int domtab_builder_route_put(struct domtab_builder *b, const char *domain, const char *dest)
{
	size_t n = domain ? trim_dot(domain, strlen(domain)) : 0;
	struct broute *r;
	char *p;

	if (n == 0 || n > DOMTAB_NAME_MAX || domtab_route_dest_check(dest))
		return -EINVAL;
	if (bset_reserve(&b->routes))
		return -ENOMEM;
	r = malloc(sizeof(*r) + n + 1 + strlen(dest) + 1);
	if (!r)
		return -ENOMEM;
	p = (char *)(r + 1);
	bent_name(&r->e, &p, domain, n);
	r->dest = opt_copy(&p, dest);
	r->extra = n + 1 + strlen(dest) + 1;
	bset_insert(&b->routes, &r->e);
	return 0;
}

int domtab_builder_route_del(struct domtab_builder *b, const char *domain)
{
	return bset_del(&b->routes, domain);
}

const char *domtab_builder_route_get(const struct domtab_builder *b, const char *domain)
{
	struct bent *e = bset_get(&b->routes, domain);

	return e ? ((struct broute *)e)->dest : NULL;
}

size_t domtab_builder_route_count(const struct domtab_builder *b)
{
	return b->routes.count;
}

/* ---- immutable table ------------------------------------------------------ */

/* A built route: both strings in the table's route arena. */
struct troute {
	const char *name;
	const char *dest;
};

/* The index of one set of a built table (rows, routes): the entries
 * themselves are in an array of their own type beside it. */
struct tset {
	struct htab idx;             /* name -> entry number */
	size_t count;
	size_t nwild;                /* entries named "*.something" */
	uint32_t *lens;              /* name length per entry */
	char *arena;                 /* the entries' strings (and CIDRs) */
};

struct domtab {
	struct tset rs;
	struct domtab_row *rows;
	struct tset ts;
	struct troute *routes;
};

static void tset_fini(struct tset *s)
{
	htab_fini(&s->idx);
	free(s->lens);
	free(s->arena);
}

/* Room for n entries and an arena of size bytes (aligned for CIDRs). */
static int tset_init(struct tset *s, size_t n, size_t size)
{
	s->lens = malloc((n ? n : 1) * sizeof(*s->lens));
	s->arena = aligned_alloc(8, size ? (size + 7) & ~(size_t)7 : 8);
	return !s->lens || !s->arena || htab_reserve(&s->idx, (uint32_t)n) ? -ENOMEM : 0;
}

struct domtab *domtab_free(struct domtab *t)
{
	if (!t)
		return NULL;
	tset_fini(&t->rs);
	free(t->rows);
	tset_fini(&t->ts);
	free(t->routes);
	free(t);
	return NULL;
}

static int is_wild(const char *name, size_t len)
{
	return len > 2 && name[0] == '*' && name[1] == '.';
}

/* Index entry s->count, named name (its bent e), and count it. */
static void tset_add(struct tset *s, const struct bent *e, const char *name)
{
	s->lens[s->count] = e->len;
	s->nwild += is_wild(name, e->len);
	/* Cannot fail: room was reserved for every entry. */
	if (htab_insert(&s->idx, e->hash, (uint32_t)s->count))
		panic("domtab: reserved slot vanished");
	s->count++;
}

static void tput(struct domtab *t, const struct brow *br, char **arena)
{
	struct domtab_row *row = &t->rows[t->rs.count];

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
	/* The next row's CIDRs start 8-aligned (the arena is). */
	*arena += (br->extra + 7) & ~(size_t)7;
	tset_add(&t->rs, &br->e, row->name);
}

static void tput_route(struct domtab *t, const struct broute *br, char **arena)
{
	struct troute *r = &t->routes[t->ts.count];

	memcpy(*arena, br + 1, br->extra);
	r->name = *arena;
	r->dest = *arena + br->e.len + 1;
	*arena += br->extra;
	tset_add(&t->ts, &br->e, r->name);
}

struct domtab *domtab_build(const struct domtab_builder *b)
{
	struct domtab *t = calloc(1, sizeof(*t));
	const struct bset *rs = &b->rows, *ts = &b->routes;
	size_t rtotal = 0, ttotal = 0;
	char *arena;

	if (!t)
		return NULL;
	htab_init(&t->rs.idx);
	htab_init(&t->ts.idx);
	for (uint32_t i = 0; i < rs->count; i++)
		rtotal += (((const struct brow *)rs->el[i])->extra + 7) & ~(size_t)7;
	for (uint32_t i = 0; i < ts->count; i++)
		ttotal += ((const struct broute *)ts->el[i])->extra;
	t->rows = malloc((rs->count ? rs->count : 1) * sizeof(*t->rows));
	t->routes = malloc((ts->count ? ts->count : 1) * sizeof(*t->routes));
	if (!t->rows || !t->routes || tset_init(&t->rs, rs->count, rtotal) ||
	    tset_init(&t->ts, ts->count, ttotal))
		return domtab_free(t);
	arena = t->rs.arena;
	for (uint32_t i = 0; i < rs->count; i++)
		tput(t, (const struct brow *)rs->el[i], &arena);
	arena = t->ts.arena;
	for (uint32_t i = 0; i < ts->count; i++)
		tput_route(t, (const struct broute *)ts->el[i], &arena);
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

	return t->rs.lens[el] == k->pl + k->n &&
		name_eq(t->rows[el].name, k->prefix, k->pl, k->p, k->n);
}

static int troute_eq(const void *ctx, uint32_t el, const void *key)
{
	const struct domtab *t = ctx;
	const struct name_key *k = key;

	return t->ts.lens[el] == k->pl + k->n &&
		name_eq(t->routes[el].name, k->prefix, k->pl, k->p, k->n);
}

/*
 * The entry of idx for domain (len bytes, any case, optional trailing dot):
 * the exact name, else the nearest enclosing wildcard (a.b.example.test
 * tries *.b.example.test, then *.example.test, then *.test; only when the
 * set has wildcards), else HTAB_NONE. Inline so each caller's eq is too.
 */
static inline uint32_t tlookup(const struct tset *s, htab_eq_fn eq,
			       const struct domtab *t, const char *domain, size_t len)
{
	struct name_key k = { "", 0, domain, trim_dot(domain, len) };
	uint32_t r;

	if (k.n == 0 || k.n > DOMTAB_NAME_MAX)
		return HTAB_NONE;
	r = htab_find(&s->idx, name_hash("", 0, domain, k.n), eq, t, &k);
	if (r != HTAB_NONE || !s->nwild)
		return r;
	len = k.n;
	k.prefix = "*.";
	k.pl = 2;
	for (size_t i = 0; i < len; i++) {
		if (domain[i] != '.' || i + 1 >= len)
			continue;
		k.p = domain + i + 1;
		k.n = len - i - 1;
		r = htab_find(&s->idx, name_hash("*.", 2, k.p, k.n), eq, t, &k);
		if (r != HTAB_NONE)
			return r;
	}
	return HTAB_NONE;
}

const struct domtab_row *domtab_find(const struct domtab *t, const char *domain,
				     size_t len)
{
	uint32_t r = tlookup(&t->rs, trow_eq, t, domain, len);

	return r != HTAB_NONE ? &t->rows[r] : NULL;
}

int domtab_lookup(const struct domtab *t, const char *domain, size_t len)
{
	return domtab_find(t, domain, len) != NULL;
}

const struct domtab_row *domtab_row_at(const struct domtab *t, size_t i)
{
	return i < t->rs.count ? &t->rows[i] : NULL;
}

size_t domtab_count(const struct domtab *t)
{
	return t->rs.count;
}

const char *domtab_route(const struct domtab *t, const char *domain, size_t len)
{
	uint32_t r = tlookup(&t->ts, troute_eq, t, domain, len);

	return r != HTAB_NONE ? t->routes[r].dest : NULL;
}

size_t domtab_route_count(const struct domtab *t)
{
	return t->ts.count;
}

const char *domtab_mode_name(enum domtab_mode m)
{
	return m == DOMTAB_MODE_DELIVER ? "deliver" : "hold";
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
