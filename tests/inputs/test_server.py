"""The network inputs' listeners: an error nobody foresaw in serving one client is a warning with
the client and the error (no traceback), and the listener goes on serving the others."""

from __future__ import annotations

import asyncio
import io

from kawa.log import LogSink, Logger
from kawa.plugins.inputs._server import DatagramInbox, StreamServer


def test_a_connection_that_breaks_its_handler_is_logged_and_the_next_is_served() -> None:
    stream = io.StringIO()
    log = Logger(LogSink(stream, level="info"))
    served: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(100)
        if data == b"boom":
            raise RuntimeError("a case nobody foresaw")
        served.append(data)

    async def go() -> None:
        server = StreamServer(serve, log, "test")
        await server.start("127.0.0.1", 0, shared=False)
        for payload in (b"boom", b"fine"):
            _r, w = await asyncio.open_connection("127.0.0.1", server.port)
            w.write(payload)
            await w.drain()
            w.close()
            await asyncio.sleep(0.1)
        await server.stop()

    asyncio.run(go())
    assert served == [b"fine"]
    text = stream.getvalue()
    assert 'test input: closing a connection after an unexpected error host="127.0.0.1" ' \
           'error="RuntimeError: a case nobody foresaw"' in text, text
    assert "Traceback" not in text


def test_datagrams_that_break_their_handler_are_logged_and_the_next_are_delivered() -> None:
    stream = io.StringIO()
    log = Logger(LogSink(stream, level="info"))
    got: list[bytes] = []

    async def deliver(datagrams: list[bytes], address: str) -> None:
        if datagrams == [b"boom"]:
            raise ValueError("bad")
        got.extend(datagrams)

    async def go() -> None:
        inbox = DatagramInbox(deliver, log, "test")
        await inbox.start("127.0.0.1", 0, shared=False)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                           remote_addr=("127.0.0.1", inbox.port))
        transport.sendto(b"boom")
        await asyncio.sleep(0.1)
        transport.sendto(b"fine")
        await asyncio.sleep(0.1)
        transport.close()
        await inbox.stop()

    asyncio.run(go())
    assert got == [b"fine"]
    assert "test input: datagrams dropped after an unexpected error" in stream.getvalue()
