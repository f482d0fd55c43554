"""Which parts of a chunk CloudWatch Logs already has, so a retry or restart resumes after them.
Positions index a destination's events in their deterministic (stable timestamp) send order.
"""

# A chunk usually needs several PutLogEvents calls (per group/stream, per 1 MiB / 10,000 events /
# 24 h). Fluentd's plugin, Fluent Bit and the buffer's whole-chunk retry resend the calls that
# already succeeded (duplicates, fluent-plugin-cloudwatch-logs#186). We record every accepted (or
# dead-lettered to @ERROR) range of positions per destination, in memory for memory buffers and in a
# small JSON file per chunk id next to a persistent buffer, written atomically after each call.
# Before each call the file also records that call as in flight (verify.inflight_record): after a
# kill -9 the next process reads the stream back before resending it (sender.Delivery._settle_inflight).

from __future__ import annotations

import os
import threading
import time
from typing import Any, Iterable

import orjson

Range = tuple[int, int]   # [start, end) positions in one destination's send order


def _merge(ranges: list[Range]) -> list[Range]:
    out: list[Range] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


class ChunkProgress:
    """Done ranges per destination of one chunk; `total` guards against a changed layout."""

    def __init__(self, chunk_id: str) -> None:
        self.chunk_id = chunk_id
        self.done: dict[str, list[Range]] = {}
        self.totals: dict[str, int] = {}
        # destination -> the call whose outcome is not known yet (see verify.inflight_record)
        self.inflight: dict[str, dict[str, Any]] = {}
        self.reported = False    # batching changes (truncation, ...) already counted for this chunk

    def bind(self, dest: str, total: int) -> bool:
        """Declare the destination's event count; False (and progress dropped) if it changed since.

        A different count means the layout differs (config changed across a restart); resending is
        safer than skipping events that were never sent.
        """
        known = self.totals.get(dest)
        self.totals[dest] = total
        if known is not None and known != total:
            self.done.pop(dest, None)
            self.inflight.pop(dest, None)
            return False
        return True

    def remaining(self, dest: str, start: int, end: int) -> list[Range]:
        """Sub-ranges of [start, end) not yet done."""
        out: list[Range] = []
        pos = start
        for s, e in self.done.get(dest, ()):
            if e <= pos:
                continue
            if s >= end:
                break
            if s > pos:
                out.append((pos, s))
            pos = max(pos, e)
            if pos >= end:
                break
        if pos < end:
            out.append((pos, end))
        return out

    def mark(self, dest: str, start: int, end: int) -> None:
        if end > start:
            self.done[dest] = _merge([*self.done.get(dest, ()), (start, end)])

    def done_count(self, dest: str) -> int:
        return sum(e - s for s, e in self.done.get(dest, ()))

    def done_total(self) -> int:
        return sum(e - s for ranges in self.done.values() for s, e in ranges)

    @property
    def empty(self) -> bool:
        return not any(self.done.values())

    def to_json(self) -> bytes:
        return orjson.dumps({"chunk": self.chunk_id, "totals": self.totals,
                             "done": {k: [list(r) for r in v] for k, v in self.done.items()},
                             "inflight": self.inflight})

    @classmethod
    def from_json(cls, chunk_id: str, data: bytes) -> "ChunkProgress":
        raw = orjson.loads(data)
        progress = cls(chunk_id)
        if raw.get("chunk") != chunk_id:
            return progress
        progress.totals = {str(k): int(v) for k, v in raw.get("totals", {}).items()}
        progress.done = {str(k): _merge([(int(s), int(e)) for s, e in v]) for k, v in raw.get("done", {}).items()}
        # A call in flight in a previous process: its outcome became unknown at the latest now.
        now = time.time()
        progress.inflight = {str(k): {**v, "at": now} for k, v in raw.get("inflight", {}).items()
                             if isinstance(v, dict)}
        return progress


class ProgressStore:
    """Progress of the chunks being written: memory always, plus a file per chunk when `directory`."""

    SUFFIX = ".cwlprogress"

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory
        self._live: dict[str, ChunkProgress] = {}
        self._retired: list[str] = []      # written chunks whose file waits for their purge
        # Saves of one chunk's progress come from several worker threads (concurrency > 1): one at a
        # time, so the file never goes back to an older state and the temporary file is not shared.
        self._save_lock = threading.Lock()
        if directory:
            os.makedirs(directory, exist_ok=True)

    def _path(self, chunk_id: str) -> str:
        assert self.directory is not None
        return os.path.join(self.directory, chunk_id + self.SUFFIX)

    def load(self, chunk_id: str) -> ChunkProgress:
        progress = self._live.get(chunk_id)
        if progress is not None:
            return progress
        progress = ChunkProgress(chunk_id)
        if self.directory:
            try:
                with open(self._path(chunk_id), "rb") as f:
                    progress = ChunkProgress.from_json(chunk_id, f.read())
            except FileNotFoundError:
                pass
            except (OSError, ValueError, TypeError, orjson.JSONDecodeError):
                progress = ChunkProgress(chunk_id)   # unreadable: resend rather than skip
        self._live[chunk_id] = progress
        return progress

    @property
    def durable(self) -> bool:
        return self.directory is not None

    def save(self, progress: ChunkProgress) -> None:
        """Persist before (in flight) and after (accepted) a call; atomic (rename) and durable (fsync)
        for file buffers, a no-op for memory buffers."""
        if not self.directory:
            return
        path = self._path(progress.chunk_id)
        tmp = path + ".tmp"
        with self._save_lock:
            with open(tmp, "wb") as f:
                f.write(progress.to_json())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)

    def retire(self, chunk_id: str) -> None:
        """The chunk is written: forget it now, delete its file only once the buffer purged the chunk
        (`sweep`). Deleted first, a kill -9 before the purge would leave the chunk without its record
        of accepted calls, and the restart would send it all again."""
        self._live.pop(chunk_id, None)
        if self.directory:
            self._retired.append(chunk_id)

    def sweep(self, live_ids: Iterable[str]) -> None:
        """Delete the files of retired chunks that left the buffer."""
        if not self._retired:
            return
        keep = set(live_ids)
        retired, self._retired = self._retired, []
        for chunk_id in retired:
            if chunk_id in keep:
                self._retired.append(chunk_id)
            else:
                self.forget(chunk_id)

    def forget(self, chunk_id: str) -> None:
        self._live.pop(chunk_id, None)
        if self.directory:
            try:
                os.unlink(self._path(chunk_id))
            except FileNotFoundError:
                pass

    def prune(self, live_ids: Iterable[str]) -> None:
        """Drop progress of chunks that left the buffer another way (dead-lettered, dropped)."""
        keep = set(live_ids)
        for chunk_id in [c for c in self._live if c not in keep]:
            self.forget(chunk_id)
        if self.directory:
            for name in os.listdir(self.directory):
                if name.endswith(self.SUFFIX) and name[: -len(self.SUFFIX)] not in keep:
                    self.forget(name[: -len(self.SUFFIX)])

    def __len__(self) -> int:
        return len(self._live)
