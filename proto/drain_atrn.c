/* SPDX-License-Identifier: MIT */
/*
 * drain_atrn: see drain_atrn.h. One session's path:
 *
 *   thread T: drain_atrn()  parse, ownership, cap, claim the domains, count
 *             what is held; reply 250 (or 450/451/453/501) at once.
 *   thread T: drain_atrn_take()  the customer's connection as a parcel.
 *   thread 0, 1, ... n-1 in turn (session_step(), posted): the shard's
 *             drain adopts the connection when it holds mail for the
 *             domains (the first one waits for the 220 and says EHLO), else
 *             the session moves on at once; the last always adopts, to QUIT.
 *   the connection over (QUIT answered, customer gone, 421) and every
 *   job ended: the domains are released (drain_atrn_put()).
 */
#include "proto/drain_atrn.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ascii.h"
#include "core/clusterview.h"
#include "core/domtab.h"
#include "core/list.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/loop.h"
#include "core/now.h"
#include "proto/atrn_collect.h"
#include "proto/drain.h"
#include "proto/drain_status.h"
#include "proto/etrn.h"

/* Explicit session states; atrn_enter() is the one transition. */
enum drain_atrn_state {
	DRAIN_ATRN_S_DETACHING = 0, /* 250 sent; the connection is being detached */
	DRAIN_ATRN_S_MOVING,        /* posted to the next shard */
	DRAIN_ATRN_S_RUNNING,       /* a shard's drain has the connection */
	DRAIN_ATRN_S_COLLECTING,    /* other nodes' mail relayed (issue 16) */
	DRAIN_ATRN_S_ENDING,        /* connection over; jobs' DONEs in flight */
	DRAIN_ATRN_S_NSTATES
};

static const char *const atrn_state_names[DRAIN_ATRN_S_NSTATES] = {
	[DRAIN_ATRN_S_DETACHING] = "detaching",
	[DRAIN_ATRN_S_MOVING] = "moving",
	[DRAIN_ATRN_S_RUNNING] = "running",
	[DRAIN_ATRN_S_COLLECTING] = "collecting",
	[DRAIN_ATRN_S_ENDING] = "ending",
};

struct drain_atrn_reg {
	pthread_mutex_t mu;            /* guards list, n, and each session's
	                                  state and shard (status reads them) */
	struct list list;              /* of drain_atrn.node */
	unsigned n;
	/* Cross-node ATRN: set before the engines start, read-only after. */
	const struct config *cfg;
	drain_atrn_secret_fn secret;
	const void *secret_arg;
	struct tls_ctx *tls;
};

void drain_atrn_set_cluster(struct drain_atrn_reg *r, const struct config *cfg,
			    drain_atrn_secret_fn secret, const void *secret_arg,
			    struct tls_ctx *tls)
{
	r->cfg = cfg;
	r->secret = secret;
	r->secret_arg = secret_arg;
	r->tls = tls;
}

/* One session. Touched by one thread at a time (the hand-offs are
 * loop_post()s), except refs and delivered (atomics) and state and shard
 * (written under reg->mu). */
struct drain_atrn {
	struct list_node node;
	struct drain_atrn_reg *reg;
	struct drain_hub *h;
	enum drain_atrn_state state;
	unsigned shard;                /* the shard that has (or gets) it */
	_Atomic unsigned refs;         /* the connection + one per job */
	_Atomic uint64_t delivered;    /* messages (per domain) delivered */
	uint64_t total;                /* held at the ATRN, per domain */
	int greeted;                   /* a shard got the 220 and sent EHLO */
	int from_node;                 /* asked by another node (cluster_listen) */
	/* Other nodes holding mail for the domains (issue 16): collected
	 * from after the last shard (proto/atrn_collect.h). */
	struct atrn_collect_peer peers[ATRN_COLLECT_PEERS_MAX];
	unsigned npeers;
	uint64_t remote;               /* their messages, as their hashes said */
	struct conn_parcel *parcel;    /* between two shards */
	struct smtp_client_session ss; /* carried from shard to shard */
	uint64_t started_us;
	char user[DRAIN_ATRN_USER_MAX];
	char client[DRAIN_ATRN_CLIENT_MAX];
	char relay[DRAIN_RELAY_MAX];   /* "ATRN customer [addr]" for log lines */
	struct atrn_doms doms;
};

