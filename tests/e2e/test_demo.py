"""The README's first command (scripts/demo.sh runs scripts/demo.py): the seed's pipeline into a local
CloudWatch Logs endpoint must deliver every non-healthcheck line exactly once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_demo_ships_every_line(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), "--lines", "3000", "--timeout", "90"],
                       capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "every non-healthcheck line arrived exactly once" in p.stdout
    assert "Traceback" not in p.stdout + p.stderr
