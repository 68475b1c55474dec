"""One ONNX Runtime run without the Python wrapper's quadratic input check.

``InferenceSession.run`` first checks that every required input is fed
(``_validate_input`` in onnxruntime/python/onnxruntime_inference_collection.py):
for each of the session's inputs it tests membership in a *list* of the fed names,
so a run costs inputs x feeds string comparisons. The engine feeds every weight and
quantizer parameter, so a 200-layer MatMul stack's simulation session has 600 inputs
and the check took 4-5 ms of Python per run (more than ONNX Runtime's own run of a
feed of 32 rows), on every run of the float reference, the evaluations and the
sweep. Here the same check is one set difference per run (the session's input names
are read once per session), then the C++ run is called directly: it runs the same
graph on the same feeds, so the outputs are the same arrays. A missing input, a
session of another kind (the engine's wrappers) or a provider failure goes through
``InferenceSession.run`` itself: its message, and its fallback to the CPU provider.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Mapping, Sequence

import numpy as np
import onnxruntime as ort

# session -> (every input name, the required ones): read once, dropped with the session
_INPUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# True: every run through InferenceSession.run (the straightforward path, for tests)
PLAIN = False


def input_names(sess) -> tuple[frozenset[str], frozenset[str]]:
    """(every input name, the inputs a run must feed) of ``sess``: ORT's own
    ``get_inputs`` for a plain session (optional-typed inputs need no feed), the
    wrapper's ``get_inputs`` for the engine's wrappers (all required)."""
    try:
        found = _INPUTS.get(sess)
    except TypeError:  # not weak-referenceable
        found = None
    if found is None:
        args = sess.get_inputs()
        names = frozenset(a.name for a in args)
        optional = {a.name for a in args if str(getattr(a, "type", "")).startswith("optional")}
        found = (names, names - optional)
        with contextlib.suppress(TypeError):
            _INPUTS[sess] = found
    return found


def run_session(
    sess, fetch: Sequence[str], feeds: Mapping[str, np.ndarray], run_options=None
) -> list[np.ndarray]:
    """``sess.run(list(fetch), feeds, run_options)``, without the wrapper's list check
    where ``sess`` is a plain InferenceSession fed every input it requires."""
    inner = getattr(sess, "_sess", None)
    if PLAIN or inner is None or not fetch or not isinstance(sess, ort.InferenceSession):
        # the engine's wrappers (chain.Chain, nchwc.NchwcSession) take no run options
        args = () if run_options is None else (run_options,)
        return sess.run(list(fetch), feeds, *args)
    if not input_names(sess)[1] <= feeds.keys():
        return sess.run(list(fetch), feeds, run_options)  # ORT's own message
    try:
        return inner.run(list(fetch), feeds, run_options)
    except ort.capi.onnxruntime_pybind11_state.EPFail:
        return sess.run(list(fetch), feeds, run_options)  # its fallback, as a plain run
