/* SPDX-License-Identifier: MIT */
/*
 * Tests for the compact layout of store/spool_index.c (issue 17: at most
 * 64 bytes per held message): records in 256-record chunks per segment,
 * queues as arrays with holes, inline single-recipient messages that take
 * the general form when they get a next attempt time or a stale copy.
 * Checked against a plain reference model: growth past chunk boundaries,
 * removal in every order (forward, backward, strided, random), many
 * domains, compaction moves and a random mix of all operations.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/spool_index.h"

#define L_CHUNK 256u            /* records per chunk in spool_index.c */
#define L_N (3 * L_CHUNK + 17)  /* past three chunk boundaries */
#define L_DOMS 7u
#define L_ADDR 64

struct l_model {
	uint64_t n;
	uint32_t seg[L_N * 2];
	uint64_t off[L_N * 2];
	uint32_t dom[L_N * 2];
	int live[L_N * 2];
	uint64_t next[L_N * 2];
	uint64_t off_next;       /* where the next record goes (any segment) */
};

static uint64_t l_rng = 12345;

static uint32_t l_rnd(uint32_t n)
{
	l_rng ^= l_rng << 13;
	l_rng ^= l_rng >> 7;
	l_rng ^= l_rng << 17;
	return (uint32_t)(l_rng % n);
}

static void l_addr(char *buf, uint32_t dom)
{
	snprintf(buf, L_ADDR, "u@d%u.example", dom);
}

static void l_add(struct spool_index *idx, struct l_model *md, uint32_t seg,
		uint64_t id, uint32_t dom)
{
	char a[L_ADDR];
	l_addr(a, dom);
	struct spool_rec_addr ra = { a, strlen(a) };
	struct spool_index_msg m = {
		.msgid = id, .segment_id = seg, .rec_len = 300, .off = md->off_next,
		.time_us = 1000 + id, .body_len = 100 + id, .nrcpt = 1,
		.rcpts = &ra,
	};
	cr_assert_eq(spool_index_add_msg(idx, &m), 0, "add %" PRIu64, id);
	md->seg[id] = seg;
	md->off[id] = md->off_next;
	md->off_next += 300;
	md->dom[id] = dom;
	md->live[id] = 1;
	md->next[id] = 0;
	if (id + 1 > md->n)
		md->n = id + 1;
}

static const struct l_model *l_sort_md;

static int l_by_off(const void *a, const void *b)
{
	uint64_t x = l_sort_md->off[*(const uint64_t *)a];
	uint64_t y = l_sort_md->off[*(const uint64_t *)b];
	return x < y ? -1 : x > y;
}

/* Every queue walks in arrival (id) order with exactly the live messages
 * of its domain; look-ups, totals and segment walks agree with the model. */
static void l_check(const struct spool_index *idx, const struct l_model *md,
		uint32_t ndoms, const uint32_t *segs, uint32_t nsegs)
{
	uint64_t live = 0;

	for (uint32_t d = 0; d < ndoms; d++) {
		char name[L_ADDR];
		snprintf(name, sizeof name, "d%u.example", d);
		const struct spool_index_queue *q = spool_index_queue(idx, name, strlen(name));
		struct spool_index_iter it;
		struct spool_index_entry e;
		uint64_t want = 0;
		for (uint64_t id = 0; id < md->n; id++)
			want += md->live[id] && md->dom[id] == d;
		if (want == 0) {
			cr_assert_null(q, "domain %u", d);
			continue;
		}
		cr_assert_not_null(q, "domain %u", d);
		struct spool_index_qstat st;
		spool_index_queue_stat(q, &st);
		cr_assert_eq(st.messages, want, "domain %u", d);
		uint64_t id = 0, got = 0;
		spool_index_queue_iter(q, &it);
		while (spool_index_queue_next(&it, &e)) {
			while (id < md->n && !(md->live[id] && md->dom[id] == d))
				id++;
			cr_assert_lt(id, md->n);
			cr_assert_eq(e.msgid, id, "domain %u: got %" PRIu64 " want %" PRIu64,
				     d, e.msgid, id);
			if (got == 0)
				cr_assert_eq(st.oldest_us, 1000 + id);
			cr_assert_eq(e.segment_id, md->seg[id]);
			cr_assert_eq(e.off, md->off[id]);
			cr_assert_eq(e.body_len, 100 + id);
			cr_assert_eq(e.npending, 1);
			cr_assert_eq(e.rcpts[0], 0);
			cr_assert_eq(e.next_us, md->next[id]);
			id++;
			got++;
		}
		cr_assert_eq(got, want);
	}
	for (uint64_t id = 0; id < md->n; id++) {
		struct spool_index_entry e;
		int r = spool_index_msg_find(idx, id, &e);
		cr_assert_eq(r, md->live[id] ? 0 : -ENOENT, "find %" PRIu64, id);
		live += md->live[id];
	}
	struct spool_index_totals t;
	spool_index_totals(idx, &t);
	cr_assert_eq(t.messages, live);
	/* Each segment's walk: its live messages in offset order. */
	static uint64_t want[L_N * 2];
	for (uint32_t s = 0; s < nsegs; s++) {
		struct spool_index_entry e;
		uint64_t from = 0, nw = 0, i = 0;
		for (uint64_t id = 0; id < md->n; id++)
			if (md->live[id] && md->seg[id] == segs[s])
				want[nw++] = id;
		l_sort_md = md;
		qsort(want, nw, sizeof *want, l_by_off);
		while (spool_index_segment_msg(idx, segs[s], from, &e) == 0) {
			cr_assert_lt(i, nw, "segment %u: more than %" PRIu64, segs[s], nw);
			cr_assert_eq(e.msgid, want[i], "segment %u", segs[s]);
			from = e.off + e.rec_len;
			i++;
		}
		cr_assert_eq(i, nw, "segment %u walk stopped early", segs[s]);
	}
}

