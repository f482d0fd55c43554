"""CPU per line of the reference pipeline's per-line stages (decode + split, the seed's regexp parse,
grep, the file output's inject + JSON format) against the number of lines handled together.

Each stage is the real plugin. Measured in one process on the same lines, CPU time (thread_time),
best of --repeat. It shows what a batch's working set costs: a batch's records (a dict and ~10
strings each, ~1.4 KB a line) stop fitting the core's L2 cache somewhere between 500 and 1,000
lines, and every stage gets slower per line. in_tail's read_lines_limit (1,000, Fluentd's default)
sets the batch size kawa emits; with a file buffer, each emit also costs a chunk's files and fsyncs.

On a shared machine the cache effect depends on the neighbours: the median of the repeats can be
twice the best at 1,000+ lines while the best runs of 250 and 1,300 lines differ by 10-15 %. Both
are printed; compare sizes within one run, with --repeat 10 or more.

    .venv/bin/python bench/bench_batch_size.py [--lines 200000] [--sizes 64,250,500,1000,2000,5000]
"""

from __future__ import annotations

import argparse
import time

from kawa.testing import nginx_log
from kawa.testing.drivers import FilterDriver, OutputDriver, ParserDriver

SEED_PARSE = ('expression /^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \\[(?<time>[^\\]]*)\\] '
              '"(?<method>\\S+)(?: +(?<path>[^ ]*) +\\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\\"]*)" '
              '"(?<agent>[^\\"]*)" "(?<forwarder>[^\\"]*)")?/\ntime_format %d/%b/%Y:%H:%M:%S %z')
# examples/reference-file.conf's <match>
FILE_OUT = ("path /tmp/kawa-bench-unused/access\nappend true\n<format>\n@type json\n</format>\n"
            "<inject>\ntime_key time\ntime_type string\ntime_format %Y-%m-%dT%H:%M:%S.%N%z\ntag_key tag\n"
            "</inject>\n<buffer>\nflush_mode immediate\n</buffer>")


def blocks_of(data: bytes, lines_per_block: int) -> list[bytes]:
    """`data` cut at newlines into blocks of about `lines_per_block` lines (as tail's reads are)."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        end = pos
        for _ in range(lines_per_block):
            end = data.find(b"\n", end) + 1
            if end == 0:
                end = len(data)
                break
        out.append(data[pos:end])
        pos = end
    return out


def run(data: bytes, size: int, repeat: int) -> dict[str, float]:
    parser = ParserDriver("regexp", SEED_PARSE).instance
    grep = FilterDriver("grep", "exclude1 path /healthcheck").instance
    output = OutputDriver("file", FILE_OUT).instance
    blocks = blocks_of(data, size)
    lines = data.count(b"\n")
    best: dict[str, float] = {}
    totals: list[float] = []
    for _ in range(repeat):
        took = dict.fromkeys(("split", "parse", "grep", "format"), 0.0)
        for block in blocks:
            t0 = time.thread_time()
            texts = block.decode("utf-8", "surrogateescape").split("\n")
            texts.pop()
            t1 = time.thread_time()
            events, _failures = parser.parse_batch(texts)
            t2 = time.thread_time()
            kept = grep.filter_batch("nginx.access", events)
            t3 = time.thread_time()
            output.format_events("nginx.access", kept)
            t4 = time.thread_time()
            took["split"] += t1 - t0
            took["parse"] += t2 - t1
            took["grep"] += t3 - t2
            took["format"] += t4 - t3
        total = sum(took.values())
        totals.append(total)
        if not best or total < best["total"]:
            best = {**took, "total": total}
    totals.sort()
    return {**{k: v / lines * 1e6 for k, v in best.items()}, "median": totals[len(totals) // 2] / lines * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--sizes", default="64,250,500,1000,2000,5000")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    data = ("\n".join(nginx_log.lines(args.lines, seed=7)) + "\n").encode()
    print(f"{args.lines:,} lines, {len(data) / args.lines:.0f} bytes a line; µs of CPU per line, best of "
          f"{args.repeat} (stages of the best run) and the median run's total")
    print(f"{'lines/batch':>11} {'split':>7} {'parse':>7} {'grep':>7} {'format':>7} {'total':>7} {'median':>7}")
    for size in (int(s) for s in args.sizes.split(",")):
        r = run(data, size, args.repeat)
        print(f"{size:>11,} {r['split']:7.2f} {r['parse']:7.2f} {r['grep']:7.2f} {r['format']:7.2f} {r['total']:7.2f} {r['median']:7.2f}")


if __name__ == "__main__":
    main()
