/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for proto/smtp_parse.c, the command-line parser: the
 * input is one command line (no CRLF). Verb and argument must lie inside
 * it; MAIL FROM / RCPT TO paths are checked against the RFC 5321 limits and
 * their flags, parameters must advance and stay inside the line, and a
 * normalised domain is lower case with no trailing dot.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_parse.h"

static void fz_check_path(const struct smtp_path *p)
{
	size_t i;

	if (p->len > SMTP_PATH_MAX || p->addr[p->len] != '\0' || p->domain_off > p->len)
		__builtin_trap();
	if ((p->flags & SMTP_PATH_NULL) && p->len != 0)
		__builtin_trap();
	if (!(p->flags & (SMTP_PATH_NULL | SMTP_PATH_NO_DOMAIN))) {
		if (p->domain_off == 0 || p->domain_off >= p->len || p->addr[p->domain_off - 1] != '@')
			__builtin_trap();
		if (p->len - p->domain_off > SMTP_DOMAIN_MAX)
			__builtin_trap();
	}
	if (p->flags & SMTP_PATH_NO_DOMAIN && p->domain_off != p->len)
		__builtin_trap();
	for (i = 0; i < p->len; i++)
		if (p->addr[i] == '\0' || p->addr[i] == '\r' || p->addr[i] == '\n')
			__builtin_trap();
}

static void fz_check_normalized(struct smtp_path *p)
{
	size_t i, len0 = p->len;

	smtp_parse_normalize_domain(p);
	if (p->len > len0 || p->addr[p->len] != '\0')
		__builtin_trap();
	if (p->flags & (SMTP_PATH_NULL | SMTP_PATH_NO_DOMAIN | SMTP_PATH_LITERAL))
		return;
	for (i = p->domain_off; i < p->len; i++)
		if (p->addr[i] >= 'A' && p->addr[i] <= 'Z')
			__builtin_trap();
}

static void fz_params(const char *s, size_t n, size_t off)
{
	struct smtp_param p;
	size_t last = off;
	int r;

	while ((r = smtp_parse_param(s, n, &off, &p)) == 1) {
		if (off <= last || off > n || p.key_len == 0)
			__builtin_trap();
		if (p.key < s || p.key + p.key_len > s + n)
			__builtin_trap();
		if (p.val && (p.val < s || p.val + p.val_len > s + n))
			__builtin_trap();
		last = off;
	}
	if (r != 0 && r != SMTP_PARSE_SYNTAX)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const kws[] = { "FROM:", "TO:" };
	const char *line = (const char *)data, *arg = NULL;
	size_t arg_len = 0, vlen, k;

	vlen = smtp_parse_verb(line, size, &arg, &arg_len);
	if (vlen > size || (arg_len && (arg < line || arg + arg_len > line + size)))
		__builtin_trap();
	if (arg_len && arg[arg_len - 1] == ' ')
		__builtin_trap();
	(void)smtp_parse_token_eq(line, vlen, "MAIL");
	for (k = 0; k < sizeof(kws) / sizeof(kws[0]); k++) {
		struct smtp_path path;
		size_t params_off = SIZE_MAX;
		/* The argument alone, and the whole line (a verb-less fragment). */
		const char *s = arg_len ? arg : line;
		size_t n = arg_len ? arg_len : size;
		int r = smtp_parse_path_arg(s, n, kws[k], &path, &params_off);

		if (r == SMTP_PARSE_OK) {
			if (params_off > n)
				__builtin_trap();
			fz_check_path(&path);
			fz_params(s, n, params_off);
			fz_check_normalized(&path);
		} else if (r != SMTP_PARSE_SYNTAX && r != SMTP_PARSE_TOO_LONG &&
				r != SMTP_PARSE_KEYWORD) {
			__builtin_trap();
		}
	}
	fz_params(line, size, 0);
	return 0;
}
