/* SPDX-License-Identifier: MIT */
/*
 * etrnctl: provision etrnd's customer domains, queues and users in Redis
 * (DESIGN.md section 7, schema in admin/schema.h). Every write also publishes
 * "domain <d>" (or "user <u>") on PREFIX"events", so running daemons follow
 * within a moment. Every argument is validated before anything is written;
 * bad input exits 2 with a message, a failed or refused operation exits 1.
 * Redis is found through --redis URL, else the "redis" key of the config file
 * etrnd reads (-c FILE; default etc/etrnd.conf, the one `make run` uses).
 */
#include <ctype.h>
#include <crypt.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <termios.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "admin/domtab.h"
#include "admin/redis_conn.h"
#include "admin/schema.h"
#include "core/config.h"

#define ETRNCTL_DEFAULT_CONFIG "etc/etrnd.conf"
#define ETRNCTL_TIMEOUT_MS 10000
#define ETRNCTL_BATCH 1000            /* import: rows per pipelined round trip */
#define ETRNCTL_CSV_LINE_MAX 8192
#define ETRNCTL_CSV_COLS 8
#define ETRNCTL_PASSWORD_MAX 1024
#define ETRNCTL_KEY_MAX (CONFIG_REDIS_PREFIX_MAX + 16 + DOMTAB_NAME_MAX + SCHEMA_NAME_MAX)
#define ETRNCTL_SALT_BYTES 16

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

struct ctl {
	redisContext *rc;
	char prefix[CONFIG_REDIS_PREFIX_MAX + 1];
	char chan[CONFIG_REDIS_PREFIX_MAX + 8];
	int json;
};

/* Options of "domain add", as given (NULL = not given). */
struct opts {
	const char *dest, *queue, *etrn_from, *owner, *max_hold, *quota, *tls;
	int password_stdin;
};

/* A validated domain row, ready to write: field/value pairs (always with
 * tls, so the hash is never empty). */
struct newrow {
	char name[DOMTAB_NAME_MAX + 1];
	const char *f[ETRNCTL_CSV_COLS];
	const char *v[ETRNCTL_CSV_COLS];
	int n;
	const char *queue, *owner;
	char etrn[DOMTAB_CIDR_MAX * 48];
	char quota[24];
	char buf[ETRNCTL_CSV_LINE_MAX];    /* copies of the other values */
};

