"""The DaemonSet's own fluent.conf in a real `kawa` process on a temp dir laid out like a node, with a
local HTTPS Kubernetes API and a local CloudWatch Logs: metadata, streams, CRI joins, rotation, probes."""

from __future__ import annotations

import datetime
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from kawa.testing.cwl_server import MotoServer, StrictCloudWatchProxy, fake_aws_env, free_port, logs_client
from kawa.testing.kube_api import FakeKubeApi, namespace, pod, write_service_account

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "deploy" / "kubernetes" / "daemonset" / "fluent.conf"
NODE = "node-a"
CLUSTER = "e2e-cluster"
GROUP = f"/aws/kawa/{CLUSTER}/containers"
# (namespace, pod, uid, labels, [(container, container id)])
PODS = [
    ("shop", "web-7d4b9", "0b6f3a1c-1111-2222-3333-444455556666", {"app": "web", "tier": "front"},
     [("nginx", "a1" * 32), ("app", "b2" * 32)]),
    ("batch", "report-x1", "9c8d7e6f-aaaa-bbbb-cccc-ddddeeeeffff", {"app": "report"}, [("worker", "c3" * 32)]),
    # kawa's own Pod: excluded by exclude_path (no self-log loop)
    ("kawa-system", "kawa-x7k2p", "12345678-0000-0000-0000-000000000000", {"app.kubernetes.io/name": "kawa"},
     [("kawa", "d4" * 32)]),
]
NAMESPACES = {"shop": {"team": "payments"}, "batch": {"team": "data"}, "kawa-system": {}}


# a per-plugin counter of the output, with a positive value, in the Prometheus text format
METRIC_LINE = re.compile(r'^\w+\{[^}]*plugin_id="out_cloudwatch_logs_containers"[^}]*\} [1-9]', re.M)


