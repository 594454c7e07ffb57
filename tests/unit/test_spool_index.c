/* SPDX-License-Identifier: MIT */
/*
 * Tests for store/spool_index.c: fixed cases for domains, duplicates,
 * unknown DONEs and segment death (pins), the scheduler's next_us, busy and
 * add hook, then random add/done/rotate/remove
 * sequences checked after every few steps against a plain array model:
 * queue order, counts, bytes, pending recipients, freeing, segment deadness.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/spool_index.h"

#define T_ADDR_MAX 128
#define T_DOM_MAX 64

static struct spool_index_msg t_msg(uint64_t id, uint32_t seg, uint32_t n,
		const struct spool_rec_addr *a)
{
	struct spool_index_msg m = {
		.msgid = id, .segment_id = seg, .rec_len = 1000 + (uint32_t)id,
		.off = id * 10, .time_us = id * 7, .body_len = 500 + id,
		.nrcpt = n, .rcpts = a,
	};
	return m;
}

static struct spool_rec_addr A(const char *s)
{
	struct spool_rec_addr a = { s, strlen(s) };
	return a;
}

static uint64_t q_count(const struct spool_index *idx, const char *d)
{
	const struct spool_index_queue *q = spool_index_queue(idx, d, strlen(d));
	struct spool_index_qstat st;
	if (q == NULL)
		return 0;
	spool_index_queue_stat(q, &st);
	return st.messages;
}

Test(spool_index, domains_grouping_and_case)
{
	struct spool_index *idx = spool_index_new();
	uint32_t seg;
	cr_assert_eq(spool_index_segment_add(idx, 0x100, &seg), 0);

	struct spool_rec_addr r[] = {
		A("a@Customer.Example"), A("b@customer.example."),
		A("c@other.example"), A("\"x@y\"@CUSTOMER.example"),
		A("postmaster"),
	};
	struct spool_index_msg m = t_msg(1, seg, 5, r);
	cr_assert_eq(spool_index_add_msg(idx, &m), 0);
	cr_assert_eq(spool_index_add_msg(idx, &m), -EEXIST);

	const struct spool_index_queue *q =
		spool_index_queue(idx, "CUSTOMER.EXAMPLE..", 18);
	cr_assert_not_null(q);
	struct spool_index_qstat st;
	spool_index_queue_stat(q, &st);
	cr_assert_eq(st.messages, 1);
	cr_assert_eq(st.recipients, 3);
	cr_assert_eq(st.bytes, 501);
	cr_assert_eq(st.domain_len, 16);
	cr_assert(memcmp(st.domain, "customer.example", 16) == 0);
	cr_assert_eq(spool_index_domain_bytes(idx, "customer.EXAMPLE", 16), 501);
	cr_assert_eq(spool_index_domain_bytes(idx, "nowhere.example", 15), 0);

	struct spool_index_iter it;
	struct spool_index_entry e;
	spool_index_queue_iter(q, &it);
	cr_assert(spool_index_queue_next(&it, &e));
	cr_assert_eq(e.msgid, 1);
	cr_assert_eq(e.npending, 3);
	cr_assert_eq(e.rcpts[0], 0);
	cr_assert_eq(e.rcpts[1], 1);
	cr_assert_eq(e.rcpts[2], 3);
	cr_assert_eq(e.nrcpt, 5);
	cr_assert_eq(e.off, 10);
	cr_assert_eq(e.rec_len, 1001);
	cr_assert_not(spool_index_queue_next(&it, &e));

	cr_assert_eq(q_count(idx, "other.example"), 1);
	cr_assert_eq(q_count(idx, ""), 1);
	struct spool_index_totals t;
	spool_index_totals(idx, &t);
	cr_assert_eq(t.messages, 1);
	cr_assert_eq(t.recipients, 5);
	cr_assert_eq(t.domains, 3);

	int fin = -1;
	cr_assert_eq(spool_index_done(idx, 1, 2, SPOOL_DONE_DELIVERED, seg,
				&fin), 0);
	cr_assert_eq(fin, 0);
	cr_assert_null(spool_index_queue(idx, "other.example", 13));
	cr_assert_eq(spool_index_done(idx, 1, 2, SPOOL_DONE_DELIVERED, seg,
				&fin), -EALREADY);
	cr_assert_eq(spool_index_done(idx, 1, 5, SPOOL_DONE_DELIVERED, seg,
				&fin), -EINVAL);
	cr_assert_eq(spool_index_done(idx, 99, 0, SPOOL_DONE_DELIVERED, seg,
				&fin), -ENOENT);
	cr_assert_eq(spool_index_done(idx, 1, 0, SPOOL_DONE_DELIVERED, 77,
				&fin), -EINVAL);
	cr_assert_eq(spool_index_done(idx, 1, 1, SPOOL_DONE_BOUNCED, seg,
				&fin), 0);
	q = spool_index_queue(idx, "customer.example", 16);
	spool_index_queue_stat(q, &st);
	cr_assert_eq(st.recipients, 2);
	spool_index_queue_iter(q, &it);
	cr_assert(spool_index_queue_next(&it, &e));
	cr_assert_eq(e.npending, 2);
	cr_assert((e.rcpts[0] == 0 && e.rcpts[1] == 3) ||
			(e.rcpts[0] == 3 && e.rcpts[1] == 0));
	cr_assert_eq(spool_index_done(idx, 1, 0, SPOOL_DONE_EXPIRED, seg,
				&fin), 0);
	cr_assert_eq(spool_index_done(idx, 1, 3, SPOOL_DONE_EXPIRED, seg,
				&fin), 0);
	cr_assert_eq(fin, 0);
	cr_assert_null(spool_index_queue(idx, "customer.example", 16));
	cr_assert_eq(spool_index_done(idx, 1, 4, SPOOL_DONE_DELIVERED, seg,
				&fin), 0);
	cr_assert_eq(fin, 1);
	cr_assert_eq(spool_index_msg_find(idx, 1, &e), -ENOENT);
	spool_index_totals(idx, &t);
	cr_assert_eq(t.messages, 0);
	cr_assert_eq(t.recipients, 0);
	cr_assert_eq(t.domains, 0);
	cr_assert_eq(t.delivered, 2);
	cr_assert_eq(t.bounced, 1);
	cr_assert_eq(t.expired, 2);
	size_t cur = 0;
	cr_assert_null(spool_index_queue_each(idx, &cur));
	/* A message without recipients is refused. */
	m = t_msg(2, seg, 0, r);
	cr_assert_eq(spool_index_add_msg(idx, &m), -EINVAL);
	spool_index_free(idx);
}

