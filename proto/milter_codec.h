/* SPDX-License-Identifier: MIT */
/*
 * milter_codec: the bytes of the Sendmail milter protocol, version 6 (as
 * libmilter 8.14+ and Postfix 2.6+ speak it), MTA side. Encoders for every
 * command we send, a bounded incremental reader of the filter's frames,
 * decoders for every reply into tagged structs that point into the frame,
 * and the option negotiation as a pure function. Pure: no I/O, no
 * allocation, no globals; every buffer is the caller's.
 */
#ifndef ETRND_PROTO_MILTER_CODEC_H
#define ETRND_PROTO_MILTER_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Protocol versions: we speak 6; Postfix refuses a filter below 2 or above
 * what it offered, and so do we. */
#define MILTER_VERSION 6u
#define MILTER_VERSION_MIN 2u

/* A frame: 4-octet big-endian length (of the command octet and the data),
 * the command octet, the data. */
#define MILTER_LEN_OCTETS 4u
/* Longest data of one command we send: libmilter refuses a command longer
 * than its MILTER_MAX_DATA_SIZE (65535) by default, and a body chunk is at
 * most MILTER_CHUNK_SIZE (65535, sendmail's mfdef.h). */
#define MILTER_DATA_MAX 65535u
#define MILTER_CHUNK_MAX 65535u
/* Most octets an encoder writes: length, command, data. */
#define MILTER_CMD_MAX (MILTER_LEN_OCTETS + 1u + MILTER_DATA_MAX)
/* Largest reply frame (command octet + data) worth reading: a REPLBODY
 * chunk of MILTER_CHUNK_MAX. A reader whose buffer is smaller refuses
 * larger frames (MILTER_E_FRAME_LONG), which is how an owner that never
 * negotiates SMFIF_CHGBODY keeps its buffer small. */
#define MILTER_FRAME_MAX (1u + MILTER_CHUNK_MAX)
/* Reader buffer an owner without body replacement needs: header edits
 * (rspamd's X-Spamd-Result, a DKIM signature) are a few KiB. */
#define MILTER_FRAME_SMALL 16384u
/* Smallest reader buffer: an OPTNEG reply without symbol lists. */
#define MILTER_FRAME_MIN (1u + 12u)

/* SMTP reply line from SMFIR_REPLYCODE, CRLF excluded (RFC 5321
 * 4.5.3.1.5: 512 with it), and the lines of one multi-line reply we keep. */
#define MILTER_REPLY_LINE_MAX 510u
#define MILTER_REPLY_LINES_MAX 32u
/* Header field line, CRLF excluded (RFC 5322 2.1.1), per physical line of
 * a folded value; a name is one such line at most. */
#define MILTER_HDR_LINE_MAX 998u

/* Commands, MTA to filter (SMFIC_*, sendmail's mfdef.h). */
enum milter_cmd {
	MILTER_CMD_ABORT = 'A',    /* abort the message; no reply */
	MILTER_CMD_BODY = 'B',     /* a body chunk */
	MILTER_CMD_CONNECT = 'C',  /* host, family, port, address */
	MILTER_CMD_MACRO = 'D',    /* stage + name/value pairs; no reply */
	MILTER_CMD_BODYEOB = 'E',  /* end of body: the modifications, then
	                              the verdict */
	MILTER_CMD_HELO = 'H',
	MILTER_CMD_QUIT_NC = 'K',  /* quit, a new connection follows; no
	                              reply */
	MILTER_CMD_HEADER = 'L',   /* name NUL value NUL */
	MILTER_CMD_MAIL = 'M',     /* "<sender>" NUL then ESMTP args NUL */
	MILTER_CMD_EOH = 'N',      /* end of headers */
	MILTER_CMD_OPTNEG = 'O',   /* version, actions, protocol flags */
	MILTER_CMD_QUIT = 'Q',     /* close; no reply */
	MILTER_CMD_RCPT = 'R',     /* "<rcpt>" NUL then ESMTP args NUL */
	MILTER_CMD_DATA = 'T',
	MILTER_CMD_UNKNOWN = 'U',  /* an SMTP command we do not know */
};

