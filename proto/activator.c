/* SPDX-License-Identifier: MIT */
/*
 * activator: see activator.h. The registry: each activator's copied config,
 * timetable state and last results, and the turn hook on engine thread 0
 * that starts what is due (proto/activator_run.c drives each run's
 * connection). One mutex guards what other threads read or request
 * (status, activators_run, one-shots); the loop thread alone starts,
 * ends and frees runs.
 */
#include "proto/activator.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/datefmt.h"
#include "core/list.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/now.h"
#include "core/timetable.h"
#include "proto/activator_run.h"
#include "proto/drain_status.h"

#define ACTIVATOR_US 1000000u
/* What status shows of the last reply ("253 2.0.0 text"). */
#define ACTIVATOR_REPLY_MAX (ACTIVATOR_RUN_WHY_MAX + ETRN_CLIENT_TEXT_MAX)
#define ACTIVATOR_MEANING_MAX 128
/* A status line's request list. */
#define ACTIVATOR_REQS_MAX (CONFIG_ACTIVATOR_REQUESTS_MAX * CONFIG_ACTIVATOR_REQUEST_MAX)
/* The shown state when no run is going. */
#define ACTIVATOR_IDLE (-1)

struct activator {
	struct list_node node;         /* a->acts */
	struct activators *a;
	struct config_activator conf;  /* copied: a one-shot's spec is gone */
	char sched[TIMETABLE_TEXT_MAX];
	int oneshot;
	/* Loop thread only. */
	struct activator_run *run;     /* the run going, or NULL */
	uint64_t next_us;              /* next timed run; 0 = none */
	uint64_t outbound_us;          /* last after-outbound run started */
	int outbound_due;              /* an after-outbound kick waits for its gap */
	/* Under a->mu. */
	int requested;                 /* activators_run(), or a new one-shot */
	int shown;                     /* enum activator_run_state or IDLE */
	uint64_t runs, failures;
	uint64_t last_us, ended_us;    /* last run's start and end; 0 = none */
	int code;                      /* its reply's code; 0 = none */
	char reply[ACTIVATOR_REPLY_MAX];
	char meaning[ACTIVATOR_MEANING_MAX];
	unsigned received;             /* ATRN: messages of the last session */
	int has_received;
	uint64_t shown_next_us;        /* next_us as status shows it */
};

struct activators {
	const struct config *cfg;
	pthread_mutex_t mu;            /* guards the fields marked above, the
	                                  list's membership, loop, stopping */
	struct list acts;              /* of activator.node */
	unsigned noneshot;             /* listed one-shots */
	unsigned oneshot_seq;
	struct loop *loop;             /* NULL until attached */
	int stopping;
	atomic_int outbound;           /* activators_outbound_done() was called */
	atomic_int woken;              /* a wake-up post is on its way */
	struct activator_run_env env;  /* for runs; set by attach */
	struct list runs;              /* of activator_run.node: loop thread */
};

static uint64_t act_now(void)
{
	return now_shifted_us(0);
}

/* "2026-12-02T10:15:00Z" or "-" (us 0). */
static const char *act_time(uint64_t us, char out[DATEFMT_ISO8601_MAX])
{
	if (!us || datefmt_iso8601(out, DATEFMT_ISO8601_MAX, (time_t)(us / ACTIVATOR_US)))
		snprintf(out, DATEFMT_ISO8601_MAX, "-");
	return out;
}

static struct activator *act_new(struct activators *a, const struct config_activator *conf)
{
	struct activator *act = calloc(1, sizeof(*act));

	if (!act)
		return NULL;
	act->a = a;
	memcpy(&act->conf, conf, sizeof(act->conf));
	(void)timetable_format(&conf->schedule, act->sched, sizeof(act->sched));
	act->shown = ACTIVATOR_IDLE;
	return act;
}

struct activators *activators_new(const struct config *cfg)
{
	struct activators *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->cfg = cfg;
	pthread_mutex_init(&a->mu, NULL);
	for (unsigned i = 0; i < cfg->nactivators; i++) {
		struct activator *act = act_new(a, &cfg->activators[i]);

		if (!act)
			return activators_free(a);
		list_append(&a->acts, &act->node);
	}
	return a;
}

struct activators *activators_free(struct activators *a)
{
	struct list_node *n, *next;

