"""The quota rate and resolution logic in simulated time: no sockets, no clock."""

from __future__ import annotations

import pytest

from flexlog.gateway.quotas import (
    MATCH_DEFAULT,
    MATCH_EXACT,
    MATCH_SPECIFIED,
    PRODUCER_BYTE_RATE,
    Throttler,
    entity,
    filter_matches,
    resolve,
)
from flexlog.gateway.rate import BURST_S, TokenBucket

U, C = "user", "client-id"


def test_bucket_lets_a_burst_through_then_throttles_the_excess() -> None:
    bucket = TokenBucket.full(1000.0, now=0.0)
    assert bucket.record(1000 * BURST_S, now=0.0) == 0.0
    assert bucket.record(500, now=0.0) == pytest.approx(0.5)
    # Paid back by waiting: half a second later it is even again.
    assert bucket.throttle_s(now=0.5) == 0.0


def test_a_greedy_client_obeying_its_throttle_averages_its_rate() -> None:
    bucket, now, sent = TokenBucket.full(1_000_000.0, now=0.0), 0.0, 0
    while now < 10.0:
        sent += 100_000
        now += bucket.record(100_000, now) + 0.001
    assert sent / now == pytest.approx(1_000_000, rel=0.15)


def test_lowering_a_rate_keeps_the_debt() -> None:
    bucket = TokenBucket.full(100.0, now=0.0)
    bucket.record(300, now=0.0)
    bucket.set_rate(50.0, now=0.0)
    assert bucket.throttle_s(now=0.0) == pytest.approx(4.0)


QUOTAS = {
    entity([(U, "alice"), (C, "app")]): {PRODUCER_BYTE_RATE: 1.0},
    entity([(U, "alice")]): {PRODUCER_BYTE_RATE: 2.0},
    entity([(U, None), (C, "app")]): {PRODUCER_BYTE_RATE: 3.0},
    entity([(U, None)]): {PRODUCER_BYTE_RATE: 4.0},
    entity([(C, "tool")]): {PRODUCER_BYTE_RATE: 5.0},
    entity([(C, None)]): {PRODUCER_BYTE_RATE: 6.0},
}


@pytest.mark.parametrize(("user", "client", "value", "tags"), [
    ("alice", "app", 1.0, ("alice", "app")),
    ("alice", "other", 2.0, ("alice", "")),
    ("bob", "app", 3.0, ("bob", "app")),
    ("bob", "tool", 4.0, ("bob", "")),
])
def test_kafka_precedence(user: str, client: str, value: float, tags: tuple[str, str]) -> None:
    match = resolve(QUOTAS, PRODUCER_BYTE_RATE, user, client)
    assert match is not None and (match.value, match.user, match.client_id) == (value, *tags)


def test_client_id_quotas_apply_without_user_quotas() -> None:
    only_clients = {e: v for e, v in QUOTAS.items() if U not in dict(e)}
    assert resolve(only_clients, PRODUCER_BYTE_RATE, "bob", "tool").value == 5.0
    assert resolve(only_clients, PRODUCER_BYTE_RATE, "bob", "x").value == 6.0
    assert resolve({}, PRODUCER_BYTE_RATE, "bob", "x") is None


def test_describe_filters() -> None:
    both, user_default = entity([(U, "alice"), (C, "app")]), entity([(U, None)])
    assert filter_matches([(U, MATCH_EXACT, "alice")], False, both)
    assert not filter_matches([(U, MATCH_EXACT, "alice")], True, both)
    assert filter_matches([(U, MATCH_DEFAULT, None)], True, user_default)
    assert not filter_matches([(U, MATCH_SPECIFIED, None)], False, user_default)
    assert filter_matches([], False, both)


def test_default_user_quota_gives_each_user_its_own_bucket() -> None:
    class Store:
        quotas = {entity([(U, None)]): {PRODUCER_BYTE_RATE: 100.0}}

    now = [0.0]
    throttler = Throttler(Store(), clock=lambda: now[0])  # type: ignore[arg-type]
    assert throttler.charge(PRODUCER_BYTE_RATE, "a", "x", 200)[1] == pytest.approx(1.0)
    assert throttler.charge(PRODUCER_BYTE_RATE, "b", "x", 100)[1] == 0.0
    assert throttler.charge(PRODUCER_BYTE_RATE, "a", "y", 1)[1] > 1.0
