"""Agent: start order (outputs, filters, inputs), stop order (reverse, logged like Fluentd),
SIGUSR1 flush, and kawa's own worker log lines routed as fluent.* events."""

from __future__ import annotations

import asyncio
import io
import os
import signal

from kawa.engine.agent import Agent
from kawa.engine.match import TagPattern
from kawa.engine.pipeline import Pipeline
from kawa.engine.router import FLUENT_LOG_LABEL, ROOT_LABEL, Router
from kawa.engine.system import SystemOptions
from kawa.event import Event
from kawa.log import LogSink, Logger


class Fake:
    def __init__(self, kind: str, name: str, calls: list[str]) -> None:
        self.type_name, self.plugin_id, self.calls = kind, name, calls
        self.got: list[tuple[str, list[Event]]] = []

    async def start(self) -> None:
        self.calls.append(f"start {self.plugin_id}")

    async def stop(self) -> None:
        self.calls.append(f"stop {self.plugin_id}")

    async def flush(self) -> None:
        self.calls.append(f"flush {self.plugin_id}")

    async def emit(self, tag: str, events: list[Event]) -> None:
        self.got.append((tag, events))

    def filter_batch(self, tag: str, events: list[Event]) -> list[Event]:
        return [(t, {**r, "filtered": True}) for t, r in events]


def _setup() -> tuple[Agent, list[str], io.StringIO, dict[str, Fake]]:
    calls: list[str] = []
    out = io.StringIO()
    log = Logger(LogSink(out))
    router = Router(log.child(prefix="#0 "))
    pipe = Pipeline(SystemOptions.defaults(), router)
    fakes = {name: Fake(kind, name, calls) for kind, name in
             [("tail", "in1"), ("grep", "f1"), ("file", "out1")]}
    pipe.inputs.append(fakes["in1"])          # type: ignore[arg-type]
    pipe.filters.append(fakes["f1"])          # type: ignore[arg-type]
    pipe.outputs.append(fakes["out1"])        # type: ignore[arg-type]
    return Agent(pipe, log), calls, out, fakes


def test_start_and_stop_order_with_fluentd_log_lines() -> None:
    agent, calls, out, _ = _setup()

    async def run() -> None:
        await agent.start()
        await agent.stop()

    asyncio.run(run())
    assert calls == ["start out1", "start f1", "start in1", "stop in1", "stop f1", "stop out1"]
    lines = [line.split("]: ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == ['#0 shutting down fluentd worker worker=0',
                     '#0 shutting down input plugin type=:tail plugin_id="in1"',
                     '#0 shutting down filter plugin type=:grep plugin_id="f1"',
                     '#0 shutting down output plugin type=:file plugin_id="out1"']


def test_a_failing_stop_does_not_keep_others_from_stopping() -> None:
    agent, calls, out, fakes = _setup()

    async def boom() -> None:
        raise OSError("disk gone")

    fakes["in1"].stop = boom                  # type: ignore[method-assign]
    asyncio.run(agent.stop())
    assert calls == ["stop f1", "stop out1"]
    assert 'unexpected error while shutting down plugin_id="in1" error_class=OSError error="disk gone"' in out.getvalue()


def test_sigusr1_flushes_every_output_and_own_logs_go_to_fluent_log_label() -> None:
    agent, calls, out, fakes = _setup()
    log_sink = Fake("null", "logs", [])
    agent.pipe.router.label(FLUENT_LOG_LABEL).directives.append((TagPattern("fluent.**"), log_sink, False))

    async def run() -> int:
        task = asyncio.create_task(agent.run())
        while "start in1" not in calls:
            await asyncio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGUSR1)
        while "flush out1" not in calls or len(log_sink.got) < 2:
            await asyncio.sleep(0.01)
        agent.request_stop()
        return await task

    assert asyncio.run(run()) == 0
    assert "force flushing buffered events" in out.getvalue()
    messages = [(tag, events[0][1]["message"]) for tag, events in log_sink.got]
    assert messages[0][0] == "fluent.info" and messages[0][1].startswith("starting fluentd worker pid=")
    assert ("fluent.info", "fluentd worker is now running worker=0") in messages
    assert fakes["out1"].got == []             # nothing went to the root pipeline


def test_top_level_filter_matching_fluent_tags_also_routes_own_logs_like_fluentd() -> None:
    # Fluentd's EventRouter#match? counts a matching <filter>: the events pass it, then hit no <match>.
    agent, calls, out, fakes = _setup()
    agent.pipe.router.label(ROOT_LABEL).directives.append((TagPattern("**"), fakes["f1"], True))

    async def run() -> None:
        task = asyncio.create_task(agent.run())
        while "no patterns matched" not in out.getvalue():
            await asyncio.sleep(0.01)
        agent.request_stop()
        await task

    asyncio.run(run())
    text = out.getvalue()
    assert ("[warn]: #0 define <match fluent.**> to capture fluentd logs in top level is deprecated. "
            "Use <label @FLUENT_LOG> instead") in text
    assert '#0 no patterns matched tag="fluent.info"' in text


def test_no_routing_of_own_logs_without_a_matching_directive() -> None:
    agent, calls, out, _ = _setup()

    async def run() -> None:
        task = asyncio.create_task(agent.run())
        while "start in1" not in calls:
            await asyncio.sleep(0.01)
        agent.request_stop()
        await task

    asyncio.run(run())
    assert "deprecated" not in out.getvalue() and "no patterns matched" not in out.getvalue()
