"""The `msgpack` parser: a byte stream of MessagePack maps (or arrays of maps), fed in any pieces;
an object split across two feeds is kept until complete (Fluentd's streaming unpacker)."""

from __future__ import annotations

from typing import Any, Sequence

import msgpack as _msgpack

from kawa.engine.registry import register
from kawa.plugins.base import ParseFailure, PluginContext
from kawa.plugins.parsers._common import NOT_MATCHED, BaseParser, ParsedEvent, ParserOptions


@register("parser", "msgpack")
class MsgpackParser(BaseParser):
    Options = ParserOptions
    binary = True

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        self._unpacker = self._new_unpacker()

    @staticmethod
    def _new_unpacker() -> Any:
        # raw=False: str types decode as UTF-8 (Ruby strings); bin stays bytes like ASCII-8BIT strings.
        return _msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="surrogateescape")

    def parse_bytes(self, data: bytes) -> tuple[list[ParsedEvent], list[ParseFailure]]:
        events: list[ParsedEvent] = []
        failures: list[ParseFailure] = []
        self._unpacker.feed(data)
        try:
            for obj in self._unpacker:
                self._unpacked(obj, events, failures)
        except (ValueError, _msgpack.UnpackException) as exc:
            failures.append(ParseFailure(repr(data[:64]), f"{type(exc).__name__}: {exc}", "invalid"))
            self._unpacker = self._new_unpacker()   # corrupt stream: start clean with the next feed
        return events, failures

    def parse_batch(self, texts: Sequence[Any]) -> tuple[list[ParsedEvent], list[ParseFailure]]:
        events: list[ParsedEvent] = []
        failures: list[ParseFailure] = []
        for data in texts:
            got, bad = self.parse_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape"))
            events.extend(got)
            failures.extend(bad)
        return events, failures

    def _unpacked(self, obj: Any, events: list[ParsedEvent], failures: list[ParseFailure]) -> None:
        if type(obj) is dict:
            self.finish(obj, repr(obj)[:200], events, failures)
        elif type(obj) is list:
            for item in obj:
                if type(item) is dict:
                    self.finish(item, repr(item)[:200], events, failures)
                else:
                    failures.append(ParseFailure(repr(item)[:200], NOT_MATCHED, "unmatched"))
        else:
            failures.append(ParseFailure(repr(obj)[:200], NOT_MATCHED, "unmatched"))
