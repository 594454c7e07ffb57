/* SPDX-License-Identifier: MIT */
/*
 * etrnd main: read the config, start one engine thread per core (each with its
 * own io_uring loop, listening sockets, SMTP service and spool shard), then
 * wait for signals. This is the composition root: the one file that knows
 * every layer, so that the layers need not know each other.
 * SIGTERM/SIGINT: stop accepting, let transactions in flight finish (at most
 * shutdown_timeout), exit 0.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/control.h"
#include "admin/domtab.h"
#include "core/epoch.h"
#include "core/config.h"
#include "core/ctlsock.h"
#include "core/log.h"
#include "core/loop.h"
#include "proto/drain.h"
#include "proto/smtpd.h"
#include "store/domstat.h"
#include "store/spool.h"

#define ETRND_DEFAULT_CONFIG "etc/etrnd.conf"
/* Domains with held mail counted node-wide (quota, ETRN replies): 32 bytes
 * per slot, two slots per domain, pages touched only as domains appear. */
#define ETRND_DOMSTAT_DOMAINS (1u << 20)

enum engine_state { ENGINE_STARTING, ENGINE_READY, ENGINE_FAILED };

struct engine {
	pthread_t thread;
	unsigned index;
	const struct config *cfg;
	const struct domtab_live *dt;   /* published by the control thread */
	struct domstat *ds;             /* held mail per domain, all shards */
	struct drain_hub *hub;          /* ETRN drains across engine threads */
	struct drain *drain;            /* freed by main, after every join */
	struct epoch *ep;               /* QSBR domain of the engine threads */
	struct loop *loop;
	enum engine_state state;
	int exit_rc;
	char err[CONFIG_ERR_MAX];
};

static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t start_cond = PTHREAD_COND_INITIALIZER;

static void engine_report(struct engine *e, enum engine_state st)
{
	pthread_mutex_lock(&start_lock);
	e->state = st;
	pthread_cond_broadcast(&start_cond);
	pthread_mutex_unlock(&start_lock);
}

static void *engine_main(void *arg)
{
	struct engine *e = arg;
	struct spool_shard_conf sc;
	struct spool_shard *sh = NULL;
	struct smtpd *d;
	struct loop_conf lc;
	struct loop *l = NULL;
	struct drain *dr = NULL;

	/* A reader of the domain table from here on; offline until loop_run()
	 * passes its first quiescent point, so a slow spool recovery does not
	 * hold up the control thread's table swaps. */
	if (epoch_register(e->ep)) {
		snprintf(e->err, sizeof(e->err), "engine %u: no epoch slot", e->index);
		engine_report(e, ENGINE_FAILED);
		return NULL;
	}
	epoch_offline();
	d = smtpd_new(e->cfg, e->dt);
	if (!d) {
		snprintf(e->err, sizeof(e->err), "engine %u: out of memory", e->index);
		goto fail;
	}
	memset(&lc, 0, sizeof(lc));
	lc.index = e->index;
	lc.cfg = e->cfg;
	lc.ops = &smtpd_conn_ops;
	lc.ops_arg = d;
	lc.busy_reply = smtpd_busy_reply(d);
	/* The ring is created here, in the thread that will submit to it
	 * (IORING_SETUP_SINGLE_ISSUER). */
	l = loop_new(&lc, e->err, sizeof(e->err));
	if (!l)
		goto fail;
	memset(&sc, 0, sizeof(sc));
	sc.dir = e->cfg->spool_dir;
	sc.shard = e->index;
	sc.sync = e->cfg->sync;
	sc.segment_size = e->cfg->segment_size;
	sc.domstat = e->ds;
	sc.compact_threshold = e->cfg->compact_threshold;
	sc.compact_min_age_us = (uint64_t)e->cfg->compact_min_age_ms * 1000;
	sc.clock_offset_us = (int64_t)e->cfg->clock_offset_ms * 1000;
	sh = spool_shard_open(l, &sc, e->err, sizeof(e->err));
	if (!sh)
		goto fail;
	if (smtpd_set_spool(d, sh)) {
		snprintf(e->err, sizeof(e->err), "engine %u: out of memory", e->index);
		goto fail;
	}
	dr = drain_new(e->hub, e->index, l, sh);
	if (!dr) {
		snprintf(e->err, sizeof(e->err), "engine %u: out of memory", e->index);
		goto fail;
	}
	smtpd_set_drain(d, dr);
	loop_set_turn_hook(l, smtpd_turn, d);
	loop_set_busy_check(l, smtpd_busy, d);
	loop_set_stop_hook(l, smtpd_stop, d);
	e->loop = l;
	engine_report(e, ENGINE_READY);
	e->exit_rc = loop_run(l);
	/* The loop and the drainer stay until every engine thread has ended
	 * (main frees them): other threads may still post to this loop. */
	smtpd_set_drain(d, NULL);
	e->drain = dr;
	epoch_unregister();
	spool_shard_close(sh);
	smtpd_free(d);
	return NULL;
fail:
	drain_free(dr);
	spool_shard_close(sh);
	loop_free(l);
	smtpd_free(d);
	epoch_unregister();
	engine_report(e, ENGINE_FAILED);
	return NULL;
}

