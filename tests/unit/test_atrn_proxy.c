/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for proto/atrn_proxy.c: dialogues in C tables (customer bytes,
 * node bytes, attach/finish/loss steps) -> exactly what goes to the node,
 * what goes to the customer, the events and the messages relayed. A small
 * driver plays drain_atrn's glue: input the relay does not take now is kept
 * and offered again after the other side's next feed. Every case is
 * replayed with each step's input whole, then one byte at a time, then in
 * chunks of 3 and 7; all runs must give the wanted results.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "proto/atrn_proxy.h"

#define T_STEPS_MAX 24
#define T_NUL_MAX 64

struct t_step {
	char who;        /* 'C' customer bytes, 'N' node bytes, 'A' attach,
	                    'F' finish, 'c' customer EOF, 'n' node EOF */
	const char *in;  /* '0' steps: node bytes with each '@' a NUL */
};

struct t_case {
	const char *name;
	int greeted;
	struct t_step steps[T_STEPS_MAX];
	const char *want_node;  /* everything sent to the node */
	const char *want_cust;  /* everything sent to the customer */
	const char *want_ev;    /* R ready, N node done, D done, F failed */
	unsigned want_relayed;  /* relayed_total */
	enum atrn_proxy_state want_state;
};

struct t_run {
	struct atrn_proxy *p;
	const char *name;
	struct buf to_node, to_cust, node_in, cust_in, ev;
};

static void t_event(struct t_run *r, enum atrn_proxy_event ev)
{
	static const char letters[] = { [ATRN_PROXY_EV_READY] = 'R',
		[ATRN_PROXY_EV_NODE_DONE] = 'N', [ATRN_PROXY_EV_DONE] = 'D',
		[ATRN_PROXY_EV_FAILED] = 'F' };

	if (ev != ATRN_PROXY_EV_NONE)
		(void)buf_append(&r->ev, &letters[ev], 1);
}

/* Offer one side's kept input; returns the bytes taken. */
static size_t t_offer(struct t_run *r, int node)
{
	struct buf *in = node ? &r->node_in : &r->cust_in;
	enum atrn_proxy_event ev;
	size_t k;

	if (in->len == 0)
		return 0;
	k = node ? atrn_proxy_feed_node(r->p, in->data, in->len, &r->to_node, &r->to_cust, &ev)
		 : atrn_proxy_feed_cust(r->p, in->data, in->len, &r->to_node, &r->to_cust, &ev);
	t_event(r, ev);
	buf_consume(in, k);
	return k;
}

/* As the glue does: offer both sides' kept input until neither takes more. */
static void t_pump(struct t_run *r)
{
	while (t_offer(r, 0) + t_offer(r, 1) > 0)
		;
}

/* One side's bytes arrive chunk by chunk; each arrival is offered. */
static void t_bytes(struct t_run *r, int node, const char *b, size_t n, size_t chunk)
{
	for (size_t off = 0; off < n; off += chunk) {
		(void)buf_append(node ? &r->node_in : &r->cust_in, b + off,
				 n - off < chunk ? n - off : chunk);
		t_pump(r);
	}
}

static void t_step(struct t_run *r, const struct t_step *s, size_t chunk)
{
	size_t n = s->in ? strlen(s->in) : 0;
	char nul[T_NUL_MAX];
	enum atrn_proxy_event ev = ATRN_PROXY_EV_NONE;

	switch (s->who) {
	case 'A':
		cr_assert_eq(atrn_proxy_attach(r->p, &r->to_node), 0);
		t_pump(r);
		break;
	case 'F':
		cr_assert_eq(atrn_proxy_finish(r->p, &r->to_cust), 0, "%s: finish in state %s why %s (%.*s)", r->name,
			     atrn_proxy_state_name(atrn_proxy_state(r->p)), atrn_proxy_why(r->p), (int)r->to_node.len,
			     r->to_node.data);
		break;
	case 'c':
		(void)atrn_proxy_feed_cust(r->p, "", 0, &r->to_node, &r->to_cust, &ev);
		t_event(r, ev);
		break;
	case 'n':
		r->node_in.len = 0; /* what it had sent is gone with it */
		(void)atrn_proxy_feed_node(r->p, "", 0, &r->to_node, &r->to_cust, &ev);
		t_event(r, ev);
		break;
	case 'C':
		t_bytes(r, 0, s->in, n, chunk);
		break;
	case '0':
		cr_assert(n < sizeof(nul));
		for (size_t i = 0; i < n; i++)
			nul[i] = s->in[i] == '@' ? '\0' : s->in[i];
		t_bytes(r, 1, nul, n, chunk);
		break;
	case 'N':
		t_bytes(r, 1, s->in, n, chunk);
		break;
	default:
		cr_assert_fail("bad step %c", s->who);
	}
}

