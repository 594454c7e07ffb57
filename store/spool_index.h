/* SPDX-License-Identifier: MIT */
/*
 * spool_index: the in-memory queue index of one spool shard (DESIGN.md
 * section 5). Domain -> messages with undelivered recipients there, in
 * arrival order; message id -> message; segment -> live/dead bytes and
 * whether it may be unlinked. Pure data structure: no I/O, no locks; one per
 * shard, used only by that shard's engine thread (or recovery before it).
 */
#ifndef ETRND_STORE_SPOOL_INDEX_H
#define ETRND_STORE_SPOOL_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "store/spool_rec.h"

struct spool_index;
struct spool_index_queue;       /* one domain's queue, owned by the index */
struct spool_index_entry;       /* a message as a look-up sees it (below) */

/* A new, empty index, or NULL when out of memory. */
struct spool_index *spool_index_new(void);
/* Free the index and everything in it; every pointer it returned dies.
 * NULL is fine. Returns NULL. */
struct spool_index *spool_index_free(struct spool_index *idx);

/* ---- segments -----------------------------------------------------------
 * The index names segments by a small id it assigns (dense, increasing,
 * never reused), and remembers each one's file name (the 64-bit first
 * sequence, "%016x.seg"). A segment is open (being appended to) until
 * sealed. A sealed segment is dead, i.e. may be unlinked, when
 *  - none of its MSG records belongs to a message still indexed, and
 *  - none of its DONE records is pinned: a DONE for a message whose MSG is in
 *    another segment A pins it until A is removed, because unlinking the
 *    DONE while A's MSG survives would bring the delivered recipient back
 *    at the next start (a duplicate delivery). A NOTE record pins the same
 *    way (losing it would repeat a delay warning).
 * Dead segments queue up in the order they die, which is an order in which
 * they are safe to unlink (a segment whose DONEs refer to A dies only after
 * A was removed). Bytes: total = every record and damaged byte counted in the
 * segment; live = the records of messages still indexed; dead = total - live.
 * Pins assume a message's MSG precedes its DONEs in scan order (true of the
 * append-only write path). A compaction that copies a live MSG forward must
 * also copy the DONEs of its done recipients (and its NOTEs) after the
 * copy, or a restart would bring those recipients back; spool_index_msg_move() then makes the
 * new segment wait for the old one (see there).
 */

/* Register a new, open segment named first_seq; *seg_id gets its id.
 * Returns 0 or -ENOMEM. */
int spool_index_segment_add(struct spool_index *idx, uint64_t first_seq,
		uint32_t *seg_id);

/* No more records will be appended to seg_id; from now on it may die.
 * Returns 0 or -ENOENT. */
int spool_index_segment_seal(struct spool_index *idx, uint32_t seg_id);

/* Count bytes of seg_id that belong to no indexed record (a damaged region,
 * a record recovery could not use) as dead bytes. Unknown ids are ignored. */
void spool_index_segment_account(struct spool_index *idx, uint32_t seg_id,
		uint64_t bytes);

struct spool_index_seg_stat {
	uint64_t first_seq;   /* the file name */
	uint64_t total_bytes;
	uint64_t live_bytes;  /* record bytes of messages still indexed */
	uint64_t live_msgs;
	uint64_t pins;        /* DONE and NOTE records (or newer copies) that
	                         keep it */
	uint64_t newest_us;   /* newest time_us of a MSG indexed in it, 0: none
	                         (compaction's age: a copy keeps its time) */
	int sealed;
	int dead;             /* queued or taken as dead, not yet removed */
};
/* Fill *st for seg_id. Returns 0 or -ENOENT (unknown or removed). O(1). */
int spool_index_segment_stat(const struct spool_index *idx, uint32_t seg_id,
		struct spool_index_seg_stat *st);

/* Iterate the segments not yet removed, oldest first: *cursor starts at 0;
 * returns 1 and sets *seg_id while there is one, else 0. The index must not
 * change during the walk. For compaction's "mostly dead and old" choice. */
int spool_index_segment_next(const struct spool_index *idx, uint32_t *cursor,
		uint32_t *seg_id);

/* The first message still indexed in seg_id whose record starts at or after
 * from_off (the segment's messages are kept in record order), into *e
 * (e->rcpts NULL). Returns 0 or -ENOENT (none, or no such segment).
 * O(log records of the segment + finished ones skipped after from_off):
 * compaction walks a segment with from_off = the end of the record it
 * took last. */
int spool_index_segment_msg(const struct spool_index *idx, uint32_t seg_id,
		uint64_t from_off, struct spool_index_entry *e);

/* Pop up to max dead segments (oldest death first) into ids. Returns how
 * many. A segment is returned once; unlink its file, then call
 * spool_index_segment_remove(). */
