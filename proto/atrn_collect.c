/* SPDX-License-Identifier: MIT */
/*
 * atrn_collect: see atrn_collect.h. Two connections on one loop, one
 * state: the customer's (adopted) and at most one node's (outbound). The
 * node's connection speaks proto/etrn_client until its 250 to ATRN, then
 * proto/atrn_proxy relays; input one side cannot take yet is kept by the
 * loop and resumed after the other side's next feed. The state is freed
 * when both connections are gone.
 */
#include "proto/atrn_collect.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/loop.h"
#include "core/resolver.h"
#include "core/tls.h"
#include "proto/atrn_proxy.h"
#include "proto/auth.h"
#include "proto/etrn_client.h"
#include "proto/smtp_client.h"
#include "proto/smtpd.h"

/* Reply lines from a node, as the activators read an upstream's. */
#define ATRN_COLLECT_REPLY_LINE_MAX 4096
#define ATRN_COLLECT_REPLY_LINES_MAX 100
#define ATRN_COLLECT_WHY_MAX 256
#define ATRN_COLLECT_CLIENT_MAX 64

enum atrn_collect_state {
	COLLECT_S_CUSTOMER = 0,  /* the customer's 220 and EHLO (not greeted yet) */
	COLLECT_S_CONNECTING,    /* to node peers[i] */
	COLLECT_S_TALKING,       /* EHLO, STARTTLS, AUTH, ATRN with it */
	COLLECT_S_TLS,           /* its TLS handshake */
	COLLECT_S_RELAY,         /* it reversed: relaying its mail */
	COLLECT_S_NEXT,          /* it is over: its connection closing */
	COLLECT_S_QUITTING,      /* no more nodes: QUIT to the customer */
	COLLECT_S_DONE,          /* waiting for the connections to go */
	COLLECT_S_NSTATES
};

static const char *const collect_state_names[COLLECT_S_NSTATES] = {
	[COLLECT_S_CUSTOMER] = "customer", [COLLECT_S_CONNECTING] = "connecting",
	[COLLECT_S_TALKING] = "talking", [COLLECT_S_TLS] = "tls",
	[COLLECT_S_RELAY] = "relay", [COLLECT_S_NEXT] = "next",
	[COLLECT_S_QUITTING] = "quitting", [COLLECT_S_DONE] = "done",
};

struct atrn_collect {
	enum atrn_collect_state state;
	struct loop *l;
	const struct config *cfg;
	struct tls_ctx *tls;
	struct conn *cust, *node;        /* NULL once gone */
	int connect_pending;             /* loop_connect's answer is due */
	struct atrn_proxy *px;
	struct etrn_client *ec;
	struct etrn_client_conf ecf;
	const char *req[ATRN_DOMAINS_MAX];
	struct atrn_doms doms;
	char secret[AUTH_PASS_MAX + 1];
	atrn_collect_secret_fn secret_fn;
	const void *secret_arg;
	struct atrn_collect_peer peers[ATRN_COLLECT_PEERS_MAX];
	unsigned npeers, i;              /* the node being collected from */
	char why[ATRN_COLLECT_WHY_MAX];  /* why the node's session ended */
	char client[ATRN_COLLECT_CLIENT_MAX];
	atrn_collect_done_fn done;
	void *arg;
};

static const struct conn_ops collect_cust_ops, collect_node_ops;

/* The one place the state changes; logged. */
static void collect_enter(struct atrn_collect *ac, enum atrn_collect_state st, const char *why)
{
	log_debug("ATRN [%s] collect: %s -> %s (%s)", ac->client, collect_state_names[ac->state],
		  collect_state_names[st], why);
	ac->state = st;
}

static void collect_free(struct atrn_collect *ac)
{
	explicit_bzero(ac->secret, sizeof(ac->secret));
	etrn_client_free(ac->ec);
	atrn_proxy_free(ac->px);
	free(ac);
}

