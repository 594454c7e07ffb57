/* SPDX-License-Identifier: MIT */
/*
 * Tests for store/spool_rec.c: MSG, DONE, NOTE and SCHED round trips, every truncation of
 * a valid record is AGAIN, every single-bit flip is an error, and crafted
 * headers and payloads with each kind of damage.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/crc32c.h"
#include "store/spool_rec.h"

#define MAX_RCPT 1000

struct msg_case {
	const char *name;
	const char *sender;
	uint32_t nrcpt;
	const char *rcpt_pre; /* address: pre, index, post; NULL: empty */
	const char *rcpt_post;
	const char *body;
	size_t body_len;
	uint16_t flags;
};

static const char body_bin[] = "Received: x\r\n\r\n..dot\r\n\0NUL\rCR\xff\x80\r\n";

static const struct msg_case msg_cases[] = {
	{ "null_sender_no_rcpt_empty_body", "", 0, NULL, NULL, "", 0, 0 },
	{ "one_rcpt", "a@example.org", 1, "b", "@example.net",
	  "Subject: x\r\n\r\nhi\r\n", 19, 0 },
	{ "8bitmime_binary_body", "s@x", 2, "r", "@y", body_bin,
	  sizeof body_bin - 1, SPOOL_MSG_8BITMIME },
	{ "smtputf8", "\xc3\xa9@x", 1, "\xc3\xa9", "@y", "b\r\n", 3,
	  SPOOL_MSG_8BITMIME | SPOOL_MSG_SMTPUTF8 },
	{ "many_rcpts", "bulk@example.com", MAX_RCPT,
	  "user", "@customer.example", "x\r\n", 3, 0 },
	{ "empty_rcpt_address", "s@x", 3, NULL, NULL, "body\r\n", 6, 0 },
};

/* A whole encoded record (header + envelope + body) in one malloc. */
struct enc {
	char *rec;
	size_t len;
	char **rcpt;
	size_t *rcpt_len;
};

static void enc_msg(const struct msg_case *c, uint64_t id, uint64_t t,
		struct enc *e)
{
	e->rcpt = calloc(c->nrcpt + 1, sizeof *e->rcpt);
	e->rcpt_len = calloc(c->nrcpt + 1, sizeof *e->rcpt_len);
	cr_assert(e->rcpt != NULL && e->rcpt_len != NULL);
	for (uint32_t i = 0; i < c->nrcpt; i++) {
		char tmp[128];
		int r = c->rcpt_pre == NULL ? 0 : snprintf(tmp, sizeof tmp,
				"%s%u%s", c->rcpt_pre, i, c->rcpt_post);
		tmp[r] = '\0';
		cr_assert(r >= 0 && (size_t)r < sizeof tmp);
		e->rcpt[i] = strdup(tmp);
		e->rcpt_len[i] = (size_t)r;
	}
	size_t slen = strlen(c->sender);
	size_t head = spool_rec_msg_head_size(slen, c->nrcpt, e->rcpt_len);
	e->len = head + c->body_len;
	e->rec = malloc(e->len);
	cr_assert_not_null(e->rec);
	size_t w = spool_rec_encode_msg_head(e->rec, id, t, c->flags,
			c->sender, slen, c->nrcpt,
			(const char *const *)e->rcpt, e->rcpt_len, c->body,
			c->body_len);
	cr_assert_eq(w, head);
	if (c->body_len > 0)
		memcpy(e->rec + head, c->body, c->body_len);
}

static void enc_free(struct enc *e, uint32_t nrcpt)
{
	for (uint32_t i = 0; i < nrcpt; i++)
		free(e->rcpt[i]);
	free(e->rcpt);
	free(e->rcpt_len);
	free(e->rec);
}

static void check_msg(const struct msg_case *c, const struct enc *e,
		const char *rec, size_t n, uint64_t id, uint64_t t)
{
	struct spool_rec_hdr h;
	const char *payload;
	struct spool_rec_msg m;

	cr_assert_eq(spool_rec_decode(rec, n, &h, &payload), SPOOL_REC_OK,
			"%s", c->name);
	cr_assert_eq(h.type, SPOOL_REC_MSG);
	cr_assert_eq(h.version, SPOOL_REC_VERSION);
	cr_assert_eq(h.flags, c->flags);
	cr_assert_eq(h.msgid, id);
	cr_assert_eq(h.time_us, t);
	cr_assert_eq(SPOOL_REC_HDR_SIZE + h.length, e->len);
	cr_assert_eq(payload, rec + SPOOL_REC_HDR_SIZE);
	cr_assert_eq(spool_rec_decode_msg(payload, h.length, &m),
			SPOOL_REC_OK);
	cr_assert_eq(m.sender.len, strlen(c->sender));
	cr_assert_arr_eq(m.sender.p, c->sender, m.sender.len);
	cr_assert_eq(m.nrcpt, c->nrcpt);
	size_t cur = 0;
	for (uint32_t i = 0; i < c->nrcpt; i++) {
		struct spool_rec_addr a = spool_rec_msg_rcpt_next(&m, &cur);
		cr_assert_eq(a.len, e->rcpt_len[i], "%s rcpt %u", c->name, i);
		cr_assert_arr_eq(a.p, e->rcpt[i], a.len);
		if (i % 97 == 0 || i + 1 == c->nrcpt) {
			struct spool_rec_addr b = spool_rec_msg_rcpt(&m, i);
			cr_assert_eq(b.p, a.p);
			cr_assert_eq(b.len, a.len);
		}
	}
	/* Past the end: nothing, and no read outside the table. */
	struct spool_rec_addr z = spool_rec_msg_rcpt_next(&m, &cur);
	cr_assert_null(z.p);
	z = spool_rec_msg_rcpt(&m, c->nrcpt);
	cr_assert_null(z.p);
	cr_assert_eq(m.body_len, c->body_len);
	cr_assert_arr_eq(m.body, c->body, c->body_len);
}

