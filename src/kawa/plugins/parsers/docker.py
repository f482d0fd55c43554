"""The `docker` parser: Docker json-file lines {"log","stream","time"}; a log without a trailing newline
is a partial (16 KiB split) and is joined with the following ones of the same stream."""

from __future__ import annotations

from typing import Any

from kawa.engine.registry import register
from kawa.plugins.base import ParseFailure, PluginContext
from kawa.plugins.parsers._common import NOT_MATCHED, ParsedEvent, ParserOptions, create_time_parser
from kawa.plugins.parsers._stateful import StatefulLineParser
from kawa.plugins.parsers.json import load_json

DOCKER_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%N%z"   # 2019-07-10T08:20:09.123456789Z


class DockerOptions(ParserOptions):
    time_key = "time"
    time_format = DOCKER_TIME_FORMAT


@register("parser", "docker")
class DockerParser(StatefulLineParser):
    Options = DockerOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)

    def make_time_parser(self) -> Any:
        return create_time_parser(self.options)

    def _feed(self, state: Any, text: str, events: list[ParsedEvent], failures: list[ParseFailure]) -> Any:
        try:
            obj = load_json(text)
        except ValueError:
            obj = None
        if type(obj) is not dict or not isinstance(obj.get("log"), str):
            failures.append(ParseFailure(text, NOT_MATCHED, "unmatched"))
            return state
        # stream -> (first record, partial logs, its line, number of its line)
        pending: dict[Any, tuple[dict[str, Any], list[str], str, int]] = state or {}
        stream = obj.get("stream")
        log = obj["log"]
        if stream in pending:
            first, chunks, first_text, start = pending.pop(stream)
            chunks.append(log)
        else:
            first, chunks, first_text, start = obj, [log], text, self.line_no
        if not log.endswith("\n"):
            pending[stream] = (first, chunks, first_text, start)
            return pending
        first["log"] = "".join(chunks)
        self.finish(first, first_text, events, failures)
        return pending or None

    def _flush(self, state: Any, events: list[ParsedEvent], failures: list[ParseFailure]) -> None:
        for first, chunks, first_text, _start in state.values():
            first["log"] = "".join(chunks)
            self.finish(first, first_text, events, failures)

    def _held_starts(self, state: Any) -> list[int]:
        return [start for _first, _chunks, _text, start in state.values()]
