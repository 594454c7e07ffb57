/* SPDX-License-Identifier: MIT */
/*
 * engine_fixture: one real engine thread for in-process tests of the drain
 * and expiry: a core/loop on its own thread, a real spool shard in a
 * temporary directory, the published domain table, the node-wide counters,
 * a resolver and a drain hub, wired as admin/etrnd.c wires them. Built on
 * the public headers only. Not thread-safe: one test thread drives one
 * fixture.
 */
#ifndef ETRND_TESTS_ENGINE_FIXTURE_H
#define ETRND_TESTS_ENGINE_FIXTURE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core/domtab.h"
#include "core/config.h"
#include "core/loop.h"
#include "proto/drain.h"
#include "proto/expire.h"
#include "proto/sched.h"
#include "store/spool.h"

#define ENGINE_FIXTURE_HOSTNAME "relay.test"   /* our EHLO and Reporting-MTA */
#define ENGINE_FIXTURE_WAIT_MS 15000           /* generous bound of any wait */
#define ENGINE_FIXTURE_ERR_MAX 512

struct domstat;
struct epoch;
struct resolver;

/* Fields are read by tests; only the fixture writes them. */
struct engine_fixture {
	char dir[64];                  /* the spool_dir (removed by _fini) */
	struct config cfg;
	struct epoch *ep;
	struct domtab_live *dt;
	/* New at every start (a restart's recovery counts held mail again). */
	struct domstat *ds;
	/* The process's resolver, as cfg's dns_servers and dns_timeout say
	 * (set them between _init and _start). */
	struct resolver *resolver;
	struct drain_hub *hub;
	/* The engine thread's, valid while running; touch them only from a
	 * function given to engine_fixture_call(). */
	pthread_t thread;
	struct loop *loop;
	struct spool_shard *sh;
	struct drain *drain;
	struct expire *expire;         /* NULL until engine_fixture_expire_start */
	/* Set with_sched between _init and _start: the thread's outbound
	 * scheduler (proto/sched.h) is made after the drainer, before the
	 * loop runs, as admin/engine.c does; sched is NULL otherwise. */
	int with_sched;
	struct sched *sched;
	/* Set between _init and _start (NULL: none): run on the engine
	 * thread once its parts are made, before loop_run(), the place to
	 * register a module's hooks as admin/engine.c does (activators).
	 * Nonzero fails the start. */
	int (*setup)(struct engine_fixture *f, void *arg);
	void *setup_arg;
	int running;
	/* Inspection (engine_fixture_reopen): a shard opened by recovery on
	 * the test thread, its loop never run. */
	struct loop *ins_loop;
	struct spool_shard *ins_sh;
	/* start-up handshake */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int state;
	char err[ENGINE_FIXTURE_ERR_MAX];
};

/* A domain table with one plain row, name (held, default fields), for
 * engine_fixture_init(). NULL when out of memory. */
struct domtab *engine_fixture_table_of(const char *name);

/* A temporary spool directory and config (hostname ENGINE_FIXTURE_HOSTNAME,
 * no listeners, one engine thread, drain_connections 1), and table as the
 * published domain table (taken over; NULL = empty). 0 or -errno. */
int engine_fixture_init(struct engine_fixture *f, struct domtab *table);

/* Start the engine thread: loop, shard (recovering what the directory
 * holds), drainer. Returns 0, or -1 with f->err set. */
int engine_fixture_start(struct engine_fixture *f);

/* Stop the loop (it finishes every commit in flight), join the thread, free
 * the engine's parts. The spool directory stays. NULL-safe, idempotent. */
void engine_fixture_stop(struct engine_fixture *f);

/* Stop, close any inspection shard, free everything, remove the directory. */
void engine_fixture_fini(struct engine_fixture *f);

/* Run fn(arg) on the engine thread and wait for it (at most timeout_ms).
 * Returns 0, or -ETIMEDOUT (fn may still run later: arg must then stay
 * valid; the test should fail at once). */
typedef void (*engine_fixture_fn)(void *arg);
int engine_fixture_call(struct engine_fixture *f, engine_fixture_fn fn, void *arg,
		unsigned timeout_ms);

/* Evaluate pred(f, arg) on the engine thread until it returns 1 (between
 * polls the test thread naps briefly: the nap is no assertion). Returns 0,
 * or -ETIMEDOUT after timeout_ms. */
