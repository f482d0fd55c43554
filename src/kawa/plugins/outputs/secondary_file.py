"""Fluentd's out_secondary_file: in a <secondary>, the chunks the primary could not write, as files
(`<directory>/<basename>.<n>`, or appended to one file with `append`), for later replay.

A chunk of events is written as Fluentd writes it: a msgpack stream of [EventTime, record], which
fluent-cat --format msgpack, fluent-binlog-reader and `kawa buffer replay` read. A chunk holding an
output's own text (out_file's lines) is written as that text. cloudwatch_logs' chunks are written as
events: their records, the message JSON parsed back.
"""

from __future__ import annotations

import asyncio
import fcntl
import gzip
import os
import re
import time as _time
from typing import Any


from kawa.buffer.output import BufferedOptions, BufferedOutput
from kawa.config.schema import option
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.plugins.base import PluginContext
from kawa.plugins.inputs._forward.protocol import pack_entries

_PLACEHOLDER = re.compile(r"\$\{(tag(\[\d+\])?|[\w.@-]+)\}")


class SecondaryFileOptions(BufferedOptions):
    directory = option(doc="The directory of the files.")
    basename = option("dump.bin", doc="The file name (an index .0, .1, ... is added unless append).")
    append = option(False, "bool", doc="Append every chunk to one file.")
    compress = option("text", "enum", choices=("text", "gzip"), doc="gzip each chunk (the file gets .gz).")


@register("output", "secondary_file")
class SecondaryFileOutput(BufferedOutput):
    Options = SecondaryFileOptions
    multi_workers_ready = True

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        o = options
        if not self.as_secondary:
            raise ConfigError("This plugin can only be used in the <secondary> section")
        if "/" in o.basename:
            raise ConfigError("basename should not include `/`")
        self.path_without_suffix = os.path.join(o.directory, o.basename)
        self._check_placeholders(self.path_without_suffix)
        self.suffix = ".gz" if o.compress == "gzip" else ""
        self._lock = asyncio.Lock()
        self.written: list[str] = []

    def _check_placeholders(self, path: str) -> None:
        keys = self.chunk_keys
        if not keys.time and _time.strftime(path) != path:
            raise ConfigError("out_secondary_file: basename or directory has an incompatible placeholder, remove "
                              "time formats, like `%Y%m%d`, from basename or directory")
        names = [m.group(1) for m in _PLACEHOLDER.finditer(path)]
        for name in names:
            if re.fullmatch(r"tag(\[\d+\])?", name):
                if not keys.tag:
                    raise ConfigError(f"out_secondary_file: basename or directory has an incompatible placeholder "
                                      f"{name}, remove tag placeholder, like `${{tag}}`, from basename or directory")
            elif name != "chunk_id" and name not in keys.records:
                raise ConfigError(f"out_secondary_file: basename or directory has an incompatible placeholder {name}, "
                                  "remove variable placeholder, like `${varname}`, from basename or directory")

    async def write(self, chunk: Any) -> None:
        primary = self.primary if self.primary is not None else self
        events = primary.chunk_events(chunk)
        data = pack_entries(events) if events is not None else chunk.read()
        if self.options.compress == "gzip":
            data = gzip.compress(data)
        path_without_suffix = self.extract_placeholders(self.path_without_suffix, chunk)
        async with self._lock:           # two chunks must not take the same free index
            path = await asyncio.to_thread(self._write_file, path_without_suffix, data)
        self.written.append(path)

    def _write_file(self, path_without_suffix: str, data: bytes) -> str:
        os.makedirs(os.path.dirname(path_without_suffix) or ".", exist_ok=True)
        if self.options.append:
            path = path_without_suffix + self.suffix
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        else:
            i = 0
            while os.path.exists(f"{path_without_suffix}.{i}{self.suffix}"):
                i += 1
            path = f"{path_without_suffix}.{i}{self.suffix}"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        fd = os.open(path, flags | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        return path

