/* SPDX-License-Identifier: MIT */
/* Tests for admin/etrnctl_top.c's pure parts: the "status json" reader
 * (table-driven; every case also parsed from each of its prefixes, copied
 * to a buffer of exactly that size, so a read past the end is ASan's), the
 * Prometheus text reader, the peaks carried between samples, and the frame
 * (cut to the screen's width and height). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/etrnctl_top.h"

#define FULL "{\"shards\":[{\"shard\":0,\"answered\":true,\"messages\":7,\"recipients\":7," \
	"\"domains\":2,\"segments\":1,\"bytes\":9,\"live_bytes\":9,\"delivered\":0," \
	"\"bounced\":0,\"expired\":0},{\"shard\":1,\"answered\":false}]," \
	"\"domains\":[{\"domain\":\"a.test\",\"messages\":2,\"recipients\":2,\"bytes\":200," \
	"\"oldest_s\":65,\"held\":\"TLS is required\"},{\"domain\":\"b.test\",\"messages\":5," \
	"\"recipients\":5,\"bytes\":500,\"oldest_s\":3}],\"deferred\":[]," \
	"\"atrn\":[{\"user\":\"cust\",\"client\":\"127.0.0.1\",\"domains\":[\"a.test\"," \
	"\"b.test\"],\"shard\":0,\"shards\":2,\"delivered\":3,\"total\":7," \
	"\"state\":\"delivering\"}],\"complete\":false}\n"

struct status_case {
	const char *name, *in;
	int want_rc;
	unsigned want_shards, want_answered;
	uint64_t want_held, want_bytes;
	size_t want_ndoms, want_natrn;
	const char *want_dom0;          /* first domain's name, as shown */
	uint64_t want_dom1_msgs, want_dom0_oldest;
};

static const struct status_case status_cases[] = {
	{ "full", FULL, 0, 2, 1, 7, 700, 2, 1, "a.test", 5, 65 },
	{ "empty", "{\"shards\":[],\"domains\":[],\"deferred\":[],\"atrn\":[],\"complete\":true}",
	  0, 0, 0, 0, 0, 0, 0, NULL, 0, 0 },
	{ "no atrn (older daemon)", "{\"shards\":[{\"answered\":true,\"messages\":1}],"
	  "\"domains\":[{\"domain\":\"x.test\",\"messages\":1,\"bytes\":10,\"oldest_s\":0}]}",
	  0, 1, 1, 1, 10, 1, 0, "x.test", 0, 0 },
	{ "escapes and control bytes shown as ?", "{\"shards\":[],\"domains\":[{\"domain\":"
	  "\"a\\u0001b\\\"c\",\"messages\":1}]}", 0, 0, 0, 0, 0, 1, 0, "a?b?c", 0, 0 },
	{ "spaces between", "{ \"shards\":[ ], \"domains\":[ ]}", 0, 0, 0, 0, 0, 0, 0, NULL, 0, 0 },
	{ "an error object", "{\"error\":\"out of memory\"}\n", -EINVAL, 0, 0, 0, 0, 0, 0, NULL, 0, 0 },
	{ "not an object", "error: unknown request\n", -EINVAL, 0, 0, 0, 0, 0, 0, NULL, 0, 0 },
	{ "nothing", "", -EINVAL, 0, 0, 0, 0, 0, 0, NULL, 0, 0 },
	{ "domains not an array", "{\"shards\":[],\"domains\":5}", -EINVAL, 0, 0, 0, 0, 0, 0, NULL, 0, 0 },
	{ "NUL inside", "{\"shards\":[],\0\"domains\":[]}", -EINVAL, 0, 0, 0, 0, 0, 0, NULL, 0, 0 },
};

static void check_status(const struct status_case *c, const char *in, size_t len)
{
	struct etrnctl_top_snap s = { 0 };
	int rc = etrnctl_top_parse_status(in, len, &s);

	cr_assert_eq(rc, c->want_rc, "%s: rc %d", c->name, rc);
	if (rc == 0) {
		cr_expect_eq(s.shards, c->want_shards, "%s", c->name);
		cr_expect_eq(s.answered, c->want_answered, "%s", c->name);
		cr_expect_eq(s.held_msgs, c->want_held, "%s", c->name);
		cr_expect_eq(s.held_bytes, c->want_bytes, "%s", c->name);
		cr_assert_eq(s.ndoms, c->want_ndoms, "%s: %zu domains", c->name, s.ndoms);
		cr_expect_eq(s.natrn, c->want_natrn, "%s", c->name);
		if (c->want_dom0)
			cr_expect_str_eq(s.doms[0].name, c->want_dom0, "%s", c->name);
		if (c->want_ndoms > 1)
			cr_expect_eq(s.doms[1].msgs, c->want_dom1_msgs, "%s", c->name);
		if (c->want_ndoms)
			cr_expect_eq(s.doms[0].oldest_s, c->want_dom0_oldest, "%s", c->name);
	}
	etrnctl_top_snap_free(&s);
}

