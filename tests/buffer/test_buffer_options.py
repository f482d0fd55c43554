"""`<buffer>` options kawa accepts without effect are listed by `kawa --dry-run`, each with its reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def test_dry_run_lists_delayed_commit_timeout_as_no_effect_and_compress_as_effective(tmp_path: Path) -> None:
    conf = tmp_path / "fluent.conf"
    conf.write_text("<match app.**>\n  @type stdout\n  <buffer>\n    compress gzip\n"
                    "    delayed_commit_timeout 30\n  </buffer>\n</match>\n")
    proc = subprocess.run([sys.executable, "-m", "kawa", "--dry-run", "-c", str(conf)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = [line.split("accepted without effect: ", 1)[1] for line in proc.stdout.splitlines()
              if "accepted without effect: " in line]
    assert listed == [f"{conf}:5: <buffer>: delayed_commit_timeout: used only by outputs with delayed commit "
                      "(Fluentd's try_write); no kawa output commits late"]
