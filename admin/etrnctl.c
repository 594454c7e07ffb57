/* SPDX-License-Identifier: MIT */
/*
 * etrnctl: provision etrnd's customer domains, routes, queues and users in
 * Redis (DESIGN.md section 7, schema in admin/schema.h). Every write also
 * publishes "domain <d>" (or "route <d>", "user <u>") on PREFIX"events", so
 * running daemons follow within a moment. Every argument is validated before anything is written;
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
#include <pwd.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "admin/ctlrow.h"
#include "admin/etrnctl_etrn.h"
#include "admin/etrnctl_node.h"
#include "admin/etrnctl_rcpt.h"
#include "admin/etrnctl_say.h"
#include "admin/etrnctl_keys.h"
#include "admin/etrnctl_top.h"
#include "core/domtab.h"
#include "admin/etrnctl_cluster.h"
#include "admin/redis_conn.h"
#include "admin/schema.h"
#include "core/config.h"

#define ETRNCTL_DEFAULT_CONFIG "etc/etrnd.conf"
#define ETRNCTL_TIMEOUT_MS 10000
#define ETRNCTL_BATCH 1000            /* import: rows per pipelined round trip */
#define ETRNCTL_PASSWORD_MAX 1024
#define ETRNCTL_KEY_MAX ETRNCTL_KEYS_MAX
#define ETRNCTL_SALT_BYTES 16
#define ETRNCTL_QID_DIGITS 14        /* proto/qid.h QID_DIGITS */
#define ETRNCTL_DEST_MAX 256         /* flush --force --to HOST[:PORT] */
#define ETRNCTL_USER_DOMAINS_MAX 64  /* user add --domain, per command */
#define ETRNCTL_CLOCK_STEP_MAX_S (366u * 86400u) /* admin/ctl_requests.c's limit */

enum { EXIT_OK = ETRNCTL_OK, EXIT_FAIL = ETRNCTL_FAIL, EXIT_USAGE = ETRNCTL_USAGE };

struct ctl {
	redisContext *rc;
	const struct config *cfg;       /* while the command runs */
	char prefix[CONFIG_REDIS_PREFIX_MAX + 1];
	char chan[CONFIG_REDIS_PREFIX_MAX + 8];
	int json;
};

/* Options as given: a row's values (domain add) and the others. */
struct opts {
	struct ctlrow_opts row;
	int password_stdin;
	int force;                /* flush --force */
	const char *to;           /* flush --force --to HOST[:PORT] */
	int full;                 /* message show --full */
	int once;                 /* top --once */
	int cluster;              /* status --cluster (etrnctl_cluster.h) */
	const char *top;          /* status --cluster --top N */
	const char *domains[ETRNCTL_USER_DOMAINS_MAX]; /* user add --domain */
	int ndomains;
	int domains_over;         /* more --domain than ETRNCTL_USER_DOMAINS_MAX */
	/* etrn: --atrn, --user, --ca-file, --timeout, --helo (and --tls, the
	 * row's, --password-stdin); etrn_opts counts them. */
	int atrn;
	const char *user, *ca_file, *timeout, *helo;
	int etrn_opts;
	int wait;                 /* node drain --wait */
	int replace;              /* rcpt import --replace */
};

static void usage(FILE *f)
{
	char cols[256];

	fprintf(f,
		"usage: etrnctl [-c FILE | --redis URL] [--sentinels HOST:PORT,... --master-name NAME]\n"
		"               [--json] COMMAND [ARGS]\n"
		"  domain add DOMAIN [--dest HOST[:PORT]|mx] [--queue NAME] [--etrn-from CIDR,...]\n"
		"                    [--owner USER] [--max-hold DURATION] [--quota BYTES] [--tls may|must|verify]\n"
		"                    [--mode hold|deliver] [--rcpt-check on|off]\n"
		"                     mode hold (the default): keep the mail until ETRN, ATRN or\n"
		"                     expiry; mode deliver: send it at once, retried with back-off;\n"
		"                     rcpt-check on: RCPT only for the recipients of rcpt add/import\n"
		"  domain set DOMAIN [the options of domain add]  change only the options given\n"
		"                     (an empty value clears one): domain set D --mode deliver\n"
		"  domain del DOMAIN | domain show DOMAIN | domain list\n"
		"  route add DOMAIN [HOST]:PORT|HOST[:PORT]  send DOMAIN's outbound mail there\n"
		"                     (brackets: that host, no MX look-up; none: HOST's MX),\n"
		"                     before dest, relayhost and MX; *.DOMAIN covers its subdomains\n"
		"  route del DOMAIN | route list\n"
		"  queue list | queue show NAME     named queues (ETRN #queue) in Redis\n"
		"  queue list DOMAIN | mailq [DOMAIN]  mail held by the running daemon: queue id,\n"
		"                     arrival, size, recipients pending, domain, sender;\n"
		"                     QID! is held (quarantined by a content filter)\n"
		"  message show [--full] QID | message delete QID | message bounce QID\n"
		"                     a held message: envelope, recipient states and header (or\n"
		"                     the whole message); delete it (postsuper -d); return it to\n"
		"                     its sender with a DSN\n"
		"  message release QID  let a held (quarantined) message go: the next drain of\n"
		"                     its domain delivers it (postsuper -H)\n"
		"  user add NAME [--domain DOMAIN ...] | user passwd NAME | user del NAME\n"
		"                     [--password-stdin]; --domain: NAME owns DOMAIN (which must\n"
		"                     exist): it may ETRN it from any address after AUTH; user del\n"
		"                     also clears the owner of the domains NAME owns\n"
		"  user show NAME     the domains NAME owns and its hash kind (never the hash)\n"
		"  import FILE.csv    (columns: %s; a header line may reorder them)\n"
		"  export             (CSV on stdout, as import reads it)\n"
		"  flush DOMAIN|@DOMAIN|#QUEUE  ETRN on the operator's behalf: the daemon drains now\n"
		"                     and prints its RFC 1985 reply; other nodes hear it on Redis\n"
		"  flush --force DOMAIN [--to HOST[:PORT]]  drain DOMAIN even when Redis no longer\n"
		"                     has it, to HOST[:PORT] or else its MX (this node only)\n"
		"  status             queue depths per shard and per domain, from the running daemon\n"
		"  status --cluster [--top N]  every node of the cluster from Redis: state (up,\n"
		"                     draining, gone), address, held mail; the top N domains (20)\n"
		"  top [--once]       live view of the running daemon: connections, ingest and drain\n"
		"                     rates, top domains by held mail, drains and ATRN sessions,\n"
		"                     Redis; q or Ctrl-C quits; --once prints one frame and exits\n"
		"  node drain NODE [--wait [--timeout DURATION]]  decommission NODE: it stops\n"
		"                     taking mail, hands what it holds to the other nodes and\n"
		"                     exits; --wait until it is done (default bound 10m)\n"
		"  node forget NODE   drop a node that is gone (its hash expired) from the list\n"
		"  clock step SECONDS  move the daemon's clock forward (only with test_clock = yes:\n"
		"                     tests drive back-off and expiry without waiting)\n"
		"  etrn HOST[:PORT] DOMAIN|@DOMAIN|#QUEUE ... [--tls none|may|must|verify]\n"
		"                     [--ca-file FILE] [--timeout DURATION] [--helo NAME]\n"
		"                     [--user USER --password-stdin]\n"
		"                     this node as the upstream's customer, once: ETRN (RFC 1985)\n"
		"                     to HOST (port 25; its A/AAAA, not its MX), each reply printed\n"
		"                     with its meaning; exit 0 when every reply is 250, 251, 252 or\n"
		"                     253, else 1. --tls: may (default: STARTTLS when offered),\n"
		"                     must, verify (chain and name, against --ca-file or the system\n"
		"                     store); --timeout bounds each connect, read and write (60s);\n"
		"                     AUTH when --user is given and offered (the password is the\n"
		"                     first line of stdin; inside TLS unless --tls none)\n"
		"  etrn --atrn HOST[:PORT] [DOMAIN ...] --user USER --password-stdin [--tls ...]\n"
		"                     ATRN (RFC 2645, port 366): the running etrnd makes the\n"
		"                     connection and serves the reversed session (a one-shot\n"
		"                     activator); etrnctl prints the upstream's reply: exit 0 on 250\n"
		"  activators [NAME]  the daemon's activators (activator.NAME.* in etrnd.conf) and\n"
		"                     one-shot runs: method, host, requests, schedule, state, runs,\n"
		"                     failures, last run, its reply and meaning, next run\n"
		"  activators run NAME  run activator NAME now, as if it were its time\n"
		"  rcpt add DOMAIN ADDR... | rcpt del DOMAIN ADDR... | rcpt list DOMAIN\n"
		"                     DOMAIN's valid recipients (used while its rcpt-check is on):\n"
		"                     user, user@DOMAIN, @DOMAIN (all of it) or @ (catch-all)\n"
		"  rcpt import [--replace] DOMAIN FILE|-  one address a line (# comments); a bad\n"
		"                     line (FILE:LINE: why) writes nothing; --replace swaps the\n"
		"                     whole set at once, else the addresses are added\n"
		"  keys migrate       rename every untagged key (PREFIX domain:NAME) to its hash-tagged\n"
		"                     form (PREFIX domain:{NAME}); one whose tagged twin exists is\n"
		"                     skipped; running daemons reload\n"
		"  -c FILE      etrnd config to take redis, redis_sentinels, redis_master_name and\n"
		"               redis_prefix from (default %s)\n"
		"  --redis URL  unix:/path, host:port or redis://[user:password@]host[:port][/db]\n"
		"  --sentinels HOST[:PORT],...  --master-name NAME  find the master through Sentinel\n"
		"               (--redis then gives only its password and db)\n"
		"  --json       machine-readable output\n"
		"Exit status: 0 done, 1 failed (Redis, not found, bad CSV rows; etrn: a refused\n"
		"connection, TLS or AUTH failure, a 4xx/5xx reply), 2 bad usage or input.\n",
		ctlrow_cols_list(cols, sizeof(cols)), ETRNCTL_DEFAULT_CONFIG);
}

#define bad(...) etrnctl_say(ETRNCTL_USAGE, __VA_ARGS__)
#define fail(...) etrnctl_say(ETRNCTL_FAIL, __VA_ARGS__)

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

/* The untagged twin of key(): deleted where etrnctl writes the tagged key. */
static char *ukey(char *buf, const struct ctl *x, const char *kind, const char *name)
{
	if (!schema_key_untagged(buf, ETRNCTL_KEY_MAX, x->prefix, kind, name))
		buf[0] = '\0';
	return buf;
}

/* The keys to read for names[0..n): tagged when it exists, else untagged.
 * NULL on a Redis failure (reported), else buf[0]. */
static char *rkey_many(struct ctl *x, const char *kind, char *const *names, size_t n,
		       char (*buf)[ETRNCTL_KEY_MAX])
{
	char err[512];

	if (etrnctl_keys_pick(x->rc, x->prefix, kind, (const char *const *)names, n, buf,
			      err, sizeof(err))) {
		fprintf(stderr, "etrnctl: redis: %s\n", err);
		return NULL;
	}
	return buf[0];
}

