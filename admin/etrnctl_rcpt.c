/* SPDX-License-Identifier: MIT */
/*
 * etrnctl_rcpt: recipient sets in Redis (etrnctl_rcpt.h).
 */
#include "admin/etrnctl_rcpt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/etrnctl_say.h"
#include "admin/redis_conn.h"
#include "admin/schema.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/rcptset.h"

#define RCPT_KEY_MAX (CONFIG_REDIS_PREFIX_MAX + 48 + DOMTAB_NAME_MAX)

/* The set's key and its generation counter's. */
struct rcpt_keys {
	char name[DOMTAB_NAME_MAX + 1];
	char set[RCPT_KEY_MAX];
	char gen[RCPT_KEY_MAX];
};

static int rcpt_keys(const struct etrnctl_rcpt *x, const char *domain, struct rcpt_keys *k)
{
	char why[SCHEMA_WHY_MAX];

	if (schema_domain_norm(domain, 1, k->name, why, sizeof(why)))
		return etrnctl_say(ETRNCTL_USAGE, "domain %s", why);
	if (!schema_key(k->set, sizeof(k->set), x->prefix, "rcpts:", k->name) ||
	    !schema_key(k->gen, sizeof(k->gen), x->prefix, "rcpts_gen:", k->name))
		return etrnctl_say(ETRNCTL_USAGE, "domain %s: key too long", k->name);
	return 0;
}

/* in[0..n) as an entry of name's set into out: rcptset_entry_norm() and,
 * for one with a domain, that domain is name (or under it, for a wildcard
 * row "*.parent"). 0 or -1 with *why. */
static int entry_of(const char *name, const char *in, size_t n, char *out, size_t *outn,
		    const char **why)
{
	const char *at, *dom;
	size_t dl, nl = strlen(name);

	if (rcptset_entry_norm(in, n, out, outn, why))
		return -1;
	at = strrchr(out, '@');
	if (!at || at[1] == '\0')
		return 0; /* "user" or the catch-all "@" */
	dom = at + 1;
	dl = strlen(dom);
	if (dl == nl && !memcmp(dom, name, nl))
		return 0;
	if (name[0] == '*' && dl > nl - 1 && !memcmp(dom + dl - (nl - 1), name + 1, nl - 1))
		return 0;
	*why = "an address of another domain (a domain's set holds its own addresses)";
	return -1;
}

static int redis_fail(const struct etrnctl_rcpt *x, redisReply *r, const char *what)
{
	char err[512];

	redis_conn_err(x->rc, r, what, err, sizeof(err));
	if (r)
		freeReplyObject(r);
	return etrnctl_say(ETRNCTL_FAIL, "redis: %s", err);
}

/* Read n replies; the first error is reported. *last gets the last reply
 * (the caller frees it) when last is not NULL. */
static int replies(const struct etrnctl_rcpt *x, int n, const char *what, redisReply **last)
{
	int rc = 0;

	if (last)
		*last = NULL;
	for (int i = 0; i < n; i++) {
		redisReply *r;

		if (redisGetReply(x->rc, (void **)&r) != REDIS_OK || !r)
			return redis_fail(x, NULL, what);
		if (r->type == REDIS_REPLY_ERROR && rc == 0) {
			rc = redis_fail(x, r, what);
		} else if (last && i == n - 1) {
			*last = r;
		} else {
			freeReplyObject(r);
		}
	}
	if (rc && last && *last) {
		freeReplyObject(*last);
		*last = NULL;
	}
	return rc;
}

/* Tell running daemons (admin/control.c: "rcpts <d>"). */
static int announce(const struct etrnctl_rcpt *x, const char *name)
{
	char ev[DOMTAB_NAME_MAX + 8];
	redisReply *r;

	snprintf(ev, sizeof(ev), "rcpts %s", name);
	r = redisCommand(x->rc, "PUBLISH %s %s", x->chan, ev);

	if (!r || r->type == REDIS_REPLY_ERROR)
		return redis_fail(x, r, "PUBLISH");
	freeReplyObject(r);
	return 0;
}

static long long scard(const struct etrnctl_rcpt *x, const struct rcpt_keys *k)
{
	redisReply *r = redisCommand(x->rc, "SCARD %s", k->set);
	long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;

	if (n < 0)
		redis_fail(x, r, "SCARD");
	else
		freeReplyObject(r);
	return n;
}

