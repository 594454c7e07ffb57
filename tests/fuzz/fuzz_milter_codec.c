/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for proto/milter_codec.c. The first input byte picks the
 * reader's buffer size, a chunk size and the command the replies answer;
 * the rest is what a filter sends. The stream is read twice, whole and in
 * chunks, and must give the same frames, replies and errors. Every reply
 * that decodes must hold what the decoder promises: pointers inside the
 * frame, header names without ':', values that cannot start a new header
 * line, reply codes 4xx/5xx of one code per line, an OPTNEG that
 * negotiates to a subset of the offer. Then each frame's data goes back
 * through the encoders and the reader (round trip).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/milter_codec.h"

static const size_t fz_bufs[] = { MILTER_FRAME_MIN, 64, 4096, MILTER_FRAME_MAX };
static const enum milter_cmd fz_after[] = { MILTER_CMD_OPTNEG, MILTER_CMD_CONNECT,
	MILTER_CMD_RCPT, MILTER_CMD_BODY, MILTER_CMD_BODYEOB, MILTER_CMD_MACRO,
	MILTER_CMD_HEADER, MILTER_CMD_QUIT };

static uint8_t fz_rbuf[MILTER_FRAME_MAX];
static uint8_t fz_out[MILTER_CMD_MAX];
static uint8_t fz_rbuf2[MILTER_CMD_MAX];
static char fz_hdr[2 * MILTER_FRAME_MAX + 8];

static uint64_t fz_mix(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static void fz_inside(const struct milter_frame *fr, struct milter_str s)
{
	if (s.len == 0)
		return;
	if ((const uint8_t *)s.p < fr->data ||
	    (const uint8_t *)s.p + s.len > fr->data + fr->len)
		__builtin_trap();
}

/* Folding only: every LF follows a CR or not, but is followed by SP/HT;
 * no CR without its LF. */
static void fz_value_safe(const char *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (v[i] == '\r' && (i + 1 >= n || v[i + 1] != '\n'))
			__builtin_trap();
		if (v[i] == '\n' && (i + 1 >= n || (v[i + 1] != ' ' && v[i + 1] != '\t')))
			__builtin_trap();
		if (v[i] == '\0')
			__builtin_trap();
	}
}

static void fz_check_hdr(const struct milter_frame *fr, const struct milter_hdr *h)
{
	ssize_t n;

	fz_inside(fr, h->name);
	fz_inside(fr, h->value);
	if (h->name.len == 0 || memchr(h->name.p, ':', h->name.len) != NULL)
		__builtin_trap();
	fz_value_safe(h->value.p, h->value.len);
	/* Stored form: exactly one line end not followed by folding, the
	 * last. */
	n = milter_header_format(h, 0, fz_hdr, sizeof(fz_hdr));
	if (n < 4 || fz_hdr[n - 2] != '\r' || fz_hdr[n - 1] != '\n')
		__builtin_trap();
	for (ssize_t i = 0; i + 2 < n; i++)
		if (fz_hdr[i] == '\n' && fz_hdr[i + 1] != ' ' && fz_hdr[i + 1] != '\t')
			__builtin_trap();
}

static void fz_check_rc(const struct milter_frame *fr, const struct milter_replycode *rc)
{
	fz_inside(fr, rc->raw);
	fz_inside(fr, rc->enh);
	fz_inside(fr, rc->text);
	if (rc->code < 400 || rc->code > 599 || rc->lines == 0 ||
	    rc->lines > MILTER_REPLY_LINES_MAX)
		__builtin_trap();
	if (rc->enh.len > 0 && rc->enh.p[0] != (char)('0' + rc->code / 100))
		__builtin_trap();
	for (size_t i = 0; i < rc->raw.len; i++) {
		unsigned char c = (unsigned char)rc->raw.p[i];

		if (c == '\n' && (i == 0 || i + 3 >= rc->raw.len || rc->raw.p[i - 1] != '\r' ||
		    memcmp(rc->raw.p + i + 1, rc->raw.p, 3) != 0))
			__builtin_trap();
		if (c > 0x7e || (c < 0x20 && c != '\t' && c != '\r' && c != '\n'))
			__builtin_trap();
	}
}

static void fz_check_optneg(const struct milter_optneg *o)
{
	const struct milter_neg offer = { MILTER_VERSION, MILTER_F_ADDHDRS |
		MILTER_F_CHGHDRS | MILTER_F_QUARANTINE, MILTER_P_NOUNKNOWN |
		MILTER_P_NR_HDR | MILTER_P_SKIP | MILTER_P_HDR_LEADSPC };
	struct milter_neg ag;

	if (milter_negotiate(&offer, o, &ag) != MILTER_OK)
		return;
	if (ag.version < MILTER_VERSION_MIN || ag.version > offer.version ||
	    (ag.actions & ~offer.actions) != 0 || (ag.proto & ~offer.proto) != 0)
		__builtin_trap();
}

