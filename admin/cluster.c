/* SPDX-License-Identifier: MIT */
/*
 * cluster: the node-state thread (cluster.h). Every CLUSTER_TICK_MS it
 * publishes the queued drain events. Every cluster_publish_interval it
 * reads the other nodes (ZRANGE nodes, HMGET of each one's gen, HSCAN only
 * of those whose gen moved) and swaps in a new view when anything moved;
 * then, and CLUSTER_DEBOUNCE_MS after the held counts changed, it writes
 * its own hash as a diff against what it wrote last (a full rewrite after
 * each connect), in one MULTI/EXEC with the TTL and the nodes zset. The
 * hash's "read" is the time of the last read of the others: "read later
 * than T" means "my view has what the others wrote before T".
 */
#include "admin/cluster.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "admin/redis_conn.h"
#include "core/log.h"
#include "core/now.h"

#define CLUSTER_TIMEOUT_MS 2000        /* connect and each command */
#define CLUSTER_BACKOFF_MIN_MS 100     /* first reconnect delay, doubled ... */
#define CLUSTER_BACKOFF_MAX_MS 2000    /* ... up to this (as control.c) */
#define CLUSTER_TICK_MS 100            /* how often the changed flag is read */
#define CLUSTER_DEBOUNCE_MS 200        /* a change is written at most this often */
#define CLUSTER_QUEUE_MAX 256          /* drain events waiting for Redis */
#define CLUSTER_SPEC_MAX 512           /* an ETRN argument: RFC 5321 4.5.3.1.4 line */
#define CLUSTER_PEERS_MAX 256          /* other nodes read; more are ignored */
#define CLUSTER_FIELDS_PER_CMD 512     /* "d:" fields per HSET or HDEL */
#define CLUSTER_MIN_PARTS 8            /* first size of a peer's HSCAN list */
#define CLUSTER_KEY_MAX (CONFIG_REDIS_PREFIX_MAX + 16 + CONFIG_NODE_ID_MAX)
#define CLUSTER_FIELD_MAX (sizeof(CLUSTER_F_DOMAIN) + 256)
#define CLUSTER_VAL_MAX 48             /* "<msgs> <bytes>": two uint64 */
#define CLUSTER_GEN_MAX 48             /* "<started ms>.<n>" */
/* Fields per HSCAN of another node's hash: a 100,000-domain hash is read
 * in ~50 short commands, never one HGETALL that holds Redis for 100 ms. */
#define CLUSTER_HSCAN_COUNT "2000"

enum cluster_conn_state { CLUSTER_DOWN, CLUSTER_UP };
enum cluster_due { CLUSTER_NONE, CLUSTER_WRITE, CLUSTER_READ };

struct cl_event {
	size_t len;
	char spec[CLUSTER_SPEC_MAX];
};

/* Another node as last read. parts: its hash's HSCAN replies (kept until
 * its gen moves); have: read whole. */
struct cl_peer {
	char id[CONFIG_NODE_ID_MAX];
	char gen[CLUSTER_GEN_MAX];
	struct clusterview_node node;
	redisReply **parts;
	size_t nparts, capparts;
	int have;
	int present;                   /* its hash is there this round */
	int was;                       /* ... and was last round */
	int fetch;                     /* its gen moved: HGETALL due */
};

/* What this node's hash says of one domain (0: no field). */
struct cl_prev {
	uint64_t msgs, bytes;
};

/* One domain whose count differs from what the hash has. */
struct cl_change {
	size_t idx;
	const char *name;
	uint64_t msgs, bytes;
};

