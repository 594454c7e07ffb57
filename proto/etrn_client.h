/* SPDX-License-Identifier: MIT */
/*
 * etrn_client: the customer's side of ETRN (RFC 1985) and ATRN (RFC 2645)
 * as a pure state machine, for the daemon's activators (proto/activator.h)
 * and the one-shot `etrnctl etrn`. Server replies go in, commands to send
 * are appended to the caller's buffer, events come out; it never touches a
 * descriptor, a clock or a TLS record (the caller runs STARTTLS and the
 * timers, like proto/smtp_client.h, whose reply reader it shares).
 *
 * A session: greeting, EHLO (no HELO fallback: ETRN and ATRN are ESMTP
 * extensions), STARTTLS by policy (RFC 3207; EHLO again inside), AUTH
 * (RFC 4954: PLAIN with an initial response when offered, else LOGIN) when
 * credentials are given and the upstream offers AUTH, then
 *   ETRN: one "ETRN node" per request, pipelined when PIPELINING is
 *         offered, each reply kept; then QUIT.
 *   ATRN: "ATRN [d1,d2,...]"; a 250 reverses the connection (event
 *         REVERSE: the caller now serves SMTP on it); any other reply is
 *         kept and QUIT follows.
 * Credentials never go out in the clear unless conf.auth_cleartext is set.
 */
#ifndef ETRND_PROTO_ETRN_CLIENT_H
#define ETRND_PROTO_ETRN_CLIENT_H

#include <stddef.h>

#include "core/buf.h"
#include "proto/smtp_client.h"

/* Requests in one session (CONFIG_ACTIVATOR_REQUESTS_MAX fits). */
#define ETRN_CLIENT_REQUESTS_MAX 16
/* Reply text kept per request and for the close reason. */
#define ETRN_CLIENT_TEXT_MAX 256
/* Timeouts for the reply awaited (ms): RFC 5321 4.5.3.2's greeting and
 * MAIL-like 5 minutes for greeting, EHLO, AUTH and STARTTLS; ETRN and ATRN
 * start work on the upstream, 5 minutes too. */
#define ETRN_CLIENT_TIMEOUT_MS (5u * 60u * 1000u)

enum etrn_client_method { ETRN_CLIENT_ETRN = 0, ETRN_CLIENT_ATRN };

struct etrn_client_conf {
	const char *helo_name;              /* our name for EHLO */
	enum etrn_client_method method;
	enum smtp_client_tls tls;           /* NONE, MAY, MUST (verify is the
	                                       caller's: smtp_client.h) */
	const char *user;                   /* NULL or "": no AUTH */
	const char *pass;
	int auth_cleartext;                 /* AUTH allowed without TLS */
	unsigned nreq;                      /* ETRN: 1..ETRN_CLIENT_REQUESTS_MAX;
	                                       ATRN: 0 (all the user's) or more */
	const char *const *req;             /* ETRN nodes ("d", "@d", "#q") or
	                                       ATRN domains; NUL-terminated */
	size_t reply_line_max;              /* as smtp_client_conf */
	unsigned max_reply_lines;
};

enum etrn_client_event {
	ETRN_CLIENT_EV_NEED_INPUT = 0, /* all input consumed: wait for the server */
	ETRN_CLIENT_EV_STARTTLS,       /* 220 to STARTTLS: run the handshake
	                                  (nothing after the 220 is fed: RFC
	                                  3207 5), then etrn_client_tls_up() or
	                                  etrn_client_tls_reject() */
	ETRN_CLIENT_EV_REVERSE,        /* ATRN got 250: the connection is now
	                                  the caller's to serve as an SMTP
	                                  server (the upstream waits for our
	                                  220). Bytes after the 250 line were
	                                  not consumed. */
	ETRN_CLIENT_EV_CLOSE,          /* session over (QUIT sent, or failed):
	                                  flush out, then close */
};

/* One reply: to a request, or why the session ended. */
struct etrn_client_reply {
	int code;                      /* 0: none (not sent, or session lost) */
	char enh[SMTP_CLIENT_ENH_MAX]; /* "x.y.z" or "" */
	char text[ETRN_CLIENT_TEXT_MAX]; /* printable ASCII, NUL-terminated */
	int local;                     /* 1: made here (lost connection,
	                                  timeout, TLS or AUTH policy), not the
	                                  upstream's words */
};