/* Both connections gone and no connect due: tell the session, free. */
static void collect_maybe_end(struct atrn_collect *ac)
{
	if (ac->cust || ac->node || ac->connect_pending)
		return;
	ac->done(ac->arg, ac->px ? atrn_proxy_relayed_total(ac->px) : 0);
	collect_free(ac);
}

static void collect_close(struct conn *c)
{
	if (c) {
		conn_flush(c);
		conn_close(c);
	}
}

static void collect_next(struct atrn_collect *ac);

/* The node's session is over: log its line, close it; the next one
 * starts once its connection is gone and the customer is idle. */
static void collect_node_over(struct atrn_collect *ac, const char *why)
{
	const struct atrn_collect_peer *pr = &ac->peers[ac->i];

	if (ac->state != COLLECT_S_RELAY && ac->state != COLLECT_S_CONNECTING &&
	    ac->state != COLLECT_S_TALKING && ac->state != COLLECT_S_TLS)
		return;
	log_info("ATRN [%s]: node %s (%s): %u message(s) relayed: %s", ac->client, pr->id,
		 pr->addr, ac->state == COLLECT_S_RELAY ? atrn_proxy_relayed(ac->px) : 0, why);
	collect_enter(ac, COLLECT_S_NEXT, why);
	collect_close(ac->node);
}

/* Everything ends: the customer (and the node, if any) closed. */
static void collect_fail(struct atrn_collect *ac, const char *why)
{
	if (ac->state == COLLECT_S_RELAY || ac->state == COLLECT_S_TALKING ||
	    ac->state == COLLECT_S_TLS || ac->state == COLLECT_S_CONNECTING)
		collect_node_over(ac, why);
	if (ac->state != COLLECT_S_DONE)
		log_info("ATRN [%s]: collecting from other nodes ended: %s", ac->client, why);
	collect_enter(ac, COLLECT_S_DONE, why);
	collect_close(ac->node);
	collect_close(ac->cust);
}

/* A relay event (proto/atrn_proxy.h). */
static void collect_event(struct atrn_collect *ac, enum atrn_proxy_event ev)
{
	switch (ev) {
	case ATRN_PROXY_EV_NONE:
		break;
	case ATRN_PROXY_EV_READY:
		collect_next(ac);
		break;
	case ATRN_PROXY_EV_NODE_DONE:
		collect_node_over(ac, atrn_proxy_why(ac->px));
		break;
	case ATRN_PROXY_EV_DONE:
		collect_enter(ac, COLLECT_S_DONE, "QUIT answered");
		collect_close(ac->cust);
		break;
	case ATRN_PROXY_EV_FAILED:
		collect_fail(ac, atrn_proxy_why(ac->px));
		break;
	}
	if (ac->cust)
		conn_flush(ac->cust);
	if (ac->node)
		conn_flush(ac->node);
}

/* ---- the nodes one after the other ------------------------------------- */

static int collect_connect(struct atrn_collect *ac, const struct atrn_collect_peer *pr)
{
	struct resolver_result res;
	int rc = resolver_numeric(pr->addr, 0, &res);

	if (rc != 1) {
		log_warn("ATRN [%s]: node %s: address \"%s\" is not numeric ip:port; skipped",
			 ac->client, pr->id, pr->addr);
		return -EINVAL;
	}
	rc = loop_connect(ac->l, (const struct sockaddr *)&res.addr, res.addrlen,
			  ATRN_COLLECT_CONNECT_MS, &collect_node_ops, NULL, ac);
	if (rc) {
		log_warn("ATRN [%s]: node %s (%s): cannot connect: %s; skipped", ac->client, pr->id,
			 pr->addr, strerror(-rc));
		return rc;
	}
	ac->connect_pending = 1;
	return 0;
}

