/* SPDX-License-Identifier: MIT */
/*
 * dnsbl: the look-ups of a connecting client (dnsbl.h). A check asks each
 * distinct list name once, in parallel, with dnsbl_timeout as every query's
 * deadline; the resolver answers each query exactly once (a timeout is an
 * answer), on its own thread, where the answer is copied into the check and
 * the last one posts the check back to its loop. The verdict, its log line
 * and its counters are made there, on the engine thread.
 */
#include "proto/dnsbl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/cidr.h"
#include "core/config.h"
#include "core/list.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "core/now.h"
#include "core/resolver.h"
#include "proto/smtp_check.h"
#include "proto/smtp_server.h"

/* A records kept per list answer: lists answer one or a few (Spamhaus
 * ZEN: one per sub-list that lists the address). */
#define DNSBL_ANSWERS_MAX 8
/* The decision's log line: every list with its result. */
#define DNSBL_LOG_MAX 2048
#define DNSBL_CLIENT_MAX 64          /* INET6_ADDRSTRLEN and then some */

struct dnsbl {
	const struct config *cfg;
	struct resolver *r;
	struct loop *l;
	/* Checks whose answers are not all in (or whose post was lost):
	 * the loop does not finish while one is out. */
	struct list checks;
	unsigned outstanding;
};

/* One name asked: written on the resolver thread until the check's
 * "left" count reaches 0, read on the loop thread after the post. */
struct dnsbl_query {
	struct dnsbl_check *k;
	unsigned site;                   /* the first item with this name */
	int err;                         /* resolver_answer.err; 0: answered */
	unsigned n;
	uint8_t a[DNSBL_ANSWERS_MAX][4];
};

struct dnsbl_check {
	struct dnsbl *d;
	struct list_node node;           /* in d->checks */
	dnsbl_done_fn done;
	void *arg;
	int cancelled;
	atomic_uint left;                /* queries whose answer is to come */
	unsigned nq;
	uint64_t start_ms;
	char client[DNSBL_CLIENT_MAX];
	struct dnsbl_query q[DNSBL_SITES_MAX];
};

static int dnsbl_busy(void *arg)
{
	const struct dnsbl *d = arg;

	return d->outstanding > 0;
}

struct dnsbl *dnsbl_new(const struct config *cfg, struct resolver *r, struct loop *l)
{
	struct dnsbl *d = calloc(1, sizeof(*d));
	int rc;

	if (!d)
		return NULL;
	d->cfg = cfg;
	d->r = r;
	d->l = l;
	list_init(&d->checks);
	if (cfg->dnsbl.n && (rc = loop_add_busy_check(l, "dnsbl", dnsbl_busy, d)) != 0) {
		free(d);
		errno = -rc;
		return NULL;
	}
	return d;
}

struct dnsbl *dnsbl_free(struct dnsbl *d)
{
	struct list_node *n;

	if (!d)
		return NULL;
	/* Only checks whose post was lost (out of memory) are left. */
	while ((n = list_pop(&d->checks)) != NULL)
		free(LIST_ENTRY(n, struct dnsbl_check, node));
	free(d);
	return NULL;
}

int dnsbl_enabled(const struct dnsbl *d)
{
	return d && d->cfg->dnsbl.n > 0;
}

static const char *dnsbl_err_name(int err)
{
	switch (err) {
	case 0:
		return "answered";
	case -ENOENT:
		return "not listed";
	case -ENODATA:
		return "not listed (no A record)";
	case -ETIMEDOUT:
		return "timeout";
	case -EAGAIN:
		return "server failure";
	case -ECANCELED:
		return "cancelled";
	default:
		return "error";
	}
}

/* The highest-weight listed item's name for $site. */
static void dnsbl_verdict_site(struct dnsbl_verdict *v, const struct dnsbl_list *l,
			       const int *hit)
{
	int best = 0;

	for (unsigned i = 0; i < l->n; i++)
		if (hit[i] && l->site[i].weight > 0 && (!v->site || l->site[i].weight > best)) {
			v->site = l->site[i].name;
			best = l->site[i].weight;
		}
	if (!v->site)
		v->site = "?";
}

