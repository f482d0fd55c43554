"""A lean CloudWatch Logs client: AWS's libraries only for credentials and SigV4, our own JSON body.
awscrt (crt_client.py) when installed and sufficient, else botocore + http.client; see docs/memory.md.
"""

# Nothing from botocore or awscrt is imported at module level: a config that never starts this output
# must not pay for them (imports happen in resolve_credentials / Signer / HttpPool / check calls).
# botocore's full client costs ~14 µs CPU per event and ~25 MiB; this one signs one request per batch.

from __future__ import annotations

import os
import select
import socket
import threading
import time
import urllib.parse
from base64 import b64encode
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import orjson

from kawa.plugins.outputs.cloudwatch_logs.errors import AwsApiError, SigningError, TransportError, error_code

if TYPE_CHECKING:   # http.client, urllib.request and ssl cost ~5 MiB; imported when a pool is built
    import http.client
    import ssl

# CloudWatch Logs speaks AWS JSON 1.1; the target prefix is the API version (botocore's logs model).
TARGET_PREFIX = "Logs_20140328."
CONTENT_TYPE = "application/x-amz-json-1.1"
SERVICE = "logs"
CONNECT_TIMEOUT = 10.0
# A pooled connection idle longer than this is reopened instead of reused: AWS front ends close idle
# keep-alive connections, and a request on a half-closed socket is indistinguishable from a lost one.
MAX_IDLE_SECONDS = 15.0
USER_AGENT = "kawa-cloudwatch-logs/0.1"


@dataclass
class CredentialSettings:
    """The plugin's credential options, in the precedence order of fluent-plugin-cloudwatch-logs start()."""

    region: str | None = None
    aws_key_id: str | None = None
    aws_sec_key: str | None = None
    use_sts: bool = False
    sts_role_arn: str | None = None
    sts_session_name: str = "fluentd"
    sts_external_id: str | None = None
    sts_policy: str | None = None
    sts_duration_seconds: int | None = None
    sts_endpoint_url: str | None = None
    web_identity: dict[str, Any] | None = None   # role_arn, role_session_name, web_identity_token_file, ...
    instance_profile_retries: int | None = None
    ecs_authentication: bool = False
    ssl_verify_peer: bool = True
    http_proxy: str | None = None
    method: str = field(default="", init=False)   # which source was used (for the start log line)
    crt_failure: str = field(default="", init=False)  # awscrt's chain failed, botocore's served (logged)


def _session(settings: CredentialSettings) -> Any:
    from botocore.session import Session

    session = Session()
    if settings.region:
        session.set_config_variable("region", settings.region)
    if settings.instance_profile_retries is not None:
        # Ruby's instance_profile_credentials_retries counts retries; botocore counts attempts.
        session.set_config_variable("metadata_service_num_attempts", settings.instance_profile_retries + 1)
    return session


def botocore_verify(ssl_verify_peer: bool) -> bool | None:
    """`verify` for botocore's create_client: None (not True) when verifying, since botocore reads
    AWS_CA_BUNDLE only when `verify` is None; True would verify against certifi's store alone."""
    return None if ssl_verify_peer else False


def _sts_client_creator(session: Any, settings: CredentialSettings, region: str | None) -> Callable[..., Any]:
    from botocore.config import Config

    proxies = {"http": settings.http_proxy, "https": settings.http_proxy} if settings.http_proxy else None

    def create(service: str, **kwargs: Any) -> Any:
        kwargs.setdefault("region_name", region)
        if settings.sts_endpoint_url:
            kwargs.setdefault("endpoint_url", settings.sts_endpoint_url)
        kwargs.setdefault("verify", botocore_verify(settings.ssl_verify_peer))
        if proxies:
            kwargs.setdefault("config", Config(proxies=proxies))
        return session.create_client(service, **kwargs)

    return create


def resolve_region(settings: CredentialSettings) -> str | None:
    """The region option, else botocore's (AWS_DEFAULT_REGION, then the profile's config)."""
    if settings.region:
        return settings.region
    if os.environ.get("AWS_DEFAULT_REGION"):   # botocore's first source, read without loading botocore
        return os.environ["AWS_DEFAULT_REGION"]
    return _session(settings).get_config_variable("region")  # type: ignore[no-any-return]


