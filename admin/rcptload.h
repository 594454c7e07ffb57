/* SPDX-License-Identifier: MIT */
/*
 * rcptload: the control thread's side of recipient validation (issue 19).
 * It reads PREFIX"rcpts:{<domain>}" (a Redis set, admin/schema.h) for every
 * domain row whose rcpt_check is on, builds an immutable core/rcptset of it,
 * owns the sets, and points the rows of a domtab_builder at them before the
 * control thread publishes the table. Only the changed domain's set is
 * rebuilt: a "rcpts <d>" event reads d's set again, a resync only the sets
 * whose PREFIX"rcpts_gen:{<d>}" counter moved. Over rcpt_max_per_domain or
 * rcpt_max_total, or unreadable: logged, and the previous set kept (a row
 * with none gets 451 4.3.0 at RCPT). Blocking Redis calls: control thread
 * only.
 */
#ifndef ETRND_ADMIN_RCPTLOAD_H
#define ETRND_ADMIN_RCPTLOAD_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "core/domtab.h"

#define RCPTLOAD_SCAN_COUNT "10000" /* SSCAN COUNT hint: members per round trip */

struct rcptload;

/* A loader holding at most max_per_domain recipients in one set and
 * max_total in all. NULL on allocation failure. */
struct rcptload *rcptload_new(size_t max_per_domain, size_t max_total);

/* Free the loader and every set it holds: only once no table that points
 * at them can be read any more. NULL is fine. Returns NULL. */
struct rcptload *rcptload_free(struct rcptload *l);

/* Read domain name's set again (name as the row spells it). The new set
 * replaces the one held (the old goes to rcptload_reap()), or the old one
 * stays when the new one is over a cap (logged).
 * 0, or -1 with err when Redis failed (the caller treats its connection as
 * broken). */
int rcptload_fetch(struct rcptload *l, redisContext *c, const char *prefix, const char *name,
		char *err, size_t errlen);

/*
 * Make the loader agree with b and point b's rows at their sets: a set for
 * every row with rcpt_check on is read when none is held (or, with
 * check_gen, when its generation counter moved); sets of rows that are gone
 * or off are dropped. 0, or -1 with err (Redis failed; b's rows are still
 * pointed at the sets held).
 */
int rcptload_sync(struct rcptload *l, redisContext *c, const char *prefix,
		struct domtab_builder *b, int check_gen, char *err, size_t errlen);

/* Point b's rows at the sets held, without Redis (a table built while
 * Redis is away keeps its sets). */
void rcptload_attach(const struct rcptload *l, struct domtab_builder *b);

/* Free the sets replaced or dropped since the last call: after the table
 * that pointed at them was swapped out (domtab_live_swap() waited for the
 * readers). */
void rcptload_reap(struct rcptload *l);

/* Recipients held in all sets, and the sets' bytes. */
size_t rcptload_total(const struct rcptload *l);
size_t rcptload_mem(const struct rcptload *l);

#endif
