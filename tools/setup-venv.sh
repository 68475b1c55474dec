#!/usr/bin/env bash
# Creates ./.venv (once) and installs Bitlens into it, editable, with the
# extras named in $BITLENS_EXTRAS (e.g. "test").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
extras=${BITLENS_EXTRAS:-}
spec="."
[ -n "$extras" ] && spec=".[$extras]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"
