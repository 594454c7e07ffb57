/* SPDX-License-Identifier: MIT */
/*
 * authpool: see authpool.h. The verifiers are a core/workpool: a check lives
 * in one of its slots from check() until the asking loop has run its answer.
 * Each verifier's Redis connection and crypt_data are its worker context.
 * The password is wiped as soon as crypt_r has run.
 */
#include "admin/authpool.h"

#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "admin/redis_conn.h"
#include "admin/schema.h"
#include "core/addrlimit.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/now.h"
#include "core/workpool.h"

/* The two hash kinds accepted (etrnctl writes the first, or the second
 * where libcrypt lacks yescrypt); anything else is refused. */
#define AUTHPOOL_KIND_YESCRYPT "$y$"
#define AUTHPOOL_KIND_SHA512 "$6$"
#define AUTHPOOL_KIND_LEN 3
/* Random bytes behind the dummy hash's salt and phrase. */
#define AUTHPOOL_RANDOM_BYTES 16
/* "queue full" is logged at most this often. */
#define AUTHPOOL_FULL_LOG_MS 60000u
#define AUTHPOOL_KEY_MAX (CONFIG_REDIS_PREFIX_MAX + 8 + AUTH_USER_MAX)

struct authpool_req {
	struct workpool_job head;        /* first: the slot's */
	struct authpool *pool;
	uint64_t conn;
	auth_done_fn done;
	void *done_arg;
	enum auth_result result;
	int usable;                      /* a user name and password we can check */
	char client[AUTHPOOL_CLIENT_MAX];
	char user[AUTH_USER_MAX + 1];
	char pass[AUTH_PASS_MAX + 1];    /* wiped once checked */
};

struct authpool_verifier {
	struct authpool *pool;
	redisContext *rc;                /* NULL: not connected */
	uint64_t retry_ms;               /* no connect attempt before this */
	unsigned backoff_ms;
	struct crypt_data *cd;           /* 32 KiB, this thread's alone */
};

struct authpool {
	const struct config *cfg;
	struct auth_backend be;
	struct addrlimit *lim;           /* auth_failure_limit */
	pthread_mutex_t mu;              /* guards warned */
	struct workpool *wp;             /* the verifiers and the slots */
	atomic_int stopping;
	unsigned nv;
	/* What an unknown user's check runs crypt_r against: a yescrypt hash
	 * of random bytes, so it costs what a real user's check costs. */
	char dummy[CRYPT_OUTPUT_SIZE];
	char warned[AUTHPOOL_WARNED_MAX][AUTH_USER_MAX + 1];
	unsigned warned_next;
	atomic_int redis_down;           /* the last state logged */
	_Atomic uint64_t full_logged_ms;
	_Atomic uint64_t n_ok, n_bad, n_temp, n_limited, n_full, n_pending;
};

/* Equal strings, in time that depends only on their lengths (a hash's
 * length is fixed by its kind: no secret). */