Test(spool_rec, msg_round_trip)
{
	for (size_t k = 0; k < sizeof msg_cases / sizeof msg_cases[0]; k++) {
		const struct msg_case *c = &msg_cases[k];
		struct enc e;
		uint64_t id = spool_msgid_make(3, 1000 + k);
		uint64_t t = 1700000000123456ull + k;
		enc_msg(c, id, t, &e);
		check_msg(c, &e, e.rec, e.len, id, t);
		/* Bytes after the record are not part of it. */
		char *more = malloc(e.len + 64);
		memcpy(more, e.rec, e.len);
		memset(more + e.len, 'E', 64);
		check_msg(c, &e, more, e.len + 64, id, t);
		free(more);
		enc_free(&e, c->nrcpt);
	}
}

static const enum spool_done_status done_states[] = {
	SPOOL_DONE_DELIVERED, SPOOL_DONE_BOUNCED, SPOOL_DONE_EXPIRED,
};

Test(spool_rec, done_round_trip)
{
	char rec[SPOOL_REC_HDR_SIZE + SPOOL_DONE_PAYLOAD_SIZE];
	for (size_t k = 0; k < 3; k++) {
		uint64_t id = spool_msgid_make(1, 77);
		uint32_t idx = k == 2 ? UINT32_MAX : (uint32_t)k * 999;
		size_t n = spool_rec_encode_done(rec, id, 42, idx,
				done_states[k]);
		cr_assert_eq(n, sizeof rec);
		struct spool_rec_hdr h;
		const char *payload;
		cr_assert_eq(spool_rec_decode(rec, n, &h, &payload),
				SPOOL_REC_OK);
		cr_assert_eq(h.type, SPOOL_REC_DONE);
		cr_assert_eq(h.length, SPOOL_DONE_PAYLOAD_SIZE);
		cr_assert_eq(h.msgid, id);
		cr_assert_eq(h.time_us, 42);
		uint32_t gi;
		enum spool_done_status gs;
		cr_assert_eq(spool_rec_decode_done(payload, h.length, &gi, &gs),
				SPOOL_REC_OK);
		cr_assert_eq(gi, idx);
		cr_assert_eq(gs, done_states[k]);
	}
}

Test(spool_rec, header_layout_is_little_endian)
{
	char rec[SPOOL_REC_HDR_SIZE + SPOOL_DONE_PAYLOAD_SIZE];
	spool_rec_encode_done(rec, 0x0102030405060708ull, 0x1112131415161718ull,
			0x21222324u, SPOOL_DONE_BOUNCED);
	cr_assert_arr_eq(rec, "ETRN\x01\x02\x00\x00\x08\x00\x00\x00", 12);
	cr_assert_arr_eq(rec + 16, "\x08\x07\x06\x05\x04\x03\x02\x01", 8);
	cr_assert_arr_eq(rec + 24, "\x18\x17\x16\x15\x14\x13\x12\x11", 8);
	cr_assert_arr_eq(rec + 32, "\x24\x23\x22\x21\x02\x00\x00\x00", 8);
	uint32_t crc = crc32c(0, rec, 12);
	crc = crc32c(crc, rec + 16, 16);
	crc = crc32c(crc, rec + 32, 8);
	uint32_t stored = (uint32_t)(unsigned char)rec[12] |
		(uint32_t)(unsigned char)rec[13] << 8 |
		(uint32_t)(unsigned char)rec[14] << 16 |
		(uint32_t)(unsigned char)rec[15] << 24;
	cr_assert_eq(stored, crc);
}

/* Each prefix of a valid record, fed as the decoder would see a file being
 * read byte by byte, is AGAIN. */
static void check_truncations(const char *rec, size_t len)
{
	struct spool_rec_hdr h;
	const char *payload;
	for (size_t n = 0; n < len; n++) {
		char *cut = malloc(n + 1); /* exact size: ASan sees overreads */
		memcpy(cut, rec, n);
		int r = spool_rec_decode(n ? cut : NULL, n, &h, &payload);
		cr_assert_eq(r, SPOOL_REC_AGAIN, "prefix %zu of %zu: %d", n,
				len, r);
		free(cut);
	}
	cr_assert_eq(spool_rec_decode(rec, len, &h, &payload), SPOOL_REC_OK);
}

