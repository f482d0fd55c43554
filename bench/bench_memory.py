"""Benchmark: resident memory of the real `kawa` process running the reference setup (tail → seed regexp →
grep → cloudwatch_logs) against a local CloudWatch Logs (moto), idle and during a 1M-line burst.

    python bench/bench_memory.py [--scenario keys|irsa|irsa-botocore|burst|all] [--lines 1000000]
                                 [--env NAME=VALUE ...]

keys : AWS keys in environment variables.
irsa : AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, no keys: awscrt's chain, as on EKS. aws-c-auth calls
       STS over TLS on port 443 of a host name only, so moto's STS is served behind a TLS front on
       127.0.0.1:443 (needs root or CAP_NET_BIND_SERVICE) as "localhost", trusted through SSL_CERT_FILE.
irsa-botocore: the same with AWS_ENDPOINT_URL_STS=http://moto (plain HTTP: botocore's chain serves it).
For each, two idle figures: "cold" (started, nothing to read: the output has not connected yet) and
"warm" (after shipping a few lines, i.e. credentials resolved and the client built, then idle again).
burst: appends --lines lines at once and reports the high-water mark while they are shipped.
Figures are the sum of VmRSS / VmHWM over the kawa process and its children (/proc/<pid>/status).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from kawa.testing import nginx_log  # noqa: E402
from kawa.testing.cwl_server import MotoServer, StrictCloudWatchProxy, fake_aws_env  # noqa: E402
from kawa.testing.tls import TlsFront, write_self_signed  # noqa: E402
from _proc import process_tree as _tree  # noqa: E402

# The reference config (examples/reference-cloudwatch.conf) with only the paths made local.
SEED_CONF = """
<source>
  @type tail
  path {input}
  format /^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \\[(?<time>[^\\]]*)\\] "(?<method>\\S+)(?: +(?<path>[^ ]*) +\\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\\"]*)" "(?<agent>[^\\"]*)" "(?<forwarder>[^\\"]*)")?/
  time_format %d/%b/%Y:%H:%M:%S %z
  tag nginx.access
  pos_file {pos}
</source>

<filter nginx.access>
  @type grep
  exclude1 path /healthcheck
</filter>

<match nginx.access>
  @type cloudwatch_logs
  log_group_name {group}
  log_stream_name fluentd
  auto_create_stream true
