"""What the window remembers between runs (QSettings): recent files, theme, layout,
and the input sizes given for each model with dynamic dimensions.

A value of the wrong type (an old or hand-edited settings file) reads as
the default instead of failing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

MAX_RECENT = 10
_RECENT = "recent/models"
_THEME = "view/theme"
_GEOMETRY = "window/geometry"
_STATE = "window/state"
_DIMS = "inputSizes"  # group: one JSON entry per model, keyed by a hash of its path
STATE_VERSION = 2  # bump when docks are added or renamed: old saved layouts are ignored


class AppSettings:
    def __init__(self, qsettings: QSettings | None = None):
        self.q = qsettings if qsettings is not None else QSettings()

    # -- recent files ---------------------------------------------------------------------
    def recent_models(self) -> list[Path]:
        value = self.q.value(_RECENT, [])
        if isinstance(value, str):  # QSettings returns a lone entry as a string
            value = [value]
        if not isinstance(value, list):
            return []
        return [Path(v) for v in value if isinstance(v, str) and v]

    def add_recent_model(self, path: Path) -> None:
        p = path.resolve()
        items = [p, *(r for r in self.recent_models() if r != p)][:MAX_RECENT]
        self.q.setValue(_RECENT, [str(r) for r in items])

    def clear_recent_models(self) -> None:
        self.q.remove(_RECENT)

    # -- theme ------------------------------------------------------------------------------
    def theme(self) -> str:
        value = self.q.value(_THEME, "system")
        return value if isinstance(value, str) else "system"

    def set_theme(self, name: str) -> None:
        self.q.setValue(_THEME, name)

    # -- window layout ----------------------------------------------------------------------------
    def window_layout(self) -> tuple[QByteArray | None, QByteArray | None]:
        geo, state = self.q.value(_GEOMETRY), self.q.value(_STATE)
        return (
            geo if isinstance(geo, QByteArray) else None,
            state if isinstance(state, QByteArray) else None,
        )

    def set_window_layout(self, geometry: QByteArray, state: QByteArray) -> None:
        self.q.setValue(_GEOMETRY, geometry)
        self.q.setValue(_STATE, state)

    # -- input sizes per model ----------------------------------------------------------------
    @staticmethod
    def _dims_key(path: Path) -> str:
        # A path holds "/" (QSettings' group separator): key by its hash, keep it in the value.
        digest = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:20]
        return f"{_DIMS}/{digest}"

    def model_dims(self, path: Path) -> dict[str, int]:
        """Sizes last given for ``path``'s dynamic dimensions ({} if none or unreadable)."""
        raw = self.q.value(self._dims_key(path), "")
        try:
            entry = json.loads(raw) if isinstance(raw, str) and raw else {}
        except json.JSONDecodeError:
            return {}
        if not isinstance(entry, dict) or entry.get("path") != str(Path(path).resolve()):
            return {}
        dims = entry.get("dims", {})
        if not isinstance(dims, dict):
            return {}
        return {
            k: v for k, v in dims.items() if isinstance(k, str) and type(v) is int and v > 0
        }

    def set_model_dims(self, path: Path, dims: dict[str, int]) -> None:
        entry = {"path": str(Path(path).resolve()), "dims": dict(dims)}
        self.q.setValue(self._dims_key(path), json.dumps(entry))

    def sync(self) -> None:
        self.q.sync()