/* The customer is idle and no node is attached: the next node, or QUIT. */
static void collect_next(struct atrn_collect *ac)
{
	if (ac->node || ac->connect_pending || !ac->cust ||
	    atrn_proxy_state(ac->px) != ATRN_PROXY_S_IDLE)
		return;
	if (ac->state == COLLECT_S_NEXT)
		ac->i++;
	while (ac->i < ac->npeers) {
		collect_enter(ac, COLLECT_S_CONNECTING, ac->peers[ac->i].id);
		if (collect_connect(ac, &ac->peers[ac->i]) == 0)
			return;
		ac->i++;
	}
	collect_enter(ac, COLLECT_S_QUITTING, "no more nodes");
	(void)atrn_proxy_finish(ac->px, conn_out(ac->cust));
	conn_set_timeout(ac->cust, ATRN_COLLECT_CUST_MS);
	conn_flush(ac->cust);
}

/* ---- the customer's connection ---------------------------------------- */

static size_t collect_cust_data(void *arg, struct conn *c, void *st, const char *p, size_t n)
{
	struct atrn_collect *ac = st;
	enum atrn_proxy_event ev;
	size_t k;

	(void)arg;
	k = atrn_proxy_feed_cust(ac->px, p, n, ac->node ? conn_out(ac->node) : NULL,
				 conn_out(c), &ev);
	collect_event(ac, ev);
	/* A reply taken: the node's kept command may go on now. */
	if (ac->node)
		conn_resume(ac->node);
	return n == 0 ? 0 : k;
}

static void collect_cust_timeout(void *arg, struct conn *c, void *st)
{
	struct atrn_collect *ac = st;

	(void)arg;
	(void)c;
	collect_event(ac, atrn_proxy_lost(ac->px, 0, NULL, "timed out waiting for the customer"));
}

static void collect_shutdown(void *arg, struct conn *c, void *st)
{
	(void)arg;
	(void)c;
	collect_fail(st, "etrnd is shutting down");
}

static void collect_cust_close(void *arg, struct conn *c, void *st)
{
	struct atrn_collect *ac = st;

	(void)arg;
	(void)c;
	ac->cust = NULL;
	if (ac->state != COLLECT_S_DONE)
		collect_event(ac, atrn_proxy_lost(ac->px, 0, NULL, "the customer left"));
	collect_fail(ac, "the customer's connection is gone");
	collect_maybe_end(ac);
}

static const struct conn_ops collect_cust_ops = {
	.data = collect_cust_data,
	.timeout = collect_cust_timeout,
	.shutdown = collect_shutdown,
	.close = collect_cust_close,
};

/* ---- a node's connection ------------------------------------------------ */

/* Its 250 to ATRN: we are its server now; the bytes after the 250 are
 * its first command (none, normally: it waits for our 220). */
static size_t collect_reversed(struct atrn_collect *ac, struct conn *c, const char *p, size_t n)
{
	enum atrn_proxy_event ev = ATRN_PROXY_EV_NONE;
	size_t k = 0;

	collect_enter(ac, COLLECT_S_RELAY, "250 to ATRN");
	(void)atrn_proxy_attach(ac->px, conn_out(c));
	conn_set_timeout(c, ATRN_COLLECT_IDLE_MS);
	if (n)
		k = atrn_proxy_feed_node(ac->px, p, n, conn_out(c), conn_out(ac->cust), &ev);
	collect_event(ac, ev);
	return k;
}

static size_t collect_talk(struct atrn_collect *ac, struct conn *c, const char *p, size_t n)
{
	enum etrn_client_event ev;
	size_t off = etrn_client_feed(ac->ec, p, n, conn_out(c), &ev);
	unsigned ms = etrn_client_timeout_ms(ac->ec);
	const struct etrn_client_reply *r;
	int rc;

	if (ms)
		conn_set_timeout(c, ms < ATRN_COLLECT_IDLE_MS ? ms : ATRN_COLLECT_IDLE_MS);
	conn_flush(c);
	switch (ev) {
	case ETRN_CLIENT_EV_NEED_INPUT:
		return n == 0 ? 0 : off;
	case ETRN_CLIENT_EV_STARTTLS:
		rc = ac->tls ? conn_starttls(c, ac->tls, NULL) : -ENOPROTOOPT;
		if (rc == 0) {
			collect_enter(ac, COLLECT_S_TLS, "220 to STARTTLS");
			return off;
		}
		(void)etrn_client_tls_reject(ac->ec, conn_out(c), "cannot start TLS");
		collect_node_over(ac, "cannot start TLS");
		return n;
	case ETRN_CLIENT_EV_REVERSE:
		return off + collect_reversed(ac, c, p + off, n - off);
	case ETRN_CLIENT_EV_CLOSE:
		r = etrn_client_close_reason(ac->ec);
		if (!r)
			r = etrn_client_result(ac->ec, 0);
		snprintf(ac->why, sizeof(ac->why), "ATRN not taken: %d %.160s", r ? r->code : 0,
			 r ? r->text : "");
		collect_node_over(ac, ac->why);
		return n;
	}
	return n;
}

