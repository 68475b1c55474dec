"""Instant re-evaluation of quantization plans in ONNX Runtime."""

from __future__ import annotations

from bitlens.core.engine.calibration import CalibrationMethod
from bitlens.core.engine.engine import Engine
from bitlens.core.weights import bind, weight_bytes_after

__all__ = ["CalibrationMethod", "Engine", "bind", "weight_bytes_after"]