/* Match every item against its name's answer; count, and describe each
 * name's result into line. */
static int dnsbl_score(const struct dnsbl_check *k, const struct dnsbl_list *l, int *hit,
		       struct buf *line)
{
	int score = 0;

	for (unsigned i = 0; i < l->n; i++) {
		const struct dnsbl_query *q = NULL;

		for (unsigned j = 0; j < k->nq; j++)
			if (k->q[j].site == l->site[i].query)
				q = &k->q[j];
		hit[i] = 0;
		if (!q)
			continue;
		/* hit: 1 + the index of the first answer that lists. */
		for (unsigned a = 0; q->err == 0 && a < q->n && !hit[i]; a++)
			if (dnsbl_list_match(&l->site[i], q->a[a]))
				hit[i] = (int)a + 1;
		if (hit[i])
			score += l->site[i].weight;
	}
	for (unsigned j = 0; j < k->nq; j++) {
		const struct dnsbl_query *q = &k->q[j];
		enum metrics_dnsbl_result r = METRICS_DNSBL_UNLISTED;
		int listed = 0;

		for (unsigned i = 0; i < l->n; i++)
			if (hit[i] && l->site[i].query == q->site) {
				const uint8_t *a = q->a[hit[i] - 1];

				(void)buf_printf(line, "%s%s=%u.%u.%u.%u*%d", line->len ? ", " : "",
						 l->site[i].spec, a[0], a[1], a[2], a[3],
						 l->site[i].weight);
				listed = 1;
			}
		if (listed)
			r = METRICS_DNSBL_LISTED;
		else if (q->err == 0 || q->err == -ENOENT || q->err == -ENODATA)
			(void)buf_printf(line, "%s%s: %s", line->len ? ", " : "",
					 l->site[q->site].name,
					 q->err == 0 ? "not listed (answer outside the filter)" :
					 dnsbl_err_name(q->err));
		else {
			r = METRICS_DNSBL_ERROR;
			(void)buf_printf(line, "%s%s: %s, taken as not listed",
					 line->len ? ", " : "", l->site[q->site].name,
					 dnsbl_err_name(q->err));
		}
		metrics_dnsbl(q->site, r);
	}
	return score;
}

/* On the loop thread: every answer is in. */
static void dnsbl_decide(void *arg)
{
	struct dnsbl_check *k = arg;
	struct dnsbl *d = k->d;
	const struct config *cfg = d->cfg;
	struct dnsbl_verdict v;
	int hit[DNSBL_SITES_MAX];
	struct buf line;
	const char *what;

	d->outstanding--;
	list_unlink(&d->checks, &k->node);
	memset(&v, 0, sizeof(v));
	buf_init(&line, DNSBL_LOG_MAX);
	v.score = dnsbl_score(k, &cfg->dnsbl, hit, &line);
	v.listed = v.score >= (int)cfg->dnsbl_threshold;
	v.reject = v.listed && !cfg->dnsbl_log_only;
	if (v.listed) {
		dnsbl_verdict_site(&v, &cfg->dnsbl, hit);
		if (v.reject)
			(void)dnsbl_list_reply(cfg->dnsbl_reply, k->client, v.site, v.reply,
					       sizeof(v.reply));
	}
	what = v.reject ? "rejected" : v.listed ? "listed, logged only (dnsbl_action = log)" :
	       "passed";
	metrics_add(v.reject ? METRIC_DNSBL_REJECTED : v.listed ? METRIC_DNSBL_LOGGED :
		    METRIC_DNSBL_PASSED, 1);
	log_info("dnsbl: client [%s]: %.*s; score %d, threshold %u: %s%s (%llu ms)%s", k->client,
		 (int)line.len, line.data ? line.data : "", v.score, cfg->dnsbl_threshold, what,
		 k->cancelled ? ", client gone" : "",
		 (unsigned long long)(now_mono_ms() - k->start_ms),
		 line.len >= DNSBL_LOG_MAX - 1 ? " [cut]" : "");
	buf_free(&line);
	if (!k->cancelled)
		k->done(k->arg, &v);
	free(k);
}

