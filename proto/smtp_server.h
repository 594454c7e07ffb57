/* SPDX-License-Identifier: MIT */
/*
 * smtp_server: the RFC 5321 server side as a pure state machine. Bytes from
 * the peer go in, reply text is appended to a caller's buffer, and events
 * (a message is complete and must be committed, the session must close) come
 * out. It never touches a file descriptor, so Criterion can drive it byte by
 * byte and a fuzzer can drive it with anything. STARTTLS (RFC 3207) and
 * AUTH (RFC 4954) are events too: the glue starts the handshake or the
 * password check and reports back (smtp_server_tls_up(),
 * smtp_server_auth_done()). So is ATRN (RFC 2645): on an On-Demand Mail
 * Relay listener (or anywhere with conf->atrn) an authenticated client's
 * "ATRN [domain,...]" is handed to the glue, which decides, replies and,
 * on success, turns the connection around (smtp_server_atrn_done()).
 * The relay right (send on to any domain) comes from the glue for the
 * client's address (smtp_server_set_relay()) or from a successful AUTH, and
 * is handed to rcpt_check; on a submission listener (RFC 6409) MAIL needs
 * AUTH first (smtp_server_set_submission()). The customer's side of ATRN
 * is a session too (smtp_server_set_reversed()): the upstream hands us
 * our mail over the connection we opened.
 *
 * Promises: replies come out in command order (RFC 2920 pipelining); every
 * limit hit gets its RFC reply with an enhanced status code; no input makes it
 * crash, grow memory past its caps, or accept a recipient the rcpt_check
 * callback did not allow.
 */
#ifndef ETRND_PROTO_SMTP_SERVER_H
#define ETRND_PROTO_SMTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/buf.h"
#include "core/tls.h"
#include "proto/auth.h"
#include "proto/qid.h"
#include "proto/smtp_check.h"

/* The session's queue id buffer: proto/qid.h's queue id text and NUL (one
 * constant, so new_id's qid_format() always fits). */
#define SMTP_QID_MAX QID_MAX

struct smtp_limits {
	size_t command_max;      /* command line incl. CRLF; RFC 5321 4.5.3.1.4: 512 */
	size_t line_max;         /* DATA text line incl. CRLF; RFC 5321 4.5.3.1.6: 1000 */
	unsigned max_recipients; /* per message; RFC 5321 4.5.3.1.8 asks >= 100 */
	size_t size_max;         /* message size (unstuffed) advertised in SIZE */
	unsigned max_errors;     /* junk/failed commands before 421 and close */
	int bare_lf_normalize;   /* 0: reject bare LF/CR in DATA (default); 1: store as CRLF */
	size_t reply_max;        /* stop taking commands once out holds this many
	                            bytes (SMTP_EV_OUT_FULL); 0 = no limit */
};

enum smtp_rcpt_verdict {
	SMTP_RCPT_OK = 0,
	SMTP_RCPT_DENY,       /* 550 5.7.1 relaying denied */
	SMTP_RCPT_TEMPFAIL,   /* 451 4.3.0 domain table unavailable, try later */
	SMTP_RCPT_OVER_QUOTA, /* 452 4.2.2 mailbox/domain over quota */
	SMTP_RCPT_ROUTED,     /* 554 5.7.1 sender-specified routing (the server's own) */
	SMTP_RCPT_NO_USER,    /* 550 5.1.1 not in the domain's recipient set */
	SMTP_RCPT_NO_USERS,   /* 451 4.3.0 the domain's recipient set is not loaded */
};

/* Decide on a recipient domain (lower-cased, no trailing dot, not NUL
 * terminated: use len). relay is 1 when this session may send mail on to
 * any domain: the glue said so for the client's address
 * (smtp_server_set_relay(): it is in mynetworks), or the session has
 * authenticated (and not started TLS since, RFC 3207 4.2); else 0. Which
 * domains need it (those with no customer row) is the callback's call. */
typedef enum smtp_rcpt_verdict (*smtp_rcpt_check_fn)(void *arg,
		const char *domain, size_t len, int relay);

/* Recipient validation (issue 19), asked after rcpt_check said
 * SMTP_RCPT_OK: addr[0..len) is "local@domain" (domain lower-cased),
 * domain_off the offset of the domain. SMTP_RCPT_OK, SMTP_RCPT_NO_USER or
 * SMTP_RCPT_NO_USERS. */
