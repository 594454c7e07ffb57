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

#include "proto/qid.h"

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

int bounce_queue(struct spool_shard *sh, const struct bounce_req *r,
		 struct buf *dsn, uint64_t *dsn_id, spool_done_fn done, void *arg)
{
	const struct spool_rec_msg *m = r->msg;
	struct bounce_wait *w;
	struct dsn_rcpt *dr = NULL;
	char qid[QID_MAX], seed[QID_MAX], postmaster[BOUNCE_POSTMASTER_MAX];
	int rc;

	*dsn_id = 0;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->done = done;
	w->arg = arg;
	qid_format(r->hdr->msgid, qid);
	if (m->sender.len > 0) {
		struct dsn_input in;
		struct spool_msg dm;
		const char *to[1] = { m->sender.p };
		size_t to_len[1] = { m->sender.len };
		unsigned flags = 0;

		dr = calloc(r->nrcpt, sizeof(*dr));
		if (!dr) {
			rc = -ENOMEM;
			goto fail;
		}
		for (unsigned i = 0; i < r->nrcpt; i++) {
			struct spool_rec_addr a = spool_rec_msg_rcpt(m, r->rcpt[i]);
			if (r->why)
				dr[i] = r->why[i];
			dr[i].addr = a.p;
			dr[i].addr_len = a.len;
		}
		*dsn_id = spool_shard_new_msgid(sh);
		qid_format(*dsn_id, seed);
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
		rc = dsn_build(&in, dsn, &flags);
		free(dr);
		if (rc)
			goto fail;
		memset(&dm, 0, sizeof(dm));
		dm.msgid = *dsn_id;
		dm.flags = (flags & DSN_OUT_8BIT) ? SPOOL_MSG_8BITMIME : 0;
		dm.sender = "";
		dm.nrcpt = 1;
		dm.rcpt = to;
		dm.rcpt_len = to_len;
		dm.body = dsn->data;
		dm.body_len = dsn->len;
		rc = spool_append_msg(sh, &dm, bounce_part, w);
		if (rc)
			goto fail;
		w->left++;
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
	for (unsigned i = 0; i < r->nrcpt; i++) {
		int last = i + 1 == r->nrcpt;
		rc = spool_append_done(sh, r->hdr->msgid, r->rcpt[i], r->status,
				       last ? bounce_part : NULL, last ? w : NULL);
		if (rc)
			goto fail;
		if (last)
			w->left++;
	}
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
