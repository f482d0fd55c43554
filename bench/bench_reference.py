"""Benchmark: the reference pipeline (tail → seed regex → grep exclude /healthcheck → output) over a
generated nginx log, run as the real `kawa` process. Prints lines/s, CPU seconds and peak RSS.

    python bench/bench_reference.py [--lines 1000000] [--runs 3] [--output file|null]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from kawa.testing import nginx_log  # noqa: E402

NULL_CONF = """
<source>
  @type tail
  path {input}
  format /^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \\[(?<time>[^\\]]*)\\] "(?<method>\\S+)(?: +(?<path>[^ ]*) +\\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\\"]*)" "(?<agent>[^\\"]*)" "(?<forwarder>[^\\"]*)")?/
  time_format %d/%b/%Y:%H:%M:%S %z
  tag nginx.access
  pos_file {pos}
  read_from_head true
</source>
<filter nginx.access>
  @type grep
  exclude1 path /healthcheck
</filter>
<match nginx.access>
  @type null
</match>
"""


def count_output(out_dir: Path) -> int:
    total = 0
    for p in out_dir.glob("access.*.log"):
        with p.open("rb") as f:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    return total


def one_run(work: Path, input_path: Path, expected: int, output: str) -> dict[str, float]:
    run = Path(tempfile.mkdtemp(dir=work))
    env = {**os.environ, "KAWA_INPUT": str(input_path), "KAWA_POS": str(run / "nginx.pos"),
           "KAWA_OUTPUT": str(run / "out" / "access"), "TZ": "UTC"}
    if output == "null":
        conf = run / "null.conf"
        conf.write_text(NULL_CONF.format(input=input_path, pos=run / "nginx.pos"))
    else:
        conf = REPO / "examples" / "reference-file.conf"
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "kawa", "-q", "-c", str(conf)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    pos_file = run / "nginx.pos"
    size = input_path.stat().st_size
    while True:
        time.sleep(0.05)
        if output == "file":
            if (run / "out").exists() and count_output(run / "out") >= expected:
                break
        else:   # null output: done when the pos_file reached the end of the input
            try:
                text = pos_file.read_text()
                if text and int(text.split("\t")[1], 16) >= size:
                    break
            except (OSError, IndexError, ValueError):
                pass
        if proc.poll() is not None:
            raise SystemExit(f"kawa exited early with {proc.returncode}")
    wall = time.monotonic() - start
    proc.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(proc.pid, 0)
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--output", choices=("file", "null"), default="file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        input_path = work / "access.log"
        expected = nginx_log.write(str(input_path), args.lines, seed=1)
        mib = input_path.stat().st_size / 2**20
        print(f"input: {args.lines:,} lines, {mib:.0f} MiB, {expected:,} expected after grep; output={args.output}")
        results = [one_run(work, input_path, expected, args.output) for _ in range(args.runs)]
        for i, r in enumerate(results, 1):
            print(f"run {i}: wall {r['wall']:.2f} s, cpu {r['cpu']:.2f} s, peak RSS {r['rss_mib']:.1f} MiB, "
                  f"{args.lines / r['wall']:,.0f} lines/s")
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print(f"median: wall {med['wall']:.2f} s, cpu {med['cpu']:.2f} s (user+sys), peak RSS {med['rss_mib']:.1f} MiB, "
              f"{args.lines / med['wall']:,.0f} lines/s, {args.lines / med['cpu']:,.0f} lines per CPU-second")


if __name__ == "__main__":
    main()
