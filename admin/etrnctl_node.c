/* SPDX-License-Identifier: MIT */
/*
 * etrnctl_node: see etrnctl_node.h. Plain synchronous hiredis on etrnctl's
 * connection; the keys are admin/schema.h's (schema_key: hash-tagged).
 */
#include "admin/etrnctl_node.h"
#include "admin/etrnctl_say.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin/cluster_auth.h"
#include "admin/redis_conn.h"
#include "admin/schema.h"
#include "core/config.h"
#include "core/now.h"
#include "core/units.h"

#define NODE_KEY_MAX (CONFIG_REDIS_PREFIX_MAX + CONFIG_NODE_ID_MAX + 32)
#define NODE_WHY_MAX 256

enum { NODE_OK = ETRNCTL_OK, NODE_FAIL = ETRNCTL_FAIL, NODE_USAGE = ETRNCTL_USAGE };

/* Its keys: node:{ID} (the hash), decommission:{ID}, nodes, events. */
struct node_keys {
	char hash[NODE_KEY_MAX], decom[NODE_KEY_MAX], nodes[NODE_KEY_MAX], events[NODE_KEY_MAX];
};

/* Check the id, make the keys. 0 or NODE_USAGE (reported). */
static int node_keys(const struct etrnctl_node *n, struct node_keys *k)
{
	if (!cluster_auth_id_ok(n->node, strlen(n->node)))
		return etrnctl_say(NODE_USAGE, "node \"%s\": want a node id (1-63 of letters, "
				"digits, '.', '_' and '-')", n->node);
	if (!schema_key(k->hash, sizeof(k->hash), n->prefix, "node:", n->node) ||
	    !schema_key(k->decom, sizeof(k->decom), n->prefix, "decommission:", n->node) ||
	    snprintf(k->nodes, sizeof(k->nodes), "%snodes", n->prefix) >= (int)sizeof(k->nodes) ||
	    snprintf(k->events, sizeof(k->events), "%sevents", n->prefix) >= (int)sizeof(k->events))
		return etrnctl_say(NODE_USAGE, "node \"%s\": key too long", n->node);
	return 0;
}

/* An integer reply of one command into *v. 0, or NODE_FAIL (reported). */
static int node_int(const struct etrnctl_node *n, long long *v, const char *what,
		    const char *fmt, ...)
{
	char err[NODE_WHY_MAX];
	redisReply *r;
	va_list ap;

	va_start(ap, fmt);
	r = redisvCommand(n->rc, fmt, ap);
	va_end(ap);
	if (r && r->type == REDIS_REPLY_INTEGER) {
		*v = r->integer;
		freeReplyObject(r);
		return 0;
	}
	redis_conn_err(n->rc, r, what, err, sizeof(err));
	if (r)
		freeReplyObject(r);
	return etrnctl_say(NODE_FAIL, "redis: %s", err);
}

/* SET key 1. 0, or NODE_FAIL (reported). */
static int node_set(const struct etrnctl_node *n, const char *key)
{
	char err[NODE_WHY_MAX];
	redisReply *r = redisCommand(n->rc, "SET %s 1", key);

	if (r && r->type == REDIS_REPLY_STATUS) {
		freeReplyObject(r);
		return 0;
	}
	redis_conn_err(n->rc, r, "SET", err, sizeof(err));
	if (r)
		freeReplyObject(r);
	return etrnctl_say(NODE_FAIL, "redis: %s", err);
}

/* The node's hash field f as a number (its held msgs), -1 when absent. */
static long long node_field(const struct etrnctl_node *n, const char *hash, const char *f)
{
	redisReply *r = redisCommand(n->rc, "HGET %s %s", hash, f);
	long long v = -1;

	if (r && r->type == REDIS_REPLY_STRING)
		v = strtoll(r->str, NULL, 10);
	if (r)
		freeReplyObject(r);
	return v;
}

static void node_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* --wait: until the node deletes its key (hand-off done, it exits), or
 * the bound. Progress when its held count changes. */
