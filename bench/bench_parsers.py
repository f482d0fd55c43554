"""Lines per second of each parser plugin on generated input of its format (one core, batches of 1000, CPU time, best of 3).

    .venv/bin/python bench/bench_parsers.py [--lines N] [--only nginx,json]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import msgpack

from kawa.testing.drivers import ParserDriver

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/75.0"


def _ts(i: int) -> tuple[int, int]:
    return (i // 600) % 60, (i // 10) % 60    # ten lines per second, like a busy server


GENERATORS: dict[str, tuple[str, str, Callable[[int], str]]] = {
    "nginx": ("nginx", "", lambda i: '93.184.216.%d - - [10/Jul/2019:08:%02d:%02d +0000] "GET /api/v1/items/%d HTTP/1.1" '
              '200 %d "https://example.com/" "%s"' % (i % 255, *_ts(i), i, i % 9999, UA)),
    "apache2": ("apache2", "", lambda i: '93.184.216.%d - - [10/Jul/2019:08:%02d:%02d +0000] "GET /x/%d HTTP/1.1" '
                '200 %d "-" "%s"' % (i % 255, *_ts(i), i, i % 9999, UA)),
    # the reference pipeline's <source> (../shared/seed/fluent.conf)
    "seed": ("regexp", 'expression /^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \\[(?<time>[^\\]]*)\\] '
             '"(?<method>\\S+)(?: +(?<path>[^ ]*) +\\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\\"]*)" '
             '"(?<agent>[^\\"]*)" "(?<forwarder>[^\\"]*)")?/\ntime_format %d/%b/%Y:%H:%M:%S %z',
             lambda i: '93.184.216.%d - - [10/Jul/2019:08:%02d:%02d +0000] "GET /api/v1/items/%d HTTP/1.1" '
             '200 %d "https://example.com/" "%s" "-"' % (i % 255, *_ts(i), i, i % 9999, UA)),
    "regexp": ("regexp", "expression /^(?<time>\\S+ \\S+) (?<level>\\w+) (?<msg>.*)$/\ntime_format %Y-%m-%d %H:%M:%S",
               lambda i: "2019-07-10 08:%02d:%02d INFO worker-%d processed job %d in 12ms" % (*_ts(i), i % 8, i)),
    "json": ("json", "", lambda i: '{"time":%d,"level":"info","msg":"request done","status":200,"path":"/x/%d",'
             '"duration":0.012,"user":{"id":%d}}' % (1562746809 + i // 10, i, i)),
    "ltsv": ("ltsv", 'time_format "[%d/%b/%Y:%H:%M:%S %z]"', lambda i: "time:[10/Jul/2019:08:%02d:%02d +0000]\t"
             "host:192.0.2.%d\treq:GET /x/%d HTTP/1.1\tstatus:200\tsize:%d\tua:%s" % (*_ts(i), i % 255, i, i, UA)),
    "csv": ("csv", 'keys time,host,method,path,code\ntime_key time\ntime_format "%Y-%m-%d %H:%M:%S"',
            lambda i: '2019-07-10 08:%02d:%02d,192.0.2.%d,GET,"/x/%d?a=1,b=2",200' % (*_ts(i), i % 255, i)),
    "tsv": ("tsv", "keys host,method,path,code", lambda i: "192.0.2.%d\tGET\t/x/%d\t200" % (i % 255, i)),
    "syslog": ("syslog", "with_priority true", lambda i: "<34>Jul 10 08:%02d:%02d web01 sshd[%d]: Accepted publickey "
               "for alice from 192.0.2.%d port 22 ssh2" % (*_ts(i), i, i % 255)),
    "syslog5424": ("syslog", "message_format rfc5424\nwith_priority true",
                   lambda i: '<165>1 2019-07-10T08:%02d:%02d.003Z host app %d ID47 [ex@1 a="1"] message %d' %
                   (*_ts(i), i, i)),
    "none": ("none", "", lambda i: "2019-07-10 08:00:00 worker-%d processed job %d" % (i % 8, i)),
    "cri": ("cri", "", lambda i: "2023-05-01T10:%02d:%02d.123456789Z stdout F request %d done" % (*_ts(i), i)),
    "docker": ("docker", "", lambda i: '{"log":"request %d done\\n","stream":"stdout","time":'
               '"2019-07-10T08:%02d:%02d.000000001Z"}' % (i, *_ts(i))),
}


# CPU time of this process, best of REPEAT: other processes on the machine barely change it.
REPEAT = 3


def bench(name: str, n: int, batch: int = 1000) -> float:
    type_name, conf, gen = GENERATORS[name]
    parser = ParserDriver(type_name, conf).instance
    lines = [gen(i) for i in range(n)]
    best = float("inf")
    for _round in range(REPEAT):
        start = time.process_time()
        for k in range(0, n, batch):
            events, failures = parser.parse_batch(lines[k:k + batch])
            assert not failures, failures[:1]
        best = min(best, time.process_time() - start)
    return n / best


def bench_msgpack(n: int) -> float:
    parser = ParserDriver("msgpack", "time_key time").instance
    packer = msgpack.Packer()
    chunks = [b"".join(packer.pack({"time": 1562746809 + i, "host": "web1", "status": 200, "bytes": i})
                       for i in range(k, min(n, k + 1000))) for k in range(0, n, 1000)]
    start = time.perf_counter()
    for chunk in chunks:
        parser.parse_bytes(chunk)
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    names = [*GENERATORS, "msgpack"]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    for name in names:
        rate = bench_msgpack(args.lines) if name == "msgpack" else bench(name, args.lines)
        print(f"{name:12s} {rate:12,.0f} lines/s")


if __name__ == "__main__":
    main()
