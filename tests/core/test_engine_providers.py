"""Provider choice: CUDA only when a GPU is visible, and always report what actually ran."""

from __future__ import annotations

import pytest

from bitlens.core.engine import session
from bitlens.core.errors import EngineError
from tests.core.engine_models import small_cnn
from tests.core.test_engine import make_engine


def test_cpu_when_asked_or_without_a_gpu(monkeypatch) -> None:
    assert session.requested_providers("cpu") == [session.CPU]
    monkeypatch.setattr(session, "gpu_present", lambda: False)
    assert session.requested_providers("auto") == [session.CPU]
    with pytest.raises(EngineError, match="unknown device"):
        session.requested_providers("tpu")


def test_reports_the_provider_that_really_ran(monkeypatch) -> None:
    """onnxruntime-gpu lists CUDA even without a GPU and silently falls back to the CPU:
    the engine must report the fallback, not what it asked for."""
    monkeypatch.setattr(session, "gpu_present", lambda: True)
    requested = session.requested_providers("auto")
    engine = make_engine(small_cnn())
    engine.device = "auto"
    if session.CUDA in requested:
        assert requested == [session.CUDA, session.CPU]
    providers = engine.providers
    assert providers[-1] == session.CPU
    assert set(providers) <= set(requested) | {session.CPU}
