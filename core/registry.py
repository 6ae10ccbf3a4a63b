"""The color registry, kept as a log in the system color owned by the root.

Each create or delete is one record (JSON) appended to SYSTEM_COLOR; every
process folds the same records in SN order, so all agree on the registry and
it survives restarts. A color's id is the SN of its create record plus one:
unique and never reused. Two concurrent creates of one name are settled by SN
order: the first wins, the later one is ignored by everybody.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from flexlog.core.config import ClusterConfig
from flexlog.core.errors import ColorExists, UnknownColor

SYSTEM_COLOR = 0
SYSTEM_NAME = "__colors"
MAX_NAME_LENGTH = 249


@dataclass(frozen=True)
class ColorInfo:
    id: int
    name: str
    owner: int  # the sequencer node that assigns this color's SNs
    shards: tuple[int, ...]  # where its entries are stored (inside the owner's region)

    @property
    def contiguous(self) -> bool:
        """All its SNs live on one shard, so a replica can tell a gap from the tail."""
        return len(self.shards) == 1


def system_color(config: ClusterConfig) -> ColorInfo:
    return ColorInfo(SYSTEM_COLOR, SYSTEM_NAME, config.root, (config.region(config.root)[0],))


def create_record(name: str, owner: int, shards: tuple[int, ...]) -> bytes:
    return json.dumps({"op": "create", "name": name, "owner": owner, "shards": list(shards)}).encode()


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


class Registry:
    """The folded state of the system color."""

    def __init__(self, config: ClusterConfig) -> None:
        system = system_color(config)
        self.by_name: dict[str, ColorInfo] = {system.name: system}
        self.by_id: dict[int, ColorInfo] = {system.id: system}
        self.applied = 0  # next SN of the system color to apply

    def apply(self, sn: int, value: bytes | None) -> None:
        self.applied = max(self.applied, sn + 1)
        try:
            rec = json.loads(value or b"")
        except ValueError:
            return
        if not isinstance(rec, dict):
            return
        if rec.get("op") == "create" and rec.get("name") not in self.by_name:
            info = ColorInfo(sn + 1, str(rec["name"]), int(rec["owner"]),
                             tuple(int(s) for s in rec["shards"]))
            self.by_name[info.name] = info
            self.by_id[info.id] = info
        elif rec.get("op") == "delete":
            info = self.by_name.get(str(rec.get("name")))
            if info is not None and info.id == rec.get("id"):
                del self.by_name[info.name]
                del self.by_id[info.id]

    def get(self, color: str | int) -> ColorInfo:
        found = self.by_name.get(color) if isinstance(color, str) else self.by_id.get(color)
        if found is None:
            raise UnknownColor(f"unknown color {color!r}")
        return found

    def created(self, name: str, sn: int) -> ColorInfo:
        """The color our create record at sn produced, or ColorExists if an earlier one won."""
        info = self.by_name.get(name)
        if info is None or info.id != sn + 1:
            raise ColorExists(f"color {name!r} already exists")
        return info

    def load(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for info in self.by_id.values():
            for s in info.shards:
                counts[s] = counts.get(s, 0) + 1
        return counts
