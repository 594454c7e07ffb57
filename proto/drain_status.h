/* SPDX-License-Identifier: MIT */
/*
 * drain_status: queue depths for `etrnctl status`. Each engine thread's
 * spool index is read only on its own thread, so the asker posts a job to
 * every loop and waits (bounded) at a rendezvous for their answers, then
 * merges them into one text report: a line per shard, a line per domain.
 */
#ifndef ETRND_PROTO_DRAIN_STATUS_H
#define ETRND_PROTO_DRAIN_STATUS_H

#include "core/buf.h"
#include "core/loop.h"
#include "store/spool_index.h"

#define DRAIN_STATUS_DOMAINS_MAX 10000 /* per shard, listed */
#define DRAIN_STATUS_WAIT_MS 3000

/* One engine thread as the report sees it: its loop (NULL while the thread
 * is not up: reported as "no answer") and its shard's index. */
struct drain_status_shard {
	struct loop *loop;
	struct spool_index *idx;
};

/*
 * Ask each of the n shards (copied: the array need not outlive the call)
 * and append the report to out. Blocks up to DRAIN_STATUS_WAIT_MS: call it
 * from a thread that may block, never an engine thread. A shard that has
 * not answered by then is reported as such; its late answer is dropped.
 */
void drain_status_collect(const struct drain_status_shard *shards, unsigned n,
		struct buf *out);

#endif
