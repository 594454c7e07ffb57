/* SPDX-License-Identifier: MIT */
/* Tests for core/clusterview.c: table cases (empty view, case and trailing
 * dot, holders order, a node's repeated rows, bad input), then random views
 * checked against a plain model (sums and holders by brute force), and the
 * live holder's swap under the epoch. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clusterview.h"
#include "core/epoch.h"

#define T_NODES_MAX 8
#define T_ROWS_MAX 16
#define T_DOMAINS 12       /* random views: names d0.test .. d11.test */
#define T_RANDOM_VIEWS 200

struct t_row {
	int node;
	const char *dom;
	uint64_t msgs, bytes;
};

struct t_case {
	const char *name;
	const char *nodes[T_NODES_MAX];     /* ids, in insertion order */
	struct t_row rows[T_ROWS_MAX];
	const char *ask;                    /* the domain asked */
	uint64_t want_remote;
	const char *want_holders[T_NODES_MAX];
	uint64_t want_msgs[T_NODES_MAX];
};

static const struct t_case cases[] = {
	{ "empty view", { NULL }, { { 0 } }, "a.test", 0, { NULL }, { 0 } },
	{ "nodes, no mail", { "n2", "n1" }, { { 0 } }, "a.test", 0, { NULL }, { 0 } },
	{ "sum over nodes, largest first",
	  { "n3", "n1", "n2" },
	  { { 0, "a.test", 5, 50 }, { 1, "a.test", 9, 90 }, { 2, "a.test", 1, 10 },
	    { 2, "b.test", 7, 70 } },
	  "a.test", 15, { "n1", "n3", "n2" }, { 9, 5, 1 } },
	{ "case and trailing dot", { "n1", "n2" },
	  { { 0, "A.Test.", 2, 20 }, { 1, "a.TEST", 3, 30 } },
	  "a.test.", 5, { "n2", "n1" }, { 3, 2 } },
	{ "equal shares in id order", { "zz", "aa", "mm" },
	  { { 0, "x.test", 4, 1 }, { 1, "x.test", 4, 1 }, { 2, "x.test", 4, 1 } },
	  "X.test", 12, { "aa", "mm", "zz" }, { 4, 4, 4 } },
	{ "a node's repeated row counts once, the larger", { "n1", "n2" },
	  { { 0, "a.test", 1, 1 }, { 0, "A.test", 3, 1 }, { 0, "a.test.", 2, 1 },
	    { 1, "a.test", 2, 1 } },
	  "a.test", 5, { "n1", "n2" }, { 3, 2 } },
	{ "zero is no holder", { "n1", "n2" },
	  { { 0, "a.test", 0, 0 }, { 1, "a.test", 6, 60 } },
	  "a.test", 6, { "n2" }, { 6 } },
	{ "other domain only", { "n1" }, { { 0, "b.test", 6, 60 } },
	  "a.test", 0, { NULL }, { 0 } },
	{ "a suffix is not the domain", { "n1" }, { { 0, "sub.a.test", 6, 60 } },
	  "a.test", 0, { NULL }, { 0 } },
};

static struct clusterview *build_case(const struct t_case *c)
{
	struct clusterview_builder *b = clusterview_builder_new();

	cr_assert_not_null(b);
	for (int i = 0; i < T_NODES_MAX && c->nodes[i]; i++) {
		struct clusterview_node n = { .state = CLUSTERVIEW_UP };

		snprintf(n.id, sizeof(n.id), "%s", c->nodes[i]);
		cr_assert_eq(clusterview_builder_node(b, &n), i, "%s: node index", c->name);
	}
	for (int i = 0; i < T_ROWS_MAX && c->rows[i].dom; i++)
		cr_assert_eq(clusterview_builder_count(b, c->rows[i].node, c->rows[i].dom,
						       strlen(c->rows[i].dom), c->rows[i].msgs,
						       c->rows[i].bytes), 0, "%s: row %d", c->name, i);
	return clusterview_build(b);
}

Test(clusterview, cases)
{
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		const struct t_case *c = &cases[k];
		struct clusterview *v = build_case(c);
		const struct clusterview_node *out[T_NODES_MAX];
		uint64_t msgs[T_NODES_MAX];
		size_t nh, nwant = 0;

		cr_assert_not_null(v, "%s", c->name);
		cr_expect_eq(clusterview_remote_msgs(v, c->ask, strlen(c->ask)), c->want_remote,
			     "%s: remote count", c->name);
		while (nwant < T_NODES_MAX && c->want_holders[nwant])
			nwant++;
		nh = clusterview_holders(v, c->ask, strlen(c->ask), out, msgs, T_NODES_MAX);
		cr_assert_eq(nh, nwant, "%s: %zu holders, want %zu", c->name, nh, nwant);
		for (size_t i = 0; i < nh; i++) {
			cr_expect_str_eq(out[i]->id, c->want_holders[i], "%s: holder %zu", c->name, i);
			cr_expect_eq(msgs[i], c->want_msgs[i], "%s: holder %zu's share", c->name, i);
		}
		clusterview_free(v);
	}
}

/* No view (no cluster) answers like an empty one. */
Test(clusterview, null_view)
{
	const struct clusterview_node *out[1];

	cr_expect_eq(clusterview_remote_msgs(NULL, "a.test", 6), 0);
	cr_expect_eq(clusterview_holders(NULL, "a.test", 6, out, NULL, 1), 0);
	cr_expect_eq(clusterview_nodes(NULL, out, 1), 0);
	cr_expect_null(clusterview_node(NULL, "n1"));
	cr_expect_null(clusterview_live_get(NULL));
}

