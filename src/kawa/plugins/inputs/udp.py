"""Fluentd's in_udp: one text message per datagram (its trailing newline removed), parsed by <parse>.

UDP has no back-pressure: datagrams that arrive while an emit waits are queued up to a bound, and the
ones beyond it are dropped, counted and logged.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from kawa.config.schema import Options, option, section
from kawa.engine.registry import register
from kawa.plugins.base import PluginContext
from kawa.plugins.inputs._text_socket import TextSocketInput, TextSocketOptions

QUEUE_LIMIT = 10_000        # datagrams waiting for the pipeline


class UdpTransportSection(Options):
    receive_buffer_size = option(None, "size", doc="SO_RCVBUF of the socket.")


class UdpOptions(TextSocketOptions):
    port = option(5160, "integer", doc="The port to listen on.")
    message_length_limit = option(4096, "size", aliases=("body_size_limit",),
                                  doc="The largest datagram read (longer ones are cut, as recvfrom does).")
    remove_newline = option(True, "bool", doc="Remove the newline that ends a message.")
    receive_buffer_size = option(None, "size", deprecated="use receive_buffer_size in transport section instead.",
                                 doc="SO_RCVBUF of the socket.")
    transport = section(UdpTransportSection, doc="<transport udp>.")


@register("input", "udp")
class UdpInput(TextSocketInput):
    Options = UdpOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        self.transport: asyncio.DatagramTransport | None = None
        self.queue: asyncio.Queue[tuple[bytes, str]] | None = None
        self._task: asyncio.Task[None] | None = None
        self.counters["dropped_overflow"] = 0

    @property
    def port(self) -> int:
        if self.transport is not None:
            return int(self.transport.get_extra_info("sockname")[1])
        return int(self.options.port)

    async def start(self) -> None:
        if self.transport is not None:
            return
        o = self.options
        self.log.info("listening udp socket", bind=o.bind, port=o.port)
        loop = asyncio.get_running_loop()
        self.queue = asyncio.Queue(QUEUE_LIMIT)
        self.transport, _ = await loop.create_datagram_endpoint(lambda: _Receiver(self), local_addr=(o.bind, o.port),
                                                                reuse_port=self.shared_port or None)
        size = (o.transport.receive_buffer_size if o.transport is not None else None) or o.receive_buffer_size
        sock = self.transport.get_extra_info("socket")
        if size and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        self._task = loop.create_task(self._drain())

    async def stop(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def received(self, data: bytes, address: str) -> None:
        assert self.queue is not None
        limit = self.options.message_length_limit
        if limit and len(data) > limit:
            data = data[:limit]
        try:
            self.queue.put_nowait((data, address))
        except asyncio.QueueFull:
            self.counters["dropped_overflow"] += 1
            self.log.limited("udp overflow", "warn", "udp input: the pipeline is behind; a datagram was dropped",
                             queued=QUEUE_LIMIT)

    async def _drain(self) -> None:
        assert self.queue is not None
        remove_newline = self.options.remove_newline
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty() and len(batch) < 1000:
                batch.append(self.queue.get_nowait())
            by_address: dict[str, list[str]] = {}
            for data, address in batch:
                text = data.decode("utf-8", "surrogateescape")
                if remove_newline and text.endswith("\n"):
                    text = text[:-2] if text.endswith("\r\n") else text[:-1]
                by_address.setdefault(address, []).append(text)
            for address, texts in by_address.items():
                await self.emit_messages(texts, address)


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, plugin: UdpInput) -> None:
        self.plugin = plugin

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.plugin.received(data, str(addr[0]))
