/* SPDX-License-Identifier: MIT */
/*
 * Tests for spool_rec_decode_hdr (store/spool_rec.h): the header alone
 * decodes, without the payload its CRC covers (the spool indexes its own MSG
 * heads this way, the body being elsewhere), while every damaged or short
 * header gives the same answer as spool_rec_decode. Each case is replayed
 * whole and then as every shorter prefix.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "store/spool_rec.h"

#define HEAD_MAX 256

enum mutation { MUT_NONE, MUT_MAGIC, MUT_VERSION, MUT_TYPE, MUT_DONE_LENGTH, MUT_HUGE_LENGTH,
	MUT_SCHED_SHORT, MUT_SCHED_LONG };
enum rec_kind { KIND_MSG_HEAD, KIND_DONE, KIND_SCHED };

static const struct {
	const char *name;
	enum rec_kind kind;
	enum mutation mut;
	int want;                 /* with all 32 header bytes */
} cases[] = {
	{ "msg head", KIND_MSG_HEAD, MUT_NONE, SPOOL_REC_OK },
	{ "done", KIND_DONE, MUT_NONE, SPOOL_REC_OK },
	{ "sched", KIND_SCHED, MUT_NONE, SPOOL_REC_OK },
	{ "bad magic", KIND_MSG_HEAD, MUT_MAGIC, SPOOL_REC_BAD_MAGIC },
	{ "bad version", KIND_MSG_HEAD, MUT_VERSION, SPOOL_REC_BAD_VERSION },
	{ "unknown type", KIND_MSG_HEAD, MUT_TYPE, SPOOL_REC_BAD_PAYLOAD },
	{ "done of wrong length", KIND_DONE, MUT_DONE_LENGTH, SPOOL_REC_BAD_LENGTH },
	{ "length over the maximum", KIND_MSG_HEAD, MUT_HUGE_LENGTH, SPOOL_REC_BAD_LENGTH },
	{ "sched shorter than its fixed part", KIND_SCHED, MUT_SCHED_SHORT, SPOOL_REC_BAD_LENGTH },
	{ "sched longer than its longest domain", KIND_SCHED, MUT_SCHED_LONG, SPOOL_REC_BAD_LENGTH },
};

static size_t build(char *p, enum rec_kind kind, enum mutation mut)
{
	static const char *rcpt[] = { "a@demo.test", "b@other.test" };
	static const size_t rcpt_len[] = { 11, 12 };
	static const char body[] = "Subject: x\r\n\r\nbody\r\n";
	size_t n;

	if (kind == KIND_DONE)
		n = spool_rec_encode_done(p, 0x0001000000000042ull, 1234567, 1,
					  SPOOL_DONE_DELIVERED);
	else if (kind == KIND_SCHED)
		n = spool_rec_encode_sched(p, 0x0001000000000042ull, 1234567, "demo.test", 9,
					   7654321);
	else
		n = spool_rec_encode_msg_head(p, 0x0001000000000042ull, 1234567, 0,
					      "s@example.org", 13, 2, rcpt, rcpt_len,
					      body, sizeof(body) - 1);
	switch (mut) {
	case MUT_NONE: break;
	case MUT_MAGIC: p[0] = 'X'; break;
	case MUT_VERSION: p[4] = (char)(SPOOL_REC_VERSION + 1); break;
	case MUT_TYPE: p[5] = 9; break;
	case MUT_DONE_LENGTH: p[8] = SPOOL_DONE_PAYLOAD_SIZE + 1; break;
	case MUT_HUGE_LENGTH: memset(p + 8, 0x7f, 4); break;
	case MUT_SCHED_SHORT: p[8] = SPOOL_SCHED_FIXED_SIZE - 1; break;
	case MUT_SCHED_LONG: p[8] = (char)((SPOOL_SCHED_PAYLOAD_MAX + 1) & 0xff);
		p[9] = (char)((SPOOL_SCHED_PAYLOAD_MAX + 1) >> 8); break;
	}
	return n;
}

/* What a prefix of n header bytes must say: the first bytes can already show
 * a bad magic (byte 0 on) or version (byte 4 on); anything else is AGAIN. */
static int want_prefix(enum mutation mut, size_t n)
{
	if (n == 0)
		return SPOOL_REC_AGAIN;
	if (mut == MUT_MAGIC)
		return SPOOL_REC_BAD_MAGIC;
	if (mut == MUT_VERSION && n > 4)
		return SPOOL_REC_BAD_VERSION;
	return SPOOL_REC_AGAIN;
}

Test(spool_rec_hdr, whole_and_every_prefix)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char p[HEAD_MAX];
		size_t len = build(p, cases[i].kind, cases[i].mut);
		struct spool_rec_hdr h;
		const char *payload;
		int rc = spool_rec_decode_hdr(p, len, &h);

		cr_expect_eq(rc, cases[i].want, "%s: got %d", cases[i].name, rc);
		if (cases[i].want != SPOOL_REC_OK) {
			/* The full decoder gives the same verdict. */
			cr_expect_eq(spool_rec_decode(p, len, &h, &payload), cases[i].want,
				     "%s: spool_rec_decode", cases[i].name);
		}
		for (size_t n = 0; n < SPOOL_REC_HDR_SIZE; n++) {
			rc = spool_rec_decode_hdr(p, n, &h);
			cr_expect_eq(rc, want_prefix(cases[i].mut, n), "%s, %zu bytes: got %d",
				     cases[i].name, n, rc);
		}
	}
}

/* A MSG head without its body: the header decodes with the fields it was
 * written with, though the full decoder must wait for the body. */
Test(spool_rec_hdr, msg_head_without_body)
{
	char p[HEAD_MAX];
	size_t len = build(p, KIND_MSG_HEAD, MUT_NONE);
	struct spool_rec_hdr h;
	const char *payload;

	cr_assert_eq(spool_rec_decode_hdr(p, len, &h), SPOOL_REC_OK);
	cr_expect_eq(h.type, SPOOL_REC_MSG);
	cr_expect_eq(h.msgid, 0x0001000000000042ull);
	cr_expect_eq(h.time_us, 1234567);
	cr_expect_eq(h.flags, 0);
	cr_expect_eq((size_t)h.length, len - SPOOL_REC_HDR_SIZE + 20, "length %u", h.length);
	cr_expect_eq(spool_rec_decode(p, len, &h, &payload), SPOOL_REC_AGAIN);
}
