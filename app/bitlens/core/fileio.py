"""Safe file output: guarded targets, atomic writes, honest modes, no litter.

Every file Bitlens writes (plans, ORT overrides, exports, fidelity reports,
from the CLI and the window alike) goes through :func:`check_output` and
then :func:`atomic_write_bytes`:

- :func:`check_output` refuses a target that is one of the run's inputs
  (same resolved path, or the same file through a hard link or another
  name: same device and inode), a directory or special file, or an existing
  file that is not of the kind being written (a plan never replaces a
  model, an export never replaces a photo).
- the bytes go to a temp file next to the target, then ``os.replace``: a
  crash or a full disk never leaves a half-written file behind. The temp
  file is named ``<target>.bitlens-<pid>-<random>.tmp`` so a user who sees
  one knows what made it, and so a later write can remove the ones whose
  process died (see :func:`clean_stale`), matching that exact pattern only.
- the result gets the mode a plain ``open(path, "w")`` would give: an
  existing file keeps its mode, a new one gets ``0o666 & ~umask`` (mkstemp
  alone would leave 0600).
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from bitlens.core.errors import BitlensError

# Leading bytes an ONNX ModelProto starts with: the tag of one of its fields (ir_version
# is written first by onnx and by PyTorch's exporter; other writers may start elsewhere).
# https://github.com/onnx/onnx/blob/main/onnx/onnx.proto (ModelProto field numbers)
_MODEL_FIRST_TAGS = frozenset({0x08, 0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72})
_JSON_CHECK_MAX = 64 << 20  # an existing "JSON" file bigger than this is not one of ours

_TMP_RE = re.compile(r"^(?P<name>.+)\.bitlens-(?P<pid>\d+)-[a-z0-9_]{8}\.tmp$")
_STAGING_RE = re.compile(r"^(?P<name>.+)\.bitlens-staging-(?P<pid>\d+)\.onnx$")

KINDS = ("json", "onnx", "html")
_KIND_NAMES = {"json": "JSON", "onnx": "an ONNX model", "html": "an HTML page"}


# -- guarding a target ----------------------------------------------------------------------
def same_file(a: str | Path, b: str | Path) -> bool:
    """True when ``a`` and ``b`` name the same file (resolved path, or device and inode)."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    try:
        if pa.resolve() == pb.resolve():
            return True
    except (OSError, RuntimeError):  # a symlink loop: fall through to stat
        pass
    try:
        sa, sb = os.stat(pa), os.stat(pb)
    except (OSError, ValueError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def check_output(
    path: str | Path,
    kind: str,
    inputs: Iterable[str | Path | None] = (),
    *,
    what: str = "output",
) -> Path:
    """Refuse an output path that would destroy something; return it as a Path.

    ``kind`` is ``"json"``, ``"onnx"`` or ``"html"``: an existing file at ``path`` is
    replaced only when it already is a file of that kind. ``inputs`` are the
    files the same run reads (model, plan, data): none of them may be the
    target.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    target = Path(path).expanduser()
    if not str(path) or target.name in ("", ".", ".."):
        raise BitlensError(f"{what} {str(path)!r}: not a file name")
    for src in inputs:
        if src is not None and str(src) and same_file(target, src):
            raise BitlensError(
                f"refusing to write the {what} to {target}: it is an input of this run "
                f"({src}); choose another file"
            )
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target
    except OSError as exc:
        raise BitlensError(f"cannot write the {what} to {target}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise BitlensError(f"cannot write the {what} to {target}: it is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise BitlensError(
            f"cannot write the {what} to {target}: it is not a regular file (device, FIFO or socket)"
        )
    if st.st_size and not _is_kind(target, kind, st.st_size):
        raise BitlensError(
            f"refusing to replace {target} with the {what}: the existing file is not "
            f"{_KIND_NAMES[kind]}; choose another name or remove it"
        )
    return target


def _is_kind(path: Path, kind: str, size: int) -> bool:
    try:
        with open(path, "rb") as fh:
            if kind == "onnx":
                head = fh.read(1)
                return bool(head) and head[0] in _MODEL_FIRST_TAGS and not _is_text(path)
            if kind == "html":
                return _is_html(fh.read(1024))
            if size > _JSON_CHECK_MAX:
                return False
            data = fh.read(_JSON_CHECK_MAX)
    except OSError:
        return False
    try:
        json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return True


def _is_html(head: bytes) -> bool:
    """An HTML page starts (after a byte-order mark, blanks or comments) with its doctype or
    its ``<html`` tag; a report is never written over anything else."""
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n").lower()
    return text.startswith(("<!doctype html", "<html", "<!--"))


def _is_text(path: Path) -> bool:
    """An ONNX file is binary: a head that decodes as printable text is something else."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


# -- writing ----------------------------------------------------------------------------------
def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    target = Path(path).expanduser()
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise BitlensError(f"cannot write {target}: folder {folder} does not exist")
    if target.is_dir():
        raise BitlensError(f"cannot write {target}: it is a directory")
    clean_stale(folder)
    mode = _mode_for(target)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f"{target.name}.bitlens-{os.getpid()}-", suffix=".tmp", dir=folder
        )
    except OSError as exc:
        raise BitlensError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise BitlensError(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def replace_into(staged: str | Path, target: str | Path) -> Path:
    """Move a finished staging file onto ``target``, giving it the mode ``target`` had."""
    t = Path(target)
    try:
        os.chmod(staged, _mode_for(t))
        os.replace(staged, t)
    except OSError as exc:
        raise BitlensError(f"cannot write {t}: {exc.strerror or exc}") from None
    return t


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _mode_for(target: Path) -> int:
    """An existing file's permission bits, else what ``open()`` would create."""
    try:
        st = os.stat(target)
    except OSError:
        return 0o666 & ~current_umask()
    return stat.S_IMODE(st.st_mode)


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:  # Linux 4.7+: no window where another thread sees a changed umask
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


# -- litter -----------------------------------------------------------------------------------
def staging_path(target: str | Path) -> Path:
    """Where an export is written before its check: next to the target, named for this process."""
    t = Path(target)
    return t.with_name(f"{t.stem}.bitlens-staging-{os.getpid()}.onnx")


def clean_stale(folder: str | Path) -> list[Path]:
    """Remove temp and staging files Bitlens left in ``folder`` when its process died.

    Only names matching this module's exact patterns, owned by this user,
    whose process id no longer runs, are removed: a file of a live process
    (this one or another Bitlens) is left alone.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_RE.match(entry.name) or _STAGING_RE.match(entry.name)
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        getuid = getattr(os, "getuid", None)  # absent on Windows
        if not stat.S_ISREG(st.st_mode) or (getuid is not None and st.st_uid != getuid()):
            continue
        if _alive(int(m.group("pid"))):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists under another user (or absurd): not ours to judge
    except OSError:
        return True
    return True


def stat_regular(path: str | Path, error: type[BitlensError], what: str) -> os.stat_result:
    """stat() of a file Bitlens is about to read, or one ``error`` line: missing, a
    directory, or not a regular file (a FIFO would block a read, /dev/zero never end)."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise error(f"{p}: no such {what}") from None
    except (OSError, ValueError) as exc:
        raise error(f"{p}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{p}: is a directory, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{p}: is not a regular file (a device, FIFO or socket); refused")
    return st
