"""A combo box editor for the format columns of the layer table.

The choices come from the model (``CHOICES_ROLE``), so the delegate knows
nothing about formats. Picking an entry commits at once: one pick is one
undoable edit, with no extra click or Enter needed.
"""

from __future__ import annotations

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import QComboBox, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from bitlens.gui.format_help import add_format_tooltips
from bitlens.gui.layer_table_model import CHOICES_ROLE

_Index = QModelIndex | QPersistentModelIndex


class FormatDelegate(QStyledItemDelegate):
    def createEditor(
        self, parent: QWidget, option: QStyleOptionViewItem, index: _Index
    ) -> QWidget | None:
        choices = index.data(CHOICES_ROLE)
        if not choices:
            return None
        combo = QComboBox(parent)
        combo.setObjectName("formatEditor")
        combo.addItems(list(choices))
        add_format_tooltips(combo)  # bits, grid and cost of each entry
        combo.setMaxVisibleItems(len(choices))
        combo.activated.connect(lambda _i, c=combo: self._commit(c))
        return combo

    def setEditorData(self, editor: QWidget, index: _Index) -> None:
        assert isinstance(editor, QComboBox)
        current = index.data(Qt.ItemDataRole.EditRole)
        i = editor.findText(str(current))
        if i < 0:  # a format from a loaded plan that the list does not offer: show it anyway
            editor.addItem(str(current))
            i = editor.count() - 1
        editor.setCurrentIndex(i)

    def setModelData(self, editor: QWidget, model: QAbstractItemModel, index: _Index) -> None:
        assert isinstance(editor, QComboBox)
        if editor.currentText() != index.data(Qt.ItemDataRole.EditRole):
            model.setData(index, editor.currentText(), Qt.ItemDataRole.EditRole)

    def _commit(self, editor: QComboBox) -> None:
        self.commitData.emit(editor)
        self.closeEditor.emit(editor, QStyledItemDelegate.EndEditHint.NoHint)
