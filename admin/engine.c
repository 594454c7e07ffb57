/* SPDX-License-Identifier: MIT */
/*
 * engine: set up, run and tear down the engine threads (see engine.h). Each
 * thread builds its own parts, in its own thread (the io_uring is
 * SINGLE_ISSUER), and reports READY or FAILED once; engine_start() waits for
 * every report before the daemon says it has started.
 *
 * The per-turn work of a loop is registered by the module that owns it;
 * engine_setup() only creates the modules, in this order, and the loop runs
 * their turn hooks by phase (core/loop.h), so a turn ends with:
 *   1. LOOP_TURN_QUEUE  "spool compaction" (store/spool_compact.c) queues
 *                       copies of live records of a mostly dead segment;
 *                       "expiry" (proto/expire.c) queues DONEs and DSNs;
 *                       "sched" (proto/sched.c) starts outbound jobs and
 *                       queues SCHED records and bounces;
 *                       "activators" (proto/activator.c, thread 0 only)
 *                       starts the activators' runs that are due.
 *                       They only queue, into separate lists, so their
 *                       order among themselves does not matter; they must
 *                       precede 2 so that what they queue shares its commit.
 *   2. LOOP_TURN_COMMIT "spool commit" (store/spool.c): one write and one
 *                       fdatasync for everything queued, sessions' finished
 *                       messages included.
 *   3. the loop submits the SQEs the turn prepared (the commit's write and
 *      sync with them) and sleeps until a completion.
 * Stop hooks ("spool compaction", "expiry", "sched", "activators") stop
 * background work that would never run out; busy checks ("spool",
 * "expiry", "drain", "sched", "smtpd auth", "activators", "dnsbl" when
 * dnsbl is set) keep loop_run() going until what is in flight has
 * finished. Thread 0 has the most: 5 turn hooks, 4 stop hooks, 7 busy
 * checks, within LOOP_HOOKS_MAX.
 */
#include "admin/engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/authpool.h"
#include "proto/spf.h"
#include "proto/spf_smtp.h"
#include "core/epoch.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/loop.h"
#include "core/tls.h"
#include "proto/activator.h"
#include "proto/dnsbl.h"
#include "proto/drain.h"
#include "proto/milter.h"
#include "proto/sched.h"
#include "proto/smtp_check.h"
#include "proto/smtpd.h"
#include "store/spool.h"

enum engine_state { ENGINE_STARTING, ENGINE_READY, ENGINE_FAILED };

struct engine {
	pthread_t thread;
	unsigned index;
	const struct engine_env *env;
	struct engine_set *set;
	struct loop *loop;              /* freed by engine_free(), after every join */
	struct drain *drain;            /* likewise */
	enum engine_state state;        /* under set->lock */
	int exit_rc;
	char err[CONFIG_ERR_MAX];
};

struct engine_set {
	struct engine *eng;
	unsigned n;
	unsigned started;               /* threads created (and to be joined) */
	struct authpool *auth;          /* AUTH's verifiers; NULL without Redis */
	struct spf *spf;                /* SPF's workers; NULL with spf = off */
	pthread_mutex_t lock;           /* guards every engine's state */
	pthread_cond_t cond;            /* signalled on each state report */
	_Atomic unsigned close_keep;    /* engine_close_listeners()'s keep flags */
};

/* One engine thread's parts while it builds and runs them. */
struct engine_parts {
	struct smtpd *d;
	struct loop *l;
	struct spool_shard *sh;
	struct drain *dr;
	struct sched *sc;
	struct dnsbl *bl;
	struct spf_smtp *spf;           /* this thread's SPF checker, or NULL */
	struct milters *mi;
};

static void engine_report(struct engine *e, enum engine_state st)
{
	pthread_mutex_lock(&e->set->lock);
	e->state = st;
	pthread_cond_broadcast(&e->set->cond);
	pthread_mutex_unlock(&e->set->lock);
}

