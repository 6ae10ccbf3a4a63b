"""Kafka API handlers: one module per API family, each declaring the versions it serves."""

from flexlog.gateway.handlers import (  # noqa: F401  (importing registers the handlers)
    api_versions,
    configs,
    fetch,
    metadata,
    offsets,
    produce,
    topic_admin,
)
from flexlog.gateway.handlers.registry import ENDPOINTS, CloseConnection, Endpoint, advertised

__all__ = ["ENDPOINTS", "CloseConnection", "Endpoint", "advertised"]
