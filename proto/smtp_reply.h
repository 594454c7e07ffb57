/* SPDX-License-Identifier: MIT */
/*
 * smtp_reply: the one reader of SMTP server replies (RFC 5321 4.2), for
 * every client side (smtp_client for deliveries, etrn_client for ETRN and
 * ATRN). Bytes in any split go in; whole replies come out: multi-line
 * replies joined, the enhanced status code (RFC 2034, RFC 3463) split off,
 * the text made printable, the EHLO keywords turned into flags. Bounded:
 * a line over the owner's limit, or a reply over its line count, is an
 * error at once. Pure: no I/O, no allocation (the line buffer is the
 * owner's).
 */
#ifndef ETRND_PROTO_SMTP_REPLY_H
#define ETRND_PROTO_SMTP_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "core/linereader.h"

/* Reply text kept: lines of a multiline reply joined with one space,
 * enhanced codes stripped, the rest cut. */
#define SMTP_REPLY_TEXT_MAX 512
/* "x.yyy.zzz" + NUL (RFC 3463 2: 1*3digit subject and detail). */
#define SMTP_REPLY_ENH_MAX 16

/* EHLO keywords (RFC 5321 4.1.1.1 ehlo-line), case-insensitive. The values
 * of the first six are smtp_client.h's SMTP_CLIENT_CAP_*. */
#define SMTP_REPLY_CAP_PIPELINING 0x01u /* RFC 2920 */
#define SMTP_REPLY_CAP_SIZE 0x02u       /* RFC 1870 */
#define SMTP_REPLY_CAP_8BITMIME 0x04u   /* RFC 6152 */
#define SMTP_REPLY_CAP_ENHANCED 0x08u   /* RFC 2034 ENHANCEDSTATUSCODES */
#define SMTP_REPLY_CAP_SMTPUTF8 0x10u   /* RFC 6531 */
#define SMTP_REPLY_CAP_STARTTLS 0x20u   /* RFC 3207 */
#define SMTP_REPLY_CAP_AUTH 0x40u       /* RFC 4954, mechanisms in auth */

/* SASL mechanisms of the AUTH keyword ("AUTH PLAIN LOGIN", or the old
 * "AUTH=PLAIN LOGIN" some servers still send); others are ignored. */
#define SMTP_REPLY_AUTH_PLAIN 0x01u /* RFC 4616 */
#define SMTP_REPLY_AUTH_LOGIN 0x02u /* draft-murchison-sasl-login */

/* One reply: the one being read, then (after SMTP_REPLY_DONE) the one read,
 * until the next feed. */
struct smtp_reply {
	int code;                      /* 200..599 */
	unsigned lines;                /* lines read of it */
	char enh[SMTP_REPLY_ENH_MAX];  /* the first line's "x.y.z"; once DONE,
	                                  "<class>.0.0" when the server gave none */
	int enh_sent;                  /* enh is the server's, not the class's */
	char text[SMTP_REPLY_TEXT_MAX]; /* printable ASCII ('?' for the rest),
	                                  not NUL-terminated */
	size_t text_len;
	/* Lines 2.. of a 2xx reply read as EHLO keywords: only a reply to
	 * EHLO gives them a meaning. */
	unsigned caps;                 /* SMTP_REPLY_CAP_* */
	unsigned auth;                 /* SMTP_REPLY_AUTH_* */
	uint64_t size_max;             /* SIZE's number; 0: none or unreadable */
};

/* Embedded in its owner; all fields are the reader's. */
struct smtp_reply_reader {
	struct linereader lr;
	unsigned max_lines;
	int done;                      /* r holds a whole reply */
	struct smtp_reply r;
};

enum smtp_reply_status {
	SMTP_REPLY_AGAIN = 0,  /* all the input used, no whole reply yet */
	SMTP_REPLY_DONE,       /* a whole reply in rd->r; input after its last
	                          line is not consumed */
	/* Protocol errors: the reply cannot be read; the session is over
	 * (smtp_reply_error() names them). */
	SMTP_REPLY_ERR_SYNTAX, /* not "ddd", "ddd text" or "ddd-text" */
	SMTP_REPLY_ERR_CODE,   /* a line of a multiline reply changed the code */
	SMTP_REPLY_ERR_LINES,  /* more than max_lines lines */
	SMTP_REPLY_ERR_LONG,   /* a line over line_max octets (CRLF included) */
};

/* Start empty. buf (line_max octets, the owner's) holds a partial line and
 * must outlive the reader; line_max >= LINEREADER_MAX_MIN, max_lines >= 1
 * (panics otherwise: the owner's bug). */
void smtp_reply_init(struct smtp_reply_reader *rd, char *buf, size_t line_max,
		unsigned max_lines);

/* Forget a partial reply and any buffered partial line (a session that
 * starts over: after STARTTLS, or after it failed). */
void smtp_reply_reset(struct smtp_reply_reader *rd);

/*
 * Read from p[0..n) until one reply is whole, an error, or the input is
 * used up. Returns the octets consumed; *st says which. After DONE the reply
 * is in rd->r until the next call; the next call starts a new reply. After
 * an error the caller ends the session (call smtp_reply_reset() to read
 * on). A bare LF ends a line (Postfix's client tolerates it); NUL and a
 * bare CR reach the text as '?'. Splitting the input anywhere gives the
 * same replies and errors.
 */
size_t smtp_reply_feed(struct smtp_reply_reader *rd, const char *p, size_t n,
		enum smtp_reply_status *st);

/* 1 while part of a reply has been read (a line, or octets of one) and the
 * reply is not whole. */
int smtp_reply_busy(const struct smtp_reply_reader *rd);

/* The error's words for a "protocol error: ..." text; static. */
const char *smtp_reply_error(enum smtp_reply_status st);

/* RFC 3463 2 status-code "class.subject.detail" at t[0..n), its class that
 * of the reply code (RFC 2034 3). Returns its length (up to the SP or the
 * end) or 0 when t does not start with one. */
size_t smtp_reply_enh_len(const char *t, size_t n, int code);

#endif
