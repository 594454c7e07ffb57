/* SPDX-License-Identifier: MIT */
/*
 * spool_rec: encode and decode spool records (layout in spool_rec.h). The
 * decoders are fed damaged files and fuzzers: every field is checked against
 * the bytes actually available before it is used, and a record is OK only
 * when its CRC matches, so no damaged record decodes as a different one.
 */
#include "store/spool_rec.h"

#include <stdio.h>
#include <string.h>

#include "core/ascii.h"
#include "core/log.h"
#include "store/crc32c.h"

/* Header field offsets (spool_rec.h). */
#define REC_OFF_MAGIC 0
#define REC_OFF_VERSION 4
#define REC_OFF_TYPE 5
#define REC_OFF_FLAGS 6
#define REC_OFF_LENGTH 8
#define REC_OFF_CRC 12
#define REC_OFF_MSGID 16
#define REC_OFF_TIME 24

/* MSG envelope: u16 sender_len, u32 nrcpt, u32 body_len. */
#define MSG_FIXED_SIZE 10
#define MSG_RCPT_LEN_SIZE 2
#define ADDR_LEN_MAX UINT16_MAX
/* DONE payload: u32 rcpt_index, u8 status, 3 zero bytes. */
#define DONE_OFF_STATUS 4
/* NOTE payload: u32 kind, u32 reserved (zero). */
#define NOTE_OFF_RESERVED 4
/* SCHED payload: u64 next_us, u16 domain_len, domain bytes. */
#define SCHED_OFF_DOMLEN 8

static inline void put16(char *p, uint16_t v)
{
	p[0] = (char)(v & 0xff);
	p[1] = (char)(v >> 8);
}

static inline void put32(char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (char)((v >> (8 * i)) & 0xff);
}

static inline void put64(char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (char)((v >> (8 * i)) & 0xff);
}

static inline uint16_t get16(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	return (uint16_t)(u[0] | (u[1] << 8));
}

static inline uint32_t get32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	return (uint32_t)u[0] | ((uint32_t)u[1] << 8) |
		((uint32_t)u[2] << 16) | ((uint32_t)u[3] << 24);
}

static inline uint64_t get64(const char *p)
{
	return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32);
}

/* The CRC of a header (without its crc field) and the start of a payload. */
static uint32_t rec_crc_head(const char *hdr)
{
	uint32_t crc = crc32c(0, hdr, REC_OFF_CRC);
	return crc32c(crc, hdr + REC_OFF_MSGID,
			SPOOL_REC_HDR_SIZE - REC_OFF_MSGID);
}

static void rec_put_hdr(char *dst, uint8_t type, uint16_t flags,
		uint32_t length, uint64_t msgid, uint64_t time_us)
{
	put32(dst + REC_OFF_MAGIC, SPOOL_REC_MAGIC);
	dst[REC_OFF_VERSION] = SPOOL_REC_VERSION;
	dst[REC_OFF_TYPE] = (char)type;
	put16(dst + REC_OFF_FLAGS, flags);
	put32(dst + REC_OFF_LENGTH, length);
	put32(dst + REC_OFF_CRC, 0);
	put64(dst + REC_OFF_MSGID, msgid);
	put64(dst + REC_OFF_TIME, time_us);
}

size_t spool_rec_msg_head_size(size_t sender_len, uint32_t nrcpt,
		const size_t *rcpt_len)
{
	size_t n = SPOOL_REC_HDR_SIZE + MSG_FIXED_SIZE + sender_len;
	for (uint32_t i = 0; i < nrcpt; i++)
		n += MSG_RCPT_LEN_SIZE + rcpt_len[i];
	return n;
}

