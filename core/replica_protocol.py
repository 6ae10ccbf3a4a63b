"""What a storage replica decides, free of I/O: messages and the time in, actions out.

`ReplicaProtocol` holds everything a replica knows about its entries and makes
every decision of the write-all/read-one protocol: what to prepare, which
order requests to send, how a grant is applied, when to repair, catch up,
seal and fill, and what a read answers. It reads no clock (each input carries
`now`) and touches no socket: what it wants done goes out through the ports it
was given (`ReplicaIO`, one `AckSink` per client append stream, one
`ResultSink` per query stream). `core/replica.py` is its gRPC/asyncio adapter;
`tests/sim` drives the same class over a simulated network and clock.

Where to look:
- a client's entry arrives: `prepare`;
- a grant arrives (before or after the prepare): `grants` -> `_apply_grants`;
- the view changes: `view_changed`;
- time passes (repair, re-order, abort, fill, waiters): `tick`, `expire_waiters`;
- a read or trim: `query`;
- holes: `tick` finds them, `seal`/`sealed` and `apply_fill` close them.

Holes. An SN can be ordered and then lost before any replica stored it (a leaf
dies holding a grant from its parent; a client and its responsible replica die
between order and write). In a color that lives on this shard alone such an SN
stops every contiguous reader. The replica responsible for the shard fills it
after FILL_AFTER_S in two phases, as CORFU fills holes: it *seals* the range at
every member (from then on a member refuses any grant in it) and collects what
each member has committed there; then it sends the same *fill* to every member,
which stores those entries where it lacks them and a fill marker
(`record_batch.fill`) everywhere else. Sealing first means no member can commit
a late grant in the range after any member filled it, so no SN ever holds two
different entries.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import struct
from collections import Counter, OrderedDict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from flexlog.core import record_batch
from flexlog.core.append_wire import AppendOp
from flexlog.core.errors import Code
from flexlog.core.proto import flexlog_pb2 as pb
from flexlog.core.registry import is_member
from flexlog.core.storage import Committed, StorageEngine, StoredEntry, StoreFull, UnknownToken
from flexlog.core.view import ShardView, View

log = logging.getLogger("flexlog.replica")

REPAIR_AFTER_S = 1.0  # a grant whose prepare has not arrived by then is copied from a peer
PREPARED_TTL_S = 60.0  # a prepare never granted for this long is aborted
RESEND_AFTER_S = 1.0  # an ungranted token this replica is responsible for is re-ordered after this
FILL_AFTER_S = 3.0  # a gap below committed SNs of a shard-local color this old is sealed and filled
SEAL_RETRY_S = 2.0  # a seal not answered by every member by then is tried again
RECENT_TOKENS = 1 << 18  # committed token -> SN remembered for retries and a restarted leaf
REPORT_TOKENS = 1 << 16  # of those, how many go to the leaf when attaching
ORDER_WINDOW = 4  # order batches in flight to the leaf; the rest accumulate into the next one
# A replica serves reads only while it read the view store this recently: one cut off from the
# store may have been removed from the view without knowing (docs/reliability.md, "Leases").
VIEW_LEASE_S = 1.5


class Grant(NamedTuple):
    token: int
    color: int
    sn: int
    count: int
    error: int = 0
    message: str = ""


# A committed entry copied from a peer, with the token it was committed under there (0: unknown).
CopiedEntry = tuple[StoredEntry, int]


# A seal is kept as a prepared entry under a token with bit 63 set (no client's or copy's
# has it), its payload the range: a replica restarted between a seal and its fill would
# otherwise commit a late grant there while its peers store a fill marker.
SEAL_TOKEN_BIT = 1 << 63
_SEAL_RANGE = struct.Struct(">QQ")


def uncovered(start: int, end: int, covered: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ranges of [start, end) that no [s, e) of covered overlaps."""
    out = []
    cursor = start
    for s, e in sorted(covered):
        if s > cursor:
            out.append((cursor, min(s, end)))
        cursor = max(cursor, e)
    if cursor < end:
        out.append((cursor, end))
    return out


def _is_client_token(token: int) -> bool:
    """Clients' tokens have bit 32 set (odd client ids); copies' tokens and 0 do not."""
    return bool(token >> 32 & 1)


class AckSink(Protocol):
    """The client stream an entry arrived on."""

    def ack(self, token: int, sn: int) -> None: ...

    def reject(self, token: int, code: Code, message: str) -> None: ...


class ResultSink(Protocol):
    """The query stream a read arrived on."""

    def answer(self, result: pb.QueryResult) -> None: ...


class ReplicaIO(Protocol):
    """What the protocol asks of its adapter. Each call returns at once; outcomes come back
    as inputs (`repaired`, `copied`/`caught_up`, `sealed`, `apply_fill`)."""

    def flush_soon(self) -> None:
        """Call `flush_orders` once the current burst of inputs is handled."""

    def send_to_leaf(self, message: pb.ReplicaToSequencer) -> None:
        """Write on the leaf stream (only called while attached)."""

    def repair(self, grant: Grant) -> None:
        """Fetch the committed entry at grant.sn from a peer, then call `repaired`."""

    def catch_up(self, epoch: int, peers: list[int]) -> None:
        """Copy what a readable peer has committed (`store_copy`), then call `caught_up`."""

    def copy_gap(self, color: int, start: int, end: int, peers: tuple[int, ...]) -> None:
        """Copy the entries committed in [start, end) from the first of peers that has any
        (`store_copy` each)."""

    def seal(self, color: int, start: int, end: int, members: tuple[int, ...]) -> None:
        """Seal [start, end) at every member (this one too) and call `sealed` with what they
        hold there, or `seal_failed` when one of them did not answer."""

    def fill(self, op: pb.QueryOp, members: tuple[int, ...]) -> None:
        """Send the FILL op to every member, this one included (`apply_fill`)."""


