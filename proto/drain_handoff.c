/* SPDX-License-Identifier: MIT */
/*
 * drain_handoff: see drain_handoff.h. The asker and the threads meet at a
 * reference-counted rendezvous (core/rendezvous.h), as drain_status.c's
 * report does; a thread answers once its last outbound job has ended (from
 * that job's done callback), so an answer means durable DONEs.
 */
#include "proto/drain_handoff.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clusterview.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/netaddr.h"
#include "core/rendezvous.h"
#include "core/resolver.h"
#include "proto/drain_status.h"
#include "store/spool_index.h"

/* A live peer as one thread uses it for a round. */
struct handoff_peer {
	struct sockaddr_storage dst;
	socklen_t dstlen;
	char relay[DRAIN_RELAY_MAX];   /* "id[addr]:port", for logs */
};

struct handoff_req {
	struct rendezvous rv;          /* rv.mu guards res */
	struct drain_handoff_conf cf;
	struct drain_handoff_result res;
	unsigned peers_min;
};

/* One thread's part: lives until its last job's done (or no job). */
struct handoff_shard {
	struct handoff_req *rq;
	struct drain *d;
	struct spool_index *idx;
	unsigned index;
	unsigned jobs;                 /* outbound jobs not ended */
	unsigned npeers;
	struct drain_handoff_result res;
	struct handoff_peer peers[DRAIN_HANDOFF_PEERS_MAX];
};

static void handoff_put(struct handoff_req *rq)
{
	if (!rendezvous_put(&rq->rv))
		return;
	rendezvous_destroy(&rq->rv);
	free(rq);
}

/* The thread's part is over: what is left in its shard, to the asker. */
static void handoff_answer(struct handoff_shard *hs)
{
	struct handoff_req *rq = hs->rq;
	struct drain_handoff_result *r = &rq->res;
	struct spool_index_totals t;

	spool_index_totals(hs->idx, &t);
	pthread_mutex_lock(&rq->rv.mu);
	r->answered++;
	if (hs->npeers < rq->peers_min)
		rq->peers_min = hs->npeers;
	r->peers = rq->peers_min;
	r->jobs += hs->res.jobs;
	r->sent += hs->res.sent;
	r->deferred += hs->res.deferred;
	r->bounced += hs->res.bounced;
	r->untried += hs->res.untried;
	r->left += t.messages;
	if (hs->res.why[0])
		snprintf(r->why, sizeof(r->why), "%s", hs->res.why);
	rendezvous_end_locked(&rq->rv);
	pthread_mutex_unlock(&rq->rv.mu);
	free(hs);
	handoff_put(rq);
}

/* drain_outbound()'s done: on the thread, after the job's DONEs are durable. */
static void handoff_done(void *arg, const struct drain_out_result *res)
{
	struct handoff_shard *hs = arg;

	hs->res.sent += res->sent;
	hs->res.deferred += res->deferred;
	hs->res.bounced += res->bounced;
	hs->res.untried += res->untried;
	if (res->why[0])
		snprintf(hs->res.why, sizeof(hs->res.why), "%s", res->why);
	if (--hs->jobs == 0)
		handoff_answer(hs);
}

/* The view's live peers (up, not draining, a numeric cluster address) into
 * hs->peers. On the engine thread, an epoch reader: the view's pointers
 * are used only within this call. */
static void handoff_peers(struct handoff_shard *hs)
{
	const struct clusterview_node *nodes[DRAIN_HANDOFF_PEERS_MAX];
	const struct clusterview *v = clusterview_live_get(hs->rq->cf.view);
	size_t n = clusterview_nodes(v, nodes, DRAIN_HANDOFF_PEERS_MAX);

	hs->npeers = 0;
	for (size_t i = 0; i < n && i < DRAIN_HANDOFF_PEERS_MAX; i++) {
		struct handoff_peer *p = &hs->peers[hs->npeers];
		char host[CLUSTERVIEW_ADDR_MAX];
		unsigned port;

		if (nodes[i]->state != CLUSTERVIEW_UP || !nodes[i]->addr[0])
			continue;
		if (resolver_dest_split(nodes[i]->addr, host, sizeof(host), 0, &port, NULL) ||
		    !port || netaddr_from_text(host, port, &p->dst, &p->dstlen)) {
			log_warn("hand-off: node %s: cluster address %s is not a numeric "
				 "host:port; skipped", nodes[i]->id, nodes[i]->addr);
			continue;
		}
		snprintf(p->relay, sizeof(p->relay), "%s[%s]:%u", nodes[i]->id, host, port);
		hs->npeers++;
	}
}

/* Start the jobs of one domain: its free messages (not in flight in
 * another job) split over the peers, rotated by the domain's hash. */
