"""PipelineBuilder: Fluentd's configuration order and 'adding ...' lines, problems with file:line,
legacy names, <worker N>, @label checks, <system>, dump() masking and quoting, no_effect."""

from __future__ import annotations

import io

import pytest

from kawa.config.parser import parse_config_string
from kawa.engine.pipeline import Pipeline, PipelineBuilder
from kawa.errors import ConfigError
from kawa.log import LogSink, Logger

SRC = "<source>\n  @type sample\n  tag t\n</source>\n"


def build(text: str, *, worker_id: int = 0, dry_run: bool = False) -> tuple[Pipeline, PipelineBuilder, str]:
    out = io.StringIO()
    builder = PipelineBuilder(parse_config_string(text, name="f.conf"), Logger(LogSink(out)),
                              worker_id=worker_id, dry_run=dry_run)
    pipe = builder.build()
    return pipe, builder, out.getvalue()


def problems(text: str, **kw: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build(text, **kw)  # type: ignore[arg-type]
    return [str(p) for p in info.value.problems]


def body(log: str) -> list[str]:
    return [line.split("]: ", 1)[1] for line in log.splitlines()]


def test_labels_first_then_top_level_directives_then_sources() -> None:
    _, _, log = build(SRC + "<filter **>\n  @type grep\n</filter>\n<match t>\n  @type relabel\n  @label @OUT\n"
                      "</match>\n<label @OUT>\n  <match **>\n    @type stdout\n  </match>\n</label>\n")
    assert body(log) == ['adding match in @OUT pattern="**" type="stdout"',
                         'adding filter pattern="**" type="grep"',
                         'adding match pattern="t" type="relabel"',
                         'adding source type="sample"']


def test_dry_run_does_not_print_adding_lines() -> None:
    _, _, log = build(SRC, dry_run=True)
    assert "adding" not in log


def test_directives_are_wired_into_the_router_in_order() -> None:
    pipe, _, _ = build("<filter a.**>\n  @type grep\n</filter>\n<match a.**>\n  @type stdout\n</match>\n")
    route = pipe.router.labels[""].route("a.b")
    assert route.filters == pipe.filters and route.output is pipe.outputs[0]


def test_unknown_plugin_problems_name_kind_type_and_line() -> None:
    assert problems("<source>\n  @type nope\n</source>\n<match **>\n  @type  nada\n</match>\n") == [
        "f.conf:5: <match **>: Unknown output plugin 'nada'. Run 'kawa plugins' to list the plugins kawa ships",
        "f.conf:2: <source>: Unknown input plugin 'nope'. Run 'kawa plugins' to list the plugins kawa ships"]


def test_missing_type() -> None:
    assert problems("<match **>\n</match>\n") == ["f.conf:1: <match **>: missing @type"]


def test_legacy_type_and_id_warn() -> None:
    pipe, _, log = build("<match **>\n  type stdout\n  id out1\n</match>\n")
    assert pipe.outputs[0].plugin_id == "out1"
    assert "[warn]: #0 'type' is deprecated parameter name. use '@type' instead." in log
    assert "[warn]: #0 'id' is deprecated parameter name. use '@id' instead." in log


def test_worker_section_selects_by_worker_id() -> None:
    text = ("<system>\n  workers 2\n</system>\n<worker 0>\n" + SRC + "</worker>\n"
            "<worker 1>\n<source>\n  @type sample\n  tag w1\n</source>\n</worker>\n")
    w0, _, _ = build(text, worker_id=0)
    w1, _, _ = build(text, worker_id=1)
    assert [i.options.tag for i in w0.inputs] == ["t"] and [i.options.tag for i in w1.inputs] == ["w1"]
    ranged, _, _ = build(text.replace("<worker 1>", "<worker 0-1>"), worker_id=0)
    assert len(ranged.inputs) == 2


def test_worker_out_of_range_and_bad_id() -> None:
    assert problems("<worker 2>\n</worker>\n") == [
        "f.conf:1: <worker 2>: worker id 2 specified by <worker> directive is not allowed. "
        "Available worker id is between 0 and 0"]
    assert problems("<worker x>\n</worker>\n") == [
        "f.conf:1: <worker x>: <worker> needs a worker id or range like 0-1; got 'x'"]


def test_label_to_undefined_label() -> None:
    assert problems("<source>\n  @type sample\n  tag t\n  @label @NOWHERE\n</source>\n") == [
        "f.conf:4: <source>: @NOWHERE label not found"]


def test_label_defined_twice_and_unnamed() -> None:
    twice = "<label @A>\n</label>\n<label @A>\n</label>\n"
    assert problems(twice) == ["f.conf:3: <label @A>: label @A is defined twice"]


def test_system_is_bound_and_checked() -> None:
    pipe, _, _ = build("<system>\n  workers 3\n  log_level warn\n</system>\n")
    assert pipe.system.workers == 3 and pipe.system.log_level == "warn"
    assert problems("<system>\n  workerz 2\n</system>\n") == [
        "f.conf:2: <system>: unknown option 'workerz'; did you mean 'workers'?"]


def test_several_problems_at_once() -> None:
    found = problems("<match a>\n  @type file\n</match>\n<match b>\n  @type nope\n</match>\n"
                     "<source>\n  @type sample\n  tag t\n  rate x\n</source>\n")
    assert len(found) == 3, found


def test_dump_masks_secrets_and_quotes_by_option_type() -> None:
    _, builder, _ = build("<match **>\n  @type cloudwatch_logs\n  log_group_name g\n  log_stream_name s\n"
                          "  region us-east-1\n  aws_key_id AKIA123\n  max_events_per_batch 10\n</match>\n",
                          dry_run=True)
    dump = builder.dump()
    assert "AKIA123" not in dump
    assert "    aws_key_id xxxxxx\n" in dump
    assert '    log_group_name "g"\n' in dump          # string option: quoted, as Fluentd prints it
    assert "    max_events_per_batch 10\n" in dump     # integer option: bare


def test_no_effect_options_are_listed() -> None:
    pipe, _, _ = build("<system>\n  enable_jit true\n</system>\n")
    assert pipe.no_effect == ["f.conf:2: <system>: enable_jit: Ruby-only option"]


def test_counter_sections_are_accepted_without_effect() -> None:
    # fluentd's example/counter.conf
    pipe, _, _ = build("<system>\n  <counter_server>\n    scope server1\n    bind 127.0.0.1\n    port 24321\n"
                       "    backup_path tmp/back\n  </counter_server>\n  <counter_client>\n    host 127.0.0.1\n"
                       "    port 24321\n  </counter_client>\n</system>\n")
    why = "kawa's plugins do not use Fluentd's counter API"
    assert pipe.no_effect == [f"f.conf:3: <system> <counter_server>: scope: {why}",
                              f"f.conf:4: <system> <counter_server>: bind: {why}",
                              f"f.conf:5: <system> <counter_server>: port: {why}",
                              f"f.conf:6: <system> <counter_server>: backup_path: {why}",
                              f"f.conf:9: <system> <counter_client>: host: {why}",
                              f"f.conf:10: <system> <counter_client>: port: {why}"]
    assert problems("<system>\n  <counter_server>\n    port 1\n  </counter_server>\n</system>\n") == [
        "f.conf:2: <system> <counter_server>: scope: required option is missing",
        "f.conf:2: <system> <counter_server>: backup_path: required option is missing"]


def test_unknown_top_level_section_warns_per_parameter_like_fluentd() -> None:
    # Fluentd's check_not_fetched: "parameter 'k' in <the section printed whole> is not used."
    text = "<section1>\n  a 'x y'\n  b \"q\"\n  <inner 1>\n    c z\n  </inner>\n</section1>\n<empty>\n</empty>\n" + SRC
    pipe, _, log = build(text, dry_run=True)
    whole = "<section1>\n  a x y\n  b q\n  <inner 1>\n    c z\n  </inner>\n</section1>"
    assert [(w.message, str(w.location)) for w in pipe.warnings] == [
        (f"parameter 'a' in {whole} is not used.", "f.conf:2"),
        (f"parameter 'b' in {whole} is not used.", "f.conf:3"),
        ("parameter 'c' in <inner 1>\n  c z\n</inner> is not used.", "f.conf:5")]
    assert f"[warn]: parameter 'a' in {whole} is not used.\n" in log
    assert len(pipe.inputs) == 1


def test_unknown_top_level_section_with_ruby_kawa_cannot_run_is_an_error() -> None:
    # Fluentd evaluates embedded Ruby while parsing, even in a section nothing reads
    assert problems('<section2>\n  k "#{Socket.getifaddrs}"\n</section2>\n' + SRC) == [
        "f.conf:2: <section2>: k: embedded Ruby expression is not supported: #{Socket.getifaddrs} "
        "(Socket.getifaddrs)"]
