/* SPDX-License-Identifier: MIT */
/*
 * domstat: see domstat.h. Insertion claims an empty slot with one CAS on its
 * key; lookups probe linearly until the key or an empty slot. Counters are
 * relaxed atomics: a quota check may see a count a few messages old, which
 * quota semantics tolerate (they are a bound on held bytes, not a lock).
 *
 * Not a core/htab, on purpose: every engine thread inserts and reads at
 * once, without a lock. htab's slots point into a caller's element array,
 * grow by rehashing, and delete by shifting slots, none of which a reader
 * racing a writer could survive. Here a cell is claimed with one CAS on its
 * key (the 64-bit hash is the whole key: no name to compare, so no pointer
 * to publish), never moves and is never removed. Only the hash and case
 * folding are shared (core/hash.h).
 */
#include "store/domstat.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/ascii.h"
#include "core/hash.h"
#include "core/log.h"

#define DOMSTAT_MIN_SLOTS 64
#define DOMSTAT_NAME_MAX 255 /* RFC 1035 2.3.4 */

struct domstat_cell {
	_Atomic uint64_t key;     /* 0: empty */
	_Atomic int64_t msgs;
	_Atomic int64_t bytes;
	/* The domain's name (a domain's own cell; NULL for a wildcard's, or
	 * until the first add names it): set once with a CAS, freed with the
	 * table. 32 bytes: two cells per cache line. */
	_Atomic(char *) name;
};

struct domstat {
	struct domstat_cell *cells;
	size_t mask;
	/* Set by an add (only when clear: a load, no store, on the hot path
	 * once set), cleared by domstat_changed(). */
	atomic_int changed;
	/* The named cells in naming order, for the walk: named[i] = slot + 1
	 * (0 while the namer has not stored it yet); nnamed claims a place.
	 * At most one place per slot, so mask + 1 places. */
	_Atomic uint32_t *named;
	_Atomic size_t nnamed;
};

#define DOMSTAT_WILD "*."   /* a wildcard name: "*." + the parent */

/* FNV-1a 64 over the ASCII-lower-cased name, one trailing dot ignored.
 * from is HASH_FNV64_INIT, or the hash of a prefix (DOMSTAT_WILD). */
static uint64_t domstat_hash_from(uint64_t from, const char *p, size_t n)
{
	uint64_t h;

	if (n > 0 && p[n - 1] == '.')
		n--;
	h = hash_fnv64_lower(from, p, n);
	return h ? h : 1; /* 0 marks an empty slot */
}

static uint64_t domstat_hash(const char *p, size_t n)
{
	return domstat_hash_from(HASH_FNV64_INIT, p, n);
}

struct domstat *domstat_new(size_t max_domains)
{
	struct domstat *t = calloc(1, sizeof(*t));
	size_t n = DOMSTAT_MIN_SLOTS;

	if (!t)
		return NULL;
	while (n < max_domains * 2)
		n *= 2;
	t->cells = calloc(n, sizeof(*t->cells));
	t->named = calloc(n, sizeof(*t->named));
	if (!t->cells || !t->named) {
		free(t->cells);
		free(t->named);
		free(t);
		return NULL;
	}
	t->mask = n - 1;
	return t;
}

struct domstat *domstat_free(struct domstat *t)
{
	if (t) {
		for (size_t i = 0; i <= t->mask; i++)
			free(atomic_load_explicit(&t->cells[i].name, memory_order_relaxed));
		free(t->cells);
		free(t->named);
		free(t);
	}
	return NULL;
}

static struct domstat_cell *find(const struct domstat *t, uint64_t h, int insert)
{
	for (size_t i = h & t->mask, n = 0; n <= t->mask; i = (i + 1) & t->mask, n++) {
		struct domstat_cell *c = &t->cells[i];
		uint64_t k = atomic_load_explicit(&c->key, memory_order_acquire);

		if (k == h)
			return c;
		if (k != 0)
			continue;
		if (!insert)
			return NULL;
		if (atomic_compare_exchange_strong(&c->key, &k, h))
			return c;
		if (k == h) /* another thread claimed it for the same domain */
			return c;
	}
	return NULL;
}

static struct domstat_cell *cell_of(struct domstat *t, uint64_t h)
{
	static atomic_int warned;
	struct domstat_cell *c = find(t, h, 1);

	if (!c && !atomic_exchange(&warned, 1))
		log_warn("domain counters full (%zu domains with held mail): held mail of "
			 "further domains is not counted, so their quota is not enforced",
			 (t->mask + 1) / 2);
	return c;
}

