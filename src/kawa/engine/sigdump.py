"""SIGCONT: a snapshot of a running worker for whoever is debugging it, as Fluentd's sigdump gem writes.

Fluentd users run `kill -CONT <pid>` when the collector looks stuck and read /tmp/sigdump-<pid>.log.
kawa writes the same file (or SIGDUMP_PATH; "-" for stdout, "+" for stderr, as the gem) with what
answers "stuck where?" in a Python process: every thread's stack, every asyncio task and where it
waits, each plugin's counters (buffer sizes, retries), the collector's counts and the memory used.
Nothing here changes the worker's state; it runs in the event loop between two steps.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
import traceback
from typing import Any, Iterable, TextIO

import orjson


def write(plugins: Iterable[Any]) -> str:
    """Write the snapshot; returns where it went. Appends, as the gem does, so dumps taken a few
    seconds apart can be compared in one file."""
    target = os.environ.get("SIGDUMP_PATH") or f"/tmp/sigdump-{os.getpid()}.log"
    if target == "-":
        _write(sys.stdout, plugins)
    elif target == "+":
        _write(sys.stderr, plugins)
    else:
        with open(target, "a", encoding="utf-8") as f:
            _write(f, plugins)
    return target


def _write(out: TextIO, plugins: Iterable[Any]) -> None:
    now = time.strftime("%Y-%m-%d %H:%M:%S %z")
    out.write(f"Sigdump at {now} process {os.getpid()} ({' '.join(sys.argv)})\n")
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        out.write(f"  Thread {names.get(ident, '?')} (ident {ident})\n")
        for line in traceback.format_stack(frame):
            out.write(_indent(line, "    "))
    try:
        tasks = sorted(asyncio.all_tasks(), key=lambda t: t.get_name())
    except RuntimeError:            # no running loop (called outside the worker)
        tasks = []
    out.write(f"  asyncio tasks: {len(tasks)}\n")
    for task in tasks:
        where = "; ".join(f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno} in {f.f_code.co_name}"
                          for f in task.get_stack(limit=3))
        coro = task.get_coro()
        out.write(f"    {task.get_name()} {getattr(coro, '__qualname__', coro)!s}: {where or 'not started'}\n")
    out.write("  plugins:\n")
    for plugin in plugins:
        try:
            stats = plugin.stats()
        except Exception as exc:    # a snapshot must not fail because one plugin's counters do
            stats = {"error": f"{type(exc).__name__}: {exc}"}
        text = orjson.dumps(stats, default=str).decode()
        out.write(f"    {type(plugin).__name__} {getattr(plugin, 'plugin_id', '')}: {text}\n")
    out.write(f"  GC: counts {gc.get_count()} thresholds {gc.get_threshold()} frozen {gc.get_freeze_count()}\n")
    out.write(f"  memory: {_memory()}\n")
    out.flush()


def _indent(text: str, prefix: str) -> str:
    return "".join(prefix + line + "\n" for line in text.rstrip("\n").split("\n"))


def _memory() -> str:
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM")))
    except OSError:
        return "unknown"
    return ", ".join(f"{k} {v.strip()}" for k, v in fields.items())
