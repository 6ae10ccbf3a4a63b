"""The entry format: RecordBatch v2 encode/decode, CRC and the offset rewrite."""

from __future__ import annotations

import contextlib

import crc32c
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flexlog.core import record_batch as rb

records = st.builds(
    rb.Record,
    value=st.none() | st.binary(max_size=300),
    key=st.none() | st.binary(max_size=50),
    headers=st.lists(st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=20)), max_size=3),
    timestamp_ms=st.none() | st.integers(0, 2**41),
)


@given(st.lists(records, min_size=1, max_size=20), st.integers(0, 2**62))
def test_build_decode_round_trip(recs: list[rb.Record], base: int) -> None:
    batch = rb.build(recs, base_offset=base, timestamp_ms=1_700_000_000_000)
    header = rb.validate(batch)
    assert header.records_count == len(recs)
    assert header.base_offset == base
    decoded = rb.decode(batch)
    for i, (want, got) in enumerate(zip(recs, decoded, strict=True)):
        assert (got.key, got.value, got.headers) == (want.key, want.value, want.headers)
        assert got.timestamp_ms == (1_700_000_000_000 if want.timestamp_ms is None else want.timestamp_ms)
        assert got.offset == base + i


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=200), st.integers(0, 2**62))
def test_plain_values_build_the_same_batch_as_their_records(values: list[bytes], base: int) -> None:
    """Bytes take build()'s own path (no Record each): byte for byte what Records give, also
    past offset delta 127, where a delta takes two varint bytes."""
    stamp = 1_700_000_000_000
    batch = rb.build(values, base_offset=base, timestamp_ms=stamp)
    assert batch == rb.build([rb.Record(value=v) for v in values], base_offset=base, timestamp_ms=stamp)
    assert [r.value for r in rb.decode(batch)] == values


@given(st.lists(st.binary(max_size=100), min_size=1, max_size=10), st.integers(0, 2**63 - 1))
def test_base_offset_rewrite_keeps_crc_valid(values: list[bytes], sn: int) -> None:
    batch = rb.build(values)
    moved = rb.with_base_offset(batch, sn)
    assert rb.validate(moved).base_offset == sn


