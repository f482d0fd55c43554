"""The `cri` parser: containerd / CRI-O log lines `<time> <stream> <P|F> <log>` (fluent-plugin-parser-cri
record: stream, logtag, message); partial (P) lines are joined per stream until the final (F) line."""

from __future__ import annotations

from typing import Any

from kawa.engine.registry import register
from kawa.plugins.base import ParseFailure, PluginContext
from kawa.plugins.parsers._common import NOT_MATCHED, ParsedEvent, ParserOptions, create_time_parser
from kawa.plugins.parsers._stateful import StatefulLineParser

CRI_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%N%z"   # RFC 3339 nano, e.g. 2023-05-01T10:00:00.123456789Z


class CriOptions(ParserOptions):
    time_format = CRI_TIME_FORMAT


@register("parser", "cri")
class CriParser(StatefulLineParser):
    Options = CriOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)

    def make_time_parser(self) -> Any:
        return create_time_parser(self.options)

    def _feed(self, state: Any, text: str, events: list[ParsedEvent], failures: list[ParseFailure]) -> Any:
        parts = text.split(" ", 3)
        if len(parts) < 3 or parts[2] not in ("P", "F"):
            failures.append(ParseFailure(text, NOT_MATCHED, "unmatched"))
            return state
        stamp, stream, tag = parts[0], parts[1], parts[2]
        message = parts[3] if len(parts) == 4 else ""
        try:
            time = self.time_parser.parse(stamp)
        except self._time_error as exc:
            failures.append(ParseFailure(text, str(exc), "invalid"))
            return state
        # stream name -> (time of the first partial, partials, number of its line)
        pending: dict[str, tuple[int, list[str], int]] = state or {}
        if tag == "P":
            first_time, chunks, start = pending.get(stream, (time, [], self.line_no))
            chunks.append(message)
            pending[stream] = (first_time, chunks, start)
            return pending
        if stream in pending:
            first_time, chunks, _start = pending.pop(stream)
            message = "".join(chunks) + message
            time = first_time
        record = {"stream": stream, "logtag": "F", "message": message}
        if self.needs_convert:
            self.convert_values(record)
        events.append((time, record))
        return pending or None

    def _flush(self, state: Any, events: list[ParsedEvent], failures: list[ParseFailure]) -> None:
        for stream, (time, chunks, _start) in state.items():
            events.append((time, {"stream": stream, "logtag": "P", "message": "".join(chunks)}))

    def _held_starts(self, state: Any) -> list[int]:
        return [start for _time, _chunks, start in state.values()]
