/* SPDX-License-Identifier: MIT */
/*
 * Tests for core/loop.c's per-turn registry (loop_add_turn_hook,
 * loop_add_stop_hook, loop_add_busy_check) on a real io_uring loop with no
 * listeners: turn hooks run by phase whatever the registration order, in
 * registration order within a phase; a full registry says -ENOSPC; stop hooks
 * run once, before the busy checks are asked; loop_run() waits for every
 * busy check.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "core/config.h"
#include "core/loop.h"

#define LOG_MAX 64
#define TURNS 3

struct rec {
	struct loop *l;
	char log[LOG_MAX];   /* one letter per hook call, in call order */
	unsigned n;
	unsigned turns;      /* turns seen by the last hook */
	unsigned stops;
	int stopped;         /* a stop hook ran */
	unsigned busy_left;  /* busy check says 1 this many more times */
	int busy_before_stop;
};

struct hook {
	struct rec *r;
	char letter;
};

static void *no_open(void *a, struct conn *c, const char *p) { (void)a; (void)c; (void)p; return NULL; }
static size_t no_data(void *a, struct conn *c, void *s, const char *p, size_t n) { (void)a; (void)c; (void)s; (void)p; return n; }
static void no_cb(void *a, struct conn *c, void *s) { (void)a; (void)c; (void)s; }
static const struct conn_ops no_ops = { no_open, no_data, no_cb, no_cb, no_cb, NULL, NULL };

static void noop(void *arg)
{
	(void)arg;
}

/* Make the next turn come at once instead of at the loop's timer tick. */
static void kick(struct loop *l)
{
	cr_assert_eq(loop_post(l, noop, NULL), 0);
}

static void note(struct hook *h)
{
	if (h->r->n < LOG_MAX - 1)
		h->r->log[h->r->n++] = h->letter;
}

static void turn_hook(void *arg)
{
	note(arg);
}

/* The last hook: after TURNS turns, stop the loop. */
static void last_hook(void *arg)
{
	struct hook *h = arg;

	note(h);
	if (++h->r->turns == TURNS)
		loop_stop(h->r->l);
	else
		kick(h->r->l);
}

static void stop_hook(void *arg)
{
	struct rec *r = arg;

	r->stops++;
	r->stopped = 1;
}

static int busy_check(void *arg)
{
	struct rec *r = arg;

	if (!r->stopped)
		r->busy_before_stop = 1;
	if (r->busy_left == 0)
		return 0;
	r->busy_left--;
	kick(r->l);
	return 1;
}

static struct loop *new_loop(struct config *cfg)
{
	struct loop_conf lc = { 0 };
	struct loop *l;
	char err[256];

	config_defaults(cfg);
	cfg->nlisten = 0;
	cfg->max_connections = 4;
	lc.cfg = cfg;
	lc.ops = &no_ops;
	l = loop_new(&lc, err, sizeof(err));
	cr_assert_not_null(l, "%s", err);
	return l;
}

/* Registered commit-first, interleaved: each turn still runs every queue
 * hook (in registration order) before every commit hook. */
Test(loop_hooks, phase_then_registration_order)
{
	static const struct {
		enum loop_turn_phase phase;
		char letter;
	} regs[] = {
		{ LOOP_TURN_COMMIT, 'C' },
		{ LOOP_TURN_QUEUE, 'a' },
		{ LOOP_TURN_COMMIT, 'D' },
		{ LOOP_TURN_QUEUE, 'b' },
		{ LOOP_TURN_QUEUE, 'c' },
	};
	static const char want[] = "abcCDZabcCDZabcCDZ";
	struct rec r = { 0 };
	struct hook h[sizeof(regs) / sizeof(regs[0])], last = { &r, 'Z' };
	struct config cfg;

	r.l = new_loop(&cfg);
	for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
		h[i] = (struct hook){ &r, regs[i].letter };
		cr_assert_eq(loop_add_turn_hook(r.l, regs[i].phase, "test", turn_hook, &h[i]), 0);
	}
	cr_assert_eq(loop_add_turn_hook(r.l, LOOP_TURN_COMMIT, "last", last_hook, &last), 0);
	cr_assert_eq(loop_run(r.l), 0);
	/* The turns before loop_stop() takes effect, then possibly one more. */
	cr_assert_geq(r.n, strlen(want), "log %s", r.log);
	cr_expect_eq(memcmp(r.log, want, strlen(want)), 0, "log %s, want %s...", r.log, want);
	for (unsigned k = strlen(want); k < r.n; k++)
		cr_expect_eq(r.log[k], want[k % 6], "log %s", r.log);
	loop_free(r.l);
	config_free(&cfg);
}

Test(loop_hooks, full_registry_says_enospc)
{
	struct rec r = { 0 };
	struct hook h = { &r, 'x' };
	struct config cfg;

	r.l = new_loop(&cfg);
	for (unsigned i = 0; i < LOOP_HOOKS_MAX; i++) {
		cr_assert_eq(loop_add_turn_hook(r.l, LOOP_TURN_QUEUE, "t", turn_hook, &h), 0);
		cr_assert_eq(loop_add_stop_hook(r.l, "s", stop_hook, &r), 0);
		cr_assert_eq(loop_add_busy_check(r.l, "b", busy_check, &r), 0);
	}
	cr_expect_eq(loop_add_turn_hook(r.l, LOOP_TURN_COMMIT, "t", turn_hook, &h), -ENOSPC);
	cr_expect_eq(loop_add_stop_hook(r.l, "s", stop_hook, &r), -ENOSPC);
	cr_expect_eq(loop_add_busy_check(r.l, "b", busy_check, &r), -ENOSPC);
	loop_free(r.l);
	config_free(&cfg);
}

/* Stop hooks run once, before any busy check is asked; the loop keeps
 * turning while a busy check says 1, and every check is asked. */
Test(loop_hooks, stop_hooks_then_busy_checks)
{
	struct rec r = { 0 }, r2 = { 0 };
	struct hook last = { &r, 'Z' };
	struct config cfg;

	r.l = new_loop(&cfg);
	r.busy_left = 5;
	r2.l = r.l;
	r2.busy_left = 9;
	r2.stopped = 1; /* no stop hook of its own */
	cr_assert_eq(loop_add_turn_hook(r.l, LOOP_TURN_COMMIT, "last", last_hook, &last), 0);
	cr_assert_eq(loop_add_stop_hook(r.l, "stop", stop_hook, &r), 0);
	cr_assert_eq(loop_add_busy_check(r.l, "busy", busy_check, &r), 0);
	cr_assert_eq(loop_add_busy_check(r.l, "busy2", busy_check, &r2), 0);
	cr_assert_eq(loop_run(r.l), 0);
	cr_expect_eq(r.stops, 1);
	cr_expect_eq(r.busy_before_stop, 0);
	cr_expect_eq(r.busy_left, 0);
	cr_expect_eq(r2.busy_left, 0, "the second check was not waited for");
	cr_expect_geq(r.turns, TURNS + 9, "turns %u", r.turns);
	/* The run is over: a post is refused, never accepted and dropped (its
	 * argument would leak: a resolver answer, an ATRN parcel). */
	cr_expect_eq(loop_post(r.l, noop, NULL), -ESHUTDOWN);
	loop_free(r.l);
	config_free(&cfg);
}
