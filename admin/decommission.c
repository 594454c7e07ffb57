/* SPDX-License-Identifier: MIT */
/*
 * decommission: see decommission.h. One thread: it waits for the trigger
 * (the event, or the key found at start), then closes the listeners, says
 * draining, and runs hand-off rounds until the spool is empty; then it
 * deletes the key and raises SIGTERM, the daemon's normal way out.
 */
#include "admin/decommission.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "admin/cluster_auth.h"
#include "admin/engine.h"
#include "admin/redis_conn.h"
#include "admin/schema.h"
#include "core/log.h"
#include "core/now.h"
#include "proto/drain_handoff.h"
#include "proto/smtp_client.h"

/* Every secret cluster_auth takes can be sent by the hand-off's AUTH PLAIN. */
_Static_assert(CLUSTER_AUTH_SECRET_MAX <= SMTP_CLIENT_AUTH_PART_MAX, "secret fits AUTH PLAIN");

#define DECOMMISSION_EVENT "node-drain "
#define DECOMMISSION_EVENT_LEN (sizeof(DECOMMISSION_EVENT) - 1)
#define DECOMMISSION_KEY_MAX (CONFIG_REDIS_PREFIX_MAX + CONFIG_NODE_ID_MAX + 32)

/* The thread's states, with one logged transition (decommission_enter). */
enum decommission_state {
	DECOMMISSION_IDLE = 0,   /* waiting for the trigger */
	DECOMMISSION_HANDOFF,    /* listeners closed: rounds until empty */
	DECOMMISSION_FINISH,     /* empty: the key deleted, SIGTERM raised */
	DECOMMISSION_STOPPED,    /* decommission_stop() */
};

static const char *const decommission_state_names[] = {
	"IDLE", "HANDOFF", "FINISH", "STOPPED",
};

struct decommission {
	struct decommission_env env;
	pthread_t thread;
	int started;
	pthread_mutex_t mu;            /* guards trigger, stop; cv waits on them */
	pthread_cond_t cv;
	int trigger;                   /* the event or the key said go */
	int stop;
	_Atomic int running;           /* listeners closed */
	enum decommission_state state; /* the thread's own */
	char key[DECOMMISSION_KEY_MAX];
	char secret[CLUSTER_AUTH_SECRET_MAX + 1];
};

static void decommission_enter(struct decommission *dc, enum decommission_state s,
			       const char *why)
{
	log_info("decommission %s: %s -> %s (%s)", dc->env.cfg->node_id,
		 decommission_state_names[dc->state], decommission_state_names[s], why);
	dc->state = s;
}

/* The next back-off after wait: doubled, at most the maximum. */
static unsigned decommission_backoff(unsigned wait)
{
	return wait * 2 < DECOMMISSION_BACKOFF_MAX_MS ? wait * 2 : DECOMMISSION_BACKOFF_MAX_MS;
}

/* Sleep up to ms, or until stopped (1) or triggered; under no lock. */
static int decommission_sleep(struct decommission *dc, unsigned ms, int until_trigger)
{
	struct timespec dl = now_realtime_after(ms);
	int stop;

	pthread_mutex_lock(&dc->mu);
	while (!dc->stop && !(until_trigger && dc->trigger))
		if (pthread_cond_timedwait(&dc->cv, &dc->mu, &dl))
			break;
	stop = dc->stop;
	pthread_mutex_unlock(&dc->mu);
	return stop;
}

/* One command on a fresh connection (the thread speaks to Redis a few
 * times in its life): the integer reply into *val. 0, or -1 logged. */
static int decommission_redis(struct decommission *dc, const char *cmd, long long *val)
{
	char err[CONFIG_ERR_MAX];
	redisContext *c = redis_conn_open(&dc->env.cfg->redis, DECOMMISSION_REDIS_TIMEOUT_MS,
					  err, sizeof(err));
	redisReply *r;
	int rc = -1;

	if (!c) {
		log_warn("decommission %s: %s", dc->env.cfg->node_id, err);
		return -1;
	}
	r = redisCommand(c, "%s %s", cmd, dc->key);
	if (r && r->type == REDIS_REPLY_INTEGER) {
		*val = r->integer;
		rc = 0;
	} else {
		(void)redis_conn_err(c, r, cmd, err, sizeof(err));
		log_warn("decommission %s: %s", dc->env.cfg->node_id, err);
	}
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return rc;
}

