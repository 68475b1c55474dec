"""How a format's granularity splits a tensor into groups that share parameters.

Every quantizer computes its parameters (scale, zero point, alpha,
codebook) per group. :class:`Grouping` turns a tensor into a ``(G, S)``
matrix of groups for those statistics, and expands per-group parameters
back to the layout ONNX QuantizeLinear/DequantizeLinear use:

* per tensor: a scalar;
* per channel on ``axis``: a 1-D array of length ``shape[axis]``;
* per block of ``g`` along ``axis``: ``shape`` with ``shape[axis]`` replaced by
  ``ceil(shape[axis] / g)``; a partial last block is padded with NaN for the
  statistics (callers use NaN-aware reductions) and trimmed on expansion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bitlens.core.errors import FormatError
from bitlens.core.formats.spec import Format, Granularity


@dataclass(frozen=True)
class Grouping:
    shape: tuple[int, ...]
    granularity: Granularity
    axis: int = 0
    block_size: int = 0

    @classmethod
    def of(cls, fmt: Format, shape: tuple[int, ...]) -> Grouping:
        shape = tuple(int(d) for d in shape)
        if fmt.granularity is Granularity.TENSOR:
            return cls(shape, Granularity.TENSOR)
        if fmt.axis is None:
            raise FormatError(
                f"{fmt.name} needs an axis: bind it to a layer or name one (e.g. 'ch0', 'blk32@1')"
            )
        if fmt.axis >= len(shape):
            raise FormatError(f"{fmt.name}: axis {fmt.axis} out of range for shape {list(shape)}")
        return cls(shape, fmt.granularity, fmt.axis, fmt.block_size)

    # -- sizes -----------------------------------------------------------------
    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def n_blocks(self) -> int:
        return -(-self.shape[self.axis] // self.block_size)

    @property
    def param_shape(self) -> tuple[int, ...]:
        if self.granularity is Granularity.TENSOR:
            return ()
        if self.granularity is Granularity.CHANNEL:
            return (self.shape[self.axis],)
        s = list(self.shape)
        s[self.axis] = self.n_blocks
        return tuple(s)

    @property
    def n_groups(self) -> int:
        return math.prod(self.param_shape)

    @property
    def padded(self) -> bool:
        return (
            self.granularity is Granularity.BLOCK and self.shape[self.axis] % self.block_size != 0
        )

    # -- tensor <-> groups --------------------------------------------------------
    def groups(self, x: np.ndarray) -> np.ndarray:
        """``x`` as a ``(G, S)`` array, groups in the order of ``param_shape`` (C order)."""
        if self.granularity is Granularity.TENSOR:
            return x.reshape(1, -1)
        if self.granularity is Granularity.CHANNEL:
            return np.moveaxis(x, self.axis, 0).reshape(self.shape[self.axis], -1)
        d, g, nb = self.shape[self.axis], self.block_size, self.n_blocks
        y = np.moveaxis(x, self.axis, -1)  # (..., D)
        if nb * g != d:
            pad = np.full((*y.shape[:-1], nb * g - d), np.nan, dtype=np.result_type(y, np.float32))
            y = np.concatenate([y.astype(pad.dtype), pad], axis=-1)
        y = y.reshape(*y.shape[:-1], nb, g)  # (..., nb, g) with ... = other dims in order
        # Groups must follow param_shape's C order, where nb sits at `axis`.
        y = np.moveaxis(y, -2, self.axis)
        return y.reshape(-1, g)

    def to_params(self, values: np.ndarray) -> np.ndarray:
        """Per-group values ``(G,)`` reshaped to ``param_shape``."""
        return np.asarray(values).reshape(self.param_shape)

    def expand(self, params: np.ndarray) -> np.ndarray:
        """Parameters in ``param_shape`` broadcast (or repeated) to align with the tensor."""
        p = np.asarray(params)
        if self.granularity is Granularity.TENSOR:
            return p.reshape(())
        if self.granularity is Granularity.CHANNEL:
            shape = [1] * len(self.shape)
            shape[self.axis] = self.shape[self.axis]
            return p.reshape(shape)
        rep = np.repeat(p, self.block_size, axis=self.axis)
        return np.take(rep, np.arange(self.shape[self.axis]), axis=self.axis)

    def ungroup(self, values: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`groups` for an elementwise result ``(G, S)``."""
        if self.granularity is Granularity.TENSOR:
            return values.reshape(self.shape)
        if self.granularity is Granularity.CHANNEL:
            moved = (self.shape[self.axis], *self.shape[: self.axis], *self.shape[self.axis + 1 :])
            return np.moveaxis(values.reshape(moved), 0, self.axis)
        nb, g = self.n_blocks, self.block_size
        others = [s for i, s in enumerate(self.shape) if i != self.axis]
        pshape = list(others)
        pshape.insert(self.axis, nb)
        y = values.reshape(*pshape, g)
        y = np.moveaxis(y, self.axis, -2).reshape(*others, nb * g)[..., : self.shape[self.axis]]
        return np.moveaxis(y, -1, self.axis)
