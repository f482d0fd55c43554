"""A small blocking Kubernetes API client (stdlib http.client + ssl) for the metadata threads.

Only what the filter needs: GET one object, LIST pods/namespaces, WATCH them as a JSON-line stream.
It runs in background threads, never on the event loop.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import quote, urlencode, urlsplit

from kawa import ssl_gate

ssl_gate.allow()                      # this client speaks TLS to the API server (kawa.ssl_gate)
import ssl  # noqa: E402

# Server-side watch lifetime; the API server ends the stream after it and we re-watch from the
# last resourceVersion (client-go uses a random 5-10 min; a fixed value is enough here).
WATCH_TIMEOUT_SECONDS = 300


class ApiError(Exception):
    """An API request failed; `status` is the HTTP status or None for a transport error."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFound(ApiError):
    pass


class Gone(ApiError):
    """410: the resourceVersion we watch from is too old; list again."""


@dataclass
class ApiSettings:
    url: str                       # e.g. https://10.0.0.1:443/api (kubeclient's form)
    api_version: str = "v1"
    ca_file: str | None = None
    verify_ssl: bool = True
    ssl_partial_chain: bool = False
    client_cert: str | None = None
    client_key: str | None = None
    bearer_token_file: str | None = None
    open_timeout: float = 3.0
    read_timeout: float = 10.0


class ApiClient:
    """Requests against `<url>/<api_version>/...`; safe to use from several threads at once."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        parts = urlsplit(settings.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"invalid kubernetes_url {settings.url!r}: expected https://host:port[/api]")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        # kubeclient uses /api when the URL has no path
        base = parts.path.rstrip("/") or "/api"
        self._base = f"{base}/{settings.api_version}"
        self._ssl = self._ssl_context() if self._https else None
        self._open: set[http.client.HTTPConnection] = set()
        self._lock = threading.Lock()

    def _ssl_context(self) -> ssl.SSLContext:
        s = self.settings
        ctx = ssl.create_default_context(cafile=s.ca_file) if s.ca_file else ssl.create_default_context()
        if not s.verify_ssl:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if s.ssl_partial_chain:
            ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        if s.client_cert:
            ctx.load_cert_chain(s.client_cert, s.client_key)
        return ctx

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "kawa-kubernetes-metadata"}
        path = self.settings.bearer_token_file
        if path:
            # Re-read every time: projected service-account tokens rotate (Fluentd re-reads on 401).
            try:
                with open(path, encoding="utf-8") as fh:
                    headers["Authorization"] = "Bearer " + fh.read().strip()
            except OSError as exc:
                raise ApiError(f"cannot read bearer_token_file {path}: {exc}") from None
        return headers

    def _connection(self, read_timeout: float) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.settings.open_timeout,
                                               context=self._ssl)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.settings.open_timeout)
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(read_timeout)
        with self._lock:
            self._open.add(conn)
        return conn

    def _release(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._open.discard(conn)
        conn.close()

    def _path(self, resource: str, query: dict[str, str] | None) -> str:
        return f"{self._base}/{resource}" + (f"?{urlencode(query)}" if query else "")

    def _send(self, resource: str, query: dict[str, str] | None,
              read_timeout: float) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        try:
            conn = self._connection(read_timeout)
        except (OSError, ssl.SSLError) as exc:
            raise ApiError(f"cannot connect to {self.settings.url}: {exc}") from None
        try:
            conn.request("GET", self._path(resource, query), headers=self._headers())
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self._release(conn)
            raise ApiError(f"GET {resource} failed: {exc}") from None
        except ApiError:
            self._release(conn)
            raise
        if resp.status != 200:
            body = resp.read(2048).decode("utf-8", "replace")
            self._release(conn)
            message = f"GET {resource}: HTTP {resp.status} {_status_message(body)}".rstrip()
            if resp.status == 404:
                raise NotFound(message, 404)
            if resp.status == 410:
                raise Gone(message, 410)
            raise ApiError(message, resp.status)
        return conn, resp

    def get(self, resource: str, query: dict[str, str] | None = None) -> dict[str, Any]:
        """GET one object or list as parsed JSON."""
        conn, resp = self._send(resource, query, self.settings.read_timeout)
        try:
            return json.loads(resp.read())  # type: ignore[no-any-return]
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise ApiError(f"GET {resource}: bad response: {exc}") from None
        finally:
            self._release(conn)

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        # resourceVersion=0: served from the API server's cache, not an etcd quorum read (as Fluentd)
        return self.get(f"namespaces/{quote(namespace)}/pods/{quote(name)}", {"resourceVersion": "0"})

    def get_namespace(self, name: str) -> dict[str, Any]:
        return self.get(f"namespaces/{quote(name)}", {"resourceVersion": "0"})

    def watch(self, resource: str, query: dict[str, str]) -> Iterator[dict[str, Any]]:
        """Yield watch notices ({"type": ..., "object": ...}) until the server ends the stream."""
        query = {**query, "watch": "true", "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(WATCH_TIMEOUT_SECONDS)}
        conn, resp = self._send(resource, query, WATCH_TIMEOUT_SECONDS + self.settings.read_timeout)
        try:
            while True:
                try:
                    line = resp.readline()
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    raise ApiError(f"watch {resource} broken: {exc}") from None
                if not line:
                    return
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError as exc:
                        raise ApiError(f"watch {resource}: bad notice: {exc}") from None
        finally:
            self._release(conn)

    def close(self) -> None:
        """Abort every open request (used by stop(): a blocked watch read returns at once)."""
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _status_message(body: str) -> str:
    """The `message` of a Kubernetes Status object, else the start of the body."""
    try:
        return str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        return body[:200]
