"""Choose calibration/evaluation data: generated inputs, .npz, images or WAV audio.

Two slots: the data chosen above, and optional evaluation data (a file or
folder, its kind read from what it is). With evaluation data, every feed
above calibrates and every evaluation feed evaluates; without, the first
share (the calibration fraction) of the feeds above calibrates and the rest
evaluates. Generated inputs need a size for every dynamic dimension except
the batch; images need a size when the model's is dynamic, a layout and the
normalization ``(x * scale - mean) / std``; audio a sample rate and frame.
The dialog only collects a :class:`~bitlens.gui.jobs.DataRequest`; the data
are read in a worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from bitlens.core.dims import needed_dims, suggest_dims
from bitlens.core.image_shape import image_layout
from bitlens.core.model.types import ModelInfo
from bitlens.gui.jobs import DataRequest
from bitlens.gui.text import fmt_shape

KINDS = (
    ("random", "Generated inputs (random)"),
    ("npz", "NumPy: .npz/.npy file, or a folder of feeds (one per file)"),
    ("images", "Folder of images"),
    ("wav", "WAV audio (file or folder)"),
)


def symbolic_dims(info: ModelInfo) -> list[str]:
    """Keys of the dynamic dimensions past the batch axis: sizes the user must give."""
    return [d.key for d in needed_dims(info)]


class DataDialog(QDialog):
    def __init__(
        self,
        info: ModelInfo,
        parent: QWidget | None = None,
        dims: Mapping[str, int] | None = None,
    ):
        super().__init__(parent)
        self.setWindowTitle("Open data")
        self.info = info
        self.suggested = dims if dims is not None else suggest_dims(info)
        self.kind = QComboBox(self)
        self.kind.setObjectName("dataKind")
        for key, label in KINDS:
            self.kind.addItem(label, key)
        self.pages = QStackedWidget(self)
        self._build_random()
        self._build_npz()
        self._build_images()
        self._build_wav()
        self.kind.currentIndexChanged.connect(self.pages.setCurrentIndex)
        inputs = "<br>".join(
            f"<b>{t.name}</b>: {fmt_shape(t.shape)} {t.dtype}" for t in info.inputs
        )
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        self.error = QLabel(self)
        self.error.setStyleSheet("color: #c03030")
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Model inputs:<br>{inputs}", self))
        layout.addWidget(self.kind)
        layout.addWidget(self.pages)
        layout.addWidget(self._build_split())
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    # -- pages ------------------------------------------------------------------------------
    def _build_random(self) -> None:
        page = QWidget(self)
        form = QFormLayout(page)
        self.samples = QSpinBox(page)
        self.samples.setRange(1, 4096)
        self.samples.setValue(8)
        self.seed = QSpinBox(page)
        self.seed.setRange(0, 2**31 - 1)
        form.addRow("Samples", self.samples)
        form.addRow("Seed", self.seed)
        self.dim_boxes: dict[str, QSpinBox] = {}
        for spec in needed_dims(self.info):
            box = QSpinBox(page)
            box.setRange(1, 1 << 20)
            box.setValue(int(self.suggested.get(spec.key, 16)))
            self.dim_boxes[spec.key] = box
            form.addRow(f"Size of {spec.label}", box)
        self.pages.addWidget(page)

    def _path_row(
        self, parent: QWidget, folder: bool, filt: str, file_too: bool = False
    ) -> tuple[QLineEdit, QWidget]:
        row = QWidget(parent)
        h = QHBoxLayout(row)
        h.setContentsMargins(0, 0, 0, 0)
        edit = QLineEdit(row)
        h.addWidget(edit, 1)

        def pick(want_folder: bool) -> None:
            if want_folder:
                p = QFileDialog.getExistingDirectory(self, "Choose a folder")
            else:
                p, _ = QFileDialog.getOpenFileName(self, "Choose a file", "", filt)
            if p:
                edit.setText(p)

        modes = [(False, "File…"), (True, "Folder…")] if file_too else [(folder, "Browse…")]
        for want_folder, label in modes:
            button = QPushButton(label, row)
            button.clicked.connect(lambda _c=False, f=want_folder: pick(f))
            h.addWidget(button)
        return edit, row

    def _build_npz(self) -> None:
        page = QWidget(self)
        form = QFormLayout(page)
        self.npz_path, row = self._path_row(page, False, "NumPy data (*.npz *.npy)", True)
        form.addRow("File or folder", row)
        form.addRow(QLabel("An .npz of arrays keyed by input name, samples along axis 0;\n"
                           "or numbered feeds NAME/0, NAME/1… of any shapes;\n"
                           "or a folder of .npz/.npy files, one feed each.\n"
                           "“labels” arrays (per feed) enable accuracy.", page))  # fmt: skip
        self.pages.addWidget(page)

    def _build_split(self) -> QWidget:
        box = QWidget(self)
        form = QFormLayout(box)
        form.setContentsMargins(0, 0, 0, 0)
        self.eval_path, row = self._path_row(
            box, False, "Data (*.npz *.npy *.wav);;All files (*)", True
        )
        self.eval_path.setObjectName("evalPath")
        self.eval_path.setPlaceholderText("none: split the data above")
        fm = self.eval_path.fontMetrics()  # the whole hint ("none: split the da…" was all)
        self.eval_path.setMinimumWidth(fm.horizontalAdvance(self.eval_path.placeholderText()) + 16)
        self.fraction_box = QDoubleSpinBox(box)
        self.fraction_box.setObjectName("calibFraction")
        self.fraction_box.setRange(0.05, 0.95)
        self.fraction_box.setSingleStep(0.05)
        self.fraction_box.setValue(0.5)
        self.fraction_box.setToolTip("Share of the feeds above that calibrate (the first ones)")
        self.eval_path.textChanged.connect(lambda t: self.fraction_box.setEnabled(not t.strip()))
        form.addRow("Evaluation data", row)
        form.addRow("Calibration fraction", self.fraction_box)
        return box

    def _build_images(self) -> None:
        page = QWidget(self)
        form = QFormLayout(page)
        self.image_path, row = self._path_row(page, True, "")
        self.height_box = QSpinBox(page)
        self.width_box = QSpinBox(page)
        for box in (self.height_box, self.width_box):
            box.setRange(0, 8192)
            box.setSpecialValueText("from the model")
        self.layout_box = QComboBox(page)
        self.layout_box.addItems(["NCHW", "NHWC"])
        four_d = [t.shape for t in self.info.inputs if t.shape and len(t.shape) == 4]
        if four_d:  # a Keras export's [N, H, W, 3] starts at NHWC
            self.layout_box.setCurrentText(image_layout(four_d[0]))
        self.scale_box = QDoubleSpinBox(page)
        self.scale_box.setDecimals(6)
        self.scale_box.setRange(1e-6, 1e6)
        self.scale_box.setValue(1 / 255)
        self.mean_edit = QLineEdit("0", page)
        self.std_edit = QLineEdit("1", page)
        self.mean_edit.setToolTip("One value, or one per channel separated by commas")
        self.std_edit.setToolTip("One value, or one per channel separated by commas")
        form.addRow("Folder", row)
        form.addRow("Height", self.height_box)
        form.addRow("Width", self.width_box)
        form.addRow("Layout", self.layout_box)
        form.addRow("Scale", self.scale_box)
        form.addRow("Mean", self.mean_edit)
        form.addRow("Std", self.std_edit)
        self.pages.addWidget(page)

    def _build_wav(self) -> None:
        page = QWidget(self)
        form = QFormLayout(page)
        self.wav_path, row = self._path_row(page, False, "WAV audio (*.wav)")
        self.rate_box = QSpinBox(page)
        self.rate_box.setRange(1000, 192000)
        self.rate_box.setValue(16000)
        self.frame_box = QSpinBox(page)
        self.frame_box.setRange(0, 1 << 22)
        self.frame_box.setSpecialValueText("from the model")
        form.addRow("File or folder", row)
        form.addRow("Sample rate", self.rate_box)
        form.addRow("Frame length", self.frame_box)
        self.pages.addWidget(page)

    # -- result ---------------------------------------------------------------------------------
    def request(self) -> DataRequest:
        """The request as filled in; ValueError names a missing or malformed field."""
        text = self.eval_path.text().strip()
        return replace(
            self._source(),
            eval_path=Path(text).expanduser() if text else None,
            calib_fraction=round(self.fraction_box.value(), 4),
        )

    def _source(self) -> DataRequest:
        kind = self.kind.currentData()
        if kind == "random":
            return DataRequest(
                "random", samples=self.samples.value(), seed=self.seed.value(),
                dims={k: b.value() for k, b in self.dim_boxes.items()},
            )  # fmt: skip
        if kind == "npz":
            return DataRequest(
                "npz", path=_need_path(self.npz_path.text(), "a data file or folder")
            )
        if kind == "images":
            h, w = self.height_box.value(), self.width_box.value()
            return DataRequest(
                "images",
                path=_need_path(self.image_path.text(), "an image folder"),
                size=(h, w) if h and w else None,
                layout=self.layout_box.currentText(),
                scale=self.scale_box.value(),
                mean=_floats(self.mean_edit.text(), "mean"),
                std=_floats(self.std_edit.text(), "std"),
            )
        return DataRequest(
            "wav",
            path=_need_path(self.wav_path.text(), "a WAV file or folder"),
            rate=self.rate_box.value(),
            frame=self.frame_box.value() or None,
        )

    def _accept(self) -> None:
        try:
            self.request()
        except ValueError as exc:
            self.error.setText(str(exc))
            return
        self.accept()

    @classmethod
    def ask(
        cls, info: ModelInfo, parent: QWidget | None = None, dims: Mapping[str, int] | None = None
    ) -> DataRequest | None:
        dlg = cls(info, parent, dims)
        if dlg.exec() != QDialog.DialogCode.Accepted:
            return None
        return dlg.request()


def _need_path(text: str, what: str) -> Path:
    if not text.strip():
        raise ValueError(f"Choose {what}.")
    return Path(text.strip()).expanduser()


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(";", ",").split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{what}: expected numbers separated by commas, got {text!r}") from None
    if not values:
        raise ValueError(f"{what}: give at least one number")
    return values