static const char *const csv_cols[ETRNCTL_CSV_COLS] = {
	"domain", SCHEMA_F_QUEUE, SCHEMA_F_DEST, SCHEMA_F_ETRN_FROM, SCHEMA_F_OWNER,
	SCHEMA_F_MAX_HOLD, SCHEMA_F_QUOTA, SCHEMA_F_TLS,
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: etrnctl [-c FILE | --redis URL] [--json] COMMAND [ARGS]\n"
		"  domain add DOMAIN [--dest HOST[:PORT]|mx] [--queue NAME] [--etrn-from CIDR,...]\n"
		"                    [--owner USER] [--max-hold DURATION] [--quota BYTES] [--tls may|must]\n"
		"  domain del DOMAIN | domain show DOMAIN | domain list\n"
		"  queue list | queue show NAME\n"
		"  user add NAME | user passwd NAME | user del NAME   [--password-stdin]\n"
		"  import FILE.csv    (columns: %s,%s,%s,%s,%s,%s,%s,%s; a header line may reorder them)\n"
		"  export             (CSV on stdout, as import reads it)\n"
		"  flush DOMAIN|@DOMAIN|#QUEUE  ETRN on the operator's behalf: the daemon drains now\n"
		"                     and prints its RFC 1985 reply; other nodes hear it on Redis\n"
		"  status             queue depths per shard and per domain, from the running daemon\n"
		"  -c FILE      etrnd config to take redis and redis_prefix from (default %s)\n"
		"  --redis URL  unix:/path, host:port or redis://[user:password@]host[:port][/db]\n"
		"  --json       machine-readable output\n"
		"Exit status: 0 done, 1 failed (Redis, not found, bad CSV rows), 2 bad usage or input.\n",
		csv_cols[0], csv_cols[1], csv_cols[2], csv_cols[3], csv_cols[4], csv_cols[5],
		csv_cols[6], csv_cols[7], ETRNCTL_DEFAULT_CONFIG);
}

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...)
{
	va_list ap;

	fputs("etrnctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("etrnctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_FAIL;
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static char *key(char *buf, const struct ctl *x, const char *kind, const char *name)
{
	if (!schema_key(buf, ETRNCTL_KEY_MAX, x->prefix, kind, name))
		buf[0] = '\0';
	return buf;
}

/* ---- Redis helpers ------------------------------------------------------ */

static redisReply *cmd(struct ctl *x, const char *fmt, ...)
{
	va_list ap;
	redisReply *r;

	va_start(ap, fmt);
	r = redisvCommand(x->rc, fmt, ap);
	va_end(ap);
	return r;
}

static int redis_failed(struct ctl *x, redisReply *r, const char *what)
{
	char err[512];

	redis_conn_err(x->rc, r, what, err, sizeof(err));
	if (r)
		freeReplyObject(r);
	return fail("redis: %s", err);
}

/* Read n pipelined replies; the first error is reported. */
static int read_replies(struct ctl *x, int n, const char *what)
{
	int rc = 0;

	for (int i = 0; i < n; i++) {
		redisReply *r;

		if (redisGetReply(x->rc, (void **)&r) != REDIS_OK || !r)
			return redis_failed(x, NULL, what);
		if (r->type == REDIS_REPLY_ERROR && rc == 0)
			rc = redis_failed(x, r, what);
		else
			freeReplyObject(r);
	}
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every key PREFIX KIND *, without PREFIX KIND, sorted. Caller frees each and
 * the array. -1 on failure (reported). */
static int scan_names(struct ctl *x, const char *kind, char ***out, size_t *nout)
{
	char cursor[32] = "0", match[ETRNCTL_KEY_MAX];
	size_t plen = strlen(x->prefix) + strlen(kind), n = 0, cap = 0;
	char **v = NULL;

	snprintf(match, sizeof(match), "%s%s*", x->prefix, kind);
	do {
		redisReply *r = cmd(x, "SCAN %s MATCH %s COUNT 1000", cursor, match);

		if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
			for (size_t i = 0; i < n; i++)
				free(v[i]);
			free(v);
			return redis_failed(x, r, "SCAN") ? -1 : -1;
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		for (size_t i = 0; i < r->element[1]->elements; i++) {
			const redisReply *k = r->element[1]->element[i];

			if (k->type != REDIS_REPLY_STRING || k->len <= plen)
				continue;
			if (n == cap) {
				char **nv = realloc(v, (cap = cap ? cap * 2 : 256) * sizeof(*v));

				if (!nv)
					abort();
				v = nv;
			}
			if (!(v[n++] = strdup(k->str + plen)))
				abort();
		}
		freeReplyObject(r);
	} while (strcmp(cursor, "0"));
	if (n)
		qsort(v, n, sizeof(*v), cmp_str);
	/* SCAN may return a key twice. */
	{
		size_t o = 0;

		for (size_t i = 0; i < n; i++) {
			if (o && !strcmp(v[o - 1], v[i]))
				free(v[i]);
			else
				v[o++] = v[i];
		}
		n = o;
	}
	*out = v;
	*nout = n;
	return 0;
}

static void free_names(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ---- validation --------------------------------------------------------- */

static const char *nz(const char *s)
{
	return s && *s ? s : NULL;
}

static const char *keep(struct newrow *r, size_t *off, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p;

	if (*off + n > sizeof(r->buf))
		return NULL;
	p = r->buf + *off;
	memcpy(p, s, n);
	*off += n;
	return p;
}

/* Validate one row's values (NULL or "" = not set). 0, or -1 with why. */
static int newrow_make(struct newrow *r, const char *domain, const struct opts *o,
		       char *why, size_t wl)
{
	struct domtab_cidr cidrs[DOMTAB_CIDR_MAX];
	char one[SCHEMA_WHY_MAX];
	size_t off = 0;
	uint64_t u;
	enum domtab_tls tls;
	const char *s;

	memset(r, 0, offsetof(struct newrow, etrn));
	r->etrn[0] = r->quota[0] = '\0';
	if (schema_domain_norm(domain, 1, r->name, one, sizeof(one)))
		return snprintf(why, wl, "domain %s", one), -1;
	if ((s = nz(o->queue))) {
		if (schema_queue_check(s, one, sizeof(one)))
			return snprintf(why, wl, "--queue: %s", one), -1;
		r->f[r->n] = SCHEMA_F_QUEUE;
		r->v[r->n++] = r->queue = keep(r, &off, s);
	}
	if ((s = nz(o->dest))) {
		if (schema_dest_check(s, one, sizeof(one)))
			return snprintf(why, wl, "--dest: %s", one), -1;
		r->f[r->n] = SCHEMA_F_DEST;
		r->v[r->n++] = keep(r, &off, s);
	}
	if ((s = nz(o->etrn_from))) {
		unsigned n;

		if (schema_cidr_list_parse(s, cidrs, DOMTAB_CIDR_MAX, &n, one, sizeof(one)))
			return snprintf(why, wl, "--etrn-from: %s", one), -1;
		if (schema_cidr_list_format(cidrs, n, r->etrn, sizeof(r->etrn)))
			return snprintf(why, wl, "--etrn-from: too long"), -1;
		if (n) {
			r->f[r->n] = SCHEMA_F_ETRN_FROM;
			r->v[r->n++] = r->etrn;
		}
	}
	if ((s = nz(o->owner))) {
		if (schema_user_check(s, one, sizeof(one)))
			return snprintf(why, wl, "--owner: %s", one), -1;
		r->f[r->n] = SCHEMA_F_OWNER;
		r->v[r->n++] = r->owner = keep(r, &off, s);
	}
	if ((s = nz(o->max_hold))) {
		if (schema_duration_parse(s, &u, one, sizeof(one)))
			return snprintf(why, wl, "--max-hold: %s", one), -1;
		r->f[r->n] = SCHEMA_F_MAX_HOLD;
		r->v[r->n++] = keep(r, &off, s);
	}
	if ((s = nz(o->quota))) {
		if (schema_size_parse(s, &u, one, sizeof(one)))
			return snprintf(why, wl, "--quota: %s", one), -1;
		snprintf(r->quota, sizeof(r->quota), "%llu", (unsigned long long)u);
		r->f[r->n] = SCHEMA_F_QUOTA;
		r->v[r->n++] = r->quota;
	}
	s = nz(o->tls) ? o->tls : "may";
	if (schema_tls_parse(s, &tls, one, sizeof(one)))
		return snprintf(why, wl, "--tls: %s", one), -1;
	r->f[r->n] = SCHEMA_F_TLS;
	r->v[r->n++] = tls == DOMTAB_TLS_MUST ? "must" : "may";
	for (int i = 0; i < r->n; i++)
		if (!r->v[i])
			return snprintf(why, wl, "values too long"), -1;
	return 0;
}

/* Append the writes for one row (old_queue/old_owner: what the row had).
 * Returns the number of commands appended. */
static int append_row_writes(struct ctl *x, const struct newrow *r, const char *old_queue,
			     const char *old_owner)
{
	char k[ETRNCTL_KEY_MAX], k2[ETRNCTL_KEY_MAX], f[ETRNCTL_KEY_MAX], ev[DOMTAB_NAME_MAX + 16];
	const char *argv[2 + 2 * ETRNCTL_CSV_COLS];
	int argc = 0, n = 0;

	key(k, x, "domain:", r->name);
	snprintf(f, sizeof(f), "%s%s", SCHEMA_USER_DOMAIN, r->name);
	redisAppendCommand(x->rc, "MULTI");
	redisAppendCommand(x->rc, "DEL %s", k);
	argv[argc++] = "HSET";
	argv[argc++] = k;
	for (int i = 0; i < r->n; i++) {
		argv[argc++] = r->f[i];
		argv[argc++] = r->v[i];
	}
	redisAppendCommandArgv(x->rc, argc, argv, NULL);
	n = 3;
	if (old_queue && (!r->queue || strcmp(old_queue, r->queue))) {
		redisAppendCommand(x->rc, "SREM %s %s", key(k2, x, "queue:", old_queue), r->name);
		n++;
	}
	if (r->queue) {
		redisAppendCommand(x->rc, "SADD %s %s", key(k2, x, "queue:", r->queue), r->name);
		n++;
	}
	if (old_owner && (!r->owner || strcmp(old_owner, r->owner))) {
		redisAppendCommand(x->rc, "HDEL %s %s", key(k2, x, "user:", old_owner), f);
		n++;
	}
	if (r->owner) {
		redisAppendCommand(x->rc, "HSET %s %s 1", key(k2, x, "user:", r->owner), f);
		n++;
	}
	snprintf(ev, sizeof(ev), "domain %s", r->name);
	redisAppendCommand(x->rc, "PUBLISH %s %s", x->chan, ev);
	redisAppendCommand(x->rc, "EXEC");
	return n + 2;
}

static int user_exists(struct ctl *x, const char *user)
{
	char k[ETRNCTL_KEY_MAX];
	redisReply *r = cmd(x, "EXISTS %s", key(k, x, "user:", user));
	int rc;

	if (!r || r->type != REDIS_REPLY_INTEGER) {
		redis_failed(x, r, "EXISTS");
		return -1;
	}
	rc = r->integer > 0;
	freeReplyObject(r);
	return rc;
}

/* HMGET queue owner of a domain: strdup'ed into *q, *o (NULL when unset).
 * Returns 1 if the domain exists, 0 if not, -1 on failure (reported). */
static int old_row(struct ctl *x, const char *name, char **q, char **o)
{
	char k[ETRNCTL_KEY_MAX];
	redisReply *r = cmd(x, "HMGET %s %s %s %s", key(k, x, "domain:", name), SCHEMA_F_QUEUE,
			    SCHEMA_F_OWNER, SCHEMA_F_TLS);
	int exists;

	*q = *o = NULL;
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3)
		return redis_failed(x, r, "HMGET"), -1;
	if (r->element[0]->type == REDIS_REPLY_STRING)
		*q = strdup(r->element[0]->str);
	if (r->element[1]->type == REDIS_REPLY_STRING)
		*o = strdup(r->element[1]->str);
	r = (freeReplyObject(r), cmd(x, "EXISTS %s", k));
	if (!r || r->type != REDIS_REPLY_INTEGER)
		return redis_failed(x, r, "EXISTS"), -1;
	exists = r->integer > 0;
	freeReplyObject(r);
	return exists;
}

/* ---- commands ----------------------------------------------------------- */

static int domain_add(struct ctl *x, const char *domain, const struct opts *o)
{
	struct newrow *r = malloc(sizeof(*r));
	char why[512], *oq = NULL, *oo = NULL;
	int rc, existed;

	if (!r)
		return fail("out of memory");
	if (newrow_make(r, domain, o, why, sizeof(why))) {
		free(r);
		return bad("%s", why);
	}
	if (r->owner) {
		rc = user_exists(x, r->owner);
		if (rc <= 0) {
			free(r);
			return rc < 0 ? EXIT_FAIL :
				fail("--owner: user \"%s\" does not exist (etrnctl user add %s)", o->owner, o->owner);
		}
	}
	existed = old_row(x, r->name, &oq, &oo);
	if (existed < 0) {
		free(r);
		return EXIT_FAIL;
	}
	rc = read_replies(x, append_row_writes(x, r, oq, oo), "domain add");
	if (rc == 0) {
		if (x->json) {
			printf("{\"domain\":");
			json_str(stdout, r->name);
			printf(",\"result\":\"%s\"}\n", existed ? "updated" : "added");
		} else {
			printf("domain %s %s\n", r->name, existed ? "updated" : "added");
		}
	}
	free(oq);
	free(oo);
	free(r);
	return rc;
}

static int domain_del(struct ctl *x, const char *domain)
{
	char name[DOMTAB_NAME_MAX + 1], why[SCHEMA_WHY_MAX], k[ETRNCTL_KEY_MAX];
	char k2[ETRNCTL_KEY_MAX], f[ETRNCTL_KEY_MAX], ev[DOMTAB_NAME_MAX + 16], *oq, *oo;
	int n = 0, exists, rc;

	if (schema_domain_norm(domain, 1, name, why, sizeof(why)))
		return bad("domain %s", why);
	exists = old_row(x, name, &oq, &oo);
	if (exists < 0)
		return EXIT_FAIL;
	if (!exists) {
		free(oq);
		free(oo);
		return fail("domain %s: not provisioned", name);
	}
	redisAppendCommand(x->rc, "MULTI");
	redisAppendCommand(x->rc, "DEL %s", key(k, x, "domain:", name));
	n = 2;
	if (oq) {
		redisAppendCommand(x->rc, "SREM %s %s", key(k2, x, "queue:", oq), name);
		n++;
	}
	if (oo) {
		snprintf(f, sizeof(f), "%s%s", SCHEMA_USER_DOMAIN, name);
		redisAppendCommand(x->rc, "HDEL %s %s", key(k2, x, "user:", oo), f);
		n++;
	}
	snprintf(ev, sizeof(ev), "domain %s", name);
	redisAppendCommand(x->rc, "PUBLISH %s %s", x->chan, ev);
	redisAppendCommand(x->rc, "EXEC");
	rc = read_replies(x, n + 2, "domain del");
	if (rc == 0) {
		if (x->json) {
			printf("{\"domain\":");
			json_str(stdout, name);
			printf(",\"result\":\"deleted\"}\n");
		} else {
			printf("domain %s deleted\n", name);
		}
	}
	free(oq);
	free(oo);
	return rc;
}

static int domain_show(struct ctl *x, const char *domain)
{
	char name[DOMTAB_NAME_MAX + 1], why[SCHEMA_WHY_MAX], k[ETRNCTL_KEY_MAX];
	redisReply *r;

	if (schema_domain_norm(domain, 1, name, why, sizeof(why)))
		return bad("domain %s", why);
	r = cmd(x, "HGETALL %s", key(k, x, "domain:", name));
	if (!r || r->type != REDIS_REPLY_ARRAY)
		return redis_failed(x, r, "HGETALL");
	if (r->elements == 0) {
		freeReplyObject(r);
		return fail("domain %s: not provisioned", name);
	}
	if (x->json) {
		printf("{\"domain\":");
		json_str(stdout, name);
	} else {
		printf("domain: %s\n", name);
	}
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		if (x->json) {
			putchar(',');
			json_str(stdout, r->element[i]->str);
			putchar(':');
			json_str(stdout, r->element[i + 1]->str);
		} else {
			printf("%s: %s\n", r->element[i]->str, r->element[i + 1]->str);
		}
	}
	if (x->json)
		printf("}\n");
	freeReplyObject(r);
	return EXIT_OK;
}

static void print_list(const struct ctl *x, char **v, size_t n)
{
	if (x->json) {
		putchar('[');
		for (size_t i = 0; i < n; i++) {
			if (i)
				putchar(',');
			json_str(stdout, v[i]);
		}
		printf("]\n");
	} else {
		for (size_t i = 0; i < n; i++)
			printf("%s\n", v[i]);
	}
}

static int domain_list(struct ctl *x)
{
	char **v;
	size_t n;

	if (scan_names(x, "domain:", &v, &n))
		return EXIT_FAIL;
	print_list(x, v, n);
	free_names(v, n);
	return EXIT_OK;
}

static int queue_list(struct ctl *x)
{
	char **v, k[ETRNCTL_KEY_MAX];
	size_t n;

	if (scan_names(x, "queue:", &v, &n))
		return EXIT_FAIL;
	for (size_t i = 0; i < n; i++)
		redisAppendCommand(x->rc, "SCARD %s", key(k, x, "queue:", v[i]));
	if (x->json)
		putchar('[');
	for (size_t i = 0; i < n; i++) {
		redisReply *r;

		if (redisGetReply(x->rc, (void **)&r) != REDIS_OK || !r) {
			free_names(v, n);
			return redis_failed(x, NULL, "SCARD");
		}
		if (x->json) {
			printf("%s{\"queue\":", i ? "," : "");
			json_str(stdout, v[i]);
			printf(",\"domains\":%lld}", r->type == REDIS_REPLY_INTEGER ? r->integer : 0);
		} else {
			printf("%s\t%lld domain(s)\n", v[i], r->type == REDIS_REPLY_INTEGER ? r->integer : 0);
		}
		freeReplyObject(r);
	}
	if (x->json)
		printf("]\n");
	free_names(v, n);
	return EXIT_OK;
}

static int queue_show(struct ctl *x, const char *q)
{
	char why[SCHEMA_WHY_MAX], k[ETRNCTL_KEY_MAX];
	redisReply *r;
	char **v;

	if (schema_queue_check(q, why, sizeof(why)))
		return bad("%s", why);
	r = cmd(x, "SMEMBERS %s", key(k, x, "queue:", q));
	if (!r || r->type != REDIS_REPLY_ARRAY)
		return redis_failed(x, r, "SMEMBERS");
	if (r->elements == 0) {
		freeReplyObject(r);
		return fail("queue %s: no such queue (no domain is in it)", q);
	}
	v = calloc(r->elements, sizeof(*v));
	if (!v)
		abort();
	for (size_t i = 0; i < r->elements; i++)
		v[i] = r->element[i]->str;
	qsort(v, r->elements, sizeof(*v), cmp_str);
	print_list(x, v, r->elements);
	free(v);
	freeReplyObject(r);
	return EXIT_OK;
}

/* One password line: from stdin (--password-stdin or not a terminal), else
 * prompted twice on the terminal with echo off. */
static int read_password(const struct opts *o, char *pw, size_t len)
{
	char again[ETRNCTL_PASSWORD_MAX];
	int tty = !o->password_stdin && isatty(0);
	struct termios t0, t1;

	for (int round = 0; round < (tty ? 2 : 1); round++) {
		char *dst = round ? again : pw;
		size_t n;

		if (tty) {
			fprintf(stderr, round ? "Again: " : "Password: ");
			tcgetattr(0, &t0);
			t1 = t0;
			t1.c_lflag &= (tcflag_t)~ECHO;
			tcsetattr(0, TCSAFLUSH, &t1);
		}
		if (!fgets(dst, (int)len, stdin))
			dst[0] = '\0';
		if (tty) {
			tcsetattr(0, TCSAFLUSH, &t0);
			fputc('\n', stderr);
		}
		n = strlen(dst);
		if (n && dst[n - 1] == '\n')
			dst[--n] = '\0';
		if (n && dst[n - 1] == '\r')
			dst[--n] = '\0';
		if (n == 0)
			return bad("empty password");
		if (n + 1 >= len)
			return bad("password longer than %zu characters", len - 2);
	}
	if (tty && strcmp(pw, again)) {
		explicit_bzero(again, sizeof(again));
		return bad("the passwords differ");
	}
	explicit_bzero(again, sizeof(again));
	return 0;
}

/* yescrypt ("$y$") with a random salt from getrandom(2); SHA-512 crypt
 * ("$6$") where libcrypt lacks yescrypt. Never stores plain text. */
static int hash_password(const char *pw, char *out, size_t outlen)
{
	static const char *const methods[] = { "$y$", "$6$" };
	char salt[CRYPT_GENSALT_OUTPUT_SIZE], rnd[ETRNCTL_SALT_BYTES];
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	int rc = -1;

	if (!cd)
		return -1;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]) && rc; i++) {
		const char *h;

		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			break;
		if (!crypt_gensalt_rn(methods[i], 0, rnd, sizeof(rnd), salt, sizeof(salt)))
			continue;
		h = crypt_r(pw, salt, cd);
		if (!h || h[0] == '*' || strlen(h) >= outlen)
			continue;
		memcpy(out, h, strlen(h) + 1);
		rc = 0;
	}
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return rc;
}

