"""syslog input over real sockets: RFC 3164 / 5424 over UDP and TCP (traditional and octet-counted
frames), tags by facility and severity, keys, unmatched messages, config errors."""

from __future__ import annotations

import asyncio
import socket
from typing import Awaitable, Callable

import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import InputDriver


def run(conf: str, body: Callable[[InputDriver, int], Awaitable[None]]) -> InputDriver:
    d = InputDriver("syslog", "bind 127.0.0.1\nport 0\ntag sys\n" + conf)

    async def go() -> None:
        async with d.run():
            await body(d, d.instance.port)
    asyncio.run(go())
    return d


def test_udp_rfc3164_tags_by_facility_and_severity() -> None:
    async def body(d: InputDriver, port: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"<30>Feb 28 12:00:00 host1 app[12]: hello\n", ("127.0.0.1", port))
            s.sendto(b"<11>Feb 28 12:00:01 host2 cron: failed", ("127.0.0.1", port))
        await d.wait_for(lambda: len(d.records) == 2)

    d = run("severity_key severity\nfacility_key facility\nsource_address_key addr", body)
    assert [(tag, r["message"]) for tag, _t, r in d.events] == [("sys.daemon.info", "hello"),
                                                                 ("sys.user.err", "failed")]
    first = d.records[0]
    assert (first["severity"], first["facility"], first["host"], first["ident"], first["pid"], first["addr"]) == \
        ("info", "daemon", "host1", "app", "12", "127.0.0.1")
    assert "pri" not in first


def test_tcp_rfc5424_octet_counted_frames() -> None:
    msg = b"<165>1 2003-10-11T22:14:15.003Z mymachine evntslog - ID47 - An application event"

    async def body(d: InputDriver, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        frame = str(len(msg)).encode() + b" " + msg
        writer.write(frame * 2 + frame[:10])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(frame[10:])
        await writer.drain()
        await d.wait_for(lambda: len(d.records) == 3)
        writer.close()

    d = run("<transport tcp>\n</transport>\nframe_type octet_count\n<parse>\nmessage_format rfc5424\n</parse>", body)
    assert {tag for tag, _t, _r in d.events} == {"sys.local4.notice"}
    assert d.records[0]["message"] == "An application event" and d.records[0]["msgid"] == "ID47"


def test_unmatched_messages() -> None:
    async def body(d: InputDriver, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"no priority here\n<13>Feb 28 12:00:00 h a: ok\n")
        await writer.drain()
        await d.wait_for(lambda: len(d.records) == 2)
        writer.close()

    d = run("protocol_type tcp\nemit_unmatched_lines true", body)
    assert [(tag, r) for tag, _t, r in d.events][0] == ("sys.unmatched", {"unmatched_line": "no priority here"})
    assert any('failed to parse message data="no priority here"' in line for line in d.logs), d.logs


@pytest.mark.parametrize("conf, message", [
    ("", "tag"),
    ("tag t\n<transport tls>\n</transport>", "no valid cert options configured"),
    ("tag t\nsend_keepalive_packet true", "send_keepalive_packet is available for tcp/tls"),
    ("tag t\ninclude_source_host true\nsource_address_key a", "specify either source_address_key or include_source_host"),
])
def test_configuration_errors(conf: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        InputDriver("syslog", conf)
    assert message in str(info.value)
