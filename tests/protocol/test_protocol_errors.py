"""Hostile input: only ProtocolError subclasses come out, and nothing big is allocated."""

from __future__ import annotations

import contextlib
import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_samples import all_versions, sample

from flexlog.gateway.protocol import (
    EncodeError,
    MalformedFrame,
    ProtocolError,
    UnknownApiKey,
    UnsupportedVersion,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from flexlog.gateway.protocol.messages import APIS
from flexlog.gateway.protocol.schema import message_struct
from flexlog.gateway.protocol.types import KafkaArray, KafkaStruct

VALID_FRAMES = [
    encode_request(key, version, 99, sample(key, version, request=True, nulls=nulls))[4:]
    for key, version in all_versions()
    for nulls in (False, True)
]
FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decodes_or_protocol_error(frame: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_request(frame)


def test_unknown_api_key_keeps_correlation_id() -> None:
    with pytest.raises(UnknownApiKey) as info:
        decode_request(struct.pack(">hhi", 1000, 0, 77))
    assert (info.value.api_key, info.value.api_version, info.value.correlation_id) == (1000, 0, 77)


@pytest.mark.parametrize(("key", "version"), [(18, 5), (18, -1), (1, 3), (1, 18), (2, 0)])
def test_unsupported_version_keeps_correlation_id(key: int, version: int) -> None:
    # The body after the 8 fixed bytes is never looked at: a v5 ApiVersions body
    # may well be something this codec cannot parse.
    with pytest.raises(UnsupportedVersion) as info:
        decode_request(struct.pack(">hhi", key, version, 1234) + b"\xff\xfe")
    assert (info.value.api_key, info.value.api_version, info.value.correlation_id) == (
        key,
        version,
        1234,
    )


def test_short_header_is_malformed_without_correlation_id() -> None:
    with pytest.raises(MalformedFrame) as info:
        decode_request(b"\x00\x12\x00\x00\x00")
    assert info.value.correlation_id is None


def test_malformed_body_carries_correlation_id() -> None:
    with pytest.raises(MalformedFrame) as info:
        decode_request(VALID_FRAMES[0][:-1])
    assert info.value.correlation_id == 99


def test_invalid_utf8_is_malformed() -> None:
    # Metadata v1, one topic whose 2-byte name is not UTF-8.
    frame = struct.pack(">hhih", 3, 1, 5, -1) + b"\x00\x00\x00\x01\x00\x02\xff\xfe"
    with pytest.raises(MalformedFrame):
        decode_request(frame)


def test_non_nullable_null_is_malformed() -> None:
    frame = struct.pack(">hhih", 3, 1, 5, -1) + b"\x00\x00\x00\x01\xff\xff"
    with pytest.raises(MalformedFrame):
        decode_request(frame)


def test_overlong_varint_is_malformed() -> None:
    frame = struct.pack(">hhih", 3, 9, 5, -1) + b"\x00" + b"\xff" * 6 + b"\x01"
    with pytest.raises(MalformedFrame):
        decode_request(frame)


def test_encode_rejects_bad_bodies() -> None:
    with pytest.raises(EncodeError):
        encode_response(3, 1, 1, {"brokers": [{"node_id": 2**40}]})
    with pytest.raises(EncodeError):
        encode_response(3, 1, 1, {"brokers": [{"host": None}]})
    with pytest.raises(EncodeError):
        encode_response(3, 1, 1, {"brokers": [7]})
    with pytest.raises(EncodeError):
        encode_response(1, 18, 1, {})


def test_every_array_element_consumes_bytes() -> None:
    # A forged element count only stays harmless if each element reads at least one
    # byte, so the parse loop hits the end of the frame instead of spinning.
    def check(con: object) -> None:
        if isinstance(con, KafkaArray):
            element = con.element
            if isinstance(element, KafkaStruct):
                assert element.plain or element.flexible
            check(element)
        elif isinstance(con, KafkaStruct):
            for f in (*con.plain, *con.tagged):
                check(f.con)

    for key, version in all_versions():
        for request in (True, False):
            check(message_struct(APIS[key], version, request))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(frame: bytes) -> None:
    decodes_or_protocol_error(frame)


@FUZZ
@given(st.sampled_from(all_versions()), st.binary(max_size=200))
def test_random_body_after_valid_header(api: tuple[int, int], body: bytes) -> None:
    key, version = api
    decodes_or_protocol_error(struct.pack(">hhi", key, version, 1) + body)


@FUZZ
@given(st.sampled_from(VALID_FRAMES), st.data())
def test_truncated_frames(frame: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(ProtocolError):
        decode_request(frame[:cut])


@FUZZ
@given(st.sampled_from(VALID_FRAMES), st.data())
def test_bit_flipped_frames(frame: bytes, data: st.DataObject) -> None:
    flipped = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 8))):
        bit = data.draw(st.integers(0, len(frame) * 8 - 1))
        flipped[bit // 8] ^= 1 << (bit % 8)
    decodes_or_protocol_error(bytes(flipped))


@FUZZ
@given(st.sampled_from(all_versions()), st.binary(max_size=200))
def test_random_response_bodies(api: tuple[int, int], body: bytes) -> None:
    key, version = api
    with contextlib.suppress(ProtocolError):
        decode_response(key, version, body)


HUGE_LENGTHS = [
    b"\x7f\xff\xff\xff",  # int32 length / count 2^31-1
    b"\x7f\xff",  # int16 string length
    b"\xff\xff\xff\xff\x0f",  # varint 2^32-1
]


def test_huge_length_fields_never_allocate() -> None:
    # Splice a maximal length at every offset of a few frames (classic and flexible,
    # strings, bytes, records and arrays) and watch the allocation peak.
    frames = [
        encode_request(key, version, 1, sample(key, version, request=True))[4:]
        for key, version in [(0, 3), (0, 9), (1, 11), (1, 12), (3, 1), (3, 12), (11, 5), (11, 9)]
    ]
    tracemalloc.start()
    try:
        for frame in frames:
            for offset in range(8, len(frame)):
                for huge in HUGE_LENGTHS:
                    forged = frame[:offset] + huge + frame[offset + len(huge) :]
                    tracemalloc.reset_peak()
                    decodes_or_protocol_error(forged)
                    assert tracemalloc.get_traced_memory()[1] < 1 << 20, (frame, offset)
    finally:
        tracemalloc.stop()


def test_array_count_beyond_the_frame_is_rejected_before_parsing() -> None:
    # DeleteGroups v0 with 1 MiB of zeros: as many as 2^19 empty group names would
    # parse, so a count one above the remaining byte count must fail without a list.
    zeros = bytes(1 << 20)
    header = struct.pack(">hhih", 42, 0, 3, -1)
    tracemalloc.start()
    try:
        with pytest.raises(MalformedFrame, match="elements in"):
            decode_request(header + struct.pack(">i", len(zeros) + 1) + zeros)
        assert tracemalloc.get_traced_memory()[1] < 3 << 20  # the frame itself: 2 x 1 MiB
    finally:
        tracemalloc.stop()
    names = decode_request(header + struct.pack(">i", len(zeros) // 2) + zeros).body.groups_names
    assert len(names) == len(zeros) // 2