/* At start: is the key set? Asked until Redis answers, or a trigger or a
 * stop comes first. */
static void decommission_check_key(struct decommission *dc)
{
	unsigned wait = DECOMMISSION_BACKOFF_MIN_MS;
	long long n = 0;

	if (dc->env.cfg->redis.kind == CONFIG_REDIS_NONE)
		return;
	while (decommission_redis(dc, "EXISTS", &n)) {
		if (decommission_sleep(dc, wait, 1))
			return;
		pthread_mutex_lock(&dc->mu);
		n = dc->trigger;
		pthread_mutex_unlock(&dc->mu);
		if (n)
			return;
		wait = decommission_backoff(wait);
	}
	if (n > 0) {
		log_info("decommission %s: %s is set: resuming the hand-off", dc->env.cfg->node_id,
			 dc->key);
		pthread_mutex_lock(&dc->mu);
		dc->trigger = 1;
		pthread_mutex_unlock(&dc->mu);
	}
}

/* Stop taking mail, say draining, get the secret. 0, or -1 (no secret:
 * logged; the rounds cannot authenticate). */
static int decommission_begin(struct decommission *dc)
{
	const struct decommission_env *e = &dc->env;
	int rc;

	rc = engine_close_listeners(e->eng, CONFIG_LISTEN_CLUSTER);
	atomic_store(&dc->running, 1);
	log_info("decommission %s: started: no new connections but on cluster_listen%s",
		 e->cfg->node_id, rc ? " (an engine thread is stopping)" : "");
	if (e->set_draining)
		e->set_draining(e->set_draining_arg);
	rc = e->secret ? e->secret(e->secret_arg, dc->secret, sizeof(dc->secret)) : -ENOENT;
	if (rc <= 0 || rc > SMTP_CLIENT_AUTH_PART_MAX) {
		log_err("decommission %s: no usable cluster secret (cluster_secret_file): "
			"mail cannot be handed off", e->cfg->node_id);
		return -1;
	}
	return 0;
}

/* Rounds until a round finds every shard empty; 0 then, 1 when stopped. */
static int decommission_rounds(struct decommission *dc)
{
	const struct config *cfg = dc->env.cfg;
	struct drain_handoff_conf hc = {
		.view = dc->env.view, .node_id = cfg->node_id, .secret = dc->secret,
		.tls = cfg->cluster_tls == CONFIG_CLUSTER_TLS_MUST ? DOMTAB_TLS_MUST :
		       cfg->cluster_tls == CONFIG_CLUSTER_TLS_VERIFY ? DOMTAB_TLS_VERIFY :
		       DOMTAB_TLS_MAY,
	};
	unsigned wait = DECOMMISSION_BACKOFF_MIN_MS, round = 0;
	uint64_t start = now_mono_ms(), moved = 0;

	for (;;) {
		struct drain_handoff_result r;
		int rc = drain_handoff_round(dc->env.hub, &hc, DECOMMISSION_ROUND_WAIT_MS, &r);

		round++;
		moved += r.sent;
		log_info("decommission %s: round %u: %u peer(s), %" PRIu64 " job(s), %" PRIu64
			 " handed off, %" PRIu64 " deferred, %" PRIu64 " bounced, %" PRIu64
			 " left%s%s%s", cfg->node_id, round, r.peers, r.jobs, r.sent, r.deferred,
			 r.bounced, r.left, rc == -ETIMEDOUT ? " (round still running)" : "",
			 r.why[0] ? "; last failure: " : "", r.why);
		if (rc == 0 && r.answered == r.threads && r.left == 0) {
			log_info("decommission %s: spool empty: %" PRIu64 " message(s) handed off "
				 "in %u round(s), %.1f s", cfg->node_id, moved, round,
				 (double)(now_mono_ms() - start) / 1000.0);
			return 0;
		}
		if (r.sent > 0 || rc == -ETIMEDOUT) {
			wait = DECOMMISSION_BACKOFF_MIN_MS; /* progress: go on at once */
			if (decommission_sleep(dc, 0, 0))
				return 1;
			continue;
		}
		if (decommission_sleep(dc, wait, 0))
			return 1;
		wait = decommission_backoff(wait);
	}
}

/* Empty: the key goes (retried until Redis answers, or stopped), then the
 * normal shutdown. */