typedef enum smtp_rcpt_verdict (*smtp_rcpt_user_fn)(void *arg, const char *addr,
		size_t len, size_t domain_off);

/* Hand out a new message id and its queue id text (NUL-terminated, at most
 * SMTP_QID_MAX bytes). Called once per DATA command that is accepted. */
typedef void (*smtp_new_id_fn)(void *arg, uint64_t *msgid, char *qid);

/* Current wall-clock time for the Received: header; NULL means time(NULL).
 * Tests set it for reproducible transcripts. */
typedef time_t (*smtp_clock_fn)(void *arg);

/* ETRN (RFC 1985) with node as the client gave it: "domain", "@domain" or
 * "#queue" (syntax already checked; not NUL-terminated), from client_addr,
 * by user (the session's authenticated user, NULL when none). The callback
 * appends the whole reply (250/251/252/253/458/459 with enhanced codes) to
 * out; it must answer at once and never wait for delivery. */
typedef void (*smtp_etrn_fn)(void *arg, const char *client_addr, const char *user,
		const char *node, size_t len, struct buf *out);

struct smtp_server_conf {
	const char *hostname;    /* our name in the banner, EHLO and Received: */
	struct smtp_limits limits;
	smtp_rcpt_check_fn rcpt_check;
	void *rcpt_arg;
	smtp_rcpt_user_fn rcpt_user;  /* NULL: no recipient validation; rcpt_arg */
	smtp_new_id_fn new_id;
	void *new_id_arg;
	smtp_clock_fn clock;     /* may be NULL */
	void *clock_arg;
	smtp_etrn_fn etrn;       /* NULL: ETRN not offered (502) */
	void *etrn_arg;
	/* Where RCPT TO:<postmaster> and postmaster@hostname go (RFC 5321
	 * 4.5.1): a NUL-terminated local@domain of at most SMTP_PATH_MAX - 2
	 * octets, accepted without rcpt_check. NULL: refused like any bare
	 * local part (501). */
	const char *postmaster;
	/* 0 (Postfix's default): a local part with '%', '!' or a quoted '@'
	 * is refused 554 5.7.1 (smtp_parse.h's SMTP_PATH_LOCAL_ROUTING). */
	int allow_untrusted_routing;
	/* Node-wide memory for DATA buffers (core/budget.h), shared by every
	 * session; NULL = no budget. A message that cannot get more of it is
	 * refused with 452 4.3.1 at its end (the rest of DATA is read and
	 * dropped); its share is given back when the transaction ends. */
	struct budget *data_budget;
	/* 1: offer STARTTLS (RFC 3207) until TLS is up; the glue has a
	 * server context. 0: "502 5.5.1 Command not implemented". */
	int starttls;
	/* 1: offer AUTH PLAIN LOGIN (RFC 4954) once TLS is up or on a
	 * trusted listener (smtp_server_set_trusted()); the glue has a
	 * password checker. 0: "503 5.5.1 Error: authentication not enabled". */
	int auth;
	/* 1 (smtp_atrn = yes): ATRN (RFC 2645) is answered on every listener
	 * as on an ODMR one, and EHLO offers it. 0: only on ODMR listeners
	 * (smtp_server_set_odmr()); elsewhere "502 5.5.1". */
	int atrn;
	/* The stages (SMTP_CHECK_BIT(), proto/smtp_check.h) at which the
	 * session waits for the glue's policy verdict (SMTP_EV_CHECK); 0: no
	 * checks, one branch per command. */
	unsigned check_stages;
};

enum smtp_event {
	SMTP_EV_NEED_INPUT = 0, /* all input consumed; feed more when it arrives */
	SMTP_EV_COMMIT,         /* a message is complete: commit smtp_server_tx()
	                           then call smtp_server_commit_done(); feeding is
	                           refused (0 consumed) until then */
	SMTP_EV_CLOSE,          /* final reply written (221/421/...); flush it and close */
	SMTP_EV_OUT_FULL,       /* out holds limits.reply_max bytes: send them,
	                           then feed the rest once the peer has read them */
	SMTP_EV_STARTTLS,       /* "220 2.0.0 Ready to start TLS" written: start
	                           the handshake (conf->starttls). All input of
	                           this feed is consumed: whatever the client
	                           pipelined after STARTTLS is dropped (RFC 3207
	                           5, CVE-2011-0411); feeding is refused (0
	                           consumed) until smtp_server_tls_up() */
	SMTP_EV_AUTH,           /* credentials to check (smtp_server_auth_user(),
	                           smtp_server_auth_pass()), then call
	                           smtp_server_auth_done(); feeding is refused (0
	                           consumed) until then */
	SMTP_EV_ATRN,           /* ATRN (RFC 2645) from the authenticated user
	                           (smtp_server_user()), syntax checked: the
	                           domains are smtp_server_atrn_domains(). Append
	                           the reply (250 to turn around, 450/451/453),
	                           then call smtp_server_atrn_done(); feeding is
	                           refused (0 consumed) until then. Nothing after
	                           the ATRN line is consumed: after a turn-around
	                           it is the new owner's (the customer's 220). */
	SMTP_EV_CHECK,          /* a policy check is due (conf->check_stages):
	                           run it for smtp_server_check_stage(), then
	                           call smtp_server_check_done(); feeding is
	                           refused (0 consumed) until then */
};

