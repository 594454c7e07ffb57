/* SPDX-License-Identifier: MIT */
/*
 * ctl_turns: the control socket's "turns" request, a barrier. It answers
 * once every engine thread has run one whole turn (every turn hook: expiry,
 * the outbound scheduler, the activators) begun after the request came in,
 * so whatever was due by the daemon's clock then has been started and
 * logged. Tests wait for it before a check that something did NOT happen.
 */
#ifndef ETRND_ADMIN_CTL_TURNS_H
#define ETRND_ADMIN_CTL_TURNS_H

#include "core/buf.h"
#include "proto/drain_status.h"

/* How long the request waits for the engine threads (a loaded machine
 * needs a turn well under this; the asker may simply ask again). */
#define CTL_TURNS_WAIT_MS 3000

/*
 * Post to each of the n shards' loops (the array is read during the call
 * only) a job that posts itself again: its second run comes after a whole
 * turn. Waits at most CTL_TURNS_WAIT_MS, then appends
 * "turns: K of N engine threads\n" to out (K < N: time ran out, or a loop
 * is stopping). Blocks: call it on the control socket's thread, never on
 * an engine thread. Jobs still running when it returns free themselves.
 */
void ctl_turns_wait(const struct drain_status_shard *shards, unsigned n, struct buf *out);

#endif
