"""DescribeAcls, CreateAcls and DeleteAcls against bytes written out by hand from Kafka's definitions."""

from __future__ import annotations

import struct

from flexlog.gateway.protocol import ApiKey, decode_request, decode_response, encode_response


def _string(text: str) -> bytes:
    return struct.pack(">h", len(text)) + text.encode()


def _compact(text: str) -> bytes:
    return bytes([len(text) + 1]) + text.encode()


def _request(key: int, version: int, header_version: int, body: bytes) -> bytes:
    header = struct.pack(">hhi", key, version, 7) + _string("c")
    if header_version == 2:
        header += b"\x00"  # no header tags
    return header + body


def test_create_acls_v1_request_has_a_pattern_type() -> None:
    body = (struct.pack(">i", 1) + b"\x02" + _string("orders-") + b"\x04" + _string("User:bob")
            + _string("*") + b"\x04" + b"\x03")
    request = decode_request(_request(ApiKey.CREATE_ACLS, 1, 1, body))
    assert request.body["creations"] == [{
        "resource_type": 2, "resource_name": "orders-", "resource_pattern_type": 4,
        "principal": "User:bob", "host": "*", "operation": 4, "permission_type": 3}]


def test_create_acls_v0_has_no_pattern_type() -> None:
    body = (struct.pack(">i", 1) + b"\x03" + _string("g") + _string("User:bob") + _string("*")
            + b"\x03\x03")
    creation = decode_request(_request(ApiKey.CREATE_ACLS, 0, 1, body)).body["creations"][0]
    assert "resource_pattern_type" not in creation
    assert creation["resource_name"] == "g"


def test_describe_acls_v2_request_is_flexible_with_null_filters() -> None:
    body = b"\x02" + b"\x00" + b"\x01" + b"\x00" + b"\x00" + b"\x01" + b"\x01" + b"\x00"
    request = decode_request(_request(ApiKey.DESCRIBE_ACLS, 2, 2, body))
    assert request.body["resource_type_filter"] == 2
    assert request.body["resource_name_filter"] is None
    assert request.body["principal_filter"] is None
    assert request.body["pattern_type_filter"] == 1


def test_describe_acls_v3_response_bytes() -> None:
    frame = encode_response(ApiKey.DESCRIBE_ACLS, 3, 9, {
        "throttle_time_ms": 0, "error_code": 0, "error_message": None,
        "resources": [{"resource_type": 2, "resource_name": "t", "pattern_type": 3,
                       "acls": [{"principal": "User:a", "host": "*", "operation": 3,
                                 "permission_type": 3}]}]})
    expected_body = (struct.pack(">ih", 0, 0) + b"\x00" + b"\x02" + b"\x02" + _compact("t") + b"\x03"
                     + b"\x02" + _compact("User:a") + _compact("*") + b"\x03\x03" + b"\x00"
                     + b"\x00" + b"\x00")
    # Flexible responses have header v1: correlation id and an empty tag buffer.
    assert frame[4:] == struct.pack(">i", 9) + b"\x00" + expected_body
    assert decode_response(ApiKey.DESCRIBE_ACLS, 3, frame[4:]).body["resources"][0]["acls"][0][
        "principal"] == "User:a"


def test_delete_acls_v0_response_omits_pattern_type() -> None:
    frame = encode_response(ApiKey.DELETE_ACLS, 0, 1, {"filter_results": [{"matching_acls": [
        {"resource_type": 2, "resource_name": "t", "pattern_type": 4, "principal": "User:a",
         "host": "*", "operation": 3, "permission_type": 3}]}]})
    body = frame[8:]
    assert body == (struct.pack(">ii", 0, 1) + struct.pack(">h", 0) + struct.pack(">h", -1)
                    + struct.pack(">i", 1) + struct.pack(">h", 0) + struct.pack(">h", -1) + b"\x02"
                    + _string("t") + _string("User:a") + _string("*") + b"\x03\x03")
