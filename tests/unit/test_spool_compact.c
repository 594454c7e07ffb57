/* SPDX-License-Identifier: MIT */
/*
 * Tests for store/spool_compact.c driven by a real io_uring loop on a
 * temporary directory, with a clock the test sets: mostly dead segments are
 * left alone while young, compacted once old, their live messages readable
 * byte for byte at their new place, and recovery of the directory gives
 * exactly the live set with every recipient's state. Crashes are simulated
 * by copying the shard directory at every loop turn during compaction: each
 * copy must recover to the same live set, and a shard started on one (stale
 * copies, old segments left behind) must finish the job and, once every
 * message is delivered, recover to an empty spool: nothing comes back.
 * Some live messages carry a SCHED (the scheduler's next attempt) written
 * when they were stored: every image recovers it, so compaction must carry
 * it to the copy.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/loop.h"
#include "store/spool.h"
#include "store/spool_compact.h"
#include "store/spool_index.h"
#include "store/spool_recover.h"
#include "store/spool_rec.h"

#define NMSG 400
#define NRCPT_MAX 3
#define SHARD 2
#define SEG_SIZE (1u << 20)
#define HOUR_US (3600ull * 1000000)
#define MAX_SEGS 64
#define MAX_SNAPS 1000
#define SNAP_EARLY 3                    /* this one is kept as well */
#define RUN_LIMIT_S 60

enum phase { PH_WRITE, PH_MARK, PH_YOUNG, PH_COMPACT, PH_FINISH, PH_END };

struct t {
	struct loop *loop;
	struct spool_shard *sh;
	enum phase ph;
	unsigned queued, done, failed, want_done;
	uint64_t now;                   /* the test's clock */
	unsigned young_turns;
	unsigned sched_next;            /* next message to give its SCHED */
	uint64_t sealed[MAX_SEGS];      /* segment names when compaction began */
	unsigned nsealed;
	char dir[96];
	char snapdir[64];
	unsigned nsnaps, snap_resume, snap_mid, snap_early;
	int snap_fail;
	time_t started;
	int resumed;                    /* a shard started on a crash image */
};

/* What every message should look like. */
static uint64_t ids[NMSG];
static char *bodies[NMSG];
static size_t body_len[NMSG];
static uint32_t nrcpt[NMSG];
static uint8_t want_st[NMSG][NRCPT_MAX];   /* 0 pending, else status */
static char *orig_rec[NMSG];               /* live records before compaction */
static uint32_t orig_len[NMSG];

static const char *rcpt_s[NRCPT_MAX] = { "u0@d0.test", "u1@d1.test", "u2@d2.test" };
static const size_t rcpt_l[NRCPT_MAX] = { 10, 10, 10 };

static uint64_t test_clock(void *arg)
{
	return ((struct t *)arg)->now;
}

static void *no_open(void *a, struct conn *c, const char *p) { (void)a; (void)c; (void)p; return NULL; }
static size_t no_data(void *a, struct conn *c, void *s, const char *p, size_t n) { (void)a; (void)c; (void)s; (void)p; return n; }
static void no_cb(void *a, struct conn *c, void *s) { (void)a; (void)c; (void)s; }
static const struct conn_ops no_ops = {
	.open = no_open, .data = no_data, .timeout = no_cb, .shutdown = no_cb, .close = no_cb,
};

static int is_live(unsigned i)
{
	for (uint32_t r = 0; r < nrcpt[i]; r++)
		if (!want_st[i][r])
			return 1;
	return 0;
}

/* Some live messages carry a NOTE (delay warned) from before compaction:
 * the copies must carry it, or a restart would warn their senders again. */
static int want_note(unsigned i)
{
	return i % 16 == 0;
}

/* Some messages were stored held (quarantine), and some of those released
 * before compaction: a copy keeps the MSG's held bit, so it must carry
 * the release too, or a restart would quarantine the message again. */
static int want_held(unsigned i)
{
	return i % 8 == 0 && (i / 8) % 3 != 0; /* live ones (is_live) */
}

static int want_released(unsigned i)
{
	return want_held(i) && (i / 8) % 3 == 2;
}

/* Some live messages were deferred by the scheduler for the domain of
 * their last recipient (never done): a SCHED right after their MSG. */
