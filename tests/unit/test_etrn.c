/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for proto/etrn.c: the ETRN node forms, the permission
 * decision, @domain/#queue row matching, the tally of a many-domain ETRN
 * and every reply text, each as a table with want_* fields. Parser inputs
 * are given as exact-size heap copies (ASan sees a read past the end), and
 * each is parsed again cut at every length, which must never crash.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/etrn.h"

#define T_LEN(s) (sizeof(s) - 1)
#define T_LONG_MAX 400

/* A node of n copies of ch after prefix (may be ""), in buf. */
static size_t t_fill(char *buf, const char *prefix, char ch, size_t n)
{
	size_t p = strlen(prefix);

	memcpy(buf, prefix, p);
	memset(buf + p, ch, n);
	return p + n;
}

static enum etrn_outcome t_parse(const char *in, size_t n, enum etrn_source src,
				 struct etrn_node *out, char **copy)
{
	/* An exact-size heap copy, so ASan sees any read past the input. */
	*copy = malloc(n ? n : 1);
	cr_assert(*copy != NULL);
	memcpy(*copy, in, n);
	return etrn_parse(*copy, n, src, out);
}

/* ---- etrn_parse ---------------------------------------------------------- */

struct t_parse_case {
	const char *name;
	enum etrn_source src;
	const char *in;
	size_t in_len;                 /* 0: strlen(in), unless empty */
	enum etrn_outcome want;
	enum etrn_kind want_kind;
	const char *want_name;         /* NULL: not checked (not ETRN_OK) */
	const char *want_shown;
};

