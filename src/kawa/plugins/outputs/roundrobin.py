"""Fluentd's out_roundrobin: each batch goes to the next <store>, in proportion to their `weight`
(Fluentd shuffles the weighted rotation once at start; so does kawa)."""

from __future__ import annotations

from typing import Any

from kawa.config.element import Element
from kawa.config.schema import BindContext, Options, section
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.event import Event
from kawa.plugins.base import Output, PluginContext
from kawa.plugins.outputs._multi import MultiOutput, weighted_rotation


class RoundRobinOptions(Options):
    store = section(plugin_kind="output", multi=True, required=True,
                    doc="The outputs taking turns; `weight N` (default 1) in a <store> gives it N turns.")

    @classmethod
    def bind(cls, element: Element, ctx: BindContext, path: tuple[str, ...] = ()) -> Any:
        # `weight` belongs to roundrobin, not to the store's own plugin
        for child in element.elements:
            if child.name == "store" and "weight" in child.attrs:
                child.attrs["weight"].used = True
        return super().bind(element, ctx, path)


@register("output", "roundrobin")
class RoundRobinOutput(MultiOutput):
    Options = RoundRobinOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        specs = [s for s in options.store if s is not None]
        weights = []
        for spec in specs:
            attr = spec.element.attrs.get("weight")
            try:
                weight = int(attr.value) if attr is not None else 1
            except ValueError:
                raise ConfigError(f"weight: expected an integer, like 10; got '{attr.value}'") from None
            if weight < 1:
                raise ConfigError(f"weight: must be 1 or more; got {weight}")
            weights.append(weight)
        self.outputs: list[Output] = [self.build_child(spec, f"store{i}")  # type: ignore[misc]
                                      for i, spec in enumerate(specs)]
        self.rotation = weighted_rotation(self.outputs, weights, interleave=False)
        self._next = -1

    async def process(self, tag: str, events: list[Event]) -> None:
        self._next = (self._next + 1) % len(self.rotation)
        await self.rotation[self._next].emit(tag, events)
