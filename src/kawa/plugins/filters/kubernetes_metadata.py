"""`@type kubernetes_metadata`: fluent-plugin-kubernetes_metadata_filter's enrichment of container logs.

Adds `kubernetes.{pod_name,namespace_name,pod_id,labels,host,...}` and `docker.container_id` from
the tag (/var/log/containers/<pod>_<ns>_<container>-<id>.log) and a watch-backed API cache.
"""

from __future__ import annotations

import asyncio

import os
import re
import threading
import time
from typing import Any, Mapping

from kawa.config.schema import Options, option
from kawa.engine.registry import register
from kawa.errors import ConfigError, Problem
from kawa.event import Event, Record
from kawa.plugins.base import Filter, PluginContext
from kawa.plugins.filters._kubernetes.api import ApiClient, ApiSettings
from kawa.plugins.filters._kubernetes.store import NOT_FOUND, MetadataStore, ParseSettings
from kawa.plugins.filters._kubernetes.watch import Fetcher, Stats, Watcher
from kawa.rubyregex import compile_ruby_regexp

# The plugin's REGEX_VAR_LOG_PODS / REGEX_VAR_LOG_CONTAINERS (filter_kubernetes_metadata.rb).
_POD_NAME = r"(?<pod_name>[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)"
REGEX_VAR_LOG_PODS = (r"(var\.log\.pods)\.(?<namespace>[^_]+)_" + _POD_NAME +
                      r"_(?<pod_uuid>[a-z0-9-]*)\.(?<container_name>.+)\..*\.log$")
REGEX_VAR_LOG_CONTAINERS = (r"(var\.log\.containers)\." + _POD_NAME +
                            r"_(?<namespace>[^_]+)_(?<container_name>.+)-(?<docker_id>[a-z0-9]{64})\.log$")
DEFAULT_TAG_REGEXP = f"({REGEX_VAR_LOG_PODS}|{REGEX_VAR_LOG_CONTAINERS})"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_GROUP_NAME = re.compile(r"(?<!\\)\(\?<([A-Za-z_]\w*)>")
_REMOVED_IN_3 = "removed in fluent-plugin-kubernetes_metadata_filter 3.0; Fluentd 1.18 images ignore it"
# Warn about records passing without API metadata at most this often (seconds).
UNAVAILABLE_WARN_INTERVAL = 30.0
# The per-tag memo of parsed tags / built metadata is dropped when it grows past this.
MEMO_LIMIT = 4096
# A memoized per-tag result is re-checked against the caches after this long, so TTL expiry and
# refetches apply even when nothing else changes the store (seconds).
MEMO_MAX_AGE = 5.0

TagInfo = tuple[str, str, str, str | None, str | None]   # namespace, pod, container, cache key, docker id


def compile_tag_regexp(source: str) -> tuple[re.Pattern[str], dict[str, tuple[str, ...]]]:
    """Compile a Ruby regexp that may reuse a group name in alternatives (the default does; Python
    forbids it): the k-th repeat becomes `name__k`, and the returned map lists each name's variants."""
    seen: dict[str, int] = {}

    def rename(m: re.Match[str]) -> str:
        name = m.group(1)
        seen[name] = seen.get(name, 0) + 1
        return m.group(0) if seen[name] == 1 else f"(?<{name}__{seen[name]}>"

    pattern = compile_ruby_regexp(_GROUP_NAME.sub(rename, source))
    variants = {name: (name, *(f"{name}__{k}" for k in range(2, n + 1))) for name, n in seen.items()}
    return pattern, variants


