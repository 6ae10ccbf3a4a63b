"""`AppendRequest` (flexlog.proto) encoded and decoded by hand, so a payload is copied once.

The append stream carries nearly every byte the log stores. Through the generated
protobuf classes each payload was copied four times on the client (into the message,
by serializing it, by framing it as an element of `ops`, by joining a message) and
twice on the replica (parsing, then reading the bytes field). Here the client frames
a payload with a few header bytes in one join, and the replica takes payloads as
memoryview slices of the message gRPC handed it, their ranges found in C.

The bytes are exactly those of the generated classes (fields in number order, proto3
defaults left out) and the decoder accepts anything they may send (any field order,
unknown fields skipped), so `flexlog.proto` stays the contract for other clients.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

from ._append_wire import ffi as _ffi
from ._append_wire import lib as _wire

_TOKEN = 0x09  # field 1, fixed64
_COLOR = 0x10  # field 2, varint
_OWNER = 0x18  # field 3, varint
_COUNT = 0x20  # field 4, varint
_PAYLOAD = 0x2A  # field 5, length-delimited
_CONTIGUOUS = 0x30  # field 6, varint
_OPS = 0x0A  # AppendRequest field 1, length-delimited
MAX_OPS = _wire.AW_MAX_OPS  # per request; a replica refuses a request of more


class MalformedAppend(ValueError):
    """The bytes are not a well-formed AppendRequest."""


class AppendOp(NamedTuple):
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


# Every client encodes each append it sends: small values (ids, counts, a 1 KiB entry's
# sizes) come from these tables, whole: a third less time per op (bench/bench_append_path.py).
_SMALL = 1 << 11
_VARINTS = [_varint(n) for n in range(_SMALL)]
_TAGGED = {tag: [bytes((tag,)) + v for v in _VARINTS] for tag in (_COLOR, _OWNER, _COUNT, _PAYLOAD)}


def _field(tag: int, value: int) -> bytes:
    # A negative value is refused by _varint, as by protobuf: never read from a table's end.
    return _TAGGED[tag][value] if 0 <= value < _SMALL else bytes((tag,)) + _varint(value)


def encode_op(op: AppendOp) -> bytes:
    """op as one element of `AppendRequest.ops`; a request is the concatenation of its
    elements, so an append is encoded once however often it is sent."""
    token, color, owner, count, payload, contiguous = op
    parts = [bytes((_TOKEN,)) + token.to_bytes(8, "little")] if token else []
    if color:
        parts.append(_field(_COLOR, color))
    if owner:
        parts.append(_field(_OWNER, owner))
    if count:
        parts.append(_field(_COUNT, count))
    size = len(payload)
    if size:
        parts.append(_field(_PAYLOAD, size))
    head = b"".join(parts)
    tail = bytes((_CONTIGUOUS, 1)) if contiguous else b""
    body_size = len(head) + size + len(tail)
    length = _VARINTS[body_size] if body_size < _SMALL else _varint(body_size)
    return b"".join((bytes((_OPS,)), length, head, payload, tail))


_ERRORS = {
    _wire.AW_EVARINT: "truncated or overlong varint",
    _wire.AW_EOP: "op runs past the end of the request",
    _wire.AW_EPAYLOAD: "payload runs past the end of its op",
    _wire.AW_ETOKEN: "truncated token",
    _wire.AW_EWIRETYPE: "unsupported wire type",
    _wire.AW_EFIELD: "field runs past the end of its message",
    _wire.AW_ETOOMANY: f"more than {_wire.AW_MAX_OPS} ops",
}


def requests(ops: Sequence[bytes], max_bytes: int) -> Iterator[bytes]:
    """Encoded ops (`encode_op`) joined, in order, into AppendRequests of at most MAX_OPS ops
    and max_bytes bytes; an op larger than max_bytes goes alone, as it is (joining one op
    would copy it)."""
    start = size = 0
    for i, op in enumerate(ops):
        size += len(op)
        if i > start and (size > max_bytes or i - start == MAX_OPS):
            yield _joined(ops[start:i])
            start, size = i, len(op)
    if ops:
        yield _joined(ops[start:])


def _joined(ops: Sequence[bytes]) -> bytes:
    return ops[0] if len(ops) == 1 else b"".join(ops)


def decode_request(data: bytes) -> list[AppendOp]:
    """The ops of a serialized AppendRequest; payloads are views of data, not copies.

    The walk is C (`append_wire.c`): a first pass counts and checks the ops, a second
    writes each op's fields and its payload's range as columns, so the Python left per op
    is one slice and one tuple. An op without a payload gets b"", not an empty view: a
    message of many empty ops (two bytes each) then takes about 170 bytes per op while it
    is decoded, not 350."""
    source = _ffi.from_buffer(data)
    found = _wire.aw_decode_request(source, len(data), _ffi.NULL, 0)
    if found < 0:
        raise MalformedAppend(_ERRORS[found])
    columns = _ffi.new("uint64_t[]", _wire.AW_COLUMNS * found)
    _wire.aw_decode_request(source, len(data), columns, found)
    tokens, colors, owners, counts, starts, sizes, contiguous = (
        _ffi.unpack(columns + c * found, found) for c in range(_wire.AW_COLUMNS))
    view = memoryview(data)
    payloads = [view[start:start + size] if size else b""
                for start, size in zip(starts, sizes, strict=True)]
    return list(map(AppendOp, tokens, colors, owners, counts, payloads, map(bool, contiguous)))
