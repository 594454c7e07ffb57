/* SPDX-License-Identifier: MIT */
/*
 * etrnctl_keys: reading either key form, folding untagged twins, and keys
 * migrate (etrnctl_keys.h).
 */
#include "admin/etrnctl_keys.h"

#include <stdlib.h>
#include <string.h>

#include "admin/redis_conn.h"

#define ETRNCTL_KEYS_SCAN_COUNT "1000"

/* The kinds of per-name key (admin/schema.h); node keys are new, never
 * untagged. */
static const char *const etrnctl_keys_kinds[] = { "domain:", "route:", "user:", "queue:" };
#define ETRNCTL_KEYS_NKINDS (sizeof(etrnctl_keys_kinds) / sizeof(etrnctl_keys_kinds[0]))

int etrnctl_keys_pick(redisContext *rc, const char *prefix, const char *kind,
		      const char *const *names, size_t n, char (*keys)[ETRNCTL_KEYS_MAX],
		      char *err, size_t errlen)
{
	int ret = 0;

	for (size_t i = 0; i < n; i++)
		if (schema_key(keys[i], ETRNCTL_KEYS_MAX, prefix, kind, names[i]) &&
		    redisAppendCommand(rc, "EXISTS %s", keys[i]) != REDIS_OK)
			return redis_conn_err(rc, NULL, "EXISTS", err, errlen);
	for (size_t i = 0; i < n; i++) {
		redisReply *r;

		if (!schema_key(keys[i], ETRNCTL_KEYS_MAX, prefix, kind, names[i])) {
			keys[i][0] = '\0';
			continue;
		}
		if (redisGetReply(rc, (void **)&r) != REDIS_OK || !r)
			return redis_conn_err(rc, NULL, "EXISTS", err, errlen);
		if (r->type != REDIS_REPLY_INTEGER && ret == 0)
			ret = redis_conn_err(rc, r, "EXISTS", err, errlen);
		else if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
			(void)schema_key_untagged(keys[i], ETRNCTL_KEYS_MAX, prefix, kind, names[i]);
		freeReplyObject(r);
	}
	return ret;
}

int etrnctl_keys_adopt(redisContext *rc, const char *prefix, const char *kind, const char *name)
{
	char k[ETRNCTL_KEYS_MAX], u[ETRNCTL_KEYS_MAX];

	if (!schema_key(k, sizeof(k), prefix, kind, name) ||
	    !schema_key_untagged(u, sizeof(u), prefix, kind, name))
		return 0;
	/* An append fails only out of memory; the reply count then shows it
	 * as a missing reply. */
	(void)redisAppendCommand(rc, "RENAMENX %s %s", u, k);
	(void)redisAppendCommand(rc, "DEL %s", u);
	return 2;
}

/* "no such key": RENAMENX's answer when there is no untagged twin. */
static int etrnctl_keys_no_such(const redisReply *r)
{
	return r->type == REDIS_REPLY_ERROR && strstr(r->str, "no such key") != NULL;
}