@given(st.data())
def test_any_flipped_bit_after_the_crc_field_is_detected(data: st.DataObject) -> None:
    batch = bytearray(rb.build([b"payload", b"more"]))
    pos = data.draw(st.integers(rb.CRC_START, len(batch) - 1))
    batch[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(rb.CorruptBatch):
        rb.validate(bytes(batch))


@given(st.binary(max_size=200))
def test_garbage_never_raises_anything_but_corrupt_batch(junk: bytes) -> None:
    with contextlib.suppress(rb.CorruptBatch):
        rb.validate(junk)


def test_truncated_and_wrong_length_are_rejected() -> None:
    batch = rb.build([b"abc"])
    with pytest.raises(rb.CorruptBatch, match="header"):
        rb.validate(batch[:40])
    with pytest.raises(rb.CorruptBatch, match="batchLength"):
        rb.validate(batch + b"\x00")


def test_split_walks_concatenated_batches() -> None:
    a, b = rb.build([b"a"], base_offset=0), rb.build([b"b", b"c"], base_offset=1)
    parts = [bytes(p) for p in rb.split(a + b)]
    assert parts == [a, b]
    with pytest.raises(rb.CorruptBatch):
        list(rb.split(a + b[:20]))


def test_gzip_batches_decode() -> None:
    import gzip
    import struct

    import crc32c

    plain = rb.build([b"x" * 100, b"y"], timestamp_ms=5)
    body = gzip.compress(plain[rb.HEADER_SIZE:])
    header = bytearray(plain[: rb.HEADER_SIZE])
    struct.pack_into(">h", header, 21, rb.CODEC_GZIP)
    after = bytes(header[rb.CRC_START:]) + body
    struct.pack_into(">i", header, 8, len(after) + 9)
    struct.pack_into(">I", header, 17, crc32c.crc32c(after))
    batch = bytes(header[: rb.CRC_START]) + after
    assert [r.value for r in rb.decode(batch)] == [b"x" * 100, b"y"]


@given(st.lists(records, min_size=1, max_size=20))
def test_max_record_timestamp_is_the_largest_record_time(recs: list[rb.Record]) -> None:
    batch = rb.build(recs, timestamp_ms=1_700_000_000_000)
    header = rb.parse_header(batch)
    assert rb.max_record_timestamp(batch, header) == max(r.timestamp_ms for r in rb.decode(batch))


def test_setting_max_timestamp_keeps_the_records_and_a_valid_crc() -> None:
    batch = rb.build([b"a", rb.Record(b"b", timestamp_ms=70)], timestamp_ms=50)
    stamped = rb.with_max_timestamp(batch, -1)
    header = rb.validate(stamped)
    assert header.max_timestamp == -1 and stamped[rb.HEADER_SIZE:] == batch[rb.HEADER_SIZE:]
    assert rb.max_record_timestamp(stamped, header) == 70


@given(st.binary(max_size=200))
def test_records_that_do_not_parse_raise_only_corrupt_batch(junk: bytes) -> None:
    batch = rb.build([b"a", b"b"])
    for codec in (rb.CODEC_NONE, rb.CODEC_GZIP, rb.CODEC_LZ4):
        header = rb.parse_header(batch)._replace(attributes=codec)
        with contextlib.suppress(rb.CorruptBatch):
            rb.max_record_timestamp(batch[: rb.HEADER_SIZE] + junk, header)


def _zigzag_varint(n: int) -> bytes:
    raw = (n << 1) ^ (n >> 63)
    out = bytearray()
    while raw >= 0x80:
        out.append(raw & 0x7F | 0x80)
        raw >>= 7
    return bytes(out + bytes((raw,)))


def _record(length: int, delta: bytes, rest: bytes = b"") -> bytes:
    """A record's length, attributes byte, timestampDelta varint and the rest."""
    return _zigzag_varint(length) + b"\x00" + delta + rest


@pytest.mark.parametrize(("section", "count", "why"), [
    (_record(2, b"\x02") + _record(2, b"\x04"), 3, "fewer records than recordsCount"),
    (_record(2, b"\x02") + b"\x00", 1, "bytes after the last record"),
    (_record(9, b"\x02"), 1, "record length out of bounds"),
    (_record(1, b""), 1, "record length out of bounds"),
    (_record(-5, b"\x02"), 1, "record length out of bounds"),
    (_record(2, b"\x82\x01"), 1, "record timestampDelta out of bounds"),
    (_record(4, b"\xff" * 10 + b"\x01"), 1, "varint too long in record"),
    (b"\xff" * 10 + b"\x01", 1, "varint too long in record"),
    (b"\x80", 1, "fewer records than recordsCount"),
])
def test_each_malformed_records_section_names_what_is_wrong(section: bytes, count: int,
                                                            why: str) -> None:
    batch = rb.build([b"a"])
    header = rb.parse_header(batch)._replace(records_count=count)
    with pytest.raises(rb.CorruptBatch, match=why):
        rb.max_record_timestamp(batch[: rb.HEADER_SIZE] + section, header)


def test_the_walk_reads_ten_byte_varints_and_negative_deltas() -> None:
    deltas = [-(2**62), 5, 2**62]
    section = b"".join(_record(1 + len(_zigzag_varint(d)), _zigzag_varint(d)) for d in deltas)
    batch = rb.build([b"a"], timestamp_ms=0)
    header = rb.parse_header(batch)._replace(records_count=3, base_timestamp=0)
    assert rb.max_record_timestamp(batch[: rb.HEADER_SIZE] + section, header) == 2**62
    only_negative = section[: len(_record(1 + 9, _zigzag_varint(-(2**62))))]
    assert rb.max_record_timestamp(batch[: rb.HEADER_SIZE] + only_negative,
                                   header._replace(records_count=1)) == rb.NO_TIMESTAMP
    # Bits past 64 in a tenth byte are dropped, as Kafka's readVarlong does, not refused.
    wide = _record(11, b"\xff" * 9 + b"\x03")
    assert rb.max_record_timestamp(batch[: rb.HEADER_SIZE] + wide,
                                   header._replace(records_count=1)) == rb.NO_TIMESTAMP


def test_a_gap_is_a_control_batch_with_one_commit_marker_at_its_last_offset() -> None:
    """An ordered partition's gap as Fetch answers it: consumers move their position over the
    marker (docs/ordering.md), and no reader of stored entries takes it for a fill."""
    batch = rb.gap(10, 5)
    header = rb.parse_header(batch)  # not validate: that wants one record per offset, as stored
    assert crc32c.crc32c(batch[rb.CRC_START:]) == header.crc
    assert header.is_control and not header.is_transactional and header.producer_id == -1
    assert (header.base_offset, header.last_offset_delta, header.records_count) == (10, 4, 1)
    assert header.total_size == len(batch)
    [marker] = rb.decode(batch, verify_crc=False)
    assert marker.offset == 14
    assert (marker.key, marker.value) == (b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x00")  # COMMIT
    assert not rb.is_fill(batch)
