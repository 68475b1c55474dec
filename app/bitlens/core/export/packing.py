"""n-bit code packing (LSB first) and the ONNX subgraph that unpacks it.

Codes of ``n`` bits (1 to 8) are written as one little-endian bit stream:
code ``i`` occupies bits ``[i*n, (i+1)*n)``, bit 0 being the lowest bit of
byte 0. Every 8 codes therefore fill exactly ``n`` bytes, so code ``j`` of
each group of 8 always starts in byte ``k_j = (j*n) // 8`` at bit
``r_j = (j*n) % 8`` and, as ``r_j + n <= 15``, lies inside the 16-bit window
``byte[k_j] + 256 * byte[k_j + 1]``. The unpack subgraph reads the stream as
``[groups, n]`` rows and takes all 8 windows at once::

    packed[G*n] uint8 -> Reshape [G, n] -> Cast int64
      -> Gather(axis 1, k_j) + 256 * Gather(axis 1, min(k_j + 1, n - 1))   # [G, 8]
      -> Div 2^r_j -> Mod 2^n -> Reshape [-1] -> Slice [0, count)

(where ``r_j + n <= 8`` the high byte only adds bits the modulo drops, so
any in-range index serves). Every intermediate stays below 2^16: ONNX
Runtime's int64 ReduceSum was measured to lose low bits above 2^53, which
rules out folding a whole group into one 8n-bit word. Only opset-13
operators, and every input is a constant, so ONNX Runtime folds the
subgraph into one tensor when it builds the session.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bitlens.core.errors import ExportError
from bitlens.core.export.graph import GraphBuilder

MAX_BITS = 8


def _check_bits(bits: int) -> None:
    if not 1 <= bits <= MAX_BITS:
        raise ExportError(f"cannot pack {bits}-bit codes (1 to {MAX_BITS} bits)")


def packed_size(count: int, bits: int) -> int:
    """Bytes of the packed stream: whole groups of 8 codes, ``bits`` bytes each."""
    _check_bits(bits)
    return -(-count // 8) * bits


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack non-negative integer codes below ``2**bits`` into a uint8 stream (LSB first)."""
    _check_bits(bits)
    flat = np.asarray(codes).ravel()
    if flat.size and (flat.min() < 0 or flat.max() >= 1 << bits):
        raise ExportError(f"codes outside [0, {(1 << bits) - 1}] cannot be packed in {bits} bits")
    groups = -(-flat.size // 8)
    padded = np.zeros(groups * 8, np.uint64)
    padded[: flat.size] = flat.astype(np.uint64)
    shifts = np.arange(8, dtype=np.uint64) * np.uint64(bits)
    words = (padded.reshape(groups, 8) << shifts).sum(axis=1, dtype=np.uint64)
    as_bytes = words.astype("<u8").view(np.uint8).reshape(groups, 8)
    return np.ascontiguousarray(as_bytes[:, :bits]).ravel()


def unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack`: the first ``count`` codes as uint8."""
    _check_bits(bits)
    data = np.asarray(packed, np.uint8).ravel()
    groups = -(-count // 8)
    if data.size != groups * bits:
        raise ExportError(
            f"packed stream has {data.size} bytes; {count} codes of {bits} bits need {groups * bits}"
        )
    rows = np.zeros((groups, 8), np.uint8)
    rows[:, :bits] = data.reshape(groups, bits)
    words = rows.view("<u8").ravel()
    shifts = np.arange(8, dtype=np.uint64) * np.uint64(bits)
    mask = np.uint64((1 << bits) - 1)
    codes = (words[:, None] >> shifts) & mask
    return codes.ravel()[:count].astype(np.uint8)


# Model-local functions (https://onnx.ai/onnx/repo-docs/IR.html#functions) hold the unpack
# subgraph once per bit width; each packed weight then costs one call node instead of ten
# nodes and their tensor names (about 800 bytes a layer, which dominated the files of small
# models at 2-4 bits). ONNX Runtime inlines local functions when it loads the model, and its
# constant folding then folds the inlined nodes like any others (checked with ORT 1.31: the
# optimized graph keeps only the layer's op).
FUNCTION_DOMAIN = "bitlens.packing"


def unpack_nodes(b: GraphBuilder, packed: str, bits: int, count: int, hint: str) -> str:
    """Nodes that unpack ``count`` codes from the uint8 initializer ``packed``.

    Returns the name of a flat int64 tensor ``[count]`` of codes in ``[0, 2**bits)``. Where
    the builder collects model-local functions, one call of the function for ``bits``.
    """
    _check_bits(bits)
    groups = -(-count // 8)
    if b.functions is not None:
        name = f"Unpack{bits}"
        if name not in b.functions:
            b.functions[name] = _unpack_function(name, bits)
        flat = b.node(name, [packed], domain=FUNCTION_DOMAIN)
    else:
        flat = _unpack_body(b, packed, bits, hint, b.const)
    if groups * 8 == count:
        return flat
    starts = b.const(f"{hint}_start", np.array([0], np.int64))
    ends = b.const(f"{hint}_count", np.array([count], np.int64))
    return b.node("Slice", [flat, starts, ends])


def _unpack_body(b: GraphBuilder, packed: str, bits: int, hint: str, const) -> str:
    """The unpack nodes into ``b``; ``const(hint, value)`` names each constant input."""
    offsets = np.arange(8) * bits
    lo_idx = offsets // 8
    hi_idx = np.minimum(lo_idx + 1, bits - 1)
    # [-1, bits]: the row count follows from the stream, so one body serves every layer
    rows = b.node("Reshape", [packed, const(f"{hint}_rows", np.array([-1, bits], np.int64))])
    wide = b.node("Cast", [rows], to=int(b.INT64))
    lo = b.node("Gather", [wide, const(f"{hint}_lo", lo_idx.astype(np.int64))], axis=1)
    hi = b.node("Gather", [wide, const(f"{hint}_hi", hi_idx.astype(np.int64))], axis=1)
    hi = b.node("Mul", [hi, const(f"{hint}_256", np.array(256, np.int64))])
    window = b.node("Add", [lo, hi])
    divisors = (1 << (offsets % 8)).astype(np.int64)
    shifted = b.node("Div", [window, const(f"{hint}_shifts", divisors)])
    codes = b.node("Mod", [shifted, const(f"{hint}_modulus", np.array(1 << bits, np.int64))])
    return b.node("Reshape", [codes, const(f"{hint}_flat", np.array([-1], np.int64))])


def _unpack_function(name: str, bits: int) -> onnx.FunctionProto:
    """The unpack subgraph for ``bits`` as a function ``packed -> codes``, its constants
    as Constant nodes inside it."""
    fb = GraphBuilder("u", set())

    def const(hint: str, value: np.ndarray) -> str:
        return fb.node("Constant", [], value=numpy_helper.from_array(value))

    out = _unpack_body(fb, "packed", bits, "u", const)
    return helper.make_function(
        FUNCTION_DOMAIN, name, ["packed"], [out], fb.nodes, [helper.make_opsetid("", 13)]
    )
