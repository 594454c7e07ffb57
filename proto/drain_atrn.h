/* SPDX-License-Identifier: MIT */
/*
 * drain_atrn: the ATRN session (RFC 2645) behind drain_atrn() (drain.h).
 * It decides the reply, holds its domains node-wide (an ETRN for them joins,
 * an ATRN for them gets 451), and walks the customer's one connection over
 * the engine threads: each shard's drain adopts it, delivers its own mail
 * for the domains (drain_conn_atrn_start()) and hands it on; the last QUITs.
 * The session ends once the connection is over and every shard's jobs have
 * ended (their DONEs durable): only then are the domains released.
 */
#ifndef ETRND_PROTO_DRAIN_ATRN_H
#define ETRND_PROTO_DRAIN_ATRN_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "proto/drain_resolve.h"
#include "proto/smtp_client.h"

/* Domains one ATRN releases at most: a longer list is refused 501; with
 * no list, the user's first this many domains with mail held go (the rest
 * wait for the next ATRN). Bounds the session's memory. */
#define DRAIN_ATRN_DOMAINS_MAX 32
/* ATRN sessions in progress on the node; one more is answered 451. */
#define DRAIN_ATRN_SESSIONS_MAX 64
/* The user and client texts kept for logs and etrnctl status. */
#define DRAIN_ATRN_USER_MAX 256
#define DRAIN_ATRN_CLIENT_MAX 64

/* How an ATRN is answered (RFC 2645 section 4; drain_atrn_reply()). */
enum drain_atrn_verdict {
	DRAIN_ATRN_OK = 0,        /* 250 OK now reversing the connection */
	DRAIN_ATRN_SYNTAX,        /* 501 5.5.4: not a comma list of domains */
	DRAIN_ATRN_TOO_MANY,      /* 501 5.5.4: over DRAIN_ATRN_DOMAINS_MAX */
	DRAIN_ATRN_DENIED,        /* 450 4.7.1: a domain the user does not own */
	DRAIN_ATRN_NONE_OWNED,    /* 450 4.7.1: no list, the user owns none */
	DRAIN_ATRN_BUSY,          /* 451 4.3.0: a drain of one of them runs */
	DRAIN_ATRN_FULL,          /* 451 4.3.2: DRAIN_ATRN_SESSIONS_MAX reached */
	DRAIN_ATRN_STOPPING,      /* 451 4.3.2: the node is stopping */
	DRAIN_ATRN_NO_MEMORY,     /* 451 4.3.0 */
	DRAIN_ATRN_NO_MAIL,       /* 453 You have no mail */
};

/* The domains of one ATRN, lower case, NUL-terminated. */
struct drain_atrn_doms {
	unsigned n;
	size_t len[DRAIN_ATRN_DOMAINS_MAX];
	char dom[DRAIN_ATRN_DOMAINS_MAX][DRAIN_DOMAIN_MAX];
};

/* Parse the ATRN argument ("d1,d2", RFC 2645 4: domain *("," domain); len
 * 0: no list) into *out (a domain named twice is kept once). Pure.
 * Returns DRAIN_ATRN_OK, DRAIN_ATRN_SYNTAX or DRAIN_ATRN_TOO_MANY. */
enum drain_atrn_verdict drain_atrn_parse(const char *p, size_t len, struct drain_atrn_doms *out);

/* Append v's reply line to out. 0 or -ENOMEM. */
int drain_atrn_reply(struct buf *out, enum drain_atrn_verdict v);

/* The node's ATRN sessions (the hub's; drain.c creates and frees it). */
struct drain_atrn_reg;
struct drain_atrn_reg *drain_atrn_reg_new(void);
/* After the engine threads stopped: frees the sessions still listed. */
struct drain_atrn_reg *drain_atrn_reg_free(struct drain_atrn_reg *r);

/* The sessions in progress as text lines ("atrn user=... client=...
 * domains=a,b shard=i/n delivered=d/t state=...") or, json set, a JSON
 * array of objects with the same fields. Any thread. */
void drain_atrn_status(struct drain_atrn_reg *r, struct buf *out, int json);
/* How many sessions are in progress. Any thread. */
unsigned drain_atrn_count(struct drain_atrn_reg *r);

/* For drain_conn (through env): the session's connection left a shard
 * (drain_conn.h, atrn_conn_end), and one more message was delivered. */
struct drain_atrn;
struct conn_parcel;
void drain_atrn_conn_end(struct drain_atrn *s, struct conn_parcel *parcel,
		const struct smtp_client_session *ss);
void drain_atrn_delivered(struct drain_atrn *s);
/* For drain.c: a job of s started on some shard, and one ended. */
void drain_atrn_hold(struct drain_atrn *s);
void drain_atrn_put(struct drain_atrn *s);

/* ---- provided by proto/drain.c for the session --------------------- */

struct drain;
struct drain_hub;
struct domtab;
struct drain_hub *drain_hub_of(const struct drain *d);
struct drain_atrn_reg *drain_hub_atrn_reg(struct drain_hub *h);
unsigned drain_hub_threads(const struct drain_hub *h);
/* The live domain table (an engine thread's read) and the node-wide
 * messages held for dom. */
const struct domtab *drain_hub_domtab(struct drain_hub *h);
uint64_t drain_hub_held(struct drain_hub *h, const char *dom, size_t len);
/* Hold dom for an ATRN session on every thread: 1, or 0 when a drain (or
 * another session) has it. Released with drain_hub_unclaim(). */
int drain_hub_claim(struct drain_hub *h, const char *dom, size_t len);
void drain_hub_unclaim(struct drain_hub *h, const char *dom, size_t len);
/* Run fn(arg) on engine thread i: 0, or -ESHUTDOWN (the hub quiesced, the
 * thread is not up or its loop has finished). */
int drain_hub_post(struct drain_hub *h, unsigned i, void (*fn)(void *), void *arg);
/*
 * On engine thread i: start s's jobs there for doms (those with mail in
 * this shard; with none and last set, one empty job so that the customer
 * still gets QUIT) over parcel (drain_conn_atrn_start(), relay names the
 * customer in logs). Returns 1 when the connection was adopted, 0 when
 * this shard has nothing (parcel untouched), -errno with parcel freed.
 */
int drain_atrn_shard(struct drain_hub *h, unsigned i, struct drain_atrn *s,
		const struct drain_atrn_doms *doms, struct conn_parcel *parcel, int first,
		int last, const struct smtp_client_session *ss, const char *relay);

#endif
