"""A local HTTPS Kubernetes API (pods + namespaces: list, watch, get) on 127.0.0.1 for e2e tests and
benches; real Pod/Namespace/List/WatchEvent/Status JSON, bearer token checked, self-signed cert."""

# Extracted (and trimmed) from tests/filters/test_kubernetes_metadata.py so a real `kawa` process
# (e2e tests, bench/bench_k8s_memory.py) can point its kubernetes_metadata filter at it.

from __future__ import annotations

import copy
import json
import queue
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kawa.testing.tls import write_self_signed

TOKEN = "kawa-test-token"


def write_service_account(directory: Path, token: str = TOKEN) -> tuple[Path, Path]:
    """A service-account directory (ca.crt, token) as the kubelet mounts it, plus the server key.

    Returns (ca.crt, server.key); ca.crt is the server's self-signed certificate for 127.0.0.1."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "ca.crt", directory.parent / "apiserver.key"
    write_self_signed(cert, key, ("127.0.0.1",))
    (directory / "token").write_text(token + "\n")
    return cert, key


def pod(namespace: str, name: str, node: str, uid: str, labels: dict[str, str],
        containers: list[tuple[str, str]], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A Pod as the API returns it; containers are (name, 64-hex container id)."""
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


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class FakeKubeApi:
    """/api/v1/pods, /api/v1/namespaces (list + watch), /api/v1/namespaces/<ns>[/pods/<name>] (get)."""

    def __init__(self, cert: Path, key: Path, token: str = TOKEN, port: int = 0) -> None:
        self.token = token
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
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        for _, _, q in list(self.watchers):
            q.put(None)

    def env(self) -> dict[str, str]:
        """The variables the kubelet sets that make the filter find this API server."""
        return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.port)}

    def watching(self, resource: str) -> bool:
        """A watch of `resource` is open (so its LIST has been answered and stored)."""
        return any(res == resource for res, _, _ in list(self.watchers))

    def count(self, path: str) -> int:
        """How many requests went to `path` (e.g. how often a pod was fetched)."""
        return sum(1 for p, _ in self.requests if p == path)

    def relabel_pod(self, ns: str, name: str, labels: dict[str, str]) -> None:
        """Change a pod's labels and push MODIFIED to the watchers, as a `kubectl label` would."""
        obj = copy.deepcopy(self.pods[(ns, name)])
        obj["metadata"]["labels"] = labels
        self.add_pod(obj, notify=True)

    def add_pod(self, obj: dict[str, Any], notify: bool = False) -> None:
        with self.lock:
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
            kind = "MODIFIED" if key in self.pods else "ADDED"
            self.pods[key] = obj
        if notify:
            for res, node, q in list(self.watchers):
                if res == "pods" and (node is None or obj["spec"]["nodeName"] == node):
                    q.put({"type": kind, "object": obj})

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.requests.append((parts.path, query))
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(h, 401, _status(401, "Unauthorized", "Unauthorized"))
        segs = parts.path.strip("/").split("/")
        if segs[:2] != ["api", "v1"]:
            return self._send(h, 404, _status(404, "NotFound", "the server could not find the requested resource"))
        segs = segs[2:]
        selector = query.get("fieldSelector", "")
        node = selector.split("=", 1)[1] if selector.startswith("spec.nodeName=") else None
        if segs in (["pods"], ["namespaces"]):
            if query.get("watch") == "true":
                return self._watch(h, segs[0], node)
            with self.lock:
                items = list(self.pods.values()) if segs == ["pods"] else list(self.namespaces.values())
                version = str(self.version)
            if node is not None:
                items = [p for p in items if p["spec"]["nodeName"] == node]
            kind = "PodList" if segs == ["pods"] else "NamespaceList"
            return self._send(h, 200, {"kind": kind, "apiVersion": "v1",
                                       "metadata": {"resourceVersion": version}, "items": items})
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
