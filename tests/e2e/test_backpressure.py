"""A selective filter in front of a memory buffer: tail holds its pos_file until delivery, so after
MAX_UNSETTLED_BYTES of unsettled input it stops reading. The chunk holding the few kept lines is far
from full; the output must deliver it then (kawa.delivery hurry), not at flush_interval or timekey."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kawa.plugins.inputs._tail.follower import MAX_UNSETTLED_BYTES
from kawa.testing import nginx_log

pytestmark = pytest.mark.e2e

CONF = """
<source>
  @type tail
  path {log}
  pos_file {pos}
  read_from_head true
  tag nginx.access
  <parse>
    @type nginx
  </parse>
</source>
<filter nginx.access>
  @type grep
  <regexp>
    key path
    pattern /healthcheck/
  </regexp>
</filter>
<match nginx.access>
  @type file
  path {out}
  append true
  <buffer>
    @type memory
  </buffer>
</match>
"""


def _start(conf: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "kawa", "-c", str(conf)], env={**os.environ, "TZ": "UTC"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _lines_written(out: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in out.glob("access.*")) if out.exists() else 0


def test_input_waiting_on_a_memory_buffer_gets_its_chunks_flushed(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    lines: list[str] = []
    size = 0
    # Three times the bound: tail must stop (and hurry the buffer) twice. The kept lines of the first
    # two thirds (less a read batch) must come out while kawa runs; the last third may wait in the
    # buffer for its flush time, as in Fluentd, and comes out at shutdown (flush_at_shutdown).
    must_arrive = 0
    for line in nginx_log.lines(1_000_000, seed=3, start=int(time.time()) - 300):
        lines.append(line)
        size += len(line) + 1
        if size <= 2 * MAX_UNSETTLED_BYTES - 1024 * 1024:
            must_arrive += '"GET /healthcheck ' in line
        if size > 3 * MAX_UNSETTLED_BYTES:
            break
    log.write_text("\n".join(lines) + "\n")
    kept = sum('"GET /healthcheck ' in line for line in lines)
    assert 0 < must_arrive < kept < len(lines) // 10
    conf = tmp_path / "kawa.conf"
    conf.write_text(CONF.format(log=log, pos=tmp_path / "nginx.pos", out=tmp_path / "out" / "access"))
    proc = _start(conf)
    out = tmp_path / "out"

    def delivered() -> int:
        return _lines_written(out)

    try:
        # the buffer's own flush time is a day away (timekey 1d, flush_mode lazy): only the early
        # flush an input waiting on it asks for delivers these lines while kawa runs
        deadline = time.monotonic() + 90
        while delivered() < must_arrive and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        while_running = delivered()
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0].decode()
    assert while_running >= must_arrive, output[-3000:]
    assert delivered() == kept, output[-3000:]
    pos = (tmp_path / "nginx.pos").read_text().split("\t")
    assert int(pos[1], 16) == log.stat().st_size
    assert "Traceback" not in output


def test_reading_resumes_as_soon_as_a_memory_buffer_delivers(tmp_path: Path) -> None:
    """tail stops after MAX_UNSETTLED_BYTES until a memory buffer delivers; then it reads on at once.
    notify_coalesce_interval (for gathering a writer's changes) must not delay that: here it is 60 s,
    so each of the two stops would cost a minute if it did."""
    log = tmp_path / "access.log"
    lines: list[str] = []
    size = 0
    for line in nginx_log.lines(1_000_000, seed=5, start=int(time.time()) - 300):
        lines.append(line)
        size += len(line) + 1
        if size > 3 * MAX_UNSETTLED_BYTES:
            break
    log.write_text("\n".join(lines) + "\n")
    conf = tmp_path / "kawa.conf"
    conf.write_text(CONF.format(log=log, pos=tmp_path / "nginx.pos", out=tmp_path / "out" / "access")
                    .replace("read_from_head true", "read_from_head true\n  notify_coalesce_interval 60")
                    .replace("pattern /healthcheck/", "pattern /./")
                    .replace("@type memory", "@type memory\n    flush_mode immediate"))
    proc = _start(conf)
    out = tmp_path / "out"

    def delivered() -> int:
        return _lines_written(out)

    try:
        deadline = time.monotonic() + 45       # a stall waits 60 s; reading the file takes ~1 s
        while delivered() < len(lines) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        while_running = delivered()
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0].decode()
    assert while_running == len(lines), output[-3000:]
    assert "Traceback" not in output
