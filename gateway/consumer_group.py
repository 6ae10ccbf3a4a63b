"""KIP-848 consumer groups as a pure state machine: heartbeats, topic metadata and time in, answers out.

Nothing here does I/O or reads a clock; ``gateway/groups.py`` is the shell. A
member's only request is ConsumerGroupHeartbeat. The coordinator owns the
assignment:

- The *group epoch* goes up whenever what the assignment depends on changes: a
  member joins or leaves, a subscription or the chosen assignor changes, or a
  subscribed topic appears or gains partitions.
- Each bump recomputes the *target assignment* with the group's assignor
  (``uniform`` or ``range``) and stamps it with that epoch (the assignment epoch).
- Each member moves towards its target on its own heartbeats (incremental
  reconciliation). It first has to give up what its target no longer holds: the
  coordinator answers with the partitions it may keep and waits (state
  UNREVOKED_PARTITIONS) until a heartbeat's owned partitions show the others
  released; only then does the member reach the target's epoch. A partition of
  its target still owned (assigned or being revoked) by another member is
  withheld (UNRELEASED_PARTITIONS) and handed over at a later heartbeat, once
  freed. So no partition ever has two owners.

Members that stop heartbeating are removed after the session timeout; one that
does not release partitions within its rebalance timeout is fenced. Leaving is
a heartbeat with epoch -1; a static member (instance id) leaves with -2 and
keeps its slot and partitions until its session times out or it rejoins.

A member subscribes to topic names, a regular expression (ConsumerGroupHeartbeat
v1; matched against whole topic names with Python's ``re``, where Kafka uses
RE2/J: the common syntax is the same), or both.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from flexlog.gateway.protocol import ErrorCode

UNIFORM = "uniform"
RANGE = "range"
ASSIGNORS = (UNIFORM, RANGE)  # the first is the default, as in Kafka
JOIN_EPOCH = 0
LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2
SESSION_TIMEOUT_MS = 45_000  # Kafka's group.consumer.session.timeout.ms
HEARTBEAT_INTERVAL_MS = 5_000  # group.consumer.heartbeat.interval.ms
# ConsumerGroupHeartbeat v1 (Kafka 4.0): members make up their own ids (KIP-1082).
CLIENT_MEMBER_ID_FROM_VERSION = 1

TopicPartition = tuple[str, int]
Partitions = frozenset[TopicPartition]
NOTHING: Partitions = frozenset()


class ConsumerGroupState(enum.Enum):
    """Kafka's names, as ListGroups and ConsumerGroupDescribe show them.

    The target is computed as soon as the epoch moves, so Kafka's "Assigning"
    (target behind the group epoch) never lasts past one call and is not shown.
    """

    EMPTY = "Empty"
    RECONCILING = "Reconciling"
    STABLE = "Stable"
    DEAD = "Dead"


class MemberState(enum.Enum):
    STABLE = "stable"
    UNREVOKED_PARTITIONS = "unrevoked_partitions"
    UNRELEASED_PARTITIONS = "unreleased_partitions"


@dataclass(frozen=True)
class HeartbeatRequest:
    """A ConsumerGroupHeartbeat with topic ids already turned into names.

    The nullable fields are None when unchanged since the member's last heartbeat.
    """

    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: tuple[str, ...] | None = None
    subscribed_topic_regex: str | None = None  # "" clears it
    server_assignor: str | None = None
    owned: Partitions | None = None
    client_id: str = ""
    client_host: str = ""
    version: int = 0


@dataclass(frozen=True)
class HeartbeatReply:
    error: ErrorCode
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: Partitions | None = None  # None: unchanged since the last answer


@dataclass
class ConsumerMember:
    member_id: str
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    subscribed: frozenset[str]
    regex: str | None
    assignor: str | None
    rebalance_timeout_ms: int
    session_deadline_ms: int
    epoch: int = 0
    previous_epoch: int = -1
    state: MemberState = MemberState.STABLE
    assigned: Partitions = NOTHING  # what the member may consume now
    revoking: Partitions = NOTHING  # what it must give up before it moves on
    revoke_deadline_ms: int = 0  # fenced if still revoking then
    sent: Partitions | None = None  # the assignment last answered, to answer only changes

    def owns(self) -> Partitions:
        return self.assigned | self.revoking

    def subscription(self, topics: Iterable[str]) -> frozenset[str]:
        """The topics it subscribes to by name or by its regex, among those that exist."""
        if self.regex is None:
            return self.subscribed
        pattern = re.compile(self.regex)
        return self.subscribed | {t for t in topics if pattern.fullmatch(t)}


@dataclass
class ConsumerGroup:
    group_id: str
    epoch: int = 0
    assignment_epoch: int = 0
    assignor: str = UNIFORM
    members: dict[str, ConsumerMember] = field(default_factory=dict)
    static: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    target: dict[str, Partitions] = field(default_factory=dict)
    topics: dict[str, int] = field(default_factory=dict)  # subscribed topics' partition counts

    def state(self) -> ConsumerGroupState:
        if not self.members:
            return ConsumerGroupState.EMPTY
        settled = all(m.epoch == self.assignment_epoch and m.state == MemberState.STABLE
                      for m in self.members.values())
        return ConsumerGroupState.STABLE if settled else ConsumerGroupState.RECONCILING

    def subscribed_topics(self, topics: Iterable[str]) -> set[str]:
        return {t for m in self.members.values() for t in m.subscription(topics)}


# ---- assignors: pure functions of members, subscriptions and topics -----------------


def assign_range(subscriptions: Mapping[str, frozenset[str]], topics: Mapping[str, int],
                 previous: Mapping[str, Partitions]) -> dict[str, Partitions]:
    """Per topic, contiguous ranges of partitions over its subscribers in member-id order.

    The first (partitions % members) subscribers get one more. ``previous`` is not
    used: range is deterministic by design, which co-partitions topics.
    """
    out: dict[str, set[TopicPartition]] = {m: set() for m in subscriptions}
    for topic in sorted(topics):
        members = sorted(m for m, subs in subscriptions.items() if topic in subs)
        if not members:
            continue
        count = topics[topic]
        quota, extra = divmod(count, len(members))
        start = 0
        for i, member in enumerate(members):
            size = quota + (1 if i < extra else 0)
            out[member].update((topic, p) for p in range(start, start + size))
            start += size
    return {m: frozenset(ps) for m, ps in out.items()}


def assign_uniform(subscriptions: Mapping[str, frozenset[str]], topics: Mapping[str, int],
                   previous: Mapping[str, Partitions]) -> dict[str, Partitions]:
    """Spread partitions evenly over the members subscribed to them, moving as few as possible.

    Members keep what they had if still subscribed; the rest goes to the least
    loaded subscriber; then partitions move one at a time from a member holding
    two more than another subscriber of the same topic, until none does.
    Everything is visited in sorted order, so the result is deterministic.
    """
    owner: dict[TopicPartition, str] = {}
    load: Counter[str] = Counter({m: 0 for m in subscriptions})
    for member in sorted(previous):
        for tp in sorted(previous[member]):
            topic, partition = tp
            if member in subscriptions and topic in subscriptions[member] \
                    and partition < topics.get(topic, 0) and tp not in owner:
                owner[tp] = member
                load[member] += 1
    for topic in sorted(topics):
        subscribers = sorted(m for m, subs in subscriptions.items() if topic in subs)
        if not subscribers:
            continue
        for partition in range(topics[topic]):
            if (topic, partition) not in owner:
                chosen = min(subscribers, key=lambda m: (load[m], m))
                owner[(topic, partition)] = chosen
                load[chosen] += 1
    moved = True
    while moved:
        moved = False
        for tp in sorted(owner):
            holder = owner[tp]
            subscribers = [m for m, subs in subscriptions.items() if tp[0] in subs]
            lightest = min(subscribers, key=lambda m: (load[m], m))
            if load[holder] > load[lightest] + 1:
                owner[tp] = lightest
                load[holder] -= 1
                load[lightest] += 1
                moved = True
    out: dict[str, set[TopicPartition]] = {m: set() for m in subscriptions}
    for tp, member in owner.items():
        out[member].add(tp)
    return {m: frozenset(ps) for m, ps in out.items()}


Assignor = Callable[[Mapping[str, frozenset[str]], Mapping[str, int], Mapping[str, Partitions]],
                    dict[str, Partitions]]
ASSIGNOR_FUNCTIONS: dict[str, Assignor] = {UNIFORM: assign_uniform, RANGE: assign_range}


# ---- the coordinator --------------------------------------------------------------


class ConsumerGroupCoordinator:
    """Every KIP-848 group this gateway coordinates; all methods are synchronous and clock-free."""

    def __init__(self, *, session_timeout_ms: int = SESSION_TIMEOUT_MS,
                 heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS,
                 new_member_id: Callable[[], str] | None = None) -> None:
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.new_member_id = new_member_id or (lambda: str(uuid.uuid4()))
        self.groups: dict[str, ConsumerGroup] = {}

    # ---- queries ------------------------------------------------------------------

    def group(self, group_id: str) -> ConsumerGroup | None:
        return self.groups.get(group_id)

    def state(self, group_id: str) -> ConsumerGroupState:
        group = self.groups.get(group_id)
        return group.state() if group else ConsumerGroupState.DEAD

    def next_deadline(self) -> int | None:
        deadlines = [m.session_deadline_ms for g in self.groups.values() for m in g.members.values()]
        deadlines += [m.revoke_deadline_ms for g in self.groups.values() for m in g.members.values()
                      if m.state == MemberState.UNREVOKED_PARTITIONS]
        return min(deadlines) if deadlines else None

    # ---- group type changes (Kafka 4's coexistence with classic groups) -------------

    def delete(self, group_id: str) -> ErrorCode:
        """DeleteGroups, or a classic JoinGroup converting an empty group: only an empty group goes."""
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.GROUP_ID_NOT_FOUND
        if group.members:
            return ErrorCode.NON_EMPTY_GROUP
        del self.groups[group_id]
        return ErrorCode.NONE

    # ---- ConsumerGroupHeartbeat ----------------------------------------------------

    def heartbeat(self, now_ms: int, req: HeartbeatRequest, topics: Mapping[str, int]) -> HeartbeatReply:
        """Answer one heartbeat; ``topics`` maps every existing topic to its partition count."""
        invalid = _invalid(req)
        if invalid is not None:
            return HeartbeatReply(ErrorCode.INVALID_REQUEST, invalid, member_id=req.member_id or None)
        if req.subscribed_topic_regex:
            try:
                re.compile(req.subscribed_topic_regex)
            except re.error as exc:
                return HeartbeatReply(ErrorCode.INVALID_REGULAR_EXPRESSION,
                                      f"{req.subscribed_topic_regex!r} is not a valid regex: {exc}")
        if req.server_assignor is not None and req.server_assignor not in ASSIGNORS:
            return HeartbeatReply(ErrorCode.UNSUPPORTED_ASSIGNOR,
                                  f"assignor {req.server_assignor!r} is not one of {', '.join(ASSIGNORS)}")
        group = self.groups.get(req.group_id)
        if req.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
            return self._leave(now_ms, group, req, topics)
        if group is None:
            if req.member_epoch != JOIN_EPOCH:
                # Membership is not persisted: after a coordinator restart members rejoin.
                return HeartbeatReply(ErrorCode.UNKNOWN_MEMBER_ID, f"group {req.group_id} has no members")
            group = self.groups[req.group_id] = ConsumerGroup(req.group_id)
        if req.member_epoch == JOIN_EPOCH:
            joined = self._join(now_ms, group, req)
            if isinstance(joined, HeartbeatReply):
                return joined
            member, changed = joined
        else:
            found = self._known_member(group, req)
            if isinstance(found, HeartbeatReply):
                return found
            member, changed = found, self._update(found, req)
        member.session_deadline_ms = now_ms + self.session_timeout_ms
        if changed:
            self._bump(group, topics)
        else:
            self._refresh_metadata(group, topics)
        self._reconcile(now_ms, group, member, req.owned)
        # A full request (every field set) is answered with the whole assignment, as in Kafka.
        full = req.member_epoch == JOIN_EPOCH or (req.subscribed_topic_names is not None
                                                  and req.owned is not None and req.rebalance_timeout_ms >= 0)
        answer = member.assigned if full or member.assigned != member.sent else None
        member.sent = member.assigned
        return HeartbeatReply(ErrorCode.NONE, member_id=member.member_id, member_epoch=member.epoch,
                              heartbeat_interval_ms=self.heartbeat_interval_ms, assignment=answer)

    def _join(self, now_ms: int, group: ConsumerGroup,
              req: HeartbeatRequest) -> tuple[ConsumerMember, bool] | HeartbeatReply:
        """A member (re)joining with epoch 0: it owns nothing (the request says so)."""
        member_id = req.member_id or self.new_member_id()
        inherited: ConsumerMember | None = None
        if req.instance_id is not None:
            previous_id = group.static.get(req.instance_id)
            previous = group.members.get(previous_id) if previous_id else None
            if previous is not None and previous.member_id != member_id:
                if previous.epoch != STATIC_LEAVE_EPOCH:
                    return HeartbeatReply(ErrorCode.UNRELEASED_INSTANCE_ID,
                                          f"instance {req.instance_id} is still in use by "
                                          f"{previous.member_id}")
                inherited = previous
                del group.members[previous.member_id]
        old = group.members.pop(member_id, None)
        member = ConsumerMember(
            member_id=member_id, instance_id=req.instance_id, rack_id=req.rack_id,
            client_id=req.client_id, client_host=req.client_host,
            subscribed=frozenset(req.subscribed_topic_names or ()), regex=req.subscribed_topic_regex or None,
            assignor=req.server_assignor, rebalance_timeout_ms=req.rebalance_timeout_ms,
            session_deadline_ms=now_ms + self.session_timeout_ms)
        if inherited is not None:
            # A static member's restart: it takes its slot back with what was assigned to it,
            # which no one else was given while it was away.
            member.epoch, member.assigned = inherited.previous_epoch, inherited.assigned
            target = group.target[member_id] = group.target.pop(inherited.member_id, NOTHING)
            if member.assigned != target:
                member.state = MemberState.UNRELEASED_PARTITIONS  # so reconciliation looks again
        group.members[member_id] = member
        if req.instance_id is not None:
            group.static[req.instance_id] = member_id
        unchanged = inherited is not None and inherited.subscribed == member.subscribed \
            and inherited.regex == member.regex and inherited.assignor == member.assignor
        return member, old is not None or not unchanged

    def _known_member(self, group: ConsumerGroup, req: HeartbeatRequest) -> ConsumerMember | HeartbeatReply:
        member = group.members.get(req.member_id)
        if member is None:
            return HeartbeatReply(ErrorCode.UNKNOWN_MEMBER_ID, f"member {req.member_id} is not in the group")
        if req.member_epoch > member.epoch:
            return HeartbeatReply(ErrorCode.FENCED_MEMBER_EPOCH,
                                  f"epoch {req.member_epoch} is ahead of the member's {member.epoch}")
        # Behind: the answer that moved it on may have been lost. Its previous epoch is fine
        # as long as it claims nothing beyond what it has now.
        if req.member_epoch < member.epoch and (
                req.member_epoch != member.previous_epoch or req.owned is None
                or not req.owned <= member.assigned):
            return HeartbeatReply(ErrorCode.FENCED_MEMBER_EPOCH,
                                  f"epoch {req.member_epoch} is behind the member's {member.epoch}")
        return member

    @staticmethod
    def _update(member: ConsumerMember, req: HeartbeatRequest) -> bool:
        """Apply a heartbeat's changed fields; whether the assignment depends on any of them."""
        changed = False
        subscribed = req.subscribed_topic_names
        if subscribed is not None and frozenset(subscribed) != member.subscribed:
            member.subscribed = frozenset(subscribed)
            changed = True
        regex = req.subscribed_topic_regex
        if regex is not None and (regex or None) != member.regex:
            member.regex = regex or None
            changed = True
        if req.server_assignor is not None and req.server_assignor != member.assignor:
            member.assignor = req.server_assignor
            changed = True
        if req.rebalance_timeout_ms >= 0:
            member.rebalance_timeout_ms = req.rebalance_timeout_ms
        if req.rack_id is not None:
            member.rack_id = req.rack_id
        return changed

    def _leave(self, now_ms: int, group: ConsumerGroup | None, req: HeartbeatRequest,
               topics: Mapping[str, int]) -> HeartbeatReply:
        member = group.members.get(req.member_id) if group else None
        if group is None or member is None:
            return HeartbeatReply(ErrorCode.UNKNOWN_MEMBER_ID, f"member {req.member_id} is not in the group")
        if req.member_epoch == STATIC_LEAVE_EPOCH and member.instance_id is not None:
            # Kept with its partitions until it rejoins or its session ends (KIP-848's static leave).
            member.previous_epoch, member.epoch = member.epoch, STATIC_LEAVE_EPOCH
            member.session_deadline_ms = now_ms + self.session_timeout_ms
        else:
            self._remove(group, member)
            self._bump(group, topics)
        return HeartbeatReply(ErrorCode.NONE, member_id=req.member_id, member_epoch=req.member_epoch,
                              heartbeat_interval_ms=self.heartbeat_interval_ms)

    # ---- epochs, target and reconciliation ------------------------------------------

    @staticmethod
    def _remove(group: ConsumerGroup, member: ConsumerMember) -> None:
        del group.members[member.member_id]
        group.target.pop(member.member_id, None)
        if member.instance_id is not None and group.static.get(member.instance_id) == member.member_id:
            del group.static[member.instance_id]

    def _refresh_metadata(self, group: ConsumerGroup, topics: Mapping[str, int]) -> None:
        if _subscribed_metadata(group, topics) != group.topics:
            self._bump(group, topics)

    @staticmethod
    def _bump(group: ConsumerGroup, topics: Mapping[str, int]) -> None:
        """A new group epoch and its target assignment."""
        group.epoch += 1
        group.topics = _subscribed_metadata(group, topics)
        choices = Counter(m.assignor for m in group.members.values() if m.assignor)
        # The assignor most members asked for (ties: the first in ASSIGNORS), else the default.
        group.assignor = min(choices, key=lambda a: (-choices[a], ASSIGNORS.index(a))) if choices else UNIFORM
        # A static member that left keeps its share so its restart finds it again.
        subscriptions = {m.member_id: m.subscription(topics) for m in group.members.values()}
        group.target = ASSIGNOR_FUNCTIONS[group.assignor](subscriptions, group.topics, group.target)
        group.assignment_epoch = group.epoch

    def _reconcile(self, now_ms: int, group: ConsumerGroup, member: ConsumerMember,
                   owned: Partitions | None) -> None:
        """Move the member towards its target as far as releases by it and others allow."""
        target = group.target.get(member.member_id, NOTHING)
        if member.state == MemberState.UNREVOKED_PARTITIONS:
            if owned is None or owned & member.revoking:
                # Still revoking; partitions the target dropped meanwhile must go too.
                member.revoking |= member.assigned - target
                member.assigned &= target
                return
            member.revoking = NOTHING
        if member.epoch == group.assignment_epoch and member.state == MemberState.STABLE:
            return
        keep = member.assigned & target
        revoke = member.assigned - target
        if revoke:
            member.assigned, member.revoking = keep, revoke
            member.state = MemberState.UNREVOKED_PARTITIONS
            member.revoke_deadline_ms = now_ms + member.rebalance_timeout_ms
            return
        taken = {tp for m in group.members.values() if m is not member for tp in m.owns()}
        free = frozenset(tp for tp in target - keep if tp not in taken)
        member.assigned = keep | free
        if member.epoch != group.assignment_epoch:
            member.previous_epoch, member.epoch = member.epoch, group.assignment_epoch
        withheld = target - member.assigned
        member.state = MemberState.UNRELEASED_PARTITIONS if withheld else MemberState.STABLE

    # ---- time -------------------------------------------------------------------

    def tick(self, now_ms: int, topics: Mapping[str, int]) -> list[str]:
        """Remove members whose session ended or who did not revoke in time; the removed ids."""
        removed = []
        for group in list(self.groups.values()):
            gone = [m for m in group.members.values()
                    if m.session_deadline_ms <= now_ms
                    or (m.state == MemberState.UNREVOKED_PARTITIONS and m.revoke_deadline_ms <= now_ms)]
            for member in gone:
                self._remove(group, member)
                removed.append(member.member_id)
            if gone:
                self._bump(group, topics)
        return removed

    # ---- OffsetCommit (v9 carries the member epoch) --------------------------------

    def commit_check(self, group_id: str, member_id: str, member_epoch: int, api_version: int) -> ErrorCode:
        """Whether a member of this group may commit, as Kafka's consumer groups check it."""
        if not member_id and member_epoch < 0:
            return ErrorCode.NONE  # an admin tool or a consumer with manual assignment
        group = self.groups.get(group_id)
        member = group.members.get(member_id) if group else None
        if member is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if api_version < 9:
            # Older versions cannot carry a member epoch; Kafka refuses them for these members.
            return ErrorCode.UNSUPPORTED_VERSION
        if member_epoch > member.epoch:
            return ErrorCode.FENCED_MEMBER_EPOCH
        if member_epoch < member.epoch:
            return ErrorCode.STALE_MEMBER_EPOCH
        return ErrorCode.NONE


