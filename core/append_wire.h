#ifndef FLEXLOG_APPEND_WIRE_H
#define FLEXLOG_APPEND_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define AW_COLUMNS 7    /* token, color, owner, count, payload start, payload size, contiguous */
#define AW_EVARINT -1   /* a varint truncated or longer than ten bytes */
#define AW_EOP -2       /* an op runs past the end of the request */
#define AW_EPAYLOAD -3  /* a payload runs past the end of its op */
#define AW_ETOKEN -4    /* a token cut short by the end of its op */
#define AW_EWIRETYPE -5 /* a wire type proto3 never sends (groups, 6, 7) */
#define AW_EFIELD -6    /* an unknown field runs past the end of its message */
#define AW_ETOOMANY -7  /* more than AW_MAX_OPS ops */

/* Ops per request at most: decoding costs about 170 bytes per op, whatever its size, so
 * this bounds what a request of empty ops costs a replica (a 1 GiB message could carry
 * 500 million). The client splits its messages at this many ops (append_wire.requests). */
#define AW_MAX_OPS 65536

int64_t aw_decode_request(const uint8_t *data, size_t size, uint64_t *columns, size_t cap);

#endif
