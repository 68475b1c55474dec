"""Running models whose file IR version is newer than the installed ONNX Runtime reads.

The IR version only describes the file format; what a runtime must implement
is set by the opsets. ``onnx`` 1.19 and later save IR 12+ by default while
ONNX Runtime releases lag behind ("Unsupported model IR version: 14, max
supported IR version: 13", one of the most reported ORT errors, e.g.
https://github.com/microsoft/onnxruntime/issues/16638). Bitlens never writes
the user's file, so its in-memory copy is lowered to the highest IR version
the runtime reads whenever the model's opsets allow that version; exports
inherit it, so they load in the same runtime.
"""

from __future__ import annotations

from functools import cache

import onnx
from onnx import helper

# ONNX Runtime 1.20, the oldest release Bitlens supports (pyproject.toml), reads IR 10:
# files at or below it need no probe (and no onnxruntime import just to inspect them).
ORT_MIN_READS_IR = 10


@cache
def ort_max_ir_version() -> int:
    """The highest IR version the installed ONNX Runtime loads, found by trying.

    ORT exposes no API for it (https://github.com/microsoft/onnxruntime/issues/14932); loading a one-node model at each IR version from
    the newest ``onnx`` knows downwards costs a few milliseconds per try.
    """
    import onnxruntime as ort

    for ir in range(max(onnx.IR_VERSION, ORT_MIN_READS_IR), ORT_MIN_READS_IR, -1):
        if _loads(ort, ir):
            return ir
    return ORT_MIN_READS_IR


def _loads(ort, ir: int) -> bool:  # type: ignore[no-untyped-def]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = ir
    so = ort.SessionOptions()
    so.log_severity_level = 4
    try:
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception:  # ORT raises its own exception types for an unsupported IR version
        return False
    return True


def ir_needed(model: onnx.ModelProto) -> int:
    """The lowest IR version that can declare the model's opsets."""
    return int(helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True))


def _ort_version() -> str:
    import onnxruntime as ort

    return str(ort.__version__)


def fit_ir_version(model: onnx.ModelProto) -> str | None:
    """Lower ``model.ir_version`` in place to what ONNX Runtime reads, when the opsets allow it.

    Returns a one-line note for the user when the version was lowered or cannot
    be, else None. The caller owns ``model`` (an in-memory copy, never the user's file).
    """
    file_ir = int(model.ir_version)
    if file_ir <= ORT_MIN_READS_IR:
        return None
    ort_max = ort_max_ir_version()
    if file_ir <= ort_max:
        return None
    needed = ir_needed(model)
    if needed > ort_max:
        return (
            f"the file is IR version {file_ir} and its opsets need IR {needed}, but ONNX Runtime "
            f"{_ort_version()} reads IR {ort_max} at most: update onnxruntime to evaluate or export it"
        )
    model.ir_version = ort_max
    return (
        f"the file is IR version {file_ir}; ONNX Runtime {_ort_version()} reads IR {ort_max} at most, "
        f"so Bitlens runs it as IR {ort_max} in memory (the file is not changed)"
    )


def drop_constant_inputs(model: onnx.ModelProto) -> int:
    """Below IR 4, remove from the main graph's inputs the initializers listed there.

    IR 3 and older required every initializer to be declared as a graph input, yet ONNX
    Runtime lets no input override one in such a file (``Graph::CanOverrideInitializer``
    is ``ir_version_ >= 4``: onnxruntime/core/graph/graph.h), so they are constants it folds
    and fuses. Every model Bitlens derives from the file (the opset upgrade, the simulation
    graphs, the export) is written at IR 4 or later, where the same declarations make the
    weights overridable inputs: ORT then optimizes less, the float outputs moved by float
    reassociation (3e-7 on a Conv + Gemm), the opset 9 to 11 upgrade was refused as "outputs
    differ", and every 8-bit activation was refused with it. Dropping the declarations keeps
    the model ORT runs for the file, bit for bit, in the in-memory copy only; that copy is
    IR 4 (onnx's version converter, like IR 3 itself, refuses an initializer that is not
    an input: "Input w is undefined!"). Returns the file's IR version.
    """
    file_ir = int(model.ir_version)
    if not 0 < file_ir < 4:
        return file_ir
    names = {t.name for t in model.graph.initializer}
    keep = [vi for vi in model.graph.input if vi.name not in names]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.ir_version = 4
    return file_ir


def check_runnable(model: onnx.ModelProto) -> str | None:
    """A one-line reason ONNX Runtime cannot load ``model`` for its IR version, or None."""
    if model.ir_version <= ORT_MIN_READS_IR or model.ir_version <= ort_max_ir_version():
        return None
    return (
        f"the model is IR version {model.ir_version} (its opsets need IR {ir_needed(model)}), but "
        f"ONNX Runtime {_ort_version()} reads IR {ort_max_ir_version()} at most: update onnxruntime"
    )