static int report(const struct etrnctl_rcpt *x, const char *name, const char *what,
		  long long changed, long long now)
{
	if (x->json)
		printf("{\"domain\":\"%s\",\"result\":\"%s\",\"changed\":%lld,\"count\":%lld}\n",
		       name, what, changed, now);
	else
		printf("rcpt %s: %lld %s, %lld recipient(s) now\n", name, changed, what, now);
	return ETRNCTL_OK;
}

/* SADD or SREM of addrs, with the counter bumped, in one MULTI/EXEC. */
static int add_del(const struct etrnctl_rcpt *x, const char *domain, char *const *addrs, int n,
		   const char *verb)
{
	struct rcpt_keys k;
	const char **argv = NULL;
	char (*e)[RCPTSET_ENTRY_MAX + 1] = NULL;
	redisReply *exec = NULL;
	long long changed, now;
	int rc;

	if ((rc = rcpt_keys(x, domain, &k)))
		return rc;
	argv = calloc((size_t)n + 2, sizeof(*argv));
	e = calloc((size_t)n, sizeof(*e));
	if (!argv || !e) {
		rc = etrnctl_say(ETRNCTL_FAIL, "out of memory");
		goto out;
	}
	argv[0] = verb;
	argv[1] = k.set;
	for (int i = 0; i < n; i++) {
		const char *why;
		size_t len;

		if (entry_of(k.name, addrs[i], strlen(addrs[i]), e[i], &len, &why)) {
			rc = etrnctl_say(ETRNCTL_USAGE, "\"%.300s\": %s", addrs[i], why);
			goto out;
		}
		argv[i + 2] = e[i];
	}
	if (redisAppendCommand(x->rc, "MULTI") != REDIS_OK ||
	    redisAppendCommandArgv(x->rc, n + 2, argv, NULL) != REDIS_OK ||
	    redisAppendCommand(x->rc, "INCR %s", k.gen) != REDIS_OK ||
	    redisAppendCommand(x->rc, "EXEC") != REDIS_OK) {
		rc = redis_fail(x, NULL, verb);
		goto out;
	}
	if ((rc = replies(x, 4, verb, &exec)))
		goto out;
	if (!exec || exec->type != REDIS_REPLY_ARRAY || exec->elements != 2 ||
	    exec->element[0]->type != REDIS_REPLY_INTEGER) {
		rc = etrnctl_say(ETRNCTL_FAIL, "redis: %s: %s", verb,
				 exec && exec->type == REDIS_REPLY_ARRAY && exec->elements &&
				 exec->element[0]->type == REDIS_REPLY_ERROR ?
				 exec->element[0]->str : "unexpected reply to EXEC");
		goto out;
	}
	changed = exec->element[0]->integer;
	if ((rc = announce(x, k.name)) || (now = scard(x, &k)) < 0) {
		rc = ETRNCTL_FAIL;
		goto out;
	}
	rc = report(x, k.name, verb[1] == 'A' ? "added" : "removed", changed, now);
out:
	if (exec)
		freeReplyObject(exec);
	free(argv);
	free(e);
	return rc;
}

int etrnctl_rcpt_add(const struct etrnctl_rcpt *x, const char *domain, char *const *addrs, int n)
{
	return add_del(x, domain, addrs, n, "SADD");
}

int etrnctl_rcpt_del(const struct etrnctl_rcpt *x, const char *domain, char *const *addrs, int n)
{
	return add_del(x, domain, addrs, n, "SREM");
}

int etrnctl_rcpt_list(const struct etrnctl_rcpt *x, const char *domain)
{
	struct rcpt_keys k;
	char cursor[32] = "0";
	size_t shown = 0;
	int rc;

	if ((rc = rcpt_keys(x, domain, &k)))
		return rc;
	if (x->json)
		printf("[");
	/* SSCAN: a page at a time, whatever the set's size (no SMEMBERS). */
	do {
		redisReply *r = redisCommand(x->rc, "SSCAN %s %s COUNT 1000", k.set, cursor);

		if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[1]->type != REDIS_REPLY_ARRAY)
			return redis_fail(x, r, "SSCAN");
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		for (size_t i = 0; i < r->element[1]->elements; i++) {
			const redisReply *m = r->element[1]->element[i];

			if (m->type != REDIS_REPLY_STRING)
				continue;
			/* Members are what etrnctl wrote (checked entries),
			 * or hand-written: shown printable either way. */
			if (x->json)
				printf("%s\"", shown ? "," : "");
			for (size_t j = 0; j < m->len; j++) {
				unsigned char c = (unsigned char)m->str[j];

				if (c < 0x20 || c == 0x7f || (x->json && (c == '"' || c == '\\')))
					printf("\\x%02x", c);
				else
					putchar(c);
			}
			printf(x->json ? "\"" : "\n");
			shown++;
		}
		freeReplyObject(r);
	} while (strcmp(cursor, "0"));
	if (x->json)
		printf("]\n");
	return ETRNCTL_OK;
}

