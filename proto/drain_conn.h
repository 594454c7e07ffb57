/* SPDX-License-Identifier: MIT */
/*
 * drain_conn: one outbound connection of a drain. It takes messages one by
 * one from its job's snapshot of the queue, reads each record from the
 * spool, hands it to the SMTP client (proto/smtp_client.h), streams the
 * body, and on the verdict appends a DONE per delivered recipient and
 * bounces the 5xx ones with a DSN; 4xx stay queued. An explicit state
 * (enum drain_conn_state) with one logged transition, drain_conn_enter().
 *
 * A connection belongs to a destination (host:port, struct drain_dest) and
 * serves one job at a time: when its job has nothing left to try it takes
 * the next job for the same destination that wants a connection (domains
 * share connections). Each thread keeps at most env->dest_limit connections
 * per destination; a job that finds them all busy waits for one, and is
 * served first: a connection that has just finished a message of a job
 * whose first message went out already takes the oldest job still waiting
 * for its first (fresh first), so a burst of ETRNs for many domains that
 * share a destination gives each its first message within one message
 * time per connection, not after the earlier domains' whole queues. An
 * outbound job's connection with nothing left and no job waiting lingers
 * IDLE for env->linger_ms (Postfix's connection cache): the next job to
 * the destination takes it without a new connect, greeting or EHLO. A
 * connection that ended early (421, lost, timed out, no greeting) while its
 * job had untried mail is replaced, at most env->reconnects times per job.
 * TLS (RFC 3207, Postfix's smtp_tls_security_level): the job's domain says
 * may (STARTTLS when offered, else clear; a failed handshake makes the
 * job's next connections go in the clear), must (never in the clear) or
 * verify (must, and the certificate checked against the trust store and
 * the relay's host name). A connection that cannot meet must or verify
 * QUITs, its job gives up at once (no reconnect would change it) and the
 * reason is kept in the job's held[] for the log and `etrnctl status`.
 * Crash bound: the final dot of a message is not sent while done_window
 * delivered messages of the connection still have DONEs in flight, so a
 * kill -9 makes at most done_window messages per connection go out twice.
 *
 * Each recipient's verdict is logged on one Postfix-shaped line:
 *   QID: to=<rcpt>, relay=host[addr]:port, delay=D, delays=a/b/c/d,
 *   dsn=X.Y.Z, status=sent|deferred|bounced (reply)[, tls=version:cipher]
 * delay: since the message arrived; a: arrival to the job's start; b: the
 * job's start until the message went to the SMTP client on its connection
 * (waiting for a connection and for the spool read), less c; c: that
 * connection's setup (connect, greeting, EHLO, STARTTLS), counted for its
 * first message only (0 on a reused connection); d: MAIL FROM to the final
 * reply. dsn is the reply's enhanced code (RFC 3463), else its class's
 * X.0.0. A job keeps its last temporary failure in why[].
 */
#ifndef ETRND_PROTO_DRAIN_CONN_H
#define ETRND_PROTO_DRAIN_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/domtab.h"
#include "core/list.h"
#include "core/loop.h"
#include "proto/drain_resolve.h"
#include "proto/drain_status.h"
#include "proto/smtp_client.h"
#include "store/spool.h"
#include "store/spool_index.h"

