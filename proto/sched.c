/* SPDX-License-Identifier: MIT */
/*
 * sched: see sched.h. The scheduler knows the scheduled domains with mail in
 * its shard (struct sched_dom, at most SCHED_DOMAINS_MAX, in a hash index)
 * and keeps those that may have due mail on a ready list; the index's add
 * hook readies a domain as its mail arrives, a deferral sets a wake time.
 * Each turn starts jobs for ready domains (struct sched_job, one logged
 * state transition each: ROUTING -> DELIVERING -> DONE, or -> BOUNCING on a
 * permanent routing failure), at most SCHED_JOBS_PER_DOMAIN per domain, each
 * with at most SCHED_BATCH_MAX due entries, which stay marked busy in the
 * index while the job has them. Jobs in ROUTING belong to the resolver's
 * thread: they are on no list of ours, and their answer comes back through
 * the drain hub's guarded post (drain_hub_post), so a look-up answered after
 * shutdown frees its job there and never touches a freed scheduler.
 */
#include "proto/sched.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ascii.h"
#include "core/hash.h"
#include "core/htab.h"
#include "core/list.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/now.h"
#include "proto/drain_atrn.h"
#include "proto/route.h"
#include "proto/sched_job.h"
#include "store/spool_index.h"

/* How often a changed domain table (a hold -> deliver switch) may make the
 * scheduler walk every queue; and how often it walks them anyway, which
 * finds domains forgotten when SCHED_DOMAINS_MAX was reached. */
#define SCHED_RESCAN_MIN_US (1ull * 1000000)
#define SCHED_RESCAN_US (60ull * 1000000)
/* How often the deferred-queue gauge is recounted (O(domains)). */
#define SCHED_METRICS_US (1ull * 1000000)

static int dom_eq(const void *ctx, uint32_t el, const void *key);

/* ---- the clock and the pure rules ------------------------------------- */

uint64_t sched_now_us(const struct sched *s)
{
	return now_shifted_us((int64_t)s->cfg->clock_offset_ms * 1000);
}

uint64_t sched_next_attempt(uint64_t now_us, uint64_t arrival_us, uint64_t min_us,
			    uint64_t max_us)
{
	uint64_t gap = now_us > arrival_us ? now_us - arrival_us : 0;

	/* Postfix's qmgr: the gap is the message's age, so successive gaps
	 * double, bounded below and above. */
	if (gap < min_us)
		gap = min_us;
	if (gap > max_us)
		gap = max_us;
	return now_us + gap;
}

uint64_t sched_restart_slot(uint64_t start_us, uint64_t spread_us, uint64_t rank, uint64_t n)
{
	if (n == 0)
		return start_us;
	if (rank >= n)
		rank = n - 1;
	/* spread * rank / n without the product overflowing. */
	return start_us + spread_us / n * rank + spread_us % n * rank / n;
}

/* ---- classification ------------------------------------------------------ */

/* 1 when dom's mail is the scheduler's: not the node's own name, not in
 * relay_domains, and its row says mode deliver, or it has no row while the
 * table is fresh (Redis away: a domain without a row may be a customer we
 * have not heard of, whose mail must stay held). t: this turn's. Per new
 * message of a held domain: one table look-up, the common case first. */
int sched_scheduled(const struct sched *s, const struct domtab *t, const char *dom,
		    size_t len)
{
	const struct config *cfg = s->cfg;
	const struct domtab_row *row;

	if (len == 0) /* a recipient without a domain: nowhere to send it */
		return 0;
	row = domtab_find(t, dom, len);
	if (row ? row->mode != DOMTAB_MODE_DELIVER : domtab_live_stale(s->dt))
		return 0;
	if (strlen(cfg->hostname) == len && ascii_eq_n(cfg->hostname, dom, len))
		return 0;
	for (size_t i = 0; i < cfg->nrelay_domains; i++)
		if (strlen(cfg->relay_domains[i]) == len &&
		    ascii_eq_n(cfg->relay_domains[i], dom, len))
			return 0;
	return 1;
}

/* ---- domains ------------------------------------------------------------ */

struct dom_key {
	const char *dom;
	size_t len;
};

