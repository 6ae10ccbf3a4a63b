"""Holes in a color family: when a reader fills one, and what each member is told to store.

A family's members take their SNs from one counter, so each member's SNs are sparse and no
replica can tell a missing SN from another member's. Only a reader of the whole family can:
it merges every member and finds an SN that no member holds although the family has gone
past it. Such an SN was ordered and lost before any replica stored it (docs/reliability.md,
"Holes"); left alone it stops the readers of every member at that SN, and so every partition
of an ordered Kafka topic.

A reader that has waited at one SN for FILL_AFTER_S fills it as a replica fills a hole in a
color of its own, in two phases (the I/O is `FlexLogClient._fill_family`):

1. seal [start, end) of every member at every replica of each member's shards: from then on
   they refuse grants there (an append granted such an SN awaits the fill) and answer what
   they committed there;
2. only if every one answered and no shard's members changed: `fill_ops`, one fill per member
   carrying its own entries found in the range (stored where missing) and the SNs the other
   members hold (left alone); every SN that no member holds gets a fill marker in every member,
   so the merged order is gapless whichever members a reader asks. A marker found in one
   member (an earlier reader stopped halfway) holds nothing: the others get markers there.

Only an SN below one some member stores is filled, never one at the family's tail: a
restarted owner learns its counter from what the replicas store, and could hand an SN filled
at the tail out again, to a member created after the seal.

Sealing before filling means no member commits a late grant in the range after a fill, so
no SN ever holds an entry in one member and a marker in another. Two readers filling at once
seal first too, and the second finds what the first stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from flexlog.core import record_batch
from flexlog.core.proto import flexlog_pb2 as pb
from flexlog.core.replica_protocol import CopiedEntry, uncovered

FILL_AFTER_S = 3.0  # as long as a replica waits before filling a hole of its own color
RETRY_S = 2.0  # a fill that did not go through (a replica did not answer) is tried again then
FORGET_S = 30.0  # a stuck position nobody read for this long is forgotten


@dataclass
class _Stuck:
    since: float
    seen: float
    tried: float | None = None


class FamilyGaps:
    """Where readers of each family found nothing to read, and since when."""

    def __init__(self) -> None:
        self._stuck: dict[tuple[int, int], _Stuck] = {}

    def moved(self, family: int, sn: int) -> None:
        """A read of the family from sn found its next entry: no hole there."""
        self._stuck.pop((family, sn), None)

    def due(self, family: int, sn: int, now: float) -> bool:
        """A read of the family found nothing at sn. True when a fill from sn should be tried
        now: readers have waited there for FILL_AFTER_S and no try is under way or recent."""
        for key, s in list(self._stuck.items()):
            if now - s.seen > FORGET_S:
                del self._stuck[key]
        s = self._stuck.setdefault((family, sn), _Stuck(since=now, seen=now))
        s.seen = now
        if now - s.since < FILL_AFTER_S or (s.tried is not None and now - s.tried < RETRY_S):
            return False
        s.tried = now
        return True


def _ranges(entries: Sequence[CopiedEntry]) -> dict[int, CopiedEntry]:
    """One entry per SN (replicas of a member answer the same entries)."""
    out: dict[int, CopiedEntry] = {}
    for entry, token in entries:
        known = out.get(entry.sn)
        if known is None or (not known[1] and token):
            out[entry.sn] = (entry, token)
    return out


def fill_ops(start: int, end: int,
             found: Mapping[int, Sequence[CopiedEntry]]) -> dict[int, pb.QueryOp]:
    """The fill for each member of [start, end), from what the seal found in each member
    (member color -> entries with tokens, from every replica asked)."""
    per_member = {color: _ranges(entries) for color, entries in found.items()}
    ops = {}
    for color, mine in per_member.items():
        op = pb.QueryOp(kind=pb.QueryOp.FILL, color=color, sn=start, end=end)
        for sn in sorted(mine):
            entry, token = mine[sn]
            op.sns.append(entry.sn)
            op.counts.append(entry.count)
            op.payloads.append(entry.payload)
            op.tokens.append(token)
        for other, theirs in per_member.items():
            if other != color:
                for sn in sorted(theirs):
                    entry = theirs[sn][0]
                    # A marker an earlier fill left in another member (its reader stopped
                    # halfway) holds nothing: this member gets a marker there too.
                    if not record_batch.is_fill(entry.payload):
                        op.skip_sns.append(sn)
                        op.skip_counts.append(entry.count)
        ops[color] = op
    return ops


def holes(start: int, end: int, found: Mapping[int, Sequence[CopiedEntry]]) -> list[tuple[int, int]]:
    """The SN ranges in [start, end) where no member holds an entry: what the fill marks."""
    return uncovered(start, end, ((e.sn, e.end) for entries in found.values() for e, _ in entries
                                  if not record_batch.is_fill(e.payload)))