Test(spool_rec, every_truncation_is_again)
{
	for (size_t k = 0; k < sizeof msg_cases / sizeof msg_cases[0]; k++) {
		const struct msg_case *c = &msg_cases[k];
		if (c->nrcpt > 10)
			continue; /* quadratic; the short cases cover it */
		struct enc e;
		enc_msg(c, 5, 6, &e);
		check_truncations(e.rec, e.len);
		enc_free(&e, c->nrcpt);
	}
	char rec[SPOOL_REC_HDR_SIZE + SPOOL_DONE_PAYLOAD_SIZE];
	spool_rec_encode_done(rec, 1, 2, 3, SPOOL_DONE_EXPIRED);
	check_truncations(rec, sizeof rec);
	char note[SPOOL_REC_HDR_SIZE + SPOOL_NOTE_PAYLOAD_SIZE];
	spool_rec_encode_note(note, spool_msgid_make(3, 4), 5,
			SPOOL_NOTE_DELAY_WARNED);
	check_truncations(note, sizeof note);
}

/* Flip each bit in turn: never OK (a flipped length may be AGAIN). */
static void check_bit_flips(char *rec, size_t len)
{
	struct spool_rec_hdr h;
	const char *payload;
	for (size_t bit = 0; bit < len * 8; bit++) {
		rec[bit / 8] ^= (char)(1u << (bit % 8));
		int r = spool_rec_decode(rec, len, &h, &payload);
		cr_assert_neq(r, SPOOL_REC_OK, "bit %zu flipped decodes", bit);
		rec[bit / 8] ^= (char)(1u << (bit % 8));
	}
	cr_assert_eq(spool_rec_decode(rec, len, &h, &payload), SPOOL_REC_OK);
}

Test(spool_rec, every_bit_flip_is_an_error)
{
	for (size_t k = 0; k < sizeof msg_cases / sizeof msg_cases[0]; k++) {
		const struct msg_case *c = &msg_cases[k];
		if (c->nrcpt > 10)
			continue;
		struct enc e;
		enc_msg(c, spool_msgid_make(2, 9), 1700000000000000ull, &e);
		check_bit_flips(e.rec, e.len);
		enc_free(&e, c->nrcpt);
	}
	char rec[SPOOL_REC_HDR_SIZE + SPOOL_DONE_PAYLOAD_SIZE];
	spool_rec_encode_done(rec, 1, 2, 3, SPOOL_DONE_DELIVERED);
	check_bit_flips(rec, sizeof rec);
	char note[SPOOL_REC_HDR_SIZE + SPOOL_NOTE_PAYLOAD_SIZE];
	spool_rec_encode_note(note, spool_msgid_make(2, 9),
			1700000000000000ull, SPOOL_NOTE_DELAY_WARNED);
	check_bit_flips(note, sizeof note);
}

static void put32le(char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (char)(v >> (8 * i));
}

/* Recompute the CRC after a deliberate edit, so only the edit is wrong. */
static void fix_crc(char *rec, size_t payload_len)
{
	uint32_t crc = crc32c(0, rec, 12);
	crc = crc32c(crc, rec + 16, 16);
	crc = crc32c(crc, rec + SPOOL_REC_HDR_SIZE, payload_len);
	put32le(rec + 12, crc);
}

struct hdr_case {
	const char *name;
	size_t off;
	uint32_t val;
	int width; /* 1 or 4 bytes */
	int refix;
	int want;
};

static const struct hdr_case hdr_cases[] = {
	{ "bad_magic", 0, 0x4E525446u, 4, 1, SPOOL_REC_BAD_MAGIC },
	{ "zero_magic", 0, 0, 4, 1, SPOOL_REC_BAD_MAGIC },
	{ "version_0", 4, 0, 1, 1, SPOOL_REC_BAD_VERSION },
	{ "version_2", 4, 2, 1, 1, SPOOL_REC_BAD_VERSION },
	{ "type_0", 5, 0, 1, 1, SPOOL_REC_BAD_PAYLOAD },
	{ "type_5", 5, 5, 1, 1, SPOOL_REC_BAD_PAYLOAD },
	/* A SCHED needs at least its fixed 10 bytes; a DONE has 8. */
	{ "sched_length_8", 5, SPOOL_REC_SCHED, 1, 1, SPOOL_REC_BAD_LENGTH },
	{ "type_255", 5, 255, 1, 1, SPOOL_REC_BAD_PAYLOAD },
	{ "done_length_9", 8, 9, 4, 1, SPOOL_REC_BAD_LENGTH },
	{ "done_length_0", 8, 0, 4, 1, SPOOL_REC_BAD_LENGTH },
	{ "length_over_max", 8, SPOOL_REC_PAYLOAD_MAX + 1, 4, 1,
	  SPOOL_REC_BAD_LENGTH },
	{ "length_max_u32", 8, UINT32_MAX, 4, 1, SPOOL_REC_BAD_LENGTH },
	{ "crc_wrong", 12, 0xdeadbeefu, 4, 0, SPOOL_REC_BAD_CRC },
	{ "msgid_changed", 16, 0x55, 1, 0, SPOOL_REC_BAD_CRC },
	{ "time_changed", 24, 0x55, 1, 0, SPOOL_REC_BAD_CRC },
};

