"""A layer's weight as a set of matrix problems ``Y = W X``, with calibration statistics.

Every recovery method needs the same two views of a layer: its weight as 2-D matrices
``W[g]`` (output rows by input features, one per conv group) and the second moments of
the inputs those features see on the calibration data, ``H[g] = sum x x^T`` (the GPTQ
Hessian up to a factor 2, https://arxiv.org/abs/2210.17323) and their means. For a
convolution the input features are im2col patches (channel, then kernel position, the
order of ``W.reshape(M, -1)``), so ``||dW X||^2 = sum_r dW_r H dW_r^T`` is exactly the
squared output error the weight change ``dW`` causes on the calibration inputs.
Supported: Conv (1-D/2-D/3-D, any group count, any pads/strides/dilations), Gemm and
MatMul with a constant right-hand 2-D weight. Anything else is refused by name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from bitlens.core.errors import EngineError


@dataclass(frozen=True)
class LayerGeometry:
    """How the layer's weight maps to ``(groups, rows, cols)`` and its input to patches."""

    op_type: str
    weight_shape: tuple[int, ...]
    groups: int = 1
    trans: bool = False  # Gemm transB=0 / MatMul: the weight is [K, N], rows are its columns
    trans_a: bool = False  # Gemm transA=1: the input is [K, M]
    kernel: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()  # begins then ends
    auto_pad: str = "NOTSET"

    @property
    def rows(self) -> int:
        if self.op_type == "Conv":
            return self.weight_shape[0] // self.groups
        return self.weight_shape[1] if self.trans else self.weight_shape[0]

    @property
    def cols(self) -> int:
        if self.op_type == "Conv":
            return math.prod(self.weight_shape[1:])
        return self.weight_shape[0] if self.trans else self.weight_shape[1]

    @property
    def kernel_size(self) -> int:
        return math.prod(self.kernel) if self.kernel else 1

    def to_2d(self, w: np.ndarray) -> np.ndarray:
        """A weight-shaped array (or one broadcastable to it) as ``(groups, rows, cols)``."""
        w = np.broadcast_to(w, self.weight_shape)
        if self.op_type == "Conv":
            return w.reshape(self.groups, self.rows, self.cols)
        return (w.T if self.trans else w)[None]

    def from_2d(self, m: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_2d`."""
        if self.op_type == "Conv":
            return m.reshape(self.weight_shape)
        return np.ascontiguousarray(m[0].T if self.trans else m[0])

    @property
    def in_channels(self) -> int:
        """Input channels the layer reads (conv: all groups together)."""
        return self.cols // self.kernel_size * self.groups

    def channel_of_col(self) -> np.ndarray:
        """``(groups, cols)``: the input channel each column of each group reads."""
        per = self.cols // self.kernel_size
        base = np.arange(self.groups)[:, None] * per
        return base + np.repeat(np.arange(per), self.kernel_size)[None, :]

    def input_scale_shape(self) -> tuple[int, ...]:
        """Shape of a per-input-channel multiplier of the weight (broadcastable to it)."""
        if self.op_type == "Conv":
            if self.groups == 1:
                return (1, self.weight_shape[1], *([1] * len(self.kernel)))
            return (self.weight_shape[0], self.weight_shape[1], *([1] * len(self.kernel)))
        return (self.weight_shape[0], 1) if self.trans else (1, self.weight_shape[1])

    def weight_input_scale(self, s: np.ndarray) -> np.ndarray:
        """A per-input-channel vector ``s`` (length :attr:`in_channels`) in weight layout."""
        if self.op_type != "Conv":
            return s.reshape(self.input_scale_shape())
        per = self.weight_shape[1]
        if self.groups == 1:
            return s.reshape(self.input_scale_shape())
        by_group = s.reshape(self.groups, per)
        rows = np.repeat(by_group, self.weight_shape[0] // self.groups, axis=0)
        return rows.reshape(self.input_scale_shape())

    # -- inputs -> feature rows ----------------------------------------------------
    def features(self, x: np.ndarray) -> np.ndarray:
        """The layer input of one feed as ``(n, groups, cols)`` feature rows (float64)."""
        x = np.asarray(x, np.float64)
        if self.op_type == "Conv":
            p = _im2col(x, self)
            return p.reshape(p.shape[0], self.groups, self.cols)
        k = self.cols
        if self.trans_a:
            x = x.T
        if x.shape[-1] != k:
            raise EngineError(f"layer input has {x.shape[-1]} features, the weight expects {k}")
        return x.reshape(-1, 1, k)


def _im2col(x: np.ndarray, geo: LayerGeometry) -> np.ndarray:
    """``(N * positions, C * prod(kernel))`` patches, channel-major like the weight."""
    nd = len(geo.kernel)
    if x.ndim != nd + 2:
        raise EngineError(f"conv input has rank {x.ndim}, expected {nd + 2}")
    spatial = x.shape[2:]
    ext = [(k - 1) * d + 1 for k, d in zip(geo.kernel, geo.dilations, strict=True)]
    if geo.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for n, s, e in zip(spatial, geo.strides, ext, strict=True):
            out = -(-n // s)
            total = max(0, (out - 1) * s + e - n)
            small = total // 2
            big = total - small
            begins.append(small if geo.auto_pad == "SAME_UPPER" else big)
            ends.append(big if geo.auto_pad == "SAME_UPPER" else small)
    elif geo.auto_pad == "VALID":
        begins, ends = [0] * nd, [0] * nd
    else:
        begins, ends = list(geo.pads[:nd]), list(geo.pads[nd:])
    xp = np.pad(x, [(0, 0), (0, 0), *zip(begins, ends, strict=True)])
    win = np.lib.stride_tricks.sliding_window_view(xp, ext, axis=tuple(range(2, 2 + nd)))
    sl = tuple(slice(None, None, s) for s in geo.strides)
    kd = tuple(slice(None, None, d) for d in geo.dilations)
    win = win[(slice(None), slice(None), *sl, *kd)]  # (N, C, *out, *kernel)
    n = win.shape[0]
    out = win.shape[2 : 2 + nd]
    order = (0, *range(2, 2 + nd), 1, *range(2 + nd, 2 + 2 * nd))
    return np.ascontiguousarray(win.transpose(order)).reshape(n * math.prod(out), -1)


def geometry(op_type: str, weight_shape: tuple[int, ...], attrs: Mapping[str, object],
             weight_slot: int) -> LayerGeometry:
    """The geometry of a supported layer, or an EngineError saying why it is not."""
    if op_type == "Conv":
        if weight_slot != 1:
            raise EngineError("recovery needs the conv weight as input 1")
        nd = len(weight_shape) - 2
        kernel = tuple(int(k) for k in weight_shape[2:])
        return LayerGeometry(
            "Conv", tuple(weight_shape), groups=int(attrs.get("group", 1) or 1),  # type: ignore[arg-type]
            kernel=kernel,
            strides=tuple(attrs.get("strides") or [1] * nd),  # type: ignore[arg-type]
            dilations=tuple(attrs.get("dilations") or [1] * nd),  # type: ignore[arg-type]
            pads=tuple(attrs.get("pads") or [0] * (2 * nd)),  # type: ignore[arg-type]
            auto_pad=_text(attrs.get("auto_pad", "NOTSET")),
        )
    if op_type in ("Gemm", "MatMul"):
        if weight_slot != 1 or len(weight_shape) != 2:
            raise EngineError(
                f"recovery on {op_type} needs a 2-D constant weight as the right-hand input"
            )
        if op_type == "Gemm" and (
            float(attrs.get("alpha", 1.0)) != 1.0 or float(attrs.get("beta", 1.0)) != 1.0  # type: ignore[arg-type]
        ):
            raise EngineError("recovery on Gemm needs alpha = beta = 1")
        trans = op_type == "MatMul" or not int(attrs.get("transB", 0))  # type: ignore[call-overload]
        return LayerGeometry(op_type, tuple(weight_shape), trans=trans,
                             trans_a=bool(int(attrs.get("transA", 0))))  # type: ignore[call-overload]
    raise EngineError(
        f"recovery methods work on Conv, Gemm and MatMul layers, not {op_type}"
    )


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass
class InputStats:
    """Calibration statistics of a layer's input features, per group (float64)."""

    hessian: np.ndarray  # (groups, cols, cols): sum over rows of x x^T
    total: np.ndarray  # (groups, cols): sum of x
    abs_total: np.ndarray  # (groups, cols): sum of |x|
    abs_max: np.ndarray  # (groups, cols): max of |x|
    count: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def mean(self) -> np.ndarray:
        return self.total / max(self.count, 1)

    @property
    def mean_abs(self) -> np.ndarray:
        return self.abs_total / max(self.count, 1)

    @classmethod
    def of(cls, geo: LayerGeometry, inputs: Iterable[np.ndarray]) -> InputStats:
        g, c = geo.groups, geo.cols
        st = cls(np.zeros((g, c, c)), np.zeros((g, c)), np.zeros((g, c)), np.zeros((g, c)))
        for x in inputs:
            for part in feature_pieces(np.asarray(x), geo):
                for f in _feature_columns(geo, part):
                    st._add(f)
        if st.count == 0:
            raise EngineError("recovery needs calibration inputs, and there are none")
        return st

    def _add(self, f: np.ndarray) -> None:
        """Add feature rows given as ``(groups, cols, n)`` (any strides; a scratch array,
        overwritten here by its absolute values)."""
        # one matrix product per group, on views: no transposed copy of the rows
        self.hessian += f @ f.transpose(0, 2, 1)
        self.total += f.sum(axis=2)
        if f.shape[2]:
            a = np.abs(f, out=f)  # im2col rows are large: no second copy
            self.abs_total += a.sum(axis=2)
            np.maximum(self.abs_max, a.max(axis=2), out=self.abs_max)
        self.count += f.shape[2]


def _pointwise(geo: LayerGeometry) -> bool:
    """A 1x1 convolution without padding: its feature rows are the input's pixels."""
    if geo.op_type != "Conv" or geo.kernel_size != 1:
        return False
    return geo.auto_pad != "NOTSET" or not any(geo.pads)


def _feature_columns(geo: LayerGeometry, x: np.ndarray) -> Iterable[np.ndarray]:
    """The feature rows of ``x`` as ``(groups, cols, n)`` arrays of their own (one per image
    of a 1x1 convolution's input, which needs no im2col copy: its channels are the
    features)."""
    if not _pointwise(geo):
        f = geo.features(x)
        # _add overwrites the rows: a copy where they are the caller's values or a read-only
        # window view (im2col returns sliding_window_view itself when a conv has one output
        # position, or a 1x1 kernel on one padded channel: openWakeWord's embedding model)
        mine = f.flags.writeable and not np.shares_memory(f, x)
        yield (f if mine else f.copy()).transpose(1, 2, 0)
        return
    nd = len(geo.kernel)
    if x.ndim != nd + 2:
        raise EngineError(f"conv input has rank {x.ndim}, expected {nd + 2}")
    x = x[(slice(None), slice(None), *(slice(None, None, s) for s in geo.strides))]
    for image in x:
        yield np.array(image, np.float64).reshape(geo.groups, geo.cols, -1)


FEATURE_BYTES = 64 << 20  # float64 feature rows made at a time (im2col grows a conv input)


def feature_pieces(x: np.ndarray, geo: LayerGeometry) -> Iterable[np.ndarray]:
    """``x`` split along its first axis so each piece's feature rows stay near
    FEATURE_BYTES (a batch of 32 images at 56x56 with 576 patch values is 460 MB)."""
    if x.ndim < 2 or x.shape[0] <= 1 or geo.trans_a:
        yield x
        return
    per_row = 8 * x[0].size * (geo.kernel_size if geo.op_type == "Conv" else 1)
    step = max(1, FEATURE_BYTES // max(per_row, 1))
    for i in range(0, x.shape[0], step):
        yield x[i : i + step]


def output_error(geo: LayerGeometry, stats: InputStats, dw: np.ndarray) -> np.ndarray:
    """``(groups, rows)``: squared output error per output row of a weight change ``dw``
    (weight-shaped), summed over the calibration rows."""
    d = geo.to_2d(np.asarray(dw, np.float64))
    return np.einsum("grc,grc->gr", d @ stats.hessian, d)
