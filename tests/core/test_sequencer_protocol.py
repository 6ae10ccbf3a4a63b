"""The sequencer's decisions alone (`SequencerProtocol`), driven by hand: no sockets, no clock."""

from __future__ import annotations

import tomllib
from pathlib import Path

from flexlog.core import config as config_mod
from flexlog.core.errors import FlexLogError
from flexlog.core.ordering import ForwardRequest
from flexlog.core.sequencer_protocol import SequencerProtocol, Tail
from flexlog.core.view import ShardView, View

LEAF = 1
COLOR = 5  # owned by the leaf: granted without going up


class Out:
    """One replica's port, or the shard's."""

    def __init__(self) -> None:
        self.grants: list[tuple[int, int, int, int]] = []

    def grant(self, token: int, color: int, sn: int, count: int) -> None:
        self.grants.append((token, color, sn, count))

    def reject(self, token: int, color: int, error: FlexLogError) -> None:
        raise AssertionError(f"refused {token}: {error}")


class NoParent:
    def flush_later(self, node_id: int) -> None:
        raise AssertionError("a leaf-owned color never goes up")

    def forward(self, node_id: int, reqs: list[ForwardRequest]) -> bool:
        return False

    def report_up(self, node_id: int, shard: int, tails: list[Tail]) -> None:
        pass


def leaf() -> SequencerProtocol:
    text = ('data_dir = "/nonexistent"\n[[sequencer]]\nname = "root"\naddress = "127.0.0.1:1"\n'
            'nodes = [{ id = 0 }]\n[[sequencer]]\nname = "leaf"\naddress = "127.0.0.1:2"\n'
            'nodes = [{ id = 1, parent = 0 }]\n[[shard]]\nid = 0\nleaf = 1\n'
            'replicas = ["127.0.0.1:3", "127.0.0.1:4", "127.0.0.1:5"]\n')
    config = config_mod.parse(tomllib.loads(text), Path("/nonexistent/flexlog.toml"))
    view = View({0: ShardView(1, (0, 1, 2), (0, 1, 2))})
    return SequencerProtocol(config, [LEAF], NoParent(), view)


def test_a_replica_attaching_gets_the_grants_it_missed_above_its_tails() -> None:
    """Model finding 2: grants relayed to the shard before a replica's hello was read never
    reached it; if the leaf then died, a new leaf ordered the missed entry again after a
    later one the replica held, reversing one client's appends."""
    p = leaf()
    shard = Out()
    for r in range(3):
        p.replica_hello(0, r, [], [], Out())
    p.order(0, 1, [(100, COLOR, LEAF, 1), (101, COLOR, LEAF, 2)], shard, Out())
    assert shard.grants == [(100, COLOR, 0, 1), (101, COLOR, 1, 2)]

    rejoined = Out()
    p.replica_hello(0, 1, [], [], rejoined)
    assert rejoined.grants == shard.grants  # in the order they were handed out

    holding_the_first = Out()
    p.replica_hello(0, 2, [(COLOR, 1)], [], holding_the_first)
    assert holding_the_first.grants == [(101, COLOR, 1, 2)]

    holding_both = Out()
    p.replica_hello(0, 0, [(COLOR, 3)], [], holding_both)
    assert holding_both.grants == []


def test_a_color_the_replica_does_not_report_counts_from_sn_0() -> None:
    p = leaf()
    for r in range(3):
        p.replica_hello(0, r, [], [], Out())
    p.order(0, 1, [(100, COLOR, LEAF, 1)], Out(), Out())
    other_color = Out()
    p.replica_hello(0, 1, [(COLOR + 1, 0)], [], other_color)
    assert other_color.grants == [(100, COLOR, 0, 1)]
