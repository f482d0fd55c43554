"""Fluentd's in_syslog: syslog messages over UDP (default) or TCP, parsed by <parse> (default: the
syslog parser with <pri>), tagged `<tag>.<facility>.<severity>`.

TCP frames are newline-ended (`frame_type traditional`) or RFC 6587 octet-counted ("<length> <message>").
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from kawa.config.element import Element
from kawa.config.schema import Options, PluginSpec, option, section
from kawa.engine import registry
from kawa.errors import ConfigError
from kawa.event import Event
from kawa.log import ruby_inspect
from kawa.plugins.base import PluginContext
from kawa.plugins.inputs._text_socket import TextSocketInput

FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
              "ftp", "ntp", "audit", "alert", "at", "local0", "local1", "local2", "local3", "local4", "local5",
              "local6", "local7")
SEVERITIES = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")
_PRI = re.compile(r"^<([0-9]+)>(.*)", re.S)
READ_SIZE = 64 * 1024
QUEUE_LIMIT = 10_000        # UDP messages waiting for the pipeline


class SyslogTransportSection(Options):
    pass


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
    transport = section(SyslogTransportSection, doc="<transport udp|tcp> (tls is refused).")


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
        if self.protocol not in ("udp", "tcp"):
            raise ConfigError(f"<transport {self.protocol}>: kawa's syslog input listens on udp or tcp "
                              "(TLS is not supported yet)")
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
        self.server: Any = None
        self._connections: set[asyncio.Task[None]] = set()
        self.queue: asyncio.Queue[tuple[str, str]] | None = None      # UDP: (message, address)
        self._drainer: asyncio.Task[None] | None = None
        self.counters["dropped_overflow"] = 0

    def received(self, text: str, address: str) -> None:
        assert self.queue is not None
        try:
            self.queue.put_nowait((text, address))
        except asyncio.QueueFull:
            self.counters["dropped_overflow"] += 1
            self.log.limited("syslog overflow", "warn", "syslog input: the pipeline is behind; a datagram was "
                             "dropped", queued=QUEUE_LIMIT)

    async def _drain(self) -> None:
        assert self.queue is not None
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty() and len(batch) < 1000:
                batch.append(self.queue.get_nowait())
            start = 0
            for i in range(1, len(batch) + 1):        # runs of one client, in arrival order
                if i == len(batch) or batch[i][1] != batch[start][1]:
                    await self.handle([text for text, _ in batch[start:i]], batch[start][1])
                    start = i

    @property
    def port(self) -> int:
        if self.protocol == "udp" and self.server is not None:
            return int(self.server.get_extra_info("sockname")[1])
        if self.server is not None and self.server.sockets:
            return int(self.server.sockets[0].getsockname()[1])
        return int(self.options.port)

    async def start(self) -> None:
        o = self.options
        self.log.info(f"listening syslog socket on {o.bind}:{o.port} with {self.protocol}")
        loop = asyncio.get_running_loop()
        if self.protocol == "udp":
            self.queue = asyncio.Queue(QUEUE_LIMIT)
            self.server, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(self), local_addr=(o.bind, o.port),
                                                                 reuse_port=self.shared_port or None)
            self._drainer = loop.create_task(self._drain())
        else:
            self.server = await asyncio.start_server(self._accept, o.bind, o.port, reuse_address=True,
                                                     reuse_port=self.shared_port or None)

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()
        if self._drainer is not None:
            self._connections.add(self._drainer)
            self._drainer = None
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            try:
                await task
            except BaseException:
                pass

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
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        address = str((writer.get_extra_info("peername") or ("",))[0])
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
                    *raw, pending = pending.split(delimiter)
                    messages = raw
                await self.handle([m.decode("utf-8", "surrogateescape") for m in messages], address)
        except (asyncio.CancelledError, ConnectionError):
            pass
        except ValueError as exc:            # an octet count that is not a number
            self.log.warn("syslog input: closing a connection whose framing is broken", host=address, error=str(exc))
        finally:
            self._connections.discard(task)
            writer.close()


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


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, plugin: SyslogInput) -> None:
        self.plugin = plugin

    def datagram_received(self, data: bytes, addr: Any) -> None:
        limit = self.plugin.options.message_length_limit
        text = data[:limit].decode("utf-8", "surrogateescape")
        if text.endswith("\n"):
            text = text[:-2] if text.endswith("\r\n") else text[:-1]
        self.plugin.received(text, str(addr[0]))
