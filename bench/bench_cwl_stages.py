"""Stage micro-benchmark of the cloudwatch_logs output's CPU per event: format_events (emit), _plan_chunk
(planning thread), and one call's sender work (journal digests, request body, SigV4), without I/O.

    .venv/bin/python bench/bench_cwl_stages.py [--events 100000] [--input access.log] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import tempfile
import time
from typing import Any, Callable

# The nginx regexp of examples/reference-cloudwatch.conf, in Python syntax.
NGINX = re.compile(r'^(?P<remote>[^ ]*) (?P<host>[^ ]*) (?P<user>[^ ]*) \[(?P<time>[^\]]*)\] "(?P<method>\S+)'
                   r'(?: +(?P<path>[^ ]*) +\S*)?" (?P<code>[^ ]*) (?P<size>[^ ]*)(?: "(?P<referer>[^\"]*)" '
                   r'"(?P<agent>[^\"]*)" "(?P<forwarder>[^\"]*)")?')
SAMPLE = ('10.15.11.7 - - [27/Nov/2026:19:42:42 +0000] "GET /api/v1/users/{i} HTTP/1.1" 200 20803 '
          '"https://www.google.com/search?q=example" "Googlebot/2.1 (+http://www.google.com/bot.html)" "-"')


def records(n: int, path: str | None) -> list[dict[str, Any]]:
    lines: list[str] = []
    if path and os.path.exists(path):
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                lines.append(line.rstrip("\n"))
                if len(lines) >= n:
                    break
    while len(lines) < n:
        lines.append(SAMPLE.format(i=len(lines)))
    out = []
    for line in lines:
        m = NGINX.match(line)
        if m is None:
            continue
        r = {k: v for k, v in m.groupdict().items() if k != "time" and v is not None}
        out.append(r)
    return out


def best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--input", default="/tmp/prof/in.log")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1000, help="events per emit (tail's batch)")
    args = ap.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIDBENCHFAKE")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "x")
    from kawa.testing.drivers import OutputDriver

    recs = records(args.events, args.input)
    n = len(recs)
    base = time.time_ns()
    events = [(base + i * 1000, r) for i, r in enumerate(recs)]
    d = OutputDriver("cloudwatch_logs", "region us-east-1\nendpoint http://127.0.0.1:9\nlog_group_name g\n"
                     "log_stream_name s\n<buffer>\nchunk_limit_size 8m\n</buffer>", log_level="info")
    out = d.instance
    step = args.batch

    def fmt() -> list[bytes]:
        return [out.format_events("nginx.access", events[i:i + step]) for i in range(0, n, step)]

    t = best(fmt, args.repeat)
    print(f"format_events     {t / n * 1e6:7.3f} us/event  ({n} events, batches of {step})")

    async def fill() -> list[Any]:
        for i in range(0, n, step):
            await out.emit("nginx.access", events[i:i + step])
        out.buffer.enqueue_all(force=True)
        chunks = []
        while (c := out.buffer.dequeue()) is not None:
            chunks.append(c)
        return chunks

    chunks = asyncio.run(fill())
    plans_all: list[Any] = []

    def plan() -> None:
        plans_all.clear()
        for c in chunks:
            plans_all.extend(out._plan_chunk(c)[0])

    t = best(plan, args.repeat)
    print(f"_plan_chunk       {t / n * 1e6:7.3f} us/event  ({len(chunks)} chunks)")

    calls = [(p, s, e) for p in plans_all for s, e in p.batches]
    from kawa.plugins.outputs.cloudwatch_logs import journal, verify
    from kawa.plugins.outputs.cloudwatch_logs.client import LogsClient

    def digests() -> None:
        for p, s, e in calls:
            journal._pack_digests(p.pieces[s:e])

    t = best(digests, args.repeat)
    print(f"journal digests   {t / n * 1e6:7.3f} us/event  ({len(calls)} calls)")

    with tempfile.TemporaryDirectory() as tmp:
        j = journal.SentJournal(os.path.join(tmp, "j"), fsync=False)
        j.open()

        def sending() -> None:
            for p, s, e in calls:
                j.forget([j.sending(p.group, p.stream, p.pieces[s:e])])

        t = best(sending, args.repeat)
        print(f"journal.sending   {t / n * 1e6:7.3f} us/event  (no fsync)")
        j.close()

    bodies: list[bytes] = []

    class NoSend:
        def call(self, action: str, body: bytes) -> dict[str, Any]:
            bodies.append(body)
            return {}

    client = LogsClient(None, None)
    client.call = NoSend().call  # type: ignore[method-assign]

    def body() -> None:
        bodies.clear()
        for p, s, e in calls:
            client.put_log_events(p.group, p.stream, p.pieces[s:e])

    t = best(body, args.repeat)
    print(f"request body      {t / n * 1e6:7.3f} us/event  ({sum(map(len, bodies)) / n:.0f} bytes/event)")

    def inflight() -> None:
        for p, s, e in calls:
            verify.inflight_record(p.pieces, s, e, 0.0)
            p.pieces[s:e]

    t = best(inflight, args.repeat)
    print(f"inflight+slices   {t / n * 1e6:7.3f} us/event")

    try:
        from kawa.plugins.outputs.cloudwatch_logs.crt_client import CrtCredentials, CrtSigner
    except ImportError:
        return
    signer = CrtSigner(CrtCredentials.static("AKIDBENCHFAKE", "x"), "us-east-1", "logs")
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Logs_20140328.PutLogEvents",
               "Host": "127.0.0.1:9"}

    def sign() -> None:
        for b in bodies:
            signer.sign("http://127.0.0.1:9/", headers, b)

    t = best(sign, args.repeat)
    print(f"SigV4 (awscrt)    {t / n * 1e6:7.3f} us/event")


if __name__ == "__main__":
    main()
