"""The int8 grid a weight decoded from integer codes already lies on.

Some exporters store weights as int8 codes that a ``Cast`` to float and a ``Mul`` by a
scale decode (tinyocr's PP-OCRv6 tiny recognizer: codes -127..127, one scale per output
channel). The loader folds that chain into a float weight (:mod:`bitlens.core.model.folding`),
and quantizing it again on a different grid adds error the file never had: W8A8's
``int8 sym ch`` (codes -128..127) re-rounds the PP-OCRv6 weights by about 48 dB, where the
file's own grid reproduces them. For each such weight this finds the int8 format on which
quantize-dequantize gives the float weight back exactly (bit for bit, or within float32
rounding of the scale), or None when there is none.

Bitlens's scales are min-max (a channel's scale is its largest magnitude / qmax), so a
stored grid is found only where every scale group has a code at +-qmax: a channel whose
codes stop short of it gets a different scale, and that weight is reported as not exact
rather than matched approximately. A BatchNorm folded into a decoded Conv weight multiplies
each channel by a factor, which keeps it on a per-channel grid when its codes reach +-127.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from bitlens.core.errors import FormatError
from bitlens.core.formats import Granularity, fake_quantize, parse_format
from bitlens.core.model.types import WeightInfo

# Tried in this order, the per-tensor formats first: where one scale reproduces a weight,
# that is the file's own layout, and it stores fewer scales. Symmetric min-max scales are
# max|w| / 127 (narrow) or max|w| / 127.5 (full), so codes on the full -128..127 grid come
# back exactly only through the asymmetric formats (scale (hi - lo) / 255, zero point 0
# where the codes reach both -128 and 127).
CANDIDATES: tuple[str, ...] = (
    "int8 sym narrow", "int8 sym", "int8 asym",
    "int8 sym narrow ch", "int8 sym ch", "int8 asym ch",
)  # fmt: skip

# Float32 rounding allowed between the decoded weight and its round trip: the file's
# ``code * scale`` and Bitlens's ``code * (max|w| / 127)`` differ by the rounding of that
# scale, at most a couple of units in the last place.
_ULPS = 4

Key = tuple[str, str]  # (graph path, weight name), as WeightInfo carries them


def exact_grid(values: np.ndarray, w: WeightInfo) -> str | None:
    """The first of :data:`CANDIDATES` that reproduces ``values`` (``w``'s float weight)."""
    x = np.asarray(values, dtype=np.float32)
    if x.size == 0 or not np.all(np.isfinite(x)):
        return None
    for name in CANDIDATES:
        fmt = parse_format(name)
        if fmt.granularity is Granularity.CHANNEL:
            if not x.ndim:
                continue
            fmt = fmt.with_axis(w.channel_axis)
        try:
            back = fake_quantize(x, fmt)
        except FormatError:
            continue
        if reproduces(x, back):
            return name
    return None


def reproduces(x: np.ndarray, back: np.ndarray) -> bool:
    """Whether ``back`` equals ``x`` within :data:`_ULPS` float32 units in the last place."""
    back = np.asarray(back, dtype=np.float32)
    if back.shape != x.shape:
        return False
    tol = _ULPS * np.spacing(np.maximum(np.abs(x), np.abs(back)))
    return bool(np.all(np.abs(back.astype(np.float64) - x) <= tol))


def stored_grids(
    weights: Iterable[WeightInfo], value: Callable[[WeightInfo], np.ndarray]
) -> dict[Key, str | None]:
    """Each weight's exact int8 grid (None: none); ``value(w)`` gives its float values."""
    out: dict[Key, str | None] = {}
    for w in weights:
        key = (w.graph_path, w.name)
        if key not in out:
            out[key] = exact_grid(value(w), w)
    return out


def note(grids: dict[Key, str | None]) -> str | None:
    """One line for the load notes: which decoded weights the 8-bit presets keep exactly."""
    if not grids:
        return None
    kept = sorted({g for g in grids.values() if g is not None})
    exact = sum(g is not None for g in grids.values())
    parts = []
    if exact:
        parts.append(
            f"the W8A8 and W8A16 presets keep {exact} of the {len(grids)} weight(s) decoded "
            f"from integer codes on the file's own grid ({', '.join(kept)}), exactly"
            + ("" if all("narrow" in g for g in kept) else " (for TensorRT, the narrow grids only)")
        )
    if exact < len(grids):
        parts.append(
            f"{len(grids) - exact} decoded weight(s) lie on no int8 grid Bitlens's min-max "
            "scales reproduce (a scale group whose codes stop short of +-127, or a folded "
            "BatchNorm), so quantizing them re-rounds the file's codes"
        )
    return "; ".join(parts)


def layer_grid(grids: dict[Key, str | None], weights: Iterable[WeightInfo]) -> str | None:
    """The one exact grid all of a layer's weights share (a layer has one weight format),
    or None: some weight not decoded from codes, none exact, or grids that differ."""
    found = {grids.get((w.graph_path, w.name)) for w in weights}
    return found.pop() if len(found) == 1 else None


def layer_note(grids: dict[Key, str | None], weights: Iterable[WeightInfo]) -> str:
    """For the layer detail: what the file stores and what the 8-bit presets do with it
    ("" for a layer with no weight decoded from integer codes)."""
    weights = list(weights)
    if not any((w.graph_path, w.name) in grids for w in weights):
        return ""
    grid = layer_grid(grids, weights)
    if grid is not None:
        return f"int8 codes in the file: W8A8/W8A16 keep the file's own grid ({grid}), exactly"
    return "int8 codes in the file, on no grid Bitlens's min-max scales reproduce: re-rounded"
