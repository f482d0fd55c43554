"""CPU seconds of the 1M-line burst for several variants, run alternately: the tool to decide whether a
change helps on a shared machine, where the same build moves by 10-50 % from one minute to the next.

    python bench/ab.py [--output file|null] [--rounds 3] [--lines 1000000] NAME=SRC[,CONF] ...

Each variant is a source tree (the `src` folder of a checkout) and, optionally, a config to run instead
of examples/reference-file.conf (paths come from the same KAWA_INPUT / KAWA_POS / KAWA_OUTPUT variables).
Round r runs every variant once, in the order given, so a slow minute hits all of them; the report is
each variant's runs (user+sys CPU seconds of the kawa process, and wall), its median, and the ratio of
medians to the first variant. Example: the old tree against this one, and this one with a memory buffer:

    git worktree add /tmp/old HEAD~3
    python bench/ab.py old=/tmp/old/src new=src mem=src,/tmp/memory-buffer.conf
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from run import FILE_CONF, Kawa, LineCounter, file_env, generate, null_conf, pos_offset, wait_for


def parse_variant(text: str) -> tuple[str, Path, Path | None]:
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME=SRC[,CONF], got {text!r}")
    src, _, conf = rest.partition(",")
    src_path = Path(src).resolve()
    if not (src_path / "kawa" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{src_path} holds no kawa package (give the checkout's src folder)")
    conf_path = Path(conf).resolve() if conf else None
    if conf_path is not None and not conf_path.is_file():
        raise argparse.ArgumentTypeError(f"no such config: {conf_path}")
    return name, src_path, conf_path


def one_run(work: Path, input_path: Path, kept: int, output: str, src: Path, conf: Path | None,
            timeout: float) -> tuple[float, float]:
    run = Path(tempfile.mkdtemp(dir=work, prefix="run-"))
    try:
        if output == "null":
            kawa = Kawa(conf or null_conf(run), run, file_env(run, input_path), src=src)
            size = input_path.stat().st_size
            done = lambda: pos_offset(run / "nginx.pos") >= size        # noqa: E731
        else:
            kawa = Kawa(conf or FILE_CONF, run, file_env(run, input_path), src=src)
            counter = LineCounter(run / "out")
            done = lambda: counter.count() >= kept                     # noqa: E731
        try:
            wall = wait_for(done, kawa, timeout, f"the {output} output")
        except BaseException:
            kawa.kill()
            raise
        return kawa.stop(), wall
    finally:
        shutil.rmtree(run, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="+", type=parse_variant, metavar="NAME=SRC[,CONF]")
    p.add_argument("--output", choices=("file", "null"), default="file")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--timeout", type=float, default=900)
    args = p.parse_args()
    names = [name for name, _, _ in args.variants]
    if len(set(names)) != len(names):
        p.error("variant names must differ")
    for _, src, _ in args.variants:     # as installing does; kawa would compile at every start otherwise
        compileall.compile_dir(str(src), quiet=1)
    work = Path(tempfile.mkdtemp(prefix="kawa-ab-"))
    try:
        input_path = work / "access.log"
        kept = generate(input_path, args.lines, seed=1)
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        for r in range(args.rounds):
            for name, src, conf in args.variants:
                cpu, wall = one_run(work, input_path, kept, args.output, src, conf, args.timeout)
                runs[name].append((cpu, wall))
                print(f"round {r + 1}/{args.rounds} {name}: {cpu:.2f} CPU-s, {wall:.2f} s wall", flush=True)
        first = statistics.median(c for c, _ in runs[names[0]])
        print(f"\n{args.lines:,} lines, {args.output} output, {args.rounds} alternated rounds")
        for name in names:
            cpus = [c for c, _ in runs[name]]
            median = statistics.median(cpus)
            print(f"{name:>12}: median {median:6.2f} CPU-s (x{median / first:.2f})  runs "
                  + ", ".join(f"{c:.2f}" for c in cpus)
                  + f"  wall median {statistics.median(w for _, w in runs[name]):.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