struct cluster {
	struct config_redis redis;
	char prefix[CONFIG_REDIS_PREFIX_MAX + 1];
	char node_id[CONFIG_NODE_ID_MAX];
	char addr[CLUSTERVIEW_ADDR_MAX];
	char key[CLUSTER_KEY_MAX], key_nodes[CLUSTER_KEY_MAX], chan[CLUSTER_KEY_MAX];
	unsigned publish_ms, ttl_ms;
	struct clusterview_live *view;
	struct cluster_counts counts;
	pthread_t thread;
	int stopfd, wakefd;
	_Atomic int state;             /* enum clusterview_state, announced */
	/* The queue: engine threads append under mu, the thread takes all. */
	pthread_mutex_t mu;
	struct cl_event q[CLUSTER_QUEUE_MAX];
	struct cl_event take[CLUSTER_QUEUE_MAX]; /* the thread's copy of q */
	size_t qn;
	int q_warned;
	/* The thread's own. */
	redisContext *rc;
	enum cluster_conn_state cs;
	unsigned backoff_ms;
	uint64_t started_ms, gen, next_ms, last_write_ms;
	uint64_t read_ms;              /* wall ms of the last read of the others */
	int dirty, full, written_state;
	struct cl_prev *prev;          /* by domain index: what the hash says */
	size_t nprev;
	struct cl_change *ch;
	size_t nch, capch;
	int ch_oom;
	uint64_t tot_msgs, tot_bytes;
	struct cl_peer *peers;         /* CLUSTER_PEERS_MAX of them */
	size_t npeers;
	int have_view;
	/* One HSET's or HDEL's arguments, reused per command. */
	const char *argv[2 + 2 * CLUSTER_FIELDS_PER_CMD];
	size_t argvlen[2 + 2 * CLUSTER_FIELDS_PER_CMD];
	char fld[CLUSTER_FIELDS_PER_CMD][CLUSTER_FIELD_MAX];
	char val[CLUSTER_FIELDS_PER_CMD][CLUSTER_VAL_MAX];
};

/* The one place the connection state changes: logged. */
static void cluster_enter(struct cluster *c, enum cluster_conn_state st, const char *why)
{
	if (c->cs == st)
		return;
	if (st == CLUSTER_UP)
		log_info("cluster: node %s publishing to redis %s (every %u ms, ttl %u ms)",
			 c->node_id, c->redis.display, c->publish_ms, c->ttl_ms);
	else
		log_warn("cluster: redis %s: %s; node %s's counts are not published until it is back",
			 c->redis.display, why, c->node_id);
	c->cs = st;
}

static void cluster_disconnect(struct cluster *c, const char *why)
{
	if (c->rc)
		redisFree(c->rc);
	c->rc = NULL;
	c->full = 1;
	cluster_enter(c, CLUSTER_DOWN, why);
}

/* Sleep up to ms; 1 = stop asked. A wake-up (an event queued, a state
 * set) ends the sleep early and is consumed. */
static int cluster_nap(struct cluster *c, unsigned ms)
{
	struct pollfd pf[2] = { { c->stopfd, POLLIN, 0 }, { c->wakefd, POLLIN, 0 } };
	uint64_t n;

	if (poll(pf, 2, (int)ms) <= 0)
		return 0;
	if (pf[0].revents)
		return 1;
	if (pf[1].revents && read(c->wakefd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_warn("cluster: reading the wake-up: %s", strerror(errno));
	return 0;
}

/* Read n pipelined replies; the first error (or broken connection) sets
 * why. Frees them all. 0 or -1. */
static int get_replies(struct cluster *c, size_t n, char *why, size_t wl)
{
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		redisReply *r = NULL;

		if (redisGetReply(c->rc, (void **)&r) != REDIS_OK)
			return redis_conn_err(c->rc, NULL, "reply", why, wl);
		if (r->type == REDIS_REPLY_ERROR && rc == 0)
			rc = redis_conn_err(NULL, r, "command", why, wl);
		freeReplyObject(r);
	}
	return rc;
}

/* ---- the drain events ------------------------------------------------------ */

void cluster_publish_drain(void *arg, const char *spec, size_t len)
{
	struct cluster *c = arg;
	uint64_t one = 1;
	int queued = 0;

	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	if (c->qn < CLUSTER_QUEUE_MAX && len < CLUSTER_SPEC_MAX) {
		memcpy(c->q[c->qn].spec, spec, len);
		c->q[c->qn].spec[len] = '\0';
		c->q[c->qn++].len = len;
		queued = 1;
	} else if (!c->q_warned) {
		c->q_warned = 1;
		log_warn("cluster: drain event queue full (%d) or argument too long: drain %.*s not told to the other nodes",
			 CLUSTER_QUEUE_MAX, (int)(len > 64 ? 64 : len), spec);
	}
	pthread_mutex_unlock(&c->mu);
	if (queued && write(c->wakefd, &one, sizeof(one)) != sizeof(one))
		log_warn("cluster: cannot wake the cluster thread: %s", strerror(errno));
}

/* PUBLISH what is queued. The queue is taken whole (the copy under the
 * lock is the engine threads' only wait); on a failure those events are
 * lost, logged: the customer's next ETRN tells the others again. */
static int flush_events(struct cluster *c, char *why, size_t wl)
{
	struct cl_event *take = c->take;
	char msg[CLUSTER_SPEC_MAX + CONFIG_NODE_ID_MAX + 16];
	size_t n;

	pthread_mutex_lock(&c->mu);
	n = c->qn;
	memcpy(take, c->q, n * sizeof(*take));
	c->qn = 0;
	c->q_warned = 0;
	pthread_mutex_unlock(&c->mu);
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		int len = snprintf(msg, sizeof(msg), "drain %s from %s", take[i].spec, c->node_id);

		redisAppendCommand(c->rc, "PUBLISH %s %b", c->chan, msg, (size_t)len);
	}
	if (get_replies(c, n, why, wl)) {
		log_warn("cluster: %zu drain event(s) not told to the other nodes (first: drain %s): %s",
			 n, take[0].spec, why);
		return -1;
	}
	log_debug("cluster: %zu drain event(s) published", n);
	return 0;
}

