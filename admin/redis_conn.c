/* SPDX-License-Identifier: MIT */
/*
 * redis_conn: connect, authenticate, select (redis_conn.h).
 */
#include "admin/redis_conn.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>

int redis_conn_err(const redisContext *c, const redisReply *reply, const char *what,
		   char *err, size_t errlen)
{
	if (c && c->err)
		snprintf(err, errlen, "%s: %s", what, c->errstr);
	else if (reply && reply->type == REDIS_REPLY_ERROR)
		snprintf(err, errlen, "%s: %s", what, reply->str);
	else if (!reply)
		snprintf(err, errlen, "%s: no reply", what);
	else
		snprintf(err, errlen, "%s: unexpected reply type %d", what, reply->type);
	return -1;
}

redisContext *redis_conn_open(const struct config_redis *r, unsigned timeout_ms,
			      char *err, size_t errlen)
{
	struct timeval tv = { (time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000 };
	redisContext *c;
	redisReply *rep = NULL;
	char why[256];

	if (r->kind == CONFIG_REDIS_UNIX)
		c = redisConnectUnixWithTimeout(r->path, tv);
	else if (r->kind == CONFIG_REDIS_TCP)
		c = redisConnectWithTimeout(r->host, (int)r->port, tv);
	else {
		snprintf(err, errlen, "redis: no address configured");
		return NULL;
	}
	if (!c) {
		snprintf(err, errlen, "redis %s: out of memory", r->display);
		return NULL;
	}
	if (c->err) {
		snprintf(err, errlen, "redis %s: %s", r->display, c->errstr);
		goto fail;
	}
	if (redisSetTimeout(c, tv) != REDIS_OK) {
		snprintf(err, errlen, "redis %s: cannot set the socket timeout", r->display);
		goto fail;
	}
	if (r->pass[0]) {
		if (r->user[0])
			rep = redisCommand(c, "AUTH %s %s", r->user, r->pass);
		else
			rep = redisCommand(c, "AUTH %s", r->pass);
		if (!rep || rep->type == REDIS_REPLY_ERROR) {
			redis_conn_err(c, rep, "AUTH", why, sizeof(why));
			snprintf(err, errlen, "redis %s: %s", r->display, why);
			goto fail;
		}
		freeReplyObject(rep);
		rep = NULL;
	}
	if (r->db) {
		rep = redisCommand(c, "SELECT %u", r->db);
		if (!rep || rep->type == REDIS_REPLY_ERROR) {
			redis_conn_err(c, rep, "SELECT", why, sizeof(why));
			snprintf(err, errlen, "redis %s: %s", r->display, why);
			goto fail;
		}
		freeReplyObject(rep);
		rep = NULL;
	}
	return c;
fail:
	if (rep)
		freeReplyObject(rep);
	redisFree(c);
	return NULL;
}
