"""Kafka API handlers: one module per API family, each declaring the versions it serves.

docs/gateway.md indexes which module serves which API key.
"""

from flexlog.gateway.handlers import (  # noqa: F401  (importing registers the handlers)
    acl_admin,
    api_versions,
    client_quotas,
    configs,
    consumer_groups,
    consumer_protocol_groups,
    fetch,
    init_producer_id,
    metadata,
    offset_commit_fetch,
    partition_offsets,
    produce,
    replica_admin,
    sasl_authentication,
    topic_admin,
    transactions,
)
from flexlog.gateway.handlers.registry import ENDPOINTS, CloseConnection, Deferred, Endpoint, advertised

__all__ = ["ENDPOINTS", "CloseConnection", "Deferred", "Endpoint", "advertised"]
