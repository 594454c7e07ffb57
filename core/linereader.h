/* SPDX-License-Identifier: MIT */
/*
 * linereader: the one bounded, resumable reader of LF-terminated protocol
 * lines (SMTP commands on the server, replies on the client). Bytes go in
 * in any split; whole lines come out, CRLF or bare LF removed. A line longer
 * than the limit is refused as soon as the limit passes without an LF, before
 * it is all buffered, and then dropped as it arrives up to its LF, so memory
 * never grows past the limit. NUL and a bare CR inside a line are kept, for
 * the caller to decide (STYLE.md: handle them deliberately): a NUL is
 * flagged with every line, a bare CR on request (linereader_bare_cr(), one
 * more scan that most callers do not need: their parsers refuse a CR where
 * it matters). Pure: no I/O, no allocation.
 */
#ifndef ETRND_CORE_LINEREADER_H
#define ETRND_CORE_LINEREADER_H

#include <stddef.h>
#include <string.h>

/* Smallest limit: one octet and its LF. */
#define LINEREADER_MAX_MIN 2

enum linereader_status {
	LINEREADER_AGAIN = 0,    /* input used up inside a line: feed more */
	LINEREADER_LINE,         /* one whole line in ln->p, ln->len */
	LINEREADER_OVERLONG,     /* the limit passed with no LF yet: the line is
	                            being dropped; reported once per line */
	LINEREADER_OVERLONG_END, /* the LF of a refused line: dropped up to here
	                            (also when the limit and the LF came in the
	                            same feed, without OVERLONG before it) */
};

#define LINEREADER_F_NUL 0x1u     /* the line holds a NUL octet */
#define LINEREADER_F_BARE_LF 0x2u /* ended by LF alone, not CRLF */

struct linereader_line {
	enum linereader_status status;
	const char *p;  /* LINE: the line without its CRLF/LF, not NUL-
	                   terminated; points into the input or the reader's
	                   buffer: valid until the next feed or the input's end */
	size_t len;
	unsigned flags; /* LINE: LINEREADER_F_* */
};

/* Embedded in its owner; buf is the owner's (at least max octets) and must
 * outlive the reader. */
struct linereader {
	char *buf;
	size_t max;   /* longest line accepted, LF (and CR) included */
	size_t len;   /* octets of an incomplete line in buf */
	int dropping; /* inside a refused line: drop up to the LF */
};

/* Start empty; max >= LINEREADER_MAX_MIN (panics otherwise). */
void linereader_init(struct linereader *lr, char *buf, size_t max);

/* Forget a partial or refused line (a session that starts over). */
void linereader_reset(struct linereader *lr);

/* Octets of an incomplete line held (nonzero at EOF: the peer left a line
 * unfinished). */
size_t linereader_pending(const struct linereader *lr);

/*
 * Read from p[0..n): up to and including one LF, or all of it when there is
 * none. Returns the octets consumed (never 0 for n > 0) and says in *ln what
 * came of them. Call again with the rest to read the next line. Splitting
 * the input anywhere gives the same lines and verdicts.
 */
size_t linereader_feed(struct linereader *lr, const char *p, size_t n,
		struct linereader_line *ln);

/* 1 when a LINE holds a CR (one not directly before its LF: that one is
 * removed already). */
static inline int linereader_bare_cr(const struct linereader_line *ln)
{
	return ln->len > 0 && memchr(ln->p, '\r', ln->len) != NULL;
}

#endif
