"""Loading ONNX files safely, and the in-memory model every other part works on.

The user's file is read once and never written. External data must live
inside the model's folder: every external location is checked *before*
any data is read, so a hostile file cannot make Bitlens read outside it.
Each failure is a :class:`ModelLoadError` naming the file and the problem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper, numpy_helper

from bitlens.core.errors import ModelLoadError
from bitlens.core.model.constants import ConstantIndex
from bitlens.core.model.inventory import build_inventory, name_nodes, sort_topologically
from bitlens.core.model.types import ModelInfo

# Leading bytes of files people open by mistake, to name them in the error.
_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"PK\x03\x04": "a zip archive (a PyTorch .pt/.pth or a .npz?)",
    b"%PDF": "a PDF document",
    b"\x7fELF": "an executable",
    b"RIFF": "a RIFF file (WAV audio?)",
    b"\x93NUMPY": "a NumPy .npy array",
    b"\x80\x02": "a Python pickle",
    b"\x1f\x8b": "a gzip archive",
}


@dataclass(eq=False)
class LoadedModel:
    """A model in memory: the protobuf (a private copy), its description, its weights."""

    proto: onnx.ModelProto
    info: ModelInfo
    path: Path | None = None
    _constants: ConstantIndex = field(init=False, repr=False)
    _cache: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._constants = ConstantIndex(self.proto.graph)

    def weight(self, name: str) -> np.ndarray:
        """Values of a constant (initializer, Constant node or subgraph initializer), cached."""
        if name not in self._cache:
            tensor = self._constants.tensor(name)
            if tensor is None:
                raise KeyError(name)
            value = numpy_helper.to_array(tensor)
            value.setflags(write=False)  # shared by the engine's caches: never mutate in place
            self._cache[name] = value
        return self._cache[name]


def from_proto(proto: onnx.ModelProto, path: Path | None = None) -> LoadedModel:
    """Describe a model already in memory (built in code or loaded); works on a copy."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    if not model.HasField("graph") or len(model.graph.node) == 0:
        raise ModelLoadError(f"{_where(path)}: the ONNX model has no graph nodes")
    sort_topologically(model.graph, _where(path))
    name_nodes(model.graph)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        model.graph.ClearField("value_info")
        model.graph.value_info.extend(inferred.graph.value_info)
    except Exception:
        pass
    info = build_inventory(model, path)
    return LoadedModel(model, info, path)


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Read an ONNX file (with external data from its own folder) and describe it."""
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"{p}: no such file")
    if p.is_dir():
        raise ModelLoadError(f"{p}: is a folder, not an ONNX file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise ModelLoadError(f"{p.name}: the file is empty")
    for magic, what in _MAGIC.items():
        if data.startswith(magic):
            raise ModelLoadError(f"{p.name}: not an ONNX model; it looks like {what}")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(
            f"{p.name}: not a valid ONNX model (corrupt or truncated protobuf: {exc})"
        ) from None
    if not proto.HasField("graph") or len(proto.graph.node) == 0:
        raise ModelLoadError(f"{p.name}: not an ONNX model (no graph with nodes found)")
    load_external_data(proto, p)
    _check_defined(proto.graph, p.name)
    return from_proto(proto, p)


def load_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Check every external-data location stays inside the model's folder, then load it."""
    base = path.parent.resolve()
    externals = [
        t
        for t in external_data_helper._get_all_tensors(proto)
        if external_data_helper.uses_external_data(t)
    ]
    for t in externals:
        info = external_data_helper.ExternalDataInfo(t)
        loc = Path(info.location)
        if not info.location or loc.is_absolute() or info.location.startswith(("/", "\\")):
            raise ModelLoadError(
                f"{path.name}: tensor {t.name!r} names external data {info.location!r} outside "
                "the model's folder; refusing to read it"
            )
        target = (base / loc).resolve()
        if base not in target.parents:
            raise ModelLoadError(
                f"{path.name}: tensor {t.name!r} names external data {info.location!r}, which "
                "escapes the model's folder; refusing to read it"
            )
        if not target.is_file():
            raise ModelLoadError(
                f"{path.name}: missing external data file {info.location!r} for tensor {t.name!r}"
            )
        size = target.stat().st_size
        offset = int(info.offset or 0)
        length = int(info.length) if info.length else size - offset
        if offset < 0 or offset + length > size:
            raise ModelLoadError(
                f"{path.name}: external data {info.location!r} is too short for tensor {t.name!r} "
                "(truncated?)"
            )
    if externals:
        try:
            external_data_helper.load_external_data_for_model(proto, str(base))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{path.name}: cannot read external data ({exc})") from None


def _check_defined(graph: onnx.GraphProto, name: str) -> None:
    """Every main-graph node input must come from somewhere; a truncated file often fails here."""
    known = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    known |= {o for n in graph.node for o in n.output}
    for node in graph.node:
        for i in node.input:
            if i not in known:
                raise ModelLoadError(
                    f"{name}: node {node.name or node.op_type!r} reads {i!r}, which nothing defines "
                    "(corrupt or truncated file?)"
                )


def _where(path: Path | None) -> str:
    return path.name if path is not None else "model"
