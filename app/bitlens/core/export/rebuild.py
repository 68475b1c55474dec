"""Every exported weight as the file rebuilds it: the storage rule's evidence.

Split from :mod:`bitlens.core.export.fidelity`. Each weight is computed from its stored
tensors by the file's own nodes, run as written (one stand-alone model per graph, one
weight at a time). A weight that equals the engine's value bit for bit (dtype, shape and
bytes) is then that very array, so the check holds one copy of the weights instead of two
(on a model with 671 MB of weights that was 0.7 GB); one that differs is kept as rebuilt,
for the check to report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from bitlens.core.engine.graphs import find_graph
from bitlens.core.export import probes
from bitlens.core.export.deployed import open_session
from bitlens.core.export.focus import source_weight as focus_weight
from bitlens.core.export.records import LayerExport
from bitlens.core.export.spacetodepth import source_weight
from bitlens.core.quantized import QuantizedModel

if TYPE_CHECKING:
    from bitlens.core.engine import Engine


def rebuilt_weights(
    exported: onnx.ModelProto,
    engine: Engine,
    records: dict[str, LayerExport],
    providers: list[str],
    qm: QuantizedModel,
) -> dict[str, np.ndarray]:
    by_graph: dict[str, list[tuple[str, int]]] = {}
    # a stem conv's weight the export stores rearranged (bitlens.core.export.spacetodepth)
    s2d = {r.space_to_depth.weight: r.space_to_depth for r in records.values() if r.space_to_depth}
    # a conv's weight after a Focus stem, its input channels permuted (bitlens.core.export.focus)
    focused = {r.focus.weight: r.focus for r in records.values() if r.focus}
    for rec in records.values():
        layer = engine.info.layer(rec.name)
        paths = {w.name: w.graph_path for w in layer.weights}
        dtypes = {w.name: w.dtype for w in layer.weights}
        for e in rec.weights:
            if e.scheme not in ("matmulnbits", "dqlstm"):  # decoded in numpy (fidelity.py)
                by_graph.setdefault(paths[e.weight], []).append(
                    (e.weight, _elem_type(dtypes[e.weight]))
                )
    rebuilt: dict[str, np.ndarray] = {}
    for path, weights in by_graph.items():
        weights = list(dict.fromkeys(weights))
        model = probes.weight_model(exported, find_graph(exported.graph, path), weights)
        sess = open_session(model, providers, mode="written")
        for name, _ in weights:
            (got,) = sess.run([name], {})
            if name in s2d:
                back = source_weight(s2d[name], got)
                got = got if back is None else back
            if name in focused:
                got = focus_weight(focused[name], got)
            qw = qm.weights.get(name)
            rebuilt[name] = qw.values if qw is not None and identical(got, qw.values) else got
    return rebuilt


def identical(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and bytes (NaN payloads and -0 included)."""
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and np.array_equal(
            np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8)
        )
    )


def _elem_type(dtype: str) -> int:
    # the file's own type: a float16 model's weights are held as float32 in memory
    # (loader.as_float) but the export decodes them back to float16
    return int(onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))