struct domstat_cell *domstat_cell(struct domstat *t, const char *domain, size_t len)
{
	if (len > DOMSTAT_NAME_MAX + 1)
		return NULL;
	return cell_of(t, domstat_hash(domain, len));
}

void domstat_add(struct domstat_cell *c, int64_t msgs, int64_t bytes)
{
	atomic_fetch_add_explicit(&c->msgs, msgs, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->bytes, bytes, memory_order_relaxed);
}

/* Name a domain's own cell at its first add (once per domain: a malloc
 * per new domain, never per message). Out of memory: left unnamed (its
 * counts work; only the cluster's per-domain walk misses it). */
static void name_cell(struct domstat *t, struct domstat_cell *c, const char *domain, size_t len)
{
	char *want = NULL, *n;
	size_t i;

	if (atomic_load_explicit(&c->name, memory_order_acquire))
		return;
	if (len > 0 && domain[len - 1] == '.')
		len--;
	n = malloc(len + 1);
	if (!n)
		return;
	ascii_lower_copy(n, domain, len);
	n[len] = '\0';
	if (!atomic_compare_exchange_strong_explicit(&c->name, &want, n, memory_order_release,
						     memory_order_relaxed)) {
		free(n); /* another thread named it first */
		return;
	}
	/* Each cell is named once: never more places than slots. */
	i = atomic_fetch_add_explicit(&t->nnamed, 1, memory_order_relaxed);
	atomic_store_explicit(&t->named[i], (uint32_t)(c - t->cells) + 1, memory_order_release);
}

void domstat_add_domain(struct domstat *t, const char *domain, size_t len,
			int64_t msgs, int64_t bytes)
{
	uint64_t wild = hash_fnv64_lower(HASH_FNV64_INIT, DOMSTAT_WILD,
					 sizeof(DOMSTAT_WILD) - 1);
	struct domstat_cell *c;

	if (len > DOMSTAT_NAME_MAX + 1)
		return;
	if ((c = cell_of(t, domstat_hash(domain, len)))) {
		name_cell(t, c, domain, len);
		domstat_add(c, msgs, bytes);
	}
	if (!atomic_load_explicit(&t->changed, memory_order_relaxed))
		atomic_store_explicit(&t->changed, 1, memory_order_relaxed);
	/* Every enclosing wildcard, nearest first, as domtab_find() probes
	 * them: the parent after each dot (a trailing dot is no label). */
	for (size_t i = 0; i + 1 < len; i++) {
		if (domain[i] != '.')
			continue;
		c = cell_of(t, domstat_hash_from(wild, domain + i + 1, len - i - 1));
		if (c)
			domstat_add(c, msgs, bytes);
	}
}

uint64_t domstat_bytes(const struct domstat *t, const char *domain, size_t len)
{
	struct domstat_cell *c = find(t, domstat_hash(domain, len), 0);
	int64_t v = c ? atomic_load_explicit(&c->bytes, memory_order_relaxed) : 0;

	return v > 0 ? (uint64_t)v : 0;
}

uint64_t domstat_msgs(const struct domstat *t, const char *domain, size_t len)
{
	struct domstat_cell *c = find(t, domstat_hash(domain, len), 0);
	int64_t v = c ? atomic_load_explicit(&c->msgs, memory_order_relaxed) : 0;

	return v > 0 ? (uint64_t)v : 0;
}

void domstat_walk(const struct domstat *t, domstat_walk_fn fn, void *arg)
{
	size_t n = atomic_load_explicit(&((struct domstat *)t)->nnamed, memory_order_acquire);

	if (n > t->mask + 1)
		n = t->mask + 1;
	for (size_t i = 0; i < n; i++) {
		uint32_t s = atomic_load_explicit(&t->named[i], memory_order_acquire);
		struct domstat_cell *c;
		const char *name;
		int64_t m, b;

		if (s == 0)
			continue; /* its namer is storing it: the next walk has it */
		c = &t->cells[s - 1];
		name = atomic_load_explicit(&c->name, memory_order_acquire);
		m = atomic_load_explicit(&c->msgs, memory_order_relaxed);
		b = atomic_load_explicit(&c->bytes, memory_order_relaxed);
		fn(arg, i, name, m > 0 ? (uint64_t)m : 0, b > 0 ? (uint64_t)b : 0);
	}
}

int domstat_changed(struct domstat *t)
{
	/* Cheap test first: the poller runs every ~100 ms, mostly idle. */
	if (!atomic_load_explicit(&t->changed, memory_order_relaxed))
		return 0;
	return atomic_exchange_explicit(&t->changed, 0, memory_order_relaxed) != 0;
}
