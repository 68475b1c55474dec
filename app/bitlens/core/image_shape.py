"""Where a folder of images goes in a 4-D image input: its layout and its height and width."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bitlens.core.dims import dim_key
from bitlens.core.errors import DataError
from bitlens.core.model.types import Dim, TensorInfo

CHANNELS = (1, 3, 4)  # grey, RGB, RGBA


def image_layout(shape: Sequence[Dim]) -> str:
    """NHWC when a 4-D input's last axis holds 1, 3 or 4 channels and its axis 1 does not
    (Keras and TensorFlow exports: MTCNN's ``[N, 48, 48, 3]``, open_nsfw's
    ``[batch, 224, 224, 3]``), else NCHW."""
    return "NHWC" if shape[3] in CHANNELS and shape[1] not in CHANNELS else "NCHW"


def image_size(
    target: TensorInfo, layout: str, dims: Mapping[str, int] | None = None
) -> tuple[int, int]:
    """The (height, width) images are resized to: the input's own, else the sizes ``dims``
    gives its dynamic axes (by name, or ``INPUT:AXIS``: the command line's ``--dim``)."""
    axes = (2, 3) if layout == "NCHW" else (1, 2)
    shape = target.shape or ()
    keys = [dim_key(target, a) for a in axes]
    got = [
        shape[a] if isinstance(shape[a], int) else (dims or {}).get(k)
        for a, k in zip(axes, keys, strict=True)
    ]
    if got[0] is None or got[1] is None:
        missing = " ".join(f"--dim {k}=SIZE" for k, g in zip(keys, got, strict=True) if g is None)
        raise DataError(
            f"input {target.name!r} has dynamic height/width; give an image size "
            f"(on the command line: {missing})"
        )
    return int(got[0]), int(got[1])
