/*
 * CRC-32C with the reflected polynomial 0x82F63B78. The state is kept raw
 * (no inversion) inside, so that a run over bytes D from state x equals
 * zeros(x, |D|) ^ run(0, D): that linearity lets the hardware path work on
 * three lanes at once and join them with a table for a fixed lane length.
 */
#include "crc32c.h"

#include <string.h>

#define POLY 0x82F63B78u
#define LANE 4096 /* bytes per lane; buffers of three lanes or more use all three */

static uint32_t byte_table[256];
static uint32_t lane_shift[4][256]; /* state -> state after LANE zero bytes, a byte at a time */
static int have_sse42;

static uint32_t run_table(uint32_t crc, const unsigned char *p, size_t n)
{
	while (n--)
		crc = byte_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t run_one_lane(uint32_t crc, const unsigned char *p,
								size_t n)
{
	uint64_t c = crc;
	for (; n >= 8; p += 8, n -= 8) {
		uint64_t word;
		memcpy(&word, p, 8);
		c = _mm_crc32_u64(c, word);
	}
	uint32_t c32 = (uint32_t)c;
	for (; n; p++, n--)
		c32 = _mm_crc32_u8(c32, *p);
	return c32;
}

static uint32_t shift_lane(uint32_t crc)
{
	return lane_shift[0][crc & 0xff] ^ lane_shift[1][(crc >> 8) & 0xff] ^
	       lane_shift[2][(crc >> 16) & 0xff] ^ lane_shift[3][crc >> 24];
}

/* The crc32 instruction has a latency of three cycles and a throughput of one: three
 * independent lanes keep it busy. */
__attribute__((target("sse4.2"))) static uint32_t run_hw(uint32_t crc, const unsigned char *p,
							  size_t n)
{
	for (; n >= 3 * LANE; p += 3 * LANE, n -= 3 * LANE) {
		uint64_t a = crc, b = 0, c = 0;
		for (size_t i = 0; i < LANE; i += 8) {
			uint64_t wa, wb, wc;
			memcpy(&wa, p + i, 8);
			memcpy(&wb, p + LANE + i, 8);
			memcpy(&wc, p + 2 * LANE + i, 8);
			a = _mm_crc32_u64(a, wa);
			b = _mm_crc32_u64(b, wb);
			c = _mm_crc32_u64(c, wc);
		}
		crc = shift_lane(shift_lane((uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)c;
	}
	return run_one_lane(crc, p, n);
}
#endif

static uint32_t run(uint32_t crc, const unsigned char *p, size_t n)
{
#if defined(__x86_64__)
	if (have_sse42)
		return run_hw(crc, p, n);
#endif
	return run_table(crc, p, n);
}

__attribute__((constructor)) static void init_tables(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
		byte_table[i] = c;
	}
	/* Column j of the LANE-zero-bytes map is where the state 1 << j goes. */
	static const unsigned char zeros[LANE];
	uint32_t column[32];
	for (int j = 0; j < 32; j++)
		column[j] = run_table(1u << j, zeros, LANE);
	for (int k = 0; k < 4; k++) {
		for (uint32_t v = 0; v < 256; v++) {
			uint32_t out = 0;
			for (int j = 0; j < 8; j++)
				if (v >> j & 1)
					out ^= column[8 * k + j];
			lane_shift[k][v] = out;
		}
	}
#if defined(__x86_64__)
	__builtin_cpu_init();
	have_sse42 = __builtin_cpu_supports("sse4.2");
#endif
}

uint32_t pm_crc32c(uint32_t crc, const void *buf, size_t len)
{
	return ~run(~crc, buf, len);
}

uint32_t pm_crc32c_table(uint32_t crc, const void *buf, size_t len)
{
	return ~run_table(~crc, buf, len);
}
