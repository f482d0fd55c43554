"""The `json` parser: one JSON object per text (or an array of objects), time from `time` as a float
epoch by default (Fluentd JSONParser with Oj: NaN/Infinity and trailing garbage are rejected).
"""

from __future__ import annotations

import json as _stdjson
import re
from typing import Any, Sequence

import orjson

from kawa.config.schema import option
from kawa.engine.registry import register
from kawa.plugins.base import ParseFailure, PluginContext
from kawa.plugins.parsers._common import NOT_MATCHED, BaseParser, ParsedEvent, ParserOptions, create_time_parser


def _reject_constant(name: str) -> Any:
    raise ValueError(f"unexpected {name}")


_std_decoder = _stdjson.JSONDecoder(parse_constant=_reject_constant)


# orjson turns integers beyond 64 bits into floats; Oj keeps them exact (Bignum), so such texts
# go to the stdlib decoder.
_LONG_DIGITS = re.compile(r"[0-9]{20}")
_LONG_DIGITS_B = re.compile(rb"[0-9]{20}")


def load_json(text: str | bytes) -> Any:
    """orjson first; the stdlib for what orjson gets wrong or refuses but Oj accepts."""
    if (_LONG_DIGITS_B if isinstance(text, bytes) else _LONG_DIGITS).search(text) is None:  # type: ignore[arg-type]
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    return _std_decoder.decode(text)


class JsonOptions(ParserOptions):
    json_parser = option("oj", "enum", choices=("oj", "yajl", "json"),
                         doc="Fluentd's JSON library choice; kawa always uses orjson with the same results")
    stream_buffer_size = option(8192, "integer", no_effect="kawa reads whole lines, there is no streaming buffer")
    time_key = "time"
    time_type = "float"


@register("parser", "json")
class JsonParser(BaseParser):
    Options = JsonOptions

    def make_time_parser(self) -> Any:
        given = self.options._element.attrs if self.options._element is not None else {}
        # Fluentd: a time_format without time_type means time_type string.
        if "time_format" in given and "time_type" not in given:
            return create_time_parser(self.options, time_type="string")
        return create_time_parser(self.options)

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)

    def parse_batch(self, texts: Sequence[Any]) -> tuple[list[ParsedEvent], list[ParseFailure]]:
        events: list[ParsedEvent] = []
        failures: list[ParseFailure] = []
        finish = self.finish
        for text in texts:
            try:
                obj = load_json(text)
            except (ValueError, TypeError, RecursionError):
                failures.append(ParseFailure(text, NOT_MATCHED, "unmatched"))
                continue
            if type(obj) is dict:
                finish(obj, text, events, failures)
            elif type(obj) is list:
                for item in obj:
                    if type(item) is dict:
                        finish(item, text, events, failures)
                    else:
                        failures.append(ParseFailure(text, NOT_MATCHED, "unmatched"))
            else:
                failures.append(ParseFailure(text, NOT_MATCHED, "unmatched"))
        return events, failures
