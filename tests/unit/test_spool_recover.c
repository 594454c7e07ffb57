/* SPDX-License-Identifier: MIT */
/*
 * Tests for store/spool_recover.c on crafted shard directories: a clean spool
 * rebuilds the exact index, a torn tail cut at every byte of the last record
 * is truncated to the right size, a flipped bit in a middle record costs that
 * record only, empty and zero-filled segments, DONEs, fully dead segments in
 * a safe unlink order, duplicates across segments, stray files, NOTE records
 * (the delay-warned flag) applied, SCHED records (a queue entry's next
 * attempt: last one wins, ignored once its message or domain is done, never
 * keeping a segment).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/spool_recover.h"

#define T_RCPT_MAX 8
#define T_REC_MAX 4096

struct img {
	char *buf;
	size_t len, cap;
	size_t nrec;
	size_t off[T_REC_MAX];
};

static void img_put(struct img *im, const void *p, size_t n)
{
	if (im->len + n > im->cap) {
		size_t cap = im->cap ? im->cap : 4096;
		while (cap < im->len + n)
			cap *= 2;
		im->buf = realloc(im->buf, cap);
		cr_assert_not_null(im->buf);
		im->cap = cap;
	}
	memcpy(im->buf + im->len, p, n);
	im->len += n;
}

/* A MSG with the given recipients (NULL-terminated), a body of body_len
 * bytes and the header flags (SPOOL_MSG_*). */
static void img_msg_f(struct img *im, uint64_t id, const char *const *rcpt,
		size_t body_len, uint16_t flags)
{
	size_t rl[T_RCPT_MAX];
	uint32_t n = 0;
	const char *sender = "s@sender.example";
	char *body = malloc(body_len + 1);

	cr_assert_not_null(body);
	for (size_t i = 0; i < body_len; i++)
		body[i] = (char)('a' + (id + i) % 26);
	while (rcpt[n] != NULL) {
		rl[n] = strlen(rcpt[n]);
		n++;
	}
	size_t head = spool_rec_msg_head_size(strlen(sender), n, rl);
	char *h = malloc(head);
	cr_assert_not_null(h);
	cr_assert_eq(spool_rec_encode_msg_head(h, id, 1000 + id, flags, sender,
			strlen(sender), n, rcpt, rl, body, body_len), head);
	cr_assert_lt(im->nrec, T_REC_MAX);
	im->off[im->nrec++] = im->len;
	img_put(im, h, head);
	img_put(im, body, body_len);
	free(h);
	free(body);
}

static void img_msg(struct img *im, uint64_t id, const char *const *rcpt,
		size_t body_len)
{
	img_msg_f(im, id, rcpt, body_len, 0);
}

static void img_done(struct img *im, uint64_t id, uint32_t rcpt)
{
	char d[SPOOL_REC_HDR_SIZE + SPOOL_DONE_PAYLOAD_SIZE];
	spool_rec_encode_done(d, id, 5000 + id, rcpt, SPOOL_DONE_DELIVERED);
	im->off[im->nrec++] = im->len;
	img_put(im, d, sizeof d);
}

static void img_note_k(struct img *im, uint64_t id, enum spool_note_kind k)
{
	char d[SPOOL_REC_HDR_SIZE + SPOOL_NOTE_PAYLOAD_SIZE];
	spool_rec_encode_note(d, id, 6000 + id, k);
	im->off[im->nrec++] = im->len;
	img_put(im, d, sizeof d);
}

static void img_note(struct img *im, uint64_t id)
{
	img_note_k(im, id, SPOOL_NOTE_DELAY_WARNED);
}

static void img_sched(struct img *im, uint64_t id, const char *dom,
		uint64_t next_us)
{
	char d[SPOOL_SCHED_REC_MAX];
	size_t n = spool_rec_encode_sched(d, id, 7000 + id, dom, strlen(dom),
			next_us);
	cr_assert_lt(im->nrec, T_REC_MAX);
	im->off[im->nrec++] = im->len;
	img_put(im, d, n);
}

static char t_dir[256];

static void mkdir_tmp(void)
{
	snprintf(t_dir, sizeof t_dir, "/tmp/test_spool_recover.XXXXXX");
	cr_assert_not_null(mkdtemp(t_dir));
}

static void rm_tmp(void)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", t_dir);
	cr_assert_eq(system(cmd), 0);
}

static void seg_path(char *out, size_t n, uint64_t first)
{
	snprintf(out, n, "%s/%016" PRIx64 ".seg", t_dir, first);
}

static void write_seg(uint64_t first, const char *p, size_t n)
{
	char path[512];
	seg_path(path, sizeof path, first);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	if (n > 0)
		cr_assert_eq(write(fd, p, n), (ssize_t)n);
	close(fd);
}

static off_t seg_size(uint64_t first)
{
	char path[512];
	struct stat st;
	seg_path(path, sizeof path, first);
	cr_assert_eq(stat(path, &st), 0);
	return st.st_size;
}

