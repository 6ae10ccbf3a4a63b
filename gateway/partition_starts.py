"""Log starts of ordered topics' partitions, kept by the gateways in ``__log_starts``.

A partition of an ordered topic (docs/ordering.md) is a member of a color
family, and a family is trimmed as a whole (docs/architecture.md, "Color
families"): a reader of one member follows the family's merged chain of SNs,
so trimming one member alone would leave holes the chain cannot tell from SNs
not committed yet. DeleteRecords and retention on such a partition therefore
move a *logical* log start: offsets below it answer as trimmed ones do
(OFFSET_OUT_OF_RANGE, ListOffsets EARLIEST), while the entries stay stored
until every live partition of the family has moved past them; then the family
is trimmed at the lowest logical start of its members (`family_trim_point`).

A partition that gets no records would hold its family's storage at its log
start forever: retention moves a log start only past the partition's own
expired batches, since moving it further would reset caught-up consumers. So
retention also records, for a partition that holds its family, the SN below
which it keeps no record (``empty``: its first kept batch, or where its scan
ended); the family is trimmed at the lowest of each member's start and empty
SN. An offset between a partition's log start and the family's storage start
then holds nothing of the partition, and a Fetch there reads on from the
storage start instead of answering OFFSET_OUT_OF_RANGE (`fetchable`).

Each change is one JSON record ``{"op": "start" | "empty", "color": id,
"offset": o}``, appended and folded before the client is answered. The fold
keeps the highest offset per color and op, so records apply in any order and
twice; a snapshot record carries the whole state, and the log is then trimmed
below the SN it covers, as for committed offsets. Color ids are never reused,
so a topic deleted and created again starts from nothing. Like ``__topics``,
the color is owned by the root: every gateway folds the same records, and they
survive restarts.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Collection, Iterable
from typing import Any

from flexlog.core.client import FlexLogClient
from flexlog.core.errors import FlexLogError, UnknownColor
from flexlog.core.event_log import EventLog, json_record
from flexlog.core.registry import ColorInfo

log = logging.getLogger("flexlog.gateway.partition_starts")

LOG_STARTS_COLOR = "__log_starts"
# Write a snapshot (and trim) once this many moves follow the last one.
SNAPSHOT_EVERY_RECORDS = 1_000


class StartState:
    """The fold of ``__log_starts``; pure, so tests drive it without a cluster."""

    def __init__(self) -> None:
        self.starts: dict[int, int] = {}  # color id -> logical log start
        self.empty: dict[int, int] = {}  # color id -> SN below which the partition keeps nothing
        self.applied = 0  # next SN to apply
        self.since_snapshot = 0  # changes applied after the newest snapshot seen

    @staticmethod
    def _raise(table: dict[int, int], color: int, offset: int) -> None:
        if offset > table.get(color, 0):
            table[color] = offset

    def apply(self, sn: int, value: bytes | None) -> None:
        self.applied = max(self.applied, sn + 1)
        try:
            event = json.loads(value or b"")
            if event["op"] in ("start", "empty"):
                table = self.starts if event["op"] == "start" else self.empty
                self._raise(table, int(event["color"]), int(event["offset"]))
                self.since_snapshot += 1
            elif event["op"] == "snapshot":
                for color, start, empty in event["starts"]:
                    self._raise(self.starts, int(color), int(start))
                    self._raise(self.empty, int(color), int(empty))
                self.since_snapshot = 0
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring malformed log start record at SN %d", sn)

    def start(self, color: int, log_start: int) -> int:
        """A partition's log start: its color's (physical) one, or the logical one if higher."""
        return max(log_start, self.starts.get(color, 0))

    def held(self, color: int) -> int:
        """Where the partition lets its family's storage start: below it, it keeps nothing."""
        return max(self.starts.get(color, 0), self.empty.get(color, 0))

    def snapshot(self, live: Collection[int]) -> dict[str, Any]:
        """The snapshot record of the current state, without colors no longer live: their
        topics are gone, and a new topic of the same name has new colors."""
        colors = sorted(c for c in self.starts.keys() | self.empty.keys() if c in live)
        return {"op": "snapshot", "upto": self.applied,
                "starts": [[c, self.starts.get(c, 0), self.empty.get(c, 0)] for c in colors]}


