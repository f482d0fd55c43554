"""The `kawa` command run as a real process: exit codes, --dry-run problem lists with file:line,
no traceback on config errors, --show-config secret masking, log levels, -o, plugins, --version."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kawa import __version__

OK_CONF = """
<source>
  @type sample
  tag demo
</source>
<match demo.**>
  @type stdout
</match>
"""


def kawa(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TZ": "UTC"}
    return subprocess.run([sys.executable, "-m", "kawa", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=env)


def write(tmp_path: Path, text: str, name: str = "fluent.conf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr


def test_dry_run_ok_exits_0(tmp_path: Path) -> None:
    proc = kawa("--dry-run", "-c", str(write(tmp_path, OK_CONF)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "finished dry run mode" in proc.stdout
    assert "[error]" not in proc.stdout
    no_traceback(proc)


def test_dry_run_lists_every_problem_with_file_line(tmp_path: Path) -> None:
    conf = write(tmp_path, """<source>
  @type nosuchinput
</source>
<filter **>
  @type grep
  bogus_option 1
</filter>
<match **>
  @type file
</match>
""")
    proc = kawa("--dry-run", "-c", str(conf))
    assert proc.returncode == 2
    errors = [line.split("[error]: ", 1)[1] for line in proc.stdout.splitlines() if "[error]: " in line]
    assert f"{conf}:2: <source>: Unknown input plugin 'nosuchinput'. Run 'kawa plugins' to list the plugins kawa ships" in errors
    assert any(e.startswith(f"{conf}:6: <filter **>: unknown option 'bogus_option'") for e in errors), errors
    assert f"{conf}:8: <match **>: path: required option is missing" in errors
    assert len(errors) == 3, errors
    no_traceback(proc)


@pytest.mark.parametrize("text", [
    "<source>\n  @type tail\n",                           # unclosed section: syntax error
    "<match **>\n  @type file\n  path \"/x\n</match>\n",   # unterminated string
    "<match **>\n  @type stdout\n  @label @NOWHERE\n</match>\n",
    "<worker 5>\n</worker>\n",
    "<source>\n</source>\n",
])
def test_config_errors_exit_2_without_traceback(tmp_path: Path, text: str) -> None:
    proc = kawa("--dry-run", "-c", str(write(tmp_path, text)))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{tmp_path / 'fluent.conf'}:" in proc.stdout       # every problem says where
    no_traceback(proc)


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    proc = kawa("--dry-run", "-c", str(tmp_path / "absent.conf"))
    assert proc.returncode == 2
    assert "config file not found" in proc.stdout
    no_traceback(proc)


def test_show_config_masks_secrets_and_exits_0(tmp_path: Path) -> None:
    conf = write(tmp_path, """<match app.**>
  @type cloudwatch_logs
  log_group_name grp
  log_stream_name st
  region us-east-1
  aws_key_id AKIAEXAMPLEKEY
  aws_sec_key "very/secret+key"
