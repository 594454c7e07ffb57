/* SPDX-License-Identifier: MIT */
/*
 * sched_job: the life of one outbound job (see sched_job.h for the states):
 * route, deliver address by address skipping dead ones, then defer what is
 * still pending (a SCHED record per message: its next attempt survives a
 * restart) or, when the domain itself cannot receive mail, bounce it with a
 * DSN. Also the thread's dead-destination cache.
 */
#include "proto/sched_job.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "proto/bounce.h"
#include "proto/drain_atrn.h"
#include "proto/dsn.h"
#include "proto/qid.h"
#include "store/spool_index.h"
#include "store/spool_rec.h"

/* RFC 3463 codes of the scheduler's own verdicts (the drainer gives the
 * server's for what it attempted). */
#define SCHED_DSN_NO_ANSWER "4.4.1"    /* no answer from host */
#define SCHED_DSN_ROUTING "4.4.3"      /* directory server failure */
#define SCHED_DSN_NO_SUCH_DOMAIN "5.1.2" /* bad destination system address */
#define SCHED_DSN_NULL_MX "5.1.10"     /* RFC 7505 3.2: null MX */

static const char *const sched_job_names[SCHED_JOB_NSTATES] = {
	[SCHED_JOB_NEW] = "NEW",
	[SCHED_JOB_ROUTING] = "ROUTING",
	[SCHED_JOB_DELIVERING] = "DELIVERING",
	[SCHED_JOB_BOUNCING] = "BOUNCING",
	[SCHED_JOB_DONE] = "DONE",
};

const char *sched_job_state_name(enum sched_job_state st)
{
	return (unsigned)st < SCHED_JOB_NSTATES ? sched_job_names[st] : "?";
}

/* The one place a job changes state. */
static void sched_job_enter(struct sched_job *j, enum sched_job_state st, const char *why)
{
	log_debug("sched %s (shard %u): %s -> %s (%s)", j->dom->dom, j->index,
		  sched_job_state_name(j->state), sched_job_state_name(st), why);
	j->state = st;
}

void sched_job_free(struct sched_job *j)
{
	if (!j)
		return;
	buf_free(&j->rec);
	buf_free(&j->dsn);
	free(j->rcpt);
	free(j->msgs);
	free(j);
}

/* ---- the dead-destination cache -------------------------------------- */

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	const struct sockaddr_in *a4 = (const void *)a, *b4 = (const void *)b;
	const struct sockaddr_in6 *a6 = (const void *)a, *b6 = (const void *)b;

	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET)
		return a4->sin_port == b4->sin_port &&
		       a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return a6->sin6_port == b6->sin6_port &&
		       !memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof(a6->sin6_addr));
	return 0;
}

/* addr's live dead entry, or NULL (expired entries are dropped here). */
static struct sched_dead *dead_find(struct sched *s, const struct sockaddr_storage *addr,
				    uint64_t now)
{
	for (unsigned i = 0; i < s->ndead; i++) {
		struct sched_dead *e = &s->dead[i];

		if (e->until_us <= now) {
			s->dead[i--] = s->dead[--s->ndead];
			continue;
		}
		if (same_addr(&e->addr, addr))
			return e;
	}
	return NULL;
}

static void dead_mark(struct sched *s, const struct resolver_addr *a, const char *why,
		      uint64_t now)
{
	struct sched_dead *e = dead_find(s, &a->addr, now);

	if (!e && s->ndead < SCHED_DEAD_MAX) {
		e = &s->dead[s->ndead++];
	} else if (!e) {
		e = &s->dead[0];
		for (unsigned i = 1; i < s->ndead; i++)
			if (s->dead[i].until_us < e->until_us)
				e = &s->dead[i];
	}
	memcpy(&e->addr, &a->addr, sizeof(e->addr));
	e->addrlen = a->addrlen;
	e->until_us = now + (uint64_t)s->cfg->minimal_backoff_ms * 1000;
	/* Cut to fit: the log line below has it whole. */
	snprintf(e->why, sizeof(e->why), "%.*s", (int)sizeof(e->why) - 1, why);
	log_info("sched (shard %u): %s is dead for %u s: %s", s->index, a->relay,
		 s->cfg->minimal_backoff_ms / 1000, why);
}

void sched_job_dead_clear(struct sched *s)
{
	s->ndead = 0;
}

/* ---- ending ---------------------------------------------------------------- */

