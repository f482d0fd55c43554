"""`<transport tls>` on the tcp, syslog and http inputs (the same server helper as forward's, see
tests/outputs/test_forward_tls.py): messages over TLS from real clients on 127.0.0.1, a plain-TCP
client refused with Fluentd's warning, the transport's socket options applied."""

from __future__ import annotations

import asyncio
import http.client
import ssl
from pathlib import Path
from typing import Awaitable, Callable

import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import InputDriver
from kawa.testing.tls import plain_tcp_client, write_self_signed


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_self_signed(cert, key, ("127.0.0.1",))
    return cert, key


def transport(pair: tuple[Path, Path], kind: str = "tls", extra: str = "") -> str:
    cert, key = pair
    return f"<transport {kind}>\ncert_path {cert}\nprivate_key_path {key}\n{extra}</transport>\n"


def run(kind: str, conf: str, body: Callable[[InputDriver, int], Awaitable[None]]) -> InputDriver:
    d = InputDriver(kind, "bind 127.0.0.1\nport 0\n" + conf)

    async def go() -> None:
        async with d.run():
            await body(d, d.instance.port)

    asyncio.run(go())
    return d


async def tls_send(port: int, cert: Path, data: bytes) -> None:
    context = ssl.create_default_context(cafile=str(cert))
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1")
    writer.write(data)
    await writer.drain()
    writer.close()


def test_tcp_over_tls_and_a_plain_client_refused(pair: tuple[Path, Path]) -> None:
    async def body(d: InputDriver, port: int) -> None:
        await asyncio.get_running_loop().run_in_executor(None, plain_tcp_client, port, b"plain text\n")
        await tls_send(port, pair[0], b"one\ntwo\n")
        await d.wait_for(lambda: len(d.records) == 2)

    d = run("tcp", "tag net\n<parse>\n@type none\n</parse>\n" + transport(pair, extra="receive_buffer_size 64k\n"), body)
    assert d.records == [{"message": "one"}, {"message": "two"}]
    assert any("unexpected error before accepting TLS connection by OpenSSL" in line and 'addr="127.0.0.1"' in line
               for line in d.logs), d.logs
    assert d.instance.stats()["tls_handshake_failures"] == 1


def test_syslog_over_tls(pair: tuple[Path, Path]) -> None:
    async def body(d: InputDriver, port: int) -> None:
        await tls_send(port, pair[0], b"<13>Nov 29 10:00:00 host app: hello over tls\n")
        await d.wait_for(lambda: len(d.records) == 1)

    d = run("syslog", "tag sys\n" + transport(pair), body)
    assert d.events[0][0] == "sys.user.notice"
    assert d.records[0]["message"] == "hello over tls"


def test_http_over_tls(pair: tuple[Path, Path]) -> None:
    async def body(d: InputDriver, port: int) -> None:
        def post() -> int:
            context = ssl.create_default_context(cafile=str(pair[0]))
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
            conn.request("POST", "/app.web", body=b'{"n": 1}', headers={"Content-Type": "application/json"})
            status = conn.getresponse().status
            conn.close()
            return status

        assert await asyncio.get_running_loop().run_in_executor(None, post) == 200
        await d.wait_for(lambda: len(d.records) == 1)

    d = run("http", transport(pair), body)
    assert d.events[0][0] == "app.web" and d.records == [{"n": 1}]


@pytest.mark.parametrize("kind, conf, message", [
    ("tcp", "tag t\n<parse>\n@type none\n</parse>\n<transport udp>\n</transport>", "<transport udp>: expected tcp or tls"),
    ("syslog", "tag t\n<transport quic>\n</transport>", "<transport quic>: expected udp, tcp or tls"),
    ("http", "<transport tls>\n</transport>", "no valid cert options configured"),
])
def test_transport_errors(kind: str, conf: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        InputDriver(kind, "port 0\n" + conf)
