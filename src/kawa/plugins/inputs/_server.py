"""The listening sockets of the network inputs (forward, tcp, udp, syslog, http): one task per TCP
connection, all ended by stop(); UDP datagrams queued (bounded) and handed over in batches.

Workers share a port (SO_REUSEPORT) as Fluentd's share the supervisor's socket.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Awaitable, Callable

from kawa.log import Logger

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
# (messages of one client in arrival order, its address)
Deliver = Callable[[list[bytes], str], Awaitable[None]]
# A TLS client that connects and says nothing is dropped after this long (asyncio's default).
HANDSHAKE_TIMEOUT = 60.0


class StreamServer:
    """A TCP listener whose connections are served by `serve(reader, writer)`, each in its own task.
    The writer is closed when `serve` returns; a connection reset or stop() just ends it.

    `tls`: an ssl.SSLContext (kawa.tls, from `<transport tls>`). The handshake runs here rather than in
    asyncio's listener, so a failed one (a plain-TCP sender, a client certificate not trusted) gets
    Fluentd's warning instead of passing silently."""

    def __init__(self, serve: Serve, log: Logger, name: str, tls: Any = None) -> None:
        self._serve = serve
        self.log = log
        self.name = name
        self.tls = tls
        self.tls_failures = 0          # failed TLS handshakes (the inputs' tls_handshake_failures)
        self.server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int | None:
        """The port listened on (tests bind port 0), None before start."""
        if self.server is None or not self.server.sockets:
            return None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self, bind: str, port: int, *, shared: bool, **kwargs: Any) -> None:
        self.server = await asyncio.start_server(self._accept, bind, port, reuse_address=True,
                                                 reuse_port=shared or None, **kwargs)

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()
        await cancel_all(self._connections)
        if server is not None:
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            if self.tls is not None and not await self._tls_accept(writer):
                return
            await self._serve(reader, writer)
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            # stop() or the client: asyncio's server callback would log a cancelled task as an error
            pass
        except Exception as exc:    # what a client sent broke a case nobody foresaw: say so, no traceback
            peer = writer.get_extra_info("peername") or ("?",)
            self.log.limited(f"{self.name} connection error", "warn", f"{self.name} input: closing a connection "
                             "after an unexpected error", host=str(peer[0]), error=f"{type(exc).__name__}: {exc}")
        finally:
            self._connections.discard(task)
            writer.close()


    async def _tls_accept(self, writer: asyncio.StreamWriter) -> bool:
        try:
            await writer.start_tls(self.tls, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:     # ssl.SSLError is an OSError
            self.tls_failures += 1
            peer = writer.get_extra_info("peername") or ("?", 0)
            self.log.warn("unexpected error before accepting TLS connection by OpenSSL", addr=str(peer[0]),
                          host=str(peer[0]), port=peer[1],
                          error=getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}")
            return False
        return True


class DatagramInbox:
    """A UDP socket whose datagrams wait in a bounded queue; `deliver` gets them in batches, one call
    per run of datagrams from one client. UDP has no back-pressure: past `limit` waiting datagrams,
    new ones are dropped, counted and logged."""

    def __init__(self, deliver: Deliver, log: Logger, name: str, limit: int = 10_000) -> None:
        self._deliver = deliver
        self.log = log
        self.name = name
        self.limit = limit
        self.dropped = 0
        self.transport: asyncio.DatagramTransport | None = None
        self._queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue(limit)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int | None:
        if self.transport is None:
            return None
        return int(self.transport.get_extra_info("sockname")[1])

    async def start(self, bind: str, port: int, *, shared: bool) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: _Receiver(self), local_addr=(bind, port),
                                                                reuse_port=shared or None)
        self._task = loop.create_task(self._drain())

    async def stop(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        if self._task is not None:
            await cancel_all({self._task})
            self._task = None

    def received(self, data: bytes, address: str) -> None:
        try:
            self._queue.put_nowait((data, address))
        except asyncio.QueueFull:
            self.dropped += 1
            self.log.limited(f"{self.name} overflow", "warn", f"{self.name} input: the pipeline is behind; a "
                             "datagram was dropped", queued=self.limit)

    async def _drain(self) -> None:
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < 1000:
                batch.append(queue.get_nowait())
            start = 0
            for i in range(1, len(batch) + 1):
                if i == len(batch) or batch[i][1] != batch[start][1]:
                    try:
                        await self._deliver([data for data, _ in batch[start:i]], batch[start][1])
                    except Exception as exc:     # one client's datagrams must not end the input
                        self.log.limited(f"{self.name} datagram error", "warn", f"{self.name} input: datagrams "
                                         "dropped after an unexpected error", host=batch[start][1],
                                         datagrams=i - start, error=f"{type(exc).__name__}: {exc}")
                    start = i


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, inbox: DatagramInbox) -> None:
        self.inbox = inbox

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.inbox.received(data, str(addr[0]))


class HostNames:
    """Clients' names by reverse DNS, cached (a busy client is looked up once), or the address when it
    has none."""

    def __init__(self, limit: int = 4096) -> None:
        self._names: dict[str, str] = {}
        self._limit = limit

    async def of(self, address: str) -> str:
        name = self._names.get(address)
        if name is None:
            try:
                name, _ = await asyncio.get_running_loop().getnameinfo((address, 0), socket.NI_NAMEREQD)
            except OSError:
                name = address
            if len(self._names) >= self._limit:
                self._names.clear()
            self._names[address] = name
        return name


async def cancel_all(tasks: set[asyncio.Task[None]]) -> None:
    for task in list(tasks):
        task.cancel()
    for task in list(tasks):
        try:
            await task
        except BaseException:   # noqa: S110 - each ends as it may; nothing is left to report at stop
            pass
