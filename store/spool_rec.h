/* SPDX-License-Identifier: MIT */
/*
 * spool_rec: the on-disk record codec of the spool (DESIGN.md section 5).
 * Pure functions over bytes; no I/O. Every record is a fixed 32-byte
 * little-endian header followed by its payload:
 *
 *   off size field
 *   0   4    magic    "ETRN" = 0x4E525445 read as little-endian u32
 *   4   1    version  SPOOL_REC_VERSION
 *   5   1    type     SPOOL_REC_MSG | _DONE | _NOTE | _SCHED
 *   6   2    flags    MSG: SPOOL_MSG_8BITMIME | SPOOL_MSG_SMTPUTF8 |
 *                     SPOOL_MSG_HELD (other bits: zero, ignored on read)
 *   8   4    length   payload bytes that follow the header
 *   12  4    crc      CRC-32C of header bytes 0..11 and 16..31, then payload
 *   16  8    msgid    (shard << 48) | sequence; DONE, NOTE, SCHED: the id
 *                     of its MSG
 *   24  8    time     microseconds since the epoch when written
 *
 * MSG payload:  u16 sender_len, u32 nrcpt, u32 body_len, sender bytes,
 *               nrcpt x (u16 len, address bytes), body bytes.
 * DONE payload: u32 rcpt_index, u8 status (SPOOL_DONE_*), 3 zero bytes.
 * NOTE payload: u32 kind (SPOOL_NOTE_*), u32 reserved (zero). A fact about
 *               a message as a whole that must survive a restart (e.g. its
 *               delay warning was sent); like a DONE it follows its MSG.
 * SCHED payload: u64 next_us, u16 domain_len, domain bytes (ASCII lower
 *               case, at most SPOOL_SCHED_DOMAIN_MAX): when the outbound
 *               scheduler tries that domain's recipients of the message
 *               next. Advisory (see enum spool_rec_type).
 *
 * The body is stored as it goes back on the wire (CRLF, dot-stuffed, no final
 * "."), with our Received: header in front.
 */
#ifndef ETRND_STORE_SPOOL_REC_H
#define ETRND_STORE_SPOOL_REC_H

#include <stddef.h>
#include <stdint.h>

#define SPOOL_REC_MAGIC 0x4E525445u
#define SPOOL_REC_VERSION 1
#define SPOOL_REC_HDR_SIZE 32
#define SPOOL_DONE_PAYLOAD_SIZE 8
#define SPOOL_NOTE_PAYLOAD_SIZE 8
/* SCHED: u64 next_us + u16 domain_len, then the domain. A domain is at most
 * 255 octets (RFC 5321 4.5.3.1.2); the SMTP layer refuses longer ones. */
#define SPOOL_SCHED_FIXED_SIZE 10
#define SPOOL_SCHED_DOMAIN_MAX 255
#define SPOOL_SCHED_PAYLOAD_MAX (SPOOL_SCHED_FIXED_SIZE + SPOOL_SCHED_DOMAIN_MAX)
/* A whole SCHED record for a domain of dom_len bytes. */
#define SPOOL_SCHED_REC_SIZE(dom_len) \
	(SPOOL_REC_HDR_SIZE + SPOOL_SCHED_FIXED_SIZE + (size_t)(dom_len))
#define SPOOL_SCHED_REC_MAX SPOOL_SCHED_REC_SIZE(SPOOL_SCHED_DOMAIN_MAX)
/* Largest payload a record may claim; a header saying more is corrupt.
 * Bounds the reader's allocation on a damaged file. */
#define SPOOL_REC_PAYLOAD_MAX (1024u * 1024u * 1024u)

