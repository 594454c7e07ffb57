/* SPDX-License-Identifier: MIT */
/*
 * drain_conn: one outbound connection of a drain. It takes messages one by
 * one from its job's snapshot of the queue, reads each record from the
 * spool, hands it to the SMTP client (proto/smtp_client.h), streams the
 * body, and on the verdict appends a DONE per delivered recipient and
 * bounces the 5xx ones with a DSN; 4xx stay queued. An explicit state
 * (enum drain_conn_state) with one logged transition, drain_conn_enter().
 */
#ifndef ETRND_PROTO_DRAIN_CONN_H
#define ETRND_PROTO_DRAIN_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/list.h"
#include "core/loop.h"
#include "proto/drain_resolve.h"
#include "proto/smtp_client.h"
#include "store/spool.h"
#include "store/spool_index.h"

/*
 * The states, and what moves a connection between them:
 *
 *   CONNECTING --connected--> GREETING --EV_READY--> (next)
 *   (next): READING when a message's read started, WAIT_SLOT when every
 *           spool read slot is busy, QUITTING when the snapshot is done
 *   WAIT_SLOT  --a read slot came free--> (next)
 *   READING    --read done--> SENDING (submitted), or (next) when the
 *              record is unusable or the client decided it locally
 *   SENDING    --EV_MSG_DONE--> COMMITTING (a bounce to record), or (next)
 *   COMMITTING --bounce recorded--> (next)
 *   QUITTING, and any state with a socket --EV_CLOSE, time-out, shutdown,
 *              refusal--> CLOSING (conn_close() called)
 *   any state --the loop's close callback, or a failed connect--> CLOSED
 *
 * READING and COMMITTING pause input (replies wait for the spool) and
 * ignore the idle timer (our side is slow, not the server).
 */
enum drain_conn_state {
	DRAIN_CONN_CONNECTING = 0, /* loop_connect() submitted; no socket yet */
	DRAIN_CONN_GREETING,       /* connected: greeting and EHLO under way */
	DRAIN_CONN_WAIT_SLOT,      /* session idle, on the wait list for a read slot */
	DRAIN_CONN_READING,        /* the message's record being read (spool I/O) */
	DRAIN_CONN_SENDING,        /* the message is with the SMTP client */
	DRAIN_CONN_COMMITTING,     /* its bounce (DSN + DONEs) being written */
	DRAIN_CONN_QUITTING,       /* QUIT sent; waiting for 221 or EOF */
	DRAIN_CONN_CLOSING,        /* conn_close() called; close callback due */
	DRAIN_CONN_CLOSED,         /* socket gone (or never made) */
	DRAIN_CONN_NSTATES
};

struct drain_conn;
struct drain_job;

/*
 * What the connections of one engine thread share; owned by that thread's
 * struct drain and only touched on its thread. job_idle is called when a
 * job's last connection has been freed and its last DONE is durable: the
 * job may be freed then.
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
	void (*job_idle)(struct drain_job *j);
};

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
	unsigned conns;                /* drain_conn structs alive for it */
	unsigned dones_pending;        /* its DONE records not yet durable */
	uint64_t started_us;
	uint64_t sent, deferred, bounced;
};

/*
 * Open one more connection for j (state CONNECTING). Returns 0, or -errno
 * when it could not even be started (nothing is left behind then).
 *
 * Release rule: the connection's struct is freed exactly once, by itself,
 * when it is CLOSED (the socket is gone, or was never made) AND no spool
 * read or commit is in flight for it (the spool owns its record and DSN
 * buffers until the callback). Then j->conns drops, and at 0 env->job_idle(j)
 * runs once no DONE record the job queued is still in flight either (so a
 * job's end means what it delivered is durable). Nothing outside this
 * module keeps a pointer to a connection.
 */
int drain_conn_open(struct drain_job *j);

/* The state's name, for logs and tests ("READING"); "?" past the end. */
const char *drain_conn_state_name(enum drain_conn_state s);

#endif
