/* SPDX-License-Identifier: MIT */
/*
 * Out-of-memory paths of core/ (htab, buf, domtab, clusterview, config) through
 * failalloc: each case fails its first, second, ... allocation until it runs
 * without one, and checks the documented error, that nothing was half-done,
 * that the object still works, and (ASan's leak check) that nothing leaked.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clusterview.h"
#include "core/config.h"
#include "core/config_activator.h"
#include "core/domtab.h"
#include "core/epoch.h"
#include "core/hash.h"
#include "core/htab.h"
#include "failalloc.h"

#define OOM_RUNS_MAX 200 /* more allocations than any case here makes */
/* Rows in the prefilled domtab builder: its first capacity (domtab.c's
 * DOMTAB_BUILDER_MIN), so the next put grows the array and the index. */
#define OOM_ROWS 64

/* --- htab ------------------------------------------------------------- */

struct oom_htab {
	struct htab h;
	uint32_t n; /* elements 0 .. n-1 indexed under hash_fin32(el) */
};

static int oom_htab_eq(const void *ctx, uint32_t el, const void *key)
{
	(void)ctx;
	return el == *(const uint32_t *)key;
}

static void *oom_htab_setup(void)
{
	struct oom_htab *t = calloc(1, sizeof(*t));

	cr_assert_not_null(t);
	htab_init(&t->h);
	/* HTAB_MIN_SLOTS holds half as many: the next insert grows. */
	for (t->n = 0; t->n < HTAB_MIN_SLOTS / 2; t->n++)
		cr_assert_eq(htab_insert(&t->h, hash_fin32(t->n), t->n), 0);
	return t;
}

static void oom_htab_teardown(void *ctx)
{
	struct oom_htab *t = ctx;

	htab_fini(&t->h);
	free(t);
}

static int oom_htab_insert(void *ctx)
{
	struct oom_htab *t = ctx;

	return htab_insert(&t->h, hash_fin32(t->n), t->n);
}

static int oom_htab_reserve(void *ctx)
{
	struct oom_htab *t = ctx;

	return htab_reserve(&t->h, 1000);
}

/* After either: the elements indexed before are all found, the table still
 * takes the next element. */
static void oom_htab_check(void *ctx, int rc, int injected)
{
	struct oom_htab *t = ctx;
	uint32_t want = t->h.count;

	cr_assert_eq(rc, injected ? -ENOMEM : 0, "htab: rc %d injected %d", rc, injected);
	for (uint32_t i = 0; i < want; i++)
		cr_assert_eq(htab_find(&t->h, hash_fin32(i), oom_htab_eq, NULL, &i), i);
	if (want == t->n) { /* the insert did not happen (or was a reserve) */
		cr_assert_eq(htab_insert(&t->h, hash_fin32(t->n), t->n), 0);
		want++;
	}
	cr_assert_eq(t->h.count, t->n + 1);
	cr_assert_leq(t->h.count * 2, t->h.mask + 1, "at most half full");
}

/* --- buf -------------------------------------------------------------- */

#define OOM_BUF_SEED "250-first line\r\n"

static void *oom_buf_setup(void)
{
	struct buf *b = calloc(1, sizeof(*b));

	cr_assert_not_null(b);
	buf_init(b, 0);
	cr_assert_eq(buf_puts(b, OOM_BUF_SEED), 0);
	return b;
}

static void oom_buf_teardown(void *ctx)
{
	buf_free(ctx);
	free(ctx);
}

/* Longer than the first allocation and than buf_printf's stack buffer:
 * the grown and the heap paths. */
static int oom_buf_printf(void *ctx)
{
	char big[2048];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	return buf_printf(ctx, "250 %s %d\r\n", big, 42);
}

static int oom_buf_append(void *ctx)
{
	static const char more[600] = { 'y' };

	return buf_append(ctx, more, sizeof(more));
}

/* On -ENOMEM nothing is added (the documented promise); then the buffer
 * appends as before. */
static void oom_buf_check(void *ctx, int rc, int injected)
{
	struct buf *b = ctx;
	size_t seed = strlen(OOM_BUF_SEED);

	if (injected) {
		cr_assert_eq(rc, -ENOMEM);
		cr_assert_eq(b->len, seed, "nothing half-written: len %zu", b->len);
	} else {
		cr_assert_eq(rc, 0);
		cr_assert_gt(b->len, seed);
	}
	cr_assert_eq(memcmp(b->data, OOM_BUF_SEED, seed), 0);
	cr_assert_eq(buf_puts(b, "."), 0);
	cr_assert_eq(b->data[b->len - 1], '.');
}