	if (!a)
		return NULL;
	/* Every engine thread and the resolver have finished: a run still
	 * listed (its loop ended first) is touched by nobody. */
	for (n = a->runs.head; n; n = next) {
		next = n->next;
		activator_run_free(LIST_ENTRY(n, struct activator_run, node));
	}
	for (n = a->acts.head; n; n = next) {
		next = n->next;
		free(LIST_ENTRY(n, struct activator, node));
	}
	pthread_mutex_destroy(&a->mu);
	free(a);
	return NULL;
}

/* ---- a run's end ---------------------------------------------------------- */

/* The reply status shows for run: the first request the upstream refused,
 * else the last one answered; the session's close reason when the
 * requests were never answered. Under a->mu. */
static void act_keep_reply(struct activator *act, const struct activator_run *run)
{
	const struct etrn_client *ec = run->ec;
	enum etrn_client_method m = run->ecf.method;
	const struct etrn_client_reply *pick = NULL, *r;

	for (unsigned i = 0; i < etrn_client_nresults(ec); i++) {
		r = etrn_client_result(ec, i);
		if (!r || !r->code || r->local)
			continue;
		if (!pick || etrn_client_success(m, pick->code))
			pick = r;
	}
	act->code = 0;
	act->reply[0] = act->meaning[0] = '\0';
	if (!pick && (r = etrn_client_close_reason(ec)) && r->code && !r->local)
		pick = r;
	if (pick) {
		act->code = pick->code;
		snprintf(act->reply, sizeof(act->reply), "%d%s%s %s", pick->code,
			 pick->enh[0] ? " " : "", pick->enh, pick->text);
		snprintf(act->meaning, sizeof(act->meaning), "%s",
			 etrn_client_meaning(m, pick->code));
	} else if (run->fail[0] || (r = etrn_client_close_reason(ec))) {
		snprintf(act->reply, sizeof(act->reply), "%s", run->fail[0] ? run->fail : r->text);
		snprintf(act->meaning, sizeof(act->meaning), "run failed");
	}
}

/* Whether run did what it was for: every request a success (ATRN: the
 * connection turned around), and nothing failed locally before that. */
static int run_ok(const struct activator_run *run)
{
	if (run->reversed)
		return 1;
	return !run->fail[0] && etrn_client_ok(run->ec);
}

/* Why a failed run failed, for its end line. */
static void run_why(const struct activator_run *run, char *out, size_t n)
{
	const struct etrn_client_reply *r = etrn_client_close_reason(run->ec);
	unsigned refused = 0, total = etrn_client_nresults(run->ec);

	if (run->fail[0]) {
		snprintf(out, n, "%s", run->fail);
		return;
	}
	for (unsigned i = 0; i < total; i++) {
		const struct etrn_client_reply *q = etrn_client_result(run->ec, i);

		if (q && q->code && !etrn_client_success(run->ecf.method, q->code))
			refused++;
	}
	/* A long reply text is cut to fit the line (n): that is the intent;
	 * only a failed format leaves the line empty. */
	if (r && r->code && !refused) {
		if (snprintf(out, n, "%s%d %s %s (%s)", r->local ? "" : "upstream said ",
			     r->code, r->enh, r->text, run->relay) < 0)
			out[0] = '\0';
	} else
		snprintf(out, n, "%u of %u request(s) refused by %s", refused, total, run->relay);
}

/* ENDED: the end line, the counters, the next run (timetable_next() of
 * now: a failed run is retried at the next scheduled time only). */
static void act_run_ended(struct activator *act, struct activator_run *run)
{
	struct activators *a = act->a;
	uint64_t now = act_now();
	int ok = run_ok(run);
	char why[ACTIVATOR_RUN_WHY_MAX + 64], next[DATEFMT_ISO8601_MAX];

	act->next_us = act->oneshot ? 0 : timetable_next(&act->conf.schedule, now);
	act->run = NULL;
	pthread_mutex_lock(&a->mu);
	act->shown = ACTIVATOR_IDLE;
	act->ended_us = now;
	act->failures += !ok;
	act_keep_reply(act, run);
	if (run->reversed) {
		act->received = run->received;
		act->has_received = 1;
	}
	act->shown_next_us = act->next_us;
	pthread_mutex_unlock(&a->mu);
	(void)act_time(act->next_us, next);
	if (run->reversed) {
		log_info("activator %s: reversed session ended: %u message(s) received (%s); next run %s",
			 act->conf.name, run->received, run->rev_why[0] ? run->rev_why : "ended",
			 act->next_us ? next : act->oneshot ? "none (one-shot)" : "after outbound mail");
		return;
	}
	if (ok)
		snprintf(why, sizeof(why), "run done: %u request(s) accepted by %s",
			 etrn_client_nresults(run->ec), run->relay);
	else {
		snprintf(why, sizeof(why), "run failed: ");
		run_why(run, why + strlen(why), sizeof(why) - strlen(why));
	}
	log_msg(ok ? LOGL_INFO : LOGL_WARN, "activator %s: %s; next run %s", act->conf.name, why,
		act->next_us ? next : act->oneshot ? "none (one-shot)" : "after outbound mail");
}