/* ---- reading the other nodes ------------------------------------------------- */

static struct cl_peer *peer_of(struct cluster *c, const char *id, size_t len)
{
	struct cl_peer *p;

	if (len == 0 || len >= CONFIG_NODE_ID_MAX)
		return NULL;
	for (size_t i = 0; i < c->npeers; i++)
		if (strlen(c->peers[i].id) == len && !memcmp(c->peers[i].id, id, len))
			return &c->peers[i];
	if (c->npeers == CLUSTER_PEERS_MAX)
		return NULL;
	p = &c->peers[c->npeers++];
	memset(p, 0, sizeof(*p));
	memcpy(p->id, id, len);
	return p;
}

static void peer_drop(struct cl_peer *p)
{
	for (size_t i = 0; i < p->nparts; i++)
		freeReplyObject(p->parts[i]);
	p->nparts = 0;
	p->have = 0;
}

static uint64_t field_u64(const redisReply *r)
{
	return r && r->type == REDIS_REPLY_STRING ? strtoull(r->str, NULL, 10) : 0;
}

static void field_str(char *out, size_t n, const redisReply *r)
{
	snprintf(out, n, "%s", r && r->type == REDIS_REPLY_STRING ? r->str : "");
}

/* One HMGET's reply (gen state addr seen msgs bytes): 1 if the peer's gen
 * moved (its HGETALL is then due), 0 if not, -1 if its hash is gone. */
static int peer_head(struct cl_peer *p, const redisReply *r)
{
	char gen[CLUSTER_GEN_MAX];

	if (r->type != REDIS_REPLY_ARRAY || r->elements != 6 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return -1;
	field_str(gen, sizeof(gen), r->element[0]);
	snprintf(p->node.id, sizeof(p->node.id), "%s", p->id);
	p->node.state = r->element[1]->type == REDIS_REPLY_STRING &&
		!strcmp(r->element[1]->str, CLUSTER_STATE_DRAINING) ? CLUSTERVIEW_DRAINING : CLUSTERVIEW_UP;
	field_str(p->node.addr, sizeof(p->node.addr), r->element[2]);
	p->node.seen_ms = field_u64(r->element[3]);
	p->node.msgs = field_u64(r->element[4]);
	p->node.bytes = field_u64(r->element[5]);
	if (p->have && !strcmp(gen, p->gen))
		return 0;
	snprintf(p->gen, sizeof(p->gen), "%s", gen);
	return 1;
}

/* The view from the peers present: nodes, then their "d:" fields. */
static struct clusterview *build_view(struct cluster *c)
{
	struct clusterview_builder *b = clusterview_builder_new();
	const size_t fl = sizeof(CLUSTER_F_DOMAIN) - 1;

	if (!b)
		return NULL;
	for (size_t i = 0; i < c->npeers; i++) {
		const struct cl_peer *p = &c->peers[i];
		int ix;

		if (!p->present || !p->have)
			continue;
		ix = clusterview_builder_node(b, &p->node);
		if (ix < 0)
			return clusterview_builder_free(b), NULL;
		for (size_t j = 0; j < p->nparts; j++) {
			const redisReply *a = p->parts[j]->element[1];

			for (size_t k = 0; k + 1 < a->elements; k += 2) {
				const redisReply *f = a->element[k], *v = a->element[k + 1];
				unsigned long long m, by;

				if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
				    f->len <= fl || memcmp(f->str, CLUSTER_F_DOMAIN, fl) ||
				    sscanf(v->str, "%llu %llu", &m, &by) != 2)
					continue;
				if (clusterview_builder_count(b, ix, f->str + fl, f->len - fl, m,
							      by) == -ENOMEM)
					return clusterview_builder_free(b), NULL;
			}
		}
	}
	return clusterview_build(b);
}