const redisReply *etrnctl_keys_exec_error(const redisReply *r)
{
	if (!r || r->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (size_t i = 0; i < r->elements; i++)
		if (r->element[i]->type == REDIS_REPLY_ERROR && !etrnctl_keys_no_such(r->element[i]))
			return r->element[i];
	return NULL;
}

int etrnctl_keys_adopt_now(redisContext *rc, const char *prefix, const char *kind,
			   const char *name, char *err, size_t errlen)
{
	int n = etrnctl_keys_adopt(rc, prefix, kind, name), ret = 0;

	for (int i = 0; i < n; i++) {
		redisReply *r;

		if (redisGetReply(rc, (void **)&r) != REDIS_OK || !r)
			return redis_conn_err(rc, NULL, "RENAMENX", err, errlen);
		if (r->type == REDIS_REPLY_ERROR && !etrnctl_keys_no_such(r) && ret == 0)
			ret = redis_conn_err(rc, r, i ? "DEL" : "RENAMENX", err, errlen);
		freeReplyObject(r);
	}
	return ret;
}

/* What migrate did to one kind. */
struct etrnctl_keys_count {
	unsigned long renamed, skipped, gone;
};

/* RENAMENX each untagged key of one SCAN page (keys, all of kind) to its
 * tagged form, pipelined. 0, or -1 with err. */
static int etrnctl_keys_rename_page(redisContext *rc, const char *prefix, const char *kind,
				    const redisReply *keys, struct etrnctl_keys_count *cnt,
				    char *err, size_t errlen)
{
	size_t plen = strlen(prefix) + strlen(kind), sent = 0;
	char k[ETRNCTL_KEYS_MAX];
	int ret = 0;

	for (size_t i = 0; i < keys->elements; i++) {
		const redisReply *e = keys->element[i];
		const char *name;
		size_t nl;

		if (e->type != REDIS_REPLY_STRING || e->len <= plen ||
		    schema_key_name(e->str + plen, e->len - plen, &name, &nl) != 0 ||
		    !schema_key(k, sizeof(k), prefix, kind, name))
			continue;
		if (redisAppendCommand(rc, "RENAMENX %s %s", e->str, k) != REDIS_OK)
			return redis_conn_err(rc, NULL, "RENAMENX", err, errlen);
		sent++;
	}
	for (size_t i = 0; i < sent; i++) {
		redisReply *r;

		if (redisGetReply(rc, (void **)&r) != REDIS_OK || !r)
			return redis_conn_err(rc, NULL, "RENAMENX", err, errlen);
		if (r->type == REDIS_REPLY_INTEGER)
			*(r->integer ? &cnt->renamed : &cnt->skipped) += 1;
		else if (etrnctl_keys_no_such(r))
			cnt->gone++; /* deleted since the SCAN */
		else if (ret == 0)
			ret = redis_conn_err(rc, r, "RENAMENX", err, errlen);
		freeReplyObject(r);
	}
	return ret;
}

/* Every untagged key of kind, by SCAN. 0, or -1 with err. */
static int etrnctl_keys_migrate_kind(redisContext *rc, const char *prefix, const char *kind,
				     struct etrnctl_keys_count *cnt, char *err, size_t errlen)
{
	char cursor[32] = "0", match[ETRNCTL_KEYS_MAX];

	snprintf(match, sizeof(match), "%s%s*", prefix, kind);
	do {
		redisReply *r = redisCommand(rc, "SCAN %s MATCH %s COUNT %s", cursor, match,
					     ETRNCTL_KEYS_SCAN_COUNT);
		int bad = !r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
			  r->element[0]->type != REDIS_REPLY_STRING ||
			  r->element[1]->type != REDIS_REPLY_ARRAY;

		if (bad) {
			redis_conn_err(rc, r, "SCAN", err, errlen);
		} else {
			snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
			bad = etrnctl_keys_rename_page(rc, prefix, kind, r->element[1], cnt,
						       err, errlen);
		}
		if (r)
			freeReplyObject(r);
		if (bad)
			return -1;
	} while (strcmp(cursor, "0"));
	return 0;
}

static void etrnctl_keys_report(FILE *out, int json, const struct etrnctl_keys_count *cnt,
				size_t nkinds)
{
	unsigned long renamed = 0;

	if (json)
		fputc('{', out);
	for (size_t i = 0; i < nkinds; i++) {
		const char *kind = etrnctl_keys_kinds[i];
		int kl = (int)strlen(kind) - 1; /* without the colon */

		renamed += cnt[i].renamed;
		if (json)
			fprintf(out, "%s\"%.*s\":{\"renamed\":%lu,\"skipped\":%lu,\"gone\":%lu}",
				i ? "," : "", kl, kind, cnt[i].renamed, cnt[i].skipped, cnt[i].gone);
		else
			fprintf(out, "%.*s keys: %lu renamed, %lu skipped (the tagged key exists; the untagged one is left), %lu gone meanwhile\n",
				kl, kind, cnt[i].renamed, cnt[i].skipped, cnt[i].gone);
	}
	if (json)
		fprintf(out, ",\"renamed\":%lu}\n", renamed);
}

int etrnctl_keys_migrate(redisContext *rc, const char *prefix, const char *chan, int json,
			 FILE *out, char *err, size_t errlen)
{
	struct etrnctl_keys_count cnt[ETRNCTL_KEYS_NKINDS];
	unsigned long renamed = 0;
	size_t k;
	redisReply *r;

	memset(cnt, 0, sizeof(cnt));
	for (k = 0; k < ETRNCTL_KEYS_NKINDS; k++) {
		if (etrnctl_keys_migrate_kind(rc, prefix, etrnctl_keys_kinds[k], &cnt[k], err, errlen)) {
			etrnctl_keys_report(out, json, cnt, k + 1);
			return 1;
		}
		renamed += cnt[k].renamed;
	}
	etrnctl_keys_report(out, json, cnt, ETRNCTL_KEYS_NKINDS);
	if (!renamed)
		return 0;
	/* Same rows under new names: the daemons read them all again. */
	r = redisCommand(rc, "PUBLISH %s full", chan);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		redis_conn_err(rc, r, "PUBLISH", err, errlen);
		if (r)
			freeReplyObject(r);
		return 1;
	}
	freeReplyObject(r);
	return 0;
}
