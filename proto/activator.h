/* SPDX-License-Identifier: MIT */
/*
 * activator: this node as the customer of an upstream (README "Activators"). Each
 * configured activator (core/config.h "activator.NAME.*") asks its upstream
 * for this node's mail on its timetable (core/timetable.h): ETRN (RFC 1985:
 * the upstream delivers to our MX, i.e. to our listeners, on its own
 * connections) or ATRN (RFC 2645: we authenticate, send ATRN, and the same
 * connection turns around; proto/smtpd.h serves it through the normal
 * receive path, so a 250 still means on disk).
 *
 * One registry per node. Its runs are started and driven on one engine
 * thread's loop (activators_attach(), thread 0), each run one outbound
 * connection with its own state enum and one logged transition function:
 * RESOLVING -> CONNECTING -> TALKING (proto/etrn_client.h: greeting, EHLO,
 * STARTTLS, AUTH, the requests) -> [REVERSED: ATRN's served session] ->
 * IDLE. Each run logs the upstream's reply to every request with its RFC
 * 1985 (or 2645) meaning. A run that fails (no address, refused, TLS or
 * AUTH refused, 458/459) is retried only at the activator's next scheduled
 * time, never sooner: a failing upstream costs one connection per
 * scheduled time. A run due while one of the same activator is still
 * going is skipped (logged), not queued.
 *
 * Timetable: at start, an activator whose time rule is active runs at once
 * (the customer wants what waited while it was down), then at
 * timetable_next(). after-outbound: a run once etrnd has delivered mail
 * through its relayhost (activators_outbound_done()), at most one per
 * ACTIVATOR_AFTER_OUTBOUND_GAP_S per activator. The clock is
 * now_shifted_us(0) (core/now.h), so the test clock steps it.
 */
#ifndef ETRND_PROTO_ACTIVATOR_H
#define ETRND_PROTO_ACTIVATOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"

/* after-outbound runs of one activator at most this often: outbound mail
 * that keeps flowing does not turn into a stream of ETRNs. */
#define ACTIVATOR_AFTER_OUTBOUND_GAP_S 60u
/* One-shot runs (etrnctl etrn --atrn) listed at once; their status stays
 * listed this long after they ended, for etrnctl to read. */
#define ACTIVATOR_ONESHOT_MAX 8
#define ACTIVATOR_ONESHOT_KEEP_S 300u
/* The connect to an upstream address must end within this. */
#define ACTIVATOR_CONNECT_TIMEOUT_MS (30u * 1000u)

struct activators;
struct loop;
struct smtpd;
struct resolver;
struct tls_ctx;

/* The node's registry, made from cfg->activators before the engine threads
 * start (none configured: an empty registry, still able to run one-shots).
 * cfg must outlive it. NULL when out of memory. */
struct activators *activators_new(const struct config *cfg);
/* After every engine thread has stopped. NULL is fine; returns NULL. */
struct activators *activators_free(struct activators *a);

/*
 * On engine thread 0, before loop_run(): runs start on l; d (the same
 * thread's smtpd) serves ATRN's reversed sessions; r resolves upstream
 * names; client is the drains' TLS client context (core/tls.h). Registers
 * a turn hook (queue phase: starts what is due, at least once a second),
 * a stop hook (no new runs; ongoing ones are aborted and logged) and a
 * busy check (until every run's connection is gone). 0 or -errno.
 */
int activators_attach(struct activators *a, struct loop *l, struct smtpd *d,
		struct resolver *r, struct tls_ctx *client);

/* Any thread: mail was just delivered through the relayhost (proto/sched:
 * a job routed ROUTE_RELAYHOST sent at least one message). Activators with
 * an after-outbound rule run soon, within their gap. Cheap: safe to call
 * for every such job. NULL a is fine (nothing to do). */
void activators_outbound_done(struct activators *a);

/* Any thread: run activator name now (etrnctl activators run NAME), as if
 * it were its scheduled time. 0, -ENOENT (no such activator), -EBUSY (a run
 * of it is going), -ESHUTDOWN (stopping or not attached). */
int activators_run(struct activators *a, const char *name);

/* Any thread: a one-shot run of spec (copied; name ignored), for etrnctl
 * etrn --atrn. Its name ("oneshot-N") goes to name; it is listed by
 * activators_status() like the configured ones until
 * ACTIVATOR_ONESHOT_KEEP_S after it ended. 0, -ENOSPC (ACTIVATOR_ONESHOT_MAX
 * listed), -ESHUTDOWN. */
int activators_oneshot(struct activators *a, const struct config_activator *spec,
		char *name, size_t namelen);

/*
 * Any thread: the activators as text, one line each
 *   "NAME method=etrn host=H:P request=a,@b,#q schedule=\"...\" state=idle
 *    runs=N failures=F last=ISO8601|- reply=\"253 2.0.0 ...\" meaning=\"...\"
 *    next=ISO8601|-"
 * (ATRN adds "received=M", the messages its last session took) or, json
 * set, a JSON array of objects with the same fields (times as epoch
 * seconds, null when none). name non-NULL: that one only; -ENOENT when
 * there is no such activator. 0 or -ENOENT; -ENOMEM leaves out short.
 */
int activators_status(struct activators *a, const char *name, struct buf *out, int json);

#endif
