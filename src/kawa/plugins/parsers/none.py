"""The `none` parser: the whole line goes into one field (message_key) untouched.
Time is always None: the caller stamps the current time (Fluentd's estimate_current_event)."""

from __future__ import annotations

from typing import Sequence

from kawa.config.schema import option
from kawa.engine.registry import register
from kawa.plugins.base import ParseFailure
from kawa.plugins.parsers._common import BaseParser, ParsedEvent, ParserOptions


class NoneOptions(ParserOptions):
    message_key = option("message", "string", doc="Field that receives the line")


@register("parser", "none")
class NoneParser(BaseParser):
    Options = NoneOptions

    def parse_batch(self, texts: Sequence[str]) -> tuple[list[ParsedEvent], list[ParseFailure]]:
        key = self.options.message_key
        # Fluentd's none parser never runs convert_values, so types/null options have no effect here.
        return [(None, {key: text}) for text in texts], []
