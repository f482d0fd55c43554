"""The exec input: runs a command (once, or every run_interval) and parses its stdout into events,
as Fluentd's in_exec does (<parse> default tsv with time_type float, <extract> tag_key / time_key).
"""

from __future__ import annotations

import asyncio
from typing import Any

from kawa.config.schema import Options, option, section
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.event import Record
from kawa.plugins.base import Input, PluginContext
from kawa.plugins.inputs._extract import Extractor, ExtractOptions, extracted_runs

# in_exec.rb: config_set_default inside <parse>; applied when the section does not set them.
PARSE_DEFAULTS = {"time_type": "float", "time_key": None, "estimate_current_event": False}


class ExecOptions(Options):
    command = option(doc="Command line to run (through the shell).")
    connect_mode = option("read", "enum", choices=("read", "read_with_stderr"), doc="Read stdout, or stdout+stderr.")
    tag = option(None, doc="Tag of the events (or use <extract> tag_key).")
    run_interval = option(None, "time", doc="Run the command again this long after it ended; default: run once.")
    command_timeout = option(None, "time", doc="Kill the command after this long.")
    read_block_size = option(10240, "size", doc="Read size for stdout.")
    encoding = option(None, doc="Encoding of the command's output (default UTF-8, invalid bytes kept).")
    parse = section(plugin_kind="parser", default_type="tsv", doc="How to parse the output (default tsv).")
    extract = section(ExtractOptions, doc="Tag / time from record fields.")


@register("input", "exec")
class ExecInput(Input):
    Options = ExecOptions
    compat_sections = ("parse",)

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        extract = options.extract
        if not options.tag and not (extract and extract.tag_key):
            raise ConfigError("'tag' or 'tag_key' option is required on exec input")
        spec = options.parse
        if spec is None:
            from kawa.config.element import Element
            from kawa.config.schema import PluginSpec
            from kawa.engine import registry

            cls = registry.lookup("parser", "tsv")
            if cls is None:
                raise ConfigError("the default tsv parser is not available")
            spec = PluginSpec(cls, cls.Options.defaults(), Element("parse", ""))
        attrs = spec.element.attrs
        for name, value in PARSE_DEFAULTS.items():
            if name not in attrs and hasattr(spec.options, name):
                setattr(spec.options, name, value)
        if "time_format" in attrs and "time_type" not in attrs and hasattr(spec.options, "time_type"):
            spec.options.time_type = "string"
        self.parser = self.build_child(spec, "parse")
        self._encoding = options.encoding or "utf-8"
        self.extractor = Extractor(extract)
        self._task: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.kill()
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.error("exec failed to run command", command=self.options.command, error=str(exc))
            if self.options.run_interval is None:
                return
            await asyncio.sleep(self.options.run_interval)

    async def _run_once(self) -> None:
        stderr = asyncio.subprocess.STDOUT if self.options.connect_mode == "read_with_stderr" else None
        proc = await asyncio.create_subprocess_shell(self.options.command, stdout=asyncio.subprocess.PIPE,
                                                     stderr=stderr, stdin=asyncio.subprocess.DEVNULL)
        self._proc = proc
        assert proc.stdout is not None
        try:
            await asyncio.wait_for(self._consume(proc), self.options.command_timeout)
        except asyncio.TimeoutError:
            proc.kill()
            self.log.warn("exec command timed out", command=self.options.command)
        await proc.wait()

    async def _consume(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        whole_input = hasattr(self.parser, "parse_bytes")
        if whole_input:      # binary formats (msgpack) parse the whole output, as Fluentd's parse_io
            data = await proc.stdout.read()
            events, failures = self.parser.parse_bytes(data)
            await self._emit(events, failures)
            return
        pending = b""
        while True:
            block = await proc.stdout.read(self.options.read_block_size)
            if not block:
                break
            pending += block
            cut = pending.rfind(b"\n")
            if cut < 0:
                continue
            lines, pending = pending[:cut], pending[cut + 1:]
            await self._parse_lines(lines)
        if pending:
            await self._parse_lines(pending)

    async def _parse_lines(self, data: bytes) -> None:
        text = data.decode(self._encoding, "surrogateescape")
        lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
        events, failures = self.parser.parse_batch(lines)
        await self._emit(events, failures)

    async def _emit(self, parsed: list[tuple[int | None, Record]], failures: list[Any]) -> None:
        for failure in failures:
            self.log.limited("exec-parse", "warn", f"pattern not matched: {failure.text!r}"
                             if failure.kind == "unmatched" else f"invalid line found: {failure.reason}")
        if not parsed:
            return
        for tag, events in extracted_runs(self.extractor, parsed, self.options.tag, self.ctx.clock(), self.log):
            await self.emitter.emit(tag, events)
