/* SPDX-License-Identifier: MIT */
/*
 * Out-of-memory paths of store/ (spool_index, spool_recover, spool_state,
 * domstat) through
 * failalloc: each case fails its first, second, ... allocation until it runs
 * without one; every failing run must return the documented -ENOMEM (or
 * NULL), leave the index as it was, leak nothing, and the structure must
 * take the same call again afterwards.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "failalloc.h"
#include "store/domstat.h"
#include "store/spool.h"
#include "store/spool_index.h"
#include "store/spool_recover.h"
#include "store/spool_state.h"

#define OOM_RUNS_MAX 200
#define OOM_MSGS 12       /* messages in the prefilled index: past first growths */
#define OOM_RCPTS 6       /* recipients of the message added under injection */
#define OOM_ADDR_MAX 64

/* --- spool_index -------------------------------------------------------- */

struct oom_ix {
	struct spool_index *idx;
	uint32_t seg[2];  /* an open and a sealed-later segment */
	struct spool_index_totals before;
};

/* Message id's recipients: r0@d<id%5>.test ... spread over several domains,
 * one of them new to the index for ids past OOM_MSGS. */
static int oom_ix_add(struct oom_ix *x, uint64_t id, uint32_t seg, uint32_t nrcpt)
{
	char names[OOM_RCPTS][OOM_ADDR_MAX];
	struct spool_rec_addr rc[OOM_RCPTS];
	struct spool_index_msg m = {
		.msgid = id, .segment_id = seg, .rec_len = 100, .off = id * 100,
		.time_us = id, .body_len = 50, .nrcpt = nrcpt, .rcpts = rc,
	};

	for (uint32_t i = 0; i < nrcpt; i++) {
		int n = snprintf(names[i], sizeof(names[i]), "r%u@D%u.Test.", i,
				 (unsigned)(id % 5 + i + (id >= OOM_MSGS ? 100 : 0)));

		rc[i] = (struct spool_rec_addr){ names[i], (size_t)n };
	}
	return spool_index_add_msg(x->idx, &m);
}

static void *oom_ix_setup(void)
{
	struct oom_ix *x = calloc(1, sizeof(*x));

	cr_assert_not_null(x);
	x->idx = spool_index_new();
	cr_assert_not_null(x->idx);
	cr_assert_eq(spool_index_segment_add(x->idx, 1, &x->seg[0]), 0);
	cr_assert_eq(spool_index_segment_add(x->idx, 2, &x->seg[1]), 0);
	for (uint64_t id = 1; id <= OOM_MSGS; id++)
		cr_assert_eq(oom_ix_add(x, id, x->seg[0], 2), 0);
	spool_index_totals(x->idx, &x->before);
	return x;
}

static void oom_ix_teardown(void *ctx)
{
	struct oom_ix *x = ctx;

	spool_index_free(x->idx);
	free(x);
}

/* Counts that must not move on a failed call (bytes may: documented). */
static void oom_ix_same(const struct oom_ix *x, const char *what)
{
	struct spool_index_totals t;

	spool_index_totals(x->idx, &t);
	cr_assert_eq(t.messages, x->before.messages, "%s: messages", what);
	cr_assert_eq(t.recipients, x->before.recipients, "%s: recipients", what);
	cr_assert_eq(t.domains, x->before.domains, "%s: domains", what);
	cr_assert_eq(t.segments, x->before.segments, "%s: segments", what);
}

static int oom_ix_add_msg(void *ctx)
{
	struct oom_ix *x = ctx;

	return oom_ix_add(x, OOM_MSGS + 1, x->seg[0], OOM_RCPTS);
}

/* -ENOMEM: not indexed, no queue for its new domains; then the same call
 * works and its recipients are queued. */
static void oom_ix_add_check(void *ctx, int rc, int injected)
{
	struct oom_ix *x = ctx;
	struct spool_index_entry e;
	uint32_t pend[OOM_RCPTS];

	cr_assert_eq(rc, injected ? -ENOMEM : 0, "add_msg: rc %d", rc);
	if (injected) {
		oom_ix_same(x, "add_msg");
		cr_assert_eq(spool_index_msg_find(x->idx, OOM_MSGS + 1, &e), -ENOENT);
		cr_assert_eq(oom_ix_add_msg(x), 0);
	}
	cr_assert_eq(spool_index_msg_find(x->idx, OOM_MSGS + 1, &e), 0);
	cr_assert_eq(e.npending, OOM_RCPTS);
	cr_assert_eq(spool_index_msg_pending(x->idx, OOM_MSGS + 1, pend, OOM_RCPTS), OOM_RCPTS);
	cr_assert_not_null(spool_index_queue(x->idx, "d108.test", strlen("d108.test")));
}

