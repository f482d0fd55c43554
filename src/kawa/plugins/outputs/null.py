"""The null output: accepts events and drops them (Fluentd's out_null); with a `<buffer>` section it is a
buffered output whose chunks are dropped when written (never_flush keeps them queued), as in Fluentd.
"""

from __future__ import annotations

from typing import Any

from kawa.buffer.output import BufferedOutput
from kawa.config.schema import ENCLOSING_TYPE, Options, option, section
from kawa.engine.registry import register
from kawa.errors import RetryableError
from kawa.event import Event
from kawa.plugins.base import Output, PluginContext


class NullOptions(Options):
    never_flush = option(False, "bool", doc="With <buffer>: keep chunks instead of dropping them "
                         "(Fluentd's test helper; writes fail and are retried).")
    buffer = section(plugin_kind="buffer", default_type="memory", doc="Makes the output buffered.")
    secondary = section(plugin_kind="output", default_type=ENCLOSING_TYPE, doc="With <buffer>: output for chunks that cannot be written.")


@register("output", "null")
class NullOutput(Output):
    Options = NullOptions

    def __new__(cls, options: Any, ctx: PluginContext) -> Any:
        # One @type, two behaviours: a <buffer> section selects the buffered variant (Fluentd decides
        # the same way from the configuration).
        if cls is NullOutput and getattr(options, "buffer", None) is not None:
            return super().__new__(BufferedNullOutput)
        return super().__new__(cls)

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        self.dropped = 0

    async def process(self, tag: str, events: list[Event]) -> None:
        self.dropped += len(events)

    def stats(self) -> dict[str, Any]:
        return {"dropped_records": self.dropped}


class BufferedNullOutput(BufferedOutput, NullOutput):
    """out_null with <buffer>: events go through the buffer; written chunks are dropped."""

    async def write(self, chunk: Any) -> None:
        if self.options.never_flush:
            raise RetryableError("never_flush: chunk kept in the buffer")
        self.dropped += chunk.record_count

    def stats(self) -> dict[str, Any]:
        return {**BufferedOutput.stats(self), "dropped_records": self.dropped}
