/* SPDX-License-Identifier: MIT */
/*
 * The spool's group commit when its batch cannot be submitted
 * (store/spool.c: batch_submit() fails, batch_unfill() puts the records
 * back): every file-operation slot of the engine's loop is taken by reads
 * that wait on an empty pipe, so the shard's write finds none. No record may
 * be lost, none reported stored before it is, and the order must hold once
 * the slots come free. A real engine thread (tests/unit/engine_fixture.h).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_fixture.h"
#include "core/loop.h"

#define T_TIMEOUT_S 60
#define T_FOPS_MAX 4096         /* far more than the loop has */
#define T_TURNS 20              /* loop turns the blocked commit must survive */
#define T_MSGS 2

struct t_blocker {
	int pipe[2];
	unsigned held;              /* file-op slots taken (reads in flight) */
	unsigned done;              /* of them finished */
	int last_rc;                /* the refused one's return: -EBUSY */
	char byte[T_FOPS_MAX];
};

static void t_read_done(void *arg, int res)
{
	struct t_blocker *b = arg;

	(void)res;
	b->done++;
}

struct t_block_arg {
	struct engine_fixture *f;
	struct t_blocker *b;
};

/* Engine thread: reads of one byte from the empty pipe until the loop
 * refuses another. */
static void t_block_fn(void *arg)
{
	struct t_block_arg *a = arg;
	struct t_blocker *b = a->b;

	while (b->held < T_FOPS_MAX) {
		b->last_rc = loop_file_read(a->f->loop, b->pipe[0], &b->byte[b->held], 1, 0,
					    t_read_done, b);
		if (b->last_rc)
			break;
		b->held++;
	}
}

struct t_append {
	struct engine_fixture *f;
	const char *body;
	const char *rcpt[1];
	size_t rcpt_len[1];
	uint64_t msgid;
	int rc;                     /* spool_append_msg's */
	int finished, err;          /* its done callback */
};

static void t_append_done(void *arg, int err)
{
	struct t_append *a = arg;

	a->err = err;
	a->finished = 1;
}

static void t_append_fn(void *arg)
{
	struct t_append *a = arg;
	struct spool_msg m = { 0 };

	a->rcpt[0] = "u@cust.test";
	a->rcpt_len[0] = strlen(a->rcpt[0]);
	m.msgid = a->msgid = spool_shard_new_msgid(a->f->sh);
	m.sender = "s@example.org";
	m.sender_len = strlen(m.sender);
	m.nrcpt = 1;
	m.rcpt = a->rcpt;
	m.rcpt_len = a->rcpt_len;
	m.body = a->body;
	m.body_len = strlen(a->body);
	a->rc = spool_append_msg(a->f->sh, &m, t_append_done, a);
}

struct t_turns {
	unsigned seen;
	unsigned want;
};

/* True on the want-th evaluation: each is a post the loop runs in a turn
 * of its own, after whose end the commit hook has run. */
static int t_turns_passed(struct engine_fixture *f, void *arg)
{
	struct t_turns *t = arg;

	(void)f;
	return ++t->seen >= t->want;
}

static int t_all_finished(struct engine_fixture *f, void *arg)
{
	struct t_append *a = arg;

	(void)f;
	for (unsigned i = 0; i < T_MSGS; i++)
		if (!a[i].finished)
			return 0;
	return 1;
}

static int t_one_read_done(struct engine_fixture *f, void *arg)
{
	(void)f;
	return ((struct t_blocker *)arg)->done >= 1;
}

static int t_reads_done(struct engine_fixture *f, void *arg)
{
	struct t_blocker *b = arg;

	(void)f;
	return b->done == b->held;
}

