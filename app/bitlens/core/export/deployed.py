"""Running an export as deployed: sessions, the codes ORT's kernels produce, kernel checks.

Split from :mod:`bitlens.core.export.fidelity`: this module opens the
exported file in ONNX Runtime (as written and as deployed), reads the
codes each quantizer produces after ORT's rewrites, and names the kernels
that ran (the segment-by-segment 1-LSB check is in
:mod:`bitlens.core.export.segments`).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort

from bitlens.core.engine.graphs import iter_nodes
from bitlens.core.errors import ExportError
from bitlens.core.export import piecewise, probes
from bitlens.core.export.activations import QuantizerRecord
from bitlens.core.export.exporter import LayerExport
from bitlens.core.export.reductions import CodeAgreement
from bitlens.core.export.report import QuantizerCheck
from bitlens.core.model.types import Layer

if TYPE_CHECKING:
    from bitlens.core.engine import Engine

INTEGER_KERNELS = frozenset(
    {
        "QLinearConv", "QLinearMatMul", "QGemm", "MatMulIntegerToFloat", "ConvInteger",
        "MatMulInteger", "DynamicQuantizeMatMul", "QLinearAdd", "QLinearMul", "DynamicQuantizeLSTM",
    }
)  # fmt: skip
COMPUTE_OPS = INTEGER_KERNELS | {
    "Conv", "FusedConv", "NchwcConv", "MatMul", "FusedMatMul", "Gemm", "FusedGemm",
    "MatMulNBits", "LSTM", "GRU", "RNN", "ConvTranspose", "Gather", "Einsum",
}  # fmt: skip
FUSABLE_ACTIVATIONS = frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid"})


def open_session(
    model: onnx.ModelProto | str, providers: list[str], *, mode: str, optimized: str = ""
) -> ort.InferenceSession:
    """``deployed``: default options, what a user's deployment gets. ``written``: no graph
    optimization, every node run as stored."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if mode == "written":
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if optimized:
        so.optimized_model_filepath = optimized
    if isinstance(model, str):
        return _session(model, so, providers)
    # From a file: a session made from bytes keeps them for its life (onnxruntime's
    # InferenceSession holds them as _model_bytes to rebuild itself), a whole serialized
    # model per open session (51 MiB for a 54 MB recognizer's float session).
    with tempfile.TemporaryDirectory(prefix="bitlens-session-") as tmp:
        path = Path(tmp) / "model.onnx"
        with path.open("wb") as f:
            piecewise.write(model, f)  # a node at a time: the window's thread gets the lock
        return _session(str(path), so, providers)


def _session(path: str, so: ort.SessionOptions, providers: list[str]) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(path, sess_options=so, providers=providers)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"ONNX Runtime cannot load the exported model: {first}") from exc


def flat_cat(values: Sequence[np.ndarray]) -> np.ndarray:
    if len(values) == 1:  # one batched feed: a view, no copy
        return np.asarray(values[0]).ravel()
    return np.concatenate([np.asarray(v).ravel() for v in values]) if values else np.zeros(0)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    # equal_nan costs 60x on integer arrays (byte views of weights), where it means nothing
    inexact = a.dtype.kind in "fc" or b.dtype.kind in "fc"
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=inexact)


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def optimized_model(path: str, providers: list[str]) -> onnx.ModelProto:
    """The graph ONNX Runtime actually runs for ``path`` under default options."""
    with tempfile.TemporaryDirectory(prefix="bitlens-opt-") as tmp:
        opt_path = str(Path(tmp) / "optimized.onnx")
        open_session(path, providers, mode="deployed", optimized=opt_path)
        return onnx.load(opt_path)


def _code_distance(
    rec: QuantizerRecord, ref: np.ndarray, got: np.ndarray, offset: int
) -> np.ndarray | None:
    """Per-element LSB distance of one sample's deployed codes in the file's layout (see
    probes.in_layout_of); None when the shapes cannot be matched."""
    ref = np.asarray(ref)
    got = np.asarray(got)
    # integer codes stay integers (int16 holds uint8 - 128): no float64 copy to compare
    wide = np.int16 if got.dtype.kind in "iu" and got.itemsize == 1 else np.float64
    cands = probes.in_layout_of(ref, got.astype(wide) + wide(offset))
    if not cands:
        return None
    dists = [probes.lsb_distance(rec, ref, c) for c in cands]
    return min(dists, key=lambda d: float(d.max()) if d.size else 0.0).ravel()


