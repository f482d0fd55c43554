"""One pos_file / file buffer per process: Fluentd's in-process ConfigErrors for a path configured
twice, and kawa's lock against a second process on the same state (see kawa.state_lock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kawa import state_lock

pytestmark = pytest.mark.e2e

SOURCE = """
<source>
  @type tail
  path {dir}/{log}
  tag {tag}
  pos_file {pos}
  read_from_head true
  <parse>
    @type none
  </parse>
</source>
"""

MATCH = """
<match {tag}>
  @type file
  path {dir}/out-{tag}
  <format>
    @type json
  </format>
  <buffer>
    @type file
    path {buffer}
    flush_mode immediate
  </buffer>
</match>
"""


def _kawa(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kawa", *args], capture_output=True, text=True, timeout=timeout)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _lines(out_dir: Path, tag: str) -> list[str]:
    return [line for p in sorted(out_dir.glob(f"out-{tag}.*.log")) for line in p.read_text().splitlines()]


def _wait(cond, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_pos_file_configured_twice_is_fluentds_config_error(tmp_path: Path) -> None:
    pos = tmp_path / "same.pos"
    conf = _write(tmp_path / "k.conf",
                  SOURCE.format(dir=tmp_path, log="a.log", tag="a", pos=pos)
                  + SOURCE.format(dir=tmp_path, log="b.log", tag="b", pos=pos) + "<match **>\n  @type null\n</match>\n")
    proc = _kawa("--dry-run", "-c", str(conf))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert ("k.conf:13: <source>: Other 'in_tail' plugin already use same pos_file path: plugin_id = object:"
            in proc.stdout)
    assert proc.stdout.rstrip().endswith(f"pos_file path = {pos}")
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_buffer_path_configured_twice_is_fluentds_config_error(tmp_path: Path) -> None:
    buffer = tmp_path / "buf"
    conf = _write(tmp_path / "k.conf",
                  MATCH.format(dir=tmp_path, tag="a", buffer=buffer) + MATCH.format(dir=tmp_path, tag="b", buffer=buffer))
    proc = _kawa("--dry-run", "-c", str(conf))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert (f"<match b>: Other 'file' plugin already use same buffer path: type = file, buffer path = {buffer}"
            in proc.stdout)


def test_different_paths_are_accepted(tmp_path: Path) -> None:
    conf = _write(tmp_path / "k.conf",
                  SOURCE.format(dir=tmp_path, log="a.log", tag="a", pos=tmp_path / "a.pos")
                  + SOURCE.format(dir=tmp_path, log="b.log", tag="b", pos=tmp_path / "b.pos")
                  + MATCH.format(dir=tmp_path, tag="a", buffer=tmp_path / "buf-a")
                  + MATCH.format(dir=tmp_path, tag="b", buffer=tmp_path / "buf-b"))
    proc = _kawa("--dry-run", "-c", str(conf))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _start(conf: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "kawa", "-c", str(conf)], stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


@pytest.mark.parametrize("shared", ["pos_file", "buffer directory", "buffer pattern"])
def test_a_second_process_on_the_same_state_stops_at_start(tmp_path: Path, shared: str) -> None:
    """The second kawa exits 1 naming the path and the first one's pid, and the first one's lines
    arrive once; after the first one is killed with -9, the same config starts and resumes."""
    (tmp_path / "a.log").write_text("".join(f"line {i}\n" for i in range(100)))
    buffer = tmp_path / ("app.*.buf" if shared == "buffer pattern" else "buf")
    first = _write(tmp_path / "first.conf", SOURCE.format(dir=tmp_path, log="a.log", tag="a", pos=tmp_path / "a.pos")
                   + MATCH.format(dir=tmp_path, tag="a", buffer=buffer))
    # the second shares one piece of state with the first and has its own other one
    second = _write(tmp_path / "second.conf", SOURCE.format(
        dir=tmp_path, log="a.log", tag="a", pos=tmp_path / ("a.pos" if shared == "pos_file" else "other.pos"))
        + MATCH.format(dir=tmp_path, tag="a", buffer=tmp_path / "other-buf" if shared == "pos_file" else buffer))
    proc = _start(first, tmp_path / "first.log")
    try:
        _wait(lambda: len(_lines(tmp_path, "a")) == 100)
        other = _kawa("-c", str(second), timeout=30)
        assert other.returncode == 1, other.stdout
        expected = {
            "pos_file": f"pos_file {tmp_path / 'a.pos'} is in use by another process (pid {proc.pid} on host "
                        f"{os.uname().nodename}; lock file {tmp_path / 'a.pos.kawa-lock'})",
            "buffer directory": f"buffer path {buffer}/buffer.*.log is in use by another process (pid {proc.pid}; "
                                f"lock on directory {buffer})",
            "buffer pattern": f"buffer path {buffer} is in use by another process (pid {proc.pid} on host "
                              f"{os.uname().nodename}; lock file {tmp_path / 'app.kawa-lock'})",
        }[shared]
        assert f"[error]: {expected}: two collectors on the same state" in other.stdout, other.stdout
        assert "Traceback" not in other.stdout + other.stderr
        assert len(_lines(tmp_path, "a")) == 100
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    # kill -9 leaves no stale lock: the same config starts and resumes where the first one stopped
    with (tmp_path / "a.log").open("a") as f:
        f.write("line 100\n")
    again = _start(first, tmp_path / "again.log")
    try:
        _wait(lambda: len(_lines(tmp_path, "a")) >= 101)
        time.sleep(0.5)
        assert _lines(tmp_path, "a").count('{"message":"line 100"}') == 1
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=30) == 0
    assert "in use by another process" not in (tmp_path / "again.log").read_text()
    if shared == "buffer directory":
        assert sorted(p.name for p in buffer.iterdir()) == []     # nothing of kawa's among the chunks


_TRY_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(3)
"""


def _locked_elsewhere(path: str) -> bool:
    return subprocess.run([sys.executable, "-c", _TRY_LOCK, path], timeout=30).returncode == 3


def test_locks_are_counted_within_a_process(tmp_path: Path) -> None:
    """A reload's new pipeline takes a lock the old one still holds: the lock stays until both let go."""
    lock = str(tmp_path / "x.pos.kawa-lock")
    held = state_lock.acquire(lock, "pos_file x.pos")
    assert state_lock.acquire(lock, "pos_file x.pos") == held
    assert _locked_elsewhere(lock)
    state_lock.release(held)
    assert _locked_elsewhere(lock)
    state_lock.release(held)
    assert not _locked_elsewhere(lock)
    assert (tmp_path / "x.pos.kawa-lock").read_text() == f"pid {os.getpid()} on host {os.uname().nodename}\n"