Test(spool_index, segment_death_and_pins)
{
	struct spool_index *idx = spool_index_new();
	uint32_t s0, s1, s2, ids[8];
	struct spool_index_seg_stat st;
	struct spool_rec_addr r[] = { A("a@d.example"), A("b@e.example") };

	cr_assert_eq(spool_index_segment_add(idx, 0x10, &s0), 0);
	struct spool_index_msg m = t_msg(1, s0, 2, r);
	cr_assert_eq(spool_index_add_msg(idx, &m), 0);
	m = t_msg(2, s0, 1, r);
	cr_assert_eq(spool_index_add_msg(idx, &m), 0);
	/* All done while open: not dead until sealed. */
	cr_assert_eq(spool_index_done(idx, 2, 0, SPOOL_DONE_DELIVERED, s0,
				NULL), 0);
	cr_assert_eq(spool_index_take_dead(idx, ids, 8), 0);
	cr_assert_eq(spool_index_segment_seal(idx, s0), 0);
	cr_assert_eq(spool_index_take_dead(idx, ids, 8), 0);

	cr_assert_eq(spool_index_segment_add(idx, 0x20, &s1), 0);
	cr_assert_eq(spool_index_done(idx, 1, 0, SPOOL_DONE_DELIVERED, s1,
				NULL), 0);
	cr_assert_eq(spool_index_segment_stat(idx, s1, &st), 0);
	cr_assert_eq(st.pins, 1);
	cr_assert_eq(spool_index_segment_seal(idx, s1), 0);
	cr_assert_eq(spool_index_segment_add(idx, 0x30, &s2), 0);
	int fin;
	cr_assert_eq(spool_index_done(idx, 1, 1, SPOOL_DONE_DELIVERED, s2,
				&fin), 0);
	cr_assert_eq(fin, 1);
	cr_assert_eq(spool_index_segment_seal(idx, s2), 0);

	cr_assert_eq(spool_index_segment_stat(idx, s0, &st), 0);
	cr_assert_eq(st.live_msgs, 0);
	cr_assert_eq(st.live_bytes, 0);
	cr_assert_eq(st.total_bytes, 1001 + 1002 + 40);
	cr_assert_eq(st.first_seq, 0x10);
	cr_assert_eq(spool_index_segment_stat(idx, s1, &st), 0);
	cr_assert_eq(st.total_bytes, 40);

	/* s1 and s2 hold DONEs for s0's messages: only s0 may go first. */
	cr_assert_eq(spool_index_segment_remove(idx, s1), -EBUSY);
	cr_assert_eq(spool_index_take_dead(idx, ids, 8), 1);
	cr_assert_eq(ids[0], s0);
	cr_assert_eq(spool_index_take_dead(idx, ids, 8), 0);
	cr_assert_eq(spool_index_segment_remove(idx, s0), 0);
	cr_assert_eq(spool_index_segment_stat(idx, s0, &st), -ENOENT);
	cr_assert_eq(spool_index_take_dead(idx, ids, 8), 2);
	cr_assert_eq(ids[0], s1);
	cr_assert_eq(ids[1], s2);
	cr_assert_eq(spool_index_segment_remove(idx, s2), 0);
	cr_assert_eq(spool_index_segment_remove(idx, s1), 0);
	cr_assert_eq(spool_index_segment_remove(idx, s1), -ENOENT);
	struct spool_index_totals t;
	spool_index_totals(idx, &t);
	cr_assert_eq(t.segments, 0);
	cr_assert_eq(t.total_bytes, 0);

	/* Ids keep growing after the array emptied. */
	uint32_t s3;
	cr_assert_eq(spool_index_segment_add(idx, 0x40, &s3), 0);
	cr_assert_eq(s3, s2 + 1);
	uint32_t cur = 0, id;
	cr_assert(spool_index_segment_next(idx, &cur, &id));
	cr_assert_eq(id, s3);
	cr_assert_not(spool_index_segment_next(idx, &cur, &id));
	spool_index_free(idx);
}

/* ---- random sequences against a model ----------------------------------- */

#define M_MSGS 3000
#define M_RCPT_MAX 6
#define M_SEGS 256
#define M_DONES (M_MSGS * M_RCPT_MAX)
#define M_CHECK_EVERY 16

static const char *const m_domains[] = {
	"customer.example", "b.example", "mail.c.example", "d.example",
	"x.y.z.example", "", "e.example",
};
#define M_NDOM (sizeof m_domains / sizeof m_domains[0])

struct m_msg {
	uint64_t id;
	uint32_t seg;
	uint32_t nrcpt;
	unsigned dom[M_RCPT_MAX];   /* index into m_domains */
	int done[M_RCPT_MAX];
	int live;                   /* some recipient pending */
	uint64_t body_len;
};

struct m_done {
	uint32_t holder, target;    /* segments: DONE in holder for target */
};

struct model {
	uint64_t rng;
	struct m_msg msgs[M_MSGS];
	size_t n;
	char addr[M_MSGS][M_RCPT_MAX][T_ADDR_MAX];
	struct m_done dones[M_DONES];
	size_t ndones;
	int seg_exists[M_SEGS];
	int seg_sealed[M_SEGS];
	int seg_taken[M_SEGS];
	uint32_t cur_seg;
	uint32_t nsegs;
};

static uint64_t rnd(struct model *md)
{
	/* xorshift64* */
	md->rng ^= md->rng >> 12;
	md->rng ^= md->rng << 25;
	md->rng ^= md->rng >> 27;
	return md->rng * 2685821657736338717ull;
}

static unsigned rndn(struct model *md, unsigned n)
{
	return (unsigned)(rnd(md) % n);
}

/* An address in the domain, in a random case, sometimes with a trailing
 * dot or an '@' in a quoted local part. */
static void m_addr(struct model *md, char *out, unsigned d, unsigned u)
{
	const char *dom = m_domains[d];
	char buf[T_DOM_MAX];
	size_t i;

	if (dom[0] == '\0') {
		snprintf(out, T_ADDR_MAX, "postmaster%u", u);
		return;
	}
	for (i = 0; dom[i] != '\0'; i++)
		buf[i] = rndn(md, 2) ? (char)toupper((unsigned char)dom[i]) :
			dom[i];
	buf[i] = '\0';
	snprintf(out, T_ADDR_MAX, "%su%u@%s%s", rndn(md, 8) == 0 ?
			"\"q@r\"" : "", u, buf, rndn(md, 8) == 0 ? "." : "");
}

/* Which segments the model says are dead: sealed, no live message, no
 * DONE for a message in another segment that still exists. */
static void m_dead_all(const struct model *md, int *dead)
{
	for (uint32_t s = 0; s < md->nsegs; s++)
		dead[s] = md->seg_exists[s] && md->seg_sealed[s];
	for (size_t i = 0; i < md->n; i++)
		if (md->msgs[i].live)
			dead[md->msgs[i].seg] = 0;
	for (size_t i = 0; i < md->ndones; i++)
		if (md->seg_exists[md->dones[i].target])
			dead[md->dones[i].holder] = 0;
}

static int m_seg_dead(const struct model *md, uint32_t s)
{
	int dead[M_SEGS];
	m_dead_all(md, dead);
	return dead[s];
}

