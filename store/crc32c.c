/* SPDX-License-Identifier: MIT */
/*
 * crc32c: CRC-32C (Castagnoli). The SSE4.2 crc32 instruction when the CPU
 * has it, else a slicing-by-8 table; the choice and the table are made once,
 * under pthread_once, so any thread may call crc32c() first. Both paths take
 * and return the finished (post-inverted) CRC, so calls chain.
 */
#include "store/crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define CRC32C_HAVE_HW 1
#else
#define CRC32C_HAVE_HW 0
#endif

#define CRC32C_POLY 0x82F63B78u /* reflected Castagnoli polynomial */
#define CRC32C_SLICES 8

/* Test-only entry points (declared by tests/unit/test_crc32c.c): the two
 * implementations directly, and whether the hardware one may be called. */
uint32_t crc32c_sw(uint32_t crc, const void *p, size_t n);
uint32_t crc32c_hw(uint32_t crc, const void *p, size_t n);
int crc32c_hw_available(void);

static uint32_t crc32c_table[CRC32C_SLICES][256];
static uint32_t (*crc32c_impl)(uint32_t, const void *, size_t);
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void crc32c_init(void)
{
	for (unsigned i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1u)));
		crc32c_table[0][i] = c;
	}
	for (unsigned i = 0; i < 256; i++) {
		uint32_t c = crc32c_table[0][i];
		for (int s = 1; s < CRC32C_SLICES; s++) {
			c = (c >> 8) ^ crc32c_table[0][c & 0xff];
			crc32c_table[s][i] = c;
		}
	}
	crc32c_impl = crc32c_hw_available() ? crc32c_hw : crc32c_sw;
}

int crc32c_hw_available(void)
{
#if CRC32C_HAVE_HW
	__builtin_cpu_init();
	return __builtin_cpu_supports("sse4.2");
#else
	return 0;
#endif
}

static inline uint64_t crc32c_load64le(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

uint32_t crc32c_sw(uint32_t crc, const void *p, size_t n)
{
	const unsigned char *b = p;
	const uint32_t (*t)[256] = (const uint32_t (*)[256])crc32c_table;

	pthread_once(&crc32c_once, crc32c_init);
	crc = ~crc;
	while (n >= CRC32C_SLICES) {
		uint64_t v = crc32c_load64le(b) ^ crc;
		crc = t[7][v & 0xff] ^ t[6][(v >> 8) & 0xff] ^
			t[5][(v >> 16) & 0xff] ^ t[4][(v >> 24) & 0xff] ^
			t[3][(v >> 32) & 0xff] ^ t[2][(v >> 40) & 0xff] ^
			t[1][(v >> 48) & 0xff] ^ t[0][v >> 56];
		b += CRC32C_SLICES;
		n -= CRC32C_SLICES;
	}
	while (n--)
		crc = (crc >> 8) ^ t[0][(crc ^ *b++) & 0xff];
	return ~crc;
}

#if CRC32C_HAVE_HW
__attribute__((target("sse4.2")))
static uint32_t crc32c_hw_run(uint32_t crc, const unsigned char *b, size_t n)
{
	/* Byte steps up to 8-byte alignment, then one 8-byte step per
	 * instruction; memcpy keeps the loads defined for any alignment. */
	while (n > 0 && ((uintptr_t)b & 7) != 0) {
		crc = _mm_crc32_u8(crc, *b++);
		n--;
	}
#if defined(__x86_64__)
	uint64_t c64 = crc;
	while (n >= 8) {
		uint64_t v;
		memcpy(&v, b, sizeof v);
		c64 = _mm_crc32_u64(c64, v);
		b += 8;
		n -= 8;
	}
	crc = (uint32_t)c64;
#endif
	while (n >= 4) {
		uint32_t v;
		memcpy(&v, b, sizeof v);
		crc = _mm_crc32_u32(crc, v);
		b += 4;
		n -= 4;
	}
	while (n--)
		crc = _mm_crc32_u8(crc, *b++);
	return crc;
}
#endif

uint32_t crc32c_hw(uint32_t crc, const void *p, size_t n)
{
#if CRC32C_HAVE_HW
	return ~crc32c_hw_run(~crc, p, n);
#else
	return crc32c_sw(crc, p, n);
#endif
}

uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
	pthread_once(&crc32c_once, crc32c_init);
	return crc32c_impl(crc, p, n);
}
