"""kubernetes_metadata filter against a local HTTPS Kubernetes API (list, watch, get) on 127.0.0.1.

The fake API speaks real Pod/Namespace/List/WatchEvent/Status JSON and checks the bearer token.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import FilterDriver
from kawa.testing.kube_api import FakeKubeApi, namespace, pod, write_service_account

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


# ---- fixtures -------------------------------------------------------------------------------------

@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    sa = tmp_path / "serviceaccount"
    write_service_account(sa, TOKEN)      # ca.crt + token; the server key lands beside the directory
    return sa


@pytest.fixture
def api(secrets: Path) -> Iterator[FakeKubeApi]:
    server = FakeKubeApi(secrets / "ca.crt", secrets.parent / "apiserver.key", token=TOKEN)
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
    back = FakeKubeApi(secrets / "ca.crt", secrets.parent / "apiserver.key", token=TOKEN, port=port)
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