Test(spool_busy, batch_not_submitted_records_kept_in_order, .timeout = T_TIMEOUT_S)
{
	static const char *const bodies[T_MSGS] = {
		"Subject: first\r\n\r\nwritten after the slots came free\r\n",
		"Subject: second\r\n\r\nand in its place\r\n",
	};
	struct engine_fixture f;
	struct t_blocker *b = calloc(1, sizeof(*b));
	struct t_block_arg ba = { &f, b };
	struct t_append a[T_MSGS];
	struct t_turns turns = { .want = T_TURNS };
	uint64_t ids[T_MSGS + 1];

	cr_assert_not_null(b);
	cr_assert_eq(pipe2(b->pipe, O_CLOEXEC), 0);
	cr_assert_eq(engine_fixture_init(&f, engine_fixture_table_of("cust.test")), 0);
	cr_assert_eq(engine_fixture_start(&f), 0, "%s", f.err);

	cr_assert_eq(engine_fixture_call(&f, t_block_fn, &ba, ENGINE_FIXTURE_WAIT_MS), 0);
	cr_assert_eq(b->last_rc, -EBUSY, "the loop took %u reads and then said %d", b->held,
		     b->last_rc);
	cr_assert_gt(b->held, 0);

	memset(a, 0, sizeof(a));
	for (unsigned i = 0; i < T_MSGS; i++) {
		a[i].f = &f;
		a[i].body = bodies[i];
		cr_assert_eq(engine_fixture_call(&f, t_append_fn, &a[i], ENGINE_FIXTURE_WAIT_MS), 0);
		cr_assert_eq(a[i].rc, 0);
	}
	/* Many turns, each ending in a commit that finds no slot: nothing is
	 * reported stored, nothing failed. */
	cr_assert_eq(engine_fixture_wait(&f, t_turns_passed, &turns, ENGINE_FIXTURE_WAIT_MS), 0);
	for (unsigned i = 0; i < T_MSGS; i++)
		cr_expect_eq(a[i].finished, 0, "message %u reported done (err %d) with no slot "
			     "to write it", i, a[i].err);

	/* One slot free: room for the write but not its sync. Before the
	 * round took its slots all at once, the write went out alone and both
	 * messages failed with -EBUSY. */
	cr_assert_eq(write(b->pipe[1], b->byte, 1), 1);
	cr_assert_eq(engine_fixture_wait(&f, t_one_read_done, b, ENGINE_FIXTURE_WAIT_MS), 0);
	turns.seen = 0;
	cr_assert_eq(engine_fixture_wait(&f, t_turns_passed, &turns, ENGINE_FIXTURE_WAIT_MS), 0);
	for (unsigned i = 0; i < T_MSGS; i++)
		cr_expect_eq(a[i].finished, 0, "message %u reported done (err %d) with one slot "
			     "for a write and its sync", i, a[i].err);

	/* Free the rest: one byte a read. */
	cr_assert_eq(write(b->pipe[1], b->byte, b->held - 1), (ssize_t)b->held - 1);
	cr_assert_eq(engine_fixture_wait(&f, t_reads_done, b, ENGINE_FIXTURE_WAIT_MS), 0);
	cr_assert_eq(engine_fixture_wait(&f, t_all_finished, a, ENGINE_FIXTURE_WAIT_MS), 0);
	for (unsigned i = 0; i < T_MSGS; i++)
		cr_expect_eq(a[i].err, 0, "message %u: %s", i, strerror(-a[i].err));

	/* What recovery reads back: both, in the order they came, whole. */
	engine_fixture_stop(&f);
	cr_assert_not_null(engine_fixture_reopen(&f), "%s", f.err);
	cr_assert_eq(engine_fixture_queue_ids(&f, "cust.test", ids, T_MSGS + 1), T_MSGS);
	for (unsigned i = 0; i < T_MSGS; i++) {
		struct engine_fixture_msg m;

		cr_expect_eq(ids[i], a[i].msgid);
		cr_assert_eq(engine_fixture_read(&f, a[i].msgid, &m), 0);
		cr_expect_str_eq(m.body, bodies[i]);
		engine_fixture_msg_free(&m);
	}
	engine_fixture_fini(&f);
	close(b->pipe[0]);
	close(b->pipe[1]);
	free(b);
}
