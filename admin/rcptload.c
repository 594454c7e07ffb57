/* SPDX-License-Identifier: MIT */
/*
 * rcptload: recipient sets from Redis (rcptload.h). The loader keeps one
 * entry per row that has rcpt_check on: its set (NULL when the last read was
 * refused: over a cap) and the generation counter it was read at, indexed
 * by name in a core/htab. Replaced sets wait in a list until the table that
 * pointed at them is gone (rcptload_reap()).
 */
#include "admin/rcptload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/redis_conn.h"
#include "admin/schema.h"
#include "core/config.h"
#include "core/hash.h"
#include "core/htab.h"
#include "core/log.h"
#include "core/now.h"
#include "core/rcptset.h"

#define RCPTLOAD_KEY_MAX (CONFIG_REDIS_PREFIX_MAX + 16 + DOMTAB_NAME_MAX)
#define RCPTLOAD_GEN_MAX 32 /* a counter's text */
#define RCPTLOAD_MIN 16u

struct rcptload_ent {
	char name[DOMTAB_NAME_MAX + 1];
	uint32_t hash;
	struct rcptset *set;              /* NULL: refused at gen (over a cap) */
	char gen[RCPTLOAD_GEN_MAX];       /* PREFIX rcpts_gen:{name} when read, "" = none */
	int seen;                         /* rcptload_sync()'s mark */
};

struct rcptload {
	size_t max_per, max_total;
	size_t total;                     /* recipients in the sets held */
	struct rcptload_ent *ent;
	uint32_t n, cap;
	struct htab idx;
	struct rcptset **dead;            /* replaced, freed by rcptload_reap() */
	size_t ndead, capdead;
};

static uint32_t name_hash(const char *name)
{
	return hash_fin32(hash_fnv32(HASH_FNV32_INIT, name, strlen(name)));
}

static int ent_eq(const void *ctx, uint32_t el, const void *key)
{
	return !strcmp(((const struct rcptload *)ctx)->ent[el].name, key);
}

static uint32_t ent_find(const struct rcptload *l, const char *name)
{
	return htab_find(&l->idx, name_hash(name), ent_eq, l, name);
}

struct rcptload *rcptload_new(size_t max_per_domain, size_t max_total)
{
	struct rcptload *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	htab_init(&l->idx);
	l->max_per = max_per_domain;
	l->max_total = max_total;
	return l;
}

struct rcptload *rcptload_free(struct rcptload *l)
{
	if (!l)
		return NULL;
	rcptload_reap(l);
	for (uint32_t i = 0; i < l->n; i++)
		rcptset_free(l->ent[i].set);
	free(l->ent);
	free(l->dead);
	htab_fini(&l->idx);
	free(l);
	return NULL;
}

/* s (may be NULL) is freed by the next rcptload_reap(). -ENOMEM when the
 * list cannot grow: nothing is kept then, s must stay where it is. */
static int bury(struct rcptload *l, struct rcptset *s)
{
	if (!s)
		return 0;
	if (l->ndead == l->capdead) {
		size_t nc = l->capdead ? l->capdead * 2 : RCPTLOAD_MIN;
		struct rcptset **nd = realloc(l->dead, nc * sizeof(*nd));

		if (!nd)
			return -ENOMEM;
		l->dead = nd;
		l->capdead = nc;
	}
	l->dead[l->ndead++] = s;
	return 0;
}

void rcptload_reap(struct rcptload *l)
{
	for (size_t i = 0; i < l->ndead; i++)
		rcptset_free(l->dead[i]);
	l->ndead = 0;
}

/* Hold s (NULL = refused) for name, read at gen; the set it replaces is
 * buried. 0 or -ENOMEM (nothing changed; s is the caller's). */