static const struct t_parse_case t_parse_cases[] = {
	{ "domain", ETRN_SRC_SMTP_RAW, "a.test", 0, ETRN_OK, ETRN_KIND_DOMAIN, "a.test", "a.test" },
	{ "mixed case folds", ETRN_SRC_SMTP_RAW, "A.TeSt", 0, ETRN_OK, ETRN_KIND_DOMAIN, "a.test", "a.test" },
	{ "one trailing dot dropped", ETRN_SRC_SMTP_RAW, "a.test.", 0, ETRN_OK, ETRN_KIND_DOMAIN, "a.test", "a.test" },
	{ "only one trailing dot dropped", ETRN_SRC_SMTP_RAW, "a.test..", 0, ETRN_OK, ETRN_KIND_DOMAIN, "a.test.", "a.test." },
	{ "lone dot stays", ETRN_SRC_SMTP_RAW, ".", 0, ETRN_OK, ETRN_KIND_DOMAIN, ".", "." },
	{ "underscore and hyphen", ETRN_SRC_SMTP_RAW, "x_y-z.test", 0, ETRN_OK, ETRN_KIND_DOMAIN, "x_y-z.test", "x_y-z.test" },
	{ "subtree", ETRN_SRC_SMTP_RAW, "@A.test", 0, ETRN_OK, ETRN_KIND_SUBTREE, "A.test", "@A.test" },
	{ "subtree keeps its dot", ETRN_SRC_SMTP_RAW, "@a.test.", 0, ETRN_OK, ETRN_KIND_SUBTREE, "a.test.", "@a.test." },
	{ "queue", ETRN_SRC_SMTP_RAW, "#Q1", 0, ETRN_OK, ETRN_KIND_QUEUE, "Q1", "#Q1" },
	{ "empty", ETRN_SRC_SMTP_RAW, "", 0, ETRN_SYNTAX_EMPTY, 0, NULL, NULL },
	{ "lone @", ETRN_SRC_SMTP_RAW, "@", 0, ETRN_SYNTAX_NODE, 0, NULL, NULL },
	{ "lone #", ETRN_SRC_SMTP_RAW, "#", 0, ETRN_SYNTAX_NODE, 0, NULL, NULL },
	{ "@@", ETRN_SRC_SMTP_RAW, "@@a.test", 0, ETRN_SYNTAX_NODE, 0, NULL, NULL },
	{ "#@", ETRN_SRC_SMTP_RAW, "#@q", 0, ETRN_SYNTAX_NODE, 0, NULL, NULL },
	{ "space", ETRN_SRC_SMTP_RAW, "bad domain", 0, ETRN_SYNTAX_NODE, 0, NULL, NULL },
	{ "bang", ETRN_SRC_SMTP_RAW, "bad!", 0, ETRN_SYNTAX_NODE, 0, NULL, NULL },
	{ "NUL inside", ETRN_SRC_SMTP_RAW, "a\0b.test", 8, ETRN_SYNTAX_NODE, 0, NULL, NULL },
	{ "CR inside", ETRN_SRC_SMTP_RAW, "a\rb", 0, ETRN_SYNTAX_NODE, 0, NULL, NULL },
	{ "8-bit", ETRN_SRC_SMTP_RAW, "\xc3\xa9.test", 0, ETRN_SYNTAX_NODE, 0, NULL, NULL },
	/* After the server's check (smtp_server): forms only, as the drain
	 * has always taken them. */
	{ "checked @ alone", ETRN_SRC_SMTP, "@", 0, ETRN_OK, ETRN_KIND_SUBTREE, "", "@" },
	{ "checked # alone", ETRN_SRC_SMTP, "#", 0, ETRN_OK, ETRN_KIND_QUEUE, "", "#" },
	{ "checked empty", ETRN_SRC_SMTP, "", 0, ETRN_SYNTAX_DOMAIN, 0, NULL, NULL },
	{ "checked domain", ETRN_SRC_SMTP, "B.Test.", 0, ETRN_OK, ETRN_KIND_DOMAIN, "b.test", "b.test" },
	/* The operator: "@"/"#" alone are domain forms. */
	{ "operator @ alone", ETRN_SRC_OPERATOR, "@", 0, ETRN_OK, ETRN_KIND_DOMAIN, "@", "@" },
	{ "operator #q", ETRN_SRC_OPERATOR, "#q", 0, ETRN_OK, ETRN_KIND_QUEUE, "q", "#q" },
	{ "operator @d", ETRN_SRC_OPERATOR, "@d.test", 0, ETRN_OK, ETRN_KIND_SUBTREE, "d.test", "@d.test" },
	{ "operator empty", ETRN_SRC_OPERATOR, "", 0, ETRN_SYNTAX_OPERATOR, 0, NULL, NULL },
	{ "operator takes spaces", ETRN_SRC_OPERATOR, "not a domain", 0, ETRN_OK, ETRN_KIND_DOMAIN,
	  "not a domain", "not a domain" },
	/* ...but no line breaks: the reply names the node on one line
	 * (fuzz_etrn found "\n" echoed into a reply). */
	{ "operator LF", ETRN_SRC_OPERATOR, "\n", 0, ETRN_SYNTAX_OPERATOR, 0, NULL, NULL },
	{ "operator CR LF inside", ETRN_SRC_OPERATOR, "x.test\r\n250 ok", 0, ETRN_SYNTAX_OPERATOR,
	  0, NULL, NULL },
	{ "operator #q CR", ETRN_SRC_OPERATOR, "#q\r", 0, ETRN_SYNTAX_OPERATOR, 0, NULL, NULL },
};

static void t_check_parse(const struct t_parse_case *tc)
{
	size_t n = tc->in_len ? tc->in_len : strlen(tc->in);
	struct etrn_node nd;
	char *copy;
	enum etrn_outcome o = t_parse(tc->in, n, tc->src, &nd, &copy);

	cr_assert_eq(o, tc->want, "%s: outcome %d, want %d", tc->name, o, tc->want);
	if (tc->want == ETRN_OK) {
		cr_assert_eq(nd.kind, tc->want_kind, "%s: kind", tc->name);
		cr_assert_eq(nd.name_len, strlen(tc->want_name), "%s: name length %zu", tc->name,
			     nd.name_len);
		cr_assert(!memcmp(nd.name, tc->want_name, nd.name_len), "%s: name %.*s", tc->name,
			  (int)nd.name_len, nd.name);
		cr_assert_eq(nd.shown_len, strlen(tc->want_shown), "%s: shown length", tc->name);
		cr_assert(!memcmp(nd.shown, tc->want_shown, nd.shown_len), "%s: shown", tc->name);
	}
	free(copy);
	/* Every prefix parses to something, reading only its own bytes. */
	for (size_t k = 0; k < n; k++) {
		o = t_parse(tc->in, k, tc->src, &nd, &copy);
		cr_assert(o == ETRN_OK || o >= ETRN_SYNTAX_EMPTY, "%s cut at %zu", tc->name, k);
		free(copy);
	}
}

