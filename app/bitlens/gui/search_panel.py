"""Tools ▸ Find Plan: the budget, metric and pins of a plan search, and its live front.

The panel only builds a typed request (:class:`~bitlens.core.search.SearchOptions`)
and hands it on through ``runRequested``; the controller runs the search in a
worker and feeds the plans it tries back through :meth:`add_point`. Clicking a
plan in the plot asks to apply it (``applyRequested``), which the window does
as one undoable edit.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import Progress
from bitlens.core.search import (
    DEFAULT_SIZE_RATIO,
    Budget,
    Measuring,
    Point,
    SearchOptions,
    SearchResult,
)
from bitlens.core.search.options import AS_W8A8, HALF_W8A8, parse_max_latency
from bitlens.core.usermetric import load_metric
from bitlens.gui.elided_label import ElidedLabel
from bitlens.gui.search_plot import SearchPlot, tooltip

# budget kind -> (label, minimum, maximum, default, decimals)
# The size ratio's untouched default is the CLI's default budget (``bitlens search`` with
# none given, Budget.default): where no plan fits it (a small model: OpenCV Zoo's YuNet,
# 233 KiB, fits none in a quarter of it) the search runs at W8A8's size and says so
# (core/search/refine.py). The panel sent 0.25 as a typed ratio, a hard budget, and failed.
DEFAULT_SUFFIX = " (default)"
DEFAULT_TIP = (
    "The default budget, as bitlens search's without one: a quarter of the float size (about "
    "a uniform 8-bit export's) or, where no plan fits that (a small model), the W8A8 "
    "preset's size. A value you type is a hard budget."
)
BUDGETS: dict[str, tuple[str, float, float, float, int]] = {
    "size_ratio": ("Size ratio (of float)", 0.01, 1.0, DEFAULT_SIZE_RATIO, 3),
    "max_bytes": ("Max file bytes", 1, 1e12, 1e6, 0),
    "max_error": ("Max output error (rel. L2)", 1e-5, 10.0, 0.02, 5),
    "min_metric": ("Min metric", -1e9, 1e9, 0.95, 4),
}


class SearchPanel(QWidget):
    runRequested = Signal(object)  # SearchOptions
    cancelRequested = Signal()
    applyRequested = Signal(object)  # Point
    failed = Signal(str, object)  # what was attempted, the exception

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.pins: dict[str, LayerChoice] = {}
        self.result: SearchResult | None = None
        # where the running (or last stopped) search measures its plans' errors
        self._measuring: Measuring | None = None
        self._bytes_default = 0.0  # half the open model's file
        self.running = False
        self._failed = False  # the search that is ending raised (mark_failed)

        self.kind = QComboBox(self)
        self.kind.setObjectName("budgetKind")
        for key, (label, *_rest) in BUDGETS.items():
            self.kind.addItem(label, key)
        self.value = QDoubleSpinBox(self)
        self.value.setObjectName("budgetValue")
        # A spin box's minimum width counts its suffix: " (default)" widened the hidden Find
        # Plan tab by 55 px, and the side panes of a window restored from 1920 to 1280 no
        # longer got their width back (test_window_real_work's maximize test). The row
        # stretches the box; its minimum stays what the bare figures need.
        self.value.setMinimumWidth(self.value.minimumSizeHint().width())
        self.kind.currentIndexChanged.connect(self._on_kind)
        self._typed = False  # the user set the value (else the kind's default stands)
        self._setting = False  # the panel itself sets the value
        self._editing = False  # the user types in the value's text
        self.value.valueChanged.connect(self._on_value_changed)
        self.value.lineEdit().textEdited.connect(self._on_text_edited)
        # the "(default)" mark goes when the edit ends: dropped while typing, the spin box
        # rewrote the text under the cursor ("0.35" typed read 0.3)
        self.value.editingFinished.connect(self._on_edit_finished)
        self.metric_spec = QLineEdit(self)
        self.metric_spec.setObjectName("metricSpec")
        # short enough to read whole in the panel at 1280x720 ("built-in (ac…" was all)
        self.metric_spec.setPlaceholderText("built-in, or module:function")
        self.metric_spec.setToolTip(
            "Empty: the built-in metrics (accuracy when the data have labels). "
            "Your metric f(outputs, reference_outputs, labels) -> float, higher is better: "
            "module:function or path/to/file.py:function"
        )
        browse = QToolButton(self)  # a button as wide as its "…", not a push button's 80 px
        browse.setText("…")
        browse.setToolTip("Pick a Python file holding the metric")
        browse.clicked.connect(self._browse_metric)
        # the deployed-time limit (core/search/latency.py): typed as the CLI's --max-latency
        self.speed = QComboBox(self)
        self.speed.setObjectName("maxLatency")
        self.speed.setEditable(True)
        self.speed.addItems([HALF_W8A8, AS_W8A8, "none", "0.5"])
        self.speed.setToolTip(
            f"{HALF_W8A8}: plans keep at least half of W8A8's speed-up over float in ONNX "
            f"Runtime CPU; {AS_W8A8}: as fast as the W8A8 preset (both where W8A8 runs faster "
            "than float; predicted from MACs and integer kernels); a ratio of the float time "
            "(0.5); none: speed not steered"
        )
        # after a search: whether it held plans to a predicted time, W8A8's predicted ratio
        # (the default limit keeps nothing where W8A8 is predicted no faster than float)
        self.speed_note = ElidedLabel("", self)
        self.speed_note.setObjectName("speedNote")
        self.speed_note.setVisible(False)
        self.seed = QSpinBox(self)
        self.seed.setObjectName("searchSeed")
        self.seed.setRange(0, 2**31 - 1)
        self.pin_list = QListWidget(self)
        self.pin_list.setObjectName("pinList")
        self.pin_list.setToolTip("Right-click a layer in the table: Pin at current format")
        self.pin_list.setMaximumHeight(54)
        unpin = QPushButton("Unpin", self)
        unpin.clicked.connect(self._unpin_selected)
        self.run_button = QPushButton("Find plan", self)
        self.run_button.setObjectName("runSearch")
        self.run_button.clicked.connect(self.request_run)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("cancelSearch")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.progress = QProgressBar(self)
        self.progress.setTextVisible(True)
        # elided, not as wide as its text: a long step or result line widened the window
        self.status = ElidedLabel("Set a budget and press Find plan.", self)
        self.status.setObjectName("searchStatus")
        self._searching = ""  # "Searching: <the budget it started with>"
        self.plot = SearchPlot(self)
        self.plot.pointClicked.connect(self.applyRequested)
        self.plot.pointHovered.connect(self._on_hovered)

        form = QFormLayout()
        # the budget's kind and value on one row: the kind box in the label column made
        # that column 185 px wide and left the metric and pins 140 px at 1280x720
        brow = QHBoxLayout()
        brow.addWidget(self.kind, 1)
        brow.addWidget(self.value, 1)
        form.addRow("Budget:", brow)
        mrow = QHBoxLayout()
        mrow.addWidget(self.metric_spec, 1)
        mrow.addWidget(browse)
        form.addRow("Metric:", mrow)
        form.addRow("Speed:", self.speed)
        form.addRow("", self.speed_note)
        form.addRow("Seed:", self.seed)
        prow = QHBoxLayout()
        prow.addWidget(self.pin_list, 1)
        prow.addWidget(unpin, 0, Qt.AlignmentFlag.AlignTop)
        form.addRow("Pinned:", prow)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.progress, 1)
        side = QVBoxLayout()
        side.setContentsMargins(0, 0, 0, 0)
        side.addLayout(form)
        side.addLayout(buttons)
        side.addStretch(1)
        left = QWidget(self)
        left.setLayout(side)
        left.setMaximumWidth(360)
        right = QVBoxLayout()
        right.addWidget(self.plot, 1)
        right.addWidget(self.status)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(left)
        layout.addLayout(right, 1)
        self._on_kind()

    # -- requests ---------------------------------------------------------------------------
    def budget(self) -> Budget:
        key = self.kind.currentData()
        value = self.value.value()
        default = key == "size_ratio" and not self._typed
        return Budget(**{key: int(value) if key == "max_bytes" else value}, default=default)

    def options(self) -> SearchOptions:
        """The typed request from the widgets (MetricError/SearchError if they are wrong)."""
        spec = self.metric_spec.text().strip()
        return SearchOptions(
            self.budget(),
            pins=dict(self.pins),
            seed=self.seed.value(),
            metric=load_metric(spec) if spec else None,
            max_latency=parse_max_latency(self.speed.currentText()),
        )

    def request_run(self) -> None:
        try:
            options = self.options()
        except Exception as exc:  # a bad metric or budget: shown like any failed action
            self.failed.emit("Starting the plan search", exc)
            return
        self.runRequested.emit(options)

    # -- pins -------------------------------------------------------------------------------------
    def pin(self, plan: Plan, layers: list[str]) -> None:
        """Pin these layers at their current choice in ``plan``."""
        for name in layers:
            self.pins[name] = plan[name]
        self._show_pins()

    def clear_pins(self) -> None:
        self.pins.clear()
        self._show_pins()

    def _unpin_selected(self) -> None:
        for item in self.pin_list.selectedItems():
            self.pins.pop(item.data(Qt.ItemDataRole.UserRole), None)
        self._show_pins()

    def _show_pins(self) -> None:
        self.pin_list.clear()
        for name, c in self.pins.items():
            w = "float" if c.weight is None else c.weight.name
            a = "float" if c.activation is None else c.activation.name
            self.pin_list.addItem(f"{name}: W {w}, A {a}")
            self.pin_list.item(self.pin_list.count() - 1).setData(Qt.ItemDataRole.UserRole, name)

    def reset(self, float_bytes: int | None = None) -> None:
        """Another model (or other data): the plans and pins shown belong to the old one.
        ``float_bytes`` (the model file's size) sets the default byte budget to half of it."""
        if float_bytes:
            self._bytes_default = float(float_bytes // 2)
            self._on_kind()
        self.result = None
        self._measuring = None
        self.plot.label_outputs = ()
        self.plot.clear()
        self.clear_pins()
        self._show_steering(None)
        self.status.setText("Set a budget and press Find plan.")

    # -- progress from the worker ------------------------------------------------------------------
    def started(self) -> None:
        self.running = True
        self.result = None
        self._measuring = None
        self.plot.label_outputs = ()
        self._show_steering(None)
        self.plot.clear(searching=True)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        budget = self.budget()
        self._searching = f"Searching: {budget.describe()}" + (" (default)" if budget.default else "")
        self.status.setText(self._searching + "…")

    def add_point(self, p: Point) -> None:
        self.plot.add(p)

    def measuring(self, m: Measuring) -> None:
        """The running search's rows and label outputs, before its first plan."""
        self._measuring = m
        self.plot.label_outputs = m.label_outputs

    def show_progress(self, progress: Progress) -> None:
        self.progress.setMaximum(max(1, progress.total))
        self.progress.setValue(progress.done)
        if progress.message and self.running:  # the step, where the user looks: minutes of
            # sensitivities on a real model showed only a percentage and an empty plot
            self.status.setText(f"{self._searching} · {progress.message}")

    def mark_failed(self) -> None:
        """The search raised: ``finished(None)`` follows and says so instead of "Stopped"."""
        self._failed = True

    def finished(self, result: SearchResult | None) -> None:
        """The search ended: with a result, or ``None`` when cancelled or failed."""
        self.running = False
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if result is None:
            self.progress.reset()  # no percentage of a search that did not finish
            empty = self.plot.is_empty  # stopped before its first plan
            if empty:
                self.plot.clear()  # not "Searching" any more
                kept = " before its first plan."
            elif not self.plot.points:  # open_nsfw stopped in its sensitivities: only presets
                kept = " before its first plan (the presets stay on the plot)."
            else:
                kept = ". The plans tried so far stay on the plot."
            if self._failed:  # the window's message bar says why
                self.status.setText("Failed (the message above says why)" + kept)
            else:
                self.status.setText("Stopped" + kept)
            self._failed = False
            return
        self.result = result
        self.plot.label_outputs = result.label_outputs
        self.plot.mark(result.best)
        self.progress.setValue(self.progress.maximum())
        self._show_steering(result)
        speed = result.speed
        steer = result.steering
        # the deployed speed on the first line, the one the panel shows (the rest in the tooltip)
        self._say(
            ("" if speed is None or not speed.slower_than_float else "⚠ ")
            + f"Best within the budget (starred), {result.evaluations} evaluations"
            + ("" if speed is None else f", {speed.short()}")
            + f": {tooltip(result.best, result.label_outputs)}. Click a point to apply its plan."
            + ("" if speed is None else f"\n{speed.describe()}")
            + ("" if speed is None or not speed.warning() else f"\n{speed.warning()}")
            + ("" if steer is None else f"\n{steer.text}")
            + "".join(f"\nNote: {n}" for n in result.notes)  # in the tooltip
        )

    def _show_steering(self, result: SearchResult | None) -> None:
        """Under the Speed field: what the last search did with it."""
        steer = None if result is None else result.steering
        self.speed_note.setText("" if steer is None else steer.short())
        self.speed_note.setToolTip("" if steer is None else steer.text)
        self.speed_note.setVisible(steer is not None)

    def _on_hovered(self, p: Point | None) -> None:
        if p is not None:
            first, _, rest = tooltip(p, self.plot.label_outputs).partition("\n")
            self._say(first + self.fitted_rows() + (f"\n{rest}" if rest else ""))

    def fitted_rows(self) -> str:
        """Where the last search measured its errors, when not on all the evaluation rows: it
        holds some back (core/search/guard.py), and a plan's error read 27.2 dB on the plot
        (nudenet) and 27.6 dB in the status bar, on all of them, once applied."""
        r = self.result
        m = self._measuring if r is None else Measuring(r.eval_rows, len(r.check_rows))
        if m is None or not m.check_rows:
            return ""
        return f" on the {m.fitted_rows} of {m.eval_rows} evaluation rows it fits"

    def _say(self, text: str) -> None:
        """One line in the panel (the dock is short); all of it in the tooltip."""
        self.status.setToolTip(text)
        first = text.splitlines()[0]
        self.status.setText(first + (" …" if "\n" in text else ""))

    def _on_kind(self) -> None:
        key = self.kind.currentData()
        _label, lo, hi, default, decimals = BUDGETS[key]
        if key == "max_bytes" and self._bytes_default:
            default = self._bytes_default
        self._setting = True
        try:
            self.value.setDecimals(decimals)
            self.value.setRange(lo, hi)
            self.value.setSingleStep(10**-decimals if decimals else 1000)
            self.value.setValue(default)
        finally:
            self._setting = False
        self._typed = False
        self._show_default()

    def _on_value_changed(self, _value: float) -> None:
        if not self._setting:
            self._typed = True
            if not self._editing:  # the arrows' steps, a wheel: no text edit under way
                self._show_default()

    def _on_text_edited(self, _text: str) -> None:
        self._typed = self._editing = True  # 0.25 typed again is a hard budget too

    def _on_edit_finished(self) -> None:
        self._editing = False
        self._show_default()

    def _show_default(self) -> None:
        """Mark the value that stands for the CLI's default budget as such."""
        default = self.kind.currentData() == "size_ratio" and not self._typed
        self._setting = True  # a suffix set re-formats the text: no edit of the user's
        try:
            self.value.setSuffix(DEFAULT_SUFFIX if default else "")
        finally:
            self._setting = False
        self.value.setToolTip(DEFAULT_TIP if default else "")

    def _browse_metric(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Metric file", "", "Python (*.py)")
        if path:
            self.metric_spec.setText(f"{path}:")
            self.metric_spec.setFocus()
