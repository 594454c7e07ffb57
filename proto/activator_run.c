/* SPDX-License-Identifier: MIT */
/*
 * activator_run: see activator_run.h. One outbound connection per run,
 * driven by proto/etrn_client.h; every callback looks at run->state alone
 * to know what the run is doing. The loop's callbacks stop once the socket
 * is closed or detached; what outlives them is only the resolver's answer
 * (lookup_pending), so a run is freed by its registry, never here.
 */
#include "proto/activator_run.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/loop.h"
#include "core/tls.h"
#include "proto/activator.h"
#include "proto/smtpd.h"

/* Reply lines from an upstream: as the drains' SMTP client reads them. */
#define ACTIVATOR_REPLY_LINE_MAX 4096
#define ACTIVATOR_REPLY_LINES_MAX 100
/* The upstream as the reversed session's log lines name it. */
#define ACTIVATOR_UPSTREAM_MAX (CONFIG_ACTIVATOR_NAME_MAX + RESOLVER_RELAY_MAX + 16)
/* "ETRN " or "ATRN " + the requests, for log lines. */
#define ACTIVATOR_REQ_TEXT_MAX (CONFIG_ACTIVATOR_REQUESTS_MAX * CONFIG_ACTIVATOR_REQUEST_MAX)

static const char *const activator_run_state_names[ACTIVATOR_RUN_NSTATES] = {
	[ACTIVATOR_RUN_RESOLVING] = "resolving",
	[ACTIVATOR_RUN_CONNECTING] = "connecting",
	[ACTIVATOR_RUN_TALKING] = "talking",
	[ACTIVATOR_RUN_TLS] = "tls",
	[ACTIVATOR_RUN_REVERSED] = "reversed",
	[ACTIVATOR_RUN_DONE] = "done",
};

static const struct conn_ops activator_conn_ops;

const char *activator_run_state_name(enum activator_run_state s)
{
	return (unsigned)s < ACTIVATOR_RUN_NSTATES ? activator_run_state_names[s] : "?";
}

/* The one place the state changes; status sees it under env->mu. Nothing
 * leaves DONE. */
static void activator_run_enter(struct activator_run *run, enum activator_run_state st,
				const char *why)
{
	if (run->state == ACTIVATOR_RUN_DONE)
		panic("activator %s: %s after done (%s)", run->conf->name,
		      activator_run_state_name(st), why);
	log_debug("activator %s: %s -> %s (%s)", run->conf->name,
		  activator_run_state_name(run->state), activator_run_state_name(st), why);
	run->state = st;
	pthread_mutex_lock(run->env->mu);
	*run->shown = (int)st;
	pthread_mutex_unlock(run->env->mu);
}

void activator_run_requests(const struct config_activator *conf, char *out, size_t outlen)
{
	size_t at = 0;

	out[0] = '\0';
	for (unsigned i = 0; i < conf->nrequest && at < outlen; i++) {
		int w = snprintf(out + at, outlen - at, "%s%s", i ? "," : "", conf->request[i]);

		if (w < 0)
			break;
		at += (size_t)w;
	}
}

struct activator_run *activator_run_new(const struct activator_run_env *env,
					const struct config_activator *conf, int *shown,
					activator_run_fn fn, void *arg)
{
	struct activator_run *run = calloc(1, sizeof(*run));

	if (!run)
		return NULL;
	run->env = env;
	run->conf = conf;
	run->shown = shown;
	run->fn = fn;
	run->arg = arg;
	for (unsigned i = 0; i < conf->nrequest && i < ETRN_CLIENT_REQUESTS_MAX; i++)
		run->req[i] = conf->request[i];
	run->ecf.helo_name = env->cfg->hostname;
	run->ecf.method = conf->method == CONFIG_ACTIVATOR_ATRN ? ETRN_CLIENT_ATRN : ETRN_CLIENT_ETRN;
	run->ecf.tls = conf->tls == CONFIG_ACTIVATOR_TLS_NONE ? SMTP_CLIENT_TLS_NONE :
		       conf->tls == CONFIG_ACTIVATOR_TLS_MAY ? SMTP_CLIENT_TLS_MAY :
		       SMTP_CLIENT_TLS_MUST;
	run->ecf.user = conf->user;
	run->ecf.pass = conf->password;
	/* tls = none is the operator's explicit choice to send credentials in
	 * the clear (core/config.h). */
	run->ecf.auth_cleartext = conf->tls == CONFIG_ACTIVATOR_TLS_NONE;
	run->ecf.nreq = conf->nrequest < ETRN_CLIENT_REQUESTS_MAX ? conf->nrequest :
			ETRN_CLIENT_REQUESTS_MAX;
	run->ecf.req = run->req;
	run->ecf.reply_line_max = ACTIVATOR_REPLY_LINE_MAX;
	run->ecf.max_reply_lines = ACTIVATOR_REPLY_LINES_MAX;
	run->ec = etrn_client_new(&run->ecf);
	if (!run->ec) {
		free(run);
		return NULL;
	}
	return run;
}