static int dom_eq(const void *ctx, uint32_t el, const void *key)
{
	const struct sched *s = ctx;
	const struct dom_key *k = key;
	const struct sched_dom *sd = s->doms[el];

	return sd->len == k->len && ascii_eq_n(sd->dom, k->dom, k->len);
}

static uint32_t dom_hash(const char *dom, size_t len)
{
	return hash_fin32(hash_fnv32_lower(HASH_FNV32_INIT, dom, len));
}

struct sched_dom *sched_dom_find(struct sched *s, const char *dom, size_t len)
{
	struct dom_key k = { dom, len };
	uint32_t el = htab_find(&s->byname, dom_hash(dom, len), dom_eq, s, &k);

	return el == HTAB_NONE ? NULL : s->doms[el];
}

static void dom_ready(struct sched *s, struct sched_dom *sd)
{
	if (sd->ready)
		return;
	sd->ready = 1;
	s->nready++;
	list_append(&s->ready, &sd->ready_node);
}

/* Ready sd for any reason but new mail: its queue is walked when served. */
void sched_ready(struct sched *s, struct sched_dom *sd)
{
	sd->fresh = SCHED_BATCH_MIN;
	dom_ready(s, sd);
}

static void dom_unready(struct sched *s, struct sched_dom *sd)
{
	if (!sd->ready)
		return;
	sd->ready = 0;
	s->nready--;
	list_unlink(&s->ready, &sd->ready_node);
}

/* Forget sd (no job may have it). */
static void dom_forget(struct sched *s, struct sched_dom *sd)
{
	uint32_t el = sd->el, last = s->ndoms - 1;

	dom_unready(s, sd);
	htab_remove(&s->byname, sd->hash, el);
	if (el != last) {
		s->doms[el] = s->doms[last];
		s->doms[el]->el = el;
		htab_renumber(&s->byname, s->doms[el]->hash, last, el);
	}
	s->ndoms--;
	free(sd);
}

/* With SCHED_DOMAINS_MAX known, the one without a job touched longest ago
 * goes (its mail is found again by the next full walk). O(domains), only
 * when full. 0, or -EBUSY when every domain has a job. */
static int dom_evict(struct sched *s)
{
	struct sched_dom *old = NULL;

	for (uint32_t i = 0; i < s->ndoms; i++) {
		struct sched_dom *sd = s->doms[i];

		if (sd->jobs == 0 && (!old || sd->touched_us < old->touched_us))
			old = sd;
	}
	if (!old)
		return -EBUSY;
	log_debug("sched (shard %u): forgets %s for now (%u domains known)", s->index,
		  old->dom, s->ndoms);
	dom_forget(s, old);
	return 0;
}

/* dom's record, made when new. NULL when out of memory or full of busy
 * domains (the next full walk tries again). */
struct sched_dom *sched_dom_get(struct sched *s, const char *dom, size_t len)
{
	struct sched_dom *sd = sched_dom_find(s, dom, len);

	if (sd)
		return sd;
	if (len >= sizeof(sd->dom))
		return NULL;
	if (s->ndoms >= SCHED_DOMAINS_MAX && dom_evict(s))
		return NULL;
	sd = calloc(1, sizeof(*sd));
	if (!sd)
		return NULL;
	ascii_lower_copy(sd->dom, dom, len);
	sd->dom[len] = '\0';
	sd->len = len;
	sd->hash = dom_hash(dom, len);
	sd->el = s->ndoms;
	if (htab_insert(&s->byname, sd->hash, sd->el)) {
		free(sd);
		return NULL;
	}
	s->doms[s->ndoms++] = sd;
	return sd;
}

/* ---- noticing mail ------------------------------------------------------- */

/* The index's add hook: a new message has recipients in dom. O(1) for a
 * domain already known; a held domain costs one table look-up. */
