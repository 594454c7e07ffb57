/* SPDX-License-Identifier: MIT */
/*
 * Tests for store/spool_state.c: record sequences as recovery reads them
 * (first MSG copy, DONE only after the MSG and once per recipient, SCHED
 * marks a retry), each with the return of every step and the states and
 * recipient states at the end; then many messages (the table grows) and
 * clear.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "store/spool_state.h"

#define OPS_MAX 8
#define WANTS_MAX 3
#define RCPTS_MAX 4
#define MANY_MSGS 20000u

enum op_kind { OP_END, OP_MSG, OP_DONE, OP_SCHED };

struct op {
	enum op_kind kind;
	uint64_t id;
	uint32_t arg;                   /* MSG: nrcpt; DONE: rcpt */
	enum spool_done_status status;  /* DONE */
	int want_ret;
};

struct want {
	uint64_t id;                    /* 0: end */
	int want_ret;                   /* of spool_state_get */
	enum spool_state_kind kind;
	uint8_t rcpts[RCPTS_MAX];
	uint32_t nrcpt;
};

struct state_case {
	const char *name;
	struct op ops[OPS_MAX];
	struct want wants[WANTS_MAX];
};

#define D SPOOL_DONE_DELIVERED
#define B SPOOL_DONE_BOUNCED
#define X SPOOL_DONE_EXPIRED
#define P SPOOL_STATE_RCPT_PENDING

static const struct state_case cases[] = {
	{ "new_message_held",
	  { { OP_MSG, 1, 2, 0, 0 } },
	  { { 1, 0, SPOOL_STATE_HELD, { P, P }, 2 } } },
	{ "unknown_message",
	  { { OP_MSG, 1, 1, 0, 0 } },
	  { { 2, -ENOENT, 0, { 0 }, 0 } } },
	{ "all_delivered",
	  { { OP_MSG, 1, 2, 0, 0 }, { OP_DONE, 1, 1, D, 0 },
	    { OP_DONE, 1, 0, D, 0 } },
	  { { 1, 0, SPOOL_STATE_DELIVERED, { D, D }, 2 } } },
	{ "bounced", { { OP_MSG, 1, 1, 0, 0 }, { OP_DONE, 1, 0, B, 0 } },
	  { { 1, 0, SPOOL_STATE_BOUNCED, { B }, 1 } } },
	{ "expired", { { OP_MSG, 1, 1, 0, 0 }, { OP_DONE, 1, 0, X, 0 } },
	  { { 1, 0, SPOOL_STATE_EXPIRED, { X }, 1 } } },
	{ "mixed_finished",
	  { { OP_MSG, 1, 3, 0, 0 }, { OP_DONE, 1, 0, D, 0 },
	    { OP_DONE, 1, 1, B, 0 }, { OP_DONE, 1, 2, X, 0 } },
	  { { 1, 0, SPOOL_STATE_FINISHED, { D, B, X }, 3 } } },
	{ "partly_done_is_held",
	  { { OP_MSG, 1, 2, 0, 0 }, { OP_DONE, 1, 0, D, 0 } },
	  { { 1, 0, SPOOL_STATE_HELD, { D, P }, 2 } } },
	{ "sched_makes_deferred",
	  { { OP_MSG, 1, 2, 0, 0 }, { OP_SCHED, 1, 0, 0, 0 },
	    { OP_DONE, 1, 0, D, 0 } },
	  { { 1, 0, SPOOL_STATE_DEFERRED, { D, P }, 2 } } },
	{ "sched_of_finished_message_is_its_done_state",
	  { { OP_MSG, 1, 1, 0, 0 }, { OP_SCHED, 1, 0, 0, 0 },
	    { OP_DONE, 1, 0, D, 0 } },
	  { { 1, 0, SPOOL_STATE_DELIVERED, { D }, 1 } } },
	{ "done_before_msg_ignored",
	  { { OP_DONE, 1, 0, D, -ENOENT }, { OP_SCHED, 1, 0, 0, -ENOENT },
	    { OP_MSG, 1, 1, 0, 0 } },
	  { { 1, 0, SPOOL_STATE_HELD, { P }, 1 } } },
	{ "first_done_stands",
	  { { OP_MSG, 1, 1, 0, 0 }, { OP_DONE, 1, 0, B, 0 },
	    { OP_DONE, 1, 0, D, -EALREADY } },
	  { { 1, 0, SPOOL_STATE_BOUNCED, { B }, 1 } } },
	{ "copy_ignored_its_dones_apply",
	  { { OP_MSG, 1, 2, 0, 0 }, { OP_DONE, 1, 0, D, 0 },
	    { OP_MSG, 1, 2, 0, -EEXIST }, { OP_DONE, 1, 0, D, -EALREADY },
	    { OP_DONE, 1, 1, X, 0 } },
	  { { 1, 0, SPOOL_STATE_FINISHED, { D, X }, 2 } } },
	{ "done_for_missing_recipient",
	  { { OP_MSG, 1, 1, 0, 0 }, { OP_DONE, 1, 1, D, -EINVAL } },
	  { { 1, 0, SPOOL_STATE_HELD, { P }, 1 } } },
	{ "no_recipients_refused",
	  { { OP_MSG, 1, 0, 0, -EINVAL } },
	  { { 1, -ENOENT, 0, { 0 }, 0 } } },
	{ "messages_apart",
	  { { OP_MSG, 1, 1, 0, 0 }, { OP_MSG, 2, 1, 0, 0 },
	    { OP_DONE, 2, 0, X, 0 }, { OP_SCHED, 1, 0, 0, 0 } },
	  { { 1, 0, SPOOL_STATE_DEFERRED, { P }, 1 },
	    { 2, 0, SPOOL_STATE_EXPIRED, { X }, 1 } } },
};

