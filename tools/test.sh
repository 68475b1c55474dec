#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need,
# then runs the linters and the whole suite offscreen. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/system-deps.sh
BITLENS_EXTRAS=test bash tools/setup-venv.sh
.venv/bin/ruff check app tests benchmarks resources packaging
.venv/bin/lint-imports
export QT_QPA_PLATFORM=offscreen
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$rc"
