"""Golden-case helpers for filter tests: load a case's input events and expected output lines."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pytest

GOLDEN = Path(__file__).resolve().parents[2] / ".." / "shared" / "golden"


def _ns(text: str) -> int:
    if text.endswith("Z"):
        parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    else:
        parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z")
    return int(parsed.timestamp()) * 10**9


class GoldenCase:
    def __init__(self, name: str) -> None:
        self.dir = GOLDEN / name
        if not self.dir.is_dir():
            pytest.skip(f"golden case {name} not found at {self.dir} (../shared/golden is absent)")

    def json_events(self, file: str = "events.log", time_key: str = "ts") -> list[tuple[int, dict[str, Any]]]:
        """Input lines as the golden <parse> @type json / time_key ts made them."""
        events = []
        for line in (self.dir / "input" / file).read_text().split("\n"):
            if not line.strip():
                continue
            record = json.loads(line)
            events.append((_ns(record.pop(time_key)), record))
        return events

    def expected_lines(self, name: str) -> list[str]:
        out = self.dir / "expected" / "out"
        lines: list[str] = []
        for path in sorted(out.glob(f"{name}.*.log")):
            lines.extend(line for line in path.read_text().split("\n") if line)
        return lines

    def log_lines(self) -> list[str]:
        return (self.dir / "expected" / "fluentd.log.normalized").read_text().split("\n")


def standard_output_lines(tag: str, events: list[tuple[int, dict[str, Any]]],
                          time_key: str = "time", tag_key: str = "tag") -> list[str]:
    """What the golden harness' standard <match> (json + inject tag/time) writes for these events."""
    from kawa.config.schema import Options  # noqa: F401  (ensures kawa imports cleanly first)
    from kawa.log import LogSink, Logger
    from kawa.plugins.formatters.json import oj_dumps
    from kawa.plugins.inject import InjectOptions, Injector

    opts = InjectOptions.defaults()
    opts.time_key, opts.tag_key, opts.time_type = time_key, tag_key, "string"
    opts.time_format = "%Y-%m-%dT%H:%M:%S.%N%z"
    opts.localtime, opts.utc = False, True
    import io

    injector = Injector(opts, Logger(LogSink(io.StringIO())))
    return [oj_dumps(r) for _, r in injector.inject_batch(tag, events)]


@pytest.fixture
def golden() -> Callable[[str], GoldenCase]:
    return GoldenCase


@pytest.fixture
def standard_output() -> Callable[..., list[str]]:
    return standard_output_lines
