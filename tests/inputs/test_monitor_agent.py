"""monitor_agent over real HTTP: Fluentd's JSON/LTSV shapes and queries, periodic events, probes."""

from __future__ import annotations

import asyncio
import io
import json
import urllib.error
import urllib.request
from typing import Any, Callable

import pytest

from kawa.config.parser import parse_config_string
from kawa.engine.pipeline import Pipeline, PipelineBuilder
from kawa.engine.registry import register
from kawa.log import LogSink, Logger
from kawa.metrics import catalog as c, end_drain
from kawa.metrics.health import Health
from kawa.plugins.base import Output


@register("output", "metrics_test_out")
class MetricsTestOutput(Output):
    """Records what it gets; exposes Fluentd-like buffered output stats the test sets."""

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.counters: dict[str, Any] = {
            c.EMIT_RECORDS: 0, c.EMIT_COUNT: 0, c.WRITE_COUNT: 0, c.NUM_ERRORS: 0, c.ROLLBACK_COUNT: 0,
            c.BUFFER_STAGE_LENGTH: 1, c.BUFFER_STAGE_BYTE_SIZE: 10, c.BUFFER_QUEUE_LENGTH: 0,
            c.BUFFER_QUEUE_BYTE_SIZE: 0, c.BUFFER_AVAILABLE_SPACE_RATIOS: 100.0, c.BUFFER_TOTAL_QUEUED_SIZE: 10,
        }

    async def process(self, tag: str, events: list[Any]) -> None:
        self.events.extend((tag, r) for _, r in events)
        self.counters[c.EMIT_RECORDS] += len(events)
        self.counters[c.EMIT_COUNT] += 1

    def stats(self) -> dict[str, Any]:
        return dict(self.counters)


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


MONITOR = """
<source>
  @type monitor_agent
  @id monitor
  bind 127.0.0.1
  port 0
  {extra}
</source>
<filter app.**>
  @type grep
  @id app_grep
  <exclude>
    key drop
    pattern /yes/
  </exclude>
</filter>
<match app.**>
  @type metrics_test_out
  @id out_app
</match>
<match monitor.**>
  @type metrics_test_out
  @id out_monitor
</match>
"""


def build(extra: str = "", health: Health | None = None, worker_id: int = 0) -> Pipeline:
    extras: dict[str, Any] = {"health": health or Health(Clock()), "cli_options": {"config_path": "/etc/f.conf"}}
    root = parse_config_string(MONITOR.format(extra=extra))
    pipe = PipelineBuilder(root, Logger(LogSink(io.StringIO())), extras=extras, worker_id=worker_id).build()
    extras["pipeline"] = pipe
    return pipe


def run(pipe: Pipeline, client: Callable[[str], Any], during: Callable[[], Any] | None = None) -> Any:
    """Starts the pipeline's inputs, runs client(base_url) in a thread, stops them."""
    async def main() -> Any:
        for inp in pipe.inputs:
            await inp.start()
        try:
            base = f"http://127.0.0.1:{pipe.inputs[0].port}"
            if during is not None:
                await during()
            return await asyncio.get_running_loop().run_in_executor(None, client, base)
        finally:
            for inp in pipe.inputs:
                await inp.stop()

    return asyncio.run(main())


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


@pytest.fixture(autouse=True)
def _no_global_drain() -> Any:
    yield
    end_drain()


def test_plugins_json_has_fluentds_shape_and_order() -> None:
    status, ctype, body = run(build("include_config true\ninclude_retry true"),
                              lambda base: get(base + "/api/plugins.json"))
    assert (status, ctype) == (200, "application/json")
    plugins = json.loads(body)["plugins"]
    assert [(p["plugin_id"], p["plugin_category"]) for p in plugins] == [
        ("monitor", "input"), ("out_app", "output"), ("out_monitor", "output"), ("app_grep", "filter")]
    assert plugins[0] == {
        "plugin_id": "monitor", "plugin_category": "input", "type": "monitor_agent",
        "config": {"@type": "monitor_agent", "@id": "monitor", "bind": "127.0.0.1", "port": "0",
                   "include_config": "true", "include_retry": "true"},
        "output_plugin": False, "retry_count": None, "emit_records": 0, "emit_size": 0}
    out = plugins[1]
    assert list(out) == [
        "plugin_id", "plugin_category", "type", "config", "output_plugin", "buffer_queue_length",
        "buffer_timekeys", "buffer_total_queued_size", "retry_count", "emit_records", "emit_size",
        "emit_count", "write_count", "write_secondary_count", "rollback_count", "slow_flush_count",
        "flush_time_count", "drop_oldest_chunk_count", "buffer_stage_length", "buffer_stage_byte_size",
        "buffer_queue_byte_size", "buffer_available_buffer_space_ratios",
        "retry"]
    assert out["buffer_timekeys"] == [] and out["buffer_total_queued_size"] == 10
    assert out["retry"] == {} and out["config"] == {"@type": "metrics_test_out", "@id": "out_app"}
    assert plugins[3]["retry_count"] is None and "retry" not in plugins[3]


def test_without_include_options_config_and_retry_are_absent_whatever_the_query() -> None:
    _, _, body = run(build(), lambda base: get(base + "/api/plugins.json?with_config=yes&with_retry=yes"))
    for plugin in json.loads(body)["plugins"]:
        assert "config" not in plugin and "retry" not in plugin


