#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need,
# then runs the linters and the whole suite offscreen. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/system-deps.sh
BITLENS_EXTRAS=test,package bash tools/setup-venv.sh
.venv/bin/ruff check app tests benchmarks resources packaging
.venv/bin/lint-imports
# The frozen bundle is built here and smoke-tested in tests/test_bundle.py, so a broken
# bundle fails CI. Only the CPU bundle by default (the one most users should download):
# the GPU one comes from the same spec and trim with the other ONNX Runtime wheel, and
# building it too adds minutes. BITLENS_BUNDLE_FLAVORS="cpu gpu" tests both;
# BITLENS_SKIP_BUNDLE=1 skips bundles for quick local runs.
if [ "${BITLENS_SKIP_BUNDLE:-0}" != 1 ]; then
    bundles=()
    for flavor in ${BITLENS_BUNDLE_FLAVORS:-cpu}; do
        BITLENS_EXTRAS=test,package bash packaging/build.sh "$flavor" --no-selftest --no-archive
        bundles+=("$PWD/packaging/dist/bitlens-$flavor")
    done
    BITLENS_BUNDLE=$(IFS=:; echo "${bundles[*]}")
    export BITLENS_BUNDLE
fi
export QT_QPA_PLATFORM=offscreen
# Where the environment sets PYTHONDONTWRITEBYTECODE (this project's build machines do), every
# interpreter the suite starts (pytest itself, each fresh `python -m bitlens`, the CLI fork
# server, the fuzz workers, the import checks) compiles Bitlens's sources again, and pytest
# rewrites every test module's asserts again: 12 -> 5 s of CPU to collect the suite alone.
# The suite writes the usual __pycache__ folders instead (.gitignore'd).
unset PYTHONDONTWRITEBYTECODE
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$rc"
