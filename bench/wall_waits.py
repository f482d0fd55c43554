"""Where the wall time of a burst goes when kawa is not on a CPU: one run of the 1M-line file-output
burst under a /proc sampler.

    python bench/wall_waits.py [--lines 1000000] [--src DIR] [--conf FILE] [--interval 0.001]

Every `--interval` seconds the sampler reads the state of each kawa thread (/proc/PID/task/*/stat).
A sample where some thread is running (or runnable) counts as busy; in one where every thread sleeps,
the sampler also reads the system call each thread waits in (/proc/PID/task/TID/syscall). The report
is the share of samples per busy pattern and per waiting pattern, e.g.
`idle: main=unlink, t2=fsync, t3=futex` (the event loop blocked in unlink while a worker thread
fsyncs). That is how the file buffer's fsync per emit showed up as the gap between the CPU and the
wall figure. The sampler takes CPU of its own (on 2 cores it slows kawa a little): read shares, not
seconds. Linux x86_64 system call numbers.
"""

from __future__ import annotations

import argparse
import collections
import compileall
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from run import FILE_CONF, Kawa, LineCounter, file_env, generate

SYSCALLS = {0: "read", 1: "write", 3: "close", 7: "poll", 17: "pread", 18: "pwrite", 74: "fsync",
            75: "fdatasync", 82: "rename", 87: "unlink", 202: "futex", 232: "epoll_wait", 257: "openat",
            262: "newfstatat", 270: "pselect6", 281: "epoll_pwait"}


def threads(pid: int) -> list[tuple[int, str]]:
    """(tid, state letter) of each thread, the main thread first."""
    out = []
    try:
        tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        out.append((tid, stat[stat.rindex(")") + 2]))
    return out


def waiting_in(pid: int, tid: int) -> str:
    try:
        with open(f"/proc/{pid}/task/{tid}/syscall") as f:
            first = f.read().split()[0]
    except (OSError, IndexError):
        return "?"
    if not first.lstrip("-").isdigit():
        return first                    # "running": it woke between the two reads
    return SYSCALLS.get(int(first), f"syscall {first}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--src", type=Path, default=None, help="the src folder of the kawa to run (default: this tree)")
    p.add_argument("--conf", type=Path, default=FILE_CONF)
    p.add_argument("--interval", type=float, default=0.001)
    p.add_argument("--timeout", type=float, default=900)
    args = p.parse_args()
    if args.src is not None:
        compileall.compile_dir(str(args.src), quiet=1)
    work = Path(tempfile.mkdtemp(prefix="kawa-waits-"))
    try:
        input_path = work / "access.log"
        kept = generate(input_path, args.lines, seed=1)
        run = work / "run"
        run.mkdir()
        kawa = Kawa(args.conf, run, file_env(run, input_path), src=args.src)
        counter = LineCounter(run / "out")
        samples: collections.Counter[str] = collections.Counter()
        deadline = time.monotonic() + args.timeout
        try:
            n = 0
            while True:
                n += 1
                if n % 100 == 0:
                    kawa.check()
                    if counter.count() >= kept:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"timed out after {args.timeout:.0f} s")
                tids = threads(kawa.pid)
                names = ["main"] + [f"t{i}" for i in range(2, len(tids) + 1)]
                running = [name for name, (_tid, state) in zip(names, tids) if state == "R"]
                if running:
                    samples["busy: " + ", ".join(running) + " running"] += 1
                else:
                    samples["idle: " + ", ".join(f"{name}={waiting_in(kawa.pid, tid)}"
                                                 for name, (tid, _s) in zip(names, tids))] += 1
                time.sleep(args.interval)
            wall = time.monotonic() - kawa.started
        except BaseException:
            kawa.kill()
            raise
        cpu = kawa.stop()
        total = sum(samples.values())
        idle = sum(v for k, v in samples.items() if k.startswith("idle"))
        print(f"{args.lines:,} lines, {args.conf.name}: {cpu:.2f} CPU-s, {wall:.2f} s wall, {total:,} samples, "
              f"{100 * idle / total:.1f} % with no kawa thread on a CPU")
        for pattern, count in samples.most_common(15):
            print(f"{100 * count / total:6.1f} %  {pattern}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