static void act_run_event(void *arg, struct activator_run *run, enum activator_run_event ev)
{
	struct activator *act = arg;

	if (ev == ACTIVATOR_RUN_ENDED) {
		act_run_ended(act, run);
		return;
	}
	/* REPLIES: status knows the answer before the run ends (ATRN's
	 * reversed session may last minutes; etrnctl polls for it). */
	pthread_mutex_lock(&act->a->mu);
	act_keep_reply(act, run);
	pthread_mutex_unlock(&act->a->mu);
}

/* ---- the turn hook -------------------------------------------------------- */

static void act_start(struct activator *act, const char *why, uint64_t now)
{
	struct activators *a = act->a;
	struct activator_run *run;

	run = activator_run_new(&a->env, &act->conf, &act->shown, act_run_event, act);
	if (!run) {
		log_err("activator %s: out of memory; the run is skipped", act->conf.name);
		act->next_us = act->oneshot ? 0 : timetable_next(&act->conf.schedule, now);
		return;
	}
	log_info("activator %s: run starts (%s): %s %s:%u", act->conf.name, why,
		 act->conf.method == CONFIG_ACTIVATOR_ATRN ? "ATRN" : "ETRN", act->conf.host,
		 act->conf.port);
	list_append(&a->runs, &run->node);
	act->run = run;
	/* The scheduled time after this start: one passing while the run
	 * still goes is skipped (act_due()); the run's end sets it again. */
	act->next_us = act->oneshot ? 0 : timetable_next(&act->conf.schedule, now);
	pthread_mutex_lock(&a->mu);
	act->shown = ACTIVATOR_RUN_RESOLVING;
	act->runs++;
	act->last_us = now;
	act->shown_next_us = act->next_us;
	pthread_mutex_unlock(&a->mu);
	activator_run_start(run);
}

/* Why act is due now (NULL: it is not); clears what it consumes. */
static const char *act_due(struct activator *act, int requested, int outbound, uint64_t now)
{
	const char *why = NULL;

	if (outbound && timetable_after_outbound(&act->conf.schedule))
		act->outbound_due = 1;
	if (requested)
		why = "requested";
	else if (act->next_us && act->next_us <= now)
		why = "scheduled";
	else if (act->outbound_due &&
		 now >= act->outbound_us + (uint64_t)ACTIVATOR_AFTER_OUTBOUND_GAP_S * ACTIVATOR_US)
		why = "after outbound mail";
	if (!why)
		return NULL;
	if (act->run) {
		/* Skipped, not queued: the next time is the timetable's. */
		log_warn("activator %s: skipped (%s): the previous run is still going",
			 act->conf.name, why);
		act->outbound_due = 0;
		if (act->next_us && act->next_us <= now) {
			act->next_us = timetable_next(&act->conf.schedule, now);
			act->shown_next_us = act->next_us;
		}
		return NULL;
	}
	if (act->outbound_due && !strcmp(why, "after outbound mail")) {
		act->outbound_due = 0;
		act->outbound_us = now;
	}
	return why;
}

/* 1 when a run not yet freed still names act. */
static int act_referenced(const struct activators *a, const struct activator *act)
{
	const struct list_node *n;

	LIST_FOREACH(n, &a->runs)
		if (LIST_ENTRY(n, struct activator_run, node)->arg == act)
			return 1;
	return 0;
}

/* Free the runs that are over; drop one-shots kept long enough. */
static void act_sweep(struct activators *a, uint64_t now)
{
	struct list_node *n, *next;

	for (n = a->runs.head; n; n = next) {
		struct activator_run *run = LIST_ENTRY(n, struct activator_run, node);

		next = n->next;
		if (activator_run_collectable(run)) {
			list_unlink(&a->runs, n);
			activator_run_free(run);
		}
	}
	pthread_mutex_lock(&a->mu);
	for (n = a->acts.head; n; n = next) {
		struct activator *act = LIST_ENTRY(n, struct activator, node);

		next = n->next;
		if (act->oneshot && !act->run && !act->requested && act->ended_us &&
		    now >= act->ended_us + (uint64_t)ACTIVATOR_ONESHOT_KEEP_S * ACTIVATOR_US &&
		    !act_referenced(a, act)) {
			list_unlink(&a->acts, n);
			a->noneshot--;
			free(act);
		}
	}
	pthread_mutex_unlock(&a->mu);
}

