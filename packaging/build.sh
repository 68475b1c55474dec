#!/usr/bin/env bash
# Builds Bitlens as PyInstaller one-folder bundles, one per ONNX Runtime flavor:
#   cpu  packaging/dist/bitlens-cpu: the `onnxruntime` CPU build, from packaging/.venv-cpu,
#        which this script creates from the pinned packaging/requirements-cpu.txt (and
#        recreates when that file changes): onnxruntime and onnxruntime-gpu cannot share
#        a virtualenv.
#   gpu  packaging/dist/bitlens-gpu: `onnxruntime-gpu` (CUDA provider; CUDA 13 and cuDNN 9
#        come from the system), from the project's .venv (tools/setup-venv.sh). It exists
#        only where NVIDIA publishes that wheel: Linux and Windows on x86-64.
#   all  both where the GPU wheel exists, else cpu (the default).
# Each bundle is trimmed (packaging/trim.py, packaging/icudata.py), stripped of debug
# sections, packed as
# packaging/dist/bitlens-<version>-<os>-<arch>-<flavor>.tar.gz, then its self-test runs
# offscreen so a broken bundle fails the build.
# Usage: bash packaging/build.sh [cpu|gpu|all] [--no-selftest] [--no-archive]
set -euo pipefail
cd "$(dirname "$0")/.."
selftest=1
archive=1
flavors=all
for arg in "$@"; do
    case "$arg" in
        cpu | gpu | all) flavors=$arg ;;
        --no-selftest) selftest=0 ;;
        --no-archive) archive=0 ;;
        *) echo "build.sh: unknown argument $arg (usage: build.sh [cpu|gpu|all] [--no-selftest] [--no-archive])" >&2; exit 2 ;;
    esac
done
os=$(uname -s | tr '[:upper:]' '[:lower:]')
arch=$(uname -m)
gpu_wheel=0
case "$os-$arch" in
    linux-x86_64 | mingw*-x86_64 | msys*-x86_64 | cygwin*-x86_64) gpu_wheel=1 ;;
esac
if [ "$flavors" = all ]; then
    flavors=cpu
    [ "$gpu_wheel" = 1 ] && flavors="cpu gpu"
elif [ "$flavors" = gpu ] && [ "$gpu_wheel" = 0 ]; then
    echo "build.sh: onnxruntime-gpu has no wheel for $os-$arch; build the cpu bundle" >&2
    exit 2
fi
if [ "$(uname -s)" = "Linux" ]; then
    # Qt's xcb plugin is silently left out of the bundle unless these are present;
    # icu-devtools brings icupkg, which shrinks ICU's data (packaging/icudata.py).
    bash tools/system-deps.sh xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-image0 \
        libxcb-keysyms1 libxcb-render-util0 libxcb-shape0 libxkbcommon-x11-0 icu-devtools
fi

venv_python() {  # the interpreter of virtualenv $1 (POSIX or Windows layout)
    if [ -x "$1/bin/python" ]; then echo "$1/bin/python"; else echo "$1/Scripts/python.exe"; fi
}

cpu_venv() {  # packaging/.venv-cpu from the pinned requirements, once per version of them
    local venv=packaging/.venv-cpu req=packaging/requirements-cpu.txt
    if ! cmp -s "$req" "$venv/requirements-cpu.txt" 2>/dev/null; then
        rm -rf "$venv"
        "${PYTHON:-python3}" -m venv "$venv" >&2
        local py
        py=$(venv_python "$venv")
        # stdout is the interpreter path this function returns: pip talks on stderr.
        # --no-compile: PyInstaller compiles what it bundles from the sources itself, so the
        # .pyc files pip would write for the 4,400 modules here (10 s of CPU) go unused; the
        # bundle is the same but for the pyc lines of two dist-info RECORD files.
        "$py" -m pip install -q --disable-pip-version-check --no-compile -r "$req" >&2
        "$py" -m pip install -q --disable-pip-version-check --no-deps -e . >&2
        cp "$req" "$venv/requirements-cpu.txt"  # written last: marks a complete install
    fi
    venv_python "$venv"
}

