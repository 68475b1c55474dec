"""The export's opset conversions, made once per engine, opset and verification feeds.

Converting a model to a newer opset (:func:`bitlens.core.export.opsets.prepare`: onnx's
C++ version converter, then two ONNX Runtime runs that verify the outputs unchanged) is
the same for every plan that needs that opset. The plan search converts the model for its
size checks and kept exports, and the window's export (and its fidelity check) ran the
export's preflight afterwards, which converted it again: on PP-OCRv4 rec the converter
alone holds the interpreter lock 120-150 ms per call, the window's longest stall of the
export (docs/benchmarks.md, "uisearch (session 15)"). Here the result is kept per engine
(as :mod:`bitlens.core.compute` keeps its counts) and handed to every caller as the same
:class:`~bitlens.core.export.records.Prepared`, failures included, so its measured start
sizes are shared too.

The verification depends on the feeds it runs, so they are part of the key: the search's
held-back split keeps the evaluation feeds' own dicts (core/search/guard.py), whose
conversion the export reuses; other feeds convert anew. The converted models stay in
their temporary files (bitlens.core.export.spilled), on disk, while the engine lives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

import numpy as np

from bitlens.core.errors import ExportError
from bitlens.core.export import opsets
from bitlens.core.export.records import Prepared
from bitlens.core.export.spilled import SpilledModel

if TYPE_CHECKING:
    from bitlens.core.engine import Engine

# per engine: (opset needed, opset forced, the feeds' identities) -> (the feeds, kept alive
# so that their identities stay theirs; the preparation, kernels left out, or why it failed)
_Key = tuple[int, int | None, tuple[int, ...]]
_Feeds = Sequence[dict[str, np.ndarray]]
_OF_ENGINE: WeakKeyDictionary[Engine, dict[_Key, tuple[_Feeds, Prepared | ExportError]]] = (
    WeakKeyDictionary()
)


def verification_feeds(engine: Engine) -> list[dict[str, np.ndarray]]:
    """The feeds a conversion is verified on: the first two evaluation feeds."""
    return [engine.data.samples[i] for i in engine.data.evaluation[:2]]


def converted(engine: Engine, needed: int, forced: int | None) -> Prepared:
    """``opsets.prepare`` of ``engine``'s model for ``needed`` (``forced``: the opset the user
    asked for), as a Prepared with no integer-kernel layers; made once per engine, opset and
    feeds, its ExportError raised again at each call."""
    feeds = verification_feeds(engine)
    key = (needed, forced, tuple(map(id, feeds)))
    kept = _OF_ENGINE.setdefault(engine, {})
    hit = kept.get(key)
    if hit is None:
        hit = kept[key] = (feeds, _prepare(engine, needed, forced, feeds))
    if isinstance(hit[1], ExportError):
        raise hit[1]
    return hit[1]


def _prepare(
    engine: Engine, needed: int, forced: int | None, feeds: _Feeds
) -> Prepared | ExportError:
    # Large external tensors stay in their files (and the loader's scratch map): a
    # conversion, which runs the model from memory to verify it, serializes the whole model
    # once without reading them into the proto (LoadedModel.serialized).
    src = engine.model.graph_proto
    try:
        target, model, notes = opsets.prepare(src, needed, forced, feeds, engine.model.serialized)
    except ExportError as exc:
        return exc
    spilled = None if model is None else SpilledModel(model)
    return Prepared(opsets.default_opset(src), target, spilled, frozenset(), notes)