struct budget;
struct smtp_session;
struct smtp_tx;

/* Create a session. conf must outlive it; client_addr is copied (printable
 * text like "127.0.0.1" or "::1"). Returns NULL on allocation failure. */
struct smtp_session *smtp_server_new(const struct smtp_server_conf *conf,
		const char *client_addr);

/* The connection came through a listen_trusted listener: AUTH is offered
 * without TLS. Call before the first feed. */
void smtp_server_set_trusted(struct smtp_session *s);

/* The connection came through an odmr_listen listener (RFC 2645): the
 * greeting says on-demand mail relay, EHLO offers AUTH and ATRN (and
 * STARTTLS), and MAIL, RCPT, DATA, BDAT, ETRN, VRFY and EXPN, which no
 * ODMR session has, are answered "502 5.5.1". Call before the greeting. */
void smtp_server_set_odmr(struct smtp_session *s);

/* The client's address may relay (it is in mynetworks): rcpt_check is
 * told relay = 1 for the whole session, STARTTLS or not. Call before the
 * first feed. */
void smtp_server_set_relay(struct smtp_session *s);

/* The connection came through a submission_listen listener (RFC 6409
 * message submission, port 587): MAIL before a successful AUTH is "530
 * 5.7.0 Authentication required" (RFC 4954 6), counted against the error
 * budget, whatever the client's address; AUTH is offered as on the SMTP
 * port (inside TLS, or in the clear where smtp_server_set_trusted() said
 * so); everything else is as on the SMTP port. Call before the first
 * feed. */
void smtp_server_set_submission(struct smtp_session *s);

/* The connection came through a cluster_listen listener (issue 16): AUTH
 * is offered there whatever conf->auth says (the glue checks it against
 * the cluster secret, proto/auth.h), inside TLS or where
 * smtp_server_set_trusted() said so; MAIL before a successful AUTH is
 * "530 5.7.0 Authentication required" (ATRN is, everywhere); ATRN is
 * answered. */
void smtp_server_set_cluster(struct smtp_session *s);

/*
 * ATRN's reversed session (RFC 2645 4, the customer's side: we sent ATRN
 * to an upstream, it said 250, and now it is the client on our
 * connection; proto/smtpd.h smtpd_adopt_reversed()). EHLO offers no
 * STARTTLS (TLS is on or stays off: call smtp_server_tls_up() before the
 * greeting when the connection carries it), no AUTH, no ETRN and no ATRN,
 * and those four are answered "502 5.5.1" (counted against the error
 * budget); HELP lists only the mail commands. Mail is taken as from any
 * client without the relay right: a session already given
 * smtp_server_set_relay() or _set_odmr() is a broken invariant (panic).
 * Logged once. Call before the greeting.
 */
void smtp_server_set_reversed(struct smtp_session *s);

/* Why the session ended, once it has (SMTP_EV_CLOSE was or would be
 * returned): "QUIT", "lost connection" (the peer closed, n == 0),
 * "idle timeout" (smtp_server_timeout()), "shutdown"
 * (smtp_server_shutdown()), "too many errors", "reply buffer full",
 * "non-SMTP command", "ATRN" (turned around); NULL while it goes on.
 * A string literal. */
const char *smtp_server_end_reason(const struct smtp_session *s);

/* 1 when rcpt_check is told relay = 1 now (smtp_server_set_relay(), or
 * an authenticated user), else 0. */
int smtp_server_may_relay(const struct smtp_session *s);