static char *rkey(char (*buf)[ETRNCTL_KEY_MAX], struct ctl *x, const char *kind,
		  const char *name)
{
	return rkey_many(x, kind, (char *const *)&name, 1, buf);
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

/* Read n pipelined replies; the first error is reported. An error inside
 * EXEC's reply means the transaction's other writes were applied: said so. */
static int read_replies(struct ctl *x, int n, const char *what)
{
	int rc = 0, loose = 0;

	for (int i = 0; i < n; i++) {
		const redisReply *e;
		redisReply *r;

		if (redisGetReply(x->rc, (void **)&r) != REDIS_OK || !r)
			return redis_failed(x, NULL, what);
		/* MULTI refused (an ACL): the queued commands ran one by one. */
		if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "EXEC without MULTI"))
			loose = 1;
		if (r->type == REDIS_REPLY_ERROR && rc == 0) {
			rc = redis_failed(x, r, what);
		} else if ((e = etrnctl_keys_exec_error(r)) && rc == 0) {
			rc = fail("redis: %s: %s (one write of the transaction failed, the "
				  "others were applied: fix the key and run the command again)",
				  what, e->str);
			freeReplyObject(r);
		} else {
			freeReplyObject(r);
		}
	}
	if (loose)
		fail("redis: %s: MULTI was refused, so its writes ran outside a transaction "
		     "and may be applied in part: check, and run it again", what);
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
			const char *nm;
			size_t nl;

			/* Either form (admin/schema.h); the sort below folds twins. */
			if (k->type != REDIS_REPLY_STRING || k->len <= plen ||
			    schema_key_name(k->str + plen, k->len - plen, &nm, &nl) < 0)
				continue;
			if (n == cap) {
				char **nv = realloc(v, (cap = cap ? cap * 2 : 256) * sizeof(*v));

				if (!nv)
					abort();
				v = nv;
			}
			if (!(v[n++] = strndup(nm, nl)))
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

/* Append the writes for one row (old_queue/old_owner: what the row had).
 * Returns the number of commands appended. */
static int append_row_writes(struct ctl *x, const struct ctlrow *r, const char *old_queue,
			     const char *old_owner)
{
	char k[ETRNCTL_KEY_MAX], k2[ETRNCTL_KEY_MAX], f[ETRNCTL_KEY_MAX], ev[DOMTAB_NAME_MAX + 16];
	const char *argv[2 + 2 * CTLROW_COLS];
	int argc = 0, n = 0;

	key(k, x, "domain:", r->name);
	snprintf(f, sizeof(f), "%s%s", SCHEMA_USER_DOMAIN, r->name);
	redisAppendCommand(x->rc, "MULTI");
	/* The whole row is written: its untagged twin just goes. */
	redisAppendCommand(x->rc, "DEL %s %s", k, ukey(k2, x, "domain:", r->name));
	argv[argc++] = "HSET";
	argv[argc++] = k;
	for (int i = 0; i < r->n; i++) {
		argv[argc++] = r->f[i];
		argv[argc++] = r->v[i];
	}
	redisAppendCommandArgv(x->rc, argc, argv, NULL);
	n = 3;
	/* Sets and users are changed in part: an untagged twin is folded
	 * into the tagged key first (etrnctl_keys_adopt). */
	if (old_queue && (!r->queue || strcmp(old_queue, r->queue))) {
		n += etrnctl_keys_adopt(x->rc, x->prefix, "queue:", old_queue);
		redisAppendCommand(x->rc, "SREM %s %s", key(k2, x, "queue:", old_queue), r->name);
		n++;
	}
	if (r->queue) {
		n += etrnctl_keys_adopt(x->rc, x->prefix, "queue:", r->queue);
		redisAppendCommand(x->rc, "SADD %s %s", key(k2, x, "queue:", r->queue), r->name);
		n++;
	}
	if (old_owner && (!r->owner || strcmp(old_owner, r->owner))) {
		n += etrnctl_keys_adopt(x->rc, x->prefix, "user:", old_owner);
		redisAppendCommand(x->rc, "HDEL %s %s", key(k2, x, "user:", old_owner), f);
		n++;
	}
	if (r->owner) {
		n += etrnctl_keys_adopt(x->rc, x->prefix, "user:", r->owner);
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
	char k[ETRNCTL_KEY_MAX], u[ETRNCTL_KEY_MAX];
	redisReply *r = cmd(x, "EXISTS %s %s", key(k, x, "user:", user), ukey(u, x, "user:", user));
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
	char k[1][ETRNCTL_KEY_MAX];
	redisReply *r;
	int exists;

	*q = *o = NULL;
	if (!rkey(k, x, "domain:", name))
		return -1;
	r = cmd(x, "HMGET %s %s %s %s", k[0], SCHEMA_F_QUEUE, SCHEMA_F_OWNER, SCHEMA_F_TLS);
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3)
		return redis_failed(x, r, "HMGET"), -1;
	if (r->element[0]->type == REDIS_REPLY_STRING)
		*q = strdup(r->element[0]->str);
	if (r->element[1]->type == REDIS_REPLY_STRING)
		*o = strdup(r->element[1]->str);
	r = (freeReplyObject(r), cmd(x, "EXISTS %s", k[0]));
	if (!r || r->type != REDIS_REPLY_INTEGER)
		return redis_failed(x, r, "EXISTS"), -1;
	exists = r->integer > 0;
	freeReplyObject(r);
	return exists;
}

/* ---- commands ----------------------------------------------------------- */

