"""Fluentd's in_udp: one text message per datagram (its trailing newline removed), parsed by <parse>.

UDP has no back-pressure: datagrams that arrive while an emit waits are queued up to a bound, and the
ones beyond it are dropped, counted and logged (kawa.plugins.inputs._server.DatagramInbox).
"""

from __future__ import annotations

import socket
from typing import Any

from kawa.config.schema import Options, option, section
from kawa.engine.registry import register
from kawa.plugins.base import PluginContext
from kawa.plugins.inputs._server import DatagramInbox
from kawa.plugins.inputs._text_socket import TextSocketInput, TextSocketOptions, datagram_texts



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
        self.inbox = DatagramInbox(self._deliver, self.log, "udp")

    @property
    def port(self) -> int:
        return self.inbox.port or int(self.options.port)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "dropped_overflow": self.inbox.dropped}

    async def start(self) -> None:
        o = self.options
        self.log.info("listening udp socket", bind=o.bind, port=o.port)
        await self.inbox.start(o.bind, o.port, shared=self.shared_port)
        size = (o.transport.receive_buffer_size if o.transport is not None else None) or o.receive_buffer_size
        sock = self.inbox.transport.get_extra_info("socket") if self.inbox.transport is not None else None
        if size and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    async def stop(self) -> None:
        await self.inbox.stop()

    async def _deliver(self, datagrams: list[bytes], address: str) -> None:
        o = self.options
        await self.emit_messages(datagram_texts(datagrams, o.message_length_limit, o.remove_newline), address)