static void node_key(const struct cluster *c, char *key, size_t n, const char *id)
{
	snprintf(key, n, "%s" CLUSTER_KEY_NODE "{%s}", c->prefix, id);
}

/* HMGET the head of every member of the nodes zset but this node; marks
 * each peer present (hash there) or not, and fetch (gen moved). Returns
 * how many moved, or -1. */
static int read_heads(struct cluster *c, const redisReply *z, char *why, size_t wl)
{
	struct cl_peer *asked[CLUSTER_PEERS_MAX];
	size_t nasked = 0;
	int moved = 0;

	for (size_t i = 0; i < z->elements && nasked < CLUSTER_PEERS_MAX; i++) {
		const redisReply *m = z->element[i];
		char key[CLUSTER_KEY_MAX];
		struct cl_peer *p;

		if (m->type != REDIS_REPLY_STRING || !strcmp(m->str, c->node_id) ||
		    !(p = peer_of(c, m->str, m->len)))
			continue;
		node_key(c, key, sizeof(key), p->id);
		redisAppendCommand(c->rc, "HMGET %s " CLUSTER_F_GEN " " CLUSTER_F_STATE " "
				   CLUSTER_F_ADDR " " CLUSTER_F_SEEN " " CLUSTER_F_MSGS " "
				   CLUSTER_F_BYTES, key);
		asked[nasked++] = p;
	}
	for (size_t i = 0; i < nasked; i++) {
		struct cl_peer *p = asked[i];
		redisReply *r = NULL;
		int h;

		if (redisGetReply(c->rc, (void **)&r) != REDIS_OK)
			return redis_conn_err(c->rc, NULL, "HMGET node", why, wl);
		h = peer_head(p, r);
		freeReplyObject(r);
		if (h < 0) { /* expired: gone; fetched anew if it comes back */
			peer_drop(p);
			continue;
		}
		p->present = 1;
		p->fetch = h;
		moved += h;
	}
	return moved;
}

/* One peer's hash, HSCAN by HSCAN (a field may come twice: the view
 * keeps one). 0 or -1; on -1 the peer is left unread. */
static int fetch_peer(struct cluster *c, struct cl_peer *p, char *why, size_t wl)
{
	char key[CLUSTER_KEY_MAX], cursor[32] = "0";

	node_key(c, key, sizeof(key), p->id);
	peer_drop(p);
	do {
		redisReply *r = redisCommand(c->rc, "HSCAN %s %s COUNT " CLUSTER_HSCAN_COUNT, key,
					     cursor);

		if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			redis_conn_err(c->rc, r, "HSCAN node", why, wl);
			if (r)
				freeReplyObject(r);
			peer_drop(p);
			return -1;
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		if (p->nparts == p->capparts) {
			size_t n = p->capparts ? p->capparts * 2 : CLUSTER_MIN_PARTS;
			redisReply **q = realloc(p->parts, n * sizeof(*q));

			if (!q) {
				freeReplyObject(r);
				peer_drop(p);
				return snprintf(why, wl, "out of memory reading %s", key), -1;
			}
			p->parts = q;
			p->capparts = n;
		}
		p->parts[p->nparts++] = r;
	} while (strcmp(cursor, "0"));
	p->have = 1;
	return 0;
}

