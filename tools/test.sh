#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need,
# then runs the linters and the whole suite offscreen. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/system-deps.sh
BITLENS_EXTRAS=test,package bash tools/setup-venv.sh
.venv/bin/ruff check app tests benchmarks resources packaging
.venv/bin/lint-imports
# The frozen bundle is built here and its self-test runs in tests/test_bundle.py, so a
# broken bundle fails CI. BITLENS_SKIP_BUNDLE=1 skips it for quick local runs.
if [ "${BITLENS_SKIP_BUNDLE:-0}" != 1 ]; then
    BITLENS_EXTRAS=test,package bash packaging/build.sh --no-selftest --no-archive
    export BITLENS_BUNDLE="$PWD/packaging/dist/bitlens"
fi
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
