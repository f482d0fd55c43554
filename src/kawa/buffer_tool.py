"""`kawa buffer inspect|replay`: read leftover buffer chunks and dead letters (kawa's and Fluentd's, plain
or gzip; layouts in docs/buffer-tools.md), inspect them, and the command line (replay: kawa.buffer_replay)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import struct
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Sequence, TextIO

import msgpack

from kawa.buffer.chunk import iter_frames
from kawa.buffer.compression import decompress, is_gzip, scan_members
from kawa.buffer.recovery import payloads, salvage
from kawa.event import NS_PER_SEC, Event
from kawa.plugins.buffers.file import META_HEADER, committed_checkpoints, cut_ranges, records_in, uncommitted_ranges

# file buffer names: `<prefix>.b<hex id><suffix>` staged, `.q<hex id>` queued (buf_file.rb)
_BUFFER_CHUNK = re.compile(r"\.(b|q)([0-9a-f]{32})\.[^/]*$")
# dead letters (buffer.rb backup): `<hex id>.log`
_DEAD_LETTER = re.compile(r"^([0-9a-f]{32})\.[^/.]+$")
_SKIPPED_SUFFIXES = (".meta", ".meta.json", ".tmp", ".damaged")
# Integer event times below this are seconds (Fluentd `time_as_integer`), not kawa's nanoseconds:
# 10**12 s is year 33658, 10**12 ns is 1970-01-01 00:16:40.
_SECONDS_LIMIT = 10**12
# Plausible chunk creation times (2000-01-01 .. 2100-01-01), to decode the time inside a chunk id.
_ID_TIME_RANGE = (946684800, 4102444800)
DEFAULT_PREVIEW = 3


@dataclass
class ChunkInfo:
    """One chunk file as found on disk, with what could be read of it."""

    path: str
    id: str
    state: str                         # staged / queued / dead-letter / unknown
    origin: str                        # kawa / fluentd / unknown (decides how integer times are read)
    tag: str | None = None
    timekey: int | None = None
    variables: dict[str, Any] | None = None
    formatted: bool = False            # holds output text, not events (cannot be replayed)
    compressed: bool = False           # stored as gzip members (`<buffer> compress gzip`)
    size: int = 0
    records: int = 0                   # readable records
    records_expected: int | None = None
    unreadable_bytes: int = 0
    # Appended by an emit whose input checkpoint no chunk committed: kawa cuts these at its next
    # start and tail reads the lines again, so they are left out of `records` and of a replay.
    pending_bytes: int = 0
    pending_records: int = 0
    created: float | None = None       # epoch seconds
    modified: float | None = None
    reason: str | None = None          # why it became a dead letter (kawa .meta.json)
    companions: list[str] = field(default_factory=list)   # metadata files removed with the chunk
    _framed: bool = field(default=True, repr=False)        # msgpack frames (else plain text lines)
    _cuts: list[tuple[int, int]] = field(default_factory=list, repr=False)   # the pending byte ranges

    @property
    def damaged(self) -> bool:
        return self.unreadable_bytes > 0 or (self.records_expected is not None and self.records < self.records_expected)


# -- reading -------------------------------------------------------------------------------------

def _read_buffer_meta(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == META_HEADER and len(raw) > 6:
            raw = raw[6:6 + struct.unpack(">I", raw[2:6])[0]]
        data = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except (OSError, ValueError, msgpack.UnpackException):
        return None
    return data if isinstance(data, dict) else None


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _time_from_id(hex_id: str) -> float | None:
    """kawa ids start with 64-bit microseconds; Fluentd's with microseconds << 12 | random."""
    head = int(hex_id[:16], 16)
    for micros in (head, head >> 12):
        if _ID_TIME_RANGE[0] <= micros / 1e6 < _ID_TIME_RANGE[1]:
            return micros / 1e6
    return None


