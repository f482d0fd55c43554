"""The tsv formatter: the values of `keys` (Ruby to_s, nil as empty) joined by the delimiter, no quoting
(Fluentd TSVFormatter).
"""

from __future__ import annotations

from typing import Any

from kawa.config.schema import Options, option
from kawa.engine.registry import register
from kawa.event import Record
from kawa.ruby_values import ruby_to_s
from kawa.plugins.base import Formatter
from kawa.plugins.formatters.ltsv import NEWLINES


class TsvFormatterOptions(Options):
    keys = option(type="array", value_type="string", doc="Fields to write, in order.")
    delimiter = option("\t", doc="Between values.")
    add_newline = option(True, "bool", doc="End each record with a newline.")
    newline = option("lf", "enum", choices=("lf", "crlf"), doc="Line ending.")


@register("formatter", "tsv")
class TsvFormatter(Formatter):
    Options = TsvFormatterOptions

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.keys: list[str] = list(options.keys)
        self.delimiter: str = options.delimiter
        self.end = NEWLINES[options.newline] if options.add_newline else ""

    def format(self, tag: str, time: int, record: Record) -> str:
        get = record.get
        to_s = ruby_to_s
        return self.delimiter.join([to_s(get(k)) for k in self.keys]) + self.end
