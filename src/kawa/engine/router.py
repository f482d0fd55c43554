"""Routes batches by tag: the filters that match, in order of appearance, then the first <match>.

Fluentd's rule: for a tag, walk the label's <filter>/<match> directives in config order; every
matching filter before the first matching <match> applies; directives after it do not. Routes are
computed once per tag and cached. A tag nothing matches is warned about once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kawa.engine.match import TagPattern
from kawa.event import Event, Record, StrValueEvents
from kawa.log import Logger

if TYPE_CHECKING:
    from kawa.plugins.base import Filter, Output

ERROR_LABEL = "@ERROR"
FLUENT_LOG_LABEL = "@FLUENT_LOG"
ROOT_LABEL = ""


@dataclass(slots=True)
class Route:
    filters: list["Filter"]
    output: "Output | None"


@dataclass
class Label:
    """The root pipeline or one `<label @NAME>`: directives in config order."""

    name: str
    directives: list[tuple[TagPattern, "Filter | Output", bool]] = field(default_factory=list)  # (pattern, plugin, is_filter)
    _routes: dict[str, Route] = field(default_factory=dict)

    def route(self, tag: str) -> Route:
        found = self._routes.get(tag)
        if found is None:
            filters: list[Filter] = []
            output = None
            for pattern, plugin, is_filter in self.directives:
                if pattern.match(tag):
                    if is_filter:
                        filters.append(plugin)  # type: ignore[arg-type]
                    else:
                        output = plugin  # type: ignore[assignment]
                        break
            found = self._routes[tag] = Route(filters, output)
        return found


class Router:
    """All labels of one worker. `bind(label)` gives the Emitter an input or relabel output uses."""

    def __init__(self, log: Logger) -> None:
        self.log = log
        self.labels: dict[str, Label] = {ROOT_LABEL: Label(ROOT_LABEL)}
        self._warned_tags: set[tuple[str, str]] = set()
        self.counters: dict[str, int] = {"emitted_records": 0, "unmatched_records": 0, "error_events": 0}

    def label(self, name: str) -> Label:
        if name not in self.labels:
            self.labels[name] = Label(name)
        return self.labels[name]

    def bind(self, label: str = ROOT_LABEL) -> "BoundEmitter":
        return BoundEmitter(self, label)

    async def emit(self, label: str, tag: str, events: list[Event]) -> None:
        if not events:
            return
        route = self.labels[label].route(tag)
        for filt in route.filters:
            events = filt.filter_batch(tag, events)
            if not events:
                return
            if type(events) is StrValueEvents and not getattr(filt, "keeps_str_values", False):
                events = list(events)       # the filter may have changed a record in place
        self.counters["emitted_records"] += len(events)
        if route.output is None:
            self.counters["unmatched_records"] += len(events)
            if (label, tag) not in self._warned_tags:
                self._warned_tags.add((label, tag))
                self.log.warn(f"no patterns matched tag=\"{tag}\"")
            return
        await route.output.emit(tag, events)

    def emit_error_event(self, tag: str, time: int, record: Record, error: BaseException | str) -> None:
        """Fluentd's emit_error_event: to <label @ERROR> when present, else a warning with the record."""
        self.counters["error_events"] += 1
        error_class, message = describe_error(error)
        if ERROR_LABEL in self.labels:
            # Fluentd still notes each one (without the record, which @ERROR handles).
            self.log.warn("send an error event to @ERROR:", error_class=_Raw(error_class), error=message,
                          location=None, tag=tag, time=_Raw(_event_time_text(time)))
            # Error events are rare: route them on the loop instead of re-entering the current emit.
            asyncio.get_running_loop().create_task(self.emit(ERROR_LABEL, tag, [(time, record)]))
            return
        self.log.warn("dump an error event:", error_class=_Raw(error_class), error=message, location=None,
                      tag=tag, time=_Raw(_event_time_text(time)), record=_ruby_hash(record))


class BoundEmitter:
    """An Emitter fixed to one label (what `@label` on a <source> or relabel <match> selects)."""

    __slots__ = ("router", "label")

    def __init__(self, router: Router, label: str) -> None:
        self.router = router
        self.label = label

    async def emit(self, tag: str, events: list[Event]) -> None:
        await self.router.emit(self.label, tag, events)

    def emit_error_event(self, tag: str, time: int, record: Record, error: BaseException | str) -> None:
        self.router.emit_error_event(tag, time, record, error)


def describe_error(error: BaseException | str) -> tuple[str, str]:
    """(class name, message). An exception may carry `error_class`, the name Fluentd would print
    (e.g. "Fluent::Plugin::Parser::ParserError"), so operators' log searches keep working."""
    if isinstance(error, BaseException):
        return getattr(error, "error_class", type(error).__name__), str(error)
    return "RuntimeError", error


def _event_time_text(time_ns: int) -> str:
    """Fluentd prints an EventTime in logs as `2019-07-10 08:20:14.785411989 +0000`, local time."""
    import time as _t

    seconds, nanos = divmod(time_ns, 1_000_000_000)
    local = _t.localtime(seconds)
    return _t.strftime("%Y-%m-%d %H:%M:%S", local) + f".{nanos:09d} " + _t.strftime("%z", local)


def _ruby_hash(record: Any) -> "_Raw":
    """A record as Fluentd's log prints a Ruby Hash (`{"k"=>"v"}`), unquoted."""
    from kawa.ruby_values import ruby_inspect_value

    return _Raw(ruby_inspect_value(record))


class _Raw:
    """A log field value printed as is (not quoted)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text
