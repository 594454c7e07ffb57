/* SPDX-License-Identifier: MIT */
/*
 * metrics_http_node: the node-wide gauges of a scrape (metrics_http.h): the
 * top domains by held bytes (names from the domain table's rows, counts
 * from store/domstat.h's atomics), the oldest held message (one short job
 * per engine thread, bounded wait), the Redis state (control.h) and the
 * spool's disk (statvfs). Mail held for a domain no longer in the table is
 * in the shard totals but not among the top domains.
 */
#include "admin/metrics_http.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "admin/control.h"
#include "core/domtab.h"
#include "core/epoch.h"
#include "core/now.h"
#include "core/rendezvous.h"
#include "proto/drain.h"
#include "proto/drain_status.h"
#include "store/domstat.h"
#include "store/spool_index.h"

#define US_PER_S 1000000.0

/* One of the top domains, its name copied out of the table. */
struct node_dom {
	char name[DOMTAB_NAME_MAX + 1];
	uint64_t msgs, bytes;
};

/* 1 when a ranks above b: more bytes, then more messages, then by name. */
static int node_dom_above(const struct node_dom *a, const struct node_dom *b)
{
	if (a->bytes != b->bytes)
		return a->bytes > b->bytes;
	if (a->msgs != b->msgs)
		return a->msgs > b->msgs;
	return strcmp(a->name, b->name) < 0;
}

/* h[0..n) is a heap with the lowest-ranked at the top: sift h[i] down. */
static void node_heap_down(struct node_dom *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, low = i;
		struct node_dom t;

		if (l < n && node_dom_above(&h[low], &h[l]))
			low = l;
		if (r < n && node_dom_above(&h[low], &h[r]))
			low = r;
		if (low == i)
			return;
		t = h[i];
		h[i] = h[low];
		h[low] = t;
		i = low;
	}
}

static void node_heap_up(struct node_dom *h, size_t i)
{
	while (i > 0 && node_dom_above(&h[(i - 1) / 2], &h[i])) {
		struct node_dom t = h[i];

		h[i] = h[(i - 1) / 2];
		h[(i - 1) / 2] = t;
		i = (i - 1) / 2;
	}
}

static int node_dom_cmp(const void *a, const void *b)
{
	return node_dom_above(a, b) ? -1 : node_dom_above(b, a) ? 1 : 0;
}

/* The table's domains with held mail: the top max by held bytes into top
 * (best first); returns how many, *with_mail how many domains hold any.
 * Online in the epoch only for the walk. */
static size_t node_top_domains(const struct metrics_sources *src, struct node_dom *top,
			       size_t max, uint64_t *with_mail)
{
	const struct domtab *t;
	size_t n = 0, count;

	*with_mail = 0;
	if (src->ep)
		epoch_online();
	t = domtab_live_get(src->dt);
	count = domtab_count(t);
	for (size_t i = 0; i < count; i++) {
		const struct domtab_row *row = domtab_row_at(t, i);
		size_t len = strlen(row->name);
		struct node_dom d;

		d.msgs = domstat_msgs(src->ds, row->name, len);
		if (d.msgs == 0)
			continue;
		(*with_mail)++;
		d.bytes = domstat_bytes(src->ds, row->name, len);
		memcpy(d.name, row->name, len + 1);
		if (n < max) {
			top[n] = d;
			node_heap_up(top, n++);
		} else if (max && node_dom_above(&d, &top[0])) {
			top[0] = d;
			node_heap_down(top, n, 0);
		}
	}
	if (src->ep) {
		epoch_quiescent();
		epoch_offline();
	}
	qsort(top, n, sizeof(*top), node_dom_cmp);
	return n;
}

/* A label value in the exposition format: \, " and newline escaped. */
static void node_label(struct buf *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			(void)buf_printf(out, "\\%c", *s);
		else if (*s == '\n')
			(void)buf_puts(out, "\\n");
		else
			(void)buf_append(out, s, 1);
	}
}