/* Say why this engine failed (logged by engine_start()); returns -1. */
__attribute__((format(printf, 2, 3)))
static int engine_fail(struct engine *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(e->err, sizeof(e->err), fmt, ap);
	va_end(ap);
	return -1;
}

/* The reply to a client over client_connection_limit (RFC 5321 3.8: 421,
 * with the server's name; RFC 3463 4.7.0: a transient policy refusal). */
#define ENGINE_ADDR_BUSY_FMT "421 4.7.0 %s Too many connections from your address\r\n"

/* addr_busy: room for the reply, until loop_new() has copied it. */
static void engine_loop_conf(const struct engine *e, struct smtpd *d,
			     struct loop_conf *lc, char *addr_busy, size_t len)
{
	memset(lc, 0, sizeof(*lc));
	lc->index = e->index;
	lc->cfg = e->env->cfg;
	lc->ops = &smtpd_conn_ops;
	lc->ops_arg = d;
	lc->busy_reply = smtpd_busy_reply(d);
	lc->connlimit = e->env->cl;
	lc->tls_server = e->env->tls_server;
	if ((size_t)snprintf(addr_busy, len, ENGINE_ADDR_BUSY_FMT, e->env->cfg->hostname) < len)
		lc->addr_busy_reply = addr_busy;
}

static void engine_spool_conf(const struct engine *e, struct spool_shard_conf *sc)
{
	const struct config *cfg = e->env->cfg;

	memset(sc, 0, sizeof(*sc));
	sc->dir = cfg->spool_dir;
	sc->shard = e->index;
	sc->sync = cfg->sync;
	sc->segment_size = cfg->segment_size;
	sc->direct = cfg->spool_direct_io;
	sc->domstat = e->env->ds;
	sc->compact_threshold = cfg->compact_threshold;
	sc->compact_min_age_us = (uint64_t)cfg->compact_min_age_ms * 1000;
	sc->clock_offset_us = (int64_t)cfg->clock_offset_ms * 1000;
}

/* sched_set_relayed_hook()'s: mail went out through the relayhost. */
static void engine_relayed(void *arg)
{
	activators_outbound_done(arg);
}

/* SPF at MAIL FROM (spf != off): this thread's checker, in the chain after
 * DNSBL (connect) and before the milters. 0, or -1 with e->err set. */
static int engine_spf_attach(struct engine *e, struct engine_parts *p)
{
	struct smtp_checker ck;

	if (!e->set->spf)
		return 0;
	p->spf = spf_smtp_new(e->set->spf, e->env->cfg, p->l);
	if (!p->spf)
		return engine_fail(e, "spf: out of memory");
	spf_smtp_checker(p->spf, &ck);
	if (smtpd_add_checker(p->d, &ck))
		return engine_fail(e, "spf: cannot add the checker");
	return 0;
}

/* Build the thread's parts; each module registers its own per-turn work
 * as it is created (turn order: see the top of this file). Returns 0, or
 * -1 with e->err set (the caller tears down what p holds). */
