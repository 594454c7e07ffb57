/* SPDX-License-Identifier: MIT */
/*
 * base64: RFC 4648 section 4 encode and strict decode (see base64.h). The
 * decoder looks each letter up in a 256-entry table, so any octet, NUL
 * included, is refused in one place.
 */
#include "core/base64.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#define BASE64_BAD 0xffu /* not a letter of the alphabet */
#define BASE64_PAD 0xfeu /* '=' */

static const char base64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Letter -> its 6 bits (its index in base64_alphabet), BASE64_PAD or
 * BASE64_BAD. */
static unsigned char base64_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return (unsigned char)(ch - 'A');
	if (ch >= 'a' && ch <= 'z')
		return (unsigned char)(ch - 'a' + 26);
	if (ch >= '0' && ch <= '9')
		return (unsigned char)(ch - '0' + 52);
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return ch == '=' ? BASE64_PAD : BASE64_BAD;
}

int base64_encode(char *dst, size_t dstlen, const void *src, size_t n)
{
	const unsigned char *p = src;
	size_t i, o = 0;

	if (n > (SIZE_MAX - 3) / 4 * 3 || dstlen < BASE64_ENCODED_LEN(n) + 1 ||
	    BASE64_ENCODED_LEN(n) > INT_MAX)
		return -ENOSPC;
	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

		dst[o++] = base64_alphabet[v >> 18];
		dst[o++] = base64_alphabet[(v >> 12) & 63];
		dst[o++] = base64_alphabet[(v >> 6) & 63];
		dst[o++] = base64_alphabet[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);

		dst[o++] = base64_alphabet[v >> 18];
		dst[o++] = base64_alphabet[(v >> 12) & 63];
		dst[o++] = i + 1 < n ? base64_alphabet[(v >> 6) & 63] : '=';
		dst[o++] = '=';
	}
	dst[o] = '\0';
	return (int)o;
}

/* One quantum of 4 letters; the last may end in "=" or "==". Returns the
 * octets it gives (1 to 3) or -EINVAL. */
static int base64_quantum(const unsigned char *q, int last, unsigned char out[3])
{
	unsigned char v[4];
	int pad = 0, k;

	for (k = 0; k < 4; k++) {
		v[k] = base64_value(q[k]);
		if (v[k] == BASE64_BAD)
			return -EINVAL;
		if (v[k] == BASE64_PAD) {
			/* Only the last one or two of the last quantum. */
			if (!last || k < 2 || (k == 2 && base64_value(q[3]) != BASE64_PAD))
				return -EINVAL;
			pad++;
			v[k] = 0;
		} else if (pad) {
			return -EINVAL;
		}
	}
	out[0] = (unsigned char)(v[0] << 2 | v[1] >> 4);
	out[1] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
	out[2] = (unsigned char)((v[2] & 3) << 6 | v[3]);
	/* RFC 4648 3.5: the bits under the padding must be zero, so each
	 * text has one decoding and each octet string one text. */
	if ((pad == 2 && (v[1] & 15)) || (pad == 1 && (v[2] & 3)))
		return -EINVAL;
	return 3 - pad;
}

int base64_decode(void *dst, size_t dstlen, const char *src, size_t n)
{
	const unsigned char *s = (const unsigned char *)src;
	unsigned char *d = dst, q[3];
	size_t i, o = 0;

	if (n % 4 != 0)
		return -EINVAL;
	if (n / 4 * 3 > INT_MAX)
		return -ENOSPC;
	for (i = 0; i < n; i += 4) {
		int k = base64_quantum(s + i, i + 4 == n, q);

		if (k >= 0 && dstlen - o < (size_t)k)
			k = -ENOSPC;
		if (k < 0) {
			explicit_bzero(q, sizeof(q));
			return k;
		}
		for (int j = 0; j < k; j++)
			d[o++] = q[j];
	}
	/* The text may be a password (AUTH): no copy of it left behind. */
	explicit_bzero(q, sizeof(q));
	return (int)o;
}
