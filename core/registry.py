"""The color registry, kept as a log in the system color owned by the root.

Each create or delete is one record (JSON) appended to SYSTEM_COLOR; every
process folds the same records in SN order, so all agree on the registry and
it survives restarts. A color's id is the SN of its create record plus one:
unique and never reused. Two concurrent creates of one name are settled by SN
order: the first wins, the later one is ignored by everybody.

A *family* is a set of colors that share one SN counter at the family's owner,
so that their SNs together form one total order (each member's own SNs are
sparse). A family record creates the family (its id is the SN of its record
plus one, like a color's); a member's create record names the family, and the
member's id is derived from the family's: `family_key(fid) | index`. Any
process can thus tell a member's counter from its id alone (`counter_of`):
the sequencer counts per counter and learns a restarted counter from the
tails of every member, without knowing the registry.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flexlog.core.config import ClusterConfig
from flexlog.core.errors import ColorExists, UnknownColor

SYSTEM_COLOR = 0
SYSTEM_NAME = "__colors"
MAX_NAME_LENGTH = 249
# Member ids of families: bit 62 set, the family's id above bit 20, the member's index below.
# Plain color ids are SNs of the system color plus one, far below bit 62.
FAMILY_BIT = 1 << 62
MEMBER_BITS = 20
MAX_FAMILY_ID = (1 << (62 - MEMBER_BITS)) - 1
MAX_MEMBERS = (1 << MEMBER_BITS) - 1  # index 0 is the family's counter itself, never a color


def family_key(family_id: int) -> int:
    """The counter id of a family: what its owner counts SNs under."""
    return FAMILY_BIT | family_id << MEMBER_BITS


def is_member(color: int) -> bool:
    """Whether the color belongs to a family (its id says so, no registry needed)."""
    return bool(color & FAMILY_BIT)


def counter_of(color: int) -> int:
    """The counter a color takes its SNs from: its family's, or its own."""
    if is_member(color):
        return color >> MEMBER_BITS << MEMBER_BITS
    return color


@dataclass(frozen=True)
class ColorInfo:
    id: int
    name: str
    owner: int  # the sequencer node that assigns this color's SNs
    shards: tuple[int, ...]  # where its entries are stored (inside the owner's region)
    family: int = 0  # the id of its family, 0 for a color with a counter of its own

    @property
    def contiguous(self) -> bool:
        """All its SNs live on one shard and no other color takes SNs from its counter, so a
        replica can tell a gap from the tail."""
        return len(self.shards) == 1 and not self.family


@dataclass(frozen=True)
class FamilyInfo:
    id: int
    name: str
    owner: int  # the sequencer node that holds the family's counter
    shards: tuple[int, ...]  # where its members may be stored (inside the owner's region)

    @property
    def key(self) -> int:
        return family_key(self.id)


def system_color(config: ClusterConfig) -> ColorInfo:
    return ColorInfo(SYSTEM_COLOR, SYSTEM_NAME, config.root, (config.region(config.root)[0],))


def create_record(name: str, owner: int, shards: tuple[int, ...], family: int = 0) -> bytes:
    rec: dict[str, object] = {"op": "create", "name": name, "owner": owner, "shards": list(shards)}
    if family:
        rec["family"] = family
    return json.dumps(rec).encode()


def family_record(name: str, owner: int, shards: tuple[int, ...]) -> bytes:
    return json.dumps({"op": "family", "name": name, "owner": owner,
                       "shards": list(shards)}).encode()


def delete_family_record(name: str, family_id: int) -> bytes:
    return json.dumps({"op": "delete_family", "name": name, "id": family_id}).encode()


def delete_record(name: str, color_id: int) -> bytes:
    return json.dumps({"op": "delete", "name": name, "id": color_id}).encode()


def check_placement(config: ClusterConfig, name: str, owner: int | None,
                    shards: tuple[int, ...] | None, load: dict[int, int]) -> tuple[int, tuple[int, ...]]:
    """Validate (or choose) a color's owner and shards. load counts colors per shard."""
    if not name or len(name) > MAX_NAME_LENGTH or name == SYSTEM_NAME:
        raise ValueError(f"invalid color name {name!r}")
    if owner is not None and owner not in config.nodes:
        raise ValueError(f"unknown sequencer node {owner}")
    if owner is None and shards is None:
        shard = min((s.id for s in config.shards), key=lambda s: (load.get(s, 0), s))
        return config.shard(shard).leaf, (shard,)
    if owner is None:
        assert shards is not None
        # The lowest node whose region holds every requested shard orders the color.
        candidates = [n for n in config.ancestors(config.shard(shards[0]).leaf)
                      if set(shards) <= set(config.region(n))]
        if not candidates:
            raise ValueError(f"no sequencer node covers shards {shards}")
        return candidates[0], tuple(shards)
    region = config.region(owner)
    if shards is None:
        return owner, region
    if not shards or not set(shards) <= set(region):
        raise ValueError(f"shards {shards} are not all in the region {region} of node {owner}")
    return owner, tuple(shards)


