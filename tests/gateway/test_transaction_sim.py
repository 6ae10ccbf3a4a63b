"""Deterministic simulation of Kafka transactions over the real pure modules.

No asyncio and no processes: one seeded random schedule interleaves producers,
gateways and readers, with injected time, lagging folds, lost answers and
crashes. What each simulated gateway does mirrors ``gateway/transactions.py``
step by step, calling the real ``transaction_coordinator`` decisions, the real
``TransactionState`` fold and the real ``OffsetState``:

- ``__transaction_state`` and ``__consumer_offsets`` are root-owned logs (one
  sequencer: append returns the SN). Each gateway folds them in SN order,
  lagging by a random amount, and folds its own appends at once, out of turn
  (``advance=False``). A crash loses the gateway's folds and tasks; a restart
  folds the log again from its start, i.e. from the snapshot after a compaction.
- The coordinator of a transactional id (by hash) syncs, decides, appends the
  new state, then answers (the answer may be lost). Its background step expires
  transactions, starts marker tasks for the targets it owns and completes a
  preparing transaction once every target is marked in its fold.
- A partition's leader (index % gateways) admits a transactional batch only if
  ``ongoing`` holds in its fold (syncing once if not); the batch is submitted in
  a later step, and a marker task waits until no admitted batch of that producer
  to that partition is unsubmitted (``_quiet``), appends the control batch, then
  the marker record: a crash between the two leaves the target unmarked.
- A group's coordinator checks TxnOffsetCommit against its synced fold and
  appends the pending commit in a later step (the shell awaits in between); its
  marker task appends the ``txn_end`` record, then the marker record.
- Readers fetch read_committed from the leader: nothing at or past
  ``last_stable``, the aborted list from ``aborted_between`` over the returned
  range, and Kafka's consumer algorithm to skip aborted batches.

Invariants, checked as the schedule runs and after a final quiescent phase in which
every gateway is up and every transaction ends:

(a) every end marker of a transaction (partitions and groups) says the same, the one
    its prepare said, and each partition holding its batches ends with its marker;
    EndTxn(commit) answered NONE means it committed;
(b) a read_committed reader never gets a batch of an aborted or unended transaction
    and, drained, has got exactly the committed (and plain) batches, once each, in
    offset order; so does a fresh reader from offset 0 or from anywhere;
(c) a leader's LSO never passes the first batch of a transaction not marked yet there;
(d) no batch of an epoch is admitted once InitProducerId has handed out a newer one;
(e) no batch of a transaction lands after its marker on that partition;
and offsets committed in transactions count only if the transaction committed, with
none left pending once every transaction ended.

FLEXLOG_TXN_SIM_SEEDS / FLEXLOG_TXN_SIM_SEED run more schedules or start elsewhere;
``python tests/gateway/test_transaction_sim.py SEED`` replays one with a trace.
"""

from __future__ import annotations

import collections
import json
import os
import random
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from flexlog.gateway import transaction_coordinator as decide
from flexlog.gateway import transaction_state as txn_state
from flexlog.gateway.committed_offsets import OffsetState
from flexlog.gateway.protocol import ErrorCode
from flexlog.gateway.transaction_state import (
    TransactionState,
    Txn,
    TxnPartition,
    TxnStatus,
    group_target,
    partition_target,
)

SEEDS = int(os.environ.get("FLEXLOG_TXN_SIM_SEEDS", "300"))
FIRST_SEED = int(os.environ.get("FLEXLOG_TXN_SIM_SEED", "0"))

E = ErrorCode
S = TxnStatus
TOPIC = "t"
SOURCE = "src"  # the topic whose offsets transactions commit
COLOR_BASE = 100
GROUPS = ("g1", "g2")
Tag = tuple[str, int, int]  # (transactional id, producer id, transaction number): ids expire and come back


class Violation(AssertionError):
    pass


@dataclass
class Batch:
    kind: str  # "data" (transactional), "plain" (no producer id), "control"
    pid: int
    epoch: int
    tag: Tag | None  # data: the transaction its leader admitted it in; control: the one it ends
    commit: bool = False  # control batches
    bid: int = -1


class RootLog:
    """A root-owned color: one sequencer, so append returns the next SN; trimmed from the front."""

    def __init__(self) -> None:
        self.records: list[bytes] = []
        self.start = 0

    def append(self, value: bytes) -> int:
        self.records.append(value)
        return len(self.records) - 1

    @property
    def tail(self) -> int:
        return len(self.records)


def catch_up(fold: TransactionState | OffsetState, log: RootLog, limit: int | None = None) -> None:
    """EventLog.sync: apply in SN order from applied; past a trim, jump to the log's start."""
    if fold.applied < log.start:
        fold.applied = log.start
    end = log.tail if limit is None else min(log.tail, fold.applied + limit)
    for sn in range(fold.applied, end):
        fold.apply(sn, log.records[sn])
    fold.applied = max(fold.applied, end)


def enc(event: dict[str, object]) -> bytes:
    return json.dumps(event).encode()


@dataclass
class Task:
    owner: int
    name: str
    run: Callable[[], bool]  # True when done; False: not runnable yet (stays queued)
    dropped: Callable[[], None] = lambda: None  # the owner crashed before it finished


