"""Fault harness for "lose nothing, double nothing": real kawa processes killed with SIGKILL while a
writer appends nginx lines and CloudWatch Logs (moto behind StrictCloudWatchProxy) fails or is down.

Used by tests/e2e/test_no_loss.py (CI-sized and `-m slow` runs) and bench/faults_no_loss.py.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import orjson

from kawa.testing import nginx_log
from kawa.testing.cwl_server import MotoServer, StrictCloudWatchProxy, fake_aws_env, read_all_events

GROUP, STREAM = "no-loss", "nginx"
HEALTHCHECK = f'"GET {nginx_log.HEALTHCHECK} '

CONF = """
<system>
  log_level info
</system>
<source>
  @type tail
  path {log}
  pos_file {pos}
  read_from_head true
  tag nginx.access
  format /^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \\[(?<time>[^\\]]*)\\] "(?<method>\\S+)(?: +(?<path>[^ ]*) +\\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\\"]*)" "(?<agent>[^\\"]*)" "(?<forwarder>[^\\"]*)")?/
  time_format %d/%b/%Y:%H:%M:%S %z
</source>
<filter nginx.access>
  @type grep
  exclude1 path /healthcheck
</filter>
"""


def cloudwatch_match(pattern: str, endpoint: str, *, group: str = GROUP, stream: str = STREAM,
                     buffer: str = "") -> str:
    """A <match> shipping to the local CloudWatch Logs as the fault tests want it: 1 s flushes and
    quick retries, so outages and kills play out in seconds. `buffer`: more <buffer> lines."""
    extra = "".join(f"    {line}\n" for line in buffer.splitlines())
    return (f"<match {pattern}>\n  @type cloudwatch_logs\n  endpoint {endpoint}\n  region us-east-1\n"
            f"  log_group_name {group}\n  log_stream_name {stream}\n  auto_create_stream true\n"
            f"  <buffer>\n{extra}    flush_interval 1s\n    retry_wait 0.5s\n    retry_max_interval 2s\n"
            "  </buffer>\n</match>\n")


@dataclass
class Figures:
    buffer: str
    sent: int = 0                 # non-healthcheck lines written (what must arrive)
    delivered: int = 0            # distinct lines found in CloudWatch
    duplicates: int = 0           # events beyond the first copy of a line
    lost: int = 0
    restarts: int = 0             # kill -9 (each followed by a start)
    retries: int = 0              # failed PutLogEvents calls kawa had to retry (faults injected)
    calls: int = 0                # PutLogEvents calls that reached CloudWatch (failed ones included)
    outage_s: float = 0.0
    seconds: float = 0.0
    inflight_kills: int = 0       # kills made while CloudWatch held a PutLogEvents call (stored after the kill)
    verified_stored: int = 0      # lost answers kawa read back and found stored (not resent)
    verified_absent: int = 0      # lost answers kawa read back and found missing (resent)
    unverified: int = 0           # lost answers kawa could not check (resent: duplicates possible)
    duplicate_lines: list[int] = field(default_factory=list)
    duplicate_runs: list[tuple[int, int]] = field(default_factory=list)   # [first, last] line numbers

    def line(self) -> str:
        return (f"no-loss [{self.buffer} buffer] sent={self.sent} delivered={self.delivered} "
                f"duplicates={self.duplicates} lost={self.lost} restarts={self.restarts} "
                f"retries={self.retries}/{self.calls} calls outage={self.outage_s:.1f}s wall={self.seconds:.1f}s "
                f"inflight_kills={self.inflight_kills} verified_stored={self.verified_stored} "
                f"verified_absent={self.verified_absent} unverified={self.unverified}"
                + (f" duplicate_runs={self.duplicate_runs}" if self.duplicate_runs else ""))


def numbered_lines(count: int, seed: int) -> list[str]:
    """nginx lines whose X-Forwarded-For field carries a unique number `seq-N`."""
    out = []
    for n, line in enumerate(nginx_log.lines(count, seed=seed)):
        assert line.endswith('"-"')
        out.append(f'{line[:-3]}"seq-{n}"')
    return out


class Writer(threading.Thread):
    """Appends the lines in small batches over `duration` seconds (as a busy nginx would)."""

    def __init__(self, path: Path, lines: list[str], duration: float) -> None:
        super().__init__(daemon=True)
        self.path, self.lines, self.duration = path, lines, duration
        self.written = 0

    def run(self) -> None:
        batch = max(1, len(self.lines) // max(1, int(self.duration * 20)))
        start = time.monotonic()
        with self.path.open("a") as f:
            for i in range(0, len(self.lines), batch):
                f.write("\n".join(self.lines[i:i + batch]) + "\n")
                f.flush()
                self.written = min(len(self.lines), i + batch)
                due = start + self.duration * self.written / len(self.lines)
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)


class Kawa:
    """The kawa process under test (one worker: the worker is the process)."""

    def __init__(self, conf: Path, log: Path, env: dict[str, str]) -> None:
        self.conf, self.log, self.env = conf, log, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "kawa", "-c", str(self.conf)], env=self.env,
                                     stdout=out, stderr=subprocess.STDOUT)
        out.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def term(self, timeout: float) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took)."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        return rc, time.monotonic() - t0


# kawa's log lines for a PutLogEvents call whose answer was lost (cloudwatch_logs/sender.py)
VERIFIED_STORED = "whose answer was lost is stored in CloudWatch Logs"
VERIFIED_ABSENT = "whose answer was lost is not in CloudWatch Logs"
UNVERIFIED = "could not tell whether CloudWatch Logs stored"
# How long the proxy holds the call an in-flight kill interrupts; kawa reads the stream back no sooner
# than cloudwatch_logs.verify.SETTLE_SECONDS after its restart, by when the held call is stored.
HOLD_SECONDS = 1.0


def count_verifications(kawa_log: Path, figures: Figures) -> None:
    text = kawa_log.read_text(errors="replace")
    figures.verified_stored = text.count(VERIFIED_STORED)
    figures.verified_absent = text.count(VERIFIED_ABSENT)
    figures.unverified = text.count(UNVERIFIED)


def wait_until(cond: Any, timeout: float, what: str, proc: Kawa | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"kawa exited ({proc.proc.returncode}) while waiting for {what}:\n"
                                 + proc.log.read_text()[-4000:])
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def configure(root: Path, endpoint: str, buffer: str, seed_config: Path | None = None) -> tuple[Path, Path, Path]:
    log, pos = root / "access.log", root / "state" / "access.pos"
    (root / "state").mkdir(parents=True, exist_ok=True)
    log.touch()
    conf = root / "fluent.conf"
    if seed_config is not None:
        conf.write_text(adjust_seed(seed_config.read_text(), log, pos, endpoint))
        return conf, log, pos
    buf = (f"@type file\npath {root / 'state' / 'buffer'}" if buffer == "file" else "@type memory")
    conf.write_text(CONF.format(log=log, pos=pos) +
                    cloudwatch_match("nginx.access", endpoint, buffer=buf + "\nchunk_limit_size 2m"))
    return conf, log, pos


def adjust_seed(text: str, log: Path, pos: Path, endpoint: str) -> str:
    """The seed's fluent.conf with only its paths, names and the local endpoint changed (its buffer,
    flush and retry settings stay Fluentd's defaults: a memory buffer)."""
    out = []
    for line in text.splitlines():
        key = line.strip().split(" ", 1)[0]
        indent = line[: len(line) - len(line.lstrip())]
        if key == "path":
            line = f"{indent}path {log}"
        elif key == "pos_file":
            line = f"{indent}pos_file {pos}"
        elif key == "log_group_name":
            line = f"{indent}log_group_name {GROUP}"
        elif key == "log_stream_name":
            line = f"{indent}log_stream_name {STREAM}"
        elif key == "auto_create_stream":
            line += f"\n{indent}endpoint {endpoint}\n{indent}region us-east-1"
        out.append(line)
    return "\n".join(out) + "\n"


