"""Real systemd journal files for tests: entries written by systemd's own writer,
systemd-journal-remote, from the journal export format (no journald needed).

Debian: apt-get install systemd-journal-remote (scripts/test.sh does it).
"""

from __future__ import annotations

import itertools
import os
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

BOOT_ID = "0123456789abcdef0123456789abcdef"
_CANDIDATES = ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")
_monotonic = itertools.count(1_000_000)


def journal_remote() -> str:
    for path in _CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("systemd-journal-remote")
    if found is None:
        raise RuntimeError("systemd-journal-remote is needed to write test journals "
                           "(Debian: apt-get install systemd-journal-remote; scripts/test.sh installs it)")
    return found


def _export(fields: dict[str, str], realtime_us: int) -> bytes:
    out = [f"__REALTIME_TIMESTAMP={realtime_us}\n__MONOTONIC_TIMESTAMP={next(_monotonic)}\n"
           f"_BOOT_ID={BOOT_ID}\n".encode()]
    for name, value in fields.items():
        data = value.encode("utf-8", "surrogateescape")
        if b"\n" in data:      # the export format's binary form: name, LE64 size, the bytes
            out.append(name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            out.append(name.encode() + b"=" + data + b"\n")
    return b"".join(out) + b"\n"


def append_entries(journal_file: Path, entries: list[dict[str, str]], realtime_us: int | None = None) -> None:
    """Append `entries` (field -> value) to `journal_file` (created if needed), 1 µs apart from
    `realtime_us` (default: now)."""
    start = realtime_us if realtime_us is not None else time.time_ns() // 1000
    data = b"".join(_export(fields, start + i) for i, fields in enumerate(entries))
    with tempfile.NamedTemporaryFile(suffix=".export") as export:
        export.write(data)
        export.flush()
        done = subprocess.run([journal_remote(), f"--output={journal_file}", export.name],
                              capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"systemd-journal-remote failed: {done.stderr.strip()}")
