"""Byte-level readers and writers that the compiled message codecs call.

The code generated in ``types.py`` imports these names: readers take a
``FrameInput`` (a ``BytesIO`` over the frame), writers a ``Sink`` (in practice a
``ChunkWriter``). Readers raise ``MalformedFrame`` on short or invalid input; a
length prefix is never trusted for an allocation because ``BytesIO.read`` returns
at most what is left, and the result length is checked afterwards.
Null follows Kafka's generated readers: any negative classic length (or a compact
length of 0) is null.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from io import BytesIO
from typing import Any, Protocol

from .exceptions import EncodeError, MalformedFrame

I8 = struct.Struct(">b")
I16 = struct.Struct(">h")
I32 = struct.Struct(">i")
I64 = struct.Struct(">q")
U16 = struct.Struct(">H")
F64 = struct.Struct(">d")
BOOL = struct.Struct(">?")

_VARINT_BYTES = [bytes((i,)) for i in range(128)]
_ONE_BYTE_VARINTS = {b: i for i, b in enumerate(_VARINT_BYTES)}
_NULL_I16 = b"\xff\xff"
_NULL_I32 = b"\xff\xff\xff\xff"


class FrameInput(BytesIO):
    """What parsers read from: a ``BytesIO`` that remembers its total size."""

    __slots__ = ("size",)
    size: int


def frame_input(data: bytes) -> FrameInput:
    # Setting the slot here rather than in an __init__ override keeps construction
    # in C: a Python-level __init__ tripled its cost on the Produce path.
    io = FrameInput(data)
    io.size = len(data)
    return io


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


class ChunkWriter(list[bytes]):
    """Where builders write: chunks are joined once at the end, so a record blob is
    copied exactly once instead of into a growing buffer and out again."""

    write = list.append

    def getvalue(self) -> bytes:
        return b"".join(self)


def read_exact(io: FrameInput, n: int) -> bytes:
    data = io.read(n)
    if len(data) != n:
        raise MalformedFrame(f"truncated: wanted {n} bytes, {len(data)} left")
    return data


def read_uuid(io: FrameInput) -> bytes:
    return read_exact(io, 16)


def write_uuid(io: Sink, value: bytes) -> None:
    if len(value) != 16:
        raise EncodeError(f"uuid must be 16 bytes, got {len(value)}")
    io.write(value)


def read_uvarint(io: FrameInput) -> int:
    return uvarint_from(io, io.read(1))


def uvarint_from(io: FrameInput, first: bytes) -> int:
    """Finish reading a varint whose first byte (``first``) was already read."""
    value = _ONE_BYTE_VARINTS.get(first)
    if value is not None:
        return value
    if not first:
        raise MalformedFrame("truncated varint")
    result = first[0] & 0x7F
    shift = 7
    while True:
        data = io.read(1)
        if not data:
            raise MalformedFrame("truncated varint")
        byte = data[0]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result
        shift += 7
        # Kafka's unsigned varints hold an int32: five bytes at most.
        if shift > 28:
            raise MalformedFrame("varint longer than 5 bytes")


def write_uvarint(io: Sink, value: int) -> None:
    if 0 <= value < 0x80:
        io.write(_VARINT_BYTES[value])
        return
    if value < 0 or value > 0xFFFFFFFF:
        raise EncodeError(f"unsigned varint out of range: {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    io.write(out)


# -- strings -----------------------------------------------------------------------


def read_string(io: FrameInput) -> str:
    n = I16.unpack(read_exact(io, 2))[0]
    if n < 0:
        raise MalformedFrame("null in a non-nullable string")
    return read_exact(io, n).decode()


def read_nullable_string(io: FrameInput) -> str | None:
    n = I16.unpack(read_exact(io, 2))[0]
    if n < 0:
        return None
    return read_exact(io, n).decode()


def read_compact_string(io: FrameInput) -> str:
    n = read_uvarint(io) - 1
    if n < 0:
        raise MalformedFrame("null in a non-nullable compact string")
    return read_exact(io, n).decode()


def read_compact_nullable_string(io: FrameInput) -> str | None:
    n = read_uvarint(io) - 1
    if n < 0:
        return None
    return read_exact(io, n).decode()


def write_string(io: Sink, value: str) -> None:
    if value is None:
        raise EncodeError("None given for a non-nullable string")
    data = value.encode()
    if len(data) > 0x7FFF:
        raise EncodeError(f"string of {len(data)} bytes exceeds int16 length")
    io.write(I16.pack(len(data)))
    io.write(data)


def write_nullable_string(io: Sink, value: str | None) -> None:
    if value is None:
        io.write(_NULL_I16)
    else:
        write_string(io, value)


def write_compact_string(io: Sink, value: str) -> None:
    if value is None:
        raise EncodeError("None given for a non-nullable string")
    data = value.encode()
    write_uvarint(io, len(data) + 1)
    io.write(data)


def write_compact_nullable_string(io: Sink, value: str | None) -> None:
    if value is None:
        io.write(b"\x00")
    else:
        write_compact_string(io, value)


# -- bytes (also records, which stay opaque) ----------------------------------------


def read_bytes(io: FrameInput) -> bytes:
    n = I32.unpack(read_exact(io, 4))[0]
    if n < 0:
        raise MalformedFrame("null in a non-nullable bytes field")
    return read_exact(io, n)


def read_nullable_bytes(io: FrameInput) -> bytes | None:
    n = I32.unpack(read_exact(io, 4))[0]
    if n < 0:
        return None
    return read_exact(io, n)


def read_compact_bytes(io: FrameInput) -> bytes:
    n = read_uvarint(io) - 1
    if n < 0:
        raise MalformedFrame("null in a non-nullable compact bytes field")
    return read_exact(io, n)


def read_compact_nullable_bytes(io: FrameInput) -> bytes | None:
    n = read_uvarint(io) - 1
    if n < 0:
        return None
    return read_exact(io, n)


def write_bytes(io: Sink, value: bytes) -> None:
    if value is None:
        raise EncodeError("None given for a non-nullable bytes field")
    io.write(I32.pack(len(value)))
    io.write(value)


def write_nullable_bytes(io: Sink, value: bytes | None) -> None:
    if value is None:
        io.write(_NULL_I32)
    else:
        write_bytes(io, value)


def write_compact_bytes(io: Sink, value: bytes) -> None:
    if value is None:
        raise EncodeError("None given for a non-nullable bytes field")
    write_uvarint(io, len(value) + 1)
    io.write(value)


def write_compact_nullable_bytes(io: Sink, value: bytes | None) -> None:
    if value is None:
        io.write(b"\x00")
    else:
        write_compact_bytes(io, value)


# -- array counts: readers return -1 for null ---------------------------------------
#
# Every array element takes at least one byte on the wire, so a count larger than
# what is left of the frame is a lie; rejecting it up front (as Kafka does) keeps a
# big frame full of tiny forged elements from growing a list of millions of objects.


def _checked_count(io: FrameInput, n: int) -> int:
    if n > io.size - io.tell():
        raise MalformedFrame(f"array of {n} elements in {io.size - io.tell()} bytes")
    return n


def read_array_len(io: FrameInput) -> int:
    n = I32.unpack(read_exact(io, 4))[0]
    if n < 0:
        raise MalformedFrame("null in a non-nullable array")
    return _checked_count(io, n)


def read_nullable_array_len(io: FrameInput) -> int:
    n = I32.unpack(read_exact(io, 4))[0]
    return -1 if n < 0 else _checked_count(io, n)


def read_compact_array_len(io: FrameInput) -> int:
    n = read_uvarint(io) - 1
    if n < 0:
        raise MalformedFrame("null in a non-nullable compact array")
    return _checked_count(io, n)


def read_compact_nullable_array_len(io: FrameInput) -> int:
    n = read_uvarint(io) - 1
    return -1 if n < 0 else _checked_count(io, n)


def write_array_len(io: Sink, items: Sequence[Any] | None) -> None:
    if items is None:
        raise EncodeError("None given for a non-nullable array")
    io.write(I32.pack(len(items)))


def write_nullable_array_len(io: Sink, items: Sequence[Any] | None) -> None:
    io.write(_NULL_I32 if items is None else I32.pack(len(items)))


def write_compact_array_len(io: Sink, items: Sequence[Any] | None) -> None:
    if items is None:
        raise EncodeError("None given for a non-nullable array")
    write_uvarint(io, len(items) + 1)


def write_compact_nullable_array_len(io: Sink, items: Sequence[Any] | None) -> None:
    if items is None:
        io.write(b"\x00")
    else:
        write_uvarint(io, len(items) + 1)


# -- tagged fields (KIP-482) -------------------------------------------------------


TagDecoders = dict[int, tuple[str, Callable[[FrameInput, Any], Any]]]


def read_tags(io: FrameInput, result: dict[str, Any], decoders: TagDecoders) -> None:
    """Parse a tagged-field buffer into ``result``; tags without a decoder are skipped."""
    for _ in range(read_uvarint(io)):
        tag = read_uvarint(io)
        data = read_exact(io, read_uvarint(io))
        decoder = decoders.get(tag)
        if decoder is not None:
            name, parse = decoder
            result[name] = parse(frame_input(data), None)


def skip_tags(io: FrameInput) -> None:
    skip_tags_from(io, io.read(1))


def skip_tags_from(io: FrameInput, first: bytes) -> None:
    """Skip a tag buffer whose first byte was already read (generated code reads one
    byte inline, since an empty buffer is by far the common case)."""
    for _ in range(uvarint_from(io, first)):
        read_uvarint(io)
        read_exact(io, read_uvarint(io))


def write_tags(io: Sink, tagged: list[tuple[int, bytes]]) -> None:
    """Write ``(tag, encoded value)`` pairs, already in ascending tag order."""
    write_uvarint(io, len(tagged))
    for tag, data in tagged:
        write_uvarint(io, tag)
        write_uvarint(io, len(data))
        io.write(data)


def encode_value(build: Callable[[Any, Sink, Any], Any], value: Any) -> bytes:
    """Run a compiled builder into a fresh buffer (tagged values are length-prefixed)."""
    out = ChunkWriter()
    build(value, out, None)
    return out.getvalue()

