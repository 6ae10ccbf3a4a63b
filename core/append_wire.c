/*
 * The ops of a serialized AppendRequest (flexlog.proto), decoded into columns. A replica
 * runs this on every append message; the same walk in Python cost about 5.7 us per op,
 * most of a replica's CPU per native append beside gRPC. Payloads are not copied: the
 * caller gets each one's range in the request and slices its own buffer.
 *
 * Field numbers and wire types, as the generated classes write them:
 *   AppendRequest: ops = 1 (length-delimited, repeated)
 *   AppendOp: token = 1 (fixed64), color = 2, owner = 3, count = 4 (varints),
 *             payload = 5 (length-delimited), contiguous = 6 (varint)
 * Fields may come in any order, a repeated scalar keeps its last value, and unknown
 * fields are skipped, so a newer sender's messages still decode. Groups (wire types 3
 * and 4) are refused: proto3, which flexlog.proto is, never writes them.
 */
#include "append_wire.h"
#include "varint.h"

enum { VARINT = 0, FIXED64 = 1, LENGTH = 2, FIXED32 = 5 };

#define KEY_OPS 0x0A
#define KEY_TOKEN 0x09
#define KEY_COLOR 0x10
#define KEY_OWNER 0x18
#define KEY_COUNT 0x20
#define KEY_PAYLOAD 0x2A
#define KEY_CONTIGUOUS 0x30

static int read_varint(const uint8_t *data, size_t end, size_t *pos, uint64_t *out)
{
	return varint_read(data, end, pos, out) == VARINT_OK ? 0 : AW_EVARINT;
}

/* Past an unknown field of the given wire type, within [*pos, end). */
static int skip(const uint8_t *data, size_t end, size_t *pos, uint64_t wire_type)
{
	uint64_t length;
	int rc;
	switch (wire_type) {
	case VARINT:
		return read_varint(data, end, pos, &length);
	case FIXED64:
		length = 8;
		break;
	case FIXED32:
		length = 4;
		break;
	case LENGTH:
		rc = read_varint(data, end, pos, &length);
		if (rc)
			return rc;
		break;
	default:
		return AW_EWIRETYPE;
	}
	if (length > end - *pos)
		return AW_EFIELD;
	*pos += length;
	return 0;
}

/* One op in data[pos, end) into row `row` of the columns. */
static int decode_op(const uint8_t *data, size_t pos, size_t end, uint64_t *columns, size_t cap,
		     size_t row)
{
	uint64_t token = 0, color = 0, owner = 0, count = 0, start = 0, size = 0, contiguous = 0;
	while (pos < end) {
		uint64_t key, value;
		int rc = read_varint(data, end, &pos, &key);
		if (rc)
			return rc;
		switch (key) {
		case KEY_TOKEN:
			if (end - pos < 8)
				return AW_ETOKEN;
			token = 0;
			for (int i = 7; i >= 0; i--)
				token = token << 8 | data[pos + i];
			pos += 8;
			break;
		case KEY_PAYLOAD:
			rc = read_varint(data, end, &pos, &size);
			if (rc)
				return rc;
			if (size > end - pos)
				return AW_EPAYLOAD;
			start = pos;
			pos += size;
			break;
		case KEY_COLOR:
		case KEY_OWNER:
		case KEY_COUNT:
		case KEY_CONTIGUOUS:
			rc = read_varint(data, end, &pos, &value);
			if (rc)
				return rc;
			if (key == KEY_COLOR)
				color = value;
			else if (key == KEY_OWNER)
				owner = value & 0xFFFFFFFF; /* uint32 fields keep their low 32 bits */
			else if (key == KEY_COUNT)
				count = value & 0xFFFFFFFF;
			else
				contiguous = value != 0;
			break;
		default:
			rc = skip(data, end, &pos, key & 7);
			if (rc)
				return rc;
		}
	}
	if (row < cap) {
		uint64_t values[AW_COLUMNS] = {token, color, owner, count, start, size, contiguous};
		for (int c = 0; c < AW_COLUMNS; c++)
			columns[c * cap + row] = values[c];
	}
	return 0;
}

/*
 * The number of ops in the request, or an AW_ error (AW_ETOOMANY past AW_MAX_OPS ops).
 * columns holds AW_COLUMNS columns of cap values each, in the order of AW_COLUMNS; only the
 * first cap ops are written, so a call with cap 0 (and columns NULL) counts and checks the
 * ops, and a second one with that count decodes them.
 */
int64_t aw_decode_request(const uint8_t *data, size_t size, uint64_t *columns, size_t cap)
{
	size_t pos = 0;
	int64_t ops = 0;
	while (pos < size) {
		uint64_t key, length;
		int rc = read_varint(data, size, &pos, &key);
		if (rc)
			return rc;
		if (key != KEY_OPS) {
			rc = skip(data, size, &pos, key & 7);
			if (rc)
				return rc;
			continue;
		}
		rc = read_varint(data, size, &pos, &length);
		if (rc)
			return rc;
		if (length > size - pos)
			return AW_EOP;
		if (ops == AW_MAX_OPS)
			return AW_ETOOMANY;
		rc = decode_op(data, pos, pos + length, columns, cap, (size_t)ops);
		if (rc)
			return rc;
		pos += length;
		ops++;
	}
	return ops;
}
