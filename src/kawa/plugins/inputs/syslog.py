"""Fluentd's in_syslog: syslog messages over UDP (default) or TCP, parsed by <parse> (default: the
syslog parser with <pri>), tagged `<tag>.<facility>.<severity>`.

TCP frames are newline-ended (`frame_type traditional`) or RFC 6587 octet-counted ("<length> <message>").
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from kawa import tls
from kawa.config.element import Element
from kawa.config.schema import Options, PluginSpec, option, section
from kawa.engine import registry
from kawa.errors import ConfigError
from kawa.event import Event
from kawa.log import ruby_inspect
from kawa.plugins.base import PluginContext
from kawa.plugins.inputs._server import DatagramInbox, StreamServer
from kawa.plugins.inputs._text_socket import TextSocketInput, datagram_texts

FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
              "ftp", "ntp", "audit", "alert", "at", "local0", "local1", "local2", "local3", "local4", "local5",
              "local6", "local7")
SEVERITIES = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")
_PRI = re.compile(r"^<([0-9]+)>(.*)", re.S)
READ_SIZE = 64 * 1024


class SyslogInputOptions(Options):
    port = option(5140, "integer", doc="The port to listen on.")
    bind = option("0.0.0.0", doc="The address to listen on.")
    tag = option(doc="The tag prefix: events are tagged <tag>.<facility>.<severity>.")
    protocol_type = option(None, "enum", choices=("tcp", "udp"), deprecated="use transport directive",
                           doc="tcp or udp (old form of <transport>).")
    frame_type = option("traditional", "enum", choices=("traditional", "octet_count"), doc="TCP framing.")
    include_source_host = option(False, "bool", deprecated='use "source_hostname_key" or "source_address_key" '
                                 "instead.", doc="Put the client's address into source_host_key.")
    source_host_key = option("source_host", doc="The key of include_source_host.")
    emit_unmatched_lines = option(False, "bool", doc="Emit messages that do not parse as {unmatched_line}.")
    source_hostname_key = option(None, doc="Record key that gets the client's hostname.")
    resolve_hostname = option(None, "bool", doc="Resolve the client's hostname.")
    send_keepalive_packet = option(False, "bool", doc="Enable TCP keepalive probes (tcp only).")
    source_address_key = option(None, doc="Record key that gets the client's address.")
    severity_key = option(None, aliases=("priority_key",), doc="Record key that gets the severity.")
    facility_key = option(None, doc="Record key that gets the facility.")
    message_length_limit = option(2048, "size", doc="The largest UDP message read.")
    blocking_timeout = option(0.5, "time", no_effect="Cool.io's loop wait; asyncio has none",
                              doc="Fluentd's event loop wait.")
    delimiter = option("\n", doc="The end of each TCP message (traditional frames).")
    parse = section(plugin_kind="parser", default_type="syslog", doc="How messages are parsed (default syslog).")
    transport = section(tls.TransportOptions, doc="<transport udp|tcp|tls> (udp by default).")


@registry.register("input", "syslog")
class SyslogInput(TextSocketInput):
    Options = SyslogInputOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        element = options.parse.element if options.parse is not None else None
        if options.parse is None:
            cls = registry.lookup("parser", "syslog")
            assert cls is not None
            options.parse = PluginSpec(cls, cls.Options.defaults(), Element("parse", ""))
        parse_options = options.parse.options
        if hasattr(parse_options, "with_priority") and (element is None or "with_priority" not in element.attrs):
            parse_options.with_priority = True            # in_syslog's default inside <parse>
        super().__init__(options, ctx)
        o = options
        if "priority_key" in (o._element.attrs if o._element is not None else {}):
            self.log.warn("priority_key is deprecated. Use severity_key instead")
        self.protocol = o.protocol_type or (o.transport._arg.strip() if o.transport is not None else "") or "udp"
        if self.protocol not in ("udp", "tcp", "tls"):
            raise ConfigError(f"<transport {self.protocol}>: expected udp, tcp or tls")
        self.transport = o.transport if o.transport is not None else tls.TransportOptions.defaults()
        self.address_key = o.source_address_key
        if o.include_source_host:
            if o.source_address_key:
                raise ConfigError("specify either source_address_key or include_source_host")
            self.address_key = o.source_host_key
        self.hostname_key = o.source_hostname_key
        if o.source_hostname_key and o.resolve_hostname is False:
            raise ConfigError("resolve_hostname must be true with source_hostname_key")
        if o.send_keepalive_packet and self.protocol == "udp":
            raise ConfigError("send_keepalive_packet is available for tcp/tls")
        self.parse_priority = bool(getattr(self.parser, "with_priority", False))
        self.listener = StreamServer(self._serve_tcp, self.log, "syslog",
                                     tls=tls.server_context(self.transport, self.log) if self.protocol == "tls" else None)
        self.inbox = DatagramInbox(self._deliver_udp, self.log, "syslog")

    @property
    def port(self) -> int:
        bound = self.inbox.port if self.protocol == "udp" else self.listener.port
        return bound or int(self.options.port)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "dropped_overflow": self.inbox.dropped,
                "tls_handshake_failures": self.listener.tls_failures}

    async def start(self) -> None:
        o = self.options
        self.log.info(f"listening syslog socket on {o.bind}:{o.port} with {self.protocol}")
        if self.protocol == "udp":
            await self.inbox.start(o.bind, o.port, shared=self.shared_port)
        else:
            await self.listener.start(o.bind, o.port, shared=self.shared_port)

    async def stop(self) -> None:
        await self.inbox.stop()
        await self.listener.stop()

    async def _deliver_udp(self, datagrams: list[bytes], address: str) -> None:
        await self.handle(datagram_texts(datagrams, self.options.message_length_limit), address)

    # -- messages -----------------------------------------------------------------------------------
    async def handle(self, messages: list[str], address: str) -> None:
        """Parse, tag by facility and severity, emit (one batch per tag, in order of arrival)."""
        o = self.options
        host = await self.hostname(address) if self.hostname_key else None
        now = self.ctx.clock()
        runs: list[tuple[str, list[Event]]] = []
        for data in messages:
            pri: int | None = None
            text = data
            if not self.parse_priority:
                m = _PRI.match(data)
                if m is None:
                    self._unmatched(data, address, host, runs, now)
                    self.log.warn(f"invalid syslog message: {ruby_inspect(data)}")
                    continue
                pri, text = int(m.group(1)), m.group(2)
            parsed, failures = self.parser.parse_batch([text])
            if failures or not parsed:
                self._unmatched(data, address, host, runs, now)
                self.log.limited("syslog parse", "warn", f"failed to parse message data={ruby_inspect(data)}")
                continue
            time, record = parsed[0]
            if pri is None:
                pri = record.pop("pri", None)
            if not isinstance(pri, int):
                self._unmatched(data, address, host, runs, now)
                self.log.error(f"invalid input data={ruby_inspect(data)} error=\"no priority in the message\"")
                continue
            facility = FACILITIES[pri >> 3] if (pri >> 3) < len(FACILITIES) else None
            severity = SEVERITIES[pri & 7]
            if o.severity_key:
                record[o.severity_key] = severity
            if o.facility_key:
                record[o.facility_key] = facility
            self._source(record, address, host)
            self._add(runs, f"{o.tag}.{facility or ''}.{severity}", (time if time is not None else now, record))
        self.counters["messages"] += len(messages)
        for tag, events in runs:
            self.counters["events"] += len(events)
            try:
                await self.emitter.emit(tag, events)
            except Exception as exc:
                self.log.error("syslog failed to emit", error=f"{type(exc).__name__}: {exc}", tag=tag,
                               events=len(events))

    def _source(self, record: dict[str, Any], address: str, host: str | None) -> None:
        if self.address_key:
            record[self.address_key] = address
        if self.hostname_key:
            record[self.hostname_key] = host

    def _unmatched(self, data: str, address: str, host: str | None, runs: list[tuple[str, list[Event]]],
                   now: int) -> None:
        self.counters["unmatched"] += 1
        if self.options.emit_unmatched_lines:
            record: dict[str, Any] = {"unmatched_line": data}
            self._source(record, address, host)
            self._add(runs, f"{self.options.tag}.unmatched", (now, record))

    @staticmethod
    def _add(runs: list[tuple[str, list[Event]]], tag: str, event: Event) -> None:
        if runs and runs[-1][0] == tag:
            runs[-1][1].append(event)
        else:
            runs.append((tag, [event]))

    # -- TCP ----------------------------------------------------------------------------------------
    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = str((writer.get_extra_info("peername") or ("",))[0])
        sock = writer.get_extra_info("socket")
        if sock is not None:
            tls.apply_socket_options(sock, self.transport, keepalive=self.options.send_keepalive_packet)
        octet_count = self.options.frame_type == "octet_count"
        delimiter = self.options.delimiter.encode()
        pending = b""
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    return
                pending += data
                if octet_count:
                    messages, pending = _octet_frames(pending)
                else:
                    *messages, pending = pending.split(delimiter)
                await self.handle([m.decode("utf-8", "surrogateescape") for m in messages], address)
        except ValueError as exc:            # an octet count that is not a number
            self.log.warn("syslog input: closing a connection whose framing is broken", host=address, error=str(exc))


def _octet_frames(pending: bytes) -> tuple[list[bytes], bytes]:
    """RFC 6587 octet counting: "<length> <message>" frames; the rest waits for more bytes."""
    out: list[bytes] = []
    pos = 0
    while True:
        space = pending.find(b" ", pos)
        if space < 0:
            break
        size = int(pending[pos:space])
        end = space + 1 + size
        if end > len(pending):
            break
        out.append(pending[space + 1:end])
        pos = end
    return out, pending[pos:]
