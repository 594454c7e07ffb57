/* SPDX-License-Identifier: MIT */
/*
 * engine_fixture: see engine_fixture.h. The engine thread is wired like
 * core/main.c's engine_main (epoch reader, loop, shard, drainer, turn hook
 * with expiry before the group commit, busy check, stop hook); tests reach
 * it only by posting functions to its loop, so nothing of the engine is
 * touched from two threads.
 */
#include "engine_fixture.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/epoch.h"
#include "core/now.h"
#include "core/resolver.h"
#include "store/domstat.h"
#include "store/spool_index.h"
#include "store/spool_rec.h"

#define ENGINE_FIXTURE_DOMSTAT_DOMAINS 1024
#define ENGINE_FIXTURE_SEGMENT_SIZE (4u << 20)
#define ENGINE_FIXTURE_POLL_NS 2000000L       /* 2 ms between probes */
#define ENGINE_FIXTURE_SETTLE_ROUNDS 5        /* quiet probes in a row */
#define ENGINE_FIXTURE_REPLY_MAX 1024
#define ENGINE_FIXTURE_EPOCH_READERS 2

enum { EF_STARTING, EF_READY, EF_FAILED };

/* ---- no accepted connections: the fixture listens on nothing ------------ */

static void *ef_no_open(void *a, struct conn *c, const char *p)
{
	(void)a;
	(void)c;
	(void)p;
	return NULL;
}

static size_t ef_no_data(void *a, struct conn *c, void *s, const char *p, size_t n)
{
	(void)a;
	(void)c;
	(void)s;
	(void)p;
	return n;
}

static void ef_no_cb(void *a, struct conn *c, void *s)
{
	(void)a;
	(void)c;
	(void)s;
}

static const struct conn_ops ef_no_ops = {
	ef_no_open, ef_no_data, ef_no_cb, ef_no_cb, ef_no_cb, NULL, NULL
};

const struct conn_ops *engine_fixture_no_ops(void)
{
	return &ef_no_ops;
}

/* ---- the engine thread --------------------------------------------------- */

static void ef_report(struct engine_fixture *f, int state)
{
	pthread_mutex_lock(&f->mu);
	f->state = state;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

static struct spool_shard *ef_open_shard(struct engine_fixture *f, struct loop *l,
					 struct domstat *ds)
{
	struct spool_shard_conf sc;

	memset(&sc, 0, sizeof(sc));
	sc.dir = f->dir;
	sc.shard = 0;
	sc.sync = f->cfg.sync;
	sc.segment_size = f->cfg.segment_size;
	sc.domstat = ds;
	return spool_shard_open(l, &sc, f->err, sizeof(f->err));
}

static struct loop *ef_new_loop(struct engine_fixture *f)
{
	struct loop_conf lc;

	memset(&lc, 0, sizeof(lc));
	lc.index = 0;
	lc.cfg = &f->cfg;
	lc.ops = &ef_no_ops;
	return loop_new(&lc, f->err, sizeof(f->err));
}

static void *ef_main(void *arg)
{
	struct engine_fixture *f = arg;

	if (epoch_register(f->ep)) {
		snprintf(f->err, sizeof(f->err), "no epoch slot");
		ef_report(f, EF_FAILED);
		return NULL;
	}
	epoch_offline();
	f->loop = ef_new_loop(f);
	if (!f->loop)
		goto fail;
	f->sh = ef_open_shard(f, f->loop, f->ds);
	if (!f->sh)
		goto fail;
	f->drain = drain_new(f->hub, 0, f->loop, f->sh);
	if (!f->drain) {
		snprintf(f->err, sizeof(f->err), "drain_new: %s", strerror(errno));
		goto fail;
	}
	if (f->with_sched) {
		f->sched = sched_new(&f->cfg, f->dt, f->resolver, f->drain, f->loop, f->sh);
		if (!f->sched) {
			snprintf(f->err, sizeof(f->err), "sched_new: %s", strerror(errno));
			goto fail;
		}
	}
	if (f->setup && f->setup(f, f->setup_arg)) {
		snprintf(f->err, sizeof(f->err), "setup failed");
		goto fail;
	}
	ef_report(f, EF_READY);
	(void)loop_run(f->loop);
	epoch_unregister();
	return NULL;
fail:
	f->sched = sched_free(f->sched);
	f->drain = drain_free(f->drain);
	f->sh = spool_shard_close(f->sh);
	f->loop = loop_free(f->loop);
	epoch_unregister();
	ef_report(f, EF_FAILED);
	return NULL;
}

/* ---- set-up and tear-down ------------------------------------------------ */

struct domtab *engine_fixture_table_of(const char *name)
{
	struct domtab_builder *b = domtab_builder_new();
	struct domtab_row row = { .name = name };
	struct domtab *t = NULL;

	if (b && domtab_builder_put(b, &row) == 0)
		t = domtab_build(b);
	domtab_builder_free(b);
	return t;
}

int engine_fixture_init(struct engine_fixture *f, struct domtab *table)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/etrnd-test-engine-XXXXXX");
	if (!mkdtemp(f->dir)) {
		domtab_free(table);
		return -errno;
	}
	config_defaults(&f->cfg);
	f->cfg.nlisten = 0;
	f->cfg.threads = 1;
	f->cfg.max_connections = 16;
	f->cfg.drain_connections = 1; /* one connection: one exact transcript */
	f->cfg.sync = CONFIG_SYNC_BATCH;
	f->cfg.segment_size = ENGINE_FIXTURE_SEGMENT_SIZE;
	snprintf(f->cfg.hostname, sizeof(f->cfg.hostname), "%s", ENGINE_FIXTURE_HOSTNAME);
	snprintf(f->cfg.spool_dir, sizeof(f->cfg.spool_dir), "%s", f->dir);
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	f->ep = epoch_new(ENGINE_FIXTURE_EPOCH_READERS);
	f->dt = f->ep ? domtab_live_new(table, f->ep) : NULL;
	if (!f->dt) {
		domtab_free(table);
		return -ENOMEM;
	}
	return 0;
}

