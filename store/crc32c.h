/* SPDX-License-Identifier: MIT */
/*
 * crc32c: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum
 * of every spool record. Uses the SSE4.2 crc32 instruction when the CPU has
 * it (checked once at run time), a slicing-by-8 table otherwise; both give
 * identical results.
 */
#ifndef ETRND_STORE_CRC32C_H
#define ETRND_STORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: start with crc = 0; crc32c(crc32c(0, a), b) == crc of a||b.
 * crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

#endif
