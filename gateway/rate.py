"""A token bucket in injected time: how long a client must wait to be back within its quota.

Pure: callers pass `now` (seconds, any monotonic origin), so tests run in simulated
time. Kafka computes throttle times from a sampled-window rate; a bucket gives the
same steady-state answer (a client held to `rate` units per second, with the
excess paid back as a delay) with one number of state and no window edge effects.
"""

from __future__ import annotations

from dataclasses import dataclass

# A quota'd client may be ahead of its rate by this many seconds' worth before it is
# throttled, as Kafka's default window (11 one-second samples) lets bursts through.
BURST_S = 1.0
# Kafka caps a throttle at its quota window, so one huge request cannot silence a client for long.
MAX_THROTTLE_S = 30.0


@dataclass
class TokenBucket:
    rate: float  # units per second; > 0
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, now: float) -> TokenBucket:
        return cls(rate, rate * BURST_S, now)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.rate * BURST_S, self.tokens + elapsed * self.rate)
        self.updated = now

    def set_rate(self, rate: float, now: float) -> None:
        """A changed quota applies from now on; the debt already owed stays."""
        self._refill(now)
        self.rate = rate
        self.tokens = min(self.tokens, rate * BURST_S)

    def record(self, amount: float, now: float) -> float:
        """Spend amount (it is always spent: the request was served); the throttle in seconds."""
        self._refill(now)
        self.tokens -= amount
        return self.throttle_s(now)

    def idle(self, now: float) -> bool:
        """Refilled to the brim: forgetting this bucket changes nothing."""
        self._refill(now)
        return self.tokens >= self.rate * BURST_S

    def throttle_s(self, now: float) -> float:
        """How long until the bucket is no longer in debt."""
        self._refill(now)
        if self.tokens >= 0:
            return 0.0
        return min(MAX_THROTTLE_S, -self.tokens / self.rate)
