"""A tiny asyncio HTTP/1.1 server for the observability inputs: GET/HEAD routes, one reply per connection.

No framework: scrapes and probes are small GETs, so a request line, headers and `Connection: close`
are all that is needed. Handlers are sync functions (rendering is cheap) returning a Response.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from kawa.log import Logger

MAX_REQUEST_HEAD = 16 * 1024        # bytes; a scrape request is a few hundred
READ_TIMEOUT_S = 10.0
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            413: "Payload Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]            # lower-cased names

    def param(self, *names: str) -> str | None:
        """First value of the first name present (Fluentd's `qs['@id'].first || qs['id'].first`)."""
        for name in names:
            values = self.query.get(name)
            if values:
                return values[0]
        return None


@dataclass
class Response:
    status: int = 200
    body: bytes | str = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


class HttpServer:
    """Serves `routes` (exact path -> handler) on bind:port; `not_found` answers every other path."""

    def __init__(self, bind: str, port: int, routes: dict[str, Handler], log: Logger,
                 not_found: Handler | None = None) -> None:
        self.bind = bind
        self.port = port
        self.routes = routes
        self.log = log
        self.not_found = not_found or (lambda _req: Response(404, "Not found\n"))
        self._server: asyncio.base_events.Server | None = None

    @property
    def bound_port(self) -> int:
        """The real port (differs from `port` when 0 asked the OS for a free one)."""
        assert self._server is not None and self._server.sockets, "BUG: server not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, self.bind, self.port, reuse_address=True,
                                                      limit=MAX_REQUEST_HEAD)

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            except asyncio.LimitOverrunError:
                await self._write(writer, Response(413, "request head too large\n"), False)
                return
            except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                return
            request = parse_head(head)
            if request is None:
                await self._write(writer, Response(400, "bad request\n"), False)
                return
            if request.method not in ("GET", "HEAD"):
                resp = Response(405, "only GET and HEAD\n", headers={"Allow": "GET, HEAD"})
            else:
                resp = self._dispatch(request)
            await self._write(writer, resp, request.method == "HEAD")
        except ConnectionError:
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass

    def _dispatch(self, request: Request) -> Response:
        handler = self.routes.get(request.path, self.not_found)
        try:
            return handler(request)
        except Exception as exc:  # one broken handler must not kill the server; say why
            self.log.limited(f"http:{request.path}", "error", "failed to serve HTTP request",
                             path=request.path, error_class=type(exc).__name__, error=str(exc))
            return Response(500, f"server error: <{type(exc).__name__}>\n")

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, resp: Response, head_only: bool) -> None:
        body = resp.body.encode() if isinstance(resp.body, str) else resp.body
        lines = [f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Unknown')}",
                 f"Content-Type: {resp.content_type}", f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in resp.headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head_only:
            writer.write(body)
        await writer.drain()


def parse_head(head: bytes) -> Request | None:
    """The request line and headers of `head` (ending with a blank line); None when malformed."""
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError:
        return None
    if not version.startswith("HTTP/1."):
        return None
    headers: dict[str, str] = {}
    for line in header_lines:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                return None
            headers[name.strip().lower()] = value.strip()
    parts = urlsplit(target)
    return Request(method, parts.path or "/", parse_qs(parts.query, keep_blank_values=True), headers)