static int authpool_hash_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	volatile unsigned char d = 0;

	if (la != lb)
		return 0;
	for (size_t i = 0; i < la; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

static int authpool_hash_usable(const char *h)
{
	return !strncmp(h, AUTHPOOL_KIND_YESCRYPT, AUTHPOOL_KIND_LEN) ||
	       !strncmp(h, AUTHPOOL_KIND_SHA512, AUTHPOOL_KIND_LEN);
}

/* Once per user (the last AUTHPOOL_WARNED_MAX remembered). */
static void authpool_warn_kind(struct authpool *p, const char *user)
{
	int seen = 0;

	pthread_mutex_lock(&p->mu);
	for (unsigned i = 0; i < AUTHPOOL_WARNED_MAX && !seen; i++)
		seen = !strcmp(p->warned[i], user);
	if (!seen) {
		snprintf(p->warned[p->warned_next], sizeof(p->warned[0]), "%s", user);
		p->warned_next = (p->warned_next + 1) % AUTHPOOL_WARNED_MAX;
	}
	pthread_mutex_unlock(&p->mu);
	if (!seen)
		log_warn("auth: user %s: the password hash is not yescrypt ($y$) or SHA-512 ($6$); "
			 "AUTH refused until it is set again (etrnctl user passwd %s)", user, user);
}

static void authpool_went_down(struct authpool *p, const char *why)
{
	if (!atomic_exchange(&p->redis_down, 1))
		log_warn("auth: %s; AUTH answers 454 4.7.0 until Redis is back", why);
}

/* 0 connected; -1 not (in back-off, or the attempt failed: logged once). */
static int authpool_connect(struct authpool_verifier *v)
{
	struct authpool *p = v->pool;
	char err[CONFIG_ERR_MAX];
	uint64_t now = now_mono_ms();

	if (now < v->retry_ms)
		return -1;
	v->rc = redis_conn_open(&p->cfg->redis, AUTHPOOL_REDIS_TIMEOUT_MS, err, sizeof(err));
	if (!v->rc) {
		v->retry_ms = now + v->backoff_ms;
		v->backoff_ms = v->backoff_ms * 2 > AUTHPOOL_BACKOFF_MAX_MS ? AUTHPOOL_BACKOFF_MAX_MS
									 : v->backoff_ms * 2;
		authpool_went_down(p, err);
		return -1;
	}
	v->backoff_ms = AUTHPOOL_BACKOFF_MIN_MS;
	if (atomic_exchange(&p->redis_down, 0))
		log_info("auth: redis %s: connected again", p->cfg->redis.display);
	return 0;
}

/* HGET the password of key (tagged) and of ukey (untagged: readers accept
 * both, admin/schema.h) in one round trip: the tagged reply when it has
 * one, else the untagged. NULL when the connection failed or the server
 * is no master to read (LOADING after a restart, READONLY: failover). */
static redisReply *authpool_hget(redisContext *rc, const char *key, const char *ukey)
{
	redisReply *r = NULL, *u = NULL;

	if (redisAppendCommand(rc, "HGET %s %s", key, SCHEMA_F_PASSWORD) != REDIS_OK ||
	    redisAppendCommand(rc, "HGET %s %s", ukey, SCHEMA_F_PASSWORD) != REDIS_OK ||
	    redisGetReply(rc, (void **)&r) != REDIS_OK || !r ||
	    redisGetReply(rc, (void **)&u) != REDIS_OK || !u ||
	    redis_conn_failover_reply(r) || redis_conn_failover_reply(u))
		goto fail;
	if (r->type == REDIS_REPLY_NIL) {
		freeReplyObject(r);
		return u;
	}
	freeReplyObject(u);
	return r;
fail:
	if (r)
		freeReplyObject(r);
	if (u)
		freeReplyObject(u);
	return NULL;
}

/*
 * user's password hash into hash. 1 found, 0 no such user (or no password
 * field), -1 Redis cannot say (AUTH_TEMP). A connection that fails is
 * replaced once at once: after a Redis restart (or a Sentinel failover) the
 * first command on the old connection fails although a new one would work.
 */
static int authpool_lookup(struct authpool_verifier *v, const char *user, char *hash, size_t len)
{
	struct authpool *p = v->pool;
	char key[AUTHPOOL_KEY_MAX], ukey[AUTHPOOL_KEY_MAX], why[CONFIG_ERR_MAX];
	char err[2 * CONFIG_ERR_MAX];

	if (!schema_key(key, sizeof(key), p->cfg->redis_prefix, "user:", user) ||
	    !schema_key_untagged(ukey, sizeof(ukey), p->cfg->redis_prefix, "user:", user))
		return 0;
	for (int attempt = 0; attempt < 2; attempt++) {
		redisReply *r;
		int rc = -1;

		if (!v->rc && authpool_connect(v))
			return -1;
		r = authpool_hget(v->rc, key, ukey);
		if (r && r->type == REDIS_REPLY_NIL) {
			rc = 0;
		} else if (r && r->type == REDIS_REPLY_STRING) {
			/* Too long for any hash we take: unusable, like $1$. */
			snprintf(hash, len, "%s", r->len < len ? r->str : "");
			rc = 1;
		} else if (r && r->type == REDIS_REPLY_ERROR) {
			/* The connection is fine; the key is not (WRONGTYPE). */
			char shown[LOG_TEXT_MAX];

			log_warn("auth: HGET %s: %s",
				 log_printable(shown, sizeof(shown), key, strlen(key)), r->str);
		}
		if (r) {
			/* Redis answers: another verifier may have seen it go
			 * down; clear that here, or the next outage goes unsaid. */
			if (atomic_exchange(&p->redis_down, 0))
				log_info("auth: redis %s: answering again", p->cfg->redis.display);
			freeReplyObject(r);
			return rc;
		}
		redis_conn_err(v->rc, NULL, "HGET", why, sizeof(why));
		redisFree(v->rc);
		v->rc = NULL;
		v->retry_ms = 0;
		snprintf(err, sizeof(err), "redis %s: %s", p->cfg->redis.display, why);
		authpool_went_down(p, err);
	}
	return -1;
}

/* The answer to q. An unknown user, an unusable hash or input we cannot
 * check costs the same crypt_r as a real check (the dummy hash), so neither
 * the reply nor its time tells which users exist. */
static enum auth_result authpool_verify(struct authpool_verifier *v, struct authpool_req *q)
{
	struct authpool *p = v->pool;
	char hash[CRYPT_OUTPUT_SIZE];
	const char *setting = p->dummy, *out;
	int known = 0, match;

	if (q->usable) {
		int rc = authpool_lookup(v, q->user, hash, sizeof(hash));

		if (rc < 0)
			return AUTH_TEMP;
		if (rc == 1 && authpool_hash_usable(hash)) {
			setting = hash;
			known = 1;
		} else if (rc == 1) {
			authpool_warn_kind(p, q->user);
		}
	}
	out = crypt_r(q->pass, setting, v->cd);
	/* A failed crypt_r returns NULL or a string starting with '*'. */
	match = known && out && out[0] != '*' && authpool_hash_eq(out, hash);
	explicit_bzero(v->cd, sizeof(*v->cd));
	return match ? AUTH_OK : AUTH_BAD;
}

/* On the asking loop's thread: the answer (the slot is free once it
 * returns). */
static void authpool_deliver(struct workpool_job *j)
{
	struct authpool_req *q = (struct authpool_req *)j;
	struct authpool *p = q->pool;
	enum auth_result r = q->result;

	atomic_fetch_sub(&p->n_pending, 1);
	atomic_fetch_add(r == AUTH_OK ? &p->n_ok : r == AUTH_BAD ? &p->n_bad : &p->n_temp, 1);
	q->done(q->done_arg, q->conn, r);
}

/* On a verifier: the check, the password wiped, the address's failure
 * given back unless the password was wrong (only that counts). */
static void authpool_work(void *arg, void *ctx, struct workpool_job *j)
{
	struct authpool *p = arg;
	struct authpool_req *q = (struct authpool_req *)j;

	q->result = authpool_verify(ctx, q);
	explicit_bzero(q->pass, sizeof(q->pass));
	if (q->result != AUTH_BAD)
		addrlimit_give(p->lim, q->client, now_mono_ms());
}

/* A verifier's context: its own crypt_data and Redis connection (made now,
 * so the first AUTH does not wait for it). NULL when out of memory. */
static void *authpool_verifier_start(void *arg)
{
	struct authpool_verifier *v = calloc(1, sizeof(*v));

	if (!v)
		return NULL;
	v->pool = arg;
	v->backoff_ms = AUTHPOOL_BACKOFF_MIN_MS;
	v->cd = calloc(1, sizeof(*v->cd));
	if (!v->cd) {
		free(v);
		return NULL;
	}
	(void)authpool_connect(v);
	return v;
}

static void authpool_verifier_end(void *arg, void *ctx)
{
	struct authpool_verifier *v = ctx;

	(void)arg;
	if (v->rc)
		redisFree(v->rc);
	explicit_bzero(v->cd, sizeof(*v->cd));
	free(v->cd);
	free(v);
}

static void authpool_log_full(struct authpool *p, uint64_t now)
{
	uint64_t last = atomic_load(&p->full_logged_ms);

	if ((last == 0 || now - last >= AUTHPOOL_FULL_LOG_MS) &&
	    atomic_compare_exchange_strong(&p->full_logged_ms, &last, now))
		log_warn("auth: %u checks waiting for the %u verifier(s): AUTH answers 454 4.7.0 "
			 "(raise auth_verifiers?)", AUTHPOOL_QUEUE_MAX, p->nv);
}

/*
 * The limit comes first: an address over it costs no slot, no thread and no
 * Redis. A check reserves one of its address's failures (addrlimit_take) and
 * the verifier gives it back unless the password was wrong, so however many
 * checks one address has in flight at once, at most auth_failure_limit wrong
 * passwords a minute are ever tried.
 */
static int authpool_check(void *arg, struct loop *l, uint64_t conn_handle, const char *client,
			  const char *user, const char *pass, size_t passlen, auth_done_fn done,
			  void *done_arg)
{
	struct authpool *p = arg;
	struct authpool_req *q;
	char why[SCHEMA_WHY_MAX];
	uint64_t now = now_mono_ms();
	size_t ulen = strnlen(user, AUTH_USER_MAX + 1);

	if (!client || strnlen(client, AUTHPOOL_CLIENT_MAX) >= AUTHPOOL_CLIENT_MAX)
		client = "unknown";
	if (!addrlimit_take(p->lim, client, now)) {
		atomic_fetch_add(&p->n_limited, 1);
		return -AUTH_LIMITED;
	}
	q = (struct authpool_req *)workpool_job_get(p->wp);
	if (!q) {
		addrlimit_give(p->lim, client, now);
		atomic_fetch_add(&p->n_full, 1);
		if (!atomic_load(&p->stopping))
			authpool_log_full(p, now);
		return -AUTH_TEMP;
	}
	q->head.l = l;
	q->head.done = authpool_deliver;
	q->pool = p;
	q->conn = conn_handle;
	q->done = done;
	q->done_arg = done_arg;
	snprintf(q->client, sizeof(q->client), "%s", client);
	q->usable = ulen <= AUTH_USER_MAX && passlen <= AUTH_PASS_MAX &&
		    (passlen == 0 || !memchr(pass, '\0', passlen)) &&
		    !schema_user_check(user, why, sizeof(why));
	ulen = ulen <= AUTH_USER_MAX ? ulen : 0;
	memcpy(q->user, user, ulen);
	q->user[ulen] = '\0';
	passlen = q->usable ? passlen : 0;
	if (passlen)
		memcpy(q->pass, pass, passlen);
	q->pass[passlen] = '\0';
	atomic_fetch_add(&p->n_pending, 1);
	workpool_submit(p->wp, &q->head);
	return 0;
}

/* The dummy: yescrypt, or SHA-512 where libcrypt lacks it. */
static int authpool_make_dummy(struct authpool *p, struct crypt_data *cd)
{
	static const char *const kinds[] = { AUTHPOOL_KIND_YESCRYPT, AUTHPOOL_KIND_SHA512 };
	char salt[CRYPT_GENSALT_OUTPUT_SIZE], rnd[AUTHPOOL_RANDOM_BYTES];
	char phrase[2 * AUTHPOOL_RANDOM_BYTES + 1];
	int rc = -1;

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]) && rc; i++) {
		const char *h;

		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			break;
		for (size_t k = 0; k < sizeof(rnd); k++)
			snprintf(phrase + 2 * k, 3, "%02x", (unsigned char)rnd[k]);
		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			break;
		if (!crypt_gensalt_rn(kinds[i], 0, rnd, sizeof(rnd), salt, sizeof(salt)))
			continue;
		h = crypt_r(phrase, salt, cd);
		if (h && h[0] != '*' && strlen(h) < sizeof(p->dummy)) {
			memcpy(p->dummy, h, strlen(h) + 1);
			rc = 0;
		}
	}
	explicit_bzero(cd, sizeof(*cd));
	return rc;
}

