#!/usr/bin/env bash
# Set up (venv + kawa with the AWS and local-endpoint extras) and run the main job: the seed's
# pipeline shipping a generated nginx access log into a local CloudWatch Logs endpoint (moto).
# Point it at real AWS instead with:  kawa -c examples/reference-cloudwatch.conf
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet -e '.[aws,local]'
exec .venv/bin/python scripts/demo.py "$@"