Test(spool_rec, bad_headers)
{
	char rec[SPOOL_REC_HDR_SIZE + SPOOL_DONE_PAYLOAD_SIZE + 16];
	struct spool_rec_hdr h;
	const char *payload;
	for (size_t k = 0; k < sizeof hdr_cases / sizeof hdr_cases[0]; k++) {
		const struct hdr_case *c = &hdr_cases[k];
		memset(rec, 0, sizeof rec);
		spool_rec_encode_done(rec, 1, 2, 3, SPOOL_DONE_DELIVERED);
		if (c->width == 4)
			put32le(rec + c->off, c->val);
		else
			rec[c->off] = (char)c->val;
		if (c->refix)
			fix_crc(rec, SPOOL_DONE_PAYLOAD_SIZE);
		int r = spool_rec_decode(rec, sizeof rec, &h, &payload);
		cr_assert_eq(r, c->want, "%s: got %d want %d", c->name, r,
				c->want);
	}
	/* A MSG whose length cannot hold the fixed envelope. */
	spool_rec_encode_done(rec, 1, 2, 3, SPOOL_DONE_DELIVERED);
	rec[5] = SPOOL_REC_MSG;
	fix_crc(rec, SPOOL_DONE_PAYLOAD_SIZE);
	cr_assert_eq(spool_rec_decode(rec, sizeof rec, &h, &payload),
			SPOOL_REC_BAD_LENGTH);
	/* Garbage is known from its first byte, not only after 32. */
	cr_assert_eq(spool_rec_decode("X", 1, &h, &payload),
			SPOOL_REC_BAD_MAGIC);
	cr_assert_eq(spool_rec_decode("ETRN\x07", 5, &h, &payload),
			SPOOL_REC_BAD_VERSION);
	cr_assert_eq(spool_rec_decode("ETR", 3, &h, &payload),
			SPOOL_REC_AGAIN);
}

/* A payload built by hand: u16 sender_len, u32 nrcpt, u32 body_len, ... */
struct payload_case {
	const char *name;
	const char *bytes;
	size_t len;
	int want;
};

#define P(s) s, sizeof(s) - 1
static const struct payload_case payload_cases[] = {
	{ "minimal", P("\0\0" "\0\0\0\0" "\0\0\0\0"), SPOOL_REC_OK },
	{ "short_fixed", P("\0\0" "\0\0\0\0" "\0\0\0"), SPOOL_REC_BAD_PAYLOAD },
	{ "sender_past_end", P("\5\0" "\0\0\0\0" "\0\0\0\0" "abcd"),
	  SPOOL_REC_BAD_PAYLOAD },
	{ "sender_ok", P("\4\0" "\0\0\0\0" "\0\0\0\0" "abcd"), SPOOL_REC_OK },
	{ "nrcpt_too_many", P("\0\0" "\2\0\0\0" "\0\0\0\0" "\1\0x"),
	  SPOOL_REC_BAD_PAYLOAD },
	{ "nrcpt_huge", P("\0\0" "\xff\xff\xff\xff" "\0\0\0\0" "\0\0\0\0"),
	  SPOOL_REC_BAD_PAYLOAD },
	{ "rcpt_len_past_end", P("\0\0" "\1\0\0\0" "\0\0\0\0" "\3\0xy"),
	  SPOOL_REC_BAD_PAYLOAD },
	{ "rcpt_len_half", P("\0\0" "\1\0\0\0" "\0\0\0\0" "\3"),
	  SPOOL_REC_BAD_PAYLOAD },
	{ "body_short", P("\0\0" "\0\0\0\0" "\3\0\0\0" "ab"),
	  SPOOL_REC_BAD_PAYLOAD },
	{ "body_long", P("\0\0" "\0\0\0\0" "\1\0\0\0" "ab"),
	  SPOOL_REC_BAD_PAYLOAD },
	{ "body_huge", P("\0\0" "\0\0\0\0" "\xff\xff\xff\xff" "ab"),
	  SPOOL_REC_BAD_PAYLOAD },
	{ "all_ok", P("\1\0" "\2\0\0\0" "\2\0\0\0" "s" "\1\0a" "\0\0" "bb"),
	  SPOOL_REC_OK },
};

Test(spool_rec, msg_payloads)
{
	for (size_t k = 0; k < sizeof payload_cases / sizeof payload_cases[0];
			k++) {
		const struct payload_case *c = &payload_cases[k];
		char *p = malloc(c->len + 1); /* exact size for ASan */
		memcpy(p, c->bytes, c->len);
		struct spool_rec_msg m;
		int r = spool_rec_decode_msg(p, c->len, &m);
		cr_assert_eq(r, c->want, "%s: got %d", c->name, r);
		if (r == SPOOL_REC_OK) {
			size_t cur = 0;
			for (uint32_t i = 0; i < m.nrcpt; i++)
				cr_assert_not_null(
					spool_rec_msg_rcpt_next(&m, &cur).p);
			cr_assert_eq((const char *)m.body + m.body_len,
					p + c->len);
		}
		/* Every truncation of a good payload is bad. */
		for (size_t n = 0; r == SPOOL_REC_OK && n < c->len; n++)
			cr_assert_eq(spool_rec_decode_msg(p, n, &m),
					SPOOL_REC_BAD_PAYLOAD, "%s cut %zu",
					c->name, n);
		free(p);
	}
}

