"""The public encode/decode functions: bytes in, ``Request``/``Response`` out, and back.

Frames handed to the decoders are what ``FrameReader`` yields: one message without
its 4-byte size prefix. The encoders return complete frames, prefix included, ready
for ``transport.write``.

Bodies are dicts with snake_case keys; nested structs are dicts and arrays are
lists. Decoded bodies are ``construct.Container``s (dicts that also allow attribute
access). When building, a missing key takes the schema default (0, "", b"", [],
or Kafka's declared default such as -1), an explicit ``None`` means null, and
keys that do not exist in the requested version are ignored.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .exceptions import (
    EncodeError,
    MalformedFrame,
    ProtocolError,
    UnknownApiKey,
    UnsupportedVersion,
)
from .headers import (
    REQUEST_HEADER_FIXED,
    read_request_header_tail,
    read_response_header,
    request_header_version,
    response_header_version,
    write_request_header,
    write_response_header,
)
from .messages import APIS
from .schema import message_struct
from .wire import ChunkWriter, FrameInput, Sink, frame_input

_SIZE = struct.Struct(">i")
# What a truncated or corrupt body can raise from inside the generated parsers
# (struct.error: a fixed-size read came up short).
_DECODE_FAILURES = (MalformedFrame, struct.error, UnicodeDecodeError)
# What a body of the wrong shape raises in the builders (an int too wide, a str
# where a list belongs, a list element that is not a dict).
_ENCODE_FAILURES = (struct.error, TypeError, AttributeError)


# Not frozen: a frozen dataclass's __init__ costs half a microsecond per request.
@dataclass(slots=True)
class Request:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: dict[str, Any]


@dataclass(slots=True)
class Response:
    api_key: int
    api_version: int
    correlation_id: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Message:
    """One compiled (api key, version, direction) and the header version it travels with."""

    header_version: int
    parse: Callable[[FrameInput, None], Any]
    build: Callable[[dict[str, Any], Sink, None], Any]


_messages: dict[tuple[int, int, bool], _Message] = {}


def _message(api_key: int, api_version: int, request: bool) -> _Message | None:
    """The compiled message, built on first use; None if the codec lacks it.

    Compiling all 310 (key, version, direction) combinations up front would add a
    quarter of a second to every import; a connection only touches a handful.
    """
    key = (api_key, api_version, request)
    message = _messages.get(key)
    if message is None:
        api = APIS.get(api_key)
        if api is None or not api.versions[0] <= api_version <= api.versions[1]:
            return None
        compiled = message_struct(api, api_version, request).compile()
        header_version = (request_header_version if request else response_header_version)(
            api_key, api_version
        )
        message = _Message(header_version, compiled.parsefunc, compiled.buildfunc)
        _messages[key] = message
    return message


def _unsupported(api_key: int, api_version: int, correlation_id: int) -> ProtocolError:
    if api_key not in APIS:
        return UnknownApiKey(api_key, api_version, correlation_id)
    return UnsupportedVersion(api_key, api_version, correlation_id)


def decode_request(frame: bytes) -> Request:
    if len(frame) < REQUEST_HEADER_FIXED.size:
        raise MalformedFrame(f"request of {len(frame)} bytes is shorter than a header")
    api_key, api_version, correlation_id = REQUEST_HEADER_FIXED.unpack_from(frame)
    message = _message(api_key, api_version, True)
    if message is None:
        raise _unsupported(api_key, api_version, correlation_id)
    io = frame_input(frame)
    io.seek(REQUEST_HEADER_FIXED.size)
    try:
        client_id = read_request_header_tail(io, message.header_version)
        body = message.parse(io, None)
    except _DECODE_FAILURES as exc:
        raise MalformedFrame(
            f"malformed api key {api_key} v{api_version} request: {exc}", correlation_id
        ) from exc
    return Request(api_key, api_version, correlation_id, client_id, body)


def decode_response(api_key: int, api_version: int, frame: bytes) -> Response:
    """Decode a response frame; the caller knows what it asked for."""
    message = _message(api_key, api_version, False)
    if message is None:
        raise _unsupported(api_key, api_version, -1)
    io = frame_input(frame)
    try:
        correlation_id = read_response_header(io, message.header_version)
        body = message.parse(io, None)
    except _DECODE_FAILURES as exc:
        raise MalformedFrame(f"malformed api key {api_key} v{api_version} response: {exc}") from exc
    return Response(api_key, api_version, correlation_id, body)


def _encode(
    api_key: int,
    api_version: int,
    request: bool,
    correlation_id: int,
    client_id: str | None,
    body: dict[str, Any],
) -> bytes:
    message = _message(api_key, api_version, request)
    if message is None:
        raise EncodeError(f"cannot encode api key {api_key} version {api_version}")
    out = ChunkWriter()
    out.write(b"")  # the size prefix, known once the body is built
    if request:
        write_request_header(
            out, message.header_version, api_key, api_version, correlation_id, client_id
        )
    else:
        write_response_header(out, message.header_version, correlation_id)
    try:
        message.build(body, out, None)
    except _ENCODE_FAILURES as exc:
        raise EncodeError(f"api key {api_key} v{api_version}: {exc!r}") from exc
    out[0] = _SIZE.pack(sum(map(len, out)))
    return out.getvalue()


def encode_response(
    api_key: int, api_version: int, correlation_id: int, body: dict[str, Any]
) -> bytes:
    """A whole response frame (size prefix, header of the right version, body)."""
    return _encode(api_key, api_version, False, correlation_id, None, body)


def encode_request(
    api_key: int,
    api_version: int,
    correlation_id: int,
    body: dict[str, Any],
    client_id: str | None = "flexlog",
) -> bytes:
    """A whole request frame; the gateway only needs this for tests and tools."""
    return _encode(api_key, api_version, True, correlation_id, client_id, body)