static void m_check(struct model *md, struct spool_index *idx)
{
	uint64_t live = 0, rcpts = 0, ndom = 0;

	for (unsigned d = 0; d < M_NDOM; d++) {
		/* Expected queue: live messages with a pending recipient in
		 * d, in arrival (model) order. */
		uint64_t cnt = 0, rc = 0, bytes = 0;
		char name[T_ADDR_MAX];
		size_t len = strlen(m_domains[d]);
		for (size_t i = 0; i <= len; i++)
			name[i] = rndn(md, 2) ?
				(char)toupper((unsigned char)m_domains[d][i]) :
				m_domains[d][i];
		const struct spool_index_queue *q =
			spool_index_queue(idx, name, len);
		struct spool_index_iter it;
		struct spool_index_entry e;
		spool_index_queue_iter(q, &it);
		for (size_t i = 0; i < md->n; i++) {
			struct m_msg *m = &md->msgs[i];
			uint32_t pend = 0, want[M_RCPT_MAX];
			if (!m->live)
				continue;
			for (uint32_t r = 0; r < m->nrcpt; r++)
				if (m->dom[r] == d && !m->done[r])
					want[pend++] = r;
			if (pend == 0)
				continue;
			cnt++;
			rc += pend;
			bytes += m->body_len;
			cr_assert(spool_index_queue_next(&it, &e),
					"domain %u: queue ends early", d);
			cr_assert_eq(e.msgid, m->id, "domain %u: order", d);
			cr_assert_eq(e.segment_id, m->seg);
			cr_assert_eq(e.npending, pend);
			/* Same set of recipients. */
			for (uint32_t k = 0; k < pend; k++) {
				int found = 0;
				for (uint32_t j = 0; j < pend; j++)
					found |= e.rcpts[j] == want[k];
				cr_assert(found, "msg %llu rcpt %u missing",
						(unsigned long long)m->id,
						want[k]);
			}
		}
		cr_assert_not(spool_index_queue_next(&it, &e),
				"domain %u: queue too long", d);
		if (cnt == 0) {
			cr_assert_null(q);
			cr_assert_eq(spool_index_domain_bytes(idx, name, len), 0);
			continue;
		}
		ndom++;
		struct spool_index_qstat st;
		spool_index_queue_stat(q, &st);
		cr_assert_eq(st.messages, cnt);
		cr_assert_eq(st.recipients, rc);
		cr_assert_eq(st.bytes, bytes);
		cr_assert_eq(spool_index_domain_bytes(idx, name, len), bytes);
		cr_assert_eq(st.domain_len, len);
		cr_assert(memcmp(st.domain, m_domains[d], len) == 0);
	}
	for (size_t i = 0; i < md->n; i++) {
		struct m_msg *m = &md->msgs[i];
		struct spool_index_entry e;
		int r = spool_index_msg_find(idx, m->id, &e);
		if (!m->live) {
			cr_assert_eq(r, -ENOENT);
			continue;
		}
		cr_assert_eq(r, 0);
		live++;
		uint32_t pend = 0;
		for (uint32_t k = 0; k < m->nrcpt; k++)
			pend += !m->done[k];
		cr_assert_eq(e.npending, pend);
		rcpts += pend;
	}
	struct spool_index_totals t;
	spool_index_totals(idx, &t);
	cr_assert_eq(t.messages, live);
	cr_assert_eq(t.recipients, rcpts);
	cr_assert_eq(t.domains, ndom);
	size_t cur = 0, seen = 0;
	while (spool_index_queue_each(idx, &cur) != NULL)
		seen++;
	cr_assert_eq(seen, ndom);

	int dead[M_SEGS];
	uint64_t lm[M_SEGS] = { 0 };
	m_dead_all(md, dead);
	for (size_t i = 0; i < md->n; i++)
		lm[md->msgs[i].seg] += md->msgs[i].live;
	for (uint32_t s = 0; s < md->nsegs; s++) {
		struct spool_index_seg_stat st;
		int r = spool_index_segment_stat(idx, s, &st);
		if (!md->seg_exists[s]) {
			cr_assert_eq(r, -ENOENT);
			continue;
		}
		cr_assert_eq(r, 0);
		cr_assert_eq(st.dead, dead[s], "segment %u", s);
		cr_assert_eq(st.live_msgs, lm[s]);
	}
}

static void m_run(uint64_t seed, unsigned ops)
{
	static struct model md_store;
	struct model *md = &md_store;
	struct spool_index *idx = spool_index_new();
	uint32_t ids[M_SEGS];

	memset(md, 0, sizeof *md);
	md->rng = seed * 0x9E3779B97F4A7C15ull + 1;
	cr_assert_eq(spool_index_segment_add(idx, 0, &md->cur_seg), 0);
	md->seg_exists[md->cur_seg] = 1;
	md->nsegs = 1;

	for (unsigned op = 0; op < ops; op++) {
		unsigned k = rndn(md, 100);
		if (k < 40 && md->n < M_MSGS) {
			struct m_msg *m = &md->msgs[md->n];
			struct spool_rec_addr a[M_RCPT_MAX];
			m->id = 1000 + md->n * 3 + rndn(md, 3);
			m->seg = md->cur_seg;
			m->nrcpt = 1 + rndn(md, rndn(md, 4) == 0 ? M_RCPT_MAX : 2);
			m->body_len = 100 + rndn(md, 5000);
			for (uint32_t r = 0; r < m->nrcpt; r++) {
				m->dom[r] = rndn(md, M_NDOM);
				m_addr(md, md->addr[md->n][r], m->dom[r], r);
				a[r] = A(md->addr[md->n][r]);
			}
			struct spool_index_msg im = {
				.msgid = m->id, .segment_id = m->seg,
				.rec_len = 200 + (uint32_t)m->body_len,
				.off = op, .time_us = op,
				.body_len = m->body_len, .nrcpt = m->nrcpt,
				.rcpts = a,
			};
			cr_assert_eq(spool_index_add_msg(idx, &im), 0);
			m->live = 1;
			md->n++;
			if (rndn(md, 10) == 0) /* the same id again */
				cr_assert_eq(spool_index_add_msg(idx, &im),
						-EEXIST);
		} else if (k < 85 && md->n > 0) {
			struct m_msg *m = &md->msgs[rndn(md, (unsigned)md->n)];
			uint32_t r = rndn(md, m->nrcpt);
			int fin = -1;
			int ret = spool_index_done(idx, m->id, r,
					SPOOL_DONE_DELIVERED, md->cur_seg, &fin);
			if (!m->live) {
				cr_assert_eq(ret, -ENOENT);
			} else if (m->done[r]) {
				cr_assert_eq(ret, -EALREADY);
			} else {
				cr_assert_eq(ret, 0);
				m->done[r] = 1;
				int all = 1;
				for (uint32_t j = 0; j < m->nrcpt; j++)
					all &= m->done[j];
				cr_assert_eq(fin, all);
				m->live = !all;
				if (m->seg != md->cur_seg) {
					cr_assert_lt(md->ndones, M_DONES);
					md->dones[md->ndones].holder =
						md->cur_seg;
					md->dones[md->ndones].target = m->seg;
					md->ndones++;
				}
			}
		} else if (k < 88) {
			int fin;
			cr_assert_eq(spool_index_done(idx, 7, 0,
					SPOOL_DONE_BOUNCED, md->cur_seg, &fin),
					-ENOENT);
		} else if (k < 92 && md->nsegs < M_SEGS) {
			/* Rotate: seal the head, open the next. */
			cr_assert_eq(spool_index_segment_seal(idx, md->cur_seg),
					0);
			md->seg_sealed[md->cur_seg] = 1;
			cr_assert_eq(spool_index_segment_add(idx, md->nsegs,
						&md->cur_seg), 0);
			cr_assert_eq(md->cur_seg, md->nsegs);
			md->seg_exists[md->cur_seg] = 1;
			md->nsegs++;
		} else if (k < 97) {
			/* Unlink whatever died, as the lead would. */
			size_t n = spool_index_take_dead(idx, ids, M_SEGS);
			for (size_t i = 0; i < n; i++) {
				cr_assert(m_seg_dead(md, ids[i]));
				cr_assert_not(md->seg_taken[ids[i]]);
				md->seg_taken[ids[i]] = 1;
				if (rndn(md, 4) != 0) {
					cr_assert_eq(spool_index_segment_remove(
							idx, ids[i]), 0);
					md->seg_exists[ids[i]] = 0;
				}
			}
			/* Taken but kept: remove later. */
			for (uint32_t s = 0; s < md->nsegs; s++) {
				if (md->seg_taken[s] && md->seg_exists[s] &&
				    rndn(md, 2)) {
					cr_assert_eq(spool_index_segment_remove(
							idx, s), 0);
					md->seg_exists[s] = 0;
				}
			}
		}
		if (op % M_CHECK_EVERY == 0)
			m_check(md, idx);
	}
	m_check(md, idx);

	/* Drain everything: every message frees, every segment dies. */
	for (size_t i = 0; i < md->n; i++) {
		struct m_msg *m = &md->msgs[i];
		for (uint32_t r = 0; r < m->nrcpt; r++) {
			if (!m->live || m->done[r])
				continue;
			int fin;
			cr_assert_eq(spool_index_done(idx, m->id, r,
					SPOOL_DONE_EXPIRED, md->cur_seg, &fin),
					0);
			m->done[r] = 1;
			if (m->seg != md->cur_seg) {
				md->dones[md->ndones].holder = md->cur_seg;
				md->dones[md->ndones].target = m->seg;
				md->ndones++;
			}
			int all = 1;
			for (uint32_t j = 0; j < m->nrcpt; j++)
				all &= m->done[j];
			cr_assert_eq(fin, all);
			m->live = !all;
		}
	}
	cr_assert_eq(spool_index_segment_seal(idx, md->cur_seg), 0);
	md->seg_sealed[md->cur_seg] = 1;
	m_check(md, idx);
	for (uint32_t s = 0; s < md->nsegs; s++)
		if (md->seg_taken[s] && md->seg_exists[s]) {
			cr_assert_eq(spool_index_segment_remove(idx, s), 0);
			md->seg_exists[s] = 0;
		}
	size_t n;
	while ((n = spool_index_take_dead(idx, ids, M_SEGS)) > 0) {
		for (size_t i = 0; i < n; i++) {
			cr_assert(m_seg_dead(md, ids[i]));
			cr_assert_eq(spool_index_segment_remove(idx, ids[i]), 0);
			md->seg_exists[ids[i]] = 0;
		}
	}
	struct spool_index_totals t;
	spool_index_totals(idx, &t);
	cr_assert_eq(t.segments, 0, "segments left: %llu",
			(unsigned long long)t.segments);
	cr_assert_eq(t.messages, 0);
	cr_assert_eq(t.domains, 0);
	cr_assert_eq(t.live_bytes, 0);
	cr_assert_eq(t.total_bytes, 0);
	spool_index_free(idx);
}

