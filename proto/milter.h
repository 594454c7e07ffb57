/* SPDX-License-Identifier: MIT */
/*
 * milter: the MTA side of the Sendmail/Postfix milter protocol (version 6)
 * as policy checkers of the SMTP server (proto/smtp_check.h), one per
 * configured milter (`milter = inet:127.0.0.1:11332, unix:/run/x.sock`),
 * asked in that order. Each checked SMTP session opens its own connection
 * to each milter at its connect stage, through the engine's loop like any
 * other connection (never blocking the thread), negotiates, and sends the
 * session's events as they come: CONNECT, HELO, MAIL, RCPT, DATA, then at
 * the end of data the headers, EOH, the body in chunks and EOB; ABORT
 * before a new transaction when the last one did not reach EOB, QUIT at
 * the session's end. The filter's verdicts become the check's verdicts;
 * its header edits and quarantine (stored held) apply to the message.
 *
 * Promises: per connection at most MILTER_FRAME_SMALL octets of reply
 * frame and one command (at most MILTER_CMD_MAX) of output are held; a
 * filter that is down, slow (milter_*_timeout), closes, or breaks the
 * protocol gets milter_default_action for the rest of that session, with
 * one log line naming the milter and the reason and a count in
 * etrnd_milter_failures_total{milter="i"}.
 */
#ifndef ETRND_PROTO_MILTER_H
#define ETRND_PROTO_MILTER_H

#include "core/config.h"

struct loop;
struct smtpd;
struct milters;

/* The milters of one engine thread (cfg->milters; cfg outlives it), on
 * loop l. NULL on allocation failure. */
struct milters *milters_new(const struct config *cfg, struct loop *l);

/* Add one checker per milter to d's chain (smtpd_add_checker()), in
 * config order. Returns 0 or -errno. */
int milters_attach(struct milters *m, struct smtpd *d);

/* Free once the loop has finished (every milter connection is gone then).
 * NULL is fine. Returns NULL. */
struct milters *milters_free(struct milters *m);

#endif
