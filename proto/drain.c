/* SPDX-License-Identifier: MIT */
/*
 * drain: see drain.h. The path of one ETRN:
 *
 *   thread T: drain_etrn()  rate, then the node's form and the client's
 *             rights (proto/etrn.c); reply at once;
 *             hub: mark the domain active (a second ETRN joins: 252);
 *             destination numeric? post the drain to every thread now,
 *             else resolve it on the process's resolver (core/resolver.h,
 *             through proto/drain_resolve.c), then post from its thread.
 *   every thread: job_start()  snapshot its shard's queue for the domain,
 *             open up to drain_connections connections (proto/drain_conn.c);
 *             each takes the next message of the snapshot (so no message
 *             goes out twice) until none is left. When the job's last
 *             connection is freed the thread tells the hub; the last
 *             thread to finish ends the drain.
 *
 * Mail that arrives during a drain is not in the snapshot: the next ETRN
 * takes it. A recipient is done only once its DONE is durable, so a drain
 * cut short (client gone, restart) resumes with exactly the rest.
 *
 * Every job (ETRN, flush, ATRN, and the scheduler's outbound jobs, which
 * drain_outbound() starts on its own thread without the hub) marks the
 * queue entries it took busy in the index until it ends, and skips those
 * another job marked: a drain and the scheduler never send the same
 * recipients at once. ETRN or flush of a mode deliver domain is the
 * scheduler's "retry now" (hub_retry()), not a drain.
 */
#include "proto/drain.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ascii.h"
#include "core/clusterview.h"
#include "core/hash.h"
#include "core/htab.h"
#include "core/list.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/loop.h"
#include "core/now.h"
#include "proto/drain_atrn.h"
#include "proto/drain_conn.h"
#include "proto/drain_resolve.h"
#include "proto/drain_status.h"
#include "proto/etrn.h"
#include "proto/sched.h"
#include "core/addrlimit.h"
#include "store/domstat.h"
#include "store/spool_index.h"

#define DRAIN_REPLY_LINE_MAX 4096      /* servers send more than RFC's 512 */
#define DRAIN_REPLY_LINES_MAX 100
#define DRAIN_WHO_MAX 300              /* "[client] (node)" for log lines */
#define DRAIN_WHO_NODE_MAX 200         /* node text in it */
#define DRAIN_ACTIVE_MIN 16            /* first size of the active list */
/* Domains per thread whose hold reason is kept for etrnctl status; past it
 * the oldest reason is forgotten (the log still has it). */
#define DRAIN_HELD_DOMAINS_MAX 1024
/* How long an outbound job's connection waits for the next job to its
 * destination before QUIT: Postfix's smtp_connection_cache_time_limit. */
#define DRAIN_OUT_LINGER_MS 2000

/* A domain being drained; found through the hub's act_ix (core/htab.h),
 * which compares names only on a full hash match. */
struct drain_active {
	uint32_t hash;                 /* active_hash(dom, len) */
	unsigned left;                 /* threads still draining it */
	int again;                     /* a joined flush: drain again at the end */
	size_t len;
	char dom[DRAIN_DOMAIN_MAX];
};

struct drain_hub {
	const struct config *cfg;
	const struct domtab_live *dt;
	struct domstat *ds;
	unsigned n;
	struct drain **drains;         /* by thread index; set by drain_new */
	pthread_mutex_t mu;            /* guards act: taken per ETRN and per
	                                  finished drain, never per message */
	struct resolver *resolver;     /* the process's; not ours to free */
	int closed;                    /* drain_hub_quiesce(): post no more */
	_Atomic uint64_t unresolved;   /* drains ended: dest did not resolve */
	struct addrlimit *etrn_limit;  /* etrn_rate_limit, node-wide */
	struct drain_active *act;
	size_t nact, capact;
	struct htab act_ix;            /* act by (domain) hash: one probe per
	                                  ETRN, however many drains run */
	struct smtp_client_conf ccf;
	struct tls_ctx *tls_client;    /* drain_hub_set_tls(); not ours */
	struct drain_atrn_reg *atrn;   /* ATRN sessions in progress */
	/* Issue 16 (drain_hub_set_cluster): the other nodes' counts, and
	 * how to tell them of an ETRN taken here. NULL: no cluster. */
	const struct clusterview_live *view;
	drain_publish_fn publish;
	void *publish_arg;
};

/* Why a domain's mail stayed held at its last drain on this thread (a TLS
 * policy not met), until a drain of it ends without such a reason. */
struct drain_held {
	struct list_node node;         /* drain.held, oldest first */
	size_t len;
	char dom[DRAIN_DOMAIN_MAX];
	char why[DRAIN_HELD_MAX];
};

struct drain {
	struct drain_hub *hub;
	unsigned index;
	struct drain_conn_env env;     /* what its connections share */
	struct list jobs;              /* of drain_job.node, this thread's */
	struct list held;              /* of drain_held.node, this thread's */
	unsigned nheld;
	drain_retry_fn retry;          /* the scheduler's "retry now", or NULL */
	void *retry_arg;
	struct sched *sched;           /* the thread's scheduler, or NULL */
};

/* An outbound job (drain_outbound()): the drain job and whom to tell. */
struct drain_out_job {
	struct drain_job j;
	drain_out_done done;
	void *arg;
};

_Static_assert(DRAIN_JOB_WHY_MAX == DRAIN_WHY_MAX, "a job's why and its result's");

static struct drain *drain_of_env(struct drain_conn_env *env)
{
	return (struct drain *)(void *)((char *)env - offsetof(struct drain, env));
}

/* ---- hub ----------------------------------------------------------------- */

struct drain_hub *drain_hub_new(const struct config *cfg,
				const struct domtab_live *dt, struct domstat *ds,
				struct resolver *resolver, unsigned nthreads)
{
	struct drain_hub *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->drains = calloc(nthreads, sizeof(*h->drains));
	h->etrn_limit = addrlimit_new("etrn_rate_limit", cfg->etrn_rate_limit, ADDRLIMIT_ADDRS_DEFAULT);
	h->atrn = drain_atrn_reg_new();
	if (!h->drains || !h->etrn_limit || !h->atrn) {
		drain_atrn_reg_free(h->atrn);
		addrlimit_free(h->etrn_limit);
		free(h->drains);
		free(h);
		return NULL;
	}
	h->cfg = cfg;
	h->dt = dt;
	h->ds = ds;
	h->resolver = resolver;
	atomic_init(&h->unresolved, 0);
	h->n = nthreads;
	pthread_mutex_init(&h->mu, NULL);
	htab_init(&h->act_ix);
	h->ccf.helo_name = cfg->hostname;
	h->ccf.reply_line_max = DRAIN_REPLY_LINE_MAX;
	h->ccf.max_reply_lines = DRAIN_REPLY_LINES_MAX;
	return h;
}

