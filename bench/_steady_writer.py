"""Appends log lines to a file at a fixed rate for bench/run.py's steady-state figures: a burst every 10 ms,
or one line per write() call spread evenly (nginx without `buffer=`). Runs in its own process.

    python bench/_steady_writer.py --pool lines.txt --path access.log --rate 1000 [--one-per-write] [--seconds S]

Stops after --seconds or on SIGTERM, then prints {"written": n, "kept": k} (k = lines that are not
/healthcheck, i.e. what the reference pipeline should deliver) as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

BURST_INTERVAL = 0.010          # seconds between bursts in the buffered mode
HEALTHCHECK_MARK = b'"GET /healthcheck '


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pool", required=True, help="file of lines to cycle through (one per line)")
    p.add_argument("--path", required=True, help="file to append to")
    p.add_argument("--rate", type=float, required=True, help="lines per second")
    p.add_argument("--one-per-write", action="store_true", help="one write() per line, evenly spaced")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: until SIGTERM)")
    args = p.parse_args()

    with open(args.pool, "rb") as f:
        pool = [line if line.endswith(b"\n") else line + b"\n" for line in f if line.strip()]
    keep = [HEALTHCHECK_MARK not in line for line in pool]
    stop = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    fd = os.open(args.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    written = kept = 0
    index = 0
    start = time.monotonic()
    end = start + args.seconds if args.seconds > 0 else float("inf")
    # Lines are due on an absolute schedule (line n at start + n/rate) so sleep overshoot never drifts the rate.
    per_tick = 1 if args.one_per_write else max(1, round(args.rate * BURST_INTERVAL))
    interval = per_tick / args.rate
    tick = 0
    try:
        while not stop:
            due = start + tick * interval
            now = time.monotonic()
            if due >= end:
                break
            if due > now:
                time.sleep(due - now)
            batch = []
            for _ in range(per_tick):
                batch.append(pool[index])
                kept += keep[index]
                index = (index + 1) % len(pool)
            if args.one_per_write:
                os.write(fd, batch[0])
            else:
                os.write(fd, b"".join(batch))
            written += per_tick
            tick += 1
    finally:
        os.close(fd)
    sys.stdout.write(json.dumps({"written": written, "kept": kept,
                                 "seconds": round(time.monotonic() - start, 3)}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
