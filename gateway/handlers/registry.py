"""Which API keys and versions the gateway serves, declared by each handler itself.

A handler module decorates its handler with ``@serves(key, low, high)``; the
ApiVersions answer is computed from these declarations (clamped to what the
codec can encode), so a range is never written down twice. A new family
(transactions, say) adds a module and its import in ``handlers/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from flexlog.gateway.broker import Broker
from flexlog.gateway.protocol import SUPPORTED_VERSIONS, Request

Body = dict[str, Any]


class Deferred:
    """A response still on its way: the handler has sent its writes to the log, in order.

    The connection may start on its next request while these complete; responses
    still leave in request order. Produce uses it so one connection keeps several
    appends in flight, as a pipelining client expects.
    """

    __slots__ = ("body",)

    def __init__(self, body: Awaitable[Body | None]) -> None:
        self.body = body


Handler = Callable[[Broker, Request], Awaitable[Body | Deferred | None]]


class CloseConnection(Exception):
    """The handler wants the connection closed instead of answered (Kafka's acks=0 errors)."""


@dataclass(frozen=True)
class Endpoint:
    api_key: int
    min_version: int
    max_version: int
    handle: Handler

    def accepts(self, version: int) -> bool:
        return self.min_version <= version <= self.max_version


ENDPOINTS: dict[int, Endpoint] = {}


def serves(api_key: int, min_version: int, max_version: int) -> Callable[[Handler], Handler]:
    """Register the decorated coroutine as the handler of api_key in [min_version, max_version].

    The handler returns the response body, None when no response is due, or a
    Deferred body once the order-sensitive part of its work is done.
    """
    codec_low, codec_high = SUPPORTED_VERSIONS[api_key]
    low, high = max(min_version, codec_low), min(max_version, codec_high)
    if low > high:
        raise ValueError(f"api key {api_key}: the codec cannot encode versions "
                         f"{min_version}-{max_version}")

    def register(handler: Handler) -> Handler:
        if api_key in ENDPOINTS:
            raise ValueError(f"api key {api_key} has two handlers")
        ENDPOINTS[api_key] = Endpoint(api_key, low, high, handler)
        return handler

    return register


def advertised() -> list[dict[str, int]]:
    """ApiVersions' api_keys array."""
    return [{"api_key": e.api_key, "min_version": e.min_version, "max_version": e.max_version}
            for e in sorted(ENDPOINTS.values(), key=lambda e: e.api_key)]
