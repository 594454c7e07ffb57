/* SPDX-License-Identifier: MIT */
/*
 * drain_status: see drain_status.h. The asker and the jobs meet at a
 * reference-counted rendezvous (core/rendezvous.h), so a thread that answers
 * after the asker gave up still writes into live memory.
 */
#include "proto/drain_status.h"
#include "proto/drain_atrn.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ascii.h"
#include "core/rendezvous.h"
#include "proto/drain.h"
#include "proto/drain_resolve.h"
#include "proto/sched.h"

struct status_dom {
	char dom[DRAIN_DOMAIN_MAX];
	uint64_t msgs, rcpts, bytes, oldest_us;
};

struct status_req {
	struct rendezvous rv;          /* rv.mu guards what the jobs hand over */
	struct spool_index_totals *tot; /* per thread */
	struct status_dom **doms;      /* per thread */
	size_t *ndoms;
	struct drain_status_held **held; /* per thread: TLS hold reasons */
	size_t *nheld;
	struct status_defer *defer;    /* per thread: its scheduler's queue */
	unsigned n;
};

/* One thread's deferred queue (drain_deferred_copy()), with its clock. */
struct status_defer {
	struct sched_status_dest *v;
	size_t n;
	uint64_t now_us;
};

struct status_job {
	struct status_req *rq;
	struct spool_index *idx;
	struct drain *drain;
	unsigned i;
};

static void status_put(struct status_req *rq)
{
	if (!rendezvous_put(&rq->rv))
		return;
	for (unsigned i = 0; i < rq->n; i++) {
		free(rq->doms[i]);
		free(rq->held[i]);
		free(rq->defer[i].v);
	}
	free(rq->defer);
	free(rq->doms);
	free(rq->ndoms);
	free(rq->held);
	free(rq->nheld);
	free(rq->tot);
	rendezvous_destroy(&rq->rv);
	free(rq);
}

static struct status_req *status_req_new(unsigned n)
{
	struct status_req *rq = calloc(1, sizeof(*rq));

	if (!rq || !(rq->tot = calloc(n, sizeof(*rq->tot))) ||
	    !(rq->doms = calloc(n, sizeof(*rq->doms))) ||
	    !(rq->ndoms = calloc(n, sizeof(*rq->ndoms))) ||
	    !(rq->held = calloc(n, sizeof(*rq->held))) ||
	    !(rq->nheld = calloc(n, sizeof(*rq->nheld))) ||
	    !(rq->defer = calloc(n, sizeof(*rq->defer)))) {
		if (rq) {
			free(rq->tot);
			free(rq->doms);
			free(rq->ndoms);
			free(rq->held);
			free(rq->nheld);
			free(rq);
		}
		return NULL;
	}
	rendezvous_init(&rq->rv);
	rq->n = n;
	return rq;
}

/* On an engine thread: its scheduler's deferred queue (none without a
 * drainer or a scheduler; at most DRAIN_STATUS_DOMAINS_MAX of it). */
static void status_defer_take(struct drain *d, struct status_defer *out)
{
	size_t n;

	memset(out, 0, sizeof(*out));
	if (!d)
		return;
	n = drain_deferred_copy(d, NULL, 0, &out->now_us);
	if (n > DRAIN_STATUS_DOMAINS_MAX)
		n = DRAIN_STATUS_DOMAINS_MAX;
	if (!n || !(out->v = calloc(n, sizeof(*out->v))))
		return;
	out->n = drain_deferred_copy(d, out->v, n, &out->now_us);
	if (out->n > n)
		out->n = n;
}

/* On an engine thread: this shard's totals and queues. */
static void status_job_run(void *arg)
{
	struct status_job *sj = arg;
	struct status_req *rq = sj->rq;
	struct spool_index *idx = sj->idx;
	const struct spool_index_queue *q;
	struct spool_index_totals t;
	struct status_dom *v;
	struct drain_status_held *held = NULL;
	struct status_defer defer;
	size_t cursor = 0, n = 0, nheld = sj->drain ? drain_held_copy(sj->drain, NULL, 0) : 0;

	if (nheld && (held = calloc(nheld, sizeof(*held))))
		nheld = drain_held_copy(sj->drain, held, nheld);
	else
		nheld = 0;
	status_defer_take(sj->drain, &defer);
	spool_index_totals(idx, &t);
	v = calloc(t.domains < DRAIN_STATUS_DOMAINS_MAX ? t.domains + 1 : DRAIN_STATUS_DOMAINS_MAX,
		   sizeof(*v));
	while (v && n < DRAIN_STATUS_DOMAINS_MAX && n < t.domains &&
	       (q = spool_index_queue_each(idx, &cursor))) {
		struct spool_index_qstat st;

		spool_index_queue_stat(q, &st);
		snprintf(v[n].dom, sizeof(v[n].dom), "%.*s", (int)st.domain_len, st.domain);
		v[n].msgs = st.messages;
		v[n].rcpts = st.recipients;
		v[n].bytes = st.bytes;
		v[n].oldest_us = st.oldest_us;
		n++;
	}
	pthread_mutex_lock(&rq->rv.mu);
	rq->tot[sj->i] = t;
	rq->doms[sj->i] = v;
	rq->ndoms[sj->i] = n;
	rq->held[sj->i] = held;
	rq->nheld[sj->i] = nheld;
	rq->defer[sj->i] = defer;
	rendezvous_end_locked(&rq->rv);
	pthread_mutex_unlock(&rq->rv.mu);
	free(sj);
	status_put(rq);
}

