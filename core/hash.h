/* SPDX-License-Identifier: MIT */
/*
 * hash: FNV-1a (32 and 64 bit), plain or over ASCII-lower-cased bytes, and a
 * finaliser for tables indexed by the low bits. Not keyed: a table indexed
 * by these hashes must stay correct (full key compare) when names collide.
 * The one copy for every layer.
 */
#ifndef ETRND_CORE_HASH_H
#define ETRND_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "core/ascii.h"

#define HASH_FNV32_INIT 2166136261u
#define HASH_FNV32_PRIME 16777619u
#define HASH_FNV64_INIT 14695981039346656037ull
#define HASH_FNV64_PRIME 1099511628211ull

/* FNV-1a over p[0..n), continuing from h (start with HASH_FNV*_INIT). */
static inline uint32_t hash_fnv32(uint32_t h, const void *p, size_t n)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * HASH_FNV32_PRIME;
	return h;
}

static inline uint64_t hash_fnv64(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * HASH_FNV64_PRIME;
	return h;
}

/* The same over the ASCII-lower-cased bytes (domain names). */
static inline uint32_t hash_fnv32_lower(uint32_t h, const void *p, size_t n)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ ascii_lower(s[i])) * HASH_FNV32_PRIME;
	return h;
}

static inline uint64_t hash_fnv64_lower(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ ascii_lower(s[i])) * HASH_FNV64_PRIME;
	return h;
}

/* Mix the high bits into the low ones (FNV's low bits are weak for a
 * power-of-two table): murmur3's 32-bit finaliser, first steps. */
static inline uint32_t hash_fin32(uint32_t h)
{
	h ^= h >> 16;
	h *= 0x85EBCA6Bu;
	h ^= h >> 13;
	return h;
}

#endif
