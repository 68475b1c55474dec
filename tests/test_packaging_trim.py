"""packaging/trim.py on made-up PyInstaller tables: what goes, and what must stay.

The bundle tests (tests/test_bundle.py) prove a trimmed bundle runs; these check the
rules themselves without building one.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "bitlens_packaging_trim", Path(__file__).resolve().parents[1] / "packaging" / "trim.py"
)
assert _SPEC is not None and _SPEC.loader is not None
trim = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(trim)

PLUGINS = "PySide6/Qt/plugins"


def test_is_dropped() -> None:
    assert trim.is_dropped("PySide6/Qt/translations/qtbase_de.qm")
    assert trim.is_dropped(f"{PLUGINS}/platforms/libqvnc.so")
    assert trim.is_dropped(f"{PLUGINS}/tls/libqopensslbackend.so")
    assert trim.is_dropped(f"{PLUGINS}/platformthemes/libqgtk3.so")
    assert trim.is_dropped("onnxruntime/capi/libonnxruntime_providers_tensorrt.so")
    for kept in (
        f"{PLUGINS}/platforms/libqxcb.so",
        f"{PLUGINS}/platforms/libqwayland.so",
        f"{PLUGINS}/platforms/libqoffscreen.so",
        f"{PLUGINS}/platformthemes/libqxdgdesktopportal.so",
        f"{PLUGINS}/imageformats/libqjpeg.so",
        "onnxruntime/capi/libonnxruntime_providers_cuda.so",
        "onnxruntime/capi/libonnxruntime_providers_shared.so",
        "PySide6/Qt/lib/libQt6Core.so.6",
        "libpython3.11.so.1.0",
    ):
        assert not trim.is_dropped(kept), kept


def test_trim_removes_only_libraries_no_kept_file_needs() -> None:
    """gtk3 theme -> cairo -> pixman: both go; xcb -> X11 stays though gtk3 needed it too.

    libpython is loaded by dlopen (nobody lists it) and stays.
    """
    gtk = f"{PLUGINS}/platformthemes/libqgtk3.so"
    xcb = f"{PLUGINS}/platforms/libqxcb.so"
    binaries = [
        (gtk, "/src/libqgtk3.so", "BINARY"),
        (xcb, "/src/libqxcb.so", "BINARY"),
        ("libcairo.so.2", "/lib/libcairo.so.2", "BINARY"),
        ("libpixman-1.so.0", "/lib/libpixman-1.so.0", "BINARY"),
        ("libX11.so.6", "/lib/libX11.so.6", "BINARY"),
        ("libpython3.11.so.1.0", "/py/libpython3.11.so.1.0", "BINARY"),
    ]
    needs = {
        "/src/libqgtk3.so": {"libcairo.so.2", "libX11.so.6"},
        "/src/libqxcb.so": {"libX11.so.6"},
        "/lib/libcairo.so.2": {"libpixman-1.so.0", "libX11.so.6"},
    }
    kept, datas, removed = trim.trim(binaries, [], lambda src: needs.get(src, set()))
    assert [e[0] for e in kept] == [xcb, "libX11.so.6", "libpython3.11.so.1.0"]
    assert datas == []
    assert removed == sorted([gtk, "libcairo.so.2", "libpixman-1.so.0"])


def test_trim_drops_translations_and_links_to_removed_files() -> None:
    net = "PySide6/Qt/lib/libQt6Network.so.6"
    vnc = f"{PLUGINS}/platforms/libqvnc.so"
    binaries = [(vnc, "/src/libqvnc.so", "BINARY"), (net, "/src/libQt6Network.so.6", "BINARY")]
    datas = [
        ("PySide6/Qt/translations/qt_fr.qm", "/src/qt_fr.qm", "DATA"),
        ("resources/samples/x/model.onnx", "/src/model.onnx", "DATA"),
        # PyInstaller files symbolic links under datas, the source being the relative target.
        ("libQt6Network.so.6", net, "SYMLINK"),
        ("libQt6Core.so.6", "PySide6/Qt/lib/libQt6Core.so.6", "SYMLINK"),
    ]
    needs = {"/src/libqvnc.so": {"libQt6Network.so.6"}}
    kept, kept_datas, removed = trim.trim(binaries, datas, lambda src: needs.get(src, set()))
    assert kept == []
    assert [e[0] for e in kept_datas] == ["resources/samples/x/model.onnx", "libQt6Core.so.6"]
    assert "libQt6Network.so.6" in removed and "PySide6/Qt/translations/qt_fr.qm" in removed
    assert trim.summary(removed)[0].startswith("./: libQt6Network.so.6")


def test_is_dropped_data_dirs() -> None:
    assert trim.is_dropped("pyqtgraph/icons/peegee/peegee_512px.png")
    assert not trim.is_dropped("pyqtgraph/icons/auto.png")
    assert not trim.is_dropped("pyqtgraph/icons/peegee")  # the folder name itself is no file


def test_lazy_submodules_excluded_keeps_the_package_and_its_tables() -> None:
    listed = {
        "pygments.lexers": ["pygments.lexers", "pygments.lexers._mapping", "pygments.lexers.c"],
        "pygments.styles": ["pygments.styles", "pygments.styles._mapping", "pygments.styles.vim"],
    }
    assert trim.lazy_submodules_excluded(listed.__getitem__) == [
        "pygments.lexers.c",
        "pygments.styles.vim",
    ]


APP = Path(__file__).resolve().parents[1] / "app" / "bitlens"


def _imported_modules() -> dict[str, str]:
    """Every module Bitlens's own code imports, anywhere in a file, with the importing file."""
    import ast

    found: dict[str, str] = {}
    for path in APP.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                found.setdefault(name, str(path.relative_to(APP)))
    return found


def test_the_app_imports_nothing_the_bundle_leaves_out() -> None:
    """What trim.py excludes or replaces must stay unused by Bitlens itself."""
    gone = [*trim.MODULES_EXCLUDED, *trim.MODULES_REPLACED, *trim.LAZY_SUBMODULES_KEPT]
    used = {
        name: where
        for name, where in _imported_modules().items()
        for g in gone
        if name == g or name.startswith(g + ".")
    }
    assert not used, used


def test_the_app_turns_on_nothing_the_stand_ins_cannot_serve() -> None:
    """pyqtgraph reads PySide6.QtOpenGL only in OpenGL mode, its peegee icon only in
    mkQApp, pygments' lexers only through superqt's CodeSyntaxHighlight (trim.py)."""
    needles = ("useOpenGL", "enableExperimental", "QOpenGLWidget", "mkQApp", "CodeSyntaxHighlight")
    hits = [
        f"{path.relative_to(APP)}: {n}"
        for path in APP.rglob("*.py")
        for n in needles
        if n in path.read_text(encoding="utf-8")
    ]
    assert not hits, hits


def test_the_qtopengl_stand_in_names_what_is_missing() -> None:
    spec = importlib.util.spec_from_file_location(
        "qtopengl_absent", Path(__file__).resolve().parents[1] / "packaging" / "qtopengl_absent.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert not hasattr(module, "__path__")  # importlib's probes get AttributeError
    with pytest.raises(AttributeError, match=r"PySide6\.QtOpenGL\.QOpenGLBuffer: .* not in this"):
        module.QOpenGLBuffer  # noqa: B018 - the attribute access is the test