/* ---- import ------------------------------------------------------------- */

/* The addresses of a file, checked, NUL-separated in one buffer. */
struct rcpt_file {
	struct buf buf;            /* the entries, each NUL-terminated */
	size_t count;
	unsigned long bad;
};

static int file_keep(struct rcpt_file *f, const char *e, size_t n)
{
	if (buf_append(&f->buf, e, n + 1))
		return -ENOMEM;
	f->count++;
	return 0;
}

/* Read and check every line of fp (shown as path). 0 when all are good,
 * else the exit status (the bad lines reported). */
static int file_read(FILE *fp, const char *path, const char *name, struct rcpt_file *f)
{
	char line[ETRNCTL_RCPT_LINE_MAX + 1];
	unsigned long lineno = 0;

	for (;;) {
		size_t n = 0, en;
		char e[RCPTSET_ENTRY_MAX + 1];
		const char *why = NULL;
		int c = EOF, rc, over = 0;

		/* getc, not fgets: a NUL byte is seen, and a long line costs
		 * no memory. */
		while ((c = getc(fp)) != EOF) {
			if (n < sizeof(line))
				line[n++] = (char)c;
			else
				over = 1;
			if (c == '\n')
				break;
		}
		if (n == 0 && c == EOF)
			break;
		lineno++;
		if (over) {
			why = "line longer than 1024 characters";
			rc = -1;
		} else {
			rc = rcptset_line(line, n, e, &en, &why);
			if (rc == 1 && entry_of(name, e, en, e, &en, &why))
				rc = -1;
		}
		if (rc < 0) {
			if (f->bad++ < ETRNCTL_RCPT_BAD_SHOWN)
				fprintf(stderr, "%s:%lu: %s\n", path, lineno, why);
			continue;
		}
		if (rc == 1 && file_keep(f, e, en))
			return etrnctl_say(ETRNCTL_FAIL, "out of memory after %zu addresses", f->count);
	}
	if (ferror(fp))
		return etrnctl_say(ETRNCTL_FAIL, "%s: %s", path, strerror(errno));
	if (f->bad)
		return etrnctl_say(ETRNCTL_FAIL, "%s: %lu bad line(s)%s; nothing written", path,
				   f->bad, f->bad > ETRNCTL_RCPT_BAD_SHOWN ? " (the first 20 shown)" : "");
	return 0;
}

/* SADD every address of f to key, ETRNCTL_RCPT_BATCH a command, with up
 * to ETRNCTL_RCPT_INFLIGHT commands in flight. *added sums the replies. */
static int file_write(const struct etrnctl_rcpt *x, const struct rcpt_file *f, const char *key,
		      long long *added)
{
	const char *argv[2 + ETRNCTL_RCPT_BATCH];
	size_t off = 0;
	int inflight = 0;

	*added = 0;
	argv[0] = "SADD";
	argv[1] = key;
	while (off < f->buf.len || inflight) {
		redisReply *r;
		int n = 0;

		if (off < f->buf.len && inflight < ETRNCTL_RCPT_INFLIGHT) {
			while (off < f->buf.len && n < ETRNCTL_RCPT_BATCH) {
				argv[2 + n++] = f->buf.data + off;
				off += strlen(f->buf.data + off) + 1;
			}
			if (redisAppendCommandArgv(x->rc, 2 + n, argv, NULL) != REDIS_OK)
				return redis_fail(x, NULL, "SADD");
			inflight++;
			continue;
		}
		if (redisGetReply(x->rc, (void **)&r) != REDIS_OK || !r)
			return redis_fail(x, NULL, "SADD");
		inflight--;
		if (r->type != REDIS_REPLY_INTEGER) {
			/* The rest of the pipeline is read before giving up. */
			while (inflight-- > 0) {
				redisReply *q;

				if (redisGetReply(x->rc, (void **)&q) == REDIS_OK && q)
					freeReplyObject(q);
			}
			return redis_fail(x, r, "SADD");
		}
		*added += r->integer;
		freeReplyObject(r);
	}
	return 0;
}

