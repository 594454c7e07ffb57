/* SPDX-License-Identifier: MIT */
/*
 * dsn: builds a delivery-status notification (RFC 3464 inside RFC 6522
 * multipart/report) for mail that expired after max_hold, was rejected with a
 * 5xx, or is still delayed (delay warning). Pure: bytes in, bytes out.
 *
 * Promises: the result is in spool form (DESIGN.md section 5): CRLF line
 * endings, dot-stuffed, no final ".", every line at most DSN_LINE_MAX octets
 * before its CRLF, no bare CR or LF, never a line that is just ".". Untrusted
 * text (addresses, remote replies) can neither add header fields nor MIME
 * boundaries, and everything we generate is 7-bit US-ASCII.
 */
#ifndef ETRND_PROTO_DSN_H
#define ETRND_PROTO_DSN_H

#include <stddef.h>
#include <time.h>

#include "core/buf.h"

/* RFC 5322 2.1.1 / RFC 5321 4.5.3.1.6: a line is at most 998 octets + CRLF. */
#define DSN_LINE_MAX 998
/* RFC 5322 2.1.1: generated header and text lines are folded at 78 where a
 * space allows it. */
#define DSN_FOLD_SOFT 78
/* Octets of the stored original copied back when return_max is 0 (Postfix's
 * bounce_size_limit default). */
#define DSN_RETURN_MAX_DEFAULT 50000
/* Longest address (sender, recipient) accepted; RFC 5321 4.5.3.1.3 allows a
 * path of 256, so anything longer is a caller bug: -EINVAL. */
#define DSN_ADDR_MAX 1024
/* Remote reply text kept (after sanitising); the rest is cut, "..." added. */
#define DSN_DIAG_MAX 2000
/* Longest host name (reporting MTA, remote MTA): RFC 1035 2.3.4 255, plus
 * room for an address literal and port in the remote MTA text. */
#define DSN_HOST_MAX 300
/* Message-ID / boundary seed: longer seeds are cut (RFC 2046 5.1.1 caps a
 * boundary at 70 characters). */
#define DSN_SEED_MAX 40
/* Boundaries tried before giving up (each later one hashes the content, so
 * the original would have to contain a hash of itself to collide). */
#define DSN_BOUNDARY_TRIES 8

enum dsn_action {
	DSN_ACTION_FAILED = 0,  /* expired or rejected: the mail is returned */
	DSN_ACTION_DELAYED,     /* still queued: a warning only */
};

struct dsn_rcpt {
	/* Original recipient, as received (not NUL-terminated). Printable
	 * ASCII gives "Final-Recipient: rfc822; addr"; anything else (8-bit,
	 * SMTPUTF8) gives "utf-8; " with RFC 6533 utf-8-addr-xtext encoding,
	 * which is 7-bit and lossless (invalid UTF-8 becomes \x{FFFD}). */
	const char *addr;
	size_t addr_len;
	enum dsn_action action;
	/* Enhanced status code, NUL-terminated: "[245].d{1,3}.d{1,3}",
	 * e.g. "4.4.7" (expired) or "5.1.1". Anything else is -EINVAL. */
	const char *status;
	/* NULL or the host that answered (NUL-terminated, untrusted). */
	const char *remote_mta;
	/* NULL or the remote reply text, e.g. "550 5.1.1 <u@d>: no such user"
	 * (not NUL-terminated, untrusted, may hold CRLFs of a multi-line
	 * reply). Written as "Diagnostic-Code: smtp; <text>". */
	const char *diagnostic;
	size_t diag_len;
	time_t last_attempt;    /* 0 = no attempt yet: no Last-Attempt-Date */
};

struct dsn_input {
	const char *reporting_mta;   /* our host name: [A-Za-z0-9.-:[]] only */
	const char *postmaster;      /* From: address, e.g. "MAILER-DAEMON@host";
	                                printable ASCII, no space, '<' or '>' */
	const char *qid;             /* original queue id, alphanumeric */
	/* Original envelope sender: the DSN goes To: here. Never empty (no DSN
	 * is built for <>). In the To: header and the text, bytes outside
	 * printable ASCII become '?': the envelope, not this header, carries
	 * the exact address. */
	const char *sender;
	size_t sender_len;
	time_t arrival;              /* when we received the original */
	time_t now;                  /* Date:, and "held for ..." */
	time_t retry_until;          /* delayed: Will-Retry-Until; 0 = omit */
	const struct dsn_rcpt *rcpt; /* nrcpt >= 1 recipients to report */
	unsigned nrcpt;
	/* The stored original: our Received: first, CRLF, dot-stuffed, no final
	 * ".". Treated as untrusted bytes; may be empty. */
	const char *orig;
	size_t orig_len;
	/* 0: return the original's header section only (text/rfc822-headers,
	 * Postfix's default for expiry); 1: the whole message (message/rfc822)
	 * if orig_len <= return_max, else the headers. */
	int return_full;
	/* Cap on octets of the original copied in either mode (a header section
	 * over it is cut at a line end); 0 = DSN_RETURN_MAX_DEFAULT. */
	size_t return_max;
	/* Unique token for Message-ID and boundary, e.g. qid + "." + time;
	 * characters outside [A-Za-z0-9-_] count as '.'. Required. */
	const char *message_id_seed;
};

/* dsn_build() *flags: the returned original holds 8-bit bytes, so the DSN
 * declares Content-Transfer-Encoding: 8bit and must be sent with
 * BODY=8BITMIME (or rebuilt with return_full 0 if the relay lacks it). */
#define DSN_OUT_8BIT 0x1u

/*
 * Append the whole DSN message (header section and MIME body) to out, in
 * spool form. Our own Received: is not added (the relay that sends it does).
 * in and everything it points to are only read during the call; nothing is
 * kept. Original copying: stored lines are copied verbatim (they are already
 * stuffed); a bare CR or LF becomes a line break in message/rfc822 and a
 * space in headers; lines over DSN_LINE_MAX are folded before a space in
 * headers (or with an added space if there is none) and cut in the body; an
 * empty original gives no third part.
 *
 * Returns 0 and sets *flags (may be NULL) to DSN_OUT_* bits; -ENOMEM or
 * -E2BIG (out's cap); -EINVAL for bad input (missing or malformed field,
 * or no boundary found). On error out is left as it was.
 */
int dsn_build(const struct dsn_input *in, struct buf *out, unsigned *flags);

#endif
