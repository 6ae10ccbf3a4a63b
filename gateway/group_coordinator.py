"""The classic consumer-group protocol as a pure state machine: requests and time in, replies out.

Nothing here does I/O or reads a clock. Each call takes the current time in
milliseconds and returns the replies that are due, each addressed to the
``waiter`` token the caller passed with the request it answers: a JoinGroup or
SyncGroup can be answered much later, by another member's request or by
``tick``. The asyncio shell (``gateway/groups.py``) maps waiters to futures and
calls ``tick`` at ``next_deadline``; tests drive the machine with simulated time.

States per group, as in Kafka: Empty -> PreparingRebalance (members (re)join) ->
CompletingRebalance (the leader computes the assignment) -> Stable, and back to
PreparingRebalance when membership or subscriptions change. A group that was
never joined, or was deleted, is Dead.
"""

from __future__ import annotations

import enum
import struct
import uuid
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field, replace

from flexlog.gateway.protocol import ErrorCode

MIN_SESSION_TIMEOUT_MS = 6_000  # Kafka's group.min.session.timeout.ms
MAX_SESSION_TIMEOUT_MS = 1_800_000  # group.max.session.timeout.ms
INITIAL_REBALANCE_DELAY_MS = 3_000  # group.initial.rebalance.delay.ms
# JoinGroup v4+ (KIP-394): an unknown member first gets an id and must rejoin with it.
MEMBER_ID_REQUIRED_FROM_VERSION = 4
# JoinGroup v9+ (KIP-814): a leader can be told not to assign (a static leader's restart).
SKIP_ASSIGNMENT_FROM_VERSION = 9
NO_GENERATION = -1
CONSUMER_PROTOCOL_TYPE = "consumer"


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass(frozen=True)
class JoinRequest:
    group_id: str
    member_id: str
    group_instance_id: str | None
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]  # (name, metadata) in the member's preference order
    session_timeout_ms: int
    rebalance_timeout_ms: int
    version: int
    client_id: str = ""
    client_host: str = ""


@dataclass(frozen=True)
class JoinReply:
    error: ErrorCode
    member_id: str
    generation_id: int = NO_GENERATION
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    members: tuple[tuple[str, str | None, bytes], ...] = ()  # (member id, instance id, metadata)
    skip_assignment: bool = False


@dataclass(frozen=True)
class SyncReply:
    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@dataclass(frozen=True)
class Reply:
    """The answer to the request that was made with this waiter."""

    waiter: Hashable
    body: JoinReply | SyncReply


def subscribed_topics(metadata: bytes) -> frozenset[str] | None:
    """The topics of a "consumer" protocol subscription (any version), or None if malformed.

    Every version starts with the version (int16) and the topics (int32 count, then
    int16-length names); what follows (user data, owned partitions, generation, rack)
    naturally differs between a member and its restarted self, so it is not read.
    """
    try:
        (count,) = struct.unpack_from(">i", metadata, 2)
        pos, topics = 6, set()
        for _ in range(count):
            (size,) = struct.unpack_from(">h", metadata, pos)
            name = metadata[pos + 2:pos + 2 + size]
            if size < 0 or len(name) != size:
                return None
            topics.add(name.decode())
            pos += 2 + size
    except (struct.error, UnicodeDecodeError):
        return None
    return frozenset(topics) if count >= 0 else None


@dataclass
class Member:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    heartbeat_deadline_ms: int
    assignment: bytes = b""
    join_waiter: Hashable | None = None
    sync_waiter: Hashable | None = None

    def metadata(self, protocol: str) -> bytes:
        return next(meta for name, meta in self.protocols if name == protocol)

    def names(self) -> set[str]:
        return {name for name, _ in self.protocols}


@dataclass
class Group:
    group_id: str
    state: GroupState = GroupState.EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    static: dict[str, str] = field(default_factory=dict)  # group.instance.id -> member id
    pending: dict[str, int] = field(default_factory=dict)  # KIP-394 ids handed out -> expiry
    join_deadline_ms: int = 0  # the join phase ends here at the latest
    initial_delay_until_ms: int = 0  # an empty group's first round waits for more members
    rebalances: int = 0  # generations started, for the rebalance counter

    def common_protocols(self) -> set[str]:
        sets = [m.names() for m in self.members.values()]
        return set.intersection(*sets) if sets else set()

    def all_joined(self) -> bool:
        return all(m.join_waiter is not None for m in self.members.values())

    def sync_members(self) -> Iterable[Member]:
        return (m for m in self.members.values() if m.sync_waiter is not None)


