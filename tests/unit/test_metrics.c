/* SPDX-License-Identifier: MIT */
/* Tests for core/metrics.c: metrics_format()'s output passes a strict parser
 * of the Prometheus text exposition format (0.0.4; the parser is itself
 * tested on a table of broken expositions), counters and gauges from
 * several threads add up exactly, the fsync histogram is cumulative, and
 * the reply-code mappings. promtool checks the same output where installed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/metrics.h"
#include "engine_fixture.h"
#include "proto/smtp_server.h"

#define EXPO_FAMILIES_MAX 128
#define EXPO_SERIES_MAX 1024
#define EXPO_NAME_MAX 128
#define EXPO_SERIES_KEY_MAX 256
#define EXPO_ERR_MAX 256

/* The strict parser's state for one exposition. */
struct expo_family {
	char name[EXPO_NAME_MAX];
	char type[16];      /* "" until # TYPE */
	int help_seen;
	int samples_seen;
	double last_le;     /* histogram: previous bucket's le and value */
	double last_bucket;
	double inf_bucket;
	int inf_seen;
};

struct expo {
	struct expo_family fam[EXPO_FAMILIES_MAX];
	size_t nfam;
	int cur;            /* family of the previous sample, -1 none */
	char (*series)[EXPO_SERIES_KEY_MAX];
	size_t nseries;
	char err[EXPO_ERR_MAX];
};

static int expo_fail(struct expo *e, size_t line, const char *what)
{
	snprintf(e->err, sizeof e->err, "line %zu: %s", line, what);
	return -1;
}

static int expo_name_ok(const char *s, size_t n)
{
	if (n == 0 || n >= EXPO_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
		if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
			return 0;
	}
	return 1;
}

static struct expo_family *expo_family(struct expo *e, const char *name, size_t n, int add)
{
	for (size_t i = 0; i < e->nfam; i++)
		if (strlen(e->fam[i].name) == n && memcmp(e->fam[i].name, name, n) == 0)
			return &e->fam[i];
	if (!add || e->nfam == EXPO_FAMILIES_MAX)
		return NULL;
	struct expo_family *f = &e->fam[e->nfam++];
	memset(f, 0, sizeof *f);
	memcpy(f->name, name, n);
	return f;
}

static int expo_value(const char *s, double *v)
{
	if (strcmp(s, "+Inf") == 0 || strcmp(s, "-Inf") == 0 || strcmp(s, "NaN") == 0) {
		*v = s[0] == '-' ? -1e308 : 1e308;
		return 0;
	}
	char *end;
	errno = 0;
	*v = strtod(s, &end);
	return (end == s || *end || errno) ? -1 : 0;
}

/* "# HELP name text" or "# TYPE name type"; other comments pass. */
static int expo_comment(struct expo *e, size_t ln, const char *l)
{
	int help = strncmp(l, "# HELP ", 7) == 0, type = strncmp(l, "# TYPE ", 7) == 0;
	if (!help && !type)
		return 0;
	const char *name = l + 7, *sp = strchr(name, ' ');
	if (!sp || !expo_name_ok(name, (size_t)(sp - name)))
		return expo_fail(e, ln, "bad name in HELP/TYPE");
	struct expo_family *f = expo_family(e, name, (size_t)(sp - name), 1);
	if (!f)
		return expo_fail(e, ln, "too many families");
	if (help) {
		if (f->help_seen++)
			return expo_fail(e, ln, "second HELP");
		return 0;
	}
	static const char *types[] = { "counter", "gauge", "histogram", "summary", "untyped" };
	int known = 0;
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		known |= strcmp(sp + 1, types[i]) == 0;
	if (!known)
		return expo_fail(e, ln, "unknown TYPE");
	if (f->type[0])
		return expo_fail(e, ln, "second TYPE");
	if (f->samples_seen)
		return expo_fail(e, ln, "TYPE after the family's samples");
	snprintf(f->type, sizeof f->type, "%s", sp + 1);
	if (strcmp(f->type, "counter") == 0 &&
	    (strlen(f->name) < 6 || strcmp(f->name + strlen(f->name) - 6, "_total")))
		return expo_fail(e, ln, "counter without _total");
	return 0;
}

/* 'a="x",b="y"' up to the closing brace; *le gets the le label's value. */
static const char *expo_labels(const char *p, char *le, size_t lelen)
{
	le[0] = 0;
	while (*p != '}') {
		const char *n = p;
		while (*p && *p != '=')
			p++;
		if (*p != '=' || !expo_name_ok(n, (size_t)(p - n)) || p[1] != '"')
			return NULL;
		int is_le = p - n == 2 && memcmp(n, "le", 2) == 0;
		size_t vl = 0;
		for (p += 2; *p != '"'; p++) {
			if (!*p || *p == '\n')
				return NULL;
			if (*p == '\\' && (p[1] == '\\' || p[1] == '"' || p[1] == 'n'))
				p++;
			else if (*p == '\\')
				return NULL;
			if (is_le && vl + 1 < lelen)
				le[vl++] = *p;
		}
		if (is_le)
			le[vl] = 0;
		p++;
		if (*p == ',')
			p++;
		else if (*p != '}')
			return NULL;
	}
	return p + 1;
}

