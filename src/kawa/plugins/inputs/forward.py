"""Fluentd's in_forward: events from fluent-logger libraries, Docker's fluentd log driver, Fluent Bit
and other Fluentds, over TCP or TLS (`<transport tls>`, kawa.tls) (Forward protocol v1,
kawa.plugins.inputs._forward.protocol), with the UDP heartbeat on the same port and the optional
<security> handshake.

An ack ({"ack": chunk}, asked for by out_forward's require_ack_response) is sent once the events are
stored: in a file buffer, fsync'd; in a memory buffer, delivered by the output (nothing in memory
survives kill -9, and a sender that got its ack will not send again). Until then the sender keeps
the chunk. Fluentd acks as soon as the emit returned, which loses acked events in a memory buffer
on kill -9 (docs/compatibility.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import orjson

from kawa import delivery, tls
from kawa.config.schema import Options, option, section
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.event import Event
from kawa.plugins.base import Input, PluginContext
from kawa.plugins.inputs._forward import protocol
from kawa.plugins.inputs._forward.security import Handshake, SecuritySection
from kawa.plugins.inputs._server import HostNames, StreamServer, cancel_all
from kawa.ruby_values import ruby_inspect_value
from kawa.tls import TransportOptions

LISTEN_PORT = 24224
READ_SIZE = 256 * 1024
# A connection may hold this much of one message before it is complete (twice chunk_size_limit when
# that is larger): out_forward's chunks are 8 MiB by default (its buffer's chunk_limit_size).
DEFAULT_MESSAGE_LIMIT = 64 * 1024 * 1024
HEARTBEAT_REPLY = b"\0"


class ForwardOptions(Options):
    port = option(LISTEN_PORT, "integer", doc="The port to listen to (TCP, and UDP for heartbeats).")
    bind = option("0.0.0.0", doc="The bind address to listen to.")
    backlog = option(None, "integer", doc="The listen backlog (default: the system's).")
    linger_timeout = option(None, "integer", deprecated="use transport directive",
                            doc="SO_LINGER seconds on accepted connections (0: reset instead of FIN).")
    blocking_timeout = option(0.5, "time", no_effect="Cool.io's loop wait at shutdown; asyncio has none",
                              doc="Fluentd's event loop wait.")
    resolve_hostname = option(None, "bool", doc="Resolve the client's hostname from its address.")
    deny_keepalive = option(False, "bool", doc="Close each connection after its first message.")
    send_keepalive_packet = option(False, "bool", doc="Enable TCP keepalive probes on connections.")
    chunk_size_warn_limit = option(None, "size", doc="Warn when a message is larger than this.")
    chunk_size_limit = option(None, "size", doc="Drop a message larger than this (with a warning).")
    decompression_size_limit = option(256 * 1024 * 1024, "size", doc="Largest decompressed gzip entries.")
    skip_invalid_event = option(True, "bool", doc="Drop, with a warning, events whose time, record or tag "
                                "is not of the protocol's types.")
    source_address_key = option(None, doc="Record key that gets the client's address.")
    source_hostname_key = option(None, doc="Record key that gets the client's hostname.")
    tag = option(None, doc="Tag of every event instead of the one sent.")
    add_tag_prefix = option(None, doc="Prefix added (with a dot) to the incoming tag.")
    security = section(SecuritySection, doc="Shared-key handshake, users and allowed clients.")
    transport = section(TransportOptions, doc="<transport tcp|tls>: socket and TLS settings.")


class _Inspected:
    """A log field printed as Ruby's inspect of the value (a record as {"k"=>"v"})."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return ruby_inspect_value(self.value)