</match>
""")
    proc = kawa("--show-config", "-c", str(conf))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "AKIAEXAMPLEKEY" not in proc.stdout and "very/secret+key" not in proc.stdout
    assert "aws_key_id xxxxxx" in proc.stdout and "aws_sec_key xxxxxx" in proc.stdout
    assert 'log_group_name "grp"' in proc.stdout


def test_dry_run_config_dump_also_masks_secrets(tmp_path: Path) -> None:
    conf = write(tmp_path, "<match x>\n  @type cloudwatch_logs\n  log_group_name g\n  log_stream_name s\n"
                           "  region us-east-1\n  aws_sec_key TOPSECRET\n</match>\n")
    proc = kawa("--dry-run", "-c", str(conf))
    assert proc.returncode == 0, proc.stdout
    assert "TOPSECRET" not in proc.stdout and "aws_sec_key xxxxxx" in proc.stdout


def test_quiet_hides_info_and_verbose_shows_debug(tmp_path: Path) -> None:
    conf = str(write(tmp_path, OK_CONF))
    quiet = kawa("-q", "--dry-run", "-c", conf)
    assert quiet.returncode == 0 and "[info]" not in quiet.stdout
    bad = write(tmp_path, "<source>\n  @type nosuch\n</source>\n", "bad.conf")
    errors_only = kawa("-qq", "--dry-run", "-c", str(bad))
    assert errors_only.returncode == 2 and "[error]" in errors_only.stdout
    normal = kawa("--dry-run", "-c", conf)
    assert "[info]" in normal.stdout


def test_system_log_level_does_not_override_cli_quiet(tmp_path: Path) -> None:
    conf = write(tmp_path, "<system>\n  log_level debug\n</system>\n" + OK_CONF)
    proc = kawa("-q", "--dry-run", "-c", str(conf))
    assert proc.returncode == 0
    assert "[info]" not in proc.stdout and "[debug]" not in proc.stdout


def test_log_option_writes_log_to_file(tmp_path: Path) -> None:
    log = tmp_path / "kawa.log"
    proc = kawa("--dry-run", "-o", str(log), "-c", str(write(tmp_path, OK_CONF)))
    assert proc.returncode == 0
    assert proc.stdout == ""
    assert "finished dry run mode" in log.read_text()


def test_plugins_lists_shipped_plugins() -> None:
    proc = kawa("plugins")
    assert proc.returncode == 0
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    assert {"tail", "sample"} <= set(lines["input"].split(", "))
    assert {"grep", "record_transformer"} <= set(lines["filter"].split(", "))
    assert {"file", "stdout"} <= set(lines["output"].split(", "))


def test_version() -> None:
    proc = kawa("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"kawa {__version__}"


def test_main_in_process_returns_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kawa.cli import main

    assert main(["--dry-run", "-c", str(write(tmp_path, "<match **>\n  @type file\n</match>\n"))]) == 2
    assert "path: required option is missing" in capsys.readouterr().out


def test_a_plugin_that_cannot_start_exits_1_naming_it_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    (tmp_path / "a.log").write_text("x\n")
    conf = write(tmp_path, f"""
<source>
  @type tail
  path {tmp_path}/a.log
  tag a
  pos_file {tmp_path}/not-a-dir/a.pos
  <parse>
    @type none
  </parse>
</source>
<match a>
  @type file
  path {tmp_path}/out
</match>
""")
    proc = kawa("-c", str(conf))
    assert proc.returncode == 1, proc.stdout
    assert (f'[error]: input plugin type=:tail plugin_id="object:3c5" could not start: FileExistsError: '
            f"[Errno 17] File exists: '{tmp_path}/not-a-dir'") in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "shutting down output plugin type=:file" in proc.stdout     # the output started first is stopped


def test_the_config_parser_warnings_are_logged_before_parsing_succeeded(tmp_path: Path) -> None:
    """Fluentd's parser logs `include` without '@' itself; kawa collected such warnings and dropped
    them. A plain @include path that does not exist includes nothing (as in Fluentd) but now says so;
    a pattern matching nothing (an empty conf.d/) stays quiet."""
    (tmp_path / "out.conf").write_text("<match demo.**>\n  @type null\n</match>\n")
    (tmp_path / "conf.d").mkdir()
    conf = write(tmp_path, "<source>\n  @type sample\n  tag demo\n</source>\n"
                           "include out.conf\n@include missing.conf\n@include conf.d/*.conf\n")
    proc = kawa("--dry-run", "-c", str(conf))
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    warned = [line.split(" [warn]: ", 1)[1] for line in lines if " [warn]: " in line]
    assert warned == ["'include' is deprecated. Use '@include' instead",
                      f"@include missing.conf at {conf}:6: {tmp_path}/missing.conf does not exist, so nothing "
                      "was included (Fluentd includes nothing either)"]
    succeeded = next(i for i, line in enumerate(lines) if "parsing config file is succeeded" in line)
    assert all(i < succeeded for i, line in enumerate(lines) if " [warn]: " in line)


def test_system_log_section_sets_format_time_format_and_path_from_the_first_line(tmp_path: Path) -> None:
    """`<system><log>` was accepted and ignored: kawa logged text to stdout whatever it said."""
    log_file = tmp_path / "logs" / "kawa.log"
    conf = write(tmp_path, f"""<system>
  <log>
    format json
    time_format %Y-%m-%dT%H:%M:%S.%L%z
    path {log_file}
  </log>
</system>
<source>
  @type sample
  tag demo
</source>
<match demo.**>
  @type null
</match>
""")
    proc = kawa("--dry-run", "-c", str(conf))
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout == ""                                  # everything went to <log> path
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert records[0]["message"] == f'parsing config file is succeeded path="{conf}"'
    assert records[-1]["message"] == "finished dry run mode"
    assert all(set(r) == {"time", "level", "message"} for r in records)      # a dry run has no worker
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}$", r["time"]) for r in records)