/* On the resolver's thread: keep the A records; the last answer posts the
 * check to its loop. */
static void dnsbl_answered(void *cookie, const struct resolver_answer *ans)
{
	struct dnsbl_query *q = cookie;
	struct dnsbl_check *k = q->k;
	int rc;

	q->err = ans->err;
	q->n = 0;
	for (unsigned i = 0; ans->err == 0 && i < ans->n && q->n < DNSBL_ANSWERS_MAX; i++)
		if (ans->rr[i].type == RESOLVER_T_A && ans->rr[i].len == 4)
			memcpy(q->a[q->n++], ans->rr[i].data, 4);
	if (ans->err == 0 && q->n == 0)
		q->err = -ENODATA;
	/* acq_rel: the loop thread that runs the post sees every query. */
	if (atomic_fetch_sub_explicit(&k->left, 1, memory_order_acq_rel) != 1)
		return;
	rc = loop_post(k->d->l, dnsbl_decide, k);
	if (rc)
		/* The check stays in d->checks (freed by dnsbl_free()); the
		 * session waits out its idle timeout. */
		log_warn("dnsbl: client [%s]: cannot hand the answers to the engine thread: %s",
			 k->client, strerror(-rc));
}

/* Whom no list is asked about, and why (NULL: ask). */
static const char *dnsbl_skip(const struct dnsbl *d, const char *client, int trusted)
{
	if (trusted)
		return "mynetworks";
	if (d->cfg->dnsbl_skip_loopback && cidr_peer_loopback(client))
		return "loopback (dnsbl_skip_loopback)";
	if (!d->r)
		return "no resolver";
	return NULL;
}

struct dnsbl_check *dnsbl_start(struct dnsbl *d, const char *client, int trusted,
				dnsbl_done_fn done, void *arg)
{
	const struct dnsbl_list *l = &d->cfg->dnsbl;
	char name[DNSBL_QUERY_MAX];
	struct dnsbl_check *k;
	const char *skip;
	unsigned asked = 0;
	int rc;

	if (!dnsbl_enabled(d))
		return NULL;
	skip = dnsbl_skip(d, client, trusted);
	if (skip) {
		log_debug("dnsbl: client [%s]: not looked up: %s", client, skip);
		metrics_add(METRIC_DNSBL_SKIPPED, 1);
		return NULL;
	}
	k = calloc(1, sizeof(*k));
	if (!k) {
		log_warn("dnsbl: client [%s]: not looked up: out of memory", client);
		return NULL;
	}
	k->d = d;
	k->done = done;
	k->arg = arg;
	k->start_ms = now_mono_ms();
	snprintf(k->client, sizeof(k->client), "%s", client);
	for (unsigned i = 0; i < l->n; i++)
		if (l->site[i].query == i) {
			k->q[k->nq].k = k;
			k->q[k->nq].site = i;
			k->nq++;
		}
	/* One more than the queries: the answers cannot finish the check
	 * while queries are still being submitted. */
	atomic_init(&k->left, k->nq + 1);
	list_append(&d->checks, &k->node);
	d->outstanding++;
	for (unsigned j = 0; j < k->nq; j++) {
		struct dnsbl_query *q = &k->q[j];

		rc = dnsbl_list_query(client, l->site[q->site].name, name, sizeof(name));
		if (rc == 0)
			rc = resolver_query(d->r, name, RESOLVER_T_A, d->cfg->dnsbl_timeout_ms,
					    dnsbl_answered, q);
		if (rc == 0) {
			asked++;
			continue;
		}
		/* Not asked (not an address, the resolver full): fail open. */
		q->err = rc == -1 ? -EINVAL : rc;
		atomic_fetch_sub_explicit(&k->left, 1, memory_order_acq_rel);
	}
	if (asked == 0) {
		log_warn("dnsbl: client [%s]: not looked up: %s", client,
			 k->q[0].err == -EINVAL ? "not an IP address" : strerror(-k->q[0].err));
		d->outstanding--;
		list_unlink(&d->checks, &k->node);
		free(k);
		return NULL;
	}
	/* Every answer already in: still later, from the loop, so that done
	 * never runs before the caller holds the handle. */
	if (atomic_fetch_sub_explicit(&k->left, 1, memory_order_acq_rel) == 1 &&
	    (rc = loop_post(d->l, dnsbl_decide, k)) != 0)
		log_warn("dnsbl: client [%s]: cannot queue the answers: %s", client,
			 strerror(-rc));
	return k;
}

