"""The csv formatter: the values of `fields` (record_accessor paths allowed) as one CSV row, written by
Ruby CSV's rules (Fluentd CsvFormatter): force_quotes by default, `""` for nil, quotes doubled.
"""

from __future__ import annotations

from typing import Any, Callable

from kawa.config.schema import Options, option
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.event import Record
from kawa.ruby_values import ruby_to_s
from kawa.plugins.base import Formatter
from kawa.record_accessor import RecordAccessor, is_nested

# formatter_csv.rb: these spellings of the delimiter mean a tab
TAB_SPELLINGS = ("\\t", "TAB")


class CsvFormatterOptions(Options):
    fields = option(type="array", value_type="string", doc="Fields to write, in order ($.a.b allowed).")
    delimiter = option(",", doc="Column separator; \\t or TAB mean a tab.")
    force_quotes = option(True, "bool", doc="Quote every value (else only empty ones and those that need it).")
    add_newline = option(True, "bool", doc="End each row with a newline.")


def _ruby_valid_encoding(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def csv_quoter(delimiter: str, force_quotes: bool) -> Callable[[Any], str]:
    """Ruby CSV::Writer#quote for one value."""
    specials = ("\r", "\n", '"', delimiter)

    def quote_field(value: Any) -> str:
        text = "" if value is None else (value if type(value) is str else ruby_to_s(value))
        return '"' + text.replace('"', '""') + '"'

    if force_quotes:
        return quote_field

    def quote(value: Any) -> str:
        if value is None:
            return ""
        text = value if type(value) is str else ruby_to_s(value)
        if not text or (any(s in text for s in specials if s) and _ruby_valid_encoding(text)):
            return '"' + text.replace('"', '""') + '"'
        return text

    return quote


@register("formatter", "csv")
class CsvFormatter(Formatter):
    Options = CsvFormatterOptions

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.fields: list[str] = [f for f in options.fields if f]
        if not self.fields:
            raise ConfigError("empty value is specified in fields parameter")
        self.delimiter = "\t" if options.delimiter in TAB_SPELLINGS else options.delimiter
        self.quote = csv_quoter(self.delimiter, options.force_quotes)
        self.end = "\n" if options.add_newline else ""
        self.getters: list[Callable[[Record], Any]] | None = None
        if any(is_nested(f) for f in self.fields):
            self.getters = [RecordAccessor(f).get for f in self.fields]

    def format(self, tag: str, time: int, record: Record) -> str:
        quote = self.quote
        if self.getters is None:
            get = record.get
            values = [quote(get(f)) for f in self.fields]
        else:
            values = [quote(g(record)) for g in self.getters]
        return self.delimiter.join(values) + self.end
