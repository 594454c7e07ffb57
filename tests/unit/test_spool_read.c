/* SPDX-License-Identifier: MIT */
/*
 * Tests for store/spool_read.c on crafted segment files: clean files, a torn
 * tail cut at every byte of the last record, a bit flipped anywhere in a
 * middle record, zero and garbage files and tails, damage across the read
 * window's chunk boundary, and callbacks that stop the walk.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/spool_read.h"
#include "store/spool_rec.h"

#define SEG_MAX_RECS 8192

/* A segment image built in memory, with where each record went. */
struct seg {
	char *buf;
	size_t len, cap;
	size_t n;
	size_t off[SEG_MAX_RECS];
	size_t rlen[SEG_MAX_RECS];
	uint64_t id[SEG_MAX_RECS];
};

static void seg_reserve(struct seg *s, size_t more)
{
	if (s->len + more <= s->cap)
		return;
	size_t cap = s->cap ? s->cap : 4096;
	while (cap < s->len + more)
		cap *= 2;
	s->buf = realloc(s->buf, cap);
	cr_assert_not_null(s->buf);
	s->cap = cap;
}

static void seg_raw(struct seg *s, const void *p, size_t n)
{
	seg_reserve(s, n);
	memcpy(s->buf + s->len, p, n);
	s->len += n;
}

static void seg_fill(struct seg *s, int c, size_t n)
{
	seg_reserve(s, n);
	memset(s->buf + s->len, c, n);
	s->len += n;
}

static void seg_note(struct seg *s, size_t off, uint64_t id)
{
	cr_assert_lt(s->n, SEG_MAX_RECS);
	s->off[s->n] = off;
	s->rlen[s->n] = s->len - off;
	s->id[s->n] = id;
	s->n++;
}

/* A MSG with a body of body_len bytes: CRLF lines of fill characters, or
 * the given body when not NULL. */
static void seg_msg(struct seg *s, uint64_t id, size_t body_len,
		const char *body)
{
	static const char *rcpt[] = { "a@customer.example", "b@x.example" };
	size_t rl[] = { strlen(rcpt[0]), strlen(rcpt[1]) };
	const char *sender = "sender@example.org";
	size_t head = spool_rec_msg_head_size(strlen(sender), 2, rl);
	char *b = NULL;

	if (body == NULL) {
		b = malloc(body_len + 1);
		cr_assert_not_null(b);
		for (size_t i = 0; i < body_len; i++)
			b[i] = (i % 72 == 70) ? '\r' : (i % 72 == 71) ? '\n' :
				(char)('a' + (id + i) % 26);
		body = b;
	}
	size_t off = s->len;
	seg_reserve(s, head + body_len);
	spool_rec_encode_msg_head(s->buf + s->len, id, 1700000000000000ull + id,
			SPOOL_MSG_8BITMIME, sender, strlen(sender), 2, rcpt,
			rl, body, body_len);
	s->len += head;
	seg_raw(s, body, body_len);
	seg_note(s, off, id);
	free(b);
}

static void seg_done(struct seg *s, uint64_t id)
{
	size_t off = s->len;
	seg_reserve(s, SPOOL_REC_HDR_SIZE + SPOOL_DONE_PAYLOAD_SIZE);
	s->len += spool_rec_encode_done(s->buf + s->len, id, 5, 0,
			SPOOL_DONE_DELIVERED);
	seg_note(s, off, id);
}

static void seg_free(struct seg *s)
{
	free(s->buf);
	free(s);
}

static struct seg *seg_new(void)
{
	struct seg *s = calloc(1, sizeof *s);
	cr_assert_not_null(s);
	return s;
}

/* What the reader reported. */
struct got {
	size_t n;
	uint64_t off[SEG_MAX_RECS];
	uint64_t id[SEG_MAX_RECS];
	size_t nbad;
	uint64_t bad_off[16], bad_len[16];
	int bad_why[16];
	size_t stop_after; /* 0: never */
	int stop_value;
};

static int on_rec(void *arg, uint64_t off, const struct spool_rec_hdr *hdr,
		const char *payload)
{
	struct got *g = arg;
	cr_assert_lt(g->n, SEG_MAX_RECS);
	/* The payload is readable for the call: decode it fully. */
	if (hdr->type == SPOOL_REC_MSG) {
		struct spool_rec_msg m;
		cr_assert_eq(spool_rec_decode_msg(payload, hdr->length, &m),
				SPOOL_REC_OK);
	}
	g->off[g->n] = off;
	g->id[g->n] = hdr->msgid;
	g->n++;
	if (g->stop_after != 0 && g->n == g->stop_after)
		return g->stop_value;
	return 0;
}