size_t spool_rec_encode_msg_head(char *dst, uint64_t msgid, uint64_t time_us,
		uint16_t flags, const char *sender, size_t sender_len,
		uint32_t nrcpt, const char *const *rcpt, const size_t *rcpt_len,
		const char *body, size_t body_len)
{
	size_t head = spool_rec_msg_head_size(sender_len, nrcpt, rcpt_len);
	size_t payload = head - SPOOL_REC_HDR_SIZE;

	/* The SMTP layer bounds addresses (RFC 5321 4.5.3.1) and sizes far
	 * below these; exceeding them here is our bug, not the peer's. */
	if (sender_len > ADDR_LEN_MAX)
		panic("sender of %zu bytes", sender_len);
	if (body_len > SPOOL_REC_PAYLOAD_MAX ||
	    payload > SPOOL_REC_PAYLOAD_MAX - body_len)
		panic("record of %zu + %zu bytes", payload, body_len);

	rec_put_hdr(dst, SPOOL_REC_MSG, flags, (uint32_t)(payload + body_len),
			msgid, time_us);
	char *p = dst + SPOOL_REC_HDR_SIZE;
	put16(p, (uint16_t)sender_len);
	put32(p + 2, nrcpt);
	put32(p + 6, (uint32_t)body_len);
	p += MSG_FIXED_SIZE;
	if (sender_len > 0)
		memcpy(p, sender, sender_len);
	p += sender_len;
	for (uint32_t i = 0; i < nrcpt; i++) {
		if (rcpt_len[i] > ADDR_LEN_MAX)
			panic("recipient %u of %zu bytes", i, rcpt_len[i]);
		put16(p, (uint16_t)rcpt_len[i]);
		p += MSG_RCPT_LEN_SIZE;
		if (rcpt_len[i] > 0)
			memcpy(p, rcpt[i], rcpt_len[i]);
		p += rcpt_len[i];
	}

	uint32_t crc = rec_crc_head(dst);
	crc = crc32c(crc, dst + SPOOL_REC_HDR_SIZE, payload);
	if (body_len > 0)
		crc = crc32c(crc, body, body_len);
	put32(dst + REC_OFF_CRC, crc);
	return head;
}

size_t spool_rec_encode_done(char *dst, uint64_t msgid, uint64_t time_us,
		uint32_t rcpt_index, enum spool_done_status status)
{
	rec_put_hdr(dst, SPOOL_REC_DONE, 0, SPOOL_DONE_PAYLOAD_SIZE, msgid,
			time_us);
	char *p = dst + SPOOL_REC_HDR_SIZE;
	memset(p, 0, SPOOL_DONE_PAYLOAD_SIZE);
	put32(p, rcpt_index);
	p[DONE_OFF_STATUS] = (char)status;

	uint32_t crc = rec_crc_head(dst);
	crc = crc32c(crc, p, SPOOL_DONE_PAYLOAD_SIZE);
	put32(dst + REC_OFF_CRC, crc);
	return SPOOL_REC_HDR_SIZE + SPOOL_DONE_PAYLOAD_SIZE;
}

size_t spool_rec_encode_note(char *dst, uint64_t msgid, uint64_t time_us,
		enum spool_note_kind kind)
{
	rec_put_hdr(dst, SPOOL_REC_NOTE, 0, SPOOL_NOTE_PAYLOAD_SIZE, msgid,
			time_us);
	char *p = dst + SPOOL_REC_HDR_SIZE;
	put32(p, (uint32_t)kind);
	put32(p + NOTE_OFF_RESERVED, 0);

	uint32_t crc = rec_crc_head(dst);
	crc = crc32c(crc, p, SPOOL_NOTE_PAYLOAD_SIZE);
	put32(dst + REC_OFF_CRC, crc);
	return SPOOL_REC_HDR_SIZE + SPOOL_NOTE_PAYLOAD_SIZE;
}