void drain_hub_quiesce(struct drain_hub *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->closed = 1;
	pthread_mutex_unlock(&h->mu);
}

uint64_t drain_hub_unresolved(struct drain_hub *h)
{
	return atomic_load(&h->unresolved);
}

struct drain_hub *drain_hub_free(struct drain_hub *h)
{
	if (!h)
		return NULL;
	pthread_mutex_destroy(&h->mu);
	drain_atrn_reg_free(h->atrn);
	addrlimit_free(h->etrn_limit);
	htab_fini(&h->act_ix);
	free(h->act);
	free(h->drains);
	free(h);
	return NULL;
}

static uint32_t active_hash(const char *dom, size_t len)
{
	return hash_fnv32_lower(HASH_FNV32_INIT, dom, len);
}

/* A domain looked up in the active list (htab_find()'s key). */
struct active_key {
	const char *dom;
	size_t len;
};

static int active_eq(const void *ctx, uint32_t el, const void *key)
{
	const struct drain_active *a = &((const struct drain_hub *)ctx)->act[el];
	const struct active_key *k = key;

	return a->len == k->len && ascii_eq_n(a->dom, k->dom, k->len);
}

/* dom's entry in the active list, or HTAB_NONE; hv is active_hash(dom,
 * len). Under the hub's lock. */
static uint32_t active_find(const struct drain_hub *h, uint32_t hv, const char *dom, size_t len)
{
	struct active_key k = { dom, len };

	return htab_find(&h->act_ix, hv, active_eq, h, &k);
}

/* Mark dom active for every thread; 0 if it already was (join: 252). */
static int hub_begin(struct drain_hub *h, const char *dom, size_t len, int again)
{
	uint32_t hv = active_hash(dom, len);
	uint32_t i;
	int fresh = 0;

	pthread_mutex_lock(&h->mu);
	if ((i = active_find(h, hv, dom, len)) != HTAB_NONE) {
		h->act[i].again |= again;
		goto out;
	}
	if (h->nact == h->capact) {
		size_t cap = h->capact ? h->capact * 2 : DRAIN_ACTIVE_MIN;
		struct drain_active *a = realloc(h->act, cap * sizeof(*a));
		if (!a)
			goto out; /* treated as a join: the reply says "started" */
		h->act = a;
		h->capact = cap;
	}
	if (htab_insert(&h->act_ix, hv, (uint32_t)h->nact))
		goto out; /* as above */
	memcpy(h->act[h->nact].dom, dom, len);
	h->act[h->nact].dom[len] = '\0';
	h->act[h->nact].len = len;
	h->act[h->nact].hash = hv;
	h->act[h->nact].left = h->n;
	h->act[h->nact].again = 0;
	h->nact++;
	fresh = 1;
out:
	pthread_mutex_unlock(&h->mu);
	return fresh;
}

/* 1 while a drain of dom runs on any thread. */
static int hub_active(struct drain_hub *h, const char *dom, size_t len)
{
	uint32_t hv = active_hash(dom, len);
	int on;

	pthread_mutex_lock(&h->mu);
	on = active_find(h, hv, dom, len) != HTAB_NONE;
	pthread_mutex_unlock(&h->mu);
	return on;
}

static void hub_again(struct drain_hub *h, const char *dom, size_t len);

/* One thread has finished its part of dom's drain. 1 when it was the last
 * and a flush joined the drain meanwhile (the caller drains again: mail
 * that came after this drain's snapshots is the joiner's too). */
static int hub_end(struct drain_hub *h, const char *dom, size_t len)
{
	uint32_t hv = active_hash(dom, len);
	uint32_t i, last;
	int again = 0;

	pthread_mutex_lock(&h->mu);
	i = active_find(h, hv, dom, len);
	if (i != HTAB_NONE && --h->act[i].left == 0) {
		again = h->act[i].again;
		/* The last entry moves into i's place. */
		last = (uint32_t)--h->nact;
		htab_remove(&h->act_ix, hv, i);
		if (i != last) {
			htab_renumber(&h->act_ix, h->act[last].hash, last, i);
			h->act[i] = h->act[last];
		}
	}
	pthread_mutex_unlock(&h->mu);
	return again;
}

/* ---- jobs on one thread --------------------------------------------------- */

/* dom's hold reason on d, or NULL. */
static struct drain_held *held_find(struct drain *d, const char *dom, size_t len)
{
	struct list_node *n;

	LIST_FOREACH(n, &d->held) {
		struct drain_held *e = LIST_ENTRY(n, struct drain_held, node);

		if (e->len == len && ascii_eq_n(e->dom, dom, len))
			return e;
	}
	return NULL;
}

/* Keep (or forget) why j's domain stays held, for etrnctl status. */
static void held_note(struct drain *d, const struct drain_job *j)
{
	struct drain_held *e = held_find(d, j->dom, j->len);

	if (!j->held[0]) {
		if (e) {
			list_unlink(&d->held, &e->node);
			d->nheld--;
			free(e);
		}
		return;
	}
	if (!e && d->nheld >= DRAIN_HELD_DOMAINS_MAX) {
		e = LIST_ENTRY(list_pop(&d->held), struct drain_held, node);
		d->nheld--;
	} else if (e) {
		list_unlink(&d->held, &e->node);
		d->nheld--;
	} else if (!(e = calloc(1, sizeof(*e)))) {
		return; /* the log has it */
	}
	memcpy(e->dom, j->dom, j->len);
	e->dom[j->len] = '\0';
	e->len = j->len;
	snprintf(e->why, sizeof(e->why), "%s", j->held);
	list_append(&d->held, &e->node);
	d->nheld++;
}