/* Replies, filter to MTA (SMFIR_*). */
enum milter_reply_kind {
	MILTER_R_ADDRCPT = '+',     /* add a recipient */
	MILTER_R_DELRCPT = '-',     /* remove a recipient */
	MILTER_R_ADDRCPT_PAR = '2', /* add a recipient with ESMTP args */
	MILTER_R_SHUTDOWN = '4',    /* 421 and close */
	MILTER_R_ACCEPT = 'a',      /* accept, no more events for it */
	MILTER_R_REPLBODY = 'b',    /* replace the body (one chunk) */
	MILTER_R_CONTINUE = 'c',
	MILTER_R_DISCARD = 'd',     /* accept and drop silently */
	MILTER_R_CHGFROM = 'e',     /* change the envelope sender */
	MILTER_R_CONNFAIL = 'f',    /* cause a connection failure */
	MILTER_R_ADDHEADER = 'h',   /* append a header */
	MILTER_R_INSHEADER = 'i',   /* insert a header at an index */
	MILTER_R_SETSYMLIST = 'l',  /* only inside an OPTNEG reply (stage +
	                               macro names), never a frame of its own */
	MILTER_R_CHGHEADER = 'm',   /* change (empty value: delete) the
	                               index-th header of that name */
	MILTER_R_OPTNEG = 'O',      /* the negotiation reply */
	MILTER_R_PROGRESS = 'p',    /* still working: restart the timer */
	MILTER_R_QUARANTINE = 'q',  /* hold the message, with a reason */
	MILTER_R_REJECT = 'r',      /* 5xx with the MTA's default text */
	MILTER_R_SKIP = 's',        /* no more body chunks, please */
	MILTER_R_TEMPFAIL = 't',    /* 4xx with the MTA's default text */
	MILTER_R_REPLYCODE = 'y',   /* 4xx/5xx with the filter's text */
};

/* Actions a filter may take (SMFIF_*), offered in OPTNEG. */
#define MILTER_F_ADDHDRS 0x001u
#define MILTER_F_CHGBODY 0x002u
#define MILTER_F_ADDRCPT 0x004u
#define MILTER_F_DELRCPT 0x008u
#define MILTER_F_CHGHDRS 0x010u
#define MILTER_F_QUARANTINE 0x020u
#define MILTER_F_CHGFROM 0x040u      /* version 6 */
#define MILTER_F_ADDRCPT_PAR 0x080u  /* version 6 */
#define MILTER_F_SETSYMLIST 0x100u   /* version 6 */
#define MILTER_F_ALL 0x1ffu

/* Protocol flags (SMFIP_*): events the filter does not want (NO*), events
 * it will not answer (NR_*), and extensions. */
#define MILTER_P_NOCONNECT 0x000001u
#define MILTER_P_NOHELO 0x000002u
#define MILTER_P_NOMAIL 0x000004u
#define MILTER_P_NORCPT 0x000008u
#define MILTER_P_NOBODY 0x000010u
#define MILTER_P_NOHDRS 0x000020u
#define MILTER_P_NOEOH 0x000040u
#define MILTER_P_NR_HDR 0x000080u
#define MILTER_P_NOUNKNOWN 0x000100u
#define MILTER_P_NODATA 0x000200u
#define MILTER_P_SKIP 0x000400u       /* the MTA understands SMFIR_SKIP */
#define MILTER_P_RCPT_REJ 0x000800u   /* send rejected RCPTs too */
#define MILTER_P_NR_CONN 0x001000u
#define MILTER_P_NR_HELO 0x002000u
#define MILTER_P_NR_MAIL 0x004000u
#define MILTER_P_NR_RCPT 0x008000u
#define MILTER_P_NR_DATA 0x010000u
#define MILTER_P_NR_UNKN 0x020000u
#define MILTER_P_NR_EOH 0x040000u
#define MILTER_P_NR_BODY 0x080000u
#define MILTER_P_HDR_LEADSPC 0x100000u /* header values keep their
                                          leading space, both ways */
#define MILTER_P_NOSEND_MASK (MILTER_P_NOCONNECT | MILTER_P_NOHELO | \
	MILTER_P_NOMAIL | MILTER_P_NORCPT | MILTER_P_NOBODY | MILTER_P_NOHDRS | \
	MILTER_P_NOEOH | MILTER_P_NOUNKNOWN | MILTER_P_NODATA)
