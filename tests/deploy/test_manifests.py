"""deploy/kubernetes/*: each kustomize layout renders, validates against the Kubernetes API schemas,
carries a fluent.conf kawa's parser reads, and keeps the invariants the layouts promise."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _kustomize  # noqa: E402

from kawa.config import values  # noqa: E402
from kawa.config.element import Element  # noqa: E402
from kawa.config.parser import parse_config_string  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kubernetes"
SEED = REPO / ".." / "shared" / "seed"
LAYOUTS = ["sidecar", "sidecar-native", "daemonset"]
# Oldest Kubernetes the layouts target: native sidecars (init restartPolicy: Always) are on by
# default from 1.29; the newest schema the validator ships is checked too.
K8S_VERSIONS = ["1.29.0", "latest"]
CONFIG_PATH = "/fluentd/etc/fluent.conf"    # what the image reads by default (Dockerfile)
ENV = {"CLUSTER_NAME": "test-cluster", "AWS_REGION": "us-east-1"}


def render(layout: str) -> list[dict[str, Any]]:
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", str(DEPLOY / layout)], capture_output=True, text=True,
                             check=True).stdout
        return [o for o in yaml.safe_load_all(out) if o]
    return _kustomize.render(DEPLOY / layout)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def pod_specs(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "DaemonSet", "Job")]


def kawa_container(spec: dict[str, Any]) -> dict[str, Any]:
    found = [c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"] == "kawa"]
    assert len(found) == 1
    return found[0]


def mounted_config(objects: list[dict[str, Any]], spec: dict[str, Any]) -> str:
    """The fluent.conf text kawa sees at CONFIG_PATH in this Pod spec."""
    kawa = kawa_container(spec)
    mount = next(m for m in kawa["volumeMounts"] if CONFIG_PATH.startswith(m["mountPath"].rstrip("/") + "/"))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    item = next(i for i in volume["configMap"]["items"] if i["path"] == CONFIG_PATH.rsplit("/", 1)[1])
    cm = next(o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"] == volume["configMap"]["name"])
    return cm["data"][item["key"]]  # type: ignore[no-any-return]


def section(root: Element, name: str, type_name: str | None = None) -> Element:
    found = [e for e in root.elements if e.name == name
             and (type_name is None or e.attrs["@type"].value == type_name)]
    assert len(found) == 1, f"<{name}> @type {type_name}"
    return found[0]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_renders_with_a_config_map_from_its_fluent_conf(layout: str) -> None:
    objects = render(layout)
    assert pod_specs(objects)
    for spec in pod_specs(objects):
        text = mounted_config(objects, spec)
        assert text == (DEPLOY / layout / "fluent.conf").read_text()
        root = parse_config_string(text, name=f"{layout}/fluent.conf", env=ENV)
        assert section(root, "match").attrs["@type"].value == "cloudwatch_logs"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_object_validates_against_the_kubernetes_schema(layout: str, version: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the test extra")
    target = kv.latest_version() if version == "latest" else version
    for obj in render(layout):
        kv.validate(obj, target, strict=True)   # raises ValidationError naming the bad field


@pytest.mark.skipif(not shutil.which("kubectl"), reason="cross-checks the fallback renderer against kubectl")
@pytest.mark.parametrize("layout", LAYOUTS)
def test_fallback_renderer_agrees_with_kubectl(layout: str) -> None:
    def normal(objects: list[dict[str, Any]]) -> str:
        text = yaml.safe_dump(sorted(objects, key=lambda o: (o["kind"], o["metadata"]["name"])), sort_keys=True)
        return re.sub(r"(-conf|-config)-[a-z0-9]{10}\b", r"\1-HASH", text)
    assert normal(_kustomize.render(DEPLOY / layout)) == normal(render(layout))


def test_sidecar_keeps_the_seed_interface() -> None:
    objects = render("sidecar")
    (deployment,) = by_kind(objects, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert mounted_config(objects, spec) == (DEPLOY / "sidecar" / "fluent.conf").read_text()
    kawa = kawa_container(spec)
    assert kawa in spec["containers"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in kawa["env"]}
    assert env == {"AWS_ACCESS_KEY_ID": {"name": "beeglobal-app", "key": "aws_access_key_id"},
                   "AWS_SECRET_ACCESS_KEY": {"name": "beeglobal-app", "key": "aws_access_key_secret"},
                   "AWS_REGION": {"name": "beeglobal-app", "key": "aws_region"}}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["log-volume"] == {"name": "log-volume", "emptyDir": {}}
    nginx = next(c for c in spec["containers"] if c["name"] == "nginx")
    log_mounts = {m["mountPath"] for c in (nginx, kawa) for m in c["volumeMounts"] if m["name"] == "log-volume"}
    assert log_mounts == {"/var/log/nginx"}
    if not SEED.is_dir():
        pytest.skip("../shared/seed not present: cannot compare with the seed")
    assert (DEPLOY / "sidecar" / "fluent.conf").read_text() == (SEED / "fluent.conf").read_text()
    seed = yaml.safe_load((SEED / "deployment.yaml").read_text())
    seed_fluentd = next(c for c in seed["spec"]["template"]["spec"]["containers"] if c["name"] == "fluentd")
    assert kawa["env"] == seed_fluentd["env"]
    assert deployment["spec"]["selector"] == seed["spec"]["selector"]


def test_native_sidecar_is_a_restartable_init_container_and_a_job_completes() -> None:
    objects = render("sidecar-native")
    (job,) = by_kind(objects, "Job")
    for spec in pod_specs(objects):
        kawa = kawa_container(spec)
        assert kawa in spec["initContainers"] and kawa["restartPolicy"] == "Always"
        assert all(c["name"] != "kawa" for c in spec["containers"])
        assert spec["terminationGracePeriodSeconds"] >= 30
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_daemonset_invariants() -> None:
    objects = render("daemonset")
    (ds,) = by_kind(objects, "DaemonSet")
    (sa,) = by_kind(objects, "ServiceAccount")
    (role,) = by_kind(objects, "ClusterRole")
    (binding,) = by_kind(objects, "ClusterRoleBinding")
    spec = ds["spec"]["template"]["spec"]
    kawa = kawa_container(spec)
    namespace = ds["metadata"]["namespace"]

    # least privilege: read pods and namespaces, nothing else
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods", "namespaces"],
                              "verbs": ["get", "list", "watch"]}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": namespace}]
    assert spec["serviceAccountName"] == sa["metadata"]["name"] and sa["metadata"]["namespace"] == namespace
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")

    env = {e["name"]: e for e in kawa["env"]}
    assert env["K8S_NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert kawa["resources"]["requests"] and kawa["resources"]["limits"]
    port = next(p for p in kawa["ports"] if p["name"] == "health")["containerPort"]
    assert port == 24220
    assert kawa["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert kawa["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}

    root = parse_config_string(mounted_config(objects, spec), name="daemonset/fluent.conf", env=ENV)
    # the drain budget fits in the grace period, with a margin
    drain = values.convert("time", section(root, "system").attrs["shutdown_timeout"].value)
    assert drain + 5 <= spec["terminationGracePeriodSeconds"] == 30

    # the probes and the metrics port hit the sources fluent.conf really declares
    ports = {p["name"]: p["containerPort"] for p in kawa["ports"]}
    assert int(section(root, "source", "monitor_agent").attrs["port"].value) == ports["health"]
    assert int(section(root, "source", "prometheus").attrs["port"].value) == ports["metrics"]

    source = section(root, "source", "tail")
    assert section(source, "parse").attrs["@type"].value == "cri"
    assert section(root, "filter", "kubernetes_metadata").arg == "kubernetes.**"
    match = section(root, "match", "cloudwatch_logs")
    assert "test-cluster" in match.attrs["log_group_name"].value
    assert "${$.kubernetes.container_name}" in match.attrs["log_stream_name"].value
    buffer = section(match, "buffer")
    assert buffer.attrs["@type"].value == "file" and "$.kubernetes.container_name" in buffer.arg

    # no self-log loop: kawa's own container log is excluded, other containers' logs are read
    path_glob = source.attrs["path"].value
    excludes = values.convert("array", source.attrs["exclude_path"].value)
    own = f"/var/log/containers/{ds['metadata']['name']}-x7k2p_{namespace}_kawa-{'a' * 64}.log"
    other = f"/var/log/containers/web-7d4b9_{namespace}_nginx-{'b' * 64}.log"
    assert fnmatch.fnmatch(own, path_glob) and any(fnmatch.fnmatch(own, g) for g in excludes)
    assert fnmatch.fnmatch(other, path_glob) and not any(fnmatch.fnmatch(other, g) for g in excludes)

    # pos_file and buffer live on a writable hostPath, logs come from a read-only one
    mounts = {m["mountPath"].rstrip("/"): m for m in kawa["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}

    def host_mount(path: str) -> dict[str, Any]:
        best = max((p for p in mounts if path.startswith(p + "/")), key=len)
        assert "hostPath" in volumes[mounts[best]["name"]], path
        return mounts[best]
    for state in (source.attrs["pos_file"].value, buffer.attrs["path"].value):
        assert not host_mount(state).get("readOnly")
    assert host_mount(path_glob)["readOnly"] is True