size_t drain_held_copy(const struct drain *d, struct drain_status_held *out, size_t max)
{
	const struct list_node *n;
	size_t k = 0;

	LIST_FOREACH(n, &d->held) {
		const struct drain_held *e = LIST_ENTRY(n, struct drain_held, node);

		if (k == max)
			break;
		snprintf(out[k].dom, sizeof(out[k].dom), "%s", e->dom);
		snprintf(out[k].why, sizeof(out[k].why), "%s", e->why);
		k++;
	}
	return max ? k : d->nheld;
}

void drain_hub_set_tls(struct drain_hub *h, struct tls_ctx *client)
{
	__atomic_store_n(&h->tls_client, client, __ATOMIC_RELEASE);
}

/* j's entries are in flight (busy 1) or no longer (0) in the index, so
 * no other job (a drain, ATRN or the scheduler's) takes them meanwhile.
 * A message finished since is no longer indexed: nothing to clear. */
static void job_mark_busy(struct drain *d, const struct drain_job *j, int busy)
{
	spool_index_set_busy_n(d->env.idx, j->msgs, j->nmsgs, j->dom, j->len, busy);
}

/* An outbound job has ended: its result to the scheduler. done may start
 * the next job at once (drain_conn.c allows a job to start from another's
 * end). */
static void job_end_outbound(struct drain_job *j)
{
	struct drain_out_job *oj = (struct drain_out_job *)(void *)j;
	struct drain_out_result res;

	memset(&res, 0, sizeof(res));
	res.sent = j->sent;
	res.deferred = j->deferred;
	res.bounced = j->bounced;
	res.untried = j->nmsgs - j->next_msg;
	res.conn_failures = j->failures;
	res.tls_held = j->held[0] != '\0';
	snprintf(res.why, sizeof(res.why), "%s", j->why[0] ? j->why : j->held);
	free(j->msgs);
	oj->done(oj->arg, &res);
	free(oj);
}

static int job_next_addr(struct drain *d, struct drain_job *j);

/* The job's last connection is gone (env->job_idle), or it never had one:
 * log its summary, clear its busy marks, tell the hub (or the scheduler),
 * free it. */
static void job_end(struct drain_job *j)
{
	struct drain *d = drain_of_env(j->env);
	struct drain_atrn *s = j->atrn;

	if (job_next_addr(d, j))
		return;
	list_unlink(&d->jobs, &j->node);
	job_mark_busy(d, j, 0);
	if (!s && !j->outbound) {
		held_note(d, j);
		metrics_add(METRIC_DRAINS_FINISHED, 1); /* started in job_start() */
		metrics_sub(METRIC_DRAINS_RUNNING, 1);
	}
	if (j->nmsgs)
		log_info("%s %.*s (shard %u): %" PRIu64 " sent, %" PRIu64 " deferred, %" PRIu64
			 " bounced, %zu not attempted, in %.3f s",
			 j->outbound ? "outbound" : "drain", (int)j->len, j->dom, d->index,
			 j->sent, j->deferred, j->bounced, j->nmsgs - j->next_msg,
			 (double)(now_wall_us() - j->started_us) / 1e6);
	if (j->outbound) {
		job_end_outbound(j);
		return;
	}
	if (!s && hub_end(d->hub, j->dom, j->len))
		hub_again(d->hub, j->dom, j->len);
	drain_begun_put(j->begun);
	free(j->addrs);
	free(j->msgs);
	free(j);
	if (s)
		drain_atrn_put(s); /* the session holds the domain until its last job */
}

/* A job for dom on d with a snapshot of its shard's queue for the domain,
 * less the entries another job has in flight (busy), which it marks busy
 * itself; NULL when nothing is left here (or, empty set, an empty job
 * then) or out of memory. */
static struct drain_job *job_snapshot(struct drain *d, const char *dom, size_t len, int empty)
{
	const struct spool_index_queue *q;
	struct spool_index_qstat st = { 0 };
	struct spool_index_iter it;
	struct spool_index_entry e;
	struct drain_job *j;

	q = spool_index_queue(d->env.idx, dom, len);
	if (q)
		spool_index_queue_stat(q, &st);
	if (!st.messages && !empty)
		return NULL;
	j = calloc(1, sizeof(*j));
	if (j && st.messages)
		j->msgs = malloc(st.messages * sizeof(*j->msgs));
	if (!j || (st.messages && !j->msgs)) {
		log_err("drain %.*s: out of memory", (int)len, dom);
		free(j);
		return NULL;
	}
	/* Snapshot the queue: each message goes to exactly one connection. */
	if (q) {
		spool_index_queue_iter(q, &it);
		while (j->nmsgs < st.messages && spool_index_queue_next(&it, &e))
			if (!e.busy && !e.held) /* held: quarantined */
				j->msgs[j->nmsgs++] = e.msgid;
	}
	if (!j->nmsgs && !empty) {
		free(j->msgs);
		free(j);
		return NULL; /* all of it in flight elsewhere */
	}
	j->env = &d->env;
	memcpy(j->dom, dom, len);
	j->dom[len] = '\0';
	j->len = len;
	j->started_us = now_wall_us();
	job_mark_busy(d, j, 1);
	return j;
}

/* A job for rq on d (job_snapshot()) going to rq's destination. */
static struct drain_job *job_new(struct drain *d, const struct drain_req *rq)
{
	struct drain_job *j = job_snapshot(d, rq->dom, rq->len, 0);

	if (!j)
		return NULL;
	(void)drain_resolve_addr(&rq->addrs, 0, &j->dst, &j->dstlen, j->relay, sizeof(j->relay));
	/* More than one address (MX hosts, a host's A and AAAA): kept for
	 * job_next_addr(). Without memory the first one is all it tries. */
	if (rq->addrs.n > 1 && (j->addrs = malloc(sizeof(*j->addrs))))
		memcpy(j->addrs, &rq->addrs, sizeof(*j->addrs));
	j->tls = rq->tls;
	return j;
}

/*
 * An ETRN job that gave up on its address (a connect failed while another
 * address was left, or its connections ended early drain_reconnect_attempts
 * times) with mail not yet tried goes on at the next address of its list
 * (RFC 5321 5.1: the next MX) instead of ending. Not for a TLS policy
 * unmet (job_tls_held(): the mail stays held, as the log says), nor while
 * stopping. 1 when it is under way there (env->job_idle follows again).
 */