#define MILTER_P_NR_MASK (MILTER_P_NR_CONN | MILTER_P_NR_HELO | \
	MILTER_P_NR_MAIL | MILTER_P_NR_RCPT | MILTER_P_NR_DATA | \
	MILTER_P_NR_UNKN | MILTER_P_NR_HDR | MILTER_P_NR_EOH | MILTER_P_NR_BODY)
/* Every flag version 6 defines; versions 2-5 know fewer (Postfix's
 * milter8.c masks by version the same way). */
#define MILTER_P_V2_MASK (MILTER_P_NOCONNECT | MILTER_P_NOHELO | \
	MILTER_P_NOMAIL | MILTER_P_NORCPT | MILTER_P_NOBODY | MILTER_P_NOHDRS | \
	MILTER_P_NOEOH | MILTER_P_NR_HDR)
#define MILTER_P_V3_MASK (MILTER_P_V2_MASK | MILTER_P_NOUNKNOWN)
#define MILTER_P_V4_MASK (MILTER_P_V3_MASK | MILTER_P_NODATA)
#define MILTER_P_V6_MASK 0x1fffffu

/* Address families of SMFIC_CONNECT (SMFIA_*). */
#define MILTER_FAMILY_UNKNOWN 'U' /* host name only: no port, no address */
#define MILTER_FAMILY_UNIX 'L'
#define MILTER_FAMILY_INET '4'
#define MILTER_FAMILY_INET6 '6'

/* Macro stages (SMFIM_*): the index of an OPTNEG reply's symbol list. */
enum milter_stage {
	MILTER_STAGE_CONNECT = 0,
	MILTER_STAGE_HELO = 1,
	MILTER_STAGE_ENVFROM = 2,
	MILTER_STAGE_ENVRCPT = 3,
	MILTER_STAGE_DATA = 4,
	MILTER_STAGE_EOM = 5,
	MILTER_STAGE_EOH = 6,
};
#define MILTER_STAGES 7u

/* What went wrong, for the log (milter_strerror()); 0 is success. A frame
 * or reply error means the filter and we are out of step: the owner drops
 * the connection and applies milter_default_action. */
enum milter_err {
	MILTER_OK = 0,
	MILTER_E_FRAME_EMPTY,    /* a length of 0: no command octet */
	MILTER_E_FRAME_LONG,     /* longer than the reader's buffer */
	MILTER_E_UNKNOWN,        /* a reply command octet we do not know */
	MILTER_E_TRAILING,       /* data after a reply that has none, or
	                            after its last field */
	MILTER_E_SHORT,          /* data shorter than the reply's fields */
	MILTER_E_NOTERM,         /* a string without its NUL */
	MILTER_E_REPLYCODE,      /* not "4xx/5xx [x.y.z] text" lines */
	MILTER_E_HDR_NAME,       /* empty, too long, not printable, or ':' */
	MILTER_E_HDR_VALUE,      /* bare CR, LF not folding, NUL, control,
	                            or a line over MILTER_HDR_LINE_MAX */
	MILTER_E_ADDR,           /* an empty or unprintable address/args */
	MILTER_E_TEXT,           /* an unprintable quarantine reason or
	                            symbol list */
	MILTER_E_VERSION,        /* OPTNEG version below 2 or above ours */
	MILTER_E_ACTIONS,        /* the filter wants actions not offered */
	MILTER_E_PROTO,          /* the filter skips replies (NR_*) or uses
	                            SKIP/RCPT_REJ we did not offer */
	MILTER_E_UNEXPECTED,     /* a valid reply, but not after this event */
	MILTER_E_NOT_NEGOTIATED, /* a modification whose action flag the
	                            negotiation did not grant */
	MILTER_E_INVAL,          /* encoder: a string with NUL, data over
	                            MILTER_DATA_MAX, an unknown family */
	MILTER_E_NOSPACE,        /* encoder: the output buffer is too small */
};

/* Octets at p, not NUL-terminated unless said; p may be NULL when len 0. */
struct milter_str {
	const char *p;
	size_t len;
};

