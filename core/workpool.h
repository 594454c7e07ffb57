/* SPDX-License-Identifier: MIT */
/*
 * workpool: a small fixed number of threads that run blocking work (a
 * synchronous library, a lookup that waits) for the engine threads, which
 * never block. Jobs live in preallocated slots, so the pool bounds what it
 * holds: when every slot is taken, workpool_job_get() says so at once and
 * the caller answers "try later". A job's done() runs on the asking loop's
 * thread through loop_post(). The pattern of admin/authpool.c, for any job.
 */
#ifndef ETRND_CORE_WORKPOOL_H
#define ETRND_CORE_WORKPOOL_H

#include <stddef.h>
#include <stdint.h>

struct loop;
struct workpool;

/* The head of every job slot (the caller's job struct begins with it). */
struct workpool_job {
	struct workpool_job *next;            /* the pool's */
	struct workpool *pool;                /* the pool's */
	struct loop *l;                       /* where done() runs: set it */
	/* Run on l's thread once work() is over; the slot is free again when
	 * it returns (keep nothing of j). */
	void (*done)(struct workpool_job *j);
};

struct workpool_conf {
	const char *name;                     /* for log lines ("spf") */
	unsigned threads;                     /* workers, >= 1 */
	unsigned jobs;                        /* slots: accepted and not done */
	size_t job_size;                      /* each slot, >= the head */
	/* Each worker's own context, made on the worker at its start (NULL
	 * is fine when thread_start is NULL; a NULL from thread_start stops
	 * that worker, logged), and ended by thread_end. */
	void *(*thread_start)(void *arg);
	void (*thread_end)(void *arg, void *ctx);
	/* The blocking part, on a worker. */
	void (*work)(void *arg, void *ctx, struct workpool_job *j);
	void *arg;
};

/* Start the workers. NULL with err set (out of memory, pthread_create). */
struct workpool *workpool_start(const struct workpool_conf *conf, char *err, size_t errlen);

/* A free slot (zeroed past the head), or NULL when all are taken or the
 * pool is stopping. Any thread. */
struct workpool_job *workpool_job_get(struct workpool *p);

/* Queue j (from workpool_job_get, l and done set) for a worker. */
void workpool_submit(struct workpool *p, struct workpool_job *j);

/* Give back a slot that was never submitted. */
void workpool_job_put(struct workpool *p, struct workpool_job *j);

/*
 * Join the workers. Call once no loop can submit any more and every loop
 * that did has finished (engine_stop()), before those loops are freed: a
 * worker busy with a job finishes it and posts done(), which a finished
 * loop drops; jobs still queued are abandoned. NULL is fine.
 */
void workpool_stop(struct workpool *p);

/* Stop if not stopped, then wipe the slots (an abandoned job may hold a
 * secret) and free. NULL is fine. Returns NULL. */
struct workpool *workpool_free(struct workpool *p);

/* Slots taken now (queued, running, or waiting for their loop). */
unsigned workpool_busy(struct workpool *p);

#endif