/*
 * After SMTP_EV_ATRN: the domain list as the client gave it, one that
 * proto/atrn.h's atrn_parse() takes (at most ATRN_DOMAINS_MAX domains);
 * *len 0 (or blanks only: atrn_parse() skips them) means every domain the
 * user owns. Not NUL-terminated; points into the line just fed, so it is
 * valid until smtp_server_atrn_done() or the next feed, whichever is first.
 */
const char *smtp_server_atrn_domains(const struct smtp_session *s, size_t *len);
/* The glue has answered the ATRN. reversed 1: its reply was the 250 and the
 * connection now belongs to the ATRN session (the session is over, as if
 * closed: free it); 0: it was refused (reply in out) and the session takes
 * commands again. Harmless after the session was closed meanwhile. */
void smtp_server_atrn_done(struct smtp_session *s, int reversed);

/*
 * The TLS handshake is done (after SMTP_EV_STARTTLS, or at once on an
 * implicit-TLS listener); info as conn_tls() gives it (copied). After
 * STARTTLS the session starts over as RFC 3207 4.2 says: no EHLO known, no
 * transaction, no authenticated user, and takes commands again. EHLO stops
 * offering STARTTLS, offers AUTH, and Received: says ESMTPS (RFC 3848).
 */
void smtp_server_tls_up(struct smtp_session *s, const struct tls_info *info);

/* After SMTP_EV_AUTH: the user (NUL-terminated, at most AUTH_USER_MAX) and
 * the password (*len octets, no NUL, at most AUTH_PASS_MAX) to check. Both
 * stay valid until smtp_server_auth_wipe() or smtp_server_auth_done(). */
const char *smtp_server_auth_user(const struct smtp_session *s);
const char *smtp_server_auth_pass(const struct smtp_session *s, size_t *len);
/* Clear the password now (explicit_bzero): call as soon as the checker has
 * its copy. The user stays for smtp_server_auth_done()'s log line. */
void smtp_server_auth_wipe(struct smtp_session *s);
/*
 * The check after SMTP_EV_AUTH ended: r's RFC 4954 reply goes to out (235
 * 2.7.0; 535 5.7.8; 454 4.7.0 for AUTH_TEMP and AUTH_LIMITED), one log line
 * says who, from where, how and with what result (never the password), and
 * the session takes commands again. Returns SMTP_EV_CLOSE when that reply
 * used up the error budget (421 written: close), else SMTP_EV_NEED_INPUT.
 * Harmless after the session was closed (timeout, shutdown) meanwhile.
 */
enum smtp_event smtp_server_auth_done(struct smtp_session *s, enum auth_result r,
		struct buf *out);
/* The authenticated user (NUL-terminated), NULL when none. */
const char *smtp_server_user(const struct smtp_session *s);

/*
 * Policy checks (proto/smtp_check.h). After SMTP_EV_CHECK (or after
 * smtp_server_greeting() when the CONNECT stage is checked:
 * smtp_server_check_stage() says so), the stage awaited, or
 * SMTP_CHECK_NONE when no check is due. smtp_server_check_arg(): the
 * HELO/EHLO argument (at most SMTP_CHECK_HELO_MAX octets, printable), the
 * MAIL or RCPT address ("" for <>), NUL-terminated; "" at other stages.
 * Valid until smtp_server_check_done().
 */
#define SMTP_CHECK_HELO_MAX 255
enum smtp_check_stage smtp_server_check_stage(const struct smtp_session *s);
const char *smtp_server_check_arg(const struct smtp_session *s, size_t *len);
/* The client's printable address and its HELO/EHLO name ("" before one). */
const char *smtp_server_client(const struct smtp_session *s);
const char *smtp_server_helo(const struct smtp_session *s);
/*
 * The verdict for the stage awaited (v->kind, reply text checked here: a
 * bad one gets the default text). Continue/accept: the command goes on as
 * if unchecked (the greeting, HELO's 250, ...). Reject/tempfail: that
 * command's reply only (a RCPT reject refuses that recipient; at connect
 * 554/421 and the session closes; at end of data the message is refused).
 * Discard and hold mark the message (in a transaction) or the session (at
 * connect and HELO): a discarded message gets its 250 and is never
 * stored, a held one is stored held (smtp_tx_held()). At end of data,
 * edits (NULL: none) are applied to the stored body first. One log line
 * for every verdict that is not continue. Returns SMTP_EV_COMMIT (commit
 * as after SMTP_EV_COMMIT from a feed), SMTP_EV_CLOSE, or
 * SMTP_EV_NEED_INPUT. Harmless after the session was closed meanwhile
 * (returns SMTP_EV_CLOSE).
 */
