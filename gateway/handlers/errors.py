"""FlexLog errors as the Kafka error codes a client knows how to react to."""

from __future__ import annotations

from flexlog.core.errors import (
    Filled,
    FlexLogError,
    InvalidEntry,
    StoreFull,
    Timeout,
    TooLarge,
    Trimmed,
    Unavailable,
    UnknownColor,
)
from flexlog.gateway.protocol import ErrorCode

_CODES: tuple[tuple[type[FlexLogError], ErrorCode], ...] = (
    (UnknownColor, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
    (Trimmed, ErrorCode.OFFSET_OUT_OF_RANGE),
    (Timeout, ErrorCode.REQUEST_TIMED_OUT),
    # Retriable on the client side, as a replica that is down should be.
    (Unavailable, ErrorCode.NOT_ENOUGH_REPLICAS),
    # The SN the batch was given was filled: nothing was stored, so a retry is safe.
    (Filled, ErrorCode.NOT_ENOUGH_REPLICAS),
    (InvalidEntry, ErrorCode.CORRUPT_MESSAGE),
    (TooLarge, ErrorCode.MESSAGE_TOO_LARGE),
    (StoreFull, ErrorCode.KAFKA_STORAGE_ERROR),
)


def kafka_error(exc: FlexLogError) -> ErrorCode:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return ErrorCode.UNKNOWN_SERVER_ERROR
