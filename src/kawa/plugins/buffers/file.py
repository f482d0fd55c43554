"""`<buffer> @type file`: chunks on disk in Fluentd's layout, resumed at start, recovered record by record.

See docs in FileBuffer for the on-disk format, crash model and fsync policy.
"""

from __future__ import annotations

import asyncio
import glob
import os
import re
import struct
from typing import Any, Callable, Iterable, Iterator

import msgpack

from kawa import delivery
from kawa.buffer.buffer import Buffer
from kawa.buffer.chunk import Chunk, Metadata, new_chunk_id
from kawa.buffer.compression import decompress, is_gzip, iter_decompress
from kawa.buffer.recovery import payloads, salvage
from kawa.buffer.options import BufferOptions
from kawa.config.schema import option
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.event import NS_PER_SEC
from kawa.state_lock import LOCK_SUFFIX, acquire, claim_path, release

# buf_file.rb DEFAULT_CHUNK_LIMIT_SIZE / DEFAULT_TOTAL_LIMIT_SIZE
FILE_CHUNK_LIMIT_SIZE = 256 * 1024 * 1024
FILE_TOTAL_LIMIT_SIZE = 64 * 1024 * 1024 * 1024
# buffer/file_chunk.rb BUFFER_HEADER: "\xc1\x00" + 4-byte big-endian length + msgpack metadata
META_HEADER = b"\xc1\x00"
_CHUNK_NAME = re.compile(r"\.(b|q)([0-9a-f]+)\.[^/]*$")

Opener = Callable[[str, int, int], int]
# A chunk of flush_mode immediate is read again within milliseconds, when its output writes it: its
# text stays in memory until that first read, instead of being read back from the file and unpacked
# from its frame (three copies of the chunk, each into freshly faulted memory). Only the newest
# chunks keep theirs, within a byte bound, so a queue behind a slow or failing output does not hold
# its data twice; every other read (a retry, an older chunk) reads the file.
KEEP_WRITTEN_CHUNKS = 2
KEEP_WRITTEN_BYTES = 4 * 1024 * 1024


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_pieces(fd: int, pieces: tuple[bytes, ...]) -> None:
    """`_write_all` of the pieces joined, without joining them: one writev (a formatted batch is
    written with its frame header in front, not copied behind it), the rest after a short write."""
    written = os.writev(fd, pieces)
    if written < _size(pieces):
        _write_all(fd, b"".join(pieces)[written:])


def _size(pieces: tuple[bytes, ...]) -> int:
    return sum(map(len, pieces))


def _without(entries: dict[str, Any], key: str) -> dict[str, Any] | None:
    """`entries` less `key`, as a new dict (a chunk's .meta fields are replaced, never mutated), or
    None when nothing is left (the field is then left out of the .meta)."""
    return {k: v for k, v in entries.items() if k != key} or None


def frame_formatted(data: bytes, records: int) -> bytes:
    """A formatted batch as stored in a file chunk: `[records, bytes]`, so recovery can count records."""
    return frame_head(data, records) + data


def frame_head(data: bytes, records: int) -> bytes:
    """The bytes of frame_formatted before `data`: the msgpack headers, built here because packb
    would copy the batch (a few hundred KiB) into its growing buffer several times over."""
    size = len(data)
    if size < 0x100:
        head = b"\xc4" + size.to_bytes(1, "big")
    elif size < 0x10000:
        head = b"\xc5" + size.to_bytes(2, "big")
    else:
        head = b"\xc6" + size.to_bytes(4, "big")   # bin 32 (a chunk is far below 4 GiB)
    return b"\x92" + msgpack.packb(records) + head