#define SCHED_BASE_US 1700000000000000ull
static int want_sched(unsigned i)
{
	return i % 16 == 8;
}

static const char *sched_dom(unsigned i)
{
	return strchr(rcpt_s[nrcpt[i] - 1], '@') + 1;
}

/* The next attempt every queue entry of idx must have. */
static void check_sched(struct spool_index *idx, const char *what)
{
	for (uint32_t d = 0; d < NRCPT_MAX; d++) {
		const char *dom = strchr(rcpt_s[d], '@') + 1;
		const struct spool_index_queue *q = spool_index_queue(idx, dom, strlen(dom));
		struct spool_index_iter it;
		struct spool_index_entry e;

		spool_index_queue_iter(q, &it);
		while (spool_index_queue_next(&it, &e)) {
			/* ids increase (segment names take sequences too). */
			unsigned lo = 0, hi = NMSG, i;
			uint64_t want = 0;

			while (hi - lo > 1) {
				unsigned mid = lo + (hi - lo) / 2;
				if (ids[mid] <= e.msgid)
					lo = mid;
				else
					hi = mid;
			}
			i = lo;
			cr_assert_eq(ids[i], e.msgid, "%s: unknown message", what);
			if (want_sched(i) && strcmp(dom, sched_dom(i)) == 0)
				want = SCHED_BASE_US + i;
			cr_assert_eq(e.next_us, want, "%s: message %u in %s: next %" PRIu64
				     ", want %" PRIu64, what, i, dom, e.next_us, want);
		}
	}
}

static void on_done(void *arg, int err)
{
	struct t *t = arg;

	if (err)
		t->failed++;
	t->done++;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Segment names in dir/SHARD, sorted. */
static unsigned list_segs(const char *root, uint64_t *out, unsigned max)
{
	char path[256];
	struct dirent *de;
	unsigned n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%d", root, SHARD);
	d = opendir(path);
	if (!d)
		return 0;
	while ((de = readdir(d)) && n < max) {
		uint64_t v;
		char tail[8];
		if (sscanf(de->d_name, "%16" SCNx64 "%7s", &v, tail) == 2 &&
		    !strcmp(tail, ".seg"))
			out[n++] = v;
	}
	closedir(d);
	qsort(out, n, sizeof(*out), cmp_u64);
	return n;
}

static int seg_exists(const char *root, uint64_t name)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%d/%016" PRIx64 ".seg", root, SHARD, name);
	return access(path, F_OK) == 0;
}

/* Copy the shard directory as a crash would leave it. */
static void snapshot(const char *root, const char *to)
{
	char src[256], dst[256], buf[65536];
	struct dirent *de;
	DIR *d;

	snprintf(dst, sizeof(dst), "%s", to);
	mkdir(dst, 0750);
	snprintf(dst, sizeof(dst), "%s/%d", to, SHARD);
	mkdir(dst, 0750);
	snprintf(src, sizeof(src), "%s/%d", root, SHARD);
	d = opendir(src);
	cr_assert_not_null(d);
	while ((de = readdir(d))) {
		char a[512], b[512];
		int in, out;
		ssize_t n;

		if (!strstr(de->d_name, ".seg"))
			continue;
		snprintf(a, sizeof(a), "%s/%s", src, de->d_name);
		snprintf(b, sizeof(b), "%s/%s", dst, de->d_name);
		in = open(a, O_RDONLY);
		if (in < 0)
			continue; /* unlinked meanwhile */
		out = open(b, O_WRONLY | O_CREAT | O_TRUNC, 0640);
		cr_assert_geq(out, 0);
		while ((n = read(in, buf, sizeof(buf))) > 0)
			cr_assert_eq(write(out, buf, (size_t)n), n);
		close(in);
		close(out);
	}
	closedir(d);
}

static void rm_tree(const char *root)
{
	char path[256], f[512];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%d", root, SHARD);
	d = opendir(path);
	if (d) {
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(f, sizeof(f), "%s/%s", path, de->d_name);
			unlink(f);
		}
		closedir(d);
		rmdir(path);
	}
	rmdir(root);
}

/* Recover root into a fresh index: exactly the live set, every recipient
 * in its state. Returns the number of live messages found. */
