"""How far a deployed output may be from the simulation, and why: the verdict levels.

Each model output of an export gets one level, the first that holds:

``bit-exact``
    The deployed output equals the engine's prediction bit for bit.
``float reassociation``
    The largest difference is within :func:`reassociation_tolerance` of the
    output's magnitude. ONNX Runtime's graph optimizations (fusions, NCHWc
    convolutions, pre-packed GEMMs) evaluate the same sums in another order;
    float addition is not associative, so results move by a few units in the
    last place of the narrowest float type on the way.
``integer rounding``
    Larger, but every activation quantizer is within one code step (1 LSB)
    of the as-written run when its own kernel runs alone, as ONNX Runtime's
    integer kernels (QLinearConv, QLinearMatMul, QGemm) document: they
    requantize the int32 accumulator with a fixed-point multiplier, not the
    float division the simulation does
    (https://github.com/microsoft/onnxruntime/blob/main/onnxruntime/core/mlas/lib/quantize.cpp).
    Such steps add up through depth; where an output looks like classes, a
    changed top-1 at any sample and position (see :func:`top1_changes`) is
    flagged as a warning in the report: the export does what the kernels
    document, but the results differ from the simulation, which
    ``bitlens eval --deployed`` shows. A changed top-1 at any other level fails.
``different``
    Anything else. It fails the export, and so does a NaN or infinity in any
    output (:func:`first_nonfinite`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from bitlens.core.formats import Family
from bitlens.core.plan import Plan

BIT_EXACT = "bit-exact"
REASSOCIATION = "float reassociation"
INTEGER = "integer rounding"
DIFFERENT = "different"
LEVELS = (BIT_EXACT, REASSOCIATION, INTEGER, DIFFERENT)

# Unit roundoff u = 2^-(mantissa bits + 1) of each float type values can pass through.
UNIT_ROUNDOFF = {
    "fp64": 2.0**-53, "fp32": 2.0**-24, "fp16": 2.0**-11, "bf16": 2.0**-8,
    "fp8e4m3fn": 2.0**-4, "fp8e5m2": 2.0**-3,
}  # fmt: skip
# Reordering a sum of n terms changes it by at most about 2(n-1)u times the sum of the
# terms' magnitudes (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed.,
# section 4.2: any order is within gamma_{n-1} of the exact sum, so two orders within twice
# that). ORT's kernels reorder dot products of up to about a thousand terms; with the sum of
# magnitudes comparable to the output's own (normalized layers), 2 * 1024 = 2^11 units in
# the last place of the output's magnitude bound what reassociation alone can do in fp32.
REORDER_ULPS = 2.0**11
# Through a narrower float activation format (fp16, bf16, fp8), a reordered fp32 value that
# sits on a rounding boundary rounds to the neighbouring value: one step of that format,
# up or down, carried to the output. Two steps of the output's magnitude bound it.
FLIP_ULPS = 2.0


_HALF_ROUNDOFF = {"float16": UNIT_ROUNDOFF["fp16"], "bfloat16": UNIT_ROUNDOFF["bf16"]}


def narrowest_roundoff(plan: Plan, output_dtype: np.dtype) -> float:
    """The unit roundoff of the narrowest float type an output's values pass through: its
    own dtype, or a float activation format the plan uses (fp16, bf16, fp8)."""
    u = UNIT_ROUNDOFF["fp32"]
    if np.dtype(output_dtype).kind == "f":
        u = max(u, float(np.finfo(output_dtype).eps) / 2)
    for choice in plan.choices.values():
        fmt = choice.activation
        if fmt is not None and fmt.family is Family.FLOAT:
            u = max(u, UNIT_ROUNDOFF.get(fmt.float_kind, u))
    # a model that itself computes in float16 (a GPU export) rounds there whatever the plan
    for t in plan.info.value_info.values():
        if t.dtype in _HALF_ROUNDOFF:
            u = max(u, _HALF_ROUNDOFF[t.dtype])
    return u


def reassociation_tolerance(reference: np.ndarray, u: float) -> float:
    """The largest |deployed - simulated| that float reordering explains for this output.

    ``max(REORDER_ULPS * u32, FLIP_ULPS * u)`` times the output's largest finite magnitude,
    ``u`` from :func:`narrowest_roundoff` (fp32: 1.2e-4 of the magnitude; an fp16
    activation: 9.8e-4; bf16: 7.8e-3). Integer outputs get no tolerance: a class index or
    a count is either the same or not.
    """
    ref = np.asarray(reference)
    if ref.dtype.kind != "f" or ref.size == 0:
        return 0.0
    finite = np.abs(ref[np.isfinite(ref)].astype(np.float64))
    magnitude = float(finite.max()) if finite.size else 0.0
    return magnitude * max(REORDER_ULPS * UNIT_ROUNDOFF["fp32"], FLIP_ULPS * u)


def looks_like_classes(value: np.ndarray, class_scores: bool, axis: int = -1) -> bool:
    """An output whose argmax is a result: integer labels or indices, or float scores the
    engine reads as class scores (``class_scores``, from
    :func:`bitlens.core.output_kind.class_score_axes`, the judgement top-1 and KL use in the
    inspector) with at least two classes on ``axis``, per position too (CTC logits [T, N, C]).
    Embeddings, boxes and feature maps are judged by their drift alone."""
    v = np.asarray(value)
    if v.dtype.kind in "iub":
        return True
    if v.dtype.kind != "f" or v.ndim < 2 or not -v.ndim <= axis < v.ndim:
        return False
    return class_scores and v.shape[axis] >= 2


def top1_changes(
    want: Sequence[np.ndarray], got: Sequence[np.ndarray], tolerance: float, axis: int = -1
) -> tuple[float, int]:
    """(agreement, real changes) of per-position results, simulated vs deployed.

    Integer outputs compare element by element. Float scores compare the argmax over
    ``axis`` (the classes' axis, the last unless a Softmax says otherwise); a change counts
    as real only where the simulated winner led the runner-up by more than ``tolerance`` (a near-tie that reordering alone can flip is not a result
    the simulation promised).
    """
    total = agree = real = 0
    for w, g in zip(want, got, strict=True):
        w, g = np.asarray(w), np.asarray(g)
        if w.shape != g.shape:
            return 0.0, max(1, w.size)
        if w.dtype.kind in "iub":
            same = w == g
            total += same.size
            agree += int(same.sum())
            real += int((~same).sum())
            continue
        aw, ag = np.argmax(w, axis=axis), np.argmax(g, axis=axis)
        same = aw == ag
        top2 = np.moveaxis(np.sort(w, axis=axis), axis, -1)[..., -2:]
        margin = top2[..., 1] - top2[..., 0]
        total += same.size
        agree += int(same.sum())
        real += int(np.sum(~same & (margin > tolerance)))
    return (agree / total if total else 1.0), real


def nonfinite(values: Sequence[np.ndarray]) -> bool:
    return any(np.asarray(v).dtype.kind == "f" and not np.isfinite(v).all() for v in values)


def first_nonfinite(
    model: onnx.ModelProto,
    feeds: Sequence[Mapping[str, np.ndarray]],
    layer_outputs: Mapping[str, str],
    providers: Sequence[str],
) -> tuple[str, int] | None:
    """The first layer (in graph order) whose output holds a NaN or infinity, and the
    sample, running ``model`` with ``layer_outputs`` (layer -> tensor, all graph outputs of
    ``model``) exposed and graph optimizations off; None when none does."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=list(providers))
    order = {n: i for i, n in enumerate(_topological_outputs(model))}
    names = sorted(layer_outputs, key=lambda k: order.get(layer_outputs[k], len(order)))
    wanted = {i.name for i in sess.get_inputs()}
    fetch = [layer_outputs[n] for n in names]
    for k, feed in enumerate(feeds):
        values = sess.run(fetch, {n: v for n, v in feed.items() if n in wanted})
        for name, v in zip(names, values, strict=True):
            if np.asarray(v).dtype.kind == "f" and not np.isfinite(v).all():
                return name, k
    return None


def _topological_outputs(model: onnx.ModelProto) -> list[str]:
    return [o for node in model.graph.node for o in node.output]