size_t spool_index_take_dead(struct spool_index *idx, uint32_t *ids,
		size_t max);

/* The file of dead segment seg_id is gone: forget it, and release the pins
 * its messages held on other segments (which may queue more dead ones).
 * Returns 0, -ENOENT, or -EBUSY when spool_index_take_dead() has not
 * returned it. */
int spool_index_segment_remove(struct spool_index *idx, uint32_t seg_id);

/* ---- messages ---------------------------------------------------------- */

struct spool_index_msg {
	uint64_t msgid;
	uint32_t segment_id;     /* from spool_index_segment_add(), open */
	uint32_t rec_len;        /* whole record: header + payload */
	uint64_t off;            /* record offset in the segment */
	uint64_t time_us;        /* arrival (the record's time) */
	uint64_t body_len;
	uint32_t nrcpt;          /* >= 1 */
	const struct spool_rec_addr *rcpts; /* borrowed for the call only */
	int held;                /* the MSG has SPOOL_MSG_HELD: queued, but no
	                            drain may take it (every walk returns it
	                            with e->held set) until a NOTE(RELEASED) */
};

/*
 * Index a stored message: each recipient's domain is what follows its last
 * '@' (the empty domain when there is none), ASCII lower-cased, trailing dots
 * stripped; the message joins the tail of each distinct domain's queue once,
 * with that domain's recipients pending. rec_len counts as live bytes of the
 * segment whatever the result (the record is on disk). Returns 0, -EEXIST
 * when msgid is already indexed (the first copy stays; a copy in a later
 * segment, which a compaction cut short by a crash leaves, is remembered as
 * stale: see spool_index_stale_next()), -EINVAL (nrcpt 0, unknown segment),
 * -ENOMEM (only the segment's byte count changed).
 * Cost: O(nrcpt log nrcpt + total length of the addresses); amortised no
 * allocation for a single-recipient message (a 36-byte record in its
 * segment's record array, a 4-byte slot in the id table and in its queue),
 * one for more recipients.
 */
int spool_index_add_msg(struct spool_index *idx,
		const struct spool_index_msg *m);

/*
 * A DONE record for recipient rcpt_index of msgid, stored in segment
 * done_seg_id (whose total bytes it adds to). Marks the recipient done;
 * drops the message from that recipient's domain queue once the domain has
 * no pending recipient in it; frees the message once it has none at all
 * (*msg_finished = 1, else 0; msg_finished may be NULL). Returns 0,
 * -ENOENT (msgid not indexed: its MSG was lost or its segment unlinked),
 * -EALREADY (recipient already done), -EINVAL (rcpt_index out of range,
 * unknown done_seg_id); all three leave the index unchanged and are harmless.
 * -ENOMEM when done_seg_id is not the MSG's segment and its pin found no
 * memory: the recipient stays pending (only done_seg_id's bytes changed).
 * st feeds the counters of spool_index_totals(). O(recipients of the
 * message in that domain).
 */
int spool_index_done(struct spool_index *idx, uint64_t msgid,
		uint32_t rcpt_index, enum spool_done_status st,
		uint32_t done_seg_id, int *msg_finished);

/*
 * A NOTE record of kind for msgid, stored in segment note_seg_id (whose
 * total bytes it adds to): remembers the fact on the message (see
 * spool_index_msg_noted(); SPOOL_NOTE_RELEASED clears the held mark, and
 * gives -EALREADY for a message not held) and, like a DONE, pins note_seg_id until the
 * MSG's segment is removed, so a restart still finds the NOTE. Compaction
 * must write a NOTE after a copy for each kind noted (spool.c does). Returns
 * 0, -ENOENT (msgid not indexed), -EALREADY (already noted), -EINVAL
 * (unknown kind or note_seg_id), -ENOMEM; all but 0 leave the message
 * unchanged. O(1) but for the pins' list.
 */
int spool_index_note(struct spool_index *idx, uint64_t msgid,
		enum spool_note_kind kind, uint32_t note_seg_id);

/* 1 when a NOTE of kind was applied to msgid, 0 when not (or an unknown
 * kind), -ENOENT when msgid is not indexed. SPOOL_NOTE_RELEASED: 1 when
 * the message is not held (released, or never held). O(1). */
int spool_index_msg_noted(const struct spool_index *idx, uint64_t msgid,
		enum spool_note_kind kind);

/* One message as a queue or a look-up sees it. rcpts points into the index:
 * valid until the next change to the index. */
