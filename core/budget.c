/* SPDX-License-Identifier: MIT */
/*
 * budget: see budget.h. One cache line per budget, so the counter does not
 * share a line with whatever the allocator puts next to it.
 */
#include "core/budget.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "core/log.h"

#define BUDGET_ALIGN 64 /* a cache line */

struct budget {
	_Alignas(BUDGET_ALIGN) _Atomic uint64_t used;
	uint64_t limit;
};

struct budget *budget_new(uint64_t limit)
{
	struct budget *b;

	if (limit == 0)
		panic("zero limit");
	b = aligned_alloc(BUDGET_ALIGN, sizeof(*b));
	if (!b)
		return NULL;
	atomic_init(&b->used, 0);
	b->limit = limit;
	return b;
}

struct budget *budget_free(struct budget *b)
{
	free(b);
	return NULL;
}

int budget_take(struct budget *b, uint64_t n)
{
	uint64_t cur = atomic_load_explicit(&b->used, memory_order_relaxed);

	do {
		if (n > b->limit - cur)
			return -ENOBUFS;
	} while (!atomic_compare_exchange_weak_explicit(&b->used, &cur, cur + n,
							memory_order_relaxed,
							memory_order_relaxed));
	return 0;
}

void budget_give(struct budget *b, uint64_t n)
{
	uint64_t old = atomic_fetch_sub_explicit(&b->used, n, memory_order_relaxed);

	if (old < n)
		panic("%llu given back, %llu taken", (unsigned long long)n,
		      (unsigned long long)old);
}

uint64_t budget_used(const struct budget *b)
{
	return atomic_load_explicit(&b->used, memory_order_relaxed);
}

uint64_t budget_limit(const struct budget *b)
{
	return b->limit;
}
