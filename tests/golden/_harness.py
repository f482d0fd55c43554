"""Runs the real `kawa` process on a golden case the way the golden harness ran Fluentd 1.18,
and normalizes our output the same way (paths → @CASE@, current times → @NOW@, inodes)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
GOLDEN = SHARED / "golden"
FLUENTD_RUN_DAY = "20261127"    # the day the golden files were made; names carrying it mean "today"


def case_dirs() -> list[str]:
    if not GOLDEN.is_dir():
        return []
    return sorted(p.name for p in GOLDEN.iterdir() if (p / "CASE.md").exists())


def case_info(name: str) -> dict[str, str]:
    text = (GOLDEN / name / "CASE.md").read_text()
    info = {}
    for key in ("What", "Command", "Steps", "Output"):
        m = re.search(rf"^{key}: (.*)$", text, re.M)
        info[key] = m.group(1) if m else ""
    return info


def env_for(name: str) -> dict[str, str]:
    """The environment the case's Command line set (TZ=UTC, GOLDEN_X=..., env -u ...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLDEN_")}
    env["TZ"] = "UTC"
    env["LANG"] = "C.UTF-8"
    command = case_info(name)["Command"]
    m = re.search(r"GOLDEN_X=(.*?) ruby", command)
    if m:
        env["GOLDEN_X"] = m.group(1)
    return env


@dataclass
class Run:
    case: str
    root: Path
    started: float = 0.0
    ended: float = 0.0
    log: str = ""
    procs: list[subprocess.Popen] = field(default_factory=list)
    rc: int | None = None

    # -- process control ------------------------------------------------------------------------
    def kawa(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "kawa", *args]

    def dry_run(self, *extra: str) -> tuple[int, str]:
        p = subprocess.run(self.kawa("-c", str(self.root / "fluent.conf"), "--dry-run", *extra),
                           cwd=self.root, env=env_for(self.case), capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout + p.stderr

    def start(self) -> None:
        if not self.started:
            self.started = time.time()
        logf = open(self.root / "kawa.log", "a")
        self.procs.append(subprocess.Popen(self.kawa("-c", str(self.root / "fluent.conf")), cwd=self.root,
                                           env=env_for(self.case), stdout=logf, stderr=subprocess.STDOUT))

    def wait_quiet(self, quiet: float = 1.0, timeout: float = 30.0, min_wait: float = 1.0) -> None:
        """Wait until out/ and work/ have not changed for `quiet` seconds (the golden harness used 3 s)."""
        deadline = time.monotonic() + timeout
        time.sleep(min_wait)
        last = self._state()
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self._state()
            if now != last:
                last, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since >= quiet:
                return

    def stop(self, timeout: float = 30.0) -> int:
        proc = self.procs[-1]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            self.rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            self.rc = proc.wait()
        self.ended = time.time()
        self.log = (self.root / "kawa.log").read_text(errors="replace")
        return self.rc

    def kill_all(self) -> None:
        """Never leave a kawa process behind when a test fails half-way through its steps."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def _state(self) -> tuple:
        items = []
        for sub in ("out", "work"):
            base = self.root / sub
            if base.exists():
                for p in sorted(base.rglob("*")):
                    if p.is_file():
                        st = p.stat()
                        items.append((str(p), st.st_size, st.st_mtime_ns))
        return tuple(items)

    # -- results --------------------------------------------------------------------------------
    def outputs(self, sub: str = "out") -> dict[str, str]:
        """Output files as normalized text, keyed by their name relative to `sub` (run day → golden day)."""
        base = self.root / sub
        found = {}
        if not base.exists():
            return found
        today = time.strftime("%Y%m%d", time.gmtime(self.started or time.time()))
        for p in sorted(base.rglob("*")):
            if p.is_file():
                rel = str(p.relative_to(base)).replace(today, FLUENTD_RUN_DAY)
                found[rel] = self.normalize_paths(p.read_bytes().decode("utf-8", "surrogateescape"))
        return found

    def normalize_paths(self, text: str) -> str:
        root = str(self.root)
        tag_form = root.lstrip("/").replace("/", ".")
        text = text.replace(root, "@CASE@").replace(tag_form, "@CASE_TAG@")
        # The golden machine was called `vm`; ${hostname} values were written @HOSTNAME@.
        return re.sub(rf"\b{re.escape(socket.gethostname())}\b", "@HOSTNAME@", text)

    def normalize_now(self, text: str) -> str:
        """Replace timestamps inside this run's wall-clock window by @NOW@ (golden README rule)."""
        lo, hi = int(self.started) - 2, int(self.ended or time.time()) + 2

        def in_window(epoch: float) -> bool:
            return lo <= epoch <= hi

        def iso(m: re.Match[str]) -> str:
            s = m.group(0)
            try:
                seconds = datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
            except ValueError:
                return s
            return "@NOW@" if in_window(seconds) else s

        def stdout_fmt(m: re.Match[str]) -> str:
            seconds = datetime.strptime(m.group(0)[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
            return "@NOW@" if in_window(seconds) else m.group(0)

        def epoch(m: re.Match[str]) -> str:
            return "@NOW@" if in_window(int(m.group(1))) else m.group(0)

        text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:?\d\d|Z)?", iso, text)
        text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? [+-]\d{4}", stdout_fmt, text)
        text = re.sub(r"(?<![\d.])(\d{10})(?:\.\d+)?(?!\d)", epoch, text)
        return text


def prepare(name: str, tmp: Path) -> Run:
    """Copy the case (config and input at start, not later steps) into tmp with @CASE@ substituted."""
    src = GOLDEN / name
    root = tmp / name
    root.mkdir(parents=True)
    for p in src.rglob("*"):
        rel = p.relative_to(src)
        if rel.parts[0] in ("expected", "CASE.md") or (len(rel.parts) > 1 and rel.parts[:2] == ("input", "steps")):
            continue
        dest = root / rel
        if p.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        elif p.suffix in (".conf",) or p.name.endswith(".conf"):
            dest.write_text(p.read_text().replace("@CASE@", str(root)))
        else:
            shutil.copy2(p, dest)
    (root / "out").mkdir(exist_ok=True)
    (root / "work").mkdir(exist_ok=True)
    return Run(name, root)


def expected_outputs(name: str, sub: str = "out", step: str | None = None) -> dict[str, tuple[str, bool]]:
    """Expected files: name → (text, normalized?). A `.normalized` copy replaces its raw file."""
    base = GOLDEN / name / "expected"
    base = base / "steps" / step / sub if step else base / sub
    out: dict[str, tuple[str, bool]] = {}
    if not base.exists():
        return out
    for p in sorted(base.rglob("*")):
        if not p.is_file():
            continue
        rel = str(p.relative_to(base))
        text = p.read_bytes().decode("utf-8", "surrogateescape")
        if rel.endswith(".normalized"):
            out[rel[: -len(".normalized")]] = (text, True)
        elif rel not in out:
            out[rel] = (text, False)
    return out