static struct spool_index *recover(struct spool_recover_result *res)
{
	char err[256] = "";
	struct spool_index *idx = spool_index_new();
	cr_assert_not_null(idx);
	int r = spool_recover_shard(t_dir, idx, res, err, sizeof err);
	cr_assert_eq(r, 0, "recover: %d %s", r, err);
	return idx;
}

static uint64_t pending(const struct spool_index *idx, uint64_t id)
{
	struct spool_index_entry e;
	if (spool_index_msg_find(idx, id, &e) < 0)
		return 0;
	return e.npending;
}

static uint64_t qmsgs(const struct spool_index *idx, const char *d)
{
	const struct spool_index_queue *q = spool_index_queue(idx, d, strlen(d));
	struct spool_index_qstat st;
	if (q == NULL)
		return 0;
	spool_index_queue_stat(q, &st);
	return st.messages;
}

static const char *const r_a[] = { "u@a.example", NULL };
static const char *const r_ab[] = { "u@a.example", "v@B.example", NULL };
static const char *const r_aab[] = { "u@a.example", "w@a.example",
	"v@b.example", NULL };

TestSuite(spool_recover, .init = mkdir_tmp, .fini = rm_tmp);

Test(spool_recover, clean_spool_exact_index)
{
	struct img s1 = { 0 }, s2 = { 0 };
	struct spool_recover_result res;

	img_msg(&s1, 0x101, r_a, 300);
	img_msg(&s1, 0x102, r_ab, 1024);
	img_msg(&s1, 0x103, r_aab, 10);
	img_done(&s1, 0x101, 0);          /* 0x101 finished in its own seg */
	img_msg(&s2, 0x200, r_ab, 50);
	img_done(&s2, 0x102, 1);          /* b done: only in a's queue */
	img_done(&s2, 0x103, 0);
	img_done(&s2, 0x103, 0);          /* repeated */
	img_done(&s2, 0x999, 0);          /* unknown */
	write_seg(0x101, s1.buf, s1.len);
	write_seg(0x200, s2.buf, s2.len);

	struct spool_index *idx = recover(&res);
	cr_assert_eq(res.segments, 2);
	cr_assert_eq(res.msg_records, 4);
	cr_assert_eq(res.done_records, 5);
	cr_assert_eq(res.live_messages, 3);
	cr_assert_eq(res.live_recipients, 1 + 2 + 2);
	cr_assert_eq(res.bad_regions, 0);
	cr_assert_eq(res.torn_bytes, 0);
	cr_assert_eq(res.repeated_dones, 1);
	cr_assert_eq(res.unknown_dones, 1);
	cr_assert_eq(res.ndead, 0);
	cr_assert_eq(res.max_seq, 0x999);
	cr_assert_eq(res.bytes, s1.len + s2.len);
	cr_assert_eq(pending(idx, 0x101), 0);
	cr_assert_eq(pending(idx, 0x102), 1);
	cr_assert_eq(pending(idx, 0x103), 2);
	cr_assert_eq(pending(idx, 0x200), 2);
	cr_assert_eq(qmsgs(idx, "a.example"), 3);
	cr_assert_eq(qmsgs(idx, "b.example"), 2);

	/* Arrival order and locations in a's queue. */
	const struct spool_index_queue *q = spool_index_queue(idx, "A.EXAMPLE", 9);
	struct spool_index_iter it;
	struct spool_index_entry e;
	const uint64_t want[] = { 0x102, 0x103, 0x200 };
	spool_index_queue_iter(q, &it);
	for (size_t i = 0; i < 3; i++) {
		cr_assert(spool_index_queue_next(&it, &e));
		cr_assert_eq(e.msgid, want[i]);
		struct spool_index_seg_stat st;
		cr_assert_eq(spool_index_segment_stat(idx, e.segment_id, &st), 0);
		cr_assert_eq(st.first_seq, i < 2 ? 0x101 : 0x200);
		cr_assert_eq(e.off, i < 2 ? s1.off[i + 1] : s2.off[0]);
	}
	cr_assert_eq(e.npending, 1);
	cr_assert_eq(e.rcpts[0], 0);

	/* Live and total bytes per segment. */
	uint32_t cur = 0, id;
	cr_assert(spool_index_segment_next(idx, &cur, &id));
	struct spool_index_seg_stat st;
	cr_assert_eq(spool_index_segment_stat(idx, id, &st), 0);
	cr_assert_eq(st.total_bytes, s1.len);
	cr_assert_eq(st.live_bytes, s1.off[3] - s1.off[1]);
	cr_assert_eq(st.live_msgs, 2);
	cr_assert(st.sealed);
	cr_assert(spool_index_segment_next(idx, &cur, &id));
	cr_assert_eq(spool_index_segment_stat(idx, id, &st), 0);
	cr_assert_eq(st.total_bytes, s2.len);
	cr_assert_eq(st.pins, 2);
	cr_assert_not(spool_index_segment_next(idx, &cur, &id));
	spool_recover_result_free(&res);
	spool_index_free(idx);
	free(s1.buf);
	free(s2.buf);
}