/* ---- the registry --------------------------------------------------------- */

struct drain_atrn_reg *drain_atrn_reg_new(void)
{
	struct drain_atrn_reg *r = calloc(1, sizeof(*r));

	if (r)
		pthread_mutex_init(&r->mu, NULL);
	return r;
}

struct drain_atrn_reg *drain_atrn_reg_free(struct drain_atrn_reg *r)
{
	struct list_node *n;

	if (!r)
		return NULL;
	/* Sessions whose last post was dropped by a stopped loop. */
	while ((n = list_pop(&r->list))) {
		struct drain_atrn *s = LIST_ENTRY(n, struct drain_atrn, node);

		if (s->parcel)
			conn_parcel_free(s->parcel);
		free(s);
	}
	pthread_mutex_destroy(&r->mu);
	free(r);
	return NULL;
}

unsigned drain_atrn_count(struct drain_atrn_reg *r)
{
	unsigned n;

	pthread_mutex_lock(&r->mu);
	n = r->n;
	pthread_mutex_unlock(&r->mu);
	return n;
}

/* List s unless DRAIN_ATRN_SESSIONS_MAX are: 0, or -EBUSY. */
static int reg_admit(struct drain_atrn_reg *r, struct drain_atrn *s)
{
	int rc = -EBUSY;

	pthread_mutex_lock(&r->mu);
	if (r->n < DRAIN_ATRN_SESSIONS_MAX) {
		list_append(&r->list, &s->node);
		r->n++;
		s->reg = r;
		rc = 0;
	}
	pthread_mutex_unlock(&r->mu);
	return rc;
}

static void reg_remove(struct drain_atrn *s)
{
	struct drain_atrn_reg *r = s->reg;

	pthread_mutex_lock(&r->mu);
	list_unlink(&r->list, &s->node);
	r->n--;
	pthread_mutex_unlock(&r->mu);
}

/* The one place a session's state (and shard) changes; logged. */
static void atrn_enter(struct drain_atrn *s, enum drain_atrn_state st, unsigned shard,
		       const char *why)
{
	log_debug("ATRN %s [%s]: %s -> %s (shard %u: %s)", s->user, s->client,
		  atrn_state_names[s->state], atrn_state_names[st], shard, why);
	pthread_mutex_lock(&s->reg->mu);
	s->state = st;
	s->shard = shard;
	pthread_mutex_unlock(&s->reg->mu);
}

/* The domain list as logs and status show it ("a.test,b.test"): room for
 * ATRN_DOMAINS_MAX names of 63 octets, cut beyond (the log only). */
#define DRAIN_ATRN_DOMS_TEXT (ATRN_DOMAINS_MAX * 64)

static void doms_join(const struct atrn_doms *d, char *out, size_t n)
{
	size_t off = 0;

	out[0] = '\0';
	for (unsigned i = 0; i < d->n && off < n; i++) {
		int k = snprintf(out + off, n - off, "%s%s", i ? "," : "", d->dom[i]);
		if (k < 0)
			break;
		off += (size_t)k;
	}
}

/* One session: a text line (user printable: AUTH's checks), or a JSON
 * object (strings escaped). */