/* --replace: the new set into a temporary key (same hash tag: same Cluster
 * slot), then RENAME over the set in one MULTI/EXEC with the counter. */
static int import_replace(const struct etrnctl_rcpt *x, const struct rcpt_keys *k,
			  const struct rcpt_file *f, long long *added)
{
	char tmp[RCPT_KEY_MAX];
	redisReply *r;
	int n;

	n = snprintf(tmp, sizeof(tmp), "%srcpts_tmp:{%s}:%ld", x->prefix, k->name, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return etrnctl_say(ETRNCTL_USAGE, "domain %s: key too long", k->name);
	r = redisCommand(x->rc, "DEL %s", tmp);
	if (!r || r->type == REDIS_REPLY_ERROR)
		return redis_fail(x, r, "DEL");
	freeReplyObject(r);
	if (file_write(x, f, tmp, added))
		return ETRNCTL_FAIL;
	/* An etrnctl killed before the RENAME leaves no key for ever. */
	r = redisCommand(x->rc, "EXPIRE %s %d", tmp, ETRNCTL_RCPT_TMP_TTL_S);
	if (!r || r->type == REDIS_REPLY_ERROR)
		return redis_fail(x, r, "EXPIRE");
	freeReplyObject(r);
	if (redisAppendCommand(x->rc, "MULTI") != REDIS_OK ||
	    (f->count ? redisAppendCommand(x->rc, "RENAME %s %s", tmp, k->set)
		      : redisAppendCommand(x->rc, "DEL %s", k->set)) != REDIS_OK ||
	    redisAppendCommand(x->rc, "PERSIST %s", k->set) != REDIS_OK ||
	    redisAppendCommand(x->rc, "INCR %s", k->gen) != REDIS_OK ||
	    redisAppendCommand(x->rc, "EXEC") != REDIS_OK)
		return redis_fail(x, NULL, "RENAME");
	if (replies(x, 5, "RENAME", &r))
		return ETRNCTL_FAIL;
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type == REDIS_REPLY_ERROR) {
		etrnctl_say(ETRNCTL_FAIL, "redis: RENAME: %s",
			    r && r->type == REDIS_REPLY_ARRAY && r->elements ?
			    (r->element[0]->type == REDIS_REPLY_ERROR ? r->element[0]->str : "?") :
			    "transaction refused");
		if (r)
			freeReplyObject(r);
		return ETRNCTL_FAIL;
	}
	freeReplyObject(r);
	return 0;
}

int etrnctl_rcpt_import(const struct etrnctl_rcpt *x, const char *domain, const char *path)
{
	struct rcpt_keys k;
	struct rcpt_file f = { .count = 0 };
	FILE *fp;
	long long added = 0, now;
	redisReply *r;
	int rc;

	if ((rc = rcpt_keys(x, domain, &k)))
		return rc;
	buf_init(&f.buf, 0);
	fp = strcmp(path, "-") ? fopen(path, "r") : stdin;
	if (!fp)
		return etrnctl_say(ETRNCTL_FAIL, "%s: %s", path, strerror(errno));
	rc = file_read(fp, strcmp(path, "-") ? path : "stdin", k.name, &f);
	if (fp != stdin)
		fclose(fp);
	if (rc)
		goto out;
	if (x->replace) {
		rc = import_replace(x, &k, &f, &added);
	} else if (!(rc = file_write(x, &f, k.set, &added))) {
		r = redisCommand(x->rc, "INCR %s", k.gen);
		if (!r || r->type != REDIS_REPLY_INTEGER)
			rc = redis_fail(x, r, "INCR");
		else
			freeReplyObject(r);
	}
	if (rc || (rc = announce(x, k.name)))
		goto out;
	if ((now = scard(x, &k)) < 0) {
		rc = ETRNCTL_FAIL;
		goto out;
	}
	rc = report(x, k.name, x->replace ? "read, the set replaced" : "added", x->replace ?
		    (long long)f.count : added, now);
out:
	buf_free(&f.buf);
	return rc;
}