/* The family a sample name belongs to: a histogram's _bucket/_sum/_count
 * rows belong to the histogram's family. */
static struct expo_family *expo_sample_family(struct expo *e, const char *n, size_t len,
		const char **suffix)
{
	static const char *sfx[] = { "_bucket", "_sum", "_count" };
	*suffix = "";
	for (size_t i = 0; i < 3; i++) {
		size_t sl = strlen(sfx[i]);
		if (len > sl && memcmp(n + len - sl, sfx[i], sl) == 0) {
			struct expo_family *f = expo_family(e, n, len - sl, 0);
			if (f && strcmp(f->type, "histogram") == 0) {
				*suffix = sfx[i];
				return f;
			}
		}
	}
	return expo_family(e, n, len, 0);
}

static int expo_histogram(struct expo *e, size_t ln, struct expo_family *f,
		const char *suffix, const char *le, double v)
{
	if (strcmp(suffix, "_bucket") == 0) {
		double lev;
		if (!le[0] || expo_value(le, &lev) < 0)
			return expo_fail(e, ln, "bucket without a valid le");
		if (f->samples_seen > 1 && (lev <= f->last_le || v < f->last_bucket))
			return expo_fail(e, ln, "buckets not cumulative or le not increasing");
		f->last_le = lev;
		f->last_bucket = v;
		if (strcmp(le, "+Inf") == 0) {
			f->inf_seen = 1;
			f->inf_bucket = v;
		}
	} else if (strcmp(suffix, "_count") == 0) {
		if (!f->inf_seen || v != f->inf_bucket)
			return expo_fail(e, ln, "_count is not the +Inf bucket");
	} else if (!suffix[0]) {
		return expo_fail(e, ln, "bare sample of a histogram");
	}
	return 0;
}

/* One sample line, checked against its family's TYPE and the rest. */
static int expo_sample(struct expo *e, size_t ln, char *l)
{
	const char *p = l;
	while (*p && *p != '{' && *p != ' ')
		p++;
	size_t nlen = (size_t)(p - l);
	if (!expo_name_ok(l, nlen))
		return expo_fail(e, ln, "bad metric name");
	char le[32];
	le[0] = 0;
	if (*p == '{' && !(p = expo_labels(p + 1, le, sizeof le)))
		return expo_fail(e, ln, "bad labels");
	if (*p != ' ')
		return expo_fail(e, ln, "no space before the value");
	const char *suffix;
	struct expo_family *f = expo_sample_family(e, l, nlen, &suffix);
	if (!f || !f->type[0])
		return expo_fail(e, ln, "sample without a TYPE");
	int idx = (int)(f - e->fam);
	if (f->samples_seen && e->cur != idx)
		return expo_fail(e, ln, "family's samples not together");
	e->cur = idx;
	f->samples_seen++;
	size_t klen = (size_t)(p - l);
	if (klen >= EXPO_SERIES_KEY_MAX || e->nseries == EXPO_SERIES_MAX)
		return expo_fail(e, ln, "series too long or too many");
	for (size_t i = 0; i < e->nseries; i++)
		if (strlen(e->series[i]) == klen && memcmp(e->series[i], l, klen) == 0)
			return expo_fail(e, ln, "duplicate series");
	memcpy(e->series[e->nseries], l, klen);
	e->series[e->nseries++][klen] = 0;
	char val[64];
	const char *vs = p + 1, *ts = strchr(vs, ' ');
	size_t vl = ts ? (size_t)(ts - vs) : strlen(vs);
	double v;
	if (vl == 0 || vl >= sizeof val)
		return expo_fail(e, ln, "bad value");
	memcpy(val, vs, vl);
	val[vl] = 0;
	if (expo_value(val, &v) < 0)
		return expo_fail(e, ln, "bad value");
	if (strcmp(f->type, "counter") == 0 && v < 0)
		return expo_fail(e, ln, "negative counter");
	if (strcmp(f->type, "histogram") == 0)
		return expo_histogram(e, ln, f, suffix, le, v);
	return 0;
}

