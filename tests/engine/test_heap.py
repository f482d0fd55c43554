"""The worker's garbage-collector settings (kawa.engine.heap): what start-up left is frozen, later
cycles are still collected, and a reload makes the old pipeline's objects collectable again."""

from __future__ import annotations

import asyncio
import gc
import weakref

from kawa.engine import heap
from tests.engine.test_agent import _setup


class Node:
    def __init__(self) -> None:
        self.me = self          # a reference cycle: only the collector frees it


def test_settle_freezes_what_exists_and_raises_the_thresholds() -> None:
    heap.settle()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == heap.THRESHOLDS


def test_cycles_made_after_settle_are_still_collected() -> None:
    heap.settle()
    later = Node()
    gone = weakref.ref(later)
    del later
    gc.collect()
    assert gone() is None


def test_a_frozen_cycle_is_collected_only_after_unsettle() -> None:
    old = Node()                 # stands for the pipeline a reload replaces
    gone = weakref.ref(old)
    heap.settle()
    del old
    gc.collect()
    assert gone() is not None    # frozen: no collection looks at it
    heap.unsettle()
    gc.collect()
    assert gone() is None


def test_a_running_agent_has_settled_the_heap() -> None:
    agent, calls, _, _ = _setup()
    seen: list[int] = []

    async def run() -> int:
        task = asyncio.create_task(agent.run())
        while "start in1" not in calls:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        seen.append(gc.get_freeze_count())
        agent.request_stop()
        return await task

    gc.unfreeze()
    assert asyncio.run(run()) == 0
    assert seen[0] > 0
    assert gc.get_threshold() == heap.THRESHOLDS
