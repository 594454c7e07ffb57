/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for proto/etrn.c's argument parser: the input as an ETRN
 * node from each source (raw SMTP, SMTP forms, operator). A parsed domain is
 * lower case, NUL-terminated, within ETRN_DOMAIN_MAX; what replies
 * show lies in the input or the node; every reply is one line ending in
 * CRLF (no CR or LF from the input gets into it). The input cut at a NUL
 * is also tried as the client's address.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "proto/etrn.h"

/* A reply is the node plus at most this much text (the operator's @/#
 * forms have no length limit: a 4 KB queue name gives a 4 KB reply). */
#define FZ_REPLY_ROOM 512
#define FZ_ADDR_MAX 128

static void fz_check_node(const struct etrn_node *n, const char *in, size_t len)
{
	size_t i;
	const char *dom_end = n->dom + sizeof(n->dom);

	if (!((n->name >= in && n->name + n->name_len <= in + len) ||
	      (n->name >= n->dom && n->name + n->name_len <= dom_end)))
		__builtin_trap();
	if (!((n->shown >= in && n->shown + n->shown_len <= in + len) ||
	      (n->shown >= n->dom && n->shown + n->shown_len <= dom_end)))
		__builtin_trap();
	if (n->kind != ETRN_KIND_DOMAIN)
		return;
	if (n->name_len == 0 || n->name_len >= ETRN_DOMAIN_MAX || n->name[n->name_len] != '\0')
		__builtin_trap();
	for (i = 0; i < n->name_len; i++)
		if (n->name[i] >= 'A' && n->name[i] <= 'Z')
			__builtin_trap();
}

static void fz_check_reply(enum etrn_outcome o, const char *in, size_t len)
{
	struct buf out;
	const char *cr;

	buf_init(&out, len + FZ_REPLY_ROOM);
	if (etrn_reply(&out, o, in, len, "192.0.2.1", 7) != 0 || out.len < 5)
		__builtin_trap();
	cr = memchr(out.data, '\r', out.len);
	if (cr != out.data + out.len - 2 || out.data[out.len - 1] != '\n' ||
			memchr(out.data, '\n', out.len - 1))
		__builtin_trap();
	buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum etrn_source srcs[] = {
		ETRN_SRC_SMTP_RAW, ETRN_SRC_SMTP, ETRN_SRC_OPERATOR,
	};
	const char *in = (const char *)data;
	char addr[FZ_ADDR_MAX + 1];
	struct sockaddr_storage ss;
	size_t i, n;
	int raw_ok = etrn_parse(in, size, ETRN_SRC_SMTP_RAW, &(struct etrn_node){ 0 }) == ETRN_OK;

	for (i = 0; i < sizeof(srcs) / sizeof(srcs[0]); i++) {
		struct etrn_node node;
		enum etrn_outcome o = etrn_parse(in, size, srcs[i], &node);

		/* The SMTP forms come after the raw syntax only: checked then. */
		if (srcs[i] == ETRN_SRC_SMTP && !raw_ok)
			continue;
		if (o == ETRN_OK) {
			fz_check_node(&node, in, size);
			fz_check_reply(ETRN_STARTED, node.shown, node.shown_len);
			fz_check_reply(ETRN_DENIED_CLIENT, node.shown, node.shown_len);
		} else if (o < ETRN_SYNTAX_EMPTY) {
			__builtin_trap();
		} else {
			fz_check_reply(o, in, size);
		}
	}
	/* What passed the raw syntax is echoed as given (drain.c's refusals). */
	if (raw_ok) {
		fz_check_reply(ETRN_RATE_LIMITED, in, size);
		fz_check_reply(ETRN_DENIED_ADDRESS, in, size);
	}
	n = size < FZ_ADDR_MAX ? size : FZ_ADDR_MAX;
	memcpy(addr, in, n);
	addr[n] = '\0';
	(void)etrn_client_addr(addr, &ss);
	return 0;
}