Test(etrn, parse_table)
{
	for (size_t i = 0; i < sizeof(t_parse_cases) / sizeof(t_parse_cases[0]); i++)
		t_check_parse(&t_parse_cases[i]);
}

Test(etrn, parse_lengths)
{
	static const struct {
		const char *prefix;
		size_t n;
		enum etrn_source src;
		enum etrn_outcome want;
	} cases[] = {
		{ "", 255, ETRN_SRC_SMTP_RAW, ETRN_OK },             /* RFC 1035: 255 */
		{ "", 256, ETRN_SRC_SMTP_RAW, ETRN_SYNTAX_DOMAIN },  /* passes the
		                                                        character check,
		                                                        is no domain */
		{ "", 257, ETRN_SRC_SMTP_RAW, ETRN_SYNTAX_NODE },    /* overlong */
		{ "@", 255, ETRN_SRC_SMTP_RAW, ETRN_OK },
		{ "@", 256, ETRN_SRC_SMTP_RAW, ETRN_SYNTAX_NODE },
		{ "#", 255, ETRN_SRC_SMTP_RAW, ETRN_OK },
		{ "", 256, ETRN_SRC_SMTP, ETRN_SYNTAX_DOMAIN },
		{ "", T_LONG_MAX, ETRN_SRC_OPERATOR, ETRN_SYNTAX_OPERATOR },
		{ "", 255, ETRN_SRC_OPERATOR, ETRN_OK },
	};
	char buf[T_LONG_MAX + 2];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = t_fill(buf, cases[i].prefix, 'a', cases[i].n);
		struct etrn_node nd;
		char *copy;

		cr_assert_eq(t_parse(buf, n, cases[i].src, &nd, &copy), cases[i].want,
			     "case %zu (%s + %zu)", i, cases[i].prefix, cases[i].n);
		free(copy);
	}
}

/* ---- etrn_client_addr and etrn_permit ------------------------------------ */

