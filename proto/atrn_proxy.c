/* SPDX-License-Identifier: MIT */
/*
 * atrn_proxy: see atrn_proxy.h. One command of the node is in flight at a
 * time (we offer no PIPELINING), so the only queue is the input the caller
 * keeps while a customer reply is awaited. A node that goes away between
 * transactions costs nothing; in the middle of one, the customer gets RSET;
 * in the middle of a body, the customer's connection is closed without the
 * final dot (RFC 5321 4.1.1.4: an unfinished DATA is no message), since
 * nothing sent inside DATA can cancel it.
 */
#include "proto/atrn_proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ascii.h"
#include "core/linereader.h"
#include "core/log.h"

/* Commands of the node answered with an error before it counts as broken
 * (RFC 5321 4.3.2: a server may close after too many). */
#define ATRN_PROXY_ERRORS_MAX 10

/* What the command in flight was, for its reply. */
enum atrn_proxy_cmd { PX_CMD_OTHER = 0, PX_CMD_MAIL, PX_CMD_DATA, PX_CMD_RSET };

struct atrn_proxy {
	enum atrn_proxy_state state;
	struct atrn_proxy_conf conf;
	char name[ATRN_PROXY_NAME_MAX];
	struct linereader node_lr, cust_lr;
	char node_buf[ATRN_PROXY_TEXT_MAX];
	char cust_buf[ATRN_PROXY_REPLY_MAX];
	enum atrn_proxy_cmd cmd;   /* the command the reply awaited answers */
	int relay;                 /* the reply awaited goes to the node */
	int node_gone;             /* the node left while a reply was awaited */
	int tx_open;               /* the customer took a MAIL not yet ended */
	int first_code;            /* code of the reply's first line */
	unsigned lines;            /* lines of the reply so far */
	unsigned errors;           /* node commands refused here */
	unsigned relayed, relayed_total;
	size_t body;               /* body bytes of the message so far */
	char why[ATRN_PROXY_WHY_MAX];
};

static const char *const px_state_names[ATRN_PROXY_S_NSTATES] = {
	[ATRN_PROXY_S_GREETING] = "greeting", [ATRN_PROXY_S_EHLO] = "ehlo",
	[ATRN_PROXY_S_IDLE] = "idle", [ATRN_PROXY_S_CMD] = "cmd",
	[ATRN_PROXY_S_REPLY] = "reply", [ATRN_PROXY_S_BODY] = "body",
	[ATRN_PROXY_S_DOT] = "dot", [ATRN_PROXY_S_RSET] = "rset",
	[ATRN_PROXY_S_QUIT] = "quit", [ATRN_PROXY_S_DONE] = "done",
	[ATRN_PROXY_S_FAILED] = "failed",
};

const char *atrn_proxy_state_name(enum atrn_proxy_state st)
{
	return st < ATRN_PROXY_S_NSTATES ? px_state_names[st] : "?";
}

/* The one place the state changes; logged. */
static void px_enter(struct atrn_proxy *p, enum atrn_proxy_state st, const char *why)
{
	log_debug("atrn proxy: %s -> %s (%s)", px_state_names[p->state], px_state_names[st], why);
	p->state = st;
}

static enum atrn_proxy_event px_fail(struct atrn_proxy *p, const char *why)
{
	snprintf(p->why, sizeof(p->why), "%s", why);
	px_enter(p, ATRN_PROXY_S_FAILED, why);
	return ATRN_PROXY_EV_FAILED;
}

/* b may be NULL: that side is gone (its connection closed). */
static void px_put(struct buf *b, const char *line, size_t len)
{
	if (!b)
		return;
	(void)buf_append(b, line, len);
	(void)buf_append(b, "\r\n", 2);
}

struct atrn_proxy *atrn_proxy_new(const struct atrn_proxy_conf *conf)
{
	struct atrn_proxy *p;
	size_t n = conf->name ? strlen(conf->name) : 0;

	if (n == 0 || n >= ATRN_PROXY_NAME_MAX)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->conf = *conf;
	memcpy(p->name, conf->name, n + 1);
	p->conf.name = p->name;
	linereader_init(&p->node_lr, p->node_buf, sizeof(p->node_buf));
	linereader_init(&p->cust_lr, p->cust_buf, sizeof(p->cust_buf));
	p->state = conf->greeted ? ATRN_PROXY_S_IDLE : ATRN_PROXY_S_GREETING;
	return p;
}

