"""Benchmark of the cloudwatch_logs output: events/s into the strict proxy + moto, the output's CPU
seconds per event, and peak/idle RSS of a process using our client vs botocore's full `logs` client.

    .venv/bin/python bench/bench_cloudwatch.py [--events 200000] [--rss]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from typing import Iterator

from kawa.testing.cwl_server import MotoServer, fake_aws_env, logs_client


async def run_output(endpoint: str, group: str, n: int, chunk_events: int) -> tuple[float, float, int]:
    """Feed n nginx-like records through the real output (buffer -> write); wall s, CPU s, calls."""
    from kawa.testing.drivers import OutputDriver

    d = OutputDriver("cloudwatch_logs", f"region us-east-1\nendpoint {endpoint}\nlog_group_name {group}\n"
                     "log_stream_name s\nauto_create_stream true\n<buffer>\nchunk_limit_records "
                     f"{chunk_events}\nflush_mode lazy\n</buffer>", log_level="info")
    out = d.instance
    base = time.time_ns() - 60 * 1_000_000_000
    records = [(base + i * 1000, {"remote": "10.0.0.1", "method": "GET", "path": f"/api/v1/items/{i}",
                                  "code": 200, "size": 512, "agent": "Mozilla/5.0 (X11; Linux x86_64)"})
               for i in range(n)]
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(0, n, 1000):
        await out.emit("bench", records[i:i + 1000])
    out.buffer.enqueue_all(force=True)
    while True:
        chunk = out.buffer.dequeue()
        if chunk is None:
            break
        await out.write(chunk)
        out.buffer.purge(chunk)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    await out.stop()
    return wall, cpu, out.counters["batches_sent"]


def rss_child(kind: str, n: int) -> None:
    """Child process: send n events in 1000-event batches with `kind` client; print idle/peak RSS."""
    endpoint = os.environ["KAWA_BENCH_ENDPOINT"]
    group = os.environ["KAWA_BENCH_GROUP"]
    now_ms = int(time.time() * 1000)

    def batch_at(i: int) -> list[tuple[int, str]]:
        return [(now_ms, f'{{"i":{j},"path":"/api/v1/items/{j}"}}') for j in range(i, min(i + 1000, n))]

    if kind == "kawa":
        from kawa.plugins.outputs.cloudwatch_logs.client import HttpPool, LogsClient, Signer, resolve_credentials
        from kawa.plugins.outputs.cloudwatch_logs.client import CredentialSettings

        creds = resolve_credentials(CredentialSettings(region="us-east-1"))
        client = LogsClient(HttpPool(endpoint), Signer(creds, "us-east-1"))
        send = lambda batch: client.put_log_events(group, "s", batch)  # noqa: E731
    else:
        boto = logs_client(endpoint)
        send = lambda batch: boto.put_log_events(  # noqa: E731
            logGroupName=group, logStreamName="s", logEvents=[{"timestamp": t, "message": m} for t, m in batch])
    send(batch_at(0))
    idle = _status_mib("VmRSS")          # client ready, one call made, nothing in flight
    cpu0 = time.process_time()
    for i in range(0, n, 1000):
        send(batch_at(i))
    cpu = time.process_time() - cpu0
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would report the parent's peak.
    print(f"{kind}: idle_rss_mib={idle:.1f} peak_rss_mib={_status_mib('VmHWM'):.1f} cpu_s={cpu:.2f} "
          f"us_per_event={cpu / n * 1e6:.2f} (1000-event batches, signing + JSON + HTTP)")


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def _proxy_process(upstream: str) -> Iterator[str]:
    """The strict proxy in its own process, so this process's CPU time is the output's alone."""
    code = ("import sys, time; from kawa.testing.cwl_server import StrictCloudWatchProxy as P; "
            "p = P(sys.argv[1]).start(); print(p.endpoint, flush=True); time.sleep(1e9)")
    proc = subprocess.Popen([sys.executable, "-c", code, upstream], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--chunk-events", type=int, default=20_000)
    ap.add_argument("--rss", action="store_true", help="also compare process RSS: our client vs botocore's")
    ap.add_argument("--rss-child", choices=("kawa", "botocore"))
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.events)
        return
    os.environ.update(fake_aws_env({}))
    with MotoServer() as moto, _proxy_process(moto.endpoint) as endpoint:
        group = f"/kawa/bench/{uuid.uuid4().hex[:8]}"
        wall, cpu, calls = asyncio.run(run_output(endpoint, group, args.events, args.chunk_events))
        stored = sum(len(p["events"]) for p in logs_client(endpoint).get_paginator("filter_log_events")
                     .paginate(logGroupName=group)) if args.events <= 200_000 else -1
        print(f"output: {args.events} events in {wall:.2f}s = {args.events / wall:,.0f} events/s (moto-bound); "
              f"output CPU {cpu:.2f}s = {cpu / args.events * 1e6:.2f} us/event (buffer emit + format + "
              f"batch + sign + HTTP); PutLogEvents calls {calls}; stored {stored}")
        if args.rss:
            env = {**os.environ, "KAWA_BENCH_ENDPOINT": endpoint, "KAWA_BENCH_GROUP": group}
            for kind in ("kawa", "botocore"):
                out = subprocess.run([sys.executable, __file__, "--rss-child", kind, "--events",
                                      str(min(args.events, 100_000))], env=env, capture_output=True, text=True)
                print(out.stdout.strip() or out.stderr[-2000:])


if __name__ == "__main__":
    main()