/*
 * The states, and what moves a connection between them:
 *
 *   CONNECTING --connected--> GREETING --EV_READY--> (next)
 *   GREETING   --STARTTLS sent (offered, policy may/must/verify)-->
 *              STARTTLS --220--> HANDSHAKE --tls_done(0)--> GREETING
 *              (EHLO again), or QUITTING when verify finds the
 *              certificate bad; STARTTLS --454 and may--> (next) in clear
 *   (next): READING when a message's read started, WAIT_SLOT when every
 *           spool read slot is busy, QUITTING when the snapshot is done
 *           and no other job for the destination wants a connection (else
 *           the connection moves to that job), or when the session spent
 *           its non-mail commands (smtp_client_worn(): a fresh one follows)
 *   WAIT_SLOT  --a read slot came free--> (next)
 *   READING    --read done--> SENDING (submitted), or (next) when the
 *              record is unusable or the client decided it locally
 *   SENDING    --EV_SEND_BODY, done_window messages' DONEs in flight-->
 *              WAIT_DURABLE --the oldest durable--> SENDING (dot sent)
 *   (next)     --another job waits (a fresh one, or any when dc's job is
 *              done)--> (next) with that job at once: each DONE in flight
 *              remembers its job, which ends once they are durable
 *   (next)     --nothing left, DONEs in flight, the connection will linger
 *              or hand the ATRN session on--> WAIT_SWITCH --all durable-->
 *              (next)
 *   (next)     --an outbound job done, none waits, its DONEs durable-->
 *              IDLE --a new job for the destination--> READING or
 *              WAIT_SLOT with it; IDLE --env->linger_ms--> QUITTING
 *   SENDING    --EV_MSG_DONE--> COMMITTING (a bounce to record), or (next)
 *   COMMITTING --bounce recorded--> (next)
 *   QUITTING, and any state with a socket --EV_CLOSE, time-out, shutdown,
 *              refusal--> CLOSING (conn_close() called)
 *   any state --the loop's close callback, or a failed connect--> CLOSED
 *
 * ATRN (RFC 2645, drain_conn_atrn_start()): no CONNECTING; the customer's
 * connection is adopted in GREETING (the first shard: wait for its 220,
 * EHLO) or goes straight to (next) with the session carried over (later
 * shards). (next) with nothing left --not the last shard--> HANDING
 * --conn_detach() done--> CLOSED (the connection lives on elsewhere);
 * the last shard QUITs as above.
 *
 * READING, WAIT_DURABLE and COMMITTING pause input (replies wait for the
 * spool) and ignore the idle timer (our side is slow, not the server).
 * GREETING and STARTTLS wait at most env->greeting_ms for each reply;
 * HANDSHAKE is bounded by the loop's tls_handshake_timeout (the loop runs
 * no other timer then), whose cut comes as a failed handshake.
 */
enum drain_conn_state {
	DRAIN_CONN_CONNECTING = 0, /* loop_connect() submitted; no socket yet */
	DRAIN_CONN_GREETING,       /* connected: greeting and EHLO under way */
	DRAIN_CONN_STARTTLS,       /* STARTTLS sent; waiting for its 220 */
	DRAIN_CONN_HANDSHAKE,      /* TLS handshake running (conn_starttls) */
	DRAIN_CONN_WAIT_SLOT,      /* session idle, on the wait list for a read slot */
	DRAIN_CONN_READING,        /* the message's record being read (spool I/O) */
	DRAIN_CONN_SENDING,        /* the message is with the SMTP client */
	DRAIN_CONN_WAIT_DURABLE,   /* body queued; its dot waits until fewer
	                              than done_window delivered messages of
	                              this connection have DONEs in flight */
	DRAIN_CONN_WAIT_SWITCH,    /* idle, nothing left; lingers or hands
	                              the ATRN session on once its DONEs are
	                              durable */
	DRAIN_CONN_COMMITTING,     /* its bounce (DSN + DONEs) being written */
	DRAIN_CONN_IDLE,           /* an outbound job's connection with no job:
	                              kept env->linger_ms for the next job to
	                              its destination (Postfix's connection
	                              cache), then QUIT */
	DRAIN_CONN_QUITTING,       /* QUIT sent; waiting for 221 or EOF */
	DRAIN_CONN_HANDING,        /* ATRN: conn_detach() called, the
	                              connection goes on to the next shard */
	DRAIN_CONN_CLOSING,        /* conn_close() called; close callback due */
	DRAIN_CONN_CLOSED,         /* socket gone (or never made) */
	DRAIN_CONN_NSTATES
};

/* A job's last temporary failure text (drain_job.why); drain.h's
 * DRAIN_WHY_MAX is the same. */
#define DRAIN_JOB_WHY_MAX 512

struct drain_conn;
struct drain_job;
struct tls_ctx;
struct drain_dest;                 /* one destination's connections (per thread) */
struct drain_atrn;                 /* an ATRN session (proto/drain_atrn.h) */