void activator_run_free(struct activator_run *run)
{
	if (!run)
		return;
	etrn_client_free(run->ec);
	free(run);
}

int activator_run_busy(const struct activator_run *run)
{
	return run->state == ACTIVATOR_RUN_CONNECTING || run->state == ACTIVATOR_RUN_TALKING ||
	       run->state == ACTIVATOR_RUN_TLS || run->state == ACTIVATOR_RUN_REVERSED;
}

int activator_run_collectable(const struct activator_run *run)
{
	return run->state == ACTIVATOR_RUN_DONE && !run->lookup_pending && !run->connect_pending;
}

/* ---- ending -------------------------------------------------------------- */

/* A reply as a log or status phrase: "253 2.0.0 text". */
static void reply_text(const struct etrn_client_reply *r, char *out, size_t n)
{
	if (r->enh[0])
		snprintf(out, n, "%d %s %s", r->code, r->enh, r->text);
	else
		snprintf(out, n, "%d %s", r->code, r->text);
}

/* One log line per request the upstream answered (RFC 1985 / 2645
 * meaning in brackets), then REPLIES to the registry. Once. */
static void run_replies(struct activator_run *run)
{
	const struct config_activator *conf = run->conf;
	enum etrn_client_method m = run->ecf.method;
	char text[ETRN_CLIENT_TEXT_MAX + 32], reqs[ACTIVATOR_REQ_TEXT_MAX];

	if (run->replied)
		return;
	run->replied = 1;
	for (unsigned i = 0; i < etrn_client_nresults(run->ec); i++) {
		const struct etrn_client_reply *r = etrn_client_result(run->ec, i);

		if (!r || !r->code || r->local)
			continue; /* never answered: the end line says why */
		reply_text(r, text, sizeof(text));
		if (m == ETRN_CLIENT_ATRN)
			activator_run_requests(conf, reqs, sizeof(reqs));
		else
			snprintf(reqs, sizeof(reqs), "%s", conf->request[i]);
		log_info("activator %s: %s%s%s to %s: %s (%s)", conf->name,
			 m == ETRN_CLIENT_ATRN ? "ATRN" : "ETRN", reqs[0] ? " " : "", reqs,
			 run->relay, text, etrn_client_meaning(m, r->code));
	}
	run->fn(run->arg, run, ACTIVATOR_RUN_REPLIES);
}

/* DONE: tell the registry (which logs the end line and frees the run
 * once collectable). */
static void run_end(struct activator_run *run, const char *why)
{
	run->c = NULL;
	activator_run_enter(run, ACTIVATOR_RUN_DONE, why);
	run->fn(run->arg, run, ACTIVATOR_RUN_ENDED);
}

/* The run failed outside the upstream's replies: keep why, end. */
__attribute__((format(printf, 2, 3)))
static void run_fail(struct activator_run *run, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(run->fail, sizeof(run->fail), fmt, ap);
	va_end(ap);
	(void)etrn_client_abort(run->ec, run->fail);
	run_end(run, "failed");
}

/* ---- the reversed session (ATRN) ------------------------------------------ */

static void run_reversed_done(void *arg, unsigned msgs, const char *why)
{
	struct activator_run *run = arg;

	run->received = msgs;
	snprintf(run->rev_why, sizeof(run->rev_why), "%s", why ? why : "ended");
	run->adopted = 0;
	run_end(run, "reversed session ended");
}

/* conn_detach()'s done: the socket (and its TLS) goes to the smtpd of
 * this thread, which greets the upstream and serves its mail. */