/* Each turn (and at least once a second): start what is due. The due
 * ones are picked under the mutex, then started without it (a run may
 * end inside its start and take the mutex itself). */
static void activators_tick(void *arg)
{
	struct activators *a = arg;
	struct activator *due[CONFIG_ACTIVATORS_MAX + ACTIVATOR_ONESHOT_MAX];
	const char *why[CONFIG_ACTIVATORS_MAX + ACTIVATOR_ONESHOT_MAX];
	unsigned ndue = 0;
	uint64_t now = act_now();
	int outbound = atomic_exchange(&a->outbound, 0);
	struct list_node *n;

	atomic_store(&a->woken, 0);
	act_sweep(a, now);
	pthread_mutex_lock(&a->mu);
	if (a->stopping) {
		pthread_mutex_unlock(&a->mu);
		return;
	}
	LIST_FOREACH(n, &a->acts) {
		struct activator *act = LIST_ENTRY(n, struct activator, node);
		int requested = act->requested;

		act->requested = 0;
		if (ndue < sizeof(due) / sizeof(due[0]) &&
		    (why[ndue] = act_due(act, requested, outbound, now)))
			due[ndue++] = act;
	}
	pthread_mutex_unlock(&a->mu);
	for (unsigned i = 0; i < ndue; i++)
		act_start(due[i], why[i], now);
}

/* A wake-up from another thread: the tick runs after this post. */
static void activators_wake(void *arg)
{
	(void)arg;
}

/* Make loop 0 turn soon (a post wakes it; the tick follows in that
 * turn). At most one wake-up on its way at a time. Under a->mu or not. */
static int activators_kick(struct activators *a, struct loop *l)
{
	int rc;

	if (atomic_exchange(&a->woken, 1))
		return 0;
	rc = loop_post(l, activators_wake, a);
	if (rc)
		atomic_store(&a->woken, 0);
	/* -ENOMEM: the flag waits for the next tick (at most a second). */
	return rc == -ESHUTDOWN ? rc : 0;
}

/* The loop stops: no new run; ongoing ones are aborted (logged). */
static void activators_stop(void *arg)
{
	struct activators *a = arg;
	struct activator *going[CONFIG_ACTIVATORS_MAX + ACTIVATOR_ONESHOT_MAX];
	unsigned ngoing = 0;
	struct list_node *n;

	/* Picked under the mutex (one-shots join the list from other
	 * threads), aborted without it (a run's end takes it). */
	pthread_mutex_lock(&a->mu);
	a->stopping = 1;
	LIST_FOREACH(n, &a->acts) {
		struct activator *act = LIST_ENTRY(n, struct activator, node);

		if (act->run && ngoing < sizeof(going) / sizeof(going[0]))
			going[ngoing++] = act;
	}
	pthread_mutex_unlock(&a->mu);
	for (unsigned i = 0; i < ngoing; i++) {
		log_info("activator %s: run aborted: etrnd is stopping", going[i]->conf.name);
		activator_run_abort(going[i]->run, "etrnd is shutting down");
	}
}

/* Busy until every run's connection is gone. */
static int activators_busy(void *arg)
{
	struct activators *a = arg;
	const struct list_node *n;

	LIST_FOREACH(n, &a->runs)
		if (activator_run_busy(LIST_ENTRY(n, struct activator_run, node)))
			return 1;
	return 0;
}

/* At start: an activator whose time rule is active runs at once (the
 * customer wants what waited while it was down), else at its next time. */
static void activators_first_times(struct activators *a, uint64_t now)
{
	struct list_node *n;

	LIST_FOREACH(n, &a->acts) {
		struct activator *act = LIST_ENTRY(n, struct activator, node);
		const struct timetable *t = &act->conf.schedule;

		if (act->oneshot || !timetable_timed(t))
			continue;
		act->next_us = timetable_active(t, now) ? now : timetable_next(t, now);
		pthread_mutex_lock(&a->mu);
		act->shown_next_us = act->next_us;
		pthread_mutex_unlock(&a->mu);
	}
}

int activators_attach(struct activators *a, struct loop *l, struct smtpd *d,
		      struct resolver *r, struct tls_ctx *client)
{
	int rc;

