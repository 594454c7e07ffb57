/* SPDX-License-Identifier: MIT */
/*
 * Tests for store/spool.c driven by a real io_uring loop (core/loop.c) on a
 * temporary directory: group commit in every sync mode (the syncs counted by
 * the fsync histogram a scrape reads: none, one per commit, one per message),
 * segment rotation, and that what the done callbacks called stored is exactly
 * what the segment reader finds, byte for byte, in order. SCHED records: the index has the
 * next attempt at once, the record brings it back after a restart, and a
 * segment holding only SCHEDs of live messages is unlinked all the same
 * (at run time the schedule in it is lost; at start it is written again).
 * The pipelined commit: two batches in flight, errors in either, a rollover
 * between them (at the end of the file). The same with O_DIRECT
 * (spool_direct.h): every record found after commits that rewrite the
 * last block, a batch that waits for the write of the block it shares, a
 * failed batch's tail put back.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include "core/now.h"
#include "store/spool.h"
#include "store/spool_index.h"
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
	unsigned turn;
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

	r->turn++;
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

/* Syncs the shard completed (segment and directory), as a scrape reads
 * them: the fsync histogram's _count (core/metrics.h). */
static uint64_t syncs_observed(void)
{
	static const char key[] = "\netrnd_spool_fsync_seconds_count ";
	struct buf b;
	const char *p;
	uint64_t n;

	buf_init(&b, 0);
	cr_assert_eq(metrics_format(&b), 0);
	p = memmem(b.data, b.len, key, sizeof(key) - 1);
	cr_assert_not_null(p, "no %s in the exposition", key + 1);
	n = strtoull(p + sizeof(key) - 1, NULL, 10);
	buf_free(&b);
	return n;
}

/* sync = batch groups: fewer commits than messages / this (37 messages come
 * each turn; rotation and the turn a commit is in flight split groups). */
#define BATCH_PER_COMMIT_MIN 4u

/* What a mode promises: none never syncs; batch syncs once per group
 * commit and groups (fewer commits than messages, by far); always commits
 * each message alone. Every mode but none also syncs the directory once
 * per new segment. Commits are the shard's own count: with two commits in
 * flight, both may end in one turn. */
static void check_syncs(enum config_sync mode, const struct run *r, unsigned segs)
{
	uint64_t syncs = syncs_observed();
	struct spool_stats st;

	spool_shard_stats(r->sh, &st);
	if (mode == CONFIG_SYNC_NONE) {
		cr_expect_eq(syncs, 0, "sync = none: %" PRIu64 " syncs", syncs);
		return;
	}
	cr_expect_eq(syncs, st.commits + segs,
		     "%" PRIu64 " syncs for %" PRIu64 " commits and %u new segments", syncs,
		     st.commits, segs);
	if (mode == CONFIG_SYNC_ALWAYS)
		cr_expect_eq(st.commits, NMSG, "sync = always: %" PRIu64 " commits", st.commits);
	else
		cr_expect_lt(st.commits, NMSG / BATCH_PER_COMMIT_MIN,
			     "sync = batch: %" PRIu64 " commits for %u messages", st.commits, NMSG);
}

/* The direct cases need a filesystem that takes O_DIRECT (ext4, xfs,
 * tmpfs since Linux 6.6); elsewhere etrnd writes through the page cache,
 * which the other cases cover. */
static void skip_without_odirect(const char *dir)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/odirect-probe", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EINVAL) {
		fprintf(stderr, "SKIPPED: %s does not take O_DIRECT\n", dir);
		rmdir(dir);
		cr_skip_test("%s does not take O_DIRECT", dir);
	}
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	close(fd);
	unlink(path);
}