static void t_expect(const char *what, const char *name, size_t chunk, const struct buf *b,
		     const char *want)
{
	cr_expect(b->len == strlen(want) && memcmp(b->data ? b->data : "", want, b->len) == 0,
		  "%s (chunk %zu): %s:\n got [%.*s]\nwant [%s]", name, chunk, what, (int)b->len,
		  b->data ? b->data : "", want);
}

static void t_run_case(const struct t_case *tc, size_t chunk)
{
	struct atrn_proxy_conf conf = { .name = "a.node.test", .greeted = tc->greeted };
	struct t_run r = { 0 };

	r.name = tc->name;
	buf_init(&r.to_node, 0);
	buf_init(&r.to_cust, 0);
	buf_init(&r.node_in, 0);
	buf_init(&r.cust_in, 0);
	buf_init(&r.ev, 0);
	r.p = atrn_proxy_new(&conf);
	cr_assert_not_null(r.p);
	for (size_t i = 0; i < T_STEPS_MAX && tc->steps[i].who; i++)
		t_step(&r, &tc->steps[i], chunk ? chunk : SIZE_MAX);
	t_expect("to the node", tc->name, chunk, &r.to_node, tc->want_node);
	t_expect("to the customer", tc->name, chunk, &r.to_cust, tc->want_cust);
	t_expect("events", tc->name, chunk, &r.ev, tc->want_ev);
	cr_expect_eq(atrn_proxy_relayed_total(r.p), tc->want_relayed, "%s (chunk %zu): relayed",
		     tc->name, chunk);
	cr_expect_eq(atrn_proxy_state(r.p), tc->want_state, "%s (chunk %zu): state %s", tc->name,
		     chunk, atrn_proxy_state_name(atrn_proxy_state(r.p)));
	atrn_proxy_free(r.p);
	buf_free(&r.to_node);
	buf_free(&r.to_cust);
	buf_free(&r.node_in);
	buf_free(&r.cust_in);
	buf_free(&r.ev);
}

#define GREET { 'C', "220 cust.test ESMTP\r\n" }
#define EHLO_OK { 'C', "250-cust.test\r\n250-8BITMIME\r\n250 PIPELINING\r\n" }
#define HELLO_CUST "EHLO a.node.test\r\n"
#define HELLO_NODE "220 a.node.test ESMTP relay of a cluster ATRN\r\n"
#define EHLO_NODE "250-a.node.test\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"
#define MSG_CMDS "MAIL FROM:<s@x.test>\r\n"
#define BODY "Subject: t\r\n\r\n..dot\r\n.\r\n"