/* Release the job's entries and its place in the domain; the domain is
 * readied (its other due mail, if any, gets the freed job slot). */
static void job_end(struct sched_job *j)
{
	struct sched *s = j->s;

	sched_job_enter(j, SCHED_JOB_DONE, "ended");
	spool_index_set_busy_n(s->idx, j->msgs, j->nmsgs, j->dom->dom, j->dom->len, 0);
	j->dom->jobs--;
	sched_ready(s, j->dom);
	if (j->waiting)
		list_unlink(&s->waiting, &j->wait_node);
	list_unlink(&s->jobs, &j->node);
	sched_job_free(j);
}

/* Keep the last relay and error for etrnctl status. */
static void job_note(struct sched_job *j, const char *relay, const char *why)
{
	if (relay)
		snprintf(j->dom->relay, sizeof(j->dom->relay), "%.*s",
			 (int)sizeof(j->dom->relay) - 1, relay);
	if (why && why[0])
		snprintf(j->dom->why, sizeof(j->dom->why), "%.*s",
			 (int)sizeof(j->dom->why) - 1, why);
}

/* One line per message never attempted, Postfix-shaped. The recipients'
 * addresses are in the record, which a deferral does not read: the line
 * names their domain, to=<@domain> (the drainer's lines name each recipient
 * of what it attempted). delays: all of the delay was before the job. */
static void log_deferred(const struct sched_job *j, uint64_t msgid, uint64_t arrival,
			 uint64_t now, const char *relay, const char *dsn, const char *why)
{
	char qid[QID_MAX];
	double delay = now > arrival ? (double)(now - arrival) / 1e6 : 0;

	qid_format(msgid, qid);
	log_info("%s: to=<@%s>, relay=%s, delay=%.1f, delays=%.1f/0/0/0, dsn=%s, "
		 "status=deferred (%s)", qid, j->dom->dom, relay, delay, delay, dsn, why);
}

/* Defer every entry of j still pending in its domain: next attempt by the
 * back-off rule, written as a SCHED record. logged: one line per message
 * (nothing was attempted). Returns how many were deferred. */
static size_t job_defer(struct sched_job *j, const char *relay, const char *dsn,
			const char *why, int logged)
{
	struct sched *s = j->s;
	uint64_t now = sched_now_us(s);
	uint64_t lo = (uint64_t)s->cfg->minimal_backoff_ms * 1000;
	uint64_t hi = (uint64_t)s->cfg->maximal_backoff_ms * 1000;
	uint64_t first = UINT64_MAX;
	size_t n = 0;

	for (size_t i = 0; i < j->nmsgs; i++) {
		struct spool_index_entry e;
		uint64_t next;
		int rc;

		if (spool_index_msg_find(s->idx, j->msgs[i], &e))
			continue; /* finished */
		next = sched_next_attempt(now, e.time_us, lo, hi);
		rc = spool_append_sched(s->sh, j->msgs[i], j->dom->dom, j->dom->len, next,
					NULL, NULL);
		if (rc == -ENOENT)
			continue; /* nothing pending in this domain any more */
		if (rc) /* the index still learns it; a restart tries sooner */
			(void)spool_index_set_next(s->idx, j->msgs[i], j->dom->dom,
						   j->dom->len, next);
		if (logged)
			log_deferred(j, j->msgs[i], e.time_us, now, relay, dsn, why);
		if (next < first)
			first = next;
		n++;
	}
	if (n) {
		sched_wake_at(s, j->dom, first);
		j->dom->deferrals += n;
		log_info("sched %s (shard %u): %zu message(s) deferred, next attempt in %.0f s: %s",
			 j->dom->dom, s->index, n, (double)(first - now) / 1e6, why);
	}
	job_note(j, relay, why);
	return n;
}

/* ---- delivering ----------------------------------------------------------- */

static void job_deliver(struct sched_job *j);

/* Keep only the entries still pending in the job's domain (1 if any). */
static int job_still_pending(struct sched_job *j)
{
	size_t k = 0;

	for (size_t i = 0; i < j->nmsgs; i++)
		/* -ENOENT: finished in this domain. Marks it ours again. */
		if (spool_index_set_busy(j->s->idx, j->msgs[i], j->dom->dom, j->dom->len, 1) == 0)
			j->msgs[k++] = j->msgs[i];
	j->nmsgs = k;
	return k > 0;
}