def check_member_placement(name: str, family: FamilyInfo, shards: tuple[int, ...] | None,
                           load: dict[int, int], members: Sequence[ColorInfo]) -> tuple[int, ...]:
    """Validate (or choose) a family member's shards: inside the family's. The default is the
    family's shard with the fewest live members, so members spread their writes, then the
    least loaded one."""
    if not name or len(name) > MAX_NAME_LENGTH or name == SYSTEM_NAME:
        raise ValueError(f"invalid color name {name!r}")
    if shards is None:
        mine = Counter(s for m in members for s in m.shards)
        return (min(family.shards, key=lambda s: (mine[s], load.get(s, 0), s)),)
    if not shards or not set(shards) <= set(family.shards):
        raise ValueError(f"shards {shards} are not all among the shards {family.shards} "
                         f"of family {family.name!r}")
    return tuple(shards)


class Registry:
    """The folded state of the system color."""

    def __init__(self, config: ClusterConfig) -> None:
        system = system_color(config)
        self.by_name: dict[str, ColorInfo] = {system.name: system}
        self.by_id: dict[int, ColorInfo] = {system.id: system}
        self.families: dict[str, FamilyInfo] = {}
        self.family_by_id: dict[int, FamilyInfo] = {}
        # family id -> every member it ever had, deleted ones too: a reader of the family's
        # order must still see their entries to tell their SNs from SNs not stored yet.
        self.members_of: dict[int, list[ColorInfo]] = {}
        # family id -> the index its next member gets: never reused, so neither are member ids
        self._next_member: dict[int, int] = {}
        self._created_at: dict[int, int] = {}  # color id -> SN of its create record
        self.applied = 0  # next SN of the system color to apply

    def apply(self, sn: int, value: bytes | None) -> None:
        self.applied = max(self.applied, sn + 1)
        try:
            rec = json.loads(value or b"")
        except ValueError:
            return
        if not isinstance(rec, dict):
            return
        op = rec.get("op")
        if op == "create" and rec.get("name") not in self.by_name:
            self._create(sn, rec)
        elif op == "delete":
            info = self.by_name.get(str(rec.get("name")))
            if info is not None and info.id == rec.get("id"):
                del self.by_name[info.name]
                del self.by_id[info.id]
                self._created_at.pop(info.id, None)
        elif op == "family" and rec.get("name") not in self.families and sn + 1 <= MAX_FAMILY_ID:
            fam = FamilyInfo(sn + 1, str(rec["name"]), int(rec["owner"]),
                             tuple(int(s) for s in rec["shards"]))
            self.families[fam.name] = fam
            self.family_by_id[fam.id] = fam
            self.members_of[fam.id] = []
            self._next_member[fam.id] = 1
        elif op == "delete_family":
            fam = self.families.get(str(rec.get("name")))
            # A family with live members keeps its counter: their SNs must stay in one order.
            if (fam is not None and fam.id == rec.get("id")
                    and not any(m.id in self.by_id for m in self.members_of[fam.id])):
                del self.families[fam.name]
                del self.family_by_id[fam.id]
                del self.members_of[fam.id]

    def _create(self, sn: int, rec: dict[str, Any]) -> None:
        shards = tuple(int(s) for s in rec["shards"])
        fid = int(rec.get("family", 0))
        if not fid:
            info = ColorInfo(sn + 1, str(rec["name"]), int(rec["owner"]), shards)
        else:
            fam = self.family_by_id.get(fid)
            index = self._next_member.get(fid, 0)
            # A member of a deleted family, or placed outside it, is ignored by everybody.
            if fam is None or index > MAX_MEMBERS or not set(shards) <= set(fam.shards):
                return
            self._next_member[fid] = index + 1
            info = ColorInfo(fam.key | index, str(rec["name"]), fam.owner, shards, fid)
            self.members_of[fid].append(info)
        self.by_name[info.name] = info
        self.by_id[info.id] = info
        self._created_at[info.id] = sn

    def get(self, color: str | int) -> ColorInfo:
        found = self.by_name.get(color) if isinstance(color, str) else self.by_id.get(color)
        if found is None:
            raise UnknownColor(f"unknown color {color!r}")
        return found

    def created(self, name: str, sn: int) -> ColorInfo:
        """The color our create record at sn produced, or ColorExists if an earlier one won."""
        info = self.by_name.get(name)
        if info is None or self._created_at.get(info.id) != sn:
            raise ColorExists(f"color {name!r} already exists")
        return info

    def family(self, family: str | int) -> FamilyInfo:
        found = (self.families.get(family) if isinstance(family, str)
                 else self.family_by_id.get(family))
        if found is None:
            raise UnknownColor(f"unknown family {family!r}")
        return found

    def family_created(self, name: str, sn: int) -> FamilyInfo:
        """The family our record at sn produced, or ColorExists if an earlier one won."""
        fam = self.families.get(name)
        if fam is None or fam.id != sn + 1:
            raise ColorExists(f"family {name!r} already exists")
        return fam

    def members(self, family_id: int) -> list[ColorInfo]:
        """The family's live members, in creation order."""
        return [m for m in self.members_of.get(family_id, []) if m.id in self.by_id]

    def load(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for info in self.by_id.values():
            for s in info.shards:
                counts[s] = counts.get(s, 0) + 1
        return counts
