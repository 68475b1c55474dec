"""A table view whose first column (the layer name) stays put when scrolling right.

Qt has no frozen column; this follows Qt's own "Frozen Column" example
(https://doc.qt.io/qt-6/qtwidgets-itemviews-frozencolumn-example.html): a
second view over the same model and selection, showing only the name
column, laid over the left edge of the main view and scrolled with it.
"""

from __future__ import annotations

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPoint, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QAbstractItemView, QFrame, QHeaderView, QTableView, QWidget


class FrozenColumnTableView(QTableView):
    def __init__(self, frozen_column: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.frozen_column = frozen_column
        self.frozen = QTableView(self)
        self.frozen.setObjectName("frozenNameColumn")
        f = self.frozen
        f.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        f.verticalHeader().hide()
        f.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        f.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        f.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        f.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        f.setFrameShape(QFrame.Shape.NoFrame)
        # right-clicks on the name column act as right-clicks on the main view's row
        f.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        f.customContextMenuRequested.connect(self._forward_context_menu)
        self.viewport().stackUnder(f)
        self.horizontalHeader().sectionResized.connect(self._on_section_resized)
        self.horizontalHeader().sectionMoved.connect(self._keep_frozen_first)
        self.verticalHeader().sectionResized.connect(
            lambda i, _old, new: self.frozen.setRowHeight(i, new)
        )
        f.verticalScrollBar().valueChanged.connect(self.verticalScrollBar().setValue)
        self.verticalScrollBar().valueChanged.connect(f.verticalScrollBar().setValue)
        f.horizontalHeader().sortIndicatorChanged.connect(self._on_frozen_sort)

    # -- set up -------------------------------------------------------------------------------
    def setModel(self, model: QAbstractItemModel | None) -> None:
        super().setModel(model)
        self.frozen.setModel(model)
        self.frozen.setSelectionModel(self.selectionModel())
        if model is not None:
            model.columnsInserted.connect(self._show_only_frozen)
            model.modelReset.connect(self._show_only_frozen)
            model.layoutChanged.connect(self._show_only_frozen)
        self._show_only_frozen()

    def mirror_settings(self) -> None:
        """Copy the look and behaviour set on the main view to the frozen column."""
        f = self.frozen
        f.setSelectionBehavior(self.selectionBehavior())
        f.setSelectionMode(self.selectionMode())
        f.setAlternatingRowColors(self.alternatingRowColors())
        f.setTextElideMode(self.textElideMode())
        f.setWordWrap(self.wordWrap())
        f.verticalHeader().setDefaultSectionSize(self.verticalHeader().defaultSectionSize())
        f.setSortingEnabled(self.isSortingEnabled())
        header = self.horizontalHeader()
        f.horizontalHeader().setSortIndicator(
            header.sortIndicatorSection(), header.sortIndicatorOrder()
        )
        f.horizontalHeader().setFixedHeight(header.sizeHint().height())
        self._show_only_frozen()

    def _show_only_frozen(self, *_args: object) -> None:
        model = self.model()
        if model is None:
            return
        for col in range(model.columnCount()):
            self.frozen.setColumnHidden(col, col != self.frozen_column)
        self.frozen.setColumnWidth(self.frozen_column, self.columnWidth(self.frozen_column))
        self._update_geometry()

    # -- keeping both views in step ---------------------------------------------------------------
    def _on_section_resized(self, logical: int, _old: int, new: int) -> None:
        if logical == self.frozen_column:
            self.frozen.setColumnWidth(logical, new)
            self._update_geometry()

    def _keep_frozen_first(self, logical: int, _old: int, _new: int) -> None:
        header = self.horizontalHeader()
        if header.visualIndex(self.frozen_column) != 0:
            header.blockSignals(True)
            header.moveSection(header.visualIndex(self.frozen_column), 0)
            header.blockSignals(False)

    def _on_frozen_sort(self, section: int, order: Qt.SortOrder) -> None:
        self.horizontalHeader().setSortIndicator(section, order)

    def _forward_context_menu(self, pos: QPoint) -> None:
        at = self.viewport().mapFromGlobal(self.frozen.viewport().mapToGlobal(pos))
        if self.contextMenuPolicy() == Qt.ContextMenuPolicy.CustomContextMenu:
            self.customContextMenuRequested.emit(at)

    def _update_geometry(self) -> None:
        frame = self.frameWidth()
        header = self.horizontalHeader()
        self.frozen.horizontalHeader().setFixedHeight(header.height())
        self.frozen.setGeometry(
            self.verticalHeader().width() + frame,
            frame,
            self.columnWidth(self.frozen_column),
            self.viewport().height() + header.height(),
        )

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._update_geometry()

    def updateGeometries(self) -> None:
        super().updateGeometries()
        self._update_geometry()

    def moveCursor(
        self, action: QAbstractItemView.CursorAction, modifiers: Qt.KeyboardModifier
    ) -> QModelIndex:
        current = super().moveCursor(action, modifiers)
        # keyboard moves to the left must not leave the cell hidden under the frozen column
        width = self.frozen.columnWidth(self.frozen_column)
        if (
            action == QAbstractItemView.CursorAction.MoveLeft
            and current.column() != self.frozen_column
            and self.visualRect(current).topLeft().x() < width
        ):
            bar = self.horizontalScrollBar()
            bar.setValue(bar.value() + self.visualRect(current).topLeft().x() - width)
        return current

    def scrollTo(
        self,
        index: QModelIndex,
        hint: QAbstractItemView.ScrollHint = QAbstractItemView.ScrollHint.EnsureVisible,
    ) -> None:
        if index.column() != self.frozen_column:
            super().scrollTo(index, hint)
        else:  # the name is always visible: only scroll vertically
            keep = self.horizontalScrollBar().value()
            super().scrollTo(index, hint)
            self.horizontalScrollBar().setValue(keep)
