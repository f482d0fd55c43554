"""The CloudWatch Logs transport on awscrt (AWS's C runtime): its default credential chain, its SigV4
signer and its HTTP/1.1 client with its own TLS. ~8 MiB where botocore + http.client + ssl cost ~20 MiB.
"""

# client.py picks this module when awscrt is installed and the settings need nothing it lacks (see
# crt_usable). Nothing here is imported at start-up: awscrt's native library costs ~6 MiB once loaded.

from __future__ import annotations

import io
import os
import threading
import time
import urllib.parse
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, NamedTuple

from kawa.plugins.outputs.cloudwatch_logs.client import Endpoint
from kawa.plugins.outputs.cloudwatch_logs.errors import TransportError

CONNECT_TIMEOUT = 10.0
# How long to wait for a connection, TLS included: s2n delays a failed handshake (e.g. an untrusted
# certificate) by 10-30 s ("blinding"); waiting that long reports the real TLS error, not a timeout.
CONNECT_WAIT = 40.0
SIGN_TIMEOUT = 60.0        # signing may fetch credentials first (IMDS, STS): botocore's own fetch timeouts are ~1-5 s each
MAX_IDLE_SECONDS = 15.0    # same reason as client.MAX_IDLE_SECONDS: AWS front ends close idle keep-alives
# Environment variables under which the stdlib pool (with urllib's proxy rules) must be used instead.
PROXY_ENV = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class FrozenCredentials(NamedTuple):
    """The field names of botocore's ReadOnlyCredentials (check_aws and the tests read them)."""

    access_key: str
    secret_key: str
    token: str | None


class _Runtime:
    """One event-loop thread, resolver and bootstrap for all clients (awscrt's static default starts
    one event-loop thread per CPU)."""

    _lock = threading.Lock()
    _bootstrap: Any = None

    @classmethod
    def bootstrap(cls) -> Any:
        with cls._lock:
            if cls._bootstrap is None:
                from awscrt.io import ClientBootstrap, DefaultHostResolver, EventLoopGroup

                elg = EventLoopGroup(1)
                cls._bootstrap = ClientBootstrap(elg, DefaultHostResolver(elg))
            return cls._bootstrap


class CrtCredentials:
    """An awscrt credentials provider (cached and refreshed by awscrt), with botocore's accessor."""

    def __init__(self, provider: Any, method: str) -> None:
        self.provider = provider
        self.method = method

    @classmethod
    def static(cls, key_id: str, secret: str) -> "CrtCredentials":
        from awscrt.auth import AwsCredentialsProvider

        return cls(AwsCredentialsProvider.new_static(key_id, secret), "static")

    @classmethod
    def default_chain(cls) -> "CrtCredentials":
        """env, shared config/credentials files, web identity (IRSA), ECS container, IMDS, in that order."""
        from awscrt.auth import AwsCredentialsProvider

        provider = AwsCredentialsProvider.new_default_chain(_Runtime.bootstrap())
        env_keys = os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY")
        creds = cls(provider, "env" if env_keys else "awscrt-default-chain")
        creds.get_frozen_credentials()     # fail now, as botocore's get_credentials() returning None does
        return creds

    def get_frozen_credentials(self) -> FrozenCredentials:
        from awscrt.exceptions import AwsCrtError

        try:
            c = self.provider.get_credentials().result(SIGN_TIMEOUT)
        except (AwsCrtError, FutureTimeout) as exc:
            raise RuntimeError(f"no AWS credentials found (env, shared files, web identity, container, "
                               f"IMDS): {exc}") from None
        return FrozenCredentials(c.access_key_id, c.secret_access_key, c.session_token)