@register("input", "forward")
class ForwardInput(Input):

    multi_workers_ready = True        # the workers share the port (SO_REUSEPORT), as Fluentd's do
    Options = ForwardOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        o = options
        self.transport = o.transport if o.transport is not None else TransportOptions.defaults()
        self.tls = tls.listener_context(self.transport, self.log)
        self.resolve_hostname = o.resolve_hostname
        if o.source_hostname_key:
            if o.resolve_hostname is None:
                self.resolve_hostname = True
            elif not o.resolve_hostname:
                raise ConfigError("resolve_hostname must be true with source_hostname_key")
        if o.tag is not None and o.tag == "":
            raise ConfigError("'tag' parameter must not be empty")
        if o.add_tag_prefix is not None and o.add_tag_prefix == "":
            raise ConfigError("'add_tag_prefix' parameter must not be empty")
        if o.send_keepalive_packet and o.deny_keepalive:
            raise ConfigError("both 'send_keepalive_packet' and 'deny_keepalive' cannot be set to true")
        self.handshake = Handshake(o.security, not o.deny_keepalive, self.log) if o.security is not None else None
        # a message over chunk_size_limit is read whole, then dropped with Fluentd's warning
        self.message_limit = max(DEFAULT_MESSAGE_LIMIT, 2 * (o.chunk_size_limit or 0))
        self.listener = StreamServer(self._serve, self.log, "forward", tls=self.tls)
        self.hostnames = HostNames()
        self.heartbeat: asyncio.DatagramTransport | None = None
        self._acks: set[asyncio.Task[None]] = set()
        self.counters = {"connections": 0, "messages": 0, "events": 0, "acks": 0, "invalid_events": 0,
                         "dropped_messages": 0, "broken_connections": 0, "refused_handshakes": 0}

    # -- lifecycle ----------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The TCP port listened on (tests bind port 0)."""
        return self.listener.port or int(self.options.port)

    async def start(self) -> None:
        o = self.options
        shared = getattr(self.ctx.system, "workers", 1) > 1
        self.log.info("listening port", port=o.port, bind=o.bind)
        try:
            await self.listener.start(o.bind, o.port, shared=shared,
                                      **({"backlog": o.backlog} if o.backlog is not None else {}))
        except OSError as exc:
            raise OSError(exc.errno, f"forward input cannot listen on {o.bind}:{o.port}: {exc.strerror}") from None
        try:
            self.heartbeat, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _Heartbeat(self), local_addr=(o.bind, self.port), reuse_port=shared or None)
        except OSError as exc:     # TCP serves the events; a missing heartbeat only makes senders use TCP's
            self.log.warn("forward input: no UDP heartbeat", bind=o.bind, port=self.port, error=str(exc))

    async def stop(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.close()
            self.heartbeat = None
        # Connections end now; acks not yet sent are not sent (their senders resend those chunks).
        await cancel_all(self._acks)
        await self.listener.stop()

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "tls_handshake_failures": self.listener.tls_failures}

    # -- one connection -----------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        o = self.options
        peer = writer.get_extra_info("peername") or ("", 0)
        address, port = str(peer[0]), int(peer[1])
        sock = writer.get_extra_info("socket")
        if sock is not None:
            tls.apply_socket_options(sock, self.transport, keepalive=o.send_keepalive_packet,
                                     linger_timeout=o.linger_timeout)
        self.counters["connections"] += 1
        self.log.trace("accepted fluent socket", addr=address, port=port)
        conn = _Connection(address, port, writer)
        if o.source_hostname_key or self.handshake is not None:
            conn.hostname = await self._hostname(address)
        if self.handshake is not None:
            conn.nonce, conn.user_salt = Handshake.salt(), Handshake.salt()
            conn.send(msgpack.packb(self.handshake.helo(conn.nonce, conn.user_salt), use_bin_type=True))
            conn.authenticated = False
        decoder: Any = None
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                return
            conn.received += len(data)
            if decoder is None:
                json_mode = data[:1] in (b"{", b"[")
                decoder = protocol.JsonMessages(self.message_limit) if json_mode \
                    else protocol.unpacker(max_buffer_size=self.message_limit)
                conn.serialize = (lambda v: orjson.dumps(v)) if json_mode \
                    else (lambda v: msgpack.packb(v, use_bin_type=True))
            try:
                decoder.feed(data)
                for message in decoder:
                    size, conn.received = conn.received, 0
                    if not await self._on_message(conn, message, size):
                        await conn.drain()
                        return
            except _EmitRefused:
                return
            except msgpack.BufferFull:
                self.counters["broken_connections"] += 1
                self.log.warn("forward input: closing a connection whose message is larger than kawa holds for "
                              "one message", host=conn.host, port=port, limit=self.message_limit)
                return
            except (protocol.MessageError, ValueError, msgpack.UnpackException) as exc:
                # msgpack's BufferFull / OutOfData / FormatError / StackError, broken JSON
                self.counters["broken_connections"] += 1
                self.log.warn("forward input: closing a connection that sent data that is not the "
                              "Forward protocol", host=conn.hostname or address, port=port,
                              error=f"{type(exc).__name__}: {str(exc) or 'not valid msgpack'}")
                return
            await conn.drain()

    async def _hostname(self, address: str) -> str:
        return await self.hostnames.of(address) if self.resolve_hostname else address

    async def _on_message(self, conn: "_Connection", message: Any, size: int) -> bool:
        """Take one message; False when the connection must end (handshake refused, deny_keepalive)."""
        if not conn.authenticated:
            assert self.handshake is not None
            pong = self.handshake.check_ping(message, conn.address, conn.user_salt, conn.nonce)
            conn.send(conn.serialize(pong))
            if not pong[1]:
                self.counters["refused_handshakes"] += 1
                return False
            self.log.debug("connection established", address=conn.address, port=conn.port)
            conn.authenticated = True
            return True
        if message is None:            # a keepalive / future heartbeat request
            return True
        self.counters["messages"] += 1
        option, ticket = await self._emit_message(conn, message, size)
        chunk = option.get("chunk") if isinstance(option, dict) else None
        if chunk is not None:
            if ticket is None:
                self._send_ack(conn, chunk)          # nothing to wait for (no events, all invalid)
            elif self.options.deny_keepalive:
                await self._ack_when_stored(conn, chunk, ticket)     # the last message of this connection
            else:
                # out_forward sends further chunks while it waits for acks: do not hold the connection up
                task = asyncio.get_running_loop().create_task(self._ack_when_stored(conn, chunk, ticket))
                self._acks.add(task)
                task.add_done_callback(self._acks.discard)
        return not self.options.deny_keepalive

    async def _emit_message(self, conn: "_Connection", message: Any, size: int) -> tuple[Any, delivery.Ticket | None]:
        """Emit the events of `message`; returns its option and, when it asks for an ack, the ticket
        whose `stored` the ack waits for. Raises _EmitRefused when those events could not be emitted."""
        o = self.options
        if not isinstance(message, list) or not message:
            self.counters["dropped_messages"] += 1
            self.log.warn("incoming chunk is broken:", host=conn.host, msg=_Inspected(message))
            return None, None
        tag = message[0]
        entries = message[1] if len(message) > 1 else None
        if o.chunk_size_limit and size > o.chunk_size_limit:
            self.counters["dropped_messages"] += 1
            self.log.warn("Input chunk size is larger than 'chunk_size_limit', dropped:", tag=tag, host=conn.host,
                          limit=o.chunk_size_limit, size=size)
            return None, None
        if o.chunk_size_warn_limit and size > o.chunk_size_warn_limit:
            self.log.warn("Input chunk size is larger than 'chunk_size_warn_limit':", tag=tag, host=conn.host,
                          limit=o.chunk_size_warn_limit, size=size)
        if o.tag is not None:
            tag = o.tag
        if o.add_tag_prefix is not None:
            tag = f"{o.add_tag_prefix}.{tag}"
        message_mode = False
        if isinstance(entries, (bytes, str)):                       # PackedForward
            option = message[2] if len(message) > 2 and isinstance(message[2], dict) else {}
            try:
                raw = list(protocol.packed_entries(entries, option.get("compressed"), o.decompression_size_limit))
            except protocol.MessageError as exc:
                # no ack either: the sender keeps the chunk (and logs its ack timeout)
                self.counters["dropped_messages"] += 1
                self.log.warn("forward input: dropped a message whose entries cannot be read", tag=tag,
                              host=conn.host, error=str(exc))
                return None, None
            pairs = [_pair(e) for e in raw]
        elif isinstance(entries, list):                             # Forward
            option = message[2] if len(message) > 2 else None
            pairs = [_pair(e) for e in entries]
        else:                                                       # Message
            option = message[3] if len(message) > 3 else None
            pairs = [(entries, message[2] if len(message) > 2 else None)]
            message_mode = True
        events = self._valid_events(conn, tag, pairs, message_mode)
        if not events:
            return option, None
        chunk = option.get("chunk") if isinstance(option, dict) else None
        ticket = delivery.Ticket() if chunk is not None else None
        try:
            if ticket is not None:
                with delivery.tracking(ticket):
                    await self.emitter.emit(str(tag), events)
                ticket.seal()
            else:
                await self.emitter.emit(str(tag), events)
        except Exception as exc:       # buffer full (throw_exception) and the like
            self.counters["dropped_messages"] += 1
            if chunk is None:
                self.log.warn("forward input: could not emit the events; they are lost (the sender asked for "
                              "no ack)", tag=tag, host=conn.host, events=len(events),
                              error=f"{type(exc).__name__}: {exc}")
                return option, None
            self.log.warn("forward input: could not emit the events; no ack is sent and the connection is "
                          "closed, so the sender sends them again", tag=tag, host=conn.host, events=len(events),
                          error=f"{type(exc).__name__}: {exc}")
            raise _EmitRefused from exc
        self.counters["events"] += len(events)
        return option, ticket

    def _valid_events(self, conn: "_Connection", tag: Any, pairs: list[tuple[Any, Any]],
                      message_mode: bool) -> list[Event]:
        o = self.options
        events: list[Event] = []
        now = None
        for raw_time, record in pairs:
            time = protocol.time_ns(raw_time)
            invalid = time is None or not isinstance(record, dict) or not isinstance(tag, str)
            if invalid and (o.skip_invalid_event or (record is not None and not isinstance(record, dict))):
                # (kawa's records are hashes whatever skip_invalid_event says: a filter or output
                # given a list or a string would fail on every event after it)
                self.counters["invalid_events"] += 1
                self.log.warn("got invalid event and drop it:" if message_mode else "skip invalid event:",
                              host=conn.host, tag=_Inspected(tag), time=_Inspected(raw_time), record=_Inspected(record))
                continue
            if record is None:
                continue
            if not time:                       # 0 or nil: the sender set no time
                if now is None:
                    now = self.ctx.clock()
                time = now
            if o.source_address_key:
                record[o.source_address_key] = conn.address
            if o.source_hostname_key:
                record[o.source_hostname_key] = conn.hostname
            events.append((time, record))
        return events

    async def _ack_when_stored(self, conn: "_Connection", chunk: Any, ticket: delivery.Ticket) -> None:
        await ticket.stored
        self._send_ack(conn, chunk)
        # Past this point a restart of kawa cannot bring these events back (the sender resends what it
        # got no ack for as a new message), so cloudwatch_logs' journal may forget them.
        ticket.commit()
        await conn.drain()

    def _send_ack(self, conn: "_Connection", chunk: Any) -> None:
        if conn.writer.is_closing():
            return
        self.counters["acks"] += 1
        response = {"ack": chunk}
        self.log.trace("sent response to fluent socket", address=conn.address, response=_Inspected(response))
        conn.send(conn.serialize(response))