@dataclass
class Gateway:
    gid: int
    alive: bool = True
    state: TransactionState = field(default_factory=TransactionState)
    offsets: OffsetState = field(default_factory=OffsetState)
    marking: set[tuple[str, int, str]] = field(default_factory=set)
    # (target, producer id) -> admitted batches or offset commits not appended yet.
    admitting: collections.Counter[tuple[str, int]] = field(default_factory=collections.Counter)


@dataclass
class Producer:
    slot: int
    txn_id: str
    timeout_ms: int
    phase: str = "init"  # init, ready, txn, dead, paused, stopped
    reinit: tuple[int, int] | None = None  # KIP-360: (pid, epoch) to pass to InitProducerId
    pid: int = -1
    epoch: int = -1
    added: set[int] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    committed_groups: set[str] = field(default_factory=set)
    in_flight: int = 0
    failed: bool = False
    resume_at: int = 0
    resume_phase: str = "init"
    ending: bool | None = None  # the EndTxn sent (commit?) whose answer has not come: retried as is
    instance: int = 0  # a new instance of the application forgets what the old one had in flight

    def answer(self, instance: int, ok: bool) -> None:
        """An answer to a request in flight (ok False: an error, or none at all)."""
        if instance == self.instance:
            self.in_flight -= 1
            self.failed |= not ok