Test(spool_recover, torn_tail_every_byte)
{
	struct img s1 = { 0 }, s2 = { 0 };

	img_msg(&s1, 0x10, r_a, 100);
	img_msg(&s2, 0x20, r_ab, 100);
	img_msg(&s2, 0x21, r_a, 100);
	img_done(&s2, 0x20, 0);
	img_msg(&s2, 0x22, r_aab, 200);
	write_seg(0x10, s1.buf, s1.len);
	size_t last = s2.off[s2.nrec - 1];
	for (size_t cut = last + 1; cut < s2.len; cut++) {
		struct spool_recover_result res;
		write_seg(0x20, s2.buf, cut);
		struct spool_index *idx = recover(&res);
		cr_assert_eq(seg_size(0x20), (off_t)last, "cut %zu", cut);
		cr_assert_eq(res.torn_bytes, cut - last);
		cr_assert_eq(res.torn_segments, 1);
		cr_assert_eq(res.bad_regions, 0, "cut %zu", cut);
		cr_assert_eq(res.live_messages, 3);
		cr_assert_eq(pending(idx, 0x10), 1);
		cr_assert_eq(pending(idx, 0x20), 1);
		cr_assert_eq(pending(idx, 0x21), 1);
		cr_assert_eq(pending(idx, 0x22), 0);
		spool_recover_result_free(&res);
		spool_index_free(idx);
	}
	/* A torn DONE at the end: its recipient stays pending. */
	img_done(&s2, 0x22, 2);
	write_seg(0x20, s2.buf, s2.len - 3);
	struct spool_recover_result res;
	struct spool_index *idx = recover(&res);
	cr_assert_eq(seg_size(0x20), (off_t)(s2.len - 40));
	cr_assert_eq(pending(idx, 0x22), 3);
	spool_recover_result_free(&res);
	spool_index_free(idx);
	/* Zeros after the last record (space that never got data). */
	char *z = calloc(1, s2.len + 8192);
	memcpy(z, s2.buf, s2.len);
	write_seg(0x20, z, s2.len + 8192);
	idx = recover(&res);
	cr_assert_eq(seg_size(0x20), (off_t)s2.len);
	cr_assert_eq(res.torn_bytes, 0);
	cr_assert_eq(res.zero_bytes, 8192);
	cr_assert_eq(pending(idx, 0x22), 2);
	spool_recover_result_free(&res);
	spool_index_free(idx);
	free(z);
	free(s1.buf);
	free(s2.buf);
}

Test(spool_recover, torn_tail_in_older_segment)
{
	struct img s1 = { 0 }, s2 = { 0 };
	struct spool_recover_result res;

	img_msg(&s1, 0x10, r_a, 100);
	img_msg(&s1, 0x11, r_a, 100);
	img_msg(&s2, 0x20, r_a, 100);
	write_seg(0x10, s1.buf, s1.len - 10);
	write_seg(0x20, s2.buf, s2.len);
	struct spool_index *idx = recover(&res);
	cr_assert_eq(seg_size(0x10), (off_t)s1.off[1]);
	cr_assert_eq(res.torn_bytes, s1.len - 10 - s1.off[1]);
	cr_assert_eq(res.live_messages, 2);
	spool_recover_result_free(&res);
	spool_index_free(idx);
	free(s1.buf);
	free(s2.buf);
}

Test(spool_recover, flipped_bit_in_middle_record)
{
	struct img s = { 0 };

	for (uint64_t i = 0; i < 5; i++)
		img_msg(&s, 0x40 + i, i % 2 ? r_ab : r_a, 64);
	img_done(&s, 0x41, 1);
	size_t mid = s.off[2], mid_end = s.off[3];
	char *b = malloc(s.len);
	cr_assert_not_null(b);
	for (size_t pos = mid; pos < mid_end; pos++) {
		struct spool_recover_result res;
		memcpy(b, s.buf, s.len);
		b[pos] ^= (char)(1u << (pos % 8));
		write_seg(0x40, b, s.len);
		struct spool_index *idx = recover(&res);
		cr_assert_eq(res.bad_regions, 1, "byte %zu", pos - mid);
		cr_assert_eq(res.bad_bytes, mid_end - mid, "byte %zu", pos - mid);
		cr_assert_eq(res.torn_bytes, 0);
		cr_assert_eq(seg_size(0x40), (off_t)s.len);
		cr_assert_eq(res.live_messages, 4);
		cr_assert_eq(pending(idx, 0x42), 0);
		cr_assert_eq(pending(idx, 0x41), 1);  /* DONE after damage */
		cr_assert_eq(pending(idx, 0x43), 2);
		cr_assert_eq(pending(idx, 0x44), 1);
		spool_recover_result_free(&res);
		spool_index_free(idx);
	}
	free(b);
	free(s.buf);
}

