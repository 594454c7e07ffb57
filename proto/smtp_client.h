/* SPDX-License-Identifier: MIT */
/*
 * smtp_client: the RFC 5321 client (delivery) side as a pure state machine,
 * for ETRN/ATRN drains (DESIGN.md section 6). Server replies go in, commands
 * to send are appended to the caller's buffer, and events (session ready,
 * send the body now, a message is finished, close) come out. It never
 * touches a file descriptor; the engine owns the socket and the timers.
 *
 * Promises: every recipient of a submitted message gets exactly one result
 * (delivered / deferred / bounced), and "delivered" only ever comes from a
 * 2xx RCPT reply followed by a 2xx reply to the final dot; anything odd
 * (garbage, an overlong or endless reply, EOF, timeout, 421) defers what is
 * not decided yet. Replies may be split anywhere and several may arrive in
 * one read (RFC 2920 pipelining); the outcome does not depend on how.
 * STARTTLS (RFC 3207) is the caller's to run: the client asks for it
 * (EV_STARTTLS) and is told when TLS is up; it never sees a TLS record.
 */
#ifndef ETRND_PROTO_SMTP_CLIENT_H
#define ETRND_PROTO_SMTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* Smallest reply_line_max accepted (a bare "250\r\n" needs 5). */
#define SMTP_CLIENT_LINE_MIN 16
/* Reply text kept per reply for logs and DSNs: lines of a multiline reply are
 * joined with one space, enhanced codes stripped, the rest cut. */
#define SMTP_CLIENT_TEXT_MAX 512
/* "x.yyy.zzz" + NUL (RFC 3463 2: 1*3digit subject and detail). */
#define SMTP_CLIENT_ENH_MAX 16

/*
 * Timeouts for the reply awaited, RFC 5321 4.5.3.2 where it gives one
 * (milliseconds). EHLO/HELO, RSET and QUIT have none there: Postfix's
 * smtp_helo_timeout (300s), smtp_rset_timeout (20s) and smtp_quit_timeout
 * (300s) are used.
 */
#define SMTP_CLIENT_TIMEOUT_GREETING_MS (5u * 60u * 1000u)  /* 4.5.3.2.1 */
#define SMTP_CLIENT_TIMEOUT_HELO_MS (5u * 60u * 1000u)      /* Postfix */
#define SMTP_CLIENT_TIMEOUT_MAIL_MS (5u * 60u * 1000u)      /* 4.5.3.2.2 */
#define SMTP_CLIENT_TIMEOUT_RCPT_MS (5u * 60u * 1000u)      /* 4.5.3.2.3 */
#define SMTP_CLIENT_TIMEOUT_DATA_MS (2u * 60u * 1000u)      /* 4.5.3.2.4 */
#define SMTP_CLIENT_TIMEOUT_BLOCK_MS (3u * 60u * 1000u)     /* 4.5.3.2.5 */
#define SMTP_CLIENT_TIMEOUT_DOT_MS (10u * 60u * 1000u)      /* 4.5.3.2.6 */
#define SMTP_CLIENT_TIMEOUT_RSET_MS (20u * 1000u)           /* Postfix */
#define SMTP_CLIENT_TIMEOUT_QUIT_MS (5u * 60u * 1000u)      /* Postfix */
/* RFC 3207 has none: Postfix's smtp_helo_timeout for the reply to STARTTLS
 * and its smtp_starttls_timeout (300s) for the handshake the caller runs. */
#define SMTP_CLIENT_TIMEOUT_STARTTLS_MS (5u * 60u * 1000u)  /* Postfix */
#define SMTP_CLIENT_TIMEOUT_TLS_MS (5u * 60u * 1000u)       /* Postfix */
/* RFC 4954 has none: Postfix's smtp_helo_timeout, as for the other set-up
 * commands. */
#define SMTP_CLIENT_TIMEOUT_AUTH_MS (5u * 60u * 1000u)      /* Postfix */
/* RFC 4616 2: authcid and passwd are at most 255 octets each. */
#define SMTP_CLIENT_AUTH_PART_MAX 255

