"""Options binding: required, defaults, aliases, deprecation, unknown keys with hints, special
values, plugin sections and cross-field checks, every problem collected at once with file:line."""

from __future__ import annotations

from typing import Iterator

import pytest

from kawa.config.element import Element
from kawa.config.parser import parse_config_string
from kawa.config.schema import BindContext, Options, PluginSpec, option, section
from kawa.errors import Location


class Inner(Options):
    key = option(doc="required inside the section")
    pattern = option("x", doc="")


class Demo(Options):
    path = option(doc="required")
    count = option(10, "integer")
    flag = option(False, "bool")
    level = option("info", "enum", choices=("info", "warn"))
    tags = option([], "array", value_type="string")
    new_name = option("n", aliases=("old_name",))
    legacy = option(None, deprecated="Use <inner> section")
    token = option(None, secret=True)
    tuning = option(None, no_effect="kawa sizes this itself")
    inner = section(Inner, multi=True, aliases=("and",))
    single = section(Inner)


class Strict(Options):
    low = option(1, "integer")
    high = option(5, "integer")

    def check(self) -> Iterator[str]:
        if self.low > self.high:
            yield f"low ({self.low}) must not exceed high ({self.high})"


class Child(Demo):
    count = 99            # a subclass overrides a default by plain assignment


def _element(body: str) -> Element:
    return parse_config_string(f"<match x>\n{body}\n</match>\n", name="t.conf").elements[0]


def _bind(cls: type[Options], body: str, ctx: BindContext | None = None) -> tuple[Options, BindContext]:
    ctx = ctx or BindContext()
    return cls.bind(_element(body), ctx), ctx


def _messages(ctx: BindContext) -> list[str]:
    return [str(p) for p in ctx.problems]


def test_defaults_and_conversion() -> None:
    opts, ctx = _bind(Demo, "path /a\ncount 3\nflag true\ntags a,b")
    assert ctx.problems == []
    assert (opts.path, opts.count, opts.flag, opts.tags, opts.level) == ("/a", 3, True, ["a", "b"], "info")
    assert opts.inner == [] and opts.single is None


def test_required_option_missing_reports_section_line_and_name() -> None:
    _, ctx = _bind(Demo, "count 3")
    assert _messages(ctx) == ["t.conf:1: <match x>: path: required option is missing"]


def test_bad_value_reports_value_line_and_keeps_default() -> None:
    opts, ctx = _bind(Demo, "path /a\ncount many")
    [problem] = ctx.problems
    assert problem.location == Location("t.conf", 3) and problem.option == "count"
    assert opts.count == 10


def test_enum_rejects_other_values() -> None:
    _, ctx = _bind(Demo, "path /a\nlevel loud")
    assert [p.option for p in ctx.problems] == ["level"]


def test_all_problems_collected_at_once() -> None:
    _, ctx = _bind(Demo, "count x\nflag maybe\nbogus 1\n<inner>\n</inner>")
    text = _messages(ctx)
    assert len(text) == 5, text
    assert "t.conf:1: <match x>: path: required option is missing" in text
    assert any(t.startswith("t.conf:2: <match x>: count:") for t in text)
    assert any(t.startswith("t.conf:3: <match x>: flag:") for t in text)
    assert "t.conf:4: <match x>: unknown option 'bogus'" in text
    assert "t.conf:5: <match x> <inner>: key: required option is missing" in text


def test_alias_binds_to_the_option() -> None:
    opts, ctx = _bind(Demo, "path /a\nold_name v")
    assert ctx.problems == [] and opts.new_name == "v"


def test_deprecated_option_warns_with_fluentd_text() -> None:
    opts, ctx = _bind(Demo, "path /a\nlegacy yes")
    assert ctx.problems == [] and opts.legacy == "yes"
    [warning] = ctx.warnings
    assert warning.message == "'legacy' parameter is deprecated: Use <inner> section"
    assert warning.location == Location("t.conf", 3)


def test_no_effect_and_secret_options_are_accepted() -> None:
    opts, ctx = _bind(Demo, "path /a\ntuning 5\ntoken s3cret")
    assert ctx.problems == [] and opts.tuning == "5" and opts.token == "s3cret"
    assert Demo._options["token"].secret and Demo._options["tuning"].no_effect


def test_unknown_option_suggests_close_name() -> None:
    _, ctx = _bind(Demo, "path /a\ncoutn 3")
    assert _messages(ctx) == ["t.conf:3: <match x>: unknown option 'coutn'; did you mean 'count'?"]


def test_unknown_option_without_close_name_has_no_hint() -> None:
    _, ctx = _bind(Demo, "path /a\nzzzzzz 3")
    assert _messages(ctx) == ["t.conf:3: <match x>: unknown option 'zzzzzz'"]


def test_unknown_section_suggests_close_name() -> None:
    _, ctx = _bind(Demo, "path /a\n<innr>\nkey k\n</innr>")
    assert _messages(ctx) == ["t.conf:3: <match x>: unknown section <innr>; did you mean <inner>?"]


def test_unknown_reserved_parameter() -> None:
    # (the config parser already refuses it directly in <match>; nested sections reach the binder)
    _, ctx = _bind(Demo, "path /a\n<single>\nkey k\n@bogus 1\n</single>")
    assert _messages(ctx) == ["t.conf:5: <match x> <single>: unknown reserved parameter '@bogus'"]