struct atrn_proxy *atrn_proxy_free(struct atrn_proxy *p)
{
	free(p);
	return NULL;
}

enum atrn_proxy_state atrn_proxy_state(const struct atrn_proxy *p)
{
	return p->state;
}

unsigned atrn_proxy_relayed(const struct atrn_proxy *p)
{
	return p->relayed;
}

unsigned atrn_proxy_relayed_total(const struct atrn_proxy *p)
{
	return p->relayed_total;
}

const char *atrn_proxy_why(const struct atrn_proxy *p)
{
	return p->why;
}

int atrn_proxy_attach(struct atrn_proxy *p, struct buf *to_node)
{
	if (p->state != ATRN_PROXY_S_IDLE)
		return -EBUSY;
	p->relayed = 0;
	p->errors = 0;
	p->node_gone = 0;
	p->tx_open = 0;
	p->why[0] = '\0';
	linereader_reset(&p->node_lr);
	(void)buf_printf(to_node, "220 %s ESMTP relay of a cluster ATRN\r\n", p->name);
	px_enter(p, ATRN_PROXY_S_CMD, "node attached");
	return 0;
}

int atrn_proxy_finish(struct atrn_proxy *p, struct buf *to_cust)
{
	if (p->state != ATRN_PROXY_S_IDLE)
		return -EBUSY;
	(void)buf_puts(to_cust, "QUIT\r\n");
	p->relay = 0;
	p->lines = 0;
	px_enter(p, ATRN_PROXY_S_QUIT, "no more nodes");
	return 0;
}

/* ---- the customer's replies --------------------------------------------- */

/* A reply line: "ddd", "ddd text" or "ddd-text". Its code, or -1. */
static int px_reply_code(const char *s, size_t n, int *last)
{
	if (n < 3 || (n > 3 && s[3] != ' ' && s[3] != '-'))
		return -1;
	for (int i = 0; i < 3; i++)
		if (s[i] < '0' || s[i] > '9')
			return -1;
	if (s[0] < '2' || s[0] > '5')
		return -1;
	*last = n == 3 || s[3] == ' ';
	return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
}

/* An EHLO keyword of the customer we pass on to the node. */
static void px_ehlo_line(struct atrn_proxy *p, const char *s, size_t n)
{
	if (n < 4)
		return;
	s += 4;
	n -= 4;
	if (n == 8 && ascii_eq_n(s, "8BITMIME", 8))
		p->conf.cust_8bitmime = 1;
	if (n == 8 && ascii_eq_n(s, "SMTPUTF8", 8))
		p->conf.cust_smtputf8 = 1;
}

/* After the node is gone: the customer's transaction, if one may be open,
 * is ended with RSET; else the customer is idle again. */
static enum atrn_proxy_event px_after_node(struct atrn_proxy *p, struct buf *to_cust)
{
	if (p->tx_open || p->cmd == PX_CMD_MAIL) {
		px_put(to_cust, "RSET", 4);
		p->cmd = PX_CMD_RSET;
		p->relay = 0;
		px_enter(p, ATRN_PROXY_S_RSET, "node gone in a transaction");
		return ATRN_PROXY_EV_NONE;
	}
	px_enter(p, ATRN_PROXY_S_IDLE, "node gone between transactions");
	return ATRN_PROXY_EV_READY;
}