/* ---- Encoders ----
 * Each writes one whole frame into out[0..cap) and returns its length, or
 * -MILTER_E_NOSPACE (cap too small; nothing useful written) or
 * -MILTER_E_INVAL (input the protocol cannot carry: a NUL inside a string,
 * data over MILTER_DATA_MAX). A buffer of MILTER_CMD_MAX always has room
 * for a valid command. */

/* SMFIC_OPTNEG: our version, the actions we allow (MILTER_F_*), the
 * protocol flags we offer (MILTER_P_*). */
ssize_t milter_encode_optneg(uint8_t *out, size_t cap, uint32_t version,
		uint32_t actions, uint32_t proto);

/* SMFIC_MACRO: stage is the command the macros go with ('C', 'H', 'M',
 * 'R', 'T', 'N', 'E'); kv[0..2n) alternate name ("j", "{daemon_name}")
 * and value. */
ssize_t milter_encode_macro(uint8_t *out, size_t cap, enum milter_cmd stage,
		const struct milter_str *kv, size_t n);

/* SMFIC_CONNECT: host name (or "[addr]" when it has none), family
 * (MILTER_FAMILY_*), port (host order; written big-endian) and address
 * text ("192.0.2.1", "2001:db8::1", a socket path). Family 'U' writes the
 * host name and family only. */
ssize_t milter_encode_connect(uint8_t *out, size_t cap, struct milter_str host,
		char family, uint16_t port, struct milter_str addr);

/* SMFIC_HELO: the HELO/EHLO argument. */
ssize_t milter_encode_helo(uint8_t *out, size_t cap, struct milter_str helo);

/* SMFIC_MAIL / SMFIC_RCPT: addr without angle brackets ("" for the null
 * sender), written as "<addr>"; then each ESMTP argument ("SIZE=1234"). */
ssize_t milter_encode_mail(uint8_t *out, size_t cap, struct milter_str addr,
		const struct milter_str *args, size_t nargs);
ssize_t milter_encode_rcpt(uint8_t *out, size_t cap, struct milter_str addr,
		const struct milter_str *args, size_t nargs);

/* SMFIC_HEADER: name and value as in the message (value without the
 * space after the colon unless MILTER_P_HDR_LEADSPC was agreed; folding
 * CRLFs as they are). */
ssize_t milter_encode_header(uint8_t *out, size_t cap, struct milter_str name,
		struct milter_str value);

/* SMFIC_BODY: one chunk of at most MILTER_CHUNK_MAX octets, any octets
 * (the body un-dot-stuffed, CRLF line ends). */
ssize_t milter_encode_body(uint8_t *out, size_t cap, const void *chunk,
		size_t len);

/* SMFIC_UNKNOWN: the command line as the client sent it. */
ssize_t milter_encode_unknown(uint8_t *out, size_t cap, struct milter_str line);

/* The commands without data: MILTER_CMD_DATA, _EOH, _BODYEOB, _ABORT,
 * _QUIT, _QUIT_NC (-MILTER_E_INVAL for any other). */
ssize_t milter_encode_simple(uint8_t *out, size_t cap, enum milter_cmd cmd);

/* Any frame: cmd and data[0..len) as they are (a filter's replies in a
 * test or a benchmark filter, a command this codec has no encoder for).
 * -MILTER_E_INVAL when len > MILTER_FRAME_MAX - 1. */
ssize_t milter_encode_frame(uint8_t *out, size_t cap, uint8_t cmd,
		const void *data, size_t len);

/* ---- Reader ---- */

/* One frame: its command octet and data. data points into the input given
 * to milter_reader_feed() or into the reader's buffer: valid until the
 * next feed or until the input goes away, whichever is first. */
struct milter_frame {
	uint8_t cmd;
	const uint8_t *data;
	size_t len;
};

/* Embedded in its owner; buf (max octets) is the owner's and must outlive
 * the reader. */
struct milter_reader {
	uint8_t *buf;
	size_t max;          /* longest frame (command + data) accepted */
	uint8_t lenb[MILTER_LEN_OCTETS];
	size_t nlen;         /* length octets read of the current frame */
	size_t want;         /* the current frame's length, once read */
	size_t have;         /* its octets in buf */
	int failed;          /* an error was returned: only a reset reads on */
};