/* Non-mail commands (EHLO, HELO, RSET) one session sends at most: Exim's
 * default smtp_accept_max_nonmail (it counts RSET, HELO and EHLO, not QUIT)
 * answers the next with "421 too many nonmail commands" and closes. */
#define SMTP_CLIENT_NONMAIL_MAX 10

struct smtp_client_conf {
	const char *helo_name;    /* our host name for EHLO/HELO */
	size_t reply_line_max;    /* reply line incl. CRLF; RFC 5321 4.5.3.1.5
	                             says 512, servers send more: 4096 is sane */
	unsigned max_reply_lines; /* lines of one multiline reply (EHLO has ~15) */
};

enum smtp_client_event {
	SMTP_CLIENT_EV_NEED_INPUT = 0, /* all input consumed; wait for the server */
	SMTP_CLIENT_EV_READY,          /* EHLO/HELO done, session idle: submit or quit */
	SMTP_CLIENT_EV_SEND_BODY,      /* DATA accepted: send the stored body, then
	                                  call smtp_client_body_sent() */
	SMTP_CLIENT_EV_MSG_DONE,       /* the submitted message is finished: read
	                                  smtp_client_result(); then the session is
	                                  idle (submit/quit) unless
	                                  smtp_client_closed() says it ended */
	SMTP_CLIENT_EV_CLOSE,          /* session over (QUIT answered, 421, EOF,
	                                  error): close the connection */
	SMTP_CLIENT_EV_STARTTLS,       /* 220 to STARTTLS: start the TLS
	                                  handshake now (what follows the 220 in
	                                  this read is not fed: RFC 3207 5), then
	                                  call smtp_client_tls_up() or
	                                  smtp_client_tls_reject() */
};

/*
 * What the session does about STARTTLS (RFC 3207), set before the greeting
 * with smtp_client_set_tls(). Postfix's smtp_tls_security_level: NONE never
 * asks (none); MAY asks when the EHLO reply offers STARTTLS and goes on in
 * the clear when it is not offered or refused (may); MUST never sends mail
 * in the clear: STARTTLS not offered, or refused, ends the session with
 * QUIT and smtp_client_tls_refused() (encrypt). Certificate checks
 * (verify) are the caller's: it calls smtp_client_tls_reject().
 */
enum smtp_client_tls {
	SMTP_CLIENT_TLS_NONE = 0,
	SMTP_CLIENT_TLS_MAY,
	SMTP_CLIENT_TLS_MUST,
};

/* Capabilities from the EHLO reply (none after a HELO fallback). */
#define SMTP_CLIENT_CAP_PIPELINING 0x01u /* RFC 2920 */
#define SMTP_CLIENT_CAP_SIZE 0x02u       /* RFC 1870 */
#define SMTP_CLIENT_CAP_8BITMIME 0x04u   /* RFC 6152 */
#define SMTP_CLIENT_CAP_ENHANCED 0x08u   /* RFC 2034 ENHANCEDSTATUSCODES */
#define SMTP_CLIENT_CAP_SMTPUTF8 0x10u   /* RFC 6531 */
#define SMTP_CLIENT_CAP_STARTTLS 0x20u   /* RFC 3207 */

/* A message to deliver. Everything is copied by smtp_client_submit(): none
 * of it needs to outlive the call. Addresses are mailboxes without angle
 * brackets, not NUL-terminated; sender_len 0 is the null path "<>". */
struct smtp_client_msg {
	const char *sender;
	size_t sender_len;
	unsigned nrcpt;
	const char *const *rcpt;
	const size_t *rcpt_len;
	uint64_t size;  /* octets for SIZE= (RFC 1870: the stored body length) */
	int eightbit;   /* body is 8-bit: BODY=8BITMIME (spool SPOOL_MSG_8BITMIME) */
	int smtputf8;   /* message needs SMTPUTF8 (spool SPOOL_MSG_SMTPUTF8); an
	                   8-bit address needs it whatever this says */
};

enum smtp_client_status {
	SMTP_CLIENT_DELIVERED = 1, /* 2xx RCPT and 2xx after the final dot */
	SMTP_CLIENT_DEFERRED,      /* 4xx anywhere, or the session failed: keep */
	SMTP_CLIENT_BOUNCED,       /* 5xx: return to the sender */
};

