/* SPDX-License-Identifier: MIT */
/*
 * sched_job: one delivery job of the outbound scheduler (proto/sched.h), and
 * the scheduler's state that proto/sched.c and proto/sched_job.c share.
 * Private to those two files. A job takes some due entries of one domain,
 * routes them (proto/route.h), hands them to the drainer (drain_outbound)
 * one address at a time, and defers, or (permanent routing failure) bounces,
 * what is still pending when it ends. Everything here lives on the engine
 * thread that owns the scheduler, except a job in ROUTING (see below).
 */
#ifndef ETRND_PROTO_SCHED_JOB_H
#define ETRND_PROTO_SCHED_JOB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/buf.h"
#include "core/htab.h"
#include "core/list.h"
#include "proto/drain_resolve.h"
#include "proto/route.h"
#include "proto/sched.h"

/* Jobs in flight per domain: enough for a finished job's connection to move
 * on to the next one instead of QUITting, few enough to leave connections
 * to other domains of the same destination. */
#define SCHED_JOBS_PER_DOMAIN 3
/* Entries per job at most (a job's msgs array, allocated per job), and at
 * least for a domain's second and later jobs in flight. */
#define SCHED_BATCH_MAX 256
#define SCHED_BATCH_MIN 64
/* Scheduled domains with mail known per thread (for serving and for
 * etrnctl status); past it the one idle longest is forgotten until the
 * next full walk of the queues finds it again. */
#define SCHED_DOMAINS_MAX 4096
/* Addresses kept in the dead-destination cache per thread; past it the
 * entry that ends soonest goes. */
#define SCHED_DEAD_MAX 64
/* A route or relayhost as written, or a domain. */
#define SCHED_TARGET_MAX (CONFIG_RELAYHOST_MAX > RESOLVER_NAME_MAX ? \
			  CONFIG_RELAYHOST_MAX : RESOLVER_NAME_MAX)

/* One scheduled domain with mail on this shard. */
struct sched_dom {
	struct list_node ready_node;   /* s->ready while ready */
	int ready;
	uint32_t hash;                 /* of dom, for the index */
	uint32_t el;                   /* its place in s->doms */
	unsigned jobs;                 /* in flight, ROUTING included */
	unsigned fresh;                /* new entries since its last walk, at
	                                  most SCHED_BATCH_MIN (= walk it) */
	uint64_t next_us;              /* earliest known deferred entry; 0 = none */
	uint64_t touched_us;           /* last job started (eviction order) */
	uint64_t deferrals;            /* this run */
	size_t len;
	char dom[DRAIN_DOMAIN_MAX];    /* lower case */
	char relay[RESOLVER_RELAY_MAX];/* last address tried */
	char why[SCHED_STATUS_WHY_MAX];/* last error */
};

/* An address that failed every connection recently. */
struct sched_dead {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	uint64_t until_us;
	char why[SCHED_STATUS_WHY_MAX];
};

struct sched {
	const struct config *cfg;
	const struct domtab_live *dt;
	struct resolver *resolver;
	struct drain *drain;
	struct drain_hub *hub;         /* for resolver answers (drain_hub_post) */
	struct loop *loop;
	unsigned index;                /* the engine thread's, for logs */
	struct spool_shard *sh;
	struct spool_index *idx;
	int stopping;
	uint64_t stop_deadline_ms;     /* monotonic: stop + shutdown_timeout */
	unsigned lookups;              /* jobs in ROUTING */
	struct list jobs;              /* of sched_job.node: all but ROUTING */
	struct list waiting;           /* of sched_job.wait_node: BOUNCING jobs
	                                  waiting for a spool read slot */
	struct sched_dom **doms;       /* SCHED_DOMAINS_MAX slots, ndoms used */
	uint32_t ndoms;
	struct htab byname;            /* dom name -> doms[] */
	struct list ready;             /* of sched_dom.ready_node */
	uint32_t nready;
	uint64_t wake_us;              /* earliest sched_dom.next_us, or MAX */
	uint64_t metrics_us;           /* the deferred gauge last set */
	uint64_t rescan_us;            /* last walk of every queue */
	const struct domtab *seen_table; /* compared only, never read */
	int seen_stale;                /* domtab_live_stale() at the last walk */
	uint64_t batch[SCHED_BATCH_MAX];
	struct sched_dead dead[SCHED_DEAD_MAX];
	unsigned ndead;
	void (*relayed_fn)(void *arg); /* sched_set_relayed_hook(); NULL none */
	void *relayed_arg;
};