class Sim:
    def __init__(self, seed: int, trace: bool = False) -> None:
        self.seed = seed
        self.rng = rng = random.Random(seed)
        self.trace_on = trace
        self.log_lines: collections.deque[str] = collections.deque(maxlen=60)
        self.now = 1_000_000
        self.n_gw = rng.randint(2, 3)
        self.n_parts = rng.randint(1, 4)
        self.gateways = [Gateway(g) for g in range(self.n_gw)]
        self.txlog = RootLog()
        self.offlog = RootLog()
        self.parts: list[list[Batch]] = [[] for _ in range(self.n_parts)]
        self.next_pid = 1000
        self.next_bid = 0
        self.next_token = 0
        self.tasks: list[Task] = []
        self.stats: collections.Counter[str] = collections.Counter()
        ids = [f"tx{i}" for i in range(rng.randint(1, 2))]
        self.producers = [Producer(i, ids[i % len(ids)] if rng.random() < 0.8 else rng.choice(ids),
                                   rng.choice([80, 200, 600, 5_000]))
                          for i in range(rng.randint(1, 3))]
        # Truth, kept outside the gateways.
        self.unmarked_first: list[dict[Tag, int]] = [{} for _ in range(self.n_parts)]
        self.markers: dict[tuple[int, Tag], list[tuple[int, bool]]] = {}
        self.outcome: dict[Tag, bool] = {}  # every end marker of a transaction says this
        self.prepared: dict[Tag, bool] = {}  # what the coordinator's prepare said
        self.told_committed: set[Tag] = set()  # EndTxn(commit) answered NONE after its prepare
        self.inited: dict[int, int] = {}  # pid -> highest epoch an InitProducerId answered
        self.tokens: dict[int, Tag] = {}  # offset token committed in a transaction -> it
        self.readers = [Reader(self, i) for i in range(self.n_parts)]
        expiring = rng.random() < 0.5
        short = rng.choice([300, 2_000])
        # Idle ids forgotten quickly, so compaction prunes them and they are initialised again
        # (Kafka: after a week).
        self.expiration_ms = short if expiring else txn_state.ID_EXPIRATION_MS

    # ---- helpers -------------------------------------------------------------------

    def trace(self, text: str) -> None:
        line = f"[{self.now}] {text}"
        self.log_lines.append(line)
        if self.trace_on:
            print(line)

    def fail(self, text: str) -> None:
        raise Violation(f"seed {self.seed}: {text}\n  last steps:\n    " + "\n    ".join(self.log_lines)
                        + f"\n  replay: python tests/gateway/test_transaction_sim.py {self.seed}")

    def coordinator(self, key: str) -> int:
        return zlib.crc32(key.encode()) % self.n_gw

    def leader(self, index: int) -> int:
        return index % self.n_gw

    @staticmethod
    def color(index: int) -> int:
        return COLOR_BASE + index

    @staticmethod
    def index(color: int) -> int:
        return color - COLOR_BASE

    def coordinated(self, gw: Gateway) -> list[Txn]:
        return [t for t in gw.state.txns.values() if self.coordinator(t.txn_id) == gw.gid]

    def append_txn(self, gw: Gateway, event: dict[str, object]) -> int:
        """Transactions._append: the record goes to the log and into our fold at once."""
        value = enc(event)
        sn = self.txlog.append(value)
        gw.state.apply(sn, value, advance=False)
        if event["op"] == "txn":
            status = S(event["status"])
            tag = (str(event["id"]), int(event["pid"]), int(event["number"]))
            if status.preparing:
                commit = status == S.PREPARE_COMMIT
                if self.prepared.setdefault(tag, commit) != commit:
                    self.fail(f"transaction {tag} prepared both to commit and to abort")
        return sn

    def append_offsets(self, gw: Gateway, event: dict[str, object]) -> int:
        value = enc(event)
        sn = self.offlog.append(value)
        gw.offsets.apply(sn, value, advance=False)
        return sn

    def lost(self) -> bool:
        return self.rng.random() < 0.08

    # ---- the coordinator's requests (Transactions.init_producer_id, add_*, end) ----------

    def init_producer_id(self, p: Producer) -> ErrorCode:
        gw = self.gateways[self.coordinator(p.txn_id)]
        if not gw.alive:
            return E.COORDINATOR_NOT_AVAILABLE
        catch_up(gw.state, self.txlog)  # log.open() syncs
        current = gw.state.txns.get(p.txn_id)
        fresh = None
        if decide.needs_producer_id(current):
            fresh = self.next_pid
            self.next_pid += 1
        pid, epoch = p.reinit if p.reinit else (-1, -1)
        d = decide.init_producer_id(current, p.txn_id, p.timeout_ms, pid, epoch, fresh, self.now)
        if d.write is not None:
            self.append_txn(gw, d.write.record())
            if current is not None and d.write.producer_id != current.producer_id:
                self.stats["epochs exhausted"] += 1
        self.trace(f"init {p.txn_id}#{p.slot} ({pid},{epoch}) -> {d.error.name} "
                   f"{d.write and (d.write.producer_id, d.write.epoch, d.write.status.value)}")
        if d.error or d.write is None:
            return d.error or E.COORDINATOR_NOT_AVAILABLE
        if self.lost():
            return E.REQUEST_TIMED_OUT
        p.pid, p.epoch = d.write.producer_id, d.write.epoch
        self.inited[p.pid] = max(self.inited.get(p.pid, -1), p.epoch)
        return E.NONE

    def add_partitions(self, p: Producer, index: int) -> ErrorCode:
        gw = self.gateways[self.coordinator(p.txn_id)]
        if not gw.alive:
            return E.COORDINATOR_NOT_AVAILABLE
        catch_up(gw.state, self.txlog)
        current = gw.state.txns.get(p.txn_id)
        known = decide.known_partitions(current, p.pid, p.epoch)
        adding = [] if (TOPIC, index) in known else \
            [TxnPartition(TOPIC, index, self.color(index), len(self.parts[index]))]
        d = decide.add(current, p.pid, p.epoch, adding, [], self.now)
        if d.write is not None:
            self.append_txn(gw, d.write.record())
        self.trace(f"add {p.txn_id}#{p.slot} ({p.pid},{p.epoch}) p{index} -> {d.error.name}"
                   f"{' written' if d.write else ''}")
        return E.REQUEST_TIMED_OUT if not d.error and self.lost() else d.error

    def add_offsets(self, p: Producer, group: str) -> ErrorCode:
        gw = self.gateways[self.coordinator(p.txn_id)]
        if not gw.alive:
            return E.COORDINATOR_NOT_AVAILABLE
        catch_up(gw.state, self.txlog)
        d = decide.add(gw.state.txns.get(p.txn_id), p.pid, p.epoch, [], [group], self.now)
        if d.write is not None:
            self.append_txn(gw, d.write.record())
        self.trace(f"add_offsets {p.txn_id}#{p.slot} ({p.pid},{p.epoch}) {group} -> {d.error.name}")
        return E.REQUEST_TIMED_OUT if not d.error and self.lost() else d.error

    def end_txn(self, p: Producer, commit: bool) -> ErrorCode:
        gw = self.gateways[self.coordinator(p.txn_id)]
        if not gw.alive:
            return E.COORDINATOR_NOT_AVAILABLE
        catch_up(gw.state, self.txlog)
        current = gw.state.txns.get(p.txn_id)
        d = decide.end(current, p.pid, p.epoch, commit, self.now)
        if d.write is not None:
            self.append_txn(gw, d.write.record())
        self.trace(f"end {p.txn_id}#{p.slot} ({p.pid},{p.epoch}) commit={commit} -> {d.error.name}"
                   f"{f' number {d.write.number}' if d.write else ''}")
        if not d.error and commit:
            # The prepare (this one, or the one a lost answer hid) said commit.
            txn = d.write or current
            assert txn is not None
            self.told_committed.add((txn.txn_id, txn.producer_id, txn.number))
        return E.REQUEST_TIMED_OUT if not d.error and self.lost() else d.error

    # ---- the produce path (produce.py + Transactions.admit) --------------------------------

    def produce(self, p: Producer, index: int) -> ErrorCode:
        gw = self.gateways[self.leader(index)]
        if not gw.alive:
            return E.NOT_LEADER_OR_FOLLOWER
        color = self.color(index)
        if not gw.state.ongoing(color, p.pid, p.epoch):
            catch_up(gw.state, self.txlog)
            if not gw.state.ongoing(color, p.pid, p.epoch):
                newer = gw.state.epoch_of(p.pid)
                bumped = newer is not None and newer > p.epoch
                code = E.INVALID_PRODUCER_EPOCH if bumped else E.INVALID_TXN_STATE
                self.trace(f"produce {p.txn_id}#{p.slot} ({p.pid},{p.epoch}) p{index} refused {code.name}")
                return code
        if self.inited.get(p.pid, -1) > p.epoch:
            self.fail(f"(d) batch of producer {p.pid} epoch {p.epoch} admitted on p{index} after epoch "
                      f"{self.inited[p.pid]} was handed out")
        # Which transaction the leader admits it in, as its fold says.
        txn = next(t for t in gw.state.txns.values()
                   if (t.producer_id, t.epoch, t.status) == (p.pid, p.epoch, S.ONGOING))
        tag = (txn.txn_id, txn.producer_id, txn.number)
        pid, epoch, instance = p.pid, p.epoch, p.instance
        gw.admitting[(partition_target(color), pid)] += 1
        bid = self.next_bid
        self.next_bid += 1
        p.in_flight += 1
        self.trace(f"produce {p.txn_id}#{p.slot} ({pid},{epoch}) p{index} admitted b{bid} in {tag}")

        def submit() -> bool:
            gw.admitting[(partition_target(color), pid)] -= 1
            if not gw.admitting[(partition_target(color), pid)]:
                del gw.admitting[(partition_target(color), pid)]
            self.append_batch(index, Batch("data", pid, epoch, tag, bid=bid))
            # A lost answer: the client cannot commit what it does not know landed.
            p.answer(instance, not self.lost())
            return True

        def dropped() -> None:
            p.answer(instance, False)

        self.tasks.append(Task(gw.gid, f"submit b{bid}", submit, dropped))
        return E.NONE

    def append_batch(self, index: int, batch: Batch) -> None:
        offset = len(self.parts[index])
        self.parts[index].append(batch)
        if batch.kind == "data":
            assert batch.tag is not None
            if (index, batch.tag) in self.markers:
                self.fail(f"(e) batch b{batch.bid} of {batch.tag} landed at p{index}@{offset}, after its "
                          f"marker at {self.markers[(index, batch.tag)]}")
            self.unmarked_first[index].setdefault(batch.tag, offset)
        self.trace(f"p{index}@{offset} <- {batch.kind} pid={batch.pid} e={batch.epoch} {batch.tag} "
                   f"{'commit' if batch.commit else ''}")

    def produce_plain(self) -> None:
        index = self.rng.randrange(self.n_parts)
        if self.gateways[self.leader(index)].alive:
            bid = self.next_bid
            self.next_bid += 1
            self.append_batch(index, Batch("plain", -1, -1, None, bid=bid))

    # ---- TxnOffsetCommit (handlers/transactions.py) ---------------------------------------

    def txn_offset_commit(self, p: Producer, group: str) -> ErrorCode:
        gw = self.gateways[self.coordinator(group)]
        if not gw.alive:
            return E.COORDINATOR_NOT_AVAILABLE
        catch_up(gw.state, self.txlog)  # admit_offsets syncs
        txn = gw.state.txns.get(p.txn_id)
        if txn is None or txn.producer_id != p.pid:
            return E.INVALID_PRODUCER_ID_MAPPING
        if txn.epoch != p.epoch:
            return E.PRODUCER_FENCED
        if not gw.state.holds_group(p.txn_id, p.pid, p.epoch, group):
            return E.INVALID_TXN_STATE
        token = self.next_token
        self.next_token += 1
        self.tokens[token] = (txn.txn_id, txn.producer_id, txn.number)
        partitions = sorted(self.rng.sample([0, 1], self.rng.randint(1, 2)))
        pid, instance = p.pid, p.instance
        admitted = (group_target(group), pid)
        gw.admitting[admitted] += 1
        p.in_flight += 1
        self.trace(f"txn_offset_commit {p.txn_id}#{p.slot} {group} token {token} checked in "
                   f"{self.tokens[token]}")

        def append() -> bool:
            # commit_rows and offsets.open() await before the append (admitted_offsets after it).
            gw.admitting[admitted] -= 1
            if not gw.admitting[admitted]:
                del gw.admitting[admitted]
            catch_up(gw.offsets, self.offlog)
            self.append_offsets(gw, {"op": "txn_commit", "group": group, "pid": pid, "ts": self.now,
                                     "offsets": [[SOURCE, i, token, -1, None] for i in partitions]})
            self.trace(f"txn_commit {group} pid {pid} token {token} appended")
            p.answer(instance, not self.lost())
            return True

        def dropped() -> None:
            p.answer(instance, False)

        self.tasks.append(Task(gw.gid, f"txn_commit {token}", append, dropped))
        return E.NONE

    # ---- the background step (Transactions._step and _mark) ----------------------------------

    def step_gateway(self, gw: Gateway) -> None:
        now = self.now
        for txn in self.coordinated(gw):
            expired = decide.expire(txn, now)
            if expired is not None and gw.state.txns.get(txn.txn_id) == txn:
                self.trace(f"g{gw.gid} expires {txn.txn_id} number {txn.number}")
                self.stats["expired"] += 1
                self.append_txn(gw, expired.record())
        for txn in gw.state.preparing():
            for target in sorted(gw.state.unmarked(txn)):
                key = (txn.txn_id, txn.number, target)
                if key not in gw.marking and self.owns(gw, target, txn):
                    gw.marking.add(key)
                    self.start_marking(gw, txn, target, key)
            if self.coordinator(txn.txn_id) == gw.gid:
                current = gw.state.txns.get(txn.txn_id)
                done = current and decide.complete(current, gw.state.unmarked(current), now)
                if done:
                    self.trace(f"g{gw.gid} completes {txn.txn_id} number {txn.number} {done.status.value}")
                    self.append_txn(gw, done.record())

    def owns(self, gw: Gateway, target: str, txn: Txn) -> bool:
        kind, _, name = target.partition(":")
        if kind == "g":
            return self.coordinator(name) == gw.gid
        part = next(p for p in txn.partitions if partition_target(p.color) == target)
        return self.leader(part.partition) == gw.gid

    def start_marking(self, gw: Gateway, txn: Txn, target: str, key: tuple[str, int, str]) -> None:
        commit = txn.status == S.PREPARE_COMMIT
        tag = (txn.txn_id, txn.producer_id, txn.number)
        record = {"op": "marker", "id": txn.txn_id, "number": txn.number, "pid": txn.producer_id,
                  "epoch": txn.epoch, "commit": commit}
        stage = {"written": None}

        def outcome() -> None:
            if self.outcome.setdefault(tag, commit) != commit:
                self.fail(f"(a) {tag} marked {'commit' if commit else 'abort'} at {target} after the "
                          f"other end elsewhere")

        if target.startswith("g:"):
            group = target[2:]

            def run() -> bool:
                if stage["written"] is None:
                    if (target, txn.producer_id) in gw.admitting:
                        return False  # _quiet
                    catch_up(gw.offsets, self.offlog)
                    self.append_offsets(gw, {"op": "txn_end", "group": group, "pid": txn.producer_id,
                                             "commit": commit, "ts": self.now})
                    outcome()
                    stage["written"] = True
                    return False  # the marker record in a later step
                self.append_txn(gw, {**record, "group": group})
                self.trace(f"g{gw.gid} marked {tag} at {target}")
                gw.marking.discard(key)
                return True
        else:
            part = next(p for p in txn.partitions if partition_target(p.color) == target)
            index = self.index(part.color)

            def run() -> bool:
                if stage["written"] is None:
                    if (target, txn.producer_id) in gw.admitting:
                        return False  # _quiet
                    offset = len(self.parts[index])
                    self.append_batch(index, Batch("control", txn.producer_id, txn.epoch, tag, commit))
                    self.markers.setdefault((index, tag), []).append((offset, commit))
                    self.unmarked_first[index].pop(tag, None)
                    outcome()
                    stage["written"] = offset
                    return False
                self.append_txn(gw, {**record, "color": part.color, "first": part.first,
                                     "offset": stage["written"]})
                self.trace(f"g{gw.gid} marked {tag} at {target} (offset {stage['written']})")
                gw.marking.discard(key)
                return True

        self.tasks.append(Task(gw.gid, f"mark {tag} {target}", run))

    # ---- compaction (Transactions.compact, OffsetStore.compact) --------------------------------

    def compact(self, gw: Gateway) -> None:
        catch_up(gw.state, self.txlog)
        gw.state.prune({c: 0 for c in gw.state.aborted}, self.now)
        snapshot = gw.state.snapshot()
        self.append_txn(gw, snapshot)
        if snapshot["upto"] > 0:
            self.txlog.start = max(self.txlog.start, snapshot["upto"])
        catch_up(gw.offsets, self.offlog)
        osnap = gw.offsets.snapshot(0)
        self.append_offsets(gw, osnap)
        if osnap["upto"] > 0:
            self.offlog.start = max(self.offlog.start, osnap["upto"])
        self.stats["compactions"] += 1
        self.trace(f"g{gw.gid} compacts: trimmed to {self.txlog.start}")

    # ---- crashes ------------------------------------------------------------------------

    def crash(self, gw: Gateway) -> None:
        self.trace(f"g{gw.gid} crashes")
        self.stats["crashes"] += 1
        gw.alive = False
        for task in [t for t in self.tasks if t.owner == gw.gid]:
            self.tasks.remove(task)
            task.dropped()

    def restart(self, gw: Gateway) -> None:
        gw.state, gw.offsets = TransactionState(), OffsetState()
        gw.marking, gw.admitting = set(), collections.Counter()
        # Broker.open: the folds are read from the log's start (a snapshot, once compacted).
        catch_up(gw.state, self.txlog)
        catch_up(gw.offsets, self.offlog)
        if self.txlog.start:
            self.stats["restarts from a snapshot"] += 1
        gw.alive = True
        self.trace(f"g{gw.gid} restarts")

    # ---- producers ----------------------------------------------------------------------

    def producer_step(self, p: Producer) -> None:
        rng = self.rng
        if p.phase == "paused":
            if self.now >= p.resume_at:
                p.phase = p.resume_phase  # back as a zombie, with what it knew
            return
        if p.phase == "dead":
            if rng.random() < 0.2:  # the application starts a new instance
                self.new_instance(p)
            return
        if p.phase == "init":
            code = self.init_producer_id(p)
            if code == E.NONE:
                p.phase, p.reinit = "ready", None
                self.stats["inits"] += 1
            elif code in (E.PRODUCER_FENCED, E.INVALID_PRODUCER_ID_MAPPING):
                self.fenced(p, code)
            return
        if p.phase == "ready":
            p.phase, p.added, p.groups, p.committed_groups, p.failed = "txn", set(), set(), set(), False
            p.ending = None
            return
        if p.phase != "txn":
            return
        roll = rng.random()
        if roll < 0.25 and len(p.added) < self.n_parts:
            index = rng.choice([i for i in range(self.n_parts) if i not in p.added])
            code = self.add_partitions(p, index)
            if code == E.NONE:
                p.added.add(index)
            self.react(p, code)
        elif roll < 0.6 and p.added:
            self.react(p, self.produce(p, rng.choice(sorted(p.added))), abortable=True)
        elif roll < 0.7:
            group = rng.choice(GROUPS)
            if group not in p.groups:
                code = self.add_offsets(p, group)
                if code == E.NONE:
                    p.groups.add(group)
                self.react(p, code)
            elif group not in p.committed_groups:
                code = self.txn_offset_commit(p, group)
                if code == E.NONE:
                    p.committed_groups.add(group)
                self.react(p, code, abortable=True)
        elif roll < 0.85 and not p.in_flight:
            if not p.added and not p.groups:
                p.phase = "ready"  # nothing begun: the client sends no EndTxn
                return
            if p.ending is None:
                p.ending = not p.failed and rng.random() < 0.75
            commit = p.ending
            code = self.end_txn(p, commit)
            if code not in (E.COORDINATOR_NOT_AVAILABLE, E.REQUEST_TIMED_OUT, E.CONCURRENT_TRANSACTIONS):
                p.ending = None
            if code == E.NONE:
                self.stats["commits told" if commit else "aborts told"] += 1
                p.phase = "ready"
            elif code == E.INVALID_TXN_STATE and commit:
                p.failed = True  # e.g. a lost answer hid an abort: abort instead
            elif code == E.INVALID_TXN_STATE:
                self.stats["abort refused INVALID_TXN_STATE"] += 1
                self.fenced(p, code)  # fatal for the Java client
            self.react(p, code)

    def react(self, p: Producer, code: ErrorCode, abortable: bool = False) -> None:
        """The Java client's handling of an error in a transaction."""
        if code == E.INVALID_PRODUCER_EPOCH:
            # KIP-588: the transaction timed out; re-initialise with the current id and epoch.
            self.stats["reinit after INVALID_PRODUCER_EPOCH"] += 1
            p.phase, p.reinit, p.ending = "init", (p.pid, p.epoch), None
        elif code in (E.PRODUCER_FENCED, E.INVALID_PRODUCER_ID_MAPPING):
            self.fenced(p, code)
        elif code == E.INVALID_TXN_STATE and abortable:
            p.failed = True

    def fenced(self, p: Producer, code: ErrorCode) -> None:
        self.trace(f"{p.txn_id}#{p.slot} ({p.pid},{p.epoch}) fenced: {code.name}")
        self.stats["fenced"] += 1
        p.phase = "dead"

    def new_instance(self, p: Producer) -> None:
        p.phase, p.reinit, p.pid, p.epoch, p.failed, p.ending = "init", None, -1, -1, False, None
        p.instance += 1
        p.in_flight = 0
        p.added, p.groups, p.committed_groups = set(), set(), set()
        self.stats["new instances"] += 1

    # ---- checks -------------------------------------------------------------------------

    def check_step(self) -> None:
        """(c) on every step: a leader's LSO is at or before the first batch of every
        transaction not marked yet on the partition; and what readers got so far is fine."""
        for index in range(self.n_parts):
            gw = self.gateways[self.leader(index)]
            if not gw.alive:
                continue
            open_first = min(self.unmarked_first[index].values(), default=None)
            if open_first is None:
                continue
            hw = len(self.parts[index])
            bound = gw.state.stable_before(self.color(index))
            lso = hw if bound is None else min(bound, hw)
            if lso > open_first:
                tag = min(self.unmarked_first[index].items(), key=lambda kv: kv[1])[0]
                self.fail(f"(c) p{index}: LSO {lso} on g{gw.gid} passes {tag}'s first batch at "
                          f"{open_first}, not marked yet")

    def run(self, steps: int) -> collections.Counter[str]:
        rng = self.rng
        for _ in range(steps):
            self.now += rng.choice([0, 1, 5, 20, 50])
            self.one_step(rng.random())
            self.check_step()
        self.quiesce()
        self.final_checks()
        return self.stats

    def one_step(self, roll: float) -> None:
        rng = self.rng
        alive = [g for g in self.gateways if g.alive]
        if roll < 0.35:
            self.producer_step(rng.choice(self.producers))
        elif roll < 0.55:
            if self.tasks:
                task = rng.choice(self.tasks)
                if task.run():
                    self.tasks.remove(task)
        elif roll < 0.68:
            if alive:
                self.step_gateway(rng.choice(alive))
        elif roll < 0.78:
            if alive:  # EventLog.watch: some of what others appended
                gw = rng.choice(alive)
                catch_up(gw.state, self.txlog, rng.randint(1, 4))
                catch_up(gw.offsets, self.offlog, rng.randint(1, 4))
        elif roll < 0.86:
            self.readers[rng.randrange(self.n_parts)].fetch()
        elif roll < 0.89:
            self.produce_plain()
        elif roll < 0.905:
            if alive and rng.random() < 0.5:
                self.crash(rng.choice(alive))
            elif len(alive) < self.n_gw:
                self.restart(rng.choice([g for g in self.gateways if not g.alive]))
        elif roll < 0.915:
            p = rng.choice(self.producers)
            if p.phase in ("txn", "ready", "init"):
                if rng.random() < 0.5:  # paused (GC, partition): it comes back a zombie
                    p.resume_phase, p.phase = p.phase, "paused"
                    p.resume_at = self.now + rng.choice([50, 300, 2_000])
                    self.stats["pauses"] += 1
                else:  # crashed: the application starts a new instance with the same id
                    self.trace(f"{p.txn_id}#{p.slot} crashes")
                    self.new_instance(p)
        elif roll < 0.925:
            first = self.gateways[0]
            if first.alive:
                self.compact(first)
        else:
            self.now += rng.choice([100, 400, 1_000])

    def quiesce(self) -> None:
        """Every gateway up, producers stopped; time runs until every transaction ends."""
        self.trace("---- quiescing")
        for gw in self.gateways:
            if not gw.alive:
                self.restart(gw)
        for p in self.producers:
            p.phase = "stopped"
        for _ in range(5_000):
            self.now += 50
            for task in list(self.tasks):
                if task.run():
                    self.tasks.remove(task)
            for gw in self.gateways:
                catch_up(gw.state, self.txlog)
                catch_up(gw.offsets, self.offlog)
                self.step_gateway(gw)
            self.check_step()
            full = TransactionState()
            catch_up(full, self.txlog)
            if not self.tasks and not any(t.status.open for t in full.txns.values()):
                break
        else:
            self.fail("transactions never ended with every gateway up")
        for reader in self.readers:
            reader.drain()

    def final_checks(self) -> None:
        # (a) every transaction's batches end with its marker on their partition, and one outcome.
        for index, part in enumerate(self.parts):
            if self.unmarked_first[index]:
                self.fail(f"(a) p{index}: transactions {sorted(self.unmarked_first[index])} never marked")
            for offset, batch in enumerate(part):
                if batch.kind == "data":
                    marks = self.markers.get((index, batch.tag), [])
                    if not any(o > offset for o, _ in marks):
                        self.fail(f"(a) p{index}@{offset}: {batch.tag} has no marker after it: {marks}")
        for tag, commit in self.outcome.items():
            if self.prepared.get(tag, commit) != commit:
                self.fail(f"(a) {tag} prepared {self.prepared[tag]} but marked {commit}")
        for tag in self.told_committed:
            if self.outcome.get(tag, True) is not True:
                self.fail(f"{tag}: EndTxn(commit) answered NONE but the transaction aborted")
        # (b) fresh readers, from the start and from anywhere, get exactly the committed batches.
        for index in range(self.n_parts):
            expected = self.visible(index, 0)
            got = self.readers[index].output
            if got != expected:
                self.fail(f"(b) p{index}: the reader got {got}, committed are {expected}")
            for start in {0, self.rng.randint(0, len(self.parts[index]))}:
                fresh = Reader(self, index, start)
                fresh.drain()
                if fresh.output != self.visible(index, start):
                    self.fail(f"(b) p{index} from {start}: got {fresh.output}, "
                              f"committed are {self.visible(index, start)}")
        # Offsets committed in transactions: only committed ones count, none left hanging.
        fresh = OffsetState()
        catch_up(fresh, self.offlog)
        for name, folded in [("a fresh fold", fresh), *((f"g{g.gid}", g.offsets) for g in self.gateways)]:
            for group in GROUPS:
                for i in (0, 1):
                    key = (group, SOURCE, i)
                    entry = folded.get(key)
                    if entry is not None:
                        tag = self.tokens[entry.offset]
                        if self.outcome.get(tag) is not True:
                            self.fail(f"offsets: {name} has {key} committed at token {entry.offset} of "
                                      f"{tag}, which {'aborted' if tag in self.outcome else 'never ended'}")
                    if folded.unstable(key):
                        self.fail(f"offsets: {name} still holds a pending commit of {key} "
                                  f"({folded.pending}) with no transaction open")
        self.stats["committed"] += sum(1 for c in self.outcome.values() if c)
        self.stats["aborted"] += sum(1 for c in self.outcome.values() if not c)
        self.stats["batches"] += sum(len(p) for p in self.parts)

    def visible(self, index: int, start: int) -> list[int]:
        out = []
        for batch in self.parts[index][start:]:
            if batch.kind == "plain" or (batch.kind == "data" and self.outcome.get(batch.tag) is True):
                out.append(batch.bid)
        return out