def _directory_commits(folder: str) -> dict[str, int]:
    """The input checkpoints the file-buffer chunks in `folder` committed (kawa's resume uses the same:
    an emit over several chunks counts as committed when any of its chunks says so)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return {}
    return committed_checkpoints(_read_buffer_meta(os.path.join(folder, name)) for name in names
                                 if name.endswith(".meta"))


def load_chunk(path: str, commits: dict[str, int] | None = None, *, include_pending: bool = False) -> ChunkInfo:
    """`commits`: the directory's committed checkpoints (read when None); `include_pending`: read the
    uncommitted appends too (salvage, when the input will never read those lines again)."""
    name = os.path.basename(path)
    buffer_match = _BUFFER_CHUNK.search(name)
    dead_match = _DEAD_LETTER.match(name)
    hex_id = buffer_match.group(2) if buffer_match else dead_match.group(1) if dead_match else name
    stat = os.stat(path)
    info = ChunkInfo(path, hex_id, "unknown", "unknown", size=stat.st_size, modified=stat.st_mtime)
    if buffer_match:
        info.state = "staged" if buffer_match.group(1) == "b" else "queued"
    meta = _read_buffer_meta(path + ".meta") if buffer_match and os.path.exists(path + ".meta") else None
    dead = _read_json(path + ".meta.json") if os.path.exists(path + ".meta.json") else None
    if meta is not None:
        info.companions.append(path + ".meta")
        info.origin = "kawa" if "f" in meta else "fluentd"
        info.tag, info.timekey, info.variables = meta.get("tag"), meta.get("timekey"), meta.get("variables")
        info.formatted = bool(meta.get("f", 0))
        info.records_expected = meta.get("s") if isinstance(meta.get("s"), int) else None
        info.created = float(meta["c"]) if isinstance(meta.get("c"), int) else None
        info.modified = float(meta["m"]) if isinstance(meta.get("m"), int) and meta["m"] else info.modified
        if meta.get("pending") and not include_pending:
            if commits is None:
                commits = _directory_commits(os.path.dirname(path) or ".")
            info._cuts = uncommitted_ranges(meta["pending"], commits, stat.st_size)
            info.pending_bytes = sum(end - start for start, end in info._cuts)
    elif dead is not None:
        info.companions.append(path + ".meta.json")
        info.state, info.origin = "dead-letter", "kawa"
        info.tag, info.timekey, info.variables = dead.get("tag"), dead.get("timekey"), dead.get("variables")
        info.formatted = bool(dead.get("formatted"))
        info.records_expected = dead.get("records") if isinstance(dead.get("records"), int) else None
        info.reason = dead.get("reason")
    elif dead_match or "backup" in path.split(os.sep):
        info.state = "dead-letter"      # Fluentd backups carry no metadata at all
    if info.created is None and len(hex_id) == 32:
        info.created = _time_from_id(hex_id)
    with open(path, "rb") as f:
        data = f.read()
    # Fluentd's .meta does not record compression (it reads with the configured `compress`); kawa's
    # does. Without it, gzip data is known by its magic bytes (msgpack frames and text never start so).
    info.compressed = meta["compress"] == "gzip" if meta is not None and "compress" in meta else is_gzip(data)
    if info._cuts:
        info.pending_records = records_in(data, info._cuts, info.formatted, info.compressed)
        data = cut_ranges(data, info._cuts)
    _scan(info, data, framed=meta is not None)
    return info


def _scan(info: ChunkInfo, data: bytes, *, framed: bool) -> None:
    """Count readable records. kawa frames data in buffer files; dead letters of formatted chunks and
    Fluentd's formatted chunks are plain text (one record a line)."""
    info._framed = not (info.formatted and not framed)
    _, records, lost = _decode(info, data)
    if info._framed and not records and data and not info.companions:
        info.formatted = True                              # a formatted kawa chunk moved aside without meta
        _, records, lost = _decode(info, data)
        if not records:                                    # Fluentd formatted text
            info._framed = False
            _, records, lost = _decode(info, data)
    info.records, info.unreadable_bytes = records, lost


def _decode(info: ChunkInfo, data: bytes) -> tuple[bytes, int, int]:
    """The readable content (frames, or text when not framed), decompressed; its records; bytes lost."""
    if info._framed:
        readable = salvage(data, info.formatted, info.compressed)
        plain = decompress(readable.data) if info.compressed else readable.data
        return plain, readable.records, readable.lost
    lost = 0
    if info.compressed:
        parts, end = [], 0
        for start, stop, text, whole in scan_members(data):
            lost += start - end + (0 if whole else stop - start)
            parts.append(text)
            end = stop
        lost += len(data) - end
        data = b"".join(parts)
    return data, data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0), lost


def _content(info: ChunkInfo) -> bytes:
    with open(info.path, "rb") as f:
        data = f.read()
    return _decode(info, cut_ranges(data, info._cuts) if info._cuts else data)[0]


def iter_events(info: ChunkInfo, limit: int | None = None) -> Iterator[Event]:
    """(time_ns, record) of the readable records of a standard chunk, in order."""
    seconds = info.origin != "kawa"
    count = 0
    for time_value, record in iter_frames((_content(info),)):
        if limit is not None and count >= limit:
            return
        if seconds and abs(time_value) < _SECONDS_LIMIT:
            time_value *= NS_PER_SEC
        count += 1
        yield time_value, record


def preview(info: ChunkInfo, n: int) -> list[Any]:
    if n <= 0:
        return []
    if not info.formatted:
        return [[_iso(t / NS_PER_SEC, ns=t % NS_PER_SEC), r] for t, r in iter_events(info, n)]
    data = _content(info)
    if info._framed:      # kawa framed text: [count, bytes] frames
        data = b"".join(payloads(data))
    return [line.decode("utf-8", "replace") for line in data.splitlines()[:n]]


def find_chunks(path: str, *, include_pending: bool = False) -> list[ChunkInfo]:
    if os.path.isfile(path):
        return [load_chunk(path, include_pending=include_pending)]
    found: list[ChunkInfo] = []
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        commits: dict[str, int] | None = None
        for name in sorted(files):
            if name.endswith(_SKIPPED_SUFFIXES) or not (_BUFFER_CHUNK.search(name) or _DEAD_LETTER.match(name)):
                continue
            if commits is None and _BUFFER_CHUNK.search(name):
                commits = _directory_commits(folder)
            found.append(load_chunk(os.path.join(folder, name), commits, include_pending=include_pending))
    found.sort(key=lambda c: (c.created or 0.0, c.id))
    return found


