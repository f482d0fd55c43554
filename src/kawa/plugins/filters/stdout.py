"""Fluentd's stdout filter: prints each event (stdout format by default, <inject> keys added) to kawa's
log stream and passes the events on unchanged.
"""

from __future__ import annotations

from typing import Any

from kawa.config.element import Element
from kawa.config.schema import Options, PluginSpec, section
from kawa.engine import registry
from kawa.event import Event, Record
from kawa.plugins.base import Filter, PluginContext
from kawa.plugins.inject import InjectOptions, Injector

# filter_stdout.rb DEFAULT_FORMAT_TYPE
DEFAULT_FORMAT_TYPE = "stdout"


class StdoutFilterOptions(Options):
    format = section(plugin_kind="formatter", default_type=DEFAULT_FORMAT_TYPE,
                     doc="Line format (default: stdout, '<time> <tag>: <json>').")
    inject = section(InjectOptions, doc="Keys added to the printed copy of each record.")


@registry.register("filter", "stdout")
class StdoutFilter(Filter):
    Options = StdoutFilterOptions
    compat_sections = ("inject", "format")

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        spec = options.format
        if spec is None:
            cls = registry.lookup("formatter", DEFAULT_FORMAT_TYPE)
            assert cls is not None
            spec = PluginSpec(cls, cls.Options.defaults(), Element("format", ""))
        self.formatter = self.build_child(spec, "format")
        self.injector = Injector(options.inject, self.log, ctx.worker_id)

    def filter_batch(self, tag: str, events: list[Event]) -> list[Event]:
        fmt = self.formatter.format
        # Injected keys go into printed copies only (inject copies); the events pass on as they came.
        printed = self.injector.inject_batch(tag, events)
        parts: list[str] = []
        for (time, record), (_, shown) in zip(events, printed):
            try:
                parts.append(fmt(tag, time, shown))
            except Exception as exc:  # Fluentd: emit_error_event, the event still passes
                if self.ctx.emitter is not None:
                    self.ctx.emitter.emit_error_event(tag, time, record, exc)
        if parts:
            stream = self.log.sink.stream
            stream.write("".join(parts))
            stream.flush()
        return events

    def filter(self, tag: str, time: int, record: Record) -> Record | None:
        self.filter_batch(tag, [(time, record)])
        return record
