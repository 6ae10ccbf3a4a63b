"""Color families in the registry fold and at a sequencer node: one counter for several colors."""

from __future__ import annotations

import random
import tomllib
from pathlib import Path

import pytest

from flexlog.core import config as config_mod
from flexlog.core import registry
from flexlog.core.errors import ColorExists, FlexLogError, UnknownColor
from flexlog.core.ordering import OrderingNode
from flexlog.core.registry import Registry, counter_of


def two_shard_config() -> config_mod.ClusterConfig:
    """root 0 above leaves 1 and 2, one shard each."""
    text = "\n\n".join([
        'data_dir = "/nonexistent"',
        '[[sequencer]]\nname = "root"\naddress = "127.0.0.1:1"\nnodes = [{ id = 0 }]',
        '[[sequencer]]\nname = "l1"\naddress = "127.0.0.1:2"\nnodes = [{ id = 1, parent = 0 }]',
        '[[sequencer]]\nname = "l2"\naddress = "127.0.0.1:3"\nnodes = [{ id = 2, parent = 0 }]',
        '[[shard]]\nid = 0\nleaf = 1\nreplicas = ["127.0.0.1:4", "127.0.0.1:5", "127.0.0.1:6"]',
        '[[shard]]\nid = 1\nleaf = 2\nreplicas = ["127.0.0.1:7", "127.0.0.1:8", "127.0.0.1:9"]',
    ])
    return config_mod.parse(tomllib.loads(text), Path("/nonexistent/flexlog.toml"))


def fold(records: list[bytes]) -> Registry:
    reg = Registry(two_shard_config())
    for sn, rec in enumerate(records):
        reg.apply(sn, rec)
    return reg


def test_members_share_the_family_counter_and_keep_the_family_owner() -> None:
    reg = fold([
        registry.family_record("orders", 0, (0, 1)),                   # family id 1
        registry.create_record("plain", 1, (0,)),                      # color id 2
        registry.create_record("orders-0", 0, (0,), family=1),
        registry.create_record("orders-1", 0, (1,), family=1),
    ])
    fam = reg.family("orders")
    a, b = reg.get("orders-0"), reg.get("orders-1")
    assert fam.id == 1 and reg.get("plain").id == 2
    assert a.id != b.id and counter_of(a.id) == counter_of(b.id) == fam.key
    assert counter_of(reg.get("plain").id) == 2
    assert (a.owner, b.owner) == (0, 0) and (a.family, b.family) == (1, 1)
    assert not a.contiguous, "a member's SNs are sparse even on one shard"
    assert reg.get(a.id) is a and reg.members(1) == [a, b]
    assert reg.created("orders-1", 3) is b
    with pytest.raises(ColorExists):
        reg.created("orders-1", 2)


def test_member_ids_are_never_reused_and_deleted_members_stay_in_the_order() -> None:
    reg = fold([
        registry.family_record("g", 0, (0, 1)),
        registry.create_record("m", 0, (0,), family=1),
    ])
    first = reg.get("m")
    reg.apply(2, registry.delete_record("m", first.id))
    reg.apply(3, registry.create_record("m", 0, (0,), family=1))
    again = reg.get("m")
    assert again.id != first.id
    assert reg.members(1) == [again]
    assert reg.members_of[1] == [first, again], "a reader of the order still reads its entries"
    reg.apply(4, registry.delete_family_record("g", 1))
    assert reg.family("g").id == 1, "a family with live members is kept"
    reg.apply(5, registry.delete_record("m", again.id))
    reg.apply(6, registry.delete_family_record("g", 1))
    with pytest.raises(UnknownColor):
        reg.family("g")


def test_records_everybody_ignores() -> None:
    reg = fold([
        registry.family_record("g", 1, (0,)),
        registry.family_record("g", 0, (0, 1)),              # the name is taken: ignored
        registry.create_record("outside", 1, (1,), family=1),  # shard 1 is not the family's
        registry.create_record("orphan", 1, (0,), family=77),  # no such family
    ])
    assert reg.family("g").shards == (0,)
    for name in ("outside", "orphan"):
        with pytest.raises(UnknownColor):
            reg.get(name)
    with pytest.raises(ColorExists):
        reg.family_created("g", 1)


def test_member_placement_stays_inside_the_family() -> None:
    fam = registry.FamilyInfo(1, "g", 0, (0, 1))
    assert registry.check_member_placement("x", fam, None, {0: 3, 1: 1}, []) == (1,)
    member = registry.ColorInfo(fam.key | 1, "m", 0, (1,), 1)
    assert registry.check_member_placement("x", fam, None, {0: 3, 1: 1}, [member]) == (0,), \
        "members spread over the family's shards first"
    assert registry.check_member_placement("x", fam, (0,), {}, []) == (0,)
    narrow = registry.FamilyInfo(1, "g", 1, (0,))
    with pytest.raises(ValueError, match="not all among"):
        registry.check_member_placement("x", narrow, (1,), {}, [])


def test_a_node_never_hands_out_an_sn_any_member_stored() -> None:
    """After a restart the node learns each member's tail; the family continues above all."""
    key = registry.family_key(5)
    a, b, c = key | 1, key | 2, key | 3
    node = OrderingNode(1, None, frozenset())
    rng = random.Random(7)
    stored: dict[int, list[int]] = {a: [], b: [], c: []}
    for _ in range(200):
        color = rng.choice([a, b, c])
        stored[color].append(node.assign(color, rng.randint(1, 4)))
    sns = sorted(sn for s in stored.values() for sn in s)
    assert len(set(sns)) == len(sns), "no SN handed out twice across the family"
    restarted = OrderingNode(1, None, frozenset())
    # Replicas report per color; only c holds the family's highest SN.
    for color in (a, b):
        restarted.learn_tail(color, max(stored[color]) + 1)
    restarted.learn_tail(c, node.next_sn(c))
    assert restarted.next_sn(a) == node.next_sn(a)
    assert restarted.assign(a, 1) >= max(sns) + 1
    assert restarted.next_sn(7) == 0, "a plain color keeps a counter of its own"


def test_relayed_family_blocks_are_what_a_restarted_parent_continues_above() -> None:
    key = registry.family_key(3)
    root = OrderingNode(0, None, frozenset())
    leaf = OrderingNode(1, 0, frozenset({0}))
    got: list[int | FlexLogError] = []
    for color in (key | 1, key | 2, key | 1):
        leaf.submit(color, 0, 2, got.append)
    for f in leaf.take_forwards():
        root.submit(f.color, f.owner, f.count, lambda r, fid=f.id: leaf.on_grant(fid, r))
    assert sorted(got) == [0, 2, 4]  # type: ignore[type-var]
    restarted = OrderingNode(0, None, frozenset())
    for color, tail in leaf.tails().items():
        restarted.learn_tail(color, tail)
    assert restarted.next_sn(key | 9) == 6
