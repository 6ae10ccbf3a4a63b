"""Kafka API handlers: one module per API family, each declaring the versions it serves."""

from flexlog.gateway.handlers import (  # noqa: F401  (importing registers the handlers)
    acls,
    api_versions,
    configs,
    fetch,
    groups,
    init_producer_id,
    metadata,
    offset_commit,
    offsets,
    produce,
    sasl,
    topic_admin,
)
from flexlog.gateway.handlers.registry import ENDPOINTS, CloseConnection, Deferred, Endpoint, advertised

__all__ = ["ENDPOINTS", "CloseConnection", "Deferred", "Endpoint", "advertised"]