/* The peers whose gen moved, read whole. 0 or -1. */
static int fetch_moved(struct cluster *c, char *why, size_t wl)
{
	for (size_t i = 0; i < c->npeers; i++) {
		struct cl_peer *p = &c->peers[i];

		if (!p->present || !p->fetch)
			continue;
		if (fetch_peer(c, p, why, wl)) {
			p->gen[0] = '\0';
			return -1;
		}
		p->fetch = 0;
	}
	return 0;
}

/* The other nodes: a new view when a node came, went, or its gen moved. */
static int read_others(struct cluster *c, char *why, size_t wl)
{
	redisReply *z = redisCommand(c->rc, "ZRANGE %s 0 -1", c->key_nodes);
	int moved = 0, rc = -1;

	if (!z || z->type != REDIS_REPLY_ARRAY) {
		redis_conn_err(c->rc, z, "ZRANGE nodes", why, wl);
		goto out;
	}
	for (size_t i = 0; i < c->npeers; i++) {
		c->peers[i].was = c->peers[i].present;
		c->peers[i].present = 0;
	}
	if ((moved = read_heads(c, z, why, wl)) < 0 || fetch_moved(c, why, wl))
		goto out;
	for (size_t i = 0; i < c->npeers; i++)
		moved |= c->peers[i].was != c->peers[i].present;
	rc = 0;
	if (moved || !c->have_view) {
		struct clusterview *v = build_view(c);

		if (!v) {
			log_warn("cluster: out of memory building the view of the other nodes; the last one stays");
		} else {
			clusterview_live_swap(c->view, v);
			c->have_view = 1;
		}
	}
out:
	if (z)
		freeReplyObject(z);
	return rc;
}

/* ---- writing this node's hash ----------------------------------------------- */

/* prev big enough for domain index idx (new places 0). 0 or -ENOMEM. */
static int prev_fit(struct cluster *c, size_t idx)
{
	size_t n = c->nprev ? c->nprev : CLUSTER_FIELDS_PER_CMD;
	struct cl_prev *p;

	if (idx < c->nprev)
		return 0;
	while (n <= idx)
		n *= 2;
	p = realloc(c->prev, n * sizeof(*p));
	if (!p)
		return -ENOMEM;
	memset(p + c->nprev, 0, (n - c->nprev) * sizeof(*p));
	c->prev = p;
	c->nprev = n;
	return 0;
}

/* counts.walk's callback: the domains whose count differs from the hash. */
static void collect(void *arg, size_t idx, const char *name, uint64_t msgs, uint64_t bytes)
{
	struct cluster *c = arg;

	c->tot_msgs += msgs;
	c->tot_bytes += bytes;
	if (prev_fit(c, idx)) {
		c->ch_oom = 1;
		return;
	}
	if (msgs == c->prev[idx].msgs && (msgs == 0 || bytes == c->prev[idx].bytes))
		return;
	if (c->nch == c->capch) {
		size_t n = c->capch ? c->capch * 2 : CLUSTER_FIELDS_PER_CMD;
		struct cl_change *q = realloc(c->ch, n * sizeof(*q));

		if (!q) {
			c->ch_oom = 1;
			return;
		}
		c->ch = q;
		c->capch = n;
	}
	c->ch[c->nch++] = (struct cl_change){ idx, name, msgs, bytes };
}

/* Append HSET (set) or HDEL (!set) of the changed domains with (set) or
 * without mail, in commands of CLUSTER_FIELDS_PER_CMD fields. Returns how
 * many commands. */