Test(clusterview, nodes_in_id_order_and_by_name)
{
	static const char *ids[] = { "edge-3", "edge-1", "edge-2" };
	struct clusterview_builder *b = clusterview_builder_new();
	const struct clusterview_node *out[4];
	struct clusterview *v;

	for (int i = 0; i < 3; i++) {
		struct clusterview_node n = { .state = i == 2 ? CLUSTERVIEW_DRAINING : CLUSTERVIEW_UP,
					      .msgs = (uint64_t)i };

		snprintf(n.id, sizeof(n.id), "%s", ids[i]);
		snprintf(n.addr, sizeof(n.addr), "127.0.0.1:%d", 2500 + i);
		clusterview_builder_node(b, &n);
	}
	cr_expect_eq(clusterview_builder_count(b, 3, "a.test", 6, 1, 1), -EINVAL, "no node 3");
	cr_expect_eq(clusterview_builder_count(b, -1, "a.test", 6, 1, 1), -EINVAL);
	cr_expect_eq(clusterview_builder_count(b, 0, ".", 1, 1, 1), -EINVAL, "empty name");
	v = clusterview_build(b);
	cr_assert_eq(clusterview_nodes(v, out, 4), 3);
	cr_expect_str_eq(out[0]->id, "edge-1");
	cr_expect_str_eq(out[1]->id, "edge-2");
	cr_expect_str_eq(out[2]->id, "edge-3");
	cr_expect_eq(clusterview_nodes(v, out, 1), 3, "the count, whatever max");
	cr_expect_str_eq(clusterview_node(v, "edge-2")->addr, "127.0.0.1:2502");
	cr_expect_eq(clusterview_node(v, "edge-2")->state, CLUSTERVIEW_DRAINING);
	cr_expect_null(clusterview_node(v, "edge-4"));
	cr_expect_null(clusterview_node(v, "edge"));
	clusterview_free(v);
}

/* The model: msgs[node][domain]; a random builder order, random case. */
Test(clusterview, random_against_model)
{
	srand(16);
	for (int round = 0; round < T_RANDOM_VIEWS; round++) {
		uint64_t model[T_NODES_MAX][T_DOMAINS] = { { 0 } };
		int nnodes = 1 + rand() % T_NODES_MAX;
		struct clusterview_builder *b = clusterview_builder_new();
		struct clusterview *v;
		char id[T_NODES_MAX][8], dom[32];

		for (int i = 0; i < nnodes; i++) {
			struct clusterview_node n = { .state = CLUSTERVIEW_UP };

			/* ids inserted in a rotated, reversed order */
			snprintf(id[i], sizeof(id[i]), "n%d", (nnodes - 1 - i + round) % nnodes);
			snprintf(n.id, sizeof(n.id), "%s", id[i]);
			cr_assert_eq(clusterview_builder_node(b, &n), i);
		}
		for (int r = rand() % 40; r > 0; r--) {
			int node = rand() % nnodes, d = rand() % T_DOMAINS;
			uint64_t m = (uint64_t)(rand() % 50);

			snprintf(dom, sizeof(dom), rand() % 2 ? "D%d.Test" : "d%d.test.", d);
			cr_assert_eq(clusterview_builder_count(b, node, dom, strlen(dom), m, m * 10), 0);
			if (m > model[node][d])
				model[node][d] = m; /* a repeat is the same count: the larger */
		}
		v = clusterview_build(b);
		cr_assert_not_null(v);
		for (int d = 0; d < T_DOMAINS; d++) {
			const struct clusterview_node *out[T_NODES_MAX];
			uint64_t msgs[T_NODES_MAX], sum = 0, prev = UINT64_MAX;
			size_t holders = 0, nh;

			for (int i = 0; i < nnodes; i++) {
				sum += model[i][d];
				holders += model[i][d] > 0;
			}
			snprintf(dom, sizeof(dom), "d%d.test", d);
			cr_expect_eq(clusterview_remote_msgs(v, dom, strlen(dom)), sum,
				     "round %d %s", round, dom);
			nh = clusterview_holders(v, dom, strlen(dom), out, msgs, T_NODES_MAX);
			cr_assert_eq(nh, holders, "round %d %s holders", round, dom);
			for (size_t k = 0; k < nh; k++) {
				int i = 0;

				while (strcmp(id[i], out[k]->id))
					i++;
				cr_expect_eq(msgs[k], model[i][d], "round %d %s %s", round, dom, id[i]);
				cr_expect_leq(msgs[k], prev, "largest share first");
				prev = msgs[k];
			}
		}
		clusterview_free(v);
	}
}

/* Swap with a registered reader passing quiescent points: the old view is
 * freed after the grace period (ASan would see a use after free), and the
 * reader reads the new one. */
Test(clusterview, live_swap)
{
	struct epoch *e = epoch_new(2);
	struct clusterview_live *lv = clusterview_live_new(e);

	cr_assert_not_null(lv);
	cr_expect_null(clusterview_live_get(lv), "no view before the first swap");
	for (int i = 0; i < 3; i++) {
		struct clusterview_builder *b = clusterview_builder_new();
		struct clusterview_node n = { .id = "n1", .state = CLUSTERVIEW_UP };

		clusterview_builder_node(b, &n);
		clusterview_builder_count(b, 0, "a.test", 6, (uint64_t)i + 1, 1);
		clusterview_live_swap(lv, clusterview_build(b));
		cr_expect_eq(clusterview_remote_msgs(clusterview_live_get(lv), "a.test", 6),
			     (uint64_t)i + 1);
	}
	clusterview_live_free(lv);
	epoch_free(e);
}