def wait_until(condition: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not met in {timeout:g}s")


def cri_stamp() -> str:
    """The runtime's RFC 3339 time with nanoseconds, now (CloudWatch refuses events days old)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}001Z"


class Node:
    """/var/log/pods/<ns>_<pod>_<uid>/<container>/0.log and the /var/log/containers symlinks."""

    def __init__(self, root: Path) -> None:
        self.log_dir = root / "var" / "log"
        (self.log_dir / "containers").mkdir(parents=True)
        self.files: dict[str, Path] = {}
        for ns, name, uid, _, containers in PODS:
            for container, cid in containers:
                real = self.log_dir / "pods" / f"{ns}_{name}_{uid}" / container / "0.log"
                real.parent.mkdir(parents=True)
                real.touch()
                link = self.log_dir / "containers" / f"{name}_{ns}_{container}-{cid}.log"
                link.symlink_to(real)
                self.files[container] = real

    def write(self, container: str, *lines: str) -> None:
        with self.files[container].open("a") as f:
            f.write("".join(f"{line}\n" for line in lines))

    def say(self, container: str, stream: str, *messages: str) -> None:
        self.write(container, *(f"{cri_stamp()} {stream} F {m}" for m in messages))

    def rotate(self, container: str) -> Path:
        """The kubelet's rotation: rename 0.log to 0.log.<YYYYmmdd-HHMMSS>, the runtime reopens 0.log."""
        current = self.files[container]
        rotated = current.with_name("0.log." + time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
        current.rename(rotated)
        current.touch()
        return rotated


def http_get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def answers(port: int, path: str) -> bool:
    try:
        return http_get(port, path)[0] == 200
    except OSError:
        return False


def stream_records(endpoint: str) -> dict[str, list[dict[str, Any]]]:
    client = logs_client(endpoint, max_attempts=3)
    try:
        streams = [s["logStreamName"] for s in client.describe_log_streams(logGroupName=GROUP)["logStreams"]]
    except client.exceptions.ResourceNotFoundException:
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    for stream in streams:
        events, kwargs = [], {"logGroupName": GROUP, "logStreamName": stream, "startFromHead": True}
        while True:
            page = client.get_log_events(**kwargs)
            events.extend(page["events"])
            if page.get("nextForwardToken") in (None, kwargs.get("nextToken")):
                break
            kwargs["nextToken"] = page["nextForwardToken"]
        out[stream] = [json.loads(e["message"]) for e in events]
    return out


@dataclass
class Run:
    """What one kawa run on the node left behind: CloudWatch's streams and kawa's observable state."""

    streams: dict[str, list[dict[str, Any]]]
    log: str
    returncode: int | None
    metrics: list[str]             # /metrics bodies scraped during the run
    plugin_ids: set[str]           # from monitor_agent's /api/plugins.json


# Lines present on the node before kawa starts (read_from_head) and lines written afterwards.
BEFORE_START = {"shop/web-7d4b9/nginx": ["nginx-1", "nginx-2"], "batch/report-x1/worker": ["worker-1"]}
EXPECTED_COUNTS = {"shop/web-7d4b9/nginx": 102, "shop/web-7d4b9/app": 3, "batch/report-x1/worker": 1}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp_path = tmp_path_factory.mktemp("daemonset")
    with MotoServer() as moto, StrictCloudWatchProxy(moto.endpoint) as cloudwatch:
        return _run_on_a_node(tmp_path, cloudwatch)


def _run_on_a_node(tmp_path: Path, cloudwatch: StrictCloudWatchProxy) -> Run:
    node = Node(tmp_path / "node")
    state = tmp_path / "node" / "var" / "lib" / "kawa"
    secrets = tmp_path / "serviceaccount"
    ca, key = write_service_account(secrets)
    api = FakeKubeApi(ca, key)
    for ns, labels in NAMESPACES.items():
        api.namespaces[ns] = namespace(ns, f"ns-uid-{ns}", labels)
    for ns, name, uid, labels, containers in PODS:
        api.add_pod(pod(ns, name, NODE, uid, labels, containers))
    api.add_pod(pod("shop", "elsewhere-1", "node-b", "uid-elsewhere", {"app": "web"}, [("nginx", "e5" * 32)]))

    health_port, metrics_port = free_port(), free_port()
    env = fake_aws_env({k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KUBERNETES_"))})
    env.update(api.env(), K8S_NODE_NAME=NODE, CLUSTER_NAME=CLUSTER, AWS_REGION="us-east-1",
               AWS_ENDPOINT_URL_LOGS=cloudwatch.endpoint, KAWA_LOG_DIR=str(node.log_dir),
               KAWA_STATE_DIR=str(state), KAWA_K8S_SECRET_DIR=str(secrets),
               KAWA_HEALTH_PORT=str(health_port), KAWA_METRICS_PORT=str(metrics_port))

    node.say("nginx", "stdout", *BEFORE_START["shop/web-7d4b9/nginx"])
    node.say("worker", "stderr", *BEFORE_START["batch/report-x1/worker"])
    node.say("kawa", "stdout", "kawa's own line: must not be shipped")

    log = tmp_path / "kawa.log"
    metrics: list[str] = []
    proc = subprocess.Popen([sys.executable, "-m", "kawa", "-c", str(CONF)], env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: proc.poll() is not None or answers(health_port, "/healthz"), 30, "/healthz")
        assert proc.poll() is None, log.read_text()
        wait_until(lambda: answers(health_port, "/readyz"), 30, "/readyz")
        # from here on the pod and namespace lists are in kawa's cache
        wait_until(lambda: api.watching("pods") and api.watching("namespaces"), 30, "metadata watches")

        # P(artial) pieces of one long line, interleaved with the other stream, then its F(inal) piece
        stamp = cri_stamp()
        node.write("app", f"{stamp} stdout P long-line-part-1 ", f"{stamp} stderr F app-err-1",
                   f"{stamp} stdout P part-2 ", f"{stamp} stdout F part-3")
        node.say("app", "stdout", "app-1")

        # rotation: lines written just before the rename, then the runtime's new 0.log fills
        node.say("nginx", "stdout", *(f"nginx-{i}" for i in range(3, 53)))
        rotated = node.rotate("nginx")
        node.say("nginx", "stdout", *(f"nginx-{i}" for i in range(53, 103)))
        node.say("kawa", "stderr", "kawa's own warning: must not be shipped")

        status, body = http_get(metrics_port, "/metrics")
        assert status == 200
        metrics.append(body)
        status, body = http_get(health_port, "/api/plugins.json")
        assert status == 200
        plugin_ids = {p["plugin_id"] for p in json.loads(body)["plugins"]}

        def arrived() -> bool:
            got = stream_records(cloudwatch.endpoint)
            return all(len(got.get(s, ())) >= n for s, n in EXPECTED_COUNTS.items())
        wait_until(arrived, 60, "every line in CloudWatch")
        assert rotated.exists()
        assert answers(health_port, "/healthz") and answers(health_port, "/readyz")
        status, body = http_get(metrics_port, "/metrics")
        assert status == 200
        metrics.append(body)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        finally:
            if proc.poll() is None:
                proc.kill()
            api.stop()
    return Run(stream_records(cloudwatch.endpoint), log.read_text(), proc.returncode, metrics, plugin_ids)


def test_kawa_drains_and_exits_cleanly_on_sigterm(run: Run) -> None:
    assert run.returncode == 0, run.log
    assert "Traceback" not in run.log and "[error]" not in run.log, run.log


def test_one_stream_per_container_and_kawas_own_pod_excluded(run: Run) -> None:
    # the other node's Pod never had a file here; kawa's own file exists but is excluded
    assert sorted(run.streams) == sorted(EXPECTED_COUNTS)


def test_rotation_loses_and_duplicates_nothing(run: Run) -> None:
    assert re.search(r"detected rotation of \S+/web-7d4b9_shop_nginx-", run.log), run.log
    nginx = [r["message"] for r in run.streams["shop/web-7d4b9/nginx"]]
    assert Counter(nginx) == Counter(f"nginx-{i}" for i in range(1, 103))


def test_partial_lines_are_joined_per_stream(run: Run) -> None:
    assert [(r["stream"], r["logtag"], r["message"]) for r in run.streams["shop/web-7d4b9/app"]] == [
        ("stderr", "F", "app-err-1"), ("stdout", "F", "long-line-part-1 part-2 part-3"), ("stdout", "F", "app-1")]
    assert [(r["stream"], r["message"]) for r in run.streams["batch/report-x1/worker"]] == [("stderr", "worker-1")]


def _assert_full_metadata(stream: str, record: dict[str, Any]) -> None:
    ns, pod_name, container = stream.split("/")
    spec = next(p for p in PODS if p[0] == ns and p[1] == pod_name)
    kube = record["kubernetes"]
    assert kube == {"container_name": container, "namespace_name": ns, "pod_name": pod_name,
                    "container_image": f"docker.io/library/{container}:1.25",
                    "container_image_id": f"docker.io/library/{container}@sha256:{'a' * 64}",
                    "pod_id": spec[2], "pod_ip": "10.1.2.3", "host": NODE, "labels": spec[3],
                    "namespace_id": f"ns-uid-{ns}", "namespace_labels": NAMESPACES[ns]}, (stream, record)
    assert record["docker"] == {"container_id": dict(spec[4])[container]}


def test_lines_written_while_running_carry_kubernetes_metadata(run: Run) -> None:
    checked = 0
    for stream, records in run.streams.items():
        for r in records:
            if r["message"] not in BEFORE_START.get(stream, ()):
                _assert_full_metadata(stream, r)
                checked += 1
    assert checked == sum(EXPECTED_COUNTS.values()) - sum(map(len, BEFORE_START.values()))


def test_lines_present_at_startup_carry_kubernetes_metadata(run: Run) -> None:
    for stream, messages in BEFORE_START.items():
        for r in run.streams[stream]:
            if r["message"] in messages:
                _assert_full_metadata(stream, r)


def test_probes_and_metrics_answer_during_the_run(run: Run) -> None:
    # /healthz and /readyz were polled to 200 in the run; here: /metrics and the plugin list
    assert {"in_monitor_agent", "in_prometheus", "in_tail_container_logs", "filter_kubernetes_metadata",
            "out_cloudwatch_logs_containers"} <= run.plugin_ids
    for body in run.metrics:
        assert "# TYPE" in body
    assert METRIC_LINE.search(run.metrics[-1]), run.metrics[-1][:2000]