static void run_mode(enum config_sync mode, unsigned per_turn, int direct)
{
	static struct run r;
	struct config cfg;
	struct loop_conf lc = { 0 };
	struct spool_shard_conf sc = { 0 };
	struct feeder f = { &r, per_turn };
	struct spool_stats st;
	char dir[] = "/tmp/etrnd-test-spool-XXXXXX", err[256], path[512];
	char *names[256];
	unsigned nnames = 0, segs = 0;
	struct dirent *de;
	DIR *d;

	memset(&r, 0, sizeof(r));
	cr_assert_not_null(mkdtemp(dir));
	if (direct)
		skip_without_odirect(dir);
	cr_assert_eq(metrics_init(1), 0);
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
	sc.direct = direct;
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
	/* One small record per commit: zeros go ahead of the tail; none
	 * without syncs (spool_prezero.h). */
	spool_shard_stats(r.sh, &st);
	if (mode == CONFIG_SYNC_ALWAYS)
		cr_expect_gt(st.prezero_chunks, 0, "no zeros written ahead");
	if (mode == CONFIG_SYNC_NONE)
		cr_expect_eq(st.prezero_chunks, 0, "zeros written without syncs");
	/* Direct I/O only with syncs (spool_direct.h), and then every commit. */
	if (direct && mode != CONFIG_SYNC_NONE)
		cr_expect_eq(st.direct_commits, st.commits, "%" PRIu64 " of %" PRIu64
			     " commits direct", st.direct_commits, st.commits);
	else
		cr_expect_eq(st.direct_commits, 0);

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
		cr_expect(res.torn_bytes == 0 || res.zero_tail, "%s: %" PRIu64
			  " torn bytes", names[i], (uint64_t)res.torn_bytes);
		cr_expect_eq(res.bad_regions, 0);
		cr_expect_leq(res.file_size, 1u << 20, "segment over segment_size");
		segs++;
		unlink(path);
		free(names[i]);
	}
	cr_expect_eq(r.next_found, NMSG, "found %u of %u records", r.next_found, NMSG);
	cr_expect_eq(r.mismatch, 0);
	cr_expect_gt(segs, 3, "rotation made %u segments", segs);
	/* Direct commits are single O_DSYNC writes, but for each segment's
	 * first, which syncs the directory after its own fdatasync. */
	if (direct && mode != CONFIG_SYNC_NONE)
		cr_expect_eq(st.dsync_commits, st.commits - segs, "%" PRIu64 " O_DSYNC commits of %"
			     PRIu64 " in %u segments", st.dsync_commits, st.commits, segs);
	else
		cr_expect_eq(st.dsync_commits, 0);
	check_syncs(mode, &r, segs);
	metrics_free();
	snprintf(path, sizeof(path), "%s/3", dir);
	rmdir(path);
	rmdir(dir);
	spool_shard_close(r.sh);
	loop_free(r.loop);
	config_free(&cfg);
	for (unsigned i = 0; i < NMSG; i++)
		free(r.bodies[i]);
}

Test(spool, batch_group_commit) { run_mode(CONFIG_SYNC_BATCH, 37, 0); }
Test(spool, always_one_sync_each) { run_mode(CONFIG_SYNC_ALWAYS, 5, 0); }
Test(spool, none_no_sync) { run_mode(CONFIG_SYNC_NONE, 200, 0); }
/* The same with O_DIRECT (spool_direct.h): each commit rewrites the block
 * the last one ended in; the reader must find every record, byte for
 * byte, and no segment may pass segment_size for the zeros that end a
 * block. sync = none writes through the page cache all the same. */
Test(spool, batch_group_commit_direct) { run_mode(CONFIG_SYNC_BATCH, 37, 1); }
Test(spool, always_one_sync_each_direct) { run_mode(CONFIG_SYNC_ALWAYS, 5, 1); }
Test(spool, none_no_sync_direct) { run_mode(CONFIG_SYNC_NONE, 200, 1); }

/* ---- message ids across a restart ---------------------------------------
 * A reopened shard must never hand out an id it stored before, even when
 * the clock is behind the ids on disk (a clock stepped back, or several
 * starts within one second): the next id follows the largest on disk. */

/* An id the clock-based start would reach only in about 2106. */
#define REOPEN_AHEAD_SEQ ((1ull << SPOOL_SHARD_SHIFT) - 1000u)
#define REOPEN_SHARD 5u
#define REOPEN_IDS 3u

struct reopen {
	struct loop *loop;
	struct spool_shard *sh;
	struct config cfg;
	unsigned pending, failed;
};

static void reopen_done(void *arg, int err)
{
	struct reopen *o = arg;

	o->failed += err != 0;
	if (--o->pending == 0)
		loop_stop(o->loop);
}

static void reopen_open(struct reopen *o, const char *dir)
{
	struct loop_conf lc = { 0 };
	struct spool_shard_conf sc = { 0 };
	char err[256];

	config_defaults(&o->cfg);
	o->cfg.nlisten = 0;
	o->cfg.max_connections = 1;
	lc.cfg = &o->cfg;
	lc.ops = &no_ops;
	o->loop = loop_new(&lc, err, sizeof(err));
	cr_assert_not_null(o->loop, "%s", err);
	sc.dir = dir;
	sc.shard = REOPEN_SHARD;
	sc.sync = CONFIG_SYNC_BATCH;
	sc.segment_size = 1u << 20;
	o->sh = spool_shard_open(o->loop, &sc, err, sizeof(err));
	cr_assert_not_null(o->sh, "%s", err);
}

static void reopen_close(struct reopen *o)
{
	spool_shard_close(o->sh);
	loop_free(o->loop);
	config_free(&o->cfg);
}

