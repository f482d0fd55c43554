"""The msgpack formatter: each record as one MessagePack map (Fluentd MessagePackFormatter, binary).

`format` returns the bytes as a surrogateescape str, the form every kawa writer encodes back to the
exact bytes; `format_bytes` gives them as bytes.
"""

from __future__ import annotations

from typing import Any, Sequence

import msgpack as _msgpack

from kawa.engine.registry import register
from kawa.event import Event, Record
from kawa.plugins.base import Formatter


@register("formatter", "msgpack")
class MsgpackFormatter(Formatter):
    binary = True

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        # Strings holding raw bytes (surrogateescape) are packed as those bytes, like Ruby's strings.
        self._pack = _msgpack.Packer(unicode_errors="surrogateescape").pack

    def format_bytes(self, tag: str, time: int, record: Record) -> bytes:
        return self._pack(record)  # type: ignore[no-any-return]

    def format(self, tag: str, time: int, record: Record) -> str:
        return self._pack(record).decode("utf-8", "surrogateescape")  # type: ignore[no-any-return]

    def format_batch(self, tag: str, events: Sequence[Event]) -> str:
        pack = self._pack
        return b"".join([pack(r) for _, r in events]).decode("utf-8", "surrogateescape")