/* --- domtab ----------------------------------------------------------- */

static const struct cidr oom_nets[2] = { { .family = 0 } };

static void oom_row(struct domtab_row *r, char *name, size_t size, unsigned i)
{
	snprintf(name, size, "Dom%u.Example.TEST.", i);
	*r = (struct domtab_row){
		.name = name, .queue = "q1", .dest = "[relay.test]:2525",
		.owner = "owner", .etrn_from = oom_nets, .netrn_from = 0,
		.max_hold_ms = 1000, .quota_bytes = 10,
	};
}

static void *oom_domtab_setup(void)
{
	struct domtab_builder *b = domtab_builder_new();

	cr_assert_not_null(b);
	for (unsigned i = 0; i < OOM_ROWS; i++) {
		struct domtab_row r;
		char name[64];

		oom_row(&r, name, sizeof(name), i);
		cr_assert_eq(domtab_builder_put(b, &r), 0);
		snprintf(name, sizeof(name), "*.w%u.test", i);
		cr_assert_eq(domtab_builder_route_put(b, name, "[mx.w.test]:25"), 0);
	}
	return b;
}

static void oom_domtab_teardown(void *ctx)
{
	domtab_builder_free(ctx);
}

/* A new row past the builder's first growth (a new entry, a grown array). */
static int oom_domtab_put(void *ctx)
{
	struct domtab_row r;
	char name[64];

	oom_row(&r, name, sizeof(name), OOM_ROWS);
	return domtab_builder_put(ctx, &r);
}

static int oom_domtab_route_put(void *ctx)
{
	return domtab_builder_route_put(ctx, "*.new.test", "relay.new.test:2525");
}

/* put and route_put on -ENOMEM: nothing added; the builder then takes both
 * and builds a table that finds every row and route. */
static void oom_domtab_put_check(void *ctx, int rc, int injected)
{
	struct domtab_builder *b = ctx;
	struct domtab *t;

	cr_assert_eq(rc, injected ? -ENOMEM : 0, "domtab put: rc %d", rc);
	if (injected)
		cr_assert_eq(domtab_builder_count(b) + domtab_builder_route_count(b),
			     2 * OOM_ROWS, "nothing half-added");
	cr_assert_eq(oom_domtab_put(b), 0);
	cr_assert_eq(oom_domtab_route_put(b), 0);
	cr_assert_eq(domtab_builder_count(b), OOM_ROWS + 1);
	t = domtab_build(b);
	cr_assert_not_null(t);
	cr_assert_eq(domtab_count(t), OOM_ROWS + 1);
	cr_assert(domtab_lookup(t, "dom64.example.test", strlen("dom64.example.test")));
	cr_assert_str_eq(domtab_route(t, "a.new.test", strlen("a.new.test")),
			 "relay.new.test:2525");
	cr_assert_str_eq(domtab_route(t, "x.w3.test", strlen("x.w3.test")), "[mx.w.test]:25");
	domtab_free(t);
}

static int oom_domtab_build(void *ctx)
{
	struct domtab *t = domtab_build(ctx);

	if (!t)
		return -ENOMEM;
	cr_assert_eq(domtab_count(t), OOM_ROWS);
	cr_assert_eq(domtab_route_count(t), OOM_ROWS);
	domtab_free(t);
	return 0;
}

/* build leaves its builder as it was: a second build works. */
static void oom_domtab_build_check(void *ctx, int rc, int injected)
{
	cr_assert_eq(rc, injected ? -ENOMEM : 0);
	cr_assert_eq(domtab_builder_count(ctx), OOM_ROWS);
	cr_assert_eq(oom_domtab_build(ctx), 0);
}

static int oom_domtab_new(void *ctx)
{
	static const char *const names[] = { "a.test", "B.test.", "*.c.test", "a.test" };
	struct domtab *t = domtab_new(names, sizeof(names) / sizeof(names[0]));
	struct epoch *e;
	struct domtab_live *lv;
	int rc = -ENOMEM;

	(void)ctx;
	if (!t)
		return -ENOMEM;
	cr_assert_eq(domtab_count(t), 3);
	cr_assert(domtab_lookup(t, "x.c.test", strlen("x.c.test")));
	e = epoch_new(1);
	if (!e) {
		domtab_free(t);
		return -ENOMEM;
	}
	/* NULL initial: the holder makes an empty table of its own. */
	lv = domtab_live_new(NULL, e);
	if (lv) {
		cr_assert_eq(domtab_count(domtab_live_get(lv)), 0);
		domtab_live_swap(lv, t);
		t = NULL;
		cr_assert_eq(domtab_count(domtab_live_get(lv)), 3);
		domtab_live_free(lv);
		rc = 0;
	}
	domtab_free(t);
	epoch_free(e);
	return rc;
}

