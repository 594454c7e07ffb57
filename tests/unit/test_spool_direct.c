/* SPDX-License-Identifier: MIT */
/*
 * Tests for store/spool_direct.c, the staging of a batch for an O_DIRECT
 * write: each staged image is written into a memory "segment" at its
 * start, as the kernel would, and the segment must then hold exactly the
 * records in order with zeros after them; the tail a failed batch leaves
 * is the one it found; short writes count whole blocks only; a slot's
 * staging memory is given back once a big record made it grow past
 * SPOOL_DIRECT_BATCH_MAX (the bound on what a shard keeps per slot).
 * test_spool runs the same code end to end on a real file.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/spool_direct.h"

#define SEG_MAX (16u << 20)
#define ALIGN SPOOL_DIRECT_ALIGN

struct seg {
	char *disk;       /* what the direct writes left */
	char *want;       /* the records as appended */
	uint64_t end;     /* the records' end */
	struct spool_direct d;
	struct spool_stage st;
};

static void seg_init(struct seg *g)
{
	memset(g, 0, sizeof(*g));
	g->disk = calloc(1, SEG_MAX);
	g->want = calloc(1, SEG_MAX);
	cr_assert(g->disk && g->want);
	spool_direct_segment(&g->d);
}

static void seg_free(struct seg *g)
{
	spool_stage_trim(&g->st, 1);
	free(g->disk);
	free(g->want);
}

/* Stage n records of the given sizes (bytes from seed) at the end. */
static void seg_stage(struct seg *g, const size_t *sizes, unsigned n, unsigned seed)
{
	struct iovec iov[8];
	uint64_t total = 0;

	cr_assert(n <= 8);
	for (unsigned i = 0; i < n; i++) {
		char *p = g->want + g->end + total;

		for (size_t k = 0; k < sizes[i]; k++)
			p[k] = (char)('a' + (seed + i + k) % 26);
		iov[i].iov_base = p;
		iov[i].iov_len = sizes[i];
		total += sizes[i];
	}
	cr_assert_eq(spool_direct_stage(&g->d, &g->st, g->end, iov, n, total), 0);
	cr_expect_eq(g->st.start % ALIGN, 0, "staged at %" PRIu64, g->st.start);
	cr_expect_eq(g->st.len % ALIGN, 0, "staged %zu bytes", g->st.len);
	cr_expect_eq((uintptr_t)g->st.p % ALIGN, 0, "staging memory not aligned");
	cr_expect_eq(g->st.start + g->st.len, spool_direct_end(g->end, total));
	cr_expect_leq(g->st.start, g->end);
	cr_expect_lt(g->end - g->st.start, ALIGN, "more than the tail block staged again");
	g->end += total;
}

/* The staged image lands on the "disk" (a whole write). */
static void seg_write(struct seg *g)
{
	memcpy(g->disk + g->st.start, g->st.p, g->st.len);
	cr_expect_eq(spool_direct_wrote(&g->st, (int)g->st.len), 1);
}

static void seg_expect(const struct seg *g)
{
	uint64_t zend = spool_direct_end(g->end, 0);

	cr_expect_eq(memcmp(g->disk, g->want, g->end), 0, "records differ on disk");
	for (uint64_t i = g->end; i < zend; i++)
		if (g->disk[i] != 0) {
			cr_expect_fail("byte %" PRIu64 " after the records is not zero", i);
			return;
		}
}

