/* SPDX-License-Identifier: MIT */
/*
 * store/spool_compact.c when a live record it is to move is damaged on
 * disk after recovery (a bit flipped by the disk, a stray write): the copy
 * is refused, never written; compaction gives the segment up for now (one
 * failure counted, the error logged with the segment's name), the damaged
 * message keeps its place in the index and its segment stays on disk, and
 * the segment's other live message is not lost: it is readable (moved or
 * where it was) and recovers. A real io_uring loop, a shard in a temporary
 * directory, a clock the test sets.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/loop.h"
#include "engine_fixture.h"
#include "log_capture.h"
#include "store/spool.h"
#include "store/spool_compact.h"
#include "store/spool_index.h"
#include "store/spool_recover.h"

#define CF_SHARD 1
#define CF_NMSG 40
#define CF_BODY 4000
#define CF_SEG_SIZE (64u * 1024)
#define CF_HOUR_US (3600ull * 1000000)
#define CF_DAMAGED 1            /* live, in the first segment: damaged */
#define CF_OTHER 2              /* live, in the first segment: intact */
#define CF_LOG_MAX (1u << 20)
#define CF_TURNS_MAX 100000

enum cf_phase { CF_WRITE, CF_DONES, CF_DAMAGE, CF_WAIT, CF_END };

struct cf {
	struct loop *loop;
	struct spool_shard *sh;
	enum cf_phase ph;
	uint64_t ids[CF_NMSG];
	unsigned queued, done, failed, want_done;
	uint64_t now;
	unsigned turns;
	struct spool_index_entry damaged;  /* where the damaged one was */
	uint64_t damaged_seq;              /* its segment's name */
	char dir[64];
	char body[CF_BODY];
};

static struct cf T;

static uint64_t cf_clock(void *arg)
{
	return ((struct cf *)arg)->now;
}

static void cf_done(void *arg, int err)
{
	struct cf *t = arg;

	t->failed += err != 0;
	t->done++;
}

static void cf_seg_path(char *out, size_t n, uint64_t seq)
{
	snprintf(out, n, "%s/%d/%016" PRIx64 ".seg", T.dir, CF_SHARD, seq);
}

/* Flip one byte in the middle of the damaged message's body, on disk. */
static void cf_damage(struct cf *t)
{
	struct spool_index *idx = spool_shard_index(t->sh);
	struct spool_index_seg_stat st;
	char path[256], b;

	cr_assert_eq(spool_index_msg_find(idx, t->ids[CF_DAMAGED], &t->damaged), 0);
	cr_assert_eq(spool_index_segment_stat(idx, t->damaged.segment_id, &st), 0);
	cr_assert(st.sealed, "the damaged message's segment is not sealed");
	t->damaged_seq = st.first_seq;
	cf_seg_path(path, sizeof(path), st.first_seq);
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0, "%s", path);
	off_t at = (off_t)(t->damaged.off + t->damaged.rec_len - CF_BODY / 2);
	cr_assert_eq(pread(fd, &b, 1, at), 1);
	b = (char)(b ^ 0x20);
	cr_assert_eq(pwrite(fd, &b, 1, at), 1);
	close(fd);
}

static void cf_turn(void *arg)
{
	struct cf *t = arg;
	struct spool_compact_stats cs;
	static const char *rcpt[] = { "u@d.test" };
	static const size_t rcpt_len[] = { 8 };

	cr_assert_lt(++t->turns, CF_TURNS_MAX, "phase %d never ends", t->ph);
	switch (t->ph) {
	case CF_WRITE:
		for (; t->queued < CF_NMSG; t->queued++) {
			struct spool_msg m = {
				.msgid = t->ids[t->queued] = spool_shard_new_msgid(t->sh),
				.sender = "s@example.org", .sender_len = 13,
				.nrcpt = 1, .rcpt = rcpt, .rcpt_len = rcpt_len,
				.body = t->body, .body_len = CF_BODY,
			};
			cr_assert_eq(spool_append_msg(t->sh, &m, cf_done, t), 0);
			t->want_done++;
		}
		t->ph = CF_DONES;
		break;
	case CF_DONES:
		if (t->done < t->want_done)
			break;
		for (unsigned i = 0; i < CF_NMSG; i++) {
			if (i == CF_DAMAGED || i == CF_OTHER)
				continue;
			cr_assert_eq(spool_append_done(t->sh, t->ids[i], 0, SPOOL_DONE_DELIVERED,
						       cf_done, t), 0);
			t->want_done++;
		}
		t->ph = CF_DAMAGE;
		break;
	case CF_DAMAGE:
		if (t->done < t->want_done)
			break;
		/* Young: nothing compacted yet. */
		spool_compact_stats(spool_shard_compact(t->sh), &cs);
		cr_assert_eq(cs.active, 0);
		cf_damage(t);
		t->now += 2 * CF_HOUR_US;
		t->ph = CF_WAIT;
		break;
	case CF_WAIT:
		spool_compact_stats(spool_shard_compact(t->sh), &cs);
		if (cs.failures > 0 && !cs.active && cs.inflight == 0) {
			t->ph = CF_END;
			loop_stop(t->loop);
		}
		break;
	case CF_END:
		break;
	}
	spool_shard_flush(t->sh);
}

