/* SPDX-License-Identifier: MIT */
/*
 * epoch: quiescent-state-based reclamation (QSBR) for data that engine
 * threads read without locks, such as the domain table. Readers register
 * once, then announce a quiescent point (a moment where they hold no pointer
 * into shared data) at the top of every loop turn, and go offline while they
 * sleep in the kernel. A writer publishes a new version, then waits until
 * every online reader has passed a quiescent point before freeing the old.
 * Readers never block, never take a lock and never write shared memory other
 * than their own slot.
 */
#ifndef ETRND_CORE_EPOCH_H
#define ETRND_CORE_EPOCH_H

#include <stdint.h>

struct epoch;

/* A domain for at most max_readers reader threads. NULL on allocation
 * failure. */
struct epoch *epoch_new(unsigned max_readers);

/* Free the domain; no reader may be registered any more. NULL is fine.
 * Returns NULL. */
struct epoch *epoch_free(struct epoch *e);

/* Make the calling thread a reader of e (online at once). A thread reads at
 * most one domain. Returns 0, or -ENOSPC when max_readers are registered. */
int epoch_register(struct epoch *e);

/* The calling thread stops being a reader (it may then exit). */
void epoch_unregister(void);

/* Reader calls. No-ops in a thread that is not registered, so core/loop.c
 * calls them unconditionally. */
void epoch_quiescent(void);   /* holds no pointer into shared data now */
void epoch_offline(void);     /* about to sleep; holds no pointer until online */
void epoch_online(void);      /* back from sleep; may read shared data again */

/* Writer: after publishing a new version (with a seq_cst or release store),
 * start a grace period. Returns its target. Any thread may call it. */
uint64_t epoch_advance(struct epoch *e);

/* 1 if every reader has been quiescent or offline since target was made. */
int epoch_passed(struct epoch *e, uint64_t target);

/* epoch_advance() and wait (sleeping 0.2 ms at a time) until it has passed.
 * For the control thread, which may block; never call it from a reader. */
void epoch_synchronize(struct epoch *e);

#endif
