"""ApiVersions (18): what this gateway serves, derived from the handlers' declarations."""

from __future__ import annotations

from flexlog.gateway.broker import Broker
from flexlog.gateway.handlers.registry import Body, advertised, serves
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request


def unsupported_version_body() -> Body:
    """The v0 body answering an ApiVersions version we do not speak; the client retries lower."""
    return {"error_code": ErrorCode.UNSUPPORTED_VERSION, "api_keys": advertised()}


@serves(ApiKey.API_VERSIONS, 0, 4)
async def handle_api_versions(broker: Broker, request: Request) -> Body:
    return {"error_code": ErrorCode.NONE, "api_keys": advertised(), "throttle_time_ms": 0}
