"""Accuracy recovery after weight quantization, in numpy on calibration inputs.

Each method turns a layer's float weight (and bias) plus the statistics of its
calibration inputs (:mod:`.problem`) into a :class:`Recovered` value: the weight the
engine computes with, the codes and parameters the exporter writes for it, and where a
method needs them a per-input-channel multiplier of the decoded weight and a new bias.
The engine and the exporter read the same value, so the export is exactly what was
evaluated. Methods (plan key ``"recovery"``):

* ``bias_correction``: the expected output shift folded into the bias (Nagel et al.
  2019, https://arxiv.org/abs/1906.04721, section 4.2, the empirical variant);
* ``gptq``: column-by-column rounding with error compensation through the inverse
  Hessian (Frantar et al. 2022, https://arxiv.org/abs/2210.17323;
  https://github.com/IST-DASLab/gptq ``gptq.py``);
* ``awq``: activation-aware per-input-channel scales (Lin et al. 2023,
  https://arxiv.org/abs/2306.00978), kept as an exact multiply of the decoded weight;
* ``clip_search``: per-output-channel clipping ratio chosen by output error;
* ``smoothquant``: per-input-channel migration of activation outliers into the weights
  (Xiao et al. 2022, https://arxiv.org/abs/2211.10438), an exact multiply of the
  activation before its quantizer (:mod:`.smooth`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from bitlens.core.formats import QTensor


class Recovery(StrEnum):
    BIAS = "bias_correction"
    GPTQ = "gptq"
    AWQ = "awq"
    CLIP = "clip_search"
    SMOOTH = "smoothquant"


RECOVERY_CHOICES: tuple[str, ...] = tuple(m.value for m in Recovery)


@dataclass(frozen=True, eq=False)
class Recovered:
    """What a recovery method decided for one layer's weight.

    ``weight``: the values the layer computes with (the weight's dtype). ``qtensor``: the
    stored codes and parameters; decoded, then multiplied by ``input_scale`` (when not
    None, a float32 array broadcastable to the weight), they are exactly ``weight``.
    ``bias``: the layer's new bias (float32), None when unchanged. ``note``: one line
    about what was chosen, for the report. ``act_scale`` (SmoothQuant): the float32
    per-input-channel multiplier of the layer's activation (shaped to broadcast against
    it), applied before the activation quantizer; ``weight`` is then the weight in the
    scaled space, and ``effective`` the weight as seen from the unscaled input
    (``weight * 1/act_scale`` per input channel), which the error views compare.
    """

    method: Recovery
    weight: np.ndarray
    qtensor: QTensor
    input_scale: np.ndarray | None = None
    bias: np.ndarray | None = None
    note: str = ""
    act_scale: np.ndarray | None = None
    effective: np.ndarray | None = None

    @property
    def seen_weight(self) -> np.ndarray:
        """The weight as the layer's original input sees it (for weight and output errors)."""
        return self.weight if self.effective is None else self.effective


def parse_recovery(text: str | None) -> Recovery | None:
    """``None`` or ``"none"``/``"off"``: no recovery; else one of RECOVERY_CHOICES."""
    from bitlens.core.errors import PlanError

    if text is None or text in ("none", "off", ""):
        return None
    try:
        return Recovery(text)
    except ValueError:
        raise PlanError(
            f"unknown recovery method {text!r}; choose one of {', '.join(RECOVERY_CHOICES)}"
        ) from None


def decode(rec: Recovered) -> np.ndarray:
    """The weight rebuilt from ``rec.qtensor`` (and ``input_scale``) in float32."""
    from bitlens.core.formats import dequantize

    w = dequantize(rec.qtensor)
    if rec.input_scale is not None:
        w = w * rec.input_scale
    return w


__all__ = ["RECOVERY_CHOICES", "Recovered", "Recovery", "decode", "parse_recovery"]