static int user_cmd(struct ctl *x, const char *verb, const char *user, const struct opts *o)
{
	char why[SCHEMA_WHY_MAX], k[ETRNCTL_KEY_MAX], pw[ETRNCTL_PASSWORD_MAX], hash[256];
	char ev[SCHEMA_NAME_MAX + 8];
	redisReply *r;
	int exists, rc;

	if (schema_user_check(user, why, sizeof(why)))
		return bad("%s", why);
	key(k, x, "user:", user);
	exists = user_exists(x, user);
	if (exists < 0)
		return EXIT_FAIL;
	if (!strcmp(verb, "add") && exists)
		return fail("user %s already exists (etrnctl user passwd %s changes the password)", user, user);
	if (strcmp(verb, "add") && !exists)
		return fail("user %s does not exist", user);
	snprintf(ev, sizeof(ev), "user %s", user);
	if (!strcmp(verb, "del")) {
		redisAppendCommand(x->rc, "DEL %s", k);
		redisAppendCommand(x->rc, "PUBLISH %s %s", x->chan, ev);
		rc = read_replies(x, 2, "user del");
	} else {
		if ((rc = read_password(o, pw, sizeof(pw))))
			return rc;
		if (hash_password(pw, hash, sizeof(hash))) {
			explicit_bzero(pw, sizeof(pw));
			return fail("crypt(3) could not hash the password");
		}
		explicit_bzero(pw, sizeof(pw));
		r = cmd(x, "%s %s %s %s", !strcmp(verb, "add") ? "HSETNX" : "HSET", k,
			SCHEMA_F_PASSWORD, hash);
		if (!r || r->type != REDIS_REPLY_INTEGER)
			return redis_failed(x, r, "HSET");
		freeReplyObject(r);
		r = cmd(x, "PUBLISH %s %s", x->chan, ev);
		if (!r || r->type != REDIS_REPLY_INTEGER)
			return redis_failed(x, r, "PUBLISH");
		freeReplyObject(r);
		rc = 0;
	}
	if (rc == 0) {
		const char *done = !strcmp(verb, "add") ? "added" : !strcmp(verb, "del") ?
			"deleted" : "password changed";

		if (x->json) {
			printf("{\"user\":");
			json_str(stdout, user);
			printf(",\"result\":\"%s\"}\n", done);
		} else {
			printf("user %s %s\n", user, done);
		}
	}
	return rc;
}

