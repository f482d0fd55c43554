"""Instructions per line on the reference pipeline, counted by valgrind's callgrind.

    python bench/instructions.py [--output file|cloudwatch] [--lines 30000] [--src DIR] [--top 25]

On a shared machine, CPU seconds of the same build move by 10-30 % from run to run with the
neighbours' load; an instruction count moves by about 0.1 % (run it alone: a slower run spends
more idle timer turns between batches, about 1 % more next to a busy benchmark). That makes this the tool to decide
whether a change to the hot path helps: run it on the old tree (`--src` of another checkout) and
on the new one. It does not replace bench/run.py: instructions are not time (cache misses, and
SHA-NI or AVX paths that valgrind does not offer, are not weighed the same), and valgrind runs the
process about 50x slower, so the input is small.

Two runs of the real `kawa` process under callgrind: one on a 1-line input (start-up and shutdown)
and one on `--lines` lines; the difference divided by the extra lines is the cost of a line.
`--output cloudwatch` ships to bench/_fast_cwl.py (the bench's endpoint, not counted) instead of
writing a file. Under valgrind the request body's SHA-256 runs in software (~12,000 instructions a
line) where this CPU has SHA-NI: compare CloudWatch counts with each other, not with time.
Needs valgrind (Debian: apt-get install valgrind).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

import orjson

from run import BENCH, FAKE_AWS, FILE_CONF, REPO, LineCounter, cwl_conf, file_env, generate, precompile


def file_target(run: Path, input_path: Path, kept: int, _stack: ExitStack) -> tuple[Path, dict[str, str], Callable[[], bool]]:
    counter = LineCounter(run / "out")
    return FILE_CONF, file_env(run, input_path), lambda: counter.count() >= kept


def cloudwatch_target(run: Path, input_path: Path, kept: int,
                      stack: ExitStack) -> tuple[Path, dict[str, str], Callable[[], bool]]:
    endpoint = subprocess.Popen([sys.executable, str(BENCH / "_fast_cwl.py")], stdout=subprocess.PIPE)
    stack.callback(endpoint.wait)
    stack.callback(endpoint.terminate)
    port = int(endpoint.stdout.readline().split()[1])     # type: ignore[union-attr]
    conf = cwl_conf(run, input_path, port)
    pos_line = f"  pos_file {run / 'nginx.pos'}"
    conf.write_text(conf.read_text().replace(pos_line, pos_line + "\n  read_from_head true", 1))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    stack.callback(conn.close)

    def accepted() -> bool:
        conn.request("GET", "/_stats")
        return int(orjson.loads(conn.getresponse().read())["accepted"]) >= kept
    return conf, dict(FAKE_AWS), accepted


TARGETS = {"file": file_target, "cloudwatch": cloudwatch_target}


def instructions(src: Path, input_path: Path, kept: int, run: Path, timeout: float,
                 output: str = "file") -> tuple[int, Path]:
    """Instructions of one kawa run that delivers `kept` lines to `output`, and its callgrind file."""
    run.mkdir(parents=True)
    out_file = run / "callgrind.out"
    with ExitStack() as stack, (run / "kawa.log").open("wb") as log:
        conf, target_env, delivered = TARGETS[output](run, input_path, kept, stack)
        env = {**os.environ, **target_env, "PYTHONPATH": str(src), "TZ": "UTC"}
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
               sys.executable, "-m", "kawa", "-q", "-c", str(conf)]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=run)
        deadline = time.monotonic() + timeout
        while not delivered():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"kawa under valgrind stopped or timed out; see {run / 'kawa.log'}")
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    summary = re.search(r"^summary: (\d+)$", out_file.read_text(errors="replace"), re.M)
    if summary is None:
        raise RuntimeError(f"no summary line in {out_file}")
    return int(summary.group(1)), out_file


def self_costs(out_file: Path) -> dict[str, int]:
    """callgrind_annotate's self cost per function, keyed by a short name ("sre_lib.h:sre_ucs1_match")."""
    text = subprocess.run(["callgrind_annotate", "--threshold=100", str(out_file)],
                          capture_output=True, text=True).stdout
    costs: dict[str, int] = {}
    # "   94,124,468 ( 5.92%)  /build/.../Modules/_sre/sre_lib.h:sre_ucs1_match [libpython3.11.so]"
    for m in re.finditer(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)$", text, re.M):
        if "PROGRAM TOTALS" in m.group(2):
            continue
        name = re.sub(r"\S*/", "", re.sub(r" \[[^\]]*\]$", "", m.group(2)))[:100]
        costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def top_per_line(one_file: Path, many_file: Path, extra_lines: int, count: int) -> str:
    """The `count` functions that cost the most per input line: the long run's self cost less the
    1-line run's (start-up and shutdown), divided by the extra lines."""
    one, many = self_costs(one_file), self_costs(many_file)
    rows = sorted(((cost - one.get(name, 0)) / extra_lines, name) for name, cost in many.items())
    rows.reverse()
    total = sum(cost for cost, _ in rows if cost > 0)
    return "\n".join(f"{cost:9,.0f} ({100 * cost / total:5.2f}%)  {name}" for cost, name in rows[:count])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", choices=sorted(TARGETS), default="file", help="where the pipeline delivers")
    p.add_argument("--lines", type=int, default=30_000, help="lines in the measured input")
    p.add_argument("--src", default=str(REPO / "src"), help="the source tree to run (PYTHONPATH)")
    p.add_argument("--top", type=int, default=0, help="also print the N functions that cost the most per line")
    p.add_argument("--timeout", type=float, default=900)
    args = p.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 1
    src = Path(args.src).resolve()
    precompile()
    if src != (REPO / "src").resolve():
        import compileall
        compileall.compile_dir(str(src), quiet=1)
    work = Path(tempfile.mkdtemp(prefix="kawa-instr-"))
    try:
        one, many = work / "one.log", work / "many.log"
        one_kept = generate(one, 1, seed=1)
        many_kept = generate(many, args.lines, seed=1)
        if one_kept != 1:       # the first generated line must not be a /healthcheck (dropped)
            raise RuntimeError("the 1-line input has no line that passes the filter")
        base, one_file = instructions(src, one, one_kept, work / "one", args.timeout, args.output)
        total, out_file = instructions(src, many, many_kept, work / "many", args.timeout, args.output)
        per_line = (total - base) / (args.lines - 1)
        print(f"source: {src}; output: {args.output}")
        print(f"start-up and shutdown (1-line input): {base / 1e6:,.1f} M instructions")
        print(f"{args.lines:,} lines ({many_kept:,} written): {total / 1e6:,.1f} M instructions")
        print(f"per input line: {per_line:,.0f} instructions")
        if args.top:
            print("\ncostliest functions per input line (self cost: the long run's less the 1-line run's):")
            print(top_per_line(one_file, out_file, args.lines - 1, args.top))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
