/* SPDX-License-Identifier: MIT */
/*
 * etrnd main: read the config, start the control thread, the control socket
 * and one engine thread per core (admin/engine.h), then wait for signals.
 * This is the composition root, above every layer: the one place that knows
 * them all, so that the layers need not know each other (core/ includes
 * nothing above it). SIGTERM/SIGINT: stop accepting, let transactions in
 * flight finish (at most shutdown_timeout), exit 0.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "admin/cluster_auth.h"
#include "admin/decommission.h"
#include "admin/control.h"
#include "admin/cluster.h"
#include "admin/ctl_requests.h"
#include "core/domtab.h"
#include "admin/engine.h"
#include "admin/metrics_http.h"
#include "admin/privs.h"
#include "admin/reload.h"
#include "admin/sdnotify.h"
#include "core/addrtab.h"
#include "core/budget.h"
#include "core/config.h"
#include "core/connlimit.h"
#include "core/ctlsock.h"
#include "core/epoch.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "core/resolver.h"
#include "proto/activator.h"
#include "proto/drain.h"
#include "proto/drain_atrn.h"
#include "proto/smtpd.h"
#include "store/domstat.h"

#define ETRND_DEFAULT_CONFIG "etc/etrnd.conf"
/* Domains with held mail counted node-wide (quota, ETRN replies): 32 bytes
 * per slot, two slots per domain, pages touched only as domains appear. */
#define ETRND_DOMSTAT_DOMAINS (1u << 20)
#define ETRND_OVERRIDES_MAX 64   /* -o options */
/* Descriptors besides the connections' sockets (RLIMIT_NOFILE check). Per
 * engine thread: its ring, eventfd, listeners, spool directory, the segment
 * being written and the segments being read for drains. For the node:
 * stdio, the log, Redis, the resolver's sockets, the control socket and
 * its clients. Generous on purpose: running short costs an accept back-off. */
#define ETRND_FD_RESERVE_THREAD 64u
#define ETRND_FD_RESERVE_NODE 64u
/* Fewer connections per thread than this after fitting max_connections to
 * the descriptor limit: refuse to start (the host's limit is broken). */
#define ETRND_FD_MIN_CONNECTIONS 16u

struct etrnd_opts {
	const char *path;
	const char *over[ETRND_OVERRIDES_MAX];
	unsigned nover;
	int check_only;
};

/* Everything the daemon starts, in start order; stopped in reverse. */
struct etrnd {
	struct config cfg;
	struct epoch *ep;
	struct domtab_live *dt;
	struct domstat *ds;
	struct budget *data_budget;
	struct resolver *res;          /* the one resolver (drain destinations) */
	struct drain_hub *hub;
	struct control *ctl;
	struct ctlsock *cs;
	struct ctl_env ctlenv;         /* what the control socket acts on */
	struct activators *act;        /* proto/activator.h */
	struct engine_env env;
	struct engine_set *eng;
	struct connlimit *cl;          /* client_connection_limit, node-wide */
	struct reload *rl;             /* SIGHUP (admin/reload.h) */
	struct privs privs;            /* the run user (admin/privs.h) */
	struct sdnotify *sdn;          /* systemd's notify and watchdog */
	struct metrics_http *mh;       /* metrics_listen; NULL when off */
	struct cluster_auth *ca;       /* cluster_secret_file; NULL when unset */
	struct decommission *dc;       /* node drain (admin/decommission.h) */
	struct clusterview_live *cv;   /* the other nodes' counts (issue 16) */
	struct cluster *cluster;       /* node-state thread; NULL without Redis */
};

static void etrnd_usage(FILE *f)
{
	fprintf(f,
		"usage: etrnd [-c FILE] [-o KEY=VALUE]... [-t] [-h]\n"
		"  -c FILE       configuration file (default %s)\n"
		"  -o KEY=VALUE  override one configuration key (after the file)\n"
		"  -t            check the configuration and exit (0 = good)\n"
		"  -h            this help\n", ETRND_DEFAULT_CONFIG);
}

