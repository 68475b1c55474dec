"""The frozen PyInstaller bundles run on their own: the window's self-test and subcommands.

``tools/test.sh`` builds a bundle first and sets ``BITLENS_BUNDLE`` (one folder, or several
joined by ``os.pathsep``: ``packaging/build.sh`` makes ``bitlens-cpu`` and ``bitlens-gpu``);
a plain ``pytest`` run without a bundle skips these (say so, rather than pass silently).
Every bundle is trimmed (packaging/trim.py), so each test here also proves that what was
left out was not needed: Qt opens its window on a real X server, Pillow still reads every
image format Bitlens accepts, ONNX Runtime evaluates and exports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bitlens.core.media_data import IMAGE_SUFFIXES

BUNDLES = [Path(p) for p in os.environ.get("BITLENS_BUNDLE", "").split(os.pathsep) if p]
pytestmark = pytest.mark.skipif(
    not BUNDLES, reason="no frozen bundle: tools/test.sh builds it (packaging/build.sh)"
)


@pytest.fixture(params=BUNDLES, ids=lambda p: p.name)
def bundle(request: pytest.FixtureRequest) -> Path:
    return request.param


def _run(
    bundle: Path, tmp_path: Path, *args: str, launcher: tuple[str, ...] = (), **env: str
) -> subprocess.CompletedProcess[str]:
    # A bare environment: no virtualenv, no PYTHONPATH, a fresh home.
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "QT_QPA_PLATFORM": "offscreen",
        "LANG": "C.UTF-8",
    }
    return subprocess.run(
        [*launcher, str(bundle / "bitlens"), *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        cwd=tmp_path,
        timeout=300,
    )


def _sample(bundle: Path, name: str) -> Path:
    return bundle / "_internal" / "resources" / "samples" / name / "model.onnx"


def test_bundle_selftest(bundle: Path, tmp_path: Path) -> None:
    """The window offscreen on the image sample: open, W8A8 evaluation, export, fidelity."""
    res = _run(bundle, tmp_path, "--selftest")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().endswith("selftest: ok")
    assert "export passed" in res.stdout


def test_bundle_inspects_its_sample(bundle: Path, tmp_path: Path) -> None:
    res = _run(bundle, tmp_path, "inspect", str(_sample(bundle, "speech_kws")))
    assert res.returncode == 0, res.stderr
    assert "LSTM" in res.stdout and res.stdout.splitlines()[-1].strip()


def test_bundle_reads_every_image_format(bundle: Path, tmp_path: Path) -> None:
    """An image folder as data, one file per format Bitlens accepts (Pillow was trimmed)."""
    folder = tmp_path / "images"
    folder.mkdir()
    suffixes = sorted({s for s in IMAGE_SUFFIXES if s != ".jpeg" and s != ".tif"})
    rng = np.random.default_rng(0)
    for i, suffix in enumerate(suffixes):
        pixels = (rng.random((20, 20, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}{suffix}")
    model = _sample(bundle, "digits_cnn")
    res = _run(bundle, tmp_path, "eval", str(model), "--preset", "W8A8", "--data", str(folder))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"data: images/ ({len(suffixes)} images)" in res.stdout
    assert "ran on CPUExecutionProvider" in res.stdout


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("xvfb-run") is None,
    reason="needs Linux with xvfb-run (packaging/build.sh installs it)",
)
def test_bundle_opens_its_window_on_x11(bundle: Path, tmp_path: Path) -> None:
    """The bundled xcb platform plugin and its libraries on a real (virtual) X server."""
    xvfb = ((shutil.which("xvfb-run") or ""), "-a")
    res = _run(bundle, tmp_path, "--quit-after", "500", launcher=xvfb, QT_QPA_PLATFORM="xcb")
    assert res.returncode == 0, res.stdout + res.stderr
    # With QT_QPA_PLATFORM=xcb Qt aborts if the plugin cannot load; the window then
    # reports the title it showed once the sample had opened.
    assert "bitlens: Handwritten digits (CNN) (sample)" in res.stderr, res.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux file names")
def test_bundle_carries_its_flavor_and_no_dead_weight(bundle: Path) -> None:
    """CPU bundles have no CUDA provider, GPU bundles have it; neither has what trim drops."""
    internal = bundle / "_internal"
    ort_capi = internal / "onnxruntime" / "capi"
    has_cuda = (ort_capi / "libonnxruntime_providers_cuda.so").exists()
    if bundle.name.endswith("-cpu"):
        assert not has_cuda
    elif bundle.name.endswith("-gpu"):
        assert has_cuda
    assert not (ort_capi / "libonnxruntime_providers_tensorrt.so").exists()
    qt = internal / "PySide6" / "Qt"
    assert not (qt / "translations").exists()
    platforms = {p.name for p in (qt / "plugins" / "platforms").iterdir()}
    # What a desktop needs stays; embedded-device platforms go.
    assert {"libqxcb.so", "libqwayland.so", "libqoffscreen.so"} <= platforms, platforms
    assert not platforms & {"libqeglfs.so", "libqlinuxfb.so", "libqvnc.so"}
    dangling = [p for p in internal.rglob("*") if p.is_symlink() and not p.exists()]
    assert not dangling
    # The Python modules and data trim.py leaves out or replaces (the stand-in is in the
    # executable's archive; the self-test proves pyqtgraph's plots import and draw with it).
    assert not (internal / "PySide6" / "QtOpenGL.abi3.so").exists()
    assert (internal / "PySide6" / "QtOpenGLWidgets.abi3.so").exists()
    assert not (internal / "PySide6" / "QtTest.abi3.so").exists()
    assert not (internal / "pyqtgraph" / "icons" / "peegee").exists()


# The CPU bundle's size target (README, "Standalone executable"), in MB = 10^6 bytes.
CPU_BUNDLE_MAX_MB = 200


def folder_mb(folder: Path) -> float:
    """The sizes of the files under ``folder`` summed, links not followed, in MB (10^6 B)."""
    files = (p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    return sum(p.stat().st_size for p in files) / 1e6


def test_cpu_bundle_is_under_its_size_target(bundle: Path) -> None:
    if not bundle.name.endswith("-cpu"):
        pytest.skip("the size target is the CPU bundle's")
    mb = folder_mb(bundle)
    print(f"{bundle.name}: {mb:.1f} MB")
    assert mb < CPU_BUNDLE_MAX_MB, f"{bundle.name} is {mb:.1f} MB, over {CPU_BUNDLE_MAX_MB} MB"


# What Qt asks ICU for, printed one line each: collation with a language's own order
# (Swedish puts a-umlaut after z) and in numeric mode, locale case mapping (Turkish
# dotted capital I), legacy codecs, a time zone's display name; last, which ICU data
# library the process mapped.
_QT_ICU_PROBE = textwrap.dedent(
    """
    import functools
    from PySide6.QtCore import QCollator, QLocale, QStringDecoder, QTimeZone
    words = ["zebra", "\u00e4pple", "apa", "\u00d6", "file10", "file2"]
    sv = QCollator(QLocale("sv_SE"))
    print(sorted(words, key=functools.cmp_to_key(sv.compare)))
    de = QCollator(QLocale("de_DE"))
    de.setNumericMode(True)
    print(sorted(words, key=functools.cmp_to_key(de.compare)))
    print(QLocale("tr_TR").toUpper("i"), QLocale("en_US").toUpper("i"))
    print([QStringDecoder(c).isValid() for c in ("Shift_JIS", "Big5", "windows-1252")])
    tz = QTimeZone(b"Europe/Berlin")
    print(tz.displayName(QTimeZone.TimeType.StandardTime, QTimeZone.NameType.LongName,
                         QLocale("en_US")))
    print([ln.split()[-1] for ln in open("/proc/self/maps") if "libicudata" in ln][:1])
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD and /proc: Linux")
def test_bundle_icu_data_serves_qt_as_the_full_data(bundle: Path, tmp_path: Path) -> None:
    """packaging/icudata.py removed ICU data groups: Qt's answers must not change.

    The test's own PySide6 runs the probe twice, with its full ICU data and with the
    bundle's library preloaded in its place (same soname, so the loader takes it).
    """
    import PySide6

    bundled = sorted((bundle / "_internal" / "PySide6" / "Qt" / "lib").glob("libicudata.so.*"))
    full = Path(PySide6.__file__).parent / "Qt" / "lib" / (bundled[0].name if bundled else "-")
    if not bundled or not full.exists():
        pytest.skip("the bundle and this PySide6 carry different ICU versions")
    probe = tmp_path / "probe.py"
    probe.write_text(_QT_ICU_PROBE)

    def run(**env: str) -> list[str]:
        res = subprocess.run(
            [sys.executable, str(probe)], capture_output=True, text=True, timeout=120,
            env={**os.environ, "QT_QPA_PLATFORM": "offscreen", **env},
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        return res.stdout.splitlines()

    reference = run()
    lib = bundled[0].resolve()
    trimmed = run(LD_PRELOAD=str(lib))
    assert trimmed[-1] == str([str(lib)])  # the bundle's data was the one used
    assert reference[-1] != trimmed[-1]
    assert trimmed[:-1] == reference[:-1]
    assert reference[0].index("zebra") < reference[0].index("\u00e4pple")  # a real tailoring
