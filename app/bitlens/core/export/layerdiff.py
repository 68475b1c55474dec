"""Per layer: the deployed model's value at the layer's output against the simulation's.

The deployed side reads tensors that exist inside ONNX Runtime's optimized
graph. Fetching an intermediate tensor of the default session would stop the
fusions around it (a DequantizeLinear that feeds a graph output is not fused
into QLinearConv), so, as the fidelity check does
(:func:`bitlens.core.export.deployed.deployed_codes`), the graph ONNX Runtime
optimized is saved once and re-run with no further optimization and the
layer outputs added as graph outputs; its model outputs are compared with the
default session's to prove it is the same computation.

For a layer whose output the target requantizes (QLinearConv, QLinearAdd's
inputs...), the values compared are the integer codes of that quantizer:
the fused kernel's uint8 output against the simulation's fake-quant value
turned back into codes, in steps (LSB). A layer whose output stays float is
compared in float. A tensor that only lives inside a fused kernel is named
as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from bitlens.core import metrics
from bitlens.core.engine import rewrite
from bitlens.core.engine.graphs import iter_nodes
from bitlens.core.export import probes
from bitlens.core.export.activations import QuantizerRecord
from bitlens.core.model.types import ModelInfo
from bitlens.core.targets import ABSORBED


@dataclass(frozen=True)
class Probe:
    """Where one layer's output is read in both runs."""

    layer: str
    tensor: str  # the model's tensor compared (the layer output, or after an absorbed Relu)
    deployed: str  # its name in ONNX Runtime's optimized graph ("" when not observable)
    simulated: str  # its name in the engine's simulation graph
    record: QuantizerRecord | None  # the requantizing quantizer; None: compared in float
    offset: int = 0  # our code = their code + offset (ORT turns int8 pairs into uint8)


@dataclass(frozen=True)
class LayerDifference:
    """Deployed vs simulated at one layer's output, over the evaluation samples."""

    layer: str
    tensor: str
    kind: str  # "codes": requantized output, compared in LSB; "float"; "fused": not observable
    max_lsb: float | None  # codes only: max |deployed - simulated| in quantization steps
    mismatch: float | None  # fraction of the values that differ at all
    max_abs: float | None  # max |deployed - simulated| in the tensor's own units
    sqnr_db: float | None  # deployed against simulated (inf: identical)

    @property
    def exact(self) -> bool:
        return self.mismatch == 0.0

    def describe(self) -> str:
        if self.kind == "fused":
            return "inside a fused kernel (not observable)"
        if self.exact:
            return "bit-exact"
        pct = 100 * (self.mismatch or 0.0)
        if self.kind == "codes":
            return f"max {self.max_lsb:.0f} LSB, {pct:.2g}% of codes differ"
        return f"max |Δ| {self.max_abs:.3g}, {pct:.2g}% differ"

    def to_dict(self) -> dict[str, object]:
        return {
            "layer": self.layer,
            "tensor": self.tensor,
            "kind": self.kind,
            "max_lsb": self.max_lsb,
            "mismatch": self.mismatch,
            "max_abs": self.max_abs,
            "sqnr_db": self.sqnr_db,
        }


def plan_probes(
    info: ModelInfo,
    optimized: onnx.ModelProto,
    tensor_quantizers: Sequence[QuantizerRecord],
) -> list[Probe]:
    """One probe per main-graph layer with an output."""
    by_tensor = {rec.activation: rec for rec in tensor_quantizers}
    consumers: dict[str, list] = {}
    for n in info.nodes:
        if not n.graph_path:
            for t in n.inputs:
                consumers.setdefault(t, []).append(n)
    produced = {o for n in iter_nodes(optimized.graph) for o in n.output}
    index = probes.GraphIndex.of(optimized)
    out: list[Probe] = []
    for layer in info.layers:
        if layer.graph_path or not layer.outputs:
            continue
        t = layer.outputs[0]
        chain = [t]
        while len(consumers.get(t, [])) == 1 and consumers[t][0].op_type in ABSORBED:
            t = consumers[t][0].outputs[0]
            chain.append(t)
        rec = next((by_tensor[c] for c in chain if c in by_tensor), None)
        if rec is not None:
            loc = probes.locate(optimized, rec, index) or _kernel_output(optimized, layer.name, rec)
            sim = f"{rec.activation}__tq"
            if loc is None:
                out.append(Probe(layer.name, rec.activation, "", sim, rec))
            else:
                out.append(Probe(layer.name, rec.activation, loc[0], sim, rec, loc[2]))
            continue
        first = layer.outputs[0]
        out.append(Probe(layer.name, first, first if first in produced else "", first, None))
    return out


# Fused kernels whose output is the requantized layer output: index of (y_scale, y_zero_point)
_KERNEL_Y = {"QLinearConv": 6, "QLinearMatMul": 6, "QGemm": 7}