size_t spool_rec_encode_sched(char *dst, uint64_t msgid, uint64_t time_us,
		const char *dom, size_t dom_len, uint64_t next_us)
{
	size_t payload = SPOOL_SCHED_FIXED_SIZE + dom_len;

	if (dom_len > SPOOL_SCHED_DOMAIN_MAX)
		panic("SCHED domain of %zu bytes", dom_len);
	rec_put_hdr(dst, SPOOL_REC_SCHED, 0, (uint32_t)payload, msgid, time_us);
	char *p = dst + SPOOL_REC_HDR_SIZE;
	put64(p, next_us);
	put16(p + SCHED_OFF_DOMLEN, (uint16_t)dom_len);
	ascii_lower_copy(p + SPOOL_SCHED_FIXED_SIZE, dom, dom_len);

	uint32_t crc = rec_crc_head(dst);
	crc = crc32c(crc, p, payload);
	put32(dst + REC_OFF_CRC, crc);
	return SPOOL_REC_HDR_SIZE + payload;
}

/*
 * Checks run in the order the bytes arrive, so a prefix of a valid record is
 * always AGAIN and garbage is recognised from its first bytes: magic and
 * version on however many header bytes there are, then type and length on
 * a whole header, then the CRC on a whole record.
 */
/* Fewer than SPOOL_REC_HDR_SIZE bytes: a torn tail (AGAIN) unless what is
 * there already shows a bad magic or version. */
static int decode_hdr_short(const char *p, size_t n)
{
	static const unsigned char magic[4] = { 'E', 'T', 'R', 'N' };
	size_t m = n < sizeof magic ? n : sizeof magic;

	if (n == 0)
		return SPOOL_REC_AGAIN;
	if (memcmp(p, magic, m) != 0)
		return SPOOL_REC_BAD_MAGIC;
	if (n > REC_OFF_VERSION && (unsigned char)p[REC_OFF_VERSION] != SPOOL_REC_VERSION)
		return SPOOL_REC_BAD_VERSION;
	return SPOOL_REC_AGAIN;
}

/* On the commit path for every record the spool indexes: whole-word loads,
 * no byte-wise compare, the short case out of line. */
int spool_rec_decode_hdr(const char *p, size_t n, struct spool_rec_hdr *hdr)
{
	if (n < SPOOL_REC_HDR_SIZE)
		return decode_hdr_short(p, n);
	if (get32(p + REC_OFF_MAGIC) != SPOOL_REC_MAGIC)
		return SPOOL_REC_BAD_MAGIC;
	if ((unsigned char)p[REC_OFF_VERSION] != SPOOL_REC_VERSION)
		return SPOOL_REC_BAD_VERSION;

	uint8_t type = (uint8_t)p[REC_OFF_TYPE];
	uint32_t length = get32(p + REC_OFF_LENGTH);
	if (type != SPOOL_REC_MSG && type != SPOOL_REC_DONE &&
	    type != SPOOL_REC_NOTE && type != SPOOL_REC_SCHED)
		return SPOOL_REC_BAD_PAYLOAD;
	if (length > SPOOL_REC_PAYLOAD_MAX)
		return SPOOL_REC_BAD_LENGTH;
	if (type == SPOOL_REC_DONE && length != SPOOL_DONE_PAYLOAD_SIZE)
		return SPOOL_REC_BAD_LENGTH;
	if (type == SPOOL_REC_NOTE && length != SPOOL_NOTE_PAYLOAD_SIZE)
		return SPOOL_REC_BAD_LENGTH;
	if (type == SPOOL_REC_MSG && length < MSG_FIXED_SIZE)
		return SPOOL_REC_BAD_LENGTH;
	if (type == SPOOL_REC_SCHED && (length < SPOOL_SCHED_FIXED_SIZE ||
					length > SPOOL_SCHED_PAYLOAD_MAX))
		return SPOOL_REC_BAD_LENGTH;

	hdr->version = SPOOL_REC_VERSION;
	hdr->type = type;
	hdr->flags = get16(p + REC_OFF_FLAGS);
	hdr->length = length;
	hdr->crc = get32(p + REC_OFF_CRC);
	hdr->msgid = get64(p + REC_OFF_MSGID);
	hdr->time_us = get64(p + REC_OFF_TIME);
	return SPOOL_REC_OK;
}