static int oom_ix_segment_add(void *ctx)
{
	struct oom_ix *x = ctx;
	uint32_t id;
	int rc = 0;

	/* Past the segment array's first growth. */
	for (uint64_t s = 3; s < 3 + 2 * OOM_MSGS && rc == 0; s++)
		rc = spool_index_segment_add(x->idx, s, &id);
	return rc;
}

static void oom_ix_segment_check(void *ctx, int rc, int injected)
{
	struct oom_ix *x = ctx;
	struct spool_index_seg_stat st;
	uint32_t id;

	cr_assert_eq(rc, injected ? -ENOMEM : 0, "segment_add: rc %d", rc);
	cr_assert_eq(spool_index_segment_add(x->idx, 1000, &id), 0);
	cr_assert_eq(spool_index_segment_stat(x->idx, id, &st), 0);
	cr_assert_eq(st.first_seq, 1000);
	cr_assert_eq(oom_ix_add(x, 500, id, 1), 0);
}

/* A NOTE in the other segment pins it (a new ref on the MSG's segment). */
static int oom_ix_note(void *ctx)
{
	struct oom_ix *x = ctx;
	int rc = 0;

	for (uint64_t id = 1; id <= OOM_MSGS && rc == 0; id++)
		rc = spool_index_note(x->idx, id, SPOOL_NOTE_DELAY_WARNED, x->seg[1]);
	return rc;
}

/* -ENOMEM leaves that message un-noted; the notes before it stay. Then
 * every message takes its note. */
static void oom_ix_note_check(void *ctx, int rc, int injected)
{
	struct oom_ix *x = ctx;

	cr_assert_eq(rc, injected ? -ENOMEM : 0, "note: rc %d", rc);
	for (uint64_t id = 1; id <= OOM_MSGS; id++) {
		int noted = spool_index_msg_noted(x->idx, id, SPOOL_NOTE_DELAY_WARNED);

		cr_assert_geq(noted, 0);
		if (!noted)
			cr_assert_eq(spool_index_note(x->idx, id, SPOOL_NOTE_DELAY_WARNED,
						      x->seg[1]), 0, "note %llu after",
				     (unsigned long long)id);
	}
	oom_ix_same(x, "note");
}

/* DONEs written in seg[1] for messages of seg[0]: each new pin holder
 * grows seg[0]'s refs. */
static int oom_ix_done(void *ctx)
{
	struct oom_ix *x = ctx;
	int rc = 0;

	for (uint64_t id = 1; id <= OOM_MSGS && rc == 0; id++)
		for (uint32_t r = 0; r < 2 && rc == 0; r++) {
			rc = spool_index_done(x->idx, id, r, SPOOL_DONE_DELIVERED, x->seg[1], NULL);
			if (rc == -EALREADY)
				rc = 0;
		}
	return rc;
}

/* -ENOMEM: that recipient still pending; once memory is back every
 * recipient takes its DONE and the index is empty. */
static void oom_ix_done_check(void *ctx, int rc, int injected)
{
	struct oom_ix *x = ctx;
	struct spool_index_totals t;

	cr_assert_eq(rc, injected ? -ENOMEM : 0, "done: rc %d", rc);
	if (injected) {
		spool_index_totals(x->idx, &t);
		cr_assert_gt(t.recipients, 0);
		cr_assert_eq(oom_ix_done(x), 0);
	}
	spool_index_totals(x->idx, &t);
	cr_assert_eq(t.messages, 0);
	cr_assert_eq(t.recipients, 0);
	cr_assert_eq(t.delivered, 2 * OOM_MSGS);
}

/* Compaction: every message of seg[0] moved to seg[1]. */
static int oom_ix_move(void *ctx)
{
	struct oom_ix *x = ctx;
	int rc = 0;

	for (uint64_t id = 1; id <= OOM_MSGS && rc == 0; id++)
		rc = spool_index_msg_move(x->idx, id, x->seg[0], id * 100, x->seg[1], id * 100);
	return rc;
}

/* -ENOMEM: nothing moved (the message is still at seg[0]); after, the rest
 * move, and seg[0] has no live message left. */