def _kernel_output(
    optimized: onnx.ModelProto, layer: str, rec: QuantizerRecord
) -> tuple[str, int, int] | None:
    """The output of the fused kernel ONNX Runtime made of ``layer`` and its output quantizer
    (the QuantizeLinear is gone: QLinearConv writes the codes under its own name), checked by
    its output scale and zero point."""
    inits = {t.name: t for t in optimized.graph.initializer}
    ours = probes.code_type(rec)
    for n in iter_nodes(optimized.graph):
        k = _KERNEL_Y.get(n.op_type)
        if k is None or not (n.name == layer or n.name.startswith(f"{layer}_token")):
            continue
        if len(n.input) <= k + 1 or n.input[k] not in inits or n.input[k + 1] not in inits:
            continue
        scale = numpy_helper.to_array(inits[n.input[k]])
        zp_t = inits[n.input[k + 1]]
        zp = numpy_helper.to_array(zp_t)
        if scale.size != 1 or np.float32(scale.ravel()[0]) != np.float32(rec.scale):
            continue
        offset = 0
        if ours == onnx.TensorProto.INT8 and zp_t.data_type == onnx.TensorProto.UINT8:
            offset = -128  # ORT's int8 -> uint8 activation pairs (qdq_s8_to_u8)
        if int(zp.ravel()[0]) + offset != int(rec.zero_point or 0):
            continue
        return n.output[0], zp_t.data_type, offset
    return None


def probe_model(optimized: onnx.ModelProto, found: Sequence[Probe]) -> onnx.ModelProto:
    """ONNX Runtime's optimized graph with every observable probe as an extra output."""
    elem = {
        p.deployed: (probes.code_type(p.record) if p.record is not None else onnx.TensorProto.FLOAT)
        for p in found
        if p.deployed
    }
    theirs = {p.deployed: onnx.TensorProto.UINT8 for p in found if p.deployed and p.offset == -128}
    return probes.with_outputs(optimized, [(t, theirs.get(t, e)) for t, e in elem.items()])


def sim_model(sim: onnx.ModelProto, info: ModelInfo, found: Sequence[Probe]) -> onnx.ModelProto:
    """The engine's simulation graph with every probe's simulated tensor as an output."""
    out = onnx.ModelProto()
    out.CopyFrom(sim)
    have = {o.name for o in out.graph.output}
    for p in found:
        if p.simulated in have:
            continue
        have.add(p.simulated)
        vi = rewrite.value_info_for(info, p.tensor)
        vi.name = p.simulated
        out.graph.output.append(vi)
    return out


class Accumulator:
    """Collects one probe's differences sample by sample (nothing kept but the sums)."""

    def __init__(self, probe: Probe):
        self.probe = probe
        self.max_lsb = 0.0
        self.differ = 0
        self.sums = metrics.ErrorSums()

    def add(self, deployed: np.ndarray, simulated: np.ndarray) -> None:
        rec = self.probe.record
        sim = np.asarray(simulated, np.float32)
        deployed = _layout_of(np.asarray(deployed), sim.shape)
        if rec is not None:
            assert rec.scale is not None and rec.zero_point is not None
            scale, zp = np.float32(rec.scale), np.float32(rec.zero_point)
            codes = np.asarray(deployed, np.float64) + self.probe.offset
            # the simulation stores (code - zp) * scale in float32: exact to recover the code
            sim_codes = np.rint(sim.astype(np.float64) / np.float64(scale)) + float(zp)
            if codes.shape != sim_codes.shape:
                raise ValueError(f"{self.probe.tensor}: shapes {codes.shape} vs {sim.shape}")
            diff = np.abs(codes - sim_codes)
            dep = ((codes - float(zp)).astype(np.float32) * scale).astype(np.float64)
            self.max_lsb = max(self.max_lsb, float(diff.max()) if diff.size else 0.0)
        else:
            dep = np.asarray(deployed, np.float64)
            if dep.shape != sim.shape:
                raise ValueError(f"{self.probe.tensor}: shapes {dep.shape} vs {sim.shape}")
            diff = np.abs(dep - sim)
        self.differ += int(np.count_nonzero(diff))
        self.sums.add(sim.astype(np.float64), dep)

    def result(self) -> LayerDifference:
        p = self.probe
        s = self.sums
        return LayerDifference(
            p.layer, p.tensor, "codes" if p.record is not None else "float",
            self.max_lsb if p.record is not None else None,
            self.differ / s.count if s.count else 0.0, s.max_abs, s.sqnr_db,
        )  # fmt: skip


def _layout_of(deployed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``deployed`` in the model's layout: ONNX Runtime runs QLinearConv and its neighbours
    channels-last (NHWC) and keeps intermediate tensors so."""
    if deployed.shape == shape or deployed.ndim < 3:
        return deployed
    back = (0, deployed.ndim - 1, *range(1, deployed.ndim - 1))
    if tuple(deployed.shape[i] for i in back) == tuple(shape):
        return deployed.transpose(back)
    return deployed


def fused(probe: Probe) -> LayerDifference:
    return LayerDifference(probe.layer, probe.tensor, "fused", None, None, None, None)
