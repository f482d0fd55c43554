"""The hash formatter: the record as Ruby's Hash#to_s prints it (Ruby 3.1: `{"a"=>1, "b"=>nil}`),
Fluentd's HashFormatter.
"""

from __future__ import annotations

from typing import Any

from kawa.config.schema import Options, option
from kawa.engine.registry import register
from kawa.event import Record
from kawa.ruby_values import ruby_inspect_value
from kawa.plugins.base import Formatter
from kawa.plugins.formatters.ltsv import NEWLINES


class HashFormatterOptions(Options):
    add_newline = option(True, "bool", doc="End each record with a newline.")
    newline = option("lf", "enum", choices=("lf", "crlf"), doc="Line ending.")


@register("formatter", "hash")
class HashFormatter(Formatter):
    Options = HashFormatterOptions

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.end = NEWLINES[options.newline] if options.add_newline else ""

    def format(self, tag: str, time: int, record: Record) -> str:
        return ruby_inspect_value(record) + self.end
