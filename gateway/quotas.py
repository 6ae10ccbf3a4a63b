"""Client quotas as Kafka has them: per user and client-id, defaults and overrides, in ``__quotas``.

A quota entity is a user, a client-id, or both, each either named or the default
(name None). AlterClientQuotas appends set/remove events to the root-owned color
``__quotas`` and every gateway follows it, so all of them enforce the same quotas.

Each quota key is resolved on its own, in Kafka's precedence order (first match wins):
user+client-id, user+default client-id, user, default user+client-id, default
user+default client-id, default user, client-id, default client-id. A default
entity applies to each user or client-id separately, so a client's bucket is
keyed by the names its matching entity mentions (Kafka's metric tags): clients
sharing a user-only quota share one bucket.

``request_percentage`` (KIP-124) is the share of one request-handler thread's time a
client may use: 100 is one thread's whole time, 200 two threads'. Its bucket holds
seconds of handling time and refills at value/100 seconds per second, so the same
bucket arithmetic as the byte rates turns an excess into a throttle time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flexlog.core.client import FlexLogClient
from flexlog.core.event_log import EventLog, JsonEvents, json_record
from flexlog.gateway.protocol import ApiKey
from flexlog.gateway.rate import TokenBucket

QUOTAS_COLOR = "__quotas"
USER = "user"
CLIENT_ID = "client-id"
ENTITY_TYPES = (USER, CLIENT_ID)
PRODUCER_BYTE_RATE = "producer_byte_rate"
CONSUMER_BYTE_RATE = "consumer_byte_rate"
REQUEST_PERCENTAGE = "request_percentage"
KEYS = (PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE)
# As in Kafka, the SASL exchange is not charged to request_percentage (nor is anything else sent
# before authentication completes): the principal a quota would be looked up by is not known yet.
REQUEST_QUOTA_EXEMPT = frozenset({ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE})
# Buckets kept before idle, fully refilled ones are dropped (default quotas make one per client-id).
MAX_BUCKETS = 10_000

# (entity type, name or None for the default), sorted by type: user before client-id never matters.
Entity = tuple[tuple[str, str | None], ...]

MATCH_EXACT, MATCH_DEFAULT, MATCH_SPECIFIED = 0, 1, 2


def entity(parts: Iterable[tuple[str, str | None]]) -> Entity:
    return tuple(sorted(parts))


def invalid_entity(parts: list[tuple[str, str | None]]) -> str | None:
    """Why a quota cannot be set on this entity, or None."""
    types = [t for t, _ in parts]
    if not types:
        return "the entity is empty"
    if len(set(types)) != len(types):
        return "an entity type appears twice"
    for t in types:
        if t not in ENTITY_TYPES:
            return f"entity type {t!r} is not supported (only {', '.join(ENTITY_TYPES)})"
    return None


def invalid_op(key: str, value: float, remove: bool) -> str | None:
    if key not in KEYS:
        return f"quota key {key!r} is not supported (only {', '.join(KEYS)})"
    if not remove and not (math.isfinite(value) and value > 0):
        return f"{key} must be a positive number, not {value}"
    return None


def bucket_rate(key: str, value: float) -> float:
    """What a quota's bucket refills per second, in the units its key is charged in."""
    return value / 100 if key == REQUEST_PERCENTAGE else value


def precedence(user: str, client_id: str) -> list[Entity]:
    """The entities that may hold a quota for this user and client-id, most specific first."""
    u, ud, c, cd = (USER, user), (USER, None), (CLIENT_ID, client_id), (CLIENT_ID, None)
    return [entity(e) for e in ((u, c), (u, cd), (u,), (ud, c), (ud, cd), (ud,), (c,), (cd,))]


@dataclass(frozen=True)
class Match:
    """A quota that applies: its value and the names its bucket (and metrics) are keyed by."""

    value: float
    user: str
    client_id: str


def resolve(quotas: dict[Entity, dict[str, float]], key: str, user: str, client_id: str) -> Match | None:
    for candidate in precedence(user, client_id):
        value = quotas.get(candidate, {}).get(key)
        if value is not None:
            types = {t for t, _ in candidate}
            return Match(value, user if USER in types else "", client_id if CLIENT_ID in types else "")
    return None


def filter_matches(components: list[tuple[str, int, str | None]], strict: bool, e: Entity) -> bool:
    """DescribeClientQuotas: does entity e pass every (type, match type, match) component?"""
    names = dict(e)
    for entity_type, match_type, match in components:
        if entity_type not in names:
            return False
        name = names[entity_type]
        if match_type == MATCH_EXACT and name != match:
            return False
        if match_type == MATCH_DEFAULT and name is not None:
            return False
        if match_type == MATCH_SPECIFIED and name is None:
            return False
    return not strict or len(names) == len(components)


class QuotaStore:
    """The quotas in ``__quotas``, folded into entity -> key -> value."""

    def __init__(self, client: FlexLogClient) -> None:
        self.quotas: dict[Entity, dict[str, float]] = {}
        self.log = EventLog(client, JsonEvents(self._apply, QUOTAS_COLOR), QUOTAS_COLOR)

    def _apply(self, event: dict[str, Any]) -> None:
        e = entity((str(t), None if n is None else str(n)) for t, n in event["entity"])
        values = self.quotas.setdefault(e, {})
        for key, value in event["set"].items():
            values[key] = float(value)
        for key in event["remove"]:
            values.pop(key, None)
        if not values:
            del self.quotas[e]

    async def open(self) -> None:
        await self.log.open()

    async def alter(self, e: Entity, set_values: dict[str, float], remove: list[str]) -> None:
        await self.log.append(json_record({"entity": [list(p) for p in e], "set": set_values,
                                           "remove": remove}))


class Throttler:
    """Per quota key and bucket: charge usage, answer how long the client must be throttled."""

    def __init__(self, store: QuotaStore, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self.buckets: dict[tuple[str, str, str], TokenBucket] = {}

    def charge(self, key: str, user: str, client_id: str, amount: float) -> tuple[Match, float] | None:
        """Spend amount against the quota that applies; (the match, throttle seconds), or None."""
        match = resolve(self.store.quotas, key, user, client_id)
        if match is None:
            return None
        now = self.clock()
        slot = (key, match.user, match.client_id)
        bucket = self.buckets.get(slot)
        if bucket is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self._drop_idle(now)
            bucket = self.buckets[slot] = TokenBucket.full(bucket_rate(key, match.value), now)
        elif bucket.rate != bucket_rate(key, match.value):
            bucket.set_rate(bucket_rate(key, match.value), now)
        return match, bucket.record(amount, now)

    def _drop_idle(self, now: float) -> None:
        for slot in [s for s, b in self.buckets.items() if b.idle(now)]:
            del self.buckets[slot]