static size_t collect_node_data(void *arg, struct conn *c, void *st, const char *p, size_t n)
{
	struct atrn_collect *ac = st;
	enum atrn_proxy_event ev;
	size_t k;

	(void)arg;
	if (ac->state == COLLECT_S_TALKING)
		return collect_talk(ac, c, p, n);
	if (ac->state != COLLECT_S_RELAY)
		return n; /* closing: nothing more is read */
	conn_set_timeout(c, ATRN_COLLECT_IDLE_MS);
	k = atrn_proxy_feed_node(ac->px, p, n, conn_out(c), ac->cust ? conn_out(ac->cust) : NULL,
				 &ev);
	collect_event(ac, ev);
	/* A command forwarded: a reply the customer sent early may be read. */
	if (ac->cust)
		conn_resume(ac->cust);
	return n == 0 ? 0 : k;
}

static void collect_node_tls_done(void *arg, struct conn *c, void *st, int err)
{
	struct atrn_collect *ac = st;
	const struct tls_info *ti = err ? NULL : conn_tls(c);

	(void)arg;
	if (ac->state != COLLECT_S_TLS)
		return;
	collect_enter(ac, COLLECT_S_TALKING, err ? "TLS handshake failed" : "TLS up");
	if (!ti) {
		collect_node_over(ac, "TLS handshake failed");
		return;
	}
	if (ac->cfg->cluster_tls == CONFIG_CLUSTER_TLS_VERIFY && !ti->verified) {
		(void)etrn_client_tls_reject(ac->ec, conn_out(c), "certificate not verified");
		collect_node_over(ac, "certificate not verified (cluster_tls = verify)");
		return;
	}
	if (etrn_client_tls_up(ac->ec, conn_out(c))) {
		collect_node_over(ac, "out of memory after the TLS handshake");
		return;
	}
	conn_flush(c);
}

static void collect_node_timeout(void *arg, struct conn *c, void *st)
{
	struct atrn_collect *ac = st;

	(void)arg;
	(void)c;
	if (ac->state == COLLECT_S_RELAY)
		collect_event(ac, atrn_proxy_lost(ac->px, 1, ac->cust ? conn_out(ac->cust) : NULL,
						  "timed out waiting for the node"));
	else
		collect_node_over(ac, "timed out");
}

static void collect_node_close(void *arg, struct conn *c, void *st)
{
	struct atrn_collect *ac = st;

	(void)arg;
	(void)c;
	ac->node = NULL;
	ac->ec = etrn_client_free(ac->ec);
	if (ac->state == COLLECT_S_RELAY)
		collect_event(ac, atrn_proxy_lost(ac->px, 1, ac->cust ? conn_out(ac->cust) : NULL,
						  "the node's connection was lost"));
	else
		collect_node_over(ac, "connection lost");
	if (ac->cust)
		conn_flush(ac->cust);
	collect_next(ac);
	collect_maybe_end(ac);
}

