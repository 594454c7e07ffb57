/* SPDX-License-Identifier: MIT */
/*
 * base64: the one RFC 4648 section 4 base64 codec in the tree (SMTP AUTH,
 * RFC 4954, is its first user). Decoding is strict: only the 64 letters of
 * the alphabet and '=' padding, the input length a multiple of 4, padding
 * only at the end, the bits padding leaves unused zero (RFC 4648 3.5), no
 * whitespace, no line breaks. Pure: no allocation, no I/O.
 */
#ifndef ETRND_CORE_BASE64_H
#define ETRND_CORE_BASE64_H

#include <stddef.h>

/* Octets base64 text of n octets takes (no NUL), and the most octets n
 * letters of it decode to. */
#define BASE64_ENCODED_LEN(n) (((n) + 2) / 3 * 4)
#define BASE64_DECODED_MAX(n) ((n) / 4 * 3)

/* Encode src[0..n) into dst (room for BASE64_ENCODED_LEN(n) + 1 octets: the
 * text and a NUL). Returns the text's length, or -ENOSPC (dst untouched
 * past dstlen) when dstlen is too small. */
int base64_encode(char *dst, size_t dstlen, const void *src, size_t n);

/* Decode src[0..n) into dst (dstlen octets; BASE64_DECODED_MAX(n) always
 * suffice). Returns the decoded length, -EINVAL when src is not strict
 * base64 (see above; "" decodes to 0 octets), -ENOSPC when dst is too
 * small. On error dst may hold partial output: a caller decoding a secret
 * wipes it either way. */
int base64_decode(void *dst, size_t dstlen, const char *src, size_t n);

#endif