static void sched_added(void *arg, uint64_t msgid, const char *dom, size_t len)
{
	struct sched *s = arg;
	struct sched_dom *sd = sched_dom_find(s, dom, len);

	(void)msgid;
	if (!sd) {
		if (!sched_scheduled(s, domtab_live_get(s->dt), dom, len))
			return;
		sd = sched_dom_get(s, dom, len);
		if (!sd)
			return; /* found again by the next full walk */
	}
	/* Counted, so that a domain with a job in flight is walked only once
	 * enough new mail for another job may be there (dom_serve()). */
	if (sd->fresh < SCHED_BATCH_MIN)
		sd->fresh++;
	dom_ready(s, sd);
}

/* Walk every queue: each scheduled one is readied (its due entries, if
 * any, are found when it is served). O(domains). */
static void sched_rescan(struct sched *s, const struct domtab *t, uint64_t now)
{
	const struct spool_index_queue *q;
	size_t cursor = 0;

	while ((q = spool_index_queue_each(s->idx, &cursor))) {
		struct spool_index_qstat st;
		struct sched_dom *sd;

		spool_index_queue_stat(q, &st);
		if (!sched_scheduled(s, t, st.domain, st.domain_len))
			continue;
		sd = sched_dom_get(s, st.domain, st.domain_len);
		if (sd)
			sched_ready(s, sd);
	}
	s->rescan_us = now;
}

/* Ready the domains whose earliest deferred entry fell due; the next wake
 * is the earliest of the rest. O(domains), only when one fell due. */
static void sched_wake(struct sched *s, uint64_t now)
{
	uint64_t wake = UINT64_MAX;

	for (uint32_t i = 0; i < s->ndoms; i++) {
		struct sched_dom *sd = s->doms[i];

		if (!sd->next_us)
			continue;
		if (sd->next_us <= now) {
			sd->next_us = 0;
			sched_ready(s, sd);
		} else if (sd->next_us < wake) {
			wake = sd->next_us;
		}
	}
	s->wake_us = wake;
}

void sched_wake_at(struct sched *s, struct sched_dom *sd, uint64_t at)
{
	if (!sd->next_us || at < sd->next_us)
		sd->next_us = at;
	if (at < s->wake_us)
		s->wake_us = at;
}

/* ---- serving ready domains ------------------------------------------------ */

/* Collect up to SCHED_BATCH_MAX due entries of sd that no job has into
 * msgs, marking them busy. Entries not due yet set the domain's wake time.
 * Returns how many. O(the domain's queue). */
static size_t dom_collect(struct sched *s, struct sched_dom *sd, uint64_t now, uint64_t *msgs)
{
	const struct spool_index_queue *q = spool_index_queue(s->idx, sd->dom, sd->len);
	struct spool_index_iter it;
	struct spool_index_entry e;
	size_t n = 0;

	if (!q)
		return 0;
	spool_index_queue_iter(q, &it);
	while (n < SCHED_BATCH_MAX && spool_index_queue_next(&it, &e)) {
		if (e.busy || e.held) /* held: quarantined until released */
			continue;
		if (e.next_us > now) {
			sched_wake_at(s, sd, e.next_us);
			continue;
		}
		msgs[n++] = e.msgid;
	}
	/* Marked after the walk: the iterator promises nothing otherwise. */
	spool_index_set_busy_n(s->idx, msgs, n, sd->dom, sd->len, 1);
	return n;
}

/* Start jobs for sd while it has due mail and room for a job. While one
 * of its jobs runs, a new one waits for SCHED_BATCH_MIN due entries (or
 * for a job to end, which readies the domain): fewer, fuller jobs carry
 * more messages per connection. */
static void dom_serve(struct sched *s, const struct domtab *t, struct sched_dom *sd,
		      uint64_t now)
{
	while (sd->jobs < SCHED_JOBS_PER_DOMAIN) {
		size_t n;

		if (sd->jobs > 0 && sd->fresh < SCHED_BATCH_MIN)
			return; /* not enough new mail for another job yet: no walk */
		n = dom_collect(s, sd, now, s->batch);
		sd->fresh = 0;
		if (n == 0)
			return;
		if (sd->jobs > 0 && n < SCHED_BATCH_MIN) {
			spool_index_set_busy_n(s->idx, s->batch, n, sd->dom, sd->len, 0);
			return;
		}
		sd->touched_us = now;
		if (sched_job_start(s, t, sd, s->batch, n, now))
			return; /* logged; retried at the next turn it is readied */
		if (n < SCHED_BATCH_MAX)
			return;
		sd->fresh = SCHED_BATCH_MIN; /* a full batch: more may be due */
	}
}