class Reader:
    """A read_committed consumer of one partition: fetches from the leader (handlers/fetch.py)
    and filters as Kafka's consumer does (CompletedFetch.nextFetchedRecord)."""

    def __init__(self, sim: Sim, index: int, start: int = 0) -> None:
        self.sim, self.index, self.position = sim, index, start
        self.output: list[int] = []

    def fetch(self) -> bool:
        """One fetch; whether it moved."""
        sim = self.sim
        gw = sim.gateways[sim.leader(self.index)]
        if not gw.alive:
            return False
        part = sim.parts[self.index]
        color = sim.color(self.index)
        hw = len(part)
        bound = gw.state.stable_before(color)
        lso = hw if bound is None else min(bound, hw)
        upto = min(lso, self.position + sim.rng.randint(1, 4))
        if upto <= self.position:
            return False
        aborted = sorted(gw.state.aborted_between(color, self.position, upto), key=lambda a: a.first)
        aborted_pids: set[int] = set()
        for offset in range(self.position, upto):
            batch = part[offset]
            if batch.kind != "plain":  # has a producer id
                while aborted and aborted[0].first <= offset:
                    aborted_pids.add(aborted.pop(0).producer_id)
                if batch.kind == "control":
                    if not batch.commit:
                        aborted_pids.discard(batch.pid)
                    continue
                if batch.pid in aborted_pids:
                    continue
                # Returned to the application: it must be committed, and marked so already.
                marks = sim.markers.get((self.index, batch.tag), [])
                if not any(o > offset and c for o, c in marks):
                    sim.fail(f"(b) p{self.index}@{offset}: read_committed returned b{batch.bid} of "
                             f"{batch.tag}, {'aborted' if marks else 'not ended'} (LSO {lso}, "
                             f"markers {marks}, aborted list {gw.state.aborted_between(color, 0, hw)})")
            self.output.append(batch.bid)
        self.position = upto
        return True

    def drain(self) -> None:
        while self.position < len(self.sim.parts[self.index]):
            if not self.fetch():
                self.sim.fail(f"p{self.index}: the reader is stuck at {self.position} of "
                              f"{len(self.sim.parts[self.index])}")