/* The message's record, read back from where the index says it is: its
 * body must be the one written. */
static void cf_check_readable(struct spool_index *idx, uint64_t id, const char *dir)
{
	struct spool_index_entry e;
	struct spool_index_seg_stat st;
	char path[256];

	cr_assert_eq(spool_index_msg_find(idx, id, &e), 0, "message lost");
	cr_assert_eq(spool_index_segment_stat(idx, e.segment_id, &st), 0);
	snprintf(path, sizeof(path), "%s/%d/%016" PRIx64 ".seg", dir, CF_SHARD, st.first_seq);
	char *rec = malloc(e.rec_len);
	cr_assert_not_null(rec);
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0, "%s", path);
	cr_assert_eq(pread(fd, rec, e.rec_len, (off_t)e.off), (ssize_t)e.rec_len);
	close(fd);
	cr_expect_eq(memcmp(rec + e.rec_len - CF_BODY, T.body, CF_BODY), 0, "body differs");
	free(rec);
}

Test(spool_compact_fail, damaged_record_is_not_copied, .timeout = 110)
{
	struct loop_conf lc = { 0 };
	struct spool_shard_conf sc = { 0 };
	struct spool_compact_stats cs;
	struct log_capture cap;
	struct config cfg;
	char err[256], want[256], cmd[128], path[256];

	memset(&T, 0, sizeof(T));
	snprintf(T.dir, sizeof(T.dir), "/tmp/etrnd-test-compact-fail-XXXXXX");
	cr_assert_not_null(mkdtemp(T.dir));
	for (size_t k = 0; k < CF_BODY; k++)
		T.body[k] = (char)('a' + k % 26);
	T.now = (uint64_t)time(NULL) * 1000000u;

	config_defaults(&cfg);
	cfg.nlisten = 0;
	cfg.max_connections = 1;
	lc.cfg = &cfg;
	lc.ops = engine_fixture_no_ops();
	T.loop = loop_new(&lc, err, sizeof(err));
	cr_assert_not_null(T.loop, "%s", err);
	sc.dir = T.dir;
	sc.shard = CF_SHARD;
	sc.sync = CONFIG_SYNC_BATCH;
	sc.segment_size = CF_SEG_SIZE;
	sc.compact_threshold = 50;
	sc.compact_min_age_us = CF_HOUR_US;
	sc.clock = cf_clock;
	sc.clock_arg = &T;
	T.sh = spool_shard_open(T.loop, &sc, err, sizeof(err));
	cr_assert_not_null(T.sh, "%s", err);
	cr_assert_eq(loop_add_turn_hook(T.loop, LOOP_TURN_QUEUE, "test driver", cf_turn, &T), 0);

	cr_assert_eq(log_capture_start(&cap), 0);
	int rc = loop_run(T.loop);
	cr_assert_eq(log_capture_stop(&cap, CF_LOG_MAX), 0);
	cr_assert_eq(rc, 0);
	cr_assert_eq(T.ph, CF_END);
	cr_assert_eq(T.failed, 0);

	spool_compact_stats(spool_shard_compact(T.sh), &cs);
	cr_expect_eq(cs.failures, 1);
	snprintf(want, sizeof(want), "spool shard %d: compacting segment %016" PRIx64
		 ".seg: record damaged on disk: Invalid argument (retried later)",
		 CF_SHARD, T.damaged_seq);
	cr_expect_not_null(strstr(cap.text, want), "no \"%s\" in:\n%s", want, cap.text);

	/* The damaged message where it was; its segment still there. */
	struct spool_index *idx = spool_shard_index(T.sh);
	struct spool_index_entry e;
	cr_assert_eq(spool_index_msg_find(idx, T.ids[CF_DAMAGED], &e), 0);
	cr_expect_eq(e.segment_id, T.damaged.segment_id);
	cr_expect_eq(e.off, T.damaged.off);
	cf_seg_path(path, sizeof(path), T.damaged_seq);
	cr_expect_eq(access(path, F_OK), 0, "%s unlinked with a live message in it", path);
	/* The intact one: readable wherever it is now. */
	cf_check_readable(idx, T.ids[CF_OTHER], T.dir);

	spool_shard_close(T.sh);
	loop_free(T.loop);
	config_free(&cfg);
	log_capture_free(&cap);

	/* A restart: the intact message is queued and readable; the damaged
	 * record is a bad region (the damage's, not compaction's). */
	struct spool_recover_result res;
	idx = spool_index_new();
	cr_assert_not_null(idx);
	snprintf(path, sizeof(path), "%s/%d", T.dir, CF_SHARD);
	cr_assert_eq(spool_recover_shard(path, idx, &res, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(res.bad_regions, 1);
	cf_check_readable(idx, T.ids[CF_OTHER], T.dir);
	cr_expect_eq(spool_index_msg_find(idx, T.ids[CF_DAMAGED], &e), -ENOENT);
	spool_recover_result_free(&res);
	spool_index_free(idx);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", T.dir);
	cr_assert_eq(system(cmd), 0);
}
