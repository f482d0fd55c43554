"""Fluentd's out_roundrobin: each batch goes to the next <store>, in proportion to their `weight`
(Fluentd spreads a weighted rotation at random once at start; so does kawa)."""

from __future__ import annotations

import random
from math import gcd
from typing import Any

from kawa.config.element import Element
from kawa.config.schema import BindContext, Options, section
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.event import Event
from kawa.plugins.base import Output, PluginContext
from kawa.plugins.outputs._multi import MultiOutput


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
        divisor = 0
        for w in weights:
            divisor = gcd(divisor, w)
        self.rotation = [out for out, w in zip(self.outputs, weights) for _ in range(w // divisor)]
        if any(w > 1 for w in weights):
            random.shuffle(self.rotation)
        self._next = -1

    async def process(self, tag: str, events: list[Event]) -> None:
        self._next = (self._next + 1) % len(self.rotation)
        await self.rotation[self._next].emit(tag, events)
