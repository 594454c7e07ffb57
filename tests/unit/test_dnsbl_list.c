/* SPDX-License-Identifier: MIT */
/*
 * core/dnsbl_list.c: the site list in postscreen_dnsbl_sites syntax (items,
 * filters, weights, refusals with their reasons), query names for IPv4,
 * IPv6 and v4-mapped clients (RFC 5782 2.1, 2.4), answers matched against
 * filters, and the reply template.
 */
#include <criterion/criterion.h>
#include <string.h>

#include <stdio.h>
#include <unistd.h>

#include "core/config.h"
#include "core/dnsbl_list.h"

struct parse_case {
	const char *in;
	int want_rc;
	unsigned want_n;
	const char *want_why;   /* substring of the reason, refusals only */
};

static const struct parse_case parse_cases[] = {
	{ "", 0, 0, NULL },
	{ "none", 0, 0, NULL },
	{ "zen.example.invalid", 0, 1, NULL },
	{ "zen.example.invalid*2, bl.example.invalid=127.0.0.[2..11]*1", 0, 2, NULL },
	{ "a.test  b.test,c.test,, d.test", 0, 4, NULL },
	{ "wl.test=127.0.[0..255].[1;3]*-5", 0, 1, NULL },
	{ "x.test=127.0.0.2;127.0.0.4", 0, 1, NULL },
	{ "Zen.Example.Invalid.", 0, 1, NULL },
	{ "a..b", -1, 0, "not a DNS name" },
	{ "-a.test", -1, 0, "not a DNS name" },
	{ "=127.0.0.2", -1, 0, "not a DNS name" },
	{ "a.test=127.0.0", -1, 0, "bad filter" },
	{ "a.test=127.0.0.256", -1, 0, "bad filter" },
	{ "a.test=127.0.0.[3..2]", -1, 0, "bad filter" },
	{ "a.test=127.0.0.[2", -1, 0, "bad filter" },
	{ "a.test=127.0.0.2;", -1, 0, "bad filter" },
	{ "a.test=", -1, 0, "bad filter" },
	{ "a.test=1.1.1.1;2.2.2.2;3.3.3.3;4.4.4.4;5.5.5.5", -1, 0, "bad filter" },
	{ "a.test*", -1, 0, "bad weight" },
	{ "a.test*x", -1, 0, "bad weight" },
	{ "a.test*1001", -1, 0, "bad weight" },
	{ "a.test*-", -1, 0, "bad weight" },
	{ "a.test*2=127.0.0.2", -1, 0, "comes before" },
	{ "a.test\x01", -1, 0, "not a DNS name" },
	{ "1.t 2.t 3.t 4.t 5.t 6.t 7.t 8.t 9.t 10.t 11.t 12.t 13.t 14.t 15.t 16.t 17.t", -1, 0,
	  "more than 16" },
};

static void parse_one(const struct parse_case *c, const char *in, size_t len)
{
	struct dnsbl_list l;
	char why[512] = "";
	int rc;

	memset(&l, 0xaa, sizeof(l));
	l.n = 99;
	rc = dnsbl_list_parse(&l, in, len, why, sizeof(why));
	cr_expect_eq(rc, c->want_rc, "\"%s\": rc %d (%s)", c->in, rc, why);
	if (rc == 0)
		cr_expect_eq(l.n, c->want_n, "\"%s\": n %u", c->in, l.n);
	else {
		cr_expect_eq(l.n, 99, "\"%s\": a refusal changed the list", c->in);
		cr_expect(strstr(why, c->want_why) != NULL, "\"%s\": why \"%s\"", c->in, why);
	}
}

Test(dnsbl_list, parse_table)
{
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++)
		parse_one(&parse_cases[i], parse_cases[i].in, strlen(parse_cases[i].in));
}

/* A length shorter than the string: nothing past it is read. */
Test(dnsbl_list, parse_len_bounds)
{
	struct dnsbl_list l;

	cr_assert_eq(dnsbl_list_parse(&l, "a.test*2XXXX", 8, NULL, 0), 0);
	cr_assert_eq(l.n, 1);
	cr_expect_eq(l.site[0].weight, 2);
	cr_expect_str_eq(l.site[0].spec, "a.test*2");
}