static const struct t_case t_cases[] = {
	{ "one message, then QUIT of node and customer", 0,
	  { GREET, EHLO_OK, { 'A', 0 }, { 'N', "EHLO b.node.test\r\n" },
	    { 'N', MSG_CMDS }, { 'C', "250 2.1.0 Ok\r\n" },
	    { 'N', "RCPT TO:<u@c.test>\r\n" }, { 'C', "250 2.1.5 Ok\r\n" },
	    { 'N', "DATA\r\n" }, { 'C', "354 go\r\n" }, { 'N', BODY },
	    { 'C', "250 2.0.0 queued\r\n" }, { 'N', "QUIT\r\n" }, { 'F', 0 },
	    { 'C', "221 bye\r\n" } },
	  HELLO_NODE EHLO_NODE "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n250 2.0.0 queued\r\n"
	  "221 2.0.0 a.node.test closing\r\n",
	  HELLO_CUST MSG_CMDS "RCPT TO:<u@c.test>\r\nDATA\r\n" BODY "QUIT\r\n",
	  "RND", 1, ATRN_PROXY_S_DONE },
	{ "the node pipelines anyway: one command at a time", 1,
	  { { 'A', 0 }, { 'N', MSG_CMDS "RCPT TO:<u@c.test>\r\nDATA\r\n" },
	    { 'C', "250 ok\r\n" }, { 'C', "250 ok\r\n" }, { 'C', "354 go\r\n" },
	    { 'N', BODY }, { 'C', "250 done\r\n" } },
	  HELLO_NODE "250 ok\r\n250 ok\r\n354 go\r\n250 done\r\n",
	  MSG_CMDS "RCPT TO:<u@c.test>\r\nDATA\r\n" BODY, "", 1, ATRN_PROXY_S_CMD },
	{ "per-RCPT 4xx/5xx and a 5xx after the body relayed exactly", 1,
	  { { 'A', 0 }, { 'N', MSG_CMDS }, { 'C', "250 ok\r\n" },
	    { 'N', "RCPT TO:<a@c.test>\r\n" }, { 'C', "450-4.2.0 mailbox\r\n450 4.2.0 busy\r\n" },
	    { 'N', "RCPT TO:<b@c.test>\r\n" }, { 'C', "550 5.1.1 no such user\r\n" },
	    { 'N', "RCPT TO:<c@c.test>\r\n" }, { 'C', "250 ok\r\n" },
	    { 'N', "DATA\r\n" }, { 'C', "354 go\r\n" }, { 'N', BODY },
	    { 'C', "554 5.6.0 content rejected\r\n" }, { 'N', "RSET\r\n" },
	    { 'C', "250 reset\r\n" } },
	  HELLO_NODE "250 ok\r\n450-4.2.0 mailbox\r\n450 4.2.0 busy\r\n550 5.1.1 no such user\r\n"
	  "250 ok\r\n354 go\r\n554 5.6.0 content rejected\r\n250 reset\r\n",
	  MSG_CMDS "RCPT TO:<a@c.test>\r\nRCPT TO:<b@c.test>\r\nRCPT TO:<c@c.test>\r\nDATA\r\n"
	  BODY "RSET\r\n", "", 0, ATRN_PROXY_S_CMD },
	{ "customer lost mid-DATA: both close", 1,
	  { { 'A', 0 }, { 'N', MSG_CMDS }, { 'C', "250 ok\r\n" }, { 'N', "DATA\r\n" },
	    { 'C', "354 go\r\n" }, { 'N', "Subject: t\r\n" }, { 'c', 0 } },
	  HELLO_NODE "250 ok\r\n354 go\r\n", MSG_CMDS "DATA\r\nSubject: t\r\n", "F", 0,
	  ATRN_PROXY_S_FAILED },
	{ "node lost mid-body: the customer is closed, no final dot", 1,
	  { { 'A', 0 }, { 'N', MSG_CMDS }, { 'C', "250 ok\r\n" }, { 'N', "DATA\r\n" },
	    { 'C', "354 go\r\n" }, { 'N', "Subject: t\r\n" }, { 'n', 0 } },
	  HELLO_NODE "250 ok\r\n354 go\r\n", MSG_CMDS "DATA\r\nSubject: t\r\n", "F", 0,
	  ATRN_PROXY_S_FAILED },
	{ "node lost awaiting a RCPT reply: RSET after it", 1,
	  { { 'A', 0 }, { 'N', MSG_CMDS }, { 'C', "250 ok\r\n" }, { 'N', "RCPT TO:<u@c.test>\r\n" },
	    { 'n', 0 }, { 'C', "250 ok\r\n" }, { 'C', "250 reset\r\n" } },
	  HELLO_NODE "250 ok\r\n", MSG_CMDS "RCPT TO:<u@c.test>\r\nRSET\r\n", "NR", 0,
	  ATRN_PROXY_S_IDLE },
	{ "node lost after MAIL: RSET to the customer, then ready", 1,
	  { { 'A', 0 }, { 'N', MSG_CMDS }, { 'C', "250 ok\r\n" }, { 'n', 0 },
	    { 'C', "250 reset\r\n" } },
	  HELLO_NODE "250 ok\r\n", MSG_CMDS "RSET\r\n", "NR", 0, ATRN_PROXY_S_IDLE },
	{ "node lost awaiting the final reply: reply eaten (the message is a duplicate later)", 1,
	  { { 'A', 0 }, { 'N', MSG_CMDS }, { 'C', "250 ok\r\n" }, { 'N', "DATA\r\n" },
	    { 'C', "354 go\r\n" }, { 'N', BODY }, { 'n', 0 }, { 'C', "250 queued\r\n" } },
	  HELLO_NODE "250 ok\r\n354 go\r\n", MSG_CMDS "DATA\r\n" BODY, "NR", 1,
	  ATRN_PROXY_S_IDLE },
	{ "node lost between transactions: ready at once", 1,
	  { { 'A', 0 }, { 'N', "NOOP\r\n" }, { 'C', "250 ok\r\n" }, { 'n', 0 } },
	  HELLO_NODE "250 ok\r\n", "NOOP\r\n", "N", 0, ATRN_PROXY_S_IDLE },
	{ "two nodes one after the other", 1,
	  { { 'A', 0 }, { 'N', "QUIT\r\n" }, { 'A', 0 }, { 'N', "HELO b\r\nQUIT\r\n" },
	    { 'F', 0 }, { 'C', "221 bye\r\n" } },
	  HELLO_NODE "221 2.0.0 a.node.test closing\r\n" HELLO_NODE "250 a.node.test\r\n"
	  "221 2.0.0 a.node.test closing\r\n", "QUIT\r\n", "NND", 0, ATRN_PROXY_S_DONE },
	{ "commands we do not relay: 502, STARTTLS and AUTH included", 1,
	  { { 'A', 0 }, { 'N', "STARTTLS\r\nAUTH PLAIN x\r\nBDAT 5\r\nVRFY x\r\n" } },
	  HELLO_NODE "502 5.5.1 Error: command not implemented\r\n"
	  "502 5.5.1 Error: command not implemented\r\n502 5.5.1 Error: command not implemented\r\n"
	  "502 5.5.1 Error: command not implemented\r\n", "", "", 0, ATRN_PROXY_S_CMD },
	{ "NUL and bare CR in a command", 1,
	  { { 'A', 0 }, { 'N', "NOOP\rx\r\n" }, { '0', "NO@P\r\n" } },
	  HELLO_NODE "500 5.5.2 Error: bad octet in command\r\n500 5.5.2 Error: bad octet in command\r\n",
	  "", "", 0, ATRN_PROXY_S_CMD },
	{ "the customer's greeting is 554", 0, { { 'C', "554 go away\r\n" } }, "", "", "F", 0,
	  ATRN_PROXY_S_FAILED },
	{ "the customer's reply is not SMTP", 1,
	  { { 'A', 0 }, { 'N', "NOOP\r\n" }, { 'C', "hello\r\n" } },
	  HELLO_NODE, "NOOP\r\n", "F", 0, ATRN_PROXY_S_FAILED },
	{ "the customer speaks out of turn", 1, { { 'A', 0 }, { 'C', "250 ok\r\n" } },
	  HELLO_NODE, "", "F", 0, ATRN_PROXY_S_FAILED },
	{ "reply lines split, bare LF taken", 0,
	  { { 'C', "22" }, { 'C', "0 hi\n" }, { 'C', "250-x\r" }, { 'C', "\n250 SMTPUTF8\r\n" } },
	  "", HELLO_CUST, "R", 0, ATRN_PROXY_S_IDLE },
};

