/* SPDX-License-Identifier: MIT */
/*
 * budget: a node-wide count of bytes against a fixed limit, shared by every
 * engine thread without a lock (one atomic counter). The SMTP server takes
 * from it as it buffers DATA and gives back when the message is stored or
 * dropped, so concurrent sessions together never hold more than the limit.
 */
#ifndef ETRND_CORE_BUDGET_H
#define ETRND_CORE_BUDGET_H

#include <stddef.h>
#include <stdint.h>

struct budget;

/* A budget of limit bytes (limit > 0). NULL on allocation failure. The
 * caller owns it; it must outlive every user. */
struct budget *budget_new(uint64_t limit);

/* Free it (NULL is fine). Returns NULL. */
struct budget *budget_free(struct budget *b);

/* Take n bytes: 0, or -ENOBUFS (nothing taken) when the total would pass the
 * limit. Thread-safe; exact (a compare-and-swap loop, never over the limit
 * even for a moment). */
int budget_take(struct budget *b, uint64_t n);

/* Give back n bytes taken before. Giving back more than was taken is a bug
 * in the caller: panic(). Thread-safe. */
void budget_give(struct budget *b, uint64_t n);

/* Bytes taken now (a snapshot), and the limit. */
uint64_t budget_used(const struct budget *b);
uint64_t budget_limit(const struct budget *b);

#endif