Test(dnsbl_list, parse_fields)
{
	struct dnsbl_list l;
	const char *s = "Zen.Example.Invalid.*3, bl.test=127.0.0.[2..11], wl.test=127.0.[0..255].[1;3]*-2,"
			" zen.example.invalid=127.0.0.[10;11]*8";
	char why[256];

	cr_assert_eq(dnsbl_list_parse(&l, s, strlen(s), why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(l.n, 4);
	cr_expect_str_eq(l.site[0].name, "zen.example.invalid");
	cr_expect_eq(l.site[0].weight, 3);
	cr_expect_eq(l.site[0].npatterns, 0);
	cr_expect_str_eq(l.site[1].name, "bl.test");
	cr_expect_eq(l.site[1].weight, 1);
	cr_expect_eq(l.site[1].npatterns, 1);
	cr_expect_eq(l.site[2].weight, -2);
	cr_expect_str_eq(l.site[2].spec, "wl.test=127.0.[0..255].[1;3]*-2");
	/* One look-up per name: the fourth item shares the first's. */
	cr_expect_eq(l.site[0].query, 0);
	cr_expect_eq(l.site[1].query, 1);
	cr_expect_eq(l.site[2].query, 2);
	cr_expect_eq(l.site[3].query, 0);
}

Test(dnsbl_list, match)
{
	struct dnsbl_list l;
	const char *s = "any.test bl.test=127.0.0.[2..11] wl.test=127.0.[0..255].[1;3] two.test=127.0.0.2;127.0.0.4";
	static const struct {
		unsigned site;
		uint8_t a[4];
		int want;
	} cases[] = {
		{ 0, { 127, 0, 0, 2 }, 1 },
		{ 0, { 127, 1, 2, 3 }, 1 },
		{ 0, { 127, 255, 255, 254 }, 0 },  /* an error answer */
		{ 0, { 10, 0, 0, 2 }, 0 },          /* outside 127/8 */
		{ 1, { 127, 0, 0, 1 }, 0 },
		{ 1, { 127, 0, 0, 2 }, 1 },
		{ 1, { 127, 0, 0, 11 }, 1 },
		{ 1, { 127, 0, 0, 12 }, 0 },
		{ 1, { 127, 0, 1, 2 }, 0 },
		{ 2, { 127, 0, 200, 1 }, 1 },
		{ 2, { 127, 0, 200, 3 }, 1 },
		{ 2, { 127, 0, 200, 2 }, 0 },
		{ 3, { 127, 0, 0, 2 }, 1 },
		{ 3, { 127, 0, 0, 3 }, 0 },
		{ 3, { 127, 0, 0, 4 }, 1 },
	};

	cr_assert_eq(dnsbl_list_parse(&l, s, strlen(s), NULL, 0), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(dnsbl_list_match(&l.site[cases[i].site], cases[i].a), cases[i].want,
			     "case %zu", i);
}

Test(dnsbl_list, query_names)
{
	char out[DNSBL_QUERY_MAX];

	cr_assert_eq(dnsbl_list_query("192.0.2.99", "bl.test", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "99.2.0.192.bl.test");
	cr_assert_eq(dnsbl_list_query("127.0.0.1", "zen.example.invalid", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "1.0.0.127.zen.example.invalid");
	/* RFC 5782 2.4's example. */
	cr_assert_eq(dnsbl_list_query("2001:db8:1:2:3:4:567:89ab", "ugly.example.com", out,
				      sizeof(out)), 0);
	cr_expect_str_eq(out, "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com");
	cr_assert_eq(dnsbl_list_query("::1", "t", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.t");
	cr_assert_eq(dnsbl_list_query("::ffff:198.51.100.7", "bl.test", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "7.100.51.198.bl.test");
	cr_expect_eq(dnsbl_list_query("not-an-address", "bl.test", out, sizeof(out)), -1);
	cr_expect_eq(dnsbl_list_query("192.0.2.1", "bl.test", out, 10), -1);
	cr_expect_eq(dnsbl_list_query("::1", "bl.test", out, 64), -1);
}

Test(dnsbl_list, reply)
{
	char out[DNSBL_REPLY_MAX], why[256];

	cr_expect_eq(dnsbl_list_reply_check(DNSBL_REPLY_DEFAULT, why, sizeof(why)), 0, "%s", why);
	cr_expect_eq(dnsbl_list_reply_check("421 4.7.0 go away $site", why, sizeof(why)), 0, "%s", why);
	cr_expect_eq(dnsbl_list_reply_check("550 5.7.1 no", why, sizeof(why)), -1);
	cr_expect_eq(dnsbl_list_reply_check("554 5.7.1", why, sizeof(why)), -1);
	cr_expect_eq(dnsbl_list_reply_check("554 5.7.x text", why, sizeof(why)), -1);
	cr_expect_eq(dnsbl_list_reply_check("554 5.7.1 bad $var", why, sizeof(why)), -1);
	cr_expect(strstr(why, "unknown variable") != NULL, "%s", why);
	cr_expect_eq(dnsbl_list_reply_check("554 5.7.1 tab\there", why, sizeof(why)), -1);
	{
		char big[600];

		memset(big, 'a', sizeof(big) - 1);
		memcpy(big, "554 5.7.1 ", 10);
		big[sizeof(big) - 1] = '\0';
		cr_expect_eq(dnsbl_list_reply_check(big, why, sizeof(why)), -1);
		cr_expect(strstr(why, "too long") != NULL, "%s", why);
	}
	cr_expect_eq(dnsbl_list_reply(DNSBL_REPLY_DEFAULT, "192.0.2.1", "zen.test", out, sizeof(out)),
		     strlen("554 5.7.1 Service unavailable; client [192.0.2.1] blocked using zen.test"));
	cr_expect_str_eq(out, "554 5.7.1 Service unavailable; client [192.0.2.1] blocked using zen.test");
	cr_expect_eq(dnsbl_list_reply("554 5.7.1 $site$site$site$site", "c", "s", out, 14), 13);
	cr_expect_str_eq(out, "554 5.7.1 sss");
}

/* The keys as etrnd.conf gives them (bad ones: test_config.c's table). */
Test(dnsbl_list, config_keys)
{
	static const char text[] =
		"dnsbl = zen.example.invalid*2, bl.example.invalid=127.0.0.[2..11]*1, wl.test*-3\n"
		"dnsbl_threshold = 3\n"
		"dnsbl_reply = 554 5.7.1 no mail from [$client] ($site)\n"
		"dnsbl_timeout = 5s\n"
		"dnsbl_action = log\n"
		"dnsbl_skip_loopback = no\n";
	char path[64], err[CONFIG_ERR_MAX];
	struct config c;
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/etrnd-test-dnsbl-%d.conf", (int)getpid());
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	config_defaults(&c);
	cr_expect_eq(c.dnsbl.n, 0, "off by default");
	cr_expect_eq(c.dnsbl_threshold, 1);
	cr_expect_str_eq(c.dnsbl_reply, DNSBL_REPLY_DEFAULT);
	cr_expect_eq(c.dnsbl_timeout_ms, 10000);
	cr_expect_eq(c.dnsbl_log_only, 0);
	cr_expect_eq(c.dnsbl_skip_loopback, 1);
	cr_assert_eq(config_load(&c, path, err, sizeof(err)), 0, "%s", err);
	unlink(path);
	cr_expect_eq(c.dnsbl.n, 3);
	cr_expect_eq(c.dnsbl.site[2].weight, -3);
	cr_expect_eq(c.dnsbl_threshold, 3);
	cr_expect_str_eq(c.dnsbl_reply, "554 5.7.1 no mail from [$client] ($site)");
	cr_expect_eq(c.dnsbl_timeout_ms, 5000);
	cr_expect_eq(c.dnsbl_log_only, 1);
	cr_expect_eq(c.dnsbl_skip_loopback, 0);
	config_free(&c);
}