def run_seed(seed: int, trace: bool = False) -> collections.Counter[str]:
    sim = Sim(seed, trace)
    saved = txn_state.ID_EXPIRATION_MS, decide.MAX_EPOCH
    txn_state.ID_EXPIRATION_MS = sim.expiration_ms
    if seed % 5 == 2:
        decide.MAX_EPOCH = 4  # epochs run out: new producer ids, aborts that cannot bump
    try:
        return sim.run(steps=sim.rng.choice([200, 400, 700]))
    finally:
        txn_state.ID_EXPIRATION_MS, decide.MAX_EPOCH = saved


@pytest.mark.timeout(900)
def test_random_schedules_keep_transactions_atomic_and_isolated() -> None:
    started = time.monotonic()
    totals: collections.Counter[str] = collections.Counter()
    failures = []
    for seed in range(FIRST_SEED, FIRST_SEED + SEEDS):
        try:
            totals.update(run_seed(seed))
        except Violation as exc:
            failures.append(str(exc))
    print(f"\ntransaction simulation: {SEEDS} seeds in {time.monotonic() - started:.1f} s: "
          f"{dict(sorted(totals.items()))}")
    assert not failures, f"{len(failures)} of {SEEDS} seeds failed; first:\n" + "\n\n".join(failures[:2])
    # The schedules exercise what they are meant to.
    if SEEDS >= 100:
        for what in ("committed", "aborted", "expired", "fenced", "crashes", "compactions",
                     "restarts from a snapshot", "reinit after INVALID_PRODUCER_EPOCH", "pauses",
                     "epochs exhausted"):
            assert totals[what] > 0, what