/* Post a job to every running shard; each holds a reference. */
static void status_post_all(struct status_req *rq, const struct drain_status_shard *shards)
{
	for (unsigned i = 0; i < rq->n; i++) {
		struct status_job *sj = shards[i].loop ? malloc(sizeof(*sj)) : NULL;

		if (!sj)
			continue;
		sj->rq = rq;
		sj->idx = shards[i].idx;
		sj->drain = shards[i].drain;
		sj->i = i;
		rendezvous_hold(&rq->rv);
		if (loop_post(shards[i].loop, status_job_run, sj)) {
			free(sj);
			rendezvous_unhold(&rq->rv);
		}
	}
}

/* Append s as a JSON string (quoted; control bytes, '"' and '\\' escaped). */
void drain_status_json_str(struct buf *out, const char *s, size_t n)
{
	(void)buf_puts(out, "\"");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == '"' || c == '\\' || c >= 0x7f)
			(void)buf_printf(out, "\\u%04x", c);
		else
			(void)buf_append(out, &s[i], 1);
	}
	(void)buf_puts(out, "\"");
}

/* One shard's totals: a text line, or a JSON object (comma first unless
 * it is the first). */
static void status_shard_line(struct buf *out, unsigned i, const struct spool_index_totals *t,
			      int answered, int json)
{
	if (json && !answered) {
		(void)buf_printf(out, "%s{\"shard\":%u,\"answered\":false}", i ? "," : "", i);
		return;
	}
	if (!answered) {
		(void)buf_printf(out, "shard %u: no answer\n", i);
		return;
	}
	(void)buf_printf(out, json ? "%s{\"shard\":%u,\"answered\":true,\"messages\":%" PRIu64
			 ",\"recipients\":%" PRIu64 ",\"domains\":%" PRIu64 ",\"segments\":%"
			 PRIu64 ",\"bytes\":%" PRIu64 ",\"live_bytes\":%" PRIu64 ",\"delivered\":%"
			 PRIu64 ",\"bounced\":%" PRIu64 ",\"expired\":%" PRIu64 "}"
			 : "%sshard %u: messages %" PRIu64 ", recipients %" PRIu64
			 ", domains %" PRIu64 ", segments %" PRIu64 ", bytes %" PRIu64
			 " (live %" PRIu64 "), delivered %" PRIu64 ", bounced %" PRIu64
			 ", expired %" PRIu64 "\n", json && i ? "," : "", i, t->messages,
			 t->recipients, t->domains, t->segments, t->total_bytes, t->live_bytes,
			 t->delivered, t->bounced, t->expired);
}

/* The hold reasons of every thread that answered, copied out of rq. */
struct status_held {
	struct drain_status_held *v;
	size_t n;
};

/* With rq->rv.mu held: every answered thread's hold reasons into one array
 * (h->v NULL when none or out of memory: the lines then lack them). */
static void status_held_merge(struct status_req *rq, struct status_held *h)
{
	size_t total = 0;

	for (unsigned i = 0; i < rq->n; i++)
		total += rq->held[i] ? rq->nheld[i] : 0;
	h->n = 0;
	h->v = total ? calloc(total, sizeof(*h->v)) : NULL;
	for (unsigned i = 0; h->v && i < rq->n; i++)
		for (size_t j = 0; rq->held[i] && j < rq->nheld[i]; j++)
			h->v[h->n++] = rq->held[i][j];
}

/* Why dom is held (the first thread's reason), or NULL. */
static const char *status_held_why(const struct status_held *h, const char *dom)
{
	size_t len = strlen(dom);

	for (size_t i = 0; i < h->n; i++)
		if (strlen(h->v[i].dom) == len && ascii_eq_n(h->v[i].dom, dom, len))
			return h->v[i].why;
	return NULL;
}

