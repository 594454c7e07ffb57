/* SPDX-License-Identifier: MIT */
/*
 * redis_conn: open a hiredis connection to the address of the "redis" config
 * key (or etrnctl's --redis): unix socket or TCP, with a connect and command
 * timeout, then AUTH (password, or ACL user + password) and SELECT. With
 * redis_sentinels set, the master's address is asked of the sentinels first
 * (SENTINEL get-master-addr-by-name, in order) and ROLE must say master. Used
 * by the control thread, the AUTH verifiers, the cluster thread and etrnctl
 * alike, so every Redis user finds and follows the master the same way.
 */
#ifndef ETRND_ADMIN_REDIS_CONN_H
#define ETRND_ADMIN_REDIS_CONN_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "core/config.h"

/* Bounds of the Sentinel look-up: each sentinel's connect and command get
 * at most REDIS_CONN_SENTINEL_TIMEOUT_MS (a dead one must not eat the
 * caller's whole timeout); a round asks every sentinel in order; a master
 * named but not (yet, or no longer) a master costs a pause and another
 * round, at most REDIS_CONN_SENTINEL_ROUNDS. */
#define REDIS_CONN_SENTINEL_TIMEOUT_MS 1000u
#define REDIS_CONN_SENTINEL_ROUNDS 3
#define REDIS_CONN_SENTINEL_PAUSE_MS 200u
#define REDIS_CONN_HOST_MAX 256

/*
 * A ready connection (caller frees with redisFree()), or NULL with err set to
 * "redis ADDRESS: reason". timeout_ms bounds the connect and each command.
 * With r->nsentinels > 0 the master is found through Sentinel at every call
 * (so a reconnect after a failover reaches the new master); the first time
 * a process finds a master, and each time it is another, one line is logged.
 * Thread-safe.
 */
redisContext *redis_conn_open(const struct config_redis *r, unsigned timeout_ms,
		char *err, size_t errlen);

/* Set err from a failed command: the context's error, or an error reply.
 * what names the command. Frees nothing. Returns -1. */
int redis_conn_err(const redisContext *c, const redisReply *reply, const char *what,
		char *err, size_t errlen);

/*
 * Pure parts, unit-tested (tests/unit/test_redis_conn.c).
 *
 * The reply to SENTINEL get-master-addr-by-name: [host, port]. 0 with host
 * (NUL-terminated, hostlen bytes at most) and port set; -ENOENT when the
 * sentinel knows no such master (nil); -EPROTO for any other shape, an
 * overlong host or a bad port.
 */
int redis_conn_sentinel_addr(const redisReply *r, char *host, size_t hostlen, unsigned *port);

/* The reply to ROLE: 1 when its first element is "master", 0 for another
 * role ("slave", "sentinel"), -EPROTO for any other shape. */
int redis_conn_role_master(const redisReply *r);

/* 1 when r is an error reply that means "this is not (or not yet) a usable
 * master": READONLY (a demoted master or a replica), LOADING (still reading
 * its data set after a restart), MASTERDOWN (a replica cut from its master).
 * The caller then drops the connection and reconnects through Sentinel. */
int redis_conn_failover_reply(const redisReply *r);

/* A +switch-master message of a sentinel's pub/sub (["message",
 * "+switch-master", "<name> <old-ip> <old-port> <new-ip> <new-port>"]):
 * 1 when it names master_name, with the new master's address in host
 * (hostlen bytes at most) and port; else 0 (another master, another
 * message, a malformed one). */
int redis_conn_switch_master(const redisReply *r, const char *master_name, char *host,
		size_t hostlen, unsigned *port);

/*
 * A connection to the first sentinel that answers, SUBSCRIBEd to
 * +switch-master, for a caller that polls its fd and reads messages with
 * redisBufferRead()/redisGetReplyFromReader() (redis_conn_switch_master()).
 * NULL with err set when no sentinel answers, or r has none. Caller frees.
 */
redisContext *redis_conn_sentinel_watch(const struct config_redis *r, char *err, size_t errlen);

#endif