/* ---- CSV ---------------------------------------------------------------- */

/*
 * Split one CSV line (RFC 4180 quoting: "a,b" and "" for a quote; no line
 * breaks inside quotes) in place into at most max fields. Returns the number
 * of fields, or -1 with why set.
 */
static int csv_split(char *line, char **fields, int max, char *why, size_t wl)
{
	int n = 0;
	char *p = line;

	for (;;) {
		char *out = p, *start = p;

		if (n == max)
			return snprintf(why, wl, "more than %d columns", max), -1;
		if (*p == '"') {
			p++;
			for (;;) {
				if (*p == '\0')
					return snprintf(why, wl, "unterminated quoted field"), -1;
				if (*p == '"') {
					if (p[1] == '"') {
						*out++ = '"';
						p += 2;
						continue;
					}
					p++;
					break;
				}
				*out++ = *p++;
			}
			if (*p != ',' && *p != '\0')
				return snprintf(why, wl, "text after a closing quote"), -1;
		} else {
			while (*p != ',' && *p != '\0') {
				if (*p == '"')
					return snprintf(why, wl, "quote inside an unquoted field"), -1;
				p++;
			}
			out = p;
		}
		fields[n++] = start;
		if (*p == '\0') {
			*out = '\0';
			break;
		}
		*out = '\0';
		p++;
	}
	/* Trim spaces around each field. */
	for (int i = 0; i < n; i++) {
		char *s = fields[i], *e;

		while (*s == ' ' || *s == '\t')
			s++;
		e = s + strlen(s);
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			*--e = '\0';
		fields[i] = s;
	}
	return n;
}