Test(spool_recover, empty_and_zero_segments_are_dead)
{
	struct img s = { 0 };
	struct spool_recover_result res;
	char zeros[100] = { 0 };

	img_msg(&s, 0x30, r_a, 10);
	write_seg(0x10, NULL, 0);
	write_seg(0x20, zeros, sizeof zeros);
	write_seg(0x30, s.buf, s.len);
	struct spool_index *idx = recover(&res);
	cr_assert_eq(res.segments, 3);
	cr_assert_eq(res.torn_bytes, 0);
	cr_assert_eq(res.zero_bytes, sizeof zeros);
	cr_assert_eq(seg_size(0x20), 0);
	cr_assert_eq(res.ndead, 2);
	cr_assert_eq(res.dead[0], 0x10);
	cr_assert_eq(res.dead[1], 0x20);
	cr_assert_eq(res.live_messages, 1);
	struct spool_index_totals t;
	spool_index_totals(idx, &t);
	cr_assert_eq(t.segments, 1);
	spool_recover_result_free(&res);
	spool_index_free(idx);
	free(s.buf);
}

Test(spool_recover, fully_dead_segments_in_safe_order)
{
	struct img s1 = { 0 }, s2 = { 0 }, s3 = { 0 }, s4 = { 0 };
	struct spool_recover_result res;

	/* s1: all its messages done by DONEs in s2 and s3.
	 * s2: a message still live (so s2 stays), DONEs for s1.
	 * s3: only DONEs for s1: dead once s1 is gone.
	 * s4: DONE for s2's live message's one recipient: pinned by s2. */
	img_msg(&s1, 0x10, r_ab, 10);
	img_msg(&s1, 0x11, r_a, 10);
	img_msg(&s2, 0x20, r_aab, 10);
	img_done(&s2, 0x10, 0);
	img_done(&s2, 0x11, 0);
	img_done(&s3, 0x10, 1);
	img_done(&s4, 0x20, 2);
	write_seg(0x10, s1.buf, s1.len);
	write_seg(0x20, s2.buf, s2.len);
	write_seg(0x30, s3.buf, s3.len);
	write_seg(0x40, s4.buf, s4.len);
	struct spool_index *idx = recover(&res);
	cr_assert_eq(res.ndead, 2);
	cr_assert_eq(res.dead[0], 0x10);
	cr_assert_eq(res.dead[1], 0x30);
	cr_assert_eq(res.live_messages, 1);
	cr_assert_eq(pending(idx, 0x20), 2);
	cr_assert_eq(qmsgs(idx, "b.example"), 0);
	struct spool_index_totals t;
	spool_index_totals(idx, &t);
	cr_assert_eq(t.segments, 2);
	spool_recover_result_free(&res);
	spool_index_free(idx);

	/* Unlink as told, deliver the rest: everything goes. */
	char path[512];
	seg_path(path, sizeof path, 0x10);
	cr_assert_eq(unlink(path), 0);
	seg_path(path, sizeof path, 0x30);
	cr_assert_eq(unlink(path), 0);
	img_done(&s4, 0x20, 0);
	img_done(&s4, 0x20, 1);
	write_seg(0x40, s4.buf, s4.len);
	idx = recover(&res);
	cr_assert_eq(res.live_messages, 0);
	cr_assert_eq(res.ndead, 2);
	cr_assert_eq(res.dead[0], 0x20);
	cr_assert_eq(res.dead[1], 0x40);
	spool_recover_result_free(&res);
	spool_index_free(idx);
	free(s1.buf);
	free(s2.buf);
	free(s3.buf);
	free(s4.buf);
}

Test(spool_recover, duplicate_msgid_keeps_first_copy)
{
	struct img s1 = { 0 }, s2 = { 0 };
	struct spool_recover_result res;

	img_msg(&s1, 0x10, r_ab, 10);
	img_msg(&s2, 0x10, r_ab, 10);   /* a compaction's copy */
	img_msg(&s2, 0x20, r_a, 10);
	img_done(&s2, 0x10, 0);
	write_seg(0x10, s1.buf, s1.len);
	write_seg(0x20, s2.buf, s2.len);
	struct spool_index *idx = recover(&res);
	cr_assert_eq(res.duplicates, 1);
	cr_assert_eq(res.live_messages, 2);
	cr_assert_eq(pending(idx, 0x10), 1);
	struct spool_index_entry e;
	cr_assert_eq(spool_index_msg_find(idx, 0x10, &e), 0);
	struct spool_index_seg_stat st;
	cr_assert_eq(spool_index_segment_stat(idx, e.segment_id, &st), 0);
	cr_assert_eq(st.first_seq, 0x10);
	cr_assert_eq(e.off, 0);
	cr_assert_eq(qmsgs(idx, "a.example"), 1);
	cr_assert_eq(qmsgs(idx, "b.example"), 1);
	spool_recover_result_free(&res);
	spool_index_free(idx);
	free(s1.buf);
	free(s2.buf);
}