static uint64_t check_recover(const char *root, const char *what)
{
	struct spool_index *idx = spool_index_new();
	struct spool_recover_result res;
	struct spool_index_totals tot;
	char path[256], err[256];
	uint64_t live = 0;

	snprintf(path, sizeof(path), "%s/%d", root, SHARD);
	cr_assert_eq(spool_recover_shard(path, idx, &res, err, sizeof(err)), 0, "%s: %s", what, err);
	for (unsigned i = 0; i < NMSG; i++) {
		struct spool_index_entry e;
		uint32_t rc[NRCPT_MAX];
		uint8_t st[NRCPT_MAX];
		int n;

		if (!is_live(i)) {
			cr_assert_eq(spool_index_msg_find(idx, ids[i], &e), -ENOENT,
				     "%s: message %u came back", what, i);
			continue;
		}
		live++;
		cr_assert_eq(spool_index_msg_find(idx, ids[i], &e), 0, "%s: message %u lost", what, i);
		cr_assert_eq(spool_index_msg_noted(idx, ids[i], SPOOL_NOTE_DELAY_WARNED), want_note(i),
			     "%s: message %u delay-warned flag", what, i);
		cr_assert_eq(e.held, want_held(i) && !want_released(i),
			     "%s: message %u held mark", what, i);
		n = spool_index_msg_done(idx, ids[i], rc, st, NRCPT_MAX);
		for (uint32_t r = 0, k = 0; r < nrcpt[i]; r++) {
			if (!want_st[i][r])
				continue;
			cr_assert_lt((int)k, n, "%s: message %u recipient %u pending again", what, i, r);
			cr_assert_eq(rc[k], r, "%s: message %u recipient %u", what, i, r);
			cr_assert_eq(st[k], want_st[i][r], "%s: message %u recipient %u status", what, i, r);
			k++;
		}
	}
	spool_index_totals(idx, &tot);
	cr_assert_eq(tot.messages, live, "%s: %" PRIu64 " messages indexed, want %" PRIu64,
		     what, tot.messages, live);
	check_sched(idx, what);
	spool_recover_result_free(&res);
	spool_index_free(idx);
	return live;
}

static uint64_t count_live(void)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < NMSG; i++)
		n += (uint64_t)is_live(i);
	return n;
}

/* Queue DONEs for every recipient the expected state calls done but the
 * index still has pending. */
static void queue_dones(struct t *t)
{
	struct spool_index *idx = spool_shard_index(t->sh);

	for (unsigned i = 0; i < NMSG; i++) {
		uint32_t pend[NRCPT_MAX];
		int n = spool_index_msg_pending(idx, ids[i], pend, NRCPT_MAX);

		for (int k = 0; k < n; k++) {
			uint8_t st = want_st[i][pend[k]];
			if (!st)
				continue;
			cr_assert_eq(spool_append_done(t->sh, ids[i], pend[k],
						       (enum spool_done_status)st, on_done, t), 0);
			t->want_done++;
		}
	}
}

static void save_originals(struct t *t)
{
	struct spool_index *idx = spool_shard_index(t->sh);

	for (unsigned i = 0; i < NMSG; i++) {
		struct spool_index_entry e;
		struct spool_index_seg_stat st;
		char path[256];
		int fd;

		free(orig_rec[i]);
		orig_rec[i] = NULL;
		if (spool_index_msg_find(idx, ids[i], &e))
			continue;
		cr_assert_eq(spool_index_segment_stat(idx, e.segment_id, &st), 0);
		snprintf(path, sizeof(path), "%s/%d/%016" PRIx64 ".seg", t->dir, SHARD, st.first_seq);
		fd = open(path, O_RDONLY);
		cr_assert_geq(fd, 0);
		orig_rec[i] = malloc(e.rec_len);
		orig_len[i] = e.rec_len;
		cr_assert_eq(pread(fd, orig_rec[i], e.rec_len, (off_t)e.off), (ssize_t)e.rec_len);
		close(fd);
	}
}

