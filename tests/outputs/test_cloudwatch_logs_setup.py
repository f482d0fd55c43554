"""cloudwatch_logs output: credentials (env, static, IRSA web identity and AssumeRole via moto's STS),
config checks, check_aws, lazy AWS imports, and durable progress across a restart.
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import time
from typing import Any

import orjson
import pytest

from kawa.errors import ConfigError, RetryableError
from kawa.plugins.outputs.cloudwatch_logs import check_aws
from kawa.plugins.outputs.cloudwatch_logs.progress import ChunkProgress, ProgressStore
from kawa.testing.cwl_server import read_all_events
from kawa.testing.drivers import OutputDriver
from kawa.testing.tls import TlsFront, write_self_signed

ROLE_ARN = "arn:aws:iam::123456789012:role/kawa-test"


def arun(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))
    return wrapper


async def write_one(d: Any, record: dict[str, Any]) -> None:
    await d.instance.emit("app", [(time.time_ns(), record)])
    d.instance.buffer.enqueue_all(force=True)
    await d.instance.write(d.instance.buffer.dequeue())


def creds_of(d: Any) -> Any:
    return d.instance.delivery.client.signer.credentials.get_frozen_credentials()


@arun
async def test_credentials_from_environment(cw_output, cwl_proxy, make_stream, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAKAWAENVTEST")
    group, stream = make_stream()
    d = cw_output(f"log_group_name {group}\nlog_stream_name {stream}")
    await write_one(d, {"a": 1})
    assert creds_of(d).access_key == "AKIAKAWAENVTEST"
    assert len(read_all_events(cwl_proxy.endpoint, group, stream)) == 1


@arun
async def test_static_keys_win_over_environment(cw_output, make_stream):
    group, stream = make_stream()
    d = cw_output(f"log_group_name {group}\nlog_stream_name {stream}\naws_key_id AKIASTATIC\naws_sec_key sekrit")
    await write_one(d, {"a": 1})
    assert creds_of(d).access_key == "AKIASTATIC"
    assert "sekrit" not in repr(d.logs)


@pytest.fixture(params=["http", "https"])
def irsa_env(request, cw_env, moto_server, tmp_path, monkeypatch):
    """EKS IRSA as the pod sees it: a projected token file and a role, no static keys. STS is moto's,
    over plain HTTP, or behind TLS with a private CA as a VPC endpoint behind a TLS-inspecting proxy
    looks: AWS_ENDPOINT_URL_STS a URL (as the AWS docs spell it), AWS_CA_BUNDLE naming the CA. (awscrt's
    chain would take that URL for a host name and ignore the bundle: botocore's serves both.)"""
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.kawa-test-token.sig")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    if request.param == "http":
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_server.endpoint)
        yield token
        return
    cert, key = tmp_path / "sts.pem", tmp_path / "sts.key"
    write_self_signed(cert, key)
    with TlsFront(("127.0.0.1", moto_server.port), cert, key) as front:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", front.endpoint)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))   # ssl_verify_peer true verifies against it, as the Ruby SDK does
        yield token


@arun
async def test_irsa_web_identity_from_default_chain(irsa_env, cw_output, make_stream, cwl_proxy, monkeypatch):
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE_ARN)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(irsa_env))
    group, stream = make_stream()
    d = cw_output(f"log_group_name {group}\nlog_stream_name {stream}")
    await write_one(d, {"a": 1})
    creds = creds_of(d)
    assert creds.token and creds.access_key not in ("testing", None)
    assert any('credentials="assume-role-with-web-identity"' in line for line in d.logs)
    assert len(read_all_events(cwl_proxy.endpoint, group, stream)) == 1


@arun
async def test_web_identity_credentials_section(irsa_env, cw_output, make_stream):
    group, stream = make_stream()
    d = cw_output(f"log_group_name {group}\nlog_stream_name {stream}\n<web_identity_credentials>\n"
                  f"role_arn {ROLE_ARN}\nrole_session_name kawa\nweb_identity_token_file {irsa_env}\n"
                  "</web_identity_credentials>")
    await write_one(d, {"a": 1})
    assert creds_of(d).token and creds_of(d).access_key not in ("testing", None)
    assert any('credentials="assume-role-with-web-identity"' in line for line in d.logs)


KEYS = {"AWS_ACCESS_KEY_ID": "AKIAKAWA", "AWS_SECRET_ACCESS_KEY": "sekrit"}


