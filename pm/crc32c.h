/*
 * CRC-32C (Castagnoli), the checksum Kafka batches and the SSD segments use,
 * for the PM arena's slot and commit checks. SSE4.2's crc32 instruction when
 * the CPU has it, a table otherwise.
 */
#ifndef FLEXLOG_CRC32C_H
#define FLEXLOG_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC-32C of buf continuing from crc (0 to start), as the crc32c package computes it. */
uint32_t pm_crc32c(uint32_t crc, const void *buf, size_t len);
/* The same by the byte table alone, whatever the CPU, so tests reach that path too. */
uint32_t pm_crc32c_table(uint32_t crc, const void *buf, size_t len);

#endif
