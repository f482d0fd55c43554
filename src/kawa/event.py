"""EventBatch, the unit that moves through kawa, and time helpers.

Time is integer nanoseconds since the Unix epoch everywhere inside kawa; seconds/milliseconds or
msgpack EventTime exist only at the edges (inputs, formatters, outputs).
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass
from typing import Any

Record = dict[str, Any]
TimeNs = int
Event = tuple[int, Record]          # (time_ns, record): plain tuples, the cheapest thing CPython makes

NS_PER_SEC = 1_000_000_000


@dataclass(slots=True)
class EventBatch:
    """Events that share one tag. Inputs emit batches; filters and outputs handle whole batches."""

    tag: str
    events: list[Event]

    def __len__(self) -> int:
        return len(self.events)


def now_ns() -> int:
    """Current wall-clock time in nanoseconds (the default clock)."""
    return _time.time_ns()