/* Parse one data line into r. colmap[i] = which schema column field i is.
 * 0 or -1 with why. */
static int csv_row(char *line, const int *colmap, int ncols, struct newrow *r,
		   char *why, size_t wl)
{
	char *fields[ETRNCTL_CSV_COLS];
	const char *v[ETRNCTL_CSV_COLS] = { 0 };
	struct opts o;
	int n = csv_split(line, fields, ncols, why, wl);

	if (n < 0)
		return -1;
	for (int i = 0; i < n; i++)
		v[colmap[i]] = fields[i];
	if (!nz(v[0]))
		return snprintf(why, wl, "no domain"), -1;
	memset(&o, 0, sizeof(o));
	o.queue = v[1];
	o.dest = v[2];
	o.etrn_from = v[3];
	o.owner = v[4];
	o.max_hold = v[5];
	o.quota = v[6];
	o.tls = v[7];
	if (newrow_make(r, v[0], &o, why, wl)) {
		/* "--queue: ..." reads oddly in a CSV report: say the column. */
		char tmp[512];

		if (why[0] == '-' && why[1] == '-') {
			snprintf(tmp, sizeof(tmp), "%s", why + 2);
			for (char *c = tmp; *c && *c != ':'; c++)
				if (*c == '-')
					*c = '_';
			snprintf(why, wl, "%s", tmp);
		}
		return -1;
	}
	return 0;
}

struct import_state {
	struct ctl *x;
	struct newrow *rows;
	int nrows;
	char **users;                 /* sorted, for owner checks */
	size_t nusers;
	size_t imported;
};

static int user_known(const struct import_state *st, const char *u)
{
	return bsearch(&u, st->users, st->nusers, sizeof(*st->users), cmp_str) != NULL;
}

/* Write one batch: read the old queue/owner of every row, then the writes. */
static int import_flush(struct import_state *st)
{
	struct ctl *x = st->x;
	char k[ETRNCTL_KEY_MAX];
	redisReply **old;
	int ncmd = 0, rc;

	if (st->nrows == 0)
		return 0;
	old = calloc((size_t)st->nrows, sizeof(*old));
	if (!old)
		return fail("out of memory");
	for (int i = 0; i < st->nrows; i++)
		redisAppendCommand(x->rc, "HMGET %s %s %s", key(k, x, "domain:", st->rows[i].name),
				   SCHEMA_F_QUEUE, SCHEMA_F_OWNER);
	for (int i = 0; i < st->nrows; i++) {
		if (redisGetReply(x->rc, (void **)&old[i]) != REDIS_OK || !old[i] ||
		    old[i]->type != REDIS_REPLY_ARRAY || old[i]->elements != 2) {
			for (int j = 0; j <= i && j < st->nrows; j++)
				if (old[j])
					freeReplyObject(old[j]);
			free(old);
			return redis_failed(x, NULL, "HMGET");
		}
	}
	for (int i = 0; i < st->nrows; i++) {
		const redisReply *q = old[i]->element[0], *o = old[i]->element[1];

		ncmd += append_row_writes(x, &st->rows[i],
					  q->type == REDIS_REPLY_STRING ? q->str : NULL,
					  o->type == REDIS_REPLY_STRING ? o->str : NULL);
	}
	rc = read_replies(x, ncmd, "import");
	for (int i = 0; i < st->nrows; i++)
		freeReplyObject(old[i]);
	free(old);
	if (rc == 0)
		st->imported += (size_t)st->nrows;
	st->nrows = 0;
	return rc;
}

static void progress(size_t done, size_t total, size_t lines)
{
	int width = 40, fill = total ? (int)((double)done * width / (double)total) : width;

	fprintf(stderr, "\rimport [%.*s%*s] %3d%%  %zu lines", fill,
		"########################################", width - fill, "",
		total ? (int)((double)done * 100 / (double)total) : 100, lines);
}

