/* SPDX-License-Identifier: MIT */
/*
 * control: the control thread (control.h). The master copy of every row and
 * route is a domtab_builder owned by this thread alone; each change (a batch
 * of events, a full reload) ends with domtab_build() + domtab_live_swap(), so
 * engine threads only ever see whole, immutable tables.
 *
 * The subscriber connection is read with poll() on its socket and hiredis's
 * reader (hiredis 0.14 has no async timeouts): the thread wakes for events,
 * for the resync deadline, and for control_stop() through an eventfd. Events
 * that arrive while a batch is applied wait in the socket; SUBSCRIBE comes
 * before the load, so nothing published after the load began is missed.
 *
 * Keys are read in both forms (admin/schema.h): PREFIX KIND {NAME} wins over
 * an untagged PREFIX KIND NAME. With Sentinel, a third connection watches a
 * sentinel's +switch-master; that, a lost connection, or a READONLY or
 * LOADING reply drops both connections, and the reconnect (through Sentinel,
 * redis_conn_open) loads everything again from the new master.
 */
#include "admin/control.h"

#include <errno.h>
#include <stdatomic.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "admin/rcptload.h"
#include "admin/redis_conn.h"
#include "admin/schema.h"
#include "core/log.h"
#include "core/now.h"

#define CONTROL_TIMEOUT_MS 5000         /* connect and each command */
#define CONTROL_BACKOFF_MIN_MS 100      /* first reconnect delay, doubled ... */
#define CONTROL_BACKOFF_MAX_MS 2000     /* ... up to this */
#define CONTROL_START_TRIES 3           /* first load: attempts before giving up */
#define CONTROL_SCAN_COUNT "1000"       /* SCAN COUNT hint */
#define CONTROL_BATCH_MAX 20000         /* events applied in one table build */
#define CONTROL_KEY_MAX (CONFIG_REDIS_PREFIX_MAX + 16 + DOMTAB_NAME_MAX)

/* The kinds of key an event names and the resync loads: domain rows
 * (hashes) and routes (strings). Indexes control_kinds[]. */
enum control_kind { CONTROL_KIND_DOMAIN = 0, CONTROL_KIND_ROUTE = 1, CONTROL_NKINDS };

/* Names of one kind named by events, to fetch. */
struct control_pending {
	char **v;
	size_t n, cap;
};

/* The Redis settings the thread follows: cfg's at start, then each
 * control_reconfigure()'s (SIGHUP). */
struct control_redis_set {
	struct config_redis redis;
	char prefix[CONFIG_REDIS_PREFIX_MAX + 1];
	unsigned resync_ms;
};

struct control {
	const struct config *cfg;
	struct control_redis_set cur;    /* this thread's */
	/* Handed over by control_reconfigure(), taken at the top of the
	 * thread's loop; wakefd wakes it from its poll or its back-off. */
	pthread_mutex_t next_mu;
	struct control_redis_set next;
	int next_asked;
	int wakefd;
	/* "drain <domain>" events: the operator or another node asked; set
	 * once by control_set_drain(), read on this thread. */
	_Atomic(control_drain_fn) drain_fn;
	void *_Atomic drain_arg;
	_Atomic(control_event_fn) event_fn;  /* every other event */
	void *_Atomic event_arg;
	struct domtab_live *lv;
	struct domtab_builder *master;   /* rows from Redis + static domains */
	redisContext *cmd, *sub;
	redisContext *watch;             /* a sentinel's +switch-master, or NULL */
	int up;                          /* Redis state last logged */
	/* For control_redis_state() (metrics, etrnctl top), any thread:
	 * connected now, and the wall time of the last full load. */
	atomic_int redis_up;
	_Atomic uint64_t last_load_us;
	int stopfd;
	pthread_t thread;
	int have_thread;
	uint64_t next_resync_ms;
	unsigned backoff_ms;
	char chan[CONFIG_REDIS_PREFIX_MAX + 8];
	char kprefix[CONTROL_NKINDS][CONFIG_REDIS_PREFIX_MAX + 8]; /* "etrnd:domain:" ... */
	struct control_pending pending[CONTROL_NKINDS];
	/* Recipient sets (issue 19): their owner, and the domains whose set
	 * a "rcpts <d>" event says to read again. */
	struct rcptload *rl;
	struct control_pending rcpt_pending;
	int resync_asked;
};

static void control_disconnect(struct control *c)
{
	if (c->cmd)
		redisFree(c->cmd);
	if (c->sub)
		redisFree(c->sub);
	if (c->watch)
		redisFree(c->watch);
	c->cmd = c->sub = c->watch = NULL;
}