static void on_bad(void *arg, uint64_t off, uint64_t len, int why)
{
	struct got *g = arg;
	cr_assert_lt(g->nbad, 16);
	cr_assert_neq(why, SPOOL_REC_OK);
	cr_assert_neq(why, SPOOL_REC_AGAIN);
	g->bad_off[g->nbad] = off;
	g->bad_len[g->nbad] = len;
	g->bad_why[g->nbad] = why;
	g->nbad++;
}

static char tmpdir[64];
static char segpath[128];

static void tmp_setup(void)
{
	strcpy(tmpdir, "/tmp/test_spool_read.XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	int r = snprintf(segpath, sizeof segpath, "%s/0000000000000001.seg",
			tmpdir);
	cr_assert(r > 0 && (size_t)r < sizeof segpath);
}

static void tmp_teardown(void)
{
	(void)unlink(segpath);
	(void)rmdir(tmpdir);
}

TestSuite(spool_read, .init = tmp_setup, .fini = tmp_teardown);

static void write_file(const char *buf, size_t len)
{
	int fd = open(segpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	size_t done = 0;
	while (done < len) {
		ssize_t w = write(fd, buf + done, len - done);
		cr_assert_gt(w, 0);
		done += (size_t)w;
	}
	close(fd);
}

static int read_file(struct got *g, struct spool_read_result *res)
{
	return spool_read_segment(segpath, on_rec, on_bad, g, res);
}

/* Records [from, to) of s were reported as g's records [at, at + to - from). */
static void want_recs(const struct seg *s, const struct got *g, size_t at,
		size_t from, size_t to)
{
	for (size_t i = from; i < to; i++, at++) {
		cr_assert_lt(at, g->n);
		cr_assert_eq(g->off[at], s->off[i], "record %zu offset", i);
		cr_assert_eq(g->id[at], s->id[i], "record %zu id", i);
	}
}

static void build_mixed(struct seg *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i % 4 == 3)
			seg_done(s, i - 1);
		else
			seg_msg(s, i, (i * 37) % 300, NULL);
	}
}

Test(spool_read, clean_file)
{
	struct seg *s = seg_new();
	build_mixed(s, 50);
	write_file(s->buf, s->len);
	struct got *g = calloc(1, sizeof *g);
	struct spool_read_result res;
	cr_assert_eq(read_file(g, &res), 0);
	cr_assert_eq(res.records, 50);
	cr_assert_eq(g->n, 50);
	want_recs(s, g, 0, 0, 50);
	cr_assert_eq(res.valid_end, s->len);
	cr_assert_eq(res.file_size, s->len);
	cr_assert_eq(res.torn_bytes, 0);
	cr_assert_eq(res.bad_regions, 0);
	cr_assert_eq(g->nbad, 0);
	free(g);
	seg_free(s);
}

Test(spool_read, zero_length_file_is_clean)
{
	write_file("", 0);
	struct got *g = calloc(1, sizeof *g);
	struct spool_read_result res;
	cr_assert_eq(read_file(g, &res), 0);
	cr_assert_eq(res.records, 0);
	cr_assert_eq(res.valid_end, 0);
	cr_assert_eq(res.file_size, 0);
	cr_assert_eq(res.torn_bytes, 0);
	cr_assert_eq(res.bad_regions, 0);
	free(g);
}

/* Cut the last record at every byte, bare and followed by zeros (space
 * preallocated or blocks never written): always a torn tail, never damage. */
Test(spool_read, torn_tail_at_every_offset)
{
	struct seg *s = seg_new();
	build_mixed(s, 4);
	seg_msg(s, 100, 150, NULL);
	size_t last = s->off[4];
	struct got *g = calloc(1, sizeof *g);
	for (int zeros = 0; zeros <= 1; zeros++) {
		for (size_t k = 0; k < s->rlen[4]; k++) {
			struct spool_read_result res;
			size_t pad = zeros ? 4096 - (last + k) % 4096 : 0;
			char *img = calloc(1, last + k + pad + 1);
			memcpy(img, s->buf, last + k);
			write_file(img, last + k + pad);
			free(img);
			memset(g, 0, sizeof *g);
			cr_assert_eq(read_file(g, &res), 0);
			cr_assert_eq(res.records, 4, "cut %zu zeros %d", k,
					zeros);
			want_recs(s, g, 0, 0, 4);
			cr_assert_eq(res.valid_end, last, "cut %zu", k);
			cr_assert_eq(res.torn_bytes, k + pad, "cut %zu zeros %d",
					k, zeros);
			cr_assert_eq(res.bad_regions, 0, "cut %zu zeros %d", k,
					zeros);
			cr_assert_eq(res.file_size, last + k + pad);
		}
	}
	free(g);
	seg_free(s);
}

