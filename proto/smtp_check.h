/* SPDX-License-Identifier: MIT */
/*
 * smtp_check: the policy-check hook of the SMTP server (issue 19). At each
 * stage of a session (connect, HELO, MAIL, RCPT, DATA, end of data) the
 * session may wait for an asynchronous verdict before it replies, the way
 * it waits for an AUTH answer. Checkers (DNSBL, SPF, milters) form one
 * chain per engine thread, asked in the order they were added; the first
 * verdict that is not "continue" wins and ends the chain for that stage.
 * Header edits (end of data) from every checker that continued add up and
 * are applied to the stored message before the commit, so the 250 still
 * means "on disk", with the edits. Everything runs on the engine thread.
 *
 * Promises: a session without checkers pays one branch per command; a
 * checker's answer after smtp_check_run_free() (the session ended) never
 * reaches anyone (the checker's end() must drop it); verdict texts and
 * edits are copied and bounded (SMTP_CHECK_REPLY_MAX, SMTP_CHECK_EDITS_MAX).
 */
#ifndef ETRND_PROTO_SMTP_CHECK_H
#define ETRND_PROTO_SMTP_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* The stages, in session order. SMTP_CHECK_NONE is no stage (a command
 * that is never checked). */
enum smtp_check_stage {
	SMTP_CHECK_NONE = 0,
	SMTP_CHECK_CONNECT,  /* before the 220 greeting */
	SMTP_CHECK_HELO,     /* HELO/EHLO, before its 250 */
	SMTP_CHECK_MAIL,     /* MAIL FROM, syntax checked, before its 250 */
	SMTP_CHECK_RCPT,     /* RCPT TO, accepted by rcpt_check, before its 250 */
	SMTP_CHECK_DATA,     /* the DATA command, before the 354 */
	SMTP_CHECK_EOM,      /* the message is complete, before the commit */
	SMTP_CHECK_STAGES
};
#define SMTP_CHECK_BIT(stage) (1u << (stage))

/* Stage names for logs ("connect", "helo", ...). A string literal. */
const char *smtp_check_stage_name(enum smtp_check_stage stage);

enum smtp_verdict_kind {
	SMTP_VERDICT_CONTINUE = 0, /* no objection: ask the next checker */
	/* No objection, and this checker will say nothing more about this
	 * message (milter SMFIR_ACCEPT): for the chain the same as CONTINUE;
	 * the checker remembers to skip itself. */
	SMTP_VERDICT_ACCEPT,
	SMTP_VERDICT_REJECT,   /* 5xx: default "550 5.7.1 ..." (554 at connect) */
	SMTP_VERDICT_TEMPFAIL, /* 4xx: default "451 4.7.1 ..." (421 at connect) */
	/* Take the message, say 250, store nothing (in a transaction: the
	 * message; at connect/HELO: every message of the session). */
	SMTP_VERDICT_DISCARD,
	/* Store the message held (quarantine): it is not delivered until an
	 * operator releases it. Scope as for DISCARD. */
	SMTP_VERDICT_HOLD,
};

/* A reply text the checker wants the client to see, one or more lines
 * ("550 5.7.1 spam", or "550-5.7.1 a\r\n550 5.7.1 b"), without the last
 * CRLF. The server checks it (same 3-digit code on every line, 4xx for
 * TEMPFAIL, 5xx for REJECT, printable ASCII, each line under RFC 5321's
 * 512 octets) and uses its own default text when it fails. */
#define SMTP_CHECK_REPLY_MAX 1024

/* Header edits (end of data only), as milter's SMFIR_ADDHEADER,
 * SMFIR_INSHEADER and SMFIR_CHGHEADER define them. */
enum smtp_hdr_op {
	SMTP_HDR_ADD = 1,   /* append after the last header */
	SMTP_HDR_INSERT,    /* insert before header number index (0: first) */
	SMTP_HDR_CHANGE,    /* the index-th (1-based) header called name gets
	                       value; an empty value deletes it */
};
/* All edits of one message together (names and values): a bound on what
 * checkers can make us store beyond the message. */
#define SMTP_CHECK_EDITS_MAX (64u * 1024u)

struct smtp_verdict {
	enum smtp_verdict_kind kind;
	const char *reply;   /* NULL: the default text for kind */
	size_t reply_len;
	const char *who;     /* the checker's name, for the log line */
	const char *why;     /* short reason for the log line, or NULL */
};

