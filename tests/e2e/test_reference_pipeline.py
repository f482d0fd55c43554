"""The reference pipeline end to end: the real `kawa` process tails a generated nginx log, parses it
with the seed's regex, drops /healthcheck and writes JSON lines; every other line must arrive once,
parsed, with the right time."""

from __future__ import annotations

import calendar
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from kawa.testing import nginx_log

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def _wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _count_lines(out_dir: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in out_dir.glob("access.*.log"))


def test_reference_pipeline_every_line_once(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    lines = list(nginx_log.lines(20000, seed=7, start=1_700_000_000))
    log.write_text("\n".join(lines[:15000]) + "\n")
    want = [l for l in lines if '"GET /healthcheck ' not in l]
    env = {**os.environ, "KAWA_INPUT": str(log), "KAWA_POS": str(tmp_path / "nginx.pos"),
           "KAWA_OUTPUT": str(tmp_path / "out" / "access"), "TZ": "UTC"}
    proc = subprocess.Popen([sys.executable, "-m", "kawa", "-c", str(REPO / "examples" / "reference-file.conf")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out = tmp_path / "out"
        first = len([l for l in lines[:15000] if '"GET /healthcheck ' not in l])
        _wait_for(lambda: out.exists() and _count_lines(out) >= first, 60, "the first 15,000 lines")
        with log.open("a") as f:                      # lines appended while running are followed
            f.write("\n".join(lines[15000:]) + "\n")
        _wait_for(lambda: _count_lines(out) >= len(want), 60, "the appended lines")
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert "Traceback" not in output
    assert "following tail of" in output

    records = [orjson.loads(l) for p in sorted(out.glob("access.*.log")) for l in p.read_bytes().splitlines()]
    got = Counter((r["remote"], r["time"], r["path"], r["code"], r["size"], r["agent"]) for r in records)
    expected = Counter()
    for line in want:                  # parsed independently of kawa, with the stdlib
        ip = line.split(" ", 1)[0]
        stamp = line.split("[", 1)[1].split("]", 1)[0]
        seconds = calendar.timegm(time.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z"))
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".000000000+0000"
        path = line.split('"GET ', 1)[1].split(" ", 1)[0]
        code, size = line.split('" ', 1)[1].split(" ")[:2]
        agent = line.rsplit('" "', 2)[1]
        expected[(ip, iso, path, code, size, agent)] += 1
    assert got == expected         # every line exactly once, nothing extra
    assert all(r["tag"] == "nginx.access" and r["method"] == "GET" for r in records)
    assert not any(r["path"] == "/healthcheck" for r in records)