static void ef_close_inspection(struct engine_fixture *f)
{
	f->ins_sh = spool_shard_close(f->ins_sh);
	f->ins_loop = loop_free(f->ins_loop);
}

int engine_fixture_start(struct engine_fixture *f)
{
	struct resolver_conf rconf;
	int rc;

	ef_close_inspection(f);
	config_resolver_conf(&f->cfg, &rconf);
	f->resolver = resolver_new(&rconf, f->err, sizeof(f->err));
	if (!f->resolver)
		return -1;
	f->ds = domstat_new(ENGINE_FIXTURE_DOMSTAT_DOMAINS);
	/* cfg.threads may be raised between _init and _start: the test runs
	 * the other engine threads (drain_new with index 1, ...) itself. */
	f->hub = f->ds ? drain_hub_new(&f->cfg, f->dt, f->ds, f->resolver, f->cfg.threads) : NULL;
	if (!f->hub) {
		snprintf(f->err, sizeof(f->err), "out of memory");
		f->ds = domstat_free(f->ds);
		f->resolver = resolver_free(f->resolver);
		return -1;
	}
	f->state = EF_STARTING;
	rc = pthread_create(&f->thread, NULL, ef_main, f);
	if (rc) {
		snprintf(f->err, sizeof(f->err), "pthread_create: %s", strerror(rc));
		f->resolver = resolver_free(f->resolver);
		f->hub = drain_hub_free(f->hub);
		f->ds = domstat_free(f->ds);
		return -1;
	}
	pthread_mutex_lock(&f->mu);
	while (f->state == EF_STARTING)
		pthread_cond_wait(&f->cv, &f->mu);
	pthread_mutex_unlock(&f->mu);
	if (f->state != EF_READY) {
		pthread_join(f->thread, NULL);
		drain_hub_quiesce(f->hub);
		f->resolver = resolver_free(f->resolver);
		f->hub = drain_hub_free(f->hub);
		f->ds = domstat_free(f->ds);
		return -1;
	}
	f->running = 1;
	return 0;
}

