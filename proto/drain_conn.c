/* SPDX-License-Identifier: MIT */
/*
 * drain_conn: see drain_conn.h. Every callback (the loop's and the
 * spool's) looks at dc->state alone to know what the connection is doing;
 * spool_pending counts the spool's callbacks still owed to it, which is
 * what keeps the struct (and so its job) alive after the socket is gone.
 *
 * Pipelining across messages (RFC 2920 3.1, issue 17): while message N is
 * with the customer, the record of N+1 is read ahead into the second
 * message slot, and N+1's MAIL, RCPT and DATA go out in the same send as
 * N's body and final dot; N+1's body still waits for its own 354. The
 * client matches replies in order, so N's verdict (and its DONEs) comes
 * from the reply to N's dot alone; a failure before it leaves both held.
 */
#include "proto/drain_conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ascii.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/now.h"
#include "core/tls.h"
#include "proto/bounce.h"
#include "proto/drain_atrn.h"
#include "proto/qid.h"
#include "store/spool_rec.h"

#define DRAIN_CONNECT_TIMEOUT_MS 30000 /* Postfix smtp_connect_timeout */
#define DRAIN_DIAG_MAX 600             /* "550 5.1.1 " + a 512-octet reply */
#define DRAIN_DIAG_DEFAULT_STATUS "5.0.0"
#define DRAIN_TLS_TEXT 128             /* "TLSv1.3:TLS_AES_256_GCM_SHA384" */
/* "delay=D, delays=a/b/c/d": five durations and the words. */
#define DRAIN_TIMES_MAX (5 * DRAIN_CONN_SECS_MAX + 32)
/* From 10 s on delay= shows whole seconds (Postfix's log_adhoc.c). */
#define DRAIN_SECS_WHOLE_TENTHS 100u
/* RFC 3463 3.8 X.7.5 cryptographic failure, as Postfix for an unverified
 * server certificate. */
#define DRAIN_TLS_VERIFY_STATUS "4.7.5"

/* What TLS a connection has: the policy a job needs is met by a
 * connection at least this far (dc_meets()). */
enum drain_conn_tls {
	DRAIN_CONN_TLS_CLEAR = 0,
	DRAIN_CONN_TLS_ENCRYPTED,      /* TLS up, certificate not verified */
	DRAIN_CONN_TLS_VERIFIED,       /* chain and host name verified */
};

/* One destination host:port on this thread: its connections and the jobs
 * that drain to it (those with connections and those waiting for one). */
struct drain_dest {
	struct list_node node;         /* env->dests */
	struct sockaddr_storage dst;
	socklen_t dstlen;
	unsigned conns;                /* drain_conn structs to it alive */
	struct list jobs;              /* of drain_job.dest_node */
	struct list fresh;             /* of drain_job.fresh_node: jobs never
	                                  yet served, oldest first */
	struct list fresh_late;        /* the same, begun by another thread */
	struct drain_atrn *atrn;       /* an ATRN session's: its one adopted
	                                  connection, never a fresh one */
	unsigned pins;                 /* job_idle calls under way: not freed */
	struct list idle;              /* of drain_conn.idle_node: IDLE ones */
	struct drain_job idle_job;     /* theirs while IDLE (placeholder) */
};

/* One message's DONE records in flight, and whose they are: the
 * connection may have gone on to another job since (fresh first), the
 * job stays until they are durable (its dones_pending). */
struct drain_durable_msg {
	unsigned dones;
	struct drain_job *job;
};

/* The DONE records of a connection's delivered messages while they are
 * written: at most env->done_window messages' worth (the next dot waits
 * below that), of any of the jobs the connection served. The spool makes
 * records durable in the order they were queued, so per_msg is a ring of
 * those messages, oldest at head. */
struct drain_durable {
	struct drain_conn *dc;
	unsigned pending;              /* DONE records in flight */
	unsigned msgs, head;           /* messages in flight, the oldest's slot */
	unsigned cur;                  /* DONEs of the message being decided */
	struct drain_durable_msg *per_msg; /* [env->done_window], from dc_open */
};

/* Where a message slot stands. */
enum dc_msg_state {
	DC_MSG_FREE = 0,
	DC_MSG_READING,                /* its record being read (spool I/O) */
	DC_MSG_READ,                   /* record read and decoded, not submitted */
	DC_MSG_SENT,                   /* with the SMTP client */
};

/* One message of a connection: the one in progress (dc->m), or the next
 * one read ahead / pipelined behind its dot (dc->nx). */
struct dc_msg {
	struct drain_conn *dc;
	struct drain_job *job;         /* whose message: dc->job's, or for nx
	                                  a fresh job's first (dc_read_ahead()),
	                                  claimed: dc goes on with it after m */
	enum dc_msg_state st;
	int local_again;               /* submitting it behind a dot decided it
	                                  locally: submit it again when idle */
	uint64_t msgid;                /* 0 = none */
	uint32_t *rcpt;                /* its recipients in this domain */
	uint32_t nrcpt, caprcpt;
	const char **raddr;            /* their addresses, for the client */
	size_t *rlen;
	struct buf rec;                /* the record read from the spool */
	struct spool_rec_hdr hdr;
	struct spool_rec_msg msg;
	uint64_t submit_us;            /* went to the client (delays d) */
};

struct drain_conn {
	enum drain_conn_state state;
	unsigned spool_pending;        /* reads and commits that owe us their
	                                  callback */
	struct drain_job *job;
	struct conn *c;                /* from GREETING until CLOSED */
	struct smtp_client *cl;
	struct dc_msg slot[2];
	struct dc_msg *m;              /* the message in progress */
	struct dc_msg *nx;             /* the next one (read ahead or behind
	                                  m's dot), or NULL; only while m is
	                                  SENT */
	int flush_held;                /* m's body and dot are queued, not
	                                  sent: nx's read is about to
	                                  complete, its commands join them */
	struct buf dsn;                /* a bounce being written */
	struct list_node wait_node;    /* env->waiting, while WAIT_SLOT */
	struct list_node idle_node;    /* dest->idle, while IDLE */
	struct drain_dest *dest;       /* fixed; dc->job changes within it */
	struct drain_durable dur;
	const char *end_why;           /* why the connection ended (static text) */
	int early;                     /* ended before its QUIT: may be replaced */
	int tls_fallback;              /* ended by a failed STARTTLS under may:
	                                  replaced in the clear, not counted
	                                  against drain_reconnect_attempts */
	unsigned delivered;
	struct drain_atrn *atrn;       /* ATRN session, or NULL */
	int atrn_last;                 /* the last shard of it: QUIT at the end */
	int atrn_told;                 /* drain_atrn_conn_end() called */
	struct smtp_client_session ss; /* carried to the next shard */
	enum drain_conn_tls tls;
	char tls_text[DRAIN_TLS_TEXT]; /* "version:cipher" for delivery lines */
	/* Wall-clock µs for the delays= of delivery lines (drain_conn.h). */
	uint64_t open_us;              /* connect submitted (or adopted) */
	uint64_t ready_us;             /* session first ready for mail */
	int setup_counted;             /* c (setup) given to a message already */
};

/* The recipients of one message to bounce, with their DSN fields. */
struct drain_bounces {
	uint32_t *rcpt;
	struct dsn_rcpt *why;
	char (*diag)[DRAIN_DIAG_MAX];
	char remote[DRAIN_RELAY_MAX];  /* Remote-MTA (RFC 3464 2.3.5) */
	unsigned n;
};

static const char *const drain_conn_state_names[DRAIN_CONN_NSTATES] = {
	[DRAIN_CONN_CONNECTING] = "CONNECTING",
	[DRAIN_CONN_GREETING] = "GREETING",
	[DRAIN_CONN_STARTTLS] = "STARTTLS",
	[DRAIN_CONN_HANDSHAKE] = "HANDSHAKE",
	[DRAIN_CONN_WAIT_SLOT] = "WAIT_SLOT",
	[DRAIN_CONN_READING] = "READING",
	[DRAIN_CONN_SENDING] = "SENDING",
	[DRAIN_CONN_WAIT_DURABLE] = "WAIT_DURABLE",
	[DRAIN_CONN_WAIT_SWITCH] = "WAIT_SWITCH",
	[DRAIN_CONN_COMMITTING] = "COMMITTING",
	[DRAIN_CONN_IDLE] = "IDLE",
	[DRAIN_CONN_QUITTING] = "QUITTING",
	[DRAIN_CONN_HANDING] = "HANDING",
	[DRAIN_CONN_CLOSING] = "CLOSING",
	[DRAIN_CONN_CLOSED] = "CLOSED",
};

static const struct conn_ops drain_conn_ops;

static void dc_next(struct drain_conn *dc);
static int dc_take(struct drain_conn *dc);
static int dc_meets(const struct drain_conn *dc, const struct drain_job *j);
static void msg_done(struct drain_conn *dc);
static int dc_open(struct drain_job *j);
static void dc_finish_body(struct drain_conn *dc);

const char *drain_conn_state_name(enum drain_conn_state s)
{
	return (unsigned)s < DRAIN_CONN_NSTATES ? drain_conn_state_names[s] : "?";
}

/* The one place the state changes. Nothing leaves CLOSED: the struct is
 * only waiting for its last spool callback there. */
static void drain_conn_enter(struct drain_conn *dc, enum drain_conn_state new_state,
			     const char *why)
{
	struct drain_job *j = dc->job;

	if (dc->state == DRAIN_CONN_CLOSED)
		panic("drain %.*s: %s after CLOSED (%s)", (int)j->len, j->dom,
		      drain_conn_state_name(new_state), why);
	log_debug("drain %.*s (shard %u) to %s: %s -> %s (%s)", (int)j->len, j->dom,
		  j->env->index, j->relay, drain_conn_state_name(dc->state),
		  drain_conn_state_name(new_state), why);
	dc->state = new_state;
	/* Its DONEs were queued lazily while it went on sending; in any other
	 * state it may be waiting for them (the window, a switch, its end). */
	if (dc->dur.pending && new_state != DRAIN_CONN_SENDING && new_state != DRAIN_CONN_READING &&
	    new_state != DRAIN_CONN_WAIT_SLOT)
		spool_shard_hurry(j->env->sh);
}

/* Replies wait while the spool works for us (the client must not move on
 * before the record is there or the bounce is durable). */
static int dc_spool_paused(const struct drain_conn *dc)
{
	return dc->state == DRAIN_CONN_READING || dc->state == DRAIN_CONN_COMMITTING ||
	       dc->state == DRAIN_CONN_WAIT_DURABLE || dc->state == DRAIN_CONN_WAIT_SWITCH;
}

/* Setting the session up: greeting, EHLO, STARTTLS, the handshake. */
static int dc_in_setup(const struct drain_conn *dc)
{
	return dc->state == DRAIN_CONN_GREETING || dc->state == DRAIN_CONN_STARTTLS ||
	       dc->state == DRAIN_CONN_HANDSHAKE;
}

/* Send what is queued, unless m's dot waits for nx's commands to join it
 * (dc_finish_body()): then record_read() sends them together. */
static void dc_flush(struct drain_conn *dc)
{
	if (!dc->flush_held)
		conn_flush(dc->c);
}

