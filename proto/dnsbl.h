/* SPDX-License-Identifier: MIT */
/*
 * dnsbl: DNS block-list checks of a connecting client (issue 19 point 3),
 * as Postfix's postscreen does them: every configured list (core/config.h
 * dnsbl, parsed by core/dnsbl_list.h) is asked at once through the bounded
 * resolver (core/resolver.h resolver_query, A records, each query with
 * dnsbl_timeout as its deadline), the weights of the lists whose answer
 * passes their filter add up, and a score at or over dnsbl_threshold lists
 * the client. NXDOMAIN is "not listed"; a timeout, SERVFAIL or any other
 * failure is "not listed" too (fail open, logged and counted), as
 * postscreen does. One log line per decision, counters per list.
 *
 * One struct dnsbl per engine thread; everything but the resolver's
 * callback runs on that thread. A check's answer comes back by loop_post,
 * and the loop does not finish while an answer is still to come (a busy
 * check), so a check's memory is never touched after it is freed.
 */
#ifndef ETRND_PROTO_DNSBL_H
#define ETRND_PROTO_DNSBL_H

#include "core/dnsbl_list.h"

struct config;
struct loop;
struct resolver;
struct dnsbl;
struct dnsbl_check;

/* A check's outcome, valid during the done callback only. */
struct dnsbl_verdict {
	int score;          /* the weights of the lists that listed the client */
	int listed;         /* score >= dnsbl_threshold */
	int reject;         /* listed, and dnsbl_action = reject: refuse */
	const char *site;   /* listed: the list with the highest weight */
	/* reject: the reply that replaces the greeting (dnsbl_reply with
	 * $client and $site expanded), no CRLF; "" otherwise. */
	char reply[DNSBL_REPLY_MAX];
};

/* Called on the loop's thread once per check that dnsbl_start() returned,
 * unless dnsbl_cancel() came first. */
typedef void (*dnsbl_done_fn)(void *arg, const struct dnsbl_verdict *v);

/* The thread's checker for l (cfg and r outlive it; r NULL: every check
 * is skipped). Registers a busy check on l: call before loop_run(). NULL
 * when out of memory or the hook could not be added (errno set). */
struct dnsbl *dnsbl_new(const struct config *cfg, struct resolver *r, struct loop *l);

/* After loop_run() has returned (no answer is outstanding then). NULL is
 * fine. Returns NULL. */
struct dnsbl *dnsbl_free(struct dnsbl *d);

/* 1 when dnsbl lists sites (the checks are on), else 0. */
int dnsbl_enabled(const struct dnsbl *d);

/*
 * Start the check of client (printable address, copied). trusted 1: the
 * client is in mynetworks. Returns NULL when the client is not looked up
 * (checks off, mynetworks, loopback with dnsbl_skip_loopback, not an IP
 * address, or no query could be started: fail open; each logged) and done
 * never runs; else a handle, and done(arg, verdict) runs later on this
 * thread once every list answered or its deadline passed.
 */
struct dnsbl_check *dnsbl_start(struct dnsbl *d, const char *client, int trusted,
		dnsbl_done_fn done, void *arg);

/* The client left (or the session ended) first: done never runs; the
 * check's memory goes once its outstanding answers are in. NULL is fine. */
void dnsbl_cancel(struct dnsbl_check *k);

/* Fill ck: the checker of the SMTP server's policy-check chain
 * (proto/smtp_check.h) that runs dnsbl_start() at the CONNECT stage, before
 * the greeting: a rejected client gets dnsbl_reply instead of the 220
 * (554: REJECT; 421: TEMPFAIL), any other outcome continues. Add it first
 * (smtpd_add_checker()), so no SPF or milter work is spent on a listed
 * client. d must outlive every session. */
struct smtp_checker;
void dnsbl_checker(struct dnsbl *d, struct smtp_checker *ck);

#endif
