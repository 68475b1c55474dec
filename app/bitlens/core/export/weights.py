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
  (8-bit weights next to 8-bit activations) or when the user asks for QDQ.

Every element of the level arithmetic matches the codec: a uniform code
``q`` with zero point ``z`` becomes ``float32(q - z) * scale``; the stored
offset code ``u = q - qmin`` and offset zero point ``z' = z - qmin`` give
the same exact integer ``u - z'`` in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np
from onnx import numpy_helper

from bitlens.core.errors import ExportError
from bitlens.core.export.graph import GraphBuilder, rename_output
from bitlens.core.export.packing import pack, unpack_nodes
from bitlens.core.formats import Family, Format, Granularity, Grouping, QTensor, quantize
from bitlens.core.formats import floats as float_formats
from bitlens.core.model.types import WeightInfo

FOLD = "fold"
QDQ = "qdq"

_ONNX_FLOAT = {"float32": 1, "float16": 10, "float64": 11, "bfloat16": 16}
_NATIVE_INT = {
    (8, True): np.dtype(np.int8), (8, False): np.dtype(np.uint8),
    (16, True): np.dtype(np.int16), (16, False): np.dtype(np.uint16),
    (4, True): np.dtype(ml_dtypes.int4), (4, False): np.dtype(ml_dtypes.uint4),
    (2, True): np.dtype(ml_dtypes.int2), (2, False): np.dtype(ml_dtypes.uint2),
}  # fmt: skip
QDQ_MIN_OPSET = {8: 13, 16: 21, 4: 21, 2: 25}  # per-axis int8 needs 13; blocked needs 21


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
    if fmt.is_float:
        return float_formats.FLOAT_DTYPES[fmt.float_kind] if fmt.has_scale else None
    if fmt.family is not Family.INT or (fmt.bits == 2 and not allow_int2):
        return None
    return _NATIVE_INT.get((fmt.bits, fmt.signed))


def encode_weight(
    b: GraphBuilder,
    w: WeightInfo,
    value: np.ndarray,
    fmt: Format,
    *,
    mode: str = FOLD,
    allow_int2: bool = False,
    zero_point: bool = False,
    qtensor: QTensor | None = None,
) -> WeightEncoding | None:
    """Add nodes producing tensor ``w.name`` (same dtype and shape as ``value``).

    ``fmt`` must be bound to an axis. Returns None when the format leaves the
    weight as it is (fp32 on a float32 weight, fp64 on any float weight).
    ``qtensor``: codes and parameters already decided (a recovery method's), written
    as they are instead of quantizing ``value``.
    """
    if (
        fmt.is_float
        and not fmt.has_scale
        and float_formats.FLOAT_DTYPES[fmt.float_kind].itemsize >= value.dtype.itemsize
    ):
        return None
    q = qtensor if qtensor is not None else quantize(value, fmt, what=f"weight {w.name!r}")
    if mode == QDQ and (dt := native_qdq_dtype(fmt, allow_int2)) is not None:
        return _qdq(b, w, q, dt, value.dtype, zero_point)
    if fmt.is_float and not fmt.has_scale:
        return _cast(b, w, q, value.dtype)
    return _folded(b, w, q, value.dtype)


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
    text = f"{q.fmt.float_kind} values, Cast to {np.dtype(dtype).name} (folded when the session starts)"
    return WeightEncoding(
        w.name, q.fmt.name, "cast", text, (st,), True, 13 if q.fmt.float_kind == "bf16" else 1
    )


