"""`<system> workers N`: a supervisor runs N worker processes; <worker N> sections pick what each runs;
an input that cannot run in every worker must sit in a <worker N> section."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.e2e

CONF = """
<system>
  workers 2
</system>
<worker 0>
  <source>
    @type sample
    tag w0
    rate 20
    auto_increment_key n
  </source>
</worker>
<worker 1>
  <source>
    @type sample
    tag w1
    rate 20
    auto_increment_key n
  </source>
</worker>
<match w0>
  @type file
  path {out}/w0
  append true
  <format>
    @type json
  </format>
  <buffer>
    flush_mode immediate
    path {out}/buf0
  </buffer>
</match>
<match w1>
  @type file
  path {out}/w1
  append true
  <format>
    @type json
  </format>
  <buffer>
    flush_mode immediate
    path {out}/buf1
  </buffer>
</match>
"""


def _count(out: Path, name: str) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in out.glob(f"{name}.*.log"))


def test_two_workers_each_run_their_section(tmp_path: Path) -> None:
    out = tmp_path / "out"
    conf = tmp_path / "fluent.conf"
    conf.write_text(CONF.format(out=out))
    log = tmp_path / "kawa.log"
    proc = subprocess.Popen([sys.executable, "-m", "kawa", "-c", str(conf)], stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (_count(out, "w0") >= 10 and _count(out, "w1") >= 10):
            assert time.monotonic() < deadline, log.read_text()
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 2                     # one supervisor, two workers
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "Traceback" not in text
    for name in ("w0", "w1"):
        numbers = [orjson.loads(l)["n"] for p in sorted(out.glob(f"{name}.*.log")) for l in p.read_bytes().splitlines()]
        assert numbers == list(range(len(numbers)))


def test_tail_outside_a_worker_section_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "fluent.conf"
    conf.write_text("<system>\n  workers 2\n</system>\n<source>\n  @type tail\n  path /tmp/x.log\n  tag x\n"
                    "  <parse>\n    @type none\n  </parse>\n</source>\n<match **>\n  @type null\n</match>\n")
    p = subprocess.run([sys.executable, "-m", "kawa", "--dry-run", "-c", str(conf)], capture_output=True, text=True)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Plugin 'tail' does not support multi workers configuration" in p.stdout