Test(spool_index, random_model_seeds)
{
	for (uint64_t seed = 1; seed <= 8; seed++)
		m_run(seed, 6000);
}

Test(spool_index, random_model_long)
{
	m_run(4242, 20000);
}

/* One round of grow_and_drain: n messages through one domain and back to
 * none, done in a scattered order (the queue keeps arrival order, done on
 * the entry a walk just returned is allowed). Returns the index memory at
 * the peak, when all n are indexed. */
static uint64_t grow_and_drain_round(struct spool_index *idx, uint32_t seg, uint64_t base_id,
				     uint64_t n)
{
	struct spool_rec_addr r[] = { A("a@Big.Example"), A("b@small.example") };
	struct spool_index_totals t;
	uint64_t peak;

	for (uint64_t i = 0; i < n; i++) {
		struct spool_index_msg m = t_msg(base_id + i, seg, 1 + (i % 2), r);
		cr_assert_eq(spool_index_add_msg(idx, &m), 0);
	}
	cr_assert_eq(q_count(idx, "big.example"), n);
	cr_assert_eq(q_count(idx, "small.example"), n / 2);
	spool_index_totals(idx, &t);
	peak = t.mem_bytes;
	for (uint64_t i = 0; i < n; i += 3)
		cr_assert_eq(spool_index_done(idx, base_id + i, 0, SPOOL_DONE_DELIVERED,
					seg, NULL), 0);
	const struct spool_index_queue *q = spool_index_queue(idx, "BIG.example", 11);
	struct spool_index_iter it;
	struct spool_index_entry e;
	uint64_t prev = 0, cnt = 0;
	spool_index_queue_iter(q, &it);
	while (spool_index_queue_next(&it, &e)) {
		cr_assert(cnt == 0 || e.msgid > prev);
		cr_assert_neq((e.msgid - base_id) % 3, 0);
		prev = e.msgid;
		cnt++;
		if ((e.msgid - base_id) % 5 == 0)
			cr_assert_eq(spool_index_done(idx, e.msgid, 0,
					SPOOL_DONE_DELIVERED, seg, NULL), 0);
	}
	cr_assert_eq(cnt, n - (n + 2) / 3);
	for (uint64_t i = 0; i < n; i++) {
		if (i % 3 != 0 && i % 5 != 0)
			cr_assert_eq(spool_index_done(idx, base_id + i, 0,
					SPOOL_DONE_DELIVERED, seg, NULL), 0);
		if (i % 2)
			cr_assert_eq(spool_index_done(idx, base_id + i, 1,
					SPOOL_DONE_DELIVERED, seg, NULL), 0);
	}
	spool_index_totals(idx, &t);
	cr_assert_eq(t.messages, 0);
	cr_assert_eq(t.domains, 0);
	cr_assert_null(spool_index_queue(idx, "big.example", 11));
	return peak;
}

/* Many messages through one domain: the tables grow, shrink and keep
 * order; the memory of every message and queue entry is given back when
 * all are done. The message table keeps the size its peak needed (it
 * never shrinks: 16 bytes a slot), so the base is taken after a first
 * round; from there each round goes back to exactly that base, and costs
 * at least the messages' own records at its peak. */
#define GROW_N 50000u
#define GROW_MSG_MIN 32u   /* bytes a message costs at least, table slots apart */
#define GROW_ROUNDS 3
#define GROW_KEPT_DIV 2u   /* the table kept is less than half the peak */

Test(spool_index, grow_and_drain)
{
	struct spool_index *idx = spool_index_new();
	struct spool_index_totals t0, t;
	uint64_t peak[GROW_ROUNDS];
	uint32_t seg;

	cr_assert_eq(spool_index_segment_add(idx, 1, &seg), 0);
	spool_index_totals(idx, &t0);
	peak[0] = grow_and_drain_round(idx, seg, 0, GROW_N);
	spool_index_totals(idx, &t);
	cr_expect_gt(peak[0], t0.mem_bytes + (uint64_t)GROW_N * GROW_MSG_MIN,
		     "peak %" PRIu64 " bytes, empty %" PRIu64, peak[0], t0.mem_bytes);
	cr_expect_lt(t.mem_bytes, peak[0] / GROW_KEPT_DIV, "after the first round %" PRIu64
		     " bytes of %" PRIu64 " at the peak", t.mem_bytes, peak[0]);
	t0 = t;
	for (int k = 1; k < GROW_ROUNDS; k++) {
		peak[k] = grow_and_drain_round(idx, seg, (uint64_t)k * GROW_N, GROW_N);
		spool_index_totals(idx, &t);
		cr_expect_eq(t.mem_bytes, t0.mem_bytes, "round %d: %" PRIu64
			     " bytes left, the base is %" PRIu64, k, t.mem_bytes, t0.mem_bytes);
		cr_expect_eq(peak[k], peak[0], "round %d: peak %" PRIu64 ", first %" PRIu64,
			     k, peak[k], peak[0]);
	}
	spool_index_free(idx);
}

/* ---- compaction: moves, per-segment lists, statuses, stale copies ------- */

static int t_dead(struct spool_index *idx, uint32_t seg)
{
	struct spool_index_seg_stat st;
	cr_assert_eq(spool_index_segment_stat(idx, seg, &st), 0);
	return st.dead;
}