Test(spool_recover, note_records_set_the_warned_flag)
{
	struct img s1 = { 0 }, s2 = { 0 };
	struct spool_recover_result res;
	struct spool_index_seg_stat st;
	struct spool_index_entry e;

	img_msg(&s1, 0x10, r_ab, 10);
	img_msg(&s1, 0x11, r_a, 10);
	img_note(&s1, 0x10);            /* warned, same segment */
	img_msg(&s1, 0x12, r_a, 10);
	img_msg(&s2, 0x13, r_a, 10);
	img_note(&s2, 0x12);            /* warned, later segment */
	img_note(&s2, 0x12);            /* repeated: harmless */
	img_note(&s2, 0x99);            /* its message is gone: harmless */
	img_done(&s2, 0x11, 0);
	img_note(&s2, 0x11);            /* after its last DONE: gone too */
	write_seg(0x10, s1.buf, s1.len);
	write_seg(0x20, s2.buf, s2.len);
	struct spool_index *idx = recover(&res);
	cr_assert_eq(res.msg_records, 4);
	cr_assert_eq(res.done_records, 1);
	cr_assert_eq(res.note_records, 5);
	cr_assert_eq(res.bad_regions, 0);
	cr_assert_eq(res.live_messages, 3);
	cr_assert_eq(spool_index_msg_noted(idx, 0x10, SPOOL_NOTE_DELAY_WARNED), 1);
	cr_assert_eq(spool_index_msg_noted(idx, 0x11, SPOOL_NOTE_DELAY_WARNED),
			-ENOENT);
	cr_assert_eq(spool_index_msg_noted(idx, 0x12, SPOOL_NOTE_DELAY_WARNED), 1);
	cr_assert_eq(spool_index_msg_noted(idx, 0x13, SPOOL_NOTE_DELAY_WARNED), 0);
	cr_assert_eq(spool_index_msg_find(idx, 0x12, &e), 0);
	cr_assert_eq(e.delay_warned, 1);
	/* The NOTEs pin the second segment to the first, and every byte is
	 * accounted for. */
	cr_assert_eq(spool_index_msg_find(idx, 0x13, &e), 0);
	cr_assert_eq(spool_index_segment_stat(idx, e.segment_id, &st), 0);
	cr_assert_geq(st.pins, 1);
	cr_assert_eq(st.total_bytes, s2.len);
	cr_assert_eq(spool_index_msg_find(idx, 0x10, &e), 0);
	cr_assert_eq(spool_index_segment_stat(idx, e.segment_id, &st), 0);
	cr_assert_eq(st.total_bytes, s1.len);
	cr_assert_eq(res.ndead, 0);
	spool_recover_result_free(&res);
	spool_index_free(idx);

	/* A damaged NOTE costs only itself: the flag is simply not set. */
	s2.buf[s2.off[1] + SPOOL_REC_HDR_SIZE] ^= 0x01;
	write_seg(0x20, s2.buf, s2.len);
	idx = recover(&res);
	cr_assert_eq(res.bad_regions, 1);
	cr_assert_eq(res.note_records, 4);
	cr_assert_eq(spool_index_msg_noted(idx, 0x12, SPOOL_NOTE_DELAY_WARNED), 1,
			"the repeated NOTE still marks it");
	spool_recover_result_free(&res);
	spool_index_free(idx);
	free(s1.buf);
	free(s2.buf);
}

/* Quarantine: a MSG with SPOOL_MSG_HELD comes back held (queued, marked),
 * a NOTE(RELEASED) after it, in any later segment, releases it and pins
 * that segment; a RELEASED for a message never held changes nothing; old
 * spools (flags 0) have nothing held. */