static int is_static(const struct control *c, const char *name)
{
	for (size_t i = 0; i < c->cfg->nrelay_domains; i++)
		if (!strcmp(c->cfg->relay_domains[i], name))
			return 1;
	return 0;
}

/* relay_domains not provisioned in Redis get a row with default settings. */
static int add_static(const struct control *c, struct domtab_builder *b)
{
	for (size_t i = 0; i < c->cfg->nrelay_domains; i++) {
		struct domtab_row row = { .name = c->cfg->relay_domains[i] };

		if (domtab_builder_get(b, row.name))
			continue;
		if (domtab_builder_put(b, &row))
			return -ENOMEM;
	}
	return 0;
}

/* Decode one HGETALL reply for key into b: put, or del when the key is gone.
 * A row with bad fields is still put (those fields at their defaults). */
static int apply_row(struct control *c, struct domtab_builder *b, const char *key,
		     const char *name, const redisReply *r)
{
	const char *fv[2 * 32];
	struct cidr cidrs[DOMTAB_CIDR_MAX];
	struct domtab_row row;
	char norm[DOMTAB_NAME_MAX + 1], why[SCHEMA_WHY_MAX];
	size_t n = 0;

	char shown[LOG_TEXT_MAX];

	if (schema_domain_norm(name, 1, norm, why, sizeof(why))) {
		log_warn("redis: key %s: %s; ignored",
			 log_printable(shown, sizeof(shown), key, strlen(key)), why);
		return 0;
	}
	if (r->type != REDIS_REPLY_ARRAY) {
		log_warn("redis: HGETALL %s: %s; the row stays as it was", key,
			 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply type");
		return 0;
	}
	if (r->elements == 0) {
		domtab_builder_del(b, norm);
		if (is_static(c, norm)) {
			struct domtab_row srow = { .name = norm };

			return domtab_builder_put(b, &srow);
		}
		return 0;
	}
	for (size_t i = 0; i + 1 < r->elements && n + 2 <= sizeof(fv) / sizeof(fv[0]); i += 2) {
		if (r->element[i]->type != REDIS_REPLY_STRING ||
		    r->element[i + 1]->type != REDIS_REPLY_STRING)
			continue;
		fv[n++] = r->element[i]->str;
		fv[n++] = r->element[i + 1]->str;
	}
	if (schema_row_from_fields(&row, cidrs, norm, fv, n, why, sizeof(why)))
		log_warn("redis: %s: %s (those fields left at their defaults)", key, why);
	return domtab_builder_put(b, &row);
}

/* One GET reply for route key name into b: put, or del when the key is
 * gone or its value is bad (logged), so a resync and an event agree. */
static int apply_route(struct control *c, struct domtab_builder *b, const char *key,
		       const char *name, const redisReply *r)
{
	char norm[DOMTAB_NAME_MAX + 1], why[SCHEMA_WHY_MAX], shown[LOG_TEXT_MAX];

	(void)c;
	if (schema_domain_norm(name, 1, norm, why, sizeof(why))) {
		log_warn("redis: key %s: %s; ignored",
			 log_printable(shown, sizeof(shown), key, strlen(key)), why);
		return 0;
	}
	if (r->type == REDIS_REPLY_NIL) {
		domtab_builder_route_del(b, norm);
		return 0;
	}
	if (r->type != REDIS_REPLY_STRING)
		snprintf(why, sizeof(why), "not a string (%s)",
			 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply type");
	else if (schema_route_check(r->str, why, sizeof(why)) == 0)
		return domtab_builder_route_put(b, norm, r->str) == -ENOMEM ? -ENOMEM : 0;
	log_warn("redis: %s: %s; route ignored", key, why);
	domtab_builder_route_del(b, norm);
	return 0;
}

/* How each kind of key is read: the command (its one argument the key) and
 * what its reply does to the builder. */
struct control_kind_ops {
	const char *key;                 /* "domain:" after the prefix */
	const char *event;               /* "domain " on the events channel */
	const char *cmd;
	int (*apply)(struct control *c, struct domtab_builder *b, const char *key,
		     const char *name, const redisReply *r);
};

static const struct control_kind_ops control_kinds[CONTROL_NKINDS] = {
	[CONTROL_KIND_DOMAIN] = { "domain:", "domain ", "HGETALL", apply_row },
	[CONTROL_KIND_ROUTE] = { "route:", "route ", "GET", apply_route },
};

/* A reply that says the key exists: tagged and untagged twins are both
 * read, and the tagged one wins when it exists (HGETALL of a missing hash
 * is an empty array, GET of a missing string nil). */
static int control_reply_present(const redisReply *r)
{
	return r->type != REDIS_REPLY_NIL && !(r->type == REDIS_REPLY_ARRAY && r->elements == 0);
}

/* Append the read of names[i]'s key of kind k (tagged, or untagged when
 * untagged is set) into key. 0, 1 when the key does not fit (never sent),
 * -1 on failure (err set). */
static int fetch_append(struct control *c, enum control_kind k, const char *name,
			int untagged, char *key, size_t klen, char *err, size_t errlen)
{
	const struct control_kind_ops *ops = &control_kinds[k];

	if (!(untagged ? schema_key_untagged(key, klen, c->kprefix[k], "", name)
		       : schema_key(key, klen, c->kprefix[k], "", name)))
		return 1;
	if (redisAppendCommand(c->cmd, "%s %s", ops->cmd, key) != REDIS_OK)
		return redis_conn_err(c->cmd, NULL, ops->cmd, err, errlen);
	return 0;
}

/* The next reply; -1 (err set) when the connection broke, the server says
 * it is no master to read from (READONLY, LOADING: failover), or it refuses
 * the read (NOPERM, ...): a row it would not give is no absent row (550).
 * WRONGTYPE is one bad key, the apply's to log. */
static int fetch_reply(struct control *c, const char *what, redisReply **r, char *err,
		       size_t errlen)
{
	*r = NULL;
	if (redisGetReply(c->cmd, (void **)r) != REDIS_OK || !*r)
		return redis_conn_err(c->cmd, NULL, what, err, errlen);
	if (redis_conn_failover_reply(*r) || ((*r)->type == REDIS_REPLY_ERROR &&
					       strncmp((*r)->str, "WRONGTYPE", 9))) {
		redis_conn_err(c->cmd, *r, what, err, errlen);
		freeReplyObject(*r);
		*r = NULL;
		return -1;
	}
	return 0;
}

/* Pipelined reads of the keys of kind k named names[0..n) into b: the
 * tagged key, and with both the untagged twin too (the tagged one wins when
 * it exists). 0, or -1 (connection broken, failover, or out of memory). */
static int fetch_keys(struct control *c, enum control_kind k, struct domtab_builder *b,
		      char *const *names, size_t n, int both, char *err, size_t errlen)
{
	const struct control_kind_ops *ops = &control_kinds[k];
	char key[CONTROL_KEY_MAX], ukey[CONTROL_KEY_MAX];
	int rc;

	for (size_t i = 0; i < n; i++) {
		if ((rc = fetch_append(c, k, names[i], 0, key, sizeof(key), err, errlen)) < 0 ||
		    (both && rc == 0 &&
		     fetch_append(c, k, names[i], 1, ukey, sizeof(ukey), err, errlen) < 0))
			return -1;
	}
	for (size_t i = 0; i < n; i++) {
		redisReply *r, *u = NULL;

		if (!schema_key(key, sizeof(key), c->kprefix[k], "", names[i]))
			continue; /* never sent */
		if (fetch_reply(c, ops->cmd, &r, err, errlen))
			return -1;
		if (both && fetch_reply(c, ops->cmd, &u, err, errlen)) {
			freeReplyObject(r);
			return -1;
		}
		if (u && !control_reply_present(r))
			rc = ops->apply(c, b, schema_key_untagged(ukey, sizeof(ukey), c->kprefix[k],
								  "", names[i]), names[i], u);
		else
			rc = ops->apply(c, b, key, names[i], r);
		freeReplyObject(r);
		if (u)
			freeReplyObject(u);
		if (rc == -ENOMEM) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	return 0;
}

/* Every key of kind k, by SCAN (never KEYS: it would stall Redis), into b.
 * 0, or -1 with err. */
static int scan_kind(struct control *c, enum control_kind k, struct domtab_builder *b,
		     char *err, size_t errlen)
{
	char cursor[32] = "0", match[CONTROL_KEY_MAX];
	size_t plen = strlen(c->kprefix[k]);
	redisReply *r = NULL;

	snprintf(match, sizeof(match), "%s*", c->kprefix[k]);
	do {
		char **names;
		size_t n, nt = 0;
		redisReply *keys;

		r = redisCommand(c->cmd, "SCAN %s MATCH %s COUNT %s", cursor, match,
				 CONTROL_SCAN_COUNT);
		if (!r || redis_conn_failover_reply(r) || r->type != REDIS_REPLY_ARRAY ||
		    r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			redis_conn_err(c->cmd, r, "SCAN", err, errlen);
			goto fail;
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		keys = r->element[1];
		names = calloc(keys->elements + 1, sizeof(*names));
		if (!names) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		/* Tagged names from the front (read alone: they win), untagged
		 * from the back (read with their tagged twin). A key with stray
		 * braces goes with the untagged: its name check logs it. */
		n = keys->elements;
		for (size_t i = 0; i < keys->elements; i++) {
			redisReply *e = keys->element[i];
			const char *nm;
			size_t nl;

			if (e->type != REDIS_REPLY_STRING || e->len <= plen)
				continue;
			if (schema_key_name(e->str + plen, e->len - plen, &nm, &nl) == 1) {
				e->str[plen + 1 + nl] = '\0'; /* the closing brace */
				names[nt++] = e->str + plen + 1;
			} else {
				names[--n] = e->str + plen;
			}
		}
		if (fetch_keys(c, k, b, names, nt, 0, err, errlen) ||
		    fetch_keys(c, k, b, names + n, keys->elements - n, 1, err, errlen)) {
			free(names);
			goto fail;
		}
		free(names);
		freeReplyObject(r);
		r = NULL;
	} while (strcmp(cursor, "0"));
	return 0;
fail:
	if (r)
		freeReplyObject(r);
	return -1;
}

/* Every domain row and route into a new builder. NULL with err on
 * failure. */
static struct domtab_builder *full_load(struct control *c, char *err, size_t errlen)
{
	struct domtab_builder *b = domtab_builder_new();

	if (!b) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (int k = 0; k < CONTROL_NKINDS; k++)
		if (scan_kind(c, (enum control_kind)k, b, err, errlen))
			goto fail;
	if (add_static(c, b)) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	return b;
fail:
	domtab_builder_free(b);
	return NULL;
}

static int publish(struct control *c)
{
	struct domtab *t;

	rcptload_attach(c->rl, c->master);
	t = domtab_build(c->master);
	if (!t) {
		log_err("control: out of memory building the domain table; keeping the last one");
		return -1;
	}
	domtab_live_swap(c->lv, t);
	/* No reader holds the old table now, nor the sets it alone had. */
	rcptload_reap(c->rl);
	return 0;
}

/* Connect both connections, subscribe, load everything, publish. */
static int control_connect(struct control *c, char *err, size_t errlen)
{
	redisReply *r;
	struct domtab_builder *b;
	uint64_t t0 = now_mono_ms();

	c->cmd = redis_conn_open(&c->cur.redis, CONTROL_TIMEOUT_MS, err, errlen);
	if (!c->cmd)
		return -1;
	c->sub = redis_conn_open(&c->cur.redis, CONTROL_TIMEOUT_MS, err, errlen);
	if (!c->sub)
		goto fail;
	r = redisCommand(c->sub, "SUBSCRIBE %s", c->chan);
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		redis_conn_err(c->sub, r, "SUBSCRIBE", err, errlen);
		if (r)
			freeReplyObject(r);
		goto fail;
	}
	freeReplyObject(r);
	if (c->cur.redis.nsentinels) {
		char why[512];

		/* Without it a failover is still seen when the old master's
		 * connection breaks or answers READONLY: not fatal. */
		c->watch = redis_conn_sentinel_watch(&c->cur.redis, why, sizeof(why));
		if (!c->watch)
			log_warn("%s; a failover is noticed when the master's connection fails", why);
	}
	b = full_load(c, err, errlen);
	if (!b)
		goto fail;
	domtab_builder_free(c->master);
	c->master = b;
	if (rcptload_sync(c->rl, c->cmd, c->cur.prefix, c->master, 1, err, errlen) ||
	    publish(c))
		goto fail;
	c->next_resync_ms = now_mono_ms() + c->cur.resync_ms;
	domtab_live_set_stale(c->lv, 0);
	c->backoff_ms = CONTROL_BACKOFF_MIN_MS;
	atomic_store(&c->last_load_us, now_wall_us());
	atomic_store(&c->redis_up, 1);
	log_info("redis %s: %s, %zu domain(s) loaded in %llu ms, %zu route(s)",
		 c->cur.redis.display, c->up ? "connected" : "connected again",
		 domtab_builder_count(c->master), (unsigned long long)(now_mono_ms() - t0),
		 domtab_builder_route_count(c->master));
	c->up = 1;
	return 0;
fail:
	control_disconnect(c);
	return -1;
}

static void went_down(struct control *c, const char *why)
{
	control_disconnect(c);
	domtab_live_set_stale(c->lv, 1);
	atomic_store(&c->redis_up, 0);
	if (c->up) {
		log_warn("redis %s: %s; serving %zu domain(s) from the last table, unknown domains get 451 until Redis is back; reconnecting",
			 c->cur.redis.display, why, domtab_builder_count(c->master));
		c->up = 0;
	}
}

static int pending_add(struct control_pending *p, const char *name, size_t len)
{
	char *s;

	if (p->n == p->cap) {
		size_t ncap = p->cap ? p->cap * 2 : 64;
		char **nv = realloc(p->v, ncap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		p->v = nv;
		p->cap = ncap;
	}
	s = strndup(name, len);
	if (!s)
		return -ENOMEM;
	p->v[p->n++] = s;
	return 0;
}

static size_t pending_count(const struct control *c)
{
	size_t n = c->rcpt_pending.n;

	for (int k = 0; k < CONTROL_NKINDS; k++)
		n += c->pending[k].n;
	return n;
}

static void pending_clear_one(struct control_pending *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->v[i]);
	p->n = 0;
}

static void pending_clear(struct control *c)
{
	for (int k = 0; k < CONTROL_NKINDS; k++)
		pending_clear_one(&c->pending[k]);
	pending_clear_one(&c->rcpt_pending);
}

static void pending_free(struct control *c)
{
	pending_clear(c);
	for (int k = 0; k < CONTROL_NKINDS; k++)
		free(c->pending[k].v);
	free(c->rcpt_pending.v);
}

/* A "domain <d>" or "route <d>" event: d's key is read again. 1 when p was
 * one of those. */
static int on_key_event(struct control *c, const char *p, size_t n)
{
	for (int k = 0; k <= CONTROL_NKINDS; k++) {
		/* CONTROL_NKINDS: "rcpts <d>", a recipient set (rcptload.h). */
		const char *ev = k < CONTROL_NKINDS ? control_kinds[k].event : "rcpts ";
		struct control_pending *pd = k < CONTROL_NKINDS ? &c->pending[k] : &c->rcpt_pending;
		size_t el = strlen(ev);

		if (n <= el || memcmp(p, ev, el))
			continue;
		if (n - el > DOMTAB_NAME_MAX + 1 || pending_add(pd, p + el, n - el)) {
			char shown[LOG_TEXT_MAX];

			log_warn("redis: event \"%s\" dropped (too long or out of memory); the next resync covers it",
				 log_printable(shown, sizeof(shown), p, n));
		}
		return 1;
	}
	return 0;
}

/* One pub/sub message: ["message", channel, payload]. */
static void on_message(struct control *c, const redisReply *r)
{
	const char *p;
	size_t n;

	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(r->element[0]->str, "message") ||
	    r->element[2]->type != REDIS_REPLY_STRING)
		return;
	p = r->element[2]->str;
	n = r->element[2]->len;
	if (on_key_event(c, p, n)) {
		/* read again in the next batch */
	} else if (n == 4 && !memcmp(p, "full", 4)) {
		c->resync_asked = 1;
	} else if (n > 6 && !memcmp(p, "drain ", 6) &&
		   atomic_load(&c->drain_fn) != NULL) {
		control_drain_fn fn = atomic_load(&c->drain_fn);
		/* This thread publishes the domain table, so it may read it. */
		fn(atomic_load(&c->drain_arg), p + 6, n - 6);
	} else if (atomic_load(&c->event_fn) != NULL) {
		control_event_fn fn = atomic_load(&c->event_fn);

		fn(atomic_load(&c->event_arg), p, n);
	} else {
		/* "user <u>": for later subscribers. */
		char shown[LOG_TEXT_MAX];

		log_debug("redis: event \"%s\"", log_printable(shown, sizeof(shown), p, n));
	}
}

/* The sentinel watch broke: dropped, and opened again with the next
 * connect (a sentinel going away must not take the master down). */
static void watch_drop(struct control *c)
{
	log_warn("redis: sentinel watch: %s; reopened with the next connect",
		 c->watch->errstr[0] ? c->watch->errstr : "connection closed");
	redisFree(c->watch);
	c->watch = NULL;
}

/* Messages already read from the sentinel watch: -1 (why set) on a
 * +switch-master naming our master. */
static int watch_messages(struct control *c, char *why, size_t wl)
{
	for (;;) {
		char host[REDIS_CONN_HOST_MAX];
		unsigned port;
		void *r = NULL;
		int sw;

		if (redisGetReplyFromReader(c->watch, &r) != REDIS_OK) {
			watch_drop(c);
			return 0;
		}
		if (!r)
			return 0;
		sw = redis_conn_switch_master(r, c->cur.redis.master_name, host, sizeof(host), &port);
		/* Heard after the reconnect that found the new master already:
		 * nothing to do. */
		if (sw && c->cmd && c->cmd->tcp.host && !strcmp(c->cmd->tcp.host, host) &&
		    (unsigned)c->cmd->tcp.port == port)
			sw = 0;
		if (sw)
			snprintf(why, wl, "sentinel: +switch-master to %s:%u", host, port);
		freeReplyObject(r);
		if (sw)
			return -1;
	}
}

/* Wait for sub data, the resync deadline or stop. 1 = stop, 0 = go on, -1 =
 * Redis connection broken (why set). */
static int wait_events(struct control *c, char *why, size_t wl)
{
	struct pollfd pf[4] = { { c->stopfd, POLLIN, 0 }, { c->sub->fd, POLLIN, 0 },
				{ c->wakefd, POLLIN, 0 }, { c->watch ? c->watch->fd : -1, POLLIN, 0 } };
	uint64_t now = now_mono_ms();
	int timeout = c->next_resync_ms > now ? (int)(c->next_resync_ms - now) : 0;
	int rc;

	/* Replies already read into hiredis's buffer first. */
	for (;;) {
		void *r = NULL;

		if (redisGetReplyFromReader(c->sub, &r) != REDIS_OK) {
			redis_conn_err(c->sub, NULL, "subscriber", why, wl);
			return -1;
		}
		if (!r)
			break;
		on_message(c, r);
		freeReplyObject(r);
		if (pending_count(c) >= CONTROL_BATCH_MAX)
			return 0;
	}
	if (pending_count(c) || c->resync_asked)
		timeout = 0; /* apply what we have once the socket is drained */
	rc = poll(pf, 4, timeout);
	if (rc < 0)
		return errno == EINTR ? 0 : (snprintf(why, wl, "poll: %s", strerror(errno)), -1);
	if (pf[0].revents)
		return 1;
	if (pf[2].revents)
		return 2; /* new settings: the loop's top takes them */
	if (pf[3].revents && redisBufferRead(c->watch) != REDIS_OK) {
		watch_drop(c);
	} else if (pf[3].revents && watch_messages(c, why, wl)) {
		return -1;
	}
	if (pf[1].revents) {
		if (redisBufferRead(c->sub) != REDIS_OK) {
			redis_conn_err(c->sub, NULL, "subscriber", why, wl);
			return -1;
		}
		return 2; /* more may be buffered: read again before applying */
	}
	return pf[3].revents ? 2 : 0;
}

/* A "rcpts <d>" event: d's set is read again when its row wants one (a
 * row turning rcpt_check on is read by rcptload_sync()). */
static int apply_rcpts(struct control *c, const char *name, char *why, size_t wl)
{
	char norm[DOMTAB_NAME_MAX + 1], w[SCHEMA_WHY_MAX];
	const struct domtab_row *row;

	if (schema_domain_norm(name, 1, norm, w, sizeof(w)))
		return 0;
	row = domtab_builder_get(c->master, norm);
	if (!row || !row->rcpt_check)
		return 0;
	return rcptload_fetch(c->rl, c->cmd, c->cur.prefix, norm, why, wl);
}

static int apply_pending(struct control *c, char *why, size_t wl)
{
	int rc = 0;

	for (int k = 0; k < CONTROL_NKINDS && rc == 0; k++)
		rc = fetch_keys(c, (enum control_kind)k, c->master, c->pending[k].v,
				c->pending[k].n, 1, why, wl);
	for (size_t i = 0; i < c->rcpt_pending.n && rc == 0; i++)
		rc = apply_rcpts(c, c->rcpt_pending.v[i], why, wl);
	if (rc == 0)
		rc = rcptload_sync(c->rl, c->cmd, c->cur.prefix, c->master, 0, why, wl);
	if (rc == 0)
		log_debug("redis: %zu domain and %zu route change(s) applied, %zu domain(s), %zu route(s)",
			  c->pending[CONTROL_KIND_DOMAIN].n, c->pending[CONTROL_KIND_ROUTE].n,
			  domtab_builder_count(c->master), domtab_builder_route_count(c->master));
	pending_clear(c);
	if (rc)
		return -1;
	(void)publish(c);
	return 0;
}

static int resync(struct control *c, char *why, size_t wl)
{
	uint64_t t0 = now_mono_ms();
	struct domtab_builder *b = full_load(c, why, wl);

	if (!b)
		return -1;
	domtab_builder_free(c->master);
	c->master = b;
	if (rcptload_sync(c->rl, c->cmd, c->cur.prefix, c->master, 1, why, wl)) {
		(void)publish(c); /* the rows read, with the sets held */
		return -1;
	}
	(void)publish(c);
	c->resync_asked = 0;
	atomic_store(&c->last_load_us, now_wall_us());
	c->next_resync_ms = now_mono_ms() + c->cur.resync_ms;
	log_debug("redis: resync, %zu domain(s), %zu route(s) in %llu ms", domtab_builder_count(b),
		  domtab_builder_route_count(b), (unsigned long long)(now_mono_ms() - t0));
	return 0;
}

/* Sleep ms unless stopped or handed new settings. 1 = stop. */
static int nap(struct control *c, unsigned ms)
{
	struct pollfd pf[2] = { { c->stopfd, POLLIN, 0 }, { c->wakefd, POLLIN, 0 } };

	return poll(pf, 2, (int)ms) > 0 && pf[0].revents;
}

static void control_set_prefix(struct control *c)
{
	snprintf(c->chan, sizeof(c->chan), "%sevents", c->cur.prefix);
	for (int k = 0; k < CONTROL_NKINDS; k++)
		snprintf(c->kprefix[k], sizeof(c->kprefix[k]), "%s%s", c->cur.prefix,
			 control_kinds[k].key);
}

/* Take settings control_reconfigure() handed over, if any: drop the
 * connections, so that the loop connects and loads anew with them. The
 * last table stays in service meanwhile (not marked stale: nothing failed). */
static void control_take_settings(struct control *c)
{
	uint64_t n;
	int asked;

	/* The wake-up is written under next_mu with next_asked set, so it is
	 * read (drained) exactly when next_asked is seen: no spurious wake. */
	pthread_mutex_lock(&c->next_mu);
	asked = c->next_asked;
	if (asked) {
		if (read(c->wakefd, &n, sizeof(n)) < 0)
			log_warn("control: reading the wake-up: %s", strerror(errno));
		c->cur = c->next;
		c->next_asked = 0;
	}
	pthread_mutex_unlock(&c->next_mu);
	if (!asked)
		return;
	control_set_prefix(c);
	control_disconnect(c);
	pending_clear(c); /* names of the old Redis; the full load covers all */
	c->backoff_ms = CONTROL_BACKOFF_MIN_MS;
	log_info("redis: new settings (reload): %s, prefix \"%s\", resync every %u ms; reconnecting",
		 c->cur.redis.display, c->cur.prefix, c->cur.resync_ms);
}

int control_reconfigure(struct control *c, const struct config_redis *redis,
			const char *prefix, unsigned resync_ms)
{
	uint64_t one = 1;
	int rc = 0;

	if (!c || !c->have_thread)
		return -ENOTSUP;
	if (strlen(prefix) >= sizeof(c->next.prefix) || redis->kind == CONFIG_REDIS_NONE)
		return -EINVAL;
	pthread_mutex_lock(&c->next_mu);
	c->next.redis = *redis;
	snprintf(c->next.prefix, sizeof(c->next.prefix), "%s", prefix);
	c->next.resync_ms = resync_ms;
	c->next_asked = 1;
	if (write(c->wakefd, &one, sizeof(one)) != sizeof(one))
		rc = -errno; /* the next loop turn takes them all the same */
	pthread_mutex_unlock(&c->next_mu);
	return rc;
}

static void *control_main(void *arg)
{
	struct control *c = arg;
	char why[512];

	for (;;) {
		int rc;

		control_take_settings(c);
		if (!c->cmd) {
			if (control_connect(c, why, sizeof(why))) {
				if (c->up)
					went_down(c, why);
				else
					log_debug("redis: reconnect failed: %s", why);
				if (nap(c, c->backoff_ms))
					break;
				c->backoff_ms = c->backoff_ms * 2 > CONTROL_BACKOFF_MAX_MS ?
					CONTROL_BACKOFF_MAX_MS : c->backoff_ms * 2;
				continue;
			}
		}
		rc = wait_events(c, why, sizeof(why));
		if (rc == 1)
			break;
		if (rc == 2)
			continue;
		if (rc == 0 && pending_count(c))
			rc = apply_pending(c, why, sizeof(why));
		if (rc == 0 && (c->resync_asked || now_mono_ms() >= c->next_resync_ms))
			rc = resync(c, why, sizeof(why));
		if (rc < 0) {
			pending_clear(c);
			went_down(c, why);
			c->backoff_ms = CONTROL_BACKOFF_MIN_MS;
			if (nap(c, c->backoff_ms))
				break;
		}
	}
	pending_clear(c);
	return NULL;
}

struct control *control_start(const struct config *cfg, struct domtab_live *lv,
			      char *err, size_t errlen)
{
	struct control *c = calloc(1, sizeof(*c));
	char why[512] = "";
	int rc;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->cfg = cfg;
	c->lv = lv;
	c->stopfd = -1;
	c->wakefd = -1;
	pthread_mutex_init(&c->next_mu, NULL);
	c->cur.redis = cfg->redis;
	snprintf(c->cur.prefix, sizeof(c->cur.prefix), "%s", cfg->redis_prefix);
	c->cur.resync_ms = cfg->redis_resync_ms;
	c->up = 1; /* so the first failure is logged as a state change */
	c->backoff_ms = CONTROL_BACKOFF_MIN_MS;
	control_set_prefix(c);
	c->master = domtab_builder_new();
	c->rl = rcptload_new(cfg->rcpt_max_per_domain, cfg->rcpt_max_total);
	if (!c->master || !c->rl || add_static(c, c->master)) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (cfg->redis.kind == CONFIG_REDIS_NONE) {
		if (publish(c))
			goto oom;
		return c;
	}
	c->stopfd = eventfd(0, EFD_CLOEXEC);
	c->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->stopfd < 0 || c->wakefd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	for (int i = 0; i < CONTROL_START_TRIES; i++) {
		if (control_connect(c, why, sizeof(why)) == 0)
			break;
		if (i + 1 < CONTROL_START_TRIES)
			(void)nap(c, 500);
	}
	if (!c->cmd) {
		if (cfg->nrelay_domains == 0) {
			snprintf(err, errlen, "%s; and relay_domains lists no static domain to start with",
				 why);
			goto fail;
		}
		if (publish(c))
			goto oom;
		domtab_live_set_stale(lv, 1);
		log_warn("%s; starting with the %zu relay_domains only, unknown domains get 451 until Redis answers",
			 why, cfg->nrelay_domains);
		c->up = 0;
	}
	/* pthread_create returns the error; it does not set errno. */
	rc = pthread_create(&c->thread, NULL, control_main, c);
	if (rc) {
		snprintf(err, errlen, "control thread: pthread_create: %s", strerror(rc));
		goto fail;
	}
	c->have_thread = 1;
	return c;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	control_disconnect(c);
	if (c->stopfd >= 0)
		close(c->stopfd);
	if (c->wakefd >= 0)
		close(c->wakefd);
	pthread_mutex_destroy(&c->next_mu);
	domtab_builder_free(c->master);
	rcptload_free(c->rl);
	pending_free(c);
	free(c);
	return NULL;
}

struct control *control_stop(struct control *c)
{
	uint64_t one = 1;

	if (!c)
		return NULL;
	if (c->have_thread) {
		if (write(c->stopfd, &one, sizeof(one)) != sizeof(one))
			log_warn("control: cannot wake the control thread: %s", strerror(errno));
		pthread_join(c->thread, NULL);
	}
	control_disconnect(c);
	if (c->stopfd >= 0)
		close(c->stopfd);
	if (c->wakefd >= 0)
		close(c->wakefd);
	pthread_mutex_destroy(&c->next_mu);
	domtab_builder_free(c->master);
	rcptload_free(c->rl);
	pending_free(c);
	free(c);
	return NULL;
}

void control_set_event(struct control *c, control_event_fn fn, void *arg)
{
	if (!c)
		return;
	atomic_store(&c->event_arg, arg);
	atomic_store(&c->event_fn, fn);
}

void control_set_drain(struct control *c, control_drain_fn fn, void *arg)
{
	if (!c)
		return;
	atomic_store(&c->drain_arg, arg);
	atomic_store(&c->drain_fn, fn);
}

int control_redis_state(struct control *c, uint64_t *last_resync_us)
{
	if (last_resync_us)
		*last_resync_us = c ? atomic_load(&c->last_load_us) : 0;
	return c ? atomic_load(&c->redis_up) : 0;
}