/* The frame's data back through an encoder and the reader. */
static void fz_round_trip(const struct milter_frame *fr)
{
	struct milter_reader rd;
	struct milter_frame back;
	enum milter_read_status st;
	enum milter_err err;
	size_t cut = fr->len / 2;
	ssize_t n;

	if (memchr(fr->data, '\0', fr->len) != NULL || fr->len > MILTER_DATA_MAX - 2)
		return;
	n = milter_encode_header(fz_out, sizeof(fz_out),
			(struct milter_str){ (const char *)fr->data, cut },
			(struct milter_str){ (const char *)fr->data + cut, fr->len - cut });
	if (n != (ssize_t)(MILTER_LEN_OCTETS + 1 + fr->len + 2))
		__builtin_trap();
	milter_reader_init(&rd, fz_rbuf2, sizeof(fz_rbuf2));
	if (milter_reader_feed(&rd, fz_out, (size_t)n, &st, &back, &err) != (size_t)n ||
	    st != MILTER_READ_FRAME || back.cmd != MILTER_CMD_HEADER ||
	    back.len != fr->len + 2 || memcmp(back.data, fr->data, cut) != 0 ||
	    back.data[cut] != '\0' || back.data[back.len - 1] != '\0')
		__builtin_trap();
}

static void fz_check_reply(const struct milter_frame *fr, const struct milter_reply *r)
{
	switch (r->kind) {
	case MILTER_R_REPLYCODE:
		fz_check_rc(fr, &r->u.rc);
		break;
	case MILTER_R_ADDHEADER:
	case MILTER_R_INSHEADER:
	case MILTER_R_CHGHEADER:
		fz_check_hdr(fr, &r->u.hdr);
		break;
	case MILTER_R_ADDRCPT:
	case MILTER_R_DELRCPT:
	case MILTER_R_ADDRCPT_PAR:
	case MILTER_R_CHGFROM:
		fz_inside(fr, r->u.addr.addr);
		fz_inside(fr, r->u.addr.args);
		if (r->u.addr.addr.len == 0 ||
		    memchr(r->u.addr.addr.p, '\n', r->u.addr.addr.len) != NULL)
			__builtin_trap();
		break;
	case MILTER_R_OPTNEG:
		for (unsigned s = 0; s < MILTER_STAGES; s++)
			fz_inside(fr, r->u.optneg.symlist[s]);
		fz_check_optneg(&r->u.optneg);
		break;
	default:
		break;
	}
}

/* A digest of one frame's outcome; check: test the invariants too. */
static uint64_t fz_frame(const struct milter_frame *fr, enum milter_cmd after, int check)
{
	struct milter_reply r;
	enum milter_err e = milter_decode_reply(fr, &r);
	struct milter_neg ag = { MILTER_VERSION, MILTER_F_ALL, MILTER_P_V6_MASK };
	uint64_t h = fz_mix(0xcbf29ce484222325ull, &fr->cmd, 1);

	h = fz_mix(h, fr->data, fr->len);
	h = fz_mix(h, &e, sizeof(e));
	if (milter_strerror(e) == NULL || milter_reply_name(fr->cmd) == NULL)
		__builtin_trap();
	if (e != MILTER_OK)
		return h;
	if (check)
		fz_check_reply(fr, &r);
	e = milter_reply_check(after, r.kind, &ag);
	return fz_mix(h, &e, sizeof(e));
}

/* Read the stream in chunks (0: whole); a digest of what came out. */
static uint64_t fz_read(const uint8_t *p, size_t n, size_t bufsz, size_t chunk,
		enum milter_cmd after, int check)
{
	struct milter_reader rd;
	uint64_t h = 1;
	size_t i = 0;

	milter_reader_init(&rd, fz_rbuf, bufsz);
	while (i < n) {
		size_t k = chunk && chunk < n - i ? chunk : n - i, off = 0;

		while (off < k) {
			enum milter_read_status st;
			enum milter_err err;
			struct milter_frame fr;
			size_t got = milter_reader_feed(&rd, p + i + off, k - off, &st, &fr, &err);

			if (got > k - off)
				__builtin_trap();
			off += got;
			if (st == MILTER_READ_ERROR) {
				if (milter_reader_pending(&rd) > MILTER_LEN_OCTETS)
					__builtin_trap();
				return fz_mix(h, &err, sizeof(err));
			}
			if (st == MILTER_READ_AGAIN) {
				if (off != k)
					__builtin_trap();
				continue;
			}
			if (fr.len + 1 > bufsz)
				__builtin_trap();
			h = fz_mix(h, &h, sizeof(h)) ^ fz_frame(&fr, after, check);
			if (check)
				fz_round_trip(&fr);
		}
		i += k;
	}
	return fz_mix(h, &i, sizeof(i)) ^ milter_reader_pending(&rd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t bufsz, chunk;
	enum milter_cmd after;

	if (size < 1)
		return 0;
	bufsz = fz_bufs[data[0] & 3];
	chunk = 1 + ((data[0] >> 2) & 7);
	after = fz_after[(data[0] >> 5) & 7];
	if (fz_read(data + 1, size - 1, bufsz, 0, after, 1) !=
	    fz_read(data + 1, size - 1, bufsz, chunk, after, 0))
		__builtin_trap();
	return 0;
}
