"""Benchmark of the tail input: lines/s and CPU seconds to read a generated 1M-line file with the
`none` parser into an emitter that only counts (python bench/bench_tail.py [lines]).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from kawa.testing.drivers import InputDriver


class CountingEmitter:
    def __init__(self) -> None:
        self.count = 0
        self.batches = 0

    async def emit(self, tag: str, events: list) -> None:  # type: ignore[type-arg]
        self.count += len(events)
        self.batches += 1

    def emit_error_event(self, *args: object) -> None:
        pass


def generate(path: Path, lines: int) -> None:
    line = b'203.0.113.7 - - [10/Jul/2019:11:34:56 +0000] "GET /index.html HTTP/1.1" 200 612 "-" "curl/7.64.0"\n'
    with open(path, "wb") as fh:
        for _ in range(lines // 10_000):
            fh.write(line * 10_000)
        fh.write(line * (lines % 10_000))


async def run(path: Path, pos: Path, lines: int) -> tuple[float, float, int]:
    d = InputDriver("tail", f"path {path}\ntag bench\npos_file {pos}\nread_from_head true\n"
                            "<parse>\n@type none\n</parse>", log_level="warn")
    counter = CountingEmitter()
    d.instance.ctx.emitter = counter
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await d.instance.start()
    while counter.count < lines:
        await asyncio.sleep(0.005)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    await d.instance.stop()
    return wall, cpu, counter.batches


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        path, pos = Path(tmp) / "big.log", Path(tmp) / "big.pos"
        generate(path, lines)
        size = os.path.getsize(path)
        wall, cpu, batches = asyncio.run(run(path, pos, lines))
    print(f"tail bench: {lines} lines ({size / 1e6:.1f} MB), none parser, counting emitter")
    print(f"  wall {wall:.2f} s  cpu {cpu:.2f} s  {lines / wall:,.0f} lines/s  {batches} batches")


if __name__ == "__main__":
    main()
