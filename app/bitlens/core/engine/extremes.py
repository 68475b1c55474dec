"""The min and max of each value a float reference run fetched, on two threads when they
are large.

The float reference checks every value it fetched for NaN and infinity and, on the
calibration feeds, merges each float tensor's min and max (reference._finite). Between two
runs nothing else uses the cores, and numpy leaves the interpreter lock in its reductions:
on PP-OCRv4 rec (rapidocr-onnxruntime 1.4.4) the calibration feed's 682 tensors, 729 MB,
took 120 ms on the main thread alone while the second core waited (docs/benchmarks.md,
"openfast"). A value's min and max answer both questions: numpy's min and max are NaN
where a value holds one, infinite where it holds an infinity.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor

import numpy as np

SPLIT = True  # False: every value on the calling thread (tests compare)
SPLIT_BYTES = 32 << 20  # float values of one run from which half go to a second thread


def _of(values: Sequence[np.ndarray]) -> list[tuple[float, float] | None]:
    return [
        (float(v.min()), float(v.max())) if v.dtype.kind == "f" and v.size else None for v in values
    ]


def extremes(
    values: Sequence[np.ndarray], pool: Executor | None
) -> list[tuple[float, float] | None]:
    """(min, max) of each non-empty float value, None for the others; the values after the
    first half of their bytes on ``pool`` while this thread takes the first half."""
    floats = [v.nbytes if v.dtype.kind == "f" else 0 for v in values]
    total = sum(floats)
    if not SPLIT or pool is None or total < SPLIT_BYTES:
        return _of(values)
    seen, cut = 0, len(values)
    for k, nbytes in enumerate(floats):
        seen += nbytes
        if 2 * seen >= total:
            cut = k + 1
            break
    later = pool.submit(_of, values[cut:])
    return _of(values[:cut]) + later.result()
