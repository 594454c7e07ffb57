/* SPDX-License-Identifier: MIT */
/* Tests for the pure parts of admin/redis_conn.c (the Sentinel look-up's
 * replies: get-master-addr-by-name, ROLE, failover errors, +switch-master)
 * and admin/schema.c's hash-tagged keys. Replies are built by hiredis's own
 * reader from RESP bytes, fed whole and then one byte at a time. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "admin/redis_conn.h"
#include "admin/schema.h"

/* The reply RESP bytes make; whole (step 0) or step bytes at a time. */
static redisReply *reply_of(const char *resp, size_t step)
{
	redisReader *rd = redisReaderCreate();
	size_t n = strlen(resp);
	void *r = NULL;

	cr_assert(rd);
	for (size_t o = 0; o < n;) {
		size_t k = step && n - o > step ? step : n - o;

		cr_assert_eq(redisReaderFeed(rd, resp + o, k), REDIS_OK);
		o += k;
		if (o < n) {
			cr_assert_eq(redisReaderGetReply(rd, &r), REDIS_OK);
			cr_assert_null(r, "a reply before its last byte: %s", resp);
		}
	}
	cr_assert_eq(redisReaderGetReply(rd, &r), REDIS_OK);
	cr_assert(r, "no reply from %s", resp);
	redisReaderFree(rd);
	return r;
}

struct addr_case {
	const char *resp;
	int want_rc;
	const char *want_host;
	unsigned want_port;
};

