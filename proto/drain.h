/* SPDX-License-Identifier: MIT */
/*
 * drain: ETRN (RFC 1985) on this node. An ETRN received by any engine thread
 * is answered at once (250/251/252/253/458/459) and fanned out to every
 * engine thread, since each holds part of the mail in its own spool shard.
 * Each thread then opens up to drain_connections outbound connections to the
 * domain's destination and delivers its share with the SMTP client state
 * machine (PIPELINING, many messages per connection), recording a DONE per
 * delivered or bounced recipient. 4xx and connection failures leave mail
 * queued for the next ETRN; 5xx bounces it with a DSN to the sender.
 */
#ifndef ETRND_PROTO_DRAIN_H
#define ETRND_PROTO_DRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "core/domtab.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/loop.h"
#include "store/spool.h"

/* Process-wide: which domains are being drained, and the engine threads to
 * fan a drain out to. */
struct drain_hub;
/* Per engine thread. */
struct drain;

/*
 * The hub for nthreads engine threads. cfg, dt, ds and resolver (the
 * process's one, core/resolver.h, which resolves destinations that are
 * names) must outlive it. Shutdown order: stop and join the engine threads,
 * drain_hub_quiesce(), resolver_free() (a look-up still pending ends its
 * drain, -ECANCELED), free the drainers and loops, then drain_hub_free().
 */
struct domstat;
struct resolver;
struct drain_hub *drain_hub_new(const struct config *cfg,
		const struct domtab_live *dt, struct domstat *ds,
		struct resolver *resolver, unsigned nthreads);
struct drain_hub *drain_hub_free(struct drain_hub *h);

/* From now on no drain is posted to an engine loop (a resolver answer that
 * comes later only ends its drain) and no look-up is submitted (a flush from
 * the control thread or socket ends its drain at once), so the resolver may
 * be freed, then the loops. Returns at once; idempotent; NULL is fine. */
void drain_hub_quiesce(struct drain_hub *h);

/* Drains ended because their destination did not resolve (NXDOMAIN, DNS
 * time-out, a malformed dest, too many look-ups pending); each is logged
 * with the reason; counted once the drain has ended (the hub no longer
 * holds the domain active). Any thread. */
uint64_t drain_hub_unresolved(struct drain_hub *h);

/* Create thread index's drainer on its loop and shard (before loop_run);
 * it registers its busy check ("drain": drain_busy()) on l. NULL with
 * errno ENOMEM, or ENOSPC when l's busy-check registry is full. */
struct drain *drain_new(struct drain_hub *h, unsigned index, struct loop *l,
		struct spool_shard *sh);
struct drain *drain_free(struct drain *d);

/* 1 while this thread has drain connections or work in flight. */
int drain_busy(const struct drain *d);

/*
 * ATRN (RFC 2645) from an authenticated user on thread d: domains is the
 * comma list the client gave (len 0: every domain the user owns, i.e. whose
 * row's owner is user). Decides at once and appends the whole reply to out:
 * 530 is the server's (no user, never asked here); for a domain the user
 * does not own, nothing held, a domain already being drained, or any other
 * refusal the RFC 2645 reply (proto/atrn.h; the order in drain_atrn.c),
 * and NULL is returned. On success appends "250 OK now reversing the
 * connection" and returns the ATRN session, which from then on owns the
 * domains (an ETRN for them is answered as for a drain already running,
 * and vice versa): the caller must hand it the connection with
 * conn_detach(c, drain_atrn_take, session) and forget c. The session then
 * waits for the customer's 220, speaks ESMTP as the client over the same
 * connection (moving it from shard to shard with loop_adopt so that every
 * engine thread's spool shard delivers its own messages with the usual DONE
 * bookkeeping), and ends with QUIT.
 */
struct drain_atrn;
struct drain_atrn *drain_atrn(struct drain *d, const char *client, const char *user,
		const char *domains, size_t len, struct buf *out);