static int node_wait(const struct etrnctl_node *n, const struct node_keys *k, uint64_t ms)
{
	uint64_t end = now_mono_ms() + ms;
	long long set = 1, left, last = -2;

	for (;;) {
		if (node_int(n, &set, "EXISTS", "EXISTS %s", k->decom))
			return NODE_FAIL;
		if (!set) {
			printf("node %s: hand-off done; the node exits\n", n->node);
			return NODE_OK;
		}
		left = node_field(n, k->hash, "msgs");
		if (left != last) {
			if (left < 0)
				printf("node %s: not running (no %s); it resumes when started\n",
				       n->node, k->hash);
			else
				printf("node %s: %lld message(s) left\n", n->node, left);
			fflush(stdout);
			last = left;
		}
		if (now_mono_ms() >= end)
			return etrnctl_say(NODE_FAIL, "node %s: not done after %llu ms (%s still set)",
					n->node, (unsigned long long)ms, k->decom);
		node_sleep_ms(ETRNCTL_NODE_POLL_MS);
	}
}

int etrnctl_node_drain(const struct etrnctl_node *n)
{
	struct node_keys k;
	char why[NODE_WHY_MAX], ev[CONFIG_NODE_ID_MAX + 16];
	uint64_t ms = ETRNCTL_NODE_WAIT_MS;
	long long alive = 0, listed = 0, heard = 0;
	int rc;

	if ((rc = node_keys(n, &k)))
		return rc;
	if (n->timeout && !n->wait)
		return etrnctl_say(NODE_USAGE, "--timeout goes with node drain --wait");
	if (n->timeout && units_parse_duration(n->timeout, &ms, why, sizeof(why)))
		return etrnctl_say(NODE_USAGE, "--timeout \"%s\": %s", n->timeout, why);
	if (node_int(n, &alive, "EXISTS", "EXISTS %s", k.hash))
		return NODE_FAIL;
	if (!alive) {
		redisReply *r = redisCommand(n->rc, "ZSCORE %s %s", k.nodes, n->node);

		/* A refused or lost ZSCORE is no "not in the cluster". */
		if (!r || r->type == REDIS_REPLY_ERROR) {
			redis_conn_err(n->rc, r, "ZSCORE", why, sizeof(why));
			if (r)
				freeReplyObject(r);
			return etrnctl_say(NODE_FAIL, "redis: %s", why);
		}
		listed = r->type == REDIS_REPLY_STRING;
		freeReplyObject(r);
	}
	if (!alive && !listed)
		return etrnctl_say(NODE_FAIL, "node %s: not in the cluster (no %s, not in %s)",
				n->node, k.hash, k.nodes);
	if (node_set(n, k.decom))
		return NODE_FAIL;
	snprintf(ev, sizeof(ev), "node-drain %s", n->node); /* the id was checked */
	if (node_int(n, &heard, "PUBLISH", "PUBLISH %s %s", k.events, ev))
		return NODE_FAIL;
	printf("node %s: decommission asked (%s set%s)\n", n->node, k.decom,
	       alive ? "" : "; the node is not running: it hands off when started");
	fflush(stdout);
	return n->wait ? node_wait(n, &k, ms) : NODE_OK;
}

int etrnctl_node_forget(const struct etrnctl_node *n)
{
	struct node_keys k;
	long long alive, removed, decom;
	int rc;

	if ((rc = node_keys(n, &k)))
		return rc;
	if (node_int(n, &alive, "EXISTS", "EXISTS %s", k.hash))
		return NODE_FAIL;
	if (alive)
		return etrnctl_say(NODE_FAIL, "node %s: still alive (%s exists; it expires "
				"cluster_node_ttl after the node stops): not forgotten",
				n->node, k.hash);
	if (node_int(n, &removed, "ZREM", "ZREM %s %s", k.nodes, n->node) ||
	    node_int(n, &decom, "EXISTS", "EXISTS %s", k.decom))
		return NODE_FAIL;
	printf("node %s: %s%s\n", n->node, removed ? "forgotten" : "was not listed",
	       decom ? "; its decommission key is still set: it hands off if started again" : "");
	return NODE_OK;
}
