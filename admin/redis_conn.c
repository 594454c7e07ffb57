/* SPDX-License-Identifier: MIT */
/*
 * redis_conn: find the master (Sentinel), connect, authenticate, select
 * (redis_conn.h). Sentinel follows Redis's client guideline: ask each
 * sentinel in order, connect to the address it names, and trust it only
 * when ROLE says master (a demoted master keeps answering as a replica).
 */
#include "admin/redis_conn.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "core/log.h"

#define REDIS_CONN_WHY_MAX 512
#define REDIS_CONN_ALL_MAX 1024      /* every sentinel's reason, for err */

/* The master this process last found, so the line is logged once per
 * master, whichever thread found it. */
static pthread_mutex_t redis_conn_mu = PTHREAD_MUTEX_INITIALIZER;
static char redis_conn_last[REDIS_CONN_HOST_MAX + 8];

int redis_conn_err(const redisContext *c, const redisReply *reply, const char *what,
		   char *err, size_t errlen)
{
	/* hiredis says a command that ran out of time with EAGAIN's text. */
	if (c && c->err == REDIS_ERR_IO && !strcmp(c->errstr, strerror(EAGAIN)))
		snprintf(err, errlen, "%s: timed out, no reply (%s)", what, c->errstr);
	else if (c && c->err)
		snprintf(err, errlen, "%s: %s", what, c->errstr);
	else if (reply && reply->type == REDIS_REPLY_ERROR)
		snprintf(err, errlen, "%s: %s", what, reply->str);
	else if (!reply)
		snprintf(err, errlen, "%s: no reply", what);
	else
		snprintf(err, errlen, "%s: unexpected reply type %d", what, reply->type);
	return -1;
}

int redis_conn_sentinel_addr(const redisReply *r, char *host, size_t hostlen, unsigned *port)
{
	const redisReply *h, *p;
	char *end;
	unsigned long v;

	if (!r)
		return -EPROTO;
	if (r->type == REDIS_REPLY_NIL)
		return -ENOENT;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
		return -EPROTO;
	h = r->element[0];
	p = r->element[1];
	if (h->type != REDIS_REPLY_STRING || p->type != REDIS_REPLY_STRING ||
	    h->len == 0 || h->len >= hostlen || memchr(h->str, '\0', h->len) ||
	    p->len == 0 || p->len > 5 || p->str[0] < '0' || p->str[0] > '9')
		return -EPROTO;
	v = strtoul(p->str, &end, 10);
	if (*end || v == 0 || v > 65535)
		return -EPROTO;
	memcpy(host, h->str, h->len);
	host[h->len] = '\0';
	*port = (unsigned)v;
	return 0;
}

int redis_conn_role_master(const redisReply *r)
{
	const redisReply *e;

	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1)
		return -EPROTO;
	e = r->element[0];
	if (e->type != REDIS_REPLY_STRING)
		return -EPROTO;
	return e->len == 6 && !memcmp(e->str, "master", 6);
}

int redis_conn_failover_reply(const redisReply *r)
{
	static const char *const kinds[] = { "READONLY", "LOADING", "MASTERDOWN" };

	if (!r || r->type != REDIS_REPLY_ERROR)
		return 0;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		size_t n = strlen(kinds[i]);

		if (r->len >= n && !memcmp(r->str, kinds[i], n) &&
		    (r->len == n || r->str[n] == ' '))
			return 1;
	}
	return 0;
}

int redis_conn_switch_master(const redisReply *r, const char *master_name, char *host,
			     size_t hostlen, unsigned *port)
{
	const redisReply *p;
	size_t n = strlen(master_name);
	char name[CONFIG_MASTER_NAME_MAX + 1], h[REDIS_CONN_HOST_MAX], oh[REDIS_CONN_HOST_MAX];
	unsigned op, np;

	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "message") ||
	    r->element[1]->type != REDIS_REPLY_STRING ||
	    strcmp(r->element[1]->str, "+switch-master") ||
	    r->element[2]->type != REDIS_REPLY_STRING)
		return 0;
	p = r->element[2];
	/* The widths are REDIS_CONN_HOST_MAX - 1 and CONFIG_MASTER_NAME_MAX. */
	if (n == 0 || n > CONFIG_MASTER_NAME_MAX ||
	    sscanf(p->str, "%64s %255s %u %255s %u", name, oh, &op, h, &np) != 5 ||
	    strcmp(name, master_name) || np == 0 || np > 65535 || strlen(h) >= hostlen)
		return 0;
	memcpy(host, h, strlen(h) + 1);
	*port = np;
	return 1;
}

