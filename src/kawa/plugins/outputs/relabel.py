"""The relabel output: re-emits events into the label named by its @label (Fluentd's out_relabel)."""

from __future__ import annotations

from kawa.engine.registry import register
from kawa.event import Event
from kawa.plugins.base import Output


@register("output", "relabel")
class RelabelOutput(Output):
    """The pipeline binds this plugin's emitter to its @label, so emitting is all there is to do."""

    async def process(self, tag: str, events: list[Event]) -> None:
        assert self.ctx.emitter is not None, "BUG: relabel output without an emitter"
        await self.ctx.emitter.emit(tag, events)
