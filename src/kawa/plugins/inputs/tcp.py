"""Fluentd's in_tcp: text messages over TCP, each ended by `delimiter` ("\\n"), parsed by <parse>.

A client's messages are emitted as they arrive, one batch per read; while an emit waits (a full
buffer with overflow_action block), that connection is not read, so TCP holds its sender back.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from kawa.config.schema import Options, option, section
from kawa.engine.registry import register
from kawa.plugins.base import PluginContext
from kawa.plugins.inputs._forward.security import allowed, client_network
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


@register("input", "tcp")
class TcpInput(TextSocketInput):
    Options = TcpOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        self.networks = [client_network(c.host, c.network) for c in options.security.clients] \
            if options.security is not None else None
        self.server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self.server is not None and self.server.sockets:
            return int(self.server.sockets[0].getsockname()[1])
        return int(self.options.port)

    async def start(self) -> None:
        if self.server is not None:
            return
        o = self.options
        self.log.info("listening tcp socket", bind=o.bind, port=o.port)
        self.server = await asyncio.start_server(self._accept, o.bind, o.port, reuse_address=True,
                                                 reuse_port=self.shared_port or None)

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            try:
                await task
            except BaseException:
                pass
        if server is not None:
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass                  # stop(): asyncio's server callback would log a cancelled task
        except ConnectionError:
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        o = self.options
        address = str((writer.get_extra_info("peername") or ("",))[0])
        if self.networks is not None and not allowed(self.networks, address):
            self.log.warn(f"anonymous client '{address}' denied")
            return
        sock = writer.get_extra_info("socket")
        if sock is not None and o.send_keepalive_packet:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
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