/* The whole reply is in (code is its code): what it means in each state. */
static enum atrn_proxy_event px_reply_done(struct atrn_proxy *p, int code, struct buf *to_node,
					   struct buf *to_cust)
{
	switch (p->state) {
	case ATRN_PROXY_S_GREETING:
		if (code != 220)
			return px_fail(p, "the customer's greeting is no 220");
		if (to_cust)
			(void)buf_printf(to_cust, "EHLO %s\r\n", p->name);
		px_enter(p, ATRN_PROXY_S_EHLO, "220");
		return ATRN_PROXY_EV_NONE;
	case ATRN_PROXY_S_EHLO:
		if (code != 250)
			return px_fail(p, "the customer refused EHLO");
		px_enter(p, ATRN_PROXY_S_IDLE, "EHLO answered");
		return ATRN_PROXY_EV_READY;
	case ATRN_PROXY_S_REPLY:
	case ATRN_PROXY_S_DOT:
		if (p->state == ATRN_PROXY_S_DOT) {
			p->tx_open = 0;
			if (code / 100 == 2) {
				p->relayed++;
				p->relayed_total++;
			}
		} else if (p->cmd == PX_CMD_MAIL && code / 100 == 2) {
			p->tx_open = 1;
		} else if (p->cmd == PX_CMD_RSET) {
			p->tx_open = 0;
		}
		if (p->node_gone) {
			p->cmd = p->state == ATRN_PROXY_S_DOT ? PX_CMD_OTHER : p->cmd;
			return px_after_node(p, to_cust);
		}
		if (p->state == ATRN_PROXY_S_REPLY && p->cmd == PX_CMD_DATA && code == 354) {
			p->body = 0;
			px_enter(p, ATRN_PROXY_S_BODY, "354");
			return ATRN_PROXY_EV_NONE;
		}
		(void)to_node;
		px_enter(p, ATRN_PROXY_S_CMD, "reply relayed");
		return ATRN_PROXY_EV_NONE;
	case ATRN_PROXY_S_RSET:
		if (code / 100 != 2)
			return px_fail(p, "the customer refused RSET");
		p->tx_open = 0;
		p->cmd = PX_CMD_OTHER;
		px_enter(p, ATRN_PROXY_S_IDLE, "RSET answered");
		return ATRN_PROXY_EV_READY;
	case ATRN_PROXY_S_QUIT:
		snprintf(p->why, sizeof(p->why), "QUIT");
		px_enter(p, ATRN_PROXY_S_DONE, "QUIT answered");
		return ATRN_PROXY_EV_DONE;
	default:
		return px_fail(p, "the customer spoke out of turn");
	}
}

static int px_awaits_cust(enum atrn_proxy_state st)
{
	return st == ATRN_PROXY_S_GREETING || st == ATRN_PROXY_S_EHLO ||
	       st == ATRN_PROXY_S_REPLY || st == ATRN_PROXY_S_DOT ||
	       st == ATRN_PROXY_S_RSET || st == ATRN_PROXY_S_QUIT;
}

/* One whole line of the customer. */
static enum atrn_proxy_event px_cust_line(struct atrn_proxy *p, const char *s, size_t n,
					  struct buf *to_node, struct buf *to_cust)
{
	int last = 0, code = px_reply_code(s, n, &last);

	if (!px_awaits_cust(p->state))
		return px_fail(p, "the customer spoke out of turn");
	if (code < 0)
		return px_fail(p, "the customer's reply is not SMTP");
	if (p->lines == 0)
		p->first_code = code;
	else if (code != p->first_code)
		return px_fail(p, "the customer's reply changes its code");
	if (++p->lines > ATRN_PROXY_REPLY_LINES_MAX)
		return px_fail(p, "the customer's reply has too many lines");
	if (p->relay && !p->node_gone)
		px_put(to_node, s, n);
	if (p->state == ATRN_PROXY_S_EHLO)
		px_ehlo_line(p, s, n);
	if (!last)
		return ATRN_PROXY_EV_NONE;
	p->lines = 0;
	return px_reply_done(p, code, to_node, to_cust);
}

size_t atrn_proxy_feed_cust(struct atrn_proxy *p, const char *b, size_t n,
			    struct buf *to_node, struct buf *to_cust, enum atrn_proxy_event *ev)
{
	size_t off = 0;

	*ev = ATRN_PROXY_EV_NONE;
	if (p->state == ATRN_PROXY_S_DONE || p->state == ATRN_PROXY_S_FAILED)
		return n;
	if (n == 0) {
		*ev = px_fail(p, "the customer closed the connection");
		return 0;
	}
	/* After a whole reply, stop when none is awaited any more: what
	 * follows is taken after the node's next command, whatever the split
	 * (a line out of turn is caught only when nothing is awaited at the
	 * start). */
	while (off < n && *ev == ATRN_PROXY_EV_NONE &&
	       (off == 0 || px_awaits_cust(p->state))) {
		struct linereader_line ln;

		off += linereader_feed(&p->cust_lr, b + off, n - off, &ln);
		if (ln.status == LINEREADER_OVERLONG || ln.status == LINEREADER_OVERLONG_END)
			*ev = px_fail(p, "the customer's reply line is too long");
		else if (ln.status == LINEREADER_LINE)
			*ev = px_cust_line(p, ln.p, ln.len, to_node, to_cust);
	}
	return off;
}