class _EmitRefused(Exception):
    """The events of a message that asked for an ack could not be emitted: the connection is closed
    so that the sender resends at once instead of waiting ack_response_timeout."""


def _pair(entry: Any) -> tuple[Any, Any]:
    """(time, record) of one entry of a Forward / PackedForward message (a malformed entry gives a
    pair that fails validation, as Ruby's destructuring of it does)."""
    if isinstance(entry, list):
        if len(entry) >= 2:
            return entry[0], entry[1]
        return (entry[0] if entry else None), None
    return entry, None


class _Connection:
    __slots__ = ("address", "port", "writer", "hostname", "received", "serialize", "nonce", "user_salt",
                 "authenticated")

    def __init__(self, address: str, port: int, writer: asyncio.StreamWriter) -> None:
        self.address = address
        self.port = port
        self.writer = writer
        self.hostname = address
        self.received = 0
        self.serialize: Any = None
        self.nonce = b""
        self.user_salt = b""
        self.authenticated = True

    @property
    def host(self) -> str:
        return self.hostname

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    async def drain(self) -> None:
        try:
            await self.writer.drain()
        except ConnectionError:
            pass


class _Heartbeat(asyncio.DatagramProtocol):
    """out_forward's UDP heartbeat: any datagram on the port is answered with one NUL byte."""

    def __init__(self, plugin: ForwardInput) -> None:
        self.plugin = plugin
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.plugin.log.trace("heartbeat udp data arrived", host=addr[0], port=addr[1], data=data[:128])
            self.transport.sendto(HEARTBEAT_REPLY, addr)