/* One reply as the result of a recipient, or why a session ended. */
struct smtp_client_result {
	enum smtp_client_status status;
	int code;                      /* 250, 452, 550, ...; 4xx/5xx made up when local */
	char enh[SMTP_CLIENT_ENH_MAX]; /* RFC 3463 "x.y.z", NUL-terminated; the
	                                  server's, else "<class>.0.0" */
	int enh_sent;                  /* 1: enh is the server's own (a DSN's
	                                  Diagnostic-Code repeats only that) */
	const char *text;              /* reply text, printable ASCII only
	                                  (anything else is '?'), not
	                                  NUL-terminated; use text_len */
	size_t text_len;
	int local;                     /* 1: decided here (lost connection,
	                                  timeout, protocol error, SIZE,
	                                  8BITMIME, SMTPUTF8), not a server reply */
};

struct smtp_client;

/* Create a session waiting for the server's greeting. conf must outlive it;
 * peer (for log lines, may be NULL) is copied. Returns NULL when out of
 * memory. Panics on a conf that makes no sense (our bug). */
struct smtp_client *smtp_client_new(const struct smtp_client_conf *conf,
		const char *peer);

/* Free a session. NULL is fine. Returns NULL. */
struct smtp_client *smtp_client_free(struct smtp_client *c);

/*
 * Feed n bytes from the server. Commands to send are appended to out.
 * Returns the bytes consumed; *ev says why it stopped. With
 * SMTP_CLIENT_EV_NEED_INPUT everything was consumed (a partial reply line is
 * kept inside, bounded by reply_line_max). With any other event it may be
 * less than n: the caller acts on the event and then feeds the rest again.
 * n == 0 means EOF (or a broken connection): undecided recipients are
 * deferred ("lost connection"). Once closed, feed returns 0 and
 * SMTP_CLIENT_EV_CLOSE. If the session ends while a message is in progress,
 * feed first returns SMTP_CLIENT_EV_MSG_DONE for it, then (next call)
 * SMTP_CLIENT_EV_CLOSE; with a message pipelined behind another's dot
 * (smtp_client_can_submit()) both are in progress: EV_MSG_DONE for the
 * older, then for the newer, then EV_CLOSE.
 */
size_t smtp_client_feed(struct smtp_client *c, const char *p, size_t n,
		struct buf *out, enum smtp_client_event *ev);

/*
 * 1 when smtp_client_submit() would take a message now: the session is
 * idle, or (RFC 2920 3.1, server with PIPELINING) the last message's final
 * dot is sent and its reply not read yet. Then the next message's MAIL,
 * RCPT and DATA go out behind that dot; its body still waits for its own
 * 354. Replies are matched in order: the dot's reply alone decides the
 * older message (EV_MSG_DONE for it), the rest the newer one. Two messages
 * at most: none is taken while one waits behind a dot.
 */
int smtp_client_can_submit(const struct smtp_client *c);

/*
 * Start delivering m; only when smtp_client_can_submit() (idle after
 * EV_READY or EV_MSG_DONE, or behind a final dot with PIPELINING).
 * Appends RSET when the last transaction ended without its dot while the
 * server held it (an owed RSET goes out only in front of the next MAIL,
 * never before QUIT), then
 * MAIL FROM:<s> [SIZE=n] [BODY=8BITMIME] [SMTPUTF8], RCPT TO:<r> for
 * each recipient and DATA to out: all at once when the server advertised
 * PIPELINING (RFC 2920), else only MAIL and the rest one per reply.
 * Returns:
 *   0        started; results come with EV_MSG_DONE.
 *   -EBUSY   not idle (or closed); nothing done, no results.
 *   -EINVAL  nrcpt == 0; nothing done, no results.
 * Any other negative value means the message was decided here without a
 * word to the server, every recipient's result is already set (read them as
 * after EV_MSG_DONE) and the session stays idle:
 *   -E2BIG   size over the server's SIZE (RFC 1870 6.1): 552 5.3.4, bounced.
 *   -EMEDIUMTYPE 8-bit body, server without 8BITMIME (RFC 6152 3: must not
 *            send it; we do not downgrade MIME): 554 5.6.3, bounced.
 *   -EILSEQ  SMTPUTF8 needed (flag or 8-bit sender), not offered (RFC 6531
 *            3.4): 553 5.6.7, bounced. A recipient that alone is 8-bit gets
 *            553 5.6.7 by itself and the others go on; -EILSEQ if none is left.
 *   -EBADMSG sender (553 5.1.7) or every recipient (553 5.1.3) unusable:
 *            CR, LF or NUL inside, or longer than RFC 5321 4.5.3.1.3 allows.
 *   -ENOMEM  out (or our command buffer) could not grow: nothing was sent,
 *            451 4.3.0, deferred (if even the result array could not be
 *            allocated, smtp_client_result() is NULL: defer them all).
 */
