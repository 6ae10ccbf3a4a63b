"""`AppendRequest` (flexlog.proto) encoded and decoded by hand, so a payload is copied once.

The append stream carries nearly every byte the log stores. Through the generated
protobuf classes each payload was copied four times on the client (into the message,
by serializing it, by framing it as an element of `ops`, by joining a message) and
twice on the replica (parsing, then reading the bytes field). Here the client frames
a payload with a few header bytes in one join, and the replica takes payloads as
memoryview slices of the message gRPC handed it.

The bytes are exactly those of the generated classes (fields in number order, proto3
defaults left out) and the decoder accepts anything they may send (any field order,
unknown fields skipped), so `flexlog.proto` stays the contract for other clients.
"""

from __future__ import annotations

from dataclasses import dataclass

_TOKEN = 0x09  # field 1, fixed64
_COLOR = 0x10  # field 2, varint
_OWNER = 0x18  # field 3, varint
_COUNT = 0x20  # field 4, varint
_PAYLOAD = 0x2A  # field 5, length-delimited
_CONTIGUOUS = 0x30  # field 6, varint
_OPS = 0x0A  # AppendRequest field 1, length-delimited

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class MalformedAppend(ValueError):
    """The bytes are not a well-formed AppendRequest."""


@dataclass(slots=True, frozen=True)
class AppendOp:
    """One append: a RecordBatch v2 for `color`, identified by the client's `token`."""

    token: int  # unique per append: client id (high 32 bits) | sequence
    color: int
    owner: int  # the sequencer node that orders the color
    count: int  # records in the batch = SNs the entry needs
    payload: bytes | memoryview
    contiguous: bool = False  # the color lives on this shard alone


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_op(op: AppendOp) -> bytes:
    """op as one element of `AppendRequest.ops`; a request is the concatenation of its
    elements, so an append is encoded once however often it is sent."""
    head = bytearray()
    if op.token:
        head.append(_TOKEN)
        head += op.token.to_bytes(8, "little")
    for tag, value in ((_COLOR, op.color), (_OWNER, op.owner), (_COUNT, op.count)):
        if value:
            head.append(tag)
            head += _varint(value)
    size = len(op.payload)
    if size:
        head.append(_PAYLOAD)
        head += _varint(size)
    tail = bytes((_CONTIGUOUS, 1)) if op.contiguous else b""
    body_size = len(head) + size + len(tail)
    return b"".join((bytes((_OPS,)), _varint(body_size), head, op.payload, tail))


def _read_varint(data: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if pos >= end or shift > 63:
            raise MalformedAppend("truncated or overlong varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7


def _skip(data: memoryview, pos: int, end: int, wire_type: int) -> int:
    """Position after a field of wire_type (an unknown field a newer sender may add)."""
    if wire_type == _VARINT:
        return _read_varint(data, pos, end)[1]
    if wire_type == _FIXED64:
        pos += 8
    elif wire_type == _LENGTH:
        size, pos = _read_varint(data, pos, end)
        pos += size
    elif wire_type == _FIXED32:
        pos += 4
    else:
        raise MalformedAppend(f"unsupported wire type {wire_type}")
    if pos > end:
        raise MalformedAppend("field runs past the end of its message")
    return pos


def _decode_op(data: memoryview, pos: int, end: int) -> AppendOp:
    token = color = owner = count = 0
    payload: bytes | memoryview = b""
    contiguous = False
    while pos < end:
        key, pos = _read_varint(data, pos, end)
        if key == _TOKEN:
            if pos + 8 > end:
                raise MalformedAppend("truncated token")
            token = int.from_bytes(data[pos:pos + 8], "little")
            pos += 8
        elif key == _PAYLOAD:
            size, pos = _read_varint(data, pos, end)
            if pos + size > end:
                raise MalformedAppend("payload runs past the end of its op")
            payload = data[pos:pos + size]
            pos += size
        elif key == _COLOR:
            color, pos = _read_varint(data, pos, end)
        elif key == _OWNER:
            owner, pos = _read_varint(data, pos, end)
            owner &= 0xFFFFFFFF
        elif key == _COUNT:
            count, pos = _read_varint(data, pos, end)
            count &= 0xFFFFFFFF
        elif key == _CONTIGUOUS:
            flag, pos = _read_varint(data, pos, end)
            contiguous = flag != 0
        else:
            pos = _skip(data, pos, end, key & 7)
    return AppendOp(token, color, owner, count, payload, contiguous)


def decode_request(data: bytes) -> list[AppendOp]:
    """The ops of a serialized AppendRequest; payloads are views of data, not copies."""
    view = memoryview(data)
    end = len(view)
    ops: list[AppendOp] = []
    pos = 0
    while pos < end:
        key, pos = _read_varint(view, pos, end)
        if key == _OPS:
            size, pos = _read_varint(view, pos, end)
            if pos + size > end:
                raise MalformedAppend("op runs past the end of the request")
            ops.append(_decode_op(view, pos, pos + size))
            pos += size
        else:
            pos = _skip(view, pos, end, key & 7)
    return ops
