/* SPDX-License-Identifier: MIT */
/*
 * etrn: see etrn.h. Pure functions of their arguments; the reply texts are
 * the ones etrnd has always sent (tests/integration/test_etrn.py asserts
 * them), so a client's scripts keep matching, except that 459 carries 4.7.1
 * since issue 10: 459 is transient, and RFC 3463 section 2 makes class 4
 * the transient one; 5.7.1 on a 4yz reply contradicted itself.
 */
#include "proto/etrn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <string.h>

#include "core/ascii.h"
#include "core/netaddr.h"

/* RFC 1985 section 3: a node is a domain, "@domain" or "#queue"; queue
 * names and domains use letters, digits, '.', '-' and '_' (seen in
 * real host names, as Postfix accepts them). */
static int etrn_syntax_ok(const char *p, size_t n)
{
	size_t i = 0;

	if (n > 0 && (p[0] == '@' || p[0] == '#'))
		i = 1;
	if (i == n || n > ETRN_NODE_MAX)
		return 0;
	for (; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (!(ch >= 'a' && ch <= 'z') && !(ch >= 'A' && ch <= 'Z') &&
		    !(ch >= '0' && ch <= '9') && ch != '.' && ch != '-' && ch != '_')
			return 0;
	}
	return 1;
}

/* The domain form: lower case, one trailing dot dropped (a lone "." stays
 * as it is and matches no row). */
static int etrn_domain_form(const char *node, size_t len, struct etrn_node *out)
{
	if (len == 0 || len >= ETRN_DOMAIN_MAX)
		return -1;
	ascii_lower_copy(out->dom, node, len);
	if (len > 1 && out->dom[len - 1] == '.')
		len--;
	out->dom[len] = '\0';
	out->kind = ETRN_KIND_DOMAIN;
	out->name = out->shown = out->dom;
	out->name_len = out->shown_len = len;
	return 0;
}

enum etrn_outcome etrn_parse(const char *node, size_t len, enum etrn_source src,
			     struct etrn_node *out)
{
	/* The operator may flush a domain named "@" or "#": only a prefix
	 * with something after it is a prefix there. */
	size_t min = src == ETRN_SRC_OPERATOR ? 2 : 1;

	memset(out, 0, sizeof(*out));
	if (src == ETRN_SRC_SMTP_RAW) {
		if (len == 0)
			return ETRN_SYNTAX_EMPTY;
		if (!etrn_syntax_ok(node, len))
			return ETRN_SYNTAX_NODE;
	}
	/* The operator's node may hold spaces, but never a line break: the
	 * reply names it on one line. */
	if (src == ETRN_SRC_OPERATOR && len && (memchr(node, '\r', len) || memchr(node, '\n', len)))
		return ETRN_SYNTAX_OPERATOR;
	if (len >= min && (node[0] == '@' || node[0] == '#')) {
		out->kind = node[0] == '@' ? ETRN_KIND_SUBTREE : ETRN_KIND_QUEUE;
		out->name = node + 1;
		out->name_len = len - 1;
		out->shown = node;
		out->shown_len = len;
		return ETRN_OK;
	}
	if (etrn_domain_form(node, len, out))
		return src == ETRN_SRC_OPERATOR ? ETRN_SYNTAX_OPERATOR : ETRN_SYNTAX_DOMAIN;
	return ETRN_OK;
}

int etrn_client_addr(const char *client, struct sockaddr_storage *ss)
{
	return netaddr_from_text(client, 0, ss, NULL);
}

enum etrn_outcome etrn_permit(const struct domtab_row *row, const struct sockaddr *client,
			      const char *user)
{
	if (!row)
		return ETRN_DENIED_UNKNOWN;
	/* User names are case-sensitive, as in Redis (etrnd:user:<name>). */
	if (user && row->owner && strcmp(user, row->owner) == 0)
		return ETRN_OK;
	if (client && !domtab_row_allows(row, client))
		return ETRN_DENIED_CLIENT;
	return ETRN_OK;
}