/* The reply timer: the SMTP client's (RFC 5321 4.5.3.2), but the greeting,
 * EHLO and STARTTLS replies at most env->greeting_ms (during the handshake
 * the loop's tls_handshake_timeout alone runs). */
static void dc_arm(struct drain_conn *dc)
{
	unsigned ms = smtp_client_timeout_ms(dc->cl);

	if (dc->state == DRAIN_CONN_IDLE)
		ms = dc->job->env->linger_ms;
	if (dc_in_setup(dc) && ms > dc->job->env->greeting_ms)
		ms = dc->job->env->greeting_ms;
	conn_set_timeout(dc->c, ms);
}

/* ---- destinations and jobs ----------------------------------------------- */

static int dest_same(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
		       !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr));
	}
	return 0;
}

/* The destination of j (found or made); NULL when out of memory. */
static struct drain_dest *dest_get(struct drain_conn_env *env, const struct drain_job *j)
{
	struct drain_dest *ds;
	struct list_node *n;

	LIST_FOREACH(n, &env->dests) {
		ds = LIST_ENTRY(n, struct drain_dest, node);
		if (dest_same(&ds->dst, &j->dst))
			return ds;
	}
	ds = calloc(1, sizeof(*ds));
	if (!ds)
		return NULL;
	memcpy(&ds->dst, &j->dst, j->dstlen);
	ds->dstlen = j->dstlen;
	/* The stand-in job of its IDLE connections: never started or ended,
	 * so none of its own ever pending (job_wants() 0). */
	ds->idle_job.env = env;
	ds->idle_job.dest = ds;
	ds->idle_job.outbound = 1;
	ds->idle_job.placeholder = 1;
	ds->idle_job.tls = DOMTAB_TLS_MAY;
	snprintf(ds->idle_job.dom, sizeof(ds->idle_job.dom), "(idle)");
	ds->idle_job.len = strlen(ds->idle_job.dom);
	list_append(&env->dests, &ds->node);
	return ds;
}

/* Free ds once no job and no connection uses it. */
static void dest_put(struct drain_conn_env *env, struct drain_dest *ds)
{
	if (ds->conns == 0 && ds->pins == 0 && list_empty(&ds->jobs)) {
		list_unlink(&env->dests, &ds->node);
		free(ds);
	}
}

/* j could use one more connection: untried mail, fewer connections than
 * drain_connections and than its untried messages, not given up. */
static int job_wants(const struct drain_job *j)
{
	size_t untried = j->nmsgs - j->next_msg;

	return !j->env->stopping && !j->gave_up && untried > 0 &&
	       j->conns < j->env->job_conns && j->conns < untried;
}

/* j waits for its first connection: on its destination's fresh list (an
 * ATRN session's jobs and the stand-in of IDLE connections never are). */
static void job_fresh_add(struct drain_job *j)
{
	if (!j->fresh && !j->placeholder && !j->dest->atrn) {
		list_append(&j->dest->fresh, &j->fresh_node);
		j->fresh = 1;
	}
}

/* j has a connection now (or ends): off the fresh list. */
static void job_fresh_del(struct drain_job *j)
{
	if (j->fresh) {
		list_unlink(j->fresh == 1 ? &j->dest->fresh : &j->dest->fresh_late,
			    &j->fresh_node);
		j->fresh = 0;
	}
}

struct drain_begun *drain_begun_new(unsigned refs)
{
	struct drain_begun *b = calloc(1, sizeof(*b));

	if (b)
		b->refs = refs;
	return b;
}

void drain_begun_put(struct drain_begun *b)
{
	if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(b);
}

/* j's domain has its first connection on another thread already. */
static int job_begun_elsewhere(const struct drain_job *j)
{
	return j->begun && __atomic_load_n(&j->begun->begun, __ATOMIC_RELAXED);
}

/* A connection (or a slot for one) goes to j: j->conns and the fresh list. */
static void job_got_conn(struct drain_job *j)
{
	j->conns++;
	job_fresh_del(j);
	if (j->begun && !__atomic_load_n(&j->begun->begun, __ATOMIC_RELAXED))
		__atomic_store_n(&j->begun->begun, 1, __ATOMIC_RELAXED);
}

/* The host of a relay "host[addr]:port": the name a certificate is checked
 * against (and sent as SNI), and the DSN's Remote-MTA. */
static void relay_host(const char *relay, char *host, size_t n)
{
	snprintf(host, n, "%.*s", (int)strcspn(relay, "["), relay);
}

/* j's TLS policy cannot be met at its destination: keep why for the log
 * and `etrnctl status`, and open no more connections for it (another would
 * meet the same server). The mail stays queued. */
static void job_tls_held(struct drain_job *j, const char *why)
{
	if (!j->held[0]) {
		snprintf(j->held, sizeof(j->held), "%s", why);
		log_warn("drain %.*s (shard %u) to %s: %s; tls=%s, mail stays held",
			 (int)j->len, j->dom, j->env->index, j->relay, why,
			 domtab_tls_name(j->tls));
	}
	j->gave_up = 1;
}

/* j (a drain) has another address to go to when it gives up on this one. */
static int job_addr_left(const struct drain_job *j)
{
	return j->addrs && j->addr + 1 < j->addrs->n;
}

/* What j is, for the first word of its log lines. */
static const char *job_kind(const struct drain_job *j)
{
	return j->outbound ? "outbound" : "drain";
}

/* Keep j's last temporary failure (drain_job.why), for the scheduler. */
__attribute__((format(printf, 2, 3)))
static void job_why(struct drain_job *j, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(j->why, sizeof(j->why), fmt, ap);
	va_end(ap);
}

/* The STARTTLS policy of a fresh connection for j. */
static enum smtp_client_tls job_client_tls(const struct drain_job *j)
{
	if (j->tls != DOMTAB_TLS_MAY)
		return SMTP_CLIENT_TLS_MUST;
	return j->env->tls && !j->tls_clear ? SMTP_CLIENT_TLS_MAY : SMTP_CLIENT_TLS_NONE;
}

/* The job is done here once no connection and no DONE record of its own
 * is left and it has nothing it could still try: only then is what it
 * delivered durable (and counted). May free j and its destination. */
static void job_check_idle(struct drain_job *j)
{
	struct drain_conn_env *env = j->env;
	struct drain_dest *ds = j->dest;

	if (j->placeholder || j->conns || j->dones_pending || job_wants(j))
		return;
	job_fresh_del(j);
	list_unlink(&ds->jobs, &j->dest_node);
	/* job_idle may start the next job at once (an outbound job's end
	 * tells its scheduler), to ds too, which may fail and put ds: it
	 * stays until this call is over. */
	ds->pins++;
	env->job_idle(j);
	ds->pins--;
	dest_put(env, ds);
}

/* Open connections for ds's waiting jobs, oldest first, while it has room;
 * then end the jobs that can no longer get one. May free ds. */
static void dest_kick(struct drain_conn_env *env, struct drain_dest *ds)
{
	struct list *fresh[2] = { &ds->fresh, &ds->fresh_late };
	struct list_node *n, *next;

	/* Fresh first: one connection each for the jobs that have none yet,
	 * before older jobs get more (dc_open() takes j off the list). */
	for (unsigned k = 0; k < 2; k++)
		for (n = fresh[k]->head; n && !ds->atrn && ds->conns < env->dest_limit; n = next) {
			struct drain_job *j = LIST_ENTRY(n, struct drain_job, fresh_node);
			int rc;

			next = n->next;
			if (!job_wants(j))
				continue;
			rc = dc_open(j);
			if (rc) {
				log_warn("drain %.*s: cannot open a connection to %s: %s",
					 (int)j->len, j->dom, j->relay, strerror(-rc));
				j->gave_up = 1;
			}
		}
	LIST_FOREACH(n, &ds->jobs) {
		struct drain_job *j = LIST_ENTRY(n, struct drain_job, dest_node);

		while (!ds->atrn && ds->conns < env->dest_limit && job_wants(j)) {
			int rc = dc_open(j);
			if (rc) {
				log_warn("drain %.*s: cannot open a connection to %s: %s",
					 (int)j->len, j->dom, j->relay, strerror(-rc));
				j->gave_up = 1;
			}
		}
	}
	/* The list may lose members (and ds itself) while this runs. */
	for (n = ds->jobs.head; n; n = next) {
		next = n->next;
		job_check_idle(LIST_ENTRY(n, struct drain_job, dest_node));
	}
}

/* A connection of j ended before its QUIT while j had untried mail: count
 * it against drain_reconnect_attempts (dest_kick() opens the fresh one). */
static void job_failed_conn(struct drain_job *j)
{
	/* Every early end counts (the scheduler's conn_failures), whether or
	 * not it still costs the job a reconnect. */
	j->failures++;
	if (j->next_msg >= j->nmsgs || j->gave_up)
		return;
	if (j->failures <= j->env->reconnects)
		return;
	j->gave_up = 1;
	log_warn("drain %.*s (shard %u) to %s: %u connection(s) ended early; giving up, "
		 "%zu message(s) %s", (int)j->len, j->dom, j->env->index, j->relay, j->failures,
		 j->nmsgs - j->next_msg,
		 job_addr_left(j) ? "go to the next address" : "stay queued for the next ETRN");
}

/* An ATRN session's connection is gone from this shard (handed on, or
 * over): its jobs try nothing more here, and the session is told once. */
static void atrn_conn_gone(struct drain_conn *dc)
{
	struct list_node *n;

	LIST_FOREACH(n, &dc->dest->jobs)
		LIST_ENTRY(n, struct drain_job, dest_node)->gave_up = 1;
	if (!dc->atrn_told) {
		dc->atrn_told = 1;
		drain_atrn_conn_end(dc->atrn, NULL, NULL);
	}
}

/* Free dc if the release rule (drain_conn.h) allows; 1 when freed. Touch
 * neither dc nor its job afterwards. */
static int dc_release(struct drain_conn *dc)
{
	struct drain_job *j = dc->job;
	struct drain_conn_env *env = j->env;
	struct drain_dest *ds = dc->dest;
	int early = dc->early;

	if (dc->state != DRAIN_CONN_CLOSED || dc->spool_pending || dc->dur.pending)
		return 0;
	if (dc->atrn)
		atrn_conn_gone(dc);
	early = early && !dc->tls_fallback;
	smtp_client_free(dc->cl);
	free(dc->dur.per_msg);
	for (int i = 0; i < 2; i++) {
		free(dc->slot[i].rcpt);
		free(dc->slot[i].raddr);
		free(dc->slot[i].rlen);
		buf_free(&dc->slot[i].rec);
	}
	buf_free(&dc->dsn);
	free(dc);
	env->conns--;
	ds->conns--;
	j->conns--;
	if (early)
		job_failed_conn(j);
	if (list_empty(&ds->jobs)) {
		/* An IDLE connection's end: no job to kick, ds may go. */
		dest_put(env, ds);
		return 1;
	}
	dest_kick(env, ds); /* ends j too when it is done */
	return 1;
}

/* Spool callback: a delivered recipient's DONE is durable (or its write
 * failed, which the spool logs: the message may then be sent again). Once
 * all of the message's are, a dot held back for them goes out. */