def crt_usable(settings: Any) -> bool:
    """False when the settings need a credential source only botocore has (kept as the fallback)."""
    if os.environ.get("KAWA_AWS_CLIENT", "").lower() == "botocore":
        return False
    if settings.use_sts or settings.web_identity is not None or settings.ecs_authentication:
        return False            # explicit AssumeRole / web identity / container options: botocore fetchers
    if settings.instance_profile_retries is not None:
        return False            # awscrt's IMDS provider has no retry-count setting
    if settings.aws_key_id and settings.aws_sec_key:
        return _has_awscrt()
    if not (os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY")):
        # The chain may call STS (web identity = IRSA, a profile's role). aws-c-auth (awscrt 0.38) takes
        # AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL for a bare host name: given a URL, as the AWS docs
        # spell it, it resolves "https://host" in DNS and fails. Its STS calls also trust only the
        # system store, not AWS_CA_BUNDLE. botocore does both as documented, so it takes these.
        sts = os.environ.get("AWS_ENDPOINT_URL_STS") or os.environ.get("AWS_ENDPOINT_URL") or ""
        if "://" in sts or os.environ.get("AWS_CA_BUNDLE"):
            return False
        if _profile_needs_botocore():
            return False
    return _has_awscrt()


def _has_awscrt() -> bool:
    from importlib.util import find_spec

    return find_spec("awscrt") is not None


def _profile_needs_botocore() -> bool:
    """The shared config uses what aws-c-auth's profile provider lacks: SSO tokens (sso_*), or endpoint
    URLs (endpoint_url: aws-c-auth 0.38 does not read it; it called sts.<region>.amazonaws.com)."""
    path = os.environ.get("AWS_CONFIG_FILE") or os.path.expanduser("~/.aws/config")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return False
    return "sso_" in text or "endpoint_url" in text


def pool_usable(proxy: str | None) -> bool:
    """The awscrt pool serves direct connections; proxies keep the stdlib pool (urllib's no_proxy rules)."""
    if proxy or any(os.environ.get(k) for k in PROXY_ENV):
        return False
    return os.environ.get("KAWA_AWS_CLIENT", "").lower() != "botocore" and _has_awscrt()


class CrtSigner:
    """SigV4 by awscrt.auth.aws_sign_request; the provider refreshes expiring credentials itself."""

    def __init__(self, credentials: CrtCredentials, region: str, service: str) -> None:
        from awscrt.auth import AwsSignatureType, AwsSigningAlgorithm, AwsSigningConfig

        self.credentials = credentials
        self.region = region
        self.service = service
        self._config = AwsSigningConfig(algorithm=AwsSigningAlgorithm.V4,
                                        signature_type=AwsSignatureType.HTTP_REQUEST_HEADERS,
                                        credentials_provider=credentials.provider, region=region, service=service)

    def sign(self, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        from awscrt.auth import aws_sign_request
        from awscrt.crypto import Hash
        from awscrt.exceptions import AwsCrtError
        from awscrt.http import HttpHeaders, HttpRequest

        parts = urllib.parse.urlsplit(url)
        # The payload's SHA-256 in one call, handed to awscrt as its documented precalculated signed
        # body value. Given the body instead, awscrt pulls it through a Python stream object in small
        # reads (~650 instructions a log event, callgrind). awscrt's own hash, not hashlib: importing
        # hashlib costs 0.7 MiB of RSS, awscrt.crypto 0.1.
        payload = Hash.sha256_new()
        payload.update(body)
        config = self._config.replace(signed_body_value=payload.digest().hex())
        request = HttpRequest("POST", parts.path or "/", HttpHeaders(list(headers.items())))
        try:
            signed = aws_sign_request(request, config).result(SIGN_TIMEOUT)
        except (AwsCrtError, FutureTimeout) as exc:
            raise RuntimeError(f"awscrt could not sign: {exc}") from None
        return dict(signed.headers)


class CrtHttpPool:
    """Keep-alive HTTP/1.1 connections to one endpoint over awscrt, used from worker threads."""

    def __init__(self, endpoint: str, *, verify: bool = True, read_timeout: float = 60.0) -> None:
        self.endpoint = Endpoint.parse(endpoint)
        self.read_timeout = read_timeout
        self.proxy = None
        self._tls_ctx = self._tls_context(verify) if self.endpoint.scheme == "https" else None
        self._idle: list[tuple[Any, float]] = []
        self._lock = threading.Lock()

    @staticmethod
    def _tls_context(verify: bool) -> Any:
        from awscrt.io import ClientTlsContext, TlsContextOptions

        opts = TlsContextOptions()
        opts.verify_peer = verify
        cafile = os.environ.get("AWS_CA_BUNDLE")
        if cafile is None:
            try:
                import certifi  # the CA source botocore uses, so both clients trust the same roots

                cafile = certifi.where()
            except ImportError:
                cafile = None   # awscrt's default: the system trust store
        if verify and cafile:
            opts.override_default_trust_store_from_path(None, cafile)
        return ClientTlsContext(opts)

    def _new(self) -> Any:
        from awscrt.http import HttpClientConnection
        from awscrt.io import SocketOptions

        sock = SocketOptions()
        sock.connect_timeout_ms = int(CONNECT_TIMEOUT * 1000)
        tls = None
        if self._tls_ctx is not None:
            tls = self._tls_ctx.new_connection_options()
            tls.set_server_name(self.endpoint.host)
        future = HttpClientConnection.new(host_name=self.endpoint.host, port=self.endpoint.port,
                                          bootstrap=_Runtime.bootstrap(), socket_options=sock,
                                          tls_connection_options=tls)
        return future.result(CONNECT_WAIT)

    def _take(self) -> Any:
        now = time.monotonic()
        with self._lock:
            while self._idle:
                conn, last_used = self._idle.pop()
                if now - last_used < MAX_IDLE_SECONDS and conn.is_open():
                    return conn
                conn.close()
        return self._new()

    def post(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        """One POST; raises TransportError when no complete answer came back."""
        from awscrt.exceptions import AwsCrtError
        from awscrt.http import HttpHeaders, HttpRequest

        resp_headers: dict[str, str] = {}
        chunks: list[bytes] = []

        def on_response(http_stream: Any, status_code: int, headers: list[tuple[str, str]], **_: Any) -> None:
            resp_headers.update((k.lower(), v) for k, v in headers)

        def on_body(http_stream: Any, chunk: bytes, **_: Any) -> None:
            chunks.append(chunk)

        if not any(k.lower() == "content-length" for k in headers):
            headers = {**headers, "Content-Length": str(len(body))}
        try:
            conn = self._take()
        except (AwsCrtError, FutureTimeout, OSError) as exc:
            raise TransportError(f"cannot connect to {self.endpoint.host}:{self.endpoint.port}: "
                                 f"{type(exc).__name__}: {exc}", sent=False) from exc
        try:
            request = HttpRequest("POST", self.endpoint.path, HttpHeaders(list(headers.items())), io.BytesIO(body))
            stream = conn.request(request, on_response=on_response, on_body=on_body)
            stream.activate()
            stream.completion_future.result(self.read_timeout)
            status = stream.response_status_code
        except (AwsCrtError, FutureTimeout, OSError) as exc:
            conn.close()
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        if conn.is_open() and resp_headers.get("connection", "").lower() != "close":
            with self._lock:
                self._idle.append((conn, time.monotonic()))
        else:
            conn.close()
        return status, resp_headers, b"".join(chunks)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()