static void handoff_domain(struct handoff_shard *hs, const char *dom, size_t len,
			   uint64_t *msgs, size_t cap)
{
	const struct spool_index_queue *q = spool_index_queue(hs->idx, dom, len);
	struct spool_index_iter it;
	struct spool_index_entry e;
	size_t n = 0, per, first;

	if (!q)
		return;
	spool_index_queue_iter(q, &it);
	while (n < cap && spool_index_queue_next(&it, &e))
		if (!e.busy && !e.held) /* held: quarantined, stays here */
			msgs[n++] = e.msgid;
	if (!n)
		return;
	first = hash_fin32(hash_fnv32_lower(HASH_FNV32_INIT, dom, len)) % hs->npeers;
	per = (n + hs->npeers - 1) / hs->npeers;
	for (size_t k = 0, off = 0; k < hs->npeers && off < n; k++, off += per) {
		const struct handoff_peer *p = &hs->peers[(first + k) % hs->npeers];
		struct drain_out_req rq = {
			.dom = dom, .len = len, .msgs = msgs + off,
			.nmsgs = n - off < per ? n - off : per, .dstlen = p->dstlen,
			.relay = p->relay, .tls = hs->rq->cf.tls,
			.auth_user = hs->rq->cf.node_id, .auth_pass = hs->rq->cf.secret,
		};
		int rc;

		memcpy(&rq.dst, &p->dst, p->dstlen);
		rc = drain_outbound(hs->d, &rq, handoff_done, hs);
		if (rc == 0) {
			hs->jobs++;
			hs->res.jobs++;
		} else if (rc != -ENOENT) {
			log_warn("hand-off %.*s (shard %u) to %s: %s; stays queued", (int)len, dom,
				 hs->index, p->relay, strerror(-rc));
		}
	}
}

/* On the engine thread: the names of up to DRAIN_HANDOFF_DOMAINS_MAX
 * queues first (starting jobs changes busy marks, never the queue list,
 * but the walk promises nothing then), then their jobs. */
static void handoff_run(void *arg)
{
	struct handoff_shard *hs = arg;
	struct spool_index_totals t;
	const struct spool_index_queue *q;
	char (*doms)[DRAIN_DOMAIN_MAX] = NULL;
	size_t *lens = NULL, nd = 0, cursor = 0;
	uint64_t *msgs = NULL;

	handoff_peers(hs);
	spool_index_totals(hs->idx, &t);
	if (hs->npeers && t.messages) {
		doms = calloc(DRAIN_HANDOFF_DOMAINS_MAX, sizeof(*doms));
		lens = calloc(DRAIN_HANDOFF_DOMAINS_MAX, sizeof(*lens));
		msgs = malloc(t.messages * sizeof(*msgs));
	}
	while (doms && lens && msgs && nd < DRAIN_HANDOFF_DOMAINS_MAX &&
	       (q = spool_index_queue_each(hs->idx, &cursor))) {
		struct spool_index_qstat st;

		spool_index_queue_stat(q, &st);
		if (!st.messages || st.domain_len >= DRAIN_DOMAIN_MAX)
			continue;
		memcpy(doms[nd], st.domain, st.domain_len);
		lens[nd++] = st.domain_len;
	}
	if (hs->npeers && t.messages && !(doms && lens && msgs))
		snprintf(hs->res.why, sizeof(hs->res.why), "out of memory");
	/* A job's done never runs inside drain_outbound(): hs lives on. */
	for (size_t i = 0; i < nd; i++)
		handoff_domain(hs, doms[i], lens[i], msgs, t.messages);
	free(msgs);
	free(lens);
	free(doms);
	if (!hs->npeers && t.messages)
		snprintf(hs->res.why, sizeof(hs->res.why), "no live peer in the cluster view");
	if (hs->jobs == 0)
		handoff_answer(hs);
}

int drain_handoff_round(struct drain_hub *h, const struct drain_handoff_conf *cf,
			unsigned wait_ms, struct drain_handoff_result *res)
{
	unsigned n = drain_hub_shards(h, NULL, 0);
	struct drain_status_shard *sh = calloc(n ? n : 1, sizeof(*sh));
	struct handoff_req *rq = calloc(1, sizeof(*rq));
	int timed_out;

	memset(res, 0, sizeof(*res));
	if (!sh || !rq) {
		free(sh);
		free(rq);
		return -ENOMEM;
	}
	n = drain_hub_shards(h, sh, n);
	rendezvous_init(&rq->rv);
	rq->cf = *cf;
	rq->res.threads = n;
	rq->peers_min = DRAIN_HANDOFF_PEERS_MAX;
	for (unsigned i = 0; i < n; i++) {
		struct handoff_shard *hs = sh[i].loop && sh[i].drain ? calloc(1, sizeof(*hs)) : NULL;

		if (!hs)
			continue;
		hs->rq = rq;
		hs->d = sh[i].drain;
		hs->idx = sh[i].idx;
		hs->index = i;
		rendezvous_hold(&rq->rv);
		if (loop_post(sh[i].loop, handoff_run, hs)) {
			free(hs);
			rendezvous_unhold(&rq->rv);
		}
	}
	free(sh);
	timed_out = rendezvous_wait(&rq->rv, wait_ms);
	*res = rq->res;
	if (!res->answered)
		res->peers = 0;
	pthread_mutex_unlock(&rq->rv.mu);
	handoff_put(rq);
	return timed_out ? -ETIMEDOUT : 0;
}
