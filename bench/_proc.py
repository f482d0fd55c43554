"""/proc helpers shared by the benchmarks: a process and its descendants (a supervisor's workers)."""

from __future__ import annotations

import os


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants, so a supervisor with workers is measured as one kawa."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids
