/* SPDX-License-Identifier: MIT */
/*
 * smtp_auth: the SASL side of SMTP AUTH (RFC 4954) for the two mechanisms
 * etrnd offers, PLAIN (RFC 4616) and LOGIN, as a pure exchange: a client
 * response (base64 text) goes in; a challenge to send, credentials to
 * check, or the reason to refuse come out. Replies, states and the check
 * itself are smtp_server's and the glue's. The password lives only in the
 * struct, is never logged, and smtp_auth_wipe() clears it.
 */
#ifndef ETRND_PROTO_SMTP_AUTH_H
#define ETRND_PROTO_SMTP_AUTH_H

#include <stddef.h>

#include "core/base64.h"
#include "proto/auth.h"

/* Longest AUTH command or response line taken, CRLF included. RFC 4954 4
 * allows 12288 octets for mechanisms with large tokens (GSSAPI); PLAIN's
 * longest acceptable message is authzid, authcid (AUTH_USER_MAX each),
 * the password (AUTH_PASS_MAX) and two NULs, which is under 530 octets as
 * "AUTH PLAIN <base64>\r\n". A longer line can hold nothing we would
 * accept: "500 5.5.6 Authentication Exchange line is too long". */
#define SMTP_AUTH_LINE_MAX 1024
/* Most octets a response line decodes to. */
#define SMTP_AUTH_DECODED_MAX BASE64_DECODED_MAX(SMTP_AUTH_LINE_MAX)

enum smtp_auth_mech {
	SMTP_AUTH_NONE = 0,
	SMTP_AUTH_PLAIN,
	SMTP_AUTH_LOGIN,
};

/* What a response led to. */
enum smtp_auth_status {
	SMTP_AUTH_CONTINUE = 0, /* send "334 " and *challenge, read a response */
	SMTP_AUTH_CHECK,        /* user and password ready: check them */
	SMTP_AUTH_BAD,          /* well-formed, but no credentials we could
	                           accept (authzid other than the user, empty
	                           or over-long name or password, a name
	                           with characters no etrnd user has): 535 */
	SMTP_AUTH_DECODE,       /* not strict base64: 501 5.5.2 */
	SMTP_AUTH_CANCEL,       /* the client sent "*": 501 */
};

/* One exchange, embedded in the session. */
struct smtp_auth {
	enum smtp_auth_mech mech;
	int want_pass;                 /* LOGIN: the user is in, ask for the password */
	int bad;                       /* something refused already: answer 535
	                                  at the end without a check */
	char user[AUTH_USER_MAX + 1];
	char pass[AUTH_PASS_MAX + 1];  /* NUL-terminated too, for convenience */
	size_t pass_len;
};

/* The mechanism named by name/len (case-insensitive), SMTP_AUTH_NONE when
 * etrnd has no such mechanism. The offered list for EHLO is
 * SMTP_AUTH_OFFER. */
#define SMTP_AUTH_OFFER "PLAIN LOGIN"
enum smtp_auth_mech smtp_auth_mech(const char *name, size_t len);
const char *smtp_auth_mech_name(enum smtp_auth_mech m);

/*
 * Start an exchange for mech. ir/ir_len is the initial response as the
 * AUTH command gave it (RFC 4954 4: "=" stands for an empty one), or ir
 * NULL when there was none. *challenge is set for SMTP_AUTH_CONTINUE (the
 * text after "334 ", static).
 */
enum smtp_auth_status smtp_auth_start(struct smtp_auth *a, enum smtp_auth_mech mech,
		const char *ir, size_t ir_len, const char **challenge);

/* The client's next response line (without CRLF): "*" cancels, anything
 * else must be strict base64. */
enum smtp_auth_status smtp_auth_step(struct smtp_auth *a, const char *line, size_t len,
		const char **challenge);

/* Forget the exchange; the password is cleared with explicit_bzero. */
void smtp_auth_wipe(struct smtp_auth *a);

#endif
