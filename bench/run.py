"""The performance benchmark: runs the real `kawa` process on the reference pipeline (tail -> seed regexp ->
grep exclude /healthcheck -> file / null / CloudWatch output) and prints every figure with its target.

    python bench/run.py [--runs 3] [--quick] [--only file,null,cwl,steady,workers|steady10k,...] [--work DIR] [--keep]

Figures are medians over --runs runs. --quick: 100k lines and 10 s steady windows (a smoke run; the
burst targets are then scaled to 100k lines). See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import orjson

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO / "src"))

from kawa.testing import nginx_log  # noqa: E402
from _proc import process_tree as tree  # noqa: E402

# nginx_log's agents are short (lines average ~155 bytes); real browser agents bring the average to the
# ~200 bytes of the comparison figures. nginx_log.lines reads AGENTS at call time, so replacing it works.
LONG_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "curl/8.5.0",
)
FULL_LINES = 1_000_000
QUICK_LINES = 100_000
POOL_LINES = 20_000                 # lines the steady writer cycles through
MIB = 1024 * 1024
TICK = os.sysconf("SC_CLK_TCK")
POLL = 0.05
CATCH_UP_SECONDS = 60.0             # after a steady phase, kawa must have delivered everything within this
FILE_CONF = REPO / "examples" / "reference-file.conf"
CWL_CONF = REPO / "examples" / "reference-cloudwatch.conf"
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "AKIDBENCHFAKE", "AWS_SECRET_ACCESS_KEY": "bench-fake-secret",
            "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "AWS_PROFILE")

# (key, label, Fluentd 1.18, Fluent Bit 5.1, kawa target, unit, scales with the line count)
TABLE = (
    ("file.cpu", "CPU seconds (user+sys), file output", 53.2, 12.4, 6.0, "s", True),
    ("file.wall", "wall time until every line is written, file output", 57.9, 13.9, 7.0, "s", True),
    ("cwl.cpu", "CPU seconds, CloudWatch output (local endpoint)", 104.6, 13.4, 9.0, "s", True),
    ("cwl.peak_rss", "peak RSS shipping the burst to CloudWatch", 397, 97, 64, "MiB", False),
    ("cwl.idle_rss", "idle RSS, CloudWatch configured, all processes", 89.5, 16, 24, "MiB", False),
    ("steady1k.cpu_pct", "CPU % at a steady 1,000 lines/s, file output", 12.2, 5.4, 2.5, "%", False),
    ("steady10k.cpu_pct", "CPU % at a steady 10,000 lines/s, file output", 47.6, 17.4, 8.0, "%", False),
    ("cwl.idle_cpu_pct", "CPU % with nothing to read (CloudWatch configured)", 0.17, 0.03, 0.05, "%", False),
    ("onewrite.cpu_pct", "CPU % at 1,000 lines/s, one line per write()", 29.6, 20.7, 5.0, "%", False),
)
EXTRA = (
    ("bare.cpu", "CPU seconds, the bare Python loop over the burst (no kawa; the machine's yardstick)", "s"),
    ("null.cpu", "CPU seconds, null output", "s"), ("null.wall", "wall time, null output (pos_file at end)", "s"),
    ("file.lines_per_cpu_s", "lines per CPU-second, file output", ""),
    ("membuf.cpu", "CPU seconds, file output with <buffer> @type memory", "s"),
    ("membuf.wall", "wall time, file output with <buffer> @type memory", "s"),
    ("cwl.wall", "wall time until every event is accepted, CloudWatch", "s"),
    ("workers.cpu", "CPU seconds, <system> workers 2, file output (all processes)", "s"),
    ("workers.wall", "wall time, workers 2 (both halves written)", "s"),
    ("workers.peak_rss", "peak RSS, workers 2 (supervisor + workers)", "MiB"),
)


# -- processes ------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime+stime of the tree, from /proc/<pid>/stat (clock ticks; exited threads included)."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / TICK


def run_seconds(pid: int) -> float:
    """Time on CPU of the tree's live threads, from /proc/<pid>/task/*/schedstat (nanoseconds). For the
    idle window: clock ticks (10 ms) over 60 s resolve 0.017 %, a third of the 0.05 % target."""
    total = 0
    for p in tree(pid):
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{p}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, IndexError, ValueError):
                pass
    return total / 1e9


def memory(pid: int) -> tuple[float, float]:
    """(sum of VmRSS, sum of VmHWM) in MiB over the tree."""
    rss = hwm = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        hwm += int(line.split()[1])
        except OSError:
            pass
    return rss / 1024, hwm / 1024


class Kawa:
    """One `python -m kawa -c CONF` process with its log in the run directory."""

    def __init__(self, conf: Path, run: Path, extra_env: dict[str, str] | None = None, src: Path | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
        env.update({"PYTHONPATH": str(src or REPO / "src"), "TZ": "UTC", "NO_PROXY": "127.0.0.1,localhost"})
        env.update(extra_env or {})
        self.log_path = run / "kawa.log"
        self.log = self.log_path.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "kawa", "-c", str(conf)], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=run)
        self.pid = self.proc.pid
        self.peak_rss = 0.0

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"kawa exited early with {self.proc.returncode}; log tail:\n{tail}")

    def sample_rss(self) -> float:
        rss = memory(self.pid)[0]
        self.peak_rss = max(self.peak_rss, rss)
        return rss

    def wait_ready(self, timeout: float) -> None:
        """Until every tail watcher is set up ('following tail of' logged) and CPU stops moving for 1 s."""
        deadline = time.monotonic() + timeout
        while b"following tail of" not in self.log_path.read_bytes():
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError("kawa did not log 'following tail of' in time")
            time.sleep(POLL)
        last, since = cpu_seconds(self.pid), time.monotonic()
        while time.monotonic() - since < 1.0 and time.monotonic() < deadline:
            time.sleep(0.1)
            now = cpu_seconds(self.pid)
            if now != last:
                last, since = now, time.monotonic()

    def stop(self, timeout: float = 60.0) -> float:
        """SIGTERM, reap with os.wait4 and return the CPU seconds of its rusage (reaped workers included)."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"kawa already exited with {self.proc.returncode}")
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                deadline = float("inf")
            time.sleep(POLL)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.log.close()
        return usage.ru_utime + usage.ru_stime

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class LineCounter:
    """Counts output lines incrementally (only new bytes are read), over access.*.log in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.offsets: dict[Path, int] = {}
        self.lines = 0

    def count(self) -> int:
        if not self.directory.exists():
            return 0
        for path in self.directory.glob("access.*.log"):
            offset = self.offsets.get(path, 0)
            with path.open("rb") as f:
                f.seek(offset)
                while chunk := f.read(8 * MIB):
                    self.lines += chunk.count(b"\n")
                    offset += len(chunk)
            self.offsets[path] = offset
        return self.lines


def wait_for(done: Callable[[], bool], kawa: Kawa, timeout: float, what: str) -> float:
    """Poll `done` (sampling RSS each time); returns the seconds since kawa started."""
    deadline = time.monotonic() + timeout
    while not done():
        kawa.check()
        kawa.sample_rss()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL)
    return time.monotonic() - kawa.started


# -- inputs and configs --------------------------------------------------------------------------------
def generate(path: Path, count: int, seed: int) -> int:
    saved = nginx_log.AGENTS
    nginx_log.AGENTS = LONG_AGENTS
    try:
        return nginx_log.write(str(path), count, seed=seed)
    finally:
        nginx_log.AGENTS = saved


def _sub_once(pattern: str, repl: str, text: str, what: str, flags: int = re.M) -> str:
    out, n = re.subn(pattern, lambda _m: repl, text, flags=flags)
    if n != 1:
        raise RuntimeError(f"cannot adapt the example config: {what} matched {n} times")
    return out


def null_conf(run: Path) -> Path:
    text = _sub_once(r"^<match nginx\.access>.*?^</match>", "<match nginx.access>\n  @type null\n</match>",
                     FILE_CONF.read_text(), "<match>", re.M | re.S)
    (run / "null.conf").write_text(text)
    return run / "null.conf"


def memory_buffer_conf(run: Path) -> Path:
    text = _sub_once(r"^  <buffer>$", "  <buffer>\n    @type memory", FILE_CONF.read_text(), "<buffer>")
    (run / "membuf.conf").write_text(text)
    return run / "membuf.conf"


def cwl_conf(run: Path, input_path: Path, port: int) -> Path:
    text = CWL_CONF.read_text()
    text = _sub_once(r"^[ \t]*path .*$", f"  path {input_path}", text, "path")
    text = _sub_once(r"^[ \t]*pos_file .*$", f"  pos_file {run / 'nginx.pos'}", text, "pos_file")
    text = _sub_once(r"^</match>", f"  endpoint http://127.0.0.1:{port}\n  region us-east-1\n</match>", text,
                     "</match>")
    (run / "cwl.conf").write_text(text)
    return run / "cwl.conf"


def workers_conf(run: Path, inputs: list[Path]) -> Path:
    body = FILE_CONF.read_text()
    parts = ["<system>\n  workers 2\n</system>"]
    for i, input_path in enumerate(inputs):
        text = body
        for var, value in (("KAWA_INPUT", input_path), ("KAWA_POS", run / f"w{i}.pos"),
                           ("KAWA_OUTPUT", run / f"out{i}" / "access")):
            text = _sub_once(r'"#\{ENV\[\'' + var + r'\'\][^"]*\}"', f'"{value}"', text, var)
        parts.append(f"<worker {i}>\n{text}\n</worker>")
    (run / "workers.conf").write_text("\n".join(parts) + "\n")
    return run / "workers.conf"


def file_env(run: Path, input_path: Path) -> dict[str, str]:
    return {"KAWA_INPUT": str(input_path), "KAWA_POS": str(run / "nginx.pos"),
            "KAWA_OUTPUT": str(run / "out" / "access")}


def pos_offset(pos_file: Path) -> int:
    try:
        return int(pos_file.read_text().split("\t")[1], 16)
    except (OSError, IndexError, ValueError):
        return -1


# -- scenarios (each returns one run's figures) ----------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.lines = args.lines
        self.timeout = args.timeout
        self.input = work / "access.log"
        self.kept = generate(self.input, self.lines, seed=1)
        self.halves = [work / "access-w0.log", work / "access-w1.log"]
        self.half_kept = [generate(self.halves[0], self.lines // 2, seed=2),
                          generate(self.halves[1], self.lines - self.lines // 2, seed=3)]
        self.pool = work / "pool.log"
        generate(self.pool, POOL_LINES, seed=4)
        size = self.input.stat().st_size
        self.input_note = (f"{self.lines:,} lines, {size / MIB:.1f} MiB, {size / self.lines:.0f} bytes/line, "
                           f"{self.kept:,} kept after grep")

    def run_dir(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.work, prefix="run-"))

    def file_burst(self, run: Path) -> dict[str, float]:
        return self._file_burst(run, FILE_CONF, "file")

    def membuf_burst(self, run: Path) -> dict[str, float]:
        """The file burst with a memory buffer instead of out_file's default file buffer (one chunk
        file, its fsyncs and its unlink per emit): what the buffer's durability costs."""
        return self._file_burst(run, memory_buffer_conf(run), "membuf")

    def _file_burst(self, run: Path, conf: Path, key: str) -> dict[str, float]:
        kawa = Kawa(conf, run, file_env(run, self.input))
        try:
            counter = LineCounter(run / "out")
            wall = wait_for(lambda: counter.count() >= self.kept, kawa, self.timeout, "the file output")
            hwm = memory(kawa.pid)[1]
        except BaseException:
            kawa.kill()
            raise
        cpu = kawa.stop()
        if counter.count() != self.kept:
            raise RuntimeError(f"file output has {counter.count()} lines, expected {self.kept}")
        return {f"{key}.cpu": cpu, f"{key}.wall": wall, f"{key}.lines_per_cpu_s": self.lines / cpu,
                f"{key}.peak_rss": hwm}

    def bare_loop(self, run: Path) -> dict[str, float]:
        """bench/_bare_loop.py over the burst's input: how fast this machine runs the pipeline's work
        right now, with nothing of kawa (see its docstring)."""
        out = subprocess.run([sys.executable, str(BENCH / "_bare_loop.py"), str(self.input), str(run / "bare.out")],
                             capture_output=True, check=True, timeout=self.timeout).stdout
        figures = orjson.loads(out)
        if figures["written"] != self.kept:
            raise RuntimeError(f"the bare loop wrote {figures['written']} lines, expected {self.kept}")
        return {"bare.cpu": figures["cpu"]}

    def null_burst(self, run: Path) -> dict[str, float]:
        kawa = Kawa(null_conf(run), run, file_env(run, self.input))
        size = self.input.stat().st_size
        try:
            wall = wait_for(lambda: pos_offset(run / "nginx.pos") >= size, kawa, self.timeout, "the pos_file")
        except BaseException:
            kawa.kill()
            raise
        return {"null.cpu": kawa.stop(), "null.wall": wall}

    def cwl(self, run: Path) -> dict[str, float]:
        """Idle first (nothing to read: idle RSS and CPU %), then the whole input appended at once."""
        endpoint = subprocess.Popen([sys.executable, str(BENCH / "_fast_cwl.py"), "--track-duplicates"],
                                    stdout=subprocess.PIPE)
        kawa = None
        try:
            port = int(endpoint.stdout.readline().split()[1])     # type: ignore[union-attr]
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

            def stats() -> dict[str, Any]:
                conn.request("GET", "/_stats")
                return orjson.loads(conn.getresponse().read())  # type: ignore[no-any-return]

            target = run / "access.log"
            target.touch()
            kawa = Kawa(cwl_conf(run, target, port), run, FAKE_AWS)
            kawa.wait_ready(self.timeout)
            cpu_ready = cpu_seconds(kawa.pid)
            time.sleep(self.args.warmup)
            t0, r0 = time.monotonic(), run_seconds(kawa.pid)
            time.sleep(self.args.steady_seconds)
            t1, c1, r1 = time.monotonic(), cpu_seconds(kawa.pid), run_seconds(kawa.pid)
            idle_rss = kawa.sample_rss()
            cpu_before_burst = c1
            burst_start = time.monotonic()
            with self.input.open("rb") as src, target.open("ab") as dst:
                shutil.copyfileobj(src, dst, 8 * MIB)
            wait_for(lambda: stats()["accepted"] >= self.kept, kawa, self.timeout, "CloudWatch accepted events")
            wall = time.monotonic() - burst_start
            hwm = memory(kawa.pid)[1]
            total = kawa.stop()
            final = stats()
            # ResourceNotFound is the normal first answer (kawa writes first, creates on demand, as Fluentd).
            refused = {k: v for k, v in final["errors"].items() if k != "ResourceNotFoundException"}
            if final["accepted"] != self.kept or final["duplicates"] or refused:
                raise RuntimeError(f"endpoint saw accepted={final['accepted']} (expected {self.kept}), "
                                   f"duplicates={final['duplicates']}, refused calls {refused}")
            conn.close()
        except BaseException:
            if kawa is not None:
                kawa.kill()
            raise
        finally:
            endpoint.terminate()
            endpoint.wait()
        return {"cwl.cpu": total - (cpu_before_burst - cpu_ready), "cwl.wall": wall, "cwl.peak_rss": hwm,
                "cwl.idle_rss": idle_rss, "cwl.idle_cpu_pct": 100 * (r1 - r0) / (t1 - t0),
                "cwl.put_calls": final["put_calls"]}

    def steady(self, run: Path, key: str, rate: int, one_per_write: bool) -> dict[str, float]:
        target = run / "access.log"
        target.touch()
        kawa = Kawa(FILE_CONF, run, file_env(run, target))
        writer = None
        try:
            kawa.wait_ready(self.timeout)
            cmd = [sys.executable, str(BENCH / "_steady_writer.py"), "--pool", str(self.pool), "--path",
                   str(target), "--rate", str(rate)] + (["--one-per-write"] if one_per_write else [])
            writer = subprocess.Popen(cmd, stdout=subprocess.PIPE)
            time.sleep(self.args.warmup)
            t0, c0 = time.monotonic(), cpu_seconds(kawa.pid)
            time.sleep(self.args.steady_seconds)
            t1, c1 = time.monotonic(), cpu_seconds(kawa.pid)
            writer.terminate()
            written = orjson.loads(writer.communicate(timeout=30)[0])
            counter = LineCounter(run / "out")
            catch_up_start = time.monotonic()
            try:
                wait_for(lambda: counter.count() >= written["kept"], kawa, CATCH_UP_SECONDS, "kawa to catch up")
                catch_up = time.monotonic() - catch_up_start
            except RuntimeError:
                kawa.check()
                catch_up = float("inf")      # the CPU % stands, but kawa did not keep up with the rate
        except BaseException:
            if writer is not None and writer.poll() is None:
                writer.kill()
            kawa.kill()
            raise
        kawa.stop()
        return {f"{key}.cpu_pct": 100 * (c1 - c0) / (t1 - t0), f"{key}.catch_up": catch_up,
                f"{key}.rate": written["written"] / written["seconds"]}

    def workers(self, run: Path) -> dict[str, float]:
        kawa = Kawa(workers_conf(run, self.halves), run)
        try:
            counters = [LineCounter(run / "out0"), LineCounter(run / "out1")]
            wall = wait_for(lambda: all(c.count() >= k for c, k in zip(counters, self.half_kept)), kawa,
                            self.timeout, "both workers' file outputs")
            hwm = memory(kawa.pid)[1]
            sampled = cpu_seconds(kawa.pid)
        except BaseException:
            kawa.kill()
            raise
        cpu = kawa.stop()
        # wait4 counts the workers only if the supervisor reaped them; the /proc sample is the fallback.
        return {"workers.cpu": max(cpu, sampled), "workers.wall": wall, "workers.peak_rss": hwm}


