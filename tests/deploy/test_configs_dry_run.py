"""Every fluent.conf shipped in a ConfigMap passes `kawa --dry-run` (as the Pod's environment sets it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
# What the Pods' environment provides (the DaemonSet reads these; the sidecar needs none).
POD_ENV = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
           "K8S_NODE_NAME": "node-1", "CLUSTER_NAME": "demo", "AWS_REGION": "us-east-1"}


@pytest.mark.parametrize("conf", sorted(DEPLOY.glob("*/fluent.conf")), ids=lambda p: p.parent.name)
def test_configmap_config_passes_dry_run(conf: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "kawa", "--dry-run", "-c", str(conf)], capture_output=True,
                       text=True, env={**os.environ, **POD_ENV}, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "finished dry run mode" in p.stdout
    assert "Traceback" not in p.stdout + p.stderr