static void done_durable(void *arg, int err)
{
	struct drain_durable *du = arg;
	struct drain_conn *dc = du->dc;
	struct drain_durable_msg *m = &du->per_msg[du->head];
	struct drain_job *j = m->job;
	/* j may end (and be freed) below; the environment outlives it. */
	struct drain_conn_env *env = j->env;

	(void)err;
	j->dones_pending--;
	du->pending--;
	if (--m->dones == 0) {
		m->job = NULL;
		du->head = (du->head + 1) % env->done_window;
		du->msgs--;
	}
	/* A job dc has left ends once its last DONE is durable. Its end may
	 * start other jobs, never take dc (not IDLE: it waits for no DONE).
	 * j is not to be touched after this. */
	if (j != dc->job && !j->dones_pending)
		job_check_idle(j);
	if (dc->state == DRAIN_CONN_WAIT_DURABLE && du->msgs < env->done_window)
		dc_finish_body(dc);
	else if (du->pending)
		return;
	else if (dc->state == DRAIN_CONN_WAIT_SWITCH)
		dc_next(dc);
	else if (dc->state == DRAIN_CONN_CLOSED)
		(void)dc_release(dc);
}

/* ---- the wait list for a spool read slot ------------------------------- */

static void wait_push(struct drain_conn_env *env, struct drain_conn *dc)
{
	list_append(&env->waiting, &dc->wait_node);
}

/* Off the list; dc must be on it (state WAIT_SLOT). */
static void wait_remove(struct drain_conn_env *env, struct drain_conn *dc)
{
	list_unlink(&env->waiting, &dc->wait_node);
}

/* A read slot came free: let the longest waiter try again. */
static void wait_wake(struct drain_conn_env *env)
{
	struct list_node *n = list_pop(&env->waiting);

	if (n)
		dc_next(LIST_ENTRY(n, struct drain_conn, wait_node));
}

void drain_conn_env_turn(struct drain_conn_env *env)
{
	/* Oldest first, until one must wait again (it went back to the end:
	 * no slot is left). dc_next() never frees dc (a close completes in
	 * a later turn), so its state may be read after it. */
	while (!list_empty(&env->waiting)) {
		struct drain_conn *dc =
			LIST_ENTRY(list_pop(&env->waiting), struct drain_conn, wait_node);

		dc_next(dc);
		if (dc->state == DRAIN_CONN_WAIT_SLOT)
			break;
	}
}

/* Close the socket (idempotent); the loop's close callback follows. A
 * close before QUIT was answered is early: the job may replace it. */
static void dc_close_conn(struct drain_conn *dc, const char *why)
{
	if (dc->state == DRAIN_CONN_CONNECTING || dc->state == DRAIN_CONN_CLOSING ||
	    dc->state == DRAIN_CONN_CLOSED || dc->state == DRAIN_CONN_HANDING)
		return;
	dc->early = dc->state != DRAIN_CONN_QUITTING;
	if (dc->early)
		dc->end_why = why;
	if (dc->state == DRAIN_CONN_WAIT_SLOT)
		wait_remove(dc->job->env, dc);
	if (dc->state == DRAIN_CONN_IDLE)
		list_unlink(&dc->dest->idle, &dc->idle_node);
	drain_conn_enter(dc, DRAIN_CONN_CLOSING, why);
	conn_close(dc->c);
}

/* ---- taking messages ---------------------------------------------------- */

/* Room for n recipients in slot s's arrays; 0 or -ENOMEM. */
static int dc_rcpt_room(struct dc_msg *s, uint32_t n)
{
	uint32_t *r;
	const char **a;
	size_t *l;

	if (n <= s->caprcpt)
		return 0;
	r = realloc(s->rcpt, n * sizeof(*r));
	if (r)
		s->rcpt = r;
	a = r ? realloc(s->raddr, n * sizeof(*a)) : NULL;
	if (a)
		s->raddr = a;
	l = a ? realloc(s->rlen, n * sizeof(*l)) : NULL;
	if (!l)
		return -ENOMEM;
	s->rlen = l;
	s->caprcpt = n;
	return 0;
}

/* j's domain's pending recipients of msgid, into s->rcpt. */
static int pending_in_domain(const struct drain_job *j, struct dc_msg *s, uint64_t msgid)
{
	struct spool_index *idx = j->env->idx;
	struct spool_index_entry e;
	char dom[DRAIN_DOMAIN_MAX];
	size_t dl;
	int n;

	if (spool_index_msg_find(idx, msgid, &e))
		return 0;
	if (dc_rcpt_room(s, e.nrcpt))
		return -ENOMEM;
	n = spool_index_msg_pending(idx, msgid, s->rcpt, e.nrcpt);
	s->nrcpt = 0;
	for (int i = 0; i < n; i++) {
		if (spool_index_rcpt_domain(idx, msgid, s->rcpt[i], dom, sizeof(dom), &dl))
			continue;
		if (dl == j->len && ascii_eq_n(dom, j->dom, dl))
			s->rcpt[s->nrcpt++] = s->rcpt[i];
	}
	return (int)s->nrcpt;
}

static void record_read(void *arg, int err);

/* QUIT (the session is idle); why says why the connection ends. */
static void dc_quit(struct drain_conn *dc, const char *why)
{
	dc->m->msgid = 0;
	if (smtp_client_quit(dc->cl, conn_out(dc->c)) != 0) {
		dc_close_conn(dc, "cannot send QUIT");
		return;
	}
	dc->end_why = why;
	drain_conn_enter(dc, DRAIN_CONN_QUITTING, why);
	dc_flush(dc);
	dc_arm(dc);
}

/* dc's session is good enough for j's TLS policy: verify needs a
 * certificate verified for the same relay host, must any TLS. */
static int dc_meets(const struct drain_conn *dc, const struct drain_job *j)
{
	if (j->auth_user && !smtp_client_authed(dc->cl))
		return 0;
	if (j->tls == DOMTAB_TLS_MUST)
		return dc->tls >= DRAIN_CONN_TLS_ENCRYPTED;
	if (j->tls == DOMTAB_TLS_VERIFY)
		return dc->tls == DRAIN_CONN_TLS_VERIFIED && !strcmp(dc->job->relay, j->relay);
	return 1;
}

/* dc could go on with j (of its destination): another job that wants a
 * connection and whose TLS policy dc's session meets. */
static int dc_may_serve(const struct drain_conn *dc, const struct drain_job *j)
{
	return j != dc->job && job_wants(j) && dc_meets(dc, j);
}

/* The oldest job of dc's destination still waiting for its first
 * connection whose TLS policy the session meets, or NULL: one whose domain
 * no thread has begun first (those another thread has begun move to the
 * late list as they are met, once each). O(1) unless the session meets
 * none of the first ones' policies. */
static struct drain_job *dest_fresh_job(const struct drain_conn *dc)
{
	struct drain_dest *ds = dc->dest;
	struct list_node *n, *next;

	for (n = ds->fresh.head; n; n = next) {
		struct drain_job *j = LIST_ENTRY(n, struct drain_job, fresh_node);

		next = n->next;
		if (job_begun_elsewhere(j)) {
			list_unlink(&ds->fresh, &j->fresh_node);
			list_append(&ds->fresh_late, &j->fresh_node);
			j->fresh = 2;
			continue;
		}
		if (dc_may_serve(dc, j))
			return j;
	}
	LIST_FOREACH(n, &ds->fresh_late) {
		struct drain_job *j = LIST_ENTRY(n, struct drain_job, fresh_node);

		if (dc_may_serve(dc, j))
			return j;
	}
	return NULL;
}

/* Another job for dc's destination that wants a connection and whose TLS
 * policy the session meets, or NULL: a fresh one first. */
static struct drain_job *dest_next_job(const struct drain_conn *dc)
{
	struct drain_job *fresh = dest_fresh_job(dc);
	struct list_node *n;

	if (fresh)
		return fresh;
	LIST_FOREACH(n, &dc->dest->jobs) {
		struct drain_job *j = LIST_ENTRY(n, struct drain_job, dest_node);

		if (dc_may_serve(dc, j))
			return j;
	}
	return NULL;
}

/* dc goes on with nj (same destination), which counts dc already. */
static void dc_go_on(struct drain_conn *dc, struct drain_job *nj)
{
	struct drain_job *old = dc->job;

	log_info("drain %.*s (shard %u) to %s: connection goes on with %.*s",
		 (int)old->len, old->dom, old->env->index, old->relay, (int)nj->len, nj->dom);
	old->conns--;
	dc->job = nj;
	job_check_idle(old); /* the destination keeps dc: it stays */
}

/* dc's job has nothing left to try: serve nj (same destination) now. */
static void dc_switch(struct drain_conn *dc, struct drain_job *nj)
{
	job_got_conn(nj);
	dc_go_on(dc, nj);
}

/* A fresh job whose first message dc read ahead (dc_read_ahead()) goes
 * without it: it waits for its first connection again, or ends when it
 * has nothing left. */
static void dc_unclaim(struct drain_conn *dc, struct drain_job *j)
{
	if (j == dc->job)
		return;
	j->conns--;
	job_fresh_add(j);
	job_check_idle(j);
}

static int dc_take(struct drain_conn *dc);

/* conn_detach()'s callback: the customer's connection (parcel) goes on to
 * the session's next shard with the SMTP session; NULL: it failed or the
 * loop stops, the session is over. dc is done here. */
static void dc_detached(void *arg, struct conn_parcel *parcel)
{
	struct drain_conn *dc = arg;

	dc->c = NULL;
	dc->atrn_told = 1;
	log_info("drain %.*s (shard %u) to %s: connection %s after %u delivered",
		 (int)dc->job->len, dc->job->dom, dc->job->env->index, dc->job->relay,
		 parcel ? "handed on to the next shard" : "lost while handing it on",
		 dc->delivered);
	drain_atrn_conn_end(dc->atrn, parcel, parcel ? &dc->ss : NULL);
	dc->early = parcel == NULL;
	dc->end_why = parcel ? "handed on to the next shard" : "lost while handing it on";
	drain_conn_enter(dc, DRAIN_CONN_CLOSED, dc->end_why);
	(void)dc_release(dc);
}

/* ATRN: this shard has nothing more for the customer: the connection, its
 * TLS and the SMTP session go on to the next shard (the session is idle). */
static void dc_hand_on(struct drain_conn *dc)
{
	int rc = smtp_client_save(dc->cl, &dc->ss);

	if (rc == 0)
		rc = conn_detach(dc->c, dc_detached, dc);
	if (rc) {
		dc_close_conn(dc, "cannot hand the connection on");
		return;
	}
	drain_conn_enter(dc, DRAIN_CONN_HANDING, "this shard is done");
}

/* dc, whose job has nothing left, may wait IDLE for the next job to its
 * destination: an outbound job's, lingering enabled, not stopping, and its
 * session clean: a transaction the server refused (an RSET owed) is ended
 * by QUIT at once, as without lingering, rather than left open. */