static void *collect_node_connected(void *arg, struct conn *c, void *cookie, int err)
{
	struct atrn_collect *ac = cookie;
	int n;

	(void)arg;
	ac->connect_pending = 0;
	if (err || ac->state != COLLECT_S_CONNECTING) {
		if (err)
			collect_node_over(ac, strerror(-err));
		collect_next(ac);
		collect_maybe_end(ac);
		return NULL;
	}
	n = ac->secret_fn(ac->secret_arg, ac->secret, sizeof(ac->secret));
	ac->ecf.pass = n >= 0 ? ac->secret : "";
	ac->ec = etrn_client_new(&ac->ecf);
	if (!ac->ec) {
		collect_node_over(ac, "out of memory");
		collect_next(ac);
		return NULL;
	}
	ac->node = c;
	conn_set_timeout(c, ATRN_COLLECT_IDLE_MS);
	collect_enter(ac, COLLECT_S_TALKING, "connected");
	return ac;
}

static const struct conn_ops collect_node_ops = {
	.data = collect_node_data,
	.timeout = collect_node_timeout,
	.shutdown = collect_shutdown,
	.close = collect_node_close,
	.connected = collect_node_connected,
	.tls_done = collect_node_tls_done,
};

/* ---- start ------------------------------------------------------------- */

static void collect_client_conf(struct atrn_collect *ac)
{
	const struct config *cfg = ac->cfg;

	for (unsigned k = 0; k < ac->doms.n; k++)
		ac->req[k] = ac->doms.dom[k];
	ac->ecf.helo_name = cfg->hostname;
	ac->ecf.method = ETRN_CLIENT_ATRN;
	ac->ecf.tls = cfg->cluster_tls == CONFIG_CLUSTER_TLS_MAY ? SMTP_CLIENT_TLS_MAY :
		      SMTP_CLIENT_TLS_MUST;
	ac->ecf.user = cfg->node_id;
	ac->ecf.pass = "";
	/* cluster_tls = may: the operator lets the secret cross in the clear
	 * where a node offers no STARTTLS (core/config.h). */
	ac->ecf.auth_cleartext = cfg->cluster_tls == CONFIG_CLUSTER_TLS_MAY;
	ac->ecf.nreq = ac->doms.n;
	ac->ecf.req = ac->req;
	ac->ecf.reply_line_max = ATRN_COLLECT_REPLY_LINE_MAX;
	ac->ecf.max_reply_lines = ATRN_COLLECT_REPLY_LINES_MAX;
}

int atrn_collect_start(struct loop *l, struct conn_parcel *parcel,
		       const struct atrn_collect_conf *conf, atrn_collect_done_fn done, void *arg)
{
	struct atrn_collect *ac = calloc(1, sizeof(*ac));
	struct atrn_proxy_conf pc = { .name = conf->cfg->hostname, .greeted = conf->greeted,
		.cust_8bitmime = !!(conf->cust_caps & SMTP_CLIENT_CAP_8BITMIME),
		.cust_smtputf8 = !!(conf->cust_caps & SMTP_CLIENT_CAP_SMTPUTF8),
		.body_max = smtpd_record_max(conf->cfg) };

	if (!ac || !(ac->px = atrn_proxy_new(&pc))) {
		free(ac);
		conn_parcel_free(parcel);
		return -ENOMEM;
	}
	ac->l = l;
	ac->cfg = conf->cfg;
	ac->tls = conf->tls;
	ac->secret_fn = conf->secret;
	ac->secret_arg = conf->secret_arg;
	ac->doms = *conf->doms;
	ac->npeers = conf->npeers < ATRN_COLLECT_PEERS_MAX ? conf->npeers : ATRN_COLLECT_PEERS_MAX;
	memcpy(ac->peers, conf->peers, ac->npeers * sizeof(ac->peers[0]));
	snprintf(ac->client, sizeof(ac->client), "%s", conf->client);
	ac->done = done;
	ac->arg = arg;
	collect_client_conf(ac);
	ac->state = conf->greeted ? COLLECT_S_CONNECTING : COLLECT_S_CUSTOMER;
	ac->cust = loop_adopt(l, parcel, &collect_cust_ops, NULL, ac);
	if (!ac->cust) {
		int rc = -errno;

		collect_free(ac);
		return rc;
	}
	conn_set_timeout(ac->cust, ATRN_COLLECT_CUST_MS);
	if (conf->greeted)
		collect_next(ac);
	return 0;
}