	a->env = (struct activator_run_env){ .cfg = a->cfg, .loop = l, .d = d, .r = r,
					     .client = client, .mu = &a->mu };
	rc = loop_add_turn_hook(l, LOOP_TURN_QUEUE, "activators", activators_tick, a);
	if (!rc)
		rc = loop_add_stop_hook(l, "activators", activators_stop, a);
	if (!rc)
		rc = loop_add_busy_check(l, "activators", activators_busy, a);
	if (rc)
		return rc;
	activators_first_times(a, act_now());
	pthread_mutex_lock(&a->mu);
	a->loop = l;
	pthread_mutex_unlock(&a->mu);
	return 0;
}

void activators_outbound_done(struct activators *a)
{
	struct loop *l;

	if (!a || atomic_exchange(&a->outbound, 1))
		return; /* already told: the flag waits for the tick */
	pthread_mutex_lock(&a->mu);
	l = a->stopping ? NULL : a->loop;
	pthread_mutex_unlock(&a->mu);
	if (l)
		(void)activators_kick(a, l);
}

/* The activator called name; under a->mu. */
static struct activator *act_find(struct activators *a, const char *name)
{
	struct list_node *n;

	LIST_FOREACH(n, &a->acts) {
		struct activator *act = LIST_ENTRY(n, struct activator, node);

		if (!strcmp(act->conf.name, name))
			return act;
	}
	return NULL;
}

int activators_run(struct activators *a, const char *name)
{
	struct activator *act;
	struct loop *l = NULL;
	int rc = 0;

	pthread_mutex_lock(&a->mu);
	act = act_find(a, name);
	if (!act)
		rc = -ENOENT;
	else if (!a->loop || a->stopping)
		rc = -ESHUTDOWN;
	else if (act->shown != ACTIVATOR_IDLE || act->requested)
		rc = -EBUSY;
	else {
		act->requested = 1;
		l = a->loop;
	}
	pthread_mutex_unlock(&a->mu);
	return l ? activators_kick(a, l) : rc;
}

int activators_oneshot(struct activators *a, const struct config_activator *spec,
		       char *name, size_t namelen)
{
	struct activator *act;
	struct loop *l;
	int rc = 0;

	act = act_new(a, spec);
	if (!act)
		return -ENOMEM;
	act->oneshot = 1;
	act->requested = 1;
	pthread_mutex_lock(&a->mu);
	l = a->stopping ? NULL : a->loop;
	if (!l)
		rc = -ESHUTDOWN;
	else if (a->noneshot >= ACTIVATOR_ONESHOT_MAX)
		rc = -ENOSPC;
	else {
		snprintf(act->conf.name, sizeof(act->conf.name), "oneshot-%u", ++a->oneshot_seq);
		snprintf(name, namelen, "%s", act->conf.name);
		list_append(&a->acts, &act->node);
		a->noneshot++;
		log_info("activator %s: one-shot %s to %s:%u", act->conf.name,
			 spec->method == CONFIG_ACTIVATOR_ATRN ? "ATRN" : "ETRN", spec->host,
			 spec->port);
	}
	pthread_mutex_unlock(&a->mu);
	if (rc) {
		free(act);
		return rc;
	}
	return activators_kick(a, l) == -ESHUTDOWN ? -ESHUTDOWN : 0;
}

/* ---- status ---------------------------------------------------------------- */

/* "host:port", the v6 host in brackets. */
static void act_hostport(const struct config_activator *c, char *out, size_t n)
{
	snprintf(out, n, strchr(c->host, ':') ? "[%s]:%u" : "%s:%u", c->host, c->port);
}

/* Reply text inside a quoted status field: printable, no '"'. */
static void act_put_quoted(struct buf *out, const char *s)
{
	(void)buf_puts(out, "\"");
	for (; *s; s++) {
		char q = *s == '"' || (unsigned char)*s < 0x20 || *s == 0x7f ? '\'' : *s;

		(void)buf_append(out, &q, 1);
	}
	(void)buf_puts(out, "\"");
}

