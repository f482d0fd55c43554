"""`kawa --dry-run --check-aws` against a local CloudWatch Logs + STS endpoint (moto's server process):
credentials resolve and the configured groups exist or may be created; plain --dry-run stays offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kawa.testing.cwl_server import MotoServer, fake_aws_env, logs_client

pytestmark = pytest.mark.e2e

CONF = """
<source>
  @type sample
  tag app
</source>
<match app>
  @type cloudwatch_logs
  region us-east-1
  endpoint {endpoint}
  log_group_name {group}
  log_stream_name s1
  auto_create_stream {auto}
</match>
"""


@pytest.fixture(scope="module")
def moto() -> MotoServer:
    with MotoServer() as server:
        yield server


def _dry_run(tmp_path: Path, moto: MotoServer, group: str, auto: str, *extra: str) -> subprocess.CompletedProcess[str]:
    conf = tmp_path / "fluent.conf"
    conf.write_text(CONF.format(endpoint=moto.endpoint, group=group, auto=auto))
    env = {**fake_aws_env(), "AWS_ENDPOINT_URL_STS": moto.endpoint}
    return subprocess.run([sys.executable, "-m", "kawa", "--dry-run", *extra, "-c", str(conf)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_existing_group_passes(tmp_path: Path, moto: MotoServer) -> None:
    logs_client(moto.endpoint).create_log_group(logGroupName="exists")
    p = _dry_run(tmp_path, moto, "exists", "false", "--check-aws")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "credentials and log groups OK" in p.stdout


def test_missing_group_without_auto_create_fails(tmp_path: Path, moto: MotoServer) -> None:
    p = _dry_run(tmp_path, moto, "nope-never-created", "false", "--check-aws")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "check-aws" in p.stdout and "nope-never-created" in p.stdout
    assert "Traceback" not in p.stdout + p.stderr


def test_plain_dry_run_is_offline(tmp_path: Path, moto: MotoServer) -> None:
    p = _dry_run(tmp_path, moto, "nope-never-created", "false")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "check-aws" not in p.stdout
