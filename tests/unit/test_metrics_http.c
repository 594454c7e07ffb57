/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for admin/metrics_http.c's request-head parser (table-driven,
 * each case replayed whole, byte by byte and in other chunk sizes: the
 * answer never depends on how the bytes arrived) and for the node-wide
 * gauges' top domains (metrics_http_node.c): ranked by held bytes, then
 * messages, then name, cut at metrics_top_domains.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "admin/metrics_http.h"
#include "core/config.h"
#include "core/domtab.h"
#include "core/epoch.h"
#include "store/domstat.h"

struct t_case {
	const char *name;
	const char *in;
	size_t len;          /* 0: strlen(in) */
	int want;            /* > 0: the head's length */
	const char *want_path;
	int want_head;
};

#define T_OK(nm, s, path, head) { nm, s, 0, (int)sizeof(s) - 1, path, head }
#define T_ERR(nm, s, rc) { nm, s, sizeof(s) - 1, rc, NULL, 0 }

static const struct t_case t_cases[] = {
	T_OK("get 1.1", "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", "/metrics", 0),
	T_OK("get 1.0 bare LF", "GET /metrics HTTP/1.0\n\n", "/metrics", 0),
	T_OK("head", "HEAD /metrics HTTP/1.1\r\n\r\n", "/metrics", 1),
	T_OK("query cut", "GET /metrics?name[]=x HTTP/1.1\r\n\r\n", "/metrics", 0),
	T_OK("root", "GET / HTTP/1.1\r\n\r\n", "/", 0),
	T_OK("post parses", "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "/metrics", 0),
	{ "incomplete", "GET /metrics HTTP/1.1\r\nHost: x\r\n", 0, 0, NULL, 0 },
	{ "incomplete line", "GET /metr", 0, 0, NULL, 0 },
	T_ERR("NUL in target", "GET /me\0trics HTTP/1.1\r\n\r\n", -400),
	T_ERR("NUL in header", "GET / HTTP/1.1\r\nX: \0\r\n\r\n", -400),
	T_ERR("bare CR", "GET /metrics\rX HTTP/1.1\r\n\r\n", -400),
	T_ERR("bare CR in header", "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", -400),
	T_ERR("HTTP/2.0", "GET /metrics HTTP/2.0\r\n\r\n", -505),
	T_ERR("HTTP/1.2", "GET /metrics HTTP/1.2\r\n\r\n", -505),
	T_ERR("no version", "GET /metrics\r\n\r\n", -400),
	T_ERR("not HTTP", "GET /metrics FTP/1.1\r\n\r\n", -400),
	T_ERR("lower-case method", "get /metrics HTTP/1.1\r\n\r\n", -400),
	T_ERR("absolute target", "GET http://x/metrics HTTP/1.1\r\n\r\n", -400),
	T_ERR("two spaces", "GET  /metrics HTTP/1.1\r\n\r\n", -400),
	T_ERR("empty line first", "\r\nGET / HTTP/1.1\r\n\r\n", -400),
};

/* Bytes after the head are not the parser's. */
static const char t_trailing[] = "GET / HTTP/1.1\r\n\r\nJUNK";

/* Feed in[0..k) for growing k in steps of chunk: every answer before the
 * end is 0 or already the final one, and the final one is want. */
static void t_replay(const struct t_case *c, size_t len, size_t chunk)
{
	struct metrics_http_req rq;
	int got = 0;

	for (size_t k = chunk < len ? chunk : len;; k = k + chunk < len ? k + chunk : len) {
		memset(&rq, 0, sizeof(rq));
		got = metrics_http_parse(c->in, k, &rq);
		if (got != 0)
			cr_assert_eq(got, c->want, "%s (chunk %zu, at %zu): %d, want %d", c->name, chunk,
				     k, got, c->want);
		if (k == len)
			break;
	}
	cr_assert_eq(got, c->want, "%s (chunk %zu): %d, want %d", c->name, chunk, got, c->want);
	if (c->want > 0) {
		cr_assert_eq(rq.path_len, strlen(c->want_path), "%s", c->name);
		cr_assert(!memcmp(rq.path, c->want_path, rq.path_len), "%s", c->name);
		cr_assert_eq(rq.head, c->want_head, "%s", c->name);
	}
}

Test(metrics_http_parse, table_whole_bytewise_chunks)
{
	static const size_t chunks[] = { SIZE_MAX, 1, 2, 3, 7 };

	for (size_t i = 0; i < sizeof(t_cases) / sizeof(t_cases[0]); i++) {
		const struct t_case *c = &t_cases[i];
		size_t len = c->len ? c->len : strlen(c->in);

		for (size_t j = 0; j < sizeof(chunks) / sizeof(chunks[0]); j++)
			t_replay(c, len, chunks[j] > len ? len : chunks[j]);
	}
}

Test(metrics_http_parse, trailing_bytes_not_counted)
{
	struct metrics_http_req rq;

	cr_assert_eq(metrics_http_parse(t_trailing, sizeof(t_trailing) - 1, &rq),
		     (int)sizeof(t_trailing) - 1 - 4);
}

/* A request line past METRICS_HTTP_LINE_MAX: 414 before its end arrives. */
Test(metrics_http_parse, overlong_request_line)
{
	static char in[METRICS_HTTP_LINE_MAX + 64];
	struct t_case c = { "overlong line", in, sizeof(in), -414, NULL, 0 };

	memset(in, 'a', sizeof(in));
	memcpy(in, "GET /", 5);
	t_replay(&c, sizeof(in), 1);
	t_replay(&c, sizeof(in), sizeof(in));
}

/* A head that does not end within METRICS_HTTP_REQUEST_MAX: 431, also when
 * its end comes right after the limit. */
Test(metrics_http_parse, overlong_head)
{
	static char in[METRICS_HTTP_REQUEST_MAX + 8];
	struct t_case c = { "overlong head", in, sizeof(in), -431, NULL, 0 };
	size_t n = 0;

	n += (size_t)snprintf(in, sizeof(in), "GET /metrics HTTP/1.1\r\n");
	while (n + 12 < sizeof(in) - 4)
		n += (size_t)snprintf(in + n, sizeof(in) - n, "X-A: 12345\r\n");
	memset(in + n, 'b', sizeof(in) - 4 - n);
	memcpy(in + sizeof(in) - 4, "\r\n\r\n", 4);
	t_replay(&c, sizeof(in), 1);
	t_replay(&c, sizeof(in), 100);
	t_replay(&c, sizeof(in), sizeof(in));
}

/* The top domains: held bytes first, then messages, then the name; only
 * domains with held mail; at most metrics_top_domains of them. */
Test(metrics_http_node, top_domains_ranked_and_cut)
{
	static const char *const names[] = { "a.test", "b.test", "c.test", "d.test", "e.test",
					     "*.w.test" };
	static const struct { const char *d; int64_t msgs, bytes; } held[] = {
		{ "a.test", 1, 500 }, { "b.test", 3, 900 }, { "c.test", 2, 900 },
		{ "e.test", 9, 100 }, { "x.w.test", 1, 700 }, { "y.w.test", 1, 700 },
	};
	static const char *const want[] = {
		"etrnd_domain_held_messages{domain=\"*.w.test\"} 2\n",
		"etrnd_domain_held_messages{domain=\"b.test\"} 3\n",
		"etrnd_domain_held_messages{domain=\"c.test\"} 2\n",
		"etrnd_domain_held_messages{domain=\"a.test\"} 1\n",
	};
	struct config cfg;
	struct epoch *ep = epoch_new(1);
	struct domstat *ds = domstat_new(64);
	struct domtab_live *lv;
	struct metrics_sources src = { 0 };
	struct buf out;
	const char *p;

	cr_assert(ep && ds);
	lv = domtab_live_new(domtab_new(names, sizeof(names) / sizeof(names[0])), ep);
	cr_assert(lv);
	for (size_t i = 0; i < sizeof(held) / sizeof(held[0]); i++)
		domstat_add_domain(ds, held[i].d, strlen(held[i].d), held[i].msgs, held[i].bytes);
	config_defaults(&cfg);
	cfg.metrics_top_domains = 4;
	snprintf(cfg.spool_dir, sizeof(cfg.spool_dir), "/"); /* statvfs: any directory */
	src.ds = ds;
	src.dt = lv;
	buf_init(&out, 0);
	cr_assert_eq(metrics_http_node_gauges(&cfg, &src, &out), 0);
	cr_assert(buf_append(&out, "", 1) == 0);
	cr_assert(strstr(out.data, "etrnd_domains_holding_mail 5\n"), "%s", out.data);
	cr_assert(strstr(out.data, "etrnd_domain_held_bytes{domain=\"*.w.test\"} 1400\n"), "%s",
		  out.data);
	cr_assert_null(strstr(out.data, "domain=\"e.test\""), "cut at 4: %s", out.data);
	cr_assert_null(strstr(out.data, "domain=\"d.test\""), "nothing held: %s", out.data);
	p = out.data;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const char *at = strstr(p, want[i]);

		cr_assert(at, "missing or out of order: %s in\n%s", want[i], out.data);
		p = at + strlen(want[i]);
	}
	cr_assert(strstr(out.data, "# TYPE etrnd_spool_free_bytes gauge\n"), "%s", out.data);
	buf_free(&out);
	config_free(&cfg);
	domtab_live_free(lv);
	domstat_free(ds);
	epoch_free(ep);
}
