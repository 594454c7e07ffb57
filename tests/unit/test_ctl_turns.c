/* SPDX-License-Identifier: MIT */
/*
 * Tests for admin/ctl_turns.c (the control socket's "turns" barrier) on a
 * real engine thread (tests/unit/engine_fixture.h): when it answers, the
 * engine thread's turn hooks (where expiry, the scheduler and the
 * activators run) have run at least once since it was asked, whether the
 * loop was asleep or busy; it answers "turns: K of N engine threads".
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <string.h>

#include "admin/ctl_turns.h"
#include "core/loop.h"
#include "engine_fixture.h"

#define T_TIMEOUT_S 20
#define T_REPLY_MAX 128
#define T_WANT_ONE "turns: 1 of 1 engine threads\n"
#define T_WANT_NONE "turns: 0 of 1 engine threads\n"

/* What the test's turn hook saw: runs since the test armed it. */
static atomic_uint t_armed;
static atomic_uint t_runs;

static void t_hook(void *arg)
{
	(void)arg;
	if (atomic_load(&t_armed))
		atomic_fetch_add(&t_runs, 1);
}

/* On the engine thread before loop_run(): the hook, last of the phase. */
static int t_setup(struct engine_fixture *f, void *arg)
{
	(void)arg;
	return loop_add_turn_hook(f->loop, LOOP_TURN_QUEUE, "test turns", t_hook, NULL);
}

/* Keeps the loop busy: a post that posts itself until told to stop. */
static atomic_int t_spin_stop;
static struct loop *t_spin_loop;

static void t_spin(void *arg)
{
	(void)arg;
	if (!atomic_load(&t_spin_stop))
		(void)loop_post(t_spin_loop, t_spin, NULL);
}

struct t_case {
	const char *name;
	int busy;            /* the loop turning all the time, or asleep */
	unsigned asks;       /* barriers in a row, each checked */
};

static const struct t_case t_cases[] = {
	{ "an idle loop, once", 0, 1 },
	{ "an idle loop, several in a row", 0, 5 },
	{ "a busy loop, several in a row", 1, 5 },
};

static void t_ask(struct engine_fixture *f, const char *what)
{
	struct drain_status_shard sh;
	struct buf out;

	memset(&sh, 0, sizeof(sh));
	sh.loop = f->loop;
	buf_init(&out, T_REPLY_MAX);
	atomic_store(&t_runs, 0);
	atomic_store(&t_armed, 1);
	ctl_turns_wait(&sh, 1, &out);
	atomic_store(&t_armed, 0);
	cr_expect(out.len == strlen(T_WANT_ONE) && memcmp(out.data, T_WANT_ONE, out.len) == 0,
		  "%s: answered %.*s", what, (int)out.len, out.data);
	cr_expect_geq(atomic_load(&t_runs), 1, "%s: answered before a turn hook ran", what);
	buf_free(&out);
}

static void t_run(const struct t_case *c)
{
	struct engine_fixture f;

	cr_assert_eq(engine_fixture_init(&f, NULL), 0, "%s", c->name);
	f.setup = t_setup;
	cr_assert_eq(engine_fixture_start(&f), 0, "%s: %s", c->name, f.err);
	atomic_store(&t_spin_stop, 0);
	t_spin_loop = f.loop;
	if (c->busy)
		cr_assert_eq(loop_post(f.loop, t_spin, NULL), 0, "%s", c->name);
	for (unsigned i = 0; i < c->asks; i++)
		t_ask(&f, c->name);
	atomic_store(&t_spin_stop, 1);
	engine_fixture_stop(&f);
	engine_fixture_fini(&f);
}

Test(ctl_turns, answers_after_a_turn, .timeout = T_TIMEOUT_S)
{
	for (size_t i = 0; i < sizeof(t_cases) / sizeof(t_cases[0]); i++)
		t_run(&t_cases[i]);
}

Test(ctl_turns, no_engine_thread_answers_none, .timeout = T_TIMEOUT_S)
{
	struct drain_status_shard sh;
	struct buf out;

	memset(&sh, 0, sizeof(sh)); /* a thread still starting: no loop yet */
	buf_init(&out, T_REPLY_MAX);
	ctl_turns_wait(&sh, 1, &out);
	cr_expect(out.len == strlen(T_WANT_NONE) && memcmp(out.data, T_WANT_NONE, out.len) == 0,
		  "answered %.*s", (int)out.len, out.data);
	buf_free(&out);
}
