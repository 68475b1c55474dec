"""What the window's commands do: start jobs on the runner, feed results to the document.

Menus, toolbars and views call these methods; none of them blocks. Each
plan change schedules a fresh evaluation (superseding any still waiting),
and the layer detail and output scatter follow the selection and the plan.
File work that is quick and local (reading or writing a plan) happens here
directly; its errors reach the window through ``failed`` like a worker's.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from bitlens.core import codes
from bitlens.core.errors import BitlensError, DataError, PlanError
from bitlens.core.export import accounting
from bitlens.core.export.exporter import ExportOptions, check_target
from bitlens.core.fileio import atomic_write_text, check_output, same_file
from bitlens.core.nonfinite import nonfinite_warning
from bitlens.core.plan import Plan
from bitlens.core.plan_schema import read_json_file
from bitlens.core.results import SweepEntry
from bitlens.core.search import Measuring, Point, SearchOptions, Sensitivity
from bitlens.core.usermetric import Metric
from bitlens.gui import jobs
from bitlens.gui.document import Document
from bitlens.gui.jobs import DataRequest, LayerDetail, Session
from bitlens.gui.runner import EngineRunner, Job

SAMPLE_START_PRESET = "W8A8"


class Controller(QObject):
    detailChanged = Signal(object)  # LayerDetail (partial while the sandbox fills) or None
    sweepFinished = Signal(object)  # list[SweepEntry]
    calibrated = Signal(str)  # the calibration method now in use
    failed = Signal(str, object)  # what was being done, the exception
    opened = Signal(object)  # the Path (or sample name) just opened
    exported = Signal(object)  # FidelityReport of a finished export
    searchStarted = Signal()
    searchPoint = Signal(object)  # a Point the running search evaluated
    searchMeasuring = Signal(object)  # Measuring: the rows and outputs its errors are on
    searchFinished = Signal(object)  # SearchResult, or None when cancelled or failed
    searchFailed = Signal()  # just before searchFinished(None) when the search raised
    dimsNeeded = Signal()  # the open model has no input data: ask for its dynamic sizes
    nonfinite = Signal(str)  # the evaluated plan's outputs hold NaN/inf: which layer first
    sizePredicted = Signal(object, object)  # Plan, accounting.ExportSize of its export
    codesReady = Signal(object, object)  # the request, a CodeSlice or why there is none

    def __init__(self, document: Document, parent: QObject | None = None, device: str = "auto"):
        super().__init__(parent)
        self.document = document
        self.runner = EngineRunner(self)
        self.device = device
        self.want_outputs = True  # the outputs view is shown: compute its scatter data
        self.detail: LayerDetail | None = None
        self.sweep_results: list[SweepEntry] | list[Sensitivity] = []
        self.sweep_metric: str | None = None  # the task metric of the last sweep's entries
        self.calibration = "minmax"
        # plan -> the export's predicted size (building an export in memory takes seconds on
        # a real model: done on demand, once per plan and engine)
        self.sizes: dict[tuple[Plan, ExportOptions | None], accounting.ExportSize] = {}
        self.metric: Metric | None = None  # the user's metric, once a search loaded one
        # what asked for the input sizes (a sweep, a recalibration, an export): run again once
        # the sizes are given and the data exists, so the user's click is not lost
        self._after_data: Callable[[], object] | None = None
        self.runner.failed.connect(self.failed)
        self.runner.cancelled.connect(self._on_cancelled)
        document.planChanged.connect(self._on_plan_changed)
        document.selection.changed.connect(self._on_selection_changed)

    @property
    def session(self) -> Session | None:
        return self.document.session

    # -- opening --------------------------------------------------------------------------
    def open_model(
        self,
        path: str | Path,
        request: DataRequest | None = None,
        dims: Mapping[str, int] | None = None,
    ) -> Job:
        """Open a model file; without a request, on random inputs sized by ``dims``, or
        with no data at all when a dynamic size is unknown (then ``dimsNeeded``)."""
        p = Path(path)
        return self.runner.submit(
            Job("open", f"Opening {p.name}", jobs.open_model, (p, request, self.device, dims),
                on_result=lambda s: self._on_opened(s, p))
        )  # fmt: skip

    def open_sample(self, name: str) -> Job:
        return self.runner.submit(
            Job("open", f"Opening sample {name}", jobs.open_sample, (name, self.device),
                on_result=lambda s: self._on_opened(s, name))
        )  # fmt: skip

    def set_input_sizes(self, dims: Mapping[str, int]) -> Job | None:
        """Calibrate and evaluate on random inputs with these dynamic-dimension sizes."""
        return self.open_data(DataRequest("random", dims=dict(dims)))

    def _needs_data(self, resume: Callable[[], object] | None = None) -> bool:
        """True (and the sizes or data asked for) when the open model has no input data;
        ``resume`` runs once data for this model exists."""
        session = self.session
        if session is None or session.data is not None:
            return False
        self._after_data = resume
        if session.data_note:
            self.failed.emit("This needs input data", DataError(
                f"{session.data_note}; open data with File ▸ Open Data…"))  # fmt: skip
        else:
            self.dimsNeeded.emit()
        return True

    def open_data(self, request: DataRequest) -> Job | None:
        session = self.session
        if session is None:
            self.failed.emit("Opening data", BitlensError("open a model before its data"))
            return None
        return self.runner.submit(
            Job("open", f"Reading {request.describe()}", jobs.change_data, (session, request),
                on_result=lambda s: self._on_opened(s, None))
        )  # fmt: skip

    def _on_opened(self, session: Session, what: object) -> None:
        for key in ("detail", "evaluate", "outputs", "sweep", "search", "nonfinite", "size",
                    "codes"):
            self.runner.discard(key)  # computed with the previous engine
        self.detail = None
        self.sizes = {}
        self.sweep_results = []
        self.sweep_metric = None
        self.calibration = "minmax"
        resume, self._after_data = self._after_data, None
        if what is not None:  # another model (or sample): a pending action was for the last one
            resume = None
        # A sample opens already quantized (W8A8), so the first look shows sizes and errors;
        # a user's own model opens in float. Either is the clean starting point, not an edit.
        start = Plan.preset(session.info, SAMPLE_START_PRESET) if isinstance(what, str) else None
        self.document.load(session, start)
        self.detailChanged.emit(None)
        # new data for the same model keeps the selection, which alone asks for no detail:
        # the pane said "Select a layer" under a selected row until the next edit
        self.request_detail()
        if what is not None:
            self.opened.emit(what)
        self.evaluate()
        if session.data is None and session.data_note:
            self.failed.emit("Generating random inputs", DataError(session.data_note))
        elif session.data is None:
            self.dimsNeeded.emit()
        elif resume is not None:
            resume()

    # -- plan and evaluation ----------------------------------------------------------------
    def _on_plan_changed(self) -> None:
        self.evaluate()
        self.request_detail()

    def evaluate(self) -> None:
        doc = self.document
        if doc.session is None or doc.plan is None:
            return
        plan = doc.plan

        def failed(exc: BaseException) -> None:
            doc.set_evaluation_failed(plan)
            self.failed.emit("Evaluating the plan", exc)

        self.runner.submit(
            Job("evaluate", "Evaluating the plan", jobs.evaluate,
                (doc.session.engine, plan, self.metric),
                on_result=self._on_evaluated, on_error=failed, cancellable=False, quiet=True)
        )  # fmt: skip

    def _on_evaluated(self, result: tuple[Plan, Any]) -> None:
        plan, evaluation = result
        self.document.set_evaluation(plan, evaluation)
        if self.want_outputs:
            self.request_outputs()
        # NaN or inf in an output makes its error non-finite: only then find the layer that
        # produced it first (another run of the model, as `bitlens eval` warns)
        if any(not math.isfinite(o.error.mse) for o in evaluation.outputs.values()):
            self.check_nonfinite(plan)

    def check_nonfinite(self, plan: Plan) -> None:
        session = self.session
        if session is None:
            return

        def done(warning: str | None) -> None:
            if warning and self.document.plan == plan:
                self.nonfinite.emit(warning)

        self.runner.submit(
            Job("nonfinite", "Looking for NaN/Inf", nonfinite_warning, (session.engine, plan),
                on_result=done, cancellable=False, quiet=True)
        )  # fmt: skip

    # -- export size ------------------------------------------------------------------------
    def predict_size(self, options: ExportOptions | None = None) -> Job | None:
        """Build the current plan's export with ``options`` in memory (in the worker) to learn
        its file size; ``sizePredicted`` at once when it is already known."""
        session, plan = self.session, self.document.plan
        if session is None or plan is None:
            return None
        known = self.sizes.get((plan, options))
        if known is not None:
            self.sizePredicted.emit(plan, known)
            return None
        if any(c.activation is not None for c in plan.choices.values()) and self._needs_data(
            lambda: self.predict_size(options)
        ):
            return None  # activation scales come from calibration data

        def done(size: accounting.ExportSize) -> None:
            self.sizes[(plan, options)] = size
            self.sizePredicted.emit(plan, size)

        return self.runner.submit(
            Job("size", "Predicting the export file size", accounting.predict,
                (session.engine, plan, options), on_result=done)
        )  # fmt: skip

    def request_outputs(self) -> None:
        doc = self.document
        if doc.session is None or doc.plan is None or doc.session.data is None:
            return
        self.runner.submit(
            Job("outputs", "Comparing outputs", jobs.output_pairs, (doc.session.engine, doc.plan),
                on_result=lambda r: doc.set_outputs(*r), cancellable=False, quiet=True)
        )  # fmt: skip

    def recalibrate(self, method: str) -> None:
        session = self.session
        if session is None or self._needs_data(lambda: self.recalibrate(method)):
            return

        def done(m: str) -> None:
            self.calibration = m
            self.sizes = {}  # activation scales changed, and with them the export
            self.calibrated.emit(m)
            self.evaluate()
            self.request_detail()

        self.runner.submit(
            Job("calibrate", f"Calibrating ({method})", jobs.recalibrate,
                (session.engine, method), on_result=done)
        )  # fmt: skip

    # -- layer detail -------------------------------------------------------------------------
    def _on_selection_changed(self, _origin: object) -> None:
        self.request_detail()

    def request_detail(self) -> None:
        doc = self.document
        name = doc.selection.current
        if doc.session is None or doc.plan is None or name is None:
            self.runner.discard("detail")
            if self.detail is not None:
                self.detail = None
                self.detailChanged.emit(None)
            return
        self.runner.submit(
            Job("detail", f"Inspecting {name}", jobs.layer_detail,
                (doc.session.engine, name, doc.plan[name], {}),
                on_yield=self._on_detail, on_result=self._on_detail, quiet=True,
                cancellable=False,  # cancelling a sweep must not leave the detail stale
                steps_aside=True)  # an edit's evaluation need not wait for the sandbox
        )  # fmt: skip

    def _on_detail(self, detail: LayerDetail) -> None:
        doc = self.document
        plan = doc.plan
        # A detail computed before the plan or the model changed is dropped.
        if plan is None or detail.layer not in plan or plan[detail.layer] != detail.choice:
            return
        self.detail = detail
        self.detailChanged.emit(detail)

    def request_codes(self, layer: str, choice: Any, start: int, count: int) -> Job | None:
        """A slice of the layer's weight codes in ``choice``'s format (the detail's Codes tab),
        as the export of the plan writes them (a scale its int32 bias needed raised)."""
        session, plan = self.session, self.document.plan
        if session is None or plan is None or layer not in session.info.layer_names:
            return None
        asked = (layer, choice, start, count)
        if plan[layer] != choice:  # the detail asks for the layer's choice in this plan
            plan = plan.with_choices({layer: choice})

        def failed(exc: BaseException) -> None:  # e.g. no weights: said in the tab, not an error
            self.codesReady.emit(asked, str(exc))

        return self.runner.submit(
            Job("codes", f"Codes of {layer}", codes.planned_code_slice,
                (session.engine, plan, session.info.layer(layer), start, count),
                on_result=lambda s: self.codesReady.emit(asked, s), on_error=failed,
                quiet=True, cancellable=False)
        )  # fmt: skip

    # -- sweep ----------------------------------------------------------------------------------
    def run_sweep(
        self,
        formats: Sequence[str],
        layers: Sequence[str] | None = None,
        activation_formats: Sequence[str] = (),
    ) -> Job | None:
        """Each layer alone in each weight format (and, with ``activation_formats`` or a
        loaded task metric, its input activation in each: ``bitlens sweep
        --activation-formats/--metric``, entries with output error, metric, bytes saved)."""
        session = self.session
        acts = list(activation_formats)
        if session is None or self._needs_data(lambda: self.run_sweep(formats, layers, acts)):
            return None

        def done(entries: list[SweepEntry] | list[Sensitivity], metric: str | None = None) -> None:
            self.sweep_results = entries
            self.sweep_metric = metric
            self.sweepFinished.emit(entries)

        n = len(layers) if layers is not None else len(session.info.layers)
        chosen = None if layers is None else list(layers)
        if acts or self.metric is not None:
            return self.runner.submit(
                Job("sweep", f"Sensitivity sweep over {n} layers", jobs.sensitivities,
                    (session.engine, list(formats), acts, chosen, self.metric),
                    on_result=lambda r: done(*r))
            )  # fmt: skip
        return self.runner.submit(
            Job("sweep", f"Sensitivity sweep over {n} layers", jobs.sweep,
                (session.engine, list(formats), chosen), on_result=done)
        )  # fmt: skip

    # -- plan search ------------------------------------------------------------------------------
    def run_search(self, options: SearchOptions) -> Job | None:
        session = self.session
        if session is None:
            return None
        if self.document.plan is not None:
            # The search's plans deploy to the target the window's plan is set to.
            options = dataclasses.replace(options, target=self.document.plan.target)

        def done(result: object) -> None:
            if options.metric is not None:
                self.metric = options.metric  # it worked: the evaluation reports it too
                self.evaluate()
            self.searchFinished.emit(result)

        def failed(exc: BaseException) -> None:
            self.searchFailed.emit()
            self.searchFinished.emit(None)
            self.failed.emit("Finding a plan", exc)

        def point(value: object) -> None:
            if isinstance(value, Point):
                self.searchPoint.emit(value)
            elif isinstance(value, Measuring):
                self.searchMeasuring.emit(value)

        job = self.runner.submit(
            Job("search", f"Finding a plan ({options.budget.describe()})", jobs.find_plan,
                (session.engine, options), on_yield=point, on_result=done,
                on_error=failed)
        )  # fmt: skip
        self.searchStarted.emit()
        return job

    def _on_cancelled(self, job: Job) -> None:
        if job.key == "search":
            self.searchFinished.emit(None)

    # -- export ---------------------------------------------------------------------------------
    def export_model(
        self,
        path: str | Path,
        options: ExportOptions | None = None,
        report_path: str | Path | None = None,
    ) -> Job | None:
        """Export the current plan to ``path`` (never the model's own file) and check it."""
        session, plan = self.session, self.document.plan
        if session is None or plan is None:
            return None
        if self._needs_data(lambda: self.export_model(path, options, report_path)):
            return None
        target = Path(path)
        if session.path is not None and same_file(target, session.path):
            self.failed.emit(
                "Export",
                BitlensError(f"{target.name} is the model being inspected; choose another file"),
            )
            return None
        try:
            check_target(session.engine, target)
            check_output(target, "onnx", self._inputs(), what="export")
        except BitlensError as exc:
            self.failed.emit("Export", exc)
            return None
        self.runner.discard("size")  # the export itself will tell the file's size
        return self.runner.submit(
            Job("export", f"Exporting {target.name}", jobs.export_model,
                (session.engine, plan, target, options,
                 None if report_path is None else Path(report_path)),
                on_result=lambda report: self._on_exported(plan, report))
        )  # fmt: skip

    def _on_exported(self, plan: Plan, report: Any) -> None:
        self.document.set_ran_as(plan, {la.name: la.kernel for la in report.layers})
        self.exported.emit(report)

    def cancel(self) -> None:
        self.runner.cancel()

    def _inputs(self) -> list[Path]:
        """Files this window's session reads: no output may be one of them."""
        session, doc = self.session, self.document
        out = [doc.plan_path] if doc.plan_path is not None else []
        if session is not None:
            if session.path is not None:
                out.append(session.path)
            request = session.request
            if request is not None:
                out += [p for p in (request.path, getattr(request, "eval_path", None)) if p]
        return out

    # -- plans as files ---------------------------------------------------------------------
    def _attempt(self, what: str, fn: Any) -> bool:
        try:
            fn()
        except (BitlensError, OSError) as exc:
            self.failed.emit(what, exc)
            return False
        return True

    def save_plan(self, path: str | Path) -> bool:
        doc = self.document
        plan = doc.plan
        if plan is None:
            return False
        p = Path(path)

        def write() -> None:
            inputs = [i for i in self._inputs() if i != doc.plan_path]  # saving over itself is fine
            check_output(p, "json", inputs, what="plan")
            atomic_write_text(p, plan.to_json() + "\n")
            doc.mark_saved(p)

        return self._attempt(f"Saving the plan to {p.name}", write)

    def load_plan(self, path: str | Path) -> bool:
        doc = self.document
        p = Path(path)

        def read() -> None:
            info = _need_info(doc)
            plan = Plan.from_dict(info, read_json_file(p, "plan"))
            # readers of a shared weight given one format: the step says so (as the CLI)
            notes = "".join(f" ({n})" for n in plan.notes)
            doc.replace_plan(plan, f"Open plan {p.name}{notes}")
            doc.mark_saved(p)  # the window holds what the file holds: nothing unsaved

        return self._attempt(f"Opening the plan {p.name}", read)

    def export_ort_overrides(self, path: str | Path) -> list[str]:
        """Write ``TensorQuantOverrides`` JSON; returns the choices ORT cannot express."""
        doc = self.document
        plan = doc.plan
        if plan is None:
            return []
        p = Path(path)
        # with the weights, formats ORT's own rule differs on (int8 sym: -128..127) are
        # written with their explicit scales and zero points
        weights = None if self.session is None else self.session.model.weight
        left_out = plan.ort_unrepresentable(with_weights=weights is not None)

        def write() -> None:
            check_output(p, "json", self._inputs(), what="ORT overrides")
            text = json.dumps(plan.to_ort_overrides(weights=weights), indent=2)
            atomic_write_text(p, text + "\n")

        ok = self._attempt(f"Exporting ORT overrides to {p.name}", write)
        return left_out if ok else []

    def import_ort_overrides(self, path: str | Path) -> bool:
        doc = self.document
        p = Path(path)

        def read() -> None:
            info = _need_info(doc)
            data = read_json_file(p, "ORT overrides")
            if isinstance(data, dict) and "TensorQuantOverrides" in data:
                data = data["TensorQuantOverrides"]  # a whole extra_options object
            if not isinstance(data, dict):
                raise PlanError(f"{p.name}: expected an object of tensor overrides")
            doc.replace_plan(Plan.from_ort_overrides(info, data), f"Import ORT overrides {p.name}")

        return self._attempt(f"Importing ORT overrides from {p.name}", read)

    def shutdown(self) -> None:
        self.runner.shutdown()


def _need_info(doc: Document):
    if doc.info is None:
        raise PlanError("open a model first")
    return doc.info