def test_reserved_parameters_are_not_unknown() -> None:
    _, ctx = _bind(Demo, "path /a\n@type x\n@id y\n@label @Z\n@log_level warn")
    assert ctx.problems == []


def test_use_default_and_use_nil() -> None:
    opts, ctx = _bind(Demo, "path /a\ncount use_default\nlevel use_nil")
    assert ctx.problems == [] and opts.count == 10 and opts.level is None


def test_embedded_ruby_error_is_a_problem_at_the_value() -> None:
    _, ctx = _bind(Demo, "path \"#{Socket.getifaddrs}\"")
    [problem] = ctx.problems
    assert problem.option == "path" and problem.location == Location("t.conf", 2)
    assert "embedded Ruby" in problem.message


def test_subclass_overrides_default() -> None:
    opts, _ = _bind(Child, "path /a")
    assert opts.count == 99
    assert Demo._options["count"].default == 10
    assert Child.defaults().count == 99 and Child.defaults().path is None


def test_multi_section_and_alias_section() -> None:
    opts, ctx = _bind(Demo, "path /a\n<inner>\nkey 1\n</inner>\n<and>\nkey 2\npattern p\n</and>")
    assert ctx.problems == []
    assert [(i.key, i.pattern) for i in opts.inner] == [("1", "x"), ("2", "p")]


def test_single_section_twice_is_a_problem() -> None:
    _, ctx = _bind(Demo, "path /a\n<single>\nkey 1\n</single>\n<single>\nkey 2\n</single>")
    assert _messages(ctx) == ["t.conf:6: <match x>: <single> may appear only once"]


def test_required_section() -> None:
    class Needs(Options):
        part = section(Inner, required=True)

    _, ctx = _bind(Needs, "")
    assert _messages(ctx) == ["t.conf:1: <match x>: <part> section is required"]


def test_check_runs_only_when_options_are_clean() -> None:
    _, ctx = _bind(Strict, "low 9\nhigh 2")
    assert _messages(ctx) == ["t.conf:1: <match x>: low (9) must not exceed high (2)"]
    _, ctx = _bind(Strict, "low 9\nhigh nope")
    assert [p.option for p in ctx.problems] == ["high"]   # no follow-on cross-field message


class FakeParser:
    class Options(Options):
        expression = option()


class WithParse(Options):
    parse = section(plugin_kind="parser", default_type="fake")


def _lookup_ctx(calls: list[tuple[str, str, Location]]) -> BindContext:
    ctx = BindContext()

    def lookup(kind: str, name: str, location: Location, path: tuple[str, ...]) -> type | None:
        calls.append((kind, name, location))
        if name == "fake":
            return FakeParser
        ctx.problem(f"Unknown {kind} plugin '{name}'", location, path)
        return None

    ctx.lookup = lookup
    return ctx


def test_plugin_section_binds_a_plugin_spec() -> None:
    calls: list[tuple[str, str, Location]] = []
    opts, ctx = _bind(WithParse, "<parse>\nexpression e\n</parse>", _lookup_ctx(calls))
    assert ctx.problems == []
    assert isinstance(opts.parse, PluginSpec) and opts.parse.cls is FakeParser
    assert opts.parse.options.expression == "e"
    assert calls == [("parser", "fake", Location("t.conf", 2))]   # default_type, at the section


def test_plugin_section_unknown_type_problem_at_type_line_and_no_follow_ons() -> None:
    calls: list[tuple[str, str, Location]] = []
    opts, ctx = _bind(WithParse, "<parse>\n@type nope\nwhatever 1\n</parse>", _lookup_ctx(calls))
    assert opts.parse is None
    assert _messages(ctx) == ["t.conf:3: <match x> <parse>: Unknown parser plugin 'nope'"]


def test_plugin_section_options_problems_carry_the_section_path() -> None:
    _, ctx = _bind(WithParse, "<parse>\n</parse>", _lookup_ctx([]))
    assert _messages(ctx) == ["t.conf:2: <match x> <parse>: expression: required option is missing"]


def test_plugin_section_without_type_or_default() -> None:
    class NoDefault(Options):
        format = section(plugin_kind="formatter")

    _, ctx = _bind(NoDefault, "<format>\n</format>", _lookup_ctx([]))
    assert _messages(ctx) == ["t.conf:2: <match x> <format>: missing @type"]


def test_plugin_section_needs_lookup() -> None:
    with pytest.raises(RuntimeError, match="lookup"):
        _bind(WithParse, "<parse>\n</parse>")


class FakeFormatter:
    class Options(Options):
        pass


class CompatOutput:
    compat_sections = ("format",)

    class Options(Options):
        format = section(plugin_kind="formatter")


class WithStore(Options):
    store = section(plugin_kind="output", multi=True)


def test_v012_parameters_in_a_nested_plugin_move_into_their_section() -> None:
    ctx = BindContext()
    seen: list[tuple[str, str]] = []

    def lookup(kind: str, name: str, location: Location, path: tuple[str, ...]) -> type | None:
        seen.append((kind, name))
        return {"compat": CompatOutput, "json": FakeFormatter}.get(name)

    ctx.lookup = lookup
    opts, ctx = _bind(WithStore, "<store>\n@type compat\nformat json\n</store>", ctx)
    assert ctx.problems == []
    assert seen == [("output", "compat"), ("formatter", "json")]
    assert opts.store[0].options.format.cls is FakeFormatter
