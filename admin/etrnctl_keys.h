/* SPDX-License-Identifier: MIT */
/*
 * etrnctl_keys: etrnctl's side of the hash-tagged keys (admin/schema.h):
 * which form of a key to read (the tagged one wins when both exist), the
 * writes that fold an untagged twin into the tagged key, and `etrnctl keys
 * migrate`, which renames every untagged key. Synchronous hiredis calls on
 * the caller's connection; nothing is kept between calls.
 */
#ifndef ETRND_ADMIN_ETRNCTL_KEYS_H
#define ETRND_ADMIN_ETRNCTL_KEYS_H

#include <stddef.h>
#include <stdio.h>

#include <hiredis/hiredis.h>

#include "admin/schema.h"
#include "core/config.h"

/* Room for any key etrnctl names: PREFIX KIND {NAME}. */
#define ETRNCTL_KEYS_MAX (CONFIG_REDIS_PREFIX_MAX + 16 + DOMTAB_NAME_MAX + SCHEMA_NAME_MAX)

/*
 * For each names[i] (i < n) of kind ("domain:", "user:", ...): the key to
 * read into keys[i], PREFIX KIND {NAME} when it exists, else the untagged
 * PREFIX KIND NAME (which may not exist either: the read then finds
 * nothing, as before). One pipelined round trip of EXISTS. 0, or -1 with
 * err set (Redis failed). A name too long for a key gets "".
 */
int etrnctl_keys_pick(redisContext *rc, const char *prefix, const char *kind,
		const char *const *names, size_t n, char (*keys)[ETRNCTL_KEYS_MAX],
		char *err, size_t errlen);

/*
 * Append (redisAppendCommand, replies unread) the two commands that fold
 * the untagged twin of PREFIX KIND {NAME} into it before a partial write:
 * RENAMENX untagged tagged (the twin becomes the key when there is no
 * tagged one yet), then DEL untagged (a twin left beside a tagged key
 * loses). Meant inside MULTI, where "no such key" is one element of EXEC's
 * reply and harmless. Returns the number of commands appended (2, or 0 when
 * the name is too long for a key).
 */
int etrnctl_keys_adopt(redisContext *rc, const char *prefix, const char *kind,
		const char *name);

/* The same, sent and read at once outside MULTI ("no such key" is not an
 * error here). 0, or -1 with err set. */
int etrnctl_keys_adopt_now(redisContext *rc, const char *prefix, const char *kind,
		const char *name, char *err, size_t errlen);

/* The first failed command inside an EXEC's reply r (an array: Redis runs
 * the others and keeps their writes, e.g. a WRONGTYPE key), not counting
 * the "no such key" of etrnctl_keys_adopt's RENAMENX; NULL when none or r
 * is no array. Points into r. */
const redisReply *etrnctl_keys_exec_error(const redisReply *r);

/*
 * `etrnctl keys migrate`: every untagged domain, route, user and queue key
 * under prefix renamed to its tagged form (RENAMENX: an untagged key whose
 * tagged twin exists is skipped and left in place), found by SCAN; then
 * "full" published on chan so running daemons read everything again. The
 * counts per kind go to out (one JSON object with json). Returns the exit
 * status: 0 done, 1 Redis failed (err set; the counts so far printed).
 */
int etrnctl_keys_migrate(redisContext *rc, const char *prefix, const char *chan, int json,
		FILE *out, char *err, size_t errlen);

#endif