static int job_next_addr(struct drain *d, struct drain_job *j)
{
	char from[DRAIN_RELAY_MAX];
	int rc;

	while (j->addrs && j->gave_up && !j->held[0] && !d->env.stopping &&
	       j->next_msg < j->nmsgs && j->addr + 1 < j->addrs->n) {
		snprintf(from, sizeof(from), "%s", j->relay);
		j->addr++;
		(void)drain_resolve_addr(j->addrs, j->addr, &j->dst, &j->dstlen, j->relay,
					 sizeof(j->relay));
		log_info("drain %.*s (shard %u): gave up on %s (%s); %zu message(s) go to the "
			 "next address, %s (%u of %u)", (int)j->len, j->dom, d->index, from,
			 j->why[0] ? j->why : "connections ended early", j->nmsgs - j->next_msg,
			 j->relay, j->addr + 1, j->addrs->n);
		j->gave_up = 0;
		j->failures = 0;
		j->tls_clear = 0;
		rc = drain_conn_job_start(j);
		if (rc == 0)
			return 1;
		log_warn("drain %.*s: cannot open a connection to %s: %s", (int)j->len, j->dom,
			 j->relay, strerror(-rc));
		j->gave_up = 1;
	}
	return 0;
}

/* On engine thread rq->thread: start its part of the drain. */
static void job_start(void *arg)
{
	struct drain_req *rq = arg;
	struct drain_hub *h = rq->hub;
	struct drain *d = __atomic_load_n(&h->drains[rq->thread], __ATOMIC_ACQUIRE);
	struct drain_job *j = job_new(d, rq);
	int rc;

	if (!j) {
		drain_begun_put(rq->begun);
		hub_end(h, rq->dom, rq->len);
		free(rq);
		return;
	}
	j->begun = rq->begun; /* its reference, until job_end() */
	free(rq);
	list_append(&d->jobs, &j->node);
	/* Counted per engine thread: each holds its share of the domain. */
	metrics_add(METRIC_DRAINS_STARTED, 1);
	metrics_add(METRIC_DRAINS_RUNNING, 1);
	/* The context drain_hub_set_tls() gave last: for this job's connections
	 * (those already open keep theirs). */
	d->env.tls = __atomic_load_n(&h->tls_client, __ATOMIC_ACQUIRE);
	/* Connections to the destination are shared with its other drains
	 * (drain_conn.h): this may open fewer, or none yet and wait. */
	rc = drain_conn_job_start(j);
	if (rc) {
		log_warn("drain %.*s: cannot open a connection to %s: %s", (int)j->len,
			 j->dom, j->relay, strerror(-rc));
		job_end(j);
		return;
	}
	log_info("drain %.*s (shard %u): %zu message(s) to %s over %u connection(s)",
		 (int)j->len, j->dom, d->index, j->nmsgs, j->relay, j->conns);
}

/* ---- outbound jobs (the scheduler's) --------------------------------------- */

/*
 * Into j->msgs, in the request's order: those of want[0..n) still pending
 * in j's domain and not in flight in another job (busy), each marked busy
 * as it is taken (so a repeated id is taken once). One look-up per id
 * (spool_index_msg_entry(), O(domains of the message)); no walk of the
 * domain's queue, however long it is. Returns how many.
 */
static size_t outbound_pick(struct drain *d, struct drain_job *j, const uint64_t *want,
			    size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct spool_index_entry e;

		if (spool_index_msg_entry(d->env.idx, want[i], j->dom, j->len, &e) || e.busy ||
		    e.held || spool_index_set_busy(d->env.idx, want[i], j->dom, j->len, 1))
			continue;
		j->msgs[j->nmsgs++] = want[i];
	}
	return j->nmsgs;
}

int drain_outbound(struct drain *d, const struct drain_out_req *rq, drain_out_done done,
		   void *arg)
{
	struct drain_out_job *oj;
	struct drain_job *j;
	int rc = -ENOMEM;

	if (!rq->len || rq->len >= sizeof(j->dom) || !rq->nmsgs || rq->dstlen > sizeof(j->dst))
		return -EINVAL;
	oj = calloc(1, sizeof(*oj));
	if (!oj)
		return -ENOMEM;
	j = &oj->j;
	j->msgs = malloc(rq->nmsgs * sizeof(*j->msgs));
	if (!j->msgs)
		goto fail;
	memcpy(j->dom, rq->dom, rq->len);
	j->dom[rq->len] = '\0';
	j->len = rq->len;
	rc = -ENOENT; /* nothing of it left to send */
	if (!outbound_pick(d, j, rq->msgs, rq->nmsgs))
		goto fail;
	j->env = &d->env;
	j->outbound = 1;
	j->started_us = now_wall_us();
	memcpy(&j->dst, &rq->dst, rq->dstlen);
	j->dstlen = rq->dstlen;
	snprintf(j->relay, sizeof(j->relay), "%s", rq->relay ? rq->relay : "");
	j->tls = rq->tls;
	j->auth_user = rq->auth_user;
	j->auth_pass = rq->auth_pass;
	oj->done = done;
	oj->arg = arg;
	list_append(&d->jobs, &j->node);
	d->env.tls = __atomic_load_n(&d->hub->tls_client, __ATOMIC_ACQUIRE);
	rc = drain_conn_job_start(j);
	if (rc) {
		list_unlink(&d->jobs, &j->node);
		job_mark_busy(d, j, 0);
		goto fail;
	}
	log_info("outbound %.*s (shard %u): %zu message(s) to %s over %u connection(s)",
		 (int)j->len, j->dom, d->index, j->nmsgs, j->relay, j->conns);
	return 0;
fail:
	free(j->msgs);
	free(oj);
	return rc;
}

/* ---- fan-out of drains ------------------------------------------------------ */

/* Send the (resolved) request to every engine thread. The posts are made
 * under the hub's lock, so once drain_hub_quiesce() has returned none is
 * (a resolver answer arriving then only ends the drain). */
