"""Weights in the exported file: compact codes plus the exact subgraph that rebuilds them.

Two encodings, both reproducing :func:`bitlens.core.formats.dequantize` bit
for bit (the values the inspector simulated):

* **folded** (default): the codes are stored as compactly as the format
  allows (n-bit packed streams, native int8/int16, fp8, fp16, bf16), with
  their scales, zero points and level tables, and rebuilt by a subgraph of
  constant-only operators (Cast, Sub, Mul, Gather, Where...). ONNX Runtime
  folds that subgraph into a float tensor when it builds the session, so the
  layer then runs the same float operator the inspector simulated, at float
  speed. It uses no DequantizeLinear on purpose: ONNX Runtime rewrites a
  constant DequantizeLinear feeding a MatMul or Gemm into ``MatMulNBits``
  with int8 activations (``accuracy_level`` 4), which is not what was
  simulated (FACTS.md).
* **qdq**: a standard DequantizeLinear on a native ONNX type (int8, uint8,
  int16, uint16, int4, uint4, int2, uint2, fp8) with per-axis or blocked
  parameters. The exporter uses it where an integer kernel should run
  (2- to 8-bit weights next to 8-bit activations) or when the user asks for QDQ.
  An integer-kernel layer's narrower codes reach an int8/uint8 DequantizeLinear
  through a constant subgraph (``widen``): 4-bit codes stored as INT4/UINT4 and
  Cast; 2-, 3-, 5-, 6- and 7-bit codes (and 4-bit ones below opset 21) stored
  as an n-bit packed stream, unpacked and Cast, their zero points likewise (or
  made by a ConstantOfShape where all are 0). ONNX Runtime folds it at load,
  and its QDQ fusions only take 8-bit weights
  (bitlens.core.targets.KERNEL_WEIGHT_BITS).

Every element of the level arithmetic matches the codec: a uniform code
``q`` with zero point ``z`` becomes ``float32(q - z) * scale``; the stored
offset code ``u = q - qmin`` and offset zero point ``z' = z - qmin`` give
the same exact integer ``u - z'`` in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import numpy_helper

from bitlens.core.export.graph import GraphBuilder, rename_output
from bitlens.core.export.packing import pack, packed_size, unpack_nodes
from bitlens.core.formats import Family, Format, Granularity, Grouping, QTensor, family_of, quantize
from bitlens.core.model.types import WeightInfo

FOLD = "fold"
QDQ = "qdq"
# How an integer-kernel layer's sub-8-bit codes reach the 8-bit DequantizeLinear its kernel
# needs: Cast from their native type (INT4, opset 21), or, below opset 21, unpacked from an
# n-bit packed stream and Cast (opset 13 operators). Both are constant subgraphs ONNX Runtime
# folds into an int8/uint8 initializer before its QDQ fusions.
CAST = "cast"
PACKED = "packed"

_ONNX_FLOAT = {"float32": 1, "float16": 10, "float64": 11, "bfloat16": 16}


@dataclass(frozen=True)
class StoredTensor:
    """One initializer holding (part of) a quantized weight."""

    name: str
    role: str  # "codes", "scale", "zero_point", "levels", "codebook"
    dtype: str  # the ONNX element type ("uint8 (4-bit packed)", "int4", "float32", ...)
    bits: int  # logical bits per stored element (the n of an n-bit packed stream)
    count: int  # logical elements
    nbytes: int  # bytes of the initializer's data in the file


@dataclass(frozen=True)
class WeightEncoding:
    """How one weight was written, for the fidelity check and the report."""

    weight: str
    format: str  # bound format name
    scheme: str  # "packed", "native", "qdq", "cast", "matmulnbits"
    description: str
    stored: tuple[StoredTensor, ...]
    folded: bool  # constant subgraph ONNX Runtime folds to float when the session starts
    min_opset: int

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.stored)


def native_qdq_dtype(fmt: Format, allow_int2: bool) -> np.dtype | None:
    """The numpy dtype DequantizeLinear can read the format's codes as, if any."""
    return family_of(fmt).native_qdq_dtype(fmt, allow_int2)


