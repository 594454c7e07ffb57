/* SPDX-License-Identifier: MIT */
/*
 * etrn: the ETRN command's own logic (RFC 1985), pure: the forms of its
 * argument ("domain", "@domain", "#queue"), who may release a domain, which
 * rows "@domain" and "#queue" name, and the reply text for each outcome
 * (section 5). No I/O, no locks, no logging: text in, a decision and reply
 * text out. The drain (proto/drain.c) acts on the decisions.
 */
#ifndef ETRND_PROTO_ETRN_H
#define ETRND_PROTO_ETRN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/domtab.h"
#include "core/buf.h"

/* The longest node an SMTP client may give: "@" or "#" + a domain
 * (RFC 1035 2.3.4: 255). */
#define ETRN_NODE_MAX 256
/* A domain with its NUL (RFC 1035 2.3.4: 255 + NUL). */
#define ETRN_DOMAIN_MAX 256
/* Node text echoed in the rate-limit and unknown-client replies. */
#define ETRN_ECHO_MAX 255

/* Every way an ETRN ends, each with one reply (etrn_reply()). */
enum etrn_outcome {
	ETRN_OK = 0,            /* parse/permit: go on (no reply of its own) */
	ETRN_QUEUING,           /* 250: queuing started (unused by the drain) */
	ETRN_NONE_WAITING,      /* 251: no messages waiting */
	ETRN_JOINED,            /* 252: pending messages started (a drain ran) */
	ETRN_STARTED,           /* 253: n pending messages started */
	ETRN_UNABLE,            /* 458 4.3.0: could not start (out of memory) */
	ETRN_RATE_LIMITED,      /* 458 4.7.0: over etrn_rate_limit */
	ETRN_DENIED_ADDRESS,    /* 459: the client's address is not an address */
	ETRN_DENIED_UNKNOWN,    /* 459: not a customer domain here */
	ETRN_DENIED_CLIENT,     /* 459: client not in the domain's etrn_from */
	ETRN_DENIED_NONE_ALLOWED, /* 459: @/#: rows match, none for this client */
	ETRN_DENIED_NO_MATCH,   /* 459: @/#: no such queue or domain */
	ETRN_SYNTAX_EMPTY,      /* 500: ETRN without a node */
	ETRN_SYNTAX_NODE,       /* 501: node has characters or length RFC 1985 forbids */
	ETRN_SYNTAX_DOMAIN,     /* 501: a client's domain form that cannot be a domain */
	ETRN_SYNTAX_OPERATOR,   /* 501: the operator's domain form, likewise */
};

enum etrn_kind {
	ETRN_KIND_DOMAIN,       /* "domain": that domain */
	ETRN_KIND_SUBTREE,      /* "@domain": the domain and its subdomains */
	ETRN_KIND_QUEUE,        /* "#queue": every domain of a named queue */
};

/* Where a node comes from: what etrn_parse() checks. */
enum etrn_source {
	/* An SMTP client, from the raw argument: the full RFC 1985 syntax
	 * (500 empty, 501 other characters than letters, digits, '.', '-', '_',
	 * or longer than ETRN_NODE_MAX), then the forms. */
	ETRN_SRC_SMTP_RAW,
	/* An SMTP client whose argument the server already checked
	 * (smtp_server's etrn callback): the forms only. */
	ETRN_SRC_SMTP,
	/* The operator (etrnctl flush, a Redis drain event): "@"/"#" only
	 * with something after them; anything else is a domain form. */
	ETRN_SRC_OPERATOR,
};

/*
 * A parsed node. name is what to look up: for a domain, lower-cased with
 * one trailing dot removed (NUL-terminated); for "@domain" and "#queue",
 * the text after the '@' or '#' as given. shown/shown_len is the node as
 * replies name it: the normalised domain, or "@..."/"#..." as given. Both
 * point into the struct or into the caller's argument: valid while both
 * are.
 */
struct etrn_node {
	enum etrn_kind kind;
	const char *name;
	size_t name_len;
	const char *shown;
	size_t shown_len;
	char dom[ETRN_DOMAIN_MAX];
};

/*
 * Parse node (len bytes, not NUL-terminated, may hold NULs) from src into
 * *out. Returns ETRN_OK, or the ETRN_SYNTAX_* outcome to reply with. On
 * ETRN_OK, *out may point into node.
 */
enum etrn_outcome etrn_parse(const char *node, size_t len, enum etrn_source src,
		struct etrn_node *out);

/* The client's printable address (as the server reports it) as a sockaddr
 * (port 0). 0, or -1 when it is neither IPv4 nor IPv6 text. */
int etrn_client_addr(const char *client, struct sockaddr_storage *ss);

/*
 * May client release row's mail? (DESIGN.md 6.) Yes when user (the
 * session's authenticated user, NULL when none) is the row's owner, from
 * any address; else when client is in the domain's etrn_from networks,
 * with or without credentials. client NULL is the operator, who always
 * may. Returns ETRN_OK, ETRN_DENIED_UNKNOWN when row is NULL, or
 * ETRN_DENIED_CLIENT.
 */
enum etrn_outcome etrn_permit(const struct domtab_row *row, const struct sockaddr *client,
		const char *user);

/* 1 if row belongs to an "@domain" node (it is the domain or below it) or
 * a "#queue" node (its queue is that name); case-insensitive. A wildcard
 * row ("*.x") names no domain to drain and never matches; a domain node
 * never matches (look it up instead). */
int etrn_row_matches(const struct etrn_node *n, const struct domtab_row *row);

/*
 * One reply for a whole "@domain"/"#queue" (RFC 1985 3): count each row
 * that matched, whether the client may release it, and the outcome of
 * starting it (etrn_tally_add), then ask for the outcome: 253 with the
 * total when any drain started, 252 when all were running, 251 when
 * nothing is held, 459 when none may be released.
 */
struct etrn_tally {
	unsigned matched, allowed, started, joined;
	uint64_t total;                /* messages of the started ones */
};

/* A matched row: permit is etrn_permit()'s answer; started (with its
 * count n) is the outcome of starting it (ignored unless permitted). */
void etrn_tally_add(struct etrn_tally *t, enum etrn_outcome permit,
		enum etrn_outcome started, uint64_t n);
enum etrn_outcome etrn_tally_outcome(const struct etrn_tally *t);

/*
 * Append outcome's reply line (with CRLF) for node/len to out: the RFC 1985
 * section 5 code, an RFC 3463 enhanced code, and text naming the node (cut
 * at a NUL; the rate and address refusals cut it at ETRN_ECHO_MAX). n is
 * the count for ETRN_STARTED; client names the client for
 * ETRN_DENIED_CLIENT. Returns 0, or -ENOMEM when out cannot grow;
 * -EINVAL for ETRN_OK, which has no reply.
 */
int etrn_reply(struct buf *out, enum etrn_outcome o, const char *node, size_t len,
		const char *client, uint64_t n);

#endif