static void oom_ix_move_check(void *ctx, int rc, int injected)
{
	struct oom_ix *x = ctx;
	struct spool_index_seg_stat st;

	cr_assert_eq(rc, injected ? -ENOMEM : 0, "move: rc %d", rc);
	for (uint64_t id = 1; id <= OOM_MSGS; id++) {
		struct spool_index_entry e;

		cr_assert_eq(spool_index_msg_find(x->idx, id, &e), 0);
		if (e.segment_id == x->seg[0])
			cr_assert_eq(spool_index_msg_move(x->idx, id, x->seg[0], id * 100,
							  x->seg[1], id * 100), 0);
	}
	cr_assert_eq(spool_index_segment_stat(x->idx, x->seg[0], &st), 0);
	cr_assert_eq(st.live_msgs, 0);
	oom_ix_same(x, "move");
}

/* The whole life of an index under injection: new, segments, messages,
 * DONEs to the end; -ENOMEM or NULL at any step, and freed on every path. */
static int oom_ix_life(void *ctx)
{
	struct oom_ix x = { .idx = spool_index_new() };
	int rc = 0, fin = 0;

	(void)ctx;
	if (!x.idx)
		return -ENOMEM;
	rc = spool_index_segment_add(x.idx, 1, &x.seg[0]);
	for (uint64_t id = 1; id <= 3 && rc == 0; id++)
		rc = oom_ix_add(&x, id, x.seg[0], 2);
	for (uint64_t id = 1; id <= 3 && rc == 0; id++)
		for (uint32_t r = 0; r < 2 && rc == 0; r++)
			rc = spool_index_done(x.idx, id, r, SPOOL_DONE_DELIVERED, x.seg[0], &fin);
	if (rc == 0)
		cr_assert_eq(fin, 1);
	spool_index_free(x.idx);
	return rc;
}

/* --- spool_state, domstat --------------------------------------------- */

static int oom_state_new(void *ctx)
{
	struct spool_state *s = spool_state_new();

	(void)ctx;
	if (!s)
		return -ENOMEM;
	spool_state_free(s);
	return 0;
}

#define OOM_STATE_MSGS 100 /* the table grows more than once */

struct oom_state {
	struct spool_state *s;
	uint64_t id; /* the message being added */
};

static void *oom_state_setup(void)
{
	struct oom_state *x = calloc(1, sizeof(*x));

	cr_assert_not_null(x);
	x->s = spool_state_new();
	cr_assert_not_null(x->s);
	return x;
}

static void oom_state_teardown(void *ctx)
{
	struct oom_state *x = ctx;

	spool_state_free(x->s);
	free(x);
}

static int oom_state_msgs(void *ctx)
{
	struct oom_state *x = ctx;
	int rc = 0;

	for (x->id = 1; x->id <= OOM_STATE_MSGS; x->id++)
		if ((rc = spool_state_msg(x->s, x->id, 3)) != 0)
			break;
	return rc;
}

/* The message that failed is not there, those before it are, and the
 * table takes it and the rest once memory is back. */
static void oom_state_check(void *ctx, int rc, int injected)
{
	struct oom_state *x = ctx;
	enum spool_state_kind k;

	cr_assert_eq(rc, injected ? -ENOMEM : 0, "spool_state_msg: rc %d", rc);
	if (injected) {
		cr_assert_eq(spool_state_get(x->s, x->id, &k, NULL, NULL), -ENOENT);
		if (x->id > 1)
			cr_assert_eq(spool_state_get(x->s, x->id - 1, &k, NULL, NULL), 0);
		for (; x->id <= OOM_STATE_MSGS; x->id++)
			cr_assert_eq(spool_state_msg(x->s, x->id, 3), 0);
	}
	cr_assert_eq(spool_state_done(x->s, 7, 1, SPOOL_DONE_BOUNCED), 0);
	cr_assert_eq(spool_state_get(x->s, OOM_STATE_MSGS, &k, NULL, NULL), 0);
	cr_assert_eq(k, SPOOL_STATE_HELD);
}

static int oom_domstat_new(void *ctx)
{
	struct domstat *t = domstat_new(16);

	(void)ctx;
	if (!t)
		return -ENOMEM;
	domstat_free(t);
	return 0;
}

static void *oom_domstat_setup(void)
{
	struct domstat *t = domstat_new(16);

	cr_assert_not_null(t);
	return t;
}

