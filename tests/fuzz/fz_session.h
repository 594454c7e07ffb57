/* SPDX-License-Identifier: MIT */
/*
 * The SMTP session driver shared by fuzz_smtp_server and fuzz_smtp_data:
 * feeds in[0..n) to a session whole (chunk 0) or chunk octets at a time,
 * hands each complete message to commit() (whose return is the commit's
 * result, 0 or -errno), answers each AUTH check by the password's first
 * octet, and ends with EOF unless the session closed. A STARTTLS event ends
 * a part (fz_session_feed()): the rest of it came in the clear and is
 * dropped, as the loop drops it. An ATRN is refused or taken by its list's
 * first octet; taken, it ends the session (the rest is the customer's).
 * Checks the feeding contract on the way.
 * Header-only: each target is one file.
 */
#ifndef ETRND_TESTS_FUZZ_FZ_SESSION_H
#define ETRND_TESTS_FUZZ_FZ_SESSION_H

#include <string.h>

#include "proto/atrn.h"
#include "proto/smtp_server.h"

typedef int (*fz_commit_fn)(void *arg, const struct smtp_tx *tx);

/* SMTP_EV_AUTH: the credentials keep their promises (a user etrnd could
 * have, a password without NUL within AUTH_PASS_MAX); the wipe clears the
 * password; the answer comes from its first octet. */
static inline enum smtp_event fz_session_auth(struct smtp_session *s, struct buf *out)
{
	static const enum auth_result answers[] = { AUTH_OK, AUTH_BAD, AUTH_TEMP, AUTH_LIMITED };
	const char *user = smtp_server_auth_user(s), *pass;
	size_t plen, ulen = strlen(user);
	enum auth_result r;

	pass = smtp_server_auth_pass(s, &plen);
	if (ulen == 0 || ulen > AUTH_USER_MAX || plen == 0 || plen > AUTH_PASS_MAX ||
	    memchr(pass, '\0', plen) || strpbrk(user, " ()\r\n\\"))
		__builtin_trap();
	r = answers[(unsigned char)pass[0] % 4];
	smtp_server_auth_wipe(s);
	pass = smtp_server_auth_pass(s, &plen);
	if (plen != 0 || pass[0] != '\0')
		__builtin_trap();
	return smtp_server_auth_done(s, r, out);
}

/* SMTP_EV_ATRN: the list keeps its promises (a user, a list atrn_parse()
 * takes); a refusal (453) lets the
 * session go on, a turn-around ends it: SMTP_EV_ATRN is returned, and the
 * session takes nothing more. */
static inline enum smtp_event fz_session_atrn(struct smtp_session *s, struct buf *out)
{
	size_t len;
	const char *list = smtp_server_atrn_domains(s, &len);
	static struct atrn_doms doms;
	enum smtp_event ev;

	if (smtp_server_user(s) == NULL || !smtp_server_idle(s) ||
	    atrn_parse(list, len, &doms) != ATRN_OK || doms.n > ATRN_DOMAINS_MAX)
		__builtin_trap();
	if (len > 0 && ((unsigned char)list[0] & 1)) {
		(void)buf_puts(out, "453 You have no mail\r\n");
		smtp_server_atrn_done(s, 0);
		return SMTP_EV_NEED_INPUT;
	}
	(void)buf_puts(out, "250 OK now reversing the connection\r\n");
	smtp_server_atrn_done(s, 1);
	if (smtp_server_feed(s, "NOOP\r\n", 6, out, &ev) != 0 || ev != SMTP_EV_CLOSE)
		__builtin_trap();
	return SMTP_EV_ATRN;
}

/* Feed in[0..n) whole (chunk 0) or chunk octets at a time. Returns the
 * last event: SMTP_EV_CLOSE, SMTP_EV_STARTTLS (the rest dropped),
 * SMTP_EV_ATRN (turned around; "REST <offset>" in out says where the
 * customer's part of in starts) or SMTP_EV_NEED_INPUT. */
static inline enum smtp_event fz_session_feed(struct smtp_session *s, const char *in, size_t n,
		size_t chunk, struct buf *out, fz_commit_fn commit, void *arg)
{
	enum smtp_event ev = SMTP_EV_NEED_INPUT;
	size_t i = 0;


	while (i < n && ev != SMTP_EV_CLOSE && ev != SMTP_EV_STARTTLS) {
		size_t k = chunk && chunk < n - i ? chunk : n - i, off = 0;

		while (off < k) {
			off += smtp_server_feed(s, in + i + off, k - off, out, &ev);
			if (ev == SMTP_EV_COMMIT) {
				int err = commit(arg, smtp_server_tx(s));

				/* Feeding is refused until the commit is done. */
				if (smtp_server_feed(s, in + i + off, k - off, out, &ev) != 0)
					__builtin_trap();
				smtp_server_commit_done(s, err, out);
				ev = SMTP_EV_NEED_INPUT;
			} else if (ev == SMTP_EV_ATRN) {
				/* No input until the answer. */
				if (smtp_server_feed(s, in + i + off, k - off, out, &ev) != 0 ||
				    ev != SMTP_EV_ATRN)
					__builtin_trap();
				ev = fz_session_atrn(s, out);
				if (ev == SMTP_EV_ATRN) {
					/* The rest is the customer's: record where
					 * it starts, the same however fed. */
					(void)buf_printf(out, "REST %zu\n", i + off);
					return ev;
				}
			} else if (ev == SMTP_EV_AUTH) {
				/* No input until the answer. */
				if (smtp_server_feed(s, in + i + off, k - off, out, &ev) != 0 ||
				    ev != SMTP_EV_AUTH)
					__builtin_trap();
				ev = fz_session_auth(s, out);
				if (ev == SMTP_EV_CLOSE)
					break;
			} else if (ev == SMTP_EV_CLOSE) {
				break;
			} else if (off != k) {
				__builtin_trap(); /* STARTTLS too: it takes all */
			} else if (ev == SMTP_EV_STARTTLS) {
				break;
			}
		}
		i += k;
	}
	return ev;
}

/* Greeting, the input, EOF. Returns the last event (SMTP_EV_CLOSE or
 * SMTP_EV_NEED_INPUT; SMTP_EV_STARTTLS when the input ended waiting for a
 * handshake). */
static inline enum smtp_event fz_session_run(struct smtp_session *s, const char *in, size_t n,
		size_t chunk, struct buf *out, fz_commit_fn commit, void *arg)
{
	enum smtp_event ev;

	smtp_server_greeting(s, out);
	ev = fz_session_feed(s, in, n, chunk, out, commit, arg);
	if (ev != SMTP_EV_CLOSE && ev != SMTP_EV_ATRN)
		smtp_server_feed(s, in, 0, out, &ev);
	return ev;
}

#endif