static int dc_may_linger(const struct drain_conn *dc)
{
	const struct drain_job *j = dc->job;
	struct smtp_client_session ss;

	return j->outbound && !dc->atrn && j->env->linger_ms && !j->env->stopping &&
	       smtp_client_save(dc->cl, &ss) == 0 && !ss.rset_owed;
}

/* dc leaves its job for its destination's stand-in (its DONEs are
 * durable) and waits IDLE; its job may end now (job_check_idle()), whose
 * end may hand dc a new job at once. */
static void dc_linger(struct drain_conn *dc)
{
	struct drain_job *old = dc->job, *idle = &dc->dest->idle_job;

	dc->m->msgid = 0;
	snprintf(idle->relay, sizeof(idle->relay), "%s", old->relay);
	old->conns--;
	idle->conns++;
	dc->job = idle;
	list_append(&dc->dest->idle, &dc->idle_node);
	drain_conn_enter(dc, DRAIN_CONN_IDLE, "no job waits: lingering");
	dc_arm(dc);
	job_check_idle(old);
}

/* An IDLE connection of j's destination takes j (its TLS policy met):
 * 1 when one did (it is READING or WAIT_SLOT for j now). */
static int dest_idle_take(struct drain_dest *ds, struct drain_job *j)
{
	struct list_node *n;

	LIST_FOREACH(n, &ds->idle) {
		struct drain_conn *dc = LIST_ENTRY(n, struct drain_conn, idle_node);

		if (!dc_meets(dc, j))
			continue;
		list_unlink(&ds->idle, &dc->idle_node);
		ds->idle_job.conns--;
		j->conns++;
		dc->job = j;
		if (dc_take(dc)) {
			job_fresh_del(j);
			dc_arm(dc);
			return 1;
		}
		/* Nothing of j left to take: dc stays IDLE. */
		j->conns--;
		ds->idle_job.conns++;
		dc->job = &ds->idle_job;
		list_append(&ds->idle, &dc->idle_node);
		return 0;
	}
	return 0;
}

/* Start reading the next message that still has recipients here, from
 * this job or (once it has none) another for the same destination; with
 * none left, linger (an outbound job's, dc_linger()) or QUIT. The session
 * is idle. */
static void dc_next(struct drain_conn *dc)
{
	struct drain_job *nj;

	if (dc->nx)
		panic("drain %.*s: next message with none in progress", (int)dc->job->len,
		      dc->job->dom);
	if (dc->state == DRAIN_CONN_IDLE) /* the server spoke first: go on */
		list_unlink(&dc->dest->idle, &dc->idle_node);
	if (!dc->ready_us)
		dc->ready_us = now_wall_us(); /* the end of its setup (delays c) */
	/* Exim closes after smtp_accept_max_nonmail: leave before, a fresh
	 * connection (dest_kick() on release) goes on with the rest. */
	if (smtp_client_worn(dc->cl)) {
		dc_quit(dc, "non-mail command budget spent; a fresh connection goes on");
		return;
	}
	/* Fresh first: once its job's first message has gone out, dc serves
	 * a job still waiting for its first one before going on; the rest of
	 * its job waits for the next connection that runs out of work
	 * (dest_next_job()). The DONE ring keeps each message's job, so
	 * the switch waits for no DONE. */
	if (dc->job->next_msg > 0 && (nj = dest_fresh_job(dc)))
		dc_switch(dc, nj);
	for (;;) {
		if (dc_take(dc))
			return;
		nj = dest_next_job(dc);
		if (!nj)
			break;
		dc_switch(dc, nj);
	}
	if (dc->atrn && !dc->atrn_last) {
		/* The next shard may deliver up to drain_done_window more
		 * before a crash: this shard's DONEs go to disk first, so a
		 * kill -9 can send again at most one window, as for ETRN. */
		if (dc->dur.pending) {
			drain_conn_enter(dc, DRAIN_CONN_WAIT_SWITCH, "DONEs in flight before the hand-on");
			return;
		}
		dc_hand_on(dc);
	} else if (dc_may_linger(dc) && dc->dur.pending) {
		/* Its job ends once these are durable: wait for them first. */
		drain_conn_enter(dc, DRAIN_CONN_WAIT_SWITCH, "DONEs in flight before lingering");
	} else if (dc_may_linger(dc)) {
		dc_linger(dc);
	} else {
		dc_quit(dc, "no more messages");
	}
}

/* Start reading j's next message that still has recipients here into
 * slot s of dc: 1 when its read is under way (s READING), 0 when the job
 * has none left, -EBUSY when every read slot of the shard is busy (the
 * message is given back). */
static int dc_take_into(struct drain_conn *dc, struct drain_job *j, struct dc_msg *s)
{
	struct drain_conn_env *env = j->env;
	char qid[QID_MAX];
	int rc;

	while (j->next_msg < j->nmsgs) {
		uint64_t id = j->msgs[j->next_msg++];
		struct spool_index_entry e;

		if (pending_in_domain(j, s, id) <= 0 || spool_index_msg_find(env->idx, id, &e))
			continue; /* delivered or expired since the snapshot */
		buf_reset(&s->rec);
		if (buf_reserve(&s->rec, e.rec_len)) {
			qid_format(id, qid);
			log_err("%s: out of memory reading it; left queued", qid);
			continue;
		}
		s->rec.len = e.rec_len;
		rc = spool_shard_read(env->sh, e.segment_id, e.off, e.rec_len, s->rec.data,
				      record_read, s);
		if (rc == -EBUSY) {
			j->next_msg--;
			return -EBUSY;
		}
		if (rc) {
			qid_format(id, qid);
			log_err("%s: cannot read it (%s); left queued for the next ETRN", qid,
				strerror(-rc));
			continue;
		}
		s->msgid = id;
		s->job = j;
		s->st = DC_MSG_READING;
		s->local_again = 0;
		dc->spool_pending++;
		return 1;
	}
	return 0;
}

/* Take dc->job's next message: 1 when dc is now busy with it (READING or
 * WAIT_SLOT), 0 when the job has none left. */
static int dc_take(struct drain_conn *dc)
{
	int rc = dc_take_into(dc, dc->job, dc->m);

	if (rc == -EBUSY) {
		/* Every read slot is busy: wait for a read to finish
		 * (wait_wake()). */
		wait_push(dc->job->env, dc);
		drain_conn_enter(dc, DRAIN_CONN_WAIT_SLOT, "no read slot");
		return 1;
	}
	if (rc == 1)
		drain_conn_enter(dc, DRAIN_CONN_READING, "next message");
	return rc == 1;
}

/* The slot that is neither m nor in use: where the next message goes. */
static struct dc_msg *dc_other(struct drain_conn *dc)
{
	return dc->m == &dc->slot[0] ? &dc->slot[1] : &dc->slot[0];
}

/* Slot s back to free (its message done, lost or left queued). */
static void dc_msg_clear(struct dc_msg *s)
{
	s->msgid = 0;
	s->st = DC_MSG_FREE;
	s->local_again = 0;
}

/* Read the next message ahead while m is with the customer, so that its
 * commands can follow m's dot in the same send (RFC 2920 3.1): only to a
 * server with PIPELINING. Fresh first: while a job of the destination
 * waits for its first connection, the message read ahead is that job's
 * first, and dc goes on with that job once m is done (dc_after_msg());
 * so a burst of ETRNs costs a round trip per first message, not two and
 * a read. A busy shard is not waited for: the message is read when m is
 * done, as without read-ahead. */
static void dc_read_ahead(struct drain_conn *dc)
{
	struct dc_msg *s = dc_other(dc);
	struct drain_job *nj;
	int rc;

	if (dc->nx || dc->m->st != DC_MSG_SENT || dc->job->env->stopping ||
	    !(smtp_client_caps(dc->cl, NULL) & SMTP_CLIENT_CAP_PIPELINING) ||
	    s->st != DC_MSG_FREE)
		return;
	nj = dest_fresh_job(dc);
	if (!nj) {
		if (dc->job->next_msg < dc->job->nmsgs && dc_take_into(dc, dc->job, s) == 1)
			dc->nx = s;
		return;
	}
	rc = dc_take_into(dc, nj, s);
	if (rc == 1) {
		job_got_conn(nj); /* claimed: off the fresh list */
		dc->nx = s;
	} else if (rc == 0) {
		job_check_idle(nj); /* nothing of it left to send: it ends */
	}
}

/* The session ends with nx not begun: at most its commands went out
 * behind m's dot, and its body is sent only after its own 354, which
 * comes after the reply to m's dot; so the server cannot have taken it.
 * It goes back to the job untried (a reconnect sends it, as it would
 * have without pipelining), with no line and no count. A read still in
 * flight finds its slot orphaned (record_read()). */
static void dc_give_back(struct drain_conn *dc)
{
	struct dc_msg *s = dc->nx;
	struct drain_job *j;

	dc->flush_held = 0;
	if (!s)
		return;
	dc->nx = NULL;
	j = s->job;
	if (s->msgid && j->next_msg > 0)
		j->msgs[--j->next_msg] = s->msgid;
	if (s->st != DC_MSG_READING)
		dc_msg_clear(s);
	dc_unclaim(dc, j);
}

/* Give slot s's record (read and decoded) to the SMTP client: m when the
 * session is idle (SENDING), or nx behind m's dot (dc stays SENDING). */
static void dc_submit(struct drain_conn *dc, struct dc_msg *s)
{
	struct smtp_client_msg m;
	char qid[QID_MAX];
	int rc;

	for (uint32_t i = 0; i < s->nrcpt; i++) {
		struct spool_rec_addr a = spool_rec_msg_rcpt(&s->msg, s->rcpt[i]);
		s->raddr[i] = a.p;
		s->rlen[i] = a.len;
	}
	memset(&m, 0, sizeof(m));
	m.sender = s->msg.sender.p;
	m.sender_len = s->msg.sender.len;
	m.nrcpt = s->nrcpt;
	m.rcpt = s->raddr;
	m.rcpt_len = s->rlen;
	m.size = s->msg.body_len;
	m.eightbit = (s->hdr.flags & SPOOL_MSG_8BITMIME) != 0;
	m.smtputf8 = (s->hdr.flags & SPOOL_MSG_SMTPUTF8) != 0;
	s->submit_us = now_wall_us();
	rc = smtp_client_submit(dc->cl, &m, conn_out(dc->c));
	if (s == dc->nx) {
		/* Decided locally (SIZE, 8BITMIME, ...): its results are
		 * dropped; it goes again once m is done, when they are read
		 * as for any message (the same checks decide the same). */
		if (rc == 0)
			s->st = DC_MSG_SENT;
		else
			s->local_again = 1;
		return;
	}
	dc_flush(dc);
	dc_arm(dc);
	if (rc == -EBUSY || rc == -EINVAL) {
		log_err("%s: SMTP client refused the message (%s); left queued",
			qid_format(s->msgid, qid), strerror(-rc));
		dc_msg_clear(s);
		dc_close_conn(dc, "client refused the message");
		return;
	}
	s->st = DC_MSG_SENT;
	if (rc != 0) {
		msg_done(dc); /* decided locally (SIZE, 8BITMIME, ...): results set */
		return;
	}
	drain_conn_enter(dc, DRAIN_CONN_SENDING, "submitted");
	dc_read_ahead(dc);
}

