"""Golden cases with scripted steps (rotation, restart, late files, partial lines): the same steps
the golden harness ran against Fluentd, against the real kawa process, snapshots compared."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from _harness import GOLDEN, Run, prepare
from test_golden import compare_outputs, compare_pos_files

pytestmark = pytest.mark.e2e

if not GOLDEN.is_dir():
    pytest.skip("../shared/golden is not beside this clone: golden step cases skipped", allow_module_level=True)

# Each step: (action, argument). Mirrors the Steps line of each CASE.md.
SCRIPTS: dict[str, list[tuple[str, str]]] = {
    "tail_glob_tag_expansion": [
        ("start", ""), ("wait", ""), ("snapshot", "1-after-start"), ("apply", "01-write-d.log"),
        ("sleep", "4"), ("wait", ""), ("stop", ""),
    ],
    "tail_no_trailing_newline": [
        ("start", ""), ("wait", ""), ("snapshot", "1-partial-pending"), ("apply", "01-append-app.log"),
        ("wait", ""), ("snapshot", "2-completed"), ("apply", "02-append-app.log"), ("wait", ""), ("stop", ""),
    ],
    "tail_restart_pos": [
        ("start", ""), ("wait", ""), ("stop", ""), ("snapshot", "1-after-first-run"),
        ("apply", "01-append-app.log"), ("start", ""), ("wait", ""), ("snapshot", "2-after-restart"),
        ("apply", "02-append-app.log"), ("wait", ""), ("stop", ""),
    ],
    "tail_rotate_rename": [
        ("start", ""), ("wait", ""), ("snapshot", "1-after-start"), ("apply", "01-append-app.log"),
        ("wait", ""), ("rename", "app.log app.log.1"), ("sleep", "1"), ("apply", "02-append-app.log.1"),
        ("sleep", "1"), ("apply", "03-write-app.log"), ("sleep", "7"), ("snapshot", "2-after-rotation"),
        ("apply", "04-append-app.log"), ("wait", ""), ("stop", ""),
    ],
}


def _apply(run: Run, case: str, step_file: str) -> None:
    """`NN-append-FILE` appends, `NN-write-FILE` creates/overwrites input/FILE."""
    _, verb, target = step_file.split("-", 2)
    data = (GOLDEN / case / "input" / "steps" / step_file).read_bytes()
    with open(run.root / "input" / target, "ab" if verb == "append" else "wb") as f:
        f.write(data)


@pytest.mark.parametrize("case", sorted(SCRIPTS))
def test_step_case(case: str, tmp_path: Path) -> None:
    run = prepare(case, tmp_path)
    try:
        _run_script(run, case)
    finally:
        run.kill_all()
    assert "Traceback" not in run.log, run.log
    compare_outputs(run, case)
    compare_pos_files(run, case)


def _run_script(run: Run, case: str) -> None:
    for action, arg in SCRIPTS[case]:
        if action == "start":
            run.start()
        elif action == "wait":
            run.wait_quiet()
        elif action == "stop":
            assert run.stop() == 0, run.log
        elif action == "sleep":
            time.sleep(float(arg))
        elif action == "apply":
            _apply(run, case, arg)
        elif action == "rename":
            old, new = arg.split()
            os.rename(run.root / "input" / old, run.root / "input" / new)
        elif action == "snapshot":
            compare_outputs(run, case, step=arg)
            compare_pos_files(run, case, step=arg)