static void node_help(struct buf *out, const char *name, const char *help)
{
	(void)buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

/* The two series of the top domains. */
static const struct node_dom_series {
	const char *name;
	const char *help;
	int bytes;                 /* 1: node_dom.bytes, 0: .msgs */
} node_dom_series[] = {
	{ "etrnd_domain_held_messages",
	  "Messages held for a domain, for the metrics_top_domains domains with the most held bytes (a wildcard row counts every name under it).",
	  0 },
	{ "etrnd_domain_held_bytes",
	  "Bytes held for a domain, for the same domains as etrnd_domain_held_messages.", 1 },
};

static int node_domains(const struct config *cfg, const struct metrics_sources *src,
			struct buf *out)
{
	size_t max = cfg->metrics_top_domains, n;
	struct node_dom *top = calloc(max ? max : 1, sizeof(*top));
	uint64_t with_mail;

	if (!top)
		return -ENOMEM;
	n = node_top_domains(src, top, max, &with_mail);
	node_help(out, "etrnd_domains_holding_mail",
		  "Domains of the domain table with held mail.");
	(void)buf_printf(out, "etrnd_domains_holding_mail %" PRIu64 "\n", with_mail);
	for (size_t k = 0; k < sizeof(node_dom_series) / sizeof(node_dom_series[0]); k++) {
		const struct node_dom_series *ser = &node_dom_series[k];

		node_help(out, ser->name, ser->help);
		for (size_t i = 0; i < n; i++) {
			(void)buf_printf(out, "%s{domain=\"", ser->name);
			node_label(out, top[i].name);
			(void)buf_printf(out, "\"} %" PRIu64 "\n",
					 ser->bytes ? top[i].bytes : top[i].msgs);
		}
	}
	free(top);
	return 0;
}

/* ---- the oldest held message: a job per engine thread ---------------------- */

struct node_oldest_req {
	struct rendezvous rv;      /* rv.mu guards the fields below */
	uint64_t oldest_us;        /* arrival (wall clock); 0 = nothing held */
	unsigned answered;
};

struct node_oldest_job {
	struct node_oldest_req *rq;
	struct spool_index *idx;
};

static void node_oldest_put(struct node_oldest_req *rq)
{
	if (rendezvous_put(&rq->rv)) {
		rendezvous_destroy(&rq->rv);
		free(rq);
	}
}

/* On an engine thread: the oldest queue head of its shard. A walk of its
 * queues, no copy: O(domains) once per scrape. */
static void node_oldest_job_run(void *arg)
{
	struct node_oldest_job *j = arg;
	struct node_oldest_req *rq = j->rq;
	const struct spool_index_queue *q;
	uint64_t oldest = 0;
	size_t cursor = 0;

	while ((q = spool_index_queue_each(j->idx, &cursor))) {
		struct spool_index_qstat st;

		spool_index_queue_stat(q, &st);
		if (st.messages && (!oldest || st.oldest_us < oldest))
			oldest = st.oldest_us;
	}
	pthread_mutex_lock(&rq->rv.mu);
	if (oldest && (!rq->oldest_us || oldest < rq->oldest_us))
		rq->oldest_us = oldest;
	rq->answered++;
	rendezvous_end_locked(&rq->rv);
	pthread_mutex_unlock(&rq->rv.mu);
	free(j);
	node_oldest_put(rq);
}

/* Ask every running engine thread. 0 with *oldest_us, or -ETIMEDOUT when
 * none answered in time, -ENOMEM. */
static int node_oldest(struct drain_hub *hub, uint64_t *oldest_us)
{
	unsigned n = drain_hub_shards(hub, NULL, 0), answered;
	struct drain_status_shard *sh = calloc(n ? n : 1, sizeof(*sh));
	struct node_oldest_req *rq = calloc(1, sizeof(*rq));

	if (!sh || !rq) {
		free(sh);
		free(rq);
		return -ENOMEM;
	}
	n = drain_hub_shards(hub, sh, n);
	rendezvous_init(&rq->rv);
	for (unsigned i = 0; i < n; i++) {
		struct node_oldest_job *j = sh[i].loop ? malloc(sizeof(*j)) : NULL;

		if (!j)
			continue;
		*j = (struct node_oldest_job){ rq, sh[i].idx };
		rendezvous_hold(&rq->rv);
		if (loop_post(sh[i].loop, node_oldest_job_run, j)) {
			free(j);
			rendezvous_unhold(&rq->rv);
		}
	}
	free(sh);
	(void)rendezvous_wait(&rq->rv, METRICS_HTTP_OLDEST_WAIT_MS);
	*oldest_us = rq->oldest_us;
	answered = rq->answered;
	pthread_mutex_unlock(&rq->rv.mu);
	node_oldest_put(rq);
	return answered ? 0 : -ETIMEDOUT;
}

/* ---- Redis, disk ------------------------------------------------------------- */

void metrics_http_redis_gauges(const struct config *cfg, struct control *ctl, struct buf *out,
			       uint64_t now_us)
{
	uint64_t last = 0;
	int up;

	if (!ctl || cfg->redis.kind == CONFIG_REDIS_NONE)
		return;
	up = control_redis_state(ctl, &last);
	node_help(out, "etrnd_redis_up", "1 when the control thread is connected to Redis.");
	(void)buf_printf(out, "etrnd_redis_up %d\n", up ? 1 : 0);
	if (!last)
		return;
	node_help(out, "etrnd_redis_last_resync_age_seconds",
		  "Seconds since the domain table was last loaded whole from Redis.");
	(void)buf_printf(out, "etrnd_redis_last_resync_age_seconds %.3f\n",
			 now_us > last ? (double)(now_us - last) / US_PER_S : 0.0);
}

static void node_disk(const struct config *cfg, struct buf *out)
{
	struct statvfs vfs;

	if (statvfs(cfg->spool_dir, &vfs))
		return;
	node_help(out, "etrnd_spool_free_bytes",
		  "Bytes free for etrnd on the spool's file system.");
	(void)buf_printf(out, "etrnd_spool_free_bytes %" PRIu64 "\n",
			 (uint64_t)vfs.f_bavail * vfs.f_frsize);
	node_help(out, "etrnd_spool_size_bytes", "Size of the spool's file system in bytes.");
	(void)buf_printf(out, "etrnd_spool_size_bytes %" PRIu64 "\n",
			 (uint64_t)vfs.f_blocks * vfs.f_frsize);
}

int metrics_http_node_gauges(const struct config *cfg, const struct metrics_sources *src,
			     struct buf *out)
{
	/* Built apart, then appended whole: out never holds half of it. */
	struct buf g;
	uint64_t oldest_us = 0, now_us;
	int rc = -ENOMEM;

	buf_init(&g, 0);
	if (src->ds && src->dt && node_domains(cfg, src, &g))
		goto done;
	if (src->hub && node_oldest(src->hub, &oldest_us) == 0) {
		now_us = now_wall_us();
		node_help(&g, "etrnd_held_oldest_message_age_seconds",
			  "Age of the oldest held message in seconds (0: nothing held).");
		(void)buf_printf(&g, "etrnd_held_oldest_message_age_seconds %.3f\n",
				 oldest_us && now_us > oldest_us ?
				 (double)(now_us - oldest_us) / US_PER_S : 0.0);
	}
	metrics_http_redis_gauges(cfg, src->ctl, &g, now_wall_us());
	node_disk(cfg, &g);
	rc = g.len ? buf_append(out, g.data, g.len) : 0;
done:
	buf_free(&g);
	return rc;
}