/* Returns -1 to go on, else the exit code. */
static int etrnd_options(int argc, char **argv, struct etrnd_opts *o)
{
	int opt;

	o->path = ETRND_DEFAULT_CONFIG;
	while ((opt = getopt(argc, argv, "c:o:th")) != -1) {
		switch (opt) {
		case 'c': o->path = optarg; break;
		case 'o':
			if (o->nover == ETRND_OVERRIDES_MAX)
				fatal("too many -o options");
			o->over[o->nover++] = optarg;
			break;
		case 't': o->check_only = 1; break;
		case 'h': etrnd_usage(stdout); return 0;
		default: etrnd_usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		etrnd_usage(stderr);
		return 2;
	}
	return -1;
}

/* The file, then each -o KEY=VALUE, then the checks across keys: as a
 * reload reads it (admin/reload.h). */
static void etrnd_config(const struct etrnd_opts *o, struct config *cfg)
{
	char err[CONFIG_ERR_MAX + PATH_MAX];
	struct reload_src src = { o->path, o->over, o->nover };

	if (reload_read(&src, cfg, err, sizeof(err)))
		fatal("%s", err);
}

/* SIGHUP's reload: the configuration as read, before etrnd_fit_nofile()
 * adjusts it; what it acts on is attached once running. */
static void etrnd_reload_new(struct etrnd *d, const struct etrnd_opts *o)
{
	struct reload_src src = { o->path, o->over, o->nover };

	d->rl = reload_new(&src, &d->cfg);
	if (!d->rl)
		fatal("out of memory");
}

/* Descriptors max_connections needs on every thread, with the reserves. */
static uint64_t etrnd_fd_need(const struct config *cfg, unsigned per_thread)
{
	return ((uint64_t)per_thread + ETRND_FD_RESERVE_THREAD) * cfg->threads +
	       ETRND_FD_RESERVE_NODE;
}

/*
 * Raise RLIMIT_NOFILE's soft limit to the hard limit (as Postfix's
 * open_limit() does), then fit max_connections to it. Too few descriptors
 * for max_connections x threads (the default 20000 per thread exceeds most
 * stock limits) lowers max_connections with a warning naming the numbers
 * rather than refusing to start: an edge relay that does not start loses
 * the mail it would have taken, one with a lower ceiling answers 421 to the
 * excess, which senders retry; Postfix and Exim admins expect the daemon to
 * run and say what it did. Only a limit too small for ETRND_FD_MIN_CONNECTIONS
 * per thread is fatal.
 */
static void etrnd_fit_nofile(struct config *cfg)
{
	struct rlimit rl;
	uint64_t soft, fit;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		fatal("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit want = { rl.rlim_max, rl.rlim_max };

		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			rl = want;
		else
			log_warn("cannot raise the descriptor limit from %llu to %llu: %s",
				 (unsigned long long)rl.rlim_cur,
				 (unsigned long long)rl.rlim_max, strerror(errno));
	}
	soft = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
	if (etrnd_fd_need(cfg, cfg->max_connections) <= soft)
		return;
	fit = soft > etrnd_fd_need(cfg, 0) ? (soft - etrnd_fd_need(cfg, 0)) / cfg->threads : 0;
	if (fit < ETRND_FD_MIN_CONNECTIONS)
		fatal("descriptor limit %llu is too low for %u engine thread(s): at least %llu "
		      "needed; raise it (ulimit -n, systemd LimitNOFILE=) or lower threads",
		      (unsigned long long)soft, cfg->threads,
		      (unsigned long long)etrnd_fd_need(cfg, ETRND_FD_MIN_CONNECTIONS));
	log_warn("max_connections %u x %u engine thread(s) + %llu reserved needs %llu descriptors, "
		 "the limit is %llu: using max_connections %llu per thread; raise the limit "
		 "(ulimit -n, systemd LimitNOFILE=) or set max_connections to silence this",
		 cfg->max_connections, cfg->threads,
		 (unsigned long long)etrnd_fd_need(cfg, 0),
		 (unsigned long long)etrnd_fd_need(cfg, cfg->max_connections),
		 (unsigned long long)soft, (unsigned long long)fit);
	cfg->max_connections = (unsigned)fit;
}

/* Signals are taken synchronously by the main thread alone: block them
 * before any other thread exists so that every thread inherits the mask. */
static void etrnd_block_signals(sigset_t *sigs)
{
	sigemptyset(sigs);
	sigaddset(sigs, SIGTERM);
	sigaddset(sigs, SIGINT);
	sigaddset(sigs, SIGHUP);
	sigaddset(sigs, SIGUSR1); /* reopen the log file (core/log.h) */
	pthread_sigmask(SIG_BLOCK, sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* The Prometheus endpoint (metrics_listen), after the control thread it
 * asks, bound before privileges are dropped. */
static void etrnd_metrics_start(struct etrnd *d)
{
	char err[CONFIG_ERR_MAX + PATH_MAX];
	struct metrics_sources src = {
		.ds = d->ds, .hub = d->hub, .dt = d->dt, .ep = d->ep,
		.ctl = d->cfg.redis.kind == CONFIG_REDIS_NONE ? NULL : d->ctl,
	};

	if (!d->cfg.metrics_len)
		return;
	d->mh = metrics_http_start(&d->cfg, &src, err, sizeof(err));
	if (!d->mh) {
		d->ctl = control_stop(d->ctl);
		fatal("%s", err);
	}
}

/* drain_atrn_secret_fn over admin/cluster_auth.h (proto/ sees no admin/). */
static int etrnd_cluster_secret(const void *arg, char *out, size_t outlen)
{
	return cluster_auth_secret(arg, out, outlen);
}

/* decommission_env's set_draining over admin/cluster.h. */
static void etrnd_set_draining(void *arg)
{
	cluster_set_state(arg, CLUSTERVIEW_DRAINING);
}

/* domstat as the cluster thread reads it (admin/ does not link store/). */
static void etrnd_counts_walk(void *src, cluster_count_fn fn, void *arg)
{
	domstat_walk(src, fn, arg);
}

static int etrnd_counts_changed(void *src)
{
	return domstat_changed(src);
}

/* Issue 16: the node-state thread, after the control thread (no thread
 * without Redis), and the drains' view of the other nodes. */
static void etrnd_cluster_start(struct etrnd *d)
{
	char err[CONFIG_ERR_MAX];
	struct cluster_counts cc = { etrnd_counts_walk, etrnd_counts_changed, d->ds };

	d->cv = clusterview_live_new(d->ep);
	if (!d->cv)
		fatal("out of memory");
	d->cluster = cluster_start(&d->cfg, d->cv, &cc, err, sizeof(err));
	if (!d->cluster && err[0])
		fatal("%s", err);
	drain_hub_set_cluster(d->hub, d->cv, d->cluster ? cluster_publish_drain : NULL,
			      d->cluster);
}

/* client_connection_limit's node-wide table. An address is held only
 * while it has a connection open: room for every connection, twice over
 * for uneven shards. */
static void etrnd_connlimit_new(struct etrnd *d)
{
	uint64_t addrs = (uint64_t)d->cfg.max_connections * d->cfg.threads * 2;

	d->cl = connlimit_new(d->cfg.client_connection_limit,
			      addrs < ADDRTAB_ADDRS_MAX ? (unsigned)addrs : ADDRTAB_ADDRS_MAX);
	if (!d->cl)
		fatal("client_connection_limit: %s", strerror(errno));
}

/* Issue 16: the decommission thread, once the engines take mail; it
 * hears "node-drain" events through the control thread. */
static void etrnd_decommission_start(struct etrnd *d)
{
	char err[CONFIG_ERR_MAX];

	d->dc = decommission_start(&(struct decommission_env){
			.cfg = &d->cfg, .eng = d->eng, .hub = d->hub, .view = d->cv,
			.secret = d->ca ? etrnd_cluster_secret : NULL, .secret_arg = d->ca,
			.set_draining = d->cluster ? etrnd_set_draining : NULL,
			.set_draining_arg = d->cluster },
		err, sizeof(err));
	if (!d->dc)
		fatal("%s", err);
	control_set_event(d->ctl, decommission_event, d->dc);
}

/* The shared parts, the domain table (from Redis, or relay_domains alone)
 * and the control socket, all before any engine thread can take a
 * connection; then the engines. Any failure is fatal. */
static void etrnd_start(struct etrnd *d)
{
	char err[CONFIG_ERR_MAX + PATH_MAX];
	const struct config *cfg = &d->cfg;
	struct resolver_conf rc;

	if (loop_probe_listen(cfg, err, sizeof(err)))
		fatal("%s", err);
	/* Read as started (root, maybe): the file may be the run user's to
	 * not read. */
	d->ca = cluster_auth_new(cfg, err, sizeof(err));
	if (!d->ca && err[0])
		fatal("%s", err);
	/* Before any thread: they all run as the run user, so every file
	 * (spool, control socket) is its; root is kept for the binds alone. */
	if (privs_prepare(&d->privs, cfg, err, sizeof(err)))
		fatal("%s", err);
	/* + the control socket's and the metrics endpoint's threads */
	d->ep = epoch_new(cfg->threads + 2);
	if (metrics_init(cfg->threads))
		fatal("metrics: %u engine thread(s) are more than the counters have slots for",
		      cfg->threads);
	d->dt = d->ep ? domtab_live_new(NULL, d->ep) : NULL;
	d->ds = domstat_new(ETRND_DOMSTAT_DOMAINS);
	d->data_budget = budget_new(cfg->data_memory_limit);
	if (!d->data_budget)
		fatal("out of memory");
	config_resolver_conf(cfg, &rc);
	d->res = resolver_new(&rc, err, sizeof(err));
	if (!d->res)
		fatal("%s", err);
	d->hub = d->dt && d->ds ? drain_hub_new(cfg, d->dt, d->ds, d->res, cfg->threads) : NULL;
	if (!d->hub)
		fatal("out of memory");
	d->act = activators_new(cfg);
	if (!d->act)
		fatal("out of memory");
	d->ctl = control_start(cfg, d->dt, err, sizeof(err));
	if (!d->ctl)
		fatal("%s", err);
	etrnd_metrics_start(d);
	etrnd_cluster_start(d);
	/* Before the listeners, so that once etrnd takes mail, etrnctl can
	 * reach it; requests before the engines are up get partial answers. */
	if (cfg->control_socket[0]) {
		d->ctlenv = (struct ctl_env){ .hub = d->hub, .act = d->act, .ctl = d->ctl };
		d->cs = ctlsock_start(cfg->control_socket, ctl_requests_socket, &d->ctlenv,
				      d->ep, err, sizeof(err));
		if (!d->cs)
			fatal("%s", err);
	}
	if (cfg->client_connection_limit)
		etrnd_connlimit_new(d);
	d->env = (struct engine_env){ .cfg = cfg, .dt = d->dt, .ds = d->ds,
				      .hub = d->hub, .resolver = d->res, .ep = d->ep, .cl = d->cl,
				      .data_budget = d->data_budget, .act = d->act,
				      .cluster_auth = d->ca ? cluster_auth_backend(d->ca) : NULL };
	if (engine_tls_new(cfg, &d->env, err, sizeof(err))) {
		d->cs = ctlsock_stop(d->cs);
		d->mh = metrics_http_stop(d->mh);
		d->ctl = control_stop(d->ctl);
		fatal("%s", err);
	}
	/* The drains' STARTTLS (proto/drain.h); freed after the engines. */
	drain_hub_set_tls(d->hub, d->env.tls_client);
	/* Cross-node ATRN (proto/drain_atrn.h): as this node, with the secret. */
	if (d->ca)
		drain_atrn_set_cluster(drain_hub_atrn_reg(d->hub), cfg, etrnd_cluster_secret,
				       d->ca, d->env.tls_client);
	d->eng = engine_start(&d->env);
	if (!d->eng) {
		d->cs = ctlsock_stop(d->cs);
		d->mh = metrics_http_stop(d->mh);
		d->ctl = control_stop(d->ctl);
		fatal("could not start; see the errors above");
	}
	if (privs_finish(&d->privs, err, sizeof(err)))
		fatal("%s", err);
	control_set_drain(d->ctl, ctl_requests_redis_drain, d->hub);
	etrnd_decommission_start(d);
}

static void etrnd_log_started(const struct config *cfg)
{
	log_info("etrnd started: %u engine thread(s), listening on %s%s, spool %s, sync %s, %zu static relay domain(s), redis %s",
		 cfg->threads, cfg->listen[0].text, cfg->nlisten > 1 ? " and more" : "",
		 cfg->spool_dir, cfg->sync == CONFIG_SYNC_BATCH ? "batch" :
		 cfg->sync == CONFIG_SYNC_ALWAYS ? "always" : "none",
		 cfg->nrelay_domains,
		 cfg->redis.kind == CONFIG_REDIS_NONE ? "none" : cfg->redis.display);
}

/* Until SIGTERM or SIGINT; SIGHUP reloads, SIGUSR1 reopens the log file. */
static void etrnd_wait(const sigset_t *sigs, const struct config *cfg, struct reload *rl)
{
	int sig;

	for (;;) {
		if (sigwait(sigs, &sig))
			continue;
		if (sig == SIGUSR1) {
			(void)log_reopen(); /* a failure is logged; the old file stays */
			continue;
		}
		if (sig == SIGHUP) {
			(void)reload_run(rl); /* logs what it did or why not */
			continue;
		}
		log_info("%s: stopping (no new connections; transactions in flight finish within %u ms)",
			 sig == SIGTERM ? "SIGTERM" : "SIGINT", cfg->shutdown_timeout_ms);
		return;
	}
}

/* Stop in reverse start order. Returns the exit code. */
static int etrnd_stop(struct etrnd *d)
{
	int failed;

	sdnotify_stopping(d->sdn);
	d->rl = reload_free(d->rl);
	d->cs = ctlsock_stop(d->cs); /* before the engines it asks */
	d->mh = metrics_http_stop(d->mh); /* it asks them too */
	failed = engine_stop(d->eng) != 0;
	decommission_join(d->dc); /* its round ended with the loops */
	d->sdn = sdnotify_free(d->sdn); /* its last pings ran or were refused */
	/* No engine thread runs any more: no drain is posted from now on, and
	 * look-ups still pending end their drains (-ECANCELED), on the
	 * resolver's thread, which is joined before the loops are freed; a
	 * scheduler's look-up is refused its post then and frees its job. */
	drain_hub_quiesce(d->hub);
	d->res = resolver_free(d->res);
	d->eng = engine_free(d->eng);
	d->act = activators_free(d->act); /* its runs lived on engine thread 0 */
	engine_tls_free(&d->env); /* no engine thread uses them any more */
	d->ca = cluster_auth_free(d->ca);
	d->cl = connlimit_free(d->cl);
	/* No engine thread publishes or reads the view any more. */
	d->cluster = cluster_stop(d->cluster);
	d->cv = clusterview_live_free(d->cv);
	d->ctl = control_stop(d->ctl);
	/* Freed only now: the control thread delivered its events to it. */
	d->dc = decommission_stop(d->dc);
	log_info("stopped");
	domtab_live_free(d->dt);
	domstat_free(d->ds);
	budget_free(d->data_budget);
	drain_hub_free(d->hub);
	epoch_free(d->ep);
	metrics_free();
	config_free(&d->cfg);
	return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
	static struct etrnd d;
	struct etrnd_opts o = { 0 };
	sigset_t sigs;
	int rc;

	log_init("etrnd", LOGL_INFO, 0);
	rc = etrnd_options(argc, argv, &o);
	if (rc >= 0)
		return rc;
	etrnd_config(&o, &d.cfg);
	if (o.check_only) {
		/* The certificate and key are read as at start: a mismatch or
		 * a bad PEM fails the check too. */
		char err[CONFIG_ERR_MAX + PATH_MAX];

		if (engine_tls_new(&d.cfg, &d.env, err, sizeof(err)))
			fatal("%s", err);
		engine_tls_free(&d.env);
		if (privs_check_config(&d.cfg, err, sizeof(err)))
			fatal("%s", err);
		d.ca = cluster_auth_new(&d.cfg, err, sizeof(err));
		if (!d.ca && err[0])
			fatal("%s", err);
		d.ca = cluster_auth_free(d.ca);
		config_free(&d.cfg);
		return 0;
	}
	if (d.cfg.log_file[0] && (rc = log_open_file(d.cfg.log_file)))
		fatal("log = %s: %s", d.cfg.log_file, strerror(-rc));
	log_init("etrnd", (enum log_level)d.cfg.log_level, d.cfg.log_syslog);
	etrnd_block_signals(&sigs);
	etrnd_reload_new(&d, &o);
	etrnd_fit_nofile(&d.cfg);
	etrnd_start(&d);
	reload_attach(d.rl, &(struct reload_live){ d.env.tls_server, d.env.tls_client, d.ctl,
						     d.ca });
	etrnd_log_started(&d.cfg);
	{
		char err[CONFIG_ERR_MAX];

		d.sdn = sdnotify_start(d.eng, err, sizeof(err));
		if (!d.sdn)
			fatal("%s", err);
	}
	etrnd_wait(&sigs, &d.cfg, d.rl);
	return etrnd_stop(&d);
}