int smtp_client_submit(struct smtp_client *c, const struct smtp_client_msg *m,
		struct buf *out);

/* The caller has sent (queued) the whole stored body after EV_SEND_BODY:
 * append the final ".\r\n" (the body ends in CRLF: spool form). Returns 0,
 * -EBUSY when no body was expected, or -ENOMEM/-E2BIG when out cannot grow
 * (then call smtp_client_abort()). */
int smtp_client_body_sent(struct smtp_client *c, struct buf *out);

/* Result for recipient i (the caller's index in the message just finished:
 * the one EV_MSG_DONE or a failed submit was about), or NULL when i is out
 * of range or no message has finished. Valid until the next
 * smtp_client_submit() or smtp_client_free(); the text points into the
 * session. */
const struct smtp_client_result *smtp_client_result(const struct smtp_client *c,
		unsigned i);

/* The message-level reply of the last finished message: the MAIL failure,
 * the DATA refusal or the reply to the final dot; 0 when there was none
 * (every RCPT refused, session lost, decided locally). */
int smtp_client_msg_code(const struct smtp_client *c);

/* Append QUIT; only when idle. Returns 0, -EBUSY (not idle) or the buffer
 * error. The 221 (or anything, or EOF) then gives EV_CLOSE. */
int smtp_client_quit(struct smtp_client *c, struct buf *out);

/* Milliseconds to wait for the server now (see the table above; with
 * pipelining, for the oldest unanswered command), SMTP_CLIENT_TIMEOUT_BLOCK_MS
 * while the caller sends the body, 0 when nothing is awaited (idle or
 * closed). Like Postfix, arm it again after every read that made progress. */
unsigned smtp_client_timeout_ms(const struct smtp_client *c);

/* The timer from smtp_client_timeout_ms() expired: undecided recipients are
 * deferred (451 4.4.2 "conversation timed out while ..."), the session is
 * closed. Returns EV_MSG_DONE when a message was in progress (read the
 * results, then close), else EV_CLOSE. With two messages in progress the
 * first EV_MSG_DONE is the older one's; calling it again (or feed, or
 * abort) gives the newer one's, then EV_CLOSE. */
enum smtp_client_event smtp_client_timed_out(struct smtp_client *c);

/* The same for any other reason to drop the session (write error,
 * shutdown): why (NUL-terminated, ours) becomes the 451 4.4.2 text. */
enum smtp_client_event smtp_client_abort(struct smtp_client *c, const char *why);

/* 1 when the next message would need one non-mail command (an owed RSET)
 * over SMTP_CLIENT_NONMAIL_MAX: QUIT instead and use a fresh connection. */
int smtp_client_worn(const struct smtp_client *c);

/* 1 once the session is over (the next feed returns EV_CLOSE). */
int smtp_client_closed(const struct smtp_client *c);

/* Why the session ended: the server's refusal (greeting, EHLO/HELO, 421,
 * failed RSET) or the local reason (lost connection, timeout, protocol
 * error). NULL while open and after a clean QUIT. Valid until
 * smtp_client_free(). */
const struct smtp_client_result *smtp_client_close_reason(const struct smtp_client *c);

/* The STARTTLS policy of the session (enum smtp_client_tls); only before
 * the first feed. Returns 0, or -EBUSY once the session has started. */
int smtp_client_set_tls(struct smtp_client *c, enum smtp_client_tls level);

