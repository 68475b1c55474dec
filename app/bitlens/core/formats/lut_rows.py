"""k-means codebooks and nearest-level codes for many rows at once.

:func:`bitlens.core.formats.lut.kmeans_1d` fits one channel with a few numpy
calls per Lloyd step; a 30522 x 384 word embedding (paraphrase-MiniLM-L3-v2)
made that 30522 fits of about 18 steps each, over half a minute of Python
overhead for a few megabytes of arithmetic. Here every step runs on all the
rows still moving at once: the sorted rows sit in one matrix, the cluster
bounds of all of them come from one searchsorted on keys that order values by
(row, value), and the cluster sums from one prefix sum per row. Each row goes through exactly
the float operations of :func:`~bitlens.core.formats.lut.kmeans_1d`, in the
same order, so the codebooks are bit-identical (tests compare the two); a
row stops when it reaches its fixed point, as there.

Rows with a NaN, an infinity or a value that is not exactly a float32 (float64
weights, rare) go through the one-row functions.
"""

from __future__ import annotations

import numpy as np

from bitlens.core.formats import lut

# Values (float64) per chunk of rows: bounds the sorted copy and the prefix sums
# (two float64 matrices of this size) whatever the tensor's size.
CHUNK_VALUES = 1 << 19
# Up to this many thresholds (k-means of 5 bits and less) codes are counted by comparisons.
FEW_THRESHOLDS = 31


def kmeans_rows(groups: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means of every row of ``groups``: ``(G, k)`` float32 codebooks and ``(G, S)`` uint8
    codes, the numbers of :func:`lut.kmeans_1d` and :func:`lut.nearest` row by row."""
    g = np.asarray(groups, np.float64)
    books = np.empty((g.shape[0], k), np.float32)
    fast = _keyable(g)
    for r in np.flatnonzero(~fast):
        books[r] = lut.kmeans_1d(g[r], k)
    for chunk in _chunks(np.flatnonzero(fast), g.shape[1]):
        books[chunk] = _fit_sorted(np.sort(g[chunk], axis=1), k)
    return books, nearest_rows(g, books, fast)


def nearest_rows(groups: np.ndarray, books: np.ndarray, fast: np.ndarray | None = None) -> np.ndarray:
    """``(G, S)`` uint8 codes of every row of ``groups`` against its row of ``books``: the
    codes :func:`kmeans_rows` returns with those books (it ends with this step), so books
    fitted once give the same codes again without fitting. ``fast``: :func:`_keyable` of
    the rows, when known."""
    g = np.asarray(groups, np.float64)
    fast = _keyable(g) if fast is None else fast
    codes = np.empty(g.shape, np.uint8)
    for r in np.flatnonzero(~fast):
        codes[r] = lut.nearest(g[r], books[r])
    for chunk in _chunks(np.flatnonzero(fast), g.shape[1]):
        codes[chunk] = _count_below(_midpoints(books[chunk]), g[chunk])
    return codes


# -- the row-wise pieces ------------------------------------------------------------------


def _keyable(g: np.ndarray) -> np.ndarray:
    """Rows whose values are all finite float32 numbers (exactly), so :func:`_keys` orders
    them as the float comparisons of the one-row functions do."""
    if g.shape[1] == 0:
        return np.zeros(g.shape[0], bool)
    with np.errstate(over="ignore"):
        as32 = g.astype(np.float32)
    return (np.isfinite(as32) & (as32 == g)).all(axis=1)


def _chunks(rows: np.ndarray, n: int):
    per = max(1, CHUNK_VALUES // max(n, 1))
    for s in range(0, rows.size, per):
        yield rows[s : s + per]


def _keys(x: np.ndarray, row: np.ndarray) -> np.ndarray:
    """int64 keys ordered as (row, value): one flat searchsorted then searches every row.

    ``x`` holds finite float32 values (exactly). A float32's bits read as an int32, with
    the 31 low bits flipped when negative, sort as the numbers do (-0.0 is made +0.0
    first, since the two compare equal); rows are 2^32 apart.
    """
    bits = (np.asarray(x, np.float32) + np.float32(0.0)).view(np.int32)
    ordered = bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))
    return (row.astype(np.int64) << 32) + ordered


def _count_below(mids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """lut.nearest's code: how many of its row's thresholds lie strictly below each value."""
    m = mids.shape[1]
    if m <= FEW_THRESHOLDS:  # a pass per threshold beats a search per value
        out = np.zeros(values.shape, np.uint8)
        for j in range(m):
            out += values > mids[:, j, None]
        return out
    local = np.arange(mids.shape[0])[:, None]
    below = np.searchsorted(_keys(mids, local).ravel(), _keys(values, local), side="left")
    return (below - local * m).astype(np.uint8)


def _midpoints(levels: np.ndarray) -> np.ndarray:
    """:func:`lut.midpoints` of each row."""
    lv = np.asarray(levels, np.float64)
    return ((lv[:, 1:] + lv[:, :-1]) / 2).astype(np.float32)


def _fit_sorted(v: np.ndarray, k: int) -> np.ndarray:
    """Lloyd's iterations of :func:`lut.kmeans_1d` on each ascending row of ``v``."""
    n_rows, n = v.shape
    shift = np.median(v, axis=1)
    csum = np.zeros((n_rows, n + 1))
    np.cumsum(v - shift[:, None], axis=1, out=csum[:, 1:])
    flat_csum = csum.ravel()
    vkeys = _keys(v, np.arange(n_rows)[:, None]).ravel()  # ascending: rows in turn, sorted
    centres = np.quantile(v, (np.arange(k) + 0.5) / k, axis=1).T.astype(np.float32)
    active = np.arange(n_rows)
    for _ in range(lut.KMEANS_MAX_ITERATIONS):
        cur = centres[active]
        row = active[:, None]
        # Cluster j holds mids[j-1] < v <= mids[j], as kmeans_1d's searchsorted(side="right").
        bounds = np.searchsorted(vkeys, _keys(_midpoints(cur), row), side="right") - row * n
        starts = np.concatenate([np.zeros_like(row), bounds], axis=1)
        ends = np.concatenate([bounds, np.full_like(row, n)], axis=1)
        counts = ends - starts
        at = row * (n + 1)
        sums = flat_csum[at + ends] - flat_csum[at + starts]
        means = sums / np.maximum(counts, 1) + shift[row]
        new = np.where(counts > 0, means, cur).astype(np.float32)
        new.sort(axis=1)
        moved = (new != cur).any(axis=1)
        centres[active[moved]] = new[moved]
        active = active[moved]
        if active.size == 0:
            break
    return centres
