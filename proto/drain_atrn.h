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
#include "proto/atrn.h"
#include "proto/drain_resolve.h"
#include "proto/smtp_client.h"

/* Domains one ATRN releases at most (proto/atrn.h), for smtp_server.h's
 * bound to match. */
#define DRAIN_ATRN_DOMAINS_MAX ATRN_DOMAINS_MAX
/* ATRN sessions in progress on the node; one more is answered 451. */
#define DRAIN_ATRN_SESSIONS_MAX 64
/* The user and client texts kept for logs and etrnctl status. */
#define DRAIN_ATRN_USER_MAX 256
#define DRAIN_ATRN_CLIENT_MAX 64

/*
 * drain_atrn() (drain.h) for another node of the cluster, authenticated
 * on cluster_listen as node (issue 16: it collects for a customer's ATRN
 * it holds): every domain is the node's to ask for, so there is no owner
 * check, but the list must name them (none: 501). Otherwise the same
 * session, replies and hand-off (conn_detach with drain_atrn_take).
 */
struct drain;
struct drain_atrn *drain_atrn_node(struct drain *d, const char *client, const char *node,
		const char *domains, size_t len, struct buf *out);

/*
 * Cross-node ATRN (issue 16), set once before the engines start: this
 * node's cfg (node_id, cluster_tls, hostname), the secret it AUTHs with on
 * other nodes' cluster_listen (secret(secret_arg, out, outlen): its
 * length, or -errno), and the client TLS context (core/tls.h; NULL: no
 * STARTTLS). Without it (secret NULL) a session delivers local mail only.
 */
struct drain_atrn_reg;
typedef int (*drain_atrn_secret_fn)(const void *arg, char *out, size_t outlen);
struct config;
struct tls_ctx;
void drain_atrn_set_cluster(struct drain_atrn_reg *r, const struct config *cfg,
		drain_atrn_secret_fn secret, const void *secret_arg, struct tls_ctx *tls);

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
/* 1 once drain_hub_quiesce() was called: nothing starts any more. */
int drain_hub_stopping(struct drain_hub *h);
/* Hold dom for an ATRN session on every thread: 1, or 0 when a drain (or
 * another session) has it. Released with drain_hub_unclaim(). */
int drain_hub_claim(struct drain_hub *h, const char *dom, size_t len);
void drain_hub_unclaim(struct drain_hub *h, const char *dom, size_t len);
/* Run fn(arg) on engine thread i: 0, or -ESHUTDOWN (the hub quiesced, the
 * thread is not up or its loop has finished). */
int drain_hub_post(struct drain_hub *h, unsigned i, void (*fn)(void *), void *arg);
/* Engine thread i's loop (NULL before it is up), for a session that
 * opens connections there (cross-node ATRN). */
struct loop;
struct loop *drain_hub_loop(struct drain_hub *h, unsigned i);
/*
 * On engine thread i: start s's jobs there for doms (those with mail in
 * this shard; with none and last set, one empty job so that the customer
 * still gets QUIT) over parcel (drain_conn_atrn_start(), relay names the
 * customer in logs). Returns 1 when the connection was adopted, 0 when
 * this shard has nothing (parcel untouched), -errno with parcel freed.
 */
int drain_atrn_shard(struct drain_hub *h, unsigned i, struct drain_atrn *s,
		const struct atrn_doms *doms, struct conn_parcel *parcel, int first,
		int last, const struct smtp_client_session *ss, const char *relay);

#endif
