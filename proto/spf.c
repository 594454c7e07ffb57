/* SPDX-License-Identifier: MIT */
/*
 * spf: see spf.h. Each worker owns one libspf2 server whose DNS layer
 * (spf_dns_lookup) submits a resolver_query() with what is left of the
 * check's deadline and waits on the worker's own condition variable; the
 * resolver answers every accepted query exactly once, by that deadline, so
 * the wait needs no timeout of its own. libspf2 never sees the network.
 */
#include "proto/spf.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spf2/spf.h>
#include <spf2/spf_dns.h>

#include "core/log.h"
#include "core/now.h"
#include "core/resolver.h"
#include "core/workpool.h"

/* libspf2's result, and its error code where it set no result (a DNS
 * failure: temperror; a record that does not compile: permerror, RFC 7208
 * 4.6). */
static enum spf_res spf_res_from(SPF_result_t r, SPF_errcode_t e)
{
	switch (r) {
	case SPF_RESULT_PASS: return SPF_RES_PASS;
	case SPF_RESULT_FAIL: return SPF_RES_FAIL;
	case SPF_RESULT_SOFTFAIL: return SPF_RES_SOFTFAIL;
	case SPF_RESULT_NEUTRAL: return SPF_RES_NEUTRAL;
	case SPF_RESULT_NONE: return SPF_RES_NONE;
	case SPF_RESULT_PERMERROR: return SPF_RES_PERMERROR;
	case SPF_RESULT_TEMPERROR:
		break;
	case SPF_RESULT_INVALID:
		return e == SPF_E_DNS_ERROR || e == SPF_E_NO_MEMORY ? SPF_RES_TEMPERROR
								     : SPF_RES_PERMERROR;
	}
	return SPF_RES_TEMPERROR;
}

/* ---- the DNS layer --------------------------------------------------------- */

/* One worker's libspf2 server, its DNS layer and the check in progress. */
struct spf_worker {
	struct resolver *r;
	SPF_server_t *srv;
	SPF_dns_server_t dns;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* The lookup waiting for its answer (under mu once submitted). */
	int answered;
	SPF_dns_rr_t *rr;
	const char *q_domain;
	ns_type q_type;
	/* The check in progress. */
	uint64_t deadline_ms;
	unsigned queries;         /* lookups so far */
	unsigned voids;           /* RFC 7208 4.6.4 void lookups */
	int timed_out;            /* a lookup found no time left */
};

static int spf_dns_rtype(ns_type t, enum resolver_rrtype *out)
{
	switch ((int)t) {
	case ns_t_a: *out = RESOLVER_T_A; return 0;
	case ns_t_aaaa: *out = RESOLVER_T_AAAA; return 0;
	case ns_t_mx: *out = RESOLVER_T_MX; return 0;
	case ns_t_txt: *out = RESOLVER_T_TXT; return 0;
	case ns_t_ptr: *out = RESOLVER_T_PTR; return 0;
	}
	return -1; /* ns_t_spf (RFC 7208 3.1 retired type 99) and others */
}

static SPF_dns_stat_t spf_dns_herrno(int err)
{
	switch (err) {
	case 0: return NETDB_SUCCESS;
	case -ENOENT: return HOST_NOT_FOUND;
	case -ENODATA: return NO_DATA;
	case -EINVAL: return NO_RECOVERY;
	}
	return TRY_AGAIN;
}

/* The resolver's answer a as a libspf2 record set (NULL: out of memory). */
static SPF_dns_rr_t *spf_dns_rr_from(struct spf_worker *w, const struct resolver_answer *a)
{
	SPF_dns_rr_t *rr = SPF_dns_rr_new_init(&w->dns, w->q_domain, w->q_type, 0,
					       spf_dns_herrno(a->err));

	if (!rr || a->err)
		return rr;
	for (unsigned i = 0; i < a->n; i++) {
		const struct resolver_rr *x = &a->rr[i];
		size_t need = x->len + 1 > sizeof(SPF_dns_rr_data_t) ? x->len + 1
								    : sizeof(SPF_dns_rr_data_t);

		if (SPF_dns_rr_buf_realloc(rr, (int)i, need) != SPF_E_SUCCESS) {
			SPF_dns_rr_free(rr);
			return NULL;
		}
		/* x->data is NUL-terminated for names and text. */
		memcpy(rr->rr[i], x->data, x->type == RESOLVER_T_A || x->type == RESOLVER_T_AAAA
						   ? x->len : x->len + 1);
		rr->num_rr = (int)i + 1;
	}
	return rr;
}

