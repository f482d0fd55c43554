"""Golden cases: the real `kawa` process on each case Fluentd 1.18 was run on, output compared byte
for byte (after the same normalization). Deliberate differences are listed in DIFFERENCES with why;
they are documented in docs/compatibility.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from _harness import GOLDEN, Run, case_dirs, expected_outputs, prepare

pytestmark = pytest.mark.e2e

if not GOLDEN.is_dir():
    pytest.skip("../shared/golden is not beside this clone (a user's clone): golden cases skipped",
                allow_module_level=True)

DRY_RUN_ONLY = {"cfg_err_incomplete_json", "cfg_err_reserved_prefix", "cfg_invalid_bool", "cfg_invalid_value",
                "cfg_legacy_type", "cfg_unknown_param", "cfg_unknown_parser"}
STEP_CASES = {"tail_glob_tag_expansion", "tail_no_trailing_newline", "tail_restart_pos", "tail_rotate_rename"}

# Where kawa differs from Fluentd on purpose: case -> (our dry-run exit code, text our output must contain).
# Fluentd exits 1 on config errors; kawa exits 2 (documented). Fluentd only warns on unknown options and
# silently accepts "abc" as a duration; kawa rejects both with the location.
DRY_RUN_EXPECT: dict[str, tuple[int, list[str]]] = {
    "cfg_err_incomplete_json": (2, ["got incomplete JSON array configuration"]),
    "cfg_err_reserved_prefix": (2, ["'@' is the system reserved prefix. Don't use '@' prefix parameter in the configuration: @foo"]),
    "cfg_invalid_bool": (2, ["read_from_head"]),
    "cfg_invalid_value": (2, ["flush_interval", "chunk_limit_size"]),
    "cfg_legacy_type": (0, ["'type' is deprecated parameter name. use '@type' instead.",
                            "'id' is deprecated parameter name. use '@id' instead."]),
    "cfg_unknown_param": (2, ["unknown option 'foo_bar'", "unknown option 'unknown_opt'",
                              "unknown option 'bogus_buffer_opt'", "unknown option 'nope'", "unknown section <mystery>"]),
    "cfg_unknown_parser": (2, ["Unknown parser plugin 'no_such_parser'"]),
}


# Run cases where kawa refuses on purpose: case -> text its exit-2 output must contain.
# cfg_quoting embeds arbitrary Ruby (`'ab' * 2`, `[1, 2].size`): kawa runs no Ruby and names the
# expression instead (docs/compatibility.md).
RUN_REFUSED: dict[str, str] = {
    "cfg_quoting": "embedded Ruby expression is not supported",
}


def _run_cases() -> list[str]:
    return [c for c in case_dirs() if c not in DRY_RUN_ONLY and c not in STEP_CASES and c not in RUN_REFUSED]


@pytest.mark.parametrize("case", sorted(RUN_REFUSED))
def test_run_case_refused_on_purpose(case: str, tmp_path: Path) -> None:
    run = prepare(case, tmp_path)
    rc, output = run.dry_run()
    assert rc == 2, output
    assert RUN_REFUSED[case] in output and "'ab' * 2" in output, output
    assert "Traceback" not in output


@pytest.mark.parametrize("case", sorted(DRY_RUN_EXPECT))
def test_dry_run_case(case: str, tmp_path: Path) -> None:
    run = prepare(case, tmp_path)
    rc, output = run.dry_run()
    want_rc, needles = DRY_RUN_EXPECT[case]
    assert rc == want_rc, output
    for needle in needles:
        assert needle in output, f"{needle!r} not in:\n{output}"
    assert "Traceback" not in output


def compare_outputs(run: Run, case: str, step: str | None = None) -> None:
    expected = expected_outputs(case, "out", step)
    got = run.outputs("out")
    got = {k: v for k, v in got.items() if not _is_buffer_file(k)}
    assert sorted(got) == sorted(expected), f"output files differ: got {sorted(got)}"
    for name, (text, normalized) in expected.items():
        ours = run.normalize_now(got[name]) if normalized else got[name]
        if normalized:
            ours = re.sub(r'"(pid|ppid)":\d+', r'"\1":"@PID@"', ours)
            ours = re.sub(r'\b(pid|ppid)=\d+', r'\1=@PID@', ours)
        assert ours == text, f"{name} differs"


def compare_pos_files(run: Run, case: str, step: str | None = None) -> None:
    expected = expected_outputs(case, "work", step)
    for name, (text, _) in expected.items():
        ours_path = run.root / "work" / name
        assert ours_path.exists(), f"pos file {name} missing"
        ours = run.normalize_paths(ours_path.read_text())
        want_rows = [line.split("\t")[:2] for line in text.splitlines()]
        got_rows = [line.split("\t")[:2] for line in ours.splitlines()]
        assert got_rows == want_rows, f"{name}: {ours!r}"
        for line in ours.splitlines():
            assert re.fullmatch(r"[^\t]+\t[0-9a-f]{16}\t[0-9a-f]{16}", line), line


def _is_buffer_file(name: str) -> bool:
    return "/" in name or name.startswith("buffer.")


@pytest.mark.parametrize("case", _run_cases())
def test_run_case(case: str, tmp_path: Path) -> None:
    run = prepare(case, tmp_path)
    try:
        run.start()
        run.wait_quiet()
        rc = run.stop()
    finally:
        run.kill_all()
    assert rc == 0, run.log
    assert "Traceback" not in run.log, run.log
    compare_outputs(run, case)
    compare_pos_files(run, case)
