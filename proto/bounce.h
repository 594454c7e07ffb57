/* SPDX-License-Identifier: MIT */
/*
 * bounce: return undeliverable mail to its sender. For a stored message and
 * some of its recipients it queues, in one group commit, an RFC 3464 DSN to
 * the envelope sender (never to the null sender) followed by a DONE record
 * per recipient, so recipients are never marked done without their DSN.
 * Used by expiry (4.4.7) and by drains on a 5xx from the customer's server.
 * A delay warning instead queues the DSN (Action: delayed) followed by one
 * NOTE record, and leaves the recipients pending. No DSN goes to a sender
 * whose domain failed SPF when the message came (spf_stored_result(): no
 * backscatter); its recipients are marked done all the same.
 */
#ifndef ETRND_PROTO_BOUNCE_H
#define ETRND_PROTO_BOUNCE_H

#include <stdint.h>

#include "core/buf.h"
#include "proto/dsn.h"
#include "store/spool.h"
#include "store/spool_rec.h"

struct bounce_req {
	const char *hostname;             /* Reporting-MTA, MAILER-DAEMON@host */
	const struct spool_rec_hdr *hdr;  /* the stored message ... */
	const struct spool_rec_msg *msg;  /* ... decoded */
	const uint32_t *rcpt;             /* its recipients being returned */
	const struct dsn_rcpt *why;       /* their DSN fields (addr filled in
	                                     here from msg when NULL) */
	unsigned nrcpt;
	enum spool_done_status status;    /* DONE status: BOUNCED or EXPIRED */
	uint64_t now_us;
	/* 0: DONE records as above. Else a warning: no DONEs, one NOTE record
	 * of this kind after the DSN (also for the null sender, who gets no
	 * DSN), so the warning is given once. */
	enum spool_note_kind note;
	uint64_t retry_until_us;          /* delayed DSN: Will-Retry-Until; 0 =
	                                     omitted */
	int no_dsn;                       /* the records only, no DSN: the
	                                     expiry of a quarantined message
	                                     (no backscatter for mail a
	                                     content filter held) */
};

/* A request for nrcpt recipients rcpt of the stored message (hdr, msg) with
 * their DSN fields why, DONE status st (0 for a warning), made at now_us;
 * note and retry_until_us are 0 (a warning sets them). */
struct bounce_req bounce_req_make(const char *hostname, const struct spool_rec_hdr *hdr,
		const struct spool_rec_msg *msg, const uint32_t *rcpt,
		const struct dsn_rcpt *why, unsigned nrcpt, enum spool_done_status st,
		uint64_t now_us);

/*
 * Build the DSN into dsn (reset first; it must stay untouched until done
 * runs) and queue it and the DONE records (or the NOTE). done(arg, err) runs once, when the
 * last record is durable (or failed). *dsn_id gets the DSN's message id (0
 * when no DSN: null sender, or an SPF-failed sender, logged and counted). Returns 0 (done follows) or -errno (nothing
 * queued: done does not run).
 */
int bounce_queue(struct spool_shard *sh, const struct bounce_req *r,
		struct buf *dsn, uint64_t *dsn_id, spool_done_fn done, void *arg);

#endif
