"""The forward input's <security> handshake (Forward protocol v1): shared key, users, allowed clients.

    server -> ["HELO", {"nonce": n, "auth": user_salt, "keepalive": bool}]
    client -> ["PING", hostname, key_salt, sha512_hex(key_salt + hostname + n + shared_key),
               username, sha512_hex(user_salt + username + password)]
    server -> ["PONG", ok, reason, self_hostname, sha512_hex(key_salt + self_hostname + n + shared_key)]

Every value hashed is taken as bytes (the salts and the nonce are 16 random bytes).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Any

from kawa.config.schema import Options, option, section
from kawa.errors import ConfigError
from kawa.log import Logger


class UserSection(Options):
    username = option(doc="The username for authentication.")
    password = option(secret=True, doc="The password for authentication.")


class ClientSection(Options):
    host = option(None, doc="The IP address or host name of the client.")
    network = option(None, doc="Network address specification (CIDR).")
    shared_key = option(None, secret=True, doc="Shared key of this client (default: <security>'s).")
    users = option([], "array", doc="The usernames this client may authenticate as (default: any).")


class SecuritySection(Options):
    self_hostname = option(doc="The hostname this server presents in PONG.")
    shared_key = option(secret=True, doc="Shared key for authentication.")
    user_auth = option(False, "bool", doc="Require a <user>'s username and password too.")
    allow_anonymous_source = option(True, "bool", doc="Accept clients no <client> section names.")
    users = section(UserSection, multi=True, aliases=("user",), doc="Users (with user_auth).")
    clients = section(ClientSection, multi=True, aliases=("client",), doc="Clients by host or network.")


@dataclass(frozen=True)
class _Node:
    network: Any               # ipaddress network
    shared_key: str
    users: tuple[str, ...]


def as_bytes(value: Any) -> bytes:
    """A handshake value as the bytes hashed (text as UTF-8)."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


def sha512_hex(*parts: Any) -> str:
    """The hex SHA-512 of the parts one after another (both sides of the handshake)."""
    digest = hashlib.sha512()
    for part in parts:
        digest.update(as_bytes(part))
    return digest.hexdigest()


def client_network(host: str | None, network: str | None) -> Any:
    """The addresses a <client> section allows (a host resolved now, or a network), with Fluentd's errors."""
    if host and network:
        raise ConfigError("both of 'host' and 'network' are specified for client")
    if not host and not network:
        raise ConfigError("Either of 'host' and 'network' must be specified for client")
    source = network
    if host:
        try:
            source = socket.gethostbyname(host)
        except OSError:
            raise ConfigError(f"host '{host}' cannot be resolved") from None
    try:
        return ipaddress.ip_network(source, strict=False)
    except ValueError:
        raise ConfigError(f"network '{network}' address format is invalid") from None


def allowed(networks: list[Any], address: str) -> bool:
    """Whether a client address is in one of the networks."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in networks)


class Handshake:
    """HELO / PING / PONG for one <security> section."""

    def __init__(self, security: SecuritySection, keepalive: bool, log: Logger) -> None:
        self.security = security
        self.keepalive = keepalive
        self.log = log
        if security.user_auth and not security.users:
            raise ConfigError("<user> sections required if user_auth enabled")
        if not security.allow_anonymous_source and not security.clients:
            raise ConfigError("<client> sections required if allow_anonymous_source disabled")
        self.nodes = [self._node(c) for c in security.clients]

    def _node(self, client: ClientSection) -> _Node:
        return _Node(client_network(client.host, client.network), client.shared_key or self.security.shared_key,
                     tuple(client.users or ()))

    @staticmethod
    def salt() -> bytes:
        return os.urandom(16)

    def helo(self, nonce: bytes, user_salt: bytes) -> list[Any]:
        return ["HELO", {"nonce": nonce, "auth": user_salt, "keepalive": self.keepalive}]

    def check_ping(self, message: Any, address: str, user_salt: bytes, nonce: bytes) -> list[Any]:
        """The PONG that answers `message`; its [1] says whether the client may send events."""
        if not (isinstance(message, list) and len(message) == 6 and message[0] == "PING"):
            return self._refused("invalid ping message")
        _ping, hostname, key_salt, key_hex, username, password_hex = message
        node = self._node_of(address)
        if node is None and not self.security.allow_anonymous_source:
            self.log.warn("Anonymous client disallowed", address=address, hostname=hostname)
            return self._refused(f"anonymous source host '{address}' denied")
        shared_key = node.shared_key if node is not None else self.security.shared_key
        expected = sha512_hex(key_salt, hostname, nonce, shared_key)
        if not hmac.compare_digest(as_bytes(key_hex), expected.encode()):
            self.log.warn("Shared key mismatch", address=address, hostname=hostname)
            return self._refused("shared_key mismatch")
        if self.security.user_auth and not self._user_ok(node, username, password_hex, user_salt):
            self.log.warn("Authentication failed", address=address, hostname=hostname, username=username)
            return self._refused("username/password mismatch")
        return ["PONG", True, "", self.security.self_hostname,
                sha512_hex(key_salt, self.security.self_hostname, nonce, shared_key)]

    def _node_of(self, address: str) -> _Node | None:
        for node in self.nodes:
            if allowed([node.network], address):
                return node
        return None

    def _user_ok(self, node: _Node | None, username: Any, password_hex: Any, user_salt: bytes) -> bool:
        ok = False
        for user in self.security.users:
            if user.username != username or (node is not None and node.users and username not in node.users):
                continue
            ok = hmac.compare_digest(as_bytes(password_hex), sha512_hex(user_salt, username, user.password).encode()) or ok
        return ok

    @staticmethod
    def _refused(reason: str) -> list[Any]:
        return ["PONG", False, reason, "", ""]