static void t_remove_dead(struct spool_index *idx, uint32_t want)
{
	uint32_t id;
	cr_assert_eq(spool_index_take_dead(idx, &id, 1), 1);
	cr_assert_eq(id, want);
	cr_assert_eq(spool_index_segment_remove(idx, id), 0);
}

Test(spool_index, move_accounting_list_and_status)
{
	struct spool_index *idx = spool_index_new();
	struct spool_rec_addr r[3] = { A("a@x.test"), A("b@y.test"), A("c@x.test") };
	struct spool_index_seg_stat st;
	struct spool_index_entry e;
	uint32_t a, h, rc[3];
	uint8_t sts[3];

	cr_assert_eq(spool_index_segment_add(idx, 0x10, &a), 0);
	for (uint64_t id = 1; id <= 3; id++) {
		struct spool_index_msg m = t_msg(id, a, 3, r);
		cr_assert_eq(spool_index_add_msg(idx, &m), 0);
	}
	cr_assert_eq(spool_index_segment_seal(idx, a), 0);
	cr_assert_eq(spool_index_segment_add(idx, 0x20, &h), 0);
	/* The segment's messages in record order. */
	cr_assert_eq(spool_index_segment_msg(idx, a, 0, &e), 0);
	cr_expect_eq(e.msgid, 1);
	cr_assert_eq(spool_index_segment_msg(idx, a, 11, &e), 0);
	cr_expect_eq(e.msgid, 2);
	cr_expect_eq(spool_index_segment_msg(idx, a, 31, &e), -ENOENT);
	/* Statuses kept per recipient. */
	cr_assert_eq(spool_index_done(idx, 2, 1, SPOOL_DONE_BOUNCED, h, NULL), 0);
	cr_assert_eq(spool_index_done(idx, 2, 2, SPOOL_DONE_EXPIRED, h, NULL), 0);
	cr_assert_eq(spool_index_msg_done(idx, 2, rc, sts, 3), 2);
	cr_expect(rc[0] == 1 && sts[0] == SPOOL_DONE_BOUNCED);
	cr_expect(rc[1] == 2 && sts[1] == SPOOL_DONE_EXPIRED);
	cr_expect_eq(spool_index_msg_done(idx, 1, rc, sts, 3), 0);
	cr_expect_eq(spool_index_msg_done(idx, 9, rc, sts, 3), -ENOENT);

	/* Wrong source or unknown message: nothing moves. */
	cr_expect_eq(spool_index_msg_move(idx, 2, a, 999, h, 0), -ESTALE);
	cr_expect_eq(spool_index_msg_move(idx, 2, a, 20, a, 0), -ESTALE);
	cr_expect_eq(spool_index_msg_move(idx, 9, a, 20, h, 0), -ENOENT);
	cr_expect_eq(spool_index_msg_move(idx, 2, a, 20, 77, 0), -EINVAL);
	cr_assert_eq(spool_index_segment_stat(idx, h, &st), 0);
	cr_expect_eq(st.live_msgs, 0);
	cr_expect_eq(st.total_bytes, 2 * 40 + 1002); /* DONEs + a stale copy */

	cr_assert_eq(spool_index_msg_move(idx, 2, a, 20, h, 500), 0);
	cr_assert_eq(spool_index_msg_find(idx, 2, &e), 0);
	cr_expect(e.segment_id == h && e.off == 500 && e.npending == 1);
	cr_assert_eq(spool_index_segment_stat(idx, a, &st), 0);
	cr_expect_eq(st.live_msgs, 2);
	cr_expect_eq(st.live_bytes, 1001 + 1003);
	cr_assert_eq(spool_index_segment_stat(idx, h, &st), 0);
	cr_expect_eq(st.live_msgs, 1);
	cr_expect_eq(st.live_bytes, 1002);
	cr_expect_eq(st.total_bytes, 2 * 40 + 2 * 1002);
	cr_expect_eq(st.newest_us, 14);
	cr_expect_eq(q_count(idx, "x.test"), 3, "queues keep the message");
	cr_assert_eq(spool_index_segment_msg(idx, a, 11, &e), 0);
	cr_expect_eq(e.msgid, 3, "moved message left the old list");
	cr_assert_eq(spool_index_segment_msg(idx, h, 0, &e), 0);
	cr_expect_eq(e.msgid, 2);
	/* Statuses survive the move. */
	cr_assert_eq(spool_index_msg_done(idx, 2, rc, sts, 3), 2);
	cr_expect(sts[0] == SPOOL_DONE_BOUNCED && sts[1] == SPOOL_DONE_EXPIRED);
	idx = spool_index_free(idx);
}

Test(spool_index, move_pins_new_segment_until_old_is_gone)
{
	struct spool_index *idx = spool_index_new();
	struct spool_rec_addr r[1] = { A("a@x.test") };
	uint32_t a, h, h2;
	int fin;

	cr_assert_eq(spool_index_segment_add(idx, 0x10, &a), 0);
	for (uint64_t id = 1; id <= 2; id++) {
		struct spool_index_msg m = t_msg(id, a, 1, r);
		cr_assert_eq(spool_index_add_msg(idx, &m), 0);
	}
	cr_assert_eq(spool_index_segment_seal(idx, a), 0);
	cr_assert_eq(spool_index_segment_add(idx, 0x20, &h), 0);
	cr_assert_eq(spool_index_msg_move(idx, 1, a, 10, h, 0), 0);
	cr_assert_eq(spool_index_segment_seal(idx, h), 0);
	cr_assert_eq(spool_index_segment_add(idx, 0x30, &h2), 0);
	/* Message 1 finishes at its new place (DONE in h2, pinned to h). */
	cr_assert_eq(spool_index_done(idx, 1, 0, SPOOL_DONE_DELIVERED, h2, &fin), 0);
	cr_expect_eq(fin, 1);
	cr_assert_eq(spool_index_segment_seal(idx, h2), 0);
	/* h holds nothing live, but a still holds the old copy of 1: were h
	 * unlinked first, h2 could follow and 1 come back from a. */
	cr_expect_eq(t_dead(idx, h), 0);
	cr_expect_eq(t_dead(idx, h2), 0);
	cr_expect_eq(t_dead(idx, a), 0);
	/* a's last message moves away too: a dies first, then h, then h2. */
	cr_assert_eq(spool_index_msg_move(idx, 2, a, 20, h2, 0), 0);
	cr_expect_eq(t_dead(idx, a), 1);
	cr_expect_eq(t_dead(idx, h), 0);
	t_remove_dead(idx, a);
	t_remove_dead(idx, h);
	cr_expect_eq(t_dead(idx, h2), 0, "h2 holds message 2");
	cr_assert_eq(spool_index_done(idx, 2, 0, SPOOL_DONE_DELIVERED, h2, &fin), 0);
	t_remove_dead(idx, h2);
	idx = spool_index_free(idx);
}

