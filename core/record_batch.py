"""Kafka RecordBatch v2: the one entry format of FlexLog.

Both faces of the system store the same bytes: a native append builds a batch
here, a Kafka producer sends one. The log parses only the 61-byte header; the
gateway also walks each produced batch's record timestamps (max_record_timestamp),
as Kafka's broker does, but never changes a record. baseOffset (bytes 0..8) and
partitionLeaderEpoch (bytes 12..16) lie outside the CRC, so the log rewrites
them without touching the checksum.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import crc32c

from ._records_walk import ffi as _walk_ffi
from ._records_walk import lib as _walk

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
# batchLength counts the bytes after the batchLength field itself.
LENGTH_PREFIX = 12
CRC_START = 21
MAGIC = 2

CODEC_MASK = 0x07
LOG_APPEND_TIME_BIT = 0x08
TRANSACTIONAL_BIT = 0x10
CONTROL_BIT = 0x20

CODEC_NONE = 0
CODEC_GZIP = 1
CODEC_SNAPPY = 2
CODEC_LZ4 = 3
CODEC_ZSTD = 4

NO_TIMESTAMP = -1

_BASE_OFFSET = struct.Struct(">q")
ATTRIBUTES_AT = 21
MAX_TIMESTAMP_AT = 35
CRC_AT = 17


class CorruptBatch(ValueError):
    """The bytes are not a valid RecordBatch v2 (maps to Kafka CORRUPT_MESSAGE)."""


class BatchHeader(NamedTuple):
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def codec(self) -> int:
        return self.attributes & CODEC_MASK

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_BIT)

    @property
    def total_size(self) -> int:
        return self.batch_length + LENGTH_PREFIX


@dataclass(slots=True)
class Record:
    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp_ms: int | None = None
    offset: int = -1


def parse_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    if len(buf) - pos < HEADER_SIZE:
        raise CorruptBatch(f"batch header needs {HEADER_SIZE} bytes, got {len(buf) - pos}")
    return BatchHeader._make(HEADER.unpack_from(buf, pos))


_COUNT = struct.Struct(">i")


def records_count(buf: bytes) -> int:
    """recordsCount of a batch whose header was already validated."""
    return _COUNT.unpack_from(buf, 57)[0]


# The header fields check() reads: batchLength, magic, crc, lastOffsetDelta, recordsCount.
_CHECKED = struct.Struct(">8xi4xbI2xi30xi")


def check(buf: bytes | bytearray | memoryview) -> int:
    """Check that buf is exactly one well-formed batch with a correct CRC-32C; returns its
    recordsCount. A replica checks every entry it stores, so only the fields checked are read."""
    if len(buf) < HEADER_SIZE:
        raise CorruptBatch(f"batch header needs {HEADER_SIZE} bytes, got {len(buf)}")
    batch_length, magic, crc, last_offset_delta, records_count = _CHECKED.unpack_from(buf)
    if magic != MAGIC:
        raise CorruptBatch(f"unsupported record batch magic {magic}")
    if batch_length + LENGTH_PREFIX != len(buf):
        raise CorruptBatch(f"batchLength says {batch_length + LENGTH_PREFIX} bytes, buffer has {len(buf)}")
    if records_count < 0 or last_offset_delta + 1 != records_count:
        raise CorruptBatch(
            f"lastOffsetDelta {last_offset_delta} does not match recordsCount {records_count}")
    if crc32c.crc32c(memoryview(buf)[CRC_START:]) != crc:
        raise CorruptBatch("record batch CRC-32C mismatch")
    return records_count


def validate(buf: bytes | bytearray | memoryview) -> BatchHeader:
    """check(buf), and its header."""
    check(buf)
    return parse_header(buf)


def split(buf: bytes | memoryview) -> Iterator[memoryview]:
    """Yield each batch of a concatenation of batches (as Kafka's records field holds)."""
    view = memoryview(buf)
    pos = 0
    while pos < len(view):
        if len(view) - pos < LENGTH_PREFIX:
            raise CorruptBatch("truncated record batch length prefix")
        (length,) = struct.unpack_from(">i", view, pos + 8)
        end = pos + LENGTH_PREFIX + length
        if length < HEADER_SIZE - LENGTH_PREFIX or end > len(view):
            raise CorruptBatch(f"record batch length {length} out of bounds")
        yield view[pos:end]
        pos = end


def with_base_offset(buf: bytes, base_offset: int) -> bytes:
    # join over a view copies the batch once; `pack(...) + buf[8:]` copied it twice.
    return b"".join((_BASE_OFFSET.pack(base_offset), memoryview(buf)[8:]))


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _write_varint(out: bytearray, n: int) -> None:
    v = _zigzag(n) & 0xFFFFFFFFFFFFFFFF
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    shift = 0
    result = 0
    while True:
        if pos >= len(buf):
            raise CorruptBatch("truncated varint in record")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 63:
            raise CorruptBatch("varint too long in record")
    return (result >> 1) ^ -(result & 1), pos


def _varint_table(limit: int) -> list[bytes]:
    table = []
    for n in range(limit):
        out = bytearray()
        _write_varint(out, n)
        table.append(bytes(out))
    return table


_SMALL_VARINTS = _varint_table(1 << 14)  # zigzag varints of 0..16383: record fields are mostly small


def _varint(n: int) -> bytes:
    if 0 <= n < len(_SMALL_VARINTS):
        return _SMALL_VARINTS[n]
    out = bytearray()
    _write_varint(out, n)
    return bytes(out)


_NULL = _varint(-1)
# attributes 0, timestampDelta 0, offsetDelta d, null key.
_PLAIN_PREFIX = [b"\x00\x00" + _varint(d) + _NULL for d in range(128)]


def _nullable(data: bytes | None) -> bytes:
    return _NULL if data is None else _varint(len(data)) + data


def build(
    records: Sequence[Record | bytes],
    base_offset: int = 0,
    timestamp_ms: int | None = None,
) -> bytes:
    """Encode records into one uncompressed RecordBatch v2 with a valid CRC."""
    if not records:
        raise ValueError("a record batch needs at least one record")
    now = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    if all(type(r) is bytes for r in records):
        return _build_values(records, now, base_offset)  # type: ignore[arg-type]
    items = [r if isinstance(r, Record) else Record(value=r) for r in records]
    stamps = [now if r.timestamp_ms is None else r.timestamp_ms for r in items]
    base_ts = min(stamps)
    parts = []
    for delta, (rec, ts) in enumerate(zip(items, stamps, strict=True)):
        if rec.key is None and not rec.headers and rec.value is not None and ts == base_ts:
            # The common native record: no key, no headers, the batch's timestamp.
            body = b"".join((_plain_prefix(delta), _varint(len(rec.value)), rec.value, b"\x00"))
            parts.append(_varint(len(body)))
            parts.append(body)
            continue
        inner = [b"\x00", _varint(ts - base_ts), _varint(delta), _nullable(rec.key), _nullable(rec.value),
                 _varint(len(rec.headers))]
        for name, hval in rec.headers:
            inner.append(_nullable(name.encode()))
            inner.append(_nullable(hval))
        body = b"".join(inner)
        parts.append(_varint(len(body)))
        parts.append(body)
    count = len(items)
    after_crc = _AFTER_CRC.pack(0, count - 1, base_ts, max(stamps), -1, -1, -1, count) + b"".join(parts)
    return _framed(base_offset, after_crc)


_AFTER_CRC = struct.Struct(">hiqqqhii")
_BEFORE_CRC = struct.Struct(">qiibI")


def _framed(base_offset: int, after_crc: bytes) -> bytes:
    """A batch from what follows its CRC: the header fields before it, the CRC-32C included."""
    batch_length = len(after_crc) + CRC_START - LENGTH_PREFIX
    return _BEFORE_CRC.pack(base_offset, batch_length, 0, MAGIC, crc32c.crc32c(after_crc)) + after_crc


def _plain_prefix(delta: int) -> bytes:
    return _PLAIN_PREFIX[delta] if delta < 128 else b"\x00\x00" + _varint(delta) + _NULL


def _build_values(values: Sequence[bytes], now: int, base_offset: int) -> bytes:
    """build() of plain values (no key, no headers, all stamped now): what a native client
    appends, without a Record per value (bench/bench_append_path.py)."""
    parts = []
    for delta, value in enumerate(values):
        size = _varint(len(value))
        prefix = _plain_prefix(delta)
        parts.append(_varint(len(prefix) + len(size) + len(value) + 1))
        parts.append(prefix)
        parts.append(size)
        parts.append(value)
        parts.append(b"\x00")
    count = len(values)
    after_crc = b"".join((_AFTER_CRC.pack(0, count - 1, now, now, -1, -1, -1, count), *parts))
    return _framed(base_offset, after_crc)


def fill(base_offset: int, count: int) -> bytes:
    """The fill marker for [base_offset, base_offset + count): a control batch without records.

    Kafka's log cleaner leaves batches like it (offsets covered, records gone), so
    consumers step over it; native readers recognise it with is_fill. Its timestamps
    are -1: it has none, and retention never expires anything on its account.
    """
    after_crc = _AFTER_CRC.pack(CONTROL_BIT, count - 1, -1, -1, -1, -1, -1, 0)
    return _framed(base_offset, after_crc)


CONTROL_ABORT = 0
CONTROL_COMMIT = 1


def _control_record(commit: bool, coordinator_epoch: int, offset_delta: int) -> bytes:
    """A COMMIT or ABORT control record: key (version 0, type) and value (version 0,
    coordinator epoch), both big-endian."""
    key = struct.pack(">hh", 0, CONTROL_COMMIT if commit else CONTROL_ABORT)
    value = struct.pack(">hi", 0, coordinator_epoch)
    body = b"".join((b"\x00", _varint(0), _varint(offset_delta), _nullable(key), _nullable(value),
                     _varint(0)))
    return _varint(len(body)) + body


def end_marker(producer_id: int, producer_epoch: int, commit: bool, timestamp_ms: int,
               coordinator_epoch: int = 0) -> bytes:
    """A transaction's COMMIT or ABORT marker: Kafka's control batch of one record.

    The batch is transactional and control, with the producer's id and epoch, and
    no sequence.
    """
    records = _control_record(commit, coordinator_epoch, 0)
    after_crc = _AFTER_CRC.pack(CONTROL_BIT | TRANSACTIONAL_BIT, 0, timestamp_ms, timestamp_ms,
                                producer_id, producer_epoch, -1, 1) + records
    return _framed(0, after_crc)


def gap(base_offset: int, count: int) -> bytes:
    """What a Fetch answers for [base_offset, base_offset + count) of an ordered
    partition holding only other partitions' offsets (docs/ordering.md): a control
    batch whose one record, a COMMIT marker of no producer (id -1), has the range's
    last offset.

    Consumers step over a batch without records too (fill), but librdkafka, Sarama
    and kafkajs then leave their position, their commits and so their lag below the
    range: they move those over control records, as over a transaction's marker.
    COMMIT is the type every client knows and otherwise ignores, read_committed ones
    included (producer -1 has no transaction). Timestamps -1: the range has none.
    """
    after_crc = _AFTER_CRC.pack(CONTROL_BIT, count - 1, -1, -1, -1, -1, -1, 1) + _control_record(
        True, 0, count - 1)
    return _framed(base_offset, after_crc)


def is_fill(buf: bytes | memoryview) -> bool:
    """Whether a stored entry is a fill marker (see fill)."""
    return len(buf) == HEADER_SIZE and buf[22] & CONTROL_BIT != 0 and records_count(bytes(buf)) == 0


def crc_of(buf: bytes | memoryview) -> int:
    """The stored CRC-32C of a batch: equal for the same entry before and after commit
    (baseOffset and partitionLeaderEpoch lie outside it)."""
    return int.from_bytes(buf[17:21], "big")


def _decompress(codec: int, data: bytes) -> bytes:
    """The records section uncompressed; CorruptBatch when it does not decompress (a client's bytes)."""
    if codec == CODEC_NONE:
        return data
    if codec == CODEC_GZIP:
        try:
            return zlib.decompress(data, 16 + zlib.MAX_WBITS)
        except zlib.error as exc:
            raise CorruptBatch(f"gzip records do not decompress: {exc}") from None
    try:
        import cramjam
    except ImportError as exc:  # pragma: no cover - cramjam is a declared dependency
        raise CorruptBatch(f"codec {codec} needs the cramjam package") from exc
    try:
        if codec == CODEC_SNAPPY:
            return _snappy_decompress(data, cramjam)
        if codec == CODEC_LZ4:
            return bytes(cramjam.lz4.decompress(data))
        if codec == CODEC_ZSTD:
            return bytes(cramjam.zstd.decompress(data))
    except (cramjam.DecompressionError, struct.error) as exc:
        raise CorruptBatch(f"codec {codec} records do not decompress: {exc}") from None
    raise CorruptBatch(f"unknown compression codec {codec}")


_XERIAL_MAGIC = b"\x82SNAPPY\x00"


def _snappy_decompress(data: bytes, cramjam: object) -> bytes:
    # Java clients frame snappy the xerial way: magic, two ints, then length-prefixed blocks.
    if not data.startswith(_XERIAL_MAGIC):
        return bytes(cramjam.snappy.decompress_raw(data))  # type: ignore[attr-defined]
    out = bytearray()
    pos = 16
    while pos < len(data):
        (size,) = struct.unpack_from(">i", data, pos)
        pos += 4
        out += cramjam.snappy.decompress_raw(data[pos : pos + size])  # type: ignore[attr-defined]
        pos += size
    return bytes(out)


def decode(buf: bytes | memoryview, verify_crc: bool = True) -> list[Record]:
    """Decode every record of one batch (decompressing if needed). Not for hot paths."""
    if is_fill(buf):
        return []
    header = validate(buf) if verify_crc else parse_header(buf)
    body = memoryview(_decompress(header.codec, bytes(memoryview(buf)[HEADER_SIZE:])))
    records: list[Record] = []
    pos = 0
    for _ in range(header.records_count):
        length, pos = _read_varint(body, pos)
        end = pos + length
        if length < 0 or end > len(body):
            raise CorruptBatch("record length out of bounds")
        pos += 1  # record attributes
        ts_delta, pos = _read_varint(body, pos)
        off_delta, pos = _read_varint(body, pos)
        key, pos = _read_nullable(body, pos)
        value, pos = _read_nullable(body, pos)
        n_headers, pos = _read_varint(body, pos)
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(n_headers):
            name, pos = _read_nullable(body, pos)
            hval, pos = _read_nullable(body, pos)
            headers.append(((name or b"").decode(), hval))
        if pos != end:
            raise CorruptBatch("record length does not match its fields")
        records.append(
            Record(
                value=value,
                key=key,
                headers=headers,
                timestamp_ms=header.base_timestamp + ts_delta,
                offset=header.base_offset + off_delta,
            )
        )
    return records


_WALK_ERRORS = {
    _walk.RW_ELENGTH: "record length out of bounds",
    _walk.RW_EDELTA: "record timestampDelta out of bounds",
    _walk.RW_ESHORT: "fewer records than recordsCount",
    _walk.RW_ETRAILING: "bytes after the last record",
    _walk.RW_EVARINT: "varint too long in record",
}


def max_record_timestamp(buf: bytes | memoryview, header: BatchHeader) -> int:
    """The largest timestamp among a batch's records (decompressing them), NO_TIMESTAMP if none is larger.

    What Kafka's LogValidator computes for every batch it accepts. Only each
    record's length and timestampDelta are read, in C (`records_walk.c`); keys,
    values and headers are skipped, and an uncompressed batch is walked in place.
    """
    if header.codec == CODEC_NONE:
        body = memoryview(buf)[HEADER_SIZE:]
    else:
        body = memoryview(_decompress(header.codec, bytes(memoryview(buf)[HEADER_SIZE:])))
    largest = _walk_ffi.new("int64_t *", NO_TIMESTAMP)
    rc = _walk.rw_max_timestamp_delta(_walk_ffi.from_buffer(body), len(body),
                                      max(0, header.records_count), largest)
    if rc != _walk.RW_OK:
        raise CorruptBatch(_WALK_ERRORS[rc])
    if header.records_count <= 0:
        return NO_TIMESTAMP
    return max(NO_TIMESTAMP, header.base_timestamp + largest[0])


def with_max_timestamp(buf: bytes, max_timestamp: int) -> bytes:
    """buf with maxTimestamp set, the timestamp type CreateTime, and the CRC recomputed over them.

    Kafka's DefaultRecordBatch.setMaxTimestamp: both fields lie inside the
    CRC-32C, which covers attributes to the end of the batch.
    """
    out = bytearray(buf)
    attributes = struct.unpack_from(">h", out, ATTRIBUTES_AT)[0] & ~LOG_APPEND_TIME_BIT
    struct.pack_into(">h", out, ATTRIBUTES_AT, attributes)
    struct.pack_into(">q", out, MAX_TIMESTAMP_AT, max_timestamp)
    struct.pack_into(">I", out, CRC_AT, crc32c.crc32c(memoryview(out)[CRC_START:]))
    return bytes(out)


def _read_nullable(buf: memoryview, pos: int) -> tuple[bytes | None, int]:
    length, pos = _read_varint(buf, pos)
    if length < 0:
        return None, pos
    end = pos + length
    if end > len(buf):
        raise CorruptBatch("record field out of bounds")
    return bytes(buf[pos:end]), end
