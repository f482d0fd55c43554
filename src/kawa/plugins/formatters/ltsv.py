"""The ltsv formatter: `label:value` pairs joined by tabs (Fluentd LabeledTSVFormatter); delimiters inside
values become the replacement, everything else is written as Ruby's to_s writes it.
"""

from __future__ import annotations

from typing import Any

from kawa.config.schema import Options, option
from kawa.engine.registry import register
from kawa.event import Record
from kawa.ruby_values import ruby_to_s
from kawa.plugins.base import Formatter

# formatter.rb Newline::Mixin
NEWLINES = {"lf": "\n", "crlf": "\r\n"}


class LtsvFormatterOptions(Options):
    delimiter = option("\t", doc="Between label:value pairs.")
    label_delimiter = option(":", doc="Between a label and its value.")
    replacement = option(" ", doc="Replaces the delimiter where it occurs inside a value.")
    add_newline = option(True, "bool", doc="End each record with a newline.")
    newline = option("lf", "enum", choices=("lf", "crlf"), doc="Line ending.")


@register("formatter", "ltsv")
class LtsvFormatter(Formatter):
    Options = LtsvFormatterOptions

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.delimiter: str = options.delimiter
        self.label_delimiter: str = options.label_delimiter
        self.replacement: str = options.replacement
        self.end = NEWLINES[options.newline] if options.add_newline else ""

    def format(self, tag: str, time: int, record: Record) -> str:
        delim, label_delim, repl = self.delimiter, self.label_delimiter, self.replacement
        to_s = ruby_to_s
        # An empty delimiter would make gsub insert the replacement between every character.
        if delim:
            pairs = [f"{to_s(k)}{label_delim}{(v if type(v) is str else to_s(v)).replace(delim, repl)}"
                     for k, v in record.items()]
        else:
            pairs = [f"{to_s(k)}{label_delim}{_gsub_empty(to_s(v), repl)}" for k, v in record.items()]
        return delim.join(pairs) + self.end


def _gsub_empty(text: str, replacement: str) -> str:
    """Ruby `s.gsub("", r)`: r before every character and at the end."""
    return replacement + replacement.join(text) + replacement if text else replacement