def resolve_credentials(settings: CredentialSettings) -> Any:
    """A botocore credentials object (refreshing where the source expires), by the Ruby plugin's
    precedence: aws_use_sts, <web_identity_credentials>, aws_ecs_authentication, static keys, then
    the default chain (env, shared files/profile, web identity = IRSA, container, IMDS): awscrt's when
    crt_client.crt_usable(settings), else botocore's. Sets settings.method to the source used."""
    from kawa.plugins.outputs.cloudwatch_logs import crt_client

    crt_failure = ""
    if crt_client.crt_usable(settings):
        if settings.aws_key_id and settings.aws_sec_key:
            settings.method = "static"
            return crt_client.CrtCredentials.static(settings.aws_key_id, settings.aws_sec_key)
        try:
            creds = crt_client.CrtCredentials.default_chain()
        except RuntimeError as exc:
            # awscrt's error names no cause (an STS refusal, a DNS or TLS failure all read "could not
            # be sourced"): botocore's chain is asked next, and either serves or says why it cannot.
            crt_failure = str(exc)
        else:
            settings.method = creds.method
            return creds
    from botocore import credentials as bc

    session = _session(settings)
    if settings.use_sts:
        return _assume_role(bc, session, settings)
    if settings.web_identity is not None:
        return _web_identity(bc, session, settings)
    if settings.ecs_authentication:
        # Unlike the Ruby plugin (a one-time snapshot), botocore's container provider refreshes.
        creds = bc.ContainerProvider().load()
        if creds is None:
            raise RuntimeError("aws_ecs_authentication: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/FULL_URI not set")
        settings.method = "container-role"
        return creds
    if settings.aws_key_id and settings.aws_sec_key:
        settings.method = "static"
        return bc.Credentials(settings.aws_key_id, settings.aws_sec_key)
    return _botocore_default_chain(session, settings, crt_failure)


def _assume_role(bc: Any, session: Any, settings: CredentialSettings) -> Any:
    """aws_use_sts: sts:AssumeRole with the static keys (or the default chain's) as the source."""
    if settings.aws_key_id and settings.aws_sec_key:
        source = bc.Credentials(settings.aws_key_id, settings.aws_sec_key)
    else:
        source = session.get_credentials()
    if source is None:
        raise RuntimeError("aws_use_sts: no source credentials found to call sts:AssumeRole with")
    extra: dict[str, Any] = {"RoleSessionName": settings.sts_session_name}
    if settings.sts_external_id:
        extra["ExternalId"] = settings.sts_external_id
    if settings.sts_policy:
        extra["Policy"] = settings.sts_policy
    if settings.sts_duration_seconds:
        extra["DurationSeconds"] = int(settings.sts_duration_seconds)
    region = settings.region or session.get_config_variable("region")
    fetcher = bc.AssumeRoleCredentialFetcher(_sts_client_creator(session, settings, region), source,
                                             settings.sts_role_arn, extra_args=extra)
    settings.method = "assume-role"
    return bc.DeferredRefreshableCredentials(fetcher.fetch_credentials, "assume-role")


def _web_identity(bc: Any, session: Any, settings: CredentialSettings) -> Any:
    """<web_identity_credentials>: sts:AssumeRoleWithWebIdentity with the section's role and token file."""
    wi = settings.web_identity or {}
    token_file = wi.get("web_identity_token_file") or os.environ.get("AWS_WEB_IDENTITY_TOKEN_FILE")
    if not token_file:
        raise RuntimeError("<web_identity_credentials>: web_identity_token_file is required")
    extra: dict[str, Any] = {"RoleSessionName": wi["role_session_name"]}
    if wi.get("policy"):
        extra["Policy"] = wi["policy"]
    if wi.get("duration_seconds"):
        extra["DurationSeconds"] = int(wi["duration_seconds"])
    region = settings.region or session.get_config_variable("region")
    # The token file is re-read on every refresh, so a rotated projected token is picked up.
    fetcher = bc.AssumeRoleWithWebIdentityCredentialFetcher(
        _sts_client_creator(session, settings, region), bc.FileWebIdentityTokenLoader(token_file),
        wi["role_arn"], extra_args=extra)
    settings.method = "assume-role-with-web-identity"
    return bc.DeferredRefreshableCredentials(fetcher.fetch_credentials, "assume-role-with-web-identity")


def _botocore_default_chain(session: Any, settings: CredentialSettings, crt_failure: str) -> Any:
    """botocore's default chain; `crt_failure`: why awscrt's chain failed first ("" if not tried),
    joined to botocore's own reason when this one fails too."""
    try:
        creds = session.get_credentials()
        if creds is not None and crt_failure:
            creds.get_frozen_credentials()     # a deferred source (web identity) calls STS now: its error is the reason
    except Exception as exc:
        if not crt_failure:
            raise
        raise RuntimeError(f"{crt_failure}; botocore's chain: {type(exc).__name__}: {exc}") from None
    if creds is None:
        raise RuntimeError(crt_failure or "no AWS credentials found (env, shared files, web identity, container, IMDS)")
    settings.method = getattr(creds, "method", "default-chain")
    settings.crt_failure = crt_failure
    return creds


