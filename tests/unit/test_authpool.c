/* SPDX-License-Identifier: MIT */
/* Tests for admin/authpool.c against a real redis-server (started by each
 * test on a unix socket in a temporary directory, stopped by PID) and real
 * loops running on their own threads: the answers for every kind of user,
 * hash and input; Redis going away and coming back; the full queue; the
 * per-address failure limit; answers on the loop that asked; a stop with
 * checks in flight. Prints the checks per second of one verifier thread. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "admin/authpool.h"
#include "core/config.h"
#include "core/loop.h"
#include "core/now.h"

#define FX_LOOPS 2
#define FX_WAIT_MS 60000        /* generous: a loaded 2-core machine */
#define FX_REDIS_START_MS 10000
#define FX_ASKS_MAX 512

struct fx;

/* One check asked: where it should be answered, and what came. */
struct ask {
	struct fx *fx;
	unsigned loop;
	int answered;
	enum auth_result got;
	pthread_t on;
};

struct fx {
	char dir[64], sock[128];
	pid_t redis;
	struct config cfg;
	struct loop *l[FX_LOOPS];
	pthread_t lt[FX_LOOPS];
	int running[FX_LOOPS];
	struct authpool *p;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned answered;
	struct ask asks[FX_ASKS_MAX];
	unsigned nasks;
};

static void *no_open(void *a, struct conn *c, const char *peer)
{
	(void)a; (void)c; (void)peer;
	return NULL;
}
static size_t no_data(void *a, struct conn *c, void *s, const char *p, size_t n)
{
	(void)a; (void)c; (void)s; (void)p;
	return n;
}
static void no_cb(void *a, struct conn *c, void *s)
{
	(void)a; (void)c; (void)s;
}
static const struct conn_ops no_ops = {
	.open = no_open, .data = no_data, .timeout = no_cb, .shutdown = no_cb, .close = no_cb,
};

static void redis_start(struct fx *fx)
{
	uint64_t until = now_mono_ms() + FX_REDIS_START_MS;

	fx->redis = fork();
	cr_assert_geq(fx->redis, 0);
	if (fx->redis == 0) {
		if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
			_exit(127);
		execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", fx->sock,
		       "--save", "", "--appendonly", "no", "--dir", fx->dir, (char *)NULL);
		_exit(127);
	}
	for (;;) {
		redisContext *c = redisConnectUnix(fx->sock);
		int ok = c && !c->err;

		if (c)
			redisFree(c);
		if (ok)
			return;
		cr_assert_lt(now_mono_ms(), until, "redis-server did not start");
		usleep(20000);
	}
}

static void redis_stop(struct fx *fx)
{
	if (fx->redis <= 0)
		return;
	kill(fx->redis, SIGTERM);
	waitpid(fx->redis, NULL, 0);
	fx->redis = 0;
	unlink(fx->sock);
}

/* HSET PREFIX"user:"name password hash, through a connection of our own. */
static void put_user(struct fx *fx, const char *name, const char *hash)
{
	redisContext *c = redisConnectUnix(fx->sock);
	redisReply *r;

	cr_assert(c && !c->err);
	r = redisCommand(c, "HSET etrnd:user:%s password %s", name, hash);
	cr_assert(r && r->type == REDIS_REPLY_INTEGER);
	freeReplyObject(r);
	redisFree(c);
}

/* A hash of pw of kind ("$y$", "$6$", "$1$"), made here with libcrypt. */
static void make_hash(const char *kind, const char *pw, char *out, size_t len)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	const char *h;

	cr_assert_not_null(cd);
	cr_assert_not_null(crypt_gensalt_rn(kind, 0, NULL, 0, salt, sizeof(salt)), "%s", kind);
	h = crypt_r(pw, salt, cd);
	cr_assert(h && h[0] != '*' && strlen(h) < len);
	memcpy(out, h, strlen(h) + 1);
	free(cd);
}

/* A loop is made on the thread that runs it (IORING_SETUP_SINGLE_ISSUER). */
struct loop_start {
	struct fx *fx;
	unsigned index;
};

static struct loop *fx_loop_new(struct fx *fx, unsigned index)
{
	struct loop_conf lc = { 0 };
	char err[CONFIG_ERR_MAX];
	struct loop *l;