Test(redis_conn, sentinel_addr)
{
	static const struct addr_case cases[] = {
		{ "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n", 0, "127.0.0.1", 6380 },
		{ "*2\r\n$3\r\n::1\r\n$5\r\n65535\r\n", 0, "::1", 65535 },
		{ "*2\r\n$11\r\nredis.local\r\n$1\r\n1\r\n", 0, "redis.local", 1 },
		{ "$-1\r\n", -ENOENT, NULL, 0 },                   /* no such master */
		{ "*-1\r\n", -ENOENT, NULL, 0 },                   /* nil array (RESP2) */
		{ "-ERR unknown command\r\n", -EPROTO, NULL, 0 },
		{ "*1\r\n$9\r\n127.0.0.1\r\n", -EPROTO, NULL, 0 },
		{ "*3\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\n2\r\n", -EPROTO, NULL, 0 },
		{ "*2\r\n$0\r\n\r\n$4\r\n6379\r\n", -EPROTO, NULL, 0 },   /* empty host */
		{ "*2\r\n$9\r\n127.0.0.1\r\n$1\r\n0\r\n", -EPROTO, NULL, 0 },
		{ "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n65536\r\n", -EPROTO, NULL, 0 },
		{ "*2\r\n$9\r\n127.0.0.1\r\n$6\r\n100000\r\n", -EPROTO, NULL, 0 },
		{ "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n63x9\r\n", -EPROTO, NULL, 0 },
		{ "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n-6379\r\n", -EPROTO, NULL, 0 },
		{ "*2\r\n:1\r\n:6379\r\n", -EPROTO, NULL, 0 },      /* integers */
		{ "+OK\r\n", -EPROTO, NULL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (size_t step = 0; step <= 1; step++) {
			const struct addr_case *c = &cases[i];
			redisReply *r;
			char host[REDIS_CONN_HOST_MAX] = "";
			unsigned port = 0;
			int rc;

			r = reply_of(c->resp, step);
			rc = redis_conn_sentinel_addr(r, host, sizeof(host), &port);
			cr_expect_eq(rc, c->want_rc, "case %zu step %zu: rc %d", i, step, rc);
			if (c->want_host) {
				cr_expect_str_eq(host, c->want_host, "case %zu", i);
				cr_expect_eq(port, c->want_port, "case %zu", i);
			}
			freeReplyObject(r);
		}
	}
	cr_expect_eq(redis_conn_sentinel_addr(NULL, NULL, 0, NULL), -EPROTO);
}

/* A host longer than the buffer is refused, never cut. */
Test(redis_conn, sentinel_addr_overlong_host)
{
	redisReply *r = reply_of("*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n", 0);
	char host[10];
	unsigned port = 0;

	cr_expect_eq(redis_conn_sentinel_addr(r, host, 9, &port), -EPROTO);
	cr_expect_eq(redis_conn_sentinel_addr(r, host, sizeof(host), &port), 0);
	cr_expect_str_eq(host, "127.0.0.1");
	freeReplyObject(r);
}

struct role_case {
	const char *resp;
	int want;
};

Test(redis_conn, role)
{
	static const struct role_case cases[] = {
		{ "*3\r\n$6\r\nmaster\r\n:3129659\r\n*0\r\n", 1 },
		{ "*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:9999\r\n$9\r\nconnected\r\n:3167038\r\n", 0 },
		{ "*2\r\n$8\r\nsentinel\r\n*1\r\n$8\r\nmymaster\r\n", 0 },
		{ "*1\r\n$7\r\nmasters\r\n", 0 },
		{ "*1\r\n$5\r\nmaste\r\n", 0 },
		{ "*0\r\n", -EPROTO },
		{ "*1\r\n:1\r\n", -EPROTO },
		{ "-NOPERM this user has no permissions\r\n", -EPROTO },
		{ "$6\r\nmaster\r\n", -EPROTO },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		for (size_t step = 0; step <= 1; step++) {
			redisReply *r = reply_of(cases[i].resp, step);

			cr_expect_eq(redis_conn_role_master(r), cases[i].want, "case %zu", i);
			freeReplyObject(r);
		}
	cr_expect_eq(redis_conn_role_master(NULL), -EPROTO);
}

Test(redis_conn, failover_reply)
{
	static const struct role_case cases[] = {
		{ "-READONLY You can't write against a read only replica.\r\n", 1 },
		{ "-LOADING Redis is loading the dataset in memory\r\n", 1 },
		{ "-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n", 1 },
		{ "-READONLY\r\n", 1 },
		{ "-READONLYX nope\r\n", 0 },
		{ "-LOAD nope\r\n", 0 },
		{ "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", 0 },
		{ "-ERR unknown command\r\n", 0 },
		{ "+READONLY\r\n", 0 },
		{ "$8\r\nREADONLY\r\n", 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		redisReply *r = reply_of(cases[i].resp, 0);

		cr_expect_eq(redis_conn_failover_reply(r), cases[i].want, "case %zu", i);
		freeReplyObject(r);
	}
	cr_expect_eq(redis_conn_failover_reply(NULL), 0);
}

Test(redis_conn, switch_master)
{
	static const struct role_case cases[] = {
		{ "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$42\r\nmymaster 127.0.0.1 6379 127.0.0.1 6380 xxx\r\n", 1 },
		{ "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$39\r\nmymaster2 127.0.0.1 6379 127.0.0.1 6380\r\n", 0 },
		{ "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$8\r\nmymaster\r\n", 0 },
		{ "*3\r\n$7\r\nmessage\r\n$8\r\n+sdown x\r\n$38\r\nmymaster 127.0.0.1 6379 127.0.0.1 6380\r\n", 0 },
		{ "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n", 0 },
		{ "*2\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n", 0 },
	};

	char host[REDIS_CONN_HOST_MAX];
	unsigned port = 0;
	redisReply *r;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		for (size_t step = 0; step <= 1; step++) {
			r = reply_of(cases[i].resp, step);
			cr_expect_eq(redis_conn_switch_master(r, "mymaster", host, sizeof(host), &port),
				     cases[i].want, "case %zu", i);
			if (cases[i].want) {
				cr_expect_str_eq(host, "127.0.0.1");
				cr_expect_eq(port, 6380);
			}
			freeReplyObject(r);
		}
	cr_expect_eq(redis_conn_switch_master(NULL, "mymaster", host, sizeof(host), &port), 0);
	/* The new address: a name too long for host, a bad port. */
	r = reply_of("*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$38\r\nmymaster 127.0.0.1 6379 127.0.0.1 6380\r\n", 0);
	cr_expect_eq(redis_conn_switch_master(r, "mymaster", host, 9, &port), 0);
	cr_expect_eq(redis_conn_switch_master(r, "mymaster", host, 10, &port), 1);
	freeReplyObject(r);
	r = reply_of("*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$39\r\nmymaster 127.0.0.1 6379 127.0.0.1 65536\r\n", 0);
	cr_expect_eq(redis_conn_switch_master(r, "mymaster", host, sizeof(host), &port), 0);
	freeReplyObject(r);
	r = reply_of("*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$31\r\nmymaster 127.0.0.1 6379 1.2.3.4\r\n", 0);
	cr_expect_eq(redis_conn_switch_master(r, "mymaster", host, sizeof(host), &port), 0);
	freeReplyObject(r);
}

struct key_case {
	const char *rest;
	int want;
	const char *want_name;
};

Test(schema, key_forms)
{
	static const struct key_case cases[] = {
		{ "{example.com}", 1, "example.com" },
		{ "example.com", 0, "example.com" },
		{ "{*.example.com}", 1, "*.example.com" },
		{ "{g}", 1, "g" },
		{ "", -1, NULL },
		{ "{}", -1, NULL },
		{ "{", -1, NULL },
		{ "}", -1, NULL },
		{ "{x", -1, NULL },
		{ "x}", -1, NULL },
		{ "{x}y", -1, NULL },
		{ "{{x}}", -1, NULL },
		{ "a{b}c", -1, NULL },
	};
	char buf[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *name = NULL;
		size_t nl = 0;
		int rc = schema_key_name(cases[i].rest, strlen(cases[i].rest), &name, &nl);

		cr_expect_eq(rc, cases[i].want, "case %zu (%s): %d", i, cases[i].rest, rc);
		if (cases[i].want_name) {
			cr_expect_eq(nl, strlen(cases[i].want_name), "case %zu", i);
			cr_expect_eq(memcmp(name, cases[i].want_name, nl), 0, "case %zu", i);
		}
	}
	cr_expect_str_eq(schema_key(buf, sizeof(buf), "etrnd:", "domain:", "x.test"),
			 "etrnd:domain:{x.test}");
	cr_expect_str_eq(schema_key_untagged(buf, sizeof(buf), "etrnd:", "domain:", "x.test"),
			 "etrnd:domain:x.test");
	/* Exactly fits, one short. */
	cr_expect_not_null(schema_key(buf, 22, "etrnd:", "domain:", "x.test"));
	cr_expect_null(schema_key(buf, 21, "etrnd:", "domain:", "x.test"));
	cr_expect_null(schema_key_untagged(buf, 19, "etrnd:", "domain:", "x.test"));
}