Test(spool_recover, held_flag_and_released_note)
{
	struct img s1 = { 0 }, s2 = { 0 };
	struct spool_recover_result res;
	struct spool_index_seg_stat st;
	struct spool_index_entry e;

	img_msg_f(&s1, 0x10, r_a, 10, SPOOL_MSG_HELD);
	img_msg_f(&s1, 0x11, r_ab, 10, SPOOL_MSG_HELD | SPOOL_MSG_8BITMIME);
	img_msg(&s1, 0x12, r_a, 10);
	img_note_k(&s1, 0x12, SPOOL_NOTE_RELEASED); /* never held: nothing */
	img_note_k(&s2, 0x11, SPOOL_NOTE_RELEASED);
	img_note_k(&s2, 0x11, SPOOL_NOTE_RELEASED); /* repeated: harmless */
	write_seg(0x10, s1.buf, s1.len);
	write_seg(0x20, s2.buf, s2.len);
	struct spool_index *idx = recover(&res);
	cr_assert_eq(res.msg_records, 3);
	cr_assert_eq(res.note_records, 3);
	cr_assert_eq(res.bad_regions, 0);
	cr_assert_eq(res.live_messages, 3);
	cr_assert_eq(spool_index_msg_find(idx, 0x10, &e), 0);
	cr_assert_eq(e.held, 1);
	cr_assert_eq(spool_index_msg_noted(idx, 0x10, SPOOL_NOTE_RELEASED), 0);
	cr_assert_eq(spool_index_msg_find(idx, 0x11, &e), 0);
	cr_assert_eq(e.held, 0);
	cr_assert_eq(spool_index_msg_find(idx, 0x12, &e), 0);
	cr_assert_eq(e.held, 0);
	/* Held mail is queued (listings and quota see it); the walk marks it. */
	cr_assert_eq(qmsgs(idx, "a.example"), 3);
	const struct spool_index_queue *q = spool_index_queue(idx, "a.example", 9);
	struct spool_index_iter it;
	int held = 0;
	spool_index_queue_iter(q, &it);
	while (spool_index_queue_next(&it, &e))
		held += e.held ? (e.msgid == 0x10 ? 1 : 100) : 0;
	cr_assert_eq(held, 1);
	/* The release in the later segment keeps it until the first goes. */
	cr_assert_eq(spool_index_msg_find(idx, 0x11, &e), 0);
	cr_assert_eq(spool_index_segment_next(idx, &(uint32_t){ 1 }, &e.segment_id), 1);
	cr_assert_eq(spool_index_segment_stat(idx, e.segment_id, &st), 0);
	cr_assert_eq(st.first_seq, 0x20);
	cr_assert_geq(st.pins, 1);
	spool_recover_result_free(&res);
	spool_index_free(idx);

	/* Without the release's segment the message is held again. */
	write_seg(0x20, "", 0);
	idx = recover(&res);
	cr_assert_eq(spool_index_msg_find(idx, 0x11, &e), 0);
	cr_assert_eq(e.held, 1);
	spool_recover_result_free(&res);
	spool_index_free(idx);
	free(s1.buf);
	free(s2.buf);
}

/* The next attempt of msgid's entry in domain d (0 when due at once). */
static uint64_t next_of(const struct spool_index *idx, const char *d, uint64_t id)
{
	struct spool_index_entry e;

	cr_assert_eq(spool_index_msg_entry(idx, id, d, strlen(d), &e), 0,
			"message %" PRIx64 " not queued for %s", id, d);
	return e.next_us;
}

Test(spool_recover, sched_records_restore_next_last_wins)
{
	struct img s1 = { 0 }, s2 = { 0 };
	struct spool_recover_result res;
	struct spool_index_seg_stat st;
	struct spool_index_entry e;

	img_msg(&s1, 0x10, r_ab, 10);
	img_msg(&s1, 0x11, r_a, 10);
	img_sched(&s1, 0x10, "a.example", 100);
	img_sched(&s1, 0x10, "A.Example", 200);        /* later: wins */
	img_sched(&s1, 0x11, "a.example", 300);
	img_msg(&s2, 0x12, r_a, 10);
	img_sched(&s2, 0x10, "a.example", 250);        /* [1] later segment */
	img_sched(&s2, 0x10, "b.example", 400);
	img_sched(&s2, 0x99, "a.example", 1);          /* no such message */
	img_sched(&s2, 0x12, "b.example", 5);          /* not its domain */
	img_done(&s2, 0x11, 0);
	img_sched(&s2, 0x11, "a.example", 7);          /* finished */
	write_seg(0x10, s1.buf, s1.len);
	write_seg(0x20, s2.buf, s2.len);
	struct spool_index *idx = recover(&res);
	cr_assert_eq(res.msg_records, 3);
	cr_assert_eq(res.done_records, 1);
	cr_assert_eq(res.sched_records, 8);
	cr_assert_eq(res.sched_ignored, 3);
	cr_assert_eq(res.sched_dead_segments, 0);
	cr_assert_eq(res.bad_regions, 0);
	cr_assert_eq(res.live_messages, 2);
	cr_assert_eq(next_of(idx, "a.example", 0x10), 250);
	cr_assert_eq(next_of(idx, "b.example", 0x10), 400);
	cr_assert_eq(next_of(idx, "a.example", 0x12), 0);
	/* Every byte accounted for; the SCHEDs are no live bytes. */
	cr_assert_eq(spool_index_msg_find(idx, 0x12, &e), 0);
	cr_assert_eq(spool_index_segment_stat(idx, e.segment_id, &st), 0);
	cr_assert_eq(st.total_bytes, s2.len);
	cr_assert_eq(st.live_bytes, s2.off[1]);
	cr_assert_eq(spool_index_msg_find(idx, 0x10, &e), 0);
	cr_assert_eq(spool_index_segment_stat(idx, e.segment_id, &st), 0);
	cr_assert_eq(st.total_bytes, s1.len);
	cr_assert_eq(st.live_bytes, s1.off[1]);
	spool_recover_result_free(&res);
	spool_index_free(idx);

	/* A damaged SCHED costs only itself: the one before it stands. */
	s2.buf[s2.off[1] + SPOOL_REC_HDR_SIZE] ^= 0x01;
	write_seg(0x20, s2.buf, s2.len);
	idx = recover(&res);
	cr_assert_eq(res.bad_regions, 1);
	cr_assert_eq(res.sched_records, 7);
	cr_assert_eq(next_of(idx, "a.example", 0x10), 200);
	cr_assert_eq(next_of(idx, "b.example", 0x10), 400);
	spool_recover_result_free(&res);
	spool_index_free(idx);
	free(s1.buf);
	free(s2.buf);
}