static int engine_setup(struct engine *e, struct engine_parts *p)
{
	struct loop_conf lc;
	char addr_busy[CONFIG_HOSTNAME_MAX + 64];
	struct spool_shard_conf sc;
	int rc;

	p->d = smtpd_new(e->env->cfg, e->env->dt);
	if (!p->d)
		return engine_fail(e, "out of memory");
	smtpd_set_budget(p->d, e->env->data_budget);
	smtpd_set_auth(p->d, e->set->auth ? authpool_backend(e->set->auth) : NULL);
	smtpd_set_tls(p->d, e->env->tls_server);
	smtpd_set_cluster_auth(p->d, e->env->cluster_auth);
	engine_loop_conf(e, p->d, &lc, addr_busy, sizeof(addr_busy));
	/* The ring is created here, in the thread that will submit to it
	 * (IORING_SETUP_SINGLE_ISSUER). */
	p->l = loop_new(&lc, e->err, sizeof(e->err));
	if (!p->l)
		return -1;
	/* DNSBL at connect: the first checker of the chain (a listed client
	 * costs no other check); registers its busy check ("dnsbl") when on. */
	p->bl = dnsbl_new(e->env->cfg, e->env->resolver, p->l);
	if (!p->bl)
		return engine_fail(e, "dnsbl: %s", strerror(errno));
	if (dnsbl_enabled(p->bl)) {
		struct smtp_checker ck;

		dnsbl_checker(p->bl, &ck);
		rc = smtpd_add_checker(p->d, &ck);
		if (rc)
			return engine_fail(e, "dnsbl: %s", strerror(-rc));
	}
	if (engine_spf_attach(e, p))
		return -1;
	engine_spool_conf(e, &sc);
	/* Registers compaction (queue), the group commit (commit), "spool". */
	p->sh = spool_shard_open(p->l, &sc, e->err, sizeof(e->err));
	if (!p->sh)
		return -1;
	/* Registers expiry (queue phase, stop hook, busy check). */
	rc = smtpd_set_spool(p->d, p->sh);
	if (rc)
		return engine_fail(e, "expiry: %s", strerror(-rc));
	/* Registers its busy check ("drain"). */
	p->dr = drain_new(e->env->hub, e->index, p->l, p->sh);
	if (!p->dr)
		return engine_fail(e, "drain: %s", strerror(errno));
	smtpd_set_drain(p->d, p->dr);
	/* After the drainer, whose connections its jobs use: registers its
	 * turn hook (queue phase), stop hook and busy check ("sched"), the
	 * index's add hook and the drainer's retry hook. */
	p->sc = sched_new(e->env->cfg, e->env->dt, e->env->resolver, p->dr, p->l, p->sh);
	if (!p->sc)
		return engine_fail(e, "sched: %s", strerror(errno));
	/* Milters (issue 19): policy checkers of this thread's sessions. */
	if (e->env->cfg->nmilters) {
		p->mi = milters_new(e->env->cfg, p->l);
		if (!p->mi || (rc = milters_attach(p->mi, p->d)) != 0)
			return engine_fail(e, "milter: %s", p->mi ? strerror(-rc) : "out of memory");
	}
	/* Relayhost deliveries of every thread kick the after-outbound
	 * activators, which run on thread 0 (proto/activator.h). */
	if (e->env->act)
		sched_set_relayed_hook(p->sc, engine_relayed, e->env->act);
	/* Registers its turn hook (queue phase), stop hook and busy check
	 * ("activators"). */
	if (e->index == 0 && e->env->act) {
		rc = activators_attach(e->env->act, p->l, p->d, e->env->resolver,
				       e->env->tls_client);
		if (rc)
			return engine_fail(e, "activators: %s", strerror(-rc));
	}
	return 0;
}

/* err from tls_ctx_new() ("tls_key_file PATH: reason") prefixed with where
 * the key it names was set. */
static void engine_tls_err(const struct config *cfg, const char *why, char *err,
			   size_t errlen)
{
	const char *at = !strncmp(why, "tls_key_file", 12) ? cfg->tls_key_file_at :
			 !strncmp(why, "tls_ca_file", 11) ? cfg->tls_ca_file_at :
			 !strncmp(why, "tls_ciphers", 11) ? cfg->tls_ciphers_at :
			 cfg->tls_cert_file_at;

	snprintf(err, errlen, "%s%s%s", at, at[0] ? ": " : "", why);
}