struct etrn_client;

/* A session waiting for the greeting. conf (and its strings) must outlive
 * it. NULL when out of memory or conf is unusable (ETRN without requests,
 * more than ETRN_CLIENT_REQUESTS_MAX, a request or helo_name empty or with
 * a space or control octet, an ATRN domain with a comma or an ATRN line
 * over RFC 5321's 512 octets, user or pass over RFC 4616's 255 octets,
 * reply_line_max under SMTP_CLIENT_LINE_MIN or max_reply_lines 0). */
struct etrn_client *etrn_client_new(const struct etrn_client_conf *conf);
struct etrn_client *etrn_client_free(struct etrn_client *c); /* NULL fine */

/* Feed n bytes from the server (n == 0: EOF). Commands go to out. Returns
 * the bytes consumed; *ev says why it stopped (as smtp_client_feed()).
 * Once closed or reversed, returns 0 with the same event. */
size_t etrn_client_feed(struct etrn_client *c, const char *p, size_t n,
		struct buf *out, enum etrn_client_event *ev);

/* After ETRN_CLIENT_EV_STARTTLS: the handshake succeeded (EHLO again goes
 * to out, to be sent encrypted), or the caller refuses the session (the
 * certificate did not verify): QUIT goes to out, the close reason is
 * why (local, 4.7.5). 0, -EBUSY (no handshake due) or -ENOMEM. */
int etrn_client_tls_up(struct etrn_client *c, struct buf *out);
int etrn_client_tls_reject(struct etrn_client *c, struct buf *out, const char *why);

/* Milliseconds to wait for the server now; 0 when nothing is awaited. */
unsigned etrn_client_timeout_ms(const struct etrn_client *c);

/* The timer expired, or the caller drops the session (write error,
 * shutdown): the reply awaited and every request not answered get a local
 * 451 "why" and the session is closed. Returns ETRN_CLIENT_EV_CLOSE. */
enum etrn_client_event etrn_client_abort(struct etrn_client *c, const char *why);

/* The reply to request i (ATRN: i == 0 is the ATRN's); NULL when i is out
 * of range. code 0 when it was never answered. */
const struct etrn_client_reply *etrn_client_result(const struct etrn_client *c,
		unsigned i);
/* Replies etrn_client_result() has: nreq for ETRN, 1 for ATRN. */
unsigned etrn_client_nresults(const struct etrn_client *c);

/* Why the session ended before or instead of the requests: the greeting
 * or EHLO refused, TLS required but not offered or refused, AUTH refused
 * (535) or impossible (no mechanism we speak, credentials but only a
 * cleartext channel), timeout, lost connection. NULL when every request
 * was sent and answered (and after REVERSE). */
const struct etrn_client_reply *etrn_client_close_reason(const struct etrn_client *c);

/* 1 when every request got a success reply: ETRN 250, 251, 252 or 253;
 * ATRN 250. */
int etrn_client_ok(const struct etrn_client *c);

/* 1 once TLS is up; 1 once AUTH succeeded. For logs. */
int etrn_client_tls_on(const struct etrn_client *c);
int etrn_client_authed(const struct etrn_client *c);

/* What a reply code means, in words (RFC 1985 5 for ETRN: 250 "queuing
 * started", 251 "no messages waiting", 252 "pending messages started", 253
 * "pending messages started, with their count", 458 "unable to queue messages",
 * 459 "node not allowed", 500/501 syntax, 530 "authentication required";
 * RFC 2645 4 for ATRN: 250 "reversing the connection", 450 "access denied
 * to the domain", 451 "unable to process ATRN now", 453 "no mail waiting",
 * 502 "ATRN not supported"; anything else by its class). Static string. */
const char *etrn_client_meaning(enum etrn_client_method m, int code);

/* 1 when code is a success for m (ETRN 250-253, ATRN 250). */
int etrn_client_success(enum etrn_client_method m, int code);

#endif
