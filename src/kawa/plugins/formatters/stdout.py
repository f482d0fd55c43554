"""The stdout formatter: "<local time %Y-%m-%d %H:%M:%S.%N %z> <tag>: <record in output_type>" per line,
as Fluentd's out_stdout prints events.
"""

from __future__ import annotations

from typing import Any, Sequence

from kawa.config.schema import Options, option
from kawa.engine import registry
from kawa.errors import ConfigError
from kawa.event import Event, Record
from kawa.plugins.base import Formatter
from kawa.timeformat import TimeFormatter

# formatter_stdout.rb TIME_FORMAT
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%N %z"


class StdoutFormatterOptions(Options):
    output_type = option("json", doc="Formatter for the record part (json, ltsv, single_value, hash, ...).")
    time_format = option(None, doc="strftime format of the leading time (local time).")
    # Passed on to the record formatter when it has them.
    json_parser = option("oj", doc="For output_type json: oj, yajl or json.")
    delimiter = option(None, doc="For output_type ltsv/csv/tsv: field delimiter.")
    label_delimiter = option(None, doc="For output_type ltsv: label delimiter.")
    message_key = option(None, doc="For output_type single_value: the key to print.")
    fields = option(None, "array", value_type="string", doc="For output_type csv/tsv: fields to print.")
    keys = option(None, "array", value_type="string", doc="For output_type tsv: keys to print.")


@registry.register("formatter", "stdout")
class StdoutFormatter(Formatter):
    Options = StdoutFormatterOptions

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        self._time = TimeFormatter(options.time_format or TIME_FORMAT, localtime=True).format
        cls = registry.lookup("formatter", options.output_type)
        if cls is None or cls is StdoutFormatter:
            raise ConfigError(f"Unknown formatter plugin '{options.output_type}'")
        sub_options = cls.Options.defaults()
        for name in ("json_parser", "delimiter", "label_delimiter", "message_key", "fields", "keys"):
            value = getattr(options, name)
            if value is not None and name in cls.Options._options:
                setattr(sub_options, name, value)
        self.sub = cls(sub_options, ctx.child(f"{ctx.plugin_id}.output_type"))

    def format(self, tag: str, time: int, record: Record) -> str:
        return f"{self._time(time)} {tag}: {self.sub.format(tag, time, record).rstrip(chr(10))}\n"

    def format_batch(self, tag: str, events: Sequence[Event]) -> str:
        fmt_time = self._time
        sub = self.sub.format
        return "".join([f"{fmt_time(t)} {tag}: {sub(tag, t, r).rstrip(chr(10))}\n" for t, r in events])