int engine_tls_new(const struct config *cfg, struct engine_env *env, char *err,
		   size_t errlen)
{
	struct tls_ctx_conf tc = { .ciphers = cfg->tls_ciphers };
	char why[CONFIG_ERR_MAX + PATH_MAX];

	env->tls_server = env->tls_client = NULL;
	if (cfg->tls_cert_file[0]) {
		tc.cert_file = cfg->tls_cert_file;
		tc.key_file = cfg->tls_key_file;
		env->tls_server = tls_ctx_new(TLS_SERVER, &tc, why, sizeof(why));
		if (!env->tls_server)
			goto fail;
	}
	tc.cert_file = tc.key_file = NULL;
	tc.ca_file = cfg->tls_ca_file;
	env->tls_client = tls_ctx_new(TLS_CLIENT, &tc, why, sizeof(why));
	if (!env->tls_client)
		goto fail;
	return 0;
fail:
	engine_tls_err(cfg, why, err, errlen);
	engine_tls_free(env);
	return -1;
}

void engine_tls_free(struct engine_env *env)
{
	env->tls_server = tls_ctx_free(env->tls_server);
	env->tls_client = tls_ctx_free(env->tls_client);
}

/* After a failed setup: the loop never ran, so no hook of it runs again. */
static void engine_teardown(struct engine_parts *p)
{
	sched_free(p->sc);
	milters_free(p->mi);
	drain_free(p->dr);
	spool_shard_close(p->sh);
	loop_free(p->l);
	smtpd_free(p->d);
	dnsbl_free(p->bl);
	spf_smtp_free(p->spf);
}

static void *engine_thread(void *arg)
{
	struct engine *e = arg;
	struct engine_parts p = { 0 };

	/* A reader of the domain table from here on; offline until loop_run()
	 * passes its first quiescent point, so a slow spool recovery does not
	 * hold up the control thread's table swaps. */
	if (epoch_register(e->env->ep)) {
		(void)engine_fail(e, "no epoch slot");
		engine_report(e, ENGINE_FAILED);
		return NULL;
	}
	epoch_offline();
	/* This thread's counters and its shard's gauges: slot e->index. */
	metrics_thread_attach(e->index);
	if (engine_setup(e, &p)) {
		engine_teardown(&p);
		epoch_unregister();
		engine_report(e, ENGINE_FAILED);
		return NULL;
	}
	e->loop = p.l;
	engine_report(e, ENGINE_READY);
	e->exit_rc = loop_run(p.l);
	/* The loop and the drainer stay until every engine thread has ended
	 * (engine_free()): other threads may still post to this loop. */
	smtpd_set_drain(p.d, NULL);
	/* The scheduler goes with the shard it reads: nothing calls it once
	 * the loop has finished (a look-up answered later is refused its
	 * post, drain_hub_post(), and frees its own job). */
	p.sc = sched_free(p.sc);
	p.mi = milters_free(p.mi);
	e->drain = p.dr;
	epoch_unregister();
	spool_shard_close(p.sh);
	smtpd_free(p.d);
	/* After the sessions (their checker slots): no answer is out now. */
	dnsbl_free(p.bl);
	/* After the sessions' end (smtpd_free): the loop ran its last post,
	 * so no SPF answer can reach this thread's checker any more. */
	spf_smtp_free(p.spf);
	return NULL;
}

/* Wait for every started thread's report; log each failure. Returns 0 when
 * every engine is ready, -1 otherwise. */
static int engine_wait_ready(struct engine_set *s)
{
	int failed = s->started < s->n;

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < s->started; i++)
		while (s->eng[i].state == ENGINE_STARTING)
			pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; i < s->n; i++) {
		if (s->eng[i].state == ENGINE_FAILED) {
			log_err("engine %u: %s", i, s->eng[i].err);
			failed = 1;
		}
	}
	return failed ? -1 : 0;
}

/* The AUTH verifier pool, before any engine thread can ask it; without
 * Redis there are no users, so no pool and AUTH is not offered. */
static int engine_auth_start(struct engine_set *s, const struct config *cfg)
{
	char err[CONFIG_ERR_MAX];

	if (cfg->redis.kind == CONFIG_REDIS_NONE)
		return 0;
	s->auth = authpool_start(cfg, err, sizeof(err));
	if (!s->auth) {
		log_err("%s", err);
		return -1;
	}
	return 0;
}

