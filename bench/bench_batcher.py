"""Bench for the CloudWatch Logs batcher: events/s for 1M 200-byte messages.
Run: .venv/bin/python bench/bench_batcher.py [count]
"""

from __future__ import annotations

import sys
import time

from kawa.plugins.outputs.cloudwatch_logs.batcher import build_batches, split_by_window


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    now_ms = int(time.time() * 1000)
    base = now_ms - 3_600_000
    msg = "x" * 190
    # Mostly ordered with small jitter, like a real tail: every 7th event arrives 5 ms late.
    events = [(base + i // 10 - (5 if i % 7 == 0 else 0), f"{msg}{i:010d}") for i in range(count)]
    mixed = [(ts, m if i % 50 else m[:180] + "é日本語🙂") for i, (ts, m) in enumerate(events)]

    for label, data in (("ascii", events), ("2% non-ascii", mixed)):
        t0 = time.perf_counter()
        res = build_batches(data)
        dt = time.perf_counter() - t0
        print(f"build_batches   {label:13s} {count:>9,d} events  {len(res.batches):>4d} batches  "
              f"{dt:6.3f} s  {count / dt:>12,.0f} events/s")
    t0 = time.perf_counter()
    split = split_by_window(events, now_ms)
    dt = time.perf_counter() - t0
    print(f"split_by_window {'ascii':13s} {count:>9,d} events  {len(split.ok):>9,d} ok  "
          f"{dt:6.3f} s  {count / dt:>12,.0f} events/s")


if __name__ == "__main__":
    main()
