/* SPDX-License-Identifier: MIT */
/*
 * smtp_parse: the pieces of an SMTP command line (RFC 5321 4.1.1, 4.1.2):
 * verb and argument, the MAIL FROM / RCPT TO path with its source route,
 * quoted local part and address literal, and ESMTP parameters. Pure
 * functions over (pointer, length); nothing is allocated and nothing beyond
 * the given length is read, so NUL and 8-bit bytes are safe input.
 */
#ifndef ETRND_PROTO_SMTP_PARSE_H
#define ETRND_PROTO_SMTP_PARSE_H

#include <stddef.h>

#define SMTP_LOCAL_MAX 64   /* local part; RFC 5321 4.5.3.1.1 */
#define SMTP_DOMAIN_MAX 255 /* domain; RFC 5321 4.5.3.1.2 */
#define SMTP_PATH_MAX 256   /* path incl. "<" ">" and route; RFC 5321 4.5.3.1.3 */

enum smtp_parse_err {
	SMTP_PARSE_OK = 0,
	SMTP_PARSE_SYNTAX = -1,   /* not a path / parameter per RFC 5321 4.1.2 */
	SMTP_PARSE_TOO_LONG = -2, /* a part is over its RFC 5321 4.5.3.1 limit */
	SMTP_PARSE_KEYWORD = -3,  /* "FROM:" / "TO:" missing */
};

#define SMTP_PATH_NULL 0x1u      /* "<>" */
#define SMTP_PATH_LITERAL 0x2u   /* domain is an address literal "[...]" */
#define SMTP_PATH_NO_DOMAIN 0x4u /* bare local part, no "@" */
#define SMTP_PATH_ROUTE 0x8u     /* a source route was given (and stripped) */
#define SMTP_PATH_BARE 0x10u     /* no angle brackets (tolerated, like Postfix) */
/* Sender-specified routing in the local part: '%' or '!' (the percent hack
 * and UUCP bang paths), or '@' inside a quoted local part ("a@b"@c). Postfix
 * resolves these as routed and, with allow_untrusted_routing = no, refuses
 * them; the server decides (smtp_server). */
#define SMTP_PATH_LOCAL_ROUTING 0x20u

struct smtp_path {
	/* Mailbox "local@domain" as on the wire, source route stripped,
	 * NUL-terminated; "" for the null path. */
	char addr[SMTP_PATH_MAX + 1];
	size_t len;
	size_t domain_off; /* offset of the domain in addr; == len without one */
	unsigned flags;    /* SMTP_PATH_* */
};

struct smtp_param {
	const char *key; /* esmtp-keyword, not NUL-terminated */
	size_t key_len;
	const char *val; /* NULL when the parameter has no "=value" */
	size_t val_len;
};

/* Split a command line (no CRLF) into verb and argument: the verb runs to
 * the first space; the argument starts after the spaces that follow it and
 * has trailing spaces removed. Returns the verb length. */
size_t smtp_parse_verb(const char *line, size_t n, const char **arg,
		size_t *arg_len);

/* Parse the argument of MAIL ("FROM:<path> params") or RCPT ("TO:<path>
 * params"): kw is "FROM:" or "TO:" (matched case-insensitively; spaces
 * after the colon are tolerated). On success fills *path and sets
 * *params_off to the start of the parameters (n when none). Returns
 * SMTP_PARSE_*. */
int smtp_parse_path_arg(const char *s, size_t n, const char *kw,
		struct smtp_path *path, size_t *params_off);

/* Next ESMTP parameter (RFC 5321 4.1.2 esmtp-param) from s[*off..n).
 * Returns 1 with *p filled, 0 at the end, SMTP_PARSE_SYNTAX on bad
 * syntax. Pointers in *p point into s. */
int smtp_parse_param(const char *s, size_t n, size_t *off,
		struct smtp_param *p);

/* Case-insensitive compare of a length-counted token with a C string: the
 * same as core/ascii.h's ascii_eq_lit(), which new code should call. */
int smtp_parse_token_eq(const char *s, size_t n, const char *lit);

/* Lower-case the (ASCII) domain of path in place and remove one trailing
 * dot. Does nothing for the null path, literals and bare local parts. */
void smtp_parse_normalize_domain(struct smtp_path *path);

#endif
