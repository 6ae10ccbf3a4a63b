"""What every handler shares: the log client, topic metadata, the gateways as brokers.

A gateway holds no data of its own: partitions live in FlexLog colors, topic
metadata in ``__topics``, the log starts of ordered topics' partitions in
``__log_starts``. Caches here (log start offsets, the timestamp index) are
rebuilt from the log after a restart.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from flexlog.core.client import FlexLogClient
from flexlog.core.config import ClusterConfig, GatewayConfig
from flexlog.core.errors import FlexLogError
from flexlog.gateway import session
from flexlog.gateway.acls import AclStore
from flexlog.gateway.groups import Groups
from flexlog.gateway.idempotence import Idempotence
from flexlog.gateway.partition_starts import PartitionStarts
from flexlog.gateway.producer_ids import ProducerIdAllocator
from flexlog.gateway.quotas import QuotaStore, Throttler
from flexlog.gateway.timestamps import TimestampIndex
from flexlog.gateway.topics import TopicStore
from flexlog.gateway.transactions import Transactions
from flexlog.gateway.users import UserStore

log = logging.getLogger("flexlog.gateway")

CLUSTER_ID = "flexlog-kafka-gateway"
READY_RETRY_S = 0.5


@dataclass(frozen=True)
class BrokerAddress:
    node_id: int
    host: str
    port: int


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


class Broker:
    def __init__(self, config: ClusterConfig, me: GatewayConfig, client: FlexLogClient) -> None:
        self.config = config
        self.me = me
        self.client = client
        self.topics = TopicStore(client, config)
        self.partition_starts = PartitionStarts(client)
        self.timestamps = TimestampIndex(client, self.partition_starts.start)
        # Per listener name: clients are told the addresses of the listener they connected through.
        self.listener_brokers = {
            lis.name: [BrokerAddress(g.node_id, *split_address(next(
                x.advertised for x in g.listeners if x.name == lis.name))) for g in config.gateways]
            for lis in me.listeners}
        # The same on every listener: background tasks (retention) ask who leads outside any
        # connection, and a cluster need not have the PLAINTEXT listener their session defaults to.
        self.node_ids = [g.node_id for g in config.gateways]
        # Admin clients send their requests to the controller, which must be a real broker.
        self.controller_id = min(self.node_ids, default=me.node_id)
        self.groups = Groups(client, config, me,
                             lambda: {t.name: t.partitions for t in self.topics.all()})
        self.producer_ids = ProducerIdAllocator(client, config, me.name)
        self.idempotence = Idempotence(client)
        self.transactions = Transactions(client, config, me, self.topics, self.groups.offsets,
                                         self.producer_ids, self.leader, self.groups.coordinator_id)
        self.users = UserStore(client, config)
        self.acls = AclStore(client, config)
        self.quotas = QuotaStore(client)
        self.throttler = Throttler(self.quotas)
        self.log_starts: dict[int, int] = {}  # color id -> last known log start offset
        self.ready = asyncio.Event()

    @property
    def brokers(self) -> list[BrokerAddress]:
        """Every gateway as the current connection's listener advertises it."""
        return self.listener_brokers[session.get().listener.name]

    def leader(self, partition: int) -> int:
        """The gateway a partition is assigned to (clients send its produce and fetch there)."""
        return self.node_ids[partition % len(self.node_ids)]

    def leads(self, partition: int) -> bool:
        return self.leader(partition) == self.me.node_id

    async def open(self) -> None:
        """Wait for the cluster, then load topic metadata; retries until it works."""
        while True:
            try:
                await self.client.wait_ready(timeout_s=30.0)
                await self.topics.open()
                await self.partition_starts.open()
                await self.groups.offsets.open()
                await self.users.open()
                await self.users.ensure_decoy_secret()
                await self.acls.open()
                await self.quotas.open()
                # Before serving: the LSO of a partition this gateway leads comes from it.
                await self.transactions.open()
                break
            except FlexLogError as exc:
                log.warning("cluster not ready for gateway %s yet: %s", self.me.name, exc)
                await asyncio.sleep(READY_RETRY_S)
        self.ready.set()
