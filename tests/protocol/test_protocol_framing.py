from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flexlog.gateway.protocol import FrameReader, FrameTooLarge, decode_request, encode_request


def framed(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def test_frame_split_across_many_feeds() -> None:
    frame = encode_request(3, 9, 1, {"topics": [{"name": "t"}]})
    reader = FrameReader()
    for byte in frame[:-1]:
        assert reader.feed(bytes([byte])) == []
    (payload,) = reader.feed(frame[-1:])
    assert decode_request(payload).body.topics[0].name == "t"
    assert reader.buffered_bytes == 0


def test_several_frames_in_one_feed() -> None:
    payloads = [b"a", b"", b"ccc" * 1000]
    reader = FrameReader()
    data = b"".join(framed(p) for p in payloads)
    assert reader.feed(data + b"\x00\x00") == payloads
    assert reader.buffered_bytes == 2
    assert reader.feed(b"\x00\x01z") == [b"z"]


@given(st.lists(st.binary(max_size=50), max_size=10), st.data())
def test_any_chunking_yields_the_same_frames(payloads: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(framed(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    reader = FrameReader()
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += reader.feed(stream[start:end])
    assert out == payloads


@pytest.mark.parametrize("size", [2**31 - 1, 100 * 1024 * 1024 + 1, -1, -(2**31)])
def test_oversized_or_negative_prefix_rejected_from_the_prefix_alone(size: int) -> None:
    reader = FrameReader()
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge) as info:
            reader.feed(struct.pack(">i", size))
        assert tracemalloc.get_traced_memory()[1] < 1 << 16
    finally:
        tracemalloc.stop()
    assert info.value.size == size


def test_limit_is_configurable_and_inclusive() -> None:
    reader = FrameReader(max_frame_bytes=10)
    assert reader.feed(framed(b"x" * 10)) == [b"x" * 10]
    with pytest.raises(FrameTooLarge):
        reader.feed(framed(b"x" * 11))