static void status_one(const struct drain_atrn *s, unsigned nthreads, struct buf *out, int json)
{
	char doms[DRAIN_ATRN_DOMS_TEXT];
	uint64_t sent = atomic_load(&s->delivered);

	doms_join(&s->doms, doms, sizeof(doms));
	if (!json) {
		(void)buf_printf(out, "atrn user=%s client=%s domains=%s shard=%u/%u delivered=%" PRIu64
				 "/%" PRIu64 " state=%s\n", s->user, s->client, doms, s->shard,
				 nthreads, sent, s->total, atrn_state_names[s->state]);
		return;
	}
	(void)buf_puts(out, "{\"user\":");
	drain_status_json_str(out, s->user, strlen(s->user));
	(void)buf_puts(out, ",\"client\":");
	drain_status_json_str(out, s->client, strlen(s->client));
	(void)buf_puts(out, ",\"domains\":[");
	for (unsigned i = 0; i < s->doms.n; i++)
		(void)buf_printf(out, "%s\"%s\"", i ? "," : "", s->doms.dom[i]);
	(void)buf_printf(out, "],\"shard\":%u,\"shards\":%u,\"delivered\":%" PRIu64
			 ",\"total\":%" PRIu64 ",\"state\":\"%s\"}", s->shard, nthreads, sent,
			 s->total, atrn_state_names[s->state]);
}

void drain_atrn_status(struct drain_atrn_reg *r, struct buf *out, int json)
{
	const struct list_node *n;
	int first = 1;

	pthread_mutex_lock(&r->mu);
	if (json)
		(void)buf_puts(out, "[");
	LIST_FOREACH(n, &r->list) {
		const struct drain_atrn *s = LIST_ENTRY(n, struct drain_atrn, node);

		if (json && !first)
			(void)buf_puts(out, ",");
		status_one(s, drain_hub_threads(s->h), out, json);
		first = 0;
	}
	if (json)
		(void)buf_puts(out, "]");
	pthread_mutex_unlock(&r->mu);
}

/* ---- the decision --------------------------------------------------------- */

/* The named domains: each must be the user's (its row's owner, exact: a
 * wildcard row the user owns covers its subdomains). */
static enum atrn_verdict atrn_check_named(struct drain_atrn *s, const struct domtab *t)
{
	for (unsigned i = 0; i < s->doms.n; i++) {
		const struct domtab_row *row = domtab_find(t, s->doms.dom[i], s->doms.len[i]);

		if (!row || !row->owner || strcmp(row->owner, s->user)) {
			log_info("ATRN %s from [%s] as %s: %s is not the user's; refused",
				 s->doms.dom[i], s->client, s->user,
				 row ? "the domain" : "no such domain here:");
			return ATRN_DENIED;
		}
	}
	return ATRN_OK;
}

/* Messages other nodes hold for dom (their published counts; 0 without a
 * cluster or for a node's own ATRN). */
static uint64_t atrn_remote(const struct drain_atrn *s, const char *dom, size_t len)
{
	const struct drain_atrn_reg *r = drain_hub_atrn_reg(s->h);

	if (!r->secret || s->from_node)
		return 0;
	return clusterview_remote_msgs(drain_hub_cluster_view(s->h), dom, len);
}

/* No list: the user's domains with mail held (wildcard rows name no
 * domain to drain), at most ATRN_DOMAINS_MAX. */
static enum atrn_verdict atrn_take_owned(struct drain_atrn *s, const struct domtab *t)
{
	const struct domtab_row *row;
	unsigned owned = 0;

	for (size_t i = 0; (row = domtab_row_at(t, i)); i++) {
		size_t len = strlen(row->name);

		if (!row->owner || strcmp(row->owner, s->user) || row->name[0] == '*')
			continue;
		owned++;
		if (drain_hub_held(s->h, row->name, len) == 0 && atrn_remote(s, row->name, len) == 0)
			continue;
		if (atrn_doms_add(&s->doms, row->name, len) == ATRN_TOO_MANY) {
			log_info("ATRN from [%s] as %s: more than %u domains with mail; the rest wait "
				 "for the next ATRN", s->client, s->user, ATRN_DOMAINS_MAX);
			break;
		}
	}
	if (owned == 0)
		return ATRN_NONE_OWNED;
	return s->doms.n ? ATRN_OK : ATRN_NO_MAIL;
}

/* The other nodes holding mail for the session's domains, from the view
 * (on an engine thread: an epoch reader), each once, largest holders
 * first per domain. Not for a node's own ATRN: the asking node collects,
 * nobody collects for it (no loops between nodes). */