static int op_run(struct spool_state *s, const struct op *o)
{
	switch (o->kind) {
	case OP_MSG: return spool_state_msg(s, o->id, o->arg);
	case OP_DONE: return spool_state_done(s, o->id, o->arg, o->status);
	case OP_SCHED: return spool_state_sched(s, o->id);
	case OP_END: break;
	}
	return 0;
}

static void case_check(const struct state_case *c, struct spool_state *s)
{
	for (size_t i = 0; i < OPS_MAX && c->ops[i].kind != OP_END; i++)
		cr_expect_eq(op_run(s, &c->ops[i]), c->ops[i].want_ret,
				"%s: step %zu", c->name, i);
	for (size_t i = 0; i < WANTS_MAX && c->wants[i].id != 0; i++) {
		const struct want *w = &c->wants[i];
		enum spool_state_kind kind;
		const uint8_t *rcpts = NULL;
		uint32_t n = 0;
		int r = spool_state_get(s, w->id, &kind, &rcpts, &n);

		cr_expect_eq(r, w->want_ret, "%s: get %zu", c->name, i);
		if (r < 0)
			continue;
		cr_expect_eq(kind, w->kind, "%s: %s, want %s", c->name,
				spool_state_name(kind), spool_state_name(w->kind));
		cr_expect_eq(n, w->nrcpt, "%s: nrcpt", c->name);
		cr_expect(n <= RCPTS_MAX && memcmp(rcpts, w->rcpts, n) == 0,
				"%s: recipient states", c->name);
		cr_expect_eq(spool_state_of(rcpts, n, kind ==
				SPOOL_STATE_DEFERRED), kind, "%s: of", c->name);
	}
}

Test(spool_state, table)
{
	struct spool_state *s = spool_state_new();

	cr_assert_not_null(s);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		/* Each case on a cleared table, so clear is tested too. */
		spool_state_clear(s);
		case_check(&cases[i], s);
	}
	spool_state_free(s);
}

Test(spool_state, many_messages_and_visit)
{
	struct spool_state *s = spool_state_new();
	enum spool_state_kind kind;

	cr_assert_not_null(s);
	for (uint64_t id = 1; id <= MANY_MSGS; id++)
		cr_assert_eq(spool_state_msg(s, id << 8, (uint32_t)(id % 3 + 1)), 0);
	for (uint64_t id = 1; id <= MANY_MSGS; id += 2)
		for (uint32_t r = 0; r < id % 3 + 1; r++)
			cr_assert_eq(spool_state_done(s, id << 8, r, D), 0);
	for (uint64_t id = 1; id <= MANY_MSGS; id++) {
		cr_assert_eq(spool_state_get(s, id << 8, &kind, NULL, NULL), 0);
		cr_assert_eq(kind, id % 2 ? SPOOL_STATE_DELIVERED :
				SPOOL_STATE_HELD, "message %llu",
				(unsigned long long)id);
		cr_assert_eq(spool_state_visit(s, id << 8), 1);
		cr_assert_eq(spool_state_visit(s, id << 8), 0);
	}
	cr_assert_eq(spool_state_visit(s, 1), -ENOENT);
	spool_state_clear(s);
	cr_assert_eq(spool_state_get(s, 1u << 8, &kind, NULL, NULL), -ENOENT);
	cr_assert_null(spool_state_free(s));
	cr_assert_null(spool_state_free(NULL));
}

Test(spool_state, names)
{
	cr_assert_str_eq(spool_state_name(SPOOL_STATE_HELD), "held");
	cr_assert_str_eq(spool_state_name(SPOOL_STATE_DEFERRED), "deferred");
	cr_assert_str_eq(spool_state_name(SPOOL_STATE_FINISHED), "finished");
	cr_assert_str_eq(spool_state_rcpt_name(P), "pending");
	cr_assert_str_eq(spool_state_rcpt_name(X), "expired");
	cr_assert(spool_state_live(SPOOL_STATE_DEFERRED));
	cr_assert(!spool_state_live(SPOOL_STATE_BOUNCED));
}

/* What no writer of ours makes still gets a name and a state, never an
 * out-of-table read: a message without recipients and a recipient status
 * this reader does not know are "finished" (nothing left to do with them),
 * an unknown kind or status is named "unknown". */
Test(spool_state, unknown_values_named)
{
	static const uint8_t odd[] = { 9 };
	static const uint8_t odd2[] = { 9, 9 };

	cr_expect_eq(spool_state_of(NULL, 0, 0), SPOOL_STATE_FINISHED);
	cr_expect_eq(spool_state_of(odd, 1, 0), SPOOL_STATE_FINISHED);
	cr_expect_eq(spool_state_of(odd2, 2, 1), SPOOL_STATE_FINISHED);
	cr_expect_str_eq(spool_state_name((enum spool_state_kind)99), "unknown");
	cr_expect_str_eq(spool_state_rcpt_name(9), "unknown");
	cr_expect_str_eq(spool_state_name(SPOOL_STATE_DELIVERED), "delivered");
	cr_expect_str_eq(spool_state_name(SPOOL_STATE_BOUNCED), "bounced");
	cr_expect_str_eq(spool_state_name(SPOOL_STATE_EXPIRED), "expired");
	cr_expect_str_eq(spool_state_rcpt_name(SPOOL_DONE_DELIVERED), "delivered");
	cr_expect_str_eq(spool_state_rcpt_name(SPOOL_DONE_BOUNCED), "bounced");
}