/* drain_outbound()'s done: on our thread, the job's DONEs durable. */
static void job_delivered(void *arg, const struct drain_out_result *res)
{
	struct sched_job *j = arg;
	struct sched *s = j->s;
	const struct resolver_addr *a = &j->route.a[j->addr];
	uint64_t attempted = res->sent + res->deferred + res->bounced;

	job_note(j, a->relay, res->why);
	/* After-outbound (proto/activator.h): mail just went to the relayhost. */
	if (j->kind == ROUTE_RELAYHOST && res->sent > 0 && s->relayed_fn)
		s->relayed_fn(s->relayed_arg);
	if (attempted == 0 && res->conn_failures && !res->tls_held) {
		dead_mark(s, a, res->why[0] ? res->why : "connection failed", sched_now_us(s));
		j->addr++;
		if (!s->stopping && job_still_pending(j)) {
			job_deliver(j); /* at once, to the next address */
			return;
		}
	}
	(void)job_defer(j, a->relay, SCHED_DSN_NO_ANSWER,
			res->why[0] ? res->why : "not delivered", attempted == 0);
	job_end(j);
}

/* Every address left is dead: defer without connecting. */
static void job_all_dead(struct sched_job *j, const struct sched_dead *last)
{
	char why[SCHED_TARGET_MAX + SCHED_STATUS_WHY_MAX + 32];

	snprintf(why, sizeof(why), "destination %s is dead (%s)", j->target,
		 last ? last->why : "no address");
	(void)job_defer(j, "none", SCHED_DSN_NO_ANSWER, why, 1);
	job_end(j);
}

/* Hand the entries to the drainer for route.a[addr], skipping dead
 * addresses; ends the job when none is left or nothing could start. */
static void job_deliver(struct sched_job *j)
{
	struct sched *s = j->s;
	uint64_t now = sched_now_us(s);
	const struct sched_dead *last = NULL, *dd;
	struct drain_out_req rq;
	int rc;

	while (j->addr < j->route.n && (dd = dead_find(s, &j->route.a[j->addr].addr, now))) {
		last = dd;
		j->addr++;
	}
	if (j->addr >= j->route.n) {
		/* The address that just failed, when none was skipped. */
		if (!last && j->addr > 0)
			last = dead_find(s, &j->route.a[j->addr - 1].addr, now);
		job_all_dead(j, last);
		return;
	}
	/* The drainer marks the entries busy itself for the job's life. */
	spool_index_set_busy_n(s->idx, j->msgs, j->nmsgs, j->dom->dom, j->dom->len, 0);
	memset(&rq, 0, sizeof(rq));
	rq.dom = j->dom->dom;
	rq.len = j->dom->len;
	rq.msgs = j->msgs;
	rq.nmsgs = j->nmsgs;
	memcpy(&rq.dst, &j->route.a[j->addr].addr, sizeof(rq.dst));
	rq.dstlen = j->route.a[j->addr].addrlen;
	rq.relay = j->route.a[j->addr].relay;
	rq.tls = j->tls;
	sched_job_enter(j, SCHED_JOB_DELIVERING, rq.relay);
	rc = drain_outbound(s->drain, &rq, job_delivered, j);
	if (rc == -ENOENT) { /* nothing of it left: delivered or taken meanwhile */
		job_end(j);
	} else if (rc) {
		char why[RESOLVER_RELAY_MAX + 128];

		snprintf(why, sizeof(why), "cannot start delivery to %s: %s", rq.relay,
			 strerror(-rc));
		(void)job_defer(j, rq.relay, SCHED_DSN_NO_ANSWER, why, 1);
		job_end(j);
	}
}

/* ---- bouncing (the domain cannot receive mail) ----------------------------- */

static void bounce_next(struct sched_job *j);

/* The recipients of msgid pending in the job's domain (its queue entry's)
 * into j->rcpt; returns how many, or -ENOMEM. */
static int bounce_rcpts(struct sched_job *j, uint64_t msgid)
{
	struct spool_index_entry e;

	if (spool_index_msg_entry(j->s->idx, msgid, j->dom->dom, j->dom->len, &e))
		return 0;
	if (e.npending > j->rcpt_cap) {
		uint32_t *p = realloc(j->rcpt, e.npending * sizeof(*p));
		if (!p)
			return -ENOMEM;
		j->rcpt = p;
		j->rcpt_cap = e.npending;
	}
	memcpy(j->rcpt, e.rcpts, e.npending * sizeof(*j->rcpt));
	j->nrcpt = e.npending;
	return (int)j->nrcpt;
}