/* Serve the domains ready at the start of the pass once: one readied
 * again meanwhile (a job that ended at once) waits for the next turn, so a
 * pass always ends. Domains still ready afterwards (job limit reached)
 * wait for a job to end, which readies them again. */
static void sched_serve(struct sched *s, const struct domtab *t, uint64_t now)
{
	for (uint32_t left = s->nready; left > 0 && s->ready.head; left--) {
		struct sched_dom *sd = LIST_ENTRY(s->ready.head, struct sched_dom, ready_node);

		dom_unready(s, sd);
		if (!sched_scheduled(s, t, sd->dom, sd->len) ||
		    !spool_index_queue(s->idx, sd->dom, sd->len)) {
			/* Held now, or no mail left: forget it once idle. */
			if (sd->jobs == 0)
				dom_forget(s, sd);
			continue;
		}
		dom_serve(s, t, sd, now);
	}
}

/* The deferred queue's size as this thread's gauge: the messages of every
 * scheduled domain, a message counted once per domain it waits for. */
static void sched_metrics(struct sched *s, const struct domtab *t)
{
	uint64_t msgs = 0;

	for (uint32_t i = 0; i < s->ndoms; i++) {
		const struct sched_dom *sd = s->doms[i];
		const struct spool_index_queue *q = spool_index_queue(s->idx, sd->dom, sd->len);
		struct spool_index_qstat st;

		if (!q || !sched_scheduled(s, t, sd->dom, sd->len))
			continue;
		spool_index_queue_stat(q, &st);
		msgs += st.messages;
	}
	metrics_set(METRIC_DEFERRED_MESSAGES, msgs);
}

/* The turn hook: cheap when nothing is due (a few compares). */
static void sched_tick(void *arg)
{
	struct sched *s = arg;
	const struct domtab *t;
	uint64_t now;
	int stale;

	/* Bounces waiting for a read slot go on (or end) even when stopping:
	 * the busy check waits for them. */
	sched_job_retry_waiting(s);
	if (s->stopping)
		return;
	t = domtab_live_get(s->dt);
	now = sched_now_us(s);
	stale = domtab_live_stale(s->dt);
	if ((t != s->seen_table || stale != s->seen_stale) &&
	    now >= s->rescan_us + SCHED_RESCAN_MIN_US) {
		/* A new table (e.g. a domain switched from hold to deliver),
		 * or Redis back: queues may have become ours. Only the pointer
		 * is kept, to compare: the old table may be freed after this
		 * turn. */
		s->seen_table = t;
		s->seen_stale = stale;
		sched_rescan(s, t, now);
	} else if (now >= s->rescan_us + SCHED_RESCAN_US) {
		sched_rescan(s, t, now);
	}
	if (now >= s->wake_us)
		sched_wake(s, now);
	if (!list_empty(&s->ready))
		sched_serve(s, t, now);
	if (now >= s->metrics_us + SCHED_METRICS_US || now < s->metrics_us) {
		sched_metrics(s, t);
		s->metrics_us = now;
	}
}

/* ---- restart spread ------------------------------------------------------- */

/* Number, or with spread set spread, the entries of scheduled queues that
 * fell due before start (next_us 0 or <= start), in queue order, over
 * queue_restart_spread. Returns how many. */
static uint64_t restart_walk(struct sched *s, const struct domtab *t, uint64_t start,
			     uint64_t n, int spread)
{
	const struct spool_index_queue *q;
	uint64_t rank = 0, span = (uint64_t)s->cfg->queue_restart_spread_ms * 1000;
	size_t cursor = 0;

	while ((q = spool_index_queue_each(s->idx, &cursor))) {
		struct spool_index_qstat st;
		struct spool_index_iter it;
		struct spool_index_entry e;

		spool_index_queue_stat(q, &st);
		if (!sched_scheduled(s, t, st.domain, st.domain_len))
			continue;
		spool_index_queue_iter(q, &it);
		while (spool_index_queue_next(&it, &e)) {
			if (e.next_us > start)
				continue;
			/* Only a field of the entry changes: the walk stays valid. */
			if (spread)
				(void)spool_index_set_next(s->idx, e.msgid, st.domain,
							   st.domain_len,
							   sched_restart_slot(start, span, rank, n));
			rank++;
		}
	}
	return rank;
}

