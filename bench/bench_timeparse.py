"""Benchmark (not a test): parses/s for the nginx time format and formats/s for the inject format.
Timestamps repeat realistically: ~200 lines per second of log time, a few offsets, 1M values."""

from __future__ import annotations

import random
import time

from kawa.timeformat import TimeFormatter
from kawa.timeparse import NS, TimeParser

N = 1_000_000
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def gen_nginx(n: int) -> list[str]:
    rnd = random.Random(42)
    out: list[str] = []
    t = 1562746809
    offsets = ["+0000"] * 8 + ["+0200", "-0700"]
    while len(out) < n:
        tm = time.gmtime(t)
        off = rnd.choice(offsets)
        s = f"{tm.tm_mday:02d}/{MONTHS[tm.tm_mon - 1]}/{tm.tm_year}:{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {off}"
        out.extend([s] * rnd.randint(50, 350))  # a busy server logs hundreds of lines per second
        t += 1
    return out[:n]


def main() -> None:
    values = gen_nginx(N)
    p = TimeParser("%d/%b/%Y:%H:%M:%S %z")
    parse = p.parse
    t0 = time.perf_counter()
    for v in values:
        parse(v)
    dt = time.perf_counter() - t0
    print(f"parse  %d/%b/%Y:%H:%M:%S %z        : {N / dt:12,.0f} parses/s  ({dt / N * 1e9:.0f} ns each, {len(set(values))} distinct)")

    uniq = list(dict.fromkeys(values))[:50_000]
    p2 = TimeParser("%d/%b/%Y:%H:%M:%S %z")
    t0 = time.perf_counter()
    for v in uniq:
        p2.parse(v)
    dt = time.perf_counter() - t0
    print(f"parse  (all distinct, cache misses)  : {len(uniq) / dt:12,.0f} parses/s  ({dt / len(uniq) * 1e9:.0f} ns each)")

    iso = TimeParser("%Y-%m-%dT%H:%M:%S.%N%z")
    rnd = random.Random(1)
    base = 1562746809
    isovals = [time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + i // 300)) + f".{rnd.randrange(NS):09d}+0000"
               for i in range(200_000)]
    t0 = time.perf_counter()
    for v in isovals:
        iso.parse(v)
    dt = time.perf_counter() - t0
    print(f"parse  %Y-%m-%dT%H:%M:%S.%N%z (ns)  : {len(isovals) / dt:12,.0f} parses/s  ({dt / len(isovals) * 1e9:.0f} ns each)")

    ns_values = [parse(v) + rnd.randrange(NS) for v in values]
    f = TimeFormatter("%Y-%m-%dT%H:%M:%S.%N%z")
    fmt = f.format
    t0 = time.perf_counter()
    for ns in ns_values:
        fmt(ns)
    dt = time.perf_counter() - t0
    print(f"format %Y-%m-%dT%H:%M:%S.%N%z        : {N / dt:12,.0f} formats/s ({dt / N * 1e9:.0f} ns each)")


if __name__ == "__main__":
    main()