Test(spool_index, stale_copies_from_an_interrupted_compaction)
{
	struct spool_index *idx = spool_index_new();
	struct spool_rec_addr r[2] = { A("a@x.test"), A("b@x.test") };
	struct spool_index_entry e;
	struct spool_index_msg m;
	uint32_t a, b, c, d;
	size_t cur = 0;
	int fin;

	/* As recovery sees it: 1, 2, 3 in a; copies of them in b, of 1 in c. */
	cr_assert_eq(spool_index_segment_add(idx, 0x10, &a), 0);
	for (uint64_t id = 1; id <= 3; id++) {
		m = t_msg(id, a, 2, r);
		cr_assert_eq(spool_index_add_msg(idx, &m), 0);
	}
	cr_expect_eq(spool_index_stale_next(idx, &cur, &e), 0);
	cr_assert_eq(spool_index_add_msg(idx, &m), -EEXIST, "same segment: no stale copy");
	cr_expect_eq(spool_index_stale_next(idx, &cur, &e), 0);
	cr_assert_eq(spool_index_segment_seal(idx, a), 0);
	cr_assert_eq(spool_index_segment_add(idx, 0x20, &b), 0);
	for (uint64_t id = 1; id <= 3; id++) {
		m = t_msg(id, b, 2, r);
		cr_assert_eq(spool_index_add_msg(idx, &m), -EEXIST);
	}
	cr_assert_eq(spool_index_segment_seal(idx, b), 0);
	cr_assert_eq(spool_index_segment_add(idx, 0x30, &c), 0);
	m = t_msg(1, c, 2, r);
	cr_assert_eq(spool_index_add_msg(idx, &m), -EEXIST);
	cr_assert_eq(spool_index_segment_seal(idx, c), 0);
	cur = 0;
	for (int i = 0; i < 3; i++)
		cr_assert_eq(spool_index_stale_next(idx, &cur, &e), 1);
	cr_expect_eq(spool_index_stale_next(idx, &cur, &e), 0);
	cr_expect_eq(t_dead(idx, b), 1, "b holds nothing live or pinned");
	cr_expect_eq(t_dead(idx, c), 0, "c's copy waits for b's");

	/* 1 and 2 copied again to d: d waits for a, for c (which waits for
	 * b) and for b. */
	cr_assert_eq(spool_index_segment_add(idx, 0x40, &d), 0);
	cr_assert_eq(spool_index_msg_move(idx, 1, a, 10, d, 0), 0);
	cr_assert_eq(spool_index_msg_move(idx, 2, a, 20, d, 2000), 0);
	cr_assert_eq(spool_index_segment_seal(idx, d), 0);
	/* 3 finishes where it is, before a copy: a must wait for b. */
	cr_assert_eq(spool_index_done(idx, 3, 0, SPOOL_DONE_DELIVERED, d, &fin), 0);
	cr_assert_eq(spool_index_done(idx, 3, 1, SPOOL_DONE_DELIVERED, d, &fin), 0);
	cr_expect_eq(fin, 1);
	cur = 0;
	cr_expect_eq(spool_index_stale_next(idx, &cur, &e), 0);
	for (uint64_t id = 1; id <= 2; id++) {
		cr_assert_eq(spool_index_done(idx, id, 0, SPOOL_DONE_DELIVERED, d, &fin), 0);
		cr_assert_eq(spool_index_done(idx, id, 1, SPOOL_DONE_DELIVERED, d, &fin), 0);
	}
	/* Order: b (nothing waits on it), then a and c, then d. */
	cr_expect_eq(t_dead(idx, a), 0, "a waits for b (stale copy of 3)");
	t_remove_dead(idx, b);
	{
		uint32_t ids[4];
		size_t n = spool_index_take_dead(idx, ids, 4);
		cr_assert_eq(n, 2);
		cr_expect((ids[0] == a && ids[1] == c) || (ids[0] == c && ids[1] == a));
		cr_assert_eq(spool_index_segment_remove(idx, a), 0);
		cr_expect_eq(t_dead(idx, d), 0, "d waits for c too");
		cr_assert_eq(spool_index_segment_remove(idx, c), 0);
	}
	t_remove_dead(idx, d);
	idx = spool_index_free(idx);
}

/* ---- NOTE records: the per-message "delay warned" flag ------------------ */

/* Quarantine: held from the MSG, cleared by a NOTE(RELEASED) (pinned like
 * any NOTE), kept by a compaction move; offsets above 30 bits (the bit it
 * took) are refused. */
Test(spool_index, held_mark_release_and_move)
{
	struct spool_index *idx = spool_index_new();
	uint32_t s0, s1, s2;
	struct spool_index_seg_stat st;
	struct spool_index_entry e;
	struct spool_rec_addr r[] = { A("a@d.example"), A("b@e.example") };

	cr_assert_eq(spool_index_segment_add(idx, 0x10, &s0), 0);
	struct spool_index_msg m = t_msg(1, s0, 2, r);
	m.held = 1;
	cr_assert_eq(spool_index_add_msg(idx, &m), 0);
	m = t_msg(2, s0, 1, r);
	cr_assert_eq(spool_index_add_msg(idx, &m), 0);
	m = t_msg(3, s0, 1, r);
	m.held = 1;
	m.off = (1ull << 30) - 1;
	cr_assert_eq(spool_index_add_msg(idx, &m), 0);
	cr_assert_eq(spool_index_msg_find(idx, 3, &e), 0);
	cr_assert_eq(e.held, 1);
	cr_assert_eq(e.off, (1ull << 30) - 1, "the held bit is not the offset's");
	m = t_msg(4, s0, 1, r);
	m.off = 1ull << 30;
	cr_assert_eq(spool_index_add_msg(idx, &m), -EINVAL);

	cr_assert_eq(spool_index_msg_find(idx, 1, &e), 0);
	cr_assert_eq(e.held, 1);
	cr_assert_eq(spool_index_msg_noted(idx, 1, SPOOL_NOTE_RELEASED), 0);
	cr_assert_eq(spool_index_msg_find(idx, 2, &e), 0);
	cr_assert_eq(e.held, 0);
	cr_assert_eq(spool_index_msg_noted(idx, 2, SPOOL_NOTE_RELEASED), 1);
	/* Every domain's walk and entry sees it; it stays queued. */
	cr_assert_eq(spool_index_msg_entry(idx, 1, "E.example", 9, &e), 0);
	cr_assert_eq(e.held, 1);
	cr_assert_eq(q_count(idx, "d.example"), 3);
	cr_assert_eq(spool_index_note(idx, 2, SPOOL_NOTE_RELEASED, s0), -EALREADY,
			"not held: nothing to release");

	/* Compaction moves it: still held. */
	cr_assert_eq(spool_index_segment_seal(idx, s0), 0);
	cr_assert_eq(spool_index_segment_add(idx, 0x20, &s1), 0);
	cr_assert_eq(spool_index_msg_move(idx, 1, s0, 10, s1, 64), 0);
	cr_assert_eq(spool_index_msg_entry(idx, 1, "d.example", 9, &e), 0);
	cr_assert_eq(e.held, 1);
	cr_assert_eq(e.npending, 1);
	cr_assert_eq(spool_index_msg_move(idx, 3, s0, (1ull << 30) - 1, s1, 1ull << 30),
			-EINVAL);

	/* The release, in a later segment: cleared, and pinned. */
	cr_assert_eq(spool_index_segment_seal(idx, s1), 0);
	cr_assert_eq(spool_index_segment_add(idx, 0x30, &s2), 0);
	cr_assert_eq(spool_index_note(idx, 1, SPOOL_NOTE_RELEASED, s2), 0);
	cr_assert_eq(spool_index_msg_find(idx, 1, &e), 0);
	cr_assert_eq(e.held, 0);
	cr_assert_eq(e.delay_warned, 0, "a release is not a warning");
	cr_assert_eq(spool_index_note(idx, 1, SPOOL_NOTE_RELEASED, s2), -EALREADY);
	cr_assert_eq(spool_index_segment_stat(idx, s2, &st), 0);
	cr_assert_eq(st.pins, 1);
	cr_assert_eq(st.total_bytes, 2 * (SPOOL_REC_HDR_SIZE + SPOOL_NOTE_PAYLOAD_SIZE));
	spool_index_free(idx);
}