Test(spool_rec, done_payloads)
{
	uint32_t idx;
	enum spool_done_status st;
	cr_assert_eq(spool_rec_decode_done(P("\1\0\0\0\1\0\0\0"), &idx, &st),
			SPOOL_REC_OK);
	cr_assert_eq(idx, 1);
	cr_assert_eq(st, SPOOL_DONE_DELIVERED);
	cr_assert_eq(spool_rec_decode_done(P("\1\0\0\0\0\0\0\0"), &idx, &st),
			SPOOL_REC_BAD_PAYLOAD);
	cr_assert_eq(spool_rec_decode_done(P("\1\0\0\0\4\0\0\0"), &idx, &st),
			SPOOL_REC_BAD_PAYLOAD);
	cr_assert_eq(spool_rec_decode_done(P("\1\0\0\0\1\0\1\0"), &idx, &st),
			SPOOL_REC_BAD_PAYLOAD);
	cr_assert_eq(spool_rec_decode_done(P("\1\0\0\0\1\0\0"), &idx, &st),
			SPOOL_REC_BAD_PAYLOAD);
	cr_assert_eq(spool_rec_decode_done(P("\1\0\0\0\1\0\0\0\0"), &idx,
			&st), SPOOL_REC_BAD_PAYLOAD);
}

Test(spool_rec, note_round_trip_and_layout)
{
	char rec[SPOOL_REC_HDR_SIZE + SPOOL_NOTE_PAYLOAD_SIZE];
	uint64_t id = spool_msgid_make(7, 0x123456789abull);
	size_t n = spool_rec_encode_note(rec, id, 1700000000123456ull,
			SPOOL_NOTE_DELAY_WARNED);
	cr_assert_eq(n, sizeof rec);
	cr_assert_arr_eq(rec, "ETRN\x01\x03\x00\x00\x08\x00\x00\x00", 12);
	cr_assert_arr_eq(rec + 32, "\x01\x00\x00\x00\x00\x00\x00\x00", 8);
	struct spool_rec_hdr h;
	const char *payload;
	cr_assert_eq(spool_rec_decode(rec, n, &h, &payload), SPOOL_REC_OK);
	cr_assert_eq(h.type, SPOOL_REC_NOTE);
	cr_assert_eq(h.flags, 0);
	cr_assert_eq(h.length, SPOOL_NOTE_PAYLOAD_SIZE);
	cr_assert_eq(h.msgid, id);
	cr_assert_eq(h.time_us, 1700000000123456ull);
	cr_assert_eq(payload, rec + SPOOL_REC_HDR_SIZE);
	enum spool_note_kind k = 0;
	cr_assert_eq(spool_rec_decode_note(payload, h.length, &k), SPOOL_REC_OK);
	cr_assert_eq(k, SPOOL_NOTE_DELAY_WARNED);
	/* Not a DONE, and a DONE is not a NOTE. */
	uint32_t gi;
	enum spool_done_status gs;
	cr_assert_eq(spool_rec_decode_done(payload, h.length, &gi, &gs),
			SPOOL_REC_BAD_PAYLOAD);
	/* The CRC covers it like the other records. */
	uint32_t crc = crc32c(0, rec, 12);
	crc = crc32c(crc, rec + 16, 16);
	crc = crc32c(crc, rec + 32, 8);
	cr_assert_eq(h.crc, crc);
}