# From this many channels, symmetric 8-bit zero points (all 0) are made at load by a
# ConstantOfShape rather than stored: the node, its shape and names cost about 90 bytes (87
# on a 16 x 16 Gemm's weight, measured on the file), a byte per channel above that.
ZEROS_AT_LOAD_MIN = 128


def encode_weight(
    b: GraphBuilder,
    w: WeightInfo,
    value: np.ndarray,
    fmt: Format,
    *,
    mode: str = FOLD,
    allow_int2: bool = False,
    zero_point: bool = False,
) -> WeightEncoding | None:
    """Add nodes producing tensor ``w.name`` (same dtype and shape as ``value``).

    ``fmt`` must be bound to an axis. Returns None when the format leaves the
    weight as it is (fp32 on a float32 weight, fp64 on any float weight).
    """
    plain = family_of(fmt).plain_dtype(fmt)
    if plain is not None and plain.itemsize >= value.dtype.itemsize:
        return None
    q = quantize(value, fmt, what=f"weight {w.name!r}")
    return encode_qtensor(b, w, q, value.dtype, mode=mode, allow_int2=allow_int2,
                          zero_point=zero_point)  # fmt: skip


def encode_qtensor(
    b: GraphBuilder,
    w: WeightInfo,
    q: QTensor,
    dtype: np.dtype,
    *,
    mode: str = FOLD,
    allow_int2: bool = False,
    zero_point: bool = False,
    widen: str | None = None,
    zeros_at_load: bool = True,
) -> WeightEncoding:
    """Add nodes producing tensor ``w.name`` (of ``dtype``) from the quantized ``q``.

    ``zero_point``: write the zero point out even where it is 0 (symmetric codes); all-zero
    8-bit ones are then made at load by a ConstantOfShape unless ``zeros_at_load`` is False
    (TensorRT wants them stored). ``widen`` (QDQ mode, codes narrower than 8 bits), as integer kernels need 8-bit codes:
    :data:`CAST` stores them in their native type and Casts them to int8/uint8 before the
    DequantizeLinear; :data:`PACKED` stores them as an n-bit packed stream, unpacked and Cast."""
    fmt = q.fmt
    if mode == QDQ and widen == PACKED and fmt.bits < 8:  # any width: no native type needed
        return _qdq(b, w, q, _WIDE_INT[fmt.signed][0], dtype, zero_point, widen)
    if mode == QDQ and (dt := native_qdq_dtype(fmt, allow_int2)) is not None:
        return _qdq(b, w, q, dt, dtype, zero_point, widen, zeros_at_load)
    if not fmt.has_scale:
        return _cast(b, w, q, dtype)
    return _folded(b, w, q, dtype)


# -- storage helpers ---------------------------------------------------------------------
def _store(b: GraphBuilder, hint: str, array: np.ndarray, role: str, bits: int | None = None,
           count: int | None = None, label: str | None = None) -> tuple[str, StoredTensor]:  # fmt: skip
    tensor = numpy_helper.from_array(np.asarray(array), hint)
    name = b.add_initializer(tensor)
    nbytes = len(tensor.raw_data) if tensor.raw_data else np.asarray(array).nbytes
    dtype = label or np.asarray(array).dtype.name
    n = int(np.asarray(array).size) if count is None else count
    elem_bits = bits if bits is not None else np.asarray(array).dtype.itemsize * 8
    return name, StoredTensor(name, role, dtype, elem_bits, n, nbytes)


