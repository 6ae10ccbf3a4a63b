"""The KIP-848 consumer-group state machine, driven with simulated time (no I/O)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from flexlog.gateway.consumer_group import (
    NOTHING,
    ConsumerGroupCoordinator,
    ConsumerGroupState,
    HeartbeatReply,
    HeartbeatRequest,
    MemberState,
    Partitions,
    assign_range,
    assign_uniform,
)
from flexlog.gateway.protocol import ErrorCode

TOPICS = {"t": 6}
SESSION_MS = 45_000
REBALANCE_MS = 60_000


def ids() -> object:
    counter = iter(range(1_000_000))
    return lambda: f"m{next(counter)}"


def coordinator() -> ConsumerGroupCoordinator:
    return ConsumerGroupCoordinator(session_timeout_ms=SESSION_MS, heartbeat_interval_ms=500,
                                    new_member_id=ids())  # type: ignore[arg-type]


def parts(*numbers: int, topic: str = "t") -> Partitions:
    return frozenset((topic, n) for n in numbers)


def join(c: ConsumerGroupCoordinator, now: int = 0, topics: tuple[str, ...] = ("t",), member_id: str = "",
         assignor: str | None = None, instance_id: str | None = None,
         metadata: dict[str, int] | None = None) -> HeartbeatReply:
    return c.heartbeat(now, HeartbeatRequest(
        "g", member_id, 0, instance_id=instance_id, rebalance_timeout_ms=REBALANCE_MS,
        subscribed_topic_names=topics, server_assignor=assignor, owned=NOTHING), metadata or TOPICS)


def beat(c: ConsumerGroupCoordinator, member_id: str, epoch: int, owned: Partitions | None,
         now: int = 0, metadata: dict[str, int] | None = None,
         instance_id: str | None = None) -> HeartbeatReply:
    return c.heartbeat(now, HeartbeatRequest("g", member_id, epoch, instance_id=instance_id, owned=owned),
                       metadata or TOPICS)


def two_members(c: ConsumerGroupCoordinator, now: int = 0, **join_args: str) -> tuple[Partitions, Partitions]:
    """m0 and m1 joined one after the other, reconciled at epoch 2: (m0's, m1's partitions)."""
    first = join(c, now, instance_id=join_args.get("a"))
    join(c, now, instance_id=join_args.get("b"))
    keep = beat(c, "m0", 1, first.assignment, now).assignment
    assert keep is not None
    beat(c, "m0", 1, keep, now)
    given = beat(c, "m1", 2, NOTHING, now).assignment
    assert given is not None and keep | given == parts(0, 1, 2, 3, 4, 5)
    return keep, given


def test_a_lone_member_gets_every_partition_at_the_first_epoch() -> None:
    c = coordinator()
    reply = join(c)
    assert (reply.error, reply.member_id, reply.member_epoch) == (ErrorCode.NONE, "m0", 1)
    assert reply.assignment == parts(0, 1, 2, 3, 4, 5)
    assert reply.heartbeat_interval_ms == 500
    assert c.state("g") == ConsumerGroupState.STABLE


def test_a_partition_moves_only_after_its_owner_revoked_it() -> None:
    c = coordinator()
    first = join(c)
    second = join(c)
    # The newcomer is at the new epoch with nothing yet: all six are still the first member's.
    assert second.member_epoch == 2 and second.assignment == NOTHING
    keep = beat(c, "m0", 1, first.assignment)
    assert keep.member_epoch == 1 and keep.assignment is not None and len(keep.assignment) == 3
    assert c.group("g").members["m0"].state == MemberState.UNREVOKED_PARTITIONS  # type: ignore[union-attr]
    # The newcomer asks again before the release: still nothing.
    assert beat(c, "m1", 2, NOTHING).assignment is None
    # The first member's next heartbeat shows the release; it reaches epoch 2.
    released = beat(c, "m0", 1, keep.assignment)
    assert released.member_epoch == 2
    got = beat(c, "m1", 2, NOTHING)
    assert got.assignment == parts(0, 1, 2, 3, 4, 5) - keep.assignment
    assert c.state("g") == ConsumerGroupState.STABLE


def test_leaving_frees_the_partitions_for_the_others() -> None:
    c = coordinator()
    _, given = two_members(c)
    left = beat(c, "m0", -1, None)
    assert (left.error, left.member_epoch) == (ErrorCode.NONE, -1)
    reply = beat(c, "m1", 2, given)
    assert (reply.member_epoch, reply.assignment) == (3, parts(0, 1, 2, 3, 4, 5))


def test_the_range_assignor_is_chosen_by_the_members() -> None:
    c = coordinator()
    join(c, assignor="range")
    join(c, assignor="range")
    assert c.group("g").assignor == "range"  # type: ignore[union-attr]
    assert c.group("g").target == {"m0": parts(0, 1, 2), "m1": parts(3, 4, 5)}  # type: ignore[union-attr]


@pytest.mark.parametrize(("request_", "error"), [
    (HeartbeatRequest("", "", 0, rebalance_timeout_ms=1, subscribed_topic_names=("t",), owned=NOTHING),
     ErrorCode.INVALID_REQUEST),
    (HeartbeatRequest("g", "", 0, subscribed_topic_names=("t",), owned=NOTHING), ErrorCode.INVALID_REQUEST),
    (HeartbeatRequest("g", "", 0, rebalance_timeout_ms=1, owned=NOTHING), ErrorCode.INVALID_REQUEST),
    (HeartbeatRequest("g", "", 0, rebalance_timeout_ms=1, subscribed_topic_names=("t",), owned=parts(1)),
     ErrorCode.INVALID_REQUEST),
    (HeartbeatRequest("g", "", 3), ErrorCode.INVALID_REQUEST),
    (HeartbeatRequest("g", "m", -3), ErrorCode.INVALID_REQUEST),
    (HeartbeatRequest("g", "m", -2), ErrorCode.INVALID_REQUEST),
    (HeartbeatRequest("g", "", 0, rebalance_timeout_ms=1, subscribed_topic_names=("t",), owned=NOTHING,
                      server_assignor="sticky"), ErrorCode.UNSUPPORTED_ASSIGNOR),
    (HeartbeatRequest("g", "nobody", 4), ErrorCode.UNKNOWN_MEMBER_ID),
])
def test_bad_heartbeats_get_kafkas_errors(request_: HeartbeatRequest, error: ErrorCode) -> None:
    assert coordinator().heartbeat(0, request_, TOPICS).error == error


def test_epochs_ahead_or_behind_are_fenced_but_a_lost_answer_is_tolerated() -> None:
    c = coordinator()
    join(c)
    assert beat(c, "m0", 2, None).error == ErrorCode.FENCED_MEMBER_EPOCH
    join(c)
    keep = beat(c, "m0", 1, parts(0, 1, 2, 3, 4, 5)).assignment
    assert keep is not None
    beat(c, "m0", 1, keep)  # now at epoch 2
    # The answer naming epoch 2 was lost: epoch 1 with a subset of its partitions is fine.
    assert beat(c, "m0", 1, keep).member_epoch == 2
    assert beat(c, "m0", 1, None).error == ErrorCode.FENCED_MEMBER_EPOCH
    assert beat(c, "m0", 0, None).error == ErrorCode.INVALID_REQUEST


def test_a_member_that_stops_heartbeating_is_removed_after_its_session() -> None:
    c = coordinator()
    keep, _ = two_members(c)
    beat(c, "m0", 2, keep, now=SESSION_MS - 1)
    assert c.tick(SESSION_MS, TOPICS) == ["m1"]
    assert c.next_deadline() == 2 * SESSION_MS - 1
    assert beat(c, "m1", 2, NOTHING, now=SESSION_MS).error == ErrorCode.UNKNOWN_MEMBER_ID
    assert beat(c, "m0", 2, keep, now=SESSION_MS).assignment == parts(0, 1, 2, 3, 4, 5)


def test_a_member_that_does_not_revoke_in_its_rebalance_timeout_is_fenced() -> None:
    c = coordinator()
    join(c)
    join(c)
    beat(c, "m0", 1, parts(0, 1, 2, 3, 4, 5), now=10)
    beat(c, "m1", 2, NOTHING, now=REBALANCE_MS)
    assert c.tick(REBALANCE_MS + 10, TOPICS) == ["m0"]
    assert beat(c, "m1", 2, NOTHING, now=REBALANCE_MS + 10).assignment == parts(0, 1, 2, 3, 4, 5)


def test_a_static_member_keeps_its_partitions_across_a_restart() -> None:
    c = coordinator()
    keep, given = two_members(c, a="a", b="b")
    assert beat(c, "m1", -2, None, instance_id="b").member_epoch == -2
    # While it is away its partitions go to no one, and its instance id is taken.
    assert beat(c, "m0", 2, keep).assignment is None
    back = join(c, instance_id="b")  # same instance, restarted: m2
    assert (back.error, back.member_epoch, back.assignment) == (ErrorCode.NONE, 2, given)
    group = c.group("g")
    assert group is not None and set(group.members) == {"m0", "m2"} and group.epoch == 2
    assert join(c, instance_id="b").error == ErrorCode.UNRELEASED_INSTANCE_ID


def test_a_static_member_away_past_its_session_is_removed() -> None:
    c = coordinator()
    join(c, instance_id="a")
    beat(c, "m0", -2, None, now=5, instance_id="a")
    assert c.tick(5 + SESSION_MS, TOPICS) == ["m0"]
    assert c.state("g") == ConsumerGroupState.EMPTY


def test_new_partitions_of_a_subscribed_topic_start_a_new_epoch() -> None:
    c = coordinator()
    join(c)
    reply = beat(c, "m0", 1, parts(0, 1, 2, 3, 4, 5), metadata={"t": 8})
    assert (reply.member_epoch, reply.assignment) == (2, parts(*range(8)))
    assert join(c, topics=("later",)).member_epoch == 3
    reply = beat(c, "m1", 3, NOTHING, metadata={"t": 8, "later": 2})
    assert (reply.member_epoch, reply.assignment) == (4, parts(0, 1, topic="later"))


def test_commits_check_the_member_epoch() -> None:
    c = coordinator()
    join(c)
    assert c.commit_check("g", "m0", 1, 9) == ErrorCode.NONE
    assert c.commit_check("g", "m0", 0, 9) == ErrorCode.STALE_MEMBER_EPOCH
    assert c.commit_check("g", "m0", 2, 9) == ErrorCode.FENCED_MEMBER_EPOCH
    assert c.commit_check("g", "m0", 1, 8) == ErrorCode.UNSUPPORTED_VERSION
    assert c.commit_check("g", "x", 1, 9) == ErrorCode.UNKNOWN_MEMBER_ID
    assert c.commit_check("g", "", -1, 8) == ErrorCode.NONE


def test_assignors_balance_and_uniform_is_sticky() -> None:
    subs = {"a": frozenset({"t"}), "b": frozenset({"t"}), "c": frozenset({"t"})}
    assert sorted(len(p) for p in assign_range(subs, {"t": 7}, {}).values()) == [2, 2, 3]
    before = assign_uniform({"a": frozenset({"t"}), "b": frozenset({"t"})}, {"t": 6}, {})
    after = assign_uniform(subs, {"t": 6}, before)
    assert sorted(len(p) for p in after.values()) == [2, 2, 2]
    assert after["a"] <= before["a"] and after["b"] <= before["b"]  # only moves towards the newcomer
    # Heterogeneous subscriptions: each partition only to a subscriber.
    mixed = assign_uniform({"a": frozenset({"t", "u"}), "b": frozenset({"u"})}, {"t": 2, "u": 4}, {})
    assert mixed["b"] <= parts(0, 1, 2, 3, topic="u") and len(mixed["a"]) == 3 and len(mixed["b"]) == 3


# ---- simulated runs: random joins, leaves, lost heartbeats -----------------------------


@dataclass
class Client:
    """What a well-behaved consumer does: it consumes what the last answer it got gave it."""

    name: str
    member_id: str = ""
    epoch: int = 0
    owned: Partitions = NOTHING
    joined: bool = False
    alive: bool = True
    sent_owned: Partitions | None = field(default=None)

    def request(self, static: bool) -> HeartbeatRequest:
        instance = self.name if static else None
        if not self.joined:
            return HeartbeatRequest("g", self.member_id, 0, instance_id=instance,
                                    rebalance_timeout_ms=REBALANCE_MS, subscribed_topic_names=("t", "u"),
                                    owned=NOTHING)
        owned = self.owned if self.owned != self.sent_owned else None
        return HeartbeatRequest("g", self.member_id, self.epoch, owned=owned)

    def answer(self, req: HeartbeatRequest, reply: HeartbeatReply) -> None:
        if reply.error in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.FENCED_MEMBER_EPOCH):
            self.joined, self.owned, self.epoch, self.sent_owned = False, NOTHING, 0, None
            return
        assert reply.error == ErrorCode.NONE, reply
        if req.owned is not None:
            self.sent_owned = req.owned
        self.joined = True
        self.member_id = reply.member_id or self.member_id
        self.epoch = reply.member_epoch
        if reply.assignment is not None:
            self.owned = reply.assignment  # revokes what is gone, starts on what is new


def _check_no_partition_has_two_owners(c: ConsumerGroupCoordinator, clients: list[Client]) -> None:
    group = c.group("g")
    if group is None:
        return
    seen: dict[tuple[str, int], str] = {}
    for member in group.members.values():
        for tp in member.owns():
            assert tp not in seen, f"{tp} owned by {seen[tp]} and {member.member_id}"
            seen[tp] = member.member_id
    # What live clients consume is within what the coordinator thinks they own.
    for client in clients:
        if client.alive and client.joined and client.member_id in group.members:
            assert client.owned <= group.members[client.member_id].owns(), client


@pytest.mark.parametrize("seed", range(40))
def test_random_churn_never_double_assigns_and_settles_balanced(seed: int) -> None:
    rng = random.Random(seed)
    metadata = {"t": 6, "u": 3}
    c = coordinator()
    static = seed % 2 == 1
    clients = [Client(f"c{i}") for i in range(4)]
    now = 0
    for step in range(400):
        now += rng.randint(1, 2_000)
        if step == 200:
            metadata["t"] = 8  # partitions added mid-churn
        client = rng.choice(clients)
        roll = rng.random()
        if roll < 0.05 and client.alive:
            client.alive = False  # crashes: heartbeats stop
        elif roll < 0.10 and client.joined and client.alive:
            epoch = -2 if static else -1
            c.heartbeat(now, HeartbeatRequest("g", client.member_id, epoch, instance_id=client.name
                                              if static else None), metadata)
            client.joined, client.owned, client.epoch, client.sent_owned = False, NOTHING, 0, None
            client.member_id = ""
            client.alive = rng.random() < 0.5
        elif roll < 0.15 and not client.alive:
            client.alive, client.joined, client.owned, client.member_id = True, False, NOTHING, ""
            client.sent_owned = None
        elif client.alive:
            req = client.request(static)
            reply = c.heartbeat(now, req, metadata)
            if reply.error == ErrorCode.UNRELEASED_INSTANCE_ID:
                continue  # its old self still holds the slot: retry later
            if rng.random() < 0.15:
                continue  # the answer is lost
            client.answer(req, reply)
        c.tick(now, metadata)
        _check_no_partition_has_two_owners(c, clients)

    # Churn stops: everyone alive, heartbeats on time, nothing lost; crashed members' old
    # selves are gone once their sessions end.
    for client in clients:
        if not client.alive:
            client.alive, client.joined, client.owned, client.member_id = True, False, NOTHING, ""
            client.sent_owned = None
    for _ in range(2 * SESSION_MS // 500):
        now += 500
        for client in clients:
            req = client.request(static)
            reply = c.heartbeat(now, req, metadata)
            if reply.error != ErrorCode.UNRELEASED_INSTANCE_ID:
                client.answer(req, reply)
        c.tick(now, metadata)
        _check_no_partition_has_two_owners(c, clients)
    group = c.group("g")
    assert group is not None and c.state("g") == ConsumerGroupState.STABLE
    live = [cl for cl in clients if cl.member_id in group.members]
    assert len(live) == len(group.members) == 4
    every = parts(*range(8)) | parts(0, 1, 2, topic="u")
    assert frozenset().union(*(cl.owned for cl in live)) == every
    assert sorted(len(cl.owned) for cl in live) == [2, 3, 3, 3]


def test_a_regex_subscription_follows_the_topics_that_match() -> None:
    c = coordinator()
    reply = c.heartbeat(0, HeartbeatRequest("g", "r", 0, rebalance_timeout_ms=1, subscribed_topic_regex="t.*",
                                            owned=NOTHING, version=1), {"t1": 1, "x": 1})
    assert (reply.member_id, reply.assignment) == ("r", parts(0, topic="t1"))
    later = c.heartbeat(0, HeartbeatRequest("g", "r", 1), {"t1": 1, "t2": 1, "x": 1})
    assert (later.member_epoch, later.assignment) == (2, parts(0, topic="t1") | parts(0, topic="t2"))
    bad = HeartbeatRequest("g", "s", 0, rebalance_timeout_ms=1, subscribed_topic_regex="(", owned=NOTHING)
    assert c.heartbeat(0, bad, TOPICS).error == ErrorCode.INVALID_REGULAR_EXPRESSION
    # From v1 the member makes up its id.
    anonymous = HeartbeatRequest("g", "", 0, rebalance_timeout_ms=1, subscribed_topic_names=("t",),
                                 owned=NOTHING, version=1)
    assert c.heartbeat(0, anonymous, TOPICS).error == ErrorCode.INVALID_REQUEST