def family_trim_point(state: StartState, members: Iterable[int], log_start: int) -> int:
    """The SN the family's storage may start at: the lowest of its live members' held SNs.
    A member that recorded nothing (one just added, say) holds the family at its physical
    log_start. Deleted members do not count: their topic is gone, and trimming the family
    trims what they left too."""
    return min((max(state.held(m), log_start) for m in members), default=log_start)


def holds_family(state: StartState, color: int, members: Iterable[int]) -> bool:
    """Whether the partition is (one of) those the family's storage waits for."""
    return state.held(color) <= min((state.held(m) for m in members), default=0)


class PartitionStarts:
    """The partitions' logical log starts and empty SNs as this gateway knows them, kept
    current from ``__log_starts``; the trims of the families they allow."""

    def __init__(self, client: FlexLogClient) -> None:
        self.client = client
        self.state = StartState()
        self.log = EventLog(client, self.state, LOG_STARTS_COLOR)

    async def open(self) -> None:
        await self.log.open()

    def start(self, color: ColorInfo, log_start: int) -> int:
        """The partition's log start given its color's physical log_start."""
        return self.state.start(color.id, log_start)

    def fetchable(self, color: ColorInfo, log_start: int) -> int:
        """The lowest offset a Fetch of the partition is served at, given its color's
        physical log_start. A family's storage is trimmed past a member's logical start only
        where the member keeps nothing, so from its logical start on nothing of it is gone."""
        return self.state.starts.get(color.id, 0) if color.family else log_start

    async def move(self, color: ColorInfo, offset: int) -> None:
        """Move a family member's log start up to offset (stored before this returns), then
        trim the family as far as every member allows."""
        if offset > self.state.starts.get(color.id, 0):
            await self.log.append(json_record({"op": "start", "color": color.id, "offset": offset}))
        try:
            await self.trim_family(color)
        except FlexLogError as exc:
            # The move is stored; retention's next pass trims the family again.
            log.warning("trimming the family of %s failed, retrying later: %s", color.name, exc)

    async def keeps_nothing_below(self, color: ColorInfo, offset: int) -> None:
        """Record that the partition keeps no record below offset, if it holds its family's
        storage there (only then does it matter: one record per retention pass at most),
        and trim the family."""
        members = [m.id for m in self.client.registry.members(color.family)]
        if offset > self.state.held(color.id) and holds_family(self.state, color.id, members):
            await self.log.append(json_record({"op": "empty", "color": color.id, "offset": offset}))
            await self.trim_family(color)

    async def trim_family(self, member: ColorInfo) -> None:
        """Trim member's family below the lowest SN its live members hold it at."""
        # A member added since the last sync (CreatePartitions) must hold the trim too.
        await self.client.sync_registry()
        members = [m.id for m in self.client.registry.members(member.family)]
        log_start, _ = await self.client.state(member)
        point = family_trim_point(self.state, members, log_start)
        if point > log_start:
            await self.client.trim(point - 1, member)
            log.info("trimmed family of %s below SN %d", member.name, point)

    async def compact(self) -> None:
        """Snapshot the fold and trim what the snapshot covers."""
        await self.log.sync()
        # After the sync: every color with a folded move was created before the move was stored.
        await self.client.sync_registry()
        snapshot = self.state.snapshot({c.id for c in self.client.colors()})
        await self.log.append(json_record(snapshot))
        if snapshot["upto"] > 0:
            with contextlib.suppress(UnknownColor):
                await self.client.trim(snapshot["upto"] - 1, self.log.color)
