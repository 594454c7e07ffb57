/* SPDX-License-Identifier: MIT */
/*
 * reload: SIGHUP's re-read of the configuration (see reload.h). The new
 * configuration is read and checked whole before anything changes; the live
 * keys are then applied, each through the module that owns it (core/log.h,
 * core/tls.h's context swap, admin/control.h), and every other key is
 * compared with the boot configuration by one table, so a key added to
 * config.c without a row here is caught by the review of that table.
 */
#include "admin/reload.h"
#include "admin/cluster_auth.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/control.h"
#include "admin/engine.h"
#include "core/log.h"
#include "core/tls.h"
#include "proto/smtpd.h"

#define RELOAD_KEY_MAX 64          /* longest key an -o names */
#define RELOAD_ERR_MAX (CONFIG_ERR_MAX + PATH_MAX)

/* The live Redis settings in force (what control_reconfigure() was last
 * given, or the boot values). */
struct reload_redis {
	struct config_redis redis;
	char prefix[CONFIG_REDIS_PREFIX_MAX + 1];
	unsigned resync_ms;
};

struct reload {
	struct reload_src src;
	struct reload_live live;
	struct config boot;            /* as read at start (shallow): restart keys */
	int log_level;                 /* in force */
	struct reload_redis redis;     /* in force */
};

/* ---- reading ------------------------------------------------------------ */

/* One -o "KEY=VALUE" into cfg. */
static int reload_override(struct config *cfg, const char *o, char *err, size_t errlen)
{
	char key[RELOAD_KEY_MAX];
	const char *eq = strchr(o, '=');
	size_t kl = eq ? (size_t)(eq - o) : 0;

	if (!eq || kl == 0 || kl >= sizeof(key)) {
		snprintf(err, errlen, "-o %s: want KEY=VALUE", o);
		return -1;
	}
	memcpy(key, o, kl);
	key[kl] = '\0';
	return config_set(cfg, key, eq + 1, "command line -o", err, errlen);
}

int reload_read(const struct reload_src *src, struct config *cfg, char *err, size_t errlen)
{
	config_defaults(cfg);
	if (config_load(cfg, src->path, err, errlen))
		return -1;
	for (unsigned i = 0; i < src->nover; i++)
		if (reload_override(cfg, src->over[i], err, errlen))
			return -1;
	/* config_finish names the file, or an activator's FILE:LINE. */
	if (config_finish(cfg, err, errlen) || config_check_tls(cfg, err, errlen) ||
	    smtpd_check_config(cfg, err, errlen))
		return -1;
	return 0;
}

/* ---- the restart keys --------------------------------------------------- */

static int same_listen(const struct config *a, const struct config *b)
{
	if (a->nlisten != b->nlisten)
		return 0;
	for (unsigned i = 0; i < a->nlisten; i++)
		if (strcmp(a->listen[i].text, b->listen[i].text) ||
		    a->listen[i].flags != b->listen[i].flags)
			return 0;
	return 1;
}

static int same_relay_domains(const struct config *a, const struct config *b)
{
	if (a->nrelay_domains != b->nrelay_domains)
		return 0;
	for (size_t i = 0; i < a->nrelay_domains; i++)
		if (strcmp(a->relay_domains[i], b->relay_domains[i]))
			return 0;
	return 1;
}

static int same_mynetworks(const struct config *a, const struct config *b)
{
	return a->nmynetworks == b->nmynetworks &&
	       !memcmp(a->mynetworks, b->mynetworks, a->nmynetworks * sizeof(a->mynetworks[0]));
}

/* Activators are compared field by field as parsed (their password read
 * from password_file included: a new password needs a restart too). */
static int same_activators(const struct config *a, const struct config *b)
{
	return a->nactivators == b->nactivators &&
	       (!a->nactivators ||
		!memcmp(a->activators, b->activators, a->nactivators * sizeof(a->activators[0])));
}

static int same_log(const struct config *a, const struct config *b)
{
	return a->log_syslog == b->log_syslog && !strcmp(a->log_file, b->log_file);
}

static int same_metrics(const struct config *a, const struct config *b)
{
	return a->metrics_len == b->metrics_len &&
	       (!a->metrics_len || !strcmp(a->metrics.text, b->metrics.text));
}

/* STARTTLS offered or not, listen_tls usable or not: fixed at start. The
 * files themselves (and a changed path) are live while there is one. */
static int same_tls_server(const struct config *a, const struct config *b)
{
	return !a->tls_cert_file[0] == !b->tls_cert_file[0];
}

enum reload_cmp { RELOAD_MEM, RELOAD_STR };

/* One row per key that needs a restart: the field compared (memcmp, or
 * strcmp for a string), or a function for a key stored across fields. */
