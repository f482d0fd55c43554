"""Loads a Fluentd golden case for parser tests: input lines as in_tail hands them over (chomped),
expected (record, time) pairs from the out_file lines, and the warn lines about bad input."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from kawa.log import ruby_inspect

GOLDEN = Path(__file__).resolve().parents[2] / ".." / "shared" / "golden"
_INVALID = re.compile(r'\[warn\]: #0 invalid line found file="[^"]*" line=(".*") error=(".*")$')
_UNMATCHED = re.compile(r"\[warn\]: #0 pattern not matched: (\".*\")$")


def case_dir(name: str) -> Path:
    d = GOLDEN / name
    if not d.is_dir():
        pytest.skip(f"golden case {name} not available at {GOLDEN}")
    return d


def input_lines(name: str, file: str = "input.log") -> list[str]:
    raw = (case_dir(name) / "input" / file).read_bytes().decode("utf-8", "surrogateescape")
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]   # Ruby chomp


def expected_events(name: str, prefix: str = "", time_key: str = "time", tag_key: str = "tag",
                    tag: str | None = None) -> list[tuple[str, str | None]]:
    """(canonical record JSON, time string or None for current-time events), sorted."""
    out_dir = case_dir(name) / "expected" / "out"
    rows = []
    for f in sorted(out_dir.glob(f"{prefix}*.log")):
        norm = f.with_name(f.name + ".normalized")
        src = norm if norm.exists() else f
        for line in src.read_bytes().decode("utf-8", "replace").split("\n"):
            if not line:
                continue
            rec = json.loads(line)
            t = rec.pop(time_key)
            got_tag = rec.pop(tag_key)
            if tag is not None and got_tag != tag:
                continue
            rows.append((json.dumps(rec, sort_keys=True, ensure_ascii=False), None if t == "@NOW@" else t))
    return sorted(rows, key=_sort_key)


def _sort_key(row: tuple[str, str | None]) -> tuple[str, str]:
    return (row[1] or "", row[0])


def fmt_time(ns: int | None) -> str | None:
    if ns is None:
        return None
    sec, nsec = divmod(ns, 1_000_000_000)
    if not -62135596800 <= sec < 253402300800:
        return f"out-of-range:{ns}"
    return datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{nsec:09d}+0000"


def actual_events(events: list, record_fix=None) -> list[tuple[str, str | None]]:
    rows = []
    for t, r in events:
        if record_fix is not None:
            r = record_fix(r)
        rows.append((json.dumps(r, sort_keys=True, ensure_ascii=False), fmt_time(t)))
    return sorted(rows, key=_sort_key)


def expected_failures(name: str, log_file: str | None = None) -> list[tuple[str, str]]:
    """(inspected line, reason) for each warn about a line, in log order; optionally one input file."""
    out = []
    for line in (case_dir(name) / "expected" / "fluentd.log.normalized").read_text("utf-8").splitlines():
        m = _INVALID.match(line)
        if m and (log_file is None or f"/input/{log_file}\"" in line):
            out.append((m.group(1), json.loads(m.group(2))))
            continue
        m = _UNMATCHED.match(line)
        if m:
            out.append((m.group(1), "pattern not matched"))
    return out


def actual_failures(failures: list) -> list[tuple[str, str]]:
    return [(ruby_inspect(f.text), f.reason) for f in failures]
