"""The window's file commands: open a model, sample or data, plans as files, export.

A mixin of :class:`~bitlens.gui.main_window.MainWindow`. Each command asks for a
path (a file dialog), then hands the work to the controller, which never blocks;
unsaved plan edits are confirmed before they would be lost.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog, QMessageBox

from bitlens.core import samples
from bitlens.core.dims import needed_dims, suggest_dims
from bitlens.core.errors import BitlensError
from bitlens.core.export.fidelity import default_report_path
from bitlens.gui.data_dialog import DataDialog
from bitlens.gui.dims_dialog import DimsDialog
from bitlens.gui.export_options import ExportOptionsDialog
from bitlens.gui.jobs import Session
from bitlens.gui.runner import Job

MODEL_FILTER = "ONNX models (*.onnx);;All files (*)"
PLAN_FILTER = "Bitlens plans (*.json);;All files (*)"
# Failures that a later success of the same kind makes stale (by the words they start with)
WEIGHTS_ONLY_HINT = (
    "Weights only: activation and output errors need input sizes "
    "(File ▸ Input Sizes…) or data (File ▸ Open Data…)."
)  # shown when the sizes are declined; hidden once data open (main_window)
FILE_FAILURES = ("Saving", "Opening the plan", "Importing", "Exporting ORT")  # by a good save/open


class FileCommandsMixin:
    # -- opening ----------------------------------------------------------------------------------
    def open_model(self, path: str | Path) -> Job | None:
        if not self._confirm_discard("open another model"):
            return None
        self.message_bar.hide()
        return self.controller.open_model(path, dims=self.settings.model_dims(Path(path)))

    def open_sample(self, name: str) -> Job | None:
        if not self._confirm_discard("open another model"):
            return None
        self.message_bar.hide()
        return self.controller.open_sample(name)

    def open_default(self) -> Job | None:
        """The bundled image sample, as ``bitlens`` with no arguments opens."""
        return self.open_sample(samples.DEFAULT_SAMPLE)

    def open_model_dialog(self) -> None:
        recent = self.settings.recent_models()
        start = str(recent[0].parent) if recent else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open ONNX model", start, MODEL_FILTER)
        if path:
            self.open_model(path)

    def open_data_dialog(self) -> None:
        info = self.document.info
        if info is None:
            return
        session = self.document.session
        data = None if session is None else session.data
        feed = data.samples[data.evaluation[0]] if data is not None else None
        remembered = self.settings.model_dims(session.path) if session and session.path else {}
        request = DataDialog.ask(info, self, dims=suggest_dims(info, feed, remembered))
        if request is not None:
            self.controller.open_data(request)

    def ask_input_sizes(self) -> DimsDialog | None:
        """Open (without blocking) the dialog of the model's dynamic input sizes."""
        session = self.document.session
        if session is None or not needed_dims(session.info):
            return None
        if self.dims_dialog is not None and self.dims_dialog.isVisible():
            return self.dims_dialog
        data = session.data
        feed = data.samples[data.evaluation[0]] if data is not None else None
        remembered = self.settings.model_dims(session.path) if session.path else {}
        dlg = DimsDialog(session.info, suggest_dims(session.info, feed, remembered), self)
        dlg.accepted.connect(lambda: self._on_input_sizes(dlg, session))
        dlg.rejected.connect(self._on_input_sizes_declined)
        self.dims_dialog = dlg
        dlg.open()
        return dlg

    def _on_input_sizes(self, dlg: DimsDialog, asked_for: Session) -> None:
        session = self.document.session
        if session is None or session.model is not asked_for.model:
            return  # another model was opened meanwhile
        dims = dlg.dims()
        if session.path is not None:
            self.settings.set_model_dims(session.path, dims)
        self.controller.set_input_sizes(dims)

    def _on_input_sizes_declined(self) -> None:
        session = self.document.session
        if session is not None and session.data is None:
            self.message_bar.show_message(WEIGHTS_ONLY_HINT, "info")

    def _fill_samples(self) -> None:
        self.samples_menu.clear()
        try:
            found = samples.list_samples()
        except BitlensError as exc:  # resources not installed: say so in the menu
            act = self.samples_menu.addAction("No samples found")
            act.setEnabled(False)
            act.setToolTip(str(exc))
            return
        for sample in found:
            act = self.samples_menu.addAction(
                f"{sample.title} ({sample.domain})", lambda n=sample.name: self.open_sample(n)
            )
            act.setToolTip(str(sample.meta.get("description", "")))

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent_models()
        for p in recent:
            self.recent_menu.addAction(str(p), lambda p=p: self.open_model(p))
        if recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear List", self.settings.clear_recent_models)
        else:
            act = self.recent_menu.addAction("No recent models")
            act.setEnabled(False)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if _dropped_model(event) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        path = _dropped_model(event)
        if path is not None:
            event.acceptProposedAction()
            self.open_model(path)

    def _on_opened(self, what: object) -> None:
        if isinstance(what, Path):
            self.settings.add_recent_model(what)
        info = self.document.info
        if info is not None and info.notes:  # what the loader did in memory (IR version, folding)
            self.message_bar.show_message(info.notes[0], "info", "\n".join(info.notes))

    def _plan_dir(self) -> str:
        doc = self.document
        if doc.plan_path is not None:
            return str(doc.plan_path)
        session = doc.session
        if session is not None and session.path is not None:
            return str(session.path.with_suffix(".plan.json"))
        return ""

    def save_plan(self) -> bool:
        if self.document.plan_path is None:
            return self.save_plan_as()
        return self._succeeded(self.controller.save_plan(self.document.plan_path))

    def _succeeded(self, ok: bool) -> bool:
        if ok:
            self._clear_stale_error(FILE_FAILURES)
        return ok

    def save_plan_as(self) -> bool:
        if self.document.plan is None:
            return False
        path, _ = QFileDialog.getSaveFileName(self, "Save plan", self._plan_dir(), PLAN_FILTER)
        if not path:
            return False
        return self._succeeded(self.controller.save_plan(path))

    def open_plan_dialog(self) -> None:
        if self.document.plan is None:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open plan", self._plan_dir(), PLAN_FILTER)
        if path:
            self._succeeded(self.controller.load_plan(path))

    def import_overrides_dialog(self) -> None:
        if self.document.plan is None:
            return
        path, _ = QFileDialog.getOpenFileName(
            self, "Import ONNX Runtime TensorQuantOverrides", "", "JSON (*.json);;All files (*)"
        )
        if path:
            self.controller.import_ort_overrides(path)

    def export_overrides_dialog(self) -> None:
        if self.document.plan is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Export ONNX Runtime TensorQuantOverrides", "", "JSON (*.json);;All files (*)"
        )
        if not path:
            return
        left_out = self.controller.export_ort_overrides(path)
        if left_out:
            self.message_bar.show_message(
                f"Exported to {Path(path).name}; {len(left_out)} choices have no ONNX Runtime "
                "quant_type and were left out (see Details).",
                "warning",
                "\n".join(left_out),
            )

    def export_model_dialog(self) -> None:
        session = self.document.session
        if session is None or self.document.plan is None:
            return
        # Next to the model when it is the user's; samples live in the install, so use home.
        folder = session.path.parent if session.path and session.request else Path.home()
        stem = session.path.stem if session.path else "model"
        self.export_size.predict()  # the file it will write, in the worker while the user picks
        path, _ = QFileDialog.getSaveFileName(
            self, "Export quantized model", str(folder / f"{stem}.quant.onnx"), MODEL_FILTER
        )
        if path:
            report = None
            if self.export_report_dir is not None:
                report = self.export_report_dir / default_report_path(path).name
            self.controller.export_model(path, self.export_options, report)

    def export_options_dialog(self) -> ExportOptionsDialog:
        """File ▸ Export Options (not modal; applies when OK is pressed)."""
        dlg = ExportOptionsDialog(self.export_options, self.export_report_dir, self)

        def accepted() -> None:
            self.export_options = dlg.options(self.export_options)
            self.export_report_dir = dlg.chosen_report_dir()

        dlg.accepted.connect(accepted)
        dlg.open()
        return dlg

    def _confirm_discard(self, action: str) -> bool:
        """Ask before losing unsaved plan edits; True when it is fine to go on."""
        if not self.document.is_modified:
            return True
        answer = QMessageBox.question(
            self,
            "Unsaved plan",
            f"The plan has unsaved changes. Save them before you {action}?",
            QMessageBox.StandardButton.Save
            | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Save,
        )
        if answer == QMessageBox.StandardButton.Save:
            return self.save_plan()
        return answer == QMessageBox.StandardButton.Discard


def _dropped_model(event: QDragEnterEvent | QDropEvent) -> Path | None:
    mime = event.mimeData()
    if not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile() and url.toLocalFile().lower().endswith(".onnx"):
            return Path(url.toLocalFile())
    return None