int spool_rec_decode(const char *p, size_t n, struct spool_rec_hdr *hdr,
		const char **payload)
{
	int rc = spool_rec_decode_hdr(p, n, hdr);

	if (rc != SPOOL_REC_OK)
		return rc;
	if (n - SPOOL_REC_HDR_SIZE < hdr->length)
		return SPOOL_REC_AGAIN;

	uint32_t crc = rec_crc_head(p);
	crc = crc32c(crc, p + SPOOL_REC_HDR_SIZE, hdr->length);
	if (crc != hdr->crc)
		return SPOOL_REC_BAD_CRC;
	*payload = p + SPOOL_REC_HDR_SIZE;
	return SPOOL_REC_OK;
}

/* head_only: payload holds the envelope alone (the body is elsewhere). */
static int decode_msg(const char *payload, size_t len, struct spool_rec_msg *msg,
		      int head_only)
{
	if (len < MSG_FIXED_SIZE)
		return SPOOL_REC_BAD_PAYLOAD;
	size_t sender_len = get16(payload);
	uint32_t nrcpt = get32(payload + 2);
	size_t body_len = get32(payload + 6);
	size_t left = len - MSG_FIXED_SIZE;
	const char *p = payload + MSG_FIXED_SIZE;

	if (sender_len > left)
		return SPOOL_REC_BAD_PAYLOAD;
	msg->sender.p = p;
	msg->sender.len = sender_len;
	p += sender_len;
	left -= sender_len;

	/* Each recipient costs at least its length field, which bounds the
	 * walk by the payload even when nrcpt is garbage. */
	msg->rcpt_table = (const uint8_t *)p;
	for (uint32_t i = 0; i < nrcpt; i++) {
		if (left < MSG_RCPT_LEN_SIZE)
			return SPOOL_REC_BAD_PAYLOAD;
		size_t alen = get16(p);
		left -= MSG_RCPT_LEN_SIZE;
		if (alen > left)
			return SPOOL_REC_BAD_PAYLOAD;
		p += MSG_RCPT_LEN_SIZE + alen;
		left -= alen;
	}
	if (left != (head_only ? 0 : body_len))
		return SPOOL_REC_BAD_PAYLOAD;
	msg->nrcpt = nrcpt;
	msg->body = p;
	msg->body_len = body_len;
	return SPOOL_REC_OK;
}

int spool_rec_decode_msg(const char *payload, size_t len,
		struct spool_rec_msg *msg)
{
	return decode_msg(payload, len, msg, 0);
}

int spool_rec_decode_msg_head(const char *payload, size_t len,
		struct spool_rec_msg *msg)
{
	return decode_msg(payload, len, msg, 1);
}

struct spool_rec_addr spool_rec_msg_rcpt_next(const struct spool_rec_msg *msg,
		size_t *cursor)
{
	struct spool_rec_addr a = { NULL, 0 };
	const char *table = (const char *)msg->rcpt_table;
	size_t table_len = (size_t)(msg->body - table);
	size_t c = *cursor;

	/* msg was validated by spool_rec_decode_msg(); the checks only keep
	 * a caller walking past the last recipient inside the table. */
	if (c > table_len || table_len - c < MSG_RCPT_LEN_SIZE)
		return a;
	size_t alen = get16(table + c);
	if (alen > table_len - c - MSG_RCPT_LEN_SIZE)
		return a;
	a.p = table + c + MSG_RCPT_LEN_SIZE;
	a.len = alen;
	*cursor = c + MSG_RCPT_LEN_SIZE + alen;
	return a;
}

struct spool_rec_addr spool_rec_msg_rcpt(const struct spool_rec_msg *msg,
		uint32_t i)
{
	struct spool_rec_addr a = { NULL, 0 };
	size_t cursor = 0;

	if (i >= msg->nrcpt)
		return a;
	for (uint32_t k = 0; k <= i; k++)
		a = spool_rec_msg_rcpt_next(msg, &cursor);
	return a;
}