static void oom_domstat_teardown(void *ctx)
{
	domstat_free(ctx);
}

/* The first add of a domain names its cell: one malloc each. */
static int oom_domstat_add(void *ctx)
{
	domstat_add_domain(ctx, "A.test", 6, 2, 200);
	domstat_add_domain(ctx, "b.test.", 7, 1, 100);
	return 0;
}

static void oom_domstat_walk(void *arg, size_t idx, const char *name, uint64_t msgs,
		uint64_t bytes)
{
	unsigned *seen = arg;

	(void)idx;
	(void)bytes;
	cr_assert(strcmp(name, "a.test") == 0 || strcmp(name, "b.test") == 0, "%s", name);
	cr_assert_eq(msgs, strcmp(name, "a.test") == 0 ? 2 : 1, "%s: %llu", name,
		     (unsigned long long)msgs);
	(*seen)++;
}

/* Out of memory the domain stays unnamed but counted (domstat.c); its next
 * add names it, and the walk then sees both. */
static void oom_domstat_check(void *ctx, int rc, int injected)
{
	unsigned seen = 0;

	cr_assert_eq(rc, 0);
	cr_assert_eq(domstat_msgs(ctx, "a.test", 6), 2, "counted even unnamed");
	cr_assert_eq(domstat_msgs(ctx, "B.TEST", 6), 1);
	domstat_add_domain(ctx, "a.test", 6, 0, 0);
	domstat_add_domain(ctx, "b.test", 6, 0, 0);
	domstat_walk(ctx, oom_domstat_walk, &seen);
	cr_assert_eq(seen, 2, "injected %d", injected);
}

/* --- spool_recover ------------------------------------------------------ */

#define OOM_SEG_MSGS 8
#define OOM_SEG_MAX 65536

struct oom_seg {
	char buf[OOM_SEG_MAX];
	size_t len;
};

static char oom_dir[64];

static void oom_seg_msg(struct oom_seg *g, uint64_t id)
{
	static const char *const rcpt[3] = { "a@x.test", "b@y.test", "c@x.test" };
	static const size_t rl[3] = { 8, 8, 8 };
	static const char body[] = "Subject: s\r\n\r\nbody\r\n";
	size_t head = spool_rec_msg_head_size(10, 3, rl);

	cr_assert_leq(g->len + head + sizeof(body), sizeof(g->buf));
	cr_assert_eq(spool_rec_encode_msg_head(g->buf + g->len, id, 1000 + id, 0, "s@src.test", 10,
					       3, rcpt, rl, body, sizeof(body) - 1), head);
	g->len += head;
	memcpy(g->buf + g->len, body, sizeof(body) - 1);
	g->len += sizeof(body) - 1;
}

static void oom_seg_write(const char *dir, uint64_t first, const struct oom_seg *g)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/%016" PRIx64 ".seg", dir, first);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, g->buf, g->len), (ssize_t)g->len);
	close(fd);
}

/* Segment 1: messages 1..8 of 3 recipients; segment 2: messages 9..16,
 * every recipient of 1..4 done (segment 1 still holds 5..8), a NOTE and a
 * SCHED; segment 3: the rest of 1..8 done, so segment 1 dies, and then
 * segment 3 (its DONEs protect nothing any more): a dead list of two. */
static void oom_segs_write(const char *dir)
{
	static struct oom_seg g;

	g.len = 0;
	for (uint64_t id = 1; id <= OOM_SEG_MSGS; id++)
		oom_seg_msg(&g, id);
	oom_seg_write(dir, 1, &g);
	g.len = 0;
	for (uint64_t id = OOM_SEG_MSGS + 1; id <= 2 * OOM_SEG_MSGS; id++)
		oom_seg_msg(&g, id);
	for (uint64_t id = 1; id <= OOM_SEG_MSGS / 2; id++)
		for (uint32_t r = 0; r < 3; r++)
			g.len += spool_rec_encode_done(g.buf + g.len, id, 5000, r,
						       SPOOL_DONE_DELIVERED);
	g.len += spool_rec_encode_note(g.buf + g.len, 12, 6000, SPOOL_NOTE_DELAY_WARNED);
	g.len += spool_rec_encode_sched(g.buf + g.len, 13, 7000, "y.test", 6, 9000);
	oom_seg_write(dir, 0x100, &g);
	g.len = 0;
	for (uint64_t id = OOM_SEG_MSGS / 2 + 1; id <= OOM_SEG_MSGS; id++)
		for (uint32_t r = 0; r < 3; r++)
			g.len += spool_rec_encode_done(g.buf + g.len, id, 5000, r,
						       SPOOL_DONE_BOUNCED);
	oom_seg_write(dir, 0x200, &g);
}

