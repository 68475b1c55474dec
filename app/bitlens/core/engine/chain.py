"""A suffix of the simulation graph run as a chain of parts, each part's session shared by
every structure whose graph has the very same part.

Changing a layer's weight to a format the deployment target cannot run quantized (int4 on
ort-cpu) moves the target's tensor quantizers around that layer: a new simulation graph,
and before this a new session for everything after the change (100-160 ms of ONNX Runtime
set-up on a 46-layer CRNN, about a third of a float run). The suffix is instead cut at a
fixed grid of layer cuts into parts (parts.py, which builds the sweep's parts too); a
part's session is keyed by the part's serialized graph, so only the part holding the
change is new. Every tensor crossing a cut is an output
of the whole simulation graph (prefix.py), so ONNX Runtime fuses nothing across a cut in
either, and the chain computes exactly what one session over the suffix computes.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor

import numpy as np
import onnx
from onnx import numpy_helper

from bitlens.core.engine import parts as grid_parts
from bitlens.core.engine import prefix
from bitlens.core.engine.session_run import run_session

PART_SESSIONS = 64  # part sessions kept (their buffers come from the shared arena)


class _Arg:
    """What the engine's runner reads of a session input: its name."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class Chain:
    """Parts of a graph run one after another, with a session's ``get_inputs``/``run``."""

    def __init__(
        self,
        parts: Sequence[tuple[object, tuple[str, ...], tuple[str, ...]]],
        constants: Mapping[str, np.ndarray] | None = None,
        passthrough: Sequence[str] = (),
    ):
        """``parts``: (session, input names, output names) in graph order; ``constants`` and
        ``passthrough``: graph outputs no node makes (an initializer, a graph input listed
        as an output), which no part fetches: given as they are."""
        self.parts = list(parts)
        self._constants = dict(constants or {})
        produced: set[str] = set()
        names: list[str] = list(passthrough)
        for _, inputs, outputs in self.parts:
            names += [n for n in inputs if n not in produced]
            produced.update(outputs)
        self._inputs = [_Arg(n) for n in dict.fromkeys(names)]
        self._fetches: dict[tuple[str, ...], list[list[str]]] = {}

    def get_inputs(self) -> list[_Arg]:
        return self._inputs

    def _plan(self, fetch: tuple[str, ...]) -> list[list[str]]:
        """Per part, what it must fetch: what is asked for or read by a later part."""
        plan = self._fetches.get(fetch)
        if plan is None:
            need = set(fetch)
            plan = []
            for _, inputs, outputs in reversed(self.parts):
                plan.append([o for o in outputs if o in need])
                need.update(inputs)
            plan.reverse()
            self._fetches[fetch] = plan
        return plan

    def run(self, fetch: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        values = {**self._constants, **feeds}
        for (sess, inputs, _), want in zip(self.parts, self._plan(tuple(fetch)), strict=True):
            if want:
                got = run_session(sess, want, {n: values[n] for n in inputs})
                values.update(zip(want, got, strict=True))
        return [values[t] for t in fetch]


def part_starts(cuts: prefix.Cuts, start: int) -> list[int]:
    """Where the parts of the suffix from node ``start`` begin: ``start``, then the grid
    points of the graph's cuts after it (parts.grid)."""
    return [start, *(s for s in grid_parts.grid(cuts.start.values()) if s > start)]


def first_start(cuts: prefix.Cuts) -> int:
    """Where the first layer's cut begins: the chain of a whole graph starts there. Nodes
    before it (a Paddle export's hundreds of Constants and shape computations before its
    first Conv: rapidocr's PP-OCRv4 recognizer, 135 nodes) belong to no part; their values
    are kept at the first cut like any cut's. A graph without layers (a scikit-learn
    classifier converted to ai.onnx.ml operators only) has no cut: its chain starts at 0."""
    return min(cuts.start.values(), default=0)


def part_models(
    sim: onnx.ModelProto,
    cuts: prefix.Cuts,
    start: int,
    declared: Mapping[str, prefix.Declared],
) -> list[tuple[bytes, onnx.ModelProto]]:
    """The parts of ``sim`` from node ``start`` on (:func:`part_starts`), each with the key
    its session is kept under (a digest of its serialized graph)."""
    boundary = {s: cuts.boundary[n] for n, s in cuts.start.items()}
    starts = part_starts(cuts, start)
    models = []
    for s, e in zip(starts, [*starts[1:], None], strict=True):
        model = prefix.build_tail(sim, s, boundary[s], declared, end=e, index=cuts.graph)
        key = hashlib.blake2b(model.SerializeToString(deterministic=True)).digest()
        models.append((key, model))
    return models


def build_parts_ahead(
    sim: onnx.ModelProto,
    cuts: prefix.Cuts,
    declared: Mapping[str, prefix.Declared],
    sessions: OrderedDict[bytes, object],
    make: Callable[[onnx.ModelProto], object],
    current: Callable[[], bool],
) -> int:
    """Build the sessions of every part of ``sim`` that ``sessions`` lacks and add them
    (on the engine's side thread, while nothing needs them yet); the number added.
    ``current()`` False: the sessions were dropped meanwhile, add nothing. Only adds: the
    thread building a chain reads and trims ``sessions`` (each dict operation is atomic
    under the interpreter lock; a part both threads build is one wasted build)."""
    built = 0
    # from the first cut, not node 0: no part begins there when nodes precede the first
    # layer, and building from it failed (KeyError) on the side thread, unseen, so that no
    # part was ever built ahead for such a model
    for key, model in part_models(sim, cuts, first_start(cuts), declared):
        if not current():
            break
        if key in sessions:
            continue
        sess = make(model)
        if not current():
            break
        sessions.setdefault(key, sess)
        built += 1
    return built


def build_chain(
    sim: onnx.ModelProto,
    cuts: prefix.Cuts,
    start: int,
    declared: Mapping[str, prefix.Declared],
    sessions: OrderedDict[bytes, object],
    make: Callable[[onnx.ModelProto], object],
    pool: Executor | None = None,
) -> Chain:
    """The chain running ``sim`` from node ``start`` (a cut's first node) to the end; part
    sessions come from ``sessions`` (keyed by the part's serialized graph) or ``make``,
    the missing ones on ``pool``'s threads when given (ONNX Runtime builds a session
    without holding the GIL: the first change of a structure builds up to parts.PARTS of
    them)."""
    models = part_models(sim, cuts, start, declared)
    missing = {key: model for key, model in models if key not in sessions}
    if pool is not None and len(missing) > 1:
        made = dict(zip(missing, pool.map(make, missing.values()), strict=True))
    else:
        made = {key: make(model) for key, model in missing.items()}
    parts = []
    for key, model in models:
        sess = made.get(key)
        if sess is None:
            sess = sessions[key]
            sessions.move_to_end(key)
        else:
            sessions[key] = sess
        g = model.graph
        inputs = tuple(v.name for v in g.input)
        parts.append((sess, inputs, tuple(v.name for v in g.output)))
    while len(sessions) > PART_SESSIONS:
        sessions.popitem(last=False)
    # Graph outputs no node makes (prefix.Cuts index -1): a whole run fetches them too
    # (reuse.py), and no part has them; a constant output read by a key was "'k'".
    g = sim.graph
    listed = {v.name for v in g.output}
    constants = {t.name: numpy_helper.to_array(t) for t in g.initializer if t.name in listed}
    return Chain(parts, constants, [v.name for v in g.input if v.name in listed])
