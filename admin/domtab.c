/* SPDX-License-Identifier: MIT */
/*
 * domtab: domain rows, a mutable builder and immutable tables (domtab.h).
 *
 * The builder is a linear-probing hash map of individually allocated rows
 * (put/del are O(1), so the control thread applies one pub/sub event without
 * touching the rest). A built table is three allocations: the slot array
 * (sized to at most half full, so a miss ends within a couple of probes), the
 * row array and one arena holding every string and CIDR list.
 */
#include "admin/domtab.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/epoch.h"

static const uint32_t FNV_OFFSET = 2166136261u, FNV_PRIME = 16777619u;

static inline unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* FNV-1a over the lower-cased bytes, continuing from h. */
static uint32_t hash_more(uint32_t h, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= lower((unsigned char)p[i]);
		h *= FNV_PRIME;
	}
	return h;
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
		if (stored[i] != (char)lower((unsigned char)p[i]))
			return 0;
	return 1;
}

/* ---- builder ------------------------------------------------------------ */

struct brow {
	struct domtab_row row;       /* pointers into this allocation */
	uint32_t hash;
	uint32_t len;                /* of row.name */
	size_t extra;                /* bytes of strings + cidrs after the struct */
};

struct domtab_builder {
	struct brow **slots;
	size_t mask;
	size_t count;
};

struct domtab_builder *domtab_builder_new(void)
{
	struct domtab_builder *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->slots = calloc(64, sizeof(*b->slots));
	if (!b->slots) {
		free(b);
		return NULL;
	}
	b->mask = 63;
	return b;
}

struct domtab_builder *domtab_builder_free(struct domtab_builder *b)
{
	if (!b)
		return NULL;
	for (size_t i = 0; i <= b->mask; i++)
		free(b->slots[i]);
	free(b->slots);
	free(b);
	return NULL;
}

/* The slot holding name, or the empty slot where it would go. */
static size_t bfind(const struct domtab_builder *b, const char *p, size_t n,
		    uint32_t h)
{
	for (size_t i = h & b->mask;; i = (i + 1) & b->mask) {
		const struct brow *r = b->slots[i];

		if (!r || (r->hash == h && r->len == n && name_eq(r->row.name, "", 0, p, n)))
			return i;
	}
}

static int bgrow(struct domtab_builder *b)
{
	size_t ncap = (b->mask + 1) * 2;
	struct brow **ns = calloc(ncap, sizeof(*ns));

	if (!ns)
		return -ENOMEM;
	for (size_t i = 0; i <= b->mask; i++) {
		struct brow *r = b->slots[i];
		size_t j;

		if (!r)
			continue;
		for (j = r->hash & (ncap - 1); ns[j]; j = (j + 1) & (ncap - 1))
			;
		ns[j] = r;
	}
	free(b->slots);
	b->slots = ns;
	b->mask = ncap - 1;
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
	size_t extra, i;
	uint32_t h;
	struct brow *r;
	char *p;

	if (n == 0 || n > DOMTAB_NAME_MAX || row->netrn_from > DOMTAB_CIDR_MAX)
		return -EINVAL;
	if ((b->count + 1) * 2 > b->mask + 1 && bgrow(b))
		return -ENOMEM;
	extra = row->netrn_from * sizeof(struct domtab_cidr) + n + 1 +
		opt_len(row->queue) + opt_len(row->dest) + opt_len(row->owner);
	r = malloc(sizeof(*r) + extra);
	if (!r)
		return -ENOMEM;
	r->row = *row;
	p = (char *)(r + 1);
	/* CIDRs first: struct brow is suitably aligned for them. */
	if (row->netrn_from) {
		memcpy(p, row->etrn_from, row->netrn_from * sizeof(struct domtab_cidr));
		r->row.etrn_from = (const struct domtab_cidr *)p;
		p += row->netrn_from * sizeof(struct domtab_cidr);
	} else {
		r->row.etrn_from = NULL;
	}
	for (size_t k = 0; k < n; k++)
		p[k] = (char)lower((unsigned char)row->name[k]);
	p[n] = '\0';
	r->row.name = p;
	p += n + 1;
	r->row.queue = opt_copy(&p, row->queue);
	r->row.dest = opt_copy(&p, row->dest);
	r->row.owner = opt_copy(&p, row->owner);
	h = hash_more(FNV_OFFSET, row->name, n);
	r->hash = h;
	r->len = (uint32_t)n;
	r->extra = extra;
	i = bfind(b, row->name, n, h);
	if (b->slots[i])
		free(b->slots[i]);
	else
		b->count++;
	b->slots[i] = r;
	return 0;
}

