/* SPDX-License-Identifier: MIT */
/*
 * atrn_proxy: the relay of a cross-node ATRN (issue 16), as a pure state
 * machine. Node A holds the customer's ATRN connection (A is its SMTP
 * client) and the reversed connection from node B (A is B's SMTP server:
 * B delivers the mail it holds). Every transaction of B goes to the
 * customer in lockstep: B's command is forwarded, the customer's reply
 * goes back to B verbatim, so B writes its DONE only once the customer has
 * the message. A answers EHLO itself (no PIPELINING, no CHUNKING: one
 * command in flight) and QUIT (221: the customer's session goes on with the
 * next node). Bytes in, bytes out, events; no descriptor, no clock.
 */
#ifndef ETRND_PROTO_ATRN_PROXY_H
#define ETRND_PROTO_ATRN_PROXY_H

#include <stddef.h>

#include "core/buf.h"

/* Longest command line of B (RFC 5321 4.5.3.1.4: 512 with CRLF) and
 * reply line of the customer (4.5.3.1.5: 512). */
#define ATRN_PROXY_CMD_MAX 512
#define ATRN_PROXY_REPLY_MAX 512
/* Most lines of one customer reply (a longer EHLO reply is broken). */
#define ATRN_PROXY_REPLY_LINES_MAX 64
/* Longest body line relayed (RFC 5321 4.5.3.1.6: 1000 with CRLF); B
 * stores no longer ones, so one is a broken peer. */
#define ATRN_PROXY_TEXT_MAX 1000
/* Our name in the greeting and EHLO. */
#define ATRN_PROXY_NAME_MAX 256
/* Why the relay failed, kept for logs. */
#define ATRN_PROXY_WHY_MAX 128

enum atrn_proxy_state {
	ATRN_PROXY_S_GREETING = 0, /* waiting for the customer's 220 */
	ATRN_PROXY_S_EHLO,         /* EHLO sent to the customer */
	ATRN_PROXY_S_IDLE,         /* customer ready, no node attached */
	ATRN_PROXY_S_CMD,          /* 220 sent to the node: its command awaited */
	ATRN_PROXY_S_REPLY,        /* a command forwarded: the customer's reply awaited */
	ATRN_PROXY_S_BODY,         /* relaying the node's message body */
	ATRN_PROXY_S_DOT,          /* body ended: the customer's final reply awaited */
	ATRN_PROXY_S_RSET,         /* node lost mid-transaction: RSET sent */
	ATRN_PROXY_S_QUIT,         /* QUIT sent to the customer */
	ATRN_PROXY_S_DONE,         /* the customer answered QUIT: close it */
	ATRN_PROXY_S_FAILED,       /* customer lost or broken: close both */
	ATRN_PROXY_S_NSTATES
};

enum atrn_proxy_event {
	ATRN_PROXY_EV_NONE = 0,    /* input used up: wait for more */
	ATRN_PROXY_EV_READY,       /* IDLE: attach the next node, or finish */
	ATRN_PROXY_EV_NODE_DONE,   /* the node's session is over (QUIT answered
	                              221, or it was lost): close its connection;
	                              READY follows once the customer is idle */
	ATRN_PROXY_EV_DONE,        /* QUIT answered: close the customer */
	ATRN_PROXY_EV_FAILED,      /* close both; atrn_proxy_why() says why */
};

struct atrn_proxy_conf {
	const char *name;          /* our host name (greeting, EHLO) */
	int greeted;               /* the customer's 220 and EHLO already
	                              went (a local shard delivered first) */
	int cust_8bitmime;         /* greeted: what the customer's EHLO said */
	int cust_smtputf8;
	size_t body_max;           /* most body bytes of one message (CRLFs
	                              counted); more ends the relay as a node
	                              lost mid-body. 0: no bound */
};

struct atrn_proxy;

/* A relay in GREETING (or IDLE when conf->greeted). conf is copied. NULL
 * on out of memory or a name that is empty or too long. */
struct atrn_proxy *atrn_proxy_new(const struct atrn_proxy_conf *conf);
struct atrn_proxy *atrn_proxy_free(struct atrn_proxy *p); /* NULL fine */

enum atrn_proxy_state atrn_proxy_state(const struct atrn_proxy *p);
const char *atrn_proxy_state_name(enum atrn_proxy_state st);

/* IDLE: a node's reversed connection is ours; our 220 goes to to_node.
 * 0, or -EBUSY in any other state. */
int atrn_proxy_attach(struct atrn_proxy *p, struct buf *to_node);
/* IDLE: no more nodes; QUIT goes to to_cust. 0 or -EBUSY. */
int atrn_proxy_finish(struct atrn_proxy *p, struct buf *to_cust);

/*
 * Bytes from the customer (n == 0: it closed) and from the node (n == 0:
 * it closed or was lost). Output to either side goes to to_node / to_cust.
 * Each returns the bytes consumed; less than n means "not now" (a reply or
 * a command is awaited from the other side first): offer the rest again
 * after the other side's next feed. *ev says what the caller must do.
 * After NODE_DONE with the state IDLE the customer is ready at once (no
 * READY follows).
 */
size_t atrn_proxy_feed_cust(struct atrn_proxy *p, const char *b, size_t n,
		struct buf *to_node, struct buf *to_cust, enum atrn_proxy_event *ev);
size_t atrn_proxy_feed_node(struct atrn_proxy *p, const char *b, size_t n,
		struct buf *to_node, struct buf *to_cust, enum atrn_proxy_event *ev);

/* The caller gives up (a timeout, shutdown, a write error) on the node
 * (node set) or on the customer: as if it had closed. */
enum atrn_proxy_event atrn_proxy_lost(struct atrn_proxy *p, int node, struct buf *to_cust,
		const char *why);

/* Messages the customer accepted (250 after the body) from the node
 * attached last; all nodes together. */
unsigned atrn_proxy_relayed(const struct atrn_proxy *p);
unsigned atrn_proxy_relayed_total(const struct atrn_proxy *p);
/* Why FAILED, or why the last node's session ended ("QUIT", "node lost
 * mid-transaction", ...). Valid as long as p. */
const char *atrn_proxy_why(const struct atrn_proxy *p);

#endif
