/* SPDX-License-Identifier: MIT */
/*
 * smtp_check: the chain of policy checkers and one session's run of it
 * (see smtp_check.h), and the header edits a verdict carries to the
 * stored message. No I/O: the checkers do theirs through the loop.
 */
#include "proto/smtp_check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/ascii.h"
#include "core/log.h"

struct smtp_check_chain {
	unsigned n;
	unsigned stages;
	struct smtp_checker ck[SMTP_CHECKERS_MAX];
};

/* The job handed to a checker: the run it answers to. One per run, as
 * only one checker is asked at a time. */
struct smtp_check_job {
	struct smtp_check_run *run;
};

struct smtp_check_run {
	const struct smtp_check_chain *ch;
	smtp_check_done_fn done;
	void *done_arg;
	const struct smtp_session *s;
	enum smtp_check_stage stage;  /* SMTP_CHECK_NONE: no stage running */
	unsigned next;                /* the checker to ask next */
	int waiting;                  /* checker next-1 has the job */
	int in_start;                 /* inside smtp_check_run_start() */
	struct smtp_check_job job;
	struct smtp_verdict v;        /* the last stage's verdict */
	char who[64];
	char why[128];
	char reply[SMTP_CHECK_REPLY_MAX];
	struct buf edits;             /* this message's header edits */
	void *state[SMTP_CHECKERS_MAX];
};

/* One encoded edit in run->edits; name and value follow it. */
struct smtp_edit_rec {
	uint32_t op;
	uint32_t index;
	uint32_t name_len;
	uint32_t value_len;
};

static const char *const smtp_check_stage_names[SMTP_CHECK_STAGES] = {
	"none", "connect", "helo", "mail", "rcpt", "data", "end-of-data",
};

const char *smtp_check_stage_name(enum smtp_check_stage stage)
{
	return stage < SMTP_CHECK_STAGES ? smtp_check_stage_names[stage] : "?";
}

struct smtp_check_chain *smtp_check_chain_new(void)
{
	return calloc(1, sizeof(struct smtp_check_chain));
}

struct smtp_check_chain *smtp_check_chain_free(struct smtp_check_chain *ch)
{
	free(ch);
	return NULL;
}

int smtp_check_chain_add(struct smtp_check_chain *ch, const struct smtp_checker *ck)
{
	if (ck->start == NULL || ck->name == NULL)
		panic("checker without start or name");
	if (ch->n >= SMTP_CHECKERS_MAX)
		return -ENOSPC;
	ch->ck[ch->n++] = *ck;
	ch->stages |= ck->stages;
	return 0;
}

unsigned smtp_check_chain_stages(const struct smtp_check_chain *ch)
{
	return ch ? ch->stages & ~SMTP_CHECK_BIT(SMTP_CHECK_NONE) : 0;
}

struct smtp_check_run *smtp_check_run_new(const struct smtp_check_chain *ch,
		smtp_check_done_fn done, void *done_arg)
{
	struct smtp_check_run *run = calloc(1, sizeof(*run));

	if (!run)
		return NULL;
	run->ch = ch;
	run->done = done;
	run->done_arg = done_arg;
	run->job.run = run;
	buf_init(&run->edits, SMTP_CHECK_EDITS_MAX + SMTP_CHECKERS_MAX * sizeof(struct smtp_edit_rec));
	return run;
}

struct smtp_check_run *smtp_check_run_free(struct smtp_check_run *run)
{
	unsigned i;

	if (!run)
		return NULL;
	for (i = 0; i < run->ch->n; i++)
		if (run->ch->ck[i].end)
			run->ch->ck[i].end(run->ch->ck[i].arg, run->state[i]);
	buf_free(&run->edits);
	free(run);
	return NULL;
}

/* Ask checkers from run->next on until one keeps the job (returns 0) or
 * the stage is decided (returns 1). */
static int smtp_check_run_go(struct smtp_check_run *run)
{
	const struct smtp_check_chain *ch = run->ch;

	while (run->v.kind == SMTP_VERDICT_CONTINUE || run->v.kind == SMTP_VERDICT_ACCEPT) {
		unsigned i = run->next;

		if (i >= ch->n)
			break;
		run->next++;
		if (!(ch->ck[i].stages & SMTP_CHECK_BIT(run->stage)))
			continue;
		run->waiting = 1;
		ch->ck[i].start(ch->ck[i].arg, &run->state[i], run->s, run->stage, &run->job);
		if (run->waiting)
			return 0;
	}
	run->stage = SMTP_CHECK_NONE;
	return 1;
}

int smtp_check_run_start(struct smtp_check_run *run, const struct smtp_session *s,
		enum smtp_check_stage stage)
{
	int r;

