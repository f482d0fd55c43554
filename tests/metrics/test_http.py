"""The tiny HTTP server: routing, methods, HEAD, bad requests, a failing handler, over real sockets."""

from __future__ import annotations

import asyncio
import http.client
import io
import socket
from typing import Any, Callable

from kawa.log import LogSink, Logger
from kawa.metrics.http import HttpServer, Request, Response


def serve(routes: dict[str, Callable[[Request], Response]], client: Callable[[int], Any]) -> tuple[Any, str]:
    """Runs the server on a free port while `client(port)` runs in a thread; returns its result and the log."""
    stream = io.StringIO()

    async def run() -> Any:
        server = HttpServer("127.0.0.1", 0, routes, Logger(LogSink(stream)))
        await server.start()
        try:
            return await asyncio.get_running_loop().run_in_executor(None, client, server.bound_port)
        finally:
            await server.stop()

    return asyncio.run(run()), stream.getvalue()


def request(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def echo(req: Request) -> Response:
    return Response(200, f"{req.method} {req.path} {req.param('@id', 'id')} {req.headers.get('host')}\n")


def test_routes_query_and_headers() -> None:
    (status, headers, body), _ = serve({"/echo": echo}, lambda p: request(p, "GET", "/echo?id=x&id=y"))
    assert status == 200
    assert body.startswith(b"GET /echo x 127.0.0.1:")
    assert headers["content-length"] == str(len(body))
    assert headers["connection"] == "close"


def test_unknown_path_method_and_head() -> None:
    def client(port: int) -> list[Any]:
        return [request(port, "GET", "/nope"), request(port, "POST", "/echo"), request(port, "HEAD", "/echo")]

    (missing, post, head), _ = serve({"/echo": echo}, client)
    assert missing[0] == 404
    assert post[0] == 405 and post[1]["allow"] == "GET, HEAD"
    assert head[0] == 200 and head[2] == b"" and int(head[1]["content-length"]) > 0


def test_garbage_request_gets_400_and_server_keeps_serving() -> None:
    def client(port: int) -> tuple[bytes, int]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"NONSENSE\r\n\r\n")
            answer = sock.recv(1024)
        return answer, request(port, "GET", "/echo")[0]

    (answer, after), _ = serve({"/echo": echo}, client)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert after == 200


def test_oversized_request_head_is_refused() -> None:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /echo HTTP/1.1\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
            return sock.recv(1024)

    answer, _ = serve({"/echo": echo}, client)
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_a_failing_handler_answers_500_and_is_logged() -> None:
    def broken(_req: Request) -> Response:
        raise KeyError("stats")

    (status, _, body), log = serve({"/m": broken}, lambda p: request(p, "GET", "/m"))
    assert status == 500 and b"KeyError" in body
    assert "failed to serve HTTP request" in log and 'path="/m"' in log
