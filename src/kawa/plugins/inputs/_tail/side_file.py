"""kawa's small files beside a pos_file (`.kawa-marks`, `.kawa-held`): one record a line, read whole
at start; a line that does not parse (a foreign or damaged file) is skipped. `replace` rewrites one
whole (temp file + rename), so a kill -9 leaves the old file or the new one, never a mix
(`.kawa-held`, written far more often, is rewritten in place and checks each line instead)."""

from __future__ import annotations

import os
import re


def read_records(path: str, line: re.Pattern[bytes]) -> list[re.Match[bytes]]:
    """The lines of `path` that match `line` (none when the file is missing or unreadable)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return []
    return [m for m in map(line.match, data.split(b"\n")) if m is not None]


def replace(path: str, data: bytes) -> None:
    """Write `data` as `path`'s new content. An error leaves the old file: these files only ever
    spare work at start (a check, lines not read twice), so kawa goes on without them."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        pass