Test(spool_direct, batches_share_blocks_and_keep_the_records)
{
	/* Sizes that end inside a block, exactly on one, span several, and
	 * a batch that stays inside the tail block. */
	static const size_t a[] = { 100, 3000 }, b[] = { 996 }, c[] = { 9000, 1, 4095 },
			    e[] = { 10 }, f[] = { 4096 * 3 };
	struct seg g;

	seg_init(&g);
	seg_stage(&g, a, 2, 1);
	seg_write(&g);
	seg_expect(&g);
	seg_stage(&g, b, 1, 2); /* ends on a block boundary: no tail after */
	cr_expect_eq(g.end % ALIGN, 0);
	seg_write(&g);
	seg_stage(&g, c, 3, 3);
	seg_write(&g);
	seg_stage(&g, e, 1, 4); /* inside the block the last batch ended in */
	cr_expect_eq(g.st.len, ALIGN);
	seg_write(&g);
	seg_stage(&g, f, 1, 5);
	seg_write(&g);
	seg_expect(&g);
	seg_free(&g);
}

/* A batch that failed is not on disk; the segment is cut back to where it
 * began and the next batch must start from the tail that was there. */
Test(spool_direct, cut_gives_back_the_tail_it_found)
{
	static const size_t a[] = { 5000 }, b[] = { 700, 800 }, c[] = { 300 };
	struct seg g;
	uint64_t before;

	seg_init(&g);
	seg_stage(&g, a, 1, 1);
	seg_write(&g);
	before = g.end;
	seg_stage(&g, b, 2, 2); /* never written */
	spool_direct_cut(&g.d, &g.st, before);
	g.end = before;
	memset(g.want + before, 0, 1500);
	seg_stage(&g, c, 1, 3);
	seg_write(&g);
	seg_expect(&g);
	seg_free(&g);
}

/* Short writes: only whole blocks count (the rest goes again); less than
 * one block is an error, not a retry of the same; done never passes len. */
Test(spool_direct, short_writes_count_whole_blocks)
{
	struct spool_stage s = { .len = 3 * ALIGN };

	cr_expect_eq(spool_direct_wrote(&s, (int)ALIGN + 100), 0);
	cr_expect_eq(s.done, ALIGN);
	cr_expect_eq(spool_direct_wrote(&s, (int)ALIGN - 1), -EIO);
	cr_expect_eq(s.done, ALIGN);
	cr_expect_eq(spool_direct_wrote(&s, (int)(2 * ALIGN)), 1);
	cr_expect_eq(s.done, s.len);
	cr_expect_eq(spool_direct_wrote(&s, (int)ALIGN), 1);
	cr_expect_eq(s.done, s.len, "done went past len");
}

/* The staging memory a slot keeps: reused while batches stay within
 * SPOOL_DIRECT_BATCH_MAX, given back after one big record made it grow,
 * and always at the end. */
Test(spool_direct, staging_memory_is_bounded)
{
	static const size_t small[] = { 64u << 10 }, big[] = { SPOOL_DIRECT_BATCH_MAX + 12345 },
			    most[] = { SPOOL_DIRECT_BATCH_MAX - ALIGN };
	struct seg g;
	char *p;

	seg_init(&g);
	seg_stage(&g, small, 1, 1);
	seg_write(&g);
	p = g.st.p;
	spool_stage_trim(&g.st, 0);
	cr_expect_eq(g.st.p, p, "a small slot's memory was given back");
	seg_stage(&g, most, 1, 2);
	seg_write(&g);
	spool_stage_trim(&g.st, 0);
	cr_expect_not_null(g.st.p, "memory within the bound was given back");
	cr_expect_leq(g.st.cap, SPOOL_DIRECT_BATCH_MAX + ALIGN);
	seg_stage(&g, big, 1, 3);
	cr_expect_gt(g.st.cap, SPOOL_DIRECT_BATCH_MAX + ALIGN);
	seg_write(&g);
	spool_stage_trim(&g.st, 0);
	cr_expect_null(g.st.p, "a slot kept %zu bytes after one big record", g.st.cap);
	cr_expect_eq(g.st.cap, 0);
	seg_stage(&g, small, 1, 4); /* and it stages again from nothing */
	seg_write(&g);
	seg_expect(&g);
	spool_stage_trim(&g.st, 1);
	cr_expect_null(g.st.p);
	seg_free(&g);
}