	if (run->stage != SMTP_CHECK_NONE || stage == SMTP_CHECK_NONE || stage >= SMTP_CHECK_STAGES)
		panic("stage %s while %s runs", smtp_check_stage_name(stage),
		      smtp_check_stage_name(run->stage));
	/* A new transaction: the last one's edits are gone with it. */
	if (stage == SMTP_CHECK_MAIL || stage == SMTP_CHECK_HELO || stage == SMTP_CHECK_CONNECT)
		buf_reset(&run->edits);
	memset(&run->v, 0, sizeof(run->v));
	run->s = s;
	run->stage = stage;
	run->next = 0;
	run->in_start = 1;
	r = smtp_check_run_go(run);
	run->in_start = 0;
	return r;
}

const struct smtp_verdict *smtp_check_run_verdict(const struct smtp_check_run *run)
{
	return &run->v;
}

const struct buf *smtp_check_run_edits(const struct smtp_check_run *run)
{
	return run->edits.len ? &run->edits : NULL;
}

/* Copy at most room-1 octets of src into dst, NUL-terminated. */
static void smtp_check_copy(char *dst, size_t room, const char *src, size_t n)
{
	if (n > room - 1)
		n = room - 1;
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

void smtp_check_answer(struct smtp_check_job *job, const struct smtp_verdict *v)
{
	struct smtp_check_run *run = job->run;

	if (!run->waiting || run->stage == SMTP_CHECK_NONE)
		panic("answer without a job out (stage %s)", smtp_check_stage_name(run->stage));
	run->waiting = 0;
	run->v.kind = v->kind;
	run->v.reply = NULL;
	run->v.reply_len = 0;
	if (v->reply && v->reply_len) {
		smtp_check_copy(run->reply, sizeof(run->reply), v->reply, v->reply_len);
		run->v.reply = run->reply;
		run->v.reply_len = strlen(run->reply);
	}
	smtp_check_copy(run->who, sizeof(run->who), v->who ? v->who : "", v->who ? strlen(v->who) : 0);
	smtp_check_copy(run->why, sizeof(run->why), v->why ? v->why : "", v->why ? strlen(v->why) : 0);
	run->v.who = run->who;
	run->v.why = v->why ? run->why : NULL;
	if (run->in_start)
		return; /* smtp_check_run_go() goes on */
	if (smtp_check_run_go(run))
		run->done(run->done_arg, &run->v, smtp_check_run_edits(run));
}

int smtp_check_edit(struct smtp_check_job *job, enum smtp_hdr_op op, unsigned index,
		const char *name, size_t name_len, const char *value, size_t value_len)
{
	struct buf *e = &job->run->edits;
	struct smtp_edit_rec rec = { (uint32_t)op, index, (uint32_t)name_len, (uint32_t)value_len };
	size_t was = e->len;
	int r;

	if (name_len > SMTP_CHECK_EDITS_MAX || value_len > SMTP_CHECK_EDITS_MAX ||
	    was + sizeof(rec) + name_len + value_len > SMTP_CHECK_EDITS_MAX)
		return -ENOBUFS;
	r = buf_append(e, &rec, sizeof(rec));
	if (r == 0)
		r = buf_append(e, name, name_len);
	if (r == 0)
		r = buf_append(e, value, value_len);
	if (r != 0) {
		e->len = was;
		return r == -ENOMEM ? -ENOMEM : -ENOBUFS;
	}
	return 0;
}

/* ---- header edits ------------------------------------------------------ */

/* The end of the header block of body[0..n): the offset just after the
 * last header line's CRLF (where an added header goes). */
static size_t smtp_hdr_end(const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		const char *lf;

		if (n - i >= 2 && p[i] == '\r' && p[i + 1] == '\n')
			return i; /* the empty line */
		lf = memchr(p + i, '\n', n - i);
		if (!lf)
			return n;
		i = (size_t)(lf - p) + 1;
	}
	return n;
}

/* Offset of the start of header number k (0-based) in p[0..end), or end. */
static size_t smtp_hdr_nth(const char *p, size_t end, unsigned k)
{
	size_t i = 0;
	unsigned seen = 0;

	while (i < end) {
		const char *lf;

		if (p[i] != ' ' && p[i] != '\t') {
			if (seen == k)
				return i;
			seen++;
		}
		lf = memchr(p + i, '\n', end - i);
		if (!lf)
			return end;
		i = (size_t)(lf - p) + 1;
	}
	return end;
}

/* The index-th (1-based) header called name in p[0..end): its start and
 * length (with continuation lines). 0 when there is none. */
