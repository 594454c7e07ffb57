/* SPDX-License-Identifier: MIT */
/*
 * bounce: see bounce.h. The DSN record is queued before the DONEs; the spool
 * writes a batch in queue order, so no crash can leave a recipient done
 * without the DSN that reports it (at worst the DSN is stored and the DONEs
 * are not: the recipients are returned again later, a duplicate DSN).
 */
#include "proto/bounce.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/metrics.h"
#include "proto/qid.h"
#include "proto/spf.h"

#define BOUNCE_POSTMASTER_MAX 300

struct bounce_wait {
	spool_done_fn done;
	void *arg;
	unsigned left;
	int err;
};

static void bounce_part(void *arg, int err)
{
	struct bounce_wait *w = arg;
	spool_done_fn done;
	void *done_arg;

	if (err && !w->err)
		w->err = err;
	if (--w->left)
		return;
	done = w->done;
	done_arg = w->arg;
	err = w->err;
	free(w);
	done(done_arg, err);
}

/* The DSN's recipient lines, one per returned recipient, each with its
 * reason (r->why) and address; NULL when out of memory. Freed by the caller;
 * the addresses borrow r->msg. */
static struct dsn_rcpt *bounce_dsn_rcpts(const struct bounce_req *r)
{
	struct dsn_rcpt *dr = calloc(r->nrcpt, sizeof(*dr));

	if (!dr)
		return NULL;
	for (unsigned i = 0; i < r->nrcpt; i++) {
		struct spool_rec_addr a = spool_rec_msg_rcpt(r->msg, r->rcpt[i]);
		if (r->why)
			dr[i] = r->why[i];
		dr[i].addr = a.p;
		dr[i].addr_len = a.len;
	}
	return dr;
}

/* Write the DSN for r into dsn (reset first); *flags gets dsn_build()'s
 * DSN_OUT_* flags. dsn_id seeds the DSN's Message-ID. */
static int bounce_build_dsn(const struct bounce_req *r, const struct dsn_rcpt *dr,
			    uint64_t dsn_id, struct buf *dsn, unsigned *flags)
{
	const struct spool_rec_msg *m = r->msg;
	struct dsn_input in;
	char qid[QID_MAX], seed[QID_MAX], postmaster[BOUNCE_POSTMASTER_MAX];

	qid_format(r->hdr->msgid, qid);
	qid_format(dsn_id, seed);
	snprintf(postmaster, sizeof(postmaster), "MAILER-DAEMON@%s", r->hostname);
	memset(&in, 0, sizeof(in));
	in.reporting_mta = r->hostname;
	in.postmaster = postmaster;
	in.qid = qid;
	in.sender = m->sender.p;
	in.sender_len = m->sender.len;
	in.arrival = (time_t)(r->hdr->time_us / 1000000);
	in.now = (time_t)(r->now_us / 1000000);
	in.retry_until = (time_t)(r->retry_until_us / 1000000);
	in.rcpt = dr;
	in.nrcpt = r->nrcpt;
	in.orig = m->body;
	in.orig_len = m->body_len;
	in.return_full = 0; /* the original's headers, like Postfix */
	in.message_id_seed = seed;
	buf_reset(dsn);
	return dsn_build(&in, dsn, flags);
}

/* Queue the built DSN as a new message from <> to the original sender; its
 * completion counts in w. The spool copies the envelope before returning. */
static int bounce_append_dsn(struct spool_shard *sh, const struct spool_rec_msg *m,
			     uint64_t dsn_id, const struct buf *dsn, unsigned flags,
			     struct bounce_wait *w)
{
	struct spool_msg dm;
	const char *to[1] = { m->sender.p };
	size_t to_len[1] = { m->sender.len };
	int rc;

	memset(&dm, 0, sizeof(dm));
	dm.msgid = dsn_id;
	dm.flags = (flags & DSN_OUT_8BIT) ? SPOOL_MSG_8BITMIME : 0;
	dm.sender = "";
	dm.nrcpt = 1;
	dm.rcpt = to;
	dm.rcpt_len = to_len;
	dm.body = dsn->data;
	dm.body_len = dsn->len;
	rc = spool_append_msg(sh, &dm, bounce_part, w);
	if (rc)
		return rc;
	w->left++;
	return 0;
}

