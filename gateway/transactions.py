"""The asyncio shell around transactions: the coordinator's requests, end markers, the LSO.

Every gateway folds ``__transaction_state`` (``transaction_state``) and follows
it. Three jobs share that fold:

- **Coordinator** of the transactional ids that hash to this gateway (as groups
  do): it decides with ``transaction_coordinator`` under a per-id lock, appends
  the new state, then answers. It also aborts expired transactions and marks a
  preparing one complete once every marker is written.
- **Partition leader**: when a transaction it has partitions in is preparing,
  it appends the COMMIT or ABORT control batch to each of them and records the
  marker (with the aborted range, for an abort). The log keeps one client's
  appends to a color in submission order, and the produce path admits a
  transactional batch only while the transaction is ongoing, so the marker is
  stored after every batch of the transaction on that partition.
- **Group coordinator**: the same for offsets committed in a transaction
  (``committed_offsets`` keeps them pending until the end record).

A partition's last stable offset is the first offset of its oldest transaction
whose marker is not written yet. A leader that restarts folds the log before it
serves, and the state of every open transaction is in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from flexlog.core import record_batch
from flexlog.core.client import FlexLogClient
from flexlog.core.config import ClusterConfig, GatewayConfig
from flexlog.core.errors import FlexLogError, UnknownColor
from flexlog.core.event_log import EventLog, json_record
from flexlog.gateway import transaction_coordinator as decide
from flexlog.gateway.committed_offsets import OffsetStore
from flexlog.gateway.producer_ids import ProducerIdAllocator
from flexlog.gateway.protocol import ErrorCode
from flexlog.gateway.topics import TopicStore
from flexlog.gateway.transaction_state import (
    TransactionState,
    Txn,
    TxnPartition,
    TxnStatus,
    group_target,
    partition_target,
)

log = logging.getLogger("flexlog.gateway.transactions")

TRANSACTIONS_COLOR = "__transaction_state"
SNAPSHOT_EVERY_RECORDS = 10_000
RETRY_S = 1.0
UPKEEP_INTERVAL_S = 30.0
SETTLE_WAIT_S = 2.0


@dataclass(frozen=True)
class InitResult:
    error: ErrorCode
    producer_id: int = -1
    epoch: int = -1


class Transactions:
    def __init__(self, client: FlexLogClient, config: ClusterConfig, me: GatewayConfig,
                 topics: TopicStore, offsets: OffsetStore, producer_ids: ProducerIdAllocator,
                 leader: Callable[[int], int], coordinator: Callable[[str], int]) -> None:
        """leader: the gateway node id leading a partition index; coordinator: the one
        coordinating a transactional id or group id."""
        self.client = client
        self.config = config
        self.me = me
        self.topics = topics
        self.offsets = offsets
        self.producer_ids = producer_ids
        self.leader = leader
        self.coordinator = coordinator
        self.state = TransactionState()
        self.log = EventLog(client, self.state, TRANSACTIONS_COLOR, on_change=self._changed_async)
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._changed = asyncio.Event()
        self._work = asyncio.Event()
        self._marking: set[tuple[str, int, int, str]] = set()
        self._markers: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references
        # Transactional batches (or offset commits) between their check and their submission,
        # per (target, producer): the target's marker waits for them.
        self._admitting: dict[tuple[str, int], int] = defaultdict(int)
        self._admitted = asyncio.Event()

    @staticmethod
    def now_ms() -> int:
        # Wall time: a transaction's start is compared with it after a coordinator restart.
        return int(time.time() * 1000)

    def coordinates(self, key: str) -> bool:
        return self.coordinator(key) == self.me.node_id

    async def open(self) -> None:
        await self.log.open()

    async def _changed_async(self) -> None:
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        self._work.set()

    async def _append(self, event: dict[str, object]) -> int:
        value = json_record(event)
        sn = await self.log.append(value, wait_applied=False)
        # Records say everything about what they cover, so ours counts before a sync reaches it.
        self.state.apply(sn, value, advance=False)
        self._notify()
        return sn

    def _current(self, txn_id: str) -> Txn | None:
        """The id's state for a decision: a preparing transaction whose markers are all written
        counts as complete already (its Complete record may still be on its way), which saves
        the client a round of CONCURRENT_TRANSACTIONS."""
        txn = self.state.txns.get(txn_id)
        if txn is None:
            return None
        return decide.complete(txn, self.state.unmarked(txn), txn.updated_ms) or txn

    async def _write(self, txn: Txn) -> None:
        await self._append(txn.record())

    # ---- coordinator requests --------------------------------------------------------

    async def init_producer_id(self, txn_id: str, timeout_ms: int, producer_id: int,
                               epoch: int) -> InitResult:
        await self.log.open()
        for last_try in (False, True):
            async with self._locks[txn_id]:
                current = self._current(txn_id)
                fresh = await self.producer_ids.allocate() if decide.needs_producer_id(current) else None
                decision = decide.init_producer_id(current, txn_id, timeout_ms, producer_id, epoch, fresh,
                                                   self.now_ms())
                if decision.write is not None:
                    await self._write(decision.write)
            if decision.error != ErrorCode.CONCURRENT_TRANSACTIONS or last_try:
                break
            # An abort is completing (perhaps the one just started): answer after it, not with a retry.
            await self._settled(txn_id)
        if decision.error or decision.write is None:
            return InitResult(decision.error or ErrorCode.COORDINATOR_NOT_AVAILABLE)
        return InitResult(ErrorCode.NONE, decision.write.producer_id, decision.write.epoch)

    async def _settled(self, txn_id: str) -> None:
        """Wait (a bounded time) until the id's transaction is no longer preparing.

        Clients retry CONCURRENT_TRANSACTIONS after their retry backoff (100 ms in
        librdkafka), so a short wait here is far quicker for them; a partition leader
        that is down keeps a transaction preparing, and then the answer is the error.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_WAIT_S
        while (txn := self._current(txn_id)) is not None and txn.status.preparing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def add_partitions(self, txn_id: str, producer_id: int, epoch: int,
                             partitions: list[tuple[str, int]]) -> dict[tuple[str, int], ErrorCode]:
        """AddPartitionsToTxn for one transaction: an error per partition."""
        await self.log.open()
        codes = await self._add_partitions(txn_id, producer_id, epoch, partitions)
        if ErrorCode.CONCURRENT_TRANSACTIONS in codes.values():
            await self._settled(txn_id)
            codes = await self._add_partitions(txn_id, producer_id, epoch, partitions)
        return codes

    async def _add_partitions(self, txn_id: str, producer_id: int, epoch: int,
                              partitions: list[tuple[str, int]]) -> dict[tuple[str, int], ErrorCode]:
        async with self._locks[txn_id]:
            current = self._current(txn_id)
            known = decide.known_partitions(current, producer_id, epoch)
            errors: dict[tuple[str, int], ErrorCode] = {}
            new: list[tuple[str, int]] = []
            for topic_name, index in partitions:
                topic = await self.topics.lookup(topic_name)
                if topic is None or not 0 <= index < topic.partitions:
                    errors[(topic_name, index)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                elif (topic_name, index) not in known:
                    new.append((topic_name, index))
            if errors:
                # As Kafka: the whole request fails, the good partitions with OPERATION_NOT_ATTEMPTED.
                return {p: errors.get(p, ErrorCode.OPERATION_NOT_ATTEMPTED) for p in partitions}
            colors = [await self.topics.color(t, i) for t, i in new]
            # Measured before the add is stored: the producer's batches all come after it.
            tails = await asyncio.gather(*(self.client.tail(c) for c in colors))
            adding = [TxnPartition(t, i, c.id, tail)
                      for (t, i), c, tail in zip(new, colors, tails, strict=True)]
            decision = decide.add(current, producer_id, epoch, adding, [], self.now_ms())
            if decision.write is not None:
                await self._write(decision.write)
            return dict.fromkeys(partitions, decision.error)

    async def add_offsets(self, txn_id: str, producer_id: int, epoch: int, group: str) -> ErrorCode:
        await self.log.open()
        for last_try in (False, True):
            async with self._locks[txn_id]:
                decision = decide.add(self._current(txn_id), producer_id, epoch, [], [group],
                                      self.now_ms())
                if decision.write is not None:
                    await self._write(decision.write)
            if decision.error != ErrorCode.CONCURRENT_TRANSACTIONS or last_try:
                break
            await self._settled(txn_id)
        return decision.error

    async def end(self, txn_id: str, producer_id: int, epoch: int, commit: bool) -> ErrorCode:
        """EndTxn. Answered once the transaction is complete (or after SETTLE_WAIT_S, when a
        leader is slow): Kafka may answer at PrepareCommit, but then a client's next
        transaction meets CONCURRENT_TRANSACTIONS and waits out a retry backoff, and a
        read_committed consumer may not see the commit yet when commit_transaction returns."""
        await self.log.open()
        async with self._locks[txn_id]:
            decision = decide.end(self._current(txn_id), producer_id, epoch, commit, self.now_ms())
            if decision.write is not None:
                await self._write(decision.write)
        if decision.error == ErrorCode.NONE:
            await self._settled(txn_id)
        return decision.error

    def coordinated(self) -> list[Txn]:
        return [t for t in self.state.txns.values() if self.coordinates(t.txn_id)]

    # ---- the produce and fetch paths --------------------------------------------------

    async def admit(self, color: int, producer_id: int, epoch: int) -> ErrorCode:
        """Whether a transactional batch may go to the partition: its transaction is ongoing
        there. NONE must be followed by ``admitted`` once the batch is submitted."""
        if not self.state.ongoing(color, producer_id, epoch):
            # The coordinator stored the add before answering it: the log has it.
            await self.log.sync()
            if not self.state.ongoing(color, producer_id, epoch):
                newer = self.state.epoch_of(producer_id)
                # A transaction aborted on timeout bumped the epoch: the producer is told so.
                return ErrorCode.INVALID_PRODUCER_EPOCH if newer is not None and newer > epoch \
                    else ErrorCode.INVALID_TXN_STATE
        self._admitting[(partition_target(color), producer_id)] += 1
        return ErrorCode.NONE

    async def admit_offsets(self, txn_id: str, producer_id: int, epoch: int, group: str) -> ErrorCode:
        """Whether TxnOffsetCommit may store offsets for the group in the producer's transaction.
        NONE must be followed by ``admitted_offsets`` once the offsets are appended (or not)."""
        await self.log.sync()
        txn = self.state.txns.get(txn_id)
        if txn is None or txn.producer_id != producer_id:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING
        if txn.epoch != epoch:
            return ErrorCode.PRODUCER_FENCED
        if not self.state.holds_group(txn_id, producer_id, epoch, group):
            return ErrorCode.INVALID_TXN_STATE
        self._admitting[(group_target(group), producer_id)] += 1
        return ErrorCode.NONE

    def admitted(self, color: int, producer_id: int) -> None:
        self._done_admitting(partition_target(color), producer_id)

    def admitted_offsets(self, group: str, producer_id: int) -> None:
        self._done_admitting(group_target(group), producer_id)

    def _done_admitting(self, target: str, producer_id: int) -> None:
        key = (target, producer_id)
        self._admitting[key] -= 1
        if not self._admitting[key]:
            del self._admitting[key]
            self._admitted.set()

    async def _quiet(self, target: str, producer_id: int) -> None:
        """Wait until nothing admitted for the producer at the target is still unsubmitted."""
        while (target, producer_id) in self._admitting:
            self._admitted.clear()
            await self._admitted.wait()

    def last_stable(self, color: int, high_watermark: int) -> int:
        bound = self.state.stable_before(color)
        return high_watermark if bound is None else min(bound, high_watermark)

    def changed(self) -> asyncio.Event:
        """An event set at the next change of the state (a marker, a completed transaction)."""
        return self._changed

    # ---- background ------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the log; write markers, complete and expire transactions, compact; until cancelled."""
        while True:
            try:
                await self.log.open()
                break
            except FlexLogError as exc:
                log.warning("transaction state not readable yet, retrying: %s", exc)
                await asyncio.sleep(RETRY_S)
        watcher = asyncio.get_running_loop().create_task(self.log.watch())
        upkeep = asyncio.get_running_loop().create_task(self._upkeep())
        try:
            while True:
                self._work.clear()
                try:
                    await self._step()
                except FlexLogError as exc:
                    log.warning("transaction upkeep failed, retrying: %s", exc)
                    await asyncio.sleep(RETRY_S)
                    continue
                deadlines = [d for t in self.coordinated() if (d := decide.deadline(t)) is not None]
                timeout = max(0.0, (min(deadlines) - self.now_ms()) / 1000) if deadlines else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._work.wait(), timeout)
        finally:
            for task in (watcher, upkeep, *self._markers):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _step(self) -> None:
        now = self.now_ms()
        for txn in self.coordinated():
            expired = decide.expire(txn, now)
            if expired is not None:
                async with self._locks[txn.txn_id]:
                    if self.state.txns.get(txn.txn_id) == txn:
                        log.info("transaction %s of producer %d timed out after %d ms: aborting",
                                 txn.txn_id, txn.producer_id, txn.timeout_ms)
                        await self._write(expired)
        for txn in self.state.preparing():
            for target in self.state.unmarked(txn):
                key = (txn.txn_id, txn.producer_id, txn.number, target)
                if key not in self._marking and self._owns(target, txn):
                    self._marking.add(key)
                    task = asyncio.get_running_loop().create_task(self._mark(txn, target, key))
                    self._markers.add(task)
                    task.add_done_callback(self._markers.discard)
            if self.coordinates(txn.txn_id):
                async with self._locks[txn.txn_id]:
                    current = self.state.txns.get(txn.txn_id)
                    done = current and decide.complete(current, self.state.unmarked(current), now)
                    if done:
                        await self._write(done)

    def _owns(self, target: str, txn: Txn) -> bool:
        kind, _, name = target.partition(":")
        if kind == "g":
            return self.coordinates(name)
        part = next(p for p in txn.partitions if partition_target(p.color) == target)
        return self.leader(part.partition) == self.me.node_id

    async def _mark(self, txn: Txn, target: str, key: tuple[str, int, int, str]) -> None:
        """Write the end marker of txn at target, retrying until it is stored."""
        commit = txn.status == TxnStatus.PREPARE_COMMIT
        record = {"op": "marker", "id": txn.txn_id, "number": txn.number, "pid": txn.producer_id,
                  "epoch": txn.epoch, "commit": commit}
        try:
            while True:
                try:
                    if target.startswith("g:"):
                        group = target[2:]
                        await self.offsets.open()
                        await self._quiet(target, txn.producer_id)
                        await self.offsets.end_transaction(group, txn.producer_id, commit, self.now_ms())
                        await self._append({**record, "group": group})
                    else:
                        part = next(p for p in txn.partitions if partition_target(p.color) == target)
                        offset = await self._write_marker(txn, part, commit)
                        await self._append({**record, "color": part.color, "first": part.first,
                                            "offset": offset})
                    return
                except UnknownColor:
                    # The topic was deleted: nothing there to mark or read.
                    await self._append({**record, "color": int(target[2:]), "first": 0, "offset": -1})
                    return
                except FlexLogError as exc:
                    log.warning("end marker of transaction %s at %s not written, retrying: %s",
                                txn.txn_id, target, exc)
                    await asyncio.sleep(RETRY_S)
        finally:
            self._marking.discard(key)
            self._work.set()

    async def _write_marker(self, txn: Txn, part: TxnPartition, commit: bool) -> int:
        color = await self.client.color(part.color)
        marker = record_batch.end_marker(txn.producer_id, txn.epoch, commit, self.now_ms())
        await self._quiet(partition_target(part.color), txn.producer_id)
        return await (await self.client.submit_batch(marker, color, validated=True))

    async def _upkeep(self) -> None:
        first = min((g.node_id for g in self.config.gateways), default=self.me.node_id)
        while True:
            await asyncio.sleep(UPKEEP_INTERVAL_S)
            if first != self.me.node_id or self.state.since_snapshot < SNAPSHOT_EVERY_RECORDS:
                continue
            try:
                await self.compact()
            except FlexLogError as exc:
                log.warning("compacting the transaction state failed, retrying later: %s", exc)

    async def compact(self) -> None:
        """Snapshot the fold (without expired ids and aborted ranges already trimmed away)
        and trim what it covers; one gateway (the controller) does it."""
        await self.log.sync()
        log_starts: dict[int, int] = {}
        for color in list(self.state.aborted):
            with contextlib.suppress(UnknownColor):
                log_starts[color] = (await self.client.state(color))[0]
        self.state.prune(log_starts, self.now_ms())
        snapshot = self.state.snapshot()
        await self._append(snapshot)
        if snapshot["upto"] > 0:
            with contextlib.suppress(UnknownColor):
                await self.client.trim(snapshot["upto"] - 1, self.log.color)

