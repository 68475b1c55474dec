#!/usr/bin/env bash
# Builds Bitlens as a PyInstaller one-folder bundle (packaging/dist/bitlens), packs it as
# packaging/dist/bitlens-<version>-<os>-<arch>.tar.gz, then runs the bundle's self-test
# offscreen so a broken bundle fails the build.
# Usage: bash packaging/build.sh [--no-selftest] [--no-archive]
set -euo pipefail
cd "$(dirname "$0")/.."
selftest=1
archive=1
for arg in "$@"; do
    case "$arg" in
        --no-selftest) selftest=0 ;;
        --no-archive) archive=0 ;;
        *) echo "build.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done
if [ "$(uname -s)" = "Linux" ]; then
    # Qt's xcb plugin is silently left out of the bundle unless these are present.
    bash tools/system-deps.sh xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-image0 \
        libxcb-keysyms1 libxcb-render-util0 libxcb-shape0 libxkbcommon-x11-0
fi
BITLENS_EXTRAS=${BITLENS_EXTRAS:-package} bash tools/setup-venv.sh
PY=.venv/bin/python
[ -x "$PY" ] || PY=.venv/Scripts/python.exe
version=$("$PY" -c "import bitlens; print(bitlens.__version__)")
os=$(uname -s | tr '[:upper:]' '[:lower:]')
arch=$(uname -m)
"$PY" -m PyInstaller --noconfirm --clean --log-level ERROR \
    --distpath packaging/dist --workpath packaging/build packaging/bitlens.spec
cp packaging/bitlens.desktop packaging/dist/bitlens/
echo "bundle: packaging/dist/bitlens ($(du -sh packaging/dist/bitlens | cut -f1))"
if [ "$archive" = 1 ]; then
    name="bitlens-${version}-${os}-${arch}"
    tar -C packaging/dist -czf "packaging/dist/${name}.tar.gz" bitlens
    echo "archive: packaging/dist/${name}.tar.gz ($(du -h "packaging/dist/${name}.tar.gz" | cut -f1))"
fi
if [ "$selftest" = 1 ]; then
    QT_QPA_PLATFORM=offscreen packaging/dist/bitlens/bitlens --selftest
fi