static void run_detached(void *arg, struct conn_parcel *parcel)
{
	struct activator_run *run = arg;
	const struct config *cfg = run->env->cfg;
	char upstream[ACTIVATOR_UPSTREAM_MAX];
	unsigned idle_ms;
	int rc;

	if (!parcel) {
		run_fail(run, "lost connection with %s before the reversed session", run->relay);
		return;
	}
	if (run->state == ACTIVATOR_RUN_DONE || !run->env->d) {
		conn_parcel_free(parcel);
		if (run->state != ACTIVATOR_RUN_DONE)
			run_fail(run, "no SMTP server here for the reversed session");
		return;
	}
	idle_ms = run->conf->idle_timeout_ms ? run->conf->idle_timeout_ms :
		  cfg->atrn_idle_timeout_ms ? cfg->atrn_idle_timeout_ms :
		  CONFIG_ATRN_IDLE_TIMEOUT_DEFAULT_MS;
	snprintf(upstream, sizeof(upstream), "activator %s: %s", run->conf->name, run->relay);
	rc = smtpd_adopt_reversed(run->env->d, run->env->loop, parcel, upstream, idle_ms,
				  run_reversed_done, run);
	if (rc) {
		run_fail(run, "cannot serve the reversed session from %s: %s", run->relay,
			 strerror(-rc));
		return;
	}
	run->adopted = 1;
}

/* ---- the connection -------------------------------------------------------- */

/* The host a certificate must match: the configured name (or address). */
static int run_starttls(struct activator_run *run, struct conn *c)
{
	int rc = run->env->client ? conn_starttls(c, run->env->client, run->conf->host) :
		 -ENOPROTOOPT;

	if (rc)
		return rc;
	activator_run_enter(run, ACTIVATOR_RUN_TLS, "220 to STARTTLS");
	return 0;
}

static void run_close(struct activator_run *run, struct conn *c)
{
	conn_flush(c);
	if (!run->closing) {
		run->closing = 1;
		conn_close(c);
	}
}

/* Arm the reply timer of what the client awaits now. */
static void run_arm(struct activator_run *run, struct conn *c)
{
	unsigned ms = etrn_client_timeout_ms(run->ec);

	if (ms)
		conn_set_timeout(c, ms);
}

/* One event of the client; returns 1 when data() must stop reading. */
static int run_event(struct activator_run *run, struct conn *c, enum etrn_client_event ev)
{
	char why[ACTIVATOR_RUN_WHY_MAX];
	int rc;

	switch (ev) {
	case ETRN_CLIENT_EV_NEED_INPUT:
		conn_flush(c);
		return 1;
	case ETRN_CLIENT_EV_STARTTLS:
		conn_flush(c);
		rc = run_starttls(run, c);
		if (rc) {
			snprintf(why, sizeof(why), "cannot start TLS with %s: %s", run->relay,
				 strerror(-rc));
			(void)etrn_client_tls_reject(run->ec, conn_out(c), why);
			snprintf(run->fail, sizeof(run->fail), "%s", why);
			run_close(run, c);
		}
		return 1; /* nothing after the 220 is read (RFC 3207 5) */
	case ETRN_CLIENT_EV_REVERSE:
		conn_flush(c);
		run->reversed = 1;
		run_replies(run);
		rc = conn_detach(c, run_detached, run);
		if (rc) {
			(void)etrn_client_abort(run->ec, "cannot turn the connection around");
			snprintf(run->fail, sizeof(run->fail), "cannot turn the connection with %s around: %s",
				 run->relay, strerror(-rc));
			run_close(run, c);
			return 1;
		}
		run->c = NULL;
		activator_run_enter(run, ACTIVATOR_RUN_REVERSED, "250 to ATRN");
		return 1;
	case ETRN_CLIENT_EV_CLOSE:
		run_replies(run);
		run_close(run, c);
		return 1;
	}
	return 1;
}

static size_t run_data(void *arg, struct conn *c, void *st, const char *p, size_t n)
{
	struct activator_run *run = st;
	enum etrn_client_event ev;
	size_t off;

	(void)arg;
	if (run->state != ACTIVATOR_RUN_TALKING || run->closing)
		return n; /* closing: nothing more is read */
	off = etrn_client_feed(run->ec, p, n, conn_out(c), &ev);
	run_arm(run, c);
	(void)run_event(run, c, ev);
	if (ev == ETRN_CLIENT_EV_NEED_INPUT)
		return n == 0 ? 0 : off;
	/* STARTTLS, REVERSE: the bytes after the reply line stay unread (the
	 * loop drops them, or keeps them for the next owner). */
	return ev == ETRN_CLIENT_EV_CLOSE ? n : off;
}

