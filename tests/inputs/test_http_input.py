"""http input over a real socket (http.client as the app): form, JSON, ndjson, msgpack, gzip bodies,
tags from paths, time parameters, headers/query/remote address keys, CORS, errors with reasons."""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
from typing import Any, Awaitable, Callable
from urllib.parse import urlencode

import msgpack
import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import InputDriver

NS = 1_000_000_000


def run(conf: str, body: Callable[[InputDriver, int], Awaitable[None]]) -> InputDriver:
    d = InputDriver("http", "bind 127.0.0.1\nport 0\n" + conf)

    async def go() -> None:
        async with d.run():
            await body(d, d.instance.port)
    asyncio.run(go())
    return d


def post(port: int, path: str, body: bytes, headers: dict[str, str] | None = None,
         method: str = "POST") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


async def call(*args: Any, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(post, *args, **kwargs)


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_bodies_of_every_kind_and_tags_from_paths() -> None:
    async def body(d: InputDriver, port: int) -> None:
        assert (await call(port, "/app.form", urlencode({"json": '{"a":1}', "time": "1700000000.5"}).encode(),
                           FORM))[0] == 200
        assert (await call(port, "/app/json", b'[{"b":2},{"c":3,"time":1700000001}]',
                           {"Content-Type": "application/json"}))[0] == 200
        assert (await call(port, "/nd", b'{"d":4}\n{"e":5}\n', {"Content-Type": "application/x-ndjson"}))[0] == 200
        assert (await call(port, "/mp", msgpack.packb({"f": 6}), {"Content-Type": "application/msgpack"}))[0] == 200
        gz = gzip.compress(b'{"g":7}')
        assert (await call(port, "/gz", gz, {"Content-Type": "application/json", "Content-Encoding": "gzip"}))[0] == 200
        await d.wait_for(lambda: len(d.records) == 7)

    d = run("", body)
    assert [(tag, r) for tag, _t, r in d.events] == [
        ("app.form", {"a": 1}), ("app.json", {"b": 2}), ("app.json", {"c": 3}), ("nd", {"d": 4}), ("nd", {"e": 5}),
        ("mp", {"f": 6}), ("gz", {"g": 7})]
    assert d.events[0][1] == 1_700_000_000 * NS + NS // 2          # time= parameter
    assert d.events[2][1] == 1_700_000_001 * NS                    # the record's time key, removed


def test_keys_from_headers_query_and_remote_address_with_a_tag_prefix() -> None:
    async def body(d: InputDriver, port: int) -> None:
        status, _, _ = await call(port, "/web?user=u1", b'{"a":1}', {"Content-Type": "application/json",
                                                                     "X-Trace-Id": "t-9"})
        assert status == 200
        await d.wait_for(lambda: len(d.records) == 1)

    d = run("add_http_headers true\nadd_query_params true\nadd_remote_addr true\nadd_tag_prefix in", body)
    [(tag, _t, record)] = d.events
    assert tag == "in.web"
    assert record["HTTP_X_TRACE_ID"] == "t-9" and record["QUERY_USER"] == "u1" and record["REMOTE_ADDR"] == "127.0.0.1"


def test_a_body_that_does_not_parse_is_a_400_with_the_reason() -> None:
    async def body(d: InputDriver, port: int) -> None:
        status, _, text = await call(port, "/x", b"not json", {"Content-Type": "application/json"})
        assert status == 400 and text.startswith(b"400 Bad Request\n")
        status, _, text = await call(port, "/x", b"a=1", FORM)
        assert status == 400 and b"'json', 'ndjson' or 'msgpack' parameter is required" in text
        assert (await call(port, "/x", b"", method="GET"))[0] == 200      # health checks: no event

    d = run("", body)
    assert d.records == []
    assert sum("failed to process request" in line for line in d.logs) == 2


def test_a_failed_emit_is_a_500_so_the_client_sends_again() -> None:
    async def body(d: InputDriver, port: int) -> None:
        d.emitter.refuse = RuntimeError("buffer full")
        status, _, text = await call(port, "/x", b'{"a":1}', {"Content-Type": "application/json"})
        assert status == 500 and b"buffer full" in text

    run("", body)


def test_custom_parser_and_204() -> None:
    async def body(d: InputDriver, port: int) -> None:
        status, _, _ = await call(port, "/raw", b"hello world")
        assert status == 204
        await d.wait_for(lambda: len(d.records) == 1)

    d = run("use_204_response true\n<parse>\n@type none\n</parse>", body)
    assert d.records == [{"message": "hello world"}]


def test_cors() -> None:
    async def body(d: InputDriver, port: int) -> None:
        status, headers, _ = await call(port, "/x", b"", {"Origin": "https://app.example",
                                                          "Access-Control-Request-Method": "POST"}, method="OPTIONS")
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://app.example"
        status, _, _ = await call(port, "/x", b'{"a":1}', {"Content-Type": "application/json",
                                                           "Origin": "https://evil.example"})
        assert status == 403
        status, headers, _ = await call(port, "/x", b'{"a":1}', {"Content-Type": "application/json",
                                                                  "Origin": "https://app.example"})
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://app.example"

    d = run("cors_allow_origins [\"https://app.example\"]", body)
    assert len(d.records) == 1


def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async def body(d: InputDriver, port: int) -> None:
        def three() -> list[int]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            out = []
            for i in range(3):
                conn.request("POST", "/k", body=json.dumps({"i": i}), headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                out.append(resp.status)
            conn.close()
            return out
        assert await asyncio.to_thread(three) == [200, 200, 200]

    d = run("", body)
    assert [r["i"] for r in d.records] == [0, 1, 2]


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="Cannot enable cors_allow_credentials without specific origins"):
        InputDriver("http", "cors_allow_credentials true")


def test_malformed_requests_get_a_400_and_the_server_goes_on() -> None:
    async def body(d: InputDriver, port: int) -> None:
        for raw in (b"POST /x HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                    b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(raw)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(200), 5)
            assert answer.startswith(b"HTTP/1.1 400 Bad Request"), answer
            writer.close()
        assert (await call(port, "/ok", b'{"a":1}', {"Content-Type": "application/json"}))[0] == 200

    d = run("", body)
    assert d.records == [{"a": 1}]