/* What fell due while the daemon was down, and mail never tried, is
 * spread over queue_restart_spread instead of being tried at once. */
static void sched_restart_spread(struct sched *s)
{
	const struct domtab *t = domtab_live_get(s->dt);
	uint64_t start = sched_now_us(s);
	struct spool_index_totals t0, t1;
	struct timespec c0, c1;
	uint64_t n = 0;

	/* No spread: what fell due is due, as it stands (next_us 0 or past);
	 * setting each entry's time would only cost it index memory. */
	if (s->cfg->queue_restart_spread_ms > 0) {
		spool_index_totals(s->idx, &t0);
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
		n = restart_walk(s, t, start, 0, 0);
		if (n > 1)
			(void)restart_walk(s, t, start, n, 1);
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
		spool_index_totals(s->idx, &t1);
	}
	/* An operator sees what the spread cost the start: each entry given
	 * a time leaves its compact index record (spool_index.c). */
	if (n)
		log_info("sched (shard %u): %" PRIu64 " deferred message(s) spread over %u s "
			 "(%.3f s CPU, index +%.1f MiB)", s->index, n,
			 s->cfg->queue_restart_spread_ms / 1000,
			 (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9,
			 ((double)t1.mem_bytes - (double)t0.mem_bytes) / (1 << 20));
	/* The first turn's walk readies their domains; each wakes at its first
	 * slot. */
	s->rescan_us = 0;
}

/* ---- life ------------------------------------------------------------------ */

static void sched_stop(void *arg)
{
	struct sched *s = arg;

	s->stopping = 1;
	s->stop_deadline_ms = now_mono_ms() + s->cfg->shutdown_timeout_ms;
}

/* The loop's busy check: jobs hold it until they end (their connections
 * are the drainer's, which shutdown_timeout cuts); a look-up only until
 * shutdown_timeout, since the resolver's deadline may be longer. A
 * look-up still pending then is the resolver's to end: its answer is
 * refused its post once the hub quiesced and frees the job there. */
static int sched_busy_hook(void *arg)
{
	struct sched *s = arg;

	if (!list_empty(&s->jobs))
		return 1;
	return s->lookups > 0 && now_mono_ms() < s->stop_deadline_ms;
}

void sched_set_relayed_hook(struct sched *s, void (*fn)(void *arg), void *arg)
{
	s->relayed_fn = fn;
	s->relayed_arg = arg;
}

int sched_busy(const struct sched *s)
{
	return s->lookups > 0 || !list_empty(&s->jobs);
}

/* drain_set_retry()'s hook: on this thread. */
static void sched_retry_hook(void *arg, const char *dom, size_t len)
{
	sched_retry(arg, dom, len);
}

/* Register on l: any failure leaves hooks behind, so the caller frees the
 * loop without running it (as for expiry). */
static int sched_register(struct sched *s, struct loop *l)
{
	int rc = loop_add_turn_hook(l, LOOP_TURN_QUEUE, "sched", sched_tick, s);

	if (rc == 0)
		rc = loop_add_stop_hook(l, "sched", sched_stop, s);
	if (rc == 0)
		rc = loop_add_busy_check(l, "sched", sched_busy_hook, s);
	return rc;
}

struct sched *sched_new(const struct config *cfg, const struct domtab_live *dt,
			struct resolver *r, struct drain *d, struct loop *l,
			struct spool_shard *sh)
{
	struct sched *s = calloc(1, sizeof(*s));
	int rc;

	if (!s || !(s->doms = calloc(SCHED_DOMAINS_MAX, sizeof(*s->doms)))) {
		free(s);
		errno = ENOMEM;
		return NULL;
	}
	s->cfg = cfg;
	s->dt = dt;
	s->resolver = r;
	s->drain = d;
	s->hub = drain_hub_of(d);
	s->loop = l;
	s->index = loop_index(l);
	s->sh = sh;
	s->idx = spool_shard_index(sh);
	s->wake_us = UINT64_MAX;
	htab_init(&s->byname);
	rc = sched_register(s, l);
	if (rc) {
		sched_free(s);
		errno = -rc;
		return NULL;
	}
	sched_restart_spread(s);
	spool_index_set_add_hook(s->idx, sched_added, s);
	drain_set_retry(d, sched_retry_hook, s);
	drain_set_sched(d, s);
	return s;
}

struct sched *sched_free(struct sched *s)
{
	struct list_node *n;

	if (!s)
		return NULL;
	if (s->idx && s->drain) {
		spool_index_set_add_hook(s->idx, NULL, NULL);
		drain_set_retry(s->drain, NULL, NULL);
		drain_set_sched(s->drain, NULL);
	}
	/* Jobs in ROUTING are the resolver's (freed where its answer lands);
	 * those here wait for nothing that can still come. */
	while ((n = list_pop(&s->jobs)))
		sched_job_free(LIST_ENTRY(n, struct sched_job, node));
	while (s->ndoms)
		dom_forget(s, s->doms[0]);
	htab_fini(&s->byname);
	free(s->doms);
	free(s);
	return NULL;
}

void sched_retry(struct sched *s, const char *dom, size_t len)
{
	const struct spool_index_queue *q = spool_index_queue(s->idx, dom, len);
	struct spool_index_iter it;
	struct spool_index_entry e;
	struct sched_dom *sd;

	if (!q || !sched_scheduled(s, domtab_live_get(s->dt), dom, len))
		return;
	spool_index_queue_iter(q, &it);
	while (spool_index_queue_next(&it, &e))
		if (e.next_us)
			(void)spool_index_set_next(s->idx, e.msgid, dom, len, 0);
	/* "Now" means now: an address marked dead is tried again too. */
	sched_job_dead_clear(s);
	sd = sched_dom_get(s, dom, len);
	if (sd) {
		sd->next_us = 0;
		sched_ready(s, sd);
	}
	log_info("sched (shard %u): %.*s: retry now", s->index, (int)len, dom);
}

/* ---- status ------------------------------------------------------------ */

/* The earliest next attempt among dom's entries no job has (0: one is due
 * now or every entry is in flight). O(the domain's queue). */
static uint64_t dom_next(const struct spool_index_queue *q, uint64_t now)
{
	struct spool_index_iter it;
	struct spool_index_entry e;
	uint64_t next = UINT64_MAX;

	spool_index_queue_iter(q, &it);
	while (spool_index_queue_next(&it, &e)) {
		if (e.busy || e.held)
			continue;
		if (e.next_us <= now)
			return 0;
		if (e.next_us < next)
			next = e.next_us;
	}
	return next == UINT64_MAX ? 0 : next;
}

size_t sched_status_copy(const struct sched *s, struct sched_status_dest *out, size_t max)
{
	const struct domtab *t = domtab_live_get(s->dt);
	uint64_t now = sched_now_us(s);
	size_t k = 0;

	for (uint32_t i = 0; i < s->ndoms; i++) {
		const struct sched_dom *sd = s->doms[i];
		const struct spool_index_queue *q = spool_index_queue(s->idx, sd->dom, sd->len);
		struct spool_index_qstat st;
		struct sched_status_dest *o;

		/* Switched to hold since: the drains' now, not deferred. */
		if (!q || !sched_scheduled(s, t, sd->dom, sd->len))
			continue;
		if (k++ >= max)
			continue; /* counted, not copied */
		o = &out[k - 1];
		spool_index_queue_stat(q, &st);
		memset(o, 0, sizeof(*o));
		memcpy(o->dom, sd->dom, sd->len + 1);
		o->msgs = st.messages;
		o->oldest_us = st.oldest_us;
		o->next_us = dom_next(q, now);
		o->deferrals = sd->deferrals;
		snprintf(o->relay, sizeof(o->relay), "%s", sd->relay);
		snprintf(o->why, sizeof(o->why), "%s", sd->why);
	}
	return k;
}