Test(etrn, client_addr)
{
	static const struct {
		const char *in;
		int want;
		int want_family;
	} cases[] = {
		{ "127.0.0.1", 0, AF_INET },
		{ "::1", 0, AF_INET6 },
		{ "::ffff:10.1.2.3", 0, AF_INET6 },
		{ "", -1, 0 },
		{ "localhost", -1, 0 },
		{ "127.0.0.1:25", -1, 0 },
		{ "[::1]", -1, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss;

		cr_assert_eq(etrn_client_addr(cases[i].in, &ss), cases[i].want, "%s", cases[i].in);
		if (cases[i].want == 0)
			cr_assert_eq(ss.ss_family, cases[i].want_family, "%s", cases[i].in);
	}
}

Test(etrn, permit)
{
	struct cidr nets[2] = {
		{ .family = AF_INET, .prefix = 8 },
		{ .family = AF_INET6, .prefix = 64 },
	};
	/* Both rows are owned by alice; "closed" has no etrn_from at all. */
	struct domtab_row row = { .name = "a.test", .owner = "alice", .etrn_from = nets,
				  .netrn_from = 2 };
	struct domtab_row closed = { .name = "b.test", .owner = "alice" };
	static const struct {
		const char *client;            /* NULL: the operator */
		const char *user;              /* authenticated user, NULL: none */
		int closed;                    /* the row without etrn_from */
		int no_row;
		enum etrn_outcome want;
	} cases[] = {
		{ "10.9.8.7", NULL, 0, 0, ETRN_OK },
		{ "11.0.0.1", NULL, 0, 0, ETRN_DENIED_CLIENT },
		{ "::ffff:10.0.0.1", NULL, 0, 0, ETRN_OK },    /* v4-mapped counts as v4 */
		{ "2001:db8:0:1::5", NULL, 0, 0, ETRN_OK },
		{ "2001:db8:0:2::5", NULL, 0, 0, ETRN_DENIED_CLIENT },
		{ "10.0.0.1", NULL, 1, 0, ETRN_DENIED_CLIENT },
		{ NULL, NULL, 1, 0, ETRN_OK },
		{ NULL, NULL, 0, 1, ETRN_DENIED_UNKNOWN },
		{ "10.0.0.1", NULL, 0, 1, ETRN_DENIED_UNKNOWN },
		/* The owner, from anywhere; etrn_from still works without. */
		{ "11.0.0.1", "alice", 0, 0, ETRN_OK },
		{ "2001:db8:0:2::5", "alice", 1, 0, ETRN_OK },
		{ "10.9.8.7", "alice", 0, 0, ETRN_OK },
		/* Another user: only etrn_from counts. Names are exact. */
		{ "11.0.0.1", "bob", 0, 0, ETRN_DENIED_CLIENT },
		{ "10.9.8.7", "bob", 0, 0, ETRN_OK },
		{ "11.0.0.1", "Alice", 1, 0, ETRN_DENIED_CLIENT },
		{ "11.0.0.1", "alic", 1, 0, ETRN_DENIED_CLIENT },
		{ "11.0.0.1", "alice2", 1, 0, ETRN_DENIED_CLIENT },
		{ "11.0.0.1", "", 1, 0, ETRN_DENIED_CLIENT },
		/* No row: unknown, whoever asks. */
		{ "10.0.0.1", "alice", 0, 1, ETRN_DENIED_UNKNOWN },
	};
	struct domtab_row unowned = { .name = "c.test" };

	nets[0].addr[0] = 10;
	cr_assert_eq(inet_pton(AF_INET6, "2001:db8:0:1::", nets[1].addr), 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss;
		const struct sockaddr *sa = NULL;
		const struct domtab_row *r = cases[i].no_row ? NULL : cases[i].closed ? &closed : &row;

		if (cases[i].client) {
			cr_assert_eq(etrn_client_addr(cases[i].client, &ss), 0);
			sa = (const struct sockaddr *)&ss;
		}
		cr_assert_eq(etrn_permit(r, sa, cases[i].user), cases[i].want, "case %zu (%s)", i,
			     cases[i].client ? cases[i].client : "operator");
	}
	/* A row without an owner is nobody's: no user gets it that way. */
	{
		struct sockaddr_storage ss;

		cr_assert_eq(etrn_client_addr("11.0.0.1", &ss), 0);
		cr_assert_eq(etrn_permit(&unowned, (const struct sockaddr *)&ss, "alice"),
			     ETRN_DENIED_CLIENT);
	}
}

/* ---- etrn_row_matches ---------------------------------------------------- */

Test(etrn, row_matches)
{
	static const struct {
		const char *node;              /* as the client gives it */
		const char *row;
		const char *queue;
		int want;
	} cases[] = {
		{ "@a.test", "a.test", NULL, 1 },
		{ "@A.TEST", "a.test", NULL, 1 },
		{ "@a.test", "sub.a.test", NULL, 1 },
		{ "@a.test", "x.sub.a.test", NULL, 1 },
		{ "@a.test", "xa.test", NULL, 0 },     /* a label boundary only */
		{ "@a.test", "a.test.org", NULL, 0 },
		{ "@a.test", "test", NULL, 0 },
		{ "@a.test", "*.a.test", NULL, 0 },    /* wildcard rows never */
		{ "@a.test.", "a.test", NULL, 0 },     /* no dot dropped after '@' */
		{ "@", "a.test", NULL, 0 },
		{ "#q1", "a.test", "q1", 1 },
		{ "#Q1", "a.test", "q1", 1 },
		{ "#q1", "a.test", "q10", 0 },
		{ "#q10", "a.test", "q1", 0 },
		{ "#q1", "a.test", NULL, 0 },
		{ "#q1", "*.a.test", "q1", 0 },
		{ "#", "a.test", "", 1 },
		{ "a.test", "a.test", "a.test", 0 },   /* a domain is looked up */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct domtab_row row = { .name = cases[i].row, .queue = cases[i].queue };
		struct etrn_node nd;

		cr_assert_eq(etrn_parse(cases[i].node, strlen(cases[i].node), ETRN_SRC_SMTP, &nd),
			     ETRN_OK);
		cr_assert_eq(etrn_row_matches(&nd, &row), cases[i].want, "%s vs %s/%s",
			     cases[i].node, cases[i].row, cases[i].queue ? cases[i].queue : "-");
	}
}

/* ---- etrn_tally ---------------------------------------------------------- */

Test(etrn, tally)
{
	static const struct {
		const char *name;
		struct {
			enum etrn_outcome permit, started;
			uint64_t n;
		} rows[4];
		unsigned nrows;
		enum etrn_outcome want;
		uint64_t want_total;
	} cases[] = {
		{ "no match", { { 0, 0, 0 } }, 0, ETRN_DENIED_NO_MATCH, 0 },
		{ "none allowed", { { ETRN_DENIED_CLIENT, 0, 0 }, { ETRN_DENIED_CLIENT, 0, 0 } }, 2,
		  ETRN_DENIED_NONE_ALLOWED, 0 },
		{ "nothing held", { { ETRN_OK, ETRN_NONE_WAITING, 0 } }, 1, ETRN_NONE_WAITING, 0 },
		{ "all joined", { { ETRN_OK, ETRN_JOINED, 0 }, { ETRN_OK, ETRN_NONE_WAITING, 0 } }, 2,
		  ETRN_JOINED, 0 },
		{ "started wins", { { ETRN_OK, ETRN_STARTED, 10 }, { ETRN_OK, ETRN_JOINED, 0 },
				    { ETRN_OK, ETRN_STARTED, 5 }, { ETRN_DENIED_CLIENT, ETRN_STARTED, 99 } },
		  4, ETRN_STARTED, 15 },
		{ "unable counts as allowed", { { ETRN_OK, ETRN_UNABLE, 0 } }, 1, ETRN_NONE_WAITING, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct etrn_tally t;

		memset(&t, 0, sizeof(t));
		for (unsigned r = 0; r < cases[i].nrows; r++)
			etrn_tally_add(&t, cases[i].rows[r].permit, cases[i].rows[r].started,
				       cases[i].rows[r].n);
		cr_assert_eq(etrn_tally_outcome(&t), cases[i].want, "%s", cases[i].name);
		cr_assert_eq(t.total, cases[i].want_total, "%s", cases[i].name);
	}
}

/* ---- etrn_reply ---------------------------------------------------------- */

struct t_reply_case {
	enum etrn_outcome o;
	const char *node;
	size_t node_len;               /* 0: strlen(node) */
	const char *client;
	uint64_t n;
	const char *want;
};

/* The texts tests/integration/test_etrn.py and etrnctl users see. */
static const struct t_reply_case t_reply_cases[] = {
	{ ETRN_QUEUING, "a.test", 0, NULL, 0, "250 2.0.0 OK, queuing for node a.test started\r\n" },
	{ ETRN_NONE_WAITING, "@a.test", 0, NULL, 0, "251 2.0.0 OK, no messages waiting for node @a.test\r\n" },
	{ ETRN_JOINED, "a.test", 0, NULL, 0, "252 2.0.0 OK, pending messages for node a.test started\r\n" },
	{ ETRN_STARTED, "#q1", 0, NULL, 15, "253 2.0.0 OK, 15 pending messages for node #q1 started\r\n" },
	{ ETRN_STARTED, "a.test", 0, NULL, 18446744073709551615ull,
	  "253 2.0.0 OK, 18446744073709551615 pending messages for node a.test started\r\n" },
	{ ETRN_UNABLE, "a.test", 0, NULL, 0, "458 4.3.0 Unable to queue messages for node a.test\r\n" },
	{ ETRN_RATE_LIMITED, "a.test", 0, "127.0.0.1", 0,
	  "458 4.7.0 Unable to queue messages for node a.test: too many ETRN requests, try later\r\n" },
	{ ETRN_DENIED_ADDRESS, "a.test", 0, "junk", 0,
	  "459 4.7.1 Node a.test not allowed: unknown client address\r\n" },
	{ ETRN_DENIED_UNKNOWN, "nothere.test", 0, NULL, 0,
	  "459 4.7.1 Node nothere.test not allowed: not a customer domain here\r\n" },
	{ ETRN_DENIED_CLIENT, "far.test", 0, "127.0.0.1", 0,
	  "459 4.7.1 Node far.test not allowed: client 127.0.0.1 may not release it\r\n" },
	{ ETRN_DENIED_NONE_ALLOWED, "#q", 0, "127.0.0.1", 0,
	  "459 4.7.1 Node #q not allowed: client may not release it\r\n" },
	{ ETRN_DENIED_NO_MATCH, "#nosuch", 0, "127.0.0.1", 0,
	  "459 4.7.1 Node #nosuch not allowed: no such queue or domain here\r\n" },
	{ ETRN_SYNTAX_EMPTY, "", 0, NULL, 0, "500 5.5.2 Syntax: ETRN domain\r\n" },
	{ ETRN_SYNTAX_NODE, "bad!", 0, NULL, 0,
	  "501 5.5.4 Syntax error in parameters: ETRN domain, @domain or #queue\r\n" },
	{ ETRN_SYNTAX_DOMAIN, "", 0, NULL, 0, "501 5.5.4 Syntax error in parameters\r\n" },
	{ ETRN_SYNTAX_OPERATOR, "", 0, NULL, 0, "501 5.5.4 Syntax error in parameters: a domain\r\n" },
	/* A NUL ends the node in a reply line. */
	{ ETRN_JOINED, "a\0b", 3, NULL, 0, "252 2.0.0 OK, pending messages for node a started\r\n" },
	{ ETRN_DENIED_CLIENT, "x.test", 0, NULL, 0,
	  "459 4.7.1 Node x.test not allowed: client  may not release it\r\n" },
};

Test(etrn, reply_table)
{
	for (size_t i = 0; i < sizeof(t_reply_cases) / sizeof(t_reply_cases[0]); i++) {
		const struct t_reply_case *tc = &t_reply_cases[i];
		size_t n = tc->node_len ? tc->node_len : strlen(tc->node);
		struct buf out;

		buf_init(&out, 0);
		cr_assert_eq(etrn_reply(&out, tc->o, tc->node, n, tc->client, tc->n), 0, "case %zu", i);
		cr_assert_eq(out.len, strlen(tc->want), "case %zu: %.*s", i, (int)out.len, out.data);
		cr_assert(!memcmp(out.data, tc->want, out.len), "case %zu: %.*s", i, (int)out.len,
			  out.data);
		buf_free(&out);
	}
}

Test(etrn, reply_echo_is_cut)
{
	char node[T_LONG_MAX];
	size_t n = t_fill(node, "", 'a', 300);
	struct buf out;
	const char *p;

	buf_init(&out, 0);
	cr_assert_eq(etrn_reply(&out, ETRN_RATE_LIMITED, node, n, "10.0.0.1", 0), 0);
	p = memchr(out.data, ':', out.len);
	cr_assert(p != NULL);
	/* "458 4.7.0 Unable to queue messages for node " + 255 'a'. */
	cr_assert_eq((size_t)(p - out.data), strlen("458 4.7.0 Unable to queue messages for node ") +
			     ETRN_ECHO_MAX);
	buf_reset(&out);
	cr_assert_eq(etrn_reply(&out, ETRN_UNABLE, node, n, NULL, 0), 0);
	cr_assert_eq(out.len, strlen("458 4.3.0 Unable to queue messages for node \r\n") + 300);
	cr_assert_eq(etrn_reply(&out, ETRN_OK, node, n, NULL, 0), -EINVAL);
	buf_free(&out);
}