static void oom_recover_setup_dir(void)
{
	snprintf(oom_dir, sizeof(oom_dir), "/tmp/etrnd-test-oom-XXXXXX");
	cr_assert_not_null(mkdtemp(oom_dir));
	oom_segs_write(oom_dir);
}

static void oom_recover_rm_dir(void)
{
	char path[128];

	for (uint64_t first = 0; first <= 0x200; first += 0x100) {
		snprintf(path, sizeof(path), "%s/%016" PRIx64 ".seg", oom_dir,
			 first ? first : 1);
		(void)unlink(path);
	}
	cr_assert_eq(rmdir(oom_dir), 0, "%s: %s", oom_dir, strerror(errno));
}

static struct spool_recover_result oom_recover_want; /* its dead list freed */
static size_t oom_recover_want_ndead;

static int oom_recover(void *ctx)
{
	struct spool_index *idx = spool_index_new();
	struct spool_recover_result res = { 0 };
	char err[256] = "";
	int rc;

	(void)ctx;
	if (!idx)
		return -ENOMEM;
	rc = spool_recover_shard(oom_dir, idx, &res, err, sizeof(err));
	if (rc == 0) {
		cr_assert_eq(res.live_messages, oom_recover_want.live_messages);
		cr_assert_eq(res.live_recipients, oom_recover_want.live_recipients);
		cr_assert_eq(res.ndead, oom_recover_want_ndead);
		cr_assert_eq(res.sched_records, 1);
		cr_assert_eq(spool_index_msg_noted(idx, 12, SPOOL_NOTE_DELAY_WARNED), 1);
	} else {
		cr_assert_eq(rc, -ENOMEM, "%d: %s", rc, err);
		cr_assert_neq(err[0], '\0', "-ENOMEM without a reason");
	}
	spool_recover_result_free(&res);
	spool_index_free(idx);
	return rc;
}

/* What a run without injection finds: the reference for the others (and
 * proof that failing runs changed nothing on disk). */
