/* SPDX-License-Identifier: MIT */
/*
 * Tests for store/spool.c's pipelined group commit against real files and a
 * real io_uring loop: two batches in flight (each with its own fdatasync,
 * ended in order), an error in the second with the first fine (the first is
 * stored, the second cut off), an error in the first (both fail, the file
 * is cut back to where the first began, and the next message is stored),
 * and a segment rollover between two batches (the second waits and goes
 * into a new segment). Errors are real: RLIMIT_FSIZE makes the kernel
 * refuse a write past the limit (EFBIG), as a full disk would.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "store/spool.h"
#include "store/spool_read.h"
#include "store/spool_rec.h"

#define PL_SHARD 7u
#define PL_MAX 16u

struct pl {
	struct loop *loop;
	struct spool_shard *sh;
	struct config cfg;
	char dir[64];
	unsigned queued, ended;
	int err[PL_MAX];
	unsigned order[PL_MAX];   /* the order callbacks ran in */
	uint64_t ids[PL_MAX];
	char *body[PL_MAX];
	size_t body_len[PL_MAX];
	/* What a segment read found, in file order. */
	uint64_t found[PL_MAX];
	unsigned nfound;
	/* Runs once when everything queued has ended, instead of stopping the
	 * loop (a loop runs once): it may queue more. */
	void (*then)(struct pl *p);
};

struct pl_arg {
	struct pl *p;
	unsigned i;
};
static struct pl_arg pl_args[PL_MAX];

static void *no_open(void *a, struct conn *c, const char *p) { (void)a; (void)c; (void)p; return NULL; }
static size_t no_data(void *a, struct conn *c, void *s, const char *p, size_t n) { (void)a; (void)c; (void)s; (void)p; return n; }
static void no_cb(void *a, struct conn *c, void *s) { (void)a; (void)c; (void)s; }
static const struct conn_ops no_ops = { no_open, no_data, no_cb, no_cb, no_cb, NULL, NULL };

static void pl_done(void *arg, int err)
{
	struct pl_arg *a = arg;
	struct pl *p = a->p;

	p->err[a->i] = err;
	p->order[p->ended++] = a->i;
	if (p->ended == p->queued && p->then) {
		void (*then)(struct pl *) = p->then;

		p->then = NULL;
		then(p);
	}
	if (p->ended == p->queued)
		loop_stop(p->loop);
}

static void pl_open(struct pl *p, size_t segment_size)
{
	struct loop_conf lc = { 0 };
	struct spool_shard_conf sc = { 0 };
	char err[256];

	memset(p, 0, sizeof(*p));
	strcpy(p->dir, "/tmp/etrnd-test-pipe-XXXXXX");
	cr_assert_not_null(mkdtemp(p->dir));
	cr_assert_eq(metrics_init(1), 0);
	config_defaults(&p->cfg);
	p->cfg.nlisten = 0;
	p->cfg.max_connections = 1;
	lc.cfg = &p->cfg;
	lc.ops = &no_ops;
	p->loop = loop_new(&lc, err, sizeof(err));
	cr_assert_not_null(p->loop, "%s", err);
	sc.dir = p->dir;
	sc.shard = PL_SHARD;
	sc.sync = CONFIG_SYNC_BATCH;
	sc.segment_size = segment_size;
	p->sh = spool_shard_open(p->loop, &sc, err, sizeof(err));
	cr_assert_not_null(p->sh, "%s", err);
}

static void pl_close(struct pl *p)
{
	char cmd[128];

	spool_shard_close(p->sh);
	loop_free(p->loop);
	config_free(&p->cfg);
	metrics_free();
	for (unsigned i = 0; i < p->queued; i++)
		free(p->body[i]);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p->dir);
	cr_expect_eq(system(cmd), 0);
}

/* Queue n messages of len body bytes (not yet flushed). */
static void pl_queue(struct pl *p, unsigned n, size_t len)
{
	static const char *const rcpt[] = { "a@demo.test" };
	static const size_t rcpt_len[] = { 11 };

	for (unsigned k = 0; k < n; k++) {
		unsigned i = p->queued++;
		struct spool_msg m = { 0 };

		cr_assert_lt(i, PL_MAX);
		p->body[i] = malloc(len);
		cr_assert_not_null(p->body[i]);
		memset(p->body[i], 'a' + (int)(i % 26), len);
		p->body_len[i] = len;
		p->ids[i] = spool_shard_new_msgid(p->sh);
		m.msgid = p->ids[i];
		m.sender = "s@example.org";
		m.sender_len = 13;
		m.nrcpt = 1;
		m.rcpt = rcpt;
		m.rcpt_len = rcpt_len;
		m.body = p->body[i];
		m.body_len = len;
		pl_args[i].p = p;
		pl_args[i].i = i;
		p->err[i] = 1; /* not ended */
		cr_assert_eq(spool_append_msg(p->sh, &m, pl_done, &pl_args[i]), 0);
	}
}