/* conn_detach()'s callback: the connection for session arg (a struct
 * drain_atrn *); parcel NULL means the customer left first: the session
 * ends and its domains' mail stays held. */
void drain_atrn_take(void *arg, struct conn_parcel *parcel);

/*
 * Answer ETRN node (as smtp_server's etrn callback gives it) from client
 * (its printable address), authenticated as user (NULL: not), on thread
 * d, and start the drain. Appends the whole reply to out; never blocks and
 * never waits for delivery.
 */
void drain_etrn(struct drain *d, const char *client, const char *user, const char *node,
		size_t len, struct buf *out);

/*
 * The operator's flush (etrnctl flush, a Redis "drain" event): like ETRN
 * without the client checks. From any thread that may read the domain table
 * (an engine thread, the control thread, or one online in its epoch).
 */
void drain_hub_flush(struct drain_hub *h, const char *node, size_t len,
		struct buf *out);

/*
 * The operator's forced flush (etrnctl flush --force): drain domain (one
 * domain, not @ or #) whether or not the domain table has it, to dest
 * ("host[:port]", as a row's dest) or, when dest is NULL or "", the domain's
 * MX. No etrn_from, owner or rate check; logged with who (the asker). The
 * reply is ETRN's (253, 251, 252, 501). Any thread that may call
 * drain_hub_flush(). dest and who are copied or used only during the call.
 */
void drain_hub_flush_force(struct drain_hub *h, const char *domain, size_t len,
		const char *dest, const char *who, struct buf *out);

/* The engine threads' loops, indexes and shards (a loop NULL while its
 * thread is not up) into out, at most max; returns how many threads there
 * are (call with max 0 to size out). For requests
 * that post jobs to the engine threads (drain_status.h, drain_queue.h). */
struct drain_status_shard;
unsigned drain_hub_shards(struct drain_hub *h, struct drain_status_shard *out,
		unsigned max);

/*
 * The TLS client context (core/tls.h) the drains use for STARTTLS; NULL
 * (the default): no STARTTLS, tls may goes in the clear and tls must and
 * verify keep mail held. Any thread, any time: drains started after the
 * call use it. ctx is the caller's and must outlive the hub's loops.
 */
struct tls_ctx;
void drain_hub_set_tls(struct drain_hub *h, struct tls_ctx *client);

/* The domains whose mail stayed held at their last drain on thread d for a
 * TLS reason, with the reason, oldest first, into out (at most max);
 * returns how many were copied, or with max 0 how many there are. Only on
 * d's own engine thread (drain_status.c posts there). */
struct drain_status_held;
size_t drain_held_copy(const struct drain *d, struct drain_status_held *out, size_t max);

/*
 * Outbound jobs, for this thread's scheduler (proto/sched.h): deliver msgs
 * (message ids of this thread's shard with recipients pending in dom) to
 * one address, over the thread's shared connections (the same
 * per-destination limit, reuse across jobs and DONE bookkeeping as drains;
 * 5xx bounce with a DSN, 4xx stay pending). While the job runs its entries
 * are marked busy in the index (spool_index_set_busy()); a drain's job
 * skips busy entries and marks its own, so nothing goes out twice at once.
 * done(arg, res) runs once, on this thread, after the job has ended and
 * every DONE it wrote is durable; it may start the next job at once.
 * Returns 0, or -errno when nothing started (done is not called; no entry
 * stays busy): -ENOENT when none of msgs is pending in dom and free (the
 * others' jobs have them), -ENOPROTOOPT when tls asks for TLS and etrnd has
 * no client context (logged), -ESHUTDOWN while the loop stops, -EINVAL,
 * -ENOMEM. A connect that fails ends the job's use of the address (no
 * reconnect to it: conn_failures, and why says "connect to ...").
 */