@pytest.mark.parametrize("env, config, crt", [
    ({}, "", True),                                                  # IRSA on EKS: awscrt's chain
    ({"AWS_ENDPOINT_URL_STS": "sts.internal.example"}, "", True),     # a bare host: what aws-c-auth reads
    ({"AWS_ENDPOINT_URL_STS": "https://sts.internal.example"}, "", False),
    ({"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}, "", False),
    ({"AWS_CA_BUNDLE": "/etc/corp-ca.pem"}, "", False),
    ({"AWS_CA_BUNDLE": "/etc/corp-ca.pem", "AWS_ENDPOINT_URL_STS": "https://x", **KEYS}, "", True),  # no STS call
    ({}, "[default]\nsso_session = corp\n", False),
    ({}, "[default]\nservices = s\n[services s]\nsts =\n  endpoint_url = https://sts.example\n", False),
])
def test_default_chain_library_choice(cw_env, monkeypatch, tmp_path, env, config, crt):
    """Which library serves the default credential chain: awscrt's (lighter) only where it reads the
    settings as botocore does; otherwise botocore's."""
    from kawa.plugins.outputs.cloudwatch_logs import crt_client
    from kawa.plugins.outputs.cloudwatch_logs.client import CredentialSettings

    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if config:
        (tmp_path / "config").write_text(config)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    assert crt_client.crt_usable(CredentialSettings()) is crt


class _LocalHttp:
    """A local HTTP server on 127.0.0.1 answering every GET and POST with `answer(headers)`, which
    returns (status, content type, body). As a context manager it yields its base URL."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def __enter__(self) -> str:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        answer = self.answer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, content_type, body = answer(self.headers)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _refusing_sts() -> _LocalHttp:
    """An STS that refuses every AssumeRoleWithWebIdentity, as AWS does when the role's trust policy
    does not name the cluster's OIDC provider (the usual IRSA mistake)."""
    body = (b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            b"<Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message>"
            b"</Error><RequestId>kawa-test</RequestId></ErrorResponse>")
    return _LocalHttp(lambda headers: (403, "text/xml", body))


@pytest.fixture
def awscrt_chain_fails(irsa_env, monkeypatch):
    """IRSA where awscrt's chain is tried and fails as it does against a refusing STS: with no cause in
    its error. (Its STS calls need TLS on port 443, so the refusal itself is staged for botocore's chain.)"""
    from kawa.plugins.outputs.cloudwatch_logs import crt_client

    def no_credentials() -> Any:
        raise RuntimeError("no AWS credentials found (env, shared files, web identity, container, IMDS): "
                           "AWS_AUTH_CREDENTIALS_PROVIDER_STS_WEB_IDENTITY_SOURCE_FAILURE: Valid credentials "
                           "could not be sourced by the sts web identity provider")
    monkeypatch.setattr(crt_client, "crt_usable", lambda settings: True)
    monkeypatch.setattr(crt_client.CrtCredentials, "default_chain", staticmethod(no_credentials))
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE_ARN)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(irsa_env))


@arun
async def test_awscrt_chain_failure_reports_botocores_reason(awscrt_chain_fails, cw_output, make_stream, monkeypatch):
    # at 3 a.m. "could not be sourced" says nothing; STS's own refusal says what to fix
    group, stream = make_stream()
    with _refusing_sts() as sts:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts)
        d = cw_output(f"log_group_name {group}\nlog_stream_name {stream}")
        with pytest.raises(Exception) as failed:
            await write_one(d, {"a": 1})
    message = str(failed.value)
    assert "STS_WEB_IDENTITY_SOURCE_FAILURE" in message
    assert "AccessDenied" in message and "Not authorized to perform sts:AssumeRoleWithWebIdentity" in message


@arun
async def test_awscrt_chain_failure_falls_back_to_botocores(awscrt_chain_fails, cw_output, make_stream, cwl_proxy):
    group, stream = make_stream()
    d = cw_output(f"log_group_name {group}\nlog_stream_name {stream}")
    await write_one(d, {"a": 1})
    assert creds_of(d).token and creds_of(d).access_key not in ("testing", None)
    warned = [line for line in d.logs if "awscrt's credential chain found no credentials" in line]
    assert len(warned) == 1 and "STS_WEB_IDENTITY_SOURCE_FAILURE" in warned[0]
    assert len(read_all_events(cwl_proxy.endpoint, group, stream)) == 1