/* The SPF workers (spf != off), before any engine thread can ask them. */
static int engine_spf_start(struct engine_set *s, const struct engine_env *env)
{
	const struct config *cfg = env->cfg;
	char err[CONFIG_ERR_MAX];

	if (cfg->spf == CONFIG_SPF_OFF)
		return 0;
	s->spf = spf_start(env->resolver, cfg->spf_workers, cfg->spf_timeout_ms, err,
			   sizeof(err));
	if (!s->spf) {
		log_err("%s", err);
		return -1;
	}
	return 0;
}

struct engine_set *engine_start(const struct engine_env *env)
{
	struct engine_set *s = calloc(1, sizeof(*s));
	int rc;

	if (s)
		s->eng = calloc(env->cfg->threads, sizeof(*s->eng));
	if (!s || !s->eng) {
		free(s);
		log_err("engine threads: out of memory");
		return NULL;
	}
	s->n = env->cfg->threads;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	if (engine_auth_start(s, env->cfg) || engine_spf_start(s, env))
		return engine_free(s);
	for (unsigned i = 0; i < s->n; i++) {
		struct engine *e = &s->eng[i];

		e->index = i;
		e->env = env;
		e->set = s;
		/* pthread_create returns the error; it does not set errno. */
		rc = pthread_create(&e->thread, NULL, engine_thread, e);
		if (rc) {
			(void)engine_fail(e, "pthread_create: %s", strerror(rc));
			e->state = ENGINE_FAILED;
			break;
		}
		s->started++;
	}
	if (engine_wait_ready(s) == 0)
		return s;
	(void)engine_stop(s);
	/* A look-up answered later must not post to the loops freed here. */
	drain_hub_quiesce(env->hub);
	return engine_free(s);
}

unsigned engine_count(const struct engine_set *s)
{
	return s->n;
}

struct loop *engine_loop(const struct engine_set *s, unsigned i)
{
	return s->eng[i].loop;
}

/* On engine e's thread: its listeners but the kept ones close. */
static void engine_close_run(void *arg)
{
	struct engine *e = arg;

	loop_close_listeners(e->loop, atomic_load(&e->set->close_keep));
}

int engine_close_listeners(struct engine_set *s, unsigned keep_flags)
{
	int rc = 0;

	atomic_store(&s->close_keep, keep_flags);
	for (unsigned i = 0; i < s->n; i++) {
		int r = s->eng[i].loop ? loop_post(s->eng[i].loop, engine_close_run, &s->eng[i])
				       : -ESRCH;

		if (r && !rc)
			rc = r;
	}
	return rc;
}

int engine_stop(struct engine_set *s)
{
	int failed = 0;

	for (unsigned i = 0; i < s->started; i++)
		if (s->eng[i].loop) /* ready: a failed engine has none */
			loop_stop(s->eng[i].loop);
	for (unsigned i = 0; i < s->started; i++) {
		pthread_join(s->eng[i].thread, NULL);
		if (s->eng[i].exit_rc)
			failed = 1;
	}
	s->started = 0;
	/* Every loop has finished (each waited for its sessions' AUTH answers,
	 * or for shutdown_timeout): a verifier still in crypt_r posts to a
	 * finished loop, which drops it; the loops are freed only after. */
	authpool_stop(s->auth);
	/* The same for SPF's workers; they go before the resolver they ask
	 * (etrnd_stop frees it after engine_stop). */
	s->spf = spf_free(s->spf);
	return failed ? -1 : 0;
}

struct engine_set *engine_free(struct engine_set *s)
{
	if (!s)
		return NULL;
	/* Joined first: a verifier may still post to a loop until then. */
	s->auth = authpool_free(s->auth);
	s->spf = spf_free(s->spf);
	for (unsigned i = 0; i < s->n; i++) {
		drain_free(s->eng[i].drain);
		loop_free(s->eng[i].loop);
	}
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s->eng);
	free(s);
	return NULL;
}
