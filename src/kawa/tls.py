"""Fluentd's TLS settings as Python `ssl` contexts: the server helper's `<transport tcp|tls>` (forward,
tcp, syslog and http inputs; its socket options too) and out_forward's `tls_*` options, with
Fluentd's names, defaults and checks.

Fluentd's defaults kept on purpose: `version TLSv1_2` with no min/max pins TLS 1.2 exactly (both
ends), the cipher list is "ALL:!aNULL:!eNULL:!SSLv2", and a client checks the server's name only
when it connects by name (an IP address: the chain alone, as the socket helper does).

`ssl` is loaded only here, when a plugin asks for TLS (kawa.ssl_gate keeps OpenSSL out of a process
that never uses it); asyncio, imported before, learns about it then.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import TYPE_CHECKING, Any

from kawa.config.schema import Options, option
from kawa.errors import ConfigError, Problem

if TYPE_CHECKING:
    import ssl

SUPPORTED_VERSIONS = ("TLSv1_1", "TLSv1_2", "TLSv1_3", "TLS1_1", "TLS1_2", "TLS1_3")
DEFAULT_VERSION = "TLSv1_2"
CIPHERS_DEFAULT = "ALL:!aNULL:!eNULL:!SSLv2"


class TransportOptions(Options):
    """`<transport tcp|tls>` of Fluentd's server helper (in_forward)."""

    receive_buffer_size = option(None, "size", doc="SO_RCVBUF of accepted connections.")
    linger_timeout = option(None, "integer", doc="SO_LINGER seconds of accepted connections (0: reset "
                            "instead of FIN at close).")
    version = option(DEFAULT_VERSION, "enum", choices=SUPPORTED_VERSIONS,
                     doc="The TLS version (the only one accepted unless min_version/max_version are set).")
    min_version = option(None, "enum", choices=SUPPORTED_VERSIONS, doc="Lowest TLS version (with max_version).")
    max_version = option(None, "enum", choices=SUPPORTED_VERSIONS, doc="Highest TLS version (with min_version).")
    ciphers = option(CIPHERS_DEFAULT, doc="OpenSSL cipher list (TLS 1.2 and below).")
    insecure = option(False, "bool", doc="Accept without a configured certificate: refused by kawa "
                      "(Fluentd generates a self-signed one).")
    ensure_fips = option(False, "bool", doc="Fail unless OpenSSL runs in FIPS mode.")
    ca_path = option(None, doc="CA certificates that client certificates must chain to.")
    cert_path = option(None, doc="The server's certificate (PEM; more certificates after it: its chain).")
    private_key_path = option(None, doc="The server's private key (PEM).")
    private_key_passphrase = option(None, secret=True, doc="The private key's passphrase.")
    client_cert_auth = option(False, "bool", doc="Require a client certificate that chains to ca_path.")
    ca_cert_path = option(None, doc="Refused: Fluentd generates a server certificate with this CA.")
    ca_private_key_path = option(None, doc="Refused with ca_cert_path.")
    ca_private_key_passphrase = option(None, secret=True, doc="Refused with ca_cert_path.")
    cert_verifier = option(None, doc="Refused: Ruby code that checks client certificates.")
    generate_private_key_length = option(2048, "integer", doc="For generated certificates (not supported).")
    generate_cert_country = option("US", doc="For generated certificates (not supported).")
    generate_cert_state = option("CA", doc="For generated certificates (not supported).")
    generate_cert_locality = option("Mountain View", doc="For generated certificates (not supported).")
    generate_cert_common_name = option(None, doc="For generated certificates (not supported).")
    generate_cert_expiration = option(10 * 365 * 86400.0, "time", doc="For generated certificates (not supported).")
    generate_cert_digest = option("sha256", "enum", choices=("sha1", "sha256", "sha384", "sha512"),
                                  doc="For generated certificates (not supported).")

    def protocol(self) -> str:
        return self._arg.strip() or "tcp"


def apply_socket_options(sock: socket.socket, transport: TransportOptions, *, keepalive: bool = False,
                         linger_timeout: int | None = None) -> None:
    """An accepted connection's socket options: TCP keepalive probes, SO_LINGER (a plugin's own
    deprecated `linger_timeout` first), SO_RCVBUF."""
    if keepalive:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    linger = linger_timeout if linger_timeout is not None else transport.linger_timeout
    if linger is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, linger))
    if transport.receive_buffer_size is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(transport.receive_buffer_size))


def load_ssl() -> Any:
    """The real `ssl` module (kawa.ssl_gate also makes it known to asyncio, imported before it)."""
    from kawa import ssl_gate

    ssl_gate.allow()
    import ssl

    return ssl