class FileChunk(Chunk):
    """Data file `<prefix>.b<id><suffix>` (`.q` once queued) + `.meta`; frames (or, compressed, gzip
    members of frames) appended with os.write."""

    persistent = True
    # kawa.delivery checkpoints of the inputs that emitted these events: key -> highest offset
    checkpoints: dict[str, int] | None = None
    # Appends whose emit has not committed its checkpoint yet: key -> [offset, start, end] (bytes of
    # this file). Written to the .meta BEFORE the data, so a kill -9 between the append and the
    # commit (Buffer.sync) leaves a record of which bytes the input will read again; resume drops them.
    pending: dict[str, list[int]] | None = None
    meta_unsynced = False       # .meta written (write_queued, a commit) and not fsync'd yet (sync does it)
    written: bytes | None = None  # the text write_queued wrote, until the first read (KEEP_WRITTEN_CHUNKS)

    def __init__(self, unique_id: bytes, metadata: Metadata, formatted: bool, created_at: int,
                 path: str, opener: Opener, compressed: bool = False) -> None:
        super().__init__(unique_id, metadata, formatted, created_at, compressed)
        self.path = path
        self._open = opener
        self._fd: int | None = None
        self.file_size = 0

    @property
    def meta_path(self) -> str:
        return self.path + ".meta"

    def create(self) -> None:
        self.write_meta()
        self._fd = self._open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def _meta_bytes(self) -> bytes:
        data = self.metadata.to_dict()
        data.update(id=self.unique_id, s=self.record_count, c=self.created_at // NS_PER_SEC,
                    m=self.modified_at // NS_PER_SEC, f=1 if self.formatted else 0,
                    compress="gzip" if self.compressed else "text")
        if self.checkpoints:
            data["checkpoints"] = self.checkpoints
        if self.pending:
            data["pending"] = self.pending
        body = msgpack.packb(data)
        return META_HEADER + struct.pack(">I", len(body)) + body

    def write_queued(self, data: bytes, records: int, checkpoint: tuple[str, int] | None = None) -> None:
        """Create this chunk already queued (`.q` name) holding `data`: the .meta first, written once
        (no data file can exist beside a torn one; the emit's checkpoint in it is pending until
        `commit`), then the data. Leaves no file behind on OSError."""
        self.record_count = records
        self.bytesize = len(data)
        self.state = "queued"
        frame = self._frame(data, records)
        if checkpoint is not None:
            self.pending = {checkpoint[0]: [checkpoint[1], 0, _size(frame)]}
        try:
            fd = self._open(self.meta_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                _write_all(fd, self._meta_bytes())
            finally:
                os.close(fd)
            self.meta_unsynced = True
            self._write_frame(frame)
        except OSError:
            self.purge()
            raise
        finally:
            self.close()

    def write_meta(self) -> None:
        meta = self._meta_bytes()
        tmp = self.meta_path + ".tmp"
        fd = self._open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, meta)
        finally:
            os.close(fd)
        os.replace(tmp, self.meta_path)   # atomic: a crash leaves the old or the new meta, never half

    def _frame(self, data: bytes, records: int) -> tuple[bytes, ...]:
        """What one append writes, in pieces: a formatted batch behind its frame header
        (frame_formatted), else `data` as given (msgpack frames, or a gzip member of them)."""
        return (frame_head(data, records), data) if self.formatted and not self.compressed else (data,)

    def _append(self, data: bytes, records: int, checkpoint: tuple[str, int] | None) -> None:
        frame = self._frame(data, records)
        if checkpoint is not None:
            key, offset = checkpoint
            before = self.pending
            self.pending = {**(before or {}), key: [offset, self.file_size, self.file_size + _size(frame)]}
            self.write_meta()
            try:
                self._write_frame(frame)
            except OSError:
                # nothing appended (the partial frame was cut): the range is no longer this emit's
                self.pending = before
                try:
                    self.write_meta()
                except OSError:
                    pass
                raise
            return
        self._write_frame(frame)

    def commit(self, key: str, offset: int) -> bool:
        """The emit that appended under checkpoint (key, offset) is whole: its data stays at resume
        and the input may resume past `offset`. True when the .meta must be written again."""
        changed = False
        if self.pending and key in self.pending:
            self.pending = _without(self.pending, key)
            changed = True
        known = self.checkpoints or {}
        if known.get(key, -1) < offset:
            self.checkpoints = {**known, key: offset}
            changed = True
        return changed

    def forget(self, key: str) -> bool:
        """Drop the checkpoint stored under `key` (kawa.delivery.forget). True when the .meta must be
        written again."""
        if not self.checkpoints or key not in self.checkpoints:
            return False
        self.checkpoints = _without(self.checkpoints, key)
        return True

    def _write_frame(self, frame: tuple[bytes, ...]) -> None:
        if self._fd is None:
            self._fd = self._open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            _write_pieces(self._fd, frame)
        except OSError:
            # ENOSPC/EIO mid-frame: cut the partial frame so the chunk stays readable, then re-raise
            try:
                os.ftruncate(self._fd, self.file_size)
            except OSError:
                pass
            raise
        self.file_size += _size(frame)

    def _data_mark(self) -> tuple[int, dict[str, list[int]] | None, dict[str, int] | None]:
        return self.file_size, self.pending, self.checkpoints

    def _rollback(self, data_mark: tuple[int, dict[str, list[int]] | None, dict[str, int] | None]) -> None:
        size, pending, checkpoints = data_mark
        self.written = None
        if checkpoints != self.checkpoints:
            # An emit committed since the mark (Buffer.sync failed after its commit): the .meta goes
            # back first. Data cut under a .meta that still commits it would let a restart skip lines
            # that are no longer buffered; if the .meta cannot be replaced, the data stays (read
            # twice, never lost).
            now = self.pending, self.checkpoints
            self.pending, self.checkpoints = pending, checkpoints
            try:
                self._write_meta_unsynced()
            except OSError:
                self.pending, self.checkpoints = now
                raise
        if self.file_size != size:      # (a failed append has already cut its own partial frame)
            if self._fd is not None:
                os.ftruncate(self._fd, size)
            else:                       # enqueued (renamed, closed) since the write
                os.truncate(self.path, size)
            self.file_size = size
        if pending != self.pending:
            # after the cut: a kill in between leaves a pending range past the end, cut as nothing
            self.pending = pending
            try:
                self._write_meta_unsynced()
            except OSError:
                pass    # the .meta keeps a pending range past the end of the data: cut as nothing at resume

    def _write_meta_unsynced(self) -> None:
        self.write_meta()
        self.meta_unsynced = True       # the next Buffer.sync makes it durable

    def _raw(self) -> bytes:
        written = self.written
        if written is not None:
            self.written = None
            return written
        with open(self.path, "rb") as f:
            data = f.read()
        if self.compressed:
            data = decompress(data)
        if not self.formatted:
            return data
        return b"".join(payloads(data))

    def _plain_pieces(self) -> Iterable[bytes]:
        if not self.compressed:
            return super()._plain_pieces()
        with open(self.path, "rb") as f:
            data = f.read()
        return iter_decompress(data)       # member by member: never the whole chunk decompressed at once

    def sync_target(self) -> tuple[int | None, list[str]]:
        """What an fsync thread needs, taken in the event loop: the loop may enqueue the chunk (rename,
        close its descriptor) while the thread runs, so a duplicate of the open descriptor, or the
        data path when closed (queued chunks of flush_mode immediate); plus the .meta if unsynced."""
        fd = os.dup(self._fd) if self._fd is not None else None
        paths = [self.path] if fd is None and self.state != "purged" else []
        if self.meta_unsynced:
            self.meta_unsynced = False
            paths.append(self.meta_path)
        return fd, paths

    def enqueued(self) -> None:
        super().enqueued()
        new_path = _CHUNK_NAME.sub(lambda m: m.group(0).replace(f".b{self.id}", f".q{self.id}", 1), self.path)
        if new_path != self.path:
            old_meta = self.meta_path
            try:
                os.replace(self.path, new_path)
            except FileNotFoundError:
                pass        # removed under kawa and not rescued (FileBuffer.enqueue_chunk): the flush drops it
            self.path = new_path
            try:
                os.replace(old_meta, self.meta_path)
            except FileNotFoundError:
                pass        # written anew below
        self.close()
        self.write_meta()

    def rescue_removed_file(self) -> bool:
        """The data file of this staged chunk was removed under kawa (someone freeing a full disk):
        its data is still there through the open append descriptor, so it is written back to its
        path (read through /proc/self/fd: the descriptor is write-only). False when no descriptor
        is open (a resumed chunk not appended to since): nothing to rescue it from."""
        if self._fd is None:
            return False
        src = os.open(f"/proc/self/fd/{self._fd}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            dst = self._open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                offset = 0
                while offset < self.file_size:
                    sent = os.sendfile(dst, src, offset, self.file_size - offset)
                    if sent == 0:
                        break
                    offset += sent
                os.fsync(dst)
            finally:
                os.close(dst)
        finally:
            os.close(src)
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def file_gone(self) -> bool:
        return self.written is None and not os.path.exists(self.path)

    def purge(self) -> None:
        super().purge()
        self.written = None
        self.close()
        for p in (self.path, self.meta_path):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


@register("buffer", "file")
class FileBuffer(Buffer):
    """Fluentd buf_file, crash-safe.

    On disk: `<dir>/buffer.b<32 hex>.log` while staged, `.q<id>.log` once queued, each with a
    `.meta` (Fluentd's "\\xc1\\x00" + length + msgpack {timekey, tag, variables, seq, id, s, c, m}
    plus kawa's `f`: 1 when the data holds formatted text, and `compress`: text or gzip). Data is a
    msgpack stream of frames: `[time_ns, record]` per event, or `[records, bytes]` per formatted
    batch; with `compress gzip`, each append is one gzip member of such frames (Fluentd: of the
    msgpack stream or the text). Fluentd's .meta does not record compression: a chunk without the
    key is gzip when its data starts with the gzip magic.

    Crash model: every append is one os.write of whole frames (or one whole member) to an O_APPEND
    fd and the .meta is replaced atomically, so kill -9 at any instant leaves at most a torn last
    frame or member; an append made for an input checkpoint (tail) is recorded as pending in the
    .meta first and cut out at start unless its emit committed (see FileChunk.pending); at start
    every chunk is resumed and a torn/corrupted file is rewritten with its good frames
    (kawa.buffer.recovery; loss logged with the chunk name). A chunk whose .meta is unreadable is
    moved to the backup directory, never crash-looping. fsync policy: an emit that an input tracks
    (kawa.delivery: tail's checkpoints, an emit ack, `<system> at_least_once_from_source`) has its
    chunks' data and .meta fsync'd before emit returns, so the input moves its position only past
    durable events; an untracked emit is not synced (kill -9 safe, not power-loss safe, as
    Fluentd). An fsync that fails takes the emit's write back (Buffer.make_durable) before the input
    retries it. Disk full (ENOSPC): the partial frame is cut, and so is what the same emit appended
    to other chunks (Buffer.write rolls back); emit raises BufferOverflowError (input holds back /
    overflow_action); data buffered before is untouched.
    """

    class Options(BufferOptions):
        path = option(None, doc="Directory (or file pattern with '.*') of the chunk files.")
        path_suffix = option(".log", doc="Suffix of chunk files.")
        file_permission = option(None, no_effect="kawa creates chunk files 0644", doc="Chunk file mode.")
        dir_permission = option(None, no_effect="kawa creates directories 0755", doc="Directory mode.")
        chunk_limit_size = FILE_CHUNK_LIMIT_SIZE
        total_limit_size = FILE_TOTAL_LIMIT_SIZE

    persistent = True

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        self._open: Opener = ctx.extras.get("buffer_file_opener") or os.open
        self.pattern = ""
        self.extra_resume: str | None = None
        self.symlink_hook: Callable[[Chunk], None] | None = None
        self._latest_timekey = -1
        self.recovered_lost_bytes = 0
        self._kept: list[FileChunk] = []       # chunks holding the text they were written with
        self._lock: str | None = None           # state_lock path held from start to stop
        self._own_directory = False             # `path` names a directory of chunks only (see start)

    def configure(self, settings: Any, *, formatted: bool, owner: Any = None) -> None:
        super().configure(settings, formatted=formatted, owner=owner)
        opts = self.options
        path = opts.path  # type: ignore[attr-defined]
        suffix = opts.path_suffix  # type: ignore[attr-defined]
        system = self.ctx.system
        workers = getattr(system, "workers", 1) or 1
        owner_id = getattr(owner, "plugin_id", self.plugin_id)
        from_root = False
        if not path:
            root = getattr(system, "root_dir", None)
            if not root or owner_id.startswith("object:"):
                raise ConfigError("buffer path is not configured. specify 'path' in <buffer>")
            path = os.path.join(root, f"worker{self.ctx.worker_id}", owner_id, "buffer")
            from_root = True
        owner_type = getattr(owner, "type_name", None) or "file"
        claim_path(self.ctx, "buffer", path, owner_type,
                   "Other '{other}' plugin already use same buffer path: "
                   f"type = {owner_type}, buffer path = {path}")
        if os.path.isdir(path) or (not os.path.exists(path) and ".*" not in path):
            self._own_directory = True
            if from_root or workers <= 1:
                self.pattern = os.path.join(path, f"buffer.*{suffix}")
            else:
                self.pattern = os.path.join(path, f"worker{self.ctx.worker_id}", f"buffer.*{suffix}")
                if self.ctx.worker_id == 0:
                    self.extra_resume = os.path.join(path, f"buffer.*{suffix}")
        elif ".*." in os.path.basename(path):
            self.pattern = path
        elif path.endswith(".*"):
            self.pattern = path + suffix
        else:
            self.pattern = f"{path}.*{suffix}"

    def frame(self, data: bytes, records: int) -> bytes:
        # inside a gzip member a formatted batch keeps its frame: recovery still counts its records
        return frame_formatted(data, records) if self.formatted else data

    def _prefix_end(self) -> int:
        """Where the pattern's `.*` (the chunk id's place) starts."""
        return self.pattern.index(".*.") if ".*." in self.pattern else self.pattern.rindex(".*")

    def _chunk_path(self, unique_id: bytes) -> str:
        pos = self._prefix_end()
        return f"{self.pattern[:pos]}.b{unique_id.hex()}.{self.pattern[pos + 3:]}"

    def generate_chunk(self, unique_id: bytes, metadata: Metadata) -> Chunk:
        os.makedirs(os.path.dirname(self.pattern), exist_ok=True)
        chunk = FileChunk(unique_id, metadata, self.formatted, self.ctx.clock(), self._chunk_path(unique_id),
                          self._open, self.compress)
        try:
            chunk.create()
        except OSError:
            chunk.purge()
            raise
        self._symlink(chunk)
        return chunk

    def _symlink(self, chunk: Chunk) -> None:
        timekey = chunk.metadata.timekey
        if self.symlink_hook is not None and timekey is not None and timekey >= self._latest_timekey:
            self._latest_timekey = timekey
            self.symlink_hook(chunk)

    def enqueue_chunk(self, meta: Metadata) -> None:
        chunk = self.stage.get(meta)
        if isinstance(chunk, FileChunk) and chunk.record_count and not os.path.exists(chunk.path):
            try:
                rescued = chunk.rescue_removed_file()
            except OSError as exc:
                rescued = False
                self.log.warn("could not write back a buffer chunk whose file was removed", chunk=chunk.id,
                              error=str(exc))
            if rescued:
                self.log.warn("a staged buffer chunk's file was removed outside kawa; its data, still open, "
                              "is written back", chunk=chunk.id, records=chunk.record_count)
        super().enqueue_chunk(meta)

    def new_queued_chunk(self, metadata: Metadata, data: bytes, records: int,
                         checkpoint: tuple[str, int] | None = None) -> Chunk:
        # flush_mode immediate: two files written once each instead of create, append, rename
        # twice and rewrite the .meta on enqueue; the emitting input's checkpoint (kawa.delivery)
        # goes into that .meta as pending, committed by sync()
        unique_id = new_chunk_id(self.ctx.clock)
        path = self._chunk_path(unique_id).replace(f".b{unique_id.hex()}", f".q{unique_id.hex()}", 1)
        chunk = FileChunk(unique_id, metadata, self.formatted, self.ctx.clock(), path, self._open, self.compress)
        try:
            chunk.write_queued(data, records, checkpoint)
        except FileNotFoundError:   # the directory is made on the first chunk (and again if removed)
            os.makedirs(os.path.dirname(self.pattern), exist_ok=True)
            chunk.write_queued(data, records, checkpoint)
        if self.formatted and not self.compress and type(data) is bytes:
            self._keep_written(chunk, data)
        self._symlink(chunk)
        return chunk

    def _keep_written(self, chunk: FileChunk, data: bytes) -> None:
        """Let `chunk` hand `data` to its first read; older chunks beyond the bounds read their file."""
        if len(data) > KEEP_WRITTEN_BYTES:
            return
        chunk.written = data
        kept = [c for c in self._kept if c.written is not None]
        kept.append(chunk)
        while len(kept) > KEEP_WRITTEN_CHUNKS or sum(len(c.written or b"") for c in kept) > KEEP_WRITTEN_BYTES:
            kept.pop(0).written = None
        self._kept = kept

    async def start(self) -> None:
        # Locked before resume: another process on these chunks would flush and purge them too. A
        # directory of kawa's own (`path /x/buf`: buffer.*.log inside) is locked itself, so no file
        # of kawa's sits among the chunks; a pattern (`path /x/app.*.buf`) may share its directory,
        # so it gets a lock file named after its prefix.
        directory = os.path.dirname(self.pattern)
        os.makedirs(directory, exist_ok=True)
        prefix = self.pattern[:self._prefix_end()]
        self._lock = acquire(directory if self._own_directory else prefix + LOCK_SUFFIX,
                             f"buffer path {self.pattern}", directory=self._own_directory)
        await super().start()
        delivery.register_store(self)

    async def stop(self) -> None:
        delivery.unregister_store(self)
        await super().stop()
        if self._lock is not None:
            release(self._lock)
            self._lock = None

    def forget_checkpoint(self, key: str) -> None:
        """kawa.delivery.forget: no chunk may keep an offset for `key` (it names other content now)."""
        for chunk in self.chunks():
            if isinstance(chunk, FileChunk) and chunk.state != "purged" and chunk.forget(key):
                try:
                    chunk._write_meta_unsynced()
                except OSError as exc:
                    self.log.warn("could not drop an input checkpoint from a buffer chunk; after a restart "
                                  "the input may resume at a wrong offset", chunk_id=chunk.id, error=str(exc))

    async def sync(self, chunks: list[Chunk], checkpoint: tuple[str, int] | None = None) -> None:
        if checkpoint is not None:
            # The commit: each .meta is replaced now, in the same loop step as the data append, and
            # fsync'd below with the data. One committed .meta is enough: at resume the pending
            # ranges of the same emit in the others are kept too (see resume).
            key, offset = checkpoint
            for chunk in chunks:
                if isinstance(chunk, FileChunk) and chunk.state != "purged" and chunk.commit(key, offset):
                    chunk.write_meta()
                    chunk.meta_unsynced = True
        targets = [chunk.sync_target() for chunk in chunks if isinstance(chunk, FileChunk)]

        def run() -> None:
            try:
                for fd, paths in targets:
                    if fd is not None:
                        os.fdatasync(fd)
                    for path in paths:
                        _fsync_path(path)
            finally:
                for fd, _paths in targets:
                    if fd is not None:
                        os.close(fd)
            dir_fd = os.open(os.path.dirname(self.pattern), os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        for chunk in chunks:
            chunk.syncing += 1
        try:
            await asyncio.to_thread(run)
        finally:
            for chunk in chunks:
                chunk.syncing -= 1

    # -- resume -----------------------------------------------------------------------------------
    def resume(self) -> tuple[list[Chunk], list[Chunk]]:
        staged: dict[Metadata, Chunk] = {}
        queued: list[Chunk] = []
        paths = [path for pattern in (self.extra_resume, self.pattern) if pattern
                 for path in sorted(glob.glob(glob.escape(pattern).replace(glob.escape(".*"), ".*", 1)
                                              .replace(".*", ".[bq]*", 1)))
                 if not path.endswith((".meta", ".tmp")) and os.path.isfile(path)]
        metas = {path: self._load_meta(path) for path in paths}
        committed = committed_checkpoints(metas.values())
        for path in paths:
            chunk = self._resume_one(path, metas[path], committed)
            if chunk is not None:
                for key, offset in (chunk.checkpoints or {}).items():
                    delivery.note_recovered_checkpoint(key, offset)
                # a staged chunk stored with another `compress` than configured takes no appends
                if (chunk.state == "staged" and chunk.metadata not in staged and not self._full(chunk)
                        and chunk.compressed == self.compress):
                    staged[chunk.metadata] = chunk
                else:
                    chunk.enqueued()
                    queued.append(chunk)
        return list(staged.values()), queued

    @staticmethod
    def _load_meta(path: str) -> dict[str, Any] | None:
        """The chunk's .meta; a kill between enqueue's two renames leaves it under the other state's name."""
        meta = _read_meta(path + ".meta")
        m = _CHUNK_NAME.search(path)
        if meta is None and m is not None:
            state, hex_id = m.group(1), m.group(2)
            other = path.replace(f".{state}{hex_id}", f".{'b' if state == 'q' else 'q'}{hex_id}", 1) + ".meta"
            meta = _read_meta(other)
            if meta is not None:
                os.replace(other, path + ".meta")
        return meta

    def _settle_pending(self, chunk: FileChunk, pending: Any, committed: dict[str, int],
                        data: bytes) -> bytes:
        """Resolve the appends a kill -9 left pending: kept when their emit committed (in any chunk),
        else cut out, since the input did not move past them and reads them again. The .meta is
        rewritten first: a crash before the data is can only leave those bytes in (read twice),
        never cut a range twice."""
        for key, offset, _start, _end in pending_entries(pending):
            if committed.get(key, -1) >= offset:
                chunk.commit(key, offset)
        cuts = uncommitted_ranges(pending, committed, len(data))
        chunk.pending = None
        if not cuts:
            return data
        cut = cut_ranges(data, cuts)
        records = records_in(data, cuts, chunk.formatted, chunk.compressed)
        self.log.info("dropped buffered events whose input had not committed them before the stop; "
                      "the input reads them again", chunk=chunk.path, records=records, bytes=len(data) - len(cut))
        return cut

    def _resume_one(self, path: str, meta: dict[str, Any] | None, committed: dict[str, int]) -> FileChunk | None:
        m = _CHUNK_NAME.search(path)
        if m is None:
            return None
        state, hex_id = m.group(1), m.group(2)
        if meta is None:
            self._broken(path, "metadata file is missing or unreadable")
            return None
        formatted = bool(meta.get("f", 0))
        with open(path, "rb") as f:
            data = f.read()
        # Fluentd's .meta does not say; it reads chunks with the configured `compress`: kawa sniffs
        compressed = meta["compress"] == "gzip" if "compress" in meta else is_gzip(data)
        if formatted != self.formatted:
            self._broken(path, "chunk was written by an output with a different format")
            return None
        metadata = Metadata(meta.get("timekey"), meta.get("tag"), meta.get("variables"))
        created = int(meta.get("c", 0)) * NS_PER_SEC
        unique_id = meta.get("id") if isinstance(meta.get("id"), bytes) else bytes.fromhex(hex_id)
        chunk = FileChunk(unique_id, metadata, formatted, created, path, self._open, compressed)
        chunk.modified_at = int(meta.get("m", 0)) * NS_PER_SEC
        chunk.state = "staged" if state == "b" else "queued"
        checkpoints = meta.get("checkpoints")
        if isinstance(checkpoints, dict):
            chunk.checkpoints = {str(k): int(v) for k, v in checkpoints.items() if isinstance(v, int)}
        pending = meta.get("pending")
        original = data
        readable = salvage(self._settle_pending(chunk, pending, committed, data) if pending else data,
                           formatted, compressed)
        if readable.damaged:
            self.recovered_lost_bytes += readable.lost
            self.log.warn("recovered a damaged buffer chunk; damaged bytes dropped", chunk=path,
                          records_kept=readable.records, records_in_meta=meta.get("s"), bytes_lost=readable.lost)
        if readable.records == 0:
            chunk.purge()
            return None
        data = readable.data
        chunk.record_count = readable.records
        chunk.file_size = len(data)
        # bytesize: stored bytes when compressed (Fluentd's), else the data without kawa's frames
        chunk.bytesize = len(data) if compressed or not formatted else sum(map(len, payloads(data)))
        if pending:
            chunk.write_meta()           # before the data: see _settle_pending
        if data is not original:
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        self.log.debug("restoring buffer file", path=path)
        return chunk

    def _broken(self, path: str, reason: str) -> None:
        """Fluentd buf_file.rb handle_broken_files: log, back up, delete; never crash-loop."""
        self.log.error("found broken chunk file during resume.", path=path, err_msg=reason)
        root = getattr(self.ctx.system, "root_dir", None) or os.environ.get("FLUENT_BACKUP_DIR") or "/tmp/fluent"
        owner = self.plugin_id.rsplit(".buffer", 1)[0]
        dest = os.path.join(root, "backup", f"worker{self.ctx.worker_id}", re.sub(r'[ "/\\:;|*<>?]', "_", owner),
                            os.path.basename(path))
        try:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.replace(path, dest)
            self.log.warn(f"bad chunk is moved to {dest}")
        except OSError as exc:
            self.log.error("backup failed. Delete corresponding files.", err_msg=str(exc))
            try:
                os.unlink(path)
            except OSError:
                pass
        for p in (path + ".meta",):
            try:
                os.unlink(p)
            except OSError:
                pass


def _fsync_path(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:          # purged meanwhile (written and deleted)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pending_entries(pending: Any) -> Iterator[tuple[str, int, int, int]]:
    """(key, offset, start, end) of each well-formed entry of a .meta's `pending` (FileChunk.pending)."""
    for key, entry in (pending.items() if isinstance(pending, dict) else ()):
        if isinstance(entry, list) and len(entry) == 3 and all(isinstance(v, int) for v in entry):
            yield str(key), entry[0], entry[1], entry[2]


def uncommitted_ranges(pending: Any, committed: dict[str, int], size: int) -> list[tuple[int, int]]:
    """The byte ranges (within `size`) of pending appends whose emit no chunk committed."""
    return [(start, min(end, size)) for key, offset, start, end in pending_entries(pending)
            if committed.get(key, -1) < offset and start < size]


def cut_ranges(data: bytes, ranges: list[tuple[int, int]]) -> bytes:
    kept, pos = [], 0
    for start, end in sorted(ranges):
        kept.append(data[pos:start])
        pos = max(pos, end)
    kept.append(data[pos:])
    return b"".join(kept)


def records_in(data: bytes, ranges: list[tuple[int, int]], formatted: bool, compressed: bool) -> int:
    """How many records the byte ranges of a chunk's data hold (what a cut takes out)."""
    return sum(salvage(data[a:b], formatted, compressed).records for a, b in ranges)


def committed_checkpoints(metas: Iterable[dict[str, Any] | None]) -> dict[str, int]:
    """key -> the highest checkpoint any chunk committed (an emit is committed when one of the
    chunks it touched says so: Buffer.sync commits them one .meta at a time)."""
    committed: dict[str, int] = {}
    for meta in metas:
        checkpoints = meta.get("checkpoints") if meta is not None else None
        if isinstance(checkpoints, dict):
            for key, offset in checkpoints.items():
                if isinstance(offset, int) and offset > committed.get(str(key), -1):
                    committed[str(key)] = offset
    return committed


def _read_meta(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    try:
        if raw[:2] == META_HEADER and len(raw) > 6:
            size = struct.unpack(">I", raw[2:6])[0]
            data = msgpack.unpackb(raw[6:6 + size], raw=False, strict_map_key=False)
        else:
            data = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception:
        return None
    return data if isinstance(data, dict) else None