@register("filter", "kubernetes_metadata")
class KubernetesMetadataFilter(Filter):
    class Options(Options):
        kubernetes_url = option(None, doc="API server URL; default https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api")
        cache_size = option(1000, "integer", doc="Max pods (and namespaces) kept in memory (LRU)")
        cache_ttl = option(3600, "integer", doc="Seconds an entry lives; <= 0: no expiry")
        ignore_nil = option(None, no_effect="nil API answers are never cached by kawa")
        watch = option(True, "bool", doc="List+watch pods and namespaces instead of only GETting misses")
        apiVersion = option("v1", doc="Core API version")
        client_cert = option(None, doc="Client certificate (PEM) for mutual TLS")
        client_key = option(None, doc="Client key (PEM) for mutual TLS")
        ca_file = option(None, doc="CA bundle; default: the service account's ca.crt")
        verify_ssl = option(True, "bool")
        open_timeout = option(3, "integer", doc="Connect timeout, seconds")
        read_timeout = option(10, "integer", doc="Read timeout of GET/LIST, seconds")
        tag_to_kubernetes_name_regexp = option(DEFAULT_TAG_REGEXP, doc="Named groups namespace, pod_name, container_name, pod_uuid|docker_id")
        bearer_token_file = option(None, doc="Token file; default: the service account's token (re-read on every request)")
        secret_dir = option(SERVICE_ACCOUNT_DIR)
        annotation_match = option([], "array", doc="Regexps of annotation keys to copy")
        stats_interval = option(30, "integer", doc="Seconds between stats info lines; <= 0 disables")
        allow_orphans = option(True, "bool")
        orphaned_namespace_name = option(".orphaned")
        orphaned_namespace_id = option("orphaned")
        lookup_from_k8s_field = option(True, "bool", doc="Use record's kubernetes/docker fields when present")
        ssl_partial_chain = option(False, "bool")
        skip_labels = option(False, "bool")
        skip_pod_labels = option(False, "bool")
        skip_namespace_labels = option(False, "bool")
        skip_container_metadata = option(False, "bool")
        skip_master_url = option(False, "bool")
        skip_namespace_metadata = option(False, "bool")
        include_ownerrefs_metadata = option(False, "bool")
        test_api_adapter = option(None, doc="Ruby test hook; not supported")
        watch_retry_interval = option(1, "integer")
        # kawa's own: inputs start after filters, so waiting here means lines already on the node
        # at start-up (every DaemonSet rollout) get full metadata; an API outage only delays start.
        initial_sync_timeout = option(10, "time", doc=(
            "How long start-up waits for the first pod/namespace LIST before letting records through "
            "(with the names the log file name gives)."))
        watch_retry_exponential_backoff_base = option(2, "integer")
        watch_retry_max_times = option(10, "integer", doc="After this many failures kawa logs errors (it keeps retrying)")
        de_dot = option(True, "bool", no_effect=_REMOVED_IN_3)
        de_dot_separator = option("_", no_effect=_REMOVED_IN_3)
        de_slash = option(False, "bool", no_effect=_REMOVED_IN_3)
        de_slash_separator = option("__", no_effect=_REMOVED_IN_3)
        use_journal = option(None, no_effect=_REMOVED_IN_3)
        merge_json_log = option(None, no_effect=_REMOVED_IN_3 + "; use a parser filter")
        preserve_json_log = option(None, no_effect=_REMOVED_IN_3 + "; use a parser filter")

    def __init__(self, options: Options, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        o: Any = options
        self.o = o
        environ: Mapping[str, str] = ctx.extras.get("environ", os.environ)
        problems: list[Problem] = []
        if o.test_api_adapter:
            problems.append(Problem("test_api_adapter is a Ruby test hook; kawa does not support it",
                                    None, (), "test_api_adapter"))
        try:
            self.tag_regexp, self.group_variants = compile_tag_regexp(o.tag_to_kubernetes_name_regexp)
        except ValueError as exc:
            problems.append(Problem(str(exc), None, (), "tag_to_kubernetes_name_regexp"))
        annotation_res = []
        for source in o.annotation_match:
            try:
                annotation_res.append(compile_ruby_regexp(str(source)))
            except ValueError as exc:   # the plugin logs and skips a bad one
                self.log.error(f"Error: invalid regular expression in annotation_match: {exc}")
        if problems:
            raise ConfigError(problems)
        if o.cache_ttl <= 0:
            self.log.info("Setting the cache TTL to :none because it was <= 0")
        self.url = o.kubernetes_url or self._url_from_env(environ)
        self.node_name = (environ.get("K8S_NODE_NAME") or "").strip() or None
        ca_file, token_file = o.ca_file, o.bearer_token_file
        if os.path.isdir(o.secret_dir):
            ca = os.path.join(o.secret_dir, "ca.crt")
            token = os.path.join(o.secret_dir, "token")
            ca_file = ca_file or (ca if os.path.exists(ca) else None)
            token_file = token_file or (token if os.path.exists(token) else None)
        settings = ParseSettings(o.skip_labels, o.skip_pod_labels, o.skip_namespace_labels,
                                 o.skip_container_metadata, o.skip_master_url, o.include_ownerrefs_metadata,
                                 annotation_res, self.url)
        self.store = MetadataStore(settings, o.cache_size, o.cache_ttl if o.cache_ttl > 0 else None)
        self.stats_counters = Stats()
        self.client: ApiClient | None = None
        if self.url:
            try:
                self.client = ApiClient(ApiSettings(self.url, o.apiVersion, ca_file, o.verify_ssl,
                                                    o.ssl_partial_chain, o.client_cert, o.client_key,
                                                    token_file, float(o.open_timeout), float(o.read_timeout)))
            except (ValueError, OSError) as exc:
                raise ConfigError([Problem(f"Invalid Kubernetes API {o.apiVersion} endpoint {self.url}: {exc}",
                                           None, (), "kubernetes_url")]) from None
        self._stop = threading.Event()
        self.fetcher: Fetcher | None = None
        self.watchers: list[Watcher] = []
        self._tag_memo: dict[str, TagInfo | None] = {}
        self._meta_memo: dict[TagInfo, tuple[int, dict[str, Any], list[str], float]] = {}
        self._last_stats = time.monotonic()
        self._last_unavailable_warn = 0.0
        self.records_without_metadata = 0
        self._unwarned = 0

    @staticmethod
    def _url_from_env(environ: Mapping[str, str]) -> str | None:
        host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            return None
        if ":" in host:                 # IPv6 literal needs brackets
            host = f"[{host}]"
        return f"https://{host}:{port}/api"

    async def start(self) -> None:
        if self.client is None or self.fetcher is not None or self.ctx.dry_run:
            return
        self._stop.clear()
        self.fetcher = Fetcher(self.client, self.store, self.stats_counters, self.log, self._stop,
                              pause_seconds=self.ctx.extras.get("kubernetes_fetch_pause_seconds"))
        self.fetcher.start()
        if not self.o.watch:
            return
        if self.node_name is None:
            self.log.warn("!! The environment variable 'K8S_NODE_NAME' is not set to the node name which "
                          "can affect the API server and watch efficiency !!")
        retry = dict(retry_interval=float(self.o.watch_retry_interval),
                     backoff_base=float(self.o.watch_retry_exponential_backoff_base),
                     max_retries=self.o.watch_retry_max_times)
        selector = f"spec.nodeName={self.node_name}" if self.node_name else None
        self.watchers.append(Watcher("pods", self.client, self.store, self.stats_counters, self.log, self._stop,
                                     field_selector=selector, node_name=self.node_name, **retry))
        if not self.o.skip_namespace_metadata:
            self.watchers.append(Watcher("namespaces", self.client, self.store, self.stats_counters, self.log,
                                         self._stop, field_selector=None, node_name=None, **retry))
        for w in self.watchers:
            w.start()
        await asyncio.to_thread(self._wait_synced, float(self.o.initial_sync_timeout))

    def _wait_synced(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for w in self.watchers:
            if not w.synced.wait(max(0.0, deadline - time.monotonic())):
                self.log.warn("kubernetes API not listed yet; records pass with the names from the tag "
                              "until it answers", resource=w.kind, waited_seconds=timeout)
                return

    async def stop(self) -> None:
        self._stop.set()
        if self.fetcher is not None:
            self.fetcher.stop()
        if self.client is not None:
            self.client.close()
        # threads are daemons blocked at most on a socket we just shut down; do not wait on the loop
        self.fetcher = None
        self.watchers = []

    # ---- per batch -------------------------------------------------------------------------

    def _tag_info(self, tag: str) -> TagInfo | None:
        try:
            return self._tag_memo[tag]
        except KeyError:
            pass
        m = self.tag_regexp.search(tag)
        info: TagInfo | None = None
        if m is not None:
            g = {name: next((m.group(v) for v in variants if m.group(v) is not None), None)
                 for name, variants in self.group_variants.items()}
            cache_key = g.get("pod_uuid") or g.get("docker_id")
            info = (g.get("namespace") or "", g.get("pod_name") or "", g.get("container_name") or "",
                    cache_key, g.get("docker_id"))
        if len(self._tag_memo) >= MEMO_LIMIT:
            self._tag_memo.clear()
        self._tag_memo[tag] = info
        return info

    def _resolve(self, namespace: str, pod: str, cache_key: str | None) -> dict[str, Any] | None:
        """The plugin's get_pod_metadata result, or None while unknown (fetch pending, API down)."""
        skip_ns = self.o.skip_namespace_metadata
        pm = self.store.pods.get((namespace, pod))
        nm = None if skip_ns else self.store.namespaces.get(namespace)
        if pm is None and self.fetcher is not None:
            self.fetcher.request(("pod", namespace, pod))
        if not skip_ns and nm is None and self.fetcher is not None:
            self.fetcher.request(("namespace", namespace))
        if pm is None or (not skip_ns and nm is None):
            return None
        orphan = ({"orphaned_namespace": namespace, "namespace_name": self.o.orphaned_namespace_name,
                   "namespace_id": self.o.orphaned_namespace_id} if self.o.allow_orphans else {})
        if pm is not NOT_FOUND:
            if skip_ns:
                out = dict(pm)
            elif nm is not NOT_FOUND:
                out = {**pm, **nm}
            else:
                self.stats_counters.bump("id_cache_namespace_not_found_pod")
                return orphan
        elif skip_ns:
            return {}
        elif nm is not NOT_FOUND:
            self.stats_counters.bump("id_cache_pod_not_found_namespace")
            out = {"pod_id": cache_key, **nm}      # deleted pod in a live namespace
        else:
            self.stats_counters.bump("id_cache_orphaned_record")
            return orphan
        out.pop("creation_timestamp", None)
        return {k: v for k, v in out.items() if v is not None}

    def _metadata(self, info: TagInfo) -> tuple[dict[str, Any], list[str], bool]:
        """(metadata, keys of nested dicts to copy per record, complete?) for one tag/record key."""
        memo = self._meta_memo.get(info)
        generation = self.store.generation
        now = time.monotonic()
        if memo is not None and memo[0] == generation and now - memo[3] < MEMO_MAX_AGE:
            return memo[1], memo[2], True
        namespace, pod, container, cache_key, docker_id = info
        kube: dict[str, Any] = {"container_name": container, "namespace_name": namespace, "pod_name": pod}
        complete = True
        if self.url:
            pm = self._resolve(namespace, pod, cache_key)
            if pm is None:
                complete = False
            else:
                c = (pm.get("containers") or {}).get(container)
                if c is not None and not self.o.skip_container_metadata:
                    kube["container_image"] = c.get("image")
                    if c.get("image_id"):
                        kube["container_image_id"] = c["image_id"]
                    if c.get("containerID"):
                        docker_id = c["containerID"]
                kube.update(pm)
                kube.pop("containers", None)
        meta: dict[str, Any] = {"docker": {"container_id": docker_id}} if docker_id else {}
        meta["kubernetes"] = kube
        nested = [k for k, v in kube.items() if isinstance(v, (dict, list))]
        if complete:
            if len(self._meta_memo) >= MEMO_LIMIT:
                self._meta_memo.clear()
            self._meta_memo[info] = (generation, meta, nested, now)
        return meta, nested, complete

    def filter_batch(self, tag: str, events: list[Event]) -> list[Event]:
        if not events:
            return events
        if self.o.stats_interval > 0:
            self._maybe_dump_stats()
        info = self._tag_info(tag)
        tag_meta = self._metadata(info) if info is not None else None
        if tag_meta is not None and not tag_meta[2]:
            self._count_unavailable(len(events))
        by_field = self.o.lookup_from_k8s_field
        if tag_meta is None and not by_field:
            return events
        out: list[Event] = []
        append = out.append
        for t, r in events:
            if by_field and "kubernetes" in r and "docker" in r:
                append((t, self._merge_by_field(r, tag_meta)))
            elif tag_meta is None:
                append((t, r))
            else:
                append((t, _merged(r, tag_meta[0], tag_meta[1])))
        return out

    def _merge_by_field(self, record: Record, tag_meta: tuple[dict[str, Any], list[str], bool] | None) -> Record:
        """lookup_from_k8s_field: a record that already names its pod (e.g. from journald or a
        forwarder) is looked up by those fields instead of the tag."""
        kube, docker = record["kubernetes"], record["docker"]
        if (isinstance(kube, dict) and isinstance(docker, dict) and "namespace_name" in kube and "pod_name" in kube
                and "container_name" in kube and "container_id" in docker):
            cid = docker["container_id"]
            tag_meta = self._metadata((str(kube["namespace_name"]), str(kube["pod_name"]),
                                       str(kube["container_name"]), cid, cid))
        if tag_meta is None:
            return record
        return _merged(record, tag_meta[0], tag_meta[1])

    def _count_unavailable(self, n: int) -> None:
        self.records_without_metadata += n
        self._unwarned += n
        now = time.monotonic()
        fetcher = self.fetcher
        if fetcher is None or not fetcher.api_down or now - self._last_unavailable_warn < UNAVAILABLE_WARN_INTERVAL:
            return
        self._last_unavailable_warn = now
        self.log.warn(f"Kubernetes API unavailable; {self._unwarned} records passed without pod metadata",
                      error=fetcher.last_error or "")
        self._unwarned = 0

    def _maybe_dump_stats(self) -> None:
        now = time.monotonic()
        if now - self._last_stats < self.o.stats_interval:
            return
        self._last_stats = now
        counts = self.stats()
        self.log.info("stats - " + ", ".join(f"{k}: {v}" for k, v in counts.items()))

    def stats(self) -> dict[str, Any]:
        return {**self.stats_counters.snapshot(), "pod_cache_size": len(self.store.pods),
                "namespace_cache_size": len(self.store.namespaces),
                "records_without_metadata": self.records_without_metadata}


def _merged(record: Record, meta: dict[str, Any], nested: list[str]) -> Record:
    """record.merge(metadata) with fresh inner dicts, so a later filter editing one record's
    `kubernetes` (or its labels) cannot change its neighbours' (the plugin dups them too)."""
    kube = meta["kubernetes"].copy()
    for key in nested:
        kube[key] = kube[key].copy()
    docker = meta.get("docker")
    if docker is None:
        return {**record, "kubernetes": kube}
    return {**record, "docker": docker.copy(), "kubernetes": kube}
