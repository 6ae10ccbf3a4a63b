"""A history of client operations against a log, and a checker for it.

Fault tests record what every client observed, operation by operation:

- an append's invocation (client, key, payload), then its outcome: ``ok`` with
  the SN the log acknowledged, ``fail`` when the error proves nothing was
  written, or ``info`` when the outcome is unknown (a timeout, an unreachable
  replica: the entry may still have been written);
- every read: who read (a replica name, a consumer...), key, SN and the payload
  found, or None when nothing was readable at that SN.

``History.check()`` replays them and reports every anomaly a log must not show:

- **lost**: an acknowledged append that a required reader did not read back at
  its SN (nothing there, never read, or a read error);
- **overwritten**: a read returned another payload at an acknowledged SN;
- **conflicting SNs**: one SN acknowledged to two appends, or read with two
  different payloads (from two replicas, or at two times);
- **duplicated payloads**: one payload read at two SNs;
- **phantoms**: a payload read that no append wrote (or one that definitely failed);
- **order violations**: per client and key, an append that was invoked after
  another was acknowledged got a lower SN (one client's appends keep their order).

The keys are opaque strings (a color, a topic-partition); payloads are bytes.
Thread-safe: appends may be recorded from several threads or tasks at once.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class AppendOp:
    id: int
    client: str
    key: str
    payload: bytes
    invoked: float
    completed: float | None = None
    status: str = "pending"  # pending, ok, fail, info
    sn: int | None = None
    error: str = ""


@dataclass
class ReadOp:
    reader: str
    key: str
    sn: int
    payload: bytes | None  # None: nothing readable at sn
    error: str = ""
    at: float = 0.0


@dataclass
class Report:
    acked: int = 0
    indeterminate: int = 0
    failed: int = 0
    reads: int = 0
    lost: list[str] = field(default_factory=list)
    overwritten: list[str] = field(default_factory=list)
    conflicting_sns: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    phantoms: list[str] = field(default_factory=list)
    order_violations: list[str] = field(default_factory=list)

    ANOMALIES = ("lost", "overwritten", "conflicting_sns", "duplicated", "phantoms",
                 "order_violations")

    @property
    def ok(self) -> bool:
        return not any(getattr(self, a) for a in self.ANOMALIES)

    def counts(self) -> dict[str, int]:
        return {a: len(getattr(self, a)) for a in self.ANOMALIES}

    def summary(self, examples: int = 5) -> str:
        head = (f"{self.acked} acknowledged, {self.indeterminate} indeterminate, {self.failed} failed "
                f"appends; {self.reads} reads; anomalies: "
                + ", ".join(f"{a}={n}" for a, n in self.counts().items()))
        lines = [head]
        for a in self.ANOMALIES:
            items = getattr(self, a)
            if items:
                lines.append(f"  {a}: " + "; ".join(items[:examples])
                             + (" ..." if len(items) > examples else ""))
        return "\n".join(lines)


class History:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self.appends: dict[int, AppendOp] = {}
        self.reads: list[ReadOp] = []

    # ---- recording -------------------------------------------------------------

    def invoke(self, client: str, key: str, payload: bytes) -> int:
        with self._lock:
            op = AppendOp(next(self._ids), client, key, payload, time.monotonic())
            self.appends[op.id] = op
            return op.id

    def ok(self, op_id: int, sn: int) -> None:
        self._complete(op_id, "ok", sn=sn)

    def fail(self, op_id: int, error: object) -> None:
        """The append definitely did not happen (e.g. refused before it was sent)."""
        self._complete(op_id, "fail", error=repr(error))

    def info(self, op_id: int, error: object) -> None:
        """The outcome is unknown: the entry may or may not be in the log."""
        self._complete(op_id, "info", error=repr(error))

    def _complete(self, op_id: int, status: str, sn: int | None = None, error: str = "") -> None:
        with self._lock:
            op = self.appends[op_id]
            op.completed, op.status, op.sn, op.error = time.monotonic(), status, sn, error

    def read(self, reader: str, key: str, sn: int, payload: bytes | None, error: object = "") -> None:
        with self._lock:
            self.reads.append(ReadOp(reader, key, sn, payload, repr(error) if error else "",
                                     time.monotonic()))

    # ---- queries ---------------------------------------------------------------

    def acked(self, key: str | None = None) -> list[AppendOp]:
        with self._lock:
            return sorted((op for op in self.appends.values()
                           if op.status == "ok" and (key is None or op.key == key)),
                          key=lambda op: (op.key, op.sn))

    def acked_after(self, t: float) -> int:
        with self._lock:
            return sum(1 for op in self.appends.values()
                       if op.status == "ok" and op.completed is not None and op.invoked >= t)

    # ---- the checker -----------------------------------------------------------

    def check(self, readers: list[str] | None = None) -> Report:
        """Every anomaly in the history. readers: who must have read back every acknowledged
        append (each one is checked separately); None: whoever read anything."""
        with self._lock:
            appends = list(self.appends.values())
            reads = list(self.reads)
        rep = Report(reads=len(reads))
        rep.acked = sum(op.status == "ok" for op in appends)
        rep.indeterminate = sum(op.status in ("info", "pending") for op in appends)
        rep.failed = sum(op.status == "fail" for op in appends)
        if readers is None:
            readers = sorted({r.reader for r in reads})

        # One SN acknowledged to two appends.
        by_sn: dict[tuple[str, int], list[AppendOp]] = defaultdict(list)
        for op in appends:
            if op.status == "ok":
                assert op.sn is not None
                by_sn[(op.key, op.sn)].append(op)
        for (key, sn), ops in sorted(by_sn.items()):
            if len(ops) > 1:
                rep.conflicting_sns.append(
                    f"{key} SN {sn} acknowledged {len(ops)} times: "
                    + ", ".join(f"{o.client}:{_show(o.payload)}" for o in ops))

        # What each reader saw at each SN (the last successful read wins, but all count).
        seen: dict[tuple[str, str, int], list[ReadOp]] = defaultdict(list)
        values_at: dict[tuple[str, int], set[bytes]] = defaultdict(set)
        sns_of: dict[tuple[str, bytes], set[int]] = defaultdict(set)
        for r in reads:
            seen[(r.reader, r.key, r.sn)].append(r)
            if r.payload is not None:
                values_at[(r.key, r.sn)].add(r.payload)
                sns_of[(r.key, r.payload)].add(r.sn)
        for (key, sn), values in sorted(values_at.items()):
            if len(values) > 1:
                rep.conflicting_sns.append(f"{key} SN {sn} read with {len(values)} payloads: "
                                           + ", ".join(sorted(_show(v) for v in values)))
        for (key, payload), sns in sorted(sns_of.items()):
            if len(sns) > 1:
                rep.duplicated.append(f"{key} payload {_show(payload)} at SNs {sorted(sns)}")

        # Lost / overwritten acknowledged appends, per required reader.
        for op in appends:
            if op.status != "ok":
                continue
            for reader in readers:
                got = seen.get((reader, op.key, op.sn))  # type: ignore[arg-type]
                where = f"{op.key} SN {op.sn} ({op.client}:{_show(op.payload)}) at {reader}"
                if not got:
                    rep.lost.append(f"{where}: never read")
                    continue
                found = [r.payload for r in got if r.payload is not None]
                if not found:
                    rep.lost.append(f"{where}: not readable ({got[-1].error or 'nothing there'})")
                elif any(p != op.payload for p in found):
                    other = next(p for p in found if p != op.payload)
                    rep.overwritten.append(f"{where}: read {_show(other)}")

        # Phantoms: payloads nobody (possibly) wrote.
        written = {(op.key, op.payload) for op in appends if op.status != "fail"}
        for (key, payload), sns in sorted(sns_of.items()):
            if (key, payload) not in written:
                rep.phantoms.append(f"{key} payload {_show(payload)} read at SNs {sorted(sns)}")

        # Per client and key: real-time order of acknowledged appends is SN order.
        per_client: dict[tuple[str, str], list[AppendOp]] = defaultdict(list)
        for op in appends:
            if op.status == "ok":
                per_client[(op.client, op.key)].append(op)
        for (client, key), ops in sorted(per_client.items()):
            by_completion = sorted(ops, key=lambda o: o.completed or 0.0)
            done = 0
            highest: AppendOp | None = None  # highest SN acknowledged before `later` was invoked
            for later in sorted(ops, key=lambda o: o.invoked):
                while done < len(by_completion) and (by_completion[done].completed or 0.0) <= later.invoked:
                    if highest is None or (by_completion[done].sn or 0) > (highest.sn or 0):
                        highest = by_completion[done]
                    done += 1
                if highest is not None and (later.sn or 0) <= (highest.sn or 0):
                    rep.order_violations.append(
                        f"{client} on {key}: {_show(later.payload)} got SN {later.sn} after "
                        f"{_show(highest.payload)} was acknowledged at SN {highest.sn}")
        return rep


def _show(payload: bytes) -> str:
    text = payload.decode(errors="replace")
    return text if len(text) <= 40 else text[:37] + "..."