SCENARIOS: dict[str, Callable[[Bench, Path], dict[str, float]]] = {
    "bare": Bench.bare_loop,
    "file": Bench.file_burst,
    "membuf": Bench.membuf_burst,
    "null": Bench.null_burst,
    "cwl": Bench.cwl,
    "steady": lambda b, run: {**b.steady(run, "steady1k", 1000, False)},
    "steady10k": lambda b, run: b.steady(run, "steady10k", 10_000, False),
    "onewrite": lambda b, run: b.steady(run, "onewrite", 1000, True),
    "workers": Bench.workers,
}
GROUPS = {"file": ("bare", "file", "membuf"), "null": ("null",), "cwl": ("cwl",), "steady": ("steady", "steady10k", "onewrite"),
          "workers": ("workers",)}


# -- report --------------------------------------------------------------------------------------------
def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    digits = 3 if unit == "%" and value < 0.1 else 2 if unit == "%" and value < 1 else \
        1 if unit in ("s", "MiB", "%") else 0
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}".strip() if unit != "%" else f"{text} %"


def verdict(value: float, target: float, unit: str) -> str:
    if value <= target:
        return "pass"
    return f"MISS by {_fmt(value - target, unit)} (x{value / target:.2f})"


def report(results: dict[str, list[float]], errors: dict[str, str], bench: Bench, runs: int) -> str:
    scale = bench.lines / FULL_LINES
    out = [f"kawa benchmark: {bench.input_note}; median of {runs} run(s); steady windows "
           f"{bench.args.steady_seconds:.0f} s after {bench.args.warmup:.0f} s warm-up; {os.cpu_count()} CPUs", ""]
    rows = [("figure", "Fluentd 1.18", "Fluent Bit 5.1", "kawa", "target", "verdict", "runs")]
    for key, label, fluentd, fluentbit, target, unit, scales in TABLE:
        if scales and scale != 1:
            target, label = target * scale, f"{label} [target scaled x{scale:g}]"
        values = results.get(key)
        median = statistics.median(values) if values else None
        rows.append((label, _fmt(fluentd, unit), _fmt(fluentbit, unit), _fmt(median, unit), _fmt(target, unit),
                     verdict(median, target, unit) if median is not None else "not measured",
                     ", ".join(_fmt(v, unit) for v in values or ())))
    out += _table(rows) + ["", "Other figures (no target):"]
    rows = [("figure", "kawa", "runs")]
    for key, label, unit in EXTRA:
        values = results.get(key)
        rows.append((label, _fmt(statistics.median(values), unit) if values else "not measured",
                     ", ".join(_fmt(v, unit) for v in values or ())))
    out += _table(rows)
    if results.get("bare.cpu") and results.get("file.cpu"):
        b_cpu, f_cpu = statistics.median(results["bare.cpu"]), statistics.median(results["file.cpu"])
        target = next(row[4] for row in TABLE if row[0] == "file.cpu") * scale
        out.append(f"file output vs the bare loop (same input, same run): CPU x{f_cpu / b_cpu:.2f}; the file "
                   f"CPU target ({_fmt(target, 's')}) is x{target / b_cpu:.2f} the bare loop")
    if results.get("workers.cpu") and results.get("file.cpu"):
        w_cpu, w_wall = statistics.median(results["workers.cpu"]), statistics.median(results["workers.wall"])
        f_cpu, f_wall = statistics.median(results["file.cpu"]), statistics.median(results["file.wall"])
        out.append(f"workers 2 vs 1: CPU x{w_cpu / f_cpu:.2f}, wall x{w_wall / f_wall:.2f}")
    if results.get("membuf.cpu") and results.get("file.cpu"):
        m_cpu, m_wall = statistics.median(results["membuf.cpu"]), statistics.median(results["membuf.wall"])
        f_cpu, f_wall = statistics.median(results["file.cpu"]), statistics.median(results["file.wall"])
        out.append(f"memory buffer vs out_file's default file buffer: CPU x{m_cpu / f_cpu:.2f}, wall x{m_wall / f_wall:.2f}")
    for key in ("steady1k", "steady10k", "onewrite"):
        if results.get(f"{key}.rate"):
            lags = results[f"{key}.catch_up"]
            behind = sum(1 for v in lags if v == float("inf"))
            out.append(f"{key}: writer rate {statistics.median(results[f'{key}.rate']):,.0f} lines/s, kawa caught "
                       f"up {statistics.median(lags):.2f} s after the writer stopped (median)" +
                       (f"; in {behind} run(s) it was still behind after {CATCH_UP_SECONDS:.0f} s" if behind else ""))
    for name, err in errors.items():
        out.append(f"NOT MEASURED ({name}): {err}")
    return "\n".join(out)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return lines


