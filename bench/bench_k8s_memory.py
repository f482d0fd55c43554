"""Memory (and CPU) a kawa container costs in each Kubernetes shape, idle and under load, measured on the
real `kawa` process with the layouts' own fluent.conf against a local CloudWatch (and Kubernetes API).

    .venv/bin/python bench/bench_k8s_memory.py [--seconds 30] [--rate 1000] [--containers 50] [--idle 10]

Phases: start, warm-up (10 lines shipped, so the CloudWatch client exists), idle, load (a paced
writer), drain (SIGUSR1 flush, wait until CloudWatch has every line), idle again ("after").
RSS is read from /proc/<pid>/status (VmRSS sampled every 0.25 s; VmHWM = the kernel's peak) summed over
the process tree, which is what the container's memory cgroup charges (plus page cache of the files).
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kawa.testing import nginx_log
from kawa.testing.cwl_server import MotoServer, StrictCloudWatchProxy, fake_aws_env, free_port
from kawa.testing.kube_api import FakeKubeApi, namespace, pod, write_service_account
from _proc import process_tree as tree  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy" / "kubernetes"
NODE = "bench-node"
TICK = 0.1          # the writers write every TICK seconds
SAMPLE = 0.25       # RSS sampling period, seconds
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- /proc ---------------------------------------------------------------------------------------



def status_kib(pid: int, key: str) -> int:
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith(key + ":"))
        except (OSError, StopIteration):
            pass
    return total


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])          # utime + stime (clock ticks)
        except (OSError, IndexError):
            pass
    return total / CLK_TCK


@dataclass
class Sampler:
    """VmRSS of the kawa tree every SAMPLE seconds, tagged with the phase it was taken in."""

    pid: int
    phase: str = "start"
    samples: dict[str, list[int]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Sampler:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE):
            self.samples.setdefault(self.phase, []).append(status_kib(self.pid, "VmRSS"))

    def stop(self) -> None:
        self._stop.set()


# ---- shapes --------------------------------------------------------------------------------------

@dataclass
class Shape:
    name: str
    config: Path
    env: dict[str, str]
    write_tick: Callable[[int], int]     # lines to write this tick -> lines that should arrive
    ready: Callable[[Path], bool]        # kawa is up (log file -> bool)


def _started(log: Path) -> bool:
    return log.exists() and "fluentd worker is now running" in log.read_text()


def sidecar(tmp: Path, endpoint: str) -> Shape:
    """The seed config (deploy/kubernetes/sidecar/fluent.conf) with its two paths moved into tmp."""
    logs = tmp / "var-log-nginx"
    logs.mkdir()
    access = logs / "access.log"
    access.touch()
    text = (DEPLOY / "sidecar" / "fluent.conf").read_text()
    text = text.replace("/var/log/nginx/access.log", str(access)).replace("/fluentd/log/nginx.pos",
                                                                         str(tmp / "nginx.pos"))
    config = tmp / "sidecar.conf"
    config.write_text(text)
    env = {"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_LOGS": endpoint}
    source = nginx_log.lines(10**9, start=time.time(), per_second=1000, healthcheck_ratio=0.05)

    def write_tick(n: int) -> int:
        batch = [next(source) for _ in range(n)]
        with access.open("a") as f:
            f.write("".join(line + "\n" for line in batch))
        return sum(1 for line in batch if nginx_log.HEALTHCHECK not in line)
    return Shape("sidecar", config, env, write_tick, _started)


def cri_stamp() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}000Z"


def daemonset(tmp: Path, endpoint: str, containers: int, api_holder: list[FakeKubeApi]) -> Shape:
    """deploy/kubernetes/daemonset/fluent.conf unchanged (env points it at tmp), `containers` Pods."""
    log_dir = tmp / "var" / "log"
    (log_dir / "containers").mkdir(parents=True)
    ca, key = write_service_account(tmp / "serviceaccount")
    api = FakeKubeApi(ca, key)
    api_holder.append(api)
    api.namespaces["apps"] = namespace("apps", "ns-uid-apps", {"team": "bench"})
    files: list[Path] = []
    for i in range(containers):
        name, uid, cid = f"app-{i:03d}-5d8f7", f"00000000-0000-0000-0000-{i:012d}", f"{i:064x}"
        api.add_pod(pod("apps", name, NODE, uid, {"app": f"app-{i:03d}", "tier": "web"}, [("main", cid)]))
        real = log_dir / "pods" / f"apps_{name}_{uid}" / "main" / "0.log"
        real.parent.mkdir(parents=True)
        real.touch()
        (log_dir / "containers" / f"{name}_apps_main-{cid}.log").symlink_to(real)
        files.append(real)
    health = free_port()
    env = {**api.env(), "K8S_NODE_NAME": NODE, "CLUSTER_NAME": "bench", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL_LOGS": endpoint, "KAWA_LOG_DIR": str(log_dir), "KAWA_STATE_DIR": str(tmp / "state"),
           "KAWA_K8S_SECRET_DIR": str(tmp / "serviceaccount"), "KAWA_HEALTH_PORT": str(health),
           "KAWA_METRICS_PORT": str(free_port())}
    source = nginx_log.lines(10**9, start=time.time(), per_second=1000, healthcheck_ratio=0.0)
    turn = [0]

    def write_tick(n: int) -> int:
        stamp = cri_stamp()
        per_file: dict[int, list[str]] = {}
        for _ in range(n):                      # round-robin over the containers
            per_file.setdefault(turn[0] % len(files), []).append(f"{stamp} stdout F {next(source)}\n")
            turn[0] += 1
        for i, lines in per_file.items():
            with files[i].open("a") as f:
                f.write("".join(lines))
        return n

    def ready(log: Path) -> bool:
        return _started(log) and api.watching("pods")
    return Shape(f"daemonset ({containers} containers)", DEPLOY / "daemonset" / "fluent.conf", env,
                 write_tick, ready)


# ---- one measurement ---------------------------------------------------------------------------

def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def flush_until(proc: subprocess.Popen[bytes], delivered: Callable[[], bool], timeout: float) -> bool:
    """SIGUSR1 (flush now) every 2 s until `delivered`: the sidecar's buffer would wait up to 60 s, and
    a flush can come before tail has read the last lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.send_signal(signal.SIGUSR1)
        if wait_for(delivered, 2.0):
            return True
    return False