static void bounce_done(void *arg, int err)
{
	struct sched_job *j = arg;
	char qid[QID_MAX];

	if (err)
		log_err("%s: bounce not recorded (%s); the message stays queued",
			qid_format(j->cur, qid), strerror(-err));
	bounce_next(j);
}

/* Log and queue the DSN and DONEs of the read record: 0 (bounce_done()
 * follows) or -errno. */
static int bounce_queue_read(struct sched_job *j, const struct spool_rec_hdr *hdr,
			     const struct spool_rec_msg *m)
{
	struct sched *s = j->s;
	const char *status = j->route.err == -ENXIO ? SCHED_DSN_NULL_MX : SCHED_DSN_NO_SUCH_DOMAIN;
	struct dsn_rcpt *dr = calloc(j->nrcpt, sizeof(*dr));
	char qid[QID_MAX], addr[LOG_ADDR_MAX];
	uint64_t dsn_id, now = sched_now_us(s);
	struct bounce_req br;
	int rc;

	if (!dr)
		return -ENOMEM;
	qid_format(j->cur, qid);
	for (uint32_t i = 0; i < j->nrcpt; i++) {
		struct spool_rec_addr a = spool_rec_msg_rcpt(m, j->rcpt[i]);

		dr[i].action = DSN_ACTION_FAILED;
		dr[i].status = status;
		dr[i].diagnostic = j->route.why;
		dr[i].diag_len = strlen(j->route.why);
		log_info("%s: to=<%s>, relay=none, delay=%.0f, delays=%.0f/0/0/0, dsn=%s, "
			 "status=bounced (%s)", qid, log_printable(addr, sizeof(addr), a.p, a.len),
			 (double)(now - hdr->time_us) / 1e6, (double)(now - hdr->time_us) / 1e6,
			 status, j->route.why);
	}
	br = bounce_req_make(s->cfg->hostname, hdr, m, j->rcpt, dr, j->nrcpt,
			     SPOOL_DONE_BOUNCED, now);
	/* A DSN is never sent for a DSN: bounce_queue() builds none for the
	 * null sender and only writes the DONEs. */
	rc = bounce_queue(s->sh, &br, &j->dsn, &dsn_id, bounce_done, j);
	free(dr);
	if (rc == 0 && dsn_id) {
		char dq[QID_MAX];
		log_info("%s: sender non-delivery notification: %s", qid, qid_format(dsn_id, dq));
	}
	return rc;
}

static void bounce_read(void *arg, int err)
{
	struct sched_job *j = arg;
	struct spool_rec_hdr hdr;
	struct spool_rec_msg m;
	const char *payload;
	char qid[QID_MAX];

	qid_format(j->cur, qid);
	if (err) {
		log_err("%s: cannot read it to bounce it: %s; it stays queued", qid,
			strerror(-err));
	} else if (spool_rec_decode(j->rec.data, j->rec.len, &hdr, &payload) != SPOOL_REC_OK ||
		   hdr.type != SPOOL_REC_MSG || hdr.msgid != j->cur ||
		   spool_rec_decode_msg(payload, hdr.length, &m) != SPOOL_REC_OK) {
		log_err("%s: stored record does not check; not bounced", qid);
	} else if (bounce_rcpts(j, j->cur) > 0 && (err = bounce_queue_read(j, &hdr, &m)) == 0) {
		return; /* bounce_done() goes on */
	} else if (err) {
		log_err("%s: cannot bounce: %s; it stays queued", qid, strerror(-err));
	}
	bounce_next(j);
}

/* Start reading the next message to bounce; the job ends after the last. */
static void bounce_next(struct sched_job *j)
{
	struct sched *s = j->s;

	while (!s->stopping && j->bnext < j->nmsgs) {
		uint64_t id = j->msgs[j->bnext++];
		struct spool_index_entry e;
		int rc;

		if (bounce_rcpts(j, id) <= 0 || spool_index_msg_find(s->idx, id, &e))
			continue;
		j->cur = id;
		buf_reset(&j->rec);
		if (buf_reserve(&j->rec, e.rec_len))
			continue; /* stays queued: expiry or the next attempt */
		j->rec.len = e.rec_len;
		rc = spool_shard_read(s->sh, e.segment_id, e.off, e.rec_len, j->rec.data,
				      bounce_read, j);
		if (rc == 0)
			return;
		if (rc == -EBUSY) { /* every read slot in use: next turn */
			j->bnext--;
			j->waiting = 1;
			list_append(&s->waiting, &j->wait_node);
			return;
		}
	}
	job_end(j);
}