Test(atrn_proxy, table_whole_and_byte_by_byte)
{
	static const size_t chunks[] = { 0, 1, 3, 7 };

	for (size_t i = 0; i < sizeof(t_cases) / sizeof(t_cases[0]); i++)
		for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++)
			t_run_case(&t_cases[i], chunks[k]);
}

static int t_has(const struct buf *b, const char *s)
{
	size_t n = strlen(s);

	for (size_t i = 0; i + n <= b->len; i++)
		if (memcmp(b->data + i, s, n) == 0)
			return 1;
	return 0;
}

Test(atrn_proxy, overlong_command_and_error_budget)
{
	struct atrn_proxy_conf conf = { .name = "a", .greeted = 1 };
	struct atrn_proxy *p = atrn_proxy_new(&conf);
	struct buf to_node, to_cust;
	char line[ATRN_PROXY_CMD_MAX + 10];
	enum atrn_proxy_event ev = ATRN_PROXY_EV_NONE;

	buf_init(&to_node, 0);
	buf_init(&to_cust, 0);
	cr_assert_eq(atrn_proxy_attach(p, &to_node), 0);
	memset(line, 'A', sizeof(line) - 2);
	memcpy(line + sizeof(line) - 2, "\r\n", 2);
	(void)atrn_proxy_feed_node(p, line, sizeof(line), &to_node, &to_cust, &ev);
	cr_expect(t_has(&to_node, "500 5.5.2"));
	for (int i = 0; i < 20 && ev == ATRN_PROXY_EV_NONE; i++)
		(void)atrn_proxy_feed_node(p, "XXXX\r\n", 6, &to_node, &to_cust, &ev);
	cr_expect_eq(ev, ATRN_PROXY_EV_NODE_DONE, "the error budget ends the node");
	cr_expect(t_has(&to_node, "421 4.7.0"));
	cr_expect_eq(atrn_proxy_state(p), ATRN_PROXY_S_IDLE);
	cr_expect_eq(to_cust.len, 0u);
	atrn_proxy_free(p);
	buf_free(&to_node);
	buf_free(&to_cust);
}

