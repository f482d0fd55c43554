"""RetryState: Fluentd's exponential_backoff / periodic schedule, limits and secondary switch (fake clock)."""

from __future__ import annotations

import pytest

from kawa.buffer.retry import RetryState
from kawa.testing.drivers import FakeClock


def _state(clock: FakeClock, **kw: object) -> RetryState:
    args: dict = dict(randomize=False, clock=clock)
    args.update(kw)
    return RetryState(args.pop("retry_type", "exponential_backoff"), args.pop("wait", 1), args.pop("timeout", 72 * 3600),
                      **args)


def _intervals(clock: FakeClock, state: RetryState, n: int) -> list[float]:
    out = []
    for _ in range(n):
        wait = state.next_time - clock() / 1e9
        out.append(round(wait, 6))
        clock.advance(wait)
        state.step()
    return out


def test_exponential_backoff_doubles_from_retry_wait() -> None:
    clock = FakeClock()
    s = _state(clock)
    assert _intervals(clock, s, 6) == [1, 2, 4, 8, 16, 32]


def test_max_interval_caps_and_base_is_used() -> None:
    clock = FakeClock()
    s = _state(clock, backoff_base=3.0, max_interval=20)
    assert _intervals(clock, s, 5) == [1, 3, 9, 20, 20]


def test_periodic_waits_the_same() -> None:
    clock = FakeClock()
    s = _state(clock, retry_type="periodic", wait=5)
    assert _intervals(clock, s, 4) == [5, 5, 5, 5]


def test_retry_max_times_limits() -> None:
    clock = FakeClock()
    s = _state(clock, max_steps=2)
    assert not s.limit()
    _intervals(clock, s, 1)
    assert not s.limit()
    _intervals(clock, s, 1)
    assert s.limit()


def test_retry_timeout_limits_after_next_time_reaches_timeout_twice() -> None:
    clock = FakeClock()
    s = _state(clock, timeout=10)
    _intervals(clock, s, 3)      # waits 1, 2, 4: now at 7 s, next would be 8 s later -> clipped to 10
    assert s.next_time == pytest.approx(s.start + 10)
    assert not s.limit()         # reached once: one last try at the timeout
    clock.advance(s.next_time - clock() / 1e9)
    s.step()
    assert s.limit()


def test_forever_never_limits() -> None:
    clock = FakeClock()
    s = _state(clock, timeout=1, max_steps=1, forever=True)
    _intervals(clock, s, 5)
    assert not s.limit()


def test_randomize_stays_within_an_eighth() -> None:
    clock = FakeClock()
    lo = _state(clock, randomize=True, rand=lambda: 0.0)
    hi = _state(clock, randomize=True, rand=lambda: 1.0)
    lo.step()
    hi.step()
    now = clock() / 1e9
    assert lo.next_time - now == pytest.approx(2 * (1 - 0.125))
    assert hi.next_time - now == pytest.approx(2 * (1 + 0.125))


def test_secondary_after_threshold_of_timeout() -> None:
    clock = FakeClock()
    s = _state(clock, timeout=100, secondary=True, secondary_threshold=0.8)
    assert not s.secondary()
    clock.advance(80)
    assert s.secondary()