/* Store one message under each id and wait until all are durable. */
static void reopen_store(struct reopen *o, const uint64_t *ids, unsigned n)
{
	static const char *const rcpt[] = { "a@demo.test" };
	static const size_t rcpt_len[] = { 11 };

	o->pending = n;
	o->failed = 0;
	for (unsigned i = 0; i < n; i++) {
		struct spool_msg m = {
			.msgid = ids[i], .sender = "s@example.org", .sender_len = 13,
			.nrcpt = 1, .rcpt = rcpt, .rcpt_len = rcpt_len,
			.body = "Subject: x\r\n\r\nhi\r\n", .body_len = 19,
		};
		cr_assert_eq(spool_append_msg(o->sh, &m, reopen_done, o), 0);
	}
	cr_assert_eq(loop_run(o->loop), 0);
	cr_assert_eq(o->pending, 0);
	cr_assert_eq(o->failed, 0);
}

Test(spool, ids_unique_across_reopen)
{
	char dir[] = "/tmp/etrnd-test-spool-XXXXXX", cmd[128];
	uint64_t first[REOPEN_IDS], next, max = 0;
	struct reopen o;

	cr_assert_not_null(mkdtemp(dir));
	/* First run: ids from the shard, then one far ahead of the clock. */
	reopen_open(&o, dir);
	for (unsigned i = 0; i + 1 < REOPEN_IDS; i++) {
		first[i] = spool_shard_new_msgid(o.sh);
		cr_expect_eq(spool_msgid_shard(first[i]), REOPEN_SHARD);
		cr_expect(i == 0 || first[i] == first[i - 1] + 1, "ids in sequence");
	}
	first[REOPEN_IDS - 1] = spool_msgid_make(REOPEN_SHARD, REOPEN_AHEAD_SEQ);
	reopen_store(&o, first, REOPEN_IDS);
	reopen_close(&o);
	for (unsigned i = 0; i < REOPEN_IDS; i++)
		max = first[i] > max ? first[i] : max;

	/* The same shard again, at once (same second, same clock): every new
	 * id is past every stored one, and a restart after storing it
	 * remembers that one too. */
	for (int round = 0; round < 2; round++) {
		reopen_open(&o, dir);
		next = spool_shard_new_msgid(o.sh);
		cr_expect_eq(spool_msgid_shard(next), REOPEN_SHARD);
		cr_expect_gt(next, max, "round %d: id %#" PRIx64 " not past the stored %#" PRIx64,
			     round, next, max);
		reopen_store(&o, &next, 1);
		reopen_close(&o);
		max = next;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

/* ---- SCHED records -------------------------------------------------------
 * One shard driven through phases, each waiting for its records to be
 * durable. Sizes place the records: A = m1 + m2; m3 does not fit in A, so B
 * = m3, two SCHEDs (for m1 and m2, live in A) and m3's DONE; m4 does not fit
 * in B, so C = m4, which seals B. B then holds nothing live and no pin: it
 * must be unlinked though its SCHEDs name live messages (a NOTE would pin
 * it to A). */

#define SCH_SEG 16384
#define SCH_SMALL 5000
#define SCH_BIG1 8000
#define SCH_BIG2 9000
#define SCH_T1 1700000000000001ull
#define SCH_T2 1700000000000002ull
#define SCH_T3 1700000000000003ull
#define SCH_T4 1700000000000004ull
#define SCH_TURNS_MAX 100000

enum sch_phase { SCH_WRITE, SCH_ERRORS, SCH_ROTATE, SCH_WAIT_UNLINK, SCH_AGAIN, SCH_END };

struct sch {
	struct loop *loop;
	struct spool_shard *sh;
	enum sch_phase ph;
	unsigned pending, failed, turns, hooked;
	uint64_t m[4];
	uint64_t seg_b;            /* B's file name */
	uint32_t seg_b_id;
	char dir[64];
	char body[SCH_BIG2];
};

static void sch_done(void *arg, int err)
{
	struct sch *t = arg;

	if (err)
		t->failed++;
	t->pending--;
}

static void sch_hook(void *arg, uint64_t msgid, const char *dom, size_t len)
{
	struct sch *t = arg;

	cr_assert_eq(msgid, t->m[3]);
	cr_assert_eq(len, 6);
	cr_assert(memcmp(dom, "y.test", 6) == 0);
	t->hooked++;
}

static void sch_msg(struct sch *t, unsigned i, const char *const *rcpt, uint32_t n,
		size_t body_len)
{
	size_t rl[2] = { strlen(rcpt[0]), n > 1 ? strlen(rcpt[1]) : 0 };
	struct spool_msg m = {
		.msgid = t->m[i] = spool_shard_new_msgid(t->sh),
		.sender = "s@example.org", .sender_len = 13,
		.nrcpt = n, .rcpt = rcpt, .rcpt_len = rl,
		.body = t->body, .body_len = body_len,
	};
	cr_assert_eq(spool_append_msg(t->sh, &m, sch_done, t), 0);
	t->pending++;
}

/* The next attempt of the queue entry (msgid, domain d). */
static uint64_t sch_next(struct spool_shard *sh, const char *d, uint64_t msgid)
{
	struct spool_index_entry e;

	cr_assert_eq(spool_index_msg_entry(spool_shard_index(sh), msgid, d, strlen(d), &e), 0,
		     "no entry in %s", d);
	return e.next_us;
}

static uint32_t sch_seg(struct sch *t, unsigned i)
{
	struct spool_index_entry e;

	cr_assert_eq(spool_index_msg_find(spool_shard_index(t->sh), t->m[i], &e), 0);
	return e.segment_id;
}

static int sch_file_exists(struct sch *t, uint64_t name)
{
	char path[160];

	snprintf(path, sizeof(path), "%s/0/%016llx.seg", t->dir, (unsigned long long)name);
	return access(path, F_OK) == 0;
}

static void sch_errors(struct sch *t)
{
	char longdom[SPOOL_SCHED_DOMAIN_MAX + 1];

	memset(longdom, 'a', sizeof(longdom));
	cr_assert_eq(spool_append_sched(t->sh, t->m[0], "z.test", 6, 1, NULL, NULL), -ENOENT);
	cr_assert_eq(spool_append_sched(t->sh, t->m[0] + 100, "x.test", 6, 1, NULL, NULL), -ENOENT);
	cr_assert_eq(spool_append_sched(t->sh, t->m[0], longdom, sizeof(longdom), 1, NULL, NULL),
		     -ENAMETOOLONG);
	cr_assert_eq(sch_next(t->sh, "x.test", t->m[0]), 0);
}

static void sch_turn(void *arg)
{
	struct sch *t = arg;
	static const char *const r_m1[] = { "a@x.test", "b@y.test" };
	static const char *const r_x[] = { "c@x.test" };
	static const char *const r_y[] = { "d@y.test" };
	struct spool_index_seg_stat st;

	cr_assert_lt(++t->turns, SCH_TURNS_MAX, "phase %d never ends", t->ph);
	if (t->pending > 0)
		return;
	cr_assert_eq(t->failed, 0);
	switch (t->ph) {
	case SCH_WRITE:
		sch_msg(t, 0, r_m1, 2, SCH_SMALL);
		sch_msg(t, 1, r_x, 1, SCH_SMALL);
		t->ph = SCH_ERRORS;
		break;
	case SCH_ERRORS:
		sch_errors(t);
		sch_msg(t, 2, r_x, 1, SCH_BIG1);
		t->ph = SCH_ROTATE;
		break;
	case SCH_ROTATE:
		cr_assert_neq(sch_seg(t, 2), sch_seg(t, 0), "m3 should open B");
		cr_assert_eq(spool_index_segment_stat(spool_shard_index(t->sh), sch_seg(t, 2), &st), 0);
		t->seg_b = st.first_seq;
		t->seg_b_id = sch_seg(t, 2);
		/* Any case; the index has it at once, before the commit. */
		cr_assert_eq(spool_append_sched(t->sh, t->m[0], "X.Test", 6, SCH_T1, sch_done, t), 0);
		cr_assert_eq(spool_append_sched(t->sh, t->m[1], "x.test", 6, SCH_T2, sch_done, t), 0);
		t->pending += 2;
		cr_assert_eq(sch_next(t->sh, "x.test", t->m[0]), SCH_T1);
		cr_assert_eq(sch_next(t->sh, "y.test", t->m[0]), 0);
		cr_assert_eq(sch_next(t->sh, "x.test", t->m[1]), SCH_T2);
		cr_assert_eq(spool_append_done(t->sh, t->m[2], 0, SPOOL_DONE_DELIVERED, sch_done, t), 0);
		t->pending++;
		spool_index_set_add_hook(spool_shard_index(t->sh), sch_hook, t);
		sch_msg(t, 3, r_y, 1, SCH_BIG2);
		t->ph = SCH_WAIT_UNLINK;
		break;
	case SCH_WAIT_UNLINK:
		cr_assert_eq(t->hooked, 1);
		cr_assert_neq(sch_seg(t, 3), t->seg_b_id, "m4 should open C");
		if (sch_file_exists(t, t->seg_b))
			break;
		/* B is gone, A stays (m1, m2 live), the index keeps the
		 * schedule. */
		cr_assert_eq(spool_index_segment_stat(spool_shard_index(t->sh), sch_seg(t, 0), &st), 0);
		cr_assert(sch_file_exists(t, st.first_seq));
		cr_assert_eq(sch_next(t->sh, "x.test", t->m[0]), SCH_T1);
		t->ph = SCH_END;
		loop_stop(t->loop);
		break;
	case SCH_AGAIN:
		cr_assert_eq(spool_append_sched(t->sh, t->m[1], "x.test", 6, SCH_T3, sch_done, t), 0);
		cr_assert_eq(spool_append_sched(t->sh, t->m[0], "y.test", 6, SCH_T4, sch_done, t), 0);
		t->pending += 2;
		t->ph = SCH_END;
		break;
	case SCH_END:
		loop_stop(t->loop);
		break;
	}
}

/* Open the shard in t->dir, run phases from ph until SCH_END, close. */
static void sch_session(struct sch *t, enum sch_phase ph, void (*check)(struct sch *))
{
	struct config cfg;
	struct loop_conf lc = { 0 };
	struct spool_shard_conf sc = { 0 };
	char err[256];

	config_defaults(&cfg);
	cfg.nlisten = 0;
	cfg.max_connections = 1;
	lc.cfg = &cfg;
	lc.ops = &no_ops;
	t->loop = loop_new(&lc, err, sizeof(err));
	cr_assert_not_null(t->loop, "%s", err);
	sc.dir = t->dir;
	sc.shard = 0;
	sc.sync = CONFIG_SYNC_BATCH;
	sc.segment_size = SCH_SEG;
	t->sh = spool_shard_open(t->loop, &sc, err, sizeof(err));
	cr_assert_not_null(t->sh, "%s", err);
	if (check)
		check(t);
	t->ph = ph;
	t->turns = 0;
	cr_assert_eq(loop_add_turn_hook(t->loop, LOOP_TURN_QUEUE, "sched test", sch_turn, t), 0);
	cr_assert_eq(loop_run(t->loop), 0);
	cr_assert_eq(t->ph, SCH_END);
	cr_assert_eq(t->pending, 0);
	cr_assert_eq(t->failed, 0);
	spool_shard_close(t->sh);
	loop_free(t->loop);
	config_free(&cfg);
}

/* After B was unlinked: its SCHEDs are gone with it (advisory: due at once
 * again), the messages are not. */
static void sch_check_lost(struct sch *t)
{
	cr_assert_eq(sch_next(t->sh, "x.test", t->m[0]), 0);
	cr_assert_eq(sch_next(t->sh, "x.test", t->m[1]), 0);
	cr_assert_eq(sch_next(t->sh, "y.test", t->m[3]), 0);
}

/* SCHEDs in a segment that stays come back, per domain. */
static void sch_check_kept(struct sch *t)
{
	cr_assert_eq(sch_next(t->sh, "x.test", t->m[1]), SCH_T3);
	cr_assert_eq(sch_next(t->sh, "y.test", t->m[0]), SCH_T4);
	cr_assert_eq(sch_next(t->sh, "x.test", t->m[0]), 0);
}

Test(spool, sched_records_advisory_and_restored)
{
	static struct sch t;
	char cmd[128];

	memset(&t, 0, sizeof(t));
	memset(t.body, 'b', sizeof(t.body));
	snprintf(t.dir, sizeof(t.dir), "/tmp/etrnd-test-spool-sched-XXXXXX");
	cr_assert_not_null(mkdtemp(t.dir));
	sch_session(&t, SCH_WRITE, NULL);
	sch_session(&t, SCH_AGAIN, sch_check_lost);
	/* The segment of T3/T4 holds nothing else: dead at this start, its
	 * SCHEDs applied and then written again, so the start after this one
	 * (and any later) still has them. */
	sch_session(&t, SCH_END, sch_check_kept);
	sch_session(&t, SCH_END, sch_check_kept);
	sch_session(&t, SCH_END, sch_check_kept);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t.dir);
	cr_assert_eq(system(cmd), 0);
}

/* ---- pipelined group commit ----------------------------------------------
 * Against real files: two batches in flight (each with its own fdatasync,
 * ended in order), an error in the second with the first fine (the first
 * is stored, the second cut off), an error in the first (both fail, the
 * file is cut back to where the first began, the next message is stored),
 * and a segment rollover between two batches (the second waits and goes
 * into a new segment). Errors are real: RLIMIT_FSIZE makes the kernel
 * refuse a write past the limit (EFBIG), as a full disk would. */

#define PL_SHARD 7u
#define PL_MAX 80u

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

/* direct: write with O_DIRECT (spool_direct.h). */
static void pl_open(struct pl *p, size_t segment_size, int direct)
{
	struct loop_conf lc = { 0 };
	struct spool_shard_conf sc = { 0 };
	char err[256];

	memset(p, 0, sizeof(*p));
	strcpy(p->dir, "/tmp/etrnd-test-pipe-XXXXXX");
	cr_assert_not_null(mkdtemp(p->dir));
	if (direct)
		skip_without_odirect(p->dir);
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
	sc.direct = direct;
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
		/* Zeros written ahead of the tail may follow the records
		 * (store/spool_prezero.h); nothing else may. */
		cr_expect(res.torn_bytes == 0 || res.zero_tail, "%s: %" PRIu64
			  " torn bytes", names[i], (uint64_t)res.torn_bytes);
		cr_expect_eq(res.bad_regions, 0);
		free(names[i]);
	}
	return n;
}