/* Flip every bit of a middle record in turn: that record is one damaged
 * region of exactly its size, and every other record is still read. */
Test(spool_read, bit_flip_in_middle_record)
{
	struct seg *s = seg_new();
	seg_msg(s, 0, 50, NULL);
	seg_msg(s, 1, 60, NULL);
	seg_msg(s, 2, 40, NULL);
	seg_done(s, 1);
	seg_msg(s, 4, 70, NULL);
	struct got *g = calloc(1, sizeof *g);
	for (size_t victim = 1; victim <= 3; victim++) {
		for (size_t bit = 0; bit < s->rlen[victim] * 8; bit++) {
			struct spool_read_result res;
			size_t byte = s->off[victim] + bit / 8;
			s->buf[byte] ^= (char)(1u << (bit % 8));
			write_file(s->buf, s->len);
			s->buf[byte] ^= (char)(1u << (bit % 8));
			memset(g, 0, sizeof *g);
			cr_assert_eq(read_file(g, &res), 0);
			cr_assert_eq(res.records, 4, "victim %zu bit %zu",
					victim, bit);
			want_recs(s, g, 0, 0, victim);
			want_recs(s, g, victim, victim + 1, 5);
			cr_assert_eq(res.bad_regions, 1);
			cr_assert_eq(g->nbad, 1);
			cr_assert_eq(g->bad_off[0], s->off[victim]);
			cr_assert_eq(g->bad_len[0], s->rlen[victim],
					"victim %zu bit %zu", victim, bit);
			cr_assert_eq(res.torn_bytes, 0);
			cr_assert_eq(res.valid_end, s->len);
		}
	}
	free(g);
	seg_free(s);
}

static void put32le(char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (char)(v >> (8 * i));
}

Test(spool_read, length_past_eof_in_middle_is_damage)
{
	struct seg *s = seg_new();
	build_mixed(s, 6);
	put32le(s->buf + s->off[2] + 8, 0x00ffffffu);
	write_file(s->buf, s->len);
	struct got *g = calloc(1, sizeof *g);
	struct spool_read_result res;
	cr_assert_eq(read_file(g, &res), 0);
	cr_assert_eq(res.records, 5);
	want_recs(s, g, 0, 0, 2);
	want_recs(s, g, 2, 3, 6);
	cr_assert_eq(g->nbad, 1);
	cr_assert_eq(g->bad_off[0], s->off[2]);
	cr_assert_eq(g->bad_len[0], s->rlen[2]);
	cr_assert_eq(g->bad_why[0], SPOOL_REC_BAD_LENGTH);
	free(g);
	seg_free(s);
}

/* A damaged record whose body holds things that look like headers: the
 * resync must not stop at a magic whose record does not check out. */
Test(spool_read, resync_skips_false_magic)
{
	static const char body[] =
		"ETRN\x01\x01\0\0\x10\0\0\0junkjunkjunkjunkjunkjunk"
		"ETRNETRN\x01ETRN\x01\x02\0\0\x08\0\0\0\0\0\0\0"
		"ETR";
	struct seg *s = seg_new();
	seg_msg(s, 0, 10, NULL);
	seg_msg(s, 1, sizeof body - 1, body);
	seg_msg(s, 2, 10, NULL);
	s->buf[s->off[1] + 20] ^= 1; /* a header byte: the CRC fails */
	write_file(s->buf, s->len);
	struct got *g = calloc(1, sizeof *g);
	struct spool_read_result res;
	cr_assert_eq(read_file(g, &res), 0);
	cr_assert_eq(res.records, 2);
	want_recs(s, g, 0, 0, 1);
	want_recs(s, g, 1, 2, 3);
	cr_assert_eq(g->nbad, 1);
	cr_assert_eq(g->bad_off[0], s->off[1]);
	cr_assert_eq(g->bad_len[0], s->rlen[1]);
	cr_assert_eq(g->bad_why[0], SPOOL_REC_BAD_CRC);
	free(g);
	seg_free(s);
}

