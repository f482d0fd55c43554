"""`<buffer> @type memory`: chunks held in process memory (lost on kill; flushed at shutdown).

Defaults as Fluentd buf_memory: chunk_limit_size 8m, total_limit_size 512m, flush_at_shutdown true.
"""

from __future__ import annotations

from typing import Iterable

from kawa.buffer.buffer import Buffer
from kawa.buffer.chunk import Chunk, Metadata
from kawa.buffer.compression import decompress
from kawa.buffer.options import BufferOptions
from kawa.engine.registry import register


class MemoryChunk(Chunk):
    """Data kept as a list of appended pieces, joined once when read (compressed: one gzip member
    per piece, decompressed piece by piece on every read, never kept decompressed)."""

    def __init__(self, unique_id: bytes, metadata: Metadata, formatted: bool, created_at: int,
                 compressed: bool = False) -> None:
        super().__init__(unique_id, metadata, formatted, created_at, compressed)
        self._pieces: list[bytes] = []

    def _append(self, data: bytes, records: int, checkpoint: tuple[str, int] | None) -> None:
        self._pieces.append(data)      # nothing in memory survives a restart: no checkpoint to keep

    def _data_mark(self) -> int:
        return len(self._pieces)

    def _rollback(self, data_mark: int) -> None:
        del self._pieces[data_mark:]   # _raw joins pieces only when flushing, never inside a write

    def _raw(self) -> bytes:
        if self.compressed:
            return b"".join(self._plain_pieces())
        if len(self._pieces) > 1:
            self._pieces = [b"".join(self._pieces)]
        return self._pieces[0] if self._pieces else b""

    def _plain_pieces(self) -> Iterable[bytes]:
        if not self.compressed:
            return tuple(self._pieces)         # no joined copy of the whole chunk
        return (decompress(piece) for piece in list(self._pieces))

    def purge(self) -> None:
        super().purge()
        self._pieces = []


@register("buffer", "memory")
class MemoryBuffer(Buffer):
    """Fluentd buf_memory."""

    class Options(BufferOptions):
        pass

    persistent = False

    def generate_chunk(self, unique_id: bytes, metadata: Metadata) -> Chunk:
        return MemoryChunk(unique_id, metadata, self.formatted, self.ctx.clock(), self.compress)