static void pl_run(struct pl *p)
{
	cr_assert_eq(loop_run(p->loop), 0);
	cr_assert_eq(p->ended, p->queued, "%u of %u ended", p->ended, p->queued);
}

static uint64_t pl_overlapped(struct pl *p)
{
	struct spool_stats st;

	spool_shard_stats(p->sh, &st);
	return st.overlapped;
}

/* Syncs completed (segment and directory): the fsync histogram's count. */
static uint64_t pl_syncs(void)
{
	static const char key[] = "\netrnd_spool_fsync_seconds_count ";
	struct buf b;
	const char *q;
	uint64_t n;

	buf_init(&b, 0);
	cr_assert_eq(metrics_format(&b), 0);
	q = memmem(b.data, b.len, key, sizeof(key) - 1);
	cr_assert_not_null(q);
	n = strtoull(q + sizeof(key) - 1, NULL, 10);
	buf_free(&b);
	return n;
}

static int pl_record(void *arg, uint64_t off, const struct spool_rec_hdr *hdr,
		     const char *payload)
{
	struct pl *p = arg;

	(void)off;
	(void)payload;
	if (p->nfound < PL_MAX)
		p->found[p->nfound] = hdr->msgid;
	p->nfound++;
	return 0;
}

/* Read every segment of the shard in name order; returns their count and
 * expects no torn or bad bytes. */
static unsigned pl_read(struct pl *p)
{
	char path[256], *names[16];
	unsigned n = 0;
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%u", p->dir, PL_SHARD);
	d = opendir(path);
	cr_assert_not_null(d);
	while ((de = readdir(d)) && n < 16)
		if (strstr(de->d_name, ".seg"))
			names[n++] = strdup(de->d_name);
	closedir(d);
	for (unsigned i = 1; i < n; i++)
		for (unsigned k = i; k > 0 && strcmp(names[k - 1], names[k]) > 0; k--) {
			char *t = names[k];
			names[k] = names[k - 1];
			names[k - 1] = t;
		}
	p->nfound = 0;
	for (unsigned i = 0; i < n; i++) {
		struct spool_read_result res;

		snprintf(path, sizeof(path), "%s/%u/%s", p->dir, PL_SHARD, names[i]);
		cr_expect_eq(spool_read_segment(path, pl_record, NULL, p, &res), 0);
		cr_expect_eq(res.torn_bytes, 0, "%s: %" PRIu64 " torn bytes", names[i],
			     (uint64_t)res.torn_bytes);
		cr_expect_eq(res.bad_regions, 0);
		free(names[i]);
	}
	return n;
}

