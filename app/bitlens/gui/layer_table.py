"""The layer table with its filter box and the "set format for selection" toolbar."""

from __future__ import annotations

import math

from PySide6.QtCore import (
    QEvent,
    QItemSelection,
    QItemSelectionModel,
    QObject,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QFontMetricsF, QKeyEvent, QKeySequence, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from bitlens.core.errors import BitlensError
from bitlens.core.formats import parse_format
from bitlens.core.model.half_activations import quantizable_activations
from bitlens.core.model.types import ModelInfo
from bitlens.core.plan import (
    ACTIVATION_CHOICES,
    PRESETS,
    WEIGHT_CHOICES,
    LayerChoice,
    Plan,
    weight_choices,
)
from bitlens.core.recovery.support import kept_recovery
from bitlens.core.targets import TARGET_TITLES, TARGETS
from bitlens.gui.document import Document
from bitlens.gui.format_delegate import FormatDelegate
from bitlens.gui.format_help import add_format_tooltips
from bitlens.gui.layer_table_model import (
    AB_COLUMNS,
    FILTER_ROLE,
    NAME_ROLE,
    SORT_ROLE,
    Column,
    LayerTableModel,
)
from bitlens.gui.layer_table_view import FrozenColumnTableView
from bitlens.gui.text import FLOAT_LABEL, split_dynamic, with_dynamic

UNCHANGED = "(unchanged)"
MIXED = "(mixed plan)"
# what the box shows while nothing is quantized: a model opens so, and "(mixed plan)" there
# read as if a plan had been applied (PP-OCRv5's models opened with no data)
ALL_FLOAT = "(all float)"  # no longer than MIXED: the box is narrow at 1280 px
# A line edit takes these as emacs-style editing keys (end of line, delete) on Linux,
# which would swallow the window's Export (Ctrl+E) and Open Data (Ctrl+D) shortcuts.
PASS_THROUGH = (QKeySequence("Ctrl+E"), QKeySequence("Ctrl+D"))
FIT_ROWS = 64  # rows (spread over the table) whose text sizes the columns


class LayerTable(QWidget):
    editFailed = Signal(str, object)  # what was attempted, the exception
    pinRequested = Signal(list)  # layer names to pin at their current format (plan search)

    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self._doc = document
        self._syncing = False
        self.model = LayerTableModel(document, self)
        self.model.editFailed.connect(self.editFailed)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterKeyColumn(-1)  # match the filter text in any column
        self.proxy.setFilterRole(FILTER_ROLE)  # full layer names, not the short ones shown
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)

        self.filter = QLineEdit(self)
        self.filter.setObjectName("layerFilter")
        # short enough to show whole in the narrow toolbar at 1280x720; the tooltip says more
        self.filter.setPlaceholderText("Filter layers")
        self.filter.setToolTip("Show only the layers whose name, op or format contains this text")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.filter.installEventFilter(self)  # let the window's Ctrl+E and Ctrl+D through

        self.weight_combo = QComboBox(self)
        self.weight_combo.setObjectName("selectionWeight")
        self.weight_combo.addItems([UNCHANGED, FLOAT_LABEL, *WEIGHT_CHOICES])
        self.weight_combo.setToolTip("Weight format for the selected layers")
        self.act_combo = QComboBox(self)
        self.act_combo.setObjectName("selectionActivation")
        self.act_combo.addItems([UNCHANGED, FLOAT_LABEL, *with_dynamic(ACTIVATION_CHOICES)])
        self.act_combo.setToolTip(
            "Activation format for the selected layers (layers without one are skipped)"
        )
        self.apply_button = QPushButton("Set", self)
        self.apply_button.setObjectName("applySelection")
        self.apply_button.clicked.connect(self.apply_to_selection)
        self.preset_combo = QComboBox(self)
        self.preset_combo.setObjectName("preset")
        self.preset_combo.addItems(list(PRESETS))
        self.preset_combo.setPlaceholderText(MIXED)  # shown while no preset matches the plan
        self.preset_combo.setToolTip(
            "A preset: weight and activation formats together. Shows the preset the whole "
            f"plan follows, or “{MIXED}”."
        )
        # Short labels (with tooltips) keep the toolbar narrow enough for a 1280 px screen.
        self.preset_all = QPushButton("All", self)
        self.preset_all.setToolTip("Apply the preset to all layers")
        self.preset_all.setObjectName("presetAll")
        self.preset_all.clicked.connect(lambda: self.apply_preset(selected_only=False))
        self.preset_sel = QPushButton("Selected", self)
        self.preset_sel.setToolTip("Apply the preset to the selected layers")
        self.preset_sel.setObjectName("presetSelection")
        self.preset_sel.clicked.connect(lambda: self.apply_preset(selected_only=True))
        self.target_combo = QComboBox(self)
        self.target_combo.setObjectName("target")
        for t in TARGETS:
            self.target_combo.addItem(t, t)
            self.target_combo.setItemData(
                self.target_combo.count() - 1, TARGET_TITLES[t], Qt.ItemDataRole.ToolTipRole
            )
        self.target_combo.setToolTip(
            "Deployment target: which tensors besides the layer inputs are quantized so that "
            "the runtime's integer kernels run (simulated and exported alike)"
        )
        self.target_combo.activated.connect(self._on_target_chosen)
        self.preset_combo.currentIndexChanged.connect(self._enable_preset_buttons)

        add_format_tooltips(self.weight_combo)
        add_format_tooltips(self.act_combo)
        for combo in (self.weight_combo, self.act_combo, self.preset_combo, self.target_combo):
            # narrow windows: the combo shrinks and its popup still shows whole names
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(6)
        self.filter.setMinimumWidth(5 * self.fontMetrics().horizontalAdvance("M"))

        self.view = FrozenColumnTableView(Column.NAME, self)  # names stay when scrolling right
        self.view.setObjectName("layerTable")
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(Column.NAME, Qt.SortOrder.AscendingOrder)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked
            | QAbstractItemView.EditTrigger.SelectedClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
        )
        self.view.setAlternatingRowColors(True)
        self.view.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # long names keep both ends
        self.view.setWordWrap(False)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.delegate = FormatDelegate(self.view)
        self.view.setItemDelegateForColumn(Column.WEIGHT, self.delegate)
        self.view.setItemDelegateForColumn(Column.ACTIVATION, self.delegate)
        self.view.setItemDelegateForColumn(Column.RECOVERY, self.delegate)
        header = self.view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(False)
        # Formats and errors first (the accumulated error, what the model sees, leading),
        # where a narrow table still shows them; size, op, weight shape and parameter count
        # (reference data) go to the right. The name column stays frozen at the left.
        header.setSectionsMovable(True)
        for col in (Column.SIZE, Column.OP, Column.SHAPE, Column.PARAMS):
            header.moveSection(header.visualIndex(col), header.count() - 1)
        header.moveSection(header.visualIndex(Column.ACCUMULATED), header.visualIndex(Column.WEIGHT_SQNR))
        header.moveSection(header.visualIndex(Column.LOCAL), header.visualIndex(Column.WEIGHT_SQNR))
        self.view.selectionModel().selectionChanged.connect(self._on_view_selection)
        self.view.mirror_settings()
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.filter, 1)
        top.addSpacing(8)
        top.addWidget(QLabel("Preset:", self))
        top.addWidget(self.preset_combo)
        top.addWidget(self.preset_all)
        top.addWidget(self.preset_sel)
        top.addSpacing(8)
        top.addWidget(QLabel("Target:", self))
        top.addWidget(self.target_combo)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(0, 0, 0, 0)
        bottom.addWidget(QLabel("Selected — weights:", self))
        bottom.addWidget(self.weight_combo, 1)
        bottom.addWidget(QLabel("activations:", self))
        bottom.addWidget(self.act_combo, 1)
        bottom.addWidget(self.apply_button)
        self.tools = bottom  # the window adds its tool buttons (Pin A) at the end
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addLayout(bottom)
        layout.addWidget(self.view)

        document.selection.changed.connect(self._on_selection_changed)
        document.modelChanged.connect(self._on_model_changed)
        document.planChanged.connect(self._show_target)
        document.planChanged.connect(self._show_matching_preset)
        document.planChanged.connect(self._grow_to_fit)
        document.ranAsChanged.connect(self._grow_to_fit)
        document.evaluationChanged.connect(self._on_first_evaluation)
        document.ab.changed.connect(self._show_ab_columns)
        self._place_ab_columns()
        self._sized = False
        # the Layer column's content width at the last fit; None once the user sized it
        self._name_width: int | None = None
        self._fitting = False
        self._user_sized: set[int] = set()  # columns the user dragged: their width stays
        # Each preset's plan for the open model, by (preset, target), None where the preset
        # does not apply: every edit compares the plan with them, and building the eight
        # plans again took 5 ms of the window's thread per edit on PP-OCRv4 rec (issue 11).
        self._presets: dict[tuple[str, str], Plan | None] = {}
        self._presets_of: object = None  # the ModelInfo they were built for
        header.sectionResized.connect(self._on_section_resized)
        self._on_model_changed()

    def add_tool_action(self, action) -> QToolButton:
        """A button for one of the window's actions at the end of the table's tool row."""
        button = QToolButton(self)
        button.setDefaultAction(action)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.tools.addWidget(button)
        return button

    def _place_ab_columns(self) -> None:
        """The A/B deltas sit right after the error columns they compare, hidden until a plan
        A is pinned."""
        header = self.view.horizontalHeader()
        for offset, col in enumerate(AB_COLUMNS, 1):
            header.moveSection(header.visualIndex(col), header.visualIndex(Column.ACCUMULATED) + offset)
        self._show_ab_columns()

    def _show_ab_columns(self) -> None:
        for col in AB_COLUMNS:
            self.view.setColumnHidden(col, not self._doc.ab.pinned)
        if self._doc.ab.pinned:
            for col in AB_COLUMNS:
                self.view.resizeColumnToContents(col)

    # -- commands --------------------------------------------------------------------------------
    def _context_menu(self, pos) -> None:
        names = list(self._doc.selection.names)
        if not names or self._doc.plan is None:
            return
        menu = QMenu(self)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)  # one menu per right-click
        act = menu.addAction(f"Pin {_count(names)} at current format (plan search)")
        act.triggered.connect(lambda: self.pinRequested.emit(names))
        menu.popup(self.view.viewport().mapToGlobal(pos))

    def apply_to_selection(self) -> None:
        names = self._doc.selection.names
        if not names or self._doc.plan is None:
            return
        w_text, a_text = self.weight_combo.currentText(), self.act_combo.currentText()
        if w_text == UNCHANGED and a_text == UNCHANGED:
            return
        try:
            w = None if w_text in (UNCHANGED, FLOAT_LABEL) else parse_format(w_text)
            a_name, a_dynamic = split_dynamic(a_text)
            a = None if a_name in (UNCHANGED, FLOAT_LABEL) else parse_format(a_name)
            changes = {}
            for name in names:
                layer = self._doc.layer(name)
                old = self._doc.plan[name]
                weight = old.weight if w_text == UNCHANGED or not weight_choices(layer) else w
                act, dynamic = old.activation, old.dynamic
                info = self._doc.info  # no activations in If bodies nor on fp16 ones
                if a_text != UNCHANGED and info and quantizable_activations(info, layer):
                    act, dynamic = a, a_dynamic and a is not None
                keep = kept_recovery(layer, weight, old.recovery)
                changes[name] = LayerChoice(weight, act, dynamic, keep)
            what = ", ".join(t for t in (f"W {w_text}", f"A {a_text}") if UNCHANGED not in t)
            self._doc.edit(changes, f"{what} on {_count(names)}")
        except BitlensError as exc:
            self.editFailed.emit(f"Setting formats on {_count(names)}", exc)

    def apply_preset(self, selected_only: bool) -> None:
        plan, info = self._doc.plan, self._doc.info
        if plan is None or info is None:
            return
        name = self.preset_combo.currentText()
        if name not in PRESETS:
            return
        layers = self._doc.selection.names if selected_only else info.layer_names
        if not layers:
            return
        try:
            preset = Plan.preset(info, name, layers, target=plan.target)  # its formats
            changes = {n: preset[n] for n in layers}
            self._doc.edit(changes, f"Preset {name} on {_count(layers)}")
        except BitlensError as exc:
            self.editFailed.emit(f"Applying preset {name}", exc)

    def _on_target_chosen(self, index: int) -> None:
        plan = self._doc.plan
        target = self.target_combo.itemData(index)
        if plan is None or target == plan.target:
            return
        try:
            self._doc.replace_plan(plan.with_target(target), f"Target {target}")
        except BitlensError as exc:
            self.editFailed.emit(f"Choosing target {target}", exc)

    def _show_target(self) -> None:
        plan = self._doc.plan
        if plan is not None:
            self.target_combo.setCurrentIndex(self.target_combo.findData(plan.target))

    # -- selection sync -------------------------------------------------------------------------
    def _on_view_selection(self, _sel: QItemSelection, _desel: QItemSelection) -> None:
        if self._syncing:
            return
        rows = self.view.selectionModel().selectedRows()
        names = [r.data(NAME_ROLE) for r in sorted(rows, key=lambda i: i.row())]
        current = self.view.currentIndex()
        cur = current.data(NAME_ROLE) if current.isValid() else None
        self._doc.selection.set(names, cur, origin=self)

    def _on_selection_changed(self, origin: object) -> None:
        if origin is self:
            return
        sm = self.view.selectionModel()
        selection = QItemSelection()
        last = self.proxy.columnCount() - 1
        for name in self._doc.selection.names:
            src = self.model.index(self.model.row_of(name), 0)
            idx = self.proxy.mapFromSource(src)
            if idx.isValid():
                selection.select(idx, idx.siblingAtColumn(last))
        self._syncing = True
        try:
            flags = QItemSelectionModel.SelectionFlag
            sm.select(selection, flags.ClearAndSelect)
            cur = self._doc.selection.current
            if cur is not None:
                idx = self.proxy.mapFromSource(self.model.index(self.model.row_of(cur), 0))
                if idx.isValid():
                    sm.setCurrentIndex(idx, flags.NoUpdate)
                    self.view.scrollTo(idx)
        finally:
            self._syncing = False

    def _fit_columns(self) -> None:
        # Not resizeColumnsToContents: it asks every cell of every row for several roles,
        # each a call into Python that waits for the worker's hold on the GIL (0.7 s on a
        # real model while it opens). Header text and a bounded sample of rows are enough.
        view, model = self.view, self.model
        fm = QFontMetricsF(view.font())
        # The text's advance is fractional (rounded down to whole pixels, "Gemm" was elided
        # to "G…m").
        pad = self._cell_pad()
        n = model.rowCount()
        rows = range(0, n, max(1, -(-n // FIT_ROWS)))
        header = view.horizontalHeader()
        em = self.fontMetrics().horizontalAdvance("M")
        self._fitting = True
        header.blockSignals(True)
        try:
            for col in range(model.columnCount()):
                cells = (math.ceil(fm.horizontalAdvance(model.text(r, col))) + pad for r in rows)
                view.setColumnWidth(col, max([header.sectionSizeHint(col), *cells]))
            for col, minimum in ((Column.WEIGHT, 9 * em), (Column.ACTIVATION, 8 * em)):
                view.setColumnWidth(col, max(view.columnWidth(col), minimum))
            self._name_width = view.columnWidth(Column.NAME)
            self._fit_name()
        finally:
            header.blockSignals(False)
            self._fitting = False
        view.frozen.setColumnWidth(Column.NAME, view.columnWidth(Column.NAME))
        view.updateGeometries()
        view.viewport().update()

    def _fit_name(self) -> None:
        """The Layer column: its names in full where the table has room beside the other
        columns (1920 px wide), else at least 16 em, the rest elided in the middle (1280)."""
        if self._name_width is None:
            return  # the user sized it
        view = self.view
        others = sum(
            view.columnWidth(c) for c in range(self.model.columnCount())
            if c != Column.NAME and not view.isColumnHidden(c)
        )  # fmt: skip
        em = self.fontMetrics().horizontalAdvance("M")
        room = view.viewport().width() - others
        self._fitting = True
        try:
            view.setColumnWidth(Column.NAME, min(self._name_width, max(16 * em, room)))
        finally:
            self._fitting = False

    def _grow_to_fit(self) -> None:
        """Widen the format and "Ran as" columns to their longest text after an edit or an
        export: sized once at the first evaluation (a float plan: "keep float", no kernels),
        they cut what came later ("uint8 …namic)" on an LSTM, "int8 …ow ch", "QLi…onv").
        Every row counts here (a model's one LSTM is easily missed by a sample); the texts
        come straight from Python, each distinct one measured once."""
        model, view = self.model, self.view
        if not self._sized or not model.rowCount():
            return
        fm = QFontMetricsF(view.font())
        pad = self._cell_pad()
        grew = False
        self._fitting = True
        try:
            doc = self._doc
            kernels = doc.ran_as.values() if doc.ran_as_plan == doc.plan else ()
            for col in (Column.WEIGHT, Column.ACTIVATION, Column.RAN_AS):
                if col in self._user_sized or view.isColumnHidden(col):
                    continue
                texts = set(kernels) if col == Column.RAN_AS else {
                    model.text(r, col) for r in range(model.rowCount())
                }  # fmt: skip
                need = max((math.ceil(fm.horizontalAdvance(t)) + pad for t in texts), default=0)
                if need > view.columnWidth(col):
                    view.setColumnWidth(col, need)
                    grew = True
        finally:
            self._fitting = False
        if grew:
            self._fit_name()

    def _cell_pad(self) -> int:
        """The style's text margin on each side of a cell and the grid line."""
        view = self.view
        margin = view.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, view)
        return 2 * (margin + 1) + 1

    def _on_section_resized(self, col: int, _old: int, _new: int) -> None:
        if self._fitting:
            return
        self._user_sized.add(col)  # dragged by the user: keep their width from now on
        if col == Column.NAME:
            self._name_width = None

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_name()

    def _on_first_evaluation(self) -> None:
        # Sizes and errors are only known once evaluated: fit them the first time.
        if not self._sized:
            self._sized = True
            self._fit_columns()
            self._grow_to_fit()  # the formats of every row, not of the sample only

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.filter and event.type() == QEvent.Type.ShortcutOverride:
            assert isinstance(event, QKeyEvent)
            if QKeySequence(event.keyCombination()) in PASS_THROUGH:
                event.ignore()  # not the line edit's: the window's shortcut runs
                return True
        return super().eventFilter(watched, event)

    def _show_matching_preset(self) -> None:
        """Show the preset the plan follows on every layer, else no preset at all: the box
        never names a preset the plan is not."""
        plan, info = self._doc.plan, self._doc.info
        match = -1
        if plan is not None and info is not None:
            for i, name in enumerate(PRESETS):
                if self._preset(info, name, plan.target) == plan:
                    match = i
                    break
        self._show_float_or_mixed(match)

    def _show_float_or_mixed(self, match: int) -> None:
        """The box at preset ``match`` (-1: none, and the placeholder says why)."""
        plan = self._doc.plan
        floating = plan is not None and all(c.is_float for c in plan.choices.values())
        self.preset_combo.setPlaceholderText(ALL_FLOAT if floating else MIXED)
        self.preset_combo.setCurrentIndex(match)
        self._enable_preset_buttons()

    def _preset(self, info: ModelInfo, name: str, target: str) -> Plan | None:
        """Preset ``name``'s plan for ``target`` (None where it does not apply), built once
        per model: a preset depends on the model's layers and the target alone."""
        if self._presets_of is not info:
            self._presets, self._presets_of = {}, info
        key = (name, target)
        if key not in self._presets:
            try:
                self._presets[key] = Plan.preset(info, name, target=target)
            except BitlensError:
                self._presets[key] = None
        return self._presets[key]

    def _enable_preset_buttons(self) -> None:
        # nothing to apply until a preset is chosen (the box may show "(mixed plan)")
        ok = self._doc.is_open and self.preset_combo.currentIndex() >= 0
        self.preset_all.setEnabled(ok)
        self.preset_sel.setEnabled(ok)

    def _on_model_changed(self) -> None:
        # The presets' plans for a new model are built on a later pass, in one of its own
        # (gui/view_passes.py; 8 plans, 5-8 ms on PP-OCRv4 rec): until then the box names
        # no preset, as it does for a model opened in float.
        self._show_float_or_mixed(-1)
        self._doc.view_passes.post(self._show_matching_preset)
        self._sized = False
        self._name_width = None
        self._user_sized.clear()
        self._fit_columns()
        has_model = self._doc.is_open
        self.apply_button.setEnabled(has_model)
        self.target_combo.setEnabled(has_model)
        self._enable_preset_buttons()
        self._show_target()


def _count(names: tuple[str, ...] | list[str]) -> str:
    return names[0] if len(names) == 1 else f"{len(names)} layers"
