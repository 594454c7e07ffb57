/* SPDX-License-Identifier: MIT */
/*
 * drain_queue: the operator's queue requests (etrnctl queue list, message
 * show|delete|bounce|release), Postfix's postqueue -p, postsuper -d and
 * postsuper -H equivalents.
 * Each engine thread owns its shard, so the asker posts a job to the
 * owning loop(s) and waits (bounded) at a rendezvous for the text reply, as
 * drain_status does; the jobs read and write the spool only through the
 * shard (spool_shard_read, spool_append_done, bounce_queue).
 */
#ifndef ETRND_PROTO_DRAIN_QUEUE_H
#define ETRND_PROTO_DRAIN_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "proto/drain_status.h"

/* The asker waits this long for the engine threads, below the control
 * socket's whole-request deadline (CTLSOCK_REQUEST_TIMEOUT_MS, 2 s). */
#define DRAIN_QUEUE_WAIT_MS 1500
/* queue list: messages listed per shard at most (the reply must fit the
 * control socket's reply cap); a final line says when some were left out. */
#define DRAIN_QUEUE_LIST_MAX 2000
/* message show: body bytes shown at most with "full" (else the header). */
#define DRAIN_QUEUE_SHOW_MAX (512u * 1024u)
/* message bounce: the DSN's status (RFC 3463 5.0.0: other, permanent). */
#define DRAIN_QUEUE_BOUNCE_STATUS "5.0.0"

enum drain_queue_op {
	DRAIN_QUEUE_SHOW,        /* envelope, recipient states, header */
	DRAIN_QUEUE_SHOW_FULL,   /* the same with the whole message */
	DRAIN_QUEUE_DELETE,      /* a DONE (expired) per pending recipient */
	DRAIN_QUEUE_BOUNCE,      /* a DSN to the sender, then DONE (bounced) */
	DRAIN_QUEUE_RELEASE,     /* a held (quarantined) message: NOTE(RELEASED) */
};

/* The engine threads (as drain_hub_shards() gives them; copied by each
 * call) and the host name DSNs name. */
struct drain_queue_ctx {
	const struct drain_status_shard *shards;
	unsigned n;
	const char *hostname;
};

/*
 * queue list [DOMAIN]: one line per message held, per domain it waits for:
 *   QID[!]<TAB>arrival (UTC, ISO 8601)<TAB>size<TAB>pending<TAB>domain<TAB><sender>
 * ('!': held, quarantined; the sender read from the record's envelope, never its body; "<?>" when
 * that read failed)
 * (domain NULL or len 0: every domain), then "total N" or, when a shard
 * did not answer, "warning: ...". Blocks up to DRAIN_QUEUE_WAIT_MS: never
 * on an engine thread.
 */
void drain_queue_list(const struct drain_queue_ctx *c, const char *domain, size_t len,
		struct buf *out);

/*
 * One message (qid: its queue id text, len bytes): do op on the thread that
 * owns it, logged with who (the asker), and append the reply: for show the
 * text, else "ok: ..." once the records are durable; "error: ..." lines
 * when the id is malformed, unknown or the shard did not answer. Returns 0
 * on success, -EINVAL (malformed id), -ENOENT (no such message held),
 * -EALREADY (release of a message not held),
 * -ETIMEDOUT or another -errno. Blocks like drain_queue_list().
 */
int drain_queue_msg(const struct drain_queue_ctx *c, enum drain_queue_op op,
		const char *qid, size_t len, const char *who, struct buf *out);

#endif