static void fill_garbage(char *p, size_t n, unsigned seed)
{
	srand(seed);
	for (size_t i = 0; i < n; i++)
		p[i] = (char)(1 + rand() % 255);
	p[0] = 'x';
}

Test(spool_read, garbage_only_file)
{
	enum { N = 100000 };
	char *buf = malloc(N);
	fill_garbage(buf, N, 7);
	/* Plant plausible-looking headers that do not check out. */
	memcpy(buf + 1000, "ETRN\x01\x01\0\0\x10\0\0\0", 12);
	memcpy(buf + 5000, "ETRN\x01\x02\0\0\x08\0\0\0", 12);
	memcpy(buf + N - 20, "ETRN\x01", 5);
	write_file(buf, N);
	struct got *g = calloc(1, sizeof *g);
	struct spool_read_result res;
	cr_assert_eq(read_file(g, &res), 0);
	cr_assert_eq(res.records, 0);
	cr_assert_eq(res.valid_end, 0);
	cr_assert_eq(res.torn_bytes, 0);
	cr_assert_eq(res.bad_regions, 1);
	cr_assert_eq(g->bad_off[0], 0);
	cr_assert_eq(g->bad_len[0], N);
	cr_assert_eq(g->bad_why[0], SPOOL_REC_BAD_MAGIC);
	free(buf);
	free(g);
}

Test(spool_read, garbage_tail_is_damage)
{
	struct seg *s = seg_new();
	build_mixed(s, 5);
	size_t end = s->len;
	seg_fill(s, 0, 300);
	fill_garbage(s->buf + end, 300, 9);
	write_file(s->buf, s->len);
	struct got *g = calloc(1, sizeof *g);
	struct spool_read_result res;
	cr_assert_eq(read_file(g, &res), 0);
	cr_assert_eq(res.records, 5);
	cr_assert_eq(res.valid_end, end);
	cr_assert_eq(res.torn_bytes, 0);
	cr_assert_eq(g->nbad, 1);
	cr_assert_eq(g->bad_off[0], end);
	cr_assert_eq(g->bad_len[0], 300);
	free(g);
	seg_free(s);
}

/* A whole last record with a bad CRC and non-zero bytes to its end was
 * written and then damaged: corruption, not a torn tail. */
Test(spool_read, complete_last_record_bad_crc_is_damage)
{
	struct seg *s = seg_new();
	build_mixed(s, 3);
	seg_msg(s, 9, 80, NULL);
	s->buf[s->off[3] + 50] ^= 0x10;
	write_file(s->buf, s->len);
	struct got *g = calloc(1, sizeof *g);
	struct spool_read_result res;
	cr_assert_eq(read_file(g, &res), 0);
	cr_assert_eq(res.records, 3);
	cr_assert_eq(res.torn_bytes, 0);
	cr_assert_eq(g->nbad, 1);
	cr_assert_eq(g->bad_off[0], s->off[3]);
	cr_assert_eq(g->bad_len[0], s->rlen[3]);
	cr_assert_eq(g->bad_why[0], SPOOL_REC_BAD_CRC);
	free(g);
	seg_free(s);
}

Test(spool_read, zero_tail_is_torn)
{
	struct seg *s = seg_new();
	build_mixed(s, 5);
	size_t end = s->len;
	seg_fill(s, 0, 8192);
	write_file(s->buf, s->len);
	struct got *g = calloc(1, sizeof *g);
	struct spool_read_result res;
	cr_assert_eq(read_file(g, &res), 0);
	cr_assert_eq(res.records, 5);
	cr_assert_eq(res.valid_end, end);
	cr_assert_eq(res.torn_bytes, 8192);
	cr_assert(res.zero_tail, "zeros ahead of the tail are not a cut record");
	cr_assert_eq(res.bad_regions, 0);
	free(g);
	seg_free(s);
}

Test(spool_read, all_zero_file_is_torn)
{
	char *buf = calloc(1, 70000);
	write_file(buf, 70000);
	struct got *g = calloc(1, sizeof *g);
	struct spool_read_result res;
	cr_assert_eq(read_file(g, &res), 0);
	cr_assert_eq(res.records, 0);
	cr_assert_eq(res.torn_bytes, 70000);
	cr_assert(res.zero_tail);
	cr_assert_eq(res.bad_regions, 0);
	free(buf);
	free(g);
}

