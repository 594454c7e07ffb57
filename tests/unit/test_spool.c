/* SPDX-License-Identifier: MIT */
/*
 * Tests for store/spool.c driven by a real io_uring loop (core/loop.c) on a
 * temporary directory: group commit in every sync mode, segment rotation, and
 * that what the done callbacks called stored is exactly what the segment
 * reader finds, byte for byte, in order.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/loop.h"
#include "store/spool.h"
#include "store/spool_read.h"
#include "store/spool_rec.h"

#define NMSG 1500

struct run {
	struct loop *loop;
	struct spool_shard *sh;
	unsigned done, failed, queued;
	uint64_t ids[NMSG];
	char *bodies[NMSG];
	size_t body_len[NMSG];
	unsigned order[NMSG];  /* completion order */
	unsigned next_found;
	int mismatch;
};

struct done_arg {
	struct run *r;
	unsigned i;
};
static struct done_arg dargs[NMSG];

static void on_done(void *arg, int err)
{
	struct done_arg *d = arg;

	if (err)
		d->r->failed++;
	d->r->order[d->r->done++] = d->i;
	if (d->r->done == d->r->queued)
		loop_stop(d->r->loop);
}

static void *no_open(void *a, struct conn *c, const char *p) { (void)a; (void)c; (void)p; return NULL; }
static size_t no_data(void *a, struct conn *c, void *s, const char *p, size_t n) { (void)a; (void)c; (void)s; (void)p; return n; }
static void no_cb(void *a, struct conn *c, void *s) { (void)a; (void)c; (void)s; }
static const struct conn_ops no_ops = { no_open, no_data, no_cb, no_cb, no_cb, NULL, NULL };

/* Queue some messages each loop turn, like sessions finishing DATA. */
struct feeder {
	struct run *r;
	unsigned per_turn;
};

static void turn(void *arg)
{
	struct feeder *f = arg;
	struct run *r = f->r;
	static const char *rcpt[] = { "a@demo.test", "b@other.test" };
	static const size_t rcpt_len[] = { 11, 12 };

	for (unsigned k = 0; k < f->per_turn && r->queued < NMSG; k++) {
		unsigned i = r->queued;
		struct spool_msg m = {
			.msgid = r->ids[i] = spool_shard_new_msgid(r->sh),
			.flags = (uint16_t)(i & 1),
			.sender = "s@example.org", .sender_len = 13,
			.nrcpt = 1 + (i % 2), .rcpt = rcpt, .rcpt_len = rcpt_len,
			.body = r->bodies[i], .body_len = r->body_len[i],
		};
		dargs[i].r = r;
		dargs[i].i = i;
		cr_assert_eq(spool_append_msg(r->sh, &m, on_done, &dargs[i]), 0);
		r->queued++;
	}
	spool_shard_flush(r->sh);
}