def _store_codes(b: GraphBuilder, hint: str, codes: np.ndarray, bits: int, role: str = "codes"):
    """Unsigned codes below 2**bits: native uint8 at 8 bits, else an n-bit packed stream.

    Returns (flat int64 codes tensor name, StoredTensor)."""
    flat = np.asarray(codes).ravel()
    if bits == 8:
        name, st = _store(b, hint, flat.astype(np.uint8), role)
        return b.node("Cast", [name], to=int(b.INT64)), st
    name, st = _store(
        b,
        hint,
        pack(flat, bits),
        role,
        bits=bits,
        count=flat.size,
        label=f"uint8 ({bits}-bit packed)",
    )
    return unpack_nodes(b, name, bits, flat.size, hint), st


def _packed_codes(
    b: GraphBuilder, hint: str, codes: np.ndarray, bits: int, qmin: int, shape: tuple[int, ...],
    step: int = 1,
) -> tuple[str, StoredTensor]:
    """Integer codes (or zero points) of ``shape`` stored as an n-bit packed stream of offset
    codes ``u = (q - qmin) / step`` and rebuilt as int64 ``q`` by opset-13 operators
    (constant: ONNX Runtime folds them when the session starts)."""
    role = "zero_point" if hint == "zp" else "codes"
    u = (np.asarray(codes).astype(np.int32) - qmin) // step
    flat, st = _store_codes(b, hint, u, bits, role)
    name = b.node("Reshape", [flat, _shape_const(b, f"{hint}_shape", shape)])
    if step != 1:
        name = b.node("Mul", [name, b.const(f"{hint}_step", np.array(step, np.int64))])
    if qmin:
        name = b.node("Add", [name, b.const(f"{hint}_qmin", np.array(qmin, np.int64))])
    return name, st


def _shape_const(b: GraphBuilder, hint: str, shape: tuple[int, ...]) -> str:
    return b.const(hint, np.array(shape, np.int64))


def _broadcast(b: GraphBuilder, src: str, g: Grouping, hint: str) -> str:
    """A per-group parameter (in ``g.param_shape``) made broadcastable against the tensor."""
    if g.granularity is Granularity.TENSOR:
        return src
    if g.granularity is Granularity.CHANNEL:
        shape = [1] * len(g.shape)
        shape[g.axis] = g.shape[g.axis]
        return b.node("Reshape", [src, _shape_const(b, f"{hint}_bshape", tuple(shape))])
    a, bs, nb = g.axis, g.block_size, g.n_blocks
    pshape = list(g.param_shape)
    wide = b.node("Unsqueeze", [src, b.const(f"{hint}_uaxis", np.array([a + 1], np.int64))])
    expanded = [*pshape[: a + 1], bs, *pshape[a + 1 :]]
    rep = b.node("Expand", [wide, _shape_const(b, f"{hint}_eshape", tuple(expanded))])
    merged = pshape.copy()
    merged[a] = nb * bs
    out = b.node("Reshape", [rep, _shape_const(b, f"{hint}_mshape", tuple(merged))])
    if nb * bs != g.shape[a]:
        out = b.node(
            "Slice",
            [
                out,
                b.const(f"{hint}_s0", np.array([0], np.int64)),
                b.const(f"{hint}_s1", np.array([g.shape[a]], np.int64)),
                b.const(f"{hint}_sax", np.array([a], np.int64)),
            ],
        )
    return out


def _finish(b: GraphBuilder, value: str, dtype: np.dtype, out: str) -> None:
    """Cast the float32 reconstruction to the weight's own type and name it ``out``."""
    if dtype != np.float32:
        value = b.node("Cast", [value], to=_ONNX_FLOAT[np.dtype(dtype).name])
    rename_output(b, value, out)


def _granularity_text(g: Grouping) -> str:
    if g.granularity is Granularity.TENSOR:
        return "per tensor"
    if g.granularity is Granularity.CHANNEL:
        return f"per channel (axis {g.axis})"
    return f"blocks of {g.block_size} (axis {g.axis})"