Test(etrnctl_top, status_json_cases)
{
	for (size_t i = 0; i < sizeof(status_cases) / sizeof(status_cases[0]); i++) {
		const struct status_case *c = &status_cases[i];
		size_t len = strlen(c->in);

		if (!strcmp(c->name, "NUL inside"))
			len = sizeof("{\"shards\":[],\0\"domains\":[]}") - 1;
		check_status(c, c->in, len);
	}
}

/* Every prefix of every case: no read past it (ASan), and a cut reply is
 * refused or read as far as it goes, never more domains than it names. */
Test(etrnctl_top, status_json_every_prefix)
{
	for (size_t i = 0; i < sizeof(status_cases) / sizeof(status_cases[0]); i++) {
		const struct status_case *c = &status_cases[i];
		size_t len = strlen(c->in);

		for (size_t n = 0; n < len; n++) {
			struct etrnctl_top_snap s = { 0 };
			char *cut = malloc(n ? n : 1);
			int rc;

			cr_assert(cut);
			memcpy(cut, c->in, n);
			rc = etrnctl_top_parse_status(cut, n, &s);
			cr_assert(rc == 0 || rc == -EINVAL, "%s cut at %zu: rc %d", c->name, n, rc);
			cr_assert_leq(s.ndoms, c->want_ndoms, "%s cut at %zu", c->name, n);
			etrnctl_top_snap_free(&s);
			free(cut);
		}
	}
}

Test(etrnctl_top, atrn_session)
{
	struct etrnctl_top_snap s = { 0 };

	cr_assert_eq(etrnctl_top_parse_status(FULL, strlen(FULL), &s), 0);
	cr_assert_eq(s.natrn, 1);
	cr_expect_str_eq(s.atrn[0].user, "cust");
	cr_expect_str_eq(s.atrn[0].client, "127.0.0.1");
	cr_expect_str_eq(s.atrn[0].domains, "a.test b.test");
	cr_expect_str_eq(s.atrn[0].state, "delivering");
	cr_expect_eq(s.atrn[0].delivered, 3);
	cr_expect_eq(s.atrn[0].total, 7);
	etrnctl_top_snap_free(&s);
}

Test(etrnctl_top, prometheus_text)
{
	static const char text[] =
		"# HELP etrnd_messages_received_total Messages received.\n"
		"# TYPE etrnd_messages_received_total counter\n"
		"etrnd_messages_received_total 12\n"
		"etrnd_messages_received_total_not 99\n"
		"etrnd_connections_open 3\n"
		"etrnd_connections_refused_total{reason=\"max_connections\"} 2\n"
		"etrnd_connections_refused_total{reason=\"descriptors\"} 1\n"
		"etrnd_deliveries_total{status=\"sent\"} 40\n"
		"etrnd_deliveries_total{status=\"deferred\"} 4\n"
		"etrnd_deliveries_total{status=\"bounced\"} NaN\n"
		"etrnd_drains_running +Inf\n"
		"etrnd_redis_up 0\n"
		"etrnd_redis_last_resync_age_seconds 61\n"
		"etrnd_connections_accepted_total{x=\"1\"}";   /* no value: skipped */
	struct etrnctl_top_metrics m;

	etrnctl_top_parse_metrics(text, &m);
	cr_assert(m.have);
	cr_expect_eq(m.received, 12);
	cr_expect_eq(m.conn_open, 3);
	cr_expect_eq(m.refused, 3);
	cr_expect_eq(m.sent, 40);
	cr_expect_eq(m.deferred, 4);
	cr_expect_eq(m.bounced, 0);
	cr_expect_eq(m.drains_running, 0);
	cr_expect_eq(m.accepted, 0);
	cr_expect_eq(m.redis_up, 0);
	cr_expect_eq(m.resync_age_s, 61);

	etrnctl_top_parse_metrics("error: this etrnd has no metrics\n", &m);
	cr_expect_not(m.have);
	cr_expect_eq(m.redis_up, -1);
	etrnctl_top_parse_metrics(NULL, &m);
	cr_expect_not(m.have);
}