/* A reason into buf; a long one is cut (it is for a log line). */
static void redis_conn_say(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void redis_conn_say(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

static struct timeval redis_conn_tv(unsigned ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	return tv;
}

/* One command whose reply must not be an error; shown names the server. */
static int redis_conn_ok(redisContext *c, const char *shown, const char *what,
			 redisReply *rep, char *err, size_t errlen)
{
	char why[REDIS_CONN_WHY_MAX];

	if (rep && rep->type != REDIS_REPLY_ERROR) {
		freeReplyObject(rep);
		return 0;
	}
	redis_conn_err(c, rep, what, why, sizeof(why));
	snprintf(err, errlen, "redis %s: %s", shown, why);
	if (rep)
		freeReplyObject(rep);
	return -1;
}

/* Connect to host:port (host NULL: r's unix socket), then AUTH and SELECT
 * as r says. shown names the server in err. */
static redisContext *redis_conn_addr(const struct config_redis *r, const char *host,
				     unsigned port, const char *shown, unsigned timeout_ms,
				     char *err, size_t errlen)
{
	struct timeval tv = redis_conn_tv(timeout_ms);
	redisContext *c;

	c = host ? redisConnectWithTimeout(host, (int)port, tv)
		 : redisConnectUnixWithTimeout(r->path, tv);
	if (!c) {
		snprintf(err, errlen, "redis %s: out of memory", shown);
		return NULL;
	}
	if (c->err) {
		snprintf(err, errlen, "redis %s: %s", shown, c->errstr);
		goto fail;
	}
	if (redisSetTimeout(c, tv) != REDIS_OK) {
		snprintf(err, errlen, "redis %s: cannot set the socket timeout", shown);
		goto fail;
	}
	if (r->pass[0] &&
	    redis_conn_ok(c, shown, "AUTH", r->user[0] ?
			  redisCommand(c, "AUTH %s %s", r->user, r->pass) :
			  redisCommand(c, "AUTH %s", r->pass), err, errlen))
		goto fail;
	if (r->db && redis_conn_ok(c, shown, "SELECT", redisCommand(c, "SELECT %u", r->db),
				   err, errlen))
		goto fail;
	return c;
fail:
	redisFree(c);
	return NULL;
}

/* Append "what" to the reasons gathered in all (cut when full). */
static void redis_conn_gather(char *all, size_t len, const char *what)
{
	size_t o = strlen(all);

	if (o + 3 < len)
		snprintf(all + o, len - o, "%s%s", o ? "; " : "", what);
}

/* Ask sentinel s for name's master. 0 with host/port, else -1 with why. */
static int redis_conn_sentinel_ask(const struct config_sentinel *s, const char *name,
				   char *host, size_t hl, unsigned *port, char *why, size_t wl)
{
	struct timeval tv = redis_conn_tv(REDIS_CONN_SENTINEL_TIMEOUT_MS);
	redisContext *c = redisConnectWithTimeout(s->host, (int)s->port, tv);
	redisReply *rep = NULL;
	int rc = -1;

	if (!c || c->err) {
		redis_conn_say(why, wl, "sentinel %s:%u: %s", s->host, s->port, c ? c->errstr : "out of memory");
		goto out;
	}
	if (redisSetTimeout(c, tv) != REDIS_OK) {
		redis_conn_say(why, wl, "sentinel %s:%u: cannot set the socket timeout", s->host, s->port);
		goto out;
	}
	rep = redisCommand(c, "SENTINEL get-master-addr-by-name %s", name);
	switch (redis_conn_sentinel_addr(rep, host, hl, port)) {
	case 0:
		rc = 0;
		break;
	case -ENOENT:
		redis_conn_say(why, wl, "sentinel %s:%u: knows no master %s", s->host, s->port, name);
		break;
	default: {
		char one[REDIS_CONN_WHY_MAX];

		redis_conn_err(c, rep, "SENTINEL get-master-addr-by-name", one, sizeof(one));
		redis_conn_say(why, wl, "sentinel %s:%u: %s", s->host, s->port, one);
		break;
	}
	}
out:
	if (rep)
		freeReplyObject(rep);
	if (c)
		redisFree(c);
	return rc;
}

/* ROLE of c: 1 master, 0 another role, -1 failed (why set). */
static int redis_conn_role(redisContext *c, char *why, size_t wl)
{
	redisReply *rep = redisCommand(c, "ROLE");
	int m = redis_conn_role_master(rep);

	if (m < 0)
		redis_conn_err(c, rep, "ROLE", why, wl);
	if (rep)
		freeReplyObject(rep);
	return m < 0 ? -1 : m;
}

static void redis_conn_found(const struct config_sentinel *s, const char *name,
			     const char *host, unsigned port)
{
	char now[sizeof(redis_conn_last)];
	int changed;

	snprintf(now, sizeof(now), "%s:%u", host, port);
	pthread_mutex_lock(&redis_conn_mu);
	changed = strcmp(now, redis_conn_last) != 0;
	if (changed)
		memcpy(redis_conn_last, now, sizeof(now));
	pthread_mutex_unlock(&redis_conn_mu);
	if (changed)
		log_info("redis: sentinel %s:%u names master %s for %s", s->host, s->port, now, name);
}

/* One round over the sentinels: the master's connection, or NULL with the
 * reasons appended to all; *answered set when a sentinel named a master. */
static redisContext *redis_conn_round(const struct config_redis *r, unsigned timeout_ms,
				      char *all, size_t alllen, int *answered)
{
	char host[REDIS_CONN_HOST_MAX], shown[REDIS_CONN_HOST_MAX + 8];
	char why[REDIS_CONN_WHY_MAX];

	for (unsigned i = 0; i < r->nsentinels; i++) {
		const struct config_sentinel *s = &r->sentinels[i];
		redisContext *c;
		unsigned port;
		int role;

		if (redis_conn_sentinel_ask(s, r->master_name, host, sizeof(host), &port,
					    why, sizeof(why))) {
			redis_conn_gather(all, alllen, why);
			continue;
		}
		*answered = 1;
		snprintf(shown, sizeof(shown), "%s:%u", host, port);
		c = redis_conn_addr(r, host, port, shown, timeout_ms, why, sizeof(why));
		if (!c) {
			redis_conn_gather(all, alllen, why);
			continue; /* the next sentinel may already know the new master */
		}
		role = redis_conn_role(c, why, sizeof(why));
		if (role == 1) {
			redis_conn_found(s, r->master_name, host, port);
			return c;
		}
		redisFree(c);
		if (role == 0)
			redis_conn_say(why, sizeof(why), "%s (named by sentinel %s:%u) is not a master",
				 shown, s->host, s->port);
		redis_conn_gather(all, alllen, why);
	}
	return NULL;
}

static redisContext *redis_conn_sentinel(const struct config_redis *r, unsigned timeout_ms,
					 char *err, size_t errlen)
{
	char all[REDIS_CONN_ALL_MAX] = "";

	for (int round = 0; round < REDIS_CONN_SENTINEL_ROUNDS; round++) {
		int answered = 0;
		redisContext *c;

		if (round) {
			struct timespec ts = { 0, (long)REDIS_CONN_SENTINEL_PAUSE_MS * 1000000L };

			(void)nanosleep(&ts, NULL);
			all[0] = '\0'; /* the last round's reasons are the ones to show */
		}
		c = redis_conn_round(r, timeout_ms, all, sizeof(all), &answered);
		if (c)
			return c;
		/* Nobody answered: asking again at once will not help. */
		if (!answered)
			break;
	}
	snprintf(err, errlen, "redis %s: no master: %s", r->display, all);
	return NULL;
}

redisContext *redis_conn_open(const struct config_redis *r, unsigned timeout_ms,
			      char *err, size_t errlen)
{
	if (r->kind == CONFIG_REDIS_TCP && r->nsentinels > 0)
		return redis_conn_sentinel(r, timeout_ms, err, errlen);
	if (r->kind == CONFIG_REDIS_UNIX)
		return redis_conn_addr(r, NULL, 0, r->display, timeout_ms, err, errlen);
	if (r->kind == CONFIG_REDIS_TCP)
		return redis_conn_addr(r, r->host, r->port, r->display, timeout_ms, err, errlen);
	snprintf(err, errlen, "redis: no address configured");
	return NULL;
}

redisContext *redis_conn_sentinel_watch(const struct config_redis *r, char *err, size_t errlen)
{
	struct timeval tv = redis_conn_tv(REDIS_CONN_SENTINEL_TIMEOUT_MS);
	char all[REDIS_CONN_ALL_MAX] = "", why[REDIS_CONN_WHY_MAX];

	for (unsigned i = 0; i < r->nsentinels; i++) {
		const struct config_sentinel *s = &r->sentinels[i];
		redisContext *c = redisConnectWithTimeout(s->host, (int)s->port, tv);
		redisReply *rep = NULL;

		if (c && !c->err && redisSetTimeout(c, tv) == REDIS_OK &&
		    (rep = redisCommand(c, "SUBSCRIBE +switch-master")) &&
		    rep->type == REDIS_REPLY_ARRAY) {
			freeReplyObject(rep);
			return c;
		}
		char one[REDIS_CONN_WHY_MAX];

		if (c)
			redis_conn_err(c, rep, "SUBSCRIBE +switch-master", one, sizeof(one));
		else
			snprintf(one, sizeof(one), "out of memory");
		redis_conn_say(why, sizeof(why), "sentinel %s:%u: %s", s->host, s->port, one);
		redis_conn_gather(all, sizeof(all), why);
		if (rep)
			freeReplyObject(rep);
		if (c)
			redisFree(c);
	}
	snprintf(err, errlen, "redis %s: no sentinel to watch: %s", r->display,
		 all[0] ? all : "none configured");
	return NULL;
}