Test(spool_index, note_flag_set_query_and_pins)
{
	struct spool_index *idx = spool_index_new();
	uint32_t s0, s1, s2, id;
	struct spool_index_seg_stat st;
	struct spool_index_entry e;
	struct spool_rec_addr r[] = { A("a@d.example"), A("b@e.example") };
	const uint64_t note_len = SPOOL_REC_HDR_SIZE + SPOOL_NOTE_PAYLOAD_SIZE;

	cr_assert_eq(spool_index_segment_add(idx, 0x10, &s0), 0);
	struct spool_index_msg m = t_msg(1, s0, 2, r);
	cr_assert_eq(spool_index_add_msg(idx, &m), 0);
	m = t_msg(2, s0, 1, r);
	cr_assert_eq(spool_index_add_msg(idx, &m), 0);

	cr_assert_eq(spool_index_msg_noted(idx, 1, SPOOL_NOTE_DELAY_WARNED), 0);
	cr_assert_eq(spool_index_msg_noted(idx, 9, SPOOL_NOTE_DELAY_WARNED),
			-ENOENT);
	cr_assert_eq(spool_index_msg_find(idx, 1, &e), 0);
	cr_assert_eq(e.delay_warned, 0);

	/* A NOTE in the same segment: flag set, bytes counted, no pin. */
	cr_assert_eq(spool_index_note(idx, 2, SPOOL_NOTE_DELAY_WARNED, s0), 0);
	cr_assert_eq(spool_index_msg_noted(idx, 2, SPOOL_NOTE_DELAY_WARNED), 1);
	cr_assert_eq(spool_index_msg_noted(idx, 1, SPOOL_NOTE_DELAY_WARNED), 0);
	cr_assert_eq(spool_index_note(idx, 2, SPOOL_NOTE_DELAY_WARNED, s0),
			-EALREADY);
	cr_assert_eq(spool_index_segment_stat(idx, s0, &st), 0);
	cr_assert_eq(st.total_bytes, 1001 + 1002 + 2 * note_len);
	cr_assert_eq(st.pins, 0);
	/* Unknown kind, unknown segment, unknown message. */
	cr_assert_eq(spool_index_note(idx, 1, (enum spool_note_kind)0, s0),
			-EINVAL);
	cr_assert_eq(spool_index_note(idx, 1, SPOOL_NOTE_DELAY_WARNED, 999),
			-EINVAL);
	cr_assert_eq(spool_index_note(idx, 7, SPOOL_NOTE_DELAY_WARNED, s0),
			-ENOENT);
	cr_assert_eq(spool_index_msg_noted(idx, 1, SPOOL_NOTE_DELAY_WARNED), 0);
	cr_assert_eq(spool_index_segment_seal(idx, s0), 0);

	/* A NOTE in a later segment pins it to the MSG's, like a DONE. */
	cr_assert_eq(spool_index_segment_add(idx, 0x20, &s1), 0);
	cr_assert_eq(spool_index_note(idx, 1, SPOOL_NOTE_DELAY_WARNED, s1), 0);
	cr_assert_eq(spool_index_segment_stat(idx, s1, &st), 0);
	cr_assert_eq(st.pins, 1);
	cr_assert_eq(st.total_bytes, note_len);

	/* Queue walks and look-ups see the flag. */
	const struct spool_index_queue *q = spool_index_queue(idx, "d.example", 9);
	struct spool_index_iter it;
	int seen = 0;
	spool_index_queue_iter(q, &it);
	while (spool_index_queue_next(&it, &e)) {
		cr_assert_eq(e.delay_warned, 1, "message %llu",
				(unsigned long long)e.msgid);
		seen++;
	}
	cr_assert_eq(seen, 2);

	/* Compaction moves message 1 to s2: the flag goes with it. */
	cr_assert_eq(spool_index_segment_add(idx, 0x30, &s2), 0);
	cr_assert_eq(spool_index_msg_move(idx, 1, s0, 10, s2, 0), 0);
	cr_assert_eq(spool_index_msg_noted(idx, 1, SPOOL_NOTE_DELAY_WARNED), 1);

	/* Finish everything: s1 (only a NOTE) may go only after s0. */
	cr_assert_eq(spool_index_done(idx, 2, 0, SPOOL_DONE_DELIVERED, s2,
				NULL), 0);
	cr_assert_eq(spool_index_done(idx, 1, 0, SPOOL_DONE_DELIVERED, s2,
				NULL), 0);
	cr_assert_eq(spool_index_done(idx, 1, 1, SPOOL_DONE_EXPIRED, s2,
				NULL), 0);
	cr_assert_eq(spool_index_msg_noted(idx, 1, SPOOL_NOTE_DELAY_WARNED),
			-ENOENT);
	cr_assert_eq(spool_index_segment_seal(idx, s1), 0);
	cr_assert_eq(spool_index_segment_seal(idx, s2), 0);
	cr_assert_eq(spool_index_segment_remove(idx, s1), -EBUSY);
	cr_assert_eq(spool_index_take_dead(idx, &id, 1), 1);
	cr_assert_eq(id, s0);
	cr_assert_eq(spool_index_segment_remove(idx, s0), 0);
	uint32_t ids[4];
	size_t n = spool_index_take_dead(idx, ids, 4);
	cr_assert_eq(n, 2);
	cr_assert(ids[0] == s1 || ids[1] == s1);
	spool_index_free(idx);
}

/* ---- outbound scheduling: next_us, busy and the add hook ---------------- */

#define T_HOOK_MAX 8

struct t_hook {
	struct spool_index *idx;
	unsigned n;
	uint64_t msgid[T_HOOK_MAX];
	char dom[T_HOOK_MAX][T_DOM_MAX];
};

static void t_hook_fn(void *arg, uint64_t msgid, const char *dom, size_t len)
{
	struct t_hook *h = arg;
	struct spool_index_entry e;

	cr_assert_lt(h->n, T_HOOK_MAX);
	cr_assert_lt(len, T_DOM_MAX);
	/* Called once the message is whole in the index and its queue. */
	cr_assert_eq(spool_index_msg_find(h->idx, msgid, &e), 0);
	cr_assert_not_null(spool_index_queue(h->idx, dom, len));
	h->msgid[h->n] = msgid;
	memcpy(h->dom[h->n], dom, len);
	h->dom[h->n][len] = '\0';
	h->n++;
}

/* The queue entry of msgid in domain d (which must exist), by look-up;
 * a walk of d's queue must return the same. */
static struct spool_index_entry t_entry(const struct spool_index *idx,
		const char *d, uint64_t msgid)
{
	const struct spool_index_queue *q = spool_index_queue(idx, d, strlen(d));
	struct spool_index_iter it;
	struct spool_index_entry e, w;

	cr_assert_eq(spool_index_msg_entry(idx, msgid, d, strlen(d), &e), 0,
			"message %llu not in %s", (unsigned long long)msgid, d);
	cr_assert_not_null(q, "no queue %s", d);
	spool_index_queue_iter(q, &it);
	while (spool_index_queue_next(&it, &w) && w.msgid != msgid)
		;
	cr_assert_eq(w.msgid, msgid);
	cr_assert_eq(w.next_us, e.next_us);
	cr_assert_eq(w.busy, e.busy);
	cr_assert_eq(w.npending, e.npending);
	cr_assert_eq(w.rcpts, e.rcpts);
	return e;
}