# -- encodings ------------------------------------------------------------------------------
def _cast(b: GraphBuilder, w: WeightInfo, q: QTensor, dtype: np.dtype) -> WeightEncoding:
    name, st = _store(b, "w", q.codes, "codes")
    out = b.node("Cast", [name], to=_ONNX_FLOAT[np.dtype(dtype).name])
    rename_output(b, out, w.name)
    text = f"{q.fmt.name} values, Cast to {np.dtype(dtype).name} (folded when the session starts)"
    min_opset = family_of(q.fmt).export_min_opset(q.fmt, False)
    return WeightEncoding(w.name, q.fmt.name, "cast", text, (st,), True, min_opset)


class _Fold:
    """The exporter's side of a family's folded encoding (``formats.family.FoldContext``):
    every tensor a family stores is recorded for the fidelity check and the accounting."""

    def __init__(self, b: GraphBuilder, g: Grouping) -> None:
        self.b, self.grouping = b, g
        self.granularity_text = _granularity_text(g)
        self.stored: list[StoredTensor] = []
        self._shape_name: str | None = None

    @property
    def _shape(self) -> str:
        # Made on first use only: formats whose codes keep the weight's shape (int8 Cast
        # and scale) never read it, and an unread initializer makes ONNX Runtime log a
        # "Removing initializer" warning at every session start of the exported file.
        if self._shape_name is None:
            self._shape_name = _shape_const(self.b, "shape", self.grouping.shape)
        return self._shape_name

    def node(self, op: str, inputs: list[str], **attrs: object) -> str:
        return self.b.node(op, inputs, **attrs)

    def const(self, hint: str, value: np.ndarray) -> str:
        return self.b.const(hint, value)

    def to_float(self, name: str) -> str:
        return self.b.node("Cast", [name], to=int(self.b.FLOAT))

    def store(self, array: np.ndarray, role: str, hint: str, *, bits: int | None = None,
              label: str | None = None) -> str:  # fmt: skip
        name, st = _store(self.b, hint, array, role, bits=bits, label=label)
        self.stored.append(st)
        return name

    def codes(self, codes: np.ndarray, bits: int, role: str = "codes") -> str:
        flat, st = _store_codes(self.b, "codes", codes, bits, role)
        self.stored.append(st)
        return self.b.node("Reshape", [flat, self._shape])

    def packed_params(
        self, values: np.ndarray, bits: int, role: str, hint: str, shape_hint: str
    ) -> str:
        flat, st = _store_codes(self.b, hint, values, bits, role=role)
        self.stored.append(st)
        pshape = _shape_const(self.b, shape_hint, self.grouping.param_shape)
        wide = self.to_float(self.b.node("Reshape", [flat, pshape]))
        return self.broadcast(wide, hint)

    def param(self, values: np.ndarray, role: str, hint: str) -> str:
        return self.broadcast(self.store(np.asarray(values, np.float32), role, hint), hint)

    def broadcast(self, name: str, hint: str) -> str:
        return _broadcast(self.b, name, self.grouping, hint)


def _folded(b: GraphBuilder, w: WeightInfo, q: QTensor, dtype: np.dtype) -> WeightEncoding:
    ctx = _Fold(b, q.grouping)
    enc = family_of(q.fmt).encode(ctx, q)
    _finish(b, enc.output, dtype, w.name)
    return WeightEncoding(
        w.name, q.fmt.name, enc.scheme, enc.text + " (folded to float when the session starts)",
        tuple(ctx.stored), True, enc.min_opset,
    )  # fmt: skip


_WIDE_INT = {True: (np.dtype(np.int8), 3), False: (np.dtype(np.uint8), 2)}  # ONNX INT8, UINT8


def _kernel_codes(q: QTensor) -> tuple[np.ndarray, int, int]:
    """(integer codes, their least value, the step between values) of an integer-kernel
    layer's weight: uniform integers as they are; ternary codes -1/0/+1 and binary signs as
    -1/+1, which times alpha are exactly the simulated values (bitlens.core.formats.sign)."""
    if q.fmt.family is Family.TERNARY:
        return q.codes, -1, 1
    if q.fmt.family is Family.BINARY:
        return q.codes.astype(np.int8) * 2 - 1, -1, 2
    return q.codes, q.fmt.qmin, 1


