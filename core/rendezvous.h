/* SPDX-License-Identifier: MIT */
/*
 * rendezvous: a thread that may block posts jobs to engine loops and waits,
 * bounded, for them to end. Reference counted: the asker and each job not
 * ended hold one reference, so a job that ends after the asker gave up still
 * touches live memory, and whoever drops the last reference frees the
 * object the rendezvous is embedded in (rendezvous_put() says when).
 */
#ifndef ETRND_CORE_RENDEZVOUS_H
#define ETRND_CORE_RENDEZVOUS_H

#include <pthread.h>

struct rendezvous {
	pthread_mutex_t mu;  /* guards the counts and what the jobs hand over */
	pthread_cond_t cv;
	unsigned refs;       /* the asker + each job not ended */
	unsigned left;       /* jobs not ended */
};

/* The asker's reference only. */
void rendezvous_init(struct rendezvous *r);

/* Before posting a job: it holds a reference. rendezvous_unhold() undoes it
 * when the post failed (the job will never end). */
void rendezvous_hold(struct rendezvous *r);
void rendezvous_unhold(struct rendezvous *r);

/* Wait until every held job has ended or ms have passed; returns with r->mu
 * held (read what the jobs handed over, then unlock), 1 when timed out. */
int rendezvous_wait(struct rendezvous *r, unsigned ms);

/* A job ends: call with r->mu held (after handing over its result). */
void rendezvous_end_locked(struct rendezvous *r);

/* Drop a reference (the asker's, or a job's after it ended). 1 when it was
 * the last: the caller then destroys r (rendezvous_destroy) and frees. */
int rendezvous_put(struct rendezvous *r);
void rendezvous_destroy(struct rendezvous *r);

#endif