typedef int (*engine_fixture_pred)(struct engine_fixture *f, void *arg);
int engine_fixture_wait(struct engine_fixture *f, engine_fixture_pred pred, void *arg,
		unsigned timeout_ms);

/* Append a message (sender "" = null sender; body in spool form: CRLF,
 * dot-stuffed, no final dot) on the engine thread and wait until it is
 * durable. Returns its message id, 0 on failure. */
uint64_t engine_fixture_append(struct engine_fixture *f, const char *sender,
		const char *const *rcpt, unsigned nrcpt, const char *body);
/* The same with the MSG header flags (SPOOL_MSG_*, e.g. SPOOL_MSG_HELD). */
uint64_t engine_fixture_append_flags(struct engine_fixture *f, const char *sender,
		const char *const *rcpt, unsigned nrcpt, const char *body, uint16_t flags);

/* Answer ETRN node as client would get it (drain_etrn on the engine thread),
 * or the operator's flush (client NULL: drain_hub_flush). The reply goes to
 * reply (NUL-terminated, cut to replylen). Returns 0 or -ETIMEDOUT. */
int engine_fixture_etrn(struct engine_fixture *f, const char *client, const char *node,
		char *reply, size_t replylen);

/* Wait until the drainer has no job and no connection; the request was
 * posted before this is called (engine_fixture_etrn), so it is in the
 * loop's post queue ahead of the first probe. 0 or -ETIMEDOUT. */
int engine_fixture_drain_idle(struct engine_fixture *f, unsigned timeout_ms);

/* Wait until at least n records (MSG, DONE, NOTE) have been made durable
 * in the shard since it was opened (spool_shard_stats). 0 or -ETIMEDOUT. */
int engine_fixture_wait_records(struct engine_fixture *f, uint64_t n, unsigned timeout_ms);

/* Create the shard's expiry with conf (hostname defaulted) on the engine
 * thread; from then on every loop turn ticks it, before the group commit,
 * as proto/smtpd.c does. conf->hold NULL: each domain's max_hold from the
 * domain table, as the daemon does. 0 or -errno. */
int engine_fixture_expire_start(struct engine_fixture *f, const struct expire_conf *conf);

/* Wait until expiry is quiet: not busy, nothing expired and no record made
 * durable over several turns in a row. *count gets expire_count(). */
int engine_fixture_expire_settle(struct engine_fixture *f, uint64_t *count,
		unsigned timeout_ms);

/* After engine_fixture_stop(): open the shard again on the test thread, so
 * that recovery rebuilds its index from what is on disk. Returns the index
 * (valid until engine_fixture_fini or the next start), NULL with f->err. */
struct spool_index *engine_fixture_reopen(struct engine_fixture *f);

/* A stored message read back through the reopened shard (heap copies). */
struct engine_fixture_msg {
	char *sender;
	unsigned nrcpt;
	char **rcpt;
	char *body;                    /* NUL-terminated copy */
	size_t body_len;
	uint64_t time_us;
};
int engine_fixture_read(struct engine_fixture *f, uint64_t msgid,
		struct engine_fixture_msg *m);
void engine_fixture_msg_free(struct engine_fixture_msg *m);

/* The recipient states of msgid in idx as a string, one letter a recipient
 * in record order: 'D' delivered, 'B' bounced, 'E' expired, 'P' pending;
 * "" when the message is finished (no longer indexed) or has more than
 * outlen - 1 recipients. */
void engine_fixture_states(struct spool_index *idx, uint64_t msgid, char *out,
		size_t outlen);

/* Check the DSN msgid in the reopened shard: from the null sender to to
 * alone, its text holding every line of want (NULL-terminated). Returns 0,
 * or -1 with why (NUL-terminated) saying what is wrong. */
int engine_fixture_dsn_check(struct engine_fixture *f, uint64_t msgid, const char *to,
		const char *const *want, char *why, size_t whylen);

/* The ids of the messages queued for domain in the reopened shard, in
 * arrival order, up to max. Returns how many. */
size_t engine_fixture_queue_ids(struct engine_fixture *f, const char *domain,
		uint64_t *ids, size_t max);

/* Connection ops for a loop that accepts nothing (every callback a
 * no-op): for tests that need a loop but no sessions. */
struct conn_ops;
const struct conn_ops *engine_fixture_no_ops(void);

#endif