/* Every live message is where the index says, byte for byte as before. */
static void check_places(struct t *t)
{
	struct spool_index *idx = spool_shard_index(t->sh);

	for (unsigned i = 0; i < NMSG; i++) {
		struct spool_index_entry e;
		struct spool_index_seg_stat st;
		char path[256], *buf;
		int fd;

		if (!is_live(i))
			continue;
		cr_assert_eq(spool_index_msg_find(idx, ids[i], &e), 0);
		cr_assert_eq(e.rec_len, orig_len[i]);
		cr_assert_eq(spool_index_segment_stat(idx, e.segment_id, &st), 0);
		snprintf(path, sizeof(path), "%s/%d/%016" PRIx64 ".seg", t->dir, SHARD, st.first_seq);
		fd = open(path, O_RDONLY);
		cr_assert_geq(fd, 0, "message %u: %s missing", i, path);
		buf = malloc(e.rec_len);
		cr_assert_eq(pread(fd, buf, e.rec_len, (off_t)e.off), (ssize_t)e.rec_len);
		cr_assert(memcmp(buf, orig_rec[i], e.rec_len) == 0, "message %u differs", i);
		free(buf);
		close(fd);
	}
}

static int old_gone(struct t *t)
{
	for (unsigned k = 0; k < t->nsealed; k++)
		if (seg_exists(t->dir, t->sealed[k]))
			return 0;
	return 1;
}

/* A SCHED for each stored message that wants one, as soon as it is stored
 * (so most land in segments compaction empties, not in the head). */
static void write_scheds(struct t *t)
{
	struct spool_index *idx = spool_shard_index(t->sh);
	struct spool_index_entry e;

	while (t->sched_next < t->queued &&
	       spool_index_msg_find(idx, ids[t->sched_next], &e) == 0) {
		unsigned i = t->sched_next++;
		const char *d = sched_dom(i);

		if (want_sched(i))
			cr_assert_eq(spool_append_sched(t->sh, ids[i], d, strlen(d),
							SCHED_BASE_US + i, NULL, NULL), 0);
	}
}

static void turn(void *arg)
{
	struct t *t = arg;
	struct spool_compact_stats cs;

	cr_assert_lt(time(NULL) - t->started, RUN_LIMIT_S, "phase %d takes too long", t->ph);
	switch (t->ph) {
	case PH_WRITE:
		write_scheds(t);
		for (unsigned k = 0; k < 50 && t->queued < NMSG; k++) {
			unsigned i = t->queued++;
			struct spool_msg m = {
				.msgid = ids[i] = spool_shard_new_msgid(t->sh),
				.sender = "s@example.org", .sender_len = 13,
				.nrcpt = nrcpt[i], .rcpt = rcpt_s, .rcpt_len = rcpt_l,
				.body = bodies[i], .body_len = body_len[i],
				.flags = want_held(i) ? SPOOL_MSG_HELD : 0,
			};
			cr_assert_eq(spool_append_msg(t->sh, &m, on_done, t), 0);
			t->want_done++;
		}
		if (t->done == NMSG) {
			write_scheds(t);
			cr_assert_eq(t->sched_next, NMSG);
			queue_dones(t);
			for (unsigned i = 0; i < NMSG; i++) {
				if (!want_note(i))
					continue;
				cr_assert_eq(spool_append_note(t->sh, ids[i], SPOOL_NOTE_DELAY_WARNED,
							       on_done, t), 0);
				t->want_done++;
			}
			for (unsigned i = 0; i < NMSG; i++) {
				if (!want_released(i) || !is_live(i))
					continue;
				cr_assert_eq(spool_append_note(t->sh, ids[i], SPOOL_NOTE_RELEASED,
							       on_done, t), 0);
				t->want_done++;
			}
			t->ph = PH_MARK;
		}
		break;
	case PH_MARK:
		if (t->done == t->want_done) {
			save_originals(t);
			t->ph = PH_YOUNG;
		}
		break;
	case PH_YOUNG:
		/* Mostly dead but young: left alone (the clock stands still). */
		spool_compact_stats(spool_shard_compact(t->sh), &cs);
		cr_assert_eq(cs.active, 0, "compacting a young segment");
		cr_assert_eq(cs.messages, 0);
		if (++t->young_turns == 3) {
			uint64_t segs[MAX_SEGS];
			unsigned n = list_segs(t->dir, segs, MAX_SEGS);
			cr_assert_geq(n, 3, "only %u segments", n);
			/* All but the one being written are sealed. */
			memcpy(t->sealed, segs, (n - 1) * sizeof(segs[0]));
			t->nsealed = n - 1;
			t->now += 2 * HOUR_US;
			t->ph = PH_COMPACT;
		}
		break;
	case PH_COMPACT: {
		char snap[128];

		spool_compact_stats(spool_shard_compact(t->sh), &cs);
		if (t->nsnaps < MAX_SNAPS) {
			int keep = 0;

			snprintf(snap, sizeof(snap), "%s/%u", t->snapdir, t->nsnaps);
			snapshot(t->dir, snap);
			/* Every crash image recovers to the same live set. */
			cr_assert_eq(check_recover(snap, snap), count_live());
			/* Keep for a restart: a copy durable while its old
			 * segment is still there; one in the middle of the
			 * work; an early one. */
			if (!t->snap_resume && cs.messages > 0 && seg_exists(snap, t->sealed[0]))
				keep = t->snap_resume = t->nsnaps + 1;
			else if (!t->snap_mid && cs.segments >= 1 && cs.active)
				keep = t->snap_mid = t->nsnaps + 1;
			else if (t->nsnaps == SNAP_EARLY)
				keep = t->snap_early = t->nsnaps + 1;
			if (!keep)
				rm_tree(snap);
			t->nsnaps++;
		}
		if (!cs.active && cs.inflight == 0 && old_gone(t)) {
			t->ph = PH_END;
			loop_stop(t->loop);
		}
		break;
	}
	case PH_FINISH:
		spool_compact_stats(spool_shard_compact(t->sh), &cs);
		if (!cs.active && cs.inflight == 0 && old_gone(t) && t->done == t->want_done) {
			t->ph = PH_END;
			loop_stop(t->loop);
		}
		break;
	case PH_END:
		break;
	}
	spool_shard_flush(t->sh);
}