/* 0 when text is a valid exposition, else -1 with e->err set. */
static int expo_check(struct expo *e, const char *text, size_t len)
{
	memset(e, 0, sizeof *e);
	e->cur = -1;
	e->series = calloc(EXPO_SERIES_MAX, sizeof *e->series);
	cr_assert_not_null(e->series);
	int rc = 0;
	if (len == 0 || text[len - 1] != '\n')
		rc = expo_fail(e, 0, "not ending in a newline");
	size_t ln = 0;
	for (size_t i = 0; rc == 0 && i < len; ln++) {
		const char *nl = memchr(text + i, '\n', len - i);
		size_t n = (size_t)(nl - (text + i));
		char *l = strndup(text + i, n);
		cr_assert_not_null(l);
		if (strlen(l) != n)
			rc = expo_fail(e, ln, "NUL byte");
		else if (n == 0)
			rc = 0; /* blank lines are ignored by the format */
		else if (l[0] == '#')
			rc = expo_comment(e, ln, l);
		else
			rc = expo_sample(e, ln, l);
		free(l);
		i += n + 1;
	}
	for (size_t i = 0; rc == 0 && i < e->nfam; i++)
		if (strcmp(e->fam[i].type, "histogram") == 0 && e->fam[i].samples_seen &&
		    !e->fam[i].inf_seen)
			rc = expo_fail(e, ln, "histogram without +Inf");
	free(e->series);
	return rc;
}

struct expo_case {
	const char *name;
	const char *text;
	int want_ok;
};

