"""The controller: detects failed replicas and reconfigures their shards through the view.

It asks every replica's Status RPC a few times a second. A replica that has not
answered for failure_timeout_ms is failed, whether it died or is paused
(SIGSTOP answers nothing either). Each change of a shard's membership is a new
view at epoch + 1:

- a failed member leaves the members (and the readable set), unless it is the
  last readable one: with nobody left to serve reads, waiting for it is the only
  safe choice;
- a replica that answers again (restarted or resumed) and is attached to its
  leaf becomes a member that is not readable: written to from now on;
- a member that reports it caught up (`caught_up_epoch`, `replica._catch_up`)
  becomes readable;
- a replica that answers with a new process incarnation was restarted between
  two checks (faster than the timeout): its store may lack what was acknowledged
  while it was down, so it stops being readable and catches up like a returning
  one — unless no readable member kept running (a whole-cluster restart), when
  each recovered store is the best there is.

`flexlog up` runs it as one of its children; `flexlog controller` runs it alone.
There must be one controller per cluster: the view store's compare-and-set makes
a second one fail its writes rather than corrupt the view, not share the work.
"""

from __future__ import annotations

import asyncio
import logging
import time

from flexlog.core.config import ClusterConfig
from flexlog.core.status import ProcessStatus, replica_status
from flexlog.core.view import ShardView, View, ViewConflict, ViewStore, open_store

log = logging.getLogger("flexlog.controller")

CHECK_INTERVAL_S = 0.2
STARTUP_GRACE_S = 10.0  # a replica never seen yet is not failed before this (processes start slowly)


class Controller:
    def __init__(self, config: ClusterConfig, store: ViewStore | None = None,
                 now: float | None = None) -> None:
        self.config = config
        self.store = store or open_store(config)
        self.timeout_s = config.failure_timeout_ms / 1000
        started = (time.monotonic() if now is None else now) + STARTUP_GRACE_S - self.timeout_s
        self.last_ok = {(s.id, r.index): started for s in config.shards for r in s.replicas}

    def decide(self, view: View, statuses: dict[tuple[int, int], ProcessStatus],
               now: float) -> View | None:
        """The next view given what replicas answered, or None when nothing changes."""
        shards = dict(view.shards)
        changed = False
        for shard_id, sv in view.shards.items():
            members, readable = list(sv.members), list(sv.readable)
            incarnations = dict(sv.incarnations)
            restarted = []
            for (sid, index), st in statuses.items():
                incarnation = st.incarnation
                if sid != shard_id or incarnation is None:
                    continue
                if incarnations.get(index, incarnation) != incarnation:
                    restarted.append(index)
                incarnations[index] = incarnation
            if any(i not in restarted for i in readable):
                for index in restarted:
                    if index in readable:
                        readable.remove(index)
                        log.warning("replica %d of shard %d restarted: not readable until caught up",
                                    index, shard_id)
            for index in list(members):
                if now - self.last_ok[(shard_id, index)] > self.timeout_s:
                    if index in readable and len(readable) == 1:
                        continue
                    members.remove(index)
                    if index in readable:
                        readable.remove(index)
                    log.warning("replica %d of shard %d failed: silent for over %.1fs", index,
                                shard_id, self.timeout_s)
            for (sid, index), st in statuses.items():
                if sid != shard_id or not st.ready:
                    continue
                if index not in members:
                    members.append(index)
                    log.info("replica %d of shard %d is back: member, catching up", index, shard_id)
                elif index not in readable and st.caught_up_epoch >= sv.epoch:
                    readable.append(index)
                    log.info("replica %d of shard %d caught up: readable", index, shard_id)
            if ((sorted(members), sorted(readable), incarnations)
                    != (sorted(sv.members), sorted(sv.readable), sv.incarnations)):
                shards[shard_id] = ShardView(sv.epoch + 1, tuple(sorted(members)),
                                             tuple(sorted(readable)), incarnations)
                changed = True
        return View(shards) if changed else None

    async def step(self) -> None:
        view, version = await asyncio.to_thread(self.store.get)
        asks = {(s.id, r.index): replica_status(r, timeout_s=min(0.5, self.timeout_s / 2))
                for s in self.config.shards for r in s.replicas}
        results = await asyncio.gather(*asks.values())
        now = time.monotonic()
        statuses = {}
        for key, st in zip(asks, results, strict=True):
            if st.up:
                self.last_ok[key] = now
                statuses[key] = st
        new = self.decide(view, statuses, now)
        if new is None:
            return
        try:
            version = await asyncio.to_thread(self.store.compare_and_set, new, version)
        except ViewConflict as exc:
            log.warning("view write lost (another controller?): %s", exc)
            return
        log.info("view %d: %s", version, new.to_json())

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.step()
                except Exception:  # a store hiccup must not end failure detection
                    log.exception("controller step failed")
                await asyncio.sleep(CHECK_INTERVAL_S)
        finally:
            self.store.close()
