"""Fluentd's in_tcp: text messages over TCP, each ended by `delimiter` ("\\n"), parsed by <parse>.

A client's messages are emitted as they arrive, one batch per read; while an emit waits (a full
buffer with overflow_action block), that connection is not read, so TCP holds its sender back.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kawa import tls
from kawa.config.schema import Options, option, section
from kawa.engine.registry import register
from kawa.plugins.base import PluginContext
from kawa.plugins.inputs._forward.security import allowed, client_network
from kawa.plugins.inputs._server import StreamServer
from kawa.plugins.inputs._text_socket import TextSocketInput, TextSocketOptions

READ_SIZE = 64 * 1024


class ClientSection(Options):
    host = option(None, doc="The IP address or host name of the client.")
    network = option(None, doc="Network address specification (CIDR).")


class TcpSecuritySection(Options):
    clients = section(ClientSection, multi=True, required=True, aliases=("client",),
                      doc="The clients allowed to connect.")


class TcpOptions(TextSocketOptions):
    port = option(5170, "integer", doc="The port to listen on.")
    message_length_limit = option(None, "size", doc="Longer messages are dropped (logged at info).")
    delimiter = option("\n", doc="The end of each message.")
    send_keepalive_packet = option(False, "bool", doc="Enable TCP keepalive probes on connections.")
    security = section(TcpSecuritySection, doc="The clients allowed to connect.")
    transport = section(tls.TransportOptions, doc="<transport tcp|tls>: socket and TLS settings.")


@register("input", "tcp")
class TcpInput(TextSocketInput):
    Options = TcpOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        self.networks = [client_network(c.host, c.network) for c in options.security.clients] \
            if options.security is not None else None
        transport = options.transport if options.transport is not None else tls.TransportOptions.defaults()
        self.transport = transport
        self.listener = StreamServer(self._serve, self.log, "tcp", tls=tls.listener_context(transport, self.log))

    @property
    def port(self) -> int:
        return self.listener.port or int(self.options.port)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "tls_handshake_failures": self.listener.tls_failures}

    async def start(self) -> None:
        o = self.options
        self.log.info("listening tcp socket", bind=o.bind, port=o.port)
        await self.listener.start(o.bind, o.port, shared=self.shared_port)

    async def stop(self) -> None:
        await self.listener.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        o = self.options
        address = str((writer.get_extra_info("peername") or ("",))[0])
        if self.networks is not None and not allowed(self.networks, address):
            self.log.warn(f"anonymous client '{address}' denied")
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            tls.apply_socket_options(sock, self.transport, keepalive=o.send_keepalive_packet)
        delimiter = o.delimiter.encode("utf-8")
        limit = o.message_length_limit
        pending = b""
        discarding = False          # the rest of an over-long message, until its delimiter
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                return
            pending += data
            *messages, pending = pending.split(delimiter)
            texts: list[str] = []
            for raw in messages:
                if discarding:
                    discarding = False
                    continue
                if limit is not None and len(raw) > limit:
                    self.counters["dropped_long"] += 1
                    self.log.info("The received data is larger than 'message_length_limit', dropped:", limit=limit,
                                  size=len(raw), head=raw[:32].decode("utf-8", "replace"))
                    continue
                texts.append(raw.decode("utf-8", "surrogateescape"))
            if limit is not None and len(pending) > limit:
                self.counters["dropped_long"] += 1
                self.log.info("The buffer size exceeds 'message_length_limit', cleared:", limit=limit,
                              size=len(pending), head=pending[:32].decode("utf-8", "replace"))
                pending, discarding = b"", True
            await self.emit_messages(texts, address)
