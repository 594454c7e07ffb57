/* SPDX-License-Identifier: MIT */
/*
 * addrlimit: see addrlimit.h. The addresses live in core/addrtab (the
 * node's one address-keyed table); an entry's words are the bucket's credit,
 * counted in units of 1/ADDRLIMIT_PERIOD_MS token (so refilling per_period
 * tokens per period is elapsed_ms * per_period units, exactly), and when it
 * was last brought up to date.
 */
#include "core/addrlimit.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "core/log.h"

/* A rank's low bits: the age of a bucket, to prefer the older on a tie of
 * credit (an age of a whole period or more means a full bucket). */
#define ADDRLIMIT_AGE_BITS 16
#define ADDRLIMIT_AGE_MAX ((1u << ADDRLIMIT_AGE_BITS) - 1)

/* An entry's words in the address table: a is the credit (tokens *
 * ADDRLIMIT_PERIOD_MS), b when it was last brought up to date (ms). */
struct addrlimit {
	const char *name;              /* the config key, for logs */
	unsigned per_period;
	uint64_t full;                 /* a full bucket's credit */
	atomic_int warned;             /* a partial eviction was logged */
	struct addrtab *tab;
};

/* Credit of v at now. A reading older than the bucket's (another thread
 * read the clock later but locked first) counts as no time passed. */
static uint64_t credit_at(const struct addrlimit *l, const struct addrtab_val *v,
			  uint64_t now_ms)
{
	uint64_t elapsed = now_ms > v->b ? now_ms - v->b : 0;

	if (elapsed >= ADDRLIMIT_PERIOD_MS)
		return l->full;
	/* elapsed < PERIOD and per_period <= PER_PERIOD_MAX: no overflow. */
	return v->a + elapsed * l->per_period >= l->full
		       ? l->full
		       : v->a + elapsed * l->per_period;
}

/* The entry to give up in a full shard: a fully refilled one (as good as
 * absent), else the one with the most credit, the older on a tie. Credit is
 * below full <= PER_PERIOD_MAX * PERIOD (< 2^33), so the rank cannot
 * overflow; + 1 keeps it off ADDRTAB_RANK_PINNED. */
static uint64_t addrlimit_rank(void *arg, const struct addrtab_val *v, uint64_t now_ms)
{
	const struct addrlimit *l = arg;
	uint64_t c = credit_at(l, v, now_ms);
	uint64_t age = now_ms > v->b ? now_ms - v->b : 0;

	if (c == l->full)
		return ADDRTAB_RANK_FREE;
	return (c << ADDRLIMIT_AGE_BITS) + (age < ADDRLIMIT_AGE_MAX ? age : ADDRLIMIT_AGE_MAX) + 1;
}

struct addrlimit *addrlimit_new(const char *name, unsigned per_period, unsigned max_addrs)
{
	struct addrlimit *l;

	if (per_period == 0 || per_period > ADDRLIMIT_PER_PERIOD_MAX || max_addrs == 0 ||
	    max_addrs > ADDRLIMIT_ADDRS_MAX) {
		errno = EINVAL;
		return NULL;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		goto nomem;
	l->name = name;
	l->per_period = per_period;
	l->full = (uint64_t)per_period * ADDRLIMIT_PERIOD_MS;
	l->tab = addrtab_new(max_addrs, addrlimit_rank, l);
	if (!l->tab)
		goto nomem;
	return l;
nomem:
	addrlimit_free(l);
	errno = ENOMEM;
	return NULL;
}

struct addrlimit *addrlimit_free(struct addrlimit *l)
{
	if (!l)
		return NULL;
	addrtab_free(l->tab);
	free(l);
	return NULL;
}

struct addrlimit_take_arg {
	struct addrlimit *l;
	uint64_t now_ms;
};

static int addrlimit_take_fn(void *arg, struct addrtab_val *v, enum addrtab_how how, int *drop)
{
	struct addrlimit_take_arg *ta = arg;
	struct addrlimit *l = ta->l;

	(void)drop;
	if (how == ADDRTAB_FOUND) {
		v->a = credit_at(l, v, ta->now_ms);
	} else {
		v->a = l->full;
		v->b = ta->now_ms;
	}
	if (how == ADDRTAB_NEW_EVICTED && !atomic_exchange(&l->warned, 1))
		log_warn("%s: the table of %u client addresses is full of busy ones; "
			 "evicting the least busy (a many-address client may exceed the limit)",
			 l->name, (unsigned)addrtab_capacity(l->tab));
	if (ta->now_ms > v->b)
		v->b = ta->now_ms;
	if (v->a < ADDRLIMIT_PERIOD_MS)
		return 0;
	v->a -= ADDRLIMIT_PERIOD_MS;
	return 1;
}

int addrlimit_take(struct addrlimit *l, const char *client, uint64_t now_ms)
{
	struct addrlimit_take_arg ta = { l, now_ms };

	/* Never -ENOSPC: no entry is pinned (addrlimit_rank is never 0). */
	return addrtab_update(l->tab, client, now_ms, ADDRTAB_CREATE, addrlimit_take_fn, &ta) == 1;
}

static int addrlimit_give_fn(void *arg, struct addrtab_val *v, enum addrtab_how how, int *drop)
{
	struct addrlimit_take_arg *ta = arg;
	struct addrlimit *l = ta->l;

	(void)how;
	(void)drop;
	v->a = credit_at(l, v, ta->now_ms) + ADDRLIMIT_PERIOD_MS;
	if (v->a > l->full)
		v->a = l->full;
	if (ta->now_ms > v->b)
		v->b = ta->now_ms;
	return 0;
}

void addrlimit_give(struct addrlimit *l, const char *client, uint64_t now_ms)
{
	struct addrlimit_take_arg ta = { l, now_ms };

	/* -ENOENT (no CREATE) when the entry went: absent is a full bucket. */
	(void)addrtab_update(l->tab, client, now_ms, 0, addrlimit_give_fn, &ta);
}

void addrlimit_stats(struct addrlimit *l, struct addrlimit_stats *st)
{
	struct addrtab_stats as;

	addrtab_stats(l->tab, &as);
	st->addrs = as.addrs;
	st->capacity = as.capacity;
	st->evicted_full = as.evicted_free;
	st->evicted_partial = as.evicted_ranked;
}

unsigned addrlimit_chain_of(const struct addrlimit *l, const char *client)
{
	return addrtab_chain_of(l->tab, client);
}