/* m's dot is queued: nx's commands go behind it, in the same send, when
 * its record is read by now. Never in a send of their own after the dot:
 * a customer that answers the dot and hangs up could make that send fail
 * before its reply is read, and the loop reports a failed send as the end
 * of the connection at once, so m would lose its 250 (and go out again).
 * A record read later is submitted once m is done (dc_after_msg()). */
static void dc_submit_behind(struct drain_conn *dc)
{
	if (dc->nx && dc->nx->st == DC_MSG_READ && !dc->nx->local_again &&
	    dc->state == DRAIN_CONN_SENDING && smtp_client_can_submit(dc->cl) &&
	    !smtp_client_closed(dc->cl) && dc->m->st == DC_MSG_SENT)
		dc_submit(dc, dc->nx);
}

/* Spool callback: the record of a slot's message is read (or not). */
static void record_read(void *arg, int err)
{
	struct dc_msg *s = arg;
	struct drain_conn *dc = s->dc;
	const char *payload;
	char qid[QID_MAX];

	dc->spool_pending--;
	wait_wake(dc->job->env); /* this read's slot is free again */
	if (dc->state == DRAIN_CONN_CLOSING || dc->state == DRAIN_CONN_CLOSED ||
	    (s == dc->m && dc->state != DRAIN_CONN_READING) || (s != dc->m && s != dc->nx)) {
		/* Closed while we read: the message stays queued. */
		dc_msg_clear(s);
		dc->flush_held = 0;
		(void)dc_release(dc);
		return;
	}
	if (err || spool_rec_decode(s->rec.data, s->rec.len, &s->hdr, &payload) != SPOOL_REC_OK ||
	    s->hdr.type != SPOOL_REC_MSG || s->hdr.msgid != s->msgid ||
	    spool_rec_decode_msg(payload, s->hdr.length, &s->msg) != SPOOL_REC_OK) {
		log_err("%s: cannot read the stored message (%s); left queued",
			qid_format(s->msgid, qid), err ? strerror(-err) : "record does not check");
		dc_msg_clear(s);
		if (s == dc->nx) {
			dc->nx = NULL;
			if (dc->flush_held) { /* m's dot goes alone */
				dc->flush_held = 0;
				dc_flush(dc);
			}
			dc_unclaim(dc, s->job);
			return;
		}
		conn_resume(dc->c);
		dc_next(dc);
		return;
	}
	s->st = DC_MSG_READ;
	if (s == dc->nx) {
		/* Behind m's dot: now when the dot waits for it, else with the
		 * dot (dc_finish_body()) or after m (dc_after_msg()). */
		if (dc->flush_held) {
			dc->flush_held = 0;
			dc_submit_behind(dc);
			dc_flush(dc);
		}
		return;
	}
	/* Replies that came in while we read were held back (dc_data()):
	 * deliver them at the end of this turn. */
	conn_resume(dc->c);
	dc_submit(dc, s);
}

/* ---- a message's verdict -------------------------------------------------- */

char *drain_conn_fmt_secs(char *out, size_t n, uint64_t us)
{
	/* Rounded to what is shown: hundredths below 1 s, tenths below 10 s;
	 * a value that rounds up into the next range is shown there. */
	uint64_t hundredths = (us + 5000u) / 10000u, tenths = (us + 50000u) / 100000u;
	int len;

	if (hundredths < 100u)
		len = snprintf(out, n, "0.%02" PRIu64, hundredths);
	else if (tenths < DRAIN_SECS_WHOLE_TENTHS)
		len = snprintf(out, n, "%" PRIu64 ".%" PRIu64, tenths / 10u, tenths % 10u);
	else
		len = snprintf(out, n, "%" PRIu64, (us + 500000u) / 1000000u);
	if (len <= 0 || (size_t)len >= n) {
		snprintf(out, n, "?");
		return out;
	}
	/* Trailing zeros go, and a bare point with them: "0.10" -> "0.1",
	 * "0.00" -> "0", "2.0" -> "2". */
	if (strchr(out, '.')) {
		while (len > 0 && out[len - 1] == '0')
			out[--len] = '\0';
		if (len > 0 && out[len - 1] == '.')
			out[--len] = '\0';
	}
	return out;
}

/* "delay=D, delays=a/b/c/d" of message s of dc, decided at now (the
 * meaning of each: drain_conn.h). The connection's setup counts for its
 * first message only. */
static void dc_delays(struct drain_conn *dc, const struct dc_msg *s, uint64_t now, char *out,
		      size_t n)
{
	const struct drain_job *j = dc->job;
	uint64_t arrival = s->hdr.time_us, start = j->started_us, sub = s->submit_us;
	uint64_t a, b, c = 0, d;
	char s0[DRAIN_CONN_SECS_MAX], s1[DRAIN_CONN_SECS_MAX], s2[DRAIN_CONN_SECS_MAX],
	     s3[DRAIN_CONN_SECS_MAX], s4[DRAIN_CONN_SECS_MAX];

	if (!dc->setup_counted && dc->ready_us > dc->open_us)
		c = dc->ready_us - dc->open_us;
	a = start > arrival ? start - arrival : 0;
	b = sub > start ? sub - start : 0;
	b = b > c ? b - c : 0;
	d = now > sub ? now - sub : 0;
	snprintf(out, n, "delay=%s, delays=%s/%s/%s/%s",
		 drain_conn_fmt_secs(s0, sizeof(s0), now > arrival ? now - arrival : 0),
		 drain_conn_fmt_secs(s1, sizeof(s1), a), drain_conn_fmt_secs(s2, sizeof(s2), b),
		 drain_conn_fmt_secs(s3, sizeof(s3), c), drain_conn_fmt_secs(s4, sizeof(s4), d));
}

/* The RFC 3463 status of r for dsn=: the server's, else its class's. */
static const char *result_dsn(const struct smtp_client_result *r)
{
	if (r->enh[0])
		return r->enh;
	return r->code >= 500 ? "5.0.0" : r->code >= 400 ? "4.0.0" : "2.0.0";
}

/* Room in b for dc's recipients, made at the first bounce of a message (a
 * delivered one allocates nothing); 0 or -ENOMEM. */
static int bounces_room(struct drain_bounces *b, uint32_t n)
{
	if (b->rcpt)
		return 0;
	b->rcpt = calloc(n, sizeof(*b->rcpt));
	b->why = calloc(n, sizeof(*b->why));
	b->diag = calloc(n, sizeof(*b->diag));
	return b->rcpt && b->why && b->diag ? 0 : -ENOMEM;
}

/* Recipient i's result: log it, count it, append its DONE when delivered,
 * add it to b when bounced. times is dc_delays()'s and qid the message's,
 * both NULL when info lines are not logged (the common, fast case: the
 * delivery line and its texts are then never made). */
static void dc_verdict(struct drain_conn *dc, uint32_t i, struct drain_bounces *b,
		       uint64_t now, const char *qid, const char *times)
{
	struct drain_job *j = dc->job;
	const struct smtp_client_result *r = smtp_client_result(dc->cl, i);
	const char *status = "deferred";
	char to[LOG_ADDR_MAX], text[LOG_ADDR_MAX], qbuf[QID_MAX];
	int rc;

	if (times)
		log_printable(to, sizeof(to), dc->m->raddr[i], dc->m->rlen[i]);
	if (!r) {
		j->deferred++;
		metrics_add(METRIC_DELIVERIES_DEFERRED, 1);
		job_why(j, "no result from %s", j->relay);
		if (times)
			log_info("%s: to=<%s>, relay=%s, %s, dsn=4.0.0, status=deferred (no result)",
				 qid, to, j->relay, times);
		return;
	}
	if (r->status == SMTP_CLIENT_DELIVERED) {
		status = "sent";
		j->sent++;
		metrics_add(METRIC_DELIVERIES_SENT, 1);
		/* The DONE is encoded now; it goes out lazily, with a later
		 * group commit (at the latest when this connection waits for
		 * it: drain_conn_enter). A crash before that resends this
		 * message once. The job waits for it, so its end means its
		 * mail is recorded. */
		rc = spool_append_done_lazy(j->env->sh, dc->m->msgid, dc->m->rcpt[i],
					    SPOOL_DONE_DELIVERED, done_durable, &dc->dur);
		if (rc) {
			log_err("%s: to=<%s>: delivered, but recording it failed (%s): it may be sent again",
				qid_format(dc->m->msgid, qbuf),
				log_printable(to, sizeof(to), dc->m->raddr[i], dc->m->rlen[i]), strerror(-rc));
		} else {
			j->dones_pending++;
			dc->dur.pending++;
			dc->dur.cur++;
		}
		dc->delivered++;
	} else if (r->status == SMTP_CLIENT_BOUNCED && bounces_room(b, dc->m->nrcpt) == 0) {
		struct dsn_rcpt *w = &b->why[b->n];

		status = "bounced";
		j->bounced++;
		metrics_add(METRIC_DELIVERIES_BOUNCED, 1);
		b->rcpt[b->n] = dc->m->rcpt[i];
		w->action = DSN_ACTION_FAILED;
		w->status = r->enh[0] ? r->enh : DRAIN_DIAG_DEFAULT_STATUS;
		if (!r->local) {
			/* Diagnostic-Code: smtp; the reply as the server gave it
			 * (RFC 3464 2.3.6): its enhanced code only if it sent one. */
			int dn = snprintf(b->diag[b->n], DRAIN_DIAG_MAX, "%d %s%s%.*s", r->code,
					  r->enh_sent ? r->enh : "", r->enh_sent ? " " : "",
					  (int)r->text_len, r->text);
			w->remote_mta = b->remote;
			w->diagnostic = b->diag[b->n];
			w->diag_len = dn < 0 ? 0 : dn >= DRAIN_DIAG_MAX ? DRAIN_DIAG_MAX - 1 : (size_t)dn;
		}
		w->last_attempt = (time_t)(now / 1000000);
		b->n++;
	}
	if (!strcmp(status, "deferred")) {
		j->deferred++;
		metrics_add(METRIC_DELIVERIES_DEFERRED, 1);
		job_why(j, "%d %s %s", r->code, r->enh,
			log_printable(text, sizeof(text), r->text, r->text_len));
	}
	if (!times)
		return;
	log_printable(text, sizeof(text), r->text, r->text_len);
	/* The TLS of the session (Exim's X=) at the end, only when there is
	 * one, so that the Postfix fields before it parse as Postfix's. */
	log_info("%s: to=<%s>, relay=%s, %s, dsn=%s, status=%s (%d %s %s)%s%s",
		 qid, to, j->relay, times, result_dsn(r), status, r->code, r->enh, text,
		 dc->tls_text[0] ? ", tls=" : "", dc->tls_text);
}

static void bounce_committed(void *arg, int err);