	lc.index = index;
	lc.cfg = &fx->cfg;
	lc.ops = &no_ops;
	l = loop_new(&lc, err, sizeof(err));
	if (!l)
		fprintf(stderr, "loop_new: %s\n", err);
	return l;
}

static void *loop_thread(void *arg)
{
	struct loop_start *ls = arg;
	struct fx *fx = ls->fx;
	struct loop *l = fx_loop_new(fx, ls->index);

	pthread_mutex_lock(&fx->mu);
	fx->l[ls->index] = l;
	fx->running[ls->index] = l ? 1 : -1;
	pthread_cond_broadcast(&fx->cv);
	pthread_mutex_unlock(&fx->mu);
	if (l)
		(void)loop_run(l);
	return NULL;
}

/* Redis with users alice ($y$ s3cret), bob ($6$ hunter2), carol ($1$
 * md5pass), dave (plain text "plain"); the pool with verifiers and limit;
 * loops, running when run is set. */
static void fx_setup(struct fx *fx, unsigned verifiers, unsigned limit, int run)
{
	char err[CONFIG_ERR_MAX], h[CRYPT_OUTPUT_SIZE], addr[160];

	memset(fx, 0, sizeof(*fx));
	/* As etrnd does: a write to a Redis that went away is an error, not
	 * a signal. */
	signal(SIGPIPE, SIG_IGN);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/test_authpool.XXXXXX");
	cr_assert_not_null(mkdtemp(fx->dir));
	snprintf(fx->sock, sizeof(fx->sock), "%s/redis.sock", fx->dir);
	pthread_mutex_init(&fx->mu, NULL);
	pthread_cond_init(&fx->cv, NULL);
	redis_start(fx);
	make_hash("$y$", "s3cret", h, sizeof(h));
	put_user(fx, "alice", h);
	make_hash("$6$", "hunter2", h, sizeof(h));
	put_user(fx, "bob", h);
	make_hash("$1$", "md5pass", h, sizeof(h));
	put_user(fx, "carol", h);
	put_user(fx, "dave", "plain");
	config_defaults(&fx->cfg);
	fx->cfg.nlisten = 0;
	fx->cfg.max_connections = 4;
	fx->cfg.auth_verifiers = verifiers;
	fx->cfg.auth_failure_limit = limit;
	snprintf(addr, sizeof(addr), "unix:%s", fx->sock);
	cr_assert_eq(config_redis_parse(&fx->cfg.redis, addr, err, sizeof(err)), 0, "%s", err);
	for (unsigned i = 0; i < FX_LOOPS; i++) {
		static struct loop_start ls[FX_LOOPS];

		if (!run) {
			fx->l[i] = fx_loop_new(fx, i);
			cr_assert_not_null(fx->l[i]);
			continue;
		}
		ls[i] = (struct loop_start){ fx, i };
		cr_assert_eq(pthread_create(&fx->lt[i], NULL, loop_thread, &ls[i]), 0);
		pthread_mutex_lock(&fx->mu);
		while (!fx->running[i])
			pthread_cond_wait(&fx->cv, &fx->mu);
		pthread_mutex_unlock(&fx->mu);
		cr_assert_eq(fx->running[i], 1, "loop %u did not start", i);
	}
	fx->p = authpool_start(&fx->cfg, err, sizeof(err));
	cr_assert_not_null(fx->p, "%s", err);
}

/* The order etrnd stops in: loops, then the pool, then free the loops. */
static void fx_teardown(struct fx *fx)
{
	for (unsigned i = 0; i < FX_LOOPS; i++) {
		if (fx->running[i] == 1) {
			loop_stop(fx->l[i]);
			pthread_join(fx->lt[i], NULL);
		}
	}
	authpool_stop(fx->p);
	fx->p = authpool_free(fx->p);
	for (unsigned i = 0; i < FX_LOOPS; i++)
		loop_free(fx->l[i]);
	redis_stop(fx);
	config_free(&fx->cfg);
	rmdir(fx->dir);
	pthread_cond_destroy(&fx->cv);
	pthread_mutex_destroy(&fx->mu);
}