void engine_fixture_stop(struct engine_fixture *f)
{
	if (!f || !f->running)
		return;
	loop_stop(f->loop);
	pthread_join(f->thread, NULL);
	f->running = 0;
	/* admin/etrnd.c's order: no drain is posted any more, the resolver
	 * answers what is pending (-ECANCELED) and is joined, then free. */
	drain_hub_quiesce(f->hub);
	f->resolver = resolver_free(f->resolver);
	f->sched = sched_free(f->sched);
	f->drain = drain_free(f->drain);
	f->expire = expire_free(f->expire);
	f->sh = spool_shard_close(f->sh);
	f->loop = loop_free(f->loop);
	f->hub = drain_hub_free(f->hub);
	f->ds = domstat_free(f->ds);
}

static int ef_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void engine_fixture_fini(struct engine_fixture *f)
{
	engine_fixture_stop(f);
	ef_close_inspection(f);
	domtab_live_free(f->dt);
	epoch_free(f->ep);
	config_free(&f->cfg);
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cv);
	if (f->dir[0])
		(void)nftw(f->dir, ef_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- running things on the engine thread --------------------------------- */

struct ef_call {
	engine_fixture_fn fn;
	void *arg;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int running;    /* fn has started: the caller waits for its end */
	int done;
	int abandoned;  /* the caller timed out first: never run fn, free c */
};

static void ef_call_free(struct ef_call *c)
{
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}

static void ef_call_run(void *arg)
{
	struct ef_call *c = arg;

	pthread_mutex_lock(&c->mu);
	if (c->abandoned) {
		/* fn's arg may live on the caller's stack, gone by now. */
		pthread_mutex_unlock(&c->mu);
		ef_call_free(c);
		return;
	}
	c->running = 1;
	pthread_mutex_unlock(&c->mu);
	c->fn(c->arg);
	pthread_mutex_lock(&c->mu);
	c->done = 1;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void ef_deadline(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

int engine_fixture_call(struct engine_fixture *f, engine_fixture_fn fn, void *arg,
			unsigned timeout_ms)
{
	/* On the heap: after a time-out the post may still come; it then
	 * frees c without running fn (a loaded machine makes a short
	 * negative wait time out before the loop ran the post). */
	struct ef_call *c = calloc(1, sizeof(*c));
	struct timespec dl;
	int done;

	if (!c || !f->running) {
		free(c);
		return c ? -ESHUTDOWN : -ENOMEM;
	}
	c->fn = fn;
	c->arg = arg;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	if (loop_post(f->loop, ef_call_run, c)) {
		free(c);
		return -ENOMEM;
	}
	ef_deadline(&dl, timeout_ms);
	pthread_mutex_lock(&c->mu);
	while (!c->done)
		if (pthread_cond_timedwait(&c->cv, &c->mu, &dl))
			break;
	/* fn under way: it may use the caller's memory, wait for its end. */
	while (c->running && !c->done)
		pthread_cond_wait(&c->cv, &c->mu);
	done = c->done;
	if (!done)
		c->abandoned = 1;
	pthread_mutex_unlock(&c->mu);
	if (!done)
		return -ETIMEDOUT;
	ef_call_free(c);
	return 0;
}

struct ef_probe {
	struct engine_fixture *f;
	engine_fixture_pred pred;
	void *arg;
	int result;
};

static void ef_probe_run(void *arg)
{
	struct ef_probe *p = arg;

	p->result = p->pred(p->f, p->arg);
}

int engine_fixture_wait(struct engine_fixture *f, engine_fixture_pred pred, void *arg,
			unsigned timeout_ms)
{
	uint64_t end = now_mono_ms() + timeout_ms;
	struct ef_probe p = { f, pred, arg, 0 };
	const struct timespec nap = { 0, ENGINE_FIXTURE_POLL_NS };

	for (;;) {
		uint64_t now = now_mono_ms();

		if (now >= end)
			return -ETIMEDOUT;
		if (engine_fixture_call(f, ef_probe_run, &p, (unsigned)(end - now)))
			return -ETIMEDOUT;
		if (p.result)
			return 0;
		nanosleep(&nap, NULL);
	}
}

/* ---- appending ------------------------------------------------------------ */

struct ef_append {
	struct engine_fixture *f;
	const char *sender;
	const char *const *rcpt;
	size_t *rcpt_len;
	unsigned nrcpt;
	const char *body;
	uint16_t flags;   /* SPOOL_MSG_* */
	uint64_t msgid;
	int queued;       /* 0 queued, else -errno */
	int finished;     /* the done callback ran */
	int err;
};

static void ef_append_done(void *arg, int err)
{
	struct ef_append *a = arg;

	a->err = err;
	a->finished = 1;
}

static void ef_append_run(void *arg)
{
	struct ef_append *a = arg;
	struct spool_msg m;

	memset(&m, 0, sizeof(m));
	m.msgid = a->msgid = spool_shard_new_msgid(a->f->sh);
	m.sender = a->sender;
	m.sender_len = strlen(a->sender);
	m.nrcpt = a->nrcpt;
	m.rcpt = a->rcpt;
	m.rcpt_len = a->rcpt_len;
	m.body = a->body;
	m.body_len = strlen(a->body);
	m.flags = a->flags;
	a->queued = spool_append_msg(a->f->sh, &m, ef_append_done, a);
}

static int ef_append_finished(struct engine_fixture *f, void *arg)
{
	(void)f;
	return ((struct ef_append *)arg)->finished;
}

uint64_t engine_fixture_append(struct engine_fixture *f, const char *sender,
			       const char *const *rcpt, unsigned nrcpt, const char *body)
{
	return engine_fixture_append_flags(f, sender, rcpt, nrcpt, body, 0);
}

uint64_t engine_fixture_append_flags(struct engine_fixture *f, const char *sender,
				     const char *const *rcpt, unsigned nrcpt, const char *body,
				     uint16_t flags)
{
	/* On the heap: the body is borrowed until the done callback, and a
	 * time-out leaves the callback pending. */
	struct ef_append *a = calloc(1, sizeof(*a));
	uint64_t id = 0;

	if (!a || !(a->rcpt_len = calloc(nrcpt, sizeof(*a->rcpt_len))))
		goto out;
	a->f = f;
	a->sender = sender;
	a->rcpt = rcpt;
	a->nrcpt = nrcpt;
	a->body = body;
	a->flags = flags;
	for (unsigned i = 0; i < nrcpt; i++)
		a->rcpt_len[i] = strlen(rcpt[i]);
	if (engine_fixture_call(f, ef_append_run, a, ENGINE_FIXTURE_WAIT_MS) ||
	    (a->queued == 0 && engine_fixture_wait(f, ef_append_finished, a,
						   ENGINE_FIXTURE_WAIT_MS)))
		return 0; /* timed out: a is still borrowed by the engine */
	if (a->queued == 0 && a->err == 0)
		id = a->msgid;
out:
	if (a)
		free(a->rcpt_len);
	free(a);
	return id;
}

/* ---- ETRN and the drain's end ------------------------------------------- */

struct ef_etrn {
	struct engine_fixture *f;
	const char *client;
	const char *node;
	struct buf out;
};

static void ef_etrn_run(void *arg)
{
	struct ef_etrn *e = arg;

	if (e->client)
		drain_etrn(e->f->drain, e->client, NULL, e->node, strlen(e->node), &e->out);
	else
		drain_hub_flush(e->f->hub, e->node, strlen(e->node), &e->out);
}

int engine_fixture_etrn(struct engine_fixture *f, const char *client, const char *node,
			char *reply, size_t replylen)
{
	struct ef_etrn *e = calloc(1, sizeof(*e));
	int rc;

	if (!e)
		return -ENOMEM;
	e->f = f;
	e->client = client;
	e->node = node;
	buf_init(&e->out, ENGINE_FIXTURE_REPLY_MAX);
	rc = engine_fixture_call(f, ef_etrn_run, e, ENGINE_FIXTURE_WAIT_MS);
	if (rc)
		return rc; /* e may still be written: left behind */
	snprintf(reply, replylen, "%.*s", (int)e->out.len, e->out.data ? e->out.data : "");
	buf_free(&e->out);
	free(e);
	return 0;
}

static int ef_drain_idle(struct engine_fixture *f, void *arg)
{
	(void)arg;
	return !drain_busy(f->drain);
}

int engine_fixture_drain_idle(struct engine_fixture *f, unsigned timeout_ms)
{
	return engine_fixture_wait(f, ef_drain_idle, NULL, timeout_ms);
}

static int ef_records(struct engine_fixture *f, void *arg)
{
	struct spool_stats st;

	spool_shard_stats(f->sh, &st);
	return st.messages >= *(const uint64_t *)arg;
}

int engine_fixture_wait_records(struct engine_fixture *f, uint64_t n, unsigned timeout_ms)
{
	return engine_fixture_wait(f, ef_records, &n, timeout_ms);
}

/* ---- expiry ----------------------------------------------------------------- */

struct ef_expire_new {
	struct engine_fixture *f;
	struct expire_conf conf;
};

/* Each domain's max_hold from its row, as proto/smtpd.c gives it. */
static uint64_t ef_hold(void *arg, const char *domain, size_t len)
{
	struct engine_fixture *f = arg;
	const struct domtab_row *row = domtab_find(domtab_live_get(f->dt), domain, len);

	return row ? row->max_hold_ms * 1000 : 0;
}

static void ef_expire_new_run(void *arg)
{
	struct ef_expire_new *x = arg;

	x->f->expire = expire_new(&x->conf, x->f->sh);
}

int engine_fixture_expire_start(struct engine_fixture *f, const struct expire_conf *conf)
{
	struct ef_expire_new x = { f, *conf };
	int rc;

	if (!x.conf.hostname)
		x.conf.hostname = f->cfg.hostname;
	if (!x.conf.hold) {
		x.conf.hold = ef_hold;
		x.conf.hold_arg = f;
	}
	rc = engine_fixture_call(f, ef_expire_new_run, &x, ENGINE_FIXTURE_WAIT_MS);
	if (rc)
		return rc;
	return f->expire ? 0 : -ENOMEM;
}

struct ef_settle {
	uint64_t count, records;
	unsigned quiet;
};

static int ef_expire_quiet(struct engine_fixture *f, void *arg)
{
	struct ef_settle *s = arg;
	struct spool_stats st;
	uint64_t count = expire_count(f->expire);

	spool_shard_stats(f->sh, &st);
	if (expire_busy(f->expire) || count != s->count || st.messages != s->records) {
		s->count = count;
		s->records = st.messages;
		s->quiet = 0;
		return 0;
	}
	/* Each probe runs in a later loop turn than the last, so a tick ran
	 * between any two of them. */
	return ++s->quiet >= ENGINE_FIXTURE_SETTLE_ROUNDS;
}

int engine_fixture_expire_settle(struct engine_fixture *f, uint64_t *count,
				 unsigned timeout_ms)
{
	struct ef_settle s = { UINT64_MAX, UINT64_MAX, 0 };
	int rc = engine_fixture_wait(f, ef_expire_quiet, &s, timeout_ms);

	*count = s.count;
	return rc;
}

/* ---- inspection ------------------------------------------------------------- */

struct spool_index *engine_fixture_reopen(struct engine_fixture *f)
{
	if (f->running)
		return NULL;
	ef_close_inspection(f);
	f->ins_loop = ef_new_loop(f);
	if (!f->ins_loop)
		return NULL;
	f->ins_sh = ef_open_shard(f, f->ins_loop, NULL);
	return f->ins_sh ? spool_shard_index(f->ins_sh) : NULL;
}

static char *ef_strndup(const char *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s) {
		memcpy(s, p, n);
		s[n] = '\0';
	}
	return s;
}

int engine_fixture_read(struct engine_fixture *f, uint64_t msgid,
			struct engine_fixture_msg *m)
{
	struct spool_index_entry e;
	struct spool_rec_hdr hdr;
	struct spool_rec_msg rm;
	const char *payload;
	char *rec = NULL;
	int rc = -EBADMSG;

	memset(m, 0, sizeof(*m));
	if (!f->ins_sh || spool_index_msg_find(spool_shard_index(f->ins_sh), msgid, &e))
		return -ENOENT;
	rec = malloc(e.rec_len);
	if (!rec)
		return -ENOMEM;
	if (spool_shard_read_sync(f->ins_sh, e.segment_id, e.off, e.rec_len, rec))
		goto out;
	if (spool_rec_decode(rec, e.rec_len, &hdr, &payload) != SPOOL_REC_OK ||
	    hdr.type != SPOOL_REC_MSG || hdr.msgid != msgid ||
	    spool_rec_decode_msg(payload, hdr.length, &rm) != SPOOL_REC_OK)
		goto out;
	m->time_us = hdr.time_us;
	m->sender = ef_strndup(rm.sender.p, rm.sender.len);
	m->body = ef_strndup(rm.body, rm.body_len);
	m->body_len = rm.body_len;
	m->rcpt = calloc(rm.nrcpt, sizeof(*m->rcpt));
	if (!m->sender || !m->body || !m->rcpt) {
		rc = -ENOMEM;
		goto out;
	}
	m->nrcpt = rm.nrcpt;
	for (uint32_t i = 0; i < rm.nrcpt; i++) {
		struct spool_rec_addr a = spool_rec_msg_rcpt(&rm, i);
		if (!(m->rcpt[i] = ef_strndup(a.p, a.len))) {
			rc = -ENOMEM;
			goto out;
		}
	}
	rc = 0;
out:
	free(rec);
	if (rc)
		engine_fixture_msg_free(m);
	return rc;
}

void engine_fixture_msg_free(struct engine_fixture_msg *m)
{
	for (unsigned i = 0; m->rcpt && i < m->nrcpt; i++)
		free(m->rcpt[i]);
	free(m->rcpt);
	free(m->sender);
	free(m->body);
	memset(m, 0, sizeof(*m));
}

size_t engine_fixture_queue_ids(struct engine_fixture *f, const char *domain,
				uint64_t *ids, size_t max)
{
	const struct spool_index_queue *q;
	struct spool_index_iter it;
	struct spool_index_entry e;
	size_t n = 0;

	if (!f->ins_sh)
		return 0;
	q = spool_index_queue(spool_shard_index(f->ins_sh), domain, strlen(domain));
	if (!q)
		return 0;
	spool_index_queue_iter(q, &it);
	while (n < max && spool_index_queue_next(&it, &e))
		ids[n++] = e.msgid;
	return n;
}

#define ENGINE_FIXTURE_STATES_MAX 64

void engine_fixture_states(struct spool_index *idx, uint64_t msgid, char *out,
			   size_t outlen)
{
	uint32_t rc[ENGINE_FIXTURE_STATES_MAX];
	uint8_t st[ENGINE_FIXTURE_STATES_MAX];
	struct spool_index_entry e;
	int n;

	out[0] = '\0';
	if (spool_index_msg_find(idx, msgid, &e) || e.nrcpt + 1 > outlen ||
	    e.nrcpt > ENGINE_FIXTURE_STATES_MAX)
		return;
	memset(out, 'P', e.nrcpt);
	out[e.nrcpt] = '\0';
	n = spool_index_msg_done(idx, msgid, rc, st, ENGINE_FIXTURE_STATES_MAX);
	for (int i = 0; i < n; i++)
		out[rc[i]] = st[i] == SPOOL_DONE_DELIVERED ? 'D' :
			     st[i] == SPOOL_DONE_BOUNCED ? 'B' :
			     st[i] == SPOOL_DONE_EXPIRED ? 'E' : '?';
}

int engine_fixture_dsn_check(struct engine_fixture *f, uint64_t msgid, const char *to,
			     const char *const *want, char *why, size_t whylen)
{
	struct engine_fixture_msg m;
	int rc = -1;

	if (engine_fixture_read(f, msgid, &m)) {
		snprintf(why, whylen, "DSN unreadable");
		return -1;
	}
	if (m.sender[0])
		snprintf(why, whylen, "DSN from <%s>, want <>", m.sender);
	else if (m.nrcpt != 1 || strcmp(m.rcpt[0], to))
		snprintf(why, whylen, "DSN to %u recipient(s), <%s> first; want <%s>",
			 m.nrcpt, m.nrcpt ? m.rcpt[0] : "", to);
	else
		rc = 0;
	for (unsigned i = 0; rc == 0 && want[i]; i++) {
		if (!strstr(m.body, want[i])) {
			snprintf(why, whylen, "DSN lacks \"%s\":\n%s", want[i], m.body);
			rc = -1;
		}
	}
	engine_fixture_msg_free(&m);
	return rc;
}
