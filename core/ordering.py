"""The ordering logic of one sequencer tree node, free of I/O.

A node owns some colors and hands out their SNs from per-color 64-bit
counters; the members of a color family share their family's counter
(`registry.counter_of`: the counter is read off the color id). Requests for
colors owned by an ancestor wait for the node's next forward batch
(`take_forwards`), which carries one request per (color, owner) for the sum
of their counts; the block the parent grants is split among the aggregated
requests in arrival order. The node remembers the end of every
block it handed out or relayed (`tails`, what a restarted parent must continue
above) and fails everything pending when the parent link breaks.

That is all of one node. The decisions around the nodes of a process (when a
node may hand out SNs, when a batch goes up, deduplicating re-sent requests by
token, refusing stale epochs, what a restarted parent learns) belong to
`SequencerProtocol` (`core/sequencer_protocol.py`), and `core/sequencer.py` is
the gRPC/asyncio adapter around that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flexlog.core.errors import FlexLogError, UnknownOwner
from flexlog.core.registry import counter_of

SN_LIMIT = 1 << 64

# Called with the first SN of the granted block, or with the error.
Reply = Callable[[int | FlexLogError], None]


@dataclass(slots=True)
class ForwardRequest:
    id: int
    color: int
    owner: int
    count: int
    requests: int  # how many order requests were aggregated into this one


class OrderingNode:
    def __init__(self, node_id: int, parent: int | None, ancestors: frozenset[int]) -> None:
        self.node_id = node_id
        self.parent = parent
        # Owners this node may forward to; anything else is answered UnknownOwner at once.
        self._ancestors = ancestors
        self.counters: dict[int, int] = {}  # by counter: a color's own, or its family's
        # One past the highest SN granted from above per color, for the colors of ancestors.
        self.relayed: dict[int, int] = {}
        self._pending: dict[tuple[int, int], list[tuple[int, Reply]]] = {}
        self._in_flight: dict[int, list[tuple[int, Reply]]] = {}
        self._forwarded_color: dict[int, int] = {}  # forward id -> its color
        # forward id -> [unresolved forwards of its batch, time the batch went up]
        self._batch_of: dict[int, list[float]] = {}
        self.outstanding = 0  # forward batches sent up and not fully granted
        self._next_forward_id = 0
        # What this node assigned, per color: read by the metrics collector at scrape time.
        self.requests_by_color: dict[int, int] = {}
        self.records_by_color: dict[int, int] = {}

    @property
    def ordered_requests(self) -> int:
        return sum(self.requests_by_color.values())

    @property
    def ordered_records(self) -> int:
        return sum(self.records_by_color.values())

    def learn_tail(self, color: int, tail: int) -> None:
        """Never hand out an SN below what some replica already stores, in this color or in
        any other member of its family."""
        counter = counter_of(color)
        if tail > self.counters.get(counter, 0):
            self.counters[counter] = tail

    def tails(self) -> dict[int, int]:
        """What this node reports to a restarted parent: it must continue above every SN this
        node handed out or relayed, since replicas may have stored them after reporting."""
        tails = dict(self.relayed)
        for color, tail in self.counters.items():
            tails[color] = max(tail, tails.get(color, 0))
        return tails

    def next_sn(self, color: int) -> int:
        return self.counters.get(counter_of(color), 0)

    def submit(self, color: int, owner: int, count: int, reply: Reply) -> bool:
        """Order count SNs of color. Returns True when a forward is now pending."""
        if owner == self.node_id:
            reply(self.assign(color, count))
            return False
        if owner not in self._ancestors:
            reply(UnknownOwner(f"node {owner} is not above node {self.node_id} for color {color}"))
            return False
        self._pending.setdefault((color, owner), []).append((count, reply))
        return True

    def assign(self, color: int, count: int) -> int:
        counter = counter_of(color)
        sn = self.counters.get(counter, 0)
        if sn + count > SN_LIMIT:
            raise OverflowError(f"color {color} ran out of 64-bit SNs")
        self.counters[counter] = sn + count
        self.requests_by_color[color] = self.requests_by_color.get(color, 0) + 1
        self.records_by_color[color] = self.records_by_color.get(color, 0) + count
        return sn

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    def take_forwards(self, now: float = 0.0) -> list[ForwardRequest]:
        """One aggregated request per (color, owner) for everything pending: one batch."""
        if not self._pending:
            return []
        out = []
        batch = [float(len(self._pending)), now]
        for (color, owner), waiters in self._pending.items():
            fid = self._next_forward_id
            self._next_forward_id += 1
            self._in_flight[fid] = waiters
            self._forwarded_color[fid] = color
            self._batch_of[fid] = batch
            out.append(ForwardRequest(fid, color, owner, sum(c for c, _ in waiters), len(waiters)))
        self._pending = {}
        self.outstanding += 1
        return out

    def on_grant(self, forward_id: int, result: int | FlexLogError) -> float | None:
        """Split a granted block among the requests it was aggregated from, in order.

        Returns the time its batch went up when this grant completed the batch.
        """
        waiters = self._in_flight.pop(forward_id, None)
        if waiters is None:
            return None
        color = self._forwarded_color.pop(forward_id)
        batch = self._batch_of.pop(forward_id)
        batch[0] -= 1
        completed = None
        if batch[0] == 0:
            self.outstanding -= 1
            completed = batch[1]
        if isinstance(result, FlexLogError):
            for _, reply in waiters:
                reply(result)
            return completed
        sn = result
        # The tails this node reports to a restarted parent: it must continue above every
        # SN relayed through here, which replicas may have stored since they reported.
        end = sn + sum(count for count, _ in waiters)
        if end > self.relayed.get(color, 0):
            self.relayed[color] = end
        for count, reply in waiters:
            reply(sn)
            sn += count
        return completed

    def fail_in_flight(self, error: FlexLogError) -> None:
        """The parent link broke: every forwarded request fails (clients retry), and so does
        every request still waiting to go up. A request that arrived before the break and
        went up after it could be granted while an earlier one of its color was refused."""
        in_flight, self._in_flight = self._in_flight, {}
        pending, self._pending = self._pending, {}
        self._batch_of.clear()
        self._forwarded_color.clear()
        self.outstanding = 0
        for waiters in [*in_flight.values(), *pending.values()]:
            for _, reply in waiters:
                reply(error)
