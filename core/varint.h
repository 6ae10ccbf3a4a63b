#ifndef FLEXLOG_VARINT_H
#define FLEXLOG_VARINT_H

#include <stddef.h>
#include <stdint.h>

#define VARINT_OK 0
#define VARINT_SHORT 1 /* the data ends inside the varint */
#define VARINT_LONG 2  /* more than ten bytes */

/*
 * An unsigned varint at data[*pos], within [*pos, end), as protobuf and Kafka write them:
 * at most ten bytes, bits beyond 64 in the tenth dropped (Kafka's readVarlong does the
 * same). *pos moves past it.
 */
static inline int varint_read(const uint8_t *data, size_t end, size_t *pos, uint64_t *out)
{
	uint64_t value = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (*pos >= end)
			return VARINT_SHORT;
		uint8_t b = data[(*pos)++];
		value |= (uint64_t)(b & 0x7F) << shift;
		if (!(b & 0x80)) {
			*out = value;
			return VARINT_OK;
		}
	}
	return VARINT_LONG;
}

#endif