def measure(shape: Shape, proxy: StrictCloudWatchProxy, tmp: Path, *, idle: float, seconds: float,
            rate: int) -> dict[str, float]:
    log = tmp / f"kawa-{shape.name.split()[0]}.log"
    env = fake_aws_env({k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KUBERNETES_"))})
    env.update(shape.env)
    accepted0 = proxy.stats().events_accepted
    proc = subprocess.Popen([sys.executable, "-m", "kawa", "-c", str(shape.config)], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    sampler = Sampler(proc.pid).start()
    try:
        if not wait_for(lambda: proc.poll() is None and shape.ready(log), 120):
            raise SystemExit(f"{shape.name}: kawa did not start (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
        # warm-up: the output builds its CloudWatch client on its first flush, so "idle" means after one
        sampler.phase = "warm-up"
        expected = shape.write_tick(10)
        if not flush_until(proc, lambda: proxy.stats().events_accepted - accepted0 >= expected, 120):
            raise SystemExit(f"{shape.name}: warm-up lines not delivered:\n{log.read_text()[-3000:]}")
        sampler.phase = "idle"
        time.sleep(idle)
        idle_hwm = status_kib(proc.pid, "VmHWM")
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        sampler.phase = "load"
        ticks = int(seconds / TICK)
        per_tick = rate * TICK
        for k in range(ticks):                  # paced: catch up on the schedule, never burst ahead
            expected += shape.write_tick(int(per_tick * (k + 1)) - int(per_tick * k))
            delay = t0 + (k + 1) * TICK - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        wall = time.monotonic() - t0
        sampler.phase = "drain"
        # ship what the load left in the buffer
        delivered = flush_until(proc, lambda: proxy.stats().events_accepted - accepted0 >= expected, 120)
        cpu_load = cpu_seconds(proc.pid) - cpu0   # reading, parsing and shipping the load's lines
        sampler.phase = "after"
        time.sleep(idle)
        peak = status_kib(proc.pid, "VmHWM")
    finally:
        sampler.stop()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    load = sampler.samples.get("load", [0])
    return {"idle_rss": statistics.median(sampler.samples.get("idle", [0])) / 1024, "idle_hwm": idle_hwm / 1024,
            "load_rss": statistics.median(load[len(load) // 2:]) / 1024, "load_max_rss": max(load) / 1024,
            "peak_hwm": peak / 1024, "after_rss": statistics.median(sampler.samples.get("after", [0])) / 1024,
            "cpu_m": 1000 * cpu_load / wall, "sent": expected,
            "arrived": proxy.stats().events_accepted - accepted0, "delivered": float(delivered),
            "exit": float(proc.returncode)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="load phase length")
    ap.add_argument("--rate", type=int, default=1000, help="lines/s written during the load phase")
    ap.add_argument("--containers", type=int, default=50, help="containers on the DaemonSet's node")
    ap.add_argument("--idle", type=float, default=10.0, help="idle phase length (before and after load)")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; load {args.rate} lines/s for "
          f"{args.seconds:g} s, idle phases {args.idle:g} s; MiB; CPU: millicores = CPU s of load+drain / load s")
    header = (f"{'shape':<26} {'idle RSS':>9} {'load RSS':>9} {'load max':>9} {'peak HWM':>9} {'after':>7} "
              f"{'CPU m':>6} {'sent':>7} {'arrived':>8}")
    rows = []
    apis: list[FakeKubeApi] = []
    with tempfile.TemporaryDirectory(prefix="kawa-k8s-mem-") as d, MotoServer() as moto, \
            StrictCloudWatchProxy(moto.endpoint) as proxy:
        tmp = Path(d)
        try:
            for make in (lambda t: sidecar(t, proxy.endpoint),
                         lambda t: daemonset(t, proxy.endpoint, args.containers, apis)):
                sub = Path(tempfile.mkdtemp(dir=tmp))
                shape = make(sub)
                r = measure(shape, proxy, sub, idle=args.idle, seconds=args.seconds, rate=args.rate)
                rows.append(f"{shape.name:<26} {r['idle_rss']:9.1f} {r['load_rss']:9.1f} {r['load_max_rss']:9.1f} "
                            f"{r['peak_hwm']:9.1f} {r['after_rss']:7.1f} {r['cpu_m']:6.0f} {r['sent']:7.0f} "
                            f"{r['arrived']:8.0f}" + ("" if r["delivered"] else "  (NOT ALL DELIVERED)")
                            + ("" if r["exit"] == 0 else f"  (exit {r['exit']:.0f})"))
                print(rows[-1], flush=True)
        finally:
            for api in apis:
                api.stop()
    print()
    print(header)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