static void fsize_limit(rlim_t lim)
{
	struct rlimit rl;

	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
	rl.rlim_cur = lim;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static void pl_then_one_more(struct pl *p)
{
	fsize_limit(RLIM_INFINITY);
	pl_queue(p, 1, 500);
}

/* Two batches in flight: the second starts before the first's CQEs (the
 * loop has not run yet), each has its own sync, and they end in order. */
Test(spool_pipeline, two_in_flight_end_in_order)
{
	struct pl p;

	pl_open(&p, 1u << 20);
	pl_queue(&p, 3, 4000);
	spool_shard_flush(p.sh);
	pl_queue(&p, 3, 4000);
	spool_shard_flush(p.sh);
	cr_expect_eq(pl_overlapped(&p), 1, "the second batch waited");
	/* A third waits: two are in flight. */
	pl_queue(&p, 2, 100);
	spool_shard_flush(p.sh);
	cr_expect_eq(pl_overlapped(&p), 1);
	pl_run(&p);
	for (unsigned i = 0; i < p.queued; i++) {
		cr_expect_eq(p.err[i], 0, "message %u: %d", i, p.err[i]);
		cr_expect_eq(p.order[i], i, "callback %u was message %u", i, p.order[i]);
	}
	/* Three commits, each its own fdatasync, and one directory sync. */
	cr_expect_eq(pl_syncs(), 3 + 1, "%" PRIu64 " syncs", pl_syncs());
	cr_expect_eq(pl_read(&p), 1);
	cr_expect_eq(p.nfound, p.queued);
	for (unsigned i = 0; i < p.queued && i < p.nfound; i++)
		cr_expect_eq(p.found[i], p.ids[i], "record %u", i);
	pl_close(&p);
}

static void fsize_limit(rlim_t lim);

/* After the failed batches: no limit, and one more message, which the
 * shard's own turn hook commits. */
static void pl_then_one_more(struct pl *p);

/* The second batch's write fails (past RLIMIT_FSIZE: EFBIG) while the first
 * is fine: the first is stored, the second fails whole and is cut off, and
 * the next message follows the first batch. */
Test(spool_pipeline, error_in_second_first_fine)
{
	struct pl p;

	signal(SIGXFSZ, SIG_IGN);
	pl_open(&p, 1u << 20);
	fsize_limit(64 * 1024);
	pl_queue(&p, 3, 4000);      /* about 12 KiB: fits */
	spool_shard_flush(p.sh);
	pl_queue(&p, 3, 30000);     /* about 90 KiB more: crosses 64 KiB */
	spool_shard_flush(p.sh);
	cr_expect_eq(pl_overlapped(&p), 1);
	p.then = pl_then_one_more;
	pl_run(&p);
	for (unsigned i = 0; i < 3; i++)
		cr_expect_eq(p.err[i], 0, "first batch, message %u: %d", i, p.err[i]);
	for (unsigned i = 3; i < 6; i++)
		cr_expect_eq(p.err[i], -EFBIG, "second batch, message %u: %d", i, p.err[i]);
	cr_expect_eq(p.err[6], 0);
	cr_expect_eq(pl_read(&p), 1);
	cr_expect_eq(p.nfound, 4, "%u records on disk", p.nfound);
	for (unsigned i = 0; i < 3; i++)
		cr_expect_eq(p.found[i], p.ids[i], "record %u", i);
	cr_expect_eq(p.found[3], p.ids[6]);
	pl_close(&p);
}

/* The first batch fails: the second, written after it, fails too (the
 * segment is cut back to where the first began), whatever its own result;
 * the next message is stored at the start again. */
Test(spool_pipeline, error_in_first_fails_both)
{
	struct pl p;

	signal(SIGXFSZ, SIG_IGN);
	pl_open(&p, 1u << 20);
	fsize_limit(16 * 1024);
	pl_queue(&p, 2, 30000);     /* crosses 16 KiB */
	spool_shard_flush(p.sh);
	pl_queue(&p, 2, 100);
	spool_shard_flush(p.sh);
	cr_expect_eq(pl_overlapped(&p), 1);
	p.then = pl_then_one_more;
	pl_run(&p);
	for (unsigned i = 0; i < 4; i++)
		cr_expect_eq(p.err[i], -EFBIG, "message %u: %d", i, p.err[i]);
	cr_expect_eq(p.err[4], 0);
	cr_expect_eq(pl_read(&p), 1);
	cr_expect_eq(p.nfound, 1, "%u records on disk", p.nfound);
	cr_expect_eq(p.found[0], p.ids[4]);
	pl_close(&p);
}

/* The next batch needs a new segment while one is in flight: it waits for
 * the first to end (no overlap), then goes into a new segment with its own
 * directory sync. */
Test(spool_pipeline, rollover_between_batches)
{
	struct pl p;

	pl_open(&p, 64 * 1024);
	pl_queue(&p, 2, 30000);     /* about 60 KiB of a 64 KiB segment */
	spool_shard_flush(p.sh);
	pl_queue(&p, 2, 8000);      /* does not fit behind it */
	spool_shard_flush(p.sh);
	cr_expect_eq(pl_overlapped(&p), 0, "a batch for a new segment overlapped");
	pl_run(&p);
	for (unsigned i = 0; i < p.queued; i++) {
		cr_expect_eq(p.err[i], 0, "message %u: %d", i, p.err[i]);
		cr_expect_eq(p.order[i], i);
	}
	/* Two commits, two new segments: each an fdatasync and a dir sync. */
	cr_expect_eq(pl_syncs(), 2 + 2, "%" PRIu64 " syncs", pl_syncs());
	cr_expect_eq(pl_read(&p), 2);
	cr_expect_eq(p.nfound, 4);
	for (unsigned i = 0; i < 4 && i < p.nfound; i++)
		cr_expect_eq(p.found[i], p.ids[i], "record %u", i);
	pl_close(&p);
}