/* With rq->rv.mu held: a line (or JSON object) per shard; the domains of all,
 * in one array (*all, *nall; NULL when none or out of memory). */
static void status_shards(struct status_req *rq, struct buf *out, int json,
			  struct status_dom **all, size_t *nall)
{
	size_t total = 0, k = 0;

	for (unsigned i = 0; i < rq->n; i++) {
		int answered = rq->doms[i] || rq->tot[i].segments;

		status_shard_line(out, i, &rq->tot[i], answered, json);
		if (answered)
			total += rq->ndoms[i];
	}
	*all = total ? calloc(total, sizeof(**all)) : NULL;
	for (unsigned i = 0; *all && i < rq->n; i++)
		for (size_t j = 0; j < rq->ndoms[i]; j++)
			(*all)[k++] = rq->doms[i][j];
	*nall = *all ? k : 0;
}

static int status_cmp(const void *a, const void *b)
{
	const struct status_dom *x = a, *y = b;

	return strcmp(x->dom, y->dom);
}

/* Merge each domain's shards: one line (or JSON object) per domain,
 * node-wide. */
static void status_domains(struct status_dom *all, size_t k, const struct status_held *h,
			   int json, struct buf *out)
{
	struct timespec ts;
	uint64_t now;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	qsort(all, k, sizeof(*all), status_cmp);
	for (size_t i = 0; i < k;) {
		struct status_dom s = all[i];
		size_t j = i + 1;
		const char *held;

		for (; j < k && !strcmp(all[j].dom, s.dom); j++) {
			s.msgs += all[j].msgs;
			s.rcpts += all[j].rcpts;
			s.bytes += all[j].bytes;
			if (all[j].oldest_us < s.oldest_us)
				s.oldest_us = all[j].oldest_us;
		}
		if (json) {
			(void)buf_puts(out, i ? ",{\"domain\":" : "{\"domain\":");
			drain_status_json_str(out, s.dom, strlen(s.dom));
		}
		(void)buf_printf(out, json ? "%s,\"messages\":%" PRIu64 ",\"recipients\":%" PRIu64
				 ",\"bytes\":%" PRIu64 ",\"oldest_s\":%" PRIu64
				 : "domain %s: messages %" PRIu64 ", recipients %" PRIu64
				 ", bytes %" PRIu64 ", oldest %" PRIu64 " s", json ? "" : s.dom,
				 s.msgs, s.rcpts, s.bytes,
				 now > s.oldest_us ? (now - s.oldest_us) / 1000000 : 0);
		held = status_held_why(h, s.dom);
		if (held && json) {
			(void)buf_puts(out, ",\"held\":");
			drain_status_json_str(out, held, strlen(held));
		} else if (held) {
			(void)buf_printf(out, ", held: %s", held);
		}
		(void)buf_puts(out, json ? "}" : "\n");
		i = j;
	}
}

/* With rq->rv.mu held: every answered thread's deferred rows in one array
 * (*all; NULL when none or out of memory), their times made relative to
 * their thread's clock: oldest_us the age, next_us the wait (0: due now or
 * in flight). */
static size_t status_defer_merge(struct status_req *rq, struct sched_status_dest **all)
{
	size_t total = 0, k = 0;

	for (unsigned i = 0; i < rq->n; i++)
		total += rq->defer[i].n;
	*all = total ? calloc(total, sizeof(**all)) : NULL;
	for (unsigned i = 0; *all && i < rq->n; i++) {
		uint64_t now = rq->defer[i].now_us;

		for (size_t j = 0; j < rq->defer[i].n; j++) {
			struct sched_status_dest *e = &(*all)[k++];

			*e = rq->defer[i].v[j];
			e->oldest_us = now > e->oldest_us ? now - e->oldest_us : 0;
			e->next_us = e->next_us > now ? e->next_us - now : 0;
		}
	}
	return *all ? k : 0;
}

static int status_defer_cmp(const void *a, const void *b)
{
	const struct sched_status_dest *x = a, *y = b;

	return strcmp(x->dom, y->dom);
}