def _qdq(
    b: GraphBuilder,
    w: WeightInfo,
    q: QTensor,
    dt: np.dtype,
    dtype: np.dtype,
    zero_point: bool,
    widen: str | None = None,
    zeros_at_load: bool = True,
) -> WeightEncoding:
    fmt, g = q.fmt, q.grouping
    wide = _WIDE_INT[fmt.signed] if widen is not None and fmt.bits < 8 else None

    def widened(name: str) -> str:
        # a constant Cast ONNX Runtime folds into an 8-bit initializer at session start
        return name if wide is None else b.node("Cast", [name], to=wide[1])

    stored: list[StoredTensor] = []
    packed = wide is not None and widen == PACKED
    if packed:
        codes, qmin, step = _kernel_codes(q)
        name, st = _packed_codes(b, "codes", codes, fmt.bits, qmin, g.shape, step)
        dt = wide[0]
    else:
        name, st = _store(b, "codes", q.codes.astype(dt), "codes", bits=fmt.bits, label=dt.name)
    name = widened(name)
    stored.append(st)
    sname, sst = _store(b, "scale", np.asarray(q.scale, np.float32), "scale")
    stored.append(sst)
    inputs = [name, sname]
    zp = q.zero_point
    if zp is None and packed and fmt.family is not Family.INT:  # ternary, binary: 0
        zp = np.zeros(g.param_shape, np.int8)
    if zp is not None and (zero_point or not (fmt.symmetric and fmt.signed)):
        zp = np.asarray(zp)
        eight = fmt.bits == 8 and zeros_at_load and zp.size >= ZEROS_AT_LOAD_MIN
        if (packed or eight) and not zp.any():
            # zeros (symmetric codes, which QGemm and MatMulIntegerToFloat still want written
            # out) made at load: 8-bit ones cost a byte per channel the plan does not account
            zero = numpy_helper.from_array(np.zeros(1, dt), "zero")
            shape = _shape_const(b, "zp_shape", g.param_shape)
            inputs.append(b.node("ConstantOfShape", [shape], value=zero))
        elif packed and packed_size(zp.size, fmt.bits) < zp.size:  # packed like the codes
            zname, zst = _packed_codes(b, "zp", zp, fmt.bits, fmt.qmin, g.param_shape)
            stored.append(zst)
            inputs.append(widened(zname))
        else:  # native, or 8-bit: a packed stream of under 8 codes is no smaller
            zname, zst = _store(
                b, "zp", zp.astype(dt), "zero_point", bits=8 if packed else fmt.bits,
                label=dt.name,
            )  # fmt: skip
            stored.append(zst)
            inputs.append(zname if packed else widened(zname))
    attrs: dict[str, int] = {}
    if g.granularity is not Granularity.TENSOR:
        attrs["axis"] = g.axis
    if g.granularity is Granularity.BLOCK:
        attrs["block_size"] = g.block_size
    out = b.node("DequantizeLinear", inputs, **attrs)  # type: ignore[arg-type]
    _finish(b, out, dtype, w.name)
    min_opset = 13 if packed else family_of(fmt).export_min_opset(fmt, True)
    text = f"DequantizeLinear of {dt.name} codes, float32 scale {_granularity_text(g)}"
    if packed:
        text = (
            f"{fmt.bits}-bit packed codes unpacked and Cast to {wide[0].name} (folded when the "
            f"session starts, for the integer kernel), DequantizeLinear with float32 scale "
            f"{_granularity_text(g)}"
        )
    elif wide is not None:
        text = (
            f"DequantizeLinear of {dt.name} codes Cast to {wide[0].name} (folded when the "
            f"session starts, for the integer kernel), float32 scale {_granularity_text(g)}"
        )
    return WeightEncoding(w.name, fmt.name, "qdq", text, tuple(stored), False, min_opset)