static void atrn_find_peers(struct drain_atrn *s)
{
	const struct drain_atrn_reg *r = drain_hub_atrn_reg(s->h);
	const struct clusterview *v = drain_hub_cluster_view(s->h);
	const struct clusterview_node *hold[ATRN_COLLECT_PEERS_MAX];
	uint64_t msgs[ATRN_COLLECT_PEERS_MAX];

	if (!v || !r->secret || s->from_node)
		return;
	for (unsigned i = 0; i < s->doms.n; i++) {
		size_t n = clusterview_holders(v, s->doms.dom[i], s->doms.len[i], hold, msgs,
					       ATRN_COLLECT_PEERS_MAX);

		for (size_t k = 0; k < n && k < ATRN_COLLECT_PEERS_MAX; k++) {
			unsigned j;

			if (!hold[k]->addr[0])
				continue; /* no cluster_listen there: its mail waits */
			s->remote += msgs[k];
			for (j = 0; j < s->npeers && strcmp(s->peers[j].id, hold[k]->id); j++)
				;
			if (j < s->npeers || s->npeers == ATRN_COLLECT_PEERS_MAX)
				continue;
			snprintf(s->peers[j].id, sizeof(s->peers[j].id), "%s", hold[k]->id);
			snprintf(s->peers[j].addr, sizeof(s->peers[j].addr), "%s", hold[k]->addr);
			s->npeers++;
		}
	}
}

/* Hold every domain node-wide, all or none; then count what is held
 * (after claiming: nothing can start draining it meanwhile). */
static enum atrn_verdict atrn_claim(struct drain_atrn *s)
{
	uint64_t total = 0;
	unsigned i;

	for (i = 0; i < s->doms.n; i++)
		if (!drain_hub_claim(s->h, s->doms.dom[i], s->doms.len[i]))
			break;
	if (i < s->doms.n) {
		log_info("ATRN %s from [%s] as %s: a drain of it is running", s->doms.dom[i],
			 s->client, s->user);
		while (i--)
			drain_hub_unclaim(s->h, s->doms.dom[i], s->doms.len[i]);
		return ATRN_BUSY;
	}
	for (i = 0; i < s->doms.n; i++)
		total += drain_hub_held(s->h, s->doms.dom[i], s->doms.len[i]);
	atrn_find_peers(s);
	total += s->remote;
	/* Listed already: etrnctl status may read it. */
	pthread_mutex_lock(&s->reg->mu);
	s->total = total;
	pthread_mutex_unlock(&s->reg->mu);
	if (total == 0) {
		for (i = 0; i < s->doms.n; i++)
			drain_hub_unclaim(s->h, s->doms.dom[i], s->doms.len[i]);
		return ATRN_NO_MAIL;
	}
	return ATRN_OK;
}

/*
 * RFC 2645 section 4 leaves the mixed cases open; etrnd answers, in this
 * order: 501 for a list that is not domains (or too long); 450 when any
 * named domain is not the user's (the whole ATRN is refused, as the RFC's
 * example refuses a domain the client may not have, so a customer never
 * gets part of what it asked without knowing), or with no list when the
 * user owns none; 451 when the node is full of ATRN sessions or a drain
 * (ETRN, flush or ATRN) of any of them runs (all or none are taken); 453
 * when nothing is held for any of them.
 */
static enum atrn_verdict atrn_decide(struct drain_atrn *s, const char *domains, size_t len)
{
	const struct domtab *t = drain_hub_domtab(s->h);
	enum atrn_verdict v = atrn_parse(domains, len, &s->doms);

	/* Another node (issue 16) collects for a customer it authenticated:
	 * every domain is its to ask for, but only by name. */
	if (v == ATRN_OK && s->from_node)
		v = s->doms.n ? ATRN_OK : ATRN_SYNTAX;
	else if (v == ATRN_OK)
		v = s->doms.n ? atrn_check_named(s, t) : atrn_take_owned(s, t);
	if (v != ATRN_OK)
		return v;
	if (drain_hub_stopping(s->h))
		return ATRN_STOPPING;
	if (reg_admit(drain_hub_atrn_reg(s->h), s))
		return ATRN_FULL;
	v = atrn_claim(s);
	if (v != ATRN_OK)
		reg_remove(s);
	return v;
}