static const struct expo_case expo_cases[] = {
	{ "good counter", "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n", 1 },
	{ "good labels", "# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\"} 2\n", 1 },
	{ "good histogram", "# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\n"
	  "h_bucket{le=\"+Inf\"} 2\nh_sum 0.3\nh_count 2\n", 1 },
	{ "no final newline", "# TYPE a_total counter\na_total 1", 0 },
	{ "no TYPE", "a_total 1\n", 0 },
	{ "TYPE twice", "# TYPE g gauge\n# TYPE g gauge\ng 1\n", 0 },
	{ "TYPE after sample", "# TYPE g gauge\ng 1\n# TYPE g gauge\n", 0 },
	{ "unknown type", "# TYPE g meter\ng 1\n", 0 },
	{ "counter without _total", "# TYPE c counter\nc 1\n", 0 },
	{ "split family", "# TYPE g gauge\n# TYPE k gauge\ng{a=\"1\"} 1\nk 1\ng{a=\"2\"} 1\n", 0 },
	{ "duplicate series", "# TYPE g gauge\ng{a=\"1\"} 1\ng{a=\"1\"} 2\n", 0 },
	{ "bad name", "# TYPE 1g gauge\n1g 1\n", 0 },
	{ "bad value", "# TYPE g gauge\ng one\n", 0 },
	{ "unterminated label", "# TYPE g gauge\ng{a=\"1} 1\n", 0 },
	{ "bad escape", "# TYPE g gauge\ng{a=\"\\x\"} 1\n", 0 },
	{ "negative counter", "# TYPE a_total counter\na_total -1\n", 0 },
	{ "buckets decrease", "# TYPE h histogram\nh_bucket{le=\"0.1\"} 3\n"
	  "h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n", 0 },
	{ "count is not +Inf", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n", 0 },
	{ "no +Inf bucket", "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\n", 0 },
	{ "bare histogram sample", "# TYPE h histogram\nh 2\n", 0 },
};

Test(metrics, parser_rejects_what_it_must)
{
	struct expo *e = malloc(sizeof *e);
	cr_assert_not_null(e);
	for (size_t i = 0; i < sizeof expo_cases / sizeof expo_cases[0]; i++) {
		const struct expo_case *c = &expo_cases[i];
		int ok = expo_check(e, c->text, strlen(c->text)) == 0;
		cr_expect_eq(ok, c->want_ok, "%s: want %s, got %s (%s)", c->name,
			     c->want_ok ? "valid" : "invalid", ok ? "valid" : "invalid", e->err);
	}
	free(e);
}

/* The sample value of the line starting with key ("name" or
 * "name{labels}") followed by a space; fails the test when absent. */
static uint64_t expo_sample_value(const struct buf *b, const char *key)
{
	size_t kl = strlen(key);
	for (size_t i = 0; i < b->len;) {
		const char *l = b->data + i, *nl = memchr(l, '\n', b->len - i);
		cr_assert_not_null(nl);
		if ((size_t)(nl - l) > kl && memcmp(l, key, kl) == 0 && l[kl] == ' ')
			return strtoull(l + kl + 1, NULL, 10);
		i += (size_t)(nl - l) + 1;
	}
	cr_assert_fail("no sample %s", key);
	return 0;
}

static void format_and_check(struct buf *b)
{
	struct expo *e = malloc(sizeof *e);
	cr_assert_not_null(e);
	buf_init(b, 0);
	cr_assert_eq(metrics_format(b), 0);
	int rc = expo_check(e, b->data, b->len);
	cr_assert_eq(rc, 0, "exposition invalid: %s\n%.*s", e->err, (int)b->len, b->data);
	free(e);
}

static void metrics_setup(void)
{
	cr_assert_eq(metrics_init(4), 0);
}

static void metrics_teardown(void)
{
	metrics_free();
}

Test(metrics, format_is_valid_exposition, .init = metrics_setup, .fini = metrics_teardown)
{
	struct buf b;
	for (int id = 0; id < METRIC_COUNT; id++)
		metrics_add((enum metric_id)id, (uint64_t)id + 1);
	metrics_fsync_observe(120);
	metrics_fsync_observe(5000000);
	format_and_check(&b);
	cr_expect_eq(expo_sample_value(&b, "etrnd_connections_accepted_total"), 1);
	cr_expect_eq(expo_sample_value(&b, "etrnd_etrn_requests_total{code=\"253\"}"),
		     METRIC_ETRN_253 + 1);
	cr_expect_eq(expo_sample_value(&b, "etrnd_spool_fsync_seconds_count"), 2);
	/* Every row is in the output, under its prefix. */
	for (int id = 0; id < METRIC_COUNT; id++)
		cr_expect_eq(metrics_value((enum metric_id)id),
			     (id == METRIC_HELD_MESSAGES || id == METRIC_HELD_BYTES) ? 0u
			     : (uint64_t)id + 1, "row %d", id);
	buf_free(&b);
}

Test(metrics, empty_registry_is_valid, .init = metrics_setup, .fini = metrics_teardown)
{
	struct buf b;
	format_and_check(&b);
	cr_expect_eq(expo_sample_value(&b, "etrnd_held_messages{shard=\"3\"}"), 0);
	cr_expect_eq(expo_sample_value(&b, "etrnd_spool_fsync_seconds_bucket{le=\"+Inf\"}"), 0);
	buf_free(&b);
}

Test(metrics, format_never_leaves_half_an_exposition, .init = metrics_setup,
     .fini = metrics_teardown)
{
	struct buf b;
	buf_init(&b, 64);
	cr_assert_eq(buf_puts(&b, "kept"), 0);
	cr_expect_eq(metrics_format(&b), -ENOMEM);
	cr_expect_eq(b.len, 4);
	buf_free(&b);
}

#define ADDERS 6
#define ADDS_PER_THREAD 100000

struct adder {
	int engine;  /* engine index, or -1: an unattached (control) thread */
	pthread_barrier_t *go;
};

static void *adder_run(void *arg)
{
	struct adder *a = arg;
	if (a->engine >= 0)
		metrics_thread_attach((unsigned)a->engine);
	pthread_barrier_wait(a->go);
	for (int i = 0; i < ADDS_PER_THREAD; i++) {
		metrics_add(METRIC_MSGS_RECEIVED, 1);
		metrics_add(METRIC_BYTES_RECEIVED, 3);
		metrics_add(METRIC_CONN_OPEN, 1);
		metrics_fsync_observe((uint64_t)i % 2000);
		metrics_sub(METRIC_CONN_OPEN, 1);
	}
	/* One connection left open per thread; the gauge of a thread that
	 * only closed (another's connection) goes "negative" alone. */
	metrics_add(METRIC_CONN_OPEN, 2);
	metrics_sub(METRIC_CONN_OPEN, 1);
	if (a->engine >= 0)
		metrics_set(METRIC_HELD_MESSAGES, (uint64_t)a->engine + 10);
	return NULL;
}

Test(metrics, counters_from_threads_add_up, .init = metrics_setup, .fini = metrics_teardown)
{
	/* Engines 0..3 own a slot each; two more threads share the other
	 * slot (and race on it); engine 1 twice would be a bug of the
	 * caller, not exercised. */
	static const int engines[ADDERS] = { 0, 1, 2, 3, -1, -1 };
	pthread_t th[ADDERS];
	struct adder a[ADDERS];
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, ADDERS);
	for (int i = 0; i < ADDERS; i++) {
		a[i] = (struct adder){ engines[i], &go };
		cr_assert_eq(pthread_create(&th[i], NULL, adder_run, &a[i]), 0);
	}
	for (int i = 0; i < ADDERS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&go);
	metrics_sub(METRIC_CONN_OPEN, 1); /* this thread closes one */

	uint64_t n = (uint64_t)ADDERS * ADDS_PER_THREAD;
	cr_expect_eq(metrics_value(METRIC_MSGS_RECEIVED), n);
	cr_expect_eq(metrics_value(METRIC_BYTES_RECEIVED), 3 * n);
	cr_expect_eq(metrics_value(METRIC_CONN_OPEN), ADDERS - 1);
	cr_expect_eq(metrics_value(METRIC_HELD_MESSAGES), 10 + 11 + 12 + 13);
	struct buf b;
	format_and_check(&b);
	char key[96];
	snprintf(key, sizeof key, "etrnd_messages_received_total");
	cr_expect_eq(expo_sample_value(&b, key), n);
	cr_expect_eq(expo_sample_value(&b, "etrnd_connections_open"), ADDERS - 1);
	cr_expect_eq(expo_sample_value(&b, "etrnd_held_messages{shard=\"2\"}"), 12);
	cr_expect_eq(expo_sample_value(&b, "etrnd_spool_fsync_seconds_count"), n);
	buf_free(&b);
}

