"""The exceptions the core raises.

Every error a user can cause (a bad file, bad data, an impossible format)
is a :class:`BitlensError` with a message that names the problem; the CLI
prints it on one line and the GUI shows it in a message bar. Anything else
escaping the core is a bug.
"""

from __future__ import annotations


class BitlensError(Exception):
    """Base of all user-facing errors raised by the core."""


class FormatError(BitlensError, ValueError):
    """A numeric format is malformed, or cannot be applied to a tensor."""


class ModelLoadError(BitlensError):
    """A model file cannot be read as ONNX (missing, corrupt, unsafe...)."""


class PlanError(BitlensError, ValueError):
    """A quantization plan does not fit the model it is applied to."""


class DataError(BitlensError, ValueError):
    """Input or calibration data do not match the model's inputs."""


class EngineError(BitlensError):
    """The evaluation engine could not build or run a session."""


class ExportError(BitlensError):
    """A quantized model could not be exported or failed its fidelity check."""


class MetricError(BitlensError):
    """A user metric cannot be loaded, raised an exception or returned no number.

    ``details`` holds the metric's traceback (the window shows it under Details).
    """

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


class SearchError(BitlensError):
    """A plan search cannot start or has no plan within its budget."""


class Cancelled(BitlensError):
    """A long-running job was cancelled by the user."""
