/* SPDX-License-Identifier: MIT */
/*
 * spool_index: see spool_index.h. Sized for tens of millions of held
 * messages (issue 17: at most 64 bytes per message):
 *  - a message is one 36-byte record (struct ix_rec) in a chunk of its
 *    segment's record array, named by a 32-bit handle (chunk << 8 | slot);
 *    the common single-recipient message keeps its one queue position
 *    inline, anything else (several recipients, a next attempt time, a
 *    stale copy) points to one extra allocation (struct ix_ext);
 *  - a domain's queue is an array of handles in arrival order; removal
 *    leaves a hole that appends squeeze out (amortised O(1));
 *  - message ids map to handles in an open-addressing table of 32-bit slots
 *    (linear probing, backward-shift deletion); a probe reads the record's
 *    id;
 *  - a segment's records stay in record order: compaction's walk finds its
 *    place by binary search. Records of finished messages stay as holes
 *    until their segment is removed (the segment file keeps them too).
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

/* Table sizes are powers of two. Messages: grown past 3/4 full. */
#define IX_MTAB_MIN 1024u
#define IX_DTAB_MIN 64u
#define IX_DOMS_MIN 16u
#define IX_SEGS_MIN 16u
#define IX_REFS_MIN 4u
#define IX_QUEUE_MIN 4u
#define IX_SEGCHUNKS_MIN 4u
/* Records per chunk: 10 KiB, the most a segment holds unused. */
#define IX_CHUNK_SHIFT 8
#define IX_CHUNK (1u << IX_CHUNK_SHIFT)
#define IX_CHUNK_MASK (IX_CHUNK - 1)
/* Chunk numbers stay below this, so no handle is IX_NONE. */
#define IX_CHUNKS_MAX ((1u << (32 - IX_CHUNK_SHIFT)) - 1)
/* The top two bits of a recipient's node index hold its done status: 0
 * while pending, else the enum spool_done_status of its DONE record (kept so
 * that compaction can copy the DONE records with their status). */
#define IX_RCPT_SHIFT 30
#define IX_RCPT_DONE (3u << IX_RCPT_SHIFT)
#define IX_NODE_MAX ((1u << IX_RCPT_SHIFT) - 1)
#define IX_NONE UINT32_MAX

/* Widths of struct ix_rec's packed fields. segment_size is at most 1 GiB
 * (core/config.c) and a record fits its segment, so offsets and lengths
 * never exceed 2^30 (an offset is below it: a record has 32 bytes at
 * least); larger ones are refused (-EINVAL). */
#define IX_OFF_MAX ((1u << 30) - 1)
#define IX_LEN_MAX ((1u << 31) - 1)
#define IX_BODY_MAX ((1u << 30) - 1)
/* NOTE kinds: DELAY_WARNED sets struct ix_rec.noted, RELEASED clears
 * struct ix_rec.held (a copy's record keeps SPOOL_MSG_HELD, so compaction
 * writes a RELEASED after the copy of a released message: spool.c). */
_Static_assert(SPOOL_NOTE_KIND_MAX == SPOOL_NOTE_RELEASED,
	       "struct ix_rec keeps one bit per NOTE kind");

/* One (message, domain) of a struct ix_ext: an element of that domain's
 * queue. 16 bytes; its next attempt time lives in the ext's next[] (only
 * once some entry of the message has one). */
struct ix_node {
	uint32_t dom;      /* index into idx->doms */
	uint32_t qpos;     /* its slot in the queue's array */
	uint32_t start;    /* this domain's recipients: order[start, +count) */
	unsigned pending : 31; /* of which order[start, +pending) are not done */
	unsigned busy : 1; /* a job has these recipients in flight */
};

/*
 * A message beyond the inline case. nodes[] sorted by dom (a binary search
 * finds a domain's node), followed in the same allocation by
 *   uint32_t rcpt_node[nrcpt]  node of each recipient | IX_RCPT_DONE
 *   uint32_t order[nrcpt]      recipient indexes grouped by node
 *   uint64_t next[ndom]        if has_next: the scheduler's next attempt
 *                              per node (0: due at once)
 */
struct ix_ext {
	uint32_t nrcpt;
	uint32_t pending;
	uint32_t ndom : 31;
	uint32_t has_next : 1;
	/* A later copy of this record in segment stale (IX_NONE: none) that
	 * recovery found while this, the first copy, is the one indexed: what a
	 * compaction cut short by a crash leaves (see spool_index_add_msg). */
	uint32_t stale;
	struct ix_node nodes[];
};

/* A message: 36 bytes, 4-aligned (packed: an array of them has no
 * padding; no member's address is ever taken). Inline (ext 0): one
 * recipient, pending, its domain's queue slot in u.one, next attempt 0
 * (setting one, or finding a stale copy, moves it to an ix_ext). */
struct __attribute__((packed, aligned(4))) ix_rec {
	uint64_t msgid;
	uint64_t time_us;
	uint32_t off : 30;
	uint32_t held : 1;       /* SPOOL_MSG_HELD, no NOTE(RELEASED) yet */
	uint32_t live : 1;       /* indexed; else a hole (off still valid) */
	uint32_t rec_len : 31;
	uint32_t ext : 1;        /* u.ext, else u.one */
	uint32_t body_len : 30;
	uint32_t busy : 1;       /* u.one's entry is in flight */
	uint32_t noted : 1;      /* NOTE(SPOOL_NOTE_DELAY_WARNED) applied */
	union {
		struct {
			uint32_t dom;
			uint32_t qpos;
		} one;
		struct ix_ext *ext;
	} u;
};
_Static_assert(sizeof(struct ix_rec) == 36, "struct ix_rec is 36 bytes");

struct ix_chunk {
	uint32_t seg;            /* the segment whose records these are */
	uint32_t used;           /* recs[0, used) appended */
	uint32_t live;           /* of which not holes */
	uint32_t segpos;         /* its place in the segment's chunks[] */
	struct ix_rec recs[IX_CHUNK];
};