/* A "drain <domain>" event from Redis (another node's ETRN, or etrnctl
 * flush): drain what this node holds for it. */
static void redis_drain(void *arg, const char *domain, size_t len)
{
	struct buf out;

	buf_init(&out, 1024);
	drain_hub_flush(arg, domain, len, &out);
	log_info("redis event: drain %.*s: %.*s", (int)(len > 255 ? 255 : len), domain,
		 (int)(out.len > 2 ? out.len - 2 : out.len), out.data ? out.data : "");
	buf_free(&out);
}

/* The control socket: "flush DOMAIN" (ETRN on the operator's behalf) and
 * "status" (queue depths). */
static void ctl_request(void *arg, const char *line, size_t len, struct buf *out)
{
	struct drain_hub *hub = arg;

	if (len > 6 && !memcmp(line, "flush ", 6)) {
		drain_hub_flush(hub, line + 6, len - 6, out);
		return;
	}
	if (len == 6 && !memcmp(line, "status", 6)) {
		drain_hub_status(hub, out);
		return;
	}
	(void)buf_puts(out, "error: unknown request (want: flush DOMAIN, or status)\n");
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: etrnd [-c FILE] [-o KEY=VALUE]... [-t] [-h]\n"
		"  -c FILE       configuration file (default %s)\n"
		"  -o KEY=VALUE  override one configuration key (after the file)\n"
		"  -t            check the configuration and exit (0 = good)\n"
		"  -h            this help\n", ETRND_DEFAULT_CONFIG);
}