static size_t append_fields(struct cluster *c, int set)
{
	size_t ncmd = 0, k = 0;

	for (size_t i = 0; i <= c->nch; i++) {
		if (k > 0 && (i == c->nch || k == CLUSTER_FIELDS_PER_CMD)) {
			size_t argc = 2;

			c->argv[0] = set ? "HSET" : "HDEL";
			c->argvlen[0] = strlen(c->argv[0]);
			c->argv[1] = c->key;
			c->argvlen[1] = strlen(c->key);
			for (size_t j = 0; j < k; j++) {
				c->argv[argc] = c->fld[j];
				c->argvlen[argc++] = strlen(c->fld[j]);
				if (!set)
					continue;
				c->argv[argc] = c->val[j];
				c->argvlen[argc++] = strlen(c->val[j]);
			}
			redisAppendCommandArgv(c->rc, (int)argc, c->argv, c->argvlen);
			ncmd++;
			k = 0;
		}
		if (i == c->nch || (c->ch[i].msgs > 0) != set)
			continue;
		snprintf(c->fld[k], CLUSTER_FIELD_MAX, CLUSTER_F_DOMAIN "%s", c->ch[i].name);
		snprintf(c->val[k], CLUSTER_VAL_MAX, "%" PRIu64 " %" PRIu64, c->ch[i].msgs,
			 c->ch[i].bytes);
		k++;
	}
	return ncmd;
}

/* EXEC's reply: an array with no error in it. */
static int exec_ok(struct cluster *c, char *why, size_t wl)
{
	redisReply *r = NULL;
	int rc = 0;

	if (redisGetReply(c->rc, (void **)&r) != REDIS_OK)
		return redis_conn_err(c->rc, NULL, "EXEC", why, wl);
	if (r->type != REDIS_REPLY_ARRAY)
		rc = redis_conn_err(NULL, r, "EXEC", why, wl);
	for (size_t i = 0; rc == 0 && i < r->elements; i++)
		if (r->element[i]->type == REDIS_REPLY_ERROR)
			rc = redis_conn_err(NULL, r->element[i], "EXEC", why, wl);
	freeReplyObject(r);
	return rc;
}

/* This node's hash: a diff against what it has (all of it after a
 * connect), the head fields, the TTL and the zset score, in one
 * MULTI/EXEC: a reader sees the old hash or the new, never half. */
static int write_self(struct cluster *c, char *why, size_t wl)
{
	uint64_t seen = now_wall_us() / 1000, gen;
	int st = atomic_load(&c->state), bump;
	char gens[CLUSTER_GEN_MAX];
	size_t ncmd = 0;

	if (c->full && c->prev)
		memset(c->prev, 0, c->nprev * sizeof(*c->prev));
	c->nch = 0;
	c->ch_oom = 0;
	c->tot_msgs = c->tot_bytes = 0;
	c->counts.walk(c->counts.src, collect, c);
	if (c->ch_oom) {
		snprintf(why, wl, "out of memory listing the changed domains");
		return -1;
	}
	bump = c->full || c->nch > 0 || st != c->written_state;
	gen = c->gen + (bump ? 1 : 0);
	snprintf(gens, sizeof(gens), "%" PRIu64 ".%" PRIu64, c->started_ms, gen);
	redisAppendCommand(c->rc, "MULTI");
	ncmd++;
	if (c->full) {
		redisAppendCommand(c->rc, "DEL %s", c->key);
		ncmd++;
	}
	redisAppendCommand(c->rc, "HSET %s " CLUSTER_F_ADDR " %s " CLUSTER_F_STATE " %s "
			   CLUSTER_F_STARTED " %" PRIu64 " " CLUSTER_F_SEEN " %" PRIu64 " "
			   CLUSTER_F_MSGS " %" PRIu64 " " CLUSTER_F_BYTES " %" PRIu64 " "
			   CLUSTER_F_GEN " %s " CLUSTER_F_READ " %" PRIu64, c->key, c->addr,
			   st == CLUSTERVIEW_DRAINING ? CLUSTER_STATE_DRAINING : CLUSTER_STATE_UP,
			   c->started_ms / 1000, seen, c->tot_msgs, c->tot_bytes, gens, c->read_ms);
	ncmd++;
	ncmd += append_fields(c, 1);
	ncmd += append_fields(c, 0);
	redisAppendCommand(c->rc, "PEXPIRE %s %u", c->key, c->ttl_ms);
	redisAppendCommand(c->rc, "ZADD %s %" PRIu64 " %s", c->key_nodes, seen, c->node_id);
	ncmd += 2;
	redisAppendCommand(c->rc, "EXEC");
	if (get_replies(c, ncmd, why, wl) || exec_ok(c, why, wl))
		return -1;
	for (size_t i = 0; i < c->nch; i++)
		c->prev[c->ch[i].idx] = (struct cl_prev){ c->ch[i].msgs, c->ch[i].bytes };
	c->gen = gen;
	c->written_state = st;
	c->full = 0;
	return 0;
}