static void run_tls_done(void *arg, struct conn *c, void *st, int err)
{
	struct activator_run *run = st;
	const struct tls_info *ti = err ? NULL : conn_tls(c);
	char why[ACTIVATOR_RUN_WHY_MAX];

	(void)arg;
	if (run->state != ACTIVATOR_RUN_TLS)
		return;
	activator_run_enter(run, ACTIVATOR_RUN_TALKING, err ? "TLS handshake failed" : "TLS up");
	if (!ti) {
		/* The loop is closing c: run_closed() follows. */
		snprintf(run->fail, sizeof(run->fail), "TLS handshake with %s failed: %s",
			 run->relay, strerror(err ? -err : EPROTO));
		(void)etrn_client_abort(run->ec, run->fail);
		run->closing = 1;
		return;
	}
	log_info("activator %s: %s TLS connection established to %s: %s with cipher %s",
		 run->conf->name, ti->verified ? "Verified" : "Untrusted", run->relay,
		 ti->version, ti->cipher);
	if (run->conf->tls == CONFIG_ACTIVATOR_TLS_VERIFY && !ti->verified) {
		snprintf(why, sizeof(why), "certificate verification failed for %s: %s",
			 run->conf->host, ti->verify_error && ti->verify_error[0] ?
			 ti->verify_error : "not verified");
		snprintf(run->fail, sizeof(run->fail), "%s", why);
		if (etrn_client_tls_reject(run->ec, conn_out(c), why))
			run_close(run, c);
	} else if (etrn_client_tls_up(run->ec, conn_out(c))) {
		(void)etrn_client_abort(run->ec, "out of memory after the TLS handshake");
		run_close(run, c);
		return;
	}
	conn_flush(c);
	run_arm(run, c);
}

static void run_timeout(void *arg, struct conn *c, void *st)
{
	struct activator_run *run = st;

	(void)arg;
	if (run->closing)
		return;
	snprintf(run->fail, sizeof(run->fail), "timed out waiting for %s", run->relay);
	(void)etrn_client_abort(run->ec, run->fail);
	run_close(run, c);
}

static void run_shutdown(void *arg, struct conn *c, void *st)
{
	(void)arg;
	activator_run_abort(st, "etrnd is shutting down");
	(void)c;
}

static void run_closed(void *arg, struct conn *c, void *st)
{
	struct activator_run *run = st;

	(void)arg;
	(void)c;
	if (!etrn_client_close_reason(run->ec) && !etrn_client_ok(run->ec) && !run->fail[0])
		snprintf(run->fail, sizeof(run->fail), "lost connection with %s", run->relay);
	/* A session that did not close by itself: what was not answered gets
	 * the local reason (a closed one keeps its results). */
	(void)etrn_client_abort(run->ec, run->fail[0] ? run->fail : "connection closed");
	run_replies(run);
	run_end(run, "socket gone");
}

static void run_connect_next(struct activator_run *run);

static void *run_connected(void *arg, struct conn *c, void *cookie, int err)
{
	struct activator_run *run = cookie;

	(void)arg;
	run->connect_pending = 0;
	if (run->state == ACTIVATOR_RUN_DONE)
		return NULL; /* aborted meanwhile: the loop closes c */
	if (err) {
		snprintf(run->fail, sizeof(run->fail), "connect to %s: %s", run->relay,
			 strerror(-err));
		if (run->ai + 1 < run->addrs.n)
			log_info("activator %s: %s; trying the next address", run->conf->name,
				 run->fail);
		if (err == -ESHUTDOWN) {
			run_end(run, "loop stopping");
			return NULL;
		}
		run->ai++;
		run_connect_next(run);
		return NULL;
	}
	run->fail[0] = '\0'; /* an earlier address's failure is history */
	run->c = c;
	activator_run_enter(run, ACTIVATOR_RUN_TALKING, "connected");
	run_arm(run, c);
	return run;
}

static void *run_open_unused(void *arg, struct conn *c, const char *peer)
{
	(void)arg;
	(void)c;
	(void)peer;
	panic("activator connections are never accepted");
}

static const struct conn_ops activator_conn_ops = {
	.open = run_open_unused,
	.data = run_data,
	.timeout = run_timeout,
	.shutdown = run_shutdown,
	.close = run_closed,
	.connected = run_connected,
	.tls_done = run_tls_done,
};

/* Connect to addrs.a[ai], or to the next one when that fails at once;
 * none left: the run failed with the last address's reason. */
