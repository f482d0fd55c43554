"""The machine's yardstick for bench/run.py: the reference pipeline's work as a plain Python loop, no kawa.

    python bench/_bare_loop.py INPUT OUTPUT

Reads INPUT in 1 MiB blocks, splits lines, matches the seed's regexp (as written, `re`), builds each
record with groupdict, parses the time through a per-string cache, drops /healthcheck, writes each
record as JSON (orjson) with the injected time and tag, one write per block. Nothing is fsync'd, no
position is kept, nothing is retried. Prints `{"lines": n, "written": n, "cpu": seconds}`.

Why: on this shared machine the same kawa tree takes 8 CPU-s for the 1M-line file burst one day and 11
another. This loop, run in the same bench run, shows how fast the machine is at that moment, and
kawa's figure divided by it shows what the engine adds (or saves, with its faster regexp path) on
top of the bare work. It imports nothing from kawa, so changes to kawa cannot move it.
"""

from __future__ import annotations

import re
import resource
import sys
from datetime import datetime

import orjson

SEED = re.compile(r'^(?P<remote>[^ ]*) (?P<host>[^ ]*) (?P<user>[^ ]*) \[(?P<time>[^\]]*)\] "(?P<method>\S+)'
                  r'(?: +(?P<path>[^ ]*) +\S*)?" (?P<code>[^ ]*) (?P<size>[^ ]*)(?: "(?P<referer>[^\"]*)" '
                  r'"(?P<agent>[^\"]*)" "(?P<forwarder>[^\"]*)")?')
BLOCK = 1 << 20


def main(source: str, target: str) -> None:
    match = SEED.match
    times: dict[str, str] = {}
    lines = written = 0
    rest = b""
    with open(source, "rb") as f, open(target, "wb") as out:
        while block := f.read(BLOCK):
            block = rest + block
            cut = block.rfind(b"\n") + 1
            rest = block[cut:]
            texts = block[:cut].decode("utf-8", "surrogateescape").split("\n")
            texts.pop()
            lines += len(texts)
            parts = []
            for text in texts:
                m = match(text)
                if m is None:
                    continue
                record = {k: v for k, v in m.groupdict().items() if v is not None}
                stamp = record.pop("time")
                iso = times.get(stamp)
                if iso is None:
                    iso = times[stamp] = datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").strftime(
                        "%Y-%m-%dT%H:%M:%S.000000000%z")
                if "/healthcheck" in record.get("path", ""):
                    continue
                record["time"] = iso
                record["tag"] = "nginx.access"
                parts.append(orjson.dumps(record))
            if parts:
                out.write(b"\n".join(parts) + b"\n")
                written += len(parts)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(orjson.dumps({"lines": lines, "written": written, "cpu": usage.ru_utime + usage.ru_stime}).decode())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
