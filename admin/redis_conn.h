/* SPDX-License-Identifier: MIT */
/*
 * redis_conn: open a hiredis connection to the address of the "redis" config
 * key (or etrnctl's --redis): unix socket or TCP, with a connect and command
 * timeout, then AUTH (password, or ACL user + password) and SELECT. Used by
 * the control thread and etrnctl alike, so both reach Redis the same way.
 */
#ifndef ETRND_ADMIN_REDIS_CONN_H
#define ETRND_ADMIN_REDIS_CONN_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "core/config.h"

/* A ready connection (caller frees with redisFree()), or NULL with err set to
 * "redis ADDRESS: reason". timeout_ms bounds the connect and each command. */
redisContext *redis_conn_open(const struct config_redis *r, unsigned timeout_ms,
		char *err, size_t errlen);

/* Set err from a failed command: the context's error, or an error reply.
 * what names the command. Frees nothing. Returns -1. */
int redis_conn_err(const redisContext *c, const redisReply *reply, const char *what,
		char *err, size_t errlen);

#endif