/* Every message queued was stored, its callback run in queue order. */
static void pl_expect_all_stored(const struct pl *p)
{
	for (unsigned i = 0; i < p->queued; i++) {
		cr_expect_eq(p->err[i], 0, "message %u: %d", i, p->err[i]);
		cr_expect_eq(p->order[i], i, "callback %u was message %u", i, p->order[i]);
	}
}

/* pl_read() found n records: the first n messages queued, in order. */
static void pl_expect_found(const struct pl *p, unsigned n)
{
	cr_expect_eq(p->nfound, n, "%u records on disk", p->nfound);
	for (unsigned i = 0; i < n && i < p->nfound; i++)
		cr_expect_eq(p->found[i], p->ids[i], "record %u", i);
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

	pl_open(&p, 1u << 20, 0);
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
	pl_expect_all_stored(&p);
	/* Three commits, each its own fdatasync, and one directory sync. */
	cr_expect_eq(syncs_observed(), 3 + 1, "%" PRIu64 " syncs", syncs_observed());
	cr_expect_eq(pl_read(&p), 1);
	pl_expect_found(&p, p.queued);
	pl_close(&p);
}

static void fsize_limit(rlim_t lim);

/* After the failed batches: no limit, and one more message, which the
 * shard's own turn hook commits. */
