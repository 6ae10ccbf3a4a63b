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

from construct import Compiled, ConstructError

from .exceptions import EncodeError, MalformedFrame, UnknownApiKey, UnsupportedVersion
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
from .wire import ChunkWriter, FrameInput, Sink

_SIZE = struct.Struct(">i")
# What a truncated or corrupt body can raise from inside the generated parsers.
_DECODE_FAILURES = (MalformedFrame, struct.error, UnicodeDecodeError, ConstructError)
_ENCODE_FAILURES = (struct.error, TypeError, AttributeError, KeyError, ConstructError)


@dataclass(frozen=True, slots=True)
class Request:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Response:
    api_key: int
    api_version: int
    correlation_id: int
    body: dict[str, Any]


_compiled: dict[tuple[int, int, bool], Compiled] = {}


def message_codec(api_key: int, api_version: int, request: bool) -> Compiled:
    """The compiled construct for one message, built on first use.

    Compiling all ~350 (key, version, direction) combinations up front would cost
    seconds at import; a connection only ever touches a handful.
    """
    key = (api_key, api_version, request)
    codec = _compiled.get(key)
    if codec is None:
        codec = message_struct(APIS[api_key], api_version, request).compile()
        _compiled[key] = codec
    return codec


def _check_version(api_key: int, api_version: int, correlation_id: int) -> None:
    api = APIS.get(api_key)
    if api is None:
        raise UnknownApiKey(api_key, api_version, correlation_id)
    low, high = api.versions
    if not low <= api_version <= high:
        raise UnsupportedVersion(api_key, api_version, correlation_id)


def decode_request(frame: bytes) -> Request:
    if len(frame) < REQUEST_HEADER_FIXED.size:
        raise MalformedFrame(f"request of {len(frame)} bytes is shorter than a header")
    api_key, api_version, correlation_id = REQUEST_HEADER_FIXED.unpack_from(frame)
    _check_version(api_key, api_version, correlation_id)
    codec = message_codec(api_key, api_version, True)
    io = FrameInput(frame)
    io.seek(REQUEST_HEADER_FIXED.size)
    try:
        client_id = read_request_header_tail(io, request_header_version(api_key, api_version))
        body = codec.parsefunc(io, None)
    except _DECODE_FAILURES as exc:
        raise MalformedFrame(
            f"malformed api key {api_key} v{api_version} request: {exc}", correlation_id
        ) from exc
    return Request(api_key, api_version, correlation_id, client_id, body)


def decode_response(api_key: int, api_version: int, frame: bytes) -> Response:
    """Decode a response frame; the caller knows what it asked for."""
    _check_version(api_key, api_version, -1)
    codec = message_codec(api_key, api_version, False)
    io = FrameInput(frame)
    try:
        correlation_id = read_response_header(io, response_header_version(api_key, api_version))
        body = codec.parsefunc(io, None)
    except _DECODE_FAILURES as exc:
        raise MalformedFrame(f"malformed api key {api_key} v{api_version} response: {exc}") from exc
    return Response(api_key, api_version, correlation_id, body)


def _frame(
    api_key: int,
    api_version: int,
    request: bool,
    write_header: Callable[[Sink], None],
    body: dict[str, Any],
) -> bytes:
    api = APIS.get(api_key)
    if api is None or not api.versions[0] <= api_version <= api.versions[1]:
        raise EncodeError(f"cannot encode api key {api_key} version {api_version}")
    codec = message_codec(api_key, api_version, request)
    out = ChunkWriter()
    out.write(b"")  # the size prefix, known once the body is built
    write_header(out)
    try:
        codec.buildfunc(body, out, None)
    except _ENCODE_FAILURES as exc:
        raise EncodeError(f"api key {api_key} v{api_version}: {exc!r}") from exc
    out[0] = _SIZE.pack(sum(map(len, out)))
    return out.getvalue()


def encode_response(
    api_key: int, api_version: int, correlation_id: int, body: dict[str, Any]
) -> bytes:
    """A whole response frame (size prefix, header of the right version, body)."""
    header_version = response_header_version(api_key, api_version)
    return _frame(
        api_key,
        api_version,
        False,
        lambda io: write_response_header(io, header_version, correlation_id),
        body,
    )


def encode_request(
    api_key: int,
    api_version: int,
    correlation_id: int,
    body: dict[str, Any],
    client_id: str | None = "flexlog",
) -> bytes:
    """A whole request frame; the gateway only needs this for tests and tools."""
    header_version = request_header_version(api_key, api_version)
    return _frame(
        api_key,
        api_version,
        True,
        lambda io: write_request_header(
            io, header_version, api_key, api_version, correlation_id, client_id
        ),
        body,
    )