Test(metrics, gauge_below_zero_prints_signed, .init = metrics_setup, .fini = metrics_teardown)
{
	metrics_sub(METRIC_DRAINS_RUNNING, 2);
	struct buf b;
	format_and_check(&b);
	cr_expect(memmem(b.data, b.len, "\netrnd_drains_running -2\n", 25) != NULL);
	buf_free(&b);
}

struct fsync_case {
	uint64_t us;
	const char *le; /* the smallest bucket that counts it */
};

static const struct fsync_case fsync_cases[] = {
	{ 0, "0.000100" },
	{ 100, "0.000100" },      /* le is inclusive */
	{ 101, "0.000250" },
	{ 150, "0.000250" },
	{ 1000, "0.001000" },
	{ 1000000, "1.000000" },
	{ 1000001, "+Inf" },
	{ UINT64_MAX / 2, "+Inf" },
};

Test(metrics, fsync_histogram_cumulative, .init = metrics_setup, .fini = metrics_teardown)
{
	size_t n = sizeof fsync_cases / sizeof fsync_cases[0];
	for (size_t i = 0; i < n; i++) {
		metrics_init(4);
		metrics_fsync_observe(fsync_cases[i].us);
		struct buf b;
		format_and_check(&b);
		/* 0 in every bucket below the case's, 1 from it up. */
		int reached = 0;
		for (size_t at = 0; at < b.len;) {
			const char *l = b.data + at, *nl = memchr(l, '\n', b.len - at);
			static const char pre[] = "etrnd_spool_fsync_seconds_bucket{le=\"";
			if (strncmp(l, pre, sizeof pre - 1) == 0) {
				const char *le = l + sizeof pre - 1, *q = strchr(le, '"');
				if ((size_t)(q - le) == strlen(fsync_cases[i].le) &&
				    memcmp(le, fsync_cases[i].le, (size_t)(q - le)) == 0)
					reached = 1;
				cr_expect_eq(strtoull(q + 3, NULL, 10), (uint64_t)reached,
					     "%" PRIu64 " us: %.*s", fsync_cases[i].us,
					     (int)(nl - l), l);
			}
			at += (size_t)(nl - l) + 1;
		}
		cr_expect(reached, "%" PRIu64 " us: no bucket %s", fsync_cases[i].us,
			  fsync_cases[i].le);
		buf_free(&b);
	}
	/* Several observations: cumulative counts and the sum in seconds. */
	metrics_init(4);
	metrics_fsync_observe(50);
	metrics_fsync_observe(300);
	metrics_fsync_observe(300);
	metrics_fsync_observe(2000000);
	struct buf b;
	format_and_check(&b);
	cr_expect_eq(expo_sample_value(&b, "etrnd_spool_fsync_seconds_bucket{le=\"0.000100\"}"), 1);
	cr_expect_eq(expo_sample_value(&b, "etrnd_spool_fsync_seconds_bucket{le=\"0.000500\"}"), 3);
	cr_expect_eq(expo_sample_value(&b, "etrnd_spool_fsync_seconds_bucket{le=\"1.000000\"}"), 3);
	cr_expect_eq(expo_sample_value(&b, "etrnd_spool_fsync_seconds_count"), 4);
	cr_expect(memmem(b.data, b.len, "etrnd_spool_fsync_seconds_sum 2.000650\n", 39) != NULL);
	buf_free(&b);
}

struct code_case {
	int code;
	enum metric_id want;   /* METRIC_COUNT: counts nowhere */
};

static const struct code_case reply_cases[] = {
	{ 220, METRIC_REPLIES_2XX }, { 250, METRIC_REPLIES_2XX }, { 354, METRIC_REPLIES_3XX },
	{ 421, METRIC_REPLIES_4XX }, { 452, METRIC_REPLIES_4XX }, { 550, METRIC_REPLIES_5XX },
	{ 599, METRIC_REPLIES_5XX }, { 199, METRIC_COUNT }, { 600, METRIC_COUNT },
	{ -1, METRIC_COUNT },
};