Test(spool_rec, note_headers_and_payloads)
{
	char rec[SPOOL_REC_HDR_SIZE + SPOOL_NOTE_PAYLOAD_SIZE + 16];
	struct spool_rec_hdr h;
	const char *payload;
	static const uint32_t bad_len[] = { 0, 7, 9, 16 };

	/* A NOTE must say exactly its payload size. */
	for (size_t i = 0; i < sizeof bad_len / sizeof bad_len[0]; i++) {
		memset(rec, 0, sizeof rec);
		spool_rec_encode_note(rec, 1, 2, SPOOL_NOTE_DELAY_WARNED);
		put32le(rec + 8, bad_len[i]);
		fix_crc(rec, bad_len[i]);
		cr_assert_eq(spool_rec_decode(rec, sizeof rec, &h, &payload),
				SPOOL_REC_BAD_LENGTH, "length %u", bad_len[i]);
	}
	/* A DONE relabelled NOTE (CRC fixed) decodes as a record, but its
	 * payload is not a NOTE's (status byte in the reserved field). */
	spool_rec_encode_done(rec, 1, 2, 1, SPOOL_DONE_DELIVERED);
	rec[5] = SPOOL_REC_NOTE;
	fix_crc(rec, SPOOL_DONE_PAYLOAD_SIZE);
	cr_assert_eq(spool_rec_decode(rec, sizeof rec, &h, &payload),
			SPOOL_REC_OK);
	enum spool_note_kind k;
	cr_assert_eq(spool_rec_decode_note(payload, h.length, &k),
			SPOOL_REC_BAD_PAYLOAD);

	cr_assert_eq(spool_rec_decode_note(P("\1\0\0\0\0\0\0\0"), &k),
			SPOOL_REC_OK);
	cr_assert_eq(k, SPOOL_NOTE_DELAY_WARNED);
	cr_assert_eq(spool_rec_decode_note(P("\0\0\0\0\0\0\0\0"), &k),
			SPOOL_REC_BAD_PAYLOAD); /* kind 0: never written */
	cr_assert_eq(spool_rec_decode_note(P("\2\0\0\0\0\0\0\0"), &k),
			SPOOL_REC_OK);
	cr_assert_eq(k, SPOOL_NOTE_RELEASED);
	cr_assert_eq(spool_rec_decode_note(P("\3\0\0\0\0\0\0\0"), &k),
			SPOOL_REC_BAD_PAYLOAD); /* a kind we do not know */
	cr_assert_eq(spool_rec_decode_note(P("\1\0\0\1\0\0\0\0"), &k),
			SPOOL_REC_BAD_PAYLOAD); /* high byte of kind */
	cr_assert_eq(spool_rec_decode_note(P("\1\0\0\0\0\0\0\1"), &k),
			SPOOL_REC_BAD_PAYLOAD); /* reserved not zero */
	cr_assert_eq(spool_rec_decode_note(P("\1\0\0\0\0\0\0"), &k),
			SPOOL_REC_BAD_PAYLOAD);
	cr_assert_eq(spool_rec_decode_note(P("\1\0\0\0\0\0\0\0\0"), &k),
			SPOOL_REC_BAD_PAYLOAD);
}

/* Quarantine: the held bit travels in the MSG header's flags (covered by
 * the CRC, other bits kept), the release is a NOTE of its own kind. */
Test(spool_rec, held_flag_and_released_note)
{
	const char *rcpt[] = { "u@a.example" };
	size_t rl[] = { 11 };
	const char body[] = "Subject: x\r\n\r\nhi\r\n";
	size_t head = spool_rec_msg_head_size(3, 1, rl);
	char *rec = malloc(head + sizeof body - 1);
	struct spool_rec_hdr h;
	const char *payload;
	uint16_t fl = SPOOL_MSG_HELD | SPOOL_MSG_SMTPUTF8;

	cr_assert_not_null(rec);
	cr_assert_eq(spool_rec_encode_msg_head(rec, 5, 6, fl, "s@b", 3, 1, rcpt, rl,
			body, sizeof body - 1), head);
	memcpy(rec + head, body, sizeof body - 1);
	cr_assert_arr_eq(rec + 6, "\x06\x00", 2);
	cr_assert_eq(spool_rec_decode(rec, head + sizeof body - 1, &h, &payload),
			SPOOL_REC_OK);
	cr_assert_eq(h.flags, fl);
	/* The flag is under the CRC: flipping it is damage, not a release. */
	rec[6] ^= SPOOL_MSG_HELD;
	cr_assert_eq(spool_rec_decode(rec, head + sizeof body - 1, &h, &payload),
			SPOOL_REC_BAD_CRC);
	free(rec);

	char note[SPOOL_REC_HDR_SIZE + SPOOL_NOTE_PAYLOAD_SIZE];
	enum spool_note_kind k = 0;
	cr_assert_eq(spool_rec_encode_note(note, 5, 7, SPOOL_NOTE_RELEASED), sizeof note);
	cr_assert_arr_eq(note + 32, "\x02\x00\x00\x00\x00\x00\x00\x00", 8);
	cr_assert_eq(spool_rec_decode(note, sizeof note, &h, &payload), SPOOL_REC_OK);
	cr_assert_eq(h.msgid, 5);
	cr_assert_eq(spool_rec_decode_note(payload, h.length, &k), SPOOL_REC_OK);
	cr_assert_eq(k, SPOOL_NOTE_RELEASED);
}

Test(spool_rec, msgid_format)
{
	char out[16];
	uint64_t id = spool_msgid_make(3, 0x0123456789ABull);
	cr_assert_eq(spool_msgid_shard(id), 3);
	cr_assert_eq(spool_msgid_seq(id), 0x0123456789ABull);
	spool_msgid_format(id, out, sizeof out);
	cr_assert_str_eq(out, "030123456789AB");
	spool_msgid_format(spool_msgid_make(0, 1), out, 15);
	cr_assert_str_eq(out, "00000000000001");
	spool_msgid_format(spool_msgid_make(255, (1ull << 48) - 1), out, 15);
	cr_assert_str_eq(out, "FFFFFFFFFFFFFF");
	/* The sequence wraps into 48 bits, never into the shard. */
	cr_assert_eq(spool_msgid_shard(spool_msgid_make(7, 1ull << 48)), 7);
	/* A short buffer truncates and stays terminated. */
	spool_msgid_format(id, out, 5);
	cr_assert_str_eq(out, "0301");
}