Test(spool_recover, sched_does_not_keep_a_segment_alive)
{
	struct img s1 = { 0 }, s2 = { 0 }, s3 = { 0 };
	struct spool_recover_result res;
	struct spool_index_seg_stat st;
	struct spool_index_entry e;
	char path[512];

	img_msg(&s1, 0x10, r_a, 10);
	img_msg(&s1, 0x11, r_a, 10);
	img_done(&s1, 0x10, 0);
	img_sched(&s2, 0x11, "a.example", 100);
	img_sched(&s2, 0x10, "a.example", 5);          /* finished */
	img_msg(&s3, 0x12, r_a, 10);
	write_seg(0x10, s1.buf, s1.len);
	write_seg(0x20, s2.buf, s2.len);
	write_seg(0x30, s3.buf, s3.len);
	struct spool_index *idx = recover(&res);
	cr_assert_eq(res.sched_records, 2);
	cr_assert_eq(res.sched_ignored, 1);
	/* Only SCHEDs in it: dead, though they name a live message. */
	cr_assert_eq(res.ndead, 1);
	cr_assert_eq(res.dead[0], 0x20);
	cr_assert_eq(res.sched_dead_segments, 1, "the caller must write them again");
	cr_assert_eq(next_of(idx, "a.example", 0x11), 100);
	cr_assert_eq(spool_index_msg_find(idx, 0x11, &e), 0);
	cr_assert_eq(spool_index_segment_stat(idx, e.segment_id, &st), 0);
	cr_assert_eq(st.pins, 0);
	spool_recover_result_free(&res);
	spool_index_free(idx);

	/* Unlinked as told: the schedule is lost, the message is not; it
	 * is simply due at once. */
	seg_path(path, sizeof path, 0x20);
	cr_assert_eq(unlink(path), 0);
	idx = recover(&res);
	cr_assert_eq(res.ndead, 0);
	cr_assert_eq(res.sched_dead_segments, 0);
	cr_assert_eq(res.live_messages, 2);
	cr_assert_eq(next_of(idx, "a.example", 0x11), 0);
	spool_recover_result_free(&res);
	spool_index_free(idx);
	free(s1.buf);
	free(s2.buf);
	free(s3.buf);
}