static void oom_recover_reference(void)
{
	struct spool_index *idx = spool_index_new();
	char err[256];

	cr_assert_not_null(idx);
	cr_assert_eq(spool_recover_shard(oom_dir, idx, &oom_recover_want, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(oom_recover_want.live_messages, OOM_SEG_MSGS);
	/* Segment 1 (every message done), then 0x200 (DONEs of its messages
	 * only). */
	cr_assert_eq(oom_recover_want.ndead, 2, "%zu dead", oom_recover_want.ndead);
	oom_recover_want_ndead = oom_recover_want.ndead;
	spool_recover_result_free(&oom_recover_want);
	spool_index_free(idx);
}

/* --- spool_shard_open on the crafted shard --------------------------------- */

static void *oom_open_conn(void *a, struct conn *c, const char *p)
{
	(void)a;
	(void)c;
	(void)p;
	return NULL;
}

/* The loop accepts nothing (no listeners): the other callbacks never run. */
static const struct conn_ops oom_open_no_ops = { .open = oom_open_conn };

struct oom_open {
	char dir[64];   /* spool_dir; the shard is dir/0 */
	struct loop *loop;
};

static struct config oom_open_cfg;

static void *oom_open_setup(void)
{
	struct oom_open *o = calloc(1, sizeof(*o));
	struct loop_conf lc = { .cfg = &oom_open_cfg, .ops = &oom_open_no_ops };
	char sub[96], err[256];

	cr_assert_not_null(o);
	snprintf(o->dir, sizeof(o->dir), "/tmp/etrnd-test-oom-XXXXXX");
	cr_assert_not_null(mkdtemp(o->dir));
	snprintf(sub, sizeof(sub), "%s/0", o->dir);
	cr_assert_eq(mkdir(sub, 0700), 0);
	oom_segs_write(sub);
	o->loop = loop_new(&lc, err, sizeof(err));
	cr_assert_not_null(o->loop, "%s", err);
	return o;
}

static int oom_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void oom_open_teardown(void *ctx)
{
	struct oom_open *o = ctx;

	loop_free(o->loop);
	cr_assert_eq(nftw(o->dir, oom_rm, 8, FTW_DEPTH | FTW_PHYS), 0);
	free(o);
}

static int oom_open(void *ctx)
{
	struct oom_open *o = ctx;
	/* No domstat here: naming its cells absorbs a failed malloc by
	 * design (the "domstat names a domain" case). */
	struct spool_shard_conf sc = { .dir = o->dir, .shard = 0, .segment_size = 1u << 20 };
	struct spool_shard *sh;
	struct spool_index_totals t;
	char err[256] = "";

	sh = spool_shard_open(o->loop, &sc, err, sizeof(err));
	if (!sh) {
		cr_assert_neq(err[0], '\0', "NULL without a reason");
		return -ENOMEM;
	}
	spool_index_totals(spool_shard_index(sh), &t);
	cr_assert_eq(t.messages, OOM_SEG_MSGS);
	spool_shard_close(sh);
	return 0;
}

/* Failed: the live segment is still there. Opened: the two dead ones are
 * gone, and a second open finds the same mail. */
static void oom_open_check(void *ctx, int rc, int injected)
{
	struct oom_open *o = ctx;
	char path[128];

	cr_assert_eq(rc, injected ? -ENOMEM : 0, "open: rc %d", rc);
	snprintf(path, sizeof(path), "%s/0/%016x.seg", o->dir, 0x100);
	cr_assert_eq(access(path, F_OK), 0, "%s lost", path);
	if (!injected) {
		snprintf(path, sizeof(path), "%s/0/%016x.seg", o->dir, 1);
		cr_assert_neq(access(path, F_OK), 0, "%s: dead, not unlinked", path);
	}
	cr_assert_eq(oom_open(o), 0);
}

static const struct failalloc_case oom_store_cases[] = {
	{ "spool_index_add_msg", oom_ix_setup, oom_ix_add_msg, oom_ix_add_check, oom_ix_teardown },
	{ "spool_index_segment_add", oom_ix_setup, oom_ix_segment_add, oom_ix_segment_check,
	  oom_ix_teardown },
	{ "spool_index_note", oom_ix_setup, oom_ix_note, oom_ix_note_check, oom_ix_teardown },
	{ "spool_index_done pins", oom_ix_setup, oom_ix_done, oom_ix_done_check,
	  oom_ix_teardown },
	{ "spool_index_msg_move", oom_ix_setup, oom_ix_move, oom_ix_move_check, oom_ix_teardown },
	{ "spool_index life", NULL, oom_ix_life, failalloc_check_enomem, NULL },
	{ "spool_state_new", NULL, oom_state_new, failalloc_check_enomem, NULL },
	{ "spool_state_msg grows", oom_state_setup, oom_state_msgs, oom_state_check,
	  oom_state_teardown },
	{ "spool_shard_open", oom_open_setup, oom_open, oom_open_check, oom_open_teardown },
	{ "domstat_new", NULL, oom_domstat_new, failalloc_check_enomem, NULL },
	{ "domstat names a domain", oom_domstat_setup, oom_domstat_add, oom_domstat_check,
	  oom_domstat_teardown },
};

static void oom_store_init(void)
{
	log_set_level(LOGL_ERR);
	cr_assert_eq(metrics_init(1), 0);
	config_defaults(&oom_open_cfg);
	oom_open_cfg.nlisten = 0;
	oom_open_cfg.max_connections = 4;
}

static void oom_store_fini(void)
{
	config_free(&oom_open_cfg);
}

Test(oom_store, every_allocation_fails_once, .init = oom_store_init, .fini = oom_store_fini)
{
	failalloc_run_all(oom_store_cases, sizeof(oom_store_cases) / sizeof(oom_store_cases[0]),
			  OOM_RUNS_MAX);
}

/* Recovery of a crafted shard: -ENOMEM with a reason at every allocation,
 * the index freed whole, the disk untouched (the last run finds what the
 * first found). */
Test(oom_store, recover_shard, .init = oom_recover_setup_dir, .fini = oom_recover_rm_dir)
{
	static const struct failalloc_case c[] = {
		{ "spool_recover_shard", NULL, oom_recover, failalloc_check_enomem, NULL },
	};

	log_set_level(LOGL_ERR);
	oom_recover_reference();
	failalloc_run_all(c, 1, OOM_RUNS_MAX);
	oom_recover_reference();
}
