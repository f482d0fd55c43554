"""kubernetes_metadata filter against a local HTTPS Kubernetes API (list, watch, get) on 127.0.0.1.

The fake API speaks real Pod/Namespace/List/WatchEvent/Status JSON and checks the bearer token.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
import queue
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import FilterDriver

TOKEN = "test-token-abc"
NODE = "node-a"
DOCKER_ID = "df14e0d5ae4c07284fa636d739c8fc2e6b52bc344658de7d3f08c36a2e804115"
WEB_TAG = f"kubernetes.var.log.containers.web-7d4b9_shop_nginx-{DOCKER_ID}.log"


def wait_until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


# ---- a self-signed certificate for 127.0.0.1 ---------------------------------------------------

def make_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "ca.crt", directory / "server.key"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        return cert, key
    import ipaddress

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    built = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
             .sign(private, hashes.SHA256()))
    cert.write_bytes(built.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, key


# ---- the fake API server -------------------------------------------------------------------------

def pod(namespace: str, name: str, node: str, uid: str, labels: dict[str, str], containers: list[tuple[str, str]],
        annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": "1",
                     "creationTimestamp": "2026-01-01T00:00:00Z", "labels": labels,
                     "annotations": annotations or {}},
        "spec": {"nodeName": node, "containers": [{"name": c, "image": f"{c}:1.25"} for c, _ in containers]},
        "status": {"phase": "Running", "podIP": "10.1.2.3", "hostIP": "192.168.0.10",
                   "containerStatuses": [{"name": c, "image": f"docker.io/library/{c}:1.25",
                                          "imageID": f"docker.io/library/{c}@sha256:{'a' * 64}",
                                          "containerID": f"containerd://{cid}", "ready": True, "restartCount": 0}
                                         for c, cid in containers]},
    }


def namespace(name: str, uid: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": name, "uid": uid, "resourceVersion": "1", "labels": labels,
                         "creationTimestamp": "2025-12-01T00:00:00Z"},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


class FakeKubeApi:
    """/api/v1/pods, /api/v1/namespaces (list + watch), /api/v1/namespaces/<ns>[/pods/<name>] (get)."""

    def __init__(self, cert: Path, key: Path, port: int = 0) -> None:
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.version = 100
        self.watchers: list[tuple[str, str | None, queue.Queue[dict[str, Any] | None]]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                api.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        for _, _, q in list(self.watchers):
            q.put(None)

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    # state changes, pushed to watchers like the API server does
    def add_pod(self, obj: dict[str, Any], notify: bool = False) -> None:
        with self.lock:
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
            kind = "MODIFIED" if key in self.pods else "ADDED"
            self.pods[key] = obj
        if notify:
            self._notify("pods", kind, obj)

    def relabel_pod(self, ns: str, name: str, labels: dict[str, str]) -> None:
        obj = copy.deepcopy(self.pods[(ns, name)])
        obj["metadata"]["labels"] = labels
        self.add_pod(obj, notify=True)

    def _notify(self, resource: str, kind: str, obj: dict[str, Any]) -> None:
        for res, node, q in list(self.watchers):
            if res == resource and (node is None or obj["spec"]["nodeName"] == node):
                q.put({"type": kind, "object": obj})

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.requests.append((parts.path, query))
        if h.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(h, 401, _status(401, "Unauthorized", "Unauthorized"))
        segs = parts.path.strip("/").split("/")
        if segs[:2] != ["api", "v1"]:
            return self._send(h, 404, _status(404, "NotFound", "the server could not find the requested resource"))
        segs = segs[2:]
        node = None
        selector = query.get("fieldSelector", "")
        if selector.startswith("spec.nodeName="):
            node = selector.split("=", 1)[1]
        if segs == ["pods"] or segs == ["namespaces"]:
            if query.get("watch") == "true":
                return self._watch(h, segs[0], node)
            items = (list(self.pods.values()) if segs == ["pods"] else list(self.namespaces.values()))
            if node is not None:
                items = [p for p in items if p["spec"]["nodeName"] == node]
            kind = "PodList" if segs == ["pods"] else "NamespaceList"
            return self._send(h, 200, {"kind": kind, "apiVersion": "v1",
                                       "metadata": {"resourceVersion": str(self.version)}, "items": items})
        if len(segs) == 2 and segs[0] == "namespaces" and segs[1] in self.namespaces:
            return self._send(h, 200, self.namespaces[segs[1]])
        if len(segs) == 4 and segs[0] == "namespaces" and segs[2] == "pods" and (segs[1], segs[3]) in self.pods:
            return self._send(h, 200, self.pods[(segs[1], segs[3])])
        kind = "pods" if "pods" in segs else "namespaces"
        return self._send(h, 404, _status(404, "NotFound", f'{kind} "{segs[-1]}" not found'))

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _watch(self, h: BaseHTTPRequestHandler, resource: str, node: str | None) -> None:
        q: queue.Queue[dict[str, Any] | None] = queue.Queue()
        entry = (resource, node, q)
        self.watchers.append(entry)
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.flush()
        try:
            while not self.stopping.is_set():
                try:
                    notice = q.get(timeout=0.1)
                except queue.Empty:
                    continue
                if notice is None:
                    break
                data = json.dumps(notice).encode() + b"\n"
                h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                h.wfile.flush()
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        finally:
            self.watchers.remove(entry)
            h.close_connection = True


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


# ---- fixtures -------------------------------------------------------------------------------------

@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    make_cert(sa)
    (sa / "token").write_text(TOKEN + "\n")
    return sa


@pytest.fixture
def api(secrets: Path) -> Iterator[FakeKubeApi]:
    server = FakeKubeApi(secrets / "ca.crt", secrets / "server.key")
    server.namespaces["shop"] = namespace("shop", "ns-uid-shop", {"team": "payments"})
    server.add_pod(pod("shop", "web-7d4b9", NODE, "pod-uid-web", {"app": "web", "app.kubernetes.io/part-of": "shop"},
                       [("nginx", DOCKER_ID)], {"example.com/owner": "ops", "other/key": "x"}))
    server.add_pod(pod("shop", "batch-x1", "node-b", "pod-uid-batch", {"app": "batch"}, [("worker", "b" * 64)]))
    yield server
    server.stop()


def build(secrets: Path, api: FakeKubeApi, conf: str = "", node: str | None = NODE,
          extras: dict[str, Any] | None = None) -> FilterDriver:
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api.port)}
    if node:
        environ["K8S_NODE_NAME"] = node
    d = FilterDriver("kubernetes_metadata", f"secret_dir {secrets}\nstats_interval 0\n{conf}",
                     extras={"environ": environ, **(extras or {})})
    asyncio.run(d.instance.start())
    return d


@pytest.fixture
def drivers() -> Iterator[list[FilterDriver]]:
    made: list[FilterDriver] = []
    yield made
    for d in made:
        asyncio.run(d.instance.stop())


def feed_until(d: FilterDriver, tag: str, condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    def attempt() -> dict[str, Any] | None:
        d.feed(tag, {"log": "hello"})
        rec = d.filtered_records[-1]
        return rec if condition(rec) else None
    return wait_until(attempt)  # type: ignore[no-any-return]


# ---- tests ---------------------------------------------------------------------------------------

def test_tag_alone_gives_names_and_container_id_without_an_api() -> None:
    d = FilterDriver("kubernetes_metadata", "", extras={"environ": {}})
    d.feed(WEB_TAG, {"log": "x"})
    d.feed("kubernetes.var.log.pods.shop_web-7d4b9_0b6f3a1c-1111-2222-3333-444455556666.nginx.0.log", {"log": "y"})
    other = {"log": "z"}
    d.feed("nginx.access", other)
    assert d.filtered_records[0] == {"log": "x", "docker": {"container_id": DOCKER_ID},
                                     "kubernetes": {"container_name": "nginx", "namespace_name": "shop",
                                                    "pod_name": "web-7d4b9"}}
    assert d.filtered_records[1] == {"log": "y", "kubernetes": {"container_name": "nginx", "namespace_name": "shop",
                                                                "pod_name": "web-7d4b9"}}
    assert d.filtered_records[2] is other


def test_in_cluster_enrichment_has_the_plugin_record_shape(secrets: Path, api: FakeKubeApi,
                                                          drivers: list[FilterDriver]) -> None:
    d = build(secrets, api, "annotation_match [\"^example\\\\.com/\"]")
    drivers.append(d)
    rec = feed_until(d, WEB_TAG, lambda r: "pod_id" in r["kubernetes"] and "namespace_id" in r["kubernetes"])
    assert list(rec) == ["log", "docker", "kubernetes"]
    assert rec["docker"] == {"container_id": DOCKER_ID}
    assert list(rec["kubernetes"].items()) == [
        ("container_name", "nginx"), ("namespace_name", "shop"), ("pod_name", "web-7d4b9"),
        ("container_image", "docker.io/library/nginx:1.25"),
        ("container_image_id", f"docker.io/library/nginx@sha256:{'a' * 64}"),
        ("pod_id", "pod-uid-web"), ("pod_ip", "10.1.2.3"), ("host", NODE),
        ("labels", {"app": "web", "app.kubernetes.io/part-of": "shop"}),
        ("annotations", {"example.com/owner": "ops"}),
        ("master_url", f"https://127.0.0.1:{api.port}/api"),
        ("namespace_id", "ns-uid-shop"), ("namespace_labels", {"team": "payments"}),
    ]


def test_list_and_watch_only_this_nodes_pods(secrets: Path, api: FakeKubeApi, drivers: list[FilterDriver]) -> None:
    d = build(secrets, api)
    drivers.append(d)
    wait_until(lambda: all(w.synced.is_set() for w in d.instance.watchers))
    lists = [q for p, q in api.requests if p == "/api/v1/pods" and q.get("watch") != "true"]
    assert lists and lists[0]["fieldSelector"] == f"spec.nodeName={NODE}"
    wait_until(lambda: [q for p, q in api.requests if p == "/api/v1/pods" and q.get("watch") == "true"])
    watches = [q for p, q in api.requests if p == "/api/v1/pods" and q.get("watch") == "true"]
    assert watches[0]["fieldSelector"] == f"spec.nodeName={NODE}"
    assert lists[0]["resourceVersion"] == "0"                 # served from the API server cache
    assert watches[0]["resourceVersion"] == str(api.version)  # continues from the list
    assert ("shop", "web-7d4b9") in d.instance.store.pods
    assert ("shop", "batch-x1") not in d.instance.store.pods
    # our node's pod is served from the listed cache: no GET for it
    feed_until(d, WEB_TAG, lambda r: "pod_id" in r["kubernetes"])
    assert api.count("/api/v1/namespaces/shop/pods/web-7d4b9") == 0


def test_watch_update_changes_labels_of_later_records(secrets: Path, api: FakeKubeApi,
                                                      drivers: list[FilterDriver]) -> None:
    d = build(secrets, api)
    drivers.append(d)
    feed_until(d, WEB_TAG, lambda r: r["kubernetes"].get("labels", {}).get("app") == "web")
    wait_until(lambda: any(res == "pods" for res, _, _ in api.watchers))
    api.relabel_pod("shop", "web-7d4b9", {"app": "web", "release": "canary"})
    rec = feed_until(d, WEB_TAG, lambda r: r["kubernetes"].get("labels", {}).get("release") == "canary")
    assert rec["kubernetes"]["labels"] == {"app": "web", "release": "canary"}


def test_a_pod_created_later_on_this_node_arrives_by_watch(secrets: Path, api: FakeKubeApi,
                                                          drivers: list[FilterDriver]) -> None:
    d = build(secrets, api)
    drivers.append(d)
    wait_until(lambda: any(res == "pods" for res, _, _ in api.watchers))
    api.add_pod(pod("shop", "new-1", NODE, "pod-uid-new", {"app": "new"}, [("app", "c" * 64)]), notify=True)
    wait_until(lambda: ("shop", "new-1") in d.instance.store.pods)
    tag = f"kubernetes.var.log.containers.new-1_shop_app-{'c' * 64}.log"
    rec = feed_until(d, tag, lambda r: "pod_id" in r["kubernetes"])
    assert rec["kubernetes"]["pod_id"] == "pod-uid-new"
    assert api.count("/api/v1/namespaces/shop/pods/new-1") == 0


def test_miss_is_fetched_once_per_batch_not_per_record(secrets: Path, api: FakeKubeApi,
                                                       drivers: list[FilterDriver]) -> None:
    d = build(secrets, api, "watch false", node=None)
    drivers.append(d)
    tag = f"kubernetes.var.log.containers.batch-x1_shop_worker-{'b' * 64}.log"
    d.feed_batch(tag, [(1, {"n": i}) for i in range(1000)])
    rec = feed_until(d, tag, lambda r: "pod_id" in r["kubernetes"])
    assert rec["kubernetes"]["host"] == "node-b"
    assert api.count("/api/v1/namespaces/shop/pods/batch-x1") == 1
    assert api.count("/api/v1/namespaces/shop") == 1
    # records never share inner dicts: editing one leaves its neighbours alone
    d.feed_batch(tag, [(1, {"n": 1}), (1, {"n": 2})])
    a, b = d.filtered_records[-2:]
    a["kubernetes"]["labels"]["app"] = "changed"
    assert b["kubernetes"]["labels"]["app"] == "batch"


def test_unknown_pod_and_namespace_are_orphaned(secrets: Path, api: FakeKubeApi, drivers: list[FilterDriver]) -> None:
    d = build(secrets, api, "watch false")
    drivers.append(d)
    tag = f"kubernetes.var.log.containers.gone-1_nowhere_app-{'d' * 64}.log"
    rec = feed_until(d, tag, lambda r: "namespace_id" in r["kubernetes"])
    assert rec["kubernetes"] == {"container_name": "app", "namespace_name": ".orphaned", "pod_name": "gone-1",
                                 "orphaned_namespace": "nowhere", "namespace_id": "orphaned"}


def test_skip_options_leave_their_keys_out(secrets: Path, api: FakeKubeApi, drivers: list[FilterDriver]) -> None:
    d = build(secrets, api, "watch false\nskip_labels true\nskip_master_url true\nskip_container_metadata true\n"
                            "skip_namespace_metadata true")
    drivers.append(d)
    rec = feed_until(d, WEB_TAG, lambda r: "pod_id" in r["kubernetes"])
    assert rec["kubernetes"] == {"container_name": "nginx", "namespace_name": "shop", "pod_name": "web-7d4b9",
                                 "pod_id": "pod-uid-web", "pod_ip": "10.1.2.3", "host": NODE}
    assert api.count("/api/v1/namespaces/shop") == 0


def test_api_outage_lets_records_pass_counted_and_warned_once(secrets: Path, api: FakeKubeApi,
                                                             drivers: list[FilterDriver]) -> None:
    port = api.port
    api.stop()
    d = build(secrets, api, "watch false", extras={"kubernetes_fetch_pause_seconds": 0.3})
    drivers.append(d)
    d.feed(WEB_TAG, {"log": "first"})
    wait_until(lambda: d.instance.fetcher.api_down)
    for i in range(50):
        d.feed_batch(WEB_TAG, [(1, {"log": f"line {i}"}), (1, {"log": "b"})])
    assert len(d.filtered_records) == 101
    assert d.filtered_records[-1]["kubernetes"] == {"container_name": "nginx", "namespace_name": "shop",
                                                    "pod_name": "web-7d4b9"}
    assert d.instance.stats()["records_without_metadata"] == 101
    warns = [line for line in d.logs if line.startswith("[warn]") and "Kubernetes API unavailable" in line]
    assert len(warns) == 1
    # the API comes back: metadata follows without a restart
    back = FakeKubeApi(secrets / "ca.crt", secrets / "server.key", port=port)
    back.namespaces = api.namespaces
    back.pods = api.pods
    try:
        rec = feed_until(d, WEB_TAG, lambda r: "pod_id" in r["kubernetes"])
        assert rec["kubernetes"]["namespace_id"] == "ns-uid-shop"
    finally:
        back.stop()


def test_wrong_token_is_an_error_not_a_crash(secrets: Path, api: FakeKubeApi, drivers: list[FilterDriver]) -> None:
    (secrets / "token").write_text("stale")
    d = build(secrets, api, "watch false", extras={"kubernetes_fetch_pause_seconds": 60})
    drivers.append(d)
    d.feed(WEB_TAG, {"log": "x"})
    wait_until(lambda: d.instance.fetcher.api_down)
    assert any("HTTP 401" in line for line in d.logs)
    d.feed(WEB_TAG, {"log": "y"})
    assert d.filtered_records[-1]["log"] == "y"


def test_lookup_from_k8s_field_uses_the_record_names(secrets: Path, api: FakeKubeApi,
                                                     drivers: list[FilterDriver]) -> None:
    d = build(secrets, api, "watch false")
    drivers.append(d)
    given = {"kubernetes": {"namespace_name": "shop", "pod_name": "web-7d4b9", "container_name": "nginx"},
             "docker": {"container_id": DOCKER_ID}, "MESSAGE": "from journald"}

    def attempt() -> dict[str, Any] | None:
        d.feed("journal.containers", dict(given))
        rec = d.filtered_records[-1]
        return rec if "pod_id" in rec["kubernetes"] else None
    rec = wait_until(attempt)
    assert rec["kubernetes"]["labels"]["app"] == "web" and rec["MESSAGE"] == "from journald"


def test_unsupported_and_removed_options() -> None:
    with pytest.raises(ConfigError, match="test_api_adapter"):
        FilterDriver("kubernetes_metadata", "test_api_adapter Foo::Bar", extras={"environ": {}})
    d = FilterDriver("kubernetes_metadata", "de_dot false\nde_dot_separator -", extras={"environ": {}})
    d.feed(WEB_TAG, {"log": "x"})
    assert d.filtered_records[0]["kubernetes"]["pod_name"] == "web-7d4b9"
    with pytest.raises(ConfigError):
        FilterDriver("kubernetes_metadata", "tag_to_kubernetes_name_regexp (?<x>[a-", extras={"environ": {}})
