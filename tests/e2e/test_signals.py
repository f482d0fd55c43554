"""Signals on the real `kawa` process: SIGTERM drains and exits 0, SIGHUP and SIGUSR2 reload (a bad new
config is refused and the old one keeps running), SIGUSR1 flushes buffers now, SIGCONT writes a sigdump."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.e2e

CONF = """
<source>
  @type sample
  tag app.{name}
  rate 50
  auto_increment_key n
  sample {{"message":"hello"}}
</source>
<match app.**>
  @type file
  path {out}/{name}
  append true
  <format>
    @type json
  </format>
  <buffer>
    flush_mode {flush_mode}
    {flush_extra}
  </buffer>
</match>
"""


def _conf(path: Path, out: Path, name: str, flush_mode: str = "immediate", flush_extra: str = "") -> None:
    path.write_text(CONF.format(out=out, name=name, flush_mode=flush_mode, flush_extra=flush_extra))


def _records(out: Path, name: str) -> list[dict]:
    return [orjson.loads(l) for p in sorted(out.glob(f"{name}.*.log")) for l in p.read_bytes().splitlines()]


def _wait(cond, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _start(conf: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kawa", "-c", str(conf)], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def test_sighup_reloads_and_refuses_a_bad_config(tmp_path: Path) -> None:
    out, conf, log = tmp_path / "out", tmp_path / "fluent.conf", tmp_path / "kawa.log"
    _conf(conf, out, "first")
    proc = _start(conf, log)
    try:
        _wait(lambda: len(_records(out, "first")) >= 20)
        conf.write_text(conf.read_text().replace("@type file", "@type fiel"))      # a broken config
        proc.send_signal(signal.SIGHUP)
        _wait(lambda: "configuration reload failed" in log.read_text())
        assert "Unknown output plugin 'fiel'" in log.read_text()
        before = len(_records(out, "first"))
        _wait(lambda: len(_records(out, "first")) > before + 10)                 # still running
        _conf(conf, out, "second")
        proc.send_signal(signal.SIGHUP)
        _wait(lambda: len(_records(out, "second")) >= 10)
        assert "configuration reloaded" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text()
    first = [r["n"] for r in _records(out, "first")]
    assert first == list(range(len(first)))          # nothing lost or doubled before the reload


def test_sigusr1_flushes_an_interval_buffer_and_sigterm_drains(tmp_path: Path) -> None:
    out, conf, log = tmp_path / "out", tmp_path / "fluent.conf", tmp_path / "kawa.log"
    _conf(conf, out, "app", flush_mode="interval", flush_extra="flush_interval 1h")
    proc = _start(conf, log)
    try:
        _wait(lambda: "fluentd worker is now running" in log.read_text())
        time.sleep(1.0)
        assert _records(out, "app") == []              # nothing written yet: flush_interval is 1 h
        proc.send_signal(signal.SIGUSR1)
        _wait(lambda: len(_records(out, "app")) >= 10)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0, log.read_text()
    numbers = [r["n"] for r in _records(out, "app")]
    assert numbers == list(range(len(numbers)))        # SIGTERM wrote everything in flight, once


def test_a_reload_whose_plugins_cannot_start_exits_1(tmp_path: Path) -> None:
    """The old pipeline is stopped before the new one starts: a new one that cannot start (its
    buffer directory cannot be made) leaves nothing running, so kawa exits 1 to be restarted."""
    out, conf, log = tmp_path / "out", tmp_path / "fluent.conf", tmp_path / "kawa.log"
    _conf(conf, out, "first")
    (tmp_path / "not-a-dir").write_text("")
    proc = _start(conf, log)
    try:
        _wait(lambda: len(_records(out, "first")) >= 5)
        _conf(conf, out, "second", flush_extra=f"@type file\npath {tmp_path}/not-a-dir/buf")
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(30) == 1, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "could not start: NotADirectoryError: [Errno 20] Not a directory:" in text
    assert "configuration reload failed after the running configuration was stopped: exiting" in text
    assert "Traceback" not in text


def test_sigusr2_reloads_as_fluentd_1_9_does(tmp_path: Path) -> None:
    """Fluentd's documented reload signal since 1.9. Left to Python's default it ended the process
    at once, with no drain (rc -12)."""
    out, conf, log = tmp_path / "out", tmp_path / "fluent.conf", tmp_path / "kawa.log"
    _conf(conf, out, "first")
    proc = _start(conf, log)
    try:
        _wait(lambda: len(_records(out, "first")) >= 10)
        _conf(conf, out, "second")
        proc.send_signal(signal.SIGUSR2)
        _wait(lambda: len(_records(out, "second")) >= 10)
        assert proc.poll() is None
        assert "reloading configuration (SIGUSR2)" in log.read_text()
        assert "configuration reloaded" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0, log.read_text()
    first = [r["n"] for r in _records(out, "first")]
    assert first == list(range(len(first)))


def test_sigcont_writes_a_sigdump_and_keeps_running(tmp_path: Path) -> None:
    """`kill -CONT` is how Fluentd users get a stuck collector's state (sigdump)."""
    out, conf, log, dump = tmp_path / "out", tmp_path / "fluent.conf", tmp_path / "kawa.log", tmp_path / "dump.log"
    _conf(conf, out, "app")
    proc = _start(conf, log, env={"SIGDUMP_PATH": str(dump)})
    try:
        _wait(lambda: len(_records(out, "app")) >= 5)
        proc.send_signal(signal.SIGCONT)
        _wait(lambda: "sigdump written" in log.read_text())
        text = dump.read_text()
        assert text.startswith("Sigdump at ") and f"process {proc.pid} " in text
        assert "  Thread MainThread" in text and "in sigdump" in text        # the main thread's own stack
        assert "  asyncio tasks: " in text
        assert '"write_count":' in text and '"queue_length":' in text         # the file output's counters
        assert "  memory: VmHWM" in text or "  memory: VmRSS" in text
        assert f'sigdump written path="{dump}"' in log.read_text()
        before = len(_records(out, "app"))
        _wait(lambda: len(_records(out, "app")) > before + 5)                  # still running
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_sigusr1_reopens_the_log_file_after_logrotate_moved_it(tmp_path: Path) -> None:
    """Fluentd's SIGUSR1 also reopens its log: logrotate moves the file, then signals. Without the
    reopen every later line went to the moved file and the new one never appeared."""
    out, conf, log = tmp_path / "out", tmp_path / "fluent.conf", tmp_path / "kawa.log"
    _conf(conf, out, "app")
    own_log = tmp_path / "logs" / "kawa-own.log"
    own_log.parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "kawa", "-c", str(conf), "-o", str(own_log)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        _wait(lambda: own_log.exists() and "fluentd worker is now running" in own_log.read_text())
        rotated = own_log.with_name("kawa-own.log.1")
        own_log.rename(rotated)                                  # logrotate's move
        proc.send_signal(signal.SIGUSR1)                         # its postrotate
        _wait(lambda: own_log.exists() and "force flushing buffered events" in own_log.read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0, own_log.read_text()
    assert "force flushing buffered events" not in rotated.read_text()
    assert "parsing config file is succeeded" in rotated.read_text()
    assert "Received graceful stop" in own_log.read_text()       # later lines: the new file