/*
 * A job's life, one logged transition each (sched_job_enter()):
 *   NEW --route_pick()--> ROUTING --answer (numeric: at once)-->
 *     DELIVERING (drain_outbound to the first live address)
 *       --every connection failed, nothing attempted--> DELIVERING
 *         (the next address; the failed one is dead for minimal_backoff)
 *       --done--> DONE (what is still pending deferred)
 *     BOUNCING (NXDOMAIN, null MX of the domain's own MX: DSNs) --> DONE
 *     DONE (temporary routing failure, every address dead: deferred)
 * In ROUTING the job is on no list: the resolver's thread owns it until
 * the answer is posted back (drain_hub_post); a post refused at shutdown
 * frees it there.
 */
enum sched_job_state {
	SCHED_JOB_NEW = 0,
	SCHED_JOB_ROUTING,
	SCHED_JOB_DELIVERING,
	SCHED_JOB_BOUNCING,
	SCHED_JOB_DONE,
	SCHED_JOB_NSTATES
};

struct sched_job {
	struct list_node node;         /* s->jobs, except in ROUTING */
	struct list_node wait_node;    /* s->waiting */
	int waiting;
	struct sched *s;               /* never touched on the resolver thread */
	struct sched_dom *dom;         /* kept while the job counts in dom->jobs */
	struct drain_hub *hub;         /* the post back, from the resolver thread */
	unsigned index;
	enum sched_job_state state;
	enum route_kind kind;
	enum domtab_tls tls;
	char target[SCHED_TARGET_MAX];
	struct resolver_list route;
	unsigned addr;                 /* route.a[addr] is being tried */
	uint64_t *msgs;                /* busy in the index while the job has them */
	size_t nmsgs;
	uint64_t started_us;
	/* BOUNCING: one message at a time */
	size_t bnext;
	uint64_t cur;
	struct buf rec, dsn;
	uint32_t *rcpt;
	uint32_t rcpt_cap, nrcpt;
};

/* sched.c */
uint64_t sched_now_us(const struct sched *s);
int sched_scheduled(const struct sched *s, const struct domtab *t, const char *dom,
		size_t len);
struct sched_dom *sched_dom_find(struct sched *s, const char *dom, size_t len);
struct sched_dom *sched_dom_get(struct sched *s, const char *dom, size_t len);
void sched_ready(struct sched *s, struct sched_dom *sd);
/* sd has an entry deferred to at: wake then. */
void sched_wake_at(struct sched *s, struct sched_dom *sd, uint64_t at);

/* sched_job.c */
/* Start a job for msgs[0..n) of sd (marked busy; copied): it routes,
 * delivers and ends on its own. 0, or -ENOMEM (the entries are released). */
int sched_job_start(struct sched *s, const struct domtab *t, struct sched_dom *sd,
		const uint64_t *msgs, size_t n, uint64_t now);
/* Free a job that will not go on (no dom bookkeeping). NULL-safe. */
void sched_job_free(struct sched_job *j);
/* Resume BOUNCING jobs that waited for a spool read slot. */
void sched_job_retry_waiting(struct sched *s);
/* Forget every dead address (a retry now). */
void sched_job_dead_clear(struct sched *s);
const char *sched_job_state_name(enum sched_job_state st);

#endif