/* --- clusterview ------------------------------------------------------ */

#define OOM_CV_NODES 3
#define OOM_CV_ROWS 20 /* past the row array's first growth (16) */

/* The whole build: nodes, rows past the first growth, build; NULL or
 * -ENOMEM at any step, and the builder freed on every path. */
static int oom_cv_build(void *ctx)
{
	struct clusterview_builder *b = clusterview_builder_new();
	struct clusterview *v;
	int rc = 0;

	(void)ctx;
	if (!b)
		return -ENOMEM;
	for (int i = 0; i < OOM_CV_NODES && rc >= 0; i++) {
		struct clusterview_node n = { .state = CLUSTERVIEW_UP };

		snprintf(n.id, sizeof(n.id), "node%d", OOM_CV_NODES - i);
		rc = clusterview_builder_node(b, &n);
	}
	for (int i = 0; i < OOM_CV_ROWS && rc >= 0; i++) {
		char dom[32];

		snprintf(dom, sizeof(dom), "D%d.test.", i % 7);
		rc = clusterview_builder_count(b, i % OOM_CV_NODES, dom, strlen(dom),
					       (uint64_t)i + 1, 100);
	}
	if (rc < 0) {
		cr_assert_eq(rc, -ENOMEM);
		clusterview_builder_free(b);
		return rc;
	}
	v = clusterview_build(b); /* consumes b, on success and on failure */
	if (!v)
		return -ENOMEM;
	cr_assert_eq(clusterview_nodes(v, NULL, 0), OOM_CV_NODES);
	/* d0.test: rows 0, 7, 14 on nodes 0, 1, 2 (counts 1, 8, 15). */
	cr_assert_eq(clusterview_remote_msgs(v, "d0.test", strlen("d0.test")), 24);
	clusterview_free(v);
	return 0;
}

static int oom_cv_live(void *ctx)
{
	struct epoch *e = epoch_new(1);
	struct clusterview_live *lv;

	(void)ctx;
	if (!e)
		return -ENOMEM;
	lv = clusterview_live_new(e);
	if (lv) {
		cr_assert_null(clusterview_live_get(lv));
		clusterview_live_free(lv);
	}
	epoch_free(e);
	return lv ? 0 : -ENOMEM;
}

/* --- config ----------------------------------------------------------- */

#define OOM_RELAY_OLD "old.test"
#define OOM_RELAY_NEW "A.test, b.test., c.test, d.test, e.test"

static void *oom_config_setup(void)
{
	struct config *c = calloc(1, sizeof(*c));
	char err[CONFIG_ERR_MAX];

	cr_assert_not_null(c);
	config_defaults(c);
	cr_assert_eq(config_set(c, "relay_domains", OOM_RELAY_OLD, "-o", err, sizeof(err)), 0,
		     "%s", err);
	return c;
}

static void oom_config_teardown(void *ctx)
{
	config_free(ctx);
	free(ctx);
}

static char oom_config_err[CONFIG_ERR_MAX];

static int oom_config_relay(void *ctx)
{
	return config_set(ctx, "relay_domains", OOM_RELAY_NEW, "-o", oom_config_err,
			  sizeof(oom_config_err));
}

/* -1 with "out of memory" and the old list whole; then the new list. */
static void oom_config_relay_check(void *ctx, int rc, int injected)
{
	struct config *c = ctx;

	if (injected) {
		cr_assert_eq(rc, -1);
		cr_assert_not_null(strstr(oom_config_err, "out of memory"), "%s", oom_config_err);
		cr_assert_eq(c->nrelay_domains, 1);
		cr_assert_str_eq(c->relay_domains[0], OOM_RELAY_OLD);
		cr_assert_eq(oom_config_relay(c), 0, "%s", oom_config_err);
	}
	cr_assert_eq(c->nrelay_domains, 5);
	cr_assert_str_eq(c->relay_domains[0], "a.test");
	cr_assert_str_eq(c->relay_domains[1], "b.test");
}