def deployed_codes(
    optimized: onnx.ModelProto,
    providers: list[str],
    engine: Engine,
    samples: list[int],
    recs: list[QuantizerRecord],
    ref_codes: Sequence[Mapping[str, np.ndarray]],
    dep_out: dict[str, list[np.ndarray]],
    failures: list[str],
) -> list[QuantizerCheck]:
    """Deployed codes of every quantizer vs the as-written run (``ref_codes[k]``: the
    simulated codes of ``samples[k]`` by tensor name).

    Exposing a code tensor of the deployed model as an output would stop ONNX
    Runtime from fusing around it, so the codes are read from the graph ONNX
    Runtime optimized (fused kernels included), saved and re-run with no
    further optimization; its outputs must equal the deployed session's. One
    sample's codes are compared at a time (bitlens.core.export.reductions).
    """
    index = probes.GraphIndex.of(optimized)
    found = {id(rec): probes.locate(optimized, rec, index) for rec in recs}
    wanted = list(dict.fromkeys((loc[0], loc[1]) for loc in found.values() if loc is not None))
    sess = open_session(probes.with_outputs(optimized, wanted), providers, mode="written")
    out_names = list(dep_out)
    code_names = [n for n, _ in wanted]
    agreement = {id(rec): CodeAgreement() for rec in recs}
    reproduced = True
    for k, i in enumerate(samples):
        values = sess.run([*out_names, *code_names], engine.data.samples[i])
        for name, v in zip(out_names, values[: len(out_names)], strict=True):
            reproduced &= same(np.asarray(v), np.asarray(dep_out[name][k]))
        got = dict(zip(code_names, values[len(out_names) :], strict=True))
        del values
        ref = ref_codes[k]
        for rec in recs:
            loc = found[id(rec)]
            if loc is not None:
                tensor, _, offset = loc
                distance = _code_distance(rec, ref[probes.probe_tensor(rec)], got[tensor], offset)
                agreement[id(rec)].add(distance)
        del got, ref
    del sess
    if not reproduced:
        failures.append(
            "ONNX Runtime's optimized graph, re-run as saved, does not reproduce the deployed "
            "outputs; the 1-LSB rule could not be verified"
        )
    checks: list[QuantizerCheck] = []
    for rec in recs:
        if found[id(rec)] is None:  # it exists only inside a fused kernel
            checks.append(
                QuantizerCheck(rec.layer, rec.activation, rec.format, rec.simulated, None, None)
            )
            continue
        a = agreement[id(rec)]
        checks.append(
            QuantizerCheck(rec.layer, rec.activation, rec.format, rec.simulated, a.worst, a.share)
        )
    return checks


def kernels_used(
    optimized: onnx.ModelProto, engine: Engine, records: dict[str, LayerExport]
) -> dict[str, str]:
    """Which operator ONNX Runtime's optimized graph runs for each exported layer."""
    out: dict[str, str] = {}
    nodes = [n for n in iter_nodes(optimized.graph) if n.op_type in COMPUTE_OPS]
    for name, rec in records.items():
        found = _layer_nodes(nodes, engine, engine.info.layer(name), rec)
        out[name] = ", ".join(dict.fromkeys(op_label(n) for n in found)) or "?"
    return out


def _layer_nodes(
    nodes: list[onnx.NodeProto], engine: Engine, layer: Layer, rec: LayerExport
) -> list[onnx.NodeProto]:
    """The nodes of the first rule that finds any: fused nodes keep the weight or the layer's
    name; layout-changed ones (NCHWc) keep only the activation they read. Each rule runs only
    when those before found none (the last walks the whole model for each node before)."""
    signature = {w.name for w in layer.weights}
    signature |= {t.name for e in rec.weights for t in e.stored}
    if found := [n for n in nodes if signature & set(n.input)]:
        return found
    name = layer.name
    if found := [n for n in nodes if n.name == name or n.name.startswith(f"{name}_token")]:
        return found
    inputs = set(layer.activations) | {q.output for q in rec.quantizers}
    if found := [n for n in nodes if n.input and n.input[0] in inputs]:
        return found
    if found := [n for n in nodes if set(layer.outputs) & set(n.output)]:
        return found
    fused = {f"{t}_nchwc" for t in fused_outputs(engine, layer)}
    return [n for n in nodes if n.name in fused]


def fused_outputs(engine: Engine, layer: Layer) -> set[str]:
    """The layer's outputs and those of activations ONNX Runtime fuses into it (NCHWc names
    the fused node after the last of them)."""
    outs = set(layer.outputs)
    for node in engine.info.nodes:
        if node.op_type in FUSABLE_ACTIVATIONS and set(node.inputs) & outs:
            outs |= set(node.outputs)
    return outs


def op_label(node: onnx.NodeProto) -> str:
    if node.domain.endswith("nchwc"):
        return f"{node.op_type} (NCHWc)"
    return node.op_type


# -- one call for the CLI and the window --------------------------------------------------------