/* Build and queue the DSN for r. *dsn_id is set once an id is taken (the
 * caller clears it when nothing was queued). */
static int bounce_queue_dsn(struct spool_shard *sh, const struct bounce_req *r,
			    struct buf *dsn, uint64_t *dsn_id, struct bounce_wait *w)
{
	struct dsn_rcpt *dr;
	unsigned flags = 0;
	int rc;

	dr = bounce_dsn_rcpts(r);
	if (!dr)
		return -ENOMEM;
	*dsn_id = spool_shard_new_msgid(sh);
	rc = bounce_build_dsn(r, dr, *dsn_id, dsn, &flags);
	free(dr);
	if (rc)
		return rc;
	return bounce_append_dsn(sh, r->msg, *dsn_id, dsn, flags, w);
}

/* Queue a DONE for every returned recipient; only the last one's completion
 * counts in w (the spool completes a batch in order). */
static int bounce_queue_dones(struct spool_shard *sh, const struct bounce_req *r,
			      struct bounce_wait *w)
{
	for (unsigned i = 0; i < r->nrcpt; i++) {
		int last = i + 1 == r->nrcpt;
		int rc = spool_append_done(sh, r->hdr->msgid, r->rcpt[i], r->status,
					   last ? bounce_part : NULL, last ? w : NULL);
		if (rc)
			return rc;
		if (last)
			w->left++;
	}
	return 0;
}

/*
 * No backscatter (issue 19): a DSN to a sender whose domain failed SPF when
 * the message came (our Received-SPF on the stored body says fail) would go
 * to an address that is most likely forged. It is not sent; the recipients
 * are still marked done. Fail only, not softfail: RFC 7208 8.5 makes
 * softfail "probably not authorized", and large senders publish ~all for
 * their real mail, whose bounces must arrive. 1 when suppressed (logged,
 * counted).
 */
static int bounce_suppressed(const struct bounce_req *r)
{
	const struct spool_rec_msg *m = r->msg;
	char qid[QID_MAX], from[LOG_TEXT_MAX];

	if (spf_stored_result(m->body, m->body_len) != SPF_RES_FAIL)
		return 0;
	qid_format(r->hdr->msgid, qid);
	log_info("%s: %s to <%s> not sent: the sender's domain failed SPF (no backscatter)", qid,
		 r->note ? "delay warning" : "bounce",
		 log_printable(from, sizeof(from), m->sender.p, m->sender.len));
	metrics_add(METRIC_BOUNCES_SUPPRESSED_SPF, 1);
	return 1;
}

int bounce_queue(struct spool_shard *sh, const struct bounce_req *r,
		 struct buf *dsn, uint64_t *dsn_id, spool_done_fn done, void *arg)
{
	struct bounce_wait *w;
	int rc = 0;

	*dsn_id = 0;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->done = done;
	w->arg = arg;
	if (r->msg->sender.len > 0 && !r->no_dsn && !bounce_suppressed(r)) {
		rc = bounce_queue_dsn(sh, r, dsn, dsn_id, w);
		if (rc)
			goto fail;
	}
	if (r->note) {
		/* After the DSN in the same commit: a crash between them can
		 * only repeat the warning, never lose it. */
		rc = spool_append_note(sh, r->hdr->msgid, r->note, bounce_part, w);
		if (rc)
			goto fail;
		w->left++;
		return 0;
	}
	rc = bounce_queue_dones(sh, r, w);
	if (rc)
		goto fail;
	return 0;
fail:
	if (w->left) {
		/* The DSN is queued and borrows dsn: report through its
		 * completion, with the error. */
		w->err = rc;
		return 0;
	}
	free(w);
	*dsn_id = 0;
	return rc;
}

struct bounce_req bounce_req_make(const char *hostname, const struct spool_rec_hdr *hdr,
				  const struct spool_rec_msg *msg, const uint32_t *rcpt,
				  const struct dsn_rcpt *why, unsigned nrcpt,
				  enum spool_done_status st, uint64_t now_us)
{
	return (struct bounce_req){
		.hostname = hostname, .hdr = hdr, .msg = msg, .rcpt = rcpt, .why = why,
		.nrcpt = nrcpt, .status = st, .now_us = now_us,
	};
}