static void setup_bodies(void)
{
	srand(7);
	for (unsigned i = 0; i < NMSG; i++) {
		size_t n = 6000 + (size_t)(rand() % 3000);
		free(bodies[i]);
		bodies[i] = malloc(n);
		for (size_t k = 0; k < n; k++)
			bodies[i][k] = (char)('a' + (k * 7 + i) % 26);
		body_len[i] = n;
		nrcpt[i] = 1 + i % NRCPT_MAX;
		for (uint32_t r = 0; r < NRCPT_MAX; r++)
			want_st[i][r] = 0;
		if (i % 8 == 0) {
			/* Live; with more than one recipient, one is bounced
			 * already (its DONE must follow the copy). */
			if (nrcpt[i] > 1)
				want_st[i][0] = SPOOL_DONE_BOUNCED;
		} else {
			for (uint32_t r = 0; r < nrcpt[i]; r++)
				want_st[i][r] = (uint8_t)(1 + (i + r) % 3);
		}
	}
}

static void open_shard(struct t *t, struct loop **l, struct config *cfg)
{
	struct loop_conf lc = { 0 };
	struct spool_shard_conf sc = { 0 };
	char err[256];

	config_defaults(cfg);
	cfg->nlisten = 0;
	cfg->max_connections = 4;
	lc.cfg = cfg;
	lc.ops = &no_ops;
	*l = loop_new(&lc, err, sizeof(err));
	cr_assert_not_null(*l, "%s", err);
	sc.dir = t->dir;
	sc.shard = SHARD;
	sc.sync = CONFIG_SYNC_BATCH;
	sc.segment_size = SEG_SIZE;
	sc.compact_threshold = 25;
	sc.compact_min_age_us = HOUR_US;
	sc.clock = test_clock;
	sc.clock_arg = t;
	t->loop = *l;
	t->sh = spool_shard_open(*l, &sc, err, sizeof(err));
	cr_assert_not_null(t->sh, "%s", err);
	/* The shard registered its commit, compaction and busy check. */
	cr_assert_eq(loop_add_turn_hook(*l, LOOP_TURN_QUEUE, "test driver", turn, t), 0);
	t->started = time(NULL);
}

static void close_shard(struct t *t, struct loop *l, struct config *cfg)
{
	spool_shard_close(t->sh);
	loop_free(l);
	config_free(cfg);
	t->sh = NULL;
}

/* Start a shard on crash image snap: it must re-copy what the interrupted
 * compaction left, finish, and once every message is delivered nothing may
 * come back at the next start. */