enum smtp_event smtp_server_check_done(struct smtp_session *s, const struct smtp_verdict *v,
		const struct buf *edits, struct buf *out);

/* Free a session and its transaction. NULL is fine. Returns NULL. */
struct smtp_session *smtp_server_free(struct smtp_session *s);

/* The most bytes a stored body can take under lim with our name hostname:
 * size_max dot-stuffed (4/3 at most) plus our Received: header. The body
 * buffer's cap, and what the start-up cross-checks count with. */
size_t smtp_server_body_max(const struct smtp_limits *lim, const char *hostname);

/* Append the 220 greeting. */
void smtp_server_greeting(struct smtp_session *s, struct buf *out);

/*
 * Feed n bytes from the peer. Replies are appended to out. Returns the number
 * of bytes consumed; *ev says why it stopped. With SMTP_EV_NEED_INPUT the
 * return value is n (partial lines are kept inside the session, bounded by the
 * limits). With SMTP_EV_COMMIT, SMTP_EV_CLOSE or SMTP_EV_OUT_FULL it may be less
 * than n: the caller keeps the rest and feeds it again after
 * smtp_server_commit_done() (commit) or once out has been sent (out full),
 * or drops it (close). A pipelining peer thus never makes the session
 * buffer more than about reply_max of replies. n == 0 means the peer closed its side (EOF):
 * the session returns SMTP_EV_CLOSE without writing a reply.
 */
size_t smtp_server_feed(struct smtp_session *s, const char *p, size_t n,
		struct buf *out, enum smtp_event *ev);

/* The complete transaction after SMTP_EV_COMMIT. Valid until
 * smtp_server_commit_done(). */
const struct smtp_tx *smtp_server_tx(const struct smtp_session *s);

/* The commit of the current transaction finished: err 0 means it is on disk
 * (writes "250 2.0.0 Ok: queued as QID"); -ENOSPC/-EIO/other: 451 4.3.0;
 * -EDQUOT: 452 4.2.2; -E2BIG (the record does not fit a spool segment):
 * 552 5.3.4. The transaction is dropped either way and the session
 * accepts commands again. */
void smtp_server_commit_done(struct smtp_session *s, int err, struct buf *out);

/* 1 when no mail transaction is open (safe to close for shutdown; an AUTH
 * check or TLS handshake in flight is the glue's to wait for). */
int smtp_server_idle(const struct smtp_session *s);

/* Idle timeout: append "421 4.4.2 <host> Error: timeout exceeded". */
void smtp_server_timeout(struct smtp_session *s, struct buf *out);

/* Shutdown: append "421 4.3.2 <host> Service shutting down". */
void smtp_server_shutdown(struct smtp_session *s, struct buf *out);

/* Reply for a connection refused before a session exists (too many
 * connections): "421 4.7.0 <host> Error: too many connections". */
void smtp_server_reply_busy(struct buf *out, const char *hostname);

/* Accessors for the committed transaction. Pointers stay valid until
 * smtp_server_commit_done(). Strings are not NUL-terminated: use the length. */
uint64_t smtp_tx_msgid(const struct smtp_tx *tx);
const char *smtp_tx_qid(const struct smtp_tx *tx); /* NUL-terminated */
const char *smtp_tx_sender(const struct smtp_tx *tx, size_t *len); /* "" for <> */
unsigned smtp_tx_nrcpt(const struct smtp_tx *tx);
const char *smtp_tx_rcpt(const struct smtp_tx *tx, unsigned i, size_t *len);
/* Byte offset of the domain (after '@') inside recipient i. */
size_t smtp_tx_rcpt_domain_off(const struct smtp_tx *tx, unsigned i);
/* Body as stored: our Received: header, then the message with CRLF line
 * endings, still dot-stuffed, without the terminating ".\r\n". */
const char *smtp_tx_body(const struct smtp_tx *tx, size_t *len);
#define SMTP_TX_8BITMIME 0x1u
#define SMTP_TX_SMTPUTF8 0x2u
unsigned smtp_tx_flags(const struct smtp_tx *tx);
/* 1 when a policy check said to keep the message held (quarantine). */
int smtp_tx_held(const struct smtp_tx *tx);

#endif
