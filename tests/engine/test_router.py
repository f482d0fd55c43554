"""Router: filters in config order up to the first matching <match>, labels, per-tag route cache,
the once-per-tag no-match warning, and error events to <label @ERROR> or a 'dump' warning."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from kawa.engine.match import TagPattern
from kawa.engine.router import ERROR_LABEL, ROOT_LABEL, Router
from kawa.event import Event, StrValueEvents
from kawa.log import LogSink, Logger

T0 = 1_562_746_814_785_411_989     # 2019-07-10 08:20:14.785411989 UTC


class Mark:
    """A filter that appends its name to record['seen']; drops records with drop=True."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    def filter_batch(self, tag: str, events: list[Event]) -> list[Event]:
        self.calls += 1
        return [(t, {**r, "seen": r.get("seen", []) + [self.name]}) for t, r in events if not r.get("drop")]


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[str, list[Event]]] = []

    async def emit(self, tag: str, events: list[Event]) -> None:
        self.got.append((tag, events))


def _router() -> tuple[Router, io.StringIO]:
    out = io.StringIO()
    return Router(Logger(LogSink(out), prefix="#0 ")), out


def _add(router: Router, label: str, pattern: str, plugin: Any, is_filter: bool) -> None:
    router.label(label).directives.append((TagPattern(pattern), plugin, is_filter))


def test_first_match_wins_and_filters_apply_in_order_only_before_it() -> None:
    router, _ = _router()
    a, b, after = Mark("a"), Mark("b"), Mark("after")
    first, second = Sink(), Sink()
    _add(router, ROOT_LABEL, "app.**", a, True)
    _add(router, ROOT_LABEL, "**", b, True)
    _add(router, ROOT_LABEL, "app.*", first, False)
    _add(router, ROOT_LABEL, "**", after, True)
    _add(router, ROOT_LABEL, "**", second, False)
    asyncio.run(router.emit(ROOT_LABEL, "app.web", [(T0, {"n": 1})]))
    asyncio.run(router.emit(ROOT_LABEL, "other", [(T0, {"n": 2})]))
    assert first.got == [("app.web", [(T0, {"n": 1, "seen": ["a", "b"]})])]
    # `other` skips the app.** filter, passes the ones before `<match **>`, including `after`
    assert second.got == [("other", [(T0, {"n": 2, "seen": ["b", "after"]})])]


def test_routes_are_cached_per_tag() -> None:
    router, _ = _router()
    sink = Sink()
    _add(router, ROOT_LABEL, "a", sink, False)
    label = router.labels[ROOT_LABEL]
    assert label.route("a") is label.route("a")
    assert label.route("b").output is None


def test_filter_dropping_everything_stops_the_batch() -> None:
    router, _ = _router()
    sink = Sink()
    _add(router, ROOT_LABEL, "**", Mark("x"), True)
    _add(router, ROOT_LABEL, "**", sink, False)
    asyncio.run(router.emit(ROOT_LABEL, "t", [(T0, {"drop": True})]))
    assert sink.got == []


def test_empty_batch_is_not_routed() -> None:
    router, _ = _router()
    filt = Mark("x")
    _add(router, ROOT_LABEL, "**", filt, True)
    asyncio.run(router.emit(ROOT_LABEL, "t", []))
    assert filt.calls == 0


def test_labels_are_separate_pipelines() -> None:
    router, _ = _router()
    root, other = Sink(), Sink()
    _add(router, ROOT_LABEL, "**", Mark("root"), True)
    _add(router, ROOT_LABEL, "**", root, False)
    _add(router, "@OTHER", "**", other, False)
    asyncio.run(router.bind("@OTHER").emit("t", [(T0, {})]))
    assert root.got == [] and other.got == [("t", [(T0, {})])]


def test_no_match_warns_once_per_tag_and_counts() -> None:
    router, out = _router()
    _add(router, ROOT_LABEL, "x", Sink(), False)
    for _ in range(3):
        asyncio.run(router.emit(ROOT_LABEL, "nope", [(T0, {})]))
    asyncio.run(router.emit(ROOT_LABEL, "other", [(T0, {}), (T0, {})]))
    lines = out.getvalue().splitlines()
    assert [line.split("]: ", 1)[1] for line in lines] == [
        '#0 no patterns matched tag="nope"', '#0 no patterns matched tag="other"']
    assert router.counters["unmatched_records"] == 5


def test_error_event_without_error_label_dumps_it_like_fluentd(monkeypatch: Any) -> None:
    import time as _time

    monkeypatch.setenv("TZ", "UTC")
    _time.tzset()
    try:
        router, out = _router()
        router.emit_error_event("fp.default", T0, {"log": "a\"b", "n": 1, "x": None}, ValueError("bad value"))
    finally:
        monkeypatch.undo()
        _time.tzset()
    line = out.getvalue().rstrip("\n").split("]: ", 1)[1]
    assert line == ('#0 dump an error event: error_class=ValueError error="bad value" location=nil '
                    'tag="fp.default" time=2019-07-10 08:20:14.785411989 +0000 '
                    'record={"log"=>"a\\"b", "n"=>1, "x"=>nil}')
    assert router.counters["error_events"] == 1


def test_error_event_uses_fluentd_error_class_name() -> None:
    router, out = _router()
    exc = ValueError("pattern not matched")
    exc.error_class = "Fluent::Plugin::Parser::ParserError"   # type: ignore[attr-defined]
    router.emit_error_event("t", T0, {}, exc)
    assert "error_class=Fluent::Plugin::Parser::ParserError " in out.getvalue()


def test_error_event_goes_to_error_label_with_a_notice() -> None:
    router, out = _router()
    errors = Sink()
    _add(router, ERROR_LABEL, "**", errors, False)

    async def scenario() -> None:
        router.bind().emit_error_event("t", T0, {"k": "v"}, "broken")
        while not errors.got:          # routed on the loop, not inside the caller's emit
            await asyncio.sleep(0)

    asyncio.run(scenario())
    assert errors.got == [("t", [(T0, {"k": "v"})])]
    text = out.getvalue()
    assert "send an error event to @ERROR: error_class=RuntimeError error=\"broken\"" in text
    assert "dump an error event" not in text and '"k"' not in text


class Select:
    """A filter that only selects events (as grep): keeps the list type it was given."""

    keeps_str_values = True

    def filter_batch(self, tag: str, events: list[Event]) -> list[Event]:
        return type(events)(e for e in events if not e[1].get("drop"))


def test_a_str_value_events_reaches_the_output_only_through_filters_that_keep_records() -> None:
    def emitted(*filters: Any) -> list:
        router, _ = _router()
        sink = Sink()
        for f in filters:
            _add(router, ROOT_LABEL, "**", f, True)
        _add(router, ROOT_LABEL, "**", sink, False)
        asyncio.run(router.emit(ROOT_LABEL, "app", StrValueEvents([(T0, {"n": "1"}), (T0, {"drop": "x"})])))
        return sink.got[0][1]

    assert type(emitted()) is StrValueEvents
    assert type(emitted(Select())) is StrValueEvents
    after_mark = emitted(Select(), Mark("m"))     # Mark adds a list value: the promise is gone
    assert type(after_mark) is list and after_mark == [(T0, {"n": "1", "seen": ["m"]})]

    class InPlace(Mark):
        def filter_batch(self, tag: str, events: list[Event]) -> list[Event]:
            for _t, record in events:
                record["n"] = 1                     # changes records, returns the same list
            return events
    assert type(emitted(InPlace("i"))) is list