/* Queue the DSN and the bounced recipients' DONEs: COMMITTING on success. */
static void dc_bounce(struct drain_conn *dc, const struct drain_bounces *b, uint64_t now,
		      const char *qid)
{
	struct drain_conn_env *env = dc->job->env;
	struct bounce_req br;
	uint64_t dsn_id;
	int rc;

	br = bounce_req_make(env->hostname, &dc->m->hdr, &dc->m->msg, b->rcpt, b->why, b->n,
			     SPOOL_DONE_BOUNCED, now);
	rc = bounce_queue(env->sh, &br, &dc->dsn, &dsn_id, bounce_committed, dc);
	if (rc) {
		log_err("%s: cannot bounce (%s); recipients stay queued", qid, strerror(-rc));
		return;
	}
	dc->spool_pending = 1;
	drain_conn_enter(dc, DRAIN_CONN_COMMITTING, "bouncing");
	if (dsn_id) {
		char dq[QID_MAX];
		qid_format(dsn_id, dq);
		log_info("%s: sender non-delivery notification: %s", qid, dq);
	}
}

/* The message is finished here: the next one (the one pipelined behind
 * it, read ahead, or a fresh take), or close when the session ended. */
static void dc_after_msg(struct drain_conn *dc)
{
	/* m's dot was answered, so it went out, held or not (a send in
	 * flight takes the rest of the output with it when it completes):
	 * nothing waits behind it now. Left set, the next message (nx, its
	 * read slower than the customer's reply, e.g. from disk) would be
	 * submitted and never sent. */
	dc->flush_held = 0;
	dc_msg_clear(dc->m);
	if (smtp_client_closed(dc->cl)) {
		/* The failure that ended the session decided the message
		 * behind the dot too (deferred): it was never begun, it goes
		 * back untried. Its MSG_DONE is taken and dropped. */
		if (dc->nx && dc->nx->st == DC_MSG_SENT)
			(void)smtp_client_abort(dc->cl, "session ended");
		dc_give_back(dc);
		dc_close_conn(dc, "session ended");
		return;
	}
	/* A next message read ahead but not sent yet goes back when the
	 * session is worn (dc_next() QUITs, a fresh connection takes it) or,
	 * being dc's job's, when a job waits for its first connection (fresh
	 * first). */
	if (dc->nx && dc->nx->st != DC_MSG_SENT &&
	    (smtp_client_worn(dc->cl) || (dc->nx->job == dc->job && dest_fresh_job(dc))))
		dc_give_back(dc);
	if (dc->nx) {
		if (dc->nx->job != dc->job)
			dc_go_on(dc, dc->nx->job); /* a fresh job's first, read ahead */
		dc->m = dc->nx;
		dc->nx = NULL;
	}
	switch (dc->m->st) {
	case DC_MSG_SENT: /* its replies are being read: read the next ahead */
		if (dc->state != DRAIN_CONN_SENDING)
			drain_conn_enter(dc, DRAIN_CONN_SENDING, "the next message behind the dot");
		dc_read_ahead(dc);
		break;
	case DC_MSG_READ: /* read ahead, not sent behind the dot */
		if (dc->state != DRAIN_CONN_SENDING)
			drain_conn_enter(dc, DRAIN_CONN_SENDING, "the next message, read ahead");
		dc_submit(dc, dc->m);
		break;
	case DC_MSG_READING: /* record_read() goes on with it */
		drain_conn_enter(dc, DRAIN_CONN_READING, "the next message, read ahead");
		break;
	default:
		dc_next(dc);
	}
}

/* The client finished a message: log each recipient, append a DONE per
 * delivered one, bounce the 5xx ones with a DSN, leave the 4xx queued. */
static void msg_done(struct drain_conn *dc)
{
	struct drain_job *j = dc->job;
	struct drain_bounces b;
	char qid[QID_MAX], times[DRAIN_TIMES_MAX];
	uint64_t now = now_wall_us();
	unsigned delivered;
	/* The delivery lines are made only when they are logged: formatting
	 * them was a third of a drain's CPU per message. */
	int logged = log_enabled(LOGL_INFO);

	memset(&b, 0, sizeof(b));
	delivered = dc->delivered;
	if (logged) {
		qid_format(dc->m->msgid, qid);
		dc_delays(dc, dc->m, now, times, sizeof(times));
	}
	dc->setup_counted = 1;
	for (uint32_t i = 0; i < dc->m->nrcpt; i++)
		dc_verdict(dc, i, &b, now, logged ? qid : NULL, logged ? times : NULL);
	if (j->atrn && dc->delivered > delivered)
		drain_atrn_delivered(j->atrn); /* etrnctl status's progress */
	if (dc->dur.cur) {
		/* The dot waits below done_window, so there is a slot. */
		struct drain_durable_msg *m =
			&dc->dur.per_msg[(dc->dur.head + dc->dur.msgs) % j->env->done_window];

		m->dones = dc->dur.cur;
		m->job = j;
		dc->dur.msgs++;
		dc->dur.cur = 0;
	}
	if (b.n) {
		/* Remote-MTA names the host: "host" of "host[addr]:port". */
		relay_host(j->relay, b.remote, sizeof(b.remote));
		dc_bounce(dc, &b, now, qid_format(dc->m->msgid, qid));
	}
	free(b.rcpt);
	free(b.why);
	free(b.diag);
	if (dc->state == DRAIN_CONN_COMMITTING)
		return; /* bounce_committed() goes on (dc->dsn is borrowed) */
	dc_after_msg(dc);
}

/* Spool callback: the bounce (DSN and DONEs) is durable, or failed. */
static void bounce_committed(void *arg, int err)
{
	struct drain_conn *dc = arg;
	char qid[QID_MAX];

	dc->spool_pending = 0;
	if (err) {
		qid_format(dc->m->hdr.msgid, qid);
		log_err("%s: recording the bounce failed: %s; recipients stay queued", qid,
			strerror(-err));
	}
	if (dc->state != DRAIN_CONN_COMMITTING) {
		(void)dc_release(dc); /* closed meanwhile */
		return;
	}
	conn_resume(dc->c); /* input held back while the bounce was written */
	dc_after_msg(dc);
}

/* ---- the loop's callbacks ---------------------------------------------- */

static void *dc_connected(void *arg, struct conn *c, void *cookie, int err)
{
	struct drain_conn *dc = cookie;
	struct drain_job *j = dc->job;

	(void)arg;
	if (err) {
		log_warn("%s %.*s: connect to %s: %s; %s", job_kind(j), (int)j->len, j->dom,
			 j->relay, strerror(-err),
			 job_addr_left(j) ? "the next address follows" : "mail stays queued");
		job_why(j, "connect to %s: %s", j->relay, strerror(-err));
		/* An outbound job tries an address once (Postfix's smtp client):
		 * its scheduler moves to the next one, or defers; so does a drain
		 * with another address left (drain.c's job_next_addr()). */
		if (j->outbound || job_addr_left(j))
			j->gave_up = 1;
		dc->early = 1;
		drain_conn_enter(dc, DRAIN_CONN_CLOSED, "connect failed");
		(void)dc_release(dc);
		return NULL;
	}
	dc->c = c;
	drain_conn_enter(dc, DRAIN_CONN_GREETING, "connected");
	dc_arm(dc);
	return dc;
}

/* The body could not be queued: its recipients are deferred (stay
 * queued) and logged, the connection closes. */
static void dc_body_failed(struct drain_conn *dc)
{
	if (smtp_client_abort(dc->cl, "out of memory sending the body") ==
	    SMTP_CLIENT_EV_MSG_DONE)
		msg_done(dc);
	dc_close_conn(dc, "out of memory sending the body");
}

/* The final dot, once the previous message's DONEs are durable; the next
 * message's commands behind it when it is read (one send for both). */
static void dc_finish_body(struct drain_conn *dc)
{
	if (smtp_client_body_sent(dc->cl, conn_out(dc->c))) {
		dc_body_failed(dc);
		return;
	}
	if (dc->state == DRAIN_CONN_WAIT_DURABLE) {
		drain_conn_enter(dc, DRAIN_CONN_SENDING, "earlier DONEs durable");
		conn_resume(dc->c); /* replies held back meanwhile */
	}
	dc_submit_behind(dc);
	/* The next record is being read (its read was started only now, when
	 * the message before m was done): hold the dot until it is there, a
	 * loop turn for a record in the page cache, so one send carries both
	 * (record_read()); else every second message would go alone. */
	if (dc->nx && dc->nx->st == DC_MSG_READING && !dc->nx->local_again &&
	    dc->state == DRAIN_CONN_SENDING && smtp_client_can_submit(dc->cl))
		dc->flush_held = 1;
	dc_flush(dc);
	dc_arm(dc);
}

/* SEND_BODY: the stored body is already in on-the-wire form. Its dot waits
 * (WAIT_DURABLE) while the DONEs of the previous message are in flight: a
 * crash then resends at most that one message. 0, or -ENOMEM when it could
 * not be queued (then the connection is closing). */
static int dc_send_body(struct drain_conn *dc, struct conn *c)
{
	if (buf_append(conn_out(c), dc->m->msg.body, dc->m->msg.body_len)) {
		dc_body_failed(dc);
		return -ENOMEM;
	}
	if (dc->dur.msgs >= dc->job->env->done_window) {
		dc_flush(dc);
		drain_conn_enter(dc, DRAIN_CONN_WAIT_DURABLE, "earlier DONEs in flight");
		return 0;
	}
	dc_finish_body(dc);
	return dc->state == DRAIN_CONN_CLOSING ? -ENOMEM : 0;
}

/* The client ended the session (QUIT sent) because the TLS policy cannot
 * be met: the job holds its mail with the reason, opens nothing more. */
static void dc_tls_refused(struct drain_conn *dc)
{
	const struct smtp_client_result *r = smtp_client_close_reason(dc->cl);
	char why[DRAIN_HELD_MAX];

	snprintf(why, sizeof(why), "%.*s (%s)", r ? (int)r->text_len : 0, r ? r->text : "",
		 dc->job->relay);
	job_tls_held(dc->job, why);
	dc->end_why = "TLS policy not met";
	drain_conn_enter(dc, DRAIN_CONN_QUITTING, dc->end_why);
}

/* The client ended the session (QUIT sent) because the AUTH the job needs
 * cannot be done (not offered, refused): the job keeps its mail and opens
 * nothing more; its why has the reason. */
static void dc_auth_refused(struct drain_conn *dc)
{
	const struct smtp_client_result *r = smtp_client_close_reason(dc->cl);
	struct drain_job *j = dc->job;
	char text[LOG_ADDR_MAX];

	log_printable(text, sizeof(text), r ? r->text : "", r ? r->text_len : 0);
	job_why(j, "AUTH failed: %d %s %s (%s)", r ? r->code : 451, r ? r->enh : "4.7.0", text,
		j->relay);
	log_warn("%s %.*s (shard %u): %s; mail stays queued", job_kind(j), (int)j->len, j->dom,
		 j->env->index, j->why);
	j->gave_up = 1;
	dc->end_why = "AUTH failed";
	drain_conn_enter(dc, DRAIN_CONN_QUITTING, dc->end_why);
}

