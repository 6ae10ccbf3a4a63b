"""Prometheus metrics of the core processes.

Hot paths only bump plain counters that the processes keep anyway; the
collectors below turn them into metric families when Prometheus scrapes, so a
scrape costs work and an append does not. Histograms are observed per batch
(one stream message), never per entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from flexlog.core.replica import ReplicaServer
    from flexlog.core.sequencer import SequencerServer

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)

TREE_HOP = Histogram("flexlog_sequencer_tree_hop_seconds",
                     "Time from a node sending a forward batch to its parent until it is fully granted",
                     ["node"], buckets=LATENCY_BUCKETS)
FORWARD_BATCH = Histogram("flexlog_sequencer_forward_batch_requests",
                          "Order requests aggregated into one forward batch to the parent",
                          ["node"], buckets=SIZE_BUCKETS)
PREPARE_BATCH = Histogram("flexlog_replica_prepare_batch_seconds",
                          "Time to validate and prepare the entries of one append message",
                          ["replica"], buckets=LATENCY_BUCKETS)
COMMIT_BATCH = Histogram("flexlog_replica_commit_batch_seconds",
                         "Time to commit the grants of one sequencer message",
                         ["replica"], buckets=LATENCY_BUCKETS)
READ = Histogram("flexlog_replica_read_seconds", "Time to answer one read or range read (not waiting)",
                 ["replica"], buckets=LATENCY_BUCKETS)
ENTRIES_PER_MESSAGE = Histogram("flexlog_replica_append_message_entries",
                                "Entries carried by one append message from a client",
                                ["replica"], buckets=SIZE_BUCKETS)


def serve(address: str, port: int) -> None:
    """Expose /metrics on the host of the process's own address (0 disables)."""
    if port:
        start_http_server(port, addr=address.rpartition(":")[0])


class _Collector(Collector):
    def __init__(self, collect: Callable[[], Iterator[CounterMetricFamily | GaugeMetricFamily]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        return self._collect()


def register_sequencer(server: SequencerServer) -> None:
    def collect() -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        requests = CounterMetricFamily("flexlog_sequencer_order_requests",
                                       "Order requests this node assigned SNs to", labels=["node", "color"])
        records = CounterMetricFamily("flexlog_sequencer_records_ordered",
                                      "Records (SNs) this node assigned", labels=["node", "color"])
        ready = GaugeMetricFamily("flexlog_sequencer_node_ready",
                                  "1 once every shard of the node's region reported its tails",
                                  labels=["node"])
        for node_id, node in server.nodes.items():
            for color, n in node.requests_by_color.items():
                requests.add_metric([str(node_id), str(color)], n)
                records.add_metric([str(node_id), str(color)], node.records_by_color[color])
            ready.add_metric([str(node_id)], 1 if server.is_ready(node_id) else 0)
        attached = GaugeMetricFamily("flexlog_sequencer_attached_replicas",
                                     "Replica streams attached to this leaf, per shard", labels=["shard"])
        for shard, fan in server.fanouts.items():
            attached.add_metric([str(shard)], len(fan.queues))
        yield from (requests, records, ready, attached)

    REGISTRY.register(_Collector(collect))


_ENGINE_GAUGES = {
    "store_used_bytes": "Bytes of entries held by the storage engine's primary store (PM or memory)",
    "store_free_bytes": "Bytes the primary store can still take",
    "pm_used_bytes": "Bytes used in the persistent-memory pool",
    "pm_free_bytes": "Bytes free in the persistent-memory pool",
    "ssd_bytes": "Bytes held in SSD tier segment files",
    "last_checkpoint_seconds": "Duration of the last PM-to-SSD checkpoint",
}
_ENGINE_COUNTERS = {
    "cache_hits": "Reads served from the DRAM cache",
    "cache_misses": "Reads that missed the DRAM cache",
    "checkpoints": "PM-to-SSD checkpoints completed",
}
_REPLICA_COUNTERS = {
    "prepared": "Entries prepared",
    "committed": "Entries committed",
    "reads": "Read and range-read requests answered",
    "trims": "Trim requests applied",
    "repairs": "Entries copied from a peer because their prepare never arrived",
}


def register_replica(server: ReplicaServer) -> None:
    name = server.me.name

    def collect() -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        for key, text in _REPLICA_COUNTERS.items():
            fam = CounterMetricFamily(f"flexlog_replica_entries_{key}" if key in ("prepared", "committed")
                                      else f"flexlog_replica_{key}", text, labels=["replica"])
            fam.add_metric([name], server.stats[key])
            yield fam
        attached = GaugeMetricFamily("flexlog_replica_attached",
                                     "1 while the replica's stream to its leaf sequencer is up",
                                     labels=["replica"])
        attached.add_metric([name], 1 if server.attached else 0)
        yield attached
        pending = GaugeMetricFamily("flexlog_replica_prepared_uncommitted_entries",
                                    "Entries prepared and not yet committed", labels=["replica"])
        pending.add_metric([name], server.prepared_count)
        yield pending
        stats = server.engine_stats()
        for key, text in _ENGINE_GAUGES.items():
            if key in stats:
                g = GaugeMetricFamily(f"flexlog_replica_{key}", text, labels=["replica"])
                g.add_metric([name], stats[key])
                yield g
        for key, text in _ENGINE_COUNTERS.items():
            if key in stats:
                c = CounterMetricFamily(f"flexlog_replica_{key}", text, labels=["replica"])
                c.add_metric([name], stats[key])
                yield c

    REGISTRY.register(_Collector(collect))