/* 1 while the reply to STARTTLS is awaited (for the caller's state). */
int smtp_client_starttls_sent(const struct smtp_client *c);

/*
 * The TLS handshake the caller ran after EV_STARTTLS is done: RFC 3207 4.2,
 * everything learnt before is forgotten and EHLO goes out again (appended
 * to out, to be sent encrypted); only the capabilities of this second EHLO
 * count. Returns 0, -EBUSY when no handshake was due, or -ENOMEM (out could
 * not grow: the session is closed, close the connection).
 */
int smtp_client_tls_up(struct smtp_client *c, struct buf *out);

/*
 * The caller will not use this session: the handshake is done but the
 * certificate did not pass (tls verify), or it could not start TLS at all.
 * The session ends with QUIT (appended to out) and its close reason is
 * 451 enh why, local, with smtp_client_tls_refused() 1. Only after
 * EV_STARTTLS, instead of smtp_client_tls_up(). Returns 0, -EBUSY (not
 * then), or -ENOMEM (closed; close the connection).
 */
int smtp_client_tls_reject(struct smtp_client *c, struct buf *out, const char *enh,
		const char *why);

/* 1 when the session ended (or is ending with QUIT) because the TLS policy
 * could not be met: TLS_MUST and STARTTLS not offered ("4.7.4 TLS is
 * required, but was not offered by host") or refused ("4.7.4 TLS is
 * required, but host refused to start TLS: 454 ..."), or
 * smtp_client_tls_reject(). smtp_client_close_reason() has the words. */
int smtp_client_tls_refused(const struct smtp_client *c);

/* 1 once smtp_client_tls_up() has been called (the session is encrypted). */
int smtp_client_tls_on(const struct smtp_client *c);

/* SMTP_CLIENT_CAP_* from EHLO; *size_max (may be NULL) gets the SIZE
 * limit, 0 for none. */
unsigned smtp_client_caps(const struct smtp_client *c, uint64_t *size_max);

/*
 * An idle session carried from one client to a fresh one over the same
 * connection (ATRN, RFC 2645: the connection moves from one engine thread
 * to the next): what EHLO agreed, TLS, the non-mail commands spent and an
 * RSET still owed. smtp_client_save() on an idle (READY) client;
 * smtp_client_resume() on a fresh one (before any input): it starts READY
 * without greeting or EHLO. 0, or -EINVAL when a client is not in that state.
 */
struct smtp_client_session {
	unsigned caps;
	uint64_t size_max;
	unsigned nonmail;
	int rset_owed;
	int tls_on;
};
int smtp_client_save(const struct smtp_client *c, struct smtp_client_session *s);
int smtp_client_resume(struct smtp_client *c, const struct smtp_client_session *s);

/*
 * AUTH PLAIN (RFC 4954, RFC 4616) as user with pass, authzid empty: after
 * EHLO, and after STARTTLS and the second EHLO when the TLS policy starts
 * TLS, the session sends "AUTH PLAIN <base64>" before it says EV_READY. A
 * server whose EHLO does not offer AUTH PLAIN (or a HELO-only server) ends
 * the session with QUIT and the close reason 451 4.7.0 "AUTH PLAIN is
 * required, but was not offered by host"; a refused AUTH (535, 454, any
 * non-2xx) ends it with QUIT and the server's reply as the close reason.
 * Either way smtp_client_auth_refused() is 1: the caller gives up on the
 * host rather than retrying the same credentials. Only before the first
 * feed. user and pass are copied (as the base64 line), the copy wiped by
 * smtp_client_free(); the credentials never reach a log line. Returns 0,
 * -EBUSY once the session has started, -EINVAL for an empty user or a part
 * over SMTP_CLIENT_AUTH_PART_MAX, -ENOMEM.
 */
int smtp_client_set_auth(struct smtp_client *c, const char *user, const char *pass);

/* 1 once the server accepted the AUTH (2xx). */
int smtp_client_authed(const struct smtp_client *c);

/* 1 when the session ended (or is ending with QUIT) because AUTH was
 * needed and could not be done (see smtp_client_set_auth()). */
int smtp_client_auth_refused(const struct smtp_client *c);

#endif
