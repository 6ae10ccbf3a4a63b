"""Which of gRPC core's two TCP transports a `flexlog` process uses.

Since grpcio 1.80, Python processes move their bytes through gRPC core's EventEngine: a
pool of `event_engine` threads reads and writes the sockets and hands each event to the
completion-queue thread that grpc.aio polls, which wakes the event loop. grpcio 1.85 still
ships the transport that preceded it, where the completion-queue thread does the reads and
writes itself, behind the two experiments below. Measured on this project's streams
(docs/performance.md, "gRPC's TCP transport"), the older one costs each side of a stream
about a third less CPU per message and per byte and a replica under load switches threads
about 60% less often, so every `flexlog` command selects it.

gRPC reads the choice from the environment once, when `grpc` is first imported, so this
must run before anything imports it; an operator who sets GRPC_EXPERIMENTS keeps theirs
(GRPC_EXPERIMENTS= with nothing selects grpcio's own default). A grpcio that no longer has
these experiments logs "Unknown experiment" once at start and runs its default transport.
"""

from __future__ import annotations

import os
import sys

ENV = "GRPC_EXPERIMENTS"
EXPERIMENTS = "-event_engine_client,-event_engine_listener"


def choose() -> bool:
    """Select the completion-queue transport for this process and its children; False when
    the environment already chose, or when grpc is imported already (too late to apply)."""
    if ENV in os.environ or "grpc" in sys.modules:
        return False
    os.environ[ENV] = EXPERIMENTS
    return True
