/* SPDX-License-Identifier: MIT */
/*
 * sdnotify: systemd's notify protocol through libsystemd (admin/sdnotify.h).
 * The watchdog thread feeds systemd only on the engines' word: each period
 * it checks that every loop ran the post it sent the period before, then
 * posts the next one; a loop that has not answered withholds WATCHDOG=1.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "admin/engine.h"
#include "admin/sdnotify.h"
#include "core/log.h"
#include "core/loop.h"

#define SDNOTIFY_NS_PER_US 1000ull
#define SDNOTIFY_NS_PER_S 1000000000ull
/* The thread's name in /proc/PID/task/TID/comm (at most 15 bytes). */
#define SDNOTIFY_THREAD_NAME "etrnd-watchdog"

/* One engine loop's liveness: the watchdog thread posts only when the
 * last post was answered, so at most one is in flight per loop. */
struct sdnotify_ping {
	_Atomic uint64_t answered;      /* written by the loop's thread */
	uint64_t asked;                 /* the watchdog thread's */
};

struct sdnotify {
	struct engine_set *eng;
	struct sdnotify_ping *ping;     /* engine_count() of them */
	unsigned n;
	uint64_t period_ns;             /* half of $WATCHDOG_USEC; 0 = no watchdog */
	int thread_started;
	int stopping;                   /* under lock */
	int fed;                        /* the last period fed systemd */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

/* On the engine loop's thread: proof that it turns. */
static void sdnotify_pong(void *arg)
{
	struct sdnotify_ping *p = arg;

	atomic_fetch_add_explicit(&p->answered, 1, memory_order_release);
}

/* The index of the first loop that has not answered its post, or n. */
static unsigned sdnotify_first_silent(const struct sdnotify *n)
{
	for (unsigned i = 0; i < n->n; i++)
		if (atomic_load_explicit(&n->ping[i].answered, memory_order_acquire) !=
		    n->ping[i].asked)
			return i;
	return n->n;
}

/* Post the next ping to every loop that answered the last one. A refused
 * post (no memory) counts as silence until a later one is accepted. */
static void sdnotify_post_all(struct sdnotify *n)
{
	for (unsigned i = 0; i < n->n; i++) {
		struct sdnotify_ping *p = &n->ping[i];

		if (atomic_load_explicit(&p->answered, memory_order_acquire) != p->asked)
			continue;
		p->asked++;
		if (loop_post(engine_loop(n->eng, i), sdnotify_pong, p))
			p->asked--;
	}
}

/* One period's verdict: WATCHDOG=1 when every loop answered; a change
 * between fed and withheld is logged and shown in STATUS=. */
static void sdnotify_verdict(struct sdnotify *n)
{
	unsigned silent = sdnotify_first_silent(n);

	if (silent == n->n) {
		(void)sd_notify(0, "WATCHDOG=1");
		if (!n->fed) {
			log_info("watchdog: every engine thread answers; feeding systemd's watchdog");
			(void)sd_notify(0, "STATUS=running");
		}
		n->fed = 1;
		return;
	}
	if (n->fed) {
		log_warn("watchdog: engine thread %u has not answered for %llu ms; systemd's "
			 "watchdog is not fed", silent,
			 (unsigned long long)(n->period_ns / (SDNOTIFY_NS_PER_S / 1000)));
		(void)sd_notifyf(0, "STATUS=engine thread %u not answering", silent);
	}
	n->fed = 0;
}

static void sdnotify_deadline(struct timespec *ts, uint64_t ns)
{
	uint64_t t;

	clock_gettime(CLOCK_MONOTONIC, ts);
	t = (uint64_t)ts->tv_nsec + ns % SDNOTIFY_NS_PER_S;
	ts->tv_sec += (time_t)(ns / SDNOTIFY_NS_PER_S + t / SDNOTIFY_NS_PER_S);
	ts->tv_nsec = (long)(t % SDNOTIFY_NS_PER_S);
}

static void *sdnotify_main(void *arg)
{
	struct sdnotify *n = arg;
	struct timespec ts;

	(void)pthread_setname_np(pthread_self(), SDNOTIFY_THREAD_NAME);
	pthread_mutex_lock(&n->lock);
	while (!n->stopping) {
		sdnotify_post_all(n);
		sdnotify_deadline(&ts, n->period_ns);
		while (!n->stopping && pthread_cond_timedwait(&n->cond, &n->lock, &ts) != ETIMEDOUT)
			;
		if (!n->stopping)
			sdnotify_verdict(n);
	}
	pthread_mutex_unlock(&n->lock);
	return NULL;
}

static int sdnotify_thread_start(struct sdnotify *n, char *err, size_t errlen)
{
	int rc;

	n->ping = calloc(n->n, sizeof(*n->ping));
	if (!n->ping) {
		(void)snprintf(err, errlen, "watchdog: out of memory");
		return -1;
	}
	n->fed = 1; /* the first silence is logged */
	/* pthread_create returns the error; it does not set errno. */
	rc = pthread_create(&n->thread, NULL, sdnotify_main, n);
	if (rc) {
		(void)snprintf(err, errlen, "watchdog thread: pthread_create: %s", strerror(rc));
		return -1;
	}
	n->thread_started = 1;
	return 0;
}

struct sdnotify *sdnotify_start(struct engine_set *eng, char *err, size_t errlen)
{
	struct sdnotify *n = calloc(1, sizeof(*n));
	pthread_condattr_t ca;
	uint64_t usec = 0;
	int rc;

	if (!n) {
		(void)snprintf(err, errlen, "sd_notify: out of memory");
		return NULL;
	}
	n->eng = eng;
	n->n = engine_count(eng);
	pthread_mutex_init(&n->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* sdnotify_deadline()'s clock */
	pthread_cond_init(&n->cond, &ca);
	pthread_condattr_destroy(&ca);
	/* > 0: systemd wants pings (WatchdogSec=), every usec at the latest. */
	rc = sd_watchdog_enabled(0, &usec);
	if (rc < 0)
		log_warn("$WATCHDOG_USEC: %s; no watchdog pings", strerror(-rc));
	if (rc > 0 && usec) {
		n->period_ns = usec * SDNOTIFY_NS_PER_US / 2;
		if (sdnotify_thread_start(n, err, errlen))
			return sdnotify_free(n);
	}
	(void)sd_notifyf(0, "READY=1\nSTATUS=running: %u engine thread(s)%s", n->n,
			 n->period_ns ? ", watchdog on" : "");
	return n;
}

/* End the watchdog thread, if it runs: no ping is posted afterwards. */
static void sdnotify_join(struct sdnotify *n)
{
	if (!n->thread_started)
		return;
	pthread_mutex_lock(&n->lock);
	n->stopping = 1;
	pthread_cond_signal(&n->cond);
	pthread_mutex_unlock(&n->lock);
	(void)pthread_join(n->thread, NULL);
	n->thread_started = 0;
}

void sdnotify_stopping(struct sdnotify *n)
{
	if (!n)
		return;
	(void)sd_notify(0, "STOPPING=1\nSTATUS=stopping: transactions in flight finish");
	sdnotify_join(n);
}

struct sdnotify *sdnotify_free(struct sdnotify *n)
{
	if (!n)
		return NULL;
	sdnotify_join(n);
	pthread_cond_destroy(&n->cond);
	pthread_mutex_destroy(&n->lock);
	free(n->ping);
	free(n);
	return NULL;
}