static void fan_out(struct drain_req *proto_rq)
{
	struct drain_hub *h = proto_rq->hub;
	/* Without memory for it the jobs go without (every one fresh). */
	struct drain_begun *b = h->n > 1 ? drain_begun_new(h->n) : NULL;
	unsigned lost = 0;

	pthread_mutex_lock(&h->mu);
	for (unsigned i = 0; i < h->n; i++) {
		struct drain *d = __atomic_load_n(&h->drains[i], __ATOMIC_ACQUIRE);
		struct drain_req *rq = d && !h->closed ? malloc(sizeof(*rq)) : NULL;

		if (rq) {
			*rq = *proto_rq;
			rq->thread = i;
			rq->begun = b;
		}
		/* A thread still starting up has no mail to drain yet. */
		if (!rq || loop_post(d->env.loop, job_start, rq)) {
			free(rq);
			drain_begun_put(b);
			if (!h->closed)
				log_err("drain %.*s: cannot reach engine thread %u",
					(int)proto_rq->len, proto_rq->dom, i);
			lost++;
		}
	}
	pthread_mutex_unlock(&h->mu);
	while (lost--)
		hub_end(h, proto_rq->dom, proto_rq->len);
}

/* Every thread's part of a drain that will not run ends at once. */
static void hub_end_all(struct drain_hub *h, const char *dom, size_t len)
{
	for (unsigned i = 0; i < h->n; i++)
		hub_end(h, dom, len);
}

/* A drain whose destination did not resolve ends at once on every thread
 * (mail stays queued; the reason is logged), then is counted. */
static void hub_unresolved(struct drain_hub *h, const char *dom, size_t len)
{
	hub_end_all(h, dom, len);
	atomic_fetch_add(&h->unresolved, 1);
}

/* drain_resolve_start()'s done: on the resolver's thread. A drain whose
 * destination did not resolve ends here (mail stays queued, the reason is
 * logged by drain_resolve.c); cancelled at shutdown, it ends quietly. */
static void drain_resolved(struct drain_req *rq)
{
	if (rq->failed && rq->err == -ECANCELED)
		hub_end_all(rq->hub, rq->dom, rq->len);
	else if (rq->failed)
		hub_unresolved(rq->hub, rq->dom, rq->len);
	else
		fan_out(rq);
	free(rq);
}

/*
 * Start draining dom (checked and authorised by the caller): JOINED when a
 * drain already runs (it is joined, never duplicated), NONE_WAITING when
 * nothing is held, else STARTED with the count in *n, after fanning the
 * drain out to every engine thread (resolving the destination first when
 * it is a name); UNABLE when out of memory. Any thread; never blocks.
 */
static enum etrn_outcome hub_start(struct drain_hub *h, const struct domtab_row *row,
				   const char *dom, size_t len, const char *who, int again,
				   uint64_t *n)
{
	struct drain_req *rq;
	int rc;

	*n = domstat_msgs(h->ds, dom, len);
	if (*n == 0 && !hub_active(h, dom, len)) {
		/* Nothing held, nothing running: nothing to start. Mail racing in
		 * now waits for the next ETRN. */
		log_info("ETRN %s from %s: no messages waiting", dom, who);
		return ETRN_NONE_WAITING;
	}
	if (!hub_begin(h, dom, len, again)) {
		log_info("ETRN %s from %s: joins the drain already running", dom, who);
		return ETRN_JOINED;
	}
	rq = calloc(1, sizeof(*rq));
	if (!rq) {
		hub_end_all(h, dom, len);
		return ETRN_UNABLE;
	}
	rq->hub = h;
	memcpy(rq->dom, dom, len);
	rq->dom[len] = '\0';
	rq->len = len;
	rq->tls = row->tls;
	log_info("ETRN %s from %s: %" PRIu64 " message(s) waiting; drain started", rq->dom, who, *n);
	snprintf(rq->relay, sizeof(rq->relay), "%s", row->dest ? row->dest : "");
	if (drain_resolve_numeric(rq)) {
		if (rq->failed) /* a malformed dest (logged) */
			hub_unresolved(h, dom, len);
		else
			fan_out(rq);
		free(rq);
		return ETRN_STARTED;
	}
	/* A host name or MX: resolved on the resolver's thread. Submitted
	 * under the hub's lock: once drain_hub_quiesce() has returned nothing
	 * submits (the control thread may still flush), so the resolver may be
	 * freed. The callback never runs inside the submit. */
	pthread_mutex_lock(&h->mu);
	rc = h->closed ? -ESHUTDOWN : drain_resolve_start(h->resolver, rq, drain_resolved);
	pthread_mutex_unlock(&h->mu);
	if (rc) {
		log_err("drain %s: cannot start the look-up: %s; mail stays queued", rq->dom,
			strerror(-rc));
		hub_unresolved(h, dom, len);
		free(rq);
	}
	return ETRN_STARTED;
}

/* "Retry dom now" on one engine thread: its scheduler's hook. */
struct drain_retry_req {
	struct drain_hub *hub;
	unsigned thread;
	size_t len;
	char dom[DRAIN_DOMAIN_MAX];
};

static void retry_run(void *arg)
{
	struct drain_retry_req *rq = arg;
	struct drain *d = __atomic_load_n(&rq->hub->drains[rq->thread], __ATOMIC_ACQUIRE);

	if (d && d->retry)
		d->retry(d->retry_arg, rq->dom, rq->len);
	free(rq);
}

/*
 * ETRN or the operator's flush of a mode deliver domain: its mail is the
 * scheduler's, so "release it" means "retry it now" (Postfix's flush of
 * the deferred queue) on every engine thread. Answered as a started drain:
 * STARTED with the count in *n, NONE_WAITING when nothing is queued. Any
 * thread; never blocks.
 */
static enum etrn_outcome hub_retry(struct drain_hub *h, const char *dom, size_t len,
				   const char *who, uint64_t *n)
{
	*n = domstat_msgs(h->ds, dom, len);
	if (*n == 0) {
		log_info("ETRN %.*s from %s: mode deliver, no messages waiting", (int)len, dom, who);
		return ETRN_NONE_WAITING;
	}
	for (unsigned i = 0; i < h->n; i++) {
		struct drain_retry_req *rq = malloc(sizeof(*rq));

		if (!rq)
			return i ? ETRN_STARTED : ETRN_UNABLE;
		rq->hub = h;
		rq->thread = i;
		rq->len = len;
		memcpy(rq->dom, dom, len);
		rq->dom[len] = '\0';
		if (drain_hub_post(h, i, retry_run, rq))
			free(rq); /* a thread not up (or stopping) has nothing due */
	}
	log_info("ETRN %.*s from %s: mode deliver, %" PRIu64 " message(s) queued; retried now",
		 (int)len, dom, who, *n);
	return ETRN_STARTED;
}

