"""The engine's float weights, held once: in the model's protobuf and in a scratch file.

The engine feeds every weight to its sessions as a float array. Decoded from the
protobuf (``onnx.numpy_helper`` and protobuf's ``raw_data`` both copy), those arrays
were a second full copy of the weights in the process's memory, next to the parsed
model, and a third with the quantized values of a plan (measured on ddddocr's 54 MB
``common.onnx``: 52 MiB each). Here each large weight's float values are written once to
an anonymous temporary file and read back through a read-only memory map, so they live
in the page cache: the engine's runs and quantizers read them there, and the pages
leave the process's memory when released after use (``release_pages``: the same
mechanism as weights in external data files, bitlens.core.model.external). The values
are the very bytes the decoded arrays held, so every number the engine computes stays
the same (tests/core/test_engine_memory.py).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from bitlens.core.model.types import WeightInfo

if TYPE_CHECKING:
    from bitlens.core.model.loader import LoadedModel

# Smaller weights (biases, small filters) stay in memory. 64 KiB, not 1 MiB: a deep stack
# of 256 KiB MatMul weights kept every weight decoded next to the parsed protobuf's copy
# (docs/benchmarks.md, "depthmem (session 14)"); as rawspill.RAW_SPILL_MIN_BYTES.
SPILL_MIN_BYTES = 1 << 16
_ALIGN = 64  # each weight starts on a cache line (ORT's kernels read with SIMD loads)


def spill_weights(model: LoadedModel, weights: Iterable[WeightInfo]) -> int:
    """Move the decoded float values of ``weights`` (those of at least SPILL_MIN_BYTES,
    decoded into memory by the model, in their stored dtype) into one temporary file,
    memory-mapped read-only once (one file descriptor however many weights); the model
    then holds views of the map. Returns the bytes moved. The file has no name
    (``tempfile.TemporaryFile``) and goes away with the map."""
    chosen: list[tuple[WeightInfo, np.ndarray, int]] = []
    with tempfile.TemporaryFile(prefix="bitlens-weights-") as fh:
        for w in weights:
            value = model.weight(w)
            if not model.holds_weight(w) or isinstance(value, np.memmap):
                continue  # mapped from an external file, or moved already
            if value.nbytes < SPILL_MIN_BYTES or value.dtype != np.dtype(w.dtype):
                continue  # small, or widened from fp16/bf16 (the engine feeds a cast copy)
            if any(c[0].name == w.name and c[0].graph_path == w.graph_path for c in chosen):
                continue  # a weight two layers read
            fh.write(b"\0" * (-fh.tell() % _ALIGN))
            chosen.append((w, value, fh.tell()))
            fh.write(np.ascontiguousarray(value).reshape(-1).view(np.uint8))  # no bytes copy
        if not chosen:
            return 0
        fh.flush()
        whole = np.memmap(fh, dtype=np.uint8, mode="r")
    moved = 0
    for w, value, offset in chosen:
        view = whole[offset : offset + value.nbytes].view(value.dtype).reshape(value.shape)
        model.hold_weight(w, view)
        moved += value.nbytes
    return moved