@dataclass(slots=True, eq=False)
class Waiter:
    """A read waiting for its SN to become visible, answered by its deadline at the latest."""

    op: pb.QueryOp
    sink: ResultSink
    deadline: float
    done: bool = False


@dataclass
class ColorView:
    """What readers may see of one color on this replica."""

    prefix: int = 0  # every SN below this is committed here (for shard-local colors)
    high: int = 0  # one past the highest committed SN here
    log_start: int = 0
    ahead: dict[int, int] = field(default_factory=dict)  # committed blocks beyond prefix
    waiters: list[Waiter] = field(default_factory=list)
    shard_local: bool = False  # a writer or reader said so: a gap below high is a hole
    gap_seen: tuple[int, float] | None = None  # (prefix, since) while a gap stays put
    # A family member (its id says so): its SNs are sparse by design, so blocks beyond the
    # prefix never join it and are not kept (they would pile up with every entry).
    sparse: bool = False

    def committed(self, sn: int, end: int) -> bool:
        """Record a committed block; True when the visible tail moved."""
        moved = end > self.high
        self.high = max(self.high, end)
        if sn <= self.prefix:
            self.prefix = max(self.prefix, end)
            while self.prefix in self.ahead:
                self.prefix = self.ahead.pop(self.prefix)
            return True
        if not self.sparse:
            self.ahead[sn] = end
        return moved

    def visible(self, contiguous: bool) -> int:
        return self.prefix if contiguous else self.high

    def gap(self) -> tuple[int, int] | None:
        """The first hole: [prefix, the start of the next committed block)."""
        if not self.ahead:
            return None
        return self.prefix, min(self.ahead)


class _Ungranted(NamedTuple):
    color: int
    owner: int
    count: int
    since: float
    crc: int  # tells this entry apart from another one stored at its SN
    seq: int  # prepare order here: the order the leaf must see this color's entries in