int etrn_row_matches(const struct etrn_node *n, const struct domtab_row *row)
{
	size_t rl, nl = n->name_len;

	if (row->name[0] == '*')
		return 0; /* a wildcard row names no domain to drain by itself */
	switch (n->kind) {
	case ETRN_KIND_QUEUE:
		return row->queue && strlen(row->queue) == nl && ascii_eq_n(row->queue, n->name, nl);
	case ETRN_KIND_SUBTREE:
		rl = strlen(row->name);
		if (rl == nl)
			return ascii_eq_n(row->name, n->name, nl);
		/* Below it: "x.<name>", the dot on a label boundary. */
		return rl > nl + 1 && row->name[rl - nl - 1] == '.' &&
		       ascii_eq_n(row->name + rl - nl, n->name, nl);
	case ETRN_KIND_DOMAIN:
		break;
	}
	return 0;
}

void etrn_tally_add(struct etrn_tally *t, enum etrn_outcome permit,
		    enum etrn_outcome started, uint64_t n)
{
	t->matched++;
	if (permit != ETRN_OK)
		return;
	t->allowed++;
	if (started == ETRN_STARTED) {
		t->started++;
		t->total += n;
	} else if (started == ETRN_JOINED) {
		t->joined++;
	}
}

enum etrn_outcome etrn_tally_outcome(const struct etrn_tally *t)
{
	if (!t->allowed)
		return t->matched ? ETRN_DENIED_NONE_ALLOWED : ETRN_DENIED_NO_MATCH;
	return t->started ? ETRN_STARTED : t->joined ? ETRN_JOINED : ETRN_NONE_WAITING;
}

int etrn_reply(struct buf *out, enum etrn_outcome o, const char *node, size_t len,
	       const char *client, uint64_t n)
{
	const char *nul = memchr(node, '\0', len);
	int l, echo;

	/* A reply line never carries a NUL: the node ends at the first. */
	if (nul)
		len = (size_t)(nul - node);
	l = (int)len;
	echo = (int)(len > ETRN_ECHO_MAX ? ETRN_ECHO_MAX : len);
	switch (o) {
	case ETRN_OK:
		return -EINVAL;
	case ETRN_QUEUING:
		return buf_printf(out, "250 2.0.0 OK, queuing for node %.*s started\r\n", l, node);
	case ETRN_NONE_WAITING:
		return buf_printf(out, "251 2.0.0 OK, no messages waiting for node %.*s\r\n", l, node);
	case ETRN_JOINED:
		return buf_printf(out, "252 2.0.0 OK, pending messages for node %.*s started\r\n", l, node);
	case ETRN_STARTED:
		return buf_printf(out, "253 2.0.0 OK, %" PRIu64 " pending messages for node %.*s started\r\n",
				  n, l, node);
	case ETRN_UNABLE:
		return buf_printf(out, "458 4.3.0 Unable to queue messages for node %.*s\r\n", l, node);
	case ETRN_RATE_LIMITED:
		return buf_printf(out, "458 4.7.0 Unable to queue messages for node %.*s: too many ETRN requests, try later\r\n",
				  echo, node);
	case ETRN_DENIED_ADDRESS:
		return buf_printf(out, "459 4.7.1 Node %.*s not allowed: unknown client address\r\n", echo, node);
	case ETRN_DENIED_UNKNOWN:
		return buf_printf(out, "459 4.7.1 Node %.*s not allowed: not a customer domain here\r\n", l, node);
	case ETRN_DENIED_CLIENT:
		return buf_printf(out, "459 4.7.1 Node %.*s not allowed: client %s may not release it\r\n",
				  l, node, client ? client : "");
	case ETRN_DENIED_NONE_ALLOWED:
		return buf_printf(out, "459 4.7.1 Node %.*s not allowed: client may not release it\r\n", l, node);
	case ETRN_DENIED_NO_MATCH:
		return buf_printf(out, "459 4.7.1 Node %.*s not allowed: no such queue or domain here\r\n", l, node);
	case ETRN_SYNTAX_EMPTY:
		return buf_puts(out, "500 5.5.2 Syntax: ETRN domain\r\n");
	case ETRN_SYNTAX_NODE:
		return buf_puts(out, "501 5.5.4 Syntax error in parameters: ETRN domain, @domain or #queue\r\n");
	case ETRN_SYNTAX_DOMAIN:
		return buf_puts(out, "501 5.5.4 Syntax error in parameters\r\n");
	case ETRN_SYNTAX_OPERATOR:
		return buf_puts(out, "501 5.5.4 Syntax error in parameters: a domain\r\n");
	}
	return -EINVAL;
}