def _folded(b: GraphBuilder, w: WeightInfo, q: QTensor, dtype: np.dtype) -> WeightEncoding:
    fmt, g = q.fmt, q.grouping
    shape = _shape_const(b, "shape", g.shape)
    stored: list[StoredTensor] = []
    min_opset = 13

    def codes_tensor(codes: np.ndarray, bits: int) -> str:
        flat, st = _store_codes(b, "codes", codes, bits)
        stored.append(st)
        return b.node("Reshape", [flat, shape])

    def param(values: np.ndarray, role: str, hint: str) -> str:
        name, st = _store(b, hint, np.asarray(values, np.float32), role)
        stored.append(st)
        return _broadcast(b, name, g, hint)

    if fmt.family is Family.INT:
        u = q.codes.astype(np.int32) - fmt.qmin  # offset codes in [0, 2^bits)
        zp_off = np.asarray(q.zero_point, np.int32) - fmt.qmin
        if fmt.bits in (8, 16):
            native = _NATIVE_INT[(fmt.bits, fmt.signed)]
            name, st = _store(b, "codes", q.codes.astype(native), "codes")
            stored.append(st)
            values = b.node("Cast", [name], to=int(b.FLOAT))
            if not (fmt.symmetric and fmt.signed):
                zname, zst = _store(b, "zp", np.asarray(q.zero_point).astype(native), "zero_point")
                stored.append(zst)
                zf = _broadcast(b, b.node("Cast", [zname], to=int(b.FLOAT)), g, "zp")
                values = b.node("Sub", [values, zf])
            kind = "native"
            text = f"{native.name} codes"
        else:
            values = b.node("Cast", [codes_tensor(u, fmt.bits)], to=int(b.FLOAT))
            if fmt.symmetric:
                offset = int(zp_off.ravel()[0])  # the same for every group
                if offset:
                    values = b.node("Sub", [values, b.const("zp", np.array(offset, np.float32))])
            else:
                zflat, zst = _store_codes(b, "zp", zp_off, fmt.bits, role="zero_point")
                stored.append(zst)
                zshape = _shape_const(b, "zshape", g.param_shape)
                zf = b.node("Cast", [b.node("Reshape", [zflat, zshape])], to=int(b.FLOAT))
                values = b.node("Sub", [values, _broadcast(b, zf, g, "zp")])
            kind = "packed"
            text = f"{fmt.bits}-bit packed codes"
        out = b.node("Mul", [values, param(q.scale, "scale", "scale")])
        text += f", float32 scale {_granularity_text(g)}"
    elif fmt.family is Family.TERNARY:
        u = codes_tensor(q.codes.astype(np.int32) + 1, 2)
        values = b.node(
            "Sub", [b.node("Cast", [u], to=int(b.FLOAT)), b.const("one", np.array(1, np.float32))]
        )
        out = b.node("Mul", [values, param(q.scale, "scale", "alpha")])
        kind, text = "packed", f"2-bit packed ternary codes, float32 alpha {_granularity_text(g)}"
    elif fmt.family is Family.BINARY:
        cond = b.node("Cast", [codes_tensor(q.codes, 1)], to=int(b.BOOL))
        alpha = param(q.scale, "scale", "alpha")
        out = b.node("Where", [cond, alpha, b.node("Neg", [alpha])])
        kind, text = "packed", f"1-bit packed signs, float32 alpha {_granularity_text(g)}"
    elif fmt.family in (Family.NF, Family.LOG2):
        assert q.codebook is not None
        levels, st = _store(b, "levels", q.codebook.astype(np.float32), "levels")
        stored.append(st)
        looked = b.node("Gather", [levels, codes_tensor(q.codes, fmt.bits)])
        out = b.node("Mul", [looked, param(q.scale, "scale", "scale")])
        kind = "packed"
        text = f"{fmt.bits}-bit packed indices into {q.codebook.size} levels, float32 scale {_granularity_text(g)}"
    elif fmt.family is Family.KMEANS:
        assert q.codebook is not None
        book = q.codebook.astype(np.float32)
        codes = codes_tensor(q.codes, fmt.bits)
        bname, st = _store(b, "codebook", book.ravel(), "codebook")
        stored.append(st)
        if book.ndim == 2:  # one codebook per channel: index channel c's row of the flat table
            c, levels = book.shape
            offs = b.node(
                "Range",
                [
                    b.const("r0", np.array(0, np.int64)),
                    b.const("r1", np.array(c * levels, np.int64)),
                    b.const("rstep", np.array(levels, np.int64)),
                ],
            )
            codes = b.node("Add", [codes, _broadcast(b, offs, g, "rows")])
        out = b.node("Gather", [bname, codes])
        kind = "packed"
        text = f"{fmt.bits}-bit packed indices, float32 codebook {_granularity_text(g)}"
    elif fmt.is_float:  # fp8 with a scale
        dt = float_formats.FLOAT_DTYPES[fmt.float_kind]
        name, st = _store(b, "codes", q.codes.astype(dt), "codes")
        stored.append(st)
        values = b.node("Cast", [name], to=int(b.FLOAT))
        out = b.node("Mul", [values, param(q.scale, "scale", "scale")])
        kind, text = "native", f"{fmt.float_kind} codes, float32 scale {_granularity_text(g)}"
        min_opset = 19
    else:  # pragma: no cover - every family is handled above
        raise ExportError(f"weight {w.name!r}: no export for format {fmt.name}")
    _finish(b, out, dtype, w.name)
    return WeightEncoding(
        w.name, fmt.name, kind, text + " (folded to float when the session starts)",
        tuple(stored), True, min_opset,
    )  # fmt: skip


def _qdq(
    b: GraphBuilder, w: WeightInfo, q: QTensor, dt: np.dtype, dtype: np.dtype, zero_point: bool
) -> WeightEncoding:
    fmt, g = q.fmt, q.grouping
    stored: list[StoredTensor] = []
    name, st = _store(b, "codes", q.codes.astype(dt), "codes", bits=fmt.bits, label=dt.name)
    stored.append(st)
    sname, sst = _store(b, "scale", np.asarray(q.scale, np.float32), "scale")
    stored.append(sst)
    inputs = [name, sname]
    if fmt.family is Family.INT and (zero_point or not (fmt.symmetric and fmt.signed)):
        zname, zst = _store(
            b, "zp", np.asarray(q.zero_point).astype(dt), "zero_point", bits=fmt.bits, label=dt.name
        )
        stored.append(zst)
        inputs.append(zname)
    attrs: dict[str, int] = {}
    if g.granularity is not Granularity.TENSOR:
        attrs["axis"] = g.axis
    if g.granularity is Granularity.BLOCK:
        attrs["block_size"] = g.block_size
    out = b.node("DequantizeLinear", inputs, **attrs)  # type: ignore[arg-type]
    _finish(b, out, dtype, w.name)
    if fmt.is_float:
        min_opset = 21 if g.granularity is Granularity.BLOCK else 19
    else:
        min_opset = max(QDQ_MIN_OPSET[fmt.bits], 21 if g.granularity is Granularity.BLOCK else 10)
        if g.granularity is Granularity.CHANNEL:
            min_opset = max(min_opset, 13)
    text = f"DequantizeLinear of {dt.name} codes, float32 scale {_granularity_text(g)}"
    return WeightEncoding(w.name, fmt.name, "qdq", text, tuple(stored), False, min_opset)
