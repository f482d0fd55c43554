"""What outputs over several destinations share: copy and roundrobin start, stop and flush every store
they were built with (Fluentd's MultiOutput); roundrobin and forward take turns by weight."""

from __future__ import annotations

import random
from functools import reduce
from math import gcd
from typing import Sequence, TypeVar

from kawa.plugins.base import Output

T = TypeVar("T")


def weighted_rotation(items: Sequence[T], weights: Sequence[int], *, interleave: bool) -> list[T]:
    """Each item as many times as its weight in lowest terms: round by round (a, b, a, b, b for
    weights 2 and 3) with `interleave`, else shuffled once when a weight is above 1 (Fluentd's
    roundrobin)."""
    divisor = reduce(gcd, weights, 0) or 1
    turns = [w // divisor for w in weights]
    if interleave:
        return [item for rnd in range(max(turns, default=0)) for item, n in zip(items, turns) if n > rnd]
    order = [item for item, n in zip(items, turns) for _ in range(n)]
    if any(n > 1 for n in turns):
        random.shuffle(order)
    return order


class MultiOutput(Output):
    outputs: list[Output]

    async def start(self) -> None:
        for out in self.outputs:
            await out.start()

    async def stop(self) -> None:
        for out in self.outputs:
            await out.stop()

    async def flush(self) -> None:
        for out in self.outputs:
            await out.flush()
