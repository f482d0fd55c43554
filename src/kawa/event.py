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


class StrValueEvents(list):  # type: ignore[type-arg]
    """A list of events whose records are flat dicts of str keys and str values, as a regexp
    parser's named groups give them: a formatter may skip its scans for other value types (the json
    formatter's search for numbers that Oj spells unlike orjson, ~600 ns a line).

    The promise holds only while nobody changes the records, so it is dropped wherever it cannot be
    known: any code that builds a new list builds a plain one (slices and `+` of lists do), and the
    router passes it on only through filters that declare `keeps_str_values` (grep)."""

    __slots__ = ()


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