def _versions(ssl: Any, version: str, min_version: str | None, max_version: str | None) -> tuple[Any, Any]:
    """Fluent::TLS.set_version_to_context: min and max set together, or both `version`."""
    if min_version is None and max_version is not None:
        raise ConfigError("When you set max_version, must set min_version together")
    if min_version is not None and max_version is None:
        raise ConfigError("When you set min_version, must set max_version together")
    low, high = (min_version, max_version) if min_version is not None else (version, version)
    names = {"1_1": ssl.TLSVersion.TLSv1_1, "1_2": ssl.TLSVersion.TLSv1_2, "1_3": ssl.TLSVersion.TLSv1_3}
    return names[low[-3:]], names[high[-3:]]


def _readable(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise ConfigError(f"{what} does not exist: {path}")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{what} is not readable: {path}")


def _load_pair(ctx: Any, cert_path: str, key_path: str, passphrase: str | None, what: str) -> None:
    _readable(cert_path, f"{what} certificate")
    _readable(key_path, f"{what} private key")
    try:
        ctx.load_cert_chain(cert_path, key_path, password=passphrase)
    except Exception as exc:     # ssl.SSLError, or a wrong passphrase
        raise ConfigError(f"cannot load the {what} certificate {cert_path} with its key {key_path}: "
                          f"{getattr(exc, 'reason', None) or exc}") from None


def listener_context(transport: TransportOptions, log: Any, protocols: tuple[str, ...] = ("tcp", "tls")) -> Any:
    """The TLS context of a listener's `<transport>` (None: plain TCP). The certificate is loaded
    now: a wrong path or passphrase stops the start, with its reason."""
    protocol = transport.protocol()
    if protocol not in protocols:
        where = transport._element.location if transport._element is not None else None
        raise ConfigError([Problem(f"<transport {protocol}>: expected {' or '.join(protocols)}", where)])
    return server_context(transport, log) if protocol == "tls" else None


def server_context(o: TransportOptions, log: Any) -> "ssl.SSLContext":
    """cert_option_create_context for `<transport tls>`; ConfigError for what Fluentd refuses and for
    what kawa does not do (generating certificates, Ruby verifiers)."""
    if o.cert_verifier is not None:
        raise ConfigError("cert_verifier: a Ruby verifier cannot run in kawa; use client_cert_auth with ca_path")
    if o.cert_path is None:
        if o.ca_cert_path is not None or o.insecure:
            how = "ca_cert_path" if o.ca_cert_path is not None else "insecure"
            raise ConfigError(f"{how}: Fluentd generates a server certificate here; kawa does not. "
                              "Give it one with cert_path and private_key_path")
        raise ConfigError("no valid cert options configured. specify either 'cert_path', 'ca_cert_path' or 'insecure'")
    if o.private_key_path is None:
        raise ConfigError("private_key_path is required when cert_path is specified")
    if o.private_key_passphrase is None:
        log.warn("For security reason, setting private_key_passphrase is recommended when cert_path is specified")
    ssl = load_ssl()
    if o.ensure_fips:
        raise ConfigError("Cannot enable FIPS compliant mode. OpenSSL FIPS configuration is disabled")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version, ctx.maximum_version = _versions(ssl, o.version, o.min_version, o.max_version)
    if not o.insecure:
        _ciphers(ctx, o.ciphers)
    _load_pair(ctx, o.cert_path, o.private_key_path, o.private_key_passphrase, "server")
    if o.ca_path is not None:
        _readable(o.ca_path, "ca_path")
        ctx.load_verify_locations(cafile=o.ca_path)
    ctx.verify_mode = ssl.CERT_REQUIRED if o.client_cert_auth else ssl.CERT_NONE
    if o.client_cert_auth and o.ca_path is None:
        ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    return ctx


def client_context(*, version: str, ciphers: str, insecure: bool, check_hostname: bool, ca_paths: list[str] | None,
                   cert_path: str | None, key_path: str | None, passphrase: str | None) -> "ssl.SSLContext":
    """socket_create_tls's context (out_forward): the system's CAs plus `ca_paths`; insecure: no
    verification at all (and, as Fluentd, no client certificate either)."""
    ssl = load_ssl()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version, ctx.maximum_version = _versions(ssl, version, None, None)
    ctx.check_hostname = check_hostname and not insecure
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx.load_default_certs()
    for path in ca_paths or ():
        _readable(path, "specified cert path")
        ctx.load_verify_locations(cafile=path)
    _ciphers(ctx, ciphers)
    if key_path is not None and cert_path is not None:
        _load_pair(ctx, cert_path, key_path, passphrase, "client")
    elif key_path is not None or cert_path is not None:
        raise ConfigError("tls_client_cert_path and tls_client_private_key_path go together")
    return ctx


def _ciphers(ctx: Any, ciphers: str) -> None:
    try:
        ctx.set_ciphers(ciphers)
    except Exception:       # ssl.SSLError: no cipher matches
        raise ConfigError(f"ciphers: OpenSSL accepts no cipher of '{ciphers}'") from None


def is_ip_address(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
