"""Every API, every version, both directions: encode a body, decode it, get it back."""

from __future__ import annotations

import pytest
from protocol_samples import all_versions, sample

from flexlog.gateway.protocol import (
    API_NAMES,
    SUPPORTED_VERSIONS,
    ApiKey,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    messages,
)
from flexlog.gateway.protocol.messages import APIS
from flexlog.gateway.protocol.schema import message_struct

CASES = [
    pytest.param(key, version, id=f"{API_NAMES[key]}-v{version}") for key, version in all_versions()
]


@pytest.mark.parametrize(("key", "version"), CASES)
@pytest.mark.parametrize("nulls", [False, True], ids=["values", "nulls"])
def test_request_round_trip(key: int, version: int, nulls: bool) -> None:
    body = sample(key, version, request=True, nulls=nulls)
    frame = encode_request(key, version, 12345, body, client_id="client-é")
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    request = decode_request(frame[4:])
    assert (request.api_key, request.api_version) == (key, version)
    assert request.correlation_id == 12345
    assert request.client_id == "client-é"
    assert request.body == body
    assert encode_request(key, version, 12345, request.body, client_id="client-é") == frame


@pytest.mark.parametrize(("key", "version"), CASES)
@pytest.mark.parametrize("nulls", [False, True], ids=["values", "nulls"])
def test_response_round_trip(key: int, version: int, nulls: bool) -> None:
    body = sample(key, version, request=False, nulls=nulls)
    frame = encode_response(key, version, -5, body)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    response = decode_response(key, version, frame[4:])
    assert response.correlation_id == -5
    assert response.body == body
    assert encode_response(key, version, -5, response.body) == frame


@pytest.mark.parametrize(("key", "version"), CASES)
def test_empty_body_takes_defaults(key: int, version: int) -> None:
    for request in (True, False):
        struct = message_struct(APIS[key], version, request)
        if request:
            decoded = decode_request(encode_request(key, version, 1, {})[4:]).body
        else:
            decoded = decode_response(key, version, encode_response(key, version, 1, {})[4:]).body
        assert set(decoded) == {f.name for f in struct.plain} | {f.name for f in struct.tagged}


def test_null_client_id_round_trips() -> None:
    frame = encode_request(ApiKey.METADATA, 9, 1, {}, client_id=None)
    assert decode_request(frame[4:]).client_id is None


def test_supported_versions_cover_the_brief() -> None:
    assert SUPPORTED_VERSIONS == {
        0: (0, 11), 1: (4, 17), 2: (1, 9), 3: (0, 12), 8: (1, 9), 9: (1, 9), 10: (0, 6),
        11: (0, 9), 12: (0, 4), 13: (0, 5), 14: (0, 5), 15: (0, 5), 16: (0, 5), 17: (0, 1),
        18: (0, 4), 19: (0, 7), 20: (0, 6), 21: (0, 2), 22: (0, 5), 23: (0, 4), 29: (0, 3),
        30: (0, 3), 31: (0, 3), 32: (0, 4), 34: (0, 2), 35: (0, 4),
        36: (0, 2), 37: (0, 3), 42: (0, 2), 43: (0, 2), 44: (0, 1), 45: (0, 0), 46: (0, 0),
        48: (0, 1), 49: (0, 1), 60: (0, 1), 68: (0, 1), 69: (0, 0),
        24: (0, 5), 25: (0, 4), 26: (0, 4), 28: (0, 4), 61: (0, 0), 65: (0, 0), 66: (0, 1),
    }  # fmt: skip
    assert {int(k) for k in ApiKey} == set(APIS)
    assert all(API_NAMES[k] for k in APIS)


def test_api_keys_are_named_like_their_definitions() -> None:
    """ApiKey.JOIN_GROUP is the key of the definition bound to JOIN_GROUP: grep finds one from the other."""
    for key in ApiKey:
        assert getattr(messages, key.name) is APIS[key]
