"""tcp and udp inputs over real sockets on 127.0.0.1: parsing, delimiters, limits, source keys,
allowed clients, config errors."""

from __future__ import annotations

import asyncio
import socket
from typing import Awaitable, Callable

import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import InputDriver


def run(kind: str, conf: str, body: Callable[[InputDriver, int], Awaitable[None]]) -> InputDriver:
    d = InputDriver(kind, "bind 127.0.0.1\nport 0\ntag net\n" + conf)

    async def go() -> None:
        async with d.run():
            await body(d, d.instance.port)
    asyncio.run(go())
    return d


async def tcp_send(port: int, *chunks: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0.01)
    writer.close()


def test_tcp_json_messages_split_anywhere() -> None:
    async def body(d: InputDriver, port: int) -> None:
        await tcp_send(port, b'{"a":1}\n{"b"', b':2}\n{"c":3', b"}\n")
        await d.wait_for(lambda: len(d.records) == 3)

    d = run("tcp", "<parse>\n@type json\n</parse>", body)
    assert d.records == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert {tag for tag, _t, _r in d.events} == {"net"}


def test_tcp_delimiter_v012_format_source_keys_and_unmatched() -> None:
    async def body(d: InputDriver, port: int) -> None:
        await tcp_send(port, b"k=1|nope|k=2|")
        await d.wait_for(lambda: len(d.records) == 2)

    d = run("tcp", "delimiter |\nformat /^k=(?<k>\\d+)$/\nsource_address_key addr\nsource_hostname_key host", body)
    assert [r["k"] for r in d.records] == ["1", "2"]
    assert d.records[0]["addr"] == "127.0.0.1" and d.records[0]["host"] in ("localhost", "127.0.0.1")
    assert any('pattern not matched message="nope"' in line for line in d.logs), d.logs


def test_tcp_message_length_limit() -> None:
    async def body(d: InputDriver, port: int) -> None:
        await tcp_send(port, b"short\n" + b"x" * 50 + b"\nok\n" + b"y" * 40, b"yy\nafter\n")
        await d.wait_for(lambda: len(d.records) == 3)

    d = run("tcp", "message_length_limit 20\n<parse>\n@type none\n</parse>", body)
    assert [r["message"] for r in d.records] == ["short", "ok", "after"]
    assert any("The received data is larger than 'message_length_limit', dropped: limit=20 size=50" in line
               for line in d.logs), d.logs
    assert any("The buffer size exceeds 'message_length_limit', cleared: limit=20" in line for line in d.logs)


def test_tcp_security_denies_other_clients() -> None:
    async def body(d: InputDriver, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"denied\n")
        await writer.drain()
        try:
            assert await asyncio.wait_for(reader.read(10), 5) == b""      # closed by the input
        except ConnectionResetError:
            pass
        writer.close()

    d = run("tcp", "<security>\n<client>\nnetwork 10.0.0.0/8\n</client>\n</security>\n<parse>\n@type none\n</parse>",
             body)
    assert d.records == []
    assert any("anonymous client '127.0.0.1' denied" in line for line in d.logs)


def test_udp_datagrams() -> None:
    async def body(d: InputDriver, port: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"one\n", ("127.0.0.1", port))
            s.sendto(b"two\r\n", ("127.0.0.1", port))
            s.sendto(b"z" * 30, ("127.0.0.1", port))
        await d.wait_for(lambda: len(d.records) == 3)

    d = run("udp", "message_length_limit 10\nsource_address_key addr\n<parse>\n@type none\n</parse>", body)
    assert [r["message"] for r in d.records] == ["one", "two", "z" * 10]
    assert d.records[0]["addr"] == "127.0.0.1"


@pytest.mark.parametrize("kind, conf, message", [
    ("tcp", "tag t", "<parse> section is required."),
    ("udp", "tag t", "<parse> section is required."),
    ("tcp", "<parse>\n@type none\n</parse>", "tag"),
    ("tcp", "tag t\n<security>\n<client>\nhost a\nnetwork 10.0.0.0/8\n</client>\n</security>\n<parse>\n@type none\n"
            "</parse>", "both of 'host' and 'network' are specified for client"),
])
def test_configuration_errors(kind: str, conf: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        InputDriver(kind, conf)
    assert message in str(info.value)





def test_tcp_extract_takes_the_tag_and_time_from_record_fields() -> None:
    async def body(d: InputDriver, port: int) -> None:
        await tcp_send(port, b'{"t":"app.a","at":1700000000.5,"m":1}\n{"m":2}\n{"t":"app.b","m":3}\n')
        await d.wait_for(lambda: len(d.records) == 3)

    d = run("tcp", "<parse>\n@type json\n</parse>\n<extract>\ntag_key t\ntime_key at\n</extract>\nsource_address_key addr",
            body)
    assert [(tag, r["m"]) for tag, _t, r in d.events] == [("app.a", 1), ("net", 2), ("app.b", 3)]
    assert d.events[0][1] == 1_700_000_000_500_000_000
    assert d.records[0] == {"m": 1, "addr": "127.0.0.1"}          # tag_key and time_key taken out


def test_udp_extract_keeps_the_keys_when_asked() -> None:
    async def body(d: InputDriver, port: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b'{"t":"app.u","m":1}', ("127.0.0.1", port))
        await d.wait_for(lambda: len(d.records) == 1)

    d = run("udp", "<parse>\n@type json\n</parse>\n<extract>\ntag_key t\nkeep_tag_key true\n</extract>", body)
    assert d.events[0][0] == "app.u" and d.records == [{"t": "app.u", "m": 1}]
