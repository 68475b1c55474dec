"""MatMul weights as ``com.microsoft.MatMulNBits``: a weight-only low-bit kernel.

``B`` is ``[N, k_blocks, block_size * bits / 8]`` uint8, the codes of
column ``n`` along K packed LSB first; scales are float32 ``[N * k_blocks]``;
zero points (optional, default ``2^(bits-1)``) are packed the same way per
column. A column's value is ``(code - zero_point) * scale``, which is the
codec's ``(q - z) * scale`` for offset codes ``code = q - qmin``.

The kernel multiplies in float32 (``accuracy_level`` 0) but in its own
order, so its results match the float simulation only up to summation
order (measured exact at K <= 256, about 1e-6 relative at K = 1024).
ONNX Runtime CPU runs 4-bit from 1.20, 8-bit from 1.23, 2-bit from 1.24.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bitlens.core.export.graph import GraphBuilder
from bitlens.core.export.packing import pack, unpack
from bitlens.core.export.weights import StoredTensor, WeightEncoding
from bitlens.core.formats import Family, Format, Granularity, QTensor

DOMAIN = "com.microsoft"
BITS_MIN_ORT = {4: "1.20", 8: "1.23", 2: "1.24"}


@dataclass(frozen=True)
class NBitsLayout:
    k: int
    n: int
    bits: int
    block_size: int

    @property
    def k_blocks(self) -> int:
        return -(-self.k // self.block_size)


def layout_for(fmt: Format, shape: tuple[int, ...]) -> NBitsLayout | None:
    """The MatMulNBits layout for a ``[K, N]`` MatMul weight in ``fmt``, or None if none fits.

    Blocks must run along K (axis 0) with a power-of-two size of at least 16 that
    divides K (no padded block);
    per-channel scales (axis 1) are one block spanning K when K is such a power.
    """
    if fmt.family is not Family.INT or fmt.bits not in BITS_MIN_ORT or len(shape) != 2:
        return None
    k, n = shape

    def pow2(v: int) -> bool:
        return v >= 16 and v & (v - 1) == 0

    if (
        fmt.granularity is Granularity.BLOCK
        and fmt.axis == 0
        and pow2(fmt.block_size)
        and k % fmt.block_size == 0
    ):
        return NBitsLayout(k, n, fmt.bits, fmt.block_size)
    if fmt.granularity is Granularity.CHANNEL and fmt.axis == 1 and pow2(k):
        return NBitsLayout(k, n, fmt.bits, k)
    return None


def _pack_columns(values: np.ndarray, lay: NBitsLayout) -> np.ndarray:
    """``[K, N]`` unsigned codes -> ``[N, k_blocks, blob]`` packed along K."""
    blob = lay.block_size * lay.bits // 8
    return pack(values.T.reshape(-1), lay.bits).reshape(lay.n, lay.k_blocks, blob)


def _zp_row_bytes(lay: NBitsLayout) -> int:
    return -(-lay.k_blocks * lay.bits // 8)


def encode(
    b: GraphBuilder,
    node: onnx.NodeProto,
    weight: str,
    q: QTensor,
    lay: NBitsLayout,
) -> tuple[onnx.NodeProto, WeightEncoding]:
    """A MatMulNBits node replacing the MatMul ``node`` (same inputs A and output Y), from the
    weight's codes ``q`` (its format bound, see :func:`layout_for`)."""
    fmt = q.fmt
    qmin = fmt.qmin
    codes = q.codes.astype(np.int64) - qmin
    scale = np.asarray(q.scale, np.float32)
    zp = np.asarray(q.zero_point, np.int64) - qmin
    if fmt.granularity is Granularity.CHANNEL:
        scale, zp = scale.reshape(1, lay.n), zp.reshape(1, lay.n)  # one block per column
    packed = _pack_columns(codes, lay)
    stored: list[StoredTensor] = []

    def store(hint: str, arr: np.ndarray, role: str, bits: int, count: int, label: str) -> str:
        t = numpy_helper.from_array(arr, hint)
        name = b.add_initializer(t)
        stored.append(StoredTensor(name, role, label, bits, count, len(t.raw_data)))
        return name

    bname = store("B", packed, "codes", lay.bits, q.codes.size, f"uint8 ({lay.bits}-bit packed)")
    sname = store("scales", scale.T.reshape(-1).copy(), "scale", 32, scale.size, "float32")
    inputs = [node.input[0], bname, sname]
    if not (fmt.symmetric and fmt.signed):
        # One packed row per column; pack() pads to whole groups of 8, the kernel wants
        # exactly ceil(k_blocks * bits / 8) bytes per column.
        row = _zp_row_bytes(lay)
        zpacked = np.stack([pack(r, lay.bits)[:row] for r in zp.T])
        inputs.append(store("zero_points", zpacked.astype(np.uint8).reshape(-1), "zero_point",
                            lay.bits, zp.size, f"uint8 ({lay.bits}-bit packed)"))  # fmt: skip
    new = helper.make_node(
        "MatMulNBits", inputs, list(node.output), name=b.name("MatMulNBits"), domain=DOMAIN,
        K=lay.k, N=lay.n, bits=lay.bits, block_size=lay.block_size, accuracy_level=0,
    )  # fmt: skip
    text = (
        f"MatMulNBits (com.microsoft), {lay.bits}-bit codes packed along K in blocks of "
        f"{lay.block_size}, float32 scales, accuracy_level 0 (float32 compute)"
    )
    return new, WeightEncoding(weight, fmt.name, "matmulnbits", text, tuple(stored), False, 1)


def decode(model: onnx.ModelProto, node: onnx.NodeProto) -> np.ndarray:
    """The float32 ``[K, N]`` weight a MatMulNBits node computes with (for the fidelity check)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    k, n, bits, bs = attrs["K"], attrs["N"], attrs["bits"], attrs["block_size"]
    inits = {t.name: t for t in model.graph.initializer}
    lay = NBitsLayout(k, n, bits, bs)
    kb = lay.k_blocks
    packed = numpy_helper.to_array(inits[node.input[1]])
    codes = unpack(packed.reshape(-1), bits, n * kb * bs).reshape(n, kb * bs)[:, :k]
    scales = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32).reshape(n, kb)
    if len(node.input) > 3 and node.input[3]:
        zraw = numpy_helper.to_array(inits[node.input[3]]).reshape(n, -1)
        full = -(-kb // 8) * bits
        zp = np.stack([unpack(np.pad(r, (0, full - r.size)), bits, kb) for r in zraw])
    else:
        zp = np.full((n, kb), 1 << (bits - 1))
    zfull = np.repeat(zp.astype(np.int32), bs, axis=1)[:, :k]
    sfull = np.repeat(scales, bs, axis=1)[:, :k]
    return np.ascontiguousarray(((codes.astype(np.int32) - zfull).astype(np.float32) * sfull).T)
