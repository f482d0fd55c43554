"""examples/container-insights-fluentd.conf (the shape of AWS Container Insights' Fluentd DaemonSet
configuration) in a real kawa process on a temp dir laid out like a Docker node, with a local Kubernetes
API and a local CloudWatch Logs: Docker json-file lines, Kubernetes metadata, a stream per container
(record_transformer's ${tag_parts[3]}, log_stream_name_key), stack traces joined by concat, the last
one flushed by its timeout into @NORMAL; kubelet's and containerd's journal entries into the dataplane
group, a stream per unit and host."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kawa.testing.cwl_server import MotoServer, StrictCloudWatchProxy, fake_aws_env, logs_client
from kawa.testing.journal import append_entries
from kawa.testing.kube_api import FakeKubeApi, namespace, pod, write_service_account

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "container-insights-fluentd.conf"
GROUP = "/aws/containerinsights/demo/application"
DATAPLANE = "/aws/containerinsights/demo/dataplane"
CID = "f0" * 32
FILE = f"web-5f7c_shop_app-{CID}"


def docker_line(log: str, stream: str = "stdout") -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return json.dumps({"log": log, "stream": stream,
                       "time": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}000Z"})


def events(endpoint: str, group: str = GROUP) -> dict[str, list[dict[str, Any]]]:
    client = logs_client(endpoint, max_attempts=3)
    try:
        streams = [s["logStreamName"] for s in client.describe_log_streams(logGroupName=group)["logStreams"]]
    except client.exceptions.ResourceNotFoundException:
        return {}
    return {s: [json.loads(e["message"]) for e in
                client.get_log_events(logGroupName=group, logStreamName=s, startFromHead=True)["events"]]
            for s in streams}


def test_container_insights_shaped_config_ships_joined_stack_traces_per_container(tmp_path: Path) -> None:
    node = tmp_path / "node"
    (node / "var" / "log" / "containers").mkdir(parents=True)
    (node / "var" / "log" / "journal").mkdir()
    append_entries(node / "var" / "log" / "journal" / "system.journal", [
        {"MESSAGE": "Started kubelet", "_SYSTEMD_UNIT": "kubelet.service", "_HOSTNAME": "node-a", "_PID": "1"},
        {"MESSAGE": "session opened", "_SYSTEMD_UNIT": "sshd.service", "_HOSTNAME": "node-a"},
        {"MESSAGE": "pulled image", "_SYSTEMD_UNIT": "containerd.service", "_HOSTNAME": "node-a"},
        {"MESSAGE": "node ready", "_SYSTEMD_UNIT": "kubelet.service", "_HOSTNAME": "node-a"}])
    logfile = node / "var" / "log" / "containers" / f"{FILE}.log"
    secrets = tmp_path / "serviceaccount"
    ca, key = write_service_account(secrets)
    api = FakeKubeApi(ca, key)
    api.namespaces["shop"] = namespace("shop", "ns-uid-shop", {"team": "payments"})
    api.add_pod(pod("shop", "web-5f7c", "node-a", "0b6f3a1c-1111-2222-3333-444455556666", {"app": "web"},
                    [("app", CID)]))
    # The node's paths as the Pod sees them, relative to the node root kawa runs in (tags keep
    # their shape: var.log.containers.<file>.log), and the service account in the temp dir.
    conf = tmp_path / "fluent.conf"
    conf.write_text(EXAMPLE.read_text().replace("/var/log/", "var/log/").replace(
        "@id filter_kube_metadata\n", f"@id filter_kube_metadata\n    secret_dir {secrets}\n"))
    logfile.write_text("\n".join([
        docker_line("started\n"),
        docker_line("java.lang.IllegalStateException: boom\n", "stderr"),
        docker_line("\tat shop.Cart.add(Cart.java:42)\n", "stderr"),
        docker_line("\tat shop.Api.post(Api.java:7)\n", "stderr"),
        docker_line("request done\n"),
        docker_line("java.lang.RuntimeException: last\n", "stderr"),
        docker_line("\tat shop.Worker.run(Worker.java:3)\n", "stderr"),
    ]) + "\n")
    with MotoServer() as moto, StrictCloudWatchProxy(moto.endpoint) as cloudwatch:
        env = fake_aws_env({k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KUBERNETES_"))})
        env.update(api.env(), REGION="us-east-1", CLUSTER_NAME="demo", AWS_ENDPOINT_URL_LOGS=cloudwatch.endpoint)
        log = tmp_path / "kawa.log"
        proc = subprocess.Popen([sys.executable, "-m", "kawa", "-c", str(conf)], env=env, cwd=node,
                                stdout=log.open("w"), stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (sum(map(len, events(cloudwatch.endpoint).values())) < 4 or
                                                   sum(map(len, events(cloudwatch.endpoint, DATAPLANE).values())) < 3):
                assert proc.poll() is None, log.read_text()[-4000:]
                time.sleep(0.5)
            got = events(cloudwatch.endpoint)
            dataplane = events(cloudwatch.endpoint, DATAPLANE)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            api.stop()
    text = log.read_text()
    assert proc.returncode == 0, text[-4000:]
    assert list(got) == [FILE], (got, text[-3000:])            # one stream per container file
    records = got[FILE]
    assert [r["log"] for r in records] == [
        "started\n",
        "java.lang.IllegalStateException: boom\n\tat shop.Cart.add(Cart.java:42)\n\tat shop.Api.post(Api.java:7)\n",
        "request done\n",
        "java.lang.RuntimeException: last\n\tat shop.Worker.run(Worker.java:3)\n",   # by concat's timeout
    ]
    assert all("stream_name" not in r for r in records)                 # remove_log_stream_name_key
    assert {r["kubernetes"]["pod_name"] for r in records} == {"web-5f7c"}
    assert records[0]["kubernetes"]["labels"] == {"app": "web"}
    assert "Timeout flush: var.log.containers" in text
    assert dataplane == {   # field_map_strict: only the mapped fields; the stream name key removed
        "kubelet.service-node-a": [{"message": "Started kubelet", "hostname": "node-a", "systemd_unit": "kubelet.service"},
                                   {"message": "node ready", "hostname": "node-a", "systemd_unit": "kubelet.service"}],
        "containerd.service-node-a": [{"message": "pulled image", "hostname": "node-a",
                                       "systemd_unit": "containerd.service"}]}, (dataplane, text[-3000:])
    assert "Traceback" not in text and "[error]" not in text, text[-3000:]