# -- inspect -------------------------------------------------------------------------------------

def _iso(seconds: float | None, ns: int | None = None) -> str | None:
    if seconds is None:
        return None
    text = datetime.fromtimestamp(int(seconds // 1), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f".{ns:09d}" if ns is not None else ""
    return f"{text}{frac}Z"


def _as_json(info: ChunkInfo, n: int) -> dict[str, Any]:
    data = {k: v for k, v in asdict(info).items() if not k.startswith("_") and k != "companions"}
    data.update(created=_iso(info.created), modified=_iso(info.modified), damaged=info.damaged,
                first_records=preview(info, n))
    return data


def _print_chunk(out: TextIO, info: ChunkInfo, n: int) -> None:
    out.write(f"{info.path}\n")
    rows = [("id", info.id), ("state", info.state), ("origin", info.origin), ("tag", info.tag),
            ("timekey", f"{info.timekey} ({_iso(info.timekey)})" if info.timekey is not None else None),
            ("variables", json.dumps(info.variables) if info.variables else None),
            ("size", f"{info.size} bytes" + (" (gzip)" if info.compressed else "")),
            ("records", f"{info.records}" + (f" (metadata says {info.records_expected})"
                                               if info.records_expected not in (None, info.records) else "")),
            ("created", _iso(info.created)), ("modified", _iso(info.modified)), ("reason", info.reason)]
    if info.formatted:
        rows.append(("content", "text formatted by the output (not replayable as events)"))
    if info.pending_bytes:
        rows.append(("pending", f"{info.pending_records} records ({info.pending_bytes} bytes) appended by an emit "
                                "kawa had not committed when it stopped: not counted above and not replayed; "
                                "kawa cuts them at its next start and the input reads those lines again "
                                "(replay --include-pending takes them, when it will not)"))
    if info.damaged:
        rows.append(("DAMAGED", f"{info.records} records readable, {info.unreadable_bytes} bytes unreadable"))
    for key, value in rows:
        if value is not None:
            out.write(f"  {key:<10}{value}\n")
    for item in preview(info, n):
        text = item if isinstance(item, str) else f"{item[0]} {json.dumps(item[1], ensure_ascii=False, default=repr)}"
        out.write(f"    {text}\n")


def inspect(args: argparse.Namespace, out: TextIO) -> int:
    chunks = find_chunks(args.path)
    if args.json:
        json.dump([_as_json(c, args.records) for c in chunks], out, ensure_ascii=False, default=repr, indent=1)
        out.write("\n")
        return 0
    for info in chunks:
        _print_chunk(out, info, args.records)
    damaged = sum(1 for c in chunks if c.damaged)
    out.write(f"{len(chunks)} chunks, {sum(c.records for c in chunks)} records, "
              f"{sum(c.size for c in chunks)} bytes; {damaged} damaged\n")
    return 0


# -- command line --------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kawa buffer", description="Inspect and replay buffer chunks and dead letters.")
    sub = p.add_subparsers(dest="command", required=True)
    ins = sub.add_parser("inspect", help="list chunks: keys, sizes, record counts, first records, damage")
    ins.add_argument("path", help="buffer directory, dead-letter directory, or one chunk file")
    ins.add_argument("--records", type=int, default=DEFAULT_PREVIEW, metavar="N", help="records shown per chunk")
    ins.add_argument("--json", action="store_true", help="machine-readable output")
    rep = sub.add_parser("replay", help="route the chunks' records through a config's outputs again")
    rep.add_argument("path", help="buffer directory, dead-letter directory, or one chunk file")
    rep.add_argument("-c", "--config", required=True, help="configuration whose outputs receive the records")
    rep.add_argument("--match", metavar="PATTERN", help="only chunks whose tag matches this <match> pattern")
    rep.add_argument("--tag", help="tag for chunks whose metadata has none (buffers without the tag chunk key)")
    rep.add_argument("--keep", action="store_true", help="leave replayed chunk files in place")
    rep.add_argument("--dry-run", action="store_true", help="show what would be replayed, change nothing")
    rep.add_argument("--include-pending", action="store_true",
                     help="also replay appends kawa had not committed (only when the input will not read "
                          "those lines again, e.g. the node and its logs are gone)")
    rep.add_argument("-v", "--verbose", action="count", default=0, help="more of kawa's log on stderr")
    return p


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    if not os.path.exists(args.path):
        sys.stderr.write(f"kawa buffer: no such file or directory: {args.path}\n")
        return 2
    if args.command == "inspect":
        return inspect(args, sys.stdout)
    from kawa.buffer_replay import replay

    chunks = find_chunks(args.path, include_pending=args.include_pending)
    return asyncio.run(replay(args, chunks, sys.stdout, sys.stderr))