class GroupCoordinator:
    """Every group this gateway coordinates; all methods are synchronous and clock-free."""

    def __init__(self, *, initial_rebalance_delay_ms: int = INITIAL_REBALANCE_DELAY_MS,
                 min_session_timeout_ms: int = MIN_SESSION_TIMEOUT_MS,
                 max_session_timeout_ms: int = MAX_SESSION_TIMEOUT_MS,
                 new_member_id: Callable[[str], str] | None = None) -> None:
        self.initial_rebalance_delay_ms = initial_rebalance_delay_ms
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.new_member_id = new_member_id or (lambda client_id: f"{client_id}-{uuid.uuid4()}")
        self.groups: dict[str, Group] = {}

    # ---- queries ------------------------------------------------------------

    def group(self, group_id: str) -> Group | None:
        return self.groups.get(group_id)

    def state(self, group_id: str) -> GroupState:
        group = self.groups.get(group_id)
        return group.state if group else GroupState.DEAD

    def next_deadline(self) -> int | None:
        """The earliest time at which ``tick`` has something to do, or None."""
        deadlines: list[int] = []
        for group in self.groups.values():
            deadlines.extend(group.pending.values())
            deadlines.extend(m.heartbeat_deadline_ms for m in group.members.values()
                             if m.join_waiter is None)
            if group.state == GroupState.PREPARING_REBALANCE:
                deadlines.append(group.join_deadline_ms)
                if group.all_joined():
                    deadlines.append(group.initial_delay_until_ms)
        return min(deadlines) if deadlines else None

    # ---- JoinGroup ------------------------------------------------------------

    def join(self, now_ms: int, req: JoinRequest, waiter: Hashable) -> list[Reply]:
        error = self._join_error(req)
        if error is not None:
            return [Reply(waiter, JoinReply(error, req.member_id))]
        group = self.groups.get(req.group_id)
        if group is None:
            group = self.groups[req.group_id] = Group(req.group_id)
        if group.state == GroupState.DEAD:
            group.state = GroupState.EMPTY
        if group.members and (req.protocol_type != group.protocol_type
                              or not group.common_protocols() & {n for n, _ in req.protocols}):
            return [Reply(waiter, JoinReply(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, req.member_id))]
        if not req.member_id:
            return self._join_unknown(now_ms, group, req, waiter)
        return self._join_known(now_ms, group, req, waiter)

    def _join_error(self, req: JoinRequest) -> ErrorCode | None:
        if not req.group_id:
            return ErrorCode.INVALID_GROUP_ID
        if not self.min_session_timeout_ms <= req.session_timeout_ms <= self.max_session_timeout_ms:
            return ErrorCode.INVALID_SESSION_TIMEOUT
        if not req.protocol_type or not req.protocols:
            return ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        return None

    def _join_unknown(self, now_ms: int, group: Group, req: JoinRequest,
                      waiter: Hashable) -> list[Reply]:
        member_id = self.new_member_id(req.client_id)
        if req.group_instance_id is not None:
            old_id = group.static.get(req.group_instance_id)
            if old_id is not None and old_id in group.members:
                return self._replace_static(now_ms, group, old_id, member_id, req, waiter)
            # A new static member needs no second round trip: its instance id names it.
            return self._add_member(now_ms, group, member_id, req, waiter)
        if req.version >= MEMBER_ID_REQUIRED_FROM_VERSION:
            group.pending[member_id] = now_ms + req.session_timeout_ms
            return [Reply(waiter, JoinReply(ErrorCode.MEMBER_ID_REQUIRED, member_id))]
        return self._add_member(now_ms, group, member_id, req, waiter)

    def _join_known(self, now_ms: int, group: Group, req: JoinRequest,
                    waiter: Hashable) -> list[Reply]:
        if req.member_id in group.pending:
            del group.pending[req.member_id]
            return self._add_member(now_ms, group, req.member_id, req, waiter)
        fenced = self._fenced(group, req.member_id, req.group_instance_id)
        if fenced is not None:
            return [Reply(waiter, JoinReply(fenced, req.member_id))]
        member = group.members[req.member_id]
        replies: list[Reply] = []
        if member.join_waiter is not None and member.join_waiter != waiter:
            # A retried join replaces the earlier one, which will never be read.
            replies.append(Reply(member.join_waiter, JoinReply(ErrorCode.REBALANCE_IN_PROGRESS,
                                                               member.member_id)))
        changed = member.protocols != req.protocols
        member.protocols = req.protocols
        member.session_timeout_ms = req.session_timeout_ms
        member.rebalance_timeout_ms = req.rebalance_timeout_ms
        member.join_waiter = waiter
        member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        if group.state == GroupState.PREPARING_REBALANCE:
            return replies + self._maybe_complete_join(now_ms, group)
        if group.state == GroupState.COMPLETING_REBALANCE and not changed:
            # The member missed its JoinGroup answer: resend it for the current generation.
            member.join_waiter = None
            return [*replies, Reply(waiter, self._join_reply(group, member))]
        if group.state == GroupState.STABLE and not changed and member.member_id != group.leader:
            member.join_waiter = None
            return [*replies, Reply(waiter, self._join_reply(group, member))]
        return replies + self._prepare_rebalance(now_ms, group)

    def _add_member(self, now_ms: int, group: Group, member_id: str, req: JoinRequest,
                    waiter: Hashable) -> list[Reply]:
        if not group.members:
            # The first member decides the type; an Empty group's earlier type yields to it (Kafka).
            group.protocol_type = req.protocol_type
        group.members[member_id] = Member(
            member_id, req.group_instance_id, req.client_id, req.client_host, req.protocol_type,
            req.protocols, req.session_timeout_ms, req.rebalance_timeout_ms,
            now_ms + req.session_timeout_ms, join_waiter=waiter)
        if req.group_instance_id is not None:
            group.static[req.group_instance_id] = member_id
        if group.state == GroupState.PREPARING_REBALANCE:
            if group.initial_delay_until_ms > now_ms:
                # Kafka's InitialDelayedJoin: each newcomer buys the others another delay.
                group.initial_delay_until_ms = min(now_ms + self.initial_rebalance_delay_ms,
                                                   group.join_deadline_ms)
            return self._maybe_complete_join(now_ms, group)
        return self._prepare_rebalance(now_ms, group)

    def _replace_static(self, now_ms: int, group: Group, old_id: str, new_id: str,
                        req: JoinRequest, waiter: Hashable) -> list[Reply]:
        """A restarted static member takes over its old slot; the old id is fenced from now on."""
        old = group.members.pop(old_id)
        replies = [Reply(w, JoinReply(ErrorCode.FENCED_INSTANCE_ID, old_id))
                   for w in (old.join_waiter,) if w is not None]
        replies += [Reply(w, SyncReply(ErrorCode.FENCED_INSTANCE_ID))
                    for w in (old.sync_waiter,) if w is not None]
        member = Member(new_id, req.group_instance_id, req.client_id, req.client_host,
                        req.protocol_type, req.protocols, req.session_timeout_ms,
                        req.rebalance_timeout_ms, now_ms + req.session_timeout_ms,
                        assignment=old.assignment, join_waiter=waiter)
        group.members[new_id] = member
        assert req.group_instance_id is not None
        group.static[req.group_instance_id] = new_id
        previous_leader = group.leader
        if previous_leader == old_id:
            group.leader = new_id
        if group.state == GroupState.STABLE:
            if not self._keeps_assignment(group, old, member):
                return replies + self._prepare_rebalance(now_ms, group)
            # KIP-345: the member gets its assignment back and the others notice nothing,
            # even if it was the leader (whose restart used to rebalance everyone).
            member.join_waiter = None
            return [*replies, Reply(waiter, self._static_rejoin_reply(group, member, req.version,
                                                                      previous_leader))]
        if group.state == GroupState.PREPARING_REBALANCE:
            return replies + self._maybe_complete_join(now_ms, group)
        # CompletingRebalance: the leader may be assigning partitions to the old id, which
        # the new one would never get (Kafka starts a new round too).
        return replies + self._prepare_rebalance(now_ms, group)

    def _keeps_assignment(self, group: Group, old: Member, new: Member) -> bool:
        """Whether a static member's replacement leaves the Stable group's assignment valid.

        Kafka's rule is that the protocol the group would choose stays the same. For
        consumers the subscribed topics must stay the same too: a member that subscribes to
        other topics needs partitions of them, and the leader only assigns in a rebalance.
        """
        assert group.protocol is not None
        if self._vote(group) != group.protocol:
            return False
        if group.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return True
        old_meta, new_meta = old.metadata(group.protocol), new.metadata(group.protocol)
        before, after = subscribed_topics(old_meta), subscribed_topics(new_meta)
        if before is None or after is None:
            return old_meta == new_meta  # not a subscription we can read: only the same bytes
        return before == after

    def _static_rejoin_reply(self, group: Group, member: Member, version: int,
                             previous_leader: str | None) -> JoinReply:
        if version >= SKIP_ASSIGNMENT_FROM_VERSION:
            # A returning leader learns it leads (it watches the metadata for the group) but
            # must not assign: a Stable group would not pass a new assignment on.
            return replace(self._join_reply(group, member),
                           skip_assignment=member.member_id == group.leader)
        # Older clients cannot be told to skip: a returning leader is named by its old id,
        # so it takes itself for a follower.
        assert previous_leader is not None
        return replace(self._join_reply(group, member), leader=previous_leader, members=())

    def _fenced(self, group: Group, member_id: str, instance_id: str | None) -> ErrorCode | None:
        """Why member_id (with its instance id) may not act in group, or None if it may."""
        if instance_id is not None:
            current = group.static.get(instance_id)
            if current is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if current != member_id:
                return ErrorCode.FENCED_INSTANCE_ID
        if member_id not in group.members:
            return ErrorCode.UNKNOWN_MEMBER_ID
        return None

    # ---- rebalancing --------------------------------------------------------

    def _prepare_rebalance(self, now_ms: int, group: Group) -> list[Reply]:
        replies: list[Reply] = []
        if group.state == GroupState.COMPLETING_REBALANCE:
            # Followers waiting for an assignment of the abandoned generation must rejoin.
            for m in group.sync_members():
                replies.append(Reply(m.sync_waiter, SyncReply(ErrorCode.REBALANCE_IN_PROGRESS)))
                m.sync_waiter = None
        timeout = max((m.rebalance_timeout_ms for m in group.members.values()), default=0)
        if group.state == GroupState.EMPTY:
            group.initial_delay_until_ms = now_ms + self.initial_rebalance_delay_ms
            timeout = max(timeout, self.initial_rebalance_delay_ms)
        else:
            group.initial_delay_until_ms = now_ms
        if group.state != GroupState.PREPARING_REBALANCE:
            group.join_deadline_ms = now_ms + timeout
        group.state = GroupState.PREPARING_REBALANCE
        return replies + self._maybe_complete_join(now_ms, group)

    def _maybe_complete_join(self, now_ms: int, group: Group) -> list[Reply]:
        if group.state != GroupState.PREPARING_REBALANCE:
            return []
        if now_ms < group.join_deadline_ms and not (
                group.all_joined() and now_ms >= group.initial_delay_until_ms):
            return []
        replies: list[Reply] = []
        for member in [m for m in group.members.values()
                       if m.join_waiter is None and m.instance_id is None]:
            # A dynamic member that did not rejoin within the rebalance timeout is out. A static
            # one stays (Kafka): it may be restarting, and only its session timeout removes it.
            replies += self._remove_member(group, member, ErrorCode.UNKNOWN_MEMBER_ID)
        joined = [m for m in group.members.values() if m.join_waiter is not None]
        if group.members and not joined:
            # Only absent static members: no round without anyone to answer. Wait another
            # rebalance timeout; their sessions expire meanwhile unless they come back.
            group.join_deadline_ms = now_ms + max(m.rebalance_timeout_ms for m in group.members.values())
            return replies
        group.generation += 1
        if not group.members:
            # The protocol type stays, as in Kafka: tools list an Empty group as a "consumer" group.
            group.state = GroupState.EMPTY
            group.protocol = group.leader = None
            return replies
        group.rebalances += 1
        group.state = GroupState.COMPLETING_REBALANCE
        group.protocol = self._vote(group)
        if group.leader not in {m.member_id for m in joined}:
            group.leader = joined[0].member_id
        for member in group.members.values():
            member.assignment = b""
            member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        for member in joined:
            replies.append(Reply(member.join_waiter, self._join_reply(group, member)))
            member.join_waiter = None
        return replies

    @staticmethod
    def _vote(group: Group) -> str:
        """Each member votes for its most preferred protocol that every member supports."""
        candidates = group.common_protocols()
        votes: Counter[str] = Counter()
        for member in group.members.values():
            votes[next(name for name, _ in member.protocols if name in candidates)] += 1
        best = max(votes.values())
        leader = group.members.get(group.leader or "") or next(iter(group.members.values()))
        # Ties go to the leader's preference, so the choice is deterministic.
        return next(name for name, _ in leader.protocols if votes.get(name) == best)

    def _join_reply(self, group: Group, member: Member) -> JoinReply:
        assert group.protocol is not None and group.leader is not None
        members: tuple[tuple[str, str | None, bytes], ...] = ()
        if member.member_id == group.leader:
            members = tuple((m.member_id, m.instance_id, m.metadata(group.protocol))
                            for m in group.members.values())
        return JoinReply(ErrorCode.NONE, member.member_id, group.generation, group.protocol_type,
                         group.protocol, group.leader, members)

    def _remove_member(self, group: Group, member: Member, error: ErrorCode) -> list[Reply]:
        del group.members[member.member_id]
        if member.instance_id is not None and group.static.get(member.instance_id) == member.member_id:
            del group.static[member.instance_id]
        replies = []
        if member.join_waiter is not None:
            replies.append(Reply(member.join_waiter, JoinReply(error, member.member_id)))
        if member.sync_waiter is not None:
            replies.append(Reply(member.sync_waiter, SyncReply(error)))
        return replies

    # ---- SyncGroup, Heartbeat, LeaveGroup ----------------------------------------

    def _member_check(self, group: Group | None, member_id: str, instance_id: str | None,
                      generation: int) -> ErrorCode | None:
        if group is None or group.state in (GroupState.DEAD, GroupState.EMPTY):
            return ErrorCode.UNKNOWN_MEMBER_ID
        fenced = self._fenced(group, member_id, instance_id)
        if fenced is not None:
            return fenced
        if generation != group.generation:
            return ErrorCode.ILLEGAL_GENERATION
        return None

    def sync(self, now_ms: int, group_id: str, generation: int, member_id: str,
             instance_id: str | None, protocol_type: str | None, protocol_name: str | None,
             assignments: dict[str, bytes], waiter: Hashable) -> list[Reply]:
        group = self.groups.get(group_id)
        error = self._member_check(group, member_id, instance_id, generation)
        if error is not None:
            return [Reply(waiter, SyncReply(error))]
        assert group is not None
        if (protocol_type is not None and protocol_type != group.protocol_type) or (
                protocol_name is not None and protocol_name != group.protocol):
            return [Reply(waiter, SyncReply(ErrorCode.INCONSISTENT_GROUP_PROTOCOL))]
        member = group.members[member_id]
        member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        if group.state == GroupState.PREPARING_REBALANCE:
            return [Reply(waiter, SyncReply(ErrorCode.REBALANCE_IN_PROGRESS))]
        if group.state == GroupState.STABLE:
            return [Reply(waiter, self._sync_reply(group, member))]
        replies: list[Reply] = []
        if member.sync_waiter is not None and member.sync_waiter != waiter:
            replies.append(Reply(member.sync_waiter, SyncReply(ErrorCode.REBALANCE_IN_PROGRESS)))
        member.sync_waiter = waiter
        if member_id == group.leader:
            for m in group.members.values():
                # Members the leader left out get an empty assignment, as in Kafka.
                m.assignment = assignments.get(m.member_id, b"")
            group.state = GroupState.STABLE
            for m in group.sync_members():
                replies.append(Reply(m.sync_waiter, self._sync_reply(group, m)))
                m.sync_waiter = None
        return replies

    @staticmethod
    def _sync_reply(group: Group, member: Member) -> SyncReply:
        return SyncReply(ErrorCode.NONE, group.protocol_type, group.protocol, member.assignment)

    def heartbeat(self, now_ms: int, group_id: str, generation: int, member_id: str,
                  instance_id: str | None) -> ErrorCode:
        group = self.groups.get(group_id)
        error = self._member_check(group, member_id, instance_id, generation)
        if error is not None:
            return error
        assert group is not None
        member = group.members[member_id]
        member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        if group.state == GroupState.PREPARING_REBALANCE:
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    def leave(self, now_ms: int, group_id: str,
              leavers: list[tuple[str, str | None]]) -> tuple[list[ErrorCode], list[Reply]]:
        """Remove (member id, instance id) pairs; a static member may leave by instance id alone."""
        group = self.groups.get(group_id)
        codes: list[ErrorCode] = []
        replies: list[Reply] = []
        removed = False
        for member_id, instance_id in leavers:
            if group is None or group.state == GroupState.DEAD:
                codes.append(ErrorCode.UNKNOWN_MEMBER_ID)
                continue
            if not member_id and instance_id is not None:
                member_id = group.static.get(instance_id, "")
            if member_id in group.pending:
                del group.pending[member_id]
                codes.append(ErrorCode.NONE)
                continue
            error = self._fenced(group, member_id, instance_id)
            if error is not None:
                codes.append(error)
                continue
            replies += self._remove_member(group, group.members[member_id],
                                           ErrorCode.UNKNOWN_MEMBER_ID)
            codes.append(ErrorCode.NONE)
            removed = True
        if removed and group is not None:
            replies += self._membership_changed(now_ms, group)
        return codes, replies

    def _membership_changed(self, now_ms: int, group: Group) -> list[Reply]:
        if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            return self._prepare_rebalance(now_ms, group)
        return self._maybe_complete_join(now_ms, group)

    # ---- time ---------------------------------------------------------------

    def tick(self, now_ms: int) -> list[Reply]:
        """Expire sessions and pending member ids, and end join phases that are due."""
        replies: list[Reply] = []
        for group in list(self.groups.values()):
            for member_id, expiry in list(group.pending.items()):
                if expiry <= now_ms:
                    del group.pending[member_id]
            expired = [m for m in group.members.values()
                       if m.join_waiter is None and m.heartbeat_deadline_ms <= now_ms]
            for member in expired:
                replies += self._remove_member(group, member, ErrorCode.UNKNOWN_MEMBER_ID)
            if expired:
                replies += self._membership_changed(now_ms, group)
            else:
                replies += self._maybe_complete_join(now_ms, group)
        return replies

    # ---- offsets and administration ---------------------------------------------

    def commit_check(self, now_ms: int, group_id: str, generation: int, member_id: str,
                     instance_id: str | None) -> ErrorCode:
        """Whether an OffsetCommit may be stored; a member's commit also counts as a heartbeat."""
        group = self.groups.get(group_id)
        if generation < 0 and not member_id and (
                group is None or group.state in (GroupState.EMPTY, GroupState.DEAD)):
            return ErrorCode.NONE  # a consumer with manually assigned partitions
        if group is None or group.state in (GroupState.EMPTY, GroupState.DEAD):
            return ErrorCode.ILLEGAL_GENERATION if generation >= 0 else ErrorCode.UNKNOWN_MEMBER_ID
        fenced = self._fenced(group, member_id, instance_id)
        if fenced is not None:
            return fenced
        if generation != group.generation:
            return ErrorCode.ILLEGAL_GENERATION
        if group.state == GroupState.COMPLETING_REBALANCE:
            return ErrorCode.REBALANCE_IN_PROGRESS
        member = group.members[member_id]
        member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        return ErrorCode.NONE

    def delete(self, group_id: str) -> ErrorCode:
        """DeleteGroups for a group this coordinator knows of (only an empty one may go)."""
        group = self.groups.get(group_id)
        if group is not None and group.state not in (GroupState.EMPTY, GroupState.DEAD):
            return ErrorCode.NON_EMPTY_GROUP
        self.groups.pop(group_id, None)
        return ErrorCode.NONE