struct reload_key {
	const char *name;
	size_t off, len;
	enum reload_cmp cmp;
	int (*same)(const struct config *a, const struct config *b);
};

#define RK(name, f) { name, offsetof(struct config, f), \
		      sizeof(((struct config *)0)->f), RELOAD_MEM, NULL }
#define RS(name, f) { name, offsetof(struct config, f), 0, RELOAD_STR, NULL }
#define RF(name, fn) { name, 0, 0, RELOAD_MEM, fn }

static const struct reload_key reload_keys[] = {
	RF("listen (or listen_tls, listen_trusted, odmr_listen, submission_listen)",
	   same_listen),
	RK("threads", threads),
	RS("hostname", hostname),
	RS("spool_dir", spool_dir),
	RS("control_socket", control_socket),
	RF("relay_domains", same_relay_domains),
	RK("sync", sync),
	RK("segment_size", segment_size),
	RK("spool_direct_io", spool_direct_io),
	RK("compact_threshold", compact_threshold),
	RK("compact_min_age", compact_min_age_ms),
	RK("smtp_command_max", smtp_command_max),
	RK("smtp_line_max", smtp_line_max),
	RK("smtp_max_recipients", smtp_max_recipients),
	RK("message_size_limit", message_size_limit),
	RK("data_memory_limit", data_memory_limit),
	RK("smtp_max_errors", smtp_max_errors),
	RK("idle_timeout", idle_timeout_ms),
	RK("session_timeout", session_timeout_ms),
	RK("close_timeout", close_timeout_ms),
	RK("send_timeout", send_timeout_ms),
	RK("bare_lf", bare_lf_normalize),
	RK("max_connections", max_connections),
	RK("client_connection_limit", client_connection_limit),
	RK("client_connection_limit_loopback", client_connection_limit_loopback),
	RK("shutdown_timeout", shutdown_timeout_ms),
	RK("drain_connections", drain_connections),
	RK("drain_destination_concurrency", drain_destination_concurrency),
	RK("drain_reconnect_attempts", drain_reconnect_attempts),
	RK("drain_greeting_timeout", drain_greeting_timeout_ms),
	RK("drain_done_window", drain_done_window),
	RK("etrn_rate_limit", etrn_rate_limit),
	RK("auth_verifiers", auth_verifiers),
	RK("auth_failure_limit", auth_failure_limit),
	RK("max_hold", max_hold_ms),
	RK("delay_warning", delay_warning_ms),
	RK("clock_offset", clock_offset_ms),
	RK("test_clock", test_clock),
	RS("relayhost", relayhost),
	RF("mynetworks", same_mynetworks),
	RK("minimal_backoff", minimal_backoff_ms),
	RK("maximal_backoff", maximal_backoff_ms),
	RK("queue_restart_spread", queue_restart_spread_ms),
	RF("activator.*", same_activators),
	RK("atrn_idle_timeout", atrn_idle_timeout_ms),
	RF("log", same_log),
	RF("metrics_listen", same_metrics),
	RK("metrics_top_domains", metrics_top_domains),
	RS("user", user),
	RS("dns_servers", dns_servers),
	RK("dns_timeout", dns_timeout_ms),
	RK("dnsbl", dnsbl),
	RK("dnsbl_threshold", dnsbl_threshold),
	RS("dnsbl_reply", dnsbl_reply),
	RK("dnsbl_timeout", dnsbl_timeout_ms),
	RK("dnsbl_action", dnsbl_log_only),
	RK("dnsbl_skip_loopback", dnsbl_skip_loopback),
	RS("postmaster", postmaster),
	RK("allow_untrusted_routing", allow_untrusted_routing),
	RK("smtp_atrn", smtp_atrn),
	RF("tls_cert_file (set or unset)", same_tls_server),
	RK("tls_handshake_timeout", tls_handshake_timeout_ms),
};
#define RELOAD_NKEYS (sizeof(reload_keys) / sizeof(reload_keys[0]))

static int reload_key_same(const struct reload_key *k, const struct config *a,
			   const struct config *b)
{
	const char *fa = (const char *)a + k->off, *fb = (const char *)b + k->off;

	if (k->same)
		return k->same(a, b);
	return k->cmp == RELOAD_STR ? !strcmp(fa, fb) : !memcmp(fa, fb, k->len);
}

/* Log each restart key whose value differs from boot. Returns how many. */
static unsigned reload_restart_keys(const struct config *boot, const struct config *n)
{
	unsigned changed = 0;

	for (size_t i = 0; i < RELOAD_NKEYS; i++) {
		if (reload_key_same(&reload_keys[i], boot, n))
			continue;
		log_warn("reload: %s changed: takes effect at restart", reload_keys[i].name);
		changed++;
	}
	return changed;
}