/* ---- the node's commands and body ---------------------------------------- */

static enum atrn_proxy_event px_node_error(struct atrn_proxy *p, struct buf *to_node,
					   const char *reply, struct buf *to_cust)
{
	(void)buf_puts(to_node, reply);
	if (++p->errors < ATRN_PROXY_ERRORS_MAX)
		return ATRN_PROXY_EV_NONE;
	(void)buf_puts(to_node, "421 4.7.0 Too many errors\r\n");
	return atrn_proxy_lost(p, 1, to_cust, "too many errors from the node");
}

/* A command of the node, forwarded to the customer; its reply relayed. */
static enum atrn_proxy_event px_forward(struct atrn_proxy *p, const char *s, size_t n,
					enum atrn_proxy_cmd cmd, struct buf *to_cust)
{
	px_put(to_cust, s, n);
	p->cmd = cmd;
	p->relay = 1;
	p->lines = 0;
	px_enter(p, ATRN_PROXY_S_REPLY, "command forwarded");
	return ATRN_PROXY_EV_NONE;
}

static enum atrn_proxy_event px_ehlo(struct atrn_proxy *p, int ehlo, struct buf *to_node)
{
	if (!ehlo) {
		(void)buf_printf(to_node, "250 %s\r\n", p->name);
		return ATRN_PROXY_EV_NONE;
	}
	(void)buf_printf(to_node, "250-%s\r\n", p->name);
	if (p->conf.cust_8bitmime)
		(void)buf_puts(to_node, "250-8BITMIME\r\n");
	if (p->conf.cust_smtputf8)
		(void)buf_puts(to_node, "250-SMTPUTF8\r\n");
	(void)buf_puts(to_node, "250 ENHANCEDSTATUSCODES\r\n");
	return ATRN_PROXY_EV_NONE;
}

static enum atrn_proxy_event px_quit(struct atrn_proxy *p, struct buf *to_node,
				     struct buf *to_cust)
{
	(void)buf_printf(to_node, "221 2.0.0 %s closing\r\n", p->name);
	snprintf(p->why, sizeof(p->why), "QUIT");
	(void)px_after_node(p, to_cust);
	return ATRN_PROXY_EV_NODE_DONE;
}

/* The node's commands: {name, what}. */
enum px_verb { PX_V_EHLO, PX_V_HELO, PX_V_MAIL, PX_V_RCPT, PX_V_DATA, PX_V_RSET, PX_V_NOOP,
	       PX_V_QUIT };
static const struct px_verb_row {
	const char *name;
	enum px_verb verb;
	enum atrn_proxy_cmd cmd;
} px_verbs[] = {
	{ "EHLO", PX_V_EHLO, PX_CMD_OTHER }, { "HELO", PX_V_HELO, PX_CMD_OTHER },
	{ "MAIL", PX_V_MAIL, PX_CMD_MAIL },  { "RCPT", PX_V_RCPT, PX_CMD_OTHER },
	{ "DATA", PX_V_DATA, PX_CMD_DATA },  { "RSET", PX_V_RSET, PX_CMD_RSET },
	{ "NOOP", PX_V_NOOP, PX_CMD_OTHER }, { "QUIT", PX_V_QUIT, PX_CMD_OTHER },
};

static enum atrn_proxy_event px_node_cmd(struct atrn_proxy *p, const char *s, size_t n,
					 struct buf *to_node, struct buf *to_cust)
{
	const struct px_verb_row *row = NULL;

	if (memchr(s, '\0', n) || memchr(s, '\r', n))
		return px_node_error(p, to_node, "500 5.5.2 Error: bad octet in command\r\n", to_cust);
	for (size_t i = 0; i < sizeof(px_verbs) / sizeof(px_verbs[0]); i++)
		if (n >= 4 && ascii_eq_n(s, px_verbs[i].name, 4) && (n == 4 || s[4] == ' '))
			row = &px_verbs[i];
	if (!row)
		return px_node_error(p, to_node, "502 5.5.1 Error: command not implemented\r\n", to_cust);
	switch (row->verb) {
	case PX_V_EHLO:
	case PX_V_HELO:
		return px_ehlo(p, row->verb == PX_V_EHLO, to_node);
	case PX_V_QUIT:
		return px_quit(p, to_node, to_cust);
	default:
		return px_forward(p, s, n, row->cmd, to_cust);
	}
}

