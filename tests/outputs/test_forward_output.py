"""forward output into kawa's forward input over real sockets: times, tags and records through, acks,
gzip, the <security> handshake, failover, standby servers, an ack that never comes, config errors."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest

from kawa.errors import ConfigError
from kawa.testing.cwl_server import free_port
from kawa.testing.drivers import InputDriver, OutputDriver

NS = 1_000_000_000
T = 1_700_000_000 * NS + 123_456_789


def run(server_conf: str, client_conf: str, body: Callable[[InputDriver, OutputDriver], Awaitable[None]],
        client_port: Callable[[int], str] | None = None) -> tuple[InputDriver, OutputDriver]:
    server = InputDriver("forward", "bind 127.0.0.1\nport 0\n" + server_conf)
    holder: dict[str, Any] = {}

    async def go() -> None:
        async with server.run():
            port = server.instance.port
            conf = client_port(port) if client_port else f"<server>\nhost 127.0.0.1\nport {port}\n</server>\n"
            client = OutputDriver("forward", conf + client_conf)
            holder["client"] = client
            async with client.run():
                await body(server, client)

    asyncio.run(go())
    return server, holder["client"]


async def send_three(server: InputDriver, client: OutputDriver) -> None:
    await client.feed_batch("app.web", [(T, {"n": 1}), (T + 1, {"n": 2, "nested": {"a": [1, "x"]}})])
    await client.feed("app.db", T + 2, {"n": 3, "text": "é"})
    await client.flush()
    await server.wait_for(lambda: len(server.events) == 3, 10)


@pytest.mark.parametrize("conf", ["", "require_ack_response true", "compress gzip\nrequire_ack_response true",
                                  "keepalive true"])
def test_events_arrive_with_their_tags_and_nanosecond_times(conf: str) -> None:
    server, client = run("", conf, send_three)
    assert sorted(server.events, key=lambda e: e[1]) == [
        ("app.web", T, {"n": 1}), ("app.web", T + 1, {"n": 2, "nested": {"a": [1, "x"]}}),
        ("app.db", T + 2, {"n": 3, "text": "é"})]
    stats = client.instance.stats()
    assert stats["chunks"] == 2 and stats["events"] == 3
    assert stats["acks"] == (2 if "require_ack_response" in conf else 0)


def test_time_as_integer_sends_seconds() -> None:
    server, _ = run("", "time_as_integer true", send_three)
    assert {t for _tag, t, _r in server.events} == {T // NS * NS}


SERVER_SECURITY = """
<security>
  self_hostname aggregator
  shared_key secret-key
  user_auth true
  <user>
    username sidecar
    password pw
  </user>
</security>
"""


def test_security_handshake() -> None:
    def conf(port: int) -> str:
        return (f"<server>\nhost 127.0.0.1\nport {port}\nusername sidecar\npassword pw\n</server>\n"
                "<security>\nself_hostname web-1\nshared_key secret-key\n</security>\n")
    server, _ = run(SERVER_SECURITY, "require_ack_response true", send_three, conf)
    assert len(server.events) == 3


def test_a_wrong_shared_key_detaches_the_server_and_the_chunk_is_kept() -> None:
    async def body(server: InputDriver, client: OutputDriver) -> None:
        await client.feed("app", T, {"n": 1})
        await client.flush()
        await asyncio.sleep(0.3)

    def conf(port: int) -> str:
        return (f"<server>\nhost 127.0.0.1\nport {port}\nusername sidecar\npassword pw\n</server>\n"
                "<security>\nself_hostname web-1\nshared_key wrong\n</security>\n")
    server, client = run(SERVER_SECURITY, "<buffer>\nflush_at_shutdown false\n</buffer>", body, conf)
    assert server.events == []
    logs = "\n".join(client.logs)
    assert "detached forwarding server '127.0.0.1:" in logs and 'reason="authentication failed: shared_key mismatch"' \
        in logs, logs
    assert client.instance.stats()["retry_count"] >= 1


def test_a_server_that_is_down_fails_over_to_the_next() -> None:
    down = free_port()

    def conf(port: int) -> str:
        return (f"<server>\nname first\nhost 127.0.0.1\nport {down}\n</server>\n"
                f"<server>\nname second\nhost 127.0.0.1\nport {port}\n</server>\n")
    server, client = run("", "require_ack_response true", send_three, conf)
    assert len(server.events) == 3
    logs = "\n".join(client.logs)
    assert "detached forwarding server 'first'" in logs and "cannot connect" in logs, logs
    assert client.instance.stats()["healthy_nodes_count"] == 1


def test_a_standby_server_takes_over_only_when_the_others_are_down() -> None:
    down = free_port()

    def conf(port: int) -> str:
        return (f"<server>\nname main\nhost 127.0.0.1\nport {down}\n</server>\n"
                f"<server>\nname spare\nhost 127.0.0.1\nport {port}\nstandby true\n</server>\n")
    server, client = run("", "", send_three, conf)
    assert len(server.events) == 3


def test_an_ack_that_never_comes_is_a_retry() -> None:
    async def go() -> OutputDriver:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1 << 20)           # takes the chunk, never answers
            await asyncio.sleep(5)

        listener = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        client = OutputDriver("forward", f"<server>\nhost 127.0.0.1\nport {port}\n</server>\n"
                                         "require_ack_response true\nack_response_timeout 0.5\n"
                                         "<buffer>\nflush_at_shutdown false\n</buffer>")
        async with client.run():
            await client.feed("app", T, {"n": 1})
            await client.flush()
        listener.close()
        return client

    client = asyncio.run(go())
    logs = "\n".join(client.logs)
    assert "no response from node: an ack timed out" in logs, logs
    assert client.instance.stats()["retry_count"] >= 1


@pytest.mark.parametrize("conf, message", [
    ("", "forward output plugin requires at least one node is required"),
    ("host 127.0.0.1", "'host' parameter is already removed: Use <server> section instead."),
    ("transport tls\ntls_cert_logical_store_name My\n<server>\nhost a\n</server>", "This parameter is for only Windows"),
    ("<server>\nhost a\n</server>\n<buffer time>\ntimekey 60\n</buffer>",
     "buffer chunk key must include 'tag' for forward output"),
])
def test_configuration_errors(conf: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        OutputDriver("forward", conf)
    assert message in str(info.value)


def test_a_kept_connection_the_server_dropped_is_replaced_without_detaching_the_server() -> None:
    """keepalive: the aggregator restarted between two chunks; the second goes over a new connection."""
    port = free_port()

    async def go() -> tuple[OutputDriver, list[Any]]:
        got: list[Any] = []
        client = OutputDriver("forward", f"<server>\nhost 127.0.0.1\nport {port}\n</server>\n"
                                         "keepalive true\nrequire_ack_response true")
        async with client.run():
            for n in (1, 2):
                server = InputDriver("forward", f"bind 127.0.0.1\nport {port}")
                async with server.run():
                    await client.feed("app", T, {"n": n})
                    await client.flush()
                    await server.wait_for(lambda s=server: len(s.events) == 1, 10)
                    got.extend(server.records)
        return client, got

    client, got = asyncio.run(go())
    assert got == [{"n": 1}, {"n": 2}]
    assert not any("detached forwarding server" in line for line in client.logs), client.logs