static void snap_doms(struct etrnctl_top_snap *s, const char *const *names, const uint64_t *msgs,
		      size_t n)
{
	s->doms = calloc(n, sizeof(*s->doms));
	cr_assert(s->doms);
	s->ndoms = n;
	for (size_t i = 0; i < n; i++) {
		snprintf(s->doms[i].name, sizeof(s->doms[i].name), "%s", names[i]);
		s->doms[i].msgs = s->doms[i].peak = msgs[i];
	}
}

Test(etrnctl_top, peaks_and_drained_domains)
{
	static const char *const pn[] = { "a.test", "b.test", "d.test" };
	static const char *const cn[] = { "b.test", "c.test" };
	static const uint64_t pm[] = { 5, 3, 1 }, cm[] = { 1, 2 };
	struct etrnctl_top_snap prev = { 0 }, cur = { 0 };

	snap_doms(&prev, pn, pm, 3);
	snap_doms(&cur, cn, cm, 2);
	cr_assert_eq(etrnctl_top_carry_peaks(&prev, &cur), 0);
	cr_assert_eq(cur.ndoms, 4);
	cr_expect_eq(cur.ngone, 2);
	cr_expect_str_eq(cur.doms[0].name, "a.test");
	cr_expect_eq(cur.doms[0].msgs, 0);
	cr_expect_eq(cur.doms[0].peak, 5);
	cr_expect_str_eq(cur.doms[1].name, "b.test");
	cr_expect_eq(cur.doms[1].msgs, 1);
	cr_expect_eq(cur.doms[1].peak, 3);
	cr_expect_str_eq(cur.doms[2].name, "c.test");
	cr_expect_eq(cur.doms[2].peak, 2);
	cr_expect_str_eq(cur.doms[3].name, "d.test");
	cr_expect_eq(cur.doms[3].peak, 1);
	cr_assert_eq(etrnctl_top_carry_peaks(NULL, &cur), 0);
	cr_expect_eq(cur.ndoms, 4);
	etrnctl_top_snap_free(&prev);
	etrnctl_top_snap_free(&cur);
}

/* The frame: lines cut to cols, the domains to what rows leave, biggest
 * first, a drain's bar, the ANSI frame drawn over the last. */
Test(etrnctl_top, render)
{
	static const char *const names[] = { "a.test", "b-with-a-rather-long-name.test", "c.test",
					     "d.test", "e.test", "f.test" };
	static const uint64_t msgs[] = { 1, 9, 2, 3, 4, 5 };
	struct etrnctl_top_snap s = { 0 };
	struct buf out;
	char *text;

	buf_init(&out, 0);
	snap_doms(&s, names, msgs, 6);
	s.m.redis_up = -1;
	s.doms[1].peak = 12;    /* 3 of 12 drained */
	cr_assert_eq(etrnctl_top_render(NULL, &s, 0, 0, 0, &out), 0);
	cr_assert(buf_append(&out, "", 1) == 0);
	text = out.data;
	cr_expect(strstr(text, "[#####...............] 3/12"), "%s", text);
	cr_expect(strstr(text, "b-with-a-rather-long-name.test") < strstr(text, "f.test"));
	cr_expect(strstr(text, "f.test") < strstr(text, "a.test"));
	cr_expect_null(strchr(text, '\x1b'));

	buf_reset(&out);
	cr_assert_eq(etrnctl_top_render(NULL, &s, 30, 12, 1, &out), 0);
	cr_assert(buf_append(&out, "", 1) == 0);
	text = out.data;
	cr_expect_eq(strncmp(text, "\x1b[H", 3), 0);
	cr_expect(strstr(text, "... and 2 more domains"), "%s", text);
	for (char *l = text + 3, *e; (e = strstr(l, "\x1b[K\r\n")); l = e + 5)
		cr_expect_leq(e - l, 30, "%.*s", (int)(e - l), l);
	cr_expect(strstr(text, "\x1b[J"));
	etrnctl_top_snap_free(&s);
	buf_free(&out);
}