static int ent_put(struct rcptload *l, const char *name, struct rcptset *s, const char *gen)
{
	uint32_t i = ent_find(l, name);
	struct rcptload_ent *e;

	if (i == HTAB_NONE) {
		if (l->n == l->cap) {
			uint32_t nc = l->cap ? l->cap * 2 : RCPTLOAD_MIN;
			struct rcptload_ent *ne = realloc(l->ent, nc * sizeof(*ne));

			if (!ne)
				return -ENOMEM;
			l->ent = ne;
			l->cap = nc;
		}
		if (htab_reserve(&l->idx, l->n + 1))
			return -ENOMEM;
		i = l->n;
		e = &l->ent[i];
		memset(e, 0, sizeof(*e));
		snprintf(e->name, sizeof(e->name), "%s", name);
		e->hash = name_hash(e->name);
		if (htab_insert(&l->idx, e->hash, i))
			panic("rcptload: reserved slot vanished");
		l->n++;
	} else {
		e = &l->ent[i];
		if (bury(l, e->set))
			return -ENOMEM;
		if (e->set)
			l->total -= rcptset_count(e->set);
	}
	e->set = s;
	if (s)
		l->total += rcptset_count(s);
	snprintf(e->gen, sizeof(e->gen), "%s", gen);
	e->seen = 1;
	return 0;
}

/* Drop entry i (its set buried). 0 or -ENOMEM (kept). */
static int ent_drop(struct rcptload *l, uint32_t i)
{
	struct rcptload_ent *e = &l->ent[i];
	uint32_t last = l->n - 1;

	if (bury(l, e->set))
		return -ENOMEM;
	if (e->set)
		l->total -= rcptset_count(e->set);
	log_info("rcpts %s: rcpt_check off or domain gone; its %zu recipient(s) dropped", e->name,
		 e->set ? rcptset_count(e->set) : 0);
	htab_remove(&l->idx, e->hash, i);
	if (i != last) {
		l->ent[i] = l->ent[last];
		htab_renumber(&l->idx, l->ent[i].hash, last, i);
	}
	l->n--;
	return 0;
}

/* The next reply; -1 with err when the connection broke or the server is
 * no usable master. */
static int get_reply(redisContext *c, const char *what, redisReply **r, char *err, size_t errlen)
{
	*r = NULL;
	if (redisGetReply(c, (void **)r) != REDIS_OK || !*r)
		return redis_conn_err(c, NULL, what, err, errlen);
	if ((*r)->type == REDIS_REPLY_ERROR && strncmp((*r)->str, "WRONGTYPE", 9)) {
		redis_conn_err(c, *r, what, err, errlen);
		freeReplyObject(*r);
		*r = NULL;
		return -1;
	}
	return 0;
}

/* The generation reply into gen ("" for nil or anything odd). */
static void gen_text(const redisReply *r, char *gen)
{
	gen[0] = '\0';
	if (r->type == REDIS_REPLY_STRING && r->len < RCPTLOAD_GEN_MAX)
		memcpy(gen, r->str, r->len + 1);
}

/* Why the set of name is not taken, logged; the previous one stays. */
static void refuse(struct rcptload *l, const char *name, const char *gen, const char *why)
{
	uint32_t i = ent_find(l, name);
	const struct rcptset *old = i != HTAB_NONE ? l->ent[i].set : NULL;

	if (old)
		log_err("rcpts %s: %s; keeping the previous set (%zu recipient(s))", name, why,
			rcptset_count(old));
	else
		log_err("rcpts %s: %s; no set loaded: its recipients get 451 4.3.0", name, why);
	if (i != HTAB_NONE)
		snprintf(l->ent[i].gen, sizeof(l->ent[i].gen), "%s", gen);
	else if (ent_put(l, name, NULL, gen))
		log_err("rcpts %s: out of memory", name);
}

/* SSCAN key into b. 0; 1 over the per-domain cap; -1 Redis failed (err);
 * -2 out of memory. *bad counts members that are no entry. */