enum milter_read_status {
	MILTER_READ_AGAIN = 0, /* all the input used, no whole frame */
	MILTER_READ_FRAME,     /* one frame in *fr */
	MILTER_READ_ERROR,     /* *err says which; the stream is out of step */
};

/* Start empty; max >= MILTER_FRAME_MIN (panics otherwise: the owner's
 * bug). */
void milter_reader_init(struct milter_reader *rd, uint8_t *buf, size_t max);

/* Forget a partial frame and an error (a new connection). */
void milter_reader_reset(struct milter_reader *rd);

/* Octets of a partial frame held (nonzero at EOF: the filter stopped
 * mid-frame). */
size_t milter_reader_pending(const struct milter_reader *rd);

/*
 * Read from p[0..n) up to the end of one frame. Returns the octets consumed
 * and says in *st what came of them; call again with the rest for the next
 * frame. A frame longer than max is refused as soon as its length is read
 * (MILTER_E_FRAME_LONG), before any of it is buffered. After an error every
 * call returns 0 and the same error until milter_reader_reset(). Splitting
 * the input anywhere gives the same frames and errors.
 */
size_t milter_reader_feed(struct milter_reader *rd, const uint8_t *p, size_t n,
		enum milter_read_status *st, struct milter_frame *fr,
		enum milter_err *err);

/* ---- Decoders ---- */

/* SMFIR_REPLYCODE, checked: one or more lines joined by CRLF (libmilter's
 * smfi_setmlreply), each "ddd-text" but the last "ddd text" or "ddd", all
 * with the same code, whose first digit is 4 or 5, printable ASCII (and
 * HT), each at most MILTER_REPLY_LINE_MAX, at most MILTER_REPLY_LINES_MAX
 * lines. An RFC 3463 enhanced code after the first line's code must have
 * the reply's class (4.x.x for 4xx). */
struct milter_replycode {
	int code;                /* 400..599 */
	struct milter_str enh;   /* the first line's "x.y.z", or len 0 */
	struct milter_str text;  /* the first line after its code and enh */
	struct milter_str raw;   /* every line, CRLF-joined, without the
	                            final CRLF: ready to send as it is */
	unsigned lines;
};

/* SMFIR_ADDHEADER / INSHEADER / CHGHEADER. name is printable ASCII
 * without ':' (RFC 5322 2.2 ftext); value may be folded (LF or CRLF
 * followed by SP or HT: libmilter lets smfi_addheader fold with a bare LF),
 * never a bare CR, an LF not followed by SP/HT or at the end, or another
 * control octet (header injection). CHGHEADER with an empty value deletes
 * the index-th (1-based) header of that name. */
struct milter_hdr {
	uint32_t index;          /* INSHEADER: position (0 = first);
	                            CHGHEADER: occurrence (1-based; Sendmail
	                            reads 0 as 1); ADDHEADER: 0 */
	struct milter_str name;
	struct milter_str value;
};

/* SMFIR_ADDRCPT / DELRCPT / ADDRCPT_PAR / CHGFROM: an address as the
 * filter wrote it (often "<a@b>") and, for ADDRCPT_PAR and CHGFROM, the
 * optional ESMTP args (len 0 when absent). Non-empty, no control octets;
 * 8-bit octets pass (SMTPUTF8). */
struct milter_addr {
	struct milter_str addr;
	struct milter_str args;
};

/* SMFIR_OPTNEG / SMFIC_OPTNEG's answer: version, actions, protocol flags,
 * and the symbol lists (SMFIR_SETSYMLIST's content): per stage, the
 * space-separated macro names the filter wants (len 0: none given). A
 * stage number above 6 is ignored, as Postfix does; the last list given
 * for a stage wins. */
struct milter_optneg {
	uint32_t version;
	uint32_t actions;
	uint32_t proto;
	struct milter_str symlist[MILTER_STAGES];
};