struct spool_index_entry {
	uint64_t msgid;
	uint32_t segment_id;
	uint32_t rec_len;
	uint64_t off;
	uint64_t time_us;
	uint64_t body_len;
	uint32_t nrcpt;          /* recipients in the record */
	uint32_t npending;       /* pending recipients listed in rcpts */
	int delay_warned;        /* a NOTE(SPOOL_NOTE_DELAY_WARNED) applied */
	int held;                /* quarantined: SPOOL_MSG_HELD and no
	                            NOTE(SPOOL_NOTE_RELEASED) yet. Drains,
	                            handoffs and the scheduler skip it; expiry
	                            and listings see it */
	/* From a queue only (0 from a look-up): */
	uint64_t next_us;        /* the scheduler's next attempt for this
	                            domain's recipients (wall clock µs; 0 =
	                            never deferred: due at once) */
	int busy;                /* a job (drain or scheduler) has this
	                            domain's recipients in flight */
	const uint32_t *rcpts;   /* their indexes in the record; from a queue:
	                            that domain's only, in record order until
	                            some are done, then in no promised order */
};

/* Look up msgid; e->rcpts then lists no recipients (npending is the total
 * still pending). Returns 0 or -ENOENT. O(1). */
int spool_index_msg_find(const struct spool_index *idx, uint64_t msgid,
		struct spool_index_entry *e);

/* The pending recipients of msgid, in every domain: their indexes in the
 * record, ascending, at most max of them into out. Returns how many, or
 * -ENOENT. O(recipients of the message). */
int spool_index_msg_pending(const struct spool_index *idx, uint64_t msgid,
		uint32_t *out, uint32_t max);

/* The done recipients of msgid: their indexes, ascending, into rcpt and
 * their enum spool_done_status into status, at most max. Returns how many,
 * or -ENOENT. O(recipients of the message). */
int spool_index_msg_done(const struct spool_index *idx, uint64_t msgid,
		uint32_t *rcpt, uint8_t *status, uint32_t max);

/*
 * Compaction: a byte-identical copy of msgid's record, found at (from_seg,
 * from_off), is durable at (to_seg, to_off), followed in to_seg by a DONE
 * record for each recipient done at the time (no DONE of the message may lie
 * between the two: spool.c writes copies first in a group commit). The
 * message now lives there: live bytes and messages move, its queue position
 * and recipient states stay, and to_seg is pinned by from_seg (and by a
 * stale copy's segment, which is then forgotten): the new segment must not
 * be unlinked before the old copy is, since a start finds the first copy and
 * the DONEs written after the move pin only the new segment. from_seg may
 * die now. to_seg's total counts the copy whatever the result, unless
 * -EINVAL or -ENOENT (then spool_index_segment_account() it). Returns 0, -ENOENT (not indexed: finished), -ESTALE (not at
 * from_seg/from_off, or to_seg == from_seg), -EINVAL (unknown to_seg),
 * -ENOMEM (nothing moved). O(1) but for the pins' lists.
 */
int spool_index_msg_move(struct spool_index *idx, uint64_t msgid,
		uint32_t from_seg, uint64_t from_off, uint32_t to_seg,
		uint64_t to_off);

/* Iterate the messages with a stale later copy (recovery found one: a crash
 * cut a compaction short); compaction must copy them again before anything
 * else can finish them (spool.c does it at start). *cursor starts at 0;
 * returns 1 with *e filled while there is one. No change to the index during
 * the walk. O(1) when there are none, else O(messages) in total. */
int spool_index_stale_next(const struct spool_index *idx, size_t *cursor,
		struct spool_index_entry *e);

/* The (lower-cased) domain of recipient rcpt_index of msgid, copied into out
 * (NUL-terminated, its length in *len). Returns 0, -ENOENT, -EINVAL (no such
 * recipient) or -ENAMETOOLONG. O(1). */
int spool_index_rcpt_domain(const struct spool_index *idx, uint64_t msgid,
		uint32_t rcpt_index, char *out, size_t outlen, size_t *len);

/* ---- domain queues ------------------------------------------------------ */

/* The queue of a domain (any case, trailing dots ignored), or NULL when no
 * message waits there. Owned by the index; valid until the next
 * spool_index_add_msg(), spool_index_done() or spool_index_free(). O(1). */
const struct spool_index_queue *spool_index_queue(const struct spool_index *idx,
		const char *domain, size_t len);

struct spool_index_qstat {
	const char *domain;      /* lower case, not NUL-terminated; lives as
	                            long as the queue pointer */
	size_t domain_len;
	uint64_t messages;
	uint64_t recipients;     /* pending recipients in this domain */
	uint64_t bytes;          /* sum of body_len of its messages (the
	                            message sizes SMTP SIZE speaks of; a message
	                            in several domains counts in each) */
	uint64_t oldest_us;      /* time_us of the queue's head */
};
void spool_index_queue_stat(const struct spool_index_queue *q,
		struct spool_index_qstat *st);

/* Bytes queued for a domain (qstat.bytes), 0 when none: the quota check.
 * O(1). */
uint64_t spool_index_domain_bytes(const struct spool_index *idx,
		const char *domain, size_t len);