def default_endpoint(region: str) -> str:
    """CloudWatch Logs' regional endpoint (the partition suffix is all we need from botocore's data)."""
    override = os.environ.get("AWS_ENDPOINT_URL_LOGS") or os.environ.get("AWS_ENDPOINT_URL")
    if override:
        return override
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://logs.{region}.{suffix}"


def Signer(credentials: Any, region: str, service: str = SERVICE) -> Any:   # noqa: N802 - was a class
    """The signer matching the credentials' library: awscrt's aws_sign_request or botocore.auth."""
    from kawa.plugins.outputs.cloudwatch_logs import crt_client

    if isinstance(credentials, crt_client.CrtCredentials):
        return crt_client.CrtSigner(credentials, region, service)
    return BotocoreSigner(credentials, region, service)


def HttpPool(endpoint: str, *, verify: bool = True, proxy: str | None = None,   # noqa: N802 - was a class
             read_timeout: float = 60.0) -> Any:
    """awscrt's HTTP client for direct connections when installed, else the stdlib one (also proxies)."""
    from kawa.plugins.outputs.cloudwatch_logs import crt_client

    if crt_client.pool_usable(proxy):
        return crt_client.CrtHttpPool(endpoint, verify=verify, read_timeout=read_timeout)
    return StdlibHttpPool(endpoint, verify=verify, proxy=proxy, read_timeout=read_timeout)


class BotocoreSigner:
    """SigV4 with botocore.auth on an AWSRequest; frozen credentials refresh themselves before expiry."""

    def __init__(self, credentials: Any, region: str, service: str = SERVICE) -> None:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        self.credentials = credentials
        self.region = region
        self.service = service
        self._auth_cls = SigV4Auth
        self._request_cls = AWSRequest

    def sign(self, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        request = self._request_cls(method="POST", url=url, data=body, headers=headers)
        self._auth_cls(self.credentials.get_frozen_credentials(), self.service, self.region).add_auth(request)
        return dict(request.headers.items())


class _Pooled:
    __slots__ = ("conn", "last_used")

    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self.conn = conn
        self.last_used = time.monotonic()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """True when an idle keep-alive socket was closed by the peer (readable = EOF or stray bytes)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


@dataclass(frozen=True)
class Endpoint:
    """An http(s) endpoint URL split into what a connection pool needs (both HTTP clients use it)."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> "Endpoint":
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint must be an http(s) URL: {url!r}")
        return cls(parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                   parts.path or "/")

    @property
    def host_header(self) -> str:
        """Host header value: the port only when it is not the scheme's default."""
        default_port = self.port == (443 if self.scheme == "https" else 80)
        return self.host if default_port else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.path}"


