/* SPDX-License-Identifier: MIT */
/*
 * activator_run: one run of an activator (proto/activator.h), private to
 * proto/activator.c (the registry, which starts runs and keeps their
 * results) and proto/activator_run.c (the run's one outbound connection).
 * Everything here happens on the registry's engine loop (thread 0), except
 * the resolver's answer, which is posted back to it.
 */
#ifndef ETRND_PROTO_ACTIVATOR_RUN_H
#define ETRND_PROTO_ACTIVATOR_RUN_H

#include <pthread.h>
#include <stdint.h>

#include "core/config.h"
#include "core/list.h"
#include "core/resolver.h"
#include "proto/etrn_client.h"

/* Why a run failed outside the upstream's replies ("connect to
 * h[ip]:25: Connection refused"), and how a reversed session ended. */
#define ACTIVATOR_RUN_WHY_MAX 512
#define ACTIVATOR_RUN_REV_WHY_MAX 64

/*
 * A run's life, one logged transition each (activator_run_enter()):
 *   RESOLVING (numeric: at once; a name: the resolver's A/AAAA) ->
 *   CONNECTING (each address in order while connects fail) ->
 *   TALKING (etrn_client: greeting, EHLO, AUTH, requests, QUIT) <->
 *   TLS (the STARTTLS handshake) -> [REVERSED: ATRN's 250; the socket is
 *   detached and served by the smtpd] -> DONE.
 * Any state may go to DONE (failure, abort). DONE is final.
 */
enum activator_run_state {
	ACTIVATOR_RUN_RESOLVING = 0,
	ACTIVATOR_RUN_CONNECTING,
	ACTIVATOR_RUN_TALKING,
	ACTIVATOR_RUN_TLS,
	ACTIVATOR_RUN_REVERSED,
	ACTIVATOR_RUN_DONE,
	ACTIVATOR_RUN_NSTATES
};

/* Lower-case state name, for status ("resolving", ...). */
const char *activator_run_state_name(enum activator_run_state s);

/* What runs need from the registry; set by activators_attach() and
 * unchanged afterwards. */
struct activator_run_env {
	const struct config *cfg;
	struct loop *loop;
	struct smtpd *d;               /* NULL: ATRN's reversal is refused */
	struct resolver *r;
	struct tls_ctx *client;        /* NULL: STARTTLS cannot start */
	pthread_mutex_t *mu;           /* guards each run's *shown */
};

enum activator_run_event {
	ACTIVATOR_RUN_REPLIES,         /* the requests were answered (ETRN's
	                                  session closed, ATRN's 250 came): the
	                                  results are final */
	ACTIVATOR_RUN_ENDED,           /* DONE: no connection left */
};

struct activator_run;
/* Called on the loop, once per event (REPLIES at most once, before ENDED;
 * ENDED exactly once per started run). Must not free the run. */
typedef void (*activator_run_fn)(void *arg, struct activator_run *run,
		enum activator_run_event ev);

struct activator_run {
	struct list_node node;         /* the registry's list of runs */
	const struct activator_run_env *env;
	const struct config_activator *conf; /* the activator's; outlives run */
	enum activator_run_state state;
	int *shown;                    /* the state status shows (under env->mu) */
	activator_run_fn fn;
	void *arg;
	struct etrn_client_conf ecf;
	const char *req[ETRN_CLIENT_REQUESTS_MAX];
	struct etrn_client *ec;
	struct conn *c;                /* TALKING, TLS */
	struct resolver_list addrs;    /* written by the resolver's callback */
	unsigned ai;                   /* addrs.a[ai] is tried */
	int lookup_pending;            /* the resolver owes an answer */
	int connect_pending;           /* the loop owes ops->connected() */
	int closing;                   /* conn_close() called */
	int adopted;                   /* the smtpd serves the reversed session */
	int reversed;                  /* ATRN got its 250 */
	int replied;                   /* REPLIES told */
	unsigned received;             /* messages of the reversed session */
	char rev_why[ACTIVATOR_RUN_REV_WHY_MAX];
	char fail[ACTIVATOR_RUN_WHY_MAX]; /* "" or why it failed */
	char relay[RESOLVER_RELAY_MAX];   /* "host[ip]:port" tried last */
};

/* A run of conf (not started). NULL when out of memory. */
struct activator_run *activator_run_new(const struct activator_run_env *env,
		const struct config_activator *conf, int *shown,
		activator_run_fn fn, void *arg);

/* Start it: resolve, connect, talk. Events follow, ENDED last (possibly
 * from inside this call, when it fails at once). */
void activator_run_start(struct activator_run *run);

/* Stopping: end the run now (an open connection is closed, a reversed
 * session ends with the smtpd's own shutdown). */
void activator_run_abort(struct activator_run *run, const char *why);

/* 1 while a connection, a connect, a detach or a reversed session of run
 * is still going (the loop must not finish). */
int activator_run_busy(const struct activator_run *run);

/* 1 once run can be freed: DONE and no resolver answer owed. */
int activator_run_collectable(const struct activator_run *run);

/* Free (NULL fine). Only when collectable, or once no thread can touch
 * it any more (the loop has finished and the resolver was freed). */
void activator_run_free(struct activator_run *run);

/* The request list as sent ("a.test,@b.test"; "" for ATRN's all). */
void activator_run_requests(const struct config_activator *conf, char *out, size_t outlen);

#endif
