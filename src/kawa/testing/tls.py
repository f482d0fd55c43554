"""TLS for tests and benches: a self-signed certificate, and a TLS front for a plain-HTTP local server.

moto speaks plain HTTP, but some AWS code paths only speak HTTPS (aws-c-auth's STS calls) or must be
tested with a custom trust store (AWS_CA_BUNDLE, SSL_CERT_FILE). `TlsFront` terminates TLS on
127.0.0.1 and passes the bytes through to the plain server, so those paths run against the real
moto behind it.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import threading
from pathlib import Path


def write_self_signed(cert: Path, key: Path, names: tuple[str, ...] = ("127.0.0.1", "localhost"),
                      passphrase: str | None = None) -> None:
    """A self-signed certificate valid for `names` (IP addresses or DNS names) for a day, and its key
    (encrypted with `passphrase` when given). The certificate is its own CA: a peer trusts it by
    loading `cert` as its CA file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.timezone.utc)
    built = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(private.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.SubjectAlternativeName(alt_names), False)
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
             .sign(private, hashes.SHA256()))
    cert.write_bytes(built.public_bytes(serialization.Encoding.PEM))
    encryption = serialization.BestAvailableEncryption(passphrase.encode()) if passphrase is not None \
        else serialization.NoEncryption()
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))


def plain_tcp_client(port: int, data: bytes) -> None:
    """A client that speaks plain TCP to a TLS listener: sends `data`, waits for the server to close."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        sock.settimeout(5)
        try:
            sock.recv(100)
        except OSError:
            pass


class TlsFront:
    """https://127.0.0.1:`port` in front of a plain TCP server at `upstream` (host, port), on a thread
    of its own. Port 0 picks a free port (see `.port` after `start`); 443 needs root or
    CAP_NET_BIND_SERVICE (OSError from `start` otherwise)."""

    def __init__(self, upstream: tuple[str, int], cert: Path, key: Path, port: int = 0) -> None:
        self.upstream = upstream
        self.port = port
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert, key)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> TlsFront:
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), name="tls-front", daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> TlsFront:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        try:
            server = await asyncio.start_server(self._connection, "127.0.0.1", self.port, ssl=self._context)
        except OSError as exc:
            self._error = exc
            self._started.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        async with server:
            await self._stopped.wait()

    async def _connection(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        try:
            server_in, server_out = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_out.close()
            return
        await asyncio.gather(_pipe(client_in, server_out), _pipe(server_in, client_out))


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (OSError, ssl.SSLError):
        pass            # either side went away: close the other, as a TCP proxy does
    finally:
        sink.close()