static void decommission_finish(struct decommission *dc)
{
	unsigned wait = DECOMMISSION_BACKOFF_MIN_MS;
	long long n;

	while (dc->env.cfg->redis.kind != CONFIG_REDIS_NONE && decommission_redis(dc, "DEL", &n)) {
		if (decommission_sleep(dc, wait, 0))
			return;
		wait = decommission_backoff(wait);
	}
	decommission_enter(dc, DECOMMISSION_FINISH, "spool empty, key deleted");
	log_info("decommission %s: done: shutting down", dc->env.cfg->node_id);
	(void)kill(getpid(), SIGTERM);
}

/* Until triggered (0) or stopped (1). */
static int decommission_wait_trigger(struct decommission *dc)
{
	int stop;

	pthread_mutex_lock(&dc->mu);
	while (!dc->stop && !dc->trigger)
		(void)pthread_cond_wait(&dc->cv, &dc->mu);
	stop = dc->stop;
	pthread_mutex_unlock(&dc->mu);
	return stop;
}

static void decommission_wait_stop(struct decommission *dc)
{
	pthread_mutex_lock(&dc->mu);
	while (!dc->stop)
		(void)pthread_cond_wait(&dc->cv, &dc->mu);
	pthread_mutex_unlock(&dc->mu);
}

static void *decommission_main(void *arg)
{
	struct decommission *dc = arg;

	decommission_check_key(dc);
	if (!decommission_wait_trigger(dc)) {
		decommission_enter(dc, DECOMMISSION_HANDOFF, "triggered");
		/* Without a secret the node takes no mail and hands none off:
		 * it waits for the operator (the log says why). */
		if (decommission_begin(dc) == 0 && decommission_rounds(dc) == 0)
			decommission_finish(dc);
	}
	decommission_wait_stop(dc);
	decommission_enter(dc, DECOMMISSION_STOPPED, "stopped");
	return NULL;
}

struct decommission *decommission_start(const struct decommission_env *env, char *err,
					size_t errlen)
{
	struct decommission *dc = calloc(1, sizeof(*dc));
	int rc;

	if (!dc) {
		snprintf(err, errlen, "decommission: out of memory");
		return NULL;
	}
	dc->env = *env;
	if (!schema_key(dc->key, sizeof(dc->key), env->cfg->redis_prefix, "decommission:",
			env->cfg->node_id)) {
		snprintf(err, errlen, "decommission: key too long");
		free(dc);
		return NULL;
	}
	pthread_mutex_init(&dc->mu, NULL);
	pthread_cond_init(&dc->cv, NULL);
	rc = pthread_create(&dc->thread, NULL, decommission_main, dc);
	if (rc) {
		snprintf(err, errlen, "decommission: thread: %s", strerror(rc));
		pthread_cond_destroy(&dc->cv);
		pthread_mutex_destroy(&dc->mu);
		free(dc);
		return NULL;
	}
	dc->started = 1;
	return dc;
}

void decommission_event(void *arg, const char *payload, size_t len)
{
	struct decommission *dc = arg;
	const char *id = dc->env.cfg->node_id;
	size_t idlen = strlen(id);

	if (len != DECOMMISSION_EVENT_LEN + idlen ||
	    memcmp(payload, DECOMMISSION_EVENT, DECOMMISSION_EVENT_LEN) ||
	    memcmp(payload + DECOMMISSION_EVENT_LEN, id, idlen))
		return;
	pthread_mutex_lock(&dc->mu);
	if (!dc->trigger)
		log_info("decommission %s: asked (event node-drain)", id);
	dc->trigger = 1;
	pthread_cond_broadcast(&dc->cv);
	pthread_mutex_unlock(&dc->mu);
}

int decommission_running(const struct decommission *dc)
{
	return dc && atomic_load(&dc->running);
}

void decommission_join(struct decommission *dc)
{
	if (!dc)
		return;
	pthread_mutex_lock(&dc->mu);
	dc->stop = 1;
	pthread_cond_broadcast(&dc->cv);
	pthread_mutex_unlock(&dc->mu);
	if (dc->started)
		(void)pthread_join(dc->thread, NULL);
	dc->started = 0;
}

struct decommission *decommission_stop(struct decommission *dc)
{
	if (!dc)
		return NULL;
	decommission_join(dc);
	explicit_bzero(dc->secret, sizeof(dc->secret));
	pthread_cond_destroy(&dc->cv);
	pthread_mutex_destroy(&dc->mu);
	free(dc);
	return NULL;
}