static int import_csv(struct ctl *x, const char *path)
{
	struct import_state st = { .x = x };
	char *line = NULL, why[512];
	size_t linecap = 0;
	ssize_t got;
	int colmap[ETRNCTL_CSV_COLS], ncols = ETRNCTL_CSV_COLS, rc = 0, tty = isatty(2);
	struct domtab_builder *seen = domtab_builder_new();
	unsigned long lineno = 0;
	size_t nbad = 0, total = 0;
	struct timespec t0, t1;
	FILE *f;
	int saw_data = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	f = fopen(path, "r");
	if (!f)
		return fail("%s: %s", path, strerror(errno));
	if (!seen) {
		fclose(f);
		return fail("out of memory");
	}
	fseek(f, 0, SEEK_END);
	total = (size_t)ftell(f);
	rewind(f);
	st.rows = malloc(ETRNCTL_BATCH * sizeof(*st.rows));
	if (!st.rows || scan_names(x, "user:", &st.users, &st.nusers)) {
		rc = st.rows ? EXIT_FAIL : fail("out of memory");
		goto out;
	}
	for (int i = 0; i < ETRNCTL_CSV_COLS; i++)
		colmap[i] = i;
	while ((got = getline(&line, &linecap, f)) >= 0) {
		size_t n = (size_t)got;
		struct newrow *r;
		const struct domtab_row *dup;
		char *p;

		lineno++;
		if (n > ETRNCTL_CSV_LINE_MAX) {
			fprintf(stderr, "%s%s:%lu: line longer than %d characters; skipped\n",
				tty ? "\r\033[K" : "", path, lineno, ETRNCTL_CSV_LINE_MAX);
			nbad++;
			continue;
		}
		if (memchr(line, '\0', n)) {
			fprintf(stderr, "%s%s:%lu: NUL byte in the line; skipped\n",
				tty ? "\r\033[K" : "", path, lineno);
			nbad++;
			continue;
		}
		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		p = line;
		if (lineno == 1 && !memcmp(p, "\xef\xbb\xbf", 3))
			p += 3; /* UTF-8 byte order mark from spreadsheets */
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0' || *p == '#')
			continue;
		if (!saw_data && !strncasecmp(p, "domain", 6) &&
		    (p[6] == ',' || p[6] == '\0' || p[6] == ' ')) {
			/* A header: it names (and may reorder) the columns. */
			char *fields[ETRNCTL_CSV_COLS];
			int nf = csv_split(p, fields, ETRNCTL_CSV_COLS, why, sizeof(why));

			saw_data = 1;
			if (nf < 0) {
				rc = fail("%s:%lu: header: %s", path, lineno, why);
				goto out;
			}
			for (int i = 0; i < nf; i++) {
				int k;

				for (k = 0; k < ETRNCTL_CSV_COLS; k++)
					if (!strcasecmp(fields[i], csv_cols[k]) ||
					    (k == 3 && !strcasecmp(fields[i], "etrn-from")))
						break;
				if (k == ETRNCTL_CSV_COLS) {
					rc = bad("%s:%lu: unknown column \"%s\" (want %s,%s,%s,%s,%s,%s,%s,%s)",
						 path, lineno, fields[i], csv_cols[0], csv_cols[1],
						 csv_cols[2], csv_cols[3], csv_cols[4], csv_cols[5],
						 csv_cols[6], csv_cols[7]);
					goto out;
				}
				for (int j = 0; j < i; j++)
					if (colmap[j] == k) {
						rc = bad("%s:%lu: column \"%s\" given twice", path, lineno, fields[i]);
						goto out;
					}
				colmap[i] = k;
			}
			if (colmap[0] != 0 && nf > 0) {
				int has = 0;

				for (int i = 0; i < nf; i++)
					has |= colmap[i] == 0;
				if (!has) {
					rc = bad("%s:%lu: no domain column", path, lineno);
					goto out;
				}
			}
			ncols = nf;
			continue;
		}
		saw_data = 1;
		r = &st.rows[st.nrows];
		if (csv_row(p, colmap, ncols, r, why, sizeof(why))) {
			fprintf(stderr, "%s%s:%lu: %s; skipped\n", tty ? "\r\033[K" : "", path, lineno, why);
			nbad++;
			continue;
		}
		if (r->owner && !user_known(&st, r->owner)) {
			fprintf(stderr, "%s%s:%lu: owner: user \"%s\" does not exist; skipped\n",
				tty ? "\r\033[K" : "", path, lineno, r->owner);
			nbad++;
			continue;
		}
		/* The builder serves as a set of names seen, with the line in
		 * quota_bytes, so a repeated domain names its first line. */
		dup = domtab_builder_get(seen, r->name);
		if (dup) {
			fprintf(stderr, "%s%s:%lu: domain %s already on line %llu; skipped\n",
				tty ? "\r\033[K" : "", path, lineno, r->name,
				(unsigned long long)dup->quota_bytes);
			nbad++;
			continue;
		} else {
			struct domtab_row sr = { .name = r->name, .quota_bytes = lineno };

			if (domtab_builder_put(seen, &sr)) {
				rc = fail("out of memory");
				goto out;
			}
		}
		if (++st.nrows == ETRNCTL_BATCH) {
			if ((rc = import_flush(&st)))
				goto out;
			if (tty)
				progress((size_t)ftell(f), total, lineno);
		}
	}
	if (ferror(f)) {
		rc = fail("%s: %s", path, strerror(errno));
		goto out;
	}
	if ((rc = import_flush(&st)))
		goto out;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (tty) {
		progress(total, total, lineno);
		fputc('\n', stderr);
	}
	if (x->json)
		printf("{\"file\":\"%s\",\"imported\":%zu,\"bad_rows\":%zu,\"seconds\":%.3f}\n", path,
		       st.imported, nbad,
		       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	else
		printf("import %s: %zu domain(s) imported, %zu bad row(s) skipped, %.2f s\n", path,
		       st.imported, nbad,
		       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	rc = nbad ? EXIT_FAIL : EXIT_OK;
out:
	fclose(f);
	free(line);
	free(st.rows);
	if (st.users)
		free_names(st.users, st.nusers);
	domtab_builder_free(seen);
	return rc;
}

static void csv_field(const char *s)
{
	if (!s)
		return;
	if (strpbrk(s, ",\"")) {
		putchar('"');
		for (; *s; s++) {
			if (*s == '"')
				putchar('"');
			putchar(*s);
		}
		putchar('"');
	} else {
		fputs(s, stdout);
	}
}

static int export_csv(struct ctl *x)
{
	char **v, k[ETRNCTL_KEY_MAX];
	size_t n;

	if (scan_names(x, "domain:", &v, &n))
		return EXIT_FAIL;
	for (int i = 0; i < ETRNCTL_CSV_COLS; i++)
		printf("%s%s", i ? "," : "", csv_cols[i]);
	putchar('\n');
	for (size_t i = 0; i < n; i += ETRNCTL_BATCH) {
		size_t m = n - i < ETRNCTL_BATCH ? n - i : ETRNCTL_BATCH;

		for (size_t j = 0; j < m; j++)
			redisAppendCommand(x->rc, "HMGET %s %s %s %s %s %s %s %s",
					   key(k, x, "domain:", v[i + j]), csv_cols[1], csv_cols[2],
					   csv_cols[3], csv_cols[4], csv_cols[5], csv_cols[6],
					   csv_cols[7]);
		for (size_t j = 0; j < m; j++) {
			redisReply *r;

			if (redisGetReply(x->rc, (void **)&r) != REDIS_OK || !r ||
			    r->type != REDIS_REPLY_ARRAY) {
				free_names(v, n);
				return redis_failed(x, NULL, "HMGET");
			}
			csv_field(v[i + j]);
			for (size_t c = 0; c < r->elements; c++) {
				putchar(',');
				if (r->element[c]->type == REDIS_REPLY_STRING)
					csv_field(r->element[c]->str);
			}
			putchar('\n');
			freeReplyObject(r);
		}
	}
	free_names(v, n);
	return fflush(stdout) ? fail("stdout: %s", strerror(errno)) : EXIT_OK;
}

/* ---- the daemon's control socket (flush, status) ------------------------ */

#define ETRNCTL_CTL_REPLY_MAX (4u << 20)

/* Send one request line to the running etrnd and print its reply. flush
 * prints the RFC 1985 reply; exit 0 for 2xx, 1 otherwise. */
static int daemon_request(struct ctl *x, const char *sock, const char *verb, const char *arg)
{
	struct sockaddr_un sa;
	char req[512], *reply = NULL;
	size_t n = 0, cap = 0;
	int fd, code = 0;
	struct timeval tv = { ETRNCTL_TIMEOUT_MS / 1000, 0 };

	if (strlen(sock) >= sizeof(sa.sun_path))
		return bad("control_socket %s: path too long", sock);
	snprintf(req, sizeof(req), "%s%s%s\n", verb, arg ? " " : "", arg ? arg : "");
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return fail("%s: %s (is etrnd running with this config?)", sock, strerror(e));
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		close(fd);
		return fail("%s: %s", sock, strerror(errno));
	}
	for (;;) {
		ssize_t r;

		if (n + 4096 > cap) {
			char *p;
			if (cap >= ETRNCTL_CTL_REPLY_MAX)
				break;
			cap = cap ? cap * 2 : 8192;
			p = realloc(reply, cap + 1);
			if (!p)
				break;
			reply = p;
		}
		r = read(fd, reply + n, cap - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (!reply || n == 0) {
		free(reply);
		return fail("%s: no reply from etrnd", sock);
	}
	reply[n] = '\0';
	if (!strcmp(verb, "flush")) {
		char *eol = strpbrk(reply, "\r\n");
		if (eol)
			*eol = '\0';
		code = atoi(reply);
		if (x->json)
			printf("{\"code\":%d,\"reply\":\"%s\"}\n", code, reply);
		else
			printf("%s\n", reply);
		free(reply);
		return code >= 200 && code < 300 ? EXIT_OK : EXIT_FAIL;
	}
	fwrite(reply, 1, n, stdout);
	free(reply);
	return EXIT_OK;
}

/* ---- main --------------------------------------------------------------- */

/* The default config: etc/etrnd.conf here, else next to the binary
 * (build/etrnctl -> etc/etrnd.conf one level up). A relative unix socket path
 * is then relative to that tree, as etrnd (started there) sees it. */
static int load_config(struct config *cfg, const char *path, int explicit_path)
{
	char err[CONFIG_ERR_MAX + PATH_MAX], exe[PATH_MAX], alt[PATH_MAX], root[PATH_MAX];
	ssize_t n;

	root[0] = '\0';
	if (!explicit_path && access(path, R_OK) != 0) {
		n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n > 0) {
			char *slash;

			exe[n] = '\0';
			slash = strrchr(exe, '/');
			if (slash) {
				*slash = '\0';
				if (snprintf(root, sizeof(root), "%s/..", exe) < (int)sizeof(root) &&
				    snprintf(alt, sizeof(alt), "%s/%s", root, ETRNCTL_DEFAULT_CONFIG) <
				    (int)sizeof(alt) && access(alt, R_OK) == 0)
					path = alt;
				else
					root[0] = '\0';
			}
		}
	}
	if (config_load(cfg, path, err, sizeof(err)))
		return bad("%s", err);
	if (cfg->redis.kind == CONFIG_REDIS_NONE)
		return bad("%s: no \"redis = \" line; give --redis URL (like unix:/run/redis/redis.sock)",
			   path);
	if (root[0] && path == alt && cfg->control_socket[0] && cfg->control_socket[0] != '/') {
		char full[2 * PATH_MAX + 2];
		int fl = snprintf(full, sizeof(full), "%s/%s", root, cfg->control_socket);

		if (fl > 0 && (size_t)fl < sizeof(cfg->control_socket))
			memcpy(cfg->control_socket, full, (size_t)fl + 1);
	}
	if (root[0] && path == alt && cfg->redis.kind == CONFIG_REDIS_UNIX &&
	    cfg->redis.path[0] != '/') {
		char full[PATH_MAX + 120];

		snprintf(full, sizeof(full), "%s/%s", root, cfg->redis.path);
		if (strlen(full) < sizeof(cfg->redis.path))
			memcpy(cfg->redis.path, full, strlen(full) + 1);
	}
	return 0;
}

int main(int argc, char **argv)
{
	enum {
		O_REDIS = 256, O_JSON, O_DEST, O_QUEUE, O_ETRN_FROM, O_OWNER, O_MAX_HOLD,
		O_QUOTA, O_TLS, O_PWSTDIN, O_HELP,
	};
	static const struct option lopts[] = {
		{ "redis", required_argument, 0, O_REDIS },
		{ "json", no_argument, 0, O_JSON },
		{ "dest", required_argument, 0, O_DEST },
		{ "queue", required_argument, 0, O_QUEUE },
		{ "etrn-from", required_argument, 0, O_ETRN_FROM },
		{ "owner", required_argument, 0, O_OWNER },
		{ "max-hold", required_argument, 0, O_MAX_HOLD },
		{ "quota", required_argument, 0, O_QUOTA },
		{ "tls", required_argument, 0, O_TLS },
		{ "password-stdin", no_argument, 0, O_PWSTDIN },
		{ "help", no_argument, 0, O_HELP },
		{ 0, 0, 0, 0 },
	};
	struct ctl x;
	struct opts o;
	struct config cfg;
	const char *conf = getenv("ETRND_CONF"), *redis_url = NULL, *what, *verb = "";
	char err[CONFIG_ERR_MAX];
	int opt, conf_given = 0, domain_opts = 0, rc, nargs;
	char **args;

	memset(&x, 0, sizeof(x));
	memset(&o, 0, sizeof(o));
	if (!conf)
		conf = ETRNCTL_DEFAULT_CONFIG;
	else
		conf_given = 1;
	while ((opt = getopt_long(argc, argv, "c:jh", lopts, NULL)) != -1) {
		switch (opt) {
		case 'c': conf = optarg; conf_given = 1; break;
		case O_REDIS: redis_url = optarg; break;
		case 'j': case O_JSON: x.json = 1; break;
		case O_DEST: o.dest = optarg; domain_opts++; break;
		case O_QUEUE: o.queue = optarg; domain_opts++; break;
		case O_ETRN_FROM: o.etrn_from = optarg; domain_opts++; break;
		case O_OWNER: o.owner = optarg; domain_opts++; break;
		case O_MAX_HOLD: o.max_hold = optarg; domain_opts++; break;
		case O_QUOTA: o.quota = optarg; domain_opts++; break;
		case O_TLS: o.tls = optarg; domain_opts++; break;
		case O_PWSTDIN: o.password_stdin = 1; break;
		case 'h': case O_HELP: usage(stdout); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	args = argv + optind;
	nargs = argc - optind;
	if (nargs < 1) {
		usage(stderr);
		return EXIT_USAGE;
	}
	what = args[0];
	if (!strcmp(what, "domain") || !strcmp(what, "queue") || !strcmp(what, "user")) {
		if (nargs < 2)
			return bad("%s: which? (see etrnctl --help)", what), usage(stderr), EXIT_USAGE;
		verb = args[1];
	}
	/* Shape of each command: arguments it takes, options it allows. */
	{
		int want = -1, ok_domain_opts = 0, ok_pw = 0;

		if (!strcmp(what, "domain")) {
			if (!strcmp(verb, "add"))
				want = 3, ok_domain_opts = 1;
			else if (!strcmp(verb, "del") || !strcmp(verb, "show"))
				want = 3;
			else if (!strcmp(verb, "list"))
				want = 2;
		} else if (!strcmp(what, "queue")) {
			if (!strcmp(verb, "list"))
				want = 2;
			else if (!strcmp(verb, "show"))
				want = 3;
		} else if (!strcmp(what, "user")) {
			if (!strcmp(verb, "add") || !strcmp(verb, "passwd"))
				want = 3, ok_pw = 1;
			else if (!strcmp(verb, "del"))
				want = 3;
		} else if (!strcmp(what, "import")) {
			want = 2;
		} else if (!strcmp(what, "export") || !strcmp(what, "status")) {
			want = 1;
		} else if (!strcmp(what, "flush")) {
			want = 2;
		}
		if (want < 0)
			return bad("unknown command \"%s%s%s\" (see etrnctl --help)", what,
				   verb[0] ? " " : "", verb);
		if (nargs != want)
			return bad("%s%s%s: want %d argument(s), got %d (see etrnctl --help)", what,
				   verb[0] ? " " : "", verb, want - (verb[0] ? 2 : 1),
				   nargs - (verb[0] ? 2 : 1));
		if (domain_opts && !ok_domain_opts)
			return bad("--dest, --queue, --etrn-from, --owner, --max-hold, --quota and --tls only go with domain add");
		if (o.password_stdin && !ok_pw)
			return bad("--password-stdin only goes with user add and user passwd");
	}
	config_defaults(&cfg);
	if (redis_url) {
		if (config_redis_parse(&cfg.redis, redis_url, err, sizeof(err))) {
			config_free(&cfg);
			return bad("--redis \"%s\": %s", redis_url, err);
		}
		if (conf_given && (rc = load_config(&cfg, conf, 1)) == EXIT_USAGE) {
			config_free(&cfg);
			return rc;
		}
		if (config_redis_parse(&cfg.redis, redis_url, err, sizeof(err)))
			return bad("--redis: %s", err);
	} else if ((rc = load_config(&cfg, conf, conf_given))) {
		config_free(&cfg);
		return rc;
	}
	snprintf(x.prefix, sizeof(x.prefix), "%s", cfg.redis_prefix);
	snprintf(x.chan, sizeof(x.chan), "%sevents", cfg.redis_prefix);
	if (!strcmp(what, "flush") || !strcmp(what, "status")) {
		char sock[PATH_MAX];

		snprintf(sock, sizeof(sock), "%s", cfg.control_socket);
		if (!sock[0]) {
			config_free(&cfg);
			return fail("no \"control_socket = \" in the etrnd config: cannot reach the daemon");
		}
		if (!strcmp(what, "status")) {
			config_free(&cfg);
			return daemon_request(&x, sock, "status", NULL);
		}
		{
			char norm[DOMTAB_NAME_MAX + 2], why[200];

			/* "#queue" and "@domain" as in ETRN (RFC 1985). */
			const char *dn = args[1][0] == '@' ? args[1] + 1 : args[1];

			if (args[1][0] == '#' ? schema_queue_check(args[1] + 1, why, sizeof(why))
					      : schema_domain_norm(dn, 0, norm, why, sizeof(why))) {
				config_free(&cfg);
				return bad("flush \"%s\": %s", args[1], why);
			}
		}
		x.rc = redis_conn_open(&cfg.redis, ETRNCTL_TIMEOUT_MS, err, sizeof(err));
		config_free(&cfg);
		rc = daemon_request(&x, sock, "flush", args[1]);
		if (x.rc) {
			/* Other nodes hold mail for it too (DESIGN.md 7). */
			char ev[DOMTAB_NAME_MAX + 16];
			redisReply *r;

			snprintf(ev, sizeof(ev), "drain %s", args[1]);
			r = redisCommand(x.rc, "PUBLISH %s %s", x.chan, ev);
			if (!r || r->type == REDIS_REPLY_ERROR)
				rc = rc ? rc : fail("redis: PUBLISH drain failed");
			if (r)
				freeReplyObject(r);
			redisFree(x.rc);
		}
		return rc;
	}
	x.rc = redis_conn_open(&cfg.redis, ETRNCTL_TIMEOUT_MS, err, sizeof(err));
	config_free(&cfg);
	if (!x.rc)
		return fail("%s", err);
	if (!strcmp(what, "domain")) {
		if (!strcmp(verb, "add"))
			rc = domain_add(&x, args[2], &o);
		else if (!strcmp(verb, "del"))
			rc = domain_del(&x, args[2]);
		else if (!strcmp(verb, "show"))
			rc = domain_show(&x, args[2]);
		else
			rc = domain_list(&x);
	} else if (!strcmp(what, "queue")) {
		rc = !strcmp(verb, "list") ? queue_list(&x) : queue_show(&x, args[2]);
	} else if (!strcmp(what, "user")) {
		rc = user_cmd(&x, verb, args[2], &o);
	} else if (!strcmp(what, "import")) {
		rc = import_csv(&x, args[1]);
	} else {
		rc = export_csv(&x);
	}
	redisFree(x.rc);
	if (fflush(stdout))
		rc = fail("stdout: %s", strerror(errno));
	return rc;
}
