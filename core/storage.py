"""The storage engine interface every replica writes through.

A replica's log is a set of *entries*: one append of n records, stored as one
RecordBatch, owning the SN block [sn, sn + count). An entry is first
*prepared* under the client's token (durable, not readable) and later
*committed* to its SN (readable). The in-memory engine (`memory_engine`) and
the persistent-memory engine (`flexlog.pm`) both implement this Protocol.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import NamedTuple, Protocol


class StoreFull(Exception):
    """The engine cannot take another entry; the replica answers with backpressure."""


class UnknownToken(KeyError):
    """A commit or abort named a token that is not prepared."""


class StoredEntry(NamedTuple):
    sn: int
    count: int
    payload: bytes  # a RecordBatch whose baseOffset equals sn once committed

    @property
    def end(self) -> int:
        return self.sn + self.count


class Committed(NamedTuple):
    """Where a commit put an entry: its SN block. The bytes are read() when wanted, so a
    commit copies nothing out of the store (most replicas never serve a given entry)."""

    sn: int
    count: int

    @property
    def end(self) -> int:
        return self.sn + self.count


class PreparedEntry(NamedTuple):
    token: int
    color: int
    count: int


class ColorState(NamedTuple):
    log_start: int  # the first SN not trimmed
    tail: int  # one past the highest committed SN


class CommittedToken(NamedTuple):
    token: int
    color: int
    sn: int
    count: int


class RecoveredState(NamedTuple):
    prepared: list[PreparedEntry]
    colors: dict[int, ColorState]
    # The tokens of each color's latest committed entries (up to RECOVERED_TOKENS_PER_COLOR):
    # a restarted replica tells a restarted leaf which SN those appends already have.
    recent: list[CommittedToken]


# How many of a color's latest committed entries recover() reports with their tokens. Only
# entries still being ordered elsewhere matter (at most a few order batches per color).
RECOVERED_TOKENS_PER_COLOR = 256


# prepare_many's items: (token, color, payload, count), prepare's arguments.
PrepareItem = tuple[int, int, bytes | memoryview, int]
# commit_many's items: (token, sn), commit's arguments.
CommitItem = tuple[int, int]

# The keys every engine's stats() has; the replica exports them as flexlog_replica_<key>.
STORE_USED_BYTES = "store_used_bytes"  # bytes of entries held by the primary store (PM or memory)
STORE_FREE_BYTES = "store_free_bytes"  # bytes the primary store can still take
COMMON_STATS = (STORE_USED_BYTES, STORE_FREE_BYTES)


class Tier(NamedTuple):
    """One place an engine keeps entries. The Status RPC reports them, and the Kafka gateway
    shows each as a log dir, so operators' tools see where a partition's bytes are."""

    name: str  # "memory"; the PM engine's "pm", "cache" and "ssd"
    path: str  # absolute file or directory it lives in; "" when it has none (memory)
    used_bytes: int
    capacity_bytes: int


class StorageEngine(Protocol):
    def prepare(self, token: int, color: int, payload: bytes | memoryview, count: int) -> None:
        """Store an entry durably under token; it is not readable yet. Raises StoreFull.

        A token that is already prepared is left as it is and never refused: a
        retry takes no space, so it is not checked against the capacity.
        """

    def commit(self, token: int, sn: int) -> Committed:
        """Make the prepared entry readable as [sn, sn + count). Raises UnknownToken."""

    def prepare_many(self, items: Sequence[PrepareItem]) -> list[Exception | None]:
        """prepare() of each item in order, made durable together (one barrier for the batch).

        Result i is None when item i is stored (or its token already was, also earlier
        in the same batch), else the exception prepare() would have raised for it
        (StoreFull, ValueError); one item's failure does not affect the others. All
        stored items are durable on return.
        """

    def commit_many(self, items: Sequence[CommitItem]) -> list[Committed | Exception]:
        """commit() of each item in order, made durable together (one barrier for the batch).

        Result i is what commit() returns for item i, or the exception commit() would have raised
        for it (UnknownToken, also for a token committed earlier in the same batch).
        A crash before the call returns leaves either all or none of the batch committed.
        """

    def abort(self, token: int) -> None:
        """Forget a prepared entry that will never be committed."""

    def prepared_payload(self, token: int) -> bytes:
        """The payload a prepared token holds (a replica keeps its seals as prepared entries
        and reads them back after a restart). Raises UnknownToken."""

    def read(self, color: int, sn: int) -> StoredEntry | None:
        """The committed entry containing sn, or None if none is stored here."""

    def token_of(self, color: int, sn: int) -> int:
        """The token the committed entry starting at sn was committed under; 0 when the engine
        no longer keeps it (the PM engine's SSD tier) or no entry starts there."""

    def read_range(self, color: int, from_sn: int, max_bytes: int) -> list[StoredEntry]:
        """Committed entries in SN order from the one containing from_sn, up to max_bytes.

        The first entry is returned even if it alone exceeds max_bytes.
        """

    def trim(self, color: int, sn: int) -> None:
        """Drop every record with SN <= sn: log_start becomes sn + 1."""

    def state(self, color: int) -> ColorState:
        """log_start and tail of a color (0, 0 when nothing was ever stored)."""

    def recover(self) -> RecoveredState:
        """The prepared tokens, per-color state and latest committed tokens the engine holds now.

        A replica calls it once, when it starts on a freshly opened engine, so
        there it is what survived the last shutdown or crash.
        """

    def stats(self) -> dict[str, float]:
        """Gauges and counters for metrics and logs, cheap enough for every scrape.

        Always has the COMMON_STATS keys; an engine may add its own (the PM
        engine's are in docs/storage.md). Counters count since the engine was opened.
        """

    def tiers(self) -> list[Tier]:
        """Where the engine keeps entries, its primary store first, with bytes used and capacity."""

    def color_bytes(self, colors: Collection[int]) -> dict[int, list[int]]:
        """Per color asked for: the payload bytes of its committed entries in each tier, in
        tiers() order. A copy counts in every tier that holds it (the PM engine's DRAM cache
        holds copies of entries that are also in PM or on SSD). Unknown colors get zeros."""

    def close(self) -> None:
        """Release the store; the object is unusable afterwards."""
