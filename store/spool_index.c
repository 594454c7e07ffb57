/* SPDX-License-Identifier: MIT */
/*
 * spool_index: see spool_index.h. A message is one allocation holding its
 * per-domain queue nodes and per-recipient state; domain queues are intrusive
 * lists (core/list.h) of those nodes (O(1) append and removal); domains are
 * indexed by a core/htab, message ids by their own open-addressing table
 * (linear probing, backward-shift deletion, so no tombstones pile up under
 * churn; why it is not a core/htab is said there).
 */
#include "store/spool_index.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/ascii.h"
#include "core/hash.h"
#include "core/htab.h"
#include "core/list.h"
#include "core/log.h"

/* Table sizes are powers of two. Messages: a slot is (id, pointer) so a
 * probe never touches the message itself; grown past 3/4 full. Domains:
 * a slot is an index + 1, grown past 1/2 full (few, short-probed). */
#define IX_MTAB_MIN 1024u
#define IX_DTAB_MIN 64u
#define IX_DOMS_MIN 16u
#define IX_SEGS_MIN 16u
#define IX_REFS_MIN 4u
/* The top two bits of a recipient's node index hold its done status: 0
 * while pending, else the enum spool_done_status of its DONE record (kept so
 * that compaction can copy the DONE records with their status). */
#define IX_RCPT_SHIFT 30
#define IX_RCPT_DONE (3u << IX_RCPT_SHIFT)
#define IX_NODE_MAX ((1u << IX_RCPT_SHIFT) - 1)
#define IX_NONE UINT32_MAX

/* One (message, domain): an element of that domain's queue. 40 bytes: the
 * outbound scheduler's state added 8 (next_us; busy shares k's word, since
 * k < ndom <= IX_NODE_MAX < 2^31). */
struct ix_node {
	struct list_node link;   /* in the domain's queue */
	uint32_t dom;      /* index into idx->doms */
	uint32_t start;    /* this domain's recipients: order[start, +count) */
	uint32_t pending;  /* of which order[start, +pending) are not done */
	unsigned k : 31;   /* position in msg->nodes (finds the message) */
	unsigned busy : 1; /* a job has these recipients in flight */
	uint64_t next_us;  /* the scheduler's next attempt; 0: due at once */
};

/*
 * Followed in the same allocation by
 *   uint32_t rcpt_node[nrcpt]  node of each recipient | IX_RCPT_DONE
 *   uint32_t order[nrcpt]      recipient indexes grouped by node
 */
struct ix_msg {
	uint64_t msgid;
	uint64_t off;
	uint64_t time_us;
	uint32_t rec_len;
	uint32_t body_len;
	uint32_t seg;
	uint32_t nrcpt;
	uint32_t pending;
	uint32_t ndom;
	/* A later copy of this record in segment stale (IX_NONE: none) that
	 * recovery found while this, the first copy, is the one indexed: what a
	 * compaction cut short by a crash leaves (see spool_index_add_msg). */
	uint32_t stale;
	uint32_t notes;          /* bit (1 << kind) per NOTE record applied */
	struct list_node slink;  /* in its segment's msgs */
	struct ix_node nodes[];
};

struct spool_index_queue {
	struct list nodes;       /* struct ix_node, arrival order */
	char *name;              /* lower case, len bytes + NUL */
	uint32_t len;
	uint32_t hash;
	uint64_t msgs, rcpts, bytes;
	uint32_t stamp;          /* add_msg grouping: tmp is valid when */
	uint32_t tmp;            /* stamp == idx->stamp; free list link */
	int used;
};

struct ix_ref {
	uint32_t holder;         /* segment with DONEs for our messages */
	uint32_t count;
};

struct ix_seg {
	uint64_t first_seq;
	uint64_t total, live_bytes, live_msgs, pins;
	struct ix_ref *refs;
	uint32_t nrefs, caprefs;
	uint32_t id;
	int sealed;
	int dead;                /* 1 queued, 2 taken by take_dead */
	struct list_node dlink;  /* in idx->dead while dead == 1 */
	/* Its indexed messages (struct ix_msg) in record order: compaction
	 * walks them. */
	struct list msgs;
	uint64_t newest_us;      /* newest time_us of a MSG record indexed in it */
};

struct ix_mslot {
	uint64_t id;
	struct ix_msg *m;        /* NULL: empty */
};

struct spool_index {
	struct ix_mslot *mtab;
	uint32_t mmask;
	uint64_t mcount;

	struct spool_index_queue *doms;
	uint32_t ndoms, capdoms;
	uint32_t dom_free;       /* free list through tmp, IX_NONE ends */
	struct htab dtab;        /* domain name -> index into doms */
	uint32_t dcount;         /* live domains (non-empty queues) */
	uint32_t stamp;

	struct ix_seg **segs;    /* segs[i] has id seg_base + i, NULL removed */
	uint32_t seg_base, nsegs, capsegs;
	uint32_t seg_next_id;
	uint64_t seg_count;
	struct list dead;        /* struct ix_seg, in order of death */

	uint32_t *scratch;       /* add_msg: node of each recipient */
	uint32_t capscratch;
	uint64_t nstale;         /* messages with a stale later copy */

	struct spool_index_totals t;

	spool_index_add_fn add_fn; /* the scheduler's hook, or NULL */
	void *add_arg;
};

/* ---- allocation accounting --------------------------------------------- */

static void *ix_alloc(struct spool_index *idx, size_t n)
{
	void *p = malloc(n);
	if (p != NULL)
		idx->t.mem_bytes += n;
	return p;
}

static void ix_release(struct spool_index *idx, void *p, size_t n)
{
	if (p == NULL)
		return;
	idx->t.mem_bytes -= n;
	free(p);
}

static size_t msg_size(uint32_t ndom, uint32_t nrcpt)
{
	return sizeof(struct ix_msg) + (size_t)ndom * sizeof(struct ix_node) +
		2 * (size_t)nrcpt * sizeof(uint32_t);
}