struct smtp_session;
struct smtp_check_job;

/*
 * A checker. start() is asked for every stage in stages; it answers with
 * smtp_check_answer(job, ...) exactly once, at once (inside start) or
 * later on this thread. *state is the checker's per-session slot (NULL
 * at the session's first stage); end() frees it when the session ends,
 * also while a job is out: after end() the checker must never answer that
 * job. The session (smtp_server.h accessors: smtp_server_client(),
 * smtp_server_helo(), smtp_server_check_arg(), smtp_server_tx()) may be
 * read from start() until the job is answered (it waits in its check
 * state meanwhile; at EOM the stored body stays put), never after. A transaction that ends before its EOM stage
 * (RSET, a new MAIL) is seen as the next MAIL stage: reset there.
 */
struct smtp_checker {
	const char *name;    /* string literal or owned by arg */
	unsigned stages;     /* SMTP_CHECK_BIT(stage) | ... */
	void (*start)(void *arg, void **state, const struct smtp_session *s,
		      enum smtp_check_stage stage, struct smtp_check_job *job);
	void (*end)(void *arg, void *state);
	void *arg;
};

/* The chain of one engine thread: checkers in the order asked. */
#define SMTP_CHECKERS_MAX 16
struct smtp_check_chain;
struct smtp_check_chain *smtp_check_chain_new(void);
struct smtp_check_chain *smtp_check_chain_free(struct smtp_check_chain *ch);
/* Append a checker (copied). Returns 0, or -ENOSPC past SMTP_CHECKERS_MAX. */
int smtp_check_chain_add(struct smtp_check_chain *ch, const struct smtp_checker *ck);
/* The stages any checker wants (smtp_server_conf.check_stages). */
unsigned smtp_check_chain_stages(const struct smtp_check_chain *ch);

/* The chain's verdict for a stage reached the session's host. */
typedef void (*smtp_check_done_fn)(void *arg, const struct smtp_verdict *v,
		const struct buf *edits);

/* One session's run of the chain. NULL on allocation failure. */
struct smtp_check_run *smtp_check_run_new(const struct smtp_check_chain *ch,
		smtp_check_done_fn done, void *done_arg);
/* Session over: every checker's end(), then free. NULL is fine. */
struct smtp_check_run *smtp_check_run_free(struct smtp_check_run *run);

/*
 * Ask the checkers that want stage, in order. Returns 1 when the verdict
 * is in already (every checker answered inside start: read it with
 * smtp_check_run_verdict()); 0 when it comes later through done(arg, v,
 * edits), called once, on this thread, never inside this call. s must
 * stay valid until the verdict. One stage at a time (a broken invariant
 * otherwise: panic).
 */
int smtp_check_run_start(struct smtp_check_run *run, const struct smtp_session *s,
		enum smtp_check_stage stage);
/* The verdict of the last finished stage, and the header edits collected
 * for the current message (NULL when none; encoded for
 * smtp_server_check_done()). Valid until the next smtp_check_run_start(). */
const struct smtp_verdict *smtp_check_run_verdict(const struct smtp_check_run *run);
const struct buf *smtp_check_run_edits(const struct smtp_check_run *run);

/* A checker's answer (v copied; reply text truncated to
 * SMTP_CHECK_REPLY_MAX). */
void smtp_check_answer(struct smtp_check_job *job, const struct smtp_verdict *v);
/* Queue one header edit for the current message (before answering the
 * EOM job). Returns 0, or -ENOBUFS past SMTP_CHECK_EDITS_MAX (the edit
 * is dropped; the caller decides whether that is fatal), -ENOMEM. */
int smtp_check_edit(struct smtp_check_job *job, enum smtp_hdr_op op, unsigned index,
		const char *name, size_t name_len, const char *value, size_t value_len);

/* Apply encoded edits to a stored body (our Received: header, then the
 * message, CRLF, dot-stuffed): the header block ends at the first empty
 * line. Values are written as given (CRLF-folded lines kept; a bare LF
 * becomes CRLF), a header line starting with '.' is stuffed. Returns 0,
 * -ENOMEM, or -E2BIG when body's cap is reached (body unchanged). */
int smtp_check_apply_edits(struct buf *body, const struct buf *edits);

#endif