/* After a feed: follow the client's STARTTLS and AUTH steps in dc's state. */
static void dc_follow_tls(struct drain_conn *dc)
{
	if (smtp_client_auth_refused(dc->cl) && dc->state == DRAIN_CONN_GREETING)
		dc_auth_refused(dc);
	else if (smtp_client_tls_refused(dc->cl) &&
	    (dc->state == DRAIN_CONN_GREETING || dc->state == DRAIN_CONN_STARTTLS))
		dc_tls_refused(dc);
	else if (dc->state == DRAIN_CONN_GREETING && smtp_client_starttls_sent(dc->cl))
		drain_conn_enter(dc, DRAIN_CONN_STARTTLS, "STARTTLS offered");
}

/* 220 to STARTTLS: the loop runs the handshake on this socket from now on;
 * the input after the 220 is dropped (RFC 3207 5). Its end comes through
 * dc_tls_done(). */
static void dc_starttls(struct drain_conn *dc, struct conn *c)
{
	struct drain_job *j = dc->job;
	char host[DRAIN_RELAY_MAX], why[DRAIN_HELD_MAX];
	int rc;

	relay_host(j->relay, host, sizeof(host));
	rc = j->env->tls ? conn_starttls(c, j->env->tls, host) : -ENOPROTOOPT;
	if (rc == 0) {
		drain_conn_enter(dc, DRAIN_CONN_HANDSHAKE, "220 to STARTTLS");
		dc_arm(dc);
		return;
	}
	snprintf(why, sizeof(why), "cannot start TLS: %s (%s)", strerror(-rc), j->relay);
	if (j->tls == DOMTAB_TLS_MAY)
		j->tls_clear = dc->tls_fallback = 1;
	else
		job_tls_held(j, why);
	(void)smtp_client_abort(dc->cl, why);
	dc_close_conn(dc, "cannot start TLS");
}

static size_t dc_data(void *arg, struct conn *c, void *st, const char *p, size_t n)
{
	struct drain_conn *dc = st;
	enum smtp_client_event ev;
	size_t off = 0;

	(void)arg;
	if (dc->state == DRAIN_CONN_HANDING)
		return 0; /* leaving: nothing more is read here */
	dc->c = c; /* adopted: the kept input may come before loop_adopt() returns */
	/* Wait for the spool before reading further replies. Not the end of
	 * the connection (n == 0): the loop tells it once and ignores what we
	 * return, so it is acted on now (the spool's callback then finds the
	 * connection closed). */
	if (dc_spool_paused(dc) && n > 0)
		return 0;
	for (;;) {
		off += smtp_client_feed(dc->cl, p + off, n - off, conn_out(c), &ev);
		dc_follow_tls(dc);
		dc_arm(dc);
		switch (ev) {
		case SMTP_CLIENT_EV_STARTTLS:
			dc_flush(dc);
			dc_starttls(dc, c);
			return off; /* what followed the 220 is never read */
		case SMTP_CLIENT_EV_NEED_INPUT:
			dc_flush(dc);
			return n == 0 ? 0 : off;
		case SMTP_CLIENT_EV_READY:
			dc_next(dc);
			break;
		case SMTP_CLIENT_EV_SEND_BODY:
			if (dc_send_body(dc, c))
				return n;
			if (dc_spool_paused(dc))
				return off; /* the rest waits for the durable DONEs */
			break;
		case SMTP_CLIENT_EV_MSG_DONE:
			msg_done(dc);
			if (dc_spool_paused(dc)) {
				dc_flush(dc);
				return off; /* the rest waits (the loop keeps it) */
			}
			break;
		case SMTP_CLIENT_EV_CLOSE:
			dc_flush(dc);
			dc_close_conn(dc, "session over");
			return n;
		}
		if (dc->state == DRAIN_CONN_CLOSING)
			return n; /* nothing more is read from a closing socket */
		if (off >= n && ev != SMTP_CLIENT_EV_MSG_DONE && ev != SMTP_CLIENT_EV_READY)
			break;
		if (off >= n && n > 0)
			break;
	}
	dc_flush(dc);
	return off;
}

/* Log the TLS the handshake agreed, as Postfix does; keep it for the
 * delivery lines and for dc_meets(). */
static void dc_tls_log(struct drain_conn *dc, const struct tls_info *ti)
{
	struct drain_job *j = dc->job;

	dc->tls = ti->verified ? DRAIN_CONN_TLS_VERIFIED : DRAIN_CONN_TLS_ENCRYPTED;
	snprintf(dc->tls_text, sizeof(dc->tls_text), "%s:%s", ti->version, ti->cipher);
	log_info("drain %.*s (shard %u): %s TLS connection established to %s: %s with cipher %s (%d/%d bits)",
		 (int)j->len, j->dom, j->env->index, ti->verified ? "Verified" : "Untrusted",
		 j->relay, ti->version, ti->cipher, ti->bits, ti->bits);
}

/* The handshake failed (err < 0: the loop's verdict; it also cuts one
 * longer than tls_handshake_timeout, -ETIMEDOUT): may
 * goes on in the clear on the job's next connection (not counted against
 * drain_reconnect_attempts), must and verify hold the mail. The caller
 * closes (or lets the loop close) the connection. */
static void dc_tls_failed(struct drain_conn *dc, int err)
{
	struct drain_job *j = dc->job;
	char why[DRAIN_HELD_MAX];

	snprintf(why, sizeof(why), "cannot start TLS: handshake failed with %s: %s", j->relay,
		 strerror(-err));
	log_warn("drain %.*s (shard %u): %s%s", (int)j->len, j->dom, j->env->index, why,
		 j->tls == DOMTAB_TLS_MAY ? "; the next connection goes in the clear" : "");
	/* Only connections opened before tls_clear try TLS: at most
	 * drain_connections of these, so the fallback cannot loop. */
	if (j->tls == DOMTAB_TLS_MAY)
		j->tls_clear = dc->tls_fallback = 1;
	else
		job_tls_held(j, why);
	(void)smtp_client_abort(dc->cl, why);
	dc->end_why = "TLS handshake failed";
}

/* The loop's handshake ended. err < 0: the loop closes c (dc_close()
 * follows); may goes on in the clear on the job's next connection (the
 * failure counts against drain_reconnect_attempts), must and verify hold
 * the mail. Else EHLO again, or QUIT when verify finds the certificate
 * bad. */
static void dc_tls_done(void *arg, struct conn *c, void *st, int err)
{
	struct drain_conn *dc = st;
	struct drain_job *j = dc->job;
	const struct tls_info *ti = err ? NULL : conn_tls(c);
	char host[DRAIN_RELAY_MAX], why[DRAIN_HELD_MAX];

	(void)arg;
	if (dc->state != DRAIN_CONN_HANDSHAKE)
		return; /* closing already (shutdown) */
	relay_host(j->relay, host, sizeof(host));
	if (!ti) {
		dc_tls_failed(dc, err ? err : -EPROTO);
		dc->early = 1;
		drain_conn_enter(dc, DRAIN_CONN_CLOSING, dc->end_why); /* the loop closes */
		return;
	}
	dc_tls_log(dc, ti);
	if (j->tls == DOMTAB_TLS_VERIFY && !ti->verified) {
		snprintf(why, sizeof(why), "certificate verification failed for %s: %s", host,
			 ti->verify_error && ti->verify_error[0] ? ti->verify_error : "not verified");
		job_tls_held(j, why);
		if (smtp_client_tls_reject(dc->cl, conn_out(c), DRAIN_TLS_VERIFY_STATUS, why)) {
			dc_close_conn(dc, "cannot send QUIT");
			return;
		}
		dc->end_why = "certificate not verified";
		drain_conn_enter(dc, DRAIN_CONN_QUITTING, dc->end_why);
	} else if (smtp_client_tls_up(dc->cl, conn_out(c))) {
		dc_close_conn(dc, "cannot send EHLO");
		return;
	} else {
		drain_conn_enter(dc, DRAIN_CONN_GREETING, "TLS up: EHLO again");
	}
	dc_flush(dc);
	dc_arm(dc);
}

static void dc_timeout(void *arg, struct conn *c, void *st)
{
	struct drain_conn *dc = st;
	enum smtp_client_event ev;

	(void)arg;
	(void)c;
	if (dc_spool_paused(dc) || dc->state == DRAIN_CONN_HANDING)
		return; /* our side is slow, not the server; or leaving */
	if (dc->state == DRAIN_CONN_IDLE) {
		list_unlink(&dc->dest->idle, &dc->idle_node);
		dc_quit(dc, "idle: no next job within the linger time");
		return;
	}
	ev = smtp_client_timed_out(dc->cl);
	if (ev == SMTP_CLIENT_EV_MSG_DONE && dc->m->msgid)
		msg_done(dc);
	dc_close_conn(dc, dc_in_setup(dc) ?
		      "no greeting, EHLO, STARTTLS reply or TLS handshake within drain_greeting_timeout" :
		      "timed out waiting for the server");
}

static void dc_shutdown(void *arg, struct conn *c, void *st)
{
	struct drain_conn *dc = st;

	(void)arg;
	/* Stopping: finish nothing new, open nothing. A message in flight is
	 * left queued (its recipients have no DONE); the next ETRN sends it. */
	dc->job->env->stopping = 1;
	dc->job->next_msg = dc->job->nmsgs;
	if (dc->state == DRAIN_CONN_CONNECTING || dc->state == DRAIN_CONN_HANDING)
		return; /* the connect (or detach) completes with an error */
	if (dc->state == DRAIN_CONN_WAIT_SLOT || dc->state == DRAIN_CONN_IDLE) {
		if (dc->state == DRAIN_CONN_WAIT_SLOT)
			wait_remove(dc->job->env, dc);
		else
			list_unlink(&dc->dest->idle, &dc->idle_node);
		if (smtp_client_quit(dc->cl, conn_out(c)) == 0) {
			drain_conn_enter(dc, DRAIN_CONN_QUITTING, "shutdown");
			dc_flush(dc);
			return;
		}
	}
	(void)smtp_client_abort(dc->cl, "etrnd is shutting down");
	dc_close_conn(dc, "shutdown");
}

/* Why the connection ended, with the server's last word when it had one
 * (a 421, a refused greeting) or the client's local reason. */
static void dc_log_end(const struct drain_conn *dc)
{
	const struct drain_job *j = dc->job;
	const struct smtp_client_result *r = smtp_client_close_reason(dc->cl);
	char text[LOG_TEXT_MAX];

	if (r)
		log_info("%s %.*s (shard %u) to %s: connection ended after %u delivered: %s (%d %s %s)",
			 job_kind(j), (int)j->len, j->dom, j->env->index, j->relay, dc->delivered,
			 dc->end_why ? dc->end_why : "closed", r->code, r->enh,
			 log_printable(text, sizeof(text), r->text, r->text_len));
	else
		log_info("%s %.*s (shard %u) to %s: connection ended after %u delivered: %s",
			 job_kind(j), (int)j->len, j->dom, j->env->index, j->relay, dc->delivered,
			 dc->end_why ? dc->end_why : "closed");
}

/* Gone mid-message without a verdict: nothing is marked done, so the
 * recipients of s stay queued; each gets its deferred line once sent. */
