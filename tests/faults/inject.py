"""Faults injected into a `cluster.Cluster`, restarting what they kill as `flexlog up` would."""

from __future__ import annotations

import signal
import time

from cluster import Cluster

RESTART_AFTER_S = 0.5  # the launcher's first restart backoff


def sigkill_and_restart(cluster: Cluster, role: str, name: str, holding_grants: bool = False,
                        restart_after_s: float = RESTART_AFTER_S) -> None:
    """SIGKILL process `name` and start it again restart_after_s later.

    holding_grants (a leaf sequencer): force the interleaving of issue 11 first. The
    root is paused while the leaf forwards order requests to it, then the leaf is
    paused and the root resumed: the root grants the forwarded requests, and the
    grants wait unread in the paused leaf's socket. The leaf is then SIGKILLed
    holding SNs the root has handed out and no replica has heard of.
    """
    if holding_grants:
        root = cluster.config.nodes[cluster.config.root].process
        cluster.kill(root, signal.SIGSTOP)
        try:
            time.sleep(0.3)  # appends keep coming: the leaf forwards them to the paused root
            cluster.kill(name, signal.SIGSTOP)
        finally:
            cluster.kill(root, signal.SIGCONT)
        time.sleep(0.3)  # the root grants them; the paused leaf never reads the grants
    cluster.kill(name, signal.SIGKILL)
    time.sleep(restart_after_s)
    cluster.start_process(role, name)