def test_plugins_ltsv_lines_match_fluentd() -> None:
    status, ctype, body = run(build(), lambda base: get(base + "/api/plugins"))
    assert (status, ctype) == (200, "text/plain")
    lines = body.split("\n")
    assert lines[0] == ("plugin_id:monitor\tplugin_category:input\ttype:monitor_agent\toutput_plugin:false\t"
                        "retry_count:\temit_records:0\temit_size:0")
    assert lines[1].startswith("plugin_id:out_app\tplugin_category:output\ttype:metrics_test_out\t"
                               "output_plugin:true\tbuffer_queue_length:0\tbuffer_timekeys:\t")
    assert lines[3] == ("plugin_id:app_grep\tplugin_category:filter\ttype:grep\toutput_plugin:false\t"
                        "retry_count:\temit_records:0\temit_size:0")


def test_queries_by_id_type_and_tag() -> None:
    def client(base: str) -> dict[str, list[str]]:
        out = {}
        for query in ("@id=app_grep", "id=out_monitor", "id=missing", "@type=metrics_test_out", "type=grep",
                      "tag=app.web", "tag=monitor.x", "tag=nothing"):
            out[query] = [p["plugin_id"] for p in json.loads(get(f"{base}/api/plugins.json?{query}")[2])["plugins"]]
        return out

    found = run(build(), client)
    assert found == {"@id=app_grep": ["app_grep"], "id=out_monitor": ["out_monitor"], "id=missing": [],
                     "@type=metrics_test_out": ["out_app", "out_monitor"], "type=grep": ["app_grep"],
                     "tag=app.web": ["out_app"], "tag=monitor.x": ["out_monitor"], "tag=nothing": []}


def test_not_found_and_config_endpoints() -> None:
    def client(base: str) -> list[Any]:
        return [get(base + "/api/plugins.json/not_found"), get(base + "/api/config.json"), get(base + "/api/config")]

    missing, config_json, config_ltsv = run(build(), client)
    assert missing == (404, "application/json", '{"message":"Not found"}')
    config = json.loads(config_json[2])
    assert set(config) == {"pid", "ppid", "version", "config_path"} and config["config_path"] == "/etc/f.conf"
    assert config_ltsv[2].startswith(f"pid:{config['pid']}\tppid:")


def test_tag_emits_every_plugin_as_events() -> None:
    pipe = build("tag monitor.metrics\nemit_interval 0.05")
    sink = pipe.outputs[1]
    assert sink.plugin_id == "out_monitor"

    async def wait_for_emit() -> None:
        for _ in range(500):
            if len(sink.events) >= 8:
                return
            await asyncio.sleep(0.01)

    run(pipe, lambda base: None, during=wait_for_emit)
    assert len(sink.events) >= 8
    tags = {t for t, _ in sink.events}
    assert tags == {"monitor.metrics"}
    first = [r for _, r in sink.events[:4]]
    assert [r["plugin_id"] for r in first] == ["monitor", "out_app", "out_monitor", "app_grep"]
    assert all("config" not in r and "retry" not in r for r in first)
    assert pipe.inputs[0].stats()[c.EMIT_RECORDS] >= 8


def test_healthz_goes_503_when_the_heartbeat_is_blocked() -> None:
    clock = Clock()
    health = Health(clock, heartbeat_interval=3600, stale_after=10)   # beats once, then never again

    def client(base: str) -> list[Any]:
        before = get(base + "/healthz")
        clock.now += 11
        return [before, get(base + "/healthz"), get(base + "/readyz")]

    before, stale, ready = run(build(health=health), client)
    assert before[:1] == (200,) and before[2] == "ok\n"
    assert stale[0] == 503 and "heartbeat is 11.0s old" in stale[2]
    assert ready[0] == 503


def test_readyz_flips_on_drain_and_on_failing_outputs() -> None:
    from kawa.metrics import begin_drain

    clock = Clock()
    health = Health(clock, heartbeat_interval=3600, stale_after=1e9, failing_after=30)
    pipe = build(health=health)
    out = pipe.outputs[0]

    def client(base: str) -> list[Any]:
        answers = [get(base + "/readyz")]
        out.counters[c.NUM_ERRORS] = 2
        answers.append(get(base + "/readyz"))          # failing, but not for long yet
        clock.now += 31
        answers.append(get(base + "/readyz"))
        out.counters[c.WRITE_COUNT] = 1
        answers.append(get(base + "/readyz"))
        begin_drain()
        answers += [get(base + "/readyz"), get(base + "/healthz")]
        return [(a[0], a[2]) for a in answers]

    assert run(pipe, client) == [(200, "ok\n"), (200, "ok\n"), (503, "outputs failing: out_app\n"), (200, "ok\n"),
                                 (503, "draining\n"), (200, "ok\n")]


def test_port_is_offset_by_worker_id() -> None:
    conf = "<source>\n@type monitor_agent\nport 24220\n</source>\n<system>\nworkers 2\n</system>\n"
    pipe = PipelineBuilder(parse_config_string(conf), Logger(LogSink(io.StringIO())), worker_id=1,
                           extras={"x": 1}).build()
    assert pipe.inputs[0].listen_port == 24221
    assert pipe.inputs[0].bind_address == "0.0.0.0"
