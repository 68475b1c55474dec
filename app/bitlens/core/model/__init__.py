"""Loading ONNX models and describing them as neutral dataclasses."""

from __future__ import annotations

from bitlens.core.model.loader import LoadedModel, from_proto, load_model

__all__ = ["LoadedModel", "from_proto", "load_model"]
