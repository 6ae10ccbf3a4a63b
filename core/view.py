"""The cluster view: which replicas of each shard are members, which are readable, at which epoch.

The controller (`core/controller.py`) is the only writer. Every replica,
sequencer and client reads it: replicas to know which of them is responsible
for their shard's colors and whether they may serve reads, leaves to know
whose tails they must wait for and which epoch is current, clients whose acks
count.

Two backends behind one small interface: a JSON file replaced by atomic rename
(one machine, the launcher's controller is the only writer) and a ZooKeeper
znode through kazoo (several machines). With no view stored yet, the view is
the config's: every replica a readable member at epoch 0, so a cluster that
runs without a controller behaves exactly as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from flexlog.core.config import ClusterConfig


@dataclass(frozen=True)
class ShardView:
    epoch: int
    members: tuple[int, ...]  # replica indices written to (write-all set)
    readable: tuple[int, ...]  # members caught up: they serve reads and their acks count
    # The process incarnation the controller last saw per replica. A replica whose own
    # incarnation differs was restarted since: it serves no reads until the view knows it.
    incarnations: dict[int, int] = field(default_factory=dict)

    def knows(self, index: int, incarnation: int) -> bool:
        return not self.incarnations or self.incarnations.get(index) == incarnation

    def responsible(self) -> int:
        """The replica that sends the shard's order requests: the first readable member, a
        stable one. One ordered path per color keeps a client's appends to it in submission
        order; one for the whole shard also makes one order batch, so one grant message from
        the leaf, per append message, however many colors it holds (docs/performance.md, "One
        responsible replica per shard")."""
        return (self.readable or self.members)[0]


@dataclass(frozen=True)
class View:
    shards: dict[int, ShardView] = field(default_factory=dict)

    def shard(self, shard_id: int) -> ShardView:
        return self.shards[shard_id]

    def to_json(self) -> str:
        return json.dumps({"shards": {str(s): {"epoch": v.epoch, "members": list(v.members),
                                               "readable": list(v.readable),
                                               "incarnations": {str(i): n for i, n in
                                                                v.incarnations.items()}}
                                      for s, v in sorted(self.shards.items())}}, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> View:
        doc: dict[str, Any] = json.loads(text)
        return View({int(s): ShardView(int(v["epoch"]), tuple(v["members"]), tuple(v["readable"]),
                                       {int(i): int(n) for i, n in v.get("incarnations", {}).items()})
                     for s, v in doc["shards"].items()})


def initial_view(config: ClusterConfig) -> View:
    return View({s.id: ShardView(0, tuple(r.index for r in s.replicas),
                                 tuple(r.index for r in s.replicas)) for s in config.shards})


class ViewConflict(Exception):
    """compare_and_set lost: someone else wrote a newer view first."""


class ViewStore(Protocol):
    def get(self) -> tuple[View, int]:
        """The current view and its version (0: none stored, the config's view)."""

    def compare_and_set(self, view: View, expected_version: int) -> int:
        """Store view if the stored version is still expected_version; the new version.
        Raises ViewConflict otherwise."""

    def close(self) -> None:
        """Release connections."""


class FileViewStore:
    """view.json under data_dir. The version lives in the file; rename makes a write atomic."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.path = config.data_dir / "view.json"
        self._cache: tuple[int, int, View, int] | None = None  # (mtime_ns, size, view, version)

    def get(self) -> tuple[View, int]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return initial_view(self.config), 0
        # Polled every ~100 ms by every process: parse only when the file changed.
        if self._cache is not None and self._cache[:2] == (st.st_mtime_ns, st.st_size):
            return self._cache[2], self._cache[3]
        doc = json.loads(self.path.read_text())
        view = View.from_json(json.dumps(doc["view"]))
        self._cache = (st.st_mtime_ns, st.st_size, view, int(doc["version"]))
        return view, int(doc["version"])

    def compare_and_set(self, view: View, expected_version: int) -> int:
        # The launcher's controller is the only writer, so read-check-rename is enough here.
        _, current = self.get()
        if current != expected_version:
            raise ViewConflict(f"view is at version {current}, not {expected_version}")
        version = current + 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(f"{self.path}.tmp")
        tmp.write_text(json.dumps({"version": version, "view": json.loads(view.to_json())}))
        os.replace(tmp, self.path)
        return version

    def close(self) -> None:
        pass


class ZkViewStore:
    """One znode holding the view JSON; the znode's version is the view's version."""

    def __init__(self, config: ClusterConfig) -> None:
        from kazoo.client import KazooClient

        self.config = config
        self.path = config.zookeeper_path.rstrip("/") + "/view"
        self._zk = KazooClient(hosts=config.zookeeper_hosts, timeout=5.0)
        self._zk.start(timeout=10.0)

    def get(self) -> tuple[View, int]:
        from kazoo.exceptions import NoNodeError

        try:
            data, stat = self._zk.get(self.path)
        except NoNodeError:
            return initial_view(self.config), 0
        # ZooKeeper versions start at 0 on create; ours start at 1 for the first stored view.
        return View.from_json(data.decode()), stat.version + 1

    def compare_and_set(self, view: View, expected_version: int) -> int:
        from kazoo.exceptions import BadVersionError, NodeExistsError

        data = view.to_json().encode()
        try:
            if expected_version == 0:
                self._zk.create(self.path, data, makepath=True)
                return 1
            stat = self._zk.set(self.path, data, version=expected_version - 1)
        except (BadVersionError, NodeExistsError):
            raise ViewConflict(f"view changed since version {expected_version}") from None
        return int(stat.version) + 1

    def close(self) -> None:
        self._zk.stop()
        self._zk.close()


def open_store(config: ClusterConfig) -> ViewStore:
    if config.view_store == "zookeeper":
        return ZkViewStore(config)
    return FileViewStore(config)


VIEW_POLL_S = 0.1


class ViewWatcher:
    """Polls the store and calls on_change with each new view (also ZooKeeper: one get per
    poll is cheaper to reason about than re-arming watches across session loss)."""

    def __init__(self, config: ClusterConfig, on_change: Callable[[View], None],
                 on_contact: Callable[[], None] | None = None) -> None:
        self.store = open_store(config)
        self.view, self.version = self.store.get()
        self._on_change = on_change
        self._on_contact = on_contact  # after every successful read of the store

    async def run(self) -> None:
        """Poll until cancelled; the store is closed then (not on a crash: run is restarted)."""
        log = logging.getLogger("flexlog.view")
        try:
            while True:
                await asyncio.sleep(VIEW_POLL_S)
                try:
                    view, version = await asyncio.to_thread(self.store.get)
                except Exception as exc:  # a store outage must not kill the process: keep the last view
                    log.warning("cannot read the cluster view: %s", exc)
                    continue
                if version != self.version:
                    self.view, self.version = view, version
                    self._on_change(view)
                if self._on_contact is not None:
                    self._on_contact()
        except asyncio.CancelledError:
            self.store.close()
            raise