</match>
"""
MIB = 1024 * 1024
IDLE_QUIET_SECONDS = 3.0      # RSS and CPU time unchanged this long = idle
ROLE_ARN = "arn:aws:iam::123456789012:role/kawa-bench"


def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out




def memory(pid: int) -> tuple[int, int, int]:
    """(sum VmRSS, sum VmHWM, number of processes) over the kawa process tree."""
    rss = hwm = n = 0
    for p in _tree(pid):
        try:
            s = _status(p)
        except OSError:
            continue
        rss, hwm, n = rss + s.get("VmRSS", 0), hwm + s.get("VmHWM", 0), n + 1
    return rss, hwm, n


def _cpu_ticks(pid: int) -> int:
    total = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total


def wait_idle(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> tuple[int, int, int]:
    """Wait until RSS and CPU time stop moving for IDLE_QUIET_SECONDS; returns memory() then."""
    deadline = time.monotonic() + timeout
    last = (-1, -1)
    since = time.monotonic()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"kawa exited with {proc.returncode}")
        now = (memory(proc.pid)[0], _cpu_ticks(proc.pid))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= IDLE_QUIET_SECONDS:
            return memory(proc.pid)
        time.sleep(0.2)
    raise SystemExit("kawa never became idle")


def wait_for(cond: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float, what: str,
             on_poll: Callable[[], None] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise SystemExit(f"kawa exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        if on_poll is not None:
            on_poll()
        time.sleep(0.1)


def _append(src: Path, dst: Path) -> None:
    with src.open("rb") as f, dst.open("ab") as out:
        shutil.copyfileobj(f, out, 1 << 20)


class Run:
    """One kawa process with the seed config in its own directory."""

    def __init__(self, work: Path, endpoint: str, env: dict[str, str], group: str) -> None:
        self.dir = Path(tempfile.mkdtemp(dir=work))
        self.input = self.dir / "access.log"
        self.input.touch()
        conf = self.dir / "seed.conf"
        conf.write_text(SEED_CONF.format(input=self.input, pos=self.dir / "nginx.pos", group=group))
        self.log = (self.dir / "kawa.log").open("wb")
        full_env = {**env, "AWS_ENDPOINT_URL_LOGS": endpoint, "TZ": "UTC"}
        self.proc = subprocess.Popen([sys.executable, "-m", "kawa", "-c", str(conf)], env=full_env,
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return (self.dir / "kawa.log").read_text(errors="replace")


def _fmt(label: str, m: tuple[int, int, int]) -> str:
    return f"{label:<38} VmRSS {m[0] / MIB:6.1f} MiB  VmHWM {m[1] / MIB:6.1f} MiB  ({m[2]} process{'es' if m[2] > 1 else ''})"


def idle_scenario(name: str, work: Path, proxy: StrictCloudWatchProxy, env: dict[str, str]) -> None:
    group = f"bench-{name}-{os.getpid()}"
    run = Run(work, proxy.endpoint, env, group)
    try:
        print(_fmt(f"{name}: idle, nothing read", wait_idle(run.proc)), flush=True)
        few = run.dir / "few.log"
        wanted = nginx_log.write(str(few), 1000, seed=3)
        before = proxy.stats().events_accepted
        _append(few, run.input)
        wait_for(lambda: proxy.stats().events_accepted - before >= wanted, run.proc, 120, "1,000 lines shipped")
        print(_fmt(f"{name}: idle after shipping 1k", wait_idle(run.proc)), flush=True)
    finally:
        output = run.stop()
    sources = sorted({line.split("credentials=", 1)[1].split()[0] for line in output.splitlines()
                      if "credentials=" in line})
    print(f"  credentials source in kawa's log: {', '.join(sources) or '(none logged)'}", flush=True)
    if "Traceback" in output or "error" in output.lower():
        print(f"  (kawa log had errors:)\n{output[-3000:]}", file=sys.stderr)


def burst_scenario(work: Path, proxy: StrictCloudWatchProxy, env: dict[str, str], lines: int) -> None:
    group = f"bench-burst-{os.getpid()}"
    burst = work / "burst.log"
    wanted = nginx_log.write(str(burst), lines, seed=1)
    run = Run(work, proxy.endpoint, env, group)
    try:
        idle = wait_idle(run.proc)
        print(_fmt("burst: idle before", idle), flush=True)
        before = proxy.stats().events_accepted
        peak = [0]

        def sample() -> None:
            peak[0] = max(peak[0], memory(run.proc.pid)[0])

        t0 = time.monotonic()
        _append(burst, run.input)
        wait_for(lambda: proxy.stats().events_accepted - before >= wanted, run.proc, 1800,
                 f"{wanted:,} events shipped", on_poll=sample)
        took = time.monotonic() - t0
        m = memory(run.proc.pid)
        print(_fmt(f"burst: {lines:,} lines shipped", m), flush=True)
        print(f"  {wanted:,} events in {took:.1f} s ({wanted / took:,.0f} events/s); highest sampled VmRSS "
              f"{peak[0] / MIB:.1f} MiB", flush=True)
        print(_fmt("burst: idle after", wait_idle(run.proc)), flush=True)
    finally:
        output = run.stop()
    if "Traceback" in output:
        print(f"  (kawa log had a traceback:)\n{output[-3000:]}", file=sys.stderr)


def irsa_awscrt(work: Path, moto: MotoServer, proxy: StrictCloudWatchProxy, env: dict[str, str]) -> None:
    """The irsa scenario on awscrt's chain: moto's STS behind TLS at localhost:443 (see the docstring)."""
    cert, key = work / "sts.pem", work / "sts.key"
    write_self_signed(cert, key, ("localhost",))
    assert moto.port is not None
    try:
        front = TlsFront(("127.0.0.1", moto.port), cert, key, port=443).start()
    except OSError as exc:
        print(f"irsa: skipped, cannot listen on 127.0.0.1:443 for the TLS STS ({exc}); "
              "run as root, or see --scenario irsa-botocore", flush=True)
        return
    try:
        idle_scenario("irsa", work, proxy, {**env, "AWS_ENDPOINT_URL_STS": "localhost", "SSL_CERT_FILE": str(cert)})
    finally:
        front.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", choices=("keys", "irsa", "irsa-botocore", "burst", "all"), default="all")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--env", action="append", default=[], help="extra NAME=VALUE for the kawa process")
    args = ap.parse_args()
    extra = dict(e.split("=", 1) for e in args.env)
    base = fake_aws_env()
    for key in ("AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
        base.pop(key, None)
    keys_env = {**base, **extra}
    with tempfile.TemporaryDirectory(prefix="kawa-mem-") as tmp, MotoServer() as moto, \
            StrictCloudWatchProxy(moto.endpoint) as proxy:
        work = Path(tmp)
        if args.scenario in ("keys", "all"):
            idle_scenario("keys", work, proxy, keys_env)
        token = work / "token"
        token.write_text("eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl")  # moto accepts any token
        irsa_env = {k: v for k, v in keys_env.items()
                    if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_CA_BUNDLE")}
        irsa_env.update(AWS_WEB_IDENTITY_TOKEN_FILE=str(token), AWS_ROLE_ARN=ROLE_ARN,
                        AWS_ROLE_SESSION_NAME="kawa-bench")
        if args.scenario in ("irsa", "all"):
            irsa_awscrt(work, moto, proxy, irsa_env)
        if args.scenario in ("irsa-botocore", "all"):
            idle_scenario("irsa-botocore", work, proxy, {**irsa_env, "AWS_ENDPOINT_URL_STS": moto.endpoint})
        if args.scenario in ("burst", "all"):
            burst_scenario(work, proxy, keys_env, args.lines)


if __name__ == "__main__":
    main()