static void pl_then_one_more(struct pl *p);

/* The second batch's write fails (past RLIMIT_FSIZE: EFBIG) while the first
 * is fine: the first is stored, the second fails whole and is cut off, and
 * the next message follows the first batch. */
static void error_in_second(int direct)
{
	struct pl p;

	signal(SIGXFSZ, SIG_IGN);
	pl_open(&p, 1u << 20, direct);
	fsize_limit(64 * 1024);
	pl_queue(&p, 3, 4000);      /* about 12 KiB: fits */
	spool_shard_flush(p.sh);
	pl_queue(&p, 3, 30000);     /* about 90 KiB more: crosses 64 KiB */
	spool_shard_flush(p.sh);
	/* Direct: the second shares the first's last block, so it waits for
	 * the first's write (a later turn) and fails alone all the same. */
	cr_expect_eq(pl_overlapped(&p), direct ? 0 : 1);
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

Test(spool_pipeline, error_in_second_first_fine) { error_in_second(0); }
/* Direct: the segment is cut back into the block the first batch ended in;
 * the one more message must be staged behind the first batch's bytes, not
 * the failed batch's (spool_direct_cut). */
Test(spool_pipeline, error_in_second_first_fine_direct) { error_in_second(1); }

/* The first batch fails. Buffered: the second, written beside it, fails
 * too (the segment is cut back to where the first began), whatever its own
 * result. Direct: the second would share the first's block, so it waits
 * for the first's write and, written alone after the cut, is stored at the
 * start. Either way the one more message is stored after what survived. */
static void error_in_first(int direct)
{
	struct pl p;
	struct spool_stats st;
	unsigned failed = direct ? 2 : 4;

	signal(SIGXFSZ, SIG_IGN);
	pl_open(&p, 1u << 20, direct);
	fsize_limit(16 * 1024);
	pl_queue(&p, 2, 30000);     /* crosses 16 KiB */
	spool_shard_flush(p.sh);
	pl_queue(&p, 2, 100);
	spool_shard_flush(p.sh);
	cr_expect_eq(pl_overlapped(&p), direct ? 0 : 1);
	p.then = pl_then_one_more;
	pl_run(&p);
	for (unsigned i = 0; i < 5; i++)
		cr_expect_eq(p.err[i], i < failed ? -EFBIG : 0, "message %u: %d", i, p.err[i]);
	spool_shard_stats(p.sh, &st);
	cr_expect_eq(st.direct_commits, direct ? st.commits : 0);
	cr_expect_eq(pl_read(&p), 1);
	cr_expect_eq(p.nfound, 5 - failed, "%u records on disk", p.nfound);
	for (unsigned i = 0; i < 5 - failed && i < p.nfound; i++)
		cr_expect_eq(p.found[i], p.ids[failed + i], "record %u", i);
	pl_close(&p);
}

Test(spool_pipeline, error_in_first_fails_both) { error_in_first(0); }
Test(spool_pipeline, error_in_first_direct_second_after) { error_in_first(1); }

/* Direct: a batch queued while the last one's write is in flight waits
 * for it (both would write the block one ends and the other starts in);
 * every record is found after, in order, and the file ends on a block. */
Test(spool_pipeline, direct_shared_block_waits_for_write)
{
	struct pl p;
	struct spool_stats st;

	pl_open(&p, 1u << 20, 1);
	pl_queue(&p, 3, 4001);
	spool_shard_flush(p.sh);
	pl_queue(&p, 3, 4003);
	spool_shard_flush(p.sh);
	cr_expect_eq(pl_overlapped(&p), 0, "a batch went beside a write of its first block");
	pl_run(&p);
	pl_expect_all_stored(&p);
	spool_shard_stats(p.sh, &st);
	cr_expect_eq(st.commits, 2);
	cr_expect_eq(st.direct_commits, 2);
	cr_expect_eq(pl_read(&p), 1);
	pl_expect_found(&p, p.queued);
	pl_close(&p);
}

/* The next batch needs a new segment while one is in flight: it waits for
 * the first to end (no overlap), then goes into a new segment with its own
 * directory sync. */
Test(spool_pipeline, rollover_between_batches)
{
	struct pl p;

	pl_open(&p, 64 * 1024, 0);
	pl_queue(&p, 2, 30000);     /* about 60 KiB of a 64 KiB segment */
	spool_shard_flush(p.sh);
	pl_queue(&p, 2, 8000);      /* does not fit behind it */
	spool_shard_flush(p.sh);
	cr_expect_eq(pl_overlapped(&p), 0, "a batch for a new segment overlapped");
	pl_run(&p);
	pl_expect_all_stored(&p);
	/* Two commits, two new segments: each an fdatasync and a dir sync. */
	cr_expect_eq(syncs_observed(), 2 + 2, "%" PRIu64 " syncs", syncs_observed());
	cr_expect_eq(pl_read(&p), 2);
	pl_expect_found(&p, 4);
	pl_close(&p);
}

/* Zeros ahead of the tail (spool_prezero.h): a small commit starts a chunk
 * of zeros past the tail; a batch that would write into it while it is in
 * flight waits for it; everything is stored in order, and the segment ends
 * in zeros the reader takes for the end (recovery cuts them). */
Test(spool_pipeline, prezero_chunk_waited_for)
{
	struct pl p;
	struct spool_stats st;
	struct spool_read_result res;
	char path[512];

	pl_open(&p, 1u << 20, 0);      /* chunks of 128 KiB, 256 KiB past the tail */
	pl_queue(&p, 1, 100);
	spool_shard_flush(p.sh);
	cr_expect(spool_shard_busy(p.sh));
	/* About 300 KiB: reaches into the chunk, which is still in flight
	 * (the loop has not run). */
	pl_queue(&p, 3, 100000);
	spool_shard_flush(p.sh);
	cr_expect_eq(pl_overlapped(&p), 0, "a batch went into zeros being written");
	pl_run(&p);
	pl_expect_all_stored(&p);
	spool_shard_stats(p.sh, &st);
	cr_expect_eq(st.prezero_chunks, 1, "%" PRIu64 " chunks", st.prezero_chunks);
	cr_expect_eq(pl_read(&p), 1);
	pl_expect_found(&p, 4);
	/* The one segment: its records, then the rest of the chunk. */
	DIR *d;
	struct dirent *de;
	snprintf(path, sizeof(path), "%s/%u", p.dir, PL_SHARD);
	d = opendir(path);
	cr_assert_not_null(d);
	while ((de = readdir(d)))
		if (strstr(de->d_name, ".seg") && strlen(de->d_name) < 64)
			snprintf(path, sizeof(path), "%s/%u/%.63s", p.dir, PL_SHARD, de->d_name);
	closedir(d);
	cr_assert_eq(spool_read_segment(path, pl_record, NULL, &p, &res), 0);
	cr_expect(res.zero_tail && res.torn_bytes > 0, "no zeros after the records");
	cr_expect_eq(res.file_size % 4096, 0, "the chunk ends on a block");
	pl_close(&p);
}

/* ---- lazy DONEs (spool_append_done_lazy) ------------------------------ */

static unsigned lz_ended, lz_want;
static uint64_t lz_c0, lz_o0, lz_t0;

static void lz_done(void *arg, int err)
{
	(void)arg;
	cr_expect_eq(err, 0);
	lz_ended++;
}

static uint64_t pl_commits(struct pl *p)
{
	struct spool_stats st;

	spool_shard_stats(p->sh, &st);
	return st.commits;
}

/* Store n messages; once they are durable (inside the loop, which runs only
 * once), queue a lazy DONE for each and run step(p). */
static void lz_run(struct pl *p, unsigned n, void (*step)(struct pl *))
{
	pl_open(p, 1u << 20, 0);
	pl_queue(p, n, 100);
	lz_ended = 0;
	lz_want = n;
	p->then = step;
	pl_run(p);
	cr_expect_eq(lz_ended, lz_want, "%u of %u lazy DONEs ended", lz_ended, lz_want);
}

/* A lazy DONE for each of p->ids[from, to). */
static void lz_queue_ids(struct pl *p, unsigned from, unsigned to)
{
	for (unsigned i = from; i < to; i++)
		cr_assert_eq(spool_append_done_lazy(p->sh, p->ids[i], 0, SPOOL_DONE_DELIVERED,
						    lz_done, p), 0);
}

static void lz_queue(struct pl *p)
{
	lz_c0 = pl_commits(p);
	lz_o0 = pl_overlapped(p);
	lz_t0 = now_mono_us();
	lz_queue_ids(p, 0, lz_want);
}

static int lz_hurry;
static unsigned lz_alone; /* 1 when the lazy DONEs are to go in a commit of their own */
static int lz_late;       /* the flush came SPOOL_LAZY_US (2 ms) or more after
			     them: they were due by age then, whatever else */

/* After a flush of lazy DONEs queued from lz_t0 on: was it late? A loaded
 * machine can hold this thread that long between two calls; then waiting
 * was not the spool's choice to make, and a check of it proves nothing. */
static int lz_flushed_late(void)
{
	lz_late = now_mono_us() - lz_t0 >= 2000;
	if (lz_late)
		cr_log_warn("flush came %" PRIu64 " us after the lazy DONEs: not checked",
			    now_mono_us() - lz_t0);
	return lz_late;
}

/* Queue the lazy DONEs (hurried if lz_hurry), flush, one more MSG, flush
 * again: the MSG's commit starts beside the DONEs' only if they went alone. */
static void lz_step(struct pl *p)
{
	lz_queue(p);
	if (lz_hurry)
		spool_shard_hurry(p->sh);
	spool_shard_flush(p->sh);
	if (!lz_alone && lz_flushed_late())
		return;
	pl_queue(p, 1, 100);
	spool_shard_flush(p->sh);
	cr_expect_eq(pl_overlapped(p), lz_o0 + lz_alone,
		     "%u lazy DONEs%s: %s", lz_want, lz_hurry ? ", hurried" : "",
		     lz_alone ? "they waited" : "they started a commit of their own");
}

/* n lazy DONEs, then a MSG: one commit for all, or (alone) two. */
static void lz_case(unsigned n, int hurry, unsigned alone)
{
	struct pl p;

	lz_hurry = hurry;
	lz_alone = alone;
	lz_late = 0;
	lz_run(&p, n, lz_step);
	if (!lz_late)
		cr_expect_eq(pl_commits(&p), lz_c0 + 1 + alone, "%" PRIu64 " commits",
			     pl_commits(&p) - lz_c0);
	pl_close(&p);
}

/* A few lazy DONEs start no commit of their own: the next MSG takes them
 * along, one commit for all (eager DONEs would have started one). */
Test(spool_lazy, few_wait_for_company) { lz_case(3, 0, 0); }

/* SPOOL_LAZY_MAX (64) of them go at once, alone: the MSG after them is a
 * second commit beside the first. */
Test(spool_lazy, many_go_alone) { lz_case(64, 0, 1); }

/* Someone waits for them (spool_shard_hurry): they go at once. */
Test(spool_lazy, hurry_sends_them) { lz_case(3, 1, 1); }

/* 3 lazy DONEs hurried (a commit of their own); a second hurry finds
 * nothing queued (what was waited for is being written); then 3 more and
 * a MSG: the spent hurry must not send those 3 alone. */
static void lz_step_spent(struct pl *p)
{
	lz_c0 = pl_commits(p);
	lz_queue_ids(p, 0, 3);
	spool_shard_hurry(p->sh);
	spool_shard_flush(p->sh);
	spool_shard_hurry(p->sh);
	spool_shard_flush(p->sh);
	lz_t0 = now_mono_us();
	lz_queue_ids(p, 3, 6);
	spool_shard_flush(p->sh);
	if (lz_flushed_late())
		return;
	pl_queue(p, 1, 100);
	spool_shard_flush(p->sh);
}

/* A hurry with nothing queued is spent, not kept for the next lazy DONE:
 * two commits (the first 3; the last 3 with the MSG), not three. */
Test(spool_lazy, hurry_with_nothing_queued_is_spent)
{
	struct pl p;

	lz_late = 0;
	lz_run(&p, 6, lz_step_spent);
	if (!lz_late)
		cr_expect_eq(pl_commits(&p), lz_c0 + 2, "%" PRIu64 " commits",
			     pl_commits(&p) - lz_c0);
	pl_close(&p);
}

/* Alone and never hurried (the loop is stopping: nothing else will come)
 * they still become durable, once the oldest has waited SPOOL_LAZY_US
 * (2 ms), at a later turn (an idle loop's tick), and the loop waits for
 * them before it returns. */
Test(spool_lazy, alone_go_after_a_while)
{
	struct pl p;

	lz_run(&p, 3, lz_queue);
	cr_expect_geq(now_mono_us() - lz_t0, 2000, "written after %" PRIu64 " us",
		      now_mono_us() - lz_t0);
	cr_expect_eq(pl_commits(&p), lz_c0 + 1);
	pl_close(&p);
}
