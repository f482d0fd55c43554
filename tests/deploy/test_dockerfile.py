"""The Dockerfile: its stages keep the promised shape, and its install step, replayed into a fresh
venv from the files it COPYs, gives a working `kawa` (no Docker engine needed)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path


import kawa

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def stages() -> list[list[str]]:
    """Instructions (continuation lines joined, comments dropped) grouped by FROM."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append([])
        out[-1].append(line)
    return out


def test_dockerfile_shape() -> None:
    build, final = stages()
    assert all(s[0].split()[1] == "python:3.11-slim" for s in (build, final))
    final_text = "\n".join(final)
    # non-root, numeric (runAsNonRoot can check it), no build tools in the final image
    user = next(i for i in final if i.startswith("USER ")).split()[1]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user)
    assert not re.search(r"\b(gcc|build-essential|make|apt-get install)\b", final_text)
    assert "COPY --from=build /opt/kawa /opt/kawa" in final
    assert final[-1] == 'ENTRYPOINT ["kawa"]'
    assert "/fluentd/etc" in final_text and "/etc/kawa" in final_text
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored and "tests" in ignored


def test_install_step_gives_a_working_kawa(tmp_path: Path) -> None:
    build = stages()[0]
    context = tmp_path / "src"
    context.mkdir()
    for instr in build:
        if instr.startswith("COPY "):
            *sources, _dest = instr.split()[1:]
            for name in sources:
                src = REPO / name
                (shutil.copytree if src.is_dir() else shutil.copy)(src, context / name)
    run = next(i for i in build if "pip install" in i)
    install = re.search(r"/opt/kawa/bin/pip install ([^&]+)", run)
    assert install is not None
    args = shlex.split(install.group(1))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *args],
                   cwd=context, check=True, timeout=600)
    out = subprocess.run([str(venv / "bin" / "kawa"), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"kawa {kawa.__version__}"
    # the image ships botocore (cloudwatch_logs) but not the test tools
    listed = subprocess.run([str(venv / "bin" / "pip"), "list", "--format=freeze"], capture_output=True,
                            text=True, check=True).stdout.lower()
    assert "botocore==" in listed and "pytest==" not in listed
