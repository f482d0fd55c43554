"""Fluentd's out_forward: buffered chunks to other Fluentds (or kawas) over the Forward protocol (TCP, or
TLS with `transport tls`: kawa.tls), e.g. a
sidecar shipping to a node or cluster aggregator.

Each chunk goes out as one PackedForward message ([tag, msgpack stream of [EventTime, record],
{"size": n}]), gzip-compressed with `compress gzip`. With `require_ack_response` the chunk is written
only once the server answered {"ack": chunk}; otherwise once the bytes are sent. Servers are chosen
by weight among the ones not detached; a server whose connection or send fails is detached and tried
again after `recover_wait` (Fluentd's phi accrual heartbeat is not run: kawa notices a failed server
when it sends, so an idle sidecar opens no connection). `standby` servers take over when no other
server is up. `<security>` performs the shared-key handshake (kawa.plugins.inputs._forward.security).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
import socket
import time as _time
from typing import Any

import msgpack

from kawa import tls
from kawa.buffer.output import BufferedOptions, BufferedOutput
from kawa.config.schema import Options, option, section
from kawa.engine.registry import register
from kawa.errors import ConfigError, RetryableError
from kawa.event import Event
from kawa.plugins.base import PluginContext
from kawa.plugins.inputs._forward.protocol import pack_entries
from kawa.plugins.outputs._multi import weighted_rotation
from kawa.plugins.outputs._service_discovery import (FILE_POLL_INTERVAL, LISTEN_PORT, DiscoveryOptions, FileWatch,
                                                     ServerSection, initial_servers, kind_of, server_key)
from kawa.plugins.inputs._forward.security import as_bytes, sha512_hex

NO_HEARTBEAT = "kawa notices a failed server when it sends to it and tries it again after recover_wait"
WINDOWS_ONLY = "This parameter is for only Windows"


class ClientSecuritySection(Options):
    self_hostname = option(doc="The hostname this client presents in PING.")
    shared_key = option(secret=True, doc="Shared key for authentication.")


class ForwardOutputOptions(BufferedOptions):
    transport = option("tcp", "enum", choices=("tcp", "tls"), doc="tcp, or tls (with the tls_* options).")
    tls_version = option(tls.DEFAULT_VERSION, "enum", choices=tls.SUPPORTED_VERSIONS, doc="The TLS version.")
    tls_ciphers = option(tls.CIPHERS_DEFAULT, doc="OpenSSL cipher list (TLS 1.2 and below).")
    tls_insecure_mode = option(False, "bool", doc="No certificate check at all (a warning at start).")
    tls_allow_self_signed_cert = option(False, "bool", no_effect="a self-signed server certificate is accepted "
                                        "when tls_cert_path lists it, and refused otherwise, either way",
                                        doc="Fluentd's flag for self-signed server certificates.")
    tls_verify_hostname = option(True, "bool", doc="Check the server certificate's name against the host "
                                 "(when the host is a name, not an IP address).")
    tls_ca_cert_path = option(None, "array", doc="CA certificates (PEM files) the server's must chain to, "
                              "besides the system's.")
    tls_cert_path = option(None, "array", doc="Same as tls_ca_cert_path (replaces it when both are set).")
    tls_client_cert_path = option(None, doc="Client certificate (PEM) for servers with client_cert_auth.")
    tls_client_private_key_path = option(None, doc="The client certificate's private key (PEM).")
    tls_client_private_key_passphrase = option(None, secret=True, doc="The private key's passphrase.")
    tls_cert_thumbprint = option(None, secret=True, doc="Windows only: refused elsewhere, as Fluentd.")
    tls_cert_logical_store_name = option(None, doc="Windows only: refused elsewhere, as Fluentd.")
    tls_cert_use_enterprise_store = option(True, "bool", no_effect="Windows only",
                                           doc="Fluentd's Windows certificate store choice.")
    send_timeout = option(60.0, "time", doc="Seconds to send one chunk.")
    connect_timeout = option(None, "time", doc="Seconds to connect (default: send_timeout).")
    heartbeat_type = option("transport", "enum", choices=("transport", "tcp", "udp", "none"), no_effect=NO_HEARTBEAT,
                            doc="Fluentd's server health check.")
    heartbeat_interval = option(1.0, "time", no_effect=NO_HEARTBEAT, doc="Fluentd's heartbeat interval.")
    recover_wait = option(10.0, "time", doc="Seconds a detached server rests before it is tried again.")
    hard_timeout = option(60.0, "time", no_effect=NO_HEARTBEAT, doc="Fluentd's heartbeat hard timeout.")
    phi_threshold = option(16, "integer", no_effect=NO_HEARTBEAT, doc="Fluentd's phi accrual threshold.")
    phi_failure_detector = option(True, "bool", no_effect=NO_HEARTBEAT, doc="Fluentd's phi accrual detector.")
    require_ack_response = option(False, "bool", doc="Count a chunk written only when the server acks it.")
    ack_response_timeout = option(190.0, "time", doc="Seconds to wait for an ack.")
    read_interval_msec = option(50, "integer", no_effect="kawa waits for acks on the event loop",
                                doc="Fluentd's ack polling interval.")
    read_length = option(512, "size", no_effect="kawa reads acks as they come", doc="Fluentd's ack read size.")
    expire_dns_cache = option(None, "time", no_effect="kawa resolves the host at every connection",
                              doc="Fluentd's DNS cache lifetime.")
    dns_round_robin = option(False, "bool", no_effect="kawa resolves the host at every connection",
                             doc="Fluentd's client-side DNS round robin.")
    ignore_network_errors_at_startup = option(False, "bool", no_effect="kawa resolves hosts when it sends",
                                              doc="Fluentd's start-up DNS check.")
    verify_connection_at_startup = option(False, "bool", doc="Connect to a server at start; fail to start if none answers.")
    compress = option("text", "enum", choices=("text", "gzip"), doc="Send the entries gzip-compressed.")
    keepalive = option(False, "bool", doc="Keep the connection to a server open between chunks.")
    keepalive_timeout = option(None, "time", doc="Close a kept connection idle this long.")
    send_keepalive_packet = option(False, "bool", doc="Enable TCP keepalive probes.")
    time_as_integer = option(False, "bool", doc="Send integer seconds instead of EventTime (for Fluentd v0.12).")
    security = section(ClientSecuritySection, doc="Shared-key handshake.")
    servers = section(ServerSection, multi=True, aliases=("server",), doc="The servers.")
    service_discovery = section(DiscoveryOptions, doc="More servers: @type static (<service> sections) or file "
                                "(a YAML/JSON list, read again when it changes).")
    host = option(None, doc="Obsolete: use <server>.")
    port = option(LISTEN_PORT, "integer", doc="Obsolete: use <server>.")


class _Node:
    __slots__ = ("server", "name", "host", "port", "standby", "weight", "detached_until", "conn", "idle_since")

    def __init__(self, server: ServerSection) -> None:
        self.server = server
        self.host: str = server.host
        self.port: int = server.port
        self.name: str = server.name or f"{server.host}:{server.port}"
        self.standby: bool = server.standby
        self.weight: int = server.weight
        self.detached_until = 0.0
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.idle_since = 0.0

    def available(self, now: float) -> bool:
        return now >= self.detached_until


class _SendFailed(Exception):
    pass


@register("output", "forward")
class ForwardOutput(BufferedOutput):
    Options = ForwardOutputOptions
    default_chunk_keys = ("tag",)
    multi_workers_ready = True
    compat_sections = ("buffer",)         # out_forward.rb compat_parameters_convert (v0.12 buffer_type ...)
    sd_poll_interval = FILE_POLL_INTERVAL  # <service_discovery> @type file: how often the file is looked at

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        o = options
        if o.host is not None:
            raise ConfigError("'host' parameter is already removed: Use <server> section instead.")
        # TLS contexts for a host given by name (its name checked, unless tls_verify_hostname false)
        # and by IP address (the chain alone, as Fluentd's socket helper)
        self.tls: tuple[Any, Any] | None = self._tls_contexts() if o.transport == "tls" else None
        if not self.buffer_settings.keys.tag:
            raise ConfigError("buffer chunk key must include 'tag' for forward output")
        sd = o.service_discovery
        discovered = initial_servers(sd) if sd is not None else []
        self.watch = FileWatch(sd.path, sd.conf_encoding) if sd is not None and kind_of(sd) == "file" else None
        self._watching: asyncio.Task[None] | None = None
        if not o.servers and not discovered:
            raise ConfigError("forward output plugin requires at least one node is required. Add <server> or <service>")
        if o.heartbeat_type == "tcp":
            self.log.warn("'heartbeat_type tcp' is deprecated. use 'transport' instead.")
        self.nodes: list[_Node] = []
        self._set_servers([*o.servers, *discovered])
        self.counters = {"chunks": 0, "events": 0, "acks": 0, "detached": 0, "recovered": 0}

    def _set_servers(self, servers: list[ServerSection]) -> None:
        """Take a (new) list of servers: the nodes of unchanged ones stay (their connection, their
        detach time), removed ones are closed."""
        old = {server_key(n.server): n for n in self.nodes}
        nodes = []
        for server in servers:
            node = old.pop(server_key(server), None)
            if node is None:
                node = _Node(server)
                if self.nodes:
                    self.log.info(f"Service in: name={server.name or ''} {server.host}:{server.port}")
            nodes.append(node)
        for gone in old.values():
            self._close(gone)
            self.log.info(f"Service out: name={gone.server.name or ''} {gone.host}:{gone.port}")
        self.nodes = nodes
        active = [n for n in nodes if not n.standby and n.weight > 0]
        self._rotation = weighted_rotation(active, [n.weight for n in active], interleave=True)

    async def _watch_file(self) -> None:
        """sd_file's stat watcher: a changed file replaces the servers; one that cannot be read is
        logged and the servers stay."""
        assert self.watch is not None
        while True:
            await asyncio.sleep(self.sd_poll_interval)
            try:
                servers = self.watch.changed()
            except ConfigError as exc:
                self.log.error(f"sd_file: {exc}")
                continue
            if servers is not None:
                self._set_servers([*self.options.servers, *servers])

    async def start(self) -> None:
        await super().start()
        if self.watch is not None:
            self._watching = asyncio.get_running_loop().create_task(self._watch_file())
        if self.options.verify_connection_at_startup:
            for node in self.nodes:
                try:
                    _reader, writer = await self._connect(node)
                except _SendFailed:
                    continue
                writer.close()
                return
            raise RetryableError("verify_connection_at_startup: no forwarding server answered")

    async def stop(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
            self._watching = None
        await super().stop()
        for node in self.nodes:
            self._close(node)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), **self.counters,
                "healthy_nodes_count": sum(1 for n in self.nodes if n.available(_time.monotonic())),
                "registered_nodes_count": len(self.nodes)}

    # -- data ---------------------------------------------------------------------------------------
    def format_events(self, tag: str, events: list[Event]) -> bytes:
        """The chunk holds the PackedForward entries themselves: [EventTime, record] each."""
        return pack_entries(events, self.options.time_as_integer)

    async def write(self, chunk: Any) -> None:
        o = self.options
        entries = chunk.read()
        option: dict[str, Any] = {"size": chunk.record_count}
        if o.compress == "gzip":
            entries = gzip.compress(entries, compresslevel=6)
            option["compressed"] = "gzip"
        ack_id = None
        if o.require_ack_response:
            ack_id = base64.b64encode(bytes.fromhex(chunk.id)).decode()
            option["chunk"] = ack_id
        message = msgpack.packb([chunk.metadata.tag or "", entries, option], use_bin_type=True)
        errors: list[str] = []
        for node in self._candidates():
            try:
                await self._send(node, message, ack_id)
            except _SendFailed as exc:
                errors.append(f"{node.name}: {exc}")
                self._detach(node, str(exc))
                continue
            self.counters["chunks"] += 1
            self.counters["events"] += chunk.record_count
            return
        raise RetryableError("no nodes are available" + (f" ({'; '.join(errors)})" if errors else
                                                          ": every server is detached, waiting for recover_wait"))

    def _candidates(self) -> list[_Node]:
        """Servers to try for one chunk, in order: the next ones of the weighted rotation, then standbys."""
        now = _time.monotonic()
        rotation = self._rotation
        if rotation:
            rotation.append(rotation.pop(0))     # a different first server for each chunk
        seen: list[_Node] = []
        for n in rotation:
            if n not in seen and n.available(now):
                seen.append(n)
        for n in self.nodes:
            if n.standby and n.available(now):
                seen.append(n)
        return seen

    def _detach(self, node: _Node, reason: str) -> None:
        self._close(node)
        if node.detached_until <= _time.monotonic():
            self.counters["detached"] += 1
            self.log.warn(f"detached forwarding server '{node.name}'", host=node.host, port=node.port, reason=reason)
        node.detached_until = _time.monotonic() + self.options.recover_wait

    def _tls_contexts(self) -> tuple[Any, Any]:
        """out_forward's TLS checks (paths exist and are readable, Windows-only options refused) and
        the socket helper's client context."""
        o = self.options
        if o.tls_cert_logical_store_name is not None or o.tls_cert_thumbprint is not None:
            raise ConfigError(WINDOWS_ONLY)
        ca_paths = o.tls_cert_path if o.tls_cert_path else o.tls_ca_cert_path
        for path in ca_paths or ():
            if not os.path.exists(path):
                raise ConfigError(f"specified cert path does not exist:{path}")
            if not os.access(path, os.R_OK):
                raise ConfigError(f"specified cert path is not readable:{path}")
        if o.tls_insecure_mode:
            self.log.warn("TLS transport is configured in insecure way")

        def context(check_hostname: bool) -> Any:
            return tls.client_context(version=o.tls_version, ciphers=o.tls_ciphers, insecure=o.tls_insecure_mode,
                                      check_hostname=check_hostname, ca_paths=ca_paths,
                                      cert_path=o.tls_client_cert_path, key_path=o.tls_client_private_key_path,
                                      passphrase=o.tls_client_private_key_passphrase)

        return context(o.tls_verify_hostname), context(False)

    # -- one server ---------------------------------------------------------------------------------
    async def _connect(self, node: _Node) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        o = self.options
        timeout = o.connect_timeout if o.connect_timeout is not None else o.send_timeout
        tls_args: dict[str, Any] = {}
        if self.tls is not None:
            # the name checked and sent (SNI), as out_forward: the host when it is a name, else the
            # <server>'s `name`, else none (the chain alone)
            name = node.host if not tls.is_ip_address(node.host) else node.server.name
            tls_args = {"ssl": self.tls[0] if name else self.tls[1], "server_hostname": name or "",
                        "ssl_handshake_timeout": timeout}
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(node.host, node.port, **tls_args),
                                                    timeout)
        except asyncio.TimeoutError:
            raise _SendFailed(f"connect timed out after {timeout:g}s") from None
        except OSError as exc:          # ssl.SSLError too: a certificate the checks refused
            verify = getattr(exc, "verify_message", None)
            reason = f"certificate verify failed: {verify}" if verify else \
                getattr(exc, "reason", None) or exc.strerror or exc
            raise _SendFailed(f"cannot connect{' (TLS)' if self.tls is not None else ''}: {reason}") from None
        sock = writer.get_extra_info("socket")
        if sock is not None and o.send_keepalive_packet:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if o.security is not None:
            try:
                await asyncio.wait_for(self._handshake(node, reader, writer), o.send_timeout)
            except BaseException:
                writer.close()
                raise
        return reader, writer

    async def _handshake(self, node: _Node, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        security = self.options.security
        unpacker = msgpack.Unpacker(raw=False)
        helo = await _next_message(reader, unpacker)
        if not (isinstance(helo, list) and len(helo) == 2 and helo[0] == "HELO" and isinstance(helo[1], dict)):
            raise _SendFailed("the server sent no HELO (is <security> configured on it?)")
        nonce, auth_salt = as_bytes(helo[1].get("nonce", b"")), as_bytes(helo[1].get("auth", b""))
        shared_key = node.server.shared_key or security.shared_key
        salt = os.urandom(16)
        username, password = node.server.username, node.server.password
        ping = ["PING", security.self_hostname, salt,
                sha512_hex(salt, security.self_hostname, nonce, shared_key),
                username, sha512_hex(auth_salt, username, password) if auth_salt else ""]
        writer.write(msgpack.packb(ping, use_bin_type=True))
        await writer.drain()
        pong = await _next_message(reader, unpacker)
        if not (isinstance(pong, list) and len(pong) == 5 and pong[0] == "PONG"):
            raise _SendFailed("the server answered the handshake with no PONG")
        if not pong[1]:
            raise _SendFailed(f"authentication failed: {pong[2]}")
        if pong[4] != sha512_hex(salt, pong[3], nonce, shared_key):
            raise _SendFailed("shared key mismatch: the server's PONG does not prove the shared key")

    async def _send(self, node: _Node, message: bytes, ack_id: str | None) -> None:
        o = self.options
        conn = node.conn
        if conn is not None and (conn[1].is_closing() or conn[0].at_eof() or (
                o.keepalive_timeout is not None and _time.monotonic() - node.idle_since > o.keepalive_timeout)):
            self._close(node)          # the server closed it, or it idled too long
            conn = None
        if conn is not None:
            node.conn = None
            try:
                await self._exchange(node, conn, message, ack_id)
                return
            except _SendFailed:
                pass                   # a kept connection the server dropped meanwhile: once more, anew
        await self._exchange(node, await self._connect(node), message, ack_id)

    async def _exchange(self, node: _Node, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                        message: bytes, ack_id: str | None) -> None:
        o = self.options
        reader, writer = conn
        try:
            writer.write(message)
            await asyncio.wait_for(writer.drain(), o.send_timeout)
            if ack_id is not None:
                await asyncio.wait_for(self._ack(reader, ack_id), o.ack_response_timeout)
                self.counters["acks"] += 1
        except asyncio.TimeoutError:
            writer.close()
            what = "an ack" if ack_id is not None else "the send"
            raise _SendFailed(f"no response from node: {what} timed out") from None
        except (OSError, EOFError) as exc:
            writer.close()
            raise _SendFailed(f"connection lost: {exc}") from None
        if node.detached_until:
            node.detached_until = 0.0
            self.counters["recovered"] += 1
            self.log.info(f"recovered forwarding server '{node.name}'", host=node.host, port=node.port)
        if o.keepalive:
            node.conn, node.idle_since = (reader, writer), _time.monotonic()
        else:
            writer.close()

    async def _ack(self, reader: asyncio.StreamReader, ack_id: str) -> None:
        unpacker = msgpack.Unpacker(raw=False)
        while True:
            answer = await _next_message(reader, unpacker)
            if isinstance(answer, dict) and answer.get("ack") == ack_id:
                return
            # another chunk's ack (a kept connection) or noise: keep reading

    def _close(self, node: _Node) -> None:
        if node.conn is not None:
            node.conn[1].close()
            node.conn = None


async def _next_message(reader: asyncio.StreamReader, unpacker: msgpack.Unpacker) -> Any:
    while True:
        for obj in unpacker:
            return obj
        data = await reader.read(4096)
        if not data:
            raise EOFError("the server closed the connection")
        unpacker.feed(data)

