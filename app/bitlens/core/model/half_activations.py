"""Layers whose activations are not float32, as in models stored and run in float16
(or float64, as some scikit-learn conversions compute).

Exporters and converters write whole models in float16 for GPUs (ONNX Runtime's
``convert_float_to_float16``, https://github.com/microsoft/onnxruntime/blob/main/
onnxruntime/python/tools/transformers/float16.py): every weight and activation is float16.
The engine's activation quantizers compute in float32 (engine/rewrite.py refuses any other
dtype), so such a layer can have its weights quantized but not its activations. The presets
and the search leave those activations as the file computes them, and a load note says so:
a W8A8 plan on a float16 model is then int8 weights on float16 activations.
"""

from __future__ import annotations

from bitlens.core.model.types import Layer, ModelInfo


def non_float32_activations(info: ModelInfo, layer: Layer) -> tuple[str, ...]:
    """The layer's activation inputs of a known dtype other than float32."""
    out = []
    for act in layer.activations:
        t = info.value_info.get(act)
        if t is not None and t.dtype != "float32":
            out.append(act)
    return tuple(out)


def quantizable_activations(info: ModelInfo, layer: Layer) -> bool:
    """Whether an activation quantizer can go in front of ``layer``: a main-graph layer
    (If/Loop/Scan bodies cannot expose values) with float32 activations."""
    return (
        bool(layer.activations)
        and not layer.graph_path
        and not non_float32_activations(info, layer)
    )


def half_activations_note(info: ModelInfo) -> str | None:
    """One line for the load notes, or None when every layer's activations are float32."""
    layers = [la for la in info.layers if not la.graph_path and non_float32_activations(info, la)]
    if not layers:
        return None
    dtypes = sorted(
        {info.value_info[a].dtype for la in layers for a in non_float32_activations(info, la)}
    )
    return (
        f"{len(layers)} of {len(info.layers)} layer(s) compute on {'/'.join(dtypes)} activations "
        "(not float32); Bitlens quantizes activations in float32 only, "
        "so the presets and the search quantize these layers' weights and leave their "
        "activations as the file computes them"
    )


def computes_in_half(info: ModelInfo) -> bool:
    """Whether any value of the main graph is float16 or bfloat16."""
    return any(t.dtype in ("float16", "bfloat16") for t in info.value_info.values())


def half_written_note(output: str, diff: float) -> str:
    """Why a float16 model's file, run as written, is not bit-identical to the engine's graph.

    ONNX Runtime's CPU provider runs float16 nodes it has no float16 kernel for in float32
    and removes the casts back to float16 between such nodes, except where a value is a
    graph output (onnxruntime/core/optimizer/insert_cast_transformer.cc). The engine's graph
    outputs every layer's value, so those stay rounded to float16 there and not in the file:
    the same float16 model differs by float16 rounding with and without them (measured on a
    three-layer net: 1.1e-3 on outputs of magnitude 5.4).
    """
    return (
        f"output {output!r} run as written is within float16 rounding of the engine's graph "
        f"(max |Δ| {diff:.3g}), not bit-identical: ONNX Runtime computes this float16 model's "
        "layers in float32 between casts it removes, except at values the engine's graph "
        "outputs"
    )
