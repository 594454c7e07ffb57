/* SPDX-License-Identifier: MIT */
/*
 * The snapshot/reclamation stress test of test_domtab.c without Criterion,
 * for ThreadSanitizer: Criterion 2.4 cannot start under TSan (its
 * "inheritable arena" fails; Snaipe/Criterion#274). Readers look names up in
 * the published table and pass quiescent points (and go offline/online as
 * the engine loop does) while a writer swaps in new tables and frees the old.
 * Exit 0 when every lookup saw an intact row.
 *
 *   cc -std=gnu17 -O1 -g -fsanitize=thread -I. -D_GNU_SOURCE \
 *      tests/unit/domtab_stress.c core/domtab.c core/epoch.c core/htab.c core/log.c \
 *      -o /tmp/domtab_stress -lpthread
 *   /tmp/domtab_stress [swaps]
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/domtab.h"
#include "core/epoch.h"

enum { READERS = 4, NAMES = 64 };

static struct domtab_live *lv;
static struct epoch *ep;
static atomic_int stop_flag, errors;
static atomic_long lookups;

static struct domtab *table(unsigned gen)
{
	struct domtab_builder *b = domtab_builder_new();
	char name[64], q[32];
	struct domtab *t;

	if (!b)
		abort();
	snprintf(q, sizeof(q), "gen%u", gen);
	for (int i = 0; i < NAMES; i++) {
		struct domtab_row r = { .name = name, .queue = q };

		snprintf(name, sizeof(name), "fixed-%d.test", i);
		if (domtab_builder_put(b, &r))
			abort();
	}
	t = domtab_build(b);
	domtab_builder_free(b);
	if (!t)
		abort();
	return t;
}

static void *reader(void *arg)
{
	char name[64];
	unsigned i = 0;

	(void)arg;
	if (epoch_register(ep))
		abort();
	while (!atomic_load(&stop_flag)) {
		const struct domtab *t = domtab_live_get(lv);

		for (int k = 0; k < 16; k++, i++) {
			const struct domtab_row *r;

			snprintf(name, sizeof(name), "FIXED-%u.test", i % NAMES);
			r = domtab_find(t, name, strlen(name));
			if (!r || strncmp(r->queue, "gen", 3) || strncmp(r->name, "fixed-", 6))
				atomic_fetch_add(&errors, 1);
			atomic_fetch_add_explicit(&lookups, 1, memory_order_relaxed);
		}
		if ((i & 255) == 0) {
			epoch_offline();
			sched_yield();
			epoch_online();
		} else {
			epoch_quiescent();
		}
	}
	epoch_unregister();
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned swaps = argc > 1 ? (unsigned)atoi(argv[1]) : 2000;
	pthread_t th[READERS];

	ep = epoch_new(READERS);
	lv = ep ? domtab_live_new(table(0), ep) : NULL;
	if (!lv)
		return 1;
	for (int i = 0; i < READERS; i++)
		if (pthread_create(&th[i], NULL, reader, NULL))
			return 1;
	for (unsigned g = 1; g <= swaps; g++)
		domtab_live_swap(lv, table(g));
	atomic_store(&stop_flag, 1);
	for (int i = 0; i < READERS; i++)
		pthread_join(th[i], NULL);
	printf("domtab_stress: %u swaps, %ld lookups, %d errors\n", swaps,
	       atomic_load(&lookups), atomic_load(&errors));
	domtab_live_free(lv);
	epoch_free(ep);
	return atomic_load(&errors) ? 1 : 0;
}