int main(int argc, char **argv)
{
	const char *path = ETRND_DEFAULT_CONFIG;
	char err[CONFIG_ERR_MAX + PATH_MAX];
	struct engine *eng;
	struct domtab_live *dt;
	struct domstat *ds;
	struct drain_hub *hub;
	struct epoch *ep;
	struct control *ctl;
	struct ctlsock *cs = NULL;
	struct config cfg;
	const char *over[64];
	unsigned nover = 0, started = 0;
	int opt, check_only = 0, failed = 0, sig;
	sigset_t sigs;

	log_init("etrnd", LOGL_INFO, 0);
	while ((opt = getopt(argc, argv, "c:o:th")) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 'o':
			if (nover == sizeof(over) / sizeof(over[0]))
				fatal("too many -o options");
			over[nover++] = optarg;
			break;
		case 't': check_only = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	config_defaults(&cfg);
	if (config_load(&cfg, path, err, sizeof(err)))
		fatal("%s", err);
	for (unsigned i = 0; i < nover; i++) {
		char key[64];
		const char *eq = strchr(over[i], '=');
		size_t kl = eq ? (size_t)(eq - over[i]) : 0;

		if (!eq || kl == 0 || kl >= sizeof(key))
			fatal("-o %s: want KEY=VALUE", over[i]);
		memcpy(key, over[i], kl);
		key[kl] = '\0';
		if (config_set(&cfg, key, eq + 1, "command line -o", err, sizeof(err)))
			fatal("%s", err);
	}
	if (config_finish(&cfg, err, sizeof(err)))
		fatal("%s: %s", path, err);
	if (check_only) {
		config_free(&cfg);
		return 0;
	}
	log_init("etrnd", (enum log_level)cfg.log_level, cfg.log_syslog);

	/* Signals are taken synchronously by this thread alone: block them
	 * before any engine thread exists so the threads inherit the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (loop_probe_listen(&cfg, err, sizeof(err)))
		fatal("%s", err);
	/* The domain table first: from Redis (or relay_domains alone) before
	 * any engine thread can take a connection. */
	ep = epoch_new(cfg.threads + 1); /* + the control socket thread */
	dt = ep ? domtab_live_new(NULL, ep) : NULL;
	eng = calloc(cfg.threads, sizeof(*eng));
	ds = domstat_new(ETRND_DOMSTAT_DOMAINS);
	hub = dt && ds ? drain_hub_new(&cfg, dt, ds, cfg.threads) : NULL;
	if (!dt || !eng || !ds || !hub)
		fatal("out of memory");
	ctl = control_start(&cfg, dt, err, sizeof(err));
	if (!ctl)
		fatal("%s", err);
	/* Before the listeners, so that once etrnd takes mail, etrnctl can
	 * reach it; requests before the engines are up get partial answers. */
	if (cfg.control_socket[0]) {
		cs = ctlsock_start(cfg.control_socket, ctl_request, hub, ep, err, sizeof(err));
		if (!cs)
			fatal("%s", err);
	}
	for (unsigned i = 0; i < cfg.threads; i++) {
		eng[i].index = i;
		eng[i].cfg = &cfg;
		eng[i].dt = dt;
		eng[i].ep = ep;
		eng[i].ds = ds;
		eng[i].hub = hub;
		if (pthread_create(&eng[i].thread, NULL, engine_main, &eng[i])) {
			snprintf(eng[i].err, sizeof(eng[i].err), "pthread_create: %s",
				 strerror(errno));
			eng[i].state = ENGINE_FAILED;
			failed = 1;
			break;
		}
		started++;
	}
	pthread_mutex_lock(&start_lock);
	for (unsigned i = 0; i < started; i++)
		while (eng[i].state == ENGINE_STARTING)
			pthread_cond_wait(&start_cond, &start_lock);
	pthread_mutex_unlock(&start_lock);
	for (unsigned i = 0; i < cfg.threads; i++) {
		if (eng[i].state == ENGINE_FAILED) {
			log_err("engine %u: %s", i, eng[i].err);
			failed = 1;
		}
	}
	if (failed) {
		for (unsigned i = 0; i < started; i++)
			if (eng[i].state == ENGINE_READY)
				loop_stop(eng[i].loop);
		for (unsigned i = 0; i < started; i++)
			pthread_join(eng[i].thread, NULL);
		ctlsock_stop(cs);
		control_stop(ctl);
		fatal("could not start; see the errors above");
	}
	control_set_drain(ctl, redis_drain, hub);
	log_info("etrnd started: %u engine thread(s), listening on %s%s, spool %s, sync %s, %zu static relay domain(s), redis %s",
		 cfg.threads, cfg.listen[0].text, cfg.nlisten > 1 ? " and more" : "",
		 cfg.spool_dir, cfg.sync == CONFIG_SYNC_BATCH ? "batch" :
		 cfg.sync == CONFIG_SYNC_ALWAYS ? "always" : "none",
		 cfg.nrelay_domains,
		 cfg.redis.kind == CONFIG_REDIS_NONE ? "none" : cfg.redis.display);

	for (;;) {
		if (sigwait(&sigs, &sig))
			continue;
		if (sig == SIGHUP) {
			log_warn("SIGHUP: configuration reload is not implemented yet; ignored");
			continue;
		}
		log_info("%s: stopping (no new connections; transactions in flight finish within %u ms)",
			 sig == SIGTERM ? "SIGTERM" : "SIGINT", cfg.shutdown_timeout_ms);
		break;
	}
	cs = ctlsock_stop(cs); /* before the engines it asks */
	for (unsigned i = 0; i < started; i++)
		loop_stop(eng[i].loop);
	for (unsigned i = 0; i < started; i++) {
		pthread_join(eng[i].thread, NULL);
		if (eng[i].exit_rc)
			failed = 1;
	}
	/* No engine thread posts any more; resolver threads may, until they
	 * are done (posts to a stopped loop are dropped). */
	drain_hub_quiesce(hub);
	for (unsigned i = 0; i < started; i++) {
		drain_free(eng[i].drain);
		loop_free(eng[i].loop);
	}
	control_stop(ctl);
	log_info("stopped");
	free(eng);
	domtab_live_free(dt);
	domstat_free(ds);
	drain_hub_free(hub);
	epoch_free(ep);
	config_free(&cfg);
	return failed ? 1 : 0;
}
