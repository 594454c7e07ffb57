/* SPDX-License-Identifier: MIT */
/*
 * Tests for core/cidr.c (mynetworks, a domain's etrn_from): each way a
 * network is refused, with the reason an operator reads (no address, a bad
 * or missing prefix length, host bits set with the network meant, too many
 * networks); a list written back as parsed and refused when it does not
 * fit; matching v4, v6 and v4-mapped v6 clients at byte and bit
 * boundaries, and never an address of another family. Table-driven.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "core/cidr.h"

#define CT_WHY 256

struct ct_parse {
	const char *in;
	const char *want_why;    /* NULL: accepted */
};

static const struct ct_parse ct_parse_cases[] = {
	{ "192.0.2.0/24", NULL },
	{ "192.0.2.7", NULL },
	{ "2001:db8::/32", NULL },
	{ "0.0.0.0/0", NULL },
	{ "", "\"\": not a network (want like 192.0.2.0/24 or 2001:db8::/32)" },
	{ "example.net/24", "\"example.net/24\": not a network (want like 192.0.2.0/24 or 2001:db8::/32)" },
	{ "2001:db8:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:1/64", "\"2001:db8:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:1/64\": not a network" },
	{ "192.0.2.0/", "\"192.0.2.0/\": bad prefix length (want /0 to /32)" },
	{ "192.0.2.0/x", "\"192.0.2.0/x\": bad prefix length (want /0 to /32)" },
	{ "192.0.2.0/24x", "\"192.0.2.0/24x\": bad prefix length (want /0 to /32)" },
	{ "192.0.2.0/33", "\"192.0.2.0/33\": bad prefix length (want /0 to /32)" },
	{ "2001:db8::/129", "\"2001:db8::/129\": bad prefix length (want /0 to /128)" },
	{ "192.0.2.1/24", "\"192.0.2.1/24\": host bits set (did you mean 192.0.2.0/24?)" },
	{ "2001:db8::1/64", "\"2001:db8::1/64\": host bits set (did you mean 2001:db8::/64?)" },
};

Test(cidr, parse_refuses_with_reason)
{
	for (size_t i = 0; i < sizeof(ct_parse_cases) / sizeof(ct_parse_cases[0]); i++) {
		const struct ct_parse *k = &ct_parse_cases[i];
		struct cidr c;
		char why[CT_WHY] = "";
		int r = cidr_parse(k->in, strlen(k->in), &c, why, sizeof(why));

		if (!k->want_why) {
			cr_expect_eq(r, 0, "%s: %s", k->in, why);
			continue;
		}
		cr_expect_eq(r, -1, "%s accepted", k->in);
		cr_expect(strncmp(why, k->want_why, strlen(k->want_why)) == 0, "%s: got [%s], want [%s]",
			  k->in, why, k->want_why);
		/* A NULL why is allowed: the same refusal, nothing written. */
		cr_expect_eq(cidr_parse(k->in, strlen(k->in), &c, NULL, 0), -1, "%s", k->in);
	}
}

Test(cidr, list_parse_format_and_limits)
{
	struct cidr c[CIDR_LIST_MAX + 1];
	char why[CT_WHY] = "", out[256], list[CIDR_LIST_MAX * 16];
	unsigned n = 99;
	size_t o = 0;

	cr_assert_eq(cidr_list_parse(" 10.0.0.0/8;2001:db8::/32,\t192.0.2.7 ,", c, 8, &n, why,
				     sizeof(why)), 0, "%s", why);
	cr_expect_eq(n, 3);
	cr_assert_eq(cidr_list_format(c, n, out, sizeof(out)), 0);
	cr_expect_str_eq(out, "10.0.0.0/8,2001:db8::/32,192.0.2.7/32");
	/* Exactly fitting, then one byte short. */
	cr_expect_eq(cidr_list_format(c, n, out, strlen("10.0.0.0/8,2001:db8::/32,192.0.2.7/32") + 1), 0);
	cr_expect_eq(cidr_list_format(c, n, out, strlen("10.0.0.0/8,2001:db8::/32,192.0.2.7/32")), -1);
	cr_expect_eq(cidr_list_format(c, n, out, 0), -1);
	cr_expect_eq(cidr_list_format(c, 0, out, sizeof(out)), 0);
	cr_expect_str_eq(out, "");

	cr_expect_eq(cidr_list_parse("10.0.0.0/8 10.1.0.0/16 10.2.0.0/16", c, 2, &n, why,
				     sizeof(why)), -1);
	cr_expect_str_eq(why, "more than 2 networks");
	cr_expect_eq(cidr_list_parse("10.0.0.0/8, 10.1.0.1/16", c, 8, &n, why, sizeof(why)), -1);
	cr_expect_str_eq(why, "\"10.1.0.1/16\": host bits set (did you mean 10.1.0.0/16?)");
	/* max above CIDR_LIST_MAX is CIDR_LIST_MAX. */
	for (unsigned i = 0; i <= CIDR_LIST_MAX; i++)
		o += (size_t)snprintf(list + o, sizeof(list) - o, "10.0.%u.0/24,", i);
	cr_expect_eq(cidr_list_parse(list, c, CIDR_LIST_MAX + 1, &n, why, sizeof(why)), -1);
	snprintf(out, sizeof(out), "more than %u networks", CIDR_LIST_MAX);
	cr_expect_str_eq(why, out);
	cr_expect_eq(cidr_list_parse("", c, 8, &n, why, sizeof(why)), 0);
	cr_expect_eq(n, 0);
}

static struct sockaddr_storage ct_addr(const char *a)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, a, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
	} else {
		cr_assert_eq(inet_pton(AF_INET6, a, &((struct sockaddr_in6 *)&ss)->sin6_addr), 1, "%s", a);
		ss.ss_family = AF_INET6;
	}
	return ss;
}

Test(cidr, match_by_family_and_bit)
{
	static const struct {
		const char *list, *addr;
		int want;
	} cases[] = {
		{ "192.0.2.0/24", "192.0.2.200", 1 },
		{ "192.0.2.0/24", "192.0.3.1", 0 },
		{ "192.0.2.128/25", "192.0.2.129", 1 },   /* a partial byte */
		{ "192.0.2.128/25", "192.0.2.127", 0 },
		{ "192.0.2.0/24", "::ffff:192.0.2.9", 1 }, /* v4-mapped: v4 */
		{ "2001:db8::/32", "2001:db8:1::5", 1 },
		{ "2001:db8::/33", "2001:db8:8000::1", 0 },
		{ "2001:db8::/32", "192.0.2.1", 0 },      /* another family */
		{ "0.0.0.0/0", "203.0.113.1", 1 },
		{ "0.0.0.0/0", "2001:db8::1", 0 },
		{ "10.0.0.0/8,2001:db8::/32", "2001:db8::1", 1 },
	};
	struct cidr c[4];
	char why[CT_WHY];
	unsigned n;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss = ct_addr(cases[i].addr);

		cr_assert_eq(cidr_list_parse(cases[i].list, c, 4, &n, why, sizeof(why)), 0, "%s", why);
		cr_expect_eq(cidr_list_match(c, n, (struct sockaddr *)&ss), cases[i].want, "%s in %s",
			     cases[i].addr, cases[i].list);
	}
	/* Not an IP address at all (a unix socket peer): never a match. */
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	cr_assert_eq(cidr_list_parse("0.0.0.0/0", c, 4, &n, why, sizeof(why)), 0);
	cr_expect_eq(cidr_list_match(c, n, (struct sockaddr *)&un), 0);
}