def _subscribed_metadata(group: ConsumerGroup, topics: Mapping[str, int]) -> dict[str, int]:
    return {t: topics[t] for t in sorted(group.subscribed_topics(topics)) if t in topics}


def _invalid(req: HeartbeatRequest) -> str | None:
    """Why a heartbeat is malformed (Kafka's INVALID_REQUEST checks), or None."""
    if not req.group_id:
        return "GroupId can't be empty."
    if req.instance_id == "":
        return "InstanceId can't be empty."
    if req.member_epoch < STATIC_LEAVE_EPOCH:
        return f"MemberEpoch {req.member_epoch} is invalid."
    if (req.member_epoch != JOIN_EPOCH or req.version >= CLIENT_MEMBER_ID_FROM_VERSION) and not req.member_id:
        return "MemberId can't be empty."
    if req.member_epoch == JOIN_EPOCH:
        if req.rebalance_timeout_ms < 0:
            return "RebalanceTimeoutMs must be provided in first request."
        if req.owned is None or req.owned:
            return "TopicPartitions must be empty when (re-)joining."
        if req.subscribed_topic_names is None and not req.subscribed_topic_regex:
            return "SubscribedTopicNames or SubscribedTopicRegex must be set in first request."
    if req.member_epoch == STATIC_LEAVE_EPOCH and req.instance_id is None:
        return "InstanceId can't be null."
    return None

