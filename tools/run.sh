#!/usr/bin/env bash
# Installs Bitlens into ./.venv and opens the window on the bundled sample model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/system-deps.sh
bash tools/setup-venv.sh
exec .venv/bin/bitlens "$@"