/* On the resolver thread: hand the answer to the waiting worker. */
static void spf_dns_answer(void *cookie, const struct resolver_answer *a)
{
	struct spf_worker *w = cookie;
	SPF_dns_rr_t *rr = spf_dns_rr_from(w, a);

	pthread_mutex_lock(&w->mu);
	w->rr = rr;
	w->answered = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* libspf2's lookup: every DNS question of a check comes through here. */
static SPF_dns_rr_t *spf_dns_lookup(SPF_dns_server_t *d, const char *domain, ns_type type,
				    int should_cache)
{
	struct spf_worker *w = d->hook;
	enum resolver_rrtype rt;
	uint64_t now = now_mono_ms();
	SPF_dns_rr_t *rr;
	int first;

	(void)should_cache;
	/* libspf2 asks for type SPF (99) first: RFC 7208 3.1 retired it,
	 * so it is NODATA here, without a query, and TXT comes next. */
	if (spf_dns_rtype(type, &rt))
		return SPF_dns_rr_new_init(d, domain, type, 0, NO_DATA);
	first = w->queries++ == 0;
	if (now >= w->deadline_ms) {
		w->timed_out = 1;
		return SPF_dns_rr_new_init(d, domain, type, 0, TRY_AGAIN);
	}
	w->q_domain = domain;
	w->q_type = type;
	w->answered = 0;
	w->rr = NULL;
	if (resolver_query(w->r, domain, rt, (unsigned)(w->deadline_ms - now), spf_dns_answer, w))
		return SPF_dns_rr_new_init(d, domain, type, 0, TRY_AGAIN);
	pthread_mutex_lock(&w->mu);
	while (!w->answered)
		pthread_cond_wait(&w->cv, &w->mu);
	rr = w->rr;
	pthread_mutex_unlock(&w->mu);
	if (!rr)
		return SPF_dns_rr_new_init(d, domain, type, 0, TRY_AGAIN);
	/* The first question is the sender's own record: its absence is the
	 * result none, not a void lookup. */
	if (!first && (rr->herrno == HOST_NOT_FOUND || rr->herrno == NO_DATA))
		w->voids++;
	if (rr->herrno == TRY_AGAIN && now_mono_ms() >= w->deadline_ms)
		w->timed_out = 1;
	return rr;
}

/* libspf2 calls these for its own messages: peers' records make warnings,
 * so they are debug lines; an error is libspf2's broken invariant. */
static void spf_log_warning(const char *file, int line, const char *msg)
{
	(void)file;
	(void)line;
	log_debug("spf: libspf2: %s", msg);
}

__attribute__((noreturn)) static void spf_log_error(const char *file, int line,
							 const char *msg)
{
	panic("spf: libspf2 %s:%d: %s", file, line, msg);
}

static pthread_once_t spf_log_once = PTHREAD_ONCE_INIT;

static void spf_log_init(void)
{
	SPF_error_handler = spf_log_error;
	SPF_warning_handler = spf_log_warning;
	SPF_info_handler = spf_log_warning;
	SPF_debug_handler = spf_log_warning;
}

static struct spf_worker *spf_worker_new(struct resolver *r)
{
	struct spf_worker *w = calloc(1, sizeof(*w));

	pthread_once(&spf_log_once, spf_log_init);
	if (!w)
		return NULL;
	w->r = r;
	w->dns.destroy = NULL; /* ours: SPF_server_free() leaves it alone */
	w->dns.lookup = spf_dns_lookup;
	w->dns.name = "etrnd";
	w->dns.hook = w;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->srv = SPF_server_new_dns(&w->dns, 0);
	if (!w->srv) {
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		free(w);
		return NULL;
	}
	SPF_server_set_max_dns_mech(w->srv, SPF_DNS_MECH_MAX);
	SPF_server_set_max_dns_mx(w->srv, SPF_DNS_NAMES_MAX);
	SPF_server_set_max_dns_ptr(w->srv, SPF_DNS_NAMES_MAX);
	SPF_server_set_sanitize(w->srv, 1);
	return w;
}

static void spf_worker_free(struct spf_worker *w)
{
	if (!w)
		return;
	SPF_server_free(w->srv);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

/* ---- one check ------------------------------------------------------------- */

/*
 * libspf2's SPF_request_query_mailfrom() without its first step, which
 * answers pass for any loopback client ("localhost is always allowed"):
 * RFC 7208 knows no such exception, and a relay behind a local proxy
 * would pass everything. The rest is the library's own sequence, through
 * its public functions.
 */
static SPF_errcode_t spf_query(SPF_server_t *srv, SPF_request_t *req, SPF_response_t **respp)
{
	SPF_record_t *rec = NULL;
	SPF_errcode_t err;

	*respp = SPF_response_new(req);
	if (!*respp)
		return SPF_E_NO_MEMORY;
	req->cur_dom = req->use_helo ? req->helo_dom : req->env_from_dp;
	err = SPF_server_get_record(srv, req, *respp, &rec);
	if (err != SPF_E_SUCCESS) {
		if (rec)
			SPF_record_free(rec);
		return err;
	}
	(*respp)->spf_record_exp = rec;
	err = SPF_record_interpret(rec, req, *respp, 0);
	SPF_record_free(rec);
	return err;
}

/* The request for q on w's server; NULL (and v filled) when q is unusable. */
static SPF_request_t *spf_request(struct spf_worker *w, const struct spf_query *q,
				  struct spf_verdict *v)
{
	SPF_request_t *req = SPF_request_new(w->srv);
	struct in6_addr a6;
	SPF_errcode_t e;

	if (!req) {
		v->res = SPF_RES_TEMPERROR;
		snprintf(v->comment, sizeof(v->comment), "out of memory");
		return NULL;
	}
	if (inet_pton(AF_INET6, q->client, &a6) != 1) {
		e = SPF_request_set_ipv4_str(req, q->client);
	} else if (IN6_IS_ADDR_V4MAPPED(&a6)) {
		/* A dual-stack listener's IPv4 client: checked as IPv4. */
		struct in_addr a4;

		memcpy(&a4, &a6.s6_addr[12], sizeof(a4));
		e = SPF_request_set_ipv4(req, a4);
	} else {
		e = SPF_request_set_ipv6(req, a6);
	}
	if (e == SPF_E_SUCCESS && q->helo[0])
		e = SPF_request_set_helo_dom(req, q->helo);
	/* The null sender: libspf2 checks postmaster@HELO (RFC 7208 2.4). */
	if (e == SPF_E_SUCCESS)
		e = SPF_request_set_env_from(req, q->sender);
	if (e != SPF_E_SUCCESS) {
		v->res = SPF_RES_NONE;
		snprintf(v->comment, sizeof(v->comment), "nothing to check: %s", SPF_strerror(e));
		SPF_request_free(req);
		return NULL;
	}
	return req;
}

static void spf_eval_on(struct spf_worker *w, const struct spf_query *q, unsigned timeout_ms,
			struct spf_verdict *v)
{
	SPF_request_t *req;
	SPF_response_t *resp = NULL;
	const char *at = strrchr(q->sender, '@');
	SPF_errcode_t e;

	memset(v, 0, sizeof(*v));
	v->helo_identity = q->sender[0] == '\0';
	spf_printable(v->domain, sizeof(v->domain), v->helo_identity ? q->helo : at ? at + 1 : "");
	if (!v->domain[0]) {
		v->res = SPF_RES_NONE;
		snprintf(v->comment, sizeof(v->comment), "no domain to check");
		return;
	}
	w->deadline_ms = now_mono_ms() + timeout_ms;
	w->queries = w->voids = 0;
	w->timed_out = 0;
	req = spf_request(w, q, v);
	if (!req)
		return;
	e = spf_query(w->srv, req, &resp);
	v->res = resp ? spf_res_from(SPF_response_result(resp), e) : SPF_RES_TEMPERROR;
	spf_printable(v->comment, sizeof(v->comment),
		      resp ? SPF_response_get_header_comment(resp) : "out of memory");
	if (!v->comment[0])
		snprintf(v->comment, sizeof(v->comment), "%.200s: %s", v->domain, SPF_strerror(e));
	if (w->timed_out) {
		/* RFC 7208 4.6.4: out of time is temperror, whatever libspf2
		 * made of the lookups it could not do. */
		v->res = SPF_RES_TEMPERROR;
		snprintf(v->comment, sizeof(v->comment), "%.200s: no answer within %u ms",
			 v->domain, timeout_ms);
	} else if (w->voids > SPF_VOID_MAX && v->res != SPF_RES_TEMPERROR) {
		/* libspf2 has no void-lookup limit; RFC 7208 4.6.4 makes it
		 * permerror. */
		v->res = SPF_RES_PERMERROR;
		snprintf(v->comment, sizeof(v->comment), "%.200s: more than %d void DNS lookups",
			 v->domain, SPF_VOID_MAX);
	}
	SPF_response_free(resp);
	SPF_request_free(req);
}

void spf_eval(struct resolver *r, const struct spf_query *q, unsigned timeout_ms,
	      struct spf_verdict *v)
{
	struct spf_worker *w = spf_worker_new(r);

	if (!w) {
		memset(v, 0, sizeof(*v));
		v->res = SPF_RES_TEMPERROR;
		snprintf(v->comment, sizeof(v->comment), "out of memory");
		return;
	}
	spf_eval_on(w, q, timeout_ms ? timeout_ms : SPF_TIMEOUT_MS_DEFAULT, v);
	spf_worker_free(w);
}

/* ---- the pool ------------------------------------------------------------- */

struct spf {
	struct resolver *r;
	unsigned timeout_ms;
	struct workpool *pool;
};

struct spf_job {
	struct workpool_job head;           /* first */
	spf_done_fn done;
	void *arg;
	char client[SPF_CLIENT_MAX];
	char helo[SPF_IDENT_MAX];
	char sender[SPF_IDENT_MAX];
	char receiver[SPF_IDENT_MAX];
	int too_long;                       /* an identity did not fit */
	struct spf_verdict v;
};

static void *spf_pool_thread_start(void *arg)
{
	struct spf *s = arg;

	return spf_worker_new(s->r);
}

static void spf_pool_thread_end(void *arg, void *ctx)
{
	(void)arg;
	spf_worker_free(ctx);
}

static void spf_pool_work(void *arg, void *ctx, struct workpool_job *j)
{
	struct spf *s = arg;
	struct spf_job *job = (struct spf_job *)j;
	struct spf_query q = { .client = job->client, .helo = job->helo,
			       .sender = job->sender, .receiver = job->receiver };

	if (job->too_long) {
		memset(&job->v, 0, sizeof(job->v));
		job->v.res = SPF_RES_PERMERROR;
		snprintf(job->v.comment, sizeof(job->v.comment), "an identity too long to check");
		return;
	}
	spf_eval_on(ctx, &q, s->timeout_ms, &job->v);
}

static void spf_pool_done(struct workpool_job *j)
{
	struct spf_job *job = (struct spf_job *)j;

	job->done(job->arg, &job->v);
}

struct spf *spf_start(struct resolver *r, unsigned workers, unsigned timeout_ms, char *err,
		      size_t errlen)
{
	struct spf *s = calloc(1, sizeof(*s));
	struct workpool_conf c = {
		.name = "spf",
		.threads = workers ? workers : SPF_WORKERS_DEFAULT,
		.jobs = SPF_QUEUE_MAX,
		.job_size = sizeof(struct spf_job),
		.thread_start = spf_pool_thread_start,
		.thread_end = spf_pool_thread_end,
		.work = spf_pool_work,
	};

	if (!s) {
		snprintf(err, errlen, "spf: out of memory");
		return NULL;
	}
	s->r = r;
	s->timeout_ms = timeout_ms ? timeout_ms : SPF_TIMEOUT_MS_DEFAULT;
	c.arg = s;
	s->pool = workpool_start(&c, err, errlen);
	if (!s->pool) {
		free(s);
		return NULL;
	}
	return s;
}

/* Copy src into a job field; 0, or -1 when it does not fit (an identity
 * that long is no domain SPF can check). */
static int spf_copy(char *dst, size_t dstlen, const char *src)
{
	size_t n = strlen(src ? src : "");

	if (n >= dstlen)
		return -1;
	memcpy(dst, src ? src : "", n + 1);
	return 0;
}

int spf_check(struct spf *s, struct loop *l, const struct spf_query *q, spf_done_fn done,
	      void *arg)
{
	struct spf_job *job = (struct spf_job *)workpool_job_get(s->pool);

	if (!job)
		return -EAGAIN;
	job->head.l = l;
	job->head.done = spf_pool_done;
	job->done = done;
	job->arg = arg;
	if (spf_copy(job->client, sizeof(job->client), q->client) ||
	    spf_copy(job->helo, sizeof(job->helo), q->helo) ||
	    spf_copy(job->sender, sizeof(job->sender), q->sender) ||
	    spf_copy(job->receiver, sizeof(job->receiver), q->receiver)) {
		/* Too long for any domain name (RFC 1035 2.3.4). */
		job->too_long = 1;
	}
	workpool_submit(s->pool, &job->head);
	return 0;
}

unsigned spf_busy(struct spf *s)
{
	return workpool_busy(s->pool);
}

struct spf *spf_free(struct spf *s)
{
	if (!s)
		return NULL;
	workpool_free(s->pool);
	free(s);
	return NULL;
}
