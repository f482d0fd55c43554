"""Records per second through BufferedOutput with memory and file buffers (emit + flush to a null write).

Run: .venv/bin/python bench/bench_buffer.py [records]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from typing import Any

from kawa.buffer.output import BufferedOutput
from kawa.engine.registry import register
from kawa.testing.drivers import OutputDriver


@register("output", "bench_null_buffered")
class NullOutput(BufferedOutput):
    async def write(self, chunk: Any) -> None:
        for _ in chunk.events():
            pass


@register("output", "bench_null_formatted")
class NullFormatted(NullOutput):
    def format_events(self, tag: str, events: list) -> bytes:
        return b"".join(b"%d\t%s\n" % (t, r["message"].encode()) for t, r in events)

    async def write(self, chunk: Any) -> None:
        chunk.read()


def run(type_name: str, buffer_conf: str, records: int, batch: int = 500) -> float:
    d = OutputDriver(type_name, f"<buffer>\n{buffer_conf}\nflush_interval 1h\n</buffer>")
    line = '10.0.0.1 - - [10/Jul/2019:08:22:26 +0000] "GET /api/v1/orders HTTP/1.1" 200 32468'
    events = [(1562746946_000000000 + i, {"message": line, "code": "200", "size": "32468"}) for i in range(batch)]

    async def go() -> float:
        async with d.run():
            start = time.perf_counter()
            for _ in range(records // batch):
                await d.feed_batch("bench", events)
            await d.flush()
            return time.perf_counter() - start
    return records / asyncio.run(go())


def main() -> None:
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("memory, events", "bench_null_buffered", "@type memory"),
                 ("file, events", "bench_null_buffered", f"@type file\npath {tmp}/a"),
                 ("memory, formatted", "bench_null_formatted", "@type memory"),
                 ("file, formatted", "bench_null_formatted", f"@type file\npath {tmp}/b")]
        for label, type_name, conf in cases:
            print(f"{label:20s} {run(type_name, conf, records):>12,.0f} records/s  ({records:,} records, batches of 500)")


if __name__ == "__main__":
    main()
