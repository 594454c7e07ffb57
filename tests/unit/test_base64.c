/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/base64.c: the RFC 4648 section 10 test vectors both
 * ways, every strictness rule of the decoder (length, alphabet, padding,
 * non-zero pad bits, whitespace, NUL), the output-room checks, and a round
 * trip of every length up to a few quanta over every octet value.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "core/base64.h"

struct t_vec {
	const char *plain;
	const char *text;
	size_t plain_len; /* 0: strlen(plain) */
};

/* RFC 4648 section 10, plus the AUTH texts RFC 4954 and RFC 4616 show. */
static const struct t_vec t_vecs[] = {
	{ "", "", 0 },
	{ "f", "Zg==", 0 },
	{ "fo", "Zm8=", 0 },
	{ "foo", "Zm9v", 0 },
	{ "foob", "Zm9vYg==", 0 },
	{ "fooba", "Zm9vYmE=", 0 },
	{ "foobar", "Zm9vYmFy", 0 },
	{ "Username:", "VXNlcm5hbWU6", 0 },
	{ "Password:", "UGFzc3dvcmQ6", 0 },
	{ "\0tim\0tanstaaftanstaaf", "AHRpbQB0YW5zdGFhZnRhbnN0YWFm", 21 },
};

static size_t t_plain_len(const struct t_vec *v)
{
	return v->plain_len ? v->plain_len : strlen(v->plain);
}

Test(base64, vectors)
{
	char text[64];
	unsigned char plain[64];

	for (size_t i = 0; i < sizeof(t_vecs) / sizeof(t_vecs[0]); i++) {
		const struct t_vec *v = &t_vecs[i];
		size_t pl = t_plain_len(v), tl = strlen(v->text);

		cr_assert_eq(base64_encode(text, sizeof(text), v->plain, pl), (int)tl, "%s", v->text);
		cr_assert_str_eq(text, v->text);
		cr_assert_eq(base64_decode(plain, sizeof(plain), v->text, tl), (int)pl, "%s", v->text);
		cr_assert(memcmp(plain, v->plain, pl) == 0, "%s", v->text);
		/* exact room is enough, one less is not */
		cr_assert_eq(base64_encode(text, tl + 1, v->plain, pl), (int)tl);
		cr_assert_eq(base64_encode(text, tl, v->plain, pl), -ENOSPC);
		cr_assert_eq(base64_decode(plain, pl, v->text, tl), (int)pl);
		if (pl)
			cr_assert_eq(base64_decode(plain, pl - 1, v->text, tl), -ENOSPC);
	}
}

struct t_bad {
	const char *name;
	const char *text;
	size_t len; /* 0: strlen */
};

static const struct t_bad t_bads[] = {
	{ "one letter short", "Zm9", 0 },
	{ "one letter over", "Zm9vY", 0 },
	{ "no padding", "Zg", 0 },
	{ "half padding", "Zg=", 0 },
	{ "padding too long", "Zg===", 0 },
	{ "padding in the middle", "Zg==Zm9v", 0 },
	{ "padding then letter", "Zm=v", 0 },
	{ "pad first", "=Zm9", 0 },
	{ "three pads", "Z===", 0 },
	{ "four pads", "====", 0 },
	{ "nonzero bits under ==", "Zh==", 0 },
	{ "nonzero bits under =", "Zm9=", 0 },
	{ "space", "Zm9v Zm9v", 0 },
	{ "trailing CRLF", "Zm9v\r\n", 0 },
	{ "leading space", " Zm9v", 0 },
	{ "tab inside", "Zm\t9v", 0 },
	{ "url alphabet -", "Zm-v", 0 },
	{ "url alphabet _", "Zm_v", 0 },
	{ "NUL inside", "Zm\0v", 4 },
	{ "high octet", "Zm\xc3v", 0 },
	{ "trailing garbage after padding", "Zg==x", 0 },
	{ "asterisk (AUTH cancel)", "*", 0 },
};

Test(base64, strict_refusals)
{
	unsigned char plain[64];

	for (size_t i = 0; i < sizeof(t_bads) / sizeof(t_bads[0]); i++) {
		const struct t_bad *b = &t_bads[i];
		size_t n = b->len ? b->len : strlen(b->text);

		cr_expect_eq(base64_decode(plain, sizeof(plain), b->text, n), -EINVAL, "%s",
			     b->name);
	}
}

/* Every length from 0 to 3 quanta and a bit, every octet value in every
 * position: encode, check the text's shape, decode back. */
Test(base64, round_trip)
{
	unsigned char in[16], back[16];
	char text[BASE64_ENCODED_LEN(sizeof(in)) + 1];

	for (size_t n = 0; n <= sizeof(in); n++) {
		for (unsigned v = 0; v < 256; v++) {
			int tl, pl;

			for (size_t i = 0; i < n; i++)
				in[i] = (unsigned char)(v + i * 37);
			tl = base64_encode(text, sizeof(text), in, n);
			cr_assert_eq(tl, (int)BASE64_ENCODED_LEN(n));
			cr_assert_eq(strlen(text), (size_t)tl);
			pl = base64_decode(back, sizeof(back), text, (size_t)tl);
			cr_assert_eq(pl, (int)n, "n %zu v %u", n, v);
			cr_assert(memcmp(back, in, n) == 0);
			cr_assert_leq(n, BASE64_DECODED_MAX((size_t)tl));
		}
	}
}