enum l_order { L_FORWARD, L_BACKWARD, L_STRIDE, L_RANDOM, L_ORDERS };

static void l_perm(uint64_t *p, uint64_t n, enum l_order o)
{
	for (uint64_t i = 0; i < n; i++)
		p[i] = i;
	if (o == L_BACKWARD) {
		for (uint64_t i = 0; i < n; i++)
			p[i] = n - 1 - i;
	} else if (o == L_STRIDE) {
		uint64_t k = 0;
		for (uint64_t s = 0; s < 5; s++)
			for (uint64_t i = s; i < n; i += 5)
				p[k++] = i;
	} else if (o == L_RANDOM) {
		for (uint64_t i = n - 1; i > 0; i--) {
			uint64_t j = l_rnd((uint32_t)i + 1), t = p[i];
			p[i] = p[j];
			p[j] = t;
		}
	}
}

/* Fill one segment past three chunk boundaries, remove in each order,
 * checking every so often; then the segment dies and every byte the
 * messages took comes back. */
Test(spool_index_layout, chunks_and_removal_in_every_order)
{
	static struct l_model md;
	static uint64_t perm[L_N];

	for (int o = 0; o < L_ORDERS; o++) {
		struct spool_index *idx = spool_index_new();
		struct spool_index_totals t0, t;
		uint32_t seg;
		memset(&md, 0, sizeof md);
		cr_assert_eq(spool_index_segment_add(idx, 1, &seg), 0);
		spool_index_totals(idx, &t0);
		for (uint64_t id = 0; id < L_N; id++)
			l_add(idx, &md, seg, id, (uint32_t)(id % L_DOMS));
		l_check(idx, &md, L_DOMS, &seg, 1);
		cr_assert_eq(spool_index_segment_seal(idx, seg), 0);
		l_perm(perm, L_N, (enum l_order)o);
		for (uint64_t i = 0; i < L_N; i++) {
			int fin = 0;
			cr_assert_eq(spool_index_done(idx, perm[i], 0, SPOOL_DONE_DELIVERED,
						      seg, &fin), 0);
			cr_assert_eq(fin, 1);
			cr_assert_eq(spool_index_done(idx, perm[i], 0, SPOOL_DONE_DELIVERED,
						      seg, NULL), -ENOENT);
			md.live[perm[i]] = 0;
			if (i % 97 == 0 || i + 1 == L_N)
				l_check(idx, &md, L_DOMS, &seg, 1);
		}
		uint32_t dead;
		cr_assert_eq(spool_index_take_dead(idx, &dead, 1), 1);
		cr_assert_eq(dead, seg);
		cr_assert_eq(spool_index_segment_remove(idx, seg), 0);
		spool_index_totals(idx, &t);
		/* What stays: the tables at the size their peak needed. */
		cr_assert_eq(t.messages, 0);
		cr_assert_eq(t.domains, 0);
		cr_assert_lt(t.mem_bytes, t0.mem_bytes + 64 * 1024, "order %d: %" PRIu64
			     " bytes left, %" PRIu64 " empty", o, t.mem_bytes, t0.mem_bytes);
		spool_index_free(idx);
	}
}

/* The layout's promise: at most 64 bytes a held single-recipient message
 * once the tables are big (here 100,000 messages over 1,000 domains, the
 * id table at its fullest). */