def position(pos: Path) -> int:
    try:
        line = pos.read_text().splitlines()[0]
    except (OSError, IndexError):
        return -1
    return int(line.split("\t")[1], 16)


def drained(root: Path, log: Path, pos: Path) -> bool:
    """Read to the end, every line safe (the pos_file says so) and no chunk left in a file buffer."""
    chunks = list((root / "state" / "buffer").glob("buffer.*.log")) if (root / "state" / "buffer").exists() else []
    return position(pos) == log.stat().st_size and not chunks


def tally(events: list[dict[str, Any]], want: set[int], figures: Figures) -> None:
    seen = Counter(int(orjson.loads(e["message"])["forwarder"][4:]) for e in events)
    figures.delivered = sum(1 for n in want if seen[n])
    figures.lost = len(want) - figures.delivered
    figures.duplicates = sum(c - 1 for c in seen.values() if c > 1)
    doubled = sorted(n for n, c in seen.items() if c > 1)
    figures.duplicate_lines = doubled[:20]
    runs: list[tuple[int, int]] = []
    for n in doubled:     # healthcheck lines never arrive: a gap of them does not split a run
        if runs and all(m not in want for m in range(runs[-1][1] + 1, n)):
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    figures.duplicate_runs = runs


def _present(endpoint: str) -> set[int]:
    return {int(orjson.loads(e["message"])["forwarder"][4:]) for e in read_all_events(endpoint, GROUP, STREAM)}