void sched_job_retry_waiting(struct sched *s)
{
	struct list_node *n;

	while ((n = list_pop(&s->waiting))) {
		struct sched_job *j = LIST_ENTRY(n, struct sched_job, wait_node);

		j->waiting = 0;
		bounce_next(j);
		if (j->waiting)
			break; /* still no slot: the rest wait too */
	}
}

/* ---- routing --------------------------------------------------------------- */

/* The route is known (j->route): deliver, bounce or defer. */
static void job_routed_now(struct sched_job *j)
{
	const struct resolver_list *r = &j->route;

	if (r->err == 0 && r->n > 0) {
		job_deliver(j);
	} else if (r->permanent && j->kind == ROUTE_MX) {
		/* The recipients' own domain cannot receive mail (RFC 5321
		 * 5.1, RFC 7505): a route or relayhost that does not resolve
		 * is the operator's to fix, and defers. */
		sched_job_enter(j, SCHED_JOB_BOUNCING, r->why);
		bounce_next(j);
	} else {
		(void)job_defer(j, "none", SCHED_DSN_ROUTING,
				r->why[0] ? r->why : "no address to try", 1);
		job_end(j);
	}
}

/* The answer, back on the scheduler's thread. */
static void job_routed(void *arg)
{
	struct sched_job *j = arg;
	struct sched *s = j->s;

	s->lookups--;
	list_append(&s->jobs, &j->node);
	if (s->stopping) {
		job_end(j); /* untouched: tried again after the restart */
		return;
	}
	job_routed_now(j);
}

/* resolver_route()'s answer, on the resolver's thread: only the job's own
 * fields are touched here. The post is refused once the hub quiesced (the
 * loop may be gone): the job is freed here then. */
static void job_route_cb(void *cookie, const struct resolver_list *res)
{
	struct sched_job *j = cookie;

	j->route = *res;
	if (drain_hub_post(j->hub, j->index, job_routed, j))
		sched_job_free(j);
}

int sched_job_start(struct sched *s, const struct domtab *t, struct sched_dom *sd,
		    const uint64_t *msgs, size_t n, uint64_t now)
{
	struct sched_job *j = calloc(1, sizeof(*j));
	const struct domtab_row *row = domtab_find(t, sd->dom, sd->len);
	int rc;

	if (j)
		j->msgs = malloc(n * sizeof(*j->msgs));
	if (!j || !j->msgs) {
		free(j);
		spool_index_set_busy_n(s->idx, msgs, n, sd->dom, sd->len, 0);
		log_err("sched %s (shard %u): out of memory; retried later", sd->dom, s->index);
		return -ENOMEM;
	}
	memcpy(j->msgs, msgs, n * sizeof(*msgs));
	j->nmsgs = n;
	j->s = s;
	j->dom = sd;
	j->hub = s->hub;
	j->index = s->index;
	j->started_us = now;
	j->tls = row ? row->tls : DOMTAB_TLS_MAY;
	buf_init(&j->rec, 0);
	buf_init(&j->dsn, 0);
	sd->jobs++;
	j->kind = route_pick(t, s->cfg->relayhost, sd->dom, sd->len, j->target, sizeof(j->target));
	log_info("sched %s (shard %u): %zu message(s), %s %s", sd->dom, s->index, n,
		 route_kind_name(j->kind), j->target);
	/* Off every list and counted before the look-up starts: its answer
	 * may come back on the resolver's thread at once. */
	sched_job_enter(j, SCHED_JOB_ROUTING, route_kind_name(j->kind));
	s->lookups++;
	rc = route_resolve(s->resolver, j->kind, j->target, job_route_cb, j, &j->route);
	if (rc == 0)
		return 0;
	s->lookups--;
	list_append(&s->jobs, &j->node);
	if (rc < 0) {
		j->route.err = rc;
		j->route.permanent = 0;
		snprintf(j->route.why, sizeof(j->route.why), "cannot look up %s: %s", j->target,
			 strerror(-rc));
	}
	job_routed_now(j);
	return 0;
}
