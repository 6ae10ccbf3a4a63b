"""The quota rate and resolution logic in simulated time: no sockets, no clock."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from flexlog.gateway.handling_time import HandlingTime
from flexlog.gateway.quotas import (
    MATCH_DEFAULT,
    MATCH_EXACT,
    MATCH_SPECIFIED,
    PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE,
    Throttler,
    entity,
    filter_matches,
    invalid_op,
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


class FakeStore:
    def __init__(self, quotas: dict) -> None:
        self.quotas = quotas


def test_request_percentage_is_a_share_of_one_threads_time() -> None:
    # 10%: 0.1 s of handling per second, with a second's worth (0.1 s) of burst.
    now = [0.0]
    throttler = Throttler(FakeStore({entity([(C, "greedy")]): {REQUEST_PERCENTAGE: 10.0}}),  # type: ignore[arg-type]
                          clock=lambda: now[0])
    assert throttler.charge(REQUEST_PERCENTAGE, "u", "greedy", 0.1)[1] == 0.0
    # 0.05 s more handling is half a second's worth at 10%: throttled for that long.
    match, throttle = throttler.charge(REQUEST_PERCENTAGE, "u", "greedy", 0.05)
    assert (match.value, match.client_id, throttle) == (10.0, "greedy", pytest.approx(0.5))
    now[0] = 0.5
    assert throttler.charge(REQUEST_PERCENTAGE, "u", "greedy", 0.0)[1] == 0.0
    # 200% is two threads' time: once raised, a second refills 2 s of handling.
    throttler.store.quotas[entity([(C, "greedy")])][REQUEST_PERCENTAGE] = 200.0
    assert throttler.charge(REQUEST_PERCENTAGE, "u", "greedy", 0.0)[1] == 0.0
    now[0] = 1.5
    assert throttler.charge(REQUEST_PERCENTAGE, "u", "greedy", 1.9)[1] == 0.0
    assert throttler.charge(REQUEST_PERCENTAGE, "u", "other", 9.0) is None


def test_a_client_obeying_request_throttles_uses_its_percentage() -> None:
    # 5% with requests costing 2 ms each: once the burst is spent, 0.05 s of handling per second.
    now = [0.0]
    throttler = Throttler(FakeStore({entity([(U, None)]): {REQUEST_PERCENTAGE: 5.0}}),  # type: ignore[arg-type]
                          clock=lambda: now[0])
    handled = 0.0
    while now[0] < 20.0:
        handled += 0.002
        now[0] += 0.002 + throttler.charge(REQUEST_PERCENTAGE, "alice", "x", 0.002)[1]
    assert handled / now[0] == pytest.approx(0.05, rel=0.1)


def test_request_percentage_is_accepted_and_checked_like_the_byte_rates() -> None:
    assert invalid_op(REQUEST_PERCENTAGE, 200.0, remove=False) is None
    assert invalid_op(REQUEST_PERCENTAGE, 0.0, remove=False) is not None
    assert invalid_op("controller_mutation_rate", 1.0, remove=False) is not None


def test_handling_time_counts_only_the_handlers_own_steps() -> None:
    ticks = itertools.count()

    def clock() -> float:
        return float(next(ticks))  # every reading one second after the one before

    async def handler() -> str:
        await asyncio.sleep(0)
        await asyncio.sleep(0.01)  # waiting: the loop runs other things, no clock reading is taken
        return "done"

    async def run() -> tuple[str, float]:
        timed = HandlingTime(handler(), clock=clock)
        result = await timed
        return result, timed.seconds

    # Three steps (start, after each sleep), each read twice one tick apart: 3 s, whatever the waits.
    assert asyncio.run(run()) == ("done", 3.0)


def test_handling_time_passes_cancellation_and_errors_through() -> None:
    async def handler() -> None:
        await asyncio.sleep(10)

    async def failing() -> None:
        await asyncio.sleep(0)
        raise ValueError("bad request")

    async def run() -> None:
        task = asyncio.ensure_future(_await(HandlingTime(handler())))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(ValueError, match="bad request"):
            await HandlingTime(failing())

    asyncio.run(run())


async def _await(timed: HandlingTime) -> object:
    return await timed