/* Release dom (authorised): a held domain is drained (hub_start()), a mode
 * deliver one retried (hub_retry()). again: a flush (the operator's, or
 * another node's ETRN), which, when it joins a running drain, drains once
 * more when that one ends. */
static enum etrn_outcome hub_release(struct drain_hub *h, const struct domtab_row *row,
				     const char *dom, size_t len, const char *who, int again,
				     uint64_t *n)
{
	if (row->mode == DOMTAB_MODE_DELIVER)
		return hub_retry(h, dom, len, who, n);
	return hub_start(h, row, dom, len, who, again, n);
}

/* A flush joined dom's drain, which has just ended on this engine thread:
 * drain again for the mail held since (with the domain's row as it is
 * now; gone from the table: nothing to do). */
static void hub_again(struct drain_hub *h, const char *dom, size_t len)
{
	const struct domtab_row *row = domtab_find(domtab_live_get(h->dt), dom, len);
	uint64_t n = 0;

	if (!row || etrn_permit(row, NULL, NULL) != ETRN_OK)
		return;
	log_info("drain %.*s: again, for the mail held since the drain a later flush joined",
		 (int)len, dom);
	(void)hub_release(h, row, dom, len, "a joined flush", 0, &n);
}

/* ---- ETRN ----------------------------------------------------------------- */

/* etrn_rate_limit per client address, one limiter for the whole node, so
 * connections landing on different engine threads share it
 * (core/addrlimit.h). */
static int rate_ok(struct drain *d, const char *client)
{
	return addrlimit_take(d->hub->etrn_limit, client, now_mono_ms());
}

/*
 * Issue 16: the cluster's part of an ETRN taken over SMTP here. The other
 * nodes' held mail for dom (their published counts, core/clusterview.h)
 * adds to the 253 count; a domain held only elsewhere gets 253 with their
 * count (they drain it when told), and 251 stays for "no node holds any".
 * An engine thread only: it reads the view under the epoch.
 */
static enum etrn_outcome cluster_count(struct drain_hub *h, const char *dom, size_t len,
				       enum etrn_outcome o, uint64_t *n)
{
	uint64_t remote;

	if (!h->view || (o != ETRN_STARTED && o != ETRN_NONE_WAITING))
		return o;
	remote = clusterview_remote_msgs(clusterview_live_get(h->view), dom, len);
	if (remote == 0)
		return o;
	*n = (o == ETRN_STARTED ? *n : 0) + remote;
	return ETRN_STARTED;
}

/* Tell the other nodes of an ETRN this node accepted (a permitted one:
 * started, joined or nothing here), with its argument as given; each
 * drains its own share. Never for a drain that came from Redis or the
 * operator: etrnctl flush publishes to every node itself. */
static void cluster_tell(struct drain_hub *h, enum etrn_outcome o, const char *spec, size_t len)
{
	if (h->publish && (o == ETRN_STARTED || o == ETRN_JOINED || o == ETRN_NONE_WAITING))
		h->publish(h->publish_arg, spec, len);
}

/*
 * ETRN #queue or @domain (RFC 1985 section 3): every provisioned domain in
 * the queue, or the domain and its subdomains, that the client (sa; NULL
 * for the operator) or its authenticated user (NULL: none) may release.
 * One reply for all (etrn_tally_outcome()).
 */
static void drain_many(struct drain_hub *h, const char *client, const struct sockaddr *sa,
		       const char *user, const struct etrn_node *en, struct buf *out)
{
	const struct domtab *t = domtab_live_get(h->dt);
	struct etrn_tally tally;
	char who[DRAIN_WHO_MAX];
	const struct domtab_row *row;
	enum etrn_outcome o;

	memset(&tally, 0, sizeof(tally));
	snprintf(who, sizeof(who), "[%s] (%.*s)", client,
		 (int)(en->shown_len > DRAIN_WHO_NODE_MAX ? DRAIN_WHO_NODE_MAX : en->shown_len),
		 en->shown);
	for (size_t i = 0; (row = domtab_row_at(t, i)); i++) {
		enum etrn_outcome permit, started = ETRN_OK;
		uint64_t n = 0;

		if (!etrn_row_matches(en, row))
			continue;
		permit = etrn_permit(row, sa, user);
		if (permit == ETRN_OK)
			started = hub_release(h, row, row->name, strlen(row->name), who, sa == NULL,
					      &n);
		if (permit == ETRN_OK && sa)
			started = cluster_count(h, row->name, strlen(row->name), started, &n);
		etrn_tally_add(&tally, permit, started, n);
	}
	o = etrn_tally_outcome(&tally);
	if (sa)
		cluster_tell(h, o, en->shown, en->shown_len);
	if (o == ETRN_DENIED_NONE_ALLOWED || o == ETRN_DENIED_NO_MATCH)
		log_info("ETRN %.*s from [%s]: %s", (int)en->shown_len, en->shown, client,
			 tally.matched ? "not in the etrn_from networks of any of its domains"
				       : "no such queue or domain here");
	(void)etrn_reply(out, o, en->shown, en->shown_len, client, tally.total);
}

void drain_etrn(struct drain *d, const char *client, const char *user, const char *node,
		size_t len, struct buf *out)
{
	struct drain_hub *h = d->hub;
	const struct domtab_row *row;
	struct sockaddr_storage ss;
	struct etrn_node en;
	char who[DRAIN_WHO_MAX];
	enum etrn_outcome o;
	uint64_t n = 0;

	if (!rate_ok(d, client)) {
		char shown[LOG_TEXT_MAX];

		log_warn("ETRN %s from [%s]: over etrn_rate_limit",
			 log_printable(shown, sizeof(shown), node, len), client);
		(void)etrn_reply(out, ETRN_RATE_LIMITED, node, len, client, 0);
		return;
	}
	if (etrn_client_addr(client, &ss)) {
		(void)etrn_reply(out, ETRN_DENIED_ADDRESS, node, len, client, 0);
		return;
	}
	o = etrn_parse(node, len, ETRN_SRC_SMTP, &en);
	if (o != ETRN_OK) {
		(void)etrn_reply(out, o, node, len, client, 0);
		return;
	}
	if (en.kind != ETRN_KIND_DOMAIN) {
		drain_many(h, client, (struct sockaddr *)&ss, user, &en, out);
		return;
	}
	row = domtab_find(domtab_live_get(h->dt), en.name, en.name_len);
	o = etrn_permit(row, (struct sockaddr *)&ss, user);
	if (o != ETRN_OK) {
		log_info("ETRN %s from [%s]: %s", en.name, client,
			 o == ETRN_DENIED_UNKNOWN ? "not a customer domain here"
						  : "not in its etrn_from networks");
		(void)etrn_reply(out, o, en.shown, en.shown_len, client, 0);
		return;
	}
	snprintf(who, sizeof(who), "[%s]", client);
	o = hub_release(h, row, en.name, en.name_len, who, 0, &n);
	o = cluster_count(h, en.name, en.name_len, o, &n);
	cluster_tell(h, o, en.shown, en.shown_len);
	(void)etrn_reply(out, o, en.shown, en.shown_len, client, n);
}

