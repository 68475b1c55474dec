"""ONNX Runtime sessions: provider choice and the options exact simulation needs.

onnxruntime-gpu lists CUDAExecutionProvider whether or not a GPU exists
and silently falls back to the CPU when it cannot start it, so the
providers a session *actually* uses are read back from the session and
reported, never assumed.

Machine-readable output must stay machine-readable: ``ort.preload_dlls()``
prints its "Failed to load ..." lines to stdout (before a ``--json``
answer), and every session that asks for a CUDA provider that cannot start
logs an error and a warning. So CUDA is tried once per process, with that
noise captured into the ``bitlens`` log at debug level, and a failure
becomes one warning naming the first missing library, after which sessions
ask for the CPU only.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from functools import cache

import numpy as np
import onnx
import onnxruntime as ort

from bitlens.core.engine import nchwc, nchwc_chain
from bitlens.core.errors import EngineError
from bitlens.core.model.irversion import check_runnable

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@cache
def gpu_present() -> bool:
    """Whether an NVIDIA driver is visible (asking ORT for CUDA without one only logs errors)."""
    if sys.platform.startswith("linux"):
        return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")
    return sys.platform == "win32"


log = logging.getLogger("bitlens")

# ONNX Runtime's default logger severity (0 verbose ... 4 fatal); 2 is its documented default.
_ORT_DEFAULT_SEVERITY = 2


@contextlib.contextmanager
def captured_output() -> Iterator[io.StringIO]:
    """Capture what is written to stdout and stderr, from Python and from C, into the yielded buffer."""
    buf = io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                yield buf
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            buf.write(sink.read().decode("utf-8", "replace"))


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


_probe_lock = threading.Lock()  # the GUI's worker threads may ask at the same time


@cache
def cuda_unavailable() -> str | None:
    """Why the CUDA provider cannot start here (one line), or None when it can. Tried once."""
    with _probe_lock:
        return _try_cuda()


def _try_cuda() -> str | None:
    with captured_output() as out:
        if hasattr(ort, "preload_dlls"):
            # Loads the NVIDIA pip wheels' libraries when installed; a missing optional
            # library must not stop the CPU path.
            with contextlib.suppress(Exception):
                ort.preload_dlls()
        ort.set_default_logger_severity(4)
        try:
            started = CUDA in _probe_providers([CUDA, CPU])
        finally:
            ort.set_default_logger_severity(_ORT_DEFAULT_SEVERITY)
    noise = _strip_ansi(out.getvalue()).strip()
    if noise:
        log.debug("CUDA preload and probe said:\n%s", noise)
    if started:
        return None
    missing = next((ln for ln in noise.splitlines() if ln.startswith("Failed to load ")), "")
    why = missing.split(": ", 1)[0].removeprefix("Failed to load ") if missing else ""
    detail = f"{why} not found: " if why else ""
    return (
        f"ONNX Runtime cannot start CUDA ({detail}it needs the CUDA and cuDNN that "
        f"onnxruntime-gpu {ort.__version__} was built for, e.g. pip's 'cuda' extra); "
        "running on the CPU"
    )


def _probe_providers(providers: list[str]) -> list[str]:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.log_severity_level = 4
    try:
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=providers)
    except Exception:  # the CUDA provider can fail at creation instead of falling back
        return [CPU]
    return list(sess.get_providers())


_fallback: list[str] = []  # the reason CUDA was not used, once it is known


@cache
def _warn_fallback(reason: str) -> None:
    _fallback[:] = [reason]
    log.warning(reason)  # once per process


def fallback_reason() -> str | None:
    """Why sessions run on the CPU although CUDA was wanted, if that happened (no probing)."""
    return _fallback[0] if _fallback else None


def requested_providers(device: str = "auto") -> list[str]:
    """Providers to ask for: ``auto`` takes CUDA when a GPU and the CUDA build are present.

    When CUDA is wanted but cannot start, this logs one warning (once) and asks for the CPU.
    """
    available = ort.get_available_providers()
    if device not in ("auto", "cpu", "cuda"):
        raise EngineError(f"unknown device {device!r} (auto, cpu or cuda)")
    if device == "cpu":
        return [CPU]
    if CUDA in available and (device == "cuda" or gpu_present()):
        reason = cuda_unavailable()
        if reason is None:
            return [CUDA, CPU]
        _warn_fallback(reason)
    return [CPU]


def session_options() -> ort.SessionOptions:
    so = ort.SessionOptions()
    # A constant DequantizeLinear feeding a MatMul is otherwise rewritten to MatMulNBits with
    # accuracy_level 4, which quantizes activations to int8 inside the kernel (FACTS.md).
    so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
    # ORT's worker threads otherwise spin after each run and starve the numpy work
    # (quantization, metrics) that the engine does between runs.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The engine's quantizers are real QuantizeLinear/DequantizeLinear nodes (int_activation.
    # qdq_nodes); ORT otherwise fuses DQ -> Add -> Q into QLinearAdd and the like, integer
    # kernels whose requantization differs from the float simulation (13595 of 10^6 values
    # in tests/core/test_engine_qdq.py). kOrtSessionOptionsDisableQuantQDQ in
    # onnxruntime/core/session/onnxruntime_session_options_config_keys.h.
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    so.log_severity_level = 3
    return so


@cache
def shared_arena() -> bool:
    """Register one CPU arena allocator for every session of this process (once).

    Each session's own arena keeps its peak activation buffers for the session's life, so
    the engine's many sessions (per structure, per cut, per layer) would each hold theirs;
    without an arena every run maps and faults in its buffers afresh (the engine fixes
    glibc's mmap threshold, native_memory.py), measured 2-5x slower on a CRNN. Sessions that
    opt in with ``session.use_env_allocators`` share this one arena instead: the memory of
    the largest concurrent runs, the speed of an arena. See
    https://onnxruntime.ai/docs/get-started/with-c.html (shared allocators). False where
    this build cannot register one (sessions then keep their own arenas)."""
    try:
        info = ort.OrtMemoryInfo(
            "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
        )
        # kSameAsRequested: grow by what a run asks for, not by doubling chunks
        ort.create_and_register_allocator(info, ort.OrtArenaCfg({"arena_extend_strategy": 1}))
    except Exception as exc:  # an older build, or registered already by someone else
        log.debug("no shared ONNX Runtime arena: %s", exc)
        return False
    return True


@cache
def _shrinking() -> ort.RunOptions:
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


@cache
def _releaser() -> ort.InferenceSession | None:
    """A one-element session on the shared arena, run only to shrink it (None: no arena)."""
    if not shared_arena():
        return None
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "release", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = session_options()
    so.add_session_config_entry("session.use_env_allocators", "1")
    return ort.InferenceSession(model.SerializeToString(), so, providers=[CPU])


_release_lock = threading.Lock()


def release_arena() -> None:
    """Give back the shared arena's regions that no live buffer uses.

    The arena otherwise keeps its largest footprint for the process's life: a batch of
    runs that fetch every layer output (the float reference, an evaluation) grows it by
    about a feed's activations, and the fetched arrays ORT hands to numpy are views into
    it, so they stay reserved after the engine measured and dropped them (measured on the
    generated CRNN after the float reference: 142 -> 70 MiB above the interpreter). The
    engine calls this after such batches and after each layer of a sweep, not after every
    run: shrinking at the end of each run (run option
    ``memory.enable_memory_arena_shrinkage``, onnxruntime_run_options_config_keys.h) made
    the next run map and fault in its buffers again, 15-60% slower runs on the CRNN. With
    arena extend strategy kSameAsRequested (shared_arena) a region is one request, so a
    freed buffer frees its region; the values the engine keeps stay where they are.
    ONNX Runtime's Python API has no call for it, so this runs a one-element session on the
    same arena with that run option."""
    sess = _releaser()
    if sess is None:
        return
    with _release_lock:
        sess.run(["y"], {"x": _ONE}, _shrinking())


_ONE = np.zeros(1, np.float32)


def make_session(
    model: onnx.ModelProto,
    device: str = "auto",
    *,
    arena: bool = True,
    threads: int = 0,
    blocked_chains: bool = False,
    disabled: Sequence[str] = (),
) -> ort.InferenceSession:
    """``arena=True``: CPU buffers from the process's shared arena (:func:`shared_arena`,
    given back by :func:`release_arena`); False: no arena at all (memory returned after
    each run, slower). ``threads``: ONNX Runtime's intra-op threads (0: its default, one
    per core); 1 for sessions whose runs the caller already runs on every core at once.
    ``blocked_chains``: consecutive NCHWc convs pass their blocked tensors on
    (nchwc_chain.py), in ONNX Runtime's priority-based node order (below); the sweep's
    suffix sessions, which fetch one or two outputs. The engine's other sessions fetch
    every layer output, so a chain there trades each ReorderInput for a ReorderOutput:
    their runs were no faster (docs/benchmarks.md, "chainall, session 15").
    ``disabled``: ONNX Runtime graph transformers and rules left out, by name
    (float_outputs.VALUE_FUSIONS for the float graph's session)."""
    problem = check_runnable(model)
    if problem:
        raise EngineError(problem)
    so = session_options()
    so.intra_op_num_threads = threads
    if arena and shared_arena():
        so.add_session_config_entry("session.use_env_allocators", "1")
    else:
        so.enable_cpu_mem_arena = arena
        so.enable_mem_pattern = arena
    providers = requested_providers(device)
    # fed-filter convs on ONNX Runtime's NCHWc kernels where they exist (nchwc.py); the
    # plain graph if ONNX Runtime refuses the rewritten one (a speed-up, never a failure)
    graph, wrap = nchwc.nchwc_graph(model, providers)
    if wrap is not None:
        if blocked_chains:
            graph = nchwc_chain.chain_blocked(graph)  # no NCHW round trip between convs
            # ONNX Runtime's default order is a reverse depth-first walk from the graph's
            # outputs: in a graph that fetches every layer output it ran the whole blocked
            # chain first and each layer's ReorderOutput only at the end, so every blocked
            # tensor was alive at once (the benchmark CRNN's float reference peaked 88 MiB
            # higher, `bench_engine.py crnn --memory-only --memory-detail`). The priority-
            # based order takes ready nodes in the graph's order, where each ReorderOutput
            # follows its twin (onnxruntime/core/graph/graph_viewer.cc, ExecutionOrder).
            so.execution_order = ort.ExecutionOrder.PRIORITY_BASED
        try:
            sess = ort.InferenceSession(
                graph.SerializeToString(), so, providers=providers, disabled_optimizers=disabled
            )
            return nchwc.NchwcSession(sess, *wrap)
        except Exception as exc:
            log.debug("NCHWc convolutions refused, plain convolutions instead: %s", exc)
            so.execution_order = ort.ExecutionOrder.DEFAULT
    try:
        return ort.InferenceSession(
            model.SerializeToString(), so, providers=providers, disabled_optimizers=disabled
        )
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EngineError(f"ONNX Runtime cannot build a session for this model: {msg}") from exc


def actual_providers(session: ort.InferenceSession) -> tuple[str, ...]:
    return tuple(session.get_providers())
