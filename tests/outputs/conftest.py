"""Fixtures for the CloudWatch Logs output tests: one moto process per session, a fresh proxy view per test.
Tests isolate by unique group names instead of resetting moto, which other tests may be using.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Iterator

import pytest

from kawa.testing.cwl_server import MotoServer, StrictCloudWatchProxy, logs_client


class FakeClock:
    """A settable clock for the proxy's too-old/too-new window (seconds since the epoch)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture(autouse=True)
def _quick_absent_rechecks(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process tests look again at an absent call after 0.05 s, not 2 + 4 s (the real processes
    of tests/e2e keep verify.ABSENT_RECHECKS)."""
    from kawa.plugins.outputs.cloudwatch_logs import verify

    monkeypatch.setattr(verify, "ABSENT_RECHECKS", (0.05,))


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    # Session scope: the process takes about a second to start.
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def _session_proxy(moto_server: MotoServer) -> Iterator[tuple[StrictCloudWatchProxy, FakeClock]]:
    clock = FakeClock()
    with StrictCloudWatchProxy(moto_server.endpoint, clock=clock) as proxy:
        yield proxy, clock


@pytest.fixture
def clock(_session_proxy: tuple[StrictCloudWatchProxy, FakeClock]) -> FakeClock:
    return _session_proxy[1]


@pytest.fixture
def cwl_proxy(_session_proxy: tuple[StrictCloudWatchProxy, FakeClock]) -> Iterator[StrictCloudWatchProxy]:
    """The strict proxy with no faults, zeroed counters and the real clock."""
    proxy, clock = _session_proxy
    proxy.reset()
    clock.offset = 0.0
    yield proxy
    proxy.reset()
    clock.offset = 0.0


@pytest.fixture
def logs(cwl_proxy: StrictCloudWatchProxy) -> Any:
    """boto3 logs client against the proxy, no botocore retries, no client-side validation."""
    return logs_client(cwl_proxy.endpoint, parameter_validation=False)


@pytest.fixture
def make_stream(logs: Any) -> Callable[..., tuple[str, str]]:
    """Create a uniquely named group + stream; returns (group, stream)."""
    def make(retention_days: int | None = None) -> tuple[str, str]:
        group = f"/kawa/test/{uuid.uuid4().hex[:12]}"
        logs.create_log_group(logGroupName=group)
        if retention_days is not None:
            logs.put_retention_policy(logGroupName=group, retentionInDays=retention_days)
        logs.create_log_stream(logGroupName=group, logStreamName="s")
        return group, "s"
    return make


# --- cloudwatch_logs output fixtures ------------------------------------------------------------

@pytest.fixture
def cw_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region in the environment; nothing from a developer's ~/.aws."""
    from kawa.testing.cwl_server import FAKE_CREDENTIALS

    for key in ("AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL",
                "AWS_ENDPOINT_URL_LOGS", "AWS_ENDPOINT_URL_STS", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_CA_BUNDLE",
                "KAWA_AWS_CLIENT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/kawa-test-aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/kawa-test-aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def cw_output(cw_env: None, cwl_proxy: StrictCloudWatchProxy, clock: FakeClock) -> Callable[..., Any]:
    """Build a cloudwatch_logs OutputDriver aimed at the strict proxy; its clock follows the proxy's."""
    from kawa.testing.drivers import OutputDriver

    def make(conf: str, *, endpoint: str | None = None) -> Any:
        body = f"region us-east-1\nendpoint {endpoint or cwl_proxy.endpoint}\nrequest_timeout 5\n{conf}"
        return OutputDriver("cloudwatch_logs", body, clock=lambda: int(clock() * 1_000_000_000))
    return make