static const struct code_case etrn_cases[] = {
	{ 250, METRIC_ETRN_250 }, { 251, METRIC_ETRN_251 }, { 252, METRIC_ETRN_252 },
	{ 253, METRIC_ETRN_253 }, { 458, METRIC_ETRN_458 }, { 459, METRIC_ETRN_459 },
	{ 500, METRIC_ETRN_5XX }, { 501, METRIC_ETRN_5XX }, { 554, METRIC_ETRN_5XX },
	{ 421, METRIC_COUNT }, { 220, METRIC_COUNT },
};

static const struct code_case atrn_cases[] = {
	{ 250, METRIC_ATRN_250 }, { 450, METRIC_ATRN_450 }, { 451, METRIC_ATRN_451 },
	{ 453, METRIC_ATRN_453 }, { 502, METRIC_ATRN_5XX }, { 530, METRIC_ATRN_5XX },
	{ 421, METRIC_COUNT }, { 251, METRIC_COUNT },
};

static void code_cases_run(const char *what, void (*count)(int), const struct code_case *c,
		size_t n)
{
	for (size_t i = 0; i < n; i++) {
		metrics_init(4);
		count(c[i].code);
		for (int id = 0; id < METRIC_COUNT; id++)
			cr_expect_eq(metrics_value((enum metric_id)id), id == (int)c[i].want,
				     "%s(%d): row %d", what, c[i].code, id);
	}
}

Test(metrics, reply_codes_map_to_rows, .init = metrics_setup, .fini = metrics_teardown)
{
	code_cases_run("metrics_reply", metrics_reply, reply_cases,
		       sizeof reply_cases / sizeof reply_cases[0]);
	code_cases_run("metrics_etrn_reply", metrics_etrn_reply, etrn_cases,
		       sizeof etrn_cases / sizeof etrn_cases[0]);
	code_cases_run("metrics_atrn_reply", metrics_atrn_reply, atrn_cases,
		       sizeof atrn_cases / sizeof atrn_cases[0]);
}

Test(metrics, init_bounds)
{
	cr_expect_eq(metrics_init(0), -EINVAL);
	cr_expect_eq(metrics_init(METRICS_SLOTS_MAX), -EINVAL);
	cr_expect_eq(metrics_init(METRICS_SLOTS_MAX - 1), 0);
	metrics_free();
}

struct replies_case {
	const char *text;
	uint64_t want[4];     /* 2xx..5xx */
	uint64_t want_etrn253, want_etrn5xx;
};

static const struct replies_case replies_cases[] = {
	{ "", { 0, 0, 0, 0 }, 0, 0 },
	{ "253 2.0.0 OK, 3 pending messages for node a.test started\r\n", { 1, 0, 0, 0 }, 1, 0 },
	/* A multi-line reply is one reply: only its last line counts. */
	{ "250-first\r\n250-second\r\n250 last\r\n", { 1, 0, 0, 0 }, 0, 0 },
	{ "501 5.5.4 Syntax\r\n458 4.3.0 Unable\r\n", { 0, 0, 1, 1 }, 0, 1 },
	{ "253\r\n", { 1, 0, 0, 0 }, 1, 0 },
	{ "253", { 1, 0, 0, 0 }, 1, 0 },
	{ "25", { 0, 0, 0, 0 }, 0, 0 },
	{ "\r\n\n", { 0, 0, 0, 0 }, 0, 0 },
	{ "abc def\r\n", { 0, 0, 0, 0 }, 0, 0 },
	{ "654 nonsense\r\n153 too\r\n", { 0, 0, 0, 0 }, 0, 0 },
};

Test(metrics, replies_counts_final_lines, .init = metrics_setup, .fini = metrics_teardown)
{
	static const enum metric_id cls[4] = {
		METRIC_REPLIES_2XX, METRIC_REPLIES_3XX, METRIC_REPLIES_4XX, METRIC_REPLIES_5XX,
	};
	for (size_t i = 0; i < sizeof replies_cases / sizeof replies_cases[0]; i++) {
		const struct replies_case *c = &replies_cases[i];
		struct buf b;
		buf_init(&b, 0);
		cr_assert_eq(buf_puts(&b, "220 before the offset\r\n"), 0);
		size_t from = b.len;
		cr_assert_eq(buf_append(&b, c->text, strlen(c->text)), 0);
		metrics_init(4);
		metrics_replies(&b, from, metrics_etrn_reply);
		for (int k = 0; k < 4; k++)
			cr_expect_eq(metrics_value(cls[k]), c->want[k], "case %zu class %dxx", i, k + 2);
		cr_expect_eq(metrics_value(METRIC_ETRN_253), c->want_etrn253, "case %zu", i);
		cr_expect_eq(metrics_value(METRIC_ETRN_5XX), c->want_etrn5xx, "case %zu", i);
		buf_free(&b);
	}
}

