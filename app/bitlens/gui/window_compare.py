"""The window's comparison and report commands: Pin Plan as A, Unpin A, File ▸ Compare With
Model and File ▸ Save Report.

A mixin of :class:`~bitlens.gui.main_window.MainWindow`. Pinning hands the
current plan and its evaluation to the document's
:class:`~bitlens.gui.ab_compare.ABCompare`; comparing with another model
loads it in the worker and shows the result in a non-modal window; the
report is built by the core (:mod:`bitlens.core.htmlreport`) from values the
window already holds and written atomically, never over an input.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from bitlens.core.compare import ModelComparison, compare_with_file
from bitlens.core.compute import compute_of
from bitlens.core.errors import BitlensError
from bitlens.core.htmlreport import ReportContent, render_html, write_report
from bitlens.gui.model_compare_view import ModelCompareDialog
from bitlens.gui.runner import Job
from bitlens.gui.window_files import MODEL_FILTER

REPORT_FILTER = "HTML reports (*.html);;All files (*)"
PINNED = "pinned A"  # the message bar's mark of the Pin Plan as A note


class CompareCommandsMixin:
    model_compare: ModelCompareDialog | None = None  # the last model comparison's window

    # -- plan A/B ---------------------------------------------------------------------------
    def pin_plan_a(self) -> bool:
        """Compare ▸ Pin Plan as A: the current plan, once evaluated, becomes A."""
        ab = self.document.ab
        if not ab.pin():
            self.message_bar.show_message(
                "The plan is still being evaluated: pin it as A when its numbers are shown.",
                "info",
            )
            return False
        self.message_bar.show_message(
            "Pinned the current plan as A: change the plan to see B's deltas in the table "
            "(Δ columns), the plots and the status bar. Compare ▸ Unpin A ends it.",
            "info",
        )
        self.message_bar.what = PINNED  # hidden again on Unpin A
        self._update_compare_actions()
        return True

    def unpin_plan_a(self) -> None:
        self.document.ab.unpin()
        bar = self.message_bar
        if bar.isVisible() and bar.what == PINNED:
            bar.hide()  # it described a comparison that has ended
        self._update_compare_actions()

    def _update_compare_actions(self) -> None:
        ab, doc = self.document.ab, self.document
        self.act_pin.setEnabled(doc.is_open)
        self.act_pin.setChecked(ab.pinned)
        self.act_unpin.setEnabled(ab.pinned)
        self.act_compare_model.setEnabled(doc.is_open)
        self.act_save_report.setEnabled(doc.is_open)

    def _on_pin_toggled(self, checked: bool) -> None:
        """The toolbar's checkable Pin button: pin when checked, unpin when not."""
        if checked and not self.document.ab.pinned:
            self.pin_plan_a()
        elif not checked and self.document.ab.pinned:
            self.unpin_plan_a()
        self._update_compare_actions()

    # -- another model -------------------------------------------------------------------------
    def compare_with_model_dialog(self) -> None:
        session = self.document.session
        if session is None:
            return
        start = str(session.path.parent) if session.path and session.request else ""
        path, _ = QFileDialog.getOpenFileName(self, "Compare with model", start, MODEL_FILTER)
        if path:
            self.compare_with_model(path)

    def compare_with_model(self, path: str | Path) -> Job | None:
        """Load ``path`` in the worker and show its weights against the open model's."""
        session = self.document.session
        if session is None:
            return None
        model = session.model
        return self.runner.submit(
            Job("compare", f"Comparing with {Path(path).name}", compare_with_file,
                (Path(path), model, self.document.plan),
                on_result=lambda c: self._show_model_comparison(c, model))
        )  # fmt: skip

    def _show_model_comparison(self, comparison: ModelComparison, model: object) -> None:
        session = self.document.session
        if session is None or session.model is not model:
            return  # another model was opened meanwhile
        if self.model_compare is not None:
            self.model_compare.close()
        dlg = ModelCompareDialog(comparison, self)
        dlg.model = model
        dlg.layerActivated.connect(lambda name: self.document.selection.set([name], name))
        self.model_compare = dlg
        dlg.show()

    # -- report ----------------------------------------------------------------------------------
    def save_report_dialog(self) -> None:
        session = self.document.session
        if session is None:
            return
        folder = session.path.parent if session.path and session.request else Path.home()
        stem = session.path.stem if session.path else "model"
        path, _ = QFileDialog.getSaveFileName(
            self, "Save report", str(folder / f"{stem}.report.html"), REPORT_FILTER
        )
        if path:
            self.save_report(path)

    def report_content(self) -> ReportContent | None:
        """What File ▸ Save Report writes, from the values the window holds now."""
        doc = self.document
        session, plan = doc.session, doc.plan
        if session is None or plan is None:
            return None
        fidelity = None
        last = self.export_report
        if last is not None and doc.ran_as_plan is not None and doc.ran_as_plan == plan:
            fidelity = last.report  # the last export was of this very plan
        data = session.data
        return ReportContent(
            info=session.info,
            model=session.title,
            plan=plan,
            evaluation=doc.evaluation if doc.evaluation_current else None,
            data=None if data is None else data.summary(),
            calibration=self.controller.calibration,
            fidelity=fidelity,
            comparison=doc.ab.comparison if doc.ab.pinned else None,
            error_kind=doc.error_kind.kind,
            models=self._model_comparison_of(session),
            compute=compute_of(session.engine).to_dict(session.info, plan),
        )

    def _model_comparison_of(self, session) -> ModelComparison | None:
        """The last Compare With Model, when it was made against this session's model."""
        dlg = self.model_compare
        if dlg is None or dlg.model is not session.model:
            return None
        return dlg.comparison

    def save_report(self, path: str | Path) -> Path | None:
        content = self.report_content()
        if content is None:
            return None
        if content.evaluation is None and self.document.session.data is not None:
            self.message_bar.show_message(
                "The plan is still being evaluated: save the report when its numbers are shown.",
                "info",
            )
            return None
        try:
            written = write_report(path, render_html(content), self.controller._inputs())
        except (BitlensError, OSError) as exc:
            self.message_bar.show_error(f"Saving the report to {Path(path).name}", exc)
            return None
        self.message_bar.show_message(f"Report written to {written}.", "info")
        return written
