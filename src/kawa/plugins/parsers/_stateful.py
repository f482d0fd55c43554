"""Per-stream state for parsers that join several input lines into one event (multiline, cri, docker).

State contract (for in_tail and any other line-oriented input):
  * `parse_batch(lines, stream=key)` gets COMPLETE lines, newline already removed (Ruby chomp), in file
    order; `stream` names the source (in_tail: the watched path / inode) so files never mix.
  * Events come out as soon as they are complete; unfinished lines stay inside the parser.
  * `flush_pending(stream=key)` -> (events, failures): call when multiline_flush_interval expires with
    no new line for that stream, and at shutdown / file close; it emits (or fails) what is buffered.
  * `close_stream(key)` = flush_pending + forget the stream (rotation finished, file unwatched).
  * `pending_streams()` lists streams holding data (for the flush timer).
Failures of kind "incomplete" mean a continuation line arrived before any first line (Fluentd logs
"got incomplete line before first line from PATH: LINE"; with emit_unmatched_lines it emits them).
"""

from __future__ import annotations

from typing import Any, Hashable, Sequence

from kawa.plugins.base import ParseFailure
from kawa.plugins.parsers._common import BaseParser, ParsedEvent

Batch = tuple[list[ParsedEvent], list[ParseFailure]]


class StatefulLineParser(BaseParser):
    """Keeps one buffer per stream; subclasses implement `_feed` and `_flush` on that buffer."""

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        self._streams: dict[Hashable, Any] = {}

    def parse_batch(self, texts: Sequence[str], stream: Hashable = None) -> Batch:  # type: ignore[override]
        events: list[ParsedEvent] = []
        failures: list[ParseFailure] = []
        state = self._streams.get(stream)
        for text in texts:
            try:
                state = self._feed(state, text, events, failures)
            except Exception as exc:  # one bad line must not lose the batch
                failures.append(ParseFailure(text, f"{type(exc).__name__}: {exc}", "invalid"))
        if state is None:
            self._streams.pop(stream, None)
        else:
            self._streams[stream] = state
        return events, failures

    def flush_pending(self, stream: Hashable = None) -> Batch:
        events: list[ParsedEvent] = []
        failures: list[ParseFailure] = []
        state = self._streams.pop(stream, None)
        if state is not None:
            self._flush(state, events, failures)
        return events, failures

    def close_stream(self, stream: Hashable) -> Batch:
        return self.flush_pending(stream)

    def pending_streams(self) -> list[Hashable]:
        return list(self._streams)

    def _feed(self, state: Any, text: str, events: list[ParsedEvent], failures: list[ParseFailure]) -> Any:
        raise NotImplementedError

    def _flush(self, state: Any, events: list[ParsedEvent], failures: list[ParseFailure]) -> None:
        raise NotImplementedError
