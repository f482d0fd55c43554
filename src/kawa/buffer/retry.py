"""Retry schedule of a failing chunk: Fluentd's exponential_backoff / periodic state machine.

Pure: the clock (ns) and the random source are passed in, so tests step time by hand.
"""

from __future__ import annotations

import math
import random as _random
from typing import Callable

from kawa.event import NS_PER_SEC

# Fluentd plugin_helper/retry_state.rb: randomize_width default
RANDOMIZE_WIDTH = 0.125


class RetryState:
    """Fluentd's RetryStateMachine with times in seconds (float) read from `clock` (ns).

    Created at the first failure: `next_time` = start + retry_wait. Each further failure calls
    `step()`. `limit()` tells when to give up; `secondary()` when to switch to <secondary>.
    """

    def __init__(self, retry_type: str, wait: float, timeout: float, *, forever: bool = False,
                 max_steps: int | None = None, backoff_base: float = 2.0, max_interval: float | None = None,
                 randomize: bool = True, secondary: bool = False, secondary_threshold: float = 0.8,
                 clock: Callable[[], int], rand: Callable[[], float] = _random.random) -> None:
        self.retry_type = retry_type
        self.wait = float(wait)
        self.base = float(backoff_base)
        self.max_interval = max_interval
        self.forever = forever
        self.max_steps = max_steps
        self.randomize_enabled = randomize
        self.secondary_enabled = secondary
        self._clock = clock
        self._rand = rand
        self.start = self.now()
        self.steps = 0
        self.timeout_at = self.start + timeout
        self.current = "primary"
        self._reached_timeout = False
        self._timed_out = False
        self.secondary_transition_steps = 0
        self.secondary_transition_at = math.inf
        if secondary:
            max_timeout = float(timeout)
            if max_steps is not None:
                max_timeout = min(max_timeout, self.max_retry_timeout(max_steps))
            self.secondary_transition_at = self.start + max_timeout * secondary_threshold
        self.next_time = self.start + self.wait

    def now(self) -> float:
        return self._clock() / NS_PER_SEC

    # -- schedule math ----------------------------------------------------------------------------
    def interval(self, n: int) -> float:
        """Wait before retry n (0-based), before randomization."""
        if self.retry_type == "periodic":
            return self.wait
        while True:
            try:
                value = self.wait * (self.base ** n)
            except OverflowError:
                value = math.inf
            if math.isfinite(value):
                break
            n -= 1        # Fluentd: fall back to the last finite interval
        if self.max_interval is not None and value > self.max_interval:
            return float(self.max_interval)
        return value

    def max_retry_timeout(self, max_steps: int) -> float:
        return sum(self.interval(i) for i in range(max_steps))

    def randomize(self, interval: float) -> float:
        if not self.randomize_enabled:
            return interval
        return interval + interval * RANDOMIZE_WIDTH * (2 * self._rand() - 1.0)

    def _naive_next_time(self, n: int) -> float:
        return self.now() + self.randomize(self.interval(n))

    def _calc_next_time(self) -> float:
        if self.forever or not self.secondary_enabled:
            naive = self._naive_next_time(self.steps)
            return naive if self.forever else min(naive, self.timeout_at)
        if self.current == "primary":
            return min(self._naive_next_time(self.steps), self.secondary_transition_at)
        return min(self._naive_next_time(self.steps - self.secondary_transition_steps), self.timeout_at)

    # -- transitions ------------------------------------------------------------------------------
    def step(self) -> None:
        """Record one more failure and compute the next retry time."""
        self.steps += 1
        if (not self.forever and self.secondary_enabled and self.current != "secondary"
                and self.now() >= self.secondary_transition_at):
            self.current = "secondary"
            self.secondary_transition_steps = self.steps
        self.next_time = self._calc_next_time()
        if self._reached_timeout:
            self._timed_out = self.next_time >= self.timeout_at
        else:
            self._reached_timeout = self.next_time >= self.timeout_at

    def limit(self) -> bool:
        """True when this chunk must stop being retried."""
        if self.forever:
            return False
        return self._timed_out or (self.max_steps is not None and self.steps >= self.max_steps)

    def secondary(self) -> bool:
        return (not self.forever and self.secondary_enabled
                and (self.current == "secondary" or self.now() >= self.secondary_transition_at))

    @property
    def next_time_ns(self) -> int:
        return int(self.next_time * NS_PER_SEC)


def retry_state_from(settings: object, *, clock: Callable[[], int], rand: Callable[[], float] = _random.random,
                     secondary: bool = False) -> RetryState:
    """A RetryState from resolved buffer settings (kawa.buffer.options.BufferSettings)."""
    s = settings
    return RetryState(
        s.retry_type, s.retry_wait, s.retry_timeout,  # type: ignore[attr-defined]
        forever=s.retry_forever, max_steps=s.retry_max_times,  # type: ignore[attr-defined]
        backoff_base=s.retry_exponential_backoff_base, max_interval=s.retry_max_interval,  # type: ignore[attr-defined]
        randomize=s.retry_randomize, secondary=secondary,  # type: ignore[attr-defined]
        secondary_threshold=s.retry_secondary_threshold, clock=clock, rand=rand)  # type: ignore[attr-defined]
