"""What the frozen bundle leaves out, applied by bitlens.spec to PyInstaller's tables.

PyInstaller's PySide6 hooks collect every Qt plugin of the modules in use and every Qt
translation; its dependency analysis then copies each library those plugins link to. A
desktop app on X11 or Wayland never loads the embedded-device platforms (eglfs, linuxfb,
vnc, Vulkan KHR display), the evdev/TUIO input plugins, the network plugins (Bitlens does
no networking) or the GTK platform theme (its gtk-3 is not bundled anyway; it only dragged
in cairo, pango and gdk-pixbuf). Bitlens installs no QTranslator, so the .qm files are
never read. Each name below was checked against the bundle's self-test and a subcommand
(tests/test_bundle.py); what stays is what a desktop session can need: the xcb, wayland,
offscreen and minimal platforms, the xcb GL and wayland integrations, input methods (ibus,
compose), image formats, the SVG icon engine and the xdg-desktop-portal theme.
Python modules and data that Bitlens never imports or reads go too (MODULES_EXCLUDED,
LAZY_SUBMODULES_KEPT, MODULES_REPLACED, DATA_DIRS_DROPPED); tests/test_packaging_trim.py
checks that Bitlens's own code imports none of them and turns on nothing that would.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

# Qt plugin folders that only embedded devices or networking use.
QT_PLUGIN_DIRS_DROPPED = ("egldeviceintegrations", "generic", "networkinformation", "tls")
# Single plugins, as <folder>/<file>, for the same reason (Linux names).
QT_PLUGINS_DROPPED = (
    "platforms/libqeglfs.so",
    "platforms/libqlinuxfb.so",
    "platforms/libqminimalegl.so",
    "platforms/libqvnc.so",
    "platforms/libqvkkhrdisplay.so",
    "platformthemes/libqgtk3.so",
)
# Python modules the app never imports whose extension modules link large libraries:
# Pillow's AVIF (libavif, 4.7 MB; Bitlens reads png/jpg/bmp/gif/tiff/webp, see
# bitlens.core.media_data.IMAGE_SUFFIXES), font rendering (freetype + harfbuzz) and colour
# management (lcms2); Qt's network module (gssapi/krb5); OpenSSL (hashlib falls back to
# Python's built-in sha1/sha256 when _hashlib is missing:
# https://github.com/python/cpython/blob/3.11/Lib/hashlib.py); readline (interactive only).
MODULES_EXCLUDED = (
    "PIL._avif",
    "PIL.AvifImagePlugin",
    "PIL._imagingft",
    "PIL._imagingcms",
    "PIL.ImageCms",
    "PIL._imagingtk",  # Tk is excluded anyway
    "PIL.ImageTk",
    "PySide6.QtNetwork",
    "ssl",
    "_ssl",
    "_hashlib",
    "readline",
    # pyqtgraph imports QtTest only to add qWait, inside try/except ImportError; Bitlens
    # never calls it (Qt's libQt6Test goes with the binding).
    "PySide6.QtTest",
    # The Python binding of QtDBus, which nothing imports (Qt's own libQt6DBus stays:
    # QtGui links to it for the desktop's portals and input methods).
    "PySide6.QtDBus",
    # ONNX Runtime's Python tools, quantizer and transformer optimizers: Bitlens quantizes
    # and exports with its own code and imports none of them (onnxruntime/__init__.py
    # does not either).
    "onnxruntime.transformers",
    "onnxruntime.quantization",
    "onnxruntime.tools",
    # numpy's Fortran wrapper generator and test helpers, and pydoc's help-topic text:
    # never imported at run time (numpy loads both submodules lazily, by attribute).
    "numpy.f2py",
    "numpy.testing",
    "pydoc_data",
)
# Packages whose submodules are looked up by name only when asked for; PyInstaller's hooks
# collect all of them. superqt.utils imports pygments (for its CodeSyntaxHighlight, which
# Bitlens does not use), and pygments then reads only the lexer and style tables
# (_mapping); the 600 lexer and style modules (1.5 MB compressed) stay out.
LAZY_SUBMODULES_KEPT = {
    "pygments.lexers": ("pygments.lexers._mapping",),
    "pygments.styles": ("pygments.styles._mapping",),
}
# PySide6.QtOpenGL (8.9 MB, the Python binding of every OpenGL function) is replaced in
# the bundle by packaging/qtopengl_absent.py. pyqtgraph's PlotCurveItem and
# PColorMeshItem import it when they are imported
# (https://github.com/pyqtgraph/pyqtgraph/blob/pyqtgraph-0.14.0/pyqtgraph/graphicsItems/PlotCurveItem.py)
# but use it only to draw through OpenGL, which pyqtgraph does only when its useOpenGL
# option is on or a plot sits in a QOpenGLWidget; Bitlens does neither
# (tests/test_packaging_trim.py checks that). Qt's C++ libQt6OpenGL stays: the
# QtOpenGLWidgets binding and the xcb GL integration link to it.
MODULES_REPLACED = {"PySide6.QtOpenGL": "qtopengl_absent.py"}
# Data files nothing in Bitlens reads: pyqtgraph's "peegee" logo is read only by its
# mkQApp(), which Bitlens does not call (it makes its own QApplication).
DATA_DIRS_DROPPED = (("pyqtgraph", "icons", "peegee"),)
# ONNX Runtime's TensorRT provider needs TensorRT, which is not bundled, and Bitlens only
# ever asks for the CUDA and CPU providers (bitlens.core.engine.session).
ORT_PROVIDERS_DROPPED = ("libonnxruntime_providers_tensorrt.so",)

_QT_PREFIX = ("PySide6", "Qt")


def _parts(dest: str) -> tuple[str, ...]:
    return tuple(dest.replace("\\", "/").split("/"))


def lazy_submodules_excluded(collect: Callable[[str], list[str]]) -> list[str]:
    """The submodules of ``LAZY_SUBMODULES_KEPT``'s packages to exclude.

    ``collect`` lists a package's submodules, the package included (PyInstaller's
    ``collect_submodules``).
    """
    return sorted(
        name
        for package, kept in LAZY_SUBMODULES_KEPT.items()
        for name in collect(package)
        if name != package and name not in kept
    )


def is_dropped(dest: str) -> bool:
    """Whether a bundle path (a TOC entry's destination name) is left out."""
    parts = _parts(dest)
    if parts[:3] == (*_QT_PREFIX, "translations"):
        return True
    if any(parts[: len(d)] == d and len(parts) > len(d) for d in DATA_DIRS_DROPPED):
        return True
    if parts[:3] == (*_QT_PREFIX, "plugins") and len(parts) >= 5:
        folder, name = parts[3], parts[-1]
        return folder in QT_PLUGIN_DIRS_DROPPED or f"{folder}/{name}" in QT_PLUGINS_DROPPED
    return parts[:2] == ("onnxruntime", "capi") and parts[-1] in ORT_PROVIDERS_DROPPED


def trim(
    binaries: Iterable[tuple[str, str, str]],
    datas: Iterable[tuple[str, str, str]],
    needed: Callable[[str], set[str]],
) -> tuple[list, list, list[str]]:
    """Drop the entries ``is_dropped`` names, then the libraries only they linked to.

    ``needed(src)`` gives the file names of the libraries a binary loads (directly, or
    transitively as PyInstaller's ``ldd`` analysis does). A library is
    removed only if a dropped entry needed it and no kept entry does, so a library loaded
    by dlopen (libpython, ONNX Runtime's provider bridge) is never touched. Symbolic links
    (PyInstaller's ``SYMLINK`` entries, whose source is the link's relative target, found
    in either table) go with their target.
    """
    binaries, datas = list(binaries), list(datas)
    files = [e for e in binaries if e[2] != "SYMLINK"]
    needs = {e[0]: needed(e[1]) for e in files}
    dropped = {e[0] for e in files if is_dropped(e[0])}
    by_name = {os.path.basename(d): d for d in needs}
    candidates: set[str] = set()
    frontier = set().union(*(needs[d] for d in dropped)) if dropped else set()
    while frontier:  # what the dropped files need, directly or through each other
        candidates |= frontier
        frontier = {n for f in frontier if f in by_name for n in needs[by_name[f]]} - candidates
    # Start from "every candidate is an orphan" and keep whatever a surviving file still
    # needs, until nothing changes (a kept candidate's own needs then count too).
    orphans = set(candidates)
    while True:
        alive = [d for d in needs if d not in dropped and os.path.basename(d) not in orphans]
        still = set().union(*(needs[d] for d in alive)) if alive else set()
        if not orphans & still:
            break
        orphans -= still
    gone = dropped | {d for d in needs if d not in dropped and os.path.basename(d) in orphans}
    gone = {d.replace("\\", "/") for d in gone}

    def link_target(dest: str, rel: str) -> str:
        return os.path.normpath(os.path.join(os.path.dirname(dest), rel)).replace("\\", "/")

    def keep(e: tuple[str, str, str]) -> bool:
        if e[2] == "SYMLINK":  # PyInstaller files these under datas or binaries
            return link_target(e[0], e[1]) not in gone and not is_dropped(e[0])
        return e[0].replace("\\", "/") not in gone and not is_dropped(e[0])

    removed = sorted(e[0] for e in binaries + datas if not keep(e))
    return [e for e in binaries if keep(e)], [e for e in datas if keep(e)], removed


def summary(removed: list[str]) -> list[str]:
    """One line per folder of removed files (the translations are a hundred files)."""
    by_folder: dict[str, list[str]] = {}
    for dest in removed:
        folder, _, name = dest.replace("\\", "/").rpartition("/")
        by_folder.setdefault(folder or ".", []).append(name)
    return [
        f"{folder}/: {', '.join(names) if len(names) <= 8 else f'{len(names)} files'}"
        for folder, names in sorted(by_folder.items())
    ]