static void on_done(void *arg, uint64_t conn_handle, enum auth_result r)
{
	struct ask *a = arg;
	struct fx *fx = a->fx;

	cr_expect_eq(conn_handle, (uint64_t)(a - fx->asks));
	pthread_mutex_lock(&fx->mu);
	a->got = r;
	a->on = pthread_self();
	a->answered++;
	fx->answered++;
	pthread_cond_broadcast(&fx->cv);
	pthread_mutex_unlock(&fx->mu);
}

/* check() as an engine thread calls it; *out names the ask. */
static int ask(struct fx *fx, unsigned loop, const char *client, const char *user,
	       const char *pass, size_t passlen, struct ask **out)
{
	const struct auth_backend *be = authpool_backend(fx->p);
	struct ask *a;

	cr_assert_lt(fx->nasks, FX_ASKS_MAX);
	a = &fx->asks[fx->nasks];
	a->fx = fx;
	a->loop = loop;
	if (out)
		*out = a;
	fx->nasks++;
	return be->check(be->arg, fx->l[loop], (uint64_t)(a - fx->asks), client, user, pass,
			 passlen, on_done, a);
}

/* Wait until n answers came in all. */
static void wait_answers(struct fx *fx, unsigned n)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += FX_WAIT_MS / 1000;
	pthread_mutex_lock(&fx->mu);
	while (fx->answered < n)
		if (pthread_cond_timedwait(&fx->cv, &fx->mu, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&fx->mu);
	cr_assert_geq(fx->answered, n, "%u of %u answers", fx->answered, n);
}

/* Ask and wait for the one answer. */
static enum auth_result check_one(struct fx *fx, const char *client, const char *user,
				  const char *pass, size_t passlen)
{
	struct ask *a;
	unsigned before = fx->answered;
	int rc = ask(fx, 0, client, user, pass, passlen, &a);

	if (rc < 0)
		return (enum auth_result)-rc;
	cr_assert_eq(rc, 0);
	wait_answers(fx, before + 1);
	cr_assert_eq(a->answered, 1);
	return a->got;
}

#define S(x) x, sizeof(x) - 1

static char long_user[AUTH_USER_MAX + 2];
static char long_pass[AUTH_PASS_MAX + 2];

Test(authpool, answers)
{
	static const struct {
		const char *name, *user, *pass;
		size_t passlen;
		enum auth_result want;
	} cases[] = {
		{ "yescrypt, right", "alice", S("s3cret"), AUTH_OK },
		{ "yescrypt, wrong", "alice", S("s3cret "), AUTH_BAD },
		{ "SHA-512, right", "bob", S("hunter2"), AUTH_OK },
		{ "SHA-512, wrong", "bob", S("hunter3"), AUTH_BAD },
		{ "unknown user", "mallory", S("s3cret"), AUTH_BAD },
		{ "MD5 $1$ hash, right password", "carol", S("md5pass"), AUTH_BAD },
		{ "plain text stored, same password", "dave", S("plain"), AUTH_BAD },
		{ "empty password", "alice", S(""), AUTH_BAD },
		{ "NUL inside the password", "alice", S("s3cret\0x"), AUTH_BAD },
		{ "NUL ending the password", "alice", S("s3cret\0"), AUTH_BAD },
		{ "user name in other case", "Alice", S("s3cret"), AUTH_BAD },
		{ "user name no schema name", "al ice", S("s3cret"), AUTH_BAD },
		{ "user name with CR LF", "alice\r\nHGET", S("s3cret"), AUTH_BAD },
		{ "user name too long", long_user, S("s3cret"), AUTH_BAD },
		{ "password too long", "alice", long_pass, AUTH_PASS_MAX + 1, AUTH_BAD },
		{ "yescrypt, right again", "alice", S("s3cret"), AUTH_OK },
	};
	struct fx fx;
	struct authpool_stats st;
	unsigned ok = 0, bad = 0;

	memset(long_user, 'a', AUTH_USER_MAX + 1);
	memset(long_pass, 'p', AUTH_PASS_MAX + 1);
	fx_setup(&fx, 2, 1000, 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum auth_result got = check_one(&fx, "192.0.2.1", cases[i].user, cases[i].pass,
						 cases[i].passlen);

		cr_expect_eq(got, cases[i].want, "%s: got %d, want %d", cases[i].name, got,
			     cases[i].want);
		ok += cases[i].want == AUTH_OK;
		bad += cases[i].want == AUTH_BAD;
	}
	authpool_stats(fx.p, &st);
	cr_expect_eq(st.ok, ok);
	cr_expect_eq(st.bad, bad);
	cr_expect_eq(st.pending, 0);
	fx_teardown(&fx);
}