int domtab_builder_del(struct domtab_builder *b, const char *name)
{
	size_t n = trim_dot(name, strlen(name));
	size_t i, j;

	if (n == 0 || n > DOMTAB_NAME_MAX)
		return 0;
	i = bfind(b, name, n, hash_more(FNV_OFFSET, name, n));
	if (!b->slots[i])
		return 0;
	free(b->slots[i]);
	b->slots[i] = NULL;
	b->count--;
	/* Backward-shift deletion: move later members of the probe run into
	 * the hole when their home slot does not lie between hole and them. */
	for (j = (i + 1) & b->mask; b->slots[j]; j = (j + 1) & b->mask) {
		size_t home = b->slots[j]->hash & b->mask;

		if (((j - home) & b->mask) >= ((j - i) & b->mask)) {
			b->slots[i] = b->slots[j];
			b->slots[j] = NULL;
			i = j;
		}
	}
	return 1;
}

const struct domtab_row *domtab_builder_get(const struct domtab_builder *b,
					    const char *name)
{
	size_t n = trim_dot(name, strlen(name));
	const struct brow *r;

	if (n == 0 || n > DOMTAB_NAME_MAX)
		return NULL;
	r = b->slots[bfind(b, name, n, hash_more(FNV_OFFSET, name, n))];
	return r ? &r->row : NULL;
}

size_t domtab_builder_count(const struct domtab_builder *b)
{
	return b->count;
}

/* ---- immutable table ------------------------------------------------------ */

struct domtab_slot {
	uint32_t hash;
	uint32_t row;                /* index + 1; 0 marks an empty slot */
};

struct domtab {
	struct domtab_slot *slots;
	size_t mask;
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
	free(t->slots);
	free(t->rows);
	free(t->lens);
	free(t->arena);
	free(t);
	return NULL;
}

static void tput(struct domtab *t, const struct brow *br, char **arena)
{
	struct domtab_row *row = &t->rows[t->count];
	size_t i;

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
	for (i = br->hash & t->mask; t->slots[i].row; i = (i + 1) & t->mask)
		;
	t->slots[i].hash = br->hash;
	t->slots[i].row = (uint32_t)++t->count;
}

struct domtab *domtab_build(const struct domtab_builder *b)
{
	struct domtab *t = calloc(1, sizeof(*t));
	size_t cap = 8, total = 0;
	char *arena;

	if (!t)
		return NULL;
	while (cap < b->count * 2)
		cap *= 2;
	for (size_t i = 0; i <= b->mask; i++)
		if (b->slots[i])
			total += (b->slots[i]->extra + 7) & ~(size_t)7;
	t->slots = calloc(cap, sizeof(*t->slots));
	t->rows = malloc((b->count ? b->count : 1) * sizeof(*t->rows));
	t->lens = malloc((b->count ? b->count : 1) * sizeof(*t->lens));
	/* aligned for the CIDR arrays at the start of each row's tail */
	t->arena = aligned_alloc(8, total ? total : 8);
	if (!t->slots || !t->rows || !t->lens || !t->arena)
		return domtab_free(t);
	t->mask = cap - 1;
	arena = t->arena;
	for (size_t i = 0; i <= b->mask; i++)
		if (b->slots[i])
			tput(t, b->slots[i], &arena);
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

static const struct domtab_row *tfind(const struct domtab *t, const char *prefix,
				      size_t pl, const char *p, size_t n)
{
	uint32_t h = hash_more(hash_more(FNV_OFFSET, prefix, pl), p, n);

	for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
		const struct domtab_slot *s = &t->slots[i];
		uint32_t r;

		if (!s->row)
			return NULL;
		r = s->row - 1;
		if (s->hash == h && t->lens[r] == pl + n &&
		    name_eq(t->rows[r].name, prefix, pl, p, n))
			return &t->rows[r];
	}
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

static int prefix_match(const uint8_t *a, const uint8_t *net, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;

	if (memcmp(a, net, full))
		return 0;
	if (rest) {
		uint8_t m = (uint8_t)(0xff << (8 - rest));

		if ((a[full] & m) != (net[full] & m))
			return 0;
	}
	return 1;
}

int domtab_row_allows(const struct domtab_row *row, const struct sockaddr *addr)
{
	uint8_t a[16];
	int fam;

	if (addr->sa_family == AF_INET) {
		memcpy(a, &((const struct sockaddr_in *)addr)->sin_addr, 4);
		fam = AF_INET;
	} else if (addr->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)addr)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			memcpy(a, &a6->s6_addr[12], 4);
			fam = AF_INET;
		} else {
			memcpy(a, a6, 16);
			fam = AF_INET6;
		}
	} else {
		return 0;
	}
	for (unsigned i = 0; i < row->netrn_from; i++)
		if (row->etrn_from[i].family == fam &&
		    prefix_match(a, row->etrn_from[i].addr, row->etrn_from[i].prefix))
			return 1;
	return 0;
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
