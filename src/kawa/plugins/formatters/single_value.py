"""The single_value formatter: one field's value (Ruby to_s) per line."""

from __future__ import annotations

from kawa.config.schema import Options, option
from kawa.engine.registry import register
from kawa.event import Record
from kawa.ruby_values import ruby_to_s
from kawa.plugins.base import Formatter

NEWLINES = {"lf": "\n", "crlf": "\r\n"}


class SingleValueOptions(Options):
    message_key = option("message", doc="The field to write.")
    add_newline = option(True, "bool", doc="End each value with a newline.")
    newline = option("lf", "enum", choices=("lf", "crlf"), doc="Line ending.")


@register("formatter", "single_value")
class SingleValueFormatter(Formatter):
    Options = SingleValueOptions

    def format(self, tag: str, time: int, record: Record) -> str:
        text = ruby_to_s(record.get(self.options.message_key))
        return text + NEWLINES[self.options.newline] if self.options.add_newline else text
