/* SPDX-License-Identifier: MIT */
/*
 * workpool: see workpool.h. A job lives in one slot from workpool_job_get()
 * until its done() has run on the asking loop: queued (FIFO under the
 * pool's mutex), then owned by one worker, then by the loop through
 * loop_post().
 */
#include "core/workpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/loop.h"

/* A loop_post() that found no memory is tried again after this. */
#define WORKPOOL_POST_RETRY_NS 10000000L

struct workpool_worker {
	struct workpool *pool;
	pthread_t thread;
};

struct workpool {
	struct workpool_conf conf;
	pthread_mutex_t mu;               /* guards the lists and stopping */
	pthread_cond_t cv;                /* a job queued, or stopping */
	char *slots;                      /* conf.jobs x conf.job_size */
	struct workpool_job *free, *head, *tail;
	int stopping;
	struct workpool_worker *w;
	unsigned started;
	atomic_uint busy;
};

void workpool_job_put(struct workpool *p, struct workpool_job *j)
{
	pthread_mutex_lock(&p->mu);
	j->next = p->free;
	p->free = j;
	pthread_mutex_unlock(&p->mu);
	atomic_fetch_sub(&p->busy, 1);
}

struct workpool_job *workpool_job_get(struct workpool *p)
{
	struct workpool_job *j;

	pthread_mutex_lock(&p->mu);
	j = p->stopping ? NULL : p->free;
	if (j)
		p->free = j->next;
	pthread_mutex_unlock(&p->mu);
	if (!j)
		return NULL;
	atomic_fetch_add(&p->busy, 1);
	memset(j, 0, p->conf.job_size);
	j->pool = p;
	return j;
}

void workpool_submit(struct workpool *p, struct workpool_job *j)
{
	j->next = NULL;
	pthread_mutex_lock(&p->mu);
	if (p->tail)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/* On the asking loop's thread: done(), then the slot is free. */
static void workpool_deliver(void *arg)
{
	struct workpool_job *j = arg;

	j->done(j);
	workpool_job_put(j->pool, j);
}

/* done() runs exactly once: a post that finds no memory is tried again,
 * unless the pool is stopping or the loop has finished (nobody to tell). */
static void workpool_post(struct workpool *p, struct workpool_job *j)
{
	const struct timespec ts = { 0, WORKPOOL_POST_RETRY_NS };
	int rc;

	while ((rc = loop_post(j->l, workpool_deliver, j)) != 0) {
		int stopping;

		if (rc == -ESHUTDOWN)
			return;
		pthread_mutex_lock(&p->mu);
		stopping = p->stopping;
		pthread_mutex_unlock(&p->mu);
		if (stopping)
			return;
		nanosleep(&ts, NULL);
	}
}

static void *workpool_main(void *arg)
{
	struct workpool_worker *w = arg;
	struct workpool *p = w->pool;
	void *ctx = NULL;

	if (p->conf.thread_start) {
		ctx = p->conf.thread_start(p->conf.arg);
		if (!ctx) {
			log_warn("%s: a worker could not start (out of memory?); %u left",
				 p->conf.name, p->conf.threads - 1);
			return NULL;
		}
	}
	for (;;) {
		struct workpool_job *j;

		pthread_mutex_lock(&p->mu);
		while (!p->stopping && !p->head)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stopping) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		j = p->head;
		p->head = j->next;
		if (!p->head)
			p->tail = NULL;
		pthread_mutex_unlock(&p->mu);
		p->conf.work(p->conf.arg, ctx, j);
		workpool_post(p, j);
	}
	if (p->conf.thread_end)
		p->conf.thread_end(p->conf.arg, ctx);
	return NULL;
}

struct workpool *workpool_start(const struct workpool_conf *conf, char *err, size_t errlen)
{
	struct workpool *p = calloc(1, sizeof(*p));
	int rc;

	if (!p)
		goto nomem;
	p->conf = *conf;
	if (p->conf.job_size < sizeof(struct workpool_job))
		p->conf.job_size = sizeof(struct workpool_job);
	/* Slots stay aligned for whatever the caller's job holds. */
	p->conf.job_size = (p->conf.job_size + _Alignof(max_align_t) - 1) &
			   ~(_Alignof(max_align_t) - 1);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->slots = calloc(p->conf.jobs, p->conf.job_size);
	p->w = calloc(p->conf.threads, sizeof(*p->w));
	if (!p->slots || !p->w)
		goto nomem;
	for (unsigned i = p->conf.jobs; i-- > 0;) {
		struct workpool_job *j = (struct workpool_job *)(p->slots + i * p->conf.job_size);
		j->next = p->free;
		p->free = j;
	}
	for (unsigned i = 0; i < p->conf.threads; i++) {
		p->w[i].pool = p;
		/* pthread_create returns the error; it does not set errno. */
		rc = pthread_create(&p->w[i].thread, NULL, workpool_main, &p->w[i]);
		if (rc) {
			snprintf(err, errlen, "%s: worker thread: pthread_create: %s",
				 conf->name, strerror(rc));
			return workpool_free(p);
		}
		p->started++;
	}
	return p;
nomem:
	snprintf(err, errlen, "%s: out of memory", conf->name);
	return workpool_free(p);
}

void workpool_stop(struct workpool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; i < p->started; i++)
		pthread_join(p->w[i].thread, NULL);
	p->started = 0;
}

struct workpool *workpool_free(struct workpool *p)
{
	if (!p)
		return NULL;
	workpool_stop(p);
	free(p->w);
	/* Jobs abandoned in the queue may hold secrets (AUTH passwords). */
	if (p->slots)
		explicit_bzero(p->slots, (size_t)p->conf.jobs * p->conf.job_size);
	free(p->slots);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
	return NULL;
}

unsigned workpool_busy(struct workpool *p)
{
	return atomic_load(&p->busy);
}
