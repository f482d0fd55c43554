"""forward output with <service_discovery>: @type static, @type file (YAML and JSON lists, read again
when the file changes: servers in and out), @type srv refused, sd_file's errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Callable

import pytest

from kawa.errors import ConfigError
from kawa.testing.cwl_server import free_port
from kawa.testing.drivers import InputDriver, OutputDriver

T = 1_700_000_000 * 1_000_000_000


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.02)


def test_static_services() -> None:
    server = InputDriver("forward", "bind 127.0.0.1\nport 0\n")

    async def go() -> None:
        async with server.run():
            conf = ("require_ack_response true\n<service_discovery>\n@type static\n"
                    f"<service>\nhost 127.0.0.1\nport {server.instance.port}\n</service>\n</service_discovery>\n")
            client = OutputDriver("forward", conf)
            async with client.run():
                await client.feed("app", T, {"n": 1})
                await client.flush()
                await server.wait_for(lambda: len(server.events) == 1)

    asyncio.run(go())


@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_a_file_list_is_read_again_when_it_changes(tmp_path: Path, suffix: str) -> None:
    first = InputDriver("forward", "bind 127.0.0.1\nport 0\n")
    second = InputDriver("forward", "bind 127.0.0.1\nport 0\n")
    listing = tmp_path / f"sd.{suffix}"

    def write(port: int, name: str) -> None:
        if suffix == "json":
            listing.write_text(json.dumps([{"host": "127.0.0.1", "port": port, "name": name}]))
        else:
            listing.write_text(f"- host: 127.0.0.1\n  port: {port}\n  name: {name}\n")

    ports: list[int] = []

    async def go() -> OutputDriver:
        async with first.run(), second.run():
            write(first.instance.port, "first")
            client = OutputDriver("forward", f"require_ack_response true\n<service_discovery>\n@type file\n"
                                             f"path {listing}\n</service_discovery>\n")
            client.instance.sd_poll_interval = 0.1
            async with client.run():
                await client.feed("app", T, {"n": 1})
                await client.flush()
                await first.wait_for(lambda: len(first.events) == 1)
                ports.append(second.instance.port)
                write(second.instance.port, "second")
                await until(lambda: any("Service out: name=first" in line for line in client.logs))
                await client.feed("app", T, {"n": 2})
                await client.flush()
                await second.wait_for(lambda: len(second.events) == 1)
            return client

    client = asyncio.run(go())
    assert [r["n"] for r in first.records] == [1] and [r["n"] for r in second.records] == [2]
    assert any(f"Service in: name=second 127.0.0.1:{ports[0]}" in line for line in client.logs), client.logs
    assert client.instance.stats()["registered_nodes_count"] == 1


def test_a_file_that_breaks_later_keeps_the_servers(tmp_path: Path) -> None:
    listing = tmp_path / "sd.json"
    listing.write_text(json.dumps([{"host": "127.0.0.1", "port": free_port()}]))
    client = OutputDriver("forward", f"<service_discovery>\n@type file\npath {listing}\n</service_discovery>\n")
    client.instance.sd_poll_interval = 0.05

    async def go() -> None:
        async with client.run():
            listing.write_text("[{\"port\": 1}, ")
            await until(lambda: any("sd_file:" in line for line in client.logs))

    asyncio.run(go())
    assert client.instance.stats()["registered_nodes_count"] == 1
    assert any("[error]" in line and "sd_file:" in line for line in client.logs), client.logs


@pytest.mark.parametrize("sd, message", [
    ("@type file\npath /nonexistent/sd.yaml", "sd_file: path=/nonexistent/sd.yaml not found"),
    ("@type srv\nservice fluentd", "@type srv (DNS SRV records) is not supported by kawa"),
    ("@type consul", "Unknown sd plugin 'consul'"),
])
def test_configuration_errors(sd: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        OutputDriver("forward", f"<service_discovery>\n{sd}\n</service_discovery>\n")


def test_a_listed_server_without_a_port_is_refused(tmp_path: Path) -> None:
    listing = tmp_path / "sd.json"
    listing.write_text(json.dumps([{"host": "10.0.0.1"}]))
    with pytest.raises(ConfigError, match='key not found: "port". Service must have `host` and `port`'):
        OutputDriver("forward", f"<service_discovery>\n@type file\npath {listing}\n</service_discovery>\n")