@arun
async def test_a_failed_credential_refresh_is_re_resolved(cw_output, make_stream, cwl_proxy):
    """Signing fails (the provider's refresh from STS or IMDS failed): nothing is sent, the chunk is
    retried, and the next attempt resolves the credentials anew instead of reusing the broken source."""
    group, stream = make_stream()
    d = cw_output(f"log_group_name {group}\nlog_stream_name {stream}")
    await write_one(d, {"n": 1})
    broken = d.instance.delivery

    def refresh_fails(*args: Any) -> Any:
        raise RuntimeError("AWS_AUTH_CREDENTIALS_PROVIDER_STS_WEB_IDENTITY_SOURCE_FAILURE")
    broken.client.signer.sign = refresh_fails
    calls_before = cwl_proxy.stats().calls
    await d.instance.emit("app", [(time.time_ns(), {"n": 2})])
    d.instance.buffer.enqueue_all(force=True)
    chunk = d.instance.buffer.dequeue()
    with pytest.raises(RetryableError, match="PutLogEvents not sent, no credentials to sign it with"):
        await d.instance.write(chunk)
    assert cwl_proxy.stats().calls == calls_before             # nothing reached CloudWatch Logs
    assert broken.stale
    assert sum("cannot sign CloudWatch Logs requests" in line for line in d.logs) == 1
    await d.instance.write(chunk)                              # the retry: credentials resolved anew
    assert d.instance.delivery is not broken
    assert sorted(e["message"] for e in read_all_events(cwl_proxy.endpoint, group, stream)) == \
        ['{"n":1}', '{"n":2}']


@pytest.mark.parametrize("library", ["awscrt", "botocore"])
@arun
async def test_eks_pod_identity_from_default_chain(library, cw_env, cw_output, make_stream, cwl_proxy, tmp_path,
                                                   monkeypatch):
    """EKS Pod Identity as the pod sees it: the agent's URL and a token file, no keys. The agent
    answers only requests that carry the token."""
    token = tmp_path / "eks-pod-identity-token"
    token.write_text("kawa-pod-identity-token")
    credentials = orjson.dumps({"AccessKeyId": "ASIAPODIDENTITY", "SecretAccessKey": "s", "Token": "t",
                                "AccountId": "123456789012", "Expiration": "2099-01-01T00:00:00Z"})

    def agent(headers: Any) -> tuple[int, str, bytes]:
        if headers.get("Authorization") != "kawa-pod-identity-token":
            return 401, "text/plain", b"missing the pod identity token"
        return 200, "application/json", credentials
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    if library == "botocore":
        monkeypatch.setenv("KAWA_AWS_CLIENT", "botocore")
    group, stream = make_stream()
    with _LocalHttp(agent) as url:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"{url}/v1/credentials")
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token))
        d = cw_output(f"log_group_name {group}\nlog_stream_name {stream}")
        await write_one(d, {"a": 1})
    assert creds_of(d).access_key == "ASIAPODIDENTITY"
    assert len(read_all_events(cwl_proxy.endpoint, group, stream)) == 1


@arun
async def test_eks_pod_identity_refusal_is_quoted(cw_env, cw_output, make_stream, tmp_path, monkeypatch):
    token = tmp_path / "eks-pod-identity-token"
    token.write_text("a-token-the-agent-does-not-know")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    group, stream = make_stream()
    with _LocalHttp(lambda headers: (403, "text/plain", b"the token is not valid for this pod")) as url:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"{url}/v1/credentials")
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token))
        d = cw_output(f"log_group_name {group}\nlog_stream_name {stream}")
        with pytest.raises(Exception) as failed:
            await write_one(d, {"a": 1})
    assert "403" in str(failed.value) and "the token is not valid for this pod" in str(failed.value)


@arun
async def test_aws_use_sts_assumes_role(cw_output, make_stream, moto_server):
    group, stream = make_stream()
    d = cw_output(f"log_group_name {group}\nlog_stream_name {stream}\naws_use_sts true\n"
                  f"aws_sts_role_arn {ROLE_ARN}\naws_sts_endpoint_url {moto_server.endpoint}")
    await write_one(d, {"a": 1})
    assert creds_of(d).access_key != "testing" and creds_of(d).token
    assert any('credentials="assume-role"' in line for line in d.logs)


def test_check_aws_reports_missing_group(cw_output, make_stream, moto_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_server.endpoint)
    group, stream = make_stream()
    assert check_aws(cw_output(f"log_group_name {group}\nlog_stream_name s").instance) == []
    problems = check_aws(cw_output("log_group_name /kawa/test/nope-never\nlog_stream_name s").instance)
    assert len(problems) == 1 and "does not exist" in problems[0]
    assert check_aws(cw_output("log_group_name /kawa/test/nope\nlog_stream_name s\n"
                               "auto_create_stream true").instance) == []