enum spool_rec_type {
	SPOOL_REC_MSG = 1,
	SPOOL_REC_DONE = 2,
	SPOOL_REC_NOTE = 3,
	/* The outbound scheduler's next attempt for one domain's recipients
	 * of a message (payload: the time, then the domain). Advisory: it
	 * pins no segment and is no live byte; one lost to an unlinked
	 * segment only makes the next attempt come sooner (spread at start,
	 * proto/sched.h). The last one of a (message, domain) in scan order
	 * wins. */
	SPOOL_REC_SCHED = 4,
};
enum spool_done_status {
	SPOOL_DONE_DELIVERED = 1,
	SPOOL_DONE_BOUNCED = 2,
	SPOOL_DONE_EXPIRED = 3,
};
enum spool_note_kind {
	SPOOL_NOTE_DELAY_WARNED = 1, /* the sender got its delayed DSN */
	/* An operator released a held message (SPOOL_MSG_HELD): drains may
	 * take it from now on. Meaningless for a message not held. */
	SPOOL_NOTE_RELEASED = 2,
};
#define SPOOL_NOTE_KIND_MAX SPOOL_NOTE_RELEASED
#define SPOOL_MSG_8BITMIME 0x1u
#define SPOOL_MSG_SMTPUTF8 0x2u
/* Quarantine (a content filter's hold verdict, like Postfix's hold queue):
 * stored, never drained or delivered until a NOTE(SPOOL_NOTE_RELEASED)
 * follows. A spool written before this bit existed never has it set. */
#define SPOOL_MSG_HELD 0x4u

struct spool_rec_hdr {
	uint8_t version;
	uint8_t type;
	uint16_t flags;
	uint32_t length;
	uint32_t crc;
	uint64_t msgid;
	uint64_t time_us;
};

/* A decoded MSG payload; pointers point into the payload passed in. */
struct spool_rec_addr {
	const char *p;
	size_t len;
};
struct spool_rec_msg {
	struct spool_rec_addr sender;
	uint32_t nrcpt;
	const uint8_t *rcpt_table; /* walk with spool_rec_msg_rcpt() */
	const char *body;
	size_t body_len;
};

enum spool_rec_err {
	SPOOL_REC_OK = 0,
	SPOOL_REC_AGAIN = -1,    /* fewer bytes than the header or payload needs */
	SPOOL_REC_BAD_MAGIC = -2,
	SPOOL_REC_BAD_VERSION = -3,
	SPOOL_REC_BAD_LENGTH = -4,
	SPOOL_REC_BAD_CRC = -5,
	SPOOL_REC_BAD_PAYLOAD = -6, /* fields disagree with the length */
};

/* Bytes of header + envelope for a MSG (everything but the body). */
size_t spool_rec_msg_head_size(size_t sender_len, uint32_t nrcpt,
		const size_t *rcpt_len);

/*
 * Write the 32-byte header and the envelope of a MSG record into dst (which
 * has spool_rec_msg_head_size() bytes), computing the CRC over header,
 * envelope and body. The body itself is not copied: the caller writes dst
 * followed by body as one record (e.g. two iovecs). Returns bytes written
 * into dst.
 */
size_t spool_rec_encode_msg_head(char *dst, uint64_t msgid, uint64_t time_us,
		uint16_t flags, const char *sender, size_t sender_len,
		uint32_t nrcpt, const char *const *rcpt, const size_t *rcpt_len,
		const char *body, size_t body_len);

/* Write a whole DONE record (SPOOL_REC_HDR_SIZE + SPOOL_DONE_PAYLOAD_SIZE
 * bytes) into dst. Returns bytes written. */
size_t spool_rec_encode_done(char *dst, uint64_t msgid, uint64_t time_us,
		uint32_t rcpt_index, enum spool_done_status status);

/* Write a whole NOTE record (SPOOL_REC_HDR_SIZE + SPOOL_NOTE_PAYLOAD_SIZE
 * bytes) into dst. Returns bytes written. */
size_t spool_rec_encode_note(char *dst, uint64_t msgid, uint64_t time_us,
		enum spool_note_kind kind);

/* Write a whole SCHED record (SPOOL_SCHED_REC_SIZE(dom_len) bytes) into
 * dst: message msgid's recipients in domain dom (dom_len bytes, at most
 * SPOOL_SCHED_DOMAIN_MAX, written ASCII lower-cased) are tried next at
 * next_us. Returns bytes written. A longer domain is the caller's bug
 * (panic): check it first. */
size_t spool_rec_encode_sched(char *dst, uint64_t msgid, uint64_t time_us,
		const char *dom, size_t dom_len, uint64_t next_us);

