"""The stdout output: prints each event to kawa's own log stream (or stdout) without a log prefix,
in the stdout formatter's "<time> <tag>: <json>" form, as Fluentd's out_stdout does. With a `<buffer>`
section it is buffered: lines are formatted at emit time and printed when their chunk is written.
"""

from __future__ import annotations

import sys
from typing import Any

from kawa.buffer.output import BufferedOutput
from kawa.config.element import Element
from kawa.config.schema import ENCLOSING_TYPE, Options, PluginSpec, option, section
from kawa.engine import registry
from kawa.event import Event
from kawa.plugins.base import Output, PluginContext
from kawa.plugins.inject import InjectOptions, Injector


class StdoutOptions(Options):
    use_logger = option(True, "bool", doc="Write to kawa's log stream (the -o file when given) instead of stdout.")
    format = section(plugin_kind="formatter", default_type="stdout", doc="Line format (default: stdout).")
    inject = section(InjectOptions, doc="Keys to add to each record.")
    buffer = section(plugin_kind="buffer", default_type="memory", doc="Makes the output buffered.")
    secondary = section(plugin_kind="output", default_type=ENCLOSING_TYPE, doc="With <buffer>: output for chunks that cannot be written.")


@registry.register("output", "stdout")
class StdoutOutput(Output):
    Options = StdoutOptions
    compat_sections = ("inject", "format")

    def __new__(cls, options: Any, ctx: PluginContext) -> Any:
        # A <buffer> section selects the buffered variant, as Fluentd decides from the configuration.
        if cls is StdoutOutput and getattr(options, "buffer", None) is not None:
            return super().__new__(BufferedStdoutOutput)
        return super().__new__(cls)

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        spec = options.format
        if spec is None:
            cls = registry.lookup("formatter", "stdout")
            assert cls is not None
            spec = PluginSpec(cls, cls.Options.defaults(), Element("format", ""))
        self.formatter = self.build_child(spec, "format")
        self.injector = Injector(options.inject, self.log, ctx.worker_id)

    def _stream(self) -> Any:
        return self.log.sink.stream if self.options.use_logger else sys.stdout

    async def process(self, tag: str, events: list[Event]) -> None:
        text = self.formatter.format_batch(tag, self.injector.inject_batch(tag, events))
        stream = self._stream()
        stream.write(text)
        stream.flush()


class BufferedStdoutOutput(BufferedOutput, StdoutOutput):
    """out_stdout with <buffer>: chunks hold the formatted lines; writing a chunk prints them."""

    def format_events(self, tag: str, events: list[Event]) -> bytes:
        text = self.formatter.format_batch(tag, self.injector.inject_batch(tag, events))
        return text.encode("utf-8", "surrogateescape")  # type: ignore[no-any-return]

    async def write(self, chunk: Any) -> None:
        stream = self._stream()
        stream.write(chunk.read().decode("utf-8", "surrogateescape"))
        stream.flush()
