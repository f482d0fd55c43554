"""Drivers that build one plugin from a config string and feed it, like Fluentd's test drivers.

    d = FilterDriver("grep", "<regexp>\\n key message\\n pattern /WARN/\\n</regexp>")
    d.feed("app", {"message": "WARN disk"})
    assert d.filtered_records == [{"message": "WARN disk"}]

Side effects come in through the PluginContext (clock, emitter, log sink): nothing is patched.
"""

from __future__ import annotations

import asyncio
import io
import time as _time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

from kawa import delivery
from kawa.config import compat
from kawa.config.element import Element
from kawa.config.schema import BindContext, PluginSpec
from kawa.engine import registry
from kawa.engine.system import SystemOptions
from kawa.errors import ConfigError, Location, Problem
from kawa.event import Event, Record, now_ns
from kawa.log import LogSink, Logger
from kawa.plugins.base import Plugin, PluginContext


class RecordingEmitter:
    """An Emitter that keeps what it is given: `events` as (tag, time, record), `error_events` too."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, Record]] = []
        self.error_events: list[tuple[str, int, Record, str]] = []
        self.sizes: list[int] = []                  # events of each emit
        self.refuse: BaseException | None = None    # set to raise from emit (back-pressure tests)
        # Seconds after which an emit counts as stored (kawa.delivery), as a memory buffer's chunk
        # is once delivered; None: stored when emit returns, as a file buffer's chunk once fsync'd.
        self.store_after: float | None = None

    async def emit(self, tag: str, events: list[Event]) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.sizes.append(len(events))
        self.events.extend((tag, t, r) for t, r in events)
        ticket = delivery.current()
        if self.store_after is not None and ticket is not None:
            share = ticket.join()
            asyncio.get_running_loop().call_later(self.store_after, share.mark_delivered)

    @property
    def batches(self) -> int:
        return len(self.sizes)

    def emit_error_event(self, tag: str, time: int, record: Record, error: BaseException | str) -> None:
        self.error_events.append((tag, time, record, str(error)))

    @property
    def records(self) -> list[Record]:
        return [r for _, _, r in self.events]


class FakeClock:
    """A clock the test moves by hand (nanoseconds)."""

    def __init__(self, start_ns: int = 1_700_000_000 * 1_000_000_000) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000_000)


def _parse_body(kind: str, conf: str, type_name: str) -> Element:
    from kawa.config.parser import parse_config_string

    tag = {"input": "source", "output": "match", "filter": "filter"}.get(kind, kind)
    text = f"<{tag} test>\n@type {type_name}\n{conf}\n</{tag}>\n" if kind in ("output", "filter") else \
        f"<{tag}>\n@type {type_name}\n{conf}\n</{tag}>\n"
    root = parse_config_string(text, name="<test config>")
    return root.elements[0]


class PluginDriver:
    """Builds `type_name` of `kind` from `conf` (the section body) exactly as the engine does."""

    kind = ""

    def __init__(self, type_name: str, conf: str = "", *, clock: Callable[[], int] | None = None,
                 extras: dict[str, Any] | None = None, system: SystemOptions | None = None,
                 log_level: str = "trace") -> None:
        self.log_stream = io.StringIO()
        self.logger = Logger(LogSink(self.log_stream, level=log_level), prefix="#0 ")
        self.emitter = RecordingEmitter()
        self.clock = clock or now_ns
        self.system = system or SystemOptions.defaults()  # type: ignore[assignment]
        self.extras = extras or {}
        element = _parse_body(self.kind, conf, type_name)
        bind = BindContext(lookup=self._lookup)
        self._bind = bind
        cls = self._lookup(self.kind, type_name, element.location, (element.title(),))
        if cls is None:
            raise ConfigError(bind.problems)
        compat.apply(cls, element, bind.warnings)
        options = cls.Options.bind(element, bind, (element.title(),))
        if bind.problems:
            raise ConfigError(bind.problems)
        self.warnings = bind.warnings
        self.instance: Any = self._instantiate(PluginSpec(cls, options, element), "test")
        if bind.problems:
            raise ConfigError(bind.problems)

    def _lookup(self, kind: str, type_name: str, location: Location, path: tuple[str, ...]) -> type | None:
        cls = registry.lookup(kind, type_name)
        if cls is None:
            self._bind.problems.append(Problem(f"Unknown {kind} plugin '{type_name}'", location, path))
        return cls

    def _instantiate(self, spec: PluginSpec, plugin_id: str) -> Plugin:
        ctx = PluginContext(plugin_id=plugin_id, log=self.logger, system=self.system, clock=self.clock,
                            emitter=self.emitter, build=self._instantiate, extras=self.extras)
        return spec.cls(spec.options, ctx)  # type: ignore[no-any-return]

    @property
    def logs(self) -> list[str]:
        """Log lines without their timestamps, e.g. "[warn]: #0 pattern not matched: ..."."""
        return [line.split(" ", 3)[3] for line in self.log_stream.getvalue().splitlines() if line.count(" ") >= 3]

    @property
    def error_events(self) -> list[tuple[str, int, Record, str]]:
        return self.emitter.error_events


class FilterDriver(PluginDriver):
    kind = "filter"

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.filtered: list[tuple[str, int, Record]] = []

    def feed(self, tag: str, time_or_record: int | Record, record: Record | None = None) -> None:
        if record is None:
            time, record = self.clock(), time_or_record  # type: ignore[assignment]
        else:
            time = time_or_record  # type: ignore[assignment]
        self.feed_batch(tag, [(time, record)])  # type: ignore[list-item]

    def feed_batch(self, tag: str, events: list[Event]) -> None:
        self.filtered.extend((tag, t, r) for t, r in self.instance.filter_batch(tag, events))

    @property
    def filtered_records(self) -> list[Record]:
        return [r for _, _, r in self.filtered]

    @property
    def filtered_events(self) -> list[tuple[str, int, Record]]:
        return self.filtered


class ParserDriver(PluginDriver):
    kind = "parser"

    def parse(self, *texts: str) -> list[tuple[int | None, Record]]:
        events, self.failures = self.instance.parse_batch(list(texts))
        return events  # type: ignore[no-any-return]


class FormatterDriver(PluginDriver):
    kind = "formatter"

    def format(self, tag: str, time: int, record: Record) -> str:
        return self.instance.format(tag, time, record)  # type: ignore[no-any-return]


class InputDriver(PluginDriver):
    kind = "input"

    @asynccontextmanager
    async def run(self, expect_records: int | None = None, timeout: float = 10.0) -> AsyncIterator["InputDriver"]:
        """Start the input, yield, then wait until `expect_records` arrived (or timeout), then stop."""
        await self.instance.start()
        try:
            yield self
            if expect_records is not None:
                await self.wait_for(lambda: len(self.emitter.events) >= expect_records, timeout)
        finally:
            await self.instance.stop()

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = _time.monotonic() + timeout
        while not condition():
            if _time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s; got {len(self.emitter.events)} events")
            await asyncio.sleep(0.01)

    @property
    def events(self) -> list[tuple[str, int, Record]]:
        return self.emitter.events

    @property
    def records(self) -> list[Record]:
        return self.emitter.records


class OutputDriver(PluginDriver):
    kind = "output"

    @asynccontextmanager
    async def run(self) -> AsyncIterator["OutputDriver"]:
        await self.instance.start()
        try:
            yield self
        finally:
            await self.instance.stop()

    async def feed(self, tag: str, time_or_record: int | Record, record: Record | None = None) -> None:
        if record is None:
            time, record = self.clock(), time_or_record  # type: ignore[assignment]
        else:
            time = time_or_record  # type: ignore[assignment]
        await self.instance.emit(tag, [(time, record)])

    async def feed_batch(self, tag: str, events: list[Event]) -> None:
        await self.instance.emit(tag, events)

    async def flush(self) -> None:
        await self.instance.flush()