static void act_status_text(const struct activator *act, struct buf *out)
{
	char hp[CONFIG_HOSTNAME_MAX + 16], reqs[ACTIVATOR_REQS_MAX];
	char last[DATEFMT_ISO8601_MAX], next[DATEFMT_ISO8601_MAX];

	act_hostport(&act->conf, hp, sizeof(hp));
	activator_run_requests(&act->conf, reqs, sizeof(reqs));
	(void)buf_printf(out, "%s method=%s host=%s request=%s schedule=", act->conf.name,
			 act->conf.method == CONFIG_ACTIVATOR_ATRN ? "atrn" : "etrn", hp,
			 reqs[0] ? reqs : "-");
	act_put_quoted(out, act->oneshot ? "one-shot" : act->sched);
	(void)buf_printf(out, " state=%s runs=%" PRIu64 " failures=%" PRIu64 " last=%s reply=",
			 act->shown == ACTIVATOR_IDLE ? "idle" :
			 activator_run_state_name((enum activator_run_state)act->shown),
			 act->runs, act->failures, act_time(act->last_us, last));
	act_put_quoted(out, act->reply);
	(void)buf_puts(out, " meaning=");
	act_put_quoted(out, act->meaning);
	(void)buf_printf(out, " next=%s", act_time(act->shown_next_us, next));
	if (act->conf.method == CONFIG_ACTIVATOR_ATRN && act->has_received)
		(void)buf_printf(out, " received=%u", act->received);
	(void)buf_puts(out, "\n");
}

/* A JSON field: an epoch time, or null for 0. */
static void act_json_time(struct buf *out, const char *key, uint64_t us)
{
	if (us)
		(void)buf_printf(out, ",\"%s\":%" PRIu64, key, us / ACTIVATOR_US);
	else
		(void)buf_printf(out, ",\"%s\":null", key);
}

static void act_json_str(struct buf *out, const char *key, const char *s, int null_if_empty)
{
	(void)buf_printf(out, ",\"%s\":", key);
	if (null_if_empty && !s[0])
		(void)buf_puts(out, "null");
	else
		drain_status_json_str(out, s, strlen(s));
}

static void act_status_json(const struct activator *act, struct buf *out)
{
	char hp[CONFIG_HOSTNAME_MAX + 16], reqs[ACTIVATOR_REQS_MAX];

	act_hostport(&act->conf, hp, sizeof(hp));
	activator_run_requests(&act->conf, reqs, sizeof(reqs));
	(void)buf_puts(out, "{\"name\":");
	drain_status_json_str(out, act->conf.name, strlen(act->conf.name));
	act_json_str(out, "method", act->conf.method == CONFIG_ACTIVATOR_ATRN ? "atrn" : "etrn", 0);
	act_json_str(out, "host", hp, 0);
	act_json_str(out, "request", reqs, 0);
	act_json_str(out, "schedule", act->oneshot ? "one-shot" : act->sched, 0);
	act_json_str(out, "state", act->shown == ACTIVATOR_IDLE ? "idle" :
		     activator_run_state_name((enum activator_run_state)act->shown), 0);
	(void)buf_printf(out, ",\"oneshot\":%s,\"runs\":%" PRIu64 ",\"failures\":%" PRIu64,
			 act->oneshot ? "true" : "false", act->runs, act->failures);
	act_json_time(out, "last", act->last_us);
	act_json_time(out, "ended", act->ended_us);
	if (act->code)
		(void)buf_printf(out, ",\"code\":%d", act->code);
	else
		(void)buf_puts(out, ",\"code\":null");
	act_json_str(out, "reply", act->reply, 1);
	act_json_str(out, "meaning", act->meaning, 1);
	act_json_time(out, "next", act->shown_next_us);
	if (act->conf.method == CONFIG_ACTIVATOR_ATRN) {
		if (act->has_received)
			(void)buf_printf(out, ",\"received\":%u", act->received);
		else
			(void)buf_puts(out, ",\"received\":null");
	}
	(void)buf_puts(out, "}");
}

int activators_status(struct activators *a, const char *name, struct buf *out, int json)
{
	struct list_node *n;
	unsigned shown = 0;

	pthread_mutex_lock(&a->mu);
	if (name && !act_find(a, name)) {
		pthread_mutex_unlock(&a->mu);
		return -ENOENT;
	}
	if (json)
		(void)buf_puts(out, "[");
	LIST_FOREACH(n, &a->acts) {
		const struct activator *act = LIST_ENTRY(n, struct activator, node);

		if (name && strcmp(act->conf.name, name))
			continue;
		if (json && shown)
			(void)buf_puts(out, ",");
		if (json)
			act_status_json(act, out);
		else
			act_status_text(act, out);
		shown++;
	}
	pthread_mutex_unlock(&a->mu);
	if (json)
		(void)buf_puts(out, "]\n");
	return 0;
}