/* One body line (dot-stuffed as stored); "." ends it. */
static enum atrn_proxy_event px_body_line(struct atrn_proxy *p, const char *s, size_t n,
					  struct buf *to_cust)
{
	/* The customer's output holds one message at most (the node sends
	 * the next after our reply): this bounds that one. */
	p->body += n + 2;
	if (p->conf.body_max && p->body > p->conf.body_max)
		return atrn_proxy_lost(p, 1, to_cust, "the node's message is over the size limit");
	px_put(to_cust, s, n);
	if (n == 1 && s[0] == '.') {
		p->relay = 1;
		p->lines = 0;
		px_enter(p, ATRN_PROXY_S_DOT, "end of body");
	}
	return ATRN_PROXY_EV_NONE;
}

size_t atrn_proxy_feed_node(struct atrn_proxy *p, const char *b, size_t n,
			    struct buf *to_node, struct buf *to_cust, enum atrn_proxy_event *ev)
{
	size_t off = 0;

	*ev = ATRN_PROXY_EV_NONE;
	if (n == 0) {
		if (p->state == ATRN_PROXY_S_CMD || p->state == ATRN_PROXY_S_REPLY ||
		    p->state == ATRN_PROXY_S_BODY || p->state == ATRN_PROXY_S_DOT)
			*ev = atrn_proxy_lost(p, 1, to_cust, "the node closed the connection");
		return 0;
	}
	while (off < n && *ev == ATRN_PROXY_EV_NONE &&
	       (p->state == ATRN_PROXY_S_CMD || p->state == ATRN_PROXY_S_BODY)) {
		struct linereader_line ln;
		int body = p->state == ATRN_PROXY_S_BODY;

		/* Commands are shorter than body lines (RFC 5321 4.5.3.1). */
		p->node_lr.max = body ? ATRN_PROXY_TEXT_MAX : ATRN_PROXY_CMD_MAX;
		off += linereader_feed(&p->node_lr, b + off, n - off, &ln);
		/* A whole feed may give OVERLONG_END without OVERLONG first:
		 * a command is answered at its end, a body stops at once. */
		if ((ln.status == LINEREADER_OVERLONG || ln.status == LINEREADER_OVERLONG_END) &&
		    body)
			*ev = atrn_proxy_lost(p, 1, to_cust, "a body line of the node is too long");
		else if (ln.status == LINEREADER_OVERLONG_END)
			*ev = px_node_error(p, to_node, "500 5.5.2 Error: line too long\r\n", to_cust);
		else if (ln.status == LINEREADER_LINE && body)
			*ev = px_body_line(p, ln.p, ln.len, to_cust);
		else if (ln.status == LINEREADER_LINE)
			*ev = px_node_cmd(p, ln.p, ln.len, to_node, to_cust);
	}
	return off;
}

enum atrn_proxy_event atrn_proxy_lost(struct atrn_proxy *p, int node, struct buf *to_cust,
				      const char *why)
{
	if (p->state == ATRN_PROXY_S_DONE || p->state == ATRN_PROXY_S_FAILED)
		return ATRN_PROXY_EV_NONE;
	if (!node)
		return px_fail(p, why);
	snprintf(p->why, sizeof(p->why), "%s", why);
	switch (p->state) {
	case ATRN_PROXY_S_BODY:
		/* Nothing inside DATA can cancel it: only closing the
		 * customer's connection keeps a part message from it. */
		return px_fail(p, "the node was lost in the middle of a message");
	case ATRN_PROXY_S_REPLY:
	case ATRN_PROXY_S_DOT:
		p->node_gone = 1; /* the customer's reply ends it */
		return ATRN_PROXY_EV_NODE_DONE;
	case ATRN_PROXY_S_CMD:
		(void)px_after_node(p, to_cust);
		return ATRN_PROXY_EV_NODE_DONE;
	default:
		return ATRN_PROXY_EV_NONE;
	}
}
