/* SPDX-License-Identifier: MIT */
/*
 * rendezvous: see rendezvous.h. The deadline is on CLOCK_REALTIME, as
 * pthread_cond_timedwait() takes it by default.
 */
#include "core/rendezvous.h"

#include <time.h>

#include "core/now.h"

void rendezvous_init(struct rendezvous *r)
{
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->refs = 1;
	r->left = 0;
}

void rendezvous_hold(struct rendezvous *r)
{
	pthread_mutex_lock(&r->mu);
	r->refs++;
	r->left++;
	pthread_mutex_unlock(&r->mu);
}

void rendezvous_unhold(struct rendezvous *r)
{
	pthread_mutex_lock(&r->mu);
	r->refs--;
	r->left--;
	pthread_mutex_unlock(&r->mu);
}

int rendezvous_wait(struct rendezvous *r, unsigned ms)
{
	struct timespec dl = now_realtime_after(ms);
	int timed_out = 0;

	pthread_mutex_lock(&r->mu);
	while (r->left && !timed_out)
		timed_out = pthread_cond_timedwait(&r->cv, &r->mu, &dl) != 0;
	return timed_out;
}

void rendezvous_end_locked(struct rendezvous *r)
{
	r->left--;
	pthread_cond_broadcast(&r->cv);
}

int rendezvous_put(struct rendezvous *r)
{
	unsigned refs;

	pthread_mutex_lock(&r->mu);
	refs = --r->refs;
	pthread_mutex_unlock(&r->mu);
	return refs == 0;
}

void rendezvous_destroy(struct rendezvous *r)
{
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
}