build_one() {  # build_one FLAVOR PYTHON
    local flavor=$1 py=$2 start=$SECONDS
    # The flavor is decided by the virtualenv: check it holds the right ONNX Runtime.
    "$py" - "$flavor" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version

def has(dist):
    try:
        version(dist)
        return True
    except PackageNotFoundError:
        return False

flavor = sys.argv[1]
gpu, cpu = has("onnxruntime-gpu"), has("onnxruntime")
if (flavor == "gpu" and not gpu) or (flavor == "cpu" and (gpu or not cpu)):
    sys.exit(f"build.sh: the {flavor} build environment ({sys.prefix}) has "
             f"onnxruntime {'installed' if cpu else 'missing'}, "
             f"onnxruntime-gpu {'installed' if gpu else 'missing'}")
EOF
    local dist="packaging/dist/bitlens-$flavor"
    BITLENS_FLAVOR=$flavor "$py" -m PyInstaller --noconfirm --clean --log-level ERROR \
        --distpath packaging/dist --workpath "packaging/build/$flavor" packaging/bitlens.spec
    local icu
    icu=$(find "$dist/_internal" -type f -name 'libicudata.so.*' | head -n 1)
    if [ -n "$icu" ]; then
        "$py" packaging/icudata.py "$icu"
    fi
    if [ "$(uname -s)" = "Linux" ] && command -v strip >/dev/null; then
        # Python built from source (pyenv) and some wheels ship debug sections (35 MB of
        # DWARF) and static symbol tables (4 MB): nothing reads them at run time.
        # --strip-unneeded keeps the dynamic symbols that loading and dlopen use. Files
        # auditwheel rewrote with patchelf (the *.libs folders, and the modules whose
        # run path points there) are only rid of debug sections, if they have any, as
        # before: strip can corrupt a patchelf'd file
        # (https://github.com/NixOS/patchelf/issues/10), and the bundle tests have run
        # these stripped of debug sections only.
        find "$dist/_internal" -type f \( -name '*.so' -o -name '*.so.*' \) -print0 |
            while IFS= read -r -d '' f; do
                dynamic=$(readelf -d "$f" 2>/dev/null || true)
                case "$f $dynamic" in
                    *.libs/* | *PATH*.libs*)
                        sections=$(readelf -S "$f" 2>/dev/null || true)
                        case "$sections" in *" .debug_"*) strip --strip-debug "$f" ;; esac
                        ;;
                    *) strip --strip-unneeded "$f" ;;
                esac
            done
    fi
    cp packaging/bitlens.desktop "$dist/"
    # Sizes in MB (10^6 bytes), the file sizes summed without following links: what the
    # folder holds, independent of the file system's block size.
    local bytes
    bytes=$(find "$dist" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
    echo "bundle: $dist ($(awk -v b="$bytes" 'BEGIN { printf "%.1f MB", b / 1e6 }'), built in $((SECONDS - start)) s)"
    if [ "$archive" = 1 ]; then
        local version name
        version=$(PYTHONPATH=app "$py" -c "import bitlens; print(bitlens.__version__)")
        name="bitlens-${version}-${os}-${arch}-${flavor}"
        tar -C packaging/dist -czf "packaging/dist/${name}.tar.gz" "bitlens-$flavor"
        bytes=$(wc -c <"packaging/dist/${name}.tar.gz")
        echo "archive: packaging/dist/${name}.tar.gz ($(awk -v b="$bytes" 'BEGIN { printf "%.1f MB", b / 1e6 }'))"
    fi
    if [ "$selftest" = 1 ]; then
        QT_QPA_PLATFORM=offscreen "$dist/bitlens" --selftest
    fi
}

for flavor in $flavors; do
    if [ "$flavor" = cpu ]; then
        py=$(cpu_venv)
    else
        BITLENS_EXTRAS=${BITLENS_EXTRAS:-package} bash tools/setup-venv.sh
        py=$(venv_python .venv)
    fi
    build_one "$flavor" "$py"
done