/* ---- the thread -------------------------------------------------------------- */

/* what: CLUSTER_WRITE (this node's hash) or CLUSTER_READ too (the others
 * first, then this node's hash with the read's time). */
static int refresh(struct cluster *c, enum cluster_due what, char *why, size_t wl)
{
	uint64_t t0 = now_mono_us(), now;
	int full = c->full;

	if (what == CLUSTER_READ) {
		/* When it began: what the others had written by then is in. */
		uint64_t began = now_wall_us() / 1000;

		if (read_others(c, why, wl))
			return -1;
		c->read_ms = began;
	}
	if (write_self(c, why, wl))
		return -1;
	log_debug("cluster: node %s refreshed in %" PRIu64 " us: %" PRIu64
		  " message(s) held, %zu domain(s) changed%s%s", c->node_id, now_mono_us() - t0,
		  c->tot_msgs, c->nch, full ? " (full rewrite)" : "",
		  what == CLUSTER_READ ? ", the others read" : "");
	now = now_mono_ms();
	c->dirty = 0;
	c->last_write_ms = now;
	if (what == CLUSTER_READ)
		c->next_ms = now + c->publish_ms;
	return 0;
}

/* What is due now: every interval a read of the others and a write; a
 * change (debounced) or a state to announce, a write. */
static enum cluster_due refresh_due(struct cluster *c, uint64_t now)
{
	if (c->counts.changed && c->counts.changed(c->counts.src))
		c->dirty = 1;
	if (now >= c->next_ms)
		return CLUSTER_READ;
	if (atomic_load(&c->state) != c->written_state ||
	    (c->dirty && now >= c->last_write_ms + CLUSTER_DEBOUNCE_MS))
		return CLUSTER_WRITE;
	return CLUSTER_NONE;
}

static int cluster_connect(struct cluster *c, char *why, size_t wl)
{
	c->rc = redis_conn_open(&c->redis, CLUSTER_TIMEOUT_MS, why, wl);
	if (!c->rc)
		return -1;
	c->full = 1;
	return 0;
}

static void *cluster_main(void *arg)
{
	struct cluster *c = arg;
	char why[512];

	for (;;) {
		enum cluster_due due;
		int stop;

		if (!c->rc && cluster_connect(c, why, sizeof(why))) {
			cluster_enter(c, CLUSTER_DOWN, why);
			if (cluster_nap(c, c->backoff_ms))
				break;
			c->backoff_ms = c->backoff_ms * 2 > CLUSTER_BACKOFF_MAX_MS ?
				CLUSTER_BACKOFF_MAX_MS : c->backoff_ms * 2;
			continue;
		}
		stop = cluster_nap(c, CLUSTER_TICK_MS);
		due = stop ? CLUSTER_NONE : refresh_due(c, now_mono_ms());
		if (flush_events(c, why, sizeof(why)) ||
		    (due != CLUSTER_NONE && refresh(c, due, why, sizeof(why)))) {
			cluster_disconnect(c, why);
			/* A refused command (OOM, NOPERM, WRONGTYPE) fails again
			 * on a new connection: back off as after a failed
			 * connect, or the thread would reconnect every tick. */
			if (stop || cluster_nap(c, c->backoff_ms))
				break;
			c->backoff_ms = c->backoff_ms * 2 > CLUSTER_BACKOFF_MAX_MS ?
				CLUSTER_BACKOFF_MAX_MS : c->backoff_ms * 2;
			continue;
		}
		/* Up is said (and the back-off reset) when a refresh worked,
		 * not at connect: a connection whose writes are refused is
		 * no recovery. */
		if (due != CLUSTER_NONE) {
			c->backoff_ms = CLUSTER_BACKOFF_MIN_MS;
			cluster_enter(c, CLUSTER_UP, NULL);
		}
		if (stop)
			break;
	}
	return NULL;
}