int spool_rec_decode_done(const char *payload, size_t len,
		uint32_t *rcpt_index, enum spool_done_status *status)
{
	if (len != SPOOL_DONE_PAYLOAD_SIZE)
		return SPOOL_REC_BAD_PAYLOAD;
	uint8_t st = (uint8_t)payload[DONE_OFF_STATUS];
	if (st != SPOOL_DONE_DELIVERED && st != SPOOL_DONE_BOUNCED &&
	    st != SPOOL_DONE_EXPIRED)
		return SPOOL_REC_BAD_PAYLOAD;
	for (size_t i = DONE_OFF_STATUS + 1; i < SPOOL_DONE_PAYLOAD_SIZE; i++)
		if (payload[i] != 0)
			return SPOOL_REC_BAD_PAYLOAD;
	*rcpt_index = get32(payload);
	*status = (enum spool_done_status)st;
	return SPOOL_REC_OK;
}

int spool_rec_decode_note(const char *payload, size_t len,
		enum spool_note_kind *kind)
{
	if (len != SPOOL_NOTE_PAYLOAD_SIZE)
		return SPOOL_REC_BAD_PAYLOAD;
	uint32_t k = get32(payload);
	/* Strict like DONE's padding: the CRC already rules out damage, so
	 * anything else is a writer this reader does not know. */
	if (k < SPOOL_NOTE_DELAY_WARNED || k > SPOOL_NOTE_KIND_MAX ||
	    get32(payload + NOTE_OFF_RESERVED) != 0)
		return SPOOL_REC_BAD_PAYLOAD;
	*kind = (enum spool_note_kind)k;
	return SPOOL_REC_OK;
}

int spool_rec_decode_sched(const char *payload, size_t len, uint64_t *next_us,
		const char **dom, size_t *dom_len)
{
	if (len < SPOOL_SCHED_FIXED_SIZE)
		return SPOOL_REC_BAD_PAYLOAD;
	size_t dl = get16(payload + SCHED_OFF_DOMLEN);
	const char *d = payload + SPOOL_SCHED_FIXED_SIZE;

	if (dl > SPOOL_SCHED_DOMAIN_MAX || len != SPOOL_SCHED_FIXED_SIZE + dl)
		return SPOOL_REC_BAD_PAYLOAD;
	/* Strict like NOTE: our writer lower-cases, so anything else is a
	 * writer this reader does not know. */
	for (size_t i = 0; i < dl; i++)
		if (d[i] >= 'A' && d[i] <= 'Z')
			return SPOOL_REC_BAD_PAYLOAD;
	*next_us = get64(payload);
	*dom = d;
	*dom_len = dl;
	return SPOOL_REC_OK;
}

/* v in upper-case hex, at least width digits, at p (room for 16). */
static size_t msgid_hex(char *p, uint64_t v, unsigned width)
{
	static const char hex[] = "0123456789ABCDEF";
	char t[16];
	size_t n = 0;

	do {
		t[n++] = hex[v & 0xf];
		v >>= 4;
	} while (v || n < width);
	for (size_t i = 0; i < n; i++)
		p[i] = t[n - 1 - i];
	return n;
}

void spool_msgid_format(uint64_t msgid, char *out, size_t outlen)
{
	/* "%02X%012llX" by hand: it is formatted for every log line of every
	 * delivery, where snprintf was a visible share of a drain's cost
	 * (callgrind). Shards fit two digits (one per engine thread); a wider
	 * one still formats, only longer; out is never overrun. */
	char t[32];
	size_t n = msgid_hex(t, spool_msgid_shard(msgid), 2);

	n += msgid_hex(t + n, spool_msgid_seq(msgid), 12);
	if (outlen == 0)
		return;
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, t, n);
	out[n] = '\0';
}

const char *spool_rec_addr_domain(struct spool_rec_addr a, size_t *len)
{
	const char *at = a.len > 0 ? memrchr(a.p, '@', a.len) : NULL;
	size_t n;

	if (at == NULL) {
		*len = 0;
		return "";
	}
	at++;
	n = (size_t)(a.p + a.len - at);
	while (n > 0 && at[n - 1] == '.')
		n--;
	*len = n;
	return at;
}