Test(spool_index_layout, bytes_per_message)
{
	struct spool_index *idx = spool_index_new();
	struct spool_index_totals t;
	uint32_t seg;
	const uint64_t n = 98000; /* 3/4 of the 2^17-slot id table */

	cr_assert_eq(spool_index_segment_add(idx, 1, &seg), 0);
	for (uint64_t id = 0; id < n; id++) {
		char a[L_ADDR];
		l_addr(a, (uint32_t)(id % 1000));
		struct spool_rec_addr ra = { a, strlen(a) };
		struct spool_index_msg m = {
			.msgid = id, .segment_id = seg, .rec_len = 300,
			.off = id * 300, .time_us = id, .body_len = 100,
			.nrcpt = 1, .rcpts = &ra,
		};
		cr_assert_eq(spool_index_add_msg(idx, &m), 0);
	}
	spool_index_totals(idx, &t);
	cr_assert_leq(t.mem_bytes, 64 * n, "%.1f bytes a message",
		      (double)t.mem_bytes / (double)n);
	spool_index_free(idx);
}

/* Thousands of domains, each queue growing, losing entries in the middle
 * and squeezing on later appends: order and counts stay exact. */
Test(spool_index_layout, many_domains_squeeze)
{
	static struct l_model md;
	struct spool_index *idx = spool_index_new();
	uint32_t seg;
	const uint32_t ndoms = 300;

	memset(&md, 0, sizeof md);
	cr_assert_eq(spool_index_segment_add(idx, 1, &seg), 0);
	for (int round = 0; round < 2; round++) {
		uint64_t base = md.n;
		for (uint64_t i = 0; i < L_N; i++)
			l_add(idx, &md, seg, base + i, l_rnd(ndoms));
		/* Most of each queue goes, from the middle out. */
		for (uint64_t id = 0; id < md.n; id++) {
			if (md.live[id] && l_rnd(4) != 0) {
				cr_assert_eq(spool_index_done(idx, id, 0, SPOOL_DONE_BOUNCED,
							      seg, NULL), 0);
				md.live[id] = 0;
			}
		}
		l_check(idx, &md, ndoms, &seg, 1);
	}
	spool_index_free(idx);
}

/* A random mix against the model: adds, dones, compaction moves to a new
 * segment, next attempt times and busy marks (which move a single-recipient
 * message to its general form), stale copies. */
Test(spool_index_layout, random_mix_with_moves)
{
	static struct l_model md;
	uint32_t segs[8];
	uint32_t nsegs = 0;
	struct spool_index *idx = spool_index_new();

	memset(&md, 0, sizeof md);
	cr_assert_eq(spool_index_segment_add(idx, 1, &segs[nsegs++]), 0);
	for (unsigned op = 0; op < 6000; op++) {
		uint32_t k = l_rnd(100);
		if (k < 35 && md.n < L_N * 2) {
			uint64_t id = md.n;
			l_add(idx, &md, segs[nsegs - 1], id, l_rnd(L_DOMS));
		} else if (k < 60 && md.n > 0) {
			uint64_t id = l_rnd((uint32_t)md.n);
			int r = spool_index_done(idx, id, 0, SPOOL_DONE_DELIVERED,
						 segs[nsegs - 1], NULL);
			cr_assert_eq(r, md.live[id] ? 0 : -ENOENT);
			md.live[id] = 0;
		} else if (k < 70 && md.n > 0) {
			uint64_t id = l_rnd((uint32_t)md.n);
			char d[L_ADDR];
			snprintf(d, sizeof d, "D%u.example.", md.dom[id]);
			uint64_t nx = l_rnd(3) ? 5000 + op : 0;
			int r = spool_index_set_next(idx, id, d, strlen(d), nx);
			cr_assert_eq(r, md.live[id] ? 0 : -ENOENT);
			if (r == 0)
				md.next[id] = nx;
			r = spool_index_set_busy(idx, id, d, strlen(d), 1);
			cr_assert_eq(r, md.live[id] ? 0 : -ENOENT);
			if (r == 0) {
				struct spool_index_entry e;
				cr_assert_eq(spool_index_msg_entry(idx, id, d, strlen(d), &e), 0);
				cr_assert_eq(e.busy, 1);
				cr_assert_eq(e.next_us, md.next[id]);
				cr_assert_eq(spool_index_set_busy(idx, id, d, strlen(d), 0), 0);
			}
		} else if (k < 72 && nsegs < 8) {
			/* Compaction: a new segment takes copies of the live
			 * messages of the oldest one with any, in offset order. */
			uint32_t to;
			cr_assert_eq(spool_index_segment_add(idx, 100 + nsegs, &to), 0);
			segs[nsegs++] = to;
			uint32_t from = segs[l_rnd(nsegs - 1)];
			for (uint64_t id = 0; id < md.n; id++) {
				if (!md.live[id] || md.seg[id] != from)
					continue;
				uint64_t noff = md.off_next;
				md.off_next += 300;
				cr_assert_eq(spool_index_msg_move(idx, id, from, md.off[id],
								  to, noff), 0);
				md.seg[id] = to;
				md.off[id] = noff;
			}
		}
		if (op % 500 == 0)
			l_check(idx, &md, L_DOMS, segs, nsegs);
	}
	l_check(idx, &md, L_DOMS, segs, nsegs);
	spool_index_free(idx);
}