static int scan_members(redisContext *c, const char *key, struct rcptset_builder *b,
			size_t *bad, char *err, size_t errlen)
{
	char cursor[32] = "0";

	do {
		redisReply *r;

		if (redisAppendCommand(c, "SSCAN %s %s COUNT %s", key, cursor,
				       RCPTLOAD_SCAN_COUNT) != REDIS_OK)
			return redis_conn_err(c, NULL, "SSCAN", err, errlen);
		if (get_reply(c, "SSCAN", &r, err, errlen))
			return -1;
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			snprintf(err, errlen, "SSCAN %s: %s", key,
				 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
			freeReplyObject(r);
			return -1;
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		for (size_t i = 0; i < r->element[1]->elements; i++) {
			const redisReply *m = r->element[1]->element[i];
			char e[RCPTSET_ENTRY_MAX + 1];
			const char *why;
			size_t n;
			int rc;

			if (m->type != REDIS_REPLY_STRING ||
			    rcptset_entry_norm(m->str, m->len, e, &n, &why)) {
				(*bad)++;
				continue;
			}
			rc = rcptset_builder_add(b, e, n);
			if (rc == -E2BIG || rc == -ENOMEM) {
				freeReplyObject(r);
				return rc == -E2BIG ? 1 : -2;
			}
		}
		freeReplyObject(r);
	} while (strcmp(cursor, "0"));
	return 0;
}

int rcptload_fetch(struct rcptload *l, redisContext *c, const char *prefix, const char *name,
		   char *err, size_t errlen)
{
	char key[RCPTLOAD_KEY_MAX], gkey[RCPTLOAD_KEY_MAX], gen[RCPTLOAD_GEN_MAX], why[160];
	uint32_t i = ent_find(l, name);
	size_t old = i != HTAB_NONE && l->ent[i].set ? rcptset_count(l->ent[i].set) : 0;
	struct rcptset_builder *b;
	struct rcptset *s;
	size_t bad = 0;
	long long card;
	redisReply *r;
	uint64_t t0 = now_mono_ms();
	int rc;

	if (!schema_key(key, sizeof(key), prefix, "rcpts:", name) ||
	    !schema_key(gkey, sizeof(gkey), prefix, "rcpts_gen:", name))
		return snprintf(err, errlen, "rcpts %s: key too long", name), -1;
	/* The counter first: a change made while the set is read moves it
	 * again, so the next resync reads the set once more. */
	if (redisAppendCommand(c, "GET %s", gkey) != REDIS_OK ||
	    redisAppendCommand(c, "SCARD %s", key) != REDIS_OK)
		return redis_conn_err(c, NULL, "GET", err, errlen);
	if (get_reply(c, "GET", &r, err, errlen))
		return -1;
	gen_text(r, gen);
	freeReplyObject(r);
	if (get_reply(c, "SCARD", &r, err, errlen))
		return -1;
	card = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
	freeReplyObject(r);
	if (card < 0)
		return refuse(l, name, gen, "not a set (WRONGTYPE)"), 0;
	if ((size_t)card > l->max_per || l->total - old + (size_t)card > l->max_total) {
		snprintf(why, sizeof(why), "%lld recipient(s): over rcpt_max_per_domain (%zu) or rcpt_max_total (%zu, %zu held)",
			 card, l->max_per, l->max_total, l->total - old);
		return refuse(l, name, gen, why), 0;
	}
	b = rcptset_builder_new((size_t)card, l->max_per);
	if (!b)
		return refuse(l, name, gen, "out of memory"), 0;
	rc = scan_members(c, key, b, &bad, err, errlen);
	if (rc == -1) {
		rcptset_builder_free(b);
		return -1;
	}
	if (rc || l->total - old + rcptset_builder_count(b) > l->max_total) {
		rcptset_builder_free(b);
		snprintf(why, sizeof(why), rc == -2 ? "out of memory" :
			 "grew over rcpt_max_per_domain (%zu) or rcpt_max_total (%zu) while read",
			 l->max_per, l->max_total);
		return refuse(l, name, gen, why), 0;
	}
	s = rcptset_build(b);
	if (!s || ent_put(l, name, s, gen)) {
		rcptset_free(s);
		return refuse(l, name, gen, "out of memory"), 0;
	}
	if (bad)
		log_warn("rcpts %s: %zu member(s) of %s are no address and were left out", name,
			 bad, key);
	log_info("rcpts %s: %zu recipient(s) loaded in %llu ms, %zu bytes", name,
		 rcptset_count(s), (unsigned long long)(now_mono_ms() - t0), rcptset_mem(s));
	return 0;
}

/* Read the counters of the sets held; re-read those whose counter moved. */
static int sync_gens(struct rcptload *l, redisContext *c, const char *prefix, char *err,
		     size_t errlen)
{
	char key[RCPTLOAD_KEY_MAX], gen[RCPTLOAD_GEN_MAX];
	uint32_t n = l->n;
	char (*names)[DOMTAB_NAME_MAX + 1];
	int rc = 0;

	if (n == 0)
		return 0;
	names = malloc((size_t)n * sizeof(*names));
	if (!names)
		return snprintf(err, errlen, "out of memory"), -1;
	for (uint32_t i = 0; i < n; i++) {
		memcpy(names[i], l->ent[i].name, sizeof(names[i]));
		if (!schema_key(key, sizeof(key), prefix, "rcpts_gen:", names[i]) ||
		    redisAppendCommand(c, "GET %s", key) != REDIS_OK) {
			free(names);
			return redis_conn_err(c, NULL, "GET", err, errlen);
		}
	}
	/* Every reply is read before any set is (the pipeline stays in
	 * step); names[] holds which moved ("" = unchanged). */
	for (uint32_t i = 0; i < n; i++) {
		redisReply *r;

		if (get_reply(c, "GET", &r, err, errlen)) {
			rc = -1;
			continue;
		}
		gen_text(r, gen);
		freeReplyObject(r);
		if (!strcmp(gen, l->ent[ent_find(l, names[i])].gen))
			names[i][0] = '\0';
	}
	for (uint32_t i = 0; i < n && rc == 0; i++)
		if (names[i][0])
			rc = rcptload_fetch(l, c, prefix, names[i], err, errlen);
	free(names);
	return rc;
}

void rcptload_attach(const struct rcptload *l, struct domtab_builder *b)
{
	const struct domtab_row *row;

	for (size_t i = 0; (row = domtab_builder_row_at(b, i)); i++) {
		uint32_t e = row->rcpt_check ? ent_find(l, row->name) : HTAB_NONE;

		if (row->rcpts != (e != HTAB_NONE ? l->ent[e].set : NULL))
			domtab_builder_set_rcpts(b, row->name, e != HTAB_NONE ? l->ent[e].set : NULL);
	}
}

int rcptload_sync(struct rcptload *l, redisContext *c, const char *prefix,
		  struct domtab_builder *b, int check_gen, char *err, size_t errlen)
{
	const struct domtab_row *row;
	int rc = 0;

	for (uint32_t i = 0; i < l->n; i++)
		l->ent[i].seen = 0;
	for (size_t i = 0; (row = domtab_builder_row_at(b, i)); i++) {
		uint32_t e = row->rcpt_check ? ent_find(l, row->name) : HTAB_NONE;

		if (e != HTAB_NONE)
			l->ent[e].seen = 1;
	}
	for (uint32_t i = l->n; i-- > 0;)
		if (!l->ent[i].seen && ent_drop(l, i))
			break; /* out of memory: dropped at the next sync */
	if (check_gen)
		rc = sync_gens(l, c, prefix, err, errlen);
	for (size_t i = 0; rc == 0 && (row = domtab_builder_row_at(b, i)); i++)
		if (row->rcpt_check && ent_find(l, row->name) == HTAB_NONE)
			rc = rcptload_fetch(l, c, prefix, row->name, err, errlen);
	rcptload_attach(l, b);
	return rc;
}

size_t rcptload_total(const struct rcptload *l)
{
	return l->total;
}

size_t rcptload_mem(const struct rcptload *l)
{
	size_t m = 0;

	for (uint32_t i = 0; i < l->n; i++)
		if (l->ent[i].set)
			m += rcptset_mem(l->ent[i].set);
	return m;
}