class ReplicaProtocol:
    def __init__(self, shard: int, index: int, engine: StorageEngine, io: ReplicaIO,
                 view: View, incarnation: int, copy_tokens: int, now: float,
                 max_entry_bytes: int) -> None:
        self.shard = shard
        self.index = index
        self.engine = engine
        self.io = io
        self.view = view
        self.incarnation = incarnation
        self.max_entry_bytes = max_entry_bytes
        self.colors: dict[int, ColorView] = {}
        self.attached = False
        self._lease_until = now + VIEW_LEASE_S  # the view was just read to build this replica
        self._now = now  # the time of the latest input: reads woken by a commit check the lease
        self.caught_up_epoch = -1
        self.catching_up = False
        self.stats = {"prepared": 0, "committed": 0, "reads": 0, "trims": 0, "repairs": 0,
                      "fills": 0, "filled_sns": 0, "conflicts": 0}
        self._origin: dict[int, AckSink] = {}
        self._prepared_at: dict[int, float] = {}
        self._early: dict[int, tuple[Grant, float]] = {}
        self._repairing: set[int] = set()
        # Prepared and not granted yet, in prepare order (each client's submission order).
        self._ungranted: dict[int, _Ungranted] = {}
        self._prepare_seq = itertools.count()
        self._to_order: list[tuple[int, int, int, int]] = []
        self._ordering: set[int] = set()  # queued for or sent to the leaf, not answered yet
        # token -> (unresolved count of its batch, the colors the batch holds)
        self._order_batch: dict[int, tuple[list[int], set[int]]] = {}
        self._batches_in_flight = 0
        self._color_batches: Counter[int] = Counter()  # color -> its batches in flight
        self._held: set[int] = set()  # colors refused by a broken link: re-ordered by the sweep
        self._recent: OrderedDict[int, tuple[int, int, int]] = OrderedDict()  # token -> color, sn, count
        self._sealed: dict[int, list[tuple[int, int]]] = {}  # color -> ranges refusing grants
        self._seal_tokens: dict[tuple[int, int, int], int] = {}  # (color, start, end) -> token
        self._next_seal_token = itertools.count(SEAL_TOKEN_BIT | copy_tokens << 33)
        # Prepared entries granted an SN inside a sealed range: the fill decides their outcome.
        self._awaiting_fill: dict[int, Grant] = {}
        # color -> when its seal went out, and to which members
        self._sealing: dict[int, tuple[float, tuple[int, ...]]] = {}
        self._gap_copy: dict[int, float] = {}  # color -> when a copy of its gap was asked for
        self._waiters: list[tuple[float, int, Waiter]] = []  # heap by deadline
        self._waiter_seq = itertools.count()
        # Tokens for entries copied from a peer: bit 32 is 0, which no client token has.
        self._copy_tokens = itertools.count(copy_tokens << 33)
        state = engine.recover()
        for color, cs in state.colors.items():
            self.colors[color] = ColorView(prefix=cs.tail, high=cs.tail, log_start=cs.log_start,
                                           sparse=is_member(color))
        for p in state.prepared:
            if p.token & SEAL_TOKEN_BIT:
                start, end = _SEAL_RANGE.unpack(engine.prepared_payload(p.token))
                self._sealed.setdefault(p.color, []).append((start, end))
                self._seal_tokens[(p.color, start, end)] = p.token
            else:
                self._prepared_at[p.token] = now
        # Persisted with the entries: after a restart of this replica and of its leaf, a
        # re-sent order request for one of these still gets its SN, not a second one.
        for c in state.recent:
            if _is_client_token(c.token):
                self._recent[c.token] = (c.color, c.sn, c.count)
        log.info("replica %d/%d recovered %d colors, %d prepared entries", shard, index,
                 len(self.colors), len(state.prepared))

    # ---- view ----------------------------------------------------------------

    @property
    def shard_view(self) -> ShardView:
        return self.view.shard(self.shard)

    @property
    def epoch(self) -> int:
        return self.shard_view.epoch

    @property
    def readable(self) -> bool:
        """Readable in the view this replica knows (a catch-up source must be)."""
        sv = self.shard_view
        return self.index in sv.readable and sv.knows(self.index, self.incarnation)

    def serves_reads(self, now: float) -> bool:
        """Readable, and that view is recent: the view-store lease has not run out."""
        return self.readable and now <= self._lease_until

    def view_seen(self, now: float) -> None:
        """The adapter read the view store (whether or not the view changed)."""
        self._now = now
        self._lease_until = now + VIEW_LEASE_S

    @property
    def prepared_count(self) -> int:
        return len(self._prepared_at)

    @property
    def waiting_reads(self) -> int:
        return len(self._waiters)

    def _responsible(self) -> bool:
        return self.shard_view.responsible() == self.index

    def color(self, color: int) -> ColorView:
        v = self.colors.get(color)
        if v is None:
            v = self.colors[color] = ColorView(sparse=is_member(color))
        return v

    def view_changed(self, view: View) -> None:
        self.view = view
        sv = self.shard_view
        log.info("replica %d/%d: epoch %d, members %s, readable %s", self.shard, self.index,
                 sv.epoch, sv.members, sv.readable)
        if self.index not in sv.members:
            self.caught_up_epoch = -1
        else:
            self._maybe_catch_up()
        # Responsibility may have moved here: order what the previous responsible replica may not have.
        if self._responsible():
            for token, u in list(self._ungranted.items()):
                self._order(token, u.color, u.owner, u.count)

    def _maybe_catch_up(self) -> None:
        """A member that is not readable copies what it lacks, once per epoch: the controller
        makes it readable only when it caught up at the current epoch."""
        sv = self.shard_view
        if (self.index in sv.members and not self.readable and not self.catching_up
                and self.caught_up_epoch < sv.epoch):
            peers = [i for i in sv.readable if i != self.index]
            self.catching_up = True
            self.io.catch_up(sv.epoch, peers)

    def caught_up(self, epoch: int, ok: bool) -> None:
        """The adapter finished copying what the readable peers had committed at epoch."""
        self.catching_up = False
        sv = self.shard_view
        if ok and self.index in sv.members:
            self.caught_up_epoch = epoch
        self._maybe_catch_up()

    # ---- append path -----------------------------------------------------------

    def prepare(self, ops: Sequence[AppendOp], acks: AckSink, now: float) -> None:
        """Prepare the valid entries of one message with one engine call (one durability
        barrier for all of them), then order each one or commit its early grant."""
        self._now = now
        # Every op of a message passes the loops below: what they touch is looked up once.
        recent, ungranted, origin = self._recent, self._ungranted, self._origin
        valid: list[AppendOp] = []
        for op in ops:
            done = recent.get(op.token)
            if done is not None:
                # A client's retry of an entry committed here already: same SN, stored once.
                acks.ack(op.token, done[1])
            elif op.token in ungranted:
                origin[op.token] = acks  # a retry over a new stream: ack it there
            elif self._valid(op, acks):
                valid.append(op)
        if not valid:
            return
        results = self.engine.prepare_many([(op.token, op.color, op.payload, op.count)
                                            for op in valid])
        early: list[Grant] = []
        failed: Exception | None = None
        prepared_at, early_grants, seq = self._prepared_at, self._early, self._prepare_seq
        ordering, to_order = self._ordering, self._to_order
        responsible = self._responsible()
        prepared, queued = 0, len(to_order)
        local: set[int] = set()  # shard-local colors the message's appends name
        for op, error in zip(valid, results, strict=True):
            token = op.token
            if error is not None:
                if isinstance(error, StoreFull):
                    acks.reject(token, Code.STORE_FULL, str(error))
                else:
                    failed = failed or error
                continue
            prepared += 1
            origin[token] = acks
            prepared_at[token] = now
            ungranted[token] = _Ungranted(op.color, op.owner, op.count, now,
                                          record_batch.crc_of(op.payload), next(seq))
            if op.contiguous:
                local.add(op.color)
            grant = early_grants.pop(token, None)
            if grant is not None:
                early.append(grant[0])
            elif responsible and token not in ordering:
                # _order, for the whole message: one flush_soon below.
                ordering.add(token)
                to_order.append((token, op.color, op.owner, op.count))
        if len(to_order) > queued:
            self.io.flush_soon()
        for color in local:
            self.color(color).shard_local = True
        self.stats["prepared"] += prepared
        if early:
            self._apply_grants(early, now)
        # Not a client error: an engine fault, raised once the rest of the message is settled.
        if failed is not None:
            raise failed

    def _valid(self, op: AppendOp, acks: AckSink) -> bool:
        """Whether op may be stored; rejects it to the client when not."""
        payload = op.payload
        if len(payload) > self.max_entry_bytes:
            acks.reject(op.token, Code.TOO_LARGE,
                        f"entry of {len(payload)} bytes exceeds max_entry_bytes {self.max_entry_bytes}")
            return False
        try:
            records_count = record_batch.check(payload)
        except record_batch.CorruptBatch as exc:
            acks.reject(op.token, Code.INVALID_ENTRY, str(exc))
            return False
        if records_count != op.count or op.count == 0:
            acks.reject(op.token, Code.INVALID_ENTRY,
                        f"count {op.count} does not match the batch's {records_count}")
            return False
        return True

    # ---- order requests to the leaf ----------------------------------------------

    def _order(self, token: int, color: int, owner: int, count: int) -> None:
        if token not in self._ordering:
            self._ordering.add(token)
            self._to_order.append((token, color, owner, count))
            self.io.flush_soon()

    def flush_orders(self) -> None:
        """Send what accumulated as one message, unless ORDER_WINDOW batches are in flight:
        at low load every request leaves at once, under load they leave together.

        A color has at most one batch in flight from here: the owner grants that color's
        batches in the order they arrive, and a batch refused by a broken link is sent again
        before anything newer of its color, so no append overtakes an earlier one.
        """
        if not self._to_order or self._batches_in_flight >= ORDER_WINDOW:
            return
        if not self.attached:
            # Kept ungranted: re-sent once the leaf link is back (or by the sweep).
            for r in self._to_order:
                self._ordering.discard(r[0])
            self._to_order = []
            return
        reqs: list[tuple[int, int, int, int]] = []
        later: list[tuple[int, int, int, int]] = []
        for r in self._to_order:
            if r[0] not in self._ungranted:
                self._ordering.discard(r[0])  # granted or failed while it waited
            elif r[1] in self._held or self._color_batches[r[1]]:
                later.append(r)
            else:
                reqs.append(r)
        self._to_order = later
        if not reqs:
            return
        reqs.sort(key=lambda r: self._ungranted[r[0]].seq)
        batch = [len(reqs)]
        tokens, colors, owners, counts = zip(*reqs, strict=True)
        busy = set(colors)
        for token in tokens:
            self._order_batch[token] = (batch, busy)
        self._color_batches.update(busy)
        self._batches_in_flight += 1
        self.io.send_to_leaf(pb.ReplicaToSequencer(
            shard=self.shard, replica=self.index, tokens=tokens, colors=colors, owners=owners,
            counts=counts, epoch=self.epoch))

    def _order_resolved(self, token: int) -> None:
        self._ordering.discard(token)
        entry = self._order_batch.pop(token, None)
        if entry is not None:
            batch, colors = entry
            batch[0] -= 1
            if batch[0] == 0:
                self._batches_in_flight = max(0, self._batches_in_flight - 1)
                self._color_batches.subtract(colors)
                if self._to_order:
                    self.io.flush_soon()

    def _order_again(self, token: int) -> None:
        """A transient refusal (a link in the tree broke, or the request carried an older
        epoch): the entry stays prepared, and its color waits for the sweep, which orders it
        again ahead of every later entry of the color (if this replica is still responsible)."""
        self._order_resolved(token)
        u = self._ungranted.get(token)
        if u is None:
            return
        keep = []
        for r in self._to_order:
            if r[1] == u.color:
                self._ordering.discard(r[0])
            else:
                keep.append(r)
        self._to_order = keep
        self._held.add(u.color)

    def _release_held(self) -> None:
        """Order every ungranted entry of the held colors again, in prepare order."""
        held = {c for c in self._held if not self._color_batches[c]}
        self._held -= held
        keep = []
        for r in self._to_order:
            if r[1] in held:
                self._ordering.discard(r[0])
            else:
                keep.append(r)
        self._to_order = keep
        if self._responsible():
            for token, u in list(self._ungranted.items()):
                if u.color in held:
                    self._order(token, u.color, u.owner, u.count)

    def hello(self) -> pb.ReplicaToSequencer:
        """The first message on a new leaf stream: tails, and the tokens whose SN this replica
        knows (committed lately, or granted before their prepare came), so a restarted leaf
        neither reuses an SN stored here nor gives one of those entries a second SN."""
        msg = pb.ReplicaToSequencer(
            shard=self.shard, replica=self.index, epoch=self.epoch,
            tails=[pb.ColorTail(color=c, tail=v.high) for c, v in self.colors.items()])
        known = [(t, c, sn, n) for t, (c, sn, n) in list(self._recent.items())[-REPORT_TOKENS:]]
        # Grants held before their prepare arrived: the SN is the token's, committed or not.
        known += [(t, g.color, g.sn, g.count) for t, (g, _) in self._early.items()]
        for token, color, sn, count in known:
            msg.recent_tokens.append(token)
            msg.recent_colors.append(color)
            msg.recent_sns.append(sn)
            msg.recent_counts.append(count)
        return msg

    def leaf_attached(self) -> None:
        """Every replica (not only the responsible one) re-sends what is still ungranted: a
        restarted leaf lost its pending requests, and a grant it sent to some replicas only is
        found again by token. Each replica sends in prepare order, so the first request for
        each token still arrives in each client's submission order."""
        self.attached = True
        for token, u in list(self._ungranted.items()):
            self._order(token, u.color, u.owner, u.count)

    def leaf_lost(self) -> None:
        self.attached = False
        self._order_batch.clear()
        self._ordering.clear()
        self._to_order.clear()
        self._batches_in_flight = 0
        self._color_batches.clear()
        self._held.clear()

    # ---- grants --------------------------------------------------------------------

    def grants(self, grants: list[Grant], now: float) -> None:
        """One message from the leaf: committed grants, then refusals."""
        self._now = now
        ok = [g for g in grants if not g.error]
        if ok:
            self._apply_grants(ok, now)
        for g in grants:
            if g.error in (Code.UNAVAILABLE, Code.STALE_EPOCH):
                self._order_again(g.token)
            elif g.error:
                self._fail(g.token, Code(g.error), g.message)

    def _fail(self, token: int, code: Code, message: str) -> None:
        self._awaiting_fill.pop(token, None)
        self._ungranted.pop(token, None)
        self._order_resolved(token)
        acks = self._origin.pop(token, None)
        self._prepared_at.pop(token, None)
        self.engine.abort(token)
        if acks is not None:
            acks.reject(token, code, message)

    def _apply_grants(self, grants: list[Grant], now: float) -> None:
        """Commit grants with one engine call, then ack and wake readers.

        The leaf grants a token to the whole shard again whenever a replica asks for it, so
        one message may carry the same grant twice: it is applied once."""
        if len({g.token for g in grants}) != len(grants):
            seen: set[int] = set()
            unique = []
            for g in grants:
                if g.token not in seen:
                    seen.add(g.token)
                    unique.append(g)
            grants = unique
        recent, sealed, colors = self._recent, self._sealed, self.colors
        todo = []
        for g in grants:
            view = colors.get(g.color)
            if g.token not in recent and not sealed.get(g.color) and (view is None or g.sn >= view.high):
                todo.append(g)  # nearly every grant: nothing for _settled to handle
            elif not self._settled(g):
                todo.append(g)
        if not todo:
            return
        results = self.engine.commit_many([(g.token, g.sn) for g in todo])
        failed: Exception | None = None
        committed: list[tuple[Grant, Committed]] = []
        for g, entry in zip(todo, results, strict=True):
            if isinstance(entry, UnknownToken):
                # The grant outran the client's prepare to this replica; it may still come.
                self._early[g.token] = (g, now)
            elif isinstance(entry, Exception):
                failed = failed or entry
            else:
                committed.append((g, entry))
        self._committed_all(committed)
        # An engine fault, raised once the other grants of the message are settled.
        if failed is not None:
            raise failed

    def _settled(self, g: Grant) -> bool:
        """A grant that must not be committed as it stands, handled here.

        - its token is committed here already (a re-broadcast after a reconfiguration);
        - its SN lies in a sealed range: the fill decides (`apply_fill`): if some member had
          committed this very entry there, the fill stores it and it is acknowledged, else
          it is refused as filled;
        - its SN is stored here already: by the same entry (copied by a catch-up or a fill)
          it counts as committed; by another entry, the SN was handed out twice and this
          entry must not be acknowledged with it.
        """
        if g.token in self._recent:
            self._early.pop(g.token, None)
            self._order_resolved(g.token)
            return True
        if self._in_sealed(g.color, g.sn, g.sn + g.count):
            self._early.pop(g.token, None)
            if g.token in self._ungranted:
                self._awaiting_fill[g.token] = g
            return True
        view = self.colors.get(g.color)
        if view is None or g.sn >= view.high:
            return False
        stored = self.engine.read(g.color, g.sn)
        if stored is None:
            return False
        u = self._ungranted.get(g.token)
        if u is None:
            # The prepare has not arrived: nothing to compare with. It is ordered again when
            # it comes, and the leaf answers with this same grant.
            self._early.pop(g.token, None)
            return True
        if stored.sn == g.sn and record_batch.crc_of(stored.payload) == u.crc:
            self.engine.abort(g.token)
            self._committed(g, Committed(stored.sn, stored.count))
            return True
        self.stats["conflicts"] += 1
        log.error("replica %d/%d: grant of SN %d of color %d to token %x, but another entry is "
                  "stored there; refusing it", self.shard, self.index, g.sn, g.color, g.token)
        self._fail(g.token, Code.FILLED, f"SN {g.sn} of color {g.color} holds another entry")
        return True

    def _committed(self, g: Grant, entry: Committed) -> None:
        self._committed_all([(g, entry)])

    def _committed_all(self, done: list[tuple[Grant, Committed]]) -> None:
        """After the engine committed them, in order: each entry's order request is answered,
        its token remembered, readers may see it and its client is acked. A message's grants
        all pass here, so what each one touches is looked up once."""
        self.stats["committed"] += len(done)
        prepared_at, ungranted, awaiting_fill = self._prepared_at, self._ungranted, self._awaiting_fill
        recent, origin, order_resolved = self._recent, self._origin, self._order_resolved
        colors = self.colors
        moved: dict[int, ColorView] = {}  # colors whose visible tail moved: readers woken once
        for g, entry in done:
            token = g.token
            order_resolved(token)
            prepared_at.pop(token, None)
            ungranted.pop(token, None)
            awaiting_fill.pop(token, None)
            recent[token] = (g.color, g.sn, g.count)
            if len(recent) > RECENT_TOKENS:
                recent.popitem(last=False)
            view = colors.get(g.color) or self.color(g.color)
            if view.committed(entry.sn, entry.end):
                moved[g.color] = view
            acks = origin.pop(token, None)
            if acks is not None:
                acks.ack(token, g.sn)
        for view in moved.values():
            self._wake(view)

    def _commit_visible(self, color: int, entry: Committed) -> None:
        view = self.color(color)
        if view.committed(entry.sn, entry.end):
            self._wake(view)

    # ---- time --------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Periodic: repair grants whose prepare never came, re-order what is still ungranted,
        abort prepares never ordered, fill holes."""
        self._now = now
        for token, (grant, since) in list(self._early.items()):
            if now - since > REPAIR_AFTER_S and token not in self._repairing:
                self._repairing.add(token)
                self.io.repair(grant)
        if self._held:
            self._release_held()
        # Another replica may have missed this one's grant (its leaf stream broke): asking
        # again makes the leaf send the grant it remembers to the whole shard.
        due = RESEND_AFTER_S if self._responsible() else 2 * RESEND_AFTER_S
        for token, u in list(self._ungranted.items()):
            if now - u.since > due:
                self._order(token, u.color, u.owner, u.count)
        stale = [t for t, since in self._prepared_at.items() if now - since > PREPARED_TTL_S]
        for token in stale:
            log.warning("aborting entry %x: prepared %ds ago and never ordered", token,
                        PREPARED_TTL_S)
            self._fail(token, Code.TIMEOUT, "entry was never ordered")
        self._find_holes(now)
        self._maybe_catch_up()

    def repaired(self, grant: Grant, found: CopiedEntry | None, now: float) -> None:
        """The adapter's answer to `repair`: the entry a peer holds at the grant's SN with its
        token, or None if none had one."""
        self._now = now
        self._repairing.discard(grant.token)
        if found is None or grant.token not in self._early or grant.token in self._recent:
            return
        self._early.pop(grant.token, None)
        if self._in_sealed(grant.color, grant.sn, grant.sn + grant.count):
            return
        entry, token = found
        if record_batch.is_fill(entry.payload) or (token and token != grant.token):
            # The peer holds a fill or another append there: the grant's SN was handed out
            # twice or filled, and the granted append must not be acknowledged with it.
            log.error("replica %d/%d: repair of SN %d of color %d for token %x found another "
                      "entry; copying that one", self.shard, self.index, grant.sn, grant.color,
                      grant.token)
            self.store_copy(grant.color, entry, token)
            return
        payload = entry.payload
        self.engine.prepare(grant.token, grant.color, payload, grant.count)
        self._ungranted[grant.token] = _Ungranted(grant.color, 0, grant.count, now,
                                                  record_batch.crc_of(payload),
                                                  next(self._prepare_seq))
        self._apply_grants([grant], now)
        self.stats["repairs"] += 1
        log.info("repaired SN %d of color %d from a peer", grant.sn, grant.color)

    # ---- holes -----------------------------------------------------------------------------

    def _find_holes(self, now: float) -> None:
        if not self.readable:
            return
        for color, view in self.colors.items():
            gap = view.gap() if view.shard_local else None
            if gap is None:
                view.gap_seen = None
                self._gap_copy.pop(color, None)
                continue
            if view.gap_seen is None or view.gap_seen[0] != gap[0]:
                view.gap_seen = (gap[0], now)
                continue
            age = now - view.gap_seen[1]
            copied = self._gap_copy.get(color)
            if age >= REPAIR_AFTER_S and (copied is None or now - copied >= SEAL_RETRY_S):
                # Peers may have what this replica missed (a grant lost with its leaf stream,
                # the prepare never sent again): copy it before anyone thinks of filling.
                self._gap_copy[color] = now
                peers = tuple(i for i in self.shard_view.readable if i != self.index)
                self.io.copy_gap(color, gap[0], gap[1], peers)
            if age < FILL_AFTER_S or not self._responsible():
                continue
            sent = self._sealing.get(color)
            if sent is not None and now - sent[0] < SEAL_RETRY_S:
                continue
            members = self.shard_view.members
            self._sealing[color] = (now, members)
            log.warning("replica %d/%d: SNs [%d, %d) of color %d missing for %.1fs: sealing them",
                        self.shard, self.index, gap[0], gap[1], color, now - view.gap_seen[1])
            self.io.seal(color, gap[0], gap[1], members)

    def _in_sealed(self, color: int, start: int, end: int) -> bool:
        ranges = self._sealed.get(color)
        return bool(ranges) and any(s < end and start < e for s, e in ranges)

    def seal(self, color: int, start: int, end: int) -> pb.QueryResult:
        """Phase 1 at one member: refuse grants in [start, end) from now on, across restarts
        too, and answer the entries committed there."""
        if (color, start, end) not in self._seal_tokens:
            token = next(self._next_seal_token)
            try:
                self.engine.prepare(token, color, _SEAL_RANGE.pack(start, end), 1)
            except StoreFull as exc:
                return pb.QueryResult(error=Code.STORE_FULL, message=str(exc))
            self._seal_tokens[(color, start, end)] = token
            self._sealed.setdefault(color, []).append((start, end))
        for token, (g, _) in list(self._early.items()):
            if g.color == color and g.sn < end and start < g.sn + g.count:
                del self._early[token]
        result = pb.QueryResult(tail=self.color(color).prefix)
        sn = start
        while sn < end:
            entries = self.engine.read_range(color, sn, 4 << 20)
            entries = [e for e in entries if e.sn < end and e.end > start]
            if not entries:
                break
            for e in entries:
                self._add_entry(result, color, e, with_token=True)
            sn = entries[-1].end
        return result

    def sealed(self, color: int, start: int, end: int, entries: list[CopiedEntry]) -> None:
        """Phase 2 at the sealer: every member answered; one fill for all of them.

        Only if every current member was sealed: one that joined since could commit a late
        grant in the range before the fill reached it. Then a later tick seals again."""
        _, sealed_at = self._sealing.pop(color, (0.0, ()))
        members = self.shard_view.members
        if not set(members) <= set(sealed_at):
            log.info("replica %d/%d: members %s changed since the seal of color %d; sealing again",
                     self.shard, self.index, members, color)
            return
        op = pb.QueryOp(kind=pb.QueryOp.FILL, color=color, sn=start, end=end)
        seen = set()
        for e, token in sorted(entries):
            if e.sn not in seen:
                seen.add(e.sn)
                op.sns.append(e.sn)
                op.counts.append(e.count)
                op.payloads.append(e.payload)
                op.tokens.append(token)
        self.io.fill(op, members)

    def seal_failed(self, color: int) -> None:
        """Not every member answered: tried again by a later tick."""
        log.warning("replica %d/%d: seal of color %d not answered by every member", self.shard,
                    self.index, color)

    def apply_fill(self, op: pb.QueryOp, now: float) -> None:
        """Store what the sealer found in [op.sn, op.end), and fill markers in what is left.

        A family member's fill (`core/family_fill.py`) also names the SNs other members hold:
        those are neither stored nor filled here."""
        self._now = now
        color, start, end = op.color, op.sn, op.end
        for sn, count, payload, token in zip(op.sns, op.counts, op.payloads, op.tokens,
                                             strict=True):
            self.store_copy(color, StoredEntry(sn, count, bytes(payload)), token)
        covered = [(sn, sn + count) for sn, count in
                   [*zip(op.sns, op.counts, strict=True),
                    *zip(op.skip_sns, op.skip_counts, strict=True)]]
        for s, e in uncovered(start, end, covered):
            if self.engine.read(color, s) is None:
                self.store_copy(color, StoredEntry(s, e - s, record_batch.fill(s, e - s)), 0)
                self.stats["fills"] += 1
                self.stats["filled_sns"] += e - s
                log.warning("replica %d/%d: filled SNs [%d, %d) of color %d: ordered, never "
                            "stored", self.shard, self.index, s, e, color)
        # Appends granted an SN in the range that the fill did not store (as theirs) did not
        # happen; those it stored were acknowledged by store_copy.
        for token, g in list(self._awaiting_fill.items()):
            if g.color != color or not start <= g.sn < end:
                continue
            stored = self.engine.read(color, g.sn)
            u = self._ungranted.get(token)
            if (stored is not None and u is not None and stored.sn == g.sn
                    and record_batch.crc_of(stored.payload) == u.crc):
                self.engine.abort(token)  # the fill stored this entry, copied without its token
                self._committed(g, Committed(stored.sn, stored.count))
            else:
                self._fail(token, Code.FILLED, f"SN {g.sn} of color {color} was filled")
        # A seal has nothing left to guard once this fill resolved its whole range (every SN
        # of it is stored here now, or held by another member of the family), or once every
        # SN of it is stored here (a copy overtook an older seal). A late grant there meets
        # the stored entry (`_settled`). The prefix cannot tell: a restarted replica's prefix
        # is its tail, gaps and all.
        kept = []
        for r in self._sealed.get(color, []):
            if (start <= r[0] and r[1] <= end) or self._stored_here(color, *r):
                self.engine.abort(self._seal_tokens.pop((color, *r)))
            else:
                kept.append(r)
        if kept:
            self._sealed[color] = kept
        else:
            self._sealed.pop(color, None)

    def _stored_here(self, color: int, start: int, end: int) -> bool:
        """Whether every SN of [start, end) of the color is stored on this replica."""
        sn = start
        while sn < end:
            entry = self.engine.read(color, sn)
            if entry is None:
                return False
            sn = entry.end
        return True

    def store_copy(self, color: int, entry: StoredEntry, token: int) -> int:
        """Store a committed entry copied from a peer (catch-up, fill, gap copy) with the token
        it was committed under there (0: unknown); 1 if it was new here."""
        stored = self.engine.read(color, entry.sn)
        if stored is not None:
            return 0
        if _is_client_token(token) and token not in self._recent:
            # Stored under the client's token, so this replica reports the append's SN to a
            # restarted leaf even after its own restart. The copy settles the append here too:
            # a peer committed it at this SN, which is the SN the leaf gave its token.
            self._early.pop(token, None)
            self.engine.prepare(token, color, entry.payload, entry.count)
            g = Grant(token, color, entry.sn, entry.count)
            self._committed(g, self.engine.commit(token, entry.sn))
            return 1
        token = next(self._copy_tokens)
        self.engine.prepare(token, color, entry.payload, entry.count)
        self._commit_visible(color, self.engine.commit(token, entry.sn))
        return 1

    # ---- reads -----------------------------------------------------------------------

    def query(self, op: pb.QueryOp, sink: ResultSink, now: float) -> float | None:
        """Answer op now, or park it until its SN is visible; returns the deadline of a parked
        read (the adapter calls `expire_waiters` then)."""
        self._now = now
        if op.contiguous:
            self.color(op.color).shard_local = True
        result = self._answer(op, waited=False, now=now)
        if result is not None:
            sink.answer(result)
            return None
        # Registered in the same step that found the SN invisible: a commit cannot slip between.
        waiter = Waiter(op, sink, now + op.wait_ms / 1000)
        self.color(op.color).waiters.append(waiter)
        heapq.heappush(self._waiters, (waiter.deadline, next(self._waiter_seq), waiter))
        return waiter.deadline

    def expire_waiters(self, now: float) -> None:
        self._now = now
        while self._waiters and self._waiters[0][0] <= now:
            _, _, waiter = heapq.heappop(self._waiters)
            if waiter.done:
                continue
            waiter.done = True
            view = self.colors.get(waiter.op.color)
            if view is not None:
                view.waiters.remove(waiter)
            self._answer_waiter(waiter, now)

    def drop_sink(self, sink: ResultSink) -> None:
        """The query stream ended: its parked reads are forgotten."""
        for view in self.colors.values():
            if view.waiters:
                for w in view.waiters:
                    if w.sink is sink:
                        w.done = True
                view.waiters = [w for w in view.waiters if not w.done]
        self._waiters = [item for item in self._waiters if not item[2].done]
        heapq.heapify(self._waiters)

    def _wake(self, view: ColorView) -> None:
        if not view.waiters:
            return
        keep = []
        for w in view.waiters:
            if w.done:
                continue
            if w.op.sn < view.visible(w.op.contiguous):
                w.done = True
                self._answer_waiter(w, self._now)
            else:
                keep.append(w)
        view.waiters = keep

    def _answer_waiter(self, waiter: Waiter, now: float) -> None:
        result = self._answer(waiter.op, waited=True, now=now)
        assert result is not None
        waiter.sink.answer(result)

    def _answer(self, op: pb.QueryOp, waited: bool, now: float) -> pb.QueryResult | None:
        """The result of op now, or None when it should wait for op.sn to become visible."""
        view = self.color(op.color)
        kind = op.kind
        if kind == pb.QueryOp.TRIM:
            self.engine.trim(op.color, op.sn)
            self.stats["trims"] += 1
            view.log_start = max(view.log_start, op.sn + 1)
            if view.prefix < view.log_start:
                view.prefix = view.log_start
                view.high = max(view.high, view.prefix)
                view.ahead = {s: e for s, e in view.ahead.items() if e > view.prefix}
                self._wake(view)
            return pb.QueryResult(id=op.id, log_start=view.log_start, tail=view.prefix)
        if not self.serves_reads(now):
            # Removed from the view, still catching up, or out of touch with the view store:
            # what it holds may be stale.
            return pb.QueryResult(id=op.id, error=Code.UNAVAILABLE,
                                  message=f"replica {self.shard}/{self.index} is not readable "
                                          "in the current view")
        visible = view.visible(op.contiguous)
        if kind == pb.QueryOp.STATE:
            return pb.QueryResult(id=op.id, log_start=view.log_start, tail=visible)
        if op.sn < view.log_start:
            return pb.QueryResult(id=op.id, error=Code.TRIMMED, log_start=view.log_start,
                                  tail=visible,
                                  message=f"SN {op.sn} of color {op.color} was trimmed "
                                          f"(log start {view.log_start})")
        if op.sn >= visible and op.wait_ms and not waited:
            return None
        return self._read(op, view, visible)

    def _read(self, op: pb.QueryOp, view: ColorView, visible: int) -> pb.QueryResult:
        self.stats["reads"] += 1
        result = pb.QueryResult(id=op.id, log_start=view.log_start, tail=visible)
        if op.kind == pb.QueryOp.READ:
            entry = self.engine.read(op.color, op.sn) if op.sn < visible else None
            if entry is None:
                result.error = Code.NOT_FOUND
                result.message = f"SN {op.sn} of color {op.color} is not stored here"
            else:
                self._add_entry(result, op.color, entry, op.with_tokens)
            return result
        for entry in self.engine.read_range(op.color, op.sn, op.max_bytes):
            if entry.sn >= visible:
                break
            self._add_entry(result, op.color, entry, op.with_tokens)
        return result

    def _add_entry(self, result: pb.QueryResult, color: int, entry: StoredEntry,
                   with_token: bool) -> None:
        result.sns.append(entry.sn)
        result.counts.append(entry.count)
        result.payloads.append(entry.payload)
        if with_token:
            result.tokens.append(self.engine.token_of(color, entry.sn))

    def status(self, detail: bool) -> pb.StatusReply:
        """What the Status RPC answers: typed fields for programs, JSON detail for people."""
        reply = pb.StatusReply(role="replica", ready=self.attached, incarnation=self.incarnation,
                               epoch=self.epoch, caught_up_epoch=self.caught_up_epoch,
                               readable=self.serves_reads(self._now),
                               tiers=[pb.StoreTier(name=t.name, path=t.path, used_bytes=t.used_bytes,
                                                   capacity_bytes=t.capacity_bytes)
                                      for t in self.engine.tiers()])
        if detail:
            reply.detail = json.dumps({
                "shard": self.shard,
                "index": self.index,
                "attached": self.attached,
                "colors": len(self.colors),
                "prepared": self.prepared_count,
                "epoch": self.epoch,
                "readable": reply.readable,
                "caught_up_epoch": self.caught_up_epoch,
                "incarnation": self.incarnation,
                "waiting_grants": len(self._early),
                "awaiting_fill": len(self._awaiting_fill),
                "waiting_reads": len(self._waiters),
                "stats": self.stats,
            })
        return reply

    def color_states(self, start: int, limit: int, bytes_of: Collection[int] = ()) -> pb.ColorsReply:
        """One page of this replica's colors (id >= start), in id order; those in bytes_of with
        their bytes per storage tier."""
        ids = sorted(c for c in self.colors if c >= start)
        page = ids[:limit]
        sizes = self.engine.color_bytes(set(page).intersection(bytes_of)) if bytes_of else {}
        return pb.ColorsReply(
            colors=[pb.ColorState(color=c, log_start=self.colors[c].log_start,
                                  tail=self.colors[c].prefix, high=self.colors[c].high,
                                  tier_bytes=sizes.get(c, []))
                    for c in page],
            more=len(ids) > len(page))