/* domain add (must_exist 0) or domain set (1, the row read already). */
static int domain_put(struct ctl *x, const char *domain, const struct ctlrow_opts *o,
		      int must_exist)
{
	struct ctlrow *r = malloc(sizeof(*r));
	char why[512], *oq = NULL, *oo = NULL;
	int rc, existed;

	if (!r)
		return fail("out of memory");
	if (ctlrow_make(r, domain, o, why, sizeof(why))) {
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
	if (existed < 0 || (must_exist && !existed)) {
		free(r);
		free(oq);
		free(oo);
		return existed < 0 ? EXIT_FAIL :
			fail("domain %s: not provisioned (etrnctl domain add %s)", domain, domain);
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

/* HGETALL of domain's row (name: the normalised domain): the reply, with
 * at least one field; or NULL and *rc the exit status (reported). */
static redisReply *row_get(struct ctl *x, const char *domain, char *name, int *rc)
{
	char why[SCHEMA_WHY_MAX], k[1][ETRNCTL_KEY_MAX];
	redisReply *r;

	if (schema_domain_norm(domain, 1, name, why, sizeof(why)))
		return *rc = bad("domain %s", why), NULL;
	if (!rkey(k, x, "domain:", name))
		return *rc = EXIT_FAIL, NULL;
	r = cmd(x, "HGETALL %s", k[0]);
	if (!r || r->type != REDIS_REPLY_ARRAY)
		return *rc = redis_failed(x, r, "HGETALL"), NULL;
	if (r->elements == 0) {
		freeReplyObject(r);
		return *rc = fail("domain %s: not provisioned (etrnctl domain add %s)", name, name),
		       NULL;
	}
	return r;
}

/* Each field of a row (schema.h) and the option of domain add that gives
 * it. */
static const struct { const char *f; size_t off; } row_opts[] = {
	{ SCHEMA_F_QUEUE, offsetof(struct ctlrow_opts, queue) },
	{ SCHEMA_F_DEST, offsetof(struct ctlrow_opts, dest) },
	{ SCHEMA_F_ETRN_FROM, offsetof(struct ctlrow_opts, etrn_from) },
	{ SCHEMA_F_OWNER, offsetof(struct ctlrow_opts, owner) },
	{ SCHEMA_F_MAX_HOLD, offsetof(struct ctlrow_opts, max_hold) },
	{ SCHEMA_F_QUOTA, offsetof(struct ctlrow_opts, quota) },
	{ SCHEMA_F_TLS, offsetof(struct ctlrow_opts, tls) },
	{ SCHEMA_F_MODE, offsetof(struct ctlrow_opts, mode) },
	{ SCHEMA_F_RCPT_CHECK, offsetof(struct ctlrow_opts, rcpt_check) },
};

static const char **row_opt(struct ctlrow_opts *o, size_t i)
{
	return (const char **)((char *)o + row_opts[i].off);
}

/* domain set DOMAIN [options]: the row as stored, with the options given
 * (an empty one clears its field) written over it; the whole row is then
 * checked and written as domain add does. */
static int domain_set(struct ctl *x, const char *domain, const struct ctlrow_opts *given)
{
	char name[DOMTAB_NAME_MAX + 1], why[SCHEMA_WHY_MAX];
	struct ctlrow_opts o = { 0 }, g = *given;
	struct ctlrow *chk = malloc(sizeof(*chk));
	redisReply *r;
	int rc;

	if (!chk)
		return fail("out of memory");
	/* The options alone first: bad input is exit 2 whatever Redis holds. */
	rc = ctlrow_make(chk, domain, given, why, sizeof(why));
	free(chk);
	if (rc)
		return bad("%s", why);
	if (!(r = row_get(x, domain, name, &rc)))
		return rc;
	for (size_t i = 0; i + 1 < r->elements; i += 2)
		for (size_t f = 0; f < sizeof(row_opts) / sizeof(row_opts[0]); f++)
			if (!strcmp(row_opts[f].f, r->element[i]->str) &&
			    r->element[i + 1]->type == REDIS_REPLY_STRING)
				*row_opt(&o, f) = r->element[i + 1]->str;
	for (size_t f = 0; f < sizeof(row_opts) / sizeof(row_opts[0]); f++)
		if (*row_opt(&g, f))
			*row_opt(&o, f) = *row_opt(&g, f);
	rc = domain_put(x, name, &o, 1);
	freeReplyObject(r);
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
	redisAppendCommand(x->rc, "DEL %s %s", key(k, x, "domain:", name), ukey(k2, x, "domain:", name));
	n = 2;
	if (oq) {
		n += etrnctl_keys_adopt(x->rc, x->prefix, "queue:", oq);
		redisAppendCommand(x->rc, "SREM %s %s", key(k2, x, "queue:", oq), name);
		n++;
	}
	if (oo) {
		snprintf(f, sizeof(f), "%s%s", SCHEMA_USER_DOMAIN, name);
		n += etrnctl_keys_adopt(x->rc, x->prefix, "user:", oo);
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
	char name[DOMTAB_NAME_MAX + 1];
	redisReply *r;
	int has_mode = 0, rc;

	if (!(r = row_get(x, domain, name, &rc)))
		return rc;
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
		has_mode |= !strcmp(r->element[i]->str, SCHEMA_F_MODE);
	}
	/* A row without the field holds its mail: say so. */
	if (!has_mode && x->json)
		printf(",\"%s\":\"%s\"", SCHEMA_F_MODE, domtab_mode_name(DOMTAB_MODE_HOLD));
	else if (!has_mode)
		printf("%s: %s\n", SCHEMA_F_MODE, domtab_mode_name(DOMTAB_MODE_HOLD));
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

/* What a route command did, for the operator or --json. */
static void route_report(const struct ctl *x, const char *name, const char *dest,
			 const char *result)
{
	if (x->json) {
		printf("{\"route\":");
		json_str(stdout, name);
		if (dest) {
			printf(",\"dest\":");
			json_str(stdout, dest);
		}
		printf(",\"result\":\"%s\"}\n", result);
	} else {
		printf("route %s%s%s %s\n", name, dest ? " " : "", dest ? dest : "", result);
	}
}

/* route add DOMAIN DEST: PREFIX route:DOMAIN = DEST and "route DOMAIN" on
 * the events channel, in one transaction. */
static int route_add(struct ctl *x, const char *domain, const char *dest)
{
	char name[DOMTAB_NAME_MAX + 1], why[SCHEMA_WHY_MAX], k[ETRNCTL_KEY_MAX], u[ETRNCTL_KEY_MAX];
	char ev[DOMTAB_NAME_MAX + 16];
	redisReply *r;
	int existed, rc;

	if (schema_domain_norm(domain, 1, name, why, sizeof(why)))
		return bad("route add: domain %s", why);
	if (schema_route_check(dest, why, sizeof(why)))
		return bad("route add %s: destination %s", name, why);
	r = cmd(x, "EXISTS %s %s", key(k, x, "route:", name), ukey(u, x, "route:", name));
	if (!r || r->type != REDIS_REPLY_INTEGER)
		return redis_failed(x, r, "EXISTS");
	existed = r->integer > 0;
	freeReplyObject(r);
	snprintf(ev, sizeof(ev), "route %s", name);
	redisAppendCommand(x->rc, "MULTI");
	redisAppendCommand(x->rc, "SET %s %s", k, dest);
	redisAppendCommand(x->rc, "DEL %s", u);
	redisAppendCommand(x->rc, "PUBLISH %s %s", x->chan, ev);
	redisAppendCommand(x->rc, "EXEC");
	rc = read_replies(x, 5, "route add");
	if (rc == 0)
		route_report(x, name, dest, existed ? "updated" : "added");
	return rc;
}

static int route_del(struct ctl *x, const char *domain)
{
	char name[DOMTAB_NAME_MAX + 1], why[SCHEMA_WHY_MAX], k[ETRNCTL_KEY_MAX], u[ETRNCTL_KEY_MAX];
	char ev[DOMTAB_NAME_MAX + 16];
	redisReply *r;
	int gone;

	if (schema_domain_norm(domain, 1, name, why, sizeof(why)))
		return bad("route del: domain %s", why);
	r = cmd(x, "EXISTS %s %s", key(k, x, "route:", name), ukey(u, x, "route:", name));
	if (!r || r->type != REDIS_REPLY_INTEGER)
		return redis_failed(x, r, "EXISTS");
	gone = r->integer > 0;
	freeReplyObject(r);
	if (!gone)
		return fail("route %s: no such route (etrnctl route list)", name);
	/* One transaction, as route add: a refused PUBLISH must not leave the
	 * route deleted with no daemon told. */
	snprintf(ev, sizeof(ev), "route %s", name);
	redisAppendCommand(x->rc, "MULTI");
	redisAppendCommand(x->rc, "DEL %s %s", k, u);
	redisAppendCommand(x->rc, "PUBLISH %s %s", x->chan, ev);
	redisAppendCommand(x->rc, "EXEC");
	if ((gone = read_replies(x, 4, "route del")))
		return gone;
	route_report(x, name, NULL, "deleted");
	return EXIT_OK;
}

/* One line of route list: DOMAIN TAB DEST, and what etrnd makes of a value
 * it would ignore; nothing for a key deleted since the SCAN. */
static int route_list_one(const struct ctl *x, const char *name, const redisReply *r,
			  int first)
{
	char why[SCHEMA_WHY_MAX] = "";
	const char *dest = r->type == REDIS_REPLY_STRING ? r->str : "";

	if (r->type == REDIS_REPLY_NIL)
		return 0;
	if (r->type != REDIS_REPLY_STRING)
		snprintf(why, sizeof(why), "not a string");
	else if (schema_route_check(dest, why, sizeof(why)) == 0)
		why[0] = '\0';
	if (x->json) {
		printf("%s{\"domain\":", first ? "" : ",");
		json_str(stdout, name);
		printf(",\"dest\":");
		json_str(stdout, dest);
		if (why[0]) {
			printf(",\"problem\":");
			json_str(stdout, why);
		}
		putchar('}');
	} else {
		printf("%s\t%s%s%s%s\n", name, dest, why[0] ? "\t(ignored by etrnd: " : "", why,
		       why[0] ? ")" : "");
	}
	return 1;
}

/* One line of queue list: NAME TAB how many domains. */
static int queue_list_one(const struct ctl *x, const char *name, const redisReply *r,
			  int first)
{
	long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;

	if (x->json) {
		printf("%s{\"queue\":", first ? "" : ",");
		json_str(stdout, name);
		printf(",\"domains\":%lld}", n);
	} else {
		printf("%s\t%lld domain(s)\n", name, n);
	}
	return 1;
}

/* Every key PREFIX KIND*, sorted, with the reply to "CMD KEY" (pipelined):
 * each() prints one (returns 1, or 0 when it printed nothing); with --json
 * inside the brackets of one array. */
typedef int (*list_each_fn)(const struct ctl *x, const char *name, const redisReply *r,
			    int first);
static int list_keys(struct ctl *x, const char *kind, const char *cmdname, list_each_fn each)
{
	char **v, (*k)[ETRNCTL_KEY_MAX] = malloc(ETRNCTL_BATCH * sizeof(*k));
	size_t n;
	int rc = EXIT_OK, first = 1;

	if (!k)
		return fail("out of memory");
	if (scan_names(x, kind, &v, &n)) {
		free(k);
		return EXIT_FAIL;
	}
	if (x->json)
		putchar('[');
	/* A batch at a time: which form to read, then the reads. */
	for (size_t b = 0; b < n && rc == EXIT_OK; b += ETRNCTL_BATCH) {
		size_t m = n - b < ETRNCTL_BATCH ? n - b : ETRNCTL_BATCH;

		if (!rkey_many(x, kind, v + b, m, k)) {
			rc = EXIT_FAIL;
			break;
		}
		for (size_t i = 0; i < m; i++)
			redisAppendCommand(x->rc, "%s %s", cmdname, k[i]);
		for (size_t i = 0; i < m; i++) {
			redisReply *r = NULL;

			/* WRONGTYPE is each()'s to show; another error (NOPERM,
			 * OOM, LOADING) fails the listing. */
			if (redisGetReply(x->rc, (void **)&r) != REDIS_OK || !r ||
			    (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "WRONGTYPE", 9))) {
				rc = redis_failed(x, r, cmdname);
				break;
			}
			if (each(x, v[b + i], r, first))
				first = 0;
			freeReplyObject(r);
		}
	}
	free(k);
	if (x->json && rc == EXIT_OK)
		printf("]\n");
	free_names(v, n);
	return rc;
}

static int route_list(struct ctl *x)
{
	return list_keys(x, "route:", "GET", route_list_one);
}

static int queue_list(struct ctl *x)
{
	return list_keys(x, "queue:", "SCARD", queue_list_one);
}

static int queue_show(struct ctl *x, const char *q)
{
	char why[SCHEMA_WHY_MAX], k[1][ETRNCTL_KEY_MAX];
	redisReply *r;
	char **v;

	if (schema_queue_check(q, why, sizeof(why)))
		return bad("%s", why);
	if (!rkey(k, x, "queue:", q))
		return EXIT_FAIL;
	r = cmd(x, "SMEMBERS %s", k[0]);
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

/* The writes of user add, one transaction: the password, and for each
 * domain its row's owner and the user's domain:D field, taken from the
 * previous owner (old[i]) if another. Returns the commands appended. */
static int user_add_writes(struct ctl *x, const char *user, const char *hash,
			   char (*names)[DOMTAB_NAME_MAX + 1], char **old, int nd)
{
	char k[ETRNCTL_KEY_MAX], k2[ETRNCTL_KEY_MAX], f[ETRNCTL_KEY_MAX];
	char ev[DOMTAB_NAME_MAX + SCHEMA_NAME_MAX + 16];
	int n = 0;

	key(k, x, "user:", user);
	redisAppendCommand(x->rc, "MULTI");
	redisAppendCommand(x->rc, "HSETNX %s %s %s", k, SCHEMA_F_PASSWORD, hash);
	n += 2;
	for (int i = 0; i < nd; i++) {
		snprintf(f, sizeof(f), "%s%s", SCHEMA_USER_DOMAIN, names[i]);
		n += etrnctl_keys_adopt(x->rc, x->prefix, "domain:", names[i]);
		redisAppendCommand(x->rc, "HSET %s %s %s", key(k2, x, "domain:", names[i]),
				   SCHEMA_F_OWNER, user);
		redisAppendCommand(x->rc, "HSET %s %s 1", k, f);
		n += 2;
		if (old[i] && strcmp(old[i], user)) {
			n += etrnctl_keys_adopt(x->rc, x->prefix, "user:", old[i]);
			redisAppendCommand(x->rc, "HDEL %s %s", key(k2, x, "user:", old[i]), f);
			n++;
		}
		snprintf(ev, sizeof(ev), "domain %s", names[i]);
		redisAppendCommand(x->rc, "PUBLISH %s %s", x->chan, ev);
		n++;
	}
	snprintf(ev, sizeof(ev), "user %s", user);
	redisAppendCommand(x->rc, "PUBLISH %s %s", x->chan, ev);
	redisAppendCommand(x->rc, "EXEC");
	return n + 2;
}

static void user_add_report(const struct ctl *x, const char *user,
			    char (*names)[DOMTAB_NAME_MAX + 1], int nd)
{
	if (x->json) {
		printf("{\"user\":");
		json_str(stdout, user);
		printf(",\"result\":\"added\",\"domains\":[");
		for (int i = 0; i < nd; i++) {
			if (i)
				putchar(',');
			json_str(stdout, names[i]);
		}
		printf("]}\n");
		return;
	}
	printf("user %s added", user);
	for (int i = 0; i < nd; i++)
		printf("%s%s", i ? " " : ", owns ", names[i]);
	putchar('\n');
}

/* user add NAME [--domain D ...]: every domain must exist before anything is
 * written or a password asked for. */
static int user_add(struct ctl *x, const char *user, const struct opts *o)
{
	char why[SCHEMA_WHY_MAX], pw[ETRNCTL_PASSWORD_MAX], hash[CRYPT_OUTPUT_SIZE];
	char (*names)[DOMTAB_NAME_MAX + 1] = NULL, **old = NULL, *q;
	int nd = o->ndomains, rc = EXIT_FAIL, exists;

	if (schema_user_check(user, why, sizeof(why)))
		return bad("%s", why);
	if (o->domains_over)
		return bad("at most %d --domain in one command", ETRNCTL_USER_DOMAINS_MAX);
	names = calloc((size_t)nd + 1, sizeof(*names));
	old = calloc((size_t)nd + 1, sizeof(*old));
	if (!names || !old) {
		rc = fail("out of memory");
		goto out;
	}
	for (int i = 0; i < nd; i++)
		if (schema_domain_norm(o->domains[i], 1, names[i], why, sizeof(why))) {
			rc = bad("--domain %s", why);
			goto out;
		}
	exists = user_exists(x, user);
	if (exists) {
		if (exists > 0)
			fail("user %s already exists (etrnctl user passwd %s changes the password; "
			     "etrnctl domain add DOMAIN --owner %s gives it a domain)", user, user, user);
		goto out;
	}
	for (int i = 0; i < nd; i++) {
		exists = old_row(x, names[i], &q, &old[i]);
		free(q);
		if (exists == 0)
			fail("--domain %s: no such domain (etrnctl domain add %s first)", names[i],
			     names[i]);
		if (exists <= 0)
			goto out;
	}
	if ((rc = read_password(o, pw, sizeof(pw))))
		goto out;
	rc = hash_password(pw, hash, sizeof(hash));
	explicit_bzero(pw, sizeof(pw));
	if (rc) {
		rc = fail("crypt(3) could not hash the password");
		goto out;
	}
	rc = read_replies(x, user_add_writes(x, user, hash, names, old, nd), "user add");
	if (rc == 0)
		user_add_report(x, user, names, nd);
out:
	for (int i = 0; old && i < nd; i++)
		free(old[i]);
	free(old);
	free(names);
	return rc;
}

/* The kind of a stored hash, in words (the hash itself is never shown). */
static const char *hash_kind(const char *h)
{
	if (!strncmp(h, "$y$", 3))
		return "yescrypt";
	if (!strncmp(h, "$6$", 3))
		return "sha-512";
	return "unusable (not yescrypt or SHA-512: etrnctl user passwd)";
}

/* The owner a domain's row names: "" when none, NULL when no such row or
 * on failure (*err set). strdup'ed. */
static char *row_owner(struct ctl *x, const char *domain, int *err)
{
	char *o = NULL, *q = NULL;
	int exists = old_row(x, domain, &q, &o);

	free(q);
	*err = exists < 0;
	if (exists <= 0) {
		free(o);
		return NULL;
	}
	return o ? o : strdup("");
}

/* One owned domain of user show, with what its row says when it disagrees. */
static int user_show_domain(struct ctl *x, const char *user, const char *d, int first)
{
	int err;
	char *o = row_owner(x, d, &err);
	const char *note = !o ? "no such domain" : strcmp(o, user) ? "row names another owner" : NULL;

	if (err)
		return -1;
	if (x->json) {
		printf("%s{\"domain\":", first ? "" : ",");
		json_str(stdout, d);
		if (note) {
			printf(",\"problem\":");
			json_str(stdout, note);
		}
		putchar('}');
	} else {
		printf("%s%s%s%s", first ? "" : " ", d, note ? " (" : "", note ? note : "");
		if (note)
			putchar(')');
	}
	free(o);
	return 0;
}

static int user_show(struct ctl *x, const char *user)
{
	char why[SCHEMA_WHY_MAX], k[1][ETRNCTL_KEY_MAX];
	const char *pw = NULL;
	redisReply *r;
	size_t plen = strlen(SCHEMA_USER_DOMAIN);
	int first = 1, rc = EXIT_OK;

	if (schema_user_check(user, why, sizeof(why)))
		return bad("%s", why);
	if (!rkey(k, x, "user:", user))
		return EXIT_FAIL;
	r = cmd(x, "HGETALL %s", k[0]);
	if (!r || r->type != REDIS_REPLY_ARRAY)
		return redis_failed(x, r, "HGETALL");
	if (r->elements == 0) {
		freeReplyObject(r);
		return fail("user %s does not exist", user);
	}
	for (size_t i = 0; i + 1 < r->elements; i += 2)
		if (!strcmp(r->element[i]->str, SCHEMA_F_PASSWORD))
			pw = r->element[i + 1]->str;
	if (x->json) {
		printf("{\"user\":");
		json_str(stdout, user);
		printf(",\"password\":");
		json_str(stdout, pw ? hash_kind(pw) : "none");
		printf(",\"domains\":[");
	} else {
		printf("user: %s\npassword: %s\ndomains: ", user, pw ? hash_kind(pw) : "none");
	}
	for (size_t i = 0; i + 1 < r->elements && rc == EXIT_OK; i += 2) {
		if (strncmp(r->element[i]->str, SCHEMA_USER_DOMAIN, plen))
			continue;
		if (user_show_domain(x, user, r->element[i]->str + plen, first))
			rc = EXIT_FAIL;
		first = 0;
	}
	printf(x->json ? "]}\n" : "\n");
	freeReplyObject(r);
	return rc;
}

/* user del: the user's key, and the owner of each domain it owns (the
 * domain:D fields) whose row still names it, in one transaction: a user
 * added later under the same name must not inherit those domains. */
static int user_del(struct ctl *x, const char *user, const char *k, const char *ev)
{
	char k2[ETRNCTL_KEY_MAX], dev[DOMTAB_NAME_MAX + 16];
	size_t plen = strlen(SCHEMA_USER_DOMAIN);
	redisReply *r = cmd(x, "HKEYS %s", k);
	char **owners;
	int n = 0, err = 0;

	if (!r || r->type != REDIS_REPLY_ARRAY)
		return redis_failed(x, r, "HKEYS");
	/* Owners read before MULTI: a command inside it only queues. */
	owners = calloc(r->elements + 1, sizeof(*owners));
	if (!owners) {
		freeReplyObject(r);
		return fail("out of memory");
	}
	for (size_t i = 0; i < r->elements && !err; i++)
		if (!strncmp(r->element[i]->str, SCHEMA_USER_DOMAIN, plen))
			owners[i] = row_owner(x, r->element[i]->str + plen, &err);
	redisAppendCommand(x->rc, "MULTI");
	for (size_t i = 0; i < r->elements && !err; i++) {
		const char *d = r->element[i]->str + plen;

		if (!owners[i] || strcmp(owners[i], user))
			continue;
		n += etrnctl_keys_adopt(x->rc, x->prefix, "domain:", d);
		redisAppendCommand(x->rc, "HDEL %s %s", key(k2, x, "domain:", d), SCHEMA_F_OWNER);
		snprintf(dev, sizeof(dev), "domain %s", d);
		redisAppendCommand(x->rc, "PUBLISH %s %s", x->chan, dev);
		n += 2;
	}
	redisAppendCommand(x->rc, "DEL %s", k);
	redisAppendCommand(x->rc, "PUBLISH %s %s", x->chan, ev);
	redisAppendCommand(x->rc, err ? "DISCARD" : "EXEC");
	for (size_t i = 0; i < r->elements; i++)
		free(owners[i]);
	free(owners);
	freeReplyObject(r);
	n = read_replies(x, n + 4, "user del");
	return err ? EXIT_FAIL : n;
}

static int user_cmd(struct ctl *x, const char *verb, const char *user, const struct opts *o)
{
	char why[SCHEMA_WHY_MAX], k[ETRNCTL_KEY_MAX], pw[ETRNCTL_PASSWORD_MAX], hash[256];
	char ev[SCHEMA_NAME_MAX + 8];
	int exists, rc;

	if (!strcmp(verb, "add"))
		return user_add(x, user, o);
	if (!strcmp(verb, "show"))
		return user_show(x, user);
	if (schema_user_check(user, why, sizeof(why)))
		return bad("%s", why);
	key(k, x, "user:", user);
	exists = user_exists(x, user);
	if (exists < 0)
		return EXIT_FAIL;
	if (!exists)
		return fail("user %s does not exist", user);
	/* del and passwd work on the tagged key: an untagged user becomes it. */
	if (etrnctl_keys_adopt_now(x->rc, x->prefix, "user:", user, why, sizeof(why)))
		return fail("redis: %s", why);
	snprintf(ev, sizeof(ev), "user %s", user);
	if (!strcmp(verb, "del")) {
		rc = user_del(x, user, k, ev);
	} else {
		if ((rc = read_password(o, pw, sizeof(pw))))
			return rc;
		if (hash_password(pw, hash, sizeof(hash))) {
			explicit_bzero(pw, sizeof(pw));
			return fail("crypt(3) could not hash the password");
		}
		explicit_bzero(pw, sizeof(pw));
		/* One transaction: no new password the daemons are not told of. */
		redisAppendCommand(x->rc, "MULTI");
		redisAppendCommand(x->rc, "HSET %s %s %s", k, SCHEMA_F_PASSWORD, hash);
		redisAppendCommand(x->rc, "PUBLISH %s %s", x->chan, ev);
		redisAppendCommand(x->rc, "EXEC");
		rc = read_replies(x, 4, "user passwd");
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

struct import_state {
	struct ctl *x;
	const char *path;
	FILE *f;
	size_t total;                 /* file size, for the progress bar */
	int tty;                      /* stderr is a terminal: show progress */
	struct ctlrow_csv csv;
	struct ctlrow *rows;          /* the batch being built */
	int nrows;
	char **users;                 /* sorted, for owner checks */
	size_t nusers;
	struct domtab_builder *seen;  /* domains so far, with their line */
	unsigned long lineno;
	size_t imported, nbad;
	struct timespec t0;
};

static int user_known(const struct import_state *st, const char *u)
{
	return bsearch(&u, st->users, st->nusers, sizeof(*st->users), cmp_str) != NULL;
}

/* Write one batch: read the old queue/owner of every row, then the writes. */
static int import_flush(struct import_state *st)
{
	struct ctl *x = st->x;
	char (*k)[ETRNCTL_KEY_MAX];
	const char **names;
	redisReply **old;
	int ncmd = 0, rc;

	if (st->nrows == 0)
		return 0;
	old = calloc((size_t)st->nrows, sizeof(*old));
	k = calloc((size_t)st->nrows, sizeof(*k));
	names = calloc((size_t)st->nrows, sizeof(*names));
	for (int i = 0; names && i < st->nrows; i++)
		names[i] = st->rows[i].name;
	if (!old || !k || !names || !rkey_many(x, "domain:", (char *const *)names,
						(size_t)st->nrows, k)) {
		free(old);
		free(k);
		free(names);
		return old && k && names ? EXIT_FAIL : fail("out of memory");
	}
	for (int i = 0; i < st->nrows; i++)
		redisAppendCommand(x->rc, "HMGET %s %s %s", k[i], SCHEMA_F_QUEUE, SCHEMA_F_OWNER);
	free(k);
	free(names);
	for (int i = 0; i < st->nrows; i++) {
		if (redisGetReply(x->rc, (void **)&old[i]) != REDIS_OK || !old[i] ||
		    old[i]->type != REDIS_REPLY_ARRAY || old[i]->elements != 2) {
			rc = redis_failed(x, old[i], "HMGET");
			for (int j = 0; j < i; j++)
				freeReplyObject(old[j]);
			free(old);
			return rc;
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

/* One line that cannot be imported: said on stderr (over the progress bar),
 * counted, and the import goes on. */
static void import_skip(struct import_state *st, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void import_skip(struct import_state *st, const char *fmt, ...)
{
	va_list ap;

	fputs(st->tty ? "\r\033[K" : "", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("; skipped\n", stderr);
	st->nbad++;
}

/* The checks a row needs Redis or the rest of the file for: its owner
 * exists, its domain is not on an earlier line. 1 to import it, 0 when it was
 * skipped, -1 on failure (reported). */
static int import_check_row(struct import_state *st, const struct ctlrow *r)
{
	const struct domtab_row *dup;
	struct domtab_row sr = { .name = r->name, .quota_bytes = st->lineno };

	if (r->owner && !user_known(st, r->owner)) {
		import_skip(st, "%s:%lu: owner: user \"%s\" does not exist", st->path,
			    st->lineno, r->owner);
		return 0;
	}
	/* The builder serves as a set of names seen, with the line in
	 * quota_bytes, so a repeated domain names its first line. */
	dup = domtab_builder_get(st->seen, r->name);
	if (dup) {
		import_skip(st, "%s:%lu: domain %s already on line %llu", st->path, st->lineno,
			    r->name, (unsigned long long)dup->quota_bytes);
		return 0;
	}
	if (domtab_builder_put(st->seen, &sr))
		return fail("out of memory"), -1;
	return 1;
}

/* One line of the file (n bytes from getline). 0, or an exit status that
 * ends the import. */
static int import_line(struct import_state *st, char *line, size_t n)
{
	struct ctlrow *r = &st->rows[st->nrows];
	char err[CONFIG_ERR_MAX + PATH_MAX];
	int rc;

	switch (ctlrow_csv_line(&st->csv, line, n, st->path, st->lineno, r, err, sizeof(err))) {
	case CTLROW_CSV_SKIP:
		return 0;
	case CTLROW_CSV_BAD_ROW:
		import_skip(st, "%s", err);
		return 0;
	case CTLROW_CSV_BAD_FILE:
		return fail("%s", err);
	case CTLROW_CSV_BAD_USAGE:
		return bad("%s", err);
	case CTLROW_CSV_ROW:
		break;
	}
	rc = import_check_row(st, r);
	if (rc <= 0)
		return rc < 0 ? EXIT_FAIL : 0;
	if (++st->nrows == ETRNCTL_BATCH) {
		if ((rc = import_flush(st)))
			return rc;
		if (st->tty)
			progress((size_t)ftell(st->f), st->total, st->lineno);
	}
	return 0;
}

/* Open path and get what the checks need: the file size, the batch, the
 * users that exist. 0, or an exit status (reported); import_close either
 * way. */
static int import_open(struct import_state *st, struct ctl *x, const char *path)
{
	memset(st, 0, sizeof(*st));
	st->x = x;
	st->path = path;
	st->tty = isatty(2);
	ctlrow_csv_init(&st->csv);
	clock_gettime(CLOCK_MONOTONIC, &st->t0);
	st->f = fopen(path, "r");
	if (!st->f)
		return fail("%s: %s", path, strerror(errno));
	st->seen = domtab_builder_new();
	if (!st->seen)
		return fail("out of memory");
	fseek(st->f, 0, SEEK_END);
	st->total = (size_t)ftell(st->f);
	rewind(st->f);
	st->rows = malloc(ETRNCTL_BATCH * sizeof(*st->rows));
	if (!st->rows)
		return fail("out of memory");
	return scan_names(x, "user:", &st->users, &st->nusers) ? EXIT_FAIL : 0;
}

static void import_close(struct import_state *st)
{
	if (st->f)
		fclose(st->f);
	free(st->rows);
	if (st->users)
		free_names(st->users, st->nusers);
	domtab_builder_free(st->seen);
}

/* The summary on stdout; exit 1 when any row was skipped. */
static int import_report(const struct import_state *st)
{
	struct timespec t1;
	double secs;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - st->t0.tv_sec) + (double)(t1.tv_nsec - st->t0.tv_nsec) / 1e9;
	if (st->tty) {
		progress(st->total, st->total, st->lineno);
		fputc('\n', stderr);
	}
	if (st->x->json)
		printf("{\"file\":\"%s\",\"imported\":%zu,\"bad_rows\":%zu,\"seconds\":%.3f}\n",
		       st->path, st->imported, st->nbad, secs);
	else
		printf("import %s: %zu domain(s) imported, %zu bad row(s) skipped, %.2f s\n",
		       st->path, st->imported, st->nbad, secs);
	return st->nbad ? EXIT_FAIL : EXIT_OK;
}

/* Read the file in batches of ETRNCTL_BATCH rows; a bad row is skipped and
 * reported, a bad header or a Redis failure stops the import. */
static int import_csv(struct ctl *x, const char *path)
{
	struct import_state st;
	char *line = NULL;
	size_t linecap = 0;
	ssize_t got;
	int rc = import_open(&st, x, path);

	while (rc == 0 && (got = getline(&line, &linecap, st.f)) >= 0) {
		st.lineno++;
		rc = import_line(&st, line, (size_t)got);
	}
	if (rc == 0 && ferror(st.f))
		rc = fail("%s: %s", st.path, strerror(errno));
	/* Each row is its own transaction: a failure part way leaves the
	 * earlier rows written, and the operator must hear how far it got. */
	if (rc == 0 && (rc = import_flush(&st)) == 0)
		rc = import_report(&st);
	else if (st.f)
		fprintf(stderr, "etrnctl: import %s stopped at line %lu: %zu domain(s) written "
			"before the last batch, which may be written in part (each row whole); "
			"run the import again\n", st.path, st.lineno, st.imported);
	free(line);
	import_close(&st);
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
	char **v, (*k)[ETRNCTL_KEY_MAX] = malloc(ETRNCTL_BATCH * sizeof(*k));
	size_t n;

	if (!k)
		return fail("out of memory");
	if (scan_names(x, "domain:", &v, &n)) {
		free(k);
		return EXIT_FAIL;
	}
	for (int i = 0; i < CTLROW_COLS; i++)
		printf("%s%s", i ? "," : "", ctlrow_cols[i]);
	putchar('\n');
	for (size_t i = 0; i < n; i += ETRNCTL_BATCH) {
		size_t m = n - i < ETRNCTL_BATCH ? n - i : ETRNCTL_BATCH;

		if (!rkey_many(x, "domain:", v + i, m, k)) {
			free(k);
			free_names(v, n);
			return EXIT_FAIL;
		}
		for (size_t j = 0; j < m; j++) {
			const char *argv[1 + CTLROW_COLS];

			argv[0] = "HMGET";
			argv[1] = k[j];
			for (int c = 1; c < CTLROW_COLS; c++)
				argv[1 + c] = ctlrow_cols[c];
			redisAppendCommandArgv(x->rc, 1 + CTLROW_COLS, argv, NULL);
		}
		for (size_t j = 0; j < m; j++) {
			redisReply *r = NULL;

			if (redisGetReply(x->rc, (void **)&r) != REDIS_OK || !r ||
			    r->type != REDIS_REPLY_ARRAY) {
				free(k);
				free_names(v, n);
				return redis_failed(x, r, "HMGET");
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
	free(k);
	free_names(v, n);
	return fflush(stdout) ? fail("stdout: %s", strerror(errno)) : EXIT_OK;
}

/* ---- the daemon's control socket (flush, status) ------------------------ */

#define ETRNCTL_CTL_REPLY_MAX (4u << 20)
#define ETRNCTL_REQ_MAX 1024     /* a request line (the daemon's is 1024) */
#define ETRNCTL_WHO_MAX 128

/* "\tby uid=N(name)": who asks, for the daemon's log. */
static void daemon_who(char *out, size_t cap)
{
	struct passwd *pw = getpwuid(getuid());

	snprintf(out, cap, "\tby uid=%u(%s)", (unsigned)getuid(), pw && pw->pw_name ? pw->pw_name : "?");
}

/* Connect to the daemon's socket and send req: the fd, or -errno (nothing
 * printed). */
static int daemon_dial(const char *sock, const char *req)
{
	struct sockaddr_un sa;
	struct timeval tv = { ETRNCTL_TIMEOUT_MS / 1000, 0 };
	int fd, e;

	if (strlen(sock) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		goto fail;
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		if (errno == 0)
			errno = EPIPE;
		goto fail;
	}
	return fd;
fail:
	e = errno;
	close(fd);
	return -e;
}

/* daemon_dial(), its failure reported: the fd, or -1 (the exit status in
 * *rc). */
static int daemon_connect(const char *sock, const char *req, int *rc)
{
	int fd = daemon_dial(sock, req);

	if (fd == -ENAMETOOLONG)
		return *rc = bad("control_socket %s: path too long", sock), -1;
	if (fd == -ENOENT || fd == -ECONNREFUSED)
		return *rc = fail("%s: %s (is etrnd running with this config?)", sock,
				  strerror(-fd)), -1;
	if (fd < 0)
		return *rc = fail("%s: %s", sock, strerror(-fd)), -1;
	return fd;
}

/* The whole reply (NUL-terminated, *n bytes; the caller frees), or NULL. */
static char *daemon_read(int fd, size_t *n)
{
	char *reply = NULL;
	size_t cap = 0;

	*n = 0;
	for (;;) {
		ssize_t r;

		if (*n + 4096 > cap) {
			char *p;
			if (cap >= ETRNCTL_CTL_REPLY_MAX)
				break;
			cap = cap ? cap * 2 : 8192;
			p = realloc(reply, cap + 1);
			if (!p)
				break;
			reply = p;
		}
		r = read(fd, reply + *n, cap - *n);
		if (r <= 0)
			break;
		*n += (size_t)r;
	}
	if (reply)
		reply[*n] = '\0';
	return reply;
}

/* The daemon's queue listing as a JSON array (lines QID TAB arrival TAB
 * size TAB pending TAB domain TAB <sender>; others, "total" and warnings,
 * dropped). */
static void print_mail_json(char *reply)
{
	int first = 1;

	putchar('[');
	for (char *line = strtok(reply, "\n"); line; line = strtok(NULL, "\n")) {
		char *f[6];
		size_t sl;
		int k = 0;

		for (char *p = line; k < 6 && p; k++) {
			f[k] = p;
			p = strchr(p, '\t');
			if (p)
				*p++ = '\0';
		}
		if (k < 6 || (sl = strlen(f[5])) < 2)
			continue;
		f[5][sl - 1] = '\0'; /* <sender> */
		/* "QID!": held (quarantined), as mailq marks it. */
		size_t ql = strlen(f[0]);
		int held = ql > 0 && f[0][ql - 1] == '!';

		if (held)
			f[0][ql - 1] = '\0';
		printf("%s{\"qid\":", first ? "" : ",");
		json_str(stdout, f[0]);
		printf(",\"arrival\":");
		json_str(stdout, f[1]);
		printf(",\"size\":%s,\"pending\":%s,\"domain\":", f[2], f[3]);
		json_str(stdout, f[4]);
		printf(",\"sender\":");
		json_str(stdout, f[5] + 1);
		if (held) /* only then: older readers see no new key */
			printf(",\"held\":true");
		putchar('}');
		first = 0;
	}
	printf("]\n");
}

static int no_socket(void)
{
	return fail("no \"control_socket = \" in the etrnd config: cannot reach the daemon");
}

/* Send one request line to the running etrnd and print its reply. flush and
 * force print the RFC 1985 reply: exit 0 for 2xx, 1 otherwise; the others
 * exit 1 when the reply has an "error:" line. */
static int daemon_request(struct ctl *x, const char *sock, const char *verb, const char *arg)
{
	char req[ETRNCTL_REQ_MAX], who[ETRNCTL_WHO_MAX], *reply;
	size_t n = 0;
	int fd, code = 0, rc = EXIT_OK;

	if (!sock[0])
		return no_socket();
	daemon_who(who, sizeof(who));
	if ((size_t)snprintf(req, sizeof(req), "%s%s%s%s\n", verb, arg ? " " : "", arg ? arg : "",
			     who) >= sizeof(req))
		return bad("%s: request too long", verb);
	if ((fd = daemon_connect(sock, req, &rc)) < 0)
		return rc;
	reply = daemon_read(fd, &n);
	close(fd);
	if (!reply || n == 0) {
		free(reply);
		return fail("%s: no reply from etrnd", sock);
	}
	if (!strcmp(verb, "flush") || !strcmp(verb, "force")) {
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
	if (!strncmp(reply, "error:", 6) || strstr(reply, "\nerror:"))
		rc = EXIT_FAIL;
	if (rc == EXIT_OK && x->json && !strcmp(verb, "queue"))
		print_mail_json(reply);
	else
		fwrite(reply, 1, n, rc == EXIT_OK ? stdout : stderr);
	free(reply);
	return rc;
}

/* ---- main --------------------------------------------------------------- */

/* The default config: etc/etrnd.conf here, else next to the binary
 * (build/etrnctl -> etc/etrnd.conf one level up). A relative unix socket path
 * is then relative to that tree, as etrnd (started there) sees it. */
static int load_config(struct config *cfg, const char *path, int explicit_path)
{
	char err[CONFIG_ERR_MAX + PATH_MAX], exe[PATH_MAX], alt[PATH_MAX], root[PATH_MAX];
	char alt_where[PATH_MAX + 4];
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
	/* redis_sentinels + redis_master_name (etrnd's config_finish does
	 * the same; the rest of its checks are the daemon's business). */
	snprintf(alt_where, sizeof(alt_where), "%s: ", path);
	if (config_redis_sentinel_finish(&cfg->redis, alt_where, err, sizeof(err)))
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

/* ---- the command table ------------------------------------------------ */

struct ctl_cmd;
typedef int (*ctl_cmd_fn)(struct ctl *x, const struct ctl_cmd *c, char **args,
			  const struct opts *o);

enum {
	CTL_F_ROW_OPTS = 1 << 0,  /* takes --dest, --queue, ... --tls, --mode */
	CTL_F_PASSWORD = 1 << 1,  /* takes --password-stdin */
	CTL_F_DAEMON = 1 << 2,    /* talks to the running etrnd, not only Redis */
	CTL_F_FORCE = 1 << 3,     /* takes --force and --to */
	CTL_F_FULL = 1 << 4,      /* takes --full */
	CTL_F_DOMAINS = 1 << 5,   /* takes --domain (repeated) */
	CTL_F_ETRN = 1 << 6,      /* takes --tls and etrn's options; needs no
	                             config unless --atrn */
	CTL_F_ONCE = 1 << 7,      /* takes --once */
	CTL_F_NODE = 1 << 8,      /* takes --wait and --timeout (node drain) */
	CTL_F_REPLACE = 1 << 9,   /* takes --replace (rcpt import) */
};

/* One command: "name sub ARGS". usage lists its arguments, one word each,
 * so it also says how many it takes. */
struct ctl_cmd {
	const char *name;
	const char *sub;          /* NULL: a one-word command */
	ctl_cmd_fn run;           /* args: the arguments after the words */
	const char *usage;
	unsigned flags;
};

static int cmd_domain_add(struct ctl *x, const struct ctl_cmd *c, char **args,
			  const struct opts *o)
{
	return domain_put(x, args[0], &o->row, 0);
}

static int cmd_domain_set(struct ctl *x, const struct ctl_cmd *c, char **args,
			  const struct opts *o)
{
	return domain_set(x, args[0], &o->row);
}

static int cmd_route(struct ctl *x, const struct ctl_cmd *c, char **args, const struct opts *o)
{
	if (!strcmp(c->sub, "add"))
		return route_add(x, args[0], args[1]);
	if (!strcmp(c->sub, "del"))
		return route_del(x, args[0]);
	return route_list(x);
}

/* clock step SECONDS: whole seconds, checked here and again by the daemon,
 * which refuses unless its config says test_clock = yes. */
static int cmd_clock(struct ctl *x, const struct ctl_cmd *c, char **args,
		     const struct opts *o)
{
	size_t n = strspn(args[0], "0123456789");
	char arg[32];

	if (n == 0 || args[0][n] || n > 9 || strtoul(args[0], NULL, 10) == 0 ||
	    strtoul(args[0], NULL, 10) > ETRNCTL_CLOCK_STEP_MAX_S)
		return bad("clock step \"%s\": want whole seconds from 1 to %u", args[0],
			   ETRNCTL_CLOCK_STEP_MAX_S);
	snprintf(arg, sizeof(arg), "step %s", args[0]);
	return daemon_request(x, x->cfg->control_socket, "clock", arg);
}

static int cmd_domain_del(struct ctl *x, const struct ctl_cmd *c, char **args,
			  const struct opts *o)
{
	return domain_del(x, args[0]);
}

static int cmd_domain_show(struct ctl *x, const struct ctl_cmd *c, char **args,
			   const struct opts *o)
{
	return domain_show(x, args[0]);
}

static int cmd_domain_list(struct ctl *x, const struct ctl_cmd *c, char **args,
			   const struct opts *o)
{
	return domain_list(x);
}

static int cmd_queue_list(struct ctl *x, const struct ctl_cmd *c, char **args,
			  const struct opts *o)
{
	return queue_list(x);
}

static int cmd_queue_show(struct ctl *x, const struct ctl_cmd *c, char **args,
			  const struct opts *o)
{
	return queue_show(x, args[0]);
}

static int cmd_user(struct ctl *x, const struct ctl_cmd *c, char **args, const struct opts *o)
{
	return user_cmd(x, c->sub, args[0], o);
}

static int cmd_import(struct ctl *x, const struct ctl_cmd *c, char **args,
		      const struct opts *o)
{
	return import_csv(x, args[0]);
}

static int cmd_export(struct ctl *x, const struct ctl_cmd *c, char **args,
		      const struct opts *o)
{
	return export_csv(x);
}

static int cmd_status(struct ctl *x, const struct ctl_cmd *c, char **args,
		      const struct opts *o)
{
	if (o->cluster || o->top) {
		char *end;
		unsigned long top = o->top ? strtoul(o->top, &end, 10) : ETRNCTL_CLUSTER_TOP_DEFAULT;

		if (!o->cluster || (o->top && (!o->top[0] || *end || top > UINT_MAX)))
			return bad("--top N (a number) only goes with status --cluster");
		return etrnctl_cluster_status(x->cfg, x->json, (unsigned)top, stdout);
	}
	return daemon_request(x, x->cfg->control_socket, "status", x->json ? "json" : NULL);
}

/* Mail held by the daemon, for one domain or all (args[0] NULL). */
static int cmd_mail_list(struct ctl *x, const struct ctl_cmd *c, char **args,
			 const struct opts *o)
{
	char norm[DOMTAB_NAME_MAX + 2], why[200];

	if (args[0] && schema_domain_norm(args[0], 0, norm, why, sizeof(why)))
		return bad("\"%s\": %s", args[0], why);
	return daemon_request(x, x->cfg->control_socket, "queue", args[0] ? norm : NULL);
}

/* message show|delete|bounce QID: the daemon does it on the owning thread. */
static int cmd_message(struct ctl *x, const struct ctl_cmd *c, char **args,
		       const struct opts *o)
{
	size_t n = strspn(args[0], "0123456789abcdefABCDEF");

	if (n != ETRNCTL_QID_DIGITS || args[0][n])
		return bad("\"%s\": not a queue id (%d hex digits, as logs and etrnctl queue "
			   "list show them)", args[0], ETRNCTL_QID_DIGITS);
	return daemon_request(x, x->cfg->control_socket,
			      !strcmp(c->sub, "show") ? (o->full ? "show-full" : "show") : c->sub,
			      args[0]);
}

/* flush --force DOMAIN [--to HOST[:PORT]]: this node drains it whatever
 * Redis says (mail stranded when its domain was deleted). */
static int cmd_flush_force(struct ctl *x, const char *dom, const struct opts *o)
{
	char norm[DOMTAB_NAME_MAX + 2], why[200], arg[DOMTAB_NAME_MAX + ETRNCTL_DEST_MAX + 2];

	if (schema_domain_norm(dom, 0, norm, why, sizeof(why)))
		return bad("flush --force \"%s\": %s (one domain: not @ or #)", dom, why);
	if (o->to && (!o->to[0] || strlen(o->to) >= ETRNCTL_DEST_MAX || strpbrk(o->to, " \t\r\n")))
		return bad("--to \"%s\": want HOST[:PORT]", o->to);
	snprintf(arg, sizeof(arg), "%s%s%s", norm, o->to ? " " : "", o->to ? o->to : "");
	return daemon_request(x, x->cfg->control_socket, "force", arg);
}

/* keys migrate: every untagged key to its tagged form (etrnctl_keys.h). */
static int cmd_keys_migrate(struct ctl *x, const struct ctl_cmd *c, char **args,
			    const struct opts *o)
{
	char err[512];
	int rc;

	(void)c;
	(void)args;
	(void)o;
	rc = etrnctl_keys_migrate(x->rc, x->prefix, x->chan, x->json, stdout, err, sizeof(err));
	return rc ? fail("redis: %s", err) : EXIT_OK;
}

/* ETRN on the operator's behalf: the local daemon drains and replies; other
 * nodes hold mail for it too (DESIGN.md 7) and hear "drain ARG" on Redis. */
static int cmd_flush(struct ctl *x, const struct ctl_cmd *c, char **args,
		     const struct opts *o)
{
	char norm[DOMTAB_NAME_MAX + 2], why[200], err[CONFIG_ERR_MAX];
	char ev[DOMTAB_NAME_MAX + 16];
	/* "#queue" and "@domain" as in ETRN (RFC 1985). */
	const char *dn = args[0][0] == '@' ? args[0] + 1 : args[0];
	redisReply *r;
	int rc;

	if (o->force)
		return cmd_flush_force(x, args[0], o);
	if (args[0][0] == '#' ? schema_queue_check(args[0] + 1, why, sizeof(why))
			      : schema_domain_norm(dn, 0, norm, why, sizeof(why)))
		return bad("flush \"%s\": %s", args[0], why);
	if (!x->cfg->control_socket[0])
		return no_socket();
	/* Without Redis the local drain still happens. */
	x->rc = redis_conn_open(&x->cfg->redis, ETRNCTL_TIMEOUT_MS, err, sizeof(err));
	rc = daemon_request(x, x->cfg->control_socket, "flush", args[0]);
	if (!x->rc)
		return rc;
	snprintf(ev, sizeof(ev), "drain %s", args[0]);
	r = redisCommand(x->rc, "PUBLISH %s %s", x->chan, ev);
	if (!r || r->type == REDIS_REPLY_ERROR)
		rc = rc ? rc : fail("redis: PUBLISH drain failed");
	if (r)
		freeReplyObject(r);
	redisFree(x->rc);
	x->rc = NULL;
	return rc;
}

/* The daemon's control socket for etrnctl_etrn (--atrn): one request line,
 * its whole reply, or NULL with errno set. */
static char *etrn_ask(const void *arg, const char *line)
{
	char req[ETRNCTL_REQ_MAX], who[ETRNCTL_WHO_MAX], *reply;
	size_t n;
	int fd;

	daemon_who(who, sizeof(who));
	if ((size_t)snprintf(req, sizeof(req), "%s%s\n", line, who) >= sizeof(req)) {
		explicit_bzero(req, sizeof(req));
		errno = EMSGSIZE;
		return NULL;
	}
	fd = daemon_dial(arg, req);
	explicit_bzero(req, sizeof(req));  /* activate's pass= */
	if (fd < 0) {
		errno = -fd;
		return NULL;
	}
	reply = daemon_read(fd, &n);
	close(fd);
	if (reply && n == 0) {
		free(reply);
		reply = NULL;
	}
	if (!reply)
		errno = ECONNRESET;
	return reply;
}

/* top [--once]: the live view (etrnctl_top.h) over the control socket. */
static int cmd_top(struct ctl *x, const struct ctl_cmd *c, char **args, const struct opts *o)
{
	struct etrnctl_top t = { .ask = etrn_ask, .ask_arg = x->cfg->control_socket,
				 .once = o->once };

	if (!x->cfg->control_socket[0])
		return no_socket();
	return etrnctl_top_run(&t);
}

/* etrn HOST[:PORT] NODE... (etrnctl_etrn.h): ETRN here, --atrn through the
 * daemon. The password is stdin's first line, never an argument. */
static int cmd_etrn(struct ctl *x, const struct ctl_cmd *c, char **args, const struct opts *o)
{
	char pw[ETRNCTL_PASSWORD_MAX] = "";
	struct etrnctl_etrn e = {
		.target = args[0], .nodes = args + 1, .tls = o->row.tls, .ca_file = o->ca_file,
		.timeout = o->timeout, .helo = o->helo, .user = o->user,
		.password = o->password_stdin ? pw : NULL, .atrn = o->atrn,
		.control_socket = x->cfg ? x->cfg->control_socket : NULL,
		.ask = etrn_ask, .ask_arg = x->cfg ? x->cfg->control_socket : NULL,
	};
	int rc;

	while (args[1 + e.nnodes])
		e.nnodes++;
	if (x->json)
		return bad("--json does not go with etrn (see etrnctl --help)");
	if ((rc = etrnctl_etrn_check(&e)))
		return rc;
	if (o->password_stdin && (rc = read_password(o, pw, sizeof(pw))))
		return rc;
	rc = etrnctl_etrn_run(&e);
	explicit_bzero(pw, sizeof(pw));
	return rc;
}

/* activators [NAME] | activators run NAME: the daemon's activators. */
static int cmd_activators(struct ctl *x, const struct ctl_cmd *c, char **args,
			  const struct opts *o)
{
	char arg[CONFIG_ACTIVATOR_NAME_MAX + 8];
	const char *name = args[0];

	if (name && (!name[0] || strlen(name) >= CONFIG_ACTIVATOR_NAME_MAX ||
		     name[strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				 "0123456789-_")]))
		return bad("activator \"%s\": want a name (letters, digits, - and _)", name);
	if (!c->sub && name && !strcmp(name, "run"))
		return bad("activators run: which? (want activators run NAME)");
	if (c->sub) {
		snprintf(arg, sizeof(arg), "run %s", name);
		return daemon_request(x, x->cfg->control_socket, "activators", arg);
	}
	snprintf(arg, sizeof(arg), "%s%s%s", x->json ? "json" : "", x->json && name ? " " : "",
		 name ? name : "");
	return daemon_request(x, x->cfg->control_socket, "activators", arg[0] ? arg : NULL);
}

/* node drain NODE [--wait [--timeout D]] | node forget NODE (etrnctl_node.h). */
static int cmd_node(struct ctl *x, const struct ctl_cmd *c, char **args, const struct opts *o)
{
	struct etrnctl_node n = { .rc = x->rc, .prefix = x->prefix, .node = args[0],
				  .wait = o->wait, .timeout = o->timeout };

	return !strcmp(c->sub, "drain") ? etrnctl_node_drain(&n) : etrnctl_node_forget(&n);
}

/* rcpt add|del DOMAIN ADDR... | rcpt list DOMAIN | rcpt import DOMAIN FILE
 * (etrnctl_rcpt.h). */
static int cmd_rcpt(struct ctl *x, const struct ctl_cmd *c, char **args, const struct opts *o)
{
	struct etrnctl_rcpt r = { .rc = x->rc, .prefix = x->prefix, .chan = x->chan,
				  .json = x->json, .replace = o->replace };
	int n = 0;

	while (args[n])
		n++;
	switch (c->sub[0]) {
	case 'a': return etrnctl_rcpt_add(&r, args[0], args + 1, n - 1);
	case 'd': return etrnctl_rcpt_del(&r, args[0], args + 1, n - 1);
	case 'l': return etrnctl_rcpt_list(&r, args[0]);
	default: return etrnctl_rcpt_import(&r, args[0], args[1]);
	}
}

static const struct ctl_cmd ctl_cmds[] = {
	{ "domain", "add", cmd_domain_add, "DOMAIN", CTL_F_ROW_OPTS },
	{ "domain", "set", cmd_domain_set, "DOMAIN", CTL_F_ROW_OPTS },
	{ "domain", "del", cmd_domain_del, "DOMAIN", 0 },
	{ "domain", "show", cmd_domain_show, "DOMAIN", 0 },
	{ "domain", "list", cmd_domain_list, "", 0 },
	{ "queue", "list", cmd_queue_list, "", 0 },
	{ "queue", "list", cmd_mail_list, "DOMAIN", CTL_F_DAEMON },
	{ "mailq", NULL, cmd_mail_list, "[DOMAIN]", CTL_F_DAEMON },
	{ "message", "show", cmd_message, "QID", CTL_F_DAEMON | CTL_F_FULL },
	{ "message", "delete", cmd_message, "QID", CTL_F_DAEMON },
	{ "message", "bounce", cmd_message, "QID", CTL_F_DAEMON },
	{ "message", "release", cmd_message, "QID", CTL_F_DAEMON },
	{ "queue", "show", cmd_queue_show, "NAME", 0 },
	{ "user", "add", cmd_user, "NAME", CTL_F_PASSWORD | CTL_F_DOMAINS },
	{ "user", "show", cmd_user, "NAME", 0 },
	{ "user", "passwd", cmd_user, "NAME", CTL_F_PASSWORD },
	{ "user", "del", cmd_user, "NAME", 0 },
	{ "import", NULL, cmd_import, "FILE.csv", 0 },
	{ "export", NULL, cmd_export, "", 0 },
	{ "flush", NULL, cmd_flush, "DOMAIN|@DOMAIN|#QUEUE", CTL_F_DAEMON | CTL_F_FORCE },
	{ "status", NULL, cmd_status, "", CTL_F_DAEMON },
	{ "top", NULL, cmd_top, "", CTL_F_DAEMON | CTL_F_ONCE },
	{ "route", "add", cmd_route, "DOMAIN DEST", 0 },
	{ "route", "del", cmd_route, "DOMAIN", 0 },
	{ "route", "list", cmd_route, "", 0 },
	{ "clock", "step", cmd_clock, "SECONDS", CTL_F_DAEMON },
	{ "etrn", NULL, cmd_etrn, "HOST[:PORT] [NODE...]",
	  CTL_F_DAEMON | CTL_F_ETRN | CTL_F_PASSWORD },
	{ "activators", NULL, cmd_activators, "[NAME]", CTL_F_DAEMON },
	{ "activators", "run", cmd_activators, "NAME", CTL_F_DAEMON },
	{ "node", "drain", cmd_node, "NODE", CTL_F_NODE },
	{ "node", "forget", cmd_node, "NODE", 0 },
	{ "keys", "migrate", cmd_keys_migrate, "", 0 },
	{ "rcpt", "add", cmd_rcpt, "DOMAIN ADDR...", 0 },
	{ "rcpt", "del", cmd_rcpt, "DOMAIN ADDR...", 0 },
	{ "rcpt", "list", cmd_rcpt, "DOMAIN", 0 },
	{ "rcpt", "import", cmd_rcpt, "DOMAIN FILE", CTL_F_REPLACE },
};
#define CTL_NCMDS (sizeof(ctl_cmds) / sizeof(ctl_cmds[0]))

static int ctl_cmd_nargs(const struct ctl_cmd *c)
{
	int n = 0;

	for (const char *p = c->usage; *p; p++)
		n += (p == c->usage || p[-1] == ' ') && *p != ' ';
	return n;
}

/* 1 when c takes got arguments: its words, or one fewer when the last is
 * "[OPTIONAL]", or more when it is "WORD..." (or "[WORD...]"). */
static int ctl_cmd_fits(const struct ctl_cmd *c, int got)
{
	int want = ctl_cmd_nargs(c);
	const char *last = strrchr(c->usage, ' ');

	last = last ? last + 1 : c->usage;
	if (strstr(last, "..."))
		return got >= want - (last[0] == '[');
	return got == want || (last[0] == '[' && got == want - 1);
}

/* The command args name and check its shape: number of arguments, options
 * it allows (domain_opts: how many row options were given). The command, or
 * NULL with *rc set to the exit status (reported). */
static const struct ctl_cmd *ctl_cmd_find(char **args, int nargs, int domain_opts,
					  const struct opts *o, int *rc)
{
	const char *what = args[0], *verb = "";
	const struct ctl_cmd *c = NULL;
	int words = 1, want;

	for (size_t i = 0; i < CTL_NCMDS; i++) {
		if (strcmp(ctl_cmds[i].name, what))
			continue;
		if (ctl_cmds[i].sub && nargs < 2) {
			*rc = (bad("%s: which? (see etrnctl --help)", what), usage(stderr), EXIT_USAGE);
			return NULL;
		}
		if (ctl_cmds[i].sub) {
			verb = args[1];
			words = 2;
			if (strcmp(ctl_cmds[i].sub, verb))
				continue;
		}
		c = &ctl_cmds[i];
		/* "queue list" and "queue list DOMAIN" are two commands. */
		if (ctl_cmd_fits(c, nargs - words))
			break;
	}
	*rc = EXIT_USAGE;
	if (!c)
		return bad("unknown command \"%s%s%s\" (see etrnctl --help)", what,
			   verb[0] ? " " : "", verb), NULL;
	want = ctl_cmd_nargs(c);
	if (!ctl_cmd_fits(c, nargs - words))
		return bad("%s%s%s: want %d argument(s), got %d (see etrnctl --help)", what,
			   verb[0] ? " " : "", verb, want, nargs - words), NULL;
	if (domain_opts && !(c->flags & CTL_F_ROW_OPTS))
		return bad("--dest, --queue, --etrn-from, --owner, --max-hold, --quota, --mode and --rcpt-check only go with domain add and domain set"), NULL;
	if (o->password_stdin && !(c->flags & CTL_F_PASSWORD))
		return bad("--password-stdin only goes with user add, user passwd and etrn"), NULL;
	if (o->row.tls && !(c->flags & (CTL_F_ROW_OPTS | CTL_F_ETRN)))
		return bad("--tls only goes with domain add, domain set and etrn"), NULL;
	if (o->etrn_opts && !(c->flags & CTL_F_ETRN) &&
	    !((c->flags & CTL_F_NODE) && o->etrn_opts == 1 && o->timeout))
		return bad("--atrn, --user, --ca-file, --timeout and --helo only go with etrn"
			   " (--timeout also with node drain --wait)"), NULL;
	if (o->replace && !(c->flags & CTL_F_REPLACE))
		return bad("--replace only goes with rcpt import"), NULL;
	if (o->wait && !(c->flags & CTL_F_NODE))
		return bad("--wait only goes with node drain"), NULL;
	if ((o->force || o->to) && !(c->flags & CTL_F_FORCE))
		return bad("--force and --to only go with flush"), NULL;
	if (o->to && !o->force)
		return bad("--to only goes with flush --force"), NULL;
	if (o->full && !(c->flags & CTL_F_FULL))
		return bad("--full only goes with message show"), NULL;
	if (o->once && !(c->flags & CTL_F_ONCE))
		return bad("--once only goes with top"), NULL;
	if (o->ndomains && !(c->flags & CTL_F_DOMAINS))
		return bad("--domain only goes with user add (domain add --owner USER for one more)"),
		       NULL;
	*rc = EXIT_OK;
	return c;
}

/* ---- main --------------------------------------------------------------- */

/* What the command line says besides the command. */
struct ctl_args {
	const char *conf, *redis_url;
	const char *sentinels, *master_name;   /* --sentinels, --master-name */
	int conf_given;
	int domain_opts;          /* row options given */
};

/* getopt_long over argv into a, x->json and o. -1 to go on, else the exit
 * status (--help, or a bad option). */
static int ctl_options(int argc, char **argv, struct ctl_args *a, struct ctl *x,
		       struct opts *o)
{
	enum {
		O_REDIS = 256, O_JSON, O_DEST, O_QUEUE, O_ETRN_FROM, O_OWNER, O_MAX_HOLD,
		O_QUOTA, O_TLS, O_PWSTDIN, O_HELP, O_FORCE, O_TO, O_FULL, O_DOMAIN, O_MODE,
		O_ATRN, O_USER, O_CA_FILE, O_TIMEOUT, O_HELO, O_ONCE, O_CLUSTER, O_TOP, O_WAIT, O_SENTINELS, O_MASTER_NAME,
		O_RCPT_CHECK, O_REPLACE,
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
		{ "mode", required_argument, 0, O_MODE },
		{ "rcpt-check", required_argument, 0, O_RCPT_CHECK },
		{ "replace", no_argument, 0, O_REPLACE },
		{ "password-stdin", no_argument, 0, O_PWSTDIN },
		{ "help", no_argument, 0, O_HELP },
		{ "force", no_argument, 0, O_FORCE },
		{ "to", required_argument, 0, O_TO },
		{ "full", no_argument, 0, O_FULL },
		{ "domain", required_argument, 0, O_DOMAIN },
		{ "atrn", no_argument, 0, O_ATRN },
		{ "user", required_argument, 0, O_USER },
		{ "ca-file", required_argument, 0, O_CA_FILE },
		{ "timeout", required_argument, 0, O_TIMEOUT },
		{ "helo", required_argument, 0, O_HELO },
		{ "once", no_argument, 0, O_ONCE },
		{ "wait", no_argument, 0, O_WAIT },
		{ "cluster", no_argument, 0, O_CLUSTER },
		{ "top", required_argument, 0, O_TOP },
		{ "sentinels", required_argument, 0, O_SENTINELS },
		{ "master-name", required_argument, 0, O_MASTER_NAME },
		{ 0, 0, 0, 0 },
	};
	int opt;

	while ((opt = getopt_long(argc, argv, "c:jh", lopts, NULL)) != -1) {
		switch (opt) {
		case 'c': a->conf = optarg; a->conf_given = 1; break;
		case O_REDIS: a->redis_url = optarg; break;
		case O_SENTINELS: a->sentinels = optarg; break;
		case O_MASTER_NAME: a->master_name = optarg; break;
		case 'j': case O_JSON: x->json = 1; break;
		case O_DEST: o->row.dest = optarg; a->domain_opts++; break;
		case O_QUEUE: o->row.queue = optarg; a->domain_opts++; break;
		case O_ETRN_FROM: o->row.etrn_from = optarg; a->domain_opts++; break;
		case O_OWNER: o->row.owner = optarg; a->domain_opts++; break;
		case O_MAX_HOLD: o->row.max_hold = optarg; a->domain_opts++; break;
		case O_QUOTA: o->row.quota = optarg; a->domain_opts++; break;
		case O_TLS: o->row.tls = optarg; break; /* domain add/set, etrn */
		case O_MODE: o->row.mode = optarg; a->domain_opts++; break;
		case O_RCPT_CHECK: o->row.rcpt_check = optarg; a->domain_opts++; break;
		case O_REPLACE: o->replace = 1; break;
		case O_PWSTDIN: o->password_stdin = 1; break;
		case O_FORCE: o->force = 1; break;
		case O_TO: o->to = optarg; break;
		case O_FULL: o->full = 1; break;
		case O_ONCE: o->once = 1; break;
		case O_WAIT: o->wait = 1; break;
		case O_CLUSTER: o->cluster = 1; break;
		case O_TOP: o->top = optarg; break;
		case O_ATRN: o->atrn = 1; o->etrn_opts++; break;
		case O_USER: o->user = optarg; o->etrn_opts++; break;
		case O_CA_FILE: o->ca_file = optarg; o->etrn_opts++; break;
		case O_TIMEOUT: o->timeout = optarg; o->etrn_opts++; break;
		case O_HELO: o->helo = optarg; o->etrn_opts++; break;
		case O_DOMAIN:
			if (o->ndomains < ETRNCTL_USER_DOMAINS_MAX)
				o->domains[o->ndomains++] = optarg;
			else
				o->domains_over = 1;
			break;
		case 'h': case O_HELP: usage(stdout); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	return -1;
}

/* --sentinels and --master-name over whatever the file said, then the
 * pair checked. 0, or -1 with err. */
static int ctl_sentinels(struct config *cfg, const struct ctl_args *a, char *err, size_t errlen)
{
	if (a->sentinels &&
	    config_set(cfg, "redis_sentinels", a->sentinels, "--sentinels", err, errlen))
		return -1;
	if (a->master_name &&
	    config_set(cfg, "redis_master_name", a->master_name, "--master-name", err, errlen))
		return -1;
	return config_redis_sentinel_finish(&cfg->redis, "", err, errlen);
}

/* cfg from --redis, --sentinels and/or the config file. 0 or the exit
 * status (reported; cfg freed). */
static int ctl_config(struct config *cfg, const struct ctl_args *a)
{
	char err[CONFIG_ERR_MAX];
	int rc;

	config_defaults(cfg);
	if (!a->redis_url && !a->sentinels) {
		if ((rc = load_config(cfg, a->conf, a->conf_given)))
			config_free(cfg);
		else if (a->master_name && ctl_sentinels(cfg, a, err, sizeof(err)))
			rc = (config_free(cfg), bad("%s", err));
		return rc;
	}
	if (a->redis_url && config_redis_parse(&cfg->redis, a->redis_url, err, sizeof(err))) {
		config_free(cfg);
		return bad("--redis \"%s\": %s", a->redis_url, err);
	}
	if (a->conf_given && (rc = load_config(cfg, a->conf, 1)) == EXIT_USAGE) {
		config_free(cfg);
		return rc;
	}
	/* --redis wins over the file's redis and Sentinel lines (with
	 * --sentinels it gives the master's password and db). */
	if (a->redis_url && config_redis_parse(&cfg->redis, a->redis_url, err, sizeof(err))) {
		config_free(cfg);
		return bad("--redis: %s", err);
	}
	if (ctl_sentinels(cfg, a, err, sizeof(err))) {
		config_free(cfg);
		return bad("%s", err);
	}
	return 0;
}

/* Run c with Redis (or, for the daemon's commands, the control socket). */
static int ctl_run(struct ctl *x, const struct ctl_cmd *c, char **args, const struct opts *o)
{
	char err[CONFIG_ERR_MAX];
	int rc;

	/* The command checks its arguments first (bad input is exit 2 even
	 * without a daemon); daemon_request() then needs the socket. */
	if (c->flags & CTL_F_DAEMON)
		return c->run(x, c, args, o);
	x->rc = redis_conn_open(&x->cfg->redis, ETRNCTL_TIMEOUT_MS, err, sizeof(err));
	if (!x->rc)
		return fail("%s", err);
	rc = c->run(x, c, args, o);
	redisFree(x->rc);
	x->rc = NULL;
	if (fflush(stdout))
		rc = fail("stdout: %s", strerror(errno));
	return rc;
}

int main(int argc, char **argv)
{
	struct ctl_args a = { .conf = getenv("ETRND_CONF") };
	const struct ctl_cmd *c;
	struct ctl x;
	struct opts o;
	struct config cfg;
	int rc;

	memset(&x, 0, sizeof(x));
	memset(&o, 0, sizeof(o));
	a.conf_given = a.conf != NULL;
	if (!a.conf)
		a.conf = ETRNCTL_DEFAULT_CONFIG;
	if ((rc = ctl_options(argc, argv, &a, &x, &o)) >= 0)
		return rc;
	if (argc - optind < 1) {
		usage(stderr);
		return EXIT_USAGE;
	}
	c = ctl_cmd_find(argv + optind, argc - optind, a.domain_opts, &o, &rc);
	if (!c)
		return rc;
	/* etrn talks to the upstream itself: no config (unless --atrn, which
	 * needs the daemon's control socket). */
	if ((c->flags & CTL_F_ETRN) && !o.atrn)
		return c->run(&x, c, argv + optind + 1, &o);
	if ((rc = ctl_config(&cfg, &a)))
		return rc;
	snprintf(x.prefix, sizeof(x.prefix), "%s", cfg.redis_prefix);
	snprintf(x.chan, sizeof(x.chan), "%sevents", cfg.redis_prefix);
	x.cfg = &cfg;
	rc = ctl_run(&x, c, argv + optind + (c->sub ? 2 : 1), &o);
	config_free(&cfg);
	return rc;
}