/* ---- one SMTP session through proto/smtp_server.c ------------------------ */

static enum smtp_rcpt_verdict s_rcpt_check(void *arg, const char *d, size_t len, int relay)
{
	static const struct { const char *dom; enum smtp_rcpt_verdict v; } doms[] = {
		{ "ok.test", SMTP_RCPT_OK }, { "temp.test", SMTP_RCPT_TEMPFAIL },
		{ "quota.test", SMTP_RCPT_OVER_QUOTA },
	};
	(void)arg;
	(void)relay;
	for (size_t i = 0; i < sizeof doms / sizeof doms[0]; i++)
		if (strlen(doms[i].dom) == len && memcmp(doms[i].dom, d, len) == 0)
			return doms[i].v;
	return SMTP_RCPT_DENY;
}

static void s_new_id(void *arg, uint64_t *msgid, char *qid)
{
	(void)arg;
	*msgid = 1;
	snprintf(qid, SMTP_QID_MAX, "%014X", 1u);
}

/* The drain's answer to a domain with mail (what proto/drain.c writes). */
static void s_etrn(void *arg, const char *client, const char *user, const char *node,
		   size_t len, struct buf *out)
{
	(void)arg;
	(void)client;
	(void)user;
	buf_printf(out, "253 2.0.0 OK, 2 pending messages for node %.*s started\r\n", (int)len, node);
}

/* A message of 26 bytes as the client means it: "Subject: x\r\n" (12),
 * "\r\n", "body\r\n" (6) and ".dot\r\n" (6, sent dot-stuffed). */
#define S_MSG_BYTES 26
static const char s_session[] =
	"EHLO client.test\r\nMAIL FROM:<a@sender.test>\r\n"
	"RCPT TO:<x@ok.test>\r\nRCPT TO:<y@far.test>\r\nRCPT TO:<z@temp.test>\r\n"
	"RCPT TO:<q@quota.test>\r\nRCPT TO:<nodomain>\r\nDATA\r\n"
	"Subject: x\r\n\r\nbody\r\n..dot\r\n.\r\nETRN ok.test\r\nETRN\r\nQUIT\r\n";

/* Feed s_session chunk bytes at a time (0: at once), committing each
 * message as stored. */
static void s_run(size_t chunk)
{
	struct smtp_server_conf conf = {
		.hostname = "mx.test",
		.limits = { .command_max = 512, .line_max = 1000, .max_recipients = 100,
			    .size_max = 1u << 20, .max_errors = 10 },
		.rcpt_check = s_rcpt_check, .new_id = s_new_id, .etrn = s_etrn,
	};
	size_t n = sizeof s_session - 1;
	struct buf out;
	enum smtp_event ev = SMTP_EV_NEED_INPUT;

	log_set_level(LOGL_ERR);
	buf_init(&out, 1u << 20);
	struct smtp_session *s = smtp_server_new(&conf, "192.0.2.1");
	cr_assert_not_null(s);
	smtp_server_greeting(s, &out);
	for (size_t i = 0; i < n && ev != SMTP_EV_CLOSE;) {
		size_t k = chunk && chunk < n - i ? chunk : n - i, off = 0;
		while (off < k && ev != SMTP_EV_CLOSE) {
			off += smtp_server_feed(s, s_session + i + off, k - off, &out, &ev);
			if (ev == SMTP_EV_COMMIT) {
				smtp_server_commit_done(s, 0, &out);
				ev = SMTP_EV_NEED_INPUT;
			}
		}
		i += k;
	}
	cr_assert_eq(ev, SMTP_EV_CLOSE, "%.*s", (int)out.len, out.data);
	smtp_server_free(s);
	buf_free(&out);
}

struct s_want {
	enum metric_id id;
	uint64_t want;
};

/* 220, EHLO's 250, MAIL 250, RCPT 250, 354, 250 queued, ETRN 253, 221;
 * 451 and 452; 550, 501 (no domain), ETRN 500. */
static const struct s_want s_wants[] = {
	{ METRIC_REPLIES_2XX, 7 }, { METRIC_REPLIES_3XX, 1 }, { METRIC_REPLIES_4XX, 2 },
	{ METRIC_REPLIES_5XX, 3 },
	{ METRIC_RCPT_REFUSED_RELAY, 1 }, { METRIC_RCPT_REFUSED_UNKNOWN, 1 },
	{ METRIC_RCPT_REFUSED_QUOTA, 1 }, { METRIC_RCPT_REFUSED_OTHER, 1 },
	{ METRIC_RCPT_REFUSED_ROUTING, 0 },
	{ METRIC_MSGS_RECEIVED, 1 }, { METRIC_BYTES_RECEIVED, S_MSG_BYTES },
	{ METRIC_ETRN_253, 1 }, { METRIC_ETRN_5XX, 1 }, { METRIC_ETRN_250, 0 },
};