/* Only the first bytes of a header reached the disk, the rest is zero. */
Test(spool_read, partial_header_then_zeros_is_torn)
{
	struct seg *s = seg_new();
	build_mixed(s, 3);
	size_t end = s->len;
	seg_raw(s, "ETRN\x01\x01", 6);
	seg_fill(s, 0, 500);
	write_file(s->buf, s->len);
	struct got *g = calloc(1, sizeof *g);
	struct spool_read_result res;
	cr_assert_eq(read_file(g, &res), 0);
	cr_assert_eq(res.records, 3);
	cr_assert_eq(res.torn_bytes, 506);
	cr_assert(!res.zero_tail, "a cut header is a torn record");
	cr_assert_eq(res.valid_end, end);
	cr_assert_eq(res.bad_regions, 0);
	free(g);
	seg_free(s);
}

/* Zeros, then more records (an out-of-order write that never got its
 * fdatasync): the zeros are a damaged region, the records after are kept. */
Test(spool_read, valid_record_after_zeros)
{
	struct seg *s = seg_new();
	build_mixed(s, 3);
	size_t hole = s->len;
	seg_fill(s, 0, 1000);
	seg_msg(s, 50, 33, NULL);
	seg_done(s, 50);
	write_file(s->buf, s->len);
	struct got *g = calloc(1, sizeof *g);
	struct spool_read_result res;
	cr_assert_eq(read_file(g, &res), 0);
	cr_assert_eq(res.records, 5);
	want_recs(s, g, 0, 0, 5);
	cr_assert_eq(res.bad_regions, 1);
	cr_assert_eq(g->bad_off[0], hole);
	cr_assert_eq(g->bad_len[0], 1000);
	cr_assert_eq(g->bad_why[0], SPOOL_REC_BAD_MAGIC);
	cr_assert_eq(res.torn_bytes, 0);
	cr_assert_eq(res.valid_end, s->len);
	free(g);
	seg_free(s);
}

Test(spool_read, callback_stops_the_walk)
{
	struct seg *s = seg_new();
	build_mixed(s, 10);
	write_file(s->buf, s->len);
	struct got *g = calloc(1, sizeof *g);
	g->stop_after = 3;
	g->stop_value = 7;
	struct spool_read_result res;
	cr_assert_eq(read_file(g, &res), 7);
	cr_assert_eq(res.records, 3);
	cr_assert_eq(g->n, 3);
	cr_assert_eq(res.valid_end, s->off[3]);
	free(g);
	seg_free(s);
}

Test(spool_read, missing_file_and_directory)
{
	struct got *g = calloc(1, sizeof *g);
	struct spool_read_result res;
	cr_assert_eq(read_file(g, &res), -ENOENT);
	cr_assert_eq(spool_read_segment(tmpdir, on_rec, on_bad, g, &res),
			-EISDIR);
	free(g);
}

/* Records larger than the read chunk, thousands of small ones crossing
 * chunk boundaries, and damage in a record that straddles one. */
Test(spool_read, large_records_and_chunk_boundaries, .timeout = 60)
{
	struct seg *s = seg_new();
	uint64_t id = 0;
	seg_msg(s, id++, 6u << 20, NULL);
	for (int i = 0; i < 6000; i++)
		seg_msg(s, id++, 1000, NULL);
	seg_msg(s, id++, 9u << 20, NULL);
	seg_done(s, 0);
	size_t n = s->n;
	write_file(s->buf, s->len);
	struct got *g = calloc(1, sizeof *g);
	struct spool_read_result res;
	cr_assert_eq(read_file(g, &res), 0);
	cr_assert_eq(res.records, n);
	want_recs(s, g, 0, 0, n);
	cr_assert_eq(res.valid_end, s->len);

	/* Damage the small record holding the first 10 MiB boundary. */
	size_t mark = 10u << 20, v = 1;
	while (!(s->off[v] <= mark && mark < s->off[v] + s->rlen[v]))
		v++;
	s->buf[s->off[v] + 40] ^= 0x04;
	write_file(s->buf, s->len);
	memset(g, 0, sizeof *g);
	cr_assert_eq(read_file(g, &res), 0);
	cr_assert_eq(res.records, n - 1);
	want_recs(s, g, 0, 0, v);
	want_recs(s, g, v, v + 1, n);
	cr_assert_eq(g->nbad, 1);
	cr_assert_eq(g->bad_off[0], s->off[v]);
	cr_assert_eq(g->bad_len[0], s->rlen[v]);
	free(g);
	seg_free(s);
}