class StdlibHttpPool:
    """Keep-alive HTTP/1.1 connections to one endpoint over http.client, used from worker threads."""

    def __init__(self, endpoint: str, *, verify: bool = True, proxy: str | None = None,
                 read_timeout: float = 60.0) -> None:
        self.endpoint = Endpoint.parse(endpoint)
        self.read_timeout = read_timeout
        self.proxy = self._proxy_for(proxy)
        self._context = self._ssl_context(verify) if self.endpoint.scheme == "https" else None
        self._idle: list[_Pooled] = []
        self._lock = threading.Lock()

    def _proxy_for(self, option: str | None) -> urllib.parse.SplitResult | None:
        import urllib.request

        if option:
            return urllib.parse.urlsplit(option if "://" in option else "http://" + option)
        if urllib.request.proxy_bypass(self.endpoint.host):
            return None
        env = urllib.request.getproxies().get(self.endpoint.scheme)
        return urllib.parse.urlsplit(env) if env else None

    @staticmethod
    def _ssl_context(verify: bool) -> ssl.SSLContext:
        import ssl

        if not verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        cafile = os.environ.get("AWS_CA_BUNDLE")
        if cafile is None:
            try:
                import certifi  # botocore's own CA source; the system store may be empty in containers

                cafile = certifi.where()
            except ImportError:
                cafile = None
        return ssl.create_default_context(cafile=cafile)

    def _new(self) -> http.client.HTTPConnection:
        import http.client

        proxy = self.proxy
        if proxy is None:
            if self._context is not None:
                return http.client.HTTPSConnection(self.endpoint.host, self.endpoint.port,
                                                   timeout=CONNECT_TIMEOUT,
                                                   context=self._context)
            return http.client.HTTPConnection(self.endpoint.host, self.endpoint.port, timeout=CONNECT_TIMEOUT)
        headers = {}
        if proxy.username:
            cred = f"{urllib.parse.unquote(proxy.username)}:{urllib.parse.unquote(proxy.password or '')}"
            headers["Proxy-Authorization"] = "Basic " + b64encode(cred.encode()).decode()
        phost, pport = proxy.hostname or "", proxy.port or 8080
        if self._context is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                phost, pport, timeout=CONNECT_TIMEOUT, context=self._context)
            conn.set_tunnel(self.endpoint.host, self.endpoint.port, headers=headers)
            return conn
        conn = http.client.HTTPConnection(phost, pport, timeout=CONNECT_TIMEOUT)
        conn._kawa_proxy_headers = headers  # type: ignore[attr-defined]
        return conn

    def _take(self) -> http.client.HTTPConnection:
        now = time.monotonic()
        with self._lock:
            while self._idle:
                pooled = self._idle.pop()
                if now - pooled.last_used < MAX_IDLE_SECONDS and not _dropped(pooled.conn):
                    return pooled.conn
                pooled.conn.close()
        return self._new()

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.append(_Pooled(conn))

    def post(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        """One POST; raises TransportError when no complete answer came back."""
        import http.client

        conn = self._take()
        target = self.endpoint.path
        if self.proxy is not None and self._context is None:
            target = self.endpoint.url   # plain-HTTP proxy: absolute URI
            headers = {**headers, **getattr(conn, "_kawa_proxy_headers", {})}
        if conn.sock is None:
            try:
                conn.connect()      # through a proxy: its CONNECT tunnel too
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise TransportError(f"cannot connect to {conn.host}:{conn.port}: {type(exc).__name__}: {exc}",
                                     sent=False) from exc
        try:
            conn.sock.settimeout(self.read_timeout)
            conn.request("POST", target, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            resp_headers = {k.lower(): v for k, v in resp.getheaders()}
            reusable = not resp.will_close
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        if reusable:
            self._give_back(conn)
        else:
            conn.close()
        return status, resp_headers, data

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for pooled in idle:
            pooled.conn.close()


class LogsClient:
    """The CloudWatch Logs JSON API over HttpPool, signed by Signer. Blocking: call from a worker thread."""

    def __init__(self, pool: Any, signer: Any) -> None:
        self.pool = pool
        self.signer = signer

    def call(self, action: str, body: bytes) -> dict[str, Any]:
        headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + action,
                   "User-Agent": USER_AGENT, "Host": self.pool.endpoint.host_header}
        try:
            signed = self.signer.sign(self.pool.endpoint.url, headers, body)
        except Exception as exc:        # awscrt's or botocore's refresh failed (STS, IMDS, a file...)
            raise SigningError(f"{action} not sent, no credentials to sign it with: {exc}") from None
        status, resp_headers, data = self.pool.post(signed, body)
        if status == 200:
            try:
                return orjson.loads(data) if data else {}  # type: ignore[no-any-return]
            except orjson.JSONDecodeError:
                raise TransportError(f"{action}: HTTP 200 with a body that is not JSON") from None
        try:
            err = orjson.loads(data) if data else {}
        except orjson.JSONDecodeError:
            err = {}
        if not isinstance(err, dict):
            err = {}
        raw = str(err.get("__type") or resp_headers.get("x-amzn-errortype") or f"HTTP{status}")
        message = str(err.get("message") or err.get("Message") or data[:200].decode("utf-8", "replace"))
        raise AwsApiError(status, error_code(raw), message, resp_headers.get("x-amzn-requestid", ""))

    def put_log_events(self, group: str, stream: str, events: list[tuple[int, str]]) -> dict[str, Any]:
        body = orjson.dumps({"logGroupName": group, "logStreamName": stream,
                             "logEvents": [{"timestamp": ts, "message": msg} for ts, msg in events]})
        return self.call("PutLogEvents", body)

    def create_log_group(self, group: str, tags: dict[str, str] | None = None) -> None:
        params: dict[str, Any] = {"logGroupName": group}
        if tags:
            params["tags"] = {str(k): str(v) for k, v in tags.items()}
        self.call("CreateLogGroup", orjson.dumps(params))

    def create_log_stream(self, group: str, stream: str) -> None:
        self.call("CreateLogStream", orjson.dumps({"logGroupName": group, "logStreamName": stream}))

    def put_retention_policy(self, group: str, days: int) -> None:
        self.call("PutRetentionPolicy", orjson.dumps({"logGroupName": group, "retentionInDays": days}))

    def describe_log_group(self, group: str) -> dict[str, Any] | None:
        """The group's description, or None (used by check_aws only, never on the data path)."""
        out = self.call("DescribeLogGroups", orjson.dumps({"logGroupNamePrefix": group, "limit": 50}))
        for g in out.get("logGroups", []):
            if g.get("logGroupName") == group:
                return g  # type: ignore[no-any-return]
        return None

    def close(self) -> None:
        self.pool.close()
