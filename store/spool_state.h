/* SPDX-License-Identifier: MIT */
/*
 * spool_state: each message's state in one shard, from its records fed in
 * scan order, the way recovery reads them (store/spool_recover.h): the first
 * MSG copy counts, a DONE applies only after it and only once per
 * recipient, a SCHED after it marks an outbound retry. For offline readers
 * (etrnd-spool); single-threaded, memory grows with the shard's messages.
 */
#ifndef ETRND_STORE_SPOOL_STATE_H
#define ETRND_STORE_SPOOL_STATE_H

#include <stdint.h>

#include "store/spool_rec.h"

/* A message's state. Live: at least one recipient has no DONE. */
enum spool_state_kind {
	SPOOL_STATE_HELD,      /* live, no SCHED: waits for its customer (or,
	                          for an outbound domain, its first attempt) */
	SPOOL_STATE_DEFERRED,  /* live, with a SCHED: an outbound retry due */
	SPOOL_STATE_DELIVERED, /* every recipient delivered */
	SPOOL_STATE_BOUNCED,   /* every recipient bounced */
	SPOOL_STATE_EXPIRED,   /* every recipient expired (max_hold) */
	SPOOL_STATE_FINISHED,  /* every recipient done, not all alike */
};

/* A recipient with no DONE yet. The others: enum spool_done_status. */
#define SPOOL_STATE_RCPT_PENDING 0

struct spool_state;

/* An empty table, or NULL (errno ENOMEM). */
struct spool_state *spool_state_new(void);
/* Free; NULL is fine; returns NULL. */
struct spool_state *spool_state_free(struct spool_state *s);
/* Forget every message (the next shard); keeps the memory. */
void spool_state_clear(struct spool_state *s);

/* A MSG record: 0, -EEXIST for a later copy of a known message (ignored),
 * -EINVAL without recipients, -ENOMEM. */
int spool_state_msg(struct spool_state *s, uint64_t msgid, uint32_t nrcpt);
/* A DONE record: 0, -ENOENT (message not seen yet: ignored, as recovery
 * does), -EALREADY (recipient already done: the first DONE stands),
 * -EINVAL (no such recipient). */
int spool_state_done(struct spool_state *s, uint64_t msgid, uint32_t rcpt,
		enum spool_done_status status);
/* A SCHED record: 0, or -ENOENT (message not seen yet: ignored). */
int spool_state_sched(struct spool_state *s, uint64_t msgid);

/* For a reader's second pass that shows each message once: 1 the first
 * time it is called for msgid, 0 after, -ENOENT for an unknown message. */
int spool_state_visit(struct spool_state *s, uint64_t msgid);

/* What the table knows of msgid: 0 with *kind set (and *rcpts, when not
 * NULL, pointing at nrcpt recipient states: SPOOL_STATE_RCPT_PENDING or a
 * spool_done_status; valid until the next call that changes s), or -ENOENT. */
int spool_state_get(const struct spool_state *s, uint64_t msgid,
		enum spool_state_kind *kind, const uint8_t **rcpts,
		uint32_t *nrcpt);

/* 1 when kind is a live state. */
static inline int spool_state_live(enum spool_state_kind kind)
{
	return kind == SPOOL_STATE_HELD || kind == SPOOL_STATE_DEFERRED;
}

/* "held", "deferred", "delivered", "bounced", "expired", "finished"; a
 * static string. */
const char *spool_state_name(enum spool_state_kind kind);
/* A recipient state's name: "pending" or the DONE status's; static. */
const char *spool_state_rcpt_name(uint8_t rcpt_state);

/* The state nrcpt recipient states and has_sched make (what
 * spool_state_get() reports; for a reader that keeps its own). */
enum spool_state_kind spool_state_of(const uint8_t *rcpts, uint32_t nrcpt,
		int has_sched);

#endif
