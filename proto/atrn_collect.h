/* SPDX-License-Identifier: MIT */
/*
 * atrn_collect: the I/O of a cross-node ATRN (issue 16) on the node that
 * holds the customer's ATRN connection, after its own shards delivered.
 * For each other node holding mail for the session's domains, one at a
 * time, from the customer connection's engine thread: connect to its
 * cluster_listen, ATRN as this node (proto/etrn_client.h: EHLO, STARTTLS
 * by cluster_tls, AUTH PLAIN node_id + the cluster secret, "ATRN d1,d2"),
 * and once it reverses, relay its transactions to the customer in
 * lockstep (proto/atrn_proxy.h). A node that fails (connect, TLS, AUTH,
 * ATRN refused, timeout, lost) is logged and skipped: its mail stays held
 * there. Then QUIT to the customer. One log line per node: id, messages
 * relayed, result. Memory: the customer's output holds at most one of the
 * node's messages (it sends the next after the customer's reply), bounded
 * by smtpd_record_max(); the node's input waits in the loop's bounded
 * kept input meanwhile.
 */
#ifndef ETRND_PROTO_ATRN_COLLECT_H
#define ETRND_PROTO_ATRN_COLLECT_H

#include <stddef.h>

#include "core/clusterview.h"
#include "core/config.h"
#include "proto/atrn.h"

/* Other nodes one session collects from at most (the largest holders
 * first, clusterview_holders()); the rest wait for the next ATRN. */
#define ATRN_COLLECT_PEERS_MAX 16
/* A node's connect, and each of its replies or commands (the customer's
 * replies are waited for as long as a drain waits: RFC 5321 4.5.3.2). */
#define ATRN_COLLECT_CONNECT_MS 10000u
#define ATRN_COLLECT_IDLE_MS 60000u
#define ATRN_COLLECT_CUST_MS (5u * 60u * 1000u)

struct atrn_collect_peer {
	char id[CONFIG_NODE_ID_MAX];
	char addr[CLUSTERVIEW_ADDR_MAX];  /* numeric "ip:port" */
};

/* The secret this node AUTHs with: its length, or -errno. */
typedef int (*atrn_collect_secret_fn)(const void *arg, char *out, size_t outlen);

struct tls_ctx;
struct atrn_collect_conf {
	const struct config *cfg;         /* hostname, node_id, cluster_tls */
	struct tls_ctx *tls;              /* client context; NULL: no STARTTLS */
	atrn_collect_secret_fn secret;
	const void *secret_arg;
	const struct atrn_doms *doms;     /* copied */
	const struct atrn_collect_peer *peers; /* copied */
	unsigned npeers;
	int greeted;                      /* a shard had the 220 and said EHLO */
	unsigned cust_caps;               /* then: SMTP_CLIENT_CAP_* it saw */
	const char *client;               /* the customer, for logs (copied) */
};

/* The end: relayed = messages the customer accepted from other nodes. */
typedef void (*atrn_collect_done_fn)(void *arg, unsigned relayed);

/*
 * On l's thread: adopt the customer's connection (parcel, consumed) and
 * collect. done(arg, relayed) runs once on l's thread when both
 * connections are over. Returns 0; or -errno (done not called, parcel
 * freed): -ENOMEM, -EMFILE, -ESHUTDOWN.
 */
struct loop;
struct conn_parcel;
int atrn_collect_start(struct loop *l, struct conn_parcel *parcel,
		const struct atrn_collect_conf *conf, atrn_collect_done_fn done, void *arg);

#endif
