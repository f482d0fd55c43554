"""Per-stream state for parsers that join several input lines into one event (multiline, cri, docker).

State contract (for in_tail and any other line-oriented input):
  * `parse_batch(lines, stream=key)` gets COMPLETE lines, newline already removed (Ruby chomp), in file
    order; `stream` names the source (in_tail: the watched file) so files never mix.
  * Events come out as soon as they are complete; unfinished lines stay inside the parser.
  * `held_lines(stream)` says where the held data starts: for each group of joined lines still held,
    how many lines back (1 = the last line fed) its first line was. in_tail keeps its pos_file at
    the earliest of them so a restart reads them again instead of losing them.
  * `flush_pending(stream=key)` -> (events, failures): call when multiline_flush_interval expires with
    no new line for that stream, and at shutdown / file close; it emits (or fails) what is buffered.
  * `close_stream(key)` = flush_pending + forget the stream (rotation finished, file unwatched).
  * `pending_streams()` lists streams holding data (for the flush timer).
Failures of kind "incomplete" mean a continuation line arrived before any first line (Fluentd logs
"got incomplete line before first line from PATH: LINE"; with emit_unmatched_lines the input parses
the line alone with `parse_alone`, as Fluentd's convert_line_to_event does).
"""

from __future__ import annotations

from typing import Any, Hashable, Sequence

from kawa.plugins.base import ParseFailure
from kawa.plugins.parsers._common import NOT_MATCHED, BaseParser, ParsedEvent

Batch = tuple[list[ParsedEvent], list[ParseFailure]]


class StatefulLineParser(BaseParser):
    """Keeps one buffer per stream; subclasses implement `_feed`, `_flush` and `_held_starts`.

    While `_feed` runs, `self.line_no` is the number of the line being fed within its stream;
    subclasses store it with a group they start so `held_lines` can say where held data begins.
    """

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        self._streams: dict[Hashable, Any] = {}
        self._fed: dict[Hashable, int] = {}       # lines fed per stream while it holds data
        self.line_no = 0

    def parse_batch(self, texts: Sequence[str], stream: Hashable = None) -> Batch:  # type: ignore[override]
        events: list[ParsedEvent] = []
        failures: list[ParseFailure] = []
        state = self._streams.get(stream)
        fed = self._fed.get(stream, 0)
        for text in texts:
            self.line_no = fed
            fed += 1
            try:
                state = self._feed(state, text, events, failures)
            except Exception as exc:  # one bad line must not lose the batch
                failures.append(ParseFailure(text, f"{type(exc).__name__}: {exc}", "invalid"))
        if state is None:
            self._streams.pop(stream, None)
            self._fed.pop(stream, None)
        else:
            self._streams[stream] = state
            self._fed[stream] = fed
        return events, failures

    def held_lines(self, stream: Hashable = None) -> list[int]:
        state = self._streams.get(stream)
        if state is None:
            return []
        fed = self._fed.get(stream, 0)
        return [fed - start for start in self._held_starts(state)]

    def flush_pending(self, stream: Hashable = None) -> Batch:
        events: list[ParsedEvent] = []
        failures: list[ParseFailure] = []
        state = self._streams.pop(stream, None)
        self._fed.pop(stream, None)
        if state is not None:
            self._flush(state, events, failures)
        return events, failures

    def close_stream(self, stream: Hashable) -> Batch:
        return self.flush_pending(stream)

    def pending_streams(self) -> list[Hashable]:
        return list(self._streams)

    def parse_alone(self, text: str) -> Batch:
        """One line parsed without any state (an incomplete line with emit_unmatched_lines)."""
        return [], [ParseFailure(text, NOT_MATCHED, "unmatched")]

    def _feed(self, state: Any, text: str, events: list[ParsedEvent], failures: list[ParseFailure]) -> Any:
        raise NotImplementedError

    def _flush(self, state: Any, events: list[ParsedEvent], failures: list[ParseFailure]) -> None:
        raise NotImplementedError

    def _held_starts(self, state: Any) -> list[int]:
        raise NotImplementedError
