"""The `ltsv` parser: label:value pairs separated by tabs (Fluentd LabeledTSVParser); fields without
the label delimiter are dropped, the last of duplicate labels wins."""

from __future__ import annotations

from typing import Any, Sequence

from kawa.config.schema import option
from kawa.engine.registry import register
from kawa.plugins.base import ParseFailure, PluginContext
from kawa.plugins.parsers._common import BaseParser, ParsedEvent, ParserOptions, ruby_split


class LtsvOptions(ParserOptions):
    delimiter = option("\t", "string", doc="Separator between fields")
    delimiter_pattern = option(None, "regexp", doc="Regexp separator between fields (wins over delimiter)")
    label_delimiter = option(":", "string", doc="Separator between label and value")
    time_key = "time"


@register("parser", "ltsv")
class LtsvParser(BaseParser):
    Options = LtsvOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        pattern = options.delimiter_pattern
        if pattern is not None:
            self._split = lambda text: _ruby_regexp_split(pattern, text)
        else:
            delim = options.delimiter
            self._split = lambda text: ruby_split(text, delim)
        self.label_delimiter: str = options.label_delimiter

    def parse_batch(self, texts: Sequence[str]) -> tuple[list[ParsedEvent], list[ParseFailure]]:
        events: list[ParsedEvent] = []
        failures: list[ParseFailure] = []
        split, label, finish = self._split, self.label_delimiter, self.finish
        for text in texts:
            record = {}
            for pair in split(text):
                if label in pair:
                    key, value = pair.split(label, 1)
                    record[key] = value
            finish(record, text, events, failures)
        return events, failures


def _ruby_regexp_split(pattern: Any, text: str) -> list[str]:
    parts = [p for p in pattern.split(text) if p is not None] if pattern.groups == 0 else pattern.split(text)
    while parts and parts[-1] == "":
        parts.pop()
    return parts
