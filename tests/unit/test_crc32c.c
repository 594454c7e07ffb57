/* SPDX-License-Identifier: MIT */
/*
 * Tests for store/crc32c.c: known vectors (RFC 3720 B.4), chaining, and the
 * SSE4.2 path against the slicing-by-8 table on random data at random
 * lengths and alignments.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "store/crc32c.h"

/* Test-only entry points defined in store/crc32c.c. */
uint32_t crc32c_sw(uint32_t crc, const void *p, size_t n);
uint32_t crc32c_hw(uint32_t crc, const void *p, size_t n);
int crc32c_hw_available(void);

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

struct crc_vec {
	const char *name;
	unsigned char data[48];
	size_t len;
	uint32_t want;
};

static struct crc_vec vecs[5];

static void vecs_init(void)
{
	vecs[0] = (struct crc_vec){ "check", { 0 }, 9, 0xE3069283u };
	memcpy(vecs[0].data, "123456789", 9);
	vecs[1] = (struct crc_vec){ "zeros32", { 0 }, 32, 0x8A9136AAu };
	vecs[2] = (struct crc_vec){ "ones32", { 0 }, 32, 0x62A8AB43u };
	memset(vecs[2].data, 0xff, 32);
	vecs[3] = (struct crc_vec){ "inc32", { 0 }, 32, 0x46DD794Eu };
	vecs[4] = (struct crc_vec){ "dec32", { 0 }, 32, 0x113FDB5Cu };
	for (int i = 0; i < 32; i++) {
		vecs[3].data[i] = (unsigned char)i;
		vecs[4].data[i] = (unsigned char)(31 - i);
	}
}

static void check_vectors(crc_fn f, const char *impl)
{
	vecs_init();
	cr_assert_eq(f(0, "", 0), 0u, "%s: empty", impl);
	cr_assert_eq(f(0, NULL, 0), 0u, "%s: NULL, 0", impl);
	for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) {
		uint32_t got = f(0, vecs[i].data, vecs[i].len);
		cr_assert_eq(got, vecs[i].want, "%s %s: got %08X want %08X",
				impl, vecs[i].name, got, vecs[i].want);
		/* Byte at a time through the chaining convention. */
		uint32_t c = 0;
		for (size_t k = 0; k < vecs[i].len; k++)
			c = f(c, vecs[i].data + k, 1);
		cr_assert_eq(c, vecs[i].want, "%s %s bytewise", impl,
				vecs[i].name);
	}
}

Test(crc32c, vectors_dispatch) { check_vectors(crc32c, "dispatch"); }
Test(crc32c, vectors_table) { check_vectors(crc32c_sw, "table"); }

Test(crc32c, vectors_hw)
{
	if (!crc32c_hw_available())
		cr_skip_test("no SSE4.2 on this CPU");
	check_vectors(crc32c_hw, "sse4.2");
}

Test(crc32c, chains_at_every_split)
{
	unsigned char buf[300];
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (unsigned char)(i * 131 + 7);
	uint32_t whole = crc32c(0, buf, sizeof buf);
	for (size_t k = 0; k <= sizeof buf; k++) {
		uint32_t c = crc32c(crc32c(0, buf, k), buf + k, sizeof buf - k);
		cr_assert_eq(c, whole, "split at %zu", k);
		c = crc32c_sw(crc32c_sw(0, buf, k), buf + k, sizeof buf - k);
		cr_assert_eq(c, whole, "table split at %zu", k);
	}
}

Test(crc32c, hw_equals_table_random)
{
	enum { MAXLEN = 5000, ROUNDS = 3000 };
	if (!crc32c_hw_available())
		cr_skip_test("no SSE4.2 on this CPU");
	unsigned char *buf = malloc(MAXLEN + 16);
	cr_assert_not_null(buf);
	srand(12345);
	for (size_t i = 0; i < MAXLEN + 16; i++)
		buf[i] = (unsigned char)rand();
	for (int r = 0; r < ROUNDS; r++) {
		size_t align = (size_t)rand() % 16;
		size_t len = r < 100 ? (size_t)r : (size_t)rand() % MAXLEN;
		uint32_t seed = r % 3 == 0 ? 0 : (uint32_t)rand();
		uint32_t a = crc32c_hw(seed, buf + align, len);
		uint32_t b = crc32c_sw(seed, buf + align, len);
		cr_assert_eq(a, b, "len %zu align %zu seed %08X: %08X vs %08X",
				len, align, seed, a, b);
	}
	free(buf);
}

Test(crc32c, large_buffer)
{
	enum { LEN = 3 * 1024 * 1024 + 5 };
	unsigned char *buf = malloc(LEN);
	cr_assert_not_null(buf);
	for (size_t i = 0; i < LEN; i++)
		buf[i] = (unsigned char)(i ^ (i >> 9));
	uint32_t a = crc32c_sw(0, buf, LEN);
	cr_assert_eq(crc32c(0, buf, LEN), a);
	if (crc32c_hw_available())
		cr_assert_eq(crc32c_hw(0, buf, LEN), a);
	free(buf);
}
