"""The group coordinator state machine driven with simulated time: no sockets, no cluster."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Hashable

import pytest

from flexlog.gateway.group_coordinator import (
    GroupCoordinator,
    GroupState,
    JoinReply,
    JoinRequest,
    Reply,
    SyncReply,
)
from flexlog.gateway.protocol import ErrorCode

DELAY = 100
SESSION = 10_000
REBALANCE = 30_000
G = "g"


class Sim:
    """A coordinator plus a clock and a mailbox of replies keyed by waiter."""

    def __init__(self) -> None:
        ids = itertools.count()
        self.c = GroupCoordinator(initial_rebalance_delay_ms=DELAY,
                                  new_member_id=lambda client: f"{client}-{next(ids)}")
        self.now = 0
        self.box: dict[Hashable, JoinReply | SyncReply] = {}
        self.waiters = itertools.count()

    def _take(self, replies: list[Reply]) -> None:
        for r in replies:
            assert r.waiter not in self.box, "a waiter was answered twice"
            self.box[r.waiter] = r.body

    def join(self, member: str = "", *, client: str = "c", instance: str | None = None,
             protocols: tuple[tuple[str, bytes], ...] = (("range", b"m"),), version: int = 5,
             session: int = SESSION, rebalance: int = REBALANCE) -> int:
        w = next(self.waiters)
        self._take(self.c.join(self.now, JoinRequest(G, member, instance, "consumer", protocols,
                                                     session, rebalance, version, client), w))
        return w

    def sync(self, member: str, generation: int, assignments: dict[str, bytes] | None = None,
             instance: str | None = None) -> int:
        w = next(self.waiters)
        self._take(self.c.sync(self.now, G, generation, member, instance, None, None,
                               assignments or {}, w))
        return w

    def advance(self, ms: int) -> None:
        """Move the clock, ticking at every deadline on the way (what the asyncio shell does)."""
        end = self.now + ms
        while (d := self.c.next_deadline()) is not None and d <= end:
            self.now = max(self.now, d)
            self._take(self.c.tick(self.now))
        self.now = end
        self._take(self.c.tick(self.now))

    def reply(self, waiter: int) -> JoinReply | SyncReply:
        return self.box.pop(waiter)

    def joined(self, waiter: int) -> JoinReply:
        r = self.reply(waiter)
        assert isinstance(r, JoinReply)
        return r


def new_member(sim: Sim, client: str = "c", **kw: object) -> str:
    """KIP-394: the first join only hands out an id."""
    r = sim.joined(sim.join(client=client, **kw))  # type: ignore[arg-type]
    assert r.error == ErrorCode.MEMBER_ID_REQUIRED
    return r.member_id


def stable_group(sim: Sim, n: int) -> tuple[list[str], int]:
    ids = [new_member(sim, f"c{i}") for i in range(n)]
    waiters = [sim.join(m) for m in ids]
    sim.advance(DELAY)
    replies = [sim.joined(w) for w in waiters]
    gen = replies[0].generation_id
    leader = replies[0].leader
    syncs = [sim.sync(m, gen, {x: x.encode() for x in ids} if m == leader else None) for m in ids]
    for m, w in zip(ids, syncs, strict=True):
        r = sim.reply(w)
        assert isinstance(r, SyncReply) and r.error == ErrorCode.NONE and r.assignment == m.encode()
    assert sim.c.state(G) == GroupState.STABLE
    return ids, gen


def test_three_members_rebalance_once_after_the_initial_delay() -> None:
    sim = Sim()
    ids = [new_member(sim, f"c{i}") for i in range(3)]
    waiters = [sim.join(m) for m in ids]
    assert not sim.box, "the initial delay holds every join"
    assert sim.c.state(G) == GroupState.PREPARING_REBALANCE
    sim.advance(DELAY - 1)
    assert not sim.box
    sim.advance(1)
    replies = [sim.joined(w) for w in waiters]
    assert {r.generation_id for r in replies} == {1}
    leader = replies[0].leader
    for r in replies:
        assert r.error == ErrorCode.NONE and r.protocol_name == "range" and r.leader == leader
        assert len(r.members) == (3 if r.member_id == leader else 0)
    followers = [sim.sync(m, 1) for m in ids if m != leader]
    assert not sim.box, "followers wait for the leader's assignment"
    sim.sync(leader, 1, {m: b"a-" + m.encode() for m in ids})
    for w in followers:
        r = sim.reply(w)
        assert isinstance(r, SyncReply) and r.assignment.startswith(b"a-")
    assert sim.c.group(G).rebalances == 1  # type: ignore[union-attr]


def test_member_joining_a_stable_group_triggers_a_rebalance() -> None:
    sim = Sim()
    ids, gen = stable_group(sim, 2)
    newcomer = new_member(sim, "late")
    w_new = sim.join(newcomer)
    assert sim.c.heartbeat(sim.now, G, gen, ids[0], None) == ErrorCode.REBALANCE_IN_PROGRESS
    rejoin = [sim.join(m) for m in ids]
    replies = [sim.joined(w) for w in [w_new, *rejoin]]
    assert {r.generation_id for r in replies} == {gen + 1}
    assert sim.c.state(G) == GroupState.COMPLETING_REBALANCE


def test_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() -> None:
    sim = Sim()
    ids, gen = stable_group(sim, 2)
    leaves, _ = sim.c.leave(sim.now, G, [])
    assert leaves == []
    w = sim.join(new_member(sim, "late"))
    w0 = sim.join(ids[0])
    sim.advance(REBALANCE)
    r = sim.joined(w)
    assert r.error == ErrorCode.NONE and r.generation_id == gen + 1
    assert sim.joined(w0).generation_id == gen + 1
    assert ids[1] not in sim.c.group(G).members  # type: ignore[union-attr]


def test_session_timeout_expires_a_silent_member() -> None:
    sim = Sim()
    ids, gen = stable_group(sim, 2)
    for _ in range(5):
        sim.advance(SESSION // 2)
        assert sim.c.heartbeat(sim.now, G, gen, ids[0], None) in (
            ErrorCode.NONE, ErrorCode.REBALANCE_IN_PROGRESS)
    assert sim.c.heartbeat(sim.now, G, gen, ids[1], None) == ErrorCode.UNKNOWN_MEMBER_ID
    w = sim.join(ids[0])
    r = sim.joined(w)
    assert r.generation_id == gen + 1 and r.leader == ids[0] and len(r.members) == 1


def test_leave_of_the_last_member_empties_the_group() -> None:
    sim = Sim()
    ids, _ = stable_group(sim, 1)
    codes, _ = sim.c.leave(sim.now, G, [(ids[0], None), ("nobody", None)])
    assert codes == [ErrorCode.NONE, ErrorCode.UNKNOWN_MEMBER_ID]
    assert sim.c.state(G) == GroupState.EMPTY
    assert sim.c.commit_check(sim.now, G, -1, "", None) == ErrorCode.NONE


def test_an_empty_group_keeps_its_type_until_a_member_of_another_type_joins() -> None:
    sim = Sim()
    ids, _ = stable_group(sim, 1)
    sim.c.leave(sim.now, G, [(ids[0], None)])
    group = sim.c.group(G)
    assert group is not None and group.state == GroupState.EMPTY
    assert group.protocol_type == "consumer"
    req = JoinRequest(G, "", None, "connect", (("default", b""),), SESSION, REBALANCE, 3, "w")
    sim.c.join(sim.now, req, "w")
    assert group.protocol_type == "connect"


def test_bad_requests_get_kafka_errors_and_leave_the_group_intact() -> None:
    sim = Sim()
    ids, gen = stable_group(sim, 2)
    assert sim.joined(sim.join(session=5_999)).error == ErrorCode.INVALID_SESSION_TIMEOUT
    assert sim.joined(sim.join(session=1_800_001)).error == ErrorCode.INVALID_SESSION_TIMEOUT
    assert sim.joined(sim.join("ghost")).error == ErrorCode.UNKNOWN_MEMBER_ID
    assert sim.joined(sim.join(ids[0], protocols=(("other", b""),))).error == \
        ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert sim.c.heartbeat(sim.now, G, gen + 7, ids[0], None) == ErrorCode.ILLEGAL_GENERATION
    assert sim.c.heartbeat(sim.now, G, gen, "ghost", None) == ErrorCode.UNKNOWN_MEMBER_ID
    bad_sync = sim.reply(sim.sync(ids[0], gen - 1))
    assert isinstance(bad_sync, SyncReply) and bad_sync.error == ErrorCode.ILLEGAL_GENERATION
    assert sim.c.commit_check(sim.now, G, gen + 1, ids[0], None) == ErrorCode.ILLEGAL_GENERATION
    assert sim.c.commit_check(sim.now, G, gen, "ghost", None) == ErrorCode.UNKNOWN_MEMBER_ID
    assert sim.c.commit_check(sim.now, G, -1, "", None) == ErrorCode.UNKNOWN_MEMBER_ID
    # None of that disturbed the group.
    assert sim.c.state(G) == GroupState.STABLE
    for m in ids:
        assert sim.c.heartbeat(sim.now, G, gen, m, None) == ErrorCode.NONE
        assert sim.c.commit_check(sim.now, G, gen, m, None) == ErrorCode.NONE


def test_static_member_is_replaced_without_rebalance_and_the_old_id_fenced() -> None:
    sim = Sim()
    w1 = sim.join(instance="i1", client="a")  # static: no MEMBER_ID_REQUIRED round trip
    w2 = sim.join(instance="i2", client="b")
    sim.advance(DELAY)
    first, second = sim.joined(w1), sim.joined(w2)
    assert first.error == ErrorCode.NONE and second.generation_id == first.generation_id == 1
    leader = first.leader
    follower = second.member_id if leader == first.member_id else first.member_id
    follower_instance = "i2" if follower == second.member_id else "i1"
    sim.sync(leader, 1, {leader: b"L", follower: b"F"})
    sim.sync(follower, 1)
    sim.box.clear()
    # The follower restarts: it rejoins with an empty member id and its instance id.
    r = sim.joined(sim.join(instance=follower_instance, client="b2"))
    assert r.error == ErrorCode.NONE and r.generation_id == 1 and r.member_id != follower
    assert sim.c.state(G) == GroupState.STABLE
    s = sim.reply(sim.sync(r.member_id, 1, instance=follower_instance))
    assert isinstance(s, SyncReply) and s.assignment == b"F"
    assert sim.c.heartbeat(sim.now, G, 1, follower, follower_instance) == ErrorCode.FENCED_INSTANCE_ID
    assert sim.c.commit_check(sim.now, G, 1, follower, follower_instance) == \
        ErrorCode.FENCED_INSTANCE_ID
    codes, _ = sim.c.leave(sim.now, G, [("", follower_instance)])
    assert codes == [ErrorCode.NONE]
    assert sim.c.state(G) == GroupState.PREPARING_REBALANCE


def test_protocol_is_chosen_by_vote_among_common_protocols() -> None:
    sim = Sim()
    prefs = [(("roundrobin", b""), ("range", b"")), (("range", b""), ("roundrobin", b"")),
             (("range", b""), ("sticky", b""), ("roundrobin", b""))]
    ids = [new_member(sim, f"c{i}") for i in range(3)]
    waiters = [sim.join(m, protocols=p) for m, p in zip(ids, prefs, strict=True)]
    sim.advance(DELAY)
    assert {sim.joined(w).protocol_name for w in waiters} == {"range"}


def test_rejoin_during_completing_resends_the_join_answer() -> None:
    sim = Sim()
    ids = [new_member(sim, f"c{i}") for i in range(2)]
    waiters = [sim.join(m) for m in ids]
    sim.advance(DELAY)
    first = [sim.joined(w) for w in waiters]
    again = sim.joined(sim.join(ids[1]))
    assert again.generation_id == first[1].generation_id
    assert sim.c.state(G) == GroupState.COMPLETING_REBALANCE


def test_join_v3_gets_a_member_id_at_once() -> None:
    sim = Sim()
    w = sim.join(version=3)
    sim.advance(DELAY)
    r = sim.joined(w)
    assert r.error == ErrorCode.NONE and r.member_id and r.leader == r.member_id


def test_pending_member_id_expires() -> None:
    sim = Sim()
    pending = new_member(sim)
    sim.advance(SESSION + 1)
    assert sim.joined(sim.join(pending)).error == ErrorCode.UNKNOWN_MEMBER_ID


def test_delete_needs_an_empty_group() -> None:
    sim = Sim()
    ids, _ = stable_group(sim, 1)
    assert sim.c.delete(G) == ErrorCode.NON_EMPTY_GROUP
    sim.c.leave(sim.now, G, [(ids[0], None)])
    assert sim.c.delete(G) == ErrorCode.NONE
    assert sim.c.state(G) == GroupState.DEAD


@pytest.mark.parametrize("seed", range(20))
def test_random_churn_never_answers_twice_and_ends_stable(seed: int) -> None:
    """Members join, leave and go silent at random; the group always settles again."""
    import random

    rnd = random.Random(seed)
    sim = Sim()
    members: dict[str, int] = {}  # member id -> its pending join waiter (or -1)
    for _ in range(60):
        action = rnd.random()
        if action < 0.3 or not members:
            m = new_member(sim, "c")
            members[m] = sim.join(m)
        elif action < 0.5:
            m = rnd.choice(list(members))
            sim.c.leave(sim.now, G, [(m, None)])
            del members[m]
        else:
            sim.advance(rnd.choice([1, DELAY, SESSION // 3]))
    # Everyone still around rejoins and syncs; the group must become Stable.
    # (members dropped by a timeout get UNKNOWN_MEMBER_ID at once.)
    sim.box.clear()
    for m in list(members):
        members[m] = sim.join(m)
    sim.advance(DELAY)
    live = {m: sim.box.pop(w) for m, w in members.items() if w in sim.box}
    assert len(live) == len(members), "every join was answered"
    ok = {m: r for m, r in live.items() if isinstance(r, JoinReply) and r.error == ErrorCode.NONE}
    if not ok:
        assert sim.c.state(G) in (GroupState.EMPTY, GroupState.DEAD)
        return
    gen = next(iter(ok.values())).generation_id
    leader = next(iter(ok.values())).leader
    for m in ok:
        sim.sync(m, gen, {x: b"x" for x in ok} if m == leader else None)
    assert sim.c.state(G) == GroupState.STABLE


# ---- static membership (KIP-345) ----------------------------------------------------


def subscription(*topics: str, owned: tuple[tuple[str, tuple[int, ...]], ...] = (),
                 user_data: bytes | None = None) -> bytes:
    """A ConsumerProtocolSubscription v1 (topics, user data, owned partitions), as clients send it."""
    out = struct.pack(">hi", 1, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    out += struct.pack(">i", -1) if user_data is None else struct.pack(">i", len(user_data)) + user_data
    out += struct.pack(">i", len(owned))
    for t, parts in owned:
        out += struct.pack(">h", len(t)) + t.encode() + struct.pack(f">i{len(parts)}i", len(parts), *parts)
    return out


def protos(meta: bytes, names: tuple[str, ...] = ("range", "roundrobin")) -> tuple[tuple[str, bytes], ...]:
    return tuple((n, meta) for n in names)


def static_group(sim: Sim, instances: list[str], meta: bytes = subscription("t"),
                 version: int = 5) -> tuple[dict[str, str], int, str]:
    """Static members joining in the order given (so the first is the leader), synced and Stable.

    Returns instance -> member id, the generation and the leader's instance id; each member's
    assignment is its instance id."""
    waiters = {i: sim.join(instance=i, client=i, protocols=protos(meta), version=version)
               for i in instances}
    sim.advance(DELAY)
    replies = {i: sim.joined(w) for i, w in waiters.items()}
    ids = {i: r.member_id for i, r in replies.items()}
    gen = replies[instances[0]].generation_id
    leader = next(i for i, m in ids.items() if m == replies[instances[0]].leader)
    syncs = [sim.sync(ids[i], gen, {ids[x]: x.encode() for x in instances} if i == leader else None,
                      instance=i) for i in instances]
    for w in syncs:
        r = sim.reply(w)
        assert isinstance(r, SyncReply) and r.error == ErrorCode.NONE
    assert sim.c.state(G) == GroupState.STABLE
    return ids, gen, leader


def assert_undisturbed(sim: Sim, ids: dict[str, str], gen: int, rebalances: int) -> None:
    """No rebalance: the group is Stable in the same generation and every member may heartbeat."""
    group = sim.c.group(G)
    assert group is not None and group.state == GroupState.STABLE
    assert group.generation == gen and group.rebalances == rebalances
    for i, m in ids.items():
        assert sim.c.heartbeat(sim.now, G, gen, m, i) == ErrorCode.NONE


def test_restarted_static_leader_gets_its_assignment_back_without_a_rebalance() -> None:
    """The interleaving of issue 18: the member that is restarted had joined first, so it was the
    leader; its rejoin made every other member rebalance."""
    sim = Sim()
    ids, gen, leader = static_group(sim, ["b", "a"])
    assert leader == "b"
    rebalances = sim.c.group(G).rebalances  # type: ignore[union-attr]
    r = sim.joined(sim.join(instance="b", client="b2", protocols=protos(subscription("t"))))
    assert r.error == ErrorCode.NONE and r.generation_id == gen and r.member_id != ids["b"]
    # Below JoinGroup v9 the returning leader is named by its old id, so it does not think it
    # is the leader: an assignment it computed would never reach the others of a Stable group.
    assert r.leader == ids["b"] and r.members == () and not r.skip_assignment
    old_b, ids["b"] = ids["b"], r.member_id
    assert_undisturbed(sim, ids, gen, rebalances)
    s = sim.reply(sim.sync(ids["b"], gen, instance="b"))
    assert isinstance(s, SyncReply) and s.error == ErrorCode.NONE and s.assignment == b"b"
    assert sim.c.heartbeat(sim.now, G, gen, old_b, "b") == ErrorCode.FENCED_INSTANCE_ID
    assert sim.c.group(G).leader == ids["b"]  # type: ignore[union-attr]


def test_restarted_static_leader_at_join_v9_is_told_to_skip_the_assignment() -> None:
    sim = Sim()
    ids, gen, _ = static_group(sim, ["b", "a"], version=9)
    r = sim.joined(sim.join(instance="b", client="b2", protocols=protos(subscription("t")), version=9))
    # KIP-814: it learns it is the leader (to watch the metadata) but must not assign.
    assert r.error == ErrorCode.NONE and r.generation_id == gen
    assert r.leader == r.member_id and r.skip_assignment
    assert {(m, i) for m, i, _ in r.members} == {(r.member_id, "b"), (ids["a"], "a")}
    ids["b"] = r.member_id
    # Its SyncGroup in the Stable group returns its old assignment and changes nobody's.
    s = sim.reply(sim.sync(ids["b"], gen, {ids["a"]: b"other", ids["b"]: b"other"}, instance="b"))
    assert isinstance(s, SyncReply) and s.assignment == b"b"
    s = sim.reply(sim.sync(ids["a"], gen, instance="a"))
    assert isinstance(s, SyncReply) and s.assignment == b"a"
    assert_undisturbed(sim, ids, gen, 1)


def test_static_restart_with_new_owned_partitions_user_data_and_topic_order_does_not_rebalance() -> None:
    """A new consumer owns nothing yet, may carry other user data and lists a regex's topics in
    another order: none of that is a change of subscription."""
    sim = Sim()
    before = subscription("t1", "t2", owned=(("t1", (0, 1)),), user_data=b"old")
    ids, gen, _ = static_group(sim, ["a", "b"], meta=before)
    after = subscription("t2", "t1", user_data=b"new")
    r = sim.joined(sim.join(instance="b", client="b2", protocols=protos(after)))
    assert r.error == ErrorCode.NONE and r.generation_id == gen
    ids["b"] = r.member_id
    assert_undisturbed(sim, ids, gen, 1)


def test_static_restart_with_a_changed_subscription_rebalances() -> None:
    sim = Sim()
    ids, gen, _ = static_group(sim, ["a", "b"], meta=subscription("t1"))
    w = sim.join(instance="b", client="b2", protocols=protos(subscription("t1", "t3")))
    assert w not in sim.box, "held for the new round"
    assert sim.c.state(G) == GroupState.PREPARING_REBALANCE
    assert sim.c.heartbeat(sim.now, G, gen, ids["a"], "a") == ErrorCode.REBALANCE_IN_PROGRESS
    wa = sim.join(ids["a"], instance="a", protocols=protos(subscription("t1")))
    assert {sim.joined(w).generation_id, sim.joined(wa).generation_id} == {gen + 1}


def test_static_restart_that_changes_the_selected_protocol_rebalances() -> None:
    sim = Sim()
    ids, gen, _ = static_group(sim, ["a", "b"])
    assert sim.c.group(G).protocol == "range"  # type: ignore[union-attr]
    sim.join(instance="b", client="b2", protocols=protos(subscription("t"), ("roundrobin",)))
    assert sim.c.state(G) == GroupState.PREPARING_REBALANCE
    wa = sim.join(ids["a"], instance="a", protocols=protos(subscription("t")))
    r = sim.joined(wa)
    assert r.generation_id == gen + 1 and r.protocol_name == "roundrobin"


def test_static_restart_during_a_join_phase_takes_part_in_it_and_fences_the_old_request() -> None:
    sim = Sim()
    ids, gen, _ = static_group(sim, ["a", "b"])
    w_new = sim.join(new_member(sim, "late"))  # a dynamic newcomer starts a round
    w_old_b = sim.join(ids["b"], instance="b", protocols=protos(subscription("t")))
    w_b2 = sim.join(instance="b", client="b2", protocols=protos(subscription("t")))
    old = sim.joined(w_old_b)
    assert old.error == ErrorCode.FENCED_INSTANCE_ID
    w_a = sim.join(ids["a"], instance="a", protocols=protos(subscription("t")))
    replies = [sim.joined(w) for w in (w_new, w_b2, w_a)]
    assert {r.generation_id for r in replies} == {gen + 1}, "one round, not two"
    assert ids["b"] not in {m for m, _, _ in next(r for r in replies if r.members).members}


def test_static_restart_while_the_leader_assigns_starts_a_new_round() -> None:
    """The leader may already be computing an assignment for the old member id (Kafka rebalances)."""
    sim = Sim()
    ids, gen, leader = static_group(sim, ["a", "b"])
    assert leader == "a"
    sim.join(ids["a"], instance="a", protocols=protos(subscription("t")))  # the leader rejoins
    w_b = sim.join(ids["b"], instance="b", protocols=protos(subscription("t")))
    assert sim.joined(w_b).generation_id == gen + 1
    assert sim.c.state(G) == GroupState.COMPLETING_REBALANCE
    w_sync_b = sim.sync(ids["b"], gen + 1, instance="b")
    sim.join(instance="b", client="b2", protocols=protos(subscription("t")))
    s = sim.reply(w_sync_b)
    assert isinstance(s, SyncReply) and s.error == ErrorCode.FENCED_INSTANCE_ID
    assert sim.c.state(G) == GroupState.PREPARING_REBALANCE


def test_static_member_absent_from_a_rebalance_keeps_its_slot_until_its_session_expires() -> None:
    """A static member restarting while the others rebalance is not dropped at the end of the
    join phase (only dynamic members are): the leader assigns it partitions, which it gets back
    when it returns."""
    sim = Sim()
    meta = protos(subscription("t"))
    ws = {i: sim.join(instance=i, client=i, protocols=meta, session=60_000, rebalance=5_000)
          for i in ("a", "b")}
    sim.advance(DELAY)
    ids = {i: sim.joined(w).member_id for i, w in ws.items()}
    gen = 1
    sim.sync(ids["a"], gen, {ids["a"]: b"a", ids["b"]: b"b"}, instance="a")
    sim.sync(ids["b"], gen, instance="b")
    sim.box.clear()
    w_late = sim.join(new_member(sim, "late"), session=60_000, rebalance=5_000)
    w_a = sim.join(ids["a"], instance="a", protocols=meta, session=60_000, rebalance=5_000)
    sim.advance(5_000)  # b (restarting) never rejoins this round
    ra, rl = sim.joined(w_a), sim.joined(w_late)
    assert ra.generation_id == rl.generation_id == gen + 1
    leader = ra if ra.members else rl
    assert ids["b"] in {m for m, _, _ in leader.members}
    sim.sync(leader.member_id, gen + 1, {m: m.encode() for m, _, _ in leader.members})
    sim.box.clear()
    r = sim.joined(sim.join(instance="b", client="b2", protocols=meta, session=60_000, rebalance=5_000))
    assert r.error == ErrorCode.NONE and r.generation_id == gen + 1
    s = sim.reply(sim.sync(r.member_id, gen + 1, instance="b"))
    assert isinstance(s, SyncReply) and s.assignment == ids["b"].encode()
    assert sim.c.state(G) == GroupState.STABLE


def test_static_member_that_does_not_return_within_its_session_timeout_is_removed() -> None:
    sim = Sim()
    ids, gen, _ = static_group(sim, ["a", "b"])
    for _ in range(4):  # a keeps heartbeating, b (stopped) does not
        sim.advance(SESSION // 3)
        assert sim.c.heartbeat(sim.now, G, gen, ids["a"], "a") in (
            ErrorCode.NONE, ErrorCode.REBALANCE_IN_PROGRESS)
    assert sim.c.state(G) == GroupState.PREPARING_REBALANCE
    assert "b" not in sim.c.group(G).static  # type: ignore[union-attr]
    r = sim.joined(sim.join(ids["a"], instance="a", protocols=protos(subscription("t"))))
    assert r.generation_id == gen + 1 and [i for _, i, _ in r.members] == ["a"]


def test_batch_leave_by_instance_id_removes_static_members_at_once() -> None:
    """LeaveGroup v3+ as admin tools send it: instance ids, no member ids."""
    sim = Sim()
    ids, gen, _ = static_group(sim, ["a", "b", "c", "d"])
    codes, _ = sim.c.leave(sim.now, G, [("", "a"), ("", "b"), ("someone-else", "c"),
                                        ("", "nobody"), (ids["d"], "nobody")])
    assert codes == [ErrorCode.NONE, ErrorCode.NONE, ErrorCode.FENCED_INSTANCE_ID,
                     ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.UNKNOWN_MEMBER_ID]
    assert set(sim.c.group(G).static) == {"c", "d"}  # type: ignore[union-attr]
    assert sim.c.state(G) == GroupState.PREPARING_REBALANCE
    # The remaining members rejoin and the round ends at once: nobody waits for the leavers.
    ws = [sim.join(ids[i], instance=i, protocols=protos(subscription("t"))) for i in ("c", "d")]
    assert {sim.joined(w).generation_id for w in ws} == {gen + 1}


def test_a_round_with_only_absent_static_members_waits_until_their_sessions_expire() -> None:
    sim = Sim()
    meta = protos(subscription("t"))
    ws = [sim.join(instance=i, client=i, protocols=meta, rebalance=4_000) for i in ("a", "b")]
    sim.advance(DELAY)
    ids = [sim.joined(w).member_id for w in ws]
    sim.c.leave(sim.now, G, [(ids[0], "a")])  # a leaves; b is down and never rejoins
    sim.advance(4_000)
    assert sim.c.state(G) == GroupState.PREPARING_REBALANCE, "no round without anyone in it"
    sim.advance(SESSION)
    assert sim.c.state(G) == GroupState.EMPTY and not sim.c.group(G).static  # type: ignore[union-attr]