#define DRAIN_WHY_MAX 512
struct drain_out_req {
	const char *dom;
	size_t len;
	const uint64_t *msgs;          /* copied */
	size_t nmsgs;
	struct sockaddr_storage dst;
	socklen_t dstlen;
	const char *relay;             /* "host[addr]:port", for logs and TLS */
	enum domtab_tls tls;           /* the domain's policy (may for foreign) */
};
struct drain_out_result {
	uint64_t sent, deferred, bounced; /* messages, as a drain counts them */
	size_t untried;                /* never attempted: no usable connection */
	unsigned conn_failures;        /* connections that ended early or never
	                                  opened (refused, timed out, 421) */
	int tls_held;                  /* the TLS policy could not be met */
	char why[DRAIN_WHY_MAX];       /* the last temporary failure (a 4xx
	                                  reply, "connect to ...: Connection
	                                  refused"), "" = none */
};
typedef void (*drain_out_done)(void *arg, const struct drain_out_result *res);
int drain_outbound(struct drain *d, const struct drain_out_req *rq, drain_out_done done,
		void *arg);

/*
 * ETRN or the operator's flush for a domain whose row says mode deliver
 * means "retry now" (Postfix's flush of the deferred queue): the drain
 * answers as for a started drain and calls fn(arg, dom, len) on every
 * engine thread that registered one (each thread's scheduler registers
 * its own, on its thread, before the loop runs).
 */
typedef void (*drain_retry_fn)(void *arg, const char *dom, size_t len);
void drain_set_retry(struct drain *d, drain_retry_fn fn, void *arg);

/* The thread's scheduler (proto/sched.h), for the deferred queue in
 * etrnctl status (drain_status.c asks each thread's). On d's thread,
 * before the loop runs; NULL: none. */
struct sched;
void drain_set_sched(struct drain *d, struct sched *s);

/* The deferred queue of thread d's scheduler (sched_status_copy(), none
 * without a scheduler) into out (at most max; returns how many there are),
 * and into *now_us the scheduler's clock (wall clock, clock_offset and the
 * test clock's step), against which their times are read. Only on d's own
 * engine thread (drain_status.c posts there). */
struct sched_status_dest;
size_t drain_deferred_copy(const struct drain *d, struct sched_status_dest *out, size_t max,
		uint64_t *now_us);

/* The node's host name (config hostname): DSNs name it. Lives as long as h. */
const char *drain_hub_hostname(const struct drain_hub *h);

/* The config the hub was made with (the control socket's requests read
 * test_clock there). Lives as long as h. */
const struct config *drain_hub_config(const struct drain_hub *h);

/* Queue depths per shard and per domain, and the ATRN sessions in
 * progress, as text lines (etrnctl status).
 * Asks every engine thread and waits for them (up to 3 s): call it from a
 * thread that may block (the control socket's), never an engine thread. */
void drain_hub_status(struct drain_hub *h, struct buf *out);
/* The same as one JSON object (drain_status.h), ATRN sessions included. */
void drain_hub_status_json(struct drain_hub *h, struct buf *out);

/*
 * Issue 16, several nodes. view: the other nodes' held counts
 * (core/clusterview.h): ETRN's 253 count is this node's plus
 * clusterview_remote_msgs(), and 251 only when both are 0. publish: called
 * on the engine thread that accepted an ETRN or a drain of this node's
 * own making (never for one that came from another node or from Redis)
 * with its argument as given ("d", "@d", "#q"), to tell the other nodes
 * ("drain <spec> from <node_id>", admin/cluster.h); it must not block.
 * Either may be NULL. Before the loops run; both must outlive the hub.
 */
struct clusterview_live;
typedef void (*drain_publish_fn)(void *arg, const char *spec, size_t len);
void drain_hub_set_cluster(struct drain_hub *h, const struct clusterview_live *view,
		drain_publish_fn publish, void *arg);
/* The other nodes as last read (NULL: no cluster, or not read yet), for
 * an ATRN collecting from them (clusterview_holders()). An engine thread
 * only: valid until its next quiescent point (core/clusterview.h). */
struct clusterview;
const struct clusterview *drain_hub_cluster_view(struct drain_hub *h);

#endif
