"""Loading ONNX models and describing them as neutral dataclasses."""
