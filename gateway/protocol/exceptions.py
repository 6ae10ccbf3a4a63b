"""Exceptions raised by the codec and the framer.

Every failure caused by bytes a peer sent is a ``ProtocolError`` subclass, so the
connection layer needs exactly one ``except`` clause to stay alive or close cleanly.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class for everything a malformed or unexpected peer can trigger."""


class FrameTooLarge(ProtocolError):
    """The 4-byte size prefix is negative or above the configured maximum."""

    def __init__(self, size: int, max_frame_bytes: int) -> None:
        super().__init__(f"frame size {size} outside [0, {max_frame_bytes}]")
        self.size = size
        self.max_frame_bytes = max_frame_bytes


class MalformedFrame(ProtocolError):
    """The frame does not decode; ``correlation_id`` is set once the header was read."""

    def __init__(self, message: str, correlation_id: int | None = None) -> None:
        super().__init__(message)
        self.correlation_id = correlation_id


class UnknownApiKey(ProtocolError):
    """The header names an API key this codec has no schema for."""

    def __init__(self, api_key: int, api_version: int, correlation_id: int) -> None:
        super().__init__(f"unknown api key {api_key} (version {api_version})")
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id


class UnsupportedVersion(ProtocolError):
    """A known API at a version outside ``SUPPORTED_VERSIONS``.

    ApiVersions must still be answered (a v0 body with UNSUPPORTED_VERSION), which is
    why the correlation id travels with the exception.
    """

    def __init__(self, api_key: int, api_version: int, correlation_id: int) -> None:
        super().__init__(f"api key {api_key} version {api_version} is not supported")
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id


class EncodeError(ValueError):
    """A body handed to an encoder does not fit the schema (a bug on our side)."""
