/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the spool record codec: spool_rec_decode() on the
 * input as a stream of records (MSG, DONE, NOTE, SCHED), the payload
 * decoders on the raw input, and re-encoding of whatever decodes, which must
 * give back the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/spool_rec.h"

#define FUZZ_MAX_RCPT 4096

static void walk_msg(const struct spool_rec_msg *m)
{
	size_t cur = 0;
	volatile size_t sum = m->sender.len + m->body_len;
	for (uint32_t i = 0; i < m->nrcpt; i++) {
		struct spool_rec_addr a = spool_rec_msg_rcpt_next(m, &cur);
		if (a.p == NULL)
			abort(); /* decode_msg accepted nrcpt entries */
		if (a.len > 0)
			sum += (unsigned char)a.p[a.len - 1];
	}
	if (m->nrcpt > 0)
		sum += spool_rec_msg_rcpt(m, m->nrcpt - 1).len;
	if (m->body_len > 0)
		sum += (unsigned char)m->body[m->body_len - 1];
	(void)sum;
}

/* A record that decodes must encode back to exactly its bytes. */
static void reencode_msg(const char *rec, const struct spool_rec_hdr *h,
		const struct spool_rec_msg *m)
{
	static const char *rcpt[FUZZ_MAX_RCPT];
	static size_t rlen[FUZZ_MAX_RCPT];
	size_t cur = 0;

	if (m->nrcpt > FUZZ_MAX_RCPT)
		return;
	for (uint32_t i = 0; i < m->nrcpt; i++) {
		struct spool_rec_addr a = spool_rec_msg_rcpt_next(m, &cur);
		rcpt[i] = a.p;
		rlen[i] = a.len;
	}
	size_t head = spool_rec_msg_head_size(m->sender.len, m->nrcpt, rlen);
	char *out = malloc(head);
	if (out == NULL)
		return;
	size_t w = spool_rec_encode_msg_head(out, h->msgid, h->time_us,
			h->flags, m->sender.p, m->sender.len, m->nrcpt, rcpt,
			rlen, m->body, m->body_len);
	if (w != head || memcmp(out, rec, head) != 0 ||
	    head + m->body_len != SPOOL_REC_HDR_SIZE + h->length)
		abort();
	free(out);
}

/* A SCHED that decodes encodes back to its bytes (the domain is already
 * lower case, or it would not decode). */
static void reencode_sched(const char *rec, const struct spool_rec_hdr *h,
		const char *payload)
{
	char out[SPOOL_SCHED_REC_MAX];
	uint64_t next;
	const char *dom;
	size_t dl;

	if (spool_rec_decode_sched(payload, h->length, &next, &dom, &dl) !=
			SPOOL_REC_OK)
		return;
	if (dl > SPOOL_SCHED_DOMAIN_MAX || SPOOL_SCHED_REC_SIZE(dl) !=
			SPOOL_REC_HDR_SIZE + (size_t)h->length)
		abort();
	size_t n = spool_rec_encode_sched(out, h->msgid, h->time_us, dom, dl,
			next);
	if (h->flags == 0 && memcmp(out, rec, n) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	size_t off = 0;

	while (off < size) {
		struct spool_rec_hdr h;
		const char *payload;
		int r = spool_rec_decode(p + off, size - off, &h, &payload);
		if (r != SPOOL_REC_OK) {
			off++; /* resync the way the reader does */
			continue;
		}
		if (payload != p + off + SPOOL_REC_HDR_SIZE ||
		    h.length > size - off - SPOOL_REC_HDR_SIZE)
			abort();
		if (h.type == SPOOL_REC_MSG) {
			struct spool_rec_msg m;
			if (spool_rec_decode_msg(payload, h.length, &m) ==
					SPOOL_REC_OK) {
				walk_msg(&m);
				reencode_msg(p + off, &h, &m);
			}
		} else if (h.type == SPOOL_REC_NOTE) {
			enum spool_note_kind kind;
			if (spool_rec_decode_note(payload, h.length, &kind) ==
					SPOOL_REC_OK) {
				char out[SPOOL_REC_HDR_SIZE +
					SPOOL_NOTE_PAYLOAD_SIZE];
				spool_rec_encode_note(out, h.msgid, h.time_us,
						kind);
				if (h.flags == 0 &&
				    memcmp(out, p + off, sizeof out) != 0)
					abort();
			}
		} else if (h.type == SPOOL_REC_SCHED) {
			reencode_sched(p + off, &h, payload);
		} else {
			uint32_t idx;
			enum spool_done_status st;
			if (spool_rec_decode_done(payload, h.length, &idx,
					&st) == SPOOL_REC_OK) {
				char out[SPOOL_REC_HDR_SIZE +
					SPOOL_DONE_PAYLOAD_SIZE];
				spool_rec_encode_done(out, h.msgid, h.time_us,
						idx, st);
				if (h.flags == 0 &&
				    memcmp(out, p + off, sizeof out) != 0)
					abort();
			}
		}
		off += SPOOL_REC_HDR_SIZE + h.length;
	}

	/* The payload decoders alone, on bytes no CRC vouched for. */
	struct spool_rec_msg m;
	if (spool_rec_decode_msg(p, size, &m) == SPOOL_REC_OK)
		walk_msg(&m);
	uint32_t idx;
	enum spool_done_status st;
	(void)spool_rec_decode_done(p, size, &idx, &st);
	enum spool_note_kind kind;
	(void)spool_rec_decode_note(p, size, &kind);
	uint64_t next;
	const char *dom;
	size_t dl;
	if (spool_rec_decode_sched(p, size, &next, &dom, &dl) == SPOOL_REC_OK &&
	    (dom + dl != p + size || dl > SPOOL_SCHED_DOMAIN_MAX))
		abort();
	char qid[16];
	if (size >= 8) {
		uint64_t id;
		memcpy(&id, p, sizeof id);
		spool_msgid_format(id, qid, sizeof qid);
	}
	return 0;
}