def precompile() -> None:
    """Write src/'s bytecode once, as installing the package does (pip compiles at install time; the
    container image runs from those files). kawa runs from src/ here: with PYTHONDONTWRITEBYTECODE set
    (as in many CI and dev shells) every kawa start would otherwise compile its ~270 KB of source again,
    about a third of its start-up instructions (callgrind), and count that in every figure."""
    compileall.compile_dir(str(REPO / "src"), quiet=1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="runs per figure (the median is reported)")
    p.add_argument("--quick", action="store_true", help="smoke run: 100k lines, 10 s steady windows")
    p.add_argument("--lines", type=int, help="lines in the burst (default 1,000,000; --quick 100,000)")
    p.add_argument("--steady-seconds", type=float, help="steady measuring window (default 60; --quick 10)")
    p.add_argument("--warmup", type=float, help="seconds before a steady window starts (default 10; --quick 3)")
    p.add_argument("--timeout", type=float, default=900, help="give up on one burst after this long")
    p.add_argument("--only", default=",".join(GROUPS), help="comma list of groups (" + ", ".join(GROUPS)
                   + ") or single scenarios (" + ", ".join(SCENARIOS) + ")")
    p.add_argument("--work", help="directory for inputs and outputs (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args()
    unknown = [g for g in args.only.split(",") if g.strip() not in GROUPS and g.strip() not in SCENARIOS]
    if unknown:
        p.error(f"--only: unknown group or scenario {', '.join(unknown)}")
    args.lines = args.lines or (QUICK_LINES if args.quick else FULL_LINES)
    args.steady_seconds = args.steady_seconds or (10.0 if args.quick else 60.0)
    args.warmup = args.warmup if args.warmup is not None else (3.0 if args.quick else 10.0)
    precompile()
    work = Path(tempfile.mkdtemp(prefix="kawa-bench-", dir=args.work))
    results: dict[str, list[float]] = {}
    errors: dict[str, str] = {}
    loads: list[float] = []
    # SIGTERM -> SystemExit, so the handlers below stop kawa and its helpers and remove the work dir.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    try:
        bench = Bench(args, work)
        print(f"inputs: {bench.input_note} (work dir {work})", file=sys.stderr, flush=True)
        names = [n for g in args.only.split(",") for n in GROUPS.get(g.strip(), (g.strip(),))]
        for name in names:
            for i in range(args.runs):
                run = bench.run_dir()
                started = time.monotonic()
                loads.append(os.getloadavg()[0])
                try:
                    figures = SCENARIOS[name](bench, run)
                except Exception as exc:    # one broken scenario must not hide the others' figures
                    errors[name] = f"{type(exc).__name__}: {exc}"
                    traceback.print_exc(file=sys.stderr)
                    break
                finally:
                    if not args.keep:
                        shutil.rmtree(run, ignore_errors=True)
                for key, value in figures.items():
                    results.setdefault(key, []).append(value)
                print(f"{name} run {i + 1}/{args.runs} ({time.monotonic() - started:.0f} s, load {loads[-1]:.1f}): " +
                      ", ".join(f"{k}={v:.3f}" for k, v in figures.items()), file=sys.stderr, flush=True)
        print(report(results, errors, bench, args.runs))
        if loads:
            print(f"1-min load average when runs started: {min(loads):.1f} to {max(loads):.1f} on "
                  f"{os.cpu_count()} CPUs (other processes on the machine slow the wall-time and steady figures)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