/* Allocations and the dummy hash; threads not started. */
static struct authpool *authpool_new(const struct config *cfg, char *err, size_t errlen)
{
	struct authpool *p = calloc(1, sizeof(*p));
	struct crypt_data *cd = calloc(1, sizeof(*cd));

	if (!p || !cd)
		goto nomem;
	p->cfg = cfg;
	p->be = (struct auth_backend){ .check = authpool_check, .arg = p };
	p->nv = cfg->auth_verifiers;
	pthread_mutex_init(&p->mu, NULL);
	p->lim = addrlimit_new("auth_failure_limit", cfg->auth_failure_limit,
			       ADDRLIMIT_ADDRS_DEFAULT);
	if (!p->lim)
		goto nomem;
	if (authpool_make_dummy(p, cd)) {
		snprintf(err, errlen, "auth: crypt(3) makes neither yescrypt nor SHA-512 hashes");
		free(cd);
		return authpool_free(p);
	}
	free(cd);
	return p;
nomem:
	free(cd);
	snprintf(err, errlen, "auth: out of memory");
	return authpool_free(p);
}

struct authpool *authpool_start(const struct config *cfg, char *err, size_t errlen)
{
	struct authpool *p;
	struct workpool_conf wc = {
		.name = "auth",
		.jobs = AUTHPOOL_QUEUE_MAX,
		.job_size = sizeof(struct authpool_req),
		.thread_start = authpool_verifier_start,
		.thread_end = authpool_verifier_end,
		.work = authpool_work,
	};

