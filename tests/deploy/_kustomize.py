"""A minimal kustomize renderer for deploy/kubernetes/*, used when `kubectl` is not installed.

Supports only what our layouts use: resources (files), configMapGenerator (files, hash suffix and
name references in Pod volumes/env), namespace, commonLabels and labels (with includeSelectors).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

# Cluster-scoped kinds keep no namespace (the ones our layouts contain, plus the usual few).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "StorageClass",
                  "CustomResourceDefinition", "PersistentVolume"}
WORKLOADS_WITH_SELECTOR = {"Deployment", "DaemonSet", "StatefulSet", "ReplicaSet"}
WORKLOADS = WORKLOADS_WITH_SELECTOR | {"Job"}


def _go_json(value: Any) -> str:
    """json.Marshal's bytes: sorted map keys, no spaces, HTML characters escaped as \\u00XX."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def config_map_hash(name: str, data: dict[str, str]) -> str:
    """A content-hash name suffix in kustomize's style (sha256 of kind/name/data, 10 characters,
    0 1 3 a e read as g h k m t). kubectl's bundled kustomize gives other values for the same
    data, so tests compare generated names without their suffix."""
    digest = hashlib.sha256(_go_json({"data": data, "kind": "ConfigMap", "name": name}).encode()).hexdigest()
    return digest[:10].translate(str.maketrans("013ae", "ghkmt"))


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj.get("kind") in WORKLOADS:
        return obj.get("spec", {}).get("template", {}).get("spec")
    if obj.get("kind") == "Pod":
        return obj.get("spec")
    return None


def _rename_config_maps(spec: dict[str, Any], names: dict[str, str]) -> None:
    for volume in spec.get("volumes") or ():
        cm = volume.get("configMap")
        if cm and cm.get("name") in names:
            cm["name"] = names[cm["name"]]
    for container in [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]:
        for env in container.get("env") or ():
            ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
            if ref and ref.get("name") in names:
                ref["name"] = names[ref["name"]]
        for env_from in container.get("envFrom") or ():
            ref = env_from.get("configMapRef")
            if ref and ref.get("name") in names:
                ref["name"] = names[ref["name"]]


def _add_labels(obj: dict[str, Any], labels: dict[str, str], selectors: bool) -> None:
    obj.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    if not selectors or obj.get("kind") not in WORKLOADS:
        return
    spec = obj.setdefault("spec", {})
    spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    if obj["kind"] in WORKLOADS_WITH_SELECTOR:
        spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(labels)


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize <directory>` would print (generated ConfigMaps first)."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objects: list[dict[str, Any]] = []
    for resource in k.get("resources") or ():
        objects.extend(o for o in yaml.safe_load_all((directory / resource).read_text()) if o)
    names: dict[str, str] = {}
    generated = []
    no_hash = bool((k.get("generatorOptions") or {}).get("disableNameSuffixHash"))
    for gen in k.get("configMapGenerator") or ():
        data: dict[str, str] = {}
        for entry in gen.get("files") or ():
            key, _, path = entry.rpartition("=")
            data[key or Path(path).name] = (directory / path).read_text()
        for literal in gen.get("literals") or ():
            key, _, value = literal.partition("=")
            data[key] = value
        name = gen["name"] if no_hash else f"{gen['name']}-{config_map_hash(gen['name'], data)}"
        names[gen["name"]] = name
        generated.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
    objects = generated + objects
    for obj in objects:
        spec = _pod_spec(obj)
        if spec is not None:
            _rename_config_maps(spec, names)
        if k.get("namespace") and obj.get("kind") not in CLUSTER_SCOPED:
            obj.setdefault("metadata", {})["namespace"] = k["namespace"]
        if k.get("commonLabels"):
            _add_labels(obj, k["commonLabels"], True)
        for group in k.get("labels") or ():
            _add_labels(obj, group.get("pairs") or {}, bool(group.get("includeSelectors")))
    return objects
