#!/usr/bin/env bash
# Set up (venv + kawa with its test extras) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install --quiet -e '.[test,aws]'
# The systemd input's tests write real journal files with systemd's own writer (no journald needed).
if ! [ -x /lib/systemd/systemd-journal-remote ] && ! [ -x /usr/lib/systemd/systemd-journal-remote ] \
    && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
  APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get"
  $APT install -y -q --no-install-recommends systemd-journal-remote >/dev/null 2>&1 \
    || { $APT update -q >/dev/null 2>&1 && $APT install -y -q --no-install-recommends systemd-journal-remote >/dev/null 2>&1; } \
    || echo "scripts/test.sh: could not install systemd-journal-remote; the systemd input's tests will fail" >&2
fi
.venv/bin/python -m ruff check src tests bench scripts
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