@pytest.mark.parametrize("conf, message", [
    ("log_group_name g\nuse_tag_as_group true\nlog_stream_name s",
     "Set only one of log_group_name, use_tag_as_group and log_group_name_key"),
    ("log_group_name g", "Set only one of log_stream_name, use_tag_as_stream and log_stream_name_key"),
    ("log_group_name g\nlog_stream_name s\nretention_in_days 8", "is not accepted by CloudWatch Logs"),
    ("log_group_name g\nlog_stream_name s\nretention_in_days 7\nretention_in_days_key r",
     "Set only one of retention_in_days, retention_in_days_key"),
])
def test_config_errors(conf, message):
    with pytest.raises(ConfigError, match=message):
        OutputDriver("cloudwatch_logs", conf)


def test_retention_in_days_nil_is_unset():
    # fluentd-kubernetes-daemonset: retention_in_days "#{ENV['RETENTION_IN_DAYS'] || 'nil'}"
    d = OutputDriver("cloudwatch_logs", 'log_group_name g\nlog_stream_name s\nretention_in_days "nil"')
    assert d.instance.options.retention_in_days is None
    assert d.instance.options._element.attrs["retention_in_days"].value == "nil"   # the dump shows the config
    assert OutputDriver("cloudwatch_logs", "log_group_name g\nlog_stream_name s\nretention_in_days 30"
                        ).instance.options.retention_in_days == 30
    with pytest.raises(ConfigError, match="expected an integer"):
        OutputDriver("cloudwatch_logs", "log_group_name g\nlog_stream_name s\nretention_in_days none")
    with pytest.raises(ConfigError, match="Set only one of retention_in_days, retention_in_days_key"):
        OutputDriver("cloudwatch_logs", "log_group_name g\nlog_stream_name s\nretention_in_days nil\n"
                     "retention_in_days_key r")


def test_ruby_retry_options_accepted_without_effect():
    d = OutputDriver("cloudwatch_logs", "log_group_name g\nlog_stream_name s\nput_log_events_retry_limit 3\n"
                     "json_handler json\nconcurrency 4")
    opts = type(d.instance.options)._options
    assert opts["put_log_events_retry_limit"].no_effect and opts["json_handler"].no_effect
    assert opts["aws_sec_key"].secret and opts["aws_key_id"].secret


def test_no_aws_import_until_started():
    code = ("import sys; from kawa.testing.drivers import OutputDriver; "
            "OutputDriver('cloudwatch_logs', 'log_group_name g\\nlog_stream_name s'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('botocore', 'boto3')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_progress_ranges_and_layout_change():
    p = ChunkProgress("c1")
    assert p.bind("d", 100)
    p.mark("d", 10, 20)
    p.mark("d", 20, 30)
    p.mark("d", 50, 60)
    assert p.done["d"] == [(10, 30), (50, 60)]
    assert p.remaining("d", 0, 100) == [(0, 10), (30, 50), (60, 100)]
    assert p.remaining("d", 12, 28) == []
    assert not p.bind("d", 99) and p.remaining("d", 0, 100) == [(0, 100)]


def test_progress_file_survives_restart(tmp_path):
    store = ProgressStore(str(tmp_path))
    p = store.load("abc")
    p.bind("g\0s", 30)
    p.mark("g\0s", 0, 10)
    store.save(p)
    again = ProgressStore(str(tmp_path)).load("abc")
    assert again.remaining("g\0s", 0, 30) == [(10, 30)]
    ProgressStore(str(tmp_path)).prune([])
    assert not list(tmp_path.iterdir())


@arun
async def test_restart_resumes_from_durable_progress(cw_output, cwl_proxy, make_stream, tmp_path):
    group, stream = make_stream()
    conf = f"log_group_name {group}\nlog_stream_name {stream}\nmax_events_per_batch 10"
    first = cw_output(conf)
    first.instance.progress = ProgressStore(str(tmp_path))
    base = time.time_ns() - 60_000_000_000
    await first.instance.emit("app", [(base + i, {"i": i}) for i in range(40)])
    first.instance.buffer.enqueue_all(force=True)
    chunk = first.instance.buffer.dequeue()
    cwl_proxy.faults.delay(0.0, 2)
    cwl_proxy.faults.unavailable(1)
    with pytest.raises(RetryableError):
        await first.instance.write(chunk)
    second = cw_output(conf)                       # a new process: only the progress file remains
    second.instance.progress = ProgressStore(str(tmp_path))
    await second.instance.write(chunk)
    got = [e["message"] for e in read_all_events(cwl_proxy.endpoint, group, stream)]
    assert len(got) == 40 and len(set(got)) == 40
    assert list(tmp_path.glob("*.cwlprogress"))    # kept until the chunk is purged
    second.instance.progress.sweep([])             # purged (no chunk left): the file goes
    assert not list(tmp_path.glob("*.cwlprogress"))