static int check_record(void *arg, uint64_t off, const struct spool_rec_hdr *hdr,
			const char *payload)
{
	struct run *r = arg;
	struct spool_rec_msg m;
	unsigned i;

	(void)off;
	if (r->next_found >= r->done) {
		r->mismatch++;
		return 0;
	}
	i = r->order[r->next_found++];
	if (hdr->type != SPOOL_REC_MSG || hdr->msgid != r->ids[i] ||
	    spool_rec_decode_msg(payload, hdr->length, &m) != SPOOL_REC_OK ||
	    m.body_len != r->body_len[i] || memcmp(m.body, r->bodies[i], m.body_len) ||
	    m.nrcpt != 1 + (i % 2) || m.sender.len != 13 || hdr->flags != (i & 1))
		r->mismatch++;
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_mode(enum config_sync mode, unsigned per_turn)
{
	static struct run r;
	struct config cfg;
	struct loop_conf lc = { 0 };
	struct spool_shard_conf sc = { 0 };
	struct feeder f = { &r, per_turn };
	char dir[] = "/tmp/etrnd-test-spool-XXXXXX", err[256], path[512];
	char *names[256];
	unsigned nnames = 0, segs = 0;
	struct dirent *de;
	DIR *d;

	memset(&r, 0, sizeof(r));
	cr_assert_not_null(mkdtemp(dir));
	config_defaults(&cfg);
	cfg.nlisten = 0;
	cfg.max_connections = 4;
	lc.cfg = &cfg;
	lc.ops = &no_ops;
	r.loop = loop_new(&lc, err, sizeof(err));
	cr_assert_not_null(r.loop, "%s", err);
	sc.dir = dir;
	sc.shard = 3;
	sc.sync = mode;
	sc.segment_size = 1u << 20; /* small: forces several segments */
	r.sh = spool_shard_open(r.loop, &sc, err, sizeof(err));
	cr_assert_not_null(r.sh, "%s", err);
	srand(42);
	for (unsigned i = 0; i < NMSG; i++) {
		/* Mostly small, some 100 KiB, one near a whole segment. */
		size_t n = i == 700 ? (1u << 20) - 200 : (i % 97 == 0) ? 100000 : 1 + (size_t)(rand() % 6000);
		r.bodies[i] = malloc(n);
		for (size_t k = 0; k < n; k++)
			r.bodies[i][k] = (char)('a' + (k + i) % 26);
		r.body_len[i] = n;
	}
	/* The shard registered its commit and busy check itself. */
	cr_assert_eq(loop_add_turn_hook(r.loop, LOOP_TURN_QUEUE, "test feeder", turn, &f), 0);
	cr_assert_eq(loop_run(r.loop), 0);
	cr_expect_eq(r.done, NMSG);
	cr_expect_eq(r.failed, 0);

	snprintf(path, sizeof(path), "%s/3", dir);
	d = opendir(path);
	cr_assert_not_null(d);
	while ((de = readdir(d)) && nnames < 256)
		if (strstr(de->d_name, ".seg"))
			names[nnames++] = strdup(de->d_name);
	closedir(d);
	qsort(names, nnames, sizeof(names[0]), cmp_names);
	for (unsigned i = 0; i < nnames; i++) {
		struct spool_read_result res;
		snprintf(path, sizeof(path), "%s/3/%s", dir, names[i]);
		cr_expect_eq(spool_read_segment(path, check_record, NULL, &r, &res), 0);
		cr_expect_eq(res.torn_bytes, 0);
		cr_expect_eq(res.bad_regions, 0);
		cr_expect_leq(res.file_size, 1u << 20, "segment over segment_size");
		segs++;
		unlink(path);
		free(names[i]);
	}
	cr_expect_eq(r.next_found, NMSG, "found %u of %u records", r.next_found, NMSG);
	cr_expect_eq(r.mismatch, 0);
	cr_expect_gt(segs, 3, "rotation made %u segments", segs);
	snprintf(path, sizeof(path), "%s/3", dir);
	rmdir(path);
	rmdir(dir);
	spool_shard_close(r.sh);
	loop_free(r.loop);
	config_free(&cfg);
	for (unsigned i = 0; i < NMSG; i++)
		free(r.bodies[i]);
}

Test(spool, batch_group_commit) { run_mode(CONFIG_SYNC_BATCH, 37); }
Test(spool, always_one_sync_each) { run_mode(CONFIG_SYNC_ALWAYS, 5); }
Test(spool, none_no_sync) { run_mode(CONFIG_SYNC_NONE, 200); }

Test(spool, ids_unique_across_reopen)
{
	struct config cfg;
	struct loop_conf lc = { 0 };
	struct spool_shard_conf sc = { 0 };
	char dir[] = "/tmp/etrnd-test-spool-XXXXXX", err[256];
	struct loop *l;
	struct spool_shard *sh;
	uint64_t a, b;

	cr_assert_not_null(mkdtemp(dir));
	config_defaults(&cfg);
	cfg.nlisten = 0;
	cfg.max_connections = 1;
	lc.cfg = &cfg;
	lc.ops = &no_ops;
	l = loop_new(&lc, err, sizeof(err));
	cr_assert_not_null(l, "%s", err);
	sc.dir = dir;
	sc.shard = 0;
	sc.sync = CONFIG_SYNC_BATCH;
	sc.segment_size = 1u << 20;
	sh = spool_shard_open(l, &sc, err, sizeof(err));
	cr_assert_not_null(sh);
	a = spool_shard_new_msgid(sh);
	b = spool_shard_new_msgid(sh);
	cr_expect_eq(b, a + 1);
	cr_expect_eq(spool_msgid_shard(a), 0);
	spool_shard_close(sh);
	sc.shard = 7;
	sh = spool_shard_open(l, &sc, err, sizeof(err));
	cr_assert_not_null(sh);
	cr_expect_eq(spool_msgid_shard(spool_shard_new_msgid(sh)), 7);
	spool_shard_close(sh);
	loop_free(l);
	config_free(&cfg);
	{
		char p[300];
		snprintf(p, sizeof(p), "%s/0", dir); rmdir(p);
		snprintf(p, sizeof(p), "%s/7", dir); rmdir(p);
		rmdir(dir);
	}
}
