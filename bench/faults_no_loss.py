"""Fault run of "lose nothing, double nothing": N lines, K kill -9 at random moments, an output outage;
prints sent / delivered / duplicates / lost / restarts / retries for the file and the memory buffer.

    .venv/bin/python bench/faults_no_loss.py [--lines 1000000] [--kills 10] [--outage 20] [--buffer file]
    .venv/bin/python bench/faults_no_loss.py --kills 1 --outage 0 --failure-fraction 0.33 \
        --failures-throughout --buffer memory --seed-config ../shared/seed/fluent.conf         # issue 5's run
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from kawa.testing import no_loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--outage", type=float, default=20.0, help="seconds CloudWatch answers 500 to every call")
    ap.add_argument("--write-seconds", type=float, default=40.0, help="how long the writer takes")
    ap.add_argument("--buffer", choices=("file", "memory", "both"), default="both")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--failure-fraction", type=float, default=0.05,
                    help="share of PutLogEvents calls answered with throttling or 500 (issue 5: 0.33)")
    ap.add_argument("--failures-throughout", action="store_true",
                    help="keep the random failures until every line is in (default: only while writing)")
    ap.add_argument("--seed-config", type=Path, help="run this fluent.conf (the seed's) with only paths, names "
                    "and the endpoint adjusted, instead of the suite's config (--buffer is then what it says)")
    args = ap.parse_args()
    for buffer in (("file", "memory") if args.buffer == "both" else (args.buffer,)):
        with tempfile.TemporaryDirectory(prefix=f"kawa-faults-{buffer}-") as root:
            figures = no_loss.run(Path(root), lines=args.lines, kills=args.kills, buffer=buffer,
                                  outage=args.outage, seed=args.seed, write_seconds=args.write_seconds,
                                  failure_fraction=args.failure_fraction,
                                  failures_throughout=args.failures_throughout, seed_config=args.seed_config)
        print(figures.line(), flush=True)


if __name__ == "__main__":
    main()