struct spool_index_queue {
	const struct spool_index *idx; /* for walks and stats */
	uint32_t *slots;         /* handles in arrival order, IX_NONE: a hole */
	uint32_t cap, head, tail; /* slots[head, tail) in use */
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
	/* Its records in the order indexed (record order unless unsorted):
	 * chunk numbers, all full but the last. A full chunk whose records
	 * are all holes is freed and leaves this list. */
	uint32_t *chunks;
	uint32_t nchunks, capchunks;
	uint32_t last_off;
	int any;                 /* a record was appended (last_off valid) */
	int unsorted;            /* an append went backwards: walk linearly */
	uint64_t newest_us;      /* newest time_us of a MSG record indexed in it */
};

struct spool_index {
	uint32_t *mtab;          /* handles, IX_NONE: empty */
	uint32_t mmask;
	uint64_t mcount;

	struct ix_chunk **chunks; /* by chunk number, NULL: free */
	uint32_t nchunks, capchunks;
	uint32_t *cfree;         /* free chunk numbers (a stack) */
	uint32_t ncfree, capcfree;

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

	uint32_t *scratch;       /* add_msg: domain of each recipient, then */
	uint32_t capscratch;     /* the distinct domains (2 x nrcpt) */
	uint64_t nstale;         /* messages with a stale later copy */

	struct spool_index_totals t;

	spool_index_add_fn add_fn; /* the scheduler's hook, or NULL */
	void *add_arg;
};

static const uint32_t ix_rcpt0; /* an inline entry's recipient list: { 0 } */

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

/* arr (elements of size sz, capacity *cap) grown by doubling to hold need
 * elements, counted: the array to use, or NULL (arr unchanged) when out of
 * memory. */
static void *ix_grow(struct spool_index *idx, void *arr, uint32_t *cap,
		uint32_t need, size_t sz, uint32_t min)
{
	if (need <= *cap)
		return arr;
	uint64_t ncap = *cap ? *cap : min;
	while (ncap < need)
		ncap *= 2;
	if (ncap > UINT32_MAX)
		return NULL;
	void *p = realloc(arr, (size_t)ncap * sz);
	if (p == NULL)
		return NULL;
	idx->t.mem_bytes += (size_t)(ncap - *cap) * sz;
	*cap = (uint32_t)ncap;
	return p;
}

static size_t ext_size(uint32_t ndom, uint32_t nrcpt, int has_next)
{
	return sizeof(struct ix_ext) + (size_t)ndom * sizeof(struct ix_node) +
		2 * (size_t)nrcpt * sizeof(uint32_t) +
		(has_next ? (size_t)ndom * sizeof(uint64_t) : 0);
}

static size_t ext_bytes(const struct ix_ext *x)
{
	return ext_size(x->ndom, x->nrcpt, x->has_next);
}

static uint32_t *ext_rcpt_node(struct ix_ext *x)
{
	return (uint32_t *)(void *)(x->nodes + x->ndom);
}

static uint32_t *ext_order(struct ix_ext *x)
{
	return ext_rcpt_node(x) + x->nrcpt;
}

/* Node n's next attempt time (0 unless set). */
static uint64_t ext_next_get(struct ix_ext *x, const struct ix_node *n)
{
	if (!x->has_next)
		return 0;
	const uint64_t *next = (const uint64_t *)(void *)(ext_order(x) + x->nrcpt);
	return next[n - x->nodes];
}

/* The node of domain di, or NULL. O(log domains of the message). */
static struct ix_node *ext_node(struct ix_ext *x, uint32_t di)
{
	uint32_t lo = 0, hi = x->ndom;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (x->nodes[mid].dom < di)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < x->ndom && x->nodes[lo].dom == di ? &x->nodes[lo] : NULL;
}

static struct ix_rec *rec_at(const struct spool_index *idx, uint32_t h)
{
	return &idx->chunks[h >> IX_CHUNK_SHIFT]->recs[h & IX_CHUNK_MASK];
}

static uint32_t rec_seg(const struct spool_index *idx, uint32_t h)
{
	return idx->chunks[h >> IX_CHUNK_SHIFT]->seg;
}

static uint32_t rec_npending(const struct ix_rec *r)
{
	return r->ext ? r->u.ext->pending : 1;
}

static uint32_t rec_nrcpt(const struct ix_rec *r)
{
	return r->ext ? r->u.ext->nrcpt : 1;
}


/* ---- message id table ---------------------------------------------------
 * Not a core/htab on purpose: a slot is just the 32-bit handle (the id is
 * read from the record), there is no element array for htab's element
 * numbers to point into, and this is the per-message path (every add, DONE
 * and look-up). 4 bytes a slot at 3/8 to 3/4 load: 5-11 bytes a message. */

