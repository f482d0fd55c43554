"""The sample input (alias dummy): emits fixed records at a steady rate, for tests and demos."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from kawa.config.schema import Options, option
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.event import Event
from kawa.plugins.base import Input, PluginContext

NS = 1_000_000_000


class SampleOptions(Options):
    tag = option(doc="Tag of the generated events.")
    size = option(1, "integer", doc="Events in each emitted batch.")
    rate = option(1, "integer", doc="Batches per second.")
    auto_increment_key = option(None, doc="Key that gets a counter (0, 1, 2, ...) in each record.")
    suspend = option(False, "bool", deprecated="This parameters is ignored", doc="Ignored.")
    reuse_record = option(False, "bool", doc="Emit the same dict objects instead of copies.")
    sample = option('[{"message":"sample"}]', aliases=("dummy",),
                    doc="A JSON hash or an array of JSON hashes, emitted in turn.")


@register("input", "sample", "dummy")
class SampleInput(Input):

    multi_workers_ready = True
    Options = SampleOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        try:
            parsed = json.loads(options.sample)
        except ValueError as exc:
            raise ConfigError(f"JSON::ParserError: {exc}") from None
        samples = parsed if isinstance(parsed, list) else [parsed]
        for i, item in enumerate(samples):
            if not isinstance(item, dict):
                raise ConfigError(f"{i}th element of sample, {json.dumps(item)}, is not a hash")
        if not samples:
            raise ConfigError("sample must hold at least one hash")
        self.samples: list[dict[str, Any]] = samples
        self._index = 0
        self._counter = -1
        self._task: asyncio.Task[None] | None = None

    def generate(self) -> dict[str, Any]:
        record = self.samples[self._index]
        self._index = (self._index + 1) % len(self.samples)
        if not self.options.reuse_record or self.options.auto_increment_key:
            record = copy.copy(record)
        key = self.options.auto_increment_key
        if key:
            self._counter += 1
            record[key] = self._counter
        return record

    def next_batch(self) -> list[Event]:
        """One second's worth: rate x size events, stamped with the current time."""
        now = self.ctx.clock()
        return [(now, self.generate()) for _ in range(self.options.rate * self.options.size)]

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            batch = self.next_batch()
            if batch:
                try:
                    await self.emitter.emit(self.options.tag, batch)
                except Exception as exc:  # like Fluentd: an emit error must not stop the generator
                    self.log.limited("sample-emit", "warn", f"emit failed: {exc}")
            # Pace by wall-clock seconds, as Fluentd's loop does.
            now = self.ctx.clock()
            await asyncio.sleep((NS - now % NS) / NS)
