"""prometheus input over real HTTP: strict exposition, gzip, paths, probes; the companion inputs' options."""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import io
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

from kawa.config.parser import parse_config_string
from kawa.engine.pipeline import Pipeline, PipelineBuilder
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.log import LogSink, Logger
from kawa.metrics import catalog as c
from kawa.plugins.base import Output


def _promtext():
    name = "kawa_tests_promtext"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "metrics" / "promtext.py"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


parse = _promtext().parse


@register("output", "prom_test_out")
class PromTestOutput(Output):
    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.counters = {c.EMIT_RECORDS: 7, c.EMIT_COUNT: 2, c.WRITE_COUNT: 1, c.NUM_ERRORS: 0, c.ROLLBACK_COUNT: 0,
                         c.BUFFER_QUEUE_LENGTH: 3, c.BUFFER_TOTAL_QUEUED_SIZE: 2048,
                         c.DELIVERED_RECORDS: 5, c.CLOUDWATCH_CALLS: {"PutLogEvents": {"ok": 1}}}

    async def process(self, tag: str, events: list[Any]) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return dict(self.counters)


CONF = """
<source>
  @type prometheus
  @id in_prometheus
  bind 127.0.0.1
  port 0
  {extra}
</source>
<source>
  @type prometheus_output_monitor
  @id in_prometheus_output_monitor
  {monitor}
</source>
<source>
  @type prometheus_tail_monitor
</source>
<source>
  @type prometheus_monitor
  interval 10
</source>
<match **>
  @type prom_test_out
  @id out_cwl
</match>
"""


def build(extra: str = "", monitor: str = "", workers: int = 1) -> Pipeline:
    text = CONF.format(extra=extra, monitor=monitor)
    if workers > 1:
        text += f"<system>\nworkers {workers}\n</system>\n"
    extras: dict[str, Any] = {"x": 1}
    pipe = PipelineBuilder(parse_config_string(text), Logger(LogSink(io.StringIO())), extras=extras).build()
    extras["pipeline"] = pipe
    return pipe


def run(pipe: Pipeline, client: Callable[[str], Any]) -> Any:
    async def main() -> Any:
        for inp in pipe.inputs:
            await inp.start()
        try:
            base = f"http://127.0.0.1:{pipe.inputs[0].port}"
            return await asyncio.get_running_loop().run_in_executor(None, client, base)
        finally:
            for inp in pipe.inputs:
                await inp.stop()

    return asyncio.run(main())


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_metrics_parse_strictly_with_fluentd_families() -> None:
    status, headers, body = run(build(), lambda base: get(base + "/metrics"))
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert headers["Content-Encoding"] == "identity"
    fams = parse(body.decode())
    labels = {"plugin_id": "out_cwl", "type": "prom_test_out"}
    assert fams["fluentd_output_status_buffer_queue_length"].value(**labels) == 3
    assert fams["fluentd_output_status_buffer_total_bytes"].value(**labels) == 2048
    assert fams["fluentd_output_status_emit_records"].value(**labels) == 7
    assert fams["fluentd_output_status_retry_count"].value(**labels) == 0
    assert fams["fluentd_status_buffer_queue_length"].value(plugin_category="output", **labels) == 3
    assert fams["kawa_records_total"].value(stage="delivered") == 5
    assert fams["kawa_cloudwatch_calls_total"].value(action="PutLogEvents", result="ok") == 1
    assert fams["kawa_ready"].value() == 1


def test_gzip_custom_paths_and_probes() -> None:
    extra = "metrics_path /prom\naggregated_metrics_path /all\ncontent_encoding gzip"

    def client(base: str) -> list[Any]:
        return [get(base + "/prom"), get(base + "/all"), get(base + "/metrics"), get(base + "/healthz"),
                get(base + "/readyz")]

    prom, aggregated, default_path, healthz, readyz = run(build(extra), client)
    assert prom[1]["Content-Encoding"] == "gzip"
    assert "fluentd_output_status_write_count" in parse(gzip.decompress(prom[2]).decode())
    assert "fluentd_output_status_write_count" in parse(gzip.decompress(aggregated[2]).decode())
    assert default_path[0] == 404
    assert (healthz[0], healthz[2]) == (200, b"ok\n")
    assert (readyz[0], readyz[2]) == (200, b"ok\n")


def test_output_monitor_labels_and_gauge_all_false() -> None:
    monitor = "gauge_all false\n<labels>\n  host ${hostname}\n  team logs\n</labels>"
    _, _, body = run(build(monitor=monitor), lambda base: get(base + "/metrics"))
    fams = parse(body.decode())
    import socket

    emit = fams["fluentd_output_status_emit_count"]
    assert emit.type == "counter"
    assert emit.labelsets() == [{"host": socket.gethostname(), "team": "logs", "plugin_id": "out_cwl",
                                 "type": "prom_test_out"}]
    assert fams["fluentd_output_status_rollback_count"].type == "gauge"    # never a counter in the plugin


def test_multi_worker_adds_worker_id_label() -> None:
    pipe = build(workers=2)
    fams = parse(pipe.inputs[0].registry.render())
    assert fams["fluentd_output_status_write_count"].labelsets()[0]["worker_id"] == "0"


@pytest.mark.parametrize("extra, message", [
    ("<ssl>\n  enable true\n  certificate_path /c.pem\n</ssl>", "TLS is not supported"),
    ("<transport tls>\n  cert_path /c.pem\n</transport>", "TLS is not supported"),
    ("content_encoding br", "br"),
])
def test_unsupported_settings_are_config_errors(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build(extra)
    assert message in str(err.value)


def test_record_accessor_labels_are_refused_like_the_plugin() -> None:
    with pytest.raises(ConfigError) as err:
        build(monitor="<labels>\n  tag $.kubernetes.namespace\n</labels>")
    assert "record accessor syntax is not available in prometheus_output_monitor" in str(err.value)


def test_reference_daemonset_prometheus_conf_builds() -> None:
    conf = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / \
        "fluent__fluentd-kubernetes-daemonset" / "docker-image" / "v1.19" / "debian-cloudwatch" / "conf" / \
        "prometheus.conf"
    if not conf.is_file():
        pytest.skip(f"corpus not found at {conf} (../shared/corpus is absent)")
    text = conf.read_text() + "<match **>\n  @type prom_test_out\n</match>\n"
    pipe = PipelineBuilder(parse_config_string(text), Logger(LogSink(io.StringIO())), extras={"x": 1}).build()
    prom = pipe.inputs[0]
    assert (prom.type_name, prom.bind_address, prom.listen_port, prom.options.metrics_path) == \
        ("prometheus", "0.0.0.0", 24231, "/metrics")
    assert pipe.inputs[1].type_name == "prometheus_output_monitor"
