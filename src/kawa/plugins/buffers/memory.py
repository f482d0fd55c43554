"""`<buffer> @type memory`: chunks held in process memory (lost on kill; flushed at shutdown).

Defaults as Fluentd buf_memory: chunk_limit_size 8m, total_limit_size 512m, flush_at_shutdown true.
"""

from __future__ import annotations

from typing import Iterable

from kawa.buffer.buffer import Buffer
from kawa.buffer.chunk import Chunk, HeldFrames, Metadata, as_bytes
from kawa.buffer.compression import decompress
from kawa.buffer.options import BufferOptions
from kawa.engine.registry import register


class MemoryChunk(Chunk):
    """Data kept as a list of appended pieces, joined once when read (compressed: one gzip member
    per piece, decompressed piece by piece on every read, never kept decompressed). Uncompressed, a
    piece may be an output's HeldFrames (its objects, packed only if the chunk is read as bytes)."""

    def __init__(self, unique_id: bytes, metadata: Metadata, formatted: bool, created_at: int,
                 compressed: bool = False) -> None:
        super().__init__(unique_id, metadata, formatted, created_at, compressed)
        self._pieces: list[bytes | HeldFrames] = []

    def _append(self, data: bytes, records: int, checkpoint: tuple[str, int] | None) -> None:
        self._pieces.append(data)      # nothing in memory survives a restart: no checkpoint to keep

    def _data_mark(self) -> int:
        return len(self._pieces)

    def _rollback(self, data_mark: int) -> None:
        del self._pieces[data_mark:]   # _raw joins pieces only when flushing, never inside a write

    def _raw(self) -> bytes:
        if self.compressed:
            return b"".join(self._plain_pieces())
        if self.held() is not None:            # kept held: its output reads the objects when it writes
            return b"".join(map(as_bytes, self._pieces))
        if len(self._pieces) > 1:
            self._pieces = [b"".join(map(as_bytes, self._pieces))]
        return self._pieces[0] if self._pieces else b""  # type: ignore[return-value]

    def _plain_pieces(self) -> Iterable[bytes]:
        if not self.compressed:
            return tuple(map(as_bytes, self._pieces))         # no joined copy of the whole chunk
        return (decompress(piece) for piece in list(self._pieces))  # type: ignore[arg-type]

    def held(self) -> list[HeldFrames] | None:
        pieces = self._pieces
        if pieces and all(piece.__class__ is HeldFrames for piece in pieces):
            return pieces  # type: ignore[return-value]
        return None

    def purge(self) -> None:
        super().purge()
        self._pieces = []


@register("buffer", "memory")
class MemoryBuffer(Buffer):
    """Fluentd buf_memory."""

    class Options(BufferOptions):
        pass

    persistent = False
    holds_objects = True           # uncompressed chunks keep HeldFrames as they are

    def generate_chunk(self, unique_id: bytes, metadata: Metadata) -> Chunk:
        return MemoryChunk(unique_id, metadata, self.formatted, self.ctx.clock(), self.compress)