/* One line (or JSON object, comma first unless first) of a deferred domain. */
static void status_defer_line(const struct sched_status_dest *e, int first, int json,
			      struct buf *out)
{
	if (json) {
		(void)buf_puts(out, first ? "{\"domain\":" : ",{\"domain\":");
		drain_status_json_str(out, e->dom, strlen(e->dom));
		(void)buf_printf(out, ",\"messages\":%" PRIu64 ",\"oldest\":%" PRIu64
				 ",\"next_attempt\":%" PRIu64 ",\"deferrals\":%" PRIu64
				 ",\"relay\":", e->msgs, e->oldest_us / 1000000u,
				 e->next_us / 1000000u, e->deferrals);
		drain_status_json_str(out, e->relay, strlen(e->relay));
		(void)buf_puts(out, ",\"last_error\":");
		drain_status_json_str(out, e->why, strlen(e->why));
		(void)buf_puts(out, "}");
		return;
	}
	(void)buf_printf(out, "deferred %s: messages %" PRIu64 ", oldest %" PRIu64 " s, ", e->dom,
			 e->msgs, e->oldest_us / 1000000u);
	if (e->next_us)
		(void)buf_printf(out, "next attempt in %" PRIu64 " s", e->next_us / 1000000u);
	else
		(void)buf_puts(out, "next attempt now");
	(void)buf_printf(out, ", deferrals %" PRIu64 ", relay %s, last error: %s\n", e->deferrals,
			 e->relay[0] ? e->relay : "none", e->why[0] ? e->why : "none");
}

/* The deferred queue node-wide, one line (or JSON object) per domain: its
 * threads' messages and deferrals added, the oldest and the soonest next
 * attempt, the first relay and error found. all is sorted here. */
static void status_deferred(struct sched_status_dest *all, size_t k, int json, struct buf *out)
{
	qsort(all, k, sizeof(*all), status_defer_cmp);
	for (size_t i = 0; i < k;) {
		struct sched_status_dest e = all[i];
		size_t j = i + 1;

		for (; j < k && !strcmp(all[j].dom, e.dom); j++) {
			e.msgs += all[j].msgs;
			e.deferrals += all[j].deferrals;
			if (all[j].oldest_us > e.oldest_us)
				e.oldest_us = all[j].oldest_us;
			if (all[j].next_us < e.next_us)
				e.next_us = all[j].next_us;
			if (!e.relay[0])
				memcpy(e.relay, all[j].relay, sizeof(e.relay));
			if (!e.why[0])
				memcpy(e.why, all[j].why, sizeof(e.why));
		}
		status_defer_line(&e, i == 0, json, out);
		i = j;
	}
}

static void status_collect(const struct drain_status_shard *shards, unsigned n,
			   struct drain_atrn_reg *atrn, int json, struct buf *out)
{
	struct status_req *rq = status_req_new(n);
	struct status_dom *all = NULL;
	struct sched_status_dest *defer = NULL;
	struct status_held held;
	size_t nall = 0, ndefer;
	int timed_out;

	if (!rq) {
		(void)buf_puts(out, json ? "{\"error\":\"out of memory\"}\n" : "error: out of memory\n");
		return;
	}
	status_post_all(rq, shards);
	timed_out = rendezvous_wait(&rq->rv, DRAIN_STATUS_WAIT_MS);
	if (json)
		(void)buf_puts(out, "{\"shards\":[");
	status_shards(rq, out, json, &all, &nall);
	status_held_merge(rq, &held);
	ndefer = status_defer_merge(rq, &defer);
	pthread_mutex_unlock(&rq->rv.mu);
	status_put(rq);
	if (json)
		(void)buf_puts(out, "],\"domains\":[");
	if (all) {
		status_domains(all, nall, &held, json, out);
		free(all);
	}
	free(held.v);
	if (json)
		(void)buf_puts(out, "],\"deferred\":[");
	if (defer) {
		status_deferred(defer, ndefer, json, out);
		free(defer);
	}
	if (json)
		(void)buf_puts(out, "],\"atrn\":");
	if (json && !atrn)
		(void)buf_puts(out, "[]");
	if (atrn)
		drain_atrn_status(atrn, out, json);
	if (json)
		(void)buf_printf(out, ",\"complete\":%s}\n", timed_out ? "false" : "true");
	else if (timed_out)
		(void)buf_puts(out, "warning: some engine threads did not answer in time\n");
}

void drain_status_collect(const struct drain_status_shard *shards, unsigned n,
			  struct buf *out)
{
	status_collect(shards, n, NULL, 0, out);
}

void drain_status_collect_json(const struct drain_status_shard *shards, unsigned n,
			       struct buf *out)
{
	status_collect(shards, n, NULL, 1, out);
}

void drain_status_collect_atrn(const struct drain_status_shard *shards, unsigned n,
			       struct drain_atrn_reg *atrn, int json, struct buf *out)
{
	status_collect(shards, n, atrn, json, out);
}