static void run_connect_next(struct activator_run *run)
{
	const struct resolver_addr *ad;
	int rc;

	while (run->ai < run->addrs.n) {
		ad = &run->addrs.a[run->ai];
		snprintf(run->relay, sizeof(run->relay), "%s", ad->relay);
		rc = loop_connect(run->env->loop, (const struct sockaddr *)&ad->addr, ad->addrlen,
				  ACTIVATOR_CONNECT_TIMEOUT_MS, &activator_conn_ops, NULL, run);
		if (rc == 0) {
			run->connect_pending = 1;
			if (run->state != ACTIVATOR_RUN_CONNECTING)
				activator_run_enter(run, ACTIVATOR_RUN_CONNECTING, ad->relay);
			return;
		}
		snprintf(run->fail, sizeof(run->fail), "connect to %s: %s", ad->relay,
			 strerror(-rc));
		if (rc == -ESHUTDOWN)
			break;
		run->ai++;
	}
	if (!run->fail[0])
		snprintf(run->fail, sizeof(run->fail), "no address for %s", run->conf->host);
	run_end(run, "no address left");
}

/* ---- resolving --------------------------------------------------------------- */

/* The answer, back on the run's loop. */
static void run_answered(void *arg)
{
	struct activator_run *run = arg;

	run->lookup_pending = 0;
	if (run->state != ACTIVATOR_RUN_RESOLVING)
		return; /* aborted meanwhile: the registry frees it now */
	if (run->addrs.err || run->addrs.n == 0) {
		snprintf(run->fail, sizeof(run->fail), "%s",
			 run->addrs.why[0] ? run->addrs.why : "address look-up failed");
		(void)etrn_client_abort(run->ec, run->fail);
		run_end(run, "look-up failed");
		return;
	}
	run->ai = 0;
	run_connect_next(run);
}

/* On the resolver's thread: keep the answer, post it to the loop. A
 * refused post (the loop has finished) leaves the run pending: the
 * registry frees it with everything else. */
static void run_resolved(void *cookie, const struct resolver_list *res)
{
	struct activator_run *run = cookie;

	memcpy(&run->addrs, res, sizeof(run->addrs));
	(void)loop_post(run->env->loop, run_answered, run);
}

void activator_run_start(struct activator_run *run)
{
	struct resolver_result num;
	int rc;

	log_debug("activator %s: run starts (%s:%u)", run->conf->name, run->conf->host,
		  run->conf->port);
	rc = resolver_numeric(run->conf->host, run->conf->port, &num);
	if (rc == 1) {
		memset(&run->addrs, 0, sizeof(run->addrs));
		run->addrs.n = 1;
		memcpy(&run->addrs.a[0].addr, &num.addr, sizeof(num.addr));
		run->addrs.a[0].addrlen = num.addrlen;
		snprintf(run->addrs.a[0].host, sizeof(run->addrs.a[0].host), "%s", num.host);
		snprintf(run->addrs.a[0].relay, sizeof(run->addrs.a[0].relay), "%s", num.relay);
		run_connect_next(run);
		return;
	}
	/* A/AAAA of the host itself, never its MX (mx 0). */
	rc = rc < 0 ? rc : run->env->r ? resolver_route(run->env->r, run->conf->host,
			run->conf->port, 0, run_resolved, run) : -ENOSYS;
	if (rc) {
		run_fail(run, "cannot look up %s: %s", run->conf->host,
			 rc == -EINVAL && num.why[0] ? num.why : strerror(-rc));
		return;
	}
	run->lookup_pending = 1;
}

void activator_run_abort(struct activator_run *run, const char *why)
{
	struct conn *c = run->c;

	switch (run->state) {
	case ACTIVATOR_RUN_RESOLVING:
		run_fail(run, "%s", why);
		return;
	case ACTIVATOR_RUN_CONNECTING:
		/* DONE now; the connect still completes (connect_pending keeps
		 * the run): run_connected() closes what it gets. */
		run_fail(run, "%s", why);
		return;
	case ACTIVATOR_RUN_TALKING:
	case ACTIVATOR_RUN_TLS:
		if (!run->closing) {
			snprintf(run->fail, sizeof(run->fail), "%s", why);
			(void)etrn_client_abort(run->ec, why);
			run_close(run, c); /* run_closed() ends it */
		}
		return;
	case ACTIVATOR_RUN_REVERSED:
	case ACTIVATOR_RUN_DONE:
	case ACTIVATOR_RUN_NSTATES:
		/* A reversed session ends with the smtpd's shutdown (or the
		 * detach's done gets NULL): its done() ends the run. */
		return;
	}
}