/* After limit failures an address is answered AUTH_LIMITED at once, good
 * password or not, without a callback; another address is still checked;
 * good logins and AUTH_TEMP do not count. */
Test(authpool, failure_limit_per_address)
{
	struct fx fx;
	struct authpool_stats st;
	const unsigned limit = 3;

	fx_setup(&fx, 2, limit, 1);
	for (unsigned i = 0; i < 2 * limit; i++)
		cr_expect_eq(check_one(&fx, "198.51.100.7", "alice", S("s3cret")), AUTH_OK,
			     "good login %u", i);
	for (unsigned i = 0; i < limit; i++)
		cr_expect_eq(check_one(&fx, "198.51.100.9", "alice", S("nope")), AUTH_BAD, "try %u", i);
	cr_expect_eq(ask(&fx, 0, "198.51.100.9", "alice", S("nope"), NULL), -AUTH_LIMITED);
	cr_expect_eq(ask(&fx, 0, "198.51.100.9", "alice", S("s3cret"), NULL), -AUTH_LIMITED);
	cr_expect_eq(ask(&fx, 0, "::ffff:198.51.100.9", "bob", S("hunter2"), NULL), -AUTH_LIMITED,
		     "the IPv4-mapped form is the same address");
	cr_expect_eq(check_one(&fx, "198.51.100.10", "alice", S("s3cret")), AUTH_OK);
	cr_expect_eq(check_one(&fx, "2001:db8::10", "mallory", S("x")), AUTH_BAD);
	/* Redis away: AUTH_TEMP, which does not count against the address. */
	redis_stop(&fx);
	for (unsigned i = 0; i < 2 * limit; i++)
		cr_expect_eq(check_one(&fx, "203.0.113.5", "alice", S("nope")), AUTH_TEMP, "temp %u", i);
	authpool_stats(fx.p, &st);
	cr_expect_eq(st.limited, 3);
	cr_expect_eq(st.temp, 2 * limit);
	fx_teardown(&fx);
}

/* Redis stopped: AUTH_TEMP (never AUTH_BAD); back on the same socket: the
 * verifiers reconnect after their back-off and check again. */
Test(authpool, redis_away_and_back)
{
	struct fx fx;
	enum auth_result r = AUTH_TEMP;
	uint64_t until;

	fx_setup(&fx, 2, 1000, 1);
	cr_expect_eq(check_one(&fx, "192.0.2.2", "alice", S("s3cret")), AUTH_OK);
	redis_stop(&fx);
	for (unsigned i = 0; i < 4; i++) {
		cr_expect_eq(check_one(&fx, "192.0.2.2", "alice", S("s3cret")), AUTH_TEMP, "down %u", i);
		cr_expect_eq(check_one(&fx, "192.0.2.2", "mallory", S("x")), AUTH_TEMP, "down %u", i);
	}
	redis_start(&fx); /* empty: users again */
	{
		char h[CRYPT_OUTPUT_SIZE];

		make_hash("$y$", "s3cret", h, sizeof(h));
		put_user(&fx, "alice", h);
	}
	until = now_mono_ms() + FX_WAIT_MS;
	while (now_mono_ms() < until) {
		r = check_one(&fx, "192.0.2.2", "alice", S("s3cret"));
		if (r != AUTH_TEMP)
			break;
		usleep(50000);
	}
	cr_expect_eq(r, AUTH_OK, "not back after Redis came back: %d", r);
	fx_teardown(&fx);
}

/* The loops never run, so no slot comes back: AUTHPOOL_QUEUE_MAX checks are
 * taken, the next is refused at once with -AUTH_TEMP; then a stop with a
 * full queue (most checks abandoned, one or two in crypt_r) is clean. */