/*
 * What the connections of one engine thread share; owned by that thread's
 * struct drain and only touched on its thread. job_idle is called when a
 * job's last connection has been freed and its last DONE is durable: the
 * job may be freed then, and another job may be started from it
 * (drain_conn_job_start()).
 */
struct drain_conn_env {
	struct loop *loop;
	struct spool_shard *sh;
	struct spool_index *idx;
	const struct smtp_client_conf *ccf;
	const char *hostname;          /* for DSNs */
	unsigned index;                /* thread (shard) number, for logs */
	unsigned conns;                /* drain_conn structs alive */
	/* Connections waiting for one of the shard's read slots (many drains
	 * at once want more reads than the shard runs in parallel). */
	struct list waiting;           /* of drain_conn.wait_node */
	struct list dests;             /* of struct drain_dest, with jobs or conns */
	unsigned dest_limit;           /* connections per destination, this thread */
	unsigned job_conns;            /* drain_connections: per job at most */
	unsigned reconnects;           /* drain_reconnect_attempts, per job */
	unsigned greeting_ms;          /* drain_greeting_timeout */
	unsigned done_window;          /* drain_done_window: >= 1 */
	unsigned linger_ms;            /* an outbound job's connection waits
	                                  this long (IDLE) for the next job to
	                                  its destination; 0: QUIT at once */
	struct tls_ctx *tls;           /* client context (core/tls.h); NULL:
	                                  STARTTLS never tried (may goes in the
	                                  clear, must/verify stay held) */
	int stopping;                  /* the loop is shutting down: open nothing */
	void (*job_idle)(struct drain_job *j);
};

/*
 * One ETRN's drain as every engine thread runs it (fan-out): set once a
 * job of it, on any thread, has its first connection. A thread then serves
 * the fresh jobs no thread has begun before those another has (each
 * domain's first message needs one thread, not all of them). Shared by
 * its jobs, freed by the last drain_begun_put().
 */
struct drain_begun {
	int begun;                     /* atomic */
	unsigned refs;                 /* atomic */
};

struct drain_begun *drain_begun_new(unsigned refs);
void drain_begun_put(struct drain_begun *b);

/*
 * One thread's part of one domain's drain. Owned by proto/drain.c (which
 * links it into its thread's list and frees it from job_idle); each of its
 * connections and each of its queued DONE records points to it, so it lives
 * while any of them does: a connection is freed only after its spool I/O
 * completed, hence the job outlives all I/O done on its behalf.
 */
struct drain_job {
	struct drain_conn_env *env;
	struct list_node node;         /* the thread's list (drain.c) */
	char dom[DRAIN_DOMAIN_MAX];
	size_t len;
	struct sockaddr_storage dst;
	socklen_t dstlen;
	char relay[DRAIN_RELAY_MAX];
	uint64_t *msgs;                /* snapshot of the queue, arrival order */
	size_t nmsgs, next_msg;        /* each message goes to one connection */
	unsigned conns;                /* drain_conn structs serving it now */
	unsigned dones_pending;        /* its DONE records not yet durable */
	/* ETRN: every address to try, dst being addrs->a[addr] (drain.c
	 * moves the job on to the next one when it gives up on dst with mail
	 * untried, and frees it with the job); NULL: dst is the only one. */
	struct resolver_list *addrs;
	unsigned addr;
	struct drain_dest *dest;       /* set by drain_conn_job_start() */
	struct list_node dest_node;    /* dest's jobs, until the job ends */
	/* Fresh first (issue 17): while it has never had a connection the
	 * job waits on its destination's fresh list, and the next connection
	 * that finishes a message of a job already under way comes to it
	 * before going on (Postfix's qmgr gives each destination a turn). */
	struct list_node fresh_node;
	int fresh;                     /* on dest's fresh list (1) or, begun
	                                  by another thread, its late one (2) */
	struct drain_begun *begun;     /* an ETRN fan-out's, or NULL */
	unsigned failures;             /* connections that ended early */
	int gave_up;                   /* over env->reconnects: open no more */
	enum domtab_tls tls;           /* the domain's policy */
	int tls_clear;                 /* may: a handshake failed, go in clear */
	char held[DRAIN_HELD_MAX];     /* why its mail stays held ("" = not
	                                  for a TLS reason): TLS policy unmet */
	uint64_t started_us;
	uint64_t sent, deferred, bounced;
	struct drain_atrn *atrn;       /* the ATRN session it is part of, or
	                                  NULL (ETRN, flush) */
	int outbound;                  /* a scheduler's job (drain_outbound()):
	                                  a connect that fails gives up at once
	                                  (the scheduler tries the next address);
	                                  its connections linger (IDLE) */
	int placeholder;               /* a destination's stand-in job of its
	                                  IDLE connections: never started, never
	                                  ended */
	/* AUTH PLAIN as this (a node's hand-off to a peer, issue 16):
	 * NULL = none. The strings are the caller's and outlive the job. A
	 * connection serves such a job only once its AUTH was accepted; a
	 * peer that does not offer AUTH PLAIN or refuses it makes the job
	 * give up at once (no reconnect would change it), why says so. */
	const char *auth_user, *auth_pass;
	/* The last temporary failure, for the scheduler and its log lines:
	 * a 4xx reply ("451 4.3.0 text"), a failed connect ("connect to
	 * host[addr]:port: Connection refused"), a lost connection or a 421;
	 * "" = none. */
	char why[DRAIN_JOB_WHY_MAX];
};

