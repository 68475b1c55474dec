"""The status bar's contents: plan summary, runtime providers, and the busy job."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from PySide6.QtCore import QEvent, QTimer, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QWidget

from bitlens.core.data_summary import DataSummary
from bitlens.core.engine.session import CUDA, fallback_reason
from bitlens.core.model.types import ModelInfo
from bitlens.core.results import Evaluation, Progress
from bitlens.core.weights import file_bytes
from bitlens.gui.elided_label import ElidedLabel
from bitlens.gui.text import fmt_bytes, fmt_db, fmt_percent, fmt_ratio

PROVIDERS_TIP = "Execution providers ONNX Runtime actually runs on"
PROGRESS_MS = 100  # at most one progress repaint per this many ms
# the running job's words keep this many characters of room: at 1280 px the output and data
# lines took the rest and a search's step read "refe…"
JOB_CHARS = 28
SPACING = 12  # px between the labels
UNBOUNDED = 16_777_215  # Qt's QWIDGETSIZE_MAX
NAME_CHARS = 24  # an output name longer than this is cut in its middle (whole in the tooltip)


def _short(name: str) -> str:
    """``name`` cut in its middle to NAME_CHARS: the error figure after it must fit."""
    if len(name) <= NAME_CHARS:
        return name
    half = (NAME_CHARS - 1) // 2
    return f"{name[:half]}…{name[-half:]}"


class StatusPanel(QWidget):
    cancelRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        # the short figures stay whole; the long output and data lines give way with "…"
        self.size_label = ElidedLabel(parent=self, shrink=False)
        self.size_label.setObjectName("statusSize")
        self.bits_label = ElidedLabel(parent=self, shrink=False)
        self.bits_label.setObjectName("statusBits")
        self.output_label = ElidedLabel(parent=self)
        self.output_label.setObjectName("statusOutput")
        self.providers_label = ElidedLabel(parent=self, shrink=False)
        self.providers_label.setObjectName("statusProviders")
        self.providers_label.setToolTip(PROVIDERS_TIP)
        self.data_label = ElidedLabel(parent=self)
        self.data_label.setObjectName("statusData")
        self.job_label = ElidedLabel(parent=self)
        self.job_label.setObjectName("statusJob")
        self.progress = QProgressBar(self)
        self.progress.setObjectName("statusProgress")
        self.progress.setMaximumWidth(160)
        self.progress.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("statusCancel")
        self.cancel_button.clicked.connect(self.cancelRequested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        for w in (
            self.size_label, self.bits_label, self.output_label, self.data_label,
            self.providers_label,
        ):  # fmt: skip
            layout.addWidget(w)
            layout.addSpacing(SPACING)
        layout.addStretch(1)
        layout.addWidget(self.job_label)
        layout.addWidget(self.progress)
        layout.addWidget(self.cancel_button)
        # The bar and Cancel are taller than the labels: shown at every job's start and
        # hidden at its end, they changed the status bar's height, and the whole window
        # was laid out and repainted twice per job. Their height is kept from the start.
        self.setMinimumHeight(
            max(self.progress.sizeHint().height(), self.cancel_button.sizeHint().height())
        )
        # A sweep ticks hundreds of times; every tick repainting the bar and the label
        # (each Qt call waiting for the worker's GIL) stalls the window: show the first
        # tick at once, then the latest one per PROGRESS_MS.
        self._pending: Progress | None = None
        self._progress_timer = QTimer(self)
        self._progress_timer.setSingleShot(True)
        self._progress_timer.setInterval(PROGRESS_MS)
        self._progress_timer.timeout.connect(self._show_pending)
        # weights the file stores as int8 codes: (how many, the file's bytes for all weights
        # or None when unknown); (0, None) for any other model
        self._coded: tuple[int, int | None] = (0, None)
        self._busy = False
        self._figures = ("", "")  # the first output's error, then all its figures (_keep)
        self.show_evaluation(None, stale=False)
        self.show_providers(())
        self.set_idle()

    def set_model(self, info: ModelInfo | None) -> None:
        """The open model: whether its file already stores weights as integer codes."""
        if info is None or not info.stored_grids:
            self._coded = (0, None)
        else:
            self._coded = (len(info.stored_grids), file_bytes(info))

    def show_evaluation(self, ev: Evaluation | None, *, stale: bool, failed: bool = False) -> None:
        self.size_label.setToolTip("")
        self.output_label.setToolTip("")
        if ev is None:
            self.size_label.setText("Evaluation failed" if failed else "No plan evaluated")
            self.bits_label.setText("")
            self.output_label.setText("")
            return
        mark = " (last good plan; this one failed)" if failed else " (updating…)" if stale else ""
        if not ev.bytes_before:  # ai.onnx.ml classifiers: "Weights 0 B → 0 B (-)" said nothing
            self.size_label.setText("No quantizable weights")
            self.bits_label.setText("")
            self.output_label.setText("")
            return
        self._show_sizes(ev, mark)
        self.bits_label.setText(f"{ev.avg_bits:.2f} bits/weight")
        parts = []
        # The first output the plan changes: an exporter's pass-through of integer ids
        # (paraphrase-MiniLM-L3-v2's output 0) is always exact and says nothing.
        outs = list(ev.outputs.values())
        changed = [o for o in outs if o.error.sqnr_db != float("inf")]
        for out in (changed or outs)[:1]:
            parts.append(f"output {_short(out.name)}: {fmt_db(out.error.sqnr_db)}")
            if out.top1_agreement is not None:
                parts.append(f"top-1 agreement {fmt_percent(out.top1_agreement)}")
            else:  # not class scores (an embedding, a feature map): cosine, never top-1
                parts.append(f"cos {out.error.cosine:.4f}")
        if "accuracy" in ev.task_metric:
            acc = f"accuracy {fmt_percent(ev.task_metric['accuracy'])}"
            if "accuracy_float" in ev.task_metric:
                acc += f" (float {fmt_percent(ev.task_metric['accuracy_float'])})"
            parts.append(acc)
        if len(ev.outputs) > 1:
            parts.append(f"+{len(ev.outputs) - 1} more outputs")
        self.output_label.setText(" · ".join(parts))
        self._figures = (parts[0], " · ".join(parts[:2])) if parts else ("", "")
        self._keep()
        cut = [o.name for o in (changed or outs)[:1] if _short(o.name) != o.name]
        self.output_label.setToolTip(f"Output {cut[0]}" if cut else "")

    def _keep(self) -> None:
        """The output line's start that is never cut. Idle, the first output's figures all
        stay whole and the data line gives way (at 1280 px open_nsfw's read "top-1
        agreement 100.…" beside a cut warning); while a job's words take the room, its
        error alone (the line lost its figure, "output …", in session 12)."""
        error, figures = self._figures
        self.output_label.set_kept(error if self._busy else figures)
        self._fit_data()

    def _fit_data(self) -> None:
        """The data line at its short form where the whole line does not fit: Qt's layout
        cuts both lines by the same pixels, and MiniLM's warning, shown short, kept the room
        its whole text asked for while the output line beside it lost "+3 more outputs"."""
        label = self.data_label
        cap = UNBOUNDED
        if label.short_width():
            # the layout's own sum (margins, spacings, the visible widgets), with the data
            # line at its whole width
            given = min(label.sizeHint().width(), label.maximumWidth())
            need = self.layout().sizeHint().width() - given + label.full_width()
            if need > self.width():
                cap = label.short_width()
        if label.maximumWidth() != cap:
            label.setMaximumWidth(cap)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.LayoutRequest:  # a text or a widget's size changed
            self._fit_data()
        return super().event(event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_data()

    def _show_sizes(self, ev: Evaluation, mark: str) -> None:
        """Weights before and after, against what the file stores: a file of int8 codes is
        not 3.84x smaller at W8A8, whatever its float32 size in memory."""
        after = fmt_bytes(ev.bytes_after)
        coded, stored = self._coded
        as_float = f"{fmt_bytes(ev.bytes_before)} as float32, {fmt_ratio(ev.compression)}"
        if not coded:
            before, ratio, tip = fmt_bytes(ev.bytes_before), ev.compression, ""
        elif stored is not None:
            before, ratio = f"{fmt_bytes(stored)} in the file", stored / ev.bytes_after
            tip = (
                f"{coded} weight(s) are int8 codes in the file, which stores the weights in "
                f"{fmt_bytes(stored)}. The table, the plots and Find Plan count them as the "
                f"float32 they are in memory ({as_float} smaller than this plan)."
            )
        else:
            before, ratio = f"{fmt_bytes(ev.bytes_before)} as float32", ev.compression
            tip = (
                f"{coded} weight(s) are integer codes in the file, counted here as float32: "
                "an export saves less than this (Export file: click to predict its size)."
            )
        self.size_label.setText(f"Weights {before} → {after} ({fmt_ratio(ratio)}){mark}")
        self.size_label.setToolTip(tip)

    def show_data(self, summary: DataSummary | None, *, is_open: bool) -> None:
        """Which data calibrate and evaluate; a warning for random inputs or none at all."""
        warn = "color: #b85c00; font-weight: bold"
        if not is_open:
            self.data_label.setText("")
            self.data_label.setToolTip("")
            self.data_label.setStyleSheet("")
            return
        if summary is None:
            self.data_label.setText("⚠ No input data: weight errors only")
            self.data_label.set_short("⚠ No input data")
            self._fit_data()
            self.data_label.setToolTip(
                "Activation and output errors need inputs: give the input sizes "
                "(File ▸ Input Sizes…) or open data (File ▸ Open Data…)."
            )
            self.data_label.setStyleSheet(warn)
            return
        tip = "\n".join(summary.lines())
        self.data_label.set_short("")
        if summary.generated:
            self.data_label.setText("⚠ Random inputs: errors on noise can mislead")
            self.data_label.set_short("⚠ Random inputs")
            self.data_label.setStyleSheet(warn)
            tip += "\nOpen real data with File ▸ Open Data…"
        else:
            # samples (batch rows), not runs: feeds of one shape run batched, and "1
            # calibrate, 1 evaluate (nsfw.npz (8 feeds))" read as if 6 feeds were lost
            self.data_label.setText(
                f"Data: {summary.calibration.rows} calibrate, "
                f"{summary.evaluation.rows} evaluate ({summary.source})"
            )
            self.data_label.setStyleSheet("")
        self.data_label.setToolTip(tip)
        self._fit_data()

    def show_providers(self, providers: tuple[str, ...]) -> None:
        names = [p.removesuffix("ExecutionProvider") for p in providers]
        self.providers_label.setText("ORT: " + (", ".join(names) if names else "—"))
        # When CUDA was wanted but could not start, the tooltip says why.
        why = fallback_reason() if providers and CUDA not in providers else None
        self.providers_label.setToolTip(why or PROVIDERS_TIP)

    @contextmanager
    def _bar_update_later(self) -> Iterator[None]:
        """QProgressBar's setRange (through reset()) and setValue call repaint(), which paints
        every pending update of the whole window at once, inside the job handler that called
        them (the graph, the minimap and the plots after a model opened: tens of ms in one
        event-loop turn). With updates off they only schedule an ordinary, coalesced paint.
        See https://github.com/qt/qtbase, src/widgets/widgets/qprogressbar.cpp."""
        self.progress.setUpdatesEnabled(False)
        try:
            yield
        finally:
            self.progress.setUpdatesEnabled(True)  # calls update()

    def set_busy(self, label: str, *, quiet: bool, cancellable: bool) -> None:
        self._drop_pending()
        self._busy = True
        self._keep()
        self._set_job_text(label + "…")
        self.progress.setVisible(True)
        with self._bar_update_later():
            self.progress.setRange(0, 0)  # busy indicator until progress is known
        self.cancel_button.setVisible(not quiet and cancellable)

    def show_progress(self, p: Progress) -> None:
        if self._progress_timer.isActive():
            self._pending = p  # shown when the timer runs out
            return
        self._apply_progress(p)
        self._progress_timer.start()

    def _show_pending(self) -> None:
        p, self._pending = self._pending, None
        if p is not None:
            self._apply_progress(p)
            self._progress_timer.start()

    def _drop_pending(self) -> None:
        self._pending = None
        self._progress_timer.stop()

    def _apply_progress(self, p: Progress) -> None:
        if p.total > 0:
            with self._bar_update_later():
                self.progress.setRange(0, p.total)
                self.progress.setValue(p.done)
        if p.message:
            self._set_job_text(p.message)

    def _set_job_text(self, text: str) -> None:
        fm = self.job_label.fontMetrics()
        room = min(fm.horizontalAdvance(text) + 2, fm.averageCharWidth() * JOB_CHARS)
        if self.job_label.minimumWidth() != room:
            self.job_label.setMinimumWidth(room)
        self.job_label.setText(text)

    def set_idle(self) -> None:
        self._drop_pending()
        self._busy = False
        self._keep()
        self.job_label.setText("")
        self.job_label.setMinimumWidth(0)  # the room goes back to the output and data lines
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
