"""Pod and namespace metadata in Fluentd's kubernetes_metadata shape, kept in bounded caches.

Parsing follows fluent-plugin-kubernetes_metadata_filter's parse_pod_metadata /
parse_namespace_metadata (key names, order, which keys are left out when empty).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from kawa.plugins.filters._kubernetes.cache import TtlLru

# A pod or namespace the API answered 404 for; kept briefly so a deleted pod's late lines do not
# send one GET per batch.
NOT_FOUND: dict[str, Any] = {}
NEGATIVE_TTL_SECONDS = 30.0
# The plugin strips the runtime scheme from containerStatuses[].containerID ("containerd://<id>").
_RUNTIME_SCHEME = re.compile(r"^[-_a-zA-Z0-9]+://")


@dataclass
class ParseSettings:
    skip_labels: bool = False
    skip_pod_labels: bool = False
    skip_namespace_labels: bool = False
    skip_container_metadata: bool = False
    skip_master_url: bool = False
    include_ownerrefs_metadata: bool = False
    annotation_match: list[re.Pattern[str]] = field(default_factory=list)
    master_url: str | None = None


def _match_annotations(settings: ParseSettings, annotations: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not annotations:
        return out
    for regexp in settings.annotation_match:
        for key, value in annotations.items():
            if regexp.search(key):
                out[key] = value
    return out


def parse_pod(obj: dict[str, Any], settings: ParseSettings) -> dict[str, Any]:
    """A Pod object -> the plugin's pod metadata (with a `containers` map the filter consumes)."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    containers: dict[str, dict[str, Any]] = {}
    for cs in status.get("containerStatuses") or ():
        name = cs.get("name")
        if settings.skip_container_metadata:
            containers[name] = {"name": name}
        else:
            containers[name] = {"name": name, "image": cs.get("image"), "image_id": cs.get("imageID"),
                                "containerID": _RUNTIME_SCHEME.sub("", cs.get("containerID") or "", count=1)}
    out: dict[str, Any] = {
        "namespace_name": meta.get("namespace"),
        "pod_id": meta.get("uid"),
        "pod_name": meta.get("name"),
        "pod_ip": status.get("podIP"),
        "containers": containers,
        "host": spec.get("nodeName"),
    }
    if settings.include_ownerrefs_metadata and meta.get("ownerReferences"):
        out["ownerrefs"] = [{"kind": o.get("kind"), "name": o.get("name")} for o in meta["ownerReferences"]]
    out = {k: v for k, v in out.items() if v is not None}
    if not (settings.skip_labels or settings.skip_pod_labels) and meta.get("labels"):
        out["labels"] = dict(meta["labels"])
    annotations = _match_annotations(settings, meta.get("annotations"))
    if annotations:
        out["annotations"] = annotations
    if not settings.skip_master_url and settings.master_url is not None:
        out["master_url"] = settings.master_url
    return out


def parse_namespace(obj: dict[str, Any], settings: ParseSettings) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    out: dict[str, Any] = {"namespace_id": meta.get("uid"), "creation_timestamp": meta.get("creationTimestamp")}
    if not (settings.skip_labels or settings.skip_namespace_labels) and meta.get("labels"):
        out["namespace_labels"] = dict(meta["labels"])
    annotations = _match_annotations(settings, meta.get("annotations"))
    if annotations:
        out["namespace_annotations"] = annotations
    return out


class MetadataStore:
    """Parsed pods keyed by (namespace, name) and namespaces keyed by name, each LRU + TTL bounded.

    `generation` grows on every change so the filter can cache per-tag results cheaply.
    """

    def __init__(self, settings: ParseSettings, cache_size: int, cache_ttl: float | None,
                 clock: Callable[[], float] | None = None) -> None:
        self.settings = settings
        kw = {"clock": clock} if clock else {}
        self.pods: TtlLru[tuple[str, str], dict[str, Any]] = TtlLru(cache_size, cache_ttl, **kw)
        self.namespaces: TtlLru[str, dict[str, Any]] = TtlLru(cache_size, cache_ttl, **kw)
        self.generation = 0
        self._lock = threading.Lock()

    def _bump(self) -> None:
        with self._lock:
            self.generation += 1

    def put_pod(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        self.pods.put((meta.get("namespace", ""), meta.get("name", "")), parse_pod(obj, self.settings))
        self._bump()

    def put_namespace(self, obj: dict[str, Any]) -> None:
        name = (obj.get("metadata") or {}).get("name", "")
        self.namespaces.put(name, parse_namespace(obj, self.settings))
        self._bump()

    def pod_missing(self, namespace: str, name: str) -> None:
        self.pods.put((namespace, name), NOT_FOUND, ttl=NEGATIVE_TTL_SECONDS)
        self._bump()

    def namespace_missing(self, namespace: str) -> None:
        self.namespaces.put(namespace, NOT_FOUND, ttl=NEGATIVE_TTL_SECONDS)
        self._bump()

    def watched_pod(self, obj: dict[str, Any], node_name: str | None) -> bool:
        """A watch ADDED/MODIFIED notice: update a cached pod, or add one that runs on our node
        (the plugin's rule, which keeps a cluster-wide watch from filling the cache). True if stored."""
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        on_our_node = node_name is not None and (obj.get("spec") or {}).get("nodeName") == node_name
        if self.pods.get(key) is None and not on_our_node:
            return False
        self.put_pod(obj)
        return True

    def watched_namespace(self, obj: dict[str, Any]) -> None:
        self.put_namespace(obj)
