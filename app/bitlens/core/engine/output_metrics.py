"""What the engine says about a model's outputs: which are class scores, where one number
of error is read, and the per-output metrics (SQNR, cosine; top-1 and KL for class
scores; accuracy when labels are given)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import cached_property

import numpy as np

from bitlens.core import metrics
from bitlens.core.model.selected_outputs import before_pick
from bitlens.core.output_kind import class_score_axes, label_outputs
from bitlens.core.results import OutputResult
from bitlens.core.usermetric import concat

FLOAT_TYPES = frozenset({"float32", "float16", "float64", "bfloat16"})
# The reference's class-score figures kept (metrics.RefScores, float64: twice a float32
# output's size again); outputs past this are computed at each evaluation as before.
REF_SCORES_BYTES = 64 << 20


class OutputMetrics:
    """Mixin of :class:`~bitlens.core.engine.engine.Engine` (reads its model, info, data)."""

    @cached_property
    def class_score_axes(self) -> dict[str, int]:
        """Outputs read as class scores (top-1, KL), each with the axis of its classes;
        embeddings get SQNR and cosine only. The export's verdict reads the same judgement."""
        labelled = None if self.data is None or self.data.labels is None else self._error_output
        # graph_proto, not proto: proto reads every external weight into memory.
        return class_score_axes(self.model.graph_proto, self._output_names, labelled)

    @cached_property
    def label_outputs(self) -> frozenset[str]:
        """Outputs that are ArgMax/ArgMin class indices: judged by top-1 agreement."""
        return label_outputs(self.model.graph_proto.graph, self._output_names)

    @cached_property
    def measured_on(self) -> dict[str, str]:
        """Output -> the tensor its error is measured on, for an output whose rows a TopK or
        NonMaxSuppression picks (model/selected_outputs.py): near-equal candidates swap
        places under quantization, so compared position by position such an output says
        nothing (isbnx's YOLO26n: 1.1 dB at W8A8 while its first box moved 2 px); the
        candidates before the pick are compared instead, every one at its own position.
        Only an output picked from one float tensor is measured so."""
        types = {t.name: t.dtype for t in self.info.outputs}
        found = before_pick(self.model.graph_proto.graph)
        return {
            n: found[n][0]
            for n in self._output_names
            if len(found.get(n, ())) == 1 and types.get(n) in FLOAT_TYPES
        }

    @cached_property
    def _output_fetch(self) -> list[str]:
        """The outputs and the tensors measured for them, each once."""
        return list(dict.fromkeys([*self._output_names, *self.measured_on.values()]))

    def _fetched_for(self, before_pick: bool) -> list[str]:
        """The tensor fetched for each output: the measured one when ``before_pick``."""
        on = self.measured_on if before_pick else {}
        return [on.get(n, n) for n in self._output_names]

    @cached_property
    def _error_output(self) -> str:
        """The output one number of error is read at (the sweep): the first float one. A
        sentence-transformers export passes its integer ``input_ids`` through as output 0,
        whose error is always 0 (paraphrase-MiniLM-L3-v2: every sweep entry read inf dB)."""
        floats = [t.name for t in self.info.outputs if t.dtype in FLOAT_TYPES]
        return (floats or self._output_names)[0]

    def _output_results(
        self, ref, got: Mapping[str, list[np.ndarray]], feeds: Sequence[int]
    ) -> tuple[dict[str, OutputResult], dict[str, float]]:
        """Every output's :meth:`_output_result` and the task metric. An evaluation runs them
        on the side thread (Runs._aside) while it measures the layer outputs on its own: on
        rapidocr's PP-OCRv4 recognizer (8 x 40 positions x 6625 classes) the KL divergence
        in float64 took 32-48 ms after the 37-41 ms of measuring, one core idle through both
        (docs/benchmarks.md, "reevalwhole, session 14")."""
        outputs = {n: self._output_result(n, ref, got, feeds) for n in self._output_names}
        return outputs, self._task_metric(ref, got)

    def _output_result(
        self, name: str, ref, got: Mapping[str, list[np.ndarray]], feeds: Sequence[int]
    ) -> OutputResult:
        """Errors of output ``name`` (of the tensor before its pick, see measured_on) from
        the float reference ``ref[tensor][feed]`` and the plan's values ``got[tensor]``."""
        on = self.measured_on.get(name)
        tensor = on or name
        if getattr(self, "_scores_of", None) is not ref:  # kept for this reference only
            self._scores_of, self._scores, self._scores_bytes = ref, {}, 0
        keys = [(tensor, i) for i in feeds]
        res = self._errors_of(name, [ref[tensor][i] for i in feeds], got[tensor], not on, keys)
        return replace(res, measured_on=on) if on else res

    def _ref_scores(self, key: tuple, values: np.ndarray, axis: int) -> metrics.RefScores:
        """metrics.RefScores of a reference value, kept under ``key`` within
        REF_SCORES_BYTES: the same for every plan."""
        found = self._scores.get(key)
        if found is None:
            found = metrics.RefScores.of(values, axis)
            if self._scores_bytes + found.nbytes <= REF_SCORES_BYTES:
                self._scores[key] = found
                self._scores_bytes += found.nbytes
        return found

    def _errors_of(
        self,
        name: str,
        ref: list[np.ndarray],
        got: list[np.ndarray],
        judged: bool = True,
        keys: Sequence[tuple] | None = None,
    ) -> OutputResult:
        """``judged``: read as class scores or labels where the output is one (not the
        candidates before a pick). ``keys``: each reference value's key, for the figures
        kept from it (_ref_scores)."""
        differ = [(r.shape, g.shape) for r, g in zip(ref, got, strict=True) if r.shape != g.shape]
        note = None
        if differ:
            (rs, gs), n = differ[0], len(ref)
            note = f"{len(differ)} of {n} feeds: {list(gs)} against float's {list(rs)}"
            pairs = [metrics.zero_padded(r, g) for r, g in zip(ref, got, strict=True)]
            ref, got = [r for r, _ in pairs], [g for _, g in pairs]
            keys = None  # the reference padded to this plan's shapes
        sums = metrics.ErrorSums()
        for r_i, g_i in zip(ref, got, strict=True):
            sums.add(r_i, g_i)
        err = sums.result()
        axis = self.class_score_axes.get(name) if judged else None
        res = OutputResult(name, err, shape_differs=note)
        if judged and name in self.label_outputs:  # the positions that keep their label
            same = sum(int(np.sum(r_i == g_i)) for r_i, g_i in zip(ref, got, strict=True))
            total = sum(int(np.size(r_i)) for r_i in ref)
            return replace(res, top1_agreement=same / total if total else 1.0)
        if axis is None:
            return res
        if all(metrics.classifier_like(np.asarray(r_i)) for r_i in ref):
            r, g = concat(ref), concat(got)
            if metrics.classifier_like(r):
                kept = None if keys is None else self._ref_scores(tuple(keys), r, -1)
                return replace(res, top1_agreement=metrics.top1_agreement(r, g, -1, kept),
                               kl=metrics.mean_kl(r, g, -1, kept))  # fmt: skip
        elif all(metrics.positional_scores_like(np.asarray(r_i), axis) for r_i in ref):
            scores = None if keys is None else [
                self._ref_scores(k, np.asarray(r_i), axis) for k, r_i in zip(keys, ref, strict=True)
            ]  # fmt: skip
            top1, kl = metrics.positional_top1_kl(ref, got, axis, scores)
            return replace(res, top1_agreement=top1, kl=kl)
        return res

    def _task_metric(self, ref, got) -> dict[str, float]:
        labels = self.data.eval_labels
        if labels is None or not self._output_names:
            return {}
        name = self._error_output
        r = concat([ref[name][i] for i in self.data.evaluation])
        g = concat(got[name])
        if not metrics.classifier_like(r) or len(r) != len(labels):
            return {}
        return {
            "accuracy_float": float(np.mean(np.argmax(r, -1) == labels)),
            "accuracy": float(np.mean(np.argmax(g, -1) == labels)),
        }
