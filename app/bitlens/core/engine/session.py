"""ONNX Runtime sessions: provider choice and the options exact simulation needs.

onnxruntime-gpu lists CUDAExecutionProvider whether or not a GPU exists
and silently falls back to the CPU when it cannot start it, so the
providers a session *actually* uses are read back from the session and
reported, never assumed.
"""

from __future__ import annotations

import contextlib
import os
import sys
from functools import cache

import onnx
import onnxruntime as ort

from bitlens.core.errors import EngineError

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@cache
def gpu_present() -> bool:
    """Whether an NVIDIA driver is visible (asking ORT for CUDA without one only logs errors)."""
    if sys.platform.startswith("linux"):
        return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")
    return sys.platform == "win32"


def requested_providers(device: str = "auto") -> list[str]:
    """Providers to ask for: ``auto`` takes CUDA when a GPU and the CUDA build are present."""
    available = ort.get_available_providers()
    if device not in ("auto", "cpu", "cuda"):
        raise EngineError(f"unknown device {device!r} (auto, cpu or cuda)")
    if device == "cpu":
        return [CPU]
    if CUDA in available and (device == "cuda" or gpu_present()):
        if hasattr(ort, "preload_dlls"):
            # Loads the NVIDIA pip wheels' libraries when installed; a missing optional
            # library must not stop the CPU path.
            with contextlib.suppress(Exception):
                ort.preload_dlls()
        return [CUDA, CPU]
    return [CPU]


def session_options() -> ort.SessionOptions:
    so = ort.SessionOptions()
    # A constant DequantizeLinear feeding a MatMul is otherwise rewritten to MatMulNBits with
    # accuracy_level 4, which quantizes activations to int8 inside the kernel (FACTS.md).
    so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
    # ORT's worker threads otherwise spin after each run and starve the numpy work
    # (quantization, metrics) that the engine does between runs.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def make_session(
    model: onnx.ModelProto, device: str = "auto", *, arena: bool = True
) -> ort.InferenceSession:
    """``arena=False`` for the many small sessions the engine keeps (one per layer, one per
    sweep cut): each arena would otherwise hold its peak activations for the session's life."""
    so = session_options()
    so.enable_cpu_mem_arena = arena
    so.enable_mem_pattern = arena
    try:
        return ort.InferenceSession(
            model.SerializeToString(),
            sess_options=so,
            providers=requested_providers(device),
        )
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EngineError(f"ONNX Runtime cannot build a session for this model: {msg}") from exc


def actual_providers(session: ort.InferenceSession) -> tuple[str, ...]:
    return tuple(session.get_providers())
