/* SPDX-License-Identifier: MIT */
/*
 * epoch: QSBR (see epoch.h). The global counter starts at 1 and only grows; a
 * reader's slot holds the counter value it last saw at a quiescent point, or
 * 0 while it is offline. A grace period with target T has passed once every
 * slot is 0 or >= T: each online reader has then passed a quiescent point
 * after T was made, so it can no longer hold a pointer published before T.
 *
 * Orderings: a quiescent point loads the counter then stores the slot (the
 * reader's earlier reads happen before the writer's free; its later reads see
 * what was published before the counter moved). Going online is the Dekker case (store the slot, then read shared
 * data, while the writer publishes, then reads slots): both sides use seq_cst
 * so either the writer sees the reader online or the reader sees the new
 * version. Slots sit on their own cache lines.
 */
#include "core/epoch.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#define EPOCH_CACHELINE 64
#define EPOCH_WAIT_NS 200000L /* writer's poll interval in epoch_synchronize */

struct epoch_slot {
	_Atomic uint64_t ctr;          /* 0 = offline */
	atomic_int used;
	char pad[EPOCH_CACHELINE - sizeof(uint64_t) - sizeof(int)];
};

struct epoch {
	_Alignas(EPOCH_CACHELINE) _Atomic uint64_t global;
	char pad[EPOCH_CACHELINE - sizeof(uint64_t)];
	unsigned nslots;
	struct epoch_slot *slots;
};

static _Thread_local struct epoch *epoch_mine;
static _Thread_local struct epoch_slot *epoch_self;

struct epoch *epoch_new(unsigned max_readers)
{
	struct epoch *e = aligned_alloc(EPOCH_CACHELINE, sizeof(*e));

	if (!e)
		return NULL;
	atomic_init(&e->global, 1);
	e->nslots = max_readers ? max_readers : 1;
	e->slots = aligned_alloc(EPOCH_CACHELINE, e->nslots * sizeof(*e->slots));
	if (!e->slots) {
		free(e);
		return NULL;
	}
	for (unsigned i = 0; i < e->nslots; i++) {
		atomic_init(&e->slots[i].ctr, 0);
		atomic_init(&e->slots[i].used, 0);
	}
	return e;
}

struct epoch *epoch_free(struct epoch *e)
{
	if (!e)
		return NULL;
	free(e->slots);
	free(e);
	return NULL;
}

int epoch_register(struct epoch *e)
{
	for (unsigned i = 0; i < e->nslots; i++) {
		int expect = 0;

		if (atomic_compare_exchange_strong(&e->slots[i].used, &expect, 1)) {
			epoch_mine = e;
			epoch_self = &e->slots[i];
			epoch_online();
			return 0;
		}
	}
	return -ENOSPC;
}

void epoch_unregister(void)
{
	if (!epoch_self)
		return;
	atomic_store_explicit(&epoch_self->ctr, 0, memory_order_release);
	atomic_store_explicit(&epoch_self->used, 0, memory_order_release);
	epoch_self = NULL;
	epoch_mine = NULL;
}

void epoch_quiescent(void)
{
	uint64_t g;

	if (!epoch_self)
		return;
	/* seq_cst, not just acquire/release: this may also end an offline
	 * stretch (the first turn of loop_run), which is the Dekker case. */
	g = atomic_load_explicit(&epoch_mine->global, memory_order_seq_cst);
	atomic_store_explicit(&epoch_self->ctr, g, memory_order_seq_cst);
}

void epoch_offline(void)
{
	if (epoch_self)
		atomic_store_explicit(&epoch_self->ctr, 0, memory_order_release);
}

void epoch_online(void)
{
	if (!epoch_self)
		return;
	atomic_store_explicit(&epoch_self->ctr,
			      atomic_load_explicit(&epoch_mine->global, memory_order_seq_cst),
			      memory_order_seq_cst);
}

uint64_t epoch_advance(struct epoch *e)
{
	return atomic_fetch_add_explicit(&e->global, 1, memory_order_seq_cst) + 1;
}

int epoch_passed(struct epoch *e, uint64_t target)
{
	for (unsigned i = 0; i < e->nslots; i++) {
		uint64_t c = atomic_load_explicit(&e->slots[i].ctr, memory_order_seq_cst);

		if (c != 0 && c < target)
			return 0;
	}
	return 1;
}

void epoch_synchronize(struct epoch *e)
{
	uint64_t target = epoch_advance(e);
	struct timespec ts = { 0, EPOCH_WAIT_NS };

	while (!epoch_passed(e, target))
		nanosleep(&ts, NULL);
}
