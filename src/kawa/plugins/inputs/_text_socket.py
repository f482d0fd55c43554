"""What the tcp and udp inputs share: a required <parse>, the tag, the client's address and hostname
put into records, "pattern not matched" warnings, and the port shared by workers."""

from __future__ import annotations

from typing import Any

from kawa.config.schema import Options, option, section
from kawa.errors import ConfigError
from kawa.plugins.base import Input, PluginContext
from kawa.plugins.inputs._extract import Extractor, ExtractOptions, extracted_runs
from kawa.plugins.inputs._server import HostNames
from kawa.log import ruby_inspect


class TextSocketOptions(Options):
    tag = option(doc="Tag of the events.")
    bind = option("0.0.0.0", doc="The address to listen on.")
    source_host_key = option(None, deprecated="use source_hostname_key instead.", doc="Obsolete name of "
                             "source_hostname_key.")
    source_hostname_key = option(None, doc="Record key that gets the client's hostname.")
    source_address_key = option(None, doc="Record key that gets the client's address.")
    blocking_timeout = option(0.5, "time", no_effect="Cool.io's loop wait; asyncio has none",
                              doc="Fluentd's event loop wait.")
    parse = section(plugin_kind="parser", doc="How each message is parsed (required).")
    extract = section(ExtractOptions, doc="The tag and/or time from record fields.")


class TextSocketInput(Input):
    """Messages (text) -> parsed events, emitted per batch of messages of one read."""

    multi_workers_ready = True       # the workers share the port (SO_REUSEPORT), as Fluentd's do
    compat_sections = ("parse",)

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        if options.parse is None:
            raise ConfigError("<parse> section is required.")
        self.parser = self.build_child(options.parse, "parse")
        self.hostname_key = options.source_hostname_key or options.source_host_key
        self.counters = {"messages": 0, "events": 0, "unmatched": 0, "dropped_long": 0}
        self.hostnames = HostNames()
        self.extractor = Extractor(getattr(options, "extract", None))

    @property
    def shared_port(self) -> bool:
        return getattr(self.ctx.system, "workers", 1) > 1

    def stats(self) -> dict[str, Any]:
        return dict(self.counters)

    async def hostname(self, address: str) -> str:
        return await self.hostnames.of(address)

    async def emit_messages(self, texts: list[str], address: str) -> None:
        if not texts:
            return
        self.counters["messages"] += len(texts)
        parsed, failures = self.parser.parse_batch(texts)
        for failure in failures:
            self.counters["unmatched"] += 1
            self.log.limited("pattern not matched", "warn", f"pattern not matched message={ruby_inspect(failure.text)}")
        if not parsed:
            return
        now = self.ctx.clock()
        address_key, hostname_key = self.options.source_address_key, self.hostname_key
        host = await self.hostname(address) if hostname_key else None
        if self.extractor.enabled:
            runs = extracted_runs(self.extractor, parsed, self.options.tag, now, self.log)
        else:
            runs = [(self.options.tag, [(time if time is not None else now, record) for time, record in parsed])]
        for tag, events in runs:
            for _time, record in events:
                if address_key:
                    record[address_key] = address
                if hostname_key:
                    record[hostname_key] = host
            self.counters["events"] += len(events)
            try:
                await self.emitter.emit(tag, events)
            except Exception as exc:     # the sender cannot be told; say what was lost
                self.log.limited(f"{self.type_name} emit", "warn", f"{self.type_name} input: could not emit "
                                 "events; they are lost", events=len(events), error=f"{type(exc).__name__}: {exc}")


def datagram_texts(datagrams: list[bytes], limit: int | None, remove_newline: bool = True) -> list[str]:
    """UDP messages as text: cut at `limit` bytes (what Fluentd's recvfrom of that size reads), the
    bytes that are not UTF-8 kept (surrogate-escaped), a trailing newline removed (Ruby's chomp)."""
    texts = []
    for data in datagrams:
        text = (data[:limit] if limit else data).decode("utf-8", "surrogateescape")
        if remove_newline and text.endswith("\n"):
            text = text[:-2] if text.endswith("\r\n") else text[:-1]
        texts.append(text)
    return texts