Test(spool_index, sched_next_busy_and_add_hook)
{
	struct spool_index *idx = spool_index_new();
	struct t_hook h = { .idx = idx };
	struct spool_index_entry e;
	struct spool_index_sched s;
	uint32_t s0, s1, cur;
	struct spool_rec_addr r[] = { A("a@D.example"), A("b@e.example"), A("c@d.example.") };
	struct spool_rec_addr r2[] = { A("x@other.example") };

	cr_assert_eq(spool_index_segment_add(idx, 0x10, &s0), 0);
	spool_index_set_add_hook(idx, t_hook_fn, &h);
	struct spool_index_msg m = t_msg(1, s0, 3, r);
	cr_assert_eq(spool_index_add_msg(idx, &m), 0);
	/* Once per distinct domain, as the queue spells it, first seen first. */
	cr_assert_eq(h.n, 2);
	cr_assert_eq(h.msgid[0], 1);
	cr_assert_str_eq(h.dom[0], "d.example");
	cr_assert_eq(h.msgid[1], 1);
	cr_assert_str_eq(h.dom[1], "e.example");
	/* A second copy is no new message. */
	cr_assert_eq(spool_index_add_msg(idx, &m), -EEXIST);
	cr_assert_eq(h.n, 2);
	m = t_msg(2, s0, 1, r2);
	cr_assert_eq(spool_index_add_msg(idx, &m), 0);
	cr_assert_eq(h.n, 3);
	cr_assert_str_eq(h.dom[2], "other.example");

	/* New entries: due at once, not busy. */
	e = t_entry(idx, "d.example", 1);
	cr_assert_eq(e.next_us, 0);
	cr_assert_eq(e.busy, 0);
	cur = 0;
	cr_assert_eq(spool_index_msg_sched_next(idx, 1, &cur, &s), 0);

	/* Per (message, domain), whatever the case and trailing dots. */
	cr_assert_eq(spool_index_set_next(idx, 1, "D.EXAMPLE.", 10, 123456789), 0);
	cr_assert_eq(spool_index_msg_entry(idx, 1, "d.EXAMPLE", 9, &e), 0);
	cr_assert_eq(e.next_us, 123456789);
	cr_assert_eq(e.npending, 2);
	cr_assert_eq(e.rcpts[0], 0);
	cr_assert_eq(e.rcpts[1], 2);
	cr_assert_eq(spool_index_msg_entry(idx, 1, "other.example", 13, &e), -ENOENT);
	cr_assert_eq(spool_index_msg_entry(idx, 9, "d.example", 9, &e), -ENOENT);
	cr_assert_eq(spool_index_set_busy(idx, 1, "e.example", 9, 7), 0);
	e = t_entry(idx, "d.example", 1);
	cr_assert_eq(e.next_us, 123456789);
	cr_assert_eq(e.busy, 0);
	e = t_entry(idx, "e.example", 1);
	cr_assert_eq(e.next_us, 0);
	cr_assert_eq(e.busy, 1);
	e = t_entry(idx, "other.example", 2);
	cr_assert_eq(e.next_us, 0);
	cr_assert_eq(e.busy, 0);
	/* A look-up has no domain: both 0. */
	cr_assert_eq(spool_index_msg_find(idx, 1, &e), 0);
	cr_assert_eq(e.next_us, 0);
	cr_assert_eq(e.busy, 0);
	/* Unknown message, unknown domain, a domain of another message. */
	cr_assert_eq(spool_index_set_next(idx, 9, "d.example", 9, 1), -ENOENT);
	cr_assert_eq(spool_index_set_next(idx, 1, "x.example", 9, 1), -ENOENT);
	cr_assert_eq(spool_index_set_next(idx, 1, "other.example", 13, 1), -ENOENT);
	cr_assert_eq(spool_index_set_busy(idx, 2, "d.example", 9, 1), -ENOENT);

	/* The walk compaction uses: only entries with a next attempt. */
	cr_assert_eq(spool_index_set_next(idx, 1, "e.example", 9, 42), 0);
	cur = 0;
	cr_assert_eq(spool_index_msg_sched_next(idx, 1, &cur, &s), 1);
	cr_assert_eq(s.domain_len, 9);
	cr_assert(memcmp(s.domain, "d.example", 9) == 0);
	cr_assert_eq(s.next_us, 123456789);
	cr_assert_eq(spool_index_msg_sched_next(idx, 1, &cur, &s), 1);
	cr_assert(memcmp(s.domain, "e.example", 9) == 0);
	cr_assert_eq(s.next_us, 42);
	cr_assert_eq(spool_index_msg_sched_next(idx, 1, &cur, &s), 0);
	cur = 0;
	cr_assert_eq(spool_index_msg_sched_next(idx, 9, &cur, &s), -ENOENT);

	/* e.example's only recipient done: that entry is gone. */
	cr_assert_eq(spool_index_done(idx, 1, 1, SPOOL_DONE_DELIVERED, s0, NULL), 0);
	cr_assert_eq(spool_index_set_busy(idx, 1, "e.example", 9, 0), -ENOENT);
	cr_assert_eq(spool_index_set_next(idx, 1, "e.example", 9, 5), -ENOENT);
	cr_assert_eq(spool_index_msg_entry(idx, 1, "e.example", 9, &e), -ENOENT);
	cur = 0;
	cr_assert_eq(spool_index_msg_sched_next(idx, 1, &cur, &s), 1);
	cr_assert(memcmp(s.domain, "d.example", 9) == 0);
	cr_assert_eq(spool_index_msg_sched_next(idx, 1, &cur, &s), 0);
	/* One of d.example's two done: the entry stays, with its state. */
	cr_assert_eq(spool_index_set_busy(idx, 1, "d.example", 9, 1), 0);
	cr_assert_eq(spool_index_done(idx, 1, 0, SPOOL_DONE_DELIVERED, s0, NULL), 0);
	e = t_entry(idx, "d.example", 1);
	cr_assert_eq(e.next_us, 123456789);
	cr_assert_eq(e.busy, 1);
	cr_assert_eq(e.npending, 1);

	/* A compaction move keeps both and tells the hook nothing. */
	cr_assert_eq(spool_index_segment_add(idx, 0x20, &s1), 0);
	cr_assert_eq(spool_index_msg_move(idx, 1, s0, 10, s1, 0), 0);
	e = t_entry(idx, "d.example", 1);
	cr_assert_eq(e.segment_id, s1);
	cr_assert_eq(e.next_us, 123456789);
	cr_assert_eq(e.busy, 1);
	cr_assert_eq(h.n, 3);

	/* No hook: no call. */
	spool_index_set_add_hook(idx, NULL, &h);
	m = t_msg(3, s1, 1, r2);
	cr_assert_eq(spool_index_add_msg(idx, &m), 0);
	cr_assert_eq(h.n, 3);
	cr_assert_eq(t_entry(idx, "other.example", 3).next_us, 0);

	/* The last recipient done: the message is gone. */
	cr_assert_eq(spool_index_done(idx, 1, 2, SPOOL_DONE_BOUNCED, s1, NULL), 0);
	cr_assert_eq(spool_index_set_next(idx, 1, "d.example", 9, 1), -ENOENT);
	cur = 0;
	cr_assert_eq(spool_index_msg_sched_next(idx, 1, &cur, &s), -ENOENT);
	spool_index_free(idx);
}