static void resume_from(struct t *t0, unsigned snap)
{
	static struct t t;
	struct config cfg;
	struct loop *l;
	char what[128];

	memset(&t, 0, sizeof(t));
	snprintf(t.dir, sizeof(t.dir), "%s/%u", t0->snapdir, snap);
	snprintf(what, sizeof(what), "crash image %u", snap);
	cr_assert_eq(check_recover(t.dir, what), count_live());
	memcpy(t.sealed, t0->sealed, sizeof(t.sealed));
	t.nsealed = t0->nsealed;
	t.now = t0->now;
	open_shard(&t, &l, &cfg);
	t.ph = PH_FINISH;
	cr_assert_eq(loop_run(l), 0);
	cr_assert_eq(t.failed, 0);
	check_places(&t);
	close_shard(&t, l, &cfg);
	snprintf(what, sizeof(what), "crash image %u, compaction finished", snap);
	cr_assert_eq(check_recover(t.dir, what), count_live());

	/* Deliver everything, then start again: an empty spool. */
	for (unsigned i = 0; i < NMSG; i++)
		for (uint32_t r = 0; r < nrcpt[i]; r++)
			if (!want_st[i][r])
				want_st[i][r] = SPOOL_DONE_DELIVERED;
	open_shard(&t, &l, &cfg);
	queue_dones(&t);
	t.ph = PH_FINISH;
	cr_assert_eq(loop_run(l), 0);
	cr_assert_eq(t.failed, 0);
	close_shard(&t, l, &cfg);
	snprintf(what, sizeof(what), "crash image %u, all delivered", snap);
	cr_assert_eq(check_recover(t.dir, what), 0);
	setup_bodies(); /* the expected state again (bodies are the same) */
}

Test(spool_compact, old_mostly_dead_segments_move_and_go, .timeout = 110)
{
	static struct t t;
	struct spool_compact_stats cs;
	struct config cfg;
	struct loop *l;
	char snaps[] = "/tmp/etrnd-test-compact-snap-XXXXXX";
	char dir[] = "/tmp/etrnd-test-compact-XXXXXX";
	uint64_t live;

	memset(&t, 0, sizeof(t));
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_not_null(mkdtemp(snaps));
	snprintf(t.dir, sizeof(t.dir), "%s", dir);
	snprintf(t.snapdir, sizeof(t.snapdir), "%s", snaps);
	setup_bodies();
	t.now = (uint64_t)time(NULL) * 1000000u;
	open_shard(&t, &l, &cfg);
	cr_assert_eq(loop_run(l), 0);
	cr_assert_eq(t.failed, 0);
	cr_assert_eq(t.ph, PH_END);

	spool_compact_stats(spool_shard_compact(t.sh), &cs);
	cr_expect_geq(cs.segments, t.nsealed, "compacted %" PRIu64 " of %u", cs.segments, t.nsealed);
	live = count_live();
	/* Each live message moved at least once (a copy lands in the head
	 * segment, which may in turn be compacted once sealed). */
	cr_expect_geq(cs.messages, live, "moved %" PRIu64 ", live %" PRIu64, cs.messages, live);
	cr_expect_eq(cs.failures, 0);
	for (unsigned k = 0; k < t.nsealed; k++)
		cr_expect(!seg_exists(t.dir, t.sealed[k]), "segment %016" PRIx64 " left", t.sealed[k]);
	check_places(&t);
	close_shard(&t, l, &cfg);
	cr_assert_eq(check_recover(t.dir, "after compaction"), live);

	cr_assert_gt(t.nsnaps, SNAP_EARLY);
	/* Restart on some: finish, deliver all, nothing comes back. */
	cr_assert_gt(t.snap_resume, 0, "no image with copies durable before the unlink");
	resume_from(&t, t.snap_resume - 1);
	if (t.snap_mid)
		resume_from(&t, t.snap_mid - 1);
	if (t.snap_early)
		resume_from(&t, t.snap_early - 1);

	for (unsigned s = 0; s < t.nsnaps; s++) {
		char p[128];
		snprintf(p, sizeof(p), "%s/%u", t.snapdir, s);
		rm_tree(p);
	}
	rmdir(t.snapdir);
	rm_tree(t.dir);
	for (unsigned i = 0; i < NMSG; i++) {
		free(bodies[i]);
		free(orig_rec[i]);
	}
}
