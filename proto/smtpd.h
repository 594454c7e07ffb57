/* SPDX-License-Identifier: MIT */
/*
 * smtpd: the SMTP service of one engine thread. It binds the pure session
 * state machine (smtp_server) to the loop's connections and the thread's spool
 * shard: bytes from a connection go into the session, a finished message goes
 * to the spool, and its 250 goes out only when the spool says it is on disk.
 * Who may relay: a recipient in a domain with a row (a customer) is taken
 * from anyone; any other domain only from a client in cfg->mynetworks or
 * an authenticated session (else 550 5.7.1: never an open relay). On a
 * submission_listen listener MAIL needs AUTH first (530 5.7.0).
 */
#ifndef ETRND_PROTO_SMTPD_H
#define ETRND_PROTO_SMTPD_H

#include "core/domtab.h"
#include "core/config.h"
#include "core/loop.h"
#include "store/spool.h"

struct smtpd;

/* The connection callbacks to give loop_new() with the smtpd as ops_arg. */
extern const struct conn_ops smtpd_conn_ops;

/* Create the service for one engine thread. cfg and dt (the published domain
 * table, read on every RCPT) must outlive it.
 * NULL on allocation failure. */
struct smtpd *smtpd_new(const struct config *cfg, const struct domtab_live *dt);

/* Attach the thread's spool shard (before loop_run()), and start retention
 * (expiry, proto/expire.h, which registers its own per-turn work on the
 * shard's loop) on it. Returns 0, -ENOMEM, or -ENOSPC when the loop's hook
 * registry is full. The smtpd itself has no per-turn work: a message's
 * commit rides the spool's; it registers a busy check ("smtpd auth") that
 * keeps a stopping loop running until every AUTH answer is in. */
int smtpd_set_spool(struct smtpd *d, struct spool_shard *sh);

/* Attach the thread's drainer (proto/drain.h) for ETRN and ATRN (RFC 2645:
 * an accepted ATRN hands the connection to the drain's ATRN session);
 * without one ETRN is answered 458 and ATRN 451. */
struct drain;
void smtpd_set_drain(struct smtpd *d, struct drain *dr);

/* Offer STARTTLS (RFC 3207) with this server context (core/tls.h; shared,
 * read-only, outlives d); NULL: not offered. Call before the first
 * connection. */
struct tls_ctx;
void smtpd_set_tls(struct smtpd *d, struct tls_ctx *ctx);

/* Offer AUTH PLAIN LOGIN (RFC 4954: inside TLS, or on a listen_trusted
 * listener) and check passwords through b (proto/auth.h; outlives d);
 * NULL: AUTH not offered. Call before the first connection. */
struct auth_backend;
void smtpd_set_auth(struct smtpd *d, const struct auth_backend *b);

/* Check node AUTH on cluster_listen connections through b (the cluster
 * secret, admin/cluster_auth.h; outlives d); NULL: every AUTH there is
 * answered 454 4.7.0. Call before the first connection. */
void smtpd_set_cluster_auth(struct smtpd *d, const struct auth_backend *b);

/* Attach the node-wide DATA memory budget (core/budget.h; it must outlive
 * d). Without one, DATA buffers are bounded per session only. Call before
 * the first connection. */
struct budget;
void smtpd_set_budget(struct smtpd *d, struct budget *b);

/* Append a policy checker (proto/smtp_check.h: DNSBL, SPF, milters) to
 * this thread's chain; checkers are asked in the order added. ck is
 * copied; its arg must outlive d. Call before the first connection.
 * Returns 0, -ENOMEM, or -ENOSPC past SMTP_CHECKERS_MAX. */
struct smtp_checker;
int smtpd_add_checker(struct smtpd *d, const struct smtp_checker *ck);

/*
 * Start-up cross-check of the limits a message meets on its way (call after
 * config_finish(), before any engine starts). The worst case of one stored
 * record (message_size_limit dot-stuffed, 4/3 at most, plus our Received:
 * header and an envelope of smtp_max_recipients paths) must fit segment_size,
 * or the spool would refuse a message the server took (E2BIG); and one
 * message's buffer must fit data_memory_limit, or it could never be taken.
 * When message_size_limit was left at its default, it is lowered to the
 * largest that fits (logged); otherwise returns -1 with err set to
 * "file:line: what is wrong". Returns 0 when the limits agree.
 */
int smtpd_check_config(struct config *cfg, char *err, size_t errlen);

/* Worst-case bytes of one stored MSG record under cfg's limits. */
size_t smtpd_record_max(const struct config *cfg);

/*
 * The customer's side of ATRN (RFC 2645 4; proto/activator.h): parcel is an
 * outbound connection of l (this smtpd's thread) on which we sent ATRN and
 * got 250. Adopt it as a server session: send our 220 greeting, then serve
 * what the upstream sends through the normal receive path (RCPT checked
 * against the domain table and relay_domains as for any client, spool,
 * 250 only once on disk). The session is inside TLS when the parcel
 * carries it (STARTTLS not offered again); AUTH, ETRN and ATRN are not
 * offered there (502). It waits at most idle_ms (atrn_idle_timeout) for
 * each command instead of idle_timeout (0: idle_timeout; the loop looks
 * at its idle clocks about once a second, so a shorter wait may end up
 * to a second late).
 * It never has the relay right (mynetworks is not asked), and takes a
 * connection slot like any (max_connections). upstream names the peer in logs
 * ("activator isp: mx.isp.example[192.0.2.1]:366"; copied). done(arg,
 * msgs, why) runs once on l's thread when the session has ended: msgs =
 * messages answered 250, why = "QUIT", "idle timeout", "lost connection",
 * "shutdown", ... Returns 0; or -errno with parcel freed and done not
 * called (-EMFILE: no slot, -ESHUTDOWN: stopping, -ENOMEM).
 */
struct conn_parcel;
typedef void (*smtpd_reversed_fn)(void *arg, unsigned msgs, const char *why);
int smtpd_adopt_reversed(struct smtpd *d, struct loop *l, struct conn_parcel *parcel,
		const char *upstream, unsigned idle_ms, smtpd_reversed_fn done, void *arg);

/* The 421 line for connections over max_connections (lives as long as d). */
const char *smtpd_busy_reply(const struct smtpd *d);

/* Free, once the loop has finished; every connection must be gone (sessions
 * still waiting for an AUTH answer are freed here: the finished loop drops
 * the answer). NULL is fine. Returns NULL. */
struct smtpd *smtpd_free(struct smtpd *d);

#endif