Test(spool_recover, missing_dir_and_stray_files)
{
	struct spool_recover_result res;
	char path[512], err[128];
	struct spool_index *idx = spool_index_new();

	snprintf(path, sizeof path, "%s/nope", t_dir);
	cr_assert_eq(spool_recover_shard(path, idx, &res, err, sizeof err), 0);
	cr_assert_eq(res.segments, 0);
	spool_index_free(idx);

	/* Names that are not segments are left alone; so is a directory
	 * with a segment's name. */
	struct img s = { 0 };
	img_msg(&s, 0x50, r_a, 10);
	write_seg(0x50, s.buf, s.len);
	snprintf(path, sizeof path, "%s/0000000000000050.seg.tmp", t_dir);
	int fd = open(path, O_WRONLY | O_CREAT, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	snprintf(path, sizeof path, "%s/00000000000000AA.seg", t_dir);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	close(fd);
	snprintf(path, sizeof path, "%s/0000000000000001.seg", t_dir);
	cr_assert_eq(mkdir(path, 0700), 0);
	idx = recover(&res);
	cr_assert_eq(res.segments, 1);
	cr_assert_eq(res.live_messages, 1);
	cr_assert_eq(res.ndead, 0);
	spool_recover_result_free(&res);
	spool_index_free(idx);
	cr_assert_eq(rmdir(path), 0);
	free(s.buf);
}

/* Many records over several read chunks: every message back, in order. */
Test(spool_recover, many_records)
{
	struct img s = { 0 };
	struct spool_recover_result res;
	const uint64_t n = 3000;

	for (uint64_t i = 0; i < n; i++) {
		img_msg(&s, 0x1000 + i, i % 3 ? r_a : r_aab, 2000);
		if (i % 4 == 0)
			img_done(&s, 0x1000 + i, 0);
	}
	write_seg(0x1000, s.buf, s.len);
	struct spool_index *idx = recover(&res);
	cr_assert_eq(res.msg_records, n);
	uint64_t live = 0;
	for (uint64_t i = 0; i < n; i++)
		live += !(i % 4 == 0 && i % 3 != 0);
	cr_assert_eq(res.live_messages, live);
	const struct spool_index_queue *q = spool_index_queue(idx, "a.example", 9);
	struct spool_index_iter it;
	struct spool_index_entry e;
	uint64_t prev = 0, cnt = 0;
	spool_index_queue_iter(q, &it);
	while (spool_index_queue_next(&it, &e)) {
		cr_assert_gt(e.msgid, prev);
		prev = e.msgid;
		cnt++;
	}
	cr_assert_eq(cnt, res.live_messages);
	spool_recover_result_free(&res);
	spool_index_free(idx);
	free(s.buf);
}

/* What recovery cannot get past fails the shard with the path and the
 * reason, and leaves nothing allocated in the result: a shard that is a
 * file, a segment name that cannot be opened (a dangling symlink). */
Test(spool_recover, unreadable_shard_or_segment_fails_with_path)
{
	struct spool_recover_result res;
	char path[512], want[640], err[640] = "";
	struct spool_index *idx = spool_index_new();

	cr_assert_not_null(idx);
	snprintf(path, sizeof path, "%s/file", t_dir);
	int fd = open(path, O_WRONLY | O_CREAT, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_expect_eq(spool_recover_shard(path, idx, &res, err, sizeof err), -ENOTDIR);
	snprintf(want, sizeof want, "%s: Not a directory", path);
	cr_expect_str_eq(err, want);
	cr_assert_eq(unlink(path), 0);

	struct img s = { 0 };
	img_msg(&s, 0x50, r_a, 10);
	write_seg(0x50, s.buf, s.len);
	seg_path(path, sizeof path, 0x60);
	cr_assert_eq(symlink("/nonexistent/etrnd-test", path), 0);
	cr_expect_eq(spool_recover_shard(t_dir, idx, &res, err, sizeof err), -ENOENT);
	snprintf(want, sizeof want, "%s: No such file or directory", path);
	cr_expect_str_eq(err, want);
	cr_expect_null(res.dead);
	cr_expect_eq(res.ndead, 0);
	spool_index_free(idx);
	free(s.buf);
}

/* A torn tail that cannot be cut (the spool's file system went read-only):
 * recovery fails with the reason instead of appending after the torn
 * record. The spool is a small tmpfs mounted by the test (root only;
 * skipped, saying why, where mounting is not allowed). */
Test(spool_recover, torn_tail_on_read_only_fs_fails)
{
	struct img s = { 0 };
	struct spool_recover_result res;
	char path[512], want[640], err[640] = "", cmd[640];

	snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=1m tmpfs '%s' 2>/dev/null", t_dir);
	if (system(cmd) != 0)
		cr_skip_test("cannot mount a tmpfs here (not root?)");
	img_msg(&s, 0x10, r_a, 100);
	img_msg(&s, 0x11, r_a, 100);
	write_seg(0x10, s.buf, s.len - 10);
	snprintf(cmd, sizeof cmd, "mount -o remount,ro '%s'", t_dir);
	cr_assert_eq(system(cmd), 0);
	/* Expectations only from here on: the umount below always runs. */
	struct spool_index *idx = spool_index_new();
	int r = idx ? spool_recover_shard(t_dir, idx, &res, err, sizeof err) : -ENOMEM;
	seg_path(path, sizeof path, 0x10);
	snprintf(want, sizeof want, "%s: truncating torn tail: Read-only file system", path);
	cr_expect_eq(r, -EROFS);
	cr_expect_str_eq(err, want);
	cr_expect_eq(seg_size(0x10), (off_t)(s.len - 10), "the segment is as it was");
	spool_index_free(idx);
	snprintf(cmd, sizeof cmd, "umount '%s'", t_dir);
	cr_assert_eq(system(cmd), 0);
	free(s.buf);
}

/* More segments than recovery's first tables hold (names with hex
 * letters, as store/spool.c writes them): every one read, every fully
 * done one listed dead in name order, the live one kept. */
#define T_MANY_SEGS 100
Test(spool_recover, many_segments_all_listed)
{
	struct spool_recover_result res;
	struct img last = { 0 };

	for (uint64_t i = 0; i < T_MANY_SEGS; i++) {
		struct img s = { 0 };
		uint64_t seq = 0xa00 + 0x10 * i;
		img_msg(&s, seq, r_a, 10);
		img_done(&s, seq, 0);
		write_seg(seq, s.buf, s.len);
		free(s.buf);
	}
	img_msg(&last, 0xf000, r_ab, 10);
	write_seg(0xf000, last.buf, last.len);
	struct spool_index *idx = recover(&res);
	cr_expect_eq(res.segments, T_MANY_SEGS + 1);
	cr_expect_eq(res.live_messages, 1);
	cr_assert_eq(res.ndead, T_MANY_SEGS);
	for (uint64_t i = 0; i < T_MANY_SEGS; i++)
		cr_expect_eq(res.dead[i], 0xa00 + 0x10 * i, "dead[%" PRIu64 "]", i);
	cr_expect_eq(pending(idx, 0xf000), 2);
	spool_recover_result_free(&res);
	spool_index_free(idx);
	free(last.buf);
}