void drain_hub_flush(struct drain_hub *h, const char *node, size_t len, struct buf *out)
{
	const struct domtab_row *row;
	struct etrn_node en;
	enum etrn_outcome o;
	uint64_t n = 0;

	o = etrn_parse(node, len, ETRN_SRC_OPERATOR, &en);
	if (o != ETRN_OK) {
		(void)etrn_reply(out, o, node, len, NULL, 0);
		return;
	}
	if (en.kind != ETRN_KIND_DOMAIN) {
		drain_many(h, "operator", NULL, NULL, &en, out);
		return;
	}
	row = domtab_find(domtab_live_get(h->dt), en.name, en.name_len);
	o = etrn_permit(row, NULL, NULL);
	if (o == ETRN_OK)
		o = hub_release(h, row, en.name, en.name_len, "the operator", 1, &n);
	(void)etrn_reply(out, o, en.shown, en.shown_len, NULL, n);
}

void drain_hub_flush_force(struct drain_hub *h, const char *domain, size_t len,
			   const char *dest, const char *who, struct buf *out)
{
	/* A row of our own: the domain table may not have one any more. */
	struct domtab_row row = { .dest = dest && dest[0] ? dest : NULL };
	const struct domtab_row *known;
	struct etrn_node en;
	enum etrn_outcome o;
	uint64_t n = 0;

	o = etrn_parse(domain, len, ETRN_SRC_OPERATOR, &en);
	if (o == ETRN_OK && en.kind != ETRN_KIND_DOMAIN)
		o = ETRN_SYNTAX_OPERATOR; /* one domain, never @ or # */
	if (o != ETRN_OK) {
		(void)etrn_reply(out, o, domain, len, NULL, 0);
		return;
	}
	log_info("forced flush of %.*s to %s, asked by %s", (int)en.name_len, en.name,
		 row.dest ? row.dest : "its MX", who);
	row.name = en.name;
	/* The domain's TLS policy holds for a forced flush too: forcing
	 * changes where and whether, never how safely. */
	known = domtab_find(domtab_live_get(h->dt), en.name, en.name_len);
	row.tls = known ? known->tls : DOMTAB_TLS_MAY;
	o = hub_start(h, &row, en.name, en.name_len, who, 0, &n);
	(void)etrn_reply(out, o, en.shown, en.shown_len, NULL, n);
}

unsigned drain_hub_shards(struct drain_hub *h, struct drain_status_shard *out, unsigned max)
{
	for (unsigned i = 0; i < h->n && i < max; i++) {
		struct drain *d = __atomic_load_n(&h->drains[i], __ATOMIC_ACQUIRE);

		out[i].loop = d ? d->env.loop : NULL;
		out[i].idx = d ? d->env.idx : NULL;
		out[i].sh = d ? d->env.sh : NULL;
		out[i].drain = d;
	}
	return h->n;
}

const char *drain_hub_hostname(const struct drain_hub *h)
{
	return h->cfg->hostname;
}

const struct config *drain_hub_config(const struct drain_hub *h)
{
	return h->cfg;
}

static void hub_status(struct drain_hub *h, int json, struct buf *out)
{
	struct drain_status_shard *sh = calloc(h->n, sizeof(*sh));

	if (!sh) {
		(void)buf_puts(out, json ? "{\"error\":\"out of memory\"}\n" : "error: out of memory\n");
		return;
	}
	drain_hub_shards(h, sh, h->n);
	drain_status_collect_atrn(sh, h->n, h->atrn, json, out);
	free(sh);
}

void drain_hub_set_cluster(struct drain_hub *h, const struct clusterview_live *view,
			   drain_publish_fn publish, void *arg)
{
	h->view = view;
	h->publish_arg = arg;
	h->publish = publish;
}

const struct clusterview *drain_hub_cluster_view(struct drain_hub *h)
{
	return clusterview_live_get(h->view);
}

void drain_hub_status(struct drain_hub *h, struct buf *out)
{
	hub_status(h, 0, out);
}

void drain_hub_status_json(struct drain_hub *h, struct buf *out)
{
	hub_status(h, 1, out);
}

/* ---- ATRN (the session itself is proto/drain_atrn.c) --------------------- */

struct drain_hub *drain_hub_of(const struct drain *d)
{
	return d->hub;
}

struct drain_atrn_reg *drain_hub_atrn_reg(struct drain_hub *h)
{
	return h->atrn;
}

unsigned drain_hub_threads(const struct drain_hub *h)
{
	return h->n;
}

const struct domtab *drain_hub_domtab(struct drain_hub *h)
{
	return domtab_live_get(h->dt);
}

uint64_t drain_hub_held(struct drain_hub *h, const char *dom, size_t len)
{
	return domstat_msgs(h->ds, dom, len);
}

int drain_hub_stopping(struct drain_hub *h)
{
	int closed;

	pthread_mutex_lock(&h->mu);
	closed = h->closed;
	pthread_mutex_unlock(&h->mu);
	return closed;
}

int drain_hub_claim(struct drain_hub *h, const char *dom, size_t len)
{
	return hub_begin(h, dom, len, 0);
}

void drain_hub_unclaim(struct drain_hub *h, const char *dom, size_t len)
{
	hub_end_all(h, dom, len);
}

/* Under the hub's lock, like fan_out(): nothing is posted once
 * drain_hub_quiesce() has returned. */
