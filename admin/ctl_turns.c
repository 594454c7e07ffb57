/* SPDX-License-Identifier: MIT */
/*
 * ctl_turns: see ctl_turns.h. A loop runs what was posted at the start of a
 * turn, before that turn's hooks, and a post made meanwhile waits for the
 * next turn (core/loop.c loop_run_inbox): a job that posts itself once more
 * is run the second time only after every hook of a whole turn has run.
 */
#include "admin/ctl_turns.h"

#include <stdlib.h>

#include "core/loop.h"
#include "core/rendezvous.h"

struct turns_req {
	struct rendezvous rv;   /* rv.mu guards done */
	unsigned done;          /* engine threads that passed a whole turn */
};

struct turns_job {
	struct turns_req *rq;
	struct loop *loop;
};

static void turns_put(struct turns_req *rq)
{
	if (!rendezvous_put(&rq->rv))
		return;
	rendezvous_destroy(&rq->rv);
	free(rq);
}

/* The job ends, counted (passed) or not (its loop refused the repost). */
static void turns_end(struct turns_job *j, int passed)
{
	struct turns_req *rq = j->rq;

	pthread_mutex_lock(&rq->rv.mu);
	rq->done += passed ? 1u : 0u;
	rendezvous_end_locked(&rq->rv);
	pthread_mutex_unlock(&rq->rv.mu);
	free(j);
	turns_put(rq);
}

static void turns_second(void *arg)
{
	turns_end(arg, 1);
}

static void turns_first(void *arg)
{
	struct turns_job *j = arg;

	if (loop_post(j->loop, turns_second, j))
		turns_end(j, 0); /* stopping: this turn may be its last */
}

void ctl_turns_wait(const struct drain_status_shard *shards, unsigned n, struct buf *out)
{
	struct turns_req *rq = calloc(1, sizeof(*rq));
	unsigned done;
	int timed_out;

	if (!rq) {
		(void)buf_puts(out, "error: out of memory\n");
		return;
	}
	rendezvous_init(&rq->rv);
	for (unsigned i = 0; i < n; i++) {
		struct turns_job *j = shards[i].loop ? malloc(sizeof(*j)) : NULL;

		if (!j)
			continue;
		j->rq = rq;
		j->loop = shards[i].loop;
		rendezvous_hold(&rq->rv);
		if (loop_post(j->loop, turns_first, j)) {
			free(j);
			rendezvous_unhold(&rq->rv);
		}
	}
	timed_out = rendezvous_wait(&rq->rv, CTL_TURNS_WAIT_MS);
	done = rq->done;
	pthread_mutex_unlock(&rq->rv.mu);
	turns_put(rq);
	(void)buf_printf(out, "turns: %u of %u engine threads%s\n", done, n,
			 timed_out ? " (timed out)" : "");
}