Test(atrn_proxy, body_over_the_bound_ends_the_relay)
{
	struct atrn_proxy_conf conf = { .name = "a", .greeted = 1, .body_max = 16 };
	struct atrn_proxy *p = atrn_proxy_new(&conf);
	struct buf to_node, to_cust;
	enum atrn_proxy_event ev;
	static const char cmds[] = "MAIL FROM:<a@b>\r\n";

	buf_init(&to_node, 0);
	buf_init(&to_cust, 0);
	cr_assert_eq(atrn_proxy_attach(p, &to_node), 0);
	(void)atrn_proxy_feed_node(p, cmds, sizeof(cmds) - 1, &to_node, &to_cust, &ev);
	(void)atrn_proxy_feed_cust(p, "250 ok\r\n", 8, &to_node, &to_cust, &ev);
	(void)atrn_proxy_feed_node(p, "DATA\r\n", 6, &to_node, &to_cust, &ev);
	(void)atrn_proxy_feed_cust(p, "354 go\r\n", 8, &to_node, &to_cust, &ev);
	(void)atrn_proxy_feed_node(p, "0123456789abc\r\n", 15, &to_node, &to_cust, &ev);
	cr_expect_eq(ev, ATRN_PROXY_EV_NONE, "15 bytes fit 16");
	(void)atrn_proxy_feed_node(p, "x\r\n", 3, &to_node, &to_cust, &ev);
	cr_expect_eq(ev, ATRN_PROXY_EV_FAILED, "18 do not");
	cr_expect_eq(atrn_proxy_state(p), ATRN_PROXY_S_FAILED);
	cr_expect(!t_has(&to_cust, "x\r\n"), "the line over the bound is not sent");
	atrn_proxy_free(p);
	buf_free(&to_node);
	buf_free(&to_cust);
}

Test(atrn_proxy, bad_conf_and_busy)
{
	struct atrn_proxy_conf conf = { .name = "" };
	struct buf b;
	struct atrn_proxy *p;

	buf_init(&b, 0);
	cr_expect_null(atrn_proxy_new(&conf));
	conf.name = "a";
	p = atrn_proxy_new(&conf);
	cr_assert_not_null(p);
	cr_expect_eq(atrn_proxy_attach(p, &b), -EBUSY, "not greeted yet");
	cr_expect_eq(atrn_proxy_finish(p, &b), -EBUSY);
	atrn_proxy_free(p);
	buf_free(&b);
}