static struct drain_atrn *drain_atrn_open(struct drain *d, const char *client,
		const char *user, const char *domains, size_t len, struct buf *out, int node)
{
	struct drain_atrn *s = calloc(1, sizeof(*s));
	enum atrn_verdict v;
	char doms[DRAIN_ATRN_DOMS_TEXT];

	if (!s) {
		(void)atrn_reply(out, ATRN_NO_MEMORY);
		return NULL;
	}
	s->from_node = node;
	s->h = drain_hub_of(d);
	snprintf(s->user, sizeof(s->user), "%s", user ? user : "");
	snprintf(s->client, sizeof(s->client), "%s", client);
	v = user ? atrn_decide(s, domains, len) : ATRN_DENIED;
	(void)atrn_reply(out, v);
	if (v != ATRN_OK) {
		free(s);
		return NULL;
	}
	atomic_init(&s->refs, 1); /* the connection's */
	metrics_add(METRIC_ATRN_RUNNING, 1);
	atomic_init(&s->delivered, 0);
	s->started_us = now_wall_us();
	snprintf(s->relay, sizeof(s->relay), "ATRN %s [%s]", node ? "node" : "customer",
		 s->client);
	doms_join(&s->doms, doms, sizeof(doms));
	log_info("ATRN %s from [%s] as %s: %" PRIu64 " message(s) waiting; reversing the connection",
		 doms, s->client, s->user, s->total);
	return s;
}

struct drain_atrn *drain_atrn(struct drain *d, const char *client, const char *user,
			      const char *domains, size_t len, struct buf *out)
{
	return drain_atrn_open(d, client, user, domains, len, out, 0);
}

struct drain_atrn *drain_atrn_node(struct drain *d, const char *client, const char *node,
				   const char *domains, size_t len, struct buf *out)
{
	return drain_atrn_open(d, client, node, domains, len, out, 1);
}

/* ---- the walk over the shards ------------------------------------------- */

static void session_step(void *arg);

static void session_collected(void *arg, unsigned relayed)
{
	struct drain_atrn *s = arg;

	log_info("ATRN %s [%s]: %u message(s) from other nodes", s->user, s->client, relayed);
	atomic_fetch_add(&s->delivered, relayed);
	atrn_enter(s, DRAIN_ATRN_S_ENDING, s->shard, "collected from other nodes");
	drain_atrn_put(s);
}

/* After the last shard, on its thread: the other nodes' mail, over the
 * same connection (proto/atrn_collect.h). */
static void session_collect(struct drain_atrn *s, unsigned shard)
{
	const struct drain_atrn_reg *r = drain_hub_atrn_reg(s->h);
	struct loop *l = drain_hub_loop(s->h, shard);
	struct conn_parcel *p = s->parcel;
	struct atrn_collect_conf cc = { .cfg = r->cfg, .tls = r->tls, .secret = r->secret,
		.secret_arg = r->secret_arg, .doms = &s->doms, .peers = s->peers,
		.npeers = s->npeers, .greeted = s->greeted, .cust_caps = s->ss.caps,
		.client = s->client };
	int rc;

	s->parcel = NULL;
	atrn_enter(s, DRAIN_ATRN_S_COLLECTING, shard, "to the other nodes");
	rc = l ? atrn_collect_start(l, p, &cc, session_collected, s) : -ESHUTDOWN;
	if (rc == 0)
		return;
	if (!l)
		conn_parcel_free(p);
	log_warn("ATRN %s [%s]: cannot collect from other nodes: %s; their mail stays held",
		 s->user, s->client, strerror(-rc));
	drain_atrn_put(s);
}

