"""Plugin base classes and the context that carries every side effect a plugin may use.

Kinds: Input (emits batches), Parser, Filter (whole batches, sync), Formatter, Output (receives
batches; buffered outputs get chunks from kawa.buffer and raise RetryableError/UnrecoverableError).
Lifecycle is `async start()` / `async stop()`, both idempotent; a plugin never sleeps to retry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, Sequence

from kawa.config.schema import Options
from kawa.event import Event, Record, now_ns
from kawa.log import Logger

if TYPE_CHECKING:
    from kawa.config.schema import PluginSpec
    from kawa.engine.system import SystemOptions


class Emitter(Protocol):
    """What an input (or relabel/copy output) emits into: the router bound to one label."""

    async def emit(self, tag: str, events: list[Event]) -> None: ...

    def emit_error_event(self, tag: str, time: int, record: Record, error: BaseException | str) -> None: ...


@dataclass
class PluginContext:
    """Everything a plugin may touch outside itself. Tests pass fakes here instead of patching."""

    plugin_id: str
    log: Logger
    system: "SystemOptions"
    clock: Callable[[], int] = now_ns                  # nanoseconds since epoch
    emitter: Emitter | None = None                     # inputs and routing outputs
    worker_id: int = 0
    dry_run: bool = False
    # Builds a child plugin from a resolved section (<parse>, <format>, <store>, <buffer>).
    build: Callable[["PluginSpec", str], "Plugin"] | None = None
    extras: dict[str, Any] = field(default_factory=dict)   # injected services (aws client factory, ...)

    def child(self, plugin_id: str) -> "PluginContext":
        return PluginContext(plugin_id, self.log, self.system, self.clock, self.emitter,
                             self.worker_id, self.dry_run, self.build, self.extras)


class Plugin:
    """Common base: holds the bound options and the context."""

    kind: ClassVar[str]
    type_name: ClassVar[str]
    Options: ClassVar[type[Options]] = Options
    # Parameters that are secret whatever plugin declares them (masked in config dumps).

    def __init__(self, options: Options, ctx: PluginContext) -> None:
        self.options = options
        self.ctx = ctx
        self.log = ctx.log
        self.plugin_id = ctx.plugin_id

    def build_child(self, spec: "PluginSpec", suffix: str) -> "Plugin":
        assert self.ctx.build is not None, "BUG: PluginContext.build not set"
        return self.ctx.build(spec, f"{self.plugin_id}.{suffix}")

    async def start(self) -> None:
        """Acquire resources (files, sockets, tasks). Must be idempotent."""

    async def stop(self) -> None:
        """Release resources; flush what can be flushed. Must be idempotent."""

    def stats(self) -> dict[str, Any]:
        """Counters for monitor_agent / Prometheus."""
        return {}


class Input(Plugin):
    """Reads from the outside world and emits batches through `self.ctx.emitter`."""

    # True when every worker may run this input at once (<system> workers N) without reading the
    # same data twice; otherwise it must sit in a <worker N> section (Fluentd's rule).
    multi_workers_ready: ClassVar[bool] = False

    @property
    def emitter(self) -> Emitter:
        assert self.ctx.emitter is not None, "BUG: input without an emitter"
        return self.ctx.emitter


@dataclass(slots=True)
class ParseFailure:
    """A line the parser could not turn into an event, and why (logged, counted, maybe emitted)."""

    text: str
    reason: str        # "pattern not matched" | "invalid time format: ..." | ...
    kind: str = "unmatched"   # "unmatched" (pattern) or "invalid" (matched, but a value was bad)


class Parser(Plugin):
    """Turns text (or bytes for binary formats) into events. Whole batches at a time.

    `parse_batch` returns (events, failures). An event time of None means "no time in the input"
    and is filled by the caller with the current time (Fluentd's estimate_current_event).
    """

    def parse_batch(self, texts: Sequence[str]) -> tuple[list[tuple[int | None, Record]], list[ParseFailure]]:
        events: list[tuple[int | None, Record]] = []
        failures: list[ParseFailure] = []
        for text in texts:
            self.parse_into(text, events, failures)
        return events, failures

    def parse_into(self, text: str, events: list[tuple[int | None, Record]], failures: list[ParseFailure]) -> None:
        raise NotImplementedError("BUG: parsers implement parse_into or parse_batch")


class Filter(Plugin):
    """Transforms whole batches; returns the events to pass on. Errors become @ERROR events."""

    # True: filter_batch never changes a record, so a kawa.event.StrValueEvents it passes on keeps
    # its promise (grep keeps the list type when it selects); after other filters the router drops it
    keeps_str_values: ClassVar[bool] = False

    def filter_batch(self, tag: str, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        append = out.append
        filt = self.filter
        for time, record in events:
            try:
                new = filt(tag, time, record)
            except Exception as exc:  # one bad record must not stop the batch
                if self.ctx.emitter is not None:
                    self.ctx.emitter.emit_error_event(tag, time, record, exc)
                continue
            if new is not None:
                append((time, new))
        return out

    def filter(self, tag: str, time: int, record: Record) -> Record | None:
        raise NotImplementedError("BUG: filters implement filter or filter_batch")


class Formatter(Plugin):
    """Turns an event into text (one output line, newline included when the format has one)."""

    def format(self, tag: str, time: int, record: Record) -> str:
        raise NotImplementedError("BUG: formatters implement format")

    def format_batch(self, tag: str, events: Sequence[Event]) -> str:
        fmt = self.format
        return "".join([fmt(tag, t, r) for t, r in events])


class Output(Plugin):
    """Receives batches from the router. Unbuffered outputs implement `process`; buffered ones
    derive from kawa.buffer.output.BufferedOutput and implement `write(chunk)`."""

    async def emit(self, tag: str, events: list[Event]) -> None:
        await self.process(tag, events)

    async def process(self, tag: str, events: list[Event]) -> None:
        raise NotImplementedError("BUG: unbuffered outputs implement process")

    async def flush(self) -> None:
        """Write everything buffered now (SIGUSR1, shutdown). No-op for unbuffered outputs."""
