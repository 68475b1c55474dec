"""Bitlens: an inspector for mixed-precision quantization of ONNX models."""

from __future__ import annotations

__version__ = "0.1.0"