Test(authpool, queue_full_then_stop)
{
	struct fx fx;
	struct authpool_stats st;

	fx_setup(&fx, 1, 100000, 0);
	for (unsigned i = 0; i < AUTHPOOL_QUEUE_MAX; i++)
		cr_assert_eq(ask(&fx, i % FX_LOOPS, "192.0.2.3", "alice", S("s3cret"), NULL), 0,
			     "check %u", i);
	cr_expect_eq(ask(&fx, 0, "192.0.2.3", "alice", S("s3cret"), NULL), -AUTH_TEMP);
	cr_expect_eq(ask(&fx, 1, "192.0.2.4", "bob", S("hunter2"), NULL), -AUTH_TEMP);
	authpool_stats(fx.p, &st);
	cr_expect_eq(st.full, 2);
	cr_expect_eq(st.pending, AUTHPOOL_QUEUE_MAX);
	fx_teardown(&fx);
	for (unsigned i = 0; i < fx.nasks; i++)
		cr_expect_eq(fx.asks[i].answered, 0, "a loop that never ran answered %u", i);
}

/* Each answer runs on the thread of the loop that asked. */
Test(authpool, answers_on_the_asking_loop)
{
	struct fx fx;
	const unsigned n = 24;

	fx_setup(&fx, 3, 1000, 1);
	for (unsigned i = 0; i < n; i++)
		cr_assert_eq(ask(&fx, i % FX_LOOPS, "192.0.2.5", i % 3 ? "bob" : "mallory",
				 S("hunter2"), NULL), 0);
	wait_answers(&fx, n);
	for (unsigned i = 0; i < n; i++) {
		cr_expect_eq(fx.asks[i].answered, 1, "check %u", i);
		cr_expect(pthread_equal(fx.asks[i].on, fx.lt[fx.asks[i].loop]),
			  "check %u answered on another thread", i);
		cr_expect_eq(fx.asks[i].got, i % 3 ? AUTH_OK : AUTH_BAD, "check %u", i);
	}
	fx_teardown(&fx);
}

/* Loops stopped while checks are queued and in crypt_r: the answers posted
 * to finished loops are dropped, nothing leaks or is touched after free
 * (ASan); the pool refuses checks once stopped. */
Test(authpool, stop_with_checks_in_flight)
{
	struct fx fx;

	fx_setup(&fx, 2, 100000, 1);
	for (unsigned i = 0; i < 64; i++)
		cr_assert_eq(ask(&fx, i % FX_LOOPS, "192.0.2.6", "alice", S("s3cret"), NULL), 0);
	for (unsigned i = 0; i < FX_LOOPS; i++) {
		loop_stop(fx.l[i]);
		pthread_join(fx.lt[i], NULL);
		fx.running[i] = 0;
	}
	authpool_stop(fx.p);
	cr_expect_eq(ask(&fx, 0, "192.0.2.6", "alice", S("s3cret"), NULL), -AUTH_TEMP);
	fx_teardown(&fx);
}

/* Not a pass/fail figure: checks per second of one verifier thread for each
 * hash kind (sizes auth_verifiers), printed for RESULTS. */
Test(authpool, rate_per_verifier)
{
	static const struct {
		const char *kind, *user, *pass;
		unsigned n;
	} kinds[] = {
		{ "yescrypt", "alice", "s3cret", 40 },
		{ "SHA-512", "bob", "hunter2", 200 },
	};
	struct fx fx;

	fx_setup(&fx, 1, 100000, 1);
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		unsigned before = fx.answered;
		uint64_t t0 = now_mono_ms(), ms;

		for (unsigned i = 0; i < kinds[k].n; i++)
			cr_assert_eq(ask(&fx, 0, "192.0.2.9", kinds[k].user, kinds[k].pass,
					 strlen(kinds[k].pass), NULL), 0);
		wait_answers(&fx, before + kinds[k].n);
		ms = now_mono_ms() - t0;
		for (unsigned i = before; i < before + kinds[k].n; i++)
			cr_expect_eq(fx.asks[i].got, AUTH_OK);
		fprintf(stderr, "authpool: one verifier thread: %u %s checks in %llu ms = %.1f/s\n",
			kinds[k].n, kinds[k].kind, (unsigned long long)ms,
			ms ? kinds[k].n * 1000.0 / (double)ms : 0.0);
	}
	fx_teardown(&fx);
}