/* SCHED records: the domain is stored lower-cased, any length from 0 to
 * SPOOL_SCHED_DOMAIN_MAX, next_us any 64-bit value. */
struct sched_case {
	const char *name;
	const char *dom;        /* NULL: a name of SPOOL_SCHED_DOMAIN_MAX bytes */
	uint64_t next_us;
	const char *want_dom;   /* as stored; NULL: same as dom */
};

static const struct sched_case sched_cases[] = {
	{ "plain", "example.com", 1700000300000000ull, NULL },
	{ "empty_domain", "", 0, NULL },
	{ "mixed_case_folded", "ExAmple.COM", 1, "example.com" },
	{ "utf8_kept", "\xc3\x89x.TEST", UINT64_MAX, "\xc3\x89x.test" },
	{ "longest", NULL, 0x0102030405060708ull, NULL },
};

static void sched_case_dom(const struct sched_case *c, char *out, size_t *len,
		int want)
{
	const char *d = want && c->want_dom ? c->want_dom : c->dom;

	if (d == NULL) {
		for (size_t i = 0; i < SPOOL_SCHED_DOMAIN_MAX; i++)
			out[i] = i % 64 == 63 ? '.' : (char)('a' + i % 26);
		*len = SPOOL_SCHED_DOMAIN_MAX;
		return;
	}
	*len = strlen(d);
	memcpy(out, d, *len);
}

Test(spool_rec, sched_round_trip_truncations_and_bit_flips)
{
	for (size_t k = 0; k < sizeof sched_cases / sizeof sched_cases[0]; k++) {
		const struct sched_case *c = &sched_cases[k];
		char rec[SPOOL_SCHED_REC_MAX], dom[SPOOL_SCHED_DOMAIN_MAX];
		char want[SPOOL_SCHED_DOMAIN_MAX];
		size_t dl, wl;
		uint64_t id = spool_msgid_make(4, 0xabcdefull + k);

		sched_case_dom(c, dom, &dl, 0);
		sched_case_dom(c, want, &wl, 1);
		size_t n = spool_rec_encode_sched(rec, id, 99, dom, dl, c->next_us);
		cr_assert_eq(n, SPOOL_SCHED_REC_SIZE(dl), "%s", c->name);
		/* Header: type 4, length 10 + domain; payload little-endian. */
		cr_assert_eq((unsigned char)rec[5], SPOOL_REC_SCHED);
		cr_assert_eq((unsigned char)rec[8], (SPOOL_SCHED_FIXED_SIZE + dl) & 0xff);
		cr_assert_eq((unsigned char)rec[9], (SPOOL_SCHED_FIXED_SIZE + dl) >> 8);
		for (int b = 0; b < 8; b++)
			cr_assert_eq((unsigned char)rec[32 + b],
					(c->next_us >> (8 * b)) & 0xff, "%s byte %d", c->name, b);
		cr_assert_eq((unsigned char)rec[40], dl & 0xff);
		cr_assert_eq((unsigned char)rec[41], dl >> 8);

		struct spool_rec_hdr h;
		const char *payload, *gd = NULL;
		uint64_t gn = 0;
		size_t gl = 0;
		cr_assert_eq(spool_rec_decode(rec, n, &h, &payload), SPOOL_REC_OK, "%s", c->name);
		cr_assert_eq(h.type, SPOOL_REC_SCHED);
		cr_assert_eq(h.msgid, id);
		cr_assert_eq(h.time_us, 99);
		cr_assert_eq(h.flags, 0);
		cr_assert_eq(spool_rec_decode_sched(payload, h.length, &gn, &gd, &gl),
				SPOOL_REC_OK, "%s", c->name);
		cr_assert_eq(gn, c->next_us, "%s", c->name);
		cr_assert_eq(gl, wl, "%s", c->name);
		cr_assert_arr_eq(gd, want, wl, "%s", c->name);
		cr_assert_eq(gd, payload + SPOOL_SCHED_FIXED_SIZE);
		/* Neither a DONE nor a NOTE. */
		uint32_t gi;
		enum spool_done_status gs;
		enum spool_note_kind gk;
		cr_assert_eq(spool_rec_decode_done(payload, h.length, &gi, &gs),
				SPOOL_REC_BAD_PAYLOAD);
		cr_assert_eq(spool_rec_decode_note(payload, h.length, &gk),
				SPOOL_REC_BAD_PAYLOAD);
		check_truncations(rec, n);
		check_bit_flips(rec, n);
	}
}