	if (cfg->redis.kind == CONFIG_REDIS_NONE) {
		snprintf(err, errlen, "auth: no redis configured (the users live there)");
		return NULL;
	}
	p = authpool_new(cfg, err, errlen);
	if (!p)
		return NULL;
	wc.threads = p->nv;
	wc.arg = p;
	p->wp = workpool_start(&wc, err, errlen);
	if (!p->wp)
		return authpool_free(p);
	return p;
}

const struct auth_backend *authpool_backend(struct authpool *p)
{
	return &p->be;
}

void authpool_stop(struct authpool *p)
{
	if (!p)
		return;
	atomic_store(&p->stopping, 1);
	workpool_stop(p->wp);
}

struct authpool *authpool_free(struct authpool *p)
{
	if (!p)
		return NULL;
	authpool_stop(p);
	/* Abandoned checks still hold passwords: workpool_free() wipes its
	 * slots. */
	p->wp = workpool_free(p->wp);
	addrlimit_free(p->lim);
	pthread_mutex_destroy(&p->mu);
	free(p);
	return NULL;
}

void authpool_stats(struct authpool *p, struct authpool_stats *st)
{
	st->ok = atomic_load(&p->n_ok);
	st->bad = atomic_load(&p->n_bad);
	st->temp = atomic_load(&p->n_temp);
	st->limited = atomic_load(&p->n_limited);
	st->full = atomic_load(&p->n_full);
	st->pending = atomic_load(&p->n_pending);
}