/*
 * Start j (its fields set, env's too): attach it to its destination and
 * open connections for it as far as drain_connections, its message count
 * and the destination's limit allow; with none free it waits for one.
 * Returns 0 when it is under way (env->job_idle(j) follows once it is done),
 * or -errno when nothing could start (j is detached again; the caller ends
 * it). Never calls env->job_idle(j) itself.
 *
 * Release rule of a connection: its struct is freed exactly once, by
 * itself, when it is CLOSED (the socket is gone, or was never made) AND no
 * spool read, commit or DONE of its own is in flight (the spool owns its
 * buffers until the callback). Then its job's conns drops, and a job with
 * no connection, no DONE in flight and nothing it could still try ends
 * (env->job_idle), so a job's end means what it delivered is durable.
 * Nothing outside this module keeps a pointer to a connection.
 */
int drain_conn_job_start(struct drain_job *j);

/*
 * ATRN: run jobs[0..n) (all of session s, none started, on this thread,
 * n >= 1; a job may have no message, so the last shard still QUITs) over
 * the customer's connection parcel, which this thread adopts. They get a
 * destination of their own that never opens a connection. first: wait for
 * the customer's 220 (drain_greeting_timeout) and EHLO; else go on with
 * the session ss (READY, no greeting, no EHLO). last: QUIT when done;
 * else hand the connection on: drain_atrn_conn_end() (drain_atrn.h) gets
 * the parcel and the SMTP session, or NULL once the connection is over
 * (QUIT answered, customer gone, 421, shutdown), once per adoption, on
 * this thread. Each job ends through env->job_idle as usual. Returns 0, or
 * -errno with the parcel freed (closed) and the jobs detached again (the
 * caller ends them; drain_atrn_conn_end() is not called).
 */
struct conn_parcel;
int drain_conn_atrn_start(struct drain_job **jobs, size_t n, struct conn_parcel *parcel,
		int first, int last, const struct smtp_client_session *ss);

/*
 * A duration as Postfix writes delay= and delays= (its log_adhoc.c): whole
 * seconds from 10 s up, one decimal from 1 s, two below, trailing zeros
 * dropped ("12", "1.5", "0.25", "0.1", "0"). Into out (size n, >= 24);
 * returns out.
 */
#define DRAIN_CONN_SECS_MAX 24
char *drain_conn_fmt_secs(char *out, size_t n, uint64_t us);

/* Once a loop turn (proto/drain.c's turn hook): a read slot freed by a
 * reader that is no drain connection (expiry, the scheduler, a queue
 * listing) wakes no waiter by itself, so the waiters get the free slots
 * here, oldest first. O(1) when none waits. */
void drain_conn_env_turn(struct drain_conn_env *env);

/* Free what is left of env's destinations (after the loop stopped). */
void drain_conn_env_fini(struct drain_conn_env *env);

/* The state's name, for logs and tests ("READING"); "?" past the end. */
const char *drain_conn_state_name(enum drain_conn_state s);

#endif