void dnsbl_cancel(struct dnsbl_check *k)
{
	if (k)
		k->cancelled = 1;
}

/* ---- the CONNECT-stage checker (proto/smtp_check.h) -------------------- */

/* A session's slot: the check out for it, and the job to answer. */
struct dnsbl_session {
	struct dnsbl_check *k;           /* NULL once answered */
	struct smtp_check_job *job;
};

static void dnsbl_checker_done(void *arg, const struct dnsbl_verdict *v)
{
	struct dnsbl_session *ss = arg;
	struct smtp_verdict sv = { .kind = SMTP_VERDICT_CONTINUE, .who = "dnsbl" };
	char why[DNSBL_SITE_NAME_MAX + 48];

	ss->k = NULL;
	if (v->reject) {
		/* dnsbl_reply is 554 5.7.N or 421 4.7.N (dnsbl_list.h). */
		sv.kind = v->reply[0] == '4' ? SMTP_VERDICT_TEMPFAIL : SMTP_VERDICT_REJECT;
		sv.reply = v->reply;
		sv.reply_len = strlen(v->reply);
		snprintf(why, sizeof(why), "listed by %s, score %d", v->site, v->score);
		sv.why = why;
	}
	smtp_check_answer(ss->job, &sv);
}

static void dnsbl_checker_start(void *arg, void **state, const struct smtp_session *s,
				enum smtp_check_stage stage, struct smtp_check_job *job)
{
	static const struct smtp_verdict cont = { .kind = SMTP_VERDICT_CONTINUE, .who = "dnsbl" };
	struct dnsbl *d = arg;
	struct dnsbl_session *ss = *state;

	if (stage != SMTP_CHECK_CONNECT) {
		smtp_check_answer(job, &cont);
		return;
	}
	if (!ss && !(ss = *state = calloc(1, sizeof(*ss)))) {
		log_warn("dnsbl: client [%s]: not looked up: out of memory", smtp_server_client(s));
		smtp_check_answer(job, &cont);
		return;
	}
	ss->job = job;
	/* At connect the relay right is mynetworks' alone (no AUTH yet). */
	ss->k = dnsbl_start(d, smtp_server_client(s), smtp_server_may_relay(s),
			    dnsbl_checker_done, ss);
	if (!ss->k)
		smtp_check_answer(job, &cont);
}

static void dnsbl_checker_end(void *arg, void *state)
{
	struct dnsbl_session *ss = state;

	(void)arg;
	if (!ss)
		return;
	dnsbl_cancel(ss->k);
	free(ss);
}

void dnsbl_checker(struct dnsbl *d, struct smtp_checker *ck)
{
	memset(ck, 0, sizeof(*ck));
	ck->name = "dnsbl";
	ck->stages = SMTP_CHECK_BIT(SMTP_CHECK_CONNECT);
	ck->start = dnsbl_checker_start;
	ck->end = dnsbl_checker_end;
	ck->arg = d;
}