int drain_hub_post(struct drain_hub *h, unsigned i, void (*fn)(void *), void *arg)
{
	struct drain *d = i < h->n ? __atomic_load_n(&h->drains[i], __ATOMIC_ACQUIRE) : NULL;
	int rc = -ESHUTDOWN;

	pthread_mutex_lock(&h->mu);
	if (d && !h->closed && loop_post(d->env.loop, fn, arg) == 0)
		rc = 0;
	pthread_mutex_unlock(&h->mu);
	return rc;
}

struct loop *drain_hub_loop(struct drain_hub *h, unsigned i)
{
	struct drain *d = i < h->n ? __atomic_load_n(&h->drains[i], __ATOMIC_ACQUIRE) : NULL;

	return d ? d->env.loop : NULL;
}

/* An ATRN's domains (atrn.h) fit a job's. */
_Static_assert(ETRN_DOMAIN_MAX <= DRAIN_DOMAIN_MAX, "ATRN domain longer than a job's");

/* An ATRN job: delivered over the session's connection, no destination
 * address; the session's TLS is whatever the customer's connection has. */
static struct drain_job *atrn_job(struct drain *d, struct drain_atrn *s, const char *dom,
				  size_t len, int empty, const char *relay)
{
	struct drain_job *j = job_snapshot(d, dom, len, empty);

	if (!j)
		return NULL;
	snprintf(j->relay, sizeof(j->relay), "%s", relay);
	j->tls = DOMTAB_TLS_MAY;
	j->atrn = s;
	drain_atrn_hold(s);
	list_append(&d->jobs, &j->node);
	return j;
}

int drain_atrn_shard(struct drain_hub *h, unsigned i, struct drain_atrn *s,
		     const struct atrn_doms *doms, struct conn_parcel *parcel, int first,
		     int last, const struct smtp_client_session *ss, const char *relay)
{
	struct drain *d = __atomic_load_n(&h->drains[i], __ATOMIC_ACQUIRE);
	struct drain_job *jobs[DRAIN_ATRN_DOMAINS_MAX];
	size_t n = 0, msgs = 0;
	int rc;

	for (unsigned k = 0; k < doms->n; k++) {
		struct drain_job *j = atrn_job(d, s, doms->dom[k], doms->len[k], 0, relay);
		if (j) {
			jobs[n++] = j;
			msgs += j->nmsgs;
		}
	}
	if (n == 0 && !last)
		return 0;
	if (n == 0 && !(jobs[n++] = atrn_job(d, s, doms->dom[0], doms->len[0], 1, relay))) {
		conn_parcel_free(parcel);
		return -ENOMEM;
	}
	rc = drain_conn_atrn_start(jobs, n, parcel, first, last, ss);
	if (rc) {
		while (n--)
			job_end(jobs[n]);
		return rc;
	}
	log_info("ATRN (shard %u): %zu message(s) for %zu domain(s) to %s", d->index, msgs, n,
		 relay);
	return 1;
}

/* ---- per thread ------------------------------------------------------------ */

/* drain_busy() as the loop's busy check. */
static int drain_busy_hook(void *arg)
{
	return drain_busy(arg);
}

static void drain_turn_hook(void *arg)
{
	drain_conn_env_turn(&((struct drain *)arg)->env);
}

struct drain *drain_new(struct drain_hub *h, unsigned index, struct loop *l,
			struct spool_shard *sh)
{
	struct drain *d = calloc(1, sizeof(*d));
	int rc;

	if (!d) {
		errno = ENOMEM;
		return NULL;
	}
	/* Registered before the hub can see d: on failure nothing points
	 * to it and the caller frees the loop without running it. */
	rc = loop_add_busy_check(l, "drain", drain_busy_hook, d);
	if (rc == 0)
		rc = loop_add_turn_hook(l, LOOP_TURN_QUEUE, "drain read slots",
					drain_turn_hook, d);
	if (rc) {
		free(d);
		errno = -rc;
		return NULL;
	}
	d->hub = h;
	d->index = index;
	d->env.loop = l;
	d->env.sh = sh;
	d->env.idx = spool_shard_index(sh);
	d->env.ccf = &h->ccf;
	d->env.hostname = h->cfg->hostname;
	d->env.index = index;
	d->env.job_idle = job_end;
	/* drain_destination_concurrency is node-wide: each thread takes an
	 * equal share (at least one), so no lock is taken per connection. */
	d->env.dest_limit = h->cfg->drain_destination_concurrency / h->n;
	if (d->env.dest_limit == 0)
		d->env.dest_limit = 1;
	d->env.job_conns = h->cfg->drain_connections;
	d->env.reconnects = h->cfg->drain_reconnect_attempts;
	d->env.greeting_ms = h->cfg->drain_greeting_timeout_ms;
	d->env.done_window = h->cfg->drain_done_window;
	d->env.linger_ms = DRAIN_OUT_LINGER_MS;
	__atomic_store_n(&h->drains[index], d, __ATOMIC_RELEASE);
	return d;
}

struct drain *drain_free(struct drain *d)
{
	struct list_node *n;

	if (!d)
		return NULL;
	while ((n = list_pop(&d->jobs))) {
		struct drain_job *j = LIST_ENTRY(n, struct drain_job, node);

		free(j->addrs);
		free(j->msgs);
		free(j);
	}
	while ((n = list_pop(&d->held)))
		free(LIST_ENTRY(n, struct drain_held, node));
	drain_conn_env_fini(&d->env);
	free(d);
	return NULL;
}

void drain_set_retry(struct drain *d, drain_retry_fn fn, void *arg)
{
	d->retry = fn;
	d->retry_arg = arg;
}

void drain_set_sched(struct drain *d, struct sched *s)
{
	d->sched = s;
}

size_t drain_deferred_copy(const struct drain *d, struct sched_status_dest *out, size_t max,
			   uint64_t *now_us)
{
	/* The scheduler's clock (proto/sched.h): its next attempts are in it. */
	*now_us = now_shifted_us((int64_t)d->hub->cfg->clock_offset_ms * 1000);
	return d->sched ? sched_status_copy(d->sched, out, max) : 0;
}

int drain_busy(const struct drain *d)
{
	return d->env.conns > 0 || !list_empty(&d->jobs);
}
