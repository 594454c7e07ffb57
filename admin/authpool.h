/* SPDX-License-Identifier: MIT */
/*
 * authpool: the verifier pool behind proto/auth.h. A small fixed number of
 * threads (auth_verifiers), each with its own Redis connection and its own
 * struct crypt_data, take checks from one bounded node-wide queue, read
 * PREFIX"user:{"NAME"}"'s password hash (else the untagged PREFIX"user:"NAME's),
 * run crypt_r and send the answer back to
 * the asking engine thread with loop_post(). crypt never runs on an engine
 * thread. The per-address failure limit (auth_failure_limit, core/addrlimit)
 * is applied before a check is queued, so an address over it costs nothing.
 */
#ifndef ETRND_ADMIN_AUTHPOOL_H
#define ETRND_ADMIN_AUTHPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "proto/auth.h"

/* Checks accepted and not yet answered (queued, being checked, or answered
 * but not yet run by the asking loop), node-wide. One more is refused at
 * once with -AUTH_TEMP (454 4.7.0): at about 55 yescrypt checks a second per
 * verifier, a longer queue would only make clients wait past their timeout. */
#define AUTHPOOL_QUEUE_MAX 256
/* Each verifier's Redis connect and command timeout: a Redis that hangs
 * holds one verifier this long at most, its check then answered AUTH_TEMP. */
#define AUTHPOOL_REDIS_TIMEOUT_MS 2000
/* Reconnect back-off of a verifier whose Redis went away: checks in the
 * meantime are answered AUTH_TEMP at once, without trying. */
#define AUTHPOOL_BACKOFF_MIN_MS 100
#define AUTHPOOL_BACKOFF_MAX_MS 2000
/* Users whose unusable hash ($1$, plain text...) was already logged. */
#define AUTHPOOL_WARNED_MAX 64
/* Longest client address text kept (inet_ntop's IPv6 form fits). */
#define AUTHPOOL_CLIENT_MAX 64

struct authpool;

/*
 * Start cfg->auth_verifiers threads checking against cfg->redis (with
 * cfg->redis_prefix), limiting failures per address to
 * cfg->auth_failure_limit a minute. cfg must outlive the pool. A Redis that
 * is down at start is no error: checks get AUTH_TEMP until it answers.
 * NULL with err set when cfg has no Redis, on out of memory, or when a
 * thread cannot start.
 */
struct authpool *authpool_start(const struct config *cfg, char *err, size_t errlen);

/* The interface the SMTP server calls (proto/auth.h): valid until
 * authpool_free(). */
const struct auth_backend *authpool_backend(struct authpool *p);

/*
 * Join the verifiers. Call only once no loop can ask any more and every
 * loop that asked has finished (engine_stop()), and before those loops are
 * freed (engine_free()): a verifier busy with a check when this is called
 * finishes it and posts the answer, which a finished loop drops (loop_post);
 * checks still queued are abandoned. check() answers -AUTH_TEMP from here on.
 * NULL is fine.
 */
void authpool_stop(struct authpool *p);

/* Stop if not stopped, then free. NULL is fine. Returns NULL. */
struct authpool *authpool_free(struct authpool *p);

struct authpool_stats {
	uint64_t ok, bad, temp;       /* answers sent through the loops */
	uint64_t limited;             /* refused at once: auth_failure_limit */
	uint64_t full;                /* refused at once: queue full or stopped */
	uint64_t pending;             /* slots in use now */
};

/* Counters (each read atomically, not all at one instant). */
void authpool_stats(struct authpool *p, struct authpool_stats *st);

#endif