/*
 * Walk a queue in arrival order, amortised O(1) per entry (holes left by
 * finished entries are skipped; O(log domains) for a message in several):
 *   struct spool_index_iter it;
 *   spool_index_queue_iter(q, &it);
 *   while (spool_index_queue_next(&it, &e)) ...
 * During the walk the index must not change, except spool_index_done() on
 * recipients of the entry just returned (the iterator has moved past it).
 */
struct spool_index_iter {
	const struct spool_index_queue *q;
	uint32_t pos;
};
void spool_index_queue_iter(const struct spool_index_queue *q,
		struct spool_index_iter *it);
int spool_index_queue_next(struct spool_index_iter *it,
		struct spool_index_entry *e);

/* Iterate the non-empty queues (for status): *cursor starts at 0; returns
 * the next queue or NULL at the end. No change to the index during the walk.
 * O(domains ever seen) in total. */
const struct spool_index_queue *spool_index_queue_each(
		const struct spool_index *idx, size_t *cursor);

/* ---- totals ------------------------------------------------------------- */

struct spool_index_totals {
	uint64_t messages;       /* indexed (with a pending recipient) */
	uint64_t recipients;     /* pending */
	uint64_t domains;        /* non-empty queues */
	uint64_t segments;       /* not removed */
	uint64_t total_bytes;    /* over those segments */
	uint64_t live_bytes;
	uint64_t delivered, bounced, expired; /* DONEs applied, by status */
	uint64_t mem_bytes;      /* bytes the index allocated (requested) */
};
void spool_index_totals(const struct spool_index *idx,
		struct spool_index_totals *t);

/* ---- outbound scheduling (proto/sched.h) ----------------------------------
 * Per queue entry, i.e. per (message, domain): when the scheduler tries it
 * next, and whether a job has it in flight (so a drain and the scheduler,
 * or two scheduler jobs, never send the same recipients at once). */

/* Set the entry's next attempt time (from a SCHED record or the
 * scheduler). dom: any case, trailing dots ignored. Returns 0, -ENOENT
 * (msgid not indexed, or has no pending recipient in dom) or -ENOMEM (a
 * single-recipient message kept compactly takes its general form, 48
 * bytes in one allocation, the first time it gets a time other than 0). O(log domains of the message). The walk of a queue stays valid. A
 * compaction move keeps both (spool.c writes a SCHED after the copy for
 * next_us != 0). */
int spool_index_set_next(struct spool_index *idx, uint64_t msgid, const char *dom,
		size_t len, uint64_t next_us);

/* The queue entry of msgid in domain dom (any case, trailing dots ignored)
 * into *e, as a queue walk returns it: next_us, busy, that domain's pending
 * recipients (e->rcpts valid until the next change to the index). Returns
 * 0 or -ENOENT (as above). O(domains of the message). */
int spool_index_msg_entry(const struct spool_index *idx, uint64_t msgid,
		const char *dom, size_t len, struct spool_index_entry *e);

/* Mark or clear the entry as in flight (memory only: a start finds every
 * entry not busy). Returns 0 or -ENOENT (as above:
 * clearing the mark of an entry whose last recipient is done meanwhile
 * gives -ENOENT, which is harmless). */
int spool_index_set_busy(struct spool_index *idx, uint64_t msgid, const char *dom,
		size_t len, int busy);

/* spool_index_set_busy() for each of msgs[0..n) in dom; a message no longer
 * queued there (finished meanwhile) is skipped. For a job's whole set. */
void spool_index_set_busy_n(struct spool_index *idx, const uint64_t *msgs, size_t n,
		const char *dom, size_t len, int busy);

/* Called by spool_index_add_msg() once per distinct domain of a message it
 * indexed (after recovery too, i.e. for every message stored live), with
 * the domain as the queue spells it (lower case, valid during the call).
 * Not for a second copy (-EEXIST) nor for a compaction move. One hook per
 * index (the thread's scheduler); fn NULL removes it. The hook must not
 * change the index. */
typedef void (*spool_index_add_fn)(void *arg, uint64_t msgid, const char *dom, size_t len);
void spool_index_set_add_hook(struct spool_index *idx, spool_index_add_fn fn, void *arg);

/* Walk msgid's queue entries that have a pending recipient and a next
 * attempt (next_us != 0): *cursor starts at 0; returns 1 with *s filled
 * while there is one, 0 at the end, -ENOENT when msgid is not indexed.
 * s->domain points into the index (valid until its next change). For
 * compaction, which writes them after a copy (spool.c). */
struct spool_index_sched {
	const char *domain;      /* lower case, not NUL-terminated */
	size_t domain_len;
	uint64_t next_us;
};
int spool_index_msg_sched_next(const struct spool_index *idx, uint64_t msgid,
		uint32_t *cursor, struct spool_index_sched *s);

#endif
