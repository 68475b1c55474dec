"""The open model as the views see it: session, plan, undo history, results, selection.

One long-lived object the window owns; loading another model resets it.
Every plan change goes through :meth:`Document.edit` (or the undo stack),
so undo/redo covers all of them and the views hear about each one through
``planChanged``. Results arrive from workers with the plan they were
computed for, and are kept only if that plan is still the current one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from bitlens.core.errors import PlanError
from bitlens.core.model.types import Layer, ModelInfo
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import Evaluation
from bitlens.gui.ab_compare import ABCompare
from bitlens.gui.error_kind import ErrorKind
from bitlens.gui.jobs import OutputPairs, Session
from bitlens.gui.selection import LayerSelection
from bitlens.gui.undo import PlanEdit
from bitlens.gui.view_passes import ViewPasses


class Document(QObject):
    modelChanged = Signal()  # another model (or other data) was loaded; plan reset
    planChanged = Signal()  # an edit, undo or redo; the evaluation is now stale
    evaluationChanged = Signal()  # a new evaluation for the current plan
    outputsChanged = Signal()  # new output scatter data for the current plan
    ranAsChanged = Signal()  # an export finished: what ONNX Runtime ran for each layer

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.session: Session | None = None
        self._plan: Plan | None = None
        self.evaluation: Evaluation | None = None
        self.evaluated_plan: Plan | None = None  # the plan `evaluation` belongs to
        self.failed_plan: Plan | None = None  # the current plan, when evaluating it failed
        self.outputs: list[OutputPairs] = []
        self.plan_path: Path | None = None  # where the plan was last saved or opened from
        # The last export's plan and, per layer, the kernel ONNX Runtime ran ("ran as").
        self.ran_as_plan: Plan | None = None
        self.ran_as: dict[str, str] = {}
        self.undo_stack = QUndoStack(self)
        self.selection = LayerSelection(self)
        self.error_kind = ErrorKind(self)  # which error every view colours and plots
        self.ab = ABCompare(self)  # a pinned plan A the current plan is compared with
        # the views' work after a change, one piece per event-loop pass (the graph's build,
        # the layer detail's drawing)
        self.view_passes = ViewPasses(self)
        self._retired: list[object] = []  # replaced sessions, let go of on a later pass

    # -- what is open ---------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo | None:
        return None if self.session is None else self.session.info

    @property
    def plan(self) -> Plan | None:
        return self._plan

    @property
    def is_open(self) -> bool:
        return self.session is not None

    @property
    def is_modified(self) -> bool:
        return not self.undo_stack.isClean()

    @property
    def evaluation_current(self) -> bool:
        return self.evaluation is not None and self.evaluated_plan is self._plan

    @property
    def evaluation_failed(self) -> bool:
        """The current plan could not be evaluated (the error was shown when it happened)."""
        return self._plan is not None and self.failed_plan is self._plan

    def layer(self, name: str) -> Layer:
        assert self.info is not None
        return self.info.layer(name)

    def load(self, session: Session, plan: Plan | None = None) -> None:
        """Show another session. A session over the same model (new data) keeps the plan."""
        same_model = self.session is not None and self.session.model is session.model
        keep = self._plan if same_model and plan is None else plan
        self.retire(self.session)
        self.session = session
        self._plan = keep if keep is not None else Plan(session.info)
        self.evaluation = None
        self.evaluated_plan = None
        self.failed_plan = None
        self.outputs = []
        if not same_model:
            self.undo_stack.clear()
            self.plan_path = None
            self.selection.clear()
        self.modelChanged.emit()
        if not same_model and session.info.layers:
            # Open on something to look at: the detail pane shows the first layer.
            self.selection.set([session.info.layers[0].name])

    def retire(self, old: object) -> None:
        """Let go of ``old`` (the session another one replaces) on a later event-loop pass,
        in one of its own: freeing a model's engine (its ONNX Runtime sessions, arrays and
        weight files) took 20-30 ms of the window's thread in the pass that shows the new
        model (issue 11; docs/benchmarks.md "uiviews (session 16)")."""
        if old is not None:
            self._retired.append(old)
            self.view_passes.post(self._let_go)

    def _let_go(self) -> None:
        self._retired.clear()

    # -- editing ----------------------------------------------------------------------------
    def edit(self, changes: Mapping[str, LayerChoice], text: str) -> None:
        """Change some layers' choices as one undoable step; PlanError if invalid."""
        if self._plan is None:
            raise PlanError("no model is open")
        after = self._plan.with_choices(changes)
        self.replace_plan(after, text)

    def replace_plan(self, plan: Plan, text: str) -> None:
        """Make ``plan`` current as one undoable step (no step when nothing changes)."""
        if self._plan is None:
            raise PlanError("no model is open")
        if plan.info is not self._plan.info:
            raise PlanError("the plan was made for a different model")
        if plan == self._plan:
            return
        self.undo_stack.push(PlanEdit(self._apply, self._plan, plan, text))

    def _apply(self, plan: Plan) -> None:
        self._plan = plan
        self.planChanged.emit()

    def set_ran_as(self, plan: Plan, kernels: Mapping[str, str]) -> None:
        self.ran_as_plan, self.ran_as = plan, dict(kernels)
        self.ranAsChanged.emit()

    # -- results ------------------------------------------------------------------------------
    def set_evaluation(self, plan: Plan, evaluation: Evaluation) -> None:
        if plan is not self._plan:
            return  # computed for a plan that has since changed
        self.evaluation = evaluation
        self.evaluated_plan = plan
        self.evaluationChanged.emit()

    def set_evaluation_failed(self, plan: Plan) -> None:
        if plan is not self._plan:
            return
        self.failed_plan = plan
        self.evaluationChanged.emit()

    def set_outputs(self, plan: Plan, outputs: list[OutputPairs]) -> None:
        if plan is not self._plan:
            return
        self.outputs = outputs
        self.outputsChanged.emit()

    def mark_saved(self, path: Path) -> None:
        self.plan_path = path
        self.undo_stack.setClean()
