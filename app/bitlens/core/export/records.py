"""What an export writes and reports: its options and its per-layer and whole-file records."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnx

from bitlens.core.errors import ExportError
from bitlens.core.export.activations import QuantizerRecord
from bitlens.core.export.bias import BiasRecord
from bitlens.core.export.editing import field_bytes
from bitlens.core.export.focus import FocusRecord
from bitlens.core.export.spacetodepth import SpaceToDepthRecord
from bitlens.core.export.spilled import SpilledModel
from bitlens.core.export.weights import FOLD, QDQ, WeightEncoding
from bitlens.core.quantized import QuantizedModel


@dataclass(frozen=True)
class ExportOptions:
    """What the user can choose about the exported file.

    ``weights``: "fold" (compact codes + a constant subgraph ONNX Runtime
    folds to float at load: exact, float speed) or "qdq" (DequantizeLinear
    on native int8/int16/int4/fp8 types, the format other runtimes read;
    formats without a native type stay "fold"). ``matmulnbits``: MatMul
    weights in 2/4/8-bit blocks along K become MatMulNBits. ``int2_qdq``:
    with "qdq", store int2 natively (opset 25, ONNX Runtime 1.24 or later).
    ``int32_bias``: quantize Conv/Gemm biases of integer-kernel layers to
    int32 (QGemm needs it). ``opset``: force the exported opset.
    """

    weights: str = FOLD
    matmulnbits: bool = False
    int2_qdq: bool = False
    int32_bias: bool = True
    opset: int | None = None

    def __post_init__(self) -> None:
        if self.weights not in (FOLD, QDQ):
            raise ExportError(f"weights must be {FOLD!r} or {QDQ!r}, not {self.weights!r}")


@dataclass(frozen=True)
class LayerExport:
    name: str
    op_type: str
    weight_format: str | None
    activation_format: str | None
    dynamic: bool
    weights: tuple[WeightEncoding, ...]
    quantizers: tuple[QuantizerRecord, ...]
    integer_kernel: bool  # written as a QDQ group ONNX Runtime can fuse into an integer kernel
    bias: BiasRecord | None
    bytes_planned: int  # the plan's accounting (storage_bytes of the bound format)
    bytes_stored: int  # the bytes of the initializers the export wrote for the weights
    notes: tuple[str, ...] = ()
    # net bytes the layer adds to the file: its stored tensors, nodes and names, minus the
    # float weights it replaces (negative when it saves bytes)
    bytes_file: int = 0
    # float bytes of the weights it replaces
    bytes_float: int = 0
    # integer-kernel layers: the step of their int32 accumulator, s_x * max(s_w)
    accumulator_lsb: float | None = None
    # a stem conv written as SpaceToDepth + a stride-1 conv (bitlens.core.export.spacetodepth)
    space_to_depth: SpaceToDepthRecord | None = None
    # a Focus stem before it written as SpaceToDepth (bitlens.core.export.focus)
    focus: FocusRecord | None = None


@dataclass(frozen=True)
class ExportResult:
    path: Path
    source_opset: int
    opset: int
    ir_version: int
    min_ort: str
    converted: bool
    options: ExportOptions
    layers: dict[str, LayerExport]
    file_bytes: int
    source_bytes: int
    notes: tuple[str, ...] = field(default_factory=tuple)
    accounted_bytes: int = 0  # Built.accounted_bytes: the accounting's prediction of file_bytes
    # the deployment target's quantizers on tensors other than layer inputs
    tensor_quantizers: tuple[QuantizerRecord, ...] = ()
    target: str = "none"
    quantized: QuantizedModel | None = None  # the weights and ranges the export wrote


@dataclass(frozen=True)
class Built:
    """An export built in memory, not yet written (see :func:`build`)."""

    model: onnx.ModelProto
    source_opset: int
    opset: int
    min_ort: str
    converted: bool
    layers: dict[str, LayerExport]
    base_bytes: int  # the model the layers were written into (after any opset conversion)
    notes: tuple[str, ...]
    base_header: int = 0  # its metadata and opset imports, which the export rewrites
    tensor_bytes: int = 0  # the deployment target's tensor quantizers (nodes, scales, zeros)
    tensor_quantizers: tuple[QuantizerRecord, ...] = ()  # those no layer reports as its own
    target: str = "none"
    quantized: QuantizedModel | None = None  # the weights and ranges written
    source_bytes: int = 0  # sizing.file_bytes of the source model
    serialized: bytes = field(default=b"", repr=False)  # ``model`` serialized: the file's bytes

    @property
    def accounted_bytes(self) -> int:
        """The file size the accounting predicts: the base model, each layer's net bytes
        (codes, scales, zero points, codebooks, nodes, minus the float weights removed) and
        the export record; measured apart from serializing the whole model."""
        # the export record and any opset import the layers added (MatMulNBits' domain)
        header = sum(field_bytes(p.ByteSize()) for p in self.model.metadata_props)
        header += sum(field_bytes(o.ByteSize()) for o in self.model.opset_import)
        return self.base_bytes - self.base_header + header + self.tensor_bytes + sum(
            r.bytes_file for r in self.layers.values()
        )


@dataclass(frozen=True)
class Prepared:
    """What :func:`preflight` settled: the opset and the (converted) model to write into."""

    source_opset: int
    opset: int
    # the converted model, on disk until the export is built (bitlens.core.export.spilled);
    # None: the source model at its own opset
    converted_file: SpilledModel | None
    kernels: frozenset[str]
    notes: tuple[str, ...]
    # Sizes of the model every build from this preparation starts from (the source's, the
    # copy's graph and file), measured by the first build: each is a whole-model
    # serialization (upb sizes a message by encoding it), and the search builds dozens of
    # exports from one preparation (core/search/filesize.py, core/search/overheads.py).
    # Shared by the copies ``dataclasses.replace`` makes for other kernels.
    start_sizes: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def converted(self) -> onnx.ModelProto | None:
        """The converted model, a new proto at each call (None: no conversion)."""
        return None if self.converted_file is None else self.converted_file.load()