static uint32_t mhash(const struct spool_index *idx, uint64_t id)
{
	/* Fibonacci hashing: sequential ids spread over the table. */
	return (uint32_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & idx->mmask;
}

static uint32_t *mtab_find(const struct spool_index *idx, uint64_t id)
{
	if (idx->mtab == NULL)
		return NULL;
	uint32_t i = mhash(idx, id);

	for (;;) {
		uint32_t h = idx->mtab[i];
		if (h == IX_NONE)
			return NULL;
		if (rec_at(idx, h)->msgid == id)
			return &idx->mtab[i];
		i = (i + 1) & idx->mmask;
	}
}

static void mtab_put(struct spool_index *idx, uint64_t id, uint32_t h)
{
	uint32_t i = mhash(idx, id);

	while (idx->mtab[i] != IX_NONE)
		i = (i + 1) & idx->mmask;
	idx->mtab[i] = h;
}

static int mtab_grow(struct spool_index *idx)
{
	uint32_t oldcap = idx->mtab ? idx->mmask + 1 : 0;
	uint32_t cap = oldcap ? oldcap * 2 : IX_MTAB_MIN;
	uint32_t *old = idx->mtab;

	if (cap == 0) /* 2^32 slots: far beyond any spool */
		return -ENOMEM;
	uint32_t *t = malloc((size_t)cap * sizeof *t);
	if (t == NULL)
		return -ENOMEM;
	memset(t, 0xff, (size_t)cap * sizeof *t);
	idx->t.mem_bytes += (size_t)cap * sizeof *t;
	idx->mtab = t;
	idx->mmask = cap - 1;
	for (uint32_t i = 0; i < oldcap; i++)
		if (old[i] != IX_NONE)
			mtab_put(idx, rec_at(idx, old[i])->msgid, old[i]);
	ix_release(idx, old, (size_t)oldcap * sizeof *old);
	return 0;
}

/* Backward-shift deletion keeps every probe chain unbroken. */
static void mtab_del(struct spool_index *idx, uint32_t *s)
{
	uint32_t i = (uint32_t)(s - idx->mtab), j = i;

	for (;;) {
		j = (j + 1) & idx->mmask;
		if (idx->mtab[j] == IX_NONE)
			break;
		uint32_t home = mhash(idx, rec_at(idx, idx->mtab[j])->msgid);
		/* Move j into the hole at i unless its home lies in (i, j]. */
		if (((j - home) & idx->mmask) >= ((j - i) & idx->mmask)) {
			idx->mtab[i] = idx->mtab[j];
			i = j;
		}
	}
	idx->mtab[i] = IX_NONE;
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
	q->idx = idx;
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
	ix_release(idx, q->slots, (size_t)q->cap * sizeof *q->slots);
	/* A walk that just finished the last entry sees an empty queue. */
	q->slots = NULL;
	q->cap = q->head = q->tail = 0;
	q->name = NULL;
	q->used = 0;
	q->tmp = idx->dom_free;
	idx->dom_free = di;
	idx->dcount--;
}

/* ---- queue arrays ------------------------------------------------------- */

/* Record r's entry in domain di (r is queued there) is at slot pos. */
static void rec_set_qpos(struct ix_rec *r, uint32_t di, uint32_t pos)
{
	if (!r->ext) {
		r->u.one.qpos = pos;
		return;
	}
	struct ix_node *n = ext_node(r->u.ext, di);
	if (n == NULL)
		panic("message %llx queued in domain %u without a node",
				(unsigned long long)r->msgid, di);
	n->qpos = pos;
}

/* Move the queue's entries to the front of its array, holes dropped,
 * renumbering their nodes. O(entries); never during a walk (only appends
 * call it). */
static void queue_squeeze(struct spool_index *idx, struct spool_index_queue *q)
{
	uint32_t di = (uint32_t)(q - idx->doms), w = 0;

	for (uint32_t i = q->head; i < q->tail; i++) {
		uint32_t h = q->slots[i];
		if (h == IX_NONE)
			continue;
		rec_set_qpos(rec_at(idx, h), di, w);
		q->slots[w++] = h;
	}
	q->head = 0;
	q->tail = w;
}

/* Room for one more entry at the tail: squeeze when at least half the
 * array is holes, else grow it by half, so appends stay amortised O(1) and
 * a growing queue's array is on average about 80% used (doubling: 72%;
 * these arrays are a tenth of the index). Returns 0 or -ENOMEM. */
static int queue_reserve(struct spool_index *idx, struct spool_index_queue *q)
{
	if (q->tail < q->cap)
		return 0;
	if (q->cap > 0 && q->msgs <= q->cap / 2) {
		queue_squeeze(idx, q);
		return 0;
	}
	uint64_t cap = q->cap < IX_QUEUE_MIN ? IX_QUEUE_MIN : (uint64_t)q->cap + q->cap / 2;
	if (cap > UINT32_MAX)
		return -ENOMEM;
	uint32_t *s = realloc(q->slots, (size_t)cap * sizeof *s);
	if (s == NULL)
		return -ENOMEM;
	idx->t.mem_bytes += (size_t)(cap - q->cap) * sizeof *s;
	q->slots = s;
	q->cap = (uint32_t)cap;
	return 0;
}

/* Append handle h (room reserved); returns its slot. */
static uint32_t queue_append(struct spool_index_queue *q, uint32_t h)
{
	q->slots[q->tail] = h;
	return q->tail++;
}

/* Slot pos leaves the queue. O(1) but for holes skipped at the ends (each
 * skipped once). The array does not move: a walk stays valid. */
static void queue_remove(struct spool_index_queue *q, uint32_t pos)
{
	q->slots[pos] = IX_NONE;
	while (q->head < q->tail && q->slots[q->head] == IX_NONE)
		q->head++;
	while (q->tail > q->head && q->slots[q->tail - 1] == IX_NONE)
		q->tail--;
	if (q->head == q->tail)
		q->head = q->tail = 0;
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
	/* Dead: every record in its chunks is a hole. cfree has room for
	 * every chunk number (seg_rec_reserve). */
	for (uint32_t i = 0; i < s->nchunks; i++) {
		ix_release(idx, idx->chunks[s->chunks[i]], sizeof(struct ix_chunk));
		idx->chunks[s->chunks[i]] = NULL;
		idx->cfree[idx->ncfree++] = s->chunks[i];
	}
	ix_release(idx, s->chunks, (size_t)s->capchunks * sizeof *s->chunks);
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

/* The handle the next record appended to s gets: a slot in its last chunk,
 * or in a new one. IX_NONE when out of memory. */
static uint32_t seg_rec_reserve(struct spool_index *idx, struct ix_seg *s)
{
	if (s->nchunks > 0) {
		uint32_t c = s->chunks[s->nchunks - 1];
		if (idx->chunks[c]->used < IX_CHUNK)
			return c << IX_CHUNK_SHIFT | idx->chunks[c]->used;
	}
	uint32_t *sc = ix_grow(idx, s->chunks, &s->capchunks, s->nchunks + 1,
			sizeof *s->chunks, IX_SEGCHUNKS_MIN);
	if (sc == NULL)
		return IX_NONE;
	s->chunks = sc;
	uint32_t c;
	if (idx->ncfree > 0) {
		c = idx->cfree[idx->ncfree - 1];
	} else {
		if (idx->nchunks >= IX_CHUNKS_MAX)
			return IX_NONE;
		struct ix_chunk **ca = ix_grow(idx, idx->chunks, &idx->capchunks,
				idx->nchunks + 1, sizeof *idx->chunks, IX_SEGS_MIN);
		if (ca == NULL)
			return IX_NONE;
		idx->chunks = ca;
		/* Room to free every chunk later without allocating. */
		uint32_t *cf = ix_grow(idx, idx->cfree, &idx->capcfree,
				idx->nchunks + 1, sizeof *idx->cfree, IX_SEGS_MIN);
		if (cf == NULL)
			return IX_NONE;
		idx->cfree = cf;
		c = idx->nchunks;
	}
	struct ix_chunk *ch = ix_alloc(idx, sizeof *ch);
	if (ch == NULL)
		return IX_NONE;
	ch->seg = s->id;
	ch->used = 0;
	ch->live = 0;
	ch->segpos = s->nchunks;
	if (idx->ncfree > 0)
		idx->ncfree--;
	else
		idx->nchunks++;
	idx->chunks[c] = ch;
	s->chunks[s->nchunks++] = c;
	return c << IX_CHUNK_SHIFT;
}

/* The reserved record h, at off, is s's next. */
static void seg_rec_commit(struct spool_index *idx, struct ix_seg *s,
		uint32_t h, uint32_t off)
{
	struct ix_chunk *ch = idx->chunks[h >> IX_CHUNK_SHIFT];

	ch->used++;
	ch->live++;
	/* The write path and recovery both index records in file order;
	 * should that ever break, the walk goes linear rather than wrong. */
	if (s->any && off < s->last_off)
		s->unsorted = 1;
	s->last_off = off;
	s->any = 1;
}

/* Chunk c (full, all holes) of its segment goes: memory comes back while
 * the segment lives. O(chunks of the segment), once per IX_CHUNK records. */
static void chunk_free(struct spool_index *idx, uint32_t c)
{
	struct ix_chunk *ch = idx->chunks[c];
	struct ix_seg *s = seg_get(idx, ch->seg);

	if (s == NULL || ch->segpos >= s->nchunks || s->chunks[ch->segpos] != c)
		panic("record chunk %u lost by segment %u", c, ch->seg);
	memmove(s->chunks + ch->segpos, s->chunks + ch->segpos + 1,
			(size_t)(s->nchunks - ch->segpos - 1) * sizeof *s->chunks);
	s->nchunks--;
	for (uint32_t i = ch->segpos; i < s->nchunks; i++)
		idx->chunks[s->chunks[i]]->segpos = i;
	ix_release(idx, ch, sizeof *ch);
	idx->chunks[c] = NULL;
	idx->cfree[idx->ncfree++] = c;
}

/* Record h becomes a hole (its off stays for the segment's binary search);
 * h must not be used after. */
static void rec_hole(struct spool_index *idx, uint32_t h)
{
	struct ix_chunk *ch = idx->chunks[h >> IX_CHUNK_SHIFT];

	ch->recs[h & IX_CHUNK_MASK].live = 0;
	if (--ch->live == 0 && ch->used == IX_CHUNK)
		chunk_free(idx, h >> IX_CHUNK_SHIFT);
}

static void rec_free(struct spool_index *idx, uint32_t h)
{
	struct ix_rec *r = rec_at(idx, h);

	if (r->ext)
		ix_release(idx, r->u.ext, ext_bytes(r->u.ext));
	rec_hole(idx, h);
}

/* Record number k of s (in the order indexed) as a handle. */
static uint32_t seg_rec_handle(const struct ix_seg *s, uint64_t k)
{
	return s->chunks[k >> IX_CHUNK_SHIFT] << IX_CHUNK_SHIFT |
		(uint32_t)(k & IX_CHUNK_MASK);
}

static uint64_t seg_nrecs(const struct spool_index *idx, const struct ix_seg *s)
{
	if (s->nchunks == 0)
		return 0;
	return (uint64_t)(s->nchunks - 1) * IX_CHUNK +
		idx->chunks[s->chunks[s->nchunks - 1]]->used;
}

/* ---- messages ----------------------------------------------------------- */

/* An inline record takes the general form (for a next attempt time or a
 * stale copy). Returns 0 or -ENOMEM (unchanged). */
static int rec_promote(struct spool_index *idx, struct ix_rec *r)
{
	if (r->ext)
		return 0;
	struct ix_ext *x = ix_alloc(idx, ext_size(1, 1, 0));
	if (x == NULL)
		return -ENOMEM;
	x->nrcpt = 1;
	x->pending = 1;
	x->ndom = 1;
	x->has_next = 0;
	x->stale = IX_NONE;
	x->nodes[0].dom = r->u.one.dom;
	x->nodes[0].qpos = r->u.one.qpos;
	x->nodes[0].start = 0;
	x->nodes[0].pending = 1;
	x->nodes[0].busy = r->busy;
	ext_rcpt_node(x)[0] = 0;
	ext_order(x)[0] = 0;
	r->u.ext = x;
	r->ext = 1;
	r->busy = 0;
	return 0;
}

/*
 * Recovery found a second copy of the record r, in segment seg, after the
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
static int dup_copy(struct spool_index *idx, uint32_t h, struct ix_seg *seg)
{
	struct ix_rec *r = rec_at(idx, h);
	int ret;

	if (seg->id == rec_seg(idx, h) ||
	    (r->ext && seg->id == r->u.ext->stale))
		return 0;
	ret = rec_promote(idx, r);
	if (ret < 0)
		return ret;
	struct ix_ext *x = r->u.ext;
	if (x->stale != IX_NONE) {
		struct ix_seg *prev = seg_get(idx, x->stale);
		if (prev != NULL) {
			ret = seg_pin(idx, prev, seg);
			if (ret < 0)
				return ret;
		}
	} else {
		idx->nstale++;
	}
	x->stale = seg->id;
	return 0;
}

/* Room for one more message id and two scratch entries per recipient. */
static int add_msg_reserve(struct spool_index *idx, uint32_t nrcpt)
{
	int ret;

	if (idx->mtab == NULL || (idx->mcount + 1) * 4 > (uint64_t)(idx->mmask + 1) * 3) {
		ret = mtab_grow(idx);
		if (ret < 0)
			return ret;
	}
	uint32_t *s = ix_grow(idx, idx->scratch, &idx->capscratch, 2 * nrcpt,
			sizeof *idx->scratch, 2);
	if (s == NULL)
		return -ENOMEM;
	idx->scratch = s;
	return 0;
}

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Pass 1: each recipient's domain into scratch[0, nrcpt), the distinct
 * ones ascending into scratch[nrcpt, +ndom), each numbered by its place
 * there (q->tmp; the stamp marks "seen here"), so the nodes come sorted by
 * domain. Returns ndom, or -ENOMEM (the caller drops domains created for
 * this message again). */
static int64_t add_msg_domains(struct spool_index *idx, const struct spool_index_msg *m)
{
	uint32_t ndom = 0, *dist = idx->scratch + m->nrcpt;

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
			dist[ndom++] = di;
		}
		idx->scratch[i] = di;
	}
	if (ndom > 1)
		qsort(dist, ndom, sizeof *dist, u32_cmp);
	for (uint32_t k = 0; k < ndom; k++)
		idx->doms[dist[k]].tmp = k;
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
static void add_msg_layout(struct spool_index *idx, struct ix_ext *x)
{
	uint32_t *rn = ext_rcpt_node(x), *order = ext_order(x);
	const uint32_t *dist = idx->scratch + x->nrcpt;
	uint32_t start = 0;

	for (uint32_t k = 0; k < x->ndom; k++) {
		x->nodes[k].dom = dist[k];
		x->nodes[k].pending = 0;
		x->nodes[k].busy = 0;
	}
	for (uint32_t i = 0; i < x->nrcpt; i++) {
		uint32_t k = idx->doms[idx->scratch[i]].tmp;
		rn[i] = k;
		x->nodes[k].pending++;
	}
	for (uint32_t k = 0; k < x->ndom; k++) {
		x->nodes[k].start = start;
		start += x->nodes[k].pending;
		x->nodes[k].pending = 0;
	}
	for (uint32_t i = 0; i < x->nrcpt; i++) {
		struct ix_node *n = &x->nodes[rn[i]];
		order[n->start + n->pending++] = i;
	}
}

/* The laid-out message h joins its domains' queues (room reserved), the id
 * table and its segment. */
static void add_msg_link(struct spool_index *idx, struct ix_seg *seg,
		uint32_t h)
{
	struct ix_rec *r = rec_at(idx, h);
	uint32_t nrcpt = rec_nrcpt(r);

	if (r->ext) {
		for (uint32_t k = 0; k < r->u.ext->ndom; k++) {
			struct ix_node *n = &r->u.ext->nodes[k];
			struct spool_index_queue *q = &idx->doms[n->dom];
			n->qpos = queue_append(q, h);
			q->msgs++;
			q->rcpts += n->pending;
			q->bytes += r->body_len;
		}
	} else {
		struct spool_index_queue *q = &idx->doms[r->u.one.dom];
		r->u.one.qpos = queue_append(q, h);
		q->msgs++;
		q->rcpts++;
		q->bytes += r->body_len;
	}
	seg_rec_commit(idx, seg, h, r->off);
	mtab_put(idx, r->msgid, h);
	idx->mcount++;
	if (r->time_us > seg->newest_us)
		seg->newest_us = r->time_us;
	seg->live_msgs++;
	seg->live_bytes += r->rec_len;
	idx->t.live_bytes += r->rec_len;
	idx->t.messages++;
	idx->t.recipients += nrcpt;
}

int spool_index_add_msg(struct spool_index *idx,
		const struct spool_index_msg *m)
{
	struct ix_seg *seg = seg_get(idx, m->segment_id);
	struct ix_ext *x = NULL;
	int64_t ndom;
	uint32_t h, *dup;
	int ret;

	if (seg == NULL)
		return -EINVAL;
	/* The record is on disk whatever happens to its index entry. */
	seg->total += m->rec_len;
	idx->t.total_bytes += m->rec_len;
	if (m->nrcpt == 0 || m->nrcpt > IX_NODE_MAX ||
	    m->body_len > IX_BODY_MAX || m->off > IX_OFF_MAX ||
	    m->rec_len > IX_LEN_MAX)
		return -EINVAL;
	dup = mtab_find(idx, m->msgid);
	if (dup != NULL) {
		ret = dup_copy(idx, *dup, seg);
		return ret < 0 ? ret : -EEXIST;
	}
	ret = add_msg_reserve(idx, m->nrcpt);
	if (ret < 0)
		return ret;
	ndom = add_msg_domains(idx, m);
	if (ndom < 0)
		goto fail;
	for (int64_t k = 0; k < ndom; k++)
		if (queue_reserve(idx, &idx->doms[idx->scratch[m->nrcpt + k]]) < 0)
			goto fail;
	h = seg_rec_reserve(idx, seg);
	if (h == IX_NONE)
		goto fail;
	if (m->nrcpt > 1) {
		x = ix_alloc(idx, ext_size((uint32_t)ndom, m->nrcpt, 0));
		if (x == NULL)
			goto fail;
		x->nrcpt = m->nrcpt;
		x->pending = m->nrcpt;
		x->ndom = (uint32_t)ndom & IX_NODE_MAX;
		x->has_next = 0;
		x->stale = IX_NONE;
		add_msg_layout(idx, x);
	}
	struct ix_rec *r = rec_at(idx, h);
	r->msgid = m->msgid;
	r->time_us = m->time_us;
	r->off = (uint32_t)m->off & IX_OFF_MAX;
	r->rec_len = m->rec_len & IX_LEN_MAX;
	r->body_len = (uint32_t)m->body_len & IX_BODY_MAX;
	r->live = 1;
	r->ext = x != NULL;
	r->busy = 0;
	r->noted = 0;
	r->held = m->held != 0;
	if (x != NULL) {
		r->u.ext = x;
	} else {
		r->u.one.dom = idx->scratch[0];
		r->u.one.qpos = IX_NONE;
	}
	add_msg_link(idx, seg, h);
	/* Last: the message is whole in the index when the scheduler hears
	 * of it. */
	for (int64_t k = 0; idx->add_fn != NULL && k < ndom; k++) {
		const struct spool_index_queue *q = &idx->doms[idx->scratch[m->nrcpt + k]];
		idx->add_fn(idx->add_arg, m->msgid, q->name, q->len);
	}
	return 0;
fail:
	add_msg_undo_domains(idx);
	return -ENOMEM;
}

/* The message's last pending recipient is done: forget it and free it. */
static void msg_finish(struct spool_index *idx, uint32_t *slot,
		struct ix_seg *mseg)
{
	uint32_t h = *slot;
	struct ix_rec *r = rec_at(idx, h);

	if (r->ext && r->u.ext->stale != IX_NONE) {
		/* Finished before compaction copied it again: the stale copy
		 * must go before this segment does, or a start without this
		 * copy would find the stale one first (see dup_copy). Never
		 * fails to pin: holding mseg a little longer than needed is
		 * the worst. */
		struct ix_seg *st_seg = seg_get(idx, r->u.ext->stale);
		if (st_seg != NULL && seg_pin(idx, st_seg, mseg) < 0)
			log_err("spool index: message %llx: cannot pin "
					"segment %u for its stale copy",
					(unsigned long long)r->msgid, mseg->id);
		idx->nstale--;
	}
	mtab_del(idx, slot);
	mseg->live_msgs--;
	mseg->live_bytes -= r->rec_len;
	idx->t.live_bytes -= r->rec_len;
	idx->t.messages--;
	rec_free(idx, h);
	seg_check_dead(idx, mseg);
}

/* Entry (r, domain di) has no pending recipient left: off the queue. */
static void queue_leave(struct spool_index *idx, uint32_t di, uint32_t qpos,
		uint32_t body_len)
{
	struct spool_index_queue *q = &idx->doms[di];

	queue_remove(q, qpos);
	q->msgs--;
	q->bytes -= body_len;
	if (q->msgs == 0)
		dom_drop(idx, di);
}

static void done_count(struct spool_index *idx, enum spool_done_status st)
{
	idx->t.recipients--;
	if (st == SPOOL_DONE_DELIVERED)
		idx->t.delivered++;
	else if (st == SPOOL_DONE_BOUNCED)
		idx->t.bounced++;
	else
		idx->t.expired++;
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
	uint32_t *slot = mtab_find(idx, msgid);
	if (slot == NULL)
		return -ENOENT;
	struct ix_rec *r = rec_at(idx, *slot);
	if (rcpt_index >= rec_nrcpt(r))
		return -EINVAL;
	struct ix_ext *x = r->ext ? r->u.ext : NULL;
	if (x != NULL && ext_rcpt_node(x)[rcpt_index] & IX_RCPT_DONE)
		return -EALREADY;

	struct ix_seg *mseg = seg_get(idx, rec_seg(idx, *slot));
	if (mseg == NULL)
		panic("message %llx in unknown segment %u",
				(unsigned long long)msgid, rec_seg(idx, *slot));
	if (mseg != dseg) {
		ret = seg_pin(idx, mseg, dseg);
		if (ret < 0)
			return ret;
	}
	done_count(idx, st);
	if (x == NULL) {
		idx->doms[r->u.one.dom].rcpts--;
		queue_leave(idx, r->u.one.dom, r->u.one.qpos, r->body_len);
		msg_finish(idx, slot, mseg);
		if (msg_finished != NULL)
			*msg_finished = 1;
		return 0;
	}

	uint32_t *rn = ext_rcpt_node(x), *order = ext_order(x);
	struct ix_node *n = &x->nodes[rn[rcpt_index]];
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
	idx->doms[n->dom].rcpts--;
	x->pending--;
	if (n->pending == 0)
		queue_leave(idx, n->dom, n->qpos, r->body_len);
	if (x->pending == 0) {
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
	uint32_t *slot = mtab_find(idx, msgid);
	if (slot == NULL)
		return -ENOENT;
	struct ix_rec *r = rec_at(idx, *slot);
	if (kind == SPOOL_NOTE_RELEASED ? !r->held : r->noted)
		return -EALREADY;
	struct ix_seg *mseg = seg_get(idx, rec_seg(idx, *slot));
	if (mseg == NULL)
		panic("message %llx in unknown segment %u",
				(unsigned long long)msgid, rec_seg(idx, *slot));
	/* Pinned like a DONE: were the NOTE's segment unlinked while the MSG
	 * stays, a restart would forget it (a second delay warning). */
	if (mseg != nseg) {
		ret = seg_pin(idx, mseg, nseg);
		if (ret < 0)
			return ret;
	}
	if (kind == SPOOL_NOTE_RELEASED)
		r->held = 0;
	else
		r->noted = 1;
	return 0;
}

int spool_index_msg_noted(const struct spool_index *idx, uint64_t msgid,
		enum spool_note_kind kind)
{
	uint32_t *slot = mtab_find(idx, msgid);

	if (slot == NULL)
		return -ENOENT;
	if (kind == SPOOL_NOTE_RELEASED)
		return !rec_at(idx, *slot)->held;
	if (kind != SPOOL_NOTE_DELAY_WARNED)
		return 0;
	return rec_at(idx, *slot)->noted;
}

static void entry_fill(const struct spool_index *idx, uint32_t h,
		struct spool_index_entry *e)
{
	const struct ix_rec *r = rec_at(idx, h);

	e->msgid = r->msgid;
	e->segment_id = rec_seg(idx, h);
	e->rec_len = r->rec_len;
	e->off = r->off;
	e->time_us = r->time_us;
	e->body_len = r->body_len;
	e->nrcpt = rec_nrcpt(r);
	e->npending = rec_npending(r);
	e->delay_warned = r->noted;
	e->held = r->held;
	e->next_us = 0;
	e->busy = 0;
	e->rcpts = NULL;
}

/* A queue entry: message h with domain di's part of it. */
static void node_fill(const struct spool_index *idx, uint32_t h, uint32_t di,
		struct spool_index_entry *e)
{
	struct ix_rec *r = rec_at(idx, h);

	entry_fill(idx, h, e);
	if (r->ext) {
		const struct ix_node *n = ext_node(r->u.ext, di);
		if (n == NULL)
			panic("message %llx queued in domain %u without a node",
					(unsigned long long)r->msgid, di);
		e->npending = n->pending;
		e->next_us = ext_next_get(r->u.ext, n);
		e->busy = n->busy;
		e->rcpts = ext_order(r->u.ext) + n->start;
	} else {
		e->npending = 1;
		e->busy = r->busy;
		e->rcpts = &ix_rcpt0;
	}
}

int spool_index_msg_find(const struct spool_index *idx, uint64_t msgid,
		struct spool_index_entry *e)
{
	uint32_t *slot = mtab_find(idx, msgid);

	if (slot == NULL)
		return -ENOENT;
	entry_fill(idx, *slot, e);
	return 0;
}

int spool_index_msg_pending(const struct spool_index *idx, uint64_t msgid,
		uint32_t *out, uint32_t max)
{
	uint32_t *slot = mtab_find(idx, msgid);
	uint32_t n = 0;

	if (slot == NULL)
		return -ENOENT;
	struct ix_rec *r = rec_at(idx, *slot);
	if (!(r->ext)) {
		if (max > 0)
			out[n++] = 0;
		return (int)n;
	}
	const uint32_t *rn = ext_rcpt_node(r->u.ext);
	for (uint32_t i = 0; i < r->u.ext->nrcpt && n < max; i++)
		if (!(rn[i] & IX_RCPT_DONE))
			out[n++] = i;
	return (int)n;
}

int spool_index_msg_done(const struct spool_index *idx, uint64_t msgid,
		uint32_t *rcpt, uint8_t *status, uint32_t max)
{
	uint32_t *slot = mtab_find(idx, msgid);
	uint32_t n = 0;

	if (slot == NULL)
		return -ENOENT;
	struct ix_rec *r = rec_at(idx, *slot);
	if (!(r->ext))
		return 0; /* its one recipient is pending */
	const uint32_t *rn = ext_rcpt_node(r->u.ext);
	for (uint32_t i = 0; i < r->u.ext->nrcpt && n < max; i++) {
		if (rn[i] & IX_RCPT_DONE) {
			rcpt[n] = i;
			status[n++] = (uint8_t)(rn[i] >> IX_RCPT_SHIFT);
		}
	}
	return (int)n;
}

/* The queues and the id table follow message h to its new handle nh. */
static void msg_rehandle(struct spool_index *idx, uint32_t *slot, uint32_t nh)
{
	struct ix_rec *r = rec_at(idx, nh);

	*slot = nh;
	if (!(r->ext)) {
		idx->doms[r->u.one.dom].slots[r->u.one.qpos] = nh;
		return;
	}
	for (uint32_t k = 0; k < r->u.ext->ndom; k++) {
		const struct ix_node *n = &r->u.ext->nodes[k];
		if (n->pending > 0)
			idx->doms[n->dom].slots[n->qpos] = nh;
	}
}

int spool_index_msg_move(struct spool_index *idx, uint64_t msgid,
		uint32_t from_seg, uint64_t from_off, uint32_t to_seg,
		uint64_t to_off)
{
	struct ix_seg *to = seg_get(idx, to_seg), *from, *stale;
	struct ix_rec *r, *nr;
	uint32_t *slot, nh;
	int ret;

	if (to == NULL || to_off > IX_OFF_MAX)
		return -EINVAL;
	slot = mtab_find(idx, msgid);
	if (slot == NULL)
		return -ENOENT;
	r = rec_at(idx, *slot);
	/* The copy is on disk whatever happens to the index entry. */
	to->total += r->rec_len;
	idx->t.total_bytes += r->rec_len;
	if (rec_seg(idx, *slot) != from_seg || r->off != from_off ||
	    to_seg == from_seg)
		return -ESTALE;
	from = seg_get(idx, from_seg);
	if (from == NULL)
		panic("message %llx in unknown segment %u",
				(unsigned long long)msgid, from_seg);
	nh = seg_rec_reserve(idx, to);
	if (nh == IX_NONE)
		return -ENOMEM;
	/* The new copy waits for the old one (and for a stale copy recovery
	 * found): while the old copy exists a start finds it first, and its
	 * DONE records (pinned to it) decide; once it is gone the new copy,
	 * followed by a DONE for every recipient done before it, decides.
	 * If the new segment went first, the old copy would be back without
	 * the DONEs written since the move (pinned to the new segment). */
	ret = seg_pin(idx, from, to);
	if (ret < 0)
		return ret;
	if (r->ext && r->u.ext->stale != IX_NONE) {
		stale = seg_get(idx, r->u.ext->stale);
		if (stale != NULL && stale != to) {
			ret = seg_pin(idx, stale, to);
			if (ret < 0)
				return ret; /* the first pin only holds longer */
		}
		r->u.ext->stale = IX_NONE;
		idx->nstale--;
	}
	nr = rec_at(idx, nh);
	*nr = *r;
	nr->off = (uint32_t)to_off & IX_OFF_MAX;
	seg_rec_commit(idx, to, nh, nr->off);
	rec_hole(idx, *slot); /* nr owns the ext now */
	msg_rehandle(idx, slot, nh);
	from->live_msgs--;
	from->live_bytes -= nr->rec_len;
	to->live_msgs++;
	to->live_bytes += nr->rec_len;
	if (nr->time_us > to->newest_us)
		to->newest_us = nr->time_us;
	seg_check_dead(idx, from);
	return 0;
}

/* Position of the first record of s at or after off, by binary search
 * over record order (holes keep their offset). */
static uint64_t seg_lower_bound(const struct spool_index *idx,
		const struct ix_seg *s, uint64_t off)
{
	uint64_t lo = 0, hi = seg_nrecs(idx, s);

	if (s->unsorted)
		return 0;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (rec_at(idx, seg_rec_handle(s, mid))->off < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int spool_index_segment_msg(const struct spool_index *idx, uint32_t seg_id,
		uint64_t from_off, struct spool_index_entry *e)
{
	const struct ix_seg *s = seg_get(idx, seg_id);

	if (s == NULL)
		return -ENOENT;
	uint64_t n = seg_nrecs(idx, s);
	for (uint64_t k = seg_lower_bound(idx, s, from_off); k < n; k++) {
		uint32_t h = seg_rec_handle(s, k);
		const struct ix_rec *r = rec_at(idx, h);

		if (r->live && r->off >= from_off) {
			entry_fill(idx, h, e);
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
		uint32_t h = idx->mtab[(*cursor)++];
		if (h == IX_NONE)
			continue;
		const struct ix_rec *r = rec_at(idx, h);
		if (r->ext && r->u.ext->stale != IX_NONE) {
			entry_fill(idx, h, e);
			return 1;
		}
	}
	return 0;
}

int spool_index_rcpt_domain(const struct spool_index *idx, uint64_t msgid,
		uint32_t rcpt_index, char *out, size_t outlen, size_t *len)
{
	uint32_t *slot = mtab_find(idx, msgid);
	const struct spool_index_queue *q;

	if (slot == NULL)
		return -ENOENT;
	struct ix_rec *r = rec_at(idx, *slot);
	if (rcpt_index >= rec_nrcpt(r))
		return -EINVAL;
	if (r->ext) {
		uint32_t k = ext_rcpt_node(r->u.ext)[rcpt_index] & ~IX_RCPT_DONE;
		q = &idx->doms[r->u.ext->nodes[k].dom];
	} else {
		q = &idx->doms[r->u.one.dom];
	}
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
	/* The head slot is never a hole (queue_remove skips them). */
	st->oldest_us = q->head < q->tail ?
		rec_at(q->idx, q->slots[q->head])->time_us : 0;
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
	it->q = q;
	it->pos = q ? q->head : 0;
}

int spool_index_queue_next(struct spool_index_iter *it,
		struct spool_index_entry *e)
{
	const struct spool_index_queue *q = it->q;

	/* A done entry leaves a hole (or empties the queue: tail 0); the
	 * array itself moves only on an append. */
	while (q != NULL && it->pos < q->tail) {
		uint32_t h = q->slots[it->pos++];
		if (h == IX_NONE)
			continue;
		node_fill(q->idx, h, (uint32_t)(q - q->idx->doms), e);
		return 1;
	}
	return 0;
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

/* Message msgid's record while it has a pending recipient in domain dom
 * (its index into *di), else NULL. O(log domains of the message). */
static struct ix_rec *sched_rec(const struct spool_index *idx, uint64_t msgid,
		const char *dom, size_t len, uint32_t *di, uint32_t *h)
{
	uint32_t *slot = mtab_find(idx, msgid);

	if (slot == NULL)
		return NULL;
	len = dom_trim(dom, len);
	*di = dom_find(idx, dom, len, dom_hash(dom, len));
	if (*di == IX_NONE)
		return NULL;
	struct ix_rec *r = rec_at(idx, *slot);
	if (r->ext) {
		const struct ix_node *n = ext_node(r->u.ext, *di);
		if (n == NULL || n->pending == 0)
			return NULL;
	} else if (r->u.one.dom != *di) {
		return NULL;
	}
	*h = *slot;
	return r;
}

int spool_index_msg_entry(const struct spool_index *idx, uint64_t msgid,
		const char *dom, size_t len, struct spool_index_entry *e)
{
	uint32_t di, h;

	if (sched_rec(idx, msgid, dom, len, &di, &h) == NULL)
		return -ENOENT;
	node_fill(idx, h, di, e);
	return 0;
}

int spool_index_set_next(struct spool_index *idx, uint64_t msgid, const char *dom,
		size_t len, uint64_t next_us)
{
	uint32_t di, h;
	struct ix_rec *r = sched_rec(idx, msgid, dom, len, &di, &h);

	if (r == NULL)
		return -ENOENT;
	if (!(r->ext)) {
		if (next_us == 0)
			return 0; /* inline entries are due at once */
		if (rec_promote(idx, r) < 0)
			return -ENOMEM;
	}
	struct ix_ext *x = r->u.ext;
	if (!x->has_next) {
		if (next_us == 0)
			return 0;
		/* The first time: room for every node's time. */
		size_t was = ext_bytes(x);
		x = realloc(x, ext_size(x->ndom, x->nrcpt, 1));
		if (x == NULL)
			return -ENOMEM;
		idx->t.mem_bytes += ext_size(x->ndom, x->nrcpt, 1) - was;
		x->has_next = 1;
		memset(ext_order(x) + x->nrcpt, 0, (size_t)x->ndom * sizeof(uint64_t));
		r->u.ext = x;
	}
	uint64_t *next = (uint64_t *)(void *)(ext_order(x) + x->nrcpt);
	next[ext_node(x, di) - x->nodes] = next_us;
	return 0;
}

int spool_index_set_busy(struct spool_index *idx, uint64_t msgid, const char *dom,
		size_t len, int busy)
{
	uint32_t di, h;
	struct ix_rec *r = sched_rec(idx, msgid, dom, len, &di, &h);

	if (r == NULL)
		return -ENOENT;
	if (r->ext)
		ext_node(r->u.ext, di)->busy = busy != 0;
	else
		r->busy = busy != 0;
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
	uint32_t *slot = mtab_find(idx, msgid);

	if (slot == NULL)
		return -ENOENT;
	const struct ix_rec *r = rec_at(idx, *slot);
	if (!(r->ext))
		return 0; /* no next attempt time */
	while (*cursor < r->u.ext->ndom) {
		const struct ix_node *n = &r->u.ext->nodes[(*cursor)++];
		const struct spool_index_queue *q = &idx->doms[n->dom];

		uint64_t next = ext_next_get(r->u.ext, n);

		if (n->pending == 0 || next == 0)
			continue;
		s->domain = q->name;
		s->domain_len = q->len;
		s->next_us = next;
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
	for (uint32_t c = 0; c < idx->nchunks; c++) {
		struct ix_chunk *ch = idx->chunks[c];
		if (ch == NULL)
			continue;
		for (uint32_t i = 0; i < ch->used; i++)
			if (ch->recs[i].live && ch->recs[i].ext)
				free(ch->recs[i].u.ext);
		free(ch);
	}
	free(idx->chunks);
	free(idx->cfree);
	free(idx->mtab);
	for (uint32_t i = 0; i < idx->ndoms; i++) {
		if (idx->doms[i].used) {
			free(idx->doms[i].name);
			free(idx->doms[i].slots);
		}
	}
	free(idx->doms);
	htab_fini(&idx->dtab);
	for (uint32_t i = 0; i < idx->nsegs; i++) {
		if (idx->segs[i] != NULL) {
			free(idx->segs[i]->refs);
			free(idx->segs[i]->chunks);
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