Test(metrics, smtp_session_counts, .init = metrics_setup, .fini = metrics_teardown)
{
	static const size_t chunks[] = { 0, 1, 2, 7, 64 };
	for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
		metrics_init(4);
		s_run(chunks[c]);
		for (size_t i = 0; i < sizeof s_wants / sizeof s_wants[0]; i++)
			cr_expect_eq(metrics_value(s_wants[i].id), s_wants[i].want,
				     "chunk %zu: row %d: %" PRIu64 ", want %" PRIu64, chunks[c],
				     (int)s_wants[i].id, metrics_value(s_wants[i].id),
				     s_wants[i].want);
	}
}

/* ---- on a real engine thread: the spool's gauges and histogram ---------- */

#define T_DOMAIN "cust.test"
#define T_BODY "Subject: held\r\n\r\nwaiting for ETRN\r\n"
#define T_MSGS 3

static int attach_engine0(struct engine_fixture *f, void *arg)
{
	(void)f;
	(void)arg;
	metrics_thread_attach(0);
	return 0;
}

Test(metrics, spool_held_gauges_and_fsync, .init = metrics_setup, .fini = metrics_teardown)
{
	static const char *const rcpt[] = { "a@" T_DOMAIN };
	struct engine_fixture f;
	cr_assert_eq(metrics_init(1), 0);
	cr_assert_eq(engine_fixture_init(&f, engine_fixture_table_of(T_DOMAIN)), 0);
	f.setup = attach_engine0;
	cr_assert_eq(engine_fixture_start(&f), 0, "%s", f.err);
	cr_expect_eq(metrics_value(METRIC_HELD_MESSAGES), 0);
	for (int i = 0; i < T_MSGS; i++)
		cr_assert(engine_fixture_append(&f, "s@sender.test", rcpt, 1, T_BODY));
	/* Set on the engine thread before each append's callback ran. */
	cr_expect_eq(metrics_value(METRIC_HELD_MESSAGES), T_MSGS);
	uint64_t bytes = metrics_value(METRIC_HELD_BYTES);
	cr_expect_gt(bytes, T_MSGS * strlen(T_BODY), "held bytes %" PRIu64, bytes);
	struct buf b;
	format_and_check(&b);
	cr_expect_eq(expo_sample_value(&b, "etrnd_held_messages{shard=\"0\"}"), T_MSGS);
	/* sync = batch: every commit had a sync (one per append here, the
	 * first one's segment also its directory's). */
	uint64_t n = expo_sample_value(&b, "etrnd_spool_fsync_seconds_count");
	cr_expect_geq(n, T_MSGS, "fsyncs observed: %" PRIu64, n);
	buf_free(&b);
	engine_fixture_fini(&f);
}

/* promtool (Debian's prometheus package) on the same output, where it is
 * installed; otherwise the strict parser above is the check. */
Test(metrics, promtool_check_metrics, .init = metrics_setup, .fini = metrics_teardown)
{
	if (system("command -v promtool >/dev/null 2>&1") != 0) {
		cr_log_warn("promtool not installed: skipped (the strict parser ran)");
		cr_skip_test("promtool not installed");
	}
	for (int id = 0; id < METRIC_COUNT; id++)
		metrics_add((enum metric_id)id, 1);
	metrics_fsync_observe(700);
	struct buf b;
	format_and_check(&b);
	char path[] = "/tmp/etrnd-metrics-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, b.data, b.len), (ssize_t)b.len);
	close(fd);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
	int rc = system(cmd);
	unlink(path);
	cr_expect_eq(rc, 0, "promtool check metrics failed");
	buf_free(&b);
}

/* Out-of-range input is refused or ignored, never an out-of-bounds write:
 * an engine count of 0 or past the slots, a metric id past the table. */
Test(metrics, out_of_range_is_ignored, .init = metrics_setup, .fini = metrics_teardown)
{
	cr_expect_eq(metrics_init(0), -EINVAL);
	cr_expect_eq(metrics_init(100000), -EINVAL);
	metrics_add(METRIC_CONN_ACCEPTED, 3);
	metrics_add(METRIC_COUNT, 5);
	metrics_sub(METRIC_COUNT, 1);
	metrics_set(METRIC_COUNT, 7);
	metrics_add((enum metric_id)-1, 9);
	cr_expect_eq(metrics_value(METRIC_COUNT), 0);
	cr_expect_eq(metrics_value(METRIC_CONN_ACCEPTED), 3);
	for (unsigned m = 0; m < METRIC_COUNT; m++)
		if (m != METRIC_CONN_ACCEPTED)
			cr_expect_eq(metrics_value((enum metric_id)m), 0, "metric %u moved", m);
}