static int smtp_hdr_find(const char *p, size_t end, const char *name, size_t nlen,
		unsigned index, size_t *at, size_t *len)
{
	size_t i = 0;
	unsigned seen = 0;

	while (i < end) {
		const char *lf = memchr(p + i, '\n', end - i);
		size_t next = lf ? (size_t)(lf - p) + 1 : end;
		/* A header on a stored line may begin with a stuffing dot. */
		size_t h = p[i] == '.' && next - i > 1 && p[i + 1] == '.' ? i + 1 : i;

		if (p[i] != ' ' && p[i] != '\t' && end - h > nlen && p[h + nlen] == ':' &&
		    ascii_eq_n(p + h, name, nlen) && ++seen == index) {
			size_t j = next;

			while (j < end && (p[j] == ' ' || p[j] == '\t')) {
				const char *lf2 = memchr(p + j, '\n', end - j);

				j = lf2 ? (size_t)(lf2 - p) + 1 : end;
			}
			*at = i;
			*len = j - i;
			return 1;
		}
		i = next;
	}
	return 0;
}

/* Append "Name: value\r\n" as a stored header: a bare LF in the value
 * becomes CRLF, and a leading '.' is stuffed. */
static int smtp_hdr_put(struct buf *b, const char *name, size_t nlen, const char *v, size_t vlen)
{
	size_t i;
	int r = 0;

	if (nlen && name[0] == '.')
		r = buf_append(b, ".", 1);
	if (r == 0)
		r = buf_append(b, name, nlen);
	if (r == 0)
		r = buf_append(b, ": ", vlen && (v[0] == ' ' || v[0] == '\t') ? 1 : 2);
	for (i = 0; r == 0 && i < vlen; i++) {
		if (v[i] == '\n' && (i == 0 || v[i - 1] != '\r'))
			r = buf_append(b, "\r\n", 2);
		else if (v[i] != '\0')
			r = buf_append(b, v + i, 1);
	}
	if (r == 0)
		r = buf_append(b, "\r\n", 2);
	return r;
}

/* One edit on the header block hb (ending in CRLF, or empty). */
static int smtp_hdr_apply_one(struct buf *hb, struct buf *tmp, const struct smtp_edit_rec *rec,
		const char *name, const char *value)
{
	size_t at = hb->len, len = 0;
	int r;

	buf_reset(tmp);
	switch (rec->op) {
	case SMTP_HDR_ADD:
		break;
	case SMTP_HDR_INSERT:
		at = smtp_hdr_nth(hb->data ? hb->data : "", hb->len, rec->index);
		break;
	case SMTP_HDR_CHANGE:
		if (!smtp_hdr_find(hb->data ? hb->data : "", hb->len, name, rec->name_len,
				   rec->index ? rec->index : 1, &at, &len)) {
			if (rec->value_len == 0)
				return 0; /* deleting what is not there */
			at = hb->len; /* milter: a change of a missing header adds it */
		}
		break;
	default:
		return 0;
	}
	if (!(rec->op == SMTP_HDR_CHANGE && rec->value_len == 0)) {
		r = smtp_hdr_put(tmp, name, rec->name_len, value, rec->value_len);
		if (r)
			return r;
	}
	/* hb = hb[0..at) + tmp + hb[at+len..) */
	r = buf_reserve(hb, tmp->len);
	if (r)
		return r;
	memmove(hb->data + at + tmp->len, hb->data + at + len, hb->len - at - len);
	if (tmp->len)
		memcpy(hb->data + at, tmp->data, tmp->len);
	hb->len = hb->len - len + tmp->len;
	return 0;
}

int smtp_check_apply_edits(struct buf *body, const struct buf *edits)
{
	struct buf hb, tmp;
	size_t end, off = 0;
	int r = 0;

	if (!edits || edits->len == 0)
		return 0;
	end = smtp_hdr_end(body->data ? body->data : "", body->len);
	buf_init(&hb, 0);
	buf_init(&tmp, 0);
	if (end && (r = buf_append(&hb, body->data, end)) != 0)
		goto out;
	while (off + sizeof(struct smtp_edit_rec) <= edits->len) {
		struct smtp_edit_rec rec;
		const char *name;

		memcpy(&rec, edits->data + off, sizeof(rec));
		off += sizeof(rec);
		if (rec.name_len > edits->len - off || rec.value_len > edits->len - off - rec.name_len)
			panic("edit record past the end");
		name = edits->data + off;
		r = smtp_hdr_apply_one(&hb, &tmp, &rec, name, name + rec.name_len);
		if (r)
			goto out;
		off += rec.name_len + rec.value_len;
	}
	/* body = hb + body[end..) */
	if (hb.len > end && body->max && hb.len - end > body->max - body->len) {
		r = -E2BIG;
		goto out;
	}
	if (hb.len > end && (r = buf_reserve(body, hb.len - end)) != 0)
		goto out;
	if (body->len > end)
		memmove(body->data + hb.len, body->data + end, body->len - end);
	if (hb.len)
		memcpy(body->data, hb.data, hb.len);
	body->len = body->len - end + hb.len;
out:
	buf_free(&hb);
	buf_free(&tmp);
	return r;
}