void cluster_set_state(struct cluster *c, enum clusterview_state st)
{
	uint64_t one = 1;

	if (!c)
		return;
	atomic_store(&c->state, (int)st);
	if (write(c->wakefd, &one, sizeof(one)) != sizeof(one))
		log_warn("cluster: cannot wake the cluster thread: %s", strerror(errno));
}

/* This node's cluster_listen address, "" when it has none. */
static void own_addr(const struct config *cfg, char *out, size_t n)
{
	out[0] = '\0';
	for (unsigned i = 0; i < cfg->nlisten; i++)
		if (cfg->listen[i].flags == CONFIG_LISTEN_CLUSTER) {
			snprintf(out, n, "%s", cfg->listen[i].text);
			return;
		}
}

static struct cluster *cluster_free(struct cluster *c)
{
	if (!c)
		return NULL;
	if (c->rc)
		redisFree(c->rc);
	if (c->stopfd >= 0)
		close(c->stopfd);
	if (c->wakefd >= 0)
		close(c->wakefd);
	for (size_t i = 0; c->peers && i < c->npeers; i++) {
		peer_drop(&c->peers[i]);
		free(c->peers[i].parts);
	}
	pthread_mutex_destroy(&c->mu);
	free(c->peers);
	free(c->prev);
	free(c->ch);
	free(c);
	return NULL;
}

struct cluster *cluster_start(const struct config *cfg, struct clusterview_live *view,
			      const struct cluster_counts *counts, char *err, size_t errlen)
{
	struct cluster *c;
	int rc;

	err[0] = '\0';
	if (cfg->redis.kind == CONFIG_REDIS_NONE)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "cluster: out of memory");
		return NULL;
	}
	c->stopfd = eventfd(0, EFD_CLOEXEC);
	c->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&c->mu, NULL);
	c->redis = cfg->redis;
	snprintf(c->prefix, sizeof(c->prefix), "%s", cfg->redis_prefix);
	snprintf(c->node_id, sizeof(c->node_id), "%s", cfg->node_id);
	own_addr(cfg, c->addr, sizeof(c->addr));
	node_key(c, c->key, sizeof(c->key), c->node_id);
	snprintf(c->key_nodes, sizeof(c->key_nodes), "%s" CLUSTER_KEY_NODES, c->prefix);
	snprintf(c->chan, sizeof(c->chan), "%sevents", c->prefix);
	c->publish_ms = cfg->cluster_publish_ms;
	c->ttl_ms = cfg->cluster_node_ttl_ms;
	c->view = view;
	c->counts = *counts;
	c->cs = CLUSTER_DOWN;
	c->backoff_ms = CLUSTER_BACKOFF_MIN_MS;
	c->started_ms = now_wall_us() / 1000;
	c->full = 1;
	atomic_init(&c->state, CLUSTERVIEW_UP);
	c->written_state = -1;
	c->peers = calloc(CLUSTER_PEERS_MAX, sizeof(*c->peers));
	if (c->stopfd < 0 || c->wakefd < 0 || !c->peers) {
		snprintf(err, errlen, "cluster: %s", c->stopfd < 0 || c->wakefd < 0 ?
			 strerror(errno) : "out of memory");
		return cluster_free(c);
	}
	rc = pthread_create(&c->thread, NULL, cluster_main, c);
	if (rc) {
		snprintf(err, errlen, "cluster: cannot start its thread: %s", strerror(rc));
		return cluster_free(c);
	}
	return c;
}

struct cluster *cluster_stop(struct cluster *c)
{
	uint64_t one = 1;

	if (!c)
		return NULL;
	if (write(c->stopfd, &one, sizeof(one)) != sizeof(one))
		log_warn("cluster: cannot wake the cluster thread: %s", strerror(errno));
	pthread_join(c->thread, NULL);
	return cluster_free(c);
}
