"""Errors of the native API, and the codes that carry them across gRPC."""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    OK = 0
    UNKNOWN_COLOR = 1
    TRIMMED = 2
    NOT_FOUND = 3
    TIMEOUT = 4
    UNAVAILABLE = 5
    INVALID_ENTRY = 6
    TOO_LARGE = 7
    STORE_FULL = 8
    UNKNOWN_OWNER = 9
    COLOR_EXISTS = 10
    INTERNAL = 11
    STALE_EPOCH = 12  # a message sent under an older view of the shard
    FILLED = 13  # the SN holds a fill marker: ordered once, its entry lost for good


class FlexLogError(Exception):
    code = Code.INTERNAL


class UnknownColor(FlexLogError):
    code = Code.UNKNOWN_COLOR


class ColorExists(FlexLogError):
    code = Code.COLOR_EXISTS


class Trimmed(FlexLogError):
    """The SN was garbage-collected by trim."""

    code = Code.TRIMMED


class NotFound(FlexLogError):
    """No record has that SN yet (beyond the tail)."""

    code = Code.NOT_FOUND


class Timeout(FlexLogError):
    code = Code.TIMEOUT


class Unavailable(FlexLogError):
    """A replica or sequencer the call needs is not reachable."""

    code = Code.UNAVAILABLE


class InvalidEntry(FlexLogError):
    """The payload is not a well-formed RecordBatch v2."""

    code = Code.INVALID_ENTRY


class TooLarge(FlexLogError):
    code = Code.TOO_LARGE


class StoreFull(FlexLogError):
    code = Code.STORE_FULL


class UnknownOwner(FlexLogError):
    code = Code.UNKNOWN_OWNER


class StaleEpoch(FlexLogError):
    """The sender's view of the shard is older than the receiver's; it retries under the new one."""

    code = Code.STALE_EPOCH


class Filled(FlexLogError):
    """The SN was ordered but its entry was lost before any replica stored it; the log holds
    a fill marker there so readers move on. For an append: it did not happen, append again."""

    code = Code.FILLED


_BY_CODE: dict[int, type[FlexLogError]] = {
    cls.code: cls
    for cls in (
        UnknownColor, ColorExists, Trimmed, NotFound, Timeout, Unavailable,
        InvalidEntry, TooLarge, StoreFull, UnknownOwner, StaleEpoch, Filled,
    )
}


def from_code(code: int, message: str) -> FlexLogError:
    return _BY_CODE.get(code, FlexLogError)(message)