Test(spool_rec, sched_headers)
{
	char rec[SPOOL_SCHED_REC_MAX + 16];
	struct spool_rec_hdr h;
	const char *payload;
	static const struct {
		uint32_t length;
		int want;
	} lens[] = {
		{ 0, SPOOL_REC_BAD_LENGTH },
		{ SPOOL_SCHED_FIXED_SIZE - 1, SPOOL_REC_BAD_LENGTH },
		{ SPOOL_SCHED_PAYLOAD_MAX + 1, SPOOL_REC_BAD_LENGTH },
		{ 65535, SPOOL_REC_BAD_LENGTH },
		/* A length the header allows but the domain field disagrees
		 * with decodes as a record; its payload is refused. */
		{ SPOOL_SCHED_FIXED_SIZE + 3, SPOOL_REC_OK },
	};

	for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		memset(rec, 0, sizeof rec);
		spool_rec_encode_sched(rec, 1, 2, "abcd", 4, 5);
		put32le(rec + 8, lens[i].length);
		fix_crc(rec, lens[i].length <= sizeof rec - SPOOL_REC_HDR_SIZE ?
				lens[i].length : 0);
		int r = spool_rec_decode(rec, sizeof rec, &h, &payload);
		cr_assert_eq(r, lens[i].want, "length %u: %d", lens[i].length, r);
		uint64_t gn;
		const char *gd;
		size_t gl;
		if (r == SPOOL_REC_OK)
			cr_assert_eq(spool_rec_decode_sched(payload, h.length, &gn, &gd, &gl),
					SPOOL_REC_BAD_PAYLOAD);
	}
	/* A NOTE relabelled SCHED: 8 bytes cannot hold the fixed part. */
	spool_rec_encode_note(rec, 1, 2, SPOOL_NOTE_DELAY_WARNED);
	rec[5] = SPOOL_REC_SCHED;
	fix_crc(rec, SPOOL_NOTE_PAYLOAD_SIZE);
	cr_assert_eq(spool_rec_decode(rec, sizeof rec, &h, &payload), SPOOL_REC_BAD_LENGTH);
}

/* SCHED payloads built by hand: u64 next_us, u16 domain_len, domain. */
static const struct payload_case sched_payloads[] = {
	{ "empty_domain", P("\1\0\0\0\0\0\0\0" "\0\0"), SPOOL_REC_OK },
	{ "one_byte", P("\1\0\0\0\0\0\0\0" "\1\0" "x"), SPOOL_REC_OK },
	{ "short_fixed", P("\1\0\0\0\0\0\0\0" "\0"), SPOOL_REC_BAD_PAYLOAD },
	{ "domain_past_end", P("\1\0\0\0\0\0\0\0" "\2\0" "x"), SPOOL_REC_BAD_PAYLOAD },
	{ "bytes_after_domain", P("\1\0\0\0\0\0\0\0" "\1\0" "xy"), SPOOL_REC_BAD_PAYLOAD },
	{ "upper_case", P("\1\0\0\0\0\0\0\0" "\3\0" "aBc"), SPOOL_REC_BAD_PAYLOAD },
	{ "nul_and_utf8_kept", P("\1\0\0\0\0\0\0\0" "\3\0" "\0\xc3\x89"), SPOOL_REC_OK },
	{ "domain_len_huge", P("\1\0\0\0\0\0\0\0" "\xff\xff" "x"), SPOOL_REC_BAD_PAYLOAD },
};

Test(spool_rec, sched_payloads)
{
	for (size_t k = 0; k < sizeof sched_payloads / sizeof sched_payloads[0]; k++) {
		const struct payload_case *c = &sched_payloads[k];
		char *p = malloc(c->len + 1); /* exact size for ASan */
		uint64_t gn = 0;
		const char *gd = NULL;
		size_t gl = 0;

		memcpy(p, c->bytes, c->len);
		int r = spool_rec_decode_sched(p, c->len, &gn, &gd, &gl);
		cr_assert_eq(r, c->want, "%s: got %d", c->name, r);
		if (r == SPOOL_REC_OK) {
			cr_assert_eq(gn, 1);
			cr_assert_eq(gd + gl, p + c->len, "%s", c->name);
		}
		/* Every truncation of a good payload is bad. */
		for (size_t n = 0; r == SPOOL_REC_OK && n < c->len; n++)
			cr_assert_eq(spool_rec_decode_sched(p, n, &gn, &gd, &gl),
					SPOOL_REC_BAD_PAYLOAD, "%s cut %zu", c->name, n);
		free(p);
	}
	/* The longest domain the codec takes, and one byte more. */
	char big[SPOOL_SCHED_FIXED_SIZE + SPOOL_SCHED_DOMAIN_MAX + 1];
	uint64_t gn;
	const char *gd;
	size_t gl;
	memset(big, 'a', sizeof big);
	big[8] = (char)(SPOOL_SCHED_DOMAIN_MAX & 0xff);
	big[9] = (char)(SPOOL_SCHED_DOMAIN_MAX >> 8);
	cr_assert_eq(spool_rec_decode_sched(big, sizeof big - 1, &gn, &gd, &gl), SPOOL_REC_OK);
	cr_assert_eq(gl, SPOOL_SCHED_DOMAIN_MAX);
	big[8] = (char)((SPOOL_SCHED_DOMAIN_MAX + 1) & 0xff);
	big[9] = (char)((SPOOL_SCHED_DOMAIN_MAX + 1) >> 8);
	cr_assert_eq(spool_rec_decode_sched(big, sizeof big, &gn, &gd, &gl),
			SPOOL_REC_BAD_PAYLOAD);
}