/* A second activator grows both of config's activator arrays. */
static int oom_config_activator(void *ctx)
{
	return config_set(ctx, "activator.two.host", "[192.0.2.8]:26", "-o", oom_config_err,
			  sizeof(oom_config_err));
}

static void *oom_config_activator_setup(void)
{
	struct config *c = oom_config_setup();
	char err[CONFIG_ERR_MAX];

	cr_assert_eq(config_set(c, "activator.one.host", "[192.0.2.7]:26", "-o", err,
				sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_set(c, "activator.one.request", "p.test", "-o", err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(config_set(c, "activator.one.schedule", "every 1h", "-o", err, sizeof(err)),
		     0, "%s", err);
	return c;
}

static void oom_config_activator_check(void *ctx, int rc, int injected)
{
	struct config *c = ctx;
	char err[CONFIG_ERR_MAX];

	if (injected) {
		cr_assert_eq(rc, -1);
		cr_assert_not_null(strstr(oom_config_err, "out of memory"), "%s", oom_config_err);
		cr_assert_eq(c->nactivators, 1);
		cr_assert_eq(oom_config_activator(c), 0, "%s", oom_config_err);
	}
	cr_assert_eq(c->nactivators, 2);
	cr_assert_str_eq(c->activators[1].name, "two");
	cr_assert_eq(config_set(c, "activator.two.request", "q.test", "-o", err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(config_set(c, "activator.two.schedule", "after-outbound", "-o", err,
				sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_activators_finish(c, err, sizeof(err)), 0, "%s", err);
}

static const struct failalloc_case oom_core_cases[] = {
	{ "htab_insert grows", oom_htab_setup, oom_htab_insert, oom_htab_check, oom_htab_teardown },
	{ "htab_reserve", oom_htab_setup, oom_htab_reserve, oom_htab_check, oom_htab_teardown },
	{ "buf_printf heap path", oom_buf_setup, oom_buf_printf, oom_buf_check, oom_buf_teardown },
	{ "buf_append grows", oom_buf_setup, oom_buf_append, oom_buf_check, oom_buf_teardown },
	{ "domtab_builder_put", oom_domtab_setup, oom_domtab_put, oom_domtab_put_check,
	  oom_domtab_teardown },
	{ "domtab_builder_route_put", oom_domtab_setup, oom_domtab_route_put,
	  oom_domtab_put_check, oom_domtab_teardown },
	{ "domtab_build", oom_domtab_setup, oom_domtab_build, oom_domtab_build_check,
	  oom_domtab_teardown },
	{ "domtab_new and live", NULL, oom_domtab_new, failalloc_check_enomem, NULL },
	{ "clusterview build", NULL, oom_cv_build, failalloc_check_enomem, NULL },
	{ "clusterview_live_new", NULL, oom_cv_live, failalloc_check_enomem, NULL },
	{ "config relay_domains", oom_config_setup, oom_config_relay, oom_config_relay_check,
	  oom_config_teardown },
	{ "config activator", oom_config_activator_setup, oom_config_activator,
	  oom_config_activator_check, oom_config_teardown },
};

Test(oom_core, every_allocation_fails_once)
{
	failalloc_run_all(oom_core_cases, sizeof(oom_core_cases) / sizeof(oom_core_cases[0]),
			  OOM_RUNS_MAX);
}

/* The helper itself: off by default, counts, fails exactly the n-th. The
 * pointers go through a volatile sink so that the compiler cannot drop a
 * malloc/free pair it sees (GCC does at -O2). */
static void *volatile oom_sink[3];

Test(oom_core, failalloc_fails_the_nth_only)
{
	oom_sink[0] = malloc(8);
	cr_assert_not_null(oom_sink[0], "off by default");
	free(oom_sink[0]);
	failalloc_count();
	oom_sink[0] = malloc(8);
	oom_sink[1] = strdup("x");
	cr_assert_eq(failalloc_seen(), 2);
	cr_assert_eq(failalloc_off(), 0);
	free(oom_sink[0]);
	free(oom_sink[1]);
	failalloc_fail_nth(1);
	oom_sink[0] = calloc(1, 8);
	oom_sink[1] = realloc(NULL, 8);
	oom_sink[2] = malloc(8);
	cr_assert_eq(failalloc_off(), 1);
	cr_assert_not_null(oom_sink[0]);
	cr_assert_null(oom_sink[1]);
	cr_assert_not_null(oom_sink[2]);
	free(oom_sink[0]);
	free(oom_sink[2]);
}
