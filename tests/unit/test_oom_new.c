/* SPDX-License-Identifier: MIT */
/*
 * Constructors out of memory, through failalloc: every allocation of each
 * _new()/_open() fails in turn until it runs without one. Each failing run
 * must return NULL (with err or errno as documented), leak nothing of what
 * it had already built, and the next call must succeed. The engine pieces
 * (loop, spool shard, expiry) are built as engine.c builds them, on a
 * throw-away spool directory.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/addrlimit.h"
#include "core/addrtab.h"
#include "core/budget.h"
#include "core/config.h"
#include "core/connlimit.h"
#include "core/epoch.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "engine_fixture.h"
#include "failalloc.h"
#include "proto/atrn_proxy.h"
#include "proto/drain_atrn.h"
#include "proto/etrn_client.h"
#include "proto/expire.h"
#include "store/spool.h"

#define OOM_RUNS_MAX 400
#define OOM_ADDRS 64

/* One line per constructor: NULL is -ENOMEM, else free it and 0. */
#define OOM_NEW(expr, freefn)                           \
	do {                                            \
		void *p_ = (expr);                      \
		if (p_ == NULL)                         \
			return -ENOMEM;                 \
		freefn(p_);                             \
		return 0;                               \
	} while (0)

static uint64_t oom_rank(void *arg, const struct addrtab_val *v, uint64_t now)
{
	(void)arg;
	(void)v;
	return now;
}

static int oom_addrlimit(void *ctx)
{
	(void)ctx;
	OOM_NEW(addrlimit_new("test", 10, OOM_ADDRS), addrlimit_free);
}

static int oom_addrtab(void *ctx)
{
	(void)ctx;
	OOM_NEW(addrtab_new(OOM_ADDRS, oom_rank, NULL), addrtab_free);
}

static int oom_budget(void *ctx)
{
	(void)ctx;
	OOM_NEW(budget_new(1u << 20), budget_free);
}

static int oom_connlimit(void *ctx)
{
	(void)ctx;
	OOM_NEW(connlimit_new(4, OOM_ADDRS), connlimit_free);
}

static int oom_epoch(void *ctx)
{
	(void)ctx;
	OOM_NEW(epoch_new(4), epoch_free);
}

static int oom_drain_atrn_reg(void *ctx)
{
	(void)ctx;
	OOM_NEW(drain_atrn_reg_new(), drain_atrn_reg_free);
}

static int oom_atrn_proxy(void *ctx)
{
	static const struct atrn_proxy_conf conf = { .name = "relay.test" };

	(void)ctx;
	OOM_NEW(atrn_proxy_new(&conf), atrn_proxy_free);
}

static int oom_etrn_client(void *ctx)
{
	static const char *const req[] = { "a.test", "#q1", "@b.test" };
	static const struct etrn_client_conf conf = {
		.helo_name = "relay.test", .method = ETRN_CLIENT_ETRN, .user = "u",
		.pass = "p", .auth_cleartext = 1, .nreq = 3, .req = req,
		.reply_line_max = 512, .max_reply_lines = 100,
	};

	(void)ctx;
	OOM_NEW(etrn_client_new(&conf), etrn_client_free);
}

/* --- engine pieces ----------------------------------------------------- */


struct oom_engine {
	struct config cfg;
	char dir[64];
};

static struct oom_engine oom_eng;

/* loop_new, spool_shard_open (an empty shard: directory, lock, recovery of
 * nothing) and expire_new on it, freed in reverse; -ENOMEM when one of them
 * failed, with its error text. */
static int oom_engine(void *ctx)
{
	struct loop_conf lc = { .cfg = &oom_eng.cfg, .ops = engine_fixture_no_ops() };
	struct spool_shard_conf sc = { .dir = oom_eng.dir, .shard = 0,
				       .segment_size = 1u << 20 };
	struct expire_conf xc = { .hostname = "relay.test", .max_hold_us = 1000000 };
	struct loop *l;
	struct spool_shard *sh = NULL;
	struct expire *x = NULL;
	char err[256] = "";
	int rc = -ENOMEM;

	(void)ctx;
	l = loop_new(&lc, err, sizeof(err));
	if (!l) {
		cr_assert_neq(err[0], '\0', "loop_new: NULL without a reason");
		return -ENOMEM;
	}
	sh = spool_shard_open(l, &sc, err, sizeof(err));
	if (!sh) {
		cr_assert_neq(err[0], '\0', "spool_shard_open: NULL without a reason");
		goto out;
	}
	x = expire_new(&xc, sh);
	if (!x) {
		cr_assert_eq(errno, ENOMEM);
		goto out;
	}
	rc = 0;
out:
	expire_free(x);
	spool_shard_close(sh);
	loop_free(l);
	return rc;
}

static int oom_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static const struct failalloc_case oom_new_cases[] = {
	{ "addrlimit_new", NULL, oom_addrlimit, failalloc_check_enomem, NULL },
	{ "addrtab_new", NULL, oom_addrtab, failalloc_check_enomem, NULL },
	{ "budget_new", NULL, oom_budget, failalloc_check_enomem, NULL },
	{ "connlimit_new", NULL, oom_connlimit, failalloc_check_enomem, NULL },
	{ "epoch_new", NULL, oom_epoch, failalloc_check_enomem, NULL },
	{ "drain_atrn_reg_new", NULL, oom_drain_atrn_reg, failalloc_check_enomem, NULL },
	{ "atrn_proxy_new", NULL, oom_atrn_proxy, failalloc_check_enomem, NULL },
	{ "etrn_client_new", NULL, oom_etrn_client, failalloc_check_enomem, NULL },
	{ "loop, shard, expire", NULL, oom_engine, failalloc_check_enomem, NULL },
};

static void oom_new_init(void)
{
	log_set_level(LOGL_ERR);
	cr_assert_eq(metrics_init(1), 0);
	config_defaults(&oom_eng.cfg);
	oom_eng.cfg.nlisten = 0;
	oom_eng.cfg.max_connections = 4;
	snprintf(oom_eng.dir, sizeof(oom_eng.dir), "/tmp/etrnd-test-oom-XXXXXX");
	cr_assert_not_null(mkdtemp(oom_eng.dir));
}

/* Runs after a failed assertion too: nothing left in /tmp. */
static void oom_new_fini(void)
{
	config_free(&oom_eng.cfg);
	cr_assert_eq(nftw(oom_eng.dir, oom_rm, 8, FTW_DEPTH | FTW_PHYS), 0);
}

Test(oom_new, every_allocation_fails_once, .init = oom_new_init, .fini = oom_new_fini)
{
	failalloc_run_all(oom_new_cases, sizeof(oom_new_cases) / sizeof(oom_new_cases[0]),
			  OOM_RUNS_MAX);
}