def test_a_seed_replays_the_same_schedule() -> None:
    for seed in (3, 17):
        first, again = Sim(seed), Sim(seed)
        assert first.run(300) == again.run(300)
        assert first.txlog.records == again.txlog.records and first.offlog.records == again.offlog.records
        assert [[(b.kind, b.pid, b.tag) for b in p] for p in first.parts] == \
            [[(b.kind, b.pid, b.tag) for b in p] for p in again.parts]


# ---- the bugs this simulation found, kept as regressions ------------------------------------

# Seeds whose schedules hit them when they were found (the generator has changed a little since:
# the offset commit's append is always a later step now, as in the shell). Seeds 486 and 831: an
# id forgotten after its expiry and initialised again numbered its transactions from 1 again, and
# gateways that still held the old transaction 1's markers took the new one as marked (the LSO
# passed open batches; a marker was never written). 743 and 909: TxnOffsetCommit's append landed
# after the transaction's end in __consumer_offsets (it hung pending, then the next transaction
# committed it); the group's end now waits for admitted offset commits.
@pytest.mark.parametrize("seed", [79, 486, 643, 743, 831, 909])
def test_schedules_that_found_bugs(seed: int) -> None:
    run_seed(seed)


if __name__ == "__main__":
    print(run_seed(int(sys.argv[1]), trace=True))