static uint32_t *msg_rcpt_node(struct ix_msg *m)
{
	return (uint32_t *)(void *)(m->nodes + m->ndom);
}

static uint32_t *msg_order(struct ix_msg *m)
{
	return msg_rcpt_node(m) + m->nrcpt;
}

static struct ix_msg *node_msg(const struct ix_node *n)
{
	return (struct ix_msg *)(void *)((char *)(n - n->k) -
			offsetof(struct ix_msg, nodes));
}

/* ---- message id table ---------------------------------------------------
 * Not a core/htab on purpose: the key is a 64-bit integer kept in the slot
 * next to the message pointer, so a probe compares ids without touching any
 * message, and there is no element array for htab's element numbers to point
 * into (messages are single allocations that come and go). This is the
 * per-message path (every add, DONE and look-up); an htab here would add an
 * element array, a free list and a dependent load per probe. */

static uint32_t mhash(const struct spool_index *idx, uint64_t id)
{
	/* Fibonacci hashing: sequential ids spread over the table. */
	return (uint32_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & idx->mmask;
}

static struct ix_mslot *mtab_find(const struct spool_index *idx, uint64_t id)
{
	uint32_t i = mhash(idx, id);

	for (;;) {
		struct ix_mslot *s = &idx->mtab[i];
		if (s->m == NULL)
			return NULL;
		if (s->id == id)
			return s;
		i = (i + 1) & idx->mmask;
	}
}

static void mtab_put(struct spool_index *idx, struct ix_msg *m)
{
	uint32_t i = mhash(idx, m->msgid);

	while (idx->mtab[i].m != NULL)
		i = (i + 1) & idx->mmask;
	idx->mtab[i].id = m->msgid;
	idx->mtab[i].m = m;
}

static int mtab_grow(struct spool_index *idx)
{
	uint32_t oldcap = idx->mtab ? idx->mmask + 1 : 0;
	uint32_t cap = oldcap ? oldcap * 2 : IX_MTAB_MIN;
	struct ix_mslot *old = idx->mtab;

	if (cap == 0) /* 2^32 slots: far beyond any spool */
		return -ENOMEM;
	struct ix_mslot *t = calloc(cap, sizeof *t);
	if (t == NULL)
		return -ENOMEM;
	idx->t.mem_bytes += (size_t)cap * sizeof *t;
	idx->mtab = t;
	idx->mmask = cap - 1;
	for (uint32_t i = 0; i < oldcap; i++)
		if (old[i].m != NULL)
			mtab_put(idx, old[i].m);
	ix_release(idx, old, (size_t)oldcap * sizeof *old);
	return 0;
}

/* Backward-shift deletion keeps every probe chain unbroken. */
static void mtab_del(struct spool_index *idx, struct ix_mslot *s)
{
	uint32_t i = (uint32_t)(s - idx->mtab), j = i;

	for (;;) {
		j = (j + 1) & idx->mmask;
		if (idx->mtab[j].m == NULL)
			break;
		uint32_t home = mhash(idx, idx->mtab[j].id);
		/* Move j into the hole at i unless its home lies in (i, j]. */
		if (((j - home) & idx->mmask) >= ((j - i) & idx->mmask)) {
			idx->mtab[i] = idx->mtab[j];
			i = j;
		}
	}
	idx->mtab[i].m = NULL;
	idx->mtab[i].id = 0;
	idx->mcount--;
}

/* ---- domains ------------------------------------------------------------ */

/* Trailing dots do not change the domain ("example.com." is absolute). */
static size_t dom_trim(const char *d, size_t len)
{
	while (len > 0 && d[len - 1] == '.')
		len--;
	return len;
}

/* FNV-1a over the ASCII-lower-cased name (RFC 5321 2.4: domains are
 * case-insensitive; UTF-8 bytes are kept), finalised for the low bits. */
static uint32_t dom_hash(const char *d, size_t len)
{
	return hash_fin32(hash_fnv32_lower(HASH_FNV32_INIT, d, len));
}

struct dom_key {
	const char *d;
	size_t len;
};

static int dom_equal(const void *ctx, uint32_t di, const void *key)
{
	const struct spool_index_queue *q = &((const struct spool_index *)ctx)->doms[di];
	const struct dom_key *k = key;

	if (q->len != k->len)
		return 0;
	for (size_t i = 0; i < k->len; i++)
		if ((unsigned char)q->name[i] != ascii_lower((unsigned char)k->d[i]))
			return 0;
	return 1;
}

/* Index of the domain (already trimmed), or IX_NONE. */
static uint32_t dom_find(const struct spool_index *idx, const char *d,
		size_t len, uint32_t h)
{
	const struct dom_key k = { d, len };
	uint32_t di = htab_find(&idx->dtab, h, dom_equal, idx, &k);

	return di == HTAB_NONE ? IX_NONE : di;
}

/* Room in the domain index for one more (counted in mem_bytes). */
static int dtab_reserve(struct spool_index *idx)
{
	size_t before = htab_mem(&idx->dtab);
	uint32_t want = idx->dcount + 1 > IX_DTAB_MIN / 2 ? idx->dcount + 1 : IX_DTAB_MIN / 2;
	int ret = htab_reserve(&idx->dtab, want);

	idx->t.mem_bytes += htab_mem(&idx->dtab) - before;
	return ret;
}

/* Find or create the domain; IX_NONE when out of memory. */
static uint32_t dom_get(struct spool_index *idx, const char *d, size_t len)
{
	uint32_t h = dom_hash(d, len);
	uint32_t di = dom_find(idx, d, len, h);

	if (di != IX_NONE)
		return di;
	if (len > UINT32_MAX - 1)
		return IX_NONE;
	if (dtab_reserve(idx) < 0)
		return IX_NONE;
	if (idx->dom_free == IX_NONE && idx->ndoms == idx->capdoms) {
		uint32_t cap = idx->capdoms ? idx->capdoms * 2 : IX_DOMS_MIN;
		struct spool_index_queue *nd = realloc(idx->doms,
				(size_t)cap * sizeof *nd);
		if (nd == NULL)
			return IX_NONE;
		idx->t.mem_bytes += (size_t)(cap - idx->capdoms) * sizeof *nd;
		idx->doms = nd;
		idx->capdoms = cap;
	}
	char *name = ix_alloc(idx, len + 1);
	if (name == NULL)
		return IX_NONE;
	ascii_lower_copy(name, d, len);
	name[len] = '\0';

	if (idx->dom_free != IX_NONE) {
		di = idx->dom_free;
		idx->dom_free = idx->doms[di].tmp;
	} else {
		di = idx->ndoms++;
	}
	struct spool_index_queue *q = &idx->doms[di];
	memset(q, 0, sizeof *q);
	q->name = name;
	q->len = (uint32_t)len;
	q->hash = h;
	q->used = 1;
	if (htab_insert(&idx->dtab, h, di) < 0) /* room reserved above */
		panic("domain index: reserved slot vanished");
	idx->dcount++;
	return di;
}

/* An empty queue is forgotten, so the table holds only domains with mail. */
static void dom_drop(struct spool_index *idx, uint32_t di)
{
	struct spool_index_queue *q = &idx->doms[di];

	htab_remove(&idx->dtab, q->hash, di);
	ix_release(idx, q->name, (size_t)q->len + 1);
	q->name = NULL;
	q->used = 0;
	q->tmp = idx->dom_free;
	idx->dom_free = di;
	idx->dcount--;
}

/* ---- segments ----------------------------------------------------------- */

static struct ix_seg *seg_get(const struct spool_index *idx, uint32_t id)
{
	if (id < idx->seg_base || id - idx->seg_base >= idx->nsegs)
		return NULL;
	return idx->segs[id - idx->seg_base];
}

static void seg_check_dead(struct spool_index *idx, struct ix_seg *s)
{
	if (!s->sealed || s->dead || s->live_msgs != 0 || s->pins != 0)
		return;
	s->dead = 1;
	list_append(&idx->dead, &s->dlink);
}

int spool_index_segment_add(struct spool_index *idx, uint64_t first_seq,
		uint32_t *seg_id)
{
	if (idx->seg_next_id == UINT32_MAX)
		return -ENOMEM;
	if (idx->nsegs == idx->capsegs) {
		uint32_t cap = idx->capsegs ? idx->capsegs * 2 : IX_SEGS_MIN;
		struct ix_seg **ns = realloc(idx->segs, (size_t)cap * sizeof *ns);
		if (ns == NULL)
			return -ENOMEM;
		idx->t.mem_bytes += (size_t)(cap - idx->capsegs) * sizeof *ns;
		idx->segs = ns;
		idx->capsegs = cap;
	}
	struct ix_seg *s = ix_alloc(idx, sizeof *s);
	if (s == NULL)
		return -ENOMEM;
	memset(s, 0, sizeof *s);
	s->first_seq = first_seq;
	s->id = idx->seg_next_id++;
	/* Only removed slots at the front are ever dropped, so the array
	 * always ends at the newest id: ids stay dense from seg_base. */
	if (idx->nsegs == 0)
		idx->seg_base = s->id;
	idx->segs[idx->nsegs++] = s;
	idx->seg_count++;
	*seg_id = s->id;
	return 0;
}

int spool_index_segment_seal(struct spool_index *idx, uint32_t seg_id)
{
	struct ix_seg *s = seg_get(idx, seg_id);

	if (s == NULL)
		return -ENOENT;
	s->sealed = 1;
	seg_check_dead(idx, s);
	return 0;
}

void spool_index_segment_account(struct spool_index *idx, uint32_t seg_id,
		uint64_t bytes)
{
	struct ix_seg *s = seg_get(idx, seg_id);

	if (s != NULL) {
		s->total += bytes;
		idx->t.total_bytes += bytes;
	}
}

int spool_index_segment_stat(const struct spool_index *idx, uint32_t seg_id,
		struct spool_index_seg_stat *st)
{
	const struct ix_seg *s = seg_get(idx, seg_id);

	if (s == NULL)
		return -ENOENT;
	st->first_seq = s->first_seq;
	st->total_bytes = s->total;
	st->live_bytes = s->live_bytes;
	st->live_msgs = s->live_msgs;
	st->pins = s->pins;
	st->sealed = s->sealed;
	st->dead = s->dead != 0;
	st->newest_us = s->newest_us;
	return 0;
}

int spool_index_segment_next(const struct spool_index *idx, uint32_t *cursor,
		uint32_t *seg_id)
{
	while (*cursor < idx->nsegs) {
		const struct ix_seg *s = idx->segs[(*cursor)++];
		if (s != NULL) {
			*seg_id = s->id;
			return 1;
		}
	}
	return 0;
}

size_t spool_index_take_dead(struct spool_index *idx, uint32_t *ids,
		size_t max)
{
	size_t n = 0;

	while (n < max && !list_empty(&idx->dead)) {
		struct ix_seg *s = LIST_ENTRY(list_pop(&idx->dead), struct ix_seg, dlink);

		s->dead = 2;
		ids[n++] = s->id;
	}
	return n;
}

int spool_index_segment_remove(struct spool_index *idx, uint32_t seg_id)
{
	struct ix_seg *s = seg_get(idx, seg_id);

	if (s == NULL)
		return -ENOENT;
	if (s->dead != 2)
		return -EBUSY;
	for (uint32_t i = 0; i < s->nrefs; i++) {
		struct ix_seg *h = seg_get(idx, s->refs[i].holder);
		/* A pinned holder cannot be dead, so it cannot be gone. */
		if (h == NULL || h->pins < s->refs[i].count)
			panic("segment %u: pin of %u on %u lost", s->id,
					s->refs[i].count, s->refs[i].holder);
		h->pins -= s->refs[i].count;
		seg_check_dead(idx, h);
	}
	idx->segs[seg_id - idx->seg_base] = NULL;
	idx->t.total_bytes -= s->total;
	idx->seg_count--;
	ix_release(idx, s->refs, (size_t)s->caprefs * sizeof *s->refs);
	ix_release(idx, s, sizeof *s);
	/* Drop removed slots at the front (segments mostly die oldest
	 * first); a removed one in the middle waits as a NULL. */
	uint32_t skip = 0;
	while (skip < idx->nsegs && idx->segs[skip] == NULL)
		skip++;
	if (skip > 0) {
		memmove(idx->segs, idx->segs + skip,
				(size_t)(idx->nsegs - skip) * sizeof *idx->segs);
		idx->nsegs -= skip;
		idx->seg_base += skip;
	}
	return 0;
}

/* Segment holder keeps a DONE for a message of s: pin it. */
static int seg_pin(struct spool_index *idx, struct ix_seg *s,
		struct ix_seg *holder)
{
	/* DONEs arrive in segment order, so the holder is usually the last
	 * one already listed. */
	if (s->nrefs > 0 && s->refs[s->nrefs - 1].holder == holder->id) {
		s->refs[s->nrefs - 1].count++;
		holder->pins++;
		return 0;
	}
	for (uint32_t i = 0; i + 1 < s->nrefs; i++) {
		if (s->refs[i].holder == holder->id) {
			s->refs[i].count++;
			holder->pins++;
			return 0;
		}
	}
	if (s->nrefs == s->caprefs) {
		uint32_t cap = s->caprefs ? s->caprefs * 2 : IX_REFS_MIN;
		struct ix_ref *nr = realloc(s->refs, (size_t)cap * sizeof *nr);
		if (nr == NULL)
			return -ENOMEM;
		idx->t.mem_bytes += (size_t)(cap - s->caprefs) * sizeof *nr;
		s->refs = nr;
		s->caprefs = cap;
	}
	s->refs[s->nrefs].holder = holder->id;
	s->refs[s->nrefs].count = 1;
	s->nrefs++;
	holder->pins++;
	return 0;
}

/* ---- messages ----------------------------------------------------------- */

/*
 * Recovery found a second copy of msg's record, in segment seg, after the
 * first (which stays indexed). Compaction writes such a copy (followed by
 * DONE records for every recipient done before it) and a crash left the
 * old segment in place. The copy is stale but may become the first copy a
 * later start finds, once the old segment is gone, and its DONE records may
 * be torn. So it is remembered: the next move of the message (compaction
 * copies it again, spool.c does that at start) makes the new copy wait for
 * it (a newer copy covers every older one: it carries all DONEs before it),
 * and a message finished before that keeps its segment until the stale copy
 * is gone. Several stale copies chain: each waits for the one before.
 */
static int dup_copy(struct spool_index *idx, struct ix_msg *msg,
		struct ix_seg *seg)
{
	if (seg->id == msg->seg || seg->id == msg->stale)
		return 0;
	if (msg->stale != IX_NONE) {
		struct ix_seg *prev = seg_get(idx, msg->stale);
		if (prev != NULL) {
			int ret = seg_pin(idx, prev, seg);
			if (ret < 0)
				return ret;
		}
	} else {
		idx->nstale++;
	}
	msg->stale = seg->id;
	return 0;
}

/* Room for one more message id and a scratch entry per recipient. */
static int add_msg_reserve(struct spool_index *idx, uint32_t nrcpt)
{
	int ret;

	if (idx->mtab == NULL || (idx->mcount + 1) * 4 > (uint64_t)(idx->mmask + 1) * 3) {
		ret = mtab_grow(idx);
		if (ret < 0)
			return ret;
	}
	if (nrcpt > idx->capscratch) {
		uint32_t *ns = realloc(idx->scratch, (size_t)nrcpt * sizeof *ns);
		if (ns == NULL)
			return -ENOMEM;
		idx->t.mem_bytes += (size_t)(nrcpt - idx->capscratch) * sizeof *ns;
		idx->scratch = ns;
		idx->capscratch = nrcpt;
	}
	return 0;
}

/* Pass 1: each recipient's domain into scratch, the domains numbered in
 * order of first appearance within this message (q->tmp; the stamp marks
 * "seen here"). Returns how many distinct domains, or -ENOMEM (domains
 * created for this message are dropped again). */
static int64_t add_msg_domains(struct spool_index *idx, const struct spool_index_msg *m)
{
	uint32_t ndom = 0;

	if (++idx->stamp == 0) {
		for (uint32_t i = 0; i < idx->ndoms; i++)
			idx->doms[i].stamp = 0;
		idx->stamp = 1;
	}
	for (uint32_t i = 0; i < m->nrcpt; i++) {
		size_t dlen;
		const char *d = spool_rec_addr_domain(m->rcpts[i], &dlen);
		uint32_t di = dom_get(idx, d, dlen);
		if (di == IX_NONE)
			return -ENOMEM;
		struct spool_index_queue *q = &idx->doms[di];
		if (q->stamp != idx->stamp) {
			q->stamp = idx->stamp;
			q->tmp = ndom++;
		}
		idx->scratch[i] = di;
	}
	return ndom;
}

/* Domains created for a message that failed, and left empty, go again. */
static void add_msg_undo_domains(struct spool_index *idx)
{
	for (uint32_t i = 0; i < idx->ndoms; i++) {
		struct spool_index_queue *q = &idx->doms[i];
		if (q->used && q->stamp == idx->stamp && q->msgs == 0)
			dom_drop(idx, i);
	}
}

/* Pass 2: lay the recipients out grouped by node in record order (a
 * counting sort over the domain numbers of pass 1). */
static void add_msg_layout(struct spool_index *idx, struct ix_msg *msg)
{
	uint32_t *rn = msg_rcpt_node(msg), *order = msg_order(msg);
	uint32_t start = 0;

	for (uint32_t k = 0; k < msg->ndom; k++) {
		msg->nodes[k].pending = 0;
		msg->nodes[k].k = k & IX_NODE_MAX;
		msg->nodes[k].busy = 0;
		msg->nodes[k].next_us = 0;
	}
	for (uint32_t i = 0; i < msg->nrcpt; i++) {
		uint32_t k = idx->doms[idx->scratch[i]].tmp;
		rn[i] = k;
		msg->nodes[k].dom = idx->scratch[i];
		msg->nodes[k].pending++;
	}
	for (uint32_t k = 0; k < msg->ndom; k++) {
		msg->nodes[k].start = start;
		start += msg->nodes[k].pending;
		msg->nodes[k].pending = 0;
	}
	for (uint32_t i = 0; i < msg->nrcpt; i++) {
		struct ix_node *n = &msg->nodes[rn[i]];
		order[n->start + n->pending++] = i;
	}
}

/* The laid-out message joins its domains' queues, the id table and its
 * segment. */
static void add_msg_link(struct spool_index *idx, struct ix_seg *seg,
		struct ix_msg *msg)
{
	for (uint32_t k = 0; k < msg->ndom; k++) {
		struct ix_node *n = &msg->nodes[k];
		struct spool_index_queue *q = &idx->doms[n->dom];
		list_append(&q->nodes, &n->link);
		q->msgs++;
		q->rcpts += n->pending;
		q->bytes += msg->body_len;
	}
	mtab_put(idx, msg);
	idx->mcount++;
	/* Record order: the write path and recovery both index records in
	 * file order, so appending keeps the list sorted by offset. */
	list_append(&seg->msgs, &msg->slink);
	if (msg->time_us > seg->newest_us)
		seg->newest_us = msg->time_us;
	seg->live_msgs++;
	seg->live_bytes += msg->rec_len;
	idx->t.live_bytes += msg->rec_len;
	idx->t.messages++;
	idx->t.recipients += msg->nrcpt;
}

int spool_index_add_msg(struct spool_index *idx,
		const struct spool_index_msg *m)
{
	struct ix_seg *seg = seg_get(idx, m->segment_id);
	struct ix_msg *msg;
	int64_t ndom;
	int ret;

	if (seg == NULL)
		return -EINVAL;
	/* The record is on disk whatever happens to its index entry. */
	seg->total += m->rec_len;
	idx->t.total_bytes += m->rec_len;
	if (m->nrcpt == 0 || m->nrcpt > IX_NODE_MAX ||
	    m->body_len > UINT32_MAX)
		return -EINVAL;
	struct ix_mslot *dup = idx->mtab != NULL ? mtab_find(idx, m->msgid) : NULL;
	if (dup != NULL) {
		ret = dup_copy(idx, dup->m, seg);
		return ret < 0 ? ret : -EEXIST;
	}
	ret = add_msg_reserve(idx, m->nrcpt);
	if (ret < 0)
		return ret;
	ndom = add_msg_domains(idx, m);
	if (ndom < 0)
		goto fail;
	msg = ix_alloc(idx, msg_size((uint32_t)ndom, m->nrcpt));
	if (msg == NULL)
		goto fail;
	msg->msgid = m->msgid;
	msg->off = m->off;
	msg->time_us = m->time_us;
	msg->rec_len = m->rec_len;
	msg->body_len = (uint32_t)m->body_len;
	msg->seg = m->segment_id;
	msg->nrcpt = m->nrcpt;
	msg->pending = m->nrcpt;
	msg->ndom = (uint32_t)ndom;
	msg->stale = IX_NONE;
	msg->notes = 0;
	add_msg_layout(idx, msg);
	add_msg_link(idx, seg, msg);
	/* Last: the message is whole in the index when the scheduler hears
	 * of it. */
	for (uint32_t k = 0; idx->add_fn != NULL && k < msg->ndom; k++) {
		const struct spool_index_queue *q = &idx->doms[msg->nodes[k].dom];
		idx->add_fn(idx->add_arg, msg->msgid, q->name, q->len);
	}
	return 0;
fail:
	add_msg_undo_domains(idx);
	return -ENOMEM;
}

static void msg_free(struct spool_index *idx, struct ix_msg *msg)
{
	ix_release(idx, msg, msg_size(msg->ndom, msg->nrcpt));
}

/* The message's last pending recipient is done: forget it and free it. */
static void msg_finish(struct spool_index *idx, struct ix_mslot *slot,
		struct ix_seg *mseg)
{
	struct ix_msg *msg = slot->m;

	if (msg->stale != IX_NONE) {
		/* Finished before compaction copied it again: the stale copy
		 * must go before this segment does, or a start without this
		 * copy would find the stale one first (see dup_copy). Never
		 * fails to pin: holding mseg a little longer than needed is
		 * the worst. */
		struct ix_seg *st_seg = seg_get(idx, msg->stale);
		if (st_seg != NULL && seg_pin(idx, st_seg, mseg) < 0)
			log_err("spool index: message %llx: cannot pin "
					"segment %u for its stale copy",
					(unsigned long long)msg->msgid, mseg->id);
		idx->nstale--;
	}
	mtab_del(idx, slot);
	list_unlink(&mseg->msgs, &msg->slink);
	mseg->live_msgs--;
	mseg->live_bytes -= msg->rec_len;
	idx->t.live_bytes -= msg->rec_len;
	idx->t.messages--;
	msg_free(idx, msg);
	seg_check_dead(idx, mseg);
}

int spool_index_done(struct spool_index *idx, uint64_t msgid,
		uint32_t rcpt_index, enum spool_done_status st,
		uint32_t done_seg_id, int *msg_finished)
{
	struct ix_seg *dseg = seg_get(idx, done_seg_id);
	int ret;

	if (msg_finished != NULL)
		*msg_finished = 0;
	if (dseg == NULL)
		return -EINVAL;
	dseg->total += SPOOL_REC_HDR_SIZE + SPOOL_DONE_PAYLOAD_SIZE;
	idx->t.total_bytes += SPOOL_REC_HDR_SIZE + SPOOL_DONE_PAYLOAD_SIZE;
	struct ix_mslot *slot = idx->mtab ? mtab_find(idx, msgid) : NULL;
	if (slot == NULL)
		return -ENOENT;
	struct ix_msg *msg = slot->m;
	if (rcpt_index >= msg->nrcpt)
		return -EINVAL;
	uint32_t *rn = msg_rcpt_node(msg), *order = msg_order(msg);
	if (rn[rcpt_index] & IX_RCPT_DONE)
		return -EALREADY;

	struct ix_seg *mseg = seg_get(idx, msg->seg);
	if (mseg == NULL)
		panic("message %llx in unknown segment %u",
				(unsigned long long)msgid, msg->seg);
	if (mseg != dseg) {
		ret = seg_pin(idx, mseg, dseg);
		if (ret < 0)
			return ret;
	}

	struct ix_node *n = &msg->nodes[rn[rcpt_index]];
	struct spool_index_queue *q = &idx->doms[n->dom];
	/* Keep order[start, +pending) the pending ones: swap ours to the
	 * end of that range. */
	uint32_t last = n->start + n->pending - 1;
	for (uint32_t j = n->start; j <= last; j++) {
		if (order[j] == rcpt_index) {
			order[j] = order[last];
			order[last] = rcpt_index;
			break;
		}
	}
	rn[rcpt_index] |= (uint32_t)(st >= SPOOL_DONE_DELIVERED &&
			st <= SPOOL_DONE_EXPIRED ? st : SPOOL_DONE_EXPIRED)
		<< IX_RCPT_SHIFT;
	n->pending--;
	q->rcpts--;
	msg->pending--;
	idx->t.recipients--;
	if (st == SPOOL_DONE_DELIVERED)
		idx->t.delivered++;
	else if (st == SPOOL_DONE_BOUNCED)
		idx->t.bounced++;
	else
		idx->t.expired++;

	if (n->pending == 0) {
		list_unlink(&q->nodes, &n->link);
		q->msgs--;
		q->bytes -= msg->body_len;
		if (q->msgs == 0)
			dom_drop(idx, n->dom);
	}
	if (msg->pending == 0) {
		msg_finish(idx, slot, mseg);
		if (msg_finished != NULL)
			*msg_finished = 1;
	}
	return 0;
}

int spool_index_note(struct spool_index *idx, uint64_t msgid,
		enum spool_note_kind kind, uint32_t note_seg_id)
{
	struct ix_seg *nseg = seg_get(idx, note_seg_id);
	int ret;

	if (nseg == NULL)
		return -EINVAL;
	nseg->total += SPOOL_REC_HDR_SIZE + SPOOL_NOTE_PAYLOAD_SIZE;
	idx->t.total_bytes += SPOOL_REC_HDR_SIZE + SPOOL_NOTE_PAYLOAD_SIZE;
	if (kind < SPOOL_NOTE_DELAY_WARNED || kind > SPOOL_NOTE_KIND_MAX)
		return -EINVAL;
	struct ix_mslot *slot = idx->mtab ? mtab_find(idx, msgid) : NULL;
	if (slot == NULL)
		return -ENOENT;
	struct ix_msg *msg = slot->m;
	if (msg->notes & (1u << kind))
		return -EALREADY;
	struct ix_seg *mseg = seg_get(idx, msg->seg);
	if (mseg == NULL)
		panic("message %llx in unknown segment %u",
				(unsigned long long)msgid, msg->seg);
	/* Pinned like a DONE: were the NOTE's segment unlinked while the MSG
	 * stays, a restart would forget it (a second delay warning). */
	if (mseg != nseg) {
		ret = seg_pin(idx, mseg, nseg);
		if (ret < 0)
			return ret;
	}
	msg->notes |= 1u << kind;
	return 0;
}

int spool_index_msg_noted(const struct spool_index *idx, uint64_t msgid,
		enum spool_note_kind kind)
{
	struct ix_mslot *slot = idx->mtab ? mtab_find(idx, msgid) : NULL;

	if (slot == NULL)
		return -ENOENT;
	if (kind < SPOOL_NOTE_DELAY_WARNED || kind > SPOOL_NOTE_KIND_MAX)
		return 0;
	return (slot->m->notes >> kind) & 1u;
}

static void entry_fill(struct ix_msg *msg, struct spool_index_entry *e)
{
	e->msgid = msg->msgid;
	e->segment_id = msg->seg;
	e->rec_len = msg->rec_len;
	e->off = msg->off;
	e->time_us = msg->time_us;
	e->body_len = msg->body_len;
	e->nrcpt = msg->nrcpt;
	e->npending = msg->pending;
	e->delay_warned = (msg->notes >> SPOOL_NOTE_DELAY_WARNED) & 1u;
	e->next_us = 0;
	e->busy = 0;
	e->rcpts = NULL;
}

/* A queue entry: the message with that domain's part of it. */
static void node_fill(const struct ix_node *n, struct spool_index_entry *e)
{
	struct ix_msg *msg = node_msg(n);

	entry_fill(msg, e);
	e->npending = n->pending;
	e->next_us = n->next_us;
	e->busy = n->busy;
	e->rcpts = msg_order(msg) + n->start;
}

int spool_index_msg_find(const struct spool_index *idx, uint64_t msgid,
		struct spool_index_entry *e)
{
	struct ix_mslot *slot = idx->mtab ? mtab_find(idx, msgid) : NULL;

	if (slot == NULL)
		return -ENOENT;
	entry_fill(slot->m, e);
	return 0;
}

int spool_index_msg_pending(const struct spool_index *idx, uint64_t msgid,
		uint32_t *out, uint32_t max)
{
	struct ix_mslot *slot = idx->mtab ? mtab_find(idx, msgid) : NULL;
	const uint32_t *rn;
	uint32_t n = 0;

	if (slot == NULL)
		return -ENOENT;
	rn = msg_rcpt_node(slot->m);
	for (uint32_t i = 0; i < slot->m->nrcpt && n < max; i++)
		if (!(rn[i] & IX_RCPT_DONE))
			out[n++] = i;
	return (int)n;
}

int spool_index_msg_done(const struct spool_index *idx, uint64_t msgid,
		uint32_t *rcpt, uint8_t *status, uint32_t max)
{
	struct ix_mslot *slot = idx->mtab ? mtab_find(idx, msgid) : NULL;
	const uint32_t *rn;
	uint32_t n = 0;

	if (slot == NULL)
		return -ENOENT;
	rn = msg_rcpt_node(slot->m);
	for (uint32_t i = 0; i < slot->m->nrcpt && n < max; i++) {
		if (rn[i] & IX_RCPT_DONE) {
			rcpt[n] = i;
			status[n++] = (uint8_t)(rn[i] >> IX_RCPT_SHIFT);
		}
	}
	return (int)n;
}

int spool_index_msg_move(struct spool_index *idx, uint64_t msgid,
		uint32_t from_seg, uint64_t from_off, uint32_t to_seg,
		uint64_t to_off)
{
	struct ix_seg *to = seg_get(idx, to_seg), *from, *stale;
	struct ix_mslot *slot;
	struct ix_msg *msg;
	int ret;

	if (to == NULL)
		return -EINVAL;
	slot = idx->mtab ? mtab_find(idx, msgid) : NULL;
	if (slot == NULL)
		return -ENOENT;
	msg = slot->m;
	/* The copy is on disk whatever happens to the index entry. */
	to->total += msg->rec_len;
	idx->t.total_bytes += msg->rec_len;
	if (msg->seg != from_seg || msg->off != from_off || to_seg == from_seg)
		return -ESTALE;
	from = seg_get(idx, from_seg);
	if (from == NULL)
		panic("message %llx in unknown segment %u",
				(unsigned long long)msgid, from_seg);
	/* The new copy waits for the old one (and for a stale copy recovery
	 * found): while the old copy exists a start finds it first, and its
	 * DONE records (pinned to it) decide; once it is gone the new copy,
	 * followed by a DONE for every recipient done before it, decides.
	 * If the new segment went first, the old copy would be back without
	 * the DONEs written since the move (pinned to the new segment). */
	ret = seg_pin(idx, from, to);
	if (ret < 0)
		return ret;
	if (msg->stale != IX_NONE) {
		stale = seg_get(idx, msg->stale);
		if (stale != NULL && stale != to) {
			ret = seg_pin(idx, stale, to);
			if (ret < 0)
				return ret; /* the first pin only holds longer */
		}
		msg->stale = IX_NONE;
		idx->nstale--;
	}
	list_unlink(&from->msgs, &msg->slink);
	from->live_msgs--;
	from->live_bytes -= msg->rec_len;
	list_append(&to->msgs, &msg->slink);
	to->live_msgs++;
	to->live_bytes += msg->rec_len;
	if (msg->time_us > to->newest_us)
		to->newest_us = msg->time_us;
	msg->seg = to_seg;
	msg->off = to_off;
	seg_check_dead(idx, from);
	return 0;
}

int spool_index_segment_msg(const struct spool_index *idx, uint32_t seg_id,
		uint64_t from_off, struct spool_index_entry *e)
{
	const struct ix_seg *s = seg_get(idx, seg_id);

	if (s == NULL)
		return -ENOENT;
	const struct list_node *ln;

	LIST_FOREACH(ln, &s->msgs) {
		struct ix_msg *m = LIST_ENTRY(ln, struct ix_msg, slink);

		if (m->off >= from_off) {
			entry_fill(m, e);
			return 0;
		}
	}
	return -ENOENT;
}

int spool_index_stale_next(const struct spool_index *idx, size_t *cursor,
		struct spool_index_entry *e)
{
	if (idx->nstale == 0 || idx->mtab == NULL)
		return 0;
	while (*cursor <= idx->mmask) {
		const struct ix_mslot *s = &idx->mtab[(*cursor)++];
		if (s->m != NULL && s->m->stale != IX_NONE) {
			entry_fill(s->m, e);
			return 1;
		}
	}
	return 0;
}

int spool_index_rcpt_domain(const struct spool_index *idx, uint64_t msgid,
		uint32_t rcpt_index, char *out, size_t outlen, size_t *len)
{
	struct ix_mslot *slot = idx->mtab ? mtab_find(idx, msgid) : NULL;
	const struct spool_index_queue *q;
	uint32_t k;

	if (slot == NULL)
		return -ENOENT;
	if (rcpt_index >= slot->m->nrcpt)
		return -EINVAL;
	k = msg_rcpt_node(slot->m)[rcpt_index] & ~IX_RCPT_DONE;
	q = &idx->doms[slot->m->nodes[k].dom];
	if (q->len >= outlen)
		return -ENAMETOOLONG;
	memcpy(out, q->name, q->len);
	out[q->len] = '\0';
	*len = q->len;
	return 0;
}

/* ---- queues ------------------------------------------------------------- */

static const struct spool_index_queue *queue_lookup(
		const struct spool_index *idx, const char *domain, size_t len)
{
	len = dom_trim(domain, len);
	uint32_t di = dom_find(idx, domain, len, dom_hash(domain, len));
	return di == IX_NONE ? NULL : &idx->doms[di];
}

const struct spool_index_queue *spool_index_queue(const struct spool_index *idx,
		const char *domain, size_t len)
{
	return queue_lookup(idx, domain, len);
}

void spool_index_queue_stat(const struct spool_index_queue *q,
		struct spool_index_qstat *st)
{
	st->domain = q->name;
	st->domain_len = q->len;
	st->messages = q->msgs;
	st->recipients = q->rcpts;
	st->bytes = q->bytes;
	st->oldest_us = q->nodes.head != NULL ?
		node_msg(LIST_ENTRY(q->nodes.head, struct ix_node, link))->time_us : 0;
}

uint64_t spool_index_domain_bytes(const struct spool_index *idx,
		const char *domain, size_t len)
{
	const struct spool_index_queue *q = queue_lookup(idx, domain, len);
	return q ? q->bytes : 0;
}

void spool_index_queue_iter(const struct spool_index_queue *q,
		struct spool_index_iter *it)
{
	it->next = q ? q->nodes.head : NULL;
}

int spool_index_queue_next(struct spool_index_iter *it,
		struct spool_index_entry *e)
{
	const struct list_node *ln = it->next;

	if (ln == NULL)
		return 0;
	it->next = ln->next;
	node_fill(LIST_ENTRY(ln, struct ix_node, link), e);
	return 1;
}

const struct spool_index_queue *spool_index_queue_each(
		const struct spool_index *idx, size_t *cursor)
{
	while (*cursor < idx->ndoms) {
		const struct spool_index_queue *q = &idx->doms[(*cursor)++];
		if (q->used)
			return q;
	}
	return NULL;
}

/* ---- outbound scheduling ------------------------------------------------ */

/* Message msgid's node for domain dom while it has a pending recipient
 * there, else NULL. O(domains of the message). */
static struct ix_node *sched_node(const struct spool_index *idx, uint64_t msgid,
		const char *dom, size_t len)
{
	struct ix_mslot *slot = idx->mtab ? mtab_find(idx, msgid) : NULL;
	uint32_t di;

	if (slot == NULL)
		return NULL;
	len = dom_trim(dom, len);
	di = dom_find(idx, dom, len, dom_hash(dom, len));
	if (di == IX_NONE)
		return NULL;
	for (uint32_t k = 0; k < slot->m->ndom; k++) {
		struct ix_node *n = &slot->m->nodes[k];
		if (n->dom == di)
			return n->pending > 0 ? n : NULL;
	}
	return NULL;
}

int spool_index_msg_entry(const struct spool_index *idx, uint64_t msgid,
		const char *dom, size_t len, struct spool_index_entry *e)
{
	const struct ix_node *n = sched_node(idx, msgid, dom, len);

	if (n == NULL)
		return -ENOENT;
	node_fill(n, e);
	return 0;
}

int spool_index_set_next(struct spool_index *idx, uint64_t msgid, const char *dom,
		size_t len, uint64_t next_us)
{
	struct ix_node *n = sched_node(idx, msgid, dom, len);

	if (n == NULL)
		return -ENOENT;
	n->next_us = next_us;
	return 0;
}

int spool_index_set_busy(struct spool_index *idx, uint64_t msgid, const char *dom,
		size_t len, int busy)
{
	struct ix_node *n = sched_node(idx, msgid, dom, len);

	if (n == NULL)
		return -ENOENT;
	n->busy = busy != 0;
	return 0;
}

void spool_index_set_busy_n(struct spool_index *idx, const uint64_t *msgs, size_t n,
			    const char *dom, size_t len, int busy)
{
	for (size_t i = 0; i < n; i++)
		(void)spool_index_set_busy(idx, msgs[i], dom, len, busy);
}

void spool_index_set_add_hook(struct spool_index *idx, spool_index_add_fn fn, void *arg)
{
	idx->add_fn = fn;
	idx->add_arg = fn != NULL ? arg : NULL;
}

int spool_index_msg_sched_next(const struct spool_index *idx, uint64_t msgid,
		uint32_t *cursor, struct spool_index_sched *s)
{
	struct ix_mslot *slot = idx->mtab ? mtab_find(idx, msgid) : NULL;

	if (slot == NULL)
		return -ENOENT;
	while (*cursor < slot->m->ndom) {
		const struct ix_node *n = &slot->m->nodes[(*cursor)++];
		const struct spool_index_queue *q = &idx->doms[n->dom];

		if (n->pending == 0 || n->next_us == 0)
			continue;
		s->domain = q->name;
		s->domain_len = q->len;
		s->next_us = n->next_us;
		return 1;
	}
	return 0;
}

/* ---- whole index -------------------------------------------------------- */

struct spool_index *spool_index_new(void)
{
	struct spool_index *idx = calloc(1, sizeof *idx);

	if (idx == NULL)
		return NULL;
	idx->dom_free = IX_NONE;
	htab_init(&idx->dtab);
	list_init(&idx->dead);
	idx->t.mem_bytes = sizeof *idx;
	return idx;
}

struct spool_index *spool_index_free(struct spool_index *idx)
{
	if (idx == NULL)
		return NULL;
	if (idx->mtab != NULL) {
		for (uint32_t i = 0; i <= idx->mmask; i++)
			if (idx->mtab[i].m != NULL)
				free(idx->mtab[i].m);
	}
	free(idx->mtab);
	for (uint32_t i = 0; i < idx->ndoms; i++)
		if (idx->doms[i].used)
			free(idx->doms[i].name);
	free(idx->doms);
	htab_fini(&idx->dtab);
	for (uint32_t i = 0; i < idx->nsegs; i++) {
		if (idx->segs[i] != NULL) {
			free(idx->segs[i]->refs);
			free(idx->segs[i]);
		}
	}
	free(idx->segs);
	free(idx->scratch);
	free(idx);
	return NULL;
}

void spool_index_totals(const struct spool_index *idx,
		struct spool_index_totals *t)
{
	*t = idx->t;
	t->domains = idx->dcount;
	t->segments = idx->seg_count;
}
