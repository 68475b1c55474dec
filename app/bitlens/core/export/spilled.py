"""A model held on disk between preflight and the export: the opset-converted source.

:func:`~bitlens.core.export.exporter.preflight` converts a model whose opset is too old
for the plan (ddddocr's 54 MB ``common.onnx`` is opset 12, its detector 11) before
calibration, so that a model that cannot be exported fails in seconds. The converted
model is needed again only when the export is built, but a parsed copy held in between
stays in memory through calibration, the export and the whole fidelity check (the
caller keeps the preflight's result): one more copy of every weight (52 MiB on
``common.onnx``, where issue 11's bound is 231 MiB). Here it is serialized once into an
unnamed temporary file and parsed back from a read-only memory map when the export
needs it, each time a new, independent proto (the search's size predictions build
several exports from one preflight).
"""

from __future__ import annotations

import mmap
import tempfile

import onnx

from bitlens.core.export import piecewise


class SpilledModel:
    """``model``'s bytes in an anonymous temporary file (gone when this object is)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        # open for this object's life (closed by close() or when it is collected); each
        # load maps it only while parsing, so its pages do not stay in the process's RSS
        self._file = tempfile.TemporaryFile(prefix="bitlens-converted-")  # noqa: SIM115
        piecewise.write(model, self._file)  # a node at a time (the interpreter lock)
        self._file.flush()
        self.nbytes = self._file.tell()

    def load(self) -> onnx.ModelProto:
        """A new proto, parsed from the file through a memory map (no bytes copy)."""
        out = onnx.ModelProto()
        if self.nbytes == 0:
            return out
        with mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            view = memoryview(mm)
            try:
                out.ParseFromString(view)
            finally:
                view.release()  # before the map closes (a live view would keep it open)
        return out

    def close(self) -> None:
        self._file.close()

    def __del__(self) -> None:
        self._file.close()
