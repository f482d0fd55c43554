"""The `tsv` parser: values split on a delimiter and named by `keys` (Fluentd TSVParser); the last key
takes the rest of the line, missing values are null."""

from __future__ import annotations

from typing import Sequence

from kawa.config.schema import option
from kawa.engine.registry import register
from kawa.plugins.base import ParseFailure
from kawa.plugins.parsers._common import BaseParser, ParsedEvent, ParserOptions


class TsvOptions(ParserOptions):
    keys = option(type="array", value_type="string", doc="Names of the fields, in order")
    delimiter = option("\t", "string", doc="Separator between values")


def ruby_split_limit(text: str, delimiter: str, limit: int) -> list[str]:
    """Ruby String#split(delim, limit>0): at most `limit` fields, trailing empty fields kept."""
    if text == "":
        return []
    if delimiter == " ":
        return text.lstrip(" \t\n\v\f\r").split(None, limit - 1) if limit > 0 else text.split()
    return text.split(delimiter, limit - 1)


@register("parser", "tsv")
class TsvParser(BaseParser):
    Options = TsvOptions

    def parse_batch(self, texts: Sequence[str]) -> tuple[list[ParsedEvent], list[ParseFailure]]:
        events: list[ParsedEvent] = []
        failures: list[ParseFailure] = []
        keys: list[str] = self.options.keys
        n, delim, finish = len(keys), self.options.delimiter, self.finish
        for text in texts:
            values = ruby_split_limit(text, delim, n)
            record = dict(zip(keys, values + [None] * (n - len(values))))  # type: ignore[operator]
            finish(record, text, events, failures)
        return events, failures
