"""The null output: accepts events and drops them (Fluentd's out_null)."""

from __future__ import annotations

from kawa.config.schema import Options, option
from kawa.engine.registry import register
from kawa.event import Event
from kawa.plugins.base import Output


class NullOptions(Options):
    never_flush = option(False, "bool", no_effect="kawa's null output keeps nothing to flush",
                         doc="Fluentd test helper: keep chunks instead of dropping them.")


@register("output", "null")
class NullOutput(Output):
    Options = NullOptions

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.dropped = 0

    async def process(self, tag: str, events: list[Event]) -> None:
        self.dropped += len(events)

    def stats(self) -> dict[str, int]:
        return {"dropped_records": self.dropped}
