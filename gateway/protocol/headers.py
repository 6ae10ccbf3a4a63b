"""Request and response headers, and which header version each API version uses.

Request header v0 is (api_key, api_version, correlation_id), v1 adds client_id and
v2 adds a tagged-field buffer. client_id stays an int16-length nullable string in
v2: the header schema opts that one field out of flexible encoding. Response header
v0 is the correlation id, v1 adds tagged fields.
"""

from __future__ import annotations

import struct

from .messages import APIS, ApiKey
from .wire import FrameInput, Sink, read_nullable_string, skip_tags, write_nullable_string

REQUEST_HEADER_FIXED = struct.Struct(">hhi")
RESPONSE_HEADER_FIXED = struct.Struct(">i")


def request_header_version(api_key: int, api_version: int) -> int:
    # Header v0 only ever served ControlledShutdown v0, which the gateway lacks.
    return 2 if APIS[api_key].is_flexible(api_version) else 1


def response_header_version(api_key: int, api_version: int) -> int:
    # ApiVersions stays on v0 so a client can read the reply before it knows which
    # versions (and so which header) the broker speaks.
    if api_key == ApiKey.API_VERSIONS:
        return 0
    return 1 if APIS[api_key].is_flexible(api_version) else 0


def read_request_header_tail(io: FrameInput, header_version: int) -> str | None:
    """Read what follows the fixed 8 bytes; returns the client id."""
    client_id = read_nullable_string(io) if header_version >= 1 else None
    if header_version >= 2:
        skip_tags(io)
    return client_id


def write_request_header(
    io: Sink,
    header_version: int,
    api_key: int,
    api_version: int,
    correlation_id: int,
    client_id: str | None,
) -> None:
    io.write(REQUEST_HEADER_FIXED.pack(api_key, api_version, correlation_id))
    if header_version >= 1:
        write_nullable_string(io, client_id)
    if header_version >= 2:
        io.write(b"\x00")


def read_response_header(io: FrameInput, header_version: int) -> int:
    (correlation_id,) = RESPONSE_HEADER_FIXED.unpack(io.read(4))
    if header_version >= 1:
        skip_tags(io)
    return correlation_id


def write_response_header(io: Sink, header_version: int, correlation_id: int) -> None:
    io.write(RESPONSE_HEADER_FIXED.pack(correlation_id))
    if header_version >= 1:
        io.write(b"\x00")