struct milter_reply {
	enum milter_reply_kind kind;
	union {
		struct milter_replycode rc;   /* REPLYCODE */
		struct milter_hdr hdr;        /* ADDHEADER, INSHEADER, CHGHEADER */
		struct milter_addr addr;      /* ADDRCPT, DELRCPT, ADDRCPT_PAR,
		                                 CHGFROM */
		struct milter_str reason;     /* QUARANTINE */
		struct milter_str body;       /* REPLBODY: any octets */
		struct milter_optneg optneg;  /* OPTNEG */
	} u;
};

/* Decode and check one frame from the filter. Returns MILTER_OK with *r
 * filled (pointers into fr->data: valid as long as the frame is), or the
 * error. Knows nothing of the session: milter_reply_check() says whether
 * the reply may come now. */
enum milter_err milter_decode_reply(const struct milter_frame *fr,
		struct milter_reply *r);

/* ---- Session rules (pure) ---- */

/* Our offer and the outcome of the negotiation. */
struct milter_neg {
	uint32_t version;
	uint32_t actions;  /* MILTER_F_* */
	uint32_t proto;    /* MILTER_P_* */
};

/*
 * The filter's OPTNEG reply against our offer. The version must be
 * MILTER_VERSION_MIN..offer->version (Postfix refuses above its own; we
 * refuse below 2 as well); the actions a subset of ours (as Postfix
 * requires); NR_*, SKIP and RCPT_REJ flags we did not offer are refused
 * (a reply we would wait for forever, or events we would not send), other
 * flags we did not offer are dropped (we send those events anyway; a
 * filter answers what it did not ask for). Flags the agreed version does
 * not define are dropped. Fills *agreed on MILTER_OK.
 */
enum milter_err milter_negotiate(const struct milter_neg *offer,
		const struct milter_optneg *reply, struct milter_neg *agreed);

/* 1 when the command is not to be sent under the agreed flags (NO*:
 * CONNECT, HELO, MAIL, RCPT, HEADER, EOH, BODY, DATA, UNKNOWN). */
int milter_cmd_skipped(enum milter_cmd cmd, uint32_t proto);

/* 1 when the filter answers the command under the agreed flags: OPTNEG
 * and BODYEOB always, the events unless their NR_* flag is agreed, MACRO,
 * ABORT, QUIT and QUIT_NC never. */
int milter_cmd_wants_reply(enum milter_cmd cmd, uint32_t proto);

/* 1 when the reply ends the exchange for the command (accept, continue,
 * reject, tempfail, discard, replycode, skip, shutdown, connfail, and
 * OPTNEG for OPTNEG); 0 for PROGRESS and the modifications, which come
 * before the final one after BODYEOB. */
int milter_reply_final(enum milter_reply_kind kind);

/*
 * May this reply come after this command, under the agreement? OPTNEG only
 * after OPTNEG; modifications (headers, recipients, sender, body,
 * quarantine) and PROGRESS only after BODYEOB, each only with its action
 * flag (else MILTER_E_NOT_NEGOTIATED); SKIP only after BODY with
 * MILTER_P_SKIP agreed; the verdicts after any event that is answered.
 * Returns MILTER_OK or MILTER_E_UNEXPECTED / MILTER_E_NOT_NEGOTIATED.
 */
enum milter_err milter_reply_check(enum milter_cmd after,
		enum milter_reply_kind kind, const struct milter_neg *agreed);

/* ---- Helpers for applying a reply ---- */

/*
 * Write a header from the filter as it goes into the stored message:
 * "Name: value" CRLF, a folded value's LFs made CRLF, no space added after
 * the colon when leadspc (MILTER_P_HDR_LEADSPC agreed: the value carries
 * its own). The header must have passed milter_decode_reply(). Returns the
 * length or -MILTER_E_NOSPACE.
 */
ssize_t milter_header_format(const struct milter_hdr *h, int leadspc,
		char *out, size_t cap);

/* The words for an error, for "milter NAME: protocol error: ..."; static. */
const char *milter_strerror(enum milter_err err);

/* The name of a command or reply octet ("SMFIC_MAIL", "SMFIR_ACCEPT") for
 * the log, "unknown" for others; static. */
const char *milter_cmd_name(uint8_t cmd);
const char *milter_reply_name(uint8_t kind);

#endif
