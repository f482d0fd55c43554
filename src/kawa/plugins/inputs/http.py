"""Fluentd's in_http: events POSTed to http://host:9880/<tag path>, e.g.

    curl -X POST -d 'json={"action":"login"}' http://localhost:9880/app.access
    curl -X POST -H 'Content-Type: application/json' -d '[{"a":1},{"a":2}]' http://localhost:9880/app/access

Bodies: form fields json= / msgpack= / ndjson= (and time=), or application/json, application/msgpack,
application/x-ndjson, gzip/deflate Content-Encoding; with a <parse> section the whole body is one
text for that parser. The response is 200 once the events are emitted (400 for a body that does not
parse, with the reason; 500 when the emit fails, so the client can send again). GET answers 200 with no
event (health checks), OPTIONS answers CORS preflights.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any
from urllib.parse import parse_qs

import msgpack
import orjson

from kawa import tls
from kawa.config.schema import Options, option, section
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.event import Event, NS_PER_SEC, Record
from kawa.metrics.http import parse_head
from kawa.plugins.base import Input, PluginContext
from kawa.plugins.parsers._common import ruby_to_f
from kawa.plugins.inputs._server import StreamServer

MAX_HEAD = 64 * 1024
EMPTY_GIF = (b"GIF89a\x01\x00\x01\x00\x80\xff\x00\xff\xff\xff\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00"
             b"\x02\x02D\x01\x00;")
_REASONS = {100: "Continue", 200: "OK", 204: "No Content", 400: "Bad Request", 403: "Forbidden",
            413: "Request Entity Too Large", 417: "Expectation Failed", 500: "Internal Server Error"}


class HttpInputOptions(Options):
    port = option(9880, "integer", doc="The port to listen on.")
    bind = option("0.0.0.0", doc="The address to listen on.")
    body_size_limit = option(32 * 1024 * 1024, "size", doc="Larger bodies are refused (413).")
    decompression_size_limit = option(256 * 1024 * 1024, "size", doc="Largest decompressed body.")
    keepalive_timeout = option(10.0, "time", doc="Close a kept-alive connection idle this long.")
    backlog = option(None, "integer", doc="The listen backlog.")
    add_http_headers = option(False, "bool", doc="Add each request header as HTTP_<NAME> to the records.")
    add_remote_addr = option(False, "bool", doc="Add REMOTE_ADDR (X-Forwarded-For's first, else the peer).")
    blocking_timeout = option(0.5, "time", no_effect="Cool.io's loop wait; asyncio has none",
                              doc="Fluentd's event loop wait.")
    cors_allow_origins = option(None, "array", doc="Origins allowed by CORS ('*': any).")
    cors_allow_credentials = option(False, "bool", doc="Answer Access-Control-Allow-Credentials.")
    respond_with_empty_img = option(False, "bool", doc="Answer with a 1x1 GIF.")
    use_204_response = option(False, "bool", doc="Answer 204 No Content.")
    dump_error_log = option(True, "bool", doc="Log requests that fail.")
    add_query_params = option(False, "bool", doc="Add each query parameter as QUERY_<NAME> to the records.")
    add_tag_prefix = option(None, doc="Prefix (with a dot) added to every tag.")
    parse = section(plugin_kind="parser", doc="Parse each whole body with this parser instead.")
    transport = section(tls.TransportOptions, doc="<transport tcp|tls>: socket and TLS settings (https).")


class BadRequest(Exception):
    pass


@register("input", "http")
class HttpInput(Input):
    Options = HttpInputOptions
    multi_workers_ready = True
    compat_sections = ("parse",)

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        o = options
        if o.cors_allow_credentials and (o.cors_allow_origins is None or "*" in o.cors_allow_origins):
            raise ConfigError("Cannot enable cors_allow_credentials without specific origins")
        if o.add_tag_prefix is not None and o.add_tag_prefix == "":
            raise ConfigError("'add_tag_prefix' parameter must not be empty")
        self.parser = self.build_child(o.parse, "parse") if o.parse is not None else None
        transport = o.transport if o.transport is not None else tls.TransportOptions.defaults()
        self.listener = StreamServer(self._serve, self.log, "http", tls=tls.listener_context(transport, self.log))
        self.counters = {"requests": 0, "events": 0, "bad_requests": 0, "emit_failures": 0}

    @property
    def port(self) -> int:
        return self.listener.port or int(self.options.port)

    async def start(self) -> None:
        o = self.options
        self.log.debug("listening http", bind=o.bind, port=o.port)
        extra: dict[str, Any] = {"limit": MAX_HEAD}
        if o.backlog is not None:
            extra["backlog"] = o.backlog
        await self.listener.start(o.bind, o.port, shared=getattr(self.ctx.system, "workers", 1) > 1, **extra)

    async def stop(self) -> None:
        await self.listener.stop()

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "tls_handshake_failures": self.listener.tls_failures}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests one after another while the client keeps the connection alive."""
        peer = str((writer.get_extra_info("peername") or ("",))[0])
        while await self._one_request(reader, writer, peer):
            pass

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> bool:
        """Serve one request; True when the connection stays open for the next one."""
        o = self.options
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), o.keepalive_timeout)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError):
            return False
        except asyncio.LimitOverrunError:
            await self._respond(writer, 400, {}, b"400 Bad Request\nrequest head too large\n", close=True)
            return False
        request = parse_head(head)
        if request is None:
            await self._respond(writer, 400, {}, b"400 Bad Request\n", close=True)
            return False
        headers = request.headers
        keep_alive = head.split(b"\r\n", 1)[0].endswith(b"HTTP/1.1")
        connection = headers.get("connection", "").lower()
        if "close" in connection:
            keep_alive = False
        elif "keep-alive" in connection:
            keep_alive = True
        try:
            length = int(headers.get("content-length", "0") or 0)
        except ValueError:
            await self._respond(writer, 400, {}, b"400 Bad Request\ninvalid Content-Length\n", close=True)
            return False
        if headers.get("expect") == "100-continue":
            if length >= o.body_size_limit:
                await self._respond(writer, 413, {}, b"Too large", close=True)
                return False
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            body = await self._read_body(reader, headers, length)
        except ValueError:
            await self._respond(writer, 400, {}, b"400 Bad Request\ninvalid chunked body\n", close=True)
            return False
        if body is None:
            await self._respond(writer, 413, {}, b"Too large", close=True)
            return False
        status, extra, payload = await self._handle(request, body, peer)
        await self._respond(writer, status, extra, payload, close=not keep_alive)
        return keep_alive

    async def _read_body(self, reader: asyncio.StreamReader, headers: dict[str, str], length: int) -> bytes | None:
        limit = self.options.body_size_limit
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            size = 0
            while True:
                line = await reader.readuntil(b"\r\n")
                chunk = int(line.split(b";")[0].strip() or b"0", 16)
                if chunk == 0:
                    await reader.readuntil(b"\r\n")
                    return b"".join(parts)
                size += chunk
                if size > limit:
                    return None
                parts.append(await reader.readexactly(chunk))
                await reader.readexactly(2)
        if length > limit:
            return None
        return await reader.readexactly(length) if length else b""

    async def _respond(self, writer: asyncio.StreamWriter, status: int, headers: dict[str, str], body: bytes,
                       close: bool) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}"]
        headers = {"Content-Type": "text/plain", **headers}
        if status != 204:
            headers["Content-Length"] = str(len(body))
        headers["Connection"] = "close" if close else "Keep-Alive"
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body if status != 204 else b""))
        await writer.drain()

    # -- one request --------------------------------------------------------------------------------
    async def _handle(self, request: Any, body: bytes, peer: str) -> tuple[int, dict[str, str], bytes]:
        o = self.options
        headers = request.headers
        method = request.method
        origin = headers.get("origin")
        cors = o.cors_allow_origins
        if method == "GET":
            return 200, {}, b""
        if method == "OPTIONS":
            return self._preflight(headers)
        if cors is not None and not ("*" in cors or origin is None or origin in cors):
            return 403, {}, b""
        self.counters["requests"] += 1
        cors_headers: dict[str, str] = {}
        if cors is not None:
            if "*" in cors:
                cors_headers["Access-Control-Allow-Origin"] = "*"
            elif origin in cors:
                cors_headers["Access-Control-Allow-Origin"] = origin
                if o.cors_allow_credentials:
                    cors_headers["Access-Control-Allow-Credentials"] = "true"
        try:
            body = self._decode(body, headers.get("content-encoding", ""))
        except BadRequest as exc:
            self.log.warn("fails to decode payload", error=str(exc))
            return 400, cors_headers, b""
        try:
            tag, events = self._events(request, body, peer)
        except Exception as exc:
            self.counters["bad_requests"] += 1
            if o.dump_error_log:
                self.log.error("failed to process request", error=str(exc))
            return 400, cors_headers, f"400 Bad Request\n{exc}\n".encode()
        if events:
            try:
                await self.emitter.emit(tag, events)
            except Exception as exc:
                self.counters["emit_failures"] += 1
                if o.dump_error_log:
                    self.log.error("failed to emit data", error=f"{type(exc).__name__}: {exc}")
                return 500, cors_headers, f"500 Internal Server Error\n{exc}\n".encode()
            self.counters["events"] += len(events)
        if o.respond_with_empty_img:
            return 200, {**cors_headers, "Content-Type": "image/gif; charset=utf-8"}, EMPTY_GIF
        return (204 if o.use_204_response else 200), cors_headers, b""

    def _preflight(self, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        o = self.options
        cors, origin = o.cors_allow_origins, headers.get("origin")
        if cors is None or headers.get("access-control-request-method") != "POST":
            return 403, {}, b""
        answer = {"Access-Control-Allow-Methods": "POST",
                  "Access-Control-Allow-Headers": headers.get("access-control-request-headers", "")}
        if "*" in cors:
            return 200, {**answer, "Access-Control-Allow-Origin": "*"}, b""
        if origin in cors:
            answer["Access-Control-Allow-Origin"] = origin
            if o.cors_allow_credentials:
                answer["Access-Control-Allow-Credentials"] = "true"
            return 200, answer, b""
        return 403, {}, b""

    def _decode(self, body: bytes, encoding: str) -> bytes:
        if encoding not in ("gzip", "deflate"):
            return body
        inflate = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
        limit = self.options.decompression_size_limit
        try:
            out = inflate.decompress(body, limit + 1)
        except zlib.error as exc:
            raise BadRequest(str(exc)) from None
        if len(out) > limit:
            raise BadRequest(f"decompressed size exceeds decompression_size_limit ({limit} bytes)")
        return out

    def _events(self, request: Any, body: bytes, peer: str) -> tuple[str, list[Event]]:
        o = self.options
        tag = ".".join(request.path[1:].split("/"))      # the path without its query
        if o.add_tag_prefix is not None:
            tag = f"{o.add_tag_prefix}.{tag}"
        params: dict[str, Any] = {k: v[0] for k, v in request.query.items()}
        content_type = request.headers.get("content-type", "")
        records: list[tuple[int | None, Record]]
        if self.parser is not None:
            parsed, failures = self.parser.parse_batch([body.decode("utf-8", "surrogateescape")])
            if failures:
                raise BadRequest(f"pattern not matched: {failures[0].reason}")
            records = list(parsed)
        else:
            if content_type.startswith("application/x-www-form-urlencoded"):
                params.update({k: v[0] for k, v in parse_qs(body.decode("utf-8", "surrogateescape"),
                                                            keep_blank_values=True).items()})
            elif content_type.startswith(("application/json", "application/csp-report")):
                params["json"] = body
            elif content_type.startswith("application/msgpack"):
                params["msgpack"] = body
            elif content_type.startswith("application/x-ndjson"):
                params["ndjson"] = body
            records = [(None, r) for r in _default_records(params)]
        extra: dict[str, Any] = {}
        if o.add_http_headers:
            extra.update({"HTTP_" + k.replace("-", "_").upper(): v for k, v in request.headers.items()})
        if o.add_query_params:
            extra.update({"QUERY_" + k.replace("-", "_").upper(): v[0] for k, v in request.query.items()})
        if o.add_remote_addr:
            forwarded = request.headers.get("x-forwarded-for")
            extra["REMOTE_ADDR"] = forwarded.split(",")[0] if forwarded else peer
        now = self.ctx.clock()
        param_time = params.get("time")
        events: list[Event] = []
        for record_time, record in records:
            record.update(extra)
            if param_time is not None:
                seconds = ruby_to_f(param_time)
                time = now if seconds == 0 else int(seconds * NS_PER_SEC)
            elif record_time is not None:
                time = record_time
            else:
                t = record.pop("time", None)
                time = now if t is None else int(_numeric_time(t) * NS_PER_SEC)
            events.append((time, record))
        return tag, events


def _default_records(params: dict[str, Any]) -> list[Record]:
    """Records of the json / ndjson / msgpack parameter (a hash, or an array of hashes)."""
    if "msgpack" in params:
        raw = params["msgpack"]
        value = msgpack.unpackb(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape"), raw=False)
        return _hashes(value)
    if "json" in params:
        return _hashes(orjson.loads(params["json"]))
    if "ndjson" in params:
        raw = params["ndjson"]
        text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
        out: list[Record] = []
        for line in text.splitlines():
            if line.strip():
                out.extend(_hashes(orjson.loads(line)))
        return out
    raise BadRequest("'json', 'ndjson' or 'msgpack' parameter is required")


def _hashes(value: Any) -> list[Record]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]     # Fluentd skips the elements that are not hashes
    return []


def _numeric_time(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise BadRequest(f"can't convert {type(value).__name__} into an exact number (the record's time: {value!r})")