/*
 * Decode and check the 32-byte header at p (n bytes available) without the
 * CRC, which covers the payload: magic, version, type and a length the type
 * allows. For records whose payload is not contiguous with the header or not
 * read yet (the spool's own MSG heads, whose body is elsewhere), and as the
 * first step of spool_rec_decode(). hdr->crc is the stored CRC, unchecked.
 * Returns SPOOL_REC_OK, SPOOL_REC_AGAIN (fewer than 32 bytes) or an error.
 */
int spool_rec_decode_hdr(const char *p, size_t n, struct spool_rec_hdr *hdr);

/*
 * Decode and check one record at p (n bytes available). On SPOOL_REC_OK,
 * *hdr is filled, *payload points at the payload inside p and the record is
 * SPOOL_REC_HDR_SIZE + hdr->length bytes long. SPOOL_REC_AGAIN: more bytes
 * are needed (at the end of a segment this is a torn tail). Other values:
 * corrupt record.
 */
int spool_rec_decode(const char *p, size_t n, struct spool_rec_hdr *hdr,
		const char **payload);

/* Parse a MSG payload (after spool_rec_decode). Returns SPOOL_REC_OK or
 * SPOOL_REC_BAD_PAYLOAD. */
int spool_rec_decode_msg(const char *payload, size_t len,
		struct spool_rec_msg *msg);

/* The same for an envelope without its body (len = payload bytes before the
 * body, as spool_rec_encode_msg_head() wrote them after the header): msg->body
 * then points just past the envelope and must not be read; body_len is the
 * length the record declares. */
int spool_rec_decode_msg_head(const char *payload, size_t len,
		struct spool_rec_msg *msg);

/* Recipient i (0 <= i < nrcpt) of a decoded MSG; walks the table, so
 * iterating all recipients is O(nrcpt^2): use spool_rec_msg_rcpt_next() for
 * loops. */
struct spool_rec_addr spool_rec_msg_rcpt(const struct spool_rec_msg *msg,
		uint32_t i);
/* Iterate: *cursor starts at 0; returns the next address and advances. */
struct spool_rec_addr spool_rec_msg_rcpt_next(const struct spool_rec_msg *msg,
		size_t *cursor);

/* The domain of an address: what follows its last '@', trailing dots
 * dropped (not NUL-terminated; *len 0 and "" when there is no '@'). Points
 * into a. The one rule the index, the counters and expiry all group by. */
const char *spool_rec_addr_domain(struct spool_rec_addr a, size_t *len);

/* Parse a DONE payload. */
int spool_rec_decode_done(const char *payload, size_t len,
		uint32_t *rcpt_index, enum spool_done_status *status);

/* Parse a NOTE payload: SPOOL_REC_OK, or SPOOL_REC_BAD_PAYLOAD for a wrong
 * length, an unknown kind or a non-zero reserved field. */
int spool_rec_decode_note(const char *payload, size_t len,
		enum spool_note_kind *kind);

/* Parse a SCHED payload: SPOOL_REC_OK with *dom pointing into payload, or
 * SPOOL_REC_BAD_PAYLOAD for a length that disagrees with domain_len, a
 * domain longer than SPOOL_SCHED_DOMAIN_MAX or one with an ASCII upper-case
 * letter (no writer of ours makes one). */
int spool_rec_decode_sched(const char *payload, size_t len, uint64_t *next_us,
		const char **dom, size_t *dom_len);

/* Message id helpers. The queue id text is 14 upper-case hex digits:
 * 2 for the shard, 12 for the 48-bit sequence. */
#define SPOOL_SHARD_SHIFT 48
static inline uint64_t spool_msgid_make(unsigned shard, uint64_t seq)
{
	return ((uint64_t)shard << SPOOL_SHARD_SHIFT) |
		(seq & ((1ull << SPOOL_SHARD_SHIFT) - 1));
}
static inline unsigned spool_msgid_shard(uint64_t id)
{
	return (unsigned)(id >> SPOOL_SHARD_SHIFT);
}
static inline uint64_t spool_msgid_seq(uint64_t id)
{
	return id & ((1ull << SPOOL_SHARD_SHIFT) - 1);
}
/* Format the queue id of msgid into out (at least 15 bytes). */
void spool_msgid_format(uint64_t msgid, char *out, size_t outlen);

#endif
