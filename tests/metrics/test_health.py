"""Liveness from a heartbeat stamp, readiness from output progress and the drain flag."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kawa.metrics import begin_drain, catalog as c, end_drain, is_draining
from kawa.metrics.health import Health, health_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Out:
    def __init__(self, plugin_id: str) -> None:
        self.plugin_id = plugin_id
        self.counters = {c.WRITE_COUNT: 0, c.NUM_ERRORS: 0}

    def stats(self) -> dict[str, Any]:
        return dict(self.counters)


@pytest.fixture(autouse=True)
def _no_global_drain() -> Any:
    yield
    end_drain()


def test_liveness_goes_stale_when_the_heartbeat_stops() -> None:
    clock = Clock()
    health = Health(clock, stale_after=10)
    assert health.liveness() == (True, "ok")
    clock.now += 10.5
    ok, why = health.liveness()
    assert not ok and "10.5s old" in why
    health.beat()
    assert health.liveness()[0]


def test_readiness_fails_only_after_errors_persist_without_writes() -> None:
    clock = Clock()
    out = Out("cwl")
    health = Health(clock, failing_after=60)
    health._outputs = lambda: [out]
    assert health.readiness() == (True, "ok")
    out.counters[c.NUM_ERRORS] = 1            # first failure: not yet failing for long
    assert health.readiness()[0]
    clock.now += 30
    out.counters[c.NUM_ERRORS] = 3
    health.beat()
    assert health.readiness()[0]
    clock.now += 31
    health.beat()
    assert health.readiness() == (False, "outputs failing: cwl")
    out.counters[c.WRITE_COUNT] = 1           # a write went through: ready again
    assert health.readiness()[0]


def test_idle_output_without_errors_stays_ready() -> None:
    clock = Clock()
    out = Out("idle")
    health = Health(clock, failing_after=5)
    health._outputs = lambda: [out]
    health.readiness()
    clock.now += 3600
    health.beat()
    assert health.readiness()[0]


def test_draining_flag_and_process_wide_drain() -> None:
    health = Health(Clock())
    health.draining = True
    assert health.readiness() == (False, "draining")
    health.draining = False
    assert not is_draining()
    begin_drain()
    assert is_draining()
    assert Health(Clock()).readiness() == (False, "draining")
    assert health.liveness()[0]               # draining is not dead


def test_heartbeat_task_beats_on_the_loop_and_stops() -> None:
    async def run() -> None:
        clock = Clock()
        health = Health(clock, heartbeat_interval=0.01)
        health.acquire(lambda: ())
        health.acquire(lambda: ())            # a second HTTP input shares the same task
        clock.now += 50
        for _ in range(500):
            if health.last_beat == clock.now:
                break
            await asyncio.sleep(0.01)
        assert health.last_beat == clock.now
        await health.release()
        assert health._task is not None
        await health.release()
        assert health._task is None

    asyncio.run(run())


def test_health_is_shared_through_extras() -> None:
    extras: dict[str, Any] = {}
    assert health_of(extras) is health_of(extras)
