/* SPDX-License-Identifier: MIT */
/*
 * spool_state: per-message states of one shard for offline readers. An
 * array of messages indexed by core/htab on the message id, and one byte
 * array holding every message's recipient states back to back.
 */
#include "store/spool_state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/htab.h"

#define STATE_MSGS_MIN 64u
#define STATE_RCPTS_MIN 256u

struct state_msg {
	uint64_t msgid;
	size_t rcpt_off;  /* into spool_state.rcpts */
	uint32_t nrcpt;
	uint16_t has_sched;
	uint16_t visited;
};

struct spool_state {
	struct htab idx;
	struct state_msg *msgs;
	uint32_t nmsgs, cap_msgs;
	uint8_t *rcpts;
	size_t nrcpts, cap_rcpts;
};

static uint32_t state_hash(uint64_t msgid)
{
	return hash_fin32(hash_fnv32(HASH_FNV32_INIT, &msgid, sizeof msgid));
}

static int state_eq(const void *ctx, uint32_t el, const void *key)
{
	const struct spool_state *s = ctx;
	return s->msgs[el].msgid == *(const uint64_t *)key;
}

static struct state_msg *state_find(const struct spool_state *s,
		uint64_t msgid)
{
	uint32_t el = htab_find(&s->idx, state_hash(msgid), state_eq, s,
			&msgid);
	return el == HTAB_NONE ? NULL : &s->msgs[el];
}

struct spool_state *spool_state_new(void)
{
	struct spool_state *s = calloc(1, sizeof *s);

	if (s != NULL)
		htab_init(&s->idx);
	return s;
}

struct spool_state *spool_state_free(struct spool_state *s)
{
	if (s == NULL)
		return NULL;
	htab_fini(&s->idx);
	free(s->msgs);
	free(s->rcpts);
	free(s);
	return NULL;
}

void spool_state_clear(struct spool_state *s)
{
	htab_fini(&s->idx);
	htab_init(&s->idx);
	s->nmsgs = 0;
	s->nrcpts = 0;
}

/* Room for one more message and nrcpt more recipient states. */
static int state_reserve(struct spool_state *s, uint32_t nrcpt)
{
	if (s->nmsgs == s->cap_msgs) {
		if (s->cap_msgs > UINT32_MAX / 2 - 1)
			return -ENOMEM; /* htab numbers elements in 32 bits */
		uint32_t cap = s->cap_msgs ? 2 * s->cap_msgs : STATE_MSGS_MIN;
		struct state_msg *m = realloc(s->msgs, (size_t)cap * sizeof *m);
		if (m == NULL)
			return -ENOMEM;
		s->msgs = m;
		s->cap_msgs = cap;
	}
	if (s->cap_rcpts - s->nrcpts < nrcpt) {
		size_t cap = s->cap_rcpts ? s->cap_rcpts : STATE_RCPTS_MIN;
		while (cap - s->nrcpts < nrcpt)
			cap *= 2;
		uint8_t *r = realloc(s->rcpts, cap);
		if (r == NULL)
			return -ENOMEM;
		s->rcpts = r;
		s->cap_rcpts = cap;
	}
	return 0;
}

int spool_state_msg(struct spool_state *s, uint64_t msgid, uint32_t nrcpt)
{
	if (nrcpt == 0)
		return -EINVAL;
	if (state_find(s, msgid) != NULL)
		return -EEXIST;
	int r = state_reserve(s, nrcpt);
	if (r < 0)
		return r;
	r = htab_insert(&s->idx, state_hash(msgid), s->nmsgs);
	if (r < 0)
		return r;
	s->msgs[s->nmsgs++] = (struct state_msg){
		.msgid = msgid, .rcpt_off = s->nrcpts, .nrcpt = nrcpt,
	};
	memset(s->rcpts + s->nrcpts, SPOOL_STATE_RCPT_PENDING, nrcpt);
	s->nrcpts += nrcpt;
	return 0;
}

int spool_state_done(struct spool_state *s, uint64_t msgid, uint32_t rcpt,
		enum spool_done_status status)
{
	struct state_msg *m = state_find(s, msgid);

	if (m == NULL)
		return -ENOENT;
	if (rcpt >= m->nrcpt)
		return -EINVAL;
	uint8_t *st = &s->rcpts[m->rcpt_off + rcpt];
	if (*st != SPOOL_STATE_RCPT_PENDING)
		return -EALREADY;
	*st = (uint8_t)status;
	return 0;
}

int spool_state_sched(struct spool_state *s, uint64_t msgid)
{
	struct state_msg *m = state_find(s, msgid);

	if (m == NULL)
		return -ENOENT;
	m->has_sched = 1;
	return 0;
}

int spool_state_visit(struct spool_state *s, uint64_t msgid)
{
	struct state_msg *m = state_find(s, msgid);

	if (m == NULL)
		return -ENOENT;
	if (m->visited)
		return 0;
	m->visited = 1;
	return 1;
}

enum spool_state_kind spool_state_of(const uint8_t *rcpts, uint32_t nrcpt,
		int has_sched)
{
	uint8_t first = nrcpt > 0 ? rcpts[0] : SPOOL_STATE_RCPT_PENDING;
	int alike = 1;

	for (uint32_t i = 0; i < nrcpt; i++) {
		if (rcpts[i] == SPOOL_STATE_RCPT_PENDING)
			return has_sched ? SPOOL_STATE_DEFERRED :
				SPOOL_STATE_HELD;
		if (rcpts[i] != first)
			alike = 0;
	}
	if (nrcpt == 0 || !alike)
		return SPOOL_STATE_FINISHED;
	switch ((enum spool_done_status)first) {
	case SPOOL_DONE_DELIVERED: return SPOOL_STATE_DELIVERED;
	case SPOOL_DONE_BOUNCED: return SPOOL_STATE_BOUNCED;
	case SPOOL_DONE_EXPIRED: return SPOOL_STATE_EXPIRED;
	}
	return SPOOL_STATE_FINISHED;
}

int spool_state_get(const struct spool_state *s, uint64_t msgid,
		enum spool_state_kind *kind, const uint8_t **rcpts,
		uint32_t *nrcpt)
{
	const struct state_msg *m = state_find(s, msgid);

	if (m == NULL)
		return -ENOENT;
	*kind = spool_state_of(s->rcpts + m->rcpt_off, m->nrcpt,
			(int)m->has_sched);
	if (rcpts != NULL)
		*rcpts = s->rcpts + m->rcpt_off;
	if (nrcpt != NULL)
		*nrcpt = m->nrcpt;
	return 0;
}

const char *spool_state_name(enum spool_state_kind kind)
{
	switch (kind) {
	case SPOOL_STATE_HELD: return "held";
	case SPOOL_STATE_DEFERRED: return "deferred";
	case SPOOL_STATE_DELIVERED: return "delivered";
	case SPOOL_STATE_BOUNCED: return "bounced";
	case SPOOL_STATE_EXPIRED: return "expired";
	case SPOOL_STATE_FINISHED: return "finished";
	}
	return "unknown";
}

const char *spool_state_rcpt_name(uint8_t rcpt_state)
{
	switch (rcpt_state) {
	case SPOOL_STATE_RCPT_PENDING: return "pending";
	case SPOOL_DONE_DELIVERED: return "delivered";
	case SPOOL_DONE_BOUNCED: return "bounced";
	case SPOOL_DONE_EXPIRED: return "expired";
	}
	return "unknown";
}