static void dc_lost_msg(struct drain_conn *dc, const struct dc_msg *s, int sent)
{
	struct drain_job *j = dc->job;
	char qid[QID_MAX], to[LOG_ADDR_MAX], times[DRAIN_TIMES_MAX];

	qid_format(s->msgid, qid);
	job_why(j, "lost connection with %s while sending the message", j->relay);
	j->deferred += s->nrcpt;
	if (!sent) {
		log_info("%s: relay=%s, status=deferred (connection lost mid-transaction)",
			 qid, j->relay);
		return;
	}
	/* The recipients' addresses point into the record read for it. */
	dc_delays(dc, s, now_wall_us(), times, sizeof(times));
	for (uint32_t i = 0; i < s->nrcpt; i++) {
		log_printable(to, sizeof(to), s->raddr[i], s->rlen[i]);
		log_info("%s: to=<%s>, relay=%s, %s, dsn=4.4.2, status=deferred (%s)", qid, to,
			 j->relay, times, j->why);
	}
}

/* A connection that ended early: its job's last temporary failure is the
 * server's last word (a 421) when it had one, else what ended it. */
static void dc_why_end(struct drain_conn *dc)
{
	struct drain_job *j = dc->job;
	const struct smtp_client_result *r = smtp_client_close_reason(dc->cl);
	char text[LOG_ADDR_MAX];

	if (r && !r->local) {
		log_printable(text, sizeof(text), r->text, r->text_len);
		job_why(j, "%d %s %s", r->code, r->enh, text);
	} else if (r) {
		log_printable(text, sizeof(text), r->text, r->text_len);
		job_why(j, "%s (%s)", text, j->relay);
	} else if (dc->end_why && !strcmp(dc->end_why, "connection lost")) {
		job_why(j, "lost connection with %s", j->relay);
	} else {
		job_why(j, "%s (%s)", dc->end_why ? dc->end_why : "connection closed", j->relay);
	}
}

static void dc_close(void *arg, struct conn *c, void *st)
{
	struct drain_conn *dc = st;
	struct drain_job *j = dc->job;

	(void)arg;
	(void)c;
	if (dc->state != DRAIN_CONN_CLOSING) {
		/* Not closed by us: the loop saw the peer go (or shut down). */
		dc->early = dc->state != DRAIN_CONN_QUITTING;
		dc->end_why = dc->early ? "connection lost" : dc->end_why;
	}
	if (dc->early && !dc->tls_fallback)
		dc_why_end(dc);
	/* Its why says more than dc_why_end()'s. A message whose record is
	 * still being read, or whose verdict is being recorded (COMMITTING),
	 * needs no line; neither does one the client gave up already. */
	if (!smtp_client_closed(dc->cl)) {
		if (dc->m->msgid && dc->m->st != DC_MSG_READING &&
		    dc->state != DRAIN_CONN_COMMITTING)
			dc_lost_msg(dc, dc->m, dc->m->st == DC_MSG_SENT &&
				    (dc->state == DRAIN_CONN_SENDING ||
				     dc->state == DRAIN_CONN_WAIT_DURABLE));
	}
	dc_give_back(dc);
	if (dc->state == DRAIN_CONN_WAIT_SLOT)
		wait_remove(j->env, dc);
	if (dc->state == DRAIN_CONN_IDLE)
		list_unlink(&dc->dest->idle, &dc->idle_node);
	dc_log_end(dc);
	dc->c = NULL;
	drain_conn_enter(dc, DRAIN_CONN_CLOSED, "socket gone");
	(void)dc_release(dc);
}

static void *dc_open_unused(void *arg, struct conn *c, const char *peer)
{
	(void)arg;
	(void)c;
	(void)peer;
	panic("drain connections are never accepted");
}

static const struct conn_ops drain_conn_ops = {
	.open = dc_open_unused,
	.data = dc_data,
	.timeout = dc_timeout,
	.shutdown = dc_shutdown,
	.close = dc_close,
	.connected = dc_connected,
	.tls_done = dc_tls_done,
};

/* The two message slots of a new connection, both free. */
static void dc_slots_init(struct drain_conn *dc)
{
	for (int i = 0; i < 2; i++) {
		dc->slot[i].dc = dc;
		buf_init(&dc->slot[i].rec, 0);
	}
	dc->m = &dc->slot[0];
}

/* One more connection for j to its destination (CONNECTING); 0 or -errno
 * (nothing left behind then). */
static int dc_open(struct drain_job *j)
{
	struct drain_conn_env *env = j->env;
	struct drain_conn *dc = calloc(1, sizeof(*dc));
	int rc;

	if (dc) {
		dc->cl = smtp_client_new(env->ccf, j->relay);
		dc->dur.per_msg = calloc(env->done_window, sizeof(*dc->dur.per_msg));
		if (dc->cl)
			(void)smtp_client_set_tls(dc->cl, job_client_tls(j));
		if (dc->cl && j->auth_user &&
		    smtp_client_set_auth(dc->cl, j->auth_user, j->auth_pass) != 0)
			dc->cl = smtp_client_free(dc->cl);
	}
	if (!dc || !dc->cl || !dc->dur.per_msg) {
		if (dc) {
			smtp_client_free(dc->cl);
			free(dc->dur.per_msg);
		}
		free(dc);
		return -ENOMEM;
	}
	dc->job = j;
	dc->dest = j->dest;
	dc->dur.dc = dc;
	dc->state = DRAIN_CONN_CONNECTING;
	dc->open_us = now_wall_us();
	dc_slots_init(dc);
	buf_init(&dc->dsn, 0);
	/* The connection's state is its cookie until connected() returns it. */
	rc = loop_connect(env->loop, (struct sockaddr *)&j->dst, j->dstlen,
			  DRAIN_CONNECT_TIMEOUT_MS, &drain_conn_ops, env, dc);
	if (rc) {
		smtp_client_free(dc->cl);
		free(dc->dur.per_msg);
		free(dc);
		return rc;
	}
	job_got_conn(j);
	j->dest->conns++;
	env->conns++;
	return 0;
}

int drain_conn_job_start(struct drain_job *j)
{
	struct drain_conn_env *env = j->env;
	struct drain_dest *ds;
	int rc = 0;

	if (env->stopping)
		return -ESHUTDOWN;
	if (j->tls != DOMTAB_TLS_MAY && !env->tls) {
		job_tls_held(j, "TLS is required, but etrnd has no TLS client context");
		return -ENOPROTOOPT;
	}
	ds = dest_get(env, j);
	if (!ds)
		return -ENOMEM;
	j->dest = ds;
	list_append(&ds->jobs, &j->dest_node);
	/* Lingering connections first: no connect, no greeting, no EHLO. */
	while (j->conns < env->job_conns && job_wants(j) && dest_idle_take(ds, j))
		;
	while (ds->conns < env->dest_limit && job_wants(j)) {
		rc = dc_open(j);
		if (rc)
			break;
	}
	if (j->conns == 0 && (rc || !job_wants(j))) {
		list_unlink(&ds->jobs, &j->dest_node);
		dest_put(env, ds);
		return rc ? rc : -ENOENT;
	}
	if (j->conns == 0)
		job_fresh_add(j);
	if (rc)
		log_warn("drain %.*s: cannot open more connections to %s: %s", (int)j->len,
			 j->dom, j->relay, strerror(-rc));
	if (j->conns == 0)
		log_info("%s %.*s (shard %u): waits for a connection to %s (%u open, limit %u)",
			 job_kind(j), (int)j->len, j->dom, env->index, j->relay, ds->conns, env->dest_limit);
	return 0;
}

/* The ATRN connection's new client: waiting for the customer's greeting
 * (first), or going on with ss. No STARTTLS: a TLS session up on the
 * customer's connection stays up, and none is started inside ATRN. */
static struct drain_conn *dc_atrn_new(struct drain_job *j, struct drain_dest *ds, int first,
				      const struct smtp_client_session *ss)
{
	struct drain_conn_env *env = j->env;
	struct drain_conn *dc = calloc(1, sizeof(*dc));

	if (!dc)
		return NULL;
	dc->cl = smtp_client_new(env->ccf, j->relay);
	dc->dur.per_msg = calloc(env->done_window, sizeof(*dc->dur.per_msg));
	if (!dc->cl || !dc->dur.per_msg || (!first && smtp_client_resume(dc->cl, ss))) {
		smtp_client_free(dc->cl);
		free(dc->dur.per_msg);
		free(dc);
		return NULL;
	}
	(void)smtp_client_set_tls(dc->cl, SMTP_CLIENT_TLS_NONE);
	dc->job = j;
	dc->dest = ds;
	dc->dur.dc = dc;
	dc->atrn = j->atrn;
	dc->state = DRAIN_CONN_CONNECTING;
	dc->open_us = now_wall_us();
	dc_slots_init(dc);
	buf_init(&dc->dsn, 0);
	return dc;
}

int drain_conn_atrn_start(struct drain_job **jobs, size_t n, struct conn_parcel *parcel,
			  int first, int last, const struct smtp_client_session *ss)
{
	struct drain_conn_env *env = jobs[0]->env;
	struct drain_dest *ds = calloc(1, sizeof(*ds));
	struct drain_conn *dc = ds ? dc_atrn_new(jobs[0], ds, first, ss) : NULL;
	const struct tls_info *ti;
	struct conn *c;

	if (!dc || env->stopping) {
		free(dc ? dc->dur.per_msg : NULL);
		smtp_client_free(dc ? dc->cl : NULL);
		free(dc);
		free(ds);
		conn_parcel_free(parcel);
		return dc ? -ESHUTDOWN : -ENOMEM;
	}
	/* A destination of the session's own (dest_get() never finds it: its
	 * address is none), holding its jobs so the connection goes from one
	 * to the next (dest_next_job()). */
	ds->atrn = jobs[0]->atrn;
	list_append(&env->dests, &ds->node);
	for (size_t i = 0; i < n; i++) {
		jobs[i]->dest = ds;
		list_append(&ds->jobs, &jobs[i]->dest_node);
	}
	dc->atrn_last = last;
	jobs[0]->conns++;
	ds->conns++;
	env->conns++;
	if (first)
		drain_conn_enter(dc, DRAIN_CONN_GREETING, "ATRN: waiting for the customer's 220");
	c = loop_adopt(env->loop, parcel, &drain_conn_ops, env, dc);
	if (!c) {
		int rc = -errno;
		jobs[0]->conns--;
		ds->conns--;
		env->conns--;
		for (size_t i = 0; i < n; i++)
			list_unlink(&ds->jobs, &jobs[i]->dest_node);
		dest_put(env, ds);
		smtp_client_free(dc->cl);
		free(dc->dur.per_msg);
		free(dc);
		return rc ? rc : -EMFILE;
	}
	dc->c = c;
	if ((ti = conn_tls(c))) {
		dc->tls = ti->verified ? DRAIN_CONN_TLS_VERIFIED : DRAIN_CONN_TLS_ENCRYPTED;
		snprintf(dc->tls_text, sizeof(dc->tls_text), "%s:%s", ti->version, ti->cipher);
	}
	if (first)
		dc_arm(dc);
	else
		dc_next(dc); /* the session goes on where the last shard left it */
	return 0;
}

void drain_conn_env_fini(struct drain_conn_env *env)
{
	struct list_node *n;

	while ((n = list_pop(&env->dests)))
		free(LIST_ENTRY(n, struct drain_dest, node));
}
