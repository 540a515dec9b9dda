"""shared.runtime.RetryPolicy: the one retry loop of COS uploads and callbacks, on a virtual clock."""
from __future__ import annotations

import pytest

from shared.runtime import GaveUp, RetryPolicy


class Flaky:
    def __init__(self, failures: int, error: type[Exception] = ConnectionError):
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return "done"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def _run(policy: RetryPolicy, call: Flaky, clock: Clock, **kw):
    return policy.run(call, retryable=lambda e: isinstance(e, ConnectionError), sleep=clock.sleep, **kw)


def test_retries_with_doubling_jittered_waits_until_it_works():
    clock = Clock()
    policy = RetryPolicy(tries=5, backoff=1.0, max_backoff=3.0, clock=clock)
    told: list[tuple[int, float]] = []
    assert _run(policy, Flaky(4), clock, on_retry=lambda n, e, w: told.append((n, w))) == "done"
    for wait, nominal in zip(clock.waits, [1.0, 2.0, 3.0, 3.0]):
        assert nominal * 0.75 <= wait <= nominal
    assert [n for n, _ in told] == [1, 2, 3, 4]


@pytest.mark.parametrize("call,policy,why,attempts", [
    (Flaky(9), RetryPolicy(tries=3, backoff=0.1), "tries", 3),
    (Flaky(9), RetryPolicy(tries=1, backoff=0.1), "tries", 1),
    (Flaky(9, ValueError), RetryPolicy(tries=5, backoff=0.1), "not_retryable", 1),
    (Flaky(9), RetryPolicy(tries=50, backoff=1.0, max_backoff=1.0, deadline=5.0, jitter=0.0), "deadline", 6),
])
def test_gives_up_saying_why(call, policy, why, attempts):
    clock = Clock()
    policy.clock = clock
    with pytest.raises(GaveUp) as e:
        _run(policy, call, clock)
    assert (e.value.why, e.value.attempts, call.calls) == (why, attempts, attempts)
    assert str(e.value.error) == f"failure {attempts}"
    assert clock.now <= (policy.deadline or float("inf"))


def test_a_wait_that_returns_true_cancels():
    with pytest.raises(GaveUp) as e:
        RetryPolicy(tries=5, backoff=0.1).run(Flaky(9), retryable=lambda e: True, sleep=lambda s: True)
    assert (e.value.why, e.value.attempts) == ("cancelled", 1)


def test_spanning_finds_enough_tries_for_the_time_asked():
    policy = RetryPolicy.spanning(60.0, backoff=1.0, max_backoff=10.0)
    assert policy.shortest_span() >= 60.0
    assert RetryPolicy(tries=policy.tries - 1, backoff=1.0, max_backoff=10.0).shortest_span() < 60.0
    with pytest.raises(ValueError):
        RetryPolicy(tries=0)