def hold_next_call(cloudwatch: StrictCloudWatchProxy, timeout: float = 20.0) -> bool:
    """Make the proxy hold the next PutLogEvents call HOLD_SECONDS before storing it; True once kawa
    sent it (kill now: CloudWatch stores a call whose answer kawa never sees)."""
    held = cloudwatch.stats().faults["delay"]
    cloudwatch.faults.delay(HOLD_SECONDS, 1)
    deadline = time.monotonic() + timeout
    while cloudwatch.stats().faults["delay"] == held:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@dataclass
class Rig:
    """One fault run's parts: CloudWatch (moto behind the fault proxy), the kawa process, its log and pos_file."""
    cloudwatch: StrictCloudWatchProxy
    kawa: Kawa
    log: Path
    pos: Path


@contextmanager
def rig(root: Path, buffer: str, seed_config: Path | None = None) -> Iterator[Rig]:
    """moto + the proxy + a configured (not yet started) kawa with fake keys; both servers stop on exit."""
    with MotoServer() as moto, StrictCloudWatchProxy(moto.endpoint) as cloudwatch:
        conf, log, pos = configure(root, cloudwatch.endpoint, buffer, seed_config)
        env = fake_aws_env({k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
        yield Rig(cloudwatch, Kawa(conf, root / "kawa.log", env), log, pos)


def finish(r: Rig, want: set[int], figures: Figures) -> None:
    """Stop kawa with SIGTERM (it must exit 0) and count what CloudWatch holds against `want`."""
    rc, _took = r.kawa.term(60)
    assert rc == 0, r.kawa.log.read_text()[-4000:]
    figures.calls = r.cloudwatch.stats().calls["PutLogEvents"]
    tally(read_all_events(r.cloudwatch.endpoint, GROUP, STREAM), want, figures)


def run(root: Path, *, lines: int, kills: int, buffer: str, outage: float, seed: int = 1,
        write_seconds: float | None = None, failure_fraction: float = 0.05,
        inflight_kills: int | None = None, failures_throughout: bool = False,
        seed_config: Path | None = None) -> Figures:
    """Write `lines` while killing kawa `kills` times at random moments, with an output outage of
    `outage` seconds in the middle and `failure_fraction` of calls failing; then drain and count.
    `inflight_kills` of the kills (default: every other one) wait for a PutLogEvents call to be in
    flight, held by the proxy that stores it after the kill: the lost-answer case. The random failures
    stop when the writer is done, unless `failures_throughout` (then they last until every line is in).
    `seed_config`: run that fluent.conf (the seed's) with only paths, names and endpoint adjusted."""
    rng = random.Random(seed)
    figures = Figures(buffer)
    t0 = time.monotonic()
    all_lines = numbered_lines(lines, seed)
    want = {n for n, line in enumerate(all_lines) if HEALTHCHECK not in line}
    figures.sent = len(want)
    write_seconds = write_seconds if write_seconds is not None else max(10.0, lines / 20000)
    with rig(root, buffer, seed_config) as r:
        cloudwatch, kawa, log = r.cloudwatch, r.kawa, r.log
        cloudwatch.faults.random_failures(failure_fraction, seed=seed, kinds=("throttle", "unavailable"))
        kawa.start()
        if seed_config is not None:
            # The seed has no read_from_head: as Fluentd, tail starts a file it has no position for at
            # its end, so lines written before it follows the file are not read (by design).
            wait_until(lambda: "following tail of" in kawa.log.read_text(errors="replace"), 60,
                       "tail following the log", kawa)
        writer = Writer(log, all_lines, write_seconds)
        writer.start()
        # kill moments spread over the writing time and a little after; the outage in the middle
        span = write_seconds * 1.3
        moments = sorted(rng.uniform(1.0, span) for _ in range(kills))
        outage_at = span * 0.4
        outage_state = {"on": False, "began": 0.0, "failed_before": 0, "done": not outage}

        def outage_tick() -> None:
            """The outage lasts `outage` seconds and until kawa saw at least 3 calls refused."""
            now = time.monotonic()
            if not outage_state["done"] and not outage_state["on"] and now - started >= outage_at:
                cloudwatch.faults.random_failures(1.0, kinds=("unavailable",))   # every call fails
                outage_state.update(on=True, began=now, failed_before=cloudwatch.stats().faults["unavailable"])
            if outage_state["on"] and now - outage_state["began"] >= outage and \
                    cloudwatch.stats().faults["unavailable"] - outage_state["failed_before"] >= 3:
                cloudwatch.faults.random_failures(failure_fraction, seed=seed + 1, kinds=("throttle", "unavailable"))
                figures.outage_s = now - outage_state["began"]
                outage_state.update(on=False, done=True)

        held_kills = set(range(1, kills, 2)) if inflight_kills is None else set(range(inflight_kills))
        started = time.monotonic()
        for n, moment in enumerate(moments):
            while time.monotonic() - started < moment:
                outage_tick()
                time.sleep(0.02)
            assert kawa.proc is not None and kawa.proc.poll() is None, kawa.log.read_text()[-4000:]
            if n in held_kills and hold_next_call(cloudwatch):
                figures.inflight_kills += 1
            kawa.kill()
            figures.restarts += 1
            kawa.start()
        while not outage_state["done"]:
            outage_tick()
            time.sleep(0.02)
        if not failures_throughout:
            cloudwatch.faults.clear()
        writer.join()
        # drain: everything written is in CloudWatch (the proxy counts what it stored)
        # moto stores ~4,000 events/s through the proxy; injected failures and backoff slow it more
        try:
            wait_until(lambda: drained(root, log, r.pos) and cloudwatch.stats().events_accepted >= figures.sent,
                       120 + lines / (2000 if failures_throughout else 5000),
                       "every line read, settled and in CloudWatch", kawa)
        except AssertionError as exc:
            stats = cloudwatch.stats()
            tally(read_all_events(cloudwatch.endpoint, GROUP, STREAM), want, figures)
            missing = sorted(want - _present(cloudwatch.endpoint))[:10]
            raise AssertionError(f"{exc}: {figures.line()} first missing {missing}; "
                                 f"{stats.events_accepted} of {figures.sent} events stored, "
                                 f"pos {position(r.pos)} of {log.stat().st_size} bytes, calls {dict(stats.calls)}, "
                                 f"faults {dict(stats.faults)}; kawa's log:\n"
                                 + kawa.log.read_text(errors="replace")[-3000:]) from None
        cloudwatch.faults.clear()
        figures.retries = sum(n for kind, n in cloudwatch.stats().faults.items() if kind != "delay")
        finish(r, want, figures)
        count_verifications(root / "kawa.log", figures)
    figures.seconds = time.monotonic() - t0
    return figures


def run_kills_while_down(root: Path, *, lines: int, kills: int, seed: int = 1,
                         write_seconds: float = 6.0) -> Figures:
    """kill -9 kawa every 0.2-0.6 s while a writer appends and CloudWatch refuses every call, then let
    it deliver: nothing is purged meanwhile, so any duplicate or gap comes from tail -> buffer (the
    append, its checkpoint's commit, the pos_file). Kills land mostly while a new process catches up,
    its output planning chunks in worker threads at the same time (GIL hand-overs widen every step)."""
    rng = random.Random(seed)
    all_lines = numbered_lines(lines, seed)
    want = {n for n, line in enumerate(all_lines) if HEALTHCHECK not in line}
    figures = Figures("file", sent=len(want))
    t0 = time.monotonic()
    with rig(root, "file") as r:
        cloudwatch, kawa, log = r.cloudwatch, r.kawa, r.log
        cloudwatch.faults.random_failures(1.0, kinds=("unavailable",))
        kawa.start()
        writer = Writer(log, all_lines, write_seconds)
        writer.start()
        for _ in range(kills):
            time.sleep(rng.uniform(0.2, 0.6))
            assert kawa.proc is not None and kawa.proc.poll() is None, kawa.log.read_text()[-4000:]
            kawa.kill()
            figures.restarts += 1
            kawa.start()
        writer.join()
        cloudwatch.faults.clear()
        wait_until(lambda: drained(root, log, r.pos) and cloudwatch.stats().events_accepted >= figures.sent,
                   120 + lines / 2000, "every line read, settled and in CloudWatch", kawa)
        finish(r, want, figures)
    figures.seconds = time.monotonic() - t0
    return figures
