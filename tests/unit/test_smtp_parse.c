/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for proto/smtp_parse.c: table-driven path, parameter and verb
 * cases. Each input is parsed from an exact-size heap copy (ASan catches a
 * read past the end), and every prefix of it is parsed too, which is the
 * byte-at-a-time run for a parser that sees whole lines.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_parse.h"

#define X10 "xxxxxxxxxx"
#define X50 X10 X10 X10 X10 X10
#define L63 X50 X10 "xxx" /* a 63-octet DNS label */

struct p_case {
	const char *in;
	size_t in_len; /* 0: strlen */
	const char *kw;
	int want_rc;
	const char *want_addr;    /* after parse */
	const char *want_norm;    /* after smtp_parse_normalize_domain */
	size_t want_dom;
	unsigned want_flags;
	const char *want_params;  /* text from params_off */
};

static const struct p_case p_cases[] = {
	{ "FROM:<a@b.test>", 0, "FROM:", SMTP_PARSE_OK, "a@b.test", "a@b.test", 2, 0, "" },
	{ "from:<A@B.Test> SIZE=10", 0, "FROM:", SMTP_PARSE_OK, "A@B.Test", "A@b.test", 2, 0,
		"SIZE=10" },
	{ "FROM: <a@b.test>", 0, "FROM:", SMTP_PARSE_OK, "a@b.test", "a@b.test", 2, 0, "" },
	{ "FROM:<>", 0, "FROM:", SMTP_PARSE_OK, "", "", 0, SMTP_PATH_NULL, "" },
	{ "FROM:<>  BODY=7BIT", 0, "FROM:", SMTP_PARSE_OK, "", "", 0, SMTP_PATH_NULL,
		"BODY=7BIT" },
	{ "TO:<x@Ok.Test.>", 0, "TO:", SMTP_PARSE_OK, "x@Ok.Test.", "x@ok.test", 2, 0, "" },
	{ "TO:<@r1.test,@r2.test:u@d.test>", 0, "TO:", SMTP_PARSE_OK, "u@d.test", "u@d.test",
		2, SMTP_PATH_ROUTE, "" },
	{ "TO:<\"john doe\"@d.test>", 0, "TO:", SMTP_PARSE_OK, "\"john doe\"@d.test",
		"\"john doe\"@d.test", 11, 0, "" },
	{ "TO:<\"a\\\"b\"@d.test>", 0, "TO:", SMTP_PARSE_OK, "\"a\\\"b\"@d.test",
		"\"a\\\"b\"@d.test", 7, 0, "" },
	{ "TO:<a@[192.0.2.1]>", 0, "TO:", SMTP_PARSE_OK, "a@[192.0.2.1]", "a@[192.0.2.1]", 2,
		SMTP_PATH_LITERAL, "" },
	{ "TO:<postmaster>", 0, "TO:", SMTP_PARSE_OK, "postmaster", "postmaster", 10,
		SMTP_PATH_NO_DOMAIN, "" },
	{ "TO:a@d.test", 0, "TO:", SMTP_PARSE_OK, "a@d.test", "a@d.test", 2, SMTP_PATH_BARE, "" },
	{ "TO:a@d.test X=1", 0, "TO:", SMTP_PARSE_OK, "a@d.test", "a@d.test", 2,
		SMTP_PATH_BARE, "X=1" },
	{ "TO:<a..b@d.test>", 0, "TO:", SMTP_PARSE_OK, "a..b@d.test", "a..b@d.test", 5, 0, "" },
	{ "TO:<j\xc3\xb6@d\xc3\xa9.test>", 0, "TO:", SMTP_PARSE_OK, "j\xc3\xb6@d\xc3\xa9.test",
		"j\xc3\xb6@d\xc3\xa9.test", 4, 0, "" },
	/* sender-specified routing in the local part (allow_untrusted_routing) */
	{ "TO:<user%other@d.test>", 0, "TO:", SMTP_PARSE_OK, "user%other@d.test",
		"user%other@d.test", 11, SMTP_PATH_LOCAL_ROUTING, "" },
	{ "TO:<other!user@d.test>", 0, "TO:", SMTP_PARSE_OK, "other!user@d.test",
		"other!user@d.test", 11, SMTP_PATH_LOCAL_ROUTING, "" },
	{ "TO:<\"user@other\"@d.test>", 0, "TO:", SMTP_PARSE_OK, "\"user@other\"@d.test",
		"\"user@other\"@d.test", 13, SMTP_PATH_LOCAL_ROUTING, "" },
	{ "TO:<\"user\\@other\"@d.test>", 0, "TO:", SMTP_PARSE_OK, "\"user\\@other\"@d.test",
		"\"user\\@other\"@d.test", 14, SMTP_PATH_LOCAL_ROUTING, "" },
	{ "TO:<@r.test:a%b@d.test>", 0, "TO:", SMTP_PARSE_OK, "a%b@d.test", "a%b@d.test", 4,
		SMTP_PATH_ROUTE | SMTP_PATH_LOCAL_ROUTING, "" },
	{ "TO:a%b", 0, "TO:", SMTP_PARSE_OK, "a%b", "a%b", 3,
		SMTP_PATH_BARE | SMTP_PATH_NO_DOMAIN | SMTP_PATH_LOCAL_ROUTING, "" },
	{ "TO:<a+tag@d.test>", 0, "TO:", SMTP_PARSE_OK, "a+tag@d.test", "a+tag@d.test", 6, 0, "" },
	/* syntax errors */
	{ "TO <a@d.test>", 0, "TO:", SMTP_PARSE_KEYWORD, "", "", 0, 0, NULL },
	{ "TO", 0, "TO:", SMTP_PARSE_KEYWORD, "", "", 0, 0, NULL },
	{ "TO:", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<a@d.test", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<a@d.test>x", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<a@>", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<@d.test>", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<a@d..test>", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<a@.>", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<a b@d.test>", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<a@d.test@e.test>", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<\"unterminated@d.test>", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<\"a\rb\"@d.test>", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<a\r@d.test>", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<a\0@d.test>", 14, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<a@d.test\0>", 14, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<a@d.te\nst>", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<@r1.test:>", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<@r1.test,u@d.test>", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<a@[]>", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<a@[1.2.3.4>", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	{ "TO:<<a@d.test>>", 0, "TO:", SMTP_PARSE_SYNTAX, "", "", 0, 0, NULL },
	/* RFC 5321 4.5.3.1 limits: local part 64, domain 255, path 256 */
	{ "TO:<" X50 X10 "xxxx@d.test>", 0, "TO:", SMTP_PARSE_OK, X50 X10 "xxxx@d.test",
		X50 X10 "xxxx@d.test", 65, 0, "" },
	{ "TO:<" X50 X10 "xxxxx@d.test>", 0, "TO:", SMTP_PARSE_TOO_LONG, "", "", 0, 0, NULL },
	{ "TO:<a@" L63 "." L63 "." L63 "." X50 X10 ">", 0, "TO:", SMTP_PARSE_OK,
		"a@" L63 "." L63 "." L63 "." X50 X10,
		"a@" L63 "." L63 "." L63 "." X50 X10, 2, 0, "" }, /* domain 252, path 256 */
	{ "TO:<ab@" L63 "." L63 "." L63 "." X50 X10 ">", 0, "TO:", SMTP_PARSE_TOO_LONG,
		"", "", 0, 0, NULL }, /* path 257 */
	{ "TO:<a@" L63 "." L63 "." L63 "." L63 "xxx>", 0, "TO:", SMTP_PARSE_TOO_LONG,
		"", "", 0, 0, NULL }, /* domain 257 */
};

/* Run one case on an exact-size heap copy of in[0..n). */
static int p_parse(const char *in, size_t n, const char *kw, struct smtp_path *path,
		size_t *off, char **copy)
{
	char *p = malloc(n ? n : 1);

	cr_assert(p != NULL);
	memcpy(p, in, n);
	*copy = p;
	return smtp_parse_path_arg(p, n, kw, path, off);
}

Test(smtp_parse, paths)
{
	size_t i;

	for (i = 0; i < sizeof(p_cases) / sizeof(p_cases[0]); i++) {
		const struct p_case *tc = &p_cases[i];
		size_t n = tc->in_len ? tc->in_len : strlen(tc->in), off = 0, k;
		struct smtp_path path;
		char *copy;
		int rc;

		rc = p_parse(tc->in, n, tc->kw, &path, &off, &copy);
		cr_expect_eq(rc, tc->want_rc, "case %zu (%s): rc %d", i, tc->in, rc);
		if (rc == SMTP_PARSE_OK && tc->want_rc == SMTP_PARSE_OK) {
			cr_expect_str_eq(path.addr, tc->want_addr, "case %zu: addr", i);
			cr_expect_eq(path.len, strlen(tc->want_addr), "case %zu: len", i);
			cr_expect_eq(path.domain_off, tc->want_dom, "case %zu: domain_off", i);
			cr_expect_eq(path.flags, tc->want_flags, "case %zu: flags %x", i, path.flags);
			cr_expect_eq(n - off, strlen(tc->want_params), "case %zu: params", i);
			cr_expect(memcmp(copy + off, tc->want_params, n - off) == 0);
			smtp_parse_normalize_domain(&path);
			cr_expect_str_eq(path.addr, tc->want_norm, "case %zu: normalized", i);
			cr_expect_eq(path.len, strlen(tc->want_norm));
		}
		free(copy);
		/* Every prefix: must not crash or read past its end; a prefix
		 * that is a valid path must still be a well-formed result. */
		for (k = 0; k < n; k++) {
			rc = p_parse(tc->in, k, tc->kw, &path, &off, &copy);
			if (rc == SMTP_PARSE_OK) {
				cr_expect_leq(path.len, SMTP_PATH_MAX);
				cr_expect_eq(strlen(path.addr), path.len);
				cr_expect_leq(off, k);
			}
			free(copy);
		}
	}
}

struct q_case {
	const char *in;
	int want_n;          /* parameters before the end or the error */
	int want_end;        /* 0: clean end; SMTP_PARSE_SYNTAX */
	const char *want[3]; /* "KEY=VALUE" or "KEY" */
};

static const struct q_case q_cases[] = {
	{ "", 0, 0, { NULL } },
	{ "   ", 0, 0, { NULL } },
	{ "SIZE=100", 1, 0, { "SIZE=100" } },
	{ "SIZE=100 BODY=8BITMIME  SMTPUTF8", 3, 0, { "SIZE=100", "BODY=8BITMIME", "SMTPUTF8" } },
	{ "X-FOO=a+b", 1, 0, { "X-FOO=a+b" } },
	{ "SIZE=", 0, SMTP_PARSE_SYNTAX, { NULL } },
	{ "=1", 0, SMTP_PARSE_SYNTAX, { NULL } },
	{ "-X=1", 0, SMTP_PARSE_SYNTAX, { NULL } },
	{ "A=1 B=x=y", 1, SMTP_PARSE_SYNTAX, { "A=1" } },
	{ "A=1 B\x01", 1, SMTP_PARSE_SYNTAX, { "A=1" } },
	{ "A=\x7f", 0, SMTP_PARSE_SYNTAX, { NULL } },
};

Test(smtp_parse, params)
{
	size_t i;

	for (i = 0; i < sizeof(q_cases) / sizeof(q_cases[0]); i++) {
		const struct q_case *tc = &q_cases[i];
		size_t n = strlen(tc->in), off = 0;
		struct smtp_param p;
		char got[64];
		char *copy = malloc(n ? n : 1);
		int rc, k = 0;

		cr_assert(copy != NULL);
		memcpy(copy, tc->in, n);
		while ((rc = smtp_parse_param(copy, n, &off, &p)) == 1) {
			cr_assert_lt(k, 3, "case %zu: too many", i);
			if (p.val)
				snprintf(got, sizeof(got), "%.*s=%.*s", (int)p.key_len, p.key,
						(int)p.val_len, p.val);
			else
				snprintf(got, sizeof(got), "%.*s", (int)p.key_len, p.key);
			cr_expect_str_eq(got, tc->want[k], "case %zu param %d", i, k);
			k++;
		}
		cr_expect_eq(k, tc->want_n, "case %zu: count", i);
		cr_expect_eq(rc, tc->want_end, "case %zu: end %d", i, rc);
		free(copy);
	}
}

Test(smtp_parse, verb)
{
	static const struct {
		const char *in;
		const char *want_verb;
		const char *want_arg;
	} cases[] = {
		{ "NOOP", "NOOP", "" },
		{ "MAIL FROM:<a@b>", "MAIL", "FROM:<a@b>" },
		{ "EHLO   x.test   ", "EHLO", "x.test" },
		{ "", "", "" },
		{ " NOOP", "", "NOOP" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *arg;
		size_t alen, v;

		v = smtp_parse_verb(cases[i].in, strlen(cases[i].in), &arg, &alen);
		cr_expect_eq(v, strlen(cases[i].want_verb), "case %zu", i);
		cr_expect(memcmp(cases[i].in, cases[i].want_verb, v) == 0);
		cr_expect_eq(alen, strlen(cases[i].want_arg), "case %zu: arg", i);
		cr_expect(memcmp(arg, cases[i].want_arg, alen) == 0);
	}
	cr_expect(smtp_parse_token_eq("nOoP", 4, "NOOP"));
	cr_expect(!smtp_parse_token_eq("NOO", 3, "NOOP"));
	cr_expect(!smtp_parse_token_eq("NOOPS", 5, "NOOP"));
}
