/* SPDX-License-Identifier: MIT */
/*
 * atrn: the ATRN command's argument and replies (RFC 2645 section 4), pure:
 * the comma list of domains parsed into lower-case names, and one reply
 * line per way an ATRN ends. The session behind it is proto/drain_atrn.c.
 */
#ifndef ETRND_PROTO_ATRN_H
#define ETRND_PROTO_ATRN_H

#include <stddef.h>

#include "core/buf.h"
#include "proto/etrn.h"

/* Domains one ATRN releases at most: a longer list is refused 501; with
 * no list, the user's first this many domains with mail held go (the rest
 * wait for the next ATRN). Bounds the session's memory. */
#define ATRN_DOMAINS_MAX 32
/* How an ATRN is answered (RFC 2645 section 4; atrn_reply()). */
enum atrn_verdict {
	ATRN_OK = 0,        /* 250 OK now reversing the connection */
	ATRN_SYNTAX,        /* 501 5.5.4: not a comma list of domains */
	ATRN_TOO_MANY,      /* 501 5.5.4: over ATRN_DOMAINS_MAX */
	ATRN_DENIED,        /* 450 4.7.1: a domain the user does not own */
	ATRN_NONE_OWNED,    /* 450 4.7.1: no list, the user owns none */
	ATRN_BUSY,          /* 451 4.3.0: a drain of one of them runs */
	ATRN_FULL,          /* 451 4.3.2: DRAIN_ATRN_SESSIONS_MAX reached */
	ATRN_STOPPING,      /* 451 4.3.2: the node is stopping */
	ATRN_NO_MEMORY,     /* 451 4.3.0 */
	ATRN_NO_MAIL,       /* 453 You have no mail */
};

/* The domains of one ATRN, lower case, NUL-terminated. */
struct atrn_doms {
	unsigned n;
	size_t len[ATRN_DOMAINS_MAX];
	char dom[ATRN_DOMAINS_MAX][ETRN_DOMAIN_MAX];
};

/* One domain of an ATRN list as the client gave it: the one at *off (start
 * at 0), its length in *dlen; *off moves past it and its comma. NULL at
 * the end. The one splitter of the list (atrn_parse and tests use it). */
const char *atrn_next(const char *list, size_t len, size_t *off, size_t *dlen);

/* Parse the ATRN argument ("d1,d2", RFC 2645 4: domain *("," domain); len
 * 0: no list) into *out (a domain named twice is kept once). Pure.
 * Returns ATRN_OK, ATRN_SYNTAX or ATRN_TOO_MANY. */
enum atrn_verdict atrn_parse(const char *p, size_t len, struct atrn_doms *out);

/* Add dom (len bytes, any case; lower-cased) to out unless it is there:
 * ATRN_OK, ATRN_SYNTAX (too long) or ATRN_TOO_MANY. */
enum atrn_verdict atrn_doms_add(struct atrn_doms *out, const char *dom, size_t len);

/* Append v's reply line to out. 0 or -ENOMEM. */
int atrn_reply(struct buf *out, enum atrn_verdict v);

#endif