/* Post s (with its parcel) to shard s->shard; when that fails the
 * connection is over. */
static void session_move(struct drain_atrn *s, unsigned shard)
{
	if (shard >= drain_hub_threads(s->h) && s->npeers) {
		session_collect(s, shard - 1);
		return;
	}
	atrn_enter(s, DRAIN_ATRN_S_MOVING, shard, "to the next shard");
	if (drain_hub_post(s->h, shard, session_step, s) == 0)
		return;
	log_warn("ATRN %s [%s]: cannot reach engine thread %u; mail stays held", s->user,
		 s->client, shard);
	conn_parcel_free(s->parcel);
	s->parcel = NULL;
	drain_atrn_put(s);
}

/* On thread s->shard: that shard's drain adopts the connection, or (no
 * mail there, not the last) the session moves on at once. */
static void session_step(void *arg)
{
	struct drain_atrn *s = arg;
	unsigned i = s->shard, n = drain_hub_threads(s->h);
	struct conn_parcel *p = s->parcel;
	int first = !s->greeted, rc;

	/* Set before the start: from then on another thread may have s. */
	s->parcel = NULL;
	s->greeted = 1;
	atrn_enter(s, DRAIN_ATRN_S_RUNNING, i, first ? "adopted: waiting for the 220" : "adopted");
	/* With other nodes to collect from, no shard QUITs: the customer's
	 * connection goes on to atrn_collect after the last. */
	rc = drain_atrn_shard(s->h, i, s, &s->doms, p, first, i + 1 == n && s->npeers == 0,
			      &s->ss, s->relay);
	if (rc > 0)
		return;
	if (rc < 0) {
		log_warn("ATRN %s [%s]: shard %u cannot take the connection: %s; mail stays held",
			 s->user, s->client, i, strerror(-rc));
		drain_atrn_put(s);
		return;
	}
	s->greeted = !first;
	s->parcel = p;
	session_move(s, i + 1);
}

void drain_atrn_take(void *arg, struct conn_parcel *parcel)
{
	struct drain_atrn *s = arg;

	if (!parcel) {
		log_info("ATRN %s [%s]: the customer left before the turn; mail stays held",
			 s->user, s->client);
		drain_atrn_put(s);
		return;
	}
	s->parcel = parcel;
	session_move(s, 0);
}

void drain_atrn_conn_end(struct drain_atrn *s, struct conn_parcel *parcel,
			 const struct smtp_client_session *ss)
{
	if (parcel) {
		s->ss = *ss;
		s->parcel = parcel;
		session_move(s, s->shard + 1);
		return;
	}
	atrn_enter(s, DRAIN_ATRN_S_ENDING, s->shard, "connection over");
	drain_atrn_put(s);
}

void drain_atrn_delivered(struct drain_atrn *s)
{
	atomic_fetch_add(&s->delivered, 1);
}

void drain_atrn_hold(struct drain_atrn *s)
{
	atomic_fetch_add(&s->refs, 1);
}

/* The last reference: the connection is over and every job has ended (its
 * DONEs durable), so the domains may be drained again. */
void drain_atrn_put(struct drain_atrn *s)
{
	char doms[DRAIN_ATRN_DOMS_TEXT];

	if (atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	doms_join(&s->doms, doms, sizeof(doms));
	log_info("ATRN %s [%s] as %s: session over: %" PRIu64 " of %" PRIu64
		 " message(s) delivered in %.3f s", doms, s->client, s->user,
		 (uint64_t)atomic_load(&s->delivered), s->total,
		 (double)(now_wall_us() - s->started_us) / 1e6);
	for (unsigned i = 0; i < s->doms.n; i++)
		drain_hub_unclaim(s->h, s->doms.dom[i], s->doms.len[i]);
	reg_remove(s);
	/* Maybe another engine thread than the one that counted it in: the
	 * gauge is summed over the threads. */
	metrics_sub(METRIC_ATRN_RUNNING, 1);
	metrics_add(METRIC_ATRN_FINISHED, 1);
	free(s);
}