/* ---- the live keys ------------------------------------------------------ */

static void reload_redis_of(const struct config *c, struct reload_redis *rr)
{
	memset(rr, 0, sizeof(*rr));
	rr->redis = c->redis;
	snprintf(rr->prefix, sizeof(rr->prefix), "%s", c->redis_prefix);
	rr->resync_ms = c->redis_resync_ms;
}

/* Hand new Redis settings to the control thread. Redis turned on or off
 * needs a restart: no control thread runs without it. */
static unsigned reload_redis(struct reload *r, const struct config *n, unsigned *restart)
{
	struct reload_redis want;
	int rc;

	reload_redis_of(n, &want);
	if (!memcmp(&want, &r->redis, sizeof(want)))
		return 0;
	if (r->redis.redis.kind == CONFIG_REDIS_NONE || want.redis.kind == CONFIG_REDIS_NONE) {
		log_warn("reload: redis changed: takes effect at restart (Redis turned on or off)");
		++*restart;
		return 0;
	}
	rc = control_reconfigure(r->live.ctl, &want.redis, want.prefix, want.resync_ms);
	if (rc < 0) {
		log_err("reload: redis: cannot hand the new settings to the control thread: %s",
			strerror(-rc));
		return 0;
	}
	r->redis = want;
	return 1;
}

/* New contexts from n's tls_* keys (the files read again even when their
 * names did not change: a renewed certificate is the usual reason for a
 * SIGHUP), swapped into the running ones. Made before anything else
 * changes, so a bad file refuses the whole reload. */
static int reload_tls_make(const struct config *n, struct engine_env *fresh, char *err,
			   size_t errlen)
{
	memset(fresh, 0, sizeof(*fresh));
	return engine_tls_new(n, fresh, err, errlen);
}

static void reload_tls_swap(struct reload *r, struct engine_env *fresh)
{
	/* A server context appearing or going away needs a restart (logged
	 * by the table); only an existing one is swapped. */
	if (r->live.tls_server && fresh->tls_server)
		(void)tls_ctx_swap(r->live.tls_server, fresh->tls_server);
	else
		(void)tls_ctx_free(fresh->tls_server);
	fresh->tls_server = NULL;
	if (r->live.tls_client)
		(void)tls_ctx_swap(r->live.tls_client, fresh->tls_client);
	else
		(void)tls_ctx_free(fresh->tls_client);
	fresh->tls_client = NULL;
}

/* The cluster secret, read again (issue 16). A file that cannot be read
 * (etrnd dropped root since, say) keeps the old secret: a warning, not a
 * refused reload. 1 when the secret was read. */
static unsigned reload_secret(struct reload *r, const struct config *n)
{
	char err[RELOAD_ERR_MAX];

	if (!r->live.ca || !n->cluster_secret_file[0])
		return 0;
	if (cluster_auth_reload(r->live.ca, n->cluster_secret_file, err, sizeof(err)) == 0)
		return 1;
	log_warn("reload: %s; the cluster secret in force stays", err);
	return 0;
}

/* ---- the whole --------------------------------------------------------- */

struct reload *reload_new(const struct reload_src *src, const struct config *boot)
{
	struct reload *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->src = *src;
	r->boot = *boot; /* its pointers borrowed: never config_free()d here */
	r->log_level = boot->log_level;
	reload_redis_of(boot, &r->redis);
	return r;
}

void reload_attach(struct reload *r, const struct reload_live *live)
{
	r->live = *live;
}

struct reload *reload_free(struct reload *r)
{
	free(r);
	return NULL;
}

int reload_run(struct reload *r)
{
	static struct config n; /* large; only the signal thread reloads */
	char err[RELOAD_ERR_MAX];
	struct engine_env fresh;
	unsigned live = 0, restart;

	log_info("reload: SIGHUP: reading %s", r->src.path);
	if (reload_read(&r->src, &n, err, sizeof(err)) ||
	    reload_tls_make(&n, &fresh, err, sizeof(err))) {
		log_err("reload: %s; refused, the configuration in force stays", err);
		config_free(&n);
		return -1;
	}
	restart = reload_restart_keys(&r->boot, &n);
	reload_tls_swap(r, &fresh);
	if (n.log_level != r->log_level) {
		log_set_level((enum log_level)n.log_level);
		r->log_level = n.log_level;
		live++;
	}
	live += reload_redis(r, &n, &restart);
	live += reload_secret(r, &n);
	log_info("reload: %s taken: TLS certificates read again, %u other live change(s) "
		 "applied, %u key(s) wait for a restart", r->src.path, live, restart);
	config_free(&n);
	return 0;
}
